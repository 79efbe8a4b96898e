"""Using a trained model (issue 22): top-K per user, item-to-item lists, their commands."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import write_tiny

from lirdrec.cli.main import main
from lirdrec.data import load_dataset
from lirdrec.data.synthetic import write_synthetic
from lirdrec.errors import ConfigError
from lirdrec.evaluate.recommend import recommend, similar_items
from lirdrec.models.base import Recommender


class Fixed(Recommender):
    """Hand-set vectors: score = user . item."""

    def __init__(self, users, items, cold=False):
        super().__init__(len(users), len(items))
        self.register_buffer("u", torch.tensor(users, dtype=torch.float32))
        self.register_buffer("i", torch.tensor(items, dtype=torch.float32))
        self.scores_cold_items = cold

    def forward(self):
        return self.u, self.i


@pytest.fixture
def toy(tmp_path):
    # user 0 trains on items {0, 1}, user 1 on {2, 3}; item 4 only in a test row: never trained on
    rows = [(0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 2),
            (1, 2, 0), (1, 3, 0), (1, 0, 1), (1, 4, 2)]
    ds = load_dataset(write_tiny(tmp_path / "toy", rows))
    # scores: user 0 -> [5, 4, 3, 2, 10]; user 1 -> [0, 1, 3, -1, 10]
    users = [[1, 0], [0, 1]]
    items = [[5, 0], [4, 1], [3, 3], [2, -1], [10, 10]]
    return ds, users, items


def test_recommend_masks_training_items_and_unscorable_cold_items(toy):
    ds, users, items = toy
    assert ds.item_degree().tolist() == [1, 1, 1, 1, 0]
    u, top, scores = recommend(Fixed(users, items), ds, k=2)
    assert u.tolist() == [0, 1]
    assert top.tolist() == [[2, 3], [1, 0]] and scores.tolist() == [[3, 2], [1, 0]]
    # a model that scores cold items from features ranks item 4 (score 10 for both users)
    _, top, scores = recommend(Fixed(users, items, cold=True), ds, k=2)
    assert top.tolist() == [[4, 2], [4, 1]] and scores.tolist() == [[10, 3], [10, 1]]
    # asked explicitly, an ID-only model does too; and --keep-train lists training items
    _, top, _ = recommend(Fixed(users, items), ds, users=[1], k=1, include_cold=True)
    assert top.tolist() == [[4]]
    _, top, _ = recommend(Fixed(users, items), ds, users=[0], k=2, exclude_train=False)
    assert top.tolist() == [[0, 1]]
    # nothing left beyond two items for user 0: the third place is -inf
    _, top, scores = recommend(Fixed(users, items), ds, users=[0], k=3)
    assert scores[0, :2].tolist() == [3, 2] and scores[0, 2] == -math.inf


def test_recommend_batches_give_the_unbatched_lists(toy):
    ds, users, items = toy
    a = recommend(Fixed(users, items, cold=True), ds, k=3, batch_size=1)
    b = recommend(Fixed(users, items, cold=True), ds, k=3, batch_size=64)
    assert torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_similar_items_are_cosine_neighbours_without_the_item_itself(toy):
    ds, users, items = toy
    it, nb, sim = similar_items(Fixed(users, items), ds, items=[0], k=2)
    # item 0 = [1, 0]: cos to 1 = 4/sqrt(17), to 3 = 2/sqrt(5), to 2 = 1/sqrt(2); 4 is cold
    assert it.tolist() == [0] and nb.tolist() == [[1, 3]]
    np.testing.assert_allclose(sim[0].numpy(), [4 / math.sqrt(17), 2 / math.sqrt(5)], rtol=1e-6)
    _, nb, sim = similar_items(Fixed(users, items, cold=True), ds, items=[2], k=3)
    # item 2 = [3, 3] is parallel to item 4 (cos 1), then 1: 5/sqrt(34), then 0: 1/sqrt(2)
    assert nb.tolist() == [[4, 1, 0]]
    np.testing.assert_allclose(sim[0].numpy(), [1, 5 / math.sqrt(34), 1 / math.sqrt(2)], rtol=1e-6)


def test_bad_ids_and_models_without_item_vectors_are_one_line_errors(toy):
    ds, users, items = toy
    with pytest.raises(ConfigError, match=r"user ids must be in \[0, 2\); found \[2\]"):
        recommend(Fixed(users, items), ds, users=[0, 2])
    from lirdrec.models.pop import Pop

    with pytest.raises(ConfigError, match="Pop has no item vectors"):
        similar_items(Pop.from_dataset(ds), ds)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    data, _ = write_synthetic(root / "syn", seed=0, use_encoders=False, num_users=60, num_items=90)
    out = root / "run"
    assert main(["-q", "train", "--model", "lightgcn", "--data", str(data), "--epochs", "1",
                 "--set", "embedding_dim=8", "--out", str(out)]) == 0
    return out


def test_recommend_and_similar_items_commands_write_csv(run_dir, tmp_path, capsys):
    from lirdrec.train.run import load_run

    users = tmp_path / "users.txt"
    users.write_text("# users to list\n3\n\n0\n")
    out = tmp_path / "top.csv"
    assert main(["recommend", str(run_dir), "--k", "4", "--users", str(users),
                 "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "user_id,rank,item_id,score" and len(lines) == 1 + 2 * 4
    model, ds, _ = load_run(run_dir)
    _, top, scores = recommend(model, ds, [3, 0], k=4)
    rows = [ln.split(",") for ln in lines[1:]]
    assert [int(r[0]) for r in rows] == [3] * 4 + [0] * 4
    assert [int(r[1]) for r in rows] == [1, 2, 3, 4] * 2
    assert [int(r[2]) for r in rows] == top.reshape(-1).tolist()
    train = set(ds.train_csr[3].indices.tolist())
    assert not train & {int(r[2]) for r in rows[:4]}
    assert main(["similar-items", str(run_dir), "--k", "2"]) == 0
    sim = capsys.readouterr().out.splitlines()
    assert sim[0] == "item_id,rank,similar_item_id,similarity" and len(sim) == 1 + 2 * ds.num_items
    assert all(r.split(",")[0] != r.split(",")[2] for r in sim[1:])


def test_bad_users_file_names_file_and_line(run_dir, tmp_path, capsys):
    users = tmp_path / "users.txt"
    users.write_text("1\nabc\n999\n")
    assert main(["recommend", str(run_dir), "--users", str(users)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "users.txt, lines 2 (abc), 3 (999)" in err
    assert "integer in [0, 60)" in err
