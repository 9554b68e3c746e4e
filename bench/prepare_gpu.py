"""Fill bench/gpu_payload/ (git-ignored) with what bench/gpu.sh needs on an offline GPU machine.

    python bench/prepare_gpu.py

- wheels: pytorch-crf and seqeval (`pip download --no-deps`), plus rich and its pure-Python
  dependencies in case the GPU machine lacks them (gpu.sh installs only what is missing);
- shim/sklearn/exceptions.py: seqeval imports `sklearn.exceptions.UndefinedMetricWarning` and
  nothing else from scikit-learn; gpu.sh puts this shim on PYTHONPATH only if sklearn is absent;
- bert-base-chinese-tokenizer/: config.json + vocab/tokenizer files (no weights; gpu_bench.py
  builds a BERT-base-shaped encoder from it with random weights);
- albert-tiny-chinese/: real pretrained weights for gpu.sh's end-to-end `bertner train/evaluate/predict`;
- data/train.jsonl, data/dev.jsonl: a slice of preprocessed Ruijin windows.
Carry it with the run: carry=["bench/gpu_payload"] (a few MiB).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

PAYLOAD = common.BENCH / "gpu_payload"
WHEELS = ("pytorch-crf", "seqeval")
OPTIONAL_WHEELS = ("rich", "markdown-it-py", "mdurl", "pygments")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-windows", type=int, default=2048)
    parser.add_argument("--dev-windows", type=int, default=400)
    parser.add_argument("--no-wheels", action="store_true", help="skip pip download (offline here too)")
    args = parser.parse_args()
    PAYLOAD.mkdir(parents=True, exist_ok=True)

    if not args.no_wheels:
        wheels = PAYLOAD / "wheels"
        wheels.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", *WHEELS, "--no-deps", "-d", str(wheels)], check=True)
        for sdist in wheels.glob("*.tar.gz"):  # seqeval ships only an sdist: build its wheel here, not offline there
            subprocess.run([sys.executable, "-m", "pip", "wheel", str(sdist), "--no-deps", "--no-build-isolation",
                            "-w", str(wheels)], check=True)
            sdist.unlink()
        optional = PAYLOAD / "wheels-optional"
        optional.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", *OPTIONAL_WHEELS, "--no-deps", "--only-binary=:all:",
                        "-d", str(optional)], check=True)

    shim = PAYLOAD / "shim" / "sklearn"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "__init__.py").write_text('"""Stand-in: seqeval needs only sklearn.exceptions.UndefinedMetricWarning."""\n')
    (shim / "exceptions.py").write_text("class UndefinedMetricWarning(UserWarning):\n    pass\n")

    tok = PAYLOAD / "bert-base-chinese-tokenizer"
    if tok.exists():
        shutil.rmtree(tok)
    shutil.copytree(common.BERT_TOKENIZER, tok)
    albert = PAYLOAD / "albert-tiny-chinese"
    if albert.exists():
        shutil.rmtree(albert)
    shutil.copytree(common.ALBERT_TINY, albert)

    train, dev = common.window_slice(args.train_windows, args.dev_windows)
    common.write_data_dir(PAYLOAD / "data", train, dev)
    total = sum(f.stat().st_size for f in PAYLOAD.rglob("*") if f.is_file())
    print(f"wrote {PAYLOAD} ({total / 2**20:.1f} MiB): {len(train)} train and {len(dev)} dev windows, "
          f"tokenizer, shim{'' if args.no_wheels else ', wheels'}")


if __name__ == "__main__":
    main()
