"""LGMRec: local (collaborative + modality) graph embeddings plus a global hypergraph."""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirdrec.graphs import (
    bipartite_adjacency,
    hypergraph_propagate,
    interaction_matrix,
    propagate,
    spmm,
    transpose_csr,
)
from lirdrec.models._features import check_features, make_generator
from lirdrec.models.base import (
    GeneratorStateMixin,
    Interval,
    Recommender,
    Shape,
    bpr_loss,
    check_arguments,
    emb_loss,
    logsumexp_mm,
)
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["LGMRec", "hyperedge_nce"]


def hyperedge_nce(a: Tensor, b: Tensor, rows: Tensor, temperature: float) -> Tensor:
    r"""LGMRec's cross-modal hyperedge contrast: for each batch row :math:`r`, the cosine of
    :math:`\mathbf{a}_r` and :math:`\mathbf{b}_r` against all rows of ``b``, SUMMED over the
    batch: :math:`-\sum_{r \in \text{rows}} \log\frac{e^{\cos(\mathbf{a}_r, \mathbf{b}_r)/\tau}}
    {\sum_{j} e^{\cos(\mathbf{a}_r, \mathbf{b}_j)/\tau}}`.

    A row repeated in the batch is computed once and counted (same sum); the denominators come
    from :func:`~lirdrec.models.base.logsumexp_mm`.

    Shapes:
        - a, b :math:`(N, d)`, rows :math:`(B,)` in :math:`[0, N)` -> scalar
    """
    rows, count = torch.unique(rows, return_counts=True)
    all_b = F.normalize(b, dim=1)
    a = F.normalize(a[rows], dim=1)
    per_row = logsumexp_mm(a, all_b, 1.0 / temperature) - (a * all_b[rows]).sum(1) / temperature
    return (count.to(per_row.dtype) * per_row).sum()


