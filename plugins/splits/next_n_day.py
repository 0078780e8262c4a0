"""Split `next_n_day`: UniMatch's pseudo-users (history before day t, items in [t, t + n)).

1. Users and items with fewer than `min_count` events are removed, repeatedly until every remaining user and item
   has at least `min_count` (a min_count-core; ids keep their numbering, removed ones simply have no events).
   `min_count_scope: part` (the default, UniMatch Sec. IV-A: "in the train/validation/test data, we filter out the
   users/items who interact with less than 3 items/users") takes the core of each part on its own: the training
   events, and each validation and test window's events (the targets); histories are every event before the cut,
   as observed. So activity in the test window never decides who stays in training. `all` takes one core over the
   whole log first (the earlier behaviour: test-window events count towards a training user's total).
2. Test cuts t_k = last time - k * n days for k = 1..n_cuts (spaced n days apart, counted back from
   the end). Each cut yields one pseudo-user per user with history before t_k: state
   (user, t_k, events before t_k), targets = items in [t_k, t_k + n). The latest window reaches the
   last event and includes it. A user can appear once per cut.
3. Train = events before the earliest test cut t_K. Validation = the previous window: cut
   t_K - n, targets in [t_K - n, t_K) — these are the last training window (the paper's protocol: train
   (0, T-1], validation (T-2, T-1]), so use the validation set for early stopping knowing its targets were
   trained on (`info["valid_targets_in_train"]`: a `tune:` block refuses such a split). `held_out_valid: true`
   ends training at t_K - n instead, so the validation window is held out (what a study needs to choose on).
States without a target are kept and counted (`n_states_without_target`). `info["windows"]` spells
out the train / valid / test windows.
"""
from __future__ import annotations

import numpy as np

from harness.plugin import (
    ConfigError,
    DataError,
    Dataset,
    EvalSet,
    Interactions,
    Param,
    Split,
    SplitData,
    SplitSpec,
    concat_sets,
    fmt_time,
    hookimpl,
    require_nonempty,
    states_from_events,
    summary,
    time_bounds,
    users_with_history,
    window_end,
)

SCOPES = ("part", "all")


def min_count_core(x: Interactions, min_count: int) -> Interactions:
    """Drop users and items with fewer than min_count events until none is left (ids unchanged)."""
    keep = core_mask(x, np.ones(len(x), dtype=bool), min_count)
    return x if keep.all() else x.subset(keep)


def core_mask(x: Interactions, rows: np.ndarray, min_count: int) -> np.ndarray:
    """The rows of `rows` (a mask over x) left by the min_count-core of those rows alone."""
    keep = rows.copy()
    while min_count > 1:
        uc = np.bincount(x.user[keep], minlength=x.n_users)
        ic = np.bincount(x.item[keep], minlength=x.n_items)
        bad = keep & ((uc[x.user] < min_count) | (ic[x.item] < min_count))
        if not bad.any():
            break
        keep &= ~bad
    return keep


