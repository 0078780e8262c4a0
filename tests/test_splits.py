"""Split protocols: hand-computed toy logs, the leakage rule for every split, errors that name the fix."""
import numpy as np
import pandas as pd
import pytest

from harness.data import Dataset, Interactions
from harness.errors import ConfigError, DataError
from harness.registry import Registry
from harness.splits import EvalSet, SplitData
from plugins.splits.leave_one_out import LeaveOneOutSplit
from plugins.splits.next_n_day import NextNDaySplit, min_count_core
from plugins.splits.temporal import TemporalSplit
from plugins.splits.user import UserSplit


def make_ds(rows, n_users=None, n_items=None, unit="day"):
    u, i, t = (np.array(c) for c in zip(*rows, strict=False))
    x = Interactions(user=u.astype(np.int64), item=i.astype(np.int64), time=t.astype(np.float64),
                     n_users=n_users or int(u.max()) + 1, n_items=n_items or int(i.max()) + 1, time_unit=unit)
    return Dataset("toy", x, np.arange(x.n_users), np.arange(x.n_items))


def random_ds(n_users=60, n_items=30, n=1500, days=40.0, unit="s", seed=0, tie_step=None):
    rng = np.random.default_rng(seed)
    t = rng.random(n) * days
    if tie_step:  # many tied times
        t = np.floor(t / tie_step) * tie_step
    per_day = {"s": 86400.0, "day": 1.0, "hour": 24.0}[unit]
    rows = list(zip(rng.integers(0, n_users, n), rng.integers(0, n_items, n), t * per_day, strict=False))
    return make_ds(rows, n_users, n_items, unit)


def triples(x, mask=None):
    idx = np.arange(len(x)) if mask is None else np.flatnonzero(mask)
    return set(zip(x.user[idx].tolist(), x.item[idx].tolist(), x.time[idx].tolist(), strict=False))


def states_of(ev: EvalSet):
    """[(user, cut, history items, history times, target items)] per state."""
    s = ev.states
    return [(int(s.user[k]), float(s.time[k]), s.history(k).tolist(),
             s.hist_time[s.hist_ptr[k]:s.hist_ptr[k + 1]].tolist(), sorted(ev.targets[k].indices.tolist()))
            for k in range(len(s))]


def check_no_leak(ds: Dataset, split: SplitData, by_window=True):
    """No history event at/after its cut; histories are the user's own earlier events and never
    contain a target event of their state; target items are events of that user."""
    x = ds.interactions
    all_events = {}
    for u, i, t in zip(x.user.tolist(), x.item.tolist(), x.time.tolist(), strict=False):
        all_events.setdefault(u, []).append((i, t))
    for ev in (split.test, split.valid, split.calibration):
        if ev is None:
            continue
        s = ev.states
        assert (s.hist_time < np.repeat(s.time, s.lengths)).all()
        assert (np.diff(s.hist_ptr) >= 0).all() and s.hist_ptr[-1] == len(s.hist_item)
        for u, cut, items, times, targets in states_of(ev):
            own = all_events[u]
            hist = set(zip(items, times, strict=False))
            assert hist <= set(own), "history holds events that are not the user's"
            assert times == sorted(times)
            # history = exactly the user's events before the cut (for window splits)
            if by_window:
                assert sorted(zip(times, items, strict=False)) == sorted((t, i) for i, t in own if t < cut)
                target_events = {(i, t) for i, t in own if t >= cut and i in targets}
                assert not (hist & target_events)
                for i in targets:
                    assert any(ii == i and t >= cut for ii, t in own)
        # exclusions are the histories
        assert (ev.exclude != ev.states.history_matrix(x.n_items)).nnz == 0


# ------------------------------------------------------------------------------------------ temporal

TOY = [  # user, item, time (days)
    (0, 0, 1.0), (0, 1, 3.0), (0, 2, 8.0), (0, 3, 9.0),
    (1, 1, 2.0), (1, 4, 9.5),
    (2, 2, 8.5), (2, 0, 10.0),
]


