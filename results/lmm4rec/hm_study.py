r"""The LMM4Rec study on H&M (e-commerce photos + descriptions), a reduced version of ml100k's.

On hm the modality-specific feature files are exactly the aligned dual encoder's two trunk outputs
(EfficientNet-Lite0 of the photo, MiniLM of the description, the same recipe; checked here on
the first 64 items), so this study uses them as the cached trunks, and "specific" differs from
the aligned settings only by the alignment heads. The "pre-trained" heads are aligned on the
other domain, ml100k's poster-plot pairs (as the ml100k study aligns on H&M), "fine-tuned" on
hm's own pairs, "end2end" trains the pre-trained heads inside the recommender.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python results/lmm4rec/hm_study.py --models vbpr lattice \\
        --out /work/runs/lmm4rec/hm          # -> <out>/<model>-<setting>/seed-<s>/metrics.json
    PYTHONPATH=$PWD python results/lmm4rec/hm_study.py --collect --out /work/runs/lmm4rec/hm

Budget as the ml100k study (at most 30 epochs, patience 5; LIRDRec 15), seeds from ``--seeds``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd
import torch

from lirdrec.data import load_dataset
from lirdrec.encoders.contrastive import fit_contrastive
from lirdrec.train import Trainer
from lirdrec.train.encoded import (
    build_encoder,
    encoder_features,
    encoder_settings,
    load_item_trunks,
    save_encoder_top,
)
from lirdrec.train.run import build_model

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ["specific", "pretrained", "finetuned", "end2end"]
LR = {"lirdrec": 1e-4}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["vbpr", "lattice", "freedom"])
    p.add_argument("--seeds", type=int, nargs="+", default=[999])
    p.add_argument("--out", default="/work/runs/lmm4rec/hm")
    p.add_argument("--collect", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    if args.collect:
        rows = []
        for f in sorted(out.glob("*/seed-*/metrics.json")):
            m = json.loads(f.read_text())
            model, setting = f.parent.parent.name.rsplit("-", 1)
            rows.append({"model": model, "setting": setting, "seed": int(f.parent.name[5:]),
                         "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
                         **{f"test/{k}": m["test"][k] for k in ("Recall@20", "NDCG@20")}})
        df = pd.DataFrame(rows)
        df.to_csv(REPO / "results/lmm4rec/hm_results.csv", index=False)
        print(df.to_string(index=False))
        return
    torch.set_num_threads(1)
    hm = load_dataset(REPO.parent / "shared/data/hm", modalities="image,text")
    settings = encoder_settings(encoder="dual", encoder_dim=128, finetune_epochs=30)
    # the trunks: hm's feature files, checked against the trunks on the first 64 items
    init = out / "dual_ml100k_d128.pt"
    if not init.is_file():
        enc = build_encoder(settings, seed=0)
        ml = load_dataset(REPO.parent / "shared/data/ml100k", modalities="image,text")
        mv, mt, paired = load_item_trunks(enc, ml, settings)
        idx = torch.nonzero(paired).squeeze(1)
        fit_contrastive(enc, mv[idx], mt[idx], epochs=30, seed=0, show_progress=False)
        save_encoder_top(init, enc)
        sub = hm.features["image"][:64], hm.features["text"][:64]
        from lirdrec.data.raw_items import read_raw_items
        from lirdrec.features.recipe import Recipe
        from lirdrec.features.text import join_fields

        recipe = Recipe.from_yaml(REPO.parent / "shared/data/hm/raw/recipe.yaml") \
            if hasattr(Recipe, "from_yaml") else None
        if recipe is not None:
            raw = read_raw_items(recipe, hm.path, raw_dir=REPO.parent / "shared/data/hm/raw")
            texts = join_fields(raw.records[:64], template=recipe.modalities["text"]["template"])
            hv = enc.image_trunk(raw.image_paths[:64])
            ht = enc.text_trunk(texts)
            logging.warning("hm trunk check (64 items): image max |diff| %.2e, text %.2e",
                            float((hv - sub[0]).abs().max()), float((ht - sub[1]).abs().max()))
    trunks = (hm.features["image"], hm.features["text"], None)
    for model_name in args.models:
        for seed in args.seeds:
            for setting in SETTINGS:
                run = out / f"{model_name}-{setting}" / f"seed-{seed}"
                if (run / "metrics.json").is_file():
                    continue
                if setting == "specific":
                    data, source = hm, None
                else:
                    s = {**settings, "encoder_init": str(init),
                         "encoder_mode": "pretrained" if setting == "pretrained" else setting}
                    enc = build_encoder(s, seed)
                    data, source = encoder_features(hm, s, seed, out_dir=run, encoder=enc,
                                                    trunks=trunks)
                model = build_model(model_name, data, seed)
                if source is not None:
                    model.attach_feature_encoder(source)
                epochs = 15 if model_name == "lirdrec" else 30
                Trainer(lr=LR.get(model_name, 1e-3), epochs=epochs, patience=5, seed=seed,
                        out_dir=run, show_progress=False).fit(model, data)
                logging.warning("%s done", run)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    main()
