"""Training speed on CPU by torch thread count: what `--num-threads`'s default (0: by model) rests on.

    python bench/cpu_threads.py                  # bilstm, tiny and ALBERT-tiny (when ../shared has it)
    python bench/cpu_threads.py --repeats 1 --steps 40

Each model trains `--steps` steps of `bertner train --crf` (recipe defaults, its own process) with
`--num-threads 1` against `--num-threads 2`, alternating, on 1,000 Ruijin windows of 256 characters;
its speed is `summary.json`'s `tokens_per_second`. Twice: on the idle machine, and with one other
process spinning on a core (a second job, or a second run of the 2-core ensemble recipe). The
ratio is 2 threads' speed over 1 thread's: below 1, one thread trains faster. Idle CPU threads sleep
(`OMP_WAIT_POLICY=PASSIVE`, as `bertner` sets it unless the environment says otherwise).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAME = "cpu_threads"


def tokens_per_second(data: Path, model: str, threads: int, steps: int, out: Path) -> float:
    cmd = [sys.executable, "-m", "bertner", "train", str(data), "--model", model, "--crf", "--max-steps", str(steps),
           "--num-threads", str(threads), "-o", str(out), "--force", "--log-every", "1000"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(common.ROOT))
    return float(json.loads((out / "summary.json").read_text(encoding="utf-8"))["tokens_per_second"])


@contextmanager
def one_core_busy(busy: bool) -> Iterator[None]:
    """A process that spins for as long as the block runs: the other job on a shared machine."""
    if not busy:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60, help="steps per run (ALBERT-tiny: a third of them)")
    args = parser.parse_args()
    train, dev = common.window_slice(1000, 20)
    data = common.write_data_dir(common.scratch_dir(NAME) / "data", train, dev)
    out = common.scratch_dir(NAME) / "run"
    models = {"bilstm": args.steps, "tiny": args.steps}
    if common.ALBERT_TINY.is_dir():
        models[str(common.ALBERT_TINY)] = max(5, args.steps // 3)
    rows = []
    for busy in (False, True):
        for model, steps in models.items():
            contenders = {threads: (lambda t=threads, m=model, s=steps: tokens_per_second(data, m, t, s, out))
                          for threads in (1, 2)}
            with one_core_busy(busy):
                _, speeds = common.interleaved(contenders, args.repeats, warmup=False)
            name = Path(model).name
            row = {"model": name, "other_core_busy": busy, "steps": steps,
                   "tokens_per_second_1": common.median(speeds[1]), "tokens_per_second_2": common.median(speeds[2]),
                   "two_over_one": common.median([two / one for one, two in zip(speeds[1], speeds[2])])}
            rows.append(row)
            print(f"{name:20s} {'busy' if busy else 'idle'}  1 thread {row['tokens_per_second_1']:>8,.0f}  "
                  f"2 threads {row['tokens_per_second_2']:>8,.0f} tokens/s  2/1 {row['two_over_one']:.2f}x", flush=True)
    result = {"name": NAME, "machine": common.machine_info(), "repeats": args.repeats, "rows": rows}
    common.write_result(NAME, result)


if __name__ == "__main__":
    main()
