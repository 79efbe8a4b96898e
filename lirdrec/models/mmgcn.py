"""MMGCN: one graph convolution network per modality over the user-item graph."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirdrec.graphs import mean_adjacency, spmm, transpose_csr
from lirdrec.models._features import check_features
from lirdrec.models.base import Interval, Recommender, Shape, bpr_loss, check_arguments
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["MMGCN", "ModalGCN"]


class ModalGCN(nn.Module):
    r"""The graph network of one modality :math:`m` in MMGCN (Wei et al. 2019, Sec. 3).

    Input :math:`\mathbf{X}^{(0)} = \mathrm{normalize}([\mathbf{P}_m; \mathbf{F}_m])`, the
    row-L2-normalised stack of the users' preference vectors :math:`\mathbf{P}_m` and the item
    features :math:`\mathbf{F}_m`, then for :math:`l = 1..L`, with
    :math:`\mathrm{lrelu}` the leaky ReLU (slope 0.01) and :math:`\bar A = D^{-1}A`
    (neighbour mean):

    .. math::
        \mathbf{H}^{(l)} &= \mathrm{lrelu}\big(\bar A\,\mathbf{X}^{(l-1)} W_l\big)
            &&\text{(aggregation, Eq. 1)}\\
        \hat{\mathbf{X}}^{(l)} &= \mathrm{lrelu}\big(\mathbf{X}^{(l-1)} V_l^\top + \mathbf{c}_l\big)
            + \mathbf{E}^{id} &&\text{(Eq. 5)}\\
        \mathbf{X}^{(l)} &= \mathrm{lrelu}\big([\mathbf{H}^{(l)} \Vert \hat{\mathbf{X}}^{(l)}]
            G_l^\top + \mathbf{g}_l\big) &&\text{(combination, concatenation form)}

    with :math:`W_1` of shape :math:`(d_m, d_m)`, :math:`W_{l>1}` :math:`(d, d)`, :math:`V_l`
    :math:`(d, \cdot)`, :math:`G_l` :math:`(d, \cdot + d)`.

    Shapes:
        - features :math:`(I, d_m)`, id_emb :math:`(U+I, d)`, adj :math:`(U+I, U+I)` ->
          :math:`(U+I, d)`
    """

    def __init__(self, num_users: int, in_dim: int, embedding_dim: int, num_layers: int) -> None:
        super().__init__()
        self.preference = nn.Parameter(torch.empty(num_users, in_dim))
        dims = [in_dim] + [embedding_dim] * num_layers
        self.convs = nn.ParameterList(nn.Parameter(torch.empty(dims[k], dims[k]))
                                      for k in range(num_layers))
        self.linears = nn.ModuleList(nn.Linear(dims[k], embedding_dim)
                                     for k in range(num_layers))
        self.gates = nn.ModuleList(nn.Linear(dims[k] + embedding_dim, embedding_dim)
                                   for k in range(num_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference's: Xavier-normal preference, convolution and linear weights, and the
        first combination layer; later combination layers and every bias torch's default.
        """
        nn.init.xavier_normal_(self.preference)
        for k, (conv, lin, gate) in enumerate(zip(self.convs, self.linears, self.gates)):
            nn.init.xavier_normal_(conv)
            lin.reset_parameters()
            nn.init.xavier_normal_(lin.weight)
            gate.reset_parameters()
            if k == 0:
                nn.init.xavier_normal_(gate.weight)

    def forward(self, features: Tensor, id_emb: Tensor, adj: Tensor, adj_t: Tensor) -> Tensor:
        # row-wise: normalising the halves apart is the same, and fixed features need no backward
        x = torch.cat([F.normalize(self.preference, dim=1), F.normalize(features, dim=1)])
        for conv, lin, gate in zip(self.convs, self.linears, self.gates):
            h = F.leaky_relu(spmm(adj, x @ conv, adj_t))  # neighbour mean of x W
            x_hat = F.leaky_relu(lin(x)) + id_emb
            x = F.leaky_relu(gate(torch.cat([h, x_hat], dim=1)))  # (U+I, d)
        return x


