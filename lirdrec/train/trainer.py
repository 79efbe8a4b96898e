"""The one trainer every model uses: BPR batches, Adam, early stopping on validation."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from lirdrec.config import provide
from lirdrec.data.dataset import Dataset
from lirdrec.errors import CheckpointError, ConfigError, TrainingError
from lirdrec.evaluate.ranking import DEFAULT_KS, evaluate_splits, per_user_metrics
from lirdrec.evaluate.statistics import write_per_user
from lirdrec.train import distributed as D
from lirdrec.train.checkpoint import decode_state, encode_state, load_checkpoint, save_checkpoint
from lirdrec.train.config_diff import config_differences
from lirdrec.train.sampler import BPRSampler
from lirdrec.train.state import TrainState
from lirdrec.utils.device import check_device
from lirdrec.utils.io import atomic_write, hash_inputs
from lirdrec.utils.provenance import code_version
from lirdrec.utils.seed import seed_everything

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "Callback", "FitResult", "callback_keys"]

#: For checkpoints written before checkpoints saved their configuration (lirdrec before
#: 2026-12-07), which carry only its hash: the settings added since hashes were saved, with the
#: default that reproduces the earlier behaviour, so such a run still resumes. Frozen: a newer
#: checkpoint is compared key by key (:func:`~lirdrec.train.config_diff.config_differences`), so
#: a new setting needs no entry here.
FINGERPRINT_NEUTRAL_DEFAULTS = {"negatives": 1, "layer_combine": "sum", "input_norm": "l2",
                                "popularity_channel": "off", "popularity_features": None,
                                "cold_item_rep": "none", "cold_graph": None}

#: Not part of what a checkpoint must agree on: the epoch cap (a run may be extended), where the
#: run writes, and the resume switch itself.
RESUME_NEUTRAL = ("epochs", "out", "resume")


class Callback:
    """Hooks the trainer calls; override what you need. All default to doing nothing.

    ``step`` counts optimiser steps from 0 over the whole run. A callback that accumulates
    something across epochs returns it from :meth:`state_dict`: the trainer saves it in every
    checkpoint (under :func:`callback_keys`) and, when resuming, hands it to
    :meth:`load_state_dict` after :meth:`on_fit_start`, so a resumed run ends with the same
    state as an uninterrupted one.
    """

    def on_fit_start(self, trainer: "Trainer", model, ds: Dataset) -> None: ...
    def on_epoch_start(self, trainer: "Trainer", model, epoch: int) -> None: ...
    def on_after_backward(self, trainer: "Trainer", model, step: int) -> None: ...
    def on_step_end(self, trainer: "Trainer", model, step: int) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", model, epoch: int,
                     metrics: dict[str, float]) -> None: ...
    def on_fit_end(self, trainer: "Trainer", model, result: "FitResult") -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of this callback (tensors, numbers, strings, numpy arrays and
        containers of them: checkpoints load weights-only); default: nothing.
        """
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, when a run resumes; default: nothing."""


def callback_keys(callbacks: Sequence[Callback]) -> list[str]:
    """Checkpoint key of each callback: its class name, ``#k`` appended to the k-th repeat.

    >>> callback_keys([Callback(), Callback()])
    ['Callback', 'Callback#1']
    """
    keys: list[str] = []
    for cb in callbacks:
        name = type(cb).__name__
        repeats = sum(k.split("#")[0] == name for k in keys)
        keys.append(f"{name}#{repeats}" if repeats else name)
    return keys


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        best_epoch: the epoch with the best validation metric (0 for untrained models).
        valid: validation metrics at ``best_epoch``.
        test: test metrics at ``best_epoch``.
        history: one dict per epoch (loss, times, validation metrics).
        stopped_early: whether patience ran out before ``epochs``.
        run_dir: where the run files are, if any.
    """

    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    run_dir: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "valid": self.valid, "test": self.test,
                "epochs_run": len(self.history), "stopped_early": self.stopped_early}


def _progress_enabled(show_progress: bool | None) -> bool:
    from lirdrec.utils.logging import progress_enabled

    return progress_enabled(show_progress)


