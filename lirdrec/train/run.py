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
from lirdrec.errors import ConfigError
from lirdrec.train.config_diff import config_differences
from lirdrec.train.trainer import Callback, FitResult, Trainer
from lirdrec.utils.seed import seed_everything

logger = logging.getLogger(__name__)

__all__ = ["load_run_dataset", "build_model", "run_training", "check_finished_run", "load_run",
           "load_run_config"]


def load_run_dataset(data: str | Path | Dataset, modalities: str | None = None,
                    cold_items: float = 0.0, seed: int = 999) -> Dataset:
    """Load ``data`` (or take a Dataset) and apply the cold-item protocol if asked.

    (Reads a finished MMRec-format dataset; building one from raw files is
    :func:`lirdrec.features.recipe.prepare`.)
    """
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
    encoder: dict[str, Any] | None = None,
):
    """Train one model; returns ``(FitResult, model, dataset)``.

    ``encoder`` holds the aligned-encoder settings (:func:`lirdrec.train.encoded.encoder_settings`
    keys): item features from an encoder, pre-trained, fine-tuned or trained end to end.
    """
    from lirdrec.train.encoded import encoder_features, encoder_settings

    trainer_kwargs = dict(trainer_kwargs or {})
    seed = int(trainer_kwargs.get("seed", 999))
    # under torchrun (WORLD_SIZE > 1): join the process group before any work (idempotent)
    from lirdrec.train.distributed import init_distributed

    init_distributed(device=trainer_kwargs.get("device", "cpu"))
    ds = load_run_dataset(data, modalities, cold_items, seed)
    ds, feature_encoder = encoder_features(ds, encoder_settings(**(encoder or {})), seed, out_dir)
    model = build_model(model_name, ds, seed, **(model_kwargs or {}))
    if feature_encoder is not None:
        model.attach_feature_encoder(feature_encoder)
    logger.debug("%s", model)  # the structure only with -v: ~40 lines per run otherwise
    trainer = Trainer(**trainer_kwargs, callbacks=callbacks, out_dir=out_dir, config=config,
                      show_progress=show_progress)
    result: FitResult = trainer.fit(model, ds, resume=resume)
    return result, model, ds


#: Settings that change memory and time but no number (the kNN neighbours are the same for any
#: chunk size; ``tests/test_graphs.py``).
NUMBER_NEUTRAL = ("knn_chunk_size",)


def load_run_config(run_dir: str | Path):
    """The resolved :class:`~lirdrec.config.RunConfig` a run saved in its ``config.yaml``."""
    from lirdrec.config import read_yaml, resolve

    saved = read_yaml(Path(run_dir) / "config.yaml")
    return resolve(saved.get("model"), [saved])


def load_run(run_dir: str | Path, data: str | Path | Dataset | None = None):
    """The model of a finished (or interrupted) run at its best epoch, and its dataset.

    Rebuilds the model from the run's ``config.yaml`` (same data, cold-item protocol and seed,
    so the same graphs) and loads the best weights from ``checkpoint.pt``, which is opened
    first (refused before any data is read if it is not a safe lirdrec checkpoint).

    Args:
        run_dir: the run directory (``config.yaml``, ``checkpoint.pt``).
        data: the dataset, if not at the path the run saved.

    Returns:
        ``(model in eval mode, Dataset, the checkpoint's best epoch)``.
    """
    from lirdrec.train.checkpoint import load_checkpoint
    from lirdrec.train.encoded import encoder_features, encoder_settings

    run_dir = Path(run_dir)
    ck = load_checkpoint(run_dir / "checkpoint.pt")
    cfg = load_run_config(run_dir)
    seed = cfg.trainer_kwargs["seed"]
    ds = load_run_dataset(data if data is not None else cfg.data["data"],
                          cfg.data["modalities"], cfg.data["cold_items"], seed)
    ds, feature_encoder = encoder_features(ds, encoder_settings(**cfg.encoder), seed, run_dir)
    model = build_model(cfg.model, ds, seed, **cfg.model_kwargs)
    if feature_encoder is not None:
        model.attach_feature_encoder(feature_encoder)
    model.load_state_dict(ck["train"]["best_state"])
    model.load_extra_state(ck["train"]["best_extra"])
    model.eval()
    return model, ds, int(ck["train"]["best_epoch"])


def check_finished_run(run_dir: Path, config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Refuse to reuse a finished run whose ``config.yaml`` is not the configuration now asked
    for (its numbers would silently belong to another setting).

    Used by ``lirdrec experiment`` and ``lirdrec grid`` before they read a finished run back.
    Tolerated: the data path (machine-specific; the run directory names the dataset), the
    run's own ``out``, memory knobs that change no number (:data:`NUMBER_NEUTRAL`), keys that a
    newer lirdrec added whose value is their default (the older run behaved as the default),
    keys of the saved file that the current version no longer has, and a different ``epochs``
    when the run stopped early before either cap.

    Raises:
        ConfigError: listing every differing key, with the way out.
    """
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: metrics.json without config.yaml; delete the directory "
                          "to retrain it")
    saved = yaml.safe_load(path.read_text()) or {}
    ignore = {"data", "out", *NUMBER_NEUTRAL}
    if (metrics.get("stopped_early") and "epochs" in saved and "epochs" in config
            and int(metrics.get("epochs_run", 10**9)) < min(int(saved["epochs"]),
                                                             int(config["epochs"]))):
        ignore.add("epochs")
    diffs = config_differences(saved, config, ignore)
    if diffs:
        raise ConfigError(f"{run_dir} finished with a different configuration than the one "
                          f"now asked for ({'; '.join(diffs)}); delete that directory to retrain "
                          "it, or write to another output directory")
