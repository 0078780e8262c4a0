"""Kill tests for plugins/splits/*.py (issue 13): every split pinned against a brute-force reading of its docstring
written here with python loops over small event logs (which events train, which are targets, each state's history
and cut, the valid / calibration windows, ties at every boundary, users without history, parameters at their
limits, the seed, the info dict) and the error messages (the split, the parameter, the fix)."""
import math

import numpy as np
import pytest

from harness.ctr import ImpressionRows
from harness.data import TIME_UNITS, Dataset, Interactions
from harness.errors import ConfigError, DataError
from plugins.splits import impressions as imp_mod
from plugins.splits import leave_one_out as loo_mod
from plugins.splits import next_n_day as nnd_mod
from plugins.splits import temporal as temporal_mod
from plugins.splits import user as user_mod
from plugins.splits.impressions import ImpressionsSplit, before_index
from plugins.splits.leave_one_out import LeaveOneOutSplit, _loo_set
from plugins.splits.next_n_day import NextNDaySplit, min_count_core
from plugins.splits.temporal import TemporalSplit
from plugins.splits.user import UserSplit

INF = float("inf")


# ------------------------------------------------------------------------------------------ helpers

def make(rows, n_users=None, n_items=None, unit="day", scale=1.0, **cols):
    """A Dataset from (user, item, time in days) rows; times are multiplied by `scale` (units per day)."""
    u = np.array([r[0] for r in rows], dtype=np.int64)
    i = np.array([r[1] for r in rows], dtype=np.int64)
    t = np.array([r[2] for r in rows], dtype=np.float64) * scale
    x = Interactions(user=u, item=i, time=t, n_users=n_users or int(u.max()) + 1,
                     n_items=n_items or int(i.max()) + 1, time_unit=unit, **cols)
    return Dataset("toy", x, np.arange(x.n_users), np.arange(x.n_items))


def empty_ds():
    x = Interactions(user=np.zeros(0, np.int64), item=np.zeros(0, np.int64), time=np.zeros(0), n_users=2,
                     n_items=2, time_unit="day", event=np.zeros(0, dtype=object))
    return Dataset("empty", x, np.arange(2), np.arange(2))


def rows_of(x, keep):
    """(user, item, time) of the events r of x with keep(r), in row order."""
    return [(int(x.user[r]), int(x.item[r]), float(x.time[r])) for r in range(len(x)) if keep(r)]


def all_rows(x):
    return rows_of(x, lambda r: True)


def ref_state(x, u, cut, end, hist=None, tgt=None):
    """(user, cut, history items, history times, sorted target items): history = u's events (those in `hist`)
    with time < cut in (time, row) order; targets = items of u's events (those in `tgt`) in [cut, end)."""
    order = sorted(range(len(x)), key=lambda r: (x.time[r], r))
    h = [r for r in order if x.user[r] == u and x.time[r] < cut and (hist is None or hist[r])]
    t = {int(x.item[r]) for r in order if x.user[r] == u and cut <= x.time[r] < end and (tgt is None or tgt[r])}
    return (int(u), float(cut), [int(x.item[r]) for r in h], [float(x.time[r]) for r in h], sorted(t))


def got_states(ev):
    s = ev.states
    return [(int(s.user[k]), float(s.time[k]), s.history(k).tolist(),
             s.hist_time[s.hist_ptr[k]:s.hist_ptr[k + 1]].tolist(), sorted(ev.targets[k].indices.tolist()))
            for k in range(len(s))]


def check_set(ev, expect, name, n_items):
    """An EvalSet equals the reference states: users, cuts, histories, targets (binary), exclude = histories."""
    assert ev is not None
    assert ev.name == name
    assert got_states(ev) == expect
    assert ev.targets.shape == (len(expect), n_items)
    assert (ev.targets.data == 1).all()
    assert ev.states.user.dtype == np.int64
    assert ev.states.hist_ptr[0] == 0 and ev.states.hist_ptr[-1] == len(ev.states.hist_item)
    ex = np.zeros((len(expect), n_items))
    for k, (_, _, items, _, _) in enumerate(expect):
        for i in items:
            ex[k, i] += 1
    assert ev.exclude.shape == (len(expect), n_items)
    assert np.array_equal(ev.exclude.toarray(), ex)


def ref_summary(expect, prefix=""):
    if expect is None:
        return {}
    return {prefix + "n_states": len(expect), prefix + "n_target_pairs": sum(len(s[4]) for s in expect),
            prefix + "n_states_without_target": sum(not s[4] for s in expect),
            prefix + "mean_history": float(np.mean([len(s[2]) for s in expect])) if expect else 0.0}


def history_users(x, cut, min_history=1, among=None):
    return [u for u in range(x.n_users) if (among is None or u in among)
            and sum(1 for r in range(len(x)) if x.user[r] == u and x.time[r] < cut) >= max(1, min_history)]


def end_of(start, length, t_max):
    return INF if length is None or start + length >= t_max else start + length


def message(exc_type, fn):
    with pytest.raises(exc_type) as err:
        fn()
    return str(err.value)


def declared(module):
    specs = []
    module.register_splits(specs.append)
    (spec,) = specs
    return spec


def check_info(info, expect):
    assert set(info) == set(expect), sorted(set(info) ^ set(expect))
    for k, v in expect.items():
        if isinstance(v, float) and math.isnan(v):
            assert math.isnan(info[k]), k
        else:
            assert info[k] == v and type(info[k]) is type(v), (k, info[k], v)


# A log with ties at every boundary the tests use (times in days): user 5 has no events, user 2's first event is
# at the default cut 6, user 3 has history but no later event, users 0 and 4 have tied events.
LOG = [
    (0, 0, 1.0), (0, 1, 4.0), (0, 2, 6.0), (0, 3, 8.0), (0, 4, 8.0),
    (1, 1, 2.0), (1, 2, 5.0), (1, 4, 10.0),
    (2, 3, 6.0), (2, 0, 7.0),
    (3, 5, 3.0), (3, 1, 5.0),
    (4, 1, 2.0), (4, 2, 2.0), (4, 5, 7.0), (4, 0, 9.0), (4, 3, 4.0),
]


def random_log(seed, n=60, n_users=7, n_items=6, days=12):
    rng = np.random.default_rng(seed)
    return [(int(u), int(i), float(t)) for u, i, t in zip(rng.integers(0, n_users, n), rng.integers(0, n_items, n),
                                                          rng.integers(0, days + 1, n), strict=True)]


# ------------------------------------------------------------------------------------------ temporal

def ref_temporal(x, horizon, cut, calibration, valid):
    pd_ = x.per_day
    t_min, t_max = float(x.time.min()), float(x.time.max())
    h = horizon * pd_
    T = float(cut) if cut is not None else t_max - h
    end = end_of(T, h, t_max)
    info = {"cut": T, "window_end": end, "horizon_days": float(horizon), "first_time": t_min, "last_time": t_max}
    train_end, calib, val = T, None, None
    if calibration > 0:
        Tc = T - calibration * pd_
        calib = [ref_state(x, u, Tc, T) for u in history_users(x, Tc)]
        train_end = Tc
        info["calibration_cut"] = Tc
        info.update(ref_summary(calib, "calibration_"))
    test = [ref_state(x, u, T, end) for u in history_users(x, T)]
    if valid:
        Tv = T - h
        val = [ref_state(x, u, Tv, T) for u in history_users(x, Tv)]
        info["valid_cut"] = Tv
        info["valid_targets_in_train"] = train_end > Tv
        info.update(ref_summary(val, "valid_"))
    train = rows_of(x, lambda r: x.time[r] < train_end)
    info["train_end"] = train_end
    info["n_train"] = len(train)
    info.update(ref_summary(test))
    return train, test, val, calib, info


