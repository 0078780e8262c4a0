"""Dataset plugin `yoochoose`: YOOCHOOSE (RecSys Challenge 2015) click and buy sessions from local files.

Formats read (detected from the file, or set with `format`):

    raw        yoochoose-clicks.dat   session,timestamp,item,category        (no header; ISO 8601 UTC times)
               yoochoose-buys.dat     session,timestamp,item,price,quantity  (no header)
    prepared   GRU4Rec-style TSV      SessionId<TAB>ItemId<TAB>Time           (header; float unix seconds)

The user is the session. Events are typed `click` / `buy`; times are seconds (time_unit "s"). A folder
is read as the raw pair (either file may be missing); a folder with neither holding exactly one data
file reads that file. With event_types: [buy] the clicks file is not read at all.
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

NAME = "yoochoose"
FOLDER = "yoochoose"
CLICKS, BUYS = "yoochoose-clicks.dat", "yoochoose-buys.dat"
PREPARED_HEADER = ("SessionId", "ItemId", "Time")
LICENCE = "CC BY-NC-ND 4.0 (YOOCHOOSE GmbH, RecSys Challenge 2015): non-commercial, no derivatives"
SOURCE = "YOOCHOOSE / RecSys Challenge 2015, https://recsys.acm.org/recsys15/challenge/"
KNOWN_SHA256 = {  # the copies in shared/data/yoochoose (see datasets/yoochoose.md)
    "yoochoose-clicks-sample.dat": "698e8d2ee91442be9294b50ac773693c38302e52f7f7aae947da93c46322c19f",
    "yoochoose-clicks-100k_test.txt": "380410c606403531019e1ec0b4d192ef90492d594b9b5a91633b860618dd7136",
    "yoochoose-clicks-100k_train_full.txt": "9842c90358298ee784fcf0c9dccb2eeb283ab04368e53bdeee896747f4c03e1e",
    "yoochoose-clicks-100k_train_tr.txt": "fb4c6381c8e5bc4de51553cb1ed210fb4016c87d2425d58344cd6b19e81c133a",
    "yoochoose-clicks-100k_train_valid.txt": "14fca72e690c19b0da391059b7cf2c1b611cddbd1248ce93578a039ddb26ea69",
}
CLICK_COLS = [Col("session", "int"), Col("timestamp", "str"), Col("item", "int"), Col("category", "str")]
BUY_COLS = [Col("session", "int"), Col("timestamp", "str"), Col("item", "int"), Col("price", "int"),
            Col("quantity", "int")]
PREPARED_COLS = [Col("SessionId", "int"), Col("ItemId", "int"), Col("Time", "float")]
EXPECT_CLICK = "4 comma-separated fields session,timestamp,item,category (integers; ISO 8601 time)"
EXPECT_BUY = "5 comma-separated fields session,timestamp,item,price,quantity (integers; ISO 8601 time)"
EXPECT_PREPARED = "3 tab-separated fields SessionId, ItemId (integers), Time (unix seconds)"
IGNORED = {"FETCHED.json"}


def _kind_of(f: Path) -> str:
    """clicks | buys | prepared, from the file's first line."""
    first = read_header(f)
    if tuple(first.split("\t")) == PREPARED_HEADER:
        return "prepared"
    n = len(first.split(","))
    if n == 5:
        return "buys"
    if n == 4:
        return "clicks"
    raise DataError(f"{f}: line 1: expected a YOOCHOOSE file: {EXPECT_CLICK}; or {EXPECT_BUY}; or the header "
                    f"'SessionId<TAB>ItemId<TAB>Time' of a prepared file, got {first[:100]!r}; point path at a "
                    "YOOCHOOSE file or set format")


def files_of(path: str | None, fmt: str) -> list[tuple[Path, str]]:
    """[(file, clicks|buys|prepared)] that a yoochoose dataset reads."""
    p = locate(NAME, FOLDER, path)
    if p.is_file():
        kind = _kind_of(p)
        if fmt == "prepared" and kind != "prepared" or fmt == "raw" and kind == "prepared":
            raise DataError(f"{p}: this is a {kind} file, not format {fmt!r}; set format: auto")
        return [(p, kind)]
    found = [(p / n, k) for n, k in ((CLICKS, "clicks"), (BUYS, "buys")) if (p / n).is_file()]
    if found:
        return found
    data = sorted(f for f in p.iterdir() if f.is_file() and f.name not in IGNORED)
    if len(data) == 1:
        return files_of(str(data[0]), fmt)
    listed = ", ".join(f.name for f in data[:12]) or "nothing"
    raise DataError(f"{p}: no {CLICKS} or {BUYS} here (found: {listed}); point path at the folder of the raw "
                    "files or at one file (raw clicks/buys or a prepared SessionId/ItemId/Time file)")


