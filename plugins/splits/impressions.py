"""Split `impressions`: CTR rows (user, behaviour sequence, target item, context, click label) for task ctr.

Which events are impressions and which are clicks:
- with an `event` column: impressions are the events in `impression_events` (default impression, click,
  exposure), clicks those of them in `click_events` (default click) — Taobao/Alimama `raw_sample` stores
  event click / impression (and value = clk), the synthetic world's impressions layer the same;
- without one, every event is an impression and `value > 0` is a click.

The behaviour sequence of an impression at time t is the user's behaviour events with time < t (strictly: an
event at the impression's own time is never in its sequence), the `max_len` most recent kept. Behaviour
events are, by default, the clicks plus every event that is not an impression (e.g. organic purchases, pv);
`behaviour_events` names them instead. Impressions in the last `test_days` days (or at/after `cut`) are the
test rows, the earlier ones the training rows (DMR: 7 days train, the 8th test). Feature columns of the
event log become integer context columns (codes over the whole log; a vocabulary, not labels), unless
`context` names the ones to keep.

Datasets whose rows come prebuilt (`Dataset.impressions`: DMR's Alimama format, no time) are split by user
instead: a seeded `test_users` share of the users gives the test rows (rows of one user never straddle the cut),
or, where the dataset marks rows with a feature `part` = test (a separate test file), those rows. The ranking
side then has one test state per clicked test row: its behaviour sequence as history, its item as the target.

The SplitData also carries, so ranking models and tasks run on the same split: `train` = the behaviour
events before the cut, `test` = one state per user with behaviour before the cut, targets = the items they
click in the test window.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import scipy.sparse as sp

from harness.plugin import (
    DataError,
    EvalSet,
    ImpressionRows,
    Interactions,
    Param,
    Split,
    SplitData,
    SplitSpec,
    UserStates,
    csr_ranges,
    hookimpl,
    states_from_events,
    summary,
    time_bounds,
    users_with_history,
)


def before_index(events: Interactions, users: np.ndarray, times: np.ndarray, max_len: int):
    """For each query (users[r], times[r]): positions (into events.order) of that user's `max_len` most recent
    events with time < times[r], oldest first, as CSR (ptr, idx). One global searchsorted, no per-user loop."""
    order = events.order
    su, st = events.user[order], events.time[order]
    grid = np.unique(np.concatenate([st, times]))
    width = np.int64(len(grid) + 2)
    key = su * width + np.searchsorted(grid, st) + 1
    users = np.asarray(users, dtype=np.int64)
    hi = np.searchsorted(key, users * width + np.searchsorted(grid, times) + 1, side="left")
    lo = np.maximum(np.searchsorted(key, users * width, side="left"), hi - max_len)
    return csr_ranges(lo, hi)


def impression_rows(x: Interactions, rows: np.ndarray, label: np.ndarray, behaviour: Interactions,
                    context: dict[str, np.ndarray], max_len: int) -> ImpressionRows:
    """ImpressionRows for the events `rows` of `x` (labels aligned with rows), sequences from `behaviour`."""
    ptr, idx = before_index(behaviour, x.user[rows], x.time[rows], max_len)
    src = behaviour.order[idx]
    out = ImpressionRows(user=x.user[rows], item=x.item[rows], time=x.time[rows], label=label.astype(np.int8),
                         seq_ptr=ptr, seq_item=behaviour.item[src], seq_time=behaviour.time[src],
                         context={k: v[rows] for k, v in context.items()}, event_id=rows.astype(np.int64))
    owner = np.repeat(np.arange(len(out)), out.lengths)
    assert not (out.seq_time >= out.time[owner]).any(), "behaviour sequence leaks past its impression"
    return out


class ImpressionsSplit(Split):
    def __init__(self, test_days: float = 1.0, cut: float | None = None, max_len: int = 50,
                 impression_events: list | None = None, click_events: list | None = None,
                 behaviour_events: list | None = None, context: list | None = None, test_users: float = 0.2):
        self.test_users = float(test_users)
        self.test_days, self.cut, self.max_len = float(test_days), cut, int(max_len)
        self.impression_events = list(impression_events or ["impression", "click", "exposure"])
        self.click_events = list(click_events or ["click"])
        self.behaviour_events = None if behaviour_events is None else list(behaviour_events)
        self.context = None if context is None else list(context)

    def labels(self, x: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(impression mask, click mask, behaviour mask) over the events of x."""
        if x.event is not None:
            ev = np.asarray(x.event, dtype=object)
            imp = np.isin(ev, self.impression_events)
            clk = imp & np.isin(ev, self.click_events)
            beh = np.isin(ev, self.behaviour_events) if self.behaviour_events is not None else clk | ~imp
        elif x.value is not None:
            imp = np.ones(len(x), dtype=bool)
            clk = np.asarray(x.value, dtype=np.float64) > 0
            beh = clk.copy()
        else:
            raise DataError("impressions: the dataset has neither an event column (impression/click) nor a value "
                            "column (click 0/1), so impressions and clicks cannot be told apart; use a dataset with "
                            "impressions (taobao_ad, or synthetic with impressions: true)")
        if not imp.any():
            found = sorted(set(map(str, np.unique(np.asarray(x.event, dtype=object)))))[:10]
            raise DataError(f"impressions: no event is one of impression_events={self.impression_events} (found "
                            f"events: {found}); set impression_events / click_events to the dataset's names")
        return imp, clk, beh

    def split(self, dataset, seed: int) -> SplitData:
        if getattr(dataset, "impressions", None) is not None:
            return self.split_prebuilt(dataset, seed)
        x = dataset.interactions
        t_min, t_max = time_bounds(x, "impressions")
        imp, clk, beh = self.labels(x)
        T = float(self.cut) if self.cut is not None else t_max - self.test_days * x.per_day
        if not t_min < T <= t_max:
            raise DataError(f"impressions: the cut T={T:g} is outside (first, last] event time = ({t_min:g}, "
                            f"{t_max:g}]; " + ("set cut inside it" if self.cut is not None else "shorten test_days"))
        names = self.context if self.context is not None else list(x.features)
        missing = [c for c in names if c not in x.features]
        if missing:
            raise DataError(f"impressions: context column(s) {missing} are not in the event log (its feature "
                            f"columns: {sorted(x.features)}); drop them from context")
        context = {c: pd.factorize(pd.Series(x.features[c]), sort=True)[0].astype(np.int64) for c in names}
        behaviour = x.subset(beh)
        train_rows = np.flatnonzero(imp & (x.time < T))
        test_rows = np.flatnonzero(imp & (x.time >= T))
        if not len(train_rows) or not len(test_rows):
            raise DataError(f"impressions: the cut T={T:g} leaves {len(train_rows)} training and {len(test_rows)} "
                            "test impressions; move the cut (test_days / cut)")
        train_imp = impression_rows(x, train_rows, clk[train_rows], behaviour, context, self.max_len)
        test_imp = impression_rows(x, test_rows, clk[test_rows], behaviour, context, self.max_len)

        train = behaviour.subset(behaviour.time < T)
        clicks = x.subset(clk)
        users = users_with_history(behaviour, T)
        test = states_from_events(clicks, users, np.full(len(users), T), np.full(len(users), np.inf),
                                  history_events=behaviour)
        info = {"cut": T, "test_days": self.test_days, "max_len": self.max_len, "n_train": len(train),
                "n_train_impressions": len(train_imp), "n_test_impressions": len(test_imp),
                "train_ctr": float(train_imp.label.mean()), "test_ctr": float(test_imp.label.mean()),
                "mean_sequence": float(test_imp.lengths.mean()), "context": ",".join(names)}
        info.update(summary(test))
        return SplitData(train=train, test=test, info=info, train_impressions=train_imp, test_impressions=test_imp)


    def split_prebuilt(self, dataset, seed: int) -> SplitData:
        """Rows that came with the dataset: test rows by the dataset's `part` marks, else by a seeded user draw."""
        rows: ImpressionRows = dataset.impressions
        x = dataset.interactions
        part = x.features.get("part")
        if part is not None and (np.asarray(part) == "test").any():
            test = np.asarray(part) == "test"
            how = "the dataset's test rows"
        else:
            users = np.unique(rows.user)
            n_test = int(round(self.test_users * len(users)))
            if not 0 < n_test < len(users):
                raise DataError(f"impressions: test_users={self.test_users:g} of {len(users)} users leaves "
                                f"{n_test} test users; choose a share that leaves both sides some users")
            picked = np.random.default_rng(seed).choice(users, n_test, replace=False)
            test = np.isin(rows.user, picked)
            how = f"a seeded draw of {n_test} of {len(users)} users"
        if self.context is not None:
            missing = [c for c in self.context if c not in rows.context]
            if missing:
                raise DataError(f"impressions: context column(s) {missing} are not in the dataset's rows (they have "
                                f"{sorted(rows.context)}); drop them from context")
            rows = dataclasses.replace(rows, context={c: rows.context[c] for c in self.context})
        clipped = dataclasses.replace(rows, **_clip(rows, self.max_len))
        train_imp, test_imp = clipped.take(np.flatnonzero(~test)), clipped.take(np.flatnonzero(test))
        if not len(train_imp) or not len(test_imp):
            raise DataError(f"impressions: {how} leaves {len(train_imp)} training and {len(test_imp)} test rows")
        clicked = test_imp.take(np.flatnonzero(test_imp.label > 0))
        states = UserStates(user=clicked.user, time=clicked.time, hist_ptr=clicked.seq_ptr,
                            hist_item=clicked.seq_item, hist_time=clicked.seq_time)
        targets = sp.csr_matrix((np.ones(len(clicked), np.float32), (np.arange(len(clicked)), clicked.item)),
                                shape=(len(clicked), x.n_items))
        test_set = EvalSet(states=states, targets=targets, exclude=states.history_matrix(x.n_items), name="test")
        train = x.subset(np.flatnonzero(~test & (rows.label > 0)))
        info = {"test_rows": how, "max_len": self.max_len, "n_train": len(train),
                "n_train_impressions": len(train_imp), "n_test_impressions": len(test_imp),
                "train_ctr": float(train_imp.label.mean()), "test_ctr": float(test_imp.label.mean()),
                "mean_sequence": float(test_imp.lengths.mean()), "context": ",".join(sorted(rows.context))}
        info.update(summary(test_set))
        return SplitData(train=train, test=test_set, info=info, train_impressions=train_imp, test_impressions=test_imp)


