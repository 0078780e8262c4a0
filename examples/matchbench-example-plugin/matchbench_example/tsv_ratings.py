"""Dataset `tsv_ratings`: a tab-separated ratings file with a header line `user item rating timestamp`.

    user    item    rating  timestamp
    u14     i12     3       1700008707

Ids are any non-empty text, ratings numbers >= 0, timestamps integer unix seconds. The file is read strictly
(`read_table`): the first malformed line is a DataError naming the file, the line, what was expected and what
was there. Every rating is an implicit interaction; `min_rating` keeps only ratings >= it; the common filters
(k_core, start/end, ...) apply after that. Without `path` it reads the small file shipped with this package
(30 users, 24 items, 338 ratings over 60 days), whose sha256 is known and verified; any other file has its
sha256 recorded, not verified.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

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
    read_table,
    sources_or_path,
    verify_files,
)

SHIPPED = Path(__file__).resolve().with_name("ratings.tsv")
SHIPPED_SHA256 = "a9cc7b65976ec6a78777ef0b5c9d18904de221f152923c10152309d1d1a03a42"
HEADER = ("user", "item", "rating", "timestamp")
COLUMNS = [Col("user", "str"), Col("item", "str"), Col("rating", "float"), Col("timestamp", "int")]
EXPECTED = "4 tab-separated fields: user, item, rating (a number >= 0), timestamp (integer unix seconds)"


def ratings_file(path: str | None) -> Path:
    f = Path(path).expanduser() if path else SHIPPED
    if not f.is_file():
        raise DataError(f"{f}: no such file; set path to a tab-separated ratings file with the header "
                        f"{chr(9).join(HEADER)!r}")
    return f


def load_tsv_ratings(path: str | None = None, min_rating: float | None = None, verify: bool = True,
                     **filters: Any) -> Dataset:
    f = ratings_file(path)
    known = {f.name: SHIPPED_SHA256} if f.resolve() == SHIPPED else {}
    meta: dict[str, Any] = {"source": str(f), **verify_files("tsv_ratings", [f], known, verify)}
    table, lines = read_table(f, COLUMNS, EXPECTED, sep="\t", header=HEADER)
    first_bad(f, lines, (table["rating"] < 0).to_numpy(), EXPECTED, "a negative rating")
    events = pd.DataFrame({"user": table["user"], "item": table["item"],
                           "time": table["timestamp"].astype(float), "value": table["rating"]})
    if min_rating is not None:
        keep = (events["value"] >= min_rating).to_numpy()
        if not keep.any():
            raise DataError(f"{f}: no rating is >= min_rating={min_rating:g} (the largest is "
                            f"{events['value'].max():g}); lower min_rating")
        events, lines = events.loc[keep].reset_index(drop=True), lines[keep]
    meta["min_rating"] = min_rating
    return finish("tsv_ratings", events, lines, "s", meta, str(f), filters)


@hookimpl
def register_datasets(register):
    register(DatasetSpec(
        name="tsv_ratings", factory=load_tsv_ratings,
        sources=lambda params: sources_or_path(params, lambda p: [ratings_file(p.get("path"))]),
        description="a tab-separated user/item/rating/timestamp file (default: the small one shipped with the "
                    "example package), read strictly and checksummed (example plugin)",
        params=(
            Param("path", "str", None, "the ratings file (default: the example package's ratings.tsv)",
                  nullable=True),
            Param("min_rating", "float", None, "keep only ratings >= this (default: all, as implicit feedback)",
                  nullable=True),
            Param("verify", "bool", True, "check the shipped file's sha256 (other files: recorded only)"),
        ) + FILTER_PARAMS))
