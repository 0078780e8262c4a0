"""GCMC and GCMC-Ex: the RIM paper's graph-convolutional CLV baselines (appendix B), in torch.

A user-state x is represented by a graph-convolution aggregation of the items in *its own
history* (so held-out users of the `user` split are scored from their histories, never from a
training user id):

    h_x = sum_i c_xi e_i / norm(x)            c_xi = how often i occurs in x's history (frequency)
    z_x = h_x W + relu(h_x W1 + a1) W2        the learned dense transform (linear + one relu layer)
    raw(x, y) = z_x . q_y + b_y + r[recency(x)] + f[frequency(x)]
    score(x, y) = softplus(raw(x, y)) > 0      (an intensity, as the paper does for the Dual planner)

The paper leaves the normalisation open ("reflects the frequency of interactions"); we use
GCMC's left normalisation in its square-root form, norm(x) = sqrt(|history|) (`norm: sqrt`;
`mean` = 1/|history| and `sym` = 1/sqrt(|history| (deg_i + 1)) are options), which keeps the item
frequencies and lets the size of h_x grow with activity. Recency is the paper's single user bias
"based on the recency of the last purchase regardless of the item choices": a learned bias per
bucket floor(log2(1 + hours since the state's last event)) (16 buckets, the last open-ended, plus
one for an empty history). The paper's RFM features also name frequency; besides the aggregation,
`frequency_bias` adds a learned bias per bucket floor(log2 |history|).

Training follows the paper: with a split's calibration window [T', T) (RIM sets GCMC(*) back: `temporal` with
`calibration: DAYS`, `user` with `calibration: true`), its states (histories before T') and targets are the labels;
without one, hold out a window [T', T) at the end of the training data (T = the last training event; its length
`period` defaults to the split's test horizon when the harness passes the split, else 7 days). Training states
are the users with history before T' (history = their events before T'), labelled with the distinct items of
their events in the window. Each
positive (x, y) is contrasted, with the pairwise loss the harness passes (BPR's sigmoid-triplet by
default), against a negative item drawn with p ~ (count+1)^neg_power and a negative state drawn
the same way by its user's training count, from the same period:
loss = 0.5 (loss(s(x,y), s(x,y~)) + loss(s(x,y), s(x~,y))), on the softplus scores.
`gcmc_ex` stacks `n_periods` consecutive windows [T - kP, T - (k-1)P), k = 1..n_periods, each with
the states at its start, to extract more labels and their order, as GCMC-Ex does (with a calibration window, it
is the first of them and the others end at T').

Scores come from `score_block`, a block of states at a time: a sparse (state x item) history
matrix times the item embeddings (`embedding_bag` with per-entry weights), then a matmul with all
items — no per-state loop. Both tasks rank softplus(raw); since softplus is increasing, the
rankings (items per state and states per item alike) are those of raw. `factors` is None on
purpose, so rankings, stored scores and planners all see the positive softplus intensities.
Defaults (10 epochs, reg 0.03 on the batch's state/item vectors, Adam lr 0.01) were picked on
MovieLens-100K and the synthetic world: with one period of labels the model overfits quickly.
"""
from __future__ import annotations

import weakref

import numpy as np
import torch
import torch.nn.functional as F

from harness.plugin import (
    DataError,
    Interactions,
    Model,
    ModelSpec,
    Param,
    UserStates,
    concat_sets,
    hookimpl,
    states_from_events,
)

N_RECENCY = 16   # floor(log2(1 + hours)) buckets 0..15 (15: >= ~1365 days); bucket 16: empty history
N_FREQUENCY = 16  # floor(log2 |history|) buckets 0..15; bucket 16: empty history
DEFAULT_PERIOD_DAYS = 7.0


def _segment_ids(ptr: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))


