"""One suite for every registered model, on a small planted dataset (as implicit's base test)."""

from __future__ import annotations

import pytest
import torch

from lirdrec.data import synthetic
from lirdrec.models import registry
from lirdrec.utils import seed_everything

TRAINABLE = [n for n in registry.names() if n != "pop"]
# Settings under which every parameter takes part in the loss (FREEDOM's default reg_weight 0
# switches its feature-side BPR term, the only path to its projections, off).
FULL_PATH = {"freedom": {"reg_weight": 1e-3}}


@pytest.fixture(scope="module")
def ds():
    return synthetic.generate(seed=0, num_users=80, num_items=120, num_topics=4)


def _build(name, ds, seed=0):
    seed_everything(seed)
    model = registry.get(name).from_dataset(ds, **FULL_PATH.get(name, {}))
    model.on_epoch_start(1)
    return model


def _batch(ds, n=64):
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(len(ds.train), (n,), generator=g)
    users = torch.tensor(ds.train.users)[idx]
    pos = torch.tensor(ds.train.items)[idx]
    neg = torch.randint(ds.num_items, (n,), generator=g)
    return users, pos, neg


def test_registry_lists_names_in_errors():
    from lirdrec.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown model 'nope'; valid models: .*lightgcn.*mf"):
        registry.get("nope")


@pytest.mark.parametrize("name", registry.names())
def test_shapes_and_repr(name, ds):
    model = _build(name, ds)
    model.eval()
    user_emb, item_emb = model.forward()
    assert user_emb.shape[0] == ds.num_users and item_emb.shape[0] == ds.num_items
    scores = model.score(torch.tensor([0, 3, 5]))
    assert scores.shape == (3, ds.num_items) and torch.isfinite(scores).all()
    assert type(model).__name__ in str(model)


@pytest.mark.parametrize("name", TRAINABLE)
def test_gradients_reach_every_parameter_and_loss_falls(name, ds):
    model = _build(name, ds)
    model.train()
    users, pos, neg = _batch(ds)
    loss = model.loss(users, pos, neg)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None)]
    assert not missing, f"no gradient reaches {missing}"
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(15):
        opt.zero_grad()
        value = model.loss(users, pos, neg)
        value.backward()
        opt.step()
        first = value.item() if first is None else first
    assert model.loss(users, pos, neg).item() < first


@pytest.mark.parametrize("name", TRAINABLE)
def test_same_seed_same_model_and_state_dict_round_trip(name, ds):
    a, b, c = _build(name, ds, 1), _build(name, ds, 1), _build(name, ds, 2)
    for m in (a, b, c):
        m.eval()
    ua, ia = a.forward()
    ub, ib = b.forward()
    assert torch.equal(ua, ub) and torch.equal(ia, ib)
    c.load_state_dict(a.state_dict())
    c.load_extra_state(a.extra_state())
    uc, ic = c.forward()
    assert torch.allclose(ua, uc) and torch.allclose(ia, ic)


@pytest.mark.parametrize("name", registry.names())
def test_parameter_groups_partition_the_parameters(name, ds):
    model = _build(name, ds)
    groups = model.parameter_groups()
    assert set(groups) >= {"item_id", "item_feature", "user", "other"}
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert set(ids) == {id(p) for p in model.parameters()}


def _plain_tensors(model) -> list[str]:
    """Tensor attributes (or lists/tuples of tensors) that are neither parameters nor buffers."""
    found = []
    for prefix, mod in model.named_modules():
        allowed = set(getattr(mod, "unregistered_tensors", ()))
        for key, value in vars(mod).items():
            items = value if isinstance(value, (list, tuple)) else [value]
            if key not in allowed and any(isinstance(v, torch.Tensor) for v in items):
                found.append(f"{prefix}.{key}" if prefix else key)
    return found


@pytest.mark.parametrize("name", registry.names())
def test_every_tensor_follows_to(name, ds):
    """Graphs and constant inputs are parameters or buffers, so ``model.to(device)`` moves them;
    a dtype move stands in for a device move here (no GPU in CI): after ``.double()`` one
    training step and the forward run in float64 without a mixed-dtype error."""
    model = _build(name, ds)
    assert _plain_tensors(model) == []
    model = model.double()
    model.on_epoch_start(2)
    users, pos, neg = _batch(ds)
    if name != "pop":
        model.loss(users, pos, neg).backward()
    model.eval()
    user_rep, item_rep = model.forward()
    assert user_rep.dtype == item_rep.dtype == torch.float64
