"""NoteLLM-2 inputs of a dataset: raw titles and texts (data.raw_items) + cached vision tokens."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from lirdrec.data.raw_items import RawItems
from lirdrec.errors import ConfigError

from .model import ItemInputs
from .vision import VisionTower

logger = logging.getLogger(__name__)

__all__ = ["item_inputs"]


def item_inputs(
    raw: RawItems,
    *,
    text_template: str | None = None,
    text_fields: Sequence[str] | None = None,
    vision: str | VisionTower | None = "efficientnet-lite0",
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    show_progress: bool | None = None,
) -> tuple[ItemInputs, np.ndarray]:
    """:class:`ItemInputs` of every item: title, text and the frozen vision tokens.

    Args:
        raw: from :func:`lirdrec.data.raw_items.read_raw_items`.
        text_template: the content, e.g. ``"{Summary}"`` (see
            :func:`lirdrec.features.text.join_fields`); or ``text_fields``.
        text_fields: fields joined by a space.
        vision: a backend name (or a :class:`VisionTower`); ``None`` for text-only models.
        cache_dir: vision token cache (computed once per image set and backend).
        batch_size: images per vision forward pass.
        show_progress: progress bars.

    Returns:
        ``(items, has_image (I,) bool)``; items without an image get the mean vision tokens
        (a :class:`~lirdrec.errors.DataWarning` counts them).
    """
    from lirdrec.features.text import join_fields

    if (text_template is None) == (text_fields is None):
        raise ConfigError("item_inputs: give exactly one of text_template or text_fields")
    texts = join_fields(raw.records, text_fields, template=text_template)
    tokens = None
    present = np.zeros(len(raw), dtype=bool)
    if vision is not None:
        tower = vision if isinstance(vision, VisionTower) else VisionTower(vision)
        tokens, present = tower.encode(
            raw.image_paths,
            batch_size=batch_size,
            cache=cache_dir,
            names=[f"{i} ({t})" for i, t in zip(raw.raw_ids, raw.titles)],
            show_progress=show_progress,
        )
    return ItemInputs(list(raw.titles), texts, tokens), present
