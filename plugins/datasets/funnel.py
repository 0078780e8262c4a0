"""The synthetic world's funnel layer (UMA²): recall → exposure → click per request, every propensity known.

Per request (a user at a uniform time, users drawn ∝ μ_u + mean μ; x = the user's organic history before it):

- **recall**: each item is recalled independently with p1(x, y) = min(1, recall_size · softmax_y(r)), where
  r_y = recall_quality·log p(y|x) + (1 − recall_quality)·b_y + ε_y mixes the true preference, the popularity and a
  fixed per-item recaller error ε_y ~ N(0, recall_noise²) (Poisson sampling with inclusion probability ∝ size:
  p1 is exact, the recall set has about `recall_size` items, far more than `slots`, far fewer than the catalogue);
- **exposure**: each recalled item is exposed independently with p2(x, y | R) = min(1, slots · softmax_{y∈R}(e)),
  e_y = exposure_quality·log p(y|x) + (1 − exposure_quality)·b_y (a ranker that knows more of the preference than
  the recaller); exposed items take slots 0.. in decreasing e;
- **click**: Bernoulli with position_bias^slot · σ(click_bias + click_scale·log(|Y|·p(y|x))), as the impressions
  layer (DMR).

So Space C (never recalled) and Space B (recalled, not exposed) are large and biased: popular items and items the
recaller's error favours are recalled more, and what is exposed leans towards the preference. One event row per
recalled (request, item), its event the deepest stage reached: `recall` (B), `exposure` (A: exposed, not clicked)
or `click`; features `request` and `slot` (−1: not exposed). The truth keeps p1, p2 and the click probability of
every row, and p1 of any (request, item) (`WorldTruth.recall_propensity`).
"""
from __future__ import annotations

import numpy as np

from plugins.datasets.world_truth import BLOCK_CELLS

STAGE_EVENTS = ("recall", "exposure", "click")
"""The funnel's event names by stage: recalled only (Space B), exposed not clicked (Space A), clicked."""


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def recall_logits(truth, users: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log p(y|x), the recaller's log-softmax over the catalogue) for requests (users, last), [n, n_items]."""
    logp = _log_softmax(truth._logits(users, last))
    r = truth.recall_quality * logp + truth.recall_bias[None, :]
    return logp, _log_softmax(r)


def make_funnel(truth, user, item, time, n_requests: int, recall_size: int, slots: int, recall_quality: float,
                recall_noise: float, exposure_quality: float, position_bias: float, click_bias: float,
                click_scale: float, seed: int):
    """The funnel's rows (one per recalled (request, item)), in request order, and the per-request arrays.

    Returns (rows, requests): rows a dict of arrays request, user, item, time, stage (1 recall, 2 exposure,
    3 click), slot, p1, p2, p_click (nan where not exposed); requests a dict of user, last, time. Sets the
    truth's recaller (`recall_bias`, `recall_quality`, `recall_size`). Dense work is in blocks of requests."""
    from plugins.datasets.synthetic import last_items_before

    rng = np.random.default_rng([seed, 13])
    n_items = truth.n_items
    truth.recall_quality = float(recall_quality)
    truth.recall_size = int(recall_size)
    truth.recall_bias = (1.0 - recall_quality) * np.asarray(truth.b) + recall_noise * rng.standard_normal(n_items)
    w = truth.mu + truth.mu.mean()
    r_user = rng.choice(truth.n_users, size=n_requests, p=w / w.sum())
    r_time = np.sort(rng.random(n_requests) * truth.days)
    last = last_items_before(user, item, time, r_user, r_time)
    parts: list[dict] = []
    chunk = max(1, BLOCK_CELLS // max(1, n_items))
    for lo in range(0, n_requests, chunk):
        req = np.arange(lo, min(n_requests, lo + chunk))
        parts.append(_funnel_block(rng, truth, req, r_user[req], last[req], recall_size, slots, exposure_quality,
                                   position_bias, click_bias, click_scale))
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    rows["time"] = r_time[rows["request"]]
    return rows, {"user": r_user, "last": last, "time": r_time}


def _funnel_block(rng, truth, req, users, last, recall_size, slots, exposure_quality, position_bias, click_bias,
                  click_scale) -> dict:
    n_items = truth.n_items
    logp, log_q = recall_logits(truth, users, last)
    p1 = np.minimum(1.0, recall_size * np.exp(log_q))
    recalled = rng.random(p1.shape) < p1
    e = exposure_quality * logp + (1.0 - exposure_quality) * truth.b[None, :]
    e_rec = np.where(recalled, e, -np.inf)
    with np.errstate(invalid="ignore"):
        log_r = e_rec - e_rec.max(axis=1, keepdims=True)
        log_r -= np.log(np.exp(log_r).sum(axis=1, keepdims=True))
    p2 = np.where(recalled, np.minimum(1.0, slots * np.exp(log_r)), 0.0)
    exposed = recalled & (rng.random(p2.shape) < p2)
    r, c = np.nonzero(recalled)
    is_exp = exposed[r, c]
    # slots: exposed items of a request ranked by e, decreasing (ties to the lower item)
    er, ec = r[is_exp], c[is_exp]
    order = np.lexsort((ec, -e[er, ec], er))
    first = np.searchsorted(er[order], er[order], side="left")
    slot_exp = np.empty(len(er), dtype=np.int64)
    slot_exp[order] = np.arange(len(order)) - first
    slot = np.full(len(r), -1, dtype=np.int64)
    slot[is_exp] = slot_exp
    p_click = np.full(len(r), np.nan)
    p_click[is_exp] = position_bias ** slot_exp / (1.0 + np.exp(-(click_bias + click_scale *
                                                                  (logp[er, ec] + np.log(n_items)))))
    clicked = np.zeros(len(r), dtype=bool)
    clicked[is_exp] = rng.random(len(er)) < p_click[is_exp]
    stage = np.where(clicked, 3, np.where(is_exp, 2, 1)).astype(np.int8)
    return {"request": req[r], "user": users[r], "item": c.astype(np.int64), "stage": stage, "slot": slot,
            "p1": p1[r, c], "p2": p2[r, c], "p_click": p_click}
