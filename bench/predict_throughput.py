"""Prediction speed (characters/s) and peak memory: `Predictor.predict` vs transformers' pipeline.

    python bench/predict_throughput.py [--quick]

A small bertner run (tiny encoder, softmax) is trained first; its weights are copied into a
`BertForTokenClassification` (encoder.* -> bert.*, classifier.* -> classifier.*), so both sides tag
with the same model. Documents: `../shared/data/ruijin/unlabeled/*.txt` (a slice).

ours:      `Predictor.from_run(run).predict(documents)` (windows of <= 256 characters, batch 32)
baseline:  `pipeline("token-classification", model, tokenizer, aggregation_strategy="simple",
           stride=128)` called on the documents with batch_size 32 (the pipeline cuts long
           documents into 512-token pieces itself).

Timing: both in one process, interleaved repeats, ratio = median of per-repeat time ratios.
Memory: each side again in its own fresh subprocess; peak RSS (`ru_maxrss`) of that process, and
the growth of RSS from just after loading the model to the peak (what predicting itself costs).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAME = "predict_throughput"


def rss_now_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    """Peak RSS since the last `reset_peak_rss` (VmHWM), else since the process started."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM, so the peak covers only what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def train_small_run(work: Path, steps: int, quick: bool) -> Path:
    from bertner.config import TrainConfig
    from bertner.engine.trainer import train

    run_dir = work / "run"
    if (run_dir / "summary.json").exists() and (run_dir / "bench_steps").exists() \
            and (run_dir / "bench_steps").read_text() == str(steps):
        return run_dir
    train_w, dev_w = common.window_slice(480 if not quick else 240, 100)
    data_dir = common.write_data_dir(work / "data", train_w, dev_w)
    config = TrainConfig(data=str(data_dir), output=str(run_dir), model="tiny", epochs=100, max_steps=steps,
                         batch_size=16, lr=2e-3, log_every=20, device="cpu")
    train(config, force=True)
    (run_dir / "bench_steps").write_text(str(steps))
    return run_dir


def documents(n_docs: int):
    from bertner.predict import gather_documents

    docs = gather_documents([str(common.RUIJIN_UNLABELED)])
    return docs[:n_docs] if n_docs else docs


def ours(run_dir: Path):
    from bertner.predict import Predictor

    predictor = Predictor.from_run(run_dir, device="cpu", batch_size=32)
    return lambda docs: predictor.predict(docs)


def hf_pipeline(run_dir: Path):
    """The same trained weights in a `BertForTokenClassification`, behind transformers' pipeline."""
    from transformers import AutoModelForTokenClassification, pipeline

    from bertner.models.encoder import quiet_transformers
    from bertner.runs import load_run

    run = load_run(run_dir)
    tagger = run.model
    encoder = tagger.encoder
    config = encoder.config
    config.num_labels = len(run.tags)
    config.id2label = dict(enumerate(run.tags))
    config.label2id = {t: i for i, t in enumerate(run.tags)}
    with quiet_transformers():
        model = AutoModelForTokenClassification.from_config(config)
        getattr(model, model.base_model_prefix).load_state_dict(encoder.state_dict(), strict=False)
        model.classifier.load_state_dict(tagger.classifier.state_dict())
        model.eval()
        from bertner.models.encoder import encoder_from_folder

        tokenizer = encoder_from_folder(run_dir / "encoder").tokenizer
        tokenizer.model_max_length = min(512, config.max_position_embeddings)
        nlp = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple",
                       stride=128, device=-1)
    del run, tagger
    return lambda docs: nlp([d.text for d in docs], batch_size=32)


def child(which: str, run_dir: Path, n_docs: int) -> None:
    """One side alone in a fresh process: print seconds, chars and memory as JSON."""
    docs = documents(n_docs)
    predict = ours(run_dir) if which == "ours" else hf_pipeline(run_dir)
    predict(docs[:1])  # warm up on one document
    loaded = rss_now_bytes()
    reset = reset_peak_rss()  # otherwise the peak of imports and loading would hide prediction's
    start = time.perf_counter()
    predict(docs)
    seconds = time.perf_counter() - start
    print(json.dumps({"which": which, "seconds": seconds, "chars": sum(len(d.text) for d in docs),
                      "rss_after_load": loaded, "peak_rss": peak_rss_bytes(), "peak_reset": reset}))


