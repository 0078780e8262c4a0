"""The Dual planner on candidate pairs (issue 14): Algorithm 1 restricted to the pairs that can enter the plan, with a
certificate that no pruned pair could.

At 10^5 states x 2·10^4 items the dense planner evaluates 2·10^9 sigmoids per root-finding iteration. At the end of
the annealing (eps -> 0) only the pairs with lambda_xy - u_x - v_y > 0 carry plan mass, and each state takes about K
items, so Algorithm 1 is run on a sparse set of candidate pairs, kept as flat (state, item, lambda) arrays:
- per state, its top-M items of lambda - v (M defaults to 2K): the pairs its u-step and the plan can use;
- per item, its top-T states of lambda - u (T = 8·ceil(beta·|X|) + 8): the states an item below its minimum exposure
  is pushed into, so its v-step root (the beta-quantile of lambda - u over the states) is found among them.
Pairs outside both sets count 0 in every sum: the restricted problem. Its solution is the full problem's when every
pruned pair has lambda - u - v < 0 (the LP's reduced costs: then (u, v) is dual-feasible for the full LP and the
pruned pairs carry no plan mass). The set records, at its last refresh, the largest pruned value per state
(lambda - v_ref) and per item (lambda - u_ref); with the current roots a pruned pair's lambda - u - v is at most
    min(row_bound_x - u_x + (v_ref_y - v_y),  col_bound_y - v_y + (u_ref_x - u_x))
and it is certified when that is below 0 (its sigmoid then below sigmoid(bound / eps): `pruned_mass` bounds their
sum). Whenever a state has a pair that is not certified after an epoch, the set is rebuilt from the
current v and u in one pass over the score blocks (`refreshes`); after the last epoch the planner keeps rebuilding
and repeating the final epoch until the certificate holds (`extra_epochs`, at most `max_extra`; then a warning).
After each rebuild the u- and v-steps alternate at that eps until v settles (at most SETTLE times). While eps is large
the restricted problem's entropic solution differs from the dense one (the pruned pairs would carry mass); its
eps -> 0 limit is the same LP, which is what the certificate checks.

The plan itself is the dense one given v: every state's top-K of lambda - v over all items (`topk_assignment`).
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch

from harness.plugin import NEG, PlanningScores
from plugins.planners.roots import (
    MARGIN,
    SETTLE_FLOOR,
    SETTLE_TOL,
    TOL_COUNT,
    bracketed_root,
    initial_duals,
    only_moved,
)

SETTLE = 30
"""Alternations allowed at one eps after the candidate set changed (until v moves less than
max(SETTLE_TOL·eps, SETTLE_FLOOR))."""
CHUNK = 1 << 22
"""Candidate pairs per chunk of a root-finding evaluation (16 MiB per float32 temporary)."""


def _sums(w: torch.Tensor, seg: torch.Tensor, x: torch.Tensor, n_seg: int, eps: float,
          live: torch.Tensor | None = None):
    """Per segment, the sum of sigmoid((w - x_seg) / eps) and of its derivative's numerator sigma·(1 - sigma), over
    the entries of the `live` segments only when given, in chunks of CHUNK entries (the temporaries stay small beside
    the candidate arrays)."""
    s = torch.zeros(n_seg, device=w.device)
    d = torch.zeros(n_seg, device=w.device)
    for lo in range(0, len(w), CHUNK):
        sg, wc = seg[lo:lo + CHUNK], w[lo:lo + CHUNK]
        if live is not None:
            pick = live.index_select(0, sg).nonzero().squeeze(1)
            sg, wc = sg.index_select(0, pick), wc.index_select(0, pick)
        z = (wc - x.index_select(0, sg)).div_(eps).sigmoid_()
        s.index_add_(0, sg, z)
        d.index_add_(0, sg, z.sub_(z * z))
    return s, d


def solve_segments(w: torch.Tensor, seg: torch.Tensor, n: torch.Tensor, count: float, eps: float, iters: int,
                   x0: torch.Tensor | None = None) -> torch.Tensor:
    """Per segment s (the entries e with seg[e] = s; n[s] of them), the x_s with sum_e sigmoid((w_e - x_s) / eps)
    = count. With at most `count` entries there is no root and the bracket's lower end is returned; an empty
    segment gets 0."""
    n_seg = len(n)
    hi = torch.full((n_seg,), -math.inf, device=w.device)
    lo = torch.full((n_seg,), math.inf, device=w.device)
    for start in range(0, len(w), CHUNK):  # in chunks: the reduction's own index copy stays small
        hi.scatter_reduce_(0, seg[start:start + CHUNK], w[start:start + CHUNK], "amax")
        lo.scatter_reduce_(0, seg[start:start + CHUNK], w[start:start + CHUNK], "amin")
    # at x = max w - logit(count/n)·eps every entry's sigmoid is <= count/n, so the sum is <= count (and >= at min)
    share = torch.logit((count / n.clamp_min(1).double()).clamp(1e-6, 1 - 1e-6)).float()
    empty = n == 0
    hi = torch.where(empty, 0.0, hi - share * eps + MARGIN)
    lo = torch.where(empty, 0.0, lo - share * eps - MARGIN)

    def lines(idx, x_part):
        """(f, df) of the segments idx (None: all) at x_part, summing only those segments' entries."""
        if idx is None:
            s_, d_ = _sums(w, seg, x_part, n_seg, eps)
            return torch.where(empty, 0.0, s_ - count), -d_ / eps
        x = torch.zeros(n_seg, dtype=x_part.dtype, device=w.device)
        x[idx] = x_part
        live = torch.zeros(n_seg, dtype=torch.bool, device=w.device)
        live[idx] = True
        s_, d_ = _sums(w, seg, x, n_seg, eps, live)
        return torch.where(empty[idx], 0.0, s_[idx] - count), -d_[idx] / eps

    return bracketed_root(only_moved(lines, lambda idx: idx), lo, hi, iters, TOL_COUNT, x0)


