"""`oracle`: ranks by the synthetic world's true intensity, the ceiling every learned model is read against.

score(x, y) = log λ(x, y) = log λ_u(t) + log p(y | x), both exact (`WorldTruth.intensity`, `log_item_probs`).
Per state the λ_u(t) term is a constant, so item recommendation ranks by p(y | x); user targeting ranks states
by their true instantaneous rate for the item. It needs a dataset that carries its truth (`synthetic`).
"""
from __future__ import annotations

import numpy as np
import torch

from harness.plugin import ConfigError, Model, ModelSpec, hookimpl


class Oracle(Model):

    def fit(self, train, loss, ctx):
        truth = ctx.truth
        if truth is None:
            raise ConfigError("model 'oracle' needs a dataset with known truth, and this one has none; "
                              "use it with dataset 'synthetic' or remove it from this grid")
        self.truth = truth

    def score_block(self, states, rows):
        sub = states.take(rows)
        log_rate = np.log(np.maximum(self.truth.intensity(sub), 1e-300))
        scores = self.truth.log_item_probs(sub) + log_rate[:, None]
        return torch.as_tensor(scores, dtype=torch.float32)


@hookimpl
def register_models(register):
    register(ModelSpec(name="oracle", factory=Oracle, score_kind="log_intensity", offers=("block_scores",),
                       requires=("truth",),
                       description="true log λ(x,y) of the synthetic world (upper reference; synthetic only)"))
