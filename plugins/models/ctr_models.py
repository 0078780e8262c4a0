"""CTR models (task ctr): `lr`, `din` and `dmr` (Lyu et al., Deep Match to Rank, AAAI 2020), in torch.

All three train on `ctx.impressions` (the split's training `ImpressionRows`) with binary
cross-entropy on the click label (DMR Eq. 1) and implement `predict_ctr(rows) -> probabilities`. Features:
the target item id, the behaviour sequence (the `max_len` most recent behaviours before the impression, most
recent first), the integer context columns of the rows (e.g. `slot`, `pid`; one embedding each, with an
"unknown" code for values not seen in training) and, with `user_embedding: true`, the user id (x_p; the
papers use user-profile features, which the harness's rows do not carry yet). Adam, lr 1e-3, batch 256 (the
paper's public-data settings).

- `lr`: logistic regression on one-hot item, context (and user) features plus the behaviour × target
  cross-product (DMR's LR baseline): logit = b + w_item[t] + Σ_c w_c[x_c] + Σ_behaviours w_cross[(b, t)],
  crosses hashed into `cross_buckets` weights when |Y|² is larger; the cross term is averaged over the
  behaviours by default (`cross_pooling: mean`: a sum grows with the history, which is longer at test time).
- `din`: DIN's local activation unit: weight w_t = MLP([e_t, e_c, e_t − e_c, e_t ⊙ e_c]) (80-40, PReLU, no
  softmax), pooled interest Σ_t w_t e_t; MLP over [x_p, e_c, x_c, pooled] (PReLU instead of Dice).
- `dmr`: User-to-Item network: a_t = zᵀ tanh(W_p p_t + W_e e_t + b) (Eq. 2, position p_t in reverse time
  order), α = softmax(a) (Eq. 3), u = g(Σ α_t e_t) (Eq. 4, g = linear + PReLU), r = uᵀ v′ with a separate
  output embedding V′ (Eq. 5); auxiliary match network: u_{T−1} from the behaviours before the latest one must
  predict the latest against `negatives` items drawn from the background distribution (each item ∝ its training
  count + 1; 2,000 as the paper on public data; `sampler: uniform` draws uniformly) (L_NS, Eq. 8), total loss
  L_target + β·L_NS
  (Eq. 9, β = `aux_weight`, 0.1 as in the paper's Fig. 3). Item-to-Item network: â_t = ẑᵀ tanh(Ŵ_c e_c +
  Ŵ_p p_t + Ŵ_e e_t + b̂) (Eq. 10), r̂ = Σ_t â_t (Eq. 11), û = Σ_t softmax(â)_t e_t (Eqs. 12-13). MLP 512-256-128
  (PReLU) over c = [x_p, x_t, x_c, û, r, r̂]. Ablations (paper Table 2): `no_u2i` (DMR I2I: no r, no auxiliary
  loss), `no_i2i` (DMR U2I: no r̂; û is kept as the pooled interest), `no_aux` (β = 0), `no_pos` (no positional
  term in the User-to-Item network's attention, as the paper's DMR-NO-PE; the Item-to-Item attention keeps it),
  `double_embedding` (no separate V′: v′ is the shared input embedding, of twice the size). DMR also serves
  itemrec / userrec through `factors`: (u from a state's history, V′), i.e. its match score r = uᵀv′.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from harness.plugin import (
    DataError,
    FitContext,
    ImpressionRows,
    Model,
    ModelSpec,
    Param,
    hookimpl,
    padded_sequences,
)

PREDICT_BATCH = 4096


def mlp_head(sizes: list[int], base_ctr: float) -> nn.Sequential:
    """MLP (PReLU hidden layers) to one logit, its output bias started at the training CTR's log-odds."""
    out = nn.Linear(sizes[-1], 1)
    nn.init.constant_(out.bias, float(np.log(base_ctr / (1 - base_ctr))))
    return nn.Sequential(_mlp(sizes), out)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.PReLU()]
    return nn.Sequential(*layers)


