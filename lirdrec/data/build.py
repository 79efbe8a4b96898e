"""Raw interactions -> an MMRec-format dataset: cleaning, k-core, split, re-indexing, writing.

The steps of :func:`build_interactions`, in order:

1. :func:`read_interactions`: a CSV/TSV/Parquet table with configurable column names. Rows with
   a missing user or item id, or an unparsable rating or timestamp, are *bad rows*: reported
   with their file lines and dropped with a :class:`~lirdrec.errors.DataWarning`, or fatal
   (``on_bad_rows="error"``).
2. Optional rating threshold (keep ``rating >= threshold``); duplicate ``(user, item)`` pairs
   keep their earliest interaction (counted in a warning).
3. :func:`kcore`: iterative k-core, users with ``>= user_k`` and items with ``>= item_k``
   interactions, repeated until nothing changes.
4. :func:`reindex`: contiguous ids ``0..U-1`` / ``0..I-1`` in the sorted order of the original
   ids (numerically when every id is an integer), so ``movie id 1`` becomes ``itemID 0``.
5. :func:`split_interactions`: per user, exactly as MMRec's data preparation: shuffle with a
   seeded :class:`numpy.random.Generator`, then a user with ``n < 10`` interactions gets
   ``n - 2`` train, 1 valid, 1 test; otherwise ``v = int(0.2 n)`` are held out, ``v // 2`` valid
   and ``v - v // 2`` test. ``"temporal"`` uses the same sizes in time order (the latest go to
   valid/test) and ``"leave_last"`` holds out the last two (valid, then test).
6. :func:`write_dataset`: ``<name>.inter`` (header ``userID itemID rating timestamp x_label``),
   ``u_id_mapping.csv`` and ``i_id_mapping.csv`` (tab-separated, original id -> new id).

Features are computed by :mod:`lirdrec.features` and written beside as ``<modality>_feat.npy``
(row ``i`` = new item ``i``) by :func:`write_dataset`; :mod:`lirdrec.cli.prepare` ties the two.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from lirdrec.data.io import write_features, write_inter
from lirdrec.errors import ConfigError, DataError, DataWarning, IdError, SchemaError, format_lines
from lirdrec.utils.io import atomic_write

logger = logging.getLogger(__name__)

__all__ = [
    "InteractionTable",
    "BuiltInteractions",
    "read_interactions",
    "read_items",
    "apply_rating_threshold",
    "drop_duplicate_pairs",
    "kcore",
    "reindex",
    "split_interactions",
    "build_interactions",
    "write_dataset",
    "read_id_mapping",
]

SplitMethod = Literal["random", "temporal", "leave_last"]
_INT_RE = re.compile(r"^[+-]?\d+$")


# ---------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class InteractionTable:
    """Parsed interactions, one row per kept input row.

    Attributes:
        users, items (np.ndarray): original ids as strings, shape ``(n,)``.
        rating (np.ndarray): float64 ``(n,)`` (1.0 when the table has no rating column).
        timestamp (np.ndarray): int64 unix seconds ``(n,)`` (0 when there is no time column).
        lines (np.ndarray): int64 ``(n,)`` file line of each row (header = line 1), or the
            1-based row number for Parquet.
        path (Path | None): the file read.
        num_bad (int): bad rows dropped while reading.
    """

    users: np.ndarray
    items: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    lines: np.ndarray
    path: Path | None = None
    num_bad: int = 0

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def take(self, mask_or_index: np.ndarray) -> "InteractionTable":
        """The rows selected by a boolean mask or an index array, in that order."""
        return InteractionTable(
            users=self.users[mask_or_index],
            items=self.items[mask_or_index],
            rating=self.rating[mask_or_index],
            timestamp=self.timestamp[mask_or_index],
            lines=self.lines[mask_or_index],
            path=self.path,
            num_bad=self.num_bad,
        )


def _read_table(path: Path, sep: str | None, header: bool) -> tuple[pd.DataFrame, int]:
    """A table of strings and the file line of its first data row (row numbers for Parquet)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise SchemaError(path, message="no such file")
    if suffix in (".parquet", ".pq"):
        try:
            df = pd.read_parquet(path)
        except ImportError as exc:
            raise ImportError(
                f"reading {path.name} needs a Parquet engine: pip install pyarrow"
            ) from exc
        df = df.astype(object).where(df.notna(), None)
        df = df.map(lambda v: None if v is None else str(v))
        return df, 1
    if sep is None:
        sep = "\t" if suffix in (".tsv", ".inter", ".tab") else ","
    df = pd.read_csv(
        path,
        sep=sep,
        header=0 if header else None,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        skip_blank_lines=False,
        engine="c",
    )
    if not header:
        df.columns = [str(c) for c in df.columns]
    return df, 2 if header else 1


