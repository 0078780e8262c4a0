"""Planner `greedy` (RIM's Offline-greedy): assign (state, item) pairs in global score order while both
the state's and the item's capacities remain — the authors' code (`assign_mtch`).

Without a minimum exposure (beta = 0) that is one pass with capacities K = ceil(alpha·|Y|) per
state and floor(beta_max·|X|) (or |X|) per item. With beta > 0 it runs in two phases, as the authors
do: phase 1 fills the items' minimum C = ceil(beta·|X|) with every state capped at
ceil(C·|Y| / |X|) (so the minimum is spread over the states before anyone fills up; where K·|X| < C·|Y|,
C is lowered to floor(K·|X| / |Y|), so that no item is left far below it), phase 2 tops every state up
to K in the same global order, items capped at beta_max·|X| (or not at all).
Unlike the authors' code, phase 2 never lets a state exceed K (their lb branch with K equal to the
phase-1 cap lifts the state cap), so the user capacity holds as in Eq. 9.

Greedy is offline and needs the global order of every pair, so it sorts all |X|·|Y| pairs (at most
`max_pairs`; the dual planner streams instead). The sequential rule "accept a pair if both sides
still have room" is computed without a Python loop over pairs: the accepted set is the unique fixed
point of A -> {p : fewer than cap accepted pairs of p's state before p, and of p's item}, and
iterating that map from "all pairs" settles one more prefix position per round at the very least
(in practice a handful of rounds).
"""
from __future__ import annotations

import math

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
)


def _group_rank(keys: np.ndarray):
    """For pairs in global order with group `keys`: perm (stable by key) and start offsets, so that
    exclusive per-group cumulative sums of any 0/1 vector are one cumsum."""
    perm = np.argsort(keys, kind="stable")
    sk = keys[perm]
    start = np.searchsorted(sk, sk, side="left")
    return perm, start


def _ranks(accepted: np.ndarray, perm: np.ndarray, start: np.ndarray) -> np.ndarray:
    a = accepted[perm].astype(np.int64)
    cs = np.cumsum(a) - a
    out = np.empty_like(cs)
    out[perm] = cs - cs[start]
    return out


def greedy_accept(xs: np.ndarray, ys: np.ndarray, cap_x: np.ndarray, cap_y: np.ndarray,
                  alive: np.ndarray | None = None, max_rounds: int | None = None) -> np.ndarray:
    """Pairs (xs[i], ys[i]) in decreasing score order; True where sequential greedy accepts them:
    a pair is taken iff its state has taken fewer than cap_x and its item fewer than cap_y pairs before it."""
    n = len(xs)
    alive = np.ones(n, bool) if alive is None else alive
    px, sx = _group_rank(xs)
    py, sy = _group_rank(ys)
    acc = alive.copy()
    for _ in range(max_rounds or n + 1):
        new = alive & (_ranks(acc, px, sx) < cap_x[xs]) & (_ranks(acc, py, sy) < cap_y[ys])
        if np.array_equal(new, acc):
            return acc
        acc = new
    return acc


class Greedy(Planner):
    def __init__(self, alpha: float = 0.01, beta: float = 0.0, beta_max: float | None = None,
                 max_pairs: int = 50_000_000):
        self.constraints = Constraints(float(alpha), float(beta), None if beta_max is None else float(beta_max))
        self.constraints.validate("planner 'greedy'")
        self.max_pairs = int(max_pairs)

    def plan(self, scores: PlanningScores, calibration: PlanningScores | None = None) -> Plan:
        where = "planner 'greedy'"
        k, c_min, c_max = self.constraints.check(scores.n_states, scores.n_items, where)
        n_x, n_y = scores.n_states, scores.n_items
        if n_x * n_y > self.max_pairs:
            raise ConfigError(f"{where}: greedy sorts all |X|·|Y| = {n_x * n_y:,} pairs, more than max_pairs="
                              f"{self.max_pairs:,}; raise max_pairs (about 40 bytes a pair) or use the dual "
                              "planner, which streams user-states in blocks")
        # the global order of every unexcluded pair (ties already broken by the seeded perturbation)
        lam = torch.cat([b for _, b in scores.blocks()], 0).ravel()
        valid = lam > NEG / 2
        flat = torch.nonzero(valid).ravel()
        order = flat[torch.argsort(lam[flat], descending=True, stable=True)].cpu().numpy()
        xs, ys = order // n_y, order % n_y
        c_min_i = int(math.ceil(c_min - 1e-9))
        c_max_i = int(math.floor(c_max + 1e-9))
        full_x = np.full(n_x, k, np.int64)
        if c_min_i <= 0:
            acc = greedy_accept(xs, ys, full_x, np.full(n_y, c_max_i, np.int64))
            phases = 1
        else:
            total = min(n_x * k, c_min_i * n_y)
            k1 = min(k, int(math.ceil(total / n_x)))
            c1 = min(c_min_i, total // n_y)  # states too few for C of every item: an equal share each, rounded down
            acc1 = greedy_accept(xs, ys, np.full(n_x, k1, np.int64), np.full(n_y, c1, np.int64))
            load = np.bincount(xs[acc1], minlength=n_x)
            expo = np.bincount(ys[acc1], minlength=n_y)
            acc2 = greedy_accept(xs, ys, full_x - load, np.maximum(c_max_i - expo, 0), alive=~acc1)
            acc = acc1 | acc2
            phases = 2
        a = sp.csr_matrix((np.ones(int(acc.sum()), np.float32), (xs[acc], ys[acc])), shape=(n_x, n_y))
        a.sort_indices()
        return Plan(a, {"k": k, "phases": phases})


@hookimpl
def register_planners(register):
    register(PlannerSpec(
        name="greedy", factory=Greedy,
        description="offline: pairs in global score order while both capacities remain (RIM's Offline-greedy)",
        params=CONSTRAINT_PARAMS + (
            Param("max_pairs", "int", 50_000_000, "refuse to sort more than this many (state, item) pairs", low=1),
        )))
