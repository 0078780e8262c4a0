"""Model `item_cooc`: item-to-item cosine co-occurrence over the user-state's history.

score(x, y) = sum over the items h in x's history of cos(h, y), with cos the cosine similarity of the item
columns of the binary training user x item matrix, shrunk towards 0 for pairs that co-occur rarely
(cos * c / (c + shrink), c the number of users who have both). The model has no factors, so it offers
`block_scores`: the harness streams `score_block` in blocks of states for itemrec and userrec. The scores are
nonnegative sums of evidence (0: no history item ever co-occurs with y), so the spec declares them
intensities, which planners use as they are (scaled by the largest). The similarity matrix is dense
(items x items): fine for catalogues up to a few ten thousand items.
"""
from __future__ import annotations

import numpy as np
import torch

from harness.plugin import (
    FitContext,
    Interactions,
    Model,
    ModelSpec,
    Param,
    UserStates,
    hookimpl,
)


class ItemCooc(Model):
    def __init__(self, shrink: float = 0.0):
        self.shrink = float(shrink)

    def fit(self, train: Interactions, loss: None, ctx: FitContext) -> None:
        x = (train.csr() > 0).astype(np.float32)
        co = (x.T @ x).toarray()  # users who have both items; the diagonal: users who have each
        norm = np.sqrt(np.diag(co)) + 1e-12
        sim = co / norm[:, None] / norm[None, :]
        if self.shrink:
            sim *= co / (co + self.shrink)
        np.fill_diagonal(sim, 0.0)
        self.sim = torch.as_tensor(sim, dtype=torch.float32, device=ctx.device)

    def score_block(self, states: UserStates, rows: np.ndarray) -> torch.Tensor:
        history = states.take(rows).history_matrix(self.sim.shape[0]).toarray()
        return torch.as_tensor(history, device=self.sim.device) @ self.sim


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="item_cooc", factory=ItemCooc, offers=("block_scores",), score_kind="intensity",
        description="item-to-item cosine co-occurrence over the state's history (example plugin)",
        params=(Param("shrink", "float", 0.0, "shrinkage of similarities with few co-occurrences", low=0.0),)))
