r"""Late fusion of NoteLLM-2 (reference ``Gate.py``, ``MLlama.py``).

The frozen vision encoder's CLS vector is projected into the LLM width and gated with the LLM's
pooled state :math:`\mathbf{h}`, *before* the 64-d head:

.. math::
    \mathbf{v} = \mathbf{W}_{late}\,\mathbf{c},\qquad
    \mathbf{z} = \sigma\big(\mathbf{W}_g [\mathbf{h}; \mathbf{v}]\big),\qquad
    \hat{\mathbf{e}} = \mathbf{z} \odot \mathbf{h} + (1 - \mathbf{z}) \odot \mathbf{v},

with bias-free :math:`\mathbf{W}_{late} \in \mathbb{R}^{d \times d_v}` and
:math:`\mathbf{W}_g \in \mathbb{R}^{d \times 2d}` (Xavier-normal). :math:`\mathbf{z}` multiplies
the LLM state. The same gate and :math:`\mathbf{v}` fuse the mICL image state too. (Clones from
before the reference's commit 68dd919 added a residual ``+ h``; that is not the reference.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Gate", "LateFusion"]


class Gate(nn.Module):
    r"""The fusion gate :math:`\mathbf{z} \odot \mathbf{h} + (1 - \mathbf{z}) \odot \mathbf{v}`.

    Args:
        dim (int): :math:`d`, the width of both inputs.

    Shapes:
        - **input:** h :math:`(B, d)`, v :math:`(B, d)`
        - **output:** :math:`(B, d)`
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = int(dim)
        self.weight = nn.Linear(2 * self.dim, self.dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.weight.weight)

    def gate(self, h: Tensor, v: Tensor) -> Tensor:
        r"""The gate :math:`\mathbf{z} = \sigma(\mathbf{W}_g[\mathbf{h}; \mathbf{v}])`, (B, d)."""
        return torch.sigmoid(self.weight(torch.cat([h, v], dim=1)))

    def forward(self, h: Tensor, v: Tensor) -> Tensor:
        z = self.gate(h, v)
        return z * h + (1 - z) * v

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


class LateFusion(nn.Module):
    r"""CLS projection :math:`\mathbf{W}_{late}` and :class:`Gate`.

    Args:
        vision_dim (int): :math:`d_v`, width of the CLS vector.
        dim (int): :math:`d`, the LLM width.

    Shapes:
        - **input:** h :math:`(B, d)`, cls :math:`(B, d_v)` (or projected ``v`` via :meth:`fuse`)
        - **output:** :math:`(B, d)`
    """

    def __init__(self, vision_dim: int, dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(int(vision_dim), int(dim), bias=False)
        self.gate = Gate(dim)

    def forward(self, h: Tensor, cls: Tensor) -> Tensor:
        return self.gate(h, self.project(cls.to(self.project.weight.dtype)))

    def fuse(self, h: Tensor, v: Tensor) -> Tensor:
        r"""Gate with an already projected :math:`\mathbf{v}` (shared by h_mm and h_img)."""
        return self.gate(h, v)
