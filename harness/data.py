"""The data model: a columnar event log (`Interactions`) and a `Dataset` around it.

Indices are dense ints; raw ids live in the dataset's id maps. CSR matrices are derived on
demand and cached on the object. Datasets save to / load from a directory of parquet + json.
"""
from __future__ import annotations

import hashlib
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
        take = lambda a: None if a is None else a[mask_or_index]  # noqa: E731
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
    world); harness code only passes it through to tests and truth metrics.
    """

    name: str
    interactions: Interactions
    user_ids: np.ndarray
    item_ids: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None
    truth: Any = None

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
        (path / "meta.json").write_text(json.dumps(meta, indent=1, default=str))

    @classmethod
    def load(cls, path: Path) -> "Dataset":
        meta = json.loads((path / "meta.json").read_text())
        df = pd.read_parquet(path / "interactions.parquet")
        x = Interactions.from_frame(df, meta["n_users"], meta["n_items"], meta["time_unit"])
        opt = lambda f: pd.read_parquet(path / f) if (path / f).exists() else None  # noqa: E731
        return cls(name=meta["name"], interactions=x,
                   user_ids=pd.read_parquet(path / "users.parquet")["raw"].to_numpy(dtype=object),
                   item_ids=pd.read_parquet(path / "items.parquet")["raw"].to_numpy(dtype=object),
                   meta=meta, user_features=opt("user_features.parquet"), item_features=opt("item_features.parquet"))


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
