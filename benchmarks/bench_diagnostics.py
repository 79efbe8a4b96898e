"""Overhead of the gradient-bias recorder: training-step time with and without recording every step.

Usage: ``python benchmarks/bench_diagnostics.py [--data ../shared/data/tiktok] [--epochs 4]
[--models vbpr,bm3,lattice,lirdrec-id] [--modalities image,text]``

Each model trains ``--epochs`` epochs without a callback and with
:class:`~lirdrec.diagnostics.gradient_bias.GradientBiasRecorder` (``every=1``, per-item
statistics on, the per-epoch probe off because it is evaluation, not step time). The time is the
trainer's ``train_s`` (the batch loop including the callbacks' step hooks), the minimum over
epochs 2..E and over ``--repeat`` alternating runs, so that the first epoch's warm-up and the
shared CPU's noise count least. Because other processes share the CPU, the wall-clock A/B
difference is noisy; the recorder also times its own hooks (``on_after_backward`` +
``on_step_end``) in the recorded run, and "recorder / rest of step" is that time over the rest of
the same epoch's step time. Target: at most 25 % overhead.
"""

from __future__ import annotations

import argparse
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _util import SHARED

from lirdrec.diagnostics.gradient_bias import GradientBiasRecorder, resolve_model_names
from lirdrec.train.run import load_run_dataset, run_training
from lirdrec.utils.table import format_table


class TimedRecorder(GradientBiasRecorder):
    """The recorder, timing its own per-step hooks (seconds per epoch in ``hook_s``)."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.hook_s: list[float] = []

    def on_epoch_start(self, trainer, model, epoch):
        self.hook_s.append(0.0)
        super().on_epoch_start(trainer, model, epoch)

    def on_after_backward(self, trainer, model, step):
        t = time.perf_counter()
        super().on_after_backward(trainer, model, step)
        self.hook_s[-1] += time.perf_counter() - t

    def on_step_end(self, trainer, model, step):
        t = time.perf_counter()
        super().on_step_end(trainer, model, step)
        self.hook_s[-1] += time.perf_counter() - t


def epoch_time(name: str, kwargs: dict, ds, epochs: int, record: bool) -> tuple[float, float, int]:
    """Minimum training seconds per epoch over epochs 2..E, the recorder's hook seconds in that
    epoch (0 without recorder) and the steps per epoch."""
    rec = TimedRecorder(every=1, probe=False) if record else None
    res, _, _ = run_training(
        name,
        ds,
        kwargs,
        {"epochs": epochs, "patience": epochs, "seed": 999},
        callbacks=[rec] if rec else [],
        show_progress=False,
    )
    times = [h["train_s"] for h in res.history]
    k = min(range(1, len(times)), key=times.__getitem__) if len(times) > 1 else 0
    steps = -(-len(ds.train) // 2048)
    return times[k], (rec.hook_s[k] if rec else 0.0), steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(SHARED / "data" / "tiktok"))
    p.add_argument("--modalities", default=None)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--models", default="vbpr,bm3,lattice,lirdrec-id")
    p.add_argument(
        "--repeat", type=int, default=2, help="alternating plain/recorded runs per model"
    )
    args = p.parse_args()
    ds = load_run_dataset(args.data, args.modalities)
    rows = []
    for label, name, kw in resolve_model_names(args.models.split(",")):
        runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(args.repeat):  # alternate, so load from other processes hits both alike
            for record in (False, True):
                t, hook, steps = epoch_time(name, kw, ds, args.epochs, record)
                runs[record].append((t, hook))
        base = min(runs[False])[0]
        rec, hook = min(runs[True])
        rows.append(
            {
                "model": label,
                "steps/epoch": steps,
                "ms/step plain": round(1000 * base / steps, 1),
                "ms/step recorded": round(1000 * rec / steps, 1),
                "wall overhead": f"{100 * (rec / base - 1):+.1f}%",
                "recorder ms/step": round(1000 * hook / steps, 1),
                "recorder / rest of step": f"{100 * hook / (rec - hook):.1f}%",
            }
        )
        print(format_table(rows[-1:]), flush=True)
    print(
        f"\n{ds.name}: gradient-bias recorder, every step (min over epochs 2..{args.epochs} of "
        f"{args.repeat} alternating runs)\n"
    )
    print(format_table(rows))


if __name__ == "__main__":
    main()
