"""The one logging set-up of the command line (the library itself never adds handlers)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

__all__ = ["setup_logging"]


def setup_logging(verbosity: int = 0, log_file: Path | None = None) -> None:
    """Console handler (INFO, or DEBUG with -v; WARNING with -q) and an optional run log file."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    root = logging.getLogger("lirdrec")
    root.setLevel(min(level, logging.INFO) if log_file else level)
    if not any(getattr(h, "_lirdrec", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        h.setLevel(level)
        h._lirdrec = True  # type: ignore[attr-defined]
        root.addHandler(h)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file)
        fh.setLevel(logging.INFO)
        fh.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(fh)
