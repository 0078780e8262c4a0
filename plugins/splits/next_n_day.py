"""Split `next_n_day`: UniMatch's pseudo-users (history before day t, items in [t, t + n)).

1. Users and items with fewer than `min_count` events are removed, repeatedly until every
   remaining user and item has at least `min_count` (a min_count-core; ids keep their numbering,
   removed ones simply have no events).
2. Test cuts t_k = last time - k * n days for k = 1..n_cuts (spaced n days apart, counted back from
   the end). Each cut yields one pseudo-user per user with history before t_k: state
   (user, t_k, events before t_k), targets = items in [t_k, t_k + n). The latest window reaches the
   last event and includes it. A user can appear once per cut.
3. Train = events before the earliest test cut t_K. Validation = the previous window: cut
   t_K - n, targets in [t_K - n, t_K) — these are the last training window, so use the validation
   set for early stopping / model selection, knowing its targets were trained on.
States without a target are kept and counted (`n_states_without_target`). `info["windows"]` spells
out the train / valid / test windows.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from harness.plugin import (
    DataError,
    Dataset,
    EvalSet,
    Interactions,
    Param,
    Split,
    SplitData,
    SplitSpec,
    UserStates,
    fmt_time,
    hookimpl,
    require_nonempty,
    states_from_events,
    summary,
    time_bounds,
    users_with_history,
    window_end,
)


def min_count_core(x: Interactions, min_count: int) -> Interactions:
    """Drop users and items with fewer than min_count events until none is left (ids unchanged)."""
    keep = np.ones(len(x), dtype=bool)
    while min_count > 1:
        uc = np.bincount(x.user[keep], minlength=x.n_users)
        ic = np.bincount(x.item[keep], minlength=x.n_items)
        bad = keep & ((uc[x.user] < min_count) | (ic[x.item] < min_count))
        if not bad.any():
            break
        keep &= ~bad
    return x if keep.all() else x.subset(keep)


def _concat(sets: list[EvalSet], name: str) -> EvalSet:
    """Stack eval sets (same item space) into one."""
    st = [e.states for e in sets]
    offs = np.concatenate([[0], np.cumsum([len(s.hist_item) for s in st])])
    ptr = np.concatenate([[0]] + [s.hist_ptr[1:] + o for s, o in zip(st, offs[:-1], strict=False)]).astype(np.int64)
    states = UserStates(user=np.concatenate([s.user for s in st]), time=np.concatenate([s.time for s in st]),
                        hist_ptr=ptr, hist_item=np.concatenate([s.hist_item for s in st]),
                        hist_time=np.concatenate([s.hist_time for s in st]))
    return EvalSet(states=states, targets=sp.vstack([e.targets for e in sets]).tocsr(),
                   exclude=sp.vstack([e.exclude for e in sets]).tocsr(), name=name)


class NextNDaySplit(Split):
    def __init__(self, n: float = 30.0, n_cuts: int = 1, min_count: int = 3):
        self.n, self.n_cuts, self.min_count = float(n), int(n_cuts), int(min_count)

    def split(self, dataset: Dataset, seed: int) -> SplitData:
        raw = dataset.interactions
        time_bounds(raw, "next_n_day")
        x = min_count_core(raw, self.min_count)
        if len(x) == 0:
            raise DataError(f"next_n_day: min_count={self.min_count} removed every event (no user and item both "
                            f"have {self.min_count}+ events); lower min_count")
        t_min, t_max = time_bounds(x, "next_n_day")
        w = self.n * x.per_day
        cuts = t_max - w * np.arange(1, self.n_cuts + 1)  # latest first
        earliest = float(cuts[-1])
        if earliest <= t_min:
            raise DataError(f"next_n_day: n_cuts={self.n_cuts} windows of n={self.n:g} days "
                            f"reach back to {earliest:g}, "
                            f"at or before the first event (t={t_min:g}), leaving nothing to train on; "
                            "lower n or n_cuts")
        parts = []
        for t in cuts[::-1]:  # earliest cut first
            users = users_with_history(x, t)
            parts.append(states_from_events(x, users, np.full(len(users), t),
                                            np.full(len(users), window_end(t, w, t_max)), name="test"))
        test = parts[0] if len(parts) == 1 else _concat(parts, "test")
        require_nonempty(test, f"next_n_day (n={self.n:g} days, n_cuts={self.n_cuts})")

        train = x.subset(x.time < earliest)
        windows = [f"train: [{t_min:g}, {earliest:g})"]
        valid = None
        tv = earliest - w
        if tv > t_min:
            vu = users_with_history(x, tv)
            valid = states_from_events(x, vu, np.full(len(vu), tv), np.full(len(vu), earliest), name="valid")
            if valid.targets.nnz == 0:
                valid = None
            else:
                windows.append(f"valid: [{tv:g}, {earliest:g})")
        windows += [f"test: [{t:g}, {fmt_time(window_end(t, w, t_max))})" for t in cuts[::-1]]
        info = {"windows": "; ".join(windows), "test_cuts": ",".join(f"{t:g}" for t in cuts[::-1]),
                "cut": earliest, "last_cut": float(cuts[0]), "n_days": self.n, "n_cuts": self.n_cuts,
                "valid_cut": tv if valid is not None else float("nan"),
                "n_events_after_min_count": len(x), "n_events_removed_by_min_count": len(raw) - len(x),
                "n_train": len(train)}
        info.update(summary(test))
        info.update(summary(valid, "valid_"))
        return SplitData(train=train, test=test, valid=valid, info=info)


@hookimpl
def register_splits(register):
    register(SplitSpec(
        name="next_n_day", factory=NextNDaySplit, provides=("valid",),
        description="UniMatch pseudo-users: (history before day t, items in [t, t+n)) at the last n_cuts cuts",
        params=(
            Param("n", "float", 30.0, "window length in days", low=1e-9),
            Param("n_cuts", "int", 1, "number of test cuts, n days apart, counted back from the end", low=1),
            Param("min_count", "int", 3, "drop users/items with fewer events (repeatedly) before splitting", low=1),
        )))