class CTRModel(Model):
    """Shared plumbing: batches from ImpressionRows, the BCE training loop, predict_ctr."""


    def __init__(self, dim: int = 32, max_len: int = 50, epochs: int = 5, batch_size: int = 256, lr: float = 1e-3,
                 weight_decay: float = 0.0, user_embedding: bool = False, log_every: int = 0,
                 hidden: list | None = None):
        self.log_every = int(log_every)
        self.hidden = [int(h) for h in (hidden or [512, 256, 128])]  # MLP sizes (LR has no MLP)
        self.dim, self.max_len, self.epochs, self.batch_size = int(dim), int(max_len), int(epochs), int(batch_size)
        self.lr, self.weight_decay, self.user_embedding = float(lr), float(weight_decay), bool(user_embedding)
        self.net: nn.Module | None = None
        self.device = torch.device("cpu")

    # -------------------------------------------------------------------------------- features
    def _tensors(self, rows: ImpressionRows) -> dict[str, torch.Tensor]:
        """seq [n, L] (item + 1, 0 = padding, column 0 = latest), item [n] (+1), user [n], ctx [n, C]."""
        ctx = np.zeros((len(rows), len(self.ctx_names)), dtype=np.int64)
        for j, name in enumerate(self.ctx_names):
            v = rows.context.get(name)
            if v is None:
                raise DataError(f"{type(self).__name__}: the rows have no context column {name!r} seen in training")
            v = np.asarray(v, dtype=np.int64)
            ctx[:, j] = np.where((v >= 0) & (v < self.ctx_sizes[j] - 1), v, self.ctx_sizes[j] - 1)
        item = np.asarray(rows.item, dtype=np.int64)
        user = np.asarray(rows.user, dtype=np.int64)
        return {"seq": torch.as_tensor(rows.padded(self.max_len, pad=-1) + 1),
                "item": torch.as_tensor(np.where(item < self.n_items, item, -1) + 1),
                "user": torch.as_tensor(np.where(user < self.n_users, user, -1) + 1),
                "ctx": torch.as_tensor(ctx), "label": torch.as_tensor(np.asarray(rows.label, dtype=np.float32))}

    def build(self) -> nn.Module:
        raise NotImplementedError

    # -------------------------------------------------------------------------------- fit / predict
    def fit(self, train, loss, ctx: FitContext) -> None:
        rows = ctx.impressions
        if rows is None or len(rows) == 0:
            raise DataError(f"{type(self).__name__} trains on impressions: use a split that yields them "
                            "(split: {name: impressions}) on a dataset with impressions and clicks")
        self.n_items, self.n_users = int(train.n_items), int(train.n_users)
        self.ctx_names = sorted(rows.context)
        self.ctx_sizes = [int(np.max(rows.context[c], initial=0)) + 2 for c in self.ctx_names]  # + unknown
        self.base_ctr = float(np.clip(np.mean(rows.label), 1e-4, 1 - 1e-4))
        torch.manual_seed(ctx.seed)
        rng = np.random.default_rng(ctx.seed)
        self.device = ctx.device
        self.net = self.build().to(self.device)
        data = {k: v.to(self.device) for k, v in self._tensors(rows).items()}
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        bce = nn.BCEWithLogitsLoss()
        n = len(rows)
        step, window = 0, []
        for epoch in range(self.epochs):
            self.net.train()
            perm = torch.as_tensor(rng.permutation(n), device=self.device)
            tot, tot_aux, nb = 0.0, 0.0, 0
            for lo in range(0, n, self.batch_size):
                idx = perm[lo:lo + self.batch_size]
                batch = {k: v[idx] for k, v in data.items()}
                logit, aux = self.net(batch, train=True)
                target = bce(logit, batch["label"])
                total = target + aux if aux is not None else target
                opt.zero_grad()
                total.backward()
                opt.step()
                tot, nb = tot + float(target.detach()), nb + 1
                tot_aux += float(aux.detach()) if aux is not None else 0.0
                step += 1
                if self.log_every:
                    window.append((float(target.detach()), float(aux.detach()) if aux is not None else None))
                    if step % self.log_every == 0:
                        self._log_window(ctx, window, step)
                        window = []
            ctx.log_metric("train/loss", tot / max(nb, 1), epoch)
            if tot_aux:
                ctx.log_metric("train/aux_loss", tot_aux / max(nb, 1), epoch)
            ctx.progress(epoch + 1, self.epochs)

    @staticmethod
    def _log_window(ctx: FitContext, window: list, step: int) -> None:
        """The learning curves of DMR's Figure 3: mean L_target and β·L_NS over the last `log_every` batches."""
        ctx.log_metric("train/target_loss_iter", float(np.mean([t for t, _ in window])), step)
        aux = [a for _, a in window if a is not None]
        if aux:
            ctx.log_metric("train/aux_loss_iter", float(np.mean(aux)), step)

    @torch.no_grad()
    def logits(self, rows: ImpressionRows) -> np.ndarray:
        self.net.eval()
        data = self._tensors(rows)
        out = [self.net({k: v[lo:lo + PREDICT_BATCH].to(self.device) for k, v in data.items()}, train=False)[0].cpu()
               for lo in range(0, len(rows), PREDICT_BATCH)]
        return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)

    def predict_ctr(self, rows: ImpressionRows) -> np.ndarray:
        """Click probability of every row, [len(rows)]."""
        return expit(self.logits(rows))


