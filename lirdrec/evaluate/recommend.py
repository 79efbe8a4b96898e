"""Using a trained model: top-K items per user and item-to-item neighbour lists, batched and,
in a :mod:`torch.distributed` run, sharded across the processes like evaluation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from lirdrec.data.dataset import Dataset
from lirdrec.errors import ConfigError
from lirdrec.evaluate.ranking import _mask_, _process_group, auto_batch_size

__all__ = ["recommend", "similar_items", "unscorable_items"]


def unscorable_items(model, ds: Dataset, include_cold: bool | None = None) -> np.ndarray:
    """Items never ranked: those without a training interaction, unless the model scores them
    from their features (``model.scores_cold_items``) or ``include_cold=True`` says to rank them
    anyway; ``include_cold=False`` always leaves them out.
    """
    if include_cold is None:
        include_cold = bool(getattr(model, "scores_cold_items", False))
    return np.empty(0, np.int64) if include_cold else np.flatnonzero(ds.item_degree() == 0)


def _check(ids: np.ndarray, n: int, what: str) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    bad = (ids < 0) | (ids >= n)
    if bad.any():
        raise ConfigError(f"{what} ids must be in [0, {n}); found {ids[bad][:5].tolist()}"
                          f"{' ...' if bad.sum() > 5 else ''}")
    return ids


def _gather_rows(local: Tensor, n_total: int, world: int) -> Tensor:
    """Rows of every rank's contiguous share, concatenated in rank order (``local`` on one)."""
    if world == 1:
        return local
    import torch.distributed as dist

    shares = [(n_total * (r + 1)) // world - (n_total * r) // world for r in range(world)]
    width = max(shares)
    pad = local.new_zeros((width,) + tuple(local.shape[1:]))
    pad[:local.shape[0]] = local
    out = [torch.empty_like(pad) for _ in range(world)]
    dist.all_gather(out, pad)
    return torch.cat([o[:s] for o, s in zip(out, shares)])


def _topk_blocks(score_block, rows: np.ndarray, k: int, num_items: int, batch_size: int,
                 distributed: bool | None) -> tuple[Tensor, Tensor]:
    rank, world = _process_group(distributed)
    lo, hi = (len(rows) * rank) // world, (len(rows) * (rank + 1)) // world
    k = min(k, num_items)
    idx, val = [torch.empty(0, k, dtype=torch.long)], [torch.empty(0, k)]
    for start in range(lo, hi, batch_size):
        scores = score_block(rows[start:min(start + batch_size, hi)])  # (B, I), masked
        top = torch.topk(scores, k, dim=1)
        idx.append(top.indices.cpu())
        val.append(top.values.float().cpu())
    return (_gather_rows(torch.cat(idx), len(rows), world),
            _gather_rows(torch.cat(val), len(rows), world))


@torch.no_grad()
def recommend(
    model,
    ds: Dataset,
    users: Sequence[int] | np.ndarray | None = None,
    k: int = 20,
    exclude_train: bool = True,
    include_cold: bool | None = None,
    batch_size: int | None = None,
    distributed: bool | None = None,
) -> tuple[np.ndarray, Tensor, Tensor]:
    r"""Top-``k`` items for each user, by ``model.score``.

    The user's training items are masked (``exclude_train``); items without a training
    interaction are ranked when the model can score them (:func:`unscorable_items`). Users are
    scored in blocks (a block of scores stays within 32 MiB, :func:`auto_batch_size`); in a
    multi-process run every rank scores a contiguous share and all ranks receive every row.
    A position with nothing left to recommend (the user trained on every other item) has
    score :math:`-\infty`.

    Args:
        model: a trained :class:`~lirdrec.models.base.Recommender`.
        ds: the dataset it was trained on.
        users: user ids. (default: every user)
        k: list length (at most the number of items). (default: ``20``)
        exclude_train: mask each user's training items. (default: ``True``)
        include_cold: rank items without training interactions: ``None`` = when the model
            scores them from features (``model.scores_cold_items``).
        batch_size: at most this many users per block. (default: ``4096``)
        distributed: shard across an initialised process group (``None``: when one is).

    Returns:
        ``(users (B,), items (B, k) int64, scores (B, k) float32)``, best first.
    """
    users = (np.arange(ds.num_users, dtype=np.int64) if users is None
             else _check(users, ds.num_users, "user"))
    was_training = model.training
    model.eval()
    reps = model.forward()
    drop = torch.from_numpy(unscorable_items(model, ds, include_cold))

    def block(batch: np.ndarray) -> Tensor:
        scores = model.score(torch.from_numpy(batch), reps).float()  # (B, I)
        if exclude_train:
            _mask_(scores, batch, ds.train_csr)
        scores[:, drop.to(scores.device)] = -torch.inf
        return scores

    bs = auto_batch_size(ds.num_items, 4096 if batch_size is None else int(batch_size))
    items, scores = _topk_blocks(block, users, k, ds.num_items, bs, distributed)
    model.train(was_training)
    return users, items, scores


@torch.no_grad()
def similar_items(
    model,
    ds: Dataset,
    items: Sequence[int] | np.ndarray | None = None,
    k: int = 20,
    include_cold: bool | None = None,
    batch_size: int | None = None,
    distributed: bool | None = None,
) -> tuple[np.ndarray, Tensor, Tensor]:
    r"""The ``k`` items most similar to each item: cosine similarity of the item vectors the
    model scores with (the second output of ``model.forward()``),

    .. math::
        s_{ij} = \frac{\mathbf{e}_i^\top\mathbf{e}_j}
                      {\lVert\mathbf{e}_i\rVert\,\lVert\mathbf{e}_j\rVert},

    the item itself excluded; items without a training interaction are neighbours when the model
    can score them (:func:`unscorable_items`; a query item may always be one). Batched and
    sharded as :func:`recommend`.

    Raises:
        ConfigError: the model has no item vectors (``model.item_vectors`` is false: Pop).

    Returns:
        ``(items (n,), neighbours (n, k) int64, similarities (n, k) float32)``, best first.
    """
    if not getattr(model, "item_vectors", True):
        raise ConfigError(f"{type(model).__name__} has no item vectors to compare; "
                          "similar-items needs a model with item representations")
    items = (np.arange(ds.num_items, dtype=np.int64) if items is None
             else _check(items, ds.num_items, "item"))
    was_training = model.training
    model.eval()
    vec = torch.nn.functional.normalize(model.forward()[1].float(), dim=1)  # (I, d')
    drop = torch.from_numpy(unscorable_items(model, ds, include_cold)).to(vec.device)

    def block(batch: np.ndarray) -> Tensor:
        q = torch.from_numpy(batch).to(vec.device)
        sims = vec[q] @ vec.t()  # (B, I)
        sims[:, drop] = -torch.inf
        sims[torch.arange(len(batch), device=vec.device), q] = -torch.inf  # not itself
        return sims

    bs = auto_batch_size(ds.num_items, 4096 if batch_size is None else int(batch_size))
    neighbours, sims = _topk_blocks(block, items, min(k, ds.num_items - 1), ds.num_items, bs,
                                    distributed)
    model.train(was_training)
    return items, neighbours, sims
