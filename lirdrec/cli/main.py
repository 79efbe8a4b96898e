"""``lirdrec`` command line: a thin layer over the Python API.

Commands: ``demo``, ``validate``, ``train``, ``evaluate``, ``grid`` and the ones contributed by
other stages (``prepare``, ``gradient-bias``, ``experiment``). A :class:`~lirdrec.errors.LirdrecError`
prints one line to stderr and exits 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import json
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lirdrec.errors import ConfigError, LirdrecError

logger = logging.getLogger("lirdrec")

#: Modules that add sub-commands with ``add_parser(subparsers)``; each sets ``func``.
PLUGINS = ("lirdrec.cli.prepare", "lirdrec.diagnostics.cli", "lirdrec.experiments.cli",
           "lirdrec.cli.download", "lirdrec.cli.tune", "lirdrec.cli.recommend")

METRIC_COLUMNS = ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20", "Precision@20", "MAP@20")


def setup_logging(verbosity: int = 0, log_file: Path | None = None) -> None:
    """Console handler (INFO, or DEBUG with -v; WARNING with -q) and an optional run log file."""
    if not _is_rank_zero():  # a multi-process run logs once, from rank 0
        verbosity, log_file = -1, None
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    root = logging.getLogger("lirdrec")
    root.setLevel(min(level, logging.INFO) if log_file else level)
    if not any(getattr(h, "_lirdrec", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        h.setLevel(level)
        h._lirdrec = True  # type: ignore[attr-defined]
        root.addHandler(h)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file)
        fh.setLevel(logging.INFO)
        fh.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(fh)


def _is_rank_zero() -> bool:
    from lirdrec.cli.launch import is_worker_rank_zero

    return is_worker_rank_zero()


# ----------------------------------------------------------------------------- shared options
def _add_run_options(p: argparse.ArgumentParser, required: bool = True) -> None:
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


def _resolve_args(args: argparse.Namespace, extra: dict[str, Any] | None = None):
    from lirdrec.cli.config import parse_sets, read_yaml, resolve

    layers = []
    if getattr(args, "config", None):
        layers.append(read_yaml(args.config))
    layers.append(parse_sets(args.sets))
    if extra:
        layers.append(extra)
    flags = {"epochs": args.epochs, "seed": args.seed, "device": args.device,
             "cold_items": args.cold_items, "data": str(args.data)}
    layers.append(flags)
    return resolve(args.model, layers)


def _metrics_rows(name: str, result) -> list[dict[str, Any]]:
    rows = []
    for split, metrics in (("valid", result.valid), ("test", result.test)):
        row = {"model": name, "split": split, "best_epoch": result.best_epoch}
        row.update({k: metrics.get(k, float("nan")) for k in METRIC_COLUMNS})
        rows.append(row)
    return rows


def _train(cfg, out_dir: Path | None, resume: bool, callbacks=(), data=None):
    from lirdrec.train.run import run_training
    from lirdrec.train.tracking import make_loggers

    loggers = make_loggers(cfg.run.get("logger")) if _is_rank_zero() else []  # one log per run
    callbacks = [*callbacks, *loggers]
    return run_training(cfg.model, data if data is not None else cfg.data["data"],
                        model_kwargs=cfg.model_kwargs, trainer_kwargs=cfg.trainer_kwargs,
                        modalities=cfg.data["modalities"], cold_items=cfg.data["cold_items"],
                        out_dir=out_dir, resume=resume, callbacks=callbacks,
                        config=cfg.to_dict() | {"out": str(out_dir) if out_dir else None})


# ----------------------------------------------------------------------------- commands
def cmd_validate(args: argparse.Namespace) -> int:
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


def cmd_train(args: argparse.Namespace) -> int:
    """Train one model to early stopping and print its metrics table."""
    from lirdrec.utils.table import format_table

    if args.resume:
        return _resume(args)
    cfg = _resolve_args(args)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.model}-{Path(args.data).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    setup_logging(args.verbose, out / "log.txt")
    result, _, _ = _train(cfg, out, resume=False)
    if _is_rank_zero():
        print(format_table(_metrics_rows(cfg.model, result)))
        print(f"run directory: {out}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from lirdrec.cli.config import read_yaml, resolve
    from lirdrec.utils.table import format_table

    run_dir = Path(args.resume)
    saved = read_yaml(run_dir / "config.yaml")
    saved.pop("out", None)
    if args.epochs:
        saved["epochs"] = args.epochs
    cfg = resolve(saved.get("model"), [saved])
    setup_logging(args.verbose, run_dir / "log.txt")
    result, _, _ = _train(cfg, run_dir, resume=True, data=args.data or saved.get("data"))
    if _is_rank_zero():
        print(format_table(_metrics_rows(cfg.model, result)))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Re-evaluate the best checkpoint of a run directory."""
    from lirdrec.cli.config import read_yaml, resolve
    from lirdrec.evaluate import evaluate
    from lirdrec.train.checkpoint import load_checkpoint
    from lirdrec.train.run import build_model, prepare_dataset
    from lirdrec.utils.table import format_table

    run_dir = Path(args.run_dir)
    ck = load_checkpoint(run_dir / "checkpoint.pt")  # refused before any data is read
    saved = read_yaml(run_dir / "config.yaml")
    cfg = resolve(saved.get("model"), [saved])
    seed = cfg.trainer_kwargs["seed"]
    ds = prepare_dataset(args.data or cfg.data["data"], cfg.data["modalities"], cfg.data["cold_items"], seed)
    model = build_model(cfg.model, ds, seed, **cfg.model_kwargs)
    model.load_state_dict(ck["train"]["best_state"])
    model.load_extra_state(ck["train"]["best_extra"])
    ks = cfg.trainer_kwargs["ks"]
    rows = []
    for split in ("valid", "test"):
        m = evaluate(model, ds, split, ks, mask_valid=cfg.trainer_kwargs["mask_valid_at_test"])
        rows.append({"model": cfg.model, "split": split, "best_epoch": ck["train"]["best_epoch"],
                     **{k: m.get(k, float("nan")) for k in METRIC_COLUMNS}})
    print(format_table(rows))
    return 0


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


