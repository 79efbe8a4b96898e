"""ItemKNNCBF: content-based item kNN, no training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import Tensor

from lirdrec.graphs import build_knn_graph, csr_rows, interaction_matrix, spmm, transpose_csr
from lirdrec.models._features import check_features
from lirdrec.models.base import Interval, Recommender, Shape, check_arguments
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["ItemKNNCBF", "content_knn_graph"]


def content_knn_graph(features: Mapping[str, Tensor], knn_k: int = 10, shrink: float = 10.0,
                      chunk_size: int | None = None) -> Tensor:
    r"""ItemKNNCBF's item graph: the shrunk-cosine top-:math:`k` of the concatenated raw
    features, values kept, not normalised (:func:`lirdrec.graphs.build_knn_graph` with
    ``shrink``).

    .. math::
        \mathbf{x}_i = [\mathbf{x}^{m_1}_i \,\Vert\, \mathbf{x}^{m_2}_i \,\Vert \cdots],\qquad
        S_{ij} = \begin{cases} \dfrac{\mathbf{x}_i^\top\mathbf{x}_j}
        {\lVert\mathbf{x}_i\rVert\lVert\mathbf{x}_j\rVert + h} & j \in \mathrm{top}_k(i) \\
        0 & \text{otherwise.}\end{cases}

    Returns:
        Sparse CSR :math:`(I, I)`, :math:`k` entries per row (the item itself included).
    """
    x = torch.cat([torch.as_tensor(v).float() for v in features.values()], dim=1)  # (I, sum d_m)
    return build_knn_graph(x, knn_k, "none", weighted=True, chunk_size=chunk_size, shrink=shrink)


@register("itemknncbf")
class ItemKNNCBF(Recommender):
    r"""ItemKNNCBF, the content-based item kNN of "Are We Really Making Much Progress? A Worrying
    Analysis of Recent Neural Recommendation Approaches" (Dacrema et al., RecSys 2019,
    arXiv:1907.06902, Sec. 3), as MMRec implements it (``src/models/itemknncbf.py``).

    A user's score of item :math:`j` sums the similarities to :math:`j` of the items she trained
    on, over the content kNN graph :math:`S` of :func:`content_knn_graph`:

    .. math::
        \hat y_{uj} = \sum_{i \in N_u} S_{ij} = (R\,S)_{uj},

    with :math:`R \in \{0,1\}^{U \times I}` the training interactions. :math:`S` is built from
    features for every item, so an item never seen in training is scored as soon as it is among
    the :math:`k` nearest neighbours of a trained item (``scores_cold_items``). Nothing is
    trained (``trainable = False``: the trainer evaluates once, as for Pop); the reference's
    dummy parameter is not kept. Scores are computed per user batch as :math:`(S^\top
    R_B^\top)^\top` with a sparse :math:`S^\top`: memory :math:`O(B\,I + I k)`, never the
    reference's dense :math:`U \times I` score table or :math:`I \times I` similarity.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        interactions (Tensor): :math:`R`, sparse CSR :math:`(U, I)` from
            :func:`lirdrec.graphs.interaction_matrix`.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` raw features, concatenated
            in dict order (the reference concatenates image then text).
        item_graph (Tensor | None): :math:`S`, sparse :math:`(I, I)`; ``None`` builds it with
            :func:`content_knn_graph`.
        knn_k (int, optional): :math:`k`, neighbours per item. (default: ``10``)
        shrink (float, optional): :math:`h`. (default: ``10.0``)
        knn_chunk_size (int | None, optional): rows per similarity chunk; ``None``:
            :func:`lirdrec.graphs.auto_chunk_size`. (default: ``None``)

    Shapes:
        - **forward:** :math:`R` sparse :math:`(U, I)`, :math:`S^\top` sparse :math:`(I, I)`
          (so that :math:`\hat y = R (S^\top)^\top`)
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
    """

    trainable = False
    scores_cold_items = True  # S reaches every item through its features
    item_vectors = False  # forward()[1] holds similarity rows, not item vectors

    constraints = {
        "interactions": Shape("num_users", "num_items"),
        "item_graph": Shape("num_items", "num_items", optional=True),
        "knn_k": Interval(1, "num_items", integer=True),
        "shrink": Interval(0),
        "knn_chunk_size": Interval(1, integer=True, optional=True),
    }

    def __init__(self, num_users: int, num_items: int, interactions: Tensor,
                 features: Mapping[str, Tensor], item_graph: Tensor | None,
                 knn_k: int = 10, shrink: float = 10.0,
                 knn_chunk_size: int | None = None) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.modalities, mats = check_features(type(self).__name__, features, self.num_items)
        self.knn_k = int(knn_k)
        self.shrink = float(shrink)
        if item_graph is None:
            item_graph = content_knn_graph(dict(zip(self.modalities, mats)), self.knn_k,
                                           self.shrink, knn_chunk_size)
        # constants: non-persistent buffers (follow .to(), rebuilt by from_dataset)
        self.register_buffer("interactions", interactions, persistent=False)
        self.register_buffer("item_graph_t", transpose_csr(item_graph), persistent=False)

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "ItemKNNCBF":
        r""":math:`R` and :math:`S` from :mod:`lirdrec.graphs`."""
        cls.check_kwargs(ds, kwargs)
        r = interaction_matrix(ds.num_users, ds.num_items, ds.train.users, ds.train.items)
        features = ds.features_tensor()
        graph = content_knn_graph(features, cls.default("knn_k", kwargs),
                                  cls.default("shrink", kwargs), cls.default("knn_chunk_size",
                                                                             kwargs))
        return cls(ds.num_users, ds.num_items, r, features, graph, **kwargs)

    def forward(self) -> tuple[Tensor, Tensor]:
        return self.interactions, self.item_graph_t

    def score(self, users: Tensor, reps: tuple[Tensor, Tensor] | None = None) -> Tensor:
        r, s_t = self.forward() if reps is None else reps
        r_batch = csr_rows(r, users)  # (B, I)
        return spmm(s_t, r_batch.t().contiguous()).t()  # (B, I) = R_B S

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        """Nothing to train: a zero that needs no gradient anywhere."""
        return torch.zeros((), requires_grad=True)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, modalities={self.modalities}, knn_k={self.knn_k}, "
                f"shrink={self.shrink}")
