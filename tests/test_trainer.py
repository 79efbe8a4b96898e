"""Trainer: determinism, exact resume, early stopping, run files, clear failures."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

import lirdrec
from lirdrec.data import synthetic
from lirdrec.errors import CheckpointError, TrainingError
from lirdrec.models import LightGCN
from lirdrec.models.base import Recommender
from lirdrec.train import Trainer
from lirdrec.train.checkpoint import load_checkpoint, save_checkpoint
from lirdrec.train.trainer import FINGERPRINT_NEUTRAL_DEFAULTS, Callback, callback_keys
from lirdrec.utils import seed_everything
from lirdrec.utils.provenance import git_state


@pytest.fixture(scope="module")
def ds():
    return synthetic.generate(seed=0, num_users=150, num_items=200)


def _lightgcn(ds, seed=3):
    seed_everything(seed)
    return LightGCN.from_dataset(ds, embedding_dim=16, num_layers=2)


def _fit(ds, resume=False, **kw):
    kw.setdefault("show_progress", False)
    return Trainer(lr=5e-3, batch_size=256, seed=7, **kw).fit(_lightgcn(ds), ds, resume=resume)


def test_same_seed_identical_metrics(ds):
    a, b = _fit(ds, epochs=3), _fit(ds, epochs=3)
    assert a.valid == b.valid and a.test == b.test
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    c = Trainer(lr=5e-3, batch_size=256, seed=8, epochs=3, show_progress=False).fit(_lightgcn(ds),
                                                                                    ds)
    assert [r["loss"] for r in c.history] != [r["loss"] for r in a.history]


def test_resume_reaches_the_uninterrupted_result(ds, tmp_path):
    full = _fit(ds, epochs=5, out_dir=tmp_path / "full", config={"x": 1})
    _fit(ds, epochs=2, out_dir=tmp_path / "cut", config={"x": 1})  # "interrupted" after epoch 2
    resumed = Trainer(lr=5e-3, batch_size=256, seed=7, epochs=5, out_dir=tmp_path / "cut",
                      config={"x": 1},
                      show_progress=False).fit(_lightgcn(ds, seed=123), ds, resume=True)
    assert resumed.valid == full.valid and resumed.test == full.test
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    with pytest.raises(CheckpointError, match="different configuration"):
        Trainer(epochs=5, out_dir=tmp_path / "cut", config={"x": 2}, show_progress=False).fit(
            _lightgcn(ds), ds, resume=True)


def test_fused_adam_is_the_same_update_and_resumes(ds, tmp_path):
    """``fused_adam``: torch's fused Adam kernel. Same algorithm as the default: a step from the
    same state and gradient agrees to float rounding; a run's losses track the default's
    closely; an interrupted fused run resumes to the uninterrupted fused result."""
    p0 = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    steps = []
    for fused in (False, True):
        p = p0.clone().requires_grad_()
        opt = torch.optim.Adam([p], lr=1e-2, fused=fused or None)
        for k in range(3):
            p.grad = torch.sin(p.detach() * (k + 1))
            opt.step()
        steps.append(p.detach())
    assert not torch.equal(p0, steps[0])
    torch.testing.assert_close(steps[1], steps[0], rtol=0, atol=1e-6)

    base = _fit(ds, epochs=3)
    trainer = Trainer(lr=5e-3, batch_size=256, seed=7, epochs=3, fused_adam=True,
                      out_dir=tmp_path / "full", config={"x": 1}, show_progress=False)
    fused = trainer.fit(_lightgcn(ds), ds)
    assert trainer.optimizer.defaults["fused"] is True
    assert [r["loss"] for r in fused.history] == pytest.approx([r["loss"] for r in base.history],
                                                               rel=1e-4)
    _fit(ds, epochs=1, fused_adam=True, out_dir=tmp_path / "cut", config={"x": 1})
    resumed = Trainer(lr=5e-3, batch_size=256, seed=7, epochs=3, fused_adam=True,
                      out_dir=tmp_path / "cut", config={"x": 1}, show_progress=False).fit(
        _lightgcn(ds, seed=123), ds, resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in fused.history]


def test_run_files(ds, tmp_path):
    res = _fit(ds, epochs=2, out_dir=tmp_path, config={"model": "lightgcn"})
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best_epoch"] == res.best_epoch and "Recall@20" in metrics["valid"]
    assert metrics["test"]["NDCG@20"] == res.test["NDCG@20"]
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch,loss,train_s,eval_s,lr,valid/Recall@5")
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "config.yaml").is_file()
    assert not list(tmp_path.glob("*.tmp"))
    # which code ran: the package version and the directory it was imported from
    code = metrics["code"]
    assert code["lirdrec"] == lirdrec.__version__ and code["torch"] == torch.__version__
    assert Path(code["path"]) == Path(lirdrec.__file__).resolve().parent


def _git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_state_names_the_commit_and_edits_under_the_path(tmp_path):
    repo, pkg = tmp_path / "repo", tmp_path / "repo" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "mod.py").write_text("x = 1\n")
    (repo / "other.py").write_text("y = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    head = _git(repo, "rev-parse", "HEAD")
    assert git_state(pkg) == (head, False)
    (repo / "other.py").write_text("y = 2\n")  # outside the package: still clean
    (pkg / "new.py").write_text("z = 1\n")  # untracked: not an edit of the committed code
    assert git_state(pkg) == (head, False)
    (pkg / "mod.py").write_text("x = 2\n")
    assert git_state(pkg) == (head, True)
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git_state(outside) == (None, None)


class _Stuck(Recommender):
    """Scores never change: validation cannot improve after epoch 1."""

    def __init__(self, num_users, num_items):
        super().__init__(num_users, num_items)
        self.w = nn.Parameter(torch.zeros(1))
        self.items = torch.randn(num_items, 4)
        self.users = torch.randn(num_users, 4)

    def forward(self):
        return self.users, self.items

    def loss(self, users, pos_items, neg_items):
        return (self.w ** 2).sum() + 1.0


def test_early_stopping_counts_like_mmrec(ds):
    res = Trainer(epochs=50, patience=2,
                  show_progress=False).fit(_Stuck(ds.num_users, ds.num_items), ds)
    # epoch 1 is best; epochs 2, 3, 4 do not improve; stop when 3 > patience
    assert res.best_epoch == 1 and len(res.history) == 4 and res.stopped_early


class _Nan(_Stuck):
    def loss(self, users, pos_items, neg_items):
        return self.w.sum() * float("nan")


def test_non_finite_loss_is_a_training_error(ds):
    with pytest.raises(TrainingError, match=r"non-finite loss nan at epoch 1, step 0"):
        Trainer(epochs=2, show_progress=False).fit(_Nan(ds.num_users, ds.num_items), ds)


def test_best_weights_are_restored(ds):
    model = _lightgcn(ds)
    res = Trainer(lr=5e-3, batch_size=256, epochs=4, show_progress=False).fit(model, ds)
    from lirdrec.evaluate import evaluate

    assert evaluate(model, ds, "test")["Recall@20"] == pytest.approx(res.test["Recall@20"])


def test_lirdrec_training_is_bit_identical_with_several_threads():
    """Regression: with 2 CPU threads LIRDRec's loss drifted by one float32 ulp between identical
    runs until the trainer switched on torch's deterministic algorithms (CI, founding session)."""
    small = synthetic.generate(seed=1, num_users=60, num_items=90)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        losses = []
        for _ in range(2):
            seed_everything(5)
            from lirdrec.models import registry

            m = registry.get("lirdrec").from_dataset(small, item_id="add")
            r = Trainer(lr=1e-3, epochs=2, batch_size=128, seed=5, show_progress=False).fit(m,
                                                                                            small)
            losses.append([h["loss"] for h in r.history])
        assert losses[0] == losses[1]
    finally:
        torch.set_num_threads(threads)


