"""`two_tower`: UniMatch's two-tower model (Sec. III-B) — one model for item recommendation and user targeting.

User tower: the user-state's behaviour sequence (its last `max_len` history items, time order) goes through the
item embedding table it shares with the item tower, a context extractor (`none` = YouTube-DNN, `cnn` = one
same-padded 1-D convolution of width 3, `gru`, `lstm`, `transformer` = one encoder layer with learned
positions) and an aggregator (`mean`, `last`, `max`, `attention` = softmax-weighted sum with a learned query),
padding masked throughout. An empty history is the single token BOS. Item tower: the item's embedding.
Output φ(u, i) = cos(u, i)/τ (Eq. 13), exposed as factors (u/|u|/τ, i/|i|) so the engine ranks in blocks.

Training pairs (`pairs`): `event` — one pair per training event (state = the user's events strictly before it,
item); `window` — UniMatch's dataset D (Sec. III-A): the pseudo-user x_{u,t} (u's events before day t) paired with
every item u bought in [t, t + n), for every day t, so each event appears in n pairs, with the n histories a
next-n-day test state can have (up to n days old), not only the one just before it. D is never materialised: an
epoch draws |D|/n of its pairs uniformly with replacement (as many as there are events: the cost of an `event`
epoch), and the in-batch losses' log p̂(u) is the pseudo-user's own marginal in D (its items in [t, t + n)). Losses:
contract `in_batch` (Eq. 10 family: logits = the B x B matrix φ(u_a, i_b) of a batch, with the empirical log
marginals log p̂(u), log p̂(i) of the whole training data) or `sampled` (ssm / bce_neg: the loss's
`NegativePlan` says what to draw; a negative *user* u' is one of u''s training states, drawn uniformly, so
p_n ∝ p̂(u) is exactly "a random training event's state"). See plugins/losses/inbatch.py.

Incremental training (Sec. III-B3, `incremental: true`): the training pairs are cut into consecutive windows
of `window_days` (the last one ends at the last training event) by the event's time (`event` pairs) or by the
pseudo-user's day t (`window` pairs: "we feed data of t = 1 first ... then t = 2, 3, ..., T − 1"); windows are
consumed in time order, `epochs` passes over each (shuffled within the window), the parameters carried from one
window to the next. With `incremental: false`, `epochs` passes over all training pairs, shuffled.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.plugin import ConfigError, Model, ModelSpec, Param, hookimpl

EXTRACTORS = ("none", "cnn", "gru", "lstm", "transformer")
AGGREGATORS = ("mean", "last", "max", "attention")


# ------------------------------------------------------------------------------------------- sequences

def _time_rank_key(user: np.ndarray, time: np.ndarray) -> np.ndarray:
    grid = np.unique(time)
    return user.astype(np.int64) * np.int64(len(grid) + 1) + np.searchsorted(grid, time)


def _last_items(items_sorted: np.ndarray, start: np.ndarray, end: np.ndarray, max_len: int, bos: int, pad: int):
    """For each query q, the items items_sorted[max(start, end-L):end] right-padded to L; empty -> [BOS].
    Returns (seq [n, L] int64, lengths [n] int64)."""
    n_hist = np.minimum(end - start, max_len)
    lo = end - n_hist
    pos = lo[:, None] + np.arange(max_len)[None, :]
    valid = np.arange(max_len)[None, :] < n_hist[:, None]
    seq = np.where(valid, items_sorted[np.minimum(pos, max(len(items_sorted) - 1, 0))] if len(items_sorted)
                   else pad, pad)
    empty = n_hist == 0
    seq[empty, 0] = bos
    return seq.astype(np.int64), np.maximum(n_hist, 1).astype(np.int64)


def training_sequences(train, max_len: int, bos: int, pad: int):
    """Every training event as (user, item, time, history before it): events in (user, time) order.
    History = the user's events with a strictly earlier time (ties never see each other)."""
    order = train.order
    user, item, time = train.user[order], train.item[order], train.time[order]
    key = _time_rank_key(user, time)
    first = np.searchsorted(key, key, side="left")          # first event of the same (user, time)
    ustart = np.searchsorted(user, user, side="left")       # first event of the user
    seq, lengths = _last_items(item, ustart, first, max_len, bos, pad)
    return user, item, time, seq, lengths


