"""GRCN: the user-item graph refined by content attention, then ID propagation over it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirdrec.graphs import (
    bipartite_edge_index,
    edge_layout,
    edge_scores,
    edge_softmax,
    sparse_from_coo,
    weighted_spmm,
)
from lirdrec.models._features import check_features
from lirdrec.models.base import Interval, Recommender, bpr_loss, check_arguments, check_param
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["GRCN"]


@register("grcn")
class GRCN(Recommender):
    r"""GRCN from "Graph-Refined Convolutional Network for Multimedia Recommendation with
    Implicit Feedback" (Wei et al., ACM MM 2020, arXiv:2111.02036), as MMRec implements it
    (``src/models/grcn.py``: ``weight_mode="confid"``, ``fusion_mode="concat"``, normalised
    inputs, no activations, sum aggregation, no edge dropout).

    **Content side, per modality** :math:`m` (latent width :math:`C`): item features
    :math:`\mathbf{f}_i = \mathrm{normalize}(\mathrm{lrelu}(W_m\mathbf{x}^m_i + \mathbf{b}_m))`,
    user preferences :math:`\mathbf{p}_u = \mathrm{normalize}(\mathbf{P}^m_u)`, refined by
    :math:`T` routing iterations over each user's items (the paper's prototype routing)

    .. math::
        a_{ui} = \mathrm{softmax}_{i \in N_u}(\mathbf{p}_u^\top\mathbf{f}_i),\qquad
        \mathbf{p}_u \leftarrow \mathrm{normalize}\Big(\mathbf{p}_u
        + \sum_{i \in N_u} a_{ui}\mathbf{f}_i\Big);

    then with :math:`\mathbf{z} = [\mathbf{p}; \mathbf{f}]` over all :math:`U+I` nodes and both
    edge directions, one attention layer gives the edge weights and the content representation

    .. math::
        \alpha^m_{v\leftarrow w} = \mathrm{softmax}_{w \in N_v}(\mathbf{z}_v^\top\mathbf{z}_w),
        \qquad \mathbf{c}^m_v = \mathbf{z}_v + \sum_{w \in N_v}\alpha^m_{v\leftarrow w}
        \mathbf{z}_w.

    **Graph refining:** each message :math:`w \to v` is weighted by the most confident
    modality, :math:`\omega_{v\leftarrow w} = \mathrm{relu}(\max_m \alpha^m_{v\leftarrow w}
    \kappa_{w,m})`, with a learned confidence :math:`\kappa \in \mathbb R^{(U+I)\times|M|}`
    of the message's source node. **ID side:** two propagation layers over the refined graph

    .. math::
        \mathbf{E}^{0} = \mathrm{normalize}([\mathbf{U}^{id}; \mathbf{I}^{id}]),\quad
        \mathbf{E}^{l}_v = \sum_{w \in N_v}\omega_{v\leftarrow w}\mathbf{E}^{l-1}_w,\quad
        \mathbf{e} = \mathbf{E}^0 + \mathbf{E}^1 + \mathbf{E}^2,

    and the representation is :math:`[\mathbf{e} \Vert \mathbf{c}^{1} \Vert \cdots \Vert
    \mathbf{c}^{|M|}]` (width :math:`d + |M| C`), scored by inner product. The loss:

    .. math::
        \mathcal L = \mathrm{BPR} + \lambda\Big(\frac{1}{2Bd}\sum_b\big(2\lVert
        \mathbf{u}^{id}_{u_b}\rVert^2 + \lVert\mathbf{i}^{id}_{i^+_b}\rVert^2
        + \lVert\mathbf{i}^{id}_{i^-_b}\rVert^2\big) + \sum_m\Big(\overline{(\mathbf{P}^m)^2}
        + \frac{1}{BC}\sum_b\lVert\mathbf{P}^m_{u_b}\rVert^2\Big)\Big).

    Differences from the reference, on purpose: MMRec's routing aggregates along user->item
    edges, so no user ever receives a message and its routing leaves the preferences unchanged;
    here users are routed over their items as the paper describes (``num_layers=0`` computes
    exactly what MMRec computes). MMRec regularises the full preference table of the visual
    modality only; here of every modality.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        edge_index (Tensor): int64 :math:`(2, 2|E|)`, both directions of the training edges
            (items offset by :math:`U`, users->items first) from
            :func:`lirdrec.graphs.bipartite_edge_index`.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` raw features (fixed).
        embedding_dim (int, optional): :math:`d`. (default: ``64``)
        latent_dim (int, optional): :math:`C` (MMRec ``latent_embedding``). (default: ``64``)
        num_layers (int, optional): :math:`T`, routing iterations (MMRec ``n_layers``).
            (default: ``3``)
        reg_weight (float, optional): :math:`\lambda`. (default: ``0.1``)

    Shapes:
        - **forward:** users :math:`(U, d + |M|C)`, items :math:`(I, d + |M|C)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items, neg_items :math:`(B,)` -> scalar
    """

    scores_cold_items = True  # an item's content representation comes from its features
    feature_branch = ("mlps",)

    constraints = {
        "embedding_dim": Interval(1, integer=True),
        "latent_dim": Interval(1, integer=True),
        "num_layers": Interval(0, integer=True),
        "reg_weight": Interval(0),
    }

    def __init__(self, num_users: int, num_items: int, edge_index: Tensor,
                 features: Mapping[str, Tensor], embedding_dim: int = 64, latent_dim: int = 64,
                 num_layers: int = 3, reg_weight: float = 0.1) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        edge_index = torch.as_tensor(edge_index, dtype=torch.long)
        ok = (edge_index.dim() == 2 and edge_index.shape[0] == 2
              and edge_index.shape[1] % 2 == 0 and bool((edge_index < self.num_nodes).all()))
        check_param(type(self).__name__, "edge_index", tuple(edge_index.shape), ok,
                    f"an int64 (2, 2|E|) tensor of both edge directions over {self.num_nodes} "
                    "nodes")
        self.modalities, mats = check_features(type(self).__name__, features, self.num_items)
        self.embedding_dim = int(embedding_dim)
        self.latent_dim = int(latent_dim)
        self.num_layers = int(num_layers)
        self.reg_weight = float(reg_weight)
        # a message w -> v is the edge (source w, target v); edges sorted by (target, source),
        # the order of a CSR pattern's entries, so sampled products and weights line up
        n = self.num_nodes
        key = torch.unique(edge_index[1] * n + edge_index[0])
        dst, src = key // n, key % n
        to_user = dst < self.num_users  # item -> user messages, for the routing
        self.register_buffer("edge_src", src, persistent=False)
        self.register_buffer("edge_dst", dst, persistent=False)
        self.register_buffer("pattern", sparse_from_coo(dst, src, torch.ones(len(key)), (n, n)),
                             persistent=False)
        self.register_buffer("route_users", dst[to_user], persistent=False)
        for name, t in zip(("crow", "col", "crow_t", "col_t", "perm_t"),
                           edge_layout(dst, src, n, n)):
            self.register_buffer(f"edges_{name}", t, persistent=False)
        for name, t in zip(("crow", "col", "crow_t", "col_t", "perm_t"),
                           edge_layout(dst[to_user], src[to_user] - self.num_users,
                                       self.num_users, self.num_items)):
            self.register_buffer(f"route_{name}", t, persistent=False)
        self.register_buffer("route_pattern", sparse_from_coo(
            dst[to_user], src[to_user] - self.num_users, torch.ones(int(to_user.sum())),
            (self.num_users, self.num_items)), persistent=False)
        for k, x in enumerate(mats):  # fixed inputs: buffers that follow .to(), rebuilt on load
            self.register_buffer(f"features_{k}", x, persistent=False)
        self._add_id_embeddings(self.embedding_dim)
        self.mlps = nn.ModuleList(nn.Linear(x.shape[1], self.latent_dim) for x in mats)
        self.preferences = nn.ParameterList(
            nn.Parameter(torch.empty(self.num_users, self.latent_dim)) for _ in mats)
        self.confidence = nn.Parameter(torch.empty(self.num_nodes, len(mats)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference's: Xavier-normal ID table (one draw for the stacked :math:`(U+I, d)`
        table), preferences, confidences and projection weights; projection biases torch's
        default.
        """
        std = math.sqrt(2.0 / (self.num_nodes + self.embedding_dim))
        with torch.no_grad():
            self.user_emb.normal_(0.0, std)
            self.item_emb.normal_(0.0, std)
        for mlp, pref in zip(self.mlps, self.preferences):
            mlp.reset_parameters()
            nn.init.xavier_normal_(mlp.weight)
            nn.init.xavier_normal_(pref)
        nn.init.xavier_normal_(self.confidence)

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "GRCN":
        """Both directions of the training edges from :mod:`lirdrec.graphs`."""
        edge_index = bipartite_edge_index(ds.num_users, ds.num_items, np.asarray(ds.train.users),
                                          np.asarray(ds.train.items))
        return cls(ds.num_users, ds.num_items, edge_index, ds.features_tensor(), **kwargs)

    def raw_features(self) -> list[Tensor]:
        """The fixed feature matrices, one :math:`(I, d_m)` per modality."""
        return [getattr(self, f"features_{k}") for k in range(len(self.modalities))]

    def _content(self, x: Tensor, mlp: nn.Linear, pref: Tensor) -> tuple[Tensor, Tensor]:
        """Content representation :math:`(U+I, C)` and attention :math:`(2|E|,)` of a modality."""
        n, dst = self.num_nodes, self.edge_dst
        f = F.normalize(F.leaky_relu(mlp(x)), dim=1)  # (I, C)
        p = F.normalize(pref, dim=1)  # (U, C)
        users, route = self.route_users, self._layout("route")
        for _ in range(self.num_layers):  # routing: users attend over their items
            a = edge_softmax(edge_scores(self.route_pattern, p, f), users, self.num_users)
            p = F.normalize(p + weighted_spmm(route, a, f), dim=1)
        z = torch.cat([p, f])  # (U+I, C)
        alpha = edge_softmax(edge_scores(self.pattern, z, z), dst, n)  # (2|E|,)
        return z + weighted_spmm(self._layout("edges"), alpha, z), alpha

    def _layout(self, prefix: str) -> tuple[Tensor, ...]:
        return tuple(getattr(self, f"{prefix}_{k}") for k in ("crow", "col", "crow_t", "col_t",
                                                               "perm_t"))

    def forward(self) -> tuple[Tensor, Tensor]:
        raw = self.encoded_features() or self.raw_features()  # end-to-end: from an encoder
        contents, alphas = zip(*(self._content(x, mlp, pref) for x, mlp, pref
                                 in zip(raw, self.mlps, self.preferences)))
        # refined edge weight: the most confident modality's attention, confidence of the source
        weight = torch.relu((torch.stack(alphas, 1) * self.confidence[self.edge_src]).amax(1))
        e0 = F.normalize(torch.cat([self.user_emb, self.item_emb]), dim=1)  # (U+I, d)
        layout = self._layout("edges")
        e1 = weighted_spmm(layout, weight, e0)
        e2 = weighted_spmm(layout, weight, e1)
        out = torch.cat([e0 + e1 + e2, *contents], dim=1)  # (U+I, d + |M| C)
        return out[: self.num_users], out[self.num_users:]

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        user_emb, item_emb = self.forward()
        u = user_emb[users]
        rank = bpr_loss((u * item_emb[pos_items]).sum(-1), (u * item_emb[neg_items]).sum(-1))
        ids = (2 * self.user_emb[users].pow(2).sum() + self.item_emb[pos_items].pow(2).sum()
               + self.item_emb[neg_items].pow(2).sum()) / (2 * len(users) * self.embedding_dim)
        prefs = sum(p.pow(2).mean() + p[users].pow(2).mean() for p in self.preferences)
        return rank + self.reg_weight * (ids + prefs)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"item_id": [self.item_emb], "item_feature": list(self.mlps.parameters()),
                "user": [self.user_emb, *self.preferences], "other": [self.confidence]}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, embedding_dim={self.embedding_dim}, "
                f"latent_dim={self.latent_dim}, modalities={self.modalities}, "
                f"num_layers={self.num_layers}")
