"""Sequential item recommenders `rnn` (GRU4Rec-style) and `sasrec` (Kang & McAuley's self-attention), and their
recurrent-intensity variants (RIM, Sec. 3): `rnn_pop`, `rnn_hawkes`, `rnn_hp`, `sasrec_pop`, `sasrec_hawkes`,
`sasrec_hp`.

Item model (RIM Eq. 1): p(y | x) = softmax_y(w_yᵀ h(x) + b_y), with h(x) the encoder's output after the last item of
the state's *own* history (its last `max_len` items; a begin-of-sequence token when the whole history fits), so
states of users never seen in training are scored from their histories. Encoders as RecBole builds GRU4Rec and
SASRec: a one-layer GRU over dropped-out item embeddings and a linear map back to the embedding space (`rnn`), or
`n_layers` causal post-norm Transformer blocks over LayerNorm(item + position embedding) (`sasrec`); with `tied`
(the default) w_y is item y's input embedding, and b_y = 0 unless `bias` (neither has an item bias; without it the
GRU's NDCG@10 on MovieLens-100K rises from .106 to .111, benchmarks/sequence_epoch.py).

Training (vectorised, no loop over users): every training user's time-ordered sequence [BOS, i_1, ..., i_n] is cut
from its end into windows of up to `max_len` inputs, one every `stride` targets; each window predicts the next item
at its last `stride` positions (every target once, each from at least max_len − stride earlier items — the
"many-to-many" form of RecBole's one-sample-per-prefix training: an epoch costs max_len/stride passes over the
events rather than one per prefix); windows are right-padded into one tensor and shuffled into batches; full softmax
cross-entropy over all items; Adam. When the split has a validation set (leave_one_out; temporal with valid: true)
training stops after `patience` epochs without a better validation NDCG@10 and keeps the best epoch, as RecBole
does; otherwise it runs `epochs` epochs.

Scores. `rnn` / `sasrec` give log p(y | x) (score_kind `logit`: a normalised log-softmax, so user targeting ranks
states by p(y | x) alone — the "no prior" baseline of the paper). The intensity variants give
log λ(x, y) = log λ(x) + log p(y | x) (Eq. 5; score_kind `log_intensity`) with the prior λ(x) of
`plugins/models/intensity.py`: `_pop` max(0.01, history length), `_hawkes` a sum-of-exponential-kernels Hawkes
process fitted by maximum likelihood, `_hp` the Hawkes-Poisson calibration of Eq. 7 (needs `temporal` with
`calibration`). Everything is exposed as factors [h(x), 1, c(x)]·[w_y, b_y, 1] with
c(x) = log λ(x) − logsumexp_y(w_yᵀh(x) + b_y), so the harness ranks both tasks in blocks.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.plugin import ConfigError, DataError, Model, ModelSpec, Param, UserStates, hookimpl, validation_ndcg

from .intensity import HawkesPoissonPrior, HawkesPrior, PopPrior

FIT_MEMO = 6  # fitted sequence models kept per process for reuse across the intensity variants
_FITS: dict[str, dict] = {}


# --------------------------------------------------------------------------------------------- sequence tensors

def windows(ptr: np.ndarray, items: np.ndarray, max_len: int, bos: int, stride: int | None = None):
    """Training windows of sequences items[ptr[k]:ptr[k+1]] (dense ids 0..n-1).

    Token ids are item + 1 (0 = padding, `bos` = begin-of-sequence). Sequence k has inputs
    [bos, i_1, ..., i_{n-1}] and targets [i_1, ..., i_n]. Windows of up to `max_len` positions end every `stride`
    targets from the sequence's end; a window trains only its last `stride` targets (every target exactly once), so
    each target is predicted from at least max_len − stride earlier items (or the whole history when shorter).
    stride ≥ max_len (or None) cuts disjoint windows. Returns (inputs [W, L] long, 0 = padding; targets [W, L]
    long, -1 where no loss)."""
    stride = max_len if stride is None else min(int(stride), max_len)
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    ptr = np.asarray(ptr, np.int64)
    lens = np.diff(ptr)
    lens_k = lens[lens > 0]
    starts = ptr[:-1][lens > 0]
    n_win = -(-lens_k // stride)
    seq = np.repeat(np.arange(len(lens_k)), n_win)
    k_from_end = np.arange(n_win.sum()) - np.repeat(np.cumsum(n_win) - n_win, n_win)
    hi = lens_k[seq] - k_from_end * stride           # window positions [lo, hi) within the sequence
    lo = np.maximum(hi - max_len, 0)
    width = hi - lo
    pos = lo[:, None] + np.arange(max_len)[None, :]
    valid = np.arange(max_len)[None, :] < width[:, None]
    trained = valid & (pos >= (hi - stride)[:, None])
    flat = starts[seq][:, None] + pos
    tgt = np.where(trained, items[np.minimum(flat, len(items) - 1)], -1)
    prev = flat - 1
    inp = np.where(pos == 0, bos, items[np.clip(prev, 0, len(items) - 1)] + 1)
    inp = np.where(valid, inp, 0)
    return torch.as_tensor(inp, dtype=torch.long), torch.as_tensor(tgt, dtype=torch.long)


def state_inputs(states: UserStates, rows: np.ndarray, max_len: int, bos: int):
    """Right-padded inputs [len(rows), L] of the last max_len tokens of [bos, history] and their lengths."""
    rows = np.asarray(rows, np.int64)
    ptr = np.asarray(states.hist_ptr, np.int64)
    n_hist = ptr[rows + 1] - ptr[rows]
    n_tok = np.minimum(n_hist + 1, max_len)               # tokens incl. bos if it fits
    first = ptr[rows + 1] - n_tok                           # first history index used (ptr[rows]-1 means bos)
    j = np.arange(max_len)[None, :]
    idx = first[:, None] + j
    valid = j < n_tok[:, None]
    is_bos = idx < ptr[rows][:, None]
    hist = np.asarray(states.hist_item, np.int64)
    hist = hist if len(hist) else np.zeros(1, np.int64)
    tok = np.where(is_bos, bos, hist[np.clip(idx, 0, len(hist) - 1)] + 1)
    tok = np.where(valid, tok, 0)
    return torch.as_tensor(tok, dtype=torch.long), torch.as_tensor(n_tok, dtype=torch.long)


# --------------------------------------------------------------------------------------------- encoders

class GRUEncoder(nn.Module):
    """GRU4Rec's encoder as RecBole builds it: dropout on the item embeddings, a one-layer GRU, a linear map from the
    hidden state to the embedding space (Xavier initialisation)."""

    def __init__(self, n_tokens: int, d: int, hidden: int, dropout: float):
        super().__init__()
        self.emb = nn.Embedding(n_tokens, d, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(d, hidden, batch_first=True)
        self.out = nn.Linear(hidden, d)
        nn.init.xavier_normal_(self.emb.weight)
        for name, w in self.gru.named_parameters():
            if name.startswith("weight"):
                nn.init.xavier_uniform_(w)
        with torch.no_grad():
            self.emb.weight[0].zero_()

    def forward(self, tok):  # [B, L] -> [B, L, d]; right padding never reaches a real position
        h, _ = self.gru(self.drop(self.emb(tok)))
        return self.out(h)


class SASEncoder(nn.Module):
    """SASRec's encoder as RecBole builds it: LayerNorm(item + position embedding), dropout, then `n_layers` causal
    post-norm Transformer blocks (GELU feed-forward of width `inner`); weights drawn from N(0, 0.02²)."""

    def __init__(self, n_tokens: int, d: int, max_len: int, n_layers: int, n_heads: int, dropout: float,
                 inner: int = 256):
        super().__init__()
        self.emb = nn.Embedding(n_tokens, d, padding_idx=0)
        self.pos = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d, n_heads, dim_feedforward=inner, dropout=dropout, activation="gelu",
                                           batch_first=True, norm_first=False, layer_norm_eps=1e-12)
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.register_buffer("causal", torch.triu(torch.full((max_len, max_len), float("-inf")), 1), persistent=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.emb.weight[0].zero_()

    def forward(self, tok):  # right padding + causal mask: real positions attend to real positions only
        L = tok.shape[1]
        x = self.drop(self.norm(self.emb(tok) + self.pos.weight[:L][None]))
        return self.blocks(x, mask=self.causal[:L, :L], is_causal=True)


# --------------------------------------------------------------------------------------------- item model

class SequenceRecommender(Model):
    """p(y | x) = softmax(w_yᵀh(x) + b_y) from a GRU or self-attention encoder; scores log p(y | x)."""


    # dropout and lr have no default here: rnn and sasrec differ, and their Params (ARCHS) say which
    def __init__(self, *, arch="gru", factors=64, hidden=128, max_len=50, n_layers=2, n_heads=2, dropout,
                 epochs=15, lr, batch_size=32, weight_decay=0.0, block=2048, tied=True, stride=25, inner=256,
                 patience=10, bias=False):
        if arch not in ("gru", "sasrec"):
            raise ValueError(f"arch must be gru or sasrec, got {arch!r}")
        if arch == "sasrec" and factors % n_heads:
            raise ConfigError(f"sasrec: n_heads={n_heads} must divide factors={factors} (each head gets "
                              f"factors / n_heads dimensions); set n_heads to a divisor of {factors}, e.g. 1")
        self.arch, self.d, self.hidden, self.max_len = arch, factors, hidden, max_len
        self.n_layers, self.n_heads, self.dropout = n_layers, n_heads, dropout
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.weight_decay, self.block = weight_decay, block
        self.tied, self.stride, self.inner, self.patience, self.bias = tied, stride, inner, patience, bias

    def _build(self, n_items: int):
        n_tok = n_items + 2
        if self.arch == "gru":
            enc = GRUEncoder(n_tok, self.d, self.hidden, self.dropout)
        else:
            enc = SASEncoder(n_tok, self.d, self.max_len, self.n_layers, self.n_heads, self.dropout, self.inner)
        self.encoder = enc
        self._W = None if self.tied else nn.Parameter(torch.randn(n_items, self.d) * (1.0 / math.sqrt(self.d)))
        self.b = nn.Parameter(torch.zeros(n_items), requires_grad=self.bias)  # b_y = 0 without `bias`

    @property
    def W(self) -> torch.Tensor:
        """Output item vectors w_y: the input embeddings of the items when `tied`."""
        return self.encoder.emb.weight[1:self.n_items + 1] if self.tied else self._W

    def _fit_key(self, train, seed: int, valid=None) -> str:
        """What determines a fit: the hyper-parameters, the seed, the training events and the early-stopping
        validation set (hashed)."""
        h = hashlib.sha1(repr((self.arch, self.d, self.hidden, self.max_len, self.n_layers, self.n_heads, self.dropout,
                               self.epochs, self.lr, self.batch_size, self.weight_decay, self.tied, self.stride,
                               self.inner, self.patience, self.bias, int(seed),
                               train.n_users, train.n_items)).encode())
        arrays = [train.user, train.item, train.time]
        if valid is not None:
            arrays += [valid.states.user, valid.states.time, valid.targets.indptr, valid.targets.indices]
        for a in arrays:
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def fit(self, train, loss, ctx):
        """Train p(y | x); a fit with the same key in this process is reused (rnn, rnn_pop, rnn_hawkes and rnn_hp
        share one sequence model per seed: RIM's variants differ only in the prior λ(x))."""
        if len(train) == 0:
            raise DataError(f"{self.arch}: no training events")
        valid = self._early_stopping_set(ctx)
        key = self._fit_key(train, ctx.seed, valid)
        if key in _FITS:
            self._restore(_FITS[key], ctx)
            return
        curves: list = []
        log = ctx.log_metric

        def log_metric(name, value, step):
            curves.append((name, value, step))
            log(name, value, step)

        ctx = dataclasses.replace(ctx, log_metric=log_metric)
        self._train(train, ctx, valid)
        _FITS[key] = {"state": self._snapshot(), "curves": curves,
                      "epoch_times": list(self.epoch_times), "n_items": self.n_items}
        while len(_FITS) > FIT_MEMO:
            _FITS.pop(next(iter(_FITS)))

    def _state(self) -> dict:
        return {**{f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}, "b": self.b,
                **({} if self.tied else {"W": self._W})}

    def _snapshot(self) -> dict:
        return {k: v.detach().clone() for k, v in self._state().items()}

    def _load(self, st: dict) -> None:
        self.encoder.load_state_dict({k[len("encoder."):]: v.clone()
                                      for k, v in st.items() if k.startswith("encoder.")})
        with torch.no_grad():
            if not self.tied:
                self._W.copy_(st["W"])
            self.b.copy_(st["b"])

    def _restore(self, fit: dict, ctx) -> None:
        self.n_items, self.bos = fit["n_items"], fit["n_items"] + 1
        self._build(self.n_items)
        self._load(fit["state"])
        self.encoder.eval()
        self.epoch_times = list(fit["epoch_times"])
        for name, value, step in fit["curves"]:
            ctx.log_metric(name, value, step)
        ctx.log_metric("time/fit_reused", 1.0, 0)
        ctx.progress(self.epochs, self.epochs)

    def _early_stopping_set(self, ctx):
        """The split's validation set when `patience` is set and the split has one (leave_one_out; temporal with
        valid: true), else None: a fixed number of epochs."""
        return None if self.patience is None else ctx.valid

    @torch.no_grad()
    def valid_ndcg(self, valid, k: int = 10) -> float:
        """NDCG@k on a validation EvalSet, as the harness evaluates itemrec (`harness.plugin.validation_ndcg`)."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            return validation_ndcg(valid, lambda rows: self.represent(valid.states, rows)[0] @ self.W.T + self.b,
                                   self.n_items, k, block_size=self.block)
        finally:
            self.encoder.train(was_training)

    def _train(self, train, ctx, valid=None):
        """Full-softmax next-item training; with a validation set, stops after `patience` epochs without a better
        validation NDCG@10 and keeps the best epoch's weights (RecBole's early stopping)."""
        torch.manual_seed(ctx.seed)
        gen = torch.Generator().manual_seed(ctx.seed)
        self.n_items, self.bos = train.n_items, train.n_items + 1
        self._build(self.n_items)
        order = train.order
        users = train.user[order]
        ptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=train.n_users))]).astype(np.int64)
        inp, tgt = windows(ptr, train.item[order], self.max_len, self.bos, self.stride)
        params = list(self.encoder.parameters()) + ([self.b] if self.bias else []) + ([] if self.tied else [self._W])
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        n = len(inp)
        lengths = (inp > 0).sum(1)
        self.epoch_times, self.best_epoch = [], None
        best, best_state, since = -1.0, None, 0
        for epoch in range(self.epochs):
            t0 = time.perf_counter()
            self.encoder.train()
            perm = torch.randperm(n, generator=gen)
            total, count = 0.0, 0
            for lo in range(0, n, self.batch_size):
                sel = perm[lo:lo + self.batch_size]
                L = min(self.max_len, -(-int(lengths[sel].max()) // 16) * 16)  # few distinct shapes
                x, y = inp[sel, :L], tgt[sel, :L]
                h = self.encoder(x)
                m = y >= 0
                logits = h[m] @ self.W.T + self.b
                out = F.cross_entropy(logits, y[m], reduction="sum")
                opt.zero_grad(set_to_none=True)
                (out / int(m.sum())).backward()
                opt.step()
                total += float(out.detach())
                count += int(m.sum())
            self.epoch_times.append(time.perf_counter() - t0)
            ctx.log_metric("train/loss", total / max(count, 1), epoch)
            ctx.log_metric("time/epoch_s", self.epoch_times[-1], epoch)
            ctx.progress(epoch + 1, self.epochs)
            if valid is not None:
                score = self.valid_ndcg(valid)
                ctx.log_metric("valid/ndcg_10", score, epoch)
                if score > best:
                    best, best_state, since, self.best_epoch = score, self._snapshot(), 0, epoch
                else:
                    since += 1
                    if since >= self.patience:
                        break
        if best_state is not None:
            self._load(best_state)
            ctx.log_metric("train/best_epoch", float(self.best_epoch), 0)
        self.encoder.eval()

    @torch.no_grad()
    def represent(self, states: UserStates, rows: np.ndarray | None = None):
        """(h(x) [n, d], logsumexp_y(w_yᵀh + b_y) [n]) for states[rows], in blocks of `block` states."""
        rows = np.arange(len(states)) if rows is None else np.asarray(rows, np.int64)
        hs, lses = [], []
        for lo in range(0, len(rows), self.block):
            tok, n_tok = state_inputs(states, rows[lo:lo + self.block], self.max_len, self.bos)
            L = int(n_tok.max()) if len(n_tok) else 1
            out = self.encoder(tok[:, :max(L, 1)])
            h = out[torch.arange(len(tok)), n_tok - 1]
            hs.append(h)
            lses.append(torch.logsumexp(h @ self.W.T + self.b, dim=1))
        if not hs:
            return torch.zeros((0, self.d)), torch.zeros(0)
        return torch.cat(hs), torch.cat(lses)

    def log_item_probs(self, states: UserStates, rows: np.ndarray | None = None) -> torch.Tensor:
        """log p(y | x) [n, n_items] (for checks; the ranking engine uses `factors`)."""
        h, lse = self.represent(states, rows)
        with torch.no_grad():
            return h @ self.W.T + self.b - lse[:, None]

    def log_prior(self, states: UserStates) -> np.ndarray:
        return np.zeros(len(states))

    def factors(self, states):
        h, lse = self.represent(states)
        c = torch.as_tensor(self.log_prior(states), dtype=torch.float32) - lse
        n = len(h)
        with torch.no_grad():
            return (torch.cat([h, torch.ones(n, 1), c[:, None]], 1),
                    torch.cat([self.W.detach(), self.b.detach()[:, None], torch.ones(self.n_items, 1)], 1))


class IntensityRecommender(SequenceRecommender):
    """λ(x, y) = λ(x)·p(y | x) (Eq. 5): a sequence model's p(y | x) times a user-intensity prior; scores log λ(x, y)."""


    def __init__(self, prior="pop", **kw):
        prior_kw = {k: kw.pop(k) for k in list(kw) if k in _PRIOR_KEYS}
        super().__init__(**kw)
        self.prior = PRIORS[prior][0](**prior_kw)

    def fit(self, train, loss, ctx):
        self.prior.fit(train, ctx)   # first: a prior that cannot be fitted (no calibration window) fails fast
        super().fit(train, loss, ctx)

    def log_prior(self, states):
        return self.prior.log_intensity(states)


