"""Split `last_fraction`: per user, the last share of their events (in time) is the test target.

For every user with at least `min_events` events, ordered by time: the last m = max(1, floor(fraction * n)) of
their n events are held out. The user's cut is the time of the first held-out event; the test state is
(user, cut, history = their events before the cut) and its targets are their items at or after the cut.
With `valid: true` the m events before those are held out the same way as a validation target (cut at the
first of them, window up to the test cut), and the test history still contains them (observed at test time).
Training: each tested user's events before their own first cut, and every event of the other users (fewer than
`min_events` events, or all of them at one time, so that no history is left).

It cannot leak a user's future into their history or into training: the states are built with
`states_from_events`, which checks that no history event is at or after its cut, and training stops at the
user's earliest cut. Events that tie with a cut in time fall on the target side, so a held-out event never
trains. The cuts are per user, though: one user's training events may be later than another user's cut (as in
every leave-last-out protocol); use the built-in `temporal` split where a global cut matters.
"""
from __future__ import annotations

import numpy as np

from harness.plugin import (
    DataError,
    Dataset,
    Param,
    Split,
    SplitData,
    SplitSpec,
    hookimpl,
    require_nonempty,
    states_from_events,
    summary,
    time_bounds,
)


class LastFraction(Split):
    def __init__(self, fraction: float = 0.2, min_events: int = 5, valid: bool = False):
        self.fraction, self.min_events, self.valid = float(fraction), int(min_events), bool(valid)

    def split(self, dataset: Dataset, seed: int) -> SplitData:
        x = dataset.interactions
        time_bounds(x, "last_fraction")
        counts = x.user_counts
        users = np.flatnonzero(counts >= self.min_events).astype(np.int64)
        if len(users) == 0:
            raise DataError(f"last_fraction: no user has at least min_events={self.min_events} events (most active "
                            f"user: {int(counts.max())}); lower min_events or use a denser dataset")
        n = counts[users]
        held = np.maximum(1, np.floor(self.fraction * n)).astype(np.int64)
        start = np.concatenate([[0], np.cumsum(counts)])[users]  # each user's block in x.order (time-sorted)
        sorted_time = x.time[x.order]
        first_time = sorted_time[start]
        test_cut = sorted_time[start + n - held]
        train_cut = test_cut
        info: dict = {"fraction": self.fraction, "min_events": self.min_events}

        valid = None
        if self.valid:
            valid_cut = sorted_time[start + n - 2 * held]
            ok = (valid_cut > first_time) & (valid_cut < test_cut)  # a history, and a window that is not empty
            valid = states_from_events(x, users[ok], valid_cut[ok], test_cut[ok], name="valid")
            train_cut = np.where(ok, valid_cut, test_cut)
            info.update(summary(valid, "valid_"))

        tested = test_cut > first_time  # a user whose events all share one time has no history: train-only
        test = states_from_events(x, users[tested], test_cut[tested], np.full(int(tested.sum()), np.inf))
        require_nonempty(test, f"last_fraction (fraction={self.fraction:g}, min_events={self.min_events})")

        cut_of_user = np.full(x.n_users, np.inf)
        cut_of_user[users[tested]] = train_cut[tested]
        train = x.subset(x.time < cut_of_user[x.user])
        info.update({"n_train": len(train), "n_users_tested": int(tested.sum()),
                     "n_users_train_only": int(((counts > 0) & (counts < self.min_events)).sum())})
        info.update(summary(test))
        return SplitData(train=train, test=test, valid=valid, info=info)


@hookimpl
def register_splits(register):
    register(SplitSpec(
        name="last_fraction", factory=LastFraction, provides=("valid",),
        provides_for=lambda p: ("valid",) if p["valid"] else (),
        description="per user: the last share of their events in time is the test target, the rest trains "
                    "(example plugin)",
        params=(
            Param("fraction", "float", 0.2, "share of each user's events held out (at least one)", low=1e-9,
                  high=0.5),
            Param("min_events", "int", 5, "users with fewer events only train (no state)", low=3),
            Param("valid", "bool", False, "hold out the share before the test share as a validation target"),
        )))
