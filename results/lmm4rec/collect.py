"""Gather the finished runs of the LMM4Rec study into results/lmm4rec/ (without training any).

    PYTHONPATH=$PWD python results/lmm4rec/collect.py /work/runs/lmm4rec/study

Writes ``results.csv`` (the experiment runner's tidy format: dataset, model, variant, seed,
split, metric, K, value), ``results.md`` (test metrics, mean ± std over the seeds found) and
``run_info.csv`` (per run: best epoch, epochs run, seconds per epoch) for every run directory
with a ``metrics.json``; runs still in progress are listed as missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from lirdrec.experiments.runner import _long_rows, load_experiment, results_table

REPO = Path(__file__).resolve().parents[2]


def main(study: str) -> None:
    exp = load_experiment(REPO / "datasets/experiments/lmm4rec.yaml")
    rows, info, missing = [], [], []
    for dname in exp.datasets:
        for variant, mcfg in exp.models.items():
            for seed in exp.seeds:
                run = Path(study) / "runs" / dname / variant / f"seed-{seed}" / "point-000"
                if not (run / "metrics.json").is_file():
                    missing.append(f"{dname}/{variant}/seed-{seed}")
                    continue
                m = json.loads((run / "metrics.json").read_text())
                rows += _long_rows(dname, mcfg["model"], variant, seed, "valid", m["valid"])
                rows += _long_rows(dname, mcfg["model"], variant, seed, "test", m["test"])
                info.append({"dataset": dname, "variant": variant, "seed": seed,
                             "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
                             "stopped_early": m["stopped_early"],
                             "train_time_s": m.get("train_time_s"),
                             "s_per_epoch": m.get("seconds_per_epoch")})
    out = REPO / "results" / "lmm4rec"
    df = pd.DataFrame(rows)
    df.to_csv(out / "results.csv", index=False)
    pd.DataFrame(info).to_csv(out / "run_info.csv", index=False)
    text = (f"# {exp.name}\n\nTest metrics at the epoch selected by validation Recall@20; "
            f"mean ± std over the seeds found ({', '.join(map(str, exp.seeds))}).\n\n"
            + results_table(df, metrics=("Recall@10", "Recall@20", "NDCG@10", "NDCG@20")) + "\n")
    if missing:
        text += "\nNot finished (no metrics.json): " + ", ".join(missing) + "\n"
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/runs/lmm4rec/study")
