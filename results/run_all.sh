#!/usr/bin/env bash
# The full runs behind notebooks 02, 03 and 06 (see results/README.md). Two workers take the
# experiment files below in order, so that two training processes run at a time (the release
# machine had 2 CPU cores), one OpenMP thread each. From the repository root:
#   bash results/run_all.sh
#   JOBS="ablation sensitivity" bash results/run_all.sh     # a subset
set -uo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
E=datasets/experiments
# mllm_features needs runs/data/ml100k from `lirdrec prepare datasets/ml100k/recipe.yaml --out runs/data/ml100k`
read -r -a JOBS <<< "${JOBS:-main_table ablation sensitivity sensitivity_ml100k mllm_features}"
CLAIMS=$(mktemp -d)

run() {  # one experiment file: provenance before and after, the runner, the per-run table
    mkdir -p "results/$1/runs"
    python results/provenance.py "results/$1" start
    lirdrec experiment "$E/$1.yaml" > "results/$1/stdout.txt" 2> "results/$1/runs/stderr.txt"  # progress bars, tracebacks (git-ignored)
    echo "lirdrec experiment $E/$1.yaml: exit $?" >> "results/$1/stdout.txt"
    python results/run_info.py "results/$1" > /dev/null
    python results/provenance.py "results/$1" end
}

worker() {
    for job in "${JOBS[@]}"; do
        mkdir "$CLAIMS/$job" 2> /dev/null || continue  # the other worker has it
        run "$job"
    done
}

# the full LIRDRec model of ablation.yaml is main_table.yaml's tiktok run (identical configuration)
[[ " ${JOBS[*]} " == *" ablation "* ]] &&
    python results/share_run.py "$E/main_table.yaml" lirdrec "$E/ablation.yaml" lirdrec tiktok --wait &
worker &
worker &
wait
