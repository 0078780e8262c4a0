"""The ranking engine: top-k of score blocks in torch, under a memory budget.

Rows (user-states for itemrec, items for userrec) are scored in blocks — a matmul when the
model exposes factors — and reduced to their top-k at once, so the full score matrix never
exists. Ties are broken by the lower column index, exactly, so results do not depend on the
block size or the device.

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import scipy.sparse as sp
import torch

BYTES_PER_SCORE = 12
"""Peak bytes per score element in a block: the float32 block, top-k scratch and the mask."""

Scorer = Callable[[np.ndarray], torch.Tensor]
"""scorer(rows) -> scores of those rows against every column, [len(rows), n_cols]."""


@dataclass
class TopK:
    """Top-k per row: `index` [n_rows, k] int64 column ids and their `score` [n_rows, k] float32."""

    index: np.ndarray
    score: np.ndarray


def block_rows(n_cols: int, budget_mib: float, cap: int = 65536) -> int:
    """How many rows of `n_cols` scores fit in the budget."""
    return int(max(1, min(cap, (budget_mib * 2**20) // max(1, n_cols * BYTES_PER_SCORE))))


def row_blocks(n_rows: int, n_cols: int, budget_mib: float, block_size: int | None = None) -> Iterator[slice]:
    step = block_size or block_rows(n_cols, budget_mib)
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def topk_block(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each row, ties broken by the lower column index (exactly, at any block size)."""
    n_cols = scores.shape[1]
    k = min(k, n_cols)
    kk = min(k + 1, n_cols)
    vals, idx = torch.topk(scores, kk, dim=1, largest=True, sorted=True)
    if kk > k:
        # a tie straddling the cut: topk may keep any of the tied columns; redo those rows stably
        straddle = (vals[:, k - 1] == vals[:, k]).nonzero().flatten()
        if len(straddle):
            sv, si = torch.sort(scores[straddle], dim=1, descending=True, stable=True)
            vals[straddle, :k] = sv[:, :k]
            idx[straddle, :k] = si[:, :k]
        vals, idx = vals[:, :k], idx[:, :k]
    if k > 1:
        tied = (vals[:, 1:] == vals[:, :-1]).any(1).nonzero().flatten()
        if len(tied):
            # ties inside the top-k: order those rows by column index, then stably by score
            tv, ti = vals[tied], idx[tied]
            order = torch.argsort(ti, dim=1)
            tv, ti = tv.gather(1, order), ti.gather(1, order)
            order = torch.sort(tv, dim=1, descending=True, stable=True).indices
            vals, idx = vals.contiguous(), idx.contiguous()
            vals[tied], idx[tied] = tv.gather(1, order), ti.gather(1, order)
    return vals, idx


def mask_block(scores: torch.Tensor, exclude: sp.csr_matrix | None, rows: slice | np.ndarray) -> None:
    """Set excluded (row, column) pairs of this block to -inf, in place."""
    if exclude is None:
        return
    sub = exclude[rows]
    if sub.nnz == 0:
        return
    r = np.repeat(np.arange(sub.shape[0]), np.diff(sub.indptr))
    dev = scores.device
    scores[torch.as_tensor(r, device=dev), torch.as_tensor(sub.indices.astype(np.int64), device=dev)] = -torch.inf


def topk_rows(scorer: Scorer, n_rows: int, n_cols: int, k: int, exclude: sp.csr_matrix | None = None,
              budget_mib: float = 256.0, block_size: int | None = None) -> TopK:
    """Top-k columns of every row, scoring `block_size` rows at a time (default: as many as the
    budget allows). Returns numpy arrays on the CPU."""
    k = min(k, n_cols)
    out_i = np.empty((n_rows, k), dtype=np.int64)
    out_s = np.empty((n_rows, k), dtype=np.float32)
    for blk in row_blocks(n_rows, n_cols, budget_mib, block_size):
        scores = scorer(np.arange(blk.start, blk.stop))
        scores = scores.float() if scores.dtype != torch.float32 else scores
        mask_block(scores, exclude, blk)
        vals, idx = topk_block(scores, k)
        out_i[blk] = idx.cpu().numpy()
        out_s[blk] = vals.cpu().numpy()
        del scores
    return TopK(index=out_i, score=out_s)


def factor_scorer(u: torch.Tensor, v: torch.Tensor, rows: np.ndarray | None = None) -> Scorer:
    """scorer over rows of `u` (optionally a subset `rows`) against all rows of `v`: u @ v.T."""
    sel = None if rows is None else torch.as_tensor(rows, device=u.device)
    vt = v.T.contiguous() if v.shape[0] * v.shape[1] < 2**26 else v.T

    def score(block: np.ndarray) -> torch.Tensor:
        if sel is None:
            ub = u[int(block[0]):int(block[-1]) + 1] if len(block) and block[-1] - block[0] + 1 == len(block) \
                else u[torch.as_tensor(block, device=u.device)]
        else:
            ub = u[sel[torch.as_tensor(block, device=u.device)]]
        return ub @ vt

    return score
