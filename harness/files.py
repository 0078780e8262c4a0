"""Reading raw data files, for dataset plugins (public through `harness.plugin`): where their files are,
checksums, a strict table reader that names the file, line and expected format of the first bad row, and the
common filters.

Where a dataset's files are, when no `path` is given (one mechanism for every loader):

    1. $MATCHBENCH_DATA/<folder>            if MATCHBENCH_DATA is set and that folder exists
    2. <cache>/raw/<dataset>/               a copy imported by `matchbench datasets fetch NAME --from PATH`
    3. <project>/../shared/data/<folder>    the team's shared data

The first that exists wins; if none does, the error lists all three and both fixes.

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from .cache import raw_dir, sha256_file
from .data import Dataset, filter_events, filter_params, from_events
from .errors import DataError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_ENV = "MATCHBENCH_DATA"
FILTER_PARAMS = filter_params()
FILTER_NAMES = tuple(p.name for p in FILTER_PARAMS)


def data_root() -> Path:
    """`$MATCHBENCH_DATA`, else `<project root>/../shared/data`."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else (PROJECT_ROOT / ".." / "shared" / "data").resolve()


def candidates(name: str, folder: str) -> list[Path]:
    """Where dataset `name` is looked for when no path is given, in order."""
    out = []
    if os.environ.get(DATA_ENV):
        out.append(Path(os.environ[DATA_ENV]) / folder)
    out.append(raw_dir(name))
    out.append((PROJECT_ROOT / ".." / "shared" / "data" / folder).resolve())
    return out


def locate(name: str, folder: str, path: str | None) -> Path:
    """`path` (expanded; must exist), else the first existing default folder of dataset `name`."""
    if path:
        p = Path(str(path)).expanduser()
        if not p.exists():
            raise DataError(f"{p}: no such file or folder; set path to your {name} files")
        return p
    places = candidates(name, folder)
    for p in places:
        if p.is_dir():
            return p
    listed = ", ".join(str(p) for p in places)
    raise DataError(f"dataset {name!r}: no path given and no data found (looked in: {listed}); set path: "
                    f"<your {name} folder>, set {DATA_ENV} to a folder holding {folder}/, or run "
                    f"`matchbench datasets fetch {name} --from <folder>`")


def sources_or_path(params: dict[str, Any], resolve) -> list[Path]:
    """The raw files a loader reads (for the disk cache's key): `resolve(params)`, or, when they cannot be resolved
    yet (the load itself will say why), the `path` parameter as given."""
    try:
        return list(resolve(params))
    except DataError:
        return [Path(params["path"])] if params.get("path") else []


def open_text(f: Path):
    """A text handle on f (gzip-compressed when the name ends in .gz)."""
    if f.suffix == ".gz":
        return gzip.open(f, "rt", encoding="utf-8", errors="replace", newline="")
    return open(f, encoding="utf-8", errors="replace", newline="")


def iter_lines(f: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line end)."""
    with open_text(f) as h:
        for n, line in enumerate(h, 1):
            yield n, line.rstrip("\r\n")


def shown(line: str) -> str:
    return line if len(line) <= 100 else line[:97] + "..."


def line_text(f: Path, n: int) -> str:
    for m, line in iter_lines(f):
        if m == n:
            return line
    return ""


def bad_line(f: Path, line: int, expected: str, what: str | None = None) -> DataError:
    """The DataError for a malformed line: file, line number, what was expected, what was there."""
    why = f" ({what})" if what else ""
    return DataError(f"{f}: line {line}: expected {expected}, got {shown(line_text(f, line))!r}{why}; "
                     "fix or delete the line")


def first_bad(f: Path, lines: np.ndarray, bad: np.ndarray, expected: str, what: str | None = None) -> None:
    """Raise bad_line for the first row flagged in `bad` (a boolean mask over rows), if any."""
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        n = int(bad.sum())
        extra = f"{what}; " if what else ""
        raise bad_line(f, int(lines[r]), expected, f"{extra}{n} such line{'s' if n > 1 else ''}")


# ---------------------------------------------------------------------------------------------- partial lines

TAIL_BYTES = 1 << 18
_NUMBER = re.compile(r"-?\d+\.?\d*")


def _tail(f: Path, data: bytes | None) -> tuple[bytes, bool]:
    """The file's last TAIL_BYTES bytes and whether they start the file."""
    if data is not None:
        return data[-TAIL_BYTES:], len(data) <= TAIL_BYTES
    with open(f, "rb") as h:
        size = h.seek(0, os.SEEK_END)
        h.seek(max(0, size - TAIL_BYTES))
        return h.read(), size <= TAIL_BYTES