# mutants: every comparison of temporal.split (T <= t_min, T > t_max, Tc <= t_min, Tv <= t_min, x.time < train_end,
# calibration > 0), T = t_max - h (sign, h), h = horizon * per_day (dropped / / per_day), Tc / Tv arithmetic, the
# window ends passed to states_from_events (T <-> end, Tc <-> T swapped), users_with_history(x, T) -> (x, Tc) etc.,
# train_end = Tc dropped, every info key / value, the set names, valid/calibration None
@pytest.mark.parametrize("unit", ["day", "hour"])
def test_temporal_matches_its_docstring_on_a_grid(unit):
    scale = TIME_UNITS[unit]
    for log in (LOG, random_log(1)):
        ds = make(log, n_users=6 if log is LOG else None, unit=unit, scale=scale)
        x = ds.interactions
        t_min, t_max = float(x.time.min()), float(x.time.max())
        for horizon in (1.0, 2.0, 4.0):
            for cut in (None, 4.0 * scale, 6.0 * scale, t_max):
                for calibration in (0.0, 1.0, 2.0):
                    for valid in (False, True):
                        s = TemporalSplit(horizon=horizon, cut=cut, calibration=calibration, valid=valid)
                        T = cut if cut is not None else t_max - horizon * scale
                        if (T - calibration * scale <= t_min or (valid and T - horizon * scale <= t_min)):
                            with pytest.raises(DataError):
                                s.split(ds, 0)
                            continue
                        train, test, val, calib, info = ref_temporal(x, horizon, cut, calibration, valid)
                        if not test or not sum(len(st[4]) for st in test):
                            with pytest.raises(DataError, match="no test targets"):
                                s.split(ds, 0)
                            continue
                        out = s.split(ds, 0)
                        assert all_rows(out.train) == train
                        check_set(out.test, test, "test", x.n_items)
                        if valid:
                            check_set(out.valid, val, "valid", x.n_items)
                        else:
                            assert out.valid is None
                        if calibration:
                            check_set(out.calibration, calib, "calibration", x.n_items)
                        else:
                            assert out.calibration is None
                        check_info(out.info, info)


# mutants: `if T <= t_min` -> `<`, `if T > t_max` -> `>=`, `if Tc <= t_min` -> `<`, `if Tv <= t_min` -> `<`, each
# message's text and values (the split, the parameter, the fix), require_nonempty's label, time_bounds' name
def test_temporal_boundaries_and_errors_name_the_split_the_parameter_and_the_fix():
    ds = make(LOG, n_users=6)
    out = TemporalSplit(cut=10.0).split(ds, 0)  # T = the last event: allowed, the window [10, end) holds it
    assert out.info["window_end"] == INF and got_states(out.test)[1] == (1, 10.0, [1, 2], [2.0, 5.0], [4])
    out = TemporalSplit(cut=1.5, horizon=3.0).split(ds, 0)  # just after the first event: user 0 alone
    assert got_states(out.test) == [(0, 1.5, [0], [1.0], [1])] and all_rows(out.train) == [(0, 0, 1.0)]
    out = TemporalSplit(horizon=2.0, calibration=6.5).split(ds, 0)  # T' = 1.5, just after the first event
    assert out.info["calibration_cut"] == 1.5 and got_states(out.calibration) == [(0, 1.5, [0], [1.0], [1, 2])]
    out = TemporalSplit(horizon=4.5, cut=6.0, valid=True).split(ds, 0)  # Tv = 1.5
    assert got_states(out.valid) == [(0, 1.5, [0], [1.0], [1])] and out.info["valid_targets_in_train"] is True
    out = TemporalSplit(horizon=2.0, cut=6.0, calibration=2.0, valid=True).split(ds, 0)  # calibration = horizon
    assert out.info["valid_targets_in_train"] is False and out.info["train_end"] == 4.0 == out.info["valid_cut"]

    assert message(DataError, lambda: TemporalSplit(horizon=9.0).split(ds, 0)) == (
        "temporal: the cut T=1 (horizon=9.0) is at or before the first event (t=1), so nothing is left to train on; "
        "shorten the horizon (days)")
    assert message(DataError, lambda: TemporalSplit(cut=1.0).split(ds, 0)) == (
        "temporal: the cut T=1 (cut=1.0) is at or before the first event (t=1), so nothing is left to train on; "
        "set cut inside (first, last] event time")
    assert message(DataError, lambda: TemporalSplit(cut=10.5).split(ds, 0)) == (
        "temporal: cut=10.5 is after the last event (t=10), so there is no target window; set cut to at most the "
        "last event time or leave it null (= last `horizon` days)")
    assert message(DataError, lambda: TemporalSplit(horizon=2.0, calibration=7.0).split(ds, 0)) == (
        "temporal: calibration=7 days puts its cut T'=1 at or before the first event (t=1); shorten calibration or "
        "move the cut later")
    assert message(DataError, lambda: TemporalSplit(horizon=4.5, valid=True).split(ds, 0)) == (
        "temporal: valid=true needs a validation window [T-horizon, T) = [1, 5.5) after the first event (t=1); "
        "shorten the horizon or set valid: false")
    assert message(DataError, lambda: TemporalSplit(horizon=0.5, cut=1.5).split(ds, 0)).startswith(
        "temporal (horizon=0.5 days, cut=1.5): the split left no test targets")
    assert message(DataError, lambda: TemporalSplit().split(empty_ds(), 0)).startswith(
        "temporal: the dataset has no events")


# mutants: the constructor's defaults (horizon 7.0, cut None, calibration 0.0, valid False) and provides_for
def test_temporal_defaults_are_the_declared_params():
    spec = declared(temporal_mod)
    want = {p.name: p.default for p in spec.params}
    s = TemporalSplit()
    assert (s.horizon, s.cut, s.calibration, s.valid) == (want["horizon"], want["cut"], want["calibration"],
                                                           want["valid"])
    assert spec.name == "temporal" and spec.factory is TemporalSplit
    assert spec.provides_for({"valid": True, "calibration": 0.0}) == ("valid",)
    assert spec.provides_for({"valid": False, "calibration": 1.0}) == ("calibration",)
    assert spec.provides_for({"valid": True, "calibration": 1.0}) == ("valid", "calibration")
    assert spec.provides_for({"valid": False, "calibration": 0.0}) == ()
    # the default horizon in use: the last 7 days are the window
    ds = make([(0, 0, 0.0), (0, 1, 2.0), (1, 2, 3.5), (0, 2, 3.0), (1, 0, 10.0)])
    assert TemporalSplit().split(ds, 0).info["cut"] == 3.0


# ------------------------------------------------------------------------------------------ user

def ref_user(x, seed, test_fraction, horizon, cut, min_history, calibration):
    pd_ = x.per_day
    t_min, t_max = float(x.time.min()), float(x.time.max())
    h = None if horizon is None else horizon * pd_
    active = [u for u in range(x.n_users) if (x.user == u).any()]
    spans = [float(x.time[x.user == u].max() - x.time[x.user == u].min()) for u in active]
    median_span = float(np.median(spans))
    T = t_min + median_span if cut == "median_span" else t_max - h
    end = end_of(T, h, t_max)
    n_b = min(max(int(round(test_fraction * len(active))), 1), len(active) - 1)
    group_b = sorted(np.random.default_rng(seed).permutation(np.array(active))[:n_b].tolist())
    group_a = [u for u in active if u not in group_b]
    test = [ref_state(x, u, T, end) for u in history_users(x, T, min_history, among=group_b)]
    train = rows_of(x, lambda r: x.user[r] not in group_b or x.time[r] < T)
    calib = [ref_state(x, u, T, end) for u in history_users(x, T, min_history, among=group_a)] if calibration \
        else None
    info = {"cut": T, "cut_rule": cut, "window_end": end, "window": f"[{T:g}, {'end' if end == INF else f'{end:g}'})",
            "horizon_days": float("nan") if horizon is None else float(horizon),
            "median_span_days": median_span / pd_, "first_time": t_min, "last_time": t_max,
            "n_group_a": len(active) - n_b, "n_group_b": n_b, "n_train": len(train),
            "train": "group A: all events; group B: events before the cut"}
    info.update(ref_summary(test))
    info.update(ref_summary(calib, "calibration_"))
    return train, test, calib, info, group_b


