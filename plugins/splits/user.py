"""Split `user`: hold out a random group of users and test them on a window after a common cut.

RIM's protocol on ML-1M / Yoochoose. Users with events are shuffled per seed; a fraction
`test_fraction` forms group B, the rest group A. The cut T is
- `median_span` (default): T = T_min + the median over users of (last - first event time), with
  T_min the data's first event time (as the RIM authors do);
- `last_horizon`: T = last event time - horizon.
Group B is tested on [T, T + horizon) (`horizon: null` = to the end of the data; a window that
reaches the last event includes it).

Training events: all of group A's events, plus group B's events BEFORE T. (RIM trains on
everything before the test window; group B's histories are therefore also training events, while
their window and everything after it never reach training.) Test states: group-B users with at
least `min_history` events before T, history = those events; targets = their items in the window.
States without a target are kept and counted (`n_states_without_target`).

`calibration: true` adds the authors' calibration set for RNN-HP / GCMC* / Online-Dual on a user split: the
same window [T, T + horizon) on group A's users (states at T, history before it) — "keep the same time but
change the user base to Group A" (RIM Section 5). Group A's window events are training events too, as in RIM.
"""
from __future__ import annotations

import numpy as np

from harness.plugin import (
    ConfigError,
    DataError,
    Dataset,
    Param,
    Split,
    SplitData,
    SplitSpec,
    fmt_time,
    hookimpl,
    require_nonempty,
    states_from_events,
    summary,
    time_bounds,
    users_with_history,
    window_end,
)


class UserSplit(Split):
    def __init__(self, test_fraction: float = 0.5, horizon: float | None = 7.0, cut: str = "median_span",
                 min_history: int = 1, calibration: bool = False):
        self.calibration = bool(calibration)
        if cut == "last_horizon" and horizon is None:
            raise ConfigError("user split: cut=last_horizon needs a horizon (days); set horizon or use cut=median_span")
        self.test_fraction, self.horizon = float(test_fraction), horizon
        self.cut, self.min_history = cut, int(min_history)

    def split(self, dataset: Dataset, seed: int) -> SplitData:
        x = dataset.interactions
        t_min, t_max = time_bounds(x, "user")
        h = None if self.horizon is None else float(self.horizon) * x.per_day
        active = np.flatnonzero(x.user_counts > 0)
        if len(active) < 2:
            raise DataError(f"user: needs at least 2 users with events to form two groups, found {len(active)}")

        # the cut
        first = np.full(x.n_users, np.inf)
        last = np.full(x.n_users, -np.inf)
        np.minimum.at(first, x.user, x.time)
        np.maximum.at(last, x.user, x.time)
        median_span = float(np.median(last[active] - first[active]))
        if self.cut == "median_span":
            T = t_min + median_span
            if T <= t_min:
                raise DataError("user: cut=median_span gives T = first event time (the median user spans no time), "
                                "so group B has no history; use cut=last_horizon")
        else:
            T = t_max - h
            if T <= t_min:
                raise DataError(f"user: cut=last_horizon with horizon={self.horizon:g} days puts T={T:g} at or before "
                                f"the first event (t={t_min:g}); shorten the horizon")
        if T > t_max:
            raise DataError(f"user: the cut T={T:g} is after the last event (t={t_max:g}); use cut=last_horizon")
        end = window_end(T, h, t_max)

        # the groups
        rng = np.random.default_rng(seed)
        n_b = int(round(self.test_fraction * len(active)))
        n_b = min(max(n_b, 1), len(active) - 1)
        group_b = np.sort(rng.permutation(active)[:n_b])
        in_b = np.zeros(x.n_users, dtype=bool)
        in_b[group_b] = True

        users = users_with_history(x, T, self.min_history, among=group_b)
        test = states_from_events(x, users, np.full(len(users), T), np.full(len(users), end), name="test")
        require_nonempty(test, f"user (test_fraction={self.test_fraction:g}, horizon={self.horizon}, cut={self.cut} "
                               f"-> T={T:g}, min_history={self.min_history})")

        train = x.subset(~in_b[x.user] | (x.time < T))
        calib = None
        if self.calibration:
            a_users = users_with_history(x, T, self.min_history, among=np.flatnonzero(~in_b & (x.user_counts > 0)))
            calib = states_from_events(x, a_users, np.full(len(a_users), T), np.full(len(a_users), end),
                                       name="calibration")
            require_nonempty(calib, "user (calibration: group A on the test window)")
        info = {"cut": T, "cut_rule": self.cut, "window_end": end,
                "window": f"[{T:g}, {fmt_time(end)})",
                "horizon_days": float("nan") if self.horizon is None else float(self.horizon),
                "median_span_days": median_span / x.per_day, "first_time": t_min, "last_time": t_max,
                "n_group_a": int(len(active) - n_b), "n_group_b": int(n_b), "n_train": len(train),
                "train": "group A: all events; group B: events before the cut"}
        info.update(summary(test))
        info.update(summary(calib, "calibration_"))
        return SplitData(train=train, test=test, info=info, calibration=calib)


@hookimpl
def register_splits(register):
    register(SplitSpec(
        name="user", factory=UserSplit, provides=("calibration",),
        provides_for=lambda p: ("calibration",) if p["calibration"] else (),
        description="hold out a random user group; their history before a common cut is input, the window after it "
                    "the target (RIM on ML-1M / Yoochoose)",
        params=(
            Param("test_fraction", "float", 0.5, "fraction of users in the held-out group B", low=1e-9, high=1.0),
            Param("horizon", "float", 7.0, "target window length in days (null: to the end of the data)",
                  low=1e-9, nullable=True),
            Param("cut", "str", "median_span", "median_span: T = first time + median user span; "
                  "last_horizon: T = last time - horizon", choices=("median_span", "last_horizon")),
            Param("min_history", "int", 1, "group-B users need this many events before the cut to be tested", low=1),
            Param("calibration", "bool", False, "add a calibration set: group A's users on the same window (RIM's "
                                                "calibration for *_hp and Online-Dual on user splits)"),
        )))
