#!/bin/bash
# Runs an MMRec-style reference implementation (GitHub enoche/MMRec or enoche/LIRDRec, both
# GPL-3.0: run from YOUR checkout; nothing of it is part of this package) on CPU on a dataset in
# MMRec format, with config overrides, and prints its per-run results ("All Over" section).
#
# Usage: benchmarks/reference_run.sh REF_CHECKOUT MODEL DATA_DIR [KEY=YAML_VALUE ...]
#   REF_CHECKOUT  checkout of the reference repository (we used MMRec e775373, LIRDRec ff7239c)
#   MODEL         the reference's model name (FREEDOM, BM3, LightGCN, LIRDRec, ...)
#   DATA_DIR      <name>.inter plus image_feat.npy / text_feat.npy (the reference reads those two
#                 names; for one-modality data give the same file as both)
#   KEY=VALUE     replaces the line "KEY: ..." of configs/overall.yaml or the model's YAML (or is
#                 appended to the model's YAML), e.g. seed='[999, 1]' dropout='[0.8]' epochs=3
#
# The copy under a temporary directory gets only compatibility edits for the libraries installed
# here, none in a model's training or evaluation code: stub modules for torchvision and lmdb
# (imported by raw-image code these models do not use), torch-dct 0.1.6 (MIT, imported by
# LIRDRec), numpy's removed np.float / np.int aliases, scipy's removed dok_matrix._update (the
# adjacency is built once before training, as a CSR of the same entries), use_gpu False.
set -euo pipefail
REF=$(cd "$1" && pwd); MODEL=$2; DATA=$(cd "$3" && pwd); shift 3
NAME=$(basename "$DATA")
WORK=$(mktemp -d)
cp -r "$REF/src" "$WORK/src"
mkdir -p "$WORK/data/$NAME"  # a copy: some references cache graphs into the dataset directory
cp "$DATA/$NAME.inter" "$DATA"/*_feat.npy "$WORK/data/$NAME/"
mkdir -p "$WORK/shims/torchvision/transforms"
: > "$WORK/shims/torchvision/__init__.py"
echo 'def __getattr__(name): return None' > "$WORK/shims/torchvision/transforms/__init__.py"
printf 'def pad(*a, **k): raise NotImplementedError\ndef resize(*a, **k): raise NotImplementedError\n' \
  > "$WORK/shims/torchvision/transforms/functional.py"
: > "$WORK/shims/lmdb.py"
pip install -q --no-deps --target "$WORK/shims" torch-dct==0.1.6 2>/dev/null
cd "$WORK/src"
{ grep -rl 'np\.float\b\|np\.int\b' . || true; } | xargs -r sed -i 's/np\.float\b/np.float64/g; s/np\.int\b/np.int64/g'
{ grep -rl 'A\._update(data_dict)' models || true; } | xargs -r sed -i 's/^\( *\)A\._update(data_dict)$/\1_k = np.array(list(data_dict.keys())); A = sp.coo_matrix((np.ones(len(_k), dtype=np.float32), (_k[:, 0], _k[:, 1])), shape=A.shape).tocsr()/'
sed "s/baby\.inter/$NAME.inter/" configs/dataset/baby.yaml > "configs/dataset/$NAME.yaml"
sed -i 's/^use_gpu: .*/use_gpu: False/' configs/overall.yaml
for kv in "$@"; do
  key=${kv%%=*}; val=${kv#*=}
  if grep -q "^$key:" "configs/model/$MODEL.yaml"; then
    sed -i "s|^$key: .*|$key: $val|" "configs/model/$MODEL.yaml"
  elif grep -q "^$key:" configs/overall.yaml; then
    sed -i "s|^$key: .*|$key: $val|" configs/overall.yaml
  else
    echo "$key: $val" >> "configs/model/$MODEL.yaml"
  fi
done
PYTHONPATH="$WORK/shims" /usr/bin/time -f "reference peak RSS: %M KiB" python main.py -m "$MODEL" -d "$NAME" \
  > "$WORK/stdout.txt" 2> "$WORK/time.txt" || { tail -20 "$WORK/time.txt"; exit 1; }
LOG=$(ls -t log/*.log | head -1)
grep -h "best eval result in epoch" "$LOG" || true
sed -n '/All Over/,/█ BEST █/p' "$LOG" | grep -E "Parameters|best valid|best test" \
  | sed "s/precision@5.*//" || true
tail -1 "$WORK/time.txt"
echo "(log: $WORK/src/$LOG)"
