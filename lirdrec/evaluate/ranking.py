"""Full-ranking evaluation over all items, in user batches, several splits in one scoring pass."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from lirdrec.data.dataset import Dataset
from lirdrec.evaluate.metrics import METRICS, hits_from_topk, ranking_metrics

logger = logging.getLogger(__name__)

__all__ = ["evaluate", "evaluate_splits", "per_user_metrics", "DEFAULT_KS", "SCORE_BLOCK_FLOATS",
           "auto_batch_size", "topk_items"]

DEFAULT_KS = (5, 10, 20, 50)
#: Scores held at once by the evaluator: a ``(B, I)`` float32 block of at most 8 Mi floats (32 MiB).
SCORE_BLOCK_FLOATS = 1 << 23


def auto_batch_size(num_items: int, max_users: int = 4096) -> int:
    """Users per scoring block so that a ``(B, I)`` float32 block stays within
    :data:`SCORE_BLOCK_FLOATS` (at least 16, at most ``max_users``).

    >>> auto_batch_size(6_700), auto_batch_size(100_000), auto_batch_size(1_000)
    (1252, 83, 4096)
    """
    return int(max(16, min(max_users, SCORE_BLOCK_FLOATS // max(num_items, 1))))


def _rows(csr: sp.csr_matrix, users: np.ndarray) -> tuple[Tensor, Tensor]:
    """COO ``(row in batch, item)`` of ``csr[users]``."""
    sub = csr[users]
    counts = np.diff(sub.indptr)
    rows = torch.from_numpy(np.repeat(np.arange(len(users)), counts))
    return rows, torch.from_numpy(sub.indices.astype(np.int64))


def _mask_(scores: Tensor, users: np.ndarray, mask: sp.csr_matrix) -> Tensor:
    r, c = _rows(mask, users)
    scores[r, c] = -torch.inf
    return scores


def _masked_scores(model, users: np.ndarray, reps, masks: list[sp.csr_matrix]) -> Tensor:
    scores = model.score(torch.from_numpy(users), reps).float()  # (B, I)
    for mask in masks:
        _mask_(scores, users, mask)
    return scores


@torch.no_grad()
def topk_items(model, ds: Dataset, users, k: int = 20, reps=None,
               exclude_train: bool = True) -> Tensor:
    """Top-``k`` item ids ``(B, k)`` for ``users``, training items excluded."""
    was_training = model.training
    model.eval()
    reps = model.forward() if reps is None else reps
    users = np.asarray(users, dtype=np.int64)
    masks = [ds.train_csr] if exclude_train else []
    out = torch.topk(_masked_scores(model, users, reps, masks), k, dim=1).indices
    model.train(was_training)
    return out


def _process_group(distributed: bool | None) -> tuple[int, int]:
    """``(rank, world size)`` to shard over: ``(0, 1)`` unless asked (or, with ``None``, a
    :mod:`torch.distributed` group of several processes is initialised).
    """
    import torch.distributed as dist

    active = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if distributed and not active:
        raise RuntimeError("distributed=True needs an initialised torch.distributed process group "
                           "of more than one process (lirdrec.train.distributed.init_distributed)")
    if not active or distributed is False:
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


@dataclass
class _Target:
    """One set of metrics to accumulate: its positives, its users and which ranking it reads."""

    name: str
    gt: sp.csr_matrix
    users: np.ndarray  # sorted
    masked_valid: bool  # ranked with the validation items masked too


def _targets(ds: Dataset, splits: Sequence[str], mask_valid: bool) -> list[_Target]:
    out = []
    for split in splits:
        target = ds.split(split)
        gt = target.csr(ds.num_users, ds.num_items)
        masked = mask_valid and split == "test"
        out.append(_Target(split, gt, ds.eval_users(split), masked))
        if split == "test" and len(ds.cold_items):
            is_cold = np.zeros(ds.num_items, dtype=bool)
            is_cold[ds.cold_items] = True
            m = is_cold[target.items]
            cold_gt = sp.csr_matrix((np.ones(int(m.sum()), dtype=np.float32),
                                     (target.users[m], target.items[m])), shape=gt.shape)
            users = np.unique(target.users[m])
            users = users[np.diff(ds.train_csr.indptr)[users] > 0]
            out.append(_Target("cold", cold_gt, users, masked))
    return out


@torch.no_grad()
def evaluate_splits(
    model,
    ds: Dataset,
    splits: Sequence[str] = ("valid", "test"),
    ks: Sequence[int] = DEFAULT_KS,
    mask_valid: bool = False,
    reps: tuple[Tensor, Tensor] | None = None,
    batch_size: int | None = None,
    distributed: bool | None = None,
) -> dict[str, dict[str, float]]:
    r"""Full-ranking metrics of ``model`` on several splits from ONE scoring pass.

    Every item is ranked; the user's training items are masked to :math:`-\infty` (and, with
    ``mask_valid=True``, the validation items too when ranking for test; MMRec does not). Users
    with no training interaction or no interaction in a split are not evaluated on it. The
    union of the splits' users is scored once, in blocks of ``batch_size`` users; without
    ``mask_valid`` every split reads the same top-K lists (one ``topk`` per block), with it test
    gets a second ``topk`` after masking. Metrics follow :mod:`lirdrec.evaluate.metrics` at every
    K in ``ks``, averaged over each split's users. If ``ds.cold_items`` is non-empty and
    ``"test"`` is among ``splits``, the test result also holds ``cold/<metric>`` keys: the same
    metrics with only the cold items' test interactions as positives (users with at least one).

    Args:
        model: a :class:`~lirdrec.models.base.Recommender`.
        ds: the dataset.
        splits: any of ``"valid"``, ``"test"``. (default: both)
        ks: cut-offs. (default: ``(5, 10, 20, 50)``)
        mask_valid: mask validation items when ranking for test. (default: ``False``)
        reps: output of ``model.forward()`` if already computed.
        batch_size: at most this many users per scoring block, fewer when the catalogue is
            large (:func:`auto_batch_size`: a block of scores stays within 32 MiB). (default:
            ``4096``)
        distributed: shard the users across the processes of the initialised
            :mod:`torch.distributed` group (every rank must call this, with the same model
            state): each rank scores a contiguous share of the users, and the per-user metric
            values are all-reduced (each user's value comes from exactly one rank, the others
            add zeros) before the same ordered sum as in one process, so every rank returns the
            numbers one process would. ``None``: when a group of more than one process is
            initialised. (default: ``None``)

    Returns:
        ``{split: {"Recall@20": ..., "NDCG@20": ..., "Precision@20": ..., "MAP@20": ...}}``.
    """
    targets, per_user = _per_user(model, ds, splits, ks, mask_valid, reps, batch_size,
                                  distributed)
    out: dict[str, dict[str, float]] = {}
    keys = [f"{m}@{k}" for k in ks for m in METRICS]
    for t, acc in zip(targets, per_user):
        m = ({k: float(acc[k].sum()) / len(t.users) for k in keys} if len(t.users)
             else {k: float("nan") for k in keys})
        if t.name == "cold":
            out["test"].update({f"cold/{k}": v for k, v in m.items()})
        else:
            out[t.name] = m
    return out


@torch.no_grad()
def per_user_metrics(
    model,
    ds: Dataset,
    split: str = "test",
    ks: Sequence[int] = DEFAULT_KS,
    mask_valid: bool = False,
    reps: tuple[Tensor, Tensor] | None = None,
    batch_size: int | None = None,
    distributed: bool | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every evaluated user's metrics on ``split``: what paired significance tests compare.

    The same ranking as :func:`evaluate_splits` (whose numbers are the means of these), kept
    per user instead of averaged (``distributed``: sharded as there, every rank gets all users).

    Returns:
        ``(users (N,) int64 sorted, {"Recall@20": (N,) float64, ...})``.
    """
    targets, per_user = _per_user(model, ds, (split,), ks, mask_valid, reps, batch_size,
                                  distributed)
    keys = [f"{m}@{k}" for k in ks for m in METRICS]
    n = len(targets[0].users)
    return targets[0].users, {k: (per_user[0][k].numpy() if k in per_user[0]
                                  else np.zeros(n)) for k in keys}


