"""SMORE: spectrum-based modality fusion on MGCN-style multi-view graphs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from lirdrec.graphs import (
    bipartite_adjacency,
    build_knn_graph,
    max_combine_graphs,
    propagate,
    transpose_csr,
)
from lirdrec.models._features import check_features, feature_tables, make_generator
from lirdrec.models.base import (
    GeneratorStateMixin,
    Interval,
    Recommender,
    Shape,
    check_arguments,
    check_param,
    content_side_loss,
)
from lirdrec.models.mgcn import item_view, register_user_item_block, sigmoid_gate
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["SMORE", "smore_item_graphs", "spectrum_convolution"]


def spectrum_convolution(feats: Sequence[Tensor], filters: Sequence[Tensor],
                         fusion_filter: Tensor) -> tuple[list[Tensor], Tensor]:
    r"""SMORE's spectral denoising and fusion (Ong & Khong 2025, Sec. 3.2): with
    :math:`\mathcal F` the orthonormal real FFT along the feature axis,

    .. math::
        \hat{\mathbf{F}}_m = \mathcal F^{-1}\big(\mathcal F(\mathbf{F}_m)\odot\mathbf{w}_m\big),
        \qquad \hat{\mathbf{F}}_f = \mathcal F^{-1}\Big(\mathbf{w}_f\odot\prod_m
        \mathcal F(\mathbf{F}_m)\Big),

    learnable complex filters :math:`\mathbf{w}` of :math:`d/2+1` frequencies (a product of
    spectra is a circular convolution of the features: the cross-modal fusion).

    Shapes:
        - feats: each :math:`(I, d)`; filters, fusion_filter: each :math:`(d/2+1, 2)` (real,
          imaginary) -> a list of :math:`(I, d)` and :math:`(I, d)`
    """
    d = feats[0].shape[1]
    spectra = [torch.fft.rfft(f, dim=1, norm="ortho") for f in feats]
    denoised = [torch.fft.irfft(s * torch.view_as_complex(w.contiguous()), n=d, dim=1,
                                norm="ortho") for s, w in zip(spectra, filters)]
    product = spectra[0]
    for s in spectra[1:]:
        product = product * s
    fused = torch.fft.irfft(product * torch.view_as_complex(fusion_filter.contiguous()), n=d,
                            dim=1, norm="ortho")
    return denoised, fused


def smore_item_graphs(features: Mapping[str, Tensor], image_knn_k: int, text_knn_k: int,
                      chunk_size: int | None = None) -> list[Tensor]:
    r"""SMORE's item graphs: per modality the weighted, symmetrically normalised cosine top-k
    graph (MGCN's; :math:`k` = ``image_knn_k`` for the modality named ``"image"``,
    ``text_knn_k`` for the others), then the fusion graph, their entry-wise maximum
    (:func:`lirdrec.graphs.max_combine_graphs`). Returns :math:`|M|+1` sparse :math:`(I, I)`.
    """
    graphs = [build_knn_graph(x, image_knn_k if m == "image" else text_knn_k, "sym",
                              weighted=True, chunk_size=chunk_size)
              for m, x in features.items()]
    return graphs + [max_combine_graphs(graphs)]


@register("smore")
class SMORE(GeneratorStateMixin, Recommender):
    r"""SMORE from "Spectrum-based Modality Representation Fusion Graph Convolutional Network
    for Multimodal Recommendation" (Ong & Khong, WSDM 2025, arXiv:2412.14978), as MMRec
    implements it (``src/models/smore.py``).

    Projected (fine-tuned) features :math:`\mathbf{F}_m = \mathbf{X}_mW_m^\top + \mathbf{b}_m`
    are denoised and fused in the frequency domain (:func:`spectrum_convolution`), giving one
    view per modality and a fusion view :math:`f`; each gates the item IDs,
    :math:`\tilde{\mathbf{E}}_v = \mathbf{Q}\odot\sigma(W^g_v\hat{\mathbf{F}}_v + \mathbf{b}^g_v)`
    for :math:`v \in M \cup \{f\}`, and is propagated :math:`n` times over its item graph
    (:func:`smore_item_graphs`; the fusion view over the max-pooled graph), users aggregating
    with :math:`\hat R = \hat A_{UI}`: :math:`\mathbf{E}_v = [\hat R\mathbf{H}_v;
    \mathbf{H}_v]`, :math:`\mathbf{H}_v = S_v^{n}\tilde{\mathbf{E}}_v`. The behavioural view
    :math:`\mathbf{C}` is LightGCN (layer mean over :math:`0..L`). The modality-aware
    preference module (Sec. 3.4):

    .. math::
        \mathbf{A}_m = \mathrm{softmax}_{d}\big(W^{q2}_m\tanh(W^{q1}_m\mathbf{E}_f +
        \mathbf{b}^{q1}_m)\big)\odot\mathbf{E}_m,\quad
        \mathbf{E}^s = \frac{1}{|M|+1}\Big(\sum_m \mathbf{p}_m\odot\mathbf{A}_m
        + \mathbf{p}_f\odot\mathbf{E}_f\Big),\quad
        \mathbf{p}_v = \mathrm{drop}\big(\sigma(W^p_v\mathbf{C} + \mathbf{b}^p_v)\big),

    (softmax over the :math:`d` features of each row), :math:`[\mathbf{u};\mathbf{i}] =
    \mathbf{C} + \mathbf{E}^s`, and MGCN's loss (BPR, squared norms of the batch's final rows
    times :math:`\lambda/(2B)`, :math:`\lambda_{cl}` times the side-vs-content InfoNCE of users
    and positive items at temperature 0.2).

    With image and text this is the reference; more modalities multiply all their spectra
    in the fusion view and max-pool all their graphs. Preference dropout (training only) draws
    from the model's own :class:`torch.Generator`. The learning-rate decay
    (:math:`0.96^{e/50}`) is a trainer setting (``trainer_defaults``).

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        adj (Tensor): :math:`\hat A`, sparse CSR :math:`(U+I, U+I)` from
            :func:`lirdrec.graphs.bipartite_adjacency`.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` raw features.
        item_graphs (list[Tensor] | None): the :math:`|M|+1` graphs of
            :func:`smore_item_graphs`; ``None`` builds them.
        embedding_dim (int, optional): :math:`d`, even. (default: ``64``)
        n_ui_layers (int, optional): :math:`L`. (default: ``3``)
        n_mm_layers (int, optional): :math:`n` (MMRec ``n_layers``). (default: ``1``)
        image_knn_k (int, optional): neighbours in the image graph. (default: ``10``)
        text_knn_k (int, optional): neighbours in the other graphs. (default: ``10``)
        reg_weight (float, optional): :math:`\lambda`. (default: ``1e-5``)
        cl_loss (float, optional): :math:`\lambda_{cl}`. (default: ``0.01``)
        dropout (float, optional): preference dropout (MMRec ``dropout_rate``).
            (default: ``0.0``)
        generator_seed (int, optional): seed of the dropout generator; ``None`` draws it from
            torch's global RNG at construction. (default: ``None``)
        knn_chunk_size (int | None, optional): rows per kNN chunk. (default: ``None``)

    Shapes:
        - **forward:** users :math:`(U, d)`, items :math:`(I, d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items, neg_items :math:`(B,)` -> scalar
    """

    scores_cold_items = True  # the item-item views reach an item from its features
    trainer_defaults = {"lr_decay": 0.96, "lr_decay_epochs": 50}  # the reference configuration
    feature_branch = ("projections",)
    temperature = 0.2

    constraints = {
        "adj": Shape("num_nodes", "num_nodes"),
        "embedding_dim": Interval(2, integer=True),
        "n_ui_layers": Interval(0, integer=True),
        "n_mm_layers": Interval(0, integer=True),
        "image_knn_k": Interval(1, "num_items", integer=True),
        "text_knn_k": Interval(1, "num_items", integer=True),
        "reg_weight": Interval(0),
        "cl_loss": Interval(0),
        "dropout": Interval(0, 1, closed="left"),
        "knn_chunk_size": Interval(1, integer=True, optional=True),
    }

    def __init__(self, num_users: int, num_items: int, adj: Tensor,
                 features: Mapping[str, Tensor], item_graphs: Sequence[Tensor] | None,
                 embedding_dim: int = 64, n_ui_layers: int = 3, n_mm_layers: int = 1,
                 image_knn_k: int = 10, text_knn_k: int = 10, reg_weight: float = 1e-5,
                 cl_loss: float = 0.01, dropout: float = 0.0, generator_seed: int | None = None,
                 knn_chunk_size: int | None = None) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.modalities, mats = check_features(type(self).__name__, features, self.num_items)
        d = self.embedding_dim = int(embedding_dim)
        self.n_ui_layers, self.n_mm_layers = int(n_ui_layers), int(n_mm_layers)
        self.image_knn_k, self.text_knn_k = int(image_knn_k), int(text_knn_k)
        self.reg_weight, self.cl_loss, self.dropout = float(reg_weight), float(cl_loss), \
            float(dropout)
        if item_graphs is None:  # from_dataset passes them; a test may build from tensors
            item_graphs = smore_item_graphs(dict(zip(self.modalities, mats)), self.image_knn_k,
                                            self.text_knn_k, knn_chunk_size)
        views = len(mats) + 1  # each modality, then the fusion view
        shapes = [tuple(g.shape) for g in item_graphs]
        check_param(type(self).__name__, "item_graphs", shapes,
                    shapes == [(self.num_items, self.num_items)] * views,
                    f"{views} ({self.num_items}, {self.num_items}) graphs (modalities, fusion)")
        self.register_buffer("adj", adj, persistent=False)
        register_user_item_block(self, adj)
        for j, g in enumerate(item_graphs):  # constants: follow .to(), rebuilt by from_dataset
            self.register_buffer(f"item_graph_{j}", g, persistent=False)
            self.register_buffer(f"item_graph_t_{j}", transpose_csr(g), persistent=False)
        self._add_id_embeddings(d)
        self.features = feature_tables(mats, trainable=True)  # Embedding(freeze=False) there
        self.projections = nn.ModuleList(nn.Linear(x.shape[1], d) for x in mats)
        self.filters = nn.ParameterList(nn.Parameter(torch.empty(d // 2 + 1, 2))
                                        for _ in range(views))  # modalities, then fusion
        self.purifiers = nn.ModuleList(sigmoid_gate(d) for _ in range(views))
        self.preferences = nn.ModuleList(sigmoid_gate(d) for _ in range(views))
        self.queries = nn.ModuleList(
            nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d, bias=False))
            for _ in mats)
        self.reset_parameters()
        self.generator, self.generator_seed = make_generator(generator_seed)

    def reset_parameters(self) -> None:
        """Xavier-uniform ID tables, standard-normal filters (the reference's ``randn``),
        every linear layer torch's default.
        """
        self._reset_id_embeddings()
        for w in self.filters:
            nn.init.normal_(w)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "SMORE":
        r""":math:`\hat A` and the item graphs from :mod:`lirdrec.graphs`."""
        cls.check_kwargs(ds, kwargs)
        adj = bipartite_adjacency(ds.num_users, ds.num_items, ds.train.users, ds.train.items)
        features = ds.features_tensor()
        graphs = smore_item_graphs(features, cls.default("image_knn_k", kwargs),
                                   cls.default("text_knn_k", kwargs),
                                   cls.default("knn_chunk_size", kwargs))
        return cls(ds.num_users, ds.num_items, adj, features, graphs, **kwargs)

    def _drop(self, x: Tensor, train: bool) -> Tensor:
        if not train or self.dropout <= 0.0:
            return x
        keep = torch.rand(x.shape, generator=self.generator).to(x.device) >= self.dropout
        return x * keep.to(x.dtype) / (1.0 - self.dropout)

    def _views(self, train: bool) -> tuple[Tensor, Tensor]:
        r"""Content :math:`\mathbf{C}` and side :math:`\mathbf{E}^s`, both :math:`(U+I, d)`."""
        content = propagate(self.adj, torch.cat([self.user_emb, self.item_emb]),
                            self.n_ui_layers, "mean")
        raw = self.encoded_features() or list(self.features)  # end-to-end: from an encoder
        denoised, fused = spectrum_convolution(
            [proj(x) for proj, x in zip(self.projections, raw)], self.filters[:-1],
            self.filters[-1])
        views = []
        for j, (conv, purify) in enumerate(zip([*denoised, fused], self.purifiers)):
            views.append(item_view(  # (U+I, d)
                self.item_emb * purify(conv), getattr(self, f"item_graph_{j}"),
                getattr(self, f"item_graph_t_{j}"), self.n_mm_layers, self.ui, self.ui_t))
        fusion = views[-1]
        prefs = [self._drop(p(content), train) for p in self.preferences]
        side = prefs[-1] * fusion
        for view, query, pref in zip(views[:-1], self.queries, prefs):
            side = side + pref * (torch.softmax(query(fusion), dim=-1) * view)
        return content, side / len(views)

    def forward(self) -> tuple[Tensor, Tensor]:
        content, side = self._views(train=False)
        out = content + side
        return out[: self.num_users], out[self.num_users:]

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        content, side = self._views(train=True)
        return content_side_loss(content, side, self.num_users, users, pos_items, neg_items,
                                 self.reg_weight, self.cl_loss, self.temperature)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        other = [*self.purifiers.parameters(), *self.preferences.parameters(),
                 *self.queries.parameters()]
        return {"item_id": [self.item_emb],
                "item_feature": [*self.features, *self.projections.parameters(), *self.filters],
                "user": [self.user_emb], "other": other}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, embedding_dim={self.embedding_dim}, "
                f"modalities={self.modalities}, n_ui_layers={self.n_ui_layers}, "
                f"n_mm_layers={self.n_mm_layers}, dropout={self.dropout}")
