#!/bin/bash
# Times the reference LIRDRec implementation (GitHub enoche/LIRDRec, GPL-3.0: run from YOUR
# checkout, nothing of it is part of this package) on the TikTok-shaped synthetic set of
# bench_lirdrec.py, at its default point, on CPU, for EPOCHS epochs; prints its per-epoch
# training and evaluation times and its peak RSS, for a side-by-side with
# `python benchmarks/bench_lirdrec.py --case shape`.
#
# Usage: benchmarks/time_reference_lirdrec.sh REF_CHECKOUT [EPOCHS]
#   REF_CHECKOUT: a checkout of enoche/LIRDRec (we timed commit ff7239c)
#
# The copy under a temporary directory gets only compatibility edits for the libraries installed
# here, none in the timed code: stub modules for torchvision and lmdb (imported by raw-image code
# the model does not use), torch-dct (MIT, the DCT the reference imports) installed beside it,
# numpy's removed np.float / np.int aliases, scipy's removed dok_matrix._update (the adjacency is
# built once, before training), one grid point (n_ui_layers 2, mm_image_weight 0.1, reg_weight
# 1e-3, decay_weight 0.9, weight_decay 0), use_gpu False and `epochs`.
set -euo pipefail
REF=$(cd "$1" && pwd)
EPOCHS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
cp -r "$REF/src" "$WORK/src"
python "$ROOT/benchmarks/bench_lirdrec.py" --write-shape "$WORK/data/shape"
mkdir -p "$WORK/shims/torchvision/transforms"
: > "$WORK/shims/torchvision/__init__.py"
echo 'def __getattr__(name): return None' > "$WORK/shims/torchvision/transforms/__init__.py"
printf 'def pad(*a, **k): raise NotImplementedError\ndef resize(*a, **k): raise NotImplementedError\n' \
  > "$WORK/shims/torchvision/transforms/functional.py"
: > "$WORK/shims/lmdb.py"
pip install -q --no-deps --target "$WORK/shims" torch-dct==0.1.6 2>/dev/null
cd "$WORK/src"
sed -i 's/np\.float\b/np.float64/g; s/np\.int\b/np.int64/g' utils/metrics.py
sed -i 's/^\( *\)A\._update(data_dict)$/\1_k = np.array(list(data_dict.keys())); A = sp.coo_matrix((np.ones(len(_k), dtype=np.float32), (_k[:, 0], _k[:, 1])), shape=A.shape).tocsr()/' models/lirdrec.py
sed 's/baby\.inter/shape.inter/' configs/dataset/baby.yaml > configs/dataset/shape.yaml
sed -i 's/^mm_image_weight: .*/mm_image_weight: [0.1]/; s/^reg_weight: .*/reg_weight: [0.001]/;
        s/^n_ui_layers: .*/n_ui_layers: [2]/; s/^decay_weight: .*/decay_weight: [0.9]/;
        s/^weight_decay: .*/weight_decay: [0]/' configs/model/LIRDRec.yaml
sed -i "s/^use_gpu: .*/use_gpu: False/; s/^epochs: .*/epochs: $EPOCHS/" configs/overall.yaml
PYTHONPATH="$WORK/shims" /usr/bin/time -f "reference peak RSS: %M KiB" python main.py -m LIRDRec -d shape \
  > "$WORK/stdout.txt" 2> "$WORK/time.txt" || { tail -20 "$WORK/time.txt"; exit 1; }
grep -ho "epoch [0-9]* training \[time: [0-9.]*s\|epoch [0-9]* evaluating \[time: [0-9.]*s" log/*.log
tail -1 "$WORK/time.txt"
echo "(run directory: $WORK)"
