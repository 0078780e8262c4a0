"""`imn_net`, `imn_mse`, `imn_nce`, `imn_net_star`: IMN-Net (Wu, Zhang, Cui & Yang, "Interest-Behaviour
Multiplicative Network for Resource-limited Recommendation") on `jodie`'s coupled RNNs, t-batches and serving.

What it adds to JODIE (the paper's equations):

- **Resource-limited branch** (Eq. 6): a second user state h^l, updated only on purchase events (the log's `event`
  column equal to `purchase`; a log without it has no purchases and h^l stays at its learned initial vector):
  h^l(t) = normalize(tanh(W₁ h^l(t⁻) + [W₂ u^g(t) + W₃ i(t) + W₄ ū + W₅ ī_p + W₆ Δ_p + W₇ v_p])), u^g(t), i(t) the
  general user and item embeddings after the purchase's update, Δ_p the time since the user's previous purchase
  (since the log's start for a first one), standardised by the training purchases' mean and sd, v_p the event's
  features. tanh + L2 normalisation as JODIE's cells (the paper writes σ). Clicks and purchases both update u^g and i.
- **Projection and combined user** (Eqs. 7–10): ĥ^l = (1 + W_t Δ^l) ⊙ h^l with JODIE's time layer W_t (the paper
  shares it), Δ^l the time since the user's last purchase; the combined user f = ĥ^g + ĥ^l (the paper's choice).
- **Prediction** (Eq. 11): j̃ = W [f ⊕ ū ⊕ i_prev ⊕ ī_prev], compared (MSE) with [i(t⁻) ⊕ ī] as JODIE does (Eq. 20
  writes ī only; JODIE's target is kept so that `imn_mse` without the branch is JODIE).
- **Mutual-information estimator** (Eqs. 12–21): context c = [f ⊕ ū ⊕ i_prev ⊕ ī_prev] (Eq. 15), candidate
  x = [i ⊕ ī], log f₁(x, c) = xᵀ W_f c (Eq. 14, bilinear, no bias); the NCE loss (Eq. 21) is the cross-entropy of
  the positive among 1 + (N − 1) candidates, the N − 1 negatives drawn uniformly from all items (with replacement,
  one draw per t-batch, shared by its events; a negative equal to an event's own item is masked out of that event's
  softmax). Choices: the paper's x (Eqs. 16–17) also holds h_u^g(t+1), the same vector in the positive and every
  negative, so its term is a constant of each softmax and of each state's ranking and is left out; the positive's
  and negatives' item parts are the items' embeddings before the event (Eq. 16 writes the positive after it, which
  would let the positive see its user; serving ranks the items' current embeddings, so training does too).
- **Fusion loss** (Eq. 22): λ_m·MSE + λ_n·NCE + λ_U·||u(t) − u(t⁻)||² + λ_I·||i(t) − i(t⁻)||² (means, as JODIE).
- **Joint discriminator** (Eqs. 23–24): items ranked by α_m·(−||j̃ − [i ⊕ ī]||²) + α_n·log f₁. Eq. 23 adds the
  distance itself, which would rank the farthest items first (against Eq. 20's MSE and JODIE's ranking), so the
  distance enters with a minus sign; squared distance and log f₁ (the logit of Eq. 21's softmax, exp would be
  monotone alone but not in a sum) keep the score one matrix product: factors [2α_m j̃ + α_n W_f c, −α_m||j̃||²,
  −α_m]·[b, 1, ||b||²], b = [i ⊕ ī], so itemrec and userrec rank in blocks.

Variants (separate names, as the paper's ablations): `imn_mse` (λ_n = 0, α_n = 0: Eq. 25 with the branch),
`imn_nce` (λ_m = 0, α_m = 0: Eqs. 26–28), `imn_net_star` (no resource branch: f = ĥ^g). Defaults from the paper:
d = 128, Adam lr 1e-3, t-batches of at most 256 events, N = 128, α = (0.9, 0.1) (its resource-limited CZB data), best
validation epoch kept (patience). The paper leaves λ_m, λ_n open: λ_n = 0.1 by default, because the NCE term (about
log N ≈ 4.9 at the start) is two orders larger than the per-coordinate MSE and would otherwise swamp the prediction
that α_m weighs by 0.9.

Serving: as `jodie` (trajectory at the last training event before the cut, replay of the history after it, items
at their end-of-training embeddings), plus h^l and the last purchase time from the training trajectory. States
carry no event types, so in the replay a history event repeating the previous event's item at the same time is
taken as a purchase (the resource log writes a purchase as a second row right after its click).
"""
from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.plugin import DataError, ModelSpec, Param, hookimpl
from plugins.models.jodie import Jodie, JodieNet, distance_factors


