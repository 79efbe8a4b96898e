"""Every registered model against an independent dense formula on a toy graph (issue 20).

Each model is built by ``from_dataset`` on a 5-user, 7-item toy dataset (item 6 never trained,
two modalities), converted to float64, its parameters redrawn at random (so zero-initialised
biases and equal modality weights do not hide a term), and then compared with the formula of its
docstring / paper written here with dense matrices: ``forward()``, ``loss(users, pos, neg)`` and
the gradient of the loss with respect to every parameter (gradients must flow where the formula
sends them, and nowhere else: targets are detached, cached graphs are constants).

The expectations never call the model's own helpers (``online``, ``propagate``, ``_embed``,
``item_graph_edges``, the graph builders of ``lirdrec.graphs``, ``bpr_loss``, ``emb_loss``); they
read only the model's parameters, its hyper-parameters, and for the stochastic parts (BM3's
target dropout, FREEDOM's edge pruning) a copy of its generator state, from which the random
draws are reproduced here. Initialisations documented in the docstrings are checked separately.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lirdrec.data import Dataset, Split
from lirdrec.models import registry

U, I = 5, 7  # noqa: E741 (I: items, as in the docstrings' math)
TRAIN = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 3), (2, 0), (2, 4), (2, 5), (3, 2), (3, 3), (3, 5),
         (4, 4), (4, 1)]  # item 6 is cold: no training edge, zero rows in the user-item graphs
USERS = torch.tensor([0, 1, 2, 3, 4, 0, 2, 3])
POS = torch.tensor([1, 3, 5, 2, 4, 0, 4, 3])
NEG = torch.tensor([6, 0, 1, 4, 2, 5, 6, 1])
RTOL, ATOL = 1e-9, 1e-12  # float64 end to end (MF, VBPR)
# graph models: the graphs are built in float32 (then moved to float64 with the model), and so
# are LIRDRec's encoder outputs; a wrong formula is off by far more than this
RTOL32, ATOL32 = 2e-6, 1e-7


def toy() -> Dataset:
    rng = np.random.default_rng(7)
    users, items = map(np.array, zip(*TRAIN))
    # positive features: cosines are positive, so every kNN row sum is positive
    feats = {"image": torch.from_numpy(rng.random((I, 4)).astype(np.float32) + 0.05),
             "text": torch.from_numpy(rng.random((I, 3)).astype(np.float32) + 0.05)}
    valid = Split(np.array([0, 1, 2, 3, 4]), np.array([3, 0, 1, 6, 0]))
    test = Split(np.array([0, 1, 2, 3, 4]), np.array([4, 2, 6, 0, 5]))
    return Dataset("toy", U, I, Split(users, items), valid, test, features=feats)


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return toy()


def build(name: str, ds: Dataset, seed: int = 0, randomise: bool = True, **kw):
    """``from_dataset`` in float64 with every parameter redrawn from N(0, 0.5^2)."""
    torch.manual_seed(seed)
    model = registry.get(name).from_dataset(ds, **kw).double()
    if randomise:
        g = torch.Generator().manual_seed(seed + 100)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


# ---------------------------------------------------------------------------- dense formulas
def dense_r() -> torch.Tensor:
    """:math:`R \\in \\{0,1\\}^{U \\times I}` of the training pairs."""
    r = torch.zeros(U, I, dtype=torch.float64)
    for u, i in TRAIN:
        r[u, i] = 1.0
    return r


def bipartite(r: torch.Tensor) -> torch.Tensor:
    """:math:`A = [[0, R], [R^T, 0]]`."""
    a = torch.zeros(U + I, U + I, dtype=r.dtype)
    a[:U, U:], a[U:, :U] = r, r.t()
    return a


def inv_sqrt(d: torch.Tensor) -> torch.Tensor:
    return torch.where(d > 0, d.clamp_min(1e-300).rsqrt(), torch.zeros_like(d))


def sym_norm(a: torch.Tensor) -> torch.Tensor:
    """:math:`D^{-1/2} A D^{-1/2}` with :math:`D` the row sums (zero rows stay zero)."""
    dinv = inv_sqrt(a.sum(1))
    return dinv[:, None] * a * dinv[None, :]


def layers(a: torch.Tensor, e0: torch.Tensor, n: int, mean: bool) -> torch.Tensor:
    """:math:`\\sum_{l=0}^{n} A^l E_0`, divided by :math:`n+1` for the layer mean."""
    out = sum(torch.linalg.matrix_power(a, k) @ e0 for k in range(n + 1))
    return out / (n + 1) if mean else out


def knn(x: torch.Tensor, k: int, weighted: bool) -> torch.Tensor:
    """Dense cosine top-k graph (self included): the cosine or 1 at the kept entries."""
    xn = x / x.norm(dim=1, keepdim=True)
    sim = xn @ xn.t()
    val, idx = sim.topk(k, dim=1)
    return torch.zeros_like(sim).scatter(1, idx, val if weighted else torch.ones_like(val))


def bpr(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """:math:`-\\frac1B \\sum_b \\log\\sigma(\\hat y^+_b - \\hat y^-_b)`."""
    return -torch.log(torch.sigmoid(pos - neg)).mean()


def cos_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:math:`1 - \\frac1B \\sum_b \\cos(a_b, b_b)`."""
    return 1.0 - ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean()


def leaky(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x, 0.01 * x)


def linear(lin: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """:math:`x W^T + b` from the layer's parameters."""
    return x @ lin.weight.t() + (0.0 if lin.bias is None else lin.bias)


def feats64(ds: Dataset) -> list[torch.Tensor]:
    return [ds.features[m].double() for m in ds.modalities]


# ---------------------------------------------------------------------------- comparison
def grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    out = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, out)]


def check_loss(model, expected: torch.Tensor, actual: torch.Tensor, rtol=RTOL, atol=ATOL) -> None:
    """Value and the gradient on every trainable parameter agree."""
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    for (n, _), g_act, g_exp in zip(named, grads(actual, params), grads(expected, params)):
        torch.testing.assert_close(g_act, g_exp, rtol=rtol, atol=atol, msg=f"gradient of {n}")


def check_forward(model, users: torch.Tensor, items: torch.Tensor, rtol=RTOL, atol=ATOL) -> None:
    model.eval()
    u, i = model()
    torch.testing.assert_close(u, users, rtol=rtol, atol=atol, msg="users")
    torch.testing.assert_close(i, items, rtol=rtol, atol=atol, msg="items")
    torch.testing.assert_close(model.score(USERS), users[USERS] @ items.t(), rtol=rtol, atol=atol)
    model.train()


def test_every_registered_model_has_a_formula_test():
    tested = {"pop", "mf", "lightgcn", "vbpr", "lattice", "bm3", "freedom", "lirdrec",
              "itemknncbf", "layergcn", "mmgcn", "grcn", "dualgnn", "dragon",
              "slmrec", "mgcn", "lgmrec", "smore"}
    assert set(registry.names()) == tested


