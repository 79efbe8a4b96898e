r"""Gradient-bias diagnostic: where does the BPR training signal go, ID rows or feature parameters?

LIRDRec's motivation (``../shared/spec/LIRDRec.md`` section 1, derivation in
``docs/gradient_bias.md``): when an item is learned as :math:`\mathbf{e}_i + f_\theta(\mathbf{x}_i)`,
the shared feature parameters :math:`\theta` receive gradient from every item of every batch,
while the ID row :math:`\mathbf{e}_i` receives gradient only when item :math:`i` is sampled. So
:math:`\theta` converges and the ID table stays under-trained. :class:`GradientBiasRecorder` is a
trainer :class:`~lirdrec.train.trainer.Callback` that measures this on any model exposing
:meth:`~lirdrec.models.base.Recommender.parameter_groups`:

- **per step** (every ``every``-th), per group ``item_id``, ``item_feature``, ``user``, ``other``:
  ``grad_norm`` :math:`\lVert g\rVert_2`, ``grad_rms`` :math:`\lVert g\rVert_2/\sqrt{n}`; for
  embedding tables (2-D parameters with :math:`U` or :math:`I` rows) ``rows_nonzero`` and
  ``row_norm_mean`` (mean row norm over rows with a non-zero gradient); the optimiser's actual
  ``update_norm`` :math:`\lVert\Delta\theta\rVert` and ``relative_update``
  :math:`\lVert\Delta\theta\rVert/\lVert\theta\rVert` (parameters copied into preallocated
  buffers before the step, differenced after it);
- **per item and epoch**: the per-step gradient norm reaching the item's ID row(s) and the one
  reaching its feature-derived representation (the output rows of the model's feature branch),
  averaged over the epoch's recorded steps, plus the fraction of steps in which the ID row got a
  non-zero gradient; reported by training-degree bucket (:func:`popularity_buckets`);
- **per epoch**: each group's epoch update (``epoch_update_norm``, ``epoch_relative_update``),
  the cosine between consecutive epoch updates (``update_cosine``) and, at the end, the distance
  of every epoch's snapshot to the final value (``dist_to_final``, ``rel_dist_to_final``);
- **per epoch probe**: validation Recall@20 of the full model, with the feature branch's output
  zeroed (``id_only``) and with the item ID tables zeroed (``feature_only``) (:func:`keep_only`).

The feature branch is found through an optional class attribute ``feature_branch``: a tuple of
submodule names whose forward output is an :math:`(I, \cdot)` item representation computed from
the features (a ``ModuleList``/``ModuleDict`` stands for each of its children), e.g.
``feature_branch = ("item_linear",)`` in VBPR. A forward hook on those modules registers a tensor
hook on their output during recorded training steps; neither hook changes any value, so training
is bit-identical with and without the recorder (tested).

The analysis script (:func:`run_gradient_bias`; ``lirdrec gradient-bias`` or
``python -m lirdrec.diagnostics.gradient_bias``) trains several models with the recorder and
writes ``grad_bias.csv``, ``item_grad_by_popularity.csv``, ``probe.csv``, ``summary.md`` and the
figures of :mod:`lirdrec.diagnostics.plots`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lirdrec.data.dataset import Dataset
from lirdrec.errors import CheckpointError, ConfigError
from lirdrec.evaluate.ranking import evaluate
from lirdrec.train.trainer import Callback
from lirdrec.utils.io import atomic_write

logger = logging.getLogger(__name__)

__all__ = [
    "GROUPS",
    "MODEL_ALIASES",
    "GradientBiasRecorder",
    "feature_branch_modules",
    "keep_only",
    "load_recorded",
    "popularity_buckets",
    "predicted_touch_fraction",
    "resolve_model_names",
    "run_gradient_bias",
    "summarize",
    "write_outputs",
    "write_summary",
]

#: The parameter groups of :meth:`~lirdrec.models.base.Recommender.parameter_groups`.
GROUPS = ("item_id", "item_feature", "user", "other")

#: Script names that are a registered model with fixed arguments.
MODEL_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "lirdrec-id": ("lirdrec", {"item_id": "add"})
}

#: What the probe's two ablations mean for each script model (written into summary.md).
PROBE_NOTES = {
    "vbpr": "item = [e_i ‖ W x_i + b]: 'ID only' zeroes the feature half, 'feature only' the ID half.",
    "lirdrec-id": "each channel is h_c(x_i) + e_i before normalisation: 'ID only' zeroes the encoder "
    "outputs, 'feature only' the ID table.",
    "lattice": "features only build the learned item-item graph that propagates the ID embeddings: "
    "'ID only' zeroes the projected features (the frozen raw-feature kNN graph stays); "
    "'feature only' zeroes the ID table, which also removes what the graph propagates, "
    "so what is left is user-graph propagation, not a feature model.",
    "freedom": "features do not enter the scored item representation (they shape the frozen kNN graph "
    "and an auxiliary BPR term): no ID/feature probe.",
    "bm3": "features do not enter the scored item representation (they enter an alignment loss "
    "only): no ID/feature probe.",
    "lirdrec": "no item ID table: the full model is already feature-only.",
}

#: Script models whose item is literally "ID embedding + feature encoder output".
DIRECT_MODELS = ("vbpr", "lirdrec-id")

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

#: Threshold of the "converged" epoch in the summary (mean per-step relative update).
CONVERGED_BELOW = 1e-3


# ----------------------------------------------------------------------------- model introspection
def feature_branch_modules(model: nn.Module) -> list[nn.Module]:
    """Modules named by ``model.feature_branch`` (containers expanded to their children).

    Returns an empty list for a model without the attribute (no feature branch to observe).

    Raises:
        ConfigError: a name that is not a submodule of ``model``.
    """
    mods: list[nn.Module] = []
    for name in getattr(model, "feature_branch", ()):
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            raise ConfigError(
                f"{type(model).__name__}: feature_branch names {name!r}, which is not a submodule"
            ) from None
        if isinstance(mod, (nn.ModuleList, nn.ModuleDict)):
            mods.extend(mod.children())
        else:
            mods.append(mod)
    return mods


def _checked_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """``model.parameter_groups()``, checked to be a partition of the trainable parameters."""
    groups = model.parameter_groups()
    missing = [g for g in GROUPS if g not in groups]
    if missing:
        raise ConfigError(f"{type(model).__name__}.parameter_groups() lacks {missing}")
    seen: dict[int, str] = {}
    for g in GROUPS:
        for p in groups[g]:
            if id(p) in seen:
                raise ConfigError(
                    f"{type(model).__name__}.parameter_groups(): a parameter of shape "
                    f"{tuple(p.shape)} is in both {seen[id(p)]!r} and {g!r}"
                )
            seen[id(p)] = g
    extra = [tuple(p.shape) for p in model.parameters() if p.requires_grad and id(p) not in seen]
    if extra:
        raise ConfigError(
            f"{type(model).__name__}.parameter_groups() misses parameters of shapes {extra}"
        )
    return {g: [p for p in groups[g] if p.requires_grad] for g in GROUPS}


def _item_id_tables(model: nn.Module) -> list[nn.Parameter]:
    """Item ID tables: parameters of the ``item_id`` group with ``num_items`` rows."""
    return [
        p
        for p in model.parameter_groups()["item_id"]
        if p.dim() == 2 and p.shape[0] == model.num_items
    ]


@contextlib.contextmanager
def keep_only(model: nn.Module, part: str) -> Iterator[bool]:
    """Temporarily keep only one part of the item representation.

    ``part="id"`` zeroes the output of every feature-branch module (a forward hook replacing it
    by zeros); ``part="feature"`` zeroes the item ID tables (saved and copied back bit-exactly on
    exit). What is zeroed is the input of the rest of the model, so graph propagation, fusion and
    normalisation run as usual on the remaining part.

    Yields:
        whether the ablation touched anything: ``False`` if the model has no such part (no ID
        table, no feature branch) or, for ``"id"``, if no feature-branch module ran inside the
        block (the features do not enter the scored representation, e.g. FREEDOM and BM3).
    """
    if part == "feature":
        tables = _item_id_tables(model)
        saved = [p.detach().clone() for p in tables]
        try:
            with torch.no_grad():
                for p in tables:
                    p.zero_()
            yield bool(tables)
        finally:
            with torch.no_grad():
                for p, s in zip(tables, saved):
                    p.copy_(s)
    elif part == "id":
        calls = [0]

        def zero(module, inputs, output):
            calls[0] += 1
            return torch.zeros_like(output)

        handles = [m.register_forward_hook(zero) for m in feature_branch_modules(model)]
        flag = _Flag()
        try:
            yield flag
        finally:
            for h in handles:
                h.remove()
            flag.value = calls[0] > 0
    else:
        raise ConfigError(f"keep_only: part must be 'id' or 'feature', got {part!r}")


class _Flag:
    """Truth value filled in when a :func:`keep_only` block exits."""

    value: bool | None = None

    def __bool__(self) -> bool:
        return bool(self.value)


def popularity_buckets(
    degree: np.ndarray, num_buckets: int = 5
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Items grouped by training degree: equal-count quantile buckets of the items seen in training.

    Items are sorted by degree (ties by id) and cut into ``num_buckets`` consecutive groups of
    (almost) equal size; bucket 1 holds the least popular ("tail"), bucket ``num_buckets`` the most
    popular ("head"). Items with degree 0 get bucket 0 (``"unseen"``) if there are any.

    Returns:
        ``(bucket (I,) int64, info)`` where ``info[b]`` has ``bucket``, ``label``, ``degree_min``,
        ``degree_max``, ``items``.

    >>> b, info = popularity_buckets(np.array([0, 5, 1, 2, 9]), 2)
    >>> b.tolist(), [x["label"] for x in info]
    ([0, 2, 1, 1, 2], ['unseen', 'Q1 (tail)', 'Q2 (head)'])
    """
    degree = np.asarray(degree, dtype=np.int64)
    seen = np.flatnonzero(degree > 0)
    order = seen[np.lexsort((seen, degree[seen]))]
    n = len(order)
    k = max(1, min(int(num_buckets), n)) if n else 1
    bucket = np.zeros(len(degree), dtype=np.int64)
    bucket[order] = np.arange(n) * k // max(n, 1) + 1
    info = []
    for b in range(0 if (degree == 0).any() else 1, k + 1):
        members = degree[bucket == b]
        if b == 0:
            label = "unseen"
        else:
            label = f"Q{b}" + (" (tail)" if b == 1 else " (head)" if b == k else "")
        info.append(
            {
                "bucket": b,
                "label": label,
                "degree_min": int(members.min()) if len(members) else 0,
                "degree_max": int(members.max()) if len(members) else 0,
                "items": len(members),
            }
        )
    return bucket, info


