"""FM, a degree-2 factorisation machine (Rendle 2010), on the funnel two-tower loop (UMA²'s Table 1 baseline).

Why: FM is the shallow reference against the deep towers: every pair of input features interacts through the dot
product of their factor vectors, with no MLP. Fields of a training pair (u at a request, item i):

- user side: the user id (x = 1) and the behaviour bag, the items of the user's last `max_len` clicks before the
  request (its own table, x = 1/len per click; an item clicked twice in the bag is one feature with x = 2/len);
- item side: the item id (x = 1) and the base's two numeric item features (log(1 + clicks), accumulated CTR).

    ŷ(x) = w0 + Σ_j w_j x_j + Σ_{j<l} ⟨v_j, v_l⟩ x_j x_l,
    Σ_{j<l} ⟨v_j, v_l⟩ x_j x_l = ½ Σ_f [(Σ_j v_jf x_j)² − Σ_j v_jf² x_j²]       (Rendle's O(kn) identity)

trained with the base's BCE on each positive and its `n_neg` negatives (same `sampling`, Adam, batches). k =
`emb_dim`; `layers` is unused (no MLP). Serving as a two-tower dot product: with U = Σ user-side v_j x_j and
I = Σ item-side v_j x_j, the pairwise sum splits into ⟨U, I⟩ + (user-user terms) + (item-item terms), so

    u' = [U, 1, c_u],   v' = [I, b_i, 1],   ⟨u', v'⟩ = ŷ(u, i)

with b_i = the item's linear terms + its item-item pairwise terms and c_u = w0 + the user's linear terms + its
user-user pairwise terms. c_u is a per-user constant, so [U, 1]·[I, b_i] already ranks items as the full FM does;
the last coordinate makes the served score the full FM's logit itself (userrec ranks users by it, and the
`logit` score kind is then true).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from harness.plugin import ModelSpec, hookimpl
from plugins.models.funnel_towers import FunnelTwoTower, tower_params


class FMNet(nn.Module):
    """The FM's parameters: w0; per field a factor table v and a linear weight table w (ids and bag items have
    their own tables, the bag's padding row is 0); a factor vector and a weight per numeric item feature."""

    def __init__(self, n_users: int, n_items: int, k: int, n_feats: int):
        super().__init__()
        self.n_items = n_items
        self.w0 = nn.Parameter(torch.zeros(()))
        self.user_v, self.user_w = nn.Embedding(n_users, k), nn.Embedding(n_users, 1)
        self.hist_v = nn.Embedding(n_items + 1, k, padding_idx=n_items)
        self.hist_w = nn.Embedding(n_items + 1, 1, padding_idx=n_items)
        self.item_v = nn.Embedding(n_items + 1, k, padding_idx=n_items)
        self.item_w = nn.Embedding(n_items + 1, 1, padding_idx=n_items)
        for e in (self.user_v, self.hist_v, self.item_v):
            nn.init.normal_(e.weight, std=0.05)
        for e in (self.user_w, self.hist_w, self.item_w):
            nn.init.zeros_(e.weight)
        with torch.no_grad():
            self.hist_v.weight[n_items].zero_()
            self.item_v.weight[n_items].zero_()
        self.feat_v = nn.Parameter(torch.randn(n_feats, k) * 0.05)
        self.feat_w = nn.Parameter(torch.zeros(n_feats))

    def user_side(self, users: torch.Tensor, seq: torch.Tensor):
        """(U, linear, Σ_j ||v_j||² x_j²) of the user-side features of each row."""
        mask = (seq != self.n_items).float()
        x = mask / mask.sum(1, keepdim=True).clamp_min(1.0)                    # bag weights 1/len
        hv = self.hist_v(seq)
        U = self.user_v(users) + (hv * x[..., None]).sum(1)
        lin = self.user_w(users)[:, 0] + (self.hist_w(seq)[..., 0] * x).sum(1)
        # a repeated bag item is one feature with x_j = Σ of its weights: Σ_j x_j² ||v_j||² = Σ_p x_p x_{seq_p} ||v||²
        xj = ((seq[:, :, None] == seq[:, None, :]).float() * x[:, None, :]).sum(2)
        sq = (self.user_v(users) ** 2).sum(-1) + (x * xj * (hv ** 2).sum(-1)).sum(1)
        return U, lin, sq

    def item_side(self, items: torch.Tensor, feats: torch.Tensor):
        """(I, linear, Σ_j ||v_j||² x_j²) of the item-side features (any shape of item ids)."""
        f = feats[items]
        iv = self.item_v(items)
        I = iv + f @ self.feat_v
        lin = self.item_w(items)[..., 0] + f @ self.feat_w
        sq = (iv ** 2).sum(-1) + (f ** 2) @ (self.feat_v ** 2).sum(-1)
        return I, lin, sq


class FM(FunnelTwoTower):
    """Degree-2 FM over user fields (id, behaviour bag) and item fields (id, two numeric features)."""

    name = "fm"

    def build(self, n_users: int, n_items: int) -> nn.Module:
        return FMNet(n_users, n_items, self.emb_dim, 2)

    def score_pairs(self, users: torch.Tensor, seq: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The full FM ŷ [B, M], its pairwise part by the O(kn) identity over all features of each pair."""
        U, lin_u, sq_u = self.net.user_side(users, seq)
        I, lin_i, sq_i = self.net.item_side(items, self.feats)
        S = U[:, None, :] + I                                                  # Σ_j v_j x_j over the pair
        pair = 0.5 * ((S ** 2).sum(-1) - sq_u[:, None] - sq_i)
        return self.net.w0 + lin_u[:, None] + lin_i + pair

    def user_vec(self, users: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """u' = [U, 1, c_u], c_u = w0 + user linear terms + user-user pairwise terms."""
        U, lin_u, sq_u = self.net.user_side(users, seq)
        c = self.net.w0 + lin_u + 0.5 * ((U ** 2).sum(-1) - sq_u)
        return torch.cat([U, torch.ones_like(c)[:, None], c[:, None]], 1)

    def item_vec(self, items: torch.Tensor) -> torch.Tensor:
        """v' = [I, b_i, 1], b_i = item linear terms + item-item pairwise terms."""
        I, lin_i, sq_i = self.net.item_side(items, self.feats)
        b = lin_i + 0.5 * ((I ** 2).sum(-1) - sq_i)
        return torch.cat([I, b[..., None], torch.ones_like(b)[..., None]], -1)

    @torch.no_grad()
    def factors(self, states):
        if len(states) == 0:
            users, seq = self.state_inputs(states)
            v = self.item_vec(torch.arange(self.n_items, device=seq.device))
            return torch.zeros(0, v.shape[1], device=v.device), v
        return super().factors(states)


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="fm", factory=FM, params=tower_params(), tasks=("itemrec", "userrec"),
        offers=("factors",), score_kind="logit",
        description="Factorisation machine (degree 2, k = emb_dim; layers unused): user id + behaviour bag vs "
                    "item id + two numeric features, BCE with `sampling` negatives; served as an exact dot "
                    "product u' = [U, 1, c_u], v' = [I, b_i, 1]"))
