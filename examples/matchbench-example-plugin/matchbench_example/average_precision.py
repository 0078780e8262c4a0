"""Metric `ap`: average precision at k with binary relevance, per query.

AP@k = sum over ranks j <= k of hit_j * precision@j, divided by min(|relevant|, k): the mean precision at the
ranks of the relevant items found, normalised so that a perfect top-k scores 1 even when a query has more
relevant items than k (the normalisation `recall_capped` and NDCG's ideal use).

The spec's `example` is a hand-computed case the conformance kit checks (k = 3, four ranks given):
    hits 1 0 1 0, 2 relevant:  (1/1 + 2/3) / 2       = 5/6
    hits 0 1 0 1, 3 relevant:  (1/2) / 3             = 1/6   (the hit at rank 4 is past k)
    hits 0 0 0 1, 1 relevant:  0
    hits 1 1 1 1, 5 relevant:  (1 + 1 + 1) / min(5, 3) = 1
"""
from __future__ import annotations

import torch

from harness.plugin import MetricCase, MetricSpec, hookimpl


def average_precision(hits: torch.Tensor, n_rel: torch.Tensor, k: int) -> torch.Tensor:
    h = hits[:, :k].to(hits.dtype if hits.is_floating_point() else torch.float64)  # 0/1: bool, int or float
    ranks = torch.arange(1, h.shape[1] + 1, dtype=h.dtype, device=h.device)
    precision_at = torch.cumsum(h, 1) / ranks
    return (h * precision_at).sum(1) / torch.clamp(n_rel.to(h.dtype), max=k)


EXAMPLE = MetricCase(k=3, hits=((1, 0, 1, 0), (0, 1, 0, 1), (0, 0, 0, 1), (1, 1, 1, 1)), n_rel=(2, 3, 1, 5),
                     expected=(5 / 6, 1 / 6, 0.0, 1.0))


@hookimpl
def register_metrics(register):
    register(MetricSpec(name="ap", factory=lambda: average_precision, direction=1, example=EXAMPLE,
                        description="AP@K: mean precision at the ranks of the relevant items found, over "
                                    "min(relevant, K) (example plugin)"))
