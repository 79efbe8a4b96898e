"""The gradient-bias recorder: a trainer callback measuring where the BPR signal goes.

See :mod:`lirdrec.diagnostics.gradient_bias` for what is recorded and why; the hooks never change
a value, so training is bit-identical with and without the recorder (tested).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lirdrec.data.dataset import Dataset
from lirdrec.diagnostics.introspection import (
    GROUPS,
    checked_groups,
    feature_branch_modules,
    keep_only,
)
from lirdrec.diagnostics.popularity import popularity_buckets, predicted_touch_fraction
from lirdrec.errors import CheckpointError, ConfigError
from lirdrec.evaluate.ranking import evaluate
from lirdrec.train.trainer import Callback

logger = logging.getLogger(__name__)

__all__ = ["STEP_QUANTITIES", "GradientBiasRecorder"]

#: Per-step quantities, in the order of :meth:`GradientBiasRecorder._flush`'s matrix rows.
STEP_QUANTITIES = (
    "grad_norm",
    "grad_rms",
    "rows_nonzero",
    "row_norm_mean",
    "update_norm",
    "relative_update",
)

#: Recorder attributes holding what has been recorded (kept in trainer checkpoints).
_RECORDED = (
    "step_rows",
    "epoch_rows",
    "item_rows",
    "probe_rows",
    "item_epoch",
    "feature_in_forward",
)


class GradientBiasRecorder(Callback):
    r"""Trainer callback recording where the gradient goes (see the module docstring).

    Args:
        every (int): record every ``every``-th optimiser step (step 0 included). (default: ``1``)
        num_buckets (int): popularity buckets of :func:`popularity_buckets`. (default: ``5``)
        probe (bool): run the per-epoch ID-only / feature-only validation probe. (default: ``True``)
        item_stats (bool): per-item gradient accumulation. (default: ``True``)
        snapshot_dir (str | Path | None): keep the per-epoch parameter snapshots (needed for the
            distance to the final value) in files here instead of in memory. (default: ``None``)
        model_name (str | None): label written to the CSVs. (default: the class name)

    Attributes:
        step_rows: ``(step, epoch, group, quantity, value)`` per recorded step.
        epoch_rows: ``(epoch, group, quantity, value)`` per epoch (convergence quantities).
        item_rows: one dict per (epoch, popularity bucket).
        probe_rows: one dict per epoch: ``full``, ``id_only``, ``feature_only`` Recall@20 (NaN
            when the model has no such part) and whether each ablation touched the model.
        item_epoch (dict[str, np.ndarray]): last epoch's per-item ``id_grad``, ``feature_grad``,
            ``id_touched`` (``(I,)`` each) and ``degree``.

    Saved in trainer checkpoints (:meth:`state_dict`): a run resumed from a checkpoint records
    the same rows as an uninterrupted one. With ``snapshot_dir`` the checkpoint holds the paths
    of the snapshot files, which must still be there when the run resumes.
    """

    def __init__(
        self,
        every: int = 1,
        num_buckets: int = 5,
        probe: bool = True,
        item_stats: bool = True,
        snapshot_dir: str | Path | None = None,
        model_name: str | None = None,
    ) -> None:
        if int(every) < 1:
            raise ConfigError(f"GradientBiasRecorder: every must be >= 1, got {every!r}")
        if int(num_buckets) < 1:
            raise ConfigError(
                f"GradientBiasRecorder: num_buckets must be >= 1, got {num_buckets!r}"
            )
        self.every = int(every)
        self.num_buckets = int(num_buckets)
        self.probe = bool(probe)
        self.item_stats = bool(item_stats)
        self.snapshot_dir = None if snapshot_dir is None else Path(snapshot_dir)
        self.model_name = model_name
        self.step_rows: list[tuple[int, int, str, str, float]] = []
        self.epoch_rows: list[tuple[int, str, str, float]] = []
        self.item_rows: list[dict[str, Any]] = []
        self.probe_rows: list[dict[str, Any]] = []
        self.item_epoch: dict[str, np.ndarray] = {}
        self.bucket_info: list[dict[str, Any]] = []
        self.feature_in_forward: bool | None = None
        self.config: dict[str, Any] = {}
        self.best: tuple[int, float | None, float | None] | None = None
        self._handles: list[Any] = []

    # ------------------------------------------------------------------ setup
    def on_fit_start(self, trainer, model, ds: Dataset) -> None:
        """Partition the parameters, allocate buffers, hook the feature branch, snapshot epoch 0.

        The epoch-0 snapshot is stored when the first epoch starts, so that a resumed run (whose
        :meth:`load_state_dict` comes after this hook) does not overwrite the stored one.
        """
        self.model_name = self.model_name or type(model).__name__
        self._trainer, self._ds = trainer, ds
        self._num_items, self._num_users = model.num_items, model.num_users
        self.groups = checked_groups(model)
        self._item_tables = [
            p for p in self.groups["item_id"] if p.dim() == 2 and p.shape[0] == model.num_items
        ]
        dev = self._dev = next(model.parameters()).device
        self._layout(dev)
        self._recording = False
        self._pending: list[Tensor] = []
        self._pending_at: list[tuple[int, int]] = []
        self._epoch = 0
        degree = ds.item_degree()
        self._bucket, self.bucket_info = popularity_buckets(degree, self.num_buckets)
        self._degree = degree
        self._touch_pred = predicted_touch_fraction(degree, len(ds.train), trainer.batch_size)
        self._feat_norms: list[Tensor] = []
        self._feat_seen = False
        self._reset_items(dev)
        for mod in feature_branch_modules(model):
            self._handles.append(mod.register_forward_hook(self._forward_hook))
        self._snapshots: list[Any] = []
        self._prev_delta: dict[str, Tensor] | None = None
        if self.snapshot_dir is not None:
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self._prev = self._snapshot(model)

    def _layout(self, dev: torch.device) -> None:
        r"""Flat per-tensor view of the groups, so that a step costs a fixed few tensor ops.

        The :math:`T` parameters of the :math:`G` non-empty groups (``_active``, in
        :data:`GROUPS` order) are listed in ``_params``, each with a preallocated copy buffer in
        ``_before``; ``_group_index`` :math:`(T,)` maps a tensor to its group. A recorded step
        keeps only per-tensor numbers, a :math:`(5, T)` matrix (rows: parameter norm, gradient
        norm, table rows with a gradient, sum of their norms, update norm); :meth:`_flush` sums
        them per group once per epoch. ``_keys`` are the ``(group, quantity)`` pairs written per
        step (the table quantities only for groups with an embedding table) and ``_key_index``
        their positions in the flattened :math:`(6, G)` matrix of :data:`STEP_QUANTITIES`.
        """
        self._active = [g for g in GROUPS if self.groups[g]]
        self._params = [p for g in self._active for p in self.groups[g]]
        owner = [k for k, g in enumerate(self._active) for _ in self.groups[g]]
        self._group_index = torch.tensor(owner, dtype=torch.long)
        sizes = (self._num_users, self._num_items)
        self._is_table = [p.dim() == 2 and p.shape[0] in sizes for p in self._params]
        item_ids = {id(p) for p in self._item_tables}
        self._is_item_table = [id(p) in item_ids for p in self._params]
        self._before = [
            torch.empty_like(p, memory_format=torch.contiguous_format) for p in self._params
        ]
        self._zero = torch.zeros((), device=dev)
        numel = [sum(p.numel() for p in self.groups[g]) for g in self._active]
        self._sqrt_numel = torch.tensor(numel, dtype=torch.float64).clamp(min=1).sqrt()
        n_groups = len(self._active)
        keys: list[tuple[str, str]] = []
        for k, g in enumerate(self._active):
            has_table = any(t for t, o in zip(self._is_table, owner) if o == k)
            keys += [(g, q) for q in STEP_QUANTITIES[: 4 if has_table else 2]]
        keys += [(g, q) for g in self._active for q in STEP_QUANTITIES[4:]]
        self._keys = keys
        self._key_index = torch.tensor(
            [STEP_QUANTITIES.index(q) * n_groups + self._active.index(g) for g, q in keys],
            dtype=torch.long,
        )

    def _reset_items(self, dev: torch.device) -> None:
        i = self._num_items
        self._id_sum = torch.zeros(i, device=dev, dtype=torch.float64)
        self._feat_sum = torch.zeros(i, device=dev, dtype=torch.float64)
        self._id_touch = torch.zeros(i, device=dev, dtype=torch.float64)
        self._theta_grad_sum = 0.0
        self._item_steps = 0

    def _snapshot(self, model) -> dict[str, Tensor]:
        """Each group's parameters as one flat float32 CPU vector."""
        return {
            g: (
                torch.cat([p.detach().reshape(-1).float().cpu() for p in ps])
                if ps
                else torch.zeros(0)
            )
            for g, ps in self.groups.items()
        }

    def _store(self, epoch: int, snap: dict[str, Tensor]) -> None:
        if self.snapshot_dir is None:
            self._snapshots.append(snap)
        else:
            path = self.snapshot_dir / f"{self.model_name}-epoch{epoch:04d}.pt"
            torch.save(snap, path)
            self._snapshots.append(path)

    def _load(self, item) -> dict[str, Tensor]:
        return item if isinstance(item, dict) else torch.load(item, weights_only=True)

    # ------------------------------------------------------------------ hooks on the feature branch
    def _forward_hook(self, module, inputs, output) -> None:
        if (
            self._recording
            and self.item_stats
            and torch.is_grad_enabled()
            and isinstance(output, Tensor)
            and output.requires_grad
            and output.dim() == 2
            and output.shape[0] == self._num_items
        ):
            output.register_hook(self._feature_grad_hook)

    def _feature_grad_hook(self, grad: Tensor) -> None:
        r"""Keep each item's output-gradient norm, :math:`(I, d) \to (I,)`."""
        rows = torch.linalg.vector_norm(grad.detach(), dim=1, dtype=torch.float32)
        self._feat_norms.append(rows)
        self._feat_seen = True

    # ------------------------------------------------------------------ per step
    def on_epoch_start(self, trainer, model, epoch: int) -> None:
        if not self._snapshots:
            self._store(0, self._prev)
        self._epoch = epoch
        self._recording = trainer.global_step % self.every == 0

    def on_after_backward(self, trainer, model, step: int) -> None:
        r"""Per-tensor gradient numbers of the step; parameters copied for the update norm.

        For each tensor :math:`t`: :math:`\lVert\theta_t\rVert`, :math:`\lVert g_t\rVert` and,
        for embedding tables, the number of rows with a non-zero gradient and the sum of their
        norms (one ``_foreach_norm`` for all dense tensors, one row norm per table). Nothing is
        summed per group or turned into Python numbers here (:meth:`_flush` does, per epoch).
        Parameters without a gradient are not copied: the optimiser skips them (Adam leaves a
        parameter whose ``grad`` is ``None`` untouched), so their update is exactly zero.
        """
        if step % self.every != 0:
            self._recording = (step + 1) % self.every == 0
            return
        with torch.no_grad():
            params, n = self._params, len(self._params)
            grads = [p.grad for p in params]
            live = [i for i in range(n) if grads[i] is not None]
            if live:
                torch._foreach_copy_([self._before[i] for i in live], [params[i] for i in live])
            dense = [i for i in live if not self._is_table[i]]
            norms = torch._foreach_norm(
                [self._before[i] if grads[i] is not None else params[i] for i in range(n)]
                + [grads[i] for i in dense]
            )
            values = list(norms[:n]) + [self._zero] * (3 * n)  # theta, grad, rows, row sum
            for i, g in zip(dense, norms[n:]):
                values[n + i] = g
            item_rows = []
            for i in live:
                if self._is_table[i]:
                    rows = torch.linalg.vector_norm(grads[i], dim=1)  # (n_rows,)
                    values[n + i] = torch.linalg.vector_norm(rows)
                    values[2 * n + i] = torch.count_nonzero(rows)
                    values[3 * n + i] = rows.sum()
                    if self._is_item_table[i]:
                        item_rows.append(rows)
            self._step_values, self._live = values, live
            if self.item_stats:
                self._accumulate_items(item_rows)

    def _accumulate_items(self, item_rows: list[Tensor]) -> None:
        """Per item: ID-row gradient norm (over all item tables), touched or not, feature norm."""
        if item_rows:
            rows = item_rows[0] if len(item_rows) == 1 else torch.stack(item_rows).norm(dim=0)
            self._id_sum += rows
            self._id_touch += rows > 0
        feat = self._feat_norms
        if feat:
            self._feat_sum += feat[0] if len(feat) == 1 else torch.stack(feat).norm(dim=0)
        self._feat_norms = []
        self._item_steps += 1

    def on_step_end(self, trainer, model, step: int) -> None:
        r"""Per-tensor update norms :math:`\lVert\theta_{before} - \theta_{after}\rVert` from the
        copies; the step's :math:`(5, T)` numbers are kept as one tensor until :meth:`_flush`.
        """
        if step % self.every != 0:
            self._recording = (step + 1) % self.every == 0
            return
        with torch.no_grad():
            params, live = self._params, self._live
            update = [self._zero] * len(params)
            if live:
                bufs = [self._before[i] for i in live]
                torch._foreach_sub_(bufs, [params[i] for i in live])  # -delta, in place
                for i, u in zip(live, torch._foreach_norm(bufs)):
                    update[i] = u
            self._pending.append(torch.stack(self._step_values + update))  # (5 T,)
        self._pending_at.append((step, self._epoch))
        self._recording = (step + 1) % self.every == 0

    def _flush(self) -> None:
        r"""Turn the pending steps into :attr:`step_rows`: group sums for all steps at once.

        From the :math:`(S, 5, T)` per-tensor numbers, per group :math:`G`: norms as root sums
        of squares (:math:`\lVert g\rVert`, :math:`\lVert\theta\rVert`,
        :math:`\lVert\Delta\theta\rVert`), row counts and row-norm sums as sums; then RMS,
        mean row norm (0 when no row has a gradient) and relative update (NaN for an all-zero
        group); one ``tolist`` for all steps.
        """
        if not self._pending:
            return
        n_steps, n_groups = len(self._pending), len(self._active)
        per_tensor = torch.stack(self._pending).cpu().double().view(n_steps, 5, -1)
        per_tensor[:, [0, 1, 4]] = per_tensor[:, [0, 1, 4]].square()
        per_group = per_tensor.new_zeros(n_steps, 5, n_groups).index_add_(
            2, self._group_index, per_tensor
        )
        theta, grad, rows, row_sum, update = per_group.unbind(1)
        theta, grad, update = theta.sqrt(), grad.sqrt(), update.sqrt()
        matrix = torch.stack(
            [
                grad,
                grad / self._sqrt_numel,
                rows,
                row_sum / rows.clamp(min=1),
                update,
                update / theta,
            ],
            dim=1,
        )  # (S, 6, G), rows STEP_QUANTITIES
        if "item_feature" in self._active:
            self._theta_grad_sum += float(grad[:, self._active.index("item_feature")].sum())
        values = matrix.flatten(1)[:, self._key_index].tolist()
        for (step, epoch), row in zip(self._pending_at, values):
            self.step_rows.extend((step, epoch, g, q, x) for (g, q), x in zip(self._keys, row))
        self._pending, self._pending_at = [], []

    # ------------------------------------------------------------------ per epoch
    def on_epoch_end(self, trainer, model, epoch: int, metrics: dict[str, float]) -> None:
        """Epoch updates and their cosine, per-item buckets, and the ID/feature probe."""
        self._flush()
        snap = self._snapshot(model)
        for g in GROUPS:
            if not self.groups[g]:
                continue
            delta = snap[g] - self._prev[g]
            prev_norm = float(self._prev[g].norm())
            upd = float(delta.norm())
            self.epoch_rows.append((epoch, g, "epoch_update_norm", upd))
            self.epoch_rows.append(
                (
                    epoch,
                    g,
                    "epoch_relative_update",
                    upd / prev_norm if prev_norm > 0 else float("nan"),
                )
            )
            if self._prev_delta is not None:
                a, b = self._prev_delta[g], delta
                den = float(a.norm()) * upd
                self.epoch_rows.append(
                    (epoch, g, "update_cosine", float(a @ b) / den if den > 0 else float("nan"))
                )
        self._prev_delta = {g: snap[g] - self._prev[g] for g in GROUPS}
        self._prev = snap
        self._store(epoch, snap)
        if self.item_stats:
            self._item_epoch_rows(epoch)
        if self.probe:
            self._probe(trainer, model, epoch, metrics)

    def _item_epoch_rows(self, epoch: int) -> None:
        n = max(self._item_steps, 1)
        per_item = {
            "id_grad": (self._id_sum / n).cpu().numpy(),
            "feature_grad": (self._feat_sum / n).cpu().numpy(),
            "id_touched": (self._id_touch / n).cpu().numpy(),
            "id_touched_predicted": self._touch_pred,
        }
        theta_grad = self._theta_grad_sum / n if self.groups["item_feature"] else float("nan")
        has_id, has_feat = bool(self._item_tables), self._feat_seen
        k = len(self.bucket_info) + 1
        counts = np.bincount(self._bucket, minlength=k).astype(np.float64)
        sums = {q: np.bincount(self._bucket, weights=v, minlength=k) for q, v in per_item.items()}
        for info in self.bucket_info:
            b = info["bucket"]
            c = counts[b] if counts[b] > 0 else np.nan
            row = {"model": self.model_name, "epoch": epoch, **info}
            row["id_grad"] = sums["id_grad"][b] / c if has_id else np.nan
            row["feature_grad"] = sums["feature_grad"][b] / c if has_feat else np.nan
            row["id_touched"] = sums["id_touched"][b] / c if has_id else np.nan
            row["id_touched_predicted"] = sums["id_touched_predicted"][b] / c
            row["feature_id_ratio"] = (
                row["feature_grad"] / row["id_grad"]
                if has_id and has_feat and row["id_grad"] > 0
                else np.nan
            )
            row["theta_grad"] = theta_grad
            row["theta_row_ratio"] = (
                theta_grad / row["id_grad"] if has_id and row["id_grad"] > 0 else np.nan
            )
            self.item_rows.append(row)
        self.item_epoch = {**per_item, "degree": self._degree, "theta_grad": np.array(theta_grad)}
        self._reset_items(self._id_sum.device)

    def _probe(self, trainer, model, epoch: int, metrics: dict[str, float]) -> None:
        row: dict[str, Any] = {
            "model": self.model_name,
            "epoch": epoch,
            "full": float(metrics.get("Recall@20", float("nan"))),
        }
        k = min(20, self._ds.num_items)  # Recall@20 unless the catalogue is tiny
        kw = {"ks": (k,), "batch_size": getattr(trainer, "eval_batch_size", 4096)}
        with keep_only(model, "id") as touched_id:
            rec = evaluate(model, self._ds, "valid", **kw)[f"Recall@{k}"]
        self.feature_in_forward = bool(touched_id)
        has_id = bool(self._item_tables)
        # "ID only" needs an ID part and a feature part to remove; "feature only" the reverse
        row["id_only"] = rec if touched_id and has_id else float("nan")
        with keep_only(model, "feature") as touched_feat:
            rec = evaluate(model, self._ds, "valid", **kw)[f"Recall@{k}"]
        row["feature_only"] = rec if touched_feat and touched_id else float("nan")
        row["feature_in_forward"] = bool(touched_id)
        row["has_item_id"] = has_id
        self.probe_rows.append(row)
        logger.debug(
            "probe epoch %d: full %.4f, id_only %.4f, feature_only %.4f",
            epoch,
            row["full"],
            row["id_only"],
            row["feature_only"],
        )

    def on_fit_end(self, trainer, model, result) -> None:
        """Distances of every epoch's snapshot to the final (last-epoch) value; remove hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._flush()
        self._before = []
        if len(self._snapshots) < 2:
            return
        final = self._load(self._snapshots[-1])
        for epoch, item in enumerate(self._snapshots):
            snap = self._load(item)
            for g in GROUPS:
                if not self.groups[g]:
                    continue
                fin = float(final[g].norm())
                dist = float((snap[g] - final[g]).norm())
                self.epoch_rows.append((epoch, g, "dist_to_final", dist))
                self.epoch_rows.append(
                    (epoch, g, "rel_dist_to_final", dist / fin if fin > 0 else float("nan"))
                )
        for item in self._snapshots:
            if not isinstance(item, dict):
                Path(item).unlink(missing_ok=True)
        self._snapshots = []

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything recorded so far and what the next epoch builds on, for trainer checkpoints.

        The rows, the last epoch's per-item arrays, the previous snapshot and epoch update (for
        the next epoch's update and cosine), every epoch's snapshot (tensors, or file paths with
        ``snapshot_dir``) and the per-item accumulators (empty at an epoch's end, where the
        trainer checkpoints).
        """
        self._flush()
        return {
            "rows": {name: getattr(self, name) for name in _RECORDED},
            "feature_seen": self._feat_seen,
            "prev": self._prev,
            "prev_delta": self._prev_delta,
            "snapshots": [s if isinstance(s, dict) else str(s) for s in self._snapshots],
            "items": {
                "id_sum": self._id_sum.cpu(),
                "feat_sum": self._feat_sum.cpu(),
                "id_touch": self._id_touch.cpu(),
                "theta_grad_sum": self._theta_grad_sum,
                "item_steps": self._item_steps,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (called by the trainer after :meth:`on_fit_start`).

        Raises:
            CheckpointError: a snapshot file named in ``state`` no longer exists.
        """
        missing = [s for s in state["snapshots"] if isinstance(s, str) and not Path(s).is_file()]
        if missing:
            raise CheckpointError(
                f"GradientBiasRecorder: epoch snapshot {missing[0]} of the interrupted run is "
                "gone; resume with its snapshot_dir intact or start a new run"
            )
        for name in _RECORDED:
            value = state["rows"][name]
            setattr(self, name, list(value) if isinstance(value, list) else value)
        self._feat_seen = state["feature_seen"]
        self._prev, self._prev_delta = state["prev"], state["prev_delta"]
        self._snapshots = [s if isinstance(s, dict) else Path(s) for s in state["snapshots"]]
        items = state["items"]
        self._id_sum = items["id_sum"].to(self._dev)
        self._feat_sum = items["feat_sum"].to(self._dev)
        self._id_touch = items["id_touch"].to(self._dev)
        self._theta_grad_sum, self._item_steps = items["theta_grad_sum"], items["item_steps"]
