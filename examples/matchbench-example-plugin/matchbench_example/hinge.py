"""Loss `hinge`: the pairwise margin loss mean(max(0, margin - (s+ - s-))).

It follows the `pairwise` contract (`loss(pos, neg)`: positive scores [B], the model's negatives [B] or [B, k]),
so any model whose spec accepts pairwise losses trains with it, e.g. the built-in `bpr`:
`models: [{name: bpr, loss: hinge}]`. Unlike BPR's -log sigmoid, it stops pushing a pair apart once the
positive leads by the margin (Weston et al.'s WSABIE-style ranking loss, without the rank weighting).
"""
from __future__ import annotations

import torch

from harness.plugin import LossSpec, PairwiseLoss, Param, hookimpl


class Hinge(PairwiseLoss):
    def __init__(self, margin: float = 1.0):
        self.margin = float(margin)

    def __call__(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        if neg.dim() > pos.dim():  # k negatives per positive
            pos = pos.unsqueeze(-1)
        return torch.relu(self.margin - (pos - neg)).mean()


@hookimpl
def register_losses(register):
    register(LossSpec(
        name="hinge", factory=Hinge, contract="pairwise",
        description="pairwise margin loss max(0, margin - (s(u,i) - s(u,j))) (example plugin)",
        params=(Param("margin", "float", 1.0, "how far a positive must lead a negative to cost nothing", low=0.0),)))
