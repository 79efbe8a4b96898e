"""``lirdrec experiment FILE.yaml [--small]``."""

from __future__ import annotations

import argparse

__all__ = ["add_parser"]


def _run(args: argparse.Namespace) -> int:
    from lirdrec.cli.main import setup_logging
    from lirdrec.experiments.runner import load_experiment, results_table, run_experiment

    exp = load_experiment(args.file)
    setup_logging(args.verbose, exp.out / ("small" if args.small else "") / "log.txt")
    df = run_experiment(exp, small=args.small)
    print(results_table(df))
    print(f"results: {exp.out / ('small' if args.small else '')}/results.csv")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("experiment", help="run an experiment YAML (datasets x models x grids x seeds)")
    p.add_argument("file", help="experiment YAML")
    p.add_argument("--small", action="store_true", help="apply the file's `small` overrides")
    p.set_defaults(func=_run)
