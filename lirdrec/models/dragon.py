"""DRAGON: DualGNN's graphs plus a frozen item kNN graph, modalities concatenated."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from torch import Tensor

from lirdrec.graphs import (
    adjacency_and_user_graph,
    build_item_graph,
    spmm,
    transpose_csr,
)
from lirdrec.models.base import Interval, Shape, check_arguments
from lirdrec.models.dualgnn import DualGNN
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["DRAGON"]


@register("dragon")
class DRAGON(DualGNN):
    r"""DRAGON from "Enhancing Dyadic Relations with Homogeneous Graphs for Multimodal
    Recommendation" (Zhou et al., ECAI 2023, arXiv:2301.12097), as MMRec implements it
    (``src/models/dragon.py``: ``construction="cat"``).

    The heterogeneous side is :class:`~lirdrec.models.DualGNN`'s: per modality, the projected
    features and the users' preferences propagated over :math:`\hat A` (layer sum),
    :math:`\mathbf{X}_m` (:meth:`~lirdrec.models.DualGNN.modal_representations`). Modalities
    are concatenated instead of summed, users scaling each by a learned per-user weight, and the
    two homogeneous graphs are added: the users' co-occurrence graph
    (:func:`lirdrec.graphs.user_cooccurrence_graph`, softmax weights :math:`a_{uv}`) and a
    frozen item kNN graph :math:`S` (:func:`lirdrec.graphs.build_item_graph`: unit-weight cosine
    top-:math:`k` of each modality's raw features, :math:`D^{-1/2}SD^{-1/2}`, mixed by
    ``mm_image_weight``; FREEDOM's):

    .. math::
        \bar{\mathbf{i}}_i = [\mathbf{X}_{1,i} \Vert \cdots \Vert \mathbf{X}_{|M|,i}],\quad
        \tilde{\mathbf{u}}_u = [w_{u,1}\mathbf{X}_{1,u} \Vert \cdots \Vert
        w_{u,|M|}\mathbf{X}_{|M|,u}],

    .. math::
        \mathbf{i} = \bar{\mathbf{i}} + S^{n}\bar{\mathbf{i}},\qquad
        \mathbf{u}_u = \tilde{\mathbf{u}}_u + \sum_{v \in N^k(u)} a_{uv}\tilde{\mathbf{u}}_v,
        \qquad \hat y_{ui} = \mathbf{u}_u^\top\mathbf{i}_i,

    trained with :class:`~lirdrec.models.DualGNN`'s loss (base-2 BPR, preferences of the batch's
    users and the modality weights regularised). The reference's fine-tunable feature tables and
    projections that only build its kNN graph (and get no gradient) are left out, as are
    DualGNN's unused parts; its user graph's random padding is cyclic here (see DualGNN).

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        adj (Tensor): :math:`\hat A` from :func:`lirdrec.graphs.bipartite_adjacency`.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` raw features (fixed).
        user_graph (Tensor): int64 :math:`(U, k_u)` from
            :func:`lirdrec.graphs.user_cooccurrence_graph`.
        user_graph_counts (Tensor): :math:`(U, k_u)` their co-occurrence counts.
        item_graph (Tensor | None): :math:`S`, sparse :math:`(I, I)`; ``None`` builds it from
            ``features`` with ``knn_k`` and ``mm_image_weight``.
        embedding_dim (int, optional): :math:`d`. (default: ``64``)
        num_layers (int, optional): :math:`L`, user-item layers. (default: ``2``)
        n_mm_layers (int, optional): :math:`n`, item-graph layers. (default: ``1``)
        knn_k (int, optional): item neighbours. (default: ``10``)
        mm_image_weight (float, optional): image weight in :math:`S`. (default: ``0.1``)
        user_knn_k (int, optional): :math:`k_u`, user neighbours. (default: ``40``)
        reg_weight (float, optional): :math:`\lambda`. (default: ``0.1``)
        user_graph_chunk_size (int | None, optional): users per chunk of the user graph.
            (default: ``None``)
        knn_chunk_size (int | None, optional): rows per item-kNN chunk. (default: ``None``)

    Shapes:
        - **forward:** users :math:`(U, |M|d)`, items :math:`(I, |M|d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items, neg_items :math:`(B,)` -> scalar
    """

    constraints = {
        "item_graph": Shape("num_items", "num_items", optional=True),
        "n_mm_layers": Interval(0, integer=True),
        "knn_k": Interval(1, "num_items", integer=True),
        "mm_image_weight": Interval(0, 1),
        "knn_chunk_size": Interval(1, integer=True, optional=True),
    }

    def __init__(self, num_users: int, num_items: int, adj: Tensor,
                 features: Mapping[str, Tensor], user_graph: Tensor, user_graph_counts: Tensor,
                 item_graph: Tensor | None, embedding_dim: int = 64, num_layers: int = 2,
                 n_mm_layers: int = 1, knn_k: int = 10, mm_image_weight: float = 0.1,
                 user_knn_k: int = 40, reg_weight: float = 0.1,
                 user_graph_chunk_size: int | None = None,
                 knn_chunk_size: int | None = None) -> None:
        super().__init__(num_users, num_items, adj, features, user_graph, user_graph_counts,
                         embedding_dim, num_layers, user_knn_k, reg_weight,
                         user_graph_chunk_size)
        check_arguments(self, locals())
        self.n_mm_layers = int(n_mm_layers)
        self.knn_k = int(knn_k)
        self.mm_image_weight = float(mm_image_weight)
        if item_graph is None:  # from_dataset passes it; a test may build the model from tensors
            item_graph = build_item_graph(dict(zip(self.modalities, self.raw_features())),
                                          self.knn_k, self.mm_image_weight, "image",
                                          knn_chunk_size)
        self.register_buffer("item_graph", item_graph, persistent=False)
        self.register_buffer("item_graph_t", transpose_csr(item_graph), persistent=False)

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "DRAGON":
        r""":math:`\hat A`, the user co-occurrence graph and :math:`S` from
        :mod:`lirdrec.graphs`.
        """
        cls.check_kwargs(ds, kwargs)
        adj, index, counts = adjacency_and_user_graph(
            ds.num_users, ds.num_items, ds.train.users, ds.train.items,
            cls.default("user_knn_k", kwargs), cls.default("user_graph_chunk_size", kwargs))
        features = ds.features_tensor()
        item_graph = build_item_graph(features, cls.default("knn_k", kwargs),
                                      cls.default("mm_image_weight", kwargs), "image",
                                      cls.default("knn_chunk_size", kwargs))
        return cls(ds.num_users, ds.num_items, adj, features, index, counts, item_graph,
                   **kwargs)

    def forward(self) -> tuple[Tensor, Tensor]:
        stacked = self.modal_representations()  # (U+I, M, d)
        items = stacked[self.num_users:].flatten(1)  # (I, M d): modalities concatenated
        users = (self.modal_weight[:, :, None] * stacked[: self.num_users]).flatten(1)
        h = items
        for _ in range(self.n_mm_layers):
            h = spmm(self.item_graph, h, self.item_graph_t)  # (I, M d)
        return self.add_user_neighbours(users), items + h

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, n_mm_layers={self.n_mm_layers}, knn_k={self.knn_k}, "
                f"mm_image_weight={self.mm_image_weight}")
