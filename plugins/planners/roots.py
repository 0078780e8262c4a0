"""The numerics both Dual planners share (the dense one in dual.py, the one on candidate pairs in
dual_candidates.py): vectorised root finding for the u- and v-steps (many monotone equations at once, one per state
or item, each on a bracket that holds its root: bisection, taking the Newton step whenever it lands inside), the
duals' seeded start, and the tolerance under which v counts as settled."""
from __future__ import annotations

import torch

MARGIN = 1e-3
"""Widening of every bracket, in units of the scores (so a root at the bracket's end is inside it)."""
TOL_COUNT = 1e-3
"""A root is accepted when the expected count it gives is within this of its target count."""
SETTLE_TOL = 1e-3
"""v has settled at an eps when an alternation moves it by at most max(SETTLE_TOL·eps, SETTLE_FLOOR)."""
SETTLE_FLOOR = 1e-6
"""A move of v this small counts as settled at any eps: it is the scale of the tie-breaking perturbation
(harness.matching.TIE) and about ten float32 ulps of the scaled scores (lambda in [0, 1]). Below eps ~ 1e-4 the roots
move by float rounding alone, and without the floor every later epoch ran all max_steps alternations (measured on
MovieLens-100K-sized 401 x 1,682 instances: 369 of 469 alternations, 40% of them at eps < 1e-6)."""


def initial_duals(gen: torch.Generator, n_items: int, lower: bool, upper: bool, device) -> torch.Tensor:
    """The item duals' seeded start, uniform on the side their constraints allow: [-1, 0] with a minimum exposure
    only, [0, 1] with a maximum only, [-1, 1] with both."""
    r = torch.rand(n_items, generator=gen)
    return (-r if not upper else r if not lower else 2 * r - 1).to(device)


def bracketed_root(evaluate, lo: torch.Tensor, hi: torch.Tensor, iters: int, tol: torch.Tensor | float,
                   x0: torch.Tensor | None = None) -> torch.Tensor:
    """Vectorised root of decreasing f on [lo, hi] (f(lo) >= 0 >= f(hi) unless the root lies outside,
    in which case the nearer end is returned). evaluate(x) -> (f, df/dx); a line whose x is done is passed
    unchanged to later calls (evaluate may reuse its f). `x0`: a warm start (the previous epoch's root); annealing
    moves the roots little, so most rows are done at the first evaluation."""
    x = (lo + hi) / 2 if x0 is None else torch.minimum(torch.maximum(x0, lo), hi)
    for _ in range(iters):
        f, df = evaluate(x)
        done = f.abs() <= tol
        if bool(done.all()):
            break
        lo = torch.where(f > 0, x, lo)
        hi = torch.where(f < 0, x, hi)
        # a bracket with no float inside it cannot shrink: its line keeps x (one of its ends, within an ulp of the
        # root). Where f is a step function (eps -> 0, a count target between integers) |f| never meets tol, and
        # without this the line would run all `iters` passes without moving
        done |= torch.nextafter(lo, hi) >= hi
        if bool(done.all()):
            break
        newton = x - f / df
        ok = torch.isfinite(newton) & (newton > lo) & (newton < hi)
        x = torch.where(done, x, torch.where(ok, newton, (lo + hi) / 2))
    return x


def only_moved(lines, take):
    """An evaluate(x) for bracketed_root that computes only the lines whose x moved since its last call (the rest keep
    their f and slope: a solved line's x no longer moves, and late in a solve few lines are left). `lines(part, x)`
    computes (f, df) of the lines `part = take(idx)` (take(None): all of them) at x."""
    last: list = []

    def evaluate(x):
        if not last:
            f, df = lines(take(None), x)
        else:
            x_prev, f, df = last
            idx = torch.nonzero(x != x_prev).squeeze(1)
            if len(idx):
                f, df = f.clone(), df.clone()
                f[idx], df[idx] = lines(take(idx), x[idx])
        last[:] = [x.clone(), f, df]
        return f, df

    return evaluate
