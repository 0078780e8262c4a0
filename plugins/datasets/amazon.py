"""Dataset plugin `amazon`: Amazon product ratings / reviews (McAuley et al.) from local files.

Formats (detected from the file, or set with `format`):

    ratings    ratings_<Category>.csv   user,item,rating,timestamp    (no header in the original; a header
                                                                        line, as in some copies, is accepted)
    reviews    *.json / *.json.gz       one JSON object per line with reviewerID, asin, overall, unixReviewTime
    adjacency  LightGCN/NGCF split      user item item ...             (space-separated remapped ids; NO times)

Times are unix seconds (time_unit "s"); `value` is the rating (ratings, reviews). The adjacency lists carry
no time at all: every event gets time 0 and `meta.has_time` is false, so date filters refuse it and a
temporal split finds nothing to split (we do not pretend the order within a line is chronological).
"""
from __future__ import annotations

import json
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
    bad_line,
    finish,
    first_bad,
    hookimpl,
    iter_lines,
    locate,
    read_header,
    read_table,
    sources_or_path,
    verify_files,
)

NAME = "amazon"
FOLDER = "amazon-electronics"
LICENCE = "no formal licence: academic research use; cite McAuley et al."
SOURCE = "Amazon product data (McAuley et al.), https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html"
KNOWN_SHA256 = {  # the copies in shared/data (see datasets/amazon.md)
    "ratings_Electronics_head.csv": "ff848486cfb5bb243eae20e27eb41c0fba470ce7926b9c1d6098cfde160a396e",
    "amazon-book_test.txt": "068e9ff719cb878ae6c2543d17b5214d57715cae907699390fe757d974cfb215",
    "amazon-book_val.txt": "c49f6160e5776634e7d8e4f6e62982a7a62e26e6ae78a3952cb184f805b7b790",
}
RATING_COLS = [Col("user", "str"), Col("item", "str"), Col("rating", "float"), Col("timestamp", "int")]
EXPECT_RATINGS = "4 comma-separated fields user,item,rating,timestamp (rating a number, timestamp unix seconds)"
EXPECT_REVIEW = ("a JSON object with reviewerID (text), asin (text), overall (a number) and unixReviewTime "
                 "(integer unix seconds)")
EXPECT_ADJ = "space-separated integers: user item item ..."
REVIEW_KEYS = {"reviewerID": str, "asin": str, "overall": (int, float), "unixReviewTime": int}


def detect(f: Path) -> str:
    """ratings | reviews | adjacency, from the name and the first line."""
    first = read_header(f).strip()
    if first.startswith("{") or ".json" in f.name:
        return "reviews"
    if first and all(t.isdigit() for t in first.split(" ")) and "," not in first:
        return "adjacency"
    if len(first.split(",")) == 4:
        return "ratings"
    raise DataError(f"{f}: line 1: cannot tell the Amazon format: expected {EXPECT_RATINGS}; or {EXPECT_REVIEW}; "
                    f"or {EXPECT_ADJ}; got {first[:100]!r}; set format or point path at an Amazon file")


def pick_file(path: str | None) -> Path:
    """The file to read: `path` itself, or the one Amazon file in the folder."""
    p = locate(NAME, FOLDER, path)
    if p.is_file():
        return p
    found = sorted(f for f in p.iterdir() if f.is_file() and (
        f.name.startswith("ratings_") and f.name.endswith(".csv") or ".json" in f.name and f.name != "FETCHED.json"
        or f.name.endswith(".txt") and f.name in KNOWN_SHA256))
    if len(found) == 1:
        return found[0]
    listed = ", ".join(f.name for f in sorted(p.iterdir()))[:300]
    what = "several candidates" if found else "no ratings_*.csv or *.json(.gz) file"
    raise DataError(f"{p}: {what} (found: {listed}); point path at one Amazon file")


