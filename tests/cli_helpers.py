"""Running the CLI in tests and checking that a user mistake ends in one line of ours; small runs to work on."""

from __future__ import annotations

import builtins
import signal
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertner.cli import app
from bertner.engine import tracking

runner = CliRunner()

# A one-layer tiny model that trains in seconds.
TINY_RUN = ["--model", "tiny", "--epochs", "1", "--batch-size", "16", "--tiny-layers", "1", "--tiny-hidden", "32",
            "--tiny-heads", "2", "--lr", "5e-3", "--seed", "1", "--num-threads", "1", "--device", "cpu", "--log-every", "1"]


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


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` and its bytes: equal before and after means nothing was written or lost."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def signalling_step(step: int, sig: int = signal.SIGTERM, times: int = 1):
    """A `Tracker.step` that sends `sig` (`times` times) right after optimiser step `step`: a stop at a known step.

    `Tracker.step` is called once per optimiser step, after the step's bookkeeping, so the stop is deterministic.
    """
    original = tracking.Tracker.step

    def step_then_signal(self, s, epoch):
        original(self, s, epoch)
        if s == step:
            for _ in range(times):
                signal.raise_signal(sig)

    return step_then_signal


def train_finished(data: Path, run: Path) -> Path:
    """A finished tiny run (two steps) in `run`."""
    result = invoke("train", data, "-o", run, *TINY_RUN, "--max-steps", "2")
    assert result.exit_code == 0, result.output
    return run


def train_stopped(data: Path, run: Path, step: int) -> Path:
    """A tiny run stopped by SIGTERM after `step`: a checkpoint to resume from, no summary yet."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tracking.Tracker, "step", signalling_step(step))
        result = invoke("train", data, "-o", run, *TINY_RUN)
    assert result.exit_code == 1 and (run / "checkpoint" / "trainer_state.pt").exists(), result.output
    return run


def without_module(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make `import module` fail as it does where the package is not installed (for the rest of the test)."""
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == module:
            raise ImportError(f"No module named '{module}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(builtins, "__import__", refuse)