@register("lgmrec")
class LGMRec(GeneratorStateMixin, Recommender):
    r"""LGMRec from "LGMRec: Local and Global Graph Learning for Multimodal Recommendation" (Guo
    et al., AAAI 2024, arXiv:2312.16400), as MMRec implements it (``src/models/lgmrec.py``,
    ``cf_model: lightgcn``).

    **Local graph embedding** (Sec. 3.2): collaborative :math:`\mathbf{C}` = LightGCN (layer
    mean over :math:`0..L` on :math:`\hat A`) of :math:`[\mathbf{P};\mathbf{Q}]`; per modality,
    item features :math:`\mathbf{F}_m = \mathbf{X}_m W_m` (frozen :math:`\mathbf{X}_m`), users
    the mean of their items' (:math:`D_u^{-1}R\mathbf{F}_m`), propagated :math:`n` times without
    layer combination: :math:`\mathbf{M}_m = \hat A^{n}[D_u^{-1}R\mathbf{F}_m;\mathbf{F}_m]`.

    **Global hypergraph embedding** (Sec. 3.3): :math:`H` soft hyperedges per modality,
    :math:`\mathbf{H}^i_m = \mathrm{GumbelSoftmax}_\tau(\mathbf{X}_m V_m)` and
    :math:`\mathbf{H}^u_m = \mathrm{GumbelSoftmax}_\tau(R\mathbf{X}_m V_m)` (row-wise over the
    hyperedges, :math:`\tau = 0.2`), kept with probability ``keep_rate`` (inverted dropout),
    then :func:`lirdrec.graphs.hypergraph_propagate` of the item part of :math:`\mathbf{C}`
    gives :math:`\mathbf{G}_m = [\mathbf{U}_m; \mathbf{I}_m]`. Together:

    .. math::
        [\mathbf{u};\mathbf{i}] = \mathbf{C} + \sum_m \mathrm{normalize}(\mathbf{M}_m)
        + \alpha\,\mathrm{normalize}\Big(\sum_m \mathbf{G}_m\Big),
        \qquad \hat y_{ui} = \mathbf{u}_u^\top\mathbf{i}_i.

    **Loss** (Sec. 3.4): BPR, plus :math:`\lambda_{cl}` times :func:`hyperedge_nce` between
    the modalities' hypergraph embeddings (users of the batch against all users, positive
    items against all items; every pair of modalities, the reference's one image-text pair),
    plus :math:`\lambda` times :func:`~lirdrec.models.base.emb_loss` of the batch's final rows.

    Randomness (Gumbel noise, hyperedge dropout) is drawn in :meth:`loss` from the model's own
    :class:`torch.Generator`; :meth:`forward` (evaluation) uses neither (the noise-free
    :math:`\mathrm{softmax}(\cdot/\tau)`, no dropout), where the reference also samples Gumbel
    noise when it evaluates. ``feat_embed_dim`` must equal :math:`d` there, so it is
    :math:`d` here. With one modality the contrastive term is 0.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        adj (Tensor): :math:`\hat A`, sparse CSR :math:`(U+I, U+I)` from
            :func:`lirdrec.graphs.bipartite_adjacency`.
        interactions (Tensor): :math:`R`, sparse CSR :math:`(U, I)` from
            :func:`lirdrec.graphs.interaction_matrix`.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` raw features (fixed).
        embedding_dim (int, optional): :math:`d`. (default: ``64``)
        n_ui_layers (int, optional): :math:`L`. (default: ``2``)
        n_mm_layers (int, optional): :math:`n`. (default: ``2``)
        n_hyper_layer (int, optional): hypergraph layers. (default: ``1``)
        hyper_num (int, optional): :math:`H`. (default: ``4``)
        keep_rate (float, optional): hyperedge keep probability. (default: ``0.5``)
        alpha (float, optional): :math:`\alpha`. (default: ``0.3``)
        cl_weight (float, optional): :math:`\lambda_{cl}`. (default: ``1e-4``)
        reg_weight (float, optional): :math:`\lambda`. (default: ``1e-6``)
        generator_seed (int, optional): seed of the noise generator; ``None`` draws it from
            torch's global RNG at construction. (default: ``None``)

    Shapes:
        - **forward:** users :math:`(U, d)`, items :math:`(I, d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items, neg_items :math:`(B,)` -> scalar
    """

    scores_cold_items = True  # modality and hypergraph parts reach an item from its features
    feature_branch = ("projections", "hyper_projections")
    temperature = 0.2  # of the Gumbel softmax and of the contrast, fixed in the reference

    constraints = {
        "adj": Shape("num_nodes", "num_nodes"),
        "interactions": Shape("num_users", "num_items"),
        "embedding_dim": Interval(1, integer=True),
        "n_ui_layers": Interval(0, integer=True),
        "n_mm_layers": Interval(0, integer=True),
        "n_hyper_layer": Interval(1, integer=True),
        "hyper_num": Interval(1, integer=True),
        "keep_rate": Interval(0, 1, closed="right"),
        "alpha": Interval(0),
        "cl_weight": Interval(0),
        "reg_weight": Interval(0),
    }

    def __init__(self, num_users: int, num_items: int, adj: Tensor, interactions: Tensor,
                 features: Mapping[str, Tensor], embedding_dim: int = 64, n_ui_layers: int = 2,
                 n_mm_layers: int = 2, n_hyper_layer: int = 1, hyper_num: int = 4,
                 keep_rate: float = 0.5, alpha: float = 0.3, cl_weight: float = 1e-4,
                 reg_weight: float = 1e-6, generator_seed: int | None = None) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.modalities, mats = check_features(type(self).__name__, features, self.num_items)
        d = self.embedding_dim = int(embedding_dim)
        self.n_ui_layers, self.n_mm_layers = int(n_ui_layers), int(n_mm_layers)
        self.n_hyper_layer, self.hyper_num = int(n_hyper_layer), int(hyper_num)
        self.keep_rate, self.alpha = float(keep_rate), float(alpha)
        self.cl_weight, self.reg_weight = float(cl_weight), float(reg_weight)
        self.register_buffer("adj", adj, persistent=False)
        self.register_buffer("interactions", interactions, persistent=False)
        self.register_buffer("interactions_t", transpose_csr(interactions), persistent=False)
        user_degree = (interactions.crow_indices()[1:] - interactions.crow_indices()[:-1]).cpu()
        # 1 / |N_u| (users without items: 1e7 x 0, as the reference's 1 / (0 + 1e-7))
        self.register_buffer("inv_user_degree", 1.0 / (user_degree.float() + 1e-7),
                             persistent=False)
        for j, x in enumerate(mats):  # fixed inputs: buffers that follow .to(), rebuilt on load
            self.register_buffer(f"features_{j}", x, persistent=False)
        self._add_id_embeddings(d)
        self.projections = nn.ModuleList(nn.Linear(x.shape[1], d, bias=False) for x in mats)
        self.hyper_projections = nn.ModuleList(nn.Linear(x.shape[1], self.hyper_num, bias=False)
                                               for x in mats)
        self.reset_parameters()
        self.generator, self.generator_seed = make_generator(generator_seed)

    def reset_parameters(self) -> None:
        """The reference's: Xavier-uniform ID tables, projections and hyperedge maps."""
        self._reset_id_embeddings()
        for lin in [*self.projections, *self.hyper_projections]:
            nn.init.xavier_uniform_(lin.weight)

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "LGMRec":
        r""":math:`\hat A` and :math:`R` from :mod:`lirdrec.graphs`."""
        users, items = ds.train.users, ds.train.items
        adj = bipartite_adjacency(ds.num_users, ds.num_items, users, items)
        r = interaction_matrix(ds.num_users, ds.num_items, users, items)
        return cls(ds.num_users, ds.num_items, adj, r, ds.features_tensor(), **kwargs)

    def raw_features(self) -> list[Tensor]:
        """The fixed feature matrices, one :math:`(I, d_m)` per modality."""
        return [getattr(self, f"features_{j}") for j in range(len(self.modalities))]

    def _soft(self, logits: Tensor, noise: bool) -> Tensor:
        """Gumbel softmax over hyperedges (noise from the model's generator), then inverted
        dropout; without ``noise`` the plain tempered softmax.
        """
        if not noise:
            return torch.softmax(logits / self.temperature, dim=1)
        gumbel = -torch.empty(logits.shape).exponential_(generator=self.generator).log()
        soft = torch.softmax((logits + gumbel.to(logits)) / self.temperature, dim=1)
        if self.keep_rate >= 1.0:
            return soft
        keep = torch.rand(logits.shape, generator=self.generator).to(logits.device)
        return soft * (keep < self.keep_rate).to(soft.dtype) / self.keep_rate

    def _embed(self, noise: bool) -> tuple[Tensor, list[Tensor]]:
        r"""Final :math:`(U+I, d)` rows and each modality's hypergraph :math:`\mathbf{G}_m`."""
        u = self.num_users
        collab = propagate(self.adj, torch.cat([self.user_emb, self.item_emb]),
                           self.n_ui_layers, "mean")  # (U+I, d)
        raw = self.encoded_features() or self.raw_features()  # end-to-end: from an encoder
        local, hyper = collab, []
        for x, proj, hproj in zip(raw, self.projections, self.hyper_projections):
            f = proj(x)  # (I, d)
            m = torch.cat([spmm(self.interactions, f, self.interactions_t)
                           * self.inv_user_degree[:, None], f])
            for _ in range(self.n_mm_layers):
                m = spmm(self.adj, m)
            local = local + F.normalize(m, dim=1)
            item_logits = hproj(x)  # (I, H)
            user_logits = spmm(self.interactions, item_logits, self.interactions_t)  # (U, H)
            users, items = hypergraph_propagate(self._soft(item_logits, noise),
                                                self._soft(user_logits, noise),
                                                collab[u:], self.n_hyper_layer)
            hyper.append(torch.cat([users, items]))
        return local + self.alpha * F.normalize(sum(hyper), dim=1), hyper

    def forward(self) -> tuple[Tensor, Tensor]:
        out, _ = self._embed(noise=False)
        return out[: self.num_users], out[self.num_users:]

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        out, hyper = self._embed(noise=True)
        u, p, n = out[users], out[pos_items + self.num_users], out[neg_items + self.num_users]
        loss = bpr_loss((u * p).sum(-1), (u * n).sum(-1)) + self.reg_weight * emb_loss(u, p, n)
        if self.cl_weight == 0.0 or len(hyper) < 2:
            return loss
        nu = self.num_users
        cl = sum(hyperedge_nce(a[:nu], b[:nu], users, self.temperature)
                 + hyperedge_nce(a[nu:], b[nu:], pos_items, self.temperature)
                 for a, b in combinations(hyper, 2))
        return loss + self.cl_weight * cl

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"item_id": [self.item_emb],
                "item_feature": [*self.projections.parameters(),
                                 *self.hyper_projections.parameters()],
                "user": [self.user_emb], "other": []}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, embedding_dim={self.embedding_dim}, "
                f"modalities={self.modalities}, n_ui_layers={self.n_ui_layers}, "
                f"n_mm_layers={self.n_mm_layers}, hyper_num={self.hyper_num}")
