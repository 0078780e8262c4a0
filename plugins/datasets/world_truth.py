"""The synthetic world's truth: the exact quantities of the process in `plugins.datasets.world`, on demand.

Bounded memory: nothing of size users × items is stored. The truth keeps the world's parameters and the realised
events' *contexts* — each distinct (user, last item before the event) with its number of events — because
p(u, i) ∝ Σ_{events e of u} p(i | x_e) and p(i | x_e) depends on x_e only through (u, last item). `joint_rows`,
`item_given_user_rows`, `log_user_given_item_rows`, `pmi_rows` compute any block of (users × items) on demand, in
float64, from the contexts of those users; p(u) is exact from the event counts; p(i) sums over all contexts,
exactly (float64) up to `EXACT_CELLS` context × item products and otherwise by the simulation's own accumulation of
p(· | x_e) (float32 terms, relative error ~1e-6). The dense `joint()`, `pmi()`, ... remain for small worlds
(memory-guarded).

Exact state truths: p(y | x), λ_u(t) and λ(x, y) = λ_u(t)·p(y | x) at any user-state; the expected number of events
in a window given a state (closed form for the exponential-kernel Hawkes process, `expected_event_counts`) and per
user over [0, days) (`expected_user_counts`). Monte-Carlo: `expected_counts(states, window_end, n_sims)`,
E[ΔN(x, y)] over x's window, simulates the window's event *counts* forward n_sims times (carried-over excitation of
the history + new immigrants + descendants) and, because marks are independent of event times, takes the marks'
part exactly (Rao-Blackwellised): it returns Σ_k P̂(N ≥ k)·π_k(y) with π_k the exact law of the k-th future mark of
the Markov chain started at x; its only error is the Monte-Carlo error of P̂(N ≥ k). `simulate_window` draws full
marked paths (times and marks) for checks.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from harness.plugin import UserStates, csr_ranges, require_memory
from plugins.datasets.world import hawkes_times, sample_marks

_FLOOR = 1e-300
_MAX_REPLICAS = 200_000  # states x simulations simulated at once (memory bound)
BLOCK_CELLS = 1 << 22    # contexts x items held at once by the row blocks (32 MiB in float64)
EXACT_CELLS = 1 << 27    # contexts x items up to which p(i) is recomputed exactly in float64


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


@dataclass(eq=False)
class WorldTruth:
    """The generating process of a synthetic world and its exact (or stated Monte-Carlo) truths.

    The joint p(u, i) ∝ Σ_{events e of u} p(i | x_e) (the expected marks given the realised event times and
    states) is held as the events' contexts (`ctx_user`, `ctx_last`, `ctx_count`: distinct (user, last item), -1
    for an empty history, sorted by user) and computed on demand; a hand-built truth may give the sums densely
    instead (`joint_counts`, users × items). Users are dense indices 0..n_users-1, items 0..n_items-1.
    """

    theta: np.ndarray          # (n_users, d) tastes
    phi: np.ndarray            # (n_items, d) item vectors
    b: np.ndarray              # (n_items,) popularity biases
    mu: np.ndarray             # (n_users,) background rates (events/day, before churn)
    alpha: np.ndarray          # (n_users,) branching ratios
    beta: float                # decay (per day)
    gamma: float               # Markov drift weight
    taste_scale: float
    days: float
    joint_counts: np.ndarray | None = None  # (n_users, n_items) Σ_e p(i | x_e), for hand-built truths
    churn_day: float | None = None
    churn_factor: float = 1.0
    click_prob: np.ndarray | None = None   # impressions layer: true P(click) per event of the log (nan: organic)
    ctx_user: np.ndarray | None = None     # (n_contexts,) the events' distinct (user, last item), sorted by user
    ctx_last: np.ndarray | None = None
    ctx_count: np.ndarray | None = None    # events per context
    sim_item_mass: np.ndarray | None = None  # Σ_e p(· | x_e) accumulated by the simulation (float32 terms)
    # funnel layer (plugins.datasets.funnel): the recaller and the true propensities of every event row
    recall_quality: float | None = None
    recall_size: int | None = None
    recall_bias: np.ndarray | None = None     # (n_items,) (1 − recall_quality)·b_y + the recaller's error ε_y
    recall_prob: np.ndarray | None = None     # p1 per event of the log (nan: organic)
    exposure_prob: np.ndarray | None = None   # p2 = P(exposed | recalled) per event of the log (nan: organic)
    request_user: np.ndarray | None = None    # per funnel request: its user, last organic item before it
    request_last: np.ndarray | None = None
    # resource-limited layer (plugins.datasets.resources): prices, stocks, budgets and the state at every event
    price: np.ndarray | None = None           # (n_items,) item prices (log-normal, median 1)
    stock_full: np.ndarray | None = None      # (n_items,) units in stock at the start of every day
    budget_cap: np.ndarray | None = None      # (n_users,) budget capacities (the budget at time 0)
    budget_rate: np.ndarray | None = None     # (n_users,) budget recovered per day, up to the capacity
    budget_before: np.ndarray | None = None   # per event of the log: the user's budget just before its click
    stock_before: np.ndarray | None = None    # per event of the log: the item's stock just before its click
    purchase_prob: np.ndarray | None = None   # per event: P(purchase | click, state) (nan: purchase rows)
    purchase_base: float | None = None
    purchase_shape: float | None = None
    limit_weight: float | None = None         # a(y; r) factor per binding limit in the click law

    @property
    def n_users(self) -> int:
        return len(self.theta)

    @property
    def n_items(self) -> int:
        return len(self.phi)

    def click_probability(self, event_id) -> np.ndarray:
        """The impressions layer's true click probability of the events `event_id` (positions in the dataset's
        event log; nan for organic events), exact: position_bias^slot · σ(click_bias + click_scale·log(|Y|·p(y|x)))."""
        if self.click_prob is None:
            raise AttributeError("this world has no impressions layer (impressions: false)")
        return self.click_prob[np.asarray(event_id, dtype=np.int64)]

    def recall_propensity(self, request, item) -> np.ndarray:
        """The funnel layer's p1 = P(item recalled | request) of (request, item) pairs, any item (recalled or not):
        min(1, recall_size · softmax_y(recall_quality·log p(y|x) + recall_bias_y))."""
        if self.recall_bias is None:
            raise AttributeError("this world has no funnel layer (funnel: false)")
        from plugins.datasets.funnel import recall_logits

        request, item = np.asarray(request, dtype=np.int64), np.asarray(item, dtype=np.int64)
        if request.shape != item.shape:
            raise ValueError(f"recall_propensity: {len(request)} requests for {len(item)} items; give one per pair")
        out = np.empty(len(request))
        for lo in range(0, len(request), 4096):
            req = request[lo:lo + 4096]
            _, log_q = recall_logits(self, self.request_user[req], self.request_last[req])
            out[lo:lo + 4096] = np.minimum(1.0, self.recall_size * np.exp(log_q[np.arange(len(req)),
                                                                               item[lo:lo + 4096]]))
        return out

    # ------------------------------------------------------------------ the joint p(u, i), by blocks of rows
    def _contexts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.ctx_user is None:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0)
        return (np.asarray(self.ctx_user, dtype=np.int64), np.asarray(self.ctx_last, dtype=np.int64),
                np.asarray(self.ctx_count, dtype=np.float64))

    @cached_property
    def _ctx_ptr(self) -> np.ndarray:
        return np.searchsorted(self._contexts()[0], np.arange(self.n_users + 1))

    @property
    def user_event_counts(self) -> np.ndarray:
        """Number of events of each user (Σ_i of the joint counts), (n_users,)."""
        if self.joint_counts is not None:  # a hand-built table: read afresh (it may be edited in place)
            return self.joint_counts.sum(axis=1)
        return self._ctx_user_counts

    @cached_property
    def _ctx_user_counts(self) -> np.ndarray:
        user, _, count = self._contexts()
        return np.bincount(user, weights=count, minlength=self.n_users).astype(np.float64)

    @property
    def n_events(self) -> float:
        return float(self.user_event_counts.sum())

    def _context_probs(self, ctx: np.ndarray, items) -> np.ndarray:
        """p(items | x) for the contexts `ctx` (positions), float64, normalised over all items."""
        user, last, _ = self._contexts()
        z = self._logits(user[ctx], last[ctx])
        z -= z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
        return np.exp(z[:, items] - lse)

    def joint_count_rows(self, users, items=None) -> np.ndarray:
        """Σ_{events e of u} p(i | x_e) for each u in `users` (repeats allowed) and i in `items` (default all)."""
        users = np.asarray(users, dtype=np.int64)
        items = np.arange(self.n_items) if items is None else np.asarray(items, dtype=np.int64)
        if self.joint_counts is not None:
            return self.joint_counts[users][:, items]
        key = (hashlib.sha1(users.tobytes()).hexdigest(), hashlib.sha1(items.tobytes()).hexdigest())
        memo = self.__dict__.get("_rows_memo")
        if memo is not None and memo[0] == key:  # the truth metrics ask for four tables of one block in a row
            return memo[1].copy()
        out = self._joint_count_block(users, items)
        self.__dict__["_rows_memo"] = (key, out)
        return out.copy()

    def _joint_count_block(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        ptr, ctx = csr_ranges(self._ctx_ptr[users], self._ctx_ptr[users + 1])
        owner = np.repeat(np.arange(len(users)), np.diff(ptr))
        count = self._contexts()[2]
        out = torch.zeros(len(users), len(items), dtype=torch.float64)
        step = max(1, BLOCK_CELLS // max(1, self.n_items))
        for lo in range(0, len(ctx), step):
            c = ctx[lo:lo + step]
            p = self._context_probs(c, items) * count[c][:, None]
            out.index_add_(0, torch.from_numpy(owner[lo:lo + step]), torch.from_numpy(p))
        return out.numpy()

    @property
    def _item_mass(self) -> np.ndarray:
        """Σ_u of the joint counts, (n_items,): exact in float64 up to EXACT_CELLS, else the simulation's sum."""
        if self.joint_counts is not None:
            return self.joint_counts.sum(axis=0)
        return self._ctx_item_mass

    @cached_property
    def _ctx_item_mass(self) -> np.ndarray:
        n_ctx = len(self._contexts()[0])
        if self.sim_item_mass is not None and n_ctx * self.n_items > EXACT_CELLS:
            return np.asarray(self.sim_item_mass, dtype=np.float64)
        count = self._contexts()[2]
        mass = np.zeros(self.n_items)
        step = max(1, BLOCK_CELLS // max(1, self.n_items))
        for lo in range(0, n_ctx, step):
            c = np.arange(lo, min(n_ctx, lo + step))
            mass += count[c] @ self._context_probs(c, slice(None))
        return mass

    def joint_rows(self, users, items=None) -> np.ndarray:
        """p(u, i) for u in `users`, i in `items` (a world without events: uniform p(u) times the first-event law
        p(i | u))."""
        total = self.n_events
        if total == 0:
            return self.item_given_user_rows(users, items) / self.n_users
        return self.joint_count_rows(users, items) / total

    def item_given_user_rows(self, users, items=None) -> np.ndarray:
        """p(i | u) = p(u, i) / p(u); for a user without events, the law of its first event's item
        (p(y | x = empty history)), so every full row sums to 1."""
        users = np.asarray(users, dtype=np.int64)
        n = self.user_event_counts[users]
        out = self.joint_count_rows(users, items) / np.maximum(n, _FLOOR)[:, None]
        idle = n == 0
        if idle.any():
            sel = slice(None) if items is None else np.asarray(items, dtype=np.int64)
            out[idle] = _softmax_rows(self._base_logits(users[idle]))[:, sel]
        return out

    def item_marginal(self) -> np.ndarray:
        """p(i) = Σ_u p(u, i), (n_items,)."""
        total = self.n_events
        if total > 0:
            return self._item_mass / total
        mass = np.zeros(self.n_items)
        step = max(1, BLOCK_CELLS // max(1, self.n_items))
        for lo in range(0, self.n_users, step):
            mass += _softmax_rows(self._base_logits(np.arange(lo, min(self.n_users, lo + step)))).sum(axis=0)
        return mass / self.n_users

    def _item_marginal_at(self, items) -> np.ndarray:
        p_i = self.item_marginal()
        return p_i if items is None else p_i[np.asarray(items, dtype=np.int64)]

    def user_marginal(self) -> np.ndarray:
        """p(u) = (number of events of u) / (number of events)."""
        total = self.n_events
        if total == 0:
            return np.full(self.n_users, 1.0 / self.n_users)
        return self.user_event_counts / total

    def log_joint_rows(self, users, items=None) -> np.ndarray:
        return np.log(np.maximum(self.joint_rows(users, items), _FLOOR))

    def log_item_given_user_rows(self, users, items=None) -> np.ndarray:
        return np.log(np.maximum(self.item_given_user_rows(users, items), _FLOOR))

    def log_user_given_item_rows(self, users, items=None) -> np.ndarray:
        """log p(u | i) = log p(u, i) - log p(i) (users without events get the floor)."""
        p_i = self._item_marginal_at(items)
        j = self.joint_rows(users, items)
        return np.log(np.maximum(j / np.maximum(p_i, _FLOOR)[None, :], _FLOOR))

    def pmi_rows(self, users, items=None) -> np.ndarray:
        """log p(u, i) / (p(u) p(i)) = log p(i | u) - log p(i) (with `item_given_user`'s convention for users
        without events)."""
        p_i = self._item_marginal_at(items)
        return self.log_item_given_user_rows(users, items) - np.log(np.maximum(p_i, _FLOOR))[None, :]

    # the dense tables (users × items), for small worlds and checks
    def _all_users(self, what: str) -> np.ndarray:
        require_memory(2 * 8.0 * self.n_users * self.n_items,
                       f"the dense {what} table ({self.n_users:,} × {self.n_items:,} float64)",
                       f"use {what}_rows(users, items) for a block of users and items")
        return np.arange(self.n_users)

    def joint(self) -> np.ndarray:
        """p(u, i), (n_users, n_items) float64 summing to 1."""
        return self.joint_rows(self._all_users("joint"))

    def log_joint(self) -> np.ndarray:
        return self.log_joint_rows(self._all_users("log_joint"))

    def item_given_user(self) -> np.ndarray:
        return self.item_given_user_rows(self._all_users("item_given_user"))

    def log_item_given_user(self) -> np.ndarray:
        return self.log_item_given_user_rows(self._all_users("log_item_given_user"))

    def log_user_given_item(self) -> np.ndarray:
        return self.log_user_given_item_rows(self._all_users("log_user_given_item"))

    def pmi(self) -> np.ndarray:
        return self.pmi_rows(self._all_users("pmi"))

    # --------------------------------------------------------------------------- user-state truths
    def _base_logits(self, users: np.ndarray) -> np.ndarray:
        """taste_scale·θ_u·φ_y + b_y for each user in `users`."""
        return self.taste_scale * (self.theta[users] @ self.phi.T) + self.b[None, :]

    @staticmethod
    def _last_items(states: UserStates) -> np.ndarray:
        """The last history item of each state, -1 for an empty history."""
        ptr = np.asarray(states.hist_ptr)
        has = ptr[1:] > ptr[:-1]
        last = np.full(len(states), -1, dtype=np.int64)
        last[has] = np.asarray(states.hist_item)[ptr[1:][has] - 1]
        return last

    def _logits(self, users: np.ndarray, last: np.ndarray) -> np.ndarray:
        q = self.taste_scale * self.theta[users]
        has = last >= 0
        if self.gamma != 0 and has.any():
            q = q.copy()
            q[has] += self.gamma * self.phi[last[has]]
        return q @ self.phi.T + self.b[None, :]

    def log_item_probs(self, states: UserStates, chunk: int = 8192) -> np.ndarray:
        """log p(y | x) for each state x, (n_states, n_items)."""
        users, last = np.asarray(states.user, dtype=np.int64), self._last_items(states)
        out = np.empty((len(users), self.n_items))
        for lo in range(0, len(users), chunk):
            z = self._logits(users[lo:lo + chunk], last[lo:lo + chunk])
            z -= z.max(axis=1, keepdims=True)
            out[lo:lo + chunk] = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return out

    def item_probs(self, states: UserStates) -> np.ndarray:
        """p(y | x) for each state x, (n_states, n_items): softmax of taste + popularity + drift from the
        history's last item."""
        return np.exp(self.log_item_probs(states))


    def background(self, users: np.ndarray, t: np.ndarray) -> np.ndarray:
        """μ_u(t) (churn applied)."""
        mu = self.mu[np.asarray(users, dtype=np.int64)]
        if self.churn_day is None:
            return mu
        return np.where(np.asarray(t) >= self.churn_day, mu * self.churn_factor, mu)

    def _excitation_sum(self, states: UserStates) -> np.ndarray:
        """Σ_{history events j, t_j < cut} e^{−β(cut − t_j)} per state."""
        lengths = np.diff(np.asarray(states.hist_ptr))
        owner = np.repeat(np.arange(len(states)), lengths)
        cut = np.asarray(states.time, dtype=np.float64)[owner]
        ht = np.asarray(states.hist_time, dtype=np.float64)
        w = np.where(ht < cut, np.exp(-self.beta * np.clip(cut - ht, 0, None)), 0.0)
        return np.bincount(owner, weights=w, minlength=len(states))

    def intensity(self, states: UserStates) -> np.ndarray:
        """λ_u(t) at each state's cut t = states.time[s] from its own history (events with t_j < t count),
        (n_states,)."""
        users = np.asarray(states.user, dtype=np.int64)
        return (self.background(users, states.time)
                + self.alpha[users] * self.beta * self._excitation_sum(states))

    def pair_intensity(self, states: UserStates) -> np.ndarray:
        """λ(x, y) = λ_u(t)·p(y | x), (n_states, n_items)."""
        return self.intensity(states)[:, None] * self.item_probs(states)

    def expected_event_counts(self, states: UserStates, window_end) -> np.ndarray:
        """Exact E[number of events of x's user in [states.time[s], window_end[s])] given x's history, (n_states,).

        Closed form: with X(t) the excitation part of λ, dX/dt = −β(1−α)X + αβμ(t), solved piecewise over
        the (churn) pieces of μ(t); the count is ∫ μ(t) + X(t) dt."""
        users = np.asarray(states.user, dtype=np.int64)
        t0 = np.asarray(states.time, dtype=np.float64)
        t1 = np.maximum(np.asarray(window_end, dtype=np.float64), t0)
        a, mu = self.alpha[users], self.mu[users]
        x0 = a * self.beta * self._excitation_sum(states)
        return self._expected_count(mu, a, t0, t1, x0)

    def _expected_count(self, mu, a, t0, t1, x0):
        kappa = self.beta * (1.0 - a)
        if self.churn_day is None:
            pieces = [(t0, t1, mu)]
        else:
            c = self.churn_day
            mid = np.clip(c, t0, t1)
            pieces = [(t0, mid, mu), (mid, t1, mu * self.churn_factor)]
        total, x = np.zeros_like(t0), x0
        for lo, hi, rate in pieces:
            d = hi - lo
            x_eq = a * rate / (1.0 - a)
            decay = np.exp(-kappa * d)
            total = total + rate * d + x_eq * d + (x - x_eq) * (1.0 - decay) / kappa
            x = x_eq + (x - x_eq) * decay
        return total

    def expected_user_counts(self) -> np.ndarray:
        """Exact E[number of events of each user over [0, days)] (no history before 0), (n_users,).
        Tends to μ_u·days/(1−α_u) for a long span without churn."""
        n = self.n_users
        return self._expected_count(self.mu, self.alpha, np.zeros(n), np.full(n, self.days), np.zeros(n))

    def _state_replicas(self, states, window_end, n_sims, lo, hi):
        users = np.asarray(states.user, dtype=np.int64)[lo:hi]
        s = np.repeat(np.arange(hi - lo), n_sims)
        start = np.asarray(states.time, dtype=np.float64)[lo:hi][s]
        end = np.maximum(np.asarray(window_end, dtype=np.float64)[lo:hi][s], start)
        return users, s, start, end

    def _chunks(self, n_states: int, n_sims: int):
        step = max(1, _MAX_REPLICAS // max(n_sims, 1))
        return [(lo, min(n_states, lo + step)) for lo in range(0, n_states, step)]

    def _simulate_chunk(self, rng, states, window_end, n_sims, lo, hi, carried_all):
        users, s, start, end = self._state_replicas(states, window_end, n_sims, lo, hi)
        rep, t = hawkes_times(rng, self.mu[users][s], self.alpha[users][s], self.beta, start, end,
                               carried_all[lo:hi][s], self.churn_day, self.churn_factor)
        return users, rep, t

    def simulate_event_counts(self, states: UserStates, window_end, n_sims: int = 200, seed: int = 0) -> np.ndarray:
        """Monte-Carlo event counts of each state's user in [states.time[s], window_end[s]), (n_states, n_sims):
        n_sims forward simulations of the Hawkes process given the history (carried-over excitation: each
        history event j still has Poisson(α e^{−β(T−t_j)}) children to come, at T + Exp(β); plus immigrants
        and all descendants). Deterministic per seed."""
        rng = np.random.default_rng([seed, 0])
        carried = self.alpha[np.asarray(states.user, dtype=np.int64)] * self._excitation_sum(states)
        out = np.zeros((len(states), n_sims), dtype=np.int64)
        for lo, hi in self._chunks(len(states), n_sims):
            _, rep, _ = self._simulate_chunk(rng, states, window_end, n_sims, lo, hi, carried)
            out[lo:hi] = np.bincount(rep, minlength=(hi - lo) * n_sims).reshape(hi - lo, n_sims)
        return out

    def expected_counts(self, states: UserStates, window_end, n_sims: int = 200, seed: int = 0,
                        tol: float = 1e-12) -> np.ndarray:
        """E[ΔN(x, y)]: expected number of times x's user consumes y in [states.time[s], window_end[s]),
        (n_states, n_items). A Monte-Carlo estimate from `n_sims` forward simulations of the event counts
        (`simulate_event_counts`, same seed); the marks are taken exactly: event times and marks are
        independent, so E[ΔN(x, y)] = Σ_{k≥1} P(N ≥ k)·π_k(y) with π_1 = p(·|x) and π_{k+1} = π_k P_u (the
        user's Markov transition matrix), and only P(N ≥ k) is estimated (by its n_sims empirical frequency).
        Row sums are the MC mean event counts. Once π_k has converged (L1 change < tol) its tail is summed
        in one step."""
        counts = self.simulate_event_counts(states, window_end, n_sims, seed)
        return self._mark_expectation(states, counts, tol)

    def _mark_expectation(self, states: UserStates, counts: np.ndarray, tol: float) -> np.ndarray:
        """Σ_k P̂(N ≥ k) π_k for each state, with P̂ from the simulated counts (n_states, n_sims)."""
        n_states, n_sims = counts.shape
        out = np.zeros((n_states, self.n_items))
        if n_states == 0:
            return out
        users = np.asarray(states.user, dtype=np.int64)
        max_n = counts.max(axis=1)
        # survival[s, k-1] = P̂(N ≥ k), k = 1..max(max_n)
        kmax = int(max_n.max())
        if kmax == 0:
            return out
        hist = _row_bincount(counts, kmax + 1)
        surv = (hist[:, ::-1].cumsum(axis=1)[:, ::-1][:, 1:]) / n_sims  # (n_states, kmax)
        mean_n = counts.mean(axis=1)
        # P_u[z, y] = w_u[y] K[z, y] / Z_u[z], w_u = exp(base logits), K = exp(γ φ_z·φ_y) (rows rescaled).
        require_memory(2 * 8.0 * self.n_items ** 2, f"expected_counts' item-to-item kernel ({self.n_items:,}² float64)",
                       "lower n_items")
        g = self.gamma * (self.phi @ self.phi.T)
        kern = np.exp(g - g.max(axis=1, keepdims=True))
        active = np.flatnonzero(max_n > 0)
        chunk = 4096
        for lo in range(0, len(active), chunk):
            rows = active[lo:lo + chunk]
            c = self._base_logits(users[rows])
            w = np.exp(c - c.max(axis=1, keepdims=True))
            z = w @ kern.T                                   # Z[s, z] = Σ_y w[s, y] K[z, y]
            pi = np.exp(self.log_item_probs(states.take(rows)))
            acc = np.zeros_like(pi)
            done_mass = np.zeros(len(rows))                  # Σ_{k' ≤ k} P̂(N ≥ k')
            alive = np.arange(len(rows))
            k = 1
            while len(alive):
                p_ge = surv[rows[alive], k - 1]
                acc[alive] += p_ge[:, None] * pi[alive]
                done_mass[alive] += p_ge
                keep = max_n[rows[alive]] > k
                if not keep.any():
                    break
                alive = alive[keep]
                nxt = w[alive] * ((pi[alive] / z[alive]) @ kern)
                nxt /= nxt.sum(axis=1, keepdims=True)
                converged = np.abs(nxt - pi[alive]).sum(axis=1) < tol
                pi[alive] = nxt
                if converged.any():  # the rest of the chain is stationary: add the remaining mass at once
                    cv = alive[converged]
                    rest = mean_n[rows[cv]] - done_mass[cv]
                    acc[cv] += rest[:, None] * pi[cv]
                    alive = alive[~converged]
                k += 1
            out[rows] = acc
        return out

    def simulate_window(self, states: UserStates, window_end, n_sims: int = 200, seed: int = 0):
        """Full marked forward simulations of each state's window: arrays (state, sim, time, item) of every
        simulated event. Times are those of `simulate_event_counts` with the same seed; marks are drawn by
        Gumbel-max along each path from the Markov model started at the history's last item."""
        rng = np.random.default_rng([seed, 0])
        mark_rng = np.random.default_rng([seed, 1])
        carried = self.alpha[np.asarray(states.user, dtype=np.int64)] * self._excitation_sum(states)
        last_all = self._last_items(states)
        out_s, out_r, out_t, out_y = [], [], [], []
        for lo, hi in self._chunks(len(states), n_sims):
            users, rep, t = self._simulate_chunk(rng, states, window_end, n_sims, lo, hi, carried)
            rep_user = np.repeat(users, n_sims)
            rep_last = np.repeat(last_all[lo:hi], n_sims)
            order, y = sample_marks(mark_rng, self, rep, t, rep_user, rep_last)
            out_s.append(lo + rep[order] // n_sims)
            out_r.append(rep[order] % n_sims)
            out_t.append(t[order])
            out_y.append(y)
        return (np.concatenate(out_s), np.concatenate(out_r), np.concatenate(out_t), np.concatenate(out_y))


def _row_bincount(counts: np.ndarray, width: int) -> np.ndarray:
    n = counts.shape[0]
    flat = (np.arange(n)[:, None] * width + np.minimum(counts, width - 1)).ravel()
    return np.bincount(flat, minlength=n * width).reshape(n, width)