@register("mmgcn")
class MMGCN(Recommender):
    r"""MMGCN from "MMGCN: Multi-modal Graph Convolution Network for Personalized Recommendation
    of Micro-video" (Wei et al., ACM MM 2019, arXiv:1908.08726), as MMRec implements it
    (``src/models/mmgcn.py``).

    Each modality :math:`m` runs its own :class:`ModalGCN` over the user-item graph, all sharing
    the ID embeddings :math:`\mathbf{E}^{id} = [\mathbf{U}^{id}; \mathbf{I}^{id}]`; the
    representation is their mean, scored by inner product:

    .. math::
        [\mathbf{u}; \mathbf{i}] = \frac{1}{|M|}\sum_{m} \mathrm{GCN}_m(\mathbf{F}_m),\qquad
        \hat y_{ui} = \mathbf{u}_u^\top\mathbf{i}_i,

    where :math:`\mathbf{F}_m = \mathbf{X}_m W^{mlp\top} + \mathbf{b}^{mlp}` (a linear layer
    to ``dim_latent``) for the modality named ``"image"`` and the raw features :math:`\mathbf{X}_m`
    for the others, as the reference projects only its visual features. The loss is

    .. math::
        \mathcal L = \mathrm{BPR} + \lambda\Big(\frac{1}{2Bd}\sum_b \big(2\lVert
        \mathbf{e}^{id}_{u_b}\rVert^2 + \lVert\mathbf{e}^{id}_{i^+_b}\rVert^2
        + \lVert\mathbf{e}^{id}_{i^-_b}\rVert^2\big)
        + \sum_m \overline{\mathbf{P}_m^{2}}\Big),

    the reference's element mean over the batch's (user, item) ID rows plus the mean square of
    the preference vectors (:math:`\overline{\,\cdot\,}`: mean over all entries).

    Differences from the reference, each on purpose: its ID embeddings and preference vectors
    are plain tensors that its optimiser never sees (they stay at their random initialisation);
    here they are trained, as in the paper (``train_ids=False`` freezes them, the reference's
    computation, for fidelity runs). Its graph networks always have 3 layers whatever
    ``n_layers`` says; here :math:`L` = ``num_layers`` (default 3, what it computes). It
    regularises the visual preference only; here every modality's. Features are fixed inputs
    (not fine-tuned), as there.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        adj (Tensor): :math:`\bar A = D^{-1}A`, sparse CSR :math:`(U+I, U+I)` from
            :func:`lirdrec.graphs.mean_adjacency`.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` raw features.
        embedding_dim (int, optional): :math:`d`. (default: ``64``)
        num_layers (int, optional): :math:`L`. (default: ``3``)
        dim_latent (int, optional): width of the image projection. (default: ``256``)
        reg_weight (float, optional): :math:`\lambda`. (default: ``0.0``)
        train_ids (bool, optional): train the ID embeddings and preference vectors; ``False``
            keeps them at their initialisation, as the reference does. (default: ``True``)

    Shapes:
        - **forward:** users :math:`(U, d)`, items :math:`(I, d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items, neg_items :math:`(B,)` -> scalar
    """

    scores_cold_items = True  # an item's features enter its representation
    feature_branch = ("mlps",)

    constraints = {
        "adj": Shape("num_nodes", "num_nodes"),
        "embedding_dim": Interval(1, integer=True),
        "num_layers": Interval(1, integer=True),
        "dim_latent": Interval(1, integer=True),
        "reg_weight": Interval(0),
    }

    def __init__(self, num_users: int, num_items: int, adj: Tensor,
                 features: Mapping[str, Tensor], embedding_dim: int = 64, num_layers: int = 3,
                 dim_latent: int = 256, reg_weight: float = 0.0, train_ids: bool = True) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.modalities, mats = check_features(type(self).__name__, features, self.num_items)
        self.embedding_dim = int(embedding_dim)
        self.num_layers = int(num_layers)
        self.dim_latent = int(dim_latent)
        self.reg_weight = float(reg_weight)
        self.register_buffer("adj", adj, persistent=False)
        self.register_buffer("adj_t", transpose_csr(adj), persistent=False)
        for k, x in enumerate(mats):  # fixed inputs: buffers that follow .to(), rebuilt on load
            self.register_buffer(f"features_{k}", x, persistent=False)
        # the reference projects its visual features only
        self.mlps = nn.ModuleDict({m: nn.Linear(x.shape[1], self.dim_latent)
                                   for m, x in zip(self.modalities, mats) if m == "image"})
        in_dims = [self.dim_latent if m in self.mlps else x.shape[1]
                   for m, x in zip(self.modalities, mats)]
        self._add_id_embeddings(self.embedding_dim)
        self.gcns = nn.ModuleList(ModalGCN(self.num_users, k, self.embedding_dim, self.num_layers)
                                  for k in in_dims)
        self.train_ids = bool(train_ids)
        for p in [self.user_emb, self.item_emb, *(g.preference for g in self.gcns)]:
            p.requires_grad_(self.train_ids)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """ID tables: one Xavier-normal draw for the stacked :math:`(U+I, d)` table, as the
        reference's single ``id_embedding``; the rest as :meth:`ModalGCN.reset_parameters`.
        """
        std = math.sqrt(2.0 / (self.num_nodes + self.embedding_dim))
        with torch.no_grad():
            self.user_emb.normal_(0.0, std)
            self.item_emb.normal_(0.0, std)
        for mlp in self.mlps.values():
            mlp.reset_parameters()
        for gcn in self.gcns:
            gcn.reset_parameters()

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "MMGCN":
        r""":math:`\bar A` from :mod:`lirdrec.graphs`."""
        adj = mean_adjacency(ds.num_users, ds.num_items, ds.train.users, ds.train.items)
        return cls(ds.num_users, ds.num_items, adj, ds.features_tensor(), **kwargs)

    def raw_features(self) -> list[Tensor]:
        """The fixed feature matrices, one :math:`(I, d_m)` per modality."""
        return [getattr(self, f"features_{k}") for k in range(len(self.modalities))]

    def forward(self) -> tuple[Tensor, Tensor]:
        raw = self.encoded_features() or self.raw_features()  # end-to-end: from an encoder
        id_emb = torch.cat([self.user_emb, self.item_emb])  # (U+I, d)
        out = 0
        for m, x, gcn in zip(self.modalities, raw, self.gcns):
            f = self.mlps[m](x) if m in self.mlps else x  # (I, d_m)
            out = out + gcn(f, id_emb, self.adj, self.adj_t)
        out = out / len(self.gcns)
        return out[: self.num_users], out[self.num_users:]

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        user_emb, item_emb = self.forward()
        u = user_emb[users]  # (B, d)
        rank = bpr_loss((u * item_emb[pos_items]).sum(-1), (u * item_emb[neg_items]).sum(-1))
        if self.reg_weight == 0.0:
            return rank
        ids = (2 * self.user_emb[users].pow(2).sum() + self.item_emb[pos_items].pow(2).sum()
               + self.item_emb[neg_items].pow(2).sum()) / (2 * len(users) * self.embedding_dim)
        prefs = sum(gcn.preference.pow(2).mean() for gcn in self.gcns)
        return rank + self.reg_weight * (ids + prefs)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        prefs = [gcn.preference for gcn in self.gcns]
        other = [p for gcn in self.gcns for n, p in gcn.named_parameters() if n != "preference"]
        return {"item_id": [self.item_emb],
                "item_feature": list(self.mlps.parameters()),
                "user": [self.user_emb, *prefs], "other": other}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, embedding_dim={self.embedding_dim}, "
                f"modalities={self.modalities}, num_layers={self.num_layers}, "
                f"dim_latent={self.dim_latent}")
