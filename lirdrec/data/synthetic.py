"""A small SYNTHETIC multimodal dataset with planted structure (the ``lirdrec demo`` default).

Items belong to latent topics; each user prefers a few topics; an image-like and a text-like
feature matrix carry the item's topic (a topic centroid through a random linear map) plus noise.
Popularity inside a topic is Zipf-like, and a few "cold" items only ever appear in validation or
test, so a model that reads features can rank items an ID-only model has never seen. Nothing here
is real data; every generated name says ``synthetic``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lirdrec.data.dataset import Dataset, Split
from lirdrec.data.io import write_mmrec

logger = logging.getLogger(__name__)

__all__ = ["generate", "generate_arrays", "write_synthetic"]


def generate_arrays(
    num_users: int = 600,
    num_items: int = 900,
    num_topics: int = 12,
    topics_per_user: int = 2,
    interactions_per_user: tuple[int, int] = (8, 25),
    cold_fraction: float = 0.1,
    image_dim: int = 64,
    text_dim: int = 96,
    noise: float = 0.3,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Arrays of a synthetic dataset: ``users, items, x_label, item_topic, image, text``.

    The split is MMRec's per-user random split (users with < 10 interactions: n-2/1/1, else
    80/10/10); interactions with cold items are moved to valid/test.
    """
    rng = np.random.default_rng(seed)
    item_topic = rng.integers(0, num_topics, num_items)
    # popularity inside a topic: Zipf-like weights over a random order
    pop = 1.0 / (1.0 + rng.permutation(num_items) % (num_items // num_topics + 1)) ** 0.8
    cold = rng.random(num_items) < cold_fraction
    user_topics = np.stack([rng.choice(num_topics, topics_per_user, replace=False)
                            for _ in range(num_users)])
    lo, hi = interactions_per_user
    counts = rng.integers(lo, hi + 1, num_users)
    users, items = [], []
    topic_items = [np.flatnonzero(item_topic == t) for t in range(num_topics)]
    for u in range(num_users):  # data generation, not a training hot path
        cand = np.concatenate([topic_items[t] for t in user_topics[u]])
        w = pop[cand] / pop[cand].sum()
        n = min(counts[u], len(cand))
        chosen = rng.choice(cand, size=n, replace=False, p=w)
        users.append(np.full(n, u))
        items.append(chosen)
    users = np.concatenate(users)
    items = np.concatenate(items)
    unused = np.setdiff1d(np.arange(num_items), items)  # every id must occur (contiguous ids)
    if len(unused):
        fans = [np.flatnonzero((user_topics == item_topic[i]).any(1)) for i in unused]
        extra_u = np.array([rng.choice(f) if len(f) else rng.integers(num_users) for f in fans])
        users = np.concatenate([users, extra_u])
        items = np.concatenate([items, unused])
    x_label = _mmrec_split(users, rng)
    is_cold = cold[items]
    x_label[is_cold] = np.where(rng.random(int(is_cold.sum())) < 0.5, 1, 2)
    # every non-cold item must appear in training to keep ids meaningful; unused items are fine
    centroids = rng.normal(size=(num_topics, 16))
    z = centroids[item_topic] + noise * rng.normal(size=(num_items, 16))
    image = (np.tanh(z @ rng.normal(size=(16, image_dim)))
             + 0.3 * rng.normal(size=(num_items, image_dim)))
    text = z @ rng.normal(size=(16, text_dim)) + 0.5 * rng.normal(size=(num_items, text_dim))
    return {"users": users, "items": items, "x_label": x_label, "item_topic": item_topic,
            "cold": np.flatnonzero(cold), "image": image.astype(np.float32),
            "text": text.astype(np.float32)}


def _mmrec_split(users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-user random split as MMRec's data preparation: n < 10: n-2/1/1, else 80/10/10."""
    order = np.lexsort((rng.random(len(users)), users))  # random order within each user
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, sizes)  # position within the user
    n = np.repeat(sizes, sizes)
    n_eval = np.where(n < 10, 1, np.floor(n * 0.1).astype(np.int64))
    label_sorted = np.zeros(len(users), dtype=np.int64)
    label_sorted[rank >= n - 2 * n_eval] = 1
    label_sorted[rank >= n - n_eval] = 2
    label = np.empty_like(label_sorted)
    label[order] = label_sorted
    return label


def generate(seed: int = 0, **kwargs) -> Dataset:
    """A synthetic :class:`Dataset` in memory (see :func:`generate_arrays` for the arguments)."""
    a = generate_arrays(seed=seed, **kwargs)
    lab = a["x_label"]
    splits = [Split(a["users"][lab == k], a["items"][lab == k]) for k in (0, 1, 2)]
    return Dataset(name="synthetic", num_users=int(a["users"].max()) + 1,
                   num_items=len(a["item_topic"]),
                   train=splits[0], valid=splits[1], test=splits[2],
                   features={"image": torch.from_numpy(a["image"]),
                             "text": torch.from_numpy(a["text"])})


#: The function that turns item topics into real-encoder features; handed over by
#: :mod:`lirdrec.features.synthetic_media` when it is imported (``import lirdrec`` does), since a
#: data/ module never imports the features/ stage above it.
_MEDIA_ENCODER: Callable[..., dict[str, np.ndarray]] | None = None


def provide_media_encoder(fn: Callable[..., dict[str, np.ndarray]]) -> None:
    """Register ``fn(item_topic, rng)`` -> ``{"image": (I, d), "text": (I, d)}``."""
    global _MEDIA_ENCODER
    _MEDIA_ENCODER = fn


def write_synthetic(directory: str | Path, seed: int = 0, use_encoders: bool | None = None,
                    **kwargs) -> tuple[Path, str]:
    """Write the synthetic dataset in MMRec format to ``directory`` (``synthetic.inter``, features).

    With ``use_encoders`` (default: whenever pillow, sentence-transformers and the offline image
    model are installed), the image and text features are made by the real encoders from
    pillow-drawn images and template texts of each item's topic
    (:mod:`lirdrec.features.synthetic_media`); otherwise the numeric generator's matrices are used.

    Returns:
        ``(directory, how)`` where ``how`` is ``"encoders"`` or ``"numeric"``.
    """
    a = generate_arrays(seed=seed, **kwargs)
    feats = {"image": a["image"], "text": a["text"]}
    how = "numeric"
    if use_encoders is not False:
        try:
            if _MEDIA_ENCODER is None:
                raise ImportError("lirdrec.features.synthetic_media is not imported")
            feats = _MEDIA_ENCODER(a["item_topic"], np.random.default_rng(seed))
            how = "encoders"
        except (ImportError, OSError) as exc:
            if use_encoders:
                raise
            logger.info("real encoders unavailable (%s); using numeric synthetic features", exc)
    write_mmrec(directory, "synthetic", a["users"], a["items"], a["x_label"], feats)
    return Path(directory), how
