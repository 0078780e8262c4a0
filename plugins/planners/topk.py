"""Planner `topk`: every user-state takes its K = ceil(alpha·|Y|) best items; items' exposure is not
constrained (the unconstrained ItemRec end of RIM's Figure 4; beta is only measured)."""
from __future__ import annotations

from harness.plugin import ALPHA, Constraints, Plan, Planner, PlannerSpec, PlanningScores, hookimpl, topk_assignment


class TopK(Planner):
    def __init__(self, alpha: float = 0.01):
        self.constraints = Constraints(alpha=float(alpha))
        self.constraints.validate("planner 'topk'")

    def plan(self, scores: PlanningScores, calibration: PlanningScores | None = None) -> Plan:
        k, _, _ = self.constraints.check(scores.n_states, scores.n_items, "planner 'topk'")
        return Plan(topk_assignment(scores, k), {"k": k})


@hookimpl
def register_planners(register):
    register(PlannerSpec(
        name="topk", factory=TopK,
        description="per user-state top-K items, K = ceil(alpha·|Y|); no item constraint",
        params=(ALPHA,)))
