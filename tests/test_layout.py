"""The house after the move (issue 20): one CLI package, models that receive their graphs, one
argument table per class, one layering of configs."""

import importlib
from pathlib import Path

import pytest
import torch

import lirdrec
from lirdrec.config import config_layers, resolve
from lirdrec.data.synthetic import generate
from lirdrec.errors import ConfigError
from lirdrec.graphs import bipartite_adjacency, build_item_graph, build_knn_graph
from lirdrec.models import FREEDOM, LATTICE, LightGCN, LIRDRec

PACKAGE = Path(lirdrec.__file__).resolve().parent


@pytest.fixture(scope="module")
def ds():
    return generate(seed=0, num_users=40, num_items=60)


def test_every_cli_module_is_a_listed_command_with_add_parser_and_run():
    from lirdrec.cli.main import COMMANDS, build_parser

    helpers = {"__init__", "main", "common", "config", "launch"}  # launch: --nproc for commands
    modules = {p.stem for p in (PACKAGE / "cli").glob("*.py")} - helpers
    assert modules == set(COMMANDS)
    for name in COMMANDS:
        mod = importlib.import_module(f"lirdrec.cli.{name}")
        assert callable(mod.add_parser)
    choices = build_parser()._subparsers._group_actions[0].choices
    for cmd in ("demo", "validate", "train", "evaluate", "grid", "prepare", "gradient-bias",
                "experiment"):
        assert cmd in choices


def test_second_entry_points_are_gone():
    assert not (PACKAGE / "diagnostics" / "__main__.py").exists()
    assert not (PACKAGE / "diagnostics" / "cli.py").exists()
    assert not (PACKAGE / "experiments" / "cli.py").exists()
    assert "__main__" not in (PACKAGE / "diagnostics" / "gradient_bias.py").read_text()


def test_diagnostics_files_stay_small():
    files = (PACKAGE / "diagnostics").glob("*.py")
    sizes = {p.name: len(p.read_text().splitlines()) for p in files}
    assert max(sizes.values()) <= 520, sizes


def test_models_exports_every_registered_class():
    classes = {lirdrec.models.get(n).__name__ for n in lirdrec.models.names()}
    assert classes <= set(lirdrec.models.__all__)
    assert all(getattr(lirdrec.models, c) is lirdrec.models.get(c.lower()) for c in classes)


def test_argument_errors_name_the_subclass_and_use_one_template(ds):
    class WideLightGCN(LightGCN):
        pass

    adj = bipartite_adjacency(ds.num_users, ds.num_items, ds.train.users, ds.train.items)
    with pytest.raises(ConfigError,
                       match=r"^WideLightGCN: num_layers must be an int >= 0, got -1$"):
        WideLightGCN(ds.num_users, ds.num_items, adj, num_layers=-1)
    with pytest.raises(ConfigError, match=r"^LightGCN: adj must be a tensor of shape \(100, 100\), "
                                          r"got \(3, 3\)$"):
        LightGCN(ds.num_users, ds.num_items, torch.eye(3).to_sparse_csr())
    with pytest.raises(ConfigError, match=r"^LightGCN: layer_combine must be one of mean, sum, "
                                          r"got 'max'$"):
        LightGCN(ds.num_users, ds.num_items, adj, layer_combine="max")
    # from_dataset checks before it builds a graph with a bad k (else: a kNN error)
    with pytest.raises(ConfigError, match=r"^FREEDOM: knn_k must be an int in \[1, num_items=60\], "
                                          r"got 61$"):
        FREEDOM.from_dataset(ds, knn_k=61)


def test_from_dataset_passes_the_graphs_built_by_graphs(ds, monkeypatch):
    """Each graph is built once, by lirdrec.graphs, and handed to the constructor."""
    import lirdrec.models.freedom as freedom
    import lirdrec.models.lattice as lattice
    import lirdrec.models.lirdrec as lirdrec_model

    def no_graph_in_the_model(*args, **kwargs):
        raise AssertionError("the FREEDOM constructor built its graph")

    calls = []

    def counted(fn):
        def wrapper(*args, **kwargs):
            calls.append(fn.__name__)
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(freedom, "frozen_item_graph", no_graph_in_the_model)
    monkeypatch.setattr(lattice, "frozen_knn_graphs", counted(lattice.frozen_knn_graphs))
    monkeypatch.setattr(lirdrec_model, "build_item_graph", counted(build_item_graph))
    feats = ds.features_tensor()
    expected = build_item_graph(feats, knn_k=4, mm_image_weight=0.3).to_dense()
    m = FREEDOM.from_dataset(ds, knn_k=4, mm_image_weight=0.3, embedding_dim=8)
    assert torch.equal(m.item_graph.to_dense(), expected)
    m = LIRDRec.from_dataset(ds, knn_k=4, mm_image_weight=0.3, embedding_dim=8)
    assert torch.equal(m.item_graph.to_dense(), expected) and calls == ["build_item_graph"]
    m = LATTICE.from_dataset(ds, knn_k=4, embedding_dim=8)
    assert calls == ["build_item_graph", "frozen_knn_graphs"]
    image = build_knn_graph(feats["image"], 4, "sym", weighted=True).to_dense()
    row, col, val = m.frozen_graphs[0]
    dense = torch.sparse_coo_tensor(torch.stack([row, col]), val, image.shape).to_dense()
    assert torch.equal(dense, image)


def test_config_layers_is_the_one_precedence():
    layers = config_layers({"lr": 0.1, "seed": 3, "epochs": 9}, ["lr=0.2", "epochs=4"],
                           {"epochs": 5}, None, {"seed": 7}, drop=["seed"])
    cfg = resolve("mf", layers)
    assert cfg.trainer_kwargs["lr"] == 0.2 and cfg.trainer_kwargs["epochs"] == 5
    assert cfg.trainer_kwargs["seed"] == 7
    with pytest.raises(ConfigError, match="unknown config key"):
        resolve("mf", config_layers(None, ["nope=1"]))


def test_finished_run_with_another_knn_chunk_size_is_reused(tmp_path):
    """The chunk size changes no number, so a run recorded with the old 2048 default is reused."""
    import yaml

    from lirdrec.train.run import check_finished_run

    cfg = resolve("freedom", [{}]).to_dict()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**cfg, "knn_chunk_size": 2048}))
    check_finished_run(tmp_path, cfg, {})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**cfg, "knn_k": 5}))
    with pytest.raises(ConfigError, match="knn_k: 5 -> 10"):
        check_finished_run(tmp_path, cfg, {})
