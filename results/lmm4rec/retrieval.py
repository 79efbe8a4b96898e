"""The aligned dual encoder of the LMM4Rec study: its "pre-training" and its retrieval recall.

No CLIP weights are available offline, so the aligned dual encoder (frozen EfficientNet-Lite0 +
all-MiniLM-L6-v2 trunks, trainable linear heads; a stand-in for CLIP) is "pre-trained" the way
CLIP is, on image-text pairs of another domain: the 3,186 H&M product photos and descriptions
(``../shared/data/hm``; its ``image_feat.npy`` / ``text_feat.npy`` ARE the two trunks' outputs,
made by the same recipe). Those heads are the ``pretrained`` encoder of the study
(``encoder_init``); ``finetuned`` fits them further on ml100k's own poster-plot pairs.

Image->text Recall@10 is measured on held-out pairs (10 % of the paired items, per seed):
hm before / after the alignment, ml100k with random heads, the hm-aligned heads, and after
fine-tuning on the other 90 % of ml100k's pairs.

Run from the repository root (about a minute once the ml100k trunks are cached)::

    PYTHONPATH=$PWD python results/lmm4rec/retrieval.py    # -> runs/lmm4rec/, results/lmm4rec/
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from lirdrec.data import load_dataset
from lirdrec.encoders.contrastive import fit_contrastive, retrieval_recall
from lirdrec.train.encoded import (
    build_encoder,
    encoder_settings,
    load_item_trunks,
    save_encoder_top,
)

REPO = Path(__file__).resolve().parents[2]


def recall(enc, hv, ht, k=10):
    with torch.no_grad():
        return retrieval_recall(enc.image_top(hv), enc.text_top(ht), k)


def split(n: int, seed: int, held: float = 0.1):
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(round(n * held))
    return perm[cut:], perm[:cut]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[999, 1000])
    p.add_argument("--init-out", default="runs/lmm4rec/dual_hm_d128.pt")
    p.add_argument("--json", default=str(REPO / "results/lmm4rec/retrieval.json"))
    p.add_argument("--small", action="store_true", help="a few epochs, one seed (CI)")
    args = p.parse_args(argv)
    if args.small:
        args.epochs, args.seeds = 3, args.seeds[:1]
    settings = encoder_settings(encoder="dual", encoder_dim=args.dim, finetune_lr=args.lr,
                                finetune_epochs=args.epochs)
    out: dict = {"settings": {"dim": args.dim, "epochs": args.epochs, "lr": args.lr,
                              "batch_size": 256, "k": 10, "held_out": 0.1}, "hm": {}, "ml100k": {}}

    # 1. "pre-training": align the heads on all H&M pairs but a held-out 10 % (seed 0)
    hm = load_dataset(REPO.parent / "shared/data/hm", modalities="image,text")
    hv, ht = hm.features["image"], hm.features["text"]
    tr, te = split(hm.num_items, 0)
    enc = build_encoder(settings, seed=0)
    out["hm"]["random_heads"] = recall(enc, hv[te], ht[te])
    fit_contrastive(enc, hv[tr], ht[tr], epochs=args.epochs, lr=args.lr, seed=0)
    out["hm"]["aligned"] = recall(enc, hv[te], ht[te])
    out["hm"]["pairs"] = [len(tr), len(te)]
    init = Path(args.init_out)
    save_encoder_top(init, enc)
    logging.info("hm-aligned heads saved to %s", init)

    # 2. ml100k: posters and "title. plot" through the same trunks (raw items)
    ml = load_dataset(REPO.parent / "shared/data/ml100k", modalities="image,text")
    mv, mt, paired = load_item_trunks(enc, ml, settings)
    idx = torch.nonzero(paired).squeeze(1)
    out["ml100k"]["paired_items"] = int(len(idx))
    for seed in args.seeds:
        tr, te = split(len(idx), seed)
        tr, te = idx[tr], idx[te]
        row = {"pairs": [len(tr), len(te)]}
        row["random_heads"] = recall(build_encoder(settings, seed=seed), mv[te], mt[te])
        pre = build_encoder({**settings, "encoder_init": str(init)})
        row["pretrained"] = recall(pre, mv[te], mt[te])
        fit_contrastive(pre, mv[tr], mt[tr], epochs=args.epochs, lr=args.lr, seed=seed)
        row["finetuned"] = recall(pre, mv[te], mt[te])
        out["ml100k"][f"seed-{seed}"] = row
    text = json.dumps(out, indent=2)
    print(text)
    if not args.small:
        Path(args.json).write_text(text + "\n")
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
