#!/bin/bash
# Times the reference LIRDRec implementation (GitHub enoche/LIRDRec, GPL-3.0: run from YOUR
# checkout) on the TikTok-shaped synthetic set of bench_lirdrec.py at its default point for EPOCHS
# epochs on CPU: per-epoch training and evaluation times and peak RSS, for a side-by-side with
# `python benchmarks/bench_lirdrec.py --case shape`. Compatibility edits: see reference_run.sh.
#
# Usage: benchmarks/time_reference_lirdrec.sh REF_CHECKOUT [EPOCHS]   (we timed commit ff7239c)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=$(mktemp -d)/shape
python "$ROOT/benchmarks/bench_lirdrec.py" --write-shape "$DATA"
OUT=$("$ROOT/benchmarks/reference_run.sh" "$1" LIRDRec "$DATA" epochs="${2:-3}" seed='[999]' \
  n_ui_layers='[2]' mm_image_weight='[0.1]' reg_weight='[0.001]' decay_weight='[0.9]' weight_decay='[0]')
echo "$OUT" | tail -2
LOG=$(echo "$OUT" | tail -1 | sed 's/^(log: \(.*\))$/\1/')
grep -ho "epoch [0-9]* training \[time: [0-9.]*s\|epoch [0-9]* evaluating \[time: [0-9.]*s" "$LOG"
