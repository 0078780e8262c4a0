"""The funnel of a matching system (UMA²): per request what was recalled, exposed and clicked, and the negative
sampling strategies over its spaces.

Spaces of one request: C = never recalled (the rest of the catalogue), B = recalled, not exposed, A = exposed, not
clicked, and the positives (clicked). `FunnelRows` holds the recalled pairs of the training requests (C is
implicit); `draw_negatives` draws the negatives of every positive by one of `SAMPLING`, always `n_neg` per
positive (the paper's fairness rule: every strategy trains on as many negatives):

- `ss_a`: from A of the positive's request;
- `ss_ab`: from A and B of the request in the ratio ratio[0] : ratio[1];
- `ss_abc_random`: uniform over the whole catalogue (the positive itself excluded), whatever space they fall in;
- `ss_abc_fixed`: from A, B and C in the ratio ratio[0] : ratio[1] : ratio[2] (default 1 : 4 : 20).

A request whose A (or B) is empty borrows from the A (B) pairs of all training requests, uniformly: the space is
kept, the request is not (said in `NegativeDraw.borrowed`). Counts per space are the ratio scaled to `n_neg` by
largest remainders. Vectorised: no loop over requests or positives.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

SAMPLING = ("ss_a", "ss_ab", "ss_abc_random", "ss_abc_fixed")
DEFAULT_RATIO = (1, 4, 20)
SPACE_C, SPACE_B, SPACE_A, POSITIVE = 0, 1, 2, 3
"""A pair's space codes (also the stage codes of FunnelRows: 1 recalled only, 2 exposed, 3 clicked; 0 = C)."""


