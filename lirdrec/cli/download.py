"""``lirdrec datasets`` (what can be fetched) and ``lirdrec download NAME --out DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser"]


def _list(args: argparse.Namespace) -> int:
    from lirdrec.data.registry import DATASETS

    for d in DATASETS.values():
        how = "manual download" if d.manual else ("md5 " + d.md5 if d.md5 else "no fixed checksum")
        print(f"{d.name:18s} {d.title}  [{how}]")
        print(f"{'':18s} {d.description}")
        if args.verbose_terms:
            print(f"{'':18s} terms: {d.terms}")
    print("\n`lirdrec download NAME --out DIR` fetches one; `--terms` prints each set's terms.")
    return 0


def _download(args: argparse.Namespace) -> int:
    from lirdrec.data.download import file_digest
    from lirdrec.data.registry import fetch_raw, get_dataset, write_card
    from lirdrec.features.recipe import Recipe, prepare
    from lirdrec.utils.logging import setup_logging

    entry = get_dataset(args.name)  # an unknown name fails before anything is written
    out = Path(args.out) if args.out else Path("data") / args.name
    setup_logging(getattr(args, "verbose", 0), out / "download.log")
    raw = fetch_raw(args.name, out, url=args.url)
    recipe = Recipe.from_dict(entry.recipe(raw, text_model=args.text_model))
    modalities = [] if args.no_text else None
    ds = prepare(recipe, out, cache_dir=out / "raw" / "cache", modalities=modalities,
                 device=args.device)
    summary = ds.summary()
    archive = raw / Path(entry.url).name
    write_card(args.name, out, summary, file_digest(archive, "md5"))
    print(f"{args.name} in {out}: {summary['users']} users, {summary['items']} items, "
          f"train/valid/test {summary['train']}/{summary['valid']}/{summary['test']}; "
          f"card: {out / 'README.md'}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("datasets", help="list the public datasets `lirdrec download` can fetch")
    p.add_argument("--terms", dest="verbose_terms", action="store_true", help="print their terms")
    p.set_defaults(func=_list)
    p = sub.add_parser("download",
                       help="fetch a public dataset into MMRec format (+ text features)")
    p.add_argument("name", help="a name from `lirdrec datasets`")
    p.add_argument("--out", help="dataset folder (default data/NAME)")
    p.add_argument("--url", help="a mirror of the same archive (the checksum still applies)")
    p.add_argument("--text-model", help="sentence-transformers model (default all-MiniLM-L6-v2)")
    p.add_argument("--no-text", action="store_true", help="interactions only, no text features")
    p.add_argument("--device", help="device for the text encoder")
    p.set_defaults(func=_download)
