"""Checks every planner plugin passes: it declares its `Constraints`, and on a small score matrix (60 states x
25 items with skewed item popularity and 10% excluded pairs) its plan respects them: never an excluded pair, at
most K = ceil(alpha·|Y|) items per state, and (offline planners) every item's exposure within one state of
[beta·|X|, beta_max·|X|] — the tolerance the planner tests allow the dual's eps -> 0 rounding. Online planners
learn on a calibration set of other states, so their item exposure is only approximate and not checked.

Internal: plugin authors run these checks through `harness.testing`; this module may change between versions.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..matching import Constraints, FactorScores, Plan, PlanningScores
from .base import PluginCase, check, require

N_STATES, N_ITEMS = 60, 25


def planner(case: PluginCase):
    return case.cached("planner", case.create)


def scores(seed: int) -> PlanningScores:
    """log-intensity scores: random tastes plus an item popularity from 2 down to 0; seeded exclusions."""
    rng = np.random.default_rng(seed)
    items = np.c_[np.random.default_rng(99).normal(size=(N_ITEMS, 6)), np.linspace(2, 0, N_ITEMS)]
    states = np.c_[rng.normal(size=(N_STATES, 6)), np.ones(N_STATES)]
    exclude = sp.csr_matrix(rng.random((N_STATES, N_ITEMS)) < 0.1)
    return PlanningScores(FactorScores(states, items), "log_intensity", exclude, seed=seed)


@check("planner")
def check_planner_declares_constraints(case: PluginCase) -> None:
    """The instance has `constraints`, a harness.plugin.Constraints (from its alpha / beta / beta_max)."""
    c = getattr(planner(case), "constraints", None)
    require(isinstance(c, Constraints), f"planner.constraints is {c!r}; set it to Constraints(alpha, beta, beta_max)")
    c.validate(case.label)


@check("planner")
def check_plan_respects_constraints(case: PluginCase) -> None:
    """A 0/1 states x items plan: no excluded pair, per-state cap K, item exposure within one state of its bounds
    (offline planners)."""
    p = planner(case)
    test = scores(0)
    plan = p.plan(test, scores(1) if getattr(p, "online", False) else None)
    require(isinstance(plan, Plan), f"plan() returned {type(plan).__name__}, not a harness.plugin.Plan")
    a = sp.csr_matrix(plan.assignment)
    require(a.shape == (N_STATES, N_ITEMS), f"the assignment is {a.shape}, expected states x items "
                                            f"({N_STATES}, {N_ITEMS})")
    require(a.nnz == 0 or np.allclose(a.data, 1.0), "the assignment holds values other than 1")
    clash = a.multiply(test.exclude).nnz
    require(clash == 0, f"{clash} excluded (seen) pairs were assigned")
    k, c_min, c_max = p.constraints.check(N_STATES, N_ITEMS, case.label)
    load = np.diff(a.indptr)
    require((load <= k).all(), f"a state takes {load.max()} items, more than K = ceil(alpha·|Y|) = {k}")
    if getattr(p, "online", False):
        return
    exposure = np.bincount(a.indices, minlength=N_ITEMS)
    require((exposure >= c_min - 1).all(), f"item exposure {exposure.min()} < beta·|X| = {c_min:g} (less one state)")
    require((exposure <= c_max + 1).all(), f"item exposure {exposure.max()} > beta_max·|X| = {c_max:g} (plus one)")
