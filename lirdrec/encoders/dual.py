r"""The offline aligned dual encoder: frozen EfficientNet-Lite0 and all-MiniLM-L6-v2 trunks with
trainable projection heads into one space.

No CLIP weights can be installed on these machines, so this is the default aligned encoder of
the encoder study: a **stand-in for CLIP**, not CLIP. Its trunks are the two frozen extractors
that make the modality-specific features (:class:`lirdrec.features.ImageEncoder`: pooled last
feature map, 1280-d; :class:`lirdrec.features.TextEncoder`: sentence embedding, 384-d); their
outputs are computed once and cached on disk (:class:`lirdrec.features.FeatureCache`), so an
end-to-end training step only recomputes the two heads

.. math::
    f_v(\mathbf{h}_v) = W_v\mathbf{h}_v,\qquad f_t(\mathbf{h}_t) = W_t\mathbf{h}_t,
    \qquad W_v \in \mathbb{R}^{d\times 1280},\ W_t \in \mathbb{R}^{d\times 384},

(no bias, as CLIP's projections; with ``hidden_dim`` a two-layer MLP
:math:`W_2\,\mathrm{GELU}(W_1\mathbf{h} + \mathbf{b}_1)` instead), aligned by the CLIP loss
(:func:`lirdrec.encoders.contrastive.clip_loss`).

With ``unfreeze_last_block=True`` the image top also holds EfficientNet-Lite0's last block
(its last MBConv block, the 320 -> 1280 head convolution with its batch norm, ReLU6 and average
pooling; 0.9 M parameters, a copy of the pretrained weights): the cached trunk output is then
that block's input, a :math:`192\times7\times7` map per image (37 KiB per item). Its batch norms
stay in eval mode (running statistics frozen, affine weights trained). The text trunk stays
frozen whole: unfreezing MiniLM's last layer would need token-level caches (items x tokens x
384) and a transformer layer over every item in every end-to-end step.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from lirdrec.encoders.aligned import AlignedEncoder
from lirdrec.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["DualEncoder", "projection_head"]


def projection_head(in_dim: int, out_dim: int, hidden_dim: int | None = None) -> nn.Module:
    r"""A linear projection without bias (weights :math:`\mathcal N(0, 1/\text{in\_dim})`, CLIP's
    scale), or an MLP ``in -> hidden -> out`` with GELU when ``hidden_dim`` is given.
    """
    if hidden_dim:
        head = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(),
                             nn.Linear(hidden_dim, out_dim, bias=False))
        nn.init.normal_(head[2].weight, std=hidden_dim ** -0.5)
        return head
    head = nn.Linear(in_dim, out_dim, bias=False)
    nn.init.normal_(head.weight, std=in_dim ** -0.5)
    return head


class DualEncoder(AlignedEncoder):
    r"""Aligned dual encoder (a stand-in for CLIP): frozen image and text trunks, trainable heads.

    Args:
        dim (int): :math:`d`, the shared space. (default: ``256``)
        image_backend (str): :class:`~lirdrec.features.ImageEncoder` backend.
            (default: ``"efficientnet-lite0"``)
        text_model (str): :class:`~lirdrec.features.TextEncoder` model.
            (default: ``"all-MiniLM-L6-v2"``)
        image_dim (int): trunk width of images (1280 for EfficientNet-Lite0). (default: ``1280``)
        text_dim (int): trunk width of texts (384 for all-MiniLM-L6-v2). (default: ``384``)
        hidden_dim (int | None): MLP heads with this hidden width; ``None``: linear heads.
        temperature (float): initial :math:`\tau`. (default: ``0.07``)
        cache (str | Path | None): trunk output cache folder; ``None``: no disk cache.
        device (str | None): device of the trunks (``None``: CUDA when present).
        fill (str): missing or unreadable images: ``"mean"`` of the present rows or ``"zeros"``
            (``lirdrec prepare``'s policy). (default: ``"mean"``)
        show_progress (bool | None): progress bars of the trunks.

    The trunk models are loaded on the first trunk call only, so building the encoder (and
    loading a saved top) needs neither the weights nor the images.

    Shapes:
        - **image_trunk:** :math:`B` image paths or PIL images -> :math:`(B, 1280)`
        - **text_trunk:** :math:`B` strings -> :math:`(B, 384)`
        - **image_top / text_top:** -> :math:`(B, d)`
    """

    def __init__(self, dim: int = 256, image_backend: str = "efficientnet-lite0",
                 text_model: str = "all-MiniLM-L6-v2", image_dim: int = 1280,
                 text_dim: int = 384, hidden_dim: int | None = None, temperature: float = 0.07,
                 cache: str | Path | None = None, device: str | None = None,
                 fill: str = "mean", show_progress: bool | None = None,
                 unfreeze_last_block: bool = False) -> None:
        super().__init__(temperature)
        for name, value in (("dim", dim), ("image_dim", image_dim), ("text_dim", text_dim)):
            if int(value) <= 0:
                raise ConfigError(f"DualEncoder: {name} must be a positive int, got {value!r}")
        self.dim = int(dim)
        self.image_backend, self.text_model = str(image_backend), str(text_model)
        self.image_dim, self.text_dim = int(image_dim), int(text_dim)
        self.hidden_dim = int(hidden_dim) if hidden_dim else None
        self.cache, self.device, self.fill = cache, device, fill
        self.show_progress = show_progress
        self.unfreeze_last_block = bool(unfreeze_last_block)
        if self.unfreeze_last_block:
            if self.image_backend.lower() not in ("efficientnet-lite0", "efficientnet_lite0"):
                raise ConfigError("DualEncoder: unfreeze_last_block needs the efficientnet-lite0 "
                                  f"image backend, got {self.image_backend!r}")
            from lirdrec.features.image import _load_efficientnet

            net = _load_efficientnet("cpu")  # shared and cached: copy what is trained
            self.image_block = copy.deepcopy(net._blocks[-1])
            self.image_conv_head = copy.deepcopy(net._conv_head)
            self.image_bn = copy.deepcopy(net._bn1)
            for p in [*self.image_block.parameters(), *self.image_conv_head.parameters(),
                      *self.image_bn.parameters()]:
                p.requires_grad_(True)
            self.image_dim = int(self.image_bn.num_features)
            self._frozen_bn()
        self.image_head = projection_head(self.image_dim, self.dim, self.hidden_dim)
        self.text_head = projection_head(self.text_dim, self.dim, self.hidden_dim)

    # ---------------------------------------------------------------- trunks (frozen, cached)
    def _image_encoder(self):
        from lirdrec.features.image import ImageEncoder

        return ImageEncoder(self.image_backend, device=self.device, fill=self.fill,
                            cache=self.cache, show_progress=self.show_progress)

    def _frozen_bn(self) -> None:
        for m in [*self.image_block.modules(), self.image_bn]:
            if isinstance(m, nn.BatchNorm2d):
                m.eval()

    def train(self, mode: bool = True) -> "DualEncoder":
        super().train(mode)
        if self.unfreeze_last_block:
            self._frozen_bn()  # running statistics stay the pretrained ones
        return self

    def _block_inputs(self, images: Sequence) -> Tensor:
        """Input of EfficientNet-Lite0's last block, :math:`(B, 192, 7, 7)`, of readable images."""
        from lirdrec.features.image import _load_efficientnet, load_image, preprocess_image

        net = _load_efficientnet("cpu")
        enc = self._image_encoder()
        outs = []
        with torch.no_grad():
            for start in range(0, len(images), 32):
                batch = np.stack([preprocess_image(load_image(x)[0], enc.resize, enc.crop_size,
                                                   enc.mean, enc.std)
                                  for x in images[start:start + 32]])
                x = net._swish(net._bn0(net._conv_stem(torch.from_numpy(batch))))
                for block in net._blocks[:-1]:
                    x = block(x)
                outs.append(x)
        return torch.cat(outs)

    def _cached_block_inputs(self, images: Sequence, names: Sequence[str] | None):
        from lirdrec.encoders.aligned import warn_missing
        from lirdrec.features.cache import FeatureCache, file_digest

        key = None
        cache = FeatureCache(self.cache) if self.cache else None
        if cache is not None and all(x is None or isinstance(x, (str, Path)) for x in images):
            key = cache.key("image-block-input", self.image_backend,
                            self._image_encoder()._settings(), [file_digest(x) for x in images])
            hit = cache.get_array("image-block-input", key)
            mask = cache.get_array("image-block-input-mask", key)
            if hit is not None and mask is not None:
                present = mask.astype(bool)
                warn_missing("image", present, names, "the mean of the present rows")
                return torch.from_numpy(hit), present
        out, present = AlignedEncoder.image_trunk_with_mask(self, images, names)
        if key is not None:
            cache.put_array("image-block-input", key, out.numpy())
            cache.put_array("image-block-input-mask", key, present.astype(np.uint8))
        return out, present

    def image_trunk_with_mask(self, images: Sequence, names: Sequence[str] | None = None
                              ) -> tuple[Tensor, np.ndarray]:
        """Trunk rows (missing or unreadable images filled by ``fill``, with a
        :class:`~lirdrec.errors.DataWarning` naming the count) and the ``(B,)`` present mask.
        """
        if self.unfreeze_last_block:
            return self._cached_block_inputs(images, names)
        feats, present = self._image_encoder().encode_with_mask(images, names)
        self._check_width("image", feats.shape[1], self.image_dim)
        return torch.from_numpy(feats), present

    def image_trunk(self, images: Sequence) -> Tensor:
        if self.unfreeze_last_block:  # readable images only (see image_trunk_with_mask)
            return self._block_inputs(images)
        return self.image_trunk_with_mask(images)[0]

    def text_trunk(self, texts: Sequence[str]) -> Tensor:
        from lirdrec.features.text import TextEncoder

        enc = TextEncoder(self.text_model, device=self.device, cache=self.cache,
                          show_progress=self.show_progress)
        feats = enc.encode(list(texts))
        self._check_width("text", feats.shape[1], self.text_dim)
        return torch.from_numpy(feats)

    def _check_width(self, what: str, got: int, want: int) -> None:
        if got != want:
            raise ConfigError(f"DualEncoder: the {what} trunk gives {got}-d vectors but "
                              f"{what}_dim={want}; set {what}_dim={got}")

    # ---------------------------------------------------------------- tops (trainable)
    def image_top(self, h: Tensor) -> Tensor:
        if self.unfreeze_last_block:  # (B, 192, 7, 7) -> pooled (B, 1280)
            x = self.image_block(h)
            x = torch.nn.functional.relu6(self.image_bn(self.image_conv_head(x)))
            h = x.mean(dim=(2, 3))
        return self.image_head(h)

    def text_top(self, h: Tensor) -> Tensor:
        return self.text_head(h)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, image={self.image_backend!r} ({self.image_dim}), "
                f"text={self.text_model!r} ({self.text_dim}), hidden_dim={self.hidden_dim}, "
                f"unfreeze_last_block={self.unfreeze_last_block}")