class _Steps(Callback):
    """Counts optimiser steps; the count is its checkpoint state."""

    def __init__(self):
        self.steps = 0

    def on_step_end(self, trainer, model, step):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def test_callback_state_is_checkpointed(ds, tmp_path):
    full = [_Steps(), _Steps()]
    _fit(ds, epochs=3, callbacks=full)
    _fit(ds, epochs=2, out_dir=tmp_path, callbacks=[_Steps(), _Steps()])
    resumed = [_Steps(), _Steps()]
    _fit(ds, epochs=3, out_dir=tmp_path, callbacks=resumed, resume=True)
    assert [c.steps for c in resumed] == [c.steps for c in full] and full[0].steps > 0
    states = load_checkpoint(tmp_path / "checkpoint.pt")["callbacks"]
    assert states == {"_Steps": {"steps": full[0].steps}, "_Steps#1": {"steps": full[1].steps}}
    assert callback_keys([Callback(), _Steps(), Callback()]) == ["Callback", "_Steps", "Callback#1"]


def test_lr_decay_follows_mmrec_schedule_and_resumes(ds, tmp_path):
    """Epoch e trains with lr * gamma^((e-1)/T) (MMRec's LambdaLR stepped after each epoch); the
    schedule survives a resume; gamma = 1 is the constant rate of every other model."""
    kw = dict(lr_decay=0.5, lr_decay_epochs=2)
    full = _fit(ds, epochs=4, out_dir=tmp_path / "full", config={"x": 1}, **kw)
    assert [r["lr"] for r in full.history] == pytest.approx([5e-3 * 0.5 ** ((e - 1) / 2)
                                                             for e in range(1, 5)], rel=1e-12)
    _fit(ds, epochs=2, out_dir=tmp_path / "cut", config={"x": 1}, **kw)
    resumed = Trainer(lr=5e-3, batch_size=256, seed=7, epochs=4, out_dir=tmp_path / "cut",
                      config={"x": 1}, show_progress=False, **kw).fit(_lightgcn(ds, seed=1), ds,
                                                                     resume=True)
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in full.history]
    assert resumed.valid == full.valid and resumed.test == full.test
    constant = _fit(ds, epochs=2)
    assert [r["lr"] for r in constant.history] == [5e-3, 5e-3]
    with pytest.raises(Exception, match="lr_decay must be in"):
        Trainer(lr_decay=1.5)