def test_temporal_hand_computed():
    ds = make_ds(TOY)
    sp_ = TemporalSplit(horizon=2).split(ds, 0)  # T = 10 - 2 = 8, window [8, end]
    assert sp_.info["cut"] == 8.0
    assert triples(sp_.train) == {(0, 0, 1.0), (0, 1, 3.0), (1, 1, 2.0)}
    assert states_of(sp_.test) == [(0, 8.0, [0, 1], [1.0, 3.0], [2, 3]), (1, 8.0, [1], [2.0], [4])]
    # user 2 has no history before T: no state; its event at t=10 (the last) is in the window
    assert sp_.info["n_states"] == 2 and sp_.info["n_target_pairs"] == 3
    assert sp_.info["n_states_without_target"] == 0
    check_no_leak(ds, sp_)


def test_temporal_keeps_states_without_target_and_explicit_cut():
    ds = make_ds(TOY)
    sp_ = TemporalSplit(horizon=5.5, cut=3.0).split(ds, 0)  # window [3, 8.5)
    assert triples(sp_.train) == {(0, 0, 1.0), (1, 1, 2.0)}
    assert states_of(sp_.test) == [(0, 3.0, [0], [1.0], [1, 2]), (1, 3.0, [1], [2.0], [])]
    assert sp_.info["n_states_without_target"] == 1
    check_no_leak(ds, sp_)


def test_temporal_calibration_and_valid():
    ds = make_ds(TOY)
    sp_ = TemporalSplit(horizon=1.5, calibration=1.0, valid=True).split(ds, 0)  # T = 8.5, T' = 7.5, Tv = 7
    assert sp_.info["cut"] == 8.5 and sp_.info["calibration_cut"] == 7.5 and sp_.info["valid_cut"] == 7.0
    assert triples(sp_.train) == {(0, 0, 1.0), (0, 1, 3.0), (1, 1, 2.0)}  # events < T'
    assert states_of(sp_.calibration) == [(0, 7.5, [0, 1], [1.0, 3.0], [2]), (1, 7.5, [1], [2.0], [])]
    assert states_of(sp_.valid) == [(0, 7.0, [0, 1], [1.0, 3.0], [2]), (1, 7.0, [1], [2.0], [])]
    # test histories contain the calibration window (observed at test time)
    assert states_of(sp_.test) == [(0, 8.5, [0, 1, 2], [1.0, 3.0, 8.0], [3]), (1, 8.5, [1], [2.0], [4])]
    check_no_leak(ds, sp_)


def test_temporal_horizon_in_days_for_seconds():
    rows = [(u, i, t * 86400.0) for u, i, t in TOY]
    sp_ = TemporalSplit(horizon=2).split(make_ds(rows, unit="s"), 0)
    assert sp_.info["cut"] == 8 * 86400.0
    assert sp_.test.targets.nnz == 3


def test_temporal_errors_name_the_fix():
    ds = make_ds(TOY)
    with pytest.raises(DataError, match=r"temporal.*horizon"):
        TemporalSplit(horizon=9).split(ds, 0)  # T = 1 = first event
    with pytest.raises(DataError, match=r"temporal: cut=20 is after the last event.*set cut"):
        TemporalSplit(cut=20.0).split(ds, 0)
    with pytest.raises(DataError, match=r"temporal.*first event.*set cut"):
        TemporalSplit(cut=0.5).split(ds, 0)
    with pytest.raises(DataError, match=r"temporal: calibration=7.5 days.*shorten calibration"):
        TemporalSplit(horizon=2, calibration=7.5).split(ds, 0)
    with pytest.raises(DataError, match=r"no test targets; widen the horizon, move the cut earlier"):
        TemporalSplit(horizon=3, cut=5.0).split(ds, 0)  # window [5, 8) is empty


# ------------------------------------------------------------------------------------------ user

