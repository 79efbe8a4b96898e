"""lirdrec.data.raw_items: the one reader of a dataset's raw item table and image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lirdrec.data.raw_items import RawItems, dataset_raw_ids, read_raw_items
from lirdrec.errors import ConfigError, DataWarning, IdError, SchemaError
from lirdrec.features.recipe import Recipe

SHARED = Path("../shared/data")


def _toy(tmp_path: Path, mapping: str) -> tuple[Recipe, Path]:
    raw = tmp_path / "raw"
    (raw / "img").mkdir(parents=True)
    (raw / "items.csv").write_text("id,name,desc\n7,Seven,a seven\n3,Three,\n5,Five,a five\n")
    (raw / "img" / "3.jpg").write_bytes(b"x")
    (raw / "img" / "7.jpg").write_bytes(b"x")
    data = tmp_path / "data"
    data.mkdir()
    (data / "i_id_mapping.csv").write_text(mapping)
    recipe = Recipe.from_dict(
        {
            "name": "toy",
            "raw_dir": str(raw),
            "interactions": {"path": "u.csv"},
            "items": {"path": "items.csv", "id_col": "id", "title_col": "name"},
            "images": {"dir": "img", "pattern": "{id}.jpg"},
        }
    )
    return recipe, data


def test_items_follow_the_id_mapping_order(tmp_path):
    # itemID 0 = raw 3, 1 = raw 9 (no table row, no image), 2 = raw 7
    recipe, data = _toy(tmp_path, "item\titemID\n3\t0\n9\t1\n7\t2\n")
    with pytest.warns(DataWarning, match="1 of 3 items have no row"):
        raw = read_raw_items(recipe, data)
    assert isinstance(raw, RawItems) and len(raw) == 3
    assert raw.raw_ids.tolist() == ["3", "9", "7"]
    assert raw.titles == ["Three", "9", "Seven"]
    assert raw.field("desc") == ["", "", "a seven"]
    assert raw.has_image.tolist() == [True, False, True]
    assert raw.has_record.tolist() == [True, False, True]
    assert raw.image_paths[2] == tmp_path / "raw" / "img" / "7.jpg"
    sub = raw.subset([2, 0])
    assert sub.raw_ids.tolist() == ["7", "3"] and sub.titles == ["Seven", "Three"]


def test_explicit_raw_ids_and_argument_errors(tmp_path):
    recipe, data = _toy(tmp_path, "item\titemID\n3\t0\n")
    raw = read_raw_items(recipe, raw_ids=[5, 7])
    assert raw.titles == ["Five", "Seven"] and raw.has_image.tolist() == [False, True]
    with pytest.raises(ConfigError, match="exactly one of dataset_dir or raw_ids"):
        read_raw_items(recipe)
    with pytest.raises(SchemaError, match="i_id_mapping.csv"):
        read_raw_items(recipe, tmp_path / "nowhere")


def test_mmrec_labels_fall_back_to_table_order_only_when_sizes_match(tmp_path):
    recipe, data = _toy(tmp_path, "asin\titemID\n0_Seven\t0\n1_Three\t1\n2_Five\t2\n")
    with pytest.warns(DataWarning, match="MMRec labels"):
        raw = read_raw_items(recipe, data)
    assert raw.raw_ids.tolist() == ["7", "3", "5"]
    assert dataset_raw_ids(data).tolist() == ["0_Seven", "1_Three", "2_Five"]
    (data / "i_id_mapping.csv").write_text("asin\titemID\n0_Seven\t0\n1_Three\t1\n")
    with pytest.raises(IdError, match="2 table rows"):
        read_raw_items(recipe, data)
    (data / "i_id_mapping.csv").write_text("asin\titemID\nfoo\t0\n")
    with pytest.raises(IdError, match="no id of the mapping is in the item table"):
        read_raw_items(recipe, data)


@pytest.mark.skipif(not (SHARED / "ml100k/raw/items.csv").is_file(), reason="no shared data")
def test_ml100k_raw_items_match_the_dataset():
    recipe = Recipe.from_yaml("datasets/ml100k/recipe.yaml")
    with pytest.warns(DataWarning, match="MMRec labels"):
        raw = read_raw_items(recipe, SHARED / "ml100k")
    assert len(raw) == 1682
    # the shared mapping labels item i as "<i>_<title>"; the table's movie id is i + 1
    labels = dataset_raw_ids(SHARED / "ml100k")
    assert labels[49].startswith("49_Star Wars") and raw.titles[49] == "Star Wars (1977)"
    assert raw.raw_ids[49] == "50"
    assert int(raw.has_image.sum()) == 1682 - 26  # the dataset card's 26 missing posters
    assert np.array_equal(raw.raw_ids.astype(int), np.arange(1, 1683))


@pytest.mark.skipif(not (SHARED / "hm/raw/articles.csv").is_file(), reason="no shared data")
def test_hm_raw_items_follow_the_article_ids_of_the_mapping():
    """datasets/hm/recipe.yaml: item i is the article that hm's i_id_mapping.csv names (read here
    with the csv module, independently of lirdrec), with its title and photo."""
    import csv

    raw = read_raw_items(Recipe.from_yaml("datasets/hm/recipe.yaml"), SHARED / "hm")
    assert len(raw) == 3186 and raw.has_record.all() and raw.has_image.all()
    with open(SHARED / "hm/i_id_mapping.csv") as fh:
        article_of = {int(r["itemID"]): r["item_id"] for r in csv.DictReader(fh, delimiter="\t")}
    with open(SHARED / "hm/raw/articles.csv", newline="") as fh:
        rows = {r["article_id"]: r for r in csv.DictReader(fh)}
    assert raw.titles[:3] == [
        "20 den 1p Stockings",
        "Shape Up 30 den 1p Tights",
        "Support 40 den 1p Tights",
    ]
    for i in [0, 1, 2, 1000, 3185]:
        art = article_of[i]
        assert raw.raw_ids[i] == art
        assert raw.titles[i] == rows[art]["prod_name"]
        assert raw.records[i]["detail_desc"] == rows[art]["detail_desc"]
        assert raw.image_paths[i].name == f"{art}.jpg"
