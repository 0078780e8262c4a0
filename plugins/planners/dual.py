"""Planner `dual` (RIM Section 4, Algorithm 1): dual variables v_y for the items, learned on a set of
user-states, modify the scores so that every state's top-K of lambda_xy - v_y meets the items'
exposure constraints.

The linear relaxation of RIM Eq. 9,
    max_pi E_xy[lambda_xy pi_xy]  s.t.  E_y[pi_xy] <= alpha,  beta <= E_x[pi_xy] <= beta_max,  0 <= pi <= 1,
regularised by eps·E_xy[H(pi_xy)], has the primal solution pi = sigmoid((lambda - u_x - v_y) / eps)
(Eq. 12), and the dual's gradients are the constraint residuals (Eq. 13). Algorithm 1 alternates:
- u-step: for every state x, find the root of E_y[pi_xy] = alpha given v; project to u_x >= 0;
- v-step: for every item y, find the root of E_x[pi_xy] = beta over the batch's states given u; project
  to v_y <= 0 (and, with beta_max, the root of E_x[pi_xy] = beta_max projected to >= 0; v is their sum);
- step v <- (1 - gamma) v + gamma v' (a running average over user batches; gamma defaults to
  1 / number of batches, the authors' SGD step, so full-batch planning is exact alternation);
with eps annealed from 1 by a factor epsilon_min^(1/epochs) per epoch (0.8^k in the paper; the authors
use 1e-10^(1/100) over 100 epochs). Roots are found per row / column, vectorised, by bisection on a
bracket that always holds the root, taking the Newton step instead of the midpoint whenever it lands
inside the bracket (the same root, in far fewer passes while eps is large).

The plan (the "Ensure" line of Algorithm 1, i.e. eps -> 0 in Eq. 14): every state takes the top-K
items of lambda_xy - v_y with lambda_xy - v_y > 0 (u_x >= 0), never a seen pair.

Convergence check (`max_steps: 5`, the default; not in the paper, which alternates once per epoch): with full batch
an epoch keeps alternating u- and v-steps while v still moves by more than 1e-3·eps, up to max_steps alternations
(`extra_alternations` in the summary). On a tight popularity-skewed instance (the minima need 114 of 122 slots) one
alternation per epoch left the plan 15.5% below the LP optimum; with the check it is within 1% (tests/
test_dual_feasible.py). `max_steps: 1` is Algorithm 1 as published. Above 25 million pairs the planner works on
candidate pairs (`candidates`, plugins/planners/dual_candidates.py).

Feasibility repair (`repair: true`, the default; not in the paper): the eps -> 0 rounding of a degenerate LP
optimum can leave items of a popularity-skewed instance far below their minimum (0 exposures for a minimum of 3
with the published 100 epochs and one alternation). After rounding, every item y below ceil(beta·|X|) is swapped
into the states that lose least by it: state x gives up one of its items z whose exposure stays at or above its own
minimum, at a loss lambda_xz - lambda_xy, never for an excluded pair and never taking y above floor(beta_max·|X|).
Every state keeps its number of items (the user capacity is untouched). The scores it needs (the deficient items'
columns and each state's assigned items) come from one pass over the row blocks. An item that still misses its
minimum (too few states may take it) raises one warning; the plan's info reports `beta_unmet_items` and
`repair_swaps`.

`mode: offline` learns v on the states it plans; `mode: online` learns v on a calibration set (the
split's calibration window, its validation set or the held-in users' states; see
`harness.matching.calibration_set`) and applies it, on the calibration set's score scale, to test
states it has never seen.

Memory (RIM Appendix C.2): scores are computed block by block from the model's factors (or
score_block) and never stored whole. A batch whose |batch| x |Y| scores fit the memory budget is
scored once per epoch; a larger batch is streamed, its blocks recomputed in each v-step iteration,
so the result does not depend on the block size (up to float summation order).
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch

from harness.plugin import (
    CONSTRAINT_PARAMS,
    NEG,
    ConfigError,
    Constraints,
    Param,
    Plan,
    Planner,
    PlannerSpec,
    PlanningScores,
    hookimpl,
    topk_assignment,
)
from plugins.planners.dual_candidates import default_candidates, fit_dual_pruned
from plugins.planners.roots import (
    MARGIN,
    SETTLE_FLOOR,
    SETTLE_TOL,
    TOL_COUNT,
    bracketed_root,
    initial_duals,
    only_moved,
)

DENSE_PAIRS = 25_000_000
"""Above this many (state, item) pairs, `candidates: null` plans on candidate pairs (dual_candidates.py)."""


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _lower_logit(target: float, n: int, n_valid: torch.Tensor) -> torch.Tensor:
    """logit(target·n / n_valid) per line: at x = min(valid w) − eps·that, every valid entry's sigmoid is at least
    target·n / n_valid, so the line's mean (excluded entries add 0) is at least target and the root lies above.
    Capped below 1 where the valid entries cannot reach the target at all (no root: the solver returns the end)."""
    share = (target * n / n_valid.clamp_min(1).double()).clamp(max=1 - 1e-6)
    return torch.logit(share).float()


def solve_rows(w: torch.Tensor, target: float, eps: float, iters: int, x0: torch.Tensor | None = None) -> torch.Tensor:
    """Per row r, the x_r with mean_j sigmoid((w_rj - x_r) / eps) = target (excluded entries sit at NEG)."""
    n_cols = w.shape[1]
    valid = w > NEG / 2
    c = _logit(target)
    hi = w.amax(1) - c * eps + MARGIN
    lo = torch.where(valid, w, torch.inf).amin(1) - _lower_logit(target, n_cols, valid.sum(1)) * eps - MARGIN
    lo = torch.where(torch.isfinite(lo), lo, hi - 1.0)

    def lines(ww, x):
        z = (ww - x[:, None]).div_(eps).sigmoid_()
        return z.mean(1) - target, -(z - z * z).mean(1) / eps

    evaluate = only_moved(lines, lambda idx: w if idx is None else w[idx])
    return bracketed_root(evaluate, lo, hi, iters, TOL_COUNT / n_cols, x0)


def solve_columns(blocks, n_cols: int, n_rows: int, target: float, eps: float, iters: int,
                  x0: torch.Tensor | None = None) -> torch.Tensor:
    """Per column j, the x_j with mean_r sigmoid((w_rj - x_j) / eps) = target, where `blocks()` yields
    the row blocks of w (recomputed on each call when they are not cached)."""
    c = _logit(target)
    hi = lo = n_valid = None
    for w in blocks():
        ok = w > NEG / 2
        bh = w.amax(0)
        bl = torch.where(ok, w, torch.inf).amin(0)
        hi = bh if hi is None else torch.maximum(hi, bh)
        lo = bl if lo is None else torch.minimum(lo, bl)
        n_valid = ok.sum(0) if n_valid is None else n_valid + ok.sum(0)
    hi = hi - c * eps + MARGIN
    lo = lo - _lower_logit(target, n_rows, n_valid) * eps - MARGIN
    lo = torch.where(torch.isfinite(lo), lo, hi - 1.0)

    def lines(idx, x):
        s = torch.zeros(len(x), dtype=torch.float64, device=x.device)
        d = torch.zeros(len(x), dtype=torch.float64, device=x.device)
        for w in blocks():
            w = w if idx is None else w[:, idx]
            z = (w - x[None, :]).div_(eps).sigmoid_()
            s += z.sum(0, dtype=torch.float64)
            d += (z - z * z).sum(0, dtype=torch.float64)
        return (s / n_rows - target).float(), (-d / (n_rows * eps)).float()

    return bracketed_root(only_moved(lines, lambda idx: idx), lo, hi, iters, TOL_COUNT / n_rows, x0)


def fit_dual(scores: PlanningScores, k: int, beta: float, beta_max: float | None, epochs: int = 100,
             epsilon_min: float = 1e-10, gamma: float | None = None, batch_size: int | None = None,
             iters: int = 50, steps: int = 1, log=None, max_steps: int | None = None) -> tuple[torch.Tensor, dict]:
    """Algorithm 1 on `scores`: the item dual variables v (|Y|,) and a summary. `max_steps` (full batch only): after
    its `steps` alternations an epoch keeps alternating while v still moves by more than
    max(SETTLE_TOL·eps, SETTLE_FLOOR), up to this many in all (None: exactly `steps`, Algorithm 1 as published)."""
    n_x, n_y = scores.n_states, scores.n_items
    dev = scores.device
    gen = torch.Generator().manual_seed(int(scores.seed) % 2**63)
    alpha = k / n_y
    lower = beta > 0
    upper = beta_max is not None and beta_max < 1
    info = {"epochs": 0, "n_batches": 0, "epsilon": None}
    if not (lower or upper):  # no item constraint: v = 0 and the plan is top-K
        return torch.zeros(n_y, device=dev), info
    v = initial_duals(gen, n_y, lower, upper, dev)
    b = int(batch_size or n_x)
    n_batches = max(1, math.ceil(n_x / b))
    g = float(gamma) if gamma is not None else 1.0 / n_batches
    per_block = scores.rows_per_block()
    t0 = time.time()
    eps = 1.0
    # warm starts: each state's and item's root from the previous epoch (before projection)
    u_root = torch.full((n_x,), float("nan"), device=dev)
    v_lo_root = v_hi_root = None
    alternations = 0
    for epoch in range(1, epochs + 1):
        eps = epsilon_min ** (epoch / epochs)
        order = torch.randperm(n_x, generator=gen).numpy() if n_batches > 1 else np.arange(n_x)
        starts = [s for s in range(0, n_x, b) for _ in range(steps)]
        more = max(0, (max_steps or steps) - steps) if n_batches == 1 else 0
        for i, start in enumerate(starts):  # (grows while v has not settled and `more` allows)
            rows = np.sort(order[start:start + b])
            cached = len(rows) <= per_block
            parts = [rows] if cached else list(scores.row_blocks(rows))

            # both generators are consumed within this batch, so they take the batch's values as defaults
            def lam_blocks(parts=parts):
                for p in parts:
                    yield scores.block(p)

            # u-step: per state, E_y[pi] = alpha given v; project to u >= 0
            us, cache = [], None
            for part, lam in zip(parts, lam_blocks(), strict=False):
                idx = torch.as_tensor(np.asarray(part), device=dev)
                if k >= n_y:
                    us.append(torch.zeros(len(lam), device=dev))
                else:
                    w = lam - v[None, :]
                    prev = u_root[idx]
                    if bool(torch.isnan(prev).any()):  # first visit: start from the hard (eps -> 0) threshold,
                        prev = torch.topk(w, k, dim=1).values[:, -1]  # the K-th largest of lambda - v
                    root = solve_rows(w, alpha, eps, iters, prev)
                    u_root[idx] = root
                    us.append(root.clamp_min(0.0))
                if cached:
                    cache = lam.sub_(us[-1][:, None])  # the batch fits: keep w = lambda - u, scored once
            u = torch.cat(us)
            offsets = np.cumsum([0] + [len(p) for p in parts])

            def w_blocks(cache=cache, u=u, offsets=offsets, lam_blocks=lam_blocks):
                if cache is not None:
                    yield cache
                    return
                for i, lam in enumerate(lam_blocks()):
                    yield lam.sub_(u[offsets[i]:offsets[i + 1], None])

            # v-step: per item, E_x[pi] = beta (-> v <= 0) and = beta_max (-> v >= 0) over the batch
            v_new = torch.zeros(n_y, device=dev)
            if lower:
                if beta < 1:
                    v_lo_root = solve_columns(w_blocks, n_y, len(rows), beta, eps, iters, v_lo_root)
                    v_new += v_lo_root.clamp_max(0.0)
                else:
                    v_new += torch.full((n_y,), -1e9, device=dev)
            if upper:
                v_hi_root = solve_columns(w_blocks, n_y, len(rows), beta_max, eps, iters, v_hi_root)
                v_new += v_hi_root.clamp_min(0.0)
            moved = float((g * (v_new - v)).abs().max())
            v = (1 - g) * v + g * v_new
            if more and i == len(starts) - 1 and moved > max(SETTLE_TOL * eps, SETTLE_FLOOR):
                starts.append(start)
                more -= 1
                alternations += 1
            cache = w_blocks = None  # free the block (w_blocks' default holds it too) before the next batch
        if log is not None:
            log(epoch, eps, v)
    info.update({"epochs": epochs, "n_batches": n_batches, "gamma": g, "epsilon": eps, "fit_s": time.time() - t0,
                 "extra_alternations": alternations,
                 "v_min": float(v.min()), "v_max": float(v.max()), "v_mean": float(v.mean())})
    return v, info


def repair_minimum(scores: PlanningScores, assignment: sp.csr_matrix, k: int, c_min: float, c_max: float
                   ) -> tuple[sp.csr_matrix, int, int]:
    """Swap every item below its minimum exposure into the states that lose least by it (module docstring).

    `c_min`, `c_max`: Constraints.check's exposure counts; an integral plan needs ceil(c_min) and at most
    floor(c_max) (with the 1e-9 of the metrics' tolerance). Returns (the repaired assignment, swaps made, items
    still below their minimum). Reads the scores once, block by block: the deficient items' columns (|X| x
    |deficient|) and each state's assigned items (|X| x K), never a |X| x |Y| array."""
    n_x, n_y = assignment.shape
    a = sp.csr_matrix(assignment)
    a.sort_indices()
    need = int(math.ceil(c_min - 1e-9))
    cap = int(math.floor(c_max + 1e-9))
    exposure = np.bincount(a.indices, minlength=n_y).astype(np.int64)
    deficient = np.flatnonzero(exposure < need)
    if len(deficient) == 0:
        return assignment, 0, 0
    # each state's assigned items in K slots (-1: an empty slot)
    load = np.diff(a.indptr)
    slots = np.full((n_x, max(k, 1)), -1, dtype=np.int64)
    row_of = np.repeat(np.arange(n_x), load)
    slots[row_of, np.arange(a.nnz) - np.repeat(a.indptr[:-1], load)] = a.indices
    # one pass over the blocks: lambda of the deficient items and of the assigned items
    lam_d = np.empty((n_x, len(deficient)))
    lam_a = np.full(slots.shape, np.inf)
    cols = torch.as_tensor(deficient, device=scores.device)
    for rows, lam in scores.blocks():
        lam_d[rows] = lam[:, cols].double().cpu().numpy()
        s = slots[rows]
        got = lam.gather(1, torch.as_tensor(np.maximum(s, 0), device=lam.device)).double().cpu().numpy()
        lam_a[rows] = np.where(s >= 0, got, np.inf)
    allowed = lam_d > NEG / 2
    swaps = 0
    every = np.arange(n_x)
    for j in np.argsort(allowed.sum(0), kind="stable"):  # the items fewest states may take first
        y = deficient[j]
        while exposure[y] < min(need, cap):
            # per state, its cheapest item to give up: one whose exposure stays at or above the minimum
            removable = (slots >= 0) & (exposure[np.maximum(slots, 0)] > need)
            out = np.where(removable, lam_a, np.inf)
            best = out.argmin(1)
            give = out[every, best]
            ok = np.isfinite(give) & allowed[:, j] & ~(slots == y).any(1)
            cand = np.flatnonzero(ok)
            if len(cand) == 0:
                break
            cand = cand[np.argsort(give[cand] - lam_d[cand, j], kind="stable")]
            z = slots[cand, best[cand]]
            # several states may give up the same z: only as many as z has above its minimum
            by_z = np.argsort(z, kind="stable")
            zs = z[by_z]
            first = np.r_[0, np.flatnonzero(np.diff(zs)) + 1]
            rank = np.empty(len(z), dtype=np.int64)
            rank[by_z] = np.arange(len(z)) - np.repeat(first, np.diff(np.r_[first, len(z)]))
            take = np.flatnonzero(rank < exposure[z] - need)[:min(need, cap) - exposure[y]]
            x, z = cand[take], z[take]
            slots[x, best[x]] = y  # y ends at its minimum, never given up again: its lam_a is not read
            np.subtract.at(exposure, z, 1)
            exposure[y] += len(x)
            swaps += len(x)
    unmet = int((exposure < need).sum())
    if swaps == 0:
        return assignment, 0, unmet
    keep = slots >= 0
    r = np.broadcast_to(every[:, None], slots.shape)[keep]
    out = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (r, slots[keep])), shape=(n_x, n_y))
    out.sort_indices()
    return out, swaps, unmet


