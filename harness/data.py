"""The data model: a columnar event log (`Interactions`) and a `Dataset` around it.

Indices are dense ints; raw ids live in the dataset's id maps. CSR matrices are derived on
demand and cached on the object. Datasets save to / load from a directory of parquet + json.

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import DataError

TIME_UNITS = {"s": 86400.0, "ms": 86400_000.0, "day": 1.0, "hour": 24.0}
"""Time units and how many of each make one day (splits express horizons in days)."""


@dataclass(frozen=True, eq=False)
class Interactions:
    """An event log: `user`, `item` (dense int64), `time` (float64, in `time_unit`),
    optional `value`, `event` (categorical strings) and extra feature columns."""

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    n_users: int
    n_items: int
    time_unit: str = "s"
    value: np.ndarray | None = None
    event: np.ndarray | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.user)
        for name in ("item", "time"):
            if len(getattr(self, name)) != n:
                raise DataError(f"Interactions: column {name!r} has {len(getattr(self, name))} rows, user has {n}")
        if self.time_unit not in TIME_UNITS:
            raise DataError(f"Interactions: unknown time unit {self.time_unit!r} (valid: {', '.join(TIME_UNITS)})")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def per_day(self) -> float:
        """How many time units make one day."""
        return TIME_UNITS[self.time_unit]

    def subset(self, mask_or_index: np.ndarray) -> "Interactions":
        """The events selected by a boolean mask or an index array (same id spaces)."""
        def take(a):
            return None if a is None else a[mask_or_index]

        return replace(self, user=self.user[mask_or_index], item=self.item[mask_or_index],
                       time=self.time[mask_or_index], value=take(self.value), event=take(self.event),
                       features={k: v[mask_or_index] for k, v in self.features.items()})

    @cached_property
    def order(self) -> np.ndarray:
        """Event order by (user, time, original position): each user's history in time order."""
        return np.lexsort((np.arange(len(self)), self.time, self.user))

    def csr(self) -> sp.csr_matrix:
        """users x items interaction counts (cached)."""
        return self._csr

    @cached_property
    def _csr(self) -> sp.csr_matrix:
        m = sp.csr_matrix((np.ones(len(self), dtype=np.float32), (self.user, self.item)),
                          shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        return m

    @cached_property
    def item_counts(self) -> np.ndarray:
        return np.bincount(self.item, minlength=self.n_items)

    @cached_property
    def user_counts(self) -> np.ndarray:
        return np.bincount(self.user, minlength=self.n_users)

    def to_frame(self) -> pd.DataFrame:
        cols: dict[str, Any] = {"user": self.user, "item": self.item, "time": self.time}
        if self.value is not None:
            cols["value"] = self.value
        if self.event is not None:
            cols["event"] = self.event
        cols.update(self.features)
        return pd.DataFrame(cols)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, n_users: int, n_items: int, time_unit: str) -> "Interactions":
        extra = [c for c in df.columns if c not in ("user", "item", "time", "value", "event")]
        return cls(user=df["user"].to_numpy(np.int64), item=df["item"].to_numpy(np.int64),
                   time=df["time"].to_numpy(np.float64), n_users=n_users, n_items=n_items, time_unit=time_unit,
                   value=df["value"].to_numpy() if "value" in df else None,
                   event=df["event"].to_numpy(dtype=object) if "event" in df else None,
                   features={c: df[c].to_numpy() for c in extra})


