"""What several commands share: the run options, their config layers, one training run, the
metrics table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lirdrec.config import RunConfig, config_layers, resolve

__all__ = ["METRIC_COLUMNS", "add_run_options", "metrics_rows", "resolve_args", "train_run"]

METRIC_COLUMNS = ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20", "Precision@20", "MAP@20")


def add_run_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    """``--model --data --config --set --epochs --seed --device --cold-items``."""
    p.add_argument("--model", required=required, help="model name (see `lirdrec train --help`)")
    p.add_argument("--data", required=required, help="dataset directory or dataset YAML")
    p.add_argument("--config", help="YAML file of hyper-parameters (MMRec keys accepted)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. --set modalities=image,text --set lr=1e-4")
    p.add_argument("--epochs", type=int, help="maximum epochs")
    p.add_argument("--seed", type=int, help="random seed (default 999)")
    p.add_argument("--device", help="cpu or cuda")
    p.add_argument("--cold-items", type=float, dest="cold_items",
                   help="hold this fraction of items out of training (cold-start protocol)")


def resolve_args(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> RunConfig:
    """Config file < ``--set`` < ``extra`` (a grid point) < explicit flags, every value checked.

    Nothing is loaded before this returns: unknown keys, types, the device, the trainer's
    settings and every model argument that needs no data fail here in one line.
    """
    flags = {"epochs": args.epochs, "seed": args.seed, "device": args.device,
             "cold_items": args.cold_items, "data": str(args.data)}
    cfg = resolve(args.model,
                  config_layers(getattr(args, "config", None), args.sets, extra, flags))
    check_early(cfg)
    return cfg


def check_early(cfg: RunConfig) -> None:
    """What can be checked without data: device, trainer settings, model arguments, loggers."""
    from lirdrec.models import registry
    from lirdrec.models.base import check_arguments_early
    from lirdrec.train import Trainer
    from lirdrec.train.encoded import encoder_settings
    from lirdrec.train.tracking import make_loggers

    Trainer(**cfg.trainer_kwargs)  # validates lr, epochs, ks, valid_metric, device, ...
    check_arguments_early(registry.get(cfg.model), cfg.model_kwargs)
    make_loggers(cfg.run.get("logger"))
    encoder_settings(**cfg.encoder)  # encoder name and mode


def metrics_rows(name: str, result) -> list[dict[str, Any]]:
    """One table row per split of a :class:`~lirdrec.train.FitResult`."""
    rows = []
    for split, metrics in (("valid", result.valid), ("test", result.test)):
        row = {"model": name, "split": split, "best_epoch": result.best_epoch}
        row.update({k: metrics.get(k, float("nan")) for k in METRIC_COLUMNS})
        rows.append(row)
    return rows


def train_run(cfg: RunConfig, out_dir: Path | None, resume: bool, callbacks=(), data=None):
    """:func:`~lirdrec.train.run.run_training` of a resolved config."""
    from lirdrec.cli.launch import is_worker_rank_zero
    from lirdrec.train.run import run_training
    from lirdrec.train.tracking import make_loggers

    loggers = make_loggers(cfg.run.get("logger")) if is_worker_rank_zero() else []  # one log
    callbacks = [*callbacks, *loggers]
    return run_training(cfg.model, data if data is not None else cfg.data["data"],
                        model_kwargs=cfg.model_kwargs, trainer_kwargs=cfg.trainer_kwargs,
                        modalities=cfg.data["modalities"], cold_items=cfg.data["cold_items"],
                        out_dir=out_dir, resume=resume, callbacks=callbacks,
                        config=cfg.to_dict() | {"out": str(out_dir) if out_dir else None},
                        encoder=cfg.encoder)