def test_user_split_hand_computed():
    ds = make_ds(TOY)
    # spans: u0 8, u1 7.5, u2 1.5 -> median 7.5, T = 1 + 7.5 = 8.5; window [8.5, 10.5) reaches the end
    x = ds.interactions
    groups = set()
    for seed in range(6):
        sp_ = UserSplit(test_fraction=0.67, horizon=2).split(ds, seed)  # two users in group B
        assert sp_.info["cut"] == 8.5 and sp_.info["median_span_days"] == 7.5
        assert sp_.info["n_group_b"] == 2 and sp_.info["n_group_a"] == 1
        # every user has events at/after T, so group B = the users whose events are not all in train
        train = triples(sp_.train)
        b = [u for u in range(3) if not triples(x, x.user == u) <= train]
        assert len(b) == 2
        a = ({0, 1, 2} - set(b)).pop()
        assert train == triples(x, (x.user == a) | (x.time < 8.5))
        # states: group-B users with history before 8.5 (user 2 has none)
        expect = {0: (0, 8.5, [0, 1, 2], [1.0, 3.0, 8.0], [3]), 1: (1, 8.5, [1], [2.0], [4])}
        assert states_of(sp_.test) == [expect[u] for u in b if u != 2]
        check_no_leak(ds, sp_)
        groups.add(tuple(b))
    assert len(groups) > 1, "the group must depend on the seed"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_user_split_groups_and_no_leak(seed):
    ds = random_ds(seed=seed)
    sp_ = UserSplit(test_fraction=0.3, horizon=5).split(ds, seed)
    x = ds.interactions
    T, end = sp_.info["cut"], sp_.info["window_end"]
    b_users = set(sp_.test.states.user.tolist())
    assert len(b_users) <= sp_.info["n_group_b"] == round(0.3 * 60)
    train = triples(sp_.train)
    for u in b_users:
        window = triples(x, (x.user == u) & (x.time >= T) & (x.time < end))
        assert not (window & train), "group-B target events reached training"
        assert not (triples(x, (x.user == u) & (x.time >= T)) & train)
        assert triples(x, (x.user == u) & (x.time < T)) <= train
    # every event of a user without a state that has events after T is in train -> group A
    a_users = {u for u in range(60) if triples(x, x.user == u) <= train}
    assert len(a_users) >= 60 - sp_.info["n_group_b"]
    check_no_leak(ds, sp_)
    other = UserSplit(test_fraction=0.3, horizon=5).split(ds, seed + 10)
    assert set(other.test.states.user.tolist()) != b_users


def test_user_split_calibration_is_group_a_on_the_same_window():
    ds = random_ds(seed=4)
    x = ds.interactions
    sp_ = UserSplit(test_fraction=0.3, horizon=5, calibration=True).split(ds, 0)
    T, end = sp_.info["cut"], sp_.info["window_end"]
    cal = sp_.calibration
    a_users, b_users = set(cal.states.user.tolist()), set(sp_.test.states.user.tolist())
    assert a_users and not a_users & b_users and (cal.states.time == T).all()
    assert sp_.info["calibration_n_states"] == len(a_users)
    for s, u in enumerate(cal.states.user):
        window = set(x.item[(x.user == u) & (x.time >= T) & (x.time < end)].tolist())
        assert set(cal.targets[s].indices.tolist()) == window
        assert sorted(cal.states.history(s).tolist()) == sorted(x.item[(x.user == u) & (x.time < T)].tolist())
    assert UserSplit(test_fraction=0.3, horizon=5).split(ds, 0).calibration is None


def test_user_split_min_history_and_errors():
    ds = random_ds()
    sp_ = UserSplit(test_fraction=0.5, horizon=None, min_history=28).split(ds, 0)
    assert sp_.test.n_states > 0 and (sp_.test.states.lengths >= 28).all()
    assert np.isinf(sp_.info["window_end"])
    with pytest.raises(DataError, match=r"user.*no test targets"):
        UserSplit(min_history=10_000).split(ds, 0)
    with pytest.raises(DataError, match=r"user: cut=last_horizon with horizon=100.*shorten the horizon"):
        UserSplit(cut="last_horizon", horizon=100).split(ds, 0)
    with pytest.raises(ConfigError, match="last_horizon needs a horizon"):
        UserSplit(cut="last_horizon", horizon=None)
    with pytest.raises(DataError, match="median_span"):  # every user has one event: no span
        UserSplit().split(make_ds([(0, 0, 1.0), (1, 1, 2.0), (2, 0, 3.0)]), 0)


