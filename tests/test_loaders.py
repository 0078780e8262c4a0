"""The csv / parquet / movielens dataset plugins: positive loads and one test per bad input.

Every bad-input test checks that the message names the file, the line (or column) and the fix.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import raises_data_error as raises

from harness.registry import Registry
from plugins.datasets.files import load_csv, load_parquet
from plugins.datasets.movielens import load_movielens

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ML100K = DATA / "movielens-100k"
LATEST = DATA / "movielens-latest-small"
FIXTURE_1M = ROOT / "datasets" / "fixtures" / "ml-1m-tiny"
MAP = {"user": "uid", "item": "sku", "time": "ts"}


def write(tmp_path, text, name="events.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


# ------------------------------------------------------------------------------------------------- csv / parquet

def test_plugins_registered():
    reg = Registry.load()
    for name in ("csv", "parquet", "movielens"):
        assert name in reg.names("dataset")
    assert {"path", "columns", "time_unit", "time_format", "sep", "header", "features", "ordered", "event_types",
            "start", "end", "min_user_interactions", "min_item_interactions", "k_core", "max_history"} == \
        set(reg.get("dataset", "csv").schema.names())
    assert "sep" not in reg.get("dataset", "parquet").schema.names()


def test_csv_round_trip_with_mapping_and_string_ids(tmp_path):
    p = write(tmp_path, "uid,sku,ts,stars,shop,ignored\n"
                        "bob,X9,30,4,s1,z\n"
                        "alice,A1,10,5,s2,z\n"
                        "bob,A1,20,3,s1,z\n"
                        "carol,Q7,5,1,s3,z\n")
    ds = load_csv(str(p), columns={**MAP, "value": "stars"}, features=["shop"])
    x = ds.interactions
    assert (ds.n_users, ds.n_items, len(x)) == (3, 3, 4)
    assert list(ds.user_ids) == ["alice", "bob", "carol"] and list(ds.item_ids) == ["A1", "Q7", "X9"]
    # every row maps back to its raw ids, times and values, in file order
    assert list(ds.user_ids[x.user]) == ["bob", "alice", "bob", "carol"]
    assert list(ds.item_ids[x.item]) == ["X9", "A1", "A1", "Q7"]
    assert x.time.tolist() == [30.0, 10.0, 20.0, 5.0] and x.value.tolist() == [4, 5, 3, 1]
    assert list(x.features) == ["shop"] and list(x.features["shop"]) == ["s1", "s2", "s1", "s3"]
    assert ds.meta["licence"] == "unknown (user data)" and ds.meta["source"] == str(p)
    assert len(ds.meta["checksum"]) == 64 and ds.meta["time_unit"] == "s"


def test_csv_numeric_ids_stay_numbers_and_sort_numerically(tmp_path):
    p = write(tmp_path, "user,item,time\n10,2,1\n9,10,2\n")
    ds = load_csv(str(p))
    assert list(ds.user_ids) == [9, 10] and list(ds.item_ids) == [2, 10]


def test_csv_ids_with_leading_zeros_stay_text(tmp_path):
    p = write(tmp_path, "user,item,time\n1,0132793040,1\n2,132793040,2\n")
    ds = load_csv(str(p))
    assert ds.n_items == 2 and list(ds.item_ids) == ["0132793040", "132793040"]


def test_csv_no_header_positions_and_time_format(tmp_path):
    p = write(tmp_path, "2024-01-02;u1;i1\n2024-01-01;u2;i1\n")
    ds = load_csv(str(p), sep=";", header=False, columns={"user": 1, "item": "2", "time": 0},
                  time_format="%Y-%m-%d", time_unit="day")
    assert ds.interactions.time.tolist() == [19724.0, 19723.0]  # days since 1970-01-01


def test_csv_blank_lines_keep_line_numbers(tmp_path):
    p = write(tmp_path, "user,item,time\n1,1,1\n\n2,-3,2\n")
    raises(lambda: load_csv(str(p)), str(p), "line 4", "negative item id -3", "fix or drop")


def test_parquet_loads(tmp_path):
    p = tmp_path / "log.parquet"
    pd.DataFrame({"uid": ["a", "b"], "sku": [1, 2], "ts": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                  "kind": ["click", "buy"]}).to_parquet(p)
    ds = load_parquet(str(p), columns={**MAP, "event": "kind"}, time_unit="hour")
    assert ds.interactions.time[1] - ds.interactions.time[0] == 24.0
    assert list(ds.interactions.event) == ["click", "buy"]


def test_parquet_missing_column(tmp_path):
    p = tmp_path / "log.parquet"
    pd.DataFrame({"uid": ["a"], "sku": [1]}).to_parquet(p)
    raises(lambda: load_parquet(str(p), columns=MAP), str(p), "no column 'ts'", "'uid', 'sku'", "columns:")


def test_missing_column(tmp_path):
    p = write(tmp_path, "uid,sku,when\na,b,1\n")
    raises(lambda: load_csv(str(p), columns=MAP), str(p), "no column 'ts'", "wanted for time",
           "the file's columns are: 'uid', 'sku', 'when'", "fix the mapping")


def test_extra_mapping_key(tmp_path):
    p = write(tmp_path, "uid,sku,ts\na,b,1\n")
    raises(lambda: load_csv(str(p), columns={**MAP, "rating": "ts"}), str(p), "columns: unknown name 'rating'",
           "user, item, time, value, event", "features")


def test_nan_id(tmp_path):
    p = write(tmp_path, "uid,sku,ts\na,b,1\n,c,2\n")
    raises(lambda: load_csv(str(p), columns=MAP), str(p), "line 3", "user id is empty/NaN", "drop or fill")


def test_negative_id(tmp_path):
    p = write(tmp_path, "uid,sku,ts\n1,2,1\n3,4,2\n-5,6,3\n")
    raises(lambda: load_csv(str(p), columns=MAP), str(p), "line 4", "negative user id -5", "ids must be >= 0")


def test_unparsable_time_with_format(tmp_path):
    p = write(tmp_path, "uid,sku,ts\na,b,2024-01-01\na,c,01/02/2024\n")
    raises(lambda: load_csv(str(p), columns=MAP, time_format="%Y-%m-%d"), str(p), "line 3", "'01/02/2024'",
           "does not match time_format '%Y-%m-%d'", "fix the value or the format")


def test_non_numeric_time(tmp_path):
    p = write(tmp_path, "uid,sku,ts\na,b,1\na,c,yesterday\n")
    raises(lambda: load_csv(str(p), columns=MAP), str(p), "line 3", "'yesterday'", "is not a number",
           "give time_format")


def test_time_backwards_when_ordered(tmp_path):
    p = write(tmp_path, "uid,sku,ts\na,x,1\nb,x,7\na,y,5\nb,y,6\na,z,9\n")
    assert len(load_csv(str(p), columns=MAP).interactions) == 5  # fine unordered
    raises(lambda: load_csv(str(p), columns=MAP, ordered=True), str(p), "line 5", "user 'b'", "time 6",
           "line 3, time 7", "sort the file by user and time or set ordered: false")


def test_empty_file(tmp_path):
    p = write(tmp_path, "")
    raises(lambda: load_csv(str(p)), str(p), "empty", "point path at")
    q = write(tmp_path, "user,item,time\n", "header_only.csv")
    raises(lambda: load_csv(str(q)), str(q), "no data rows")


def test_missing_path(tmp_path):
    raises(lambda: load_csv(None), "no path given", "set path")
    raises(lambda: load_csv(str(tmp_path / "nope.csv")), "nope.csv", "does not exist")


# ---------------------------------------------------------------------------------------------------- movielens

def test_movielens_100k():
    if not (ML100K / "u.data").is_file():
        pytest.skip("MovieLens-100K not in shared/data")
    ds = load_movielens(str(ML100K))
    assert (len(ds.interactions), ds.n_users, ds.n_items) == (100_000, 943, 1682)
    assert ds.meta["verified"] and ds.meta["checksum"].startswith("06416e59")
    assert ds.interactions.time_unit == "s" and set(np.unique(ds.interactions.value)) == {1, 2, 3, 4, 5}
    assert ds.item_features["title"].iloc[0] == "Toy Story (1995)"
    assert len(load_movielens(str(ML100K), min_rating=4).interactions) == 55_375


def test_movielens_default_path_uses_data_root(monkeypatch):
    if not (ML100K / "u.data").is_file():
        pytest.skip("MovieLens-100K not in shared/data")
    monkeypatch.setenv("MATCHBENCH_DATA", str(DATA))
    assert load_movielens().name == "movielens-100k"


def test_movielens_latest_small():
    if not (LATEST / "ratings.csv").is_file():
        pytest.skip("MovieLens latest-small not in shared/data")
    ds = load_movielens(str(LATEST))
    assert (len(ds.interactions), ds.n_users, ds.n_items) == (100_836, 610, 9724)
    assert ds.meta["variant"] == "latest-small" and not ds.meta["verified"] and "verify_note" in ds.meta
    assert 0.5 in set(np.unique(ds.interactions.value))


def test_movielens_1m_fixture():
    ds = load_movielens(str(FIXTURE_1M))
    assert (len(ds.interactions), ds.n_users, ds.n_items) == (20, 5, 15)
    assert ds.name == "movielens-1m" and ds.meta["time_unit"] == "s"
    i = list(ds.item_ids).index(1193)
    assert ds.item_features["title"].iloc[i].startswith("One Flew Over")
    assert (ds.interactions.item == i).sum() == 3


def test_movielens_malformed_line(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::2::5::978300760\n1::3::4\n")
    raises(lambda: load_movielens(str(tmp_path)), str(tmp_path / "ratings.dat"), "line 2",
           "expected 4 '::'-separated integer fields", "'1::3::4'", "fix or delete the line")
    (tmp_path / "ratings.dat").write_text("1::2::5::978300760\n1::3::four::978300761\n")
    raises(lambda: load_movielens(str(tmp_path)), "line 2", "'1::3::four::978300761'")


def test_movielens_malformed_u_data_without_verify(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t5\t100\n1\t3\t4\t101\t9\n")
    raises(lambda: load_movielens(str(tmp_path), verify=False), str(tmp_path / "u.data"), "line 2",
           "4 tab-separated integer fields")


def test_movielens_wrong_checksum(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t5\t100\n")
    msg = raises(lambda: load_movielens(str(tmp_path)), str(tmp_path / "u.data"),
                 "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490", "verify: false")
    assert msg.count("sha256") >= 2
    assert len(load_movielens(str(tmp_path), verify=False).interactions) == 1


def test_movielens_missing_folder(tmp_path):
    raises(lambda: load_movielens(str(tmp_path / "nothing")), "nothing", "no such folder", "set path")
    raises(lambda: load_movielens(str(tmp_path)), "no u.data", "point path at")
