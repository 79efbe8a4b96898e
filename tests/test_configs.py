"""Every shipped config and grid resolves against the model it names (no drifting keys)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lirdrec.config import read_yaml, resolve
from lirdrec.models import registry

CONFIGS = Path(__file__).resolve().parents[1] / "datasets" / "configs"
FILES = sorted(CONFIGS.glob("*.yaml"))


def test_every_model_has_a_config_and_a_grid():
    for name in registry.names():
        if name == "pop":
            continue
        assert (CONFIGS / f"{name}.yaml").is_file(), name
        assert (CONFIGS / f"{name}_grid.yaml").is_file(), name


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_config_resolves(path):
    data = read_yaml(path)
    base = CONFIGS / f"{path.stem.removesuffix('_grid')}.yaml"  # a grid belongs to its config
    model = read_yaml(base).get("model") or base.stem  # lirdrec_tuned: model lirdrec
    if path.stem.endswith("_grid"):
        assert all(isinstance(v, list) and v for v in data.values())
        for key, values in data.items():
            for v in values:
                resolve(model, [{key: v}])  # raises ConfigError on unknown keys or bad types
    else:
        cfg = resolve(model, [data])
        for key, value in data.items():
            got = {**cfg.model_kwargs, **cfg.trainer_kwargs, **cfg.data,
                   "model": cfg.model}.get(key)
            assert got == value or (isinstance(value, list) and list(got) == value), key


def test_lirdrec_tuned_is_the_default_with_two_changes(tmp_path, monkeypatch):
    """Issue 18: ``--config lirdrec_tuned`` (by name, from anywhere) = lirdrec.yaml's resolved
    configuration except lr 1e-3, with its eight-point grid (whose first point is the faithful
    default's layer sum, PWC fusion and item graph); the faithful default is unchanged."""
    monkeypatch.chdir(tmp_path)
    tuned = resolve("lirdrec", [read_yaml("lirdrec_tuned")])
    default = resolve("lirdrec", [read_yaml("lirdrec")])
    t, d = tuned.to_dict(), default.to_dict()
    assert {k: (d[k], t[k]) for k in t if t[k] != d[k]} == {"lr": (1e-4, 1e-3)}
    assert read_yaml("lirdrec_tuned_grid") == {"layer_combine": ["sum", "mean"],
                                               "fusion": ["pwc", "concat"], "n_mm_layers": [1, 0]}
    assert d["layer_combine"] == "sum" and d["fusion"] == "pwc" and d["n_mm_layers"] == 1


def test_configs_ship_inside_the_package_and_load_by_name(tmp_path, monkeypatch):
    import configparser

    from lirdrec.config import PACKAGED_CONFIGS, packaged_configs, read_yaml
    from lirdrec.errors import ConfigError

    assert PACKAGED_CONFIGS.parent.name == "lirdrec" and "lirdrec" in packaged_configs()
    assert (PACKAGED_CONFIGS.parents[1] / "datasets" / "configs" / "lirdrec.yaml").is_file()
    cfg = configparser.ConfigParser()
    cfg.read(PACKAGED_CONFIGS.parents[1] / "setup.cfg")
    assert "configs/*.yaml" in cfg["options.package_data"]["lirdrec"]  # installed, not only here
    monkeypatch.chdir(tmp_path)  # away from the checkout: the name alone finds the shipped file
    assert read_yaml("lirdrec_grid") == read_yaml(PACKAGED_CONFIGS / "lirdrec_grid.yaml")
    assert read_yaml("freedom.yaml") == read_yaml(PACKAGED_CONFIGS / "freedom.yaml")
    with pytest.raises(ConfigError, match="shipped configs: bm3, bm3_grid"):
        read_yaml("nope")


def test_issue_18_switches_from_yaml_and_set():
    """Issue 18: ``negatives`` (trainer) and LIRDRec's ``layer_combine``, ``cold_item_rep``,
    ``popularity_channel`` reach their owners from a config layer or ``--set``."""
    from lirdrec.config import config_layers

    cfg = resolve("lightgcn", config_layers({"negatives": 2}, ["negatives=4"]))
    assert cfg.trainer_kwargs["negatives"] == 4
    assert resolve("lirdrec", [read_yaml(CONFIGS / "lirdrec.yaml")]).trainer_kwargs[
        "negatives"] == 1
    sets = ["layer_combine=mean", "cold_item_rep=knn", "popularity_channel=degree",
            "input_norm=none"]
    got = resolve("lirdrec", config_layers(None, sets)).model_kwargs
    assert (got["layer_combine"], got["cold_item_rep"], got["popularity_channel"],
            got["input_norm"]) == ("mean", "knn", "degree", "none")
    shipped = resolve("lirdrec", [read_yaml(CONFIGS / "lirdrec.yaml")]).model_kwargs
    assert (shipped["layer_combine"], shipped["cold_item_rep"], shipped["popularity_channel"],
            shipped["input_norm"]) == ("sum", "none", "off", "l2")
    # YAML's off / none words stay strings
    got = resolve("lirdrec", config_layers({"popularity_channel": False}, ["cold_item_rep=none"]))
    assert (got.model_kwargs["popularity_channel"], got.model_kwargs["cold_item_rep"]) == (
        "off", "none")