_PRIOR_KEYS = {"n_kernels", "min_scale", "max_scale", "horizon", "onset", "C", "backend", "l2", "floor",
               "kernel_range"}


# --------------------------------------------------------------------------------------------- registration

def seq_params(dropout: float, lr: float, bias: bool = False) -> tuple:
    """The training parameters of both encoders; dropout and learning rate differ (RecBole's GRU4Rec uses 0.3 on
    the embeddings, its SASRec 0.5 everywhere; the GRU is tuned at lr 3e-3 here, SASRec at RecBole's 1e-3)."""
    return (
        Param("factors", "int", 64, "item embedding / output dimension d", low=1, high=4096),
        Param("max_len", "int", 50, "history items the encoder reads (training windows have this length)", low=1,
              high=4096),
        Param("dropout", "float", dropout, "dropout on the item embeddings (rnn); on the embeddings, attention and "
              "feed-forward layers (sasrec)", low=0.0, high=0.95),
        Param("epochs", "int", 15, "passes over the training windows (the most, with early stopping)", low=1),
        Param("lr", "float", lr, "Adam learning rate", low=0.0, high=10.0),
        Param("batch_size", "int", 32, "training windows per step", low=1),
        Param("weight_decay", "float", 0.0, "Adam weight decay", low=0.0),
        Param("stride", "int", 25, "training windows end every `stride` targets and train only those, so each "
              "target sees at least max_len − stride earlier items (null: max_len, disjoint windows)", low=1,
              nullable=True),
        Param("patience", "int", 10, "early stopping: stop after this many epochs without a better validation "
              "NDCG@10 and keep the best epoch (splits with a validation set only; null: train all epochs)", low=1,
              nullable=True),
        Param("tied", "bool", True, "output item vectors w_y are the input item embeddings (as GRU4Rec / SASRec)"),
        Param("bias", "bool", bias, "learn the item bias b_y of Eq. 1 (RecBole's GRU4Rec / SASRec have none)"),
    )