def cut_last_line(f: Path, sep: str, skip: int = 0, data: bytes | None = None) -> DataError | None:
    """The DataError for a last line cut off mid-line (a truncated download or copy), else None.

    A file that ends in a line end is whole. Otherwise its last line is taken as cut when it has fewer fields than
    every line before it, or when a column whose values all have the same width (a unix timestamp) is narrower in
    it: "196\\t242\\t3\\t8812" is not an event of 1970 but the start of 881250949. Checked whatever the checksum
    settings, since `verify: false` is exactly how a damaged file gets loaded. `skip`: header lines; `data`: the
    file's bytes when already read. Compressed files are not checked (gzip has its own end check)."""
    if f.suffix == ".gz":
        return None
    tail, whole = _tail(f, data)
    if not tail or tail.endswith(b"\n"):
        return None
    lines = [ln.rstrip(b"\r") for ln in tail.split(b"\n")]
    last, before = lines[-1], lines[:-1] if whole else lines[1:-1]  # a tail that starts mid-file starts mid-line
    before = [ln for ln in (before[skip:] if whole else before)[-1000:] if ln.strip()]
    if not before or not last.strip():
        return None
    split = sep.encode()
    fields, rows = last.split(split), [ln.split(split) for ln in before]
    why = None
    if len(fields) < min(len(r) for r in rows):
        why = f"{len(fields)} fields, the lines before it {min(len(r) for r in rows)}"
    else:
        for c, text in enumerate(fields):
            widths = {len(r[c]) for r in rows if len(r) > c}
            shown_text = text.decode("utf-8", "replace")
            if len(widths) == 1 and len(text) < (width := widths.pop()) and _NUMBER.fullmatch(shown_text):
                why = f"field {c + 1} {shown_text!r} has {len(text)} characters, every line before it {width}"
                break
    if why is None:
        return None
    n = (data.count(b"\n") if data is not None else _count_newlines(f)) + 1
    return DataError(f"{f}: line {n}: the file ends mid-line: {shown(last.decode('utf-8', 'replace'))!r} has no line "
                     f"end and is shorter than the lines before it ({why}); the file looks cut off (a truncated "
                     "download or copy): get a fresh copy; if that line is complete, end it with a newline")


def _count_newlines(f: Path) -> int:
    n = 0
    with open(f, "rb") as h:
        while block := h.read(1 << 20):
            n += block.count(b"\n")
    return n


# ------------------------------------------------------------------------------------------------- checksums

def verify_files(dataset: str, files: list[Path], known: dict[str, str], verify: bool) -> dict[str, Any]:
    """sha256 of each file, checked against `known` (file name -> sha256) when `verify`.

    A mismatch is a DataError naming the file and both hashes. Returns meta entries: `checksum` (of the
    first file), `files` ({name: {sha256, verified, note}}) and `verified` (every file checked and equal).
    """
    out: dict[str, Any] = {}
    for f in files:
        got = sha256_file(f)
        want = known.get(f.name)
        if want and verify and got != want:
            raise DataError(f"{f}: sha256 {got} does not match the known sha256 {want} of {dataset}'s {f.name}; "
                            "the file is damaged, truncated or not the original: get a fresh copy, or load it "
                            "anyway with verify: false (matchbench datasets fetch ... --no-verify)")
        if not want:
            note = "no known checksum for this file: sha256 recorded, not verified"
        elif not verify:
            note = "verification turned off (verify: false)"
        else:
            note = "matches the known sha256"
        out[f.name] = {"sha256": got, "verified": bool(want and verify), "note": note}
    return {"checksum": out[files[0].name]["sha256"] if files else None, "files": out,
            "verified": bool(out) and all(v["verified"] for v in out.values())}


