"""The immutable :class:`Dataset` every model, trainer and evaluator reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import numpy as np
import scipy.sparse as sp
from torch import Tensor

__all__ = ["Dataset", "Split"]


@dataclass(frozen=True)
class Split:
    """Interactions of one split as parallel int64 arrays ``users``, ``items`` of shape ``(n,)``."""

    users: np.ndarray
    items: np.ndarray

    def __post_init__(self) -> None:
        for name in ("users", "items"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.int64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def csr(self, num_users: int, num_items: int) -> sp.csr_matrix:
        """Binary user x item CSR matrix of this split (duplicates count once)."""
        mat = sp.csr_matrix(
            (np.ones(len(self), dtype=np.float32), (self.users, self.items)),
            shape=(num_users, num_items),
        )
        mat.sum_duplicates()
        mat.data[:] = 1.0
        return mat


@dataclass(frozen=True)
class Dataset:
    """A validated MMRec-format dataset.

    Attributes:
        name (str): dataset name (the ``.inter`` file stem).
        num_users (int): :math:`U`, users are ``0 .. U-1``.
        num_items (int): :math:`I`, items are ``0 .. I-1`` (rows of every feature matrix).
        train, valid, test (Split): interactions per split (x_label 0 / 1 / 2).
        features (Mapping[str, Tensor]): modality name (file stem before ``_feat.npy``) ->
            float32 tensor :math:`(I, d_m)`, read-only mapping.
        path (Path | None): the directory it was read from.
        cold_items (np.ndarray): items held out of training entirely (cold-start protocol);
            empty unless built with :func:`lirdrec.data.hold_out_items`.

    Derived (computed once, on first use): :attr:`train_csr` (``U x I`` scipy CSR of training
    items), :attr:`eval_users` per split (users with at least one training interaction and one
    interaction in that split).
    """

    name: str
    num_users: int
    num_items: int
    train: Split
    valid: Split
    test: Split
    features: Mapping[str, Tensor] = field(default_factory=dict)
    path: Path | None = None
    cold_items: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", MappingProxyType(dict(self.features)))
        object.__setattr__(self, "_cache", {})

    # ---------------------------------------------------------------- derived views
    @property
    def modalities(self) -> list[str]:
        """Modality names, in the order of :attr:`features`."""
        return list(self.features)

    @property
    def train_csr(self) -> sp.csr_matrix:
        """Binary ``U x I`` CSR of the training interactions."""
        cache = self._cache  # type: ignore[attr-defined]
        if "train_csr" not in cache:
            cache["train_csr"] = self.train.csr(self.num_users, self.num_items)
        return cache["train_csr"]

    def split(self, name: str) -> Split:
        """``"train"``, ``"valid"`` or ``"test"``."""
        if name not in ("train", "valid", "test"):
            raise KeyError(f"unknown split {name!r}; expected train, valid or test")
        return getattr(self, name)

    def eval_users(self, split: str) -> np.ndarray:
        """Users evaluated on ``split``: at least one interaction there AND one in training."""
        cache = self._cache  # type: ignore[attr-defined]
        key = f"eval_users:{split}"
        if key not in cache:
            users = np.unique(self.split(split).users)
            has_train = np.diff(self.train_csr.indptr) > 0
            cache[key] = users[has_train[users]]
        return cache[key]

    def item_degree(self) -> np.ndarray:
        """Training degree of every item, ``(I,)`` int64."""
        return np.asarray(self.train_csr.sum(axis=0)).ravel().astype(np.int64)

    def features_tensor(self, modalities: list[str] | None = None) -> dict[str, Tensor]:
        """A plain dict of the selected modalities' feature tensors."""
        names = self.modalities if modalities is None else modalities
        return {m: self.features[m] for m in names}

    def summary(self) -> dict[str, object]:
        """Counts a person checks first: users, items, interactions per split, density, shapes."""
        n_train = self.train_csr.nnz
        return {
            "name": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "density": n_train / float(self.num_users * self.num_items),
            "features": {m: tuple(t.shape) for m, t in self.features.items()},
            "cold_users_valid": int(len(np.unique(self.valid.users))
                                    - len(self.eval_users("valid"))),
            "cold_users_test": int(len(np.unique(self.test.users)) - len(self.eval_users("test"))),
            "items_not_in_train": int((self.item_degree() == 0).sum()),
            "items_without_interactions": int(self.num_items - len(np.unique(np.concatenate(
                [self.train.items, self.valid.items, self.test.items])))),
        }

    def __repr__(self) -> str:
        feats = ", ".join(f"{m}={tuple(t.shape)}" for m, t in self.features.items())
        return (
            f"Dataset({self.name!r}, users={self.num_users}, items={self.num_items}, "
            f"train={len(self.train)}, valid={len(self.valid)}, test={len(self.test)}, "
            f"features=[{feats}])"
        )
