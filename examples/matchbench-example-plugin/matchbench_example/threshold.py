"""Planner `threshold`: each user-state takes its best items whose scaled intensity clears a bar, at most K.

The planner sees the model's scores as intensities λ scaled so that the largest unexcluded one is 1
(`PlanningScores.blocks()`; excluded pairs at NEG). A state takes its top K = ceil(alpha·|Y|) items, keeping only
those with λ / max λ >= tau. So, unlike `topk`, a state whose scores are all weak gets fewer items, or none:
the assignment spends the capacity alpha only where the model is confident. Items' exposure is not constrained
(beta is only measured). It streams the states in blocks and never holds the |X| x |Y| matrix.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from harness.plugin import (
    ALPHA,
    NEG,
    Constraints,
    Param,
    Plan,
    Planner,
    PlannerSpec,
    PlanningScores,
    hookimpl,
)


class Threshold(Planner):
    def __init__(self, alpha: float = 0.01, tau: float = 0.5):
        self.constraints = Constraints(alpha=float(alpha))
        self.constraints.validate("planner 'threshold'")
        self.tau = float(tau)

    def plan(self, scores: PlanningScores, calibration: PlanningScores | None = None) -> Plan:
        k, _, _ = self.constraints.check(scores.n_states, scores.n_items, "planner 'threshold'")
        rows_out, items_out = [], []
        for rows, lam in scores.blocks():
            top, items = torch.topk(lam, min(k, scores.n_items), dim=1)
            keep = ((top >= self.tau) & (top > NEG / 2)).cpu().numpy()
            rows_out.append(np.broadcast_to(np.asarray(rows)[:, None], keep.shape)[keep])
            items_out.append(items.cpu().numpy()[keep])
        r, c = np.concatenate(rows_out), np.concatenate(items_out)
        assignment = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(scores.n_states, scores.n_items))
        return Plan(assignment, {"k": k, "tau": self.tau, "per_state": len(r) / scores.n_states})


@hookimpl
def register_planners(register):
    register(PlannerSpec(
        name="threshold", factory=Threshold,
        description="per user-state its top-K items whose scaled intensity is at least tau (example plugin)",
        params=(ALPHA, Param("tau", "float", 0.5, "the bar: share of the largest intensity a pair must reach",
                             low=1e-6, high=1.0))))
