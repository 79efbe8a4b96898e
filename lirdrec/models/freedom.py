"""FREEDOM: frozen item-item graph and degree-sensitive pruning of the user-item graph."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from lirdrec.graphs import (
    bipartite_adjacency,
    build_item_graph,
    degree_sensitive_prune,
    knn_modality_weights,
    propagate,
    spmm,
    transpose_csr,
    user_item_edges,
)
from lirdrec.models._features import check_features, feature_tables, make_generator
from lirdrec.models.base import (
    GeneratorStateMixin,
    Interval,
    Recommender,
    Shape,
    bpr_loss,
    check_arguments,
)
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["FREEDOM", "degree_sensitive_prune", "modality_weights", "frozen_item_graph"]


def modality_weights(modalities: Sequence[str], mm_image_weight: float) -> list[float]:
    r"""Mixing weights of the per-modality item graphs, in ``modalities`` order: the one rule of
    :func:`lirdrec.graphs.knn_modality_weights` (the modality named ``"image"``, the first one
    if none is, gets :math:`w`; the others share :math:`1-w`; a single modality gets 1).

    >>> modality_weights(["image", "text"], 0.1)
    [0.1, 0.9]
    >>> modality_weights(["text", "image", "meta"], 0.2)
    [0.4, 0.2, 0.4]
    """
    return list(knn_modality_weights(modalities, mm_image_weight).values())


def frozen_item_graph(mats: Sequence[Tensor], modalities: Sequence[str], knn_k: int,
                      mm_image_weight: float, chunk_size: int | None = None) -> Tensor:
    r""":math:`S = \sum_m w_m\, D_m^{-1/2} S_m D_m^{-1/2}`: unit-weight cosine kNN graph of each
    modality's raw features (item itself included, every kept value :math:`1/k`), mixed with
    :func:`modality_weights`: :func:`lirdrec.graphs.build_item_graph` of the matrices named by
    ``modalities``. Sparse CSR :math:`(I, I)`, built in row chunks.
    """
    return build_item_graph(dict(zip(modalities, mats)), knn_k, mm_image_weight, "image",
                            chunk_size)


@register("freedom")
class FREEDOM(GeneratorStateMixin, Recommender):
    r"""FREEDOM from "A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
    Recommendation" (Zhou & Shen, ACM MM 2023, arXiv:2211.06924), as MMRec implements it.

    Two graphs. A frozen item-item graph :math:`S` (:func:`frozen_item_graph`, built once from
    the raw features) propagates item ID embeddings; a user-item graph, pruned afresh before each
    training epoch (:func:`degree_sensitive_prune`, keeping :math:`\lfloor|E|(1-\rho)\rfloor`
    edges), carries LightGCN propagation with layer mean:

    .. math::
        \mathbf{h}_i = (S^{n}\mathbf{E}^{id})_i,\qquad
        [\mathbf{U};\bar{\mathbf{E}}] = \frac{1}{L+1}\sum_{l=0}^{L}\tilde A^{l}
        [\mathbf{P};\mathbf{E}^{id}],\qquad
        \mathbf{u}_u = \mathbf{U}_u,\quad \mathbf{i}_i = \bar{\mathbf{E}}_i + \mathbf{h}_i,

    :math:`\hat y_{ui} = \mathbf{u}_u^\top\mathbf{i}_i`. Training uses the pruned
    :math:`\tilde A`; :meth:`forward` (evaluation) uses the full :math:`\hat A`. As in the
    reference, the projected features :math:`\mathbf{f}^m_i = W_m\mathbf{x}^m_i + \mathbf{b}_m`
    do not enter :math:`\mathbf{i}_i`; they appear only in the feature-side BPR term

    .. math::
        \mathcal L = \mathrm{BPR}(\mathbf{u}, \mathbf{i}) + \lambda \sum_{m}
        \mathrm{BPR}(\mathbf{u}, \mathbf{f}^m),

    where :math:`\mathrm{BPR}(\mathbf{u},\mathbf{v}) = -\frac1B\sum_b
    \log\sigma(\mathbf{u}_u^\top\mathbf{v}_{i^+} - \mathbf{u}_u^\top\mathbf{v}_{i^-})`. The raw
    feature tables are fine-tuned (``train_features=True``, the reference's
    ``Embedding.from_pretrained(freeze=False)``); they reach the loss only through
    :math:`\mathbf{f}^m`, so with :math:`\lambda = 0` they and :math:`W_m` get no gradient (the
    term is then skipped; Adam leaves parameters with zero or no gradient unchanged alike).

    Any number of modalities: one projection and one BPR term per modality, the kNN graphs mixed
    by :func:`modality_weights`. Unused reference keys (``lambda_coeff``, ``degree_ratio``,
    ``feat_embed_dim`` which must equal :math:`d`) are not arguments. Pruning randomness comes
    from the model's own :class:`torch.Generator` (state saved by :meth:`extra_state`).

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        adj (Tensor): :math:`\hat A`, sparse CSR :math:`(U+I, U+I)` from
            :func:`lirdrec.graphs.bipartite_adjacency`; its user->item entries are the training
            edges and their pruning weights.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` raw features.
        item_graph (Tensor | None): :math:`S`, sparse :math:`(I, I)`, e.g. from
            :func:`frozen_item_graph`; ``None`` builds it from ``features`` with ``knn_k`` and
            ``mm_image_weight``.
        embedding_dim (int, optional): :math:`d`. (default: ``64``)
        n_ui_layers (int, optional): :math:`L`. (default: ``2``)
        n_mm_layers (int, optional): :math:`n`, item-graph layers. (default: ``1``)
        knn_k (int, optional): neighbours per item. (default: ``10``)
        mm_image_weight (float, optional): :math:`w` in :func:`modality_weights`. (default: ``0.1``)
        dropout (float, optional): :math:`\rho`, fraction of edges pruned each epoch; ``0``
            trains on :math:`\hat A`. (default: ``0.8``)
        reg_weight (float, optional): :math:`\lambda`. (default: ``0.0``)
        train_features (bool, optional): fine-tune the raw features. (default: ``True``)
        generator_seed (int, optional): seed of the pruning generator; ``None`` draws it from
            torch's global RNG at construction. (default: ``None``)
        knn_chunk_size (int | None, optional): rows per kNN similarity chunk; ``None``:
            :func:`lirdrec.graphs.auto_chunk_size`. (default: ``None``)

    Shapes:
        - **forward:** users :math:`(U, d)`, items :math:`(I, d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items, neg_items :math:`(B,)` -> scalar
    """

    scores_cold_items = True  # items are computed from their features

    #: submodules whose output is the feature-derived item representation (gradient-bias hooks)
    feature_branch = ("projections",)

    #: the edge list and its sampling weights stay on the CPU (pruning draws from the CPU
    #: generator); the pruned graph of the epoch is rebuilt from them and moved to ``adj``'s device
    unregistered_tensors = ("_edge_users", "_edge_items", "_edge_probs", "_train_adj")

    constraints = {
        "adj": Shape("num_nodes", "num_nodes"),
        "item_graph": Shape("num_items", "num_items", optional=True),
        "embedding_dim": Interval(1, integer=True),
        "n_ui_layers": Interval(0, integer=True),
        "n_mm_layers": Interval(0, integer=True),
        "knn_k": Interval(1, "num_items", integer=True),
        "mm_image_weight": Interval(0, 1),
        "dropout": Interval(0, 1, closed="left"),
        "reg_weight": Interval(0),
        "knn_chunk_size": Interval(1, integer=True, optional=True),
    }

    def __init__(self, num_users: int, num_items: int, adj: Tensor, features: Mapping[str, Tensor],
                 item_graph: Tensor | None, embedding_dim: int = 64, n_ui_layers: int = 2,
                 n_mm_layers: int = 1, knn_k: int = 10, mm_image_weight: float = 0.1,
                 dropout: float = 0.8, reg_weight: float = 0.0, train_features: bool = True,
                 generator_seed: int | None = None, knn_chunk_size: int | None = None) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.modalities, mats = check_features(type(self).__name__, features, self.num_items)
        self.embedding_dim = int(embedding_dim)
        self.n_ui_layers = int(n_ui_layers)
        self.n_mm_layers = int(n_mm_layers)
        self.knn_k = int(knn_k)
        self.mm_image_weight = float(mm_image_weight)
        self.dropout = float(dropout)
        self.reg_weight = float(reg_weight)
        self.train_features = bool(train_features)

        # constant graphs: non-persistent buffers (follow .to(), rebuilt by from_dataset)
        self.register_buffer("adj", adj, persistent=False)
        if item_graph is None:  # from_dataset passes it; a test may build the model from tensors
            item_graph = frozen_item_graph(mats, self.modalities, self.knn_k, self.mm_image_weight,
                                           knn_chunk_size)
        self.register_buffer("item_graph", item_graph, persistent=False)
        self.register_buffer("item_graph_t", transpose_csr(item_graph), persistent=False)
        # the edge list stays on the CPU, where the pruning draws from the CPU generator
        self._edge_users, self._edge_items, self._edge_probs = user_item_edges(adj, self.num_users)
        self._train_adj: Tensor | None = None

        self._add_id_embeddings(self.embedding_dim)
        self.features = feature_tables(mats, self.train_features)
        self.projections = nn.ModuleList(nn.Linear(x.shape[1], self.embedding_dim) for x in mats)
        self.reset_parameters()
        self.generator, self.generator_seed = make_generator(generator_seed)

    def reset_parameters(self) -> None:
        self._reset_id_embeddings()
        for proj in self.projections:
            proj.reset_parameters()

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "FREEDOM":
        r""":math:`\hat A` and the frozen item graph :math:`S` from :mod:`lirdrec.graphs`."""
        cls.check_kwargs(ds, kwargs)
        adj = bipartite_adjacency(ds.num_users, ds.num_items, ds.train.users, ds.train.items)
        features = ds.features_tensor()
        item_graph = build_item_graph(features, cls.default("knn_k", kwargs),
                                      cls.default("mm_image_weight", kwargs), "image",
                                      cls.default("knn_chunk_size", kwargs))
        return cls(ds.num_users, ds.num_items, adj, features, item_graph, **kwargs)

    # ------------------------------------------------------------------ graphs
    @property
    def num_kept_edges(self) -> int:
        r""":math:`\lfloor |E| (1-\rho) \rfloor`, edges kept by each pruning (the reference's
        ``int(E * (1. - dropout))``, float rounding included).
        """
        return int(self._edge_users.shape[0] * (1.0 - self.dropout))

    def on_epoch_start(self, epoch: int) -> None:
        r"""Prune the user-item graph for this epoch (the full :math:`\hat A` if
        ``dropout == 0``).
        """
        if self.dropout <= 0.0:
            self._train_adj = self.adj
            return
        self._train_adj = degree_sensitive_prune(
            self._edge_users, self._edge_items, self._edge_probs, self.num_users, self.num_items,
            self.num_kept_edges, self.generator).to(self.adj.device, self.adj.dtype)

    # ------------------------------------------------------------------ model
    def _embed(self, adj: Tensor) -> tuple[Tensor, Tensor]:
        h = self.item_emb
        for _ in range(self.n_mm_layers):
            h = spmm(self.item_graph, h, self.item_graph_t)  # (I, d)
        out = propagate(adj, torch.cat([self.user_emb, self.item_emb]), self.n_ui_layers, "mean")
        return out[: self.num_users], out[self.num_users:] + h

    def forward(self) -> tuple[Tensor, Tensor]:
        return self._embed(self.adj)

    def projected_features(self) -> list[Tensor]:
        r""":math:`\mathbf{f}^m = W_m \mathbf{X}_m + \mathbf{b}_m`, one :math:`(I, d)` per
        modality.
        """
        raw = self.encoded_features() or list(self.features)  # end-to-end: from an encoder
        return [proj(x) for proj, x in zip(self.projections, raw)]

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        if self._train_adj is None:
            self.on_epoch_start(0)
        user_emb, item_emb = self._embed(self._train_adj)
        u = user_emb[users]  # (B, d)
        rank = bpr_loss((u * item_emb[pos_items]).sum(-1), (u * item_emb[neg_items]).sum(-1))
        if self.reg_weight == 0.0:  # the side term would add 0 and zero gradients: skip its cost
            return rank
        side = sum(bpr_loss((u * f[pos_items]).sum(-1), (u * f[neg_items]).sum(-1))
                   for f in self.projected_features())
        return rank + self.reg_weight * side

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"item_id": [self.item_emb],
                "item_feature": list(self.features) + list(self.projections.parameters()),
                "user": [self.user_emb], "other": []}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, embedding_dim={self.embedding_dim}, "
                f"modalities={self.modalities}, n_ui_layers={self.n_ui_layers}, "
                f"n_mm_layers={self.n_mm_layers}, knn_k={self.knn_k}, dropout={self.dropout}")
