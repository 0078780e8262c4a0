"""Checks every split plugin passes, on the tiny world (with its impressions layer when the split provides
impressions): it builds, it never leaks (no history reaches its cut, every target lies at or after its state's
cut, no test target event is in training), it gives what its spec promises, and a seed fixes it.

Internal: plugin authors run these checks through `harness.testing`; this module may change between versions.
"""
from __future__ import annotations

import numpy as np

from ..ctr import ImpressionRows
from ..data import Dataset, Interactions
from ..splits import EvalSet, SplitData
from .base import PluginCase, check, require
from .world import tiny_world


def world(case: PluginCase) -> Dataset:
    return tiny_world(case.registry, impressions="impressions" in case.spec.provides,
                      funnel="funnel" in case.spec.provides)


def built(case: PluginCase) -> SplitData:
    return case.cached("split", lambda: case.create().split(world(case), 0))


def eval_sets(split: SplitData) -> list[EvalSet]:
    return [e for e in (split.test, split.valid, split.calibration) if e is not None]


def _last_time(x: Interactions, n_items: int) -> np.ndarray:
    """The latest event time of every (user, item) pair, flat user * n_items + item; -inf where none."""
    out = np.full(x.n_users * n_items, -np.inf)
    np.maximum.at(out, x.user.astype(np.int64) * n_items + x.item, x.time)
    return out


def _target_pairs(ev: EvalSet) -> tuple[np.ndarray, np.ndarray]:
    """(state row, item) of every target."""
    t = ev.targets.tocsr()
    return np.repeat(np.arange(ev.n_states), np.diff(t.indptr)), t.indices.astype(np.int64)


@check("split")
def check_split_builds(case: PluginCase) -> None:
    """`split(dataset, seed)` gives SplitData: training events in the dataset's id spaces and a test set of states
    whose targets are states x items, with at least one target."""
    s, ds = built(case), world(case)
    require(isinstance(s, SplitData), f"split returned {type(s).__name__}, not harness.plugin.SplitData")
    require(isinstance(s.train, Interactions), f"train is {type(s.train).__name__}, not Interactions")
    require((s.train.n_users, s.train.n_items) == (ds.n_users, ds.n_items),
            f"train has {s.train.n_users} users x {s.train.n_items} items; the dataset {ds.n_users} x {ds.n_items}")
    for ev in eval_sets(s):
        require(isinstance(ev, EvalSet), f"{ev!r} is not an EvalSet")
        require(ev.targets.shape == (ev.n_states, ds.n_items),
                f"{ev.name} targets are {ev.targets.shape}, expected (states, items) = ({ev.n_states}, {ds.n_items})")
    require(s.test.n_states > 0 and s.test.targets.nnz > 0,
            f"the test set has {s.test.n_states} states and {s.test.targets.nnz} targets on the tiny world")


@check("split")
def check_histories_end_before_their_cut(case: PluginCase) -> None:
    """No state's history (test, valid or calibration) holds an event at or after the state's cut."""
    for ev in eval_sets(built(case)):
        st = ev.states
        owner = np.repeat(np.arange(len(st)), st.lengths)
        late = np.asarray(st.hist_time) >= np.asarray(st.time)[owner]
        if late.any():
            require(False, f"{ev.name}: {int(late.sum())} history events are at or after their state's cut (e.g. "
                           f"state {owner[late][0]}); build states with states_from_events")


@check("split")
def check_targets_follow_their_cut(case: PluginCase) -> None:
    """Every target (state, item) is an event of the state's user on that item at or after the state's cut, so
    no history can hold a target at the target's time."""
    s, ds = built(case), world(case)
    last = _last_time(ds.interactions, ds.n_items)
    for ev in eval_sets(s):
        rows, items = _target_pairs(ev)
        users = np.asarray(ev.states.user, dtype=np.int64)[rows]
        early = last[users * ds.n_items + items] < np.asarray(ev.states.time)[rows]
        if early.any():
            r = int(np.flatnonzero(early)[0])
            require(False, f"{ev.name}: {int(early.sum())} targets have no event at or after their state's cut, e.g. "
                           f"user {users[r]}, item {items[r]}, cut {ev.states.time[rows[r]]:g}: a target from "
                           "the past leaks what the history already shows")


@check("split")
def check_no_target_in_train(case: PluginCase) -> None:
    """No test target event is a training event: train holds no event of a test state's user on one of its
    target items at or after the state's cut."""
    s, ds = built(case), world(case)
    last = _last_time(s.train, ds.n_items)
    rows, items = _target_pairs(s.test)
    users = np.asarray(s.test.states.user, dtype=np.int64)[rows]
    leak = last[users * ds.n_items + items] >= np.asarray(s.test.states.time)[rows]
    if leak.any():
        r = int(np.flatnonzero(leak)[0])
        require(False, f"{int(leak.sum())} of {len(leak)} test targets are also training events, e.g. user "
                       f"{users[r]} on item {items[r]} at or after the cut {s.test.states.time[rows[r]]:g}; "
                       "keep the test window out of train")


@check("split")
def check_split_provides_what_it_promises(case: PluginCase) -> None:
    """What `spec.provision(params)` promises is there: a valid / calibration EvalSet, training and test
    ImpressionRows."""
    s, promised = built(case), case.spec.provision(case.resolved())
    for key in ("valid", "calibration"):
        if key in promised:
            require(isinstance(getattr(s, key), EvalSet), f"its spec provides {key!r} for these parameters but "
                                                          f"SplitData.{key} is {getattr(s, key)!r}")
    if "impressions" in promised:
        for key in ("train_impressions", "test_impressions"):
            rows = getattr(s, key)
            require(isinstance(rows, ImpressionRows) and len(rows) > 0,
                    f"its spec provides 'impressions' but SplitData.{key} is {type(rows).__name__}"
                    + (" with no rows" if isinstance(rows, ImpressionRows) else ""))


@check("split")
def check_split_deterministic_for_a_seed(case: PluginCase) -> None:
    """Splitting twice with the same seed gives the same training events, test states and targets."""
    a, b = built(case), case.create().split(world(case), 0)
    for what, x, y in (("train users", a.train.user, b.train.user), ("train items", a.train.item, b.train.item),
                       ("train times", a.train.time, b.train.time),
                       ("test state users", a.test.states.user, b.test.states.user),
                       ("test cuts", a.test.states.time, b.test.states.time),
                       ("test histories", a.test.states.hist_item, b.test.states.hist_item)):
        require(np.array_equal(np.asarray(x), np.asarray(y)), f"two splits with seed 0 differ in {what}; draw every "
                                                              "random choice from the seed argument")
    require(a.test.targets.shape == b.test.targets.shape and (a.test.targets != b.test.targets).nnz == 0,
            "two splits with seed 0 give different test targets")
