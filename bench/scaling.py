"""How bertner's training time scales with window length and with corpus size.

    python bench/scaling.py [--quick]

The same Ruijin documents (a slice) are re-windowed with `make_windows` at 64, 128, 256 and 512
characters and one epoch is trained on each (tiny encoder, softmax, batch 16 windows, max_length
512, so 512-character windows are chunked with overlap as bertner does). Same characters every
time: linear cost in tokens would give the same time per epoch; attention's quadratic term and
per-step overheads (more, shorter steps for short windows) show up as departures from it.

Corpus size: 25%, 50% and 100% of the documents at 256 characters, one epoch each: linear means
time ratios 2 and 4 against 25%. A least-squares line time = a + b * chars and a log-log slope
(1.0 = linear) are reported.

All configurations run round-robin within each repeat (order rotating); figures are ratios of
medians against the 256-character (resp. 25%) configuration of the same run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAME = "scaling"
LENGTHS = (64, 128, 256, 512)
FRACTIONS = (0.25, 0.5, 1.0)


def documents_slice(n_docs: int):
    from bertner.data.jsonl import read_windows, windows_to_documents

    windows = read_windows(common.preprocessed_ruijin() / "train.jsonl")
    docs = windows_to_documents(windows)
    return docs[:n_docs]


def rewindow(docs, max_chars: int):
    from bertner.data.windows import make_windows
    from bertner.spans import Span

    out = []
    for d in docs:
        spans = [Span(e.start, e.end, e.label) for e in d.entities]
        windows, _ = make_windows(d.id, d.text, spans, max_chars)
        out.extend(w for w in windows if w.text.strip())
    return out


def epoch_seconds(windows, work: Path, layers: int, hidden: int, batch_size: int) -> dict[str, Any]:
    """Train one epoch (evaluation stubbed out); seconds of the loop and tokens seen."""
    from bertner.config import TrainConfig
    from bertner.engine.tracking import Tracker
    from bertner.engine.trainer import Trainer

    data_dir = common.write_data_dir(work / "data", windows, [])
    config = TrainConfig(data=str(data_dir), output=str(work / "run"), model="tiny", epochs=1, batch_size=batch_size,
                         lr=2e-3, tiny_layers=layers, tiny_hidden=hidden, tiny_heads=2, device="cpu", log_every=20)
    trainer = Trainer(config, force=True)
    trainer.setup()
    start = time.perf_counter()
    trainer.train_loop(Tracker(trainer.run, trainer.total_steps, enabled=False), evaluate=False)
    return {"seconds": time.perf_counter() - start, "tokens": trainer.state["tokens"], "steps": trainer.state["step"]}


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def line_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x; returns (a, b, r^2)."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys) or 1e-12
    return a, b, 1 - ss_res / ss_tot


def run(quick: bool = False, smoke: bool = False, threads: int = 1, out_dir: Path | None = None, log=print) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    n_docs, repeats, layers, hidden = (2, 1, 1, 32) if smoke else (6, 2, 2, 128) if quick else (16, 3, 2, 128)
    batch_size = 16
    docs = documents_slice(n_docs)
    work = common.scratch_dir(NAME)
    configs: dict[str, list] = {f"len{n}": rewindow(docs, n) for n in LENGTHS}
    full = configs["len256"]
    doc_ids = sorted({w.doc for w in full})
    for f in FRACTIONS[:-1]:
        keep = set(doc_ids[: max(1, round(len(doc_ids) * f))])
        configs[f"size{int(f * 100)}"] = [w for w in full if w.doc in keep]
    configs["size100"] = full  # the same windows as len256; timed separately all the same
    chars = {k: sum(len(w.text) for w in v) for k, v in configs.items()}
    names = list(configs)
    epoch_seconds(configs["size25"][:8], work, layers, hidden, batch_size)  # warm-up
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            runs[name].append(epoch_seconds(configs[name], work, layers, hidden, batch_size))
        log(f"  scaling repeat {r + 1}/{repeats}: " + ", ".join(f"{k} {runs[k][-1]['seconds']:.1f}s" for k in names))
    sec = {k: common.median([x["seconds"] for x in v]) for k, v in runs.items()}

    def per_repeat_ratio(a: str, b: str) -> float:
        return common.median([x["seconds"] / y["seconds"] for x, y in zip(runs[a], runs[b])])

    length_rows = [{
        "max_chars": n, "windows": len(configs[f"len{n}"]), "chars": chars[f"len{n}"],
        "tokens": runs[f"len{n}"][0]["tokens"], "steps": runs[f"len{n}"][0]["steps"],
        "median_epoch_s": round(sec[f"len{n}"], 3),
        "epoch_time_vs_256": round(per_repeat_ratio(f"len{n}", "len256"), 3),
        "seconds_per_1000_windows": round(1000 * sec[f"len{n}"] / len(configs[f"len{n}"]), 3),
    } for n in LENGTHS]
    size_rows = [{
        "fraction": f, "windows": len(configs[f"size{int(f * 100)}"]), "chars": chars[f"size{int(f * 100)}"],
        "median_epoch_s": round(sec[f"size{int(f * 100)}"], 3),
        "time_vs_25pct": round(per_repeat_ratio(f"size{int(f * 100)}", "size25"), 3),
        "chars_vs_25pct": round(chars[f"size{int(f * 100)}"] / chars["size25"], 3),
    } for f in FRACTIONS]
    xs = [float(r["chars"]) for r in size_rows]
    ys = [r["median_epoch_s"] for r in size_rows]
    a, b, r2 = line_fit(xs, ys)
    size_slope = loglog_slope(xs, ys)
    len_slope = loglog_slope([float(n) for n in LENGTHS], [r["median_epoch_s"] for r in length_rows])
    result = {
        "name": NAME,
        "what": "one training epoch of bertner (tiny encoder, softmax) over the same documents re-windowed at "
                "different lengths, and over growing document subsets; ratios of per-repeat times",
        "settings": {"documents": len(docs), "repeats": repeats, "tiny_layers": layers, "tiny_hidden": hidden,
                     "batch_size": batch_size, "max_length": 512, "threads": torch.get_num_threads()},
        "window_length": length_rows,
        "window_length_loglog_slope": round(len_slope, 3),
        "corpus_size": size_rows,
        "corpus_size_fit": {"intercept_s": round(a, 3), "seconds_per_1000_chars": round(1000 * b, 4),
                            "r2": round(r2, 4), "loglog_slope": round(size_slope, 3)},
        "machine": common.machine_info(),
    }
    result["verdict"] = verdict(result)
    common.write_result(NAME, result, out_dir)
    return result


def verdict(result: dict[str, Any]) -> str:
    slope = result["corpus_size_fit"]["loglog_slope"]
    size = "linear in corpus size" if abs(slope - 1) <= 0.15 else f"not linear in corpus size (log-log slope {slope:.2f})"
    ls = result["window_length_loglog_slope"]
    if abs(ls) <= 0.15:
        length = "epoch time about flat in window length at equal characters (cost linear in tokens)"
    elif ls > 0:
        length = f"epoch time grows with window length at equal characters (log-log slope {ls:.2f}: attention's quadratic term)"
    else:
        length = f"epoch time falls as windows grow at equal characters (log-log slope {ls:.2f}: per-step overhead dominates)"
    return f"{size}; {length}"


def table(result: dict[str, Any]):
    from rich.table import Table

    t = Table(title=f"scaling: {result['verdict']}", title_justify="left")
    for c in ("config", "windows", "chars", "epoch s (median)", "time ratio", "ideal if linear"):
        t.add_column(c, justify="left" if c == "config" else "right")
    for r in result["window_length"]:
        t.add_row(f"window {r['max_chars']} chars", str(r["windows"]), f"{r['chars']:,}", f"{r['median_epoch_s']:.2f}",
                  common.fmt_ratio(r["epoch_time_vs_256"]) + " vs 256", "x1.00")
    for r in result["corpus_size"]:
        t.add_row(f"corpus {int(r['fraction'] * 100)}%", str(r["windows"]), f"{r['chars']:,}", f"{r['median_epoch_s']:.2f}",
                  common.fmt_ratio(r["time_vs_25pct"]) + " vs 25%", common.fmt_ratio(r["chars_vs_25pct"]))
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from rich.console import Console

    Console().print(table(run(args.quick, threads=args.threads)))


if __name__ == "__main__":
    main()
