"""Loading and validating MMRec datasets: every error names the file, line and expectation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import lirdrec
from lirdrec.errors import ConfigError, DataWarning, FeatureError, IdError, SchemaError, SplitError
from tests.conftest import write_tiny

GOOD = [(0, 0, 0), (0, 1, 1), (1, 1, 0), (1, 0, 2)]
F2 = {"image": np.ones((2, 3), np.float32)}


def test_load_counts_splits_and_features(tiny_dir):
    ds = lirdrec.load_dataset(tiny_dir)
    assert (ds.num_users, ds.num_items) == (3, 4)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (6, 3, 3)
    assert ds.modalities == ["image", "text"]
    assert ds.features["image"].dtype.is_floating_point and tuple(ds.features["text"].shape) == (4,
                                                                                                 5)
    assert ds.train_csr[0].indices.tolist() == [0, 1]
    with pytest.raises(TypeError):
        ds.features["image"] = None  # read-only mapping
    with pytest.raises(ValueError):
        ds.train.users[0] = 5  # read-only arrays


def test_modalities_subset_and_unknown(tiny_dir):
    assert lirdrec.load_dataset(tiny_dir, modalities="text").modalities == ["text"]
    assert lirdrec.load_dataset(tiny_dir, modalities="image,image").modalities == ["image",
                                                                                   "image_2"]
    with pytest.raises(ConfigError, match=r"'audio'.*present: image, text"):
        lirdrec.load_dataset(tiny_dir, modalities="image,audio")


def test_dataset_yaml(tiny_dir):
    (tiny_dir / "ds.yaml").write_text(
        "name: mine\ninter: tiny.inter\nfeatures: {visual: image_feat.npy}\n")
    ds = lirdrec.load_dataset(tiny_dir / "ds.yaml")
    assert ds.name == "mine" and ds.modalities == ["visual"]


def test_float16_features_become_float32(tmp_path):
    d = write_tiny(tmp_path / "h", GOOD, {"image": np.ones((2, 3), np.float16)})
    import torch

    assert lirdrec.load_dataset(d).features["image"].dtype == torch.float32


def test_missing_column_with_hint(tmp_path):
    d = write_tiny(tmp_path / "b", GOOD, F2, header="userID\titem_id\trating\ttimestamp\tx_label")
    with pytest.raises(SchemaError,
                       match=r"tiny\.inter, line 1, column itemID.*'item_id' looks like 'itemID'"):
        lirdrec.load_dataset(d)


def test_non_integer_id_names_line(tmp_path):
    rows = [(0, 0, 0), (0, "x", 1), (1, 1, 0), (1, 0, 2)]
    with pytest.raises(IdError,
                       match=r"tiny\.inter, line 3, column itemID: expected an integer, found 'x'"):
        lirdrec.load_dataset(write_tiny(tmp_path / "b", rows, F2))
    rows = [(0, 0, 0), (0, 1, 1), (1.5, 1, 0), (1, 0, 2)]
    with pytest.raises(IdError, match=r"line 4, column userID"):
        lirdrec.load_dataset(write_tiny(tmp_path / "c", rows, F2))


def test_negative_id(tmp_path):
    rows = [(0, 0, 0), (0, 1, 1), (-1, 1, 0), (1, 0, 2)]
    with pytest.raises(IdError,
                       match=r"line 4, column userID: expected a non-negative integer, found -1"):
        lirdrec.load_dataset(write_tiny(tmp_path / "b", rows, F2))


def test_gap_in_ids(tmp_path):
    rows = [(0, 0, 0), (0, 1, 1), (2, 1, 0), (2, 0, 2)]  # user 1 missing
    with pytest.raises(IdError,
            match=r"column userID: expected contiguous ids 0\.\.2, found 1 unused id\(s\): \[1\]"):
        lirdrec.load_dataset(write_tiny(tmp_path / "b", rows, F2))


def test_item_beyond_feature_rows(tmp_path):
    rows = GOOD + [(1, 2, 0)]
    with pytest.raises(IdError,
                       match=r"line 6, column itemID: expected an integer in \[0, 2\).*found 2"):
        lirdrec.load_dataset(write_tiny(tmp_path / "b", rows, F2))


def test_items_with_features_but_no_interaction_are_accepted_cold(tmp_path, capsys):
    from lirdrec.cli.main import main
    from lirdrec.evaluate import evaluate
    from lirdrec.models import MF

    feats = {"image": np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)}
    d = write_tiny(tmp_path / "b", GOOD, feats)  # items 2, 3, 4 exist in the features only
    with pytest.warns(DataWarning, match=r"3 item\(s\) have feature rows but no interaction \(ids "
                      r"\[2, 3, 4\]\); they are ranked like any other item and never trained on"):
        ds = lirdrec.load_dataset(d)
    assert ds.num_items == 5 and ds.summary()["items_without_interactions"] == 3
    assert ds.summary()["items_not_in_train"] == 3
    assert main(["validate", str(d)]) == 0
    assert "items       5  (3 never in training, 3 without interactions)" in capsys.readouterr().out
    torch.manual_seed(0)
    model = MF.from_dataset(ds, embedding_dim=4)
    assert model.score(torch.tensor([0, 1])).shape == (2, 5)  # cold items ranked like any other
    assert np.isfinite(list(evaluate(model, ds, "test", ks=(1, 5)).values())).all()
    # ...and never trained on: the sampler draws positives from training interactions only
    from lirdrec.train.sampler import BPRSampler
    users, pos, neg = BPRSampler(ds, torch.Generator().manual_seed(0)).epoch()
    assert set(pos.tolist()) == {0, 1} and len(pos) == 2
    # without feature files an unused item id is still a gap (nothing defines the item)
    d2 = write_tiny(tmp_path / "c", [(0, 0, 0), (0, 2, 1), (1, 2, 0), (1, 0, 2)], {})
    with pytest.raises(IdError, match="unused id"):
        lirdrec.load_dataset(d2)


def test_duplicated_header_column_is_an_error_naming_it(tmp_path):
    d = tmp_path / "dup"
    d.mkdir()
    (d / "dup.inter").write_text("userID\titemID\titemID\ttimestamp\tx_label\n"
                                 "0\t0\t1\t5\t0\n1\t1\t0\t5\t1\n1\t0\t1\t5\t2\n")
    with pytest.raises(SchemaError, match=r"dup\.inter, line 1, column itemID: expected each "
                       r"column named once, found header userID itemID itemID timestamp x_label"):
        lirdrec.load_dataset(d)


@pytest.mark.parametrize("label,split", [(0, "training"), (1, "validation"), (2, "test")])
def test_empty_split_is_named_before_any_id_check(tmp_path, label, split):
    # ids leave gaps once a split is gone: the old message blamed "unused ids"
    rows = [(u, i, lab) for u, i, lab in [(0, 0, 0), (0, 1, 1), (1, 2, 2), (2, 3, 0), (2, 4, 1),
                                          (3, 5, 2)] if lab != label]
    with pytest.raises(SplitError, match=rf"expected at least one {split} row \(x_label {label}\), "
                       rf"found the {split} split is empty"):
        lirdrec.load_dataset(write_tiny(tmp_path / "b", rows, {}))


def test_feature_rows_differ_between_modalities(tmp_path):
    d = write_tiny(tmp_path / "c", GOOD, {"image": np.ones((2, 3), np.float32),
                                           "text": np.ones((3, 3), np.float32)})
    with pytest.raises(FeatureError, match=r"same number of rows.*image: 2, text: 3"):
        lirdrec.load_dataset(d)


def test_bad_x_label(tmp_path):
    rows = [(0, 0, 0), (0, 1, 3), (1, 1, 0), (1, 0, 2)]
    with pytest.raises(SplitError,
            match=r"line 3, column x_label: expected 0 \(train\), 1 \(valid\) or 2 \(test\), "
                  r"found 3"):
        lirdrec.load_dataset(write_tiny(tmp_path / "b", rows, F2))


def test_empty_train_split(tmp_path):
    rows = [(0, 0, 1), (0, 1, 2), (1, 1, 1), (1, 0, 2)]
    with pytest.raises(SplitError, match="expected at least one training row.*split is empty"):
        lirdrec.load_dataset(write_tiny(tmp_path / "b", rows, F2))


def test_nan_features(tmp_path):
    arr = np.ones((2, 3), np.float32)
    arr[1, 2] = np.nan
    with pytest.raises(FeatureError, match=r"image_feat\.npy, row 1: expected finite values"):
        lirdrec.load_dataset(write_tiny(tmp_path / "b", GOOD, {"image": arr}))


def test_wrong_ndim_and_dtype(tmp_path):
    with pytest.raises(FeatureError, match=r"expected a 2-D array.*shape \(2,\)"):
        lirdrec.load_dataset(write_tiny(tmp_path / "a", GOOD, {"image": np.ones(2, np.float32)}))
    with pytest.raises(FeatureError, match=r"expected a floating-point array, found dtype int64"):
        lirdrec.load_dataset(write_tiny(tmp_path / "b", GOOD, {"image": np.ones((2, 3), np.int64)}))


def test_pickle_is_never_loaded(tmp_path):
    d = write_tiny(tmp_path / "b", GOOD)
    np.save(d / "image_feat.npy", np.array([{"evil": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(FeatureError, match="a pickled object array"):
        lirdrec.load_dataset(d)
    (d / "image_feat.npy").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(FeatureError, match="expected a numeric .npy array"):
        lirdrec.load_dataset(d)


def test_duplicates_removed_with_warning(tmp_path):
    rows = GOOD + [(0, 0, 0), (0, 0, 2)]
    with pytest.warns(DataWarning, match="2 duplicate"):
        ds = lirdrec.load_dataset(write_tiny(tmp_path / "b", rows, F2))
    assert len(ds.train) + len(ds.valid) + len(ds.test) == 4


def test_users_without_training_are_not_evaluated(tmp_path):
    rows = GOOD + [(2, 0, 2)]  # user 2 only in test
    ds = lirdrec.load_dataset(write_tiny(tmp_path / "b", rows, F2))
    assert ds.eval_users("test").tolist() == [1]  # user 0 has no test row, user 2 no training
    assert ds.summary()["cold_users_test"] == 1


def test_missing_directory_and_inter(tmp_path):
    with pytest.raises(SchemaError, match="no such dataset"):
        lirdrec.load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SchemaError, match=r"no <name>\.inter file"):
        lirdrec.load_dataset(tmp_path / "empty")


def test_hold_out_items_moves_everything_to_test(tiny_dir):
    ds = lirdrec.load_dataset(tiny_dir)
    cold = lirdrec.data.hold_out_items(ds, 0.25, np.random.default_rng(0))
    (c,) = cold.cold_items.tolist()
    assert c not in cold.train.items and c not in cold.valid.items
    n_before = sum((s.items == c).sum() for s in (ds.train, ds.valid, ds.test))
    assert (cold.test.items == c).sum() == n_before
    assert len(cold.train) + len(cold.valid) + len(cold.test) == 12


def test_synthetic_has_cold_items_and_planted_features():
    from lirdrec.data import synthetic

    ds = synthetic.generate(seed=3)
    degree = ds.item_degree()
    cold = np.flatnonzero(degree == 0)
    assert len(cold) > 0 and np.isin(cold, np.concatenate([ds.valid.items, ds.test.items])).all()
    assert ds.name == "synthetic"
    # features carry the topic: same-topic items are more similar than different-topic ones
    a = synthetic.generate_arrays(seed=3)
    x = a["text"] / np.linalg.norm(a["text"], axis=1, keepdims=True)
    sim = x @ x.T
    same = a["item_topic"][:, None] == a["item_topic"][None, :]
    assert sim[same].mean() > sim[~same].mean() + 0.3
