"""Split `funnel` (UMA²): the training requests' recall / exposure / click spaces, and the clicks of the last days
as whole-catalogue item recommendation.

Which rows are the funnel: events named in `recall_event`, `exposure_event`, `click_event` (default `recall`,
`exposure`, `click`, as the synthetic world's funnel layer writes them). A (request, item) pair logged at several
stages (a log with one row per stage) counts at its deepest. Requests are the feature `request` where the dataset
has it, else (user, time). Other events (e.g. `organic`) are not used.

Time: requests before the last `test_days` days (or before `cut`) are training; the clicks of the later requests
are the test targets. The train log (what every model fits on) is the training clicks; `train_funnel`
(`FunnelRows`) carries the training requests' recalled pairs by stage, for models that sample negatives from the
funnel's spaces (`sampling`). Test: one state per user with a training click and a test click, history = the
user's training clicks, targets = the items clicked in the test window, ranked over the whole catalogue (the
paper's inference space; whether a user's past clicks are excluded is the suite's `exclude_seen`); the test
requests' spaces (`test_funnel`) serve only the truth's propensity metrics of models that estimate them. With
`valid_days`, the clicks of the `valid_days` before the test window are a validation set (and are not trained on).
"""
from __future__ import annotations

import numpy as np

from harness.plugin import (
    DataError,
    Dataset,
    FunnelRows,
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
)


class FunnelSplit(Split):
    def __init__(self, test_days: float = 7.0, cut: float | None = None, valid_days: float = 0.0,
                 recall_event: str = "recall", exposure_event: str = "exposure", click_event: str = "click"):
        self.test_days, self.cut, self.valid_days = float(test_days), cut, float(valid_days)
        self.events = (recall_event, exposure_event, click_event)

    def funnel_rows(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row positions of the funnel's events, their stage 1..3, their request key) in the dataset's log."""
        x = dataset.interactions
        if x.event is None:
            raise DataError(f"funnel: dataset {dataset.name!r} has no `event` column; the funnel split needs events "
                            f"named {', '.join(self.events)} (synthetic: set funnel: true)")
        event = np.asarray(x.event).astype(str)
        stage = np.zeros(len(event), dtype=np.int8)
        for s, name in enumerate(self.events, start=1):
            stage[event == name] = s
        rows = np.flatnonzero(stage > 0)
        missing = [n for s, n in enumerate(self.events, start=1) if not (stage == s).any()]
        if len(rows) == 0 or self.events[2] in missing:
            raise DataError(f"funnel: dataset {dataset.name!r} has no {' / '.join(missing)} events (its events: "
                            f"{', '.join(sorted(set(event[:100000])))}); name the funnel's events with "
                            "recall_event, exposure_event, click_event")
        feats = x.features or {}
        if "request" in feats:
            key = np.asarray(feats["request"], dtype=np.int64)[rows]
        else:  # a request = one (user, time)
            ut = np.stack([x.user[rows], np.unique(x.time, return_inverse=True)[1][rows]], 1)
            key = np.unique(ut, axis=0, return_inverse=True)[1].ravel()
        return rows, stage[rows], key

    def split(self, dataset: Dataset, seed: int) -> SplitData:
        x = dataset.interactions
        rows, stage, key = self.funnel_rows(dataset)
        t_min, t_max = time_bounds(x.subset(rows), "funnel")
        T = float(self.cut) if self.cut is not None else t_max - self.test_days * x.per_day
        if not t_min < T <= t_max:
            raise DataError(f"funnel: the cut T={T:g} is outside the funnel's time span ({t_min:g}, {t_max:g}]; "
                            + ("set cut inside it" if self.cut is not None else "shorten test_days"))
        Tv = T - self.valid_days * x.per_day
        if Tv <= t_min:
            raise DataError(f"funnel: valid_days={self.valid_days:g} leaves nothing to train on (cut {Tv:g}, first "
                            f"request at {t_min:g}); shorten valid_days or test_days")
        clicks = x.subset(rows[stage == 3])
        train_rows = x.time[rows] < Tv
        train = clicks.subset(clicks.time < Tv)
        funnel = _funnel(x, rows[train_rows], stage[train_rows], key[train_rows])
        test_rows = x.time[rows] >= T
        test_funnel = _funnel(x, rows[test_rows], stage[test_rows], key[test_rows]) if test_rows.any() else None
        info = {"cut": T, "train_end": Tv, "test_days": self.test_days, "n_train": len(train),
                "n_train_requests": funnel.n_requests, "n_train_recalled_pairs": len(funnel)}
        for s, name in ((1, "B"), (2, "A"), (3, "clicked")):
            info[f"n_train_space_{name}"] = int((funnel.stage == s).sum())
        users = users_with_history(clicks, Tv, among=np.unique(clicks.user[clicks.time >= T]))
        test = states_from_events(clicks, users, np.full(len(users), T), np.full(len(users), np.inf),
                                  history_events=train)
        require_nonempty(test, f"funnel (test_days={self.test_days:g}, cut={T:g})")
        info.update(summary(test))
        valid = None
        if self.valid_days > 0:
            vu = users_with_history(clicks, Tv, among=np.unique(clicks.user[(clicks.time >= Tv) & (clicks.time < T)]))
            valid = states_from_events(clicks, vu, np.full(len(vu), Tv), np.full(len(vu), T), name="valid")
            info.update(summary(valid, "valid_"))
        return SplitData(train=train, test=test, valid=valid, info=info, train_funnel=funnel, test_funnel=test_funnel)


def _funnel(x, rows: np.ndarray, stage: np.ndarray, key: np.ndarray) -> FunnelRows:
    """FunnelRows of the log rows `rows` (one pair kept per (request, item), at its deepest stage)."""
    req_keys, by_req, request = np.unique(key, return_index=True, return_inverse=True)
    pair = request.astype(np.int64) * np.int64(x.n_items) + x.item[rows]
    order = np.lexsort((-stage, pair))
    keep = order[np.r_[True, pair[order][1:] != pair[order][:-1]]]
    return FunnelRows(request=request[keep], item=x.item[rows][keep], stage=stage[keep],
                      req_user=x.user[rows][by_req], req_time=x.time[rows][by_req], n_items=x.n_items,
                      event_id=rows[keep], req_key=req_keys)


@hookimpl
def register_splits(register):
    register(SplitSpec(
        name="funnel", factory=FunnelSplit, provides=("funnel", "valid"),
        provides_for=lambda p: ("funnel",) + (("valid",) if p["valid_days"] else ()),
        description="UMA²: the training requests' spaces (recall / exposure / click), test = the clicks of the "
                    "last test_days ranked over the whole catalogue",
        params=(
            Param("test_days", "float", 7.0, "the last days whose clicks are the test targets", low=1e-9),
            Param("cut", "float", None, "absolute cut time instead of test_days (null: last request - test_days)",
                  nullable=True),
            Param("valid_days", "float", 0.0, "days before the cut whose clicks validate (not trained on)", low=0.0),
            Param("recall_event", "str", "recall", "event name of a recalled, not exposed pair"),
            Param("exposure_event", "str", "exposure", "event name of an exposed, not clicked pair"),
            Param("click_event", "str", "click", "event name of a clicked pair"),
        )))
