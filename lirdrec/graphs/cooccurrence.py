"""Graphs of co-occurrence in the training interactions (DualGNN's user-user graph)."""

from __future__ import annotations

import torch
from torch import Tensor

from lirdrec.errors import ConfigError
from lirdrec.graphs.bipartite import bipartite_adjacency, interaction_matrix
from lirdrec.graphs.knn import auto_chunk_size
from lirdrec.graphs.sparse import csr_rows, spmm

__all__ = ["adjacency_and_user_graph", "user_cooccurrence_graph"]


@torch.no_grad()
def user_cooccurrence_graph(num_users: int, num_items: int, users, items, k: int,
                            chunk_size: int | None = None) -> tuple[Tensor, Tensor]:
    r"""Each user's :math:`k` users with the most items in common (DualGNN's user-user graph).

    With :math:`R \in \{0,1\}^{U \times I}` the training interactions, :math:`C = RR^\top`
    with a zero diagonal counts the items two users share. Row :math:`u` keeps its top-:math:`k`
    entries with :math:`C_{uv} > 0`, in decreasing order; a user with :math:`0 < n_u < k` such
    neighbours repeats them cyclically to fill :math:`k` slots (MMRec's preprocessing pads by
    random repetition, redrawn each epoch; cyclic padding is deterministic), a user without any
    gets herself with count 0. Built in row chunks of :math:`C`: memory
    :math:`O(\text{chunk}\cdot U + U k)`, never :math:`U \times U`.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        users: array-like :math:`(E,)`, the users of the training pairs.
        items: array-like :math:`(E,)`, their items.
        k (int): neighbours per user.
        chunk_size (int | None): users per chunk; ``None``: :func:`auto_chunk_size` of :math:`U`.

    Returns:
        ``(index, counts)``: int64 and float32 :math:`(U, k)`, the neighbours and their
        :math:`C_{uv}`.

    >>> idx, cnt = user_cooccurrence_graph(3, 3, [0, 0, 1, 1, 2], [0, 1, 0, 1, 1], k=2)
    >>> idx.tolist(), cnt.tolist()   # users 0 and 1 share 2 items, each shares item 1 with 2
    ([[1, 2], [0, 2], [0, 1]], [[2.0, 1.0], [2.0, 1.0], [1.0, 1.0]])
    """
    if k < 1:
        raise ConfigError(f"user_cooccurrence_graph: k must be >= 1, got {k}")
    r = interaction_matrix(num_users, num_items, users, items)  # (U, I)
    chunk_size = auto_chunk_size(num_users) if chunk_size is None else int(chunk_size)
    top = min(k, num_users)
    index = torch.empty(num_users, top, dtype=torch.long)
    counts = torch.empty(num_users, top)
    for start in range(0, num_users, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, num_users))
        block = spmm(r, csr_rows(r, rows).t().contiguous()).t()  # (c, U) = R_c R^T
        block[torch.arange(len(rows)), rows] = 0.0  # a user is not her own neighbour
        counts[rows], index[rows] = torch.topk(block, top, dim=1)
    n = (counts > 0).sum(1, keepdim=True)  # (U, 1) neighbours found
    slot = torch.arange(k)[None, :]
    src = torch.where(slot < n, slot, slot % n.clamp_min(1))  # cyclic padding
    index, counts = index.gather(1, src), counts.gather(1, src)
    isolated = (n == 0).expand(-1, k)
    index = torch.where(isolated, torch.arange(num_users)[:, None].expand(-1, k), index)
    return index, torch.where(isolated, torch.zeros(()), counts)


def adjacency_and_user_graph(num_users: int, num_items: int, users, items, k: int,
                             chunk_size: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    r"""The two interaction graphs of DualGNN and DRAGON: the normalised bipartite
    :math:`\hat A` (:func:`~lirdrec.graphs.bipartite_adjacency`) and the user co-occurrence
    top-:math:`k` (:func:`user_cooccurrence_graph`), from the same training pairs.

    Returns:
        ``(adj, index, counts)``: sparse :math:`(U+I, U+I)`, int64 and float32 :math:`(U, k)`.

    >>> adj, idx, cnt = adjacency_and_user_graph(3, 3, [0, 0, 1, 1, 2], [0, 1, 0, 1, 1], k=2)
    >>> tuple(adj.shape), idx.tolist()
    ((6, 6), [[1, 2], [0, 2], [0, 1]])
    """
    adj = bipartite_adjacency(num_users, num_items, users, items)
    index, counts = user_cooccurrence_graph(num_users, num_items, users, items, k, chunk_size)
    return adj, index, counts
