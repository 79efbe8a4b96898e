"""Toward a million items: time and peak memory of every stage on a SYNTHETIC set scaled from
1M users x 1M items x 20M training pairs with 128-d and 384-d item features.

``--scale s`` builds ``s`` times that (users, items and pairs all scaled by ``s``) and runs, in a
fresh interpreter: data generation, the normalised user-item graph, the chunked cosine kNN graph
of each modality (k = 10), one LIRDRec and one LightGCN training step (batch 2048, fwd + bwd +
Adam; the median of ``--steps`` - 1 after one warm-up) and the full ranking of 10,000 sampled
users (every item scored, training items masked, top-50). Peak RSS after each stage is the
process's ``ru_maxrss`` so far.

``--per-stage`` runs every stage in its own interpreter (``graph``, ``knn_128``, ``knn_384``,
``lightgcn``, ``lirdrec``; ``--stages`` picks some), each after generating the data it needs
(features only for the kNN and LIRDRec stages), so each peak RSS is that stage's with its inputs
held, not the maximum of everything before it.

The kNN build is O(I^2 d) time. Above ``--knn-max-items`` it is not built for LIRDRec, which gets
two random 10-regular item graphs (self-loop included, weights 0.1 / 0.9) of the same shape
instead: its step costs the same. ``--knn-chunks n`` times the kNN stages on their first ``n``
row chunks only, at the full item count (the library's chunk policy, ``auto_chunk_size``): the
memory of the build does not grow with more chunks beyond its ``(I, k)`` output, which is
allocated and filled in full (unbuilt rows get random neighbours) and assembled into the sparse
graph as the real build does; its time is the chunks' mean times the number of chunks plus the
assembly (an extrapolation, reported as ``knn_*_s_extrapolated``).

    python benchmarks/bench_scale.py --scale 0.02 0.05 0.1 --knn-max-items 60000
    python benchmarks/bench_scale.py --scale 1.0 --per-stage --knn-chunks 8 --steps 2 --threads 1

On a shared machine ``--min-available-gib g`` kills a stage whose machine runs short of memory
(below ``g`` GiB available) and reports the lowest available memory seen during each stage.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import run_child  # noqa: E402

STAGES = ("graph", "knn_128", "knn_384", "lightgcn", "lirdrec")

CHILD = r"""
import json, resource, statistics, sys, time
import numpy as np, torch
import torch.nn.functional as F
sys.path.insert(0, {repo!r})
from lirdrec.data.dataset import Dataset, Split
from lirdrec.evaluate import evaluate_splits
from lirdrec.graphs.bipartite import bipartite_adjacency
from lirdrec.graphs.knn import auto_chunk_size, build_knn_graph, combine_graphs
from lirdrec.graphs.sparse import sparse_from_coo
from lirdrec.models import LIRDRec, LightGCN

try:  # on a shared machine, let the kernel's OOM killer pick this process first
    open("/proc/self/oom_score_adj", "w").write("1000")
except OSError:
    pass
s, knn_max, eval_users, stages = {scale}, {knn_max}, {eval_users}, {stages!r}
knn_chunks, steps = {knn_chunks}, {steps}
U, I, N = int(1e6 * s), int(1e6 * s), int(20e6 * s)
out = {{"scale": s, "users": U, "items": I, "train": N, "stages": list(stages)}}
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
del keys, pop, cdf
sample = np.sort(rng.choice(U, min(eval_users, U), replace=False))
test = Split(sample, rng.integers(0, I, len(sample)))
feats = {{}}
if any(st.startswith("knn") or st == "lirdrec" for st in stages):
    feats = {{"image": torch.from_numpy(rng.standard_normal((I, 128), dtype=np.float32)),
              "text": torch.from_numpy(rng.standard_normal((I, 384), dtype=np.float32))}}
ds = Dataset("scale", U, I, Split(users, items), test, test, feats)
out["train"] = int(len(users))
mark("data", t0)

def knn(x, name, k=10):
    n, c = x.shape[0], auto_chunk_size(x.shape[0])
    total = -(-n // c)
    if knn_chunks is None or knn_chunks >= total:
        t0 = time.perf_counter()
        g = build_knn_graph(x, k=k)
        mark(name, t0)
        return g
    # lirdrec.graphs.knn.knn_indices's loop on the first knn_chunks chunks, outputs in full
    t0 = time.perf_counter()
    xn = F.normalize(x.float(), dim=1)
    values = torch.empty(n, k)
    indices = torch.empty(n, k, dtype=torch.long)
    times = []
    for start in range(0, knn_chunks * c, c):
        t = time.perf_counter()
        v, i = torch.topk(xn[start:start + c] @ xn.t(), k, dim=1)
        values[start:start + c] = v
        indices[start:start + c] = i
        times.append(time.perf_counter() - t)
    done = knn_chunks * c
    g = torch.Generator().manual_seed(2)
    values[done:] = 0.5
    indices[done:] = torch.randint(n, (n - done, k), generator=g)
    del xn
    t = time.perf_counter()
    # build_knn_graph's assembly (unit weights, symmetric normalisation)
    row = torch.arange(n).repeat_interleave(k)
    col = indices.reshape(-1)
    val = torch.ones(n * k)
    deg = torch.zeros(n).index_add_(0, row, val)
    inv = deg.clamp_min(1e-12).pow(-0.5)
    graph = sparse_from_coo(row, col, val * inv[row] * inv[col], (n, n))
    assemble = time.perf_counter() - t
    mark(name, t0)
    out.update({{name + "_chunk_rows": c, name + "_chunks_run": knn_chunks,
                 name + "_chunks_total": total,
                 name + "_chunk_s_mean": round(statistics.mean(times), 3),
                 name + "_assemble_s": round(assemble, 3),
                 name + "_s_extrapolated": round(statistics.mean(times) * total + assemble, 2)}})
    return graph

def step_time(model):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    times = []
    for _ in range(steps):
        idx = torch.randint(len(users), (2048,), generator=g)
        u = torch.from_numpy(users)[idx]; p = torch.from_numpy(items)[idx]
        n = torch.randint(I, (2048,), generator=g)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model.loss(u, p, n).backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times[1:] or times), 3)

