"""lirdrec.data.pairs: co-occurrence pairs against a hand-counted toy interaction set."""

from __future__ import annotations

import numpy as np
import pytest

from lirdrec.data.pairs import cooccurrence_pairs, cooccurrence_scores, split_pairs, top_k_pairs
from lirdrec.errors import ConfigError

# u0: {0, 1, 2} (N = 3), u1: {0, 1} (N = 2), u2: {1, 2, 3, 4} (N = 4); u1 rates item 1 twice
USERS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
ITEMS = np.array([0, 1, 2, 0, 1, 1, 1, 2, 3, 4])
TIMES = np.array([0, 0, 5, 0, 3, 3, 1, 2, 10, 11])


def test_scores_are_hand_counted():
    s = cooccurrence_scores(USERS, ITEMS, 5).toarray()
    want = np.zeros((5, 5))
    for a, b, v in [
        (0, 1, 1 / 3 + 1 / 2),
        (0, 2, 1 / 3),
        (1, 2, 1 / 3 + 1 / 4),
        (1, 3, 1 / 4),
        (1, 4, 1 / 4),
        (2, 3, 1 / 4),
        (2, 4, 1 / 4),
        (3, 4, 1 / 4),
    ]:
        want[a, b] = want[b, a] = v
    np.testing.assert_allclose(s, want, rtol=1e-12)


def test_top_k_partners_ties_and_dedupe():
    pairs, scores = cooccurrence_pairs(USERS, ITEMS, 5, top_k=1)
    # 0 -> 1 (5/6), 1 -> 0 (mutual: kept once as (0, 1)), 2 -> 1 (7/12),
    # 3 -> 1 (tie 1/4 with 2 and 4: smaller id), 4 -> 1 (tie with 2, 3)
    assert pairs.tolist() == [[0, 1], [2, 1], [3, 1], [4, 1]]
    np.testing.assert_allclose(scores, [5 / 6, 7 / 12, 1 / 4, 1 / 4])
    pairs2, _ = top_k_pairs(cooccurrence_scores(USERS, ITEMS, 5), top_k=2)
    # 0: 1, 2; 1: 0, 2; 2: 1, 0; 3: 1, 2; 4: 1, 2 -> unordered unique
    assert {tuple(sorted(p)) for p in pairs2.tolist()} == {
        (0, 1),
        (0, 2),
        (1, 2),
        (1, 3),
        (2, 3),
        (1, 4),
        (2, 4),
    }
    assert len(pairs2) == 7


def test_time_window_counts_only_close_interactions():
    s = cooccurrence_scores(USERS, ITEMS, 5, timestamps=TIMES, window=1).toarray()
    want = np.zeros((5, 5))
    # u0: items 0, 1 at time 0 (item 2 at 5 is too late); u1: 0 at 0, 1 at 3: none;
    # u2: 1 (t=1) with 2 (t=2), 3 (t=10) with 4 (t=11)
    for a, b, v in [(0, 1, 1 / 3), (1, 2, 1 / 4), (3, 4, 1 / 4)]:
        want[a, b] = want[b, a] = v
    np.testing.assert_allclose(s, want, rtol=1e-12)
    with pytest.raises(ConfigError, match="needs timestamps"):
        cooccurrence_scores(USERS, ITEMS, 5, window=1)


def test_split_is_seeded_disjoint_and_complete():
    pairs = np.array([[i, i + 1] for i in range(0, 40, 2)])
    a = split_pairs(pairs, np.random.default_rng(3), valid=0.1, test=0.2)
    b = split_pairs(pairs, np.random.default_rng(3), valid=0.1, test=0.2)
    assert a.sizes() == {"train": 14, "valid": 2, "test": 4}
    for x, y in zip((a.train, a.valid, a.test), (b.train, b.valid, b.test)):
        np.testing.assert_array_equal(x, y)
    every = np.concatenate([a.train, a.valid, a.test])
    assert sorted(map(tuple, np.sort(every, axis=1).tolist())) == sorted(map(tuple, pairs.tolist()))
    with pytest.raises(ConfigError):
        split_pairs(pairs, np.random.default_rng(0), valid=0.6, test=0.5)
