"""The synthetic world's generative process: Hawkes event times and Markov-drift softmax marks, vectorised.

Event times: independent Hawkes processes per user (or per simulated replica), λ(t) = μ(t) + Σ_{t_j<t} α β
e^{−β(t−t_j)}, simulated with the cluster (branching) representation — Poisson immigrants, then generation after
generation of Poisson(α) children at Exp(β) offsets, vectorised over all replicas (the only Python loop is over
generations). Marks: each event's item from p(y | x) = softmax_y(taste_scale·θ_u·φ_y + b_y + γ·φ_last(x)·φ_y) along
each replica's time-ordered events — a loop over the event position j, and for each j one float32 numpy matmul per block
of the replicas that have a j-th event, then an exact two-level inverse-CDF draw (a group of ⌈√|Y|⌉ items by the
groups' sums, then the item within it), so no users × items array is ever held and no Gumbel noise per item is
drawn. `event_contexts` reduces the realised events to what the truth needs: the distinct (user, last item) pairs.

Internal to the synthetic dataset plugin (`plugins.datasets.synthetic`, `plugins.datasets.world_truth`).
"""
from __future__ import annotations

import math

import numpy as np

BLOCK_CELLS = 1 << 22    # weights held at once by the mark sampler (16 MiB in float32)


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


def hawkes_times(rng, mu, alpha, beta, start, end, carried, churn_day=None, churn_factor=1.0):
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


# ------------------------------------------------------------------------------------------------ marks

