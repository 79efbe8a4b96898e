"""``lirdrec evaluate RUN_DIR``: re-evaluate the best checkpoint of a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from lirdrec.cli.common import METRIC_COLUMNS

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="evaluate the best checkpoint of a run")
    p.add_argument("run_dir")
    p.add_argument("--data", help="dataset (default: the run's)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Re-evaluate the best checkpoint of a run directory."""
    from lirdrec.evaluate import evaluate
    from lirdrec.train.run import load_run, load_run_config
    from lirdrec.utils.table import format_table

    run_dir = Path(args.run_dir)
    # the checkpoint is opened (and a code-carrying one refused) before any data is read
    model, ds, best_epoch = load_run(run_dir, args.data)
    cfg = load_run_config(run_dir)
    ks = cfg.trainer_kwargs["ks"]
    rows = []
    for split in ("valid", "test"):
        m = evaluate(model, ds, split, ks, mask_valid=cfg.trainer_kwargs["mask_valid_at_test"])
        rows.append({"model": cfg.model, "split": split, "best_epoch": best_epoch,
                     **{k: m.get(k, float("nan")) for k in METRIC_COLUMNS}})
    print(format_table(rows))
    return 0
