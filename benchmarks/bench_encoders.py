"""End-to-end encoder training vs frozen features: time of a training epoch on ml100k.

For each feature-aware model, two copies are built from the same aligned dual encoder features
(d = 128, the study's setting): frozen (the features are constants) and end-to-end (the
encoder's heads recompute every item's features in every step, plus ``--vl-loss-weight`` x the
CLIP loss of the batch's items; default 0, the study's setting). Their epochs are timed
alternately in one process, so machine drift hits both alike; the table reports the median over
``--repeats`` epochs.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/bench_encoders.py [--repeats 3]

Needs the ml100k trunk outputs (computed and cached on first use: several minutes).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from lirdrec.data import load_dataset
from lirdrec.train.encoded import encoder_features, encoder_settings
from lirdrec.train.run import build_model
from lirdrec.train.sampler import BPRSampler

REPO = Path(__file__).resolve().parents[1]
MODELS = {"vbpr": 1e-3, "lattice": 1e-3, "bm3": 1e-3, "freedom": 1e-3, "lirdrec": 1e-4}


def epoch_seconds(model, ds, lr: float, batch_size: int = 2048) -> float:
    sampler = BPRSampler(ds, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    model.on_epoch_start(1)
    users, pos, neg = sampler.epoch()
    t0 = time.perf_counter()
    for start in range(0, len(users), batch_size):
        sl = slice(start, start + batch_size)
        opt.zero_grad(set_to_none=True)
        model.training_loss(users[sl], pos[sl], neg[sl]).backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--vl-loss-weight", type=float, default=0.0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset(REPO.parent / "shared/data/ml100k", modalities="image,text")
    common = dict(encoder="dual", encoder_dim=128, encoder_init="runs/lmm4rec/dual_hm_d128.pt")
    ds_frozen, _ = encoder_features(ds, encoder_settings(**common), 999)
    rows = []
    for name in args.models:
        frozen = build_model(name, ds_frozen, 999)
        ds_e2e, source = encoder_features(
            ds, encoder_settings(**common, encoder_mode="end2end",
                                 vl_loss_weight=args.vl_loss_weight), 999)
        e2e = build_model(name, ds_e2e, 999)
        e2e.attach_feature_encoder(source)
        times = {"frozen": [], "end2end": []}
        for _ in range(args.repeats):
            times["frozen"].append(epoch_seconds(frozen, ds_frozen, MODELS[name]))
            times["end2end"].append(epoch_seconds(e2e, ds_e2e, MODELS[name]))
        f, e = statistics.median(times["frozen"]), statistics.median(times["end2end"])
        rows.append((name, f, e))
        print(f"{name:8s} frozen {f:7.2f} s/epoch  end2end {e:7.2f} s/epoch  x{e / f:.2f}",
              flush=True)
    print("\n| model | frozen features (s/epoch) | end-to-end (s/epoch) | ratio |")
    print("|---|---|---|---|")
    for name, f, e in rows:
        print(f"| {name} | {f:.2f} | {e:.2f} | {e / f:.2f}x |")


if __name__ == "__main__":
    main()
