"""Checks every metric plugin passes: it matches the hand-computed case its spec carries (`example`, a
`MetricCase`), its values are well formed (one finite value per query, in the hits' dtype, for per-query
metrics; one finite number for set metrics), and a rate stays in [0, 1].

Which metrics are rates: those with direction +1 whose example's expected values all lie in [0, 1]. A metric
whose example goes outside [0, 1] (an unnormalised DCG, a mean popularity) is not one, and the range part is
skipped for it.

Internal: plugin authors run these checks through `harness.testing`; this module may change between versions.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import PluginCase, check, require

N, K_MAX = 7, 10


def function(case: PluginCase) -> Any:
    return case.cached("metric", case.create)


def per_query_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random hits [N, K_MAX] (0/1, float64 as the engine passes them) and n_rel >= the hits of each row (>= 1);
    one row without any hit and one with every rank a hit."""
    rng = np.random.default_rng(seed)
    hits = (rng.random((N, K_MAX)) < 0.3).astype(np.float64)
    hits[0], hits[1] = 0.0, 1.0
    n_rel = hits.sum(1) + rng.integers(0, 4, N)
    return torch.as_tensor(hits), torch.as_tensor(np.maximum(n_rel, 1.0))


def set_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 5, 30)
    counts[:3] = 0
    return counts, rng.integers(1, 50, 30).astype(np.float64)


def values(case: PluginCase, seed: int = 0) -> list[np.ndarray]:
    """The metric on random inputs: per query at k = 1, 5, 10, or one set value."""
    fn = function(case)
    if case.spec.per_query:
        hits, n_rel = per_query_inputs(seed)
        out = []
        for k in (1, 5, K_MAX):
            v = fn(hits, n_rel, k)
            require(isinstance(v, torch.Tensor), f"returned {type(v).__name__}, not a tensor of per-query values")
            require(tuple(v.shape) == (N,), f"returned shape {tuple(v.shape)} for {N} queries at k={k}")
            require(v.dtype == hits.dtype, f"returned dtype {v.dtype} for hits of dtype {hits.dtype}; keep the "
                                           "hits' dtype (the engine averages in float64)")
            out.append(v.numpy())
        return out
    counts, weight = set_inputs(seed)
    v = fn(counts, weight)
    require(isinstance(v, (float, int, np.floating, np.integer)) and not isinstance(v, bool),
            f"a set metric returns one number, got {type(v).__name__}")
    return [np.asarray([float(v)])]


@check("metric")
def check_metric_matches_its_example(case: PluginCase) -> None:
    """The spec's `example` (a hand-computed MetricCase) comes out as expected, to 1e-9."""
    ex, fn = case.spec.example, function(case)
    require(ex is not None, f"its spec has no example; add example=MetricCase(...) with a hand-computed case "
                            f"({'hits, n_rel, k' if case.spec.per_query else 'counts, weight'}, expected), as the "
                            "built-in metrics in plugins/metrics/ranking.py do")
    want = np.asarray(ex.expected, dtype=np.float64)
    if case.spec.per_query:
        hits = torch.as_tensor(np.asarray(ex.hits, dtype=np.float64).reshape(len(ex.hits), -1))
        got = fn(hits, torch.as_tensor(np.asarray(ex.n_rel, dtype=np.float64)), int(ex.k))
        got = np.asarray(torch.as_tensor(got), dtype=np.float64)
    else:
        got = np.asarray(fn(np.asarray(ex.counts), np.asarray(ex.weight, dtype=np.float64)), dtype=np.float64)
    require(got.shape == want.shape and np.allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True),
            f"on its example it gives {np.round(got, 12).tolist()}, the example expects {want.tolist()}")


@check("metric")
def check_metric_values_are_well_formed(case: PluginCase) -> None:
    """Per-query: one finite value per query, in the hits' dtype, at k = 1, 5, 10. Set: one finite number."""
    for v in values(case):
        require(np.isfinite(v).all(), f"non-finite values {v.tolist()} on valid inputs")


@check("metric")
def check_rate_metrics_stay_in_unit_interval(case: PluginCase) -> None:
    """A rate (direction +1, example values in [0, 1]) stays in [0, 1] on random inputs."""
    ex = case.spec.example
    if case.spec.direction != 1 or ex is None:
        return
    want = np.asarray(ex.expected, dtype=np.float64)
    if not ((want >= 0) & (want <= 1)).all():
        return
    for seed in range(3):
        for v in values(case, seed):
            require(((v >= -1e-12) & (v <= 1 + 1e-12)).all(), f"a rate outside [0, 1]: {v.tolist()}")
