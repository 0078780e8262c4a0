"""What a split produces: training events plus evaluation sets of user-states and targets.

A *user-state* x is (user, cut time, history = that user's events before the cut, in time
order). Item recommendation ranks items per state; user targeting ranks states per item.
Split plugins build these with `states_from_events`, which guarantees that no history
contains an event at or after its own cut (the leakage rule).

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from .data import Dataset, Interactions
from .errors import DataError


def csr_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranges [lo[r], hi[r]) of a flat array as CSR: (ptr with ptr[r+1] - ptr[r] = hi[r] - lo[r], the flat
    positions of every range in order). Vectorised: one repeat + arange, no loop over ranges."""
    lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
    counts = hi - lo
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return ptr, np.repeat(lo - ptr[:-1], counts) + np.arange(ptr[-1])


@dataclass(frozen=True, eq=False)
class UserStates:
    """States: `user[s]`, `time[s]` (the cut), history of state s = hist_item[hist_ptr[s]:hist_ptr[s+1]]."""

    user: np.ndarray
    time: np.ndarray
    hist_ptr: np.ndarray
    hist_item: np.ndarray
    hist_time: np.ndarray

    def __len__(self) -> int:
        return len(self.user)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.hist_ptr)

    def history(self, s: int) -> np.ndarray:
        return self.hist_item[self.hist_ptr[s]:self.hist_ptr[s + 1]]

    def take(self, rows: np.ndarray) -> "UserStates":
        """The states in `rows` (in that order), histories included; vectorised."""
        rows = np.asarray(rows, dtype=np.int64)
        ptr = np.asarray(self.hist_ptr)
        new_ptr, idx = csr_ranges(ptr[rows], ptr[rows + 1])
        return UserStates(user=np.asarray(self.user)[rows], time=np.asarray(self.time)[rows], hist_ptr=new_ptr,
                          hist_item=np.asarray(self.hist_item)[idx], hist_time=np.asarray(self.hist_time)[idx])

    def history_matrix(self, n_items: int) -> sp.csr_matrix:
        """states x items counts of the items in each history."""
        data = np.ones(len(self.hist_item), dtype=np.float32)
        m = sp.csr_matrix((data, self.hist_item, self.hist_ptr), shape=(len(self), n_items))
        m.sum_duplicates()
        return m


@dataclass(eq=False)
class EvalSet:
    """Evaluation states, their targets (states x items, binary) and the pairs to exclude from
    rankings (by default the items in each state's history)."""

    states: UserStates
    targets: sp.csr_matrix
    exclude: sp.csr_matrix | None = None
    name: str = "test"
    window_events: np.ndarray | None = None
    """Per state, the number of events in its target window, repeats counted (the targets are binary): RIM's ΔN
    (Eqs. 3, 6), which RNN-HP regresses on. Set by `states_from_events`; None where a split builds targets otherwise."""

    def __post_init__(self):
        self.targets = sp.csr_matrix(self.targets, dtype=np.float32)
        self.targets.data[:] = 1.0
        self.targets.sum_duplicates()
        self.targets.data[:] = 1.0

    @property
    def n_states(self) -> int:
        return len(self.states)

    def remaining_targets(self, exclude_seen: bool = True) -> sp.csr_matrix:
        """The targets less the excluded pairs (with `exclude_seen`): a pair that cannot be recommended is not a
        target either."""
        if not exclude_seen or self.exclude is None or not self.exclude.nnz:
            return self.targets
        targets = (self.targets - self.targets.multiply(self.exclude > 0)).tocsr()
        targets.eliminate_zeros()
        return targets


@dataclass(eq=False)
class SplitData:
    """Training events, the test set and optional validation / calibration sets. Splits that yield
    impressions (task ctr) also set `train_impressions` / `test_impressions` (`harness.ctr.ImpressionRows`);
    the `funnel` split sets `train_funnel` / `test_funnel` (`harness.funnel.FunnelRows`: the training and the
    test requests' spaces; the test's serve only the truth's propensity metrics)."""

    train: Interactions
    test: EvalSet
    valid: EvalSet | None = None
    calibration: EvalSet | None = None
    info: dict[str, Any] = field(default_factory=dict)
    train_impressions: Any = None
    setback_train: Interactions | None = None
    """The training events of the models that learn from the calibration window (`ModelSpec.set_back`) when the
    split sets only them back (RIM: RNN-HP and GCMC(*) train before T', the others on everything before T).
    None: every model trains on `train`."""
    test_impressions: Any = None
    train_funnel: Any = None
    test_funnel: Any = None

    def training_events(self, set_back: bool) -> Interactions:
        """What a model fits on: `setback_train` for a model that learns from the calibration window (where the
        split sets such models back), else `train`."""
        return self.setback_train if set_back and self.setback_train is not None else self.train

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items


