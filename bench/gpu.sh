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
# PARTS picks what runs (default all): bench = gpu_bench.py (BERT-base shape vs the HF loop, CRF
# speed); cli = ALBERT-tiny + CRF through train/evaluate/predict; bilstm and bert = bertner train's
# own tokens/s (and MFU) for the bilstm and for BERT-base at a larger batch, eager and compiled
# (BERT_COMPILE=0: eager only); crf = the CRF normaliser's tree against its time loop, several shapes,
# then BERT-base + CRF trained with each (and softmax) in the same call.
PARTS=${PARTS:-bench cli bilstm bert crf}
out=${OUT:-bench/results}
smoke=(); tag=""
if [[ " $* " == *" --cpu-smoke "* ]]; then smoke=(--device cpu --max-steps 4); tag=_smoke; fi
status=0

if [[ " $PARTS " == *" bench "* ]]; then
  timeout 450 $PY bench/gpu_bench.py "$@" || status=$?   # the other parts still run
fi

if [[ " $PARTS " == *" cli "* ]]; then   # the commands a GPU user runs, on real pretrained weights
  run=$(mktemp -d)/albert-crf
  timeout 120 $PY -m bertner train $PAYLOAD/data --model $PAYLOAD/albert-tiny-chinese --crf --crf-lr-mult 100 \
    --epochs 3 --batch-size 32 -o "$run" "${smoke[@]}" || status=$?
  $PY -m bertner evaluate "$run" $PAYLOAD/data/dev.jsonl --json > "$out/gpu_cli_eval$tag.json" || status=$?
  echo "患者有2型糖尿病，口服二甲双胍，空腹血糖7.8mmol/L。" | $PY -m bertner predict "$run" - --format jsonl || status=$?
fi

train_part() {  # name, timeout, flags...: bertner train's own tokens/s and MFU, summary.json kept
  local name=$1 limit=$2; shift 2
  timeout "$limit" $PY -m bertner train $PAYLOAD/data -o "$runs/$name" "$@" "${smoke[@]}" 2>&1 | grep -v "━" | tee -a "$out/gpu_models$tag.log" | tail -4 \
    && cp "$runs/$name/summary.json" "$out/gpu_model_$name$tag.json" || status=1
}
runs=$(mktemp -d)

if [[ " $PARTS " == *" bilstm "* ]]; then   # the pre-BERT model on a GPU; evaluate loads its cuDNN weights back
  train_part bilstm-crf 60 --model bilstm --crf --epochs 3 --batch-size 64
  $PY -m bertner evaluate "$runs/bilstm-crf" $PAYLOAD/data/dev.jsonl --json > "$out/gpu_bilstm_eval$tag.json" || status=$?
  train_part bilstm-crf-b256 60 --model bilstm --crf --epochs 6 --batch-size 256
fi

# BERT-base at a larger batch (the bert part and the crf part's end-to-end runs); too slow for the CPU smoke test
bert_base=(--model $PAYLOAD/bert-base-chinese-tokenizer --random-init --batch-size 128 --epochs 4 --max-steps 60 --log-every 10)

if [[ " $PARTS " == *" bert "* && -z $tag ]]; then
  bert=("${bert_base[@]}" --crf)
  train_part bert-base-b128 120 "${bert[@]}"
  train_part bert-base-softmax-b128 90 "${bert[@]/--crf/--softmax}"
  if [[ ${BERT_COMPILE:-1} == 1 ]]; then
    train_part bert-base-b128-compiled 180 "${bert[@]}" --compile
    train_part bert-base-softmax-b128-compiled 150 "${bert[@]/--crf/--softmax}" --compile
  fi
fi

if [[ " $PARTS " == *" crf "* ]]; then   # batch, tags, padded length: Ruijin's 31 tags and MSRA's 7
  device=cuda; [[ -n $tag ]] && device=cpu
  for shape in "16 31 256" "64 31 256" "128 31 256" "64 7 256" "256 31 512"; do
    read -r batch tags len <<< "$shape"
    [[ -n $tag && $batch -gt 16 ]] && continue
    timeout 120 $PY bench/crf_speed.py --device $device --batch "$batch" --tags "$tags" --max-len "$len" \
      --out "$out/crf_tree_b${batch}_k${tags}_t${len}$tag.json" || status=$?
  done
  if [[ -z $tag ]]; then   # end to end: BERT-base + CRF with the tree, with the time loop forced, softmax; twice
    e2e() {  # name, TREE_MAX_ELEMENTS (0: always the time loop), flags
      echo "== $1" | tee -a "$out/gpu_crf_e2e.log"
      timeout 150 $PY -c "import runpy, sys; import bertner.models.crf as crf; crf.TREE_MAX_ELEMENTS = int(sys.argv[1]);
sys.argv = ['bertner'] + sys.argv[2:]; runpy.run_module('bertner', run_name='__main__')" "$2" train $PAYLOAD/data \
        "${bert_base[@]}" -o "$runs/e2e-$1" --force "${@:3}" 2>&1 | grep -E "^step|tokens/s;" \
        | tee -a "$out/gpu_crf_e2e.log" || status=1
    }
    for rep in 1 2; do
      e2e crf-tree 134217728 --crf; e2e crf-time-loop 0 --crf; e2e softmax 0 --softmax
    done
  fi
fi
exit $status
