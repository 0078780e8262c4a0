"""Which differences in a results table are real: best and second per column, and paired tests against the best.

Over seeds (paired t-test, Wilcoxon signed-rank) and over test users (Wilcoxon on the cells' per-query
artifacts), Holm-corrected across the methods of a column, so a wide table does not mark noise.

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..tracking import Tracker
from .aggregation import direction, long_frame

ALPHA = 0.05
MARK_T, MARK_W, MARK_U = "†", "‡", "§"


def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaN stays NaN and does not count towards m)."""
    p = np.asarray(list(pvalues), dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out


def paired_p(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(paired t-test p, Wilcoxon signed-rank p) of a vs b; NaN where undefined."""
    from scipy import stats

    d = a - b
    if len(d) < 2 or np.allclose(d, 0):
        return math.nan, math.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        constant = np.allclose(d, d.mean(), rtol=1e-9, atol=1e-12)
        t = 0.0 if constant else stats.ttest_rel(a, b).pvalue  # a constant non-zero shift: t -> inf
        try:
            w = stats.wilcoxon(a, b).pvalue
        except ValueError:
            w = math.nan
    return float(t), float(w)


@dataclass
class Column:
    """One (dataset, metric) column of a task's table: who is best and second, and each method's marker."""

    dataset: str
    metric: str
    best: list[str]
    second: list[str]
    marks: dict[str, str]
    tests: dict[str, dict[str, float]]


class PerQuery:
    """Per-query artifacts (`per_query.parquet`: task, metric, query, value), fetched once per run."""

    def __init__(self, tracker: Tracker):
        self.tracker, self.cache = tracker, {}

    def get(self, run_id: str) -> pd.DataFrame | None:
        if run_id not in self.cache:
            frame = None
            try:
                path = self.tracker.artifact(run_id, "per_query.parquet")
                if path is not None:
                    frame = pd.read_parquet(path)
                    frame["query"] = frame["query"].astype(str)
            except (NotImplementedError, OSError, ValueError, KeyError):
                frame = None
            self.cache[run_id] = frame
        return self.cache[run_id]

    def values(self, run_id: str, task: str, metric: str) -> pd.Series | None:
        frame = self.get(run_id)
        if frame is None:
            return None
        sel = frame[(frame["task"] == task) & (frame["metric"] == metric)]
        if sel.empty:
            return None
        return sel.groupby("query")["value"].mean()


def _user_p(long_col: pd.DataFrame, method: str, best: str, task: str, metric: str, pq: PerQuery) -> float:
    """Wilcoxon over test users: per query, the difference to the best on the same seed, averaged over
    the seeds both have; NaN without per-query artifacts."""
    from scipy import stats

    a = long_col[long_col["method"] == method].set_index("seed")["run_id"]
    b = long_col[long_col["method"] == best].set_index("seed")["run_id"]
    diffs = []
    for seed in sorted(set(a.index) & set(b.index)):
        va, vb = pq.values(a[seed], task, metric), pq.values(b[seed], task, metric)
        if va is None or vb is None:
            continue
        joined = pd.concat([va.rename("a"), vb.rename("b")], axis=1, join="inner").dropna()
        diffs.append((joined["a"] - joined["b"]).rename(seed))
    if not diffs:
        return math.nan
    d = pd.concat(diffs, axis=1).mean(axis=1).dropna().to_numpy()
    if len(d) < 2 or np.allclose(d, 0):
        return math.nan
    try:
        return float(stats.wilcoxon(d).pvalue)
    except ValueError:
        return math.nan


def _tests(col: pd.DataFrame, others: list[str], ref: str, task: str, metric: str, pq: PerQuery | None
           ) -> dict[str, dict[str, float]]:
    """Raw and Holm-corrected p-values of each of `others` against `ref`: over seeds and over users."""
    pt, pw, pu = [], [], []
    for m in others:
        a = col[col["method"] == m].set_index("seed")["value"]
        b = col[col["method"] == ref].set_index("seed")["value"]
        seeds = sorted(set(a.index) & set(b.index))
        t, w = paired_p(a[seeds].to_numpy(float), b[seeds].to_numpy(float))
        pt.append(t)
        pw.append(w)
        pu.append(_user_p(col, m, ref, task, metric, pq) if pq is not None else math.nan)
    tests: dict[str, dict[str, float]] = {}
    for name, raw, adj in (("t", pt, holm(pt)), ("wilcoxon", pw, holm(pw)), ("users", pu, holm(pu))):
        for m, p, q in zip(others, raw, adj, strict=False):
            tests.setdefault(m, {})[f"p_{name}"] = p
            tests[m][f"p_{name}_holm"] = q
    return tests


def columns(long: pd.DataFrame, task: str, pq: PerQuery | None) -> list[Column]:
    """Every (dataset, metric) column of `task` in the long frame, ranked by the metric's direction and tested."""
    sub = long[long["task"] == task]
    out = []
    for (dataset, metric), col in sub.groupby(["dataset", "metric"], sort=False):
        means = col.groupby("method")["value"].mean().dropna()  # a method without a value is not ranked
        sign = int(col["direction"].iloc[0]) if "direction" in col else direction(metric)
        best, second, marks, tests = [], [], {}, {}
        signed = (means * sign).round(12)  # one rounding for ranking and membership (pandas' and
        ranked = sorted(set(signed), reverse=True) if sign else []  # Python's round can differ)
        if len(ranked) >= 2:  # several methods that do not all tie
            best = [m for m, v in signed.items() if v == ranked[0]]
            second = [m for m, v in signed.items() if v == ranked[1]]
            others = [m for m in means.index if m not in best]
            tests = _tests(col, others, best[0], task, metric, pq)
            for m in others:
                marks[m] = "".join(mark for mark, key in ((MARK_T, "p_t_holm"), (MARK_W, "p_wilcoxon_holm"),
                                                          (MARK_U, "p_users_holm")) if tests[m][key] < ALPHA)
        out.append(Column(dataset, metric, best, second, marks, tests))
    return out


def significance(tracker: Tracker, suite: str, per_query: bool = True) -> pd.DataFrame:
    """Each method vs its column's best: raw and Holm-corrected p-values over seeds (paired t-test,
    Wilcoxon) and over test users (Wilcoxon on per-query artifacts)."""
    _, long = long_frame(tracker, suite)
    pq = PerQuery(tracker) if per_query else None
    rows = []
    for task in dict.fromkeys(long["task"]):
        for c in columns(long, task, pq):
            for m, t in c.tests.items():
                rows.append({"task": task, "dataset": c.dataset, "metric": c.metric, "method": m, "best": c.best[0],
                             **t, "marker": c.marks.get(m, "")})
    return pd.DataFrame(rows)
