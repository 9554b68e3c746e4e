"""`bertner sweep`: grid expansion and collapsing, clear errors, --dry-run, and resuming without retraining."""

import json

import pytest
import yaml
from synthetic import write_synthetic
from typer.testing import CliRunner

from bertner.cli import app
from bertner.errors import BertnerError
from bertner.sweep import load_sweep, run_sweep

runner = CliRunner()


def write_sweep(path, **values):
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def names(sweep):
    return [r.name for r in sweep.runs]


def test_grid_expands_in_file_order_and_collapses_meaningless_settings(tmp_path):
    spec = write_sweep(tmp_path / "study.yaml", data="d", grid={
        "crf": [False, True], "gru": [False, True], "crf_lr_mult": [1, 10], "seed": [1, 2]})
    sweep = load_sweep(spec)
    assert names(sweep) == [
        "tiny-softmax-seed1", "tiny-softmax-seed2", "tiny-gru-softmax-seed1", "tiny-gru-softmax-seed2",
        "tiny-crf-x1-seed1", "tiny-crf-x1-seed2", "tiny-crf-x10-seed1", "tiny-crf-x10-seed2",
        "tiny-gru-crf-x1-seed1", "tiny-gru-crf-x1-seed2", "tiny-gru-crf-x10-seed1", "tiny-gru-crf-x10-seed2",
    ]
    assert sweep.collapsed == 4 and sweep.collapse_reasons == ["crf_lr_mult without crf"]
    assert str(sweep.output) == "runs/study"  # default: runs/<file name>
    run = sweep.runs[6]
    assert run.config.crf and run.config.crf_lr_mult == 10 and run.config.seed == 1 and run.config.data == "d"
    assert run.run_dir == sweep.output / "tiny-crf-x10-seed1" and run.config.output == str(run.run_dir)
    assert all(r.config.crf_lr_mult is None for r in sweep.runs if not r.config.crf)  # left to the recipe


def test_names_for_other_settings_and_gru_collapsing(tmp_path):
    spec = write_sweep(tmp_path / "s.yaml", output=str(tmp_path / "out"), lr="5e-5", grid={
        "gru": [False, True], "gru_hidden": [32, 64], "dropout": [0.1], "model": ["tiny", "../models/bert-base-chinese"]})
    sweep = load_sweep(spec)
    assert sweep.runs[0].config.lr == 5e-5  # YAML reads 5e-5 as a string; it is coerced
    assert names(sweep) == [
        "tiny-softmax-dropout0.1", "bert-softmax-dropout0.1-bert-base-chinese",
        "tiny-gru-softmax-gru_hidden32-dropout0.1", "bert-gru-softmax-gru_hidden32-dropout0.1-bert-base-chinese",
        "tiny-gru-softmax-gru_hidden64-dropout0.1", "bert-gru-softmax-gru_hidden64-dropout0.1-bert-base-chinese",
    ]
    assert sweep.output == tmp_path / "out"
    assert load_sweep(spec, output=tmp_path / "cli").runs[0].run_dir == tmp_path / "cli" / "tiny-softmax-dropout0.1"


@pytest.mark.parametrize("values,message", [
    ({"colour": "red", "grid": {"seed": [1]}}, "unknown setting.*colour"),
    ({"grid": {"seed": [1], "shoe-size": [40]}}, "unknown setting.*in grid: shoe_size"),
    ({"data": "d"}, "needs a `grid:` mapping"),
    ({"seed": 1, "grid": {"seed": [1, 2]}}, "seed set both"),
    ({"grid": {"seed": []}}, "grid.seed is an empty list"),
    ({"grid": {"crf": ["yes"]}}, "crf must be true or false"),
    ({"grid": {"epochs": [1.5]}}, "epochs must be a whole number"),
    ({"grid": {"output": ["a", "b"]}}, "`output` cannot be in the grid"),
    ({"grid": {"epochs": [0]}}, "grid: epochs must be at least 1, got 0"),
    ({"grid": {"epochs": [float("inf")]}}, "grid: epochs must be a finite number, got inf"),
    ({"batch_size": float("nan"), "grid": {"seed": [1]}}, "batch_size must be a finite number, got nan"),
    ({"grid": {"log_every": [0]}}, "log_every must be at least 1"),
    ({"grid": {"device": ["bogus"]}}, "device must be auto, cpu, cuda or cuda:N"),
])
def test_bad_sweep_files_are_clear_errors(tmp_path, values, message):
    spec = write_sweep(tmp_path / "bad.yaml", **values)
    with pytest.raises(BertnerError, match=message):
        load_sweep(spec)


