"""Degree statistics of the training graph as item input features (data, not ID parameters)."""

from __future__ import annotations

import torch
from torch import Tensor

from lirdrec.errors import ConfigError

__all__ = ["degree_features", "item_degrees"]


def item_degrees(adj: Tensor, num_users: int) -> Tensor:
    r"""Training degree of every item read off the normalised bipartite adjacency: the stored
    entries of item row :math:`U + i` of :math:`\hat A` (one per distinct training user; the
    rows of items without interactions are empty).

    Shapes:
        - adj :math:`(U+I, U+I)` sparse -> :math:`(I,)` int64

    >>> from lirdrec.graphs.bipartite import bipartite_adjacency
    >>> item_degrees(bipartite_adjacency(2, 3, [0, 0, 1], [0, 1, 1]), 2).tolist()
    [1, 2, 0]
    """
    csr = adj if adj.layout == torch.sparse_csr else adj.to_sparse_csr()
    return csr.crow_indices().diff()[num_users:].to(torch.int64)


def degree_features(degree: Tensor, num_buckets: int = 8) -> Tensor:
    r"""Popularity features of items from their training degrees :math:`n_i`:
    :math:`[\log(1+n_i)/\log(1+\max_j n_j),\ \mathrm{onehot}(b_i)]` of width ``1 + num_buckets``.

    The bucket :math:`b_i \in \{0, \dots, B-1\}` is the degree's quantile bucket among the WARM
    items (:math:`n > 0`): the edges are the :math:`q/B` quantiles (:math:`q = 1..B-1`, linear
    interpolation) of their degrees, and :math:`b_i` is the number of edges :math:`\le n_i`
    (ties in the degrees may leave buckets empty). An item without training interactions (a
    cold item) gets the all-zero row, the zero-degree code: computed from data, so it stays
    scorable.

    Shapes:
        - degree :math:`(I,)` -> :math:`(I, 1 + B)` float32

    >>> degree_features(torch.tensor([0, 1, 3]), num_buckets=2).tolist()   # edge: median 2
    [[0.0, 0.0, 0.0], [0.5, 1.0, 0.0], [1.0, 0.0, 1.0]]
    """
    if int(num_buckets) < 1:
        raise ConfigError(f"degree_features: num_buckets must be >= 1, got {num_buckets!r}")
    deg = torch.as_tensor(degree).to(torch.float64)
    if deg.ndim != 1 or bool((deg < 0).any()):
        raise ConfigError("degree_features: degree must be a 1-d tensor of counts >= 0")
    out = torch.zeros(deg.numel(), 1 + int(num_buckets), dtype=torch.float64)
    warm = deg > 0
    if not bool(warm.any()):
        return out.float()
    out[:, 0] = torch.log1p(deg) / torch.log1p(deg.max())
    q = torch.arange(1, int(num_buckets), dtype=torch.float64) / int(num_buckets)
    edges = torch.quantile(deg[warm], q)  # (B-1,)
    bucket = torch.searchsorted(edges, deg[warm], right=True)  # number of edges <= n_i
    rows = warm.nonzero().squeeze(1)
    out[rows, 1 + bucket] = 1.0
    return out.float()
