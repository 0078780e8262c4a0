"""Checks every loss plugin passes: it instantiates, follows the contract its spec declares, gives a finite
differentiable scalar when called as that contract says (see `harness.losses`), and scores well-separated
positives lower than badly separated ones — so a constant loss fails.

Internal: plugin authors run these checks through `harness.testing`; this module may change between versions.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..losses import LOSS_BASES, Loss, NegativePlan
from .base import Failed, PluginCase, check, require

B, N_USERS, N_ITEMS = 8, 20, 30
GAP = 3.0
"""How far positives sit above (good) or below (bad) negatives in the separation check."""


def instance(case: PluginCase) -> Any:
    return case.cached("loss", case.create)


def _counts() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 6, N_USERS), rng.integers(0, 9, N_ITEMS)
    users[0] = items[0] = 0  # a user and an item without training events
    users[1] = items[1] = 5
    return users, items


def sampled_plan(loss: Any) -> NegativePlan:
    users, items = _counts()
    plan = loss.plan(users, items)
    require(isinstance(plan, NegativePlan), f"plan() returned {type(plan).__name__}, not a NegativePlan")
    require(int(plan.k) >= 1, f"plan().k = {plan.k!r}; draw at least one negative")
    for what, q, n in (("q_item", plan.q_item, N_ITEMS), ("q_user", plan.q_user, N_USERS)):
        if q is None and what == "q_user":
            continue
        q = np.asarray(q, dtype=np.float64)
        require(q.shape == (n,) and (q >= 0).all() and abs(q.sum() - 1) < 1e-6,
                f"plan().{what} must be a probability vector over the {n} ids, got shape {q.shape}, sum {q.sum():g}")
    return plan


def arguments(case: PluginCase, sign: float, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(leaves that need gradients, the call's arguments) for the contract: positives at `sign`·GAP above the
    negatives plus small noise (sign +1: well separated, -1: badly)."""
    gen = torch.Generator().manual_seed(seed)

    def noise(*shape: int) -> torch.Tensor:
        return 0.1 * torch.randn(*shape, generator=gen)

    contract = case.spec.contract
    if contract in ("pairwise", "pointwise"):
        pos = (noise(B) + sign * GAP / 2).requires_grad_()
        neg = (noise(B) - sign * GAP / 2).requires_grad_()
        return [pos, neg], [pos, neg]
    if contract == "in_batch":
        logits = (noise(B, B) + sign * GAP * torch.eye(B)).requires_grad_()
        log_p = torch.full((B,), -np.log(B))
        return [logits], [logits, log_p, log_p.clone()]
    if contract == "sampled":
        plan = sampled_plan(instance(case))
        k = int(plan.k)
        q_item = torch.as_tensor(np.asarray(plan.q_item, dtype=np.float32))
        items = torch.multinomial(q_item, k if not plan.paired else B, replacement=True, generator=gen)
        pos = (noise(B) + sign * GAP / 2).requires_grad_()
        neg = (noise(B) if plan.paired else noise(B, k)) - sign * GAP / 2
        neg.requires_grad_()
        log_q = None if plan.paired else torch.log(q_item[items])
        log_q_pos = torch.log(q_item[torch.multinomial(q_item, B, replacement=True, generator=gen)])
        return [pos, neg], [pos, neg, log_q, log_q_pos]
    if contract == "weighted":
        labels = torch.tensor([1.0, 0.0] * (B // 2))
        scores = (noise(B) + sign * GAP * (2 * labels - 1)).requires_grad_()
        return [scores], [scores, labels, torch.linspace(0.5, 2.0, B)]
    raise Failed(f"the kit has no call recipe for contract {contract!r}")


def value(case: PluginCase, sign: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
    leaves, args = arguments(case, sign)
    return instance(case)(*args), leaves


@check("loss")
def check_loss_instantiates(case: PluginCase) -> None:
    """The factory (through the registry's schema) gives a harness.plugin.Loss."""
    loss = instance(case)
    require(isinstance(loss, Loss), f"the factory returned {type(loss).__name__}; subclass the base of its "
                                    f"contract ({LOSS_BASES[case.spec.contract].__name__})")


@check("loss")
def check_loss_contract_matches_spec(case: PluginCase) -> None:
    """The instance's `contract` equals the spec's, and it subclasses that contract's base class."""
    loss, contract = instance(case), case.spec.contract
    require(getattr(loss, "contract", None) == contract,
            f"the instance's contract is {getattr(loss, 'contract', None)!r}, its spec says {contract!r}")
    require(isinstance(loss, LOSS_BASES[contract]),
            f"{type(loss).__name__} does not subclass {LOSS_BASES[contract].__name__} (contract {contract!r})")


@check("loss")
def check_loss_is_a_finite_differentiable_scalar(case: PluginCase) -> None:
    """Called as its contract says on small random scores, it returns a finite scalar tensor whose gradient
    reaches the scores and is finite."""
    out, leaves = value(case, 1.0)
    require(isinstance(out, torch.Tensor) and out.ndim == 0,
            f"returned {type(out).__name__}{tuple(getattr(out, 'shape', ()))}, not a scalar tensor (reduce with mean)")
    require(bool(torch.isfinite(out)), f"returned {out.item()}")
    require(out.requires_grad, "the result does not depend on the scores (no gradient)")
    out.backward()
    grads = [g.grad for g in leaves]
    require(any(g is not None for g in grads), "no gradient reached the scores")
    require(all(g is None or bool(torch.isfinite(g).all()) for g in grads), "non-finite gradients")


@check("loss")
def check_loss_prefers_separated_scores(case: PluginCase) -> None:
    """Positives well above negatives give a lower loss than positives well below them."""
    good, bad = (value(case, sign)[0].item() for sign in (1.0, -1.0))
    require(good < bad, f"loss {good:g} with positives {GAP:g} above the negatives, {bad:g} with them {GAP:g} below; "
                        "a loss must fall as positives outscore negatives")
