"""Speed and memory of LIRDRec training and evaluation (issue 4, "Speed").

Prints, per case and precision: wall seconds (and process CPU seconds) per training epoch (full
forward + backward + Adam step per batch of 2048, exactly the trainer's loop without
evaluation), seconds for one valid + test
evaluation (one eval-mode forward shared by both splits, full ranking) and the process's peak RSS.
Every case runs in its own subprocess so that peak RSS is its own.

Cases:
  shape    SYNTHETIC, shaped like the reference's TikTok: 9,300 users, 6,700 items, 128-d image
           + 768-d text features, 42,000 training interactions (+ 1 valid, 1 test per user).
           The reference implementation: 3.1 s/epoch, 1.4 s valid+test, 1.0 GiB peak RSS on
           this 2-core machine (numbers from the issue); targets <= 1.55 s, < 0.3 s, < 0.5 GiB.
  tiktok   ../shared/data/tiktok (real; image features only).
  100k     SYNTHETIC 100,000 items x 30,000 users, 128-d + 768-d features, 400,000 training
           interactions; must stay under 2 GiB. Its epoch time is extrapolated from --steps
           batches (printed as such); building its kNN graph is ~18 TFLOP (reported as build_s).

Evaluation is the trainer's: one eval-mode forward, then valid and test metrics from one scoring
pass (`lirdrec.evaluate.evaluate_splits`) in blocks of min(4096, 2^23 / I) users, so that a
(B, I) score block stays within 32 MiB (1,252 users at 6.7k items, 83 at 100k).

``--floor`` replays, alone, the kernels of one TikTok-shaped step that any implementation of this
math runs (the encoders' GEMMs, the sparse products), next to a full step: what is left is the
element-wise work, the loss, PWC and Adam.

Usage (from the repository root):
  python benchmarks/bench_lirdrec.py                       # every case, fp32 and bf16
  python benchmarks/bench_lirdrec.py --case shape --dtype fp32 --epochs 3
  python benchmarks/bench_lirdrec.py --floor
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import best_time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIKTOK = ROOT / ".." / "shared" / "data" / "tiktok"
#: glibc malloc settings of ``--malloc-tuned`` (the low-memory configuration of results/lirdrec.md):
#: blocks of 1 MiB and more are mmap'ed (returned to the OS on free instead of kept in the heap)
#: with transparent huge pages (few page faults)
MALLOC_TUNED = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=1048576"


#: training batch of the trainer's loop (MMRec's default)
BATCH = 2048


def train_step(model, opt, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
               b: int) -> torch.Tensor:
    """The trainer's step on batch ``b`` of an epoch's BPR triples: zero the gradients, loss,
    backward, optimiser step; returns the detached loss."""
    sl = slice(b * BATCH, (b + 1) * BATCH)
    opt.zero_grad(set_to_none=True)
    loss = model.loss(users[sl], pos[sl], neg[sl])
    loss.backward()
    opt.step()
    return loss.detach()


def synthetic(num_users: int, num_items: int, num_train: int, dims=(128, 768), seed: int = 0):
    """A random SYNTHETIC dataset of the given shape (Zipf-ish item popularity)."""
    from lirdrec.data.dataset import Dataset, Split

    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, num_items + 1) ** 0.6
    pop = rng.permutation(pop / pop.sum())
    n = num_train + 2 * num_users
    users = np.concatenate([np.arange(num_users), np.arange(num_users),
                            rng.integers(0, num_users, n)])
    items = np.concatenate([rng.permutation(num_items)[np.arange(num_users) % num_items],
                            rng.choice(num_items, n + num_users, p=pop)])
    keys = np.unique(users * num_items + items[: len(users)])
    keys = rng.permutation(keys)
    u, i = keys // num_items, keys % num_items
    # one valid and one test interaction for each user's last two pairs, the rest train
    order = np.argsort(u, kind="stable")
    u, i = u[order], i[order]
    last = np.r_[u[1:] != u[:-1], True]
    second = np.r_[last[1:], False] & ~last
    train = ~(last | second)
    sel = np.flatnonzero(train)[:num_train]
    feats = {name: torch.from_numpy(rng.standard_normal((num_items, d), dtype=np.float32))
             for name, d in zip(("image", "text"), dims)}
    return Dataset("synthetic", num_users, num_items, Split(u[sel], i[sel]),
                   Split(u[second], i[second]), Split(u[last], i[last]), feats)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB on Linux


def run_case(case: str, dtype: str, epochs: int, steps: int | None, knn_proj: int = 0,
             seed: int = 999, fused_adam: bool = False, shared_input: str = "auto") -> dict:
    from lirdrec.data import load_dataset
    from lirdrec.evaluate import auto_batch_size, evaluate_splits
    from lirdrec.models import LIRDRec
    from lirdrec.train.sampler import BPRSampler
    from lirdrec.utils.seed import seed_everything

    if case == "shape":
        ds = synthetic(9300, 6700, 42000)
    elif case == "tiktok":
        ds = load_dataset(TIKTOK)
    elif case == "100k":
        ds = synthetic(30000, 100000, 400000)
    else:
        raise SystemExit(f"unknown case {case!r}")
    seed_everything(seed)
    extra = {}
    t0 = time.perf_counter()
    if knn_proj:
        # kNN on a random 64-d projection of each modality: the full 100k x 100k cosine top-k
        # (~18 TFLOP) takes over 10 minutes on one contended core; same graph shape and memory
        from lirdrec.models.lirdrec import build_item_graph

        g = torch.Generator().manual_seed(seed)
        proj = {m: x @ torch.randn(x.shape[1], knn_proj, generator=g)
                for m, x in ds.features.items()}
        extra["item_graph"] = build_item_graph(proj)
        del proj
    model = LIRDRec.from_dataset(ds, autocast_dtype="bfloat16" if dtype == "bf16" else None,
                                 shared_input=shared_input, **extra)
    build_s = time.perf_counter() - t0
    # the trainer's optimiser (Trainer(fused_adam=...))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=fused_adam or None)
    sampler = BPRSampler(ds, torch.Generator().manual_seed(seed))
    n_batches = -(-len(sampler) // BATCH)
    epoch_times, epoch_cpu = [], []
    for epoch in range(1, epochs + 1):
        model.on_epoch_start(epoch)
        model.train()
        t, c = time.perf_counter(), time.process_time()
        users, pos, neg = sampler.epoch()
        limit = n_batches if steps is None else min(steps, n_batches)
        losses = []
        for b in range(limit):
            losses.append(float(train_step(model, opt, users, pos, neg, b)))
        elapsed = time.perf_counter() - t
        epoch_times.append(elapsed * n_batches / limit)
        epoch_cpu.append((time.process_time() - c) * n_batches / limit)
    # the trainer's evaluation: one eval-mode forward, then valid and test from one scoring pass
    # in blocks of at most 4096 users whose (B, I) float32 scores stay within 32 MiB
    eval_batch = auto_batch_size(ds.num_items)
    eval_times = []
    for _ in range(2 if steps is None else 1):
        t = time.perf_counter()
        model.eval()
        with torch.no_grad():
            reps = model()
        valid = evaluate_splits(model, ds, ("valid", "test"), reps=reps)["valid"]
        eval_times.append(time.perf_counter() - t)
    measured = epoch_times[1:] or epoch_times
    return {
        "case": case, "dtype": dtype, "users": ds.num_users, "items": ds.num_items,
        "train": len(ds.train), "features": {m: int(x.shape[1]) for m, x in ds.features.items()},
        "build_s": round(build_s, 2), "epoch_s": round(float(np.median(measured)), 3),
        "epoch_s_all": [round(x, 3) for x in epoch_times],
        "epoch_cpu_s": round(float(np.median(epoch_cpu[1:] or epoch_cpu)), 3),
        "extrapolated_from_steps": steps if steps is not None and steps < n_batches else None,
        "eval_s": round(min(eval_times), 3), "eval_batch": eval_batch,
        "peak_rss_gib": round(peak_rss_gib(), 3),
        "last_loss": round(losses[-1], 5), "valid_recall20": round(valid["Recall@20"], 5),
        "threads": torch.get_num_threads(), "load_avg": os.getloadavg()[0],
        "knn_projected_to": knn_proj or None, "fused_adam": fused_adam,
        "shared_input": model.shared_input,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
    }


def step_floor(repeats: int = 20, seed: int = 0) -> dict:
    """Milliseconds per training step of the TikTok-shaped case spent in kernels that any
    implementation of this math runs: the encoders' dense GEMMs (forward, weight gradient, and the
    second layers' input gradient) and the sparse products (Horner propagation forward and
    backward, the kNN residual forward and backward), each replayed alone on tensors of the
    step's shapes (fastest of ``repeats``), next to a full step of the same model (median)."""
    from lirdrec.graphs import propagate_sum, residual_spmm
    from lirdrec.models import LIRDRec
    from lirdrec.train.sampler import BPRSampler

    ds = synthetic(9300, 6700, 42000)
    model = LIRDRec.from_dataset(ds)
    n_items, hidden, d = ds.num_items, 4 * model.embedding_dim, model.embedding_dim
    g = torch.Generator().manual_seed(seed)

    def ms(fn) -> float:
        return best_time(fn, repeat=repeats) * 1e3

    gemm = 0.0
    flops = 0
    for c in model.channels:
        x = torch.randn(n_items, model.in_dims[c], generator=g)
        w1, b1 = torch.randn(hidden, x.shape[1], generator=g), torch.randn(hidden, generator=g)
        dz = torch.randn(n_items, hidden, generator=g)
        w2, dh = torch.randn(d, hidden, generator=g), torch.randn(n_items, d, generator=g)
        gemm += ms(lambda: torch.addmm(b1, x, w1.t()))  # layer 1 forward
        gemm += ms(lambda: dz.t().mm(x))  # layer 1 weight gradient
        gemm += ms(lambda: dz.mm(w2.t()))  # layer 2 forward
        gemm += ms(lambda: dh.t().mm(dz))  # layer 2 weight gradient
        gemm += ms(lambda: dh.mm(w2))  # layer 2 input gradient
        flops += 2 * n_items * hidden * (2 * x.shape[1] + 3 * d)
    width = len(model.channels) * d
    e = torch.randn(ds.num_users + n_items, width, generator=g)
    z = torch.randn(n_items, width, generator=g)
    layers, mm = model.n_ui_layers, model.n_mm_layers
    sparse = 2 * ms(lambda: propagate_sum(model.adj, e, layers))  # forward and backward
    sparse += ms(lambda: residual_spmm(model.item_graph, z, mm))
    sparse += ms(lambda: residual_spmm(model.item_graph_t, z, mm))

    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    users, pos, neg = BPRSampler(ds, torch.Generator().manual_seed(seed)).epoch()
    n_batches = len(users) // BATCH
    times = []
    for b in range(repeats + 3):
        t = time.perf_counter()
        train_step(model, opt, users, pos, neg, b % n_batches)
        if b >= 3:
            times.append(time.perf_counter() - t)
    full = float(np.median(times)) * 1e3
    return {"gemm_ms": round(gemm, 1), "gemm_gflop": round(flops / 1e9, 2),
            "gemm_gflops_per_s": round(flops / gemm / 1e6, 0), "sparse_ms": round(sparse, 1),
            "full_step_ms": round(full, 1), "rest_ms": round(full - gemm - sparse, 1),
            "threads": torch.get_num_threads()}


