"""The vectorised BPR sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lirdrec.data import synthetic
from lirdrec.data.dataset import Dataset, Split
from lirdrec.errors import ConfigError
from lirdrec.train import BPRSampler, Trainer


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


def _checksum(t: torch.Tensor) -> int:
    """Position-weighted sum: equal only for the same values in the same order (practically)."""
    return int((t * torch.arange(1, len(t) + 1)).sum())


def test_one_negative_draws_exactly_what_the_sampler_drew_before_the_option():
    """Issue 18: ``negatives=1`` (the default) makes the same generator calls as before the option
    existed; the checksums were recorded with the sampler of commit e7b7850."""
    ds = synthetic.generate(seed=1)
    default = BPRSampler(ds, torch.Generator().manual_seed(0))
    explicit = BPRSampler(ds, torch.Generator().manual_seed(0), negatives=1)
    recorded = [[8046873909, 11611220359, 12144191609], [8056683900, 11675475011, 11791089753]]
    for want in recorded:
        a, b = default.epoch(), explicit.epoch()
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert [_checksum(x) for x in a] == want
    s = BPRSampler(ds, torch.Generator().manual_seed(0), negatives=1)
    shard = s.epoch_shard(64, 1, 2, torch.Generator().manual_seed(3))
    assert [_checksum(x) for x in shard] == [2033301575, 2904586209, 3045784060, 211830, 423660]


def test_k_negatives_repeat_each_pair_k_times_with_independent_valid_negatives():
    ds = synthetic.generate(seed=1)
    k = 3
    s = BPRSampler(ds, torch.Generator().manual_seed(0), negatives=k)
    u, p, n = s.epoch()
    assert u.shape == p.shape == n.shape == (k * len(ds.train),)
    # pairs come in runs of k: (u, p) equal inside a run, and the runs are the shuffled pairs
    assert (u.view(-1, k) == u.view(-1, k)[:, :1]).all() and (p.view(-1, k) == p[::k, None]).all()
    got = sorted(zip(u[::k].tolist(), p[::k].tolist()))
    assert got == sorted(zip(ds.train.users.tolist(), ds.train.items.tolist()))
    # the same permutation as one negative (one randperm call first), negatives of the pairs'
    # users never a training positive, from the training pool
    one = BPRSampler(ds, torch.Generator().manual_seed(0)).epoch()
    assert torch.equal(u[::k], one[0]) and torch.equal(p[::k], one[1])
    train = set(zip(ds.train.users.tolist(), ds.train.items.tolist()))
    assert not any((a, b) in train for a, b in zip(u.tolist(), n.tolist()))
    assert np.isin(n.numpy(), np.flatnonzero(ds.item_degree() > 0)).all()
    # independent draws: within-run duplicates as rare as for uniform draws (~ k(k-1)/2 / pool)
    runs = n.view(-1, k)
    same = (runs[:, :, None] == runs[:, None, :]).sum(dim=(1, 2)) - k  # ordered equal pairs
    pool = int((ds.item_degree() > 0).sum())
    assert float(same.float().mean()) < 3 * k * (k - 1) / pool
    assert (runs[:, 0] != runs[:, 1]).float().mean() > 0.9


def test_k_negatives_shards_cover_each_global_batch_of_triples_once():
    ds = synthetic.generate(seed=1, num_users=60, num_items=90)
    k, world, b = 2, 3, 100
    users_all, pos_all, _ = BPRSampler(ds, torch.Generator().manual_seed(3), negatives=k).epoch()
    shards = []
    for r in range(world):
        s = BPRSampler(ds, torch.Generator().manual_seed(3), negatives=k)
        u, p, n, counts, sizes = s.epoch_shard(b, r, world, torch.Generator().manual_seed(r))
        assert len(u) == int(counts.sum()) and (counts % k == 0).all()
        assert int(sizes.sum()) == k * len(ds.train) and int(sizes[0]) == k * b
        assert not s.is_positive(u, n).any()
        shards.append((u, p, counts))
    offs, rebuilt = [0] * world, []
    for i in range(len(shards[0][2])):
        for r in range(world):
            c = int(shards[r][2][i])
            rebuilt.append(torch.stack([shards[r][0][offs[r]:offs[r] + c],
                                        shards[r][1][offs[r]:offs[r] + c]]))
            offs[r] += c
    assert torch.equal(torch.cat(rebuilt, 1), torch.stack([users_all, pos_all]))


def test_bad_negatives_is_a_config_error():
    ds = synthetic.generate(seed=1, num_users=30, num_items=40)
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match="negatives"):
            BPRSampler(ds, torch.Generator(), negatives=bad)
        with pytest.raises(ConfigError, match="Trainer: negatives"):
            Trainer(negatives=bad)
