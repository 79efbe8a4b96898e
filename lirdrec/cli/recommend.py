"""``lirdrec recommend`` and ``lirdrec similar-items``: lists from a trained run.

Thin wrappers over :func:`lirdrec.evaluate.recommend.recommend` /
:func:`~lirdrec.evaluate.recommend.similar_items` and :func:`lirdrec.train.run.load_run`;
both accept ``--nproc N`` (users or items sharded across the processes, rank 0 writes).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from lirdrec.cli.launch import add_nproc_option, is_worker_rank_zero

__all__ = ["add_parser", "cmd_recommend", "cmd_similar_items", "read_ids"]


def add_parser(subparsers) -> None:
    """Register ``recommend`` and ``similar-items``."""
    p = subparsers.add_parser("recommend", help="top-K items per user from a trained run",
                              description="Top-K items per user (training items masked; items "
                                          "without training interactions ranked when the model "
                                          "scores them from features).")
    p.add_argument("run_dir")
    p.add_argument("--k", type=int, default=20, help="list length (default 20)")
    p.add_argument("--users", help="file of user ids, one per line (default: every user)")
    p.add_argument("--out", help="CSV file: user_id,rank,item_id,score (default: stdout)")
    p.add_argument("--data", help="dataset (default: the run's)")
    p.add_argument("--keep-train", action="store_true", help="do not mask training items")
    _cold_option(p)
    add_nproc_option(p)
    p.set_defaults(func=cmd_recommend)

    p = subparsers.add_parser("similar-items", help="item-to-item lists from a trained run",
                              description="The K items most similar to each item (cosine of "
                                          "the model's item vectors).")
    p.add_argument("run_dir")
    p.add_argument("--k", type=int, default=20, help="list length (default 20)")
    p.add_argument("--items", help="file of item ids, one per line (default: every item)")
    p.add_argument("--out", help="CSV file: item_id,rank,similar_item_id,similarity "
                                 "(default: stdout)")
    p.add_argument("--data", help="dataset (default: the run's)")
    _cold_option(p)
    add_nproc_option(p)
    p.set_defaults(func=cmd_similar_items)


def _cold_option(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--include-cold", dest="include_cold", action="store_true", default=None,
                   help="rank items without training interactions even for ID-only models")
    g.add_argument("--no-cold", dest="include_cold", action="store_false",
                   help="never rank items without training interactions")


def read_ids(path: str | Path, n: int, what: str) -> np.ndarray:
    """Integer ids, one per line (blank lines and ``#`` comments skipped), each in ``[0, n)``.

    Raises:
        DataError: naming the file and line of the first bad entries.
    """
    from lirdrec.errors import DataError, format_lines

    path = Path(path)
    if not path.is_file():
        raise DataError(path, message=f"no such {what} file")
    ids, bad, bad_values = [], [], []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            value = -1
        if not 0 <= value < n:
            bad.append(line_no)
            bad_values.append(text)
        ids.append(value)
    if bad:
        raise DataError(path, line=format_lines(bad, bad_values),
                        expected=f"one {what} id per line, an integer in [0, {n})")
    if not ids:
        raise DataError(path, message=f"no {what} ids")
    return np.asarray(ids, dtype=np.int64)


def _write_rows(out: str | None, header: str, ids: np.ndarray, items, scores) -> None:
    """Long CSV: one row per (id, rank); rank 0 alone writes."""
    if not is_worker_rank_zero():
        return
    k = items.shape[1]
    ranks = np.tile(np.arange(1, k + 1), len(ids))
    keep = np.isfinite(scores.numpy().reshape(-1))  # -inf: nothing left to recommend
    cols = np.stack([np.repeat(ids, k), ranks, items.numpy().reshape(-1)], 1)[keep]
    buf = io.StringIO()
    buf.write(header + "\n")
    vals = scores.numpy().reshape(-1)[keep]
    buf.writelines(f"{a},{b},{c},{v:.6g}\n" for (a, b, c), v in zip(cols.tolist(), vals.tolist()))
    if out is None:
        sys.stdout.write(buf.getvalue())
        return
    from lirdrec.utils.io import atomic_write

    with atomic_write(Path(out), "w") as fh:
        fh.write(buf.getvalue())
    print(f"{len(ids)} lists of up to {k} written to {out}", file=sys.stderr)


def _load(args: argparse.Namespace):
    from lirdrec.errors import ConfigError
    from lirdrec.train.distributed import init_distributed
    from lirdrec.train.run import load_run

    if args.k < 1:
        raise ConfigError(f"--k must be >= 1, got {args.k}")
    init_distributed()  # under torchrun; nothing for one process
    return load_run(args.run_dir, args.data)


def cmd_recommend(args: argparse.Namespace) -> int:
    """Top-K items per user to CSV."""
    from lirdrec.evaluate.recommend import recommend

    model, ds, _ = _load(args)
    users = None if args.users is None else read_ids(args.users, ds.num_users, "user")
    users, items, scores = recommend(model, ds, users, args.k, exclude_train=not args.keep_train,
                                     include_cold=args.include_cold)
    _write_rows(args.out, "user_id,rank,item_id,score", users, items, scores)
    return 0


def cmd_similar_items(args: argparse.Namespace) -> int:
    """Item-to-item lists to CSV."""
    from lirdrec.evaluate.recommend import similar_items

    model, ds, _ = _load(args)
    items = None if args.items is None else read_ids(args.items, ds.num_items, "item")
    items, neigh, sims = similar_items(model, ds, items, args.k, include_cold=args.include_cold)
    _write_rows(args.out, "item_id,rank,similar_item_id,similarity", items, neigh, sims)
    return 0
