"""Features: encoders from raw item texts and images to feature matrices.

Heavy libraries (sentence-transformers, transformers, the EfficientNet packages) are imported
only when an encoder first runs; a missing one raises an ImportError naming the extra.
"""

from lirdrec.features.cache import FeatureCache
from lirdrec.features.image import ImageEncoder
from lirdrec.features.mllm import Captioner, HFCaptioner, LabelCaptioner, LLMEmbedder
from lirdrec.features.synthetic_media import encode_synthetic_media
from lirdrec.features.text import TextEncoder

__all__ = [
    "TextEncoder",
    "ImageEncoder",
    "Captioner",
    "HFCaptioner",
    "LabelCaptioner",
    "LLMEmbedder",
    "FeatureCache",
    "encode_synthetic_media",
]
