"""MIND, the Multi-Interest Network with Dynamic routing (Li et al., CIKM 2019), as a Table 1 competitor of UMA².

Same item tower, inputs, negatives and loss as `youtube_dnn` (UMA²'s fairness rule: binary cross-entropy on each
positive and its `n_neg` negatives drawn by `sampling`, instead of MIND's sampled softmax). What differs is the user
side, which gives K vectors instead of one:

- **Multi-interest extractor (B2I dynamic routing, the paper's Algorithm 1).** The behaviour items' embeddings e_i
  (the last `max_len` clicks) are mapped by one shared bilinear matrix S; the routing logits b_ij start from a
  Gaussian N(0, `routing_std`²) drawn once per fit (a fixed buffer over (interest, behaviour position), so that
  serving is deterministic) and are not trained by backprop (gradients reach S and the embeddings through
  z_j = Σ_i w_ij S e_i only). `routing_iters` times: w_ij = softmax_j(b_ij) (padding behaviours get w = 0),
  z_j = Σ_i w_ij S e_i, u_j = squash(z_j) = ‖z_j‖² / (1 + ‖z_j‖²) · z_j / ‖z_j‖, b_ij += u_jᵀ S e_i.
  With `adaptive_k`, a user routes into K'_u = max(1, min(K, ⌊log2 |I_u|⌋)) capsules (|I_u| = the behaviours in
  the window, at most max_len); the others are masked everywhere. An empty history gives z = 0, u = 0: finite.
- **User vectors.** Each capsule u_j ⊕ the profile (user id) embedding through the tower MLP (`layers`).
- **Training: label-aware attention.** v_u = V_u · softmax(pow(V_uᵀ e_label, p)) with the positive item (column 0
  of the batch's items) as the label; every item of the batch is scored against v_u. pow is the paper's plain
  power with an integer p (defined for negative dot products too): p = 0 attends uniformly, and for dot products
  above 1 a large p is the hard attention on the most related interest. As in the paper's equation, an even p
  also weighs a strongly negative dot product up.
- **Serving.** s(u, i) = max_j ⟨v_u^j, e_i⟩ over the user's interests (each interest retrieves on its own in the
  paper; the max is the merged ranking), through `score_block`: there is no single vector per user.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from harness.plugin import ModelSpec, Param, hookimpl, padded_sequences
from plugins.models.funnel_towers import FunnelTwoTower, Towers, tower_params


def squash(z: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """‖z‖² / (1 + ‖z‖²) · z / ‖z‖ over the last axis, written as z·‖z‖ / (1 + ‖z‖²) so that z = 0 maps to 0 with a
    finite gradient (eps only inside the square root)."""
    sq = (z * z).sum(-1, keepdim=True)
    return z * torch.sqrt(sq + eps) / (1.0 + sq)


def interest_count(n_behaviours: torch.Tensor, k: int, adaptive: bool) -> torch.Tensor:
    """K'_u = max(1, min(K, ⌊log2 |I_u|⌋)) per user (K when not adaptive)."""
    if not adaptive:
        return torch.full_like(n_behaviours, k, dtype=torch.long)
    n = n_behaviours.to(torch.float64).clamp_min(1.0)
    return torch.floor(torch.log2(n)).long().clamp(1, k)


def b2i_routing(emb: torch.Tensor, mask: torch.Tensor, bilinear: torch.Tensor, init_logits: torch.Tensor,
                interest_mask: torch.Tensor, iters: int) -> torch.Tensor:
    """The paper's Algorithm 1. emb [B, L, d] behaviour embeddings, mask [B, L] (1 = a behaviour, 0 = padding),
    bilinear S [d, d'], init_logits [K, L], interest_mask [B, K] (1 = one of the user's K'_u capsules);
    returns the interest capsules [B, K, d'] (0 where masked). The routing logits carry no gradient."""
    se = emb @ bilinear                                           # [B, L, d'] S e_i (row convention)
    b = init_logits[None].expand(emb.shape[0], -1, -1).clone()    # [B, K, L]
    valid_j = interest_mask.bool()[:, :, None]
    valid_i = mask.bool()[:, None, :]
    caps = torch.zeros(emb.shape[0], init_logits.shape[0], se.shape[-1], dtype=se.dtype, device=se.device)
    for _ in range(iters):
        w = torch.softmax(b.masked_fill(~valid_j, -torch.inf), dim=1)   # over the user's capsules, per behaviour
        w = w.masked_fill(~(valid_j & valid_i), 0.0)
        caps = squash(w @ se)                                     # [B, K, d']
        b = b + (caps @ se.transpose(1, 2)).detach()              # b_ij += u_jᵀ S e_i
    return caps * interest_mask[:, :, None].to(caps.dtype)


def label_aware(vu: torch.Tensor, interest_mask: torch.Tensor, label: torch.Tensor, p: int) -> torch.Tensor:
    """v_u = V_u · softmax(pow(V_uᵀ e_label, p)) over the user's interests: vu [B, K, d], label [B, d] -> [B, d]."""
    logits = torch.pow((vu * label[:, None, :]).sum(-1), p)
    att = torch.softmax(logits.masked_fill(~interest_mask.bool(), -torch.inf), dim=1)
    return (att[:, :, None] * vu).sum(1)


