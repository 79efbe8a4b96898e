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
from lirdrec.experiments.runner import _grid_points as _points


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


GRID_SEED_EXPERIMENT = """
name: t
out: {out}
datasets: {{syn: {{data: {data}}}}}
models:
  mf: {{grid: {{embedding_dim: [2, 16]}}}}
  pop: {{model: pop}}
seeds: [{seeds}]
{grid_seed}
trainer: {{epochs: 3, batch_size: 256, lr: 1.0e-2}}
"""


def _grid_seed_file(tmp_path: Path, out: str = "out", seeds: str = "1, 2",
                    grid_seed: str = "grid_seed: 1", params: str | None = None) -> Path:
    data = tmp_path / "syn"
    if not data.is_dir():
        write_synthetic(data, seed=0, use_encoders=False, num_users=80, num_items=120)
    text = GRID_SEED_EXPERIMENT.format(out=out, data=data, seeds=seeds, grid_seed=grid_seed)
    if params is not None:  # the mf entry without a grid, at one fixed point
        text = text.replace("{grid: {embedding_dim: [2, 16]}}", params)
    f = tmp_path / f"{out}.yaml"
    f.write_text(text)
    return f


def _count_trainings(monkeypatch, fail_at: int | None = None) -> list[Path]:
    """Patch the runner's run_training to record each run directory it trains (and to raise on
    call number ``fail_at``, 1-based: an interrupted process)."""
    import lirdrec.experiments.runner as runner

    real, calls = runner.run_training, []

    def counted(*args, **kwargs):
        calls.append(Path(kwargs["out_dir"]))
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt("interrupted")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_training", counted)
    return calls


def test_grid_seed_searches_once_and_repeats_the_selected_point(tmp_path, monkeypatch):
    """``grid_seed: 1``, seeds [1, 2]: both points train at seed 1, seed 2 trains only the point
    with the best validation Recall@20 at seed 1; its numbers are those of that point alone."""
    f = _grid_seed_file(tmp_path)
    exp = load_experiment(f)
    assert exp.grid_seed == 1 and exp.search_seed("mf") == 1
    assert exp.search_seed("pop") is None  # one point: nothing to search
    calls = _count_trainings(monkeypatch)
    df = run_experiment(exp, show_progress=False)
    runs = exp.out / "runs" / "syn" / "mf"
    sel = pd.read_csv(exp.out / "selection.csv")
    s1 = sel[(sel.variant == "mf") & (sel.seed == 1)].set_index("point")
    assert list(s1.index) == [0, 1]
    assert s1.loc[0, "valid/Recall@20"] != s1.loc[1, "valid/Recall@20"]  # a real choice
    best = int(s1["valid/Recall@20"].idxmax())
    assert s1["selected"].tolist() == [p == best for p in (0, 1)]
    assert sorted(p.name for p in (runs / "seed-1").iterdir()) == ["point-000", "point-001"]
    assert [p.name for p in (runs / "seed-2").iterdir()] == [f"point-{best:03d}"]
    assert len([c for c in calls if "/mf/" in str(c)]) == 3  # 2 points + 1 repeat, not 4
    s2 = sel[(sel.variant == "mf") & (sel.seed == 2)]
    assert s2["point"].tolist() == [best] and s2["selected"].all()
    assert set(sel.loc[sel.variant == "mf", "search_seed"]) == {1}
    assert set(sel.loc[sel.variant == "pop", "search_seed"]) == {1, 2}  # each seed its own
    # seed 2's row is what that point alone gives at seed 2
    alone = run_experiment(load_experiment(_grid_seed_file(
        tmp_path, out="alone", seeds="2", grid_seed="",
        params=f"{{params: {{embedding_dim: {[2, 16][best]}}}}}")), show_progress=False)
    key = ["split", "metric", "K"]
    mine = df[(df.variant == "mf") & (df.seed == 2)].set_index(key)["value"]
    theirs = alone[alone.variant == "mf"].set_index(key)["value"]
    pd.testing.assert_series_equal(mine.sort_index(), theirs.sort_index())
    assert (df[df.variant == "mf"]["n"] == 2).all()