def states_from_events(events: Interactions, users: np.ndarray, cuts: np.ndarray,
                       window_end: np.ndarray | None = None, name: str = "test",
                       history_events: Interactions | None = None) -> EvalSet:
    """One state per (users[s], cuts[s]): history = events of that user with time < cut;
    targets = items of that user with cut <= time < window_end[s] (if window_end is given).

    `history_events` (default `events`) is where histories come from; targets always come
    from `events`. Vectorised with searchsorted over (user, time)-sorted events.
    """
    users = np.asarray(users, dtype=np.int64)
    cuts = np.asarray(cuts, dtype=np.float64)
    hist_src = events if history_events is None else history_events
    hist_ptr, hist_idx = _window_index(hist_src, users, np.full(len(users), -np.inf), cuts)
    ordered = hist_src.order
    rows = ordered[hist_idx]
    states = UserStates(user=users, time=cuts, hist_ptr=hist_ptr,
                        hist_item=hist_src.item[rows], hist_time=hist_src.time[rows])
    assert not (states.hist_time >= np.repeat(cuts, np.diff(hist_ptr))).any(), "history leaks past its cut"
    if window_end is None:
        targets = sp.csr_matrix((len(users), events.n_items), dtype=np.float32)
    else:
        t_ptr, t_idx = _window_index(events, users, cuts, np.asarray(window_end, dtype=np.float64))
        items = events.item[events.order[t_idx]]
        targets = sp.csr_matrix((np.ones(len(items), np.float32), items, t_ptr), shape=(len(users), events.n_items))
        return EvalSet(states=states, targets=targets, exclude=states.history_matrix(events.n_items), name=name,
                       window_events=np.diff(t_ptr).astype(np.int64))
    return EvalSet(states=states, targets=targets, exclude=states.history_matrix(events.n_items), name=name)


def concat_sets(sets: list[EvalSet], name: str) -> EvalSet:
    """Eval sets over the same item space stacked into one (states, targets, exclusions and window counts)."""
    st = [e.states for e in sets]
    offs = np.concatenate([[0], np.cumsum([len(s.hist_item) for s in st])])
    ptr = np.concatenate([[0]] + [s.hist_ptr[1:] + o for s, o in zip(st, offs[:-1], strict=False)]).astype(np.int64)
    states = UserStates(user=np.concatenate([s.user for s in st]), time=np.concatenate([s.time for s in st]),
                        hist_ptr=ptr, hist_item=np.concatenate([s.hist_item for s in st]),
                        hist_time=np.concatenate([s.hist_time for s in st]))
    counts = [e.window_events for e in sets]
    return EvalSet(states=states, targets=sp.vstack([e.targets for e in sets]).tocsr(),
                   exclude=sp.vstack([e.exclude for e in sets]).tocsr(), name=name,
                   window_events=None if any(c is None for c in counts) else np.concatenate(counts))


def _window_index(events: Interactions, users: np.ndarray, start: np.ndarray, end: np.ndarray):
    """For each query s, positions (into events.order) of user[s]'s events with start <= t < end.

    One global searchsorted over an exact int64 key (user, rank of time), no per-user loop.
    """
    order = events.order
    su, st = events.user[order], events.time[order]
    grid = np.unique(st)
    width = np.int64(len(grid) + 2)
    key = su * width + np.searchsorted(grid, st, side="left") + 1
    def query(t):  # rank of the first event time >= t, as a key within the user's block
        return users * width + np.searchsorted(grid, t, side="left") + 1
    lo = np.searchsorted(key, query(start), side="left")
    hi = np.maximum(np.searchsorted(key, query(end), side="left"), lo)
    return csr_ranges(lo, hi)


def require_nonempty(split: EvalSet, what: str) -> None:
    if split.n_states == 0 or split.targets.nnz == 0:
        raise DataError(f"{what}: the split left no test targets; widen the horizon, move the cut earlier "
                        "or use more data")


# ----------------------------------------------------------------------- helpers split plugins share

