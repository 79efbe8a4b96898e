"""Cold-start item protocol: hold items out of training entirely."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from lirdrec.data.dataset import Dataset, Split
from lirdrec.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["hold_out_items"]


def hold_out_items(ds: Dataset, fraction: float, rng: np.random.Generator) -> Dataset:
    """A copy of ``ds`` where a random ``fraction`` of the items never occurs in training.

    Every interaction of a held-out ("cold") item (train, valid or test) moves to the test split,
    so validation and the training graph only see warm items, while test ranks among ALL items.
    The cold items are recorded in ``Dataset.cold_items``; the evaluator then also reports
    ``cold/<metric>`` computed on the cold items' test interactions alone.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"cold_items must be in (0, 1), got {fraction}")
    n_cold = max(1, int(round(fraction * ds.num_items)))
    cold = np.sort(rng.choice(ds.num_items, size=n_cold, replace=False))
    is_cold = np.zeros(ds.num_items, dtype=bool)
    is_cold[cold] = True

    def keep(split: Split) -> Split:
        m = ~is_cold[split.items]
        return Split(split.users[m], split.items[m])

    splits = (ds.train, ds.valid, ds.test)
    cold_u = np.concatenate([s.users[is_cold[s.items]] for s in splits])
    cold_i = np.concatenate([s.items[is_cold[s.items]] for s in splits])
    test = Split(np.concatenate([ds.test.users[~is_cold[ds.test.items]], cold_u]),
                 np.concatenate([ds.test.items[~is_cold[ds.test.items]], cold_i]))
    out = replace(ds, train=keep(ds.train), valid=keep(ds.valid), test=test, cold_items=cold)
    if len(out.train) == 0:
        raise ConfigError("cold_items: holding out these items leaves no training interaction")
    logger.info("cold-item protocol: %d of %d items held out of training (%d interactions moved "
                "to test)", n_cold, ds.num_items, len(cold_i))
    return out
