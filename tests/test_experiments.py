"""Experiment runner: every combination, selection by validation, resume, tidy table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, synthetic_experiment

from lirdrec.data.synthetic import write_synthetic
from lirdrec.errors import ConfigError
from lirdrec.experiments import load_experiment, run_experiment


def test_runner_selects_by_validation_and_resumes(tmp_path, caplog):
    f = synthetic_experiment(tmp_path, """
name: t
out: out
datasets: {{syn: {{data: {data}}}}}
models:
  mf: {{grid: {{embedding_dim: [4, 16]}}}}
  lightgcn-1: {{model: lightgcn, params: {{num_layers: 1}}}}
seeds: [1, 2]
trainer: {{epochs: 2, batch_size: 512}}
small: {{epochs: 1, sample_users: 0.5}}
""", num_users=80, num_items=120)
    exp = load_experiment(f)
    df = run_experiment(exp, show_progress=False)
    assert set(df.columns) == {"dataset", "model", "variant", "seed", "split", "metric", "K",
                               "value",
                               "n", "mean", "std", "ci95_low", "ci95_high"}
    assert set(df["variant"]) == {"mf", "lightgcn-1"} and set(df["seed"]) == {1, 2}
    sel = pd.read_csv(exp.out / "selection.csv")
    assert len(sel) == 2 * 2 + 2  # mf: 2 points x 2 seeds; lightgcn-1: 1 point x 2 seeds
    for (_, _), part in sel.groupby(["variant", "seed"]):
        chosen = part[part["selected"]]
        assert len(chosen) == 1
        assert chosen["valid/Recall@20"].iloc[0] == part["valid/Recall@20"].max()
    # the table's valid Recall@20 is the selected point's
    v = df[(df.split == "valid") & (df.metric == "Recall") & (df.K == 20) & (df.variant == "mf")]
    selected = sel[(sel.variant == "mf") & sel.selected]
    assert sorted(v["value"]) == sorted(selected["valid/Recall@20"])
    md = (exp.out / "results.md").read_text()
    assert "± " in md and "| syn " in md
    caplog.set_level("INFO")
    df2 = run_experiment(exp, show_progress=False)  # everything finished: read back, identical
    assert "finished earlier" in caplog.text
    pd.testing.assert_frame_equal(df, df2)
    small = run_experiment(exp, small=True, show_progress=False)
    assert (exp.out / "small" / "results.csv").is_file() and len(small) == len(df)


def test_finished_run_with_another_configuration_is_refused(tmp_path):
    import pytest
    import yaml

    from lirdrec.errors import ConfigError

    data, _ = write_synthetic(tmp_path / "syn", seed=0, use_encoders=False, num_users=60,
                              num_items=80)
    f = tmp_path / "exp.yaml"
    text = """
name: t
out: out
datasets: {{syn: {{data: {data}}}}}
models:
  mf: {{params: {{reg_weight: {reg}}}}}
seeds: [1]
trainer: {{epochs: 2, batch_size: 512}}
"""
    f.write_text(text.format(data=data, reg=1e-3))
    run_experiment(load_experiment(f), show_progress=False)
    cfg_path = tmp_path / "out" / "runs" / "syn" / "mf" / "seed-1" / "point-000" / "config.yaml"
    # a key a newer version added, at its default, is fine (older runs behaved as the default)
    saved = yaml.safe_load(cfg_path.read_text())
    del saved["deterministic"]
    cfg_path.write_text(yaml.safe_dump(saved))
    run_experiment(load_experiment(f), show_progress=False)
    # the experiment now asks for another reg_weight: reading the old run back would be wrong
    f.write_text(text.format(data=data, reg=1e-2))
    with pytest.raises(ConfigError, match=r"reg_weight: 0\.001 -> 0\.01.*delete that directory"):
        run_experiment(load_experiment(f), show_progress=False)


def test_parts_in_separate_calls_then_collect_gives_the_whole_table(tmp_path, capsys):
    import pytest

    from lirdrec.cli.main import main
    from lirdrec.errors import ConfigError

    a, _ = write_synthetic(tmp_path / "a", seed=0, use_encoders=False, num_users=50, num_items=70)
    b, _ = write_synthetic(tmp_path / "b", seed=1, use_encoders=False, num_users=50, num_items=70)
    f = tmp_path / "exp.yaml"
    f.write_text(f"""
name: t
out: out
datasets: {{a: {{data: {a}}}, b: {{data: {b}}}}}
models:
  mf: {{grid: {{embedding_dim: [4, 8]}}}}
  pop: {{model: pop}}
