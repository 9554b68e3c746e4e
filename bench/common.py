"""Shared helpers for the benchmarks: data slices, paired interleaved timing, machine info, results.

Every figure a benchmark reports is a ratio against a baseline measured in the same process run:
the two (or more) contenders run alternately within each repeat, and the ratio reported is the
median of the per-repeat ratios, so load from other processes hits them alike.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SHARED = ROOT.parent / "shared"
RUIJIN_TRAIN = SHARED / "data" / "ruijin" / "train"
RUIJIN_UNLABELED = SHARED / "data" / "ruijin" / "unlabeled"
ALBERT_TINY = SHARED / "models" / "albert-tiny-chinese"
BERT_TOKENIZER = SHARED / "models" / "bert-base-chinese-tokenizer"
RESULTS = Path(os.environ["BENCH_RESULTS"]) if os.environ.get("BENCH_RESULTS") else BENCH / "results"
CACHE = Path(tempfile.gettempdir()) / "bertner-bench"

LOADED_NOTE = (
    "figures are ratios against a baseline timed in the same run (interleaved repeats, median of "
    "per-repeat ratios); absolute times depend on the machine's load"
)


# ----------------------------------------------------------------------------- machine and results

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(loaded_note: str | None = None) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "load_average_1_5_15": load_average(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    la = info["load_average_1_5_15"]
    busy = bool(la and la[0] > 0.5 * (os.cpu_count() or 1))
    info["loaded_machine"] = loaded_note or (
        ("the machine was loaded by other processes (1-min load %.1f on %d cores); " % (la[0], os.cpu_count() or 1)
         if busy else "no heavy load seen at start; ") + LOADED_NOTE
    )
    return info


def write_result(name: str, result: dict[str, Any], out_dir: Path | None = None) -> Path:
    out_dir = Path(out_dir or RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- timing

def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(baseline: Sequence[float], ours: Sequence[float]) -> float:
    """Median over repeats of baseline_time / our_time (>1: ours is faster)."""
    return median([b / o for b, o in zip(baseline, ours)])


def interleaved(contenders: dict[str, Callable[[], Any]], repeats: int, warmup: bool = True,
                sync: Callable[[], None] | None = None) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    """Run every contender once per repeat, in turn (order alternates between repeats).

    Returns seconds per contender per repeat, and each call's return value.
    """
    times: dict[str, list[float]] = {k: [] for k in contenders}
    values: dict[str, list[Any]] = {k: [] for k in contenders}
    names = list(contenders)
    if warmup:
        for name in names:
            contenders[name]()
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            if sync:
                sync()
            start = time.perf_counter()
            value = contenders[name]()
            if sync:
                sync()
            times[name].append(time.perf_counter() - start)
            values[name].append(value)
    return times, values


def export_revision(revision: str, folder: Path) -> Path:
    """The bertner package of a git revision, in `folder`, to run as the baseline (PYTHONPATH=folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", revision, "bertner"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "x", "-C", str(folder)], input=archive, check=True)
    return folder


# ----------------------------------------------------------------------------- data

def preprocessed_ruijin(max_chars: int = 256) -> Path:
    """Ruijin train split into train/dev windows (dev ratio 0.2), cached outside the repo."""
    out = CACHE / f"ruijin-{max_chars}"
    if (out / "train.jsonl").exists() and (out / "dev.jsonl").exists():
        return out
    if not RUIJIN_TRAIN.is_dir():
        raise SystemExit(f"{RUIJIN_TRAIN} is not here; the benchmarks need ../shared/data/ruijin")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "bertner", "preprocess", str(RUIJIN_TRAIN), "-o", str(out), "--dev-ratio", "0.2",
           "--max-chars", str(max_chars)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(ROOT))
    return out


def window_slice(n_train: int, n_dev: int, source: Path | None = None):
    """The first `n_train` train and `n_dev` dev windows that have text (deterministic)."""
    from bertner.data.jsonl import read_windows

    source = source or preprocessed_ruijin()
    train = [w for w in read_windows(source / "train.jsonl") if w.text.strip()][:n_train]
    dev = [w for w in read_windows(source / "dev.jsonl") if w.text.strip()]
    return train, dev_with_seen_labels(train, dev)[:n_dev]


def dev_with_seen_labels(train, dev) -> list:
    """The dev windows whose labels all occur in `train` (bertner refuses a dev label it never trained on)."""
    seen = {s.label for w in train for s in w.spans}
    return [w for w in dev if all(s.label in seen for s in w.spans)]


def write_data_dir(folder: Path, train, dev) -> Path:
    """A bertner data folder (train.jsonl, dev.jsonl) holding exactly these windows."""
    from bertner.data.jsonl import write_windows

    folder.mkdir(parents=True, exist_ok=True)
    write_windows(folder / "train.jsonl", train)
    write_windows(folder / "dev.jsonl", dev)
    return folder


def scratch_dir(name: str) -> Path:
    path = CACHE / "scratch" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"x{x:.2f}"
