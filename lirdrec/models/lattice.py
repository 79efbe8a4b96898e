"""LATTICE: learned item-item structure from projected multimodal features."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirdrec.graphs import (
    build_knn_graph,
    knn_indices,
    propagate_edges,
    sparse_from_coo,
    spmm,
    to_coo_parts,
    transpose_csr,
)
from lirdrec.models._features import check_features, feature_tables
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

__all__ = [
    "LATTICE", "frozen_knn_graphs", "lattice_adjacency", "learned_knn_edges", "normalize_edges",
    "propagate_edges",
]


def lattice_adjacency(num_users: int, num_items: int, users, items) -> Tensor:
    r"""LATTICE's user-item graph: self-loops added, then row-normalised,
    :math:`\hat A = (D+I)^{-1}(A + I)`.

    Unlike :func:`lirdrec.graphs.bipartite_adjacency` it is not symmetric: entry :math:`(a, b)`
    is :math:`1/(|N_a| + 1)` for every neighbour :math:`b` of :math:`a` and for :math:`b = a`.

    Returns:
        Sparse CSR :math:`(U+I, U+I)`.

    >>> a = lattice_adjacency(1, 2, [0, 0], [0, 1]).to_dense()
    >>> a[0].tolist(), a[1].tolist()   # user 0: degree 2 -> 1/3; item 0: degree 1 -> 1/2
    ([0.3333333432674408, 0.3333333432674408, 0.3333333432674408], [0.5, 0.5, 0.0])
    """
    users = torch.as_tensor(np.array(users), dtype=torch.long)
    items = torch.as_tensor(np.array(items), dtype=torch.long)
    keys = torch.unique(users * num_items + items)
    u, i = keys // num_items, keys % num_items + num_users
    n = num_users + num_items
    loops = torch.arange(n)
    row = torch.cat([u, i, loops])
    col = torch.cat([i, u, loops])
    deg = torch.bincount(row, minlength=n).float()  # degree + 1
    return sparse_from_coo(row, col, 1.0 / deg[row], (n, n))


def frozen_knn_graphs(mats: Sequence[Tensor], knn_k: int,
                      chunk_size: int | None = None) -> list[Tensor]:
    r"""LATTICE's frozen graphs: per modality, :func:`lirdrec.graphs.build_knn_graph` of the raw
    features with cosine values kept (``weighted=True``) and :math:`D^{-1/2} S D^{-1/2}`.
    """
    return [build_knn_graph(x, knn_k, "sym", weighted=True, chunk_size=chunk_size) for x in mats]


def learned_knn_edges(x: Tensor, k: int,
                      chunk_size: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    r"""Cosine top-:math:`k` edges of the rows of ``x`` with values differentiable in ``x``.

    Neighbours are chosen without gradient in row chunks (:func:`lirdrec.graphs.knn_indices`,
    memory :math:`O(\text{chunk}\cdot I)`); the kept values
    :math:`\cos(\mathbf{x}_i, \mathbf{x}_j)` are recomputed from the normalised rows so that
    gradients reach ``x``, as through the top-k values of a dense similarity matrix.

    Shapes:
        - x :math:`(I, d)` -> row, col, value :math:`(I k,)`
    """
    n = x.shape[0]
    _, idx = knn_indices(x.detach(), k, chunk_size)
    row = torch.arange(n, device=x.device).repeat_interleave(k)
    col = idx.reshape(-1)
    xn = F.normalize(x, dim=1)
    return row, col, (xn[row] * xn[col]).sum(-1)


def normalize_edges(row: Tensor, col: Tensor, val: Tensor, n: int) -> Tensor:
    r"""Values of :math:`D^{-1/2} S D^{-1/2}` with :math:`D` the row sums of :math:`S` (zero for
    rows that sum to 0); duplicate ``(row, col)`` entries act as their sum. Differentiable.
    """
    deg = torch.zeros(n, dtype=val.dtype, device=val.device).index_add(0, row, val)
    inv = deg.pow(-0.5)
    inv = torch.where(torch.isinf(inv), torch.zeros_like(inv), inv)
    return val * inv[row] * inv[col]


@register("lattice")
class LATTICE(Recommender):
    r"""LATTICE from "Mining Latent Structures for Multimedia Recommendation" (Zhang et al.,
    ACM MM 2021, arXiv:2104.09036), as MMRec implements it (``cf_model: lightgcn``).

    For each modality :math:`m` a frozen graph :math:`\tilde S_m` is built once from the raw
    features (cosine top-:math:`k`, cosine values kept, :math:`D^{-1/2}SD^{-1/2}` by row sums),
    and a learned graph :math:`\hat S_m` is the same construction on projected features
    :math:`\mathbf{F}_m = \mathbf{X}_m W_m^\top + \mathbf{b}_m` (unnormalised). With modality
    weights :math:`\boldsymbol\alpha = \mathrm{softmax}(\boldsymbol\omega)` and skip weight
    :math:`\lambda`:

    .. math::
        S = (1-\lambda)\,\mathcal N\Big(\sum_m \alpha_m \hat S_m\Big)
            + \lambda \sum_m \alpha_m \tilde S_m,\qquad
        \mathbf{h} = S^{n}\mathbf{E}^{id},

    with :math:`\mathcal N` the symmetric row-sum normalisation. Users and items are LightGCN
    over LATTICE's row-normalised graph with self-loops (:func:`lattice_adjacency`), layer mean:

    .. math::
        [\mathbf{U};\bar{\mathbf{E}}]
        = \frac{1}{L+1}\sum_{l=0}^{L}\hat A^{l}[\mathbf{P};\mathbf{E}^{id}],
        \qquad \mathbf{i}_i = \bar{\mathbf{E}}_i + \frac{\mathbf{h}_i}{\lVert\mathbf{h}_i\rVert},
        \qquad \hat y_{ui} = \mathbf{U}_u^\top\mathbf{i}_i,

    .. math::
        \mathcal L = -\frac1B\sum\log\sigma(\hat y_{ui^+}-\hat y_{ui^-})
        + \frac{\gamma}{2B}\big(\lVert\mathbf{U}_B\rVert^2 + \lVert\mathbf{I}_{B^+}\rVert^2
        + \lVert\mathbf{I}_{B^-}\rVert^2\big).

    Graph refresh, as the reference: :math:`S` is rebuilt, with gradient, by the first
    :meth:`loss` call of each epoch (after :meth:`on_epoch_start`) and used detached for the
    rest of that epoch; so :math:`W_m`, :math:`\boldsymbol\omega` and the (fine-tuned) raw
    features get gradient once per epoch. :meth:`forward` (evaluation) rebuilds :math:`S` from
    the current parameters. The reference divides the regulariser by the configured batch size;
    here :math:`B` is the actual batch size (differs only on an epoch's last, smaller batch). The
    learning-rate decay of the reference config (:math:`0.96^{e/50}`) is a trainer setting.

    Any number of modalities: :math:`\boldsymbol\omega \in \mathbb{R}^M` starts equal (the
    reference's ``[0.5, 0.5]``); with one modality there is no :math:`\boldsymbol\omega`
    (:math:`\alpha = 1`, as the reference uses the single graph directly). Graphs are kept as
    :math:`O(Ik)` edge lists, never :math:`I\times I`.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        adj (Tensor): :math:`\hat A`, sparse CSR :math:`(U+I, U+I)` from :func:`lattice_adjacency`.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` raw features.
        embedding_dim (int, optional): :math:`d`. (default: ``64``)
        feat_embed_dim (int, optional): width of :math:`\mathbf{F}_m`. (default: ``64``)
        n_ui_layers (int, optional): :math:`L` (``len(weight_size)`` in MMRec). (default: ``2``)
        n_mm_layers (int, optional): :math:`n` (MMRec's LATTICE ``n_layers``). (default: ``1``)
        knn_k (int, optional): :math:`k`. (default: ``10``)
        lambda_coeff (float, optional): :math:`\lambda`. (default: ``0.9``)
        reg_weight (float, optional): :math:`\gamma`. (default: ``0.0``)
        train_features (bool, optional): fine-tune the raw features. (default: ``True``)
        knn_chunk_size (int | None, optional): rows per kNN similarity chunk; ``None``:
            :func:`lirdrec.graphs.auto_chunk_size`. (default: ``None``)
        frozen_graphs (list[Tensor] | None, optional): per modality, the frozen weighted kNN
            graph :math:`(I, I)` of the raw features (:func:`frozen_knn_graphs`); ``None``
            builds them. (default: ``None``)

    Shapes:
        - **forward:** users :math:`(U, d)`, items :math:`(I, d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items, neg_items :math:`(B,)` -> scalar
    """

    scores_cold_items = True  # items are computed from their features

    #: submodules whose output is the feature-derived item representation (gradient-bias hooks)
    feature_branch = ("projections",)
    #: the reference configuration decays the learning rate by 0.96 every 50 epochs (MMRec's
    #: ``learning_rate_scheduler: [0.96, 50]``), applied by the trainer
    trainer_defaults = {"lr_decay": 0.96, "lr_decay_epochs": 50}

    #: the epoch's detached item graph, rebuilt from parameters on their device
    unregistered_tensors = ("_cached_graph",)

    constraints = {
        "adj": Shape("num_nodes", "num_nodes"),
        "embedding_dim": Interval(1, integer=True),
        "feat_embed_dim": Interval(1, integer=True),
        "n_ui_layers": Interval(0, integer=True),
        "n_mm_layers": Interval(0, integer=True),
        "knn_k": Interval(1, "num_items", integer=True),
        "lambda_coeff": Interval(0, 1),
        "reg_weight": Interval(0),
        "knn_chunk_size": Interval(1, integer=True, optional=True),
    }

    def __init__(self, num_users: int, num_items: int, adj: Tensor, features: Mapping[str, Tensor],
                 embedding_dim: int = 64, feat_embed_dim: int = 64, n_ui_layers: int = 2,
                 n_mm_layers: int = 1, knn_k: int = 10, lambda_coeff: float = 0.9,
                 reg_weight: float = 0.0, train_features: bool = True,
                 knn_chunk_size: int | None = None,
                 frozen_graphs: Sequence[Tensor] | None = None) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.modalities, mats = check_features(type(self).__name__, features, self.num_items)
        self.embedding_dim = int(embedding_dim)
        self.feat_embed_dim = int(feat_embed_dim)
        self.n_ui_layers = int(n_ui_layers)
        self.n_mm_layers = int(n_mm_layers)
        self.knn_k = int(knn_k)
        self.lambda_coeff = float(lambda_coeff)
        self.reg_weight = float(reg_weight)
        self.train_features = bool(train_features)
        self.knn_chunk_size = None if knn_chunk_size is None else int(knn_chunk_size)

        # constant graphs: non-persistent buffers (follow .to(), rebuilt by from_dataset)
        self.register_buffer("adj", adj, persistent=False)
        self.register_buffer("adj_t", transpose_csr(adj), persistent=False)
        if frozen_graphs is None:  # from_dataset passes them; a test may build from tensors
            frozen_graphs = frozen_knn_graphs(mats, self.knn_k, self.knn_chunk_size)
        for m, graph in enumerate(frozen_graphs):
            check_param(type(self).__name__, f"frozen_graphs[{m}]", tuple(graph.shape),
                        tuple(graph.shape) == (self.num_items, self.num_items),
                        f"a tensor of shape ({self.num_items}, {self.num_items})")
            for name, t in zip(("row", "col", "val"), to_coo_parts(graph)):
                self.register_buffer(f"frozen_{m}_{name}", t, persistent=False)
        self._graph_stale = True
        self._cached_graph: tuple[Tensor, Tensor] | None = None  # detached (S, S^T) CSR

        self._add_id_embeddings(self.embedding_dim)
        self.features = feature_tables(mats, self.train_features)
        self.projections = nn.ModuleList(nn.Linear(x.shape[1], self.feat_embed_dim) for x in mats)
        self.modal_weight = nn.Parameter(torch.full((len(mats),), 0.5)) if len(mats) > 1 else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._reset_id_embeddings()
        for proj in self.projections:
            proj.reset_parameters()
        if self.modal_weight is not None:
            nn.init.constant_(self.modal_weight, 0.5)
        self._graph_stale = True

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "LATTICE":
        r""":math:`\hat A` and the frozen per-modality kNN graphs from :mod:`lirdrec.graphs`."""
        cls.check_kwargs(ds, kwargs)
        adj = lattice_adjacency(ds.num_users, ds.num_items, ds.train.users, ds.train.items)
        features = ds.features_tensor()
        if kwargs.get("frozen_graphs") is None:
            kwargs["frozen_graphs"] = frozen_knn_graphs(
                list(features.values()), cls.default("knn_k", kwargs),
                cls.default("knn_chunk_size", kwargs))
        return cls(ds.num_users, ds.num_items, adj, features, **kwargs)

    # ------------------------------------------------------------------ item graph
    @property
    def frozen_graphs(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per modality, the frozen kNN graph of the raw features as ``(row, col, value)``."""
        return [tuple(getattr(self, f"frozen_{m}_{n}") for n in ("row", "col", "val"))
                for m in range(len(self.projections))]

    def modality_weights(self) -> Tensor:
        r""":math:`\boldsymbol\alpha = \mathrm{softmax}(\boldsymbol\omega)`, shape :math:`(M,)`."""
        if self.modal_weight is None:
            return self.user_emb.new_ones(1)
        return torch.softmax(self.modal_weight, dim=0)

    def item_graph_edges(self) -> tuple[Tensor, Tensor, Tensor]:
        r"""Edges of :math:`S` with values differentiable in the projections, the (trainable)
        features and :math:`\boldsymbol\omega`. Returns row, col, value of shape :math:`(E,)`.
        """
        alpha = self.modality_weights()
        rows, cols, vals = [], [], []
        feats = self.encoded_features() or list(self.features)  # end-to-end: from an encoder
        for m, (proj, x) in enumerate(zip(self.projections, feats)):
            r, c, v = learned_knn_edges(proj(x), self.knn_k, self.knn_chunk_size)
            rows.append(r)
            cols.append(c)
            vals.append(alpha[m] * v)
        row, col = torch.cat(rows), torch.cat(cols)
        learned = normalize_edges(row, col, torch.cat(vals), self.num_items)
        rows, cols, vals = [row], [col], [(1.0 - self.lambda_coeff) * learned]
        for m, (r, c, v) in enumerate(self.frozen_graphs):
            rows.append(r)
            cols.append(c)
            vals.append(self.lambda_coeff * alpha[m] * v)
        return torch.cat(rows), torch.cat(cols), torch.cat(vals)

    def on_epoch_start(self, epoch: int) -> None:
        """Mark :math:`S` for a rebuild (with gradient) at the epoch's first :meth:`loss`."""
        self._graph_stale = True

    # ------------------------------------------------------------------ model
    def _embed(self, item_h: Tensor) -> tuple[Tensor, Tensor]:
        ego = torch.cat([self.user_emb, self.item_emb])  # (U+I, d)
        out, h = ego, ego
        for _ in range(self.n_ui_layers):
            h = spmm(self.adj, h, self.adj_t)
            out = out + h
        out = out / (self.n_ui_layers + 1)
        return out[: self.num_users], out[self.num_users:] + F.normalize(item_h, dim=1)

    def _item_h_from_edges(self, row: Tensor, col: Tensor, val: Tensor) -> Tensor:
        h = self.item_emb
        for _ in range(self.n_mm_layers):
            h = propagate_edges(row, col, val, h)
        return h

    def forward(self) -> tuple[Tensor, Tensor]:
        return self._embed(self._item_h_from_edges(*self.item_graph_edges()))

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        if self._graph_stale or self._cached_graph is None:
            row, col, val = self.item_graph_edges()
            graph = sparse_from_coo(row, col, val.detach(), (self.num_items, self.num_items))
            self._cached_graph = (graph, transpose_csr(graph))
            self._graph_stale = False
            item_h = self._item_h_from_edges(row, col, val)
        else:
            graph, graph_t = self._cached_graph
            item_h = self.item_emb
            for _ in range(self.n_mm_layers):
                item_h = spmm(graph, item_h, graph_t)
        user_emb, item_emb = self._embed(item_h)
        u, p, n = user_emb[users], item_emb[pos_items], item_emb[neg_items]
        rank = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        reg = 0.5 * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / users.shape[0]
        return rank + self.reg_weight * reg

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        feature = list(self.features) + list(self.projections.parameters())
        if self.modal_weight is not None:
            feature.append(self.modal_weight)
        return {"item_id": [self.item_emb], "item_feature": feature, "user": [self.user_emb],
                "other": []}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, embedding_dim={self.embedding_dim}, "
                f"modalities={self.modalities}, n_ui_layers={self.n_ui_layers}, "
                f"n_mm_layers={self.n_mm_layers}, knn_k={self.knn_k}, "
                f"lambda_coeff={self.lambda_coeff}")