# ---------------------------------------------------------------------------- Pop
def test_pop_scores_training_degree(ds):
    model = registry.get("pop").from_dataset(ds)
    degree = dense_r().sum(0)  # (I,), counted from TRAIN
    assert degree.tolist() == [2, 3, 2, 2, 2, 2, 0]
    u, i = model()
    assert u.shape == (U, 1) and i.shape == (I, 1)
    torch.testing.assert_close(model.score(USERS).double(), degree.expand(len(USERS), I))
    loss = model.loss(USERS, POS, NEG)
    assert loss.item() == 0.0 and list(model.parameters()) == []


# ---------------------------------------------------------------------------- ItemKNNCBF
@pytest.mark.parametrize("k,shrink", [(3, 10.0), (2, 0.0), (4, 0.5)])
def test_itemknncbf_scores_are_r_times_shrunk_cosine_knn(ds, k, shrink):
    model = build("itemknncbf", ds, knn_k=k, shrink=shrink, knn_chunk_size=3)  # 3 does not divide 7
    x = torch.cat(feats64(ds), 1)  # (I, 4 + 3), modalities in dict order
    n = x.norm(dim=1)
    sim = (x @ x.t()) / (n[:, None] * n[None, :] + shrink)
    val, idx = sim.topk(k, dim=1)
    s = torch.zeros(I, I, dtype=torch.float64).scatter(1, idx, val)  # kept values, no norm
    expected = dense_r() @ s  # y_uj = sum over the user's training items i of S_ij
    torch.testing.assert_close(model.score(USERS), expected[USERS], rtol=RTOL32, atol=ATOL32)
    if k >= 3:  # item 6, never trained, gets a score from its features (in a trained item's top 3)
        assert (expected[:, 6] > 0).any()
    r, s_t = model()
    torch.testing.assert_close(r.to_dense(), dense_r())
    assert list(model.parameters()) == [] and model.loss(USERS, POS, NEG).item() == 0.0


def test_itemknncbf_shrink_by_hand():
    """x_0 = (3, 4), x_1 = (6, 8), x_2 = (0, 1), h = 25, k = 2: s_01 = 50 / (5 * 10 + 25),
    s_00 = 25 / (25 + 25), s_02 = 4 / (5 + 25); the user of item 0 scores row 0 of S."""
    from lirdrec.graphs import interaction_matrix
    from lirdrec.models.itemknncbf import ItemKNNCBF

    feats = {"image": torch.tensor([[3.0, 4.0], [6.0, 8.0], [0.0, 1.0]])}
    model = ItemKNNCBF(1, 3, interaction_matrix(1, 3, [0], [0]), feats, None, knn_k=2,
                       shrink=25.0)
    torch.testing.assert_close(model.score(torch.tensor([0])),
                               torch.tensor([[25 / 50, 50 / 75, 0.0]]))  # s_02 = 4/30 not kept


# ---------------------------------------------------------------------------- MF
def test_mf_forward_and_loss(ds):
    model = build("mf", ds, embedding_dim=6, reg_weight=0.3)
    p, q = model.user_emb, model.item_emb
    check_forward(model, p.detach(), q.detach())
    u, pi, ni = p[USERS], q[POS], q[NEG]
    expected = bpr((u * pi).sum(1), (u * ni).sum(1)) + 0.3 * (
        u.norm() + pi.norm() + ni.norm()) / len(USERS)  # MMRec's unsquared norms / B
    check_loss(model, expected, model.loss(USERS, POS, NEG))


# ---------------------------------------------------------------------------- LightGCN
@pytest.mark.parametrize("combine,num_layers", [("mean", 2), ("mean", 3), ("sum", 2), ("mean", 0)])
def test_lightgcn_forward_and_loss(ds, combine, num_layers):
    kw = dict(embedding_dim=6, num_layers=num_layers, reg_weight=0.3)
    if combine != "mean":
        kw["layer_combine"] = combine
    model = build("lightgcn", ds, **kw)  # "mean" by the default
    a = sym_norm(bipartite(dense_r()))
    e0 = torch.cat([model.user_emb, model.item_emb])
    e = layers(a, e0, num_layers, mean=combine == "mean")
    check_forward(model, e[:U].detach(), e[U:].detach(), RTOL32, ATOL32)
    u, pi, ni = e[:U][USERS], e[U:][POS], e[U:][NEG]
    # the regulariser reads the layer-0 (ID) rows of the batch, not the propagated ones
    reg = (model.user_emb[USERS].norm() + model.item_emb[POS].norm()
           + model.item_emb[NEG].norm()) / len(USERS)
    expected = bpr((u * pi).sum(1), (u * ni).sum(1)) + 0.3 * reg
    check_loss(model, expected, model.loss(USERS, POS, NEG), RTOL32, ATOL32)


# ---------------------------------------------------------------------------- LayerGCN
def layer_refined(a: torch.Tensor, e0: torch.Tensor, n: int) -> torch.Tensor:
    r""":math:`\sum_{l=1}^{n} E_l`, :math:`E_l = \cos(A E_{l-1}, E_0) \odot A E_{l-1}` row-wise."""
    out, e = torch.zeros_like(e0), e0
    for _ in range(n):
        h = a @ e
        w = (h * e0).sum(1) / (h.norm(dim=1).clamp_min(1e-8) * e0.norm(dim=1).clamp_min(1e-8))
        e = w[:, None] * h
        out = out + e
    return out


@pytest.mark.parametrize("num_layers", [1, 3])
def test_layergcn_forward_and_loss(ds, num_layers):
    model = build("layergcn", ds, embedding_dim=6, num_layers=num_layers, reg_weight=0.3)
    a = sym_norm(bipartite(dense_r()))
    e0 = torch.cat([model.user_emb, model.item_emb])
    e = layer_refined(a, e0, num_layers)
    assert e[U + 6].abs().sum() == 0  # the cold item has no edge: every refined layer is 0
    check_forward(model, e[:U].detach(), e[U:].detach(), RTOL32, ATOL32)
    u, pi, ni = e[:U][USERS], e[U:][POS], e[U:][NEG]
    # a SUM of -log sigmoid over the batch and half the squared norms of the batch's ego rows
    expected = len(USERS) * bpr((u * pi).sum(1), (u * ni).sum(1)) + 0.3 * 0.5 * (
        model.user_emb[USERS].pow(2).sum() + model.item_emb[POS].pow(2).sum()
        + model.item_emb[NEG].pow(2).sum())
    model.on_epoch_start(1)  # dropout 0: trains on the full graph
    check_loss(model, expected, model.loss(USERS, POS, NEG), RTOL32, ATOL32)


