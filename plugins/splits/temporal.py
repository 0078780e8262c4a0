"""Split `temporal`: train on the events before a cut T, test on the window [T, T + horizon).

RIM's and UniMatch's next-period protocol. Every user with at least one event before T gets one
test state (user, cut T, history = their events before T); its targets are the items of their
events in [T, T + horizon). Users without an event in the window are KEPT as states without a
target: the evaluation leaves them out of the averages and reports how many there were
(`n_states_without_target` here, `n_without_target` in the metrics), so the numbers say how much
of the population the window covers.

Options:
- `cut` (absolute time in the data's unit); by default T = max_time - horizon, so the last
  `horizon` days are the target window. A window that reaches the last event includes it.
- `calibration` (days): RIM trains on the events before T' = T - calibration and uses [T', T) to
  calibrate; then train = events < T' and a `calibration` EvalSet (cut T', window [T', T)) is
  returned. Test histories still contain every event before T (they are observed at test time).
- `valid`: a validation EvalSet with cut T - horizon and window [T - horizon, T). Its targets are
  training events unless `calibration >= horizon` (then train stops at T - calibration and the
  validation window is held out too); use it for model selection / early stopping with that in mind.
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
    users_with_history,
    window_end,
)

# ------------------------------------------------------------------------------------------- the split

class TemporalSplit(Split):
    def __init__(self, horizon: float = 7.0, cut: float | None = None, calibration: float = 0.0,
                 valid: bool = False):
        self.horizon, self.cut, self.calibration, self.valid = float(horizon), cut, float(calibration), bool(valid)

    def split(self, dataset: Dataset, seed: int) -> SplitData:
        x = dataset.interactions
        t_min, t_max = time_bounds(x, "temporal")
        h = self.horizon * x.per_day
        T = float(self.cut) if self.cut is not None else t_max - h
        where = "cut" if self.cut is not None else "horizon"
        if T <= t_min:
            raise DataError(
                f"temporal: the cut T={T:g} ({where}={self.cut if self.cut is not None else self.horizon}) is at or "
                f"before the first event (t={t_min:g}), so nothing is left to train on; "
                + ("set cut inside (first, last] event time" if self.cut is not None else "shorten the horizon (days)"))
        if T > t_max:
            raise DataError(f"temporal: cut={T:g} is after the last event (t={t_max:g}), so there is no target window; "
                            "set cut to at most the last event time or leave it null (= last `horizon` days)")
        end = window_end(T, h, t_max)
        info: dict = {"cut": T, "window_end": end, "horizon_days": self.horizon, "first_time": t_min,
                      "last_time": t_max}

        train_end = T
        calib = None
        if self.calibration > 0:
            Tc = T - self.calibration * x.per_day
            if Tc <= t_min:
                raise DataError(f"temporal: calibration={self.calibration:g} days puts its cut T'={Tc:g} at or before "
                                f"the first event (t={t_min:g}); shorten calibration or move the cut later")
            cu = users_with_history(x, Tc)
            calib = states_from_events(x, cu, np.full(len(cu), Tc), np.full(len(cu), T), name="calibration")
            train_end = Tc
            info["calibration_cut"] = Tc
            info.update(summary(calib, "calibration_"))

        users = users_with_history(x, T)
        test = states_from_events(x, users, np.full(len(users), T), np.full(len(users), end), name="test")
        require_nonempty(test, f"temporal (horizon={self.horizon:g} days, cut={T:g})")

        valid = None
        if self.valid:
            Tv = T - h
            if Tv <= t_min:
                raise DataError(f"temporal: valid=true needs a validation window [T-horizon, T) = [{Tv:g}, {T:g}) "
                                f"after the first event (t={t_min:g}); shorten the horizon or set valid: false")
            vu = users_with_history(x, Tv)
            valid = states_from_events(x, vu, np.full(len(vu), Tv), np.full(len(vu), T), name="valid")
            info["valid_cut"] = Tv
            info["valid_targets_in_train"] = bool(train_end > Tv)
            info.update(summary(valid, "valid_"))

        train = x.subset(x.time < train_end)
        info["train_end"] = train_end
        info["n_train"] = len(train)
        info.update(summary(test))
        return SplitData(train=train, test=test, valid=valid, calibration=calib, info=info)


@hookimpl
def register_splits(register):
    register(SplitSpec(
        name="temporal", factory=TemporalSplit, provides=("valid", "calibration"),
        provides_for=lambda p: (("valid",) if p["valid"] else ()) + (("calibration",) if p["calibration"] else ()),
        description="train before T, targets in [T, T+horizon) for every user with history (RIM, UniMatch)",
        params=(
            Param("horizon", "float", 7.0, "target window length in days", low=1e-9),
            Param("cut", "float", None, "absolute cut time T in the data's time unit (null: last event - horizon)",
                  nullable=True),
            Param("calibration", "float", 0.0, "days before T held out to calibrate: train on events < T-calibration",
                  low=0.0),
            Param("valid", "bool", False, "add a validation set: cut T-horizon, window [T-horizon, T)"),
        )))
