"""The interface every model plugin implements, and what the harness hands it to fit.

A model either exposes *factors* (a vector per user-state and per item, score = dot
product), which lets the ranking engine rank in blocks without a full score matrix, or
scores a block of states against all items with `score_block`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .data import Dataset, Interactions
from .splits import UserStates


def default_device() -> torch.device:
    """The GPU when one is present (and not disabled by MATCHBENCH_DEVICE=cpu), else the CPU."""
    want = os.environ.get("MATCHBENCH_DEVICE")
    if want:
        return torch.device(want)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class FitContext:
    """What a model may use while fitting: seed, device, the dataset's side tables, and
    callbacks for training curves and progress (epoch i of n)."""

    seed: int = 0
    device: torch.device = field(default_factory=default_device)
    dataset: Dataset | None = None
    log_metric: Callable[[str, float, int], None] = lambda name, value, step: None
    progress: Callable[[int, int], None] = lambda epoch, total: None
    extra: dict[str, Any] = field(default_factory=dict)

    def generator(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


class Model:
    """Base class. Subclasses set `score_kind` and implement `fit` plus `factors` or `score_block`."""

    score_kind: str = "logit"

    def fit(self, train: Interactions, loss: Any, ctx: FitContext) -> None:
        raise NotImplementedError

    def factors(self, states: UserStates) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(state factors [n_states, d], item factors [n_items, d]) or None if not factorised."""
        return None

    def score_block(self, states: UserStates, rows: np.ndarray) -> torch.Tensor:
        """Scores of states[rows] against every item, [len(rows), n_items]."""
        f = self.factors(states)
        if f is None:
            raise NotImplementedError(f"{type(self).__name__} implements neither factors nor score_block")
        u, v = f
        return u[torch.as_tensor(rows, device=u.device)] @ v.T
