#!/usr/bin/env bash
# The GPU benchmark for a one-GPU machine (H100/H200) with torch + transformers but no network.
# Here first: python bench/prepare_gpu.py   (fills the git-ignored bench/gpu_payload/)
# There:      bash bench/gpu.sh             (with the run tool: carry=["bench/gpu_payload"])
# Test here:  bash bench/gpu.sh --cpu-smoke
# Writes JSON under $OUT if set, else bench/results/. Stays within 8 minutes (timeout 450 s).
set -euo pipefail
cd "$(dirname "$0")/.."
PAYLOAD=bench/gpu_payload
[[ -d $PAYLOAD/data ]] || { echo "no $PAYLOAD: run python bench/prepare_gpu.py first" >&2; exit 2; }

missing() { ! python -c "import $1" 2>/dev/null; }
if missing torchcrf || missing seqeval; then
  pip install --quiet --no-index --no-deps $PAYLOAD/wheels/*.whl
fi
if missing rich; then
  pip install --quiet --no-index --no-deps $PAYLOAD/wheels-optional/*.whl
fi
if missing sklearn; then
  export PYTHONPATH="$PWD/$PAYLOAD/shim${PYTHONPATH:+:$PYTHONPATH}"   # seqeval's one sklearn import
fi
if missing bertner; then
  pip install --quiet --no-index --no-deps --no-build-isolation -e . \
    || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
timeout 450 python bench/gpu_bench.py "$@"
