"""Popularity ranking: every user gets the items ranked by training degree."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lirdrec.models.base import Recommender
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset


@register("pop")
class Pop(Recommender):
    r"""Most-popular baseline: :math:`\hat y_{ui} = |N_i|`, the item's training degree.

    It has no trainable parameter; the trainer evaluates it once (``trainable = False``).

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        item_degree (Tensor): :math:`(I,)` training degree of each item.
    """

    trainable = False
    item_vectors = False  # an item's 'vector' is its degree

    def __init__(self, num_users: int, num_items: int, item_degree: Tensor) -> None:
        super().__init__(num_users, num_items)
        self.register_buffer("item_degree", torch.as_tensor(item_degree, dtype=torch.float32))

    @classmethod
    def from_dataset(cls, ds: "Dataset") -> "Pop":
        return cls(ds.num_users, ds.num_items, torch.from_numpy(ds.item_degree()))

    def forward(self) -> tuple[Tensor, Tensor]:
        return self.item_degree.new_ones(self.num_users, 1), self.item_degree[:, None]

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        return torch.zeros((), requires_grad=True)
