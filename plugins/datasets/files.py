"""Dataset plugins `csv` and `parquet`: any event log on disk, with a column mapping.

`columns` maps our names (user, item, time, value, event) to the file's columns; unmapped file
columns are ignored unless listed in `features`. Raw ids may be numbers or strings; they are mapped
to dense indices in sorted raw-id order (the dataset keeps the raw ids). Times are numbers in
`time_unit`, or text parsed with `time_format`. With `ordered: true` the file's row order is the
sequence order, and a time going backwards within a user is an error.

Every bad input is a DataError naming the file, the line (1-based, as an editor shows it; the header
is line 1) or column, and the fix.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.plugin import (
    TIME_UNITS,
    DataError,
    Dataset,
    DatasetSpec,
    Param,
    cut_last_line,
    did_you_mean,
    filter_events,
    filter_params,
    from_events,
    hookimpl,
    line_text,
    sha256_file,
    shown,
)

OUR_NAMES = ("user", "item", "time", "value", "event")
DEFAULT_COLUMNS = {"user": "user", "item": "item", "time": "time"}
LICENCE = "unknown (user data)"



def _show(v: Any) -> str:
    """A value for a message: numpy scalars as plain numbers, text quoted."""
    v = v.item() if isinstance(v, np.generic) else v
    return repr(v)


def _check_path(path: Any, kind: str) -> Path:
    if not path:
        raise DataError(f"dataset {kind!r}: no path given; set path: <your {kind} file>")
    p = Path(str(path)).expanduser()
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise DataError(f"{p}: {what}; set path to your {kind} file")
    return p


def _mapping(columns: dict | None, where: str, header: bool) -> dict[str, Any]:
    """Our name -> the file's column (a name, or a 0-based position when header is False)."""
    cols = dict(DEFAULT_COLUMNS)
    for key, value in (columns or {}).items():
        if key not in OUR_NAMES:
            raise DataError(f"{where}: columns: unknown name {key!r}{did_you_mean(str(key), OUR_NAMES)}; "
                            "columns maps our names (user, item, time, value, event) to your file's column names, "
                            "e.g. columns: {user: userId, item: movieId}; keep other columns with features: [...]")
        cols[key] = value
    if not header:  # the identity defaults mean the first three columns: user, item, time
        return {k: OUR_NAMES.index(k) if v == DEFAULT_COLUMNS.get(k) else _position(v, k, where)
                for k, v in cols.items() if v is not None}
    return {k: str(v) for k, v in cols.items() if v is not None}


def _position(value: Any, key: str, where: str) -> int:
    try:
        pos = int(value)
        if pos < 0 or str(value).strip() != str(pos):
            raise ValueError
    except (TypeError, ValueError):
        raise DataError(f"{where}: columns: {key}: {value!r} is not a column position; with header: false, "
                        "columns gives 0-based column positions, e.g. columns: {user: 0, item: 1, time: 2}") from None
    return pos


def _missing(where: str, what: str, col: Any, available: list, header: bool) -> DataError:
    role = f"wanted for {what}" if what in OUR_NAMES else "listed in features"
    fix = (f"fix the mapping, e.g. columns: {{{what}: <your column>}}" if what in OUR_NAMES
           else "fix or remove it in features")
    if header:
        listed = ", ".join(repr(str(c)) for c in available)
        return DataError(f"{where}: no column {str(col)!r} ({role}); the file's columns are: {listed}; {fix}")
    return DataError(f"{where}: no column at position {col} ({role}); the file has {len(available)} columns "
                     f"(positions 0-{len(available) - 1}); {fix} with 0-based positions")


def _select(raw: pd.DataFrame, mapping: dict[str, Any], features: list, where: str, header: bool) -> pd.DataFrame:
    """The frame with our names + feature columns, after checking every mapped column exists."""
    available = list(raw.columns)
    for key, col in mapping.items():
        if col not in available:
            raise _missing(where, key, col, available, header)
    out = {key: raw[col] for key, col in mapping.items()}
    for f in features or []:
        col = _position(f, "features", where) if not header else str(f)
        if col not in available:
            raise _missing(where, "features", col, available, header)
        name = str(f)
        if name in OUR_NAMES:
            raise DataError(f"{where}: features: column {name!r} clashes with our column name {name!r}; "
                            f"map it in columns instead (columns: {{{name}: {name}}}) or rename it in the file")
        out[name] = raw[col]
    return pd.DataFrame(out)


