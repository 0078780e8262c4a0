"""LightFM (Kula, 2015) as a pure collaborative baseline, through the `lightfm` library.

The RIM paper (section 5.1, appendix B) runs LightFM-BPR next to its own BPR to show that
LightFM samples negatives on one side only — items for a user (bpr, warp, warp-kos) — never
negative users for an item, so the user-targeting (userrec) direction is not trained for; our
`bpr` samples both sides. With no user/item features LightFM's features are identities and
predict(u, i) = <e_u, e_i> + b_u + b_i; we expose that as factors [e_u, b_u, 1]·[e_i, 1, b_i]
(a test checks the equality against `LightFM.predict`). Users without training events keep no
personal vector (zeros: ranked by item bias alone, as in `bpr`), since LightFM never updated
their random initial vectors.

The library is imported when fitting, so the harness loads without it:
`pip install rectools-lightfm==1.17.3` (the maintained build of lightfm 1.17, module `lightfm`).
LightFM trains with its own objective, `lightfm_loss` (bpr, warp, warp-kos, logistic); it is not
called `loss` because suites reserve a model's `loss` key for the harness's loss plugins.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from harness.plugin import ConfigError, Model, ModelSpec, Param, hookimpl

INSTALL = "pip install rectools-lightfm==1.17.3"


def _lightfm_class():
    try:
        from lightfm import LightFM
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError(f"model lightfm needs the lightfm library, which is not installed ({e}); "
                          f"install it with `{INSTALL}`") from None
    return LightFM


class LightFMModel(Model):

    def __init__(self, no_components=64, lightfm_loss="warp", learning_rate=0.05, item_alpha=0.0, user_alpha=0.0,
                 epochs=30, max_sampled=10, num_threads=1):
        self.no_components, self.lightfm_loss, self.learning_rate = no_components, lightfm_loss, learning_rate
        self.item_alpha, self.user_alpha, self.epochs = item_alpha, user_alpha, epochs
        self.max_sampled, self.num_threads = max_sampled, num_threads
        self.model = None

    def fit(self, train, loss, ctx):
        LightFM = _lightfm_class()
        m = train.csr().copy()
        m.data[:] = 1.0  # implicit feedback: every observed (user, item) pair is one positive
        coo = sp.coo_matrix(m, dtype=np.float32)
        self.model = LightFM(no_components=self.no_components, loss=self.lightfm_loss,
                             learning_rate=self.learning_rate, item_alpha=self.item_alpha,
                             user_alpha=self.user_alpha, max_sampled=self.max_sampled,
                             random_state=np.random.RandomState(ctx.seed))
        for epoch in range(self.epochs):
            self.model.fit_partial(coo, epochs=1, num_threads=self.num_threads)
            ctx.progress(epoch + 1, self.epochs)
        seen = torch.as_tensor(train.user_counts > 0)
        P = torch.as_tensor(self.model.user_embeddings, dtype=torch.float32)
        c = torch.as_tensor(self.model.user_biases, dtype=torch.float32)
        self.P = torch.where(seen[:, None], P, torch.zeros_like(P))
        self.c = torch.where(seen, c, torch.zeros_like(c))
        self.Q = torch.as_tensor(self.model.item_embeddings, dtype=torch.float32)
        self.b = torch.as_tensor(self.model.item_biases, dtype=torch.float32)

    def factors(self, states):
        u = torch.as_tensor(states.user, dtype=torch.long)
        return (torch.cat([self.P[u], self.c[u][:, None], torch.ones(len(u), 1)], 1),
                torch.cat([self.Q, torch.ones(self.Q.shape[0], 1), self.b[:, None]], 1))


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="lightfm", factory=LightFMModel, contracts=(),
        description="LightFM matrix factorisation (lightfm library, pure collaborative); samples negatives on one "
                    "side only (items for a user), as the RIM paper points out",
        params=(
            Param("no_components", "int", 64, "embedding dimension", low=1, high=4096),
            Param("lightfm_loss", "str", "warp", "LightFM's own loss (in suites a model's `loss` key names a "
                  "harness loss)", choices=("bpr", "warp", "warp-kos", "logistic")),
            Param("learning_rate", "float", 0.05, "adagrad learning rate", low=0.0, high=10.0),
            Param("item_alpha", "float", 0.0, "L2 penalty on item embeddings", low=0.0),
            Param("user_alpha", "float", 0.0, "L2 penalty on user embeddings", low=0.0),
            Param("epochs", "int", 30, "passes over the training pairs (fit_partial one epoch at a time)", low=1),
            Param("max_sampled", "int", 10, "warp: most negatives sampled per positive", low=1),
            Param("num_threads", "int", 1, "hogwild threads in fit", low=1),
        )))
