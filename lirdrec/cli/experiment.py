"""``lirdrec experiment FILE.yaml [--small]``: datasets x models x grids x seeds -> one table.

Long experiments split over processes by dataset or model and join with ``--collect``::

    lirdrec experiment main.yaml --datasets ml100k &      # one process per part
    lirdrec experiment main.yaml --datasets tiktok,hm &
    lirdrec experiment main.yaml --collect                # tables of every finished run
"""

from __future__ import annotations

import argparse

from lirdrec.utils.logging import setup_logging

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("experiment",
                              help="run an experiment YAML (datasets x models x grids x seeds)")
    p.add_argument("file", help="experiment YAML")
    p.add_argument("--small", action="store_true", help="apply the file's `small` overrides")
    p.add_argument("--collect", action="store_true",
                   help="train nothing: tables of the runs finished so far")
    p.add_argument("--datasets", type=_names, metavar="A,B",
                   help="only these datasets of the file (e.g. one process per dataset)")
    p.add_argument("--models", type=_names, metavar="A,B",
                   help="only these model entries of the file")
    p.set_defaults(func=run)
    return p


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated names")
    return names


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the experiment and print its results table."""
    from lirdrec.experiments.runner import load_experiment, results_table, run_experiment

    exp = load_experiment(args.file)
    setup_logging(args.verbose, exp.out / ("small" if args.small else "") / "log.txt")
    df = run_experiment(exp, small=args.small, collect_only=args.collect,
                        datasets=args.datasets, models=args.models)
    print(results_table(df))
    print(f"results: {exp.out / ('small' if args.small else '')}/results.csv")
    return 0