def _column(df: pd.DataFrame, name: str | int | None, path: Path, role: str) -> pd.Series | None:
    """The column called ``name`` (or at position ``name`` if an int), else a SchemaError."""
    if name is None:
        return None
    key = str(name)
    if key in df.columns:
        return df[key]
    raise SchemaError(
        path,
        line=1,
        column=key,
        expected=f"a {role} column named {key!r}",
        found=f"columns {list(df.columns)}",
        hint=f"set the {role} column name (e.g. --{role}-col)",
    )


def _unix_seconds(dates: pd.Series) -> np.ndarray:
    """Whole seconds since 1970-01-01 UTC, whatever the datetime resolution."""
    return ((dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "s")).to_numpy(dtype=np.int64)


def _parse_timestamps(values: pd.Series, fmt: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds (int64) and a validity mask; numbers are seconds, other text is a date."""
    text = values.astype("string")
    if fmt is not None and fmt != "unix":
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
        ok = parsed.notna().to_numpy()
        secs = np.zeros(len(text), dtype=np.int64)
        secs[ok] = _unix_seconds(parsed[ok])
        return secs, ok
    num = pd.to_numeric(text, errors="coerce")
    ok = num.notna().to_numpy() & np.isfinite(num.to_numpy(dtype=float, na_value=np.nan))
    secs = np.zeros(len(text), dtype=np.int64)
    secs[ok] = num[ok].to_numpy(dtype=float).astype(np.int64)
    if fmt is None:
        rest = ~ok & text.notna().to_numpy()
        if rest.any():
            parsed = pd.to_datetime(text[rest], errors="coerce", utc=True, format="mixed")
            good = parsed.notna().to_numpy()
            idx = np.flatnonzero(rest)[good]
            secs[idx] = _unix_seconds(parsed[good])
            ok[idx] = True
    return secs, ok


def read_interactions(
    path: str | Path,
    *,
    user_col: str | int = "user",
    item_col: str | int = "item",
    rating_col: str | int | None = None,
    time_col: str | int | None = None,
    sep: str | None = None,
    header: bool = True,
    timestamp_format: str | None = None,
    on_bad_rows: Literal["drop", "error"] = "drop",
) -> InteractionTable:
    """Read an interactions table and separate the bad rows.

    Args:
        path: ``.csv``, ``.tsv``/``.inter`` (tab) or ``.parquet`` file.
        user_col: user column name (or 0-based position when ``header=False``).
        item_col: item column name (or 0-based position when ``header=False``).
        rating_col: optional rating column.
        time_col: optional timestamp column.
        sep: field separator; default by suffix (tab for ``.tsv``, comma otherwise).
        header: whether the first line names the columns.
        timestamp_format: ``None`` (numbers are unix seconds, other text parsed as a date),
            ``"unix"`` (numbers only) or a ``strftime`` format such as ``"%Y-%m-%d"``.
        on_bad_rows: ``"drop"`` (warn with the lines and a count) or ``"error"`` (raise).
            Line numbers count one row per line (blank lines are kept as bad rows so the
            numbering stays exact; a quoted field spanning lines would shift it).

    Returns:
        The good rows as an :class:`InteractionTable`.

    Raises:
        SchemaError: missing file or column.
        IdError: ``on_bad_rows="error"`` and a row lacks a user or item id.
        DataError: ``on_bad_rows="error"`` and a rating or timestamp cannot be parsed.
    """
    if on_bad_rows not in ("drop", "error"):
        raise ConfigError(
            f"read_interactions: on_bad_rows must be 'drop' or 'error', got {on_bad_rows!r}"
        )
    path = Path(path)
    df, first_line = _read_table(path, sep, header)
    n = len(df)
    lines = np.arange(first_line, first_line + n, dtype=np.int64)
    users = _column(df, user_col, path, "user")
    items = _column(df, item_col, path, "item")
    ratings = _column(df, rating_col, path, "rating")
    times = _column(df, time_col, path, "timestamp")

    problems: list[tuple[type[DataError], str, np.ndarray, str, pd.Series]] = []
    users_s = users.astype("string").str.strip()
    items_s = items.astype("string").str.strip()
    for name, col in ((str(user_col), users_s), (str(item_col), items_s)):
        bad = (col.isna() | (col == "")).to_numpy(dtype=bool)
        if bad.any():
            problems.append((IdError, name, bad, "a non-empty id", col))

    rating = np.ones(n, dtype=np.float64)
    if ratings is not None:
        num = pd.to_numeric(ratings, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isfinite(num)
        if bad.any():
            problems.append((DataError, str(rating_col), bad, "a number", ratings))
        rating = np.where(bad, 0.0, num)

    timestamp = np.zeros(n, dtype=np.int64)
    if times is not None:
        timestamp, ok = _parse_timestamps(times, timestamp_format)
        if (~ok).any():
            expected = {None: "unix seconds or a date", "unix": "unix seconds"}.get(
                timestamp_format, f"a date as {timestamp_format!r}"
            )
            problems.append((DataError, str(time_col), ~ok, expected, times))

    bad_any = np.zeros(n, dtype=bool)
    problems.sort(key=lambda p: int(np.flatnonzero(p[2])[0]))  # earliest bad line first
    for cls, column, bad, expected, values in problems:
        rows = np.flatnonzero(bad)
        shown = [
            ("empty" if pd.isna(v) or str(v).strip() == "" else repr(str(v)))
            for v in values.iloc[rows[:5]]
        ]
        unit = "row" if path.suffix.lower() in (".parquet", ".pq") else "line"
        where = format_lines(lines[rows].tolist(), shown)
        if unit == "row":
            where = where.replace("line", "row")
        if on_bad_rows == "error":
            raise cls(
                path,
                line=where,
                column=column,
                expected=expected,
                found=f"{len(rows)} bad row(s)",
                hint="pass on_bad_rows='drop' (--on-bad-rows drop) to drop them",
            )
        msg = (
            f"{path.name}: dropped {len(rows)} row(s) whose column {column} is not "
            f"{expected}: {where}"
        )
        logger.warning(msg)
        warnings.warn(msg, DataWarning, stacklevel=2)
        bad_any |= bad

    keep = ~bad_any
    table = InteractionTable(
        users=_normalise_ids(users_s.to_numpy(dtype=object)[keep]),
        items=_normalise_ids(items_s.to_numpy(dtype=object)[keep]),
        rating=rating[keep],
        timestamp=timestamp[keep].astype(np.int64),
        lines=lines[keep],
        path=path,
        num_bad=int(bad_any.sum()),
    )
    logger.info(
        "read %d interactions from %s (%d bad rows dropped)", len(table), path, table.num_bad
    )
    return table


def _normalise_ids(values: np.ndarray) -> np.ndarray:
    """Ids as a str array; ``"1.0"`` from a float column is kept as written."""
    return np.asarray([str(v) for v in values], dtype=object).astype(str)


def read_items(
    path: str | Path,
    *,
    id_col: str,
    sep: str | None = None,
    flag_groups: Mapping[str, Sequence[str]] | None = None,
    list_columns: Mapping[str, str] | None = None,
) -> dict[str, dict[str, str]]:
    """Read an item table as ``{item id: {field: text}}`` (missing values are empty strings).

    Args:
        path: CSV/TSV/Parquet with one row per item.
        id_col: column holding the item id, matched against the interactions' item ids.
        sep: field separator; default by suffix (tab for ``.tsv``, comma otherwise).
        flag_groups: derived fields from 0/1 columns, e.g. ``{"genres": ["Action", "Comedy"]}``
            gives ``"Action, Comedy"`` for an item flagged in both.
        list_columns: ``{column: separator}``: a list written as ``"a|b"`` becomes ``"a, b"``.

    Raises:
        SchemaError: missing file or column.
        IdError: an item id is empty or repeated (names the lines).
    """
    path = Path(path)
    df, first_line = _read_table(path, sep, True)
    ids = _column(df, id_col, path, "item id").astype("string").str.strip()
    lines = np.arange(first_line, first_line + len(df))
    empty = (ids.isna() | (ids == "")).to_numpy(dtype=bool)
    if empty.any():
        raise IdError(
            path,
            line=format_lines(lines[empty].tolist()),
            column=id_col,
            expected="a non-empty item id",
            found="empty",
        )
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        raise IdError(
            path,
            line=format_lines(lines[dup].tolist(), ids[dup].tolist()),
            column=id_col,
            expected="each item once",
            found="a repeated id",
        )
    table = df.fillna("")
    for name, columns in (flag_groups or {}).items():
        for c in columns:
            _column(df, c, path, "flag")
        flags = table[list(columns)].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
        table[name] = [", ".join(c for c, on in zip(columns, row) if on) for row in flags]
    for column, sep_ in (list_columns or {}).items():
        _column(df, column, path, "list")
        table[column] = [
            ", ".join(p.strip() for p in v.split(sep_) if p.strip())
            for v in table[column].astype(str)
        ]
    records = table.astype(str).to_dict(orient="records")
    return {_normalise_ids(np.array([k]))[0]: rec for k, rec in zip(ids.tolist(), records)}


# ------------------------------------------------------------------------------------ filtering
def apply_rating_threshold(table: InteractionTable, threshold: float | None) -> InteractionTable:
    """Keep interactions with ``rating >= threshold`` (all when ``threshold`` is None)."""
    if threshold is None:
        return table
    keep = table.rating >= threshold
    logger.info("rating >= %g keeps %d of %d interactions", threshold, keep.sum(), len(table))
    return table.take(keep)


def drop_duplicate_pairs(table: InteractionTable) -> InteractionTable:
    """Keep the earliest interaction of each ``(user, item)`` pair (ties: first in the file).

    Emits a :class:`DataWarning` with the count when any pair repeats.
    """
    order = np.lexsort((table.lines, table.timestamp))  # by time, then file order
    pairs = pd.DataFrame({"u": table.users[order], "i": table.items[order]})
    first = ~pairs.duplicated(keep="first").to_numpy()
    n_dup = int((~first).sum())
    if n_dup == 0:
        return table
    msg = f"dropped {n_dup} repeated (user, item) pair(s), keeping the earliest of each"
    logger.warning(msg)
    warnings.warn(msg, DataWarning, stacklevel=2)
    keep = np.sort(order[first])
    return table.take(keep)


def kcore(users: np.ndarray, items: np.ndarray, user_k: int = 1, item_k: int = 1) -> np.ndarray:
    """Boolean mask of the interactions in the iterative ``(user_k, item_k)``-core.

    Removing a user can push an item below ``item_k`` and vice versa, so both filters repeat
    until a pass removes nothing.

    Args:
        users: ``(n,)`` user ids of any hashable dtype (codes are taken internally).
        items: ``(n,)`` item ids, likewise.
        user_k: minimum interactions per user (1 = no filter).
        item_k: minimum interactions per item (1 = no filter).

    Returns:
        ``(n,)`` bool mask.

    >>> kcore(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 0]), user_k=2, item_k=2).tolist()
    [True, True, True, True, False]
    """
    if user_k < 1 or item_k < 1:
        raise ConfigError(f"kcore: user_k and item_k must be >= 1, got {user_k}, {item_k}")
    _, u = np.unique(users, return_inverse=True)
    _, i = np.unique(items, return_inverse=True)
    keep = np.ones(len(u), dtype=bool)
    rounds = 0
    while True:
        rounds += 1
        u_deg = np.bincount(u[keep], minlength=u.max(initial=-1) + 1)
        i_deg = np.bincount(i[keep], minlength=i.max(initial=-1) + 1)
        new_keep = keep & (u_deg[u] >= user_k) & (i_deg[i] >= item_k)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    logger.debug(
        "k-core (%d, %d): %d rounds, %d of %d kept", user_k, item_k, rounds, keep.sum(), len(keep)
    )
    return keep


# ----------------------------------------------------------------------------------- re-indexing
def _sorted_unique(ids: np.ndarray) -> np.ndarray:
    """Unique ids, numerically sorted when all are integers, lexicographically otherwise."""
    uniq = np.unique(ids)
    if len(uniq) and all(_INT_RE.match(v) for v in uniq):
        uniq = uniq[np.argsort(uniq.astype(np.int64), kind="stable")]
    return uniq


def reindex(ids: np.ndarray, vocabulary: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous codes ``0..K-1`` for ``ids`` and the original id of each code.

    Args:
        ids: ``(n,)`` original ids (strings).
        vocabulary: the original ids in code order; default the sorted unique ``ids``
            (numeric order when every id is an integer: ``"2" < "10"``).

    Returns:
        ``codes`` int64 ``(n,)`` and ``vocabulary`` ``(K,)`` with ``vocabulary[codes] == ids``.

    >>> codes, vocab = reindex(np.array(["10", "2", "10"]))
    >>> codes.tolist(), vocab.tolist()
    ([1, 0, 1], ['2', '10'])
    """
    vocab = _sorted_unique(ids) if vocabulary is None else np.asarray(vocabulary)
    index = pd.Index(vocab)
    codes = index.get_indexer(ids)
    if (codes < 0).any():
        missing = np.unique(np.asarray(ids)[codes < 0])[:5].tolist()
        raise IdError(None, expected="ids present in the vocabulary", found=f"{missing}")
    return codes.astype(np.int64), vocab


