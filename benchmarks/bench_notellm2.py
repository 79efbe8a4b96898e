"""NoteLLM-2 throughput: training pairs/s, inference items/s, vision images/s and peak RSS.

Default backbones: SmolLM2-135M-Instruct (offline GGUF, converted once and cached) and
EfficientNet-Lite0 on ml100k posters; prompts are real ml100k titles and plots. Run from the
repository root::

    OMP_NUM_THREADS=1 python benchmarks/bench_notellm2.py                  # all 30 layers
    OMP_NUM_THREADS=1 python benchmarks/bench_notellm2.py --llm-num-layers 4 --qformer-layers 2

Prints a table and one JSON line. Timing is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--llm", default="SmolLM2-135M-Instruct")
    p.add_argument("--llm-num-layers", type=int)
    p.add_argument("--vision", default="efficientnet-lite0")
    p.add_argument("--variant", default="notellm2")
    p.add_argument("--qformer-layers", type=int, default=6)
    p.add_argument("--num-query-tokens", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8, help="pairs per training step")
    p.add_argument("--steps", type=int, default=3, help="timed training steps (after 1 warm-up)")
    p.add_argument("--items", type=int, default=64, help="items encoded for inference speed")
    p.add_argument("--images", type=int, default=64, help="posters through the vision tower")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--cache-dir", default=".lirdrec_cache")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    import warnings

    from lirdrec.data.raw_items import read_raw_items
    from lirdrec.encoders.notellm2 import NoteLLM2, load_llm
    from lirdrec.encoders.notellm2.model import ItemInputs
    from lirdrec.encoders.notellm2.vision import VisionTower
    from lirdrec.features.recipe import Recipe

    warnings.simplefilter("ignore")
    raw = read_raw_items(
        Recipe.from_yaml(REPO / "datasets/ml100k/recipe.yaml"),
        REPO.parent / "shared/data/ml100k",
        raw_dir=REPO.parent / "shared/data/ml100k/raw",
    )
    n = max(a.items, 2 * a.batch_size)
    sub = raw.subset(np.arange(n))
    # vision: images/s of the frozen tower (uncached)
    tower = VisionTower(a.vision)
    paths = [q for q in raw.image_paths if q is not None and q.is_file()][: a.images]
    t0 = time.perf_counter()
    tokens, _ = tower.encode(paths, cache=None, show_progress=False)
    vision_ips = len(paths) / (time.perf_counter() - t0)
    vis = np.resize(tokens, (n,) + tokens.shape[1:]).astype(np.float16)
    items = ItemInputs(list(sub.titles), sub.field("Summary"), vis)

    torch.manual_seed(0)
    tok, llm = load_llm(a.llm, cache_dir=Path(a.cache_dir) / "llm", num_layers=a.llm_num_layers)
    model = NoteLLM2(
        llm,
        tok,
        vision_dim=tower.dim,
        variant=a.variant,
        qformer_layers=a.qformer_layers,
        num_query_tokens=a.num_query_tokens,
    )
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    model.train()
    times = []
    for step in range(a.steps + 1):
        idx = np.arange(step * 2 * a.batch_size, (step + 1) * 2 * a.batch_size) % n
        t = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=a.bf16):
            out = model(**model.batch(items, idx))
        loss = model.loss({k: (v.float() if v is not None else None) for k, v in out.items()})
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step:
            times.append(time.perf_counter() - t)
    pairs_ps = a.batch_size / float(np.mean(times))
    t = time.perf_counter()
    model.encode(items, batch_size=32, show_progress=False, autocast_bf16=a.bf16)
    items_ps = n / (time.perf_counter() - t)
    lengths = [len(r) for r in model.item_tokens(items)]
    res = {
        "llm": a.llm,
        "llm_layers": model.llm.config.num_hidden_layers,
        "vision": a.vision,
        "variant": a.variant,
        "qformer_layers": a.qformer_layers,
        "query_tokens": a.num_query_tokens,
        "batch_pairs": a.batch_size,
        "prompt_tokens_mean": round(float(np.mean(lengths)), 1),
        "trainable_params_M": round(sum(q.numel() for q in params) / 1e6, 1),
        "train_pairs_per_s": round(pairs_ps, 3),
        "sec_per_step": round(float(np.mean(times)), 2),
        "infer_items_per_s": round(items_ps, 2),
        "vision_images_per_s": round(vision_ips, 1),
        "threads": torch.get_num_threads(),
        "bf16": a.bf16,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    width = max(len(k) for k in res)
    for k, v in res.items():
        print(f"{k:<{width}}  {v}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
