"""`gru4rec`: GRU4Rec as its authors define it — Hidasi et al., ICLR 2016 (session-parallel mini-batches) with the
negative sampling and losses of Hidasi & Karatzoglou, CIKM 2018 ("Recurrent neural networks with top-k gains").

A "session" here is a user's time-ordered training sequence (sequences of one event give no training pair and are
skipped). Training, as the authors' code does it:
- session-parallel mini-batches: `batch_size` lanes each read one sequence, one event per step; the input is the
  lane's current item, the target its next item; a lane whose sequence ends takes the next unread sequence (in order
  of first event time, lower lane index first on ties) and its hidden state is reset to zero; once no sequence is
  left, finished lanes drop out. The hidden state is carried between steps but not back-propagated through (the
  authors detach it every step).
- negatives: the other lanes' targets of the same step (in-batch) plus `n_sample` items drawn with replacement
  ∝ count^`sample_alpha` and shared by the whole step; as in the authors' code, only a row's own target column is
  excluded from its negatives (another lane with the same target item stays a negative).
- losses over the row's scores r (target r_i, negatives r_j, s_j = softmax of the negatives' scores):
  TOP1-max = Σ_j s_j (σ(r_j − r_i) + σ(r_j²)); BPR-max = −log Σ_j s_j σ(r_i − r_j) + bpreg·Σ_j s_j r_j²;
  cross_entropy = −log softmax(r)_i over target and negatives. `elu` applies ELU(elu) to the scores before BPR-max
  (the authors' PyTorch default 0.5; it is monotone, so it does not change rankings).
- the authors' defaults otherwise: one GRU layer of 100 units, input embedding tied to the output item vectors
  ("constrained embedding": both are W_y, so d = hidden), item bias b_y, per-gate Glorot-uniform initialisation,
  Adagrad with optional momentum (updates only the item rows a step touched, as their IndexedAdagradM), lr 0.05,
  n_sample 2048, loss cross_entropy, bpreg 1.0, dropout 0 on hidden states; their logQ correction of cross-entropy
  (`logq`, default 0: see below for what it changed).
  Added: `exclude_copies` (default on) drops from a row's negatives the other columns that hold its own target
  item; the authors keep them, and on small catalogues most sampled negatives are then copies of popular targets.
- defaults chosen by experiment on ML-100K validation (leave-one-out, NDCG@10 seen items excluded, seed 0; issue 16:
  an epoch at most a tenth of RecBole's GRU4Rec at no worse NDCG), within the ranges of the authors' tuned configs
  (batch 32–240, momentum 0–0.7, sample_alpha 0–0.5, dropout_p_embed 0–0.5): batch_size 128, sample_alpha 0
  (uniform extra negatives), dropout_embed 0.5, momentum 0.4, 20 epochs with patience 3 — validation 0.0989 at
  ~10 CPU s per epoch under load. Tried (validation NDCG@10): the former batch 32 / alpha 0.75 / no dropout /
  no momentum, test 0.060 at 12.6 CPU s; batch 128, alpha 0.75: 0.0505 after 10 epochs, still rising slowly;
  batch 256 with lr 0.2: 0.025 (0.028 with n_sample 512), lr 0.1 + momentum 0.3 + BPR-max + dropout_embed 0.3:
  0.018; the authors' BPR-max config (hidden 224, batch 128, dropout_embed 0.5, dropout 0.05, momentum 0.4,
  n_sample 256, alpha 0.4, bpreg 1.95): 0.0539 at 14 CPU s; the same with cross-entropy: 0.0617 at 13 CPU s;
  batch 128 with alpha 0: 0.0883 (lr 0.1: 0.0775); + dropout_embed 0.5 and momentum 0.4: 0.0989 (+ dropout 0.3:
  0.0926). Popularity-weighted extra negatives without the logQ correction push popular items down, which on
  MovieLens costs more than the samples' focus on hard negatives gains: alpha 0 is the largest single gain.
  The authors' logQ correction (`logq` 1.0, their cross-entropy configs' value) does not recover popularity-weighted
  sampling here: validation NDCG@10 0.0817 / 0.0794 / 0.0823 with sample_alpha 0 / 0.5 / 1.0 against 0.1001
  without it (seed 0, same defaults otherwise; test 0.0789 / 0.0644 / 0.0795 against 0.0763), so `logq` stays 0.

Scores: final-state scoring, s(x, y) = h(x)·W_y + b_y with h(x) the GRU's hidden state after reading x's whole
history from a zero state (`max_len` caps the history read); an empty history gives h = 0, so scores b_y. Exposed
as factors [h, 1]·[W_y, b_y]. With a validation set training keeps the best epoch by validation NDCG@10 and stops
after `patience` epochs without a better one, as `rnn` / `sasrec` do (the authors train a fixed number of epochs:
patience null).
"""
from __future__ import annotations