def memory(which: str, run_dir: Path, n_docs: int, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", which, "--run", str(run_dir),
           "--docs", str(n_docs), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=str(common.ROOT))
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False, smoke: bool = False, threads: int = 0, out_dir: Path | None = None, log=print) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    steps, n_docs, repeats = (5, 2, 1) if smoke else (60, 6, 3) if quick else (150, 20, 5)
    work = common.scratch_dir(NAME)
    run_dir = train_small_run(work, steps, quick or smoke)
    docs = documents(n_docs)
    chars = sum(len(d.text) for d in docs)
    fns = {"bertner": ours(run_dir), "pipeline": hf_pipeline(run_dir)}
    # same model, same answers? (entity counts, as a sanity check, not a metric)
    n_ours = sum(len(p.spans) for p in fns["bertner"](docs))
    n_theirs = sum(len(x) for x in fns["pipeline"](docs))
    times, _ = common.interleaved({k: (lambda f=f: f(docs)) for k, f in fns.items()}, repeats, warmup=False)
    ratio = common.paired_ratio(times["pipeline"], times["bertner"])
    log(f"  predict: bertner {chars / common.median(times['bertner']):,.0f} chars/s, pipeline "
        f"{chars / common.median(times['pipeline']):,.0f} chars/s (x{ratio:.2f})")
    mem = {} if smoke else {k: memory(k if k == "ours" else "hf", run_dir, n_docs, threads or torch.get_num_threads())
                            for k in ("ours", "hf")}
    result = {
        "name": NAME,
        "what": "characters/s of Predictor.predict vs transformers pipeline('token-classification') with the "
                "same weights; speedup = median per-repeat time ratio pipeline/bertner",
        "settings": {"documents": len(docs), "characters": chars, "repeats": repeats, "batch_size": 32,
                     "encoder": "tiny (2 layers, hidden 128), softmax", "train_steps": steps, "device": "cpu",
                     "threads": torch.get_num_threads()},
        "bertner_chars_per_s": round(chars / common.median(times["bertner"]), 1),
        "pipeline_chars_per_s": round(chars / common.median(times["pipeline"]), 1),
        "speedup": round(ratio, 3),
        "entities_found": {"bertner": n_ours, "pipeline": n_theirs},
        "machine": common.machine_info(),
    }
    if mem:
        result["memory"] = {
            "bertner_peak_rss_mib": round(mem["ours"]["peak_rss"] / 2**20, 1),
            "pipeline_peak_rss_mib": round(mem["hf"]["peak_rss"] / 2**20, 1),
            "bertner_predict_growth_mib": round((mem["ours"]["peak_rss"] - mem["ours"]["rss_after_load"]) / 2**20, 1),
            "pipeline_predict_growth_mib": round((mem["hf"]["peak_rss"] - mem["hf"]["rss_after_load"]) / 2**20, 1),
            "peak_rss_ratio_pipeline_over_bertner": round(mem["hf"]["peak_rss"] / mem["ours"]["peak_rss"], 3),
            "how": "each side alone in a fresh subprocess; peak = VmHWM after resetting it once the model is loaded "
                   "(/proc/self/clear_refs), i.e. the peak while predicting; growth = that peak - RSS after loading",
            "peak_reset": mem["ours"].get("peak_reset") and mem["hf"].get("peak_reset"),
        }
    common.write_result(NAME, result, out_dir)
    return result


def table(result: dict[str, Any]):
    from rich.table import Table

    t = Table(title="prediction: Predictor.predict vs transformers pipeline (same weights)", title_justify="left")
    for c in ("", "chars/s", "peak RSS MiB", "predict growth MiB"):
        t.add_column(c, justify="right" if c else "left")
    m = result.get("memory", {})
    t.add_row("bertner", f"{result['bertner_chars_per_s']:,.0f}", str(m.get("bertner_peak_rss_mib", "-")),
              str(m.get("bertner_predict_growth_mib", "-")))
    t.add_row("pipeline", f"{result['pipeline_chars_per_s']:,.0f}", str(m.get("pipeline_peak_rss_mib", "-")),
              str(m.get("pipeline_predict_growth_mib", "-")))
    t.add_row("speed-up", common.fmt_ratio(result["speedup"]), "", "")
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--child", choices=("ours", "hf"), help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--docs", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.run, args.docs)
        return
    from rich.console import Console

    Console().print(table(run(args.quick, threads=args.threads)))


if __name__ == "__main__":
    main()
