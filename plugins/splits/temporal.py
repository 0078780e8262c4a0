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
  `setback` says who is set back: `all` (default: every model trains before T', so the window is held out of
  training for all, as a validation window must be) or `calibrated` (RIM Sec. 5 / Appendix: "RNN-HP and
  GCMC(*) require further splitting of the training set" — only the models that learn from the calibration
  window, `ModelSpec.set_back`, train before T' (`SplitData.setback_train`); every other model trains on all
  events before T).
- `valid`: a validation EvalSet with cut T - horizon and window [T - horizon, T). Its targets are
  training events unless `calibration >= horizon` (then train stops at T - calibration and the
  validation window is held out too); use it for model selection / early stopping with that in mind.

By event fraction (`test_fraction` > 0, instead of `horizon`/`cut`): the global chronological split of
JODIE and IMN-Net (80/10/10) and RecBole's `TO` ordering. Events are ordered by time; with n events,
n_test = round(test_fraction * n) and n_valid = round(valid_fraction * n) (halves round up). The
boundaries are TIMES: T_test = time of the event at sorted position n - n_test, T_valid = time of the
one at n - n_test - n_valid. Train = events < T_valid, validation = [T_valid, T_test), test = t >= T_test.
Events tied with a boundary go to the LATER part, so no state's history holds an event at or after its
cut (the leakage rule of `states_from_events`), and train can get fewer than its share, valid/test more;
the fractions obtained are in info (`train_share`, `valid_share`, `test_share`). Test states: every user
with an event before T_test (history = those events, valid ones included: observed at test time),
targets = their test events; validation states likewise at T_valid with targets in [T_valid, T_test),
which are held out of train. `calibration` and the horizon-based `valid` do not combine with fractions.
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
    hookimpl,
    require_nonempty,
    states_from_events,
    summary,
    time_bounds,
    users_with_history,
    window_end,
)

# ------------------------------------------------------------------------------------------- the split

HORIZON = 7.0
SETBACKS = ("all", "calibrated")