def test_layergcn_loss_with_pruned_graph(ds):
    model = build("layergcn", ds, embedding_dim=6, num_layers=2, reg_weight=0.0, dropout=0.4,
                  generator_seed=11)
    g = torch.Generator().manual_seed(11)
    pairs = torch.tensor(sorted(TRAIN))  # the edge order of the CSR adjacency: by user, then item
    r = dense_r()
    probs = (1.0 / torch.sqrt(r.sum(1)[pairs[:, 0]] * r.sum(0)[pairs[:, 1]])).float()
    keep = int(len(TRAIN) * (1 - 0.4))
    for epoch in (1, 2):  # degree-sensitive, then uniform
        idx = (torch.multinomial(probs, keep, replacement=False, generator=g) if epoch == 1
               else torch.randperm(len(TRAIN), generator=g)[:keep])
        kept = torch.zeros(U, I, dtype=torch.float64)
        kept[pairs[idx, 0], pairs[idx, 1]] = 1.0
        e = layer_refined(sym_norm(bipartite(kept)), torch.cat([model.user_emb, model.item_emb]),
                          2)
        u, pi, ni = e[:U][USERS], e[U:][POS], e[U:][NEG]
        model.on_epoch_start(epoch)
        check_loss(model, len(USERS) * bpr((u * pi).sum(1), (u * ni).sum(1)),
                   model.loss(USERS, POS, NEG), RTOL32, ATOL32)


# ---------------------------------------------------------------------------- MMGCN
def row_norm(a: torch.Tensor) -> torch.Tensor:
    """:math:`D^{-1} A` (zero rows stay zero)."""
    d = a.sum(1, keepdim=True)
    return torch.where(d > 0, a / d.clamp_min(1e-300), torch.zeros_like(a))


@pytest.mark.parametrize("num_layers,reg_weight", [(1, 0.0), (3, 0.3)])
def test_mmgcn_forward_and_loss(ds, num_layers, reg_weight):
    # the toy's "image" goes through the projection, its "text" enters raw (as the reference)
    model = build("mmgcn", ds, embedding_dim=5, num_layers=num_layers, dim_latent=6,
                  reg_weight=reg_weight)
    a = row_norm(bipartite(dense_r()))  # neighbour mean
    e_id = torch.cat([model.user_emb, model.item_emb])
    outs = []
    for m, x, gcn in zip(ds.modalities, feats64(ds), model.gcns):
        f = linear(model.mlps["image"], x) if m == "image" else x
        assert f.shape[1] == (6 if m == "image" else 3)
        h = torch.cat([gcn.preference, f])
        h = h / h.norm(dim=1, keepdim=True)
        for k in range(num_layers):
            agg = leaky(a @ h @ gcn.convs[k])  # Eq. 1: mean over neighbours of x W
            x_hat = leaky(linear(gcn.linears[k], h)) + e_id  # Eq. 5
            h = leaky(linear(gcn.gates[k], torch.cat([agg, x_hat], 1)))
        outs.append(h)
    e = sum(outs) / 2
    check_forward(model, e[:U].detach(), e[U:].detach(), RTOL32, ATOL32)
    u, pi, ni = e[:U][USERS], e[U:][POS], e[U:][NEG]
    # the reference: mean over (2B, d) of id_u^2 + id_i^2 for (u, i+) and (u, i-) pairs
    uu = model.user_emb[USERS].repeat_interleave(2, 0)
    ii = torch.stack([model.item_emb[POS], model.item_emb[NEG]], 1).reshape(-1, 5)
    reg = (uu.pow(2) + ii.pow(2)).mean() + sum(g.preference.pow(2).mean() for g in model.gcns)
    expected = bpr((u * pi).sum(1), (u * ni).sum(1)) + reg_weight * reg
    check_loss(model, expected, model.loss(USERS, POS, NEG), RTOL32, ATOL32)


# ---------------------------------------------------------------------------- GRCN
def masked_softmax(s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row softmax over the entries of ``mask``; rows without any are 0."""
    a = s.masked_fill(~mask, -math.inf).softmax(1)
    return torch.where(mask, a, torch.zeros_like(a))


def normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("num_layers,reg_weight", [(0, 0.0), (2, 0.3)])
def test_grcn_forward_and_loss(ds, num_layers, reg_weight):
    model = build("grcn", ds, embedding_dim=5, latent_dim=4, num_layers=num_layers,
                  reg_weight=reg_weight)
    mask = bipartite(dense_r()) > 0  # (U+I, U+I), symmetric; row v: the neighbours of v
    contents, alphas = [], []
    for x, mlp, pref in zip(feats64(ds), model.mlps, model.preferences):
        f = normalize(leaky(linear(mlp, x)))
        p = normalize(pref)
        for _ in range(num_layers):  # each user attends over her items
            z = torch.cat([p, f])
            a = masked_softmax(p @ f.t(), mask[:U, U:])  # (U, I)
            p = normalize(p + a @ f)
        z = torch.cat([p, f])
        alpha = masked_softmax(z @ z.t(), mask)  # alpha[v, w]: message w -> v
        contents.append(z + alpha @ z)
        alphas.append(alpha)
    conf = model.confidence  # (U+I, M), of the source node w (column)
    w = torch.relu(torch.stack([a * conf[:, m][None, :] for m, a in enumerate(alphas)]).amax(0))
    w = torch.where(mask, w, torch.zeros_like(w))
    e0 = normalize(torch.cat([model.user_emb, model.item_emb]))
    e1 = w @ e0
    rep = torch.cat([e0 + e1 + w @ e1, *contents], 1)  # (U+I, 5 + 2 * 4)
    check_forward(model, rep[:U].detach(), rep[U:].detach(), RTOL32, ATOL32)
    u, pi, ni = rep[:U][USERS], rep[U:][POS], rep[U:][NEG]
    uu = model.user_emb[USERS].repeat_interleave(2, 0)
    ii = torch.stack([model.item_emb[POS], model.item_emb[NEG]], 1).reshape(-1, 5)
    prefs = sum(p.pow(2).mean() + p[USERS].pow(2).mean() for p in model.preferences)
    expected = bpr((u * pi).sum(1), (u * ni).sum(1)) + reg_weight * (
        (uu.pow(2) + ii.pow(2)).mean() + prefs)
    check_loss(model, expected, model.loss(USERS, POS, NEG), RTOL32, ATOL32)


# ---------------------------------------------------------------------------- DualGNN
@pytest.mark.parametrize("num_layers", [0, 2])
def test_dualgnn_forward_and_loss(ds, num_layers):
    # k = 12, a multiple of every user's neighbour count (4 or 3): the cyclic padding gives each
    # neighbour k / n_u slots, so the softmax over slots is the softmax over the neighbours
    model = build("dualgnn", ds, embedding_dim=5, num_layers=num_layers, user_knn_k=12,
                  reg_weight=0.3)
    r = dense_r()
    c = r @ r.t()
    c.fill_diagonal_(0)  # items two users share
    assert (c > 0).sum(1).tolist() == [4, 3, 3, 3, 3]
    a = torch.where(c > 0, c.exp(), torch.zeros_like(c))
    a = a / a.sum(1, keepdim=True)  # (U, U) neighbour weights
    adj = sym_norm(bipartite(r))
    reps = []
    for x, proj, pref in zip(feats64(ds), model.projections, model.preferences):
        f = linear(proj[2], leaky(linear(proj[0], x)))
        reps.append(layers(adj, normalize(torch.cat([pref, f])), num_layers, mean=False))
    items = sum(rep[U:] for rep in reps)
    mixed = sum(model.modal_weight[:, m, None] * rep[:U] for m, rep in enumerate(reps))
    users = mixed + a @ mixed
    check_forward(model, users.detach(), items.detach(), RTOL32, ATOL32)
    u, pi, ni = users[USERS], items[POS], items[NEG]
    reg = sum(p[USERS].pow(2).mean() for p in model.preferences) + model.modal_weight.pow(2).mean()
    expected = bpr((u * pi).sum(1), (u * ni).sum(1)) / math.log(2) + 0.3 * reg  # log2 sigmoid
    check_loss(model, expected, model.loss(USERS, POS, NEG), RTOL32, ATOL32)


# ---------------------------------------------------------------------------- DRAGON
@pytest.mark.parametrize("n_mm", [1, 2])
def test_dragon_forward_and_loss(ds, n_mm):
    model = build("dragon", ds, embedding_dim=5, user_knn_k=12, knn_k=3, mm_image_weight=0.3,
                  n_mm_layers=n_mm, reg_weight=0.3)  # k = 12: see the DualGNN test
    r = dense_r()
    c = r @ r.t()
    c.fill_diagonal_(0)
    a = torch.where(c > 0, c.exp(), torch.zeros_like(c))
    a = a / a.sum(1, keepdim=True)
    adj = sym_norm(bipartite(r))
    reps = []
    for x, proj, pref in zip(feats64(ds), model.projections, model.preferences):
        f = linear(proj[2], leaky(linear(proj[0], x)))
        reps.append(layers(adj, normalize(torch.cat([pref, f])), 2, mean=False))
    items = torch.cat([rep[U:] for rep in reps], 1)  # (I, 2 * 5): modalities concatenated
    mixed = torch.cat([model.modal_weight[:, m, None] * rep[:U] for m, rep in enumerate(reps)], 1)
    s = freedom_item_graph(ds, 3, 0.3)
    items = items + torch.linalg.matrix_power(s, n_mm) @ items
    users = mixed + a @ mixed
    # S is built in float32 (values 1/k): scores of size ~10 carry its rounding, ~1e-7
    check_forward(model, users.detach(), items.detach(), RTOL32, 1e-6)
    u, pi, ni = users[USERS], items[POS], items[NEG]
    reg = sum(p[USERS].pow(2).mean() for p in model.preferences) + model.modal_weight.pow(2).mean()
    expected = bpr((u * pi).sum(1), (u * ni).sum(1)) / math.log(2) + 0.3 * reg
    check_loss(model, expected, model.loss(USERS, POS, NEG), RTOL32, 1e-6)


# ---------------------------------------------------------------------------- SLMRec
def nce(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """In-batch InfoNCE: mean over b of -log softmax_b'(a_b . b_b' / t) at b' = b."""
    logits = a @ b.t() / t
    return -(logits.diagonal() - torch.logsumexp(logits, 1)).mean()


