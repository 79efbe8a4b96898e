"""``lirdrec grid``: train every point of a grid; pick the winner by validation metric."""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from pathlib import Path

from lirdrec.cli.common import add_run_options, resolve_args
from lirdrec.cli.common import train_run as _train  # a module name tests can patch
from lirdrec.errors import ConfigError
from lirdrec.utils.logging import setup_logging

logger = logging.getLogger("lirdrec")

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("grid", help="grid search, selected by validation Recall@20")
    add_run_options(p)
    p.add_argument("--grid", required=True, help="YAML mapping key -> list of values")
    p.add_argument("--out", help="grid directory (default runs/grid-<model>-<data>)")
    p.add_argument("--shard", metavar="K/N",
                   help="train only grid points K, K+N, K+2N, ... (1-based) that are not "
                        "finished, so that N processes share one grid directory; the last to "
                        "finish writes the winner")
    p.set_defaults(func=run)
    return p


def _parse_shard(text: str | None) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``; ``None`` -> ``(1, 1)``."""
    if text is None:
        return 1, 1
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise ConfigError(f"--shard must be K/N with 1 <= K <= N (e.g. 1/2), got {text!r}")
    return k, n


def run(args: argparse.Namespace) -> int:
    """Train every point of a grid; pick the winner by validation metric."""
    from lirdrec.config import read_yaml
    from lirdrec.train.run import check_finished_run
    from lirdrec.utils.io import atomic_write
    from lirdrec.utils.table import format_table

    grid = read_yaml(args.grid)
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{args.grid}: grid key {k!r} must map to a non-empty list, "
                              f"got {v!r}")
    keys = list(grid)
    points = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    shard, n_shards = _parse_shard(args.shard)
    out = Path(args.out) if args.out else Path("runs") / f"grid-{args.model}-{Path(args.data).name}"
    setup_logging(args.verbose,
                  out / ("log.txt" if n_shards == 1 else f"log-{shard}of{n_shards}.txt"))
    base = resolve_args(args)  # validates the fixed part once
    rows = []
    metric = base.trainer_kwargs["valid_metric"]

    def run_dir(idx: int) -> Path:
        return out / f"point-{idx:03d}"

    def finished(idx: int, cfg) -> dict | None:
        d = run_dir(idx)
        if not ((d / "metrics.json").is_file() and (d / "config.yaml").is_file()):
            return None
        res = json.loads((d / "metrics.json").read_text())
        check_finished_run(d, cfg.to_dict(), res)
        return res

    def row(idx: int, point: dict, valid: dict, test: dict, best: int) -> dict:
        return {"point": idx, **point, "best_epoch": best, f"valid/{metric}": valid[metric],
                "test/Recall@20": test.get("Recall@20"), "test/NDCG@20": test.get("NDCG@20")}

    others = []  # other shards' points, unfinished when this shard passed them
    for idx, point in enumerate(points):
        cfg = resolve_args(args, extra=point)
        res = finished(idx, cfg)
        if res is not None:
            logger.info("grid point %d/%d already finished: %s", idx + 1, len(points), point)
            rows.append(row(idx, point, res["valid"], res["test"], res["best_epoch"]))
        elif idx % n_shards != shard - 1:
            others.append((idx, point, cfg))
        else:
            logger.info("grid point %d/%d: %s", idx + 1, len(points), point)
            result, _, _ = _train(cfg, run_dir(idx), resume=False)
            rows.append(row(idx, point, result.valid, result.test, result.best_epoch))
    for idx, point, cfg in others:  # finished by now? (the last shard to end collects them all)
        res = finished(idx, cfg)
        if res is not None:
            rows.append(row(idx, point, res["valid"], res["test"], res["best_epoch"]))
    rows.sort(key=lambda r: r["point"])
    if len(rows) < len(points):
        print(format_table(rows))
        print(f"shard {shard}/{n_shards} done: {len(rows)} of {len(points)} grid points finished; "
              f"run the other shards (or the grid without --shard) for the rest and the winner")
        return 0
    win = max(rows, key=lambda r: r[f"valid/{metric}"])
    for r in rows:
        r["winner"] = "*" if r is win else ""
    table = format_table(rows)
    with atomic_write(out / "grid.md", "w") as fh:
        fh.write(f"# Grid: {args.model} on {args.data}\n\n"
                 f"Selected by validation {metric}.\n\n{table}\n")
    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "grid.csv", index=False)
    print(table)
    print(f"winner (by validation {metric}): point {win['point']} "
          + ", ".join(f"{k}={win[k]}" for k in keys))
    return 0