def _per_user(model, ds: Dataset, splits: Sequence[str], ks: Sequence[int], mask_valid: bool,
              reps, batch_size: int | None, distributed: bool | None = None,
              ) -> tuple[list[_Target], list[dict[str, Tensor]]]:
    """The targets of ``splits`` and, for each, ``{metric: (users,)}`` in its sorted user order."""
    was_training = model.training
    model.eval()
    if reps is None:
        reps = model.forward()
    batch_size = auto_batch_size(ds.num_items, 4096 if batch_size is None else int(batch_size))
    kmax = min(max(ks), ds.num_items)
    targets = _targets(ds, splits, mask_valid)
    users = np.unique(np.concatenate([t.users for t in targets]))
    n_pos = [np.diff(t.gt.indptr) for t in targets]
    # per-user values, summed once at the end in user order: the same totals whatever the blocks
    keys = [f"{m}@{k}" for k in ks for m in METRICS]
    per_user = torch.zeros(len(targets), len(keys), max(len(t.users) for t in targets),
                           dtype=torch.float64)  # (T, M, max users)
    rank, world = _process_group(distributed)
    lo, hi = (len(users) * rank) // world, (len(users) * (rank + 1)) // world  # this rank's users
    valid_csr = ds.valid.csr(ds.num_users, ds.num_items) if mask_valid else None
    for start in range(lo, hi, batch_size):
        batch = users[start:min(start + batch_size, hi)]
        scores = _masked_scores(model, batch, reps, [ds.train_csr])
        # (B, Kmax), on the CPU where the positives' index tensors are (scores may be on a GPU)
        topk = {False: torch.topk(scores, kmax, dim=1).indices.cpu()}
        if any(t.masked_valid for t in targets):
            topk[True] = torch.topk(_mask_(scores, batch, valid_csr), kmax, dim=1).indices.cpu()
        del scores
        for t, n, acc in zip(targets, n_pos, per_user):  # acc (M, max users)
            sel = np.flatnonzero(np.isin(batch, t.users, assume_unique=True))
            if len(sel) == 0:
                continue
            rows, items = _rows(t.gt, batch[sel])
            hits = hits_from_topk(topk[t.masked_valid][torch.from_numpy(sel)], rows, items,
                                  ds.num_items)
            at = torch.from_numpy(np.searchsorted(t.users, batch[sel]))
            vals = ranking_metrics(hits, torch.from_numpy(n[batch[sel]]), ks)
            for j, key in enumerate(keys):
                acc[j, at] = vals[key]
    model.train(was_training)
    if world > 1:
        torch.distributed.all_reduce(per_user)  # exact: one non-zero term per user
    # fresh (T, users) tensors: their sums are those of one process, bit for bit
    return targets, [{k: acc[j, :len(t.users)].clone() for j, k in enumerate(keys)}
                     for t, acc in zip(targets, per_user)]


def evaluate(
    model,
    ds: Dataset,
    split: str = "test",
    ks: Sequence[int] = DEFAULT_KS,
    mask_valid: bool = False,
    reps: tuple[Tensor, Tensor] | None = None,
    batch_size: int | None = None,
) -> dict[str, float]:
    """Full-ranking metrics of ``model`` on one ``split`` (``"valid"`` or ``"test"``).

    :func:`evaluate_splits` for one split (see there for masking, cold items and batching).

    Returns:
        ``{"Recall@20": ..., "NDCG@20": ..., "Precision@20": ..., "MAP@20": ...}``.
    """
    return evaluate_splits(model, ds, (split,), ks, mask_valid, reps, batch_size)[split]
