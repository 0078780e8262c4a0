"""Dataset plugin `synthetic`: the embedded default, a generated world whose truth is known.

Users u get a taste θ_u ~ N(0, I/d) and a Hawkes activity process with intensity
λ_u(t) = μ_u(t) + Σ_{t_j<t} α_u β e^{−β(t−t_j)}, where μ_u is log-normal (heavy-tailed activity, mean
`mean_rate`), α_u ∈ (0, 0.9) is a per-user branching ratio (mean `branching`), β is `decay` (per day) and,
optionally, μ_u(t) is multiplied by `churn_factor` from `churn_day` on. Items y get φ_y ~ N(0, I/d) and a
popularity bias b_y ~ N(0, pop_sigma²). Event times are simulated over [0, days) with the cluster (branching)
representation — Poisson immigrants, then generation after generation of Poisson(α_u) children at Exp(β)
offsets, vectorised over all users (the only Python loop is over generations). Marks are then drawn along each
user's time-ordered events (a loop over the event position, vectorised over users) by Gumbel-max from
p(y | x) = softmax_y(taste_scale·θ_u·φ_y + b_y + γ·φ_last(x)·φ_y) with x the history so far (no γ term at a
user's first event). `dataset.truth` is a `WorldTruth`. Exact truths: the parameters; p(y | x) and
λ_u(t) and λ(x, y) = λ_u(t)·p(y | x) at any user-state; the joint p(u, i) ∝ Σ_{events e of u} p(i | x_e)
(accumulated during the simulation, so it is exact for the data at hand) with p(u), p(i), log p(u,i),
log p(i|u), log p(u|i) and the PMI; the expected number of events in a window given a state (closed form for the
exponential-kernel Hawkes process, `expected_event_counts`) and per user over [0, days) (`expected_user_counts`).
Monte-Carlo: `expected_counts(states, window_end, n_sims)`, E[ΔN(x, y)] over x's window, simulates the window's
event *counts* forward n_sims times (carried-over excitation of the history + new immigrants + descendants) and,
because marks are independent of event times, takes the marks' part exactly (Rao-Blackwellised): it returns
Σ_k P̂(N ≥ k)·π_k(y) with π_k the exact law of the k-th future mark of the Markov chain started at x. Its only error
is the Monte-Carlo error of P̂(N ≥ k) from n_sims paths (its row sums are the MC mean event count).
`simulate_window` draws full marked paths (times and Gumbel-max marks) for checks.

Impressions layer (`impressions: true`, DMR): `make_impressions` adds exposure requests on top of the organic
events — recall from a mix of p(y|x) and popularity, `slots` items shown per request, clicks Bernoulli with the
exact probability position_bias^slot · σ(click_bias + click_scale·log(|Y|·p(y|x))). The log then has events
organic / impression / click and a feature `slot`; `truth.click_probability(event_id)` gives each exposure's
click probability (kept in the truth, not in the data). The organic events and every other truth are those of
the same world without the layer. Splits other than `impressions` see exposures as events too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.plugin import Dataset, DatasetSpec, Interactions, Param, UserStates, hookimpl, require_memory

_FLOOR = 1e-300
_ALPHA_MAX = 0.9
_ALPHA_CONCENTRATION = 10.0
_MAX_REPLICAS = 200_000  # states x simulations simulated at once (memory bound)


# ----------------------------------------------------------------------------------------- simulation core

def _immigrants(rng, mu, a, b, churn_day, churn_factor):
    """Poisson immigrants of background μ(t) on [a[r], b[r]) for every replica r: (replica, time)."""
    pieces = [(a, b, mu)] if churn_day is None else [
        (a, np.maximum(a, np.minimum(b, churn_day)), mu),
        (np.minimum(b, np.maximum(a, churn_day)), b, mu * churn_factor)]
    reps, times = [], []
    for lo, hi, rate in pieces:
        n = rng.poisson(rate * np.clip(hi - lo, 0, None))
        r = np.repeat(np.arange(len(mu)), n)
        reps.append(r)
        times.append(lo[r] + rng.random(len(r)) * (hi - lo)[r])
    return np.concatenate(reps), np.concatenate(times)


def _hawkes_times(rng, mu, alpha, beta, start, end, carried, churn_day=None, churn_factor=1.0):
    """Event times of independent Hawkes processes on [start[r], end[r]) for replicas r, by the cluster
    representation. `carried[r]` is the expected number of not-yet-born children of the past (the
    excitation carried over from a history): Poisson(carried) extra first-generation events at start + Exp(β).
    Returns (replica, time), unsorted. Loops over generations only."""
    rep, t = _immigrants(rng, mu, start, end, churn_day, churn_factor)
    n_c = rng.poisson(carried)
    rep_c = np.repeat(np.arange(len(mu)), n_c)
    t_c = start[rep_c] + rng.exponential(1.0 / beta, len(rep_c))
    keep = t_c < end[rep_c]
    gen_rep, gen_t = np.concatenate([rep, rep_c[keep]]), np.concatenate([t, t_c[keep]])
    out_rep, out_t = [gen_rep], [gen_t]
    while len(gen_rep):
        k = rng.poisson(alpha[gen_rep])
        child_rep = np.repeat(gen_rep, k)
        child_t = np.repeat(gen_t, k) + rng.exponential(1.0 / beta, len(child_rep))
        keep = child_t < end[child_rep]  # children only come later, so a dropped one has no descendants inside
        gen_rep, gen_t = child_rep[keep], child_t[keep]
        out_rep.append(gen_rep)
        out_t.append(gen_t)
    return np.concatenate(out_rep), np.concatenate(out_t)


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


# --------------------------------------------------------------------------------------------- truth

@dataclass(eq=False)
class WorldTruth:
    """The generating process of a synthetic world and its exact (or stated Monte-Carlo) truths.

    `joint_counts[u, i]` = Σ_{events e of u} p(i | x_e) (the expected marks given the realised event times
    and states); `joint()` normalises it. Users are dense indices 0..n_users-1, items 0..n_items-1.
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
    joint_counts: np.ndarray   # (n_users, n_items) Σ_e p(i | x_e)
    churn_day: float | None = None
    churn_factor: float = 1.0
    click_prob: np.ndarray | None = None   # impressions layer: true P(click) per event of the log (nan: organic)

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

    # ----------------------------------------------------------------------------- the joint p(u, i)
    def joint(self) -> np.ndarray:
        """p(u, i), (n_users, n_items) float64 summing to 1 (a world without events: uniform p(u) times the
        first-event law p(i | u))."""
        total = self.joint_counts.sum()
        if total == 0:
            return self.item_given_user() / self.n_users
        return self.joint_counts / total

    def user_marginal(self) -> np.ndarray:
        """p(u) = (number of events of u) / (number of events)."""
        return self.joint().sum(axis=1)

    def item_marginal(self) -> np.ndarray:
        """p(i) = Σ_u p(u, i)."""
        return self.joint().sum(axis=0)

    def log_joint(self) -> np.ndarray:
        return np.log(np.maximum(self.joint(), _FLOOR))

    def item_given_user(self) -> np.ndarray:
        """p(i | u) = p(u, i) / p(u); for a user without events, the law of its first event's item
        (p(y | x = empty history)), so every row sums to 1."""
        n = self.joint_counts.sum(axis=1, keepdims=True)
        out = self.joint_counts / np.maximum(n, _FLOOR)
        idle = n[:, 0] == 0
        if idle.any():
            out[idle] = _softmax_rows(self._base_logits(np.flatnonzero(idle)))
        return out

    def log_item_given_user(self) -> np.ndarray:
        return np.log(np.maximum(self.item_given_user(), _FLOOR))

    def log_user_given_item(self) -> np.ndarray:
        """log p(u | i) = log p(u, i) - log p(i) (users without events get the floor)."""
        j = self.joint()
        return np.log(np.maximum(j / np.maximum(j.sum(axis=0, keepdims=True), _FLOOR), _FLOOR))

    def pmi(self) -> np.ndarray:
        """log p(u, i) / (p(u) p(i)) = log p(i | u) - log p(i) (with `item_given_user`'s convention for
        users without events)."""
        return self.log_item_given_user() - np.log(np.maximum(self.item_marginal(), _FLOOR))[None, :]

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
        rep, t = _hawkes_times(rng, self.mu[users][s], self.alpha[users][s], self.beta, start, end,
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
            order, y = _sample_marks(mark_rng, self, rep, t, rep_user, rep_last)
            out_s.append(lo + rep[order] // n_sims)
            out_r.append(rep[order] % n_sims)
            out_t.append(t[order])
            out_y.append(y)
        return (np.concatenate(out_s), np.concatenate(out_r), np.concatenate(out_t), np.concatenate(out_y))


def _row_bincount(counts: np.ndarray, width: int) -> np.ndarray:
    n = counts.shape[0]
    flat = (np.arange(n)[:, None] * width + np.minimum(counts, width - 1)).ravel()
    return np.bincount(flat, minlength=n * width).reshape(n, width)


def _sample_marks(rng, truth: WorldTruth, rep, t, rep_user, rep_last, accumulate=None):
    """Draw the mark of every event of every replica in time order by Gumbel-max from p(y | x).
    Loops over the event position j, vectorised over all replicas that have a j-th event.
    Returns (order, items) with order the (replica, time) sort of the events and items in that order.
    If `accumulate` (n_users, n_items) is given, adds p(·|x_e) to accumulate[user of e] for every event."""
    order = np.lexsort((t, rep))
    n_rep = len(rep_user)
    counts = np.bincount(rep, minlength=n_rep)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    by_count = np.argsort(-counts, kind="stable")
    n_with = np.searchsorted(-counts[by_count], -np.arange(1, counts.max(initial=0) + 1), side="right")
    items = np.empty(len(rep), dtype=np.int64)
    last = rep_last.copy()
    for j, n_j in enumerate(n_with):
        act = by_count[:n_j]
        logits = truth._logits(rep_user[act], last[act])
        if accumulate is not None:
            accumulate[rep_user[act]] += _softmax_rows(logits.copy())
        y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
        items[start[act] + j] = y
        last[act] = y
    return order, items


# ------------------------------------------------------------------------------------------- generator

def make_world(n_users: int = 2000, n_items: int = 500, dim: int = 16, days: float = 60.0, mean_rate: float = 0.3,
               rate_sigma: float = 1.0, branching: float = 0.5, decay: float = 1.0, pop_sigma: float = 1.0,
               taste_scale: float = 3.0, drift: float = 1.0, churn_day: float | None = None,
               churn_factor: float = 0.2, seed: int = 0):
    """Simulate the world: (user, item, time) arrays sorted by time, and its WorldTruth."""
    if not 0 <= branching < _ALPHA_MAX:
        raise ValueError(f"branching must be in [0, {_ALPHA_MAX}), got {branching}")
    require_memory(8.0 * n_users * n_items + 8.0 * (n_users + n_items) * dim,
                   f"the synthetic world (its p(u, i) table: n_users × n_items = {n_users:,} × {n_items:,} float64)",
                   "lower n_users or n_items")
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((n_users, dim)) / np.sqrt(dim)
    phi = rng.standard_normal((n_items, dim)) / np.sqrt(dim)
    b = rng.standard_normal(n_items) * pop_sigma
    mu = mean_rate * np.exp(rate_sigma * rng.standard_normal(n_users) - rate_sigma ** 2 / 2)
    if branching > 0:
        m = branching / _ALPHA_MAX
        alpha = _ALPHA_MAX * rng.beta(_ALPHA_CONCENTRATION * m, _ALPHA_CONCENTRATION * (1 - m), n_users)
    else:
        alpha = np.zeros(n_users)
    users_idx = np.arange(n_users)
    rep, t = _hawkes_times(rng, mu, alpha, decay, np.zeros(n_users), np.full(n_users, float(days)),
                           np.zeros(n_users), churn_day, churn_factor)
    truth = WorldTruth(theta=theta, phi=phi, b=b, mu=mu, alpha=alpha, beta=float(decay), gamma=float(drift),
                       taste_scale=float(taste_scale), days=float(days), joint_counts=np.zeros((n_users, n_items)),
                       churn_day=churn_day, churn_factor=float(churn_factor))
    order, items = _sample_marks(rng, truth, rep, t, users_idx, np.full(n_users, -1), accumulate=truth.joint_counts)
    user, time = rep[order], t[order]
    by_time = np.lexsort((user, time))
    return user[by_time], items[by_time], time[by_time], truth


def last_items_before(user, item, time, q_user, q_time) -> np.ndarray:
    """For each query (q_user[r], q_time[r]) the item of that user's latest event with time < q_time[r], -1 if
    none; one searchsorted over an exact (user, time-rank) key."""
    order = np.lexsort((time, user))
    su, st, si = user[order], time[order], item[order]
    grid = np.unique(np.concatenate([st, q_time]))
    width = np.int64(len(grid) + 2)
    key = su.astype(np.int64) * width + np.searchsorted(grid, st) + 1
    q = q_user.astype(np.int64) * width
    hi = np.searchsorted(key, q + np.searchsorted(grid, q_time) + 1, side="left")
    has = hi > np.searchsorted(key, q, side="left")
    return np.where(has, si[np.maximum(hi - 1, 0)], -1)


def make_impressions(truth: WorldTruth, user, item, time, n_requests: int, slots: int, position_bias: float,
                     click_bias: float, click_scale: float, recall_quality: float, seed: int, chunk: int = 4096):
    """The impressions layer (DMR): a recall→exposure→click funnel on top of the organic events.

    `n_requests` requests at uniform times in [0, days), each for a user drawn ∝ μ_u + mean(μ) (active users
    see more ads). Recall: `slots` distinct items drawn without replacement by Gumbel-top-k from
    softmax(recall_quality·log p(y|x) + (1 − recall_quality)·b_y) (a mix of a personalised and a popularity
    recaller), exposed in slots 0.. by that draw's order. Click: Bernoulli with the exact probability
    position_bias^slot · σ(click_bias + click_scale·log(|Y|·p(y|x))), x the user's organic history before the
    request (its last item drives the drift). Returns (user, item, time, slot, clicked, click_prob) of the
    exposures, in request order."""
    rng = np.random.default_rng([seed, 11])
    w = truth.mu + truth.mu.mean()
    r_user = rng.choice(truth.n_users, size=n_requests, p=w / w.sum())
    r_time = rng.random(n_requests) * truth.days
    last = last_items_before(user, item, time, r_user, r_time)
    k = min(slots, truth.n_items)
    sel = np.empty((n_requests, k), dtype=np.int64)
    logp_sel = np.empty((n_requests, k))
    for lo in range(0, n_requests, chunk):
        z = truth._logits(r_user[lo:lo + chunk], last[lo:lo + chunk])
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        recall = recall_quality * logp + (1.0 - recall_quality) * truth.b[None, :] + rng.gumbel(size=logp.shape)
        top = np.argpartition(-recall, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(recall, top, 1), axis=1, kind="stable"), 1)
        sel[lo:lo + chunk] = top
        logp_sel[lo:lo + chunk] = np.take_along_axis(logp, top, 1)
    slot = np.broadcast_to(np.arange(k), (n_requests, k))
    p = position_bias ** slot / (1.0 + np.exp(-(click_bias + click_scale * (logp_sel + np.log(truth.n_items)))))
    clicked = rng.random(p.shape) < p
    return (np.repeat(r_user, k), sel.ravel(), np.repeat(r_time, k), slot.ravel().astype(np.int64), clicked.ravel(),
            p.ravel())


def make_world_dataset(impressions: bool = False, n_requests: int | None = None, slots: int = 5,
                       position_bias: float = 0.7, click_bias: float = -1.0, click_scale: float = 1.0,
                       recall_quality: float = 0.5, **params) -> Dataset:
    """The `synthetic` factory: a Dataset (time unit "day") with `truth` set to its WorldTruth. With
    `impressions`, exposures (event `impression` / `click`, feature `slot`) join the organic events (event
    `organic`), and `truth.click_probability` knows each exposure's click probability."""
    user, item, time, truth = make_world(**params)
    extra: dict = {}
    if impressions:
        n_req = int(n_requests) if n_requests is not None else 5 * truth.n_users
        iu, ii, it, islot, iclk, ip = make_impressions(truth, user, item, time, n_req, slots, position_bias,
                                                       click_bias, click_scale, recall_quality,
                                                       params.get("seed", 0))
        n_org = len(user)
        user, item, time = np.concatenate([user, iu]), np.concatenate([item, ii]), np.concatenate([time, it])
        event = np.concatenate([np.full(n_org, "organic", dtype=object),
                                np.where(iclk, "click", "impression").astype(object)])
        slot = np.concatenate([np.full(n_org, -1, dtype=np.int64), islot])
        prob = np.concatenate([np.full(n_org, np.nan), ip])
        by_time = np.lexsort((np.arange(len(user)), user, time))
        user, item, time = user[by_time], item[by_time], time[by_time]
        truth.click_prob = prob[by_time]
        extra = {"event": event[by_time], "features": {"slot": slot[by_time]}}
        params = dict(params, impressions=True, n_requests=n_req, slots=slots, position_bias=position_bias,
                      click_bias=click_bias, click_scale=click_scale, recall_quality=recall_quality)
    x = Interactions(user=user.astype(np.int64), item=item.astype(np.int64), time=time.astype(np.float64),
                     n_users=truth.n_users, n_items=truth.n_items, time_unit="day", **extra)
    return Dataset(name="synthetic", interactions=x,
                   user_ids=np.array([f"u{i}" for i in range(truth.n_users)], dtype=object),
                   item_ids=np.array([f"i{i}" for i in range(truth.n_items)], dtype=object),
                   meta={"source": "matchbench synthetic world", "licence": "generated (no restriction)",
                         "params": dict(params), "time_unit": "day"},
                   truth=truth)


PARAMS = (
    Param("n_users", "int", 2000, "number of users", low=1),
    Param("n_items", "int", 500, "number of items", low=1),
    Param("dim", "int", 16, "dimension d of tastes θ_u and item vectors φ_y", low=1),
    Param("days", "float", 60.0, "observation span in days (times in [0, days))", low=1e-9),
    Param("mean_rate", "float", 0.3, "mean background rate μ_u (events/user/day)", low=0.0),
    Param("rate_sigma", "float", 1.0, "log-normal sigma of μ_u (heavy-tailed activity)", low=0.0),
    Param("branching", "float", 0.5, "mean branching ratio α_u (per-user α_u drawn in (0, 0.9))",
          low=0.0, high=0.85),
    Param("decay", "float", 1.0, "Hawkes decay β (per day)", low=1e-9),
    Param("pop_sigma", "float", 1.0, "std of the item popularity bias b_y", low=0.0),
    Param("taste_scale", "float", 3.0, "multiplier on θ_u·φ_y in p(y|x)"),
    Param("drift", "float", 1.0, "Markov drift weight γ on φ_last·φ_y in p(y|x)"),
    Param("churn_day", "float", None, "if set, μ_u is multiplied by churn_factor from this day on",
          nullable=True),
    Param("churn_factor", "float", 0.2, "background multiplier after churn_day", low=0.0),
    Param("seed", "int", 0, "random seed (everything is deterministic per seed)", low=0, high=2**32 - 1),
    Param("impressions", "bool", False, "add the impressions layer (DMR): exposures with click labels from a known "
                                        "click model; events organic / impression / click, feature slot"),
    Param("n_requests", "int", None, "impressions: number of exposure requests (default 5 per user)", low=1,
          nullable=True),
    Param("slots", "int", 5, "impressions: items exposed per request (slots 0..slots-1)", low=1),
    Param("position_bias", "float", 0.7, "impressions: P(click) is multiplied by position_bias^slot", low=0.0,
          high=1.0),
    Param("click_bias", "float", -1.0, "impressions: a in σ(a + b·log(|Y|·p(y|x)))"),
    Param("click_scale", "float", 1.0, "impressions: b in σ(a + b·log(|Y|·p(y|x)))"),
    Param("recall_quality", "float", 0.5, "impressions: recall draws from softmax(q·log p(y|x) + (1-q)·b_y)",
          low=0.0, high=1.0),
)


@hookimpl
def register_datasets(register):
    register(DatasetSpec(
        name="synthetic", factory=make_world_dataset, params=PARAMS, provides=("truth",),
        description="generated world with known truth: Hawkes activity per user, Markov-drift softmax marks; "
                    "dataset.truth gives p(u,i), p(y|x), λ(x,y) and expected window counts"))