# mutants: first/last per user (np.full(inf/-inf), minimum.at/maximum.at swapped), the median over ACTIVE users
# (user 6 has no events), T = t_min + median_span (sign, t_max), last_horizon's T = t_max - h, h = horizon *
# per_day, n_b = round(fraction * n) and its clamp to [1, n - 1] (max/min swapped, 1 -> 2, - 1 -> - 2), the
# seeded permutation (default_rng(seed) -> None), [:n_b], np.sort dropped, in_b, train = ~in_b | time < T
# (| -> &, < -> <=), min_history passed on, calibration = group A with history, every info key
@pytest.mark.parametrize("unit", ["day", "hour"])
def test_user_split_matches_its_docstring_on_a_grid(unit):
    scale = TIME_UNITS[unit]
    log = LOG + [(5, 2, 3.0), (5, 4, 9.0), (7, 0, 6.0), (7, 1, 8.0), (7, 5, 2.0)]
    ds = make(log, n_users=8, unit=unit, scale=scale)   # user 6: no events
    x = ds.interactions
    seen_groups = set()
    for test_fraction in (1e-9, 0.3, 0.5, 1.0):
        for horizon, cut in ((None, "median_span"), (1.0, "median_span"), (2.0, "median_span"), (3.0, "last_horizon"),
                             (4.0, "last_horizon")):
            for min_history in (1, 2, 3):
                for seed in (0, 1, 2):
                    for calibration in (False, True):
                        s = UserSplit(test_fraction=test_fraction, horizon=horizon, cut=cut, min_history=min_history,
                                      calibration=calibration)
                        train, test, calib, info, b = ref_user(x, seed, test_fraction, horizon, cut, min_history,
                                                               calibration)
                        if not test or not sum(len(st[4]) for st in test):
                            with pytest.raises(DataError, match="user .*the split left no test targets"):
                                s.split(ds, seed)
                            continue
                        if calibration and (not calib or not sum(len(st[4]) for st in calib)):
                            with pytest.raises(DataError, match=r"user \(calibration: group A on the test window\)"):
                                s.split(ds, seed)
                            continue
                        out = s.split(ds, seed)
                        seen_groups.add(tuple(b))
                        assert all_rows(out.train) == train
                        check_set(out.test, test, "test", x.n_items)
                        if calibration:
                            check_set(out.calibration, calib, "calibration", x.n_items)
                        else:
                            assert out.calibration is None
                        assert out.valid is None
                        check_info(out.info, info)
    assert len(seen_groups) > 5


# mutants: `if T <= t_min` -> `<` (both rules), `if T > t_max` -> `>=`, `len(active) < 2` -> `<= 2` / `< 3`, the
# ConfigError's condition (and -> or, == "last_horizon") and every message's text and values
def test_user_split_limits_and_errors_name_the_split_the_parameter_and_the_fix():
    # two users, one spans [0, 4], the other [1, 3]: median span 3 -> T = 0 + 3, an event of each user's exactly there
    ds = make([(0, 0, 0.0), (0, 2, 3.0), (0, 1, 4.0), (1, 1, 1.0), (1, 2, 3.0)])
    for seed in range(4):
        out = UserSplit(test_fraction=0.5, horizon=None).split(ds, seed)
        assert out.info["cut"] == 3.0 and out.info["n_group_b"] == 1 and out.info["n_group_a"] == 1
        (b,) = out.test.states.user.tolist()
        assert got_states(out.test) == [ref_state(ds.interactions, b, 3.0, INF)]
        assert got_states(out.test)[0][4] == ([1, 2] if b == 0 else [2])   # the event at T is a target
    # last_horizon with T = last event exactly: allowed; T just after the first event: allowed
    ds = make([(0, 0, 0.0), (0, 1, 4.0), (1, 1, 0.0), (1, 2, 4.0), (2, 0, 0.0), (2, 2, 4.0)])
    for seed in range(4):
        out = UserSplit(cut="last_horizon", horizon=3.5, test_fraction=0.3).split(ds, seed)  # T = 0.5
        assert out.info["cut"] == 0.5 and out.info["window_end"] == INF
    with pytest.raises(DataError) as err:
        UserSplit(cut="last_horizon", horizon=4.0).split(ds, 0)  # T = 0 = the first event
    assert str(err.value) == ("user: cut=last_horizon with horizon=4 days puts T=0 at or before the first event "
                              "(t=0); shorten the horizon")
    assert message(DataError, lambda: UserSplit(cut="last_horizon", horizon=-1.0).split(ds, 0)) == (
        "user: the cut T=5 is after the last event (t=4); use cut=last_horizon")
    # T = the last event under last_horizon when horizon -> 0: allowed (window [4, end))
    out = UserSplit(cut="last_horizon", horizon=1e-12, test_fraction=0.5).split(ds, 1)
    assert out.info["cut"] == 4.0 - 1e-12
    ones = make([(0, 0, 1.0), (1, 1, 2.0), (2, 0, 3.0)])
    assert message(DataError, lambda: UserSplit().split(ones, 0)) == (
        "user: cut=median_span gives T = first event time (the median user spans no time), so group B has no "
        "history; use cut=last_horizon")
    two = make([(0, 0, 1.0), (0, 1, 5.0), (2, 0, 2.0), (2, 1, 5.0)], n_users=3)   # user 1: no events
    out = UserSplit(cut="last_horizon", horizon=1.0, test_fraction=0.5).split(two, 0)  # exactly 2 active users
    assert out.info["n_group_a"] == out.info["n_group_b"] == 1
    assert out.info["median_span_days"] == 3.5   # spans 4 and 3: the user without events is no span
    # every user spans the whole log: median_span puts T on the last event, which is allowed (window [4, end))
    whole = make([(0, 0, 0.0), (0, 1, 4.0), (1, 1, 0.0), (1, 2, 4.0)])
    out = UserSplit(horizon=None).split(whole, 0)
    assert out.info["cut"] == 4.0 and out.info["window"] == "[4, end)"
    assert got_states(out.test) in ([(0, 4.0, [0], [0.0], [1])], [(1, 4.0, [1], [0.0], [2])])
    one = make([(1, 0, 1.0), (1, 1, 3.0)], n_users=3)
    assert message(DataError, lambda: UserSplit().split(one, 0)) == (
        "user: needs at least 2 users with events to form two groups, found 1")
    assert message(ConfigError, lambda: UserSplit(cut="last_horizon", horizon=None)) == (
        "user split: cut=last_horizon needs a horizon (days); set horizon or use cut=median_span")
    assert UserSplit(cut="median_span", horizon=None).horizon is None  # median_span needs none
    # LOG's spans 7, 8, 1, 2, 7: median 7, T = 1 + 7
    msg = message(DataError, lambda: UserSplit(min_history=50, horizon=2.0).split(make(LOG), 0))
    assert msg.startswith("user (test_fraction=0.5, horizon=2.0, cut=median_span -> T=8, min_history=50): the split "
                          "left no test targets"), msg
    assert message(DataError, lambda: UserSplit().split(empty_ds(), 0)).startswith("user: the dataset has no events")


# mutants: the constructor's defaults (test_fraction 0.5, horizon 7.0, cut median_span, min_history 1,
# calibration False) and provides_for
def test_user_split_defaults_are_the_declared_params():
    spec = declared(user_mod)
    want = {p.name: p.default for p in spec.params}
    s = UserSplit()
    assert (s.test_fraction, s.horizon, s.cut, s.min_history, s.calibration) == (
        want["test_fraction"], want["horizon"], want["cut"], want["min_history"], want["calibration"])
    assert spec.provides_for({"calibration": True}) == ("calibration",)
    assert spec.provides_for({"calibration": False}) == ()


# ------------------------------------------------------------------------------------------ leave_one_out

