"""Scores against a dataset's known truth: Spearman rank correlations over (user-state, item) pairs.

Method-agnostic: it needs only the dataset's `truth` object (duck-typed; the synthetic world's `WorldTruth`),
the evaluation states and a `ScoreSource`. Exact up to `max_states` evaluation states and `max_items` items;
above, a seeded sample of that many states (state s stands for its user u = states.user[s]) crossed with a sample of
that many items plus every target item of the sampled states (`truth/n_pairs` logs the pairs); the pooled
correlations take all of that grid up to `max_pooled` pairs, above it a seeded sample of that many plus every target
pair (`truth/n_pooled_pairs`); the scores are ranked once per pooling and reused against every truth. The truth is
asked for just those blocks (`<table>_rows(users, items)`), so nothing of size users × items is built; the truth side
(the grid, its tables and their rankings: `TruthGrid`) is built once per (dataset, split, seed) and reused by the
cells that follow on it. Metrics:

- `truth/spearman_joint`, `truth/spearman_item_given_user`, `truth/spearman_user_given_item`,
  `truth/spearman_pmi`: pooled over the pooled pairs, against log p(u, i), log p(i|u), log p(u|i) and the PMI
  log p(u, i)/(p(u)p(i));
- `truth/spearman_intensity` (models whose `score_kind` is intensity or log_intensity): against the true
  λ(x, y) of each state (`truth.pair_intensity(states)`);
- within-query averages, because a conditional is only identified up to a per-query shift (a row softmax leaves
  φ(u, i) + f(u) free, a column softmax φ + g(i)): `truth/spearman_item_given_user_per_state` and
  `truth/spearman_pmi_per_state` (items ranked per state, averaged over states; within a state log p(u, i)
  and log p(i|u) rank alike), `truth/spearman_user_given_item_per_item` and `truth/spearman_pmi_per_item`
  (states ranked per item, averaged over items). Queries whose scores or truth are constant are left out.

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from harness.memory import require

_FLOOR = 1e-300
POOLED = {"joint": "log_joint", "item_given_user": "log_item_given_user",
          "user_given_item": "log_user_given_item", "pmi": "pmi"}


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows (nan where a row is constant)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1.0), np.nan)


def rankdata(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Average ranks (1-based, ties get the mean of their positions), as `scipy.stats.rankdata` with
    method='average': of the flattened array (axis None) or of each row (axis 1, 2-D). One unstable argsort per
    row and a vectorised pass over the tie runs: about twice scipy's speed on the truth grid's rows, where the
    truth metrics spend most of their time."""
    x = np.asarray(x)
    if axis is None:
        return _row_ranks(x.reshape(1, -1))[0]
    if axis not in (1, -1) or x.ndim != 2:
        raise ValueError("rankdata ranks a flattened array (axis=None) or the rows of a 2-D array (axis=1)")
    return _row_ranks(x)


def _row_ranks(x: np.ndarray) -> np.ndarray:
    n, m = x.shape
    out = np.empty((n, m), dtype=np.float64)
    if x.size == 0:
        return out
    order = np.argsort(x, axis=1)
    xs = np.take_along_axis(x, order, axis=1)
    starts_run = np.empty((n, m), dtype=bool)
    starts_run[:, 0] = True
    np.not_equal(xs[:, 1:], xs[:, :-1], out=starts_run[:, 1:])
    starts = np.flatnonzero(starts_run)
    lengths = np.diff(np.append(starts, n * m))
    mean_rank = (starts % m) + (lengths + 1) / 2.0
    np.put_along_axis(out, order, np.repeat(mean_rank, lengths).reshape(n, m), axis=1)
    if np.issubdtype(x.dtype, np.floating):
        out[np.isnan(x).any(axis=1)] = np.nan  # (as scipy: a row with a nan has no ranks)
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of two equally long vectors (average ranks for ties), nan if either is constant."""
    return float(_pearson_rows(rankdata(np.ravel(x))[None, :], rankdata(np.ravel(y))[None, :])[0])


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of x with the same row of y (nan for constant rows)."""
    return _pearson_rows(rankdata(x, axis=1), rankdata(y, axis=1))


