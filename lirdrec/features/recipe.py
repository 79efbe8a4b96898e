"""A dataset recipe: raw tables and images -> an MMRec-format dataset with feature files.

A recipe (``datasets/<name>/recipe.yaml``, read by ``lirdrec prepare``) names the interactions
table, the optional item table and image folder, the filtering and split, and one entry per
output modality::

    modalities:
      text:  {encoder: text, template: "{title}. {description}"}     # TextEncoder
      image: {encoder: image, backend: efficientnet-lite0}            # ImageEncoder
      mllm_text: {encoder: mllm, captioner: labels, embed: text}      # image -> caption -> vector
      llm:   {encoder: llm, fields: [title, description]}             # LLMEmbedder

Each modality becomes ``<modality>_feat.npy`` (row ``i`` = item ``i``); ``mllm`` modalities also
write ``captions.tsv``. Every other key of a modality is passed to its encoder's constructor
(``batch_size``, ``pooling``, ``top_k``, ...), so the encoders' docstrings are the reference.
:func:`prepare` is ``lirdrec prepare`` top to bottom: it checks the paths, runs the whole recipe
(:func:`build_dataset`; a summary goes to ``prepare.json``) and loads the result once with every
check of :func:`lirdrec.data.load_dataset`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from lirdrec.data.build import (
    BuiltInteractions,
    build_interactions,
    read_interactions,
    write_dataset,
)
from lirdrec.data.dataset import Dataset
from lirdrec.data.loader import load_dataset
from lirdrec.data.raw_items import image_paths, item_records, resolve_path
from lirdrec.errors import ConfigError, SchemaError
from lirdrec.features.cache import FeatureCache
from lirdrec.features.image import fill_missing
from lirdrec.utils.io import atomic_write

logger = logging.getLogger(__name__)

__all__ = [
    "Recipe",
    "InteractionsSpec",
    "FilterSpec",
    "SplitSpec",
    "ItemsSpec",
    "ImagesSpec",
    "build_dataset",
    "check_paths",
    "prepare",
    "read_recipe",
    "ENCODERS",
]

ENCODERS = ("text", "image", "mllm", "llm")


def _from_dict(cls, data: Mapping[str, Any] | None, where: str):
    """Build dataclass ``cls`` from a mapping; unknown keys are a ConfigError listing valid ones."""
    data = dict(data or {})
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(
            f"recipe: unknown key(s) {unknown} in {where}; valid keys: {sorted(valid)}"
        )
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"recipe: {where}: {exc}") from None


@dataclass(frozen=True)
class InteractionsSpec:
    """Where the interactions are and how to read them (see :func:`read_interactions`)."""

    path: str
    sep: str | None = None
    header: bool = True
    user_col: str | int = "user"
    item_col: str | int = "item"
    rating_col: str | int | None = None
    time_col: str | int | None = None
    timestamp_format: str | None = None
    on_bad_rows: str = "drop"


@dataclass(frozen=True)
class FilterSpec:
    """Rating threshold and iterative k-core."""

    rating_threshold: float | None = None
    user_k: int = 1
    item_k: int = 1


@dataclass(frozen=True)
class SplitSpec:
    """Split method (``random`` as MMRec, ``temporal``, ``leave_last``), seed and hold-out."""

    method: str = "random"
    seed: int = 999
    holdout: float = 0.2


@dataclass(frozen=True)
class ItemsSpec:
    """Item table (see :func:`read_items`); ``title_col`` labels items in logs and captions."""

    path: str
    id_col: str
    title_col: str | None = None
    sep: str | None = None
    flag_groups: dict = field(default_factory=dict)
    list_columns: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ImagesSpec:
    """Images: ``dir/pattern`` per item id (``"{id}.jpg"``), or a table item id -> file."""

    dir: str | None = None
    pattern: str = "{id}.jpg"
    table: str | None = None
    id_col: str | None = None
    file_col: str | None = None


@dataclass(frozen=True)
class Recipe:
    """A whole dataset recipe. Relative paths are resolved against ``raw_dir``.

    Attributes:
        name: dataset name (``<name>.inter``).
        raw_dir: folder the table and image paths are relative to (relative to the current
            directory when relative itself; ``lirdrec prepare --raw-dir`` overrides it).
        interactions, filter, split, items, images: the specs above.
        modalities: ``{modality: {"encoder": "text" | "image" | "mllm" | "llm", ...}}``.
        write_masks: also write ``<modality>_mask.npy`` (1 = image present) for image modalities.
    """

    name: str
    interactions: InteractionsSpec
    raw_dir: str = "."
    filter: FilterSpec = field(default_factory=FilterSpec)
    split: SplitSpec = field(default_factory=SplitSpec)
    items: ItemsSpec | None = None
    images: ImagesSpec | None = None
    modalities: dict = field(default_factory=dict)
    write_masks: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Recipe":
        """Validate a parsed YAML mapping; unknown keys raise ConfigError listing valid ones."""
        data = dict(data)
        top = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - top)
        if unknown:
            raise ConfigError(f"recipe: unknown key(s) {unknown}; valid keys: {sorted(top)}")
        if "name" not in data or "interactions" not in data:
            raise ConfigError("recipe: 'name' and 'interactions' are required")
        mods = dict(data.get("modalities") or {})
        for m, spec in mods.items():
            if not isinstance(spec, Mapping) or spec.get("encoder") not in ENCODERS:
                raise ConfigError(
                    f"recipe: modality {m!r} needs encoder: one of {list(ENCODERS)}, got {spec!r}"
                )
        return cls(
            name=str(data["name"]),
            raw_dir=str(data.get("raw_dir", ".")),
            interactions=_from_dict(InteractionsSpec, data["interactions"], "interactions"),
            filter=_from_dict(FilterSpec, data.get("filter"), "filter"),
            split=_from_dict(SplitSpec, data.get("split"), "split"),
            items=_from_dict(ItemsSpec, data["items"], "items") if data.get("items") else None,
            images=_from_dict(ImagesSpec, data["images"], "images") if data.get("images") else None,
            modalities={str(k): dict(v) for k, v in mods.items()},
            write_masks=bool(data.get("write_masks", False)),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Recipe":
        """Read and validate a recipe YAML (``yaml.safe_load``); a missing file is a ConfigError."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"recipe: {path} not found")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"recipe: {path} must be a mapping, got {type(data).__name__}")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (for ``prepare.json``)."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------- pipeline
