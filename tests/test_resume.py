"""Stopping a run (SIGTERM/SIGINT) and `--resume`: the resumed run must end exactly where an uninterrupted one does.

The stop is made deterministic in-process: `Tracker.step` (called once per optimiser step, after the
step and before the loop checks its stop flag) raises SIGTERM at a chosen step, so the signal handler
the trainer installed runs exactly as it would for a `kill`. One subprocess test sends a real SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from cli_helpers import signalling_step
from synthetic import write_synthetic
from typer.testing import CliRunner

from bertner.cli import app
from bertner.config import TrainConfig
from bertner.engine import tracking
from bertner.engine.trainer import train

runner = CliRunner()

# 96 windows / batch 16 = 6 steps an epoch; 2 epochs = 12 steps. Small enough for seconds per run.
SETTINGS = dict(
    model="tiny", epochs=2, batch_size=16, warmup_ratio=0.1, tiny_layers=1, tiny_hidden=32, tiny_heads=2,
    lr=5e-3, log_every=2, seed=3, num_threads=1, device="cpu",
)
STEPS_PER_EPOCH = 6



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("resume-data"), n_train=96, n_dev=16, seed=5)


def config(data_dir, output, **overrides) -> TrainConfig:
    return TrainConfig(data=str(data_dir), output=str(output), **{**SETTINGS, **overrides})


def cli_args(data_dir, output, **overrides) -> list[str]:
    args = ["train", str(data_dir), "--output", str(output)]
    for key, value in {**SETTINGS, **overrides}.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else {"crf": "--softmax", "gru": "--no-gru"}.get(key, "--no-" + key.replace("_", "-")))
        else:
            args += [flag, str(value)]
    return args


@pytest.fixture(scope="module")
def reference_runs(data_dir, tmp_path_factory):
    """Uninterrupted runs, one per variant of the settings the tests stop and resume."""
    cache: dict[tuple, Path] = {}

    def get(**overrides) -> Path:
        key = tuple(sorted(overrides.items()))
        if key not in cache:
            out = tmp_path_factory.mktemp("reference") / "run"
            train(config(data_dir, out, **overrides))
            cache[key] = out
        return cache[key]

    return get


def stop_at(monkeypatch, step: int, sig: int = signal.SIGTERM) -> None:
    """Make the trainer receive `sig` right after optimiser step `step`."""
    monkeypatch.setattr(tracking.Tracker, "step", signalling_step(step, sig))


def f1s(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["micro"]["f1"]) for r in rows]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-6), name


def interrupt_and_resume(data_dir, tmp_path, monkeypatch, step, resume_args=None, sig=signal.SIGTERM, may_finish=False, **overrides):
    """Stop a run at `step`, check the stop is clean, resume it; the finished run directory.

    `may_finish`: a stop at the very last step may instead let the run finish (exit 0).
    """
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        stop_at(m, step, sig)
        stopped = runner.invoke(app, cli_args(data_dir, run, **overrides))
    if may_finish and stopped.exit_code == 0:
        assert (run / "summary.json").exists() and not (run / "checkpoint").exists()
        return run
    name = signal.Signals(sig).name
    assert stopped.exit_code == 1, stopped.output
    assert "Traceback" not in stopped.output
    assert f"error: stopped by {name} at step {step}; checkpoint saved. Continue with: bertner train --output {run} --resume" in stopped.output
    assert (run / "checkpoint" / "trainer_state.pt").exists() and (run / "checkpoint" / "model.safetensors").exists()
    assert not (run / "summary.json").exists()
    # The same flags again: see test_bare_resume_uses_the_saved_settings for the bare command.
    resumed = runner.invoke(app, resume_args or [*cli_args(data_dir, run, **overrides), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming {run} at step {step}" in resumed.output
    assert not (run / "checkpoint").exists()
    return run


@pytest.mark.parametrize("step", [2, STEPS_PER_EPOCH + 3])
def test_stop_mid_epoch_and_resume_matches_uninterrupted(data_dir, reference_runs, tmp_path, monkeypatch, step):
    reference = reference_runs()
    run = interrupt_and_resume(data_dir, tmp_path, monkeypatch, step)
    assert_same_weights(reference, run)
    assert f1s(run) == f1s(reference)
    summary, ref_summary = (json.loads((r / "summary.json").read_text()) for r in (run, reference))
    for key in ("steps", "best_f1", "best_step", "variant", "seed"):
        assert summary[key] == ref_summary[key], key



# Each case stops at `step` of a run with `overrides`; all must end where the uninterrupted run ends.
CASES = {
    "end-of-epoch": (STEPS_PER_EPOCH, {}),
    "between-evals": (5, dict(eval_every=4)),
    "grad-accum": (2, dict(grad_accum=4)),
    "max-steps-mid-epoch": (4, dict(max_steps=9)),
    "crf-gru": (3, dict(crf=True, gru=True, crf_lr_mult=10.0)),
    "save-every": (3, dict(save_every=1)),
    "swa": (8, dict(swa=0.6)),  # the running mean (steps 5..12) is in the checkpoint and goes on after the resume
}
# Stops at an --eval-every step and at the very last step: two bugs of the old loop, fixed and kept
# tested. The signal is consumed after the step's evaluation and after the limits
# (Trainer.stop_on_signal comes last among the consumers), so a stop at an evaluation step happens
# after that evaluation and a stop at the last step simply lets the run finish.
EVALUATION_AND_LAST_STEP = {
    "eval-step": (4, dict(eval_every=4)),
    "last-step": (2 * STEPS_PER_EPOCH, {}),
    "max-steps-last": (9, dict(max_steps=9)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_stop_and_resume_edge_cases(data_dir, reference_runs, tmp_path, monkeypatch, case):
    step, overrides = CASES[case]
    reference = reference_runs(**overrides)
    run = interrupt_and_resume(data_dir, tmp_path, monkeypatch, step, **overrides)
    assert f1s(run) == f1s(reference)
    assert_same_weights(reference, run)
    summary, ref_summary = (json.loads((r / "summary.json").read_text()) for r in (run, reference))
    for key in ("best_f1", "averaged_steps", "averaged_f1", "averaged_kept"):
        assert summary[key] == ref_summary[key], key


@pytest.mark.parametrize("case", sorted(EVALUATION_AND_LAST_STEP))
def test_stop_at_an_evaluation_or_the_last_step(data_dir, reference_runs, tmp_path, monkeypatch, case):
    step, overrides = EVALUATION_AND_LAST_STEP[case]
    reference = reference_runs(**overrides)
    run = interrupt_and_resume(data_dir, tmp_path, monkeypatch, step, may_finish=True, **overrides)
    assert f1s(run) == f1s(reference)
    assert_same_weights(reference, run)


def test_sigint_stops_the_same_way(data_dir, reference_runs, tmp_path, monkeypatch):
    run = interrupt_and_resume(data_dir, tmp_path, monkeypatch, 4, sig=signal.SIGINT)
    assert_same_weights(reference_runs(), run)


def test_a_second_signal_stops_at_once(data_dir, tmp_path, monkeypatch):
    """A step can take minutes (compiling): the first signal says it is waiting, a second does not wait."""
    run = tmp_path / "run"
    monkeypatch.setattr(tracking.Tracker, "step", signalling_step(2, times=2))
    stopped = runner.invoke(app, cli_args(data_dir, run))
    assert stopped.exit_code == 1 and "Traceback" not in stopped.output
    assert "SIGTERM: stopping after the step in flight" in stopped.output
    assert "error: stopped at once by a second SIGTERM after 2 steps, without a checkpoint" in stopped.output
    assert not (run / "checkpoint").exists() and not (run / "summary.json").exists()
    assert not (run / ".bertner.lock").exists()  # the run directory is free for the next try


def test_bare_resume_uses_the_saved_settings(data_dir, reference_runs, tmp_path, monkeypatch):
    """Exactly the command the stop message suggests: no data folder, no settings, in another cwd."""
    monkeypatch.chdir(tmp_path)
    run = interrupt_and_resume(
        data_dir, tmp_path, monkeypatch, 3, resume_args=["train", "--output", str(tmp_path / "run"), "--resume"]
    )
    assert_same_weights(reference_runs(), run)


def test_resume_without_output_is_a_clear_error(data_dir):
    result = runner.invoke(app, ["train", str(data_dir), "--resume"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error: --resume needs --output RUN_DIR" in result.output


def test_resume_without_a_checkpoint_is_a_clear_error(data_dir, reference_runs, tmp_path):
    # A finished run keeps no checkpoint; a folder that was never a run has none either.
    for run in (reference_runs(), tmp_path / "empty"):
        before = sorted(p.name for p in run.rglob("*")) if run.exists() else None
        result = runner.invoke(app, ["train", "--output", str(run), "--resume"])  # the documented form
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        expected = "has no checkpoint to resume from" if run.exists() else "holds no run to resume (no config.yaml)"
        assert f"error: {run} {expected}" in result.output
        assert len(result.output.strip().splitlines()) == 1
        if before is not None:
            assert sorted(p.name for p in run.rglob("*")) == before  # nothing touched
        else:
            assert not run.exists()  # and nothing created


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("kind", ["random-bytes", "pickle-with-code"])
def test_corrupt_or_hostile_checkpoint_is_refused(data_dir, tmp_path, monkeypatch, kind):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        stop_at(m, 2)
        assert runner.invoke(app, cli_args(data_dir, run)).exit_code == 1
    state = run / "checkpoint" / "trainer_state.pt"
    if kind == "random-bytes":
        state.write_bytes(os.urandom(2000))
    else:
        torch.save({"loop": RunsCode()}, state)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*cli_args(data_dir, run), "--resume"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"error: {state}: cannot read checkpoint" in result.output
    assert not (tmp_path / "PWNED").exists()


def test_real_sigterm_from_another_process(data_dir, reference_runs, tmp_path):
    """`kill` a real `bertner train` once it has saved a checkpoint, then resume it in-process."""
    overrides = dict(epochs=8, save_every=1)  # 48 steps: long enough to be caught mid-run
    reference = reference_runs(**overrides)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bertner", *cli_args(data_dir, run, **overrides)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint" / "trainer_state.pt").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    message = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(message) == 1 and "stopped by SIGTERM at step" in message[0], stderr
    assert message[0].endswith(f"Continue with: bertner train --output {run} --resume")
    resumed = runner.invoke(app, [*cli_args(data_dir, run, **overrides), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert f1s(run) == f1s(reference)
    assert_same_weights(reference, run)


def test_flags_given_with_resume_are_named_as_ignored(tmp_path):
    from typer.testing import CliRunner

    from bertner.cli import app

    result = CliRunner().invoke(app, ["train", "--output", str(tmp_path / "none"), "--resume", "--epochs", "5"])
    assert result.exit_code == 1
    assert "ignored: epochs" in result.output and "Traceback" not in result.output
