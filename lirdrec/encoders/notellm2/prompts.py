"""NoteLLM-2 prompts and their tokenisation (English adaptation of the reference's Chinese ones).

Special tokens: ``<IMG>`` (replaced by the connector's query outputs), ``<IMG_EMB>`` (mICL: the
hidden state just before it is the image vector) and a new pad token ``[PAD]``.

A prompt is a *note* template with ``{title}`` and ``{text}`` (filled by plain replacement, so the
JSON braces need no escaping) and a *suffix* ``, compress into one word: "``. As the reference
(``data.py``), the note is tokenised and truncated to ``max_note_tokens`` first, then the suffix is
tokenised separately and appended, so truncation never cuts the suffix; the item vector is the
hidden state of the suffix's closing quote (the last non-pad token).
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

from lirdrec.errors import ConfigError

__all__ = [
    "IMG",
    "IMG_EMB",
    "PAD",
    "SUFFIX",
    "PROMPTS",
    "clean_field",
    "fill_prompts",
    "tokenize_prompts",
    "pad_batch",
]

IMG = "<IMG>"
IMG_EMB = "<IMG_EMB>"
PAD = "[PAD]"
SUFFIX = ', compress into one word: "'

#: Note templates by kind (the suffix is appended after truncation).
PROMPTS = {
    "basic": 'Item: {"image": "<IMG>", "title": "{title}", "content": "{text}"}',
    "micl": (
        'Item: {"image": "<IMG>"}, compress into one word: "<IMG_EMB>". '
        'Item: {"title": "{title}", "content": "{text}"}'
    ),
    "text": 'Item: {"title": "{title}", "content": "{text}"}',
}

_SPACE = re.compile(r"\s+")


def clean_field(value: object, max_chars: int) -> str:
    r"""One line, double quotes made single (the note is JSON-like), cut to ``max_chars``.

    >>> clean_field('A "big"\n  film', 8)
    "A 'big' "
    """
    text = "" if value is None else str(value)
    text = _SPACE.sub(" ", text).replace('"', "'").strip()
    return text[: int(max_chars)]


def fill_prompts(
    template: str,
    titles: Sequence[object],
    texts: Sequence[object],
    *,
    title_chars: int = 20,
    text_chars: int = 80,
) -> list[str]:
    """Notes from a template: ``{title}`` / ``{text}`` replaced by the cleaned, cut fields.

    >>> fill_prompts(PROMPTS["text"], ["Heat"], ["A heist."])
    ['Item: {"title": "Heat", "content": "A heist."}']
    """
    if len(titles) != len(texts):
        raise ConfigError(f"NoteLLM2: {len(titles)} titles but {len(texts)} texts")
    return [
        template.replace("{title}", clean_field(t, title_chars)).replace(
            "{text}", clean_field(x, text_chars)
        )
        for t, x in zip(titles, texts)
    ]


def tokenize_prompts(
    tokenizer,
    notes: Sequence[str],
    *,
    max_note_tokens: int = 140,
    suffix: str = SUFFIX,
    required: dict[int, str] | None = None,
) -> list[list[int]]:
    """Token ids per note: ``tok(note)[:max_note_tokens] + tok(suffix)`` (suffix without BOS).

    Args:
        tokenizer: Hugging Face tokenizer with the special tokens added.
        notes: filled note templates.
        max_note_tokens: truncation of the note (the reference: 140).
        suffix: appended after truncation.
        required: ``{token id: token}`` that must occur exactly once in every row after
            truncation (``<IMG>``, ``<IMG_EMB>``).

    Raises:
        ConfigError: a required token is missing after truncation or repeated.
    """
    if not notes:
        return []
    note_ids = tokenizer(list(notes), add_special_tokens=True)["input_ids"]
    suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    rows = [list(ids[: int(max_note_tokens)]) + list(suffix_ids) for ids in note_ids]
    for tid, name in (required or {}).items():
        counts = [row.count(tid) for row in rows]
        bad = [i for i, c in enumerate(counts) if c != 1]
        if bad:
            raise ConfigError(
                f"NoteLLM2: {len(bad)} prompt(s) hold {name} {counts[bad[0]]} times after "
                f"truncation to {max_note_tokens} tokens (first: {notes[bad[0]][:60]!r}); "
                f"it must occur exactly once (raise max_note_tokens or fix the prompt)"
            )
    return rows


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token rows: ``(input_ids (B, L) int64, attention_mask (B, L) int64)``.

    >>> ids, mask = pad_batch([[5, 6, 7], [8]], 0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
    """
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    width = int(lengths.max())
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.int64)
    flat = torch.tensor([t for r in rows for t in r], dtype=torch.int64)
    mask = torch.arange(width)[None, :] < lengths[:, None]  # (B, L)
    ids[mask] = flat
    return ids, mask.long()
