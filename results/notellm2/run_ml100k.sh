#!/usr/bin/env bash
# NoteLLM-2 on ml100k (posters + "title. plot"): the exact commands behind results/notellm2.md.
# Run from the repository root; resumable (`lirdrec represent train --resume DIR`); outputs under
# $RUNS (not in the repository). CPU cuts (2 shared cores): first 4 of SmolLM2's 30 layers,
# 2 Q-Former layers, 480 training pairs (60 steps of 8 pairs, 1 epoch), lr 5e-4.
set -euo pipefail
RUNS=${RUNS:-/work/runs/notellm2}
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
LIRDREC="python -m lirdrec"
DATA=../shared/data/ml100k
COMMON=(--data $DATA --recipe datasets/ml100k/recipe.yaml --text-template "{Summary}"
        --cache-dir $RUNS/cache)
TRAIN=("${COMMON[@]}" --llm-num-layers 4 --set qformer_layers=2 --batch-size 8
       --max-train-pairs 480 --lr 5e-4 --seed 999)
variant() {  # variant name
  local out=$RUNS/ml100k/$1
  if [ -f $out/metrics.json ]; then return; fi
  if [ -f $out/checkpoint.pt ]; then $LIRDREC represent train --resume $out
  else $LIRDREC represent train "${TRAIN[@]}" --variant $1 --out $out; fi
}
baselines() {
  local j=$RUNS/ml100k/baselines.jsonl
  rm -f $j
  [ -f $RUNS/minilm_title_plot.npy ] || python -c "
import numpy as np, warnings; warnings.simplefilter('ignore')
from lirdrec.data.raw_items import read_raw_items
from lirdrec.features.recipe import Recipe
from lirdrec.features.text import TextEncoder, join_fields
raw = read_raw_items(Recipe.from_yaml('datasets/ml100k/recipe.yaml'), '$DATA')
texts = join_fields(raw.records, template='{movie title}. {Summary}')
np.save('$RUNS/minilm_title_plot.npy', TextEncoder(show_progress=False).encode(texts))"
  $LIRDREC represent evaluate "${COMMON[@]}" --features image_feat.npy --json $j
  $LIRDREC represent evaluate "${COMMON[@]}" --features text_feat.npy --json $j
  $LIRDREC represent evaluate "${COMMON[@]}" --features $RUNS/minilm_title_plot.npy --json $j
  $LIRDREC represent evaluate "${COMMON[@]}" --untuned-llm SmolLM2-135M-Instruct \
    --llm-num-layers 4 --json $j
}
export_vectors() {  # the notellm2 run's best vectors -> a copy of ml100k with notellm2_feat.npy
  $LIRDREC represent export $RUNS/ml100k/notellm2 --out $RUNS/data/ml100k-nl2 --name notellm2
}
downstream() {  # model (lirdrec|freedom) modalities seed; reduced epoch budget (EPOCHS)
  local cfg=() out=$RUNS/down/$1-${2//,/+}-s$3
  [ "$1" = freedom ] && cfg=(--config datasets/configs/freedom.yaml)
  [ -f $out/metrics.json ] && return
  if [ -f $out/checkpoint.pt ]; then $LIRDREC -q train --resume $out --epochs ${EPOCHS:-30}; return; fi
  $LIRDREC -q train --model $1 --data $RUNS/data/ml100k-nl2 "${cfg[@]}" --set modalities=$2 \
    --seed $3 --epochs ${EPOCHS:-30} --out $out
}
"$@"