def _resolve(base: Path, path: str | None) -> Path | None:
    return resolve_path(base, path)


def _image_paths(recipe: Recipe, base: Path, item_ids: np.ndarray) -> list[Path | None]:
    return image_paths(recipe.images, base, item_ids)


def _texts(records: list[dict], spec: dict, modality: str) -> list[str]:
    from lirdrec.features.text import join_fields

    template, fields_, sep = (
        spec.pop("template", None),
        spec.pop("fields", None),
        spec.pop("sep", " "),
    )
    if (template is None) == (fields_ is None):
        raise ConfigError(
            f"recipe: modality {modality!r} needs exactly one of 'template' or 'fields'"
        )
    return join_fields(records, fields_, sep=sep, template=template)


def _write_missing(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """``item  file  reason`` per missing or unreadable image, tab-separated with a header."""
    with atomic_write(path, "w") as fh:
        fh.write("item\tfile\treason\n")
        fh.writelines("\t".join(c.replace("\t", " ") for c in row) + "\n" for row in rows)


def _write_captions(path: Path, item_ids, titles, labels, captions) -> None:
    df = pd.DataFrame(
        {
            "itemID": np.arange(len(item_ids)),
            "item_id": item_ids,
            "title": titles,
            "labels": ["; ".join(x) for x in labels],
            "caption": captions,
        }
    )
    with atomic_write(path, "w") as fh:
        df.to_csv(fh, sep="\t", index=False)


def build_dataset(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    modalities: list[str] | None = None,
    device: str | None = None,
    show_progress: bool | None = None,
) -> Path:
    """Run a recipe: interactions, then every modality's features, then the files.

    Args:
        recipe: the :class:`Recipe`.
        out_dir: output folder (``<name>.inter``, id maps, ``*_feat.npy``, ``captions.tsv``,
            ``prepare.json``).
        cache_dir: encoder cache (re-running re-encodes nothing that is unchanged); ``None``
            disables caching.
        modalities: subset of ``recipe.modalities`` to build (default all).
        device: torch device for every encoder.
        show_progress: progress bars (``None``: on when logging INFO).

    Returns:
        ``out_dir``.
    """
    from lirdrec.features.image import ImageEncoder
    from lirdrec.features.mllm import HFCaptioner, LabelCaptioner, LLMEmbedder
    from lirdrec.features.text import TextEncoder

    t_start = time.perf_counter()
    base = Path(recipe.raw_dir)
    out_dir = Path(out_dir)
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    inter = recipe.interactions
    table = read_interactions(
        _resolve(base, inter.path),
        user_col=inter.user_col,
        item_col=inter.item_col,
        rating_col=inter.rating_col,
        time_col=inter.time_col,
        sep=inter.sep,
        header=inter.header,
        timestamp_format=inter.timestamp_format,
        on_bad_rows=inter.on_bad_rows,
    )
    built: BuiltInteractions = build_interactions(
        table,
        np.random.default_rng(recipe.split.seed),
        rating_threshold=recipe.filter.rating_threshold,
        user_k=recipe.filter.user_k,
        item_k=recipe.filter.item_k,
        split=recipe.split.method,
        holdout=recipe.split.holdout,
    )
    item_ids = built.item_ids
    summary: dict[str, Any] = {
        "recipe": recipe.to_dict(),
        "stats": dict(built.stats),
        "modalities": {},
    }

    records, titles, n_missing = item_records(recipe.items, base, item_ids)
    if recipe.items is not None:
        summary["stats"]["items_without_metadata"] = n_missing
    paths = _image_paths(recipe, base, item_ids)

    wanted = list(recipe.modalities) if modalities is None else list(modalities)
    unknown = [m for m in wanted if m not in recipe.modalities]
    if unknown:
        raise ConfigError(
            f"prepare: unknown modality {unknown}; the recipe has {list(recipe.modalities)}"
        )
    common = {"device": device, "show_progress": show_progress}
    features: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for modality in wanted:
        spec = dict(recipe.modalities[modality])
        encoder = spec.pop("encoder")
        t0 = time.perf_counter()
        info: dict[str, Any] = {"encoder": encoder}
        if encoder in ("text", "llm"):
            texts = _texts(records, spec, modality)
            info["empty_texts"] = sum(1 for t in texts if not t)
            cls = TextEncoder if encoder == "text" else LLMEmbedder
            features[modality] = cls(**spec, **common, cache=cache).encode(texts)
        elif encoder == "image":
            if recipe.images is None:
                raise ConfigError(f"recipe: modality {modality!r} needs an 'images' section")
            enc = ImageEncoder(**spec, **common, cache=cache)
            feats, present = enc.encode_with_mask(
                paths, [f"{i} ({t})" for i, t in zip(item_ids, titles)]
            )
            features[modality], masks[modality] = feats, present
            info["missing_images"] = int((~present).sum())
            if enc.missing:
                listing = out_dir / f"{modality}_missing_images.tsv"
                _write_missing(listing, enc.missing)
                info["missing_images_list"] = listing.name
                logger.info("%s: the %d items without a readable image are listed in %s",
                            modality, len(enc.missing), listing)
        else:  # mllm: image -> caption -> embedding
            if recipe.images is None:
                raise ConfigError(f"recipe: modality {modality!r} needs an 'images' section")
            captioner_name = spec.pop("captioner", "labels")
            embed = spec.pop("embed", "text")
            embed_kw = dict(spec.pop("embed_kwargs", {}) or {})
            names = [f"{i} ({t})" for i, t in zip(item_ids, titles)]
            if captioner_name == "labels":
                captioner = LabelCaptioner(**spec, **common, cache=cache)
                labels, captions = captioner.caption_with_labels(paths, names)
            else:
                captioner = HFCaptioner(captioner_name, **spec, **common, cache=cache)
                labels = [[] for _ in paths]
                captions = captioner.caption(paths, names)
            has = np.array([bool(c) for c in captions])
            if embed == "text":
                vecs = TextEncoder(**embed_kw, **common, cache=cache).encode(captions)
            elif embed == "llm":
                vecs = LLMEmbedder(**embed_kw, **common, cache=cache).encode(captions)
            else:
                raise ConfigError(
                    f"recipe: modality {modality!r}: embed must be 'text' or 'llm', got {embed!r}"
                )
            features[modality] = fill_missing(vecs, has, "mean").astype(np.float32)
            masks[modality] = has
            _write_captions(out_dir / "captions.tsv", item_ids, titles, labels, captions)
            info.update(
                captioner=repr(captioner), embed=embed, items_without_caption=int((~has).sum())
            )
        info["shape"] = list(features[modality].shape)
        info["seconds"] = round(time.perf_counter() - t0, 1)
        summary["modalities"][modality] = info
        logger.info("modality %s: %s in %.1fs", modality, features[modality].shape, info["seconds"])

    write_dataset(out_dir, recipe.name, built, features)
    if recipe.write_masks:
        for modality, mask in masks.items():
            with atomic_write(out_dir / f"{modality}_mask.npy", "wb") as fh:
                np.save(fh, mask.astype(np.uint8), allow_pickle=False)
    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    if cache is not None:
        summary["cache"] = {"hits": cache.hits, "misses": cache.misses}
    with atomic_write(out_dir / "prepare.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    return out_dir


def check_paths(recipe: Recipe) -> None:
    """Fail early, naming the file, when a table of the recipe does not exist."""
    base = Path(recipe.raw_dir)
    for what, spec in (("interactions", recipe.interactions), ("items", recipe.items)):
        if spec is not None and not _resolve(base, spec.path).is_file():
            raise SchemaError(
                _resolve(base, spec.path),
                message=f"{what} table not found",
                hint="run from the repository root or pass --raw-dir",
            )


def read_recipe(path: str | Path | None) -> dict[str, Any]:
    """The mapping of a recipe YAML (``{}`` for ``None``), before flags are applied on top."""
    import yaml

    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"prepare: recipe {path} not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"prepare: {path} must be a mapping, got {type(data).__name__}")
    return data


def prepare(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    modalities: list[str] | None = None,
    device: str | None = None,
    show_progress: bool | None = None,
) -> Dataset:
    """``lirdrec prepare``: check the recipe's paths, build the dataset into ``out_dir`` with
    :func:`build_dataset` (same arguments), then load it once with every check (as
    ``lirdrec validate``) and return it.
    """
    check_paths(recipe)
    out = build_dataset(recipe, out_dir, cache_dir=cache_dir, modalities=modalities,
                        device=device, show_progress=show_progress)
    return load_dataset(out)
