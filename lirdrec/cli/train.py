"""``lirdrec train``: train one model to early stopping (or ``--resume RUN_DIR``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lirdrec.cli.common import add_run_options, metrics_rows, resolve_args, train_run
from lirdrec.cli.launch import add_nproc_option, is_worker_rank_zero
from lirdrec.utils.logging import close_log_files, setup_logging

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    from lirdrec.models import registry

    p = subparsers.add_parser("train", help="train one model to early stopping",
                              description=f"models: {', '.join(registry.names())}")
    add_run_options(p, required=False)  # both implied by --resume
    p.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    add_nproc_option(p)
    p.set_defaults(func=run, check=check)
    return p


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--model`` and ``--data`` are required unless ``--resume`` names a run."""
    if not args.resume and not (args.model and args.data):
        parser.error("train: --model and --data are required (unless --resume RUN_DIR)")


def run(args: argparse.Namespace) -> int:
    """Train one model to early stopping and print its metrics table."""
    from lirdrec.utils.table import format_table

    if args.resume:
        return resume(args)
    cfg = resolve_args(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    default = Path("runs") / f"{cfg.model}-{Path(args.data).name}-{stamp}"
    out = Path(args.out) if args.out else default
    existed = out.exists()
    setup_logging(args.verbose, out / "log.txt")
    try:
        result, _, _ = train_run(cfg, out, resume=False)
    except KeyboardInterrupt:
        raise  # a checkpoint (if any) is what --resume continues from
    except BaseException as exc:
        if is_worker_rank_zero():
            mark_failed(out, exc, created=not existed)
        raise
    if is_worker_rank_zero():  # a multi-process run prints once
        print(format_table(metrics_rows(cfg.model, result)))
        print(f"run directory: {out}")
    return 0


def mark_failed(out: Path, exc: BaseException, created: bool) -> None:
    """A failed run never looks like a run: removed if this call created it and it holds no
    checkpoint, else marked with ``FAILED.txt`` (the error), which ``--resume`` and the readers
    of ``metrics.json`` ignore.
    """
    import shutil

    if not out.is_dir():
        return
    if created and not (out / "checkpoint.pt").exists() and not (out / "metrics.json").exists():
        close_log_files(out)  # the run's log.txt first, then its folder
        shutil.rmtree(out, ignore_errors=True)
        return
    (out / "FAILED.txt").write_text(f"{type(exc).__name__}: {exc}\n")


def resume(args: argparse.Namespace) -> int:
    """Continue the run in ``args.resume`` with the configuration it saved."""
    from lirdrec.config import read_yaml, resolve
    from lirdrec.utils.table import format_table

    run_dir = Path(args.resume)
    saved = read_yaml(run_dir / "config.yaml")
    saved.pop("out", None)
    if args.epochs:
        saved["epochs"] = args.epochs
    cfg = resolve(saved.get("model"), [saved])
    setup_logging(args.verbose, run_dir / "log.txt")
    result, _, _ = train_run(cfg, run_dir, resume=True, data=args.data or saved.get("data"))
    if is_worker_rank_zero():
        print(format_table(metrics_rows(cfg.model, result)))
    return 0
