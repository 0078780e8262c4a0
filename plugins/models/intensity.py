"""User-intensity priors λ(x) for the marked-TPP decomposition λ(x, y) = λ(x)·p(y | x) (RIM, Eq. 5).

Three priors, each `fit(train, ctx)` then `log_intensity(states) -> (n_states,)`, vectorised over states:

- `PopPrior` (RNN-Pop): λ(x) = max(floor, |history of x|), floor 0.01 as the authors do.
- `HawkesPrior` (RNN-Hawkes): a univariate Hawkes process shared by all users with a sum of R exponential kernels
      λ(t) = μ + Σ_{j: t_j < t} Σ_r α_r φ_r(t − t_j),   φ_r(Δ) = (1/s_r) e^{−Δ/s_r},   μ, α ≥ 0,
  with R (= 50) kernels. `kernel_range: paper` (the default; RIM Sec. 4.2) gives them half-lives log-spaced from
  1e-3 to 10·t_max, t_max the largest span of a training user's history (both in horizons; time constant
  s_r = half-life / ln 2); `kernel_range: code` the authors' code's time constants, log-spaced from `min_scale`
  (1e-6) to `max_scale` (10) horizons. Following the authors' code
  (awslabs/recurrent-intensity-model-experiments, models/hawkes.py), times are measured from each user's first event
  in units of the horizon and that first event is not a data event but an *onset* with its own kernels
  (`onset: true`, their `hetero`): λ(t) also carries Σ_r a_r φ_r(t − t_first). Users without history get μ.
  Fitted by maximum likelihood (+ the small L2 penalty ‖θ‖²/(2C) of tick's learner, C = 1000) on every training user,
  observed from its first event to the end of the training data. The log-likelihood is linear in θ = (μ, α, a)
  inside its log: Σ_i log(θ·G_i) − θ·I with G_i the kernel states at event i (the exponential-kernel recursion
  A_r(i) = e^{−β_r (t_i − t_{i−1})} (A_r(i−1) + β_r), β_r = 1/s_r: O(n·R), a loop over the event position only,
  vectorised over users) and I the integrated kernels — so the fit is a concave problem, solved with L-BFGS-B under
  θ ≥ 0 (`backend: numpy`, default). `backend: tick` fits the same model with tick's `HawkesSumExpKern` (tick needs
  `numpydoc` installed: without it tick's learners fail with "object has no settable attribute 'events'").
  As in tick, an earlier event at the same time stamp (Δ = 0) counts in the kernel sums.
- `HawkesPoissonPrior` (RNN-HP, Eq. 7): Λ̄(x) = φ(t)·softplus(w) with φ(t) the (non-negative) Hawkes states above
  (columns scaled to mean 1 over the calibration states), w fitted by Poisson regression of each calibration
  state's count in the calibration window on φ, with loss −mean(Y log(Λ̄ + 1e-10) − Λ̄) + 1e-3/2 ‖softplus(w)‖²
  (the authors' models/hawkes_poisson.py). It needs a split with a calibration window (`temporal` with
  `calibration: DAYS`); the count is the window's number of events ΔN (Eqs. 3 and 6; repeats counted,
  `EvalSet.window_events`), the distinct items of the window only where a split gives no event counts.

Nothing here knows about item models; `plugins/models/sequence.py` combines a prior with p(y | x).
"""
from __future__ import annotations

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from harness.plugin import ConfigError, DataError, UserStates

POP_FLOOR = 0.01
LOG_FLOOR = 1e-30
TICK_HINT = ("pip install tick numpydoc (tick's learners need numpydoc; without it they raise "
             "\"object has no settable attribute 'events'\")")


# ------------------------------------------------------------------------------------------------- Hawkes core

def kernel_decays(n_kernels: int = 50, min_scale: float = 1e-6, max_scale: float = 10.0) -> np.ndarray:
    """Decays β_r = 1/s_r for time constants s_r log-spaced in [min_scale, max_scale] (units of the horizon)."""
    return 1.0 / np.logspace(np.log10(min_scale), np.log10(max_scale), int(n_kernels))


def _positions(ptr: np.ndarray) -> np.ndarray:
    lens = np.diff(ptr)
    return np.arange(ptr[-1]) - np.repeat(ptr[:-1], lens)


