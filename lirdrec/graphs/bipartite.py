"""Symmetrically normalised user-item bipartite adjacency."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lirdrec.graphs.sparse import sparse_from_coo, to_coo_parts

__all__ = ["bipartite_adjacency", "bipartite_edge_index", "degree_sensitive_prune",
           "interaction_matrix", "mean_adjacency", "user_item_block", "user_item_edges"]


def bipartite_edge_index(num_users: int, num_items: int, users, items) -> Tensor:
    """Both directions of the de-duplicated user-item edges, items offset by ``num_users``.

    Returns:
        ``edge_index`` of shape :math:`(2, 2|E|)` over :math:`U + I` nodes (users first).
    """
    users = torch.from_numpy(np.array(users, dtype=np.int64))
    items = torch.from_numpy(np.array(items, dtype=np.int64))
    keys = torch.unique(users * num_items + items)  # duplicates count once
    u, i = keys // num_items, keys % num_items + num_users
    return torch.stack([torch.cat([u, i]), torch.cat([i, u])])


def bipartite_adjacency(num_users: int, num_items: int, users, items) -> Tensor:
    r"""Normalised adjacency :math:`\hat A = D^{-1/2} A D^{-1/2}` of the user-item graph.

    .. math::
        A = \begin{pmatrix} 0 & R \\ R^\top & 0 \end{pmatrix},\qquad
        \hat A_{ui} = \frac{1}{\sqrt{|N_u|}\sqrt{|N_i|}}

    with :math:`R \in \{0,1\}^{U \times I}` the training interactions (duplicates count once), no
    self-loops, and zero rows for nodes of degree 0: the values of torch_geometric's
    :func:`gcn_norm` with ``add_self_loops=False``, bit for bit (``tests/test_graphs.py`` checks
    both that and the dense formula). It is computed here with torch (a ``bincount`` and two
    gathers) rather than by calling ``gcn_norm``, because importing torch_geometric costs about
    180 MiB of resident memory and 2 s, a third of LIRDRec's memory budget.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        users: array-like :math:`(E,)`, the users of the training pairs.
        items: array-like :math:`(E,)`, their items.

    Returns:
        Sparse CSR tensor of shape :math:`(U + I, U + I)`.

    >>> a = bipartite_adjacency(2, 2, [0, 0, 1], [0, 1, 1]).to_dense()
    >>> round(float(a[0, 2]), 4), round(float(a[0, 3]), 4)   # 1/sqrt(2*1), 1/sqrt(2*2)
    (0.7071, 0.5)
    """
    n = num_users + num_items
    row, col = bipartite_edge_index(num_users, num_items, users, items)
    deg_inv_sqrt = torch.bincount(col, minlength=n).float().pow_(-0.5)
    deg_inv_sqrt.masked_fill_(deg_inv_sqrt == float("inf"), 0.0)
    return sparse_from_coo(row, col, deg_inv_sqrt[row] * deg_inv_sqrt[col], (n, n))


def mean_adjacency(num_users: int, num_items: int, users, items) -> Tensor:
    r"""Row-normalised adjacency :math:`D^{-1}A` of the user-item graph: :math:`(D^{-1}AX)_v` is
    the mean of :math:`X` over the neighbours of :math:`v` (torch_geometric's ``aggr="mean"``
    message passing, MMGCN's and GRCN's aggregation); zero rows for nodes of degree 0. Not
    symmetric: pass :func:`lirdrec.graphs.transpose_csr` of it to ``spmm`` for the backward.

    Returns:
        Sparse CSR tensor of shape :math:`(U + I, U + I)`.

    >>> a = mean_adjacency(2, 2, [0, 0, 1], [0, 1, 1]).to_dense()
    >>> a[0].tolist(), a[3].tolist()   # user 0: items 0 and 1; item 1: users 0 and 1
    ([0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.0, 0.0])
    """
    n = num_users + num_items
    row, col = bipartite_edge_index(num_users, num_items, users, items)
    deg = torch.bincount(row, minlength=n).float()
    return sparse_from_coo(row, col, 1.0 / deg[row], (n, n))


def interaction_matrix(num_users: int, num_items: int, users, items) -> Tensor:
    r"""The binary training matrix :math:`R \in \{0,1\}^{U \times I}` (duplicates count once).

    Returns:
        Sparse CSR tensor of shape :math:`(U, I)`.

    >>> interaction_matrix(2, 3, [0, 0, 1, 0], [2, 0, 1, 2]).to_dense().tolist()
    [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    users = torch.from_numpy(np.array(users, dtype=np.int64))
    items = torch.from_numpy(np.array(items, dtype=np.int64))
    keys = torch.unique(users * num_items + items)
    return sparse_from_coo(keys // num_items, keys % num_items, torch.ones(len(keys)),
                           (num_users, num_items))


def user_item_edges(adj: Tensor, num_users: int) -> tuple[Tensor, Tensor, Tensor]:
    r"""The training edges of a normalised bipartite :math:`\hat A`, once per (user, item), on
    the CPU (where :func:`degree_sensitive_prune` draws from a CPU generator): users, items
    (0-based) and their weights :math:`1/\sqrt{|N_u||N_i|}`, the degree-sensitive sampling
    probabilities of FREEDOM and LayerGCN.

    Shapes:
        - adj :math:`(U+I, U+I)` sparse -> users, items int64 :math:`(E,)`, probs float32
          :math:`(E,)`

    >>> u, i, p = user_item_edges(bipartite_adjacency(2, 2, [0, 0, 1], [0, 1, 1]), 2)
    >>> u.tolist(), i.tolist(), [round(float(x), 4) for x in p]
    ([0, 0, 1], [0, 1, 1], [0.7071, 0.5, 0.7071])
    """
    users, items, val = to_coo_parts(user_item_block(adj.cpu(), num_users))  # row-major order
    return users, items, val.float()


def user_item_block(adj: Tensor, num_users: int) -> Tensor:
    r"""The user -> item block :math:`\hat R = \hat A_{UI}` of a bipartite adjacency, as its own
    sparse CSR matrix, same values, dtype and device: :math:`\hat R\mathbf{H}` aggregates item
    rows into users without multiplying the :math:`(U + I)` matrix by
    :math:`[\mathbf{0};\mathbf{H}]` (the item half of that product is discarded).

    Shapes:
        - adj :math:`(U+I, U+I)` sparse -> :math:`(U, I)` sparse CSR

    >>> user_item_block(bipartite_adjacency(2, 2, [0, 0, 1], [0, 1, 1]), 2).to_dense()
    tensor([[0.7071, 0.5000],
            [0.0000, 0.7071]])
    """
    row, col, val = to_coo_parts(adj)
    ui = (row < num_users) & (col >= num_users)
    return sparse_from_coo(row[ui], col[ui] - num_users, val[ui],
                           (num_users, adj.shape[1] - num_users))


def degree_sensitive_prune(users: Tensor, items: Tensor, probs: Tensor | None, num_users: int,
                           num_items: int, keep: int, generator: torch.Generator) -> Tensor:
    r"""Edge pruning of the user-item graph (FREEDOM, LayerGCN): keep ``keep`` distinct edges,
    then re-normalise the kept graph with its own degrees.

    With ``probs`` the edges are drawn without replacement with probability proportional to
    ``probs``, FREEDOM's and LayerGCN's degree-sensitive :math:`p_{ui} = 1/\sqrt{|N_u||N_i|}`
    (so edges between high-degree nodes are pruned more); ``None`` draws them uniformly (LayerGCN's
    alternate epochs). The kept graph is

    .. math::
        \tilde A_{ui} = \tilde A_{iu} = \frac{1}{\sqrt{|\tilde N_u|}\sqrt{|\tilde N_i|}}.

    Args:
        users (Tensor): int64 :math:`(E,)`, the users of the training edges.
        items (Tensor): int64 :math:`(E,)`, their items.
        probs (Tensor | None): :math:`(E,)` sampling weights, or ``None`` for uniform.
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        keep (int): edges to keep.
        generator (torch.Generator): source of randomness.

    Returns:
        Symmetric sparse CSR :math:`(U+I, U+I)` with :math:`2\cdot` ``keep`` entries.
    """
    if probs is None:
        idx = torch.randperm(users.shape[0], generator=generator)[:keep]
    else:
        idx = torch.multinomial(probs, keep, replacement=False, generator=generator)
    u, i = users[idx], items[idx]
    du = torch.bincount(u, minlength=num_users).float()
    di = torch.bincount(i, minlength=num_items).float()
    val = du[u].rsqrt() * di[i].rsqrt()
    i_node = i + num_users
    n = num_users + num_items
    row, col = torch.cat([u, i_node]), torch.cat([i_node, u])
    return sparse_from_coo(row, col, torch.cat([val, val]), (n, n))