class MindTowers(Towers):
    """The funnel towers plus B2I routing's shared bilinear map S and its fixed Gaussian initial logits."""

    def __init__(self, n_users: int, n_items: int, emb_dim: int, layers: list[int], n_feats: int,
                 interests: int, max_len: int, routing_std: float):
        super().__init__(n_users, n_items, emb_dim, layers, n_feats)
        self.bilinear = nn.Parameter(torch.empty(emb_dim, emb_dim))
        nn.init.xavier_uniform_(self.bilinear)
        self.register_buffer("routing_init", torch.randn(interests, max_len) * routing_std)


class Mind(FunnelTwoTower):
    """MIND (Li et al. 2019) on the shared funnel two-tower loop: K interest vectors per user (see the module)."""

    name = "mind"

    def __init__(self, interests: int = 4, routing_iters: int = 3, adaptive_k: bool = True, pow_p: int = 2,
                 routing_std: float = 1.0, **kw):
        super().__init__(**kw)
        self.interests, self.routing_iters = int(interests), int(routing_iters)
        self.adaptive_k, self.pow_p, self.routing_std = bool(adaptive_k), int(pow_p), float(routing_std)

    def build(self, n_users: int, n_items: int) -> nn.Module:
        return MindTowers(n_users, n_items, self.emb_dim, self.layers, 2, self.interests, self.max_len,
                          self.routing_std)

    def user_vecs(self, users: torch.Tensor, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(V_u [B, K, d]: each interest capsule ⊕ the profile embedding through the tower MLP, mask [B, K])."""
        net = self.net
        mask = (seq != net.n_items).to(torch.float32)
        kmask = (torch.arange(self.interests, device=seq.device)[None, :]
                 < interest_count(mask.sum(1), self.interests, self.adaptive_k)[:, None]).to(torch.float32)
        caps = b2i_routing(net.item_emb(seq), mask, net.bilinear, net.routing_init, kmask, self.routing_iters)
        prof = net.user_emb(users)[:, None, :].expand(-1, self.interests, -1)
        return net.user_mlp(torch.cat([caps, prof], -1)), kmask

    def user_vec(self, users: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("mind has K vectors per user: use user_vecs")

    def score_pairs(self, users: torch.Tensor, seq: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Label-aware attention with column 0 (the positive) as the label; every item scored against v_u."""
        vu, kmask = self.user_vecs(users, seq)
        e = self.item_vec(items)                                      # [B, M, d]
        v = label_aware(vu, kmask, e[:, 0], self.pow_p)
        return (v[:, None, :] * e).sum(-1)

    def fit(self, train, loss, ctx):
        super().fit(train, loss, ctx)
        with torch.no_grad():
            self.item_table = self.item_vec(torch.arange(self.n_items, device=self.feats.device))

    def factors(self, states):
        return None   # max over interests is no dot product: served by score_block

    @torch.no_grad()
    def score_block(self, states, rows) -> torch.Tensor:
        """max_j ⟨v_u^j, e_i⟩ over the user's interests, [len(rows), n_items]."""
        rows = np.asarray(rows, dtype=np.int64)
        ptr = np.asarray(states.hist_ptr, dtype=np.int64)
        hi = ptr[rows + 1]
        lo = np.maximum(ptr[rows], hi - self.max_len)                  # only the rows' last max_len behaviours
        sub = np.concatenate([[0], np.cumsum(hi - lo)])
        idx = np.repeat(lo - sub[:-1], hi - lo) + np.arange(sub[-1])
        seq = padded_sequences(sub, np.asarray(states.hist_item)[idx], self.max_len, self.n_items)
        dev = self.item_table.device
        users = torch.as_tensor(np.asarray(states.user, dtype=np.int64)[rows], device=dev)
        vu, kmask = self.user_vecs(users, torch.as_tensor(seq, device=dev))
        s = torch.einsum("bkd,nd->bkn", vu, self.item_table)
        return s.masked_fill(~kmask.bool()[:, :, None], -torch.inf).amax(1)


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="mind", factory=Mind, tasks=("itemrec", "userrec"), offers=("block_scores",), score_kind="logit",
        params=tower_params() + (
            Param("interests", "int", 4, "K, the most interest capsules per user", low=1),
            Param("routing_iters", "int", 3, "B2I dynamic routing iterations", low=1),
            Param("adaptive_k", "bool", True, "K'_u = max(1, min(K, floor(log2 |I_u|))) capsules per user"),
            Param("pow_p", "int", 2, "label-aware attention's power p (0: uniform, large: hard max)", low=0),
            Param("routing_std", "float", 1.0, "std of the routing logits' Gaussian initialisation", low=0.0),
        ),
        description="MIND multi-interest two-tower: B2I dynamic routing of the behaviours into K interests, label-"
                    "aware attention in training, max over interests in serving; youtube_dnn's item tower, BCE "
                    "with `sampling` negatives (not MIND's sampled softmax)"))
