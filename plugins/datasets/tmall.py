"""Dataset plugin `tmall`: the IJCAI-16 Taobao/Tmall online user log (`ijcai2016_taobao.csv`) from a local copy.

    use_ID,sel_ID,ite_ID,cat_ID,act_ID,time     (header; the header-less variant is accepted too)

user = use_ID, item = ite_ID, act_ID 0 = click, 1 = buy (event `click` / `buy`), time = the day as
yyyymmdd, loaded as days since 1970-01-01 (time_unit "day": one event per day has no order within the
day). sel_ID (seller) and cat_ID (category) are kept as event features.
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
    finish,
    first_bad,
    hookimpl,
    locate,
    read_header,
    read_table,
    sources_or_path,
    verify_files,
)

NAME = "tmall"
FOLDER = "tmall"
FILE = "ijcai2016_taobao.csv"
LICENCE = "Alibaba Tianchi dataset licence: research use; cite the IJCAI-16 contest"
SOURCE = "IJCAI-16 Brick-and-Mortar Store Recommendation (Tianchi), https://tianchi.aliyun.com/dataset/53"
KNOWN_SHA256: dict[str, str] = {}  # no copy of the original release is available to us to hash
HEADER = ("use_ID", "sel_ID", "ite_ID", "cat_ID", "act_ID", "time")
COLS = [Col(c, "int") for c in HEADER]
EXPECT = ("6 comma-separated integers use_ID,sel_ID,ite_ID,cat_ID,act_ID,time (act_ID 0 = click or 1 = buy, "
          "time a date yyyymmdd)")
ACTIONS = np.array(["click", "buy"], dtype=object)


def file_of(path: str | None) -> Path:
    p = locate(NAME, FOLDER, path)
    if p.is_file():
        return p
    if (p / FILE).is_file():
        return p / FILE
    found = [f for f in sorted(p.iterdir()) if f.is_file() and f.suffix == ".csv"]
    if len(found) == 1:
        return found[0]
    listed = ", ".join(f.name for f in sorted(p.iterdir()))[:300] or "nothing"
    raise DataError(f"{p}: no {FILE} here (found: {listed}); point path at the IJCAI-16 user log")


def read_log(f: Path) -> tuple[pd.DataFrame, np.ndarray]:
    first = read_header(f)
    header = tuple(c.strip() for c in first.split(",")) == HEADER
    raw, lines = read_table(f, COLS, EXPECT, header=HEADER if header else None)
    act = raw["act_ID"].to_numpy()
    first_bad(f, lines, ~np.isin(act, (0, 1)), EXPECT, "act_ID is not 0 or 1")
    day = pd.to_datetime(raw["time"].astype(str), format="%Y%m%d", errors="coerce")
    first_bad(f, lines, day.isna().to_numpy(), EXPECT, "time is not a date yyyymmdd")
    days = ((day - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy(np.float64)
    df = pd.DataFrame({"user": raw["use_ID"].to_numpy(), "item": raw["ite_ID"].to_numpy(), "time": days,
                       "event": ACTIONS[act], "seller": raw["sel_ID"].to_numpy(), "category": raw["cat_ID"].to_numpy()})
    return df, lines


def load_tmall(path: str | None = None, verify: bool = True, **filters: Any) -> Dataset:
    f = file_of(path)
    meta: dict[str, Any] = {"source": f"{SOURCE} ({f})", "licence": LICENCE}
    meta.update(verify_files(NAME, [f], KNOWN_SHA256, verify))
    df, lines = read_log(f)
    return finish(NAME, df, lines, "day", meta, str(f), filters)


def _sources(params: dict[str, Any]) -> list[Path]:
    return sources_or_path(params, lambda p: [file_of(p.get("path"))])


PARAMS = (
    Param("path", "str", None, "ijcai2016_taobao.csv or its folder; default: tmall/ under $MATCHBENCH_DATA, the "
                               "fetched copy, or ../shared/data", nullable=True),
    Param("verify", "bool", True, "check the file's sha256 where a known checksum exists (none known yet)"),
) + FILTER_PARAMS


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name=NAME, factory=load_tmall, params=PARAMS, sources=_sources,
                         description="IJCAI-16 Taobao/Tmall online user log: clicks and buys, days (yyyymmdd)"))
