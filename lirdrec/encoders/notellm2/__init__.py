"""NoteLLM-2: an LLM plus a frozen vision encoder, fine-tuned for item-to-item recommendation.

Modules: :mod:`.prompts` (prompts, tokens), :mod:`.vision` (frozen vision tower, cached),
:mod:`.connector` (Q-Former / MLP), :mod:`.pooling` (splice, pooled positions), :mod:`.fusion`
(late-fusion gate), :mod:`.loss` (in-batch loss, mICL), :mod:`.llm` (loading, new tokens) and
:mod:`.model` (:class:`NoteLLM2`). Training: :class:`lirdrec.train.represent.RepresentationTrainer`;
command line: ``lirdrec represent``.

From Python (run from the repository root)::

    from lirdrec.data import load_dataset
    from lirdrec.data.pairs import dataset_pairs
    from lirdrec.data.raw_items import read_raw_items
    from lirdrec.encoders.notellm2 import NoteLLM2, load_llm
    from lirdrec.encoders.notellm2.data import item_inputs
    from lirdrec.features.recipe import Recipe
    from lirdrec.train.represent import RepresentationTrainer

    ds = load_dataset("../shared/data/ml100k")
    raw = read_raw_items(Recipe.from_yaml("datasets/ml100k/recipe.yaml"), ds.path)
    items, _ = item_inputs(raw, text_template="{Summary}", cache_dir=".lirdrec_cache")
    pairs = dataset_pairs(ds, top_k=10)                       # train / valid / test pairs
    tok, llm = load_llm("SmolLM2-135M-Instruct")              # GGUF converted once, cached
    model = NoteLLM2(llm, tok, vision_dim=items.vision.shape[-1], variant="notellm2")
    result = RepresentationTrainer(lr=1e-4, batch_size=8).fit(model, items, pairs)
    vectors = model.encode(items)                             # (I, 64) float32
    model.save("runs/nl2"); model = NoteLLM2.load("runs/nl2")
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
