"""The trainer's own progress, as one object a checkpoint saves and a resume restores."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["TrainState"]


@dataclass
class TrainState:
    """Where a fit stands after an epoch: counters, the best epoch so far and the history.

    New state is one field here: :meth:`state_dict` and :meth:`load_state_dict` follow the fields,
    so saving and restoring cannot drift apart.

    Attributes:
        epoch: last finished epoch (0 before the first).
        best_score / best_epoch: best validation score and its epoch (``-inf`` / 0 before any).
        bad_epochs: epochs since the last improvement (early stopping counts these).
        best_state / best_extra: the model's ``state_dict()`` / ``extra_state()`` at the best epoch.
        best_valid / best_test: the metrics at the best epoch.
        history: one row per finished epoch (loss, times, learning rate, validation metrics).
        train_time: seconds spent in training steps (evaluation excluded).
        global_step: optimiser steps taken.
    """

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict[str, Any] = field(default_factory=dict)
    best_extra: dict[str, Any] = field(default_factory=dict)
    best_valid: dict[str, float] = field(default_factory=dict)
    best_test: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time: float = 0.0
    global_step: int = 0

    def improve(self, epoch: int, score: float, valid: dict[str, float], test: dict[str, float],
                model) -> None:
        """Record ``epoch`` as the new best (copies the model's state)."""
        self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
        self.best_valid, self.best_test = valid, test
        self.snapshot_best(model)

    def snapshot_best(self, model) -> None:
        """Keep a copy of ``model``'s parameters and extra state as the best so far."""
        self.best_state = copy.deepcopy(model.state_dict())
        self.best_extra = copy.deepcopy(model.extra_state())

    def state_dict(self) -> dict[str, Any]:
        """Every field, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (a field it lacks keeps its default)."""
        for f in fields(self):
            if f.name in state:
                setattr(self, f.name, state[f.name])
