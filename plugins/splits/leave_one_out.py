"""Split `leave_one_out`: each user's last event is the test target, the second-last the validation
target (SASRec's convention).

Events are ordered per user by time, then by original row order (`Interactions.order`), so ties in
time are broken by the row order of the log. For every user with at least `min_events` events:
- train: all their events except the last two;
- valid state: history = events before the second-last, target = the second-last item;
- test state: history = events up to and including the second-last, target = the last item.
Users with fewer events contribute all of them to training and get no state.

The states are built directly (not with `states_from_events`, which cuts by time and cannot
separate tied events). A state's time is the time of its target event, or, when the target ties
with the state's last history event, the next float after that time, so that no history event is
at or after its state's cut (the leakage rule); the target event itself is never in the history.
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
    csr_ranges,
    hookimpl,
    require_nonempty,
    summary,
    time_bounds,
)


def _loo_set(x: Interactions, users: np.ndarray, starts: np.ndarray, target_pos: np.ndarray, name: str) -> EvalSet:
    """States for `users`: history = sorted positions [starts, target_pos), target = position target_pos
    (positions index `x.order`)."""
    order = x.order
    ptr, pos = csr_ranges(starts, target_pos)
    lens = np.diff(ptr)
    rows = order[pos]
    hist_item, hist_time = x.item[rows], x.time[rows]
    target_rows = order[target_pos]
    t_time = x.time[target_rows]
    last_hist = np.full(len(users), -np.inf)
    has = lens > 0
    last_hist[has] = hist_time[ptr[1:][has] - 1]
    cut = np.where(t_time > last_hist, t_time, np.nextafter(last_hist, np.inf))
    states = UserStates(user=users.astype(np.int64), time=cut, hist_ptr=ptr, hist_item=hist_item, hist_time=hist_time)
    assert not (hist_time >= np.repeat(cut, lens)).any(), "history leaks past its cut"
    n = len(users)
    targets = sp.csr_matrix((np.ones(n, np.float32), x.item[target_rows], np.arange(n + 1)), shape=(n, x.n_items))
    return EvalSet(states=states, targets=targets, exclude=states.history_matrix(x.n_items), name=name)


class LeaveOneOutSplit(Split):
    def __init__(self, min_events: int = 3):
        self.min_events = int(min_events)

    def split(self, dataset: Dataset, seed: int) -> SplitData:
        x = dataset.interactions
        time_bounds(x, "leave_one_out")
        counts = x.user_counts
        users = np.flatnonzero(counts >= self.min_events).astype(np.int64)
        if len(users) == 0:
            raise DataError(f"leave_one_out: no user has at least min_events={self.min_events} events "
                            f"(most active user: {int(counts.max())}); use a denser dataset or a temporal split")
        user_start = np.concatenate([[0], np.cumsum(counts)])  # block of each user in x.order
        starts, ends = user_start[users], user_start[users + 1]
        test = _loo_set(x, users, starts, ends - 1, "test")
        valid = _loo_set(x, users, starts, ends - 2, "valid")
        require_nonempty(test, f"leave_one_out (min_events={self.min_events})")

        held = np.zeros(len(x), dtype=bool)
        held[x.order[np.concatenate([ends - 1, ends - 2])]] = True
        train = x.subset(~held)
        info = {"n_train": len(train), "n_users_tested": int(len(users)),
                "n_users_train_only": int(((counts > 0) & (counts < self.min_events)).sum()),
                "min_events": self.min_events}
        info.update(summary(test))
        info.update(summary(valid, "valid_"))
        return SplitData(train=train, test=test, valid=valid, info=info)


@hookimpl
def register_splits(register):
    register(SplitSpec(
        name="leave_one_out", factory=LeaveOneOutSplit, provides=("valid",),
        description="per user: last event = test target, second-last = validation target, rest = train (SASRec)",
        params=(Param("min_events", "int", 3, "users with fewer events are train-only (no state)", low=3),)))