@pytest.mark.parametrize("weighted", [False, True])
def test_logsumexp_mm_value_and_gradients_match_dense(weighted):
    """The fused log-sum-exp of a product (issue 17's speed-up of every InfoNCE) against
    torch.logsumexp of the dense logits, value and both gradients, under a non-uniform upstream
    gradient; and torch's gradcheck."""
    from lirdrec.models.base import logsumexp_mm

    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([1.0, 2.0, 1.0, 3.0, 1.0, 1.0, 4.0], dtype=torch.float64)
    up = torch.randn(5, generator=g, dtype=torch.float64)
    w = weight if weighted else None
    got = logsumexp_mm(a, b, 2.5, w)
    dense = a @ b.t() * 2.5 + (weight.log() if weighted else 0.0)
    expected = torch.logsumexp(dense, 1)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    ga, gb = torch.autograd.grad((got * up).sum(), (a, b))
    ea, eb = torch.autograd.grad((expected * up).sum(), (a, b))
    torch.testing.assert_close(ga, ea, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gb, eb, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, y: logsumexp_mm(x, y, 2.5, w), (a, b))
    # only one side trainable: the other gets nothing, the trainable one the same gradient
    (ga_only,) = torch.autograd.grad((logsumexp_mm(a, b.detach(), 2.5, w) * up).sum(), (a,))
    torch.testing.assert_close(ga_only, ea, rtol=1e-12, atol=1e-12)


def test_info_nce_with_rows_equals_the_full_batch_with_its_repeats():
    """info_nce(table_a, table_b, rows_a, rows_b) computes each repeated row once and counts it;
    it must equal the plain in-batch InfoNCE of the gathered (B, d) rows, value and gradients."""
    from lirdrec.models.base import info_nce

    g = torch.Generator().manual_seed(1)
    ta = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    tb = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    ra = torch.tensor([0, 3, 3, 5, 0, 1, 3, 2])  # repeats on both sides, not aligned
    rb = torch.tensor([4, 4, 8, 0, 1, 4, 8, 7])
    for norm in (False, True):
        got = info_nce(ta, tb, 0.3, ra, rb, normalize=norm)
        x, y = ta[ra], tb[rb]
        if norm:
            x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
        expected = nce(x, y, 0.3)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        got_grads = torch.autograd.grad(got, (ta, tb))
        for gg, ge in zip(got_grads, torch.autograd.grad(expected, (ta, tb))):
            torch.testing.assert_close(gg, ge, rtol=1e-12, atol=1e-12)
        assert got_grads[0][4].abs().sum() == 0  # row 4 of a is not in the batch
    # without rows: the (B, d) rows as given, duplicates included in the denominators
    torch.testing.assert_close(info_nce(ta[ra], tb[rb], 0.3), nce(ta[ra], tb[rb], 0.3),
                               rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="rows_a and rows_b"):
        info_nce(ta, tb, 0.3, ra, None)


