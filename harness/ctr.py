"""The ctr task: score impressions with a click probability and measure it against the click labels.

Method-agnostic pieces live here; splits that yield impressions (`impressions`) and CTR models are plugins.

- `ImpressionRows`: one row per impression — `user`, target `item`, `time`, `label` (click 0/1), the user's
  behaviour sequence *before* the impression (CSR: `seq_item[seq_ptr[r]:seq_ptr[r+1]]`, oldest first, every
  `seq_time` < `time[r]`), optional integer `context` columns (e.g. `slot`, `pid`) and `event_id` (the row's
  position in the dataset's event log, so a dataset's truth can be looked up without putting it in the data).
  `padded(max_len)` gives the dense [n, max_len] behaviour matrix models feed to torch, most recent first.
- The model interface: a model whose ModelSpec lists "ctr" in `tasks` implements
  `predict_ctr(rows: ImpressionRows) -> np.ndarray` of click probabilities in [0, 1], one per row, and trains
  on `ctx.impressions` (the split's training ImpressionRows) in `fit`; its spec requires "impressions".
- Metrics (vectorised, no loop over users): `auc` (Mann-Whitney, ties count one half), `gauc` (per-user AUC
  weighted by the user's impression count, over users with both a click and a non-click; users without both
  are counted in `ctr/n_users_without_both`, never silently dropped), `logloss` (probabilities clipped to
  [1e-7, 1 - 1e-7]) and `calibration` (mean predicted CTR / observed CTR; 1 is calibrated).
- `run_ctr`: what the runner calls once per cell: `ctr/*` metrics on the split's test impressions, plus
  `truth/ctr_spearman` / `truth/ctr_pearson` (predicted vs true click probability) and the oracle's
  `truth/ctr_auc_oracle` when the dataset's truth knows the click probability of each impression
  (duck-typed: `truth.click_probability(event_id) -> np.ndarray`).

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

from .errors import DataError
from .splits import csr_ranges

EPS = 1e-7
DIRECTIONS = {"auc": 1, "gauc": 1, "logloss": -1, "calibration": 0}  # for reports (calibration: 1 is best)
PREDICT_CHUNK = 65536


@dataclass(frozen=True, eq=False)
class ImpressionRows:
    """Impressions with their behaviour sequences (see the module docstring)."""

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    label: np.ndarray
    seq_ptr: np.ndarray
    seq_item: np.ndarray
    seq_time: np.ndarray
    context: dict[str, np.ndarray] = field(default_factory=dict)
    event_id: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.user)
        for name in ("item", "time", "label"):
            if len(getattr(self, name)) != n:
                raise DataError(f"ImpressionRows: {name} has {len(getattr(self, name))} rows, user has {n}")
        if len(self.seq_ptr) != n + 1:
            raise DataError(f"ImpressionRows: seq_ptr needs {n + 1} entries, got {len(self.seq_ptr)}")
        for k, v in self.context.items():
            if len(v) != n:
                raise DataError(f"ImpressionRows: context {k!r} has {len(v)} rows, user has {n}")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.seq_ptr)

    def sequence(self, r: int) -> np.ndarray:
        return self.seq_item[self.seq_ptr[r]:self.seq_ptr[r + 1]]

    def take(self, rows: np.ndarray) -> "ImpressionRows":
        """The rows in `rows` (in that order), sequences included; vectorised."""
        rows = np.asarray(rows, dtype=np.int64)
        ptr, idx = csr_ranges(self.seq_ptr[rows], self.seq_ptr[rows + 1])
        return ImpressionRows(user=self.user[rows], item=self.item[rows], time=self.time[rows], label=self.label[rows],
                              seq_ptr=ptr, seq_item=self.seq_item[idx], seq_time=self.seq_time[idx],
                              context={k: v[rows] for k, v in self.context.items()},
                              event_id=None if self.event_id is None else self.event_id[rows])

    def padded(self, max_len: int, pad: int = -1) -> np.ndarray:
        """[n, max_len] behaviour items, most recent first (column 0 = the latest behaviour), `pad` after the
        end of shorter sequences; sequences longer than max_len keep their max_len most recent items."""
        return padded_sequences(self.seq_ptr, self.seq_item, max_len, pad)


def padded_sequences(ptr: np.ndarray, items: np.ndarray, max_len: int, pad: int = -1) -> np.ndarray:
    """Dense [n, max_len] view of CSR sequences (time order inside each), most recent first, `pad`-filled:
    what `ImpressionRows.padded` returns; also works on `UserStates` (hist_ptr, hist_item)."""
    ptr, items = np.asarray(ptr, dtype=np.int64), np.asarray(items)
    n = len(ptr) - 1
    take = np.minimum(np.diff(ptr), max_len)
    out = np.full((n, max_len), pad, dtype=np.int64)
    r = np.repeat(np.arange(n), take)
    j = np.arange(take.sum()) - np.repeat(np.cumsum(take) - take, take)   # 0 = most recent
    out[r, j] = items[np.repeat(ptr[1:], take) - 1 - j]
    return out


def predict(model: Any, rows: ImpressionRows, chunk: int = PREDICT_CHUNK) -> np.ndarray:
    """The model's click probabilities for every row, in chunks; checks shape and range."""
    parts = [np.asarray(model.predict_ctr(rows.take(np.arange(lo, min(len(rows), lo + chunk)))), dtype=np.float64)
             for lo in range(0, len(rows), chunk)]
    p = np.concatenate(parts) if parts else np.zeros(0)
    if p.shape != (len(rows),):
        raise ValueError(f"{type(model).__name__}.predict_ctr returned shape {p.shape}, expected ({len(rows)},)")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"{type(model).__name__}.predict_ctr must return probabilities in [0, 1]")
    return p


