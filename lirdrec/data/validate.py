"""Checks that turn a raw ``.inter`` table and feature arrays into trustworthy index arrays.

Bad rows are found with vectorised masks and reported by 1-based file line (header = line 1):
``ml100k/ml100k.inter, line 1534, column itemID: expected an integer in [0, 1682), found 1682``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from lirdrec.errors import DataWarning, FeatureError, IdError, SplitError, format_lines

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # pandas (~70 MiB) is imported where files are read, not by `import lirdrec`
    import pandas as pd

__all__ = ["parse_int_column", "validate_interactions", "validate_features"]


def _lines(rows: np.ndarray) -> np.ndarray:
    return rows + 2  # header is line 1, row 0 is line 2


def parse_int_column(df: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """Column ``column`` as int64; non-integers (text, decimals, blanks) raise :class:`IdError`."""
    import pandas as pd

    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        rows = np.flatnonzero(bad)
        found = [repr(raw.iloc[r]) if isinstance(raw.iloc[r], str) else "blank" for r in rows[:5]]
        raise IdError(path, line=format_lines(_lines(rows)), column=column,
                      expected="an integer", found=", ".join(found))
    return values.astype(np.int64)


def validate_interactions(df: pd.DataFrame, path: Path, num_feature_rows: int | None = None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Check ids and split labels of a ``.inter`` table.

    Returns:
        ``(users, items, x_label, num_users, num_items)``, de-duplicated (first occurrence kept,
        with a :class:`DataWarning` giving the count).

    Raises:
        IdError: non-integer or negative ids, user ids (or, without features, item ids) leaving
            gaps in ``0..max``, item ids not below the feature matrices' row count. Items with a
            feature row but no interaction are accepted with one :class:`DataWarning`.
        SplitError: ``x_label`` outside {0, 1, 2}, or an empty train, valid or test split.
    """
    users = parse_int_column(df, "userID", path)
    items = parse_int_column(df, "itemID", path)
    labels = parse_int_column(df, "x_label", path)
    if len(users) == 0:
        raise SplitError(path, line=2, expected="at least one interaction", found="none")
    for name, arr in (("userID", users), ("itemID", items)):
        neg = np.flatnonzero(arr < 0)
        if len(neg):
            raise IdError(path, line=format_lines(_lines(neg)), column=name,
                          expected="a non-negative integer", found=str(arr[neg[0]]))
    bad = np.flatnonzero((labels < 0) | (labels > 2))
    if len(bad):
        raise SplitError(path, line=format_lines(_lines(bad)), column="x_label",
                         expected="0 (train), 1 (valid) or 2 (test)", found=str(labels[bad[0]]))
    counts = np.bincount(labels, minlength=3)
    for label, split in enumerate(("training", "validation", "test")):
        if counts[label] == 0:  # before the id checks: an empty split is the real problem
            raise SplitError(path, column="x_label",
                             expected=f"at least one {split} row (x_label {label})",
                             found=f"the {split} split is empty ({len(labels)} rows: "
                             f"{counts[0]} train, {counts[1]} valid, {counts[2]} test)")
    if num_feature_rows is not None:
        over = np.flatnonzero(items >= num_feature_rows)
        if len(over):
            raise IdError(path, line=format_lines(_lines(over)), column="itemID",
                          expected=f"an integer in [0, {num_feature_rows}) "
                                   "(rows of the feature files)",
                          found=str(items[over[0]]))
    num_users = int(users.max()) + 1
    num_items = int(num_feature_rows) if num_feature_rows is not None else int(items.max()) + 1
    for name, arr, n in (("userID", users, num_users), ("itemID", items, num_items)):
        present = np.zeros(n, dtype=bool)
        present[arr] = True
        if present.all():
            continue
        gaps = np.flatnonzero(~present)
        shown = f"{gaps[:5].tolist()}" + (" ..." if len(gaps) > 5 else "")
        if name == "itemID" and num_feature_rows is not None:
            # items known by their feature rows alone: the cold-start case, ranked, never trained
            msg = (f"{path}: {len(gaps)} item(s) have feature rows but no interaction (ids "
                   f"{shown}); they are ranked like any other item and never trained on")
            warnings.warn(msg, DataWarning, stacklevel=3)
            logger.warning(msg)
            continue
        raise IdError(path, column=name, expected=f"contiguous ids 0..{n - 1}",
                      found=f"{len(gaps)} unused id(s): {shown}",
                      hint="re-index the ids (lirdrec prepare does this)")
    keys = users * num_items + items
    _, first = np.unique(keys, return_index=True)
    if len(first) < len(keys):
        n_dup = len(keys) - len(first)
        keep = np.sort(first)
        msg = f"{path}: {n_dup} duplicate (userID, itemID) pair(s) removed, first occurrence kept"
        warnings.warn(msg, DataWarning, stacklevel=3)
        logger.warning(msg)
        users, items, labels = users[keep], items[keep], labels[keep]
    return users, items, labels, num_users, num_items


def validate_features(features: Mapping[str, np.ndarray], paths: Mapping[str, Path],
                      num_items: int) -> None:
    """Every feature matrix has exactly ``num_items`` rows."""
    for modality, arr in features.items():
        if arr.shape[0] != num_items:
            raise FeatureError(paths[modality], expected=f"{num_items} rows (one per item)",
                               found=f"{arr.shape[0]} rows (shape {arr.shape})")
