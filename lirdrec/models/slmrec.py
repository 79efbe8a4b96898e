"""SLMRec: ID and per-modality LightGCN branches, concatenated, with a fine-and-coarse SSL task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirdrec.graphs import bipartite_adjacency, propagate
from lirdrec.models._features import check_features
from lirdrec.models.base import Interval, Recommender, Shape, check_arguments, info_nce
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["SLMRec"]


@register("slmrec")
class SLMRec(Recommender):
    r"""SLMRec from "Self-supervised Learning for Multimedia Recommendation" (Tao et al., IEEE
    TMM 2022, doi:10.1109/TMM.2022.3187556), as MMRec implements it (``src/models/slmrec.py``
    with its configuration: ``ssl_task="FAC"``, ``mm_fusion_mode="concat"``, ``adj_type="pre"``).

    Branches: LightGCN (layer mean over :math:`0..L` on :math:`\hat A`) of the ID tables
    :math:`[\mathbf{P};\mathbf{Q}]`, and per modality :math:`m` of
    :math:`[\mathbf{P};\mathbf{F}_m]` with :math:`\mathbf{F}_m = \mathrm{normalize}(\mathbf{X}_m)
    W_m^\top + \mathbf{b}_m`, giving :math:`(\mathbf{u}^{0}, \mathbf{i}^{0})` and
    :math:`(\mathbf{u}^{m}, \mathbf{i}^{m})`. Users and items are linear maps of the
    concatenated branches, scored by inner product:

    .. math::
        \mathbf{u} = W_u[\mathbf{u}^{0}\Vert\mathbf{u}^{1}\Vert\cdots] + \mathbf{b}_u,\qquad
        \mathbf{i} = W_i[\mathbf{i}^{0}\Vert\mathbf{i}^{1}\Vert\cdots] + \mathbf{b}_i.

    The loss has no negatives (``uses_negatives = False``): the in-batch InfoNCE
    (:func:`info_nce`) of normalised users and their positive items at temperature
    :math:`\tau`, plus :math:`\alpha` times the fine-and-coarse (FAC) task on the batch's
    positive items, a chain of spaces in which the ID branch meets one modality after another:

    .. math::
        \mathbf{a}_1 = g_{0}(\mathbf{i}^{0}),\quad
        \mathbf{a}_2 = h_2(\mathbf{a}_1),\ \mathbf{a}_{k} = h_k(\mathbf{a}_{k-1}),\qquad
        \mathcal L = \mathrm{NCE}_\tau(\mathbf{u}, \mathbf{i}^{+})
        + \alpha\sum_{k=1}^{|M|}\mathrm{NCE}_{\tau'}\big(\mathbf{a}_k, g_k(\mathbf{i}^{k})\big),

    with linear maps :math:`g_0, g_1: d\to d`; :math:`h_2 = (d \to d/2)\circ(d\to d)` and
    :math:`g_2: d \to d/2` (the reference's image -> (audio slot) -> text chain, whose audio
    level is empty); :math:`h_k, g_k` for :math:`k \geq 3` map to :math:`d/2` (the
    generalisation to more modalities; with image and text it is exactly the reference's). The
    FAC logits are not normalised, as there. The reference's ``reg`` setting is read by nothing
    (so not an argument); its ``weight_decay: 1e-4`` is a trainer setting
    (``trainer_defaults``). It ranks by :math:`\sigma(\hat y)`, the same order.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        adj (Tensor): :math:`\hat A`, sparse CSR :math:`(U+I, U+I)` from
            :func:`lirdrec.graphs.bipartite_adjacency`.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` raw features (fixed), in
            the order of the FAC chain.
        embedding_dim (int, optional): :math:`d` (MMRec ``recdim``); even. (default: ``64``)
        num_layers (int, optional): :math:`L` (MMRec ``layer_num``). (default: ``3``)
        temp (float, optional): :math:`\tau`. (default: ``0.2``)
        ssl_temp (float, optional): :math:`\tau'`. (default: ``0.1``)
        ssl_alpha (float, optional): :math:`\alpha`. (default: ``0.01``)

    Shapes:
        - **forward:** users :math:`(U, d)`, items :math:`(I, d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items :math:`(B,)` -> scalar
    """

    uses_negatives = False
    scores_cold_items = True  # the modality branches reach an item from its features
    trainer_defaults = {"weight_decay": 1e-4}  # the reference configuration
    feature_branch = ("projections",)

    constraints = {
        "adj": Shape("num_nodes", "num_nodes"),
        "embedding_dim": Interval(2, integer=True),
        "num_layers": Interval(0, integer=True),
        "temp": Interval(0, closed="neither"),
        "ssl_temp": Interval(0, closed="neither"),
        "ssl_alpha": Interval(0),
    }

    def __init__(self, num_users: int, num_items: int, adj: Tensor,
                 features: Mapping[str, Tensor], embedding_dim: int = 64, num_layers: int = 3,
                 temp: float = 0.2, ssl_temp: float = 0.1, ssl_alpha: float = 0.01) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.modalities, mats = check_features(type(self).__name__, features, self.num_items)
        d = self.embedding_dim = int(embedding_dim)
        self.num_layers = int(num_layers)
        self.temp, self.ssl_temp, self.ssl_alpha = float(temp), float(ssl_temp), float(ssl_alpha)
        self.register_buffer("adj", adj, persistent=False)
        for j, x in enumerate(mats):  # fixed inputs: buffers that follow .to(), rebuilt on load
            self.register_buffer(f"features_{j}", x, persistent=False)
        self._add_id_embeddings(d)
        self.projections = nn.ModuleList(nn.Linear(x.shape[1], d) for x in mats)
        width = d * (len(mats) + 1)
        self.user_fusion = nn.Linear(width, d)
        self.item_fusion = nn.Linear(width, d)
        # FAC: g_0 on the ID branch, chain h_k between levels, g_k on modality k
        half = d // 2
        self.fac_id = nn.Linear(d, d)
        self.fac_modal = nn.ModuleList(nn.Linear(d, d if k == 0 else half)
                                       for k in range(len(mats)))
        self.fac_chain = nn.ModuleList(
            nn.Sequential(nn.Linear(d, d), nn.Linear(d, half)) if k == 1
            else nn.Linear(half, half) for k in range(1, len(mats)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference's: Xavier-uniform ID tables and weights of every linear map, biases
        torch's default.
        """
        self._reset_id_embeddings()
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()
                nn.init.xavier_uniform_(module.weight)

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "SLMRec":
        adj = bipartite_adjacency(ds.num_users, ds.num_items, ds.train.users, ds.train.items)
        return cls(ds.num_users, ds.num_items, adj, ds.features_tensor(), **kwargs)

    def raw_features(self) -> list[Tensor]:
        """The fixed feature matrices, one :math:`(I, d_m)` per modality."""
        return [getattr(self, f"features_{j}") for j in range(len(self.modalities))]

    def branches(self) -> list[Tensor]:
        r"""The ID branch then one per modality, each LightGCN's :math:`(U+I, d)` output."""
        raw = self.encoded_features() or self.raw_features()  # end-to-end: from an encoder
        items = [self.item_emb] + [proj(F.normalize(x, dim=1))
                                   for proj, x in zip(self.projections, raw)]
        return [propagate(self.adj, torch.cat([self.user_emb, i]), self.num_layers, "mean")
                for i in items]

    def _fuse(self, branches: list[Tensor]) -> tuple[Tensor, Tensor]:
        cat = torch.cat(branches, dim=1)  # (U+I, (M+1) d)
        return self.user_fusion(cat[: self.num_users]), self.item_fusion(cat[self.num_users:])

    def forward(self) -> tuple[Tensor, Tensor]:
        return self._fuse(self.branches())

    def fac_loss(self, branches: list[Tensor], items: Tensor) -> Tensor:
        """The fine-and-coarse task on ``items`` (the batch's positive items)."""
        # each distinct item once through the maps; info_nce counts the repeats
        rows, inverse = torch.unique(items + self.num_users, return_inverse=True)
        a = self.fac_id(branches[0][rows])  # (B', d)
        total = 0
        for k, g in enumerate(self.fac_modal):
            if k > 0:
                a = self.fac_chain[k - 1](a)
            total = total + info_nce(a, g(branches[k + 1][rows]), self.ssl_temp, inverse, inverse)
        return total

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor | None) -> Tensor:
        """InfoNCE of users and their positives plus the FAC task; ``neg_items`` is not read."""
        branches = self.branches()
        user_emb, item_emb = self._fuse(branches)
        main = info_nce(user_emb, item_emb, self.temp, users, pos_items, normalize=True)
        return main + self.ssl_alpha * self.fac_loss(branches, pos_items)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        other = [*self.user_fusion.parameters(), *self.item_fusion.parameters(),
                 *self.fac_id.parameters(), *self.fac_modal.parameters(),
                 *self.fac_chain.parameters()]
        return {"item_id": [self.item_emb], "item_feature": list(self.projections.parameters()),
                "user": [self.user_emb], "other": other}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, embedding_dim={self.embedding_dim}, "
                f"modalities={self.modalities}, num_layers={self.num_layers}, "
                f"temp={self.temp}, ssl_temp={self.ssl_temp}, ssl_alpha={self.ssl_alpha}")
