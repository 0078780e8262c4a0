"""Ranking metrics with binary relevance, as ranx defines them, vectorised over a block.

Per-query metrics take `hits` [n, K] (1.0 where the item at rank j is relevant), `n_rel` [n]
(the number of relevant items of each query) and the cut-off k. Set-level metrics take the
per-candidate retrieval counts at k and a per-candidate weight (popularity or activeness).
"""
from __future__ import annotations

from math import log2

import numpy as np
import torch

from harness.plugin import MetricCase, MetricSpec, hookimpl


def _found(hits, k):
    return hits[:, :k].sum(1)


def recall(hits, n_rel, k):
    """|relevant in top-k| / |relevant|."""
    return _found(hits, k) / n_rel


def recall_capped(hits, n_rel, k):
    """UniMatch's Recall@N: |relevant in top-k| / min(|relevant|, k)."""
    return _found(hits, k) / torch.clamp(n_rel, max=k)


def precision(hits, n_rel, k):
    return _found(hits, k) / k


def hit(hits, n_rel, k):
    return (_found(hits, k) > 0).to(hits.dtype)


def mrr(hits, n_rel, k):
    """Reciprocal rank of the first relevant item within the top-k (0 if none)."""
    recip = 1.0 / torch.arange(1, k + 1, dtype=hits.dtype, device=hits.device)
    return (hits[:, :k] * recip).max(1).values


def ndcg(hits, n_rel, k):
    """DCG with 1/log2(rank+1) discounts over the ideal DCG of min(|relevant|, k) hits."""
    disc = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=hits.dtype, device=hits.device))
    dcg = (hits[:, :k] * disc).sum(1)
    ideal = torch.cumsum(disc, 0)[(torch.clamp(n_rel, max=k) - 1).long()]
    return dcg / ideal


def coverage(counts, weight):
    """Fraction of all candidates (items, or user-states) retrieved in at least one top-k."""
    return float((counts > 0).mean()) if len(counts) else float("nan")


def mean_weight(counts, weight):
    """Mean weight (training popularity / activeness) of everything retrieved."""
    total = counts.sum()
    return float((counts * weight).sum() / total) if total else float("nan")


def median_weight(counts, weight):
    """Median weight of everything retrieved, each retrieval counted once (UniMatch Table XI): the weight at
    which the cumulative retrieval count first reaches half of all retrievals (the lower median)."""
    counts, weight = np.asarray(counts, dtype=np.float64), np.asarray(weight, dtype=np.float64)
    total = counts.sum()
    if not total:
        return float("nan")
    order = np.argsort(weight, kind="stable")
    cum = np.cumsum(counts[order])
    return float(weight[order][np.searchsorted(cum, total / 2.0)])


PER_QUERY = {
    "recall": (recall, "Recall@K: found relevant / all relevant"),
    "recall_capped": (recall_capped, "UniMatch Recall@N: found relevant / min(relevant, K)"),
    "precision": (precision, "Precision@K: found relevant / K"),
    "hit": (hit, "Hit@K: 1 if any relevant item is in the top-K"),
    "mrr": (mrr, "MRR@K: reciprocal rank of the first relevant item"),
    "ndcg": (ndcg, "NDCG@K with binary relevance (ranx's definition)"),
}


# Hand-computed cases the conformance kit checks each metric against (harness.testing).
# Per-query: three queries ranked to depth 4, cut at k = 3 (the rank-4 hits must not count):
#   query 0: hits [1, 0, 1, 0], 2 relevant;  query 1: [0, 1, 0, 1], 5 relevant;  query 2: [0, 0, 0, 1], 1 relevant.
# Found in the top 3: 2, 1, 0. First hit at rank 1, 2, none.
HITS, N_REL, K = ((1, 0, 1, 0), (0, 1, 0, 1), (0, 0, 0, 1)), (2, 5, 1), 3
EXAMPLES = {
    "recall": (2 / 2, 1 / 5, 0 / 1),                       # found / relevant
    "recall_capped": (2 / min(2, 3), 1 / min(5, 3), 0.0),  # found / min(relevant, k) = 1, 1/3, 0
    "precision": (2 / 3, 1 / 3, 0 / 3),                    # found / k
    "hit": (1.0, 1.0, 0.0),                                # any found
    "mrr": (1 / 1, 1 / 2, 0.0),                            # 1 / rank of the first hit within k
    "ndcg": (
        # DCG = 1/log2(1+1) + 1/log2(3+1) = 1 + 1/2; ideal DCG of min(2, 3) = 2 hits = 1 + 1/log2(3)
        (1 + 1 / 2) / (1 + 1 / log2(3)),
        # DCG = 1/log2(2+1); ideal DCG of min(5, 3) = 3 hits = 1 + 1/log2(3) + 1/log2(4)
        (1 / log2(3)) / (1 + 1 / log2(3) + 1 / 2),
        0.0),
}
# Set metrics: five candidates retrieved 2, 0, 1, 0, 2 times (5 retrievals) with weights 10, 50, 4, 7, 1.
COUNTS, WEIGHT = (2, 0, 1, 0, 2), (10.0, 50.0, 4.0, 7.0, 1.0)
COVERAGE = MetricCase(expected=3 / 5, counts=COUNTS, weight=WEIGHT)          # candidates 0, 2, 4 of 5
MEAN_WEIGHT = MetricCase(expected=(2 * 10 + 1 * 4 + 2 * 1) / 5, counts=COUNTS, weight=WEIGHT)  # 26 / 5 = 5.2
# retrieved weights, each retrieval once, sorted: 1, 1, 4, 10, 10 -> the 3rd of 5 is 4
MEDIAN_WEIGHT = MetricCase(expected=4.0, counts=COUNTS, weight=WEIGHT)


@hookimpl
def register_metrics(register):
    for name, (fn, doc) in PER_QUERY.items():
        register(MetricSpec(name=name, factory=lambda fn=fn: fn, description=doc,
                            example=MetricCase(expected=EXAMPLES[name], hits=HITS, n_rel=N_REL, k=K)))
    register(MetricSpec(name="coverage", factory=lambda: coverage, per_query=False, example=COVERAGE,
                        description="catalogue coverage@K: share of candidates retrieved for anyone"))
    register(MetricSpec(name="popularity", factory=lambda: mean_weight, per_query=False, tasks=("itemrec",),
                        direction=0, example=MEAN_WEIGHT,
                        description="mean training popularity (event count) of retrieved items"))
    register(MetricSpec(name="activeness", factory=lambda: mean_weight, per_query=False, tasks=("userrec",),
                        direction=0, example=MEAN_WEIGHT,
                        description="mean activeness (history length) of retrieved user-states"))
    register(MetricSpec(name="popularity_median", factory=lambda: median_weight, per_query=False,
                        tasks=("itemrec",), direction=0, example=MEDIAN_WEIGHT,
                        description="median training popularity of retrieved items (UniMatch Table XI)"))
    register(MetricSpec(name="activeness_median", factory=lambda: median_weight, per_query=False,
                        tasks=("userrec",), direction=0, example=MEDIAN_WEIGHT,
                        description="median activeness of retrieved user-states (UniMatch Table XI)"))