def test_cli_reports_unknown_settings_in_one_line(tmp_path):
    spec = write_sweep(tmp_path / "bad.yaml", colour="red", grid={"seed": [1], "flavour": [2]})
    result = runner.invoke(app, ["sweep", str(spec)])
    assert result.exit_code == 1 and "colour" in result.output and "Traceback" not in result.output


def test_dry_run_lists_runs_and_their_state(tmp_path):
    out = tmp_path / "runs"
    spec = write_sweep(tmp_path / "s.yaml", output=str(out), grid={"crf": [False, True], "seed": [1, 2]})
    done = out / "tiny-softmax-seed2"
    done.mkdir(parents=True)
    (done / "config.yaml").write_text("seed: 2\n")
    (done / "summary.json").write_text(json.dumps({"best_f1": 0.8123}))
    crashed = out / "tiny-crf-seed1"
    crashed.mkdir()
    (crashed / "config.yaml").write_text("crf: true\n")

    result = runner.invoke(app, ["sweep", str(spec), "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()]
    assert ["to", "train", "tiny-softmax-seed1"] in lines
    assert ["done", "tiny-softmax-seed2", "dev", "F1", "0.8123"] in lines
    assert ["restart", "tiny-crf-seed1", "unfinished:", "will", "be", "trained", "again", "from", "scratch"] in lines
    assert "3 to train (1 restarted), 1 done" in result.stdout
    assert not (out / "tiny-crf-seed2").exists()  # nothing trained


def test_sweep_trains_once_and_resumes_without_retraining(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_synthetic(tmp_path / "data", n_train=48, n_dev=8)
    base = dict(data="data", model="tiny", tiny_layers=1, tiny_hidden=32, tiny_heads=2, lr=5e-3, epochs=1,
                max_steps=2, batch_size=16, num_threads=1, log_every=1, output="sweep")
    spec = write_sweep(tmp_path / "s.yaml", **base, grid={"crf": [False, True], "seed": [3]})

    first = run_sweep(spec)
    assert first.trained == ["tiny-softmax-seed3", "tiny-crf-seed3"] and not first.failed
    runs = tmp_path / "sweep"
    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("*/summary.json")}
    assert len(stamps) == 2
    assert [r.name for r in first.comparison.runs] and {g.count for g in first.comparison.groups} == {1}

    second = runner.invoke(app, ["sweep", str(spec)])
    assert second.exit_code == 0, second.output
    assert second.stderr.count("already finished, skipped") == 2
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/summary.json")} == stamps  # nothing retrained
    assert "tiny-crf-seed3" in second.stdout and "dev F1" in second.stdout  # the compare table at the end

    # An unfinished run (crashed: no summary.json) is trained again from scratch; the other stays as it was.
    (runs / "tiny-crf-seed3" / "summary.json").unlink()
    third = run_sweep(spec)
    assert third.trained == ["tiny-crf-seed3"] and third.skipped == ["tiny-softmax-seed3"]
    assert (runs / "tiny-softmax-seed3" / "summary.json").stat().st_mtime_ns == stamps[runs / "tiny-softmax-seed3" / "summary.json"]
    assert len((runs / "tiny-crf-seed3" / "metrics.jsonl").read_text().splitlines()) == 1  # restarted, not appended

    # Changing a setting of a finished run warns instead of silently mixing settings.
    spec = write_sweep(tmp_path / "s.yaml", **{**base, "epochs": 2}, grid={"crf": [False, True], "seed": [3]})
    fourth = runner.invoke(app, ["sweep", str(spec)])
    assert fourth.exit_code == 0 and "trained with other settings" in fourth.stderr and "epochs" in fourth.stderr


def test_runs_finished_under_their_old_names_are_kept(tmp_path):
    out = tmp_path / "runs"
    spec = write_sweep(tmp_path / "s.yaml", output=str(out), grid={"crf": [False, True], "seed": [1]})
    old = out / "bert-crf-seed1"  # how sweeps named a tiny CRF run before variants named the encoder type
    old.mkdir(parents=True)
    (old / "config.yaml").write_text("model: tiny\ncrf: true\ngru: false\nseed: 1\n")
    (old / "summary.json").write_text(json.dumps({"best_f1": 0.5}))
    sweep = load_sweep(spec)
    assert names(sweep) == ["tiny-softmax-seed1", "bert-crf-seed1"]
    assert sweep.runs[1].run_dir == old and sweep.runs[1].status() == "done"