def _numeric_value(df: pd.DataFrame, lines: np.ndarray, where: str, unit: str) -> None:
    if "value" not in df or pd.api.types.is_numeric_dtype(df["value"]):
        return
    num = pd.to_numeric(df["value"], errors="coerce")
    bad = (num.isna() & df["value"].notna()).to_numpy()
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where}: {unit} {lines[r]}: value {_show(df['value'].iloc[r])} is not a number; "
                        "map value to a numeric column or leave value unmapped")
    df["value"] = num


def _parse_times(df: pd.DataFrame, time_unit: str, time_format: str | None, lines: np.ndarray, where: str,
                 unit: str) -> None:
    """Convert df['time'] to float in `time_unit`: numbers stay, datetimes convert, text needs time_format."""
    t = df["time"]
    per_second = TIME_UNITS[time_unit] / 86400.0  # units per second
    nan = t.isna().to_numpy()
    if nan.any():
        r = int(np.flatnonzero(nan)[0])
        raise DataError(f"{where}: {unit} {lines[r]}: time is empty/NaN ({int(nan.sum())} such rows); "
                        "drop or fill such rows before loading")
    if time_format is None and pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t):
        return
    if pd.api.types.is_datetime64_any_dtype(t):
        dt = t
    elif time_format is None:
        num = pd.to_numeric(t, errors="coerce")
        bad = num.isna().to_numpy()
        if not bad.any():
            df["time"] = num.astype(np.float64)
            return
        r = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where}: {unit} {lines[r]}: time {_show(t.iloc[r])} is not a number; give time_format "
                        "(e.g. time_format: '%Y-%m-%d %H:%M:%S', or 'ISO8601') to parse text times, "
                        "or map time to a numeric column")
    else:
        try:
            dt = pd.to_datetime(t.astype(str), format=time_format, errors="coerce")
        except (ValueError, TypeError) as e:
            raise DataError(f"{where}: time_format {time_format!r} is not usable ({e}); give a strftime "
                            "format such as '%Y-%m-%d %H:%M:%S' or 'ISO8601'") from None
        bad = dt.isna().to_numpy()
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise DataError(f"{where}: {unit} {lines[r]}: time {_show(t.iloc[r])} does not match time_format "
                            f"{time_format!r} ({int(bad.sum())} such rows); fix the value or the format")
    if getattr(dt.dt, "tz", None) is not None:
        dt = dt.dt.tz_convert("UTC").dt.tz_localize(None)
    seconds = (dt - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)
    df["time"] = seconds.to_numpy(np.float64) * per_second


def _check_order(df: pd.DataFrame, lines: np.ndarray, where: str, unit: str) -> None:
    """With ordered: true, time may not go backwards within a user (in file order)."""
    user = pd.factorize(df["user"])[0]
    time = df["time"].to_numpy(np.float64)
    idx = np.argsort(user, kind="stable")  # each user's rows in file order
    back = (user[idx][1:] == user[idx][:-1]) & (time[idx][1:] < time[idx][:-1])
    if back.any():
        pos = np.flatnonzero(back)
        first = pos[np.argmin(idx[pos + 1])]  # the earliest offending row in the file
        r, prev = int(idx[first + 1]), int(idx[first])
        raise DataError(f"{where}: {unit} {lines[r]}: time {df['time'].iloc[r]:g} "
                        f"of user {_show(df['user'].iloc[r])} is "
                        f"earlier than the user's previous row ({unit} {lines[prev]}, time {df['time'].iloc[prev]:g}); "
                        "sort the file by user and time or set ordered: false")