def ref_loo(x, min_events):
    """Per user with >= min_events events, in (time, row) order: test = (all but the last -> the last), valid =
    (all but the last two -> the second-last); the cut is the target's time, or the next float after the last
    history time when they tie."""
    test, valid, held = [], [], set()
    for u in range(x.n_users):
        mine = sorted((r for r in range(len(x)) if x.user[r] == u), key=lambda r: (x.time[r], r))
        if len(mine) < min_events:
            continue
        for back, out in ((1, test), (2, valid)):
            hist, tgt = mine[:-back], mine[-back]
            last = x.time[hist[-1]] if hist else -INF
            cut = float(x.time[tgt]) if x.time[tgt] > last else float(np.nextafter(last, INF))
            out.append((u, cut, [int(x.item[r]) for r in hist], [float(x.time[r]) for r in hist], [int(x.item[tgt])]))
        held |= set(mine[-2:])
    return rows_of(x, lambda r: r not in held), test, valid


# mutants: counts >= min_events (-> >), user_start's cumsum / [0], ends - 1 / ends - 2 (swapped, off by one), the
# held rows (order[...] dropped, only one of the two), _loo_set's cut (t_time > last_hist -> >=, nextafter towards
# -inf), last_hist's ptr[1:] - 1, has = lens > 0, the targets' item / shape, the set names, the info values
@pytest.mark.parametrize("min_events", [3, 4])
def test_leave_one_out_matches_its_docstring(min_events):
    logs = [LOG + [(4, 4, 9.0), (6, 2, 3.0), (6, 1, 3.0), (6, 0, 3.0)], random_log(3, n=50), random_log(4, n=40)]
    for log in logs:
        ds = make(log, n_users=9)   # users 7 and 8: no events
        x = ds.interactions
        train, test, valid = ref_loo(x, min_events)
        out = LeaveOneOutSplit(min_events=min_events).split(ds, 0)
        assert all_rows(out.train) == train
        check_set(out.test, test, "test", x.n_items)
        check_set(out.valid, valid, "valid", x.n_items)
        assert out.calibration is None
        counts = np.bincount(x.user, minlength=x.n_users)
        info = {"n_train": len(train), "n_users_tested": len(test),
                "n_users_train_only": int(sum(1 for c in counts if 0 < c < min_events)), "min_events": min_events}
        info.update(ref_summary(test))
        info.update(ref_summary(valid, "valid_"))
        check_info(out.info, info)


# mutants: _loo_set's `has = lens > 0` (-> >= 0: an empty history reads the previous state's last time), the
# -inf start of last_hist, `np.where(t_time > last_hist, ...)` -> `>=`, nextafter(last_hist, inf) -> (.., -inf)
def test_loo_set_with_empty_and_tied_histories():
    # user 0: events at 5, 5 (tied); user 1: one event at 2; user 2: 1, 7
    ds = make([(0, 3, 5.0), (1, 1, 2.0), (0, 2, 5.0), (2, 0, 1.0), (2, 4, 7.0)])
    x = ds.interactions
    order = x.order.tolist()   # (user, time, row): rows 0, 2 | 1 | 3, 4
    assert order == [0, 2, 1, 3, 4]
    users = np.array([0, 1, 2])
    ev = _loo_set(x, users, np.array([0, 2, 3]), np.array([1, 2, 3]), "probe")   # 1, 0, 0 history events
    assert got_states(ev) == [(0, float(np.nextafter(5.0, INF)), [3], [5.0], [2]), (1, 2.0, [], [], [1]),
                              (2, 1.0, [], [], [0])]
    assert ev.name == "probe" and ev.targets.shape == (3, 5)
    ev = _loo_set(x, users[[2, 0]], np.array([3, 0]), np.array([4, 0]), "probe")   # empty history after a full one
    assert got_states(ev) == [(2, 7.0, [0], [1.0], [4]), (0, 5.0, [], [], [3])]
    out = LeaveOneOutSplit(min_events=2).split(ds, 0)   # below the declared limit: valid states have no history
    assert got_states(out.valid) == [(0, 5.0, [], [], [3]), (2, 1.0, [], [], [0])]
    assert all_rows(out.train) == [(1, 1, 2.0)]


# mutants: the error's condition and message (min_events, counts.max()), time_bounds' name, the default min_events
def test_leave_one_out_errors_and_defaults():
    assert message(DataError, lambda: LeaveOneOutSplit(min_events=4).split(make(LOG[5:12]), 0)) == (
        "leave_one_out: no user has at least min_events=4 events (most active user: 3); use a denser dataset or a "
        "temporal split")
    assert message(DataError, lambda: LeaveOneOutSplit().split(empty_ds(), 0)).startswith(
        "leave_one_out: the dataset has no events")
    spec = declared(loo_mod)
    assert LeaveOneOutSplit().min_events == {p.name: p.default for p in spec.params}["min_events"]
    out = LeaveOneOutSplit().split(make(LOG), 0)   # user 1 has exactly 3 events (the default): tested
    assert 1 in out.test.states.user.tolist() and out.info["min_events"] == 3


# ------------------------------------------------------------------------------------------ next_n_day

def ref_core(x, min_count):
    keep = [True] * len(x)
    while True:
        uc, ic = {}, {}
        for r in range(len(x)):
            if keep[r]:
                uc[x.user[r]] = uc.get(x.user[r], 0) + 1
                ic[x.item[r]] = ic.get(x.item[r], 0) + 1
        bad = [r for r in range(len(x)) if keep[r] and (uc[x.user[r]] < min_count or ic[x.item[r]] < min_count)]
        if not bad:
            return keep
        for r in bad:
            keep[r] = False


# mutants: min_count_core's loop (while min_count > 1 -> > 2, uc/ic swapped, < -> <=, | -> &, keep &= ~bad
# dropped), `return x if keep.all()` (the very object when nothing goes)
def test_min_count_core_against_a_loop():
    for log in (LOG, random_log(5, n=70), random_log(6, n=30)):
        x = make(log, n_users=9, n_items=8).interactions
        for m in (1, 2, 3, 4):
            keep = ref_core(x, m)
            core = min_count_core(x, m)
            assert all_rows(core) == rows_of(x, lambda r, keep=keep: keep[r])
            assert core.n_users == x.n_users and core.n_items == x.n_items
            assert (core is x) == all(keep)


def ref_next_n_day(raw, n, n_cuts, min_count):
    keep = ref_core(raw, min_count)
    x = raw.subset(np.array(keep, dtype=bool))
    t_min, t_max = float(x.time.min()), float(x.time.max())
    w = n * x.per_day
    cuts = [t_max - w * k for k in range(n_cuts, 0, -1)]   # earliest first
    test = [ref_state(x, u, t, end_of(t, w, t_max)) for t in cuts for u in history_users(x, t)]
    earliest = cuts[0]
    train = rows_of(x, lambda r: x.time[r] < earliest)
    tv = earliest - w
    valid = None
    windows = [f"train: [{t_min:g}, {earliest:g})"]
    if tv > t_min:
        valid = [ref_state(x, u, tv, earliest) for u in history_users(x, tv)]
        if not sum(len(s[4]) for s in valid):
            valid = None
        else:
            windows.append(f"valid: [{tv:g}, {earliest:g})")
    ends = [end_of(t, w, t_max) for t in cuts]
    windows += [f"test: [{t:g}, {'end' if e == INF else f'{e:g}'})" for t, e in zip(cuts, ends, strict=True)]
    info = {"windows": "; ".join(windows), "test_cuts": ",".join(f"{t:g}" for t in cuts), "cut": earliest,
            "last_cut": cuts[-1], "n_days": float(n), "n_cuts": n_cuts,
            "valid_cut": tv if valid is not None else float("nan"), "n_events_after_min_count": len(x),
            "n_events_removed_by_min_count": len(raw) - len(x), "n_train": len(train), "train_end": earliest,
            "valid_targets_in_train": valid is not None}
    info.update(ref_summary(test))
    info.update(ref_summary(valid, "valid_"))
    return train, test, valid, info, x