# --------------------------------------------------------------------------------------------- strict tables

@dataclass(frozen=True)
class Col:
    """A column of a delimited file: `kind` int, float, str (non-empty) or opt (anything, may be empty)."""

    name: str
    kind: str = "str"


_INT = re.compile(r"-?\d+")


def _field_ok(text: str, kind: str) -> bool:
    if kind == "int":
        return bool(_INT.fullmatch(text.strip()))
    if kind == "float":
        try:
            return not np.isnan(float(text))
        except ValueError:
            return False
    if kind == "str":
        return text != ""
    return True


def _diagnose(f: Path, cols: list[Col], sep: str, skip: int, expected: str, error: Exception | None) -> DataError:
    for n, line in iter_lines(f):
        if n <= skip:
            continue
        fields = line.split(sep)
        if len(fields) != len(cols):
            return bad_line(f, n, expected, f"{len(fields)} fields, not {len(cols)}")
        for c, text in zip(cols, fields, strict=False):
            if not _field_ok(text, c.kind):
                what = "empty" if text == "" else f"{text!r} is not {'an integer' if c.kind == 'int' else 'a number'}"
                return bad_line(f, n, expected, f"{c.name}: {what}")
    return DataError(f"{f}: cannot read it as {expected} ({error}); check the file")


def read_header(f: Path) -> str:
    with open_text(f) as h:
        return h.readline().rstrip("\r\n")


def check_header(f: Path, header: tuple[str, ...], sep: str = ",") -> None:
    first = read_header(f)
    if tuple(c.strip() for c in first.split(sep)) != header:
        raise DataError(f"{f}: line 1: expected the header {sep.join(header)!r}, got {shown(first)!r}; restore "
                        "the header line (this loader reads the original file layout)")


