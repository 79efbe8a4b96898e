"""``lirdrec tune --model M --data D --space SPACE.yaml --trials N``: TPE search by validation."""

from __future__ import annotations

import argparse
from pathlib import Path

from lirdrec.cli.common import add_run_options
from lirdrec.cli.common import resolve_args as _resolve_args
from lirdrec.cli.common import train_run as _train
from lirdrec.utils.logging import setup_logging

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    """Run (or continue) the study and print its best trials."""
    from lirdrec.config import read_yaml
    from lirdrec.experiments.tune import parse_space, tune
    from lirdrec.utils.table import format_table

    space = parse_space(read_yaml(args.space), str(args.space))
    base = _resolve_args(args)  # every fixed setting validated before any training
    for key in space.params:  # a misspelt key fails now, not after the first trial
        _resolve_args(args, extra={key: _probe(space.params[key])})
    name = f"tune-{base.model}-{Path(args.data).name}"
    out = Path(args.out) if args.out else Path("runs") / name
    setup_logging(args.verbose, out / "log.txt")
    metric = base.trainer_kwargs.get("valid_metric", "Recall@20")

    def train(params, run_dir, resume):
        cfg = _resolve_args(args, extra=params)
        return _train(cfg, run_dir, resume=resume)[0]

    res = tune(train, space, out, args.trials, seed=args.tune_seed, metric=metric)
    rows = sorted(res.trials, key=lambda r: -r[f"valid/{metric}"])[:10]
    print(format_table(rows, [c for c in rows[0] if c != "run_dir"]))
    best = ", ".join(f"{k}={v}" for k, v in res.best_params.items())
    test = res.best_test.get("Recall@20", float("nan"))
    print(f"best by validation {metric}: {best} -> valid {res.best_valid:.4f}, "
          f"test Recall@20 {test:.4f} ({res.best_dir})")
    return 0


def _probe(spec: tuple):
    return spec[1][0] if spec[0] == "cat" else spec[1]


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="hyper-parameter search with Optuna's TPE, by validation")
    add_run_options(p)
    p.add_argument("--space", required=True,
                   help="YAML search space (see lirdrec.experiments.tune)")
    p.add_argument("--trials", type=int, default=20, help="finished trials wanted in total")
    p.add_argument("--tune-seed", type=int, default=999, help="TPE sampler seed")
    p.add_argument("--out",
                   help="study folder (default runs/tune-<model>-<data>); rerun to continue")
    p.set_defaults(func=run)
