"""On-disk cache of encoder outputs, keyed by a hash of the inputs, the model and the settings.

Re-running ``lirdrec prepare`` with the same texts, images, model and settings reads the matrix
back instead of encoding again; change any input byte, the model name or a setting (batch size
excluded, it does not change the output) and the key changes. Entries are written atomically
(temporary file + ``os.replace``), so an interrupted run never leaves a truncated entry.

Layout: ``<dir>/<kind>-<key>.npy`` for arrays, ``<dir>/<kind>-<key>.json`` for lists of strings
(captions).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lirdrec.utils.io import atomic_write, hash_inputs

logger = logging.getLogger(__name__)

__all__ = ["FeatureCache", "file_digest", "as_cache"]


def file_digest(path: str | Path | None) -> str:
    """SHA-256 (hex, 16 chars) of a file's bytes; ``"missing"`` when absent or ``None``."""
    if path is None:
        return "missing"
    path = Path(path)
    if not path.is_file():
        return "missing"
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class FeatureCache:
    """A folder of cached encoder outputs.

    Args:
        directory (str | Path): where entries live (created on first write).

    Example:
        >>> import tempfile
        >>> cache = FeatureCache(tempfile.mkdtemp())
        >>> key = cache.key("text", "model-x", {"pool": "mean"}, ["a", "b"])
        >>> cache.get_array("text", key) is None
        True
        >>> _ = cache.put_array("text", key, np.ones((2, 3), dtype=np.float32))
        >>> cache.get_array("text", key).shape
        (2, 3)
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r}, hits={self.hits}, misses={self.misses})"

    @staticmethod
    def key(kind: str, model: str, settings: dict[str, Any], inputs: Sequence[Any]) -> str:
        """Hash of the kind, the model id, the settings (JSON) and every input, in order."""
        return hash_inputs(kind, model, settings, list(inputs))

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.directory / f"{kind}-{key}{suffix}"

    def get_array(self, kind: str, key: str) -> np.ndarray | None:
        """The cached array, or ``None`` on a miss."""
        path = self._path(kind, key, ".npy")
        if not path.is_file():
            self.misses += 1
            return None
        self.hits += 1
        logger.info("cache hit: %s", path)
        return np.load(path, allow_pickle=False)

    def put_array(self, kind: str, key: str, array: np.ndarray) -> Path:
        """Store ``array`` atomically and return its path."""
        path = self._path(kind, key, ".npy")
        with atomic_write(path, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)
        return path

    def get_texts(self, kind: str, key: str) -> list[str] | None:
        """The cached list of strings, or ``None`` on a miss."""
        path = self._path(kind, key, ".json")
        if not path.is_file():
            self.misses += 1
            return None
        self.hits += 1
        logger.info("cache hit: %s", path)
        return list(json.loads(path.read_text(encoding="utf-8")))

    def put_texts(self, kind: str, key: str, texts: Sequence[str]) -> Path:
        """Store a list of strings atomically and return its path."""
        path = self._path(kind, key, ".json")
        with atomic_write(path, "w") as fh:
            json.dump(list(texts), fh, ensure_ascii=False)
        return path

    def cached_chunks(self, kind: str, key: str, inputs: Sequence[Any],
                      part_key: Callable[[list], str], compute: Callable[[list], np.ndarray],
                      chunk_size: int = 512, show_progress: bool | None = None) -> np.ndarray:
        """``get_array(kind, key)`` or, on a miss, ``compute`` over chunks of ``inputs``, each
        chunk cached on its own, so an interrupted encoding resumes at the first chunk not yet
        done; one progress bar over all items shows the rate and the time left.

        The whole result is then stored under ``key`` and the chunk files are removed.
        """
        from tqdm.auto import tqdm

        from lirdrec.utils.logging import progress_enabled

        hit = self.get_array(kind, key)
        if hit is not None:
            return hit
        inputs = list(inputs)
        parts: list[np.ndarray] = []
        part_paths: list[Path] = []
        resumed = 0
        with tqdm(total=len(inputs), unit="item", desc=kind, dynamic_ncols=True,
                  disable=not progress_enabled(show_progress)) as bar:
            for start in range(0, len(inputs), chunk_size):
                chunk = inputs[start:start + chunk_size]
                path = self._path(f"{kind}-part", part_key(chunk), ".npy")
                if path.is_file():
                    arr = np.load(path, allow_pickle=False)
                    resumed += len(chunk)
                else:
                    arr = compute(chunk)
                    with atomic_write(path, "wb") as fh:
                        np.save(fh, np.asarray(arr), allow_pickle=False)
                parts.append(arr)
                part_paths.append(path)
                bar.update(len(chunk))
        if resumed:
            logger.info("%s: %d of %d items taken from an interrupted earlier run", kind, resumed,
                        len(inputs))
        value = np.concatenate(parts) if parts else compute([])
        self.put_array(kind, key, value)
        for path in part_paths:
            path.unlink(missing_ok=True)
        return value

    def cached_array(self, kind: str, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """``get_array`` or, on a miss, ``compute()`` then ``put_array``."""
        hit = self.get_array(kind, key)
        if hit is not None:
            return hit
        value = compute()
        self.put_array(kind, key, value)
        return value


def as_cache(cache: FeatureCache | str | Path | None) -> FeatureCache | None:
    """Accept a :class:`FeatureCache`, a folder path or ``None`` (no caching)."""
    if cache is None or isinstance(cache, FeatureCache):
        return cache
    return FeatureCache(cache)
