"""Experiment runner: datasets x model variants x grid points x seeds -> one tidy results table.

An experiment YAML::

    name: main_table
    out: results/main_table            # relative to the YAML file
    datasets:
      ml100k: {data: ../shared/data/ml100k, modalities: image,text}
      tiktok: {data: ../shared/data/tiktok}
      ml100k-cold: {data: ../shared/data/ml100k, cold_items: 0.2}   # cold-item protocol
    models:                            # variant name -> registry model, fixed params, grid
      lightgcn: {model: lightgcn, params: {num_layers: 2}, grid: {reg_weight: [1.0e-3, 1.0e-4]}}
      lirdrec: {model: lirdrec}
      lirdrec-id: {model: lirdrec, params: {item_id: add}}
    seeds: [999]
    trainer: {lr: 1.0e-3, patience: 20}        # shared trainer settings
    small: {epochs: 3, sample_users: 0.3}      # overrides when run with small=True

Every (dataset, variant, seed, grid point) trains in its own run directory under
``<out>/runs/``; one with a ``metrics.json`` is finished and is read back, not retrained (a
half-finished one resumes from its checkpoint). For each (dataset, variant, seed) the grid point
with the best VALIDATION metric is selected, and its valid and test metrics go to
``results.csv`` with the columns ``dataset, model, variant, seed, split, metric, K, value``;
``results.md`` shows test
metrics as mean ± std over seeds; ``selection.csv`` lists every grid point.

A dataset entry takes ``data``, ``modalities`` and ``cold_items``: a fraction of the items held
out of training for every run on it (:func:`lirdrec.data.cold.hold_out_items`, drawn from each
run's seed); its runs then also report ``cold/<metric>`` (ranked on the held-out items' test
interactions alone), and the tables gain the columns :data:`COLD_TABLE_METRICS`.

A model entry's ``grid`` is a mapping key -> list of values, or the name of a shipped grid
(``grid: mgcn_grid`` reads ``datasets/configs/mgcn_grid.yaml`` through
:func:`lirdrec.config.read_yaml`, as ``lirdrec grid --grid mgcn_grid`` does).

**Search once, then repeat** (``grid_seed``). By default every seed searches the whole grid and
selects its own point (above). With ``grid_seed: 999`` (top level: every variant; in a model
entry: that variant, where ``grid_seed: null`` restores the per-seed search) the grid is searched
at seed 999 alone and every other seed of ``seeds`` trains only the point selected there
(MMRec's practice): a grid of P points over S seeds costs P + S - 1 runs instead of P * S. The
search seed must be one of ``seeds``; a variant with a one-point grid has nothing to search and
trains its point at every seed either way. The search seed runs first; the other seeds wait until
its grid has finished (a call that stops half-way, or ``collect_only``, reports them only then).
``selection.csv`` then gains the column ``search_seed`` (the seed whose validation metric chose
the row's point); run directories, configurations and ``results.csv`` are those of the per-seed
search, so finished runs are shared between the two modes. ``small: {grid_points: N}`` keeps the
first N points of every grid in small runs (CI: every model runs, not its whole search).
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lirdrec.config import config_layers, packaged_configs, read_yaml, resolve
from lirdrec.data.loader import load_dataset
from lirdrec.data.sample import subsample_users
from lirdrec.errors import ConfigError
from lirdrec.train.run import check_finished_run, run_training
from lirdrec.utils.io import atomic_write
from lirdrec.utils.table import format_table

logger = logging.getLogger(__name__)

__all__ = ["Experiment", "load_experiment", "run_experiment", "results_table"]

TOP_KEYS = {"name", "out", "datasets", "models", "seeds", "trainer", "small", "metric", "reference",
            "grid_seed"}
#: Keys of a model entry.
MODEL_KEYS = ("model", "params", "grid", "datasets", "grid_seed")
#: Metrics of the markdown tables and the significance tests.
TABLE_METRICS = ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20")
#: Extra columns of the markdown tables when some dataset uses the cold-item protocol.
COLD_TABLE_METRICS = ("cold/Recall@20", "cold/NDCG@20")
#: Keys of a dataset entry.
DATASET_KEYS = ("data", "modalities", "cold_items")
#: Marks in the tables: Holm-adjusted p < ALPHA against the reference row.
ALPHA = 0.05


@dataclass
class Experiment:
    """A parsed experiment file (see the module docstring)."""

    name: str
    out: Path
    datasets: dict[str, dict[str, Any]]
    models: dict[str, dict[str, Any]]
    seeds: list[int]
    trainer: dict[str, Any]
    small: dict[str, Any]
    metric: str = "Recall@20"
    reference: str | None = None
    grid_seed: int | None = None

    def search_seed(self, variant: str) -> int | None:
        """The seed at which ``variant``'s grid is searched (its own ``grid_seed`` before the
        file's); ``None``: every seed searches (also for a grid of one point: nothing to search).
        """
        mcfg = self.models[variant]
        seed = mcfg["grid_seed"] if "grid_seed" in mcfg else self.grid_seed
        if seed is None or len(_grid_points(mcfg.get("grid"))) < 2:
            return None
        if seed not in self.seeds:
            raise ConfigError(f"{self.name}: model {variant!r}: grid_seed {seed} is not one of "
                              f"the seeds {self.seeds}")
        return int(seed)


def load_experiment(path: str | Path) -> Experiment:
    """Read and check an experiment YAML; paths are relative to the file."""
    path = Path(path)
    cfg = read_yaml(path)
    unknown = sorted(set(cfg) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid: {sorted(TOP_KEYS)}")
    for key in ("datasets", "models"):
        if not isinstance(cfg.get(key), dict) or not cfg[key]:
            raise ConfigError(f"{path}: '{key}' must be a non-empty mapping")
    base = path.parent
    datasets = {}
    for name, d in cfg["datasets"].items():
        d = {"data": d} if isinstance(d, str) else dict(d)
        if "data" not in d:
            raise ConfigError(f"{path}: dataset {name!r} needs a 'data' path")
        extra = sorted(set(d) - set(DATASET_KEYS))
        if extra:
            raise ConfigError(f"{path}: dataset {name!r}: unknown key(s) {extra}; valid: "
                              f"{', '.join(DATASET_KEYS)}")
        if "cold_items" in d:
            c = d["cold_items"]
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c < 1:
                raise ConfigError(f"{path}: dataset {name!r}: cold_items must be a fraction in "
                                  f"[0, 1), got {c!r}")
            d["cold_items"] = float(c)
        if not Path(d["data"]).is_absolute():
            d["data"] = str((base / d["data"]).resolve())
        datasets[name] = d
    models = {}
    for variant, m in cfg["models"].items():
        m = {"model": variant} if m is None else dict(m)
        m.setdefault("model", variant)
        extra = sorted(set(m) - set(MODEL_KEYS))
        if extra:
            raise ConfigError(f"{path}: model {variant!r}: unknown key(s) {extra}; valid: "
                              f"{', '.join(MODEL_KEYS)}")
        if isinstance(m.get("grid"), str):
            m["grid"] = _shipped_grid(m["grid"], f"{path}: model {variant!r}")
        if m.get("grid") is not None:
            _check_grid(m["grid"], f"{path}: model {variant!r}")
        if "grid_seed" in m:
            m["grid_seed"] = _seed_or_none(m["grid_seed"], f"{path}: model {variant!r}")
        models[variant] = m
    reference = cfg.get("reference")
    if reference is not None and reference not in models:
        raise ConfigError(f"{path}: reference {reference!r} is not a model variant; valid: "
                          f"{sorted(models)}")
    out = base / cfg.get("out", f"results/{cfg.get('name', path.stem)}")
    exp = Experiment(name=str(cfg.get("name", path.stem)), out=out, datasets=datasets,
                     models=models,
                     seeds=[int(s) for s in cfg.get("seeds", [999])],
                     trainer=dict(cfg.get("trainer") or {}), small=dict(cfg.get("small") or {}),
                     metric=str(cfg.get("metric", "Recall@20")), reference=reference,
                     grid_seed=_seed_or_none(cfg.get("grid_seed"), str(path)))
    _small_grid_points(exp)
    for variant in models:
        exp.search_seed(variant)  # a grid_seed outside `seeds` fails here, not after a search
    return exp


def _shipped_grid(name: str, where: str) -> dict[str, Any]:
    """The shipped grid ``name`` (``"mgcn_grid"`` or ``"mgcn_grid.yaml"``), read as ``--grid``
    reads it.
    """
    grids = [c for c in packaged_configs() if c.endswith("_grid")]
    if name.removesuffix(".yaml") not in grids:
        raise ConfigError(f"{where}: grid {name!r} is not a shipped grid; shipped grids: "
                          f"{', '.join(grids)} (or write the grid inline: key: [values])")
    return read_yaml(name)


def _check_grid(grid: Any, where: str) -> None:
    if not isinstance(grid, dict):
        raise ConfigError(f"{where}: grid must be a mapping key -> list of values or the name of "
                          f"a shipped grid, got {grid!r}")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{where}: grid key {k!r} must map to a non-empty list, got {v!r}")


def _seed_or_none(value: Any, where: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: grid_seed must be an integer seed (or null), got {value!r}")
    return value


def _small_grid_points(exp: Experiment) -> int | None:
    """The ``small: {grid_points: N}`` setting, checked (``None``: every point)."""
    n = exp.small.get("grid_points")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"{exp.name}: small: grid_points must be an int >= 1, got {n!r}")
    return n


def _grid_points(grid: dict[str, list] | str | None) -> list[dict[str, Any]]:
    if isinstance(grid, str):  # an Experiment built in Python may name a shipped grid too
        grid = _shipped_grid(grid, "grid")
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def run_layers(exp: Experiment, dataset: str, variant: str, point: dict[str, Any], seed: int,
               overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The config layers of one run of ``exp``, lowest first: the file's trainer settings, the
    dataset's protocol (``cold_items``), the variant's params, the grid point, ``overrides`` (the
    ``small:`` settings) and the seed. What the runner resolves; ``results/share_run.py`` and the
    experiment-file test resolve the same.
    """
    dcfg, mcfg = exp.datasets[dataset], exp.models[variant]
    data_layer = {"cold_items": dcfg["cold_items"]} if "cold_items" in dcfg else None
    return config_layers(exp.trainer, (), data_layer, mcfg.get("params"), point, overrides,
                         {"seed": seed})


