#!/usr/bin/env bash
# The GPU checks of issue 22 in one short script, for a session that is lent a CUDA machine: run it
# as-is from the repository root (about 5 minutes on one H100):
#
#   bash benchmarks/gpu_check.sh            # writes under $OUT (default: ./gpu_check_out)
#
# 1. env.txt: date, nvidia-smi, torch / CUDA versions and devices seen;
# 2. pytest_gpu.txt: the tests marked `gpu` (the kNN graph built on CUDA against the CPU one;
#    tests/test_distributed.py: training, evaluation and
#    recommend on one GPU against the CPU; two NCCL processes against the one-process replay,
#    which skips with fewer than two GPUs), then tests/test_bench_gpu.py;
# 3. bench_gpu.txt + bench_gpu.json: benchmarks/bench_gpu.py --device cuda (epoch time and peak
#    GPU memory of LIRDRec and LightGCN, fp32 and bf16, TikTok shape and 100k items).
# Every step has its own time limit and its exit status goes to status.txt; a failing step does
# not stop the next one.
set -u
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONDONTWRITEBYTECODE=1
PY=${PYTHON:-python}

step() {  # step NAME SECONDS COMMAND...: run with a limit, output to $OUT/NAME.txt
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name rc=$rc ${limit}s-limit $((SECONDS - t0))s" | tee -a "$OUT/status.txt"
}

{
  date -u
  nvidia-smi 2>&1 | head -20
  "$PY" -c "import torch
print('torch', torch.__version__, 'cuda', torch.version.cuda)
print('available', torch.cuda.is_available(), 'devices', torch.cuda.device_count())
for i in range(torch.cuda.device_count()): print(i, torch.cuda.get_device_name(i))" 2>&1
  git log -1 --format='commit %H %s' 2>&1
} > "$OUT/env.txt"

step pytest_gpu 300 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/
step pytest_bench_gpu 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_bench_gpu.py
step bench_gpu 420 "$PY" benchmarks/bench_gpu.py --device cuda --epochs 3 --json "$OUT/bench_gpu.json"
tail -n 12 "$OUT/bench_gpu.txt"