# ------------------------------------------------------------------------------------------ leave_one_out

def test_leave_one_out_ties_and_row_order():
    rows = [
        (2, 3, 9.0), (0, 0, 1.0), (2, 1, 2.0), (0, 1, 5.0), (1, 0, 1.0),
        (0, 2, 5.0),  # ties with (0, 1, 5.0) and comes later in the log: u0's last event
        (2, 0, 4.0), (1, 2, 3.0),
    ]
    ds = make_ds(rows)
    sp_ = LeaveOneOutSplit().split(ds, 0)
    assert triples(sp_.train) == {(0, 0, 1.0), (1, 0, 1.0), (1, 2, 3.0), (2, 1, 2.0)}
    test, valid = states_of(sp_.test), states_of(sp_.valid)
    assert [(u, h, t) for u, _, h, _, t in test] == [(0, [0, 1], [2]), (2, [1, 0], [3])]
    assert [(u, h, t) for u, _, h, _, t in valid] == [(0, [0], [1]), (2, [1], [0])]
    # the tied test state's cut is just after t=5, the untied ones are the target times
    assert test[0][1] == np.nextafter(5.0, np.inf) and test[1][1] == 9.0
    assert valid[0][1] == 5.0 and valid[1][1] == 4.0
    assert sp_.info["n_users_train_only"] == 1
    check_loo_no_leak(ds, sp_)


def check_loo_no_leak(ds, sp_):
    x = ds.interactions
    check_no_leak(ds, sp_, by_window=False)
    order = x.order
    for ev, back in ((sp_.test, 1), (sp_.valid, 2)):
        for u, cut, items, times, targets in states_of(ev):
            mine = order[x.user[order] == u]
            target_row = mine[-back]
            assert targets == [int(x.item[target_row])]
            assert list(zip(items, times, strict=False)) == list(zip(x.item[mine[:-back]].tolist(),
                                                                     x.time[mine[:-back]].tolist(), strict=False))
            assert (u, int(x.item[target_row]), float(x.time[target_row])) not in \
                {(u, i, t) for i, t in zip(items, times, strict=False)}
            assert cut >= x.time[target_row]
    # train = everything but the last two events of tested users
    held = set()
    for u in set(sp_.test.states.user.tolist()):
        mine = order[x.user[order] == u]
        held |= {int(r) for r in mine[-2:]}
    assert len(sp_.train) == len(x) - len(held)
    assert triples(sp_.train) == triples(x, ~np.isin(np.arange(len(x)), list(held)))


def test_leave_one_out_no_leak_with_many_ties():
    ds = random_ds(unit="day", tie_step=5.0, n=800)  # only 8 distinct times: ties everywhere
    # drop exact duplicate (user, item, time) rows so that triples identify events
    x = ds.interactions
    _, first = np.unique(np.stack([x.user, x.item, x.time]), axis=1, return_index=True)
    ds = Dataset("ties", x.subset(np.sort(first)), ds.user_ids, ds.item_ids)
    sp_ = LeaveOneOutSplit().split(ds, 0)
    assert sp_.test.n_states > 40
    check_loo_no_leak(ds, sp_)


def test_leave_one_out_errors():
    with pytest.raises(DataError, match=r"leave_one_out: no user has at least min_events=3"):
        LeaveOneOutSplit().split(make_ds([(0, 0, 1.0), (0, 1, 2.0), (1, 1, 2.0)]), 0)


# ------------------------------------------------------------------------------------------ next_n_day

