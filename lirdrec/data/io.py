"""Reading and writing MMRec-format files: ``<name>.inter`` and ``<modality>_feat.npy``.

Readers return raw tables and arrays and raise :mod:`lirdrec.errors` with the file, the line and
the expectation; :mod:`lirdrec.data.validate` checks how the pieces fit together.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from lirdrec.errors import FeatureError, SchemaError
from lirdrec.utils.io import atomic_write

if TYPE_CHECKING:  # pandas (~70 MiB) is imported where files are read, not by `import lirdrec`
    import pandas as pd

__all__ = [
    "REQUIRED_COLUMNS",
    "INTER_COLUMNS",
    "read_inter",
    "read_features",
    "write_inter",
    "write_features",
    "write_mmrec",
    "find_feature_files",
]

INTER_COLUMNS = ("userID", "itemID", "rating", "timestamp", "x_label")
REQUIRED_COLUMNS = ("userID", "itemID", "x_label")


def read_inter(path: str | Path) -> pd.DataFrame:
    """Read a tab-separated ``.inter`` file as strings-or-numbers, checking the header.

    Returns the table with the columns as in the file; the row at index ``r`` is file line
    ``r + 2`` (the header is line 1; blank lines are kept as rows so numbering stays exact).

    Raises:
        SchemaError: the file is missing, empty, names a column twice, or lacks ``userID``,
            ``itemID`` or ``x_label`` (with a "did you mean" hint for renamed columns).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise SchemaError(path, message="file not found")
    try:
        df = pd.read_csv(path, sep="\t", skip_blank_lines=False, dtype=str, keep_default_na=False,
                         na_values=[""], engine="c")
    except pd.errors.EmptyDataError:
        raise SchemaError(path, line=1,
                          expected="a header 'userID itemID rating timestamp x_label'",
                          found="an empty file") from None
    except pd.errors.ParserError as exc:
        raise SchemaError(path, message=f"not a tab-separated table ({exc})") from None
    with path.open(encoding="utf-8", errors="replace") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
    seen: set[str] = set()
    for name in header:  # pandas would rename a repeat to 'itemID.1' and one column would win
        if name in seen:
            raise SchemaError(path, line=1, column=name,
                              expected="each column named once",
                              found="header " + " ".join(header))
        seen.add(name)
    cols = [str(c) for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        hints = []
        for c in missing:
            close = difflib.get_close_matches(c, cols, n=1, cutoff=0.5)
            close = close or [x for x in cols if x.lower().replace("_", "") == c.lower()]
            if close:
                hints.append(f"'{close[0]}' looks like '{c}'")
        raise SchemaError(
            path, line=1, column=", ".join(missing),
            expected="tab-separated header with userID, itemID, rating, timestamp, x_label",
            found="header " + " ".join(cols[:8]) + (" ..." if len(cols) > 8 else ""),
            hint="; ".join(hints) or None,
        )
    return df


def _floating(arr: np.ndarray) -> bool:
    return np.issubdtype(arr.dtype, np.floating)


def read_features(path: str | Path) -> np.ndarray:
    """Load a ``*_feat.npy`` feature matrix as float32 ``(I, d)``; pickles are never loaded.

    float16 and float64 are converted to float32 (TikTok's features are float16 as distributed).

    Raises:
        FeatureError: not an ``.npy`` array, an object/pickled array, not 2-D, not floating point,
            or containing NaN/inf (naming the first bad row).
    """
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FeatureError(path, message="file not found") from None
    except ValueError as exc:
        found = "a pickled object array" if "pickle" in str(exc) else f"unreadable data ({exc})"
        raise FeatureError(path, expected="a numeric .npy array", found=found) from None
    except OSError as exc:
        raise FeatureError(path, expected="a numeric .npy array",
                           found=f"unreadable data ({exc})") from None
    if not isinstance(arr, np.ndarray):
        raise FeatureError(path, expected="a single .npy array", found=type(arr).__name__)
    if arr.ndim != 2:
        raise FeatureError(path, expected="a 2-D array (items x dims)", found=f"shape {arr.shape}")
    if not _floating(arr):
        raise FeatureError(path, expected="a floating-point array", found=f"dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1))
        raise FeatureError(path, line=f"row {bad[0]}", expected="finite values",
                           found=f"NaN/inf in {len(bad)} row(s): rows {bad[:5].tolist()}")
    return np.ascontiguousarray(arr)


def find_feature_files(directory: str | Path) -> dict[str, Path]:
    """``{modality: path}`` for every ``<modality>_feat.npy`` in ``directory``, sorted by name,
    with ``image`` first and ``text`` second when present (MMRec's order).
    """
    directory = Path(directory)
    found = {p.name[: -len("_feat.npy")]: p for p in sorted(directory.glob("*_feat.npy"))}
    first = ("image", "text")
    order = [m for m in first if m in found] + [m for m in found if m not in first]
    return {m: found[m] for m in order}


def write_inter(path: str | Path, users, items, x_label, rating=None, timestamp=None) -> Path:
    """Write an MMRec ``.inter`` file atomically.

    The header is ``userID itemID rating timestamp x_label``.
    """
    import pandas as pd

    n = len(users)
    df = pd.DataFrame({
        "userID": np.asarray(users, dtype=np.int64),
        "itemID": np.asarray(items, dtype=np.int64),
        "rating": np.ones(n, dtype=np.int64) if rating is None else np.asarray(rating),
        "timestamp": np.arange(n, dtype=np.int64) if timestamp is None else np.asarray(timestamp),
        "x_label": np.asarray(x_label, dtype=np.int64),
    })
    with atomic_write(path, "w") as fh:
        df.to_csv(fh, sep="\t", index=False)
    return Path(path)


def write_features(path: str | Path, features: np.ndarray) -> Path:
    """Save a float32 feature matrix as ``.npy`` atomically."""
    with atomic_write(path, "wb") as fh:
        np.save(fh, np.asarray(features, dtype=np.float32), allow_pickle=False)
    return Path(path)


def write_mmrec(directory: str | Path, name: str, users, items, x_label,
                features: Mapping[str, np.ndarray], rating=None, timestamp=None) -> Path:
    """Write a whole MMRec dataset: ``<directory>/<name>.inter`` and ``<modality>_feat.npy``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_inter(directory / f"{name}.inter", users, items, x_label, rating, timestamp)
    for modality, arr in features.items():
        write_features(directory / f"{modality}_feat.npy", arr)
    return directory
