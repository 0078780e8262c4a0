"""Vectorised root finding for the dual planner's u- and v-steps: many monotone equations at once, one per state
or item, each on a bracket that holds its root (bisection, taking the Newton step whenever it lands inside)."""
from __future__ import annotations

import torch

MARGIN = 1e-3
"""Widening of every bracket, in units of the scores (so a root at the bracket's end is inside it)."""
TOL_COUNT = 1e-3
"""A root is accepted when the expected count it gives is within this of its target count."""


def bracketed_root(evaluate, lo: torch.Tensor, hi: torch.Tensor, iters: int, tol: torch.Tensor | float,
                   x0: torch.Tensor | None = None) -> torch.Tensor:
    """Vectorised root of decreasing f on [lo, hi] (f(lo) >= 0 >= f(hi) unless the root lies outside,
    in which case the nearer end is returned). evaluate(x) -> (f, df/dx). `x0`: a warm start (the previous
    epoch's root); annealing moves the roots little, so most rows are done at the first evaluation."""
    x = (lo + hi) / 2 if x0 is None else torch.minimum(torch.maximum(x0, lo), hi)
    for _ in range(iters):
        f, df = evaluate(x)
        done = f.abs() <= tol
        if bool(done.all()):
            break
        lo = torch.where(f > 0, x, lo)
        hi = torch.where(f < 0, x, hi)
        newton = x - f / df
        ok = torch.isfinite(newton) & (newton > lo) & (newton < hi)
        x = torch.where(done, x, torch.where(ok, newton, (lo + hi) / 2))
    return x