# ------------------------------------------------------------------------------------------------- LR

class LRNet(nn.Module):
    def __init__(self, m: "LR"):
        super().__init__()
        self.n_items, self.pooling = m.n_items + 1, m.cross_pooling
        # every (behaviour, target) pair its own weight when they fit in the buckets; the table is never larger
        # than the pairs (a 2^20-row table under Adam costs ~10x the rest of LR's step on a 300-item catalogue)
        self.direct = self.n_items * self.n_items <= m.buckets
        self.buckets = self.n_items * self.n_items if self.direct else m.buckets
        self.bias = nn.Parameter(torch.full((1,), float(np.log(m.base_ctr / (1 - m.base_ctr)))))  # start at the CTR
        self.w_item = nn.Embedding(self.n_items, 1)
        self.w_ctx = nn.ModuleList(nn.Embedding(s, 1) for s in m.ctx_sizes)
        self.w_user = nn.Embedding(m.n_users + 1, 1) if m.user_embedding else None
        self.w_cross = nn.Embedding(self.buckets, 1)
        for e in [self.w_item, self.w_cross, *self.w_ctx] + ([self.w_user] if self.w_user is not None else []):
            nn.init.zeros_(e.weight)

    def cross_index(self, seq: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        idx = seq * self.n_items + item[:, None]
        if self.direct:
            return idx
        return (idx * 2654435761) % self.buckets  # multiplicative hashing (Knuth)

    def forward(self, b, train=False):
        mask = (b["seq"] > 0).float()
        logit = self.bias + self.w_item(b["item"])[:, 0]
        cross = (self.w_cross(self.cross_index(b["seq"], b["item"]))[..., 0] * mask).sum(1)
        if self.pooling == "mean":
            cross = cross / mask.sum(1).clamp(min=1.0)
        logit = logit + cross
        for j, e in enumerate(self.w_ctx):
            logit = logit + e(b["ctx"][:, j])[:, 0]
        if self.w_user is not None:
            logit = logit + self.w_user(b["user"])[:, 0]
        return logit, None


class LR(CTRModel):
    def __init__(self, cross_buckets: int = 1 << 20, cross_pooling: str = "mean", **kw):
        super().__init__(**kw)
        self.buckets, self.cross_pooling = int(cross_buckets), cross_pooling

    def build(self):
        return LRNet(self)


# ------------------------------------------------------------------------------------------------- shared embeddings

class Embeddings(nn.Module):
    """Item embedding V (0 = padding), context embeddings and the optional user embedding (x_p)."""

    def __init__(self, m: CTRModel, item_dim: int):
        super().__init__()
        self.item = nn.Embedding(m.n_items + 1, item_dim, padding_idx=0)
        self.ctx = nn.ModuleList(nn.Embedding(s, 8) for s in m.ctx_sizes)
        self.user = nn.Embedding(m.n_users + 1, m.dim) if m.user_embedding else None
        nn.init.normal_(self.item.weight, std=0.05)
        with torch.no_grad():
            self.item.weight[0].zero_()
        self.out_dim = 8 * len(m.ctx_sizes) + (m.dim if m.user_embedding else 0)

    def side(self, b) -> torch.Tensor:
        """[x_p, x_c]: user (optional) and context embeddings."""
        parts = [e(b["ctx"][:, j]) for j, e in enumerate(self.ctx)]
        if self.user is not None:
            parts.append(self.user(b["user"]))
        return torch.cat(parts, 1) if parts else torch.zeros(len(b["item"]), 0, device=b["item"].device)


# ------------------------------------------------------------------------------------------------- DIN

class _DINNet(nn.Module):
    def __init__(self, m: "DIN"):
        super().__init__()
        d = m.dim
        self.emb = Embeddings(m, d)
        self.att = nn.Sequential(_mlp([4 * d, 80, 40]), nn.Linear(40, 1))
        self.mlp = mlp_head([self.emb.out_dim + 2 * d] + list(m.hidden), m.base_ctr)

    def forward(self, b, train=False):
        e = self.emb.item(b["seq"])                           # [B, L, d]
        ec = self.emb.item(b["item"])                         # [B, d]
        q = ec[:, None, :].expand_as(e)
        w = self.att(torch.cat([e, q, e - q, e * q], -1))[..., 0] * (b["seq"] > 0).float()
        pooled = (w[..., None] * e).sum(1)
        return self.mlp(torch.cat([self.emb.side(b), ec, pooled], 1))[:, 0], None


class DIN(CTRModel):
    def build(self):
        return _DINNet(self)


# ------------------------------------------------------------------------------------------------- DMR

class _DMRNet(nn.Module):
    def __init__(self, m: "DMR"):
        super().__init__()
        self.m = m
        d_e = m.dim * (2 if m.double_embedding else 1)
        d_p = d_h = m.dim
        self.emb = Embeddings(m, d_e)
        self.pos = nn.Embedding(m.max_len, d_p)
        # User-to-Item network (Eqs. 2-5)
        self.u_wp, self.u_we = nn.Linear(d_p, d_h, bias=False), nn.Linear(d_e, d_h)
        self.u_z = nn.Linear(d_h, 1, bias=False)
        self.g = nn.Sequential(nn.Linear(d_e, d_e), nn.PReLU())
        self.v_out = None if m.double_embedding else nn.Embedding(m.n_items + 1, d_e)
        if self.v_out is not None:
            nn.init.normal_(self.v_out.weight, std=0.05)
        # Item-to-Item network (Eqs. 10-13)
        self.i_wc, self.i_wp = nn.Linear(d_e, d_h, bias=False), nn.Linear(d_p, d_h, bias=False)
        self.i_we, self.i_z = nn.Linear(d_e, d_h), nn.Linear(d_h, 1, bias=False)
        n_in = self.emb.out_dim + 2 * d_e + (0 if m.no_u2i else 1) + (0 if m.no_i2i else 1)
        self.mlp = mlp_head([n_in] + list(m.hidden), m.base_ctr)

    def out_embedding(self, idx: torch.Tensor) -> torch.Tensor:
        return self.emb.item(idx) if self.v_out is None else self.v_out(idx)

    def user_vector(self, seq: torch.Tensor) -> torch.Tensor:
        """u = g(Σ_t α_t e_t) with α = softmax_t(zᵀ tanh(W_p p_t + W_e e_t + b)) over the non-padding behaviours."""
        e = self.emb.item(seq)
        h = self.u_we(e)
        if not self.m.no_pos:
            h = h + self.u_wp(self.pos.weight[: seq.shape[1]])[None]
        mask = seq > 0
        a = self.u_z(torch.tanh(h))[..., 0].masked_fill(~mask, -1e9)
        alpha = torch.softmax(a, 1) * mask.float()
        return self.g((alpha[..., None] * e).sum(1))

    def forward(self, b, train=False):
        seq, item = b["seq"], b["item"]
        mask = seq > 0
        e, ec = self.emb.item(seq), self.emb.item(item)
        parts = [self.emb.side(b), ec]
        # Item-to-Item: â_t, r̂ = Σ â_t, û = Σ softmax(â)_t e_t
        h = self.i_we(e) + self.i_wc(ec)[:, None, :] + self.i_wp(self.pos.weight[: seq.shape[1]])[None]
        a_hat = self.i_z(torch.tanh(h))[..., 0] * mask.float()
        alpha = torch.softmax(a_hat.masked_fill(~mask, -1e9), 1) * mask.float()
        parts.append((alpha[..., None] * e).sum(1))
        aux = None
        if not self.m.no_u2i:
            u = self.user_vector(seq)
            parts.append((u * self.out_embedding(item)).sum(1, keepdim=True))
            if train and self.m.aux_weight > 0 and not self.m.no_aux:
                aux = self.m.aux_weight * self.aux_loss(seq)
        if not self.m.no_i2i:
            parts.append(a_hat.sum(1, keepdim=True))
        return self.mlp(torch.cat(parts, 1))[:, 0], aux

    def aux_loss(self, seq: torch.Tensor) -> torch.Tensor:
        """L_NS (Eq. 8): u_{T-1} (behaviours before the latest; positions restart at the latest of them) against
        the latest behaviour and `negatives` items drawn from the background distribution (or uniformly); rows
        with fewer than 2 behaviours skipped."""
        ok = seq[:, 1] > 0
        if not ok.any():
            return torch.zeros((), device=seq.device)
        prefix, pos_item = seq[ok, 1:], seq[ok, 0]
        u = self.user_vector(prefix)
        s_pos = (u * self.out_embedding(pos_item)).sum(1)
        k, n = self.m.negatives, self.m.n_items
        probs = self.background if self.m.sampler == "background" else self.uniform  # index 0 (padding): 0
        if k >= n:  # more draws than items: the same k draws as counts per item, scored against every item once
            counts = torch.distributions.Multinomial(k, probs=probs).sample((len(u),))[:, 1:]
            s_all = u @ self.out_embedding(torch.arange(1, n + 1, device=seq.device)).T
            neg_term = (counts * nn.functional.logsigmoid(-s_all)).sum(1)
        else:
            neg = torch.multinomial(probs, len(u) * k, replacement=True).view(len(u), k)
            neg_term = nn.functional.logsigmoid(-torch.einsum("bd,bkd->bk", u, self.out_embedding(neg))).sum(1)
        return -(nn.functional.logsigmoid(s_pos) + neg_term).mean()


class DMR(CTRModel):
    def __init__(self, negatives: int = 2000, aux_weight: float = 0.1, sampler: str = "background",
                 no_u2i: bool = False, no_i2i: bool = False, no_aux: bool = False, no_pos: bool = False,
                 double_embedding: bool = False, **kw):
        super().__init__(**kw)
        self.negatives, self.aux_weight, self.sampler = int(negatives), float(aux_weight), sampler
        self.no_u2i, self.no_i2i, self.no_aux = bool(no_u2i), bool(no_i2i), bool(no_aux)
        self.no_pos, self.double_embedding = bool(no_pos), bool(double_embedding)

    def fit(self, train, loss, ctx: FitContext) -> None:
        # the background distribution of L_NS: each item's share of the training events (+1: none is impossible)
        self.item_freq = train.item_counts.astype(np.float64) + 1.0
        super().fit(train, loss, ctx)

    def build(self):
        net = _DMRNet(self)
        p = np.concatenate([[0.0], self.item_freq / self.item_freq.sum()])  # index 0 is padding
        net.register_buffer("background", torch.as_tensor(p, dtype=torch.float32), persistent=False)
        uniform = np.r_[0.0, np.full(self.n_items, 1.0 / self.n_items)]
        net.register_buffer("uniform", torch.as_tensor(uniform, dtype=torch.float32), persistent=False)
        return net

    @torch.no_grad()
    def factors(self, states):
        """itemrec / userrec from the User-to-Item network: (u of each state's last max_len behaviours, V′), so
        the score of (state, item) is the relevance r = uᵀv′ of Eq. 5 (what the auxiliary match loss trains)."""
        if self.no_u2i:  # the spec's tasks_for keeps such a configuration out of ranking tasks
            return None
        self.net.eval()
        seq = padded_sequences(states.hist_ptr, states.hist_item, self.max_len) + 1
        seq = np.where(seq <= self.n_items, seq, 0)
        v = self.net.out_embedding(torch.arange(1, self.n_items + 1, device=self.device))
        if not len(seq):
            return torch.zeros(0, v.shape[1], device=self.device), v
        u = torch.cat([self.net.user_vector(torch.as_tensor(seq[lo:lo + PREDICT_BATCH], device=self.device))
                       for lo in range(0, len(seq), PREDICT_BATCH)])
        return u, v


# ------------------------------------------------------------------------------------------------- registration

CTR_ONLY = {"score_kind": "probability", "offers": ("ctr_probabilities",), "requires": ("impressions",)}
"""The spec fields every CTR-only model shares: click probabilities, trained on the split's impressions."""


def dmr_tasks(params: dict) -> tuple[str, ...]:
    """DMR ranks items by its User-to-Item relevance r = uᵀv′; the no_u2i ablation has none, so serves ctr only."""
    return ("ctr",) if params.get("no_u2i") else ("ctr", "itemrec", "userrec")


COMMON = (
    Param("dim", "int", 32, "item embedding size (DMR: 32)", low=1),
    Param("max_len", "int", 50, "behaviour sequence length used (most recent kept)", low=1),
    Param("epochs", "int", 5, "training epochs", low=1),
    Param("batch_size", "int", 256, "mini-batch size", low=1),
    Param("lr", "float", 1e-3, "Adam learning rate", low=0.0),
    Param("weight_decay", "float", 0.0, "Adam weight decay", low=0.0),
    Param("user_embedding", "bool", False, "add a user-id embedding (x_p) / user weight"),
    Param("log_every", "int", 0, "also log the training losses averaged over every log_every batches "
                                 "(train/*_iter: DMR's Figure 3 curves); 0: per epoch only", low=0),
)
HIDDEN = Param("hidden", "list", None, "MLP hidden sizes (default 512, 256, 128 with PReLU)", nullable=True)
CROSS = (Param("cross_buckets", "int", 1 << 20, "hash buckets for behaviour × target crosses", low=1),
         Param("cross_pooling", "str", "mean", "cross weights summed over the behaviours or averaged (sequence "
               "lengths drift with time)", choices=("mean", "sum")))  # LR's and Wide&Deep's wide part


@hookimpl
def register_models(register):
    register(ModelSpec(name="lr", factory=LR, tasks=("ctr",), **CTR_ONLY,
                       description="logistic regression with behaviour × target cross features (DMR's LR baseline)",
                       params=COMMON + CROSS))
    register(ModelSpec(name="din", factory=DIN, tasks=("ctr",), **CTR_ONLY, params=COMMON + (HIDDEN,),
                       description="Deep Interest Network: target-attention pooling of the behaviour sequence + MLP"))
    register(ModelSpec(
        name="dmr", factory=DMR, tasks=("ctr", "itemrec", "userrec"), score_kind="logit",
        offers=("ctr_probabilities", "factors"), requires=("impressions",), tasks_for=dmr_tasks,
        description="Deep Match to Rank: U2I (positional attention, output embedding V′, auxiliary NS loss) + "
                    "I2I relevance + MLP",
        params=COMMON + (HIDDEN,
                         Param("negatives", "int", 2000, "negative samples k of the auxiliary match loss (the "
                               "paper's public-data setting: 2,000)", low=1),
                         Param("sampler", "str", "background", "negatives of L_NS: background (∝ training frequency "
                               "+ 1, the paper's negative sampling) or uniform", choices=("background", "uniform")),
                         Param("aux_weight", "float", 0.1, "β, the weight of the auxiliary loss", low=0.0),
                         Param("no_u2i", "bool", False, "ablation: drop the User-to-Item network (r and L_NS)"),
                         Param("no_i2i", "bool", False, "ablation: drop r̂ of the Item-to-Item network"),
                         Param("no_aux", "bool", False, "ablation: no auxiliary match loss"),
                         Param("no_pos", "bool", False,
                               "ablation: no positional encoding in the User-to-Item attention"),
                         Param("double_embedding", "bool", False,
                               "ablation: no separate V′; shared item embedding of twice the size"))))