# mutants: cuts = t_max - w * arange(1, n_cuts + 1) (start 0 / 2, + 2), w = n * per_day, earliest = cuts[-1] ->
# cuts[0], `earliest <= t_min` -> `<`, the cut loop's order (cuts[::-1]) and window ends, _concat's offsets /
# pointers, train = time < earliest, tv = earliest - w, `tv > t_min` -> `>=`, valid's window [tv, earliest),
# `valid.targets.nnz == 0` -> valid kept, every info key / value, the set names
@pytest.mark.parametrize("unit", ["day", "hour"])
def test_next_n_day_matches_its_docstring_on_a_grid(unit):
    scale = TIME_UNITS[unit]
    for log in (LOG, random_log(7, n=70, days=15), random_log(8, n=50, days=9)):
        ds = make(log, n_users=9, n_items=8, unit=unit, scale=scale)
        for n in (1.0, 1.5, 2.0, 3.0):
            for n_cuts in (1, 2, 3):
                for min_count in (1, 2, 3):
                    s = NextNDaySplit(n=n, n_cuts=n_cuts, min_count=min_count, min_count_scope="all")
                    keep = ref_core(ds.interactions, min_count)
                    if not any(keep):
                        with pytest.raises(DataError, match="removed every event"):
                            s.split(ds, 0)
                        continue
                    x = ds.interactions.subset(np.array(keep, dtype=bool))
                    if float(x.time.max()) - n * scale * n_cuts <= float(x.time.min()):
                        with pytest.raises(DataError, match="nothing to train on"):
                            s.split(ds, 0)
                        continue
                    train, test, valid, info, x = ref_next_n_day(ds.interactions, n, n_cuts, min_count)
                    if not test or not sum(len(st[4]) for st in test):
                        with pytest.raises(DataError, match="no test targets"):
                            s.split(ds, 0)
                        continue
                    out = s.split(ds, 0)
                    assert all_rows(out.train) == train
                    check_set(out.test, test, "test", x.n_items)
                    if valid is None:
                        assert out.valid is None
                    else:
                        check_set(out.valid, valid, "valid", x.n_items)
                    check_info(out.info, info)


def ref_next_n_day_parts(raw, n, n_cuts, min_count):
    """min_count_scope part, by hand: cuts from the whole log; the core of the training events alone; per window,
    the core of its events alone gives the targets; histories are every event before the cut."""
    t_min, t_max = float(raw.time.min()), float(raw.time.max())
    w = n * raw.per_day
    cuts = [t_max - w * k for k in range(n_cuts, 0, -1)]
    earliest = cuts[0]

    def core_of(rows):
        sub = raw.subset(np.array(rows, dtype=bool))
        keep = iter(ref_core(sub, min_count))
        return [bool(r and next(keep)) for r in rows]

    train_keep = core_of([raw.time[r] < earliest for r in range(len(raw))])
    test = []
    for t in cuts:
        end = end_of(t, w, t_max)
        tgt = core_of([t <= raw.time[r] < end for r in range(len(raw))])
        test += [ref_state(raw, u, t, end, tgt=tgt) for u in history_users(raw, t)]
    tv = earliest - w
    valid = None
    if tv > t_min:
        tgt = core_of([tv <= raw.time[r] < earliest for r in range(len(raw))])
        valid = [ref_state(raw, u, tv, earliest, tgt=tgt) for u in history_users(raw, tv)]
        valid = valid if sum(len(s[4]) for s in valid) else None
    return rows_of(raw, lambda r: train_keep[r]), test, valid


def test_next_n_day_cores_each_part_on_its_own():
    """UniMatch filters the train, validation and test data each on its own: against the hand reference on random
    logs, and activity in the test window never changes the training set (under `all` it does)."""
    for log in (LOG, random_log(7, n=70, days=15), random_log(8, n=50, days=9), random_log(9, n=90, days=12)):
        ds = make(log, n_users=9, n_items=8)
        for n, n_cuts, min_count in ((2.0, 1, 2), (3.0, 2, 2), (1.5, 1, 3), (2.0, 2, 1)):
            train, test, valid = ref_next_n_day_parts(ds.interactions, n, n_cuts, min_count)
            if not train or not sum(len(st[4]) for st in test):
                continue
            out = NextNDaySplit(n=n, n_cuts=n_cuts, min_count=min_count).split(ds, 0)
            assert all_rows(out.train) == train
            check_set(out.test, test, "test", 8)
            if valid is None:
                assert out.valid is None
            else:
                check_set(out.valid, valid, "valid", 8)
            assert out.info["min_count_scope"] == "part" and out.info["n_train"] == len(train)
    # user 3 has two training events; three events of theirs in the test window [8.9, end) must not keep them
    base = [(u, i, 0.8 * d) for d, (u, i) in enumerate([(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2),
                                                        (1, 2), (2, 2), (3, 0)])] + [(3, 1, 7.5)]
    test_window = [(u, i, 10.1 + 0.1 * (3 * u + i)) for u in range(3) for i in range(3)]
    busy = [(3, 2, 10.2), (3, 0, 10.4), (3, 1, 10.6)]
    quiet, active = make(base + test_window, n_users=4, n_items=3), make(base + test_window + busy, n_users=4,
                                                                          n_items=3)
    split = NextNDaySplit(n=2.0, min_count=3)
    assert all_rows(split.split(quiet, 0).train) == all_rows(split.split(active, 0).train)
    assert 3 not in split.split(active, 0).train.user
    old = NextNDaySplit(n=2.0, min_count=3, min_count_scope="all")
    assert 3 in old.split(active, 0).train.user and 3 not in old.split(quiet, 0).train.user
    with pytest.raises(ConfigError, match="min_count_scope must be one of part, all"):
        NextNDaySplit(min_count_scope="both")


# mutants: the boundaries (earliest == t_min refused, tv == t_min gives no valid set, a valid window without
# targets gives none), each message's text and values, time_bounds' name, the defaults
def test_next_n_day_boundaries_errors_and_defaults():
    ds = make([(0, 0, 0.0), (0, 1, 2.0), (1, 1, 1.0), (1, 0, 4.0), (0, 2, 4.0)])
    out = NextNDaySplit(n=2.0, min_count=1).split(ds, 0)   # t = 2: valid would start at 0 = the first event
    assert out.valid is None and math.isnan(out.info["valid_cut"]) and "valid" not in out.info["windows"]
    assert got_states(out.test) == [(0, 2.0, [0], [0.0], [1, 2]), (1, 2.0, [1], [1.0], [0])]
    out = NextNDaySplit(n=1.5, min_count=1).split(ds, 0)   # t = 2.5, valid [1, 2.5): user 0's event at 2.0
    assert got_states(out.valid) == [(0, 1.0, [0], [0.0], [1])] and out.info["valid_cut"] == 1.0
    ds2 = make([(0, 0, 0.0), (1, 1, 0.5), (0, 1, 3.0), (1, 0, 4.0)])
    out = NextNDaySplit(n=1.0, min_count=1).split(ds2, 0)   # valid [2, 3): no event -> no valid set
    assert out.valid is None and out.info["windows"] == "train: [0, 3); test: [3, end)"
    assert message(DataError, lambda: NextNDaySplit(n=2.0, n_cuts=2, min_count=1).split(ds, 0)) == (
        "next_n_day: n_cuts=2 windows of n=2 days reach back to 0, at or before the first event (t=0), leaving "
        "nothing to train on; lower n or n_cuts")
    assert message(DataError, lambda: NextNDaySplit(min_count=3, min_count_scope="all").split(ds, 0)) == (
        "next_n_day: min_count=3 removed every event (no user and item both have 3+ events); lower min_count")
    assert message(DataError, lambda: NextNDaySplit(n=1.0, min_count=3).split(ds, 0)) == (
        "next_n_day: min_count=3 removed every training event (no user and item both have 3+ events before 3); "
        "lower min_count")
    lone = make([(0, 0, 0.0), (0, 1, 1.0), (1, 0, 4.0)])   # the last event's user has no history
    assert message(DataError, lambda: NextNDaySplit(n=0.5, min_count=1).split(lone, 0)).startswith(
        "next_n_day (n=0.5 days, n_cuts=1, min_count=1 within the test window): the split left no test targets")
    assert message(DataError, lambda: NextNDaySplit(n=0.5, min_count=1, min_count_scope="all").split(lone, 0)
                   ).startswith("next_n_day (n=0.5 days, n_cuts=1): the split left no test targets")
    assert message(DataError, lambda: NextNDaySplit().split(empty_ds(), 0)).startswith(
        "next_n_day: the dataset has no events")
    want = {p.name: p.default for p in declared(nnd_mod).params}
    s = NextNDaySplit()
    assert (s.n, s.n_cuts, s.min_count, s.scope) == (want["n"], want["n_cuts"], want["min_count"],
                                                     want["min_count_scope"]) == (30.0, 1, 3, "part")


