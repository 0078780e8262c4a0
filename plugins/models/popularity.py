"""Popularity baselines: `item_pop` ranks items by training count, `user_pop` ranks user-states
by activeness (history length). Both are rank-1 factor models, so the engine ranks them in blocks."""
from __future__ import annotations

import numpy as np
import torch

from harness.plugin import Model, ModelSpec, hookimpl


class ItemPop(Model):
    """score(x, y) = number of training events of y (same for every user-state)."""


    def fit(self, train, loss, ctx):
        self.counts = train.item_counts.astype(np.float32)

    def factors(self, states):
        u = torch.ones((len(states), 1))
        return u, torch.as_tensor(self.counts)[:, None]


class UserPop(Model):
    """score(x, y) = length of x's history (same for every item): the activeness prior."""


    def fit(self, train, loss, ctx):
        self.n_items = train.n_items

    def factors(self, states):
        u = torch.as_tensor(states.lengths.astype(np.float32))[:, None]
        return u, torch.ones((self.n_items, 1))


@hookimpl
def register_models(register):
    register(ModelSpec(name="item_pop", factory=ItemPop, score_kind="intensity",
                       description="most popular items first (training counts)"))
    register(ModelSpec(name="user_pop", factory=UserPop, score_kind="intensity",
                       description="most active user-states first (history length); itemrec ties broken by item id"))
