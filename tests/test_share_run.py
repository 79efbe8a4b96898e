"""``results/share_run.py``: a finished run copied into a second experiment (a variant or one grid
point of it) is read back by the runner as that experiment's own run, and is refused when the
configurations differ (issue 18's gap study shares the main table's runs this way)."""

from __future__ import annotations

import runpy

import pandas as pd
from conftest import REPO

from lirdrec.data.synthetic import write_synthetic
from lirdrec.experiments import load_experiment, run_experiment

SHARE = runpy.run_path(str(REPO / "results" / "share_run.py"))


def test_shared_runs_are_the_runs_a_second_training_would_make(tmp_path, capsys):
    data, _ = write_synthetic(tmp_path / "syn", seed=0, use_encoders=False, num_users=50,
                              num_items=70)
    src, dst = tmp_path / "src.yaml", tmp_path / "dst.yaml"
    common = f"datasets: {{syn: {{data: {data}}}}}\nseeds: [1, 2]\ntrainer: {{epochs: 2}}\n"
    src.write_text("name: src\nout: src_out\nmodels:\n"
                   "  small: {model: mf, params: {embedding_dim: 4}}\n"
                   "  wide: {model: mf, params: {embedding_dim: 8}}\n" + common)
    dst.write_text("name: dst\nout: dst_out\nmodels:\n"
                   "  mf-grid: {model: mf, grid: {embedding_dim: [4, 8]}}\n" + common)
    run_experiment(load_experiment(src), show_progress=False)
    share = SHARE["main"]
    # a configuration that differs is refused, nothing copied
    assert share([str(src), "small", str(dst), "mf-grid", "syn", "--seeds", "1",
                  "--point", "1"]) == 1
    assert "configurations differ" in capsys.readouterr().out
    for point, variant in ((0, "small"), (1, "wide")):
        assert share([str(src), variant, str(dst), "mf-grid", "syn", "--seeds", "1,2",
                      "--point", str(point)]) == 0
    # already there: not copied twice
    assert share([str(src), "small", str(dst), "mf-grid", "syn", "--seeds", "1"]) == 1
    exp = load_experiment(dst)
    shared = run_experiment(exp, collect_only=True, show_progress=False)
    assert set(shared.seed) == {1, 2} and (shared["n"] == 2).all()
    # the same experiment trained from scratch gives the same table (CPU training is exact)
    fresh = load_experiment(dst)
    fresh.out = tmp_path / "fresh"
    trained = run_experiment(fresh, show_progress=False)
    pd.testing.assert_frame_equal(shared.reset_index(drop=True), trained.reset_index(drop=True),
                                  check_dtype=False)
    assert (exp.out / "runs" / "syn" / "mf-grid" / "seed-2" / "point-001" / "SHARED_FROM").is_file()
    capsys.readouterr()
