"""Dataset plugin `movielens`: the GroupLens MovieLens ratings (100K, 1M, latest-small) from a local folder.

Variants and the files read (auto-detected from the folder):

    100k          u.data        user \\t item \\t rating \\t timestamp   (no header)    items: u.item (+ u.genre)
    1m            ratings.dat   UserID::MovieID::Rating::Timestamp      (no header)    items: movies.dat
    latest-small  ratings.csv   userId,movieId,rating,timestamp         (header)       items: movies.csv

Times are unix seconds (time_unit "s"); `value` is the rating. By default every rating is kept as
an implicit interaction; `min_rating` keeps only ratings >= it. `verify` checks the raw file's
sha256 against the published copy where one is known (100K); other variants record their sha256
with a note. Without `path`, the folder is found as every file-backed dataset finds it (see
`harness/files.py`): `$MATCHBENCH_DATA/movielens-100k`, the copy imported by `matchbench datasets
fetch movielens --from PATH`, else `<project>/../shared/data/movielens-100k`. We never download. The common
filters (k_core, event_types, start/end, ...) apply after `min_rating`.
"""
from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.plugin import (
    FILTER_PARAMS,
    DataError,
    Dataset,
    DatasetSpec,
    Param,
    cut_last_line,
    finish,
    hookimpl,
    locate,
    sources_or_path,
)

LICENCE = "GroupLens research licence: research use only, no redistribution"
LICENCE_LATEST = ("GroupLens licence: non-commercial research use; redistribution only under the same terms "
                  "(see the README.txt shipped with the data)")
GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western")


@dataclass(frozen=True)
class Variant:
    name: str
    ratings: str
    sep: str
    header: tuple[str, ...] | None
    float_rating: bool
    expected: str
    items: str
    sha256: str | None = None


VARIANTS = {
    "100k": Variant("100k", "u.data", "\t", None, False,
                    "4 tab-separated integer fields: user item rating timestamp", "u.item",
                    "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"),
    "1m": Variant("1m", "ratings.dat", "::", None, False,
                  "4 '::'-separated integer fields: UserID::MovieID::Rating::Timestamp", "movies.dat"),
    "latest-small": Variant("latest-small", "ratings.csv", ",", ("userId", "movieId", "rating", "timestamp"), True,
                            "4 comma-separated fields userId,movieId,rating,timestamp (integers; rating a number)",
                            "movies.csv"),
}


def resolve(path: str | None, variant: str) -> tuple[Path, Variant]:
    """(ratings file, variant) for a folder or a ratings file and a variant name or "auto"."""
    p = Path(path).expanduser() if path else locate("movielens", "movielens-100k", None)
    if p.is_file():
        if variant == "auto":
            match = [v for v in VARIANTS.values() if v.ratings == p.name]
            if not match:
                raise DataError(f"{p}: cannot tell the MovieLens variant from the file name; name it u.data, "
                                "ratings.dat or ratings.csv, or set variant: 100k | 1m | latest-small")
            return p, match[0]
        return p, VARIANTS[variant]
    if not p.is_dir():
        raise DataError(f"{p}: no such folder; set path to your MovieLens folder (with u.data, ratings.dat or "
                        "ratings.csv) or set MATCHBENCH_DATA to the folder that holds movielens-100k/")
    if variant != "auto":
        v = VARIANTS[variant]
        if not (p / v.ratings).is_file():
            raise DataError(f"{p}: no {v.ratings} for variant {variant!r}; set variant: auto or point path at "
                            f"the folder that holds {v.ratings}")
        return p / v.ratings, v
    for v in VARIANTS.values():
        if (p / v.ratings).is_file():
            return p / v.ratings, v
    listed = ", ".join(sorted(f.name for f in p.iterdir())[:20]) or "nothing"
    raise DataError(f"{p}: no u.data (100k), ratings.dat (1m) or ratings.csv (latest-small) here (found: {listed}); "
                    "point path at a MovieLens folder")