def test_grid_seed_resumes_after_an_interruption(tmp_path, monkeypatch):
    """The search seed runs first even when listed last; a process stopped inside the search
    leaves the other seeds untouched, reports nothing for the variant until the search is
    complete, and a second call finishes it: the tables of one uninterrupted call."""
    f = _grid_seed_file(tmp_path, seeds="2, 1")
    exp = load_experiment(f)
    calls = _count_trainings(monkeypatch, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, models=["mf"], show_progress=False)
    runs = exp.out / "runs" / "syn" / "mf"
    assert [c.relative_to(runs).as_posix() for c in calls] == ["seed-1/point-000",
                                                               "seed-1/point-001"]
    assert (runs / "seed-1" / "point-000" / "metrics.json").is_file()
    assert not (runs / "seed-2").exists()
    assert run_experiment(exp, models=["mf"], collect_only=True, show_progress=False).empty
    calls = _count_trainings(monkeypatch)
    df = run_experiment(exp, show_progress=False)
    sel = pd.read_csv(exp.out / "selection.csv")
    best = int(sel[(sel.variant == "mf") & sel.selected & (sel.seed == 1)]["point"].iloc[0])
    assert [c.relative_to(exp.out / "runs" / "syn").as_posix() for c in calls] == [
        "mf/seed-1/point-001", f"mf/seed-2/point-{best:03d}", "pop/seed-2/point-000",
        "pop/seed-1/point-000"]
    assert df.seed.unique().tolist() == [2, 1]  # the file's order of seeds
    fresh = run_experiment(load_experiment(_grid_seed_file(tmp_path, out="fresh", seeds="2, 1")),
                           show_progress=False)
    pd.testing.assert_frame_equal(df, fresh)
    for name in ("results.md", "selection.csv"):
        assert (exp.out / name).read_text() == (tmp_path / "fresh" / name).read_text()


def test_without_grid_seed_every_seed_searches_and_the_tables_keep_their_form(tmp_path,
                                                                             monkeypatch):
    """Absent grid_seed: each seed trains every point and selects its own (selection.csv has the
    columns it always had). The runs are shared with grid_seed mode: switching it on trains
    nothing, and the search seed's rows and tables stay identical."""
    f = _grid_seed_file(tmp_path, grid_seed="")
    exp = load_experiment(f)
    assert exp.grid_seed is None and exp.search_seed("mf") is None
    per_seed = run_experiment(exp, show_progress=False)
    sel = pd.read_csv(exp.out / "selection.csv")
    assert list(sel.columns) == ["dataset", "variant", "seed", "point", "grid:embedding_dim",
                                 "best_epoch", "valid/Recall@20", "selected"]
    assert len(sel[sel.variant == "mf"]) == 4  # 2 points x 2 seeds
    for _, part in sel[sel.variant == "mf"].groupby("seed"):
        assert part.loc[part.selected, "valid/Recall@20"].item() == part["valid/Recall@20"].max()
    calls = _count_trainings(monkeypatch)
    f.write_text(f.read_text().replace("seeds: [1, 2]", "seeds: [1, 2]\ngrid_seed: 1"))
    searched = run_experiment(load_experiment(f), show_progress=False)
    assert calls == []  # every run it needs is one of the per-seed search's
    one = per_seed.columns.drop(["n", "mean", "std", "ci95_low", "ci95_high"])
    pd.testing.assert_frame_equal(searched[searched.seed == 1][one],
                                  per_seed[per_seed.seed == 1][one])
    # one seed: grid_seed changes nothing in results.csv / results.md
    single = _grid_seed_file(tmp_path, out="single", seeds="1", grid_seed="")
    run_experiment(load_experiment(single), show_progress=False)
    texts = {n: (tmp_path / "single" / n).read_text() for n in ("results.csv", "results.md")}
    single.write_text(single.read_text().replace("seeds: [1]", "seeds: [1]\ngrid_seed: 1"))
    run_experiment(load_experiment(single), show_progress=False)
    assert texts == {n: (tmp_path / "single" / n).read_text() for n in texts}