def hawkes_design(ptr: np.ndarray, t: np.ndarray, end: np.ndarray, decays: np.ndarray, onset: bool):
    """Kernel states at each event and integrated kernels of sequences of relative times.

    Sequence k is t[ptr[k]:ptr[k+1]] (sorted, >= 0; the onset, if any, is at 0) observed on [0, end[k]).
    Returns (G [n_events, K], I [K]) with K = 1 + R (+ R with onset) columns [baseline, self-excitation r,
    onset r]: λ(t_i) = G_i·θ and Σ_k ∫_0^{end_k} λ = I·θ.
    """
    ptr, t, end, decays = (np.asarray(ptr, np.int64), np.asarray(t, np.float64), np.asarray(end, np.float64),
                           np.asarray(decays, np.float64))
    n, R = len(t), len(decays)
    lens = np.diff(ptr)
    if (t < 0).any() or (np.repeat(end, lens) < t).any():
        raise DataError("hawkes: event times must lie in [0, end) of their sequence")
    pos = _positions(ptr)
    A = np.zeros((n, R))
    by_pos = np.argsort(pos, kind="stable")
    bounds = np.searchsorted(pos[by_pos], np.arange(int(pos.max(initial=0)) + 2))
    for k in range(1, len(bounds) - 1):  # a loop over the event position, vectorised over sequences
        idx = by_pos[bounds[k]:bounds[k + 1]]
        dt = (t[idx] - t[idx - 1])[:, None]
        A[idx] = np.exp(-decays[None, :] * dt) * (A[idx - 1] + decays[None, :])
    cols = [np.ones((n, 1)), A]
    seq_end = np.repeat(end, lens)
    integ = [np.array([end.sum()]), (-np.expm1(-decays[None, :] * (seq_end - t)[:, None])).sum(0)]
    if onset:
        cols.append(decays[None, :] * np.exp(-decays[None, :] * t[:, None]))
        integ.append((-np.expm1(-decays[None, :] * end[:, None])).sum(0))
    return np.hstack(cols), np.concatenate(integ)


def hawkes_neg_loglik(theta: np.ndarray, G: np.ndarray, I: np.ndarray) -> float:
    """−log-likelihood Σ_i −log(G_i·θ) + I·θ (not normalised)."""
    lam = G @ theta
    return float(-np.log(np.maximum(lam, 1e-300)).sum() + I @ theta)


def fit_hawkes(G: np.ndarray, I: np.ndarray, C: float = 1e3, max_iter: int = 5000) -> np.ndarray:
    """argmin_{θ >= 0} −loglik(θ)/N + ‖θ‖²/(2C) (tick's objective with its `l2` penalty), by L-BFGS-B on the
    rescaled variables z = θ·I/N (at the unpenalised optimum Σ_k θ_k I_k = N, so each z_k is in [0, 1])."""
    N = len(G)
    if N == 0:
        raise DataError("hawkes: no training user has an event after its first one, so the excitation cannot be "
                        "fitted; use more data or a longer training period")
    scale = N / np.maximum(I, 1e-300)
    Gs = G * scale[None, :]
    Is = I * scale / N

    def f(z):
        lam = Gs @ z
        inv = 1.0 / np.maximum(lam, 1e-300)
        th = z * scale
        val = -np.log(np.maximum(lam, 1e-300)).mean() + Is @ z + th @ th / (2 * C)
        grad = -(Gs.T @ inv) / N + Is + th * scale / C
        return val, grad

    z0 = np.full(G.shape[1], 1.0 / G.shape[1])
    with threadpool_limits(1):
        res = scipy.optimize.minimize(f, z0, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * len(z0),
                                      options={"maxiter": max_iter, "maxfun": 4 * max_iter, "ftol": 1e-11,
                                               "gtol": 1e-9})
    return res.x * scale


def fit_hawkes_tick(ptr, t, end, decays, onset: bool, C: float = 1e3, max_iter: int = 1000) -> np.ndarray:
    """The same model fitted with tick's HawkesSumExpKern: a second, control dimension carries an event at each
    sequence's end (and the onset at 0), as the authors do; returns θ = [μ, α_r..., (a_r...)] of the data dimension
    (the two dimensions' likelihoods are separate, so the data dimension's fit is the univariate one)."""
    try:
        from tick.hawkes import HawkesSumExpKern
        learner = HawkesSumExpKern(np.asarray(decays, np.float64), C=C, max_iter=max_iter, verbose=False)
    except Exception as e:  # ImportError, or tick's attribute error without numpydoc
        raise ConfigError(f"hawkes backend 'tick' is not usable here ({type(e).__name__}: {e}); {TICK_HINT}; "
                          "or use backend: numpy") from None
    seqs = [np.ascontiguousarray(t[a:b], dtype=np.float64) for a, b in zip(ptr[:-1], ptr[1:], strict=False)]
    # tick's learner ends each realisation at its last event: a control event at `end` marks it (it excites the data
    # dimension only after the end); with onset, the control dimension also has the onset at 0
    real = [[s, np.array([0.0, e]) if onset else np.array([float(e)])] for s, e in zip(seqs, end, strict=False)]
    learner.fit(real)
    theta = [learner.baseline[:1], learner.adjacency[0, 0]]
    if onset:
        theta.append(learner.adjacency[0, 1])
    return np.concatenate(theta)


