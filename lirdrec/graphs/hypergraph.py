"""Soft hypergraphs: items and users attached to a few learned hyperedges (LGMRec)."""

from __future__ import annotations

from torch import Tensor

from lirdrec.errors import ConfigError

__all__ = ["hypergraph_propagate"]


def hypergraph_propagate(item_hyper: Tensor, user_hyper: Tensor, x: Tensor,
                         num_layers: int) -> tuple[Tensor, Tensor]:
    r"""LGMRec's hypergraph message passing over soft item-hyperedge and user-hyperedge
    memberships :math:`\mathbf{H}_i` :math:`(I, H)` and :math:`\mathbf{H}_u` :math:`(U, H)`:
    items pass their vectors to the hyperedges and back, users read the hyperedges,

    .. math::
        \mathbf{Z}^{(l)} = \mathbf{H}_i^\top\mathbf{X}^{(l-1)},\quad
        \mathbf{X}^{(l)} = \mathbf{H}_i\mathbf{Z}^{(l)},\quad
        \mathbf{U}^{(l)} = \mathbf{H}_u\mathbf{Z}^{(l)},\qquad \mathbf{X}^{(0)} = \mathbf{X},

    returning :math:`(\mathbf{U}^{(L)}, \mathbf{X}^{(L)})` (the last layer, no normalisation).
    Dense products: :math:`H` is a handful of hyperedges.

    Shapes:
        - item_hyper :math:`(I, H)`, user_hyper :math:`(U, H)`, x :math:`(I, d)` ->
          :math:`(U, d)`, :math:`(I, d)`

    >>> import torch
    >>> hi, hu = torch.tensor([[1.0], [1.0]]), torch.tensor([[0.5]])
    >>> u, i = hypergraph_propagate(hi, hu, torch.tensor([[1.0], [3.0]]), 1)
    >>> u.tolist(), i.tolist()   # one hyperedge holding 1 + 3; the user reads half of it
    ([[2.0]], [[4.0], [4.0]])
    """
    if num_layers < 1:
        raise ConfigError(f"hypergraph_propagate: num_layers must be >= 1, got {num_layers}")
    out = x
    for _ in range(num_layers):
        z = item_hyper.t() @ out  # (H, d)
        out = item_hyper @ z
        users = user_hyper @ z
    return users, out