def _long_rows(dataset: str, model: str, variant: str, seed: int, split: str,
               metrics: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for key, value in metrics.items():
        name, k = key.rsplit("@", 1)
        rows.append({"dataset": dataset, "model": model, "variant": variant, "seed": seed,
                     "split": split, "metric": name, "K": int(k), "value": float(value)})
    return rows


def _run_dir(out: Path, dataset: str, variant: str, seed: int, idx: int) -> Path:
    return out / "runs" / dataset / variant / f"seed-{seed}" / f"point-{idx:03d}"


def _run_point(exp: Experiment, dname: str, variant: str, point: dict[str, Any], idx: int,
               num_points: int, seed: int, overrides: dict[str, Any], out: Path, base_ds,
               sample_users: float, collect_only: bool,
               show_progress: bool | None) -> tuple[dict, dict, int] | None:
    """Read back, resume or train one run; its ``(valid, test, best_epoch)``, or ``None`` when
    ``collect_only`` finds it unfinished.
    """
    dcfg, mcfg = exp.datasets[dname], exp.models[variant]
    cfg = resolve(mcfg["model"], run_layers(exp, dname, variant, point, seed, overrides))
    run_dir = _run_dir(out, dname, variant, seed, idx)
    config = {**cfg.to_dict(), "data": dcfg["data"], "modalities": dcfg.get("modalities"),
              "sample_users": sample_users}
    done = run_dir / "metrics.json"
    if done.is_file():
        res = json.loads(done.read_text())
        check_finished_run(run_dir, config, res)
        logger.info("%s/%s seed %d point %d: finished earlier", dname, variant, seed, idx)
        return res["valid"], res["test"], res["best_epoch"]
    if collect_only:
        logger.info("%s/%s seed %d point %d: not finished yet", dname, variant, seed, idx)
        return None
    logger.info("%s/%s seed %d point %d/%d: %s", dname, variant, seed, idx + 1, num_points, point)
    resume = (run_dir / "checkpoint.pt").is_file()
    result, _, _ = run_training(
        cfg.model, base_ds, cfg.model_kwargs, cfg.trainer_kwargs,
        cold_items=float(cfg.data["cold_items"]), out_dir=run_dir, resume=resume, config=config,
        show_progress=show_progress, encoder=cfg.encoder)
    return result.valid, result.test, result.best_epoch


def run_experiment(exp: Experiment | str | Path, small: bool = False,
                   show_progress: bool | None = None, collect_only: bool = False,
                   datasets: Sequence[str] | None = None,
                   models: Sequence[str] | None = None) -> pd.DataFrame:
    """Run (or resume) every combination; returns the tidy results table (also written).

    Args:
        exp: the experiment, or the path of its YAML file.
        small: apply the file's ``small`` overrides (CI-sized runs under ``out/small``).
        show_progress: progress bars (default: on a terminal or notebook).
        collect_only: train nothing; the tables hold the runs finished so far (to read a long
            experiment while it runs, or to join processes that each ran a part).
        datasets: run only these datasets (names from the file), e.g. one process per dataset;
            the tables then hold those alone until a ``collect_only`` call.
        models: run only these model entries (names from the file), likewise.
    """
    if not isinstance(exp, Experiment):
        exp = load_experiment(exp)
    for kind, wanted, known in (("dataset", datasets, exp.datasets), ("model", models, exp.models)):
        unknown = sorted(set(wanted or ()) - set(known))
        if unknown:
            raise ConfigError(f"{exp.name}: unknown {kind}(s) {unknown}; the file has "
                              f"{list(known)}")
    out = exp.out / ("small" if small else "")
    overrides = dict(exp.small) if small else {}
    sample_users = float(overrides.pop("sample_users", 1.0))
    grid_points = _small_grid_points(exp) if small else None
    overrides.pop("grid_points", None)
    search = {v: exp.search_seed(v) for v in exp.models}  # checked before anything trains
    with_search_seed = any(s is not None for s in search.values())
    rows: list[dict[str, Any]] = []
    selection: list[dict[str, Any]] = []
    chosen: dict[tuple[str, str], dict[int, Path]] = {}  # (dataset, variant) -> seed -> run dir
    for dname, dcfg in exp.datasets.items():
        if datasets and dname not in datasets:
            continue
        base_ds = load_dataset(dcfg["data"], modalities=dcfg.get("modalities"))
        if sample_users < 1.0:
            base_ds = subsample_users(base_ds, sample_users, np.random.default_rng(0))
        for variant, mcfg in exp.models.items():
            if mcfg.get("datasets") and dname not in mcfg["datasets"]:
                continue
            if models and variant not in models:
                continue
            points = _grid_points(mcfg.get("grid"))[:grid_points]
            grid_seed = search[variant] if len(points) > 1 else None
            order = exp.seeds if grid_seed is None else [
                grid_seed, *(s for s in exp.seeds if s != grid_seed)]
            found: dict[int, tuple[list[dict[str, Any]], tuple | None]] = {}
            selected = None  # the point chosen at grid_seed, once its grid has finished
            for seed in order:
                if grid_seed is None or seed == grid_seed:
                    indices = range(len(points))
                elif selected is None:
                    logger.info("%s/%s seed %d: waits for the grid search at seed %d", dname,
                                variant, seed, grid_seed)
                    continue
                else:
                    indices = [selected]
                sel_rows, best, complete = [], None, True
                for idx in indices:
                    point = points[idx]
                    res = _run_point(exp, dname, variant, point, idx, len(points), seed,
                                     overrides, out, base_ds, sample_users, collect_only,
                                     show_progress)
                    if res is None:
                        complete = False
                        continue
                    valid, test, best_epoch = res
                    score = valid[exp.metric]
                    sel_rows.append({"dataset": dname, "variant": variant, "seed": seed,
                                     "point": idx, **{f"grid:{k}": v for k, v in point.items()},
                                     "best_epoch": best_epoch, f"valid/{exp.metric}": score,
                                     "selected": False})
                    if with_search_seed:
                        sel_rows[-1]["search_seed"] = seed if grid_seed is None else grid_seed
                    if best is None or score > best[0]:
                        best = (score, idx, valid, test)
                if best is not None and not complete:
                    best = None  # a seed is reported once every grid point of it has finished
                if seed == grid_seed and best is not None:
                    selected = best[1]
                found[seed] = (sel_rows, best)
            for seed in exp.seeds:  # the tables list seeds in the file's order
                if seed not in found:
                    continue
                sel_rows, best = found[seed]
                selection += sel_rows
                if best is None:
                    continue
                _, idx, valid, test = best
                chosen.setdefault((dname, variant), {})[seed] = _run_dir(out, dname, variant,
                                                                          seed, idx)
                for r in sel_rows:
                    r["selected"] = r["point"] == idx
                rows += _long_rows(dname, mcfg["model"], variant, seed, "valid", valid)
                rows += _long_rows(dname, mcfg["model"], variant, seed, "test", test)
    df = add_seed_statistics(pd.DataFrame(
        rows, columns=["dataset", "model", "variant", "seed", "split", "metric", "K", "value"]))
    sig = significance(chosen, exp.reference) if exp.reference else None
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "results.csv", "w") as fh:
        df.to_csv(fh, index=False)
    with atomic_write(out / "selection.csv", "w") as fh:
        pd.DataFrame(selection).to_csv(fh, index=False)
    if sig is not None:
        with atomic_write(out / "significance.csv", "w") as fh:
            sig.to_csv(fh, index=False)
    with atomic_write(out / "results.md", "w") as fh:
        fh.write(f"# {exp.name}{' (SMALL)' if small else ''}\n\nTest metrics at the grid point and "
                 f"epoch selected by validation {exp.metric}; mean ± std over seeds {exp.seeds} "
                 "(n = seeds per row).\n\n")
        fh.write(results_table(df, significance=sig) + "\n")
        if sig is not None:
            fh.write("\n" + SIGNIFICANCE_NOTE.format(reference=exp.reference, alpha=ALPHA) + "\n")
    return df


