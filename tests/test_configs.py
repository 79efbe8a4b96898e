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
    model = path.stem.removesuffix("_grid")
    data = read_yaml(path)
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
