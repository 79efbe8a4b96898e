"""Vectorised BPR sampling of (user, positive, negative) triples."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lirdrec.data.dataset import Dataset
from lirdrec.errors import ConfigError

__all__ = ["BPRSampler"]


class BPRSampler:
    r"""One epoch of shuffled training pairs with ``negatives`` uniform negatives each.

    Negatives are drawn uniformly from the items that occur in training (MMRec's pool, so held-out
    cold items are never sampled) and rejected while they are a training item of the user:
    membership is tested for the whole epoch at once with ``torch.searchsorted`` on the sorted keys
    ``user * I + item``, and only the rejected positions are redrawn, round after round.

    With ``negatives`` :math:`k > 1` every shuffled pair :math:`(u, i^+)` is repeated :math:`k`
    times in a row, each copy with its own independent negative: an epoch is :math:`k|\mathcal
    T|` triples, and a batch of :math:`B` pairs is :math:`Bk` consecutive triples, so a model's
    mean BPR over the batch is :math:`\frac1B\sum_b\frac1k\sum_{j=1}^{k}
    -\log\sigma(\hat y_{u_b i^+_b} - \hat y_{u_b i^-_{bj}})` and the steps per epoch do not
    change. :math:`k = 1` makes exactly the generator calls of a sampler without the option.

    Args:
        ds (Dataset): the dataset (its training split is used).
        generator (torch.Generator): the only source of randomness.
        negatives (int): :math:`k`, negatives per positive pair. (default: ``1``)

    Example:
        >>> import lirdrec.data.synthetic as syn
        >>> ds = syn.generate(num_users=20, num_items=30, seed=0)
        >>> s = BPRSampler(ds, torch.Generator().manual_seed(0))
        >>> u, p, n = s.epoch()
        >>> bool((u.numel() == len(ds.train)) and not s.is_positive(u, n).any())
        True
    """

    def __init__(self, ds: Dataset, generator: torch.Generator, negatives: int = 1) -> None:
        if isinstance(negatives, bool) or int(negatives) != negatives or negatives < 1:
            raise ConfigError(f"BPRSampler: negatives must be an integer >= 1, got {negatives!r}")
        self.num_negatives = int(negatives)
        csr = ds.train_csr
        self.num_items = ds.num_items
        users = np.repeat(np.arange(ds.num_users), np.diff(csr.indptr))
        self.users = torch.from_numpy(users.astype(np.int64))
        self.items = torch.from_numpy(csr.indices.astype(np.int64))
        self.keys = self.users * self.num_items + self.items  # sorted: CSR rows, sorted columns
        self.keys = torch.sort(self.keys).values
        seen = np.flatnonzero(np.diff(csr.tocsc().indptr) > 0)  # items with a training pair
        self.pool = torch.from_numpy(seen.astype(np.int64))
        full = np.diff(csr.indptr) >= len(self.pool)
        if full.any():
            raise ValueError(f"{int(full.sum())} user(s) interacted with every item: "
                             "no negative exists")
        self.generator = generator

    def __len__(self) -> int:
        return int(self.users.numel())

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        """Whether each (user, item) is a training interaction, ``(n,)`` bool."""
        q = users * self.num_items + items
        idx = torch.searchsorted(self.keys, q).clamp_max(len(self.keys) - 1)
        return self.keys[idx] == q

    def negatives(self, users: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One uniform negative per user in ``users``, drawn from ``generator`` (default: the
        sampler's own).
        """
        gen = self.generator if generator is None else generator
        neg = self.pool[torch.randint(len(self.pool), users.shape, generator=gen)]
        bad = self.is_positive(users, neg).nonzero().squeeze(1)
        while bad.numel():
            neg[bad] = self.pool[torch.randint(len(self.pool), bad.shape, generator=gen)]
            bad = bad[self.is_positive(users[bad], neg[bad])]
        return neg

    def _repeat(self, *pairs: Tensor) -> tuple[Tensor, ...]:
        """Each entry ``k`` times in a row (nothing, not even a copy, for ``k = 1``)."""
        k = self.num_negatives
        return pairs if k == 1 else tuple(x.repeat_interleave(k) for x in pairs)

    def epoch(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(users, pos_items, neg_items)``, each ``(k |train|,)``: the pairs in a fresh random
        order, each repeated ``k`` times in a row with independent negatives.
        """
        perm = torch.randperm(len(self), generator=self.generator)
        users, pos = self._repeat(self.users[perm], self.items[perm])
        return users, pos, self.negatives(users)

    def epoch_shard(
        self, batch_size: int, rank: int, world_size: int, neg_generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        r"""Rank ``rank``'s share of every global batch of one epoch (multi-process training).

        Every rank draws the same permutation from the shared generator (so the ranks agree on
        the global batches of ``batch_size`` pairs), keeps its contiguous part of each batch
        (sizes differ by at most one, :func:`numpy.array_split`'s rule) and draws negatives for
        those pairs only, from its own ``neg_generator``; with ``k`` negatives each pair is
        repeated ``k`` times in a row, as in :meth:`epoch`.

        Returns:
            ``(users, pos_items, neg_items)`` of this rank, concatenated over the batches in
            order; ``counts`` :math:`(n_b,)`: this rank's triples in each batch (``k`` times its
            pairs); ``sizes`` :math:`(n_b,)`: each global batch's triples.
        """
        perm = torch.randperm(len(self), generator=self.generator)
        n = len(self)
        starts = torch.arange(0, n, batch_size)
        sizes = torch.clamp(n - starts, max=batch_size)  # (n_b,)
        base, extra = sizes // world_size, sizes % world_size
        lo = starts + rank * base + torch.clamp(extra, max=rank)
        counts = base + (extra > rank).long()
        offsets = torch.cumsum(counts, 0) - counts
        total = int(counts.sum())
        idx = (torch.arange(total) - torch.repeat_interleave(offsets, counts)
               + torch.repeat_interleave(lo, counts))  # positions in the permutation
        users, pos = self._repeat(self.users[perm[idx]], self.items[perm[idx]])
        k = self.num_negatives
        return users, pos, self.negatives(users, neg_generator), counts * k, sizes * k
