"""``lirdrec validate PATH``: load a dataset with every check and print its summary."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("validate", help="check a dataset and print its summary")
    p.add_argument("path", help="dataset directory or dataset YAML")
    p.add_argument("--modalities", help="comma-separated subset of the feature files")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Load with every check and print a summary."""
    from lirdrec.data import load_dataset

    ds = load_dataset(args.path, modalities=args.modalities)
    s = ds.summary()
    print(f"dataset     {s['name']}  ({args.path})")
    print(f"users       {s['users']}")
    print(f"items       {s['items']}  ({s['items_not_in_train']} never in training, "
          f"{s['items_without_interactions']} without interactions)")
    print(f"interactions train {s['train']}, valid {s['valid']}, test {s['test']}")
    print(f"density     {s['density']:.5f} (training)")
    for m, shape in s["features"].items():
        print(f"feature     {m}: {shape[0]} x {shape[1]} float32")
    print(f"cold users  valid {s['cold_users_valid']}, test {s['cold_users_test']} "
          "(no training interaction; excluded from evaluation)")
    print("OK")
    return 0