class ImnNetwork(JodieNet):
    """JODIE's operators plus the resource branch's cell and initial vector and the bilinear density ratio W_f."""

    def __init__(self, n_users: int, n_items: int, d: int, n_feat: int, gen: torch.Generator):
        super().__init__(n_users, n_items, d, n_feat, gen)
        self.limited_rnn = nn.RNNCell(4 * d + 1 + n_feat, d)
        self.density = nn.Linear(4 * d, 2 * d, bias=False)      # W_f c: log f₁(x, c) = x · (W_f c)
        self.l0 = nn.Parameter(torch.zeros(d))
        with torch.no_grad():
            for p in (*self.limited_rnn.parameters(), self.density.weight):
                std = 1.0 / np.sqrt(p.shape[-1]) if p.ndim > 1 else 1.0 / np.sqrt(d)
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            self.l0.copy_(F.normalize(torch.rand(d, generator=gen), dim=0))

    def update_limited(self, h_l, u_new, i_new, users, items, dt, f):
        """h^l(t) from h^l(t⁻), u^g(t), i(t), ū, ī_p, Δ_p and the features (Eq. 6)."""
        x = torch.cat([u_new, i_new, self.u_static(users), self.item_static(items), dt[:, None], f], 1)
        return F.normalize(self.limited_rnn(x, h_l))

    def context(self, user, users, prev_dyn, prev):
        """c = [f ⊕ ū ⊕ i_prev ⊕ ī_prev] (Eq. 15), the prediction layer's input too (Eq. 11)."""
        return torch.cat([user, self.u_static(users), prev_dyn, self.item_static(prev)], 1)


def nce_loss(query: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor) -> torch.Tensor:
    """Eq. 21: mean over events of −log softmax of the positive's log f₁ = pos·query among the positive and the shared
    negatives (neg·query); a negative that is the event's own item is masked out."""
    logits = torch.cat([(query * pos).sum(1, keepdim=True), query @ neg.T], 1)
    clash = torch.cat([torch.zeros(len(pos_items), 1, dtype=torch.bool), pos_items[:, None] == neg_items[None]], 1)
    return F.cross_entropy(logits.masked_fill(clash, float("-inf")), torch.zeros(len(pos), dtype=torch.long))


