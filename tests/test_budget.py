"""`train --time-budget`: the clock ends training, the schedule follows the clock, the summary says so."""

from __future__ import annotations

import json
import re

import pytest

from bertner.config import TrainConfig
from bertner.engine import budget as budget_module
from bertner.engine.budget import TimeBudget
from bertner.engine.trainer import train
from bertner.runs import RunDir

from synthetic import write_synthetic


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("synthetic"))


def test_budget_keeps_time_for_the_final_evaluation(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(budget_module.time, "perf_counter", lambda: now[0])
    budget = TimeBudget(minutes=1.0)
    budget.evaluation_estimate = 6.0
    budget.start()
    now[0] += 27.0
    assert budget.progress() == pytest.approx(27.0 / 54.0)  # 60 s less the 6 s kept for evaluating
    budget.note_evaluation(12.0)  # a measured evaluation replaces the estimate
    assert budget.usable() == 48.0 and not budget.exhausted()
    now[0] += 21.0
    assert budget.exhausted() and budget.progress() == 1.0
    resumed = TimeBudget(minutes=1.0)
    resumed.start(used_seconds=30.0)  # a resumed run goes on from the time it had used
    assert resumed.elapsed() == pytest.approx(30.0)


def test_a_tiny_run_stops_within_ten_percent_of_its_budget(data_dir, tmp_path, capsys):
    from bertner.cli._progress import TrainProgress
    from bertner.compare import compare_runs

    seconds = 12.0
    config = TrainConfig(
        data=str(data_dir), output=str(tmp_path / "run"), model="tiny", tiny_layers=1, tiny_hidden=32, tiny_heads=2,
        batch_size=8, lr=5e-3, log_every=5, seed=1, num_threads=1, time_budget=seconds / 60,
    )
    summary = train(config, view=TrainProgress())
    assert RunDir(tmp_path / "run").read_summary() == summary  # what summary.json holds
    assert summary.stopped_by == "time_budget" and summary.time_budget_minutes == pytest.approx(0.2)
    assert 0.9 * seconds <= summary.budget_seconds_used <= 1.1 * seconds, summary.budget_seconds_used
    assert summary.epochs_done >= 2  # the synthetic epoch is short: the clock, not --epochs, stopped it
    evaluations = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert evaluations and evaluations[-1]["step"] == summary.steps  # the final evaluation ran, inside the budget

    # issue 22: what was reached, not the recipe's epochs; every evaluation says how far training got.
    steps_per_epoch = 400 // 8
    assert summary.epochs is None and summary.epochs_done == round(summary.steps / steps_per_epoch, 2)
    assert [e["epoch"] for e in evaluations] == [round(e["step"] / steps_per_epoch, 2) for e in evaluations]
    assert evaluations[-1]["epoch"] == summary.epochs_done
    shown = capsys.readouterr().err  # in a pipe: plain lines
    assert f"step {summary.steps} ({summary.epochs_done:g} epochs): dev loss" in shown
    assert "of the time budget" in shown and not re.search(r"step \d+/\d+", shown)  # no step total that moves
    (compared,) = compare_runs(tmp_path / "run").runs
    assert compared.epochs_done == summary.epochs_done and "epochs" not in compared.settings


def test_the_bar_of_a_budget_run_counts_its_time(monkeypatch):
    """On a terminal the bar's total is the budget, in seconds, not a step count that changes as speed does."""
    import io

    from rich.console import Console

    import bertner.cli._progress as progress_module

    monkeypatch.setattr(progress_module, "err", Console(file=io.StringIO(), force_terminal=True, width=200))
    view = progress_module.TrainProgress()
    view.start(None, 0, budget_seconds=180.0)
    view.step(20, 1, 70.0)
    task = view.progress.tasks[0]
    assert (task.total, task.completed, task.fields["done"]) == (180.0, 70.0, "0:01:10 / 0:03:00, step 20")
    view.step(998, 2, 181.5)  # the final evaluation can end a moment after the budget
    assert view.progress.tasks[0].completed == 180.0
    view.stop()
    steps = progress_module.TrainProgress()
    steps.start(360, 0)
    steps.step(20, 1)
    assert steps.progress.tasks[0].fields["done"] == "20/360"
    steps.stop()