# ------------------------------------------------------------------------------------------ impressions

# user, item, time (days), event, slot: ties between an impression and a behaviour of the same user (t = 2, 5),
# a behaviour exactly at the cut (t = 6), an organic 'buy' and 'pv', an 'exposure', a user (3) without behaviour
IMP_LOG = [
    (0, 1, 1.0, "click", "b"), (0, 2, 2.0, "impression", "a"), (0, 3, 2.0, "click", "a"), (0, 4, 3.0, "buy", "c"),
    (0, 0, 4.0, "exposure", "b"), (0, 2, 5.0, "click", "a"), (0, 1, 5.0, "impression", "c"), (0, 3, 6.0, "pv", "a"),
    (0, 4, 6.0, "impression", "b"), (0, 0, 7.0, "click", "b"),
    (1, 2, 1.5, "impression", "a"), (1, 3, 2.5, "click", "c"), (1, 1, 3.0, "click", "a"), (1, 0, 6.0, "click", "c"),
    (1, 4, 6.5, "impression", "a"), (1, 2, 8.0, "impression", "b"),
    (2, 0, 6.0, "buy", "a"), (2, 1, 7.5, "click", "b"),
    (3, 2, 2.0, "impression", "c"), (3, 3, 7.0, "impression", "a"),
]


def imp_ds(unit="day", value_only=False):
    scale = TIME_UNITS[unit]
    ev = np.array([r[3] for r in IMP_LOG], dtype=object)
    cols = {"value": (ev == "click").astype(np.int64)} if value_only else \
        {"event": ev, "features": {"slot": np.array([r[4] for r in IMP_LOG], dtype=object),
                                   "hour": np.array([int(r[2]) % 3 for r in IMP_LOG])}}
    return make([r[:3] for r in IMP_LOG], n_users=5, n_items=6, unit=unit, scale=scale, **cols)


def ref_impressions(x, T, max_len, imp_events, clk_events, beh_events, context):
    n = len(x)
    if x.event is None:
        imp, clk = [True] * n, [bool(v > 0) for v in x.value]
        beh = list(clk)
    else:
        imp = [e in imp_events for e in x.event]
        clk = [imp[r] and x.event[r] in clk_events for r in range(n)]
        beh = [e in beh_events for e in x.event] if beh_events is not None else \
            [clk[r] or not imp[r] for r in range(n)]
    order = sorted(range(n), key=lambda r: (x.time[r], r))

    def rows_for(rows):
        seqs = []
        for r in rows:
            s = [q for q in order if beh[q] and x.user[q] == x.user[r] and x.time[q] < x.time[r]]
            seqs.append(s[-max_len:] if max_len else [])
        codes = {c: {v: k for k, v in enumerate(sorted(set(x.features[c].tolist())))} for c in context}
        return {"user": [int(x.user[r]) for r in rows], "item": [int(x.item[r]) for r in rows],
                "time": [float(x.time[r]) for r in rows], "label": [int(clk[r]) for r in rows], "event_id": rows,
                "seq": [[int(x.item[q]) for q in s] for s in seqs], "seq_time": [[float(x.time[q]) for q in s]
                                                                                  for s in seqs],
                "context": {c: [codes[c][x.features[c][r]] for r in rows] for c in context}}

    train_rows = [r for r in range(n) if imp[r] and x.time[r] < T]
    test_rows = [r for r in range(n) if imp[r] and x.time[r] >= T]
    bmask = np.array(beh)
    users = [u for u in range(x.n_users) if any(beh[r] and x.user[r] == u and x.time[r] < T for r in range(n))]
    test = [ref_state(x, u, T, INF, hist=bmask, tgt=np.array(clk)) for u in users]
    train = rows_of(x, lambda r: beh[r] and x.time[r] < T)
    return rows_for(train_rows), rows_for(test_rows), train, test, bmask


def check_rows(got, want):
    assert got.user.tolist() == want["user"] and got.item.tolist() == want["item"]
    assert got.time.tolist() == want["time"] and got.label.tolist() == want["label"]
    assert got.label.dtype == np.int8 and got.event_id.tolist() == want["event_id"]
    assert [got.sequence(r).tolist() for r in range(len(got))] == want["seq"]
    assert [got.seq_time[got.seq_ptr[r]:got.seq_ptr[r + 1]].tolist() for r in range(len(got))] == want["seq_time"]
    assert {k: v.tolist() for k, v in got.context.items()} == want["context"]


# mutants: labels() (isin's lists, clk = imp & ... (imp dropped), beh = clk | ~imp, the behaviour_events branch,
# the value path's value > 0 and beh = clk), T = t_max - test_days * per_day, the cut's range test, names = features by
# default, factorize(sort=True), train_rows time < T / test_rows time >= T, impression_rows' label / context /
# event_id / sequence source, before_index (strictly before: the key's + 1, side="left", hi - max_len), train =
# behaviour before T, the ranking test set (clicks as targets, behaviour as history, window to the end), info
IMP_CONFIGS = [
    {}, {"max_len": 1}, {"max_len": 2, "test_days": 2.0}, {"cut": 6.0}, {"cut": 8.0}, {"cut": 5.0, "max_len": 3},
    {"test_days": 1.5, "context": ["hour"]}, {"context": []},
    {"impression_events": ["impression", "click"], "click_events": ["click"]},
    {"impression_events": ["impression", "click", "exposure", "pv"], "click_events": ["click", "pv"], "cut": 5.0},
    {"behaviour_events": ["click", "buy"], "cut": 6.0, "max_len": 2},
    {"behaviour_events": ["impression"], "cut": 3.0},
    {"click_events": ["click", "buy"], "cut": 2.5},   # a 'buy' is no impression, so never a click
]


@pytest.mark.parametrize("unit", ["day", "hour"])
@pytest.mark.parametrize("config", IMP_CONFIGS)
def test_impressions_split_matches_its_docstring(unit, config):
    scale = TIME_UNITS[unit]
    ds = imp_ds(unit)
    x = ds.interactions
    params = dict(config)
    if "cut" in params:
        params["cut"] = params["cut"] * scale
    s = ImpressionsSplit(**params)
    T = params["cut"] if "cut" in params else float(x.time.max()) - params.get("test_days", 1.0) * scale
    context = config.get("context", ["slot", "hour"])
    want_train, want_test, train, test, _ = ref_impressions(
        x, T, config.get("max_len", 50), config.get("impression_events", ["impression", "click", "exposure"]),
        config.get("click_events", ["click"]), config.get("behaviour_events"), context)
    out = s.split(ds, 0)
    check_rows(out.train_impressions, want_train)
    check_rows(out.test_impressions, want_test)
    assert all_rows(out.train) == train
    check_set(out.test, test, "test", x.n_items)
    assert out.valid is None and out.calibration is None
    info = {"cut": T, "test_days": params.get("test_days", 1.0), "max_len": config.get("max_len", 50),
            "n_train": len(train), "n_train_impressions": len(want_train["user"]),
            "n_test_impressions": len(want_test["user"]), "train_ctr": float(np.mean(want_train["label"])),
            "test_ctr": float(np.mean(want_test["label"])),
            "mean_sequence": float(np.mean([len(q) for q in want_test["seq"]])), "context": ",".join(context)}
    info.update(ref_summary(test))
    check_info(out.info, info)


