"""A run directory as bertner wrote it before the run-directory module existed still loads, scores, tags and compares.

tests/fixtures/old-run was written by bertner at commit 2a3db6e (main before issue 13): `--model tiny`
(1 layer, hidden 16) with a CRF, trained for 40 epochs on `write_synthetic(n_train=24, n_dev=6)`;
its TensorBoard files were left out. Nothing in it may be rewritten to make a test pass: it stands for
the runs people already have.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from synthetic import write_synthetic
from typer.testing import CliRunner

from bertner.cli import app
from bertner.compare import compare_runs
from bertner.predict import Predictor
from bertner.runs import RunDir, RunState, load_run

OLD_RUN = Path(__file__).parent / "fixtures" / "old-run"
runner = CliRunner()
# The first dev window of write_synthetic(n_train=24, n_dev=6) and what the old bertner predicted for it.
TEXT = "察好制制二甲双胍续糖尿病复。"
OLD_PREDICTION = [(4, 8, "Drug"), (9, 12, "Disease")]


def old_run(tmp_path: Path) -> Path:
    """A copy, so that nothing a command does can change the fixture."""
    return Path(shutil.copytree(OLD_RUN, tmp_path / "runs" / "old-run"))


def test_an_old_run_loads_with_its_settings_labels_and_summary(tmp_path):
    run = RunDir(old_run(tmp_path))
    assert run.state() is RunState.COMPLETE
    loaded = load_run(run.path)
    assert loaded.labels == ["Disease", "Drug", "Test"] and loaded.scheme == "BIO"
    assert loaded.config.crf and loaded.config.model == "tiny" and loaded.config.crf_lr_mult == 10.0
    assert loaded.summary.variant == "tiny+crf" and loaded.summary.best_f1 == 1.0 and loaded.summary.steps == 120
    assert sum(p.numel() for p in loaded.model.parameters()) == loaded.summary.parameters


def test_an_old_run_tags_as_it_did(tmp_path):
    predictor = Predictor.from_run(old_run(tmp_path), device="cpu")
    assert [(s.start, s.end, s.label) for s in predictor.predict_text(TEXT)] == OLD_PREDICTION
    (tmp_path / "note.txt").write_text(TEXT, encoding="utf-8")
    result = runner.invoke(app, ["predict", str(tmp_path / "runs" / "old-run"), str(tmp_path / "note.txt"), "-f", "jsonl"])
    assert result.exit_code == 0, result.output
    spans = [(e["start"], e["end"], e["label"]) for e in json.loads(result.stdout)["entities"]]
    assert spans == OLD_PREDICTION


def test_an_old_run_evaluates_and_compares(tmp_path):
    run = old_run(tmp_path)
    data = write_synthetic(tmp_path / "data", n_train=24, n_dev=6)
    result = runner.invoke(app, ["evaluate", str(run), str(data / "dev.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["micro"]["f1"] == 1.0
    comparison = compare_runs(tmp_path / "runs")
    assert [r.name for r in comparison.runs] == ["old-run"] and not comparison.incomplete
    assert comparison.runs[0].best_f1 == 1.0 and comparison.runs[0].settings["variant"] == "tiny+crf"
    assert comparison.runs[0].curve[-1] == (120, 1.0)
