"""`temporal` by event fraction (JODIE/IMN-Net 80/10/10): exact parts on a hand-built log with ties at both
boundaries, the tie rule (ties go to the later part), invariants on a random tied log, and errors naming keys."""
import numpy as np
import pytest

from harness.data import Dataset, Interactions
from harness.errors import ConfigError, DataError
from harness.registry import Registry
from plugins.splits.temporal import TemporalSplit


def make_ds(rows, n_items=None):
    u, i, t = (np.array(c) for c in zip(*rows, strict=True))
    x = Interactions(user=u.astype(np.int64), item=i.astype(np.int64), time=t.astype(np.float64),
                     n_users=int(u.max()) + 1, n_items=n_items or int(i.max()) + 1, time_unit="day")
    return Dataset("toy", x, np.arange(x.n_users), np.arange(x.n_items))


# 20 events; sorted times 1..15, 16, 16, 18, 18, 19: ties at position 15/16 and 17/18
LOG = ([(0, k, float(t)) for k, t in enumerate([1, 3, 5, 7, 9, 11, 13, 15])]    # user 0: 8 events before 16
       + [(0, 9, 16.0), (0, 10, 18.0)]
       + [(1, k, float(t)) for k, t in enumerate([2, 4, 6, 8, 10, 12, 14])]      # user 1: 7 events before 16
       + [(1, 11, 18.0)]
       + [(2, 12, 16.0), (2, 13, 19.0)])                                          # user 2: first seen at 16


def states_of(ev):
    s = ev.states
    return [(int(s.user[k]), float(s.time[k]), s.history(k).tolist(), sorted(ev.targets[k].indices.tolist()))
            for k in range(len(s))]


def test_80_10_10_hand_computed_with_ties():
    sp = TemporalSplit(test_fraction=0.1, valid_fraction=0.1).split(make_ds(LOG), 0)
    # n_test = n_valid = 2: T_test = t[18] = 18, T_valid = t[16] = 16; tied events t[15] = 16, t[17] = 18 go later
    assert sp.info["cut"] == 18.0 and sp.info["valid_cut"] == 16.0 and sp.info["train_end"] == 16.0
    assert (sp.info["n_train"], sp.info["n_valid_events"], sp.info["n_test_events"]) == (15, 2, 3)
    assert (sp.info["train_share"], sp.info["valid_share"], sp.info["test_share"]) == (0.75, 0.1, 0.15)
    assert len(sp.train) == 15 and sp.train.time.max() == 15.0
    assert states_of(sp.valid) == [(0, 16.0, list(range(8)), [9]), (1, 16.0, list(range(7)), [])]
    # test histories hold the validation events (observed at test time); user 2 enters with its t=16 event
    assert states_of(sp.test) == [(0, 18.0, list(range(8)) + [9], [10]), (1, 18.0, list(range(7)), [11]),
                                  (2, 18.0, [12], [13])]
    assert sp.info["n_states"] == 3 and sp.info["valid_n_states_without_target"] == 1
    assert not sp.info["valid_targets_in_train"]


def test_80_20_and_rounding():
    sp = TemporalSplit(test_fraction=0.2).split(make_ds(LOG), 0)  # n_test = 4: T = t[16] = 16, 5 events test
    assert sp.valid is None and sp.info["n_train"] == 15 and sp.info["n_test_events"] == 5
    assert states_of(sp.test) == [(0, 16.0, list(range(8)), [9, 10]), (1, 16.0, list(range(7)), [11])]
    # 0.12 * 20 = 2.4 -> 2 (T = 18); 0.175 * 20 = 3.5 -> 4 (halves round up: T = 16)
    assert TemporalSplit(test_fraction=0.12).split(make_ds(LOG), 0).info["cut"] == 18.0
    assert TemporalSplit(test_fraction=0.175).split(make_ds(LOG), 0).info["cut"] == 16.0


def test_random_tied_log_parts_are_ordered_and_leak_free():
    rng = np.random.default_rng(3)
    n = 2000
    rows = list(zip(rng.integers(0, 50, n), rng.integers(0, 40, n), np.floor(rng.random(n) * 60.0), strict=True))
    ds = make_ds(rows, n_items=40)
    sp = TemporalSplit(test_fraction=0.1, valid_fraction=0.1).split(ds, 0)
    t = ds.interactions.time
    T_v, T_t = sp.info["valid_cut"], sp.info["cut"]
    # reference: the boundaries are the times at sorted positions n - 200 and n - 400
    assert (T_t, T_v) == (np.sort(t)[n - 200], np.sort(t)[n - 400])
    assert sp.info["n_train"] == int((t < T_v).sum()) <= 1600 and sp.info["n_test_events"] >= 200
    assert sp.train.time.max() < T_v
    for ev, lo, hi in ((sp.valid, T_v, T_t), (sp.test, T_t, np.inf)):
        s = ev.states
        assert (s.hist_time < np.repeat(s.time, s.lengths)).all()
        # every event in the part whose user has earlier history is a target pair
        x = ds.interactions
        m = (x.time >= lo) & (x.time < hi) & np.isin(x.user, s.user)
        want = {(int(np.searchsorted(s.user, u)), int(i)) for u, i in zip(x.user[m], x.item[m], strict=True)}
        got = set(zip(*ev.targets.nonzero(), strict=True))
        assert {(int(a), int(b)) for a, b in got} == want


def test_errors_name_the_keys():
    ds = make_ds(LOG)
    with pytest.raises(ConfigError, match=r"test_fraction=0.1 .*cannot be combined with horizon"):
        TemporalSplit(horizon=3.0, test_fraction=0.1)
    with pytest.raises(ConfigError, match=r"combined with cut, calibration, valid"):
        Registry.load().create("split", "temporal", test_fraction=0.1, cut=3.0, calibration=1.0, valid=True)
    with pytest.raises(ConfigError, match=r"valid_fraction=0.1 needs test_fraction"):
        TemporalSplit(valid_fraction=0.1)
    with pytest.raises(ConfigError, match=r"test_fraction \+ valid_fraction = 1 leaves nothing"):
        TemporalSplit(test_fraction=0.5, valid_fraction=0.5)
    with pytest.raises(ConfigError, match=r"test_fraction=1 must be in \[0, 1\)"):
        TemporalSplit(test_fraction=1.0)
    # 0.1 test, 0.05 valid: T_valid = t[17] = 18 = T_test, the tie empties validation
    with pytest.raises(DataError, match=r"same time \(t=18\).*validation is empty"):
        TemporalSplit(test_fraction=0.1, valid_fraction=0.05).split(ds, 0)
    tied = make_ds([(0, 0, 1.0), (1, 1, 1.0), (0, 2, 1.0), (1, 0, 2.0)])
    with pytest.raises(DataError, match=r"first event time.*nothing is left to train on"):
        TemporalSplit(test_fraction=0.5).split(tied, 0)  # T = t[2] = 1, the first time
    with pytest.raises(DataError, match=r"rounds to an empty part"):
        TemporalSplit(test_fraction=0.01).split(ds, 0)  # 0.2 events -> 0


def test_spec_provides_valid_only_with_valid_fraction():
    spec = Registry.load().get("split", "temporal")
    base = spec.schema.defaults()
    assert "valid" not in spec.provision({**base, "test_fraction": 0.1})
    assert spec.provision({**base, "test_fraction": 0.1, "valid_fraction": 0.1}) == {"valid"}
    assert spec.provision(base) == set()
