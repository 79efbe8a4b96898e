r"""The multimodal transformation layer of LIRDRec: the input of the shared channel.

LIRDRec ("Learning Item Representations Directly from Multimodal Features for Effective
Recommendation", Zhou et al., arXiv:2505.04960) adds to its per-modality channels a "shared"
channel whose input mixes every modality in the frequency domain:

.. math::
    \mathbf{X}_s = \big[\,\mathrm{DCT}(\mathbf{X}_{m_1}) \,\|\, \cdots \,\|\,
    \mathrm{DCT}(\mathbf{X}_{m_{|M|}})\,\big] \in \mathbb{R}^{I \times \sum_m d_m},

where :math:`\mathrm{DCT}` is the orthonormal type-II discrete cosine transform along the feature
axis of each row,

.. math::
    \mathrm{DCT}(\mathbf{x})_k = s_k \sum_{n=0}^{d-1} x_n \cos\!\Big(\frac{\pi k (2n+1)}{2d}\Big),
    \qquad s_0 = \sqrt{1/d},\; s_{k>0} = \sqrt{2/d}.

The DCT is computed by :func:`scipy.fft.dct` (``type=2, norm="ortho"``), in float64, once:
:math:`\mathbf{X}_s` is constant during training, so a model keeps it as a buffer.

The ablation ``"identity"`` keeps the raw features, :math:`\mathbf{X}_s = [\mathbf{X}_{m_1} \|
\cdots]`; ``"none"`` drops the shared channel altogether (:func:`shared_channel_input` returns
``None``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from lirdrec.errors import ConfigError

__all__ = ["TRANSFORMS", "dct", "shared_channel_input"]

#: Names accepted by :func:`shared_channel_input`.
TRANSFORMS = ("dct", "identity", "none")
#: float64 values per DCT row chunk (1 Mi values = 8 MiB).
_CHUNK_VALUES = 1 << 20


def dct(x: Tensor | np.ndarray) -> Tensor:
    r"""Orthonormal type-II DCT of every row of ``x`` (along the last axis), as float32.

    Computed in float64 by ``scipy.fft.dct(x, type=2, norm="ortho", axis=-1)``, in row chunks
    (8 MiB of float64 scratch whatever the size); the transform is orthonormal, so row norms are
    preserved.

    Shapes:
        - x :math:`(N, d)` (any float dtype) -> :math:`(N, d)` float32

    >>> y = dct(torch.tensor([[1.0, 1.0, 1.0, 1.0]]))   # a constant row keeps only frequency 0
    >>> [round(v, 4) for v in y[0].tolist()]             # 4 / sqrt(4) = 2
    [2.0, 0.0, 0.0, 0.0]
    """
    import scipy.fft

    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    out = np.empty(arr.shape, dtype=np.float32)
    rows = max(1, _CHUNK_VALUES // max(1, arr.shape[-1]))  # float64 scratch stays ~8 MiB
    for start in range(0, arr.shape[0], rows):
        block = arr[start : start + rows].astype(np.float64)
        out[start : start + rows] = scipy.fft.dct(block, type=2, norm="ortho", axis=-1)
    return torch.from_numpy(out)


def shared_channel_input(features: Mapping[str, Tensor], transform: str = "dct") -> Tensor | None:
    r"""Input :math:`\mathbf{X}_s` of the shared channel, modalities concatenated in dict order.

    Args:
        features (Mapping[str, Tensor]): modality -> :math:`(I, d_m)` feature matrix.
        transform (str): ``"dct"`` (:math:`[\mathrm{DCT}(\mathbf{X}_m)]_m`, the paper),
            ``"identity"`` (:math:`[\mathbf{X}_m]_m`, raw) or ``"none"`` (no shared channel).
            (default: ``"dct"``)

    Returns:
        float32 tensor :math:`(I, \sum_m d_m)`, or ``None`` for ``"none"``.

    >>> f = {"image": torch.ones(2, 2), "text": torch.zeros(2, 3)}
    >>> shared_channel_input(f).shape, shared_channel_input(f, "none")
    (torch.Size([2, 5]), None)
    """
    if transform not in TRANSFORMS:
        raise ConfigError(
            f"shared_channel_input: transform must be one of {', '.join(TRANSFORMS)}, "
            f"got {transform!r}"
        )
    if not features:
        raise ConfigError("shared_channel_input: features must hold at least one modality, got {}")
    if transform == "none":
        return None
    if transform == "dct":
        parts = [dct(x) for x in features.values()]
    else:
        parts = [torch.as_tensor(x).detach().float().cpu() for x in features.values()]
    return torch.cat(parts, dim=1).contiguous()
