"""Pairwise and pointwise losses over (positive, negative) score pairs."""
from __future__ import annotations

import torch.nn.functional as F

from harness.plugin import LossSpec, PairwiseLoss, PointwiseLoss, hookimpl


class BPRLoss(PairwiseLoss):
    """-log sigmoid(s+ - s-), averaged (Rendle et al. 2009); the RIM paper's sigmoid-triplet
    loss is this, averaged over a negative item and a negative user per positive pair."""

    def __call__(self, pos, neg):
        return -F.logsigmoid(pos - neg).mean()


class BCELoss(PointwiseLoss):
    """Binary cross-entropy: positives labelled 1, sampled negatives 0 (pointwise)."""

    def __call__(self, pos, neg):
        return -(F.logsigmoid(pos).mean() + F.logsigmoid(-neg).mean()) / 2


@hookimpl
def register_losses(register):
    register(LossSpec(name="bpr", factory=BPRLoss, contract="pairwise",
                      description="Bayesian personalised ranking: -log sigmoid(s(u,i) - s(u,j))"))
    register(LossSpec(name="bce", factory=BCELoss, contract="pointwise",
                      description="binary cross-entropy against sampled negatives (labelled 0)"))
