"""Sampled evaluation candidates: one positive + N negatives per query (UniMatch's 1+99 protocol).

itemrec: one query per (state, target item) pair; its row is [target item, N items that are not
a target of that state and not excluded for it (by default: not in its history)].
userrec: one query per (item, state having it as target); its row is [that state, N states that
do not have the item as target and do not have it excluded (in their history)].
Pairs that are both target and excluded are not positives (a seen item cannot be recommended, as
in full ranking with exclude_seen).

Negatives are drawn uniformly, or with `weighting="popularity"` in proportion to `popularity`
(the training item counts) for itemrec and to the states' history lengths (activeness) for userrec,
without replacement within a row: the row keeps the first N distinct valid draws of an i.i.d.
sequence, which is exactly successive sampling without replacement among the valid candidates.
Vectorised: oversampled blocks for all pending rows at once, invalid candidates rejected with a
sorted-key lookup, only the rows still short drawn again (continuing their sequence).
Deterministic per seed; stored once per key under cache_dir/candidates/ and reloaded from there.

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .errors import DataError
from .splits import EvalSet

WEIGHTINGS = ("uniform", "popularity")
_MAX_ROUNDS = 6  # rejection rounds (the block doubles each round) before the exact fallback
_BLOCK_CELLS = 1 << 24  # draws held at once (memory bound)
_DENSE_CELLS = 1 << 27  # owners x pool up to which invalid pairs are looked up in a flat boolean table


@dataclass(frozen=True, eq=False)
class Candidates:
    """`owner[q]`: the query's state (itemrec) or item (userrec); `candidates[q]`: [positive, N negatives]."""

    task: str
    owner: np.ndarray
    candidates: np.ndarray

    @property
    def query_state(self) -> np.ndarray:
        if self.task != "itemrec":
            raise AttributeError("query_state is defined for itemrec candidates; userrec queries are items")
        return self.owner

    @property
    def query_item(self) -> np.ndarray:
        if self.task != "userrec":
            raise AttributeError("query_item is defined for userrec candidates; itemrec queries are states")
        return self.owner

    @property
    def positives(self) -> np.ndarray:
        return self.candidates[:, 0]

    @property
    def n_negatives(self) -> int:
        return self.candidates.shape[1] - 1

    def __len__(self) -> int:
        return len(self.owner)


def queries(evalset: EvalSet, task: str) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    """(owner, positive, invalid) for a task: `invalid` (owners x pool) marks the pairs that may not be
    negatives (targets and excluded pairs)."""
    t = sp.csr_matrix(evalset.targets, dtype=np.float32)
    t.data[:] = 1.0
    if evalset.exclude is not None and evalset.exclude.nnz:
        ex = sp.csr_matrix(evalset.exclude, dtype=np.float32)
        ex.data[:] = 1.0
        pos = (t - t.multiply(ex)).tocsr()
        pos.eliminate_zeros()
        invalid = ((t + ex) > 0).tocsr()
    else:
        pos, invalid = t, t > 0
    if task == "userrec":
        pos, invalid = pos.T.tocsr(), invalid.T.tocsr()
    elif task != "itemrec":
        raise ValueError(f"sampled candidates rank for itemrec or userrec, not {task!r}")
    pos.sort_indices()
    invalid = sp.csr_matrix(invalid, dtype=np.int8)
    invalid.sort_indices()
    owner = np.repeat(np.arange(pos.shape[0], dtype=np.int64), np.diff(pos.indptr))
    return owner, pos.indices.astype(np.int64), invalid


