"""Tests that kill mutants mutmut found surviving (`make mutation`, reports/quality.md): each names the mutant it kills.
The wider survivor list is in reports/quality.md; tests/test_survivors.py holds the hand-mutation survivors."""
import math
import warnings

import numpy as np
import pytest
import torch

from plugins.metrics.ranking import coverage, mean_weight, median_weight, mrr


# ------------------------------------------------------------------------------------------------ metrics
# mutants: mrr's reciprocal ranks built without `dtype=hits.dtype` (float32 1/r, off by ~3e-8 relative)
def test_mrr_keeps_the_float64_precision_of_its_hits():
    hits = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    out = mrr(hits, torch.tensor([1.0, 1.0], dtype=torch.float64), 3)
    assert out.dtype == torch.float64
    assert out[0].item() == pytest.approx(1 / 3, rel=1e-12, abs=0)
    assert out[1].item() == 0.0


# mutants: coverage's empty-candidate branch (`float("nan")` -> `float(None)` / `float("XXnanXX")`, or the guard
# made always true so numpy averages an empty array); mean_weight's zero-retrieval branch likewise
def test_distribution_metrics_of_nothing_are_nan_without_a_numpy_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the mutants divide 0 by 0 in numpy: "invalid value" / "mean of empty slice"
        assert math.isnan(coverage(np.zeros(0, dtype=np.int64), np.zeros(0)))
        assert math.isnan(mean_weight(np.zeros(4, dtype=np.int64), np.arange(4.0)))
        assert math.isnan(median_weight(np.zeros(4, dtype=np.int64), np.arange(4.0)))
    assert coverage(np.array([0, 2, 0, 1]), np.zeros(4)) == 0.5
    assert mean_weight(np.array([0, 2, 0, 1]), np.array([9.0, 1.0, 9.0, 4.0])) == pytest.approx(2.0)