# ---------------------------------------------------------------------------------------- split
def split_interactions(
    users: np.ndarray,
    rng: np.random.Generator,
    *,
    method: SplitMethod = "random",
    timestamp: np.ndarray | None = None,
    holdout: float = 0.2,
    small_user: int = 10,
) -> np.ndarray:
    """Per-user ``x_label`` (0 train, 1 valid, 2 test) as MMRec's data preparation assigns it.

    ``"random"``: rows are shuffled with ``rng`` and grouped by user; a user with
    ``n < small_user`` interactions gets ``[0] * (n - 2) + [1, 2]``, otherwise
    ``v = int(holdout * n)``, ``train = n - v``, ``valid = v // 2``, ``test = v - v // 2``.
    ``"temporal"``: the same sizes with the rows in time order (ties by input order), so
    the latest interactions are valid/test. ``"leave_last"``: the last interaction is test,
    the one before valid, all earlier ones train.

    Users with fewer than 3 interactions cannot give one row to each split: all their rows
    stay in training (a :class:`DataWarning` gives the count; a k-core with ``user_k >= 3``
    avoids them).

    Args:
        users: ``(n,)`` int64 user codes.
        rng: the generator used for ``"random"`` (unused otherwise).
        method: ``"random"``, ``"temporal"`` or ``"leave_last"``.
        timestamp: ``(n,)`` required for ``"temporal"`` and ``"leave_last"``.
        holdout: fraction held out for valid + test when ``n >= small_user``.
        small_user: users below this count get exactly one valid and one test row.

    Returns:
        ``(n,)`` int64 x_label aligned with the input rows.

    >>> x = split_interactions(np.zeros(10, dtype=np.int64), np.random.default_rng(0))
    >>> np.bincount(x).tolist()  # n = 10: int(0.2 * 10) = 2 held out, 1 valid + 1 test
    [8, 1, 1]
    """
    users = np.asarray(users, dtype=np.int64)
    n = len(users)
    if method not in ("random", "temporal", "leave_last"):
        raise ConfigError(
            "split_interactions: method must be 'random', 'temporal' or 'leave_last', "
            f"got {method!r}"
        )
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"split_interactions: holdout must be in (0, 1), got {holdout}")
    if method == "random":
        perm = rng.permutation(n)
        order = perm[np.argsort(users[perm], kind="stable")]
    else:
        if timestamp is None:
            raise ConfigError(f"split_interactions: method {method!r} needs timestamps")
        order = np.lexsort((np.arange(n), np.asarray(timestamp), users))
    sorted_users = users[order]
    counts = np.bincount(sorted_users, minlength=users.max(initial=-1) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(n) - starts[sorted_users]  # position within the user's group
    n_u = counts[sorted_users]
    if method == "leave_last":
        n_val = np.ones(n, dtype=np.int64)
        n_test = np.ones(n, dtype=np.int64)
    else:
        held = (holdout * n_u).astype(np.int64)
        small = n_u < small_user
        n_val = np.where(small, 1, held // 2)
        n_test = np.where(small, 1, held - held // 2)
    too_few = n_u < 3
    n_val = np.where(too_few, 0, n_val)
    n_test = np.where(too_few, 0, n_test)
    n_train = n_u - n_val - n_test
    label_sorted = np.where(rank < n_train, 0, np.where(rank < n_train + n_val, 1, 2))
    if too_few.any():
        n_users = int((counts[(counts > 0)] < 3).sum())
        msg = f"{n_users} user(s) with fewer than 3 interactions keep all of them in training"
        logger.warning(msg)
        warnings.warn(msg, DataWarning, stacklevel=2)
    x_label = np.empty(n, dtype=np.int64)
    x_label[order] = label_sorted
    return x_label


# ----------------------------------------------------------------------------------- pipeline
@dataclass(frozen=True)
class BuiltInteractions:
    """The result of :func:`build_interactions`, rows grouped by user.

    Attributes:
        users, items (np.ndarray): int64 ``(n,)`` contiguous codes.
        rating (np.ndarray): ``(n,)`` ratings as read.
        timestamp (np.ndarray): int64 ``(n,)`` unix seconds.
        x_label (np.ndarray): int64 ``(n,)`` 0/1/2.
        user_ids, item_ids (np.ndarray): original ids; ``item_ids[c]`` is the id of code ``c``.
        stats (dict): counts after each step, for the log and the dataset card.
    """

    users: np.ndarray
    items: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    x_label: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    stats: dict = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        """:math:`U`."""
        return int(len(self.user_ids))

    @property
    def num_items(self) -> int:
        """:math:`I`."""
        return int(len(self.item_ids))


def build_interactions(
    table: InteractionTable,
    rng: np.random.Generator,
    *,
    rating_threshold: float | None = None,
    user_k: int = 1,
    item_k: int = 1,
    split: SplitMethod = "random",
    holdout: float = 0.2,
) -> BuiltInteractions:
    """Threshold, de-duplicate, k-core, re-index and split a table of interactions.

    Args:
        table: from :func:`read_interactions`.
        rng: drives the random split (pass ``np.random.default_rng(seed)``).
        rating_threshold: keep ``rating >= threshold``; ``None`` keeps every row.
        user_k: iterative k-core threshold for users.
        item_k: iterative k-core threshold for items.
        split: ``"random"`` (MMRec), ``"temporal"`` or ``"leave_last"``.
        holdout: valid + test fraction for users with >= 10 interactions.

    Returns:
        A :class:`BuiltInteractions` with rows sorted by (user, x_label, input order).

    Raises:
        DataError: nothing is left after filtering.
    """
    stats: dict[str, int] = {"read": len(table), "bad_rows": table.num_bad}
    table = apply_rating_threshold(table, rating_threshold)
    stats["after_threshold"] = len(table)
    table = drop_duplicate_pairs(table)
    stats["after_dedup"] = len(table)
    keep = kcore(table.users, table.items, user_k, item_k)
    table = table.take(keep)
    stats["after_kcore"] = len(table)
    if len(table) == 0:
        raise DataError(
            table.path,
            expected="interactions left after filtering",
            found="none",
            hint=f"lower rating_threshold or user_k={user_k}, item_k={item_k}",
        )
    users, user_ids = reindex(table.users)
    items, item_ids = reindex(table.items)
    x_label = split_interactions(
        users, rng, method=split, timestamp=table.timestamp, holdout=holdout
    )
    order = np.lexsort((table.lines, x_label, users))
    counts = np.bincount(x_label, minlength=3)
    stats.update(
        users=len(user_ids),
        items=len(item_ids),
        train=int(counts[0]),
        valid=int(counts[1]),
        test=int(counts[2]),
    )
    logger.info(
        "built %d users, %d items, %d interactions (train/valid/test %d/%d/%d)",
        len(user_ids),
        len(item_ids),
        len(users),
        counts[0],
        counts[1],
        counts[2],
    )
    return BuiltInteractions(
        users=users[order],
        items=items[order],
        rating=table.rating[order],
        timestamp=table.timestamp[order],
        x_label=x_label[order],
        user_ids=user_ids,
        item_ids=item_ids,
        stats=stats,
    )


def _write_mapping(path: Path, original_name: str, new_name: str, ids: np.ndarray) -> None:
    r"""Tab-separated ``<original_name>\t<new_name>`` mapping, one row per new id."""
    df = pd.DataFrame({original_name: ids, new_name: np.arange(len(ids), dtype=np.int64)})
    with atomic_write(path, "w") as fh:
        df.to_csv(fh, sep="\t", index=False)


def read_id_mapping(path: str | Path) -> np.ndarray:
    """Original ids (str) in new-id order from a ``u_id_mapping.csv``/``i_id_mapping.csv``.

    Raises:
        IdError: the new ids are not exactly ``0..K-1`` in order (names the first bad line).
    """
    path = Path(path)
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if df.shape[1] != 2:
        raise SchemaError(
            path, line=1, expected="two tab-separated columns", found=f"{df.shape[1]} column(s)"
        )
    new = pd.to_numeric(df.iloc[:, 1], errors="coerce").to_numpy()
    bad = np.flatnonzero(new != np.arange(len(df)))
    if len(bad):
        raise IdError(
            path,
            line=int(bad[0]) + 2,
            column=df.columns[1],
            expected=f"{bad[0]} (ids 0..{len(df) - 1} in order)",
            found=str(df.iloc[bad[0], 1]),
        )
    return df.iloc[:, 0].to_numpy(dtype=str)


def write_dataset(
    directory: str | Path,
    name: str,
    built: BuiltInteractions,
    features: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write ``<name>.inter``, ``u_id_mapping.csv``, ``i_id_mapping.csv`` and feature files.

    Args:
        directory: output folder (created).
        name: dataset name, the ``.inter`` stem.
        built: from :func:`build_interactions`.
        features: ``{modality: (I, d) array}``, each saved as ``<modality>_feat.npy`` float32.

    Raises:
        FeatureError: a feature matrix has the wrong number of rows or non-finite values.
    """
    from lirdrec.errors import FeatureError

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for modality, arr in (features or {}).items():
        target = directory / f"{modality}_feat.npy"
        if arr.ndim != 2 or arr.shape[0] != built.num_items:
            raise FeatureError(
                target, expected=f"shape ({built.num_items}, d)", found=f"{arr.shape}"
            )
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            raise FeatureError(
                target,
                line=f"row {int(np.flatnonzero(~finite)[0])}",
                expected="finite values",
                found="NaN/inf",
            )
    rating = built.rating
    if np.all(rating == np.round(rating)):
        rating = rating.astype(np.int64)
    write_inter(
        directory / f"{name}.inter",
        built.users,
        built.items,
        built.x_label,
        rating=rating,
        timestamp=built.timestamp,
    )
    _write_mapping(directory / "u_id_mapping.csv", "user_id", "userID", built.user_ids)
    _write_mapping(directory / "i_id_mapping.csv", "item_id", "itemID", built.item_ids)
    for modality, arr in (features or {}).items():
        write_features(directory / f"{modality}_feat.npy", np.asarray(arr, dtype=np.float32))
    logger.info("wrote %s/%s.inter and %d feature file(s)", directory, name, len(features or {}))
    return directory