adj = None
if any(st in ("graph", "lightgcn", "lirdrec") for st in stages):
    t0 = time.perf_counter()
    adj = bipartite_adjacency(U, I, users, items)
    mark("graph", t0)

graphs = []
for m in ("image", "text"):
    name = "knn_" + str(feats[m].shape[1]) if feats else ""
    if name in stages or ("lirdrec" in stages and I <= knn_max):
        graphs.append(knn(feats[m], name))
item_graph = None
if "lirdrec" in stages:
    if I <= knn_max:
        item_graph = combine_graphs(graphs, [0.1, 0.9])
    else:  # the step's cost depends on the graph's shape only
        g = torch.Generator().manual_seed(0)
        stand_in = []
        for _ in range(2):
            col = torch.randint(I, (I, 10), generator=g)
            col[:, 0] = torch.arange(I)
            stand_in.append(sparse_from_coo(torch.arange(I).repeat_interleave(10), col.reshape(-1),
                                            torch.full((10 * I,), 0.1), (I, I)))
        item_graph = combine_graphs(stand_in, [0.1, 0.9])
        del stand_in
del graphs

for name, build in (("lightgcn", lambda: LightGCN(U, I, adj, embedding_dim=64, num_layers=2)),
                    ("lirdrec", lambda: LIRDRec(U, I, feats, adj, item_graph=item_graph))):
    if name not in stages:
        continue
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


def mem_available_gib() -> float:
    """``MemAvailable`` of /proc/meminfo in GiB (nan where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return float("nan")


def run_guarded(code: str, min_available_gib: float) -> dict:
    """Run the child like ``run_child``, but kill it if the machine's available memory falls below
    ``min_available_gib`` (a shared machine: the others' jobs come first); adds the lowest
    available memory seen while it ran (polled every 0.2 s)."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                stderr=err, text=True, cwd=Path(__file__).resolve().parents[1])
        lowest, killed = mem_available_gib(), False
        while proc.poll() is None:
            lowest = min(lowest, mem_available_gib())
            if lowest < min_available_gib and not killed:
                proc.kill()
                killed = True
            time.sleep(0.2)
        stdout = proc.stdout.read()
        proc.stdout.close()
        if killed:
            return {"stopped": f"available memory fell to {lowest} GiB, below "
                               f"--min-available-gib {min_available_gib}"}
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(err.read()[-2000:])
    out = json.loads(stdout.strip().splitlines()[-1])
    out["mem_available_lowest_gib"] = lowest
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, nargs="+", default=[0.02, 0.05])
    p.add_argument("--knn-max-items", type=int, default=60_000)
    p.add_argument("--knn-chunks", type=int, default=None,
                   help="time the kNN stages on this many row chunks (memory at full size)")
    p.add_argument("--steps", type=int, default=4, help="training steps (the first: warm-up)")
    p.add_argument("--eval-users", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--per-stage", action="store_true", help="one interpreter per stage")
    p.add_argument("--min-available-gib", type=float, default=None,
                   help="kill a stage when the machine's available memory falls below this")
    p.add_argument("--stages", default=",".join(STAGES),
                   help=f"comma-separated subset of {','.join(STAGES)}")
    args = p.parse_args()
    stages = tuple(st for st in args.stages.split(",") if st)
    bad = sorted(set(stages) - set(STAGES))
    if bad or args.steps < 1:
        p.error(f"--stages: unknown {bad}, expected some of {','.join(STAGES)}" if bad
                else f"--steps must be at least 1, got {args.steps}")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    repo = str(Path(__file__).resolve().parents[1])
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load average "
          f"{os.getloadavg()[0]:.2f}, {args.threads} threads", flush=True)
    for s in args.scale:
        for group in ([(st,) for st in stages] if args.per_stage else [stages]):
            code = CHILD.format(repo=repo, scale=s, knn_max=args.knn_max_items,
                                eval_users=args.eval_users, stages=group,
                                knn_chunks=args.knn_chunks, steps=args.steps)
            free = mem_available_gib()
            if args.min_available_gib is None:
                res = run_child(code, timeout=6 * 3600)
                res.pop("peak_rss_mib", None)  # cumulative over children; the child's own stand
            else:
                res = run_guarded(code, args.min_available_gib)
            res["mem_available_before_gib"] = free
            print(json.dumps(res), flush=True)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load average after: "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
