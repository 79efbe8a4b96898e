"""Smaller datasets for quick runs: a random subset of users, re-indexed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lirdrec.data.dataset import Dataset, Split
from lirdrec.errors import ConfigError

__all__ = ["subsample_users"]


def subsample_users(ds: Dataset, fraction: float, rng: np.random.Generator) -> Dataset:
    """Keep a random ``fraction`` of the users (all their interactions), ids re-indexed ``0..U'-1``.

    Items and their features are unchanged, so feature models see the full catalogue.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"sample_users must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return ds
    n = max(1, int(round(fraction * ds.num_users)))
    keep = np.sort(rng.choice(ds.num_users, n, replace=False))
    new_id = np.full(ds.num_users, -1, dtype=np.int64)
    new_id[keep] = np.arange(n)

    def sub(s: Split) -> Split:
        m = new_id[s.users] >= 0
        return Split(new_id[s.users[m]], s.items[m])

    return replace(ds, num_users=n, train=sub(ds.train), valid=sub(ds.valid), test=sub(ds.test))
