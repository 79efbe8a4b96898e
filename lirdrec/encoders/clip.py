r"""CLIP-style encoders from transformers (``CLIPModel``, ``SiglipModel``, ...) or open_clip.

:class:`ClipEncoder` loads any model transformers' ``AutoModel`` loads with
``get_image_features`` / ``get_text_features`` (CLIP, SigLIP, ...), by hub name or local path, or
takes a model object. The trainable top is a named submodule per tower, by default the last
module of each (CLIP: ``visual_projection`` / ``text_projection``; SigLIP: ``vision_model.head``
/ ``text_model.head``); everything else is frozen. The trunk output is the top's input,
captured by a forward pre-hook while ``get_*_features`` runs, so the split holds for any model
whose features are that module's output, without re-implementing its forward pass.

:class:`OpenClipEncoder` wraps an ``open_clip`` model when ``open-clip-torch`` is installed: its
towers end in a projection matrix rather than a module, so the frozen trunk is the whole tower
and the trainable top a square projection added on top, initialised to the identity.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from lirdrec.encoders.aligned import AlignedEncoder
from lirdrec.errors import ConfigError
from lirdrec.features._common import require

logger = logging.getLogger(__name__)

__all__ = ["ClipEncoder", "OpenClipEncoder", "DEFAULT_TOPS"]

#: model_type -> (image top, text top) submodule names.
DEFAULT_TOPS = {
    "clip": ("visual_projection", "text_projection"),
    "siglip": ("vision_model.head", "text_model.head"),
    "siglip2": ("vision_model.head", "text_model.head"),
}


def _as_tensor(out: Any) -> Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output object (5)."""
    return out if isinstance(out, Tensor) else out.pooler_output