def test_a_shipped_grid_by_name_and_grid_seed_errors(tmp_path):
    from lirdrec.config import read_yaml

    def load(models: str, extra: str = "") -> object:
        f = tmp_path / "exp.yaml"
        f.write_text(f"datasets: {{d: x}}\nmodels: {models}\nseeds: [999, 1]\n{extra}")
        return load_experiment(f)

    exp = load("{a: {model: mgcn, grid: mgcn_grid}, b: {model: smore, grid: smore_grid.yaml}}")
    assert exp.models["a"]["grid"] == {"cl_loss": [0.001, 0.01, 0.1]}
    assert exp.models["a"]["grid"] == read_yaml(REPO / "datasets/configs/mgcn_grid.yaml")
    assert len(exp.models["b"]["grid"]) == 5  # n_ui_layers, 2 knn_k's, reg_weight, dropout
    with pytest.raises(ConfigError, match=r"model 'a': grid 'mgcn_grd' is not a shipped grid; "
                                          r"shipped grids: bm3_grid, dragon_grid, .*mgcn_grid"):
        load("{a: {model: mgcn, grid: mgcn_grd}}")
    with pytest.raises(ConfigError, match=r"grid key 'cl_loss' must map to a non-empty list"):
        load("{a: {model: mgcn, grid: {cl_loss: 0.1}}}")
    with pytest.raises(ConfigError, match=r"grid 'mgcn' is not a shipped grid"):
        load("{a: {model: mgcn, grid: mgcn}}")  # a config, not a grid
    with pytest.raises(ConfigError, match=r"model 'a': grid_seed 7 is not one of the seeds "
                                          r"\[999, 1\]"):
        load("{a: {model: mgcn, grid: mgcn_grid}}", "grid_seed: 7")
    with pytest.raises(ConfigError, match=r"grid_seed must be an integer seed"):
        load("{a: {model: mgcn, grid: mgcn_grid, grid_seed: first}}")
    # per variant: its own value wins, null restores the per-seed search
    exp = load("{a: {model: mgcn, grid: mgcn_grid, grid_seed: null}, "
               "b: {model: mgcn, grid: mgcn_grid, grid_seed: 1}, c: {model: mgcn, grid: mgcn_grid},"
               " d: {model: mgcn}}", "grid_seed: 999")
    assert [exp.search_seed(v) for v in "abcd"] == [None, 1, 999, None]
    assert len(_points("mgcn_grid")) == 3  # an Experiment built in Python may name one too
    with pytest.raises(ConfigError, match="grid_points must be an int >= 1"):
        load("{a: {model: mgcn}}", "small: {grid_points: 0}")


def test_main_table_seeds_runs_a_zoo_model_small_on_tiny_data(tmp_path):
    """Issue 17's zoo entries of main_table_seeds.yaml: a shipped grid by name, searched at
    seed 999, the selected point repeated at seeds 1 and 2; ``--small`` (grid_points: 1) trains
    one point per seed. Here on a tiny synthetic dataset in place of the real ones."""
    from lirdrec.config import read_yaml

    exp = load_experiment(REPO / "datasets" / "experiments" / "main_table_seeds.yaml")
    zoo = ["itemknncbf", "layergcn", "mmgcn", "grcn", "dualgnn", "slmrec", "dragon", "mgcn",
           "lgmrec", "smore"]
    assert set(zoo) < set(exp.models) and exp.seeds == [999, 1, 2] and exp.grid_seed == 999
    for v in zoo:
        assert exp.models[v]["grid"] == read_yaml(f"{v}_grid")
        varies_lr = "lr" in exp.models[v]["grid"]
        assert ("lr" in exp.models[v].get("params", {})) == (not varies_lr and v != "itemknncbf")
    assert sum(len(_points(exp.models[v].get("grid"))) for v in zoo) == 330
    assert all(exp.search_seed(v) is None for v in exp.models if v not in zoo)
    data, _ = write_synthetic(tmp_path / "syn", seed=0, use_encoders=False, num_users=150,
                              num_items=100)
    exp.out, exp.datasets = tmp_path / "out", {"tiktok": {"data": str(data)}}
    df = run_experiment(exp, small=True, models=["mgcn"], show_progress=False)
    runs = tmp_path / "out" / "small" / "runs" / "tiktok" / "mgcn"
    assert sorted(p.relative_to(runs).as_posix() for p in runs.glob("seed-*/point-*")) == [
        "seed-1/point-000", "seed-2/point-000", "seed-999/point-000"]
    assert set(df.seed) == {999, 1, 2} and (df["n"] == 3).all()
    cfg = yaml.safe_load((runs / "seed-1" / "point-000" / "config.yaml").read_text())
    assert (cfg["model"], cfg["epochs"], cfg["cl_loss"], cfg["lr"]) == ("mgcn", 2, 0.001, 0.001)
    # two points of its grid: searched at 999 only, the winner repeated at seeds 1 and 2
    exp.small["grid_points"] = 2
    run_experiment(exp, small=True, models=["mgcn"], show_progress=False)
    sel = pd.read_csv(tmp_path / "out" / "small" / "selection.csv")
    win = sel[(sel.seed == 999) & sel.selected]["point"].item()
    assert sorted(sel[sel.seed == 999]["point"]) == [0, 1]
    assert sel[sel.seed != 999]["point"].tolist() == [win, win] and set(sel.search_seed) == {999}