seeds: [1, 2]
trainer: {{epochs: 2, batch_size: 512}}
""")
    exp = load_experiment(f)
    with pytest.raises(ConfigError, match=r"unknown dataset\(s\) \['c'\]"):
        run_experiment(exp, datasets=["c"], show_progress=False)
    assert run_experiment(exp, collect_only=True, show_progress=False).empty  # nothing trained
    assert not (exp.out / "runs").exists()
    part = run_experiment(exp, datasets=["b"], models=["mf"], show_progress=False)
    assert set(zip(part.dataset, part.variant)) == {("b", "mf")}
    seen = run_experiment(exp, collect_only=True, show_progress=False)
    pd.testing.assert_frame_equal(seen.reset_index(drop=True), part.reset_index(drop=True))
    assert main(["-q", "experiment", str(f), "--datasets", "a"]) == 0
    assert main(["-q", "experiment", str(f), "--datasets", "b", "--models", "pop"]) == 0
    assert main(["-q", "experiment", str(f), "--collect"]) == 0
    whole = pd.read_csv(exp.out / "results.csv")
    assert set(zip(whole.dataset, whole.variant)) == {(d, m) for d in "ab" for m in ("mf", "pop")}
    assert set(whole.seed) == {1, 2} and (whole["n"] == 2).all()
    # the collected table is the one a single uninterrupted call would write
    again = run_experiment(exp, show_progress=False)
    pd.testing.assert_frame_equal(whole, again, check_dtype=False)
    # a seed whose grid is half done is left out, not reported at its best finished point
    (exp.out / "runs" / "a" / "mf" / "seed-1" / "point-001" / "metrics.json").unlink()
    partial = run_experiment(exp, collect_only=True, show_progress=False)
    a_mf = partial[(partial.dataset == "a") & (partial.variant == "mf")]
    assert set(a_mf.seed) == {2} and (a_mf["n"] == 1).all()
    capsys.readouterr()


def test_a_dataset_entry_runs_the_cold_item_protocol_and_the_tables_show_cold_recall(tmp_path):
    """Issue 18: ``cold_items: 0.2`` under a dataset holds 20 % of the items out of training for
    every run on it; results carry cold/ metrics and results.md a cold/Recall@20 column. On it
    LIRDRec's cold items never reach a top-20 (they keep only their layer-0 term), while
    ``cold_item_rep: knn`` ranks them."""
    f = synthetic_experiment(tmp_path, """
name: cold
out: out
datasets:
  warm: {{data: {data}}}
  cold: {{data: {data}, cold_items: 0.2}}
models:
  lirdrec: {{params: {{embedding_dim: 16}}}}
  lirdrec-knn: {{model: lirdrec, params: {{embedding_dim: 16, cold_item_rep: knn}},
                datasets: [cold]}}
seeds: [1]
trainer: {{lr: 1.0e-2, epochs: 10, batch_size: 2048, patience: 100}}
""", num_users=400, num_items=900)
    exp = load_experiment(f)
    assert exp.datasets["cold"]["cold_items"] == 0.2 and "cold_items" not in exp.datasets["warm"]
    df = run_experiment(exp, show_progress=False)
    test = df[(df.split == "test") & (df.K == 20)].set_index(["dataset", "variant", "metric"])
    assert test.loc[("cold", "lirdrec", "cold/Recall"), "value"] == 0.0
    assert test.loc[("cold", "lirdrec-knn", "cold/Recall"), "value"] > 0.05
    assert ("warm", "lirdrec", "cold/Recall") not in test.index
    cfg = yaml.safe_load((exp.out / "runs" / "cold" / "lirdrec" / "seed-1" / "point-000" /
                          "config.yaml").read_text())
    assert cfg["cold_items"] == 0.2
    md = (exp.out / "results.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| dataset"))
    assert "cold/Recall@20" in header and "cold/NDCG@20" in header
    row = next(line for line in md.splitlines() if line.startswith("| cold ") and "knn" in line)
    assert f"{test.loc[('cold', 'lirdrec-knn', 'cold/Recall'), 'value']:.4f}" in row


def test_bad_dataset_entries_are_config_errors(tmp_path):
    for entry, match in (("{data: x, cold: 0.2}", "unknown key"),
                         ("{data: x, cold_items: 1.5}", "cold_items must be a fraction")):
        f = tmp_path / "exp.yaml"
        f.write_text(f"datasets: {{d: {entry}}}\nmodels: {{mf: }}\n")
        with pytest.raises(ConfigError, match=match):
            load_experiment(f)


EXPERIMENT_FILES = sorted((REPO / "datasets" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=[p.stem for p in EXPERIMENT_FILES])
def test_every_shipped_experiment_file_resolves(path):
    """Every run an experiment file asks for resolves (a misspelt switch or value fails here, not
    hours into a run), and its datasets name existing data directories under ../shared."""
    from lirdrec.config import resolve
    from lirdrec.experiments.runner import _grid_points, run_layers

    exp = load_experiment(path)
    for name, dcfg in exp.datasets.items():
        assert Path(dcfg["data"]).name in ("ml100k", "tiktok", "hm") or "runs/" in str(
            dcfg["data"]), (name, dcfg["data"])
    for variant, mcfg in exp.models.items():
        for point in _grid_points(mcfg.get("grid")):
            for dataset in exp.datasets:
                resolve(mcfg["model"], run_layers(exp, dataset, variant, point, exp.seeds[0]))
    if exp.reference:
        assert exp.reference in exp.models