def sampled_candidates(evalset: EvalSet, task: str, n_negatives: int, weighting: str, popularity: np.ndarray,
                       seed: int, cache_dir: Path | str | None, key: str) -> Candidates:
    """Candidates for every query of `task` on `evalset` (see the module doc); cached as
    cache_dir/candidates/<key>.npz when cache_dir is given."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    n_negatives = int(n_negatives)
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    owner, positive, invalid = queries(evalset, task)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / "candidates" / (re.sub(r"[^A-Za-z0-9._=-]", "_", key) + ".npz")
        loaded = _load(path, task, owner, positive, n_negatives)
        if loaded is not None:
            return loaded
    n_pool = invalid.shape[1]
    if weighting == "popularity":
        w = np.asarray(popularity if task == "itemrec" else evalset.states.lengths, dtype=np.float64)
        if len(w) != n_pool:
            raise ValueError(f"popularity has {len(w)} entries, the {task} candidate pool has {n_pool}")
        if (w < 0).any() or not np.isfinite(w).all():
            raise ValueError("popularity weights must be finite and >= 0")
    else:
        w = None
    _check_feasible(owner, invalid, w, n_negatives, task)
    rng = np.random.default_rng(seed)
    neg = _draw(rng, owner, invalid, w, n_negatives)
    cands = Candidates(task=task, owner=owner, candidates=np.concatenate([positive[:, None], neg], axis=1))
    if path is not None:
        _save(path, cands)
    return cands


# ------------------------------------------------------------------------------------------- internals

def _check_feasible(owner, invalid: sp.csr_matrix, w, n: int, task: str) -> None:
    if len(owner) == 0:
        return
    if w is None:
        avail = invalid.shape[1] - np.diff(invalid.indptr)
    else:
        live = w > 0
        avail = int(live.sum()) - np.asarray(invalid @ live.astype(np.int64)).ravel()
    short = avail[owner] < n
    if short.any():
        q = int(np.flatnonzero(short)[0])
        what = "items" if task == "itemrec" else "states"
        zero = " with non-zero weight" if w is not None else ""
        raise DataError(f"sampled candidates ({task}): query {q} (owner {int(owner[q])}) "
                        f"has only {int(avail[owner[q]])} "
                        f"possible negative {what}{zero}, fewer than negatives={n}; lower negatives"
                        + (" or use weighting: uniform" if w is not None else " or use full ranking"))


def _pair_keys(invalid: sp.csr_matrix) -> np.ndarray:
    """Sorted int64 keys owner * n_pool + candidate of the invalid pairs (indices must be sorted)."""
    width = np.int64(invalid.shape[1])
    return np.repeat(np.arange(invalid.shape[0], dtype=np.int64), np.diff(invalid.indptr)) * width + invalid.indices


def _is_invalid(keys: np.ndarray, width: int, owner: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """invalid[owner[r], cand[r, j]] for a block of draws (sorted-key lookup, no dense matrix)."""
    width = np.int64(width)
    if len(keys) == 0:
        return np.zeros(cand.shape, dtype=bool)
    q = owner[:, None] * width + cand
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return keys[pos] == q


def _first_distinct(block: np.ndarray, ok: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the first n distinct entries of `block` among those with ok, in order.
    Returns (taken [rows, n] padded with -1, count found (capped at n))."""
    rows, m = block.shape
    srt = np.argsort(np.where(ok, block, -1), axis=1, kind="stable")
    vals = np.take_along_axis(np.where(ok, block, -1), srt, 1)
    dup_sorted = np.zeros_like(ok)
    dup_sorted[:, 1:] = vals[:, 1:] == vals[:, :-1]
    dup = np.empty_like(ok)
    np.put_along_axis(dup, srt, dup_sorted, 1)
    keep = ok & ~dup
    rank = np.cumsum(keep, axis=1)
    keep &= rank <= n
    count = keep.sum(1)
    out = np.full((rows, n), -1, dtype=np.int64)
    r, c = np.nonzero(keep)
    out[r, rank[r, c] - 1] = block[r, c]
    return out, count