class Dual(Planner):
    def __init__(self, alpha: float = 0.01, beta: float = 0.0, beta_max: float | None = None, mode: str = "offline",
                 epochs: int = 100, epsilon_min: float = 1e-10, gamma: float | None = None,
                 batch_size: int | None = None, iters: int = 50, steps: int = 1, repair: bool = True,
                 candidates: int | str | None = None, max_steps: int = 5):
        self.constraints = Constraints(float(alpha), float(beta), None if beta_max is None else float(beta_max))
        self.constraints.validate(f"planner 'dual' (mode {mode})")
        self.online = mode == "online"
        self.mode, self.epochs, self.epsilon_min = mode, int(epochs), float(epsilon_min)
        self.gamma, self.batch_size, self.iters, self.steps = gamma, batch_size, int(iters), int(steps)
        self.max_steps = max(int(max_steps), self.steps)
        self.repair = bool(repair)
        if candidates not in (None, "all") and not (
                isinstance(candidates, int) and not isinstance(candidates, bool) and candidates >= 1):
            raise ConfigError(f"planner 'dual': candidates={candidates!r} must be a number of items per state, "
                              "'all' (the dense planner) or null (dense up to 25 million pairs, else 2K)")
        if isinstance(candidates, int) and batch_size is not None:
            raise ConfigError("planner 'dual': candidates and batch_size cannot be combined (the planner on "
                              "candidate pairs is full-batch); drop batch_size or set candidates: all")
        self.candidates = candidates
        self.v: torch.Tensor | None = None

    def candidates_for(self, scores: PlanningScores, k: int) -> int | None:
        """M, the candidate items per state, or None for the dense planner."""
        if self.candidates == "all" or k >= scores.n_items:
            return None
        if self.candidates is None:
            if self.batch_size is not None or scores.n_states * scores.n_items <= DENSE_PAIRS:
                return None
            return default_candidates(k, scores.n_items)
        if self.candidates <= k:
            raise ConfigError(f"planner 'dual': candidates={self.candidates} must exceed the user capacity "
                              f"K = {k} (each state needs room above its K-th item); raise it or set it to null")
        return None if self.candidates >= scores.n_items else int(self.candidates)

    def fit(self, scores: PlanningScores) -> dict:
        c = self.constraints
        k, _, _ = c.check(scores.n_states, scores.n_items, f"planner 'dual' (mode {self.mode})")
        m = self.candidates_for(scores, k)
        if m is None:
            self.v, info = fit_dual(scores, k, c.beta, c.beta_max, self.epochs, self.epsilon_min, self.gamma,
                                    self.batch_size, self.iters, self.steps, max_steps=self.max_steps)
        else:
            self.v, info = fit_dual_pruned(scores, k, c.beta, c.beta_max, self.epochs, self.epsilon_min,
                                           self.iters, self.steps, m)
        self.scale = scores.scale
        return info

    def plan(self, scores: PlanningScores, calibration: PlanningScores | None = None) -> Plan:
        where = f"planner 'dual' (mode {self.mode})"
        k, c_min, c_max = self.constraints.check(scores.n_states, scores.n_items, where)
        if self.online:
            if calibration is None:
                raise ConfigError(f"{where}: online mode learns v on a calibration set of user-states "
                                  "and got none; use a split with a calibration window (temporal: calibration: DAYS) "
                                  "or mode: offline")
            info = self.fit(calibration)
            scores = scores.with_scale(self.scale)
        else:
            info = self.fit(scores)
        a = topk_assignment(scores, k, shift=self.v, positive_only=True)
        if not self.repair:
            return Plan(a, {"k": k, **info})
        a, swaps, unmet = repair_minimum(scores, a, k, c_min, c_max)
        if unmet:
            need = int(math.ceil(c_min - 1e-9))
            warnings.warn(f"{where}: {unmet} of {scores.n_items} items miss their minimum exposure ceil(beta·|X|) = "
                          f"{need} even after the feasibility repair (too few user-states may take them: excluded "
                          f"pairs, the capacity K = {k} or beta_max); lower beta or raise alpha", stacklevel=2)
        return Plan(a, {"k": k, **info, "repair_swaps": swaps, "beta_unmet_items": unmet})


