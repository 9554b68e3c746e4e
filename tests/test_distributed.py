"""Two CPU processes with the gloo backend train like one process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
from cli_helpers import invoke
from synthetic import write_synthetic

SETTINGS = [
    "--model", "tiny", "--tiny-layers", "1", "--tiny-hidden", "64", "--tiny-heads", "2",
    "--crf", "--crf-lr-mult", "10", "--lr", "5e-3", "--warmup-ratio", "0.05", "--epochs", "3", "--seed", "1", "--num-threads", "1",
]


def run(cmd, env):
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    data = write_synthetic(tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single, double = tmp_path / "single", tmp_path / "double"
    # The one-process baseline runs in this process (the same command, without a second interpreter's start-up).
    baseline = invoke("train", data, *SETTINGS, "--batch-size", "16", "-o", single)
    assert baseline.exit_code == 0, baseline.output
    run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "bertner", "train", str(data), *SETTINGS, "--batch-size", "8", "-o", str(double)],
        env,
    )
    one = json.loads((single / "summary.json").read_text())
    two = json.loads((double / "summary.json").read_text())
    assert one["steps"] == two["steps"]  # the same global batch gives the same number of steps
    assert two["best_f1"] > 0.9, (one["best_f1"], two["best_f1"])
    assert abs(one["best_f1"] - two["best_f1"]) <= 0.05
    # Only rank 0 writes: one evaluation line per epoch, one TensorBoard file.
    assert len((double / "metrics.jsonl").read_text().splitlines()) == 3
    assert len(list((double / "tensorboard").glob("events.out.tfevents.*"))) == 1
