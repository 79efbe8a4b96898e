"""NoteLLM-2: an LLM plus a frozen vision encoder, fine-tuned for item-to-item recommendation.

Modules: :mod:`.prompts` (prompts, tokens), :mod:`.vision` (frozen vision tower, cached),
:mod:`.connector` (Q-Former / MLP), :mod:`.pooling` (splice, pooled positions), :mod:`.fusion`
(late-fusion gate), :mod:`.loss` (in-batch loss, mICL), :mod:`.llm` (loading, new tokens) and
:mod:`.model` (:class:`NoteLLM2`). Training: :class:`lirdrec.train.represent.RepresentationTrainer`;
command line: ``lirdrec represent``.
"""

from .connector import MLPConnector, QFormerConnector, build_connector
from .fusion import Gate, LateFusion
from .llm import add_new_tokens, init_new_rows, load_llm, tiny_llm
from .loss import contrastive_loss, in_batch_loss, micl_loss, pair_labels
from .model import INPUT_MODES, VARIANTS, ItemInputs, NoteLLM2
from .pooling import pool_positions, splice_queries
from .prompts import IMG, IMG_EMB, PAD, PROMPTS, SUFFIX

__all__ = [
    "NoteLLM2",
    "ItemInputs",
    "VARIANTS",
    "INPUT_MODES",
    "QFormerConnector",
    "MLPConnector",
    "build_connector",
    "Gate",
    "LateFusion",
    "load_llm",
    "tiny_llm",
    "add_new_tokens",
    "init_new_rows",
    "contrastive_loss",
    "in_batch_loss",
    "micl_loss",
    "pair_labels",
    "splice_queries",
    "pool_positions",
    "IMG",
    "IMG_EMB",
    "PAD",
    "PROMPTS",
    "SUFFIX",
]
