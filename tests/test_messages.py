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

    errors = [{"kind": "missed", "count": 1, "pairs": {"Disease->-": 1}, "examples": ["d: 有[糖尿病]。  (gold=Disease)"],
               "marks": {"gold": "[]", "predicted": "{}"}}]
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


def run_in_a_pipe(*args: str) -> "subprocess.CompletedProcess[str]":
    """A bertner command (or `-c CODE`) as a script or a log runs it: no terminal on any stream, no COLUMNS."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    command = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "bertner", *args]
    return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=120)


def test_in_a_pipe_warnings_and_tables_are_never_wrapped(tmp_path):
    from test_compare import fake_run

    name = "a-run-folder-whose-name-alone-is-longer-than-the-eighty-columns-a-terminal-would-have"
    fake_run(tmp_path / "runs" / name, f1=0.5)
    crashed = tmp_path / "runs" / f"crashed-{name}"
    (crashed / "checkpoint").mkdir(parents=True)
    (crashed / "config.yaml").write_text("crf: true\n")
    result = run_in_a_pipe("compare", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    warning = next(line for line in result.stderr.splitlines() if line.startswith("warning:"))
    assert f"skipped crashed-{name}: " in warning and warning.endswith(f"{crashed} --resume)"), result.stderr
    assert any(name in line and "0.5000" in line for line in result.stdout.splitlines())  # a row is one line


def test_in_a_pipe_the_last_progress_line_is_whole():
    code = ("from bertner.cli._progress import TrainProgress\n"
            "view = TrainProgress()\n"
            "view.start(123456, 0)\n"
            "view.step(120000, 3)\n"
            "view.train_logged(120000, 0.1234, 1e-5, 12345.0, None)\n"
            "view.stop()\n")
    result = run_in_a_pipe("-c", code)
    assert result.returncode == 0, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "120,000/123,456" in last and "12,345 tok/s" in last and "eta" in last and "…" not in last, result.stderr


def test_error_examples_mark_entities_with_brackets_the_text_does_not_hold_and_colour_them(monkeypatch):
    import io

    from rich.console import Console

    from bertner.cli import evaluate as evaluate_cli
    from bertner.evaluate import Evaluation
    from bertner.metrics import Scores, error_kinds
    from bertner.spans import Span

    # Ruijin's own brackets, and braces too: neither pair can mark an entity here.
    text = "检查[关键词]：{血糖}偏高，诊断为2型糖尿病。"
    gold = {"d": [Span(3, 6, "Test"), Span(18, 23, "Disease")]}
    pred = {"d": [Span(2, 7, "Test"), Span(9, 11, "Test")]}
    kinds = {k["kind"]: k for k in error_kinds(gold, pred, {"d": text})}
    marks = kinds["missed"]["marks"]
    assert marks == {"gold": "⟦⟧", "predicted": "⦃⦄"} and all(k["marks"] == marks for k in kinds.values())
    assert kinds["wrong_boundary"]["examples"] == ["d: 检查⦃[⟦关键词⟧]⦄：{血糖}偏高，诊断为2型糖尿病。  (gold=Test pred=Test)"]
    assert kinds["spurious"]["examples"] == ["d: 检查[关键词]：{⦃血糖⦄}偏高，诊断为2型糖尿病。  (pred=Test)"]
    assert kinds["missed"]["examples"] == ["d: 检查[关键词]：{血糖}偏高，诊断为⟦2型糖尿病⟧。  (gold=Disease)"]

    evaluation = Evaluation("dev.jsonl", "jsonl", Scores().to_dict(), errors=[k for k in kinds.values() if k["count"]])
    plain = io.StringIO()
    monkeypatch.setattr(evaluate_cli, "out", Console(file=plain, width=200))  # a pipe: marks, no colour
    evaluate_cli.render_evaluation(evaluation)
    assert "in the examples ⟦...⟧ is the gold entity, ⦃...⦄ the predicted one" in plain.getvalue()
    assert "检查⦃[⟦关键词⟧]⦄：{血糖}" in plain.getvalue() and "\x1b[" not in plain.getvalue()

    terminal = io.StringIO()
    monkeypatch.setattr(evaluate_cli, "out", Console(file=terminal, width=200, force_terminal=True, color_system="standard"))
    evaluate_cli.render_evaluation(evaluation)
    coloured = terminal.getvalue()
    assert "\x1b[" in coloured  # colour on a terminal
    assert "\x1b[4;32m⟦2型糖尿病⟧\x1b[0m" in coloured  # the missed gold entity underlined in green
    assert "\x1b[1;35m⦃血糖⦄\x1b[0m" in coloured  # the spurious prediction in bold magenta
