"""Training: vectorised BPR sampling, the trainer and its checkpoints."""

from lirdrec.train import encoded as _encoded  # noqa: F401  (hands its config keys to lirdrec.config)
from lirdrec.train.sampler import BPRSampler
from lirdrec.train.trainer import Callback, FitResult, Trainer

__all__ = ["BPRSampler", "Callback", "FitResult", "Trainer"]
