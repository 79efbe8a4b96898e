"""Raw items of a dataset: item id -> title, text fields and image path, in dataset item order.

The one reader of the item table and the image folder that a dataset recipe describes
(``datasets/<name>/recipe.yaml``; ``lirdrec prepare`` reads them through the same functions).
Trainable encoders (NoteLLM-2) and the encoder study read raw titles, texts and images here::

    from lirdrec.features.recipe import Recipe
    recipe = Recipe.from_yaml("datasets/ml100k/recipe.yaml")
    raw = read_raw_items(recipe, "../shared/data/ml100k")      # row i = dataset item i
    raw.titles[0], raw.records[0]["Summary"], raw.image_paths[0]
    texts = join_fields(raw.records, template="{movie title}. {Summary}")  # features.text

Dataset item ``i`` is mapped to its raw id through the dataset's ``i_id_mapping.csv`` (raw id
-> itemID, as :func:`lirdrec.data.build.write_dataset` writes it). MMRec copies that label items
as ``"<itemID>_<title>"`` (the shared ml100k: ``0_Toy Story``) carry no raw id; for them, and only
when the item table has exactly one row per dataset item, row ``i`` of the table is item ``i``
(a :class:`~lirdrec.errors.DataWarning` says so).

This module takes the recipe's ``items`` / ``images`` specs as plain objects (any object with
the attributes of :class:`lirdrec.features.recipe.ItemsSpec` / ``ImagesSpec``), so ``data/``
does not import ``features/``.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lirdrec.data.build import read_id_mapping, read_items
from lirdrec.errors import ConfigError, DataWarning, IdError, SchemaError

logger = logging.getLogger(__name__)

__all__ = [
    "RawItems",
    "read_raw_items",
    "item_records",
    "image_paths",
    "dataset_raw_ids",
    "resolve_path",
]

_MMREC_LABEL = re.compile(r"^(\d+)_")


def resolve_path(base: str | Path, path: str | Path | None) -> Path | None:
    """``path`` as given when absolute, else relative to ``base``; ``None`` stays ``None``."""
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else Path(base) / p


@dataclass(frozen=True)
class RawItems:
    """Raw items in dataset item order (row ``i`` = item ``i``).

    Attributes:
        raw_ids: ``(I,)`` str array, the item table's id of each item.
        records: ``I`` mappings ``{column: text}`` (empty strings for missing values; an empty
            mapping for an item without a table row).
        titles: ``I`` display titles (the recipe's ``title_col``; the raw id when absent).
        image_paths: ``I`` image paths (``None`` when the recipe has no image for the item;
            a path may still not exist: see :attr:`has_image`).
    """

    raw_ids: np.ndarray
    records: list[dict[str, str]]
    titles: list[str]
    image_paths: list[Path | None]

    def __len__(self) -> int:
        return len(self.raw_ids)

    @property
    def has_image(self) -> np.ndarray:
        """``(I,)`` bool: the item's image file exists."""
        return np.array([p is not None and p.is_file() for p in self.image_paths], dtype=bool)

    @property
    def has_record(self) -> np.ndarray:
        """``(I,)`` bool: the item has a row in the item table."""
        return np.array([bool(r) for r in self.records], dtype=bool)

    def field(self, name: str) -> list[str]:
        """One column as ``I`` strings (``""`` where missing)."""
        return [r.get(name, "") for r in self.records]

    def subset(self, items: Sequence[int] | np.ndarray) -> "RawItems":
        """The rows ``items`` (dataset item ids), in that order."""
        idx = np.asarray(items, dtype=np.int64)
        return RawItems(
            raw_ids=self.raw_ids[idx],
            records=[self.records[i] for i in idx],
            titles=[self.titles[i] for i in idx],
            image_paths=[self.image_paths[i] for i in idx],
        )


def item_records(
    spec: Any, base: str | Path, raw_ids: Sequence[str] | np.ndarray, *, warn: bool = True
) -> tuple[list[dict[str, str]], list[str], int]:
    """Rows of the recipe's item table for ``raw_ids``.

    Args:
        spec: the recipe's ``items`` (``path``, ``id_col``, ``title_col``, ``sep``,
            ``flag_groups``, ``list_columns``), or ``None`` for no table.
        base: folder that relative paths start from (the recipe's ``raw_dir``).
        raw_ids: item ids as written in the table's ``id_col``.
        warn: emit a :class:`DataWarning` counting items without a row.

    Returns:
        ``(records, titles, n_missing)``: one mapping per id (``{}`` when the table has no row),
        one title per id (the raw id when no title), the number of ids without a row.
    """
    raw_ids = [str(i) for i in raw_ids]
    if spec is None:
        return [{} for _ in raw_ids], list(raw_ids), 0
    path = resolve_path(base, spec.path)
    table = read_items(
        path,
        id_col=spec.id_col,
        sep=getattr(spec, "sep", None),
        flag_groups=getattr(spec, "flag_groups", None),
        list_columns=getattr(spec, "list_columns", None),
    )
    records = [table.get(i, {}) for i in raw_ids]
    n_missing = sum(1 for r in records if not r)
    if n_missing and warn:
        msg = (
            f"{n_missing} of {len(raw_ids)} items have no row in {spec.path}; "
            "their texts are empty"
        )
        logger.warning(msg)
        warnings.warn(msg, DataWarning, stacklevel=2)
    title_col = getattr(spec, "title_col", None)
    if title_col:
        titles = [r.get(title_col, "") or i for r, i in zip(records, raw_ids)]
    else:
        titles = list(raw_ids)
    return records, titles, n_missing


def image_paths(
    spec: Any, base: str | Path, raw_ids: Sequence[str] | np.ndarray
) -> list[Path | None]:
    """Image path of each raw id from the recipe's ``images`` spec.

    Args:
        spec: ``dir`` and ``pattern`` (``"{id}.jpg"``), or ``table`` + ``id_col`` + ``file_col``
            (a table naming each item's file, relative to ``dir``); ``None`` for no images.
        base: folder that relative paths start from.
        raw_ids: item ids.

    Returns:
        One path per id (``None`` when the table names no file); existence is not checked.
    """
    raw_ids = [str(i) for i in raw_ids]
    if spec is None:
        return [None] * len(raw_ids)
    folder = resolve_path(base, spec.dir) if getattr(spec, "dir", None) else Path(base)
    if getattr(spec, "table", None):
        if not spec.id_col or not spec.file_col:
            raise ConfigError("recipe: images.table needs id_col and file_col")
        rows = read_items(resolve_path(base, spec.table), id_col=spec.id_col)
        return [
            resolve_path(folder, rows[i][spec.file_col])
            if i in rows and rows[i][spec.file_col]
            else None
            for i in raw_ids
        ]
    return [folder / spec.pattern.format(id=i) for i in raw_ids]


def dataset_raw_ids(dataset_dir: str | Path, table_ids: Sequence[str] | None = None) -> np.ndarray:
    """Raw item id of each dataset item, from ``<dataset_dir>/i_id_mapping.csv``.

    Args:
        dataset_dir: MMRec-format dataset folder.
        table_ids: the item table's ids in table order; used only when the mapping holds
            MMRec labels ``"<itemID>_<title>"`` instead of raw ids (then row ``i`` of the table
            is item ``i``, which needs exactly one table row per item).

    Raises:
        SchemaError: no ``i_id_mapping.csv``.
        IdError: MMRec labels and no table of matching length to fall back on.
    """
    path = Path(dataset_dir) / "i_id_mapping.csv"
    if not path.is_file():
        raise SchemaError(
            path,
            message="item id mapping not found",
            hint="raw items are matched to dataset items through i_id_mapping.csv",
        )
    ids = read_id_mapping(path)
    if table_ids is not None:
        known = set(map(str, table_ids))
        if any(i in known for i in ids):
            return ids
        labels = [_MMREC_LABEL.match(i) for i in ids]
        if all(m is not None and int(m.group(1)) == k for k, m in enumerate(labels)):
            if len(table_ids) != len(ids):
                raise IdError(
                    path,
                    expected="item-table ids (MMRec '<itemID>_<title>' labels can only be "
                    f"matched by row order, which needs {len(ids)} table rows)",
                    found=f"{len(table_ids)} rows",
                )
            msg = (
                f"{path}: ids are MMRec labels '<itemID>_<title>'; item i is row i of the item "
                "table"
            )
            logger.warning(msg)
            warnings.warn(msg, DataWarning, stacklevel=3)
            return np.asarray([str(t) for t in table_ids], dtype=str)
        raise IdError(
            path,
            line=2,
            expected="ids of the item table",
            found=f"{ids[0]!r} (no id of the mapping is in the item table)",
        )
    return ids


def read_raw_items(
    recipe: Any,
    dataset_dir: str | Path | None = None,
    *,
    raw_ids: Sequence[str] | np.ndarray | None = None,
    raw_dir: str | Path | None = None,
) -> RawItems:
    """Titles, text fields and image paths of a dataset's items, in dataset item order.

    Args:
        recipe: a :class:`lirdrec.features.recipe.Recipe` (uses ``raw_dir``, ``items``,
            ``images``).
        dataset_dir: the MMRec-format dataset; its ``i_id_mapping.csv`` orders the items.
        raw_ids: instead of ``dataset_dir``, the raw item ids in the wanted order.
        raw_dir: overrides ``recipe.raw_dir`` (relative paths of the recipe start there).

    Returns:
        :class:`RawItems` with one row per item.

    Raises:
        ConfigError: neither or both of ``dataset_dir`` and ``raw_ids``.
        SchemaError / IdError: missing table, column or mapping (naming the file).
    """
    if (dataset_dir is None) == (raw_ids is None):
        raise ConfigError("read_raw_items: give exactly one of dataset_dir or raw_ids")
    base = Path(raw_dir if raw_dir is not None else getattr(recipe, "raw_dir", "."))
    if raw_ids is None:
        table_ids = None
        if recipe.items is not None:
            table_ids = list(
                read_items(
                    resolve_path(base, recipe.items.path),
                    id_col=recipe.items.id_col,
                    sep=getattr(recipe.items, "sep", None),
                )
            )
        raw_ids = dataset_raw_ids(dataset_dir, table_ids)
    raw_ids = np.asarray([str(i) for i in raw_ids], dtype=str)
    records, titles, _ = item_records(recipe.items, base, raw_ids)
    paths = image_paths(recipe.images, base, raw_ids)
    logger.info(
        "raw items: %d items, %d with a table row, %d with an image file",
        len(raw_ids),
        sum(1 for r in records if r),
        sum(1 for p in paths if p is not None and p.is_file()),
    )
    return RawItems(raw_ids=raw_ids, records=records, titles=titles, image_paths=paths)