def test_lattice_reference_decay_is_its_trainer_default():
    from lirdrec.config import resolve

    assert resolve("lattice", []).trainer_kwargs["lr_decay"] == 0.96
    assert resolve("lattice", []).trainer_kwargs["lr_decay_epochs"] == 50
    assert resolve("lightgcn", []).trainer_kwargs["lr_decay"] == 1.0
    assert resolve("lattice", [{"lr_decay": 1.0}]).trainer_kwargs["lr_decay"] == 1.0


def test_negatives_default_is_the_recorded_run_and_k_negatives_resume_exactly(ds, tmp_path):
    """Issue 18: ``negatives=1`` is today's run (explicit = default = the losses recorded before
    the option existed, commit e7b7850); ``negatives=2`` keeps the steps per epoch (a batch is
    ``batch_size`` pairs), trains differently, and resumes exactly."""
    base = _fit(ds, epochs=2)
    explicit = _fit(ds, epochs=2, negatives=1)
    assert [r["loss"] for r in explicit.history] == [r["loss"] for r in base.history]
    assert explicit.test == base.test
    assert [r["loss"] for r in base.history] == pytest.approx(
        [0.6895468756556511, 0.6826875433325768], rel=1e-6, abs=0)
    assert base.test["Recall@20"] == pytest.approx(0.4034675615212528, rel=1e-6)

    steps = _Steps()
    two = _fit(ds, epochs=3, negatives=2, callbacks=[steps])
    assert steps.steps == 3 * math.ceil(len(ds.train) / 256)
    assert [r["loss"] for r in two.history][:2] != [r["loss"] for r in base.history]
    _fit(ds, epochs=1, negatives=2, out_dir=tmp_path, config={"negatives": 2})
    resumed = Trainer(lr=5e-3, batch_size=256, seed=7, epochs=3, negatives=2, out_dir=tmp_path,
                      config={"negatives": 2}, show_progress=False).fit(_lightgcn(ds, seed=123),
                                                                        ds, resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in two.history]
    assert resumed.test == two.test


class _BatchSizes(Callback):
    """The number of triples each step's loss saw (read from the model's last call)."""

    def __init__(self):
        self.sizes = []

    def on_step_end(self, trainer, model, step):
        self.sizes.append(model.last_batch)