def _sources(params: dict[str, Any]) -> list[Path]:
    """The files a `movielens` dataset reads (for the disk cache's key)."""
    def read(p):
        f, v = resolve(p.get("path"), p.get("variant", "auto"))
        extra = [v.items] + (["u.genre"] if v.name == "100k" else [])
        return [f] + [f.parent / n for n in extra if (f.parent / n).is_file()]

    return sources_or_path(params, read)


def _diagnose(data: bytes, f: Path, v: Variant) -> DataError:
    """The first malformed line of a ratings file, as a DataError naming the line and what was expected."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines = lines[:-1]
    sep = v.sep.encode()
    for n, raw in enumerate(lines, 1):
        line = raw.rstrip(b"\r")
        if n == 1 and v.header:
            continue
        fields = line.split(sep)
        ok = len(fields) == 4
        if ok:
            try:
                int(fields[0]), int(fields[1]), int(fields[3])
                float(fields[2]) if v.float_rating else int(fields[2])
            except ValueError:
                ok = False
        if not ok:
            shown = line.decode("utf-8", "replace")
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            return DataError(f"{f}: line {n}: expected {v.expected}, got {shown!r}; fix or delete the line")
    return DataError(f"{f}: cannot parse it as MovieLens {v.name} ratings ({v.expected}); check variant and the file")


def read_ratings(f: Path, v: Variant, data: bytes) -> tuple[pd.DataFrame, np.ndarray]:
    """The ratings as a frame (user, item, value, time) and each row's 1-based line in the file."""
    if not data.strip():
        raise DataError(f"{f}: the file is empty; expected lines of {v.expected}")
    if v.header:
        first = data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
        if tuple(first.split(v.sep)) != v.header:
            raise DataError(f"{f}: line 1: expected the header {v.sep.join(v.header)!r}, got {first!r}; "
                            "restore the header line or set variant to match the file")
    cut = cut_last_line(f, v.sep, 1 if v.header else 0, data)
    if cut is not None:  # checked even with verify: false, the setting a damaged file gets loaded with
        raise cut
    body = data.split(b"\n", 1)[-1] if v.header else data
    if re.search(rb"[A-Za-z]" if v.float_rating else rb"[A-Za-z.]", body):  # pandas reads "3e2" and "3.0" into an
        raise _diagnose(data, f, v)  # int64 column as 300 and 3: a letter or a decimal point is a malformed line
    text = data.replace(b"::", b"\t") if v.sep == "::" else data  # the C reader takes one-character separators
    dtype = {0: np.int64, 1: np.int64, 2: np.float64 if v.float_rating else np.int64, 3: np.int64}
    try:
        raw = pd.read_csv(io.BytesIO(text), sep="\t" if v.sep == "::" else v.sep, header=None,
                          skiprows=1 if v.header else 0, dtype=dtype, skip_blank_lines=False, engine="c")
        if raw.shape[1] != 4:
            raise ValueError("field count")
    except (ValueError, TypeError, pd.errors.ParserError):
        raise _diagnose(data, f, v) from None
    df = pd.DataFrame({"user": raw[0].to_numpy(), "item": raw[1].to_numpy(),
                       "time": raw[3].to_numpy(np.float64), "value": raw[2].to_numpy(np.float64)})
    lines = np.arange(len(df), dtype=np.int64) + (2 if v.header else 1)
    return df, lines


