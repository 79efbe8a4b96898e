"""Per-run facts of an experiment: epochs, early stopping, epoch caps, times.

The experiment runner keeps every run's files under ``<out>/runs/`` (git-ignored); this script
condenses them into ``<out>/run_info.csv`` (committed), one row per trained grid point::

    python results/run_info.py results/main_table

Columns: dataset, variant, seed, point, best_epoch, epochs_run, max_epochs, stopped_early,
capped (the epoch limit ended the run before patience did), train_s (optimiser steps only),
wall_s (training plus per-epoch evaluation, from log.csv), s_per_epoch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import yaml

COLUMNS = ["dataset", "variant", "seed", "point", "best_epoch", "epochs_run", "max_epochs",
           "stopped_early", "capped", "train_s", "wall_s", "s_per_epoch"]


def collect(out_dir: str | Path) -> pd.DataFrame:
    """One row per finished run under ``out_dir/runs/<dataset>/<variant>/seed-<s>/point-<i>``."""
    rows = []
    for metrics_file in sorted(Path(out_dir).glob("runs/*/*/seed-*/point-*/metrics.json")):
        run = metrics_file.parent
        metrics = json.loads(metrics_file.read_text())
        config = yaml.safe_load((run / "config.yaml").read_text())
        log = pd.read_csv(run / "log.csv") if (run / "log.csv").is_file() else pd.DataFrame()
        epochs_run = int(metrics.get("epochs_run", len(log)))
        wall = float((log["train_s"] + log["eval_s"]).sum()) if len(log) else 0.0
        rows.append({
            "dataset": run.parents[2].name, "variant": run.parents[1].name,
            "seed": int(run.parent.name.split("-", 1)[1]), "point": int(run.name.split("-", 1)[1]),
            "best_epoch": int(metrics["best_epoch"]), "epochs_run": epochs_run,
            "max_epochs": int(config["epochs"]), "stopped_early": bool(metrics["stopped_early"]),
            "capped": (not metrics["stopped_early"]) and epochs_run >= int(config["epochs"]) > 0,
            "train_s": round(float(metrics.get("train_time_s", 0.0)), 1), "wall_s": round(wall, 1),
            "s_per_epoch": round(wall / max(epochs_run, 1), 2),
        })
    return pd.DataFrame(rows, columns=COLUMNS)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python results/run_info.py RESULTS_DIR")
    out = Path(sys.argv[1])
    table = collect(out)
    table.to_csv(out / "run_info.csv", index=False)
    print(table.to_string(index=False))