def test_next_n_day_windows():
    rows = [(u, i, t) for u in range(3) for i, t in ((0, 1.0), (1, 3.0), (2, 5.0), (0, 6.5), (1, 7.0), (2, 9.0))]
    rows += [(0, 3, 10.0)]  # the last event (t=10) belongs to the latest window
    ds = make_ds(rows)
    sp_ = NextNDaySplit(n=2, n_cuts=2, min_count=1).split(ds, 0)  # cuts 8 and 6; valid [4, 6)
    assert sp_.info["windows"] == "train: [1, 6); valid: [4, 6); test: [6, 8); test: [8, end)"
    assert triples(sp_.train) == triples(ds.interactions, ds.interactions.time < 6)
    test = states_of(sp_.test)
    assert [(u, c) for u, c, *_ in test] == [(0, 6.0), (1, 6.0), (2, 6.0), (0, 8.0), (1, 8.0), (2, 8.0)]
    assert test[0][2:] == ([0, 1, 2], [1.0, 3.0, 5.0], [0, 1])
    assert test[3][2:] == ([0, 1, 2, 0, 1], [1.0, 3.0, 5.0, 6.5, 7.0], [2, 3])
    assert test[4][4] == [2]
    assert [t for *_, t in states_of(sp_.valid)] == [[2]] * 3
    assert sp_.info["n_states"] == 6 and sp_.info["n_target_pairs"] == 10
    check_no_leak(ds, sp_)


def test_next_n_day_min_count_cascades():
    # item 3 has one event; removing it leaves user 3 with 2 events < 3, which removes item 4's third event...
    rows = [(u, i, float(t)) for u in range(3) for t, i in enumerate((0, 1, 2))]
    rows += [(3, 3, 1.0), (3, 4, 2.0), (3, 0, 3.0), (0, 4, 4.0), (1, 4, 5.0)]
    x = make_ds(rows).interactions
    core = min_count_core(x, 3)
    assert triples(core) == triples(x, (x.user < 3) & (x.item < 3)) and core.n_items == x.n_items
    assert min_count_core(x, 1) is x
    with pytest.raises(DataError, match=r"next_n_day: min_count=50 removed every event.*lower min_count"):
        NextNDaySplit(min_count=50, min_count_scope="all").split(make_ds(rows), 0)
    with pytest.raises(DataError, match=r"next_n_day: min_count=50 removed every training event.*lower min_count"):
        NextNDaySplit(n=1.0, min_count=50).split(make_ds(rows), 0)


def test_next_n_day_errors_and_random_no_leak():
    ds = random_ds(days=40.0)
    with pytest.raises(DataError, match=r"next_n_day: n_cuts=5 windows of n=10.*lower n or n_cuts"):
        NextNDaySplit(n=10, n_cuts=5).split(ds, 0)
    sp_ = NextNDaySplit(n=5, n_cuts=3).split(ds, 0)
    assert len(np.unique(sp_.test.states.time)) == 3 and sp_.valid is not None
    assert sp_.train.time.max() < sp_.info["cut"]
    check_no_leak(ds, sp_)


# ------------------------------------------------------------------------------------------ all splits

def test_all_splits_registered_validate_and_never_leak():
    reg = Registry.load()
    assert {"temporal", "user", "leave_one_out", "next_n_day"} <= set(reg.names("split"))
    ds = random_ds(unit="s")
    for name, params in [("temporal", {"horizon": 5, "calibration": 2, "valid": True}), ("user", {}),
                         ("next_n_day", {"n": 4, "n_cuts": 2}), ("leave_one_out", {})]:
        sp_ = reg.create("split", name, **params).split(ds, 3)
        assert sp_.test.targets.nnz > 0 and sp_.train.n_items == ds.n_items
        for key in ("n_states", "n_target_pairs", "n_states_without_target"):
            assert key in sp_.info
        check_no_leak(ds, sp_, by_window=name != "leave_one_out")
        again = reg.create("split", name, **params).split(ds, 3)
        assert states_of(again.test) == states_of(sp_.test)