def cmd_grid(args: argparse.Namespace) -> int:
    """Train every point of a grid; pick the winner by validation metric."""
    from lirdrec.cli.config import read_yaml
    from lirdrec.train.run import check_finished_run
    from lirdrec.utils.io import atomic_write
    from lirdrec.utils.table import format_table

    grid = read_yaml(args.grid)
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{args.grid}: grid key {k!r} must map to a non-empty list, got {v!r}")
    keys = list(grid)
    points = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    shard, n_shards = _parse_shard(args.shard)
    out = Path(args.out) if args.out else Path("runs") / f"grid-{args.model}-{Path(args.data).name}"
    setup_logging(args.verbose, out / ("log.txt" if n_shards == 1 else f"log-{shard}of{n_shards}.txt"))
    base = _resolve_args(args)  # validates the fixed part once
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
        cfg = _resolve_args(args, extra=point)
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
        fh.write(f"# Grid: {args.model} on {args.data}\n\nSelected by validation {metric}.\n\n{table}\n")
    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "grid.csv", index=False)
    print(table)
    print(f"winner (by validation {metric}): point {win['point']} "
          + ", ".join(f"{k}={win[k]}" for k in keys))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Write the synthetic dataset, train the models and print a metrics table."""
    from lirdrec.data import load_dataset
    from lirdrec.data.synthetic import write_synthetic
    from lirdrec.models import registry
    from lirdrec.train.run import run_training
    from lirdrec.utils.table import format_table

    setup_logging(args.verbose)
    tmp = None
    if args.out:
        out = Path(args.out)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="lirdrec-demo-")
        out = Path(tmp.name)
    data_dir, how = write_synthetic(out / "synthetic", seed=args.seed,
                                    use_encoders=False if args.numeric else None)
    print(f"SYNTHETIC dataset written to {data_dir} (features made by: {how}; planted topics, "
          "not real data)")
    ds = load_dataset(data_dir)
    cold = np.flatnonzero(ds.item_degree() == 0)
    ds = replace(ds, cold_items=cold)  # report items never seen in training separately
    models = [m for m in ("pop", "mf", "lightgcn", "lirdrec") if m in registry.names()]
    # one short-budget setting for every model (LIRDRec's reference lr 1e-4 needs hundreds of
    # epochs; 1e-3 lets every model converge within the demo's 40)
    train = {"lr": 1e-3, "epochs": args.epochs, "patience": 10, "seed": args.seed, "batch_size": 1024}
    rows = []
    for name in models:
        t0 = time.perf_counter()
        result, _, _ = run_training(name, ds, {}, train, show_progress=not args.quiet)
        t = result.test
        rows.append({"model": name, "best_epoch": result.best_epoch, "Recall@20": t["Recall@20"],
                     "NDCG@20": t["NDCG@20"], "Precision@20": t["Precision@20"],
                     "cold Recall@20": t.get("cold/Recall@20", float("nan")),
                     "time": f"{time.perf_counter() - t0:.1f}s"})
    print(f"\nTest metrics at the best validation epoch ({len(cold)} items never seen in training; "
          "'cold' = ranking them for their test users):\n")
    print(format_table(rows))
    if tmp is not None:
        tmp.cleanup()
    return 0


# ----------------------------------------------------------------------------- parser
def _add_nproc(p: argparse.ArgumentParser) -> None:
    from lirdrec.cli.launch import add_nproc_option

    add_nproc_option(p)


def build_parser() -> argparse.ArgumentParser:
    from lirdrec.models import registry

    parser = argparse.ArgumentParser(prog="lirdrec", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbose",
                        help="warnings only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="train and evaluate on the built-in SYNTHETIC dataset")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="keep the synthetic data here (default: a temp dir)")
    p.add_argument("--numeric", action="store_true", help="skip the real encoders")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("validate", help="check a dataset and print its summary")
    p.add_argument("path", help="dataset directory or dataset YAML")
    p.add_argument("--modalities", help="comma-separated subset of the feature files")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("train", help="train one model to early stopping",
                       description=f"models: {', '.join(registry.names())}")
    _add_run_options(p, required=False)  # both implied by --resume
    p.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    _add_nproc(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate the best checkpoint of a run")
    p.add_argument("run_dir")
    p.add_argument("--data", help="dataset (default: the run's)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("grid", help="grid search, selected by validation Recall@20")
    _add_run_options(p)
    p.add_argument("--grid", required=True, help="YAML mapping key -> list of values")
    p.add_argument("--out", help="grid directory (default runs/grid-<model>-<data>)")
    p.add_argument("--shard", metavar="K/N",
                   help="train only grid points K, K+N, K+2N, ... (1-based) that are not finished, so "
                        "that N processes share one grid directory; the last to finish writes the winner")
    p.set_defaults(func=cmd_grid)

    for mod in PLUGINS:
        if importlib.util.find_spec(mod) is not None:
            importlib.import_module(mod).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lirdrec`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and not args.resume and not (args.model and args.data):
        parser.error("train: --model and --data are required (unless --resume RUN_DIR)")
    try:
        from lirdrec.cli.launch import launch_if_asked

        launched = launch_if_asked(args, argv)  # --nproc N > 1: the command under torchrun
        if launched is not None:
            return launched
        return int(args.func(args) or 0)
    except LirdrecError as exc:
        print(f"lirdrec: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lirdrec: interrupted; a run can continue with `lirdrec train --resume RUN_DIR`",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
