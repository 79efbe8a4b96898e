r"""NoteLLM-2 (Zhang et al., "NoteLLM-2: Multimodal Large Representation Models for
Recommendation", KDD 2025, arXiv:2405.16789) as one ``nn.Module``.

For an item with title, text and frozen vision tokens :math:`\mathbf{V} \in \mathbb{R}^{T
\times d_v}` (token 0 = CLS :math:`\mathbf{c}`):

1. the prompt (:mod:`~lirdrec.encoders.notellm2.prompts`) is embedded and the connector's
   :math:`Q` outputs :math:`\mathrm{Conn}(\mathbf{V}) \in \mathbb{R}^{Q \times d}` replace
   ``<IMG>`` (:func:`~lirdrec.encoders.notellm2.pooling.splice_queries`);
2. the LLM's final-norm hidden states give :math:`\mathbf{h}_{mm}` (last non-pad token) and, for
   mICL, :math:`\mathbf{h}_{img}` (the token before ``<IMG_EMB>``);
3. late fusion (:mod:`~lirdrec.encoders.notellm2.fusion`) gates each with
   :math:`\mathbf{v} = \mathbf{W}_{late}\mathbf{c}`;
4. a bias-free head :math:`\mathbf{e} = \mathbf{W}_{lin}\hat{\mathbf{h}} \in \mathbb{R}^{64}`.

Training minimises the in-batch loss of :mod:`~lirdrec.encoders.notellm2.loss` over pairs
(mICL: :math:`(w_t\mathcal{L}(\mathbf{e}_{mm}) + w_v\mathcal{L}(\mathbf{e}_{img}))/(w_t+w_v)`).

Variants (``variant``): ``"text"`` (the fine-tuned text-only LLM, NoteLLM-like: no image),
``"basic"`` (image in the prompt), ``"micl"``, ``"late_fusion"``, ``"notellm2"`` (= mICL + late
fusion, the headline model).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from lirdrec.errors import CheckpointError, ConfigError, DataWarning
from lirdrec.features._common import show_progress_default

from .connector import CONNECTORS, build_connector
from .fusion import LateFusion
from .llm import add_new_tokens
from .loss import contrastive_loss, micl_loss
from .pooling import LAYOUTS, gather_positions, pool_positions, splice_queries
from .prompts import IMG, IMG_EMB, PAD, PROMPTS, fill_prompts, pad_batch, tokenize_prompts

logger = logging.getLogger(__name__)

__all__ = ["NoteLLM2", "ItemInputs", "VARIANTS", "INPUT_MODES"]

VARIANTS = ("text", "basic", "micl", "late_fusion", "notellm2")
#: ``both`` = title, text and image; ``image`` = empty title and text (the reference's
#: "only image" prompt); ``text`` = zero vision tokens (the reference's "only text": a blank image).
INPUT_MODES = ("both", "image", "text")


@dataclass
class ItemInputs:
    """What NoteLLM-2 reads of each item (row ``i`` = item ``i``).

    Attributes:
        titles: ``I`` titles.
        texts: ``I`` texts (descriptions, plots).
        vision: ``(I, T, d_v)`` frozen vision tokens, token 0 = CLS (``None`` for text-only);
            float16 is fine, batches are cast to float32.
    """

    titles: list[str]
    texts: list[str]
    vision: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.titles) != len(self.texts):
            raise ConfigError(f"ItemInputs: {len(self.titles)} titles but {len(self.texts)} texts")
        if self.vision is not None and (self.vision.ndim != 3 or len(self.vision) != len(self)):
            raise ConfigError(
                f"ItemInputs: vision must be (I={len(self)}, T, d_v), got {self.vision.shape}"
            )
        empty = sum(1 for t, x in zip(self.titles, self.texts) if not str(t) and not str(x))
        if empty:
            import warnings

            msg = f"{empty} of {len(self)} items have neither title nor text (empty fields)"
            logger.warning(msg)
            warnings.warn(msg, DataWarning, stacklevel=3)

    def __len__(self) -> int:
        return len(self.titles)


class NoteLLM2(nn.Module):
    r"""NoteLLM-2: an LLM plus a frozen vision encoder as an item representation model.

    Args:
        llm (transformers.PreTrainedModel): a causal LM (fine-tuned in full, or by LoRA).
        tokenizer: its tokenizer; ``<IMG>``, ``<IMG_EMB>`` and ``[PAD]`` are added and their
            embedding rows set to the mean of the old rows.
        vision_dim (int, optional): :math:`d_v`; required unless ``variant="text"``.
        variant (str, optional): one of :data:`VARIANTS`. (default: ``"notellm2"``)
        connector (str, optional): ``"qformer"`` or ``"mlp"``. (default: ``"qformer"``)
        num_query_tokens (int, optional): :math:`Q`. (default: ``16``)
        qformer_layers (int, optional): (default: ``6``)
        qformer_hidden_size (int, optional): (default: ``768``)
        qformer_heads (int, optional): (default: ``12``)
        qformer_intermediate_size (int, optional): (default: ``3072``)
        query_init_std (float, optional): initial query token std; 0 = the reference's zeros.
            (default: ``0.02``)
        embedding_dim (int, optional): head output width. (default: ``64``)
        temperature (float, optional): initial :math:`\tau` (scale :math:`e^\tau`).
            (default: ``3.0``)
        text_weight (float, optional): :math:`w_t` of mICL. (default: ``9.0``)
        image_weight (float, optional): :math:`w_v` of mICL. (default: ``1.0``)
        title_chars (int, optional): title cut. (default: ``20``)
        text_chars (int, optional): text cut. (default: ``80``)
        max_note_tokens (int, optional): note truncation before the suffix. (default: ``140``)
        prompt (str, optional): a note template with ``{title}``/``{text}`` replacing the
            variant's default (must hold ``<IMG>`` for image variants, ``<IMG_EMB>`` for mICL).
        layout (str, optional): ``"replace"`` (Llama) or ``"insert"`` (Qwen). (default:
            ``"replace"``)
        lora_r (int, optional): LoRA rank via ``peft``; 0 = full fine-tuning (the paper).
            (default: ``0``)
        lora_alpha (int, optional): (default: ``16``)
        gradient_checkpointing (bool, optional): (default: ``False``)
        vision_tower (nn.Module, optional): a frozen
            :class:`~lirdrec.encoders.notellm2.vision.VisionTower`, only needed to feed pixels.
        source (dict, optional): how the LLM / vision tower were made (kept in ``config.json``).

    Shapes:
        - **forward:** input_ids, attention_mask :math:`(B, L)`, vision tokens
          :math:`(B, T, d_v)` -> ``{"e_mm": (B, 64), "e_img": (B, 64) or None}``
        - **encode:** :class:`ItemInputs` of :math:`I` items -> :math:`(I, 64)` float32
    """

    def __init__(
        self,
        llm: nn.Module,
        tokenizer: Any,
        vision_dim: int | None = None,
        variant: str = "notellm2",
        connector: str = "qformer",
        num_query_tokens: int = 16,
        qformer_layers: int = 6,
        qformer_hidden_size: int = 768,
        qformer_heads: int = 12,
        qformer_intermediate_size: int = 3072,
        query_init_std: float = 0.02,
        embedding_dim: int = 64,
        temperature: float = 3.0,
        text_weight: float = 9.0,
        image_weight: float = 1.0,
        title_chars: int = 20,
        text_chars: int = 80,
        max_note_tokens: int = 140,
        prompt: str | None = None,
        layout: str = "replace",
        lora_r: int = 0,
        lora_alpha: int = 16,
        gradient_checkpointing: bool = False,
        vision_tower: nn.Module | None = None,
        source: dict | None = None,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"NoteLLM2: variant must be one of {list(VARIANTS)}, got {variant!r}")
        if connector not in CONNECTORS:
            raise ConfigError(
                f"NoteLLM2: connector must be one of {list(CONNECTORS)}, got {connector!r}"
            )
        if layout not in LAYOUTS:
            raise ConfigError(f"NoteLLM2: layout must be one of {list(LAYOUTS)}, got {layout!r}")
        self.variant = variant
        self.use_image = variant != "text"
        self.micl = variant in ("micl", "notellm2")
        self.late_fusion = variant in ("late_fusion", "notellm2")
        if self.use_image and not vision_dim:
            raise ConfigError(f"NoteLLM2: variant {variant!r} needs vision_dim (the image width)")
        for name, value in (("text_weight", text_weight), ("image_weight", image_weight)):
            if value < 0:
                raise ConfigError(f"NoteLLM2: {name} must be >= 0, got {value}")
        if self.micl and text_weight + image_weight <= 0:
            raise ConfigError("NoteLLM2: text_weight + image_weight must be > 0")
        template = (
            prompt
            if prompt is not None
            else PROMPTS["micl" if self.micl else "basic" if self.use_image else "text"]
        )
        self._check_prompt(template)
        self.template = template
        self.config = {
            "vision_dim": None if vision_dim is None else int(vision_dim),
            "variant": variant,
            "connector": connector,
            "num_query_tokens": int(num_query_tokens),
            "qformer_layers": int(qformer_layers),
            "qformer_hidden_size": int(qformer_hidden_size),
            "qformer_heads": int(qformer_heads),
            "qformer_intermediate_size": int(qformer_intermediate_size),
            "query_init_std": float(query_init_std),
            "embedding_dim": int(embedding_dim),
            "temperature": float(temperature),
            "text_weight": float(text_weight),
            "image_weight": float(image_weight),
            "title_chars": int(title_chars),
            "text_chars": int(text_chars),
            "max_note_tokens": int(max_note_tokens),
            "prompt": prompt,
            "layout": layout,
            "lora_r": int(lora_r),
            "lora_alpha": int(lora_alpha),
            "gradient_checkpointing": bool(gradient_checkpointing),
            "source": dict(source or {}),
        }
        self.tokenizer = tokenizer
        self.token_ids = add_new_tokens(tokenizer, llm, [IMG, IMG_EMB], PAD)
        self.pad_id = int(self.token_ids["pad"])
        if lora_r > 0:
            llm = _wrap_lora(llm, int(lora_r), int(lora_alpha))
        if gradient_checkpointing:
            llm.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
            llm.config.use_cache = False
        self.llm = llm
        d = int(llm.get_input_embeddings().weight.shape[1])
        self.hidden_size = d
        self.connector = (
            build_connector(
                connector,
                int(vision_dim),
                d,
                num_query_tokens=int(num_query_tokens),
                num_layers=int(qformer_layers),
                hidden_size=int(qformer_hidden_size),
                num_heads=int(qformer_heads),
                intermediate_size=int(qformer_intermediate_size),
                query_init_std=float(query_init_std),
            )
            if self.use_image
            else None
        )
        self.fusion = LateFusion(int(vision_dim), d) if self.late_fusion else None
        self.head = nn.Linear(d, int(embedding_dim), bias=False)
        self.temperature = nn.Parameter(torch.tensor(float(temperature)))
        self.vision_tower = vision_tower
        self._token_cache: dict[tuple, list[list[int]]] = {}

    # ------------------------------------------------------------------ prompts
    def _check_prompt(self, template: str) -> None:
        if self.use_image and template.count(IMG) != 1:
            raise ConfigError(
                f"NoteLLM2: variant {self.variant!r} needs a prompt holding {IMG} exactly once, "
                f"got {template!r}"
            )
        if not self.use_image and IMG in template:
            raise ConfigError(f"NoteLLM2: the text-only variant's prompt must not hold {IMG}")
        if self.micl and template.count(IMG_EMB) != 1:
            raise ConfigError(
                f"NoteLLM2: mICL needs a prompt holding {IMG_EMB} exactly once, got {template!r}"
            )

    def tokenize(self, titles: Sequence[object], texts: Sequence[object]) -> list[list[int]]:
        """Token ids of every item's prompt (note truncated, then the suffix)."""
        cfg = self.config
        notes = fill_prompts(
            self.template,
            titles,
            texts,
            title_chars=cfg["title_chars"],
            text_chars=cfg["text_chars"],
        )
        required = {}
        if self.use_image:
            required[self.token_ids[IMG]] = IMG
        if self.micl:
            required[self.token_ids[IMG_EMB]] = IMG_EMB
        return tokenize_prompts(
            self.tokenizer, notes, max_note_tokens=cfg["max_note_tokens"], required=required
        )

    def item_tokens(self, items: ItemInputs, mode: str = "both") -> list[list[int]]:
        """:meth:`tokenize` of ``items`` (kept for reuse per items object and mode)."""
        if mode not in INPUT_MODES:
            raise ConfigError(f"NoteLLM2: mode must be one of {list(INPUT_MODES)}, got {mode!r}")
        key = (id(items), len(items), "image" if mode == "image" else "both")
        if key not in self._token_cache:
            if mode == "image":
                rows = self.tokenize([""] * len(items), [""] * len(items))
            else:
                rows = self.tokenize(items.titles, items.texts)
            self._token_cache[key] = rows
        return self._token_cache[key]

    # ------------------------------------------------------------------ forward
    def _backbone(self) -> nn.Module:
        llm = self.llm
        if hasattr(llm, "get_base_model"):  # peft
            llm = llm.get_base_model()
        return llm.get_decoder() if hasattr(llm, "get_decoder") else llm.model

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        vision_tokens: Tensor | None = None,
        pixel_values: Tensor | None = None,
    ) -> dict[str, Tensor | None]:
        if self.use_image:
            if vision_tokens is None:
                if pixel_values is None or self.vision_tower is None:
                    raise ConfigError(
                        f"NoteLLM2: variant {self.variant!r} needs vision tokens (or pixels and "
                        "a vision_tower)"
                    )
                with torch.no_grad():
                    vision_tokens = self.vision_tower(pixel_values)
            vision_tokens = vision_tokens.float()
        embeds = self.llm.get_input_embeddings()(input_ids)  # (B, L, d)
        mask = attention_mask
        q = 0
        if self.use_image:
            queries = self.connector(vision_tokens)  # (B, Q, d)
            q = queries.shape[1]
            embeds, mask = splice_queries(
                embeds,
                attention_mask,
                input_ids,
                queries,
                self.token_ids[IMG],
                self.config["layout"],
            )
        hidden = self._backbone()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        pos_mm, pos_img = pool_positions(
            input_ids,
            self.pad_id,
            q,
            self.token_ids[IMG_EMB] if self.micl else None,
            self.config["layout"],
        )
        h_mm = gather_positions(hidden, pos_mm)  # (B, d)
        h_img = gather_positions(hidden, pos_img) if pos_img is not None else None
        if self.fusion is not None:
            v = self.fusion.project(vision_tokens[:, 0].to(self.fusion.project.weight.dtype))
            h_mm = self.fusion.fuse(h_mm, v)
            h_img = self.fusion.fuse(h_img, v) if h_img is not None else None
        return {
            "h_mm": h_mm,
            "e_mm": self.head(h_mm),
            "e_img": self.head(h_img) if h_img is not None else None,
        }

    def loss(self, out: dict[str, Tensor | None]) -> Tensor:
        """The in-batch loss of a forward pass over ``[a_1..a_P, b_1..b_P]``."""
        if self.micl:
            return micl_loss(
                out["e_mm"],
                out["e_img"],
                self.temperature,
                self.config["text_weight"],
                self.config["image_weight"],
            )
        return contrastive_loss(out["e_mm"], self.temperature)

    def batch(
        self, items: ItemInputs, index: np.ndarray, mode: str = "both", device=None
    ) -> dict[str, Tensor | None]:
        """Padded inputs of the items ``index`` (rows in that order)."""
        rows = self.item_tokens(items, mode)
        ids, mask = pad_batch([rows[i] for i in index], self.pad_id)
        vt = None
        if self.use_image:
            if items.vision is None:
                raise ConfigError(f"NoteLLM2: variant {self.variant!r} needs ItemInputs.vision")
            vt = torch.from_numpy(np.asarray(items.vision[index], dtype=np.float32))
            if mode == "text":
                vt = torch.zeros_like(vt)
        dev = device if device is not None else self.head.weight.device
        return {
            "input_ids": ids.to(dev),
            "attention_mask": mask.to(dev),
            "vision_tokens": None if vt is None else vt.to(dev),
        }

    @torch.no_grad()
    def encode(
        self,
        items: ItemInputs,
        *,
        batch_size: int = 32,
        mode: str = "both",
        output: str = "e_mm",
        show_progress: bool | None = None,
        autocast_bf16: bool = False,
    ) -> np.ndarray:
        """Item vectors :math:`(I, 64)` float32 in item order (eval mode, no gradient).

        Args:
            items: the items.
            batch_size: items per forward pass (sorted by prompt length inside).
            mode: ``"both"``, ``"image"`` (image only) or ``"text"`` (text only).
            output: ``"e_mm"`` (the item vector), ``"e_img"`` (mICL image vector) or ``"h_mm"``
                (the pooled LLM state before fusion and head).
            show_progress: progress bar with items/s (``None``: on when logging INFO).
            autocast_bf16: bfloat16 autocast.
        """
        from tqdm.auto import tqdm

        was_training = self.training
        self.eval()
        rows = self.item_tokens(items, mode)
        order = np.argsort([len(r) for r in rows], kind="stable")
        out: np.ndarray | None = None
        bar = tqdm(
            total=len(items),
            desc=f"encode ({mode})",
            unit="item",
            disable=not show_progress_default(show_progress, logger),
        )
        device_type = self.head.weight.device.type
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast_bf16):
                res = self(**self.batch(items, idx, mode))
            vec = res[output]
            if vec is None:
                raise ConfigError(f"NoteLLM2: output {output!r} needs the mICL variant")
            vec = vec.float().cpu().numpy()
            if out is None:
                out = np.zeros((len(items), vec.shape[1]), dtype=np.float32)
            out[idx] = vec
            bar.update(len(idx))
        bar.close()
        self.train(was_training)
        return out if out is not None else np.zeros((0, self.config["embedding_dim"]), np.float32)

    def train(self, mode: bool = True) -> "NoteLLM2":
        super().train(mode)
        if self.vision_tower is not None:
            self.vision_tower.eval()
        return self

    # ------------------------------------------------------------------ save / load
    def save(self, directory: str | Path) -> Path:
        """``config.json``, ``llm/config.json``, ``tokenizer/`` and ``model.safetensors``.

        The frozen vision tower is not saved (its name is in ``config.json``).
        """
        from safetensors.torch import save_model

        directory = Path(directory)
        (directory / "llm").mkdir(parents=True, exist_ok=True)
        base = self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm
        llm_config = base.config.to_dict()
        llm_config.pop("quantization_config", None)
        (directory / "llm" / "config.json").write_text(json.dumps(llm_config, default=str))
        self.tokenizer.save_pretrained(directory / "tokenizer")
        tower, self.vision_tower = self.vision_tower, None
        try:
            tmp = directory / "model.safetensors.tmp"
            save_model(self, str(tmp))
            tmp.replace(directory / "model.safetensors")
        finally:
            self.vision_tower = tower
        with open(directory / "config.json", "w") as fh:
            json.dump({"class": "NoteLLM2", "version": 1, "kwargs": self.config}, fh, indent=2)
        return directory

    @classmethod
    def load(cls, directory: str | Path, vision_tower: nn.Module | None = None) -> "NoteLLM2":
        """A model saved by :meth:`save` (safetensors; nothing that can run code is read)."""
        import transformers
        from safetensors.torch import load_model

        directory = Path(directory)
        path = directory / "config.json"
        if not path.is_file():
            raise CheckpointError(f"NoteLLM2.load: {path} not found")
        meta = json.loads(path.read_text())
        if meta.get("class") != "NoteLLM2":
            raise CheckpointError(f"NoteLLM2.load: {path} is not a NoteLLM2 model")
        llm_config = transformers.AutoConfig.from_pretrained(directory / "llm")
        llm = transformers.AutoModelForCausalLM.from_config(llm_config)
        tok = transformers.AutoTokenizer.from_pretrained(directory / "tokenizer")
        model = cls(llm.float(), tok, **meta["kwargs"])
        missing, unexpected = load_model(model, str(directory / "model.safetensors"), strict=False)
        missing = [k for k in missing if not k.startswith("vision_tower.")]
        if missing or unexpected:
            raise CheckpointError(
                f"NoteLLM2.load: {directory} does not fit its config "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        model.vision_tower = vision_tower
        return model

    def extra_repr(self) -> str:
        return (
            f"variant={self.variant!r}, hidden={self.hidden_size}, "
            f"embedding_dim={self.config['embedding_dim']}"
        )


def _wrap_lora(llm: nn.Module, r: int, alpha: int) -> nn.Module:
    try:
        import peft
    except ImportError:  # pragma: no cover
        raise ConfigError("NoteLLM2: lora_r > 0 needs peft (pip install peft)") from None
    names = {n.rsplit(".", 1)[-1] for n, m in llm.named_modules() if isinstance(m, nn.Linear)}
    targets = sorted(names & {"q_proj", "k_proj", "v_proj", "o_proj"}) or sorted(
        names - {"lm_head"}
    )
    cfg = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0)
    return peft.get_peft_model(llm, cfg)