# mutants: the value-only path (every event an impression, value > 0 a click, behaviour = the clicks)
def test_impressions_from_a_value_column():
    ds = imp_ds(value_only=True)
    x = ds.interactions
    x = Interactions(user=x.user, item=x.item, time=x.time, n_users=5, n_items=6, time_unit="day",
                     value=np.where(x.value > 0, 2.5, np.where(np.arange(len(x)) % 2, 0.0, -1.0)))
    ds = Dataset("v", x, ds.user_ids, ds.item_ids)
    want_train, want_test, train, test, _ = ref_impressions(x, 6.0, 2, None, None, None, [])
    out = ImpressionsSplit(cut=6.0, max_len=2).split(ds, 0)
    check_rows(out.train_impressions, want_train)
    check_rows(out.test_impressions, want_test)
    assert all_rows(out.train) == train and len(want_train["user"]) + len(want_test["user"]) == len(x)
    check_set(out.test, test, "test", x.n_items)


# mutants: before_index's key (+ 1 dropped, width), side="left" -> "right" (an event at the query time joins),
# lo = max(user's start, hi - max_len) (max -> min, - -> +)
def test_before_index_takes_the_most_recent_events_strictly_before():
    x = make([(1, 0, 1.0), (0, 1, 2.0), (1, 2, 2.0), (1, 3, 2.0), (1, 4, 3.0), (0, 0, 5.0), (2, 1, 0.0)]).interactions
    users = np.array([1, 1, 1, 1, 0, 0, 2, 1])
    times = np.array([2.0, 2.5, 3.0, 9.0, 2.0, 2.0 + 1e-9, 0.0, 0.5])
    for max_len in (1, 2, 3, 10):
        ptr, idx = before_index(x, users, times, max_len)
        rows = x.order[idx]
        got = [rows[ptr[k]:ptr[k + 1]].tolist() for k in range(len(users))]
        want = []
        for u, t in zip(users, times, strict=True):
            mine = sorted((r for r in range(len(x)) if x.user[r] == u and x.time[r] < t), key=lambda r: (x.time[r], r))
            want.append(mine[-max_len:])
        assert got == want, max_len


# mutants: `not t_min < T <= t_max` (-> <= / <), `not len(train_rows) or not len(test_rows)` (or -> and), the
# messages (the split, the cut, the fix), missing context columns, no impression events, no event/value column,
# time_bounds' name, the defaults
def test_impressions_limits_and_errors():
    ds = imp_ds()
    x = ds.interactions
    out = ImpressionsSplit(cut=8.0).split(ds, 0)   # T = the last event: its impression is the one test row
    assert out.test_impressions.event_id.tolist() == [15]
    assert message(DataError, lambda: ImpressionsSplit(cut=8.5).split(ds, 0)) == (
        "impressions: the cut T=8.5 is outside (first, last] event time = (1, 8]; set cut inside it")
    assert message(DataError, lambda: ImpressionsSplit(cut=1.0).split(ds, 0)) == (
        "impressions: the cut T=1 is outside (first, last] event time = (1, 8]; set cut inside it")
    assert message(DataError, lambda: ImpressionsSplit(test_days=7.0).split(ds, 0)) == (
        "impressions: the cut T=1 is outside (first, last] event time = (1, 8]; shorten test_days")
    assert message(DataError, lambda: ImpressionsSplit(cut=1.2, impression_events=["impression"]).split(ds, 0)) == (
        "impressions: the cut T=1.2 leaves 0 training and 8 test impressions; move the cut (test_days / cut)")
    only_early = make([(0, 0, 1.0), (0, 1, 2.0), (1, 0, 3.0)], event=np.array(["impression", "click", "buy"], object))
    assert message(DataError, lambda: ImpressionsSplit(cut=2.5).split(only_early, 0)) == (
        "impressions: the cut T=2.5 leaves 2 training and 0 test impressions; move the cut (test_days / cut)")
    assert message(DataError, lambda: ImpressionsSplit(context=["slot", "page", "pos"]).split(ds, 0)) == (
        "impressions: context column(s) ['page', 'pos'] are not in the event log (its feature columns: "
        "['hour', 'slot']); drop them from context")
    assert message(DataError, lambda: ImpressionsSplit(impression_events=["show"]).split(ds, 0)) == (
        "impressions: no event is one of impression_events=['show'] (found events: ['buy', 'click', 'exposure', "
        "'impression', 'pv']); set impression_events / click_events to the dataset's names")
    bare = Dataset("n", Interactions(user=x.user, item=x.item, time=x.time, n_users=5, n_items=6), ds.user_ids,
                   ds.item_ids)
    assert message(DataError, lambda: ImpressionsSplit().split(bare, 0)) == (
        "impressions: the dataset has neither an event column (impression/click) nor a value column (click 0/1), so "
        "impressions and clicks cannot be told apart; use a dataset with impressions (taobao_ad, or synthetic with "
        "impressions: true)")
    assert message(DataError, lambda: ImpressionsSplit().split(empty_ds(), 0)).startswith(
        "impressions: the dataset has no events")
    want = {p.name: p.default for p in declared(imp_mod).params}
    s = ImpressionsSplit()
    assert (s.test_days, s.cut, s.max_len, s.test_users, s.behaviour_events, s.context) == (
        want["test_days"], want["cut"], want["max_len"], want["test_users"], None, None)
    assert s.impression_events == ["impression", "click", "exposure"] and s.click_events == ["click"]


# ------------------------------------------------------------------------------------------ prebuilt rows

def prebuilt(part=None, n_users=5):
    """Two rows per user (time = row position), sequences of 0..3 behaviours (seq_time before the row's time)."""
    user = np.repeat(np.arange(n_users), 2)
    n = len(user)
    item = (np.arange(n) * 3) % 7
    time = np.arange(n, dtype=np.float64)
    label = (np.arange(n) % 3 != 1).astype(np.int8)
    lengths = np.arange(n) % 4
    ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    owner = np.repeat(np.arange(n), lengths)
    pos = np.arange(ptr[-1]) - ptr[owner]
    seq_item = (owner + 2 * pos) % 7
    seq_time = time[owner] - 1 + (pos + 1) / (lengths[owner] + 1)
    context = {"pid": np.arange(n) % 2, "price_bin": np.arange(n) % 3}
    rows = ImpressionRows(user=user, item=item, time=time, label=label, seq_ptr=ptr, seq_item=seq_item,
                          seq_time=seq_time, context=context, event_id=np.arange(n, dtype=np.int64))
    feats = dict(context)
    if part is not None:
        feats["part"] = np.asarray(part, dtype=object)
    x = Interactions(user=user, item=item, time=time, n_users=n_users, n_items=7, time_unit="s",
                     value=label.astype(np.int64), event=np.where(label == 1, "click", "impression").astype(object),
                     features=feats)
    return Dataset("pre", x, np.arange(n_users), np.arange(7), impressions=rows)


def check_prebuilt(out, ds, test_mask, max_len, context):
    rows = ds.impressions
    for got, mask in ((out.train_impressions, ~test_mask), (out.test_impressions, test_mask)):
        idx = np.flatnonzero(mask)
        assert got.user.tolist() == rows.user[idx].tolist() and got.item.tolist() == rows.item[idx].tolist()
        assert got.label.tolist() == rows.label[idx].tolist() and got.time.tolist() == rows.time[idx].tolist()
        assert set(got.context) == set(context)
        for c in context:
            assert got.context[c].tolist() == rows.context[c][idx].tolist()
        for k, r in enumerate(idx):
            assert got.sequence(k).tolist() == rows.sequence(r).tolist()[-max_len:]
            assert got.seq_time[got.seq_ptr[k]:got.seq_ptr[k + 1]].tolist() == \
                rows.seq_time[rows.seq_ptr[r]:rows.seq_ptr[r + 1]].tolist()[-max_len:]
    clicked = [r for r in np.flatnonzero(test_mask) if rows.label[r] > 0]
    want = [(int(rows.user[r]), float(rows.time[r]), rows.sequence(r).tolist()[-max_len:],
             rows.seq_time[rows.seq_ptr[r]:rows.seq_ptr[r + 1]].tolist()[-max_len:], [int(rows.item[r])])
            for r in clicked]
    check_set(out.test, want, "test", 7)
    assert all_rows(out.train) == rows_of(ds.interactions, lambda r: not test_mask[r] and rows.label[r] > 0)
    tr, te = out.train_impressions, out.test_impressions
    info = {"max_len": max_len, "n_train": len(out.train), "n_train_impressions": int((~test_mask).sum()),
            "n_test_impressions": int(test_mask.sum()), "train_ctr": float(np.mean(rows.label[~test_mask])),
            "test_ctr": float(np.mean(rows.label[test_mask])),
            "mean_sequence": float(np.mean([min(len(rows.sequence(r)), max_len) for r in np.flatnonzero(test_mask)])),
            "context": ",".join(sorted(context))}
    info.update(ref_summary(want))
    assert tr is not None and te is not None
    check_info({k: v for k, v in out.info.items() if k != "test_rows"}, info)


