"""The other CTR baselines of DMR's "Compared Methods" (Lyu et al., AAAI 2020): `wide_deep`, `pnn`, `dien`.

They share `ctr_models.CTRModel` (features, BCE training loop with Adam, `predict_ctr`), so they see exactly
what `lr`, `din` and `dmr` see: target item, behaviour sequence (most recent `max_len`), context columns and,
with `user_embedding: true`, the user id. MLPs use PReLU instead of Dice (as `din` / `dmr` here).

- `wide_deep` (Cheng et al. 2016): logit = wide + deep, trained jointly. The wide part *is* `lr`'s `LRNet`
  (DMR: "the wide part in our implementation is same with LR"): bias, item, context (and user) weights and
  the behaviour × target cross-product, hashed into `cross_buckets`, mean-pooled by default (`cross_pooling`).
  The deep part is the Embedding&MLP base model: MLP over [x_p, x_c, e_target, mean of the behaviour
  embeddings]; its output bias starts at 0 because the wide bias already starts at the training CTR's
  log-odds. Simplified: one Adam optimiser for both parts (the paper uses FTRL + L1 for the wide part).
- `pnn` (IPNN, Qu et al. 2016): fields f_1..f_N, each a `dim`-sized embedding: target item, mean-pooled
  behaviours, one per context column (and the user). Product layer p = (⟨f_i, f_j⟩)_{i<j}, the N(N−1)/2
  pairwise inner products, concatenated with the flattened fields z, then the MLP. The first MLP layer over
  [z, p] is the paper's l_z + l_p + b1 with the full W_p (the paper's rank-1 factorisation θ_nθ_nᵀ of W_p is an
  efficiency device, not used here). Mean pooling of the sequence (the paper has no sequence feature).
- `dien` (Zhou et al. 2019): behaviours reordered oldest → latest, left-aligned. Interest extractor: a GRU
  (torch's nn.GRU, `gru_dim`) gives h_t. Attention a_t = softmax over the valid positions of h_tᵀ W e_target
  (the paper's bilinear form; its public code uses a DIN-style MLP). Interest evolving layer: AUGRU,
  u'_t = a_t · u_t, h'_t = (1 − u'_t) ⊙ h'_{t−1} + u'_t ⊙ h̃_t, from h'_0 = 0, a masked loop (the state only
  moves on valid steps). MLP over [x_p, x_c, e_target, h'_T]. Auxiliary loss (the paper's L_aux): h_t predicts
  the next behaviour e_{t+1} against one uniformly sampled item (which may, rarely, be the positive), binary
  cross-entropy on σ(⟨P h_t, e⟩) with a linear map P (the paper's inner product, so that `gru_dim` may differ
  from `dim`), averaged over the valid (t, t+1) pairs; total loss L_target + `aux_weight` · L_aux (the paper's
  α, 1.0), logged as `train/aux_loss`.
"""
from __future__ import annotations

import torch
from torch import nn

from harness.plugin import ModelSpec, Param, hookimpl
from plugins.models.ctr_models import COMMON, CROSS, CTR_ONLY, HIDDEN, LR, CTRModel, Embeddings, LRNet, mlp_head


def _deep_head(sizes: list[int]) -> nn.Sequential:
    """`mlp_head` whose output bias starts at 0 (for a part added to another logit that already has the prior)."""
    head = mlp_head(sizes, 0.5)
    nn.init.zeros_(head[-1].bias)
    return head