@dataclass(eq=False)
class FunnelRows:
    """The recalled (request, item) pairs of a set of requests, sorted by (request, stage, item): `stage` 1 = B
    (recalled, not exposed), 2 = A (exposed, not clicked), 3 = clicked. `request` are dense indices 0..n-1 with
    `req_user` / `req_time` per request; `event_id` the rows' positions in the dataset's log (for the truth)."""

    request: np.ndarray
    item: np.ndarray
    stage: np.ndarray
    req_user: np.ndarray
    req_time: np.ndarray
    n_items: int
    event_id: np.ndarray | None = None
    req_key: np.ndarray | None = None
    """per request, its key in the dataset (the `request` feature where the log has one)"""

    def __post_init__(self):
        order = np.lexsort((self.item, self.stage, self.request))
        self.request = np.asarray(self.request, dtype=np.int64)[order]
        self.item = np.asarray(self.item, dtype=np.int64)[order]
        self.stage = np.asarray(self.stage, dtype=np.int8)[order]
        if self.event_id is not None:
            self.event_id = np.asarray(self.event_id, dtype=np.int64)[order]
        n_req = len(self.req_user)
        # per request and stage s: rows [lo[s][r], lo[s][r] + count[s][r])
        key = self.request * 4 + self.stage
        self._lo = {s: np.searchsorted(key, np.arange(n_req) * 4 + s, side="left") for s in (1, 2, 3)}
        self._count = {s: np.searchsorted(key, np.arange(n_req) * 4 + s, side="right") - self._lo[s]
                       for s in (1, 2, 3)}
        keys = self.request * np.int64(self.n_items) + self.item
        self._key_order = np.argsort(keys, kind="stable")
        self._recalled_sorted = keys[self._key_order]

    def __len__(self) -> int:
        return len(self.item)

    @property
    def user(self) -> np.ndarray:
        return self.req_user[self.request]

    @property
    def n_requests(self) -> int:
        return len(self.req_user)

    def rows(self, stage: int) -> np.ndarray:
        """Row positions of one stage (1 = B, 2 = A, 3 = clicked)."""
        return np.flatnonzero(self.stage == stage)

    def space_of(self, request: np.ndarray, item: np.ndarray) -> np.ndarray:
        """The space code (0 C, 1 B, 2 A, 3 clicked) of (request, item) pairs."""
        q = np.asarray(request, dtype=np.int64) * np.int64(self.n_items) + np.asarray(item, dtype=np.int64)
        keys = self._recalled_sorted
        pos = np.searchsorted(keys, q)
        hit = (pos < len(keys)) & (keys[np.minimum(pos, len(keys) - 1)] == q)
        out = np.zeros(q.shape, dtype=np.int8)
        out[hit] = self.stage[self._key_order[pos[hit]]]
        return out

    def draw_stage(self, rng: np.random.Generator, request: np.ndarray, stage: int) -> tuple[np.ndarray, np.ndarray]:
        """One item of `stage` per entry of `request` (its own request's, uniformly); where the request has none,
        one of all requests' `stage` pairs. Returns (items, borrowed mask)."""
        lo, count = self._lo[stage][request], self._count[stage][request]
        pick = lo + np.floor(rng.random(len(request)) * np.maximum(count, 1)).astype(np.int64)
        borrowed = count == 0
        if borrowed.any():
            pool = self.rows(stage)
            if len(pool) == 0:
                raise ConfigError(f"no training pair is in space {'BA'[stage - 1]} "
                                  f"({'recalled, not exposed' if stage == 1 else 'exposed, not clicked'}): "
                                  f"choose a sampling strategy without it (ss_abc_random)")
            pick[borrowed] = pool[rng.integers(0, len(pool), int(borrowed.sum()))]
        return self.item[pick], borrowed

    def draw_unrecalled(self, rng: np.random.Generator, request: np.ndarray, max_rounds: int = 64) -> np.ndarray:
        """One item of Space C (not recalled in that request) per entry of `request`, uniformly: rejection
        sampling, vectorised over the rejected."""
        request = np.asarray(request, dtype=np.int64)
        out = rng.integers(0, self.n_items, len(request))
        todo = np.arange(len(request))
        for _ in range(max_rounds):
            keys = request[todo] * np.int64(self.n_items) + out[todo]
            pos = np.searchsorted(self._recalled_sorted, keys)
            hit = (pos < len(self._recalled_sorted)) & \
                (self._recalled_sorted[np.minimum(pos, len(self._recalled_sorted) - 1)] == keys)
            todo = todo[hit]
            if len(todo) == 0:
                return out
            out[todo] = rng.integers(0, self.n_items, len(todo))
        raise ConfigError("Space C is (nearly) empty: requests recall almost the whole catalogue, so there are no "
                          "unrecalled negatives; lower the recall size or use ss_a / ss_ab")


@dataclass(eq=False)
class NegativeDraw:
    """The negatives of every positive: `positive` (row positions in FunnelRows of the clicked pairs),
    `item` and `space` [n_pos, n_neg], `borrowed` [n_pos, n_neg] (drawn from another request's space)."""

    positive: np.ndarray
    item: np.ndarray
    space: np.ndarray
    borrowed: np.ndarray


def space_counts(strategy: str, n_neg: int, ratio=DEFAULT_RATIO) -> tuple[int, int, int]:
    """Negatives per positive from (A, B, C) under `strategy` (ss_abc_random: all from the whole catalogue,
    reported as C). The ratio is scaled to n_neg by largest remainders."""
    if strategy not in SAMPLING:
        raise ConfigError(f"unknown sampling {strategy!r}: choose one of {', '.join(SAMPLING)}")
    ratio = [float(r) for r in ratio]
    if len(ratio) != 3 or min(ratio) < 0:
        raise ConfigError(f"ratio must be three non-negative numbers A:B:C, got {ratio}")
    weights = {"ss_a": [1.0, 0.0, 0.0], "ss_ab": [ratio[0], ratio[1], 0.0], "ss_abc_random": [0.0, 0.0, 1.0],
               "ss_abc_fixed": ratio}[strategy]
    if sum(weights) <= 0:
        raise ConfigError(f"ratio {ratio} gives {strategy} no negatives: make its spaces' entries positive")
    share = np.asarray(weights) / sum(weights) * n_neg
    counts = np.floor(share).astype(int)
    for j in np.argsort(-(share - counts), kind="stable")[: n_neg - counts.sum()]:
        counts[j] += 1
    return int(counts[0]), int(counts[1]), int(counts[2])


