"""Core speed and memory: sampler, LightGCN epoch and evaluation, sparse layout, kNN graphs.

Usage: ``python benchmarks/bench_core.py [--quick]`` (``--quick`` skips the 300k-item kNN).
Each kNN size runs in its own interpreter so its peak RSS is its own.
Targets on 2 CPU cores: an epoch of 300k sampled triples < 0.5 s; full evaluation of 10k users x
7k items < 3 s; kNN of 100k items < 2 min with peak RSS < 2 GiB.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _util import SHARED, best_time, run_child  # noqa: E402

from lirdrec.data import Dataset, Split, load_dataset  # noqa: E402
from lirdrec.evaluate import evaluate  # noqa: E402
from lirdrec.graphs import bipartite_adjacency, spmm  # noqa: E402
from lirdrec.models import LightGCN  # noqa: E402
from lirdrec.train import BPRSampler, Trainer  # noqa: E402
from lirdrec.utils import seed_everything  # noqa: E402
from lirdrec.utils.table import format_table  # noqa: E402


def random_dataset(num_users: int, num_items: int, n: int, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, num_users, n)
    items = (rng.zipf(1.3, n) + rng.integers(0, num_items, n)) % num_items
    keys = np.unique(users * num_items + items)
    u, i = keys // num_items, keys % num_items
    lab = rng.choice(3, len(u), p=[0.8, 0.1, 0.1])
    sp = [Split(u[lab == k], i[lab == k]) for k in range(3)]
    return Dataset("random", num_users, num_items, *sp)


def bench_sampler() -> list[dict]:
    ds = random_dataset(30_000, 20_000, 380_000)
    s = BPRSampler(ds, torch.Generator().manual_seed(0))
    t = best_time(s.epoch)
    return [{"what": f"BPR sampler epoch ({len(ds.train)} triples)", "seconds": t,
             "rate": f"{len(ds.train) / t / 1e6:.2f} M triples/s", "target": "< 0.5 s"}]


def bench_eval_random() -> list[dict]:
    ds = random_dataset(10_000, 7_000, 200_000)
    seed_everything(0)
    m = LightGCN.from_dataset(ds)
    m.eval()
    with torch.no_grad():
        reps = m.forward()
    t = best_time(lambda: evaluate(m, ds, "test", reps=reps))
    return [{"what": f"full evaluation {len(ds.eval_users('test'))} users x 7000 items",
             "seconds": t,
             "rate": "", "target": "< 3 s"}]


def bench_layouts() -> list[dict]:
    """CSR vs COO, and spmm vs torch_geometric LGConv, for a LightGCN forward+backward."""
    from torch_geometric.nn import LGConv

    ds = random_dataset(10_000, 7_000, 300_000)
    n = ds.num_users + ds.num_items
    adj = bipartite_adjacency(ds.num_users, ds.num_items, ds.train.users, ds.train.items)
    coo = adj.to_sparse_coo()
    x = torch.randn(n, 64, requires_grad=True)

    def run(f):
        def go():
            y = f(f(x))
            y.sum().backward()
        return go

    rows = []
    rows.append({"what": "2-layer propagate fwd+bwd: spmm (CSR, stored transpose)",
                 "seconds": best_time(run(lambda h: spmm(adj, h))), "rate": "", "target": "kept"})
    rows.append({"what": "2-layer propagate fwd+bwd: torch.sparse.mm CSR",
                 "seconds": best_time(run(lambda h: torch.sparse.mm(adj, h))), "rate": "",
                 "target": ""})
    rows.append({"what": "2-layer propagate fwd+bwd: torch.sparse.mm COO",
                 "seconds": best_time(run(lambda h: torch.sparse.mm(coo, h))), "rate": "",
                 "target": ""})
    conv = LGConv(normalize=False)
    idx = coo.coalesce().indices()
    w = coo.coalesce().values()
    rows.append({"what": "2-layer propagate fwd+bwd: PyG LGConv (edge_index)",
                 "seconds": best_time(run(lambda h: conv(h, idx, w))), "rate": "", "target": ""})
    return rows


def bench_real(name: str) -> list[dict]:
    path = SHARED / "data" / name
    if not path.exists():
        return [{"what": f"{name}: missing at {path}", "seconds": float("nan"), "rate": "",
                 "target": ""}]
    ds = load_dataset(path)
    seed_everything(999)
    m = LightGCN.from_dataset(ds, embedding_dim=64, num_layers=2)
    tr = Trainer(lr=1e-3, epochs=6, patience=100, show_progress=False)
    res = tr.fit(m, ds)
    ep = [r["train_s"] for r in res.history[1:]]
    t_eval = best_time(lambda: evaluate(m, ds, "valid"))
    return [{"what": f"{name}: LightGCN epoch (d=64, L=2, batch 2048)",
             "seconds": float(np.median(ep)),
             "rate": "", "target": "MMRec 1.36 s (ml100k)" if name == "ml100k" else ""},
            {"what": f"{name}: full evaluation (valid, fresh forward)", "seconds": t_eval,
             "rate": "",
             "target": ""}]


KNN_CODE = """
import json, time, torch
from lirdrec.graphs import build_knn_graph
torch.manual_seed(0)
x = torch.randn({n}, 384)
t = time.perf_counter()
g = build_knn_graph(x, k=10)
print(json.dumps({{"seconds": time.perf_counter() - t, "nnz": int(g._nnz())}}))
"""


def bench_knn(sizes) -> list[dict]:
    rows = []
    for n in sizes:
        r = run_child(KNN_CODE.format(n=n))
        rows.append({"what": f"kNN graph {n} items x 384-d, k=10", "seconds": r["seconds"],
                     "rate": f"peak RSS {r['peak_rss_mib']:.0f} MiB",
                     "target": "< 120 s, < 2 GiB" if n == 100_000 else ""})
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="skip the 300k-item kNN")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{time.strftime('%Y-%m-%d')}")
    rows = bench_sampler() + bench_eval_random() + bench_layouts()
    rows += bench_real("tiktok") + bench_real("ml100k")
    rows += bench_knn([20_000, 100_000] + ([] if args.quick else [300_000]))
    print(format_table(rows))


if __name__ == "__main__":
    main()
