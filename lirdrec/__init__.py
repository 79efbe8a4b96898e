"""lirdrec: graph-based multimodal collaborative filtering around LIRDRec.

>>> import lirdrec
>>> ds = lirdrec.data.synthetic.generate(seed=0)          # or lirdrec.load_dataset("path/to/baby")
>>> model = lirdrec.models.get("lightgcn").from_dataset(ds)
>>> model.score(torch.tensor([0, 1])).shape
torch.Size([2, 900])
"""

import torch  # noqa: F401  (doctest namespace)

from lirdrec import data, evaluate, features, graphs, models, train  # noqa: E402
from lirdrec.data import (  # noqa: E402
    Dataset,
    load_dataset,
    synthetic,  # noqa: E402,F401
)
from lirdrec.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    FeatureError,
    IdError,
    LirdrecError,
    SchemaError,
    SplitError,
    TrainingError,
)
from lirdrec.evaluate import evaluate as evaluate_model  # noqa: E402
from lirdrec.features import ImageEncoder, LLMEmbedder, TextEncoder  # noqa: E402
from lirdrec.train import Callback, FitResult, Trainer  # noqa: E402
from lirdrec.utils import seed_everything  # noqa: E402
from lirdrec.utils.provenance import __version__  # noqa: E402,F401  (lirdrec.__version__)

__all__ = [
    "Dataset", "load_dataset", "models", "Trainer", "Callback", "FitResult", "evaluate_model",
    "seed_everything", "data", "features", "graphs", "train", "evaluate", "TextEncoder",
    "ImageEncoder", "LLMEmbedder", "LirdrecError", "DataError",
    "SchemaError", "IdError", "FeatureError", "SplitError", "ConfigError", "TrainingError",
    "CheckpointError",
]
