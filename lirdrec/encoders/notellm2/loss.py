r"""The in-batch contrastive loss of NoteLLM-2 (reference ``model/Llama.py``, ``MLlama.py``).

A batch of :math:`P` pairs is laid out :math:`[a_1..a_P, b_1..b_P]` (:math:`2P` items per rank).
Embeddings are L2-normalised and, under ``torch.distributed``, gathered rank-major over the
:math:`W` ranks (other ranks' rows carry no gradient). With :math:`N = 2PW` rows

.. math::
    \mathbf{S} = \hat{\mathbf{E}}\hat{\mathbf{E}}^{\top},\qquad
    \text{logits} = (\mathbf{S} - 10^{12}\,\mathbf{I})\,e^{\tau},\qquad
    \mathcal{L} = \frac{1}{N}\sum_{i} \mathrm{CE}(\text{logits}_i, \text{partner}(i)),

one :math:`N \times N` matrix (a-a and b-b entries are negatives too), :math:`\tau` a learnable
scalar (initialised at 3.0; the scale is :math:`e^{\tau}`, not :math:`\tau`). mICL:
:math:`\mathcal{L} = (w_t\mathcal{L}(\mathbf{e}_{mm}) + w_v\mathcal{L}(\mathbf{e}_{img}))
/ (w_t + w_v)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "pair_labels",
    "in_batch_loss",
    "contrastive_loss",
    "micl_loss",
    "gather_rows",
]


def pair_labels(local_batch: int, world_size: int = 1, device=None) -> Tensor:
    """Partner index of every row of a rank-major gathered batch.

    >>> pair_labels(4, 2).tolist()
    [2, 3, 0, 1, 6, 7, 4, 5]
    """
    p = local_batch // 2
    j = torch.arange(p, device=device)
    one = torch.cat([j + p, j])  # (2P,)
    return (one[None, :] + local_batch * torch.arange(world_size, device=device)[:, None]).reshape(
        -1
    )


def gather_rows(x: Tensor) -> tuple[Tensor, int]:
    """All ranks' rows, rank-major; this rank's rows keep their gradient.

    Without an initialised process group (or with one rank) ``x`` is returned as is.

    Returns:
        ``(rows (W * B, d), world_size)``.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 1
    world, rank = dist.get_world_size(), dist.get_rank()
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, dim=0), world


def in_batch_loss(embeddings: Tensor, temperature: Tensor, local_batch: int) -> Tensor:
    r"""The loss on already gathered, L2-normalised rows :math:`(N, d)`, rank-major.

    Args:
        embeddings: :math:`(N, d)` normalised rows, :math:`N = W \cdot` ``local_batch``.
        temperature: :math:`\tau` (scalar tensor; the scale is :math:`e^{\tau}`).
        local_batch: rows per rank (:math:`2P`).
    """
    n = embeddings.shape[0]
    sim = embeddings @ embeddings.T  # (N, N)
    eye = torch.eye(n, device=sim.device, dtype=sim.dtype)
    logits = (sim - eye * 1e12) * torch.exp(temperature)
    labels = pair_labels(local_batch, n // local_batch, device=sim.device)
    return F.cross_entropy(logits, labels)


def contrastive_loss(embeddings: Tensor, temperature: Tensor) -> Tensor:
    """Normalise, gather over ranks (guarded), :func:`in_batch_loss`. ``(2P, d) -> scalar``."""
    local = embeddings.shape[0]
    if local % 2:
        raise ValueError(f"contrastive_loss: a batch holds pairs, got {local} rows")
    normed = F.normalize(embeddings, dim=1)
    rows, _ = gather_rows(normed)
    return in_batch_loss(rows, temperature, local)


def micl_loss(
    e_mm: Tensor,
    e_img: Tensor,
    temperature: Tensor,
    text_weight: float = 9.0,
    image_weight: float = 1.0,
) -> Tensor:
    r""":math:`(w_t\mathcal{L}(\mathbf{e}_{mm}) + w_v\mathcal{L}(\mathbf{e}_{img}))/(w_t + w_v)`."""
    m = contrastive_loss(e_mm, temperature)
    v = contrastive_loss(e_img, temperature)
    return (text_weight * m + image_weight * v) / (text_weight + image_weight)