class NextNDaySplit(Split):
    def __init__(self, n: float = 30.0, n_cuts: int = 1, min_count: int = 3, min_count_scope: str = "part",
                 held_out_valid: bool = False):
        self.n, self.n_cuts, self.min_count = float(n), int(n_cuts), int(min_count)
        self.held_out_valid = bool(held_out_valid)
        if min_count_scope not in SCOPES:
            raise ConfigError(f"next_n_day: min_count_scope must be one of {', '.join(SCOPES)}, got "
                              f"{min_count_scope!r}")
        self.scope = min_count_scope

    def split(self, dataset: Dataset, seed: int) -> SplitData:
        raw = dataset.interactions
        time_bounds(raw, "next_n_day")
        if self.scope == "part":
            return self._split_parts(raw)
        x = min_count_core(raw, self.min_count)
        if len(x) == 0:
            raise DataError(f"next_n_day: min_count={self.min_count} removed every event (no user and item both "
                            f"have {self.min_count}+ events); lower min_count")
        t_min, t_max = time_bounds(x, "next_n_day")
        w, cuts, earliest = self._cuts(t_min, t_max, x.per_day)
        parts = []
        for t in cuts[::-1]:  # earliest cut first
            users = users_with_history(x, t)
            parts.append(states_from_events(x, users, np.full(len(users), t),
                                            np.full(len(users), window_end(t, w, t_max)), name="test"))
        test = parts[0] if len(parts) == 1 else concat_sets(parts, "test")
        require_nonempty(test, f"next_n_day (n={self.n:g} days, n_cuts={self.n_cuts})")

        tv = earliest - w
        train_end = self._train_end(earliest, tv, t_min)
        train = x.subset(x.time < train_end)
        windows = [f"train: [{t_min:g}, {train_end:g})"]
        valid = None
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
                "n_train": len(train), "train_end": train_end,
                "valid_targets_in_train": valid is not None and train_end > tv}
        info.update(summary(test))
        info.update(summary(valid, "valid_"))
        return SplitData(train=train, test=test, valid=valid, info=info)

    def _train_end(self, earliest: float, tv: float, t_min: float) -> float:
        """Where training stops: the earliest test cut, or the validation cut when the window is held out."""
        if not self.held_out_valid:
            return earliest
        if tv <= t_min:
            raise DataError(f"next_n_day: held_out_valid needs a validation window [{tv:g}, {earliest:g}) after the "
                            f"first event (t={t_min:g}), leaving something to train on; lower n or n_cuts")
        return tv

    def _cuts(self, t_min: float, t_max: float, per_day: float) -> tuple[float, np.ndarray, float]:
        """(window length, the test cuts latest first, the earliest cut), refusing cuts that leave no training."""
        w = self.n * per_day
        cuts = t_max - w * np.arange(1, self.n_cuts + 1)
        earliest = float(cuts[-1])
        if earliest <= t_min:
            raise DataError(f"next_n_day: n_cuts={self.n_cuts} windows of n={self.n:g} days "
                            f"reach back to {earliest:g}, at or before the first event (t={t_min:g}), leaving "
                            "nothing to train on; lower n or n_cuts")
        return w, cuts, earliest

    def _split_parts(self, raw: Interactions) -> SplitData:
        """min_count_scope part: the cuts from the whole log, then the core of the training events and of each
        window's events on their own; histories from every event before the cut."""
        t_min, t_max = time_bounds(raw, "next_n_day")
        w, cuts, earliest = self._cuts(t_min, t_max, raw.per_day)
        train_end = self._train_end(earliest, earliest - w, t_min)
        train_rows = core_mask(raw, raw.time < train_end, self.min_count)
        if not train_rows.any():
            raise DataError(f"next_n_day: min_count={self.min_count} removed every training event (no user and "
                            f"item both have {self.min_count}+ events before {train_end:g}); lower min_count")
        train = raw.subset(train_rows)

        kept_in_test: list[int] = []

        def window(t: float, end: float, name: str) -> EvalSet:
            rows = core_mask(raw, (raw.time >= t) & (raw.time < end), self.min_count)
            if name == "test":
                kept_in_test.append(int(rows.sum()))
            users = users_with_history(raw, t)
            return states_from_events(raw.subset(rows), users, np.full(len(users), t), np.full(len(users), end),
                                      name=name, history_events=raw)

        ends = [window_end(t, w, t_max) for t in cuts[::-1]]
        parts = [window(t, e, "test") for t, e in zip(cuts[::-1], ends, strict=True)]  # earliest cut first
        test = parts[0] if len(parts) == 1 else concat_sets(parts, "test")
        require_nonempty(test, f"next_n_day (n={self.n:g} days, n_cuts={self.n_cuts}, min_count={self.min_count} "
                               "within the test window)")
        windows = [f"train: [{t_min:g}, {train_end:g})"]
        tv = earliest - w
        valid = window(tv, earliest, "valid") if tv > t_min else None
        if valid is not None and valid.targets.nnz == 0:
            valid = None
        if valid is not None:
            windows.append(f"valid: [{tv:g}, {earliest:g})")
        windows += [f"test: [{t:g}, {fmt_time(e)})" for t, e in zip(cuts[::-1], ends, strict=True)]
        kept = len(train) + sum(kept_in_test)
        info = {"windows": "; ".join(windows), "test_cuts": ",".join(f"{t:g}" for t in cuts[::-1]),
                "cut": earliest, "last_cut": float(cuts[0]), "n_days": self.n, "n_cuts": self.n_cuts,
                "valid_cut": tv if valid is not None else float("nan"), "min_count_scope": "part",
                "n_events_after_min_count": kept,
                "n_events_removed_by_min_count": len(raw) - kept, "n_train": len(train), "train_end": train_end,
                "valid_targets_in_train": valid is not None and train_end > tv}
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
            Param("min_count_scope", "str", "part", "part: the min_count core of the training events and of each "
                  "window's on their own (UniMatch's); all: one core over the whole log, test window included",
                  choices=SCOPES),
            Param("held_out_valid", "bool", False, "end training at the validation cut, holding its window out (for "
                  "a tune: block); default: the paper's, the validation window is the last training window",
                  late=True),
        )))