GRU_PARAMS = (Param("hidden", "int", 128, "GRU hidden size", low=1, high=8192),)
SAS_PARAMS = (Param("n_layers", "int", 2, "self-attention blocks", low=1, high=64),
              Param("n_heads", "int", 2, "attention heads (must divide factors)", low=1, high=64),
              Param("inner", "int", 256, "feed-forward width of each block", low=1, high=65536))
HAWKES_PARAMS = (
    Param("n_kernels", "int", 50, "R exponential kernels of the Hawkes prior", low=1, high=1000),
    Param("kernel_range", "str", "paper", "paper: kernel half-lives log-spaced from 1e-3 to 10·t_max (t_max the "
          "longest training history's span; RIM Sec. 4.2); code: time constants from min_scale to max_scale (the "
          "authors' code)", choices=("paper", "code")),
    Param("min_scale", "float", 1e-6, "kernel_range code: smallest kernel time constant, in horizons", low=1e-12),
    Param("max_scale", "float", 10.0, "kernel_range code: largest kernel time constant, in horizons", low=1e-12),
    Param("horizon", "float", None, "time unit of the Hawkes fit in days (null: the split's horizon, else 1 day)",
          low=1e-9, nullable=True),
    Param("onset", "bool", True, "times from each user's first event, which excites through its own kernels"),
    Param("C", "float", 1e3, "inverse L2 penalty of the maximum-likelihood fit (tick's C)", low=1e-12),
    Param("backend", "str", "numpy", "numpy (our L-BFGS-B fit) or tick (HawkesSumExpKern; needs tick + numpydoc)",
          choices=("numpy", "tick")),
)
HP_PARAMS = HAWKES_PARAMS + (Param("l2", "float", 1e-3, "L2 penalty on softplus(w) of the Poisson calibration",
                                   low=0.0),)