def write_shape(directory: str) -> None:
    """The TikTok-shaped synthetic set as MMRec files (``shape.inter``, ``image_feat.npy``,
    ``text_feat.npy``; x_label 0/1/2 = train/valid/test) to time another implementation on."""
    from lirdrec.data.io import write_mmrec

    ds = synthetic(9300, 6700, 42000)
    parts = [ds.train, ds.valid, ds.test]
    write_mmrec(directory, "shape", np.concatenate([p.users for p in parts]),
                np.concatenate([p.items for p in parts]),
                np.concatenate([np.full(len(p), k) for k, p in enumerate(parts)]),
                {m: x.numpy() for m, x in ds.features.items()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=["shape", "tiktok", "100k"])
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--epochs", type=int, default=3, help="epochs timed (the first is warm-up)")
    p.add_argument("--steps", type=int, default=None, help="batches per epoch (extrapolated)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--knn-proj", type=int, default=0,
                   help="build the kNN graph on a random projection to this many dims (fast)")
    p.add_argument("--fused-adam", action="store_true",
                   help="torch's fused Adam kernel (the trainer's fused_adam=true)")
    p.add_argument("--shared-input", choices=["auto", "cache", "fold"], default="auto",
                   help="LIRDRec shared_input: cache the DCT channel or fold it into the weights")
    p.add_argument("--malloc-tuned", action="store_true",
                   help="run each case with GLIBC_TUNABLES=" + MALLOC_TUNED + " (large blocks "
                        "mmap'ed with transparent huge pages, returned to the OS when freed)")
    p.add_argument("--floor", action="store_true",
                   help="only time the step's dense GEMMs and sparse products alone (the part "
                        "any implementation runs) next to a full step, TikTok shape, then exit")
    p.add_argument("--write-shape", metavar="DIR",
                   help="only write the TikTok-shaped set as MMRec files into DIR, then exit")
    args = p.parse_args()
    if args.write_shape:
        write_shape(args.write_shape)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.floor:
        print(json.dumps(step_floor()))
        return
    if args.case:
        print(json.dumps(run_case(args.case, args.dtype, args.epochs, args.steps, args.knn_proj,
                                  fused_adam=args.fused_adam, shared_input=args.shared_input)))
        return
    plan = [("shape", "fp32", 3, None), ("shape", "bf16", 3, None), ("tiktok", "fp32", 3, None),
            ("tiktok", "bf16", 3, None), ("100k", "fp32", 1, 2), ("100k", "bf16", 1, 2)]
    print(f"{'case':7} {'dtype':5} {'items':>7} {'epoch s':>8} {'CPU s':>7} {'eval s':>7} "
          f"{'RSS GiB':>8}  note")
    for case, dtype, epochs, steps in plan:
        cmd = [sys.executable, __file__, "--case", case, "--dtype", dtype, "--epochs", str(epochs)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if steps:
            cmd += ["--steps", str(steps)]
        if case == "100k" and args.knn_proj:
            cmd += ["--knn-proj", str(args.knn_proj)]
        if args.fused_adam:
            cmd += ["--fused-adam"]
        cmd += ["--shared-input", args.shared_input]
        env = dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNED) if args.malloc_tuned else None
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False, env=env)
        if out.returncode:
            print(f"{case:7} {dtype:5} failed:\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        note = (f"extrapolated from {r['extrapolated_from_steps']} steps"
                if r["extrapolated_from_steps"] else "")
        note += f" load {r['load_avg']:.1f}"
        print(f"{case:7} {dtype:5} {r['items']:>7} {r['epoch_s']:>8.3f} {r['epoch_cpu_s']:>7.2f} "
              f"{r['eval_s']:>7.3f} "
              f"{r['peak_rss_gib']:>8.3f}  {note}", flush=True)


if __name__ == "__main__":
    main()