def _row_search(cum: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per row r, the first column whose cumulated value exceeds target[r] (numpy's searchsorted, side right, on
    all rows at once: each row scaled to [0, 1] and shifted by its index into one increasing array)."""
    rows, cols = cum.shape
    total = cum[:, -1:].astype(np.float64)
    flat = (cum / np.where(total > 0, total, 1.0) + np.arange(rows)[:, None]).ravel()
    where = np.searchsorted(flat, np.arange(rows) + target / np.where(total[:, 0] > 0, total[:, 0], 1.0), "right")
    return np.clip(where - np.arange(rows) * cols, 0, cols - 1)


def _group_mass(w: np.ndarray, groups: int, size: int) -> np.ndarray:
    """The sums of each row's groups of `size` consecutive weights, (rows, groups) in float64: one matrix-vector
    product with a vector of ones (a BLAS dot per group, 8x faster here than numpy's reduction along the axis)."""
    return (w.reshape(-1, size) @ np.ones(size, np.float32)).reshape(w.shape[0], groups).astype(np.float64)


def _draw(w: np.ndarray, uniform: np.ndarray, groups: int, size: int, mass: np.ndarray | None = None) -> np.ndarray:
    """One exact draw per row of the unnormalised weights `w` (rows, groups·size): by inverse CDF, first over the
    groups' sums (`mass`, computed when not given), then within the chosen group (2·√|Y| cumulated values per row
    instead of |Y|)."""
    rows = w.shape[0]
    by_group = w.reshape(rows, groups, size)
    mass = _group_mass(w, groups, size) if mass is None else mass
    cum = mass.cumsum(1)
    target = uniform * cum[:, -1]
    g = _row_search(cum, target)
    idx = np.arange(rows)
    rest = target - (cum[idx, g] - mass[idx, g])
    s = _row_search(by_group[idx, g].cumsum(1, dtype=np.float64), rest)
    return g * size + s


class MarkSampler:
    """Draws marks from p(y | user, last item) for many events at once (float32 numpy, blocks of BLOCK_CELLS:
    numpy's vectorised exp is an order of magnitude faster than torch's on CPU here)."""

    def __init__(self, truth):
        n, d = truth.n_items, truth.phi.shape[1]
        self.n_items = n
        self.size = max(1, math.isqrt(n - 1) + 1)          # ⌈√n⌉ items per group
        self.groups = -(-n // self.size)
        pad = self.groups * self.size - n
        self.taste = (truth.taste_scale * truth.theta).astype(np.float32)
        phi = truth.phi.astype(np.float32)
        self.drift = truth.gamma * phi
        # the bias rides in the matmul as a last factor against a constant 1; padding items get a bias of -1e30
        self.phi_t = np.ascontiguousarray(np.vstack([
            np.hstack([phi, truth.b.astype(np.float32)[:, None]]),
            np.hstack([np.zeros((pad, d), np.float32), np.full((pad, 1), -1e30, np.float32)])]).T)
        self.gamma = truth.gamma
        # rows per block: the cell budget, at most 2^16 (the reused buffer's height)
        self.rows = min(max(1, BLOCK_CELLS // (self.groups * self.size)), 1 << 16)
        self.buf = np.empty((self.rows, self.groups * self.size), np.float32)

    def weights(self, users: np.ndarray, last: np.ndarray) -> np.ndarray:
        """exp(logits − row max) over the padded items (padding: weight 0), in a reused buffer."""
        q = np.empty((len(users), self.taste.shape[1] + 1), np.float32)
        q[:, :-1] = self.taste[users]
        q[:, -1] = 1.0
        has = last >= 0
        if self.gamma != 0 and has.any():
            q[has, :-1] += self.drift[last[has]]
        z = np.matmul(q, self.phi_t, out=self.buf[:len(users)])
        z -= z.max(axis=1, keepdims=True)
        return np.exp(z, out=z)

    def draw(self, rng, users: np.ndarray, last: np.ndarray, item_mass: np.ndarray | None = None) -> np.ndarray:
        """One mark per (users[r], last[r]); adds p(· | x) to `item_mass` when given."""
        out = np.empty(len(users), dtype=np.int64)
        for lo in range(0, len(users), self.rows):
            w = self.weights(users[lo:lo + self.rows], last[lo:lo + self.rows])
            u = rng.random(w.shape[0])
            mass = _group_mass(w, self.groups, self.size)
            if item_mass is not None:  # Σ_rows w_r / Σ w_r: one vector-matrix product, no normalised copy
                item_mass += (1.0 / mass.sum(1)).astype(np.float32) @ w[:, :self.n_items]
            out[lo:lo + self.rows] = np.minimum(_draw(w, u, self.groups, self.size, mass), self.n_items - 1)
        return out


def sample_marks(rng, truth, rep, t, rep_user, rep_last, item_mass: np.ndarray | None = None):
    """Draw the mark of every event of every replica in time order. Loops over the event position j, one batch
    per j of all replicas that have a j-th event. Returns (order, items) with order the (replica, time) sort of
    the events and items in that order; with `item_mass`, adds p(· | x_e) of every event to it."""
    order = np.lexsort((t, rep))
    n_rep = len(rep_user)
    counts = np.bincount(rep, minlength=n_rep)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    by_count = np.argsort(-counts, kind="stable")
    n_with = np.searchsorted(-counts[by_count], -np.arange(1, counts.max(initial=0) + 1), side="right")
    items = np.empty(len(rep), dtype=np.int64)
    last = np.asarray(rep_last, dtype=np.int64).copy()
    sampler = MarkSampler(truth)
    users = np.asarray(rep_user, dtype=np.int64)
    for j, n_j in enumerate(n_with):
        act = by_count[:n_j]
        y = sampler.draw(rng, users[act], last[act], item_mass)
        items[start[act] + j] = y
        last[act] = y
    return order, items


def event_contexts(user: np.ndarray, item: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (user, last item before the event) of events sorted by (user, time), with their counts, sorted
    by user: what p(u, i) ∝ Σ_e p(i | x_e) depends on."""
    prev = np.empty_like(item)
    prev[1:] = item[:-1]
    first = np.ones(len(user), dtype=bool)
    first[1:] = user[1:] != user[:-1]
    prev[first] = -1
    key, count = np.unique(user.astype(np.int64) * (n_items + 1) + prev + 1, return_counts=True)
    return key // (n_items + 1), key % (n_items + 1) - 1, count.astype(np.float64)