class GCMC(Model):
    name = "gcmc"

    def __init__(self, factors=64, epochs=10, lr=0.01, batch_size=1024, reg=0.03, neg_power=0.5, norm="sqrt",
                 frequency_bias=True, period=None, n_periods=1):
        self.d, self.epochs, self.lr, self.batch_size, self.reg = factors, epochs, lr, batch_size, reg
        self.neg_power, self.norm, self.frequency_bias = neg_power, norm, frequency_bias
        self.period, self.n_periods = period, n_periods
        self._cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ state features (no per-state loop)

    def _features(self, states: UserStates):
        """(indptr, item, weight) of the normalised history matrix, recency and frequency buckets; cached per
        states object."""
        hit = self._cache.get(states)
        if hit is not None:
            return hit
        hm = states.history_matrix(self.n_items)
        hm.sort_indices()
        n = states.lengths.astype(np.float64)
        w = hm.data.astype(np.float64)
        rows = _segment_ids(hm.indptr)
        if self.norm == "mean":
            w = w / np.maximum(n, 1.0)[rows]
        elif self.norm == "sqrt":
            w = w / np.sqrt(np.maximum(n, 1.0))[rows]
        else:  # sym: 1 / sqrt(|history| (deg_i + 1))
            w = w / np.sqrt(np.maximum(n, 1.0)[rows] * (self.item_deg[hm.indices] + 1.0))
        last = np.full(len(states), -np.inf)
        np.maximum.at(last, _segment_ids(states.hist_ptr), states.hist_time)
        hours = np.maximum(states.time - last, 0.0) * 24.0 / self.per_day
        empty = n == 0
        rec = np.where(empty, N_RECENCY, np.minimum(np.floor(np.log2(1.0 + np.where(empty, 0, hours))), N_RECENCY - 1))
        freq = np.where(empty, N_FREQUENCY, np.minimum(np.floor(np.log2(np.maximum(n, 1.0))), N_FREQUENCY - 1))
        out = (torch.as_tensor(hm.indptr.astype(np.int64)), torch.as_tensor(hm.indices.astype(np.int64)),
               torch.as_tensor(w, dtype=torch.float32), torch.as_tensor(rec, dtype=torch.long),
               torch.as_tensor(freq, dtype=torch.long))
        self._cache[states] = out
        return out

    def _represent(self, feats, rows: torch.Tensor, p):
        """State representation z [len(rows), d] and state bias [len(rows)] for rows of a feature set."""
        ptr, item, w, rec, freq = feats
        start, length = ptr[rows], ptr[rows + 1] - ptr[rows]
        offsets = torch.cumsum(length, 0) - length
        flat = torch.repeat_interleave(start - offsets, length) + torch.arange(int(length.sum()))
        h = F.embedding_bag(item[flat], p["E"], offsets, mode="sum", per_sample_weights=w[flat])
        z = h @ p["W"] + F.relu(h @ p["W1"] + p["a1"]) @ p["W2"]
        bias = p["r"][rec[rows]]
        if self.frequency_bias:
            bias = bias + p["f"][freq[rows]]
        return z, bias

    # ------------------------------------------------------------------ training data: states at period starts

    def _period_days(self, ctx, train: Interactions) -> float:
        """The label window: `period` if set; else the split's test horizon (the paper's set-back window of the
        same length), shortened where needed so the n_periods windows leave at least one period of history
        before them (a 30-day horizon on 30 days of training would leave no state to label)."""
        if self.period is not None:
            return float(self.period)
        h = ctx.split_info.get("horizon_days")
        period = float(h) if h is not None and np.isfinite(h) and h > 0 else DEFAULT_PERIOD_DAYS
        span_days = float(train.time.max() - train.time.min()) / train.per_day if len(train.time) else 0.0
        return min(period, span_days / (self.n_periods + 1)) if span_days > 0 else period

    def _training_states(self, train: Interactions, period: float, calibration=None):
        """Labelled states: with a calibration window (the split's set-back [T', T), RIM's GCMC(*)), its states
        and targets are the first period and the training data before T' gives the n_periods − 1 earlier ones;
        without one, the last n_periods windows of the training data."""
        t_end = float(train.time.max())
        P = period * train.per_day
        users, cuts, ends, period_of = [], [], [], []
        calib = calibration if calibration is not None and calibration.targets.nnz else None
        if calib is not None:
            t_end = float(np.min(calib.states.time))  # T': the earlier periods end where the calibration starts
        for k in range(1, self.n_periods + 1 - (calib is not None)):  # a loop over periods only
            cut, end = t_end - k * P, (np.inf if k == 1 else t_end - (k - 1) * P)
            u = np.flatnonzero(np.bincount(train.user[train.time < cut], minlength=train.n_users) > 0)
            users.append(u)
            cuts.append(np.full(len(u), cut))
            ends.append(np.full(len(u), end))
            period_of.append(np.full(len(u), k - 1))
        if calib is not None:  # the calibration window is period 0; the training windows follow it backwards
            period_of = [np.zeros(calib.n_states, np.int64)] + [p + 1 for p in period_of]
        users, cuts, ends = (np.concatenate(users or [np.zeros(0, np.int64)]), np.concatenate(cuts or [np.zeros(0)]),
                             np.concatenate(ends or [np.zeros(0)]))
        ev = states_from_events(train, users, cuts, ends, name="gcmc-train")
        if calib is not None:
            ev = concat_sets([calib, ev], "gcmc-train")
        t = ev.targets.tocoo()
        if t.nnz == 0:
            raise DataError(f"{self.name}: no training labels in the last {self.n_periods} period(s) of {period:g} "
                            "days before the end of the training data (or no user has history before them); lengthen "
                            "`period` or use more data")
        return ev.states, np.concatenate(period_of), t.row.astype(np.int64), t.col.astype(np.int64)

    # ------------------------------------------------------------------ fit / score

    def fit(self, train, loss, ctx):
        self.n_items, self.per_day = train.n_items, train.per_day
        self.item_deg = train.item_counts.astype(np.float64)
        self._cache = weakref.WeakKeyDictionary()
        gen = torch.Generator().manual_seed(ctx.seed)
        states, period_of, pos_s, pos_i = self._training_states(train, self._period_days(ctx, train),
                                                                ctx.calibration)
        feats = self._features(states)

        d, n_i = self.d, train.n_items

        def g(*shape, scale):
            return (torch.randn(*shape, generator=gen) * scale).requires_grad_()

        p = {"E": g(n_i, d, scale=0.1), "W": torch.eye(d).requires_grad_(), "W1": g(d, d, scale=d ** -0.5),
             "a1": torch.zeros(d, requires_grad=True), "W2": g(d, d, scale=0.1 * d ** -0.5),
             "Q": g(n_i, d, scale=0.1), "b": torch.zeros(n_i, requires_grad=True),
             "r": torch.zeros(N_RECENCY + 1, requires_grad=True), "f": torch.zeros(N_FREQUENCY + 1, requires_grad=True)}
        opt = torch.optim.Adam(list(p.values()), lr=self.lr)

        # negatives: items ~ (count+1)^a over all items; states ~ (count(user)+1)^a within the positive's period,
        # by inverse-CDF sampling over the states laid out period after period
        p_item = torch.as_tensor((train.item_counts + 1.0) ** self.neg_power, dtype=torch.float)
        w_state = (train.user_counts[states.user] + 1.0) ** self.neg_power
        cum = np.cumsum(w_state)
        first = np.searchsorted(period_of, np.arange(self.n_periods), side="left")
        last = np.searchsorted(period_of, np.arange(self.n_periods), side="right")
        lo = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)[period_of[pos_s]]
        hi = cum[np.maximum(last - 1, 0)][period_of[pos_s]]
        cum_t = torch.as_tensor(cum)
        lo_t, width_t = torch.as_tensor(lo), torch.as_tensor(hi - lo)

        pos_s_t, pos_i_t = torch.as_tensor(pos_s), torch.as_tensor(pos_i)
        n = len(pos_s)
        for epoch in range(self.epochs):
            perm = torch.randperm(n, generator=gen)
            neg_i = torch.multinomial(p_item, n, replacement=True, generator=gen)
            u01 = torch.rand(n, generator=gen, dtype=torch.float64)
            neg_s = torch.searchsorted(cum_t, lo_t + u01 * width_t, right=True).clamp_(max=len(cum) - 1)
            total = 0.0
            for start in range(0, n, self.batch_size):
                sel = perm[start:start + self.batch_size]
                m = len(sel)
                s, i = pos_s_t[sel], pos_i_t[sel]
                z, bias = self._represent(feats, torch.cat([s, neg_s[sel]]), p)
                ii = torch.cat([i, neg_i[sel]])
                q, b = p["Q"].index_select(0, ii), p["b"].index_select(0, ii)
                pos = F.softplus((z[:m] * q[:m]).sum(1) + b[:m] + bias[:m])
                neg_item = F.softplus((z[:m] * q[m:]).sum(1) + b[m:] + bias[:m])
                neg_state = F.softplus((z[m:] * q[:m]).sum(1) + b[:m] + bias[m:])
                out = 0.5 * (loss(pos, neg_item) + loss(pos, neg_state))
                obj = out + self.reg * (z.square().sum() + q.square().sum()) / m
                opt.zero_grad(set_to_none=True)
                obj.backward()
                opt.step()
                total += float(out.detach()) * m
            ctx.log_metric("train/loss", total / n, epoch)
            ctx.progress(epoch + 1, self.epochs)
        self.p = {k: v.detach() for k, v in p.items()}
        self.info = {"n_train_states": len(states), "n_train_labels": n}

    def factors(self, states):
        return None  # softplus(raw) is not a dot product: scored by score_block

    @torch.no_grad()
    def score_block(self, states, rows):
        z, bias = self._represent(self._features(states), torch.as_tensor(np.asarray(rows), dtype=torch.long), self.p)
        return F.softplus(z @ self.p["Q"].T + self.p["b"] + bias[:, None])


