"""Dataset plugin `synthetic`: the embedded default, a generated world whose truth is known.

The world (`plugins.datasets.world`): users with tastes θ_u and Hawkes activity (log-normal background rate μ_u
with mean `mean_rate`, branching ratio α_u with mean `branching`, decay β = `decay`, optional churn), items with
vectors φ_y and popularity biases b_y, and marks from p(y | x) = softmax_y(taste_scale·θ_u·φ_y + b_y + γ·φ_last(x)·φ_y)
along each user's time-ordered events. `dataset.truth` is a `WorldTruth` (`plugins.datasets.world_truth`): the
parameters, the realised events' contexts, and every truth computed from them on demand, in blocks (p(u, i) and its
conditionals, p(y | x), λ(x, y), expected window counts). Nothing of size users × items is built, so a world of
10⁵ users × 2·10⁴ items fits in a few hundred MB; the world is cached on disk with its truth like any dataset.

Impressions layer (`impressions: true`, DMR): `make_impressions` adds exposure requests on top of the organic
events — recall from a mix of p(y|x) and popularity, `slots` items shown per request, clicks Bernoulli with the
exact probability position_bias^slot · σ(click_bias + click_scale·log(|Y|·p(y|x))). The log then has events
organic / impression / click and a feature `slot`; `truth.click_probability(event_id)` gives each exposure's
click probability (kept in the truth, not in the data). The organic events and every other truth are those of
the same world without the layer. Splits other than `impressions` see exposures as events too.

Funnel layer (`funnel: true`, UMA²; `plugins.datasets.funnel`): per request a recall set of about `recall_size`
items with known p1, an exposure of about `slots` of them with known p2 = P(exposed | recalled), clicks as above;
one row per recalled (request, item), event `recall` / `exposure` / `click` (its deepest stage), features
`request` and `slot`. The truth knows p1, p2 and the click probability of every row (`recall_prob`,
`exposure_prob`, `click_prob`) and p1 of any (request, item). The `funnel` split reads it.

Resource-limited layer (`resources: true`, IMN-Net; `plugins.datasets.resources`): the same event times, every
event a `click` whose item is re-drawn in time order from p(y | x)·a(y; r) (unaffordable or sold-out items down-
weighted), purchases (event `purchase`, same time, right after the click) with a known probability given the item's
price, its daily stock and the user's recovering budget; feature `price`. The truth keeps prices, stocks, budgets
and, per event, `budget_before`, `stock_before` and `purchase_prob`; its p(y | x) stays the unconstrained interest.
"""
from __future__ import annotations

import numpy as np

from harness.plugin import Dataset, DatasetSpec, Interactions, Param, hookimpl, require_memory
from plugins.datasets.funnel import STAGE_EVENTS, make_funnel
from plugins.datasets.resources import make_resources, resource_log
from plugins.datasets.world import event_contexts, hawkes_times, sample_marks
from plugins.datasets.world_truth import BLOCK_CELLS, WorldTruth

__all__ = ["WorldTruth", "make_world", "make_world_dataset", "make_impressions", "last_items_before"]

_ALPHA_MAX = 0.9
_ALPHA_CONCENTRATION = 10.0


def make_world(n_users: int = 2000, n_items: int = 500, dim: int = 16, days: float = 60.0, mean_rate: float = 0.3,
               rate_sigma: float = 1.0, branching: float = 0.5, decay: float = 1.0, pop_sigma: float = 1.0,
               taste_scale: float = 3.0, drift: float = 1.0, churn_day: float | None = None,
               churn_factor: float = 0.2, seed: int = 0):
    """Simulate the world: (user, item, time) arrays sorted by time, and its WorldTruth."""
    if not 0 <= branching < _ALPHA_MAX:
        raise ValueError(f"branching must be in [0, {_ALPHA_MAX}), got {branching}")
    require_memory(8.0 * (n_users + n_items) * dim + 4.0 * BLOCK_CELLS * 4,
                   f"the synthetic world's parameters (n_users, n_items = {n_users:,}, {n_items:,}; dim {dim})",
                   "lower n_users, n_items or dim")
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
    truth = WorldTruth(theta=theta, phi=phi, b=b, mu=mu, alpha=alpha, beta=float(decay), gamma=float(drift),
                       taste_scale=float(taste_scale), days=float(days), churn_day=churn_day,
                       churn_factor=float(churn_factor))
    expected = float(truth.expected_user_counts().sum())
    require_memory(8.0 * 12 * expected, f"the synthetic world's events (about {expected:,.0f} expected)",
                   "lower n_users, days or mean_rate")
    rep, t = hawkes_times(rng, mu, alpha, decay, np.zeros(n_users), np.full(n_users, float(days)),
                           np.zeros(n_users), churn_day, churn_factor)
    mass = np.zeros(n_items)
    order, items = sample_marks(rng, truth, rep, t, np.arange(n_users), np.full(n_users, -1), item_mass=mass)
    user, time = rep[order], t[order]
    truth.ctx_user, truth.ctx_last, truth.ctx_count = event_contexts(user, items, n_items)
    truth.sim_item_mass = mass
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


