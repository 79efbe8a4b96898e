"""DualGNN: per-modality graph networks on the user-item graph plus a user co-occurrence graph."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirdrec.graphs import adjacency_and_user_graph, propagate_sum
from lirdrec.models._features import check_features
from lirdrec.models.base import (
    Interval,
    Recommender,
    Shape,
    bpr_loss,
    check_arguments,
    check_param,
)
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["DualGNN", "user_graph_weights"]


def user_graph_weights(counts: Tensor) -> Tensor:
    r"""DualGNN's neighbour weights (``user_aggr_mode="softmax"``): the softmax of each user's
    :math:`k` co-occurrence counts, :math:`a_{uv} = e^{C_{uv}} / \sum_{v'} e^{C_{uv'}}`; rows
    of a user without neighbours (all counts 0) are 0.

    Shapes:
        - counts :math:`(U, k)` -> :math:`(U, k)`

    >>> user_graph_weights(torch.tensor([[1.0, 1.0], [0.0, 0.0]])).tolist()
    [[0.5, 0.5], [0.0, 0.0]]
    """
    weights = torch.softmax(counts, dim=1)
    return torch.where((counts > 0).any(1, keepdim=True), weights, torch.zeros(()))


@register("dualgnn")
class DualGNN(Recommender):
    r"""DualGNN from "DualGNN: Dual Graph Neural Network for Multimedia Recommendation" (Wang et
    al., IEEE TMM 2021, doi:10.1109/TMM.2021.3138298), as MMRec implements it
    (``src/models/dualgnn.py``: ``construction="weighted_sum"``, ``user_aggr_mode="softmax"``,
    ``aggr_mode="add"``).

    **Single-modal graph learning**, per modality :math:`m`: item features through a two-layer
    projection :math:`\mathbf{f}_i = W^2_m\,\mathrm{lrelu}(W^1_m\mathbf{x}^m_i +
    \mathbf{b}^1_m) + \mathbf{b}^2_m` (widths :math:`4d`, :math:`d`), stacked under the users'
    preference vectors and L2-normalised row-wise, then propagated over the LightGCN-normalised
    user-item graph :math:`\hat A` and summed over layers :math:`0..L`:

    .. math::
        \mathbf{X}_m = \sum_{l=0}^{L}\hat A^{l}\,\mathrm{normalize}([\mathbf{P}_m;\mathbf{F}_m]).

    **Multi-modal fusion and the user co-occurrence graph:** items sum their modalities; users
    mix theirs with learned per-user weights :math:`\mathbf{w}_u \in \mathbb R^{|M|}`
    (initialised to a softmax, then free), then add their :math:`k` co-occurrence neighbours'
    mixed vectors with the weights :math:`a_{uv}` of :func:`user_graph_weights` over the graph
    of :func:`lirdrec.graphs.user_cooccurrence_graph`:

    .. math::
        \mathbf{i}_i = \sum_m \mathbf{X}_{m,i},\qquad
        \tilde{\mathbf{u}}_u = \sum_m w_{u,m}\mathbf{X}_{m,u},\qquad
        \mathbf{u}_u = \tilde{\mathbf{u}}_u + \sum_{v \in N^k(u)} a_{uv}\tilde{\mathbf{u}}_v,

    :math:`\hat y_{ui} = \mathbf{u}_u^\top\mathbf{i}_i`, and

    .. math::
        \mathcal L = -\frac1B\sum_b\log_2\sigma(\hat y_{ui^+}-\hat y_{ui^-})
        + \lambda\Big(\sum_m \frac{1}{Bd}\sum_b\lVert\mathbf{P}_{m,u_b}\rVert^2
        + \overline{\mathbf{w}^2}\Big)

    (base-2 logarithm, as the reference; :math:`\overline{\,\cdot\,}`: mean of all entries).
    There are no ID embeddings. Differences from the reference, on purpose: its user graph pads
    users with fewer than :math:`k` neighbours by random repetition redrawn each epoch, here
    cyclically (deterministic, so evaluation after loading the best weights sees the graph it
    was selected with); its unused parameters (``MLP_v``, ``MLP_t``, ``MLP_user``,
    ``result_embed``) and the item weights ``weight_i``, which enter only their own
    regulariser, are left out; its item-dropping edge lists, which its forward never reads, too.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        adj (Tensor): :math:`\hat A`, sparse CSR :math:`(U+I, U+I)` from
            :func:`lirdrec.graphs.bipartite_adjacency`.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` raw features (fixed).
        user_graph (Tensor): int64 :math:`(U, k)`, each user's neighbours, from
            :func:`lirdrec.graphs.user_cooccurrence_graph`.
        user_graph_counts (Tensor): :math:`(U, k)` their co-occurrence counts.
        embedding_dim (int, optional): :math:`d` (the reference's ``dim_latent``).
            (default: ``64``)
        num_layers (int, optional): :math:`L`. (default: ``2``)
        user_knn_k (int, optional): :math:`k`, neighbours per user (used by
            :meth:`from_dataset`; the reference's fixed 40). (default: ``40``)
        reg_weight (float, optional): :math:`\lambda`. (default: ``0.1``)
        user_graph_chunk_size (int | None, optional): users per chunk when building the user
            graph; ``None``: :func:`lirdrec.graphs.auto_chunk_size`. (default: ``None``)

    Shapes:
        - **forward:** users :math:`(U, d)`, items :math:`(I, d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items, neg_items :math:`(B,)` -> scalar
    """

    scores_cold_items = True  # items are their features, propagated
    feature_branch = ("projections",)

    constraints = {
        "adj": Shape("num_nodes", "num_nodes"),
        "embedding_dim": Interval(1, integer=True),
        "num_layers": Interval(0, integer=True),
        "user_knn_k": Interval(1, integer=True),
        "reg_weight": Interval(0),
        "user_graph_chunk_size": Interval(1, integer=True, optional=True),
    }

    def __init__(self, num_users: int, num_items: int, adj: Tensor,
                 features: Mapping[str, Tensor], user_graph: Tensor, user_graph_counts: Tensor,
                 embedding_dim: int = 64, num_layers: int = 2, user_knn_k: int = 40,
                 reg_weight: float = 0.1, user_graph_chunk_size: int | None = None) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.modalities, mats = check_features(type(self).__name__, features, self.num_items)
        for name, t in (("user_graph", user_graph), ("user_graph_counts", user_graph_counts)):
            ok = (isinstance(t, Tensor) and t.dim() == 2 and t.shape[0] == self.num_users
                  and t.shape == user_graph.shape)
            check_param(type(self).__name__, name, tuple(getattr(t, "shape", ())), ok,
                        f"a tensor of shape (num_users={self.num_users}, k), one k for both")
        self.embedding_dim = int(embedding_dim)
        self.num_layers = int(num_layers)
        self.user_knn_k = int(user_knn_k)
        self.reg_weight = float(reg_weight)
        self.register_buffer("adj", adj, persistent=False)
        for j, x in enumerate(mats):  # fixed inputs: buffers that follow .to(), rebuilt on load
            self.register_buffer(f"features_{j}", x, persistent=False)
        self.register_buffer("user_graph", user_graph.long(), persistent=False)
        self.register_buffer("user_graph_weight", user_graph_weights(user_graph_counts.float()),
                             persistent=False)
        d = self.embedding_dim
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Linear(x.shape[1], 4 * d), nn.LeakyReLU(), nn.Linear(4 * d, d))
            for x in mats)
        self.preferences = nn.ParameterList(nn.Parameter(torch.empty(self.num_users, d))
                                            for _ in mats)
        self.modal_weight = nn.Parameter(torch.empty(self.num_users, len(mats)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference's: Xavier-normal preferences; modality weights the softmax of a
        Xavier-normal draw for a :math:`(U, |M|, 1)` tensor; projections torch's default.
        """
        for proj, pref in zip(self.projections, self.preferences):
            for layer in proj:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
            nn.init.xavier_normal_(pref)
        std = math.sqrt(2.0 / (self.num_users + len(self.preferences)))
        with torch.no_grad():
            self.modal_weight.copy_(torch.softmax(torch.randn_like(self.modal_weight) * std, 1))

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "DualGNN":
        r""":math:`\hat A` and the user co-occurrence graph from :mod:`lirdrec.graphs`."""
        cls.check_kwargs(ds, kwargs)
        adj, index, counts = adjacency_and_user_graph(
            ds.num_users, ds.num_items, ds.train.users, ds.train.items,
            cls.default("user_knn_k", kwargs), cls.default("user_graph_chunk_size", kwargs))
        return cls(ds.num_users, ds.num_items, adj, ds.features_tensor(), index, counts,
                   **kwargs)

    def raw_features(self) -> list[Tensor]:
        """The fixed feature matrices, one :math:`(I, d_m)` per modality."""
        return [getattr(self, f"features_{j}") for j in range(len(self.modalities))]

    def modal_representations(self) -> Tensor:
        r""":math:`\mathbf{X}_m` of every modality, stacked: :math:`(U+I, |M|, d)`."""
        raw = self.encoded_features() or self.raw_features()  # end-to-end: from an encoder
        reps = []
        for x, proj, pref in zip(raw, self.projections, self.preferences):
            h = F.normalize(torch.cat([pref, proj(x)]), dim=1)  # (U+I, d)
            reps.append(propagate_sum(self.adj, h, self.num_layers))
        return torch.stack(reps, 1)

    def add_user_neighbours(self, users: Tensor) -> Tensor:
        r""":math:`\tilde{\mathbf{u}}_u + \sum_{v} a_{uv}\tilde{\mathbf{u}}_v` for
        :math:`(U, d')` user vectors.
        """
        return users + (self.user_graph_weight[:, :, None] * users[self.user_graph]).sum(1)

    def forward(self) -> tuple[Tensor, Tensor]:
        stacked = self.modal_representations()  # (U+I, M, d)
        items = stacked[self.num_users:].sum(1)  # (I, d)
        users = (self.modal_weight[:, :, None] * stacked[: self.num_users]).sum(1)  # (U, d)
        return self.add_user_neighbours(users), items

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        user_emb, item_emb = self.forward()
        u = user_emb[users]
        rank = bpr_loss((u * item_emb[pos_items]).sum(-1),
                        (u * item_emb[neg_items]).sum(-1)) / math.log(2.0)  # log2
        prefs = sum(p[users].pow(2).mean() for p in self.preferences)
        return rank + self.reg_weight * (prefs + self.modal_weight.pow(2).mean())

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"item_id": [], "item_feature": list(self.projections.parameters()),
                "user": [*self.preferences, self.modal_weight], "other": []}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, embedding_dim={self.embedding_dim}, "
                f"modalities={self.modalities}, num_layers={self.num_layers}, "
                f"user_knn_k={self.user_graph.shape[1]}")