def integer_ids(s: pd.Series) -> pd.Series:
    """Text ids that are all plain integers (no leading zeros, no NaN) become int64; others stay text."""
    if s.isna().any() or not s.str.fullmatch(r"-?(?:0|[1-9][0-9]{0,17})").all():
        return s
    return s.astype(np.int64)


def line_numbers(path: Path, n_rows: int, header: bool) -> np.ndarray:
    """The 1-based file line of each data row, allowing for the blank lines the reader skips."""
    plain = np.arange(n_rows, dtype=np.int64) + (2 if header else 1)
    data = path.read_bytes()
    if not re.search(rb"(?:^|\n)[ \t\r]*(?:\n|$)", data.removesuffix(b"\n")):
        return plain  # no blank lines: row r is line r + 1 (+1 for the header)
    nonblank = np.array([i for i, line in enumerate(data.split(b"\n"), 1) if line.strip()], dtype=np.int64)
    nonblank = nonblank[1:] if header else nonblank
    return nonblank if len(nonblank) == n_rows else plain  # quoted newlines: fall back to the plain count


def build(df: pd.DataFrame, lines: np.ndarray, where: str, name: str, time_unit: str, time_format: str | None,
          ordered: bool, meta: dict[str, Any], unit: str = "line", filters: dict[str, Any] | None = None) -> Dataset:
    """Checks + from_events for a frame with our column names; `lines[r]` is row r's line (or `unit`) in the file."""
    if len(df) == 0:
        raise DataError(f"{where}: the file has no data rows; point path at a file with events")
    for col in ("user", "item"):
        bad = df[col].isna().to_numpy()
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise DataError(f"{where}: {unit} {lines[r]}: {col} id is empty/NaN ({int(bad.sum())} such rows); "
                            "drop or fill such rows before loading")
        if pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col]):
            neg = (df[col] < 0).to_numpy()
            if neg.any():
                r = int(np.flatnonzero(neg)[0])
                raise DataError(f"{where}: {unit} {lines[r]}: negative {col} id {_show(df[col].iloc[r])} "
                                f"({int(neg.sum())} such rows); ids must be >= 0: fix or drop such rows")
    _parse_times(df, time_unit, time_format, lines, where, unit)
    _numeric_value(df, lines, where, unit)
    if ordered:
        _check_order(df, lines, where, unit)
    if filters and any(v is not None for v in filters.values()):
        df, lines, removed = filter_events(df, lines, time_unit=time_unit, where=where, **filters)
        meta = dict(meta, filters={k: v for k, v in filters.items() if v is not None}, filtered_out=removed)
    return from_events(name, df, time_unit, meta=dict(meta, ordered=ordered), where=where, lines=lines)


_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _parse_error(p: Path, e: Exception, sep: str, header: bool) -> DataError:
    """pandas' tokenizer error as one line that keeps what matters: the line number, the field counts, the line."""
    m = _FIELDS.search(str(e))
    if m:
        want, line, got = (int(g) for g in m.groups())
        first = "the header" if header else "the first line"
        return DataError(f"{p}: line {line}: expected {want} fields separated by {sep!r} (as in {first}), got {got}: "
                         f"{shown(line_text(p, line))!r}; fix or delete the line, or check sep (a separator inside "
                         "a field needs quotes)")
    flat = " ".join(str(e).split())
    return DataError(f"{p}: cannot parse as CSV with sep={sep!r} ({flat}); check sep and the line it names")