def read_ratings(f: Path) -> tuple[pd.DataFrame, np.ndarray]:
    fields = read_header(f).split(",")
    header = len(fields) == 4 and not _is_number(fields[3])  # a header line such as UserId,ItemId,rating,timestamp
    raw, lines = read_table(f, RATING_COLS, EXPECT_RATINGS, skip=1 if header else 0)
    df = pd.DataFrame({"user": raw["user"].astype(str).to_numpy(dtype=object),
                       "item": raw["item"].astype(str).to_numpy(dtype=object),
                       "time": raw["timestamp"].to_numpy(np.float64), "value": raw["rating"].to_numpy(np.float64)})
    return df, lines


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_reviews(f: Path) -> tuple[pd.DataFrame, np.ndarray]:
    users, items, times, values, lines = [], [], [], [], []
    for n, line in iter_lines(f):
        if not line.strip():
            raise bad_line(f, n, EXPECT_REVIEW, "blank line")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise bad_line(f, n, EXPECT_REVIEW, f"not JSON: {e.msg} at column {e.colno}") from None
        if not isinstance(obj, dict):
            raise bad_line(f, n, EXPECT_REVIEW, "not a JSON object")
        for key, kind in REVIEW_KEYS.items():
            v = obj.get(key)
            if v is None or not isinstance(v, kind) or isinstance(v, bool) or v == "":
                what = "missing" if key not in obj else f"{v!r} has the wrong type"
                raise bad_line(f, n, EXPECT_REVIEW, f"{key} {what}")
        users.append(obj["reviewerID"])
        items.append(obj["asin"])
        times.append(obj["unixReviewTime"])
        values.append(float(obj["overall"]))
        lines.append(n)
    if not users:
        raise DataError(f"{f}: the file has no data lines; expected lines of {EXPECT_REVIEW}")
    df = pd.DataFrame({"user": np.asarray(users, dtype=object), "item": np.asarray(items, dtype=object),
                       "time": np.asarray(times, dtype=np.float64), "value": np.asarray(values, dtype=np.float64)})
    return df, np.asarray(lines, dtype=np.int64)


def read_adjacency(f: Path) -> tuple[pd.DataFrame, np.ndarray]:
    users, items, lines = [], [], []
    for n, line in iter_lines(f):
        parts = line.split()
        if not parts or not all(p.isdigit() for p in parts):
            raise bad_line(f, n, EXPECT_ADJ, "blank line" if not parts else "a field is not a non-negative integer")
        u = int(parts[0])
        for p in parts[1:]:  # a user with no items is a valid (empty) line
            users.append(u)
            items.append(int(p))
            lines.append(n)
    if not users:
        raise DataError(f"{f}: no user-item pairs; expected lines of {EXPECT_ADJ}")
    df = pd.DataFrame({"user": np.asarray(users, dtype=np.int64), "item": np.asarray(items, dtype=np.int64),
                       "time": np.zeros(len(users))})
    return df, np.asarray(lines, dtype=np.int64)


READERS = {"ratings": read_ratings, "reviews": read_reviews, "adjacency": read_adjacency}


def load_amazon(path: str | None = None, format: str = "auto", verify: bool = True, **filters: Any) -> Dataset:
    f = pick_file(path)
    fmt = detect(f) if format == "auto" else format
    meta: dict[str, Any] = {"source": f"{SOURCE} ({f})", "licence": LICENCE, "format": fmt,
                            "has_time": fmt != "adjacency"}
    meta.update(verify_files(NAME, [f], KNOWN_SHA256, verify))
    df, lines = READERS[fmt](f)
    if fmt == "adjacency":
        meta["time_note"] = "the adjacency format has no times: every event has time 0"
    if fmt == "ratings":
        first_bad(f, lines, ~np.isfinite(df["value"].to_numpy()), EXPECT_RATINGS, "rating is not finite")
    return finish(NAME, df, lines, "s", meta, str(f), filters, has_time=fmt != "adjacency")


def _sources(params: dict[str, Any]) -> list[Path]:
    return sources_or_path(params, lambda p: [pick_file(p.get("path"))])


PARAMS = (
    Param("path", "str", None, "an Amazon file, or a folder holding one ratings_*.csv / *.json(.gz); default: "
                               "amazon-electronics/ under $MATCHBENCH_DATA, the fetched copy, or ../shared/data",
          nullable=True),
    Param("format", "str", "auto", "auto detects; ratings (CSV), reviews (JSON lines), adjacency (LightGCN lists, "
                                   "no times)", choices=("auto", "ratings", "reviews", "adjacency")),
    Param("verify", "bool", True, "check the file's sha256 where a known checksum exists"),
) + FILTER_PARAMS


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name=NAME, factory=load_amazon, params=PARAMS, sources=_sources,
                         description="Amazon reviews (McAuley): ratings-only CSV, reviews JSON lines, or LightGCN "
                                     "adjacency lists; rating = value, seconds"))