def test_k_negatives_feed_batch_size_times_k_triples_to_the_loss(ds):
    seed_everything(3)
    model = LightGCN.from_dataset(ds, embedding_dim=16, num_layers=2)
    loss = model.loss

    def recording_loss(users, pos, neg):
        model.last_batch = (len(users), len(pos), len(neg))
        return loss(users, pos, neg)

    model.loss = recording_loss
    cb = _BatchSizes()
    Trainer(lr=5e-3, batch_size=100, seed=7, epochs=1, negatives=3, callbacks=[cb],
            show_progress=False).fit(model, ds)
    n = len(ds.train)
    assert cb.sizes == [(300, 300, 300)] * (n // 100) + [(3 * (n % 100),) * 3] * (n % 100 > 0)


def test_a_checkpoint_without_the_new_settings_resumes(ds, tmp_path):
    """A checkpoint saves its configuration: a run interrupted under a version without a setting
    resumes when that setting is at its default (whatever it is: no list to extend), and at
    another value the error names the key."""
    from lirdrec.config import trainer_defaults

    old = {"model": "lightgcn", "lr": 5e-3}
    _fit(ds, epochs=1, out_dir=tmp_path, config=old)
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ck["config"] == old
    new = {**old, "negatives": 1, "layer_combine": "mean",  # LightGCN's own default
           "patience": trainer_defaults()["patience"], "epochs": 2}
    assert "patience" not in FINGERPRINT_NEUTRAL_DEFAULTS
    with pytest.raises(CheckpointError, match=r"negatives: \(not set\) -> 2\)"):
        Trainer(lr=5e-3, batch_size=256, seed=7, epochs=3, out_dir=tmp_path,
                config={**new, "negatives": 2}, show_progress=False).fit(_lightgcn(ds), ds,
                                                                         resume=True)
    with pytest.raises(CheckpointError, match=r"lr: 0.005 -> 0.001"):
        Trainer(lr=1e-3, batch_size=256, seed=7, epochs=3, out_dir=tmp_path,
                config={**new, "lr": 1e-3}, show_progress=False).fit(_lightgcn(ds), ds,
                                                                     resume=True)
    r = Trainer(lr=5e-3, batch_size=256, seed=7, epochs=2, out_dir=tmp_path, config=new,
                show_progress=False).fit(_lightgcn(ds), ds, resume=True)
    assert [row["epoch"] for row in r.history] == [1, 2]


def test_a_checkpoint_with_only_a_fingerprint_resumes_by_the_frozen_list(ds, tmp_path):
    """Checkpoints from before configurations were saved carry only the hash: the keys of
    FINGERPRINT_NEUTRAL_DEFAULTS at their defaults are accepted, any other change is refused."""
    old = {"model": "lightgcn", "lr": 5e-3}
    _fit(ds, epochs=1, out_dir=tmp_path, config=old)
    path = tmp_path / "checkpoint.pt"
    ck = load_checkpoint(path)
    del ck["config"]
    save_checkpoint(path, ck)
    new = {**old, "negatives": 1, "layer_combine": "sum"}
    Trainer(lr=5e-3, batch_size=256, seed=7, epochs=2, out_dir=tmp_path, config=new,
            show_progress=False).fit(_lightgcn(ds), ds, resume=True)
    ck = load_checkpoint(path)  # the resumed run rewrote it, now with its configuration
    assert ck["config"] == new
    del ck["config"]
    save_checkpoint(path, ck)
    with pytest.raises(CheckpointError, match="different configuration or data"):
        Trainer(lr=5e-3, batch_size=256, seed=7, epochs=3, out_dir=tmp_path,
                config={**new, "negatives": 2}, show_progress=False).fit(_lightgcn(ds), ds,
                                                                         resume=True)


def test_k_negatives_rank_batches_are_the_shares_of_the_global_batches(ds):
    """The multi-process path with ``negatives=2``: each rank's steps hold its share of each
    global batch of ``batch_size`` pairs (``2 * share`` triples), weighted by its share."""
    from lirdrec.train import BPRSampler

    world, b, k = 2, 256, 2
    n_batches = math.ceil(len(ds.train) / b)
    per_rank = []
    for rank in range(world):
        t = Trainer(batch_size=b, negatives=k, show_progress=False)
        t._world, t._rank = world, rank
        sampler = BPRSampler(ds, torch.Generator().manual_seed(7), negatives=k)
        per_rank.append(t._epoch_batches(sampler, torch.Generator().manual_seed(rank)))
    full_u, full_p, _ = BPRSampler(ds, torch.Generator().manual_seed(7), negatives=k).epoch()
    start = 0
    for i in range(n_batches):
        parts = [per_rank[r][i] for r in range(world)]
        size = sum(len(p[0]) for p in parts)
        assert size == k * min(b, len(ds.train) - i * b)
        assert sum(p[3] for p in parts) == pytest.approx(world)  # weights n_r W / n sum to W
        assert torch.equal(torch.cat([p[0] for p in parts]), full_u[start:start + size])
        assert torch.equal(torch.cat([p[1] for p in parts]), full_p[start:start + size])
        start += size
    assert start == len(full_u)


def test_default_configs_keep_the_fingerprint_of_the_version_before_issue_18():
    """Every key issue 18 added, at its default, leaves the legacy fingerprint equal to that of
    the configuration without it (what a run interrupted before the merge saved), for LIRDRec
    and LightGCN (whose own layer_combine default is "mean" and stays in)."""
    from lirdrec.config import resolve

    added = {"negatives", "layer_combine", "cold_item_rep", "cold_graph", "popularity_channel",
             "popularity_features", "input_norm"}
    for model, new_keys in (("lirdrec", added), ("lightgcn", {"negatives"})):
        new = resolve(model, []).to_dict()
        old = {k: v for k, v in new.items() if k not in new_keys}
        assert new_keys <= set(new)
        assert Trainer(config=new)._fingerprint(legacy=True) == Trainer(config=old)._fingerprint()
    assert resolve("lightgcn", []).to_dict()["layer_combine"] == "mean"
