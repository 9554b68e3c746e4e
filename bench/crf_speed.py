"""Time our on-device `CRF.viterbi` and likelihood against pytorch-crf's `decode` and `forward`.

    python bench/crf_speed.py --device cpu --repeats 5

It also times our two normalisers against each other (value and backward): the forward-backward
time loop (`LogPartition`, what a CPU runs) and the log2(T)-level tree (`tree_log_partition`,
what a GPU runs), with the tree's peak memory on a GPU.

Batch 64, lengths sampled from 32..256, 31 tags (15 labels in BIO). Each call is timed as a
user makes it (pytorch-crf's `decode` returns Python lists; ours returns a padded tensor).
Writes bench/results/crf_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torchcrf

from bertner.models.crf import CRF, LogPartition, tree_log_partition

RESULTS = Path(__file__).resolve().parent / "results" / "crf_speed.json"


def paired_times(ours: Callable[[], object], theirs: Callable[[], object], repeats: int,
                 device: torch.device) -> tuple[float, float, float]:
    """Median seconds of each, and the median per-repeat ratio theirs/ours.

    The two run alternately within each repeat, so load from other processes on a shared
    machine hits both alike; the paired ratio is the figure to trust.
    """

    def timed(fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed(ours), timed(theirs)  # warm-up (allocations, kernels)
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(ours))
        b.append(timed(theirs))
    ratio = statistics.median(y / x for x, y in zip(a, b))
    return statistics.median(a), statistics.median(b), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tags", type=int, default=31)
    parser.add_argument("--min-len", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(args.seed)
    lengths = torch.randint(args.min_len, args.max_len + 1, (args.batch,))
    lengths[0] = args.max_len  # the padded width is the longest sentence, as in a real batch
    steps = int(lengths.max())
    crf = CRF(args.tags).to(device)
    with torch.no_grad():
        crf.transitions.normal_()  # trained-looking weights, not pytorch-crf's +-0.1 init
    emissions = torch.randn(args.batch, steps, args.tags, device=device) * 3
    mask = (torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)).to(device)
    tags = torch.randint(0, args.tags, (args.batch, steps), device=device)

    with torch.no_grad():
        ours = crf.viterbi(emissions, mask)
        theirs = torchcrf.CRF.decode(crf, emissions, mask)
        identical = ours.cpu().tolist() == [p + [0] * (steps - len(p)) for p in theirs]
        llh_ours = crf.log_likelihood(emissions, tags, mask, "none")
        llh_theirs = torchcrf.CRF.forward(crf, emissions, tags, mask, reduction="none")
        llh_max_diff = float((llh_ours - llh_theirs).abs().max())

        vit, dec, decode_speedup = paired_times(
            lambda: crf.viterbi(emissions, mask), lambda: torchcrf.CRF.decode(crf, emissions, mask),
            args.repeats, device)
    # The likelihood is timed with its backward pass, as training uses it.
    em_grad = emissions.clone().requires_grad_(True)
    llh, fwd, likelihood_speedup = paired_times(
        lambda: crf.log_likelihood(em_grad, tags, mask).backward(),
        lambda: torchcrf.CRF.forward(crf, em_grad, tags, mask).backward(), args.repeats, device)
    params = (crf.start_transitions, crf.transitions, crf.end_transitions)
    tree_memory = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        tree_log_partition(em_grad, mask, *params).sum().backward()
        tree_memory = torch.cuda.max_memory_allocated(device) - before
    with torch.no_grad():
        normaliser_max_diff = float((tree_log_partition(emissions, mask, *params)
                                     - LogPartition.apply(emissions, mask, *params)).abs().max())
    tree, loop, tree_speedup = paired_times(
        lambda: tree_log_partition(em_grad, mask, *params).sum().backward(),
        lambda: LogPartition.apply(em_grad, mask, *params).sum().backward(), args.repeats, device)
    rows = {"viterbi (ours)": vit, "decode (pytorch-crf)": dec,
            "likelihood+backward (ours)": llh, "forward+backward (pytorch-crf)": fwd,
            "log Z+backward, tree": tree, "log Z+backward, time loop": loop}

    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch, "tags": args.tags, "padded_len": steps,
        "tokens": int(lengths.sum()), "repeats": args.repeats,
        "median_s": rows,
        "decode_speedup": decode_speedup,
        "likelihood_speedup": likelihood_speedup,
        "paths_identical": identical,
        "likelihood_max_abs_diff": llh_max_diff,
        "tree_speedup": tree_speedup,
        "tree_vs_loop_max_abs_diff": normaliser_max_diff,
        "tree_peak_bytes": tree_memory,
    }
    print(f"{args.device}: batch {args.batch}, {args.tags} tags, padded length {steps}, {result['tokens']} tokens, "
          f"median of {args.repeats}")
    for name, seconds in rows.items():
        print(f"  {name:32s} {seconds * 1000:9.2f} ms")
    print(f"  decode speed-up (paired median)      x{result['decode_speedup']:.1f}   paths identical: {identical}")
    print(f"  likelihood speed-up (paired median) x{result['likelihood_speedup']:.2f}  max |diff| {llh_max_diff:.2e}")
    print(f"  tree over time loop (paired median)  x{tree_speedup:.2f}  max |diff| {normaliser_max_diff:.2e}"
          + (f"  tree peak {tree_memory / 2**20:.0f} MiB" if tree_memory else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