class TemporalSplit(Split):
    def __init__(self, horizon: float = HORIZON, cut: float | None = None, calibration: float = 0.0,
                 valid: bool = False, test_fraction: float | None = None, valid_fraction: float | None = None,
                 setback: str = "all"):
        self.horizon, self.cut, self.calibration, self.valid = float(horizon), cut, float(calibration), bool(valid)
        if setback not in SETBACKS:
            raise ConfigError(f"temporal: setback must be one of {', '.join(SETBACKS)}, got {setback!r}")
        if setback == "calibrated" and self.calibration <= 0:
            raise ConfigError("temporal: setback=calibrated sets the calibrating models back before a calibration "
                              "window, but calibration is 0; give calibration (days) or leave setback: all")
        self.setback = setback
        self.test_fraction, self.valid_fraction = float(test_fraction or 0.0), float(valid_fraction or 0.0)
        for key, f in (("test_fraction", self.test_fraction), ("valid_fraction", self.valid_fraction)):
            if not 0.0 <= f < 1.0:
                raise ConfigError(f"temporal: {key}={f:g} must be in [0, 1)")
        if self.test_fraction > 0:
            clash = [k for k, on in (("horizon", self.horizon != HORIZON), ("cut", cut is not None),
                                     ("calibration", self.calibration > 0), ("valid", self.valid)) if on]
            if clash:
                raise ConfigError(f"temporal: test_fraction={self.test_fraction:g} (a split by event fraction) cannot "
                                  f"be combined with {', '.join(clash)}; give either test_fraction/valid_fraction "
                                  "or horizon/cut/calibration/valid")
            if self.test_fraction + self.valid_fraction >= 1.0:
                raise ConfigError(f"temporal: test_fraction + valid_fraction = "
                                  f"{self.test_fraction + self.valid_fraction:g} leaves nothing to train on; "
                                  "keep their sum below 1")
        elif self.valid_fraction > 0:
            raise ConfigError(f"temporal: valid_fraction={self.valid_fraction:g} needs test_fraction > 0 (the "
                              "fraction split); with horizon/cut use valid: true")

    def split(self, dataset: Dataset, seed: int) -> SplitData:
        if self.test_fraction > 0:
            return self.split_by_fraction(dataset)
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
            info.update(summary(valid, "valid_"))

        setback_train = None
        if calib is not None and self.setback == "calibrated":
            setback_train = x.subset(x.time < train_end)
            train_end = T
            info["setback"] = "calibrated"
            info["n_setback_train"] = len(setback_train)
        if valid is not None:
            info["valid_targets_in_train"] = bool(train_end > info["valid_cut"])
        train = x.subset(x.time < train_end)
        info["train_end"] = train_end
        info["n_train"] = len(train)
        info.update(summary(test))
        return SplitData(train=train, test=test, valid=valid, calibration=calib, info=info,
                         setback_train=setback_train)

    def split_by_fraction(self, dataset: Dataset) -> SplitData:
        """Chronological split by event counts; boundaries are times, ties go to the later part (module doc)."""
        x = dataset.interactions
        t_min, t_max = time_bounds(x, "temporal")
        n = len(x)
        times = np.sort(x.time, kind="stable")
        n_test = int(np.floor(self.test_fraction * n + 0.5))
        n_valid = int(np.floor(self.valid_fraction * n + 0.5))
        asked = f"test_fraction={self.test_fraction:g}, valid_fraction={self.valid_fraction:g}"
        if n_test == 0 or (self.valid_fraction > 0 and n_valid == 0):
            raise DataError(f"temporal: {asked} of {n} events rounds to an empty part; raise the fraction or use "
                            "more data")
        if n_test + n_valid >= n:
            raise DataError(f"temporal: {asked} of {n} events leaves no event to train on; lower the fractions")
        T_test = float(times[n - n_test])
        T_valid = float(times[n - n_test - n_valid])
        if T_valid <= t_min:
            raise DataError(f"temporal: {asked}: the first boundary falls on the first event time (t={t_min:g}), and "
                            "events tied with a boundary go to the later part, so nothing is left to train on; "
                            "lower the fractions")
        if n_valid and T_valid >= T_test:
            raise DataError(f"temporal: {asked}: the validation and test boundaries fall on the same time "
                            f"(t={T_test:g}); events tied with a boundary go to the later part, so validation is "
                            "empty; raise valid_fraction or set it to 0")
        users = users_with_history(x, T_test)
        test = states_from_events(x, users, np.full(len(users), T_test), np.full(len(users), np.inf), name="test")
        require_nonempty(test, f"temporal ({asked})")
        valid = None
        if n_valid:
            vu = users_with_history(x, T_valid)
            valid = states_from_events(x, vu, np.full(len(vu), T_valid), np.full(len(vu), T_test), name="valid")
        train_end = T_valid if n_valid else T_test
        train = x.subset(x.time < train_end)
        n_tr, n_te = len(train), int((x.time >= T_test).sum())
        info: dict = {"cut": T_test, "window_end": float("inf"), "first_time": t_min, "last_time": t_max,
                      "test_fraction": self.test_fraction, "valid_fraction": self.valid_fraction,
                      "train_end": train_end, "n_train": n_tr, "n_valid_events": n - n_tr - n_te,
                      "n_test_events": n_te, "train_share": n_tr / n, "valid_share": (n - n_tr - n_te) / n,
                      "test_share": n_te / n, "ties": "events at a boundary time go to the later part"}
        if valid is not None:
            info["valid_cut"] = T_valid
            info["valid_targets_in_train"] = False
            info.update(summary(valid, "valid_"))
        info.update(summary(test))
        return SplitData(train=train, test=test, valid=valid, calibration=None, info=info)


@hookimpl
def register_splits(register):
    register(SplitSpec(
        name="temporal", factory=TemporalSplit, provides=("valid", "calibration"),
        provides_for=lambda p: ((("valid",) if p["valid"] or (p.get("valid_fraction") or 0) > 0 else ())
                                + (("calibration",) if p["calibration"] else ())),
        description="train before T, targets in [T, T+horizon) for every user with history (RIM, UniMatch); "
                    "or by event fraction (JODIE 80/10/10)",
        params=(
            Param("horizon", "float", HORIZON, "target window length in days", low=1e-9),
            Param("cut", "float", None, "absolute cut time T in the data's time unit (null: last event - horizon)",
                  nullable=True),
            Param("calibration", "float", 0.0, "days before T held out to calibrate: train on events < T-calibration",
                  low=0.0),
            Param("valid", "bool", False, "add a validation set: cut T-horizon, window [T-horizon, T)"),
            Param("test_fraction", "float", None, "split by event fraction instead of horizon/cut: the last "
                  "test_fraction of events (by time; ties at a boundary go to the later part) are the test part",
                  low=0.0, high=1.0, nullable=True, late=True),
            Param("valid_fraction", "float", None, "with test_fraction: the events before the test part, this "
                  "fraction of all, validate (held out of train)", low=0.0, high=1.0, nullable=True, late=True),
            Param("setback", "str", "all", "with calibration: all = every model trains before T-calibration; "
                  "calibrated = only the models that learn from the window (RNN-HP, GCMC(*): RIM's set-back), the "
                  "others up to T", choices=SETBACKS, late=True),
        )))
