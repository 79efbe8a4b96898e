"""``lirdrec experiment FILE.yaml [--small]``: datasets x models x grids x seeds -> one table."""

from __future__ import annotations

import argparse

from lirdrec.utils.logging import setup_logging

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("experiment",
                              help="run an experiment YAML (datasets x models x grids x seeds)")
    p.add_argument("file", help="experiment YAML")
    p.add_argument("--small", action="store_true", help="apply the file's `small` overrides")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the experiment and print its results table."""
    from lirdrec.experiments.runner import load_experiment, results_table, run_experiment

    exp = load_experiment(args.file)
    setup_logging(args.verbose, exp.out / ("small" if args.small else "") / "log.txt")
    df = run_experiment(exp, small=args.small)
    print(results_table(df))
    print(f"results: {exp.out / ('small' if args.small else '')}/results.csv")
    return 0
