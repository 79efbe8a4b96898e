"""``load_dataset``: a directory or dataset YAML -> validated :class:`Dataset`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import yaml

from lirdrec.data.dataset import Dataset, Split
from lirdrec.data.io import find_feature_files, read_features, read_inter
from lirdrec.data.validate import validate_features, validate_interactions
from lirdrec.errors import ConfigError, FeatureError, SchemaError

logger = logging.getLogger(__name__)

__all__ = ["load_dataset", "parse_modalities"]


def parse_modalities(value: str | Sequence[str] | None) -> list[str] | None:
    """``"image,text"`` / ``["image", "text"]`` / ``None`` -> list or ``None`` (= all)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    names = [str(v) for v in value]
    if not names or not all(names):
        raise ConfigError(f"modalities: expected modality names such as image,text, got {value!r}")
    return names


def _resolve(path: Path) -> tuple[str, Path, dict[str, Path]]:
    """Name, .inter path and feature paths from a directory or dataset YAML."""
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        spec = yaml.safe_load(path.read_text()) or {}
        if not isinstance(spec, dict) or "inter" not in spec:
            raise SchemaError(path, expected="a mapping with keys 'inter' and 'features'",
                              found=type(spec).__name__ if not isinstance(spec, dict) else
                              f"keys {sorted(spec)}")
        base = path.parent
        inter = base / spec["inter"]
        feats = {str(k): base / v for k, v in (spec.get("features") or {}).items()}
        return str(spec.get("name", inter.stem)), inter, feats
    if path.is_dir():
        inters = sorted(path.glob("*.inter"))
        if not inters:
            raise SchemaError(path, message="no <name>.inter file in this directory")
        preferred = [p for p in inters if p.stem == path.name]
        inter = preferred[0] if preferred else inters[0]
        if len(inters) > 1 and not preferred:
            raise SchemaError(path, message=f"several .inter files ({[p.name for p in inters]}); "
                              "name one in a dataset YAML")
        return inter.stem, inter, find_feature_files(path)
    raise SchemaError(path, message="no such dataset directory or YAML file")


def load_dataset(path: str | Path, modalities: str | Sequence[str] | None = None) -> Dataset:
    """Load and validate an MMRec-format dataset.

    Args:
        path: a directory with ``<name>.inter`` and ``<modality>_feat.npy`` files, or a dataset
            YAML (``name``, ``inter``, ``features: {modality: file}``, paths relative to it).
        modalities: subset of the feature files to load, e.g. ``"image,text"``; default all. A
            name given twice (``"image,image"``) loads a second copy keyed ``image_2`` (the
            reference LIRDRec/MMRec setting that feeds a single modality twice).

    Returns:
        An immutable :class:`Dataset`.

    Raises:
        SchemaError, IdError, FeatureError, SplitError: see :mod:`lirdrec.data.validate`.
        ConfigError: an unknown modality name (the message lists those present).
    """
    path = Path(path)
    name, inter_path, feat_paths = _resolve(path)
    wanted = parse_modalities(modalities)
    if wanted is not None:
        unknown = [m for m in wanted if m not in feat_paths]
        if unknown:
            raise ConfigError(f"unknown modality {', '.join(map(repr, unknown))} for {path}; "
                              f"present: {', '.join(feat_paths) or 'none'}")
    else:
        wanted = list(feat_paths)
    arrays: dict[str, np.ndarray] = {}
    keyed_paths: dict[str, Path] = {}
    cache: dict[str, np.ndarray] = {}
    for m in wanted:
        key = m
        n = 2
        while key in arrays:
            key = f"{m}_{n}"
            n += 1
        if m not in cache:
            cache[m] = read_features(feat_paths[m])
        arrays[key] = cache[m]
        keyed_paths[key] = feat_paths[m]
    rows = {a.shape[0] for a in arrays.values()}
    if len(rows) > 1:
        counts = ", ".join(f"{m}: {a.shape[0]}" for m, a in arrays.items())
        first = next(iter(keyed_paths.values()))
        raise FeatureError(first, expected="the same number of rows in every feature file",
                           found=counts)
    num_rows = rows.pop() if rows else None
    df = read_inter(inter_path)
    users, items, labels, num_users, num_items = validate_interactions(df, inter_path, num_rows)
    validate_features(arrays, keyed_paths, num_items)
    splits = [Split(users[labels == k], items[labels == k]) for k in (0, 1, 2)]
    ds = Dataset(
        name=name, num_users=num_users, num_items=num_items,
        train=splits[0], valid=splits[1], test=splits[2],
        features={m: torch.from_numpy(a) for m, a in arrays.items()}, path=path,
    )
    for split in ("valid", "test"):
        n_cold = len(np.unique(ds.split(split).users)) - len(ds.eval_users(split))
        if n_cold:
            logger.warning("%s: %d user(s) with %s interactions but none in training are excluded "
                           "from %s evaluation", name, n_cold, split, split)
    logger.info("loaded %r", ds)
    return ds