def _iso_seconds(s: pd.Series, f: Path, lines: np.ndarray, expected: str) -> np.ndarray:
    t = pd.to_datetime(s, format="ISO8601", utc=True, errors="coerce")
    first_bad(f, lines, t.isna().to_numpy(), expected, "timestamp is not ISO 8601 (YYYY-MM-DDThh:mm:ss.SSSZ)")
    return ((t - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(np.float64)


def read_file(f: Path, kind: str) -> tuple[pd.DataFrame, np.ndarray]:
    """One file as raw events: user (session), item, time (s), event, + category | price, quantity."""
    if kind == "prepared":
        raw, lines = read_table(f, PREPARED_COLS, EXPECT_PREPARED, sep="\t", header=PREPARED_HEADER)
        df = pd.DataFrame({"user": raw["SessionId"].to_numpy(), "item": raw["ItemId"].to_numpy(),
                           "time": raw["Time"].to_numpy(np.float64), "event": "click"})
        return df, lines
    cols, expected = (CLICK_COLS, EXPECT_CLICK) if kind == "clicks" else (BUY_COLS, EXPECT_BUY)
    raw, lines = read_table(f, cols, expected)
    df = pd.DataFrame({"user": raw["session"].to_numpy(), "item": raw["item"].to_numpy(),
                       "time": _iso_seconds(raw["timestamp"], f, lines, expected),
                       "event": "click" if kind == "clicks" else "buy"})
    if kind == "clicks":
        df["category"] = raw["category"].astype(str).to_numpy(dtype=object)
        df["price"] = np.nan
        df["quantity"] = np.nan
    else:
        df["category"] = ""
        df["price"] = raw["price"].to_numpy(np.float64)
        df["quantity"] = raw["quantity"].to_numpy(np.float64)
    return df, lines


def load_yoochoose(path: str | None = None, format: str = "auto", verify: bool = True, **filters: Any) -> Dataset:
    files = files_of(path, format)
    if filters.get("event_types") is not None and len(files) > 1:  # skip a file whose events are all dropped
        keep = {"clicks": "click", "buys": "buy"}
        files = [(f, k) for f, k in files if keep[k] in map(str, filters["event_types"])] or files
    meta: dict[str, Any] = {"source": f"{SOURCE} ({', '.join(str(f) for f, _ in files)})", "licence": LICENCE,
                            "format": "prepared" if files[0][1] == "prepared" else "raw"}
    meta.update(verify_files(NAME, [f for f, _ in files], KNOWN_SHA256, verify))
    frames, lines, origin = [], [], []
    for n, (f, kind) in enumerate(files):
        df, ln = read_file(f, kind)
        frames.append(df)
        lines.append(ln)
        origin.append(np.full(len(df), n))
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if meta["format"] == "prepared":
        df = df[["user", "item", "time", "event"]]
    where = ", ".join(str(f) for f, _ in files)
    # line numbers are per file; with two files, messages from from_events say which via `where`
    return finish(NAME, df, np.concatenate(lines), "s", meta, where, filters)


def _sources(params: dict[str, Any]) -> list[Path]:
    return sources_or_path(params, lambda p: [f for f, _ in files_of(p.get("path"), p.get("format", "auto"))])


PARAMS = (
    Param("path", "str", None, "a folder with yoochoose-clicks.dat / yoochoose-buys.dat, or one file (raw or "
                               "prepared); default: yoochoose/ under $MATCHBENCH_DATA, the fetched copy, or "
                               "../shared/data", nullable=True),
    Param("format", "str", "auto", "auto detects from the file; raw (clicks/buys .dat) or prepared (GRU4Rec TSV)",
          choices=("auto", "raw", "prepared")),
    Param("verify", "bool", True, "check each file's sha256 where a known checksum exists"),
) + FILTER_PARAMS


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name=NAME, factory=load_yoochoose, params=PARAMS, sources=_sources,
                         description="YOOCHOOSE (RecSys Challenge 2015) sessions: raw clicks/buys .dat or "
                                     "GRU4Rec-prepared TSV; user = session, events click/buy, seconds"))
