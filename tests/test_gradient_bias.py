"""Gradient-bias recorder (issue 6): closed-form gradients, no effect on training, the script."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lirdrec.data.dataset import Dataset, Split
from lirdrec.data.synthetic import generate, write_synthetic
from lirdrec.diagnostics.gradient_bias import (
    GradientBiasRecorder,
    keep_only,
    popularity_buckets,
    resolve_model_names,
    run_gradient_bias,
    summarize,
    write_outputs,
)
from lirdrec.errors import CheckpointError, ConfigError
from lirdrec.models import registry
from lirdrec.models.base import Recommender, bpr_loss
from lirdrec.train.trainer import Callback, Trainer
from lirdrec.utils.seed import seed_everything

SCALE = 2.0  # q_i = e_i + SCALE * W x_i: the feature output's gradient is SCALE times the ID row's


class TinyAdditive(Recommender):
    """:math:`\\hat y_{ui} = p_u^\\top(e_i + 2 W x_i)`, plain BPR: closed-form gradients."""

    feature_branch = ("proj",)

    def __init__(self, num_users: int, num_items: int, x: torch.Tensor, dim: int = 3) -> None:
        super().__init__(num_users, num_items)
        self.register_buffer("x", x)
        self.user_emb = nn.Parameter(0.5 * torch.randn(num_users, dim))
        self.item_emb = nn.Parameter(0.5 * torch.randn(num_items, dim))
        self.proj = nn.Linear(x.shape[1], dim, bias=False)
        self.batches: list[tuple[torch.Tensor, ...]] = []

    def forward(self):
        return self.user_emb, self.item_emb + SCALE * self.proj(self.x)

    def loss(self, users, pos_items, neg_items):
        self.batches.append((users.clone(), pos_items.clone(), neg_items.clone()))
        u, q = self.forward()
        return bpr_loss((u[users] * q[pos_items]).sum(-1), (u[users] * q[neg_items]).sum(-1))

    def parameter_groups(self):
        return {
            "item_id": [self.item_emb],
            "item_feature": [self.proj.weight],
            "user": [self.user_emb],
            "other": [],
        }


def tiny_dataset() -> Dataset:
    # 4 users, 7 items; item 6 never in training (the "unseen" bucket)
    tu = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, 3])
    ti = np.array([0, 1, 2, 0, 3, 0, 4, 1, 5, 0])
    return Dataset(
        "tiny",
        4,
        7,
        Split(tu, ti),
        Split([0, 1, 2, 3], [3, 1, 1, 2]),
        Split([0, 1, 2, 3], [6, 6, 5, 4]),
    )


def analytic_gradients(P, E, W, X, users, pos, neg):
    """Closed-form BPR gradients, one triple at a time (slow and obviously correct)."""
    Q = E + SCALE * X @ W.T
    gP, gQ = np.zeros_like(P), np.zeros_like(Q)
    B = len(users)
    for u, i, j in zip(users, pos, neg):
        s = 1.0 / (1.0 + math.exp(-(P[u] @ Q[j] - P[u] @ Q[i])))  # d softplus(n - p) / d(n - p)
        c = s / B
        gP[u] += c * (Q[j] - Q[i])
        gQ[i] -= c * P[u]
        gQ[j] += c * P[u]
    gW = SCALE * gQ.T @ X  # (d, f)
    return gP, gQ, gW


def test_recorder_equals_closed_form():
    ds = tiny_dataset()
    seed_everything(0)
    x = torch.randn(7, 5)
    model = TinyAdditive(4, 7, x)
    P0, E0, W0 = (
        t.detach().double().numpy().copy()
        for t in (model.user_emb, model.item_emb, model.proj.weight)
    )
    rec = GradientBiasRecorder(num_buckets=2, probe=False)
    lr = 0.05
    Trainer(
        lr=lr,
        epochs=1,
        batch_size=64,
        seed=3,
        ks=(5,),
        valid_metric="Recall@5",
        show_progress=False,
        callbacks=[rec],
    ).fit(model, ds)
    users, pos, neg = (t.numpy() for t in model.batches[0])
    gP, gQ, gW = analytic_gradients(P0, E0, W0, x.double().numpy(), users, pos, neg)
    got = {(g, q): v for s, e, g, q, v in rec.step_rows if s == 0}

    assert got[("item_id", "grad_norm")] == pytest.approx(np.linalg.norm(gQ), rel=1e-5)
    assert got[("item_feature", "grad_norm")] == pytest.approx(np.linalg.norm(gW), rel=1e-5)
    assert got[("user", "grad_norm")] == pytest.approx(np.linalg.norm(gP), rel=1e-5)
    assert got[("item_id", "grad_rms")] == pytest.approx(
        np.linalg.norm(gQ) / math.sqrt(7 * 3), rel=1e-5
    )
    assert got[("item_feature", "grad_rms")] == pytest.approx(
        np.linalg.norm(gW) / math.sqrt(3 * 5), rel=1e-5
    )
    rows = np.linalg.norm(gQ, axis=1)
    touched = np.union1d(pos, neg)
    assert got[("item_id", "rows_nonzero")] == len(touched)
    assert got[("item_id", "row_norm_mean")] == pytest.approx(rows[touched].mean(), rel=1e-5)
    assert got[("user", "rows_nonzero")] == 4
    assert ("item_feature", "rows_nonzero") not in got  # W is not an embedding table

    # Adam's first step is lr * g / (|g| + eps) element-wise
    eps = 1e-8
    for g, grad, theta in (("item_id", gQ, E0), ("item_feature", gW, W0), ("user", gP, P0)):
        upd = lr * np.linalg.norm(grad / (np.abs(grad) + eps))
        assert got[(g, "update_norm")] == pytest.approx(upd, rel=1e-4)
        assert got[(g, "relative_update")] == pytest.approx(upd / np.linalg.norm(theta), rel=1e-4)

    # per item: ID row norm; the feature output receives SCALE times the same gradient
    np.testing.assert_allclose(rec.item_epoch["id_grad"], rows, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(rec.item_epoch["feature_grad"], SCALE * rows, rtol=1e-5, atol=1e-12)
    np.testing.assert_array_equal(
        rec.item_epoch["id_touched"], np.isin(np.arange(7), touched).astype(float)
    )
    # buckets: degrees [4, 2, 1, 1, 1, 1, 0] -> unseen {6}, Q1 (tail) {2, 3, 4}, Q2 (head) {5, 1, 0}
    by = {r["label"]: r for r in rec.item_rows}
    assert by["Q1 (tail)"]["items"] == 3 and by["Q2 (head)"]["degree_max"] == 4
    assert by["Q1 (tail)"]["id_grad"] == pytest.approx(rows[[2, 3, 4]].mean(), rel=1e-5)
    assert by["Q2 (head)"]["feature_grad"] == pytest.approx(
        SCALE * rows[[0, 1, 5]].mean(), rel=1e-5
    )
    assert by["Q2 (head)"]["feature_id_ratio"] == pytest.approx(SCALE, rel=1e-5)

    # per epoch: one epoch, so the distance of the start to the final value is the epoch update
    ep = {(e, g, q): v for e, g, q, v in rec.epoch_rows}
    assert ep[(0, "item_id", "dist_to_final")] == pytest.approx(
        got[("item_id", "update_norm")], rel=1e-4
    )
    assert ep[(1, "item_id", "dist_to_final")] == 0.0
    assert ep[(1, "user", "epoch_update_norm")] == pytest.approx(
        got[("user", "update_norm")], rel=1e-4
    )


def test_update_cosine_and_every():
    ds = tiny_dataset()
    seed_everything(0)
    model = TinyAdditive(4, 7, torch.randn(7, 5))
    snaps = []

    class Snap(GradientBiasRecorder):
        def on_epoch_end(self, trainer, model, epoch, metrics):
            snaps.append(model.item_emb.detach().double().clone())
            super().on_epoch_end(trainer, model, epoch, metrics)

    e0 = model.item_emb.detach().double().clone()
    rec = Snap(every=2, probe=False)
    Trainer(
        lr=0.05,
        epochs=3,
        batch_size=4,
        seed=1,
        ks=(5,),
        valid_metric="Recall@5",
        show_progress=False,
        callbacks=[rec],
    ).fit(model, ds)
    steps = sorted({s for s, *_ in rec.step_rows})
    assert steps == [0, 2, 4, 6, 8]  # 3 epochs x 3 steps (10 pairs, batch 4), every 2nd
    d1, d2, d3 = snaps[0] - e0, snaps[1] - snaps[0], snaps[2] - snaps[1]
    ep = {(e, g, q): v for e, g, q, v in rec.epoch_rows}
    cos = float(d3.flatten() @ d2.flatten() / (d3.norm() * d2.norm()))
    assert ep[(3, "item_id", "update_cosine")] == pytest.approx(cos, rel=1e-4)
    assert ep[(1, "item_id", "epoch_relative_update")] == pytest.approx(
        float(d1.norm() / e0.norm()), rel=1e-4
    )
    assert ep[(1, "item_id", "dist_to_final")] == pytest.approx(
        float((snaps[2] - snaps[0]).norm()), rel=1e-4
    )


def test_keep_only_zeroes_one_part_and_restores():
    seed_everything(0)
    x = torch.randn(7, 5)
    model = TinyAdditive(4, 7, x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        full = model()[1].clone()
        with keep_only(model, "id") as touched:
            torch.testing.assert_close(model()[1], model.item_emb.detach(), rtol=0, atol=0)
        assert touched
        with keep_only(model, "feature") as touched:
            torch.testing.assert_close(model()[1], SCALE * model.proj(x), rtol=0, atol=0)
        assert touched
        torch.testing.assert_close(model()[1], full, rtol=0, atol=0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(ConfigError, match="part must be"), keep_only(model, "both"):
        pass


def test_popularity_buckets_equal_counts():
    degree = np.array([0, 0, 1, 1, 1, 2, 3, 5, 8, 13, 21])
    bucket, info = popularity_buckets(degree, 3)
    assert [i["label"] for i in info] == ["unseen", "Q1 (tail)", "Q2", "Q3 (head)"]
    assert [i["items"] for i in info] == [2, 3, 3, 3]  # 9 seen items in 3 equal groups
    assert bucket.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert (info[3]["degree_min"], info[3]["degree_max"]) == (8, 21)


@pytest.mark.parametrize("name,kwargs", [("vbpr", {}), ("lirdrec", {"item_id": "add"})])
def test_recording_does_not_change_training(name, kwargs):
    ds = generate(seed=1, num_users=60, num_items=90)

    def fit(callbacks):
        seed_everything(5)
        model = registry.get(name).from_dataset(ds, **kwargs)
        res = Trainer(
            lr=1e-3, epochs=3, batch_size=128, seed=5, show_progress=False, callbacks=callbacks
        ).fit(model, ds)
        return res, model.state_dict()

    rec = GradientBiasRecorder(every=1, probe=True)
    (plain, s_plain), (recorded, s_rec) = fit([]), fit([rec])
    assert plain.history and [
        {k: v for k, v in h.items() if not k.endswith("_s")} for h in plain.history
    ] == [{k: v for k, v in h.items() if not k.endswith("_s")} for h in recorded.history]
    assert plain.test == recorded.test
    for k in s_plain:
        assert torch.equal(s_plain[k], s_rec[k]), k
    assert (
        len(rec.probe_rows) == 3
        and rec.probe_rows[0]["full"] == recorded.history[0]["valid/Recall@20"]
    )
    assert all(np.isfinite(r["id_only"]) and np.isfinite(r["feature_only"]) for r in rec.probe_rows)


def test_script_writes_outputs(tmp_path, capsys):
    data, _ = write_synthetic(
        tmp_path / "syn", seed=0, use_encoders=False, num_users=60, num_items=80
    )
    out = tmp_path / "gb"
    from lirdrec.cli.main import main

    rc = main(
        [
            "-q",
            "gradient-bias",
            "--models",
            "vbpr,lirdrec-id,lirdrec",
            "--data",
            str(data),
            "--epochs",
            "2",
            "--out",
            str(out),
            "--set",
            "vbpr.batch_size=128",
            "--set",
            "lirdrec-id.batch_size=128",
            "--set",
            "lirdrec.batch_size=128",
            "--no-progress",
            "--snapshots",
            "disk",
        ]
    )
    assert rc == 0
    for f in (
        "grad_bias.csv",
        "item_grad_by_popularity.csv",
        "probe.csv",
        "summary.md",
        "grad_norms.png",
        "grad_ratio.png",
        "popularity.png",
        "convergence.png",
        "probe.png",
    ):
        assert (out / f).stat().st_size > 0, f
    gb = pd.read_csv(out / "grad_bias.csv")
    assert list(gb.columns) == ["model", "step", "epoch", "group", "quantity", "value"]
    ds_train = pd.read_csv(data / "synthetic.inter", sep="\t").query("x_label == 0").shape[0]
    steps_per_epoch = math.ceil(ds_train / 128)
    vb = gb[(gb["model"] == "vbpr") & (gb["quantity"] == "grad_norm") & (gb["group"] == "item_id")]
    assert len(vb) == 2 * steps_per_epoch and (vb["value"] > 0).all()
    # VBPR: the ID rows with a gradient are at most the distinct items of a batch (2 per pair)
    rows = gb[
        (gb["model"] == "vbpr") & (gb["quantity"] == "rows_nonzero") & (gb["group"] == "item_id")
    ]
    assert rows["value"].max() <= 2 * 128
    assert set(gb[gb["step"].isna()]["quantity"]) >= {
        "epoch_update_norm",
        "update_cosine",
        "dist_to_final",
    }
    assert set(gb[gb["model"] == "lirdrec"]["group"]) == {
        "item_feature",
        "user",
        "other",
    }  # no ID table
    probe = pd.read_csv(out / "probe.csv")
    assert len(probe) == 6 and probe.query("model == 'lirdrec'")["id_only"].isna().all()
    items = pd.read_csv(out / "item_grad_by_popularity.csv")
    assert items.query("model == 'vbpr' and bucket > 0")["id_touched"].between(0, 1).all()
    summary = (out / "summary.md").read_text()
    assert "## Verdict" in summary and "## lirdrec-id" in summary and "In plain words" in summary
    assert "| lirdrec | not applicable |" in summary
    meta = json.loads((out / "runs.json").read_text())
    assert set(meta["models"]) == {"vbpr", "lirdrec-id", "lirdrec"} and meta["epochs"] == 2
    summarize(out, figures=False)  # the summary is a function of the files alone
    assert (out / "summary.md").read_text() == summary

    rc = main(
        [
            "gradient-bias",
            "--models",
            "vbpr,nosuchmodel",
            "--data",
            str(data),
            "--epochs",
            "1",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "nosuchmodel" in err and "lirdrec-id" in err and "vbpr" in err


def test_resolve_model_names():
    assert resolve_model_names(["lirdrec-id", "VBPR"]) == [
        ("lirdrec-id", "lirdrec", {"item_id": "add"}),
        ("vbpr", "vbpr", {}),
    ]
    with pytest.raises(ConfigError, match="available: .*freedom"):
        resolve_model_names(["graphsage"])
    with pytest.raises(ConfigError, match="epochs must be"):
        run_gradient_bias(["vbpr"], generate(seed=0, num_users=20, num_items=30), 0, "/nonexistent")


class _Interrupt(Exception):
    """Stands for a crash after a checkpoint was written."""


class _StopAt(Callback):
    """Raises :class:`_Interrupt` when ``epoch`` starts (the trainer never gets to on_fit_end)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer, model, epoch):
        if epoch == self.epoch:
            raise _Interrupt(epoch)


