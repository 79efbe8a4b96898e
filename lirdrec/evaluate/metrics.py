r"""Top-K ranking metrics from a hit matrix, vectorised over users.

For a user with positive set :math:`T` (``n_pos`` items) and ranked list :math:`r_1, r_2, \dots`
with :math:`\mathrm{rel}_k = [r_k \in T]`:

.. math::
    \mathrm{Recall@K} = \frac{\sum_{k\le K}\mathrm{rel}_k}{|T|},\qquad
    \mathrm{Precision@K} = \frac{\sum_{k\le K}\mathrm{rel}_k}{K},

    \mathrm{NDCG@K} = \frac{\sum_{k\le K}\mathrm{rel}_k/\log_2(k+1)}
                           {\sum_{k\le\min(|T|,K)}1/\log_2(k+1)},\qquad
    \mathrm{MAP@K} = \frac{1}{\min(|T|,K)}\sum_{k\le K}\mathrm{Precision@}k\cdot\mathrm{rel}_k .
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["METRICS", "ranking_metrics", "hits_from_topk"]

METRICS = ("Recall", "NDCG", "Precision", "MAP")


def hits_from_topk(topk: Tensor, row_of_pos: Tensor, pos_items: Tensor, num_items: int) -> Tensor:
    """Boolean ``(B, K)``: whether ``topk[b, k]`` is a positive of row ``b``.

    Positives are given in COO form (``row_of_pos``, ``pos_items``); membership is a
    ``searchsorted`` over the sorted keys ``row * I + item`` (no loop over users).

    >>> hits_from_topk(torch.tensor([[3, 0], [1, 2]]), torch.tensor([0, 0, 1]),
    ...                torch.tensor([1, 3, 2]), 4).tolist()
    [[True, False], [False, True]]
    """
    keys = torch.sort(row_of_pos * num_items + pos_items).values
    query = torch.arange(topk.shape[0]).unsqueeze(1) * num_items + topk  # (B, K)
    idx = torch.searchsorted(keys, query).clamp_max(max(len(keys) - 1, 0))
    return keys[idx] == query if len(keys) else torch.zeros_like(query, dtype=torch.bool)


def ranking_metrics(hits: Tensor, n_pos: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """Per-user metrics ``{"Recall@K": (B,), ...}`` from hits ``(B, Kmax)`` and ``n_pos`` ``(B,)``.

    >>> m = ranking_metrics(torch.tensor([[True, False]]), torch.tensor([2]), [2])
    >>> round(float(m["Recall@2"]), 4), round(float(m["NDCG@2"]), 4)   # 1/2, 1/(1 + 1/log2(3))
    (0.5, 0.6131)
    """
    kmax = hits.shape[1]
    hits_f = hits.to(torch.float64)
    n_pos = n_pos.to(torch.float64)
    ranks = torch.arange(1, kmax + 1, dtype=torch.float64)
    discount = 1.0 / torch.log2(ranks + 1.0)  # (Kmax,)
    cum_hits = hits_f.cumsum(1)  # (B, Kmax)
    dcg = (hits_f * discount).cumsum(1)
    idcg_table = torch.cat([torch.zeros(1, dtype=torch.float64), discount.cumsum(0)])
    ap_terms = (cum_hits / ranks * hits_f).cumsum(1)  # sum_k Precision@k * rel_k
    out: dict[str, Tensor] = {}
    for k in ks:
        if not 1 <= k <= kmax:
            raise ValueError(f"K={k} outside [1, {kmax}]")
        h = cum_hits[:, k - 1]
        denom = torch.clamp(n_pos, max=k)
        out[f"Recall@{k}"] = h / n_pos
        out[f"NDCG@{k}"] = dcg[:, k - 1] / idcg_table[denom.long()]
        out[f"Precision@{k}"] = h / k
        out[f"MAP@{k}"] = ap_terms[:, k - 1] / denom
    return out