# ------------------------------------------------------------------------------------------------ metrics

def auc(label: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney U / (n_pos·n_neg), ties count one half); nan without both labels."""
    y = np.asarray(label) > 0
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(np.asarray(score, dtype=np.float64))
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def group_auc(group: np.ndarray, label: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group AUC without a loop over groups: (groups, auc per group (nan without both labels), impressions
    per group). Average ranks within a group come from one global ranking of (group, score)."""
    g_ids, g = np.unique(np.asarray(group), return_inverse=True)
    y = np.asarray(label) > 0
    _, s_rank = np.unique(np.asarray(score, dtype=np.float64), return_inverse=True)
    key = g.astype(np.int64) * np.int64(s_rank.max(initial=0) + 1) + s_rank
    n = np.bincount(g, minlength=len(g_ids))
    offset = np.concatenate([[0], np.cumsum(n)[:-1]])
    r = rankdata(key) - offset[g]          # rank within the group, ties averaged
    n_pos = np.bincount(g, weights=y, minlength=len(g_ids))
    n_neg = n - n_pos
    r_pos = np.bincount(g, weights=np.where(y, r, 0.0), minlength=len(g_ids))
    with np.errstate(invalid="ignore", divide="ignore"):
        a = (r_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return g_ids, np.where((n_pos > 0) & (n_neg > 0), a, np.nan), n


def gauc(user: np.ndarray, label: np.ndarray, score: np.ndarray) -> tuple[float, int]:
    """(impression-weighted mean of per-user AUC over users with both labels, number of users left out)."""
    _, a, n = group_auc(user, label, score)
    ok = np.isfinite(a)
    value = float((a[ok] * n[ok]).sum() / n[ok].sum()) if ok.any() else float("nan")
    return value, int((~ok).sum())


def logloss(label: np.ndarray, prob: np.ndarray) -> float:
    y = np.asarray(label, dtype=np.float64)
    p = np.clip(np.asarray(prob, dtype=np.float64), EPS, 1 - EPS)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean()) if len(y) else float("nan")


def calibration(label: np.ndarray, prob: np.ndarray) -> float:
    """Mean predicted CTR / observed CTR (nan without clicks)."""
    obs = float(np.mean(label)) if len(label) else 0.0
    return float(np.mean(prob) / obs) if obs > 0 else float("nan")


def ctr_metrics(rows: ImpressionRows, prob: np.ndarray) -> dict[str, float]:
    """AUC, GAUC, logloss and calibration of `prob` on `rows`, with counts (no `ctr/` prefix)."""
    g, left_out = gauc(rows.user, rows.label, prob)
    return {"auc": auc(rows.label, prob), "gauc": g, "logloss": logloss(rows.label, prob),
            "calibration": calibration(rows.label, prob), "n_impressions": float(len(rows)),
            "n_clicks": float(np.sum(rows.label)), "n_users": float(len(np.unique(rows.user))),
            "n_users_without_both": float(left_out)}


def truth_ctr_metrics(truth: Any, rows: ImpressionRows, prob: np.ndarray) -> dict[str, float]:
    """Predicted vs true click probability (empty when the truth does not know it)."""
    fn = getattr(truth, "click_probability", None)
    if fn is None or rows.event_id is None or len(rows) == 0:
        return {}
    true_p = np.asarray(fn(rows.event_id), dtype=np.float64)
    if not np.isfinite(true_p).all():
        return {}
    from .truth import _pearson_rows, spearman

    return {"truth/ctr_spearman": spearman(prob, true_p),
            "truth/ctr_pearson": float(_pearson_rows(prob[None, :], true_p[None, :])[0]),
            "truth/ctr_auc_oracle": auc(rows.label, true_p)}


def run_ctr(model: Any, split: Any, dataset: Any) -> dict[str, float]:
    """The ctr task for one fitted model: `ctr/*` on the split's test impressions (+ `truth/ctr_*`)."""
    rows = getattr(split, "test_impressions", None)
    if rows is None:
        raise DataError("task ctr needs a split that yields impression rows (e.g. split: {name: impressions}); "
                        "this split has none")
    if len(rows) == 0:
        raise DataError("task ctr: the split left no test impressions; move the test window or use more data")
    prob = predict(model, rows)
    out = {f"ctr/{k}": v for k, v in ctr_metrics(rows, prob).items()}
    out.update(truth_ctr_metrics(getattr(dataset, "truth", None), rows, prob))
    return out
