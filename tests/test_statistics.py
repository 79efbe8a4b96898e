"""Claims a reader can trust: seed summaries, paired tests and Holm's correction, by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import synthetic_experiment
from scipy import stats

from lirdrec.data.synthetic import write_synthetic
from lirdrec.evaluate import evaluate, per_user_metrics
from lirdrec.evaluate.statistics import (
    holm,
    paired_tests,
    read_per_user,
    seed_summary,
    write_per_user,
)
from lirdrec.experiments.runner import load_experiment, run_experiment


def test_seed_summary_by_hand():
    s = seed_summary([0.30, 0.32, 0.34])
    # mean .32, sd sqrt(((-.02)^2 + 0 + .02^2) / 2) = .02, half-width t(.975, 2) * .02 / sqrt(3)
    assert s.mean == pytest.approx(0.32) and s.std == pytest.approx(0.02) and s.n == 3
    half = 4.302652729911275 * 0.02 / math.sqrt(3)
    assert s.ci_low == pytest.approx(0.32 - half) and s.ci_high == pytest.approx(0.32 + half)
    one = seed_summary([0.5])
    assert one.mean == 0.5 and one.n == 1 and math.isnan(one.std) and math.isnan(one.ci_low)


def test_paired_t_test_by_hand_and_wilcoxon_against_scipy():
    a = np.array([0.1, 0.4, 0.2, 0.5, 0.3])
    b = np.array([0.2, 0.6, 0.2, 0.9, 0.35])
    t = paired_tests(a, b)
    d = b - a  # .1 .2 0 .4 .05: mean .15, sd by hand
    sd = math.sqrt(sum((x - 0.15) ** 2 for x in d) / 4)
    t_hand = 0.15 / (sd / math.sqrt(5))
    assert t.mean_diff == pytest.approx(0.15) and t.t_stat == pytest.approx(t_hand)
    assert t.t_p == pytest.approx(2 * stats.t.sf(t_hand, 4))
    # Wilcoxon: zero difference dropped; ranks of |.1 .2 .4 .05| = 2 3 4 1, all positive
    assert t.wilcoxon_stat == 0.0  # W = min(W+, W-) = 0
    assert t.wilcoxon_p == pytest.approx(stats.wilcoxon(d).pvalue) and t.wilcoxon_p == 0.125
    same = paired_tests(a, a)
    assert (same.t_p, same.wilcoxon_p, same.mean_diff) == (1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="one length"):
        paired_tests(a, b[:3])


def test_holm_by_hand():
    # sorted .01 .03 .04 -> 3*.01=.03, 2*.03=.06, 1*.04=.04 -> monotone: .03 .06 .06
    assert holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0])  # capped at 1
    out = holm([0.02, np.nan, 0.01])  # NaN neither counted nor changed
    assert np.isnan(out[1]) and out[[0, 2]].tolist() == pytest.approx([0.02, 0.02])


def test_per_user_metrics_average_to_the_evaluation_and_round_trip(tmp_path):
    import lirdrec
    from lirdrec.models import MF

    data, _ = write_synthetic(tmp_path / "syn", seed=0, use_encoders=False, num_users=40,
                              num_items=60)
    ds = lirdrec.load_dataset(data)
    torch.manual_seed(0)
    model = MF.from_dataset(ds, embedding_dim=4)
    users, per = per_user_metrics(model, ds, "test", ks=(5, 10))
    assert np.array_equal(users, ds.eval_users("test"))
    m = evaluate(model, ds, "test", ks=(5, 10))
    for key in ("Recall@5", "NDCG@10", "MAP@10"):
        assert per[key].mean() == pytest.approx(m[key], abs=1e-12)
    write_per_user(tmp_path, users, per)
    u2, p2 = read_per_user(tmp_path)
    assert np.array_equal(u2, users) and np.allclose(p2["Recall@5"], per["Recall@5"], atol=1e-7)
    assert read_per_user(tmp_path / "nothing") is None


def test_experiment_seeds_statistics_and_marks(tmp_path):
    f = synthetic_experiment(tmp_path, """
name: t
out: out
datasets: {{syn: {{data: {data}}}}}
models:
  lightgcn: {{params: {{num_layers: 1}}}}
  mf: {{}}
  pop: {{}}
reference: lightgcn
seeds: [1, 2, 3]
trainer: {{epochs: 3, batch_size: 512}}
""", num_users=80, num_items=120)
    exp = load_experiment(f)
    df = run_experiment(exp, show_progress=False)
    assert sorted(set(df["seed"])) == [1, 2, 3]  # one run per seed
    for seed in (1, 2, 3):
        assert (exp.out / "runs" / "syn" / "mf" / f"seed-{seed}" / "point-000" /
                "per_user_test.npz").is_file()
    r20 = df[(df.split == "test") & (df.metric == "Recall") & (df.K == 20) & (df.variant == "mf")]
    s = seed_summary(r20["value"].to_numpy())
    assert (r20["n"] == 3).all() and r20["mean"].iloc[0] == pytest.approx(s.mean)
    assert r20["ci95_low"].iloc[0] == pytest.approx(s.ci_low)
    sig = pd.read_csv(exp.out / "significance.csv")
    assert set(sig["variant"]) == {"mf", "pop"} and set(sig["reference"]) == {"lightgcn"}
    # the p-values are the tests on the per-user means over seeds, Holm over the two rows
    def seed_mean(variant):
        runs = [read_per_user(exp.out / "runs" / "syn" / variant / f"seed-{s}" / "point-000")
                for s in (1, 2, 3)]
        return np.mean([r[1]["NDCG@20"] for r in runs], axis=0)
    ref = seed_mean("lightgcn")
    raw = {v: paired_tests(ref, seed_mean(v)).t_p for v in ("mf", "pop")}
    adj = dict(zip(raw, holm(list(raw.values()))))
    got = sig[sig.metric == "NDCG@20"].set_index("variant")
    for v in ("mf", "pop"):
        assert got.loc[v, "t_p"] == pytest.approx(raw[v])
        assert got.loc[v, "t_p_holm"] == pytest.approx(adj[v])
    md = (exp.out / "results.md").read_text()
    assert "Holm-adjusted" in md
    header = next(line for line in md.splitlines() if line.startswith("| dataset"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[:3] == ["dataset", "variant", "n"]
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == len(cols) and cells[1] in ("mf", "pop"):
            assert cells[2] == "3"
            for metric in ("Recall@20", "NDCG@20"):
                r = got.loc[cells[1]] if metric == "NDCG@20" else \
                    sig[(sig.metric == metric) & (sig.variant == cells[1])].iloc[0]
                cell = cells[cols.index(metric)]
                assert ("*" in cell) == (r["t_p_holm"] < 0.05)
                assert ("†" in cell) == (r["wilcoxon_p_holm"] < 0.05)
    # a second call resumes: nothing retrains, same table
    again = run_experiment(exp, show_progress=False)
    pd.testing.assert_frame_equal(again, df)


def test_reference_must_be_a_variant(tmp_path):
    from lirdrec.errors import ConfigError

    f = tmp_path / "exp.yaml"
    f.write_text("datasets: {a: x}\nmodels: {mf: {}}\nreference: lightgcn\n")
    with pytest.raises(ConfigError, match="reference 'lightgcn' is not a model variant"):
        load_experiment(f)
