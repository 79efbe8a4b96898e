"""Seeding."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's :mod:`random`, NumPy's legacy global generator and torch (CPU and CUDA).

    Library code takes explicit generators; this only pins what third-party code draws globally
    (e.g. ``nn.init``).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
