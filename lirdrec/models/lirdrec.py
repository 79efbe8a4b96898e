r"""LIRDRec: items learned directly from their multimodal features, without item ID embeddings.

Zhou, Zhang, Niyato, Shen, "Learning Item Representations Directly from Multimodal Features for
Effective Recommendation", arXiv:2505.04960; reference code GitHub ``enoche/LIRDRec``. The math
follows the paper (encoders, propagation, fusion, loss); see :class:`LIRDRec`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lirdrec.features.transform import TRANSFORMS, dct, shared_channel_input
from lirdrec.graphs import (
    bipartite_adjacency,
    build_cold_item_graph,
    build_item_graph,
    degree_features,
    item_degrees,
    knn_modality_weights,
    propagate_sum,
    residual_spmm,
    spmm,
    transpose_csr,
)
from lirdrec.models.base import (
    Interval,
    OneOf,
    Recommender,
    Shape,
    bpr_loss,
    check_arguments,
    check_param,
)
from lirdrec.models.pwc import PWC, ChannelAttention
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

#: ``build_item_graph`` and ``knn_modality_weights`` live in :mod:`lirdrec.graphs` (re-exported).
__all__ = ["FeatureEncoder", "LIRDRec", "build_item_graph", "knn_modality_weights"]

SHARED = "shared"
POPULARITY = "popularity"
LAYER_COMBINES = ("sum", "mean")
INPUT_NORMS = ("l2", "none")
POPULARITY_CHANNELS = ("off", "degree")
COLD_ITEM_REPS = ("none", "knn")
FUSIONS = ("pwc", "attention", "mean", "concat")
ITEM_IDS = ("off", "add")
AUTOCAST_DTYPES = (None, "bfloat16")
SHARED_INPUTS = ("auto", "cache", "fold")


class FeatureEncoder(nn.Sequential):
    r"""Item encoder of one channel: :math:`\mathbf{h} = \mathbf{W}_2\,\mathrm{LeakyReLU}(
    \mathbf{W}_1\mathbf{x} + \mathbf{b}_1)`, :math:`d_m \to 4d` (bias) :math:`\to d` (no bias).

    Shapes:
        - x :math:`(I, d_m)` -> :math:`(I, d)`
    """

    def __init__(self, in_dim: int, embedding_dim: int, hidden_mult: int = 4) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_mult * embedding_dim),
            # in place: autograd keeps one (I, 4d) tensor instead of two (backward reads the sign
            # of the output, valid for a positive slope)
            nn.LeakyReLU(inplace=True),
            nn.Linear(hidden_mult * embedding_dim, embedding_dim, bias=False),
        )

    def reset_parameters(self) -> None:
        self[0].reset_parameters()
        self[2].reset_parameters()


class _RowNormalize(torch.autograd.Function):
    r""":math:`\mathbf{y} = \mathbf{x} / \max(\lVert\mathbf{x}\rVert_2, \epsilon)` along the last
    axis of the row-wise concatenation of ``parts``, written straight into one output (no
    concatenated copy of the inputs), with a three-pass backward :math:`\mathbf{g}_x =
    (\mathbf{g} - \mathbf{y}\,\langle\mathbf{g}, \mathbf{y}\rangle) / \max(\lVert\mathbf{x}
    \rVert, \epsilon)` (the projection term only where the norm exceeds :math:`\epsilon`) split
    back into the parts: the same values as :func:`torch.nn.functional.normalize` of
    :func:`torch.cat`, whose autograd graph makes about twice as many passes over the data.
    """

    @staticmethod
    def forward(ctx, eps: float, *parts: Tensor) -> Tensor:  # type: ignore[override]
        rows = [p.shape[0] for p in parts]
        y = parts[0].new_empty((sum(rows), *parts[0].shape[1:]))
        denoms, lives = [], []
        for part, out in zip(parts, y.split(rows)):
            norm = torch.linalg.vector_norm(part, dim=-1, keepdim=True)
            lives.append(norm > eps)
            denoms.append(norm.clamp_min_(eps))
            torch.div(part, denoms[-1], out=out)
        denom, live = (denoms[0], lives[0]) if len(parts) == 1 else (
            torch.cat(denoms), torch.cat(lives))
        ctx.rows = rows
        ctx.save_for_backward(y, denom, live)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        y, denom, live = ctx.saved_tensors
        dot = torch.linalg.vecdot(grad, y, dim=-1).unsqueeze(-1) * live  # (N, C, 1)
        grad_x = torch.addcmul(grad, y, dot, value=-1.0).div_(denom)
        return (None, *grad_x.split(ctx.rows))


def row_normalize(*parts: Tensor, eps: float = 1e-12) -> Tensor:
    """L2-normalise the rows of ``torch.cat(parts)`` along the last axis
    (``torch.nn.functional.normalize(torch.cat(parts), dim=-1)``) without the concatenated copy,
    with a fast backward.
    """
    return _RowNormalize.apply(eps, *parts)


@register("lirdrec")
class LIRDRec(Recommender):
    r"""LIRDRec from "Learning Item Representations Directly from Multimodal Features for
    Effective Recommendation" (Zhou et al., arXiv:2505.04960).

    Items have no ID embedding; each channel :math:`c \in M \cup \{s\}` encodes the item features
    (:class:`FeatureEncoder`), users have one ID table :math:`\mathbf{P}_c` per channel (stored
    together as ``user_emb`` of shape :math:`(U, C, d)`, Xavier-normal per channel):

    .. math::
        \mathbf{h}_c = \mathbf{W}_{2c}\,\mathrm{LeakyReLU}(\mathbf{W}_{1c}\mathbf{X}_c
        + \mathbf{b}_{1c}),\qquad
        \mathbf{X}_s = [\mathrm{DCT}(\mathbf{X}_m)]_{m \in M}\ \text{(constant)},

    .. math::
        \mathbf{E}^{(0)} = \big[\,\mathrm{norm}([\mathbf{P}_c;\mathbf{h}_c])\,\big]_{c},\qquad
        \mathbf{E} = \sum_{l=0}^{L}\hat{\mathbf{A}}^{l}\mathbf{E}^{(0)},

    where norm is row-wise L2 normalisation per channel (users stacked on items) and the layers
    are SUMMED (not averaged as in torch_geometric's LightGCN; ``layer_combine="mean"`` divides
    :math:`\mathbf{E}` by :math:`L + 1`). With ``cold_item_rep="knn"`` each item without training
    interactions (which collects only its layer-0 term) takes instead the mean of the propagated
    rows of its :math:`k` nearest warm items in content space (:func:`build_cold_item_graph`,
    :math:`k` = ``knn_k``): :math:`\mathbf{E}_i \leftarrow \frac1k\sum_{j \in
    N_k^{\text{warm}}(i)} \mathbf{E}_j` (warm rows unchanged). Items get the frozen kNN residual
    :math:`\mathbf{Z} = \mathbf{E}_I + S^{n}\mathbf{E}_I` (:func:`build_item_graph`, :math:`n` =
    ``n_mm_layers``), users are fused by :class:`~lirdrec.models.pwc.PWC`
    (:math:`\mathrm{User}_u = [\alpha_{u,c}\mathbf{e}_{u,c}]_c`), and
    :math:`\hat y_{ui} = \langle \mathrm{User}_u, \mathbf{Z}_i\rangle`. The loss is

    .. math::
        -\frac1B\sum_b \log\sigma(\hat y_{u i^+} - \hat y_{u i^-})
        + \lambda\big(\mathrm{mean}(\mathrm{User}^2) + \mathrm{mean}(\mathbf{Z}^2)\big),

    the regulariser over ALL users and items. Every step recomputes the full forward (as the
    reference); constant inputs (features, the DCT channel or its orthonormal basis, graphs and
    the kNN transpose) are computed once and kept as non-persistent buffers (they follow
    ``.to()`` and stay out of checkpoints); PWC's schedule state is in the ``state_dict``.

    Generalisation (spec section 7): any :math:`|M| \ge 1` modalities, :math:`C = |M| + 1`
    channels (:math:`|M|` with ``transform="none"``); items that never occur in training have
    zero rows in :math:`\hat{\mathbf{A}}` and are still scored from their features.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` raw features; channel order
            is the dict order, then the shared channel. A modality may not be named ``"shared"``.
        adj (Tensor): :math:`\hat{\mathbf{A}}`, sparse CSR :math:`(U+I, U+I)` from
            :func:`lirdrec.graphs.bipartite_adjacency`.
        item_graph (Tensor | None): :math:`S`, sparse :math:`(I, I)`; ``None`` builds it from
            ``features`` with ``knn_k``, ``mm_image_weight`` (:func:`build_item_graph`) when
            ``n_mm_layers > 0``. (default: ``None``)
        embedding_dim (int): :math:`d`; encoders are :math:`d_m \to 4d \to d`, PWC scorers
            :math:`d \to d/4 \to 1`. (default: ``64``)
        n_ui_layers (int): :math:`L`. (default: ``2``)
        n_mm_layers (int): :math:`n`, applications of :math:`S`; ``0`` disables the item graph.
            (default: ``1``)
        knn_k (int): :math:`k` of the kNN graph. (default: ``10``)
        mm_image_weight (float): :math:`w \in [0, 1]` (:func:`knn_modality_weights`).
            (default: ``0.1``)
        reg_weight (float): :math:`\lambda`. (default: ``1e-3``)
        decay_base (float): PWC :math:`b`. (default: ``0.9``)
        decay_weight (float): PWC initial :math:`w_1`. (default: ``0.9``)
        transform (str): shared channel input: ``"dct"`` | ``"identity"`` (raw concat) |
            ``"none"`` (no shared channel). (default: ``"dct"``)
        fusion (str): ``"pwc"`` | ``"attention"`` (scorers only, no copying) | ``"mean"``
            (:math:`\alpha = 1/C`) | ``"concat"`` (:math:`\alpha = 1`). (default: ``"pwc"``)
        item_id (str): ``"off"`` | ``"add"``: one learnable item ID table :math:`(I, d)`
            (Xavier-normal) added to :math:`\mathbf{h}_c` of every channel before normalisation
            (the "ID + features" design the paper argues against). (default: ``"off"``)
        image_modality (str): modality of the reference's image slot. (default: ``"image"``)
        autocast_dtype (str | None): ``"bfloat16"`` runs the encoders under
            :func:`torch.autocast` with bfloat16 inputs cached; propagation, fusion and loss stay
            float32. (default: ``None``, float32 throughout)
        shared_input (str): ``"cache"`` the constant :math:`\mathbf{X}_s` as a buffer, ``"fold"``
            the (orthonormal) DCT into the shared encoder's first-layer weights instead (no
            :math:`I \times \sum_m d_m` copy), ``"auto"`` chooses (:meth:`_resolve_shared_input`).
            (default: ``"auto"``)
        layer_combine (str): ``"sum"`` :math:`\mathbf{E} = \sum_{l=0}^{L}\hat{\mathbf{A}}^{l}
            \mathbf{E}^{(0)}` (the paper's) or ``"mean"``, that divided by :math:`L + 1`
            (torch_geometric's LightGCN). (default: ``"sum"``)
        input_norm (str): ``"l2"`` :math:`\mathbf{E}^{(0)}` is the per-channel L2-normalised
            users and encoded items (the paper's), ``"none"`` takes them as they are, so that
            their norms can carry a score scale as in ID-based models (a gap-study switch).
            (default: ``"l2"``)
        cold_item_rep (str): ``"none"`` or ``"knn"``: items of training degree 0 take the mean of
            the propagated rows of their ``knn_k`` nearest warm items (see above), so they sit
            where their content neighbours sit, with their layer-sum magnitude. (Not the
            dataset's ``cold_items`` fraction, which holds items out.) (default: ``"none"``)
        cold_graph (Tensor | None): the cold -> warm map :math:`(I, I)` of
            :func:`build_cold_item_graph`; ``None`` builds it from ``features`` and the items
            without edges in ``adj`` when ``cold_item_rep="knn"``. (default: ``None``)
        popularity_channel (str): ``"off"`` or ``"degree"``: one more item channel ``popularity``
            whose input is :func:`degree_features` of the training degrees,
            :math:`[\log(1+n_i)/\log(1+\max n),\ \mathrm{onehot}_8(\text{quantile
            bucket})]` (all zero for a cold item): data, not an ID parameter, so cold items stay
            scorable. It has its own encoder and user table and takes part in the fusion; the
            kNN graph and the shared (DCT) channel stay content only. (default: ``"off"``)
        popularity_features (Tensor | None): that input :math:`(I, 9)`; ``None`` computes it
            from the item degrees of ``adj`` (:func:`item_degrees`). (default: ``None``)

    Shapes:
        - **forward:** users :math:`(U, C d)`, items :math:`(I, C d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items, neg_items :math:`(B,)` -> scalar
    """

    scores_cold_items = True  # items are computed from their features

    trainer_defaults = {"lr": 1e-4}  # the reference configuration
    #: submodules whose output is the feature-derived item representation (gradient-bias hooks)
    feature_branch = ("encoders",)


    constraints = {
        "adj": Shape("num_nodes", "num_nodes"),
        "item_graph": Shape("num_items", "num_items", optional=True),
        "embedding_dim": Interval(4, integer=True),
        "n_ui_layers": Interval(0, integer=True),
        "n_mm_layers": Interval(0, integer=True),
        "knn_k": Interval(1, "num_items", integer=True),
        "mm_image_weight": Interval(0, 1),
        "reg_weight": Interval(0),
        "decay_base": Interval(0, 1, closed="right"),
        "decay_weight": Interval(0, 1),
        "transform": OneOf(*TRANSFORMS),
        "fusion": OneOf(*FUSIONS),
        "item_id": OneOf(*ITEM_IDS),
        "autocast_dtype": OneOf(*AUTOCAST_DTYPES),
        "shared_input": OneOf(*SHARED_INPUTS),
        "layer_combine": OneOf(*LAYER_COMBINES),
        "input_norm": OneOf(*INPUT_NORMS),
        "cold_item_rep": OneOf(*COLD_ITEM_REPS),
        "cold_graph": Shape("num_items", "num_items", optional=True),
        "popularity_channel": OneOf(*POPULARITY_CHANNELS),
    }

    def __init__(
        self,
        num_users: int,
        num_items: int,
        features: Mapping[str, Tensor],
        adj: Tensor,
        item_graph: Tensor | None = None,
        embedding_dim: int = 64,
        n_ui_layers: int = 2,
        n_mm_layers: int = 1,
        knn_k: int = 10,
        mm_image_weight: float = 0.1,
        reg_weight: float = 1e-3,
        decay_base: float = 0.9,
        decay_weight: float = 0.9,
        transform: str = "dct",
        fusion: str = "pwc",
        item_id: str = "off",
        image_modality: str = "image",
        autocast_dtype: str | None = None,
        shared_input: str = "auto",
        layer_combine: str = "sum",
        input_norm: str = "l2",
        cold_item_rep: str = "none",
        cold_graph: Tensor | None = None,
        popularity_channel: str = "off",
        popularity_features: Tensor | None = None,
    ) -> None:
        super().__init__(num_users, num_items)
        name = type(self).__name__
        check_param(name, "features", type(features).__name__,
                    isinstance(features, Mapping) and len(features) > 0,
                    "a non-empty dict modality -> (num_items, d_m) tensor")
        for m, x in features.items():
            check_param(name, f"features[{m!r}]", tuple(getattr(x, "shape", ())),
                        getattr(x, "ndim",
                                0) == 2 and x.shape[0] == self.num_items and x.shape[1] > 0,
                        f"of shape ({self.num_items}, d_m)")
        check_param(name, "features", list(features),
                    SHARED not in features and POPULARITY not in features,
                    f"modality names other than {SHARED!r} and {POPULARITY!r} (channel names)")
        check_arguments(self, locals())

        self.embedding_dim = int(embedding_dim)
        self.n_ui_layers = int(n_ui_layers)
        self.n_mm_layers = int(n_mm_layers)
        self.knn_k = int(knn_k)
        self.mm_image_weight = float(mm_image_weight)
        self.reg_weight = float(reg_weight)
        self.decay_base = float(decay_base)
        self.decay_weight = float(decay_weight)
        self.transform = transform
        self.fusion = fusion
        self.item_id = item_id
        self.image_modality = image_modality
        self.autocast_dtype = autocast_dtype
        self.layer_combine = layer_combine
        self.input_norm = input_norm
        self.cold_item_rep = cold_item_rep
        self.popularity_channel = popularity_channel
        self.modalities = list(features)
        self.channels = (self.modalities + ([] if transform == "none" else [SHARED])
                         + ([POPULARITY] if popularity_channel == "degree" else []))

        # ---- constant inputs (non-persistent buffers: follow .to(), stay out of checkpoints)
        input_dtype = torch.bfloat16 if autocast_dtype == "bfloat16" else torch.float32
        inputs = {m: torch.as_tensor(x).detach() for m, x in features.items()}
        for m in self.modalities:
            self.register_buffer(f"input_{m}", inputs[m].to(input_dtype).contiguous(),
                                 persistent=False)
        self.in_dims = {m: int(inputs[m].shape[1]) for m in self.modalities}
        if transform != "none":
            self.in_dims[SHARED] = sum(self.in_dims.values())
        self.shared_input = self._resolve_shared_input(shared_input)
        if self.shared_input == "cache":
            self.register_buffer("input_shared", shared_channel_input(inputs, transform).to(
                input_dtype), persistent=False)
        elif self.shared_input == "fold" and transform == "dct":
            for m in self.modalities:  # DCT(x) = x @ B with B = DCT of the identity rows
                basis = dct(torch.eye(self.in_dims[m]))
                self.register_buffer(f"dct_basis_{m}", basis, persistent=False)

        if self.n_mm_layers > 0 and item_graph is None:  # from_dataset passes it; tests may not
            item_graph = build_item_graph(
                {m: inputs[m] for m in self.modalities}, self.knn_k, self.mm_image_weight,
                image_modality)
        self.register_buffer("adj", adj.to_sparse_csr() if adj.layout != torch.sparse_csr else adj,
                             persistent=False)
        if popularity_channel == "degree":  # data from the training graph, not a parameter
            if popularity_features is None:
                popularity_features = degree_features(item_degrees(self.adj, self.num_users))
            pop = torch.as_tensor(popularity_features).detach()
            check_param(name, "popularity_features", tuple(pop.shape),
                        pop.ndim == 2 and pop.shape[0] == self.num_items,
                        f"of shape ({self.num_items}, width)")
            self.register_buffer("input_popularity", pop.to(input_dtype).contiguous(),
                                 persistent=False)
            self.in_dims[POPULARITY] = int(pop.shape[1])
        cold = None
        if cold_item_rep == "knn":
            if cold_graph is None:
                warm = item_degrees(self.adj, self.num_users) > 0
                cold_graph = build_cold_item_graph(
                    {m: inputs[m] for m in self.modalities}, warm, self.knn_k,
                    self.mm_image_weight, image_modality)
            graph = (cold_graph.to_sparse_csr() if cold_graph.layout != torch.sparse_csr
                     else cold_graph).float()
            cold = graph.crow_indices().diff() > 0  # (I,) the items that take their neighbours'
        if cold is not None and bool(cold.any()):
            self.register_buffer("cold_graph", graph, persistent=False)
            self.register_buffer("cold_graph_t", transpose_csr(graph), persistent=False)
            self.register_buffer("cold_mask", cold.unsqueeze(1), persistent=False)  # (I, 1)
        else:  # no switch, or no item without training interactions
            self.cold_graph = self.cold_graph_t = self.cold_mask = None
        if self.n_mm_layers > 0:
            graph = (item_graph.to_sparse_csr() if item_graph.layout != torch.sparse_csr
                     else item_graph)
            self.register_buffer("item_graph", graph.float(), persistent=False)
            self.register_buffer("item_graph_t", transpose_csr(graph.float()), persistent=False)
        else:
            self.item_graph = None
            self.item_graph_t = None

        # ---- parameters
        d = self.embedding_dim
        self.encoders = nn.ModuleDict(
            {c: FeatureEncoder(self.in_dims[c], d) for c in self.channels}
        )
        # P_c for every channel c in one tensor: user_emb[:, k] is the table of self.channels[k]
        self.user_emb = nn.Parameter(torch.empty(self.num_users, len(self.channels), d))
        self.item_id_emb = (nn.Parameter(torch.empty(self.num_items, d)) if item_id == "add"
                            else None)
        if fusion == "pwc":
            self.fusion_module: nn.Module | None = PWC(
                self.num_users, self.channels, d, self.decay_base, self.decay_weight)
        elif fusion == "attention":
            self.fusion_module = ChannelAttention(self.channels, d)
        else:
            self.fusion_module = None
        self.reset_parameters()

    # ------------------------------------------------------------------ construction
    def reset_parameters(self) -> None:
        """Xavier-normal user tables (and item IDs), torch defaults for the linear layers."""
        for c in self.channels:
            self.encoders[c].reset_parameters()
        for k in range(len(self.channels)):  # each (U, d) table as its own Xavier-normal draw
            nn.init.xavier_normal_(self.user_emb[:, k])
        if self.item_id_emb is not None:
            nn.init.xavier_normal_(self.item_id_emb)
        if self.fusion_module is not None:
            self.fusion_module.reset_parameters()

    @classmethod
    def from_dataset(cls, ds: Dataset, **kwargs: Any) -> LIRDRec:
        r""":math:`\hat A` of the training split and the frozen kNN item graph of
        ``ds.features`` from :mod:`lirdrec.graphs`, passed to the constructor (and, when
        switched on, the cold -> warm map and the degree features of the training split).

        ``modalities`` (a list or comma-separated string) selects feature files; default all.
        """
        modalities = kwargs.pop("modalities", None)
        if isinstance(modalities, str):
            modalities = [m.strip() for m in modalities.split(",") if m.strip()]
        if modalities is not None:
            missing = [m for m in modalities if m not in ds.features]
            check_param(cls.__name__, "modalities", modalities, not missing,
                        f"a subset of the dataset's modalities {ds.modalities}")
        features = ds.features_tensor(modalities)
        cls.check_kwargs(ds, kwargs)
        adj = bipartite_adjacency(ds.num_users, ds.num_items, ds.train.users, ds.train.items)
        if kwargs.get("item_graph") is None and int(cls.default("n_mm_layers", kwargs)) > 0:
            kwargs["item_graph"] = build_item_graph(
                features, cls.default("knn_k", kwargs), cls.default("mm_image_weight", kwargs),
                cls.default("image_modality", kwargs))
        degree = torch.from_numpy(ds.item_degree())
        if cls.default("cold_item_rep", kwargs) == "knn" and kwargs.get("cold_graph") is None:
            kwargs["cold_graph"] = build_cold_item_graph(
                features, degree > 0, cls.default("knn_k", kwargs),
                cls.default("mm_image_weight", kwargs), cls.default("image_modality", kwargs))
        if (cls.default("popularity_channel", kwargs) == "degree"
                and kwargs.get("popularity_features") is None):
            kwargs["popularity_features"] = degree_features(degree)
        return cls(ds.num_users, ds.num_items, features, adj, **kwargs)

    # ------------------------------------------------------------------ forward
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        device = self.adj.device.type
        return torch.autocast(device_type=device, dtype=torch.bfloat16)

    def _resolve_shared_input(self, mode: str) -> str:
        r"""``"cache"`` keeps :math:`\mathbf{X}_s` as a buffer; ``"fold"`` multiplies the raw
        features by :math:`B_m \mathbf{W}_{1s,m}^\top` instead (:math:`\mathrm{DCT}(\mathbf{X}_m)
        = \mathbf{X}_m B_m`, :math:`B_m` orthonormal :math:`d_m \times d_m`): no
        :math:`I \times \sum_m d_m` copy, at an extra :math:`2\sum_m d_m^2 \cdot 4d` flops per
        step. ``"auto"``: fold for ``identity`` (free), and for ``dct`` when that extra is at most
        5 % of the shared channel's first layer (:math:`20\sum_m d_m^2 \le I \sum_m d_m`, e.g.
        100k items) -- the same math either way, up to float rounding.
        """
        if self.transform == "none":
            return "none"
        if mode != "auto":
            return mode
        if self.transform == "identity":
            return "fold"
        dims = [self.in_dims[m] for m in self.modalities]
        return "fold" if 20 * sum(x * x for x in dims) <= self.num_items * sum(dims) else "cache"

    def _encode_shared(self, inputs: list[Tensor]) -> Tensor:
        r""":math:`\mathbf{h}_s` from the cached :math:`\mathbf{X}_s` or from the folded weights."""
        enc = self.encoders[SHARED]
        if self.shared_input == "cache":
            return enc(self.input_shared)
        weight = enc[0].weight.split([self.in_dims[m] for m in self.modalities], dim=1)
        z = enc[0].bias
        for m, x, w in zip(self.modalities, inputs, weight):
            w_t = w.t() if self.transform == "identity" else getattr(self, f"dct_basis_{m}") @ w.t()
            z = torch.addmm(z, x, w_t)  # (I, 4d), accumulated in the GEMM
        return enc[2](enc[1](z))

    def attach_feature_encoder(self, encoder: nn.Module) -> None:
        """As :meth:`Recommender.attach_feature_encoder`; a cached shared-channel input is
        switched to the folded form (the same math), which follows the encoded features.
        """
        super().attach_feature_encoder(encoder)
        if self.shared_input == "cache":
            if self.transform == "dct":
                for m in self.modalities:
                    basis = dct(torch.eye(self.in_dims[m])).to(self.adj.device)
                    self.register_buffer(f"dct_basis_{m}", basis, persistent=False)
            del self.input_shared
            self.shared_input = "fold"

    def item_channels(self) -> Tensor:
        r"""Encoded items :math:`[\mathbf{h}_c]_c` (plus item IDs): float32 :math:`(I, C, d)`."""
        inputs = self.encoded_features()  # end-to-end: recomputed from an encoder
        if inputs is None:
            inputs = [getattr(self, f"input_{m}") for m in self.modalities]
        with self._autocast():
            hs = [self.encoders[m](x) for m, x in zip(self.modalities, inputs)]
            if self.transform != "none":
                hs.append(self._encode_shared(inputs))
            if self.popularity_channel == "degree":
                hs.append(self.encoders[POPULARITY](self.input_popularity))
        h = torch.stack(hs, dim=1).float()  # (I, C, d)
        if self.item_id_emb is not None:
            h = h + self.item_id_emb.unsqueeze(1)
        return h

    def propagate(self) -> Tensor:
        r""":math:`\mathbf{E} = \sum_{l=0}^{L}\hat{\mathbf{A}}^{l}\mathbf{E}^{(0)}` (divided by
        :math:`L+1` for ``layer_combine="mean"``), users on top: :math:`(U + I, C d)`, before the
        cold items' neighbour mean, the kNN residual and the user fusion.
        """
        if self.input_norm == "l2":  # E^(0): per-channel L2, (U+I, C, d)
            x = row_normalize(self.user_emb, self.item_channels())
        else:
            x = torch.cat([self.user_emb, self.item_channels()])
        # Horner's rule, T <- E0 + A T; adj is symmetric: its own transpose in backward
        out = propagate_sum(self.adj, x.view(x.shape[0], -1), self.n_ui_layers)
        if self.layer_combine == "mean":
            out = out / (self.n_ui_layers + 1)
        return out

    def cold_items_from_neighbours(self, item_rep: Tensor) -> Tensor:
        r"""``cold_item_rep="knn"``: the rows of items without training interactions replaced by
        the mean of their nearest warm items' rows, :math:`(I, C d) \to (I, C d)`; warm rows
        are returned as they are (bit for bit).
        """
        if self.cold_graph is None:
            return item_rep
        mixed = spmm(self.cold_graph, item_rep, self.cold_graph_t)  # (I, C d), 0 in warm rows
        return torch.where(self.cold_mask, mixed, item_rep)

    def forward(self) -> tuple[Tensor, Tensor]:
        """Users :math:`(U, C d)` after the fusion; items :math:`(I, C d)` after kNN residual."""
        user_rep, item_rep = self.propagate().split([self.num_users, self.num_items])
        item_rep = self.cold_items_from_neighbours(item_rep)
        if self.item_graph is not None:  # Z = E_I + S^n E_I
            item_rep = residual_spmm(self.item_graph, item_rep, self.n_mm_layers, self.item_graph_t)
        return self.fuse_users(user_rep), item_rep

    def fuse_users(self, user_rep: Tensor) -> Tensor:
        r"""Channel fusion of the propagated users :math:`(U, C d)` -> :math:`(U, C d)`."""
        if self.fusion_module is not None:
            return self.fusion_module(user_rep)[0]
        if self.fusion == "mean":
            return user_rep / len(self.channels)
        return user_rep  # concat

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        """BPR on the batch plus ``reg_weight`` times the mean squares of ALL representations."""
        user_rep, item_rep = self.forward()
        # index_select: its backward (index_add) is about twice as fast as that of x[idx]
        u = user_rep.index_select(0, users)  # (B, C d)
        pos, neg = item_rep.index_select(0, torch.cat([pos_items, neg_items])).split(len(pos_items))
        rank = bpr_loss((u * pos).sum(-1), (u * neg).sum(-1))
        # mean(x^2) as ||x||^2 / n: one pass in backward instead of three
        reg = (torch.linalg.vector_norm(user_rep).square() / user_rep.numel()
               + torch.linalg.vector_norm(item_rep).square() / item_rep.numel())
        return rank + self.reg_weight * reg

    def on_epoch_start(self, epoch: int) -> None:
        """PWC weight copying for ``epoch`` (1-based); nothing for the other fusions."""
        if isinstance(self.fusion_module, PWC):
            self.fusion_module.copy_weights(epoch)

    @torch.no_grad()
    def alpha(self) -> Tensor | None:
        r"""Current channel weights :math:`\boldsymbol\alpha` :math:`(U, C)` (``None`` for the
        ``mean`` and ``concat`` fusions); computed in eval mode, so PWC's state is not touched.
        """
        if self.fusion_module is None:
            return None
        was = self.training
        self.eval()
        try:
            return self.fusion_module.attention(self.propagate()[: self.num_users])
        finally:
            self.train(was)

    # ------------------------------------------------------------------ introspection
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``item_id``: the item ID table (``item_id="add"`` only); ``item_feature``: every
        channel encoder; ``user``: per-user parameters (user ID tables and PWC's Θ);
        ``other``: the PWC / attention scorers (shared, act on user channels).
        """
        scorers = [] if self.fusion_module is None else list(
            self.fusion_module.scorers.parameters())
        user = [self.user_emb]
        if isinstance(self.fusion_module, PWC):
            user.append(self.fusion_module.theta)
        return {
            "item_id": [] if self.item_id_emb is None else [self.item_id_emb],
            "item_feature": list(self.encoders.parameters()),
            "user": user,
            "other": scorers,
        }

    def extra_repr(self) -> str:
        dims = ", ".join(f"{c}={self.in_dims[c]}" for c in self.channels)
        return (
            f"{super().extra_repr()}, channels=[{dims}], user_emb={tuple(self.user_emb.shape)}, "
            f"item_id_emb={None if self.item_id_emb is None else tuple(self.item_id_emb.shape)}, "
            f"embedding_dim={self.embedding_dim}, "
            f"n_ui_layers={self.n_ui_layers}, n_mm_layers={self.n_mm_layers}, knn_k={self.knn_k}, "
            f"mm_image_weight={self.mm_image_weight}, reg_weight={self.reg_weight}, "
            f"transform={self.transform!r}, fusion={self.fusion!r}, item_id={self.item_id!r}, "
            f"autocast_dtype={self.autocast_dtype!r}, shared_input={self.shared_input!r}, "
            f"layer_combine={self.layer_combine!r}, input_norm={self.input_norm!r}, "
            f"cold_item_rep={self.cold_item_rep!r}, "
            f"popularity_channel={self.popularity_channel!r}"
        )
