"""`bertner sweep --workers N` against the same sweep run one run after another, in the same script.

    python bench/sweep_workers.py                      # 4 bilstm+CRF runs of 600 steps on Ruijin windows, 2 workers
    python bench/sweep_workers.py --steps 200 --workers 2 --repeats 1

The grid is a small study on a CPU: `--model bilstm`, softmax and CRF heads, 2 seeds (4 runs),
each `--steps` steps on 256-character Ruijin windows, one torch thread per run. Contenders, each a
fresh `python -m bertner sweep GRID -o FOLDER` in its own process, imports and the compare table
included (what a user waits for):

  sequential: `--workers 1` (the default), runs one after another in the command's process
  workers:    `--workers N`, N processes taking runs from the sweep's queue (SQLite), cores / N threads each

Reported: the wall time of each and its ratio (workers / sequential; the goal of issue 24 is at
most 0.65 for 2 workers on this 2-core machine), and that every run was trained exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAME = "sweep_workers"


def write_grid(work: Path, data: Path, steps: int) -> Path:
    import yaml

    grid = {"data": str(data), "model": "bilstm", "max_steps": steps, "epochs": 1000, "eval_every": steps // 2,
            "batch_size": 16, "num_threads": 1, "device": "cpu", "log_every": 50,
            "grid": {"crf": [False, True], "seed": [1, 2]}}
    path = work / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False), encoding="utf-8")
    return path


def timed_sweep(grid: Path, output: Path, workers: int) -> float:
    """Seconds for `bertner sweep GRID -o OUTPUT --workers N` from a fresh output folder."""
    shutil.rmtree(output, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bertner", "sweep", str(grid), "-o", str(output),
                           "--workers", str(workers)], cwd=str(grid.parent), env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the sweep with {workers} workers failed:\n{done.stderr[-2000:]}")
    trained = sorted(p.parent.name for p in output.glob("*/summary.json"))
    if len(trained) != 4:
        raise SystemExit(f"{workers} workers: {len(trained)} runs finished, not 4: {trained}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="steps per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="each contender this many times, alternating which goes first")
    args = parser.parse_args()

    work = common.scratch_dir(NAME)
    train, dev = common.window_slice(800, 100)
    data = common.write_data_dir(work / "data", train, dev)
    grid = write_grid(work, data, args.steps)
    contenders = {
        "sequential": lambda: timed_sweep(grid, work / "sequential", 1),
        "workers": lambda: timed_sweep(grid, work / "workers", args.workers),
    }
    times, _ = common.interleaved(contenders, args.repeats, warmup=False)
    ratios = [w / s for s, w in zip(times["sequential"], times["workers"])]
    result = {
        "machine": common.machine_info(common.LOADED_NOTE),
        "grid": {"model": "bilstm", "runs": 4, "steps": args.steps, "windows": [len(train), len(dev)]},
        "workers": args.workers,
        "seconds": times,
        "ratio_workers_over_sequential": common.median(ratios),
        "ratios": ratios,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    print(f"results: {common.write_result(NAME, result)}")


if __name__ == "__main__":
    main()
