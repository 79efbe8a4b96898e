"""LightGCN."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from lirdrec.graphs import bipartite_adjacency, propagate
from lirdrec.models.base import (
    Interval,
    OneOf,
    Recommender,
    Shape,
    bpr_loss,
    check_arguments,
    emb_loss,
)
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset


__all__ = ["LightGCN", "propagate"]  # propagate lives in lirdrec.graphs


@register("lightgcn")
class LightGCN(Recommender):
    r"""LightGCN from "LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation" (He et al., SIGIR 2020, arXiv:2002.02126).

    ID embeddings are propagated over the normalised training graph

    .. math::
        \mathbf{E}^{(l+1)} = \hat{\mathbf{A}}\mathbf{E}^{(l)},\quad
        \hat{\mathbf{A}} = \mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2},\quad
        \mathbf{E} = \frac{1}{L+1}\sum_{l=0}^{L} \mathbf{E}^{(l)},

    and :math:`\hat{y}_{ui} = \mathbf{e}_u^{\top}\mathbf{e}_i`. The loss is BPR plus MMRec's
    regulariser on the layer-0 embeddings of the batch
    (:math:`\lambda(\lVert E^{(0)}_u\rVert+\lVert E^{(0)}_{i^+}\rVert
    +\lVert E^{(0)}_{i^-}\rVert)/B`, unsquared norms). Propagation uses
    :func:`lirdrec.graphs.spmm` on a CSR adjacency, which measured faster than torch_geometric's
    ``LGConv`` message passing on CPU (``benchmarks/bench_core.py``).

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        adj (Tensor): :math:`\hat{\mathbf{A}}`, sparse CSR :math:`(U+I, U+I)` from
            :func:`lirdrec.graphs.bipartite_adjacency`.
        embedding_dim (int, optional): :math:`d`. (default: ``64``)
        num_layers (int, optional): :math:`L`. (default: ``2``)
        reg_weight (float, optional): :math:`\lambda`. (default: ``1e-4``)
        layer_combine (str, optional): ``"mean"`` or ``"sum"``. (default: ``"mean"``)

    Shapes:
        - **forward:** users :math:`(U, d)`, items :math:`(I, d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items, neg_items :math:`(B,)` -> scalar
    """

    constraints = {
        "adj": Shape("num_nodes", "num_nodes"),
        "embedding_dim": Interval(1, integer=True),
        "num_layers": Interval(0, integer=True),
        "reg_weight": Interval(0),
        "layer_combine": OneOf("mean", "sum"),
    }

    def __init__(self, num_users: int, num_items: int, adj: Tensor, embedding_dim: int = 64,
                 num_layers: int = 2, reg_weight: float = 1e-4,
                 layer_combine: str = "mean") -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.embedding_dim = int(embedding_dim)
        self.num_layers = int(num_layers)
        self.reg_weight = float(reg_weight)
        self.layer_combine = layer_combine
        self.register_buffer("adj", adj, persistent=False)  # constant: moved by .to(), not saved
        self._add_id_embeddings(self.embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._reset_id_embeddings()

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs) -> "LightGCN":
        adj = bipartite_adjacency(ds.num_users, ds.num_items, ds.train.users, ds.train.items)
        return cls(ds.num_users, ds.num_items, adj, **kwargs)

    def forward(self) -> tuple[Tensor, Tensor]:
        x = torch.cat([self.user_emb, self.item_emb])
        out = propagate(self.adj, x, self.num_layers, self.layer_combine)
        return out[: self.num_users], out[self.num_users:]

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        user_emb, item_emb = self.forward()
        u = user_emb[users]
        rank = bpr_loss((u * item_emb[pos_items]).sum(-1), (u * item_emb[neg_items]).sum(-1))
        reg = emb_loss(self.user_emb[users], self.item_emb[pos_items], self.item_emb[neg_items])
        return rank + self.reg_weight * reg

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"item_id": [self.item_emb], "item_feature": [], "user": [self.user_emb],
                "other": []}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, embedding_dim={self.embedding_dim}, "
                f"num_layers={self.num_layers}, layer_combine={self.layer_combine!r}")
