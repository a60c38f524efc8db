#!/usr/bin/env bash
# Which randomisations of the synthetic eyes matter on real eyes: one equal, short training per
# synthetic style (data/synthetic/render.py STYLES), each scored zero-shot on a real mask-folder set.
# The budget is in steps (FRAMES rendered frames x 2 epochs, batch 8), not minutes, so that other
# work on the machine cannot favour one style.
# Usage: bash scripts/ablate_synthetic.sh REAL_ROOT [FRAMES=3000] [OUT=runs/ablation]
# Prints one row per style (scripts/score_line.py); STYLES="full narrow" runs some only.
set -euo pipefail
real=$(realpath -e "${1:?usage: bash scripts/ablate_synthetic.sh REAL_ROOT [FRAMES] [OUT]}")
frames=${2:-3000}
out=$(realpath -m "${3:-runs/ablation}")
python=${PYTHON:-python}
[[ "$python" == */* ]] && python=$(realpath -es "$python")  # the venv link, not its target
cd "$(dirname "$0")/.."
mkdir -p "$out"
for style in ${STYLES:-full no-camera bright-iris fixed-framing small-glints narrow}; do
  OMP_NUM_THREADS=1 "$python" train_efficientvit.py --synthetic-style "$style" --img-size 200x320 \
    --epochs 2 --synthetic-train "$frames" --synthetic-val 64 --batch-size 8 --lr 3e-3 --workers 0 \
    --seed 0 --no-mlflow --out-dir "$out/$style" >"$out/$style.log" 2>&1
  "$python" evaluate.py --checkpoint "$out/$style/last.pt" --data-dir "$real" --json "$out/$style/real.json" >/dev/null
  "$python" scripts/score_line.py "$out/$style/real.json" "$style"
done