def test_user_states_take_keeps_histories():
    from harness.splits import UserStates

    st = UserStates(user=np.array([5, 6, 7]), time=np.array([1.0, 2.0, 3.0]), hist_ptr=np.array([0, 2, 2, 5]),
                    hist_item=np.array([10, 11, 12, 13, 14]), hist_time=np.array([0.1, 0.2, 0.3, 0.4, 0.5]))
    sub = st.take(np.array([2, 0, 1]))
    assert list(sub.user) == [7, 5, 6] and list(sub.hist_ptr) == [0, 3, 5, 5]
    assert list(sub.hist_item) == [12, 13, 14, 10, 11] and list(sub.history(1)) == [10, 11]


def test_window_events_count_repeats_that_binary_targets_drop():
    """RIM's ΔN: user 0 buys item 1 twice and item 2 once in the window: 2 targets, 3 window events; the HP prior's
    calibration counts are these (a Poisson regression on twice the counts predicts twice the intensity)."""
    from harness.splits import states_from_events
    from plugins.models.intensity import HawkesPoissonPrior

    x = Interactions(user=np.array([0, 0, 0, 0, 1, 1]), item=np.array([0, 1, 1, 2, 0, 2]),
                     time=np.array([0.0, 5.0, 6.0, 7.0, 1.0, 8.0]), n_users=2, n_items=3, time_unit="day")
    ev = states_from_events(x, np.array([0, 1]), np.array([4.0, 4.0]), np.array([10.0, 10.0]))
    assert ev.targets.sum(axis=1).A1.tolist() == [2.0, 1.0] and ev.window_events.tolist() == [3, 1]
    assert states_from_events(x, np.array([0]), np.array([4.0])).window_events is None  # no window, no counts

    rng = np.random.default_rng(0)
    n = 300
    users = np.repeat(np.arange(n), 3)
    train = Interactions(user=users, item=rng.integers(0, 3, 3 * n), time=np.tile([0.0, 1.0, 2.0], n)
                         + rng.random(3 * n) * 0.1, n_users=n, n_items=3, time_unit="day")
    targets = np.zeros((n, 3))
    targets[np.arange(n), rng.integers(0, 3, n)] = 1
    import scipy.sparse as sp

    from harness.model import FitContext
    from harness.splits import UserStates

    states = UserStates(user=np.arange(n), time=np.full(n, 3.0), hist_ptr=np.arange(0, 3 * n + 1, 3),
                        hist_item=train.item, hist_time=train.time)
    out = []
    for k in (1, 2):
        calib = EvalSet(states=states, targets=sp.csr_matrix(targets), name="calibration",
                        window_events=np.full(n, k, dtype=np.int64) * (1 + np.arange(n) % 2))
        prior = HawkesPoissonPrior(n_kernels=4, l2=0.0)
        prior.fit(train, FitContext(split_info={"horizon_days": 1.0}, calibration=calib))
        out.append(prior.log_intensity(states))
    assert np.allclose(out[1] - out[0], np.log(2.0), atol=0.02)


# ------------------------------------------------------------------------------------------- cold items