class _PairBuffer:
    """Growable flat (int32 state, int32 item, float32 lambda) arrays."""

    def __init__(self, capacity: int, device):
        self.rows = torch.empty(capacity, dtype=torch.int32, device=device)
        self.cols = torch.empty(capacity, dtype=torch.int32, device=device)
        self.lam = torch.empty(capacity, device=device)
        self.n = 0

    def append(self, r: torch.Tensor, c: torch.Tensor, lam: torch.Tensor) -> None:
        end = self.n + len(r)
        if end > len(self.lam):
            grow = max(end, len(self.lam) * 3 // 2)
            for name in ("rows", "cols", "lam"):
                old = getattr(self, name)
                new = torch.empty(grow, dtype=old.dtype, device=old.device)
                new[:self.n] = old[:self.n]
                setattr(self, name, new)
        self.rows[self.n:end] = r
        self.cols[self.n:end] = c
        self.lam[self.n:end] = lam
        self.n = end

    def arrays(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.rows[:self.n], self.cols[:self.n], self.lam[:self.n]


class CandidateSet:
    """The candidate pairs (flat int32 `rows`, `cols` and float32 `lam`: 12 bytes a pair) and the bounds on the
    pruned ones."""

    def __init__(self, scores: PlanningScores, v: torch.Tensor, u: torch.Tensor | None, m: int, t: int, k: int):
        """One pass over the score blocks: each state's top-m of lambda - v, and each item's states whose lambda - u
        reaches the item's threshold (`item_thresholds`: about t states per item) (u: None -> each state's K-th
        largest lambda - v, floored at 0: the eps -> 0 root given v)."""
        n_x, n_y, dev = scores.n_states, scores.n_items, scores.device
        m, t = min(m, n_y), min(t, n_x)
        self.col_bound = item_thresholds(scores, v, u, t, k)
        # the pairs are written into arrays sized for every state's m and twice the items' expected t (pages never
        # written are never resident), grown only if the items' side overflows: no list of pieces then a copy
        buf = _PairBuffer(n_x * m + 2 * n_y * t + 1024, dev)
        row_bound, kth = [], []
        for block_rows, lam in scores.blocks():
            idx = torch.as_tensor(block_rows, device=dev)
            w = lam - v[None, :]
            top = torch.topk(w, min(m + 1, n_y), dim=1)
            del w
            keep = top.indices[:, :m]
            kth.append(top.values[:, min(k, n_y) - 1])
            row_bound.append(top.values[:, m] if m < n_y else torch.full((len(idx),), -math.inf, device=dev))
            u_blk = kth[-1].clamp_min(0.0) if u is None else u[idx]
            # the item's side: lambda - u at or above the item's threshold, less the pairs the state already holds
            side = (lam - u_blk[:, None]) >= self.col_bound[None, :]
            side.scatter_(1, keep, True)  # one mask of every candidate pair of the block
            side &= lam > NEG / 2
            r, c = side.nonzero(as_tuple=True)
            buf.append(idx[r], c, lam[r, c])
        self.u_ref = torch.cat(kth).clamp_min(0.0) if u is None else u.clone()
        self.v_ref = v.clone()
        self.row_bound = torch.cat(row_bound)
        self.rows, self.cols, self.lam = buf.arrays()
        self.n_row = torch.bincount(self.rows, minlength=n_x)
        self.n_col = torch.bincount(self.cols, minlength=n_y)

    def uncertified(self, u: torch.Tensor, v: torch.Tensor) -> tuple[int, float]:
        """States with a pruned pair that might have lambda - u - v >= 0 now, and the largest such bound.

        A pruned pair (x, y) is below both its state's and its item's largest pruned value at the last refresh, so
            lambda_xy - u_x - v_y <= min(row_bound_x - u_x + (v_ref_y - v_y), col_bound_y - v_y + (u_ref_x - u_x)).
        For state x the pairs that fail the first bound are the items whose v fell by at least
        a_x = u_x - row_bound_x; among those, the largest col_bound_y - v_y (a prefix maximum over the items sorted
        by their fall) must stay below u_x - u_ref_x."""
        fall = self.v_ref - v
        order = torch.argsort(fall, descending=True)
        prefix = torch.cummax((self.col_bound - v)[order], 0).values
        a = u - self.row_bound
        n_fail = torch.searchsorted(-fall[order].contiguous(), -a.contiguous(), right=True)  # items with fall >= a
        worst = torch.where(n_fail > 0, prefix[(n_fail - 1).clamp_min(0)], -math.inf)
        bound = torch.minimum(worst + (self.u_ref - u), self.row_bound - u + fall.max())
        bad = bound >= 0
        return int(bad.sum()), float(bound.max()) if len(bound) else -math.inf


SAMPLE_RANK = 32
"""The item thresholds are the SAMPLE_RANK-th largest lambda - u over a sample of states sized for it."""


def item_thresholds(scores: PlanningScores, v: torch.Tensor, u: torch.Tensor | None, t: int, k: int) -> torch.Tensor:
    """Per item, a threshold on lambda - u that about t states reach: exactly the t-th largest when t·SAMPLE_RANK
    states or fewer are planned, else the (SAMPLE_RANK)-th largest over a seeded sample of n·SAMPLE_RANK/t states (a
    top-t per item over all states would cost a |X|-long selection per item and block). Every pair below it is
    pruned from the item's side, so it is the item's bound in the certificate whatever the sample."""
    n_x, n_y, dev = scores.n_states, scores.n_items, scores.device
    if t >= n_x:
        return torch.full((n_y,), -math.inf, device=dev)
    size = min(n_x, math.ceil(SAMPLE_RANK * n_x / t))
    rank = t if size == n_x else SAMPLE_RANK
    gen = torch.Generator().manual_seed(int(scores.seed) % 2**63 + 1)
    sample = np.sort(torch.randperm(n_x, generator=gen)[:size].numpy())
    best = None
    for block_rows, lam in scores.blocks(sample):
        if u is None:
            u_blk = torch.topk(lam - v[None, :], min(k, n_y), dim=1).values[:, -1].clamp_min(0.0)
        else:
            u_blk = u[torch.as_tensor(block_rows, device=dev)]
        top = torch.topk(lam.sub_(u_blk[:, None]), min(rank, len(block_rows)), dim=0).values
        best = top if best is None else torch.topk(torch.cat([best, top]), min(rank, len(best) + len(top)),
                                                   dim=0).values
    return best[rank - 1]


def v_low(roots: list[torch.Tensor], v: torch.Tensor) -> torch.Tensor:
    """The v the items' sums were solved against: the smaller of the lower and upper roots (v when none)."""
    return torch.stack(roots).min(0).values if roots else v


def fit_dual_pruned(scores: PlanningScores, k: int, beta: float, beta_max: float | None, epochs: int,
                    epsilon_min: float, iters: int, steps: int, candidates: int, max_extra: int = 20, log=None
                    ) -> tuple[torch.Tensor, dict]:
    """Algorithm 1 (full batch) on a CandidateSet: the item dual variables v and a summary. `log(epoch, eps, v,
    refreshes)` after every epoch, when given."""
    n_x, n_y, dev = scores.n_states, scores.n_items, scores.device
    gen = torch.Generator().manual_seed(int(scores.seed) % 2**63)
    lower, upper = beta > 0, beta_max is not None and beta_max < 1
    info = {"epochs": 0, "n_batches": 1, "epsilon": None}
    if not (lower or upper):
        return torch.zeros(n_y, device=dev), info
    v = initial_duals(gen, n_y, lower, upper, dev)  # as the dense planner starts
    t_count = column_candidates(beta, n_x)
    t0 = time.time()
    cand = CandidateSet(scores, v, None, candidates, t_count, k)
    u = cand.u_ref.clone()
    u_root = v_lo = v_hi = None
    refreshes = extra = 0
    count = float(k) if k < n_y else None
    schedule = [epsilon_min ** (e / epochs) for e in range(1, epochs + 1)]
    e, settle = 0, SETTLE
    while True:
        eps = schedule[min(e, epochs - 1)]
        for step in range(max(steps, settle)):
            if count is not None:
                w = v.index_select(0, cand.cols).neg_().add_(cand.lam)  # lambda - v, one array
                u_root = solve_segments(w, cand.rows, cand.n_row, count, eps, iters, u_root)
                u = u_root.clamp_min(0.0)
            else:
                u_root = u = torch.zeros(n_x, device=dev)
            w = u.index_select(0, cand.rows).neg_().add_(cand.lam)  # lambda - u
            v_new, roots = torch.zeros(n_y, device=dev), []
            if lower:
                if beta < 1:
                    v_lo = solve_segments(w, cand.cols, cand.n_col, beta * n_x, eps, iters, v_lo)
                    v_new += v_lo.clamp_max(0.0)
                    roots.append(v_lo)
                else:
                    v_new += torch.full((n_y,), -1e9, device=dev)
            if upper:
                v_hi = solve_segments(w, cand.cols, cand.n_col, beta_max * n_x, eps, iters, v_hi)
                v_new += v_hi.clamp_min(0.0)
                roots.append(v_hi)
            moved = float((v_new - v).abs().max())
            v = v_new
            del w
            if step + 1 >= steps and moved <= max(SETTLE_TOL * eps, SETTLE_FLOOR):
                break
        settle = 0
        e += 1
        if log is not None:
            log(e, eps, v, refreshes)
        n_bad, worst = cand.uncertified(u_root, v_low(roots, v))
        certified = n_bad == 0
        if e >= epochs and (certified or extra >= max_extra):
            break
        if not certified:  # some pruned pair might carry plan mass: rebuild the set around the current u, v
            cand = None  # (the old set's memory is freed first)
            cand = CandidateSet(scores, v, u, candidates, t_count, k)
            refreshes += 1
            u_root = v_lo = v_hi = None
            settle = SETTLE  # the new set's problem differs: alternate at this eps until v settles
        if e >= epochs:
            extra += 1  # repeat the final epoch on the rebuilt set
    if not certified:
        warnings.warn(f"planner 'dual': after {extra} extra epochs, {n_bad} user-states still have pruned candidate "
                      f"pairs that could enter the plan (candidates: {candidates} items per state); raise candidates "
                      "or set candidates: all", stacklevel=3)
    mass = n_x * n_y * float(torch.sigmoid(torch.tensor(worst / eps)))
    info.update({"epochs": epochs, "gamma": 1.0, "epsilon": eps, "fit_s": time.time() - t0,
                 "candidates": min(candidates, n_y), "candidate_pairs": int(len(cand.lam)),
                 "candidate_share": len(cand.lam) / (n_x * n_y), "refreshes": refreshes, "extra_epochs": extra,
                 "certified": int(certified), "pruned_mass": mass,
                 "v_min": float(v.min()), "v_max": float(v.max()), "v_mean": float(v.mean())})
    return v, info


def column_candidates(beta: float, n_states: int) -> int:
    """T = 8·ceil(beta·|X|) + 8, chosen by experiment: with T = 2·ceil(beta·|X|) + 8 the items below their minimum
    shared the same few states (those with the lowest u), the restricted problem had no feasible plan and the duals
    ran off along its ray (objective 46-58% of the LP optimum on 3 of 11 popularity-skewed instances); with 8x,
    as close to the LP optimum as the dense planner on all 11 (tests/test_dual_candidates.py)."""
    return min(n_states, 8 * math.ceil(beta * n_states - 1e-9) + 8)


def default_candidates(k: int, n_items: int) -> int:
    """M = 2K (at least K + 16): enough room above each state's K-th item for the duals to move between refreshes."""
    return int(min(n_items, max(2 * k, k + 16)))

