"""What a newcomer reads: counts in the right number, the legend of error examples, why a run scored 0."""

from __future__ import annotations

from bertner.cli._console import plural


def test_plural_forms():
    assert [plural(n, "entity") for n in (0, 1, 2, 1500)] == ["0 entities", "1 entity", "2 entities", "1,500 entities"]
    assert plural(1, "document") == "1 document" and plural(3, "run") == "3 runs"
    assert plural(2, ".ann file") == "2 .ann files" and plural(2, "day") == "2 days"


def test_pretty_output_says_1_entity(capsys):
    from bertner.cli.predict import render_pretty as print_pretty
    from bertner.predict import Prediction
    from bertner.spans import Span

    print_pretty([Prediction("note", "患者有糖尿病。", [Span(3, 6, "Disease")], [0.9])])
    shown = capsys.readouterr().out
    assert "note: 1 entity" in shown and "1 entities" not in shown


def test_error_examples_come_with_a_legend(capsys):
    from bertner.cli.evaluate import render_evaluation as print_evaluation
    from bertner.evaluate import Evaluation
    from bertner.metrics import Scores

    errors = [{"kind": "missed", "count": 1, "pairs": {"Disease->-": 1}, "examples": ["d: 有[糖尿病]。  (gold=Disease)"]}]
    print_evaluation(Evaluation("dev.jsonl", "jsonl", Scores().to_dict(), errors=errors))
    shown = capsys.readouterr().out
    assert "[...] is the gold entity, {...} the predicted one" in shown
    assert shown.index("gold entity") < shown.index("有[糖尿病]")


def test_a_run_that_scores_0_says_why(tmp_path):
    from synthetic import write_synthetic
    from typer.testing import CliRunner

    from bertner.cli import app

    data = write_synthetic(tmp_path / "data", n_train=32, n_dev=8)
    result = CliRunner().invoke(app, [
        "train", str(data), "-o", str(tmp_path / "run"), "--max-steps", "1", "--epochs", "1", "--tiny-layers", "1",
        "--tiny-hidden", "32", "--tiny-heads", "2", "--num-threads", "1", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "best dev F1 0.0000" in result.stdout
    hint = next(line for line in result.stdout.splitlines() if line.startswith("why 0:"))
    assert "more training than 1 step " in hint and "--epochs 1" in hint and "pretrained" in hint
