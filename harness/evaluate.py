"""Evaluate one fitted model on one evaluation set, for every task it serves, from the same scores.

itemrec ranks items per user-state; userrec ranks user-states per item. Queries without a
target are left out of the averages and counted (`n_without_target`), never dropped silently.

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from .model import Model
from .ranking import TopK, factor_scorer, row_blocks, topk_rows
from .specs import MetricSpec
from .splits import EvalSet

EVAL_CHUNK = 65536

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class TaskResult:
    """Aggregated metrics (`ndcg_10`, `n_queries`, ...), per-query values {metric: values aligned
    with `queries`} and the top-K lists."""

    task: str
    metrics: dict[str, float]
    per_query: dict[str, np.ndarray]
    queries: np.ndarray
    topk: TopK | None = None
    truth: sp.csr_matrix | None = None
    extra: dict = field(default_factory=dict)

    def per_query_frame(self, label: str | None = None) -> pd.DataFrame:
        """Long format (task, metric, query, value) for artifacts and significance tests."""
        import pandas as pd

        frames = [pd.DataFrame({"metric": m, "query": self.queries, "value": v}) for m, v in self.per_query.items()]
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["metric", "query", "value"])
        df.insert(0, "task", label or self.task)
        return df


class ScoreSource:
    """The scores of one fitted model on one set of user-states, computed block by block."""

    def __init__(self, model: Model, evalset: EvalSet, n_items: int, device: torch.device):
        self.model, self.states, self.n_items, self.device = model, evalset.states, n_items, device
        f = model.factors(self.states)
        self.u = self.v = None
        if f is not None:
            self.u = torch.as_tensor(f[0], device=device, dtype=torch.float32)
            self.v = torch.as_tensor(f[1], device=device, dtype=torch.float32)

    def _state_block(self, rows: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.model.score_block(self.states, rows), device=self.device, dtype=torch.float32)

    def item_topk(self, state_rows: np.ndarray, k: int, exclude: sp.csr_matrix | None,
                  budget_mib: float, block_size: int | None = None) -> TopK:
        """Top-k items for each of `state_rows`."""
        if self.u is not None:
            scorer = factor_scorer(self.u, self.v, state_rows)
        else:
            def scorer(blk):
                return self._state_block(state_rows[blk])
        excl = None if exclude is None else exclude[state_rows]
        return topk_rows(scorer, len(state_rows), self.n_items, k, excl, budget_mib, block_size)

    def user_topk(self, item_rows: np.ndarray, k: int, exclude_t: sp.csr_matrix | None,
                  budget_mib: float, block_size: int | None = None) -> TopK:
        """Top-k user-states for each of `item_rows` (exclude_t: items x states)."""
        n_states = len(self.states)
        excl = None if exclude_t is None else exclude_t[item_rows]
        if self.u is not None:
            return topk_rows(factor_scorer(self.v, self.u, item_rows), len(item_rows), n_states, k, excl,
                             budget_mib, block_size)
        return self._user_topk_streamed(item_rows, k, excl, budget_mib, block_size)

    def _user_topk_streamed(self, item_rows, k, excl, budget_mib, block_size) -> TopK:
        """Without factors: score state blocks against all items and merge running top-k per item."""
        k = min(k, len(self.states))
        cols = torch.as_tensor(item_rows, device=self.device)
        run_v = torch.full((len(item_rows), 0), -torch.inf, device=self.device)
        run_i = torch.zeros((len(item_rows), 0), dtype=torch.long, device=self.device)
        excl_c = None if excl is None else excl.tocsc()
        for blk in row_blocks(len(self.states), self.n_items, budget_mib, block_size):
            s = self._state_block(np.arange(blk.start, blk.stop))[:, cols].T.contiguous()
            if excl_c is not None:
                sub = excl_c[:, blk].tocsr()
                r = np.repeat(np.arange(sub.shape[0]), np.diff(sub.indptr))
                cols_ex = torch.as_tensor(sub.indices.astype(np.int64), device=s.device)
                s[torch.as_tensor(r, device=s.device), cols_ex] = -torch.inf
            idx = torch.arange(blk.start, blk.stop, device=self.device).expand(len(item_rows), -1)
            run_v, run_i = merge_topk(torch.cat([run_v, s], 1), torch.cat([run_i, idx], 1), k)
        return TopK(index=run_i.cpu().numpy(), score=run_v.cpu().numpy())

    def grid_scores(self, state_rows: np.ndarray, items: np.ndarray, block_rows: int = 256) -> np.ndarray:
        """Scores of every (state, item) of `state_rows` × `items` (float32, rows × items): a matmul per block of
        rows with factors, else the model's state block restricted to `items` (not a gather per pair)."""
        out = np.empty((len(state_rows), len(items)), dtype=np.float32)
        cols = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self.device)
        v = None if self.u is None else self.v[cols]
        for start in range(0, len(state_rows), block_rows):
            rows = np.asarray(state_rows[start:start + block_rows], dtype=np.int64)
            if v is not None:
                val = self.u[torch.as_tensor(rows, device=self.device)] @ v.T
            else:
                val = self._state_block(rows)[:, cols]
            out[start:start + len(rows)] = val.float().cpu().numpy()
        return out

    def pair_scores(self, state_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Scores of (state, item) pairs, arrays of the same shape."""
        shape = np.shape(state_idx)
        s_flat, i_flat = np.ravel(state_idx), np.ravel(item_idx)
        out = np.empty(len(s_flat), dtype=np.float32)
        for start in range(0, len(s_flat), 1 << 20):
            s = torch.as_tensor(s_flat[start:start + (1 << 20)], device=self.device)
            i = torch.as_tensor(i_flat[start:start + (1 << 20)], device=self.device)
            if self.u is not None:
                val = (self.u[s] * self.v[i]).sum(1)
            else:
                uniq, inv = torch.unique(s, return_inverse=True)
                val = self._state_block(uniq.cpu().numpy())[inv, i]
            out[start:start + len(s)] = val.float().cpu().numpy()
        return out.reshape(shape)


def merge_topk(vals: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of candidate (value, global index) pairs per row, ties to the lower index."""
    order = torch.argsort(idx, dim=1)
    vals, idx = vals.gather(1, order), idx.gather(1, order)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices[:, :k]
    return vals.gather(1, order), idx.gather(1, order)


def hit_matrix(index: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """hits[q, j] = 1.0 if index[q, j] is a target of query row q of `truth` (vectorised lookup)."""
    n, k = index.shape
    width = np.int64(truth.shape[1])
    t = truth.tocsr()
    t.sort_indices()
    t_keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(t.indptr)) * width + t.indices
    if len(t_keys) == 0:  # no target in these rows (a chunk of target-less queries): no hits
        return np.zeros((n, k))
    q_keys = (np.arange(n, dtype=np.int64)[:, None] * width + index).ravel()
    pos = np.searchsorted(t_keys, q_keys)
    found = (pos < len(t_keys)) & (t_keys[np.minimum(pos, len(t_keys) - 1)] == q_keys)
    return found.reshape(n, k).astype(np.float64)


def score_rankings(index: np.ndarray, truth: sp.csr_matrix, cutoffs: list[int], metrics: dict[str, MetricSpec],
                   weight: np.ndarray, n_candidates: int, queries: np.ndarray, task: str
                   ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Aggregated and per-query metric values at each cut-off, from top-K lists and a truth matrix
    whose rows align with `index`. Computed in chunks of rows; results do not depend on the chunking."""
    n_rel_all = np.diff(truth.indptr)
    per_query: dict[str, list[np.ndarray]] = {}
    counts = {k: np.zeros(n_candidates, dtype=np.int64) for k in cutoffs}
    for start in range(0, len(index), EVAL_CHUNK):
        sl = slice(start, start + EVAL_CHUNK)
        hits = torch.as_tensor(hit_matrix(index[sl], truth[sl]))
        n_rel = torch.as_tensor(n_rel_all[sl], dtype=torch.float64)
        for k in cutoffs:
            kk = min(k, hits.shape[1])
            padded = hits if kk == k else torch.nn.functional.pad(hits, (0, k - kk))
            for name, spec in metrics.items():
                if spec.per_query:
                    per_query.setdefault(f"{name}_{k}", []).append(spec.factory()(padded, n_rel, k).numpy())
            counts[k] += np.bincount(index[sl, :k].ravel(), minlength=n_candidates)
    out: dict[str, float] = {}
    values: dict[str, np.ndarray] = {}
    for key, parts in per_query.items():
        values[key] = np.concatenate(parts) if parts else np.zeros(0)
        out[key] = float(values[key].mean()) if len(values[key]) else float("nan")
    for k in cutoffs:
        for name, spec in metrics.items():
            if not spec.per_query:
                out[f"{name}_{k}"] = spec.factory()(counts[k], weight)
    return out, values


@dataclass(frozen=True)
class EvalRequest:
    """One task measured one way (full ranking, or `negatives` sampled per positive): everything the evaluation
    needs besides the scores and the targets, in one typed record instead of a trail of loose arguments."""

    task: str
    cutoffs: tuple[int, ...]
    metrics: dict[str, MetricSpec]
    negatives: int | None = None
    weighting: str = "uniform"
    exclude_seen: bool = True
    budget_mib: float = 256.0
    block_size: int | None = None

    @property
    def sampled(self) -> bool:
        return self.negatives is not None

    @property
    def prefix(self) -> str:
        """Where its metrics are logged: `itemrec/...`, or `itemrec_s99/...` (`p`: popularity-weighted negatives)."""
        if not self.sampled:
            return self.task
        return f"{self.task}_s{self.negatives}" + ("p" if self.weighting == "popularity" else "")

    def run(self, source: ScoreSource, evalset: EvalSet, popularity: np.ndarray, seed: int = 0,
            key: str = "") -> TaskResult:
        """The task's metrics on `evalset` (sampled candidates are drawn once per `key` and stored)."""
        if self.sampled:
            return evaluate_sampled(self.task, source, evalset, list(self.cutoffs), self.metrics, popularity,
                                    self.negatives, self.weighting, seed, key)
        return evaluate_full(self.task, source, evalset, list(self.cutoffs), self.metrics, popularity,
                             exclude_seen=self.exclude_seen, budget_mib=self.budget_mib, block_size=self.block_size)


def evaluate_full(task: str, source: ScoreSource, evalset: EvalSet, cutoffs: list[int],
                  metrics: dict[str, MetricSpec], item_popularity: np.ndarray, exclude_seen: bool = True,
                  budget_mib: float = 256.0, block_size: int | None = None) -> TaskResult:
    """Full ranking over all items (itemrec) or all test user-states (userrec)."""
    targets = evalset.remaining_targets(exclude_seen)
    exclude = evalset.exclude if exclude_seen else None
    k_max = max(cutoffs)
    if task == "itemrec":
        truth_all, weight, n_cand = targets, item_popularity.astype(np.float64), targets.shape[1]
    elif task == "userrec":
        truth_all, weight, n_cand = targets.T.tocsr(), evalset.states.lengths.astype(np.float64), targets.shape[0]
        exclude = None if exclude is None else exclude.T.tocsr()
    else:
        raise ValueError(f"evaluate_full does not rank for task {task!r}")
    n_rel = np.diff(truth_all.indptr)
    queries = np.flatnonzero(n_rel > 0)
    if task == "itemrec":
        topk = source.item_topk(queries, k_max, exclude, budget_mib, block_size)
    else:
        topk = source.user_topk(queries, k_max, exclude, budget_mib, block_size)
    truth = truth_all[queries]
    values, per_query = score_rankings(topk.index, truth, cutoffs, metrics, weight, n_cand, queries, task)
    values["n_queries"] = float(len(queries))
    values["n_without_target"] = float(len(n_rel) - len(queries))
    return TaskResult(task=task, metrics=values, per_query=per_query, queries=queries, topk=topk, truth=truth)


def evaluate_sampled(task: str, source: ScoreSource, evalset: EvalSet, cutoffs: list[int],
                     metrics: dict[str, MetricSpec], item_popularity: np.ndarray, negatives: int, weighting: str,
                     seed: int, key: str, cache_dir=None) -> TaskResult:
    """Sampled candidates (UniMatch's protocol): each query ranks its positive among `negatives`
    sampled negatives, drawn once per key and stored, so every model meets the same candidates."""
    from .candidates import sampled_candidates

    cands = sampled_candidates(evalset, task, negatives, weighting, item_popularity, seed, cache_dir, key)
    owner, c = cands.owner, cands.candidates
    if task == "itemrec":
        scores = source.pair_scores(np.broadcast_to(owner[:, None], c.shape), c)
        n_cand, weight = evalset.targets.shape[1], item_popularity.astype(np.float64)
    else:
        scores = source.pair_scores(c, np.broadcast_to(owner[:, None], c.shape))
        n_cand, weight = evalset.n_states, evalset.states.lengths.astype(np.float64)
    # rank candidates by score, ties to the lower candidate id (as the full-ranking engine does)
    order = np.lexsort((c, -scores), axis=1)[:, :max(cutoffs)]
    index = np.take_along_axis(c, order, 1)
    n = len(c)
    truth = sp.csr_matrix((np.ones(n, np.float32), c[:, 0], np.arange(n + 1)), shape=(n, n_cand))
    values, per_query = score_rankings(index, truth, cutoffs, metrics, weight, n_cand, np.arange(n), task)
    values["n_queries"] = float(n)
    return TaskResult(task=task, metrics=values, per_query=per_query, queries=np.arange(n))


def validation_ndcg(valid: EvalSet, score_rows, n_items: int, k: int = 10, block_size: int | None = None,
                    budget_mib: float = 256.0) -> float:
    """NDCG@k of the item ranking on a validation set, for early stopping: ranked by the same top-k engine as
    itemrec, with the set's excluded (seen) pairs masked; states without a remaining target are left out.
    `score_rows(state_rows) -> [len(state_rows), n_items]` scores rows of `valid.states`."""
    targets = valid.remaining_targets()
    rows = np.flatnonzero(np.diff(targets.indptr) > 0)
    if not len(rows):
        return 0.0
    exclude = None if valid.exclude is None else valid.exclude[rows]
    top = topk_rows(lambda blk: score_rows(rows[blk]), len(rows), n_items, k, exclude, budget_mib, block_size)
    hits = hit_matrix(top.index, targets[rows])
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * disc[:hits.shape[1]]).sum(1)
    ideal = np.cumsum(disc)[np.minimum(np.diff(targets[rows].indptr), k) - 1]
    return float((dcg / ideal).mean())
