"""Dataset plugin `taobao_ad`: Taobao display-ad click data (Alimama, Tianchi dataset 56) from the raw files.

Files of the original release, each with a header line:

    raw_sample.csv     user,time_stamp,adgroup_id,pid,nonclk,clk          (the 26M ad impressions; required)
    ad_feature.csv     adgroup_id,cate_id,campaign_id,customer,brand,price (brand may be NULL)
    user_profile.csv   userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,
                       shopping_level,occupation,new_user_class_level     (empty = unknown)
    behavior_log.csv   user,time_stamp,btag,cate,brand                    (btag: pv, cart, fav, buy)

With `log: raw_sample` (default) each impression is one event: user, item = adgroup_id, time (s),
value = clk, event `click` or `impression` (shown, not clicked), feature `pid`; ad_feature.csv becomes the
item table and user_profile.csv the user table (when present). With `log: behavior_log` the events are
the behaviour log's pv/cart/fav/buy with item = the category (or brand, `behavior_item: brand`; rows with
brand NULL are then dropped and counted in meta). The DMR-preprocessed sample (267 encoded columns, no
time, rebalanced labels) is not an event log and is not read here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.plugin import (
    FILTER_PARAMS,
    Col,
    DataError,
    Dataset,
    DatasetSpec,
    Param,
    align,
    finish,
    first_bad,
    hookimpl,
    locate,
    nullable_ints,
    read_table,
    sources_or_path,
    verify_files,
)

NAME = "taobao_ad"
FOLDER = "taobao-ad"
LICENCE = "Alibaba Tianchi dataset licence: research use; cite the dataset (Tianchi 56)"
SOURCE = "Ad Display/Click Data on Taobao.com (Alimama), https://tianchi.aliyun.com/dataset/56"
KNOWN_SHA256: dict[str, str] = {}  # no copy of the raw release is available to us to hash
RAW, ADS, USERS, BEHAVIOUR = "raw_sample.csv", "ad_feature.csv", "user_profile.csv", "behavior_log.csv"

RAW_HEADER = ("user", "time_stamp", "adgroup_id", "pid", "nonclk", "clk")
RAW_COLS = [Col("user", "int"), Col("time_stamp", "int"), Col("adgroup_id", "int"), Col("pid", "str"),
            Col("nonclk", "int"), Col("clk", "int")]
EXPECT_RAW = ("6 comma-separated fields user,time_stamp,adgroup_id,pid,nonclk,clk "
              "(integers but pid; clk 0/1, nonclk = 1 - clk)")
AD_HEADER = ("adgroup_id", "cate_id", "campaign_id", "customer", "brand", "price")
AD_COLS = [Col("adgroup_id", "int"), Col("cate_id", "int"), Col("campaign_id", "int"), Col("customer", "int"),
           Col("brand", "str"), Col("price", "float")]
EXPECT_AD = ("6 comma-separated fields adgroup_id,cate_id,campaign_id,customer,brand,price "
             "(integers, brand may be NULL, price a number)")
USER_HEADER = ("userid", "cms_segid", "cms_group_id", "final_gender_code", "age_level", "pvalue_level",
               "shopping_level", "occupation", "new_user_class_level")
USER_COLS = [Col("userid", "int")] + [Col(c, "opt") for c in USER_HEADER[1:]]
EXPECT_USER = "9 comma-separated integer fields " + ",".join(USER_HEADER) + " (empty = unknown, except userid)"
BEH_HEADER = ("user", "time_stamp", "btag", "cate", "brand")
BEH_COLS = [Col("user", "int"), Col("time_stamp", "int"), Col("btag", "str"), Col("cate", "int"), Col("brand", "str")]
BTAGS = ("pv", "cart", "fav", "buy")
EXPECT_BEH = ("5 comma-separated fields user,time_stamp,btag,cate,brand "
              "(btag one of pv, cart, fav, buy; brand may be NULL)")


def folder_of(path: str | None) -> Path:
    p = locate(NAME, FOLDER, path)
    if p.is_file():
        p = p.parent
    return p


def read_raw_sample(f: Path) -> tuple[pd.DataFrame, np.ndarray]:
    raw, lines = read_table(f, RAW_COLS, EXPECT_RAW, header=RAW_HEADER)
    clk, nonclk = raw["clk"].to_numpy(), raw["nonclk"].to_numpy()
    first_bad(f, lines, ~np.isin(clk, (0, 1)) | (nonclk != 1 - clk), EXPECT_RAW, "clk/nonclk not 0/1 and 1 - clk")
    df = pd.DataFrame({"user": raw["user"].to_numpy(), "item": raw["adgroup_id"].to_numpy(),
                       "time": raw["time_stamp"].to_numpy(np.float64), "value": clk.astype(np.int64),
                       "event": np.where(clk == 1, "click", "impression").astype(object),
                       "pid": raw["pid"].astype(str).to_numpy(dtype=object)})
    return df, lines


def read_ads(f: Path) -> pd.DataFrame:
    raw, lines = read_table(f, AD_COLS, EXPECT_AD, header=AD_HEADER)
    out = raw.drop(columns=["brand"])
    out.insert(4, "brand", nullable_ints(raw["brand"], f, lines, EXPECT_AD))
    return out


def read_users(f: Path) -> pd.DataFrame:
    raw, lines = read_table(f, USER_COLS, EXPECT_USER, header=USER_HEADER)
    out = pd.DataFrame({"userid": raw["userid"].to_numpy()})
    for c in USER_HEADER[1:]:
        out[c] = nullable_ints(raw[c], f, lines, EXPECT_USER, null=("",))
    return out


def read_behaviour(f: Path, item: str) -> tuple[pd.DataFrame, np.ndarray, int]:
    raw, lines = read_table(f, BEH_COLS, EXPECT_BEH, header=BEH_HEADER)
    btag = raw["btag"].astype(str)
    first_bad(f, lines, ~btag.isin(BTAGS).to_numpy(), EXPECT_BEH, "unknown btag")
    brand = nullable_ints(raw["brand"], f, lines, EXPECT_BEH)
    df = pd.DataFrame({"user": raw["user"].to_numpy(), "time": raw["time_stamp"].to_numpy(np.float64),
                       "event": btag.to_numpy(dtype=object), "cate": raw["cate"].to_numpy(),
                       "brand": brand})
    dropped = 0
    if item == "brand":
        keep = brand.notna().to_numpy()
        dropped = int((~keep).sum())
        df, lines = df.loc[keep].reset_index(drop=True), lines[keep]
        df["item"] = df["brand"].astype(np.int64)
        df = df.drop(columns=["brand"])
    else:
        df["item"] = df["cate"]
        df = df.drop(columns=["cate"])
    return df[["user", "item", "time", "event"] + [c for c in ("cate", "brand") if c in df]], lines, dropped


def files_read(path: str | None, log: str, side_tables: bool) -> list[Path]:
    p = folder_of(path)
    main = p / (RAW if log == "raw_sample" else BEHAVIOUR)
    if not main.is_file():
        found = ", ".join(sorted(f.name for f in p.iterdir())[:12]) if p.is_dir() else "nothing"
        raise DataError(f"{p}: no {main.name} here (found: {found}); point path at the folder of the Taobao ad "
                        f"files ({RAW}, {ADS}, {USERS}, {BEHAVIOUR})")
    extra = [p / n for n in ((ADS, USERS) if log == "raw_sample" else (USERS,))] if side_tables else []
    return [main] + [f for f in extra if f.is_file()]


def load_taobao_ad(path: str | None = None, log: str = "raw_sample", behavior_item: str = "cate",
                   side_tables: bool = True, verify: bool = True, **filters: Any) -> Dataset:
    files = files_read(path, log, side_tables)
    main = files[0]
    meta: dict[str, Any] = {"source": f"{SOURCE} ({main.parent})", "licence": LICENCE, "log": log}
    meta.update(verify_files(NAME, files, KNOWN_SHA256, verify))
    if log == "raw_sample":
        df, lines = read_raw_sample(main)
    else:
        df, lines, dropped = read_behaviour(main, behavior_item)
        meta.update(behavior_item=behavior_item, dropped_null_brand=dropped)
        if not len(df):
            raise DataError(f"{main}: every row has brand NULL; use behavior_item: cate")
    ds = finish(NAME, df, lines, "s", meta, str(main), filters)
    names = {f.name: f for f in files}
    if ADS in names:
        ds.item_features = align(read_ads(names[ADS]), "adgroup_id", ds.item_ids, "item_id")
    if USERS in names:
        ds.user_features = align(read_users(names[USERS]), "userid", ds.user_ids, "user_id")
    return ds


def _sources(params: dict[str, Any]) -> list[Path]:
    return sources_or_path(params, lambda p: files_read(p.get("path"), p.get("log", "raw_sample"),
                                                         p.get("side_tables", True)))


PARAMS = (
    Param("path", "str", None, "the folder of the raw files (raw_sample.csv, ...); default: taobao-ad/ under "
                               "$MATCHBENCH_DATA, the fetched copy, or ../shared/data", nullable=True),
    Param("log", "str", "raw_sample", "which event log: raw_sample (ad impressions, value = clk) or behavior_log "
                                      "(pv/cart/fav/buy)", choices=("raw_sample", "behavior_log")),
    Param("behavior_item", "str", "cate", "with log: behavior_log, the item is the category or the brand",
          choices=("cate", "brand")),
    Param("side_tables", "bool", True, "attach ad_feature.csv / user_profile.csv as item / user tables if present"),
    Param("verify", "bool", True, "check each file's sha256 where a known checksum exists (none known yet)"),
) + FILTER_PARAMS


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name=NAME, factory=load_taobao_ad, params=PARAMS, sources=_sources,
                         description="Taobao display ads (Alimama raw_sample + ad_feature/user_profile tables, or "
                                     "behavior_log); value = clk, events click/impression, seconds"))
