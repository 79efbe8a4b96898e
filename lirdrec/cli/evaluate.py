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
    from lirdrec.config import read_yaml, resolve
    from lirdrec.evaluate import evaluate
    from lirdrec.train.checkpoint import load_checkpoint
    from lirdrec.train.run import build_model, load_run_dataset
    from lirdrec.utils.table import format_table

    run_dir = Path(args.run_dir)
    ck = load_checkpoint(run_dir / "checkpoint.pt")  # refused before any data is read
    saved = read_yaml(run_dir / "config.yaml")
    cfg = resolve(saved.get("model"), [saved])
    seed = cfg.trainer_kwargs["seed"]
    ds = load_run_dataset(args.data or cfg.data["data"], cfg.data["modalities"],
                          cfg.data["cold_items"], seed)
    from lirdrec.train.encoded import encoder_features, encoder_settings

    ds, feature_encoder = encoder_features(ds, encoder_settings(**cfg.encoder), seed, run_dir)
    model = build_model(cfg.model, ds, seed, **cfg.model_kwargs)
    if feature_encoder is not None:
        model.attach_feature_encoder(feature_encoder)
    model.load_state_dict(ck["train"]["best_state"])
    model.load_extra_state(ck["train"]["best_extra"])
    ks = cfg.trainer_kwargs["ks"]
    rows = []
    for split in ("valid", "test"):
        m = evaluate(model, ds, split, ks, mask_valid=cfg.trainer_kwargs["mask_valid_at_test"])
        rows.append({"model": cfg.model, "split": split, "best_epoch": ck["train"]["best_epoch"],
                     **{k: m.get(k, float("nan")) for k in METRIC_COLUMNS}})
    print(format_table(rows))
    return 0
