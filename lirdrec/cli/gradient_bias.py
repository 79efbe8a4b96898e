r"""``lirdrec gradient-bias``: train several models with the gradient-bias recorder.

Example::

    lirdrec gradient-bias --models vbpr,freedom,bm3,lattice,lirdrec-id,lirdrec \
        --data ../shared/data/tiktok --epochs 30 --out results/gradient_bias/tiktok
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lirdrec.config import parse_value
from lirdrec.errors import ConfigError
from lirdrec.utils.logging import setup_logging

__all__ = ["add_arguments", "add_parser", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the gradient-bias script."""
    p.add_argument(
        "--models",
        required=True,
        help="comma-separated model names; lirdrec-id = lirdrec with item_id=add",
    )
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--epochs", type=int, default=30, help="epochs per model (no early stopping)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--modalities", help="comma-separated feature subset, e.g. image,text")
    p.add_argument("--every", type=int, default=1, help="record every n-th optimiser step")
    p.add_argument("--buckets", type=int, default=5, help="popularity buckets (degree quantiles)")
    p.add_argument(
        "--no-probe",
        dest="probe",
        action="store_false",
        help="skip the per-epoch ID-only / feature-only probe",
    )
    p.add_argument("--seed", type=int, default=999)
    p.add_argument(
        "--config-dir",
        default="default",
        help="directory of <model>.yaml hyper-parameters (default: the repository's "
        "datasets/configs); 'none' uses constructor defaults",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="MODEL.KEY=VALUE",
        help="override one model's key, e.g. --set freedom.reg_weight=1e-3",
    )
    p.add_argument(
        "--snapshots",
        choices=("memory", "disk"),
        default="memory",
        help="keep the per-epoch parameter snapshots in memory or in temporary files",
    )
    p.add_argument("--device", help="cpu or cuda")
    p.add_argument("--no-figures", dest="figures", action="store_false", help="skip the figures")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        label, dot, name = key.partition(".")
        if not sep or not dot or not label or not name:
            raise ConfigError(f"--set expects MODEL.KEY=VALUE, got {item!r}")
        out.setdefault(label.strip().lower(), {})[name.strip()] = parse_value(value)
    return out


def run(args: argparse.Namespace) -> int:
    """Run the script from parsed arguments; prints where the outputs are."""
    from lirdrec.diagnostics.gradient_bias import run_gradient_bias

    if getattr(args, "verbose", None) is not None:
        setup_logging(args.verbose, Path(args.out) / "log.txt")
    cfg_dir = None if str(args.config_dir).lower() == "none" else args.config_dir
    run_gradient_bias(
        models=[m for m in args.models.split(",") if m.strip()],
        data=args.data,
        epochs=args.epochs,
        out_dir=args.out,
        modalities=args.modalities,
        every=args.every,
        num_buckets=args.buckets,
        probe=args.probe,
        seed=args.seed,
        config_dir=cfg_dir,
        overrides=_parse_overrides(args.sets),
        snapshots=args.snapshots,
        device=args.device,
        show_progress=args.progress,
        figures=args.figures,
    )
    out = Path(args.out)
    print(
        f"gradient-bias outputs in {out}: summary.md, grad_bias.csv, item_grad_by_popularity.csv, "
        "probe.csv" + (", figures (*.png)" if args.figures else "")
    )
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``gradient-bias`` to the ``lirdrec`` command line."""
    p = subparsers.add_parser(
        "gradient-bias",
        help="measure the ID vs feature gradient bias",
        description=__doc__.split("\n")[0],
    )
    add_arguments(p)
    p.set_defaults(func=run)
    return p
