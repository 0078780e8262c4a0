"""The synthetic world's resource-limited layer (IMN-Net): clicks, purchases, prices, stocks and budgets.

Why: in a resource-limited market what a user does next depends on what is left — stock sells out, budgets run
dry — not only on taste. This layer keeps the world's event times (the Hawkes process of `make_world`, unchanged)
and re-draws every event's item in global time order with the resource state:

- **prices**: log-normal per item, price_y = exp(price_sigma·z_y) (median 1);
- **stock**: item y starts every day (at each integer time) with S_y = max(1, ⌈stock_scale · c_y⌉) units, c_y the
  item's expected clicks per day in the same world without limits (the simulation's Σ_e p(y | x_e) / days);
  purchases deplete it, and it is replenished to full at the next day;
- **budgets**: user u has capacity B_u = budget_scale·exp(budget_sigma·z_u) (in median prices), starts full;
  purchases deplete it by the price, and it recovers linearly at budget_recovery·B_u per day, up to B_u;
- **clicks**: every event is a click (event `click`); its item is drawn from
  p(y | x, r) ∝ p(y | x) · a(y; r), a(y; r) = (limit_weight if price_y ≥ budget else 1)·(limit_weight if y sold
  out else 1), so limits shift what users click next (limit_weight = 1: no shift);
- **purchases**: a click converts, at the same time (an extra event `purchase` right after its click in the
  log), with probability purchase_base·(1 − price_y / budget)^purchase_shape when price_y < budget and y is in
  stock, else 0 — the closer the price to the remaining budget, the less likely.

The draw runs in steps: maximal runs of time-ordered events within one day in which no user appears twice, so each
step is one vectorised draw over its users and the states are exact: a user's budget and last item are its own,
and purchases of one item within a step take its stock in time order (a would-be purchase after the stock ran
out is not one, and its purchase probability is 0). The only approximation: the click law of a step sees the
stock at the step's start (a step is a few tens of events). Memory: one step's users × items weights at a time.
"""
from __future__ import annotations

import numpy as np

from plugins.datasets.world import MarkSampler, event_contexts

__all__ = ["make_resources", "purchase_probability", "resource_log"]


def purchase_probability(price, budget, in_stock, base: float, shape: float) -> np.ndarray:
    """P(purchase | click on an item of `price`, remaining `budget`, in stock or not): base·(1 − price/budget)^shape
    where price < budget and in stock, else 0."""
    price, budget = np.asarray(price, dtype=np.float64), np.asarray(budget, dtype=np.float64)
    ok = (price < budget) & np.asarray(in_stock, dtype=bool)
    slack = np.where(ok, 1.0 - price / np.where(budget > 0, budget, 1.0), 0.0)
    return np.where(ok, base * np.clip(slack, 0.0, 1.0) ** shape, 0.0)


def _group_sums(w: np.ndarray, groups: int, size: int) -> np.ndarray:
    """Each row's sums of `size` consecutive weights, (rows, groups) float64: a BLAS product with ones (several
    times faster than numpy's float64 reduction of float32)."""
    return (w.reshape(-1, size) @ np.ones(size, np.float32)).reshape(w.shape[0], groups).astype(np.float64)


def _inverse_cdf(w: np.ndarray, uniform: np.ndarray, groups: int, size: int) -> np.ndarray:
    """One exact draw per row of the unnormalised weights `w` (rows, groups·size): the first item whose cumulated
    weight exceeds uniform × the row's total, found in two levels (a group of `size` items by the groups' sums, then
    the item within it) so only 2·√|Y| values per row are cumulated."""
    rows = np.arange(w.shape[0])
    by_group = w.reshape(w.shape[0], groups, size)
    cum = _group_sums(w, groups, size).cumsum(1)
    target = uniform * cum[:, -1]
    g = np.minimum((cum <= target[:, None]).sum(1), groups - 1)
    rest = target - np.where(g > 0, cum[rows, np.maximum(g - 1, 0)], 0.0)
    within = by_group[rows, g].cumsum(1, dtype=np.float64)
    return g * size + np.minimum((within <= rest[:, None]).sum(1), size - 1)


