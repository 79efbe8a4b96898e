#!/usr/bin/env bash
# NoteLLM-2 on hm (H&M product photos + descriptions): the exact commands behind the hm part of
# results/notellm2.md. The SAME cuts as run_ml100k.sh: first 4 of SmolLM2's 30 layers, 2 Q-Former
# layers, 480 training pairs (60 steps of 8 pairs, 1 epoch), lr 5e-4, seed 999.
# Run from the repository root, one step at a time; resumable (a finished step is skipped, an
# interrupted training run continues with `lirdrec represent train --resume DIR`); outputs under
# $RUNS (not in the repository). Item titles = prod_name, contents = colour, product type and the
# description (the prompt cuts them to 20 / 80 characters).
set -euo pipefail
RUNS=${RUNS:-/work/runs/nl2hm}
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
LIRDREC="python -m lirdrec"
DATA=../shared/data/hm
COMMON=(--data $DATA --recipe datasets/hm/recipe.yaml
        --text-template "{colour_group_name} {product_type_name}. {detail_desc}"
        --cache-dir $RUNS/cache)
TRAIN=("${COMMON[@]}" --llm-num-layers 4 --set qformer_layers=2 --batch-size 8
       --max-train-pairs 480 --lr 5e-4 --seed 999)
variant() {  # variant name [extra train flags]; the visual-neglect check is `neglect` below
  variant_as $1 "$@"
}
variant_as() {  # run name, variant name [extra train flags, e.g. --seed 1]: RUNS/hm/<run name>
  local out=$RUNS/hm/$1 v=$2; shift 2
  if [ -f $out/metrics.json ]; then return; fi
  if [ -f $out/checkpoint.pt ]; then $LIRDREC represent train --resume $out
  else $LIRDREC represent train "${TRAIN[@]}" --variant $v --modes both --out $out "$@"; fi
}
baselines() {  # frozen shared vectors (no compute), then the untuned LLM (one encoding)
  local j=$RUNS/hm/baselines.jsonl
  mkdir -p $RUNS/hm
  rm -f $j
  $LIRDREC represent evaluate "${COMMON[@]}" --features image_feat.npy --json $j
  $LIRDREC represent evaluate "${COMMON[@]}" --features text_feat.npy --json $j
  $LIRDREC represent evaluate "${COMMON[@]}" --untuned-llm SmolLM2-135M-Instruct \
    --llm-num-layers 4 --json $j
}
neglect() {  # visual-neglect check of a trained run: image-only and text-only inputs
  local j=$RUNS/hm/neglect.jsonl
  grep -q "\"what\": \"$1\", \"input\": \"text\"" $j 2>/dev/null && return
  $LIRDREC represent evaluate --run $RUNS/hm/$1 --modes image,text --json $j
}
export_vectors() {  # the notellm2 run's best vectors -> a copy of hm with notellm2_feat.npy
  $LIRDREC represent export $RUNS/hm/notellm2 --out $RUNS/data/hm-nl2 --name notellm2
}
downstream() {  # model (lirdrec|freedom) modalities seed; reduced epoch budget (EPOCHS)
  local cfg=() out=$RUNS/down/$1-${2//,/+}-s$3
  [ "$1" = freedom ] && cfg=(--config datasets/configs/freedom.yaml)
  [ -f $out/metrics.json ] && return
  if [ -f $out/checkpoint.pt ]; then $LIRDREC -q train --resume $out --epochs ${EPOCHS:-30}; return; fi
  $LIRDREC -q train --model $1 --data $RUNS/data/hm-nl2 "${cfg[@]}" --set modalities=$2 \
    --seed $3 --epochs ${EPOCHS:-30} --out $out
}
# the epoch budgets of ml100k's downstream runs: LIRDRec 10, FREEDOM 30
downstream_lirdrec() { EPOCHS=${EPOCHS:-10} downstream lirdrec "$@"; }
downstream_freedom() { EPOCHS=${EPOCHS:-30} downstream freedom "$@"; }
"$@"
