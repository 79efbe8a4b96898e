r"""Related-item pairs from co-occurrence in users' training interactions (I2I protocol).

NoteLLM-2 and NoteLLM learn from pairs of related items. Here two items are related when the same
users interacted with both; each user counts :math:`1/N_u` (:math:`N_u` = the user's number of
items), so heavy users do not dominate:

.. math::
    s(a, b) = \sum_{u:\, a, b \in \mathcal{I}_u} \frac{1}{N_u}
    = \big(\mathbf{X}^{\top}\mathbf{D}^{-1}\mathbf{X}\big)_{ab},\qquad a \ne b,

with :math:`\mathbf{X}` the binary :math:`U \times I` training matrix and
:math:`\mathbf{D} = \mathrm{diag}(N_u)`. With timestamps and a ``window``, only interactions of
one user at most ``window`` apart co-occur (each such pair of interactions adds :math:`1/N_u`).
Each item keeps its ``top_k`` partners (ties: smaller item id first); unordered duplicates are
dropped. :func:`split_pairs` shuffles (seeded) and splits them into train / valid / test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lirdrec.errors import ConfigError

__all__ = [
    "cooccurrence_scores",
    "top_k_pairs",
    "cooccurrence_pairs",
    "split_pairs",
    "dataset_pairs",
    "PairSplit",
]


def cooccurrence_scores(
    users: np.ndarray,
    items: np.ndarray,
    num_items: int,
    *,
    timestamps: np.ndarray | None = None,
    window: float | None = None,
) -> sp.csr_matrix:
    r"""The symmetric :math:`I \times I` score matrix :math:`s(a, b)` (zero diagonal).

    Args:
        users: ``(N,)`` int64 user of each interaction.
        items: ``(N,)`` int64 item of each interaction (duplicate pairs count once).
        num_items: :math:`I`.
        timestamps: ``(N,)`` times, needed for ``window``.
        window: co-occurrence only within this time difference (same unit as ``timestamps``).

    >>> s = cooccurrence_scores(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 0, 1, 2]), 3)
    >>> s.toarray().round(3).tolist()
    [[0.0, 0.833, 0.333], [0.833, 0.0, 0.333], [0.333, 0.333, 0.0]]
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if users.shape != items.shape:
        raise ConfigError("cooccurrence_scores: users and items differ in length")
    num_users = int(users.max()) + 1 if len(users) else 0
    x = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(num_users, int(num_items)))
    x.data[:] = 1.0  # duplicates count once
    n_u = np.asarray(x.sum(axis=1)).ravel()
    inv = np.divide(1.0, n_u, out=np.zeros_like(n_u), where=n_u > 0)
    if window is None:
        s = (x.T @ sp.diags(inv) @ x).tocsr()
        s.setdiag(0)
        s.eliminate_zeros()
        return s
    if timestamps is None:
        raise ConfigError("cooccurrence_scores: a time window needs timestamps")
    # one row per (user, item), earliest time; pairs of rows of one user within the window,
    # found lag by lag over the time-sorted rows (a loop over lags, not over users)
    key = users * int(num_items) + items
    t = np.asarray(timestamps, dtype=np.float64)
    order = np.lexsort((t, key))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    u, i, t = users[order][first], items[order][first], t[order][first]
    order = np.lexsort((t, u))
    u, i, t = u[order], i[order], t[order]
    rows, cols, vals = [], [], []
    lag = 1
    while lag < len(u):
        ok = (u[lag:] == u[:-lag]) & (t[lag:] - t[:-lag] <= window)
        if not ok.any():  # times are sorted per user: larger lags are further apart
            break
        a, b = i[:-lag][ok], i[lag:][ok]
        w = inv[u[:-lag][ok]]
        rows += [a, b]
        cols += [b, a]
        vals += [w, w]
        lag += 1
    if not rows:
        return sp.csr_matrix((int(num_items), int(num_items)))
    s = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(int(num_items), int(num_items)),
    )
    s.setdiag(0)
    s.eliminate_zeros()
    return s


