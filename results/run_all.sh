#!/usr/bin/env bash
# The full runs behind notebooks 02, 03 and 06 (see results/README.md). Two workers take the
# experiment files below in order, so that two training processes run at a time (the release
# machine had 2 CPU cores). From the repository root:
#   bash results/run_all.sh
set -uo pipefail
E=datasets/experiments
JOBS=(main_table ablation sensitivity ablation_ml100k sensitivity_ml100k)
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

share() {  # reuse a finished run whose configuration is identical (results/share_run.py)
    python results/share_run.py "$E/$1.yaml" "$2" "$E/$3.yaml" "$4" "$5" --wait
}

share main_table lirdrec ablation lirdrec tiktok &
share main_table lirdrec sensitivity default tiktok &
share ablation_ml100k lirdrec sensitivity_ml100k default ml100k &
worker &
worker &
wait
