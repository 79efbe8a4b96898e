r"""The frozen vision encoder of NoteLLM-2: images -> tokens :math:`(T, d_v)`, token 0 = CLS.

Backends:

- ``"efficientnet-lite0"`` (offline default): the last feature map :math:`7 \times 7 \times 1280`
  gives 49 patch tokens; their mean (the pooled vector, exactly the ``image_feat.npy`` recipe of
  :mod:`lirdrec.features.image`) is the CLS token, so :math:`T = 50`, :math:`d_v = 1280`.
- any Hugging Face vision model by name or folder (a CLIP / SigLIP checkpoint's vision tower,
  ViT, ConvNeXt, ...): its last hidden layer before any post-layernorm or projection (the
  reference's ``clip_encoder.py``). ViT-like outputs keep their own CLS at position 0; models
  without one (SigLIP) and convolutional ones get the mean of their tokens prepended.
- an ``nn.Module`` instance behaving like a Hugging Face vision model (tests).

The tower is frozen (``requires_grad=False``, eval mode, run under ``no_grad``); its outputs are
computed once per image set and kept in a :class:`~lirdrec.features.cache.FeatureCache`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from lirdrec.errors import ConfigError, DataWarning
from lirdrec.features._common import show_progress_default
from lirdrec.features.cache import FeatureCache, as_cache, file_digest
from lirdrec.features.image import load_image, preprocess_image

logger = logging.getLogger(__name__)

__all__ = ["VisionTower", "DEFAULT_VISION"]

DEFAULT_VISION = "efficientnet-lite0"


class VisionTower(nn.Module):
    r"""A frozen image encoder returning CLS + patch tokens.

    Args:
        backend (str | nn.Module, optional): ``"efficientnet-lite0"``, a Hugging Face vision
            model name or folder, or a module. (default: ``"efficientnet-lite0"``)
        image_size (int, optional): crop size for backends without their own processor.
            (default: ``224``)

    Shapes:
        - **forward:** pixels :math:`(B, 3, H, W)` -> tokens :math:`(B, T, d_v)`
    """

    def __init__(self, backend: str | nn.Module = DEFAULT_VISION, image_size: int = 224) -> None:
        super().__init__()
        self.image_size = int(image_size)
        self.processor = None
        self.kind = "hf"
        if isinstance(backend, nn.Module):
            self.name = type(backend).__name__
            self.model = backend
        elif str(backend).lower() in ("efficientnet-lite0", "efficientnet_lite0"):
            from lirdrec.features.image import _load_efficientnet

            self.name, self.kind = DEFAULT_VISION, "efficientnet"
            self.model = _load_efficientnet("cpu")
        else:
            self.name = str(backend)
            self.model, self.processor = _load_hf_vision(self.name)
        self.model.eval().requires_grad_(False)
        self.dim = self._probe_dim()

    def __repr__(self) -> str:
        return f"VisionTower({self.name!r}, dim={self.dim})"

    def train(self, mode: bool = True) -> "VisionTower":
        super().train(mode)
        self.model.eval()  # frozen: batch norm / dropout stay in inference mode
        return self

    def _probe_dim(self) -> int:
        with torch.no_grad():
            x = torch.zeros(1, 3, self.image_size, self.image_size)
            if self.processor is not None:
                size = getattr(self.model.config, "image_size", None)
                if isinstance(size, int):
                    x = torch.zeros(1, 3, size, size)
            return int(self.forward(x).shape[-1])

    @torch.no_grad()
    def forward(self, pixel_values: Tensor) -> Tensor:
        if self.kind == "efficientnet":
            fmap = self.model.extract_features(pixel_values)  # (B, C, 7, 7)
            patches = fmap.flatten(2).transpose(1, 2)  # (B, 49, C)
            return torch.cat([patches.mean(dim=1, keepdim=True), patches], dim=1)
        out = self.model(pixel_values=pixel_values)
        hidden = out.last_hidden_state
        if hidden.dim() == 4:  # convolutional: (B, C, H, W)
            patches = hidden.flatten(2).transpose(1, 2)
            return torch.cat([patches.mean(dim=1, keepdim=True), patches], dim=1)
        model_type = str(getattr(getattr(self.model, "config", None), "model_type", ""))
        if "siglip" in model_type:  # no CLS token
            return torch.cat([hidden.mean(dim=1, keepdim=True), hidden], dim=1)
        return hidden  # (B, 1 + P, d_v), CLS first

    def preprocess(self, images: Sequence) -> Tensor:
        """RGB PIL images -> pixels :math:`(B, 3, H, W)` (deterministic: no flip, centre crop)."""
        if self.processor is not None:
            return self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        resize = round(self.image_size * 256 / 224)
        arr = np.stack([preprocess_image(im, resize, self.image_size) for im in images])
        return torch.from_numpy(arr)

    def encode(
        self,
        images: Sequence[str | Path | None],
        *,
        batch_size: int = 32,
        cache: FeatureCache | str | Path | None = None,
        names: Sequence[str] | None = None,
        show_progress: bool | None = None,
        dtype=np.float16,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of every image (missing or unreadable: zeros) and the present mask.

        Args:
            images: paths (``None`` = no image).
            batch_size: images per forward pass.
            cache: a :class:`FeatureCache` or folder; the key hashes the backend and every
                file's bytes.
            names: item labels for the warning about missing images.
            show_progress: progress bar (``None``: on when logging INFO).
            dtype: storage dtype of the tokens (float16 halves the cache).

        Returns:
            ``(tokens (N, T, d_v), present (N,) bool)``.
        """
        cache = as_cache(cache)
        key = None
        if cache is not None:
            settings = {"image_size": self.image_size, "dtype": np.dtype(dtype).name, "v": 1}
            key = cache.key(
                "notellm2-vision", self.name, settings, [file_digest(p) for p in images]
            )
            tokens = cache.get_array("notellm2-vision", key)
            present = cache.get_array("notellm2-vision-present", key)
            if tokens is not None and present is not None:
                present = present.astype(bool)
                self._warn_missing(images, present, names)
                return _fill_mean(tokens, present), present
        tokens, present = self._encode(images, batch_size, show_progress, dtype)
        if cache is not None:
            cache.put_array("notellm2-vision", key, tokens)
            cache.put_array("notellm2-vision-present", key, present.astype(np.uint8))
        self._warn_missing(images, present, names)
        return _fill_mean(tokens, present), present

    def _encode(self, images, batch_size, show_progress, dtype):
        from tqdm.auto import tqdm

        n = len(images)
        present = np.zeros(n, dtype=bool)
        out: np.ndarray | None = None
        bar = tqdm(
            total=n,
            desc="vision",
            unit="img",
            disable=not show_progress_default(show_progress, logger),
        )
        for start in range(0, n, batch_size):
            loaded = []
            for i in range(start, min(n, start + batch_size)):
                im, _ = load_image(images[i])
                if im is not None:
                    loaded.append((i, im))
            if loaded:
                rows = np.array([i for i, _ in loaded])
                toks = self.forward(self.preprocess([im for _, im in loaded])).float().numpy()
                if out is None:
                    out = np.zeros((n,) + toks.shape[1:], dtype=dtype)
                out[rows] = toks.astype(dtype)
                present[rows] = True
            bar.update(min(n, start + batch_size) - start)
        bar.close()
        if out is None:
            raise ConfigError(
                f"NoteLLM2: none of the {n} images could be read "
                f"(first: {images[0] if n else None})"
            )
        return out, present

    @staticmethod
    def _warn_missing(images, present: np.ndarray, names) -> None:
        missing = np.flatnonzero(~present)
        if len(missing):
            shown = [names[i] if names is not None else str(images[i]) for i in missing[:5]]
            msg = (
                f"{len(missing)} of {len(present)} image(s) missing or unreadable "
                f"({', '.join(map(str, shown))}{' ...' if len(missing) > 5 else ''}); their "
                "vision tokens are the mean of the present images' tokens"
            )
            logger.warning(msg)
            warnings.warn(msg, DataWarning, stacklevel=3)


def _fill_mean(tokens: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Rows without an image := the mean of the present rows (MMRec's convention)."""
    if present.all():
        return tokens
    tokens = np.array(tokens, copy=True)
    tokens[~present] = tokens[present].astype(np.float32).mean(axis=0).astype(tokens.dtype)
    return tokens


def _load_hf_vision(name: str):
    """``(vision model, image processor)`` of a Hugging Face checkpoint (CLIP: its vision tower)."""
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"NoteLLM2: unknown vision backend {name!r}: not 'efficientnet-lite0' and not a "
            f"Hugging Face model name or folder ({str(exc).splitlines()[0][:160]})"
        ) from None
    model_type = getattr(config, "model_type", "")
    if model_type == "clip":
        model = transformers.CLIPVisionModel.from_pretrained(name)
    elif model_type == "siglip":
        model = transformers.SiglipVisionModel.from_pretrained(name)
    else:
        model = transformers.AutoModel.from_pretrained(name)
    processor = transformers.AutoImageProcessor.from_pretrained(name)
    return model, processor
