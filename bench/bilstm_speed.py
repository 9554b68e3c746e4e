"""Training speed of `--model bilstm --crf` against the plain PyTorch BiLSTM-CRF a user would write.

    python bench/bilstm_speed.py                 # 1 thread, Ruijin windows of 256 characters
    python bench/bilstm_speed.py --threads 2

bertner: `bertner train DATA --model bilstm --crf --max-steps N` with the recipe defaults (hidden
128 per direction, no bigrams, batch 16, CPU bf16 autocast where the processor has it), in its own
process; its speed is the `tokens_per_second` of `summary.json` (characters, plus [CLS] and [SEP]
per window), timed by the engine from the first batch to the last step.

Baseline: the issue's "80 lines of plain PyTorch": character + bigram embeddings (128 + 128, from
scratch), one `nn.LSTM(bidirectional=True)` over padded batches in random order, a linear layer,
pytorch-crf's `CRF` (loss and nothing else), Adam; characters/s over the steps after a warm-up,
in its own process. Run twice: with the issue's shape (BiLSTM 256, batch 32) and with bertner's
recipe shape (128, no bigrams, batch 16), so the ratios separate what the recipe buys from what
the engine buys. The contenders alternate (interleaved repeats, median of per-repeat ratios).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAME = "bilstm_speed"


def naive_chars_per_second(data: Path, hidden: int, bigram_dim: int, batch_size: int, steps: int,
                           threads: int) -> float:
    """The plain loop, in this process: characters per second over `steps` steps after 3 warm-up steps."""
    import torch
    from torch import nn
    from torchcrf import CRF

    from bertner.data.jsonl import read_windows

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    windows = [w for w in read_windows(data / "train.jsonl") if w.text]
    chars = sorted({c for w in windows for c in w.text})
    char_id = {c: i + 1 for i, c in enumerate(chars)}
    bigram_id: dict[str, int] = {}
    labels = ["O"] + [f"{p}-{t}" for t in sorted({s.label for w in windows for s in w.spans}) for p in "BI"]

    def encode(w):
        ids = [char_id[c] for c in w.text]
        grams = [bigram_id.setdefault(a + b, len(bigram_id) + 1) for a, b in zip(w.text, w.text[1:] + "</s>")]
        tags = [0] * len(w.text)
        for s in w.spans:
            tags[s.start] = labels.index(f"B-{s.label}")
            for i in range(s.start + 1, s.end):
                tags[i] = labels.index(f"I-{s.label}")
        return ids, grams, tags

    encoded = [encode(w) for w in windows]

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.chars = nn.Embedding(len(chars) + 1, 128, padding_idx=0)
            self.bigrams = nn.Embedding(len(bigram_id) + 1, bigram_dim, padding_idx=0) if bigram_dim else None
            self.lstm = nn.LSTM(128 + bigram_dim, hidden, batch_first=True, bidirectional=True)
            self.out = nn.Linear(2 * hidden, len(labels))
            self.crf = CRF(len(labels), batch_first=True)

        def forward(self, ids, grams, tags, mask):
            x = self.chars(ids)
            if self.bigrams is not None:
                x = torch.cat([x, self.bigrams(grams)], -1)
            emissions = self.out(self.lstm(x)[0])
            return -self.crf(emissions, tags, mask, reduction="mean")

    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    rng = random.Random(0)
    done_chars, started = 0, None
    for step in range(steps + 3):
        if step == 3:
            done_chars, started = 0, time.perf_counter()
        batch = rng.sample(encoded, batch_size)
        width = max(len(ids) for ids, _, _ in batch)

        def pad(rows):
            return torch.tensor([r + [0] * (width - len(r)) for r in rows])

        ids, grams, tags = (pad([b[k] for b in batch]) for k in range(3))
        mask = ids > 0
        loss = model(ids, grams, tags, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        done_chars += int(mask.sum())
    return done_chars / (time.perf_counter() - started)


def bertner_tokens_per_second(data: Path, steps: int, threads: int, out: Path) -> float:
    cmd = [sys.executable, "-m", "bertner", "train", str(data), "--model", "bilstm", "--crf", "--max-steps", str(steps),
           "--num-threads", str(threads), "-o", str(out), "--force", "--log-every", "50"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(common.ROOT))
    return float(json.loads((out / "summary.json").read_text(encoding="utf-8"))["tokens_per_second"])


def naive_in_subprocess(data: Path, hidden: int, bigram_dim: int, batch_size: int, steps: int, threads: int) -> float:
    code = (f"import sys; sys.path.insert(0, {str(common.BENCH)!r}); import bilstm_speed as b; "
            f"print(b.naive_chars_per_second(__import__('pathlib').Path({str(data)!r}), {hidden}, {bigram_dim}, "
            f"{batch_size}, {steps}, {threads}))")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=str(common.ROOT))
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-windows", type=int, default=2000)
    args = parser.parse_args()
    train, dev = common.window_slice(args.train_windows, 20)
    data = common.write_data_dir(common.scratch_dir("bilstm-speed") / "data", train, dev)
    out = common.scratch_dir("bilstm-speed") / "run"
    contenders = {
        "bertner": lambda: bertner_tokens_per_second(data, 300, args.threads, out),
        "naive, issue's shape (256, bigrams, batch 32)": lambda: naive_in_subprocess(data, 256, 128, 32, 40, args.threads),
        "naive, recipe's shape (128, no bigrams, batch 16)": lambda: naive_in_subprocess(data, 128, 0, 16, 150, args.threads),
    }
    _, speeds = common.interleaved(contenders, args.repeats, warmup=False)
    ours = speeds["bertner"]
    rows = [{"contender": name, "chars_per_second": common.median(values),
             "bertner_speedup": common.median([o / v for o, v in zip(ours, values)])} for name, values in speeds.items()]
    result = {"name": NAME, "machine": common.machine_info(), "threads": args.threads, "rows": rows}
    common.write_result(NAME, result)
    for row in rows:
        print(f"{row['contender']:52s} {row['chars_per_second']:>9,.0f} chars/s   bertner {row['bertner_speedup']:.2f}x")


if __name__ == "__main__":
    main()