def _mean_pool(e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the valid behaviour embeddings (zeros for an empty sequence): a sum would grow with the
    history, which is longer at test time."""
    m = mask.float()
    return (e * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)


# ------------------------------------------------------------------------------------------------- Wide&Deep

class _WideDeepNet(nn.Module):
    def __init__(self, m: "WideDeep"):
        super().__init__()
        self.wide = LRNet(m)
        self.emb = Embeddings(m, m.dim)
        self.deep = _deep_head([self.emb.out_dim + 2 * m.dim] + list(m.hidden))

    def deep_logit(self, b) -> torch.Tensor:
        seq = b["seq"]
        x = torch.cat([self.emb.side(b), self.emb.item(b["item"]), _mean_pool(self.emb.item(seq), seq > 0)], 1)
        return self.deep(x)[:, 0]

    def forward(self, b, train=False):
        return self.wide(b)[0] + self.deep_logit(b), None


class WideDeep(LR):
    """LR's parameters and wide part (`LRNet`), plus the deep part."""

    def build(self):
        return _WideDeepNet(self)


# ------------------------------------------------------------------------------------------------- PNN

def inner_products(fields: torch.Tensor) -> torch.Tensor:
    """IPNN's product layer: [B, N, d] fields -> [B, N(N−1)/2] inner products ⟨f_i, f_j⟩, i < j, row-major."""
    n = fields.shape[1]
    i, j = torch.triu_indices(n, n, offset=1, device=fields.device)
    return (fields[:, i] * fields[:, j]).sum(-1)


class _PNNNet(nn.Module):
    def __init__(self, m: "PNN"):
        super().__init__()
        d = m.dim
        self.item = nn.Embedding(m.n_items + 1, d, padding_idx=0)
        self.ctx = nn.ModuleList(nn.Embedding(s, d) for s in m.ctx_sizes)   # one size for all fields: products
        self.user = nn.Embedding(m.n_users + 1, d) if m.user_embedding else None
        for e in [self.item, *self.ctx] + ([self.user] if self.user is not None else []):
            nn.init.normal_(e.weight, std=0.05)
        with torch.no_grad():
            self.item.weight[0].zero_()
        self.n_fields = 2 + len(m.ctx_sizes) + (1 if m.user_embedding else 0)
        n_in = self.n_fields * d + self.n_fields * (self.n_fields - 1) // 2
        self.mlp = mlp_head([n_in] + list(m.hidden), m.base_ctr)

    def fields(self, b) -> torch.Tensor:
        """[B, N, d]: target item, mean-pooled behaviours, context columns, (user)."""
        seq = b["seq"]
        parts = [self.item(b["item"]), _mean_pool(self.item(seq), seq > 0)]
        parts += [e(b["ctx"][:, j]) for j, e in enumerate(self.ctx)]
        if self.user is not None:
            parts.append(self.user(b["user"]))
        return torch.stack(parts, 1)

    def forward(self, b, train=False):
        f = self.fields(b)
        return self.mlp(torch.cat([f.flatten(1), inner_products(f)], 1))[:, 0], None


class PNN(CTRModel):
    def build(self):
        return _PNNNet(self)


# ------------------------------------------------------------------------------------------------- DIEN

def oldest_first(seq: torch.Tensor) -> torch.Tensor:
    """[B, L] most-recent-first, 0-padded after the end -> oldest-first, left-aligned, 0-padded after the end."""
    n = (seq > 0).sum(1, keepdim=True)
    j = torch.arange(seq.shape[1], device=seq.device)[None]
    out = seq.gather(1, (n - 1 - j).clamp(min=0))
    return torch.where(j < n, out, torch.zeros_like(out))


class AUGRUCell(nn.Module):
    """GRU with attentional update gate (DIEN Eq. for AUGRU): u' = a·u, h = (1 − u') ⊙ h_prev + u' ⊙ h̃.
    Weights in [reset, update, candidate] blocks; h̃ = tanh(W_h x + r ⊙ (U_h h_prev + b_hh) + b_ih)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.x2h = nn.Linear(input_size, 3 * hidden_size)
        self.h2h = nn.Linear(hidden_size, 3 * hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.step(self.x2h(x), h, a)

    def step(self, gx: torch.Tensor, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """One step from the input's precomputed gate pre-activations gx = x2h(x) (they need no state)."""
        xr, xu, xn = gx.chunk(3, -1)
        hr, hu, hn = self.h2h(h).chunk(3, -1)
        r, u = torch.sigmoid(xr + hr), torch.sigmoid(xu + hu)
        cand = torch.tanh(xn + r * hn)
        u = a[:, None] * u
        return (1 - u) * h + u * cand


def augru(cell: AUGRUCell, x: torch.Tensor, a: torch.Tensor, valid: torch.Tensor,
          h0: torch.Tensor | None = None) -> torch.Tensor:
    """Run the AUGRU over x [B, L, g] (oldest first) with attention a [B, L]; steps where `valid` [B, L] is
    False leave the state as it is. Returns the final state [B, g]."""
    h = x.new_zeros(x.shape[0], cell.h2h.in_features) if h0 is None else h0
    steps = int(valid.sum(1).max()) if valid.numel() else 0   # padding sits after the end of every row
    # unbind, not gx[:, t]: the backward of L slices would write L full-size gradients
    gx, a_t, ok = cell.x2h(x[:, :steps]).unbind(1), a[:, :steps].unbind(1), valid[:, :steps, None].unbind(1)
    for t in range(steps):
        h = torch.where(ok[t], cell.step(gx[t], h, a_t[t]), h)
    return h


class _DIENNet(nn.Module):
    def __init__(self, m: "DIEN"):
        super().__init__()
        self.m = m
        d, g = m.dim, m.gru_dim
        self.emb = Embeddings(m, d)
        self.extractor = nn.GRU(d, g, batch_first=True)
        self.att = nn.Linear(d, g, bias=False)           # a_t ∝ exp(h_tᵀ W e_target)
        self.evolver = AUGRUCell(g, g)
        self.aux_proj = nn.Linear(g, d, bias=False)      # σ(⟨P h_t, e_{t+1}⟩)
        self.mlp = mlp_head([self.emb.out_dim + d + g] + list(m.hidden), m.base_ctr)

    def extract(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(items oldest first [B, L], their embeddings [B, L, d], extractor states h_t [B, L, g], valid [B, L])."""
        old = oldest_first(seq)
        valid = old > 0
        e = self.emb.item(old)
        h, _ = self.extractor(e)          # left-aligned: padding after the end cannot reach a valid state
        return old, e, h, valid

    def attention(self, h: torch.Tensor, ec: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """a_t = softmax over the valid positions of h_tᵀ W e_target; 0 on padding (and for empty rows)."""
        s = (h * self.att(ec)[:, None, :]).sum(-1).masked_fill(~valid, -1e9)
        return torch.softmax(s, 1) * valid.float()

    def interest(self, seq: torch.Tensor, ec: torch.Tensor, extracted=None) -> torch.Tensor:
        """h'_T, the final state of the interest-evolving AUGRU for target embedding ec."""
        _, _, h, valid = extracted if extracted is not None else self.extract(seq)
        return augru(self.evolver, h, self.attention(h, ec, valid), valid)

    def aux_loss(self, seq: torch.Tensor, extracted=None) -> torch.Tensor:
        """L_aux: h_t predicts e_{t+1} against one uniform negative, BCE averaged over the valid pairs
        (t and t+1 both behaviours); 0 when no row has two behaviours."""
        _, e, h, valid = extracted if extracted is not None else self.extract(seq)
        pair = valid[:, 1:]                                  # t+1 valid implies t valid
        if not pair.any():
            return torch.zeros((), device=seq.device)
        q = self.aux_proj(h[:, :-1][pair])                   # [P, d]
        pos = e[:, 1:][pair]
        neg = self.emb.item(torch.randint(1, self.m.n_items + 1, (len(q),), device=seq.device))
        s_pos, s_neg = (q * pos).sum(1), (q * neg).sum(1)
        return -(nn.functional.logsigmoid(s_pos) + nn.functional.logsigmoid(-s_neg)).mean()

    def forward(self, b, train=False):
        ec, ex = self.emb.item(b["item"]), self.extract(b["seq"])
        logit = self.mlp(torch.cat([self.emb.side(b), ec, self.interest(b["seq"], ec, ex)], 1))[:, 0]
        aux = self.m.aux_weight * self.aux_loss(b["seq"], ex) if train and self.m.aux_weight > 0 else None
        return logit, aux


class DIEN(CTRModel):
    def __init__(self, aux_weight: float = 1.0, gru_dim: int = 32, **kw):
        super().__init__(**kw)
        self.aux_weight, self.gru_dim = float(aux_weight), int(gru_dim)

    def build(self):
        return _DIENNet(self)


# ------------------------------------------------------------------------------------------------- registration

@hookimpl
def register_models(register):
    register(ModelSpec(
        name="wide_deep", factory=WideDeep, tasks=("ctr",), **CTR_ONLY,
        description="Wide&Deep: LR with behaviour × target crosses (wide) + embedding MLP (deep), trained jointly",
        params=COMMON + (HIDDEN,) + CROSS))
    register(ModelSpec(
        name="pnn", factory=PNN, tasks=("ctr",), **CTR_ONLY, params=COMMON + (HIDDEN,),
        description="IPNN: pairwise inner products of the field embeddings (product layer) + MLP"))
    register(ModelSpec(
        name="dien", factory=DIEN, tasks=("ctr",), **CTR_ONLY,
        description="Deep Interest Evolution Network: GRU interest extractor (auxiliary next-behaviour loss) + "
                    "AUGRU interest evolution towards the target + MLP",
        params=COMMON + (HIDDEN,
                         Param("aux_weight", "float", 1.0, "α, the weight of the auxiliary loss (0: none)", low=0.0),
                         Param("gru_dim", "int", 32, "hidden size of both GRUs", low=1))))