@pytest.mark.parametrize("snapshots", ["memory", "disk"])
def test_resumed_run_records_what_an_uninterrupted_one_does(tmp_path, snapshots):
    ds = generate(seed=1, num_users=60, num_items=90)

    def fit(run, callbacks, model_seed=5, resume=False):
        seed_everything(model_seed)
        model = registry.get("vbpr").from_dataset(ds)
        trainer = Trainer(
            lr=1e-3,
            epochs=4,
            batch_size=128,
            seed=5,
            show_progress=False,
            out_dir=tmp_path / run,
            callbacks=callbacks,
        )
        return trainer.fit(model, ds, resume=resume)

    def recorder(run):
        snap = None if snapshots == "memory" else tmp_path / f"snap-{run}"
        return GradientBiasRecorder(every=2, snapshot_dir=snap, model_name="vbpr")

    full = recorder("full")
    fit("full", [full])
    cut = recorder("cut")
    with pytest.raises(_Interrupt):
        fit("cut", [cut, _StopAt(3)])  # checkpoint after epoch 2, crash when epoch 3 starts
    resumed = recorder("cut")
    fit("cut", [resumed], model_seed=123, resume=True)  # weights come from the checkpoint

    assert len(resumed.probe_rows) == 4 and {r[1] for r in resumed.step_rows} == {1, 2, 3, 4}
    for name in ("step_rows", "epoch_rows"):
        pd.testing.assert_frame_equal(
            pd.DataFrame(getattr(resumed, name)), pd.DataFrame(getattr(full, name))
        )
    pd.testing.assert_frame_equal(pd.DataFrame(resumed.item_rows), pd.DataFrame(full.item_rows))
    pd.testing.assert_frame_equal(pd.DataFrame(resumed.probe_rows), pd.DataFrame(full.probe_rows))
    paths_full = write_outputs({"vbpr": full}, tmp_path / "out-full")
    paths_resumed = write_outputs({"vbpr": resumed}, tmp_path / "out-resumed")
    for key, path in paths_full.items():
        assert paths_resumed[key].read_text() == path.read_text(), key
    if snapshots == "disk":
        assert not any((tmp_path / "snap-cut").iterdir())  # removed at the end of the resumed run


def test_resume_without_the_snapshot_files_is_a_checkpoint_error(tmp_path):
    ds = generate(seed=1, num_users=40, num_items=50)
    snap = tmp_path / "snap"

    def fit(callbacks, resume=False):
        seed_everything(5)
        model = registry.get("vbpr").from_dataset(ds)
        Trainer(
            lr=1e-3,
            epochs=3,
            batch_size=128,
            seed=5,
            show_progress=False,
            out_dir=tmp_path / "run",
            callbacks=callbacks,
        ).fit(model, ds, resume=resume)

    with pytest.raises(_Interrupt):
        fit([GradientBiasRecorder(probe=False, snapshot_dir=snap), _StopAt(2)])
    for path in snap.iterdir():
        path.unlink()
    with pytest.raises(CheckpointError, match="snapshot .* is gone"):
        fit([GradientBiasRecorder(probe=False, snapshot_dir=snap)], resume=True)