def predicted_touch_fraction(degree: np.ndarray, num_pairs: int, batch_size: int) -> np.ndarray:
    r"""Expected fraction of an epoch's steps whose batch contains item :math:`i` (``docs/gradient_bias.md``).

    A triple holds :math:`i` as the positive with probability :math:`d_i/N` and as the negative
    with :math:`1/I_+` (:class:`~lirdrec.train.sampler.BPRSampler` draws negatives uniformly from
    the :math:`I_+` items seen in training). With :math:`\pi_i = d_i/N + [d_i>0]/I_+`, a batch of
    :math:`b` triples touches the ID row with probability :math:`1-(1-\pi_i)^b`; the result is
    averaged over the epoch's :math:`\lfloor N/B\rfloor` full batches and its last partial one.
    This is the prediction for a direct lookup (VBPR, MF); models that propagate over a graph or
    regularise every item touch every row every step.

    >>> predicted_touch_fraction(np.array([0, 1, 3]), 4, 1).round(4).tolist()
    [0.0, 0.75, 1.0]
    >>> predicted_touch_fraction(np.array([0, 1, 3]), 4, 3).round(4).tolist()  # (1 - 0.25**3 + 0.75) / 2
    [0.0, 0.8672, 1.0]
    """
    degree = np.asarray(degree, dtype=np.float64)
    seen = degree > 0
    pi = np.clip(degree / max(num_pairs, 1) + seen / max(int(seen.sum()), 1), 0.0, 1.0)
    full, last = divmod(int(num_pairs), int(batch_size))
    sizes = [int(batch_size)] * full + ([last] if last else [])
    if not sizes:
        return np.zeros_like(pi)
    return np.mean([1.0 - (1.0 - pi) ** b for b in sizes], axis=0)