def read_table(f: Path, cols: list[Col], expected: str, sep: str = ",", header: tuple[str, ...] | None = None,
               skip: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a delimited file strictly: every line has exactly these columns of these kinds.

    `header`: the first line must name these columns (compared after stripping spaces). `skip` overrides
    the number of leading lines skipped. Returns the frame (columns named by `cols`) and each row's
    1-based line in the file. The first bad line is a DataError with file, line, expected and got.
    """
    if not f.is_file():
        raise DataError(f"{f}: no such file; point path at the folder holding it")
    if header is not None:
        check_header(f, header, sep)
    skip = (1 if header is not None else 0) if skip is None else skip
    cut = cut_last_line(f, sep, skip)
    if cut is not None:
        raise cut
    dtype = {i: np.int64 if c.kind == "int" else np.float64 if c.kind == "float" else str for i, c in enumerate(cols)}
    try:
        raw = pd.read_csv(f, sep=sep, header=None, skiprows=skip, dtype=dtype, na_filter=False,
                          skip_blank_lines=False, quoting=3, engine="c", encoding="utf-8", encoding_errors="replace")
    except pd.errors.EmptyDataError:
        raise DataError(f"{f}: the file has no data lines; expected lines of {expected}") from None
    except (ValueError, TypeError, pd.errors.ParserError, OverflowError) as e:
        raise _diagnose(f, cols, sep, skip, expected, e) from None
    if raw.shape[1] != len(cols):
        raise _diagnose(f, cols, sep, skip, expected, None)
    if len(raw) == 0:
        raise DataError(f"{f}: the file has no data lines; expected lines of {expected}")
    lines = np.arange(len(raw), dtype=np.int64) + 1 + skip
    for i, c in enumerate(cols):
        s = raw[i]
        if c.kind == "float":
            bad = s.isna().to_numpy()
        elif c.kind == "str":
            bad = (s == "").to_numpy()
        else:
            continue
        if bad.any():
            raise _diagnose(f, cols, sep, skip, expected, None)
    _check_int_forms(f, raw, cols, sep, skip, lines, expected)
    raw.columns = [c.name for c in cols]
    return raw, lines


_NOT_INT_BYTES = (b".", b"e", b"E")
_INT_TEXT = r"\s*[+-]?\d+\s*"


def _check_int_forms(f: Path, raw: pd.DataFrame, cols: list[Col], sep: str, skip: int, lines: np.ndarray,
                     expected: str) -> None:
    """pandas' C parser reads "4e1" and "6.0" into an int64 column as 40 and 6: a silent change of an id or a time.
    A byte scan shows whether the file holds any '.', 'e' or 'E' at all (C-speed, in chunks); only then are the
    integer columns read again as text and each field checked to be an integer, the first other one a DataError."""
    ints = [i for i, c in enumerate(cols) if c.kind == "int"]
    if not ints or not _data_has_any(f, skip, _NOT_INT_BYTES):
        return
    text = pd.read_csv(f, sep=sep, header=None, skiprows=skip, usecols=ints, dtype=str, na_filter=False,
                       skip_blank_lines=False, quoting=3, engine="c", encoding="utf-8", encoding_errors="replace")
    for i in ints:
        bad = ~text[i].str.fullmatch(_INT_TEXT).to_numpy(dtype=bool)
        first_bad(f, lines, bad, expected, f"{cols[i].name} must be a whole number (no decimal point or exponent)")


def _data_has_any(f: Path, skip: int, needles: tuple[bytes, ...], chunk: int = 1 << 24) -> bool:
    """Whether any of `needles` occurs after the first `skip` lines (the header's own letters do not count)."""
    with open(f, "rb") as fh:
        for _ in range(skip):
            fh.readline()
        while block := fh.read(chunk):
            if any(n in block for n in needles):
                return True
    return False


def nullable_ints(s: pd.Series, f: Path, lines: np.ndarray, expected: str, null: tuple[str, ...] = ("", "NULL")
                  ) -> pd.Series:
    """Text -> nullable Int64, with the tokens in `null` as missing; anything else not an integer is an error."""
    s = s.astype(str).str.strip()
    missing = s.isin(null).to_numpy()
    ok = s.str.fullmatch(r"-?\d+").to_numpy(dtype=bool)
    first_bad(f, lines, ~missing & ~ok, expected)
    out = pd.Series(pd.array([None] * len(s), dtype="Int64"))
    out[~missing] = s[~missing].astype(np.int64).to_numpy()
    return out


# -------------------------------------------------------------------------------------------- build a Dataset

def finish(name: str, df: pd.DataFrame, lines: np.ndarray | None, time_unit: str, meta: dict[str, Any],
           where: str, filters: dict[str, Any], has_time: bool = True) -> Dataset:
    """Apply the common filters (before dense re-indexing), then build the Dataset; the filters and the
    events each removed are recorded in meta."""
    unknown = set(filters) - set(FILTER_NAMES)
    if unknown:
        raise TypeError(f"unknown filter parameters {sorted(unknown)}")
    df, lines, removed = filter_events(df, lines, time_unit=time_unit, where=f"dataset {name!r} ({where})",
                                       has_time=has_time, **filters)
    meta = dict(meta, filters={k: v for k, v in filters.items() if v is not None})
    if removed:
        meta["filtered_out"] = removed
    return from_events(name, df, time_unit, meta=meta, where=where, lines=lines)


def align(table: pd.DataFrame, key: str, ids: np.ndarray, id_name: str) -> pd.DataFrame:
    """A side table (one row per raw id in column `key`) aligned with a dataset's index: row r describes
    raw id ids[r] (missing ids give empty rows); the raw id is kept in column `id_name`."""
    t = table.drop_duplicates(key).set_index(key)
    ids = np.asarray(ids)
    try:
        ids_typed = ids.astype(t.index.dtype) if len(ids) else ids
    except (TypeError, ValueError):
        ids_typed = ids
    out = t.reindex(ids_typed).reset_index(drop=True)
    out.insert(0, id_name, ids)
    return out
