"""Metrics: hand-computed values and agreement with a slow per-user reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lirdrec.data.dataset import Dataset, Split
from lirdrec.evaluate import (
    auto_batch_size,
    evaluate,
    evaluate_splits,
    hits_from_topk,
    ranking_metrics,
)
from lirdrec.models.base import Recommender


def test_hand_computed_single_user():
    # test items {1, 3}; ranked list [3, 0, 1, 2]
    hits = torch.tensor([[True, False, True, False]])
    m = ranking_metrics(hits, torch.tensor([2]), [1, 2, 3, 4])
    assert m["Recall@2"].item() == pytest.approx(1 / 2)
    assert m["Precision@2"].item() == pytest.approx(1 / 2)
    assert m["NDCG@2"].item() == pytest.approx(1 / (1 + 1 / math.log2(3)))
    # MAP@2 = (P@1 * 1 + P@2 * 0) / min(2, 2) = 1/2
    assert m["MAP@2"].item() == pytest.approx(0.5)
    # @3: hits at ranks 1 and 3
    assert m["Recall@3"].item() == pytest.approx(1.0)
    assert m["NDCG@3"].item() == pytest.approx((1 + 1 / 2) / (1 + 1 / math.log2(3)))
    assert m["MAP@3"].item() == pytest.approx((1 + 2 / 3) / 2)
    assert m["Precision@4"].item() == pytest.approx(2 / 4)


def test_ndcg_ideal_is_truncated_at_k():
    # 5 positives, K = 2, both top-2 hits -> IDCG over min(5, 2) = 2 positions -> NDCG 1
    m = ranking_metrics(torch.tensor([[True, True]]), torch.tensor([5]), [2])
    assert m["NDCG@2"].item() == pytest.approx(1.0)
    assert m["Recall@2"].item() == pytest.approx(2 / 5)
    assert m["MAP@2"].item() == pytest.approx(1.0)


def test_hits_from_topk():
    topk = torch.tensor([[4, 2, 0], [1, 3, 2]])
    hits = hits_from_topk(topk, torch.tensor([0, 0, 1]), torch.tensor([0, 4, 2]), 5)
    assert hits.tolist() == [[True, False, True], [False, False, True]]


class _Fixed(Recommender):
    def __init__(self, scores: torch.Tensor):
        super().__init__(scores.shape[0], scores.shape[1])
        self.scores = scores

    def forward(self):
        return self.scores, torch.eye(self.num_items)


def _reference(scores: np.ndarray, train: set, target: dict, k: int):
    """Obviously-correct per-user loop."""
    rec, ndcg, prec, ap = [], [], [], []
    for u, pos in target.items():
        if not any(uu == u for uu, _ in train):
            continue
        s = scores[u].copy()
        for uu, ii in train:
            if uu == u:
                s[ii] = -np.inf
        order = np.argsort(-s, kind="stable")[:k]
        rel = [1.0 if i in pos else 0.0 for i in order]
        h = sum(rel)
        rec.append(h / len(pos))
        prec.append(h / k)
        dcg = sum(r / math.log2(j + 2) for j, r in enumerate(rel))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(pos), k)))
        ndcg.append(dcg / idcg)
        ap.append(sum(sum(rel[: j + 1]) / (j + 1) * rel[j] for j in range(k)) / min(len(pos), k))
    return np.mean(rec), np.mean(ndcg), np.mean(prec), np.mean(ap)


@pytest.mark.parametrize("seed", [0, 1])
def test_evaluate_matches_per_user_reference(seed):
    rng = np.random.default_rng(seed)
    U, I = 37, 23  # noqa: E741  (I: the item count)
    pairs = {(u, i) for u, i in zip(rng.integers(0, U, 300), rng.integers(0, I, 300))}
    pairs = sorted(pairs)
    labels = rng.choice([0, 0, 0, 2], size=len(pairs))
    train = {p for p, x in zip(pairs, labels) if x == 0}
    test = [p for p, x in zip(pairs, labels) if x == 2]
    tr_u, tr_i = zip(*train)
    te_u, te_i = zip(*test)
    ds = Dataset("rand", U, I, Split(tr_u, tr_i), Split([], []), Split(te_u, te_i))
    scores = torch.from_numpy(rng.normal(size=(U, I)).astype(np.float32))
    target: dict[int, set] = {}
    for u, i in test:
        target.setdefault(u, set()).add(i)
    got = evaluate(_Fixed(scores), ds, "test", ks=[5, 10], batch_size=7)  # batches do not divide U
    for k in (5, 10):
        r, n, p, a = _reference(scores.numpy(), train, target, k)
        assert got[f"Recall@{k}"] == pytest.approx(r, abs=1e-9)
        assert got[f"NDCG@{k}"] == pytest.approx(n, abs=1e-9)
        assert got[f"Precision@{k}"] == pytest.approx(p, abs=1e-9)
        assert got[f"MAP@{k}"] == pytest.approx(a, abs=1e-9)


def test_training_items_masked_and_valid_masking_option():
    # user 0 trained on item 0 (highest score); valid item 1 (second); test item 2 (third)
    ds = Dataset("m", 1, 4, Split([0], [0]), Split([0], [1]), Split([0], [2]))
    scores = torch.tensor([[9.0, 8.0, 7.0, 1.0]])
    plain = evaluate(_Fixed(scores), ds, "test", ks=[1])
    masked = evaluate(_Fixed(scores), ds, "test", ks=[1], mask_valid=True)
    assert plain["Recall@1"] == 0.0  # item 1 (valid) still ranked first, MMRec behaviour
    assert masked["Recall@1"] == 1.0


def test_cold_item_metrics_only_count_cold_positives():
    from dataclasses import replace

    ds = Dataset("c", 2, 4, Split([0, 1], [0, 0]), Split([], []), Split([0, 0, 1], [1, 3, 3]))
    ds = replace(ds, cold_items=np.array([3]))
    scores = torch.tensor([[0.0, 5.0, 1.0, 2.0], [0.0, 1.0, 5.0, 2.0]])
    got = evaluate(_Fixed(scores), ds, "test", ks=[1, 2])
    # cold positives: user 0 -> {3} (rank 2), user 1 -> {3} (rank 2)
    assert got["cold/Recall@1"] == 0.0
    assert got["cold/Recall@2"] == 1.0
    # all positives: user 0 -> {1, 3}: top-1 item 1 hit -> 1/2; user 1 -> {3}: top-1 is 2 -> 0
    assert got["Recall@1"] == pytest.approx((1 / 2 + 0) / 2)


@pytest.mark.parametrize("mask_valid", [False, True])
def test_one_pass_over_splits_equals_each_split_alone(mask_valid):
    """evaluate_splits scores the union of the splits' users once; every split's metrics (and
    the cold-item metrics of test) equal the per-user reference of that split alone, whatever
    the block size, with valid items masked for test only when asked."""
    from dataclasses import replace

    rng = np.random.default_rng(3)
    U, I = 41, 29  # noqa: E741  (I: the item count)
    pairs = sorted({(u, i) for u, i in zip(rng.integers(0, U, 420), rng.integers(0, I, 420))})
    labels = rng.choice([0, 0, 0, 1, 2], size=len(pairs))
    part = {x: [p for p, lab in zip(pairs, labels) if lab == x] for x in (0, 1, 2)}
    ds = Dataset("r", U, I, *(Split(*zip(*part[x])) for x in (0, 1, 2)))
    ds = replace(ds, cold_items=np.array([2, 5, 11]))
    scores = torch.from_numpy(rng.normal(size=(U, I)).astype(np.float32))
    train = set(part[0])
    valid_mask = set(part[1]) if mask_valid else set()
    ref_targets = {
        "valid": (train, part[1]),
        "test": (train | valid_mask, part[2]),
        "cold": (train | valid_mask, [p for p in part[2] if p[1] in (2, 5, 11)]),
    }
    assert set(ds.eval_users("valid")) != set(ds.eval_users("test"))  # the union matters
    for batch_size in (5, 4096):
        got = evaluate_splits(_Fixed(scores), ds, ("valid", "test"), ks=[3, 10],
                              mask_valid=mask_valid, batch_size=batch_size)
        for name, (masked, positives) in ref_targets.items():
            target: dict[int, set] = {}
            for u, i in positives:
                target.setdefault(u, set()).add(i)
            # users without training interactions are skipped by both
            m = got["test"] if name == "cold" else got[name]
            prefix = "cold/" if name == "cold" else ""
            for k in (3, 10):
                r, n, p, a = _reference(scores.numpy(), masked, target, k)
                assert m[f"{prefix}Recall@{k}"] == pytest.approx(r, abs=1e-9)
                assert m[f"{prefix}NDCG@{k}"] == pytest.approx(n, abs=1e-9)
                assert m[f"{prefix}MAP@{k}"] == pytest.approx(a, abs=1e-9)
        alone = evaluate(_Fixed(scores), ds, "valid", ks=[3, 10], batch_size=batch_size)
        assert alone == got["valid"]


def test_auto_batch_size_bounds_the_score_block():
    assert auto_batch_size(6_700) * 6_700 <= 1 << 23
    assert auto_batch_size(10_000_000) == 16  # never fewer than 16 users
    assert auto_batch_size(100, max_users=64) == 64
