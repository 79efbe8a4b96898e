"""One training run from plain settings: load data, build the model under a seed, fit.

The CLI, the grid search, the demo, the experiment runner and the gradient-bias script all go
through :func:`run_training`, so a run means the same thing everywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lirdrec.data.cold import hold_out_items
from lirdrec.data.dataset import Dataset
from lirdrec.data.loader import load_dataset
from lirdrec.train.trainer import Callback, FitResult, Trainer
from lirdrec.utils.seed import seed_everything

logger = logging.getLogger(__name__)

__all__ = ["prepare_dataset", "build_model", "run_training"]


def prepare_dataset(data: str | Path | Dataset, modalities: str | None = None,
                    cold_items: float = 0.0, seed: int = 999) -> Dataset:
    """Load ``data`` (or take a Dataset) and apply the cold-item protocol if asked."""
    ds = data if isinstance(data, Dataset) else load_dataset(data, modalities=modalities)
    if cold_items:
        ds = hold_out_items(ds, cold_items, np.random.default_rng(seed))
    return ds


def build_model(name: str, ds: Dataset, seed: int, **model_kwargs: Any):
    """``registry.get(name).from_dataset(ds, **model_kwargs)`` after seeding everything."""
    from lirdrec.models import registry

    cls = registry.get(name)
    seed_everything(seed)
    return cls.from_dataset(ds, **model_kwargs)


def run_training(
    model_name: str,
    data: str | Path | Dataset,
    model_kwargs: dict[str, Any] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    modalities: str | None = None,
    cold_items: float = 0.0,
    out_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    config: dict[str, Any] | None = None,
    show_progress: bool | None = None,
):
    """Train one model; returns ``(FitResult, model, dataset)``."""
    trainer_kwargs = dict(trainer_kwargs or {})
    seed = int(trainer_kwargs.get("seed", 999))
    ds = prepare_dataset(data, modalities, cold_items, seed)
    model = build_model(model_name, ds, seed, **(model_kwargs or {}))
    logger.info("%s", model)
    trainer = Trainer(**trainer_kwargs, callbacks=callbacks, out_dir=out_dir, config=config,
                      show_progress=show_progress)
    result: FitResult = trainer.fit(model, ds, resume=resume)
    return result, model, ds
