r"""Splicing the connector's query tokens into the prompt and pooling the hidden states.

Two layouts, as the reference code:

- ``"replace"`` (Llama): the :math:`Q` query outputs replace the ``<IMG>`` token, so every token
  after it moves by :math:`Q - 1`;
- ``"insert"`` (Qwen-VL): they are inserted after the image-start token, which stays; tokens after
  it move by :math:`Q`.

Pooling reads the final-norm hidden states :math:`\mathbf{H}` of the spliced sequence:
:math:`\mathbf{h}_{mm}` at the last non-pad token and (mICL) :math:`\mathbf{h}_{img}` at the token
just *before* ``<IMG_EMB>``, both positions shifted by the splice; no special token itself is
pooled. Sequences are right-padded.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lirdrec.errors import ConfigError

__all__ = ["splice_queries", "pool_positions", "gather_positions", "LAYOUTS"]

LAYOUTS = ("replace", "insert")


def _layout(layout: str) -> int:
    if layout not in LAYOUTS:
        raise ConfigError(f"NoteLLM2: layout must be one of {list(LAYOUTS)}, got {layout!r}")
    return 1 if layout == "replace" else 0


def _image_positions(input_ids: Tensor, token_id: int, name: str) -> Tensor:
    hits = input_ids == token_id  # (B, L)
    counts = hits.sum(dim=1)
    if not bool((counts == 1).all()):
        bad = int(torch.nonzero(counts != 1)[0, 0])
        raise ConfigError(
            f"NoteLLM2: row {bad} of the batch holds {name} {int(counts[bad])} times; "
            "every prompt must hold it exactly once"
        )
    return hits.float().argmax(dim=1)  # (B,)


def splice_queries(
    token_embeds: Tensor,
    attention_mask: Tensor,
    input_ids: Tensor,
    queries: Tensor,
    image_token_id: int,
    layout: str = "replace",
) -> tuple[Tensor, Tensor]:
    r"""Put the query outputs into each row at its image token (vectorised gather).

    Args:
        token_embeds: :math:`(B, L, d)` input embeddings of the prompt.
        attention_mask: :math:`(B, L)` 1 = token, 0 = pad.
        input_ids: :math:`(B, L)`; each row holds ``image_token_id`` exactly once.
        queries: :math:`(B, Q, d)` connector outputs.
        image_token_id: ``<IMG>`` (replace) or the image-start token (insert).
        layout: ``"replace"`` or ``"insert"``.

    Returns:
        ``(embeds, mask)`` of shapes :math:`(B, L + Q - 1, d)` / :math:`(B, L + Q - 1)` (replace)
        or :math:`(B, L + Q, d)` / :math:`(B, L + Q)` (insert).
    """
    drop = _layout(layout)
    b, length, _ = token_embeds.shape
    q = queries.shape[1]
    pos = _image_positions(input_ids, image_token_id, "the image token")  # (B,)
    start = pos + (1 - drop)  # first query slot
    t = torch.arange(length + q - drop, device=token_embeds.device)[None, :]  # (1, L')
    is_query = (t >= start[:, None]) & (t < start[:, None] + q)  # (B, L')
    src = torch.where(t < start[:, None], t, t - q + drop).clamp(0, length - 1)  # (B, L')
    qidx = (t - start[:, None]).clamp(0, q - 1)  # (B, L')
    d = token_embeds.shape[-1]
    from_tokens = token_embeds.gather(1, src[..., None].expand(-1, -1, d))
    from_queries = queries.gather(1, qidx[..., None].expand(-1, -1, d))
    embeds = torch.where(is_query[..., None], from_queries.to(from_tokens.dtype), from_tokens)
    mask = torch.where(is_query, torch.ones_like(src), attention_mask.gather(1, src))
    return embeds, mask


def pool_positions(
    input_ids: Tensor,
    pad_id: int,
    num_query_tokens: int = 0,
    image_emb_id: int | None = None,
    layout: str = "replace",
) -> tuple[Tensor, Tensor | None]:
    r"""Positions of :math:`\mathbf{h}_{mm}` and :math:`\mathbf{h}_{img}` in the spliced sequence.

    With :math:`n` non-pad tokens, shift :math:`s = Q - 1` (replace) or :math:`Q` (insert),
    :math:`s = 0` when no queries are spliced (``num_query_tokens=0``):
    ``pos_mm = n - 1 + s`` and ``pos_img = index(<IMG_EMB>) - 1 + s``.

    Returns:
        ``(pos_mm (B,), pos_img (B,) or None)``.

    >>> ids = torch.tensor([[1, 5, 90, 6, 91, 8, 0]])
    >>> pool_positions(ids, pad_id=0, num_query_tokens=3, image_emb_id=91)
    (tensor([7]), tensor([5]))
    """
    drop = _layout(layout)
    shift = num_query_tokens - drop if num_query_tokens > 0 else 0
    pos_mm = (input_ids != pad_id).sum(dim=1) - 1 + shift
    pos_img = None
    if image_emb_id is not None:
        pos_img = _image_positions(input_ids, image_emb_id, "<IMG_EMB>") - 1 + shift
    return pos_mm, pos_img


def gather_positions(hidden: Tensor, positions: Tensor) -> Tensor:
    r"""``hidden[b, positions[b]]``: :math:`(B, L, d), (B,) \to (B, d)`."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions]
