"""An external matchbench plugin: `item_cooc`, item-to-item co-occurrence (cosine) scoring.

score(x, y) = sum over items h in x's history of cos(h, y), where cos is the cosine similarity
of item columns of the training user x item matrix. It has no factors, so it implements
`score_block` and the harness streams it in blocks for both itemrec and userrec.
"""
import numpy as np
import scipy.sparse as sp
import torch

from harness import hookimpl
from harness.model import Model
from harness.schema import Param
from harness.specs import ModelSpec


class ItemCooc(Model):
    score_kind = "logit"

    def __init__(self, shrink: float = 0.0):
        self.shrink = shrink

    def fit(self, train, loss, ctx):
        x = (train.csr() > 0).astype(np.float32)
        co = (x.T @ x).tocsr()
        norm = np.sqrt(np.asarray(x.sum(0)).ravel()) + 1e-12
        d = sp.diags(1.0 / norm)
        sim = (d @ co @ d).toarray()
        sim *= co.toarray() / (co.toarray() + self.shrink) if self.shrink else 1.0
        np.fill_diagonal(sim, 0.0)
        self.sim = torch.as_tensor(sim, dtype=torch.float32)

    def score_block(self, states, rows):
        h = states.history_matrix(self.sim.shape[0])[rows]
        return torch.as_tensor(h.toarray()) @ self.sim


@hookimpl
def register_models(register):
    register(ModelSpec(name="item_cooc", factory=ItemCooc,
                       description="item-to-item cosine co-occurrence over the state's history (example plugin)",
                       params=(Param("shrink", "float", 0.0, "shrinkage of similarities with few co-occurrences", low=0.0),)))