# ------------------------------------------------------------------------------------------------- priors

def _horizon_days(ctx, horizon: float | None) -> float:
    if horizon is not None:
        return float(horizon)
    h = ctx.split_info.get("horizon_days")
    return float(h) if h is not None and np.isfinite(h) and h > 0 else 1.0


class PopPrior:
    """λ(x) = max(floor, history length)."""

    def __init__(self, floor: float = POP_FLOOR):
        self.floor = floor

    def fit(self, train, ctx) -> None:
        pass

    def log_intensity(self, states: UserStates) -> np.ndarray:
        return np.log(np.maximum(self.floor, states.lengths.astype(np.float64)))


PAPER_MIN_HALF_LIFE = 1e-3
"""RIM Sec. 4.2: the shortest kernel half-life (in horizons); the longest is 10·t_max."""
KERNEL_RANGES = ("paper", "code")


def paper_decays(n_kernels: int, t_max: float) -> np.ndarray:
    """Decays β_r = ln 2 / h_r for half-lives h_r log-spaced in [1e-3, 10·t_max] (RIM's range, in horizons)."""
    top = max(10.0 * t_max, 10 * PAPER_MIN_HALF_LIFE)  # a log without any span still gets an ordered range
    return np.log(2.0) / np.logspace(np.log10(PAPER_MIN_HALF_LIFE), np.log10(top), int(n_kernels))


class HawkesPrior:
    """Sum-of-exponential-kernels Hawkes prior shared by all users (see the module docstring)."""

    def __init__(self, n_kernels: int = 50, min_scale: float = 1e-6, max_scale: float = 10.0,
                 horizon: float | None = None, onset: bool = True, C: float = 1e3, backend: str = "numpy",
                 kernel_range: str = "paper"):
        if kernel_range not in KERNEL_RANGES:
            raise ConfigError(f"kernel_range must be one of {', '.join(KERNEL_RANGES)}, got {kernel_range!r}")
        self.n_kernels, self.kernel_range = int(n_kernels), kernel_range
        self.decays = kernel_decays(n_kernels, min_scale, max_scale)  # `paper`: replaced at fit (needs t_max)
        self.horizon, self.onset, self.C, self.backend = horizon, onset, C, backend

    # sequences of training users: data events after the first, relative to it, in horizons
    def _training_sequences(self, train, ctx):
        t_end = ctx.split_info.get("train_end")
        t_end = float(train.time.max()) if t_end is None or not np.isfinite(t_end) else float(t_end)
        t_end = max(t_end, float(train.time.max()))
        order = train.order
        users, times = train.user[order], train.time[order].astype(np.float64)
        first_of = np.r_[True, users[1:] != users[:-1]]
        seq_users = users[first_of]
        origin = times[first_of]
        seq_id = np.cumsum(first_of) - 1
        if self.onset:
            keep = ~first_of
            rel, sid = (times[keep] - origin[seq_id[keep]]) / self.h, seq_id[keep]
            end = (t_end - origin) / self.h
        else:  # every user observed from the first training event
            t0 = times.min()
            rel, sid = (times - t0) / self.h, seq_id
            end = np.full(len(seq_users), (t_end - t0) / self.h)
        ptr = np.concatenate([[0], np.cumsum(np.bincount(sid, minlength=len(seq_users)))]).astype(np.int64)
        # an event at the very end would sit on the boundary: nudge the end past it
        last = np.full(len(seq_users), -np.inf)
        np.maximum.at(last, sid, rel)
        end = np.where(last >= end, np.nextafter(last, np.inf), end)
        return ptr, rel, end

    def fit(self, train, ctx) -> None:
        if len(train) == 0:
            raise DataError("hawkes: no training events")
        self.h = _horizon_days(ctx, self.horizon) * train.per_day
        if self.kernel_range == "paper":
            first = np.full(train.n_users, np.inf)
            last = np.full(train.n_users, -np.inf)
            np.minimum.at(first, train.user, train.time)
            np.maximum.at(last, train.user, train.time)
            seen = np.isfinite(first)
            self.t_max = float((last[seen] - first[seen]).max()) / self.h
            self.decays = paper_decays(self.n_kernels, self.t_max)
        ptr, rel, end = self._training_sequences(train, ctx)
        if self.backend == "tick":
            self.theta = fit_hawkes_tick(ptr, rel, end, self.decays, self.onset, self.C)
        else:
            G, I = hawkes_design(ptr, rel, end, self.decays, self.onset)
            self.theta = fit_hawkes(G, I, self.C)

    def states_features(self, states: UserStates, chunk: int = 200_000) -> np.ndarray:
        """Hawkes states φ(t) at each state's cut, [n_states, K]:
        [1, Σ_j β_r e^{−β_r(t − t_j)}, onset β_r e^{−β_r t}]."""
        n, R = len(states), len(self.decays)
        lens = states.lengths
        ptr = np.asarray(states.hist_ptr, np.int64)
        cut = np.asarray(states.time, np.float64)
        has = lens > 0
        first = np.zeros(n)
        first[has] = np.asarray(states.hist_time, np.float64)[ptr[:-1][has]]
        owner = np.repeat(np.arange(n), lens)
        pos = _positions(ptr)
        data = (pos > 0) if self.onset else np.ones(len(pos), bool)
        origin = first if self.onset else np.zeros(n)
        now = (cut - origin) / self.h
        sel = np.flatnonzero(data)
        excite = np.zeros((n, R))
        for lo in range(0, len(sel), chunk):
            s = sel[lo:lo + chunk]
            o = owner[s]
            dt = now[o] - (np.asarray(states.hist_time, np.float64)[s] - origin[o]) / self.h
            w = self.decays[None, :] * np.exp(-self.decays[None, :] * np.maximum(dt, 0.0)[:, None])
            m = sp.csr_matrix((np.ones(len(s)), (o, np.arange(len(s)))), shape=(n, len(s)))
            with threadpool_limits(1):
                excite += m @ w
        cols = [np.ones((n, 1)), excite]
        if self.onset:  # no onset for an empty history (the authors' end_time = inf)
            onset = self.decays[None, :] * np.exp(-self.decays[None, :] * now[:, None])
            cols.append(np.where(has[:, None], onset, 0.0))
        return np.hstack(cols)

    def intensity(self, states: UserStates) -> np.ndarray:
        with threadpool_limits(1):
            return self.states_features(states) @ self.theta

    def log_intensity(self, states: UserStates) -> np.ndarray:
        return np.log(np.maximum(self.intensity(states), LOG_FLOOR))