@pytest.mark.parametrize("num_layers", [0, 2])
def test_slmrec_forward_and_loss(ds, num_layers):
    model = build("slmrec", ds, embedding_dim=6, num_layers=num_layers, temp=0.3, ssl_temp=0.7,
                  ssl_alpha=0.4)
    adj = sym_norm(bipartite(dense_r()))
    p, q = model.user_emb, model.item_emb
    items = [q] + [linear(lin, normalize(x)) for lin, x in zip(model.projections, feats64(ds))]
    branches = [layers(adj, torch.cat([p, i]), num_layers, mean=True) for i in items]
    cat = torch.cat(branches, 1)  # (U+I, 3 * 6): ID, image, text
    users, its = linear(model.user_fusion, cat[:U]), linear(model.item_fusion, cat[U:])
    check_forward(model, users.detach(), its.detach(), RTOL32, ATOL32)
    main = nce(normalize(users[USERS]), normalize(its[POS]), 0.3)
    rows = POS + U
    a1 = linear(model.fac_id, branches[0][rows])  # the reference's x_i_iv
    image = nce(a1, linear(model.fac_modal[0], branches[1][rows]), 0.7)
    chain = model.fac_chain[0]  # g_iv_iva then g_iva_ivat (d -> d -> d / 2)
    a2 = linear(chain[1], linear(chain[0], a1))
    text = nce(a2, linear(model.fac_modal[1], branches[2][rows]), 0.7)
    assert a2.shape == (len(POS), 3)
    check_loss(model, main + 0.4 * (image + text), model.loss(USERS, POS, NEG), RTOL32, ATOL32)
    assert torch.equal(model.loss(USERS, POS, None), model.loss(USERS, POS, NEG))  # no negatives
    assert model.uses_negatives is False and model.trainer_defaults == {"weight_decay": 1e-4}


# ---------------------------------------------------------------------------- MGCN
@pytest.mark.parametrize("n_ui,n_mm,cl", [(2, 1, 0.0), (1, 2, 0.4)])
def test_mgcn_forward_and_loss(ds, n_ui, n_mm, cl):
    model = build("mgcn", ds, embedding_dim=6, n_ui_layers=n_ui, n_mm_layers=n_mm, knn_k=3,
                  reg_weight=0.3, cl_loss=cl)
    a = sym_norm(bipartite(dense_r()))
    p, q = model.user_emb, model.item_emb
    content = layers(a, torch.cat([p, q]), n_ui, mean=True)
    views = []
    for m, (x, proj, gate) in enumerate(zip(model.features, model.projections, model.purifiers)):
        h = q * torch.sigmoid(linear(gate[0], linear(proj, x)))  # purifier
        s = sym_norm(knn(feats64(ds)[m], 3, weighted=True))  # graph of the raw features
        h = torch.linalg.matrix_power(s, n_mm) @ h
        views.append(torch.cat([a[:U, U:] @ h, h]))
    score = torch.stack([linear(model.query[2], torch.tanh(linear(model.query[0], v)))[:, 0]
                         for v in views], 1)  # (U+I, 2)
    beta = score.softmax(1)
    common = beta[:, :1] * views[0] + beta[:, 1:] * views[1]
    side = (common + sum(torch.sigmoid(linear(model.preferences[m][0], content))
                         * (views[m] - common) for m in range(2))) / 3
    out = content + side
    check_forward(model, out[:U].detach(), out[U:].detach(), RTOL32, 1e-6)
    u, pi, ni = out[USERS], out[U + POS], out[U + NEG]
    expected = bpr((u * pi).sum(1), (u * ni).sum(1)) + 0.3 * 0.5 * (
        u.pow(2).sum() + pi.pow(2).sum() + ni.pow(2).sum()) / len(USERS)
    expected = expected + cl * (
        nce(normalize(side[U + POS]), normalize(content[U + POS]), 0.2)
        + nce(normalize(side[USERS]), normalize(content[USERS]), 0.2))
    check_loss(model, expected, model.loss(USERS, POS, NEG), RTOL32, 1e-6)


# ---------------------------------------------------------------------------- LGMRec
def lgmrec_expected(model, ds, g: torch.Generator | None, keep: float):
    """Rows (U+I, d) and per-modality hypergraph rows; Gumbel noise and dropout drawn from
    ``g`` in the model's order (item then user memberships, per modality), none if ``g`` is None.
    """
    r = dense_r()
    a = sym_norm(bipartite(r))
    collab = layers(a, torch.cat([model.user_emb, model.item_emb]), 2, mean=True)

    def soft(logits):
        if g is None:
            return torch.softmax(logits / 0.2, 1)
        gumbel = -torch.empty(logits.shape).exponential_(generator=g).log().double()
        out = torch.softmax((logits + gumbel) / 0.2, 1)
        mask = (torch.rand(logits.shape, generator=g) < keep).double()
        return out * mask / keep

    local, hyper = collab, []
    for x, proj, hproj in zip(feats64(ds), model.projections, model.hyper_projections):
        f = x @ proj.weight.t()
        m = torch.cat([(r @ f) / r.sum(1, keepdim=True), f])  # users: mean of their items
        # n_mm_layers = 2, last layer only; the cold item's row is 0 (and stays 0 normalised)
        local = local + F.normalize(a @ a @ m, dim=1)
        hi, hu = soft(x @ hproj.weight.t()), soft(r @ x @ hproj.weight.t())
        z = hi.t() @ collab[U:]  # one hypergraph layer
        hyper.append(torch.cat([hu @ z, hi @ z]))
    return local + 0.3 * F.normalize(sum(hyper), dim=1), hyper


def test_lgmrec_forward_and_loss(ds):
    model = build("lgmrec", ds, embedding_dim=6, hyper_num=3, keep_rate=0.7, cl_weight=0.2,
                  reg_weight=0.3, generator_seed=5)
    out, _ = lgmrec_expected(model, ds, None, 0.7)  # evaluation: no noise, no dropout
    check_forward(model, out[:U].detach(), out[U:].detach(), RTOL32, 1e-6)
    g = torch.Generator().manual_seed(5)
    out, (hv, ht) = lgmrec_expected(model, ds, g, 0.7)
    u, pi, ni = out[USERS], out[U + POS], out[U + NEG]

    def hnce(x, y, all_y):  # summed over the batch, against every row of all_y
        x, y, all_y = (F.normalize(t, dim=1) for t in (x, y, all_y))  # dropped rows: 0
        return (torch.logsumexp(x @ all_y.t() / 0.2, 1) - (x * y).sum(1) / 0.2).sum()

    cl = hnce(hv[USERS], ht[USERS], ht[:U]) + hnce(hv[U + POS], ht[U + POS], ht[U:])
    expected = bpr((u * pi).sum(1), (u * ni).sum(1)) + 0.2 * cl + 0.3 * (
        u.norm() + pi.norm() + ni.norm()) / len(USERS)
    check_loss(model, expected, model.loss(USERS, POS, NEG), RTOL32, 1e-6)