POP_PARAMS = (Param("floor", "float", 0.01, "λ(x) = max(floor, history length)", low=1e-12),)

PRIORS = {"pop": (PopPrior, POP_PARAMS, "λ(x) = max(0.01, history length) (RNN-Pop)"),
          "hawkes": (HawkesPrior, HAWKES_PARAMS, "λ(x) from a 50-kernel Hawkes process fitted by maximum likelihood"),
          "hp": (HawkesPoissonPrior, HP_PARAMS,
                 "λ(x) = Hawkes states · softplus(w) calibrated on the calibration window (Eq. 7; temporal split "
                 "with calibration)")}
ARCHS = {"rnn": ("gru", seq_params(0.3, 0.003) + GRU_PARAMS, "GRU4Rec-style"),
         "sasrec": ("sasrec", seq_params(0.5, 0.001) + SAS_PARAMS, "SASRec self-attention")}


def _factory(arch: str, prior: str | None):
    if prior is None:
        return functools.partial(SequenceRecommender, arch=ARCHS[arch][0])
    return functools.partial(IntensityRecommender, arch=ARCHS[arch][0], prior=prior)


@hookimpl
def register_models(register):
    for name, (_, arch_params, what) in ARCHS.items():
        register(ModelSpec(
            name=name, factory=_factory(name, None), params=arch_params,
            description=f"{what} next-item model: scores log p(y|x) = log softmax(w_y·h(x) + b_y) from x's history"))
        for prior, (_, prior_params, pwhat) in PRIORS.items():
            register(ModelSpec(
                name=f"{name}_{prior}", factory=_factory(name, prior), params=arch_params + prior_params,
                score_kind="log_intensity", requires=("calibration",) if prior == "hp" else (),
                set_back=prior == "hp",
                description=f"RIM: log λ(x,y) = log λ(x) + log p(y|x) ({what}); {pwhat}"))