class ImnNet(Jodie):
    """IMN-Net: JODIE + resource branch + mutual-information estimator; ranked by the joint discriminator."""

    def __init__(self, dim=128, epochs=50, lr=1e-3, lambda_u=1.0, lambda_i=1.0, max_batch=256, windows=500,
                 weight_decay=1e-5, patience=5, lambda_m=1.0, lambda_n=0.1, n_samples=128, alpha_m=0.9,
                 alpha_n=0.1, resource=True):
        super().__init__(dim, epochs, lr, lambda_u, lambda_i, max_batch, windows, weight_decay, patience)
        self.lambda_m, self.lambda_n, self.n_samples = lambda_m, lambda_n, n_samples
        self.alpha_m, self.alpha_n, self.resource = alpha_m, alpha_n, resource

    # ---------------------------------------------------------------- training data
    def _prepare(self, train):
        times, tens, ptr, w_ptr = super()._prepare(train)
        u, _, t = times
        n = len(u)
        order = np.lexsort((np.arange(n), train.time))
        ev = np.asarray(train.event, dtype=object)[order] if train.event is not None else np.full(n, "click", object)
        purchase = ev == "purchase"
        before, after = _last_purchase(u, t, purchase)
        dl = t - np.where(np.isnan(before), self.t0, before)
        gaps = dl[purchase]
        self.dl_mean = float(gaps.mean()) if len(gaps) else self.dt_mean
        self.dl_sd = float(gaps.std()) if len(gaps) > 1 and gaps.std() > 0 else self.dt_sd
        by = tens["pos"].numpy()                # t-batch order -> time-order position
        tens["purchase"] = torch.as_tensor(purchase[by])
        tens["dl"] = torch.as_tensor(self._std_l(dl)[by], dtype=torch.float32)
        self.purchase_after = after            # per time-ordered training event: the user's last purchase time
        self.n_purchases = int(purchase.sum())
        return times, tens, ptr, w_ptr

    def _std_l(self, dt):
        return (np.asarray(dt, np.float64) - self.dl_mean) / self.dl_sd

    # ---------------------------------------------------------------- fit
    def fit(self, train, loss, ctx):
        if len(train) == 0:
            raise DataError("imn_net: no training events")
        self._neg_gen = torch.Generator().manual_seed(int(ctx.seed) + 1)
        super().fit(train, loss, ctx)

    def _network(self, n_users, n_items, n_feat, gen):
        return ImnNetwork(n_users, n_items, self.d, n_feat, gen)

    def _start(self, n) -> dict:
        state = super()._start(n)
        state["L"] = self.net.l0[None].repeat(self.n_users, 1)
        state["ltraj"] = torch.empty(n, self.d)
        state["carried"] = ("U", "I", "L")
        return state

    def _combined(self, g, dg, h_l, dl):
        """f(ĥ^g, ĥ^l) = ĥ^g + ĥ^l (ĥ^g alone without the branch)."""
        proj = self.net.project(g, dg)
        return proj + self.net.project(h_l, dl) if self.resource else proj

    def _step(self, ev, s, state) -> torch.Tensor:
        net = self.net
        users, items, prev = ev["u"][s], ev["i"][s], ev["prev"][s]
        du, di, dl, f = ev["du"][s], ev["di"][s], ev["dl"][s], ev["f"][s]
        U, I, L = state["U"], state["I"], state["L"]
        u_in, i_in, l_in = U[users], I[items], L[users]
        c = net.context(self._combined(u_in, du, l_in, dl), users, I[prev], prev)
        target = net.item_targets(i_in, items)
        loss = torch.zeros(())
        if self.lambda_m > 0:
            loss = loss + self.lambda_m * F.mse_loss(net.predict(c), target.detach())
        if self.lambda_n > 0:
            neg = torch.randint(0, self.n_items, (self.n_samples - 1,), generator=self._neg_gen)
            loss = loss + self.lambda_n * nce_loss(net.density(c), target, net.item_targets(I[neg], neg), items, neg)
        u_out = net.update_user(u_in, i_in, du, f)
        i_out = net.update_item(i_in, u_in, di, f)
        loss = (loss + self.lambda_u * F.mse_loss(u_out, u_in.detach())
                + self.lambda_i * F.mse_loss(i_out, i_in.detach()))
        state["U"] = U.index_put((users,), u_out)
        state["I"] = I.index_put((items,), i_out)
        buy = ev["purchase"][s]
        if self.resource and bool(buy.any()):
            l_new = net.update_limited(l_in[buy], u_out[buy], i_out[buy], users[buy], items[buy], dl[buy], f[buy])
            state["L"] = L.index_put((users[buy],), l_new)
        state["traj"][ev["pos"][s]] = u_out.detach()
        state["ltraj"][ev["pos"][s]] = state["L"][users].detach()
        return loss

    def _end(self, state) -> None:
        super()._end(state)
        self.ltraj = state["ltraj"]

    def _kept(self) -> dict:
        return {**super()._kept(), "ltraj": self.ltraj}

    # ---------------------------------------------------------------- serving
    def _serve_begin(self, users, has, last):
        h_l = torch.where(torch.as_tensor(has)[:, None], self.ltraj[torch.as_tensor(last)], self.net.l0.detach()[None])
        return {"L": h_l, "t_buy": np.where(has, self.purchase_after[last], np.nan), "users": torch.as_tensor(users)}

    def _serve_event(self, extra, act, users, item, time, u_new, f, same) -> None:
        buy = act & same
        if not self.resource or not buy.any():
            return
        dt = time - np.where(np.isnan(extra["t_buy"]), self.t0, extra["t_buy"])
        new = self.net.update_limited(extra["L"], u_new, self.I_end[item], extra["users"], item,
                                      torch.as_tensor(self._std_l(dt), dtype=torch.float32), f)
        extra["L"] = torch.where(torch.as_tensor(buy)[:, None], new, extra["L"])
        extra["t_buy"] = np.where(buy, time, extra["t_buy"])

    def _serve_user(self, extra, u, dt, cuts) -> torch.Tensor:
        dl = cuts - np.where(np.isnan(extra["t_buy"]), self.t0, extra["t_buy"])
        return self._combined(u, dt, extra["L"], torch.as_tensor(self._std_l(dl), dtype=torch.float32))

    @torch.no_grad()
    def query_states(self, states, rows=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(j̃, W_f c) for states[rows]."""
        c = self.net.context(*self._serve(states, rows))
        return self.net.predict(c), self.net.density(c)

    def predict_states(self, states, rows=None) -> torch.Tensor:
        return self.query_states(states, rows)[0]

    def factors(self, states):
        return self._joint(*self.query_states(states))

    def score_block(self, states, rows):
        s, v = self._joint(*self.query_states(states, rows))
        return s @ v.T

    def _joint(self, pred, query):
        """Factors of α_m·(−||j̃ − b||²) + α_n·(W_f c)·b over the items' b = [i ⊕ ī]."""
        s, v = distance_factors(pred, self.item_vec)
        s = s * self.alpha_m
        s[:, :pred.shape[1]] += self.alpha_n * query
        return s, v


def _last_purchase(user, t, purchase):
    """Per time-ordered event: its user's last purchase time strictly before it and at or before it (NaN if none)."""
    n = len(user)
    o = np.lexsort((np.arange(n), user))
    u, tt, p = user[o], t[o], purchase[o]
    idx = np.where(p, np.arange(n), -1)
    start = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1]
    grp = np.repeat(start, np.diff(np.r_[start, n]))
    idx = np.maximum.accumulate(np.where(idx >= grp, idx, -1))
    idx = np.where(idx >= grp, idx, -1)
    after = np.where(idx >= 0, tt[np.maximum(idx, 0)], np.nan)
    before = np.where(np.arange(n) == grp, np.nan, np.r_[np.nan, after[:-1]])
    out_b, out_a = np.empty(n), np.empty(n)
    out_b[o], out_a[o] = before, after
    return out_b, out_a