# ----------------------------------------------------------------------------- the recorder
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
        self.groups = _checked_groups(model)
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
        """Keep each item's output-gradient norm, :math:`(I, d) \\to (I,)`."""
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
        copies; the step's :math:`(5, T)` numbers are kept as one tensor until :meth:`_flush`."""
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


# ----------------------------------------------------------------------------- outputs
def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in r])
    with atomic_write(path, "w") as fh:
        fh.write(buf.getvalue())


def write_outputs(
    recorders: Mapping[str, GradientBiasRecorder], out_dir: str | Path
) -> dict[str, Path]:
    """Write ``grad_bias.csv``, ``item_grad_by_popularity.csv`` and ``probe.csv``.

    ``grad_bias.csv`` is long: ``model, step, epoch, group, quantity, value``; per-epoch
    quantities (``epoch_*``, ``update_cosine``, ``*dist_to_final``) have an empty ``step``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[Any, ...]] = []
    for name, rec in recorders.items():
        rows += [(name, s, e, g, q, v) for s, e, g, q, v in rec.step_rows]
        rows += [(name, None, e, g, q, v) for e, g, q, v in rec.epoch_rows]
    paths = {
        "grad_bias": out / "grad_bias.csv",
        "items": out / "item_grad_by_popularity.csv",
        "probe": out / "probe.csv",
    }
    _write_csv(paths["grad_bias"], ["model", "step", "epoch", "group", "quantity", "value"], rows)
    item_cols = [
        "model",
        "epoch",
        "bucket",
        "label",
        "degree_min",
        "degree_max",
        "items",
        "id_grad",
        "feature_grad",
        "feature_id_ratio",
        "id_touched",
        "id_touched_predicted",
        "theta_grad",
        "theta_row_ratio",
    ]
    _write_csv(
        paths["items"],
        item_cols,
        [[r[c] for c in item_cols] for rec in recorders.values() for r in rec.item_rows],
    )
    probe_cols = [
        "model",
        "epoch",
        "full",
        "id_only",
        "feature_only",
        "feature_in_forward",
        "has_item_id",
    ]
    _write_csv(
        paths["probe"],
        probe_cols,
        [[r[c] for c in probe_cols] for rec in recorders.values() for r in rec.probe_rows],
    )
    return paths


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}" if abs(x) < 1e-2 or abs(x) >= 1e3 else f"{x:.{digits}f}"


def model_statistics(
    rec: GradientBiasRecorder, threshold: float = CONVERGED_BELOW
) -> dict[str, Any]:
    """Per-epoch means and the numbers the summary's verdict rests on.

    Returns a dict with ``epochs`` (sorted), ``per_epoch[epoch]`` (``ratio_norm``, ``ratio_rms``:
    mean over the epoch's recorded steps of feature/ID gradient norm and RMS; ``rel_update[g]``:
    mean per-step relative update), ``converged[g]`` (first epoch whose mean per-step relative
    update is below ``threshold``, or ``None``), ``mean_ratio_norm``, ``mean_ratio_rms`` (over all
    recorded steps), ``late_ratio_norm`` (over the second half of the epochs), ``probe`` (last
    epoch's row), ``best_probe`` (best of each probe column), ``tail_head`` (last epoch's tail
    and head bucket rows), ``rel_dist_mid`` (each group's relative distance to the final value
    at the middle epoch).
    """
    import pandas as pd

    df = pd.DataFrame(rec.step_rows, columns=["step", "epoch", "group", "quantity", "value"])
    wide = df.pivot_table(index=["step", "epoch"], columns=["group", "quantity"], values="value")
    out: dict[str, Any] = {"epochs": sorted(df["epoch"].unique().tolist()) if len(df) else []}
    has = {g: bool(rec.groups[g]) for g in GROUPS}
    ratio_norm = ratio_rms = None
    if has["item_id"] and has["item_feature"]:
        idn = wide[("item_id", "grad_norm")]
        ratio_norm = wide[("item_feature", "grad_norm")] / idn.where(idn > 0)
        idr = wide[("item_id", "grad_rms")]
        ratio_rms = wide[("item_feature", "grad_rms")] / idr.where(idr > 0)
    per_epoch: dict[int, dict[str, Any]] = {}
    for e in out["epochs"]:
        sel = wide.index.get_level_values("epoch") == e
        row: dict[str, Any] = {
            "ratio_norm": float(ratio_norm[sel].mean()) if ratio_norm is not None else float("nan"),
            "ratio_rms": float(ratio_rms[sel].mean()) if ratio_rms is not None else float("nan"),
            "rel_update": {
                g: float(wide.loc[sel, (g, "relative_update")].mean()) for g in GROUPS if has[g]
            },
        }
        per_epoch[e] = row
    out["per_epoch"] = per_epoch
    out["converged"] = {
        g: next((e for e in out["epochs"] if per_epoch[e]["rel_update"][g] < threshold), None)
        for g in GROUPS
        if has[g]
    }
    out["mean_ratio_norm"] = float(ratio_norm.mean()) if ratio_norm is not None else float("nan")
    out["mean_ratio_rms"] = float(ratio_rms.mean()) if ratio_rms is not None else float("nan")
    late = out["epochs"][len(out["epochs"]) // 2 :]
    in_late = wide.index.get_level_values("epoch").isin(late)
    out["late_epochs"] = (late[0], late[-1]) if late else None
    out["late_ratio_norm"] = (
        float(ratio_norm[in_late].mean()) if ratio_norm is not None else float("nan")
    )
    out["probe"] = rec.probe_rows[-1] if rec.probe_rows else None
    out["best_probe"] = (
        {
            k: max((r[k] for r in rec.probe_rows), default=float("nan"))
            for k in ("full", "id_only", "feature_only")
        }
        if rec.probe_rows
        else None
    )
    last = max((r["epoch"] for r in rec.item_rows), default=None)
    rows = [r for r in rec.item_rows if r["epoch"] == last and r["bucket"] > 0]
    out["tail_head"] = (rows[0], rows[-1]) if rows else None
    ep = pd.DataFrame(rec.epoch_rows, columns=["epoch", "group", "quantity", "value"])
    mid = out["epochs"][len(out["epochs"]) // 2] if out["epochs"] else None
    d = ep[(ep["quantity"] == "rel_dist_to_final") & (ep["epoch"] == mid)]
    out["rel_dist_mid"] = {r.group: r.value for r in d.itertuples()}
    out["mid_epoch"] = mid
    out["has"] = has
    return out


def verdict(stats: Mapping[str, Any]) -> tuple[str, str]:
    """``(short verdict, explanation)`` for one model from :func:`model_statistics`.

    Three checks, one per part of the claim:

    - *signal*: the feature parameters get the larger gradient norm in the second half of training
      (mean feature/ID ratio > 1; the start is excluded because a fresh ID table has tiny
      gradients in some models);
    - *convergence*: the ID table keeps moving longer: its mean per-step relative update falls
      below the threshold later (or never) than the feature group's, or its relative distance to
      the final value at mid-training is larger;
    - *under-trained IDs* (when the probe is defined): at their best epochs, the ID part alone
      ranks worse than the feature part alone.

    "agrees" when every applicable check holds, "does not agree" when none does, otherwise
    "partly agrees"; "not applicable" without both an ID table and feature parameters that get
    gradient.
    """
    has = stats["has"]
    if not (has["item_id"] and has["item_feature"]):
        part = "item ID table" if not has["item_id"] else "trainable feature parameters"
        return (
            "not applicable",
            f"the model has no {part}, so there is no ID/feature split to compare",
        )
    r, late = stats["mean_ratio_norm"], stats["late_ratio_norm"]
    if not math.isfinite(r) or r == 0:
        return (
            "not applicable",
            (
                "the feature parameters received no gradient at all (they do not enter "
                "the training loss under this configuration)"
            ),
        )
    checks: list[tuple[str, bool]] = []
    le = stats["late_epochs"]
    checks.append(
        (
            (
                f"signal: feature/ID gradient-norm ratio {_fmt(late)} in epochs {le[0]}–{le[1]} "
                f"({_fmt(r)} over all steps, {_fmt(stats['mean_ratio_rms'])} per element)"
            ),
            late > 1.0,
        )
    )
    cf, ci = stats["converged"].get("item_feature"), stats["converged"].get("item_id")
    dm = stats["rel_dist_mid"]
    later = (cf is not None and (ci is None or ci > cf)) or (
        dm.get("item_id", 0.0) > dm.get("item_feature", 0.0)
    )
    text = f"convergence: relative update < {CONVERGED_BELOW:g} at epoch feature {cf or 'never'}, ID {ci or 'never'}"
    if dm:
        text += (
            f"; relative distance to final at epoch {stats['mid_epoch']}: feature "
            f"{_fmt(dm.get('item_feature', float('nan')))}, ID {_fmt(dm.get('item_id', float('nan')))}"
        )
    checks.append((text, later))
    bp = stats["best_probe"] or {}
    i_only, f_only = bp.get("id_only", float("nan")), bp.get("feature_only", float("nan"))
    if math.isfinite(i_only) and math.isfinite(f_only):
        checks.append(
            (
                (
                    f"probe: best valid Recall@20 ID part only {_fmt(i_only, 4)} vs feature part only "
                    f"{_fmt(f_only, 4)} (full {_fmt(bp.get('full', float('nan')), 4)})"
                ),
                i_only < f_only,
            )
        )
    words = "; ".join(f"{t} [{'yes' if ok else 'no'}]" for t, ok in checks)
    n_ok = sum(ok for _, ok in checks)
    if n_ok == len(checks):
        return "agrees", words
    return ("does not agree" if n_ok == 0 else "partly agrees"), words


def write_summary(
    recorders: Mapping[str, GradientBiasRecorder],
    out_dir: str | Path,
    title: str = "Gradient-bias diagnostic",
    notes: Sequence[str] = (),
) -> Path:
    """``summary.md``: per model a per-epoch table, the convergence epochs, probe recalls, a
    verdict; an overall plain-words verdict on the paper's claim at the top."""
    lines = [f"# {title}", ""]
    lines += list(notes) + ([""] if notes else [])
    stats = {name: model_statistics(rec) for name, rec in recorders.items()}
    verdicts = {name: verdict(s) for name, s in stats.items()}
    lines += [
        "## Verdict",
        "",
        (
            "Claim (spec section 1): with items learned as ID embedding + multimodal features under "
            "BPR, the feature parameters receive most of the gradient and converge, while item ID "
            "embeddings stay under-trained."
        ),
        "",
    ]
    lines += [
        (
            "| model | verdict | feature/ID grad-norm ratio (2nd half / all steps) | epoch rel. update "
            "< 1e-3 (feature / ID) | valid Recall@20 best (full / ID only / feature only) |"
        ),
        "|---|---|---|---|---|",
    ]
    for name, s in stats.items():
        conv = s["converged"]
        bp = s["best_probe"] or {}
        lines.append(
            f"| {name} | {verdicts[name][0]} | {_fmt(s['late_ratio_norm'])} / "
            f"{_fmt(s['mean_ratio_norm'])} | "
            f"{conv.get('item_feature') or ('never' if 'item_feature' in conv else '–')} / "
            f"{conv.get('item_id') or ('never' if 'item_id' in conv else '–')} | "
            f"{_fmt(bp.get('full', float('nan')), 4)} / {_fmt(bp.get('id_only', float('nan')), 4)}"
            f" / {_fmt(bp.get('feature_only', float('nan')), 4)} |"
        )
    applicable = [n for n, v in verdicts.items() if v[0] != "not applicable"]
    agree = [n for n in applicable if verdicts[n][0] == "agrees"]
    partly = [n for n in applicable if verdicts[n][0] == "partly agrees"]
    lines.append("")
    if applicable:
        lines.append(
            f"In plain words: of the {len(applicable)} models with both an item ID table and "
            f"trained feature parameters, {len(agree)} show the claimed bias fully "
            f"({', '.join(agree) or 'none'}), {len(partly)} partly "
            f"({', '.join(partly) or 'none'}) and {len(applicable) - len(agree) - len(partly)} "
            "not. See each model's section for the numbers behind this."
        )
    else:
        lines.append(
            "In plain words: no model here has both an item ID table and trained feature "
            "parameters, so the claim cannot be tested on these runs."
        )
    direct = [n for n in stats if n in DIRECT_MODELS and verdicts[n][0] != "not applicable"]
    for n in direct:
        th = stats[n]["tail_head"]
        rho = (
            f" Per item, the feature parameters' gradient is {_fmt(th[0]['theta_row_ratio'])}× the "
            f"ID-row gradient of a tail item and {_fmt(th[1]['theta_row_ratio'])}× that of a head "
            "item."
            if th
            else ""
        )
        lines.append("")
        lines.append(
            f"{n} learns an item literally as ID embedding + feature encoder output: the "
            f"measurements {verdicts[n][0].replace('agrees', 'agree')} with the claim.{rho}"
        )
    lines.append("")
    for name, s in stats.items():
        rec = recorders[name]
        lines += [f"## {name}", "", f"Verdict: **{verdicts[name][0]}** — {verdicts[name][1]}.", ""]
        p = s["probe"]
        if name in PROBE_NOTES:
            lines += [f"Probe: {PROBE_NOTES[name]}", ""]
        elif p is not None and not p["feature_in_forward"]:
            lines += [
                (
                    "Probe: the feature branch does not enter the scored item representation, so "
                    "the ID-only / feature-only probe is not defined."
                ),
                "",
            ]
        last = max((r["epoch"] for r in rec.item_rows), default=None)
        brows = [r for r in rec.item_rows if r["epoch"] == last]
        if brows:
            lines += [
                (
                    f"Per item, by training-degree bucket (epoch {last}; per-step means): gradient norm "
                    "reaching the ID row and the feature output, fraction of steps the ID row got a "
                    "gradient (measured, and predicted for direct lookup: 1 − (1 − π)^B averaged over the "
                    "epoch's batches, π = degree/N + 1/I₊ with I₊ the items seen in training), and "
                    "‖∇θ_feature‖ / ‖∇e_i‖ (the per-item bias of the derivation)."
                ),
                "",
                (
                    "| bucket | degree | items | ID row grad | feature output grad | ID touched | "
                    "predicted | ‖∇θ‖/‖∇e_i‖ |"
                ),
                "|---|---|---|---|---|---|---|---|",
            ]
            for r in brows:
                lines.append(
                    f"| {r['label']} | {r['degree_min']}–{r['degree_max']} | {r['items']} | "
                    f"{_fmt(r['id_grad'])} | {_fmt(r['feature_grad'])} | "
                    f"{_fmt(100 * r['id_touched'], 3)}% | "
                    f"{_fmt(100 * r['id_touched_predicted'], 3)}% | {_fmt(r['theta_row_ratio'])} |"
                )
            lines.append("")
        groups = [g for g in GROUPS if s["has"][g]]
        probes = {r["epoch"]: r for r in rec.probe_rows}
        head = (
            "| epoch | feature/ID grad norm | feature/ID grad RMS | "
            + " | ".join(f"rel. update {g}" for g in groups)
            + " | Recall@20 full | ID only | feature only |"
        )
        lines += [head, "|" + "---|" * (5 + len(groups) + 1)]
        for e in s["epochs"]:
            pe = s["per_epoch"][e]
            pr = probes.get(e, {})
            cells = [str(e), _fmt(pe["ratio_norm"]), _fmt(pe["ratio_rms"])]
            cells += [_fmt(pe["rel_update"][g]) for g in groups]
            cells += [
                _fmt(pr.get("full", float("nan")), 4),
                _fmt(pr.get("id_only", float("nan")), 4),
                _fmt(pr.get("feature_only", float("nan")), 4),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        conv = ", ".join(f"{g} {s['converged'][g] or 'never'}" for g in groups)
        lines += [
            "",
            (
                f"Epoch where the mean per-step relative update first falls below "
                f"{CONVERGED_BELOW:g}: {conv}."
            ),
            "",
        ]
    path = Path(out_dir) / "summary.md"
    with atomic_write(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def load_recorded(out_dir: str | Path) -> dict[str, Any]:
    """The recorders' data read back from the CSVs in ``out_dir`` (label -> record).

    Each record has the attributes :func:`write_summary` reads (``step_rows``, ``epoch_rows``,
    ``item_rows``, ``probe_rows``, ``groups``), so a summary can be rewritten without training.
    """
    import types

    import pandas as pd

    out = Path(out_dir)
    gb = pd.read_csv(out / "grad_bias.csv")
    items = pd.read_csv(out / "item_grad_by_popularity.csv")
    probe = pd.read_csv(out / "probe.csv")
    recs: dict[str, Any] = {}
    for name in dict.fromkeys(gb["model"]):
        d = gb[gb["model"] == name]
        st, ep = d[d["step"].notna()], d[d["step"].isna()]
        recs[name] = types.SimpleNamespace(
            model_name=name,
            step_rows=list(
                zip(
                    st["step"].astype(int),
                    st["epoch"].astype(int),
                    st["group"],
                    st["quantity"],
                    st["value"].astype(float),
                )
            ),
            epoch_rows=list(
                zip(ep["epoch"].astype(int), ep["group"], ep["quantity"], ep["value"].astype(float))
            ),
            item_rows=items[items["model"] == name].to_dict("records"),
            probe_rows=probe[probe["model"] == name].to_dict("records"),
            groups={g: [g] if (d["group"] == g).any() else [] for g in GROUPS},
        )
    return recs


def summarize(out_dir: str | Path, figures: bool = True) -> Path:
    """Write ``summary.md`` (and the figures) from the CSVs and ``runs.json`` in ``out_dir``."""
    out = Path(out_dir)
    recs = load_recorded(out)
    meta = json.loads((out / "runs.json").read_text()) if (out / "runs.json").is_file() else {}
    notes: list[str] = []
    title = "Gradient-bias diagnostic"
    if meta:
        ds = meta["dataset"]
        title += f": {ds['name']}"
        notes += [
            (
                f"Dataset `{ds['name']}`: {ds['users']} users, {ds['items']} items, {ds['train']} "
                f"training interactions, modalities {', '.join(ds['modalities'])}; {meta['epochs']} "
                f"epochs per model, seed {meta['seed']}, recorded every {meta['every']} step(s). "
                "Hyper-parameters: `datasets/configs/<model>.yaml` (lirdrec-id = lirdrec with "
                "item_id=add), early stopping off."
            ),
            "",
        ]
    notes += [
        (
            "Ratios are group gradient norms ‖∇θ_feature‖ / ‖∇E_item‖ per step, averaged over "
            "steps; 'rel. update' is the optimiser's ‖Δθ‖/‖θ‖ per step, averaged over the epoch. "
            "Probe: validation Recall@20 with the feature-branch output zeroed (ID only) or the "
            "item ID table zeroed (feature only)."
        )
    ]
    runs = meta.get("models", {})
    if runs:
        notes += [
            "",
            "Best validation epoch (Recall@20 valid / test): "
            + "; ".join(
                f"{n} {r['best_epoch']} ({_fmt(r['valid'], 4)} / {_fmt(r['test'], 4)})"
                for n, r in runs.items()
            )
            + ".",
        ]
    path = write_summary(recs, out, title=title, notes=notes)
    if figures:
        from lirdrec.diagnostics.plots import plot_all

        plot_all(out)
    return path


# ----------------------------------------------------------------------------- the script
def resolve_model_names(names: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """``[(label, registry name, fixed kwargs)]`` for script names (registered or aliases).

    Raises:
        ConfigError: an unknown name, listing every available one.
    """
    from lirdrec.models import registry

    avail = registry.names()
    out, unknown = [], []
    for name in names:
        key = name.strip().lower()
        if not key:
            continue
        if key in MODEL_ALIASES and MODEL_ALIASES[key][0] in avail:
            base, kw = MODEL_ALIASES[key]
            out.append((key, base, dict(kw)))
        elif key in avail:
            out.append((key, key, {}))
        else:
            unknown.append(name)
    if unknown:
        usable = avail + [a for a, (b, _) in MODEL_ALIASES.items() if b in avail]
        raise ConfigError(
            f"gradient-bias: unknown or unregistered model(s) {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(sorted(usable))}"
        )
    if not out:
        raise ConfigError("gradient-bias: no model given")
    return out


def default_config_dir() -> Path | None:
    """``datasets/configs`` of the source checkout, if there is one."""
    path = Path(__file__).resolve().parents[2] / "datasets" / "configs"
    return path if path.is_dir() else None


def run_gradient_bias(
    models: Sequence[str],
    data: str | Path | Dataset,
    epochs: int,
    out_dir: str | Path,
    modalities: str | None = None,
    every: int = 1,
    num_buckets: int = 5,
    probe: bool = True,
    seed: int = 999,
    config_dir: str | Path | None = "default",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    snapshots: str = "memory",
    device: str | None = None,
    show_progress: bool | None = None,
    figures: bool = True,
) -> dict[str, GradientBiasRecorder]:
    """Train every model for ``epochs`` epochs with a :class:`GradientBiasRecorder`; write outputs.

    Each model's hyper-parameters are its ``<config_dir>/<name>.yaml`` (the repository's
    ``datasets/configs`` by default; ``None`` = constructor defaults), then the alias's fixed
    arguments (``lirdrec-id`` = ``lirdrec`` with ``item_id="add"``), then ``overrides[label]``;
    early stopping is off (patience = epochs) so every model runs all epochs.

    Args:
        models: script names, e.g. ``["vbpr", "lirdrec-id", "lirdrec"]``.
        data: dataset directory or a loaded :class:`Dataset`.
        epochs: epochs per model.
        out_dir: where the CSVs, ``summary.md`` and figures go.
        modalities: comma-separated feature subset (e.g. ``"image,text"``).
        every: record every n-th step.
        num_buckets: popularity buckets.
        probe: run the ID-only / feature-only probe each epoch.
        seed: run seed.
        config_dir: directory of ``<model>.yaml`` files; ``"default"`` or ``None``.
        overrides: label -> extra config keys.
        snapshots: ``"memory"`` or ``"disk"`` (a temporary directory) for epoch snapshots.
        device: trainer device.
        show_progress: progress bars (``None``: when INFO logging is on).
        figures: draw the figures.

    Returns:
        label -> recorder.
    """
    from lirdrec.cli.config import read_yaml, resolve
    from lirdrec.train.run import prepare_dataset, run_training

    if int(epochs) < 1:
        raise ConfigError(f"gradient-bias: epochs must be >= 1, got {epochs!r}")
    if snapshots not in ("memory", "disk"):
        raise ConfigError(f"gradient-bias: snapshots must be 'memory' or 'disk', got {snapshots!r}")
    plan = resolve_model_names(models)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_dir = (
        default_config_dir()
        if config_dir == "default"
        else (Path(config_dir) if config_dir else None)
    )
    ds = prepare_dataset(data, modalities, 0.0, seed)
    logger.info("gradient-bias on %r: models %s, %d epochs", ds, [p[0] for p in plan], epochs)
    recorders: dict[str, GradientBiasRecorder] = {}
    tmp = tempfile.TemporaryDirectory(prefix="lirdrec-gb-") if snapshots == "disk" else None
    try:
        for label, name, fixed in plan:
            layers = []
            yaml_path = None if cfg_dir is None else cfg_dir / f"{name}.yaml"
            if yaml_path is not None and yaml_path.is_file():
                layers.append(
                    {
                        k: v
                        for k, v in read_yaml(yaml_path).items()
                        if k not in ("model", "epochs", "patience", "seed")
                    }
                )
            layers.append(fixed)
            layers.append(dict((overrides or {}).get(label, {})))
            layers.append(
                {
                    "epochs": int(epochs),
                    "patience": int(epochs),
                    "seed": int(seed),
                    "device": device,
                }
            )
            cfg = resolve(name, layers)
            logger.info("%s: %s (config %s)", label, cfg.model_kwargs, yaml_path)
            rec = GradientBiasRecorder(
                every=every,
                num_buckets=num_buckets,
                probe=probe,
                snapshot_dir=None if tmp is None else Path(tmp.name) / label,
                model_name=label,
            )
            result, _, _ = run_training(
                cfg.model,
                ds,
                model_kwargs=cfg.model_kwargs,
                trainer_kwargs=cfg.trainer_kwargs,
                callbacks=[rec],
                show_progress=show_progress,
            )
            rec.config = {**cfg.model_kwargs, **cfg.trainer_kwargs}
            rec.best = (
                result.best_epoch,
                result.valid.get("Recall@20"),
                result.test.get("Recall@20"),
            )
            recorders[label] = rec
    finally:
        if tmp is not None:
            tmp.cleanup()
    write_outputs(recorders, out)
    meta = {
        "dataset": {
            "name": ds.name,
            "users": ds.num_users,
            "items": ds.num_items,
            "train": len(ds.train),
            "modalities": ds.modalities,
        },
        "epochs": int(epochs),
        "seed": int(seed),
        "every": int(every),
        "models": {
            n: {"best_epoch": r.best[0], "valid": r.best[1], "test": r.best[2], "config": r.config}
            for n, r in recorders.items()
        },
    }
    with atomic_write(out / "runs.json", "w") as fh:
        json.dump(meta, fh, indent=1, default=str)
    summarize(out, figures=figures)
    return recorders


if __name__ == "__main__":  # pragma: no cover - python -m lirdrec.diagnostics.gradient_bias
    import sys

    from lirdrec.diagnostics.cli import main

    sys.exit(main())
