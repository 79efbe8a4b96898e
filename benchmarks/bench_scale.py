"""Toward a million items: time and peak memory of every stage on a SYNTHETIC set scaled from
1M users x 1M items x 20M training pairs with 128-d and 384-d item features.

``--scale s`` builds ``s`` times that (users, items and pairs all scaled by ``s``) and runs, in
one fresh interpreter per scale: data generation, the normalised user-item graph, the chunked
cosine kNN graph of each modality (k = 10), one LIRDRec and one LightGCN training step (batch
2048, fwd + bwd + Adam; the median of three after one warm-up) and the full ranking of 10,000
sampled users (every item scored, training items masked, top-50). Peak RSS after each stage is
the process's ``ru_maxrss`` so far. Above ``--knn-max-items`` the kNN is not built (it is
O(I^2 d) time) and LIRDRec gets a random 10-regular item graph of the same shape instead: its
step costs the same.

    python benchmarks/bench_scale.py --scale 0.02 0.05 0.1 --knn-max-items 60000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import run_child  # noqa: E402

CHILD = r"""
import json, resource, statistics, sys, time
import numpy as np, torch
sys.path.insert(0, {repo!r})
from lirdrec.data.dataset import Dataset, Split
from lirdrec.evaluate import evaluate_splits
from lirdrec.graphs.bipartite import bipartite_adjacency
from lirdrec.graphs.knn import build_knn_graph, combine_graphs
from lirdrec.graphs.sparse import sparse_from_coo
from lirdrec.models import LIRDRec, LightGCN

s, knn_max, eval_users = {scale}, {knn_max}, {eval_users}
U, I, N = int(1e6 * s), int(1e6 * s), int(20e6 * s)
out = {{"scale": s, "users": U, "items": I, "train": N}}
def rss(): return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
def mark(name, t0):
    out[name + "_s"] = round(time.perf_counter() - t0, 3)
    out[name + "_rss_gib"] = rss()

t0 = time.perf_counter()
rng = np.random.default_rng(0)
pop = 1.0 / np.arange(1, I + 1) ** 0.8
cdf = np.cumsum(rng.permutation(pop / pop.sum()))
keys = np.unique(rng.integers(0, U, N + N // 8) * I
                 + np.minimum(np.searchsorted(cdf, rng.random(N + N // 8)), I - 1))[:N]
users, items = keys // I, keys % I
sample = np.sort(rng.choice(U, min(eval_users, U), replace=False))
test = Split(sample, rng.integers(0, I, len(sample)))
feats = {{"image": torch.from_numpy(rng.standard_normal((I, 128), dtype=np.float32)),
          "text": torch.from_numpy(rng.standard_normal((I, 384), dtype=np.float32))}}
ds = Dataset("scale", U, I, Split(users, items), test, test, feats)
out["train"] = int(len(users))
mark("data", t0)

t0 = time.perf_counter()
adj = bipartite_adjacency(U, I, users, items)
mark("graph", t0)

if I <= knn_max:
    graphs = []
    for m in ("image", "text"):
        t0 = time.perf_counter()
        graphs.append(build_knn_graph(feats[m], k=10))
        mark("knn_" + str(feats[m].shape[1]), t0)
    item_graph = combine_graphs(graphs, [0.1, 0.9])
else:  # the step's cost depends on the graph's shape only
    g = torch.Generator().manual_seed(0)
    item_graph = sparse_from_coo(torch.arange(I).repeat_interleave(10),
                                 torch.randint(I, (10 * I,), generator=g),
                                 torch.full((10 * I,), 0.1), (I, I))

def step_time(model):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    times = []
    for _ in range(4):
        idx = torch.randint(len(users), (2048,), generator=g)
        u = torch.from_numpy(users)[idx]; p = torch.from_numpy(items)[idx]
        n = torch.randint(I, (2048,), generator=g)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model.loss(u, p, n).backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times[1:]), 3)

for name, build in (("lightgcn", lambda: LightGCN(U, I, adj, embedding_dim=64, num_layers=2)),
                    ("lirdrec", lambda: LIRDRec(U, I, feats, adj, item_graph=item_graph))):
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build()
    mark(name + "_build", t0)
    out[name + "_step_s"] = step_time(model)
    out[name + "_step_rss_gib"] = rss()
    t0 = time.perf_counter()
    m = evaluate_splits(model, ds, ("test",), (20, 50), batch_size=4096)["test"]
    mark(name + "_eval" + str(len(sample)), t0)
    del model
print(json.dumps(out))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, nargs="+", default=[0.02, 0.05])
    p.add_argument("--knn-max-items", type=int, default=60_000)
    p.add_argument("--eval-users", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    repo = str(Path(__file__).resolve().parents[1])
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load average "
          f"{os.getloadavg()[0]:.2f}, {args.threads} threads")
    for s in args.scale:
        code = CHILD.format(repo=repo, scale=s, knn_max=args.knn_max_items,
                            eval_users=args.eval_users)
        res = run_child(code, timeout=3600)
        res.pop("peak_rss_mib", None)  # cumulative over children; the child's own figures stand
        print(json.dumps(res), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
