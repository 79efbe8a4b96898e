"""The vectorised BPR sampler."""

from __future__ import annotations

import numpy as np
import torch

from lirdrec.data import synthetic
from lirdrec.data.dataset import Dataset, Split
from lirdrec.train import BPRSampler


def test_epoch_covers_every_pair_once_and_negatives_are_not_positives():
    ds = synthetic.generate(seed=1)
    s = BPRSampler(ds, torch.Generator().manual_seed(0))
    u, p, n = s.epoch()
    got = sorted(zip(u.tolist(), p.tolist()))
    assert got == sorted(zip(ds.train.users.tolist(), ds.train.items.tolist()))
    train = set(got)
    assert not any((a, b) in train for a, b in zip(u.tolist(), n.tolist()))
    # negatives come from the items seen in training (MMRec's pool)
    assert np.isin(n.numpy(), np.flatnonzero(ds.item_degree() > 0)).all()


def test_same_generator_seed_same_epoch_and_different_epochs_differ():
    ds = synthetic.generate(seed=1)
    a = BPRSampler(ds, torch.Generator().manual_seed(5))
    b = BPRSampler(ds, torch.Generator().manual_seed(5))
    e1, e2 = a.epoch(), b.epoch()
    assert all(torch.equal(x, y) for x, y in zip(e1, e2))
    assert not torch.equal(a.epoch()[0], e1[0])


def test_rejection_with_a_nearly_full_user_is_uniform_over_the_rest():
    # user 0 has items 0..8 of 10 in training: the only valid negative is item 9
    users = [0] * 9 + [1]
    items = list(range(9)) + [9]
    ds = Dataset("full", 2, 10, Split(users, items), Split([], []), Split([], []))
    s = BPRSampler(ds, torch.Generator().manual_seed(0))
    neg = s.negatives(torch.zeros(1000, dtype=torch.long))
    assert (neg == 9).all()
    neg1 = s.negatives(torch.ones(9000, dtype=torch.long))
    counts = np.bincount(neg1.numpy(), minlength=10)
    assert counts[9] == 0 and counts[:9].min() > 850  # ~1000 each
