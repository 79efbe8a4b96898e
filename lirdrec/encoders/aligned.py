r"""The one interface of aligned image-text encoders, and item features computed through one.

An :class:`AlignedEncoder` maps a batch of images to :math:`(B, d)` and a batch of texts to
:math:`(B, d)` in one shared space. It is split in two:

- a frozen **trunk** (:meth:`~AlignedEncoder.image_trunk`, :meth:`~AlignedEncoder.text_trunk`):
  raw inputs -> trunk outputs, run once without gradient and cached;
- a trainable **top** (:meth:`~AlignedEncoder.image_top`, :meth:`~AlignedEncoder.text_top`):
  trunk outputs -> shared space, the only part that fine-tuning and end-to-end training update
  (:meth:`~AlignedEncoder.trainable_parameters`), plus the contrastive loss's logit scale.

:class:`ItemFeatureEncoder` holds an encoder and the cached trunk outputs of every item; calling
it recomputes the item feature matrices ``{"image": (I, d), "text": (I, d)}`` through the top,
with gradient. A recommender with one attached
(:meth:`lirdrec.models.base.Recommender.attach_feature_encoder`) reads its features from it in
every training step: that is the end-to-end mode.
"""

from __future__ import annotations

import logging
import warnings
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from lirdrec.encoders.contrastive import LogitScale, clip_loss
from lirdrec.errors import ConfigError, DataWarning

logger = logging.getLogger(__name__)

__all__ = ["AlignedEncoder", "ItemFeatureEncoder", "MODALITIES", "warn_missing"]

#: Feature modalities an aligned encoder provides, in this order.
MODALITIES = ("image", "text")


