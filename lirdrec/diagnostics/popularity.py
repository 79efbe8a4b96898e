"""Items by training popularity: degree buckets and the touch rate a batch predicts."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["popularity_buckets", "predicted_touch_fraction"]


def popularity_buckets(
    degree: np.ndarray, num_buckets: int = 5
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Items grouped by training degree: equal-count quantile buckets of the items seen in training.

    Items are sorted by degree (ties by id) and cut into ``num_buckets`` consecutive groups of
    (almost) equal size; bucket 1 holds the least popular ("tail"), bucket ``num_buckets`` the most
    popular ("head"). Items with degree 0 get bucket 0 (``"unseen"``) if there are any.

    Returns:
        ``(bucket (I,) int64, info)`` where ``info[b]`` has ``bucket``, ``label``, ``degree_min``,
        ``degree_max``, ``items``.

    >>> b, info = popularity_buckets(np.array([0, 5, 1, 2, 9]), 2)
    >>> b.tolist(), [x["label"] for x in info]
    ([0, 2, 1, 1, 2], ['unseen', 'Q1 (tail)', 'Q2 (head)'])
    """
    degree = np.asarray(degree, dtype=np.int64)
    seen = np.flatnonzero(degree > 0)
    order = seen[np.lexsort((seen, degree[seen]))]
    n = len(order)
    k = max(1, min(int(num_buckets), n)) if n else 1
    bucket = np.zeros(len(degree), dtype=np.int64)
    bucket[order] = np.arange(n) * k // max(n, 1) + 1
    info = []
    for b in range(0 if (degree == 0).any() else 1, k + 1):
        members = degree[bucket == b]
        if b == 0:
            label = "unseen"
        else:
            label = f"Q{b}" + (" (tail)" if b == 1 else " (head)" if b == k else "")
        info.append(
            {
                "bucket": b,
                "label": label,
                "degree_min": int(members.min()) if len(members) else 0,
                "degree_max": int(members.max()) if len(members) else 0,
                "items": len(members),
            }
        )
    return bucket, info


def predicted_touch_fraction(degree: np.ndarray, num_pairs: int, batch_size: int) -> np.ndarray:
    r"""Expected fraction of an epoch's steps whose batch contains item :math:`i`.

    Derivation in ``docs/gradient_bias.md``.

    A triple holds :math:`i` as the positive with probability :math:`d_i/N` and as the negative
    with :math:`1/I_+` (:class:`~lirdrec.train.sampler.BPRSampler` draws negatives uniformly from
    the :math:`I_+` items seen in training). With :math:`\pi_i = d_i/N + [d_i>0]/I_+`, a batch of
    :math:`b` triples touches the ID row with probability :math:`1-(1-\pi_i)^b`; the result is
    averaged over the epoch's :math:`\lfloor N/B\rfloor` full batches and its last partial one.
    This is the prediction for a direct lookup (VBPR, MF); models that propagate over a graph or
    regularise every item touch every row every step.

    >>> predicted_touch_fraction(np.array([0, 1, 3]), 4, 1).round(4).tolist()
    [0.0, 0.75, 1.0]
    >>> # (1 - 0.25**3 + 0.75) / 2
    >>> predicted_touch_fraction(np.array([0, 1, 3]), 4, 3).round(4).tolist()
    [0.0, 0.8672, 1.0]
    """
    degree = np.asarray(degree, dtype=np.float64)
    seen = degree > 0
    pi = np.clip(degree / max(num_pairs, 1) + seen / max(int(seen.sum()), 1), 0.0, 1.0)
    full, last = divmod(int(num_pairs), int(batch_size))
    sizes = [int(batch_size)] * full + ([last] if last else [])
    if not sizes:
        return np.zeros_like(pi)
    return np.mean([1.0 - (1.0 - pi) ** b for b in sizes], axis=0)