class Trainer:
    r"""Mini-batch training with early stopping on a validation metric.

    Each epoch draws ``negatives`` uniform negatives per shuffled training pair
    (:class:`BPRSampler`), takes an Adam step per batch on ``model.loss``, then ranks all items
    for the validation users with a fresh forward in eval mode. The test split is evaluated
    whenever validation improves, so the reported test metrics are those of the best validation
    epoch. Training stops when the metric has not improved for more than ``patience``
    consecutive epochs (MMRec's counter: with ``patience=20`` it stops at the 21st epoch without
    improvement); the best epoch's weights are restored into the model.

    Args:
        lr (float): Adam learning rate. (default: ``1e-3``)
        epochs (int): maximum number of epochs. (default: ``1000``)
        batch_size (int): training pairs per step. (default: ``2048``)
        patience (int): early-stopping patience in epochs. (default: ``20``)
        seed (int): seeds the sampler and, at the start of :meth:`fit`, torch/NumPy/Python.
            (default: ``999``)
        weight_decay (float): Adam weight decay. (default: ``0.0``)
        valid_metric (str): model selection metric. (default: ``"Recall@20"``)
        ks (Sequence[int]): metric cut-offs. (default: ``(5, 10, 20, 50)``)
        eval_batch_size (int): at most this many users per evaluation block (fewer for large
            catalogues: a block of scores stays within 32 MiB). (default: ``4096``)
        mask_valid_at_test (bool): mask validation items when ranking test. (default: ``False``)
        callbacks (Sequence[Callback]): hooks, e.g. the gradient-bias recorder.
        out_dir (str | Path | None): run directory for ``log.csv``, ``metrics.json``,
            ``checkpoint.pt`` (and ``config.yaml`` if ``config`` is given). (default: ``None``)
        config (dict | None): the resolved configuration to save as ``config.yaml``; its hash
            (without ``epochs``) guards ``resume``.
        show_progress (bool | None): progress bars; ``None`` = when INFO logging is on.
        device (str): ``"cpu"`` or ``"cuda"``. (default: ``"cpu"``)
        checkpoint_every (int): write ``checkpoint.pt`` every n epochs (and at the end).
            (default: ``1``)
        deterministic (bool): torch deterministic algorithms during :meth:`fit`. (default: ``True``)
        lr_decay (float): learning-rate decay :math:`\gamma`: epoch :math:`e` (1-based) trains
            with :math:`\mathrm{lr}\cdot\gamma^{(e-1)/T}` (MMRec's ``learning_rate_scheduler:
            [γ, T]``, a :class:`torch.optim.lr_scheduler.LambdaLR` stepped after each epoch;
            LATTICE's reference uses ``[0.96, 50]``). (default: ``1.0``, constant)
        lr_decay_epochs (float): :math:`T`. (default: ``50``)
        fused_adam (bool): Adam as one fused kernel per parameter (``torch.optim.Adam(...,
            fused=True)``): the same update, about 7 % faster LIRDRec steps on CPU
            (``benchmarks/bench_lirdrec.py --fused-adam``), rounded differently from the default
            multi-tensor kernels (about one ulp per step), so off by default: runs stay
            reproducible bit for bit across versions. (default: ``False``)
        negatives (int): :math:`k` uniform negatives per positive pair: every epoch each
            training pair is repeated :math:`k` times with independent negatives
            (:class:`BPRSampler`) and a step takes ``batch_size`` PAIRS, i.e.
            :math:`k\cdot` ``batch_size`` triples, so the loss is BPR averaged over the :math:`k`
            negatives and the steps per epoch stay those of :math:`k = 1`. ``1`` draws exactly
            the negatives of earlier versions. (default: ``1``)
    """

    def __init__(
        self,
        lr: float = 1e-3,
        epochs: int = 1000,
        batch_size: int = 2048,
        patience: int = 20,
        seed: int = 999,
        weight_decay: float = 0.0,
        valid_metric: str = "Recall@20",
        ks: Sequence[int] = DEFAULT_KS,
        eval_batch_size: int = 4096,
        mask_valid_at_test: bool = False,
        callbacks: Sequence[Callback] = (),
        out_dir: str | Path | None = None,
        config: dict[str, Any] | None = None,
        show_progress: bool | None = None,
        device: str = "cpu",
        checkpoint_every: int = 1,
        deterministic: bool = True,
        lr_decay: float = 1.0,
        lr_decay_epochs: float = 50,
        fused_adam: bool = False,
        negatives: int = 1,
    ) -> None:
        checks = [("lr", lr, lr > 0, "> 0"), ("epochs", epochs, epochs >= 1, ">= 1"),
                  ("batch_size", batch_size, batch_size > 0, "> 0"),
                  ("patience", patience, patience >= 0, ">= 0"),
                  ("weight_decay", weight_decay, weight_decay >= 0, ">= 0"),
                  ("lr_decay", lr_decay, 0 < lr_decay <= 1, "in (0, 1]"),
                  ("lr_decay_epochs", lr_decay_epochs, lr_decay_epochs > 0, "> 0"),
                  ("negatives", negatives, not isinstance(negatives, bool)
                   and int(negatives) == negatives and negatives >= 1, "an integer >= 1")]
        for name, value, ok, exp in checks:
            if not ok:
                raise ConfigError(f"Trainer: {name} must be {exp}, got {value!r}")
        if not ks or any(int(k) < 1 for k in ks):
            raise ConfigError(f"Trainer: ks must be cut-offs >= 1, got {list(ks)!r}")
        metric_names = {f"{m}@{k}" for m in ("Recall", "NDCG", "Precision", "MAP") for k in ks}
        if valid_metric not in metric_names:
            raise ConfigError(f"Trainer: valid_metric must be one of {sorted(metric_names)}, "
                              f"got {valid_metric!r}")
        self.lr, self.epochs, self.batch_size = float(lr), int(epochs), int(batch_size)
        self.patience, self.seed, self.weight_decay = int(patience), int(seed), float(weight_decay)
        self.valid_metric, self.ks = valid_metric, tuple(int(k) for k in ks)
        self.eval_batch_size = int(eval_batch_size)
        self.mask_valid_at_test = bool(mask_valid_at_test)
        self.callbacks = list(callbacks)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.config = config
        self.show_progress = show_progress
        self.device = torch.device(check_device(device))
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.lr_decay, self.lr_decay_epochs = float(lr_decay), float(lr_decay_epochs)
        self.deterministic = bool(deterministic)
        self.negatives = int(negatives)
        self.fused_adam = bool(fused_adam)
        self.optimizer: torch.optim.Optimizer | None = None
        self.global_step = 0
        self._world, self._rank, self._main = 1, 0, True  # set again by fit

    # ------------------------------------------------------------------ helpers
    def _resume_config(self) -> dict[str, Any]:
        """The configuration a resumed run must agree on: without :data:`RESUME_NEUTRAL`."""
        return {k: v for k, v in (self.config or {}).items() if k not in RESUME_NEUTRAL}

    def _fingerprint(self, legacy: bool = False) -> str:
        """Hash of :meth:`_resume_config`, what checkpoints before saved configurations carried;
        ``legacy``: also without the :data:`FINGERPRINT_NEUTRAL_DEFAULTS` keys at their
        defaults (what a run started before they existed saved; resuming accepts either).
        """
        cfg = self._resume_config()
        if legacy:
            for key, default in FINGERPRINT_NEUTRAL_DEFAULTS.items():
                if key in cfg and cfg[key] == default:
                    del cfg[key]
        return hash_inputs(cfg)

    def _forward_eval(self, model):
        """The representations in eval mode, computed once per evaluation."""
        model.eval()
        with torch.no_grad():
            reps = model.forward()
        model.train()
        return reps

    def _evaluate(self, model, ds: Dataset, reps) -> tuple[dict[str, float], dict[str, float]]:
        """Valid and test metrics from one scoring pass (:func:`evaluate_splits`)."""
        with D.collective_errors("evaluation"):  # users sharded across the ranks, if several
            out = evaluate_splits(model, ds, ("valid", "test"), self.ks,
                                  mask_valid=self.mask_valid_at_test, reps=reps,
                                  batch_size=self.eval_batch_size)
        model.train()
        return out["valid"], out["test"]

    def _write_log(self, history: list[dict[str, Any]]) -> None:
        if self.out_dir is None or not history or not self._main:
            return
        keys: list[str] = []
        for row in history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
        with atomic_write(self.out_dir / "log.csv", "w") as fh:
            fh.write(buf.getvalue())

    def _write_per_user(self, model, ds: Dataset) -> None:
        """Per-user test metrics of the selected model (paired significance tests read them)."""
        if self.out_dir is None:
            return
        with D.collective_errors("the per-user test metrics"):  # every rank ranks its share
            users, metrics = per_user_metrics(model, ds, "test", self.ks,
                                              mask_valid=self.mask_valid_at_test,
                                              batch_size=self.eval_batch_size)
        if self._main:
            write_per_user(self.out_dir, users, metrics)

    def _write_metrics(self, result: FitResult, extra: dict[str, Any]) -> None:
        if self.out_dir is None or not self._main:
            return
        with atomic_write(self.out_dir / "metrics.json", "w") as fh:
            json.dump({**result.to_json(), **extra, "code": code_version()}, fh, indent=2)

    # ------------------------------------------------------------------ main loop
    def fit(self, model, ds: Dataset, resume: bool = False) -> FitResult:
        """Train ``model`` on ``ds`` and return the best-validation metrics.

        With ``resume=True`` and a ``checkpoint.pt`` in ``out_dir``, training continues from it
        (model, optimiser, sampler and global RNG states, early-stopping counters, best weights,
        callback states), reaching the same final metrics as an uninterrupted run with the same
        seed.

        With ``deterministic=True`` (default) torch's deterministic algorithms are switched on
        for the duration of the fit (and restored after): with several CPU threads some backward
        kernels otherwise sum in a thread-dependent order, and LIRDRec's losses drifted by one
        float32 ulp between identical runs.
        """
        previous = torch.are_deterministic_algorithms_enabled()
        previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        if self.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return self._fit(model, ds, resume)
        finally:
            torch.use_deterministic_algorithms(previous, warn_only=previous_warn)

    def _fit(self, model, ds: Dataset, resume: bool) -> FitResult:
        too_big = [k for k in self.ks if k > ds.num_items]
        if too_big:  # found before the first epoch, not by the first evaluation
            raise ConfigError(f"Trainer: ks {too_big} exceed the {ds.num_items} items of dataset "
                              f"{ds.name!r}; use cut-offs up to {ds.num_items}, e.g. --set "
                              f"ks={','.join(str(k) for k in (5, 10, 20) if k <= ds.num_items)}")
        code_version()  # taken at the first fit's start, before any file can change under it
        seed_everything(self.seed)
        self._world, self._rank = D.get_world_size(), D.get_rank()
        self._main = self._rank == 0
        if self._world > 1 and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())  # init_distributed's
        model.to(self.device)
        if self.out_dir is not None and self._main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self.config is not None and not resume:
                import yaml
                with atomic_write(self.out_dir / "config.yaml", "w") as fh:
                    yaml.safe_dump(self.config, fh, sort_keys=False)
        for cb in self.callbacks:
            cb.on_fit_start(self, model, ds)
        if not getattr(model, "trainable", True):
            reps = self._forward_eval(model)
            valid, test = self._evaluate(model, ds, reps)
            result = FitResult(0, valid, test, [], False, self.out_dir)
            self._write_per_user(model, ds)
            self._write_metrics(result, {"train_time_s": 0.0})
            for cb in self.callbacks:
                cb.on_fit_end(self, model, result)
            return result

        generator = torch.Generator().manual_seed(self.seed)  # the shared one: same on every rank
        sampler = BPRSampler(ds, generator, self.negatives)
        # each rank's own negatives (one process keeps drawing them from the shared generator,
        # so its runs stay bit-identical to those of earlier versions)
        neg_generator = (torch.Generator().manual_seed(D.rank_seed(self.seed, self._rank))
                         if self._world > 1 else None)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.lr,
                                          weight_decay=self.weight_decay,
                                          fused=self.fused_adam or None)
        decay, period = self.lr_decay, self.lr_decay_epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                      lambda e: decay ** (e / period))
        st = TrainState()
        self.state = st  # callbacks read the progress here (e.g. state.history[-1]["loss"])
        st.snapshot_best(model)
        self.global_step = 0
        ckpt_path = None if self.out_dir is None else self.out_dir / "checkpoint.pt"
        keys = callback_keys(self.callbacks)
        if resume:
            ck = self._load_resume_checkpoint(ckpt_path)
            model.load_state_dict(ck["model"])
            model.load_extra_state(ck["model_extra"])
            self.optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            generator.set_state(ck["generator"])
            mine = ck["ranks"][self._rank] if self._world > 1 else ck
            torch.set_rng_state(mine["torch_rng"])
            np.random.set_state(mine["numpy_rng"])
            if neg_generator is not None:
                neg_generator.set_state(mine["neg_generator"])
            st.load_state_dict(ck["train"])
            self.global_step = st.global_step
            states = ck["callbacks"]
            for key, cb in zip(keys, self.callbacks):
                if key in states:
                    cb.load_state_dict(states[key])
                elif cb.state_dict() and self._main:
                    logger.warning("%s: no state of callback %s; it starts afresh", ckpt_path, key)
            if self._main:
                logger.info("resumed %s at epoch %d (best epoch %d, %s %.4f)", ckpt_path, st.epoch,
                            st.best_epoch, self.valid_metric, st.best_score)
        start_epoch = st.epoch + 1
        step_model = self._step_module(model)

        show = _progress_enabled(self.show_progress) and self._main
        from tqdm.auto import tqdm

        stopped_early = bool(st.history) and st.bad_epochs > self.patience
        bar = tqdm(range(start_epoch, self.epochs + 1), desc=type(model).__name__, disable=not show,
                   initial=start_epoch - 1, total=self.epochs, dynamic_ncols=True)
        epoch = start_epoch - 1
        for epoch in bar:
            if stopped_early:
                break
            for cb in self.callbacks:
                cb.on_epoch_start(self, model, epoch)
            model.on_epoch_start(epoch)
            model.train()
            t0 = time.perf_counter()
            batches = self._epoch_batches(sampler, neg_generator)
            total, n_batches = 0.0, 0
            with D.collective_errors(f"training epoch {epoch}"):
                for users, pos, neg, weight in tqdm(batches, leave=False, disable=not show,
                                                    desc=f"epoch {epoch}"):
                    users, pos, neg = (users.to(self.device), pos.to(self.device),
                                       neg.to(self.device))
                    self.optimizer.zero_grad(set_to_none=True)
                    loss = step_model(users, pos, neg)
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise TrainingError(f"{type(model).__name__}: non-finite loss {value} at "
                                            f"epoch {epoch}, step {self.global_step}"
                                            f"{self._rank_note()}; lower lr or reg_weight")
                    if weight is not None:  # this rank's share of the global batch's mean
                        loss = loss * weight
                        value *= weight / self._world
                    loss.backward()  # DDP all-reduces (averages) the gradients here
                    for cb in self.callbacks:
                        cb.on_after_backward(self, model, self.global_step)
                    self.optimizer.step()
                    for cb in self.callbacks:
                        cb.on_step_end(self, model, self.global_step)
                    total += value
                    n_batches += 1
                    self.global_step += 1
                if self._world > 1:  # the global batches' losses: the sum of the ranks' shares
                    total = float(D.all_reduce_sum_(torch.tensor([total], dtype=torch.float64)))
            t1 = time.perf_counter()
            st.train_time += t1 - t0
            epoch_lr = self.optimizer.param_groups[0]["lr"]
            scheduler.step()  # the next epoch's learning rate
            reps = self._forward_eval(model)
            valid, test = self._evaluate(model, ds, reps)  # test kept only when valid improves
            score = valid[self.valid_metric]
            # decided once, on rank 0, and followed by every rank
            improved = bool(D.broadcast_values([score > st.best_score], what="early stopping")[0])
            if improved:
                st.improve(epoch, score, valid, test, model)
            else:
                st.bad_epochs += 1
            t2 = time.perf_counter()
            row = {"epoch": epoch, "loss": total / max(n_batches, 1), "train_s": round(t1 - t0, 4),
                   "eval_s": round(t2 - t1, 4), "lr": epoch_lr}
            row.update({f"valid/{k}": v for k, v in valid.items()
                        if k.split("@")[0] in ("Recall", "NDCG")})
            row["best"] = improved
            st.history.append(row)
            st.epoch, st.global_step = epoch, self.global_step
            if self._main:
                logger.info("epoch %d: loss %.4f, valid %s %.4f%s (%.2fs train, %.2fs eval)", epoch,
                            row["loss"], self.valid_metric, score, " *" if improved else "",
                            t1 - t0, t2 - t1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", **{self.valid_metric: f"{score:.4f}"})
            stopped_early = st.bad_epochs > self.patience
            for cb in self.callbacks:
                cb.on_epoch_end(self, model, epoch, valid)
            self._write_log(st.history)
            if ckpt_path is not None and (epoch % self.checkpoint_every == 0 or stopped_early
                                          or epoch == self.epochs):
                self._save_checkpoint(ckpt_path, {
                    "train": st.state_dict(),
                    "model": model.state_dict(), "model_extra": model.extra_state(),
                    "optimizer": self.optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "fingerprint": self._fingerprint() if self.config is not None else None,
                    "config": self._resume_config() if self.config is not None else None,
                    "callbacks": {key: cb.state_dict() for key, cb in zip(keys, self.callbacks)},
                }, neg_generator)
            if stopped_early:
                if self._main:
                    logger.info("early stop after epoch %d: no %s improvement for %d epochs; "
                                "best epoch %d", epoch, self.valid_metric, st.bad_epochs,
                                st.best_epoch)
                break
        bar.close()
        model.load_state_dict(st.best_state)
        model.load_extra_state(st.best_extra)
        model.eval()
        result = FitResult(st.best_epoch, st.best_valid, st.best_test, st.history, stopped_early,
                           self.out_dir)
        n_ep = len(st.history)
        self._write_per_user(model, ds)
        self._write_metrics(result, {"train_time_s": round(st.train_time, 3),
                                     "seconds_per_epoch": round(st.train_time / max(n_ep, 1), 4),
                                     **({"processes": self._world} if self._world > 1 else {})})
        for cb in self.callbacks:
            cb.on_fit_end(self, model, result)
        return result

    # ------------------------------------------------------------------ several processes
    def _rank_note(self) -> str:
        return f" on rank {self._rank}" if self._world > 1 else ""

    def _step_module(self, model) -> nn.Module | Any:
        """What a training step calls: ``model.loss`` itself, or, with several processes, the
        loss wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`.

        ``broadcast_buffers=False``: the models hold sparse CSR graph buffers that DDP cannot
        broadcast, and every rank built the same graphs from the same data and seed.
        ``find_unused_parameters=True``: a parameter a batch leaves without gradient on every
        rank keeps no gradient (Adam skips it, as in one process) instead of stalling DDP.
        """
        if self._world == 1:
            return model.training_loss
        from torch.nn.parallel import DistributedDataParallel as DDP

        with D.collective_errors("the model's parameter broadcast"):
            return DDP(_LossModule(model), broadcast_buffers=False, find_unused_parameters=True,
                       device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _epoch_batches(self, sampler: BPRSampler, neg_generator: torch.Generator | None):
        """One epoch's ``(users, pos_items, neg_items, weight)`` per step of this process.

        One process: the global batches, ``weight`` ``None``. Several: this rank's share of each
        global batch (:meth:`BPRSampler.epoch_shard`) and ``weight`` :math:`= n_r W / n`, so that
        DDP's average of the ranks' gradients is the gradient of the global batch's mean loss
        even when the shares differ by one. A rank with no pair in a (last, tiny) batch steps on
        one pair of it with weight 0: DDP needs every rank in every step.
        """
        if self._world == 1:
            users, pos, neg = sampler.epoch()
            b = self.batch_size * self.negatives  # a batch is batch_size pairs, k triples each
            return [(users[s:s + b], pos[s:s + b], neg[s:s + b], None)
                    for s in range(0, len(users), b)]
        users, pos, neg, counts, sizes = sampler.epoch_shard(self.batch_size, self._rank,
                                                             self._world, neg_generator)
        out, start = [], 0
        for c, n in zip(counts.tolist(), sizes.tolist()):
            if c:
                sl = slice(start, start + c)
                out.append((users[sl], pos[sl], neg[sl], c * self._world / n))
            else:
                u = sampler.users[:1]
                out.append((u, sampler.items[:1], sampler.items[:1], 0.0))
            start += c
        return out

    def _rank_state(self, neg_generator: torch.Generator | None) -> dict[str, Any]:
        state = {"torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state()}
        if neg_generator is not None:
            state["neg_generator"] = neg_generator.get_state()
        return state

    def _save_checkpoint(self, path: Path, state: dict[str, Any],
                         neg_generator: torch.Generator | None) -> None:
        """Rank 0 writes ``path``; with several processes it first gathers every rank's own
        random states (its negatives' generator, torch's and NumPy's) into ``state["ranks"]``.
        """
        mine = self._rank_state(neg_generator)
        if self._world > 1:
            gathered = D.all_gather_bytes(D.save_bytes(encode_state(mine)), what="the checkpoint")
            state["ranks"] = [decode_state(D.load_bytes(b)) for b in gathered]
            state["world_size"] = self._world
        if self._main:
            save_checkpoint(path, {**state, **mine})

    def _load_resume_checkpoint(self, path: Path | None) -> dict[str, Any]:
        """The checkpoint to resume from: rank 0 reads it and, with several processes, sends
        its bytes to the others (which need not share its file system); checks the
        configuration and the number of processes.
        """
        if path is None:
            raise CheckpointError("resume needs an out_dir holding checkpoint.pt")
        data = None
        if self._main:
            data = path.read_bytes() if path.is_file() else b""
        data = D.broadcast_bytes(data, what="the resume checkpoint")
        ck = load_checkpoint(path, data=data or None)
        if self.config is not None and ck.get("config") is not None:
            diffs = config_differences(ck["config"], self._resume_config())
            if diffs:
                raise CheckpointError(f"{path}: written by a run with a different configuration "
                                      f"({'; '.join(diffs)}); start a new run directory instead")
        elif self.config is not None and ck.get("fingerprint") not in (
                None, self._fingerprint(), self._fingerprint(legacy=True)):
            raise CheckpointError(f"{path}: written by a run with a different configuration "
                                  "or data; start a new run directory instead")
        saved_world = int(ck.get("world_size", 1))
        if saved_world != self._world:
            raise CheckpointError(f"{path}: written by a {saved_world}-process run; resume it with "
                                  f"{saved_world} process(es) (--nproc {saved_world}), not "
                                  f"{self._world}")
        return ck


class _LossModule(nn.Module):
    """``forward(users, pos, neg) = model.training_loss(users, pos, neg)`` (the recommender's loss
    plus, end to end, its encoder's): what DDP wraps, so that its
    gradient hooks are armed for every loss (DDP only prepares the backward of its forward).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, users: torch.Tensor, pos_items: torch.Tensor,
                neg_items: torch.Tensor) -> torch.Tensor:
        return self.model.training_loss(users, pos_items, neg_items)

provide(trainer=Trainer)  # the config core reads the trainer's keys from its signature
