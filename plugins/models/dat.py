"""DAT, the Dual Augmented Two-tower model (Yu et al. 2021), on the funnel two-tower loop (UMA²'s Table 1).

Why: a plain two-tower model lets the user and item sides meet only in the final dot product. DAT gives every
user an augmented vector a_u and every item an a_i (each of the towers' output dimension) and feeds them into
their own tower (user tower input ⊕ a_u, item tower input ⊕ a_i). The Adaptive-Mimic Mechanism teaches each
augmented vector what the *other* tower says about its positives, so information crosses the towers early:

    loss_u = mean over positives ||a_u − stopgrad(p_v)||²,   loss_v = mean over positives ||a_i − stopgrad(p_u)||²
    loss   = BCE + mimic_user · loss_u + mimic_item · loss_v

with p_u, p_v the towers' outputs (p_u computed with a_u among its inputs, p_v with a_i). The stop-gradient means
the mimic terms move only the augmented vectors (they also get the BCE's gradient through their tower).

Defaults: mimic_user = mimic_item = 0.5. The DAT paper treats λ_u, λ_v as hyper-parameters without a value we
could confirm; 0.5 is what Alibaba's TorchEasyRec DAT takes by default (amm_u_weight / amm_i_weight), a
published configuration that weighs the mimic terms below the main loss.

Left out: DAT's Category Alignment Loss needs item categories, which the synthetic funnel world does not have.
Everything else (inputs, sampling and negatives, BCE, Adam) is the base's (`FunnelTwoTower`), by UMA²'s fairness
rule. Serving: factors = (user tower output with its a_u, item tower output with its a_i), a dot product.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from harness.plugin import DEFAULT_RATIO, ModelSpec, Param, hookimpl
from plugins.models.funnel_towers import FunnelTwoTower, Towers, tower_params


class DAT(FunnelTwoTower):
    """DAT's towers (augmented vectors as extra inputs) and the Adaptive-Mimic losses on the base's loop."""

    name = "dat"

    def __init__(self, emb_dim: int = 32, layers=(512, 256, 128, 32), max_len: int = 20, epochs: int = 5,
                 batch_size: int = 512, lr: float = 1e-3, n_neg: int = 25, sampling: str = "ss_abc_random",
                 ratio=DEFAULT_RATIO, mimic_user: float = 0.5, mimic_item: float = 0.5):
        super().__init__(emb_dim=emb_dim, layers=layers, max_len=max_len, epochs=epochs, batch_size=batch_size,
                         lr=lr, n_neg=n_neg, sampling=sampling, ratio=ratio)
        self.mimic_user, self.mimic_item = float(mimic_user), float(mimic_item)

    def build(self, n_users: int, n_items: int) -> nn.Module:
        """The base towers with a_u / a_i concatenated to their inputs (the augmented vectors live in the net,
        so the optimiser trains them)."""
        d = self.layers[-1]
        net = Towers(n_users, n_items, self.emb_dim, self.layers, 2, user_extra=d, item_extra=d)
        net.user_aug = nn.Embedding(n_users, d)
        net.item_aug = nn.Embedding(n_items + 1, d, padding_idx=n_items)   # n_items = padding, as item_emb
        for e in (net.user_aug, net.item_aug):
            nn.init.normal_(e.weight, std=0.05)
        with torch.no_grad():
            net.item_aug.weight[n_items].zero_()
        return net

    def user_vec(self, users: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """p_u = MLP[user input ⊕ a_u]."""
        return self.net.user_mlp(torch.cat([self.net.user_input(users, seq), self.net.user_aug(users)], -1))

    def item_vec(self, items: torch.Tensor) -> torch.Tensor:
        """p_v = MLP[item input ⊕ a_i] (any shape of item ids)."""
        return self.net.item_mlp(torch.cat([self.net.item_input(items, self.feats), self.net.item_aug(items)], -1))

    def mimic_losses(self, users: torch.Tensor, seq: torch.Tensor,
                     pos_items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss_u, loss_v) of the Adaptive-Mimic Mechanism on positive pairs (users[r], pos_items[r]): the mean
        squared distance of each augmented vector to the other tower's output, that output held fixed."""
        with torch.no_grad():   # stopgrad(p_u), stopgrad(p_v)
            p_u = self.user_vec(users, seq)
            p_v = self.item_vec(pos_items)
        loss_u = ((self.net.user_aug(users) - p_v) ** 2).sum(-1).mean()
        loss_v = ((self.net.item_aug(pos_items) - p_u) ** 2).sum(-1).mean()
        return loss_u, loss_v

    def extra_loss(self, batch: dict, scores: torch.Tensor) -> torch.Tensor:
        """λ_u·loss_u + λ_v·loss_v on the batch's positives (column 0 of `items`)."""
        loss_u, loss_v = self.mimic_losses(batch["user"], batch["seq"], batch["items"][:, 0])
        return self.mimic_user * loss_u + self.mimic_item * loss_v


def dat_params() -> tuple[Param, ...]:
    """DAT's own parameters (after `tower_params()`)."""
    return (
        Param("mimic_user", "float", 0.5, "λ_u: weight of the user augmented vector's mimic loss", low=0.0),
        Param("mimic_item", "float", 0.5, "λ_v: weight of the item augmented vector's mimic loss", low=0.0),
    )


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="dat", factory=DAT, params=tower_params() + dat_params(), tasks=("itemrec", "userrec"),
        offers=("factors",), score_kind="logit",
        description="DAT (Dual Augmented Two-tower): per-user / per-item augmented vectors fed into the towers, "
                    "Adaptive-Mimic losses towards the other tower's outputs; youtube_dnn's inputs, BCE and "
                    "`sampling` negatives (no category alignment: the world has no item categories)"))