@hookimpl
def register_planners(register):
    register(PlannerSpec(
        name="dual", factory=Dual,
        description="RIM's Dual planner (Algorithm 1): item dual variables v, top-K of lambda - v; offline or online; "
                    "then a feasibility repair swaps items below their minimum exposure into the states that lose "
                    "least (repair: false for the plan as published)",
        params=CONSTRAINT_PARAMS + (
            Param("mode", "str", "offline", "offline: learn v on the planned states; online: on a calibration set",
                  choices=("offline", "online")),
            Param("epochs", "int", 100, "annealing epochs (eps multiplied by epsilon_min^(1/epochs) each)", low=1),
            Param("epsilon_min", "float", 1e-10, "final entropic regularisation eps", low=1e-30, high=1.0),
            Param("gamma", "float", None, "step of the running average of v (null: 1 / number of batches)",
                  low=1e-6, high=1.0, nullable=True),
            Param("batch_size", "int", None, "user-states per dual update (null: all of them)", low=1,
                  nullable=True),
            Param("steps", "int", 1, "u/v alternations per batch per epoch (1: Algorithm 1 as published)", low=1),
            Param("max_steps", "int", 5, "dense planner, full batch: an epoch keeps alternating while v still moves "
                  "by more than 1e-3·eps, up to this many alternations (a convergence check: on the tightest skewed "
                  "test instance the plan goes from 84.5% to 99.5% of the LP optimum; 1 for Algorithm 1 as "
                  "published)", low=1),
            Param("iters", "int", 50, "root-finding iterations per u- and v-step (bisection, Newton-accelerated)",
                  low=1),
            Param("candidates", "any", None, "items per state the dual works on (the top-M of lambda - v, refreshed "
                  "with a certificate that no pruned pair could enter the plan; dual_candidates.py): a number > K, "
                  "'all' for the dense planner, or null (dense up to 25 million pairs, else 2K)", nullable=True),
            Param("repair", "bool", True, "after rounding, swap every item below ceil(beta·|X|) into the states that "
                  "lose least by it (never an excluded pair, above beta_max or below another item's minimum; every "
                  "state keeps its number of items); warn when some item still cannot reach it"),
        )))