def draw_negatives(funnel: FunnelRows, strategy: str, n_neg: int, rng: np.random.Generator,
                   ratio=DEFAULT_RATIO) -> NegativeDraw:
    """`n_neg` negatives for every clicked pair of `funnel` by `strategy` (see the module doc)."""
    if n_neg < 1:
        raise ConfigError(f"n_neg must be at least 1, got {n_neg}")
    n_a, n_b, n_c = space_counts(strategy, n_neg, ratio)
    pos = funnel.rows(POSITIVE)
    req = funnel.request[pos]
    items, spaces, borrowed = [], [], []
    for stage, n in ((SPACE_A, n_a), (SPACE_B, n_b)):
        for _ in range(n):
            it, bor = funnel.draw_stage(rng, req, stage)
            items.append(it)
            spaces.append(np.full(len(pos), stage, dtype=np.int8))
            borrowed.append(bor)
    for _ in range(n_c):
        if strategy == "ss_abc_random":
            it = _uniform_except(rng, funnel.item[pos], funnel.n_items)
            spaces.append(funnel.space_of(req, it))
        else:
            it = funnel.draw_unrecalled(rng, req)
            spaces.append(np.full(len(pos), SPACE_C, dtype=np.int8))
        items.append(it)
        borrowed.append(np.zeros(len(pos), dtype=bool))
    return NegativeDraw(positive=pos, item=np.stack(items, 1), space=np.stack(spaces, 1),
                        borrowed=np.stack(borrowed, 1))


def _uniform_except(rng: np.random.Generator, avoid: np.ndarray, n_items: int) -> np.ndarray:
    """Uniform items ≠ avoid[r] (uniform over the other n_items − 1)."""
    if n_items < 2:
        raise ConfigError("a catalogue of one item has no negatives")
    it = rng.integers(0, n_items - 1, len(avoid))
    return it + (it >= avoid)


def propensity_truth(model, funnel: FunnelRows | None, truth, seed: int, max_pairs: int = 200_000) -> dict:
    """`truth/recall_propensity_spearman` (the model's p̂1 against the true p1 on the test requests' recalled pairs
    plus as many unrecalled pairs, one drawn per recalled pair) and `truth/exposure_propensity_spearman` (p̂2
    against p2 on the recalled pairs): for models with `propensities(users, times, items) -> (p̂1, p̂2)` on a
    dataset whose truth knows them (the synthetic funnel); a seeded sample of `max_pairs` recalled pairs above
    that many. Empty otherwise."""
    from .truth import spearman

    fn = getattr(model, "propensities", None)
    if fn is None or funnel is None or len(funnel) == 0 or funnel.event_id is None or funnel.req_key is None \
            or getattr(truth, "recall_prob", None) is None:
        return {}
    rng = np.random.default_rng([seed, 17])
    rows = np.arange(len(funnel)) if len(funnel) <= max_pairs else np.sort(rng.choice(len(funnel), max_pairs,
                                                                                        replace=False))
    req = funnel.request[rows]
    unrecalled = funnel.draw_unrecalled(rng, req)
    users, times = funnel.req_user[req], funnel.req_time[req]
    p1_hat, p2_hat = fn(np.concatenate([users, users]), np.concatenate([times, times]),
                        np.concatenate([funnel.item[rows], unrecalled]))
    p1 = np.concatenate([truth.recall_prob[funnel.event_id[rows]],
                         truth.recall_propensity(funnel.req_key[req], unrecalled)])
    return {"truth/recall_propensity_spearman": spearman(np.asarray(p1_hat), p1),
            "truth/exposure_propensity_spearman": spearman(np.asarray(p2_hat)[:len(rows)],
                                                           truth.exposure_prob[funnel.event_id[rows]]),
            "truth/n_propensity_pairs": float(2 * len(rows))}