@dataclass
class Dataset:
    """Interactions + optional user/item feature tables + raw-id maps + metadata (+ truth).

    `truth` is set by datasets that know the process that generated them (the synthetic
    world); harness code only passes it through to tests and truth metrics. `impressions`
    (a `harness.ctr.ImpressionRows`) is set by datasets whose CTR rows come prebuilt, behaviour
    sequences included, instead of as an event log (DMR's preprocessed Alimama format).
    """

    name: str
    interactions: Interactions
    user_ids: np.ndarray
    item_ids: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None
    truth: Any = None
    impressions: Any = None

    @property
    def n_users(self) -> int:
        return self.interactions.n_users

    @property
    def n_items(self) -> int:
        return self.interactions.n_items

    @cached_property
    def fingerprint(self) -> str:
        """A content hash of the event log: candidates and caches are keyed by it."""
        h = hashlib.sha256()
        x = self.interactions
        for a in (x.user, x.item, x.time):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(f"{x.n_users},{x.n_items},{x.time_unit}".encode())
        return h.hexdigest()[:16]

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.interactions.to_frame().to_parquet(path / "interactions.parquet")
        pd.DataFrame({"raw": _raw_ids(self.user_ids)}).to_parquet(path / "users.parquet")
        pd.DataFrame({"raw": _raw_ids(self.item_ids)}).to_parquet(path / "items.parquet")
        if self.user_features is not None:
            self.user_features.to_parquet(path / "user_features.parquet")
        if self.item_features is not None:
            self.item_features.to_parquet(path / "item_features.parquet")
        meta = dict(self.meta, name=self.name, n_users=self.n_users, n_items=self.n_items,
                    time_unit=self.interactions.time_unit)
        if self.truth is not None:
            meta["truth_class"] = save_truth(self.truth, path / "truth.npz")
        (path / "meta.json").write_text(json.dumps(meta, indent=1, default=str))

    @classmethod
    def load(cls, path: Path) -> "Dataset":
        meta = json.loads((path / "meta.json").read_text())
        df = pd.read_parquet(path / "interactions.parquet")
        x = Interactions.from_frame(df, meta["n_users"], meta["n_items"], meta["time_unit"])
        def opt(f):
            return pd.read_parquet(path / f) if (path / f).exists() else None

        truth = load_truth(meta["truth_class"], path / "truth.npz") if meta.get("truth_class") else None
        return cls(name=meta["name"], interactions=x,
                   user_ids=pd.read_parquet(path / "users.parquet")["raw"].to_numpy(dtype=object),
                   item_ids=pd.read_parquet(path / "items.parquet")["raw"].to_numpy(dtype=object),
                   meta=meta, user_features=opt("user_features.parquet"), item_features=opt("item_features.parquet"),
                   truth=truth)


def can_save_truth(truth: Any) -> bool:
    """A truth the disk cache can hold: a dataclass whose fields are arrays, numbers, strings or None (its
    derived quantities are recomputed from them)."""
    if not dataclasses.is_dataclass(truth):
        return False
    return all(v is None or isinstance(v, (np.ndarray, int, float, str, bool, np.generic))
               for v in (getattr(truth, f.name) for f in dataclasses.fields(truth)))


def save_truth(truth: Any, path: Path) -> str:
    """Write a dataclass truth's fields to one .npz (None fields left out); returns 'module:Class' for load_truth."""
    arrays = {f.name: np.asarray(getattr(truth, f.name)) for f in dataclasses.fields(truth)
              if getattr(truth, f.name) is not None}
    np.savez(path, **arrays)
    cls = type(truth)
    return f"{cls.__module__}:{cls.__qualname__}"


def load_truth(class_path: str, path: Path) -> Any:
    """The truth saved by save_truth: its class imported by name (the dataset plugin's own), built from the
    fields (0-d arrays back to Python scalars)."""
    module, _, name = class_path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    with np.load(path, allow_pickle=False) as data:
        fields = {k: (data[k].item() if data[k].ndim == 0 else data[k]) for k in data.files}
    return cls(**fields)


def _raw_ids(ids: np.ndarray) -> pd.Series:
    """Raw ids as a parquet-storable column: integer ids stay integers (so they load back equal), others str."""
    s = pd.Series(np.asarray(ids, dtype=object) if len(ids) else np.asarray([], dtype=object))
    if len(s) and pd.api.types.infer_dtype(s, skipna=False) == "integer":
        return s.astype(np.int64)
    return s.astype(str)