def time_bounds(x: Interactions, split: str) -> tuple[float, float]:
    """(first, last) event time; a DataError for an empty log."""
    if len(x) == 0:
        raise DataError(f"{split}: the dataset has no events; check the dataset's filters or files")
    return float(x.time.min()), float(x.time.max())


def window_end(start: float, length: float | None, t_max: float) -> float:
    """End of the window [start, start + length); +inf ("to the end, last event included") when the
    window reaches the last event or `length` is None."""
    if length is None or start + length >= t_max:
        return float("inf")
    return float(start + length)


def users_with_history(x: Interactions, cut: float, min_history: int = 1,
                       among: np.ndarray | None = None) -> np.ndarray:
    """Sorted users with at least `min_history` events before `cut` (optionally only those in `among`)."""
    counts = np.bincount(x.user[x.time < cut], minlength=x.n_users)
    users = np.flatnonzero(counts >= max(1, min_history))
    if among is not None:
        users = np.intersect1d(users, among)
    return users.astype(np.int64)


def summary(ev: EvalSet | None, prefix: str = "") -> dict:
    """n_states, n_target_pairs, n_states_without_target (and mean history length) of an eval set."""
    if ev is None:
        return {}
    n_t = np.diff(ev.targets.indptr)
    return {f"{prefix}n_states": int(ev.n_states), f"{prefix}n_target_pairs": int(ev.targets.nnz),
            f"{prefix}n_states_without_target": int((n_t == 0).sum()),
            f"{prefix}mean_history": float(ev.states.lengths.mean()) if ev.n_states else 0.0}


def fmt_time(t: float) -> str:
    return "end" if np.isinf(t) else f"{t:g}"


class Split:
    """Base class of split plugins: `split(dataset, seed) -> SplitData`. Build evaluation sets with
    `states_from_events` (it enforces the leakage rule) and say what the split provides besides train and test
    (valid, calibration, impressions) in its `SplitSpec.provides`."""

    def split(self, dataset: Dataset, seed: int) -> SplitData:
        raise NotImplementedError


COLD_ITEMS = ("rank", "exclude")
_COLD_EXCLUDE_CELLS = 1 << 27  # states x cold items above which leaving them out would need too large a mask


def treat_cold_items(split: SplitData, treatment: str) -> tuple[SplitData, dict[str, float]]:
    """Items without a training event ("cold": no model has learned anything about them) under the suite's
    `cold_items` setting. `rank`: they stay in every ranking and as targets. `exclude`: they leave every
    evaluation set (test, valid, calibration) as targets and as candidates (added to each state's excluded pairs),
    and the targets lost are counted. Both ways the counts are returned, to be recorded with the cell."""
    cold = split.train.item_counts == 0
    n_lost = int(split.test.targets[:, cold].nnz) if cold.any() else 0
    counts = {"cold_items": float(cold.sum()), "cold_test_targets": float(n_lost),
              "cold_test_targets_share": n_lost / max(split.test.targets.nnz, 1)}
    if treatment not in COLD_ITEMS:
        raise ValueError(f"cold_items must be one of {', '.join(COLD_ITEMS)}, got {treatment!r}")
    if treatment == "rank" or not cold.any():
        return split, counts
    cols = np.flatnonzero(cold)

    def without_cold(ev: EvalSet | None) -> EvalSet | None:
        if ev is None:
            return None
        n = ev.n_states
        if n * len(cols) > _COLD_EXCLUDE_CELLS:
            raise DataError(f"cold_items: exclude would mask {len(cols):,} cold items for each of {n:,} states of "
                            f"the {ev.name} set ({n * len(cols):,} pairs); use cold_items: rank, or a split whose "
                            "training covers the items")
        keep = sp.diags((~cold).astype(np.float32))
        mask = sp.csr_matrix((np.ones(n * len(cols), np.float32), np.tile(cols, n),
                              np.arange(0, n * len(cols) + 1, len(cols))), shape=ev.targets.shape)
        exclude = mask if ev.exclude is None else ((ev.exclude + mask) > 0).astype(np.float32).tocsr()
        targets = (ev.targets @ keep).tocsr()
        targets.eliminate_zeros()
        return EvalSet(states=ev.states, targets=targets, exclude=exclude, name=ev.name,
                       window_events=ev.window_events)

    counts["cold_test_targets_lost"] = float(n_lost)
    return replace(split, test=without_cold(split.test), valid=without_cold(split.valid),
                   calibration=without_cold(split.calibration)), counts
