"""Dataset builder (issue 7): reading with bad rows, k-core, MMRec split, re-indexing, id maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lirdrec.data.build import (
    build_interactions,
    drop_duplicate_pairs,
    kcore,
    read_id_mapping,
    read_interactions,
    read_items,
    reindex,
    split_interactions,
    write_dataset,
)
from lirdrec.data.io import read_inter
from lirdrec.errors import ConfigError, DataError, DataWarning, IdError, SchemaError


def _write(path, text: str):
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------ k-core
def test_kcore_cascades_on_a_hand_example():
    # u0: i0 i1 i2 | u1: i0 i1 | u2: i2 | u3: i3.
    # (2, 2)-core: round 1 drops u2 and u3 (1 interaction) and i3 (1 interaction);
    # round 2: i2 now has only u0 -> dropped; u0 keeps i0, i1 (2 >= 2). Stable after that.
    users = np.array([0, 0, 0, 1, 1, 2, 3])
    items = np.array([0, 1, 2, 0, 1, 2, 3])
    keep = kcore(users, items, user_k=2, item_k=2)
    assert keep.tolist() == [True, True, False, True, True, False, False]


def test_kcore_can_empty_everything_and_k1_keeps_all():
    users = np.array([0, 1, 2])
    items = np.array([0, 1, 2])
    assert not kcore(users, items, 2, 1).any()
    assert kcore(users, items, 1, 1).all()
    with pytest.raises(ConfigError, match="user_k"):
        kcore(users, items, 0, 1)


# ------------------------------------------------------------------------------------ split
@pytest.mark.parametrize(
    "n, expected",
    [
        (3, [1, 1, 1]),  # n < 10: n-2 / 1 / 1
        (9, [7, 1, 1]),
        (10, [8, 1, 1]),  # int(0.2 * 10) = 2 -> 1 valid, 1 test
        (15, [12, 1, 2]),  # int(3.0) = 3 -> 3 // 2 = 1 valid, 2 test
        (23, [19, 2, 2]),  # int(4.6) = 4 -> 2 / 2
        (50, [40, 5, 5]),
    ],
)
def test_random_split_sizes_match_mmrec(n, expected):
    users = np.zeros(n, dtype=np.int64)
    x = split_interactions(users, np.random.default_rng(0))
    assert np.bincount(x, minlength=3).tolist() == expected


def test_random_split_is_per_user_seeded_and_shuffled():
    users = np.repeat(np.arange(4), [12, 5, 30, 3])
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    a = split_interactions(users, rng_a)
    b = split_interactions(users, rng_b)
    assert np.array_equal(a, b)
    c = split_interactions(users, np.random.default_rng(8))
    assert not np.array_equal(a, c)
    per_user = [np.bincount(a[users == u], minlength=3).tolist() for u in range(4)]
    assert per_user == [[10, 1, 1], [3, 1, 1], [24, 3, 3], [1, 1, 1]]


def test_temporal_and_leave_last_hold_out_the_latest():
    users = np.array([0] * 10 + [1] * 4)
    ts = np.array([5, 1, 9, 3, 7, 2, 8, 4, 6, 10] + [40, 10, 30, 20])
    x = split_interactions(users, np.random.default_rng(0), method="temporal", timestamp=ts)
    # user 0 (n=10): 8/1/1 in time order -> t=9 valid, t=10 test; user 1 (n=4): 2/1/1
    assert x[:10][ts[:10] == 9].tolist() == [1] and x[:10][ts[:10] == 10].tolist() == [2]
    assert x[10:].tolist() == [2, 0, 1, 0]
    y = split_interactions(users, np.random.default_rng(0), method="leave_last", timestamp=ts)
    assert np.bincount(y[:10]).tolist() == [8, 1, 1] and y[9] == 2 and y[2] == 1


def test_users_with_fewer_than_three_interactions_stay_in_training():
    users = np.array([0, 0, 1, 1, 1])
    with pytest.warns(DataWarning, match="1 user"):
        x = split_interactions(users, np.random.default_rng(0))
    assert x[:2].tolist() == [0, 0]
    assert sorted(x[2:].tolist()) == [0, 1, 2]


# ------------------------------------------------------------------------------ re-indexing
def test_reindex_is_numeric_for_integer_ids_and_lexicographic_otherwise():
    codes, vocab = reindex(np.array(["10", "2", "33", "2"]))
    assert vocab.tolist() == ["2", "10", "33"] and codes.tolist() == [1, 0, 2, 0]
    codes, vocab = reindex(np.array(["b", "a10", "a2"]))
    assert vocab.tolist() == ["a10", "a2", "b"] and codes.tolist() == [2, 0, 1]


def test_id_maps_round_trip(tmp_path):
    src = _write(
        tmp_path / "ratings.csv",
        "user,item,rating,ts\n"
        + "".join(
            f"U{u},{i},{1 + (u + i) % 5},{1000 + 7 * u + i}\n"
            for u in (3, 1, 2)
            for i in (10, 2, 7, 99)
        ),
    )
    table = read_interactions(
        src, user_col="user", item_col="item", rating_col="rating", time_col="ts"
    )
    built = build_interactions(table, np.random.default_rng(0))
    out = write_dataset(
        tmp_path / "out", "toy", built, {"text": np.arange(8, dtype=np.float32).reshape(4, 2)}
    )
    inter = read_inter(out / "toy.inter")
    assert list(inter.columns) == ["userID", "itemID", "rating", "timestamp", "x_label"]
    user_ids = read_id_mapping(out / "u_id_mapping.csv")
    item_ids = read_id_mapping(out / "i_id_mapping.csv")
    assert user_ids.tolist() == ["U1", "U2", "U3"]
    assert item_ids.tolist() == ["2", "7", "10", "99"]  # numeric order: "2" < "10"
    back = pd.DataFrame(
        {
            "user": user_ids[inter["userID"].to_numpy(int)],
            "item": item_ids[inter["itemID"].to_numpy(int)],
            "rating": inter["rating"].to_numpy(int),
            "ts": inter["timestamp"].to_numpy(int),
        }
    )
    orig = pd.read_csv(src, dtype={"user": str, "item": str})
    key = ["user", "item"]
    merged = back.merge(orig, on=key, suffixes=("", "_orig"))
    assert len(merged) == len(orig) == 12
    assert (merged["rating"] == merged["rating_orig"]).all()
    assert (merged["ts"] == merged["ts_orig"]).all()
    assert np.load(out / "text_feat.npy").dtype == np.float32


def test_read_id_mapping_names_the_bad_line(tmp_path):
    path = _write(tmp_path / "i_id_mapping.csv", "item_id\titemID\na\t0\nb\t2\n")
    with pytest.raises(IdError, match=r"i_id_mapping\.csv, line 3"):
        read_id_mapping(path)


# ------------------------------------------------------------------------------- bad rows
BAD = (
    "user,item,ts\n"  # line 1
    "1,10,100\n"  # line 2
    "2,,101\n"  # line 3: missing item
    "3,30,102\n"  # line 4
    "4,40,yesterday-ish\n"  # line 5: unparsable timestamp
    ",50,104\n"  # line 6: missing user
    "5,50,2021-03-04\n"
)  # line 7: a date is fine


def test_bad_rows_are_dropped_with_lines_and_a_count(tmp_path):
    path = _write(tmp_path / "inter.csv", BAD)
    with pytest.warns(DataWarning) as record:
        table = read_interactions(path, user_col="user", item_col="item", time_col="ts")
    text = " | ".join(str(w.message) for w in record)
    assert "dropped 1 row(s) whose column item" in text and "line 3" in text
    assert "dropped 1 row(s) whose column user" in text and "line 6" in text
    assert "column ts" in text and "line 5 ('yesterday-ish')" in text
    assert table.num_bad == 3
    assert table.lines.tolist() == [2, 4, 7]
    assert table.users.tolist() == ["1", "3", "5"]
    assert table.timestamp.tolist() == [100, 102, 1614816000]  # 2021-03-04 00:00 UTC


def test_bad_rows_are_fatal_by_flag(tmp_path):
    path = _write(tmp_path / "inter.csv", BAD)
    with pytest.raises(
        IdError, match=r"inter\.csv, line 3 \(empty\), column item: expected a non-empty id"
    ):
        read_interactions(
            path, user_col="user", item_col="item", time_col="ts", on_bad_rows="error"
        )
    path2 = _write(tmp_path / "inter2.csv", "user,item,ts\n1,10,100\n4,40,soon\n")
    with pytest.raises(DataError, match=r"inter2\.csv, line 3 \('soon'\), column ts"):
        read_interactions(
            path2, user_col="user", item_col="item", time_col="ts", on_bad_rows="error"
        )


def test_missing_column_and_blank_line(tmp_path):
    path = _write(tmp_path / "r.tsv", "u\ti\n1\t2\n\n3\t4\n")
    with pytest.raises(SchemaError, match="column item"):
        read_interactions(path, user_col="u", item_col="item")
    with pytest.warns(DataWarning, match="line 3"):
        table = read_interactions(path, user_col="u", item_col="i")
    assert table.lines.tolist() == [2, 4]


def test_no_header_positions_and_duplicates(tmp_path):
    path = _write(tmp_path / "u.data", "1\t5\t3\t20\n1\t5\t4\t10\n2\t6\t5\t30\n")
    table = read_interactions(
        path, user_col=0, item_col=1, rating_col=2, time_col=3, header=False, sep="\t"
    )
    assert table.lines.tolist() == [1, 2, 3]
    with pytest.warns(DataWarning, match="1 repeated"):
        dedup = drop_duplicate_pairs(table)
    assert dedup.rating.tolist() == [4.0, 5.0]  # the earliest (t=10) of the repeated pair


def test_rating_threshold_and_kcore_in_the_pipeline(tmp_path):
    rows = [(u, i, 5 if (u + i) % 3 else 1) for u in range(6) for i in range(6)]
    path = _write(
        tmp_path / "r.csv", "user,item,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r in rows)
    )
    table = read_interactions(path, rating_col="rating")
    built = build_interactions(
        table, np.random.default_rng(0), rating_threshold=4, user_k=4, item_k=4
    )
    # (u + i) % 3 != 0 keeps 24 of 36; every user and item keeps 4 -> the (4, 4)-core is all 24
    assert built.stats["after_threshold"] == 24 and built.stats["after_kcore"] == 24
    assert built.num_users == 6 and built.num_items == 6
    assert np.bincount(built.x_label).tolist() == [12, 6, 6]  # each user n=4: 2/1/1


def test_read_items_flags_and_lists(tmp_path):
    path = _write(
        tmp_path / "items.csv",
        "id,title,Action,Drama,cast\n1,Heat,1,1,Al Pacino|Robert De Niro\n2,Up,0,0,\n",
    )
    items = read_items(
        path, id_col="id", flag_groups={"genres": ["Action", "Drama"]}, list_columns={"cast": "|"}
    )
    assert items["1"]["genres"] == "Action, Drama"
    assert items["1"]["cast"] == "Al Pacino, Robert De Niro"
    assert items["2"]["genres"] == "" and items["2"]["cast"] == ""
    dup = _write(tmp_path / "dup.csv", "id,title\n1,a\n1,b\n")
    with pytest.raises(IdError, match=r"dup\.csv, line 3"):
        read_items(dup, id_col="id")


def test_parquet_input(tmp_path):
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow")
    df = pd.DataFrame({"user": ["a", "b", None], "item": ["x", "y", "z"]})
    df.to_parquet(tmp_path / "r.parquet")
    with pytest.warns(DataWarning, match="row 3"):
        table = read_interactions(tmp_path / "r.parquet")
    assert table.users.tolist() == ["a", "b"]
