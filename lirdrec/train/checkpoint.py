"""Atomic checkpoints holding everything a resumed run needs to continue bit-identically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from lirdrec.errors import CheckpointError
from lirdrec.utils.io import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, then ``os.replace`` it over ``path``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt or foreign file
        raise CheckpointError(f"{path}: not a lirdrec checkpoint ({exc})") from None
