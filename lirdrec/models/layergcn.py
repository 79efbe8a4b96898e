"""LayerGCN: layer-refined graph convolution with degree-sensitive edge pruning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirdrec.graphs import (
    bipartite_adjacency,
    degree_sensitive_prune,
    spmm,
    user_item_edges,
)
from lirdrec.models._features import make_generator
from lirdrec.models.base import GeneratorStateMixin, Interval, Recommender, Shape, check_arguments
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["LayerGCN", "layer_refined_propagate"]


def layer_refined_propagate(adj: Tensor, x: Tensor, num_layers: int) -> Tensor:
    r"""LayerGCN's propagation: each layer is re-weighted, node by node, by its cosine
    similarity to the ego (layer-0) embedding, and the refined layers :math:`1..L` are summed
    (the ego layer is not part of the sum):

    .. math::
        \mathbf{H}^{(l)} = \hat A\,\mathbf{E}^{(l-1)},\quad
        \mathbf{E}^{(l)}_v = \cos\big(\mathbf{H}^{(l)}_v, \mathbf{E}^{(0)}_v\big)\,
        \mathbf{H}^{(l)}_v,\quad
        \mathbf{E} = \sum_{l=1}^{L}\mathbf{E}^{(l)}.

    The cosine is torch's (each norm clamped at 1e-8), so a node without edges gets 0.
    Differentiable in ``x`` (also through the weights).

    Shapes:
        - adj :math:`(N, N)` sparse (symmetric), x :math:`(N, d)` -> :math:`(N, d)`

    >>> a = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).to_sparse_csr()
    >>> layer_refined_propagate(a, torch.tensor([[1.0, 0.0], [1.0, 1.0]]), 1).tolist()
    [[0.7071067690849304, 0.7071067690849304], [0.7071067690849304, 0.0]]
    """
    h = x
    out = torch.zeros_like(x)
    for _ in range(num_layers):
        h = spmm(adj, h)  # (N, d)
        h = F.cosine_similarity(h, x, dim=-1)[:, None] * h
        out = out + h
    return out


@register("layergcn")
class LayerGCN(GeneratorStateMixin, Recommender):
    r"""LayerGCN from "Layer-refined Graph Convolutional Networks for Recommendation" (Zhou et
    al., ICDE 2023, arXiv:2207.11088), as MMRec implements it (``src/models/layergcn.py``).

    ID embeddings :math:`\mathbf{E}^{(0)} = [\mathbf{P}; \mathbf{Q}]` are propagated with
    :func:`layer_refined_propagate` (each layer scaled by its cosine to the ego layer, layers
    :math:`1..L` summed), :math:`\hat y_{ui} = \mathbf{e}_u^\top\mathbf{e}_i`, and trained with

    .. math::
        \mathcal L = \sum_{b=1}^{B} -\log\sigma(\hat y_{ui^+} - \hat y_{ui^-})
        + \frac{\lambda}{2}\big(\lVert\mathbf{P}_B\rVert^2 + \lVert\mathbf{Q}_{B^+}\rVert^2
        + \lVert\mathbf{Q}_{B^-}\rVert^2\big),

    a SUM over the batch (the reference's, not the mean of :func:`~lirdrec.models.bpr_loss`)
    and squared norms of the batch's ego rows. Training propagates over a pruned graph, rebuilt
    before each epoch by :func:`lirdrec.graphs.degree_sensitive_prune` keeping
    :math:`\lfloor|E|(1-\rho)\rfloor` edges: odd epochs draw them with probability
    :math:`\propto 1/\sqrt{|N_u||N_i|}` (degree-sensitive), even epochs uniformly, as the
    reference alternates; :meth:`forward` (evaluation) uses the full :math:`\hat A`. Pruning
    randomness comes from the model's own :class:`torch.Generator` (state in
    :meth:`extra_state`); the reference uses the global RNGs. The paper's equations are followed
    as the reference code computes them.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        adj (Tensor): :math:`\hat A`, sparse CSR :math:`(U+I, U+I)` from
            :func:`lirdrec.graphs.bipartite_adjacency`; its user->item entries are the training
            edges and their pruning weights.
        embedding_dim (int, optional): :math:`d`. (default: ``64``)
        num_layers (int, optional): :math:`L`. (default: ``4``)
        reg_weight (float, optional): :math:`\lambda`. (default: ``1e-2``)
        dropout (float, optional): :math:`\rho`, fraction of edges pruned each epoch; ``0``
            trains on :math:`\hat A`. (default: ``0.0``)
        generator_seed (int, optional): seed of the pruning generator; ``None`` draws it from
            torch's global RNG at construction. (default: ``None``)

    Shapes:
        - **forward:** users :math:`(U, d)`, items :math:`(I, d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items, neg_items :math:`(B,)` -> scalar
    """

    #: the edge list and its weights stay on the CPU (pruning draws from the CPU generator)
    unregistered_tensors = ("_edge_users", "_edge_items", "_edge_probs", "_train_adj")

    constraints = {
        "adj": Shape("num_nodes", "num_nodes"),
        "embedding_dim": Interval(1, integer=True),
        "num_layers": Interval(1, integer=True),
        "reg_weight": Interval(0),
        "dropout": Interval(0, 1, closed="left"),
    }

    def __init__(self, num_users: int, num_items: int, adj: Tensor, embedding_dim: int = 64,
                 num_layers: int = 4, reg_weight: float = 1e-2, dropout: float = 0.0,
                 generator_seed: int | None = None) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.embedding_dim = int(embedding_dim)
        self.num_layers = int(num_layers)
        self.reg_weight = float(reg_weight)
        self.dropout = float(dropout)
        self.register_buffer("adj", adj, persistent=False)  # constant: moved by .to(), not saved
        self._edge_users, self._edge_items, self._edge_probs = user_item_edges(adj, self.num_users)
        self._train_adj: Tensor | None = None
        self._add_id_embeddings(self.embedding_dim)
        self.reset_parameters()
        self.generator, self.generator_seed = make_generator(generator_seed)

    def reset_parameters(self) -> None:
        self._reset_id_embeddings()

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "LayerGCN":
        adj = bipartite_adjacency(ds.num_users, ds.num_items, ds.train.users, ds.train.items)
        return cls(ds.num_users, ds.num_items, adj, **kwargs)

    @property
    def num_kept_edges(self) -> int:
        r""":math:`\lfloor |E| (1-\rho) \rfloor` (the reference's ``int(E * (1. - dropout))``)."""
        return int(self._edge_users.shape[0] * (1.0 - self.dropout))

    def on_epoch_start(self, epoch: int) -> None:
        r"""Prune the training graph: degree-sensitive on odd epochs, uniform on even ones."""
        if self.dropout <= 0.0:
            self._train_adj = self.adj
            return
        probs = self._edge_probs if epoch % 2 == 1 else None
        self._train_adj = degree_sensitive_prune(
            self._edge_users, self._edge_items, probs, self.num_users, self.num_items,
            self.num_kept_edges, self.generator).to(self.adj.device, self.adj.dtype)

    def _embed(self, adj: Tensor) -> tuple[Tensor, Tensor]:
        out = layer_refined_propagate(adj, torch.cat([self.user_emb, self.item_emb]),
                                      self.num_layers)
        return out[: self.num_users], out[self.num_users:]

    def forward(self) -> tuple[Tensor, Tensor]:
        return self._embed(self.adj)

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        if self._train_adj is None:
            self.on_epoch_start(1)
        user_emb, item_emb = self._embed(self._train_adj)
        u = user_emb[users]  # (B, d)
        diff = (u * item_emb[pos_items]).sum(-1) - (u * item_emb[neg_items]).sum(-1)
        rank = F.softplus(-diff).sum()  # -sum log sigmoid, without underflow
        reg = 0.5 * (self.user_emb[users].pow(2).sum() + self.item_emb[pos_items].pow(2).sum()
                     + self.item_emb[neg_items].pow(2).sum())
        return rank + self.reg_weight * reg

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"item_id": [self.item_emb], "item_feature": [], "user": [self.user_emb],
                "other": []}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, embedding_dim={self.embedding_dim}, "
                f"num_layers={self.num_layers}, dropout={self.dropout}")
