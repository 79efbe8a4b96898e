"""Public datasets lirdrec can fetch: where they come from, their terms, and how to read them.

``lirdrec datasets`` lists :data:`DATASETS`; ``lirdrec download NAME --out DIR`` runs
:func:`fetch_raw` (download with checksum and resume, safe extraction, conversion of the archive's
tables into two plain CSV files) and then the ``prepare`` pipeline on :meth:`PublicDataset.recipe`
(MMRec format plus text features), and writes the dataset card next to the data.

Sets whose host needs a browser (MMRec's Amazon files on Google Drive) are listed with their
links and a ``manual`` note instead of being fetched.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from lirdrec.data.download import fetch
from lirdrec.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

__all__ = ["PublicDataset", "DATASETS", "get_dataset", "fetch_raw", "write_card"]

GROUPLENS_TERMS = (
    "GroupLens Research, University of Minnesota: research use; acknowledge the source (cite "
    "Harper & Konstan, 2015); do not redistribute; no commercial use without permission. "
    "Full terms: the README inside the archive."
)
MOVIELENS_CITATION = (
    "F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and "
    "Context. ACM TiiS 5(4): 19. https://doi.org/10.1145/2827872"
)


@dataclass(frozen=True)
class PublicDataset:
    """One fetchable (or manually obtainable) public dataset."""

    name: str
    title: str
    url: str | None
    md5: str | None
    terms: str
    citation: str
    description: str
    convert: Callable[[Path, Path], None] | None = None  # (extracted dir, raw dir) -> tables
    manual: str | None = None  # instructions when the host cannot be fetched by a script
    files: tuple[str, ...] = field(default_factory=tuple)  # MMRec files a manual set provides

    def recipe(self, raw_dir: Path, text_model: str | None = None) -> dict[str, Any]:
        """The ``prepare`` recipe that turns :func:`fetch_raw`'s tables into MMRec format.

        Every rating is a positive (as MMRec's MovieLens copies); MMRec's per-user random split
        with seed 999; one ``text`` modality: all-MiniLM-L6-v2 of "title. Genres: a, b.".
        """
        text: dict[str, Any] = {"encoder": "text", "template": "{title}. Genres: {genres}."}
        if text_model:
            text["model_name_or_path"] = text_model
        return {
            "name": self.name,
            "raw_dir": str(raw_dir),
            "interactions": {"path": "interactions.csv", "user_col": "user", "item_col": "item",
                             "rating_col": "rating", "time_col": "timestamp",
                             "timestamp_format": "unix"},
            "filter": {"rating_threshold": None, "user_k": 1, "item_k": 1},
            "split": {"method": "random", "seed": 999, "holdout": 0.2},
            "items": {"path": "items.csv", "id_col": "item", "title_col": "title"},
            "modalities": {"text": text},
        }


# ----------------------------------------------------------------------------- converters
def _write_tables(raw: Path, ratings, movies) -> None:
    """``interactions.csv`` (user,item,rating,timestamp) and ``items.csv`` (item,title,genres)."""
    from lirdrec.utils.io import atomic_write

    with atomic_write(raw / "interactions.csv", "w") as fh:
        ratings.to_csv(fh, index=False, columns=["user", "item", "rating", "timestamp"])
    with atomic_write(raw / "items.csv", "w") as fh:
        movies.to_csv(fh, index=False, columns=["item", "title", "genres"])


def _find(root: Path, name: str) -> Path:
    hits = sorted(root.rglob(name))
    if not hits:
        raise DataError(root, expected=f"a file named {name} in the archive", found="none")
    return hits[0]


ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")


def _convert_ml100k(src: Path, raw: Path) -> None:
    """``u.data`` (tab: user item rating time) and ``u.item`` (``|``, latin-1, 19 genre flags)."""
    import pandas as pd

    ratings = pd.read_csv(_find(src, "u.data"), sep="\t", header=None,
                          names=["user", "item", "rating", "timestamp"])
    cols = ["item", "title", "release", "video", "url", *ML100K_GENRES]
    items = pd.read_csv(_find(src, "u.item"), sep="|", header=None, names=cols,
                        encoding="latin-1")
    flags = items[list(ML100K_GENRES)].to_numpy() > 0
    items["genres"] = [", ".join(g for g, on in zip(ML100K_GENRES, row) if on) for row in flags]
    _write_tables(raw, ratings, items)


def _convert_ml1m(src: Path, raw: Path) -> None:
    """``ratings.dat`` / ``movies.dat`` (``::``-separated, latin-1; genres ``A|B``)."""
    import pandas as pd

    ratings = pd.read_csv(_find(src, "ratings.dat"), sep="::", header=None, engine="python",
                          names=["user", "item", "rating", "timestamp"])
    items = pd.read_csv(_find(src, "movies.dat"), sep="::", header=None, engine="python",
                        names=["item", "title", "genres"], encoding="latin-1")
    items["genres"] = items["genres"].str.replace("|", ", ", regex=False)
    _write_tables(raw, ratings, items)


def _convert_ml_latest(src: Path, raw: Path) -> None:
    """``ratings.csv`` / ``movies.csv`` (headers ``userId,movieId,...``; genres ``A|B``)."""
    import pandas as pd

    ratings = pd.read_csv(_find(src, "ratings.csv")).rename(
        columns={"userId": "user", "movieId": "item"})
    items = pd.read_csv(_find(src, "movies.csv")).rename(columns={"movieId": "item"})
    items["genres"] = items["genres"].str.replace("|", ", ", regex=False)
    _write_tables(raw, ratings, items)


_AMAZON_MANUAL = (
    "MMRec distributes its preprocessed Amazon sets through Google Drive (links in the MMRec "
    "README, GitHub enoche/MMRec, 'Data' section), which a script cannot fetch without a "
    "browser. Download the folder by hand, then `lirdrec validate DIR` checks it."
)
_AMAZON_TERMS = ("Amazon review data (J. McAuley et al., UCSD): research use only; cite the "
                 "source papers; MMRec's preprocessing is GPL-3.0 code, the data keep their terms.")
_AMAZON_CITATION = ("J. Ni, J. Li, J. McAuley. 2019. Justifying recommendations using "
                    "distantly-labeled reviews and fine-grained aspects. EMNLP-IJCNLP.")

DATASETS: dict[str, PublicDataset] = {
    d.name: d for d in (
        PublicDataset(
            "ml-100k", "MovieLens 100K (GroupLens, 1998)",
            "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
            "0e33842e24a9c977be4e0107933c0723", GROUPLENS_TERMS, MOVIELENS_CITATION,
            "100,000 ratings (1-5) by 943 users on 1,682 movies; titles and 19 genre flags.",
            convert=_convert_ml100k),
        PublicDataset(
            "ml-1m", "MovieLens 1M (GroupLens, 2003)",
            "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
            "c4d9eecfca2ab87c1945afe126590906", GROUPLENS_TERMS, MOVIELENS_CITATION,
            "1,000,209 ratings by 6,040 users on 3,706 movies; titles and genres.",
            convert=_convert_ml1m),
        PublicDataset(
            "ml-latest-small", "MovieLens latest, small (GroupLens, updated over time)",
            "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
            None, GROUPLENS_TERMS, MOVIELENS_CITATION,
            "~100,000 ratings (0.5-5) by ~600 users on ~9,000 movies. GroupLens re-issues this "
            "archive, so it has no fixed checksum: the digest found is written into the card.",
            convert=_convert_ml_latest),
        *(PublicDataset(
            f"amazon-{key}", f"Amazon {title} (MMRec's preprocessed 5-core copy)", None, None,
            _AMAZON_TERMS, _AMAZON_CITATION,
            f"Amazon {title} reviews as MMRec prepares them: .inter, image_feat.npy (4096-d), "
            "text_feat.npy (384-d).",
            manual=_AMAZON_MANUAL, files=(f"{key}.inter", "image_feat.npy", "text_feat.npy"))
          for key, title in (("baby", "Baby"), ("sports", "Sports and Outdoors"),
                             ("clothing", "Clothing, Shoes and Jewelry"))),
    )
}


def get_dataset(name: str) -> PublicDataset:
    """The registry entry ``name`` (a ConfigError lists the known names otherwise)."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)} "
                          "(`lirdrec datasets` describes them)") from None