class AlignedEncoder(nn.Module):
    r"""Base class: images and texts into one :math:`d`-dimensional space.

    Subclasses implement the four maps; ``encode_*`` compose them. The trunk runs under
    ``torch.no_grad()`` and its parameters have ``requires_grad=False``.

    Args:
        temperature (float): initial :math:`\tau` of the contrastive loss (CLIP: 0.07).

    Shapes:
        - **image_trunk:** :math:`B` images -> :math:`(B, \ldots)`
        - **text_trunk:** :math:`B` texts -> :math:`(B, \ldots)`
        - **image_top / text_top:** :math:`(B, \ldots)` -> :math:`(B, d)`
        - **encode_image / encode_text:** :math:`B` inputs -> :math:`(B, d)`
    """

    #: the shared space's width :math:`d`
    dim: int

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.logit_scale = LogitScale(temperature)

    # ---------------------------------------------------------------- to implement
    def image_trunk(self, images: Sequence) -> Tensor:  # pragma: no cover - abstract
        """Frozen part of the image tower (no gradient)."""
        raise NotImplementedError

    def text_trunk(self, texts: Sequence[str]) -> Tensor:  # pragma: no cover - abstract
        """Frozen part of the text tower (no gradient)."""
        raise NotImplementedError

    def image_top(self, h: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Trainable part of the image tower: trunk outputs -> :math:`(B, d)`."""
        raise NotImplementedError

    def text_top(self, h: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Trainable part of the text tower: trunk outputs -> :math:`(B, d)`."""
        raise NotImplementedError

    # ---------------------------------------------------------------- composed
    def encode_image(self, images: Sequence) -> Tensor:
        """``image_top(image_trunk(images))``: :math:`(B, d)`."""
        with torch.no_grad():
            h = self.image_trunk(images)
        return self.image_top(h)

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """``text_top(text_trunk(texts))``: :math:`(B, d)`."""
        with torch.no_grad():
            h = self.text_trunk(texts)
        return self.text_top(h)

    # ---------------------------------------------------------------- items, missing inputs
    def image_trunk_with_mask(self, images: Sequence, names: Sequence[str] | None = None
                              ) -> tuple[Tensor, np.ndarray]:
        """Trunk rows of item images and the ``(B,)`` mask of images that could be read.

        Missing or unreadable images follow ``lirdrec prepare``'s policy: each is logged, one
        :class:`~lirdrec.errors.DataWarning` gives the count, and the row is the mean of the
        present rows (zeros when none is present).
        """
        from lirdrec.features.image import load_image

        loaded = [load_image(x)[0] for x in images]
        present = np.array([im is not None for im in loaded], dtype=bool)
        if not present.any():
            raise ConfigError(f"{type(self).__name__}: none of the {len(images)} images could "
                              "be read")
        rows = self.image_trunk([im for im in loaded if im is not None])  # (P, ...)
        out = rows.new_zeros((len(images), *rows.shape[1:]))
        mask = torch.from_numpy(present)
        out[mask] = rows
        out[~mask] = rows.mean(dim=0)
        warn_missing("image", present, names, "the mean of the present rows")
        return out, present

    def item_trunks(self, images: Sequence, texts: Sequence[str],
                    names: Sequence[str] | None = None) -> tuple[Tensor, Tensor, np.ndarray]:
        """Trunk outputs of every item's image and text, and the ``(I,)`` mask of real pairs
        (image read and text non-empty).

        Empty texts are encoded as the empty string, as ``lirdrec prepare`` does, and counted in
        a :class:`~lirdrec.errors.DataWarning`.
        """
        if len(images) != len(texts):
            raise ConfigError(f"{type(self).__name__}: {len(images)} images but {len(texts)} "
                              "texts; expected one of each per item")
        hv, has_image = self.image_trunk_with_mask(images, names)
        has_text = np.array([bool(str(t).strip()) for t in texts], dtype=bool)
        warn_missing("text", has_text, names, "the encoding of the empty string")
        with torch.no_grad():
            ht = self.text_trunk([str(t) for t in texts])
        return hv, ht, has_image & has_text

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters that fine-tuning and end-to-end training update (the top and the
        logit scale).
        """
        return [p for p in self.parameters() if p.requires_grad]

    def frozen_parameters(self) -> list[nn.Parameter]:
        """The trunk's parameters (``requires_grad=False``)."""
        return [p for p in self.parameters() if not p.requires_grad]

    def top_state_dict(self) -> dict[str, Tensor]:
        """Only the trainable tensors (what fine-tuning changes; tensors only, safe to load with
        ``torch.load(weights_only=True)``).
        """
        names = {id(p) for p in self.trainable_parameters()}
        return {k: v.detach().clone() for k, v in self.named_parameters() if id(v) in names}

    def load_top_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`top_state_dict` returned (a missing or extra key is an error)."""
        own = self.top_state_dict()
        if set(own) != set(state):
            raise ConfigError(f"{type(self).__name__}: encoder state has keys {sorted(state)}, "
                              f"expected {sorted(own)}")
        params = dict(self.named_parameters())
        with torch.no_grad():
            for k, v in state.items():
                if tuple(v.shape) != tuple(params[k].shape):
                    raise ConfigError(f"{type(self).__name__}: encoder state {k!r} has shape "
                                      f"{tuple(v.shape)}, expected {tuple(params[k].shape)}")
                params[k].copy_(v)


def warn_missing(what: str, present: np.ndarray, names: Sequence[str] | None,
                 policy: str) -> None:
    """Log and warn (one :class:`~lirdrec.errors.DataWarning`) about items without ``what``."""
    rows = np.flatnonzero(~np.asarray(present, dtype=bool))
    if not len(rows):
        return
    shown = [str(names[r]) if names is not None else str(r) for r in rows[:5]]
    msg = (f"{len(rows)} of {len(present)} item(s) have no {what} (items {', '.join(shown)}"
           f"{' ...' if len(rows) > 5 else ''}); their rows are {policy} and they are left out "
           "of the contrastive loss")
    logger.warning(msg)
    warnings.warn(msg, DataWarning, stacklevel=3)


class ItemFeatureEncoder(nn.Module):
    r"""Item feature matrices recomputed from cached trunk outputs through an encoder's top.

    .. math::
        \mathbf{X}_{\text{image}} = f_v(\mathbf{H}_v),\qquad
        \mathbf{X}_{\text{text}} = f_t(\mathbf{H}_t),

    where :math:`\mathbf{H}_v, \mathbf{H}_t` are the frozen trunk outputs of every item (computed
    once, kept as non-persistent buffers: they follow ``.to()`` and stay out of checkpoints) and
    :math:`f_v, f_t` the encoder's trainable tops (in the ``state_dict``).

    :meth:`contrastive_loss` is :func:`~lirdrec.encoders.contrastive.clip_loss` on the image-text
    pairs of given items, restricted to items whose image and text are both present (a filled
    row is not a real pair).

    Args:
        encoder (AlignedEncoder): the encoder.
        image_trunk (Tensor): :math:`(I, \ldots)` image trunk outputs.
        text_trunk (Tensor): :math:`(I, \ldots)` text trunk outputs.
        paired (Tensor | None): :math:`(I,)` bool, both image and text present; ``None``: all.
        vl_loss_weight (float): weight of :meth:`contrastive_loss` added to the recommender's
            loss in end-to-end training. (default: ``0.0``)

    Shapes:
        - **forward:** items :math:`(B,)` or ``None`` (all) -> ``{"image": (B, d), "text": (B, d)}``
    """

    def __init__(self, encoder: AlignedEncoder, image_trunk: Tensor, text_trunk: Tensor,
                 paired: Tensor | None = None, vl_loss_weight: float = 0.0) -> None:
        super().__init__()
        if image_trunk.shape[0] != text_trunk.shape[0]:
            raise ConfigError(f"ItemFeatureEncoder: image_trunk has {image_trunk.shape[0]} rows, "
                              f"text_trunk {text_trunk.shape[0]}; expected one row per item")
        if not vl_loss_weight >= 0:
            raise ConfigError(f"ItemFeatureEncoder: vl_loss_weight must be >= 0, "
                              f"got {vl_loss_weight!r}")
        self.encoder = encoder
        self.num_items = int(image_trunk.shape[0])
        self.vl_loss_weight = float(vl_loss_weight)
        self.register_buffer("image_trunk", image_trunk.detach(), persistent=False)
        self.register_buffer("text_trunk", text_trunk.detach(), persistent=False)
        if paired is None:
            paired = torch.ones(self.num_items, dtype=torch.bool)
        self.register_buffer("paired", torch.as_tensor(paired, dtype=torch.bool), persistent=False)

    @property
    def modalities(self) -> tuple[str, ...]:
        return MODALITIES

    def forward(self, items: Tensor | None = None) -> dict[str, Tensor]:
        hv = self.image_trunk if items is None else self.image_trunk[items]
        ht = self.text_trunk if items is None else self.text_trunk[items]
        return {"image": self.encoder.image_top(hv), "text": self.encoder.text_top(ht)}

    @torch.no_grad()
    def constant_features(self) -> dict[str, Tensor]:
        """The current feature matrices, detached: the constant features of the pre-trained and
        fine-tuned modes.
        """
        return {m: x.detach().clone().float() for m, x in self.forward().items()}

    def contrastive_loss(self, items: Tensor) -> Tensor:
        """CLIP loss on the distinct paired ``items`` (zero when fewer than two)."""
        items = torch.unique(items)
        items = items[self.paired[items]]
        if items.numel() < 2:
            return self.image_trunk.new_zeros(())
        feats = self.forward(items)
        return clip_loss(feats["image"], feats["text"], self.encoder.logit_scale())

    def extra_repr(self) -> str:
        return (f"num_items={self.num_items}, image_trunk={tuple(self.image_trunk.shape)}, "
                f"text_trunk={tuple(self.text_trunk.shape)}, vl_loss_weight={self.vl_loss_weight}")
