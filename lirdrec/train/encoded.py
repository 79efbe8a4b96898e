r"""Item features from an aligned image-text encoder, in the three ways of the LMM4Rec study.

Yi, Long, Ounis, Macdonald, McCreadie, "Large Multi-modal Encoders for Recommendation"
(arXiv:2310.20343). One mechanism serves every feature-aware model (VBPR, LATTICE, BM3,
FREEDOM, LIRDRec):

- ``pretrained``: the encoder is frozen; its image and text vectors of every item become the
  dataset's ``image`` and ``text`` features, constant, through the same code path as feature
  files (so the model trains exactly as it would on files holding those matrices);
- ``finetuned``: the encoder's trainable top is first fitted on the dataset's own item
  image-text pairs with the CLIP loss (:func:`lirdrec.encoders.contrastive.fit_contrastive`),
  then frozen and used as in ``pretrained``;
- ``end2end``: the model is built from the encoder's initial features, then an
  :class:`~lirdrec.encoders.aligned.ItemFeatureEncoder` is attached
  (:meth:`lirdrec.models.base.Recommender.attach_feature_encoder`): every training step
  recomputes the features from the cached trunk outputs through the trainable top, and the
  recommender's loss (plus ``vl_loss_weight`` times the contrastive loss on the batch's items)
  trains it. Graphs a model builds from its features at construction (the kNN item graphs of
  LATTICE, FREEDOM and LIRDRec) are built once from the initial features, as those models
  freeze them.

Settings are the keyword arguments of :func:`encoder_settings` (``lirdrec train --set
encoder=dual --set encoder_mode=end2end``). Raw images and texts come from the dataset's raw
items (:func:`lirdrec.data.raw_items.read_raw_items`, the reader ``lirdrec prepare`` uses) as a
recipe describes them.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from lirdrec.data.dataset import Dataset
from lirdrec.encoders.aligned import AlignedEncoder, ItemFeatureEncoder
from lirdrec.errors import ConfigError
from lirdrec.utils.io import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["MODES", "encoder_settings", "build_encoder", "load_item_trunks",
           "encoder_features", "save_encoder_top", "load_encoder_top"]

MODES = ("pretrained", "finetuned", "end2end")
#: file of a run directory holding the fine-tuned encoder top (tensors only)
FINETUNED_FILE = "encoder_top.pt"


def encoder_settings(encoder: str = "none", encoder_mode: str = "pretrained",
                     vl_loss_weight: float = 0.0, encoder_dim: int = 256,
                     encoder_hidden_dim: int = 0, encoder_init: str = "",
                     raw_items: str = "", raw_dir: str = "", text_modality: str = "text",
                     finetune_epochs: int = 30, finetune_lr: float = 1e-3,
                     finetune_batch_size: int = 256,
                     encoder_cache: str = ".lirdrec_cache") -> dict[str, Any]:
    r"""The encoder settings of a run, checked; the config reads its keys from this signature.

    Args:
        encoder (str): ``"none"`` (the dataset's feature files, today's path), ``"dual"`` (the
            offline aligned dual encoder, :class:`~lirdrec.encoders.dual.DualEncoder`;
            ``"dual:last_block"`` also trains EfficientNet-Lite0's last block),
            ``"clip:<name or path>"`` (transformers, :class:`~lirdrec.encoders.clip.ClipEncoder`)
            or ``"open_clip:<arch>[:<pretrained>]"``. (default: ``"none"``)
        encoder_mode (str): ``"pretrained"`` | ``"finetuned"`` | ``"end2end"``.
        vl_loss_weight (float): :math:`\beta` of the contrastive loss in ``end2end``. (default: 0)
        encoder_dim (int): shared width :math:`d` of the dual encoder. (default: ``256``)
        encoder_hidden_dim (int): MLP heads of this width in the dual encoder; 0: linear.
        encoder_init (str): a file of the encoder's trainable top (:func:`save_encoder_top`),
            loaded before anything else, e.g. heads aligned on another dataset. (default: none)
        raw_items (str): the dataset recipe YAML naming its item table and images; ``""``:
            ``<data>/recipe.yaml``, ``<data>/raw/recipe.yaml``, ``datasets/<name>/recipe.yaml``.
        raw_dir (str): overrides the recipe's ``raw_dir``.
        text_modality (str): the recipe modality whose ``template`` / ``fields`` make the item
            texts. (default: ``"text"``)
        finetune_epochs (int): fine-tuning epochs (``finetuned`` mode). (default: ``30``)
        finetune_lr (float): fine-tuning learning rate. (default: ``1e-3``)
        finetune_batch_size (int): pairs per fine-tuning step. (default: ``256``)
        encoder_cache (str): trunk output cache folder; ``""`` disables the disk cache.
    """
    settings = dict(locals())
    if encoder_mode not in MODES:
        raise ConfigError(f"encoder_mode must be one of {', '.join(MODES)}, got {encoder_mode!r}")
    kind, _, rest = str(encoder).partition(":")
    if kind not in ("none", "dual", "clip", "open_clip") or (kind == "dual"
                                                              and rest not in ("", "last_block")):
        raise ConfigError(f"encoder must be 'none', 'dual', 'dual:last_block', "
                          f"'clip:<name or path>' or "
                          f"'open_clip:<arch>[:<pretrained>]', got {encoder!r}")
    if not vl_loss_weight >= 0:
        raise ConfigError(f"vl_loss_weight must be >= 0, got {vl_loss_weight!r}")
    return settings


def build_encoder(settings: dict[str, Any], seed: int = 0) -> AlignedEncoder:
    """The encoder a setting names; its top drawn under ``seed`` (or read from
    ``encoder_init``). The trunk weights load on the first trunk call.
    """
    name = str(settings["encoder"])
    kind, _, rest = name.partition(":")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if kind == "dual":
            from lirdrec.encoders.dual import DualEncoder

            enc: AlignedEncoder = DualEncoder(
                dim=int(settings["encoder_dim"]),
                hidden_dim=int(settings["encoder_hidden_dim"]) or None,
                unfreeze_last_block=rest == "last_block",
                cache=settings["encoder_cache"] or None)
        elif kind == "clip":
            from lirdrec.encoders.clip import ClipEncoder

            enc = ClipEncoder(rest)
        elif kind == "open_clip":
            from lirdrec.encoders.clip import OpenClipEncoder

            arch, _, pretrained = rest.partition(":")
            enc = OpenClipEncoder(arch, pretrained or None)
        else:
            raise ConfigError(f"no encoder to build for encoder={name!r}")
    if settings.get("encoder_init"):
        enc.load_top_state_dict(load_encoder_top(settings["encoder_init"]))
    return enc


def save_encoder_top(path: str | Path, encoder: AlignedEncoder) -> None:
    """Write the encoder's trainable tensors (atomic; tensors only)."""
    import io

    buf = io.BytesIO()
    torch.save(encoder.top_state_dict(), buf)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def load_encoder_top(path: str | Path) -> dict[str, torch.Tensor]:
    """Read what :func:`save_encoder_top` wrote (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: encoder top file not found")
    return torch.load(path, map_location="cpu", weights_only=True)


def _find_recipe(ds: Dataset, settings: dict[str, Any]) -> Path:
    if settings.get("raw_items"):
        path = Path(settings["raw_items"])
        if not path.is_file():
            raise ConfigError(f"raw_items: recipe {path} not found")
        return path
    candidates = [Path("datasets") / ds.name / "recipe.yaml"]
    if ds.path is not None:
        candidates = [Path(ds.path) / "recipe.yaml", Path(ds.path) / "raw" / "recipe.yaml",
                      *candidates]
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(map(str, candidates))
    raise ConfigError(f"encoder={settings['encoder']!r} needs the dataset's raw items: set "
                      f"raw_items to its recipe YAML (looked for {looked})")


def _raw_items(ds: Dataset, settings: dict[str, Any]):
    """Image paths, texts and display names of every item, from the dataset's recipe."""
    import yaml

    from lirdrec.data.raw_items import read_raw_items
    from lirdrec.features.recipe import Recipe
    from lirdrec.features.text import join_fields

    if ds.path is None:
        raise ConfigError("an aligned encoder needs a dataset read from a folder (its "
                          "i_id_mapping.csv maps items to raw items)")
    path = _find_recipe(ds, settings)
    recipe = Recipe.from_dict(yaml.safe_load(path.read_text()) or {})
    raw_dir = Path(settings["raw_dir"] or recipe.raw_dir)
    table = None if recipe.items is None else Path(recipe.items.path)
    if (not settings["raw_dir"] and not raw_dir.is_absolute() and table is not None
            and not (raw_dir / table).is_file()):
        raw_dir = path.parent / recipe.raw_dir  # relative to the recipe's folder instead
    raw = read_raw_items(recipe, ds.path, raw_dir=raw_dir)
    if len(raw) != ds.num_items:
        raise ConfigError(f"{path}: {len(raw)} raw items for a dataset of {ds.num_items} items")
    spec = dict(recipe.modalities.get(settings["text_modality"]) or {})
    if "template" not in spec and "fields" not in spec:
        raise ConfigError(f"{path}: modality {settings['text_modality']!r} has no template or "
                          "fields to build item texts from (set text_modality)")
    texts = join_fields(raw.records, spec.get("fields"), sep=spec.get("sep", " "),
                        template=spec.get("template"))
    names = [f"{i} ({t})" for i, t in enumerate(raw.titles)]
    return raw.image_paths, texts, names


#: trunk outputs by (encoder, dataset, recipe) within one process (the experiment runner trains
#: many models on one dataset); the dual encoder also caches them on disk
_TRUNKS: dict[tuple, tuple] = {}


def load_item_trunks(encoder: AlignedEncoder, ds: Dataset, settings: dict[str, Any]):
    """``(image_trunk (I, ...), text_trunk (I, ...), paired (I,))`` of every item."""
    key = (repr(encoder), str(ds.path), ds.num_items, settings["raw_items"], settings["raw_dir"],
           settings["text_modality"])
    if key not in _TRUNKS:
        images, texts, names = _raw_items(ds, settings)
        hv, ht, paired = encoder.item_trunks(images, texts, names)
        _TRUNKS.clear()  # keep one dataset's trunks at a time
        _TRUNKS[key] = (hv, ht, torch.from_numpy(paired))
    return _TRUNKS[key]


def encoder_features(ds: Dataset, settings: dict[str, Any], seed: int = 999,
                     out_dir: str | Path | None = None,
                     encoder: AlignedEncoder | None = None,
                     trunks: tuple | None = None) -> tuple[Dataset, ItemFeatureEncoder | None]:
    """Apply an encoder setting to a dataset.

    Args:
        ds: the dataset (its other modalities are kept; ``image`` and ``text`` are replaced).
        settings: from :func:`encoder_settings`.
        seed: the top's initialisation and the fine-tuning order.
        out_dir: run directory; the fine-tuned top is saved there (and read back on resume).
        encoder: an encoder to use instead of building one (tests, notebooks).
        trunks: its ``(image_trunk, text_trunk, paired)`` instead of reading the raw items.

    Returns:
        ``(dataset with the encoder's features, ItemFeatureEncoder to attach or None)``: the
        encoder is returned in ``end2end`` mode only.
    """
    if settings["encoder"] == "none":
        return ds, None
    enc = encoder if encoder is not None else build_encoder(settings, seed)
    hv, ht, paired = trunks if trunks is not None else load_item_trunks(enc, ds, settings)
    source = ItemFeatureEncoder(enc, hv, ht, paired, settings["vl_loss_weight"])
    if settings["encoder_mode"] == "finetuned":
        saved = None if out_dir is None else Path(out_dir) / FINETUNED_FILE
        if saved is not None and saved.is_file():
            enc.load_top_state_dict(load_encoder_top(saved))
            logger.info("fine-tuned encoder top read from %s", saved)
        else:
            from lirdrec.encoders.contrastive import fit_contrastive

            idx = torch.nonzero(source.paired).squeeze(1)
            hist = fit_contrastive(enc, hv[idx], ht[idx], epochs=settings["finetune_epochs"],
                                   lr=settings["finetune_lr"],
                                   batch_size=settings["finetune_batch_size"], seed=seed)
            logger.info("encoder fine-tuned on %d item pairs: loss %.4f -> %.4f", len(idx),
                        hist[0] if hist else float("nan"), hist[-1] if hist else float("nan"))
            if saved is not None:
                save_encoder_top(saved, enc)
    features = dict(ds.features)
    features.update(source.constant_features())
    out = dataclasses.replace(ds, features=features)
    if settings["encoder_mode"] != "end2end":
        return out, None
    return out, source


from lirdrec.config import provide  # noqa: E402  (after the function it hands over)

provide(encoder_settings=encoder_settings)  # the config core reads the encoder keys from here
