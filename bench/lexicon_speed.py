"""What `--lexicon` (and `--softword`) cost: training and predict speed of the bilstm with and without them, in one run.

    python bench/lexicon_speed.py                     # MSRA, --lexicon jieba, 1 thread, 2 repeats
    python bench/lexicon_speed.py --init-embeddings jieba-lac --softword --before 3b578e4
    python bench/lexicon_speed.py --corpus ruijin --lexicon jieba --lexicon ../shared/lexicons/huatuo

Training: `bertner train DATA --model bilstm --crf [--lexicon ...] --max-steps N` in its own process
(recipe defaults), its `tokens_per_second` (the engine's clock, first batch to last step; set-up,
which includes matching the lexicon once, is not in it and is reported apart as wall seconds, and
as a share of an epoch). Predict: `Predictor.predict` over the test (MSRA) or dev (Ruijin) windows'
texts, characters/s, in a process of its own, after one warm-up pass. The contenders alternate
within each repeat and each figure is the median of the per-repeat ratios (bench/README.md), so load
from other work hits both. `--before REV`: the same pair timed with the bertner of that git revision
too (exported with `git archive`), in the same repeats: the before/after of a change.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import study_data  # noqa: E402

NAME = "lexicon_speed"
PREDICT = """
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
from bertner.predict import Predictor
from bertner.spans import Document
texts = json.loads(open(sys.argv[2], encoding="utf-8").read())
predictor = Predictor.from_run(sys.argv[1], device="cpu")
documents = [Document(f"d{i}", t) for i, t in enumerate(texts)]
predictor.predict(documents[:200])  # warm-up
started = time.perf_counter()
predictor.predict(documents)
print(json.dumps(sum(map(len, texts)) / (time.perf_counter() - started)))
"""


def train_once(code: Path, data: Path, run: Path, flags: list[str], steps: int, threads: int) -> dict:
    cmd = [sys.executable, "-m", "bertner", "train", str(data), "--model", "bilstm", "--crf", "--max-steps", str(steps),
           "--eval-every", "1000000", "--num-threads", str(threads), "-o", str(run), "--force", *flags]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=str(code), env=environment(code, threads))
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    return {"tokens_per_second": summary["tokens_per_second"], "train_seconds": summary["train_seconds"],
            "wall_seconds": time.perf_counter() - started}


def predict_chars_per_second(code: Path, run: Path, texts_file: Path, threads: int) -> float:
    done = subprocess.run([sys.executable, "-c", PREDICT, str(run), str(texts_file), str(threads)], check=True,
                          capture_output=True, text=True, cwd=str(code), env=environment(code, threads))
    return float(done.stdout.strip().splitlines()[-1])


def environment(code: Path, threads: int) -> dict[str, str]:
    """The bertner in `code` first on the path (the installed one may be another checkout)."""
    return {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads)}


def feature_flags(args: argparse.Namespace) -> list[str]:
    flags = [part for source in args.lexicon for part in ("--lexicon", source)]
    if args.init_embeddings:
        flags += ["--init-embeddings", args.init_embeddings]
    return flags + (["--softword"] if args.softword else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=("msra", "ruijin"), default="msra")
    parser.add_argument("--lexicon", action="append", default=None, metavar="SOURCE")
    parser.add_argument("--init-embeddings", metavar="SOURCE", help="for the contender (e.g. jieba-lac: the best MSRA row)")
    parser.add_argument("--softword", action="store_true", help="the contender also with --softword")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--before", metavar="REV", help="also time the bertner of this git revision (the baseline of a change)")
    parser.add_argument("--name", default=NAME, help="the result file, bench/results/NAME.json")
    args = parser.parse_args()
    args.lexicon = args.lexicon if args.lexicon is not None else ["jieba"]
    flags = feature_flags(args)
    from bertner.data.jsonl import read_windows

    data = study_data.msra() if args.corpus == "msra" else study_data.ruijin()
    texts = [w.text for w in read_windows(data / ("test.jsonl" if args.corpus == "msra" else "dev.jsonl")) if w.text]
    epoch_tokens = sum(len(w.text) + 2 for w in read_windows(data / "train.jsonl") if w.text)  # [CLS] text [SEP]
    scratch = common.scratch_dir(NAME)
    texts_file = scratch / "texts.json"
    texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    sides = {"now": common.ROOT}
    exported = Path(tempfile.mkdtemp(prefix="bertner-lexicon-speed-"))
    try:
        if args.before:
            sides["before"] = common.export_revision(args.before, exported)
        rounds = []
        for repeat in range(args.repeats):
            measured = {}
            for side, code in sides.items():
                for contender, contender_flags in (("plain", []), ("features", flags)):
                    run = scratch / f"{side}-{contender}"
                    result = train_once(code, data, run, contender_flags, args.steps, args.threads)
                    result["predict_chars_per_second"] = predict_chars_per_second(code, run, texts_file, args.threads)
                    measured[f"{side}/{contender}"] = result
            rounds.append(measured)
            for side in sides:
                plain, features = measured[f"{side}/plain"], measured[f"{side}/features"]
                print(f"repeat {repeat + 1}, {side}: train {features['tokens_per_second']:,.0f} vs "
                      f"{plain['tokens_per_second']:,.0f} tokens/s; predict {features['predict_chars_per_second']:,.0f} vs "
                      f"{plain['predict_chars_per_second']:,.0f} characters/s", flush=True)
    finally:
        shutil.rmtree(exported, ignore_errors=True)

    def ratio(side: str, key: str) -> float:
        return round(statistics.median(r[f"{side}/features"][key] / r[f"{side}/plain"][key] for r in rounds), 3)

    def setup_extra(side: str) -> float:
        extra = [(r[f"{side}/features"]["wall_seconds"] - r[f"{side}/features"]["train_seconds"])
                 - (r[f"{side}/plain"]["wall_seconds"] - r[f"{side}/plain"]["train_seconds"]) for r in rounds]
        return round(statistics.median(extra), 1)

    result = {"name": args.name, "machine": common.machine_info(), "corpus": args.corpus, "flags": flags, "steps": args.steps,
              "threads": args.threads, "before": args.before, "epoch_tokens": epoch_tokens, "rounds": rounds}
    for side in sides:
        epoch_seconds = epoch_tokens / statistics.median(r[f"{side}/features"]["tokens_per_second"] for r in rounds)
        result[side] = {"train_speed_ratio": ratio(side, "tokens_per_second"),
                        "predict_speed_ratio": ratio(side, "predict_chars_per_second"),
                        "setup_seconds_extra": setup_extra(side),
                        "setup_share_of_epoch": round(setup_extra(side) / epoch_seconds, 3)}
        print(f"{side}: with {' '.join(flags)}: training {result[side]['train_speed_ratio']:.2f}x, predict "
              f"{result[side]['predict_speed_ratio']:.2f}x the plain bilstm's speed; set-up +{result[side]['setup_seconds_extra']} s "
              f"({result[side]['setup_share_of_epoch']:.0%} of an epoch)")
    common.write_result(args.name, result)


if __name__ == "__main__":
    main()