# ---------------------------------------------------------------------------- SMORE
def dense_rfft(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal real DFT along dim 1 as a product: X_k = sum_n x_n e^(-2 pi i kn/d) / sqrt d."""
    d = x.shape[1]
    k, n = torch.arange(d // 2 + 1, dtype=torch.float64), torch.arange(d, dtype=torch.float64)
    w = torch.exp(-2j * math.pi * k[:, None] * n[None, :] / d) / math.sqrt(d)  # (d/2+1, d)
    return x.to(torch.complex128) @ w.t()


def dense_irfft(y: torch.Tensor, d: int) -> torch.Tensor:
    """Its inverse for even d: x_n = Re(sum_k c_k Y_k e^(2 pi i kn/d)) / sqrt d, c = 1 at k = 0
    and k = d/2 (their imaginary parts dropped), 2 elsewhere."""
    k, n = torch.arange(d // 2 + 1, dtype=torch.float64), torch.arange(d, dtype=torch.float64)
    c = torch.full((d // 2 + 1,), 2.0, dtype=torch.float64)
    c[0] = c[-1] = 1.0
    e = torch.exp(2j * math.pi * k[:, None] * n[None, :] / d) / math.sqrt(d)  # (d/2+1, d)
    return ((y * c) @ e).real


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_smore_forward_and_loss(ds, dropout):
    d = 6
    model = build("smore", ds, embedding_dim=d, n_ui_layers=2, n_mm_layers=1, image_knn_k=3,
                  text_knn_k=4, reg_weight=0.3, cl_loss=0.4, dropout=dropout, generator_seed=2)
    a = sym_norm(bipartite(dense_r()))
    p, q = model.user_emb, model.item_emb
    content = layers(a, torch.cat([p, q]), 2, mean=True)
    spectra = [dense_rfft(linear(proj, x)) for proj, x in zip(model.projections, model.features)]
    w = [torch.complex(f[:, 0], f[:, 1]) for f in model.filters]  # image, text, fusion
    convs = [dense_irfft(spectra[0] * w[0], d), dense_irfft(spectra[1] * w[1], d),
             dense_irfft(spectra[0] * spectra[1] * w[2], d)]  # the fusion: product of spectra
    graphs = [sym_norm(knn(feats64(ds)[0], 3, weighted=True)),
              sym_norm(knn(feats64(ds)[1], 4, weighted=True))]
    graphs.append(torch.where((graphs[0] > 0) | (graphs[1] > 0),
                              torch.maximum(graphs[0], graphs[1]), torch.zeros(())))
    views = []
    for conv, gate, s in zip(convs, model.purifiers, graphs):
        h = s @ (q * torch.sigmoid(linear(gate[0], conv)))
        views.append(torch.cat([a[:U, U:] @ h, h]))

    def side_of(masks):
        prefs = [torch.sigmoid(linear(g[0], content)) * mk for g, mk in zip(model.preferences,
                                                                           masks)]
        side = prefs[2] * views[2]
        for m in range(2):
            query = model.queries[m]
            att = linear(query[2], torch.tanh(linear(query[0], views[2]))).softmax(1)  # over d
            side = side + prefs[m] * att * views[m]
        return side / 3

    side = side_of([1.0, 1.0, 1.0])
    out = content + side
    check_forward(model, out[:U].detach(), out[U:].detach(), RTOL32, 1e-6)
    g = torch.Generator().manual_seed(2)
    masks = [(torch.rand(U + I, d, generator=g) >= dropout).double() / (1 - dropout)
             if dropout else 1.0 for _ in range(3)]
    side = side_of(masks)
    out = content + side
    u, pi, ni = out[USERS], out[U + POS], out[U + NEG]
    expected = bpr((u * pi).sum(1), (u * ni).sum(1)) + 0.3 * 0.5 * (
        u.pow(2).sum() + pi.pow(2).sum() + ni.pow(2).sum()) / len(USERS) + 0.4 * (
        nce(normalize(side[U + POS]), normalize(content[U + POS]), 0.2)
        + nce(normalize(side[USERS]), normalize(content[USERS]), 0.2))
    check_loss(model, expected, model.loss(USERS, POS, NEG), RTOL32, 1e-6)


# ---------------------------------------------------------------------------- VBPR
def test_vbpr_score_and_loss_match_formula(ds):
    model = build("vbpr", ds, embedding_dim=5, reg_weight=0.3)
    x = torch.cat(feats64(ds), 1)  # (I, 4 + 3), modalities in dict order
    e, b = model.item_linear.weight, model.item_linear.bias
    assert e.shape == (5, 7) and model.user_emb.shape == (U, 10)
    q = torch.cat([model.item_emb, x @ e.t() + b], 1)  # [gamma_i || E x_i + b]
    check_forward(model, model.user_emb.detach(), q.detach())
    u, pi, ni = model.user_emb[USERS], q[POS], q[NEG]
    expected = bpr((u * pi).sum(1), (u * ni).sum(1)) + 0.3 * (
        u.norm() + pi.norm() + ni.norm()) / len(USERS)
    check_loss(model, expected, model.loss(USERS, POS, NEG))
    # the features are fixed inputs, not parameters
    assert not any(p.shape[0] == I and p.shape[1] == 7 for p in model.parameters())


# ---------------------------------------------------------------------------- LATTICE
def lattice_expected(model, ds, detach_graph: bool = False):
    """Users, items of LATTICE's docstring formula from the model's parameters."""
    k, lam = model.knn_k, model.lambda_coeff
    a = bipartite(dense_r()) + torch.eye(U + I, dtype=torch.float64)
    a = a / a.sum(1, keepdim=True)  # (D + I)^{-1} (A + I): row-normalised with self-loops
    alpha = torch.softmax(model.modal_weight, 0)
    learned = sum(alpha[m] * knn(linear(proj, x), k, weighted=True)
                  for m, (proj, x) in enumerate(zip(model.projections, model.features)))
    frozen = sum(alpha[m] * sym_norm(knn(x, k, weighted=True)) for m, x in enumerate(feats64(ds)))
    s = (1 - lam) * sym_norm(learned) + lam * frozen
    if detach_graph:
        s = s.detach()
    h = torch.linalg.matrix_power(s, model.n_mm_layers) @ model.item_emb
    e = layers(a, torch.cat([model.user_emb, model.item_emb]), model.n_ui_layers, mean=True)
    return e[:U], e[U:] + h / h.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("n_ui,n_mm", [(2, 1), (1, 2)])
def test_lattice_forward_and_loss(ds, n_ui, n_mm):
    model = build("lattice", ds, embedding_dim=6, feat_embed_dim=5, knn_k=3, lambda_coeff=0.7,
                  reg_weight=0.3, n_ui_layers=n_ui, n_mm_layers=n_mm)
    users, items = lattice_expected(model, ds)
    check_forward(model, users.detach(), items.detach(), RTOL32, ATOL32)

    def expected_loss(users, items):
        u, pi, ni = users[USERS], items[POS], items[NEG]
        reg = (u.pow(2).sum() + pi.pow(2).sum() + ni.pow(2).sum()) / (2 * len(USERS))
        return bpr((u * pi).sum(1), (u * ni).sum(1)) + 0.3 * reg

    # the epoch's first loss builds S with gradient into W_m, b_m, omega and the features ...
    model.on_epoch_start(1)
    check_loss(model, expected_loss(users, items), model.loss(USERS, POS, NEG), RTOL32, ATOL32)
    # ... later losses of the epoch use the same S as a constant
    users, items = lattice_expected(model, ds, detach_graph=True)
    check_loss(model, expected_loss(users, items), model.loss(USERS, POS, NEG), RTOL32, ATOL32)


def test_lattice_single_modality_uses_its_graph_alone(ds):
    one = Dataset("toy1", U, I, ds.train, ds.valid, ds.test, features={"text": ds.features["text"]})
    model = build("lattice", one, embedding_dim=6, feat_embed_dim=5, knn_k=3, lambda_coeff=0.7)
    assert model.modal_weight is None
    k, x = 3, ds.features["text"].double()
    s = 0.3 * sym_norm(knn(linear(model.projections[0], model.features[0]), k, True)) \
        + 0.7 * sym_norm(knn(x, k, True))
    h = s @ model.item_emb
    a = bipartite(dense_r()) + torch.eye(U + I, dtype=torch.float64)
    e = layers(a / a.sum(1, keepdim=True), torch.cat([model.user_emb, model.item_emb]), 2, True)
    check_forward(model, e[:U].detach(), (e[U:] + F.normalize(h, dim=1)).detach(), RTOL32, ATOL32)


# ---------------------------------------------------------------------------- BM3
def bm3_online(model):
    a = sym_norm(bipartite(dense_r()))
    e = layers(a, torch.cat([model.user_emb, model.item_emb]), model.num_layers, mean=True)
    return e[:U], e[U:] + model.item_emb  # items keep a residual of their ID embedding


@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_bm3_loss_matches_formula(ds, dropout):
    model = build("bm3", ds, embedding_dim=6, num_layers=2, dropout=dropout, reg_weight=0.5,
                  cl_weight=2.0, generator_seed=11)
    online_u, online_i = bm3_online(model)
    g = model.predictor
    check_forward(model, linear(g, online_u).detach(), linear(g, online_i).detach(), RTOL32, ATOL32)

    # the target views: inverted dropout with masks drawn, in this order, from the model's
    # generator: users (U, d), items (I, d), then each modality's projection (I, d)
    gen = torch.Generator()
    gen.set_state(model.generator.get_state())

    def drop(x):
        if dropout == 0.0:
            return x.detach()
        keep = (torch.rand(x.shape, generator=gen) >= dropout).to(x.dtype)
        return (x * keep / (1 - dropout)).detach()  # targets carry no gradient

    feats = [linear(p, x) for p, x in zip(model.projections, model.features)]
    user_t, item_t = drop(online_u)[USERS], drop(online_i)[POS]
    feats_t = [drop(f)[POS] for f in feats]
    u, i = online_u[USERS], online_i[POS]
    expected = cos_gap(linear(g, u), item_t) + cos_gap(linear(g, i), user_t)
    # EmbLoss on the full online tables: unsquared norms / number of items
    expected = expected + 0.5 * (online_u.norm() + online_i.norm()) / I
    for f, f_t in zip(feats, feats_t):
        f_on = linear(g, f[POS])
        expected = expected + 2.0 * (cos_gap(f_on, item_t) + cos_gap(f_on, f_t))
    check_loss(model, expected, model.loss(USERS, POS, NEG), RTOL32, ATOL32)


# ---------------------------------------------------------------------------- FREEDOM
def freedom_item_graph(ds: Dataset, k: int, w: float) -> torch.Tensor:
    """Unit-weight kNN per modality, sym-normalised; image weight w, the rest share 1 - w."""
    weights = {"image": w, "text": 1 - w}
    return sum(weights[m] * sym_norm(knn(ds.features[m].double(), k, weighted=False))
               for m in ds.modalities)


def freedom_expected(model, ds, a_train: torch.Tensor, reg_weight: float):
    s = freedom_item_graph(ds, model.knn_k, model.mm_image_weight)
    h = torch.linalg.matrix_power(s, model.n_mm_layers) @ model.item_emb

    def embed(a):
        e = layers(a, torch.cat([model.user_emb, model.item_emb]), model.n_ui_layers, mean=True)
        return e[:U], e[U:] + h

    users, items = embed(a_train)
    u = users[USERS]
    loss = bpr((u * items[POS]).sum(1), (u * items[NEG]).sum(1))
    for proj, x in zip(model.projections, model.features):
        f = linear(proj, x)  # projected features: only in the feature-side BPR term
        loss = loss + reg_weight * bpr((u * f[POS]).sum(1), (u * f[NEG]).sum(1))
    return embed(sym_norm(bipartite(dense_r()))), loss


@pytest.mark.parametrize("reg_weight,n_mm", [(0.0, 1), (0.25, 1), (0.25, 2)])
def test_freedom_forward_and_loss_without_pruning(ds, reg_weight, n_mm):
    model = build("freedom", ds, embedding_dim=6, knn_k=3, mm_image_weight=0.3, dropout=0.0,
                  reg_weight=reg_weight, n_mm_layers=n_mm)
    (users, items), expected = freedom_expected(model, ds, sym_norm(bipartite(dense_r())),
                                                reg_weight)
    check_forward(model, users.detach(), items.detach(), RTOL32, ATOL32)
    model.on_epoch_start(1)
    check_loss(model, expected, model.loss(USERS, POS, NEG), RTOL32, ATOL32)


def test_freedom_loss_with_pruned_graph(ds):
    model = build("freedom", ds, embedding_dim=6, knn_k=3, mm_image_weight=0.3, dropout=0.5,
                  reg_weight=0.25, generator_seed=5)
    # reproduce the pruning: keep floor(|E| (1 - rho)) distinct edges drawn with probability
    # proportional to 1 / sqrt(|N_u| |N_i|), edges in (user, item) order
    r = dense_r()
    eu, ei = r.nonzero(as_tuple=True)
    probs = (r.sum(1)[eu] * r.sum(0)[ei]).rsqrt()
    keep = int(len(eu) * (1 - 0.5))
    assert keep == 6
    gen = torch.Generator()
    gen.set_state(model.generator.get_state())
    idx = torch.multinomial(probs.float(), keep, replacement=False, generator=gen)
    kept = torch.zeros_like(r)
    kept[eu[idx], ei[idx]] = 1.0
    a_train = sym_norm(bipartite(kept))  # re-normalised with the kept degrees
    (users, items), expected = freedom_expected(model, ds, a_train, 0.25)
    model.on_epoch_start(1)
    check_loss(model, expected, model.loss(USERS, POS, NEG), RTOL32, ATOL32)
    check_forward(model, users.detach(), items.detach(), RTOL32, ATOL32)  # eval: the full graph


# ---------------------------------------------------------------------------- LIRDRec
def dct_matrix(d: int) -> torch.Tensor:
    """Orthonormal DCT-II: :math:`C_{kn} = s_k \\cos(\\pi k (2n+1) / 2d)`."""
    k = torch.arange(d, dtype=torch.float64)[:, None]
    n = torch.arange(d, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * k * (2 * n + 1) / (2 * d)) * math.sqrt(2.0 / d)
    c[0] /= math.sqrt(2.0)
    return c


def lirdrec_expected(model, ds: Dataset):
    """Users after the channel fusion, items after the kNN residual, per the class docstring."""
    d, feats = model.embedding_dim, dict(zip(ds.modalities, feats64(ds)))
    inputs = dict(feats)
    if model.transform == "dct":
        inputs["shared"] = torch.cat([x @ dct_matrix(x.shape[1]).t() for x in feats.values()], 1)
    elif model.transform == "identity":
        inputs["shared"] = torch.cat(list(feats.values()), 1)
    hs = []
    for c in model.channels:
        enc = model.encoders[c]
        h = leaky(linear(enc[0], inputs[c])) @ enc[2].weight.t()  # W2 LeakyReLU(W1 x + b1)
        if model.item_id_emb is not None:
            h = h + model.item_id_emb
        hs.append(h)
    e0 = torch.cat([
        torch.cat([F.normalize(model.user_emb[:, k], dim=1), F.normalize(h, dim=1)])
        for k, h in enumerate(hs)], 1)  # per-channel L2 rows, channels side by side: (U+I, C d)
    e = layers(sym_norm(bipartite(dense_r())), e0, model.n_ui_layers, mean=False)  # layer SUM
    users, items = e[:U], e[U:]
    if model.n_mm_layers > 0:
        slot = model.image_modality if model.image_modality in feats else ds.modalities[0]
        w = {m: model.mm_image_weight if m == slot
             else (1 - model.mm_image_weight) / (len(feats) - 1) for m in feats}
        s = sum(w[m] * sym_norm(knn(x, model.knn_k, weighted=False)) for m, x in feats.items())
        items = items + torch.linalg.matrix_power(s, model.n_mm_layers) @ items
    chans = users.view(U, len(model.channels), d)
    if model.fusion in ("pwc", "attention"):
        mod = model.fusion_module
        logits = torch.stack([
            linear(mod.scorers[c][2], leaky(linear(mod.scorers[c][0], chans[:, k])))[:, 0]
            for k, c in enumerate(model.channels)], 1)  # (U, C)
        if model.fusion == "pwc":
            logits = mod.w1 * logits + mod.w2 * mod.theta
        users = (chans * torch.softmax(logits, 1)[:, :, None]).reshape(U, -1)
    elif model.fusion == "mean":
        users = users / len(model.channels)
    return users, items


LIRDREC_CASES = [
    {},
    {"fusion": "attention"},
    {"fusion": "mean", "n_mm_layers": 2},
    {"fusion": "concat", "n_mm_layers": 0},
    {"transform": "identity"},
    {"transform": "none", "item_id": "add"},
    {"shared_input": "fold"},
    {"image_modality": "text", "mm_image_weight": 0.2},
]


def _case_id(kw: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in kw.items()) or "default"


@pytest.mark.parametrize("kw", LIRDREC_CASES, ids=_case_id)
def test_lirdrec_forward_and_loss(ds, kw):
    model = build("lirdrec", ds, embedding_dim=8, knn_k=3, n_ui_layers=2, reg_weight=0.3, **kw)
    if model.fusion == "pwc":
        model.on_epoch_start(1)  # one schedule step: w1, w2 away from their initial values
        model.on_epoch_start(2)
    users, items = lirdrec_expected(model, ds)
    check_forward(model, users.detach(), items.detach(), RTOL32, ATOL32)
    u = users[USERS]
    reg = users.pow(2).mean() + items.pow(2).mean()  # over ALL users and items
    expected = bpr((u * items[POS]).sum(1), (u * items[NEG]).sum(1)) + 0.3 * reg
    check_loss(model, expected, model.loss(USERS, POS, NEG), RTOL32, ATOL32)


# ---------------------------------------------------------------------------- initialisation
def xavier_bound(t: torch.Tensor) -> float:
    return math.sqrt(6.0 / (t.shape[0] + t.shape[1]))


def assert_xavier_uniform(t: torch.Tensor) -> None:
    b = xavier_bound(t)
    assert t.abs().max() <= b and t.abs().max() > 0.95 * b, (t.abs().max(), b)


def assert_xavier_normal(t: torch.Tensor) -> None:
    std = math.sqrt(2.0 / (t.shape[0] + t.shape[1]))
    assert abs(t.std().item() / std - 1) < 0.1 and abs(t.mean().item()) < 0.1 * std


@pytest.fixture(scope="module")
def wide() -> Dataset:
    """Enough rows for the spread of an initialisation to be measured."""
    rng = np.random.default_rng(0)
    n_u, n_i = 300, 400
    users = np.repeat(np.arange(n_u), 3)
    items = rng.integers(0, n_i, 3 * n_u)
    items[: n_i] = np.arange(n_i)
    feats = {"image": torch.from_numpy(rng.random((n_i, 48)).astype(np.float32)),
             "text": torch.from_numpy(rng.random((n_i, 32)).astype(np.float32))}
    empty = Split(np.array([0]), np.array([0]))
    return Dataset("wide", n_u, n_i, Split(users, items), empty, empty, features=feats)


@pytest.mark.parametrize("name", ["mf", "lightgcn", "lattice", "freedom", "bm3", "layergcn"])
def test_id_tables_are_xavier_uniform(name, wide):
    torch.manual_seed(0)
    model = registry.get(name).from_dataset(wide, embedding_dim=64)
    assert_xavier_uniform(model.user_emb)
    assert_xavier_uniform(model.item_emb)


def test_vbpr_initialisation(wide):
    torch.manual_seed(0)
    model = registry.get("vbpr").from_dataset(wide, embedding_dim=64)
    assert model.user_emb.shape == (300, 128)
    assert_xavier_uniform(model.user_emb)
    assert_xavier_uniform(model.item_emb)
    assert_xavier_normal(model.item_linear.weight)
    assert torch.equal(model.item_linear.bias, torch.zeros(64))  # b = 0, as MMRec


def test_bm3_and_lattice_initialisation(wide):
    torch.manual_seed(0)
    bm3 = registry.get("bm3").from_dataset(wide, embedding_dim=64)
    for lin in [bm3.predictor, *bm3.projections]:
        assert_xavier_normal(lin.weight)
    lattice = registry.get("lattice").from_dataset(wide, knn_k=3)
    assert torch.equal(lattice.modal_weight, torch.full((2,), 0.5))  # the reference's [.5, .5]


def test_lirdrec_initialisation(wide):
    torch.manual_seed(0)
    model = registry.get("lirdrec").from_dataset(wide, embedding_dim=64, knn_k=3)
    for k in range(len(model.channels)):  # each channel's (U, d) table its own Xavier-normal draw
        assert_xavier_normal(model.user_emb[:, k])
    pwc = model.fusion_module
    assert float(pwc.w1) == 0.9 and abs(float(pwc.w2) - 0.1) < 1e-15
    assert torch.equal(pwc.last_alpha, pwc.theta)
