"""The loss contracts: how a model calls a loss plugin. A model lists the contracts it can feed in its spec
(`ModelSpec.contracts`); a loss declares the one it follows (`LossSpec.contract`, and the class attribute
`contract` of its instances). The suite records a model–loss pair whose contracts differ as skipped.

- `pairwise` / `pointwise` — `loss(pos, neg)`: scores of positive pairs [B] and of the model's sampled
  negatives [B] (or [B, k]); BPR, BCE.
- `in_batch` — `loss(logits, log_pu, log_pi)`: logits [B, B] = φ(u_a, i_b) with the positives on the diagonal,
  and the training data's log marginals of the batch's users and items (UniMatch Eq. 10).
- `sampled` — `loss.plan(user_counts, item_counts) -> NegativePlan` says which negatives to draw; then
  `loss(pos, neg, log_q, log_q_pos)` with the proposal's log probabilities for the logQ correction.
- `weighted` — `loss(scores, labels, weights)`: per-example weights, e.g. inverse propensities.

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch


class Loss:
    """Base class of loss plugins: set `contract` and implement `__call__` as the contract says."""

    contract: ClassVar[str] = ""

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class PairwiseLoss(Loss):
    """`loss(pos, neg) -> scalar`: positive scores against the model's negatives (contract pairwise)."""

    contract: ClassVar[str] = "pairwise"

    def __call__(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class PointwiseLoss(PairwiseLoss):
    """`loss(pos, neg) -> scalar` where positives are labelled 1 and negatives 0 (contract pointwise)."""

    contract: ClassVar[str] = "pointwise"


class InBatchLoss(Loss):
    """`loss(logits [B, B], log_pu [B], log_pi [B]) -> scalar` (contract in_batch)."""

    contract: ClassVar[str] = "in_batch"

    def __call__(self, logits: torch.Tensor, log_pu: torch.Tensor, log_pi: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class NegativePlan:
    """What a `sampled` loss wants: `q_item` over item ids; `q_user` over user ids (None: the batch's users);
    `k` negatives; `paired`: one (u', i') per positive (else k items shared by the batch)."""

    q_item: np.ndarray
    q_user: np.ndarray | None
    k: int
    paired: bool


class SampledLoss(Loss):
    """`plan(user_counts, item_counts) -> NegativePlan`, then `loss(pos, neg, log_q, log_q_pos)` (contract sampled)."""

    contract: ClassVar[str] = "sampled"

    def plan(self, user_counts: np.ndarray, item_counts: np.ndarray) -> NegativePlan:
        raise NotImplementedError

    def __call__(self, pos: torch.Tensor, neg: torch.Tensor, log_q: torch.Tensor | None = None,
                 log_q_pos: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


class WeightedLoss(Loss):
    """`loss(scores [B], labels [B], weights [B]) -> scalar`: per-example weights (contract weighted)."""

    contract: ClassVar[str] = "weighted"

    def __call__(self, scores: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


LOSS_BASES: dict[str, type[Loss]] = {c.contract: c for c in (PairwiseLoss, PointwiseLoss, InBatchLoss, SampledLoss,
                                                             WeightedLoss)}