def _softplus(w):
    return np.logaddexp(0.0, w)


class HawkesPoissonPrior(HawkesPrior):
    """Eq. 7: Λ̄(x) = φ(t)·softplus(w), w by Poisson regression on the calibration window's counts."""

    def __init__(self, l2: float = 1e-3, **kw):
        super().__init__(**kw)
        self.l2 = l2

    def fit(self, train, ctx) -> None:
        calib = ctx.calibration
        if calib is None or calib.n_states == 0:
            raise ConfigError("the Hawkes-Poisson prior (*_hp models) is calibrated on a calibration window, and this "
                              "split has none; use split temporal with `calibration: DAYS` (e.g. the horizon), or a "
                              "*_hawkes model")
        super().fit(train, ctx)
        X = self.states_features(calib.states)
        self.col_scale = 1.0 / np.maximum(X.mean(0), 1e-12)
        X = X * self.col_scale[None, :]
        # ΔN of Eqs. 3 and 6: the window's events, repeats counted (distinct items where the split gives no counts)
        Y = (calib.window_events.astype(np.float64) if calib.window_events is not None
             else np.asarray(calib.targets.sum(axis=1)).ravel().astype(np.float64))
        l2 = self.l2

        def f(w):
            sw = _softplus(w)
            lam = X @ sw
            val = -(Y * np.log(1e-10 + lam) - lam).mean() + l2 / 2 * (sw @ sw)
            dlam = -(Y / (1e-10 + lam) - 1.0) / len(Y)
            grad = (X.T @ dlam + l2 * sw) * (1.0 / (1.0 + np.exp(-w)))
            return val, grad

        with threadpool_limits(1):
            res = scipy.optimize.minimize(f, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B",
                                          options={"maxiter": 5000})
        self.w = res.x

    def intensity(self, states: UserStates) -> np.ndarray:
        with threadpool_limits(1):
            return (self.states_features(states) * self.col_scale[None, :]) @ _softplus(self.w)