def load_csv(path: str | None = None, columns: dict | None = DEFAULT_COLUMNS, time_unit: str = "s",
             time_format: str | None = None, sep: str = ",", header: bool = True, features: list | tuple | None = (),
             ordered: bool = False, **filters: Any) -> Dataset:
    p = _check_path(path, "csv")
    where = str(p)
    mapping = _mapping(columns, where, header)
    cut = cut_last_line(p, sep, 1 if header else 0)
    if cut is not None:
        raise cut
    try:
        ids = [mapping[k] for k in ("user", "item") if k in mapping]  # read as text: keeps ids like "0132793040"
        raw = pd.read_csv(p, sep=sep, header=0 if header else None, engine="python" if len(sep) > 1 else "c",
                          dtype={c: str for c in ids})
    except pd.errors.EmptyDataError:
        raise DataError(f"{where}: the file is empty; point path at a file with a header line and events") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise _parse_error(p, e, sep, header) from None
    if not header:
        raw.columns = list(range(raw.shape[1]))
    lines = line_numbers(p, len(raw), header)
    # pandas takes the surplus fields of a first data line longer than the header as an index (a RangeIndex too, from
    # ids such as 1, 3, 5) and shifts every column: refuse it
    if not raw.index.equals(pd.RangeIndex(len(raw))):
        got = raw.shape[1] + raw.index.nlevels
        raise DataError(f"{where}: line {lines[0]}: expected {raw.shape[1]} fields separated by {sep!r} (as in the "
                        f"header), got {got}; fix or delete the line, or check sep (a separator inside a field needs "
                        "quotes)")
    for c in ids:
        if c in raw.columns:
            raw[c] = integer_ids(raw[c])
    df = _select(raw, mapping, features or [], where, header)
    meta = {"source": str(p), "licence": LICENCE, "checksum": sha256_file(p), "format": "csv"}
    return build(df, lines, where, p.stem, time_unit, time_format, ordered, meta, filters=filters)


def load_parquet(path: str | None = None, columns: dict | None = DEFAULT_COLUMNS, time_unit: str = "s",
                 time_format: str | None = None, features: list | tuple | None = (), ordered: bool = False,
                 **filters: Any) -> Dataset:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = _check_path(path, "parquet")
    where = str(p)
    mapping = _mapping(columns, where, header=True)
    try:
        names = pq.read_schema(p).names
    except (pa.ArrowException, OSError) as e:  # a non-parquet file: ArrowInvalid, or OSError from its footer
        raise DataError(f"{where}: not a readable parquet file ({e}); point path at a parquet file or use "
                        "the csv dataset") from None
    wanted = list(dict.fromkeys([*mapping.values(), *map(str, features or [])]))
    for key, col in [*mapping.items(), *[("features", str(f)) for f in features or []]]:
        if col not in names:
            raise _missing(where, key, col, names, header=True)
    raw = pd.read_parquet(p, columns=wanted)
    if len(raw) == 0:
        raise DataError(f"{where}: the file is empty (no rows); point path at a file with events")
    df = _select(raw, mapping, features or [], where, header=True)
    lines = np.arange(1, len(df) + 1, dtype=np.int64)  # parquet has rows, not lines: 1-based row numbers
    meta = {"source": str(p), "licence": LICENCE, "checksum": sha256_file(p), "format": "parquet"}
    return build(df, lines, where, p.stem, time_unit, time_format, ordered, meta, unit="row", filters=filters)


_COMMON = (
    Param("path", "str", None, "the event-log file (required)"),
    Param("columns", "dict", dict(DEFAULT_COLUMNS),
          "our name (user, item, time, value, event) -> your column; unmapped user/item/time default to their names"),
    Param("time_unit", "str", "s", "unit of the times (and of parsed text times)", choices=tuple(TIME_UNITS)),
    Param("time_format", "str", None, "parse text times with this strftime format (or 'ISO8601')", nullable=True),
)
_TAIL = (
    Param("features", "list", [], "extra columns to keep as event features"),
    Param("ordered", "bool", False, "the file's row order is the sequence order; time may not go backwards per user"),
)
CSV_PARAMS = _COMMON + (
    Param("sep", "str", ",", "field separator"),
    Param("header", "bool", True, "the first line names the columns; if false, columns gives 0-based positions"),
) + _TAIL
CSV_PARAMS += filter_params()
PARQUET_PARAMS = _COMMON + _TAIL + filter_params()


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="csv", factory=load_csv, params=CSV_PARAMS,
                         description="any event log in a delimited text file, with a column mapping"))
    register(DatasetSpec(name="parquet", factory=load_parquet, params=PARQUET_PARAMS,
                         description="any event log in a parquet file, with a column mapping"))
