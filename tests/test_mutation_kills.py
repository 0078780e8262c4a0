"""Tests that kill mutants mutmut found surviving (`make mutation`, reports/quality.md): each names the mutant it kills.
The wider survivor list is in reports/quality.md; tests/test_survivors.py holds the hand-mutation survivors."""
import math
import warnings

import numpy as np
import pytest
import test_report
import torch
from scipy import stats

from harness import report
from harness.report.statistics import holm, paired_p
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


# ------------------------------------------------------------------------------------------------ report statistics
# mutants: holm's `if m == 0` -> `m == 1` (one p-value becomes NaN); the cap `min(1.0, ...)` -> `min(2.0, ...)`
def test_holm_of_one_p_value_is_itself_and_adjusted_values_are_capped_at_one():
    assert holm([0.03]).tolist() == [0.03]
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]
    out = holm([0.01, math.nan, 0.04, 0.03])  # m = 3: 0.01*3, then max(0.03, 0.03*2), then max(0.06, 0.04*1)
    assert out[[0, 2, 3]] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(out[1])


# mutants: paired_p's `d = a - b` -> `a + b`; `wilcoxon(a, b)` -> `wilcoxon(b)` / `wilcoxon(a, None)`; the
# constant-shift tolerance `rtol=1e-9` -> `rtol=1.000000001`
def test_paired_p_is_scipys_paired_t_and_wilcoxon():
    a = np.array([0.31, 0.29, 0.35, 0.40, 0.33, 0.30])
    b = np.array([0.30, 0.30, 0.31, 0.36, 0.30, 0.31])
    t, w = paired_p(a, b)
    assert t == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert w == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-12)


# mutants: `len(d) < 2` -> `<= 2` / `< 3` (two seeds give no p-value); `or` -> `and` (equal runs get t = 0.0);
# `np.allclose(d, 0)` -> `np.allclose(d, 1)`; the constant-shift branch (`t = 0.0`) made 1.0 or never taken
def test_paired_p_edge_cases_two_seeds_no_difference_and_a_constant_shift():
    t, w = paired_p(np.array([0.5, 0.7]), np.array([0.4, 0.5]))
    assert t == pytest.approx(stats.ttest_rel([0.5, 0.7], [0.4, 0.5]).pvalue) and not math.isnan(w)
    assert all(math.isnan(p) for p in paired_p(np.array([0.5, 0.7]), np.array([0.5, 0.7])))
    assert all(math.isnan(p) for p in paired_p(np.array([0.5]), np.array([0.2])))
    a = np.array([0.3, 0.7, 0.1, 0.9])
    t, w = paired_p(a, a - 0.1)  # every seed better by 0.1 (up to rounding, so scipy's t-test is not exact): p = 0
    assert t == 0.0
    assert w == pytest.approx(stats.wilcoxon(a, a - 0.1).pvalue)


@pytest.fixture
def fake(tmp_path):
    """The report tests' fake tracker: three methods, three seeds, per-query artifacts."""
    return test_report.fake.__wrapped__(tmp_path)


# mutants: significance()'s row keys renamed ("task" -> "TASK", "best" -> "XXbestXX", ...), the marker looked up for
# the wrong method (`c.marks.get(None, "")`), `PerQuery(tracker) if per_query or True` and `_tests`' user p-values
# computed with `pq` None
def test_significance_rows_name_the_column_the_best_and_the_marker(fake):
    sig = report.significance(fake, "fake")
    row = sig[(sig.metric == "ndcg_10") & (sig.method == "item_pop")].iloc[0]
    assert (row.task, row.dataset, row.best, row.marker) == ("itemrec", "synthetic", "bpr(factors=64)", "†§")
    assert sig[(sig.metric == "ndcg_10") & (sig.method == "bpr(factors=8)")].iloc[0].marker == ""
    without = report.significance(fake, "fake", per_query=False)
    assert len(without) == len(sig) and without.p_users.isna().all() and not sig.p_users.isna().all()