def _nanmean(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def sample_pairs(evalset, n_items: int, seed: int, max_states: int, max_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The (state rows, items) grid the truth metrics score: every state and item up to `max_states` and
    `max_items` (exact); above, a seeded sample of each, and the sampled states' target items always join the
    items (so every target pair of a sampled state is scored)."""
    rng = np.random.default_rng([seed, 7])
    n_states = evalset.n_states
    rows = np.arange(n_states) if n_states <= max_states else np.sort(rng.choice(n_states, max_states, replace=False))
    if n_items <= max_items:
        return rows, np.arange(n_items)
    items = rng.choice(n_items, max_items, replace=False)
    return rows, np.union1d(items, evalset.targets[rows].indices).astype(np.int64)


def _truth_block(truth: Any, attr: str, users: np.ndarray, items: np.ndarray) -> np.ndarray | None:
    """A truth table on (users × items): the truth's `<attr>_rows(users, items)` when it computes blocks on demand,
    else its dense `<attr>()` indexed (small hand-built truths)."""
    rows_fn = getattr(truth, attr + "_rows", None)
    if rows_fn is not None:
        return np.asarray(rows_fn(users, items))
    fn = getattr(truth, attr, None)
    return None if fn is None else np.asarray(fn())[users][:, items]


class TruthGrid:
    """The model-independent side of the truth metrics on one (states × items) grid: the sampled rows and items, the
    truth tables on the grid, the pooled pairs, and every truth ranking the metrics compare scores with. The same
    for every cell of one (dataset, split, seed): built once and reused (`truth_grid`)."""

    def __init__(self, truth: Any, evalset, n_items: int, seed: int, max_states: int, max_items: int,
                 max_pooled: int):
        self.rows, self.items = sample_pairs(evalset, n_items, seed, max_states, max_items)
        rows, items = self.rows, self.items
        require(8.0 * len(rows) * len(items) * (len(POOLED) + 4),
                f"the truth metrics ({len(rows):,} states × {len(items):,} items, float64)",
                "lower the truth sample (max_states, max_items)")
        self.users = np.asarray(evalset.states.user, dtype=np.int64)[rows]
        self.targets: dict[str, np.ndarray] = {}
        for name, attr in POOLED.items():
            block = _truth_block(truth, attr, self.users, items)
            if block is not None:
                self.targets[name] = block
        self.pooled = pooled_pairs(evalset.targets[rows][:, items], seed, max_pooled)
        self.pooled_ranks = {name: rankdata(t[self.pooled])[None, :] for name, t in self.targets.items()}
        self.state_ranks = {name: rankdata(self.targets[name], axis=1) for name in ("item_given_user", "pmi")
                            if name in self.targets}
        self.item_ranks = {name: rankdata(self.targets[name].T, axis=1) for name in ("user_given_item", "pmi")
                           if name in self.targets and len(rows) > 1}


_LAST_GRID: list = []
"""[(truth, data_key, evalset, key, grid)]: the last grid, held with the objects it was built from (so `is`
identifies them)."""


def truth_grid(truth: Any, evalset, n_items: int, seed: int, max_states: int, max_items: int,
               max_pooled: int, data_key: str | None = None) -> TruthGrid:
    """The TruthGrid of (truth, evalset, seed, limits), reused while the cells of one split follow each other (the
    runner runs a (dataset, split, seed) group's cells in a row and keeps its split per process). Each cell loads
    its own copy of a cached dataset, so a truth is recognised by its dataset's cache key (`data_key`) when it has
    one, else by identity."""
    key = (n_items, seed, max_states, max_items, max_pooled)
    if _LAST_GRID:
        last_truth, last_data, last_evalset, last_key, grid = _LAST_GRID[0]
        same_truth = last_truth is truth or (data_key is not None and last_data == data_key)
        if same_truth and last_evalset is evalset and last_key == key:
            return grid
    _LAST_GRID.clear()  # (free the previous grid before building the next)
    grid = TruthGrid(truth, evalset, n_items, seed, max_states, max_items, max_pooled)
    _LAST_GRID.append((truth, data_key, evalset, key, grid))
    return grid


def truth_metrics(dataset: Any, evalset, source, score_kind: str = "logit", seed: int = 0,
                  max_states: int = 2000, max_items: int = 2000, max_pooled: int = 1_000_000) -> dict[str, float]:
    """The `truth/*` metrics of one fitted model's scores (empty when the dataset has no truth); `truth/n_pairs`
    logs the (state, item) grid the per-state and per-item averages use, `truth/n_pooled_pairs` the pairs of it the
    pooled correlations use."""
    truth = getattr(dataset, "truth", None)
    states = evalset.states
    if truth is None or len(states) == 0:
        return {}
    meta = getattr(dataset, "meta", None)
    grid = truth_grid(truth, evalset, source.n_items, seed, max_states, max_items, max_pooled,
                      meta.get("cache_key") if isinstance(meta, dict) else None)
    rows, items, pooled = grid.rows, grid.items, grid.pooled
    scores = source.grid_scores(rows, items).astype(np.float64)
    out: dict[str, float] = {"truth/n_pairs": float(scores.size), "truth/n_pooled_pairs": float(pooled.sum())}
    pooled_ranks = dict(grid.pooled_ranks)
    if score_kind in ("intensity", "log_intensity") and hasattr(truth, "pair_intensity"):
        lam = np.asarray(truth.pair_intensity(states.take(rows)))[:, items]
        pooled_ranks["intensity"] = rankdata(np.log(np.maximum(lam, _FLOOR))[pooled])[None, :]
    score_ranks = rankdata(scores[pooled])[None, :]  # ranked once, against every truth
    for name, t_ranks in pooled_ranks.items():
        out[f"truth/spearman_{name}"] = float(_pearson_rows(score_ranks, t_ranks)[0])
    if grid.state_ranks:
        by_state = rankdata(scores, axis=1)
        for name, t_ranks in grid.state_ranks.items():
            out[f"truth/spearman_{name}_per_state"] = _nanmean(_pearson_rows(by_state, t_ranks))
    if grid.item_ranks:
        by_item = rankdata(scores.T, axis=1)
        for name, t_ranks in grid.item_ranks.items():
            out[f"truth/spearman_{name}_per_item"] = _nanmean(_pearson_rows(by_item, t_ranks))
    return out


def pooled_pairs(targets, seed: int, max_pooled: int) -> np.ndarray:
    """Which pairs of the (states × items) grid the pooled Spearman takes: all up to `max_pooled`; above, a seeded
    sample of that many plus every target pair of the grid (a boolean mask of the grid)."""
    n_rows, n_cols = targets.shape
    if n_rows * n_cols <= max_pooled:
        return np.ones((n_rows, n_cols), dtype=bool)
    rng = np.random.default_rng([seed, 8])
    mask = np.zeros(n_rows * n_cols, dtype=bool)
    mask[rng.choice(n_rows * n_cols, max_pooled, replace=False)] = True
    mask = mask.reshape(n_rows, n_cols)
    t = targets.tocoo()
    mask[t.row, t.col] = True
    return mask
