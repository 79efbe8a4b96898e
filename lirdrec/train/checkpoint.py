"""Atomic checkpoints that a resumed run continues from bit-identically, and that cannot run code.

A checkpoint is one ``torch.save`` file holding only what ``torch.load(weights_only=True)``
accepts: tensors, Python numbers, strings, ``None`` and dicts / lists / tuples of them. Two kinds
of values that training state naturally contains are encoded on the way in and decoded on the way
out, so callers keep handing over plain state:

- numpy arrays (numpy's RNG state, a callback's per-item arrays) become
  ``{"__ndarray__": tensor, "dtype": "uint32"}``; object arrays are refused;
- numpy scalars become Python numbers, :class:`pathlib.Path` becomes ``str``.

Anything else (a class instance, a function) is refused at save time with the key path that holds
it, so an unloadable checkpoint is never written. Loading never unpickles a global: a file that
needs one (a crafted file, or a checkpoint from lirdrec 0.1 that stored numpy arrays as pickles)
is refused with one line saying why and what to do.
"""

from __future__ import annotations

import io
import re
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

from lirdrec.errors import CheckpointError
from lirdrec.utils.io import atomic_write

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "encode_state", "decode_state"]

FORMAT = "lirdrec-checkpoint/2"
_ND = "__ndarray__"


def encode_state(obj: Any, where: str = "state") -> Any:
    """Map ``obj`` onto the types ``torch.load(weights_only=True)`` reads back.

    >>> encode_state({"rng": np.arange(3, dtype=np.uint32), "n": np.int64(2)})["n"]
    2

    Raises:
        CheckpointError: ``obj`` holds a value with no safe encoding (named by its key path).
    """
    if isinstance(obj, np.generic):  # before the builtins: np.float64 is a float subclass
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor, torch.Size)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise CheckpointError(f"{where}: object arrays cannot be checkpointed safely")
        return {_ND: torch.from_numpy(_storable(obj)), "dtype": obj.dtype.str}
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, dict):
        return {k: encode_state(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [encode_state(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise CheckpointError(f"{where}: a {type(obj).__name__} cannot be checkpointed safely; "
                          "state must be tensors, numbers, strings and dicts/lists of them")


def decode_state(obj: Any) -> Any:
    """Inverse of :func:`encode_state` (numpy arrays come back with their dtype)."""
    if isinstance(obj, dict):
        if set(obj) == {_ND, "dtype"}:
            arr, dtype = obj[_ND].numpy(), np.dtype(obj["dtype"])
            wide = dtype.kind == "u" and dtype.itemsize == 8
            return arr.view(dtype) if wide else arr.astype(dtype)
        return {k: decode_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(decode_state(v) for v in obj)
    return obj


def _storable(arr: np.ndarray) -> np.ndarray:
    """A native-order copy torch can hold: uint32 widened to int64, uint64 bit-cast to int64."""
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8:
        return arr.view(np.int64)
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 4:
        return arr.astype(np.int64)
    return arr


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Encode ``state`` safely, ``torch.save`` it to a temporary file, move it over ``path``."""
    payload = {"format": FORMAT, **encode_state(state)}
    buf = io.BytesIO()
    torch.save(payload, buf)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def load_checkpoint(path: str | Path, data: bytes | None = None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, never running code from the file.

    ``data``: the file's bytes, read elsewhere (a multi-process run's rank 0 reads the file and
    sends it to the other ranks); ``path`` then only names it in messages.

    Raises:
        CheckpointError: no file; a file that would need pickled objects to load (crafted, or a
            lirdrec 0.1 checkpoint); a corrupt or foreign file.
    """
    path = Path(path)
    if data is None and not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        source = path if data is None else io.BytesIO(data)
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError for refused globals; others: corrupt
        what = _unsafe_global(str(exc)) if "Weights only load failed" in str(exc) else None
        if what is None:  # corrupt, foreign, or an opcode the safe loader lacks: nothing ran
            # never echo torch's advice to retry unsafely
            why = ("corrupt, or a pickle the safe loader does not read"
                   if "Weights only" in str(exc) else _first_line(exc))
            raise CheckpointError(f"{path}: not a lirdrec checkpoint ({why})") from None
        if what.startswith("numpy"):
            raise CheckpointError(
                f"{path}: written by lirdrec 0.1 in a format that needs pickle to read ({what}); "
                "it is not opened. Re-create it by training again into a new run directory with "
                f"the settings in {path.parent / 'config.yaml'}"
            ) from None
        raise CheckpointError(
            f"{path}: refused, the file holds pickled objects ({what}) that would run code when "
            "loaded; lirdrec checkpoints hold tensors and numbers only"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a lirdrec checkpoint (no '{FORMAT}' format mark)")
    state = decode_state(state)
    del state["format"]
    return state


def _unsafe_global(message: str) -> str | None:
    """The global torch's weights-only unpickler refused, from its message (None if none)."""
    found = (re.search(r"GLOBAL ([\w.]+)", message)
             or re.search(r"Unsupported global: ([\w.]+)", message))
    return found.group(1) if found else None


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
