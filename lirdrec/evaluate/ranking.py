"""Full-ranking evaluation over all items, in user batches."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from lirdrec.data.dataset import Dataset
from lirdrec.evaluate.metrics import METRICS, hits_from_topk, ranking_metrics

logger = logging.getLogger(__name__)

__all__ = ["evaluate", "DEFAULT_KS", "topk_items"]

DEFAULT_KS = (5, 10, 20, 50)


def _rows(csr: sp.csr_matrix, users: np.ndarray) -> tuple[Tensor, Tensor]:
    """COO ``(row in batch, item)`` of ``csr[users]``."""
    sub = csr[users]
    counts = np.diff(sub.indptr)
    rows = torch.from_numpy(np.repeat(np.arange(len(users)), counts))
    return rows, torch.from_numpy(sub.indices.astype(np.int64))


def _masked_scores(model, ds: Dataset, users: np.ndarray, reps, masks: list[sp.csr_matrix]) -> Tensor:
    scores = model.score(torch.from_numpy(users), reps).float()  # (B, I)
    for mask in masks:
        r, c = _rows(mask, users)
        scores[r, c] = -torch.inf
    return scores


@torch.no_grad()
def topk_items(model, ds: Dataset, users, k: int = 20, reps=None, exclude_train: bool = True) -> Tensor:
    """Top-``k`` item ids ``(B, k)`` for ``users``, training items excluded."""
    was_training = model.training
    model.eval()
    reps = model.forward() if reps is None else reps
    users = np.asarray(users, dtype=np.int64)
    masks = [ds.train_csr] if exclude_train else []
    out = torch.topk(_masked_scores(model, ds, users, reps, masks), k, dim=1).indices
    model.train(was_training)
    return out


@torch.no_grad()
def evaluate(
    model,
    ds: Dataset,
    split: str = "test",
    ks: Sequence[int] = DEFAULT_KS,
    mask_valid: bool = False,
    reps: tuple[Tensor, Tensor] | None = None,
    batch_size: int = 4096,
) -> dict[str, float]:
    """Full-ranking metrics of ``model`` on ``split``, averaged over evaluated users.

    Every item is ranked; the user's training items are masked to :math:`-\\infty` (and, with
    ``mask_valid=True`` on the test split, the validation items too; MMRec does not). Users with
    no training interaction or no interaction in ``split`` are not evaluated. Metrics follow
    :mod:`lirdrec.evaluate.metrics` at every K in ``ks``. If ``ds.cold_items`` is non-empty and
    ``split == "test"``, ``cold/<metric>`` keys give the same metrics with only the cold items'
    test interactions as positives (users with at least one).

    Args:
        model: a :class:`~lirdrec.models.base.Recommender`.
        ds: the dataset.
        split: ``"valid"`` or ``"test"``.
        ks: cut-offs. (default: ``(5, 10, 20, 50)``)
        mask_valid: mask validation items when ranking for test. (default: ``False``)
        reps: output of ``model.forward()`` if already computed.
        batch_size: users per scoring batch. (default: ``4096``)

    Returns:
        ``{"Recall@20": ..., "NDCG@20": ..., "Precision@20": ..., "MAP@20": ..., ...}``.
    """
    was_training = model.training
    model.eval()
    if reps is None:
        reps = model.forward()
    target = ds.split(split)
    gt = target.csr(ds.num_users, ds.num_items)
    masks = [ds.train_csr]
    if mask_valid and split == "test":
        masks.append(ds.valid.csr(ds.num_users, ds.num_items))
    kmax = min(max(ks), ds.num_items)
    result = _accumulate(model, ds, ds.eval_users(split), gt, masks, reps, ks, kmax, batch_size)
    if split == "test" and len(ds.cold_items):
        is_cold = np.zeros(ds.num_items, dtype=bool)
        is_cold[ds.cold_items] = True
        m = is_cold[target.items]
        cold_gt = sp.csr_matrix((np.ones(int(m.sum()), dtype=np.float32),
                                 (target.users[m], target.items[m])), shape=gt.shape)
        users = np.unique(target.users[m])
        users = users[np.diff(ds.train_csr.indptr)[users] > 0]
        cold = _accumulate(model, ds, users, cold_gt, masks, reps, ks, kmax, batch_size)
        result.update({f"cold/{k}": v for k, v in cold.items()})
    model.train(was_training)
    return result


def _accumulate(model, ds, users, gt, masks, reps, ks, kmax, batch_size) -> dict[str, float]:
    sums = {f"{m}@{k}": 0.0 for k in ks for m in METRICS}
    if len(users) == 0:
        return {k: float("nan") for k in sums}
    n_pos_all = np.diff(gt.indptr)
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        scores = _masked_scores(model, ds, batch, reps, masks)
        topk = torch.topk(scores, kmax, dim=1).indices  # (B, Kmax)
        rows, items = _rows(gt, batch)
        hits = hits_from_topk(topk, rows, items, ds.num_items)
        per_user = ranking_metrics(hits, torch.from_numpy(n_pos_all[batch]), ks)
        for key, val in per_user.items():
            sums[key] += float(val.sum())
    return {k: v / len(users) for k, v in sums.items()}