def _draw(rng: np.random.Generator, owner: np.ndarray, invalid: sp.csr_matrix, w, n: int) -> np.ndarray:
    n_pool = invalid.shape[1]
    n_q = len(owner)
    out = np.full((n_q, n), -1, dtype=np.int64)
    found = np.zeros(n_q, dtype=np.int64)
    cdf = None
    if w is not None:
        cdf = np.cumsum(w)
        cdf /= cdf[-1]
    # expected share of usable draws decides the first block size
    frac_bad = np.diff(invalid.indptr)[owner].mean() / max(n_pool, 1) if n_q else 0.0
    m = int(np.ceil(n * 1.3 / max(1.0 - frac_bad, 0.05))) + 8
    pending = np.arange(n_q)
    if invalid.shape[0] * n_pool <= _DENSE_CELLS:  # a flat boolean table is faster than the key lookup
        table = np.zeros(invalid.shape[0] * n_pool, dtype=bool)
        table[_pair_keys(invalid)] = True

        def lookup(own, c):
            return table[own[:, None] * n_pool + c]
    else:
        keys = _pair_keys(invalid)

        def lookup(own, c):
            return _is_invalid(keys, n_pool, own, c)
    for _ in range(_MAX_ROUNDS):
        if len(pending) == 0:
            return out
        mm = max(1, min(m, _BLOCK_CELLS // max(len(pending), 1)))
        if cdf is None:
            draws = rng.integers(0, n_pool, size=(len(pending), mm), dtype=np.int64)
        else:
            draws = np.minimum(np.searchsorted(cdf, rng.random((len(pending), mm)), side="right"), n_pool - 1)
        prev = out[pending]
        block = np.concatenate([prev, draws], axis=1)
        ok = np.concatenate([prev >= 0, ~lookup(owner[pending], draws)], axis=1)
        if w is not None:
            ok[:, n:] &= w[draws] > 0
        taken, count = _first_distinct(block, ok, n)
        out[pending] = taken
        found[pending] = count
        pending = pending[count < n]
        m *= 2
    # leftovers (weight concentrated on few valid candidates, or many duplicates): continue each row's
    # sequence exactly with Gumbel-top-k over its remaining valid candidates, a chunk of rows at a time
    if len(pending):
        logw = np.zeros(n_pool) if w is None else np.where(w > 0, np.log(np.where(w > 0, w, 1.0)), -np.inf)
        step = max(1, (_BLOCK_CELLS >> 2) // max(n_pool, 1))
        for lo in range(0, len(pending), step):
            rows = pending[lo:lo + step]
            keyv = logw[None, :] + rng.gumbel(size=(len(rows), n_pool))
            sub = invalid[owner[rows]].tocoo()
            keyv[sub.row, sub.col] = -np.inf
            taken = out[rows]
            r, c = np.nonzero(taken >= 0)
            keyv[r, taken[r, c]] = -np.inf
            if n < n_pool:
                part = np.argpartition(-keyv, n - 1, axis=1)[:, :n]
                top = np.take_along_axis(part, np.argsort(-np.take_along_axis(keyv, part, 1), axis=1), 1)
            else:
                top = np.argsort(-keyv, axis=1)
            need = n - found[rows]
            fill = np.arange(n)[None, :] < need[:, None]
            rr, cc = np.nonzero(fill)
            out[rows[rr], found[rows][rr] + cc] = top[rr, cc]
    return out


def _save(path: Path, c: Candidates) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, task=np.array(c.task), owner=c.owner, candidates=c.candidates)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path, task: str, owner: np.ndarray, positive: np.ndarray, n: int) -> Candidates | None:
    """The stored candidates, if present and made for these very queries (else None: redraw)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            t, o, c = str(z["task"]), z["owner"], z["candidates"]
    except (OSError, ValueError, KeyError):
        return None
    if t != task or c.ndim != 2 or c.shape != (len(owner), n + 1) or not np.array_equal(o, owner) \
            or not np.array_equal(c[:, 0], positive):
        return None
    return Candidates(task=task, owner=o.astype(np.int64), candidates=c.astype(np.int64))
