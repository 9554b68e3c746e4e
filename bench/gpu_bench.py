"""The GPU benchmark (run by bench/gpu.sh): a BERT-base-shaped encoder, four variants, bf16.

    python bench/gpu_bench.py              # on a CUDA machine, payload from bench/prepare_gpu.py
    python bench/gpu_bench.py --cpu-smoke  # a tiny encoder on CPU, to test the script itself

The encoder is built from bench/gpu_payload/bert-base-chinese-tokenizer/config.json with random
weights (seeded) and saved once to a scratch folder, so bertner and the HF baseline start from
the same weights. Each variant (softmax, crf, gru, gru+crf) trains a fixed number of steps on
both, interleaved (see train_throughput.py for what each side does). Reported: tokens/s (real
tokens), speed-up, dev F1, peak GPU memory, and model FLOPs utilisation as `bertner train`
reports it (`bertner/engine/flops.py`): 6 N + 12 L d T FLOPs per token against the card's
dense bf16 peak (H100 SXM and H200: 989 TFLOP/s; H100 PCIe 756).
Then bench/crf_speed.py --device cuda. JSON goes to $OUT if set, else bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from bertner.engine.flops import mfu, peak_flops

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import train_throughput as tt  # noqa: E402

PAYLOAD = common.BENCH / "gpu_payload"
VARIANTS = ("softmax", "crf", "gru", "gru+crf")


def random_encoder_folder(config_dir: Path, out: Path, smoke: bool, seed: int = 0) -> Path:
    from transformers import AutoConfig, AutoModel

    from bertner.models.encoder import quiet_transformers

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with quiet_transformers():
        config = AutoConfig.from_pretrained(str(config_dir))
        if smoke:
            config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size = 1, 64, 2, 128
        torch.manual_seed(seed)
        model = AutoModel.from_config(config)
        model.save_pretrained(str(out))
    for f in config_dir.iterdir():
        if f.name != "config.json":
            shutil.copy(f, out / f.name)
    return out


def model_flops(folder: Path, train, variant: str) -> tuple[float, dict]:
    """FLOPs per token of the variant's model (the head as bertner builds it: GRU, classifier)."""
    from torch import nn
    from transformers import AutoConfig

    from bertner.engine.flops import attention_length, encoder_weights, flops_per_token

    config = AutoConfig.from_pretrained(str(folder))
    d = config.hidden_size
    head = nn.ModuleList([nn.Linear(d, len(tt.tags_of(train)))] + ([nn.GRU(d, d)] if "gru" in variant else []))
    lengths = [len(w.text) + 2 for w in train]  # + [CLS], [SEP]
    shape = {"encoder_weights": encoder_weights(config), "layers": config.num_hidden_layers, "hidden": d,
             "attention_length": round(attention_length(lengths), 1)}
    return flops_per_token(config, head, lengths), shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny encoder, CPU, a few steps: tests the script")
    parser.add_argument("--steps", type=int, default=0, help="steps per run (default 150 on GPU, 3 in --cpu-smoke)")
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--skip-crf-speed", action="store_true")
    args = parser.parse_args()
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here; use --cpu-smoke to test the script on CPU")
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else common.RESULTS
    device, precision = ("cpu", "fp32") if smoke else ("cuda", "bf16")
    steps = args.steps or (3 if smoke else 150)
    batch = args.batch_size or (4 if smoke else 32)
    repeats = args.repeats or (1 if smoke else 2)
    if smoke:
        torch.set_num_threads(1)

    data = PAYLOAD / "data"
    if not (data / "train.jsonl").exists():
        raise SystemExit(f"{data} is missing: run python bench/prepare_gpu.py first (where the shared data is)")
    train, dev = common.window_slice(10_000, 10_000, source=data)
    if smoke:
        train, dev = common.window_slice(24, 12, source=data)
    work = common.scratch_dir("gpu_bench")
    folder = random_encoder_folder(PAYLOAD / "bert-base-chinese-tokenizer", work / "bert-base-random", smoke)
    tt.warm_up(train, dev, work) if smoke else None
    rows = []
    name = torch.cuda.get_device_name(0) if device == "cuda" else None
    peak = peak_flops(name)  # FLOP/s, None on CPU
    started = time.perf_counter()
    for variant in args.variants.split(","):
        # whole epochs over the largest window count that divides steps x batch, so both sides
        # process the same characters
        windows = next(n for n in range(min(len(train), steps * batch), 0, -1) if steps * batch % n == 0)
        s = tt.Setting(str(folder), variant, steps=steps, batch_size=batch, lr=5e-5, train_windows=windows,
                       device=device, precision=precision, max_length=512)
        if device == "cuda" and not rows:  # one short untimed pair: CUDA context, kernels, allocator
            tt.compare(tt.Setting(str(folder), variant, steps=5, batch_size=batch, lr=5e-5, train_windows=5 * batch,
                                  device=device, precision=precision), train, dev, 1, work, log=lambda *_: None)
        row = tt.compare(s, train, dev, repeats, work)
        fpt, shape = model_flops(folder, train, variant)
        row.update(shape)
        row["flops_per_token"] = fpt
        if peak:
            row["bertner_mfu"] = round(mfu(row["bertner_tokens_per_s"], fpt, peak), 4)
            row["baseline_mfu"] = round(mfu(row["baseline_tokens_per_s"], fpt, peak), 4)
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("variant", "speedup", "bertner_tokens_per_s", "baseline_tokens_per_s",
                                               "bertner_f1", "baseline_f1")}), flush=True)
    result = {
        "name": "gpu_train", "device": name or "cpu (smoke)", "precision": precision, "peak_tflops_bf16": peak / 1e12 if peak else None,
        "encoder": "BERT-base shape from bert-base-chinese config, random weights" if not smoke else "smoke: 1 layer, 64 hidden",
        "train_windows": len(train), "dev_windows": len(dev), "steps": steps, "batch_size": batch, "repeats": repeats,
        "rows": rows, "seconds": round(time.perf_counter() - started, 1), "machine": common.machine_info(),
    }
    common.write_result("gpu_train" if not smoke else "gpu_train_smoke", result, out_dir)
    if not args.skip_crf_speed:
        cmd = [sys.executable, str(common.BENCH / "crf_speed.py"), "--device", device,
               "--out", str(out_dir / ("crf_speed_cuda.json" if not smoke else "crf_speed_smoke.json"))]
        if smoke:
            cmd += ["--batch", "8", "--max-len", "32", "--repeats", "2", "--threads", "1"]
        subprocess.run(cmd, check=True)
    print(f"wrote results to {out_dir}")


if __name__ == "__main__":
    main()
