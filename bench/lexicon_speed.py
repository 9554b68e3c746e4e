"""What `--lexicon` costs: training and predict speed of the bilstm with and without it, in one run.

    python bench/lexicon_speed.py                     # MSRA, --lexicon jieba, 1 thread, 2 repeats
    python bench/lexicon_speed.py --corpus ruijin --lexicon jieba --lexicon ../shared/lexicons/huatuo

Training: `bertner train DATA --model bilstm --crf [--lexicon ...] --max-steps N` in its own process
(recipe defaults), its `tokens_per_second` (the engine's clock, first batch to last step; set-up,
which includes matching the lexicon once, is not in it and is reported apart as wall seconds).
Predict: `Predictor.predict` over the test (MSRA) or dev (Ruijin) windows' texts, characters/s, in
this process, after one warm-up pass. The two contenders alternate within each repeat and each
figure is the median of the per-repeat ratios (bench/README.md), so load from other work hits both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import study_data  # noqa: E402

NAME = "lexicon_speed"


def train_once(data: Path, run: Path, lexicon: list[str], steps: int, threads: int) -> dict:
    cmd = [sys.executable, "-m", "bertner", "train", str(data), "--model", "bilstm", "--crf", "--max-steps", str(steps),
           "--eval-every", "1000000", "--num-threads", str(threads), "-o", str(run), "--force"]
    for source in lexicon:
        cmd += ["--lexicon", source]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=str(common.ROOT))
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    return {"tokens_per_second": summary["tokens_per_second"], "train_seconds": summary["train_seconds"],
            "wall_seconds": time.perf_counter() - started}


def predict_chars_per_second(run: Path, texts: list[str]) -> float:
    from bertner.predict import Predictor
    from bertner.spans import Document

    predictor = Predictor.from_run(run, device="cpu")
    documents = [Document(f"d{i}", t) for i, t in enumerate(texts)]
    predictor.predict(documents[:200])  # warm-up
    started = time.perf_counter()
    predictor.predict(documents)
    return sum(map(len, texts)) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=("msra", "ruijin"), default="msra")
    parser.add_argument("--lexicon", action="append", default=None, metavar="SOURCE")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    lexicon = args.lexicon or ["jieba"]
    import torch

    from bertner.data.jsonl import read_windows

    torch.set_num_threads(args.threads)
    data = study_data.msra() if args.corpus == "msra" else study_data.ruijin()
    texts = [w.text for w in read_windows(data / ("test.jsonl" if args.corpus == "msra" else "dev.jsonl")) if w.text]
    scratch = common.scratch_dir(NAME)
    rounds = []
    for repeat in range(args.repeats):
        plain = train_once(data, scratch / "plain", [], args.steps, args.threads)
        with_lexicon = train_once(data, scratch / "lexicon", lexicon, args.steps, args.threads)
        plain["predict_chars_per_second"] = predict_chars_per_second(scratch / "plain", texts)
        with_lexicon["predict_chars_per_second"] = predict_chars_per_second(scratch / "lexicon", texts)
        rounds.append({"plain": plain, "lexicon": with_lexicon})
        print(f"repeat {repeat + 1}: train {with_lexicon['tokens_per_second']:,.0f} vs {plain['tokens_per_second']:,.0f} "
              f"tokens/s; predict {with_lexicon['predict_chars_per_second']:,.0f} vs "
              f"{plain['predict_chars_per_second']:,.0f} characters/s", flush=True)
    ratio = lambda key: statistics.median(r["lexicon"][key] / r["plain"][key] for r in rounds)  # noqa: E731
    result = {"name": NAME, "machine": common.machine_info(), "corpus": args.corpus, "lexicon": lexicon,
              "steps": args.steps, "threads": args.threads, "rounds": rounds,
              "train_speed_ratio": round(ratio("tokens_per_second"), 3),
              "predict_speed_ratio": round(ratio("predict_chars_per_second"), 3),
              "setup_seconds_extra": round(statistics.median(
                  (r["lexicon"]["wall_seconds"] - r["lexicon"]["train_seconds"])
                  - (r["plain"]["wall_seconds"] - r["plain"]["train_seconds"]) for r in rounds), 1)}
    common.write_result(NAME, result)
    print(f"with --lexicon {' '.join(lexicon)}: training {result['train_speed_ratio']:.2f}x, predict "
          f"{result['predict_speed_ratio']:.2f}x the plain bilstm's speed; set-up +{result['setup_seconds_extra']} s")


if __name__ == "__main__":
    main()
