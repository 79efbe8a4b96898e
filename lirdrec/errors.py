"""Exception tree of lirdrec.

Every error a user can act on is a :class:`LirdrecError`; the CLI prints its one-line message and
exits 1. Subclasses also derive from the matching builtin so ``except ValueError`` keeps working.

.. code-block:: text

    LirdrecError(Exception)
    ├── DataError(LirdrecError, ValueError)       path, line, column, expected, found, hint
    │   ├── SchemaError     missing / renamed columns, bad header
    │   ├── IdError         non-integer, negative, gaps, id >= feature rows
    │   ├── FeatureError    wrong ndim/dtype, NaN/inf, rows != items, pickled .npy
    │   └── SplitError      x_label outside {0, 1, 2}, empty train split
    ├── ConfigError(LirdrecError, ValueError)     unknown key, bad value, unknown model name
    ├── TrainingError(LirdrecError, RuntimeError) non-finite loss, diverged
    │   └── DistributedError  another process of a multi-process run stopped or timed out
    └── CheckpointError(LirdrecError)             resume into a different config or data
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = [
    "LirdrecError",
    "DataError",
    "SchemaError",
    "IdError",
    "FeatureError",
    "SplitError",
    "ConfigError",
    "TrainingError",
    "DistributedError",
    "CheckpointError",
    "DataWarning",
    "format_lines",
]


class LirdrecError(Exception):
    """Base class of every error lirdrec raises on purpose."""


class DataError(LirdrecError, ValueError):
    """A data file is not what lirdrec expects.

    The message is one line: ``<path>, line <n>, column <c>: expected <e>, found <f> (<hint>)``;
    every part but the path is optional.
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        line: int | str | None = None,
        column: str | None = None,
        expected: str | None = None,
        found: str | None = None,
        hint: str | None = None,
        message: str | None = None,
    ) -> None:
        self.path = None if path is None else Path(path)
        self.line = line
        self.column = column
        self.expected = expected
        self.found = found
        self.hint = hint
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(_short(self.path))
        if self.line is not None:
            where.append(f"line {self.line}" if not isinstance(self.line, str) else self.line)
        if self.column is not None:
            where.append(f"column {self.column}")
        what = []
        if self.message:
            what.append(self.message)
        if self.expected is not None:
            what.append(f"expected {self.expected}")
        if self.found is not None:
            what.append(f"found {self.found}")
        text = ", ".join(where)
        body = ", ".join(what)
        if text and body:
            text = f"{text}: {body}"
        else:
            text = text or body
        if self.hint:
            text += f" ({self.hint})"
        return text


class SchemaError(DataError):
    """Missing or renamed columns, bad header."""


class IdError(DataError):
    """Non-integer, negative, non-contiguous or out-of-range ids."""


class FeatureError(DataError):
    """A feature matrix has the wrong dtype, ndim, row count or non-finite values."""


class SplitError(DataError):
    """x_label outside {0, 1, 2} or an empty training split."""


class ConfigError(LirdrecError, ValueError):
    """Unknown config key, bad value, unknown model name."""


class TrainingError(LirdrecError, RuntimeError):
    """Training produced a non-finite loss or diverged."""


class DistributedError(TrainingError):
    """A multi-process run lost a process: it stopped, or did not answer within the timeout."""


class CheckpointError(LirdrecError):
    """A checkpoint does not fit the run it is resumed into."""


class DataWarning(UserWarning):
    """An automatic correction of the data (duplicates dropped, users excluded)."""


def _short(path: Path) -> str:
    """Last two components of a path: ``baby/baby.inter``."""
    parts = path.parts
    return str(Path(*parts[-2:])) if len(parts) >= 2 else str(path)


def format_lines(lines: Sequence[int], values: Sequence[object] | None = None,
                 limit: int = 5) -> str:
    """Render the first ``limit`` offending lines and a count of the rest.

    >>> format_lines([3, 9, 10, 11, 12, 40, 41])
    'lines 3, 9, 10, 11, 12 ... and 2 more'
    """
    lines = list(lines)
    shown = lines[:limit]
    if values is not None:
        vals = list(values)[:limit]
        body = ", ".join(f"{ln} ({v})" for ln, v in zip(shown, vals))
    else:
        body = ", ".join(str(ln) for ln in shown)
    text = ("line " if len(lines) == 1 else "lines ") + body
    if len(lines) > limit:
        text += f" ... and {len(lines) - limit} more"
    return text