def _with_layer(user, item, time, layer: dict, truth_fields: dict, truth: WorldTruth):
    """The organic events (event `organic`, features −1, truths nan) joined with a layer's rows, sorted by
    (time, user, order); the truth's per-event arrays set in that order. Returns (user, item, time, extra)."""
    n_org, n_new = len(user), len(layer["user"])
    order = np.lexsort((np.arange(n_org + n_new), np.concatenate([user, layer["user"]]),
                        np.concatenate([time, layer["time"]])))
    for name, values in truth_fields.items():
        setattr(truth, name, np.concatenate([np.full(n_org, np.nan), values])[order])
    event = np.concatenate([np.full(n_org, "organic", dtype=object), layer["event"]])[order]
    features = {k: np.concatenate([np.full(n_org, -1, dtype=np.int64), v])[order]
                for k, v in layer["features"].items()}
    return (np.concatenate([user, layer["user"]])[order], np.concatenate([item, layer["item"]])[order],
            np.concatenate([time, layer["time"]])[order], {"event": event, "features": features})


def make_world_dataset(impressions: bool = False, n_requests: int | None = None, slots: int = 5,
                       position_bias: float = 0.7, click_bias: float = -1.0, click_scale: float = 1.0,
                       recall_quality: float = 0.5, funnel: bool = False, recall_size: int = 50,
                       recall_noise: float = 1.0, exposure_quality: float = 0.8, resources: bool = False,
                       price_sigma: float = 1.0, stock_scale: float = 0.2, budget_scale: float = 3.0,
                       budget_sigma: float = 0.5, budget_recovery: float = 0.1, purchase_base: float = 0.5,
                       purchase_shape: float = 1.0, limit_weight: float = 0.1, **params) -> Dataset:
    """The `synthetic` factory: a Dataset (time unit "day") with `truth` set to its WorldTruth. With
    `impressions`, exposures (event `impression` / `click`, feature `slot`) join the organic events (event
    `organic`), and `truth.click_probability` knows each exposure's click probability. With `resources`, clicks
    and purchases under prices, stocks and budgets (`plugins.datasets.resources`)."""
    if impressions and funnel:
        raise ValueError("impressions and funnel are two layers of one kind: choose one (impressions: DMR's "
                         "exposures; funnel: UMA²'s recall → exposure → click)")
    if resources and (impressions or funnel):
        raise ValueError("resources re-draws the organic events as clicks and purchases; it does not combine with "
                         "impressions or funnel: choose one layer")
    user, item, time, truth = make_world(**params)
    extra: dict = {}
    if resources:
        res = make_resources(truth, user, time, price_sigma, stock_scale, budget_scale, budget_sigma,
                             budget_recovery, purchase_base, purchase_shape, limit_weight, params.get("seed", 0))
        log = resource_log(user, time, res)
        for name in ("price", "stock_full", "budget_cap", "budget_rate"):
            setattr(truth, name, res[name])
        for name in ("budget_before", "stock_before", "purchase_prob"):
            setattr(truth, name, log[name])
        truth.purchase_base, truth.purchase_shape = float(purchase_base), float(purchase_shape)
        truth.limit_weight = float(limit_weight)
        user, item, time = log["user"], log["item"], log["time"]
        extra = {"event": log["event"], "features": {"price": log["price"]}}
        params = dict(params, resources=True, price_sigma=price_sigma, stock_scale=stock_scale,
                      budget_scale=budget_scale, budget_sigma=budget_sigma, budget_recovery=budget_recovery,
                      purchase_base=purchase_base, purchase_shape=purchase_shape, limit_weight=limit_weight)
    if funnel:
        n_req = int(n_requests) if n_requests is not None else 5 * truth.n_users
        rows, req = make_funnel(truth, user, item, time, n_req, recall_size, slots, recall_quality, recall_noise,
                                exposure_quality, position_bias, click_bias, click_scale, params.get("seed", 0))
        truth.request_user, truth.request_last = req["user"], req["last"]
        layer = {"user": rows["user"], "item": rows["item"], "time": rows["time"],
                 "event": np.asarray(STAGE_EVENTS, dtype=object)[rows["stage"] - 1],
                 "features": {"request": rows["request"], "slot": rows["slot"]}}
        user, item, time, extra = _with_layer(user, item, time, layer, {
            "recall_prob": rows["p1"], "exposure_prob": rows["p2"], "click_prob": rows["p_click"]}, truth)
        params = dict(params, funnel=True, n_requests=n_req, recall_size=recall_size, slots=slots,
                      recall_quality=recall_quality, recall_noise=recall_noise, exposure_quality=exposure_quality,
                      position_bias=position_bias, click_bias=click_bias, click_scale=click_scale)
    if impressions:
        n_req = int(n_requests) if n_requests is not None else 5 * truth.n_users
        iu, ii, it, islot, iclk, ip = make_impressions(truth, user, item, time, n_req, slots, position_bias,
                                                       click_bias, click_scale, recall_quality,
                                                       params.get("seed", 0))
        layer = {"user": iu, "item": ii, "time": it, "event": np.where(iclk, "click", "impression").astype(object),
                 "features": {"slot": islot}}
        user, item, time, extra = _with_layer(user, item, time, layer, {"click_prob": ip}, truth)
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
    Param("recall_quality", "float", 0.5, "impressions/funnel: recall draws from softmax(q·log p(y|x) + (1-q)·b_y)",
          low=0.0, high=1.0),
    Param("funnel", "bool", False, "add the funnel layer (UMA²): per request a recall set, exposures and clicks "
                                   "with known propensities; events recall / exposure / click, features request, "
                                   "slot", late=True),
    Param("recall_size", "int", 50, "funnel: expected items recalled per request (p1 = min(1, size·softmax))",
          low=1, late=True),
    Param("recall_noise", "float", 1.0, "funnel: std of the recaller's fixed per-item error ε_y", low=0.0, late=True),
    Param("exposure_quality", "float", 0.8, "funnel: exposure ranks the recalled by q·log p(y|x) + (1-q)·b_y",
          low=0.0, high=1.0, late=True),
    Param("resources", "bool", False, "add the resource-limited layer (IMN-Net): events click / purchase under item "
                                      "prices, daily stocks and recovering user budgets; feature price", late=True),
    Param("price_sigma", "float", 1.0, "resources: log-normal sigma of item prices (median 1)", low=0.0, late=True),
    Param("stock_scale", "float", 0.2, "resources: daily stock = max(1, ceil(scale x the item's expected clicks per "
                                       "day without limits)), replenished every day", low=0.0, late=True),
    Param("budget_scale", "float", 3.0, "resources: median user budget capacity, in median prices", low=0.0,
          late=True),
    Param("budget_sigma", "float", 0.5, "resources: log-normal sigma of budget capacities", low=0.0, late=True),
    Param("budget_recovery", "float", 0.1, "resources: fraction of its capacity a budget recovers per day", low=0.0,
          late=True),
    Param("purchase_base", "float", 0.5, "resources: P(purchase | click) = base x (1 - price/budget)^shape when "
                                         "affordable and in stock, else 0", low=0.0, high=1.0, late=True),
    Param("purchase_shape", "float", 1.0, "resources: the shape exponent of P(purchase | click)", low=0.0,
          late=True),
    Param("limit_weight", "float", 0.1, "resources: the click law p(y|x) is multiplied by this per binding limit "
                                        "(unaffordable, sold out); 1 = limits do not shift clicks", low=0.0,
          high=1.0, late=True),
)


@hookimpl
def register_datasets(register):
    register(DatasetSpec(
        name="synthetic", factory=make_world_dataset, params=PARAMS, provides=("truth",),
        description="generated world with known truth: Hawkes activity per user, Markov-drift softmax marks; "
                    "dataset.truth gives p(u,i), p(y|x), λ(x,y) and expected window counts"))