_COMMON = (
    Param("dim", "int", 128, "size d of the dynamic and static embeddings (the paper's 128)", low=1, high=4096),
    Param("epochs", "int", 50, "passes over the training log, the most with patience (the paper's 50)", low=1),
    Param("lr", "float", 1e-3, "Adam learning rate (the paper's 1e-3)", low=0.0, high=10.0),
    Param("lambda_u", "float", 1.0, "λ_U: weight of the user smoothness loss", low=0.0),
    Param("lambda_i", "float", 1.0, "λ_I: weight of the item smoothness loss", low=0.0),
    Param("max_batch", "int", 256, "t-batches larger than this are cut into pieces (the paper's batch 256; null: "
          "none)", low=1, nullable=True),
    Param("windows", "int", 500, "equal time windows of the training log: one Adam step per window", low=1),
    Param("weight_decay", "float", 1e-5, "Adam weight decay (JODIE's 1e-5)", low=0.0),
    Param("patience", "int", 5, "stop after this many epochs without a better validation NDCG@10 and keep the best "
          "epoch (null: all epochs, last kept)", low=1, nullable=True),
    Param("n_samples", "int", 128, "N: the positive and N - 1 negatives drawn from all items in the NCE loss (the "
          "paper's 128)", low=2),
)


def _variant(label, lambda_m, lambda_n, alpha_m, alpha_n, resource):
    """An ablation as a subclass whose constructor states its own defaults (what its Params say)."""
    def __init__(self, lambda_m=lambda_m, lambda_n=lambda_n, alpha_m=alpha_m, alpha_n=alpha_n, resource=resource,
                 **kw):
        ImnNet.__init__(self, lambda_m=lambda_m, lambda_n=lambda_n, alpha_m=alpha_m, alpha_n=alpha_n,
                        resource=resource, **kw)
    return type(label, (ImnNet,), {"__init__": __init__, "__doc__": f"IMN-Net ablation {label}.",
                                   "__module__": __name__, "__qualname__": label})


# module-level, so a worker process unpickles them by name
ImnMse = _variant("ImnMse", 1.0, 0.0, 1.0, 0.0, True)
ImnNce = _variant("ImnNce", 0.0, 1.0, 0.0, 1.0, True)
ImnNetStar = _variant("ImnNetStar", 1.0, 0.1, 0.9, 0.1, False)


def _spec(name, description, factory):
    init = next(c for c in factory.__mro__ if "__init__" in vars(c)).__init__
    defaults = {k: v.default for k, v in inspect.signature(init).parameters.items()}
    params = _COMMON + (
        Param("lambda_m", "float", defaults["lambda_m"], "λ_m: weight of the MSE loss (Eq. 22)", low=0.0),
        Param("lambda_n", "float", defaults["lambda_n"], "λ_n: weight of the NCE loss (Eq. 22; the paper leaves it "
              "open)", low=0.0),
        Param("alpha_m", "float", defaults["alpha_m"], "α_m: weight of -||j̃ - b||² in the joint discriminator "
              "(Eq. 23)", low=0.0),
        Param("alpha_n", "float", defaults["alpha_n"], "α_n: weight of log f₁ in the joint discriminator (Eq. 23)",
              low=0.0),
        Param("resource", "bool", defaults["resource"], "use the resource-limited branch h^l (Eq. 6) in the "
              "combined user"),
    )
    return ModelSpec(name=name, factory=factory, description=description, params=params)


@hookimpl
def register_models(register):
    register(_spec("imn_net", "IMN-Net: JODIE + resource-limited user branch updated on purchases + mutual-"
                   "information (NCE) estimator; joint discriminator -distance + log f1", ImnNet))
    register(_spec("imn_mse", "IMN-Net ablation IMN_MSE: the MSE part only (no NCE), with the resource branch",
                   ImnMse))
    register(_spec("imn_nce", "IMN-Net ablation IMN_NCE: the NCE part only (no MSE), ranked by log f1", ImnNce))
    register(_spec("imn_net_star", "IMN-Net ablation IMN-Net*: no resource-limited branch", ImnNetStar))