def _steps(user: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Start positions of the steps of time-sorted events: maximal runs within one day with no repeated user
    (plus the end). A loop over steps, each a vectorised look-ahead."""
    n = len(user)
    order = np.lexsort((np.arange(n), user))
    prev = np.full(n, -1, dtype=np.int64)
    same = user[order[1:]] == user[order[:-1]]
    prev[order[1:][same]] = order[:-1][same]
    starts, s, look = [], 0, 64
    while s < n:
        while True:
            hi = min(n, s + look)
            stop = (prev[s + 1:hi] >= s) | (day[s + 1:hi] != day[s])
            if stop.any():
                e = s + 1 + int(np.argmax(stop))
                break
            if hi == n:
                e = n
                break
            look *= 2
        starts.append(s)
        look = max(16, 2 * (e - s))
        s = e
    return np.asarray(starts + [n], dtype=np.int64)


def make_resources(truth, user, time, price_sigma: float, stock_scale: float, budget_scale: float,
                   budget_sigma: float, budget_recovery: float, purchase_base: float, purchase_shape: float,
                   limit_weight: float, seed: int) -> dict:
    """Re-draw the items of the world's events (`user`, `time`, sorted by time) with the resource state.

    Returns a dict of per-event arrays in the given order — item, purchased, budget_before, stock_before,
    purchase_prob — and price, stock_full, budget_cap, budget_rate. Sets the truth's contexts and
    `sim_item_mass` to the re-drawn events (p(y | x) there stays the unconstrained interest law)."""
    rng = np.random.default_rng([seed, 17])
    n, n_items, n_users = len(user), truth.n_items, truth.n_users
    price = np.exp(price_sigma * rng.standard_normal(n_items))
    daily = np.asarray(truth.sim_item_mass, dtype=np.float64) / truth.days
    stock_full = np.maximum(1, np.ceil(stock_scale * daily - 1e-9)).astype(np.int64)
    cap = budget_scale * np.exp(budget_sigma * rng.standard_normal(n_users))
    rate = budget_recovery * cap
    user = np.asarray(user, dtype=np.int64)
    time = np.asarray(time, dtype=np.float64)
    day = np.floor(time).astype(np.int64)
    sampler = MarkSampler(truth)
    item = np.empty(n, dtype=np.int64)
    budget_before = np.empty(n)
    stock_before = np.empty(n)
    p_buy = np.empty(n)
    bought = np.zeros(n, dtype=bool)
    budget, t_last = cap.copy(), np.zeros(n_users)
    last = np.full(n_users, -1, dtype=np.int64)
    stock, today = stock_full.copy(), None
    mass = np.zeros(n_items)
    bounds = _steps(user, day)
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        if day[s] != today:
            stock[:], today = stock_full, day[s]
        u, t = user[s:e], time[s:e]
        avail = np.where(stock > 0, np.float32(1.0), np.float32(limit_weight))[None, :]
        b_now = np.minimum(cap[u], budget[u] + rate[u] * (t - t_last[u]))
        y = np.empty(e - s, dtype=np.int64)
        for lo in range(0, e - s, sampler.rows):
            sl = slice(lo, lo + sampler.rows)
            w = sampler.weights(u[sl], last[u[sl]])
            mass += (1.0 / _group_sums(w, sampler.groups, sampler.size).sum(1)).astype(np.float32) @ w[:, :n_items]
            if limit_weight != 1.0:  # a(y; r): one factor per binding limit
                w[:, :n_items] *= np.where(price[None, :] >= b_now[sl, None], avail * np.float32(limit_weight),
                                           avail)
            y[sl] = np.minimum(_inverse_cdf(w, rng.random(w.shape[0]), sampler.groups, sampler.size), n_items - 1)
        # purchases: a would-be purchase takes the item's stock in time order within the step
        want = rng.random(e - s) < purchase_probability(price[y], b_now, True, purchase_base, purchase_shape)
        by_item = np.lexsort((np.arange(e - s), y))
        yi, wi = y[by_item], want[by_item].astype(np.int64)
        first = np.searchsorted(yi, yi, side="left")
        cum = np.cumsum(wi)
        before = cum - wi - (cum[first] - wi[first])
        s_now = np.empty(e - s, dtype=np.int64)
        s_now[by_item] = stock[yi] - np.minimum(before, stock[yi])
        prob = purchase_probability(price[y], b_now, s_now > 0, purchase_base, purchase_shape)
        got = want & (s_now > 0)
        np.subtract.at(stock, y[got], 1)
        budget[u] = b_now - np.where(got, price[y], 0.0)
        t_last[u], last[u] = t, y
        item[s:e], bought[s:e], budget_before[s:e], stock_before[s:e], p_buy[s:e] = y, got, b_now, s_now, prob
    by_user = np.lexsort((time, user))
    truth.ctx_user, truth.ctx_last, truth.ctx_count = event_contexts(user[by_user], item[by_user], n_items)
    truth.sim_item_mass = mass
    return {"item": item, "purchased": bought, "budget_before": budget_before, "stock_before": stock_before,
            "purchase_prob": p_buy, "price": price, "stock_full": stock_full, "budget_cap": cap,
            "budget_rate": rate}


def resource_log(user, time, res: dict) -> dict:
    """The log's rows: every event a `click`, each purchase an extra `purchase` row at the click's time right
    after it; per-row truths (the state before the click, for its purchase too; purchase_prob nan on purchase
    rows). Returns user, item, time, event, price, budget_before, stock_before, purchase_prob."""
    n = len(user)
    buy = np.flatnonzero(res["purchased"])
    src = np.concatenate([np.arange(n), buy])
    order = np.lexsort((np.arange(len(src)), src))  # a purchase right after its click (events are time-sorted)
    src = src[order]
    is_buy = order >= n
    prob = res["purchase_prob"][src].copy()
    prob[is_buy] = np.nan
    item = res["item"][src]
    return {"user": np.asarray(user, dtype=np.int64)[src], "item": item, "time": np.asarray(time)[src],
            "event": np.where(is_buy, "purchase", "click").astype(object), "price": res["price"][item],
            "budget_before": res["budget_before"][src], "stock_before": res["stock_before"][src].astype(np.float64),
            "purchase_prob": prob}

