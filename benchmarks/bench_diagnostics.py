"""Overhead of the gradient-bias recorder: training-step time with and without recording every step.

Usage: ``python benchmarks/bench_diagnostics.py [--data ../shared/data/tiktok] [--epochs 4]
[--models vbpr,bm3,lattice,lirdrec-id] [--modalities image,text]``

Each model trains ``--epochs`` epochs without a callback and with
:class:`~lirdrec.diagnostics.gradient_bias.GradientBiasRecorder` (``every=1``, per-item
statistics on, the per-epoch probe off because it is evaluation, not step time). The time is the
trainer's ``train_s`` (the batch loop including the callbacks' step hooks), the minimum over
epochs 2..E so that the first epoch's warm-up and the shared CPU's noise count least. Target: at
most 25 % overhead.
"""

from __future__ import annotations

import argparse
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _util import SHARED  # noqa: E402

from lirdrec.diagnostics.gradient_bias import GradientBiasRecorder, resolve_model_names  # noqa: E402
from lirdrec.train.run import prepare_dataset, run_training  # noqa: E402
from lirdrec.utils.table import format_table  # noqa: E402


def epoch_time(name: str, kwargs: dict, ds, epochs: int, record: bool) -> tuple[float, int]:
    """Minimum training seconds per epoch over epochs 2..E and the steps per epoch."""
    cbs = [GradientBiasRecorder(every=1, probe=False)] if record else []
    res, _, _ = run_training(name, ds, kwargs, {"epochs": epochs, "patience": epochs, "seed": 999},
                             callbacks=cbs, show_progress=False)
    times = [h["train_s"] for h in res.history[1:]] or [res.history[0]["train_s"]]
    steps = -(-len(ds.train) // 2048)
    return min(times), steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(SHARED / "data" / "tiktok"))
    p.add_argument("--modalities", default=None)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--models", default="vbpr,bm3,lattice,lirdrec-id")
    args = p.parse_args()
    ds = prepare_dataset(args.data, args.modalities)
    rows = []
    for label, name, kw in resolve_model_names(args.models.split(",")):
        base, steps = epoch_time(name, kw, ds, args.epochs, record=False)
        rec, _ = epoch_time(name, kw, ds, args.epochs, record=True)
        rows.append({"model": label, "steps/epoch": steps, "ms/step plain": round(1000 * base / steps, 1),
                     "ms/step recorded": round(1000 * rec / steps, 1),
                     "overhead": f"{100 * (rec / base - 1):+.1f}%"})
        print(format_table(rows[-1:]), flush=True)
    print(f"\n{ds.name}: gradient-bias recorder, every step (min over epochs 2..{args.epochs})\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
