"""Per-epoch training time of the ten zoo models (issue 17) beside MMRec's, side by side.

For each dataset and model, the reference (``benchmarks/reference_run.sh``: GitHub
``enoche/MMRec``, GPL-3.0, run from YOUR checkout) and ours (``lirdrec train``) train
``--epochs`` epochs at the same point (our ``datasets/configs/<model>.yaml`` = the reference's
defaults; the reference's grid lists pinned to the same first values), one after the other,
alternating which goes first, so that drift of a shared machine hits both.

What is timed, per epoch, excluding evaluation: the reference's ``epoch N training [time: ...]``
(its ``pre_epoch_processing``, the batches' sampling, forward, backward and step, the lr
scheduler) and our ``log.csv`` ``train_s`` (sampling, forward, backward and step; the model's
``on_epoch_start`` runs just before it, a no-op at these points: only LayerGCN has one and its
dropout is 0). The table gives the median over the epochs. ItemKNNCBF trains nothing (both log
0 s), so its row gives the wall time of the whole process (loading, kNN graph, one evaluation).

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/time_reference_zoo.py REF_CHECKOUT \
        [--epochs 3] [--data tiktok ml100k] [--models ItemKNNCBF LayerGCN ...] [--json OUT]

Data: ``../shared/data/ml100k`` (image + text) and ``../shared/data/tiktok`` (its image features
given as both modalities: ``image,image`` for us, ``text_feat.npy`` = ``image_feat.npy`` for the
reference, in a temporary copy).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

#: MMRec model name -> its grid lists pinned to our defaults (the first value of each).
REFERENCE_POINT: dict[str, list[str]] = {
    "ItemKNNCBF": [],
    "LayerGCN": ["n_layers=[4]", "reg_weight=[1e-02]", "dropout=[0.0]"],
    "MMGCN": ["reg_weight=[0]", "learning_rate=[0.001]"],
    "GRCN": ["reg_weight=[0.1]", "learning_rate=[0.001]"],
    "DualGNN": ["reg_weight=[0.1]", "learning_rate=[0.001]"],
    "SLMRec": ["reg=[0.0001]", "learning_rate=[0.001]", "ssl_alpha=[0.01]", "ssl_temp=[0.1]"],
    "DRAGON": ["reg_weight=[0.1]", "learning_rate=[0.001]"],
    "MGCN": ["cl_loss=[0.001]"],
    "LGMRec": [],
    "SMORE": ["n_ui_layers=[3]", "image_knn_k=[10]", "text_knn_k=[10]", "reg_weight=[1e-5]",
              "dropout_rate=[0]"],
}
MODALITIES = {"ml100k": "image,text", "tiktok": "image,image"}
_TRAIN = re.compile(r"epoch (\d+) training \[time: ([0-9.]+)s")


def reference_data(name: str, tmp: Path) -> Path:
    """An MMRec-format copy of ``../shared/data/<name>`` (tiktok: image features twice)."""
    src, dst = SHARED / name, tmp / name
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / f"{name}.inter", dst)
    shutil.copy(src / "image_feat.npy", dst)
    text = src / "text_feat.npy" if MODALITIES[name] == "image,text" else src / "image_feat.npy"
    shutil.copy(text, dst / "text_feat.npy")
    return dst


def run_reference(ref: Path, model: str, data: Path, epochs: int) -> dict:
    # ItemKNNCBF keeps its own epochs: 1 (more would only repeat its evaluation)
    epochs_set = [] if model == "ItemKNNCBF" else [f"epochs={epochs}"]
    cmd = [str(REPO / "benchmarks" / "reference_run.sh"), str(ref), model, str(data),
           *epochs_set, "seed=[999]", *REFERENCE_POINT[model]]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"reference {model} failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    log = re.search(r"\(log: (.*)\)", proc.stdout).group(1)
    times = [float(s) for _, s in _TRAIN.findall(Path(log).read_text())]
    return {"epoch_s": times, "wall_s": wall, "log": log}


def run_ours(model: str, name: str, epochs: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "lirdrec", "-q", "train", "--model", model.lower(),
           "--data", str(SHARED / name), "--config",
           str(REPO / "datasets" / "configs" / f"{model.lower()}.yaml"),
           "--set", f"modalities={MODALITIES[name]}", "--epochs", str(epochs), "--seed", "999",
           "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"ours {model} failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    log = out / "log.csv"
    times = []
    if log.exists():
        with open(log, newline="") as fh:
            times = [float(row["train_s"]) for row in csv.DictReader(fh)]
    return {"epoch_s": times, "wall_s": wall, "out": str(out)}


def per_epoch(res: dict, untrained: bool) -> float:
    return res["wall_s"] if untrained else statistics.median(res["epoch_s"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ref", type=Path, help="checkout of GitHub enoche/MMRec")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data", nargs="+", default=["tiktok", "ml100k"], choices=list(MODALITIES))
    ap.add_argument("--models", nargs="+", default=list(REFERENCE_POINT),
                    choices=list(REFERENCE_POINT))
    ap.add_argument("--json", type=Path, help="also write the raw timings here")
    args = ap.parse_args(argv)

    rows, raw = [], []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        i = 0
        for name in args.data:
            data = reference_data(name, tmp / "mmrec")
            for model in args.models:
                untrained = model == "ItemKNNCBF"
                runs = {}
                order = ("ref", "ours") if i % 2 == 0 else ("ours", "ref")
                i += 1
                for who in order:
                    if who == "ref":
                        runs[who] = run_reference(args.ref.resolve(), model, data, args.epochs)
                    else:
                        runs[who] = run_ours(model, name, args.epochs, tmp / f"ours-{name}-{model}")
                    print(f"{name} {model} {who}: {runs[who]['epoch_s']} "
                          f"(wall {runs[who]['wall_s']:.1f} s)", file=sys.stderr, flush=True)
                r, o = per_epoch(runs["ref"], untrained), per_epoch(runs["ours"], untrained)
                rows.append((name, model, "whole run, s" if untrained else "s/epoch", r, o, o / r))
                raw.append({"data": name, "model": model, "first": order[0], **{
                    f"{who}_{k}": v for who in runs for k, v in runs[who].items()}})
    print("| data | model | what | MMRec | lirdrec | ratio (target <= 0.7) |")
    print("|---|---|---|---|---|---|")
    for name, model, what, r, o, ratio in rows:
        print(f"| {name} | {model} | {what} | {r:.3f} | {o:.3f} | {ratio:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
