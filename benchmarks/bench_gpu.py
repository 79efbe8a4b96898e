"""GPU training: epoch time and peak GPU memory of LIRDRec and LightGCN, fp32 and bfloat16.

Each configuration trains with the library's ``Trainer`` on ``--device`` (batch 2048, lr 1e-3,
valid + test evaluation after every epoch) for ``--epochs`` epochs; reported: the median
training-epoch time after the first epoch (which pays for warm-up: CUDA context, kernels,
allocator), the median evaluation time, the last epoch's loss and the peak GPU memory of the whole
fit (``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; the CPU has none).
LIRDRec's frozen kNN item graph is built once per set on ``--device`` and timed apart ("item
graph s"); the model is then built from it as ``LIRDRec.from_dataset`` does.

Data:
  tiktok  ../shared/data/tiktok (real, image features only) when present, otherwise a SYNTHETIC
          set of the TikTok shape of ``bench_lirdrec.py`` (9,300 users, 6,700 items, 42,000
          training pairs, 128-d + 768-d features); the table says which.
  100k    SYNTHETIC 100,000 items x 30,000 users, 400,000 training pairs, 128-d + 768-d.
``--small`` replaces both by tiny sets of the same kinds (seconds on a CPU: the test's mode).

bfloat16: LIRDRec's own ``autocast_dtype="bfloat16"`` (its encoders under autocast, propagation
and loss in float32); LightGCN, which has no such option, trains under ``torch.autocast(bfloat16)``
(its only products are the sparse propagation and dot products: what autocast changes there
depends on the device's kernels, so compare its loss column with fp32's).

    python benchmarks/bench_gpu.py                            # --device cuda, both sets
    python benchmarks/bench_gpu.py --device cpu --small       # the same code on tiny shapes
    python benchmarks/bench_gpu.py --data 100k --models lirdrec --dtypes bf16 --epochs 4
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TIKTOK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tiktok"
#: (users, items, training pairs) of the synthetic sets, full and ``--small``
SHAPES = {"tiktok": (9300, 6700, 42000), "100k": (30000, 100000, 400000)}
SMALL = {"tiktok": (120, 90, 900), "100k": (200, 400, 2500)}
MODELS = {"lightgcn": {"embedding_dim": 64, "num_layers": 2}, "lirdrec": {"embedding_dim": 64}}
DTYPES = ("fp32", "bf16")


def load_data(name: str, small: bool):
    """``(dataset, label)`` of the set ``name`` (see the module docstring)."""
    from bench_lirdrec import synthetic

    if name == "tiktok" and not small and TIKTOK.is_dir():
        from lirdrec.data import load_dataset

        return load_dataset(TIKTOK), "tiktok (real)"
    users, items, pairs = (SMALL if small else SHAPES)[name]
    dims = (16, 48) if small else (128, 768)
    return synthetic(users, items, pairs, dims=dims), f"{name} (synthetic)"


def item_graph(ds, device: str):
    """LIRDRec's frozen kNN item graph of ``ds`` built on ``device`` (the cosine top-k is the
    costly part: ~18 TFLOP at 100k items), returned on the CPU as ``from_dataset`` builds it;
    and the seconds it took."""
    import torch

    from lirdrec.graphs.knn import build_item_graph

    t0 = time.perf_counter()
    try:
        graph = build_item_graph({m: x.to(device) for m, x in ds.features.items()}).cpu()
    except RuntimeError as e:  # the graph is an input here, not what is measured: say, go on
        print(f"bench_gpu: the item graph could not be built on {device} ({str(e)[:120]}); "
              "built on the CPU", file=sys.stderr)
        t0 = time.perf_counter()
        graph = build_item_graph(dict(ds.features))
        return graph, f"{time.perf_counter() - t0:.3f} (cpu)"
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return graph, round(time.perf_counter() - t0, 3)


def measure(ds, model: str, dtype: str, device: str, epochs: int, graph=None) -> dict:
    """Train one configuration (LIRDRec on the item graph ``graph``); its timings, loss and peak
    GPU memory."""
    import torch

    from lirdrec.models import registry
    from lirdrec.train import Trainer
    from lirdrec.utils.seed import seed_everything

    cuda = device.startswith("cuda")
    kwargs = dict(MODELS[model])
    if model == "lirdrec":
        kwargs["item_graph"] = graph
    outer = contextlib.nullcontext()
    if dtype == "bf16":
        if model == "lirdrec":
            kwargs["autocast_dtype"] = "bfloat16"
        else:
            outer = torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    seed_everything(0)
    t0 = time.perf_counter()
    m = registry.get(model).from_dataset(ds, **kwargs)
    build_s = time.perf_counter() - t0
    trainer = Trainer(lr=1e-3, epochs=epochs, batch_size=2048, patience=epochs, seed=0,
                      device=device, show_progress=False)
    with outer:
        res = trainer.fit(m, ds)
    if cuda:
        torch.cuda.synchronize()
    hist = res.history
    later = hist[1:] or hist
    on_device = next(m.parameters()).device.type == torch.device(device).type
    return {"epoch s": round(statistics.median(r["train_s"] for r in later), 4),
            "eval s": round(statistics.median(r["eval_s"] for r in later), 4),
            "first epoch s": round(hist[0]["train_s"], 3), "build s": round(build_s, 3),
            "loss": round(hist[-1]["loss"], 5),
            "peak GPU MiB": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else "-",
            "on device": on_device}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--small", action="store_true", help="tiny shapes (the CPU test's mode)")
    p.add_argument("--data", default="tiktok,100k", help="comma-separated: tiktok, 100k")
    p.add_argument("--models", default="lightgcn,lirdrec")
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--epochs", type=int, default=3, help="the first is warm-up (default: 3)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    from lirdrec.errors import ConfigError
    from lirdrec.utils.device import check_device

    try:
        device = check_device(args.device)
    except ConfigError as e:
        print(f"bench_gpu: {e}", file=sys.stderr)
        return 1
    lists = {"--data": (args.data, SHAPES), "--models": (args.models, MODELS),
             "--dtypes": (args.dtypes, DTYPES)}
    for flag, (value, known) in lists.items():
        bad = [v for v in value.split(",") if v not in known]
        if bad:
            print(f"bench_gpu: {flag}: unknown {bad}; expected some of {','.join(known)}",
                  file=sys.stderr)
            return 1
    if args.epochs < 1:
        print(f"bench_gpu: --epochs must be at least 1, got {args.epochs}", file=sys.stderr)
        return 1

    import torch

    from lirdrec.utils.table import format_table

    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "CPU"
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, device {device} ({name}), "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for data in args.data.split(","):
        ds, label = load_data(data, args.small)
        graph, graph_s = None, "-"
        for model in args.models.split(","):
            for dtype in args.dtypes.split(","):
                row = {"data": label, "model": model, "dtype": dtype,
                       "pairs": len(ds.train), "items": ds.num_items}
                try:
                    if model == "lirdrec" and graph is None:
                        graph, graph_s = item_graph(ds, device)
                    row["item graph s"] = graph_s if model == "lirdrec" else "-"
                    row.update(measure(ds, model, dtype, device, args.epochs, graph))
                except Exception as e:  # one failing configuration must not lose the others
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                rows.append(row)
                print(json.dumps(row), flush=True)
    cols = ["data", "model", "dtype", "pairs", "epoch s", "eval s", "first epoch s",
            "item graph s", "loss", "peak GPU MiB", "on device"]
    if any("error" in r for r in rows):
        cols.append("error")
    print(format_table(rows, cols))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
