"""`train --time-budget`: the clock ends training, the schedule follows the clock, the summary says so."""

from __future__ import annotations

import json

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


def test_budget_keeps_time_for_the_final_evaluation_and_plans_steps(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(budget_module.time, "perf_counter", lambda: now[0])
    budget = TimeBudget(minutes=1.0)
    budget.evaluation_estimate = 6.0
    budget.start()
    now[0] += 27.0
    assert budget.progress() == pytest.approx(27.0 / 54.0)  # 60 s less the 6 s kept for evaluating
    assert budget.planned_steps(steps_done=100) == 200
    budget.note_evaluation(12.0)  # a measured evaluation replaces the estimate
    assert budget.usable() == 48.0 and not budget.exhausted()
    now[0] += 21.0
    assert budget.exhausted() and budget.progress() == 1.0
    resumed = TimeBudget(minutes=1.0)
    resumed.start(used_seconds=30.0)  # a resumed run goes on from the time it had used
    assert resumed.elapsed() == pytest.approx(30.0)


def test_a_tiny_run_stops_within_ten_percent_of_its_budget(data_dir, tmp_path):
    seconds = 12.0
    config = TrainConfig(
        data=str(data_dir), output=str(tmp_path / "run"), model="tiny", tiny_layers=1, tiny_hidden=32, tiny_heads=2,
        batch_size=8, lr=5e-3, log_every=5, seed=1, num_threads=1, time_budget=seconds / 60,
    )
    summary = train(config)
    assert RunDir(tmp_path / "run").read_summary() == summary  # what summary.json holds
    assert summary.stopped_by == "time_budget" and summary.time_budget_minutes == pytest.approx(0.2)
    assert 0.9 * seconds <= summary.budget_seconds_used <= 1.1 * seconds, summary.budget_seconds_used
    assert summary.epochs_done >= 2  # the synthetic epoch is short: the clock, not --epochs, stopped it
    evaluations = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert evaluations and evaluations[-1]["step"] == summary.steps  # the final evaluation ran, inside the budget
