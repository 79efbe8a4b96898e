"""The command line: every command end to end on tiny data, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lirdrec.cli.main import main
from lirdrec.data.synthetic import write_synthetic


@pytest.fixture(scope="module")
def syn_dir(tmp_path_factory):
    d, how = write_synthetic(tmp_path_factory.mktemp("syn") / "synthetic", seed=0,
                             use_encoders=False,
                             num_users=100, num_items=150)
    assert how == "numeric"
    return d


def test_validate_prints_summary(syn_dir, capsys):
    assert main(["validate", str(syn_dir)]) == 0
    out = capsys.readouterr().out
    assert "users       100" in out and "feature     image: 150 x 64" in out
    assert out.strip().endswith("OK")


def test_validate_error_is_one_line_exit_1(tmp_path, capsys):
    (tmp_path / "x.inter").write_text("user\titemID\tx_label\n0\t0\t0\n")
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("lirdrec: error: ") and "column userID" in err


def test_train_evaluate_resume(syn_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "lightgcn", "--data", str(syn_dir), "--epochs", "2", "--seed", "1",
            "--set", "embedding_dim=8", "--set", "batch_size=512", "--out", str(out)]
    assert main(["-q", *args]) == 0
    table = capsys.readouterr().out
    assert "| lightgcn | test" in table
    cfg = (out / "config.yaml").read_text()
    assert "embedding_dim: 8" in cfg and "seed: 1" in cfg and "lr: 0.001" in cfg
    metrics = json.loads((out / "metrics.json").read_text())
    assert main(["-q", "evaluate", str(out)]) == 0
    ev = capsys.readouterr().out
    assert f"{metrics['test']['Recall@20']:.4f}" in ev
    assert main(["-q", "train", "--resume", str(out), "--epochs", "3"]) == 0
    assert len(json.loads((out / "metrics.json").read_text())) and \
        len((out / "log.csv").read_text().splitlines()) == 4


def test_unknown_model_key_and_value_errors(syn_dir, capsys):
    base = ["train", "--data", str(syn_dir), "--epochs", "1", "--out", "/tmp/never"]
    assert main([*base, "--model", "lightgcnn"]) == 1
    assert "valid models: " in capsys.readouterr().err
    assert main([*base, "--model", "mf", "--set", "num_layerz=2"]) == 1
    err = capsys.readouterr().err
    assert "unknown config key(s) 'num_layerz'" in err and "embedding_dim" in err
    assert main([*base, "--model", "mf", "--set", "embedding_dim=abc"]) == 1
    assert "MF: embedding_dim must be of type int, got 'abc'" in capsys.readouterr().err
    assert main([*base, "--model", "mf", "--set", "reg_weight=-1"]) == 1
    assert "MF: reg_weight must be >= 0, got -1.0" in capsys.readouterr().err


def test_grid_selects_by_validation(syn_dir, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("embedding_dim: [4, 8]\n")
    out = tmp_path / "g"
    assert main(["-q", "grid", "--model", "mf", "--data", str(syn_dir), "--grid", str(grid),
                 "--epochs", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "winner (by validation Recall@20)" in text
    import pandas as pd

    df = pd.read_csv(out / "grid.csv")
    assert len(df) == 2
    winner = df.loc[df["winner"] == "*"].iloc[0]
    assert winner["valid/Recall@20"] == df["valid/Recall@20"].max()


def test_grid_shards_share_one_directory(syn_dir, tmp_path, capsys):
    """Two shards train disjoint points; the second to finish writes the full table and winner."""
    grid = tmp_path / "grid.yaml"
    grid.write_text("embedding_dim: [4, 8, 16]\n")
    out = tmp_path / "g"
    base = ["-q", "grid", "--model", "mf", "--data", str(syn_dir), "--grid", str(grid),
            "--epochs", "1", "--out", str(out)]
    assert main([*base, "--shard", "2/2"]) == 0
    assert "1 of 3 grid points finished" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("point-*")) == ["point-001"]
    assert not (out / "grid.csv").exists()
    assert main([*base, "--shard", "1/2"]) == 0
    assert "winner (by validation Recall@20)" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("point-*")) == ["point-000", "point-001", "point-002"]
    import pandas as pd

    assert pd.read_csv(out / "grid.csv")["point"].tolist() == [0, 1, 2]
    assert main([*base, "--shard", "3/2"]) == 1
    assert "--shard must be K/N with 1 <= K <= N" in capsys.readouterr().err


def test_grid_shard_collects_points_another_shard_finished_meanwhile(syn_dir, tmp_path, capsys,
                                                                      monkeypatch):
    """Shard 1/2 passes point 1 (shard 2's) unfinished; shard 2 then runs while shard 1 is about to
    train point 2: it trains point 1 and ends without point 2; shard 1 trains point 2, then
    collects point 1 and, ending last, writes the full table."""
    import lirdrec.cli.grid as cli

    grid = tmp_path / "grid.yaml"
    grid.write_text("embedding_dim: [4, 8, 16]\n")
    out = tmp_path / "g"
    base = ["-q", "grid", "--model", "mf", "--data", str(syn_dir), "--grid", str(grid),
            "--epochs", "1", "--out", str(out)]
    train, calls = cli._train, []

    def train_and_run_other_shard(cfg, run_dir, resume):
        calls.append(run_dir.name)
        if run_dir.name == "point-002":  # shard 1 passed point 1 unfinished: shard 2 runs now
            assert not (out / "point-001").exists()
            assert main([*base, "--shard", "2/2"]) == 0
        return train(cfg, run_dir, resume)

    monkeypatch.setattr(cli, "_train", train_and_run_other_shard)
    assert main([*base, "--shard", "1/2"]) == 0
    text = capsys.readouterr().out
    assert calls == ["point-000", "point-002", "point-001"]  # the last one by shard 2
    assert "2 of 3 grid points finished" in text  # the inner shard 2 ended first
    assert "winner (by validation Recall@20)" in text
    import pandas as pd

    assert pd.read_csv(out / "grid.csv")["point"].tolist() == [0, 1, 2]


def test_mmrec_yaml_aliases(syn_dir, tmp_path):
    from lirdrec.config import read_yaml, resolve

    cfg_file = tmp_path / "mmrec.yaml"
    cfg_file.write_text("embedding_size: 32\nlearning_rate: 0.01\nstopping_step: 5\nn_layers: 3\n")
    cfg = resolve("lightgcn", [read_yaml(cfg_file)])
    assert cfg.model_kwargs["embedding_dim"] == 32 and cfg.model_kwargs["num_layers"] == 3
    assert cfg.trainer_kwargs["lr"] == 0.01 and cfg.trainer_kwargs["patience"] == 5


def test_two_processes_train_bit_identical_runs(syn_dir, tmp_path):
    """Determinism across processes: the same command in two fresh interpreters writes the same
    per-epoch losses and metrics to the last digit (LIRDRec, one thread each)."""
    logs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        cmd = [sys.executable, "-m", "lirdrec", "-q", "train", "--model", "lirdrec", "--data",
               str(syn_dir), "--epochs", "3", "--set", "embedding_dim=8", "--set",
               "batch_size=256", "--out", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        rows = (out / "log.csv").read_text().splitlines()
        logs.append([r.split(",")[:2] + r.split(",")[4:] for r in rows])  # drop timings
    assert len(logs[0]) == 4 and logs[0] == logs[1]


def test_console_script_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "lirdrec", "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "demo" in out.stdout and "grid" in out.stdout


def test_model_reference_trainer_defaults_sit_below_user_settings():
    from lirdrec.config import resolve

    assert resolve("lirdrec", [{}]).trainer_kwargs["lr"] == 1e-4  # LIRDRec's reference lr
    assert resolve("lirdrec", [{"lr": 1e-3}]).trainer_kwargs["lr"] == 1e-3
    assert resolve("lightgcn", [{}]).trainer_kwargs["lr"] == 1e-3  # Trainer default


def test_yaml_booleans_words_stay_words():
    from lirdrec.config import parse_sets, resolve

    assert parse_sets(["item_id=off", "mask_valid_at_test=true"]) == {"item_id": "off",
                                                                     "mask_valid_at_test": True}
    assert resolve("lirdrec", [{"item_id": False}]).model_kwargs["item_id"] == "off"  # YAML `off`


def test_unparseable_set_value_is_one_line_naming_the_key(syn_dir, capsys):
    base = ["train", "--model", "mf", "--data", str(syn_dir), "--epochs", "1", "--out",
            "/tmp/never"]
    assert main([*base, "--set", "modalities=,"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("lirdrec: error: --set modalities=,: cannot parse")
    assert main([*base, "--set", "modalities=','"]) == 1  # parses, but names no modality
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "modalities: expected modality names" in err
