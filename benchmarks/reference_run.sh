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
# For the zoo models (issue 17): MMGCN, GRCN, DualGNN and DRAGON import torch_geometric, which
# must be installed (`pip install torch_geometric`: pure Python; we used 2.8.1); torch_scatter
# (compiled; no build for torch 2.13 here) is a stub module whose scatter / scatter_add
# are torch_geometric.utils.scatter (SLMRec imports it but its FAC task never calls it;
# utils.get_sparse_laplacian calls scatter_add, a sum); LayerGCN's
# `from models.common.` imports (a package path that does not exist in MMRec's src/) read
# `from common.`, as every other model's; `.cuda()` calls (GRCN, MGCN, SMORE move tensors to
# the GPU unconditionally) are removed, so those tensors stay on the CPU like the rest.
# DualGNN and DRAGON read a user-user graph file (user_graph_dict.npy) that MMRec's
# preprocessing/dualgnn-gen-u-u-matrix.py writes: taken from DATA_DIR when there, else that
# script is run on the copy first (O(users^2) Python: ~1 min for tiktok's 2,399 users).
# DualGNN and DRAGON create `result_embed = nn.Parameter(...).to(self.device)`: on a GPU that is
# a plain tensor (a copy), later overwritten by each forward; on the CPU `.to` returns the
# Parameter itself and the overwrite raises, so `.detach()` is inserted before `.to` (the same
# plain, unregistered tensor the GPU run has; the same random draw).
set -euo pipefail
REF=$(cd "$1" && pwd); MODEL=$2; DATA=$(cd "$3" && pwd); shift 3
NAME=$(basename "$DATA")
WORK=$(mktemp -d)
cp -r "$REF/src" "$WORK/src"
mkdir -p "$WORK/data/$NAME"  # a copy: some references cache graphs into the dataset directory
cp "$DATA/$NAME.inter" "$DATA"/*_feat.npy "$WORK/data/$NAME/"
if [ -f "$DATA/user_graph_dict.npy" ]; then cp "$DATA/user_graph_dict.npy" "$WORK/data/$NAME/"; fi
mkdir -p "$WORK/shims/torchvision/transforms"
: > "$WORK/shims/torchvision/__init__.py"
echo 'def __getattr__(name): return None' > "$WORK/shims/torchvision/transforms/__init__.py"
printf 'def pad(*a, **k): raise NotImplementedError\ndef resize(*a, **k): raise NotImplementedError\n' \
  > "$WORK/shims/torchvision/transforms/functional.py"
: > "$WORK/shims/lmdb.py"
cat > "$WORK/shims/torch_scatter.py" <<'PY'
from torch_geometric.utils import scatter
def scatter_add(src, index, dim=-1, out=None, dim_size=None):
    assert out is None
    return scatter(src, index, dim=dim, dim_size=dim_size, reduce='sum')
PY
pip install -q --no-deps --target "$WORK/shims" torch-dct==0.1.6 2>/dev/null
cd "$WORK/src"
{ grep -rl 'np\.float\b\|np\.int\b' . || true; } | xargs -r sed -i 's/np\.float\b/np.float64/g; s/np\.int\b/np.int64/g'
{ grep -rl 'A\._update(data_dict)' models || true; } | xargs -r sed -i 's/^\( *\)A\._update(data_dict)$/\1_k = np.array(list(data_dict.keys())); A = sp.coo_matrix((np.ones(len(_k), dtype=np.float32), (_k[:, 0], _k[:, 1])), shape=A.shape).tocsr()/'
{ grep -l '^from models\.common\.' models/*.py || true; } | xargs -r sed -i 's/^from models\.common\./from common./'
{ grep -l 'randn(num_user + num_item, dim_x))))\.to(self\.device)$' models/*.py || true; } \
  | xargs -r sed -i 's/randn(num_user + num_item, dim_x))))\.to(self\.device)$/randn(num_user + num_item, dim_x)))).detach().to(self.device)/'
{ grep -rl '\.cuda()' models || true; } | xargs -r sed -i 's/\.cuda()//g'
sed "s/baby\.inter/$NAME.inter/" configs/dataset/baby.yaml > "configs/dataset/$NAME.yaml"
sed -i 's/^use_gpu: .*/use_gpu: False/' configs/overall.yaml
if [[ "$MODEL" == DualGNN || "$MODEL" == DRAGON ]] && [ ! -f "$WORK/data/$NAME/user_graph_dict.npy" ]; then
  cp -r "$REF/preprocessing" "$WORK/preprocessing"
  (cd "$WORK/preprocessing" && python dualgnn-gen-u-u-matrix.py -d "$NAME" > "$WORK/uu.txt" 2>&1) \
    || { tail -20 "$WORK/uu.txt"; exit 1; }
fi
sed -i -e '$a\' "configs/model/$MODEL.yaml"  # some end without a newline (GRCN, SMORE, ...)
for kv in "$@"; do
  key=${kv%%=*}; val=${kv#*=}
  if grep -q "^$key *:" "configs/model/$MODEL.yaml"; then  # SMORE writes "dropout_rate : [...]"
    sed -i "s|^$key *:.*|$key: $val|" "configs/model/$MODEL.yaml"
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
