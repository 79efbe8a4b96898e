"""Baselines that learn items from ID embeddings + features: VBPR, LATTICE, BM3, FREEDOM (issue 5).

A shared suite runs on a tiny planted dataset (two user groups, each liking one half of the items,
features that reveal the halves); each model's defining mechanism has its own test, checked
against a slow dense formula written here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lirdrec.data import Dataset, Split
from lirdrec.errors import ConfigError
from lirdrec.graphs import bipartite_adjacency, to_coo_parts
from lirdrec.models import get
from lirdrec.models.bm3 import BM3
from lirdrec.models.freedom import degree_sensitive_prune, frozen_item_graph, modality_weights
from lirdrec.models.lattice import lattice_adjacency, learned_knn_edges
from lirdrec.models.vbpr import VBPR
from lirdrec.train import Trainer

U, I = 12, 16  # noqa: E741  (I: the item count)
MODELS = ["vbpr", "lattice", "bm3", "freedom"]
# small k for 16 items; FREEDOM's feature-side term switched on so its projections get gradient
SMALL = {"vbpr": {}, "lattice": {"knn_k": 3, "reg_weight": 1e-3},
         "bm3": {}, "freedom": {"knn_k": 3, "reg_weight": 0.1, "dropout": 0.5}}


def planted(seed: int = 0) -> Dataset:
    """Users 0-5 like items 0-7, users 6-11 like items 8-15; features encode the half."""
    rng = np.random.default_rng(seed)
    users, items, labels = [], [], []
    for u in range(U):
        half = np.arange(8) + (0 if u < 6 else 8)
        chosen = rng.permutation(half)[:6]
        users += [u] * 6
        items += chosen.tolist()
        labels += [0, 0, 0, 0, 1, 2]
    users, items, labels = map(np.asarray, (users, items, labels))
    group = (np.arange(I) >= 8).astype(np.float32)
    image = np.stack([group, 1 - group], 1) * 2 + 0.3 * rng.normal(size=(I, 2))
    image = np.concatenate([image, rng.normal(size=(I, 4))], 1).astype(np.float32)
    text = np.stack([1 - group, group, group], 1) + 0.3 * rng.normal(size=(I, 3))
    text = text.astype(np.float32)
    split = [Split(users[labels == k], items[labels == k]) for k in (0, 1, 2)]
    return Dataset("planted", U, I, *split, features={"image": torch.from_numpy(image),
                                                      "text": torch.from_numpy(text)})


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return planted()


def build(name: str, ds: Dataset, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return get(name).from_dataset(ds, **{**SMALL[name], **kw})


def train_batch(ds: Dataset, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    users = torch.from_numpy(ds.train.users)
    pos = torch.from_numpy(ds.train.items)
    neg = torch.randint(0, I, users.shape, generator=g)
    return users, pos, neg


def trainable(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


# ---------------------------------------------------------------------------- shared suite
@pytest.mark.parametrize("name", MODELS)
def test_shapes_and_repr(name, ds):
    model = build(name, ds)
    user_emb, item_emb = model()
    assert user_emb.shape[0] == U and item_emb.shape[0] == I
    assert user_emb.shape[1] == item_emb.shape[1] == (128 if name == "vbpr" else 64)
    assert model.score(torch.tensor([0, 3, 11])).shape == (3, I)
    assert type(model).__name__ in str(model) and "num_items=16" in str(model)


@pytest.mark.parametrize("name", MODELS)
def test_parameter_groups_partition_parameters(name, ds):
    model = build(name, ds)
    groups = model.parameter_groups()
    assert set(groups) == {"item_id", "item_feature", "user", "other"}
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids))  # nothing twice
    assert set(ids) == {id(p) for p in model.parameters()}  # nothing missing
    assert len(groups["item_id"]) == 1 and groups["item_id"][0].shape == (I, 64)
    assert len(groups["user"]) == 1 and groups["user"][0].shape[0] == U
    assert groups["item_feature"]  # every baseline maps features into items


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name, ds):
    model = build(name, ds)
    model.loss(*train_batch(ds)).backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MODELS)
def test_loss_falls(name, ds):
    model = build(name, ds)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = train_batch(ds)
    losses = []
    for epoch in range(1, 31):
        model.on_epoch_start(epoch)
        opt.zero_grad()
        loss = model.loss(*batch)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_output_and_state_round_trip(name, ds):
    def run(seed):
        model = build(name, ds, seed)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for epoch in (1, 2, 3):
            model.on_epoch_start(epoch)
            opt.zero_grad()
            model.loss(*train_batch(ds, epoch)).backward()
            opt.step()
        return model

    a, b, c = run(0), run(0), run(1)
    users = torch.arange(U)
    assert torch.equal(a.score(users), b.score(users))
    assert not torch.allclose(a.score(users), c.score(users))
    # state_dict + extra_state move a model (and its generator) onto a differently seeded one
    c.load_state_dict(a.state_dict())
    c.load_extra_state(a.extra_state())
    assert torch.equal(a.score(users), c.score(users))
    for m in (a, c):
        m.on_epoch_start(4)
    assert torch.equal(a.loss(*train_batch(ds, 4)), c.loss(*train_batch(ds, 4)))


@pytest.mark.parametrize("name", MODELS)
def test_trainer_fit_and_resume_bit_identical(name, ds, tmp_path):
    kw = dict(batch_size=32, lr=1e-2, seed=5, show_progress=False, ks=(5, 10),
              valid_metric="Recall@10")
    full = Trainer(epochs=4, **kw).fit(build(name, ds), ds)
    Trainer(epochs=2, out_dir=tmp_path, **kw).fit(build(name, ds), ds)
    resumed = Trainer(epochs=4, out_dir=tmp_path, **kw).fit(build(name, ds), ds, resume=True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.test == full.test and full.best_epoch >= 1
    assert full.test["Recall@10"] > 0


@pytest.mark.parametrize("name,arg,value", [
    ("vbpr", "reg_weight", -1.0), ("lattice", "lambda_coeff", 1.5), ("bm3", "dropout", 1.0),
    ("freedom", "dropout", 1.0), ("freedom", "mm_image_weight", -0.1), ("lattice", "knn_k", 17)])
def test_bad_arguments_raise_config_error(name, arg, value, ds):
    cls = get(name).__name__
    with pytest.raises(ConfigError, match=rf"{cls}: {arg} must be .*, got {value}"):
        build(name, ds, **{arg: value})


@pytest.mark.parametrize("name", MODELS)
def test_features_with_wrong_rows_raise(name, ds):
    cls = get(name)
    feats = {"image": torch.zeros(I - 1, 3)}
    adj = bipartite_adjacency(U, I, ds.train.users, ds.train.items)
    args = {"vbpr": (U, I, feats),
            "lattice": (U, I, lattice_adjacency(U, I, ds.train.users, ds.train.items),
                                                feats),
            "bm3": (U, I, adj, feats), "freedom": (U, I, adj, feats, None)}[name]
    with pytest.raises(ConfigError, match=r"features\['image'\] must be a 2-D tensor with 16 rows"):
        cls(*args)


# ---------------------------------------------------------------------------- VBPR
def test_vbpr_score_changes_with_features_only(ds):
    torch.manual_seed(0)
    a = VBPR(U, I, dict(ds.features))
    torch.manual_seed(0)
    b = VBPR(U, I, {m: x.flip(0) for m, x in ds.features.items()})  # same ids, other features
    assert torch.equal(a.item_emb, b.item_emb) and torch.equal(a.user_emb, b.user_emb)
    assert torch.equal(a.item_linear.weight, b.item_linear.weight)
    assert not torch.allclose(a.score(torch.arange(U)), b.score(torch.arange(U)))


def test_vbpr_score_and_loss_match_formula(ds):
    torch.manual_seed(0)
    model = VBPR(U, I, dict(ds.features), embedding_dim=8, reg_weight=0.3)
    x = torch.cat([ds.features["image"], ds.features["text"]], 1)  # (I, 6 + 3)
    assert x.shape == (I, 9) and model.item_linear.weight.shape == (8, 9)
    q = torch.cat([model.item_emb, x @ model.item_linear.weight.t() + model.item_linear.bias], 1)
    users, pos, neg = train_batch(ds)
    torch.testing.assert_close(model.score(users[:5]), model.user_emb[users[:5]] @ q.t())
    p, u, n = q[pos], model.user_emb[users], q[neg]
    bpr = -torch.log(torch.sigmoid((u * p).sum(1) - (u * n).sum(1))).mean()
    reg = (u.norm() + p.norm() + n.norm()) / len(users)  # unsquared norms / B
    torch.testing.assert_close(model.loss(users, pos, neg), bpr + 0.3 * reg)


# ---------------------------------------------------------------------------- FREEDOM
def test_freedom_pruning_keeps_fraction_and_renormalises(ds):
    model = build("freedom", ds, dropout=0.8)
    n_edges = len(ds.train)  # 48 unique training pairs
    assert model.num_kept_edges == int(48 * (1 - 0.8)) == 9  # float rounding as the reference
    model.on_epoch_start(1)
    pruned = model._train_adj.to_dense()
    assert torch.equal(pruned, pruned.t())
    ui = pruned[:U, U:]
    kept = ui > 0
    assert int(kept.sum()) == 9 and n_edges == 48
    train = torch.zeros(U, I, dtype=torch.bool)
    train[ds.train.users, ds.train.items] = True
    assert bool(train[kept].all())  # only training edges survive
    du, di = kept.sum(1, keepdim=True).float(), kept.sum(0, keepdim=True).float()
    expected = torch.where(kept, 1.0 / torch.sqrt(du * di).clamp_min(1), torch.zeros(()))
    torch.testing.assert_close(ui, expected)  # normalised by the kept degrees
    model.on_epoch_start(2)
    assert not torch.equal(model._train_adj.to_dense(), pruned)  # fresh pruning each epoch
    # evaluation uses the full graph; dropout 0 trains on it
    full = bipartite_adjacency(U, I, ds.train.users, ds.train.items).to_dense()
    assert torch.equal(model.adj.to_dense(), full)
    m0 = build("freedom", ds, dropout=0.0)
    m0.on_epoch_start(1)
    assert m0._train_adj is m0.adj


def test_freedom_pruning_is_degree_sensitive():
    # user 0 is a hub (10 items), users 1..10 have one item each: hub edges have weight
    # 1/sqrt(10 * 2) against 1/sqrt(1 * 2) for the leaf edges, so leaves are kept far more often
    users = torch.tensor([0] * 10 + list(range(1, 11)))
    items = torch.tensor(list(range(10)) * 2)
    adj = bipartite_adjacency(11, 10, users, items)
    row, col, val = to_coo_parts(adj)
    sel = (row < 11) & (col >= 11)
    g = torch.Generator().manual_seed(0)
    hub = 0
    for _ in range(300):
        a = degree_sensitive_prune(row[sel], col[sel] - 11, val[sel], 11, 10, 5, g).to_dense()
        hub += int((a[0, 11:] > 0).sum())
    # expected hub share of the 5 kept edges is well below 5 * 1/(1 + sqrt(10)) = 1.2 per draw
    assert hub / 300 < 1.3 and hub > 0


def test_freedom_item_graph_and_feature_side_bpr(ds):
    assert modality_weights(["image", "text"], 0.1) == [0.1, 0.9]
    assert modality_weights(["image"], 0.1) == [1.0]
    mats = [ds.features["image"], ds.features["text"]]
    graph = frozen_item_graph(mats, ["image", "text"], 3, 0.1, chunk_size=5).to_dense()
    dense = torch.zeros(I, I)
    for w, x in zip([0.1, 0.9], mats):
        xn = F.normalize(x, dim=1)
        top = (xn @ xn.t()).topk(3, dim=1).indices
        dense += w * torch.zeros(I, I).scatter_(1, top, 1.0 / 3)  # unit weights, sym-normalised
    torch.testing.assert_close(graph, dense)
    torch.testing.assert_close(graph.sum(1), torch.ones(I))

    torch.manual_seed(0)
    model = build("freedom", ds, reg_weight=0.0)
    users, pos, neg = train_batch(ds)
    model.on_epoch_start(1)
    base = model.loss(users, pos, neg)
    model.reg_weight = 0.25
    u = model._embed(model._train_adj)[0][users]
    side = sum(F.softplus((u * f[neg]).sum(1) - (u * f[pos]).sum(1)).mean()
               for f in model.projected_features())
    torch.testing.assert_close(model.loss(users, pos, neg), base + 0.25 * side)
    # items are ID-based: propagated IDs + S^n E_id; features do not enter the scores
    user_emb, item_emb = model()
    e = torch.cat([model.user_emb, model.item_emb])
    a = model.adj.to_dense()
    mean = (e + a @ e + a @ a @ e) / 3
    h = model.item_graph.to_dense() @ model.item_emb
    torch.testing.assert_close(item_emb, mean[U:] + h)
    torch.testing.assert_close(user_emb, mean[:U])


# ---------------------------------------------------------------------------- LATTICE
def test_lattice_adjacency_is_row_normalised_with_self_loops(ds):
    a = lattice_adjacency(U, I, ds.train.users, ds.train.items).to_dense()
    r = torch.zeros(U, I)
    r[ds.train.users, ds.train.items] = 1
    full = torch.zeros(U + I, U + I)
    full[:U, U:], full[U:, :U] = r, r.t()
    full += torch.eye(U + I)
    torch.testing.assert_close(a, full / full.sum(1, keepdim=True))


def test_lattice_learned_knn_matches_dense_and_is_differentiable():
    torch.manual_seed(0)
    x = torch.randn(13, 5, requires_grad=True)
    row, col, val = learned_knn_edges(x, 4, chunk_size=5)  # chunk does not divide 13
    xn = F.normalize(x, dim=1)
    v, i = (xn @ xn.t()).topk(4, dim=1)
    dense = torch.zeros(13, 13).scatter(1, i, v)
    sparse = torch.zeros(13, 13).index_put((row, col), val, accumulate=True)
    torch.testing.assert_close(sparse, dense)
    val.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_lattice_learned_graph_mixes_with_frozen_and_trains_projection(ds):
    model = build("lattice", ds, lambda_coeff=0.9)
    row, col, val = model.item_graph_edges()
    s = torch.zeros(I, I).index_put((row, col), val.detach(), accumulate=True)
    # slow dense version: S = 0.1 * N(sum_m a_m knn(F_m)) + 0.9 * sum_m a_m N(knn(X_m))
    def knn(x, normalise):
        xn = F.normalize(x, dim=1)
        v, i = (xn @ xn.t()).topk(3, dim=1)
        g = torch.zeros(I, I).scatter(1, i, v)
        return norm(g) if normalise else g

    def norm(g):
        d = g.sum(1).pow(-0.5)
        return d[:, None] * g * d[None, :]

    with torch.no_grad():
        feats = [p(x) for p, x in zip(model.projections, model.features)]
        learned = norm(0.5 * knn(feats[0], False) + 0.5 * knn(feats[1], False))
        frozen = 0.5 * knn(ds.features["image"], True) + 0.5 * knn(ds.features["text"], True)
    torch.testing.assert_close(s, 0.1 * learned + 0.9 * frozen)
    assert not torch.allclose(learned, frozen, atol=1e-2)  # the learned graph is its own
    # the first loss of an epoch back-propagates into the projections and modality weights ...
    batch = train_batch(ds)
    model.loss(*batch).backward()
    assert model.projections[0].weight.grad.abs().sum() > 0
    assert model.modal_weight.grad.abs().sum() > 0
    # ... later losses of the same epoch use the graph detached (the reference's schedule)
    model.zero_grad()
    model.loss(*batch).backward()
    grad = model.projections[0].weight.grad
    assert grad is None or grad.abs().sum() == 0
    model.on_epoch_start(2)
    model.zero_grad()
    model.loss(*batch).backward()
    assert model.projections[0].weight.grad.abs().sum() > 0


def test_lattice_items_add_normalised_graph_embedding(ds):
    model = build("lattice", ds)
    user_emb, item_emb = model()
    row, col, val = model.item_graph_edges()
    s = torch.zeros(I, I).index_put((row, col), val.detach(), accumulate=True)
    a = lattice_adjacency(U, I, ds.train.users, ds.train.items).to_dense()
    e = torch.cat([model.user_emb, model.item_emb]).detach()
    mean = (e + a @ e + a @ a @ e) / 3
    torch.testing.assert_close(item_emb.detach(),
                               mean[U:] + F.normalize(s @ model.item_emb.detach(), dim=1))
    torch.testing.assert_close(user_emb.detach(), mean[:U])


# ---------------------------------------------------------------------------- BM3
def test_bm3_trains_without_negatives(ds):
    assert BM3.uses_negatives is False and VBPR.uses_negatives is True
    model = build("bm3", ds, generator_seed=3)
    users, pos, neg = train_batch(ds)
    state = model.generator.get_state()
    with_none = model.loss(users, pos, None)
    model.generator.set_state(state)
    assert torch.equal(with_none, model.loss(users, pos, neg))  # negatives are never read


def test_bm3_loss_matches_formula(ds):
    model = build("bm3", ds, dropout=0.0, reg_weight=0.5, cl_weight=2.0)
    users, pos, _ = train_batch(ds)
    u_all, i_all = model.online()
    g = model.predictor

    def gap(a, b):
        return 1 - F.cosine_similarity(a, b, dim=-1).mean()

    u, i = u_all[users], i_all[pos]
    expected = gap(g(u), i) + gap(g(i), u)
    expected = expected + 0.5 * (u_all.norm() + i_all.norm()) / I  # EmbLoss: / number of items
    for proj, x in zip(model.projections, model.features):
        f = proj(x)[pos]
        expected = expected + 2.0 * (gap(g(f), i) + gap(g(f), f))  # dropout 0: target = online
    torch.testing.assert_close(model.loss(users, pos, None), expected)
    # scores use the predictor on both sides
    torch.testing.assert_close(model.score(users[:4]), g(u_all[users[:4]]) @ g(i_all).t())


def test_bm3_target_dropout_uses_own_generator(ds):
    model = build("bm3", ds, dropout=0.5)
    x = torch.ones(200, 64)
    y = model._drop(x)
    assert set(torch.unique(y).tolist()) == {0.0, 2.0}  # zeroed or scaled by 1/(1-p)
    assert abs(float((y == 0).float().mean()) - 0.5) < 0.02
    torch.manual_seed(123)
    before = torch.get_rng_state()
    model.loss(*train_batch(ds))
    assert torch.equal(before, torch.get_rng_state())  # global RNG untouched


# ---------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", MODELS)
def test_default_and_grid_configs_resolve(name):
    from pathlib import Path

    from lirdrec.config import read_yaml, resolve

    root = Path(__file__).resolve().parents[1] / "datasets" / "configs"
    cfg = resolve(None, [read_yaml(root / f"{name}.yaml")])
    assert cfg.model == name
    assert cfg.trainer_kwargs["lr"] == 1e-3 and cfg.trainer_kwargs["seed"] == 999
    grid = read_yaml(root / f"{name}_grid.yaml")
    sizes = {"vbpr": 7, "lattice": 16, "bm3": 8, "freedom": 8}  # MMRec's reference grids
    assert math.prod(len(v) for v in grid.values()) == sizes[name]
    point = {k: v[0] for k, v in grid.items()}
    resolve(name, [read_yaml(root / f"{name}.yaml"), point])  # every grid key is a valid key