# mutants: split_prebuilt's part test (== "test", .any()), _clip (max -> min, seq_ptr[1:] - max_len, [:-1]),
# the clicked rows (label > 0 -> >= 0), the states' fields, the targets' rows / items / shape, train = ~test &
# label > 0, the context selection, the info values
@pytest.mark.parametrize("max_len", [1, 2, 50])
def test_prebuilt_rows_split_by_the_datasets_test_part(max_len):
    part = np.array(["train"] * 6 + ["test"] * 4, dtype=object)
    ds = prebuilt(part)
    out = ImpressionsSplit(max_len=max_len).split(ds, 0)
    check_prebuilt(out, ds, part == "test", max_len, ["pid", "price_bin"])
    assert out.info["test_rows"] == "the dataset's test rows"
    out = ImpressionsSplit(max_len=max_len, context=["price_bin"]).split(ds, 3)
    check_prebuilt(out, ds, part == "test", max_len, ["price_bin"])


# mutants: the seeded user draw (round(test_users * n), default_rng(seed), choice without replacement, isin on
# the rows' users), the part column without test rows, `not 0 < n_test < len(users)` (-> <=), the messages
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prebuilt_rows_split_by_a_seeded_user_draw(seed):
    for part, share in ((None, 0.2), (["train"] * 10, 0.4), (None, 0.8)):
        ds = prebuilt(part)
        users = np.arange(5)
        n_test = int(round(share * 5))
        picked = np.random.default_rng(seed).choice(users, n_test, replace=False)
        mask = np.isin(ds.impressions.user, picked)
        out = ImpressionsSplit(test_users=share, max_len=2).split(ds, seed)
        check_prebuilt(out, ds, mask, 2, ["pid", "price_bin"])
        assert out.info["test_rows"] == f"a seeded draw of {n_test} of 5 users"
    draws = {tuple(np.unique(ImpressionsSplit(max_len=2).split(prebuilt(), s).test_impressions.user)) for s in range(6)}
    assert len(draws) > 1 and all(len(d) == 1 for d in draws)   # default test_users 0.2 of 5 users: one user
    for share, n_test in ((0.05, 0), (0.95, 5)):
        assert message(DataError, lambda share=share: ImpressionsSplit(test_users=share).split(prebuilt(), 0)) == (
            f"impressions: test_users={share:g} of 5 users leaves {n_test} test users; choose a share that leaves "
            "both sides some users")
    assert message(DataError, lambda: ImpressionsSplit(context=["pid", "slot"]).split(prebuilt(), 0)) == (
        "impressions: context column(s) ['slot'] are not in the dataset's rows (they have ['pid', 'price_bin']); "
        "drop them from context")
    # all rows of the test part: nothing left to train on
    msg = message(DataError, lambda: ImpressionsSplit().split(prebuilt(["test"] * 10), 0))
    assert msg == "impressions: the dataset's test rows leaves 0 training and 10 test rows"


def test_a_prebuilt_sequence_stays_whole_when_shorter_than_max_len():
    rows = prebuilt().impressions
    clipped = imp_mod._clip(rows, 3)
    assert np.array_equal(clipped["seq_ptr"], rows.seq_ptr) and np.array_equal(clipped["seq_item"], rows.seq_item)
    clipped = imp_mod._clip(rows, 1)
    assert np.diff(clipped["seq_ptr"]).tolist() == np.minimum(np.diff(rows.seq_ptr), 1).tolist()
    assert clipped["seq_item"].tolist() == [rows.sequence(r)[-1] for r in range(len(rows)) if len(rows.sequence(r))]


# ------------------------------------------------------------------- survivors of the mutmut run (second pass)
# mutant: UserSplit's calibration `among=... (x.user_counts > 0)` -> `> 1` (a group-A user with one event dropped)
def test_user_split_calibration_keeps_group_a_users_with_a_single_event():
    log = [(0, 0, 0.0), (0, 1, 6.0), (1, 2, 1.0), (1, 3, 7.0), (2, 4, 2.0), (3, 5, 1.5), (4, 0, 2.5), (5, 1, 3.0),
           (5, 2, 8.0)]
    ds = make(log, n_users=6)
    x = ds.interactions
    singles = {u for u in range(6) if (x.user == u).sum() == 1}
    checked = 0
    for seed in range(12):
        s = UserSplit(test_fraction=0.3, horizon=None, cut="median_span", min_history=1, calibration=True)
        train, test, calib, info, b = ref_user(x, seed, 0.3, None, "median_span", 1, True)
        if not any(len(st[4]) for st in test) or not any(len(st[4]) for st in calib or []):
            continue
        out = s.split(ds, seed)
        check_set(out.calibration, calib, "calibration", x.n_items)
        checked += bool(singles & {st[0] for st in calib})
    assert checked  # some seed put a one-event user in group A with its event before the cut


# mutant: the calibration set's label "user (calibration: group A on the test window)" in require_nonempty
def test_user_split_calibration_without_group_a_history_names_the_calibration_set():
    ds = make([(0, 0, 0.0), (0, 1, 10.0), (1, 2, 8.0), (1, 3, 9.0)])  # median span 5.5: T = 5.5, user 1 starts after
    messages = set()
    for seed in range(8):
        try:
            UserSplit(test_fraction=0.5, horizon=None, calibration=True).split(ds, seed)
        except DataError as e:
            messages.add(str(e).split(":")[0])
    assert "user (calibration" in messages  # group A = user 1, nothing before T: named, not the test set's error


# mutant: LeaveOneOut info `n_users_train_only` counts `0 < counts` -> `1 < counts` (a one-event user left out)
def test_leave_one_out_counts_one_event_users_as_train_only():
    ds = make(LOG + [(7, 1, 2.0)], n_users=9)  # user 7: one event; user 8: none
    counts = np.bincount(ds.interactions.user, minlength=9)
    out = LeaveOneOutSplit(min_events=3).split(ds, 0)
    assert counts[7] == 1 and out.info["n_users_train_only"] == int(((counts > 0) & (counts < 3)).sum())


# mutant: ImpressionsSplit labels from a value column `> 0` -> `> 1` (a click stored as 1 not a click)
def test_impressions_from_a_zero_one_value_column():
    ds = imp_ds(value_only=True)  # value 1 for clicks, 0 otherwise
    x = ds.interactions
    assert set(np.unique(x.value).tolist()) == {0, 1}
    want_train, want_test, train, test, _ = ref_impressions(x, 6.0, 2, None, None, None, [])
    out = ImpressionsSplit(cut=6.0, max_len=2).split(ds, 0)
    check_rows(out.train_impressions, want_train)
    check_rows(out.test_impressions, want_test)
    check_set(out.test, test, "test", x.n_items)


# mutant: the "no impression event" error lists the first 10 event names found (`[:10]` -> `[:11]`)
def test_no_impression_event_lists_the_first_ten_names_found():
    names = [f"e{i:02d}" for i in range(12)]
    rows = [(i % 3, i % 4, float(i)) for i in range(12)]
    ds = make(rows, event=np.array(names, dtype=object))
    with pytest.raises(DataError) as err:
        ImpressionsSplit().split(ds, 0)
    assert f"found events: {names[:10]}" in str(err.value)
