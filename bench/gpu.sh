#!/usr/bin/env bash
# The GPU benchmark for a one-GPU machine (H100/H200) with torch + transformers but no network.
# Here first: python bench/prepare_gpu.py   (fills the git-ignored bench/gpu_payload/)
# There:      bash bench/gpu.sh             (with the run tool: carry=["bench/gpu_payload"])
# Test here:  bash bench/gpu.sh --cpu-smoke
# Writes JSON under $OUT if set, else bench/results/. The benchmark stops after 450 s, the
# end-to-end CLI check (ALBERT-tiny + CRF: train, evaluate, predict) after 120 s.
set -euo pipefail
cd "$(dirname "$0")/.."
PAYLOAD=bench/gpu_payload
PY=${PYTHON:-python3}   # the GPU image's torch lives in python3; `python` may be absent there
[[ -d $PAYLOAD/data ]] || { echo "no $PAYLOAD: run python bench/prepare_gpu.py first" >&2; exit 2; }

missing() { ! $PY -c "import $1" 2>/dev/null; }
if missing torchcrf || missing seqeval; then
  $PY -m pip install --quiet --no-index --no-deps $PAYLOAD/wheels/*.whl
fi
if missing rich; then
  $PY -m pip install --quiet --no-index --no-deps $PAYLOAD/wheels-optional/*.whl
fi
if missing sklearn; then
  export PYTHONPATH="$PWD/$PAYLOAD/shim${PYTHONPATH:+:$PYTHONPATH}"   # seqeval's one sklearn import
fi
# bertner from this checkout (an editable install there did not reach scripts run from bench/)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
bench_status=0
timeout 450 $PY bench/gpu_bench.py "$@" || bench_status=$?   # the CLI check still runs

# End to end through the CLI, on real pretrained weights: the commands a GPU user runs.
out=${OUT:-bench/results}
run=$(mktemp -d)/albert-crf
smoke=(); [[ " $* " == *" --cpu-smoke "* ]] && smoke=(--device cpu --max-steps 4)
timeout 120 $PY -m bertner train $PAYLOAD/data --model $PAYLOAD/albert-tiny-chinese --crf --crf-lr-mult 100 \
  --epochs 3 --batch-size 32 -o "$run" "${smoke[@]}"
$PY -m bertner evaluate "$run" $PAYLOAD/data/dev.jsonl --json > "$out/gpu_cli_eval${smoke:+_smoke}.json"
echo "患者有2型糖尿病，口服二甲双胍，空腹血糖7.8mmol/L。" | $PY -m bertner predict "$run" - --format jsonl
exit $bench_status
