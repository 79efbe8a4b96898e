r"""Gradient-bias diagnostic: where does the BPR training signal go, ID rows or feature parameters?

LIRDRec's motivation (Zhou et al., arXiv:2505.04960; derivation in
``docs/gradient_bias.md``): when an item is learned as
:math:`\mathbf{e}_i + f_\theta(\mathbf{x}_i)`, the shared feature parameters :math:`\theta`
receive gradient from every item of every batch, while the ID row :math:`\mathbf{e}_i` receives
gradient only when item :math:`i` is sampled. So :math:`\theta` converges and the ID table stays
under-trained. :class:`GradientBiasRecorder` is a trainer
:class:`~lirdrec.train.trainer.Callback` that measures this on any model exposing
:meth:`~lirdrec.models.base.Recommender.parameter_groups`:

- **per step** (every ``every``-th), per group ``item_id``, ``item_feature``, ``user``, ``other``:
  ``grad_norm`` :math:`\lVert g\rVert_2`, ``grad_rms`` :math:`\lVert g\rVert_2/\sqrt{n}`; for
  embedding tables (2-D parameters with :math:`U` or :math:`I` rows) ``rows_nonzero`` and
  ``row_norm_mean`` (mean row norm over rows with a non-zero gradient); the optimiser's actual
  ``update_norm`` :math:`\lVert\Delta\theta\rVert` and ``relative_update``
  :math:`\lVert\Delta\theta\rVert/\lVert\theta\rVert` (parameters copied into preallocated
  buffers before the step, differenced after it);
- **per item and epoch**: the per-step gradient norm reaching the item's ID row(s) and the one
  reaching its feature-derived representation (the output rows of the model's feature branch),
  averaged over the epoch's recorded steps, plus the fraction of steps in which the ID row got a
  non-zero gradient; reported by training-degree bucket (:func:`popularity_buckets`);
- **per epoch**: each group's epoch update (``epoch_update_norm``, ``epoch_relative_update``),
  the cosine between consecutive epoch updates (``update_cosine``) and, at the end, the distance
  of every epoch's snapshot to the final value (``dist_to_final``, ``rel_dist_to_final``);
- **per epoch probe**: validation Recall@20 of the full model, with the feature branch's output
  zeroed (``id_only``) and with the item ID tables zeroed (``feature_only``) (:func:`keep_only`).

The feature branch is found through an optional class attribute ``feature_branch``: a tuple of
submodule names whose forward output is an :math:`(I, \cdot)` item representation computed from
the features (a ``ModuleList``/``ModuleDict`` stands for each of its children), e.g.
``feature_branch = ("item_linear",)`` in VBPR. A forward hook on those modules registers a tensor
hook on their output during recorded training steps; neither hook changes any value, so training
is bit-identical with and without the recorder (tested).

This module is the thin driver (:func:`run_gradient_bias`; ``lirdrec gradient-bias``): it
resolves each model's configuration with :mod:`lirdrec.config`, trains it with
:func:`lirdrec.train.run.run_training` and a recorder, and writes ``grad_bias.csv``,
``item_grad_by_popularity.csv``, ``probe.csv``, ``summary.md`` and the figures. The parts live
by job: :mod:`~lirdrec.diagnostics.recorder` (the callback),
:mod:`~lirdrec.diagnostics.introspection` (parameter groups, the probe),
:mod:`~lirdrec.diagnostics.popularity`, :mod:`~lirdrec.diagnostics.summary` (CSVs, statistics,
verdicts, ``summary.md``) and :mod:`~lirdrec.diagnostics.plots`; their public names are
re-exported here.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lirdrec.config import config_layers, resolve
from lirdrec.data.dataset import Dataset
from lirdrec.diagnostics.introspection import GROUPS, feature_branch_modules, keep_only
from lirdrec.diagnostics.popularity import popularity_buckets, predicted_touch_fraction
from lirdrec.diagnostics.recorder import STEP_QUANTITIES, GradientBiasRecorder
from lirdrec.diagnostics.summary import (
    PROBE_NOTES,
    load_recorded,
    model_statistics,
    summarize,
    verdict,
    write_outputs,
    write_summary,
)
from lirdrec.errors import ConfigError
from lirdrec.train.run import load_run_dataset, run_training
from lirdrec.utils.io import atomic_write

logger = logging.getLogger(__name__)

__all__ = [
    "GROUPS",
    "MODEL_ALIASES",
    "PROBE_NOTES",
    "STEP_QUANTITIES",
    "GradientBiasRecorder",
    "feature_branch_modules",
    "keep_only",
    "load_recorded",
    "model_statistics",
    "popularity_buckets",
    "predicted_touch_fraction",
    "resolve_model_names",
    "run_gradient_bias",
    "summarize",
    "verdict",
    "write_outputs",
    "write_summary",
]

#: Script names that are a registered model with fixed arguments.
MODEL_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "lirdrec-id": ("lirdrec", {"item_id": "add"})
}


def resolve_model_names(names: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """``[(label, registry name, fixed kwargs)]`` for script names (registered or aliases).

    Raises:
        ConfigError: an unknown name, listing every available one.
    """
    from lirdrec.models import registry

    avail = registry.names()
    out, unknown = [], []
    for name in names:
        key = name.strip().lower()
        if not key:
            continue
        if key in MODEL_ALIASES and MODEL_ALIASES[key][0] in avail:
            base, kw = MODEL_ALIASES[key]
            out.append((key, base, dict(kw)))
        elif key in avail:
            out.append((key, key, {}))
        else:
            unknown.append(name)
    if unknown:
        usable = avail + [a for a, (b, _) in MODEL_ALIASES.items() if b in avail]
        raise ConfigError(
            f"gradient-bias: unknown or unregistered model(s) {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(sorted(usable))}"
        )
    if not out:
        raise ConfigError("gradient-bias: no model given")
    return out


def default_config_dir() -> Path | None:
    """The model configs shipped inside the package (``lirdrec/configs``)."""
    from lirdrec.config import PACKAGED_CONFIGS

    return PACKAGED_CONFIGS if PACKAGED_CONFIGS.is_dir() else None


def run_gradient_bias(
    models: Sequence[str],
    data: str | Path | Dataset,
    epochs: int,
    out_dir: str | Path,
    modalities: str | None = None,
    every: int = 1,
    num_buckets: int = 5,
    probe: bool = True,
    seed: int = 999,
    config_dir: str | Path | None = "default",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    snapshots: str = "memory",
    device: str | None = None,
    show_progress: bool | None = None,
    figures: bool = True,
) -> dict[str, GradientBiasRecorder]:
    """Train every model for ``epochs`` epochs with a :class:`GradientBiasRecorder`; write outputs.

    Each model's hyper-parameters are its ``<config_dir>/<name>.yaml`` (the repository's
    ``datasets/configs`` by default; ``None`` = constructor defaults), then the alias's fixed
    arguments (``lirdrec-id`` = ``lirdrec`` with ``item_id="add"``), then ``overrides[label]``;
    early stopping is off (patience = epochs) so every model runs all epochs.

    Args:
        models: script names, e.g. ``["vbpr", "lirdrec-id", "lirdrec"]``.
        data: dataset directory or a loaded :class:`Dataset`.
        epochs: epochs per model.
        out_dir: where the CSVs, ``summary.md`` and figures go.
        modalities: comma-separated feature subset (e.g. ``"image,text"``).
        every: record every n-th step.
        num_buckets: popularity buckets.
        probe: run the ID-only / feature-only probe each epoch.
        seed: run seed.
        config_dir: directory of ``<model>.yaml`` files; ``"default"`` or ``None``.
        overrides: label -> extra config keys.
        snapshots: ``"memory"`` or ``"disk"`` (a temporary directory) for epoch snapshots.
        device: trainer device.
        show_progress: progress bars (``None``: when INFO logging is on).
        figures: draw the figures.

    Returns:
        label -> recorder.
    """
    if int(epochs) < 1:
        raise ConfigError(f"gradient-bias: epochs must be >= 1, got {epochs!r}")
    if snapshots not in ("memory", "disk"):
        raise ConfigError(f"gradient-bias: snapshots must be 'memory' or 'disk', got {snapshots!r}")
    plan = resolve_model_names(models)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_dir = (
        default_config_dir()
        if config_dir == "default"
        else (Path(config_dir) if config_dir else None)
    )
    ds = load_run_dataset(data, modalities, 0.0, seed)
    logger.info("gradient-bias on %r: models %s, %d epochs", ds, [p[0] for p in plan], epochs)
    recorders: dict[str, GradientBiasRecorder] = {}
    tmp = tempfile.TemporaryDirectory(prefix="lirdrec-gb-") if snapshots == "disk" else None
    try:
        for label, name, fixed in plan:
            yaml_path = None if cfg_dir is None else cfg_dir / f"{name}.yaml"
            layers = config_layers(
                yaml_path if yaml_path is not None and yaml_path.is_file() else None,
                (),
                fixed,
                (overrides or {}).get(label),
                {"epochs": int(epochs), "patience": int(epochs), "seed": int(seed),
                 "device": device},
                drop=("model", "epochs", "patience", "seed"),
            )
            cfg = resolve(name, layers)
            logger.info("%s: %s (config %s)", label, cfg.model_kwargs, yaml_path)
            rec = GradientBiasRecorder(
                every=every,
                num_buckets=num_buckets,
                probe=probe,
                snapshot_dir=None if tmp is None else Path(tmp.name) / label,
                model_name=label,
            )
            result, _, _ = run_training(
                cfg.model,
                ds,
                model_kwargs=cfg.model_kwargs,
                trainer_kwargs=cfg.trainer_kwargs,
                callbacks=[rec],
                show_progress=show_progress,
            )
            rec.config = {**cfg.model_kwargs, **cfg.trainer_kwargs}
            rec.best = (
                result.best_epoch,
                result.valid.get("Recall@20"),
                result.test.get("Recall@20"),
            )
            recorders[label] = rec
    finally:
        if tmp is not None:
            tmp.cleanup()
    write_outputs(recorders, out)
    meta = {
        "dataset": {
            "name": ds.name,
            "users": ds.num_users,
            "items": ds.num_items,
            "train": len(ds.train),
            "modalities": ds.modalities,
        },
        "epochs": int(epochs),
        "seed": int(seed),
        "every": int(every),
        "models": {
            n: {"best_epoch": r.best[0], "valid": r.best[1], "test": r.best[2], "config": r.config}
            for n, r in recorders.items()
        },
    }
    with atomic_write(out / "runs.json", "w") as fh:
        json.dump(meta, fh, indent=1, default=str)
    summarize(out, figures=figures)
    return recorders