class ClipEncoder(AlignedEncoder):
    r"""A transformers CLIP/SigLIP model as an :class:`AlignedEncoder`.

    Args:
        model (str | Path | nn.Module): hub name, local path, or a loaded model with
            ``get_image_features`` and ``get_text_features``.
        processor (Any | None): image processor (callable ``images=... -> pixel_values``);
            ``None``: ``AutoImageProcessor`` of ``model`` (name or path only).
        tokenizer (Any | None): tokenizer; ``None``: ``AutoTokenizer`` of ``model``.
        image_top (str | None), text_top (str | None): trainable submodule names; ``None``: the
            model type's defaults (:data:`DEFAULT_TOPS`).
        max_length (int): token limit of texts. (default: ``77``)
        batch_size (int): inputs per trunk pass. (default: ``32``)
        temperature (float): initial :math:`\tau` of the fine-tuning loss. (default: ``0.07``)
        device (str | None): device of the model (``None``: CUDA when present).

    Shapes:
        - **image_trunk:** :math:`B` images -> the image top's input :math:`(B, \ldots)`
        - **text_trunk:** :math:`B` strings -> the text top's input :math:`(B, \ldots)`
        - **image_top / text_top:** -> :math:`(B, d)`
    """

    def __init__(self, model: str | Path | nn.Module, processor: Any = None, tokenizer: Any = None,
                 image_top: str | None = None, text_top: str | None = None,
                 max_length: int = 77, batch_size: int = 32, temperature: float = 0.07,
                 device: str | None = None) -> None:
        super().__init__(temperature)
        from lirdrec.features._common import resolve_device

        transformers = require("transformers", "llm", "ClipEncoder")
        if not isinstance(model, nn.Module):
            name = str(model)
            model = transformers.AutoModel.from_pretrained(name)
            processor = processor or transformers.AutoImageProcessor.from_pretrained(name)
            tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(name)
        if processor is None or tokenizer is None:
            raise ConfigError("ClipEncoder: a model object needs its processor and tokenizer")
        for fn in ("get_image_features", "get_text_features"):
            if not hasattr(model, fn):
                raise ConfigError(f"ClipEncoder: {type(model).__name__} has no {fn}; expected a "
                                  "CLIP-style two-tower model")
        model_type = getattr(getattr(model, "config", None), "model_type", "")
        defaults = DEFAULT_TOPS.get(model_type, DEFAULT_TOPS["clip"])
        self.image_top_name = image_top or defaults[0]
        self.text_top_name = text_top or defaults[1]
        self.model = model.to(resolve_device(device)).eval()
        self.processor, self.tokenizer = processor, tokenizer
        self.max_length, self.batch_size = int(max_length), int(batch_size)
        tops = {}
        for which, name in (("image", self.image_top_name), ("text", self.text_top_name)):
            try:
                tops[which] = self.model.get_submodule(name)
            except AttributeError:
                raise ConfigError(f"ClipEncoder: {type(model).__name__} has no submodule "
                                  f"{name!r} ({which}_top)") from None
        self._tops = tops
        for p in self.model.parameters():
            p.requires_grad_(False)
        for top in tops.values():
            for p in top.parameters():
                p.requires_grad_(True)
        self.dim = int(self._probe_dim())

    def _probe_dim(self) -> int:
        cfg = getattr(self.model, "config", None)
        for attr in ("projection_dim",):
            if cfg is not None and getattr(cfg, attr, None):
                return getattr(cfg, attr)
        top = self._tops["text"]
        weight = getattr(top, "weight", None)
        return weight.shape[0] if weight is not None else -1

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _captured(self, which: str, run) -> Tensor:
        """Run ``run()`` with a pre-hook on the ``which`` top and return the top's input."""
        box: list[Tensor] = []
        handle = self._tops[which].register_forward_pre_hook(
            lambda _m, args, kwargs: box.append(args[0] if args else next(iter(kwargs.values()))),
            with_kwargs=True)
        try:
            with torch.no_grad():
                run()
        finally:
            handle.remove()
        if not box:
            raise ConfigError(f"ClipEncoder: {which} top {getattr(self, which + '_top_name')!r} "
                              "was not called by the model's forward pass")
        return box[-1].detach()

    def image_trunk(self, images: Sequence) -> Tensor:
        from lirdrec.features.image import load_image

        outs = []
        for start in range(0, len(images), self.batch_size):
            batch = []
            for x in images[start:start + self.batch_size]:
                im, reason = load_image(x)
                if im is None:
                    raise ConfigError(f"ClipEncoder: image {x!r}: {reason}")
                batch.append(im)
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self._device)
            outs.append(self._captured(
                "image", lambda px=pixels: self.model.get_image_features(pixel_values=px)))
        return torch.cat(outs)

    def text_trunk(self, texts: Sequence[str]) -> Tensor:
        outs = []
        for start in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(list(texts[start:start + self.batch_size]), padding="max_length",
                                 truncation=True, max_length=self.max_length, return_tensors="pt")
            tok = {k: v.to(self._device) for k, v in tok.items()
                   if k in ("input_ids", "attention_mask")}
            outs.append(self._captured("text", lambda t=tok: self.model.get_text_features(**t)))
        return torch.cat(outs)

    def image_top(self, h: Tensor) -> Tensor:
        return _as_tensor(self._tops["image"](h))

    def text_top(self, h: Tensor) -> Tensor:
        return _as_tensor(self._tops["text"](h))

    def features(self, images: Sequence, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """The model's own ``get_image_features`` / ``get_text_features`` (for checking that
        ``top(trunk(x))`` reproduces them).
        """
        with torch.no_grad():
            from lirdrec.features.image import load_image

            px = self.processor(images=[load_image(x)[0] for x in images],
                                return_tensors="pt")["pixel_values"].to(self._device)
            tok = self.tokenizer(list(texts), padding="max_length", truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            tok = {k: v.to(self._device) for k, v in tok.items()
                   if k in ("input_ids", "attention_mask")}
            return (_as_tensor(self.model.get_image_features(pixel_values=px)),
                    _as_tensor(self.model.get_text_features(**tok)))

    def extra_repr(self) -> str:
        return (f"model={type(self.model).__name__}, dim={self.dim}, "
                f"image_top={self.image_top_name!r}, text_top={self.text_top_name!r}")


class OpenClipEncoder(AlignedEncoder):
    r"""An ``open_clip`` model (``pip install open-clip-torch``) as an :class:`AlignedEncoder`:
    frozen towers, trainable square projections initialised to the identity on top.

    Args:
        model_name (str): open_clip architecture, e.g. ``"ViT-B-32"``.
        pretrained (str | None): open_clip pretrained tag or a local checkpoint path.
        batch_size (int): inputs per trunk pass. (default: ``32``)
        temperature (float): initial :math:`\tau`. (default: ``0.07``)
        device (str | None): device (``None``: CUDA when present).
    """

    def __init__(self, model_name: str, pretrained: str | None = None, batch_size: int = 32,
                 temperature: float = 0.07, device: str | None = None) -> None:
        super().__init__(temperature)
        from lirdrec.features._common import resolve_device

        open_clip = require("open_clip", "clip", "OpenClipEncoder")
        model, _, preprocess = open_clip.create_model_and_transforms(model_name,
                                                                     pretrained=pretrained)
        self.model = model.to(resolve_device(device)).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.preprocess = preprocess
        self.tokenize = open_clip.get_tokenizer(model_name)
        self.batch_size = int(batch_size)
        with torch.no_grad():
            d = int(self.model.encode_text(self.tokenize(["a"]).to(self._device)).shape[-1])
        self.dim = d
        self.image_proj = nn.Linear(d, d, bias=False)
        self.text_proj = nn.Linear(d, d, bias=False)
        with torch.no_grad():
            self.image_proj.weight.copy_(torch.eye(d))
            self.text_proj.weight.copy_(torch.eye(d))

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def image_trunk(self, images: Sequence) -> Tensor:
        from lirdrec.features.image import load_image

        outs = []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                batch = torch.stack([self.preprocess(load_image(x)[0])
                                     for x in images[start:start + self.batch_size]])
                outs.append(self.model.encode_image(batch.to(self._device)).float())
        return torch.cat(outs)

    def text_trunk(self, texts: Sequence[str]) -> Tensor:
        outs = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                tok = self.tokenize(list(texts[start:start + self.batch_size])).to(self._device)
                outs.append(self.model.encode_text(tok).float())
        return torch.cat(outs)

    def image_top(self, h: Tensor) -> Tensor:
        return self.image_proj(h)

    def text_top(self, h: Tensor) -> Tensor:
        return self.text_proj(h)
