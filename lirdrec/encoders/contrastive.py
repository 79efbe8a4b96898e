r"""The CLIP contrastive loss, image-to-text retrieval recall, and a small fit loop.

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision"
(ICML 2021, arXiv:2103.00020): for :math:`B` paired rows, L2-normalised image vectors
:math:`\mathbf{v}_b` and text vectors :math:`\mathbf{t}_b`, logits
:math:`z_{ab} = e^{s}\,\mathbf{v}_a^\top\mathbf{t}_b` with a learnable log inverse temperature
:math:`s` (initialised at :math:`\log(1/0.07)`, capped at :math:`\log 100` as CLIP does), and

.. math::
    \mathcal L = \frac12\Big(\frac1B\sum_a -\log\frac{e^{z_{aa}}}{\sum_b e^{z_{ab}}}
    + \frac1B\sum_b -\log\frac{e^{z_{bb}}}{\sum_a e^{z_{ab}}}\Big).

:func:`fit_contrastive` trains an :class:`~lirdrec.encoders.aligned.AlignedEncoder`'s trainable
top on cached trunk outputs; it needs nothing from ``evaluate/`` or ``train/``.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirdrec.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["LogitScale", "clip_loss", "retrieval_recall", "fit_contrastive", "INIT_TEMPERATURE"]

#: CLIP's initial temperature :math:`\tau`: logits are scaled by :math:`1/\tau`.
INIT_TEMPERATURE = 0.07
#: CLIP clips the logit scale at 100 (:math:`s \le \log 100`) for stability.
MAX_LOGIT_SCALE = math.log(100.0)


class LogitScale(nn.Module):
    r"""Learnable :math:`s = \log(1/\tau)`; :meth:`forward` is :math:`e^{\min(s, \log 100)}`."""

    def __init__(self, temperature: float = INIT_TEMPERATURE) -> None:
        super().__init__()
        if not temperature > 0:
            raise ConfigError(f"LogitScale: temperature must be > 0, got {temperature!r}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / float(temperature))))

    def forward(self) -> Tensor:
        return self.log_scale.clamp(max=MAX_LOGIT_SCALE).exp()


def clip_loss(image_emb: Tensor, text_emb: Tensor, scale: Tensor | float) -> Tensor:
    r"""Symmetric InfoNCE over :math:`B` pairs (row :math:`b` of both inputs is a pair).

    Args:
        image_emb (Tensor): :math:`(B, d)` image vectors (normalised here).
        text_emb (Tensor): :math:`(B, d)` text vectors (normalised here).
        scale (Tensor | float): :math:`e^{s} = 1/\tau`.

    Returns:
        Scalar: the mean of the image->text and text->image cross-entropies.

    >>> v = torch.eye(2)
    >>> round(float(clip_loss(v, v, 1.0)), 4)   # log(1 + e^-1)
    0.3133
    """
    v = F.normalize(image_emb, dim=-1)
    t = F.normalize(text_emb, dim=-1)
    logits = scale * v @ t.t()  # (B, B)
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


@torch.no_grad()
def retrieval_recall(image_emb: Tensor, text_emb: Tensor, k: int = 10) -> float:
    r"""Image -> text Recall@k: the fraction of images whose own text is among the :math:`k`
    texts of highest cosine similarity (ties broken by ``topk``).

    >>> recall = retrieval_recall(torch.eye(3), torch.tensor([[1., 0, 0], [0, 0, 1], [0, 1, 0]]), 1)
    >>> round(recall, 4)
    0.3333
    """
    v = F.normalize(image_emb.float(), dim=-1)
    t = F.normalize(text_emb.float(), dim=-1)
    k = min(int(k), t.shape[0])
    top = (v @ t.t()).topk(k, dim=1).indices  # (B, k)
    hit = (top == torch.arange(v.shape[0], device=v.device)[:, None]).any(dim=1)
    return float(hit.float().mean())


def fit_contrastive(encoder, image_trunk: Tensor, text_trunk: Tensor, *, epochs: int = 20,
                    lr: float = 1e-3, batch_size: int = 256, weight_decay: float = 0.0,
                    seed: int = 0, show_progress: bool | None = None) -> list[float]:
    r"""Fine-tune ``encoder``'s trainable top with :func:`clip_loss` on cached trunk outputs.

    Each epoch shuffles the :math:`N` pairs with a generator seeded by ``seed`` and takes one
    Adam step per batch (the last, smaller batch included; a batch of one pair is skipped: it
    has no negative). Only ``encoder.trainable_parameters()`` change.

    Args:
        encoder (AlignedEncoder): the encoder; its ``image_top`` / ``text_top`` map trunk rows to
            the shared space and ``logit_scale()`` gives :math:`e^{s}`.
        image_trunk (Tensor): :math:`(N, \ldots)` cached image trunk outputs.
        text_trunk (Tensor): :math:`(N, \ldots)` cached text trunk outputs, row :math:`n`
            paired with image row :math:`n`.
        epochs (int): passes over the pairs. (default: ``20``)
        lr (float): Adam learning rate. (default: ``1e-3``)
        batch_size (int): pairs per step, the in-batch negatives. (default: ``256``)
        weight_decay (float): Adam weight decay. (default: ``0.0``)
        seed (int): order of the pairs. (default: ``0``)
        show_progress (bool | None): a tqdm bar over epochs; ``None``: when INFO is logged.

    Returns:
        The mean loss of each epoch.
    """
    from tqdm.auto import tqdm

    n = image_trunk.shape[0]
    if n != text_trunk.shape[0] or n < 2:
        raise ConfigError(f"fit_contrastive: need >= 2 pairs with as many image as text rows, "
                          f"got {n} images and {text_trunk.shape[0]} texts")
    for name, value, ok in (("epochs", epochs, epochs >= 0), ("lr", lr, lr > 0),
                            ("batch_size", batch_size, batch_size >= 2)):
        if not ok:
            raise ConfigError(f"fit_contrastive: {name} must be valid, got {value!r}")
    params = encoder.trainable_parameters()
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(int(seed))
    show = logger.isEnabledFor(logging.INFO) if show_progress is None else bool(show_progress)
    was = encoder.training
    encoder.train()
    history = []
    for epoch in tqdm(range(int(epochs)), desc="contrastive", disable=not show):
        order = torch.randperm(n, generator=gen)
        total, steps = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if idx.numel() < 2:
                continue
            opt.zero_grad(set_to_none=True)
            loss = clip_loss(encoder.image_top(image_trunk[idx]), encoder.text_top(text_trunk[idx]),
                             encoder.logit_scale())
            loss.backward()
            opt.step()
            total += float(loss.detach())
            steps += 1
        history.append(total / max(steps, 1))
        logger.info("contrastive epoch %d: loss %.4f", epoch + 1, history[-1])
    encoder.train(was)
    return history