def state_sequences(states, max_len: int, bos: int, pad: int):
    ptr = np.asarray(states.hist_ptr, dtype=np.int64)
    return _last_items(np.asarray(states.hist_item, dtype=np.int64), ptr[:-1], ptr[1:], max_len, bos, pad)


PAIRS = ("event", "window")


class PseudoUserPairs:
    """UniMatch's dataset D over the training events (sorted by user, time): the pair (x_{u,c}, i) for every event
    (u, i) on day d and every pseudo-user day c in [d - n + 1, d] (c >= 0, the first training day), x_{u,c} = u's
    events on days before c. Drawn, never stored: its size is n times the events'."""

    def __init__(self, user: np.ndarray, item: np.ndarray, time: np.ndarray, n_users: int, per_day: float,
                 n_days: float, max_len: int, bos: int, pad: int):
        self.user, self.item, self.max_len, self.bos, self.pad = user, item, max_len, bos, pad
        self.n = max(1, int(round(n_days)))
        day = np.floor((time - time.min()) / per_day).astype(np.int64)
        self.lo, self.hi = np.maximum(day - self.n + 1, 0), day        # the pseudo-user days that pair with it
        self.stride = np.int64(day.max() + self.n + 2)
        self.key = user.astype(np.int64) * self.stride + day           # sorted: events are in (user, time) order
        self.ustart = np.searchsorted(user, np.arange(n_users))
        self.ucount = np.bincount(user, minlength=n_users)
        self.rows = self.hi - self.lo + 1                              # pairs of each event in D
        self.size = int(self.rows.sum())
        self.last_day = int(day.max())

    def item_log_marginal(self, n_items: int) -> np.ndarray:
        return np.log(np.maximum(np.bincount(self.item, weights=self.rows, minlength=n_items), 1) / self.size)

    def windows(self, window_days: float | None) -> list[tuple[int, int]]:
        """Ranges [a, b] of pseudo-user days, oldest first; one range covering every day when not incremental."""
        if window_days is None:
            return [(0, self.last_day)]
        w = max(1, int(round(window_days)))
        return [(max(b - w + 1, 0), b) for b in range(self.last_day, -1, -w)][::-1]

    def draw(self, a: int, b: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One epoch over the pairs whose day is in [a, b]: |those pairs| / n of them, uniform with replacement:
        (event index, pseudo-user day) per pair."""
        first, last = np.maximum(self.lo, a), np.minimum(self.hi, b)
        m = np.maximum(last - first + 1, 0).astype(np.float64)
        if m.sum() == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        n_draw = max(2, int(round(m.sum() / self.n)))
        ev = rng.choice(len(m), size=n_draw, p=m / m.sum())
        return ev, first[ev] + (rng.random(n_draw) * m[ev]).astype(np.int64)

    def random_days(self, ev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.lo[ev] + (rng.random(len(ev)) * self.rows[ev]).astype(np.int64)

    def states(self, ev: np.ndarray, day: np.ndarray):
        """(sequences [n, L], lengths, log p̂ of the pseudo-user in D) of the pseudo-users (user of ev, day)."""
        u = self.user[ev].astype(np.int64)
        end = np.searchsorted(self.key, u * self.stride + day, side="left")
        seq, lengths = _last_items(self.item, self.ustart[u], end, self.max_len, self.bos, self.pad)
        in_window = np.searchsorted(self.key, u * self.stride + day + self.n, side="left") - end
        return seq, lengths, np.log(np.maximum(in_window, 1) / self.size)


# ------------------------------------------------------------------------------------------- network

class UserTower(nn.Module):
    def __init__(self, n_items: int, dim: int, max_len: int, extractor: str, aggregator: str, n_users: int = 0):
        super().__init__()
        self.user_emb = nn.Embedding(n_users, dim) if n_users else None
        if self.user_emb is not None:
            nn.init.normal_(self.user_emb.weight, std=0.1)
        self.pad = n_items + 1
        self.emb = nn.Embedding(n_items + 2, dim, padding_idx=self.pad)   # items, BOS, PAD (shared with items)
        nn.init.normal_(self.emb.weight, std=0.1)
        with torch.no_grad():
            self.emb.weight[self.pad].zero_()
        self.extractor, self.aggregator = extractor, aggregator
        if extractor == "cnn":
            self.ctx = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        elif extractor == "gru":
            self.ctx = nn.GRU(dim, dim, batch_first=True)
        elif extractor == "lstm":
            self.ctx = nn.LSTM(dim, dim, batch_first=True)
        elif extractor == "transformer":
            heads = next(h for h in (4, 2, 1) if dim % h == 0)
            self.ctx = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)
            self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        if aggregator == "attention":
            self.query = nn.Parameter(torch.randn(dim) * 0.1)

    def forward(self, seq: torch.Tensor, lengths: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        h = self.sequence(seq, lengths)
        return h if self.user_emb is None else h + self.user_emb(users)

    def sequence(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = torch.arange(seq.shape[1], device=seq.device)[None, :] < lengths[:, None]   # [B, L]
        h = self.emb(seq)
        if self.extractor == "cnn":
            h = torch.relu(self.ctx((h * mask[..., None]).transpose(1, 2))).transpose(1, 2)
        elif self.extractor in ("gru", "lstm"):
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
            h, _ = self.ctx(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=seq.shape[1])
        elif self.extractor == "transformer":
            h = self.ctx(h + self.pos[None, :h.shape[1]], src_key_padding_mask=~mask)
        m = mask[..., None].to(h.dtype)
        if self.aggregator == "mean":
            return (h * m).sum(1) / lengths[:, None].to(h.dtype)
        if self.aggregator == "last":
            return h[torch.arange(len(h), device=h.device), lengths - 1]
        if self.aggregator == "max":
            return h.masked_fill(~mask[..., None], -torch.inf).max(1).values
        w = (h @ self.query).masked_fill(~mask, -torch.inf).softmax(1)
        return (w[..., None] * h).sum(1)


# ------------------------------------------------------------------------------------------- model

class TwoTower(Model):

    def __init__(self, dim=16, tau=0.2, max_len=20, batch_size=256, epochs=5, lr=0.005,
                 extractor="none", aggregator="mean", incremental=False, window_days=30.0, user_id=False,
                 pairs="event", pair_days=None):
        self.dim, self.tau, self.max_len, self.batch_size = dim, tau, max_len, batch_size
        self.epochs, self.lr, self.extractor, self.aggregator = epochs, lr, extractor, aggregator
        self.incremental, self.window_days, self.user_id = incremental, window_days, user_id
        if pairs not in PAIRS:
            raise ConfigError(f"two_tower: pairs must be one of {', '.join(PAIRS)}, got {pairs!r}")
        self.pairs, self.pair_days = pairs, pair_days

    # -------------------------------------------------------------------------------------- fit
    def fit(self, train, loss, ctx):
        contract = getattr(loss, "contract", None)
        if contract not in ("in_batch", "sampled"):
            raise ConfigError(f"model 'two_tower' trains with an in_batch or sampled loss (e.g. bbcnce, ssm, bce_neg), "
                              f"got {type(loss).__name__ if loss is not None else None} (contract {contract!r})")
        if len(train) == 0:
            raise ConfigError("model 'two_tower': the training data is empty; move the split's cut later")
        dev = ctx.device
        gen = torch.Generator().manual_seed(ctx.seed)
        torch.manual_seed(ctx.seed)
        n_items = train.n_items
        self.bos, self.pad = n_items, n_items + 1
        self.net = UserTower(n_items, self.dim, self.max_len, self.extractor, self.aggregator,
                             train.n_users if self.user_id else 0).to(dev)
        n = len(train)
        if self.pairs == "event":  # every event's history, once: the pairs are these
            user, item, time, seq, lengths = training_sequences(train, self.max_len, self.bos, self.pad)
            log_pu_all = torch.as_tensor(np.log(np.maximum(train.user_counts, 1) / n), dtype=torch.float32,
                                         device=dev)
            log_pi_all = torch.as_tensor(np.log(np.maximum(train.item_counts, 1) / n), dtype=torch.float32,
                                         device=dev)
            t_seq, t_len = torch.as_tensor(seq, device=dev), torch.as_tensor(lengths, device=dev)
            t_user, t_item = torch.as_tensor(user, device=dev), torch.as_tensor(item, device=dev)
        else:  # dataset D: histories are drawn per batch, the marginals are D's
            order = train.order
            user, item, time = train.user[order], train.item[order], train.time[order]
            n_days = self.pair_days or ctx.split_info.get("n_days") or ctx.split_info.get("horizon_days") or 30.0
            dpairs = PseudoUserPairs(user, item, time, train.n_users, train.per_day, float(n_days), self.max_len,
                                     self.bos, self.pad)
            log_pi_all = torch.as_tensor(dpairs.item_log_marginal(n_items), dtype=torch.float32, device=dev)
        plan = loss.plan(train.user_counts, train.item_counts) if contract == "sampled" else None
        if plan is not None:
            q_item = torch.as_tensor(plan.q_item, dtype=torch.float32)
            log_q_item = torch.log(q_item.clamp_min(1e-30)).to(dev)
            if plan.q_user is not None:
                q_user = torch.as_tensor(plan.q_user, dtype=torch.float32)
                ustart = torch.as_tensor(np.searchsorted(user, np.arange(train.n_users)), device=dev)
                ucount = torch.as_tensor(train.user_counts, device=dev)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        rng = np.random.default_rng(ctx.seed)

        def as_dev(*arrays):
            return [torch.as_tensor(x, device=dev) for x in arrays]

        if self.pairs == "window":
            windows = dpairs.windows(self.window_days if self.incremental else None)
        elif self.incremental:  # windows (t_end - (k+1)w, t_end - kw] of event times, oldest first
            k = np.floor((float(time.max()) - time) / (self.window_days * train.per_day)).astype(np.int64)
            windows = [wi for wi in (np.flatnonzero(k == j) for j in range(int(k.max()), -1, -1)) if len(wi)]
        else:
            windows = [np.arange(n)]

        # Per epoch, an iterator of batches (sequences, lengths, users, items, log p̂(u)); `negatives(users)`: the
        # state of a random training pair of each user (the paired samplers' negative users).
        def event_epochs():
            for wi in windows:
                idx_all = torch.as_tensor(wi)
                for _ in range(self.epochs):
                    perm = idx_all[torch.randperm(len(idx_all), generator=gen)].to(dev)
                    yield ((t_seq[b], t_len[b], t_user[b], t_item[b], log_pu_all[t_user[b]])
                           for b in (perm[s:s + self.batch_size] for s in range(0, len(perm), self.batch_size)))

        def event_negatives(nu):
            r = ustart[nu] + (torch.rand(len(nu), generator=gen).to(dev) * ucount[nu]).long()
            return t_seq[r], t_len[r], t_user[r]

        def window_epochs():
            for lo, hi in windows:
                for _ in range(self.epochs):
                    ev, day = dpairs.draw(lo, hi, rng)
                    if not len(ev):
                        yield iter(())
                        continue

                    def batches(ev=ev, day=day):
                        for s in range(0, len(ev), self.batch_size):
                            seq_b, len_b, lpu = dpairs.states(ev[s:s + self.batch_size], day[s:s + self.batch_size])
                            yield (*as_dev(seq_b, len_b, user[ev[s:s + self.batch_size]],
                                           item[ev[s:s + self.batch_size]]),
                                   torch.as_tensor(lpu, dtype=torch.float32, device=dev))
                    yield batches()

        def window_negatives(nu):
            nu = nu.cpu().numpy()
            r = dpairs.ustart[nu] + (rng.random(len(nu)) * dpairs.ucount[nu]).astype(np.int64)
            seq_n, len_n, _ = dpairs.states(r, dpairs.random_days(r, rng))
            return (*as_dev(seq_n, len_n), torch.as_tensor(nu, device=dev))

        epochs, negatives = (window_epochs(), window_negatives) if self.pairs == "window" else \
            (event_epochs(), event_negatives)
        total_steps, step, seen = len(windows) * self.epochs, 0, 0
        self.net.train()
        for batches in epochs:
            tot, cnt = 0.0, 0
            for seq_b, len_b, user_b, item_b, lpu_b in batches:
                if len(item_b) < 2 and contract == "in_batch":
                    continue
                u = F.normalize(self.net(seq_b, len_b, user_b), dim=1)
                v = F.normalize(self.net.emb(item_b), dim=1)
                if contract == "in_batch":
                    out = loss((u @ v.T) / self.tau, lpu_b, log_pi_all[item_b])
                else:
                    pos = (u * v).sum(1) / self.tau
                    if plan.paired:
                        nu = torch.multinomial(q_user, len(item_b), replacement=True, generator=gen).to(dev)
                        seq_n, len_n, user_n = negatives(nu)
                        ni = torch.multinomial(q_item, len(item_b), replacement=True, generator=gen).to(dev)
                        un = F.normalize(self.net(seq_n, len_n, user_n), dim=1)
                        vn = F.normalize(self.net.emb(ni), dim=1)
                        out = loss(pos, (un * vn).sum(1) / self.tau, None)
                    else:
                        ni = torch.multinomial(q_item, plan.k, replacement=True, generator=gen).to(dev)
                        neg = (u @ F.normalize(self.net.emb(ni), dim=1).T) / self.tau
                        neg = neg.masked_fill(ni[None, :] == item_b[:, None], -torch.inf)  # accidental hits
                        out = loss(pos, neg, log_q_item[ni], log_q_item[item_b])
                opt.zero_grad(set_to_none=True)
                out.backward()
                opt.step()
                tot += float(out.detach()) * len(item_b)
                cnt += len(item_b)
            seen += cnt
            ctx.log_metric("train/loss", tot / max(cnt, 1), step)
            step += 1
            ctx.progress(step, total_steps)
        self.net.eval()
        self.n_pairs_seen = seen
        with torch.no_grad():
            if self.net.user_emb is not None:  # users without training events keep no personal vector
                self.net.user_emb.weight[torch.as_tensor(train.user_counts == 0, device=dev)] = 0.0
            self.item_vecs = F.normalize(self.net.emb.weight[:n_items], dim=1)

    # -------------------------------------------------------------------------------------- scores
    @torch.no_grad()
    def user_vectors(self, states, block: int = 8192) -> torch.Tensor:
        seq, lengths = state_sequences(states, self.max_len, self.bos, self.pad)
        dev = self.item_vecs.device
        users = torch.as_tensor(np.asarray(states.user, dtype=np.int64), device=dev)
        out = [F.normalize(self.net(torch.as_tensor(seq[s:s + block], device=dev),
                                    torch.as_tensor(lengths[s:s + block], device=dev), users[s:s + block]), dim=1)
               for s in range(0, len(seq), block)]
        return torch.cat(out) if out else torch.zeros(0, self.dim, device=dev)

    def factors(self, states):
        return self.user_vectors(states) / self.tau, self.item_vecs


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="two_tower", factory=TwoTower, contracts=("in_batch", "sampled"), default_loss="bbcnce",
        description="UniMatch two-tower: sequence user encoder sharing the item table, φ = cos(u, i)/τ (Eq. 13); "
                    "in-batch (bbcNCE, ...) or sampled (SSM, BCE) losses; incremental or shuffled training",
        params=(
            Param("dim", "int", 16, "embedding dimension d", low=1, high=4096),
            Param("tau", "float", 0.2, "temperature τ in φ = cos(u, i)/τ", low=1e-3, high=100.0),
            Param("max_len", "int", 20, "history items per user-state (the most recent)", low=1, high=4096),
            Param("batch_size", "int", 256, "positive pairs per step (the in-batch negatives)", low=2),
            Param("epochs", "int", 5, "passes over the training pairs (per window when incremental)", low=1),
            Param("lr", "float", 0.005, "Adam learning rate", low=0.0, high=10.0),
            Param("extractor", "str", "none", "context extractor: none (YouTube-DNN), cnn, gru, lstm, transformer",
                  choices=EXTRACTORS),
            Param("aggregator", "str", "mean", "sequence aggregator", choices=AGGREGATORS),
            Param("incremental", "bool", False, "consume training windows in time order (UniMatch III-B3) "
                                                "instead of shuffling all pairs"),
            Param("window_days", "float", 30.0, "window length for incremental training, in days", low=1e-9),
            Param("pairs", "str", "event", "training pairs: event (one per training event, history just before "
                  "it) or window (UniMatch's dataset D: pseudo-user at day t x each item of [t, t + n))",
                  choices=PAIRS, late=True),
            Param("pair_days", "float", None, "n of dataset D's [t, t + n) (null: the split's n_days or "
                  "horizon_days, else 30)", low=1e-9, nullable=True, late=True),
            Param("user_id", "bool", False, "add a learned user-id embedding to the sequence representation "
                                            "(the user_id of Table IV's records; lets φ carry per-user terms "
                                            "such as log p̂(u))"),
        )))
