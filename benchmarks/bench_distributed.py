"""Training throughput: one process with T threads against N processes with T/N threads each.

Samples/s = training pairs per second of training time (the trainer's ``train_s``: sampling and
steps, evaluation excluded), on the TikTok-shaped SYNTHETIC set of ``bench_lirdrec.py`` (9,300
users, 6,700 items, 42,000 training pairs, 128-d image and 768-d text features), global batch
2048, for LightGCN and LIRDRec. Each configuration runs in fresh processes
(``lirdrec.train.distributed.spawn``; the N-process runs use gloo). Reported: the best and the
median epoch after the first (which pays for warm-up).

    python benchmarks/bench_distributed.py                      # 1 x 2 threads vs 2 x 1 thread
    python benchmarks/bench_distributed.py --epochs 4 --models lightgcn
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = {"lightgcn": {"embedding_dim": 64, "num_layers": 2},
          "lirdrec": {"embedding_dim": 64}}


def _worker(path: str, model: str, threads: int, epochs: int) -> None:
    import torch
    from bench_lirdrec import synthetic

    from lirdrec.models import registry
    from lirdrec.train import Trainer
    from lirdrec.train import distributed as D
    from lirdrec.utils.seed import seed_everything

    D.init_distributed(threads=threads)
    torch.set_num_threads(threads)
    ds = synthetic(9300, 6700, 42000)
    seed_everything(0)
    m = registry.get(model).from_dataset(ds, **MODELS[model])
    res = Trainer(lr=1e-3, epochs=epochs, batch_size=2048, patience=epochs, seed=0,
                  show_progress=False).fit(m, ds)
    if D.get_rank() == 0:
        Path(path).write_text(json.dumps({
            "train_s": [r["train_s"] for r in res.history], "pairs": len(ds.train),
            "threads": torch.get_num_threads(), "loss": [r["loss"] for r in res.history]}))


def measure(model: str, nproc: int, threads: int, epochs: int) -> dict:
    from lirdrec.train.distributed import spawn

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.json")
        t0 = time.perf_counter()
        spawn(_worker, nproc, path, model, threads, epochs)
        out = json.loads(Path(path).read_text())
    times = out["train_s"][1:] or out["train_s"]
    rate = [out["pairs"] / t for t in times]
    return {"model": model, "processes": nproc, "threads/process": out["threads"],
            "best samples/s": round(max(rate)), "median samples/s": round(statistics.median(rate)),
            "median epoch s": round(statistics.median(times), 3),
            "wall s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="lightgcn,lirdrec")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=2, help="threads of the one-process run")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--single-thread-row", action="store_true",
                   help="also one process with one thread (separates threading from sharding)")
    args = p.parse_args()
    from lirdrec.utils.table import format_table

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load average "
          f"{os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    rows = []
    for model in args.models.split(","):
        rows.append(measure(model, 1, args.threads, args.epochs))
        if args.single_thread_row:
            rows.append(measure(model, 1, 1, args.epochs))
        rows.append(measure(model, args.nproc, max(1, args.threads // args.nproc), args.epochs))
    print(format_table(rows))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
