"""UniMatch's loss family (Sec. III, Eq. 10, Tables I and II): in-batch NCE losses, sampled softmax and BCE
with a chosen negative-sampling distribution.

Two contracts, so any two-tower model can feed them (the model computes the scores φ(u, i); in UniMatch
φ = cos(u, i)/τ, Eq. 13, but the losses do not care how φ is made):

``in_batch`` — ``loss(logits, log_pu, log_pi)`` on a batch of B positive pairs (u_b, i_b):
  ``logits[a, b] = φ(u_a, i_b)`` (B x B, the positives on the diagonal, every other entry an in-batch
  negative), ``log_pu[b] = log p̂(u_b)`` and ``log_pi[b] = log p̂(i_b)`` the empirical log marginals of the
  training data. Eq. 10 with binary α, β, δα, δβ:
      l = -mean_b [ α log h(b,b) / Σ_c h(b,c)  +  β log o(b,b) / Σ_a o(a,b) ]
      h(a, c) = exp(φ(u_a, i_c) - δα log p̂(i_c)),   o(a, c) = exp(φ(u_a, i_c) - δβ log p̂(u_a)).
  The row part is a softmax over the batch's items for each user, the column part over the batch's users for
  each item. Presets (Table II): infonce (α=1), simclr (α=β=1), row_bcnce (α=δα=1), col_bcnce (β=δβ=1),
  bbcnce (all 1). Optima: PMI (+f(u)), PMI, log p̂(i|u) (+f(u)), log p̂(u|i) (+g(i)), log p̂(u, i).

``sampled`` — negatives drawn by the model from distributions the loss declares:
  ``loss.plan(user_counts, item_counts) -> NegativePlan`` (probability vectors over user ids and item ids,
  the number k of negatives, and whether they are shared by the batch or paired with each positive), then
  ``loss(pos, neg, log_q, log_q_pos)`` with ``pos[b] = φ(u_b, i_b)``; ``neg`` is [B, k] (shared: φ(u_b, j) for the k
  sampled items j, entries equal to the positive item masked to -inf by the model) or [B] (paired: φ(u', i')
  for one sampled pair per positive); ``log_q`` the log proposal of the sampled items ([k]) for the logQ
  correction, or None, and ``log_q_pos`` [B] that of each positive item (ssm corrects both; bce_neg ignores both).
  - ``ssm``: sampled softmax over the whole item vocabulary (Jean et al. 2015), k items per batch from
    q(i) ∝ count(i)^power, logQ-corrected (φ - log q); optimum log p̂(i|u) + f(u). With the model's
    normalised φ it is UniMatch's "SSM w. n.".
  - ``bce_neg``: Eq. 1 with 1:1 negatives (u', i') ~ p_n (Table I): ``negatives`` = ``user`` (p_n ∝ p̂(u),
    i' uniform: optimum log p̂(i|u)), ``item`` (p̂(i), u' uniform: log p̂(u|i)), ``user_item``
    (p̂(u)p̂(i): the PMI) or ``uniform`` (log p̂(u, i)). Uniform users are uniform over users with training
    events. Distinct from ``bce`` (plugins/losses/pairwise.py, the pointwise contract bpr uses with its own
    negatives): a model taking ``bce_neg`` must draw the negatives the loss names.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from harness.plugin import ConfigError, InBatchLoss, LossSpec, NegativePlan, Param, SampledLoss, hookimpl


class InBatchNCE(InBatchLoss):
    """Eq. 10 with binary α, β, δα, δβ (at least one of α, β set)."""

    def __init__(self, alpha: int = 1, beta: int = 1, delta_alpha: int = 1, delta_beta: int = 1):
        for name, v in (("alpha", alpha), ("beta", beta), ("delta_alpha", delta_alpha), ("delta_beta", delta_beta)):
            if v not in (0, 1):
                raise ConfigError(f"in-batch loss: {name} must be 0 or 1 (Eq. 10's switches), got {v!r}")
        if not (alpha or beta):
            raise ConfigError("in-batch loss: alpha=beta=0 leaves no loss; "
                              "set alpha (row part) and/or beta (column part)")
        self.alpha, self.beta, self.delta_alpha, self.delta_beta = alpha, beta, delta_alpha, delta_beta

    def __call__(self, logits: torch.Tensor, log_pu: torch.Tensor, log_pi: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
            raise ValueError(f"in_batch loss needs a square B x B logits matrix, got {tuple(logits.shape)}")
        diag = torch.arange(logits.shape[0], device=logits.device)
        out = logits.new_zeros(())
        if self.alpha:
            row = logits - self.delta_alpha * log_pi[None, :]   # h: correct each column's item
            out = out - (row[diag, diag] - torch.logsumexp(row, dim=1)).mean()
        if self.beta:
            col = logits - self.delta_beta * log_pu[:, None]    # o: correct each row's user
            out = out - (col[diag, diag] - torch.logsumexp(col, dim=0)).mean()
        return out


def _normalise(w: np.ndarray, what: str) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    if w.sum() <= 0:
        raise ValueError(f"cannot sample negatives: every {what} has zero weight (empty training data?)")
    return w / w.sum()


class SampledSoftmax(SampledLoss):
    """Sampled softmax with logQ correction: -log softmax([φ+ - log q(i+), φ_j - log q(j)])_0."""

    def __init__(self, negatives: int = 100, power: float = 1.0):
        self.k, self.power = int(negatives), float(power)

    def plan(self, user_counts: np.ndarray, item_counts: np.ndarray) -> NegativePlan:
        c = np.asarray(item_counts, dtype=np.float64)
        w = np.where(c > 0, c ** self.power, 0.0) if self.power else (c > 0).astype(np.float64)
        return NegativePlan(q_item=_normalise(w, "item"), q_user=None, k=self.k, paired=False)

    def __call__(self, pos: torch.Tensor, neg: torch.Tensor, log_q: torch.Tensor | None,
                 log_q_pos: torch.Tensor | None = None) -> torch.Tensor:
        if log_q is not None:
            neg = neg - log_q[None, :]
            if log_q_pos is not None:
                pos = pos - log_q_pos
        logits = torch.cat([pos[:, None], neg], 1)
        return -(pos - torch.logsumexp(logits, 1)).mean()


BCE_NEGATIVES = ("user", "item", "user_item", "uniform")


class BCENeg(SampledLoss):
    """Eq. 1 with 1:1 negatives (u', i') ~ p_n (Table I)."""

    def __init__(self, negatives: str = "uniform"):
        if negatives not in BCE_NEGATIVES:
            raise ConfigError(f"bce_neg: negatives={negatives!r} is not one of {list(BCE_NEGATIVES)}")
        self.negatives = negatives

    def plan(self, user_counts: np.ndarray, item_counts: np.ndarray) -> NegativePlan:
        uc, ic = np.asarray(user_counts, np.float64), np.asarray(item_counts, np.float64)
        q_user = uc if self.negatives in ("user", "user_item") else (uc > 0).astype(np.float64)
        q_item = ic if self.negatives in ("item", "user_item") else np.ones_like(ic)
        return NegativePlan(q_item=_normalise(q_item, "item"), q_user=_normalise(q_user, "user"), k=1, paired=True)

    def __call__(self, pos: torch.Tensor, neg: torch.Tensor, log_q=None, log_q_pos=None) -> torch.Tensor:
        return -(F.logsigmoid(pos).sum() + F.logsigmoid(-neg).sum()) / (pos.numel() + neg.numel())


_B = dict(type="int", low=0, high=1)
PRESETS = {  # name: (α, β, δα, δβ, description) — Table II
    "infonce": (1, 0, 0, 0, "InfoNCE: row softmax over in-batch items, no bias correction (optimum: PMI)"),
    "simclr": (1, 1, 0, 0, "SimCLR: row + column in-batch softmax, no bias correction (optimum: PMI)"),
    "row_bcnce": (1, 0, 1, 0, "row-bcNCE: in-batch row softmax, corrected by log p̂(i) (optimum: log p̂(i|u))"),
    "col_bcnce": (0, 1, 0, 1, "col-bcNCE: in-batch column softmax, corrected by log p̂(u) (optimum: log p̂(u|i))"),
    "bbcnce": (1, 1, 1, 1, "bbcNCE (UniMatch): row + column in-batch softmax, both bias-corrected "
                           "(optimum: log p̂(u,i))"),
}
_CONTRACT_DOC = " [contract in_batch: loss(logits BxB = φ(u_a, i_b), log p̂(u_b), log p̂(i_b))]"


def _preset(a, b, da, db):
    return lambda: InBatchNCE(a, b, da, db)


@hookimpl
def register_losses(register):
    for name, (a, b, da, db, doc) in PRESETS.items():
        register(LossSpec(name=name, factory=_preset(a, b, da, db), contract="in_batch",
                          description=doc + _CONTRACT_DOC))
    register(LossSpec(
        name="nce_eq10", factory=InBatchNCE, contract="in_batch",
        description="Eq. 10 with explicit binary switches α, β, δα, δβ" + _CONTRACT_DOC,
        params=(Param("alpha", default=1, help="weight of the row part (0 or 1)", **_B),
                Param("beta", default=1, help="weight of the column part (0 or 1)", **_B),
                Param("delta_alpha", default=1, help="subtract log p̂(i) in the row part (0 or 1)", **_B),
                Param("delta_beta", default=1, help="subtract log p̂(u) in the column part (0 or 1)", **_B))))
    register(LossSpec(
        name="ssm", factory=SampledSoftmax, contract="sampled",
        description="sampled softmax over the whole item vocabulary with logQ correction (optimum: log p̂(i|u)); "
                    "'SSM w. n.' with a normalised two-tower model [contract sampled]",
        params=(Param("negatives", "int", 100, "items sampled per batch (shared by its positives)", low=1),
                Param("power", "float", 1.0, "proposal q(i) ∝ count(i)^power over items seen in training "
                                             "(0: uniform over them)", low=0.0, high=2.0))))
    register(LossSpec(
        name="bce_neg", factory=BCENeg, contract="sampled",
        description="BCE with 1:1 negatives (u', i') ~ p_n (UniMatch Table I): p_n ∝ p̂(u) | p̂(i) | p̂(u)p̂(i) | "
                    "uniform [contract sampled]",
        params=(Param("negatives", "str", "uniform", "p_n: user = p̂(u), item = p̂(i), user_item = p̂(u)p̂(i), "
                                                     "uniform = 1/(MK)", choices=BCE_NEGATIVES),)))
