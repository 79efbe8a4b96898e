"""Helpers shared by the feature-based baselines (VBPR, LATTICE, BM3, FREEDOM).

- :func:`check_features`: validate ``features: dict[str, Tensor]`` against ``num_items``.
- :func:`feature_tables`: the raw feature matrices as (optionally trainable) parameters; MMRec's
  LATTICE, BM3 and FREEDOM fine-tune the raw features (``nn.Embedding.from_pretrained(...,
  freeze=False)``), VBPR keeps them fixed.
- :func:`make_generator`: a deterministic :class:`torch.Generator` for per-epoch randomness.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from lirdrec.models.base import check_param

__all__ = ["check_features", "feature_tables", "make_generator"]


def check_features(cls_name: str, features: Mapping[str, Tensor],
                   num_items: int) -> tuple[list[str], list[Tensor]]:
    """Modality names and float32 feature matrices, each checked to be ``(num_items, d_m)``.

    Raises:
        ConfigError: no modality, a matrix that is not 2-D, or a row count other than ``num_items``.
    """
    check_param(cls_name, "features", "{}", len(features) > 0,
                "a non-empty dict modality -> (I, d_m) tensor")
    names, mats = [], []
    for name, x in features.items():
        x = torch.as_tensor(x)
        ok = x.dim() == 2 and x.shape[0] == num_items and x.shape[1] > 0
        check_param(cls_name, f"features[{name!r}]", f"tensor of shape {tuple(x.shape)}", ok,
                    f"a 2-D tensor with {num_items} rows")
        names.append(str(name))
        mats.append(x.detach().float().clone())
    return names, mats


def feature_tables(mats: list[Tensor], trainable: bool) -> nn.ParameterList:
    """The raw feature matrices as an :class:`nn.ParameterList` (``requires_grad=trainable``)."""
    return nn.ParameterList([nn.Parameter(x, requires_grad=trainable) for x in mats])


def make_generator(seed: int | None) -> tuple[torch.Generator, int]:
    """A CPU generator seeded with ``seed``; ``None`` draws the seed from torch's global RNG.

    Drawing from the global RNG keeps "same ``seed_everything`` ⇒ same model" without an extra
    argument; an explicit ``seed`` decouples the model's randomness from initialisation order.
    """
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g, int(seed)
