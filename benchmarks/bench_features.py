"""Encoding throughput of the feature encoders on ml100k (items/s).

Usage (from the repository root; needs ../shared/data/ml100k/raw):

    python benchmarks/bench_features.py [--n-text 512] [--n-images 256] [--n-llm 64]
        [--n-captions 32] [--threads N]

Each encoder is loaded and warmed up on 4 items first (reported as "load + warm-up"), so
items/s is steady-state encoding speed. No caches are used.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import pandas as pd
import torch

RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml100k" / "raw"


def _time(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main() -> None:
    """Print one row per encoder: items, seconds, items/s, load seconds."""
    from lirdrec.features.image import ImageEncoder
    from lirdrec.features.mllm import LabelCaptioner, LLMEmbedder, load_causal_lm
    from lirdrec.features.text import TextEncoder, join_fields

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-text", type=int, default=512)
    ap.add_argument("--n-images", type=int, default=256)
    ap.add_argument("--n-llm", type=int, default=64)
    ap.add_argument("--n-captions", type=int, default=32)
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    items = pd.read_csv(RAW / "items.csv", dtype=str, keep_default_na=False)
    records = items.to_dict(orient="records")
    texts = join_fields(records, template="{movie title}. {Summary}")
    posters = sorted(RAW.glob("posters/*.jpg"), key=lambda p: int(p.stem))
    rows = []

    def bench(name, encoder_load, encode, inputs, unit):
        t0 = time.perf_counter()
        enc = encoder_load()
        encode(enc, inputs[:4])  # loads lazily-loaded models and warms up
        load_s = time.perf_counter() - t0
        secs, _ = _time(encode, enc, inputs)
        rows.append(
            {
                "encoder": name,
                "items": len(inputs),
                "seconds": f"{secs:.1f}",
                "items/s": f"{len(inputs) / secs:.1f}",
                "load + warm-up s": f"{load_s:.1f}",
                "unit": unit,
            }
        )

    bench(
        "text: all-MiniLM-L6-v2 (title + summary)",
        lambda: TextEncoder(show_progress=False, batch_size=64),
        lambda e, x: e.encode(x),
        texts[: args.n_text],
        "texts",
    )
    bench(
        "image: EfficientNet-Lite0 (posters, 224 crop)",
        lambda: ImageEncoder(show_progress=False, batch_size=32),
        lambda e, x: e.encode(x),
        posters[: args.n_images],
        "posters",
    )
    bench(
        "llm: SmolLM2-135M mean pooling (max 128 tokens)",
        lambda: (load_causal_lm(), LLMEmbedder(show_progress=False, max_length=128))[1],
        lambda e, x: e.encode(x),
        texts[: args.n_llm],
        "texts",
    )
    bench(
        "mllm: labels + SmolLM2 caption (32 new tokens)",
        lambda: LabelCaptioner(show_progress=False, max_new_tokens=32, batch_size=32),
        lambda e, x: e.caption(x),
        posters[: args.n_captions],
        "posters",
    )
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )
    cols = ["encoder", "items", "seconds", "items/s", "load + warm-up s"]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)) + " |")


if __name__ == "__main__":
    main()
