r"""``lirdrec represent``: train, evaluate and export an I2I item representation model (NoteLLM-2).

Three sub-commands (run from the repository root)::

    # train (pairs from the dataset's training interactions; raw items through the recipe)
    lirdrec represent train --data ../shared/data/ml100k --recipe datasets/ml100k/recipe.yaml \\
        --text-template "{Summary}" --variant notellm2 --out runs/notellm2-ml100k
    lirdrec represent train --resume runs/notellm2-ml100k          # continue an interrupted run
    # I2I Recall on the test pairs: a trained run (inputs both / image only / text only),
    # a frozen feature file, or the untuned LLM
    lirdrec represent evaluate --run runs/notellm2-ml100k --modes both,image,text
    lirdrec represent evaluate --data ../shared/data/ml100k --features image_feat.npy
    # item vectors -> <name>_feat.npy in a dataset directory (copied from --data when new)
    lirdrec represent export runs/notellm2-ml100k --out runs/data/ml100k-nl2 --name notellm2

Then ``lirdrec train --model lirdrec --data runs/data/ml100k-nl2 --set modalities=notellm2,text``.
Keys of :class:`~lirdrec.encoders.notellm2.NoteLLM2` and
:class:`~lirdrec.train.represent.RepresentationTrainer` not given as flags go through
``--set KEY=VALUE`` (values parsed by ``yaml.safe_load``; unknown keys are an error).
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from lirdrec.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

__all__ = ["add_parser", "run"]

_TRAINER_FLAGS = ("lr", "epochs", "batch_size", "max_steps", "eval_every", "bf16", "seed")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``represent`` on the ``lirdrec`` sub-command parser."""
    p = subparsers.add_parser(
        "represent",
        help="train / evaluate / export an I2I representation model (NoteLLM-2)",
        description=__doc__.split("\n\n")[0],
    )
    sub = p.add_subparsers(dest="represent_command", required=True, metavar="ACTION")

    def data_options(q, required=False):
        q.add_argument("--data", required=required, help="MMRec-format dataset directory")
        q.add_argument(
            "--recipe", help="dataset recipe (item table, images); e.g. datasets/ml100k/recipe.yaml"
        )
        q.add_argument("--raw-dir", help="overrides the recipe's raw_dir")
        q.add_argument(
            "--text-template",
            help="item content from the item table, e.g. "
            "'{Summary}' (default: the recipe's text modality template)",
        )
        q.add_argument(
            "--vision",
            default="efficientnet-lite0",
            help="vision encoder: efficientnet-lite0 or a Hugging Face model",
        )
        q.add_argument("--top-k", type=int, default=10, help="partners per item (pairs)")
        q.add_argument("--valid", type=float, default=0.1, help="share of validation pairs")
        q.add_argument("--test", type=float, default=0.1, help="share of test pairs")
        q.add_argument("--pair-seed", type=int, default=999, help="seed of the pair split")
        q.add_argument(
            "--cache-dir",
            default=".lirdrec_cache",
            help="vision tokens and converted LLM weights (default .lirdrec_cache)",
        )
        q.add_argument("--device", default="cpu")

    t = sub.add_parser("train", help="fine-tune on the dataset's co-occurrence pairs")
    data_options(t)
    t.add_argument("--out", help="run directory (default runs/represent-<variant>-<data>-<time>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    t.add_argument(
        "--variant", default="notellm2", help="text, basic, micl, late_fusion or notellm2 (default)"
    )
    t.add_argument("--llm", default="SmolLM2-135M-Instruct", help="causal LM name or folder")
    t.add_argument("--gguf-file", help="GGUF file inside --llm")
    t.add_argument("--llm-num-layers", type=int, help="keep only the first N decoder layers")
    t.add_argument("--connector", default="qformer", help="qformer (default) or mlp")
    t.add_argument("--lora-r", type=int, default=0, help="LoRA rank (0 = full fine-tuning)")
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--batch-size", type=int, default=8, help="pairs per step")
    t.add_argument("--max-steps", type=int)
    t.add_argument("--eval-every", type=int, help="evaluate / checkpoint every N steps")
    t.add_argument("--max-train-pairs", type=int, help="subsample the training pairs")
    t.add_argument("--seed", type=int, default=999)
    t.add_argument(
        "--modes",
        default="both,image,text",
        help="inputs of the final test evaluation: both (always), image (image only), text "
        "(text only); default both,image,text (the visual-neglect check)",
    )
    t.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any NoteLLM2 / RepresentationTrainer argument, e.g. --set num_query_tokens=8",
    )
    t.set_defaults(func=run)

    e = sub.add_parser("evaluate", help="I2I Recall on the test pairs")
    data_options(e)
    e.add_argument("--run", help="a trained run directory (its data and pairs settings)")
    e.add_argument("--modes", default="both", help="run inputs: both,image,text")
    e.add_argument("--features", help="frozen vectors: a .npy (I, d); relative to --data")
    e.add_argument("--untuned-llm", help="the untuned LLM's pooled state on the text prompt")
    e.add_argument("--llm-num-layers", type=int)
    e.add_argument("--split", default="test", help="test (default) or valid")
    e.add_argument("--json", help="append the result as a JSON line to this file")
    e.set_defaults(func=run)

    x = sub.add_parser("export", help="write the item vectors as <name>_feat.npy")
    x.add_argument("run_dir")
    x.add_argument("--out", required=True, help="dataset directory to write into")
    x.add_argument("--name", default="notellm2", help="modality name (default notellm2)")
    x.add_argument("--mode", default="both", help="inputs: both (default), image or text")
    x.add_argument("--data", help="source dataset (default: the run's)")
    x.set_defaults(func=run)
    return p