def top_k_pairs(scores: sp.csr_matrix, top_k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``top_k`` partners as unordered pairs, duplicates dropped.

    A pair is kept as ``(a, b)`` where ``b`` is in ``a``'s top-k (when both list each other,
    the smaller id comes first). Pairs are sorted by ``(a, b)``.

    Returns:
        ``(pairs (M, 2) int64, pair scores (M,))``.
    """
    coo = scores.tocoo()
    r, c, v = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    keep = v > 0
    r, c, v = r[keep], c[keep], v[keep]
    order = np.lexsort((c, -v, r))  # per row: score descending, then smaller id
    r, c, v = r[order], c[order], v[order]
    starts = np.searchsorted(r, r, side="left")
    rank = np.arange(len(r)) - starts
    keep = rank < int(top_k)
    r, c, v = r[keep], c[keep], v[keep]
    # unordered dedupe: a mutual pair appears as (a, b) and (b, a); keep the smaller-first one
    lo, hi = np.minimum(r, c), np.maximum(r, c)
    code = lo * (int(max(scores.shape)) + 1) + hi
    mutual_second = np.isin(code, code[r < c]) & (r > c)
    r, c, v = r[~mutual_second], c[~mutual_second], v[~mutual_second]
    order = np.lexsort((c, r))
    return np.stack([r[order], c[order]], axis=1), v[order]


def cooccurrence_pairs(
    users: np.ndarray,
    items: np.ndarray,
    num_items: int,
    *,
    top_k: int = 10,
    timestamps: np.ndarray | None = None,
    window: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cooccurrence_scores` then :func:`top_k_pairs`: ``(pairs (M, 2), scores (M,))``."""
    s = cooccurrence_scores(users, items, num_items, timestamps=timestamps, window=window)
    return top_k_pairs(s, top_k)


@dataclass(frozen=True)
class PairSplit:
    """Pairs ``(M, 2)`` int64 per split; the first item of a valid / test pair is the query."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def split_pairs(
    pairs: np.ndarray,
    rng: np.random.Generator,
    valid: float = 0.1,
    test: float = 0.1,
) -> PairSplit:
    """Shuffle the pairs (and each pair's orientation) and split them train / valid / test.

    Args:
        pairs: ``(M, 2)``.
        rng: a seeded ``numpy`` generator.
        valid: fraction of the pairs for validation.
        test: fraction of the pairs for the test.
    """
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise ConfigError(f"split_pairs: valid ({valid}) + test ({test}) must be in [0, 1)")
    pairs = np.asarray(pairs, dtype=np.int64)
    perm = rng.permutation(len(pairs))
    flip = rng.random(len(pairs)) < 0.5  # which item is the query: not always the smaller id
    p = pairs[perm]
    p = np.where(flip[:, None], p[:, ::-1], p)
    n_test = int(round(test * len(p)))
    n_valid = int(round(valid * len(p)))
    return PairSplit(
        train=p[n_test + n_valid :], valid=p[n_test : n_test + n_valid], test=p[:n_test]
    )


def dataset_pairs(
    ds,
    *,
    top_k: int = 10,
    valid: float = 0.1,
    test: float = 0.1,
    seed: int = 999,
    max_train_pairs: int | None = None,
) -> PairSplit:
    """Pairs of a :class:`~lirdrec.data.Dataset` from its TRAINING interactions, split.

    Args:
        ds: the dataset (``ds.train.users``, ``ds.train.items``, ``ds.num_items``).
        top_k: partners kept per item.
        valid: share of the pairs for validation.
        test: share of the pairs for the test.
        seed: the split's seed.
        max_train_pairs: keep only this many training pairs (a seeded subsample; a budget cut).
    """
    pairs, _ = cooccurrence_pairs(ds.train.users, ds.train.items, ds.num_items, top_k=top_k)
    rng = np.random.default_rng(seed)
    split = split_pairs(pairs, rng, valid=valid, test=test)
    if max_train_pairs is not None and len(split.train) > max_train_pairs:
        keep = np.sort(rng.choice(len(split.train), size=int(max_train_pairs), replace=False))
        split = PairSplit(train=split.train[keep], valid=split.valid, test=split.test)
    return split
