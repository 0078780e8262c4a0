"""The yoochoose / amazon / taobao_ad / tmall dataset plugins: real files in shared/data where we have them,
tiny fixtures in the same formats where we do not, and one malformed file per format (file, line, expected)."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import raises_data_error as raises

from harness.registry import Registry
from plugins.datasets import amazon, taobao_ad, tmall, yoochoose
from plugins.datasets.amazon import load_amazon
from plugins.datasets.taobao_ad import load_taobao_ad
from plugins.datasets.tmall import load_tmall
from plugins.datasets.yoochoose import load_yoochoose

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FIX = ROOT / "datasets" / "fixtures"
NEW = (yoochoose, amazon, taobao_ad, tmall)


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not in shared/data")
    return path


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_registered_with_common_params():
    reg = Registry.load(extra=NEW, entry_points=False)
    assert reg.names("dataset") == ["amazon", "taobao_ad", "tmall", "yoochoose"]
    for name in reg.names("dataset"):
        names = set(reg.get("dataset", name).schema.names())
        assert {"path", "verify", "k_core", "min_user_interactions", "min_item_interactions", "start", "end",
                "event_types", "max_history"} <= names


@pytest.mark.parametrize("module", NEW + (__import__("plugins.datasets.movielens", fromlist=["x"]),))
def test_dataset_card_lists_every_known_checksum(module):
    card = (ROOT / "datasets" / f"{module.__name__.rsplit('.', 1)[1]}.md").read_text()
    for key in ("source", "licence", "time unit", "sha256", "Schema"):
        assert key.lower() in card.lower()
    known = dict(getattr(module, "KNOWN_SHA256", {}))
    known.update({v.ratings: v.sha256 for v in getattr(module, "VARIANTS", {}).values() if v.sha256})
    for name, digest in known.items():
        assert digest in card and name in card, f"{name} {digest} missing from the card"


# ---------------------------------------------------------------------------------------------------- yoochoose

def test_yoochoose_raw_clicks_sample():
    f = need(DATA / "yoochoose" / "yoochoose-clicks-sample.dat")
    ds = load_yoochoose(str(f))
    x = ds.interactions
    assert (len(x), ds.meta["format"], ds.meta["verified"], x.time_unit) == (500, "raw", True, "s")
    assert set(x.event) == {"click"} and ds.user_ids[x.user[0]] == 1 and ds.item_ids[x.item[0]] == 214536502
    assert x.time[0] == pytest.approx(1396867869.277)  # 2014-04-07T10:51:09.277Z


def test_yoochoose_prepared_tsv():
    f = need(DATA / "yoochoose" / "yoochoose-clicks-100k_train_full.txt")
    ds = load_yoochoose(str(f))
    assert (len(ds.interactions), ds.n_users, ds.n_items) == (70_278, 17_794, 2_933)  # as DATA.md says
    assert ds.meta["format"] == "prepared" and ds.meta["verified"]


def test_yoochoose_clicks_and_buys_fixture():
    ds = load_yoochoose(str(FIX / "yoochoose-tiny"))
    x = ds.interactions
    assert (len(x), ds.n_users) == (14, 4) and list(x.event).count("buy") == 4
    buys = x.event == "buy"
    assert np.nansum(x.features["price"][buys]) == 1046 + 3141 + 0 + 523 and np.isnan(x.features["price"][~buys]).all()
    assert set(x.features["category"][~buys]) == {"0", "S", "2", "1"}
    only = load_yoochoose(str(FIX / "yoochoose-tiny"), event_types=["buy"])
    assert len(only.interactions) == 4 and "clicks" not in only.meta["source"]  # the clicks file is not read


def test_yoochoose_malformed(tmp_path):
    f = write(tmp_path, "yoochoose-clicks.dat", "1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-13-07T10:54:09Z,2,0\n")
    raises(lambda: load_yoochoose(str(tmp_path)), str(f), "line 2", "session,timestamp,item,category",
           "'1,2014-13-07T10:54:09Z,2,0'", "not ISO 8601")
    f.unlink()
    f = write(tmp_path, "yoochoose-buys.dat", "1,2014-04-07T11:02:10.020Z,214536502,1046,1\n"
                                              "2,2014-04-07T14:01:02.100Z,214662742,3141\n")
    raises(lambda: load_yoochoose(str(tmp_path)), str(f), "line 2", "session,timestamp,item,price,quantity",
           "4 fields, not 5")
    f.unlink()
    f = write(tmp_path, "prep.txt", "SessionId\tItemId\tTime\n1\t2\t1396860669.2\n1\tx\t1396860670\n")
    raises(lambda: load_yoochoose(str(f)), str(f), "line 3", "SessionId, ItemId (integers)", "ItemId: 'x'")


def test_yoochoose_wrong_checksum(tmp_path):
    src = need(DATA / "yoochoose" / "yoochoose-clicks-sample.dat")
    f = tmp_path / src.name
    f.write_text("".join(src.read_text().splitlines(keepends=True)[:-1]))  # one line short
    raises(lambda: load_yoochoose(str(f)), str(f), yoochoose.KNOWN_SHA256[src.name], "does not match", "verify: false")
    assert load_yoochoose(str(f), verify=False).meta["verified"] is False


# ------------------------------------------------------------------------------------------------------- amazon

def test_amazon_ratings_head_is_the_default():
    need(DATA / "amazon-electronics" / "ratings_Electronics_head.csv")
    ds = load_amazon()  # default folder: amazon-electronics, its one ratings_*.csv
    assert (len(ds.interactions), ds.n_users, ds.n_items) == (50_698, 47_141, 3_529)
    assert ds.meta["verified"] and ds.meta["format"] == "ratings" and "0132793040" in set(ds.item_ids)


def test_amazon_ratings_without_header(tmp_path):
    f = write(tmp_path, "ratings_Tiny.csv", "AKM1MP6P0OYPR,0132793040,5.0,1365811200\nB2,0132793040,3.0,1365811300\n")
    ds = load_amazon(str(tmp_path))
    assert (len(ds.interactions), ds.interactions.value.tolist()) == (2, [5.0, 3.0])
    assert ds.meta["verified"] is False and "no known checksum" in ds.meta["files"][f.name]["note"]


def test_amazon_reviews_fixture():
    ds = load_amazon(str(FIX / "amazon-reviews-tiny"))
    x = ds.interactions
    assert (len(x), ds.n_users, ds.n_items, ds.meta["format"]) == (5, 3, 2, "reviews")
    assert list(ds.item_ids) == ["0000013714", "B00000JBLH"] and x.value.tolist() == [5.0, 4.0, 3.0, 1.0, 2.0]
    assert x.time[0] == 1252800000.0


def test_amazon_adjacency_has_no_times():
    f = need(DATA / "amazon-books" / "amazon-book_val.txt")
    ds = load_amazon(str(f))
    assert ds.meta["format"] == "adjacency" and ds.meta["has_time"] is False and ds.meta["verified"]
    assert not ds.interactions.time.any() and ds.n_users > 50_000
    raises(lambda: load_amazon(str(f), start="2014-01-01"), "has no times")


def test_amazon_malformed(tmp_path):
    f = write(tmp_path, "ratings_X.csv", "u1,i1,5.0,1365811200\nu2,i2,5.0\n")
    raises(lambda: load_amazon(str(f)), str(f), "line 2", "user,item,rating,timestamp", "3 fields, not 4")
    f = write(tmp_path, "ratings_X.csv", "u1,i1,5.0,1365811200\nu2,i2,five,1365811200\n")
    raises(lambda: load_amazon(str(f)), "line 2", "rating: 'five' is not a number")
    f = write(tmp_path, "r.json",
              '{"reviewerID": "A", "asin": "B", "overall": 5.0, "unixReviewTime": 1}\n{"reviewerID": "A"\n')
    raises(lambda: load_amazon(str(f)), str(f), "line 2", "reviewerID (text), asin (text)", "not JSON")
    f = write(tmp_path, "r.json", '{"reviewerID": "A", "asin": "B", "overall": 5.0}\n')
    raises(lambda: load_amazon(str(f)), "line 1", "unixReviewTime missing")
    f = write(tmp_path, "adj.txt", "0 1 2\n1 3 x\n")
    raises(lambda: load_amazon(str(f), format="adjacency"), str(f), "line 2", "user item item")


# ---------------------------------------------------------------------------------------------------- taobao_ad

def test_taobao_ad_fixture_with_side_tables():
    ds = load_taobao_ad(str(FIX / "taobao-ad-tiny"))
    x = ds.interactions
    assert (len(x), ds.n_users, ds.n_items) == (8, 4, 5)
    assert x.value.tolist() == [0, 0, 0, 1, 0, 1, 0, 1] and list(x.event).count("click") == 3
    assert list(x.features["pid"])[5] == "430539_1007"
    items = ds.item_features
    assert list(items["item_id"]) == list(ds.item_ids) == [1, 3, 4, 5, 8]  # aligned with the item index
    assert items["brand"].isna().tolist() == [False, True, False, False, True] and items["price"].iloc[3] == 199.0
    users = ds.user_features
    assert list(users["user_id"]) == [399907, 449818, 581738, 914836]
    assert users["cms_segid"].isna().tolist() == [True, False, False, False]  # 399907 has no profile row
    assert users["pvalue_level"].isna().tolist() == [True, True, True, False]


def test_taobao_ad_behaviour_log():
    ds = load_taobao_ad(str(FIX / "taobao-ad-tiny"), log="behavior_log")
    assert (len(ds.interactions), set(ds.interactions.event)) == (7, {"pv", "cart", "fav", "buy"})
    brands = load_taobao_ad(str(FIX / "taobao-ad-tiny"), log="behavior_log", behavior_item="brand")
    assert len(brands.interactions) == 6 and brands.meta["dropped_null_brand"] == 1
    buys = load_taobao_ad(str(FIX / "taobao-ad-tiny"), log="behavior_log", event_types=["buy", "cart"])
    assert sorted(buys.interactions.event) == ["buy", "cart"]


def test_taobao_ad_malformed(tmp_path):
    folder = tmp_path / "t"
    shutil.copytree(FIX / "taobao-ad-tiny", folder)
    raw = folder / "raw_sample.csv"
    raw.write_text(raw.read_text().replace("914836,1494651029,5,430548_1007,0,1",
                                           "914836,1494651029,5,430548_1007,0,2"))
    raises(lambda: load_taobao_ad(str(folder)), str(raw), "line 5", "user,time_stamp,adgroup_id,pid,nonclk,clk",
           "clk/nonclk")
    shutil.copy(FIX / "taobao-ad-tiny" / "raw_sample.csv", raw)
    ads = folder / "ad_feature.csv"
    ads.write_text(ads.read_text().replace("7,NULL,18.0", "7,acme,18.0"))
    raises(lambda: load_taobao_ad(str(folder)), str(ads), "line 3", "brand may be NULL")
    raw.write_text("user,time,adgroup_id,pid,nonclk,clk\n1,2,3,p,1,0\n")
    raises(lambda: load_taobao_ad(str(folder)), str(raw), "line 1", "expected the header")


# -------------------------------------------------------------------------------------------------------- tmall

def test_tmall_fixture():
    ds = load_tmall(str(FIX / "tmall-tiny"))
    x = ds.interactions
    assert (len(x), ds.n_users, ds.n_items, x.time_unit) == (8, 3, 4, "day")
    assert x.time[0] == 16620.0  # 2015-07-04 in days since 1970-01-01
    assert list(x.event) == ["click", "click", "buy", "click", "click", "buy", "click", "click"]
    assert list(x.features["seller"][:3]) == [1, 1, 1]
    late = load_tmall(str(FIX / "tmall-tiny"), start="2015-08-01", end="2015-11-01")
    assert len(late.interactions) == 4  # 0801, 0802 x2, 1030 (end is exclusive)


def test_tmall_malformed(tmp_path):
    f = write(tmp_path, "ijcai2016_taobao.csv", "use_ID,sel_ID,ite_ID,cat_ID,act_ID,time\n1,1,1,1,0,20150704\n"
                                                "1,1,1,1,2,20150705\n")
    raises(lambda: load_tmall(str(tmp_path)), str(f), "line 3", "act_ID 0 = click or 1 = buy", "act_ID is not 0 or 1")
    f.write_text("1,1,1,1,0,20150704\n1,1,1,1,1,20151332\n")  # header-less variant
    raises(lambda: load_tmall(str(f)), str(f), "line 2", "time is not a date yyyymmdd")
    f.write_text("use_ID,sel_ID,ite_ID,cat_ID,act_ID,time\n1,1,1,1,0\n")
    raises(lambda: load_tmall(str(f)), "line 2", "5 fields, not 6")


def test_missing_default_folder_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("MATCHBENCH_DATA", str(tmp_path))
    monkeypatch.setenv("MATCHBENCH_CACHE", str(tmp_path / "cache"))
    if (ROOT.parent / "shared" / "data" / "tmall").exists():
        pytest.skip("a tmall folder exists in shared/data")
    raises(lambda: load_tmall(), "no path given", str(tmp_path / "tmall"), "raw/tmall", "datasets fetch tmall")
