"""Run every benchmark (or one), print one table, write bench/results/<name>.json + summary.json.

    python bench/run.py                 # all, CPU sizes (under 15 minutes on 2 shared cores)
    python bench/run.py --quick         # smoke-sized, a few minutes
    python bench/run.py --only scaling  # one of: train_throughput, predict_throughput, scaling, crf_speed

Every figure is a ratio against a baseline timed in the same run (interleaved repeats, median of
per-repeat ratios); absolute times are kept in the JSON but depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAMES = ("crf_speed", "train_throughput", "predict_throughput", "scaling")


def run_crf_speed(quick: bool, threads: int) -> dict:
    out = common.RESULTS / "crf_speed.json"
    cmd = [sys.executable, str(common.BENCH / "crf_speed.py"), "--device", "cpu", "--repeats", "5" if quick else "11",
           "--threads", str(threads or 1), "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=NAMES)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for every benchmark (default 1)")
    args = parser.parse_args()
    import predict_throughput
    import scaling
    import train_throughput
    from rich.console import Console
    from rich.table import Table

    console = Console()
    log = lambda m: console.print(m, highlight=False)  # noqa: E731
    results, seconds = {}, {}
    for name in NAMES if not args.only else (args.only,):
        start = time.perf_counter()
        log(f"[bold]{name}[/bold]{' (quick)' if args.quick else ''} ...")
        if name == "crf_speed":
            results[name] = run_crf_speed(args.quick, args.threads)
        else:
            module = {"train_throughput": train_throughput, "predict_throughput": predict_throughput,
                      "scaling": scaling}[name]
            results[name] = module.run(quick=args.quick, threads=args.threads, log=log)
        seconds[name] = round(time.perf_counter() - start, 1)

    table = Table(title="bertner benchmarks: ratios vs a baseline timed in the same run (>1: bertner faster)",
                  title_justify="left")
    for c in ("benchmark", "what", "ratio", "detail"):
        table.add_column(c, justify="right" if c == "ratio" else "left")
    if "crf_speed" in results:
        r = results["crf_speed"]
        table.add_row("crf_speed", "viterbi vs pytorch-crf decode", common.fmt_ratio(r["decode_speedup"]),
                      f"paths identical: {r['paths_identical']}")
        table.add_row("crf_speed", "likelihood+backward vs pytorch-crf", common.fmt_ratio(r["likelihood_speedup"]), "")
    if "train_throughput" in results:
        for r in results["train_throughput"]["rows"]:
            table.add_row("train_throughput", f"{r['encoder']}/{r['variant']} same work vs HF loop, {r['steps']} steps",
                          common.fmt_ratio(r["speedup"]), f"dev F1 {r['bertner_f1']:.3f} vs {r['baseline_f1']:.3f}")
    if "predict_throughput" in results:
        r = results["predict_throughput"]
        m = r.get("memory", {})
        table.add_row("predict_throughput", "chars/s vs transformers pipeline", common.fmt_ratio(r["speedup"]),
                      f"peak RSS {m.get('bertner_peak_rss_mib', '-')} vs {m.get('pipeline_peak_rss_mib', '-')} MiB")
    if "scaling" in results:
        r = results["scaling"]
        for row in r["window_length"]:
            table.add_row("scaling", f"epoch time, windows of {row['max_chars']} vs 256 chars",
                          common.fmt_ratio(row["epoch_time_vs_256"]), f"{row['chars']:,} chars either way")
        for row in r["corpus_size"]:
            table.add_row("scaling", f"epoch time, {int(row['fraction'] * 100)}% vs 25% corpus",
                          common.fmt_ratio(row["time_vs_25pct"]), f"linear: {common.fmt_ratio(row['chars_vs_25pct'])}")
        table.add_row("scaling", "verdict", "", r["verdict"])
    console.print(table)

    summary_path = common.RESULTS / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() and args.only else {}
    summary.update({
        "machine": common.machine_info(),
        "quick": args.quick,
        "threads": args.threads,
        "seconds": {**summary.get("seconds", {}), **seconds},
    })
    summary.setdefault("results", {}).update({name: f"{name}.json" for name in results})
    if "train_throughput" in results:
        summary.setdefault("targets", {}).update(results["train_throughput"]["target"])
    if "crf_speed" in results:
        summary.setdefault("targets", {})["cpu_viterbi_not_slower"] = results["crf_speed"]["decode_speedup"] >= 1.0
    common.write_result("summary", summary)
    log(f"wrote {common.RESULTS}/summary.json ({sum(seconds.values()):.0f} s)")


if __name__ == "__main__":
    main()