def encode_ids(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes for raw ids, in sorted raw-id order: (codes, raw ids by code)."""
    codes, uniques = pd.factorize(raw, sort=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def from_events(name: str, df: pd.DataFrame, time_unit: str, meta: dict[str, Any] | None = None,
                where: str = "events", lines: np.ndarray | None = None) -> Dataset:
    """Build a Dataset from a frame with raw `user`, `item`, `time` (+ optional value/event/features).

    Checks the ids and times the split code relies on, naming the first bad row: `lines[r]` is the
    row's line number in the source file when given (messages then say "line N"), else "row r+1".
    """
    def at(row: int) -> str:
        return f"line {int(lines[row])}" if lines is not None else f"row {row + 1}"

    for col in ("user", "item", "time"):
        if col not in df.columns:
            raise DataError(f"{where}: missing column {col!r}; map it with columns: {{{col}: <your column>}}")
        bad = df[col].isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{where}: {at(row)}: {col} is empty/NaN ({int(bad.sum())} such rows); "
                            "drop or fill such rows before loading")
    for col in ("user", "item"):
        if pd.api.types.is_numeric_dtype(df[col]) and (df[col] < 0).any():
            row = int(np.flatnonzero((df[col] < 0).to_numpy())[0])
            raise DataError(f"{where}: {at(row)}: negative {col} id {df[col].iloc[row]}; ids must be >= 0 "
                            "(fix or drop such rows)")
    if not pd.api.types.is_numeric_dtype(df["time"]) or pd.api.types.is_bool_dtype(df["time"]):
        num = pd.to_numeric(df["time"], errors="coerce")
        bad = num.isna().to_numpy()
        row = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        raise DataError(f"{where}: {at(row)}: time {str(df['time'].iloc[row])!r} is not numeric; convert times to "
                        "numbers or give a time_format (e.g. '%Y-%m-%d %H:%M:%S')")
    _check_time_range(df["time"].to_numpy(np.float64), time_unit, where, at)
    user, user_ids = encode_ids(df["user"])
    item, item_ids = encode_ids(df["item"])
    extra = [c for c in df.columns if c not in ("user", "item", "time", "value", "event")]
    x = Interactions(user=user, item=item, time=df["time"].to_numpy(np.float64), n_users=len(user_ids),
                     n_items=len(item_ids), time_unit=time_unit,
                     value=df["value"].to_numpy() if "value" in df else None,
                     event=df["event"].astype(str).to_numpy(dtype=object) if "event" in df else None,
                     features={c: df[c].to_numpy() for c in extra})
    return Dataset(name=name, interactions=x, user_ids=user_ids, item_ids=item_ids,
                   meta=dict(meta or {}, time_unit=time_unit))


MAX_TIME_DAYS = 1e6
"""The furthest a time may lie from time 0, in days (about 2,700 years): a real log's unix times, or its days since
its own start, are far inside; 1e30, or milliseconds read as seconds, are not, and would make every split cut
meaningless (one event alone in the test window)."""


def _check_time_range(t: np.ndarray, time_unit: str, where: str, at) -> None:
    """Refuse an infinite or absurd time, naming its line: it would silently become the whole test window."""
    per_day = TIME_UNITS.get(time_unit, 1.0)
    days = np.abs(t) / per_day
    bad = ~(days <= MAX_TIME_DAYS)
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    value, n = t[row], int(bad.sum())
    rows = f"{n} such row{'s' if n > 1 else ''}"
    if not np.isfinite(value):
        raise DataError(f"{where}: {at(row)}: time {value} is not a finite number ({rows}); fix or drop such rows")
    hint = next((f"if the times are in {u}, set time_unit: {u}" for u, d in TIME_UNITS.items()
                 if d > per_day and days[row] * per_day / d <= MAX_TIME_DAYS), "fix or drop such rows")
    raise DataError(f"{where}: {at(row)}: time {value:g} (time_unit {time_unit!r}) is {days[row]:.3g} days from time "
                    f"0, beyond the {MAX_TIME_DAYS:g} days (about 2,700 years) any event log spans ({rows}); {hint}")


# ------------------------------------------------------------------------------------------------ event filters

FILTER_ORDER = ("event_types", "start", "end", "min_user_interactions", "min_item_interactions", "k_core",
                "max_history")
"""The order the filters apply in (each sees what the ones before it kept)."""


def filter_params():
    """The common filter parameters of file-backed dataset plugins (all off by default). Being parameters,
    they are part of the dataset's cache key."""
    from .schema import Param

    return (
        Param("event_types", "list", None, "keep only these event types (e.g. [buy]); default: all", nullable=True),
        Param("start", "any", None, "keep events at or after this time: an ISO date/time ('2014-04-03') or a "
                                    "number in the dataset's time unit", nullable=True),
        Param("end", "any", None, "keep events before this time (exclusive), same forms as start", nullable=True),
        Param("min_user_interactions", "int", None, "drop users with fewer events (one pass)", low=1, nullable=True),
        Param("min_item_interactions", "int", None, "drop items with fewer events (one pass)", low=1, nullable=True),
        Param("k_core", "int", None, "repeat dropping users and items with fewer than k events until none is left",
              low=1, nullable=True),
        Param("max_history", "int", None, "keep each user's last N events (by time, then file order)", low=1,
              nullable=True),
    )


def _time_bound(value: Any, name: str, time_unit: str, where: str) -> float:
    """A start/end bound in the dataset's time unit: numbers as they are, text/datetimes via pandas (UTC)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        ts = pd.Timestamp(value)
        if pd.isna(ts):
            raise ValueError
    except (ValueError, TypeError):
        raise DataError(f"{where}: {name}={value!r} is neither a number (in {time_unit}) nor an ISO date/time; "
                        f"write e.g. {name}: '2014-04-03' or {name}: '2014-04-03T12:00:00'") from None
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return (ts - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1) * TIME_UNITS[time_unit]


def filter_events(df: pd.DataFrame, lines: np.ndarray | None = None, *, time_unit: str = "s", where: str = "events",
                  has_time: bool = True, event_types: list | None = None, start: Any = None, end: Any = None,
                  min_user_interactions: int | None = None, min_item_interactions: int | None = None,
                  k_core: int | None = None, max_history: int | None = None
                  ) -> tuple[pd.DataFrame, np.ndarray | None, dict[str, Any]]:
    """Filter a frame of raw events (`user`, `item`, `time`, optional `event`) before dense re-indexing.

    Applied in FILTER_ORDER; counts are numbers of events (rows), not distinct items. Deterministic:
    rows keep their file order. Returns (frame, lines of the kept rows, {step: rows removed}); raises
    DataError when a filter does not apply to the data or leaves nothing.
    """
    n0 = len(df)
    keep = np.ones(n0, dtype=bool)
    removed: dict[str, Any] = {}

    def step(name: str, mask: np.ndarray) -> None:
        dropped = int((keep & ~mask).sum())
        keep[:] &= mask
        removed[name] = dropped
        if not keep.any():
            raise DataError(f"{where}: the filters leave no events after {name} ({n0} events before filtering; "
                            f"removed per step: {removed}); loosen {name}")

    if event_types is not None:
        if "event" not in df.columns:
            raise DataError(f"{where}: event_types={list(event_types)} given, but this dataset has no event types; "
                            "remove event_types")
        present = sorted(pd.unique(df["event"].astype(str)))
        unknown = [e for e in event_types if str(e) not in present]
        if unknown:
            raise DataError(f"{where}: event_types: {unknown} not among this dataset's event types {present}; "
                            "use those names")
        step("event_types", df["event"].astype(str).isin([str(e) for e in event_types]).to_numpy())
    for name, bound in (("start", start), ("end", end)):
        if bound is None:
            continue
        if not has_time:
            raise DataError(f"{where}: {name} given, but this dataset has no times; remove {name}")
        b = _time_bound(bound, name, time_unit, where)
        t = df["time"].to_numpy(np.float64)
        step(name, t >= b if name == "start" else t < b)
    u = pd.factorize(df["user"])[0]
    i = pd.factorize(df["item"])[0]
    if min_user_interactions is not None or min_item_interactions is not None:
        uc = np.bincount(u[keep], minlength=u.max() + 1)
        ic = np.bincount(i[keep], minlength=i.max() + 1)
        if min_user_interactions is not None:
            step("min_user_interactions", uc[u] >= min_user_interactions)
        if min_item_interactions is not None:
            step("min_item_interactions", ic[i] >= min_item_interactions)
    if k_core is not None:
        before, rounds = int(keep.sum()), 0
        while True:
            rounds += 1
            uc = np.bincount(u[keep], minlength=u.max() + 1)
            ic = np.bincount(i[keep], minlength=i.max() + 1)
            ok = (uc[u] >= k_core) & (ic[i] >= k_core)
            if (keep & ~ok).sum() == 0:
                break
            step("k_core", ok)
        removed["k_core"] = before - int(keep.sum())
        removed["k_core_rounds"] = rounds
    if max_history is not None:
        idx = np.flatnonzero(keep)
        order = idx[np.lexsort((idx, df["time"].to_numpy(np.float64)[idx], u[idx]))]
        uo = u[order]
        count = np.bincount(uo, minlength=u.max() + 1)
        first = np.r_[0, np.flatnonzero(uo[1:] != uo[:-1]) + 1]
        pos = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
        mask = np.zeros(n0, dtype=bool)
        mask[order[pos >= count[uo] - max_history]] = True
        step("max_history", mask)
    if keep.all():
        return df, lines, removed
    out = df.loc[keep].reset_index(drop=True)
    return out, (None if lines is None else lines[keep]), removed