def _clip(rows: ImpressionRows, max_len: int) -> dict:
    """seq_ptr / seq_item / seq_time keeping each row's max_len most recent behaviours."""
    ptr, idx = csr_ranges(np.maximum(rows.seq_ptr[:-1], rows.seq_ptr[1:] - max_len), rows.seq_ptr[1:])
    return {"seq_ptr": ptr, "seq_item": rows.seq_item[idx], "seq_time": rows.seq_time[idx]}


@hookimpl
def register_splits(register):
    register(SplitSpec(
        name="impressions", factory=ImpressionsSplit, provides=("impressions",),
        description="CTR rows (user, behaviour before the impression, target item, context, click); last days test",
        params=(
            Param("test_days", "float", 1.0, "the last test_days days of impressions are the test rows", low=1e-9),
            Param("cut", "float", None, "absolute cut time in the data's unit (null: last event - test_days)",
                  nullable=True),
            Param("max_len", "int", 50, "behaviour sequence length (most recent kept)", low=1),
            Param("impression_events", "list", None, "event names that are impressions (default impression, click, "
                                                     "exposure)", nullable=True),
            Param("click_events", "list", None, "impression events that are clicks (default click)", nullable=True),
            Param("behaviour_events", "list", None, "event names in the behaviour sequence (default: clicks and every "
                                                    "non-impression event)", nullable=True),
            Param("context", "list", None, "feature columns used as context (default: all)", nullable=True),
            Param("test_users", "float", 0.2, "datasets with prebuilt rows and no time (alimama_dmr): the seeded share "
                                              "of users whose rows are the test rows", low=0.0, high=1.0),
        )))