# ----------------------------------------------------------------------------- helpers
def _parse_sets(sets: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _parse_modes(modes: str) -> list[str]:
    """``"both,image"`` -> ``["both", "image"]``; an unknown input mode is a ConfigError."""
    out = [m.strip() for m in str(modes).split(",") if m.strip()]
    bad = [m for m in out if m not in ("both", "image", "text")]
    if bad or not out:
        raise ConfigError(
            f"represent: --modes must be a comma list of both, image, text; got {modes!r}"
        )
    return out


def _route(sets: dict[str, Any]) -> tuple[dict, dict]:
    from lirdrec.encoders.notellm2 import NoteLLM2
    from lirdrec.train.represent import RepresentationTrainer

    skip = {"self", "llm", "tokenizer", "vision_dim", "vision_tower", "source"}
    model_keys = set(inspect.signature(NoteLLM2.__init__).parameters) - skip
    trainer_keys = set(inspect.signature(RepresentationTrainer.__init__).parameters) - {
        "self",
        "out_dir",
        "device",
    }
    model, trainer = {}, {}
    for k, v in sets.items():
        if k in model_keys:
            model[k] = v
        elif k in trainer_keys:
            trainer[k] = v
        else:
            raise ConfigError(
                f"represent: unknown key {k!r}; valid: {sorted(model_keys | trainer_keys)}"
            )
    return model, trainer


def ds_items(args: dict) -> int:
    """Number of items of the run's dataset (its id mapping, no feature loading)."""
    from lirdrec.data.build import read_id_mapping

    return len(read_id_mapping(Path(args["data"]) / "i_id_mapping.csv"))


def _text_template(args, recipe) -> str:
    if args.get("text_template"):
        return args["text_template"]
    spec = recipe.modalities.get("text", {})
    if "template" in spec:
        return spec["template"]
    raise ConfigError("represent: give --text-template (the recipe has no text template)")


def _load_inputs(args: dict, with_vision: bool):
    """Dataset, raw items, pairs and item inputs from the run arguments."""
    from lirdrec.data import load_dataset
    from lirdrec.data.pairs import dataset_pairs
    from lirdrec.data.raw_items import read_raw_items
    from lirdrec.encoders.notellm2.data import item_inputs
    from lirdrec.features.recipe import Recipe

    if not args.get("data") or not args.get("recipe"):
        raise ConfigError("represent: --data and --recipe are required")
    ds = load_dataset(args["data"])
    recipe = Recipe.from_yaml(args["recipe"])
    raw = read_raw_items(recipe, args["data"], raw_dir=args.get("raw_dir"))
    if len(raw) != ds.num_items:
        raise ConfigError(
            f"represent: {len(raw)} raw items for {ds.num_items} dataset items in {args['data']}"
        )
    pairs = dataset_pairs(
        ds,
        top_k=args["top_k"],
        valid=args["valid"],
        test=args["test"],
        seed=args["pair_seed"],
        max_train_pairs=args.get("max_train_pairs"),
    )
    cache = None if str(args["cache_dir"]).lower() == "none" else Path(args["cache_dir"])
    items, present = item_inputs(
        raw,
        text_template=_text_template(args, recipe),
        vision=args["vision"] if with_vision else None,
        cache_dir=cache,
    )
    return ds, raw, pairs, items, present


def _build_model(args: dict, items, model_kw: dict):
    from lirdrec.encoders.notellm2 import NoteLLM2, load_llm

    cache = None if str(args["cache_dir"]).lower() == "none" else Path(args["cache_dir"]) / "llm"
    tok, llm = load_llm(
        args["llm"],
        gguf_file=args.get("gguf_file"),
        cache_dir=cache,
        num_layers=args.get("llm_num_layers"),
    )
    vision_dim = None if items.vision is None else int(items.vision.shape[-1])
    source = {
        "llm": args["llm"],
        "gguf_file": args.get("gguf_file"),
        "llm_num_layers": args.get("llm_num_layers"),
        "vision": args["vision"],
    }
    kw = {
        "variant": args["variant"],
        "connector": args["connector"],
        "lora_r": args["lora_r"],
        "gradient_checkpointing": args["gradient_checkpointing"],
        **model_kw,
    }
    return NoteLLM2(llm, tok, vision_dim=vision_dim, source=source, **kw)


# ----------------------------------------------------------------------------- commands
def run(args: argparse.Namespace) -> int:
    """Dispatch ``represent train|evaluate|export``."""
    return {"train": _train, "evaluate": _evaluate, "export": _export}[args.represent_command](args)


def _train(ns: argparse.Namespace) -> int:
    from lirdrec.cli.main import setup_logging
    from lirdrec.train.represent import RepresentationTrainer, evaluate_i2i
    from lirdrec.utils.io import atomic_write
    from lirdrec.utils.seed import seed_everything
    from lirdrec.utils.table import format_table

    if ns.resume:
        out = Path(ns.resume)
        cfg_path = out / "config.json"
        if not cfg_path.is_file():
            raise CheckpointError(f"{cfg_path}: no run to resume")
        args = json.loads(cfg_path.read_text())["args"]
    else:
        args = {k: v for k, v in vars(ns).items() if k not in ("func", "resume")}
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = (
            Path(ns.out)
            if ns.out
            else Path("runs") / (f"represent-{ns.variant}-{Path(str(ns.data)).name}-{stamp}")
        )
    setup_logging(getattr(ns, "verbose", 0), out / "log.txt")
    model_kw, trainer_kw = _route(_parse_sets(args.get("sets", [])))
    modes = _parse_modes(args.get("modes", "both,image,text"))
    for k in _TRAINER_FLAGS:
        trainer_kw.setdefault(k, args[k])
    trainer = RepresentationTrainer(**trainer_kw, device=args["device"], out_dir=out)
    ds, raw, pairs, items, present = _load_inputs(args, with_vision=args["variant"] != "text")
    seed_everything(int(args["seed"]))
    model = _build_model(args, items, model_kw)
    if not ns.resume:
        out.mkdir(parents=True, exist_ok=True)
        from lirdrec.utils.provenance import code_version

        with atomic_write(out / "config.json", "w") as fh:
            json.dump(
                {
                    "args": args,
                    "model": model.config,
                    "trainer": trainer.settings(),
                    "pairs": pairs.sizes(),
                    "items_with_image": int(present.sum()),
                    "code": code_version(),
                },
                fh,
                indent=2,
                default=str,
            )
        np.savez(out / "pairs.npz", train=pairs.train, valid=pairs.valid, test=pairs.test)
    elif not (out / "checkpoint.pt").is_file():
        raise CheckpointError(f"{out}: no checkpoint.pt (no evaluation step finished yet)")
    logger.info("pairs: %s; model: %s", pairs.sizes(), model.extra_repr())
    result = trainer.fit(model, items, pairs, resume=bool(ns.resume))
    # the visual-neglect check: the best model with image-only and text-only inputs
    by_input = {"both": result.test}
    if model.use_image and len(pairs.test):
        for mode in (m for m in modes if m != "both"):
            by_input[mode] = evaluate_i2i(
                model,
                items,
                pairs.test,
                trainer.ks,
                trainer.eval_batch_size,
                mode=mode,
                show_progress=False,
            )
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["test_by_input"] = by_input
    with atomic_write(out / "metrics.json", "w") as fh:
        json.dump(metrics, fh, indent=2)
    rows = [{"input": m, **{k: v for k, v in r.items()}} for m, r in by_input.items()]
    print(format_table(rows))
    print(
        f"best step {result.best_step}; valid {trainer.valid_metric} "
        f"{result.valid[trainer.valid_metric]:.4f}; {result.pairs_per_second} pairs/s"
    )
    print(f"run directory: {out}")
    return 0


def _evaluate(ns: argparse.Namespace) -> int:
    from lirdrec.cli.main import setup_logging
    from lirdrec.evaluate.i2i import I2I_KS, i2i_recall
    from lirdrec.utils.table import format_table

    setup_logging(getattr(ns, "verbose", 0))
    given = [x for x in (ns.run, ns.features, ns.untuned_llm) if x]
    if len(given) != 1:
        raise ConfigError(
            "represent evaluate: give exactly one of --run, --features, --untuned-llm"
        )
    rows = []
    if ns.run:
        from lirdrec.encoders.notellm2 import NoteLLM2

        run_dir = Path(ns.run)
        args = json.loads((run_dir / "config.json").read_text())["args"]
        if ns.data:
            args["data"] = ns.data
        _, _, pairs, items, _ = _load_inputs(args, with_vision=args["variant"] != "text")
        model = NoteLLM2.load(run_dir / "best")
        for mode in _parse_modes(ns.modes):
            if mode != "both" and not model.use_image:
                continue
            emb = model.encode(items, mode=mode)
            rows.append(
                {
                    "what": f"{run_dir.name}",
                    "input": mode,
                    **i2i_recall(emb, getattr(pairs, ns.split), I2I_KS),
                }
            )
    else:
        args = {k: v for k, v in vars(ns).items() if k != "func"}
        if ns.features:
            from lirdrec.data import load_dataset
            from lirdrec.data.pairs import dataset_pairs

            ds = load_dataset(args["data"])
            pairs = dataset_pairs(
                ds, top_k=ns.top_k, valid=ns.valid, test=ns.test, seed=ns.pair_seed
            )
            path = Path(ns.features)
            if not path.is_file():
                path = Path(ns.data) / ns.features
            emb = np.load(path, allow_pickle=False)
            what = path.name
        else:
            from lirdrec.encoders.notellm2 import NoteLLM2, load_llm

            _, _, pairs, items, _ = _load_inputs(args, with_vision=False)
            cache = None if str(ns.cache_dir).lower() == "none" else Path(ns.cache_dir) / "llm"
            tok, llm = load_llm(ns.untuned_llm, cache_dir=cache, num_layers=ns.llm_num_layers)
            model = NoteLLM2(llm, tok, variant="text")
            emb = model.encode(items, output="h_mm")
            what = f"untuned {ns.untuned_llm}"
        if emb.ndim != 2 or emb.shape[0] != ds_items(args):
            raise ConfigError(f"represent evaluate: vectors must be (I, d), got {emb.shape}")
        rows.append(
            {"what": what, "input": "-", **i2i_recall(emb, getattr(pairs, ns.split), I2I_KS)}
        )
    print(format_table(rows))
    if ns.json:
        with open(ns.json, "a") as fh:
            for r in rows:
                fh.write(json.dumps({**r, "split": ns.split}) + "\n")
    return 0


def _export(ns: argparse.Namespace) -> int:
    from lirdrec.cli.main import setup_logging
    from lirdrec.data import load_dataset
    from lirdrec.encoders.notellm2 import NoteLLM2
    from lirdrec.utils.io import atomic_write

    setup_logging(getattr(ns, "verbose", 0))
    run_dir = Path(ns.run_dir)
    cfg = run_dir / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"{cfg}: not a represent run directory")
    args = json.loads(cfg.read_text())["args"]
    if ns.data:
        args["data"] = ns.data
    src, dst = Path(args["data"]), Path(ns.out)
    saved = run_dir / "item_vectors.npy"
    if ns.mode == "both" and saved.is_file() and not ns.data:  # the best model's, from training
        emb = np.load(saved, allow_pickle=False).astype(np.float32)
    else:
        _, _, _, items, _ = _load_inputs(args, with_vision=args["variant"] != "text")
        model = NoteLLM2.load(run_dir / "best")
        emb = model.encode(items, mode=ns.mode).astype(np.float32)
    if dst.resolve() != src.resolve():
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file() and (f.suffix in (".inter", ".npy") or f.name.endswith("mapping.csv")):
                if not (dst / f.name).exists():
                    shutil.copy2(f, dst / f.name)
    with atomic_write(dst / f"{ns.name}_feat.npy", "wb") as fh:
        np.save(fh, emb, allow_pickle=False)
    ds = load_dataset(dst)  # validates every file, the new one included
    print(
        f"wrote {dst / (ns.name + '_feat.npy')} {emb.shape}; dataset {ds.name} loads with "
        f"modalities {list(ds.modalities)}"
    )
    return 0
