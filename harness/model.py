"""The interface every model plugin implements, and what the harness hands it to fit.

A model either exposes *factors* (a vector per user-state and per item, score = dot
product), which lets the ranking engine rank in blocks without a full score matrix, or
scores a block of states against all items with `score_block`.

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import torch

from .data import Dataset, Interactions
from .splits import EvalSet, SplitData, UserStates

if TYPE_CHECKING:
    import pandas as pd

    from .ctr import ImpressionRows
    from .funnel import FunnelRows


def default_device() -> torch.device:
    """The GPU when one is present (and not disabled by MATCHBENCH_DEVICE=cpu), else the CPU."""
    want = os.environ.get("MATCHBENCH_DEVICE")
    if want:
        return torch.device(want)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class FitContext:
    """What a model may use while fitting, by name (Cornac's `fit(train_set, val_set)`, not a grab-bag).

    `train` is the training log (also fit's first argument); `valid` / `calibration` the split's validation set
    and calibration window (None when the split has none); `impressions` the training impressions of a CTR split;
    `funnel` the training requests' recall / exposure / click spaces of a funnel split (`FunnelRows`);
    `truth` the dataset's generating process when it knows one (the synthetic world); `split_info` what the
    split says about itself (e.g. `horizon_days`, `train_end`); `item_features` / `user_features` the dataset's
    side tables. The harness sets `threads` to this worker's share of the CPU. A model that needs one of the
    optional fields declares it in its spec's `requires`, and suites that cannot provide it are refused."""

    train: Interactions | None = None
    valid: EvalSet | None = None
    calibration: EvalSet | None = None
    impressions: ImpressionRows | None = None
    funnel: FunnelRows | None = None
    truth: Any = None
    split_info: Mapping[str, Any] = field(default_factory=dict)
    item_features: pd.DataFrame | None = None
    user_features: pd.DataFrame | None = None
    seed: int = 0
    device: torch.device = field(default_factory=default_device)
    threads: int = field(default_factory=torch.get_num_threads)
    log_metric: Callable[[str, float, int], None] = lambda name, value, step: None
    progress: Callable[[int, int], None] = lambda epoch, total: None

    @classmethod
    def for_split(cls, split: SplitData, dataset: Dataset | None = None, set_back: bool = False,
                  **kw: Any) -> "FitContext":
        """The context of a fit on `split` (of `dataset`): every named field filled from them (`train`: what a
        model with `set_back` or without fits on, `SplitData.training_events`)."""
        return cls(train=split.training_events(set_back), valid=split.valid, calibration=split.calibration,
                   impressions=split.train_impressions, funnel=split.train_funnel, split_info=dict(split.info),
                   truth=getattr(dataset, "truth", None),
                   item_features=getattr(dataset, "item_features", None),
                   user_features=getattr(dataset, "user_features", None), **kw)

    def generator(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


class Model:
    """Base class of model plugins: implement `fit` plus `factors` or `score_block` (ranking tasks) and/or
    `predict_ctr` (the ctr task), and declare which in the spec's `offers`. What the scores are
    (`score_kind`), which tasks a configuration serves and what it needs from the split live in its
    `ModelSpec`, not here."""

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

    def predict_ctr(self, rows: ImpressionRows) -> np.ndarray:
        """Click probabilities in [0, 1], one per impression row (models that serve the ctr task)."""
        raise NotImplementedError(f"{type(self).__name__} does not predict click probabilities")
