"""`jodie`: JODIE (Kumar, Zhang & Leskovec, KDD 2019), the mutually recursive user / item RNN that IMN-Net builds on.

Every user and item has a static embedding (ū, ī: learned id embeddings of size `dim`, in place of the authors'
one-hot vectors, so memory grows with d rather than with n_users + n_items; ī kept at unit length, as one-hot
vectors are, so that −||ī||² does not rank items by the norms of their codes) and a dynamic one u(t), i(t) of size
`dim`. An interaction (u, i, t, f) updates both (Eqs. 1–2), each side an RNN cell fed the other side's embedding,
the time since its own previous interaction Δ and the event's features f (the log's `value` when it has one, else
none):

    u(t) = normalize(tanh(W₁ u(t⁻) + W₂ i(t⁻) + W₃ f + W₄ Δ_u)),  i(t) = normalize(tanh(W₁' i(t⁻) + W₂' u(t⁻) + ...))

(tanh and the L2 normalisation as the authors' code, `nn.RNNCell` + `F.normalize`; the paper writes σ). Projection
(Eq. 3): û(t + Δ) = (1 + w(Δ)) ⊙ u(t), w a linear layer of Δ. Prediction (Eq. 4): j̃ = W [û ⊕ ū] + B [i_prev ⊕
ī_prev] (one linear layer over the user's projected dynamic and static embeddings and the dynamic and static
embeddings of the user's previous item; a padding item before the first). Loss per interaction (Eq. 5, mean
squared errors as the authors' code): ||j̃ − [i(t⁻) ⊕ ī]||² (target detached) + λ_u ||u(t) − u(t⁻)||² +
λ_i ||i(t) − i(t⁻)||². Δs are standardised with the training log's mean and sd (the authors' `scale`); a first
interaction's Δ counts from the log's first event.

Training (the authors' t-batch scheme): the log is cut into `windows` equal time windows; inside each window the
events are grouped into t-batches by one pass in time order (an event goes to 1 + the later of the last t-batches of
its user and of its item, never before its window's first t-batch), so no t-batch holds two events of one user or
one item and each t-batch depends only on earlier ones; a t-batch larger than `max_batch` is cut into consecutive
pieces (still independent). The t-batches of a window run in order on the carried embeddings; their summed loss
takes one Adam step at the window's end and the embeddings are then detached (truncated back-propagation). Every
epoch restarts all users and items from learned initial vectors u₀, i₀ and carries them through the training log;
the last epoch's user trajectory (one d-vector per training event) is kept for serving.

Serving a state (user, cut, history): the user's dynamic embedding after its last training event before the cut
(the trajectory of the last epoch is kept), then — as the authors' evaluation keeps updating on validation and test
events — advanced through the history events after that training event (the history's events not in the training
log, e.g. earlier test-period events of an event-fraction split) with the user RNN, against the items' embeddings at
the end of training and f = the training mean; projected to the cut; j̃ predicted from the last history item (or the
last training item). Items keep their end-of-training embeddings: one item matrix serves every state, so the item
side cannot follow evaluation events, and the authors' online gradient steps on test events are not taken (this
would let one state's score depend on the others'). Items are ranked by −||j̃ − [i ⊕ ī]||², exposed as factors
[2 j̃, −||j̃||², −1]·[b, 1, ||b||²] = 2 j̃·b − ||j̃||² − ||b||², so itemrec and userrec rank in blocks.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.plugin import DataError, Model, ModelSpec, Param, UserStates, hookimpl, validation_ndcg

# --------------------------------------------------------------------------------------------- t-batches

def tbatches(user: np.ndarray, item: np.ndarray, window: np.ndarray | None = None,
             max_batch: int | None = None) -> np.ndarray:
    """The t-batch of each event of a time-ordered log (JODIE's t-batch algorithm): one pass, an event goes to
    1 + max(last t-batch of its user, last t-batch of its item, last t-batch before its window). With `max_batch`,
    larger t-batches are cut into consecutive pieces. Returns dense ids 0..B-1 in processing order."""
    n = len(user)
    win = np.zeros(n, np.int64) if window is None else np.asarray(window, np.int64)
    last_u: dict[int, int] = {}
    last_i: dict[int, int] = {}
    out = [0] * n
    base, top, cur = -1, -1, None
    users, items = np.asarray(user).tolist(), np.asarray(item).tolist()
    for j, (u, i, w) in enumerate(zip(users, items, win.tolist(), strict=True)):
        if w != cur:
            base, cur = top, w
        b = max(last_u.get(u, -1), last_i.get(i, -1), base) + 1
        last_u[u] = last_i[i] = out[j] = b
        top = max(top, b)
    batch = np.asarray(out, np.int64)
    if max_batch is None or n == 0:
        return batch
    order = np.lexsort((np.arange(n), batch))          # by batch, then time order
    sb = batch[order]
    start = np.r_[0, np.flatnonzero(np.diff(sb)) + 1]
    rank = np.arange(n) - np.repeat(start, np.diff(np.r_[start, n]))
    piece = np.empty(n, np.int64)
    piece[order] = rank // int(max_batch)
    key = batch * (n + 1) + piece
    return np.unique(key, return_inverse=True)[1].astype(np.int64)


# --------------------------------------------------------------------------------------------- the network

class JodieNet(nn.Module):
    """The update, projection and prediction operators of JODIE."""

    def __init__(self, n_users: int, n_items: int, d: int, n_feat: int, gen: torch.Generator):
        super().__init__()
        self.d, self.n_items = d, n_items
        self.user_rnn = nn.RNNCell(d + 1 + n_feat, d)
        self.item_rnn = nn.RNNCell(d + 1 + n_feat, d)
        self.time = nn.Linear(1, d)
        self.predict = nn.Linear(4 * d, 2 * d)
        self.u_static = nn.Embedding(n_users, d)
        self.i_static = nn.Embedding(n_items + 1, d)     # row n_items: the padding "previous item"
        self.u0 = nn.Parameter(torch.zeros(d))
        self.i0 = nn.Parameter(torch.zeros(d))
        with torch.no_grad():
            for p in self.parameters():                  # every draw from the fit's generator
                std = 1.0 / np.sqrt(p.shape[-1]) if p.ndim > 1 else 1.0 / np.sqrt(d)
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            self.time.weight.copy_(torch.randn(d, 1, generator=gen))   # the authors' NormalLinear(1, d)
            self.time.bias.copy_(torch.randn(d, generator=gen))
            self.u0.copy_(F.normalize(torch.rand(d, generator=gen), dim=0))
            self.i0.copy_(F.normalize(torch.rand(d, generator=gen), dim=0))

    def project(self, u: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """û(t + Δ) = (1 + w(Δ)) ⊙ u(t); dt [n] standardised."""
        return u * (1 + self.time(dt[:, None]))

    def update_user(self, u, i, dt, f):
        """u(t) from u(t⁻), the item's i(t⁻), Δ_u and the features (Eq. 1)."""
        return F.normalize(self.user_rnn(torch.cat([i, dt[:, None], f], 1), u))

    def update_item(self, i, u, dt, f):
        """i(t) from i(t⁻), the user's u(t⁻), Δ_i and the features (Eq. 2)."""
        return F.normalize(self.item_rnn(torch.cat([u, dt[:, None], f], 1), i))

    def predict_item(self, u_proj, users, prev_dyn, prev):
        """j̃ = W [û ⊕ ū] + B [i_prev ⊕ ī_prev] (one linear layer over the concatenation)."""
        return self.predict(torch.cat([u_proj, self.u_static(users), prev_dyn, self.item_static(prev)], 1))

    def item_static(self, items: torch.Tensor) -> torch.Tensor:
        """ī, unit length: with free norms −||ī||² would rank items by the norms of their (random) codes."""
        return F.normalize(self.i_static(items), dim=1)

    def item_targets(self, dyn: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """[i(t) ⊕ ī], what j̃ is compared with."""
        return torch.cat([dyn, self.item_static(items)], 1)

    def tbatch_loss(self, U, I, users, items, prev, du, di, f, lambda_u: float, lambda_i: float):
        """One t-batch: (loss, u(t), i(t)) from the carried embeddings U, I (rows of users, items, previous items)."""
        u_in, i_in = U[users], I[items]
        pred = self.predict_item(self.project(u_in, du), users, I[prev], prev)
        loss = F.mse_loss(pred, self.item_targets(i_in, items).detach())
        u_out = self.update_user(u_in, i_in, du, f)
        i_out = self.update_item(i_in, u_in, di, f)
        loss = loss + lambda_u * F.mse_loss(u_out, u_in.detach()) + lambda_i * F.mse_loss(i_out, i_in.detach())
        return loss, u_out, i_out


def distance_factors(pred: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors whose dot products are −||a − b||²: [2a, −||a||², −1]·[b, 1, ||b||²]."""
    a2, b2 = pred.square().sum(1, keepdim=True), items.square().sum(1, keepdim=True)
    return (torch.cat([2 * pred, -a2, -torch.ones_like(a2)], 1), torch.cat([items, torch.ones_like(b2), b2], 1))


# --------------------------------------------------------------------------------------------- the model

class Jodie(Model):
    """JODIE: t-batch training of the coupled RNNs; items ranked by L2 distance to the predicted embedding."""

    def __init__(self, dim=128, epochs=20, lr=1e-3, lambda_u=1.0, lambda_i=1.0, max_batch=None, windows=500,
                 weight_decay=1e-5, patience=None):
        self.d, self.epochs, self.lr, self.lambda_u, self.lambda_i = dim, epochs, lr, lambda_u, lambda_i
        self.max_batch, self.windows, self.weight_decay, self.patience = max_batch, windows, weight_decay, patience

    # ---------------------------------------------------------------- training data
    def _prepare(self, train):
        """Time-ordered events, their previous items, standardised Δs, features, t-batches and windows."""
        n = len(train)
        order = np.lexsort((np.arange(n), train.time))
        u, i, t = train.user[order].astype(np.int64), train.item[order].astype(np.int64), train.time[order]
        self.t0 = float(t[0])
        du, prev = self._since_last(u, t, i, train.n_users, self.n_items)
        di, _ = self._since_last(i, t, i, train.n_items, self.n_items)
        self.dt_mean, self.dt_sd = float(np.r_[du, di].mean()), float(np.r_[du, di].std()) or 1.0
        if train.value is not None and np.nanstd(train.value) > 0:
            v = np.nan_to_num(np.asarray(train.value, np.float64)[order], nan=float(np.nanmean(train.value)))
            self.f_mean, self.f_sd = float(v.mean()), float(v.std())
            f = ((v - self.f_mean) / self.f_sd)[:, None]
        else:
            self.f_mean, self.f_sd, f = None, None, np.zeros((n, 0))
        span = max(float(t[-1] - t[0]), 1e-12)
        win = np.minimum(((t - t[0]) / span * self.windows).astype(np.int64), self.windows - 1)
        batch = tbatches(u, i, win, self.max_batch)
        by = np.argsort(batch, kind="stable")
        ptr = np.r_[0, np.cumsum(np.bincount(batch))]
        win_of_batch = win[by][ptr[:-1]]
        w_ptr = np.r_[0, np.flatnonzero(np.diff(win_of_batch)) + 1, len(ptr) - 1]
        tens = {k: torch.as_tensor(a[by]) for k, a in
                (("u", u), ("i", i), ("prev", prev), ("pos", np.arange(n)))}
        tens["du"] = torch.as_tensor(self._std(du)[by], dtype=torch.float32)
        tens["di"] = torch.as_tensor(self._std(di)[by], dtype=torch.float32)
        tens["f"] = torch.as_tensor(f[by], dtype=torch.float32)
        return (u, i, t), tens, ptr, w_ptr

    def _since_last(self, key, t, item, n_keys, pad):
        """Per event: time since the key's previous event (since the log's start for a first one) and the key's
        previous item (`pad` for a first one); vectorised over (key, time)-sorted events."""
        o = np.lexsort((np.arange(len(key)), t, key))
        k, tt, it = key[o], t[o], item[o]
        first = np.r_[True, k[1:] != k[:-1]]
        dt = np.where(first, tt - self.t0, tt - np.r_[self.t0, tt[:-1]])
        prev = np.where(first, pad, np.r_[pad, it[:-1]])
        out_dt, out_prev = np.empty(len(key)), np.empty(len(key), np.int64)
        out_dt[o], out_prev[o] = dt, prev
        return out_dt, out_prev

    def _std(self, dt):
        return (np.asarray(dt, np.float64) - self.dt_mean) / self.dt_sd

    # ---------------------------------------------------------------- fit
    def fit(self, train, loss, ctx):
        if len(train) == 0:
            raise DataError("jodie: no training events")
        torch.manual_seed(ctx.seed)
        gen = torch.Generator().manual_seed(ctx.seed)
        self.n_users, self.n_items = train.n_users, train.n_items
        (u, i, t), ev, ptr, w_ptr = self._prepare(train)
        self.net = self._network(self.n_users, self.n_items, ev["f"].shape[1], gen)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.train_user, self.train_item, self.train_time = u, i, t
        self._by_user = np.lexsort((np.arange(len(u)), t, u))
        valid = ctx.valid if self.patience is not None else None
        self.epoch_times, self.n_tbatches = [], len(ptr) - 1
        best, best_state, since = -1.0, None, 0
        for epoch in range(self.epochs):
            t0 = time.perf_counter()
            total = self._epoch(ev, ptr, w_ptr, opt, len(u))
            self.epoch_times.append(time.perf_counter() - t0)
            ctx.log_metric("train/loss", total, epoch)
            ctx.log_metric("time/epoch_s", self.epoch_times[-1], epoch)
            ctx.progress(epoch + 1, self.epochs)
            self._finish()
            if valid is not None:
                score = validation_ndcg(valid, lambda rows: self.score_block(valid.states, rows), self.n_items, 10)
                ctx.log_metric("valid/ndcg_10", score, epoch)
                if score > best:
                    best, since = score, 0
                    best_state = ({k: v.clone() for k, v in self.net.state_dict().items()},
                                  {k: v.clone() for k, v in self._kept().items()})
                else:
                    since += 1
                    if since >= self.patience:
                        break
        if best_state is not None:
            self.net.load_state_dict(best_state[0])
            for k, v in best_state[1].items():
                setattr(self, k, v)
            self._finish()

    def _kept(self) -> dict:
        """What an epoch leaves for serving besides the network (saved with the best validation epoch)."""
        return {"I_end": self.I_end, "traj": self.traj}

    def _network(self, n_users, n_items, n_feat, gen) -> JodieNet:
        return JodieNet(n_users, n_items, self.d, n_feat, gen)

    def _epoch(self, ev, ptr, w_ptr, opt, n) -> float:
        """One pass over the training log: embeddings restart from their initial vectors; one Adam step per time
        window, after which the carried embeddings are detached."""
        net = self.net
        net.train()
        state = self._start(n)
        total = 0.0
        for w in range(len(w_ptr) - 1):
            loss = 0.0
            for b in range(w_ptr[w], w_ptr[w + 1]):
                loss = loss + self._step(ev, slice(int(ptr[b]), int(ptr[b + 1])), state)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            for k in state["carried"]:
                state[k] = state[k].detach()
        self._end(state)
        net.eval()
        return total

    def _start(self, n) -> dict:
        """The carried embeddings at an epoch's start (the initial vectors get gradients through the first window)
        and the user trajectory to fill."""
        net = self.net
        return {"U": net.u0[None].repeat(self.n_users, 1), "I": net.i0[None].repeat(self.n_items + 1, 1),
                "traj": torch.empty(n, self.d), "carried": ("U", "I")}

    def _step(self, ev, s, state) -> torch.Tensor:
        """One t-batch (the events ev[s]): its loss; the carried embeddings and the trajectory updated."""
        out, u_out, i_out = self.net.tbatch_loss(state["U"], state["I"], ev["u"][s], ev["i"][s], ev["prev"][s],
                                                 ev["du"][s], ev["di"][s], ev["f"][s], self.lambda_u, self.lambda_i)
        state["U"] = state["U"].index_put((ev["u"][s],), u_out)
        state["I"] = state["I"].index_put((ev["i"][s],), i_out)
        state["traj"][ev["pos"][s]] = u_out.detach()
        return out

    def _end(self, state) -> None:
        self.I_end, self.traj = state["I"].detach(), state["traj"]

    def _finish(self):
        """Item factors [i ⊕ ī] from the items' embeddings at the end of training."""
        with torch.no_grad():
            idx = torch.arange(self.n_items)
            self.item_vec = self.net.item_targets(self.I_end[:self.n_items], idx)

    # ---------------------------------------------------------------- serving
    @torch.no_grad()
    def predict_states(self, states: UserStates, rows: np.ndarray | None = None) -> torch.Tensor:
        """j̃ for states[rows]: the user's trajectory at its last training event before the cut, advanced through the
        history events after it, projected to the cut."""
        return self.net.predict_item(*self._serve(states, rows))

    def _serve(self, states: UserStates, rows: np.ndarray | None):
        """The prediction layer's inputs (projected user, users, previous item's dynamic embedding, previous item)
        for states[rows]; `_serve_begin`, `_serve_event` and `_serve_user` are the hooks a subclass extends."""
        rows = np.arange(len(states)) if rows is None else np.asarray(rows, np.int64)
        users = np.asarray(states.user, np.int64)[rows]
        cuts = np.asarray(states.time, np.float64)[rows]
        su, st = self.train_user[self._by_user], self.train_time[self._by_user]
        lo = np.searchsorted(su, users, side="left")
        hi = lo + _count_before(su, st, users, cuts)   # the user's training events before the cut: [lo, hi)
        has = hi > lo
        last = self._by_user[np.maximum(hi - 1, 0)]
        u = torch.where(torch.as_tensor(has)[:, None], self.traj[torch.as_tensor(last)],
                        self.net.u0.detach()[None])
        t_last = np.where(has, self.train_time[last], np.nan)
        prev = np.where(has, self.train_item[last], self.n_items)
        ptr = np.asarray(states.hist_ptr, np.int64)
        h_item, h_time = np.asarray(states.hist_item, np.int64), np.asarray(states.hist_time, np.float64)
        a, b = ptr[rows], ptr[rows + 1]
        n_new = b - a - _count_upto(h_time, a, b, t_last)
        f = torch.zeros(len(rows), self.net.user_rnn.input_size - self.d - 1)
        extra = self._serve_begin(users, has, last)
        for k in range(int(n_new.max()) if len(rows) else 0):   # replay the history events not in training
            act = n_new > k
            pos = np.where(act, b - n_new + k, 0)
            ti = h_time[np.minimum(pos, len(h_time) - 1)] if len(h_time) else np.zeros(len(rows))
            dt = ti - np.where(np.isnan(t_last), self.t0, t_last)
            it = torch.as_tensor(np.where(act, h_item[np.minimum(pos, max(len(h_item) - 1, 0))], 0))
            new = self.net.update_user(u, self.I_end[it], torch.as_tensor(self._std(dt), dtype=torch.float32), f)
            self._serve_event(extra, act, users, it, ti, new, f, same=(it.numpy() == prev) & (ti == t_last))
            u = torch.where(torch.as_tensor(act)[:, None], new, u)
            t_last = np.where(act, ti, t_last)
            prev = np.where(act, it.numpy(), prev)
        dt = cuts - np.where(np.isnan(t_last), self.t0, t_last)
        proj = self._serve_user(extra, u, torch.as_tensor(self._std(dt), dtype=torch.float32), cuts)
        prev_t = torch.as_tensor(prev)
        return proj, torch.as_tensor(users), self.I_end[prev_t], prev_t

    def _serve_begin(self, users, has, last):
        """Extra per-state serving state (none for JODIE); `last`: each state's last training event, where `has`."""
        return None

    def _serve_event(self, extra, act, users, item, time, u_new, f, same) -> None:
        """A replayed history event (for the states in `act`): `u_new` the user's updated embedding, `same` whether
        it repeats the previous event's item and time."""

    def _serve_user(self, extra, u, dt, cuts) -> torch.Tensor:
        """The user embedding that the prediction layer sees: JODIE's projection û(cut)."""
        return self.net.project(u, dt)

    def factors(self, states):
        return distance_factors(self.predict_states(states), self.item_vec)

    def score_block(self, states, rows):
        return -torch.cdist(self.predict_states(states, rows), self.item_vec).square()


def _count_before(su, st, users, cuts):
    """Per query: how many events of users[q] (in the (user, time)-sorted su, st) have time < cuts[q]; one
    searchsorted over an exact (user, rank of time) key."""
    grid = np.unique(st)
    width = np.int64(len(grid) + 1)
    key = su * width + np.searchsorted(grid, st, side="left")
    lo = np.searchsorted(key, users * width, side="left")
    return np.searchsorted(key, users * width + np.searchsorted(grid, cuts, side="left"), side="left") - lo


def _count_upto(h_time, a, b, t_last):
    """Per state: how many of its history events h_time[a:b] have time <= t_last (those the training log holds)."""
    seg = np.repeat(np.arange(len(a)), b - a)
    idx = np.repeat(a - np.r_[0, np.cumsum(b - a)[:-1]], b - a) + np.arange(int((b - a).sum()))
    held = h_time[idx] <= t_last[seg]            # NaN (no training event) compares False
    return np.bincount(seg, weights=held, minlength=len(a)).astype(np.int64)


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="jodie", factory=Jodie,
        description="JODIE (KDD 2019): coupled user / item RNNs, time projection, predicted next-item embedding, "
                    "t-batch training; items ranked by -L2 distance to the prediction",
        params=(
            Param("dim", "int", 128, "size d of the dynamic and of the static embeddings", low=1, high=4096),
            Param("epochs", "int", 20, "passes over the training log (the most, with patience)", low=1),
            Param("lr", "float", 1e-3, "Adam learning rate", low=0.0, high=10.0),
            Param("lambda_u", "float", 1.0, "weight of the user smoothness loss ||u(t) - u(t-)||^2", low=0.0),
            Param("lambda_i", "float", 1.0, "weight of the item smoothness loss ||i(t) - i(t-)||^2", low=0.0),
            Param("max_batch", "int", None, "batch limit: t-batches larger than this are cut into pieces (null: "
                  "none)", low=1, nullable=True),
            Param("windows", "int", 500, "equal time windows of the training log: one Adam step per window (the "
                  "authors' timespan / 500)", low=1),
            Param("weight_decay", "float", 1e-5, "Adam weight decay (the authors' 1e-5)", low=0.0),
            Param("patience", "int", None, "with a validation set: stop after this many epochs without a better "
                  "validation NDCG@10 and keep the best epoch (null: train all epochs)", low=1, nullable=True),
        )))
