r"""Training an item representation model (NoteLLM-2) on related-item pairs.

:class:`RepresentationTrainer` runs the reference recipe: AdamW on every trainable parameter,
linear warm-up (``warmup_ratio`` of the steps) then linear decay to zero, gradient-norm clipping,
optional bfloat16 autocast; a batch is ``batch_size`` pairs laid out ``[a_1..a_P, b_1..b_P]``
(the model's loss gathers over ranks under ``torch.distributed`` and runs without a process group
too). Every ``eval_every`` steps (and at the end) the item vectors are encoded and the
validation pairs' I2I ``valid_metric`` (Recall@100) picks the checkpoint; the test pairs are
evaluated once, with the best model.

Run directory (``out_dir``): ``log.csv`` (a row per evaluation), ``best/`` (the best model,
:meth:`NoteLLM2.save`), ``last/`` + ``checkpoint.pt`` (optimiser, scheduler, step, RNG: what
``resume=True`` needs; ``torch.load(weights_only=True)``), ``item_vectors.npy`` (the best model's
vectors of every item, row = item) and ``metrics.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from lirdrec.data.pairs import PairSplit
from lirdrec.errors import CheckpointError, ConfigError, TrainingError
from lirdrec.evaluate.i2i import I2I_KS, i2i_recall
from lirdrec.features._common import show_progress_default
from lirdrec.utils.io import atomic_write
from lirdrec.utils.seed import seed_everything

logger = logging.getLogger(__name__)

__all__ = ["RepresentationTrainer", "RepresentationResult", "evaluate_i2i"]


@dataclass
class RepresentationResult:
    """Outcome of :meth:`RepresentationTrainer.fit`."""

    best_step: int
    valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    pairs_per_second: float = 0.0
    step_losses: list[float] = field(default_factory=list)
    at_start: dict[str, dict[str, float]] = field(default_factory=dict)


def evaluate_i2i(
    model, items, pairs: np.ndarray, ks: Sequence[int] = I2I_KS, batch_size: int = 32, **encode_kw
) -> dict[str, float]:
    """Encode every item, then :func:`~lirdrec.evaluate.i2i.i2i_recall` on ``pairs``."""
    emb = model.encode(items, batch_size=batch_size, **encode_kw)
    return i2i_recall(emb, pairs, ks)


class RepresentationTrainer:
    r"""Fit an item representation model on pairs.

    Args:
        lr (float, optional): peak learning rate (the reference: 3e-6 for 7B models; a 135M
            model needs more). (default: ``1e-4``)
        epochs (int, optional): passes over the training pairs. (default: ``1``, the paper)
        batch_size (int, optional): pairs per step (:math:`2P` items). (default: ``8``)
        weight_decay (float, optional): AdamW decay. (default: ``0.001``)
        warmup_ratio (float, optional): share of steps with linear warm-up. (default: ``0.1``)
        grad_clip (float, optional): gradient-norm clip; 0 disables. (default: ``1.0``)
        max_steps (int, optional): stop after this many steps (a budget cut). (default: ``None``)
        eval_every (int, optional): evaluate (and checkpoint) every this many steps; ``None`` =
            only at the end. (default: ``None``)
        eval_batch_size (int, optional): items per encoding pass. (default: ``32``)
        ks (tuple, optional): I2I cut-offs. (default: ``(10, 20, 50, 100)``)
        valid_metric (str, optional): selects the checkpoint. (default: ``"Recall@100"``)
        bf16 (bool, optional): bfloat16 autocast for forward passes. (default: ``False``)
        eval_at_start (bool, optional): also evaluate the untrained model (valid and test pairs,
            ``at_start`` of the result; never selected as the best model): is training moving
            the I2I numbers at all? Costs one encoding of every item. (default: ``False``)
        log_every (int, optional): log the mean loss of the last this many steps. (default: ``10``)
        seed (int, optional): seeds the pair order and global RNGs. (default: ``999``)
        device (str, optional): torch device. (default: ``"cpu"``)
        out_dir (str | Path, optional): run directory (``None``: nothing written, no resume).
        show_progress (bool, optional): progress bar with items/s (``None``: when logging INFO).
    """

    def __init__(
        self,
        lr: float = 1e-4,
        epochs: int = 1,
        batch_size: int = 8,
        weight_decay: float = 0.001,
        warmup_ratio: float = 0.1,
        grad_clip: float = 1.0,
        max_steps: int | None = None,
        eval_every: int | None = None,
        eval_batch_size: int = 32,
        ks: tuple = I2I_KS,
        valid_metric: str = "Recall@100",
        bf16: bool = False,
        eval_at_start: bool = False,
        log_every: int = 10,
        seed: int = 999,
        device: str = "cpu",
        out_dir: str | Path | None = None,
        show_progress: bool | None = None,
    ) -> None:
        checks = [
            ("lr", lr > 0, "> 0"),
            ("epochs", epochs >= 1, ">= 1"),
            ("batch_size", batch_size >= 1, ">= 1"),
            ("warmup_ratio", 0 <= warmup_ratio < 1, "in [0, 1)"),
            ("grad_clip", grad_clip >= 0, ">= 0"),
            ("max_steps", max_steps is None or max_steps >= 1, ">= 1"),
            ("eval_every", eval_every is None or eval_every >= 1, ">= 1"),
            ("log_every", log_every >= 1, ">= 1"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ConfigError(
                    f"RepresentationTrainer: {name} must be {want}, got {locals()[name]!r}"
                )
        if valid_metric not in {f"Recall@{k}" for k in ks}:
            raise ConfigError(
                f"RepresentationTrainer: valid_metric {valid_metric!r} is not one of "
                f"{[f'Recall@{k}' for k in ks]}"
            )
        self.lr, self.epochs, self.batch_size = float(lr), int(epochs), int(batch_size)
        self.weight_decay, self.warmup_ratio = float(weight_decay), float(warmup_ratio)
        self.grad_clip, self.max_steps, self.eval_every = float(grad_clip), max_steps, eval_every
        self.eval_batch_size, self.ks, self.valid_metric = (
            int(eval_batch_size),
            tuple(ks),
            valid_metric,
        )
        self.bf16, self.seed, self.device = bool(bf16), int(seed), str(device)
        self.eval_at_start, self.log_every = bool(eval_at_start), int(log_every)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.show_progress = show_progress

    def settings(self) -> dict[str, Any]:
        """The constructor's values (for ``config.json``)."""
        return {
            k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in vars(self).items()
        }

    # ------------------------------------------------------------------ schedule
    def _steps(self, num_pairs: int) -> tuple[int, int]:
        per_epoch = max(1, num_pairs // self.batch_size)  # full batches only
        total = per_epoch * self.epochs
        if self.max_steps is not None:
            total = min(total, int(self.max_steps))
        return per_epoch, total

    @staticmethod
    def _lr_lambda(total: int, warmup: int):
        def f(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total - step) / max(1, total - warmup))

        return f

    def _batch_pairs(self, train: np.ndarray, step: int, per_epoch: int) -> np.ndarray:
        epoch, k = divmod(step, per_epoch)
        g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        perm = torch.randperm(len(train), generator=g).numpy()
        take = perm[k * self.batch_size : (k + 1) * self.batch_size]
        p = train[take]
        return np.concatenate([p[:, 0], p[:, 1]])  # [a_1..a_P, b_1..b_P]

    # ------------------------------------------------------------------ fit
    def fit(self, model, items, pairs: PairSplit, *, resume: bool = False) -> RepresentationResult:
        """Train ``model`` on ``pairs.train``; select by ``pairs.valid``; test on ``pairs.test``.

        Args:
            model: a :class:`~lirdrec.encoders.notellm2.NoteLLM2` (anything with ``batch``,
                ``loss``, ``encode``, ``save`` and ``load``).
            items: its :class:`~lirdrec.encoders.notellm2.ItemInputs`.
            pairs: train / valid / test pairs.
            resume: continue from ``out_dir/checkpoint.pt``.
        """
        from safetensors.torch import load_model
        from tqdm.auto import tqdm

        if len(pairs.train) < 1 or len(pairs.valid) < 1:
            raise ConfigError("RepresentationTrainer: needs training and validation pairs")
        if resume and self.out_dir is None:
            raise CheckpointError("RepresentationTrainer: resume needs out_dir")
        seed_everything(self.seed)
        t_start = time.perf_counter()
        model.to(self.device).train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        per_epoch, total = self._steps(len(pairs.train))
        warmup = int(math.ceil(self.warmup_ratio * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_lambda(total, warmup))
        step, history, best, best_step = 0, [], -1.0, 0
        train_seconds = 0.0
        step_losses: list[float] = []  # every step's loss (metrics.json: is the loss falling?)
        at_start: dict[str, dict[str, float]] = {}
        if resume:
            state = torch.load(
                self.out_dir / "checkpoint.pt", map_location="cpu", weights_only=True
            )
            if state.get("total") != total or state.get("num_train_pairs") != len(pairs.train):
                raise CheckpointError(
                    f"{self.out_dir}: the checkpoint was made for {state.get('total')} steps on "
                    f"{state.get('num_train_pairs')} pairs, this run has {total} on "
                    f"{len(pairs.train)}"
                )
            load_model(model, str(self.out_dir / "last" / "model.safetensors"), strict=False)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            step, best, best_step = (
                int(state["step"]),
                float(state["best"]),
                int(state["best_step"]),
            )
            history = json.loads(state["history"])
            train_seconds = float(state["train_seconds"])
            step_losses = json.loads(state.get("step_losses", "[]"))
            at_start = json.loads(state.get("at_start", "{}"))
            logger.info(
                "resumed at step %d of %d (best %s %.4f)", step, total, self.valid_metric, best
            )
        logger.info(
            "training %d steps (%d pairs per step, %d train pairs, warm-up %d), lr %g",
            total,
            self.batch_size,
            len(pairs.train),
            warmup,
            self.lr,
        )
        bar = tqdm(
            total=total * 2 * self.batch_size,
            initial=step * 2 * self.batch_size,
            desc="represent",
            unit="item",
            disable=not show_progress_default(self.show_progress, logger),
        )
        losses: list[float] = []
        best_emb = None  # vectors of the best model (saves encoding it again at the end)
        if self.eval_at_start and step == 0:
            emb = model.encode(items, batch_size=self.eval_batch_size, show_progress=False)
            at_start = {"valid": i2i_recall(emb, pairs.valid, self.ks)}
            if len(pairs.test):
                at_start["test"] = i2i_recall(emb, pairs.test, self.ks)
            logger.info(
                "step 0 (untrained): valid %s %.4f",
                self.valid_metric,
                at_start["valid"][self.valid_metric],
            )
        while step < total:
            idx = self._batch_pairs(pairs.train, step, per_epoch)
            t0 = time.perf_counter()
            batch = model.batch(items, idx, device=self.device)
            with torch.autocast(torch.device(self.device).type, torch.bfloat16, enabled=self.bf16):
                out = model(**batch)
            out = {k: (v.float() if v is not None else None) for k, v in out.items()}
            loss = model.loss(out)
            if not torch.isfinite(loss):
                raise TrainingError(f"represent: non-finite loss {float(loss)} at step {step + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            train_seconds += time.perf_counter() - t0
            losses.append(loss.item())
            step_losses.append(losses[-1])
            if step % self.log_every == 0:
                logger.info(
                    "step %d/%d: loss %.4f (mean of the last %d), tau %.3f, %.3f pairs/s",
                    step,
                    total,
                    float(np.mean(step_losses[-self.log_every :])),
                    self.log_every,
                    model.temperature.item(),
                    step * self.batch_size / train_seconds,
                )
            bar.update(len(idx))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", tau=f"{model.temperature.item():.3f}")
            at_eval = step == total or (self.eval_every is not None and step % self.eval_every == 0)
            if at_eval:
                emb = model.encode(items, batch_size=self.eval_batch_size, show_progress=False)
                valid = i2i_recall(emb, pairs.valid, self.ks)
                row = {
                    "step": step,
                    "epoch": round(step / per_epoch, 3),
                    "loss": float(np.mean(losses)) if losses else float("nan"),
                    "lr": scheduler.get_last_lr()[0],
                    "temperature": model.temperature.item(),
                    **{f"valid/{k}": v for k, v in valid.items() if k != "queries"},
                    "train_seconds": round(train_seconds, 1),
                }
                losses = []
                history.append(row)
                logger.info(
                    "step %d/%d: loss %.4f, valid %s %.4f",
                    step,
                    total,
                    row["loss"],
                    self.valid_metric,
                    valid[self.valid_metric],
                )
                if valid[self.valid_metric] > best:
                    best, best_step, best_emb = valid[self.valid_metric], step, emb
                    if self.out_dir is not None:
                        model.save(self.out_dir / "best")
                    else:
                        self._best_state = {
                            k: v.detach().clone() for k, v in model.state_dict().items()
                        }
                if self.out_dir is not None:
                    self._checkpoint(
                        model,
                        optimizer,
                        scheduler,
                        step,
                        total,
                        best,
                        best_step,
                        history,
                        train_seconds,
                        len(pairs.train),
                        step_losses,
                        at_start,
                    )
        bar.close()
        # the best model, then the test pairs (once)
        if self.out_dir is not None:
            load_model(model, str(self.out_dir / "best" / "model.safetensors"), strict=False)
        elif getattr(self, "_best_state", None) is not None:
            model.load_state_dict(self._best_state)
        if best_emb is None:  # resumed after the best step
            best_emb = model.encode(items, batch_size=self.eval_batch_size, show_progress=False)
        valid = i2i_recall(best_emb, pairs.valid, self.ks)
        test = i2i_recall(best_emb, pairs.test, self.ks) if len(pairs.test) else {}
        n_pairs = total * self.batch_size
        result = RepresentationResult(
            best_step=best_step,
            valid=valid,
            test=test,
            history=history,
            seconds=round(time.perf_counter() - t_start, 1),
            pairs_per_second=round(n_pairs / train_seconds, 3) if train_seconds else 0.0,
            step_losses=step_losses,
            at_start=at_start,
        )
        if self.out_dir is not None:
            with atomic_write(self.out_dir / "item_vectors.npy", "wb") as fh:
                np.save(fh, best_emb.astype(np.float32), allow_pickle=False)
            with atomic_write(self.out_dir / "metrics.json", "w") as fh:
                json.dump(asdict(result), fh, indent=2)
        return result

    def _checkpoint(
        self,
        model,
        optimizer,
        scheduler,
        step,
        total,
        best,
        best_step,
        history,
        train_seconds,
        num_train_pairs,
        step_losses=(),
        at_start=None,
    ) -> None:
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "last")
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "total": total,
            "best": best,
            "best_step": best_step,
            "history": json.dumps(history),
            "train_seconds": train_seconds,
            "num_train_pairs": num_train_pairs,
            "step_losses": json.dumps(list(step_losses)),
            "at_start": json.dumps(at_start or {}),
        }
        tmp = out / "checkpoint.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(out / "checkpoint.pt")
        with atomic_write(out / "log.csv", "w") as fh:
            keys = list(dict.fromkeys(k for row in history for k in row))
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(history)
