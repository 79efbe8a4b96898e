"""Training: vectorised BPR sampling, the trainer and its checkpoints."""

from lirdrec.train.sampler import BPRSampler
from lirdrec.train.trainer import Callback, FitResult, Trainer

__all__ = ["BPRSampler", "Callback", "FitResult", "Trainer"]