def test_cold_items_rank_or_exclude_counts_and_masks_what_no_model_trained_on():
    """Items 3 and 4 have no training event; item 3 is a test target of user 0 and a validation target of user 1.
    `rank` keeps everything and counts; `exclude` drops their targets (counted as lost) and masks them for every
    state, so a model that scores them highest cannot put them in a top-k."""
    import torch

    from harness.evaluate import ScoreSource, evaluate_full
    from harness.model import Model
    from harness.splits import treat_cold_items

    ds = make_ds([(0, 0, 1), (0, 1, 2), (1, 2, 1), (1, 1, 2), (0, 3, 5), (0, 2, 6), (1, 4, 6)], n_items=5)
    split = TemporalSplit(horizon=3, cut=4).split(ds, 0)
    assert set(np.flatnonzero(split.train.item_counts == 0)) == {3, 4}
    same, counts = treat_cold_items(split, "rank")
    assert same is split and counts == {"cold_items": 2.0, "cold_test_targets": 2.0,
                                        "cold_test_targets_share": 2 / 3}
    out, counts = treat_cold_items(split, "exclude")
    assert counts["cold_test_targets_lost"] == 2.0
    assert out.test.targets[:, [3, 4]].nnz == 0 and out.test.targets.nnz == 1        # (0, 2) is left
    assert (out.test.exclude[:, [3, 4]].toarray() == 1).all()
    assert split.test.targets.nnz == 3                                               # the split is not modified
    with pytest.raises(ValueError, match="rank, exclude"):
        treat_cold_items(split, "drop")

    class ColdFirst(Model):
        def fit(self, train, loss, ctx):
            pass

        def factors(self, states):
            return np.ones((len(states), 1), np.float32), np.array([[1.0], [2.0], [3.0], [9.0], [8.0]], np.float32)

    metrics = {"recall": Registry.load().get("metric", "recall")}
    for sd, allowed in ((split, {3, 4}), (out, {0, 1, 2})):
        src = ScoreSource(ColdFirst(), sd.test, 5, torch.device("cpu"))
        res = evaluate_full("itemrec", src, sd.test, [1], metrics, sd.train.item_counts)
        assert set(res.topk.index[:, 0]) <= allowed, (sd is out, res.topk.index)


def test_cold_items_is_a_suite_setting_recorded_per_cell_and_reported(workdir):
    from conftest import tiny_suite

    from harness import api
    from harness.report.markdown import cold_items_md
    from harness.suite import load_suite

    suite = tiny_suite(models=[{"name": "item_pop"}], cold_items="exclude", tasks=["itemrec"], metrics=["ndcg"],
                       cutoffs=[5], split={"name": "temporal", "horizon": 25})   # a long window: new items in it
    frame = api.run(suite)
    row = frame.iloc[0]
    assert row["status"] == "FINISHED" and row["metrics.split/cold_items"] > 0
    assert row["metrics.split/cold_test_targets_lost"] == row["metrics.split/cold_test_targets"] > 0
    frame["_dataset"] = "synthetic"
    assert "left out of rankings and targets" in "\n".join(cold_items_md(frame))
    ranked = api.run({**suite, "cold_items": "rank"}).iloc[0]
    assert pd.isna(ranked.get("metrics.split/cold_test_targets_lost"))
    assert ranked["metrics.split/cold_test_targets"] == row["metrics.split/cold_test_targets"]
    with pytest.raises(ConfigError, match="cold_items"):
        load_suite({**suite, "cold_items": "drop"}, Registry.load())
    with pytest.raises(ConfigError, match="exclude_seen: true, or cold_items: rank"):
        load_suite({**suite, "exclude_seen": False}, Registry.load())


@pytest.mark.parametrize("scope", ["part", "all"])
def test_next_n_day_validation_window_is_trained_on_unless_held_out(scope):
    """The paper's validation window (T-2, T-1] is its last training month: flagged, so a study refuses to choose on
    it (harness.preflight.check_tunable); `held_out_valid` ends training at the validation cut."""
    from harness.preflight import check_tunable

    ds = random_ds(n=3000, days=100.0, unit="day")
    paper = NextNDaySplit(n=20, min_count=1, min_count_scope=scope).split(ds, 0)
    held = NextNDaySplit(n=20, min_count=1, min_count_scope=scope, held_out_valid=True).split(ds, 0)
    assert paper.info["valid_targets_in_train"] and not held.info["valid_targets_in_train"]
    assert paper.train.time.max() >= paper.info["valid_cut"] > held.train.time.max()
    assert held.info["train_end"] == held.info["valid_cut"] == paper.info["cut"] - 20
    np.testing.assert_array_equal(held.valid.targets.toarray(), paper.valid.targets.toarray())
    with pytest.raises(DataError, match="memorising"):
        check_tunable(paper)
    check_tunable(held)
    with pytest.raises(DataError, match="held_out_valid"):
        NextNDaySplit(n=60, min_count=1, min_count_scope=scope, held_out_valid=True).split(ds, 0)
