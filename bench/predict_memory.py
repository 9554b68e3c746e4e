"""Peak memory of `bertner predict` against input size: it streams, so the peak should not grow.

    python bench/predict_memory.py [--sizes 1,5,20] [--before REV] [--quick]

Inputs: the texts of `../shared/data/ruijin/unlabeled` (59 files, about 1 MB of UTF-8) copied again
and again under new names into a temporary folder outside the repo until the folder holds the
size asked for (MB = 10^6 bytes of UTF-8 text on disk).

Each size runs `python -m bertner predict RUN INPUTS --format jsonl -o OUT --device cpu` in its own
fresh process; its peak RSS is the `ru_maxrss` that `os.wait4` reports for that process alone, so
imports, model loading and all of prediction are inside the figure. (Linux counts the memory of
the process that started it in a child's `ru_maxrss`, so this process stays small: it never
imports torch before the measurements, and the model is trained in a subprocess of its own.) The model is a tiny encoder (1
layer, hidden 64) trained for a few steps on Ruijin windows: what prediction holds in memory
depends on the input, not on how well the model tags.

Done when: peak RSS at 20 MB within 1.3x of that at 1 MB. `--before REV` also measures the bertner
of that git revision (exported with `git archive` into a temporary folder), as the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # this checkout's bertner
import common  # noqa: E402

NAME = "predict_memory"
TARGET_RATIO = 1.3  # the done-when: flat within 1.3x from 1 to 20 MB
MB = 1_000_000


def build_inputs(source: Path, folder: Path, size_bytes: int) -> dict[str, int]:
    """Copies of `source`'s .txt files (r0_a.txt, r0_b.txt, ..., r1_a.txt, ...) until `size_bytes` are there."""
    texts = sorted(source.glob("*.txt"))
    if not texts:
        raise SystemExit(f"no .txt files in {source}")
    folder.mkdir(parents=True, exist_ok=True)
    written = files = characters = 0
    round_ = 0
    while written < size_bytes:
        for path in texts:
            if written >= size_bytes:
                break
            data = path.read_bytes()
            (folder / f"r{round_}_{path.name}").write_bytes(data)
            written += len(data)
            characters += len(data.decode("utf-8"))
            files += 1
        round_ += 1
    return {"bytes": written, "characters": characters, "documents": files}


def train_tiny_run(work: Path, steps: int) -> Path:
    from bertner.config import TrainConfig
    from bertner.engine.trainer import train

    run_dir = work / "run"
    if (run_dir / "summary.json").exists():
        return run_dir  # trained by an earlier run of this benchmark
    train_w, dev_w = common.window_slice(240, 60)
    data_dir = common.write_data_dir(work / "data", train_w, dev_w)
    config = TrainConfig(data=str(data_dir), output=str(run_dir), model="tiny", tiny_layers=1, tiny_hidden=64,
                         tiny_heads=2, epochs=100, max_steps=steps, batch_size=16, lr=2e-3, log_every=50, device="cpu")
    train(config, force=True)
    return run_dir


def measure(code_root: Path, run_dir: Path, inputs: Path, out: Path, threads: int) -> dict[str, Any]:
    """Run predict on `inputs` in a fresh process; its own peak RSS and wall time."""
    env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "bertner", "predict", str(run_dir), str(inputs), "--format", "jsonl", "-o", str(out),
           "--device", "cpu", "--force"]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=code_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"predict failed ({child.returncode}): {stderr.decode(errors='replace')[-2000:]}")
    lines = sum(1 for _ in out.open(encoding="utf-8"))
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "seconds": round(seconds, 1), "documents_written": lines}


def run(sizes: list[float], before: str | None = None, threads: int = 1, steps: int = 40, log=print) -> dict[str, Any]:
    work = common.scratch_dir(NAME)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, __file__, "--train", str(work), "--steps", str(steps)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    run_dir = work / "run"
    sides = {"bertner": common.ROOT}
    scratch = Path(tempfile.mkdtemp(prefix="bertner-predict-memory-"))
    try:
        if before:
            sides[f"before ({before})"] = common.export_revision(before, scratch / "before")
        rows = []
        for size in sizes:
            inputs = scratch / f"inputs-{size:g}MB"
            made = build_inputs(common.RUIJIN_UNLABELED, inputs, int(size * MB))
            row: dict[str, Any] = {"size_mb": size, **made}
            for side, root in sides.items():
                result = measure(root, run_dir, inputs, scratch / "out.jsonl", threads)
                assert result["documents_written"] == made["documents"], result
                row[side] = {**result, "chars_per_s": round(made["characters"] / result["seconds"])}
                log(f"  {size:g} MB ({made['characters']:,} characters, {made['documents']} documents), {side}: "
                    f"peak RSS {result['peak_rss_mib']:,.0f} MiB, {result['seconds']:.0f} s")
            shutil.rmtree(inputs)
            rows.append(row)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    peaks = [row["bertner"]["peak_rss_mib"] for row in rows]
    ratio = peaks[-1] / peaks[0]
    result = {
        "name": NAME,
        "what": "peak RSS of `bertner predict RUN FOLDER -f jsonl -o FILE` (the whole process, in its own subprocess, "
                "ru_maxrss from os.wait4) against input size; inputs are ruijin/unlabeled repeated",
        "settings": {"sizes_mb": sizes, "encoder": "tiny (1 layer, hidden 64), softmax", "train_steps": steps,
                     "batch_size": 32, "device": "cpu", "threads": threads, "before": before},
        "rows": rows,
        "peak_ratio_largest_vs_smallest": round(ratio, 3),
        "target": {f"flat_within_{TARGET_RATIO}x": ratio <= TARGET_RATIO},
        "machine": common.machine_info(),
    }
    common.write_result(NAME, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,5,20", help="input sizes in MB, comma-separated (default 1,5,20)")
    parser.add_argument("--before", help="also measure this git revision of bertner (e.g. the commit before streaming)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="sizes 0.2,1 and a shorter training")
    parser.add_argument("--train", type=Path, help=argparse.SUPPRESS)  # in a subprocess: train the tiny run here
    parser.add_argument("--steps", type=int, default=40, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train:
        train_tiny_run(args.train, args.steps)
        return
    sizes = [0.2, 1.0] if args.quick else [float(s) for s in args.sizes.split(",")]
    result = run(sizes, args.before, args.threads, steps=10 if args.quick else 40)
    print(json.dumps({"peak_ratio_largest_vs_smallest": result["peak_ratio_largest_vs_smallest"], **result["target"]}))


if __name__ == "__main__":
    main()