import heapq
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.plugin import DataError, Model, ModelSpec, Param, UserStates, hookimpl, validation_ndcg

LOSSES = ("top1_max", "bpr_max", "cross_entropy")


# --------------------------------------------------------------------------------------------- losses

def own_targets(r: torch.Tensor, excl: torch.Tensor | None = None) -> torch.Tensor:
    """Columns that are not negatives of their row: the row's own target (column i of row i) and `excl` if given."""
    n = r.shape[0]
    own = torch.zeros_like(r, dtype=torch.bool)
    own[torch.arange(n), torch.arange(n)] = True
    return own if excl is None else own | excl


def softmax_neg(r: torch.Tensor, excl: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over each row's negatives: row i's target (column i) and the `excl` columns get weight 0."""
    return torch.softmax(r.masked_fill(own_targets(r, excl), float("-inf")), dim=1)


def top1_max(r: torch.Tensor, excl: torch.Tensor | None = None) -> torch.Tensor:
    """TOP1-max per row (2018 paper, Eq. 6): Σ_j s_j (σ(r_j − r_i) + σ(r_j²)); r [n, n + samples] with the targets
    on the diagonal, s_j the softmax of the negatives' scores."""
    s = softmax_neg(r, excl)
    ri = r.diagonal()[:, None]
    return (s * (torch.sigmoid(r - ri) + torch.sigmoid(r * r))).sum(1)


def bpr_max(r: torch.Tensor, bpreg: float, excl: torch.Tensor | None = None) -> torch.Tensor:
    """BPR-max per row with the score regularisation (2018 paper, Eq. 8):
    −log Σ_j s_j σ(r_i − r_j) + bpreg·Σ_j s_j r_j²."""
    s = softmax_neg(r, excl)
    ri = r.diagonal()[:, None]
    return -torch.log((s * torch.sigmoid(ri - r)).sum(1) + 1e-24) + bpreg * (s * r * r).sum(1)


def cross_entropy(r: torch.Tensor, excl: torch.Tensor | None = None) -> torch.Tensor:
    """−log softmax(r)_i over the target and its negatives (the `excl` columns left out), per row."""
    if excl is not None:
        r = r.masked_fill(excl & ~own_targets(r), float("-inf"))
    return F.cross_entropy(r, torch.arange(r.shape[0]), reduction="none")


# --------------------------------------------------------------------------------------------- session-parallel batches

def session_parallel(ptr: np.ndarray, items: np.ndarray, batch_size: int):
    """The session-parallel schedule of sequences items[ptr[k]:ptr[k+1]] (taken in order k = 0, 1, ...).

    Returns (inp, out, reset) [T, B] arrays: at step t lane b reads item inp[t, b] and predicts out[t, b] (-1 where
    the lane has no sequence left), reset[t, b] when the lane starts a new sequence at t (its hidden state is zeroed
    first). A freed lane takes the next sequence; lanes freed at the same step take them in lane order."""
    ptr = np.asarray(ptr, np.int64)
    items = np.asarray(items, np.int64)
    lens = np.diff(ptr)
    keep = np.flatnonzero(lens >= 2)
    steps = lens[keep] - 1
    n = len(keep)
    if n == 0:
        z = np.zeros((0, 0), np.int64)
        return z, z, z.astype(bool)
    B = min(int(batch_size), n)
    start, lane = np.empty(n, np.int64), np.empty(n, np.int64)
    free = [(0, b) for b in range(B)]          # (step the lane is free from, lane): a heap, as lanes free up
    for k in range(n):                          # one heap operation per sequence (not per event)
        t, b = heapq.heappop(free)
        start[k], lane[k] = t, b
        heapq.heappush(free, (t + int(steps[k]), b))
    T = int((start + steps).max())
    seq = np.repeat(np.arange(n), steps)
    j = np.arange(steps.sum()) - np.repeat(np.cumsum(steps) - steps, steps)
    t, b = start[seq] + j, lane[seq]
    src = ptr[keep][seq] + j
    inp = np.full((T, B), -1, np.int64)
    out = np.full((T, B), -1, np.int64)
    reset = np.zeros((T, B), bool)
    inp[t, b], out[t, b], reset[t, b] = items[src], items[src + 1], j == 0
    return inp, out, reset


# --------------------------------------------------------------------------------------------- optimiser

class AdagradM(torch.optim.Optimizer):
    """Adagrad with momentum as the GRU4Rec authors' IndexedAdagradM: acc += g²; m = μ·m − lr·g/√(acc + eps);
    p += m (m = −lr·g/√(acc + eps) without momentum). In a group with `rows` (the item tables) only the rows with a
    non-zero gradient move, as the authors' sparse updates of the rows a step touched."""

    def __init__(self, params, lr=0.05, momentum=0.0, eps=1e-6, rows=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, eps=eps, rows=rows))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, mu, eps = group["lr"], group["momentum"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["acc"] = torch.zeros_like(p)
                    if mu > 0:
                        st["mom"] = torch.zeros_like(p)
                g = p.grad
                st["acc"].add_(g * g)
                upd = -lr * g / (st["acc"] + eps).sqrt()
                if mu > 0:
                    if group["rows"]:
                        touched = (g != 0).reshape(len(g), -1).any(1).reshape((-1,) + (1,) * (g.ndim - 1))
                        upd = torch.where(touched, st["mom"] * mu + upd, 0.0)
                        st["mom"].copy_(torch.where(touched, upd, st["mom"]))
                    else:
                        upd = st["mom"].mul_(mu).add_(upd)
                p.add_(upd)


# --------------------------------------------------------------------------------------------- model

class GRU4RecNet(nn.Module):
    """Item table W_y (input embedding and output vectors, tied), bias b_y, a `layers`-deep GRU of width `hidden`."""

    def __init__(self, n_items: int, hidden: int, layers: int, dropout: float, dropout_embed: float):
        super().__init__()
        glorot = math.sqrt(6.0 / (n_items + hidden))
        self.W = nn.Parameter(torch.empty(n_items, hidden).uniform_(-glorot, glorot))
        self.b = nn.Parameter(torch.zeros(n_items))
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.drop_e, self.drop_h = nn.Dropout(dropout_embed), nn.Dropout(dropout)
        with torch.no_grad():
            gate = math.sqrt(6.0 / (2 * hidden))          # Glorot per gate: (hidden x hidden) blocks
            for name, w in self.gru.named_parameters():
                if name.startswith("weight"):
                    w.uniform_(-gate, gate)
                else:
                    w.zero_()

    def step(self, x: torch.Tensor, h: torch.Tensor):
        """One event per lane: items x [n], hidden [layers, n, hidden] -> (output [n, hidden], new hidden)."""
        o, h = self.gru(self.drop_e(self.W[x])[:, None, :], h)
        return self.drop_h(o[:, 0]), h

    def full_scores(self, cand: torch.Tensor) -> bool:
        """Whether candidates' scores go through all items' scores (a catalogue at most 4 times the candidates)."""
        return len(self.W) <= 4 * len(cand)

    def scores(self, o: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """o·W_c + b_c for the candidate items c: through all items' scores when the catalogue is small (faster
        gradients), else through the candidates' rows."""
        if self.full_scores(cand):
            return torch.index_select(o @ self.W.T + self.b, 1, cand)
        return o @ torch.index_select(self.W, 0, cand).T + torch.index_select(self.b, 0, cand)


def advance(net: GRU4RecNet, H: torch.Tensor, x: torch.Tensor, reset: torch.Tensor, lanes: torch.Tensor | None):
    """One session-parallel step: lanes (all when None) read items x[lanes] from their hidden states in H
    [layers, B, hidden], zeroed first where `reset` (a new sequence); returns (the lanes' outputs, the new H, detached:
    the state is carried to the next step but not back-propagated through)."""
    if lanes is not None:
        x, reset = x[lanes], reset[lanes]
    h0 = (H if lanes is None else H[:, lanes]).masked_fill(reset[None, :, None], 0.0)
    o, hn = net.step(x, h0)
    if lanes is None:
        return o, hn.detach()
    H = H.clone()
    H[:, lanes] = hn.detach()
    return o, H


class GRU4Rec(Model):
    """GRU4Rec (Hidasi et al. 2016, 2018): session-parallel training with in-batch and popularity-sampled
    negatives under TOP1-max / BPR-max / cross-entropy; final-state scoring h(x)·W_y + b_y."""

    def __init__(self, *, hidden=100, layers=1, dropout=0.0, dropout_embed=0.5, batch_size=128, n_sample=2048,
                 sample_alpha=0.0, loss="cross_entropy", bpreg=1.0, elu=0.5, lr=0.05, momentum=0.4, epochs=20,
                 patience=3, max_len=None, exclude_copies=True, logq=0.0, block=512):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.hidden, self.layers, self.dropout, self.dropout_embed = hidden, layers, dropout, dropout_embed
        self.batch_size, self.n_sample, self.sample_alpha = batch_size, n_sample, sample_alpha
        self.loss, self.bpreg, self.elu, self.lr, self.momentum = loss, bpreg, elu, lr, momentum
        self.epochs, self.patience, self.max_len, self.block = epochs, patience, max_len, block
        self.exclude_copies, self.logq = exclude_copies, logq

    def row_loss(self, r: torch.Tensor, excl: torch.Tensor | None = None) -> torch.Tensor:
        """The configured loss per row of scores r [n, n + samples] (targets on the diagonal; `excl`: columns that
        are no negative of their row)."""
        if self.loss == "top1_max":
            return top1_max(r, excl)
        if self.loss == "bpr_max":
            return bpr_max(F.elu(r, self.elu) if self.elu > 0 else r, self.bpreg, excl)
        return cross_entropy(r, excl)

    def cross_entropy_all(self, o: torch.Tensor, y: torch.Tensor, cand: torch.Tensor,
                          shift: torch.Tensor | None = None) -> torch.Tensor:
        """`cross_entropy` over the columns cand (targets y first), per row, each column's score lowered by `shift`
        (the logQ correction; none when None), computed on all items' scores with each item weighted by its columns:
        −(s_y − shift_y) + log Σ_i w_i exp(s_i), w_i = Σ over the item's columns c of exp(−shift_c) (under
        `exclude_copies` a row's own target is its own column only). The same loss as `row_loss` on
        `scores(o, cand) − shift`, without the [n, len(cand)] gather and its scatter back when len(cand) exceeds the
        catalogue."""
        s = o @ self.net.W.T + self.net.b
        rows = torch.arange(len(y))
        weight = None if shift is None else torch.exp(-shift.to(s.dtype))
        logm = torch.bincount(cand, weights=weight, minlength=s.shape[1]).to(s.dtype).log().expand_as(s)
        own = torch.zeros(len(y), dtype=s.dtype) if shift is None else shift[:len(y)].to(s.dtype)
        if self.exclude_copies:
            logm = logm.clone()
            logm[rows, y] = -own
        return torch.logsumexp(s + logm, 1) - s[rows, y] + own

    def logq_shift(self, y: torch.Tensor, samples: torch.Tensor | None) -> torch.Tensor | None:
        """The authors' logQ correction of cross-entropy: logq × the log of each column's sampling weight, an
        in-batch column's item count (targets occur as often as they are bought) and an extra sample's
        count^sample_alpha; None without it."""
        if self.logq <= 0 or self.loss != "cross_entropy":
            return None
        shift = self.log_count[y]
        if samples is not None:
            shift = torch.cat([shift, self.sample_alpha * self.log_count[samples]])
        return self.logq * shift

    def fit(self, train, loss, ctx):
        if len(train) == 0:
            raise DataError("gru4rec: no training events")
        torch.manual_seed(ctx.seed)
        gen = torch.Generator().manual_seed(ctx.seed)
        self.n_items = train.n_items
        self.net = GRU4RecNet(self.n_items, self.hidden, self.layers, self.dropout, self.dropout_embed)
        order = train.order
        users, items, times = train.user[order], train.item[order], train.time[order]
        counts = np.bincount(users, minlength=train.n_users)
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        first = np.where(counts > 0, times[np.minimum(ptr[:-1], len(times) - 1)], np.inf)
        seq = np.argsort(first, kind="stable")                  # sequences in order of their first event
        seq = seq[counts[seq] > 0]
        sptr = np.concatenate([[0], np.cumsum(counts[seq])]).astype(np.int64)
        sitems = items[_ranges(ptr, seq)]
        inp, out, reset = (torch.as_tensor(a) for a in session_parallel(sptr, sitems, self.batch_size))
        if inp.numel() == 0:
            raise DataError("gru4rec: no user has two training events")
        pop = torch.as_tensor(train.item_counts, dtype=torch.float64) ** self.sample_alpha
        self.log_count = torch.as_tensor(train.item_counts, dtype=torch.float32).clamp(min=1.0).log()
        valid = None if self.patience is None else ctx.valid
        opt = AdagradM([{"params": [self.net.W, self.net.b], "rows": True},
                        {"params": list(self.net.gru.parameters())}], lr=self.lr, momentum=self.momentum)
        self.epoch_times, self.best_epoch = [], None
        best, best_state, since = -1.0, None, 0
        T, B = inp.shape
        active = out >= 0
        full = active.all(1)
        for epoch in range(self.epochs):
            t0 = time.perf_counter()
            self.net.train()
            H = torch.zeros(self.layers, B, self.hidden)
            total, count = 0.0, 0
            chunk = 256
            for lo in range(0, T, chunk):
                samples = (torch.multinomial(pop, min(chunk, T - lo) * self.n_sample, replacement=True,
                                             generator=gen).view(-1, self.n_sample) if self.n_sample > 0 else None)
                for t in range(lo, min(lo + chunk, T)):
                    lanes = None if full[t] else active[t].nonzero()[:, 0]
                    y = out[t] if lanes is None else out[t, lanes]
                    if len(y) < 2 and self.n_sample == 0:
                        continue
                    o, H = advance(self.net, H, inp[t], reset[t], lanes)
                    extra = None if samples is None else samples[t - lo]
                    cand = y if extra is None else torch.cat([y, extra])
                    shift = self.logq_shift(y, extra)
                    if self.loss == "cross_entropy" and self.net.full_scores(cand):
                        lv = self.cross_entropy_all(o, y, cand, shift)
                    else:
                        r = self.net.scores(o, cand)
                        r = r if shift is None else r - shift[None, :]
                        lv = self.row_loss(r, cand[None, :] == y[:, None] if self.exclude_copies else None)
                    opt.zero_grad(set_to_none=True)
                    lv.mean().backward()
                    opt.step()
                    total += float(lv.detach().sum())
                    count += len(y)
            self.epoch_times.append(time.perf_counter() - t0)
            ctx.log_metric("train/loss", total / max(count, 1), epoch)
            ctx.log_metric("time/epoch_s", self.epoch_times[-1], epoch)
            ctx.progress(epoch + 1, self.epochs)
            if valid is not None:
                score = self.valid_ndcg(valid)
                ctx.log_metric("valid/ndcg_10", score, epoch)
                if score > best:
                    best, since, self.best_epoch = score, 0, epoch
                    best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
                else:
                    since += 1
                    if since >= self.patience:
                        break
        if best_state is not None:
            self.net.load_state_dict(best_state)
            ctx.log_metric("train/best_epoch", float(self.best_epoch), 0)
        self.net.eval()

    @torch.no_grad()
    def final_states(self, states: UserStates) -> torch.Tensor:
        """h(x) [n, hidden]: the GRU's top-layer state after the whole history (the last `max_len` items), from zero.
        States are processed in blocks sorted by history length, so little padding is read."""
        was = self.net.training
        self.net.eval()
        ptr = np.asarray(states.hist_ptr, np.int64)
        hist = np.asarray(states.hist_item, np.int64)
        n_hist = np.diff(ptr) if self.max_len is None else np.minimum(np.diff(ptr), self.max_len)
        out = torch.zeros(len(states), self.hidden)
        rows = np.argsort(n_hist, kind="stable")
        rows = rows[n_hist[rows] > 0]                           # an empty history keeps h = 0
        for lo in range(0, len(rows), self.block):
            r = rows[lo:lo + self.block]
            L = int(n_hist[r].max())
            j = np.arange(L)[None, :]
            idx = (ptr[r + 1] - n_hist[r])[:, None] + j
            ok = j < n_hist[r][:, None]
            tok = torch.as_tensor(np.where(ok, hist[np.minimum(idx, len(hist) - 1)], 0))
            o, _ = self.net.gru(self.net.W[tok])               # causal: right padding never reaches a real position
            out[torch.as_tensor(r)] = o[torch.arange(len(r)), torch.as_tensor(n_hist[r] - 1)]
        self.net.train(was)
        return out

    def factors(self, states):
        with torch.no_grad():
            h = self.final_states(states)
            return (torch.cat([h, torch.ones(len(h), 1)], 1),
                    torch.cat([self.net.W.detach(), self.net.b.detach()[:, None]], 1))

    def valid_ndcg(self, valid, k: int = 10) -> float:
        """NDCG@k on a validation EvalSet, as the harness evaluates itemrec."""
        u, v = self.factors(valid.states)
        return validation_ndcg(valid, lambda rows: u[torch.as_tensor(rows)] @ v.T, self.n_items, k)


def _ranges(ptr: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Indices of the concatenated ranges ptr[k]:ptr[k+1] for k in seq (in that order)."""
    lo, hi = ptr[seq], ptr[seq + 1]
    n = hi - lo
    return np.repeat(lo - np.cumsum(n) + n, n) + np.arange(n.sum())


PARAMS = (
    Param("hidden", "int", 100, "GRU units per layer (also the item embedding size: input and output item vectors "
          "are tied, the authors' constrained embedding)", low=1, high=8192),
    Param("layers", "int", 1, "stacked GRU layers", low=1, high=16),
    Param("dropout", "float", 0.0, "dropout on the hidden states (dropout_p_hidden)", low=0.0, high=0.95),
    Param("dropout_embed", "float", 0.5, "dropout on the input item embeddings (dropout_p_embed; 0.5 as in the "
          "authors' tuned configs, better than 0 on ML-100K validation)", low=0.0, high=0.95),
    Param("batch_size", "int", 128, "session-parallel lanes (sequences read side by side; 128: a quarter of the "
          "steps per epoch of 32, so an epoch well under a tenth of RecBole's on ML-100K)", low=1),
    Param("n_sample", "int", 2048, "extra negatives per step, shared by the batch, drawn ∝ count^sample_alpha",
          low=0),
    Param("sample_alpha", "float", 0.0, "popularity exponent of the extra negatives' distribution (0: uniform; "
          "without the logQ correction popular negatives push popular items down: 0.75 gave half the validation "
          "NDCG@10 on ML-100K)", low=0.0),
    Param("loss", "str", "cross_entropy", "training loss (Hidasi & Karatzoglou 2018; cross-entropy is the default "
          "of the authors' PyTorch code)", choices=LOSSES),
    Param("bpreg", "float", 1.0, "BPR-max score regularisation λ on Σ_j s_j r_j²", low=0.0),
    Param("elu", "float", 0.5, "BPR-max: ELU(α) applied to the scores before the loss (0: none)", low=0.0),
    Param("lr", "float", 0.05, "Adagrad learning rate", low=0.0, high=10.0),
    Param("momentum", "float", 0.4, "Adagrad momentum (the authors' IndexedAdagradM; 0.4 as in their tuned "
          "configs)", low=0.0, high=0.999),
    Param("epochs", "int", 20, "passes over the training sequences (the most, with early stopping)", low=1),
    Param("patience", "int", 3, "early stopping: stop after this many epochs without a better validation NDCG@10 "
          "and keep the best epoch (splits with a validation set only; null: train all epochs)", low=1,
          nullable=True),
    Param("exclude_copies", "bool", True, "a row's negatives leave out other columns holding its own target item "
          "(in-batch duplicates and sampled copies; the authors keep them, which on small catalogues makes most "
          "sampled negatives copies of popular targets)"),
    Param("logq", "float", 0.0, "cross-entropy only: the authors' logQ correction, each column's score lowered by "
          "logq × log of its sampling weight (item count for in-batch columns, count^sample_alpha for extra samples); "
          "their cross-entropy configs use 1.0 with sample_alpha 0.5; 0: none, the default, better on ML-100K "
          "validation)",
          low=0.0),
    Param("max_len", "int", None, "history items read when scoring a state (null: the whole history)", low=1,
          nullable=True),
)


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="gru4rec", factory=GRU4Rec, params=PARAMS,
        description="GRU4Rec (Hidasi et al. 2016/2018): session-parallel GRU, in-batch + popularity-sampled "
                    "negatives, TOP1-max / BPR-max / cross-entropy; scores h(x)·W_y + b_y"))