def _safe_extract(archive: Path, into: Path) -> None:
    """Unzip ``archive`` into ``into``, refusing members that would land outside it."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                p = PurePosixPath(member)
                if p.is_absolute() or ".." in p.parts:
                    raise DataError(archive, expected="archive members inside the archive",
                                    found=f"a member path {member!r}")
            zf.extractall(into)
    except zipfile.BadZipFile as exc:
        raise DataError(archive, expected="a zip archive", found=str(exc)) from None


def fetch_raw(name: str, out: str | Path, url: str | None = None,
              show_progress: bool | None = None) -> Path:
    """Download, verify and extract dataset ``name``, and convert its tables for ``prepare``.

    Args:
        name: a :data:`DATASETS` key.
        out: the dataset folder; the archive and tables go to ``out/raw``.
        url: another address for the same archive (a mirror; the checksum still applies).
        show_progress: download progress bar (``None``: on at INFO on a terminal).

    Returns:
        ``out/raw`` holding ``interactions.csv`` and ``items.csv``.

    Raises:
        ConfigError: unknown name, or a set that must be downloaded by hand (says how).
        DataError: download, checksum or archive problems (see :func:`lirdrec.data.download.fetch`).
    """
    entry = get_dataset(name)
    if entry.manual or entry.url is None:
        raise ConfigError(f"{name}: {entry.manual}")
    raw = Path(out) / "raw"
    archive = fetch(url or entry.url, raw / Path(entry.url).name, md5=entry.md5,
                    show_progress=show_progress)
    _safe_extract(archive, raw / "extracted")
    entry.convert(raw / "extracted", raw)
    return raw


def write_card(name: str, out: str | Path, summary: dict[str, Any], md5_found: str) -> Path:
    """``out/README.md``: origin, terms, citation, checksum and the counts of the built set."""
    from lirdrec.utils.io import atomic_write

    e = get_dataset(name)
    lines = [
        f"# {e.title}", "", e.description, "",
        f"- Source: {e.url}",
        f"- Archive md5: {md5_found}" + ("" if e.md5 else " (no published checksum)"),
        f"- Terms: {e.terms}",
        f"- Cite: {e.citation}",
        "- Built by `lirdrec download` with the recipe in `prepare.json`: every rating a "
        "positive, MMRec's per-user random split (seed 999), text features of "
        "\"title. Genres: ...\" (all-MiniLM-L6-v2).",
        f"- Users {summary['users']}, items {summary['items']}, interactions train/valid/test "
        f"{summary['train']}/{summary['valid']}/{summary['test']}.",
        "", "Do not commit or redistribute these files; fetch them again where you need them.", "",
    ]
    path = Path(out) / "README.md"
    with atomic_write(path, "w") as fh:
        fh.write("\n".join(lines))
    return path
