#!/usr/bin/env bash
# Few-shot fine-tuning against training from scratch, same recipe and budget: for each N, N frames
# of REAL_ROOT/train (spread evenly over its sorted names), ~300 optimiser steps of 8 frames, then
# last.pt scored on REAL_ROOT/validation (unseen people). The validation split is never trained on,
# nor used to pick a checkpoint: each run validates on its own training frames.
# Usage: bash scripts/few_shot.sh REAL_ROOT [INIT=pretrained] [OUT=runs/few-shot] [SIZES="25 50 200"]
# STARTS="scratch" (or "pretrained") runs one arm only, e.g. the scratch arm while INIT trains.
set -euo pipefail
real=$(realpath -e "${1:?usage: bash scripts/few_shot.sh REAL_ROOT [INIT] [OUT] [SIZES]}")
init=${2:-pretrained}
[ "$init" = pretrained ] || init=$(realpath -e "$init")
out=$(realpath -m "${3:-runs/few-shot}")
sizes=${4:-25 50 200}
starts=${STARTS:-pretrained scratch}
python=${PYTHON:-python}
[[ "$python" == */* ]] && python=$(realpath -es "$python")  # the venv link, not its target
cd "$(dirname "$0")/.."
mkdir -p "$out"
for n in $sizes; do
  subset="$out/data-$n"
  "$python" - "$real" "$subset" "$n" <<'PY'
import sys
from pathlib import Path

from data import find_pairs

real, subset, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
pairs = find_pairs(real, "train")
if n > len(pairs):
    sys.exit(f"error: {real}/train has {len(pairs)} frames with labels, fewer than {n}")
picked = [pairs[round(i * len(pairs) / n)] for i in range(n)]
for split in ("train", "validation"):  # validation: the same frames, only to steer the learning rate
    for sample in picked:
        for source in (sample.image, sample.label):  # each under its own folder and file name
            link = subset / split / source.parent.name / source.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(source)
PY
  epochs=$(( (300 * 8 + n - 1) / n ))
  for start in $starts; do
    run="$out/$start-$n"
    flags=(--model tiny_efficientvit)
    [ "$start" = pretrained ] && flags=(--init-from "$init")
    OMP_NUM_THREADS=1 "$python" train_efficientvit.py "${flags[@]}" --data-dir "$subset" --img-size 256x256 \
      --epochs "$epochs" --batch-size 8 --lr 2e-3 --workers 0 --seed 0 --no-mlflow --grid-every 1000 \
      --out-dir "$run" >"$run.log" 2>&1
    "$python" evaluate.py --checkpoint "$run/last.pt" --data-dir "$real" --json "$run/real.json" >/dev/null
    "$python" scripts/score_line.py "$run/real.json" "$start, $n frames"
  done
done
