"""VBPR: visual Bayesian personalised ranking, as in MMRec."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch
from torch import Tensor, nn

from lirdrec.models._features import check_features
from lirdrec.models.base import Interval, Recommender, bpr_loss, check_arguments, emb_loss
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["VBPR"]


@register("vbpr")
class VBPR(Recommender):
    r"""VBPR from "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback"
    (He & McAuley, AAAI 2016, arXiv:1510.01784), in the form MMRec implements it.

    An item is its ID embedding concatenated with a linear map of its (fixed) features, a user is
    one :math:`2d` vector (:math:`[\gamma_u \| \theta_u]`):

    .. math::
        \mathbf{x} = [\mathbf{X}_{m_1} \| \cdots \| \mathbf{X}_{m_M}] \in \mathbb{R}^{I\times
        \sum_m d_m},\qquad
        \mathbf{q}_i = [\gamma_i \,\|\, \mathbf{E}\mathbf{x}_i + \mathbf{b}],\qquad
        \hat y_{ui} = \mathbf{p}_u^\top \mathbf{q}_i,

    .. math::
        \mathcal L = -\frac1B\sum_b \log\sigma(\hat y_{ui^+} - \hat y_{ui^-})
        + \lambda\,\frac{\lVert P_B\rVert + \lVert Q_{B^+}\rVert + \lVert Q_{B^-}\rVert}{B}

    with unsquared Frobenius norms over the batch rows (MMRec's ``EmbLoss``).

    Any number of modalities: the reference concatenates text and image features into one vector
    before the single projection :math:`\mathbf{E}`; here all modalities are concatenated in the
    order of ``features``. Differences from the paper, as in MMRec: no item bias
    :math:`\beta_i` and no visual bias :math:`\beta'^\top\mathbf{x}_i`; the features are not
    fine-tuned. Initialisation as MMRec: Xavier-uniform ID tables, Xavier-normal :math:`\mathbf{E}`,
    zero :math:`\mathbf{b}`. The reference's BPR adds ``1e-10`` inside the log; this one uses
    ``softplus`` (same value without the cap at :math:`-\log 10^{-10}`).

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` feature matrix.
        embedding_dim (int, optional): :math:`d`; users have :math:`2d`. (default: ``64``)
        reg_weight (float, optional): :math:`\lambda`. (default: ``1e-3``)

    Shapes:
        - **forward:** users :math:`(U, 2d)`, items :math:`(I, 2d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items, neg_items :math:`(B,)` -> scalar
    """

    scores_cold_items = True  # items are computed from their features

    #: submodules whose output is the feature-derived item representation (gradient-bias hooks)
    feature_branch = ("item_linear",)

    constraints = {"embedding_dim": Interval(1, integer=True), "reg_weight": Interval(0)}

    def __init__(self, num_users: int, num_items: int, features: Mapping[str, Tensor],
                 embedding_dim: int = 64, reg_weight: float = 1e-3) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.modalities, mats = check_features(type(self).__name__, features, self.num_items)
        self.embedding_dim = int(embedding_dim)
        self.reg_weight = float(reg_weight)
        self.register_buffer("item_raw_features", torch.cat(mats, dim=1))  # (I, sum d_m)
        self.user_emb = nn.Parameter(torch.empty(num_users, 2 * self.embedding_dim))
        self.item_emb = nn.Parameter(torch.empty(num_items, self.embedding_dim))
        self.item_linear = nn.Linear(self.item_raw_features.shape[1], self.embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_emb)
        nn.init.xavier_uniform_(self.item_emb)
        nn.init.xavier_normal_(self.item_linear.weight)
        nn.init.zeros_(self.item_linear.bias)

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs) -> "VBPR":
        return cls(ds.num_users, ds.num_items, ds.features_tensor(), **kwargs)

    def forward(self) -> tuple[Tensor, Tensor]:
        encoded = self.encoded_features()  # end-to-end: recomputed from an encoder
        raw = self.item_raw_features if encoded is None else torch.cat(encoded, dim=1)
        visual = self.item_linear(raw)  # (I, d)
        return self.user_emb, torch.cat([self.item_emb, visual], dim=1)

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        user_emb, item_emb = self.forward()
        u, p, n = user_emb[users], item_emb[pos_items], item_emb[neg_items]
        rank = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        return rank + self.reg_weight * emb_loss(u, p, n)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"item_id": [self.item_emb], "item_feature": list(self.item_linear.parameters()),
                "user": [self.user_emb], "other": []}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, embedding_dim={self.embedding_dim}, "
                f"modalities={self.modalities}, feature_dim={self.item_raw_features.shape[1]}")
