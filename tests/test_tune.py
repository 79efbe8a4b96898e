"""`lirdrec tune`: TPE search selected by validation, stored in the run folder, resumable."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lirdrec.cli.main import main
from lirdrec.data.synthetic import write_synthetic
from lirdrec.errors import ConfigError
from lirdrec.experiments.tune import parse_space

optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    d, _ = write_synthetic(tmp_path_factory.mktemp("syn") / "s", seed=0, use_encoders=False,
                           num_users=60, num_items=90)
    return d


def test_tune_selects_by_validation_and_continues(syn, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("lr: {low: 1.0e-3, high: 5.0e-2, log: true}\nembedding_dim: [4, 8]\n")
    out = tmp_path / "study"
    args = ["-q", "tune", "--model", "mf", "--data", str(syn), "--space", str(space),
            "--epochs", "2", "--set", "batch_size=512", "--out", str(out)]
    assert main([*args, "--trials", "3"]) == 0
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and (out / "study.db").is_file()
    best = trials.loc[trials["valid/Recall@20"].idxmax()]
    assert f"valid {best['valid/Recall@20']:.4f}" in capsys.readouterr().out
    for d in trials["run_dir"]:  # every trial is a normal run directory inside the study
        assert Path(d).parent == out / "trials" and (Path(d) / "metrics.json").is_file()
    # an interrupted trial (left RUNNING by a killed process) is failed and its point retried
    study = optuna.load_study(study_name="lirdrec", storage=f"sqlite:///{out / 'study.db'}")
    ghost = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 5e-2, log=True),
                       "embedding_dim": optuna.distributions.CategoricalDistribution([4, 8])})
    assert main([*args, "--trials", "4"]) == 0  # one more finished trial, not four
    study = optuna.load_study(study_name="lirdrec", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 4 and states[ghost.number] == "FAIL"
    retried = [t for t in study.trials if t.state.name == "COMPLETE" and t.number > ghost.number]
    assert retried and retried[0].params == ghost.params
    assert len(pd.read_csv(out / "trials.csv")) == 4


def test_space_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"lr: need low < high"):
        parse_space({"lr": {"low": 1e-2, "high": 1e-3}})
    with pytest.raises(ConfigError, match=r"reg: need low < high \(and low > 0 with log\)"):
        parse_space({"reg": {"low": 0, "high": 1, "log": True}})
    with pytest.raises(ConfigError, match=r"d: expected a list of choices"):
        parse_space({"d": 3})
    assert parse_space({"n": {"low": 1, "high": 4}}).params["n"] == ("int", 1, 4, False)


def test_a_misspelt_space_key_fails_before_training(syn, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("lrr: {low: 1.0e-3, high: 5.0e-2}\n")
    assert main(["tune", "--model", "mf", "--data", str(syn), "--space", str(space),
                 "--out", str(tmp_path / "s")]) == 1
    assert "unknown config key(s) 'lrr'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