SIGNIFICANCE_NOTE = (
    "`*`: paired t-test, `†`: Wilcoxon signed-rank test, each two-sided on the per-user test "
    "metric (each user's mean over seeds) against `{reference}`, Holm-adjusted over the rows of "
    "the dataset, p < {alpha}. p-values in significance.csv; definitions in docs/statistics.md."
)


def add_seed_statistics(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``n, mean, std, ci95_low, ci95_high`` over seeds to every row of its group.

    A group is one (dataset, variant, split, metric, K); the interval is the Student-t 95 %
    interval of the mean (:func:`lirdrec.evaluate.statistics.seed_summary`).
    """
    from lirdrec.evaluate.statistics import seed_summary

    cols = ["n", "mean", "std", "ci95_low", "ci95_high"]
    if df.empty:
        return df.reindex(columns=[*df.columns, *cols])
    keys = ["dataset", "variant", "split", "metric", "K"]
    stats = []
    for key, part in df.groupby(keys, sort=False)["value"]:
        s = seed_summary(part.to_numpy())
        stats.append((*key, s.n, s.mean, s.std, s.ci_low, s.ci_high))
    return df.merge(pd.DataFrame(stats, columns=[*keys, *cols]), on=keys, how="left")


def significance(chosen: dict[tuple[str, str], dict[int, Path]], reference: str,
                 metrics: tuple[str, ...] = TABLE_METRICS) -> pd.DataFrame | None:
    """Paired tests of every variant against ``reference`` on the per-user test metrics.

    Each user's value is the mean over the variant's seeds; users are those every compared run
    evaluated. Holm's correction runs over the variants of one dataset, per metric and test.
    Runs without a per-user file (trained before it existed) are skipped with a warning.
    """
    from lirdrec.evaluate.statistics import holm, paired_tests, read_per_user

    def seed_mean(dirs: dict[int, Path]):
        loaded = [read_per_user(d) for d in dirs.values()]
        if any(x is None for x in loaded):
            return None
        users = loaded[0][0]
        for u, _ in loaded[1:]:
            users = np.intersect1d(users, u)
        vals = {m: np.mean([x[1][m][np.searchsorted(x[0], users)] for x in loaded], axis=0)
                for m in metrics if all(m in x[1] for x in loaded)}
        return users, vals

    rows = []
    for dataset in dict.fromkeys(d for d, _ in chosen):
        ref = chosen.get((dataset, reference))
        ref_vals = seed_mean(ref) if ref else None
        if ref_vals is None:
            logger.warning("%s: no per-user metrics of reference %r; no significance tests",
                           dataset, reference)
            continue
        part = []
        for (d, variant), dirs in chosen.items():
            if d != dataset or variant == reference:
                continue
            other = seed_mean(dirs)
            if other is None:
                logger.warning("%s/%s: runs without %s (trained by an older lirdrec); not tested",
                               dataset, variant, "per_user_test.npz")
                continue
            users = np.intersect1d(ref_vals[0], other[0])
            ia, ib = np.searchsorted(ref_vals[0], users), np.searchsorted(other[0], users)
            for m in metrics:
                if m not in ref_vals[1] or m not in other[1]:
                    continue
                t = paired_tests(ref_vals[1][m][ia], other[1][m][ib])
                part.append({"dataset": dataset, "variant": variant, "reference": reference,
                             "metric": m, "n_users": t.n_users, "mean_diff": t.mean_diff,
                             "t_p": t.t_p, "wilcoxon_p": t.wilcoxon_p})
        for m in metrics:
            sel = [r for r in part if r["metric"] == m]
            for col in ("t_p", "wilcoxon_p"):
                for r, adj in zip(sel, holm([r[col] for r in sel])):
                    r[f"{col}_holm"] = float(adj)
        rows += part
    cols = ["dataset", "variant", "reference", "metric", "n_users", "mean_diff", "t_p", "t_p_holm",
            "wilcoxon_p", "wilcoxon_p_holm"]
    return pd.DataFrame(rows, columns=cols)


def results_table(df: pd.DataFrame, split: str = "test", metrics: tuple[str, ...] = TABLE_METRICS,
                  significance: pd.DataFrame | None = None) -> str:
    """Markdown table: one row per (dataset, variant), ``mean ± std`` over seeds and ``n``.

    With ``significance`` (from :func:`significance`), a cell gets ``*`` / ``†`` when the
    Holm-adjusted paired t-test / Wilcoxon p-value against the reference is below :data:`ALPHA`.
    The :data:`COLD_TABLE_METRICS` columns follow when some run has them (cold-item protocol).
    """
    d = df[df["split"] == split].copy()
    d["key"] = d["metric"] + "@" + d["K"].astype(str)
    metrics = (*metrics, *(m for m in COLD_TABLE_METRICS
                           if m not in metrics and (d["key"] == m).any()))
    d = d[d["key"].isin(metrics)]
    g = d.groupby(["dataset", "variant", "key"], sort=False)["value"]
    stats = g.agg(["mean", "std", "count"]).reset_index()
    marks: dict[tuple[str, str, str], str] = {}
    if significance is not None:
        for _, r in significance.iterrows():
            marks[(r["dataset"], r["variant"], r["metric"])] = (
                ("*" if r["t_p_holm"] < ALPHA else "")
                + ("†" if r["wilcoxon_p_holm"] < ALPHA else ""))
    rows = []
    for (dataset, variant), part in stats.groupby(["dataset", "variant"], sort=False):
        row: dict[str, Any] = {"dataset": dataset, "variant": variant,
                               "n": int(part["count"].max())}
        for _, r in part.iterrows():
            cell = (f"{r['mean']:.4f} ± {r['std']:.4f}" if r["count"] > 1 else f"{r['mean']:.4f}")
            mark = marks.get((dataset, variant, r["key"]), "")
            row[r["key"]] = f"{cell} {mark}" if mark else cell
        rows.append(row)
    return format_table(rows, ["dataset", "variant", "n", *metrics])
