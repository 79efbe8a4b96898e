"""Matrix factorisation trained with BPR (MF-BPR)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from lirdrec.models.base import Interval, Recommender, bpr_loss, check_arguments, emb_loss
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset


__all__ = ["MF", "emb_loss"]  # emb_loss lives in lirdrec.models.base


@register("mf")
class MF(Recommender):
    r"""MF-BPR from "BPR: Bayesian Personalized Ranking from Implicit Feedback" (Rendle et al.,
    UAI 2009).

    .. math::
        \hat y_{ui} = \mathbf{p}_u^\top \mathbf{q}_i,\qquad
        \mathcal L = -\frac1B\sum\log\sigma(\hat y_{ui^+}-\hat y_{ui^-})
        + \lambda\,\frac{\lVert P_B\rVert + \lVert Q_{B^+}\rVert + \lVert Q_{B^-}\rVert}{B}

    with Xavier-uniform initialisation and MMRec's unsquared-norm regulariser.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        embedding_dim (int, optional): :math:`d`. (default: ``64``)
        reg_weight (float, optional): :math:`\lambda`. (default: ``1e-4``)

    Shapes:
        - **forward:** users :math:`(U, d)`, items :math:`(I, d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
    """

    constraints = {"embedding_dim": Interval(1, integer=True), "reg_weight": Interval(0)}

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64,
                 reg_weight: float = 1e-4) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.embedding_dim = int(embedding_dim)
        self.reg_weight = float(reg_weight)
        self._add_id_embeddings(self.embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._reset_id_embeddings()

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs) -> "MF":
        return cls(ds.num_users, ds.num_items, **kwargs)

    def forward(self) -> tuple[Tensor, Tensor]:
        return self.user_emb, self.item_emb

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        u, p, n = self.user_emb[users], self.item_emb[pos_items], self.item_emb[neg_items]
        rank = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        return rank + self.reg_weight * emb_loss(u, p, n)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"item_id": [self.item_emb], "item_feature": [], "user": [self.user_emb],
                "other": []}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, embedding_dim={self.embedding_dim}"