def read_items(folder: Path, v: Variant, item_ids: np.ndarray) -> pd.DataFrame | None:
    """Item features (title, genres) aligned with the dataset's item index, when the item file is there."""
    f = folder / v.items
    if not f.is_file():
        return None
    try:
        if v.name == "100k":
            t = pd.read_csv(f, sep="|", header=None, encoding="latin-1", dtype=str, keep_default_na=False)
            genres = list(GENRES_100K)
            if (folder / "u.genre").is_file():
                g = pd.read_csv(folder / "u.genre", sep="|", header=None, encoding="latin-1").dropna()
                genres = list(g.sort_values(1)[0])
            flags = t.iloc[:, 5:5 + len(genres)].to_numpy() == "1"
            names = np.asarray(genres, dtype=object)
            t = pd.DataFrame({"raw": t[0].astype(np.int64), "title": t[1],
                              "genres": ["|".join(names[row]) for row in flags]})
        elif v.name == "1m":
            lines = f.read_bytes().decode("latin-1").splitlines()
            parts = [line.split("::") for line in lines if line.strip()]
            t = pd.DataFrame({"raw": [int(p[0]) for p in parts], "title": [p[1] for p in parts],
                              "genres": [p[2] for p in parts]})
        else:
            t = pd.read_csv(f, dtype={"movieId": np.int64, "title": str, "genres": str})
            t = t.rename(columns={"movieId": "raw"})[["raw", "title", "genres"]]
    except (ValueError, IndexError, KeyError, pd.errors.ParserError) as e:
        raise DataError(f"{f}: cannot read the item metadata ({e}); "
                        "fix the file or remove it (it is optional)") from None
    t = t.drop_duplicates("raw").set_index("raw").reindex(np.asarray(item_ids, dtype=np.int64))
    return pd.DataFrame({"item_id": np.asarray(item_ids, dtype=np.int64), "title": t["title"].to_numpy(),
                         "genres": t["genres"].to_numpy()})


def load_movielens(path: str | None = None, variant: str = "auto", min_rating: float | None = None,
                   verify: bool = True, **filters: Any) -> Dataset:
    f, v = resolve(path, variant)
    data = f.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    meta: dict[str, Any] = {"source": f"GroupLens MovieLens {v.name} ({f})", "licence":
                            LICENCE_LATEST if v.name == "latest-small" else LICENCE,
                            "checksum": digest, "variant": v.name, "file": str(f), "min_rating": min_rating}
    if verify and v.sha256:
        if digest != v.sha256:
            raise DataError(f"{f}: sha256 {digest} does not match the published MovieLens {v.name} {v.ratings} "
                            f"(sha256 {v.sha256}); the file is damaged or not the original: get a fresh copy "
                            "from GroupLens, or set verify: false to load a modified copy")
        meta["verified"] = True
        meta["files"] = {f.name: {"sha256": digest, "verified": True, "note": "matches the published sha256"}}
    else:
        meta["verified"] = False
        meta["verify_note"] = ("verification turned off (verify: false)" if not verify else
                               f"no published checksum known for MovieLens {v.name}; sha256 recorded, not verified")
        meta["files"] = {f.name: {"sha256": digest, "verified": False, "note": meta["verify_note"]}}
    df, lines = read_ratings(f, v, data)
    if min_rating is not None:
        keep = (df["value"] >= min_rating).to_numpy()
        if not keep.any():
            raise DataError(f"{f}: no rating is >= min_rating={min_rating} (ratings range "
                            f"{df['value'].min():g}-{df['value'].max():g}); lower min_rating")
        df, lines = df.loc[keep].reset_index(drop=True), lines[keep]
    ds = finish(f"movielens-{v.name}", df, lines, "s", meta, str(f), filters)
    ds.item_features = read_items(f.parent, v, ds.item_ids)
    return ds


PARAMS = (
    Param("path", "str", None, "a MovieLens folder or ratings file (default: movielens-100k/ under $MATCHBENCH_DATA, "
                               "the fetched copy, or <project>/../shared/data)", nullable=True),
    Param("variant", "str", "auto", "which MovieLens; auto detects u.data / ratings.dat / ratings.csv",
          choices=("auto", *VARIANTS)),
    Param("min_rating", "float", None, "keep only ratings >= this (default: keep all as implicit feedback)",
          nullable=True),
    Param("verify", "bool", True, "check the raw file's sha256 against the published one (100k)"),
) + FILTER_PARAMS


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="movielens", factory=load_movielens, params=PARAMS, sources=_sources,
                         description="GroupLens MovieLens 100k / 1m / latest-small ratings from a local folder "
                                     "(rating = value, unix-second times), checksum-verified"))
