"""MGCN: multi-view graph convolution with a behaviour-guided purifier and fuser."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from lirdrec.graphs import (
    bipartite_adjacency,
    build_knn_graph,
    propagate,
    spmm,
    transpose_csr,
    user_item_block,
)
from lirdrec.models._features import check_features, feature_tables
from lirdrec.models.base import (
    Interval,
    Recommender,
    Shape,
    check_arguments,
    check_param,
    content_side_loss,
)
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["MGCN", "modality_knn_graphs", "register_user_item_block"]


def modality_knn_graphs(features: Sequence[Tensor], knn_k: int,
                        chunk_size: int | None = None) -> list[Tensor]:
    r"""One item graph per modality: cosine top-:math:`k` of the raw features with the cosine
    values kept, :math:`D^{-1/2}SD^{-1/2}` by row sums (MMRec's ``build_knn_normalized_graph``
    with ``norm_type="sym"``; :func:`lirdrec.graphs.build_knn_graph` with ``weighted=True``).
    """
    return [build_knn_graph(x, knn_k, "sym", weighted=True, chunk_size=chunk_size)
            for x in features]


def register_user_item_block(model: nn.Module, adj: Tensor) -> None:
    r"""Buffers ``ui`` (:math:`\hat R = \hat A_{UI}`, :math:`(U, I)`) and ``ui_t`` (its
    transpose) of :func:`item_view`, built once from ``adj``; they follow ``.to()``.
    """
    ui = user_item_block(adj, model.num_users)
    model.register_buffer("ui", ui, persistent=False)
    model.register_buffer("ui_t", transpose_csr(ui), persistent=False)


def sigmoid_gate(dim: int) -> nn.Sequential:
    r"""MGCN's and SMORE's purifier and preference gates,
    :math:`\sigma(\mathbf{W}\mathbf{x} + \mathbf{b})`, :math:`(N, d) \to (N, d)`.
    """
    return nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid())


def item_view(h: Tensor, graph: Tensor, graph_t: Tensor, n_mm_layers: int, ui: Tensor,
              ui_t: Tensor) -> Tensor:
    r"""One item-item view: :math:`\mathbf{H} \leftarrow \mathbf{S}^n \mathbf{H}` over the
    modality's item graph, users as :math:`\hat{\mathbf{R}}\mathbf{H}` through the user-item
    block :math:`\hat R` of the normalised adjacency (``ui``,
    :func:`lirdrec.graphs.user_item_block`; ``ui_t`` its transpose, for the backward);
    ``(I, d)`` -> ``(U + I, d)`` (users above items).
    """
    for _ in range(n_mm_layers):
        h = spmm(graph, h, graph_t)
    return torch.cat([spmm(ui, h, ui_t), h])


@register("mgcn")
class MGCN(Recommender):
    r"""MGCN from "Multi-View Graph Convolutional Network for Multimedia Recommendation" (Yu et
    al., ACM MM 2023, arXiv:2308.03588), as MMRec implements it (``src/models/mgcn.py``).

    **Behaviour-guided purifier** (Sec. 3.2): the item ID embeddings :math:`\mathbf{Q}` gated
    by each modality's projected (fine-tuned) features,
    :math:`\tilde{\mathbf{E}}_m = \mathbf{Q}\odot\sigma(W^g_m(\mathbf{X}_mW_m^\top +
    \mathbf{b}_m) + \mathbf{b}^g_m)`. **Views** (Sec. 3.3): the user-item view is LightGCN
    (layer mean over :math:`0..L` on :math:`\hat A`) of :math:`[\mathbf{P};\mathbf{Q}]`, giving
    :math:`\mathbf{C}`; the item-item view of modality :math:`m` propagates
    :math:`\tilde{\mathbf{E}}_m` :math:`n` times over its frozen kNN graph
    :math:`S_m` (:func:`modality_knn_graphs`), users aggregating their items with the
    normalised interaction block :math:`\hat R = \hat A_{UI}`:

    .. math::
        \mathbf{H}_m = S_m^{n}\tilde{\mathbf{E}}_m,\qquad
        \mathbf{E}_m = [\hat R\,\mathbf{H}_m;\ \mathbf{H}_m].

    **Behaviour-aware fuser** (Sec. 3.4): attention weights
    :math:`\beta_{v,m} = \mathrm{softmax}_m(\mathbf{q}^\top\tanh(W_q\mathbf{E}_{m,v} +
    \mathbf{b}_q))` give the common part and behaviour-gated specific parts,

    .. math::
        \mathbf{E}^c = \sum_m \beta_m\mathbf{E}_m,\quad
        \mathbf{E}^s = \frac{1}{|M|+1}\Big(\mathbf{E}^c + \sum_m
        \sigma(W^p_m\mathbf{C} + \mathbf{b}^p_m)\odot(\mathbf{E}_m - \mathbf{E}^c)\Big),\quad
        [\mathbf{u};\mathbf{i}] = \mathbf{C} + \mathbf{E}^s,

    :math:`\hat y_{ui} = \mathbf{u}_u^\top\mathbf{i}_i`. **Loss** (Sec. 3.5):

    .. math::
        \mathcal L = \mathrm{BPR} + \frac{\lambda}{2B}\big(\lVert\mathbf{u}_B\rVert^2
        + \lVert\mathbf{i}_{B^+}\rVert^2 + \lVert\mathbf{i}_{B^-}\rVert^2\big)
        + \lambda_{cl}\big(\mathrm{NCE}_{0.2}(\mathbf{E}^s_{i^+}, \mathbf{C}_{i^+})
        + \mathrm{NCE}_{0.2}(\mathbf{E}^s_{u}, \mathbf{C}_{u})\big),

    :math:`\mathrm{NCE}` the in-batch InfoNCE of L2-normalised rows
    (:func:`~lirdrec.models.base.info_nce`). As there, the regulariser reads the final
    representations and the raw features are fine-tuned. The reference divides the
    regulariser by the configured batch size; here :math:`B` is the actual batch size (they
    differ only on an epoch's last batch). Its learning-rate decay (:math:`0.96^{e/50}`) is a
    trainer setting (``trainer_defaults``). Any number of modalities (the reference: two).

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        adj (Tensor): :math:`\hat A`, sparse CSR :math:`(U+I, U+I)` from
            :func:`lirdrec.graphs.bipartite_adjacency`.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` raw features.
        item_graphs (list[Tensor] | None): :math:`S_m` in ``features`` order, sparse
            :math:`(I, I)`; ``None`` builds them with :func:`modality_knn_graphs`.
        embedding_dim (int, optional): :math:`d`. (default: ``64``)
        n_ui_layers (int, optional): :math:`L`. (default: ``2``)
        n_mm_layers (int, optional): :math:`n`, item-graph layers. (default: ``1``)
        knn_k (int, optional): item neighbours. (default: ``10``)
        reg_weight (float, optional): :math:`\lambda`. (default: ``1e-4``)
        cl_loss (float, optional): :math:`\lambda_{cl}`. (default: ``1e-3``)
        knn_chunk_size (int | None, optional): rows per kNN chunk. (default: ``None``)

    Shapes:
        - **forward:** users :math:`(U, d)`, items :math:`(I, d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items, neg_items :math:`(B,)` -> scalar
    """

    scores_cold_items = True  # the item-item views reach an item from its features
    trainer_defaults = {"lr_decay": 0.96, "lr_decay_epochs": 50}  # the reference configuration
    feature_branch = ("projections",)
    temperature = 0.2  # of both InfoNCE terms, fixed in the reference

    constraints = {
        "adj": Shape("num_nodes", "num_nodes"),
        "embedding_dim": Interval(1, integer=True),
        "n_ui_layers": Interval(0, integer=True),
        "n_mm_layers": Interval(0, integer=True),
        "knn_k": Interval(1, "num_items", integer=True),
        "reg_weight": Interval(0),
        "cl_loss": Interval(0),
        "knn_chunk_size": Interval(1, integer=True, optional=True),
    }

    def __init__(self, num_users: int, num_items: int, adj: Tensor,
                 features: Mapping[str, Tensor], item_graphs: Sequence[Tensor] | None,
                 embedding_dim: int = 64, n_ui_layers: int = 2, n_mm_layers: int = 1,
                 knn_k: int = 10, reg_weight: float = 1e-4, cl_loss: float = 1e-3,
                 knn_chunk_size: int | None = None) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.modalities, mats = check_features(type(self).__name__, features, self.num_items)
        d = self.embedding_dim = int(embedding_dim)
        self.n_ui_layers, self.n_mm_layers = int(n_ui_layers), int(n_mm_layers)
        self.knn_k = int(knn_k)
        self.reg_weight, self.cl_loss = float(reg_weight), float(cl_loss)
        if item_graphs is None:  # from_dataset passes them; a test may build from tensors
            item_graphs = modality_knn_graphs(mats, self.knn_k, knn_chunk_size)
        shapes = [tuple(g.shape) for g in item_graphs]
        check_param(type(self).__name__, "item_graphs", shapes,
                    shapes == [(self.num_items, self.num_items)] * len(mats),
                    f"one ({self.num_items}, {self.num_items}) graph per modality")
        self.register_buffer("adj", adj, persistent=False)
        register_user_item_block(self, adj)
        for j, g in enumerate(item_graphs):  # constants: follow .to(), rebuilt by from_dataset
            self.register_buffer(f"item_graph_{j}", g, persistent=False)
            self.register_buffer(f"item_graph_t_{j}", transpose_csr(g), persistent=False)
        self._add_id_embeddings(d)
        self.features = feature_tables(mats, trainable=True)  # Embedding(freeze=False) there
        self.projections = nn.ModuleList(nn.Linear(x.shape[1], d) for x in mats)
        self.purifiers = nn.ModuleList(sigmoid_gate(d) for _ in mats)
        self.preferences = nn.ModuleList(sigmoid_gate(d) for _ in mats)
        self.query = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform ID tables (the reference's); every linear layer torch's default."""
        self._reset_id_embeddings()
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "MGCN":
        r""":math:`\hat A` and the modality kNN graphs from :mod:`lirdrec.graphs`."""
        cls.check_kwargs(ds, kwargs)
        adj = bipartite_adjacency(ds.num_users, ds.num_items, ds.train.users, ds.train.items)
        features = ds.features_tensor()
        graphs = modality_knn_graphs(list(features.values()), cls.default("knn_k", kwargs),
                                     cls.default("knn_chunk_size", kwargs))
        return cls(ds.num_users, ds.num_items, adj, features, graphs, **kwargs)

    def _views(self) -> tuple[Tensor, Tensor]:
        r"""Content :math:`\mathbf{C}` and side :math:`\mathbf{E}^s`, both :math:`(U+I, d)`."""
        content = propagate(self.adj, torch.cat([self.user_emb, self.item_emb]),
                            self.n_ui_layers, "mean")
        raw = self.encoded_features() or list(self.features)  # end-to-end: from an encoder
        views = []
        for j, (x, proj, purify) in enumerate(zip(raw, self.projections, self.purifiers)):
            views.append(item_view(  # (U+I, d): R-hat H above H
                self.item_emb * purify(proj(x)), getattr(self, f"item_graph_{j}"),
                getattr(self, f"item_graph_t_{j}"), self.n_mm_layers, self.ui, self.ui_t))
        stacked = torch.stack(views, 1)  # (U+I, M, d)
        beta = torch.softmax(self.query(stacked).squeeze(-1), dim=1)  # (U+I, M)
        common = (beta[:, :, None] * stacked).sum(1)
        side = common + sum(pref(content) * (views[j] - common)
                            for j, pref in enumerate(self.preferences))
        return content, side / (len(views) + 1)

    def forward(self) -> tuple[Tensor, Tensor]:
        content, side = self._views()
        out = content + side
        return out[: self.num_users], out[self.num_users:]

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        content, side = self._views()
        return content_side_loss(content, side, self.num_users, users, pos_items, neg_items,
                                 self.reg_weight, self.cl_loss, self.temperature)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        other = [*self.purifiers.parameters(), *self.preferences.parameters(),
                 *self.query.parameters()]
        return {"item_id": [self.item_emb],
                "item_feature": list(self.features) + list(self.projections.parameters()),
                "user": [self.user_emb], "other": other}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, embedding_dim={self.embedding_dim}, "
                f"modalities={self.modalities}, n_ui_layers={self.n_ui_layers}, "
                f"n_mm_layers={self.n_mm_layers}, knn_k={self.knn_k}")
