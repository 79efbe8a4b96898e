r"""Item-to-item (I2I) Recall, as NoteLLM / NoteLLM-2's ``eval_recall.py``.

1. Pairs are read in order; a pair is kept only when both items are embedded and neither was
   already a query or a target of a kept pair (greedy; each item is in at most one kept pair).
2. The candidate pool is every embedded item minus every kept query, in id order.
3. Scores are dot products of L2-normalised vectors; the rank of the query's partner is the number
   of candidates scoring strictly higher; Recall@K = share of queries with rank < K.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from lirdrec.errors import ConfigError

__all__ = ["filter_pairs", "partner_ranks", "i2i_recall", "I2I_KS"]

I2I_KS = (10, 20, 50, 100)


def filter_pairs(pairs: np.ndarray, embedded: np.ndarray | None = None) -> np.ndarray:
    """The greedily kept pairs ``(Q, 2)`` (query, target), in input order.

    Args:
        pairs: ``(M, 2)`` int64 item ids.
        embedded: ``(I,)`` bool, items that have a vector (default: all).

    >>> filter_pairs(np.array([[0, 1], [2, 3], [1, 4], [3, 5], [6, 0]])).tolist()
    [[0, 1], [2, 3]]
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if embedded is not None:
        emb = np.asarray(embedded, dtype=bool)
        inside = (pairs >= 0).all(axis=1) & (pairs < len(emb)).all(axis=1)
        ok = np.zeros(len(pairs), dtype=bool)
        ok[inside] = emb[pairs[inside, 0]] & emb[pairs[inside, 1]]
        pairs = pairs[ok]
    used: set[int] = set()
    kept = []
    # sequential by definition (a pair's fate depends on the pairs kept before it); O(M)
    for a, b in pairs.tolist():
        if a not in used and b not in used and a != b:
            kept.append((a, b))
            used.update((a, b))
    return np.asarray(kept, dtype=np.int64).reshape(-1, 2)


def partner_ranks(
    embeddings: np.ndarray | torch.Tensor,
    kept: np.ndarray,
    embedded: np.ndarray | None = None,
    *,
    normalize: bool = True,
    chunk_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank (0-based) of each kept query's partner in the candidate pool.

    Returns:
        ``(ranks (Q,), pool (C,) item ids)``.
    """
    emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    n = emb.shape[0]
    if normalize:
        emb = torch.nn.functional.normalize(emb, dim=1)
    mask = np.ones(n, dtype=bool) if embedded is None else np.asarray(embedded, dtype=bool).copy()
    mask[kept[:, 0]] = False
    pool = np.flatnonzero(mask)
    docs = emb[torch.from_numpy(pool)]  # (C, d)
    ranks = np.zeros(len(kept), dtype=np.int64)
    # the partner's column in the pool (targets are never queries), so its score comes from the
    # same matrix product as its competitors' (no rounding difference decides a tie)
    col = torch.from_numpy(np.searchsorted(pool, kept[:, 1]))
    for s in range(0, len(kept), chunk_size):
        q = kept[s : s + chunk_size]
        scores = emb[torch.from_numpy(q[:, 0])] @ docs.T  # (B, C)
        target = scores.gather(1, col[s : s + len(q), None])  # (B, 1)
        ranks[s : s + len(q)] = (scores > target).sum(dim=1).numpy()
    return ranks, pool


def i2i_recall(
    embeddings: np.ndarray | torch.Tensor,
    pairs: np.ndarray,
    ks: Sequence[int] = I2I_KS,
    *,
    embedded: np.ndarray | None = None,
    normalize: bool = True,
) -> dict[str, float]:
    """Recall@K of the I2I protocol: ``{"Recall@10": ..., ..., "queries": Q}``.

    Args:
        embeddings: ``(I, d)`` item vectors (row = item id).
        pairs: ``(M, 2)`` (query, target) pairs before filtering.
        ks: cut-offs.
        embedded: ``(I,)`` bool, items with a vector (default: all).
        normalize: L2-normalise the vectors first (the reference's vectors are normalised).

    >>> e = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> i2i_recall(e, np.array([[0, 1], [2, 3]]), ks=(1,))
    {'Recall@1': 1.0, 'queries': 2}
    """
    emb = np.asarray(embeddings)
    if emb.ndim != 2:
        raise ConfigError(f"i2i_recall: embeddings must be (I, d), got {emb.shape}")
    kept = filter_pairs(pairs, embedded if embedded is not None else np.ones(len(emb), bool))
    if len(kept) == 0:
        raise ConfigError("i2i_recall: no pair is left after filtering")
    ranks, _ = partner_ranks(emb, kept, embedded, normalize=normalize)
    out: dict[str, float] = {f"Recall@{k}": float((ranks < k).mean()) for k in ks}
    out["queries"] = int(len(kept))
    return out
