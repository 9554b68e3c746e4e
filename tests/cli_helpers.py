"""Running the CLI in tests and checking that a user mistake ends in one line of ours."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bertner.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *expected: str) -> str:
    """A non-zero exit, no traceback, exactly one `error:` line holding every `expected` text."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for text in expected:
        assert text in errors[0], errors[0]
    assert "weights_only" not in result.output  # never the advice to turn a safety off
    return errors[0]


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir())
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no temp left