class GCMCEx(GCMC):
    name = "gcmc_ex"

    def __init__(self, n_periods=4, **kw):
        super().__init__(n_periods=n_periods, **kw)


_COMMON = (
    Param("factors", "int", 64, "embedding dimension", low=1, high=4096),
    Param("epochs", "int", 10, "passes over the training labels", low=1),
    Param("lr", "float", 0.01, "Adam learning rate", low=0.0, high=10.0),
    Param("batch_size", "int", 1024, "positive (state, item) pairs per step", low=1),
    Param("reg", "float", 0.03, "L2 penalty on the state and item vectors in a batch", low=0.0),
    Param("neg_power", "float", 0.5, "negatives drawn with p ~ (count+1)^neg_power (items and states)",
          low=0.0, high=2.0),
    Param("norm", "str", "sqrt", "history aggregation: sum of counts / sqrt|history|, / |history| (mean), or "
          "/ sqrt(|history| (deg_item+1)) (sym)", choices=("sqrt", "mean", "sym")),
    Param("frequency_bias", "bool", True, "add a learned state bias per log2(history length) bucket"),
    Param("period", "float", None, "label window length in days (null: the split's test horizon, else 7, "
          "at most the training span / (n_periods + 1))", low=1e-9, nullable=True),
)


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="gcmc", factory=GCMC, contracts=("pairwise",), default_loss="bpr", score_kind="intensity",
        offers=("block_scores",), set_back=True,
        description="GCMC-CLV (RIM appendix B): graph-conv aggregation of each state's history + recency bias, "
                    "softplus scores, pairwise loss vs negative items and states ~ (count+1)^0.5, labels from one "
                    "held-out period",
        params=_COMMON))
    register(ModelSpec(
        name="gcmc_ex", factory=GCMCEx, contracts=("pairwise",), default_loss="bpr", score_kind="intensity",
        offers=("block_scores",), set_back=True,
        description="GCMC-Ex (RIM appendix B): GCMC trained on n_periods stacked past periods for more labels",
        params=_COMMON + (Param("n_periods", "int", 4, "consecutive label periods before the end of training",
                                low=1, high=1000),)))
