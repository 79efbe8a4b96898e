r"""``lirdrec prepare``: raw interactions, item texts and images -> an MMRec-format dataset.

Either a recipe (``lirdrec prepare datasets/ml100k/recipe.yaml --out runs/data/ml100k``) or flags
alone for a quick build::

    lirdrec prepare --interactions ratings.csv --user-col user --item-col item \
        --items items.csv --item-id-col item --text-fields title description \
        --images posters/ --image-pattern "{id}.jpg" --image-text mllm --out runs/data/mine

Flags override the recipe's values. This module only parses arguments; the pipeline, top to
bottom, is :func:`lirdrec.features.recipe.prepare`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from lirdrec.errors import ConfigError
from lirdrec.utils.logging import setup_logging

logger = logging.getLogger(__name__)

__all__ = ["add_parser", "run", "recipe_from_args"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``prepare`` on the ``lirdrec`` sub-command parser."""
    p = subparsers.add_parser(
        "prepare",
        help="build an MMRec-format dataset (and features) from raw files",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("recipe", nargs="?", help="recipe YAML (e.g. datasets/ml100k/recipe.yaml)")
    p.add_argument("--out", help="output folder (default runs/data/<name>)")
    p.add_argument("--raw-dir", help="folder the recipe's relative paths start from")
    p.add_argument(
        "--cache-dir",
        default=".lirdrec_cache",
        help="encoder cache (default .lirdrec_cache; 'none' disables)",
    )
    p.add_argument("--modalities", help="comma-separated subset of the recipe's modalities")
    p.add_argument(
        "--image-text",
        choices=["mllm"],
        help="add the mllm_text modality: images -> captions -> embeddings, plus captions.tsv",
    )
    p.add_argument(
        "--captioner",
        help="'labels' (offline stand-in, default) or a Hugging Face image-to-text model name/path",
    )
    p.add_argument(
        "--llm",
        action="store_true",
        help="add the llm modality: the text modality's texts through the LLM embedder",
    )
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--seed", type=int, help="split seed")
    p.add_argument(
        "--write-masks",
        action="store_true",
        help="also write <modality>_mask.npy (1 = image present)",
    )
    g = p.add_argument_group("without a recipe (or overriding it)")
    g.add_argument("--name", help="dataset name (the .inter stem)")
    g.add_argument("--interactions", help="interactions CSV/TSV/Parquet")
    g.add_argument("--sep", help="field separator (default: tab for .tsv, comma otherwise)")
    g.add_argument(
        "--no-header",
        action="store_true",
        help="the table has no header line; columns are then named 0, 1, 2, ...",
    )
    g.add_argument("--user-col")
    g.add_argument("--item-col")
    g.add_argument("--rating-col")
    g.add_argument("--time-col")
    g.add_argument("--timestamp-format", help="strftime format, 'unix', or omit for automatic")
    g.add_argument(
        "--on-bad-rows",
        choices=["drop", "error"],
        help="bad rows (missing ids, unparsable values): drop with a warning or fail",
    )
    g.add_argument("--rating-threshold", type=float, help="keep rating >= this")
    g.add_argument("--user-k", type=int, help="k-core: minimum interactions per user")
    g.add_argument("--item-k", type=int, help="k-core: minimum interactions per item")
    g.add_argument("--split", choices=["random", "temporal", "leave_last"])
    g.add_argument("--items", help="item table (id -> text fields)")
    g.add_argument("--item-id-col")
    g.add_argument("--title-col")
    g.add_argument("--text-fields", nargs="+", help="item fields joined into the text modality")
    g.add_argument("--text-template", help="e.g. '{title}. {description}' (instead of fields)")
    g.add_argument("--images", help="image folder")
    g.add_argument("--image-pattern", help="file name per item id (default '{id}.jpg')")
    p.set_defaults(func=run)
    return p


def _set(d: dict, key: str, value: Any) -> None:
    if value is not None:
        d[key] = value


def recipe_from_args(args: argparse.Namespace):
    """The recipe YAML (if any) with the command-line flags applied on top."""
    from lirdrec.features.recipe import Recipe, read_recipe

    data = read_recipe(args.recipe)
    _set(data, "raw_dir", args.raw_dir)
    _set(data, "name", args.name)
    inter = dict(data.get("interactions") or {})
    _set(inter, "path", args.interactions)
    _set(inter, "sep", args.sep)
    if args.no_header:
        inter["header"] = False
    for key in (
        "user_col",
        "item_col",
        "rating_col",
        "time_col",
        "timestamp_format",
        "on_bad_rows",
    ):
        _set(inter, key, getattr(args, key))
    if inter:
        data["interactions"] = inter
    filt = dict(data.get("filter") or {})
    _set(filt, "rating_threshold", args.rating_threshold)
    _set(filt, "user_k", args.user_k)
    _set(filt, "item_k", args.item_k)
    data["filter"] = filt
    split = dict(data.get("split") or {})
    _set(split, "method", args.split)
    _set(split, "seed", args.seed)
    data["split"] = split
    if args.items:
        items = dict(data.get("items") or {})
        items["path"] = args.items
        _set(items, "id_col", args.item_id_col)
        _set(items, "title_col", args.title_col)
        data["items"] = items
    if args.images:
        images = dict(data.get("images") or {})
        images["dir"] = args.images
        _set(images, "pattern", args.image_pattern)
        data["images"] = images
    mods = dict(data.get("modalities") or {})
    if args.text_fields or args.text_template:
        mods["text"] = {
            "encoder": "text",
            **(
                {"template": args.text_template}
                if args.text_template
                else {"fields": args.text_fields}
            ),
        }
    if args.images and "image" not in mods:
        mods["image"] = {"encoder": "image"}
    if args.image_text == "mllm":
        spec = dict(mods.get("mllm_text") or {"encoder": "mllm"})
        _set(spec, "captioner", args.captioner)
        mods["mllm_text"] = spec
    elif args.captioner and "mllm_text" in mods:
        mods["mllm_text"] = dict(mods["mllm_text"], captioner=args.captioner)
    if args.llm:
        if "llm" not in mods:
            text = mods.get("text")
            if text is None:
                raise ConfigError(
                    "prepare: --llm embeds the text modality's texts; define text first"
                )
            mods["llm"] = {
                "encoder": "llm",
                **{k: v for k, v in text.items() if k in ("template", "fields", "sep")},
            }
    data["modalities"] = mods
    if args.write_masks:
        data["write_masks"] = True
    if "name" not in data:
        data["name"] = Path(args.out).name if args.out else "dataset"
    return Recipe.from_dict(data)


def run(args: argparse.Namespace) -> int:
    """Build the dataset, then load it once with every check (as ``lirdrec validate``)."""
    from lirdrec.features.recipe import prepare

    recipe = recipe_from_args(args)
    out = Path(args.out) if args.out else Path("runs") / "data" / recipe.name
    setup_logging(getattr(args, "verbose", 0), out / "prepare.log")
    modalities = None
    if args.modalities:
        modalities = [m for m in args.modalities.replace(" ", "").split(",") if m]
        if args.image_text == "mllm" and "mllm_text" not in modalities:
            modalities.append("mllm_text")
        if args.llm and "llm" not in modalities:
            modalities.append("llm")
    cache = None if str(args.cache_dir).lower() == "none" else args.cache_dir
    ds = prepare(recipe, out, cache_dir=cache, modalities=modalities, device=args.device)
    s = ds.summary()
    print(
        f"prepared {s['name']} in {out}: {s['users']} users, {s['items']} items, "
        f"train/valid/test {s['train']}/{s['valid']}/{s['test']}"
    )
    for m, shape in s["features"].items():
        print(f"  {m}_feat.npy: {shape[0]} x {shape[1]}")
    if (out / "captions.tsv").is_file():
        print(f"  captions: {out / 'captions.tsv'}")
    return 0
