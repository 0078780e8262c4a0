"""Tests that kill mutants mutmut found surviving (`make mutation`, reports/quality.md): each names the mutant it kills.
The wider survivor list is in reports/quality.md; tests/test_survivors.py holds the hand-mutation survivors."""
import math
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import test_report
import torch
from scipy import stats

from harness import ranking, report
from harness.ctr import ImpressionRows, auc, calibration, ctr_metrics, gauc, logloss, truth_ctr_metrics
from harness.errors import ConfigError
from harness.report.statistics import holm, paired_p
from plugins.losses.inbatch import PRESETS, BCENeg, InBatchNCE, SampledSoftmax, register_losses
from plugins.losses.pairwise import BCELoss, BPRLoss
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


# ------------------------------------------------------------------------------------------------ CTR metrics
# mutants: auc's guard `n_pos == 0 or n_neg == 0` -> `and` (ZeroDivisionError) / `n_pos == 1` (one click gives NaN);
# gauc/logloss/calibration's empty or click-less branches (`float(None)`, `"XXnanXX"`, guards made always true or
# `obs >= 0`, `obs = 1.0` for no rows: numpy divides by zero); group_auc's errstate dropped (a user with one label
# warns); `s_rank.max(initial=None)` (no impressions raise)
def test_ctr_metrics_of_one_click_no_click_and_no_rows():
    assert auc(np.array([1, 0, 0]), np.array([0.9, 0.1, 0.2])) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(auc(np.zeros(3), np.array([0.1, 0.2, 0.3])))
        assert gauc(np.array([7, 7, 8, 8]), np.array([1, 0, 1, 1]), np.array([0.8, 0.3, 0.5, 0.6])) == (1.0, 1)
        value, left_out = gauc(np.array([7, 8]), np.array([1, 0]), np.array([0.5, 0.5]))
        assert math.isnan(value) and left_out == 2
        value, left_out = gauc(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))
        assert math.isnan(value) and left_out == 0
        assert math.isnan(logloss(np.zeros(0), np.zeros(0)))
        assert math.isnan(calibration(np.zeros(3), np.full(3, 0.2)))
        assert math.isnan(calibration(np.zeros(0), np.zeros(0)))


def _rows(label, user, event_id=None):
    n = len(label)
    return ImpressionRows(user=np.asarray(user), item=np.arange(n), time=np.arange(n, dtype=float),
                          label=np.asarray(label), seq_ptr=np.zeros(n + 1, dtype=np.int64),
                          seq_item=np.zeros(0, dtype=np.int64), seq_time=np.zeros(0), event_id=event_id)


# mutants: ctr_metrics' keys renamed ("logloss" -> "XXloglossXX", "calibration", "n_impressions", "n_users") or
# logloss computed without the probabilities
def test_ctr_metrics_names_every_figure():
    rows = _rows([1, 0, 1, 0], [0, 0, 1, 1])
    prob = np.array([0.8, 0.4, 0.3, 0.6])
    out = ctr_metrics(rows, prob)
    assert out == pytest.approx({"auc": 0.5, "gauc": 0.5, "logloss": logloss(rows.label, prob),
                                 "calibration": 1.05, "n_impressions": 4.0, "n_clicks": 2.0, "n_users": 2.0,
                                 "n_users_without_both": 0.0})


class _Truth:
    def click_probability(self, event_id):
        return np.array([0.9, 0.1, 0.7, 0.2])[event_id]


# mutants: truth_ctr_metrics' every line (no selected test reached it: the model tests that do are left out of the
# ctr target for time): the lookup of click_probability, its guards, the keys and arguments of the three figures
def test_truth_ctr_metrics_compare_predicted_and_true_click_probabilities():
    rows = _rows([1, 0, 1, 0], [0, 0, 1, 1], event_id=np.array([0, 1, 2, 3]))
    prob = np.array([0.8, 0.4, 0.3, 0.6])
    out = truth_ctr_metrics(_Truth(), rows, prob)
    true_p = np.array([0.9, 0.1, 0.7, 0.2])
    assert out == pytest.approx({"truth/ctr_spearman": stats.spearmanr(prob, true_p).statistic,
                                 "truth/ctr_pearson": stats.pearsonr(prob, true_p).statistic,
                                 "truth/ctr_auc_oracle": 1.0})
    assert truth_ctr_metrics(object(), rows, prob) == {}
    assert truth_ctr_metrics(_Truth(), _rows([1, 0, 1, 0], [0, 0, 1, 1]), prob) == {}
    assert truth_ctr_metrics(_Truth(), _rows([], [], event_id=np.zeros(0, dtype=np.int64)), np.zeros(0)) == {}


# ------------------------------------------------------------------------------------------------ ranking engine
# mutants: block_rows' cap 65536 -> 65537, its floor of one row -> two, the budget in MiB `* 2**20` -> `/ 2**20` or
# `* 2 * 20`
def test_block_rows_fits_the_budget_between_one_row_and_the_cap():
    assert ranking.block_rows(1000, 1.0) == 2**20 // (1000 * ranking.BYTES_PER_SCORE)
    assert ranking.block_rows(1, 10_000.0) == 65536
    assert ranking.block_rows(10**9, 1.0) == 1


def _reference_topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Columns by descending score, ties by the lower column (a stable sort of the negated scores)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


# mutants: mask_block returning early when a block has exactly one excluded pair (`sub.nnz == 1`). The tie
# reference also guards topk_block's in-top-k tie repair (`if k > 2`, `vals[:, :+1]`), but on the CPU torch.topk
# already returns tied columns in index order, so those two mutants survive it there (they need a CUDA run)
@pytest.mark.parametrize("k", [2, 3, 5])
def test_topk_breaks_every_tie_by_the_lower_column_and_masks_a_single_pair(k):
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 4, size=(300, 40)).astype(np.float32)  # many ties inside and across the cut
    _, idx = ranking.topk_block(torch.from_numpy(scores.copy()), k)
    assert (idx.numpy() == _reference_topk(scores, k)).all()
    one = torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    ranking.mask_block(one, sp.csr_matrix(([1], ([1], [0])), shape=(2, 3)), slice(0, 2))
    assert one[1, 0] == -torch.inf and one[0, 0] == 3.0


# mutants: topk_rows' outputs built without their dtypes (index float64, scores float64), the scores not stored
# (`out_s[blk] = None`, `score=None`), `block_size` ignored, float64 scores not cast to float32 first (ties that
# exist in float32 then break by the larger float64 score instead of the lower column)
def test_topk_rows_returns_int64_columns_and_float32_scores_block_by_block():
    u, v = torch.randn(10, 4), torch.randn(30, 4)
    calls = []

    def scorer(rows):
        calls.append(len(rows))
        return u[torch.as_tensor(rows)] @ v.T

    top = ranking.topk_rows(scorer, 10, 30, 5, block_size=3)
    assert calls == [3, 3, 3, 1]
    assert top.index.dtype == np.int64 and top.score.dtype == np.float32
    full = (u @ v.T).numpy()
    assert (top.index == _reference_topk(full, 5)).all()
    assert np.allclose(top.score, np.take_along_axis(full, top.index, 1))
    near = ranking.topk_rows(lambda rows: torch.tensor([[1.0, 1.0 + 1e-12, 0.5]], dtype=torch.float64), 1, 3, 2)
    assert near.index.tolist() == [[0, 1]]  # equal in float32: the lower column first


# mutants: factor_scorer's contiguous-block fast path taken for blocks that are not contiguous (`or True`, `or`,
# `- 1 ==`, `block[+1]`, `block[-2]`, `block[1]`, `!=`) or the gather built from None / without the block
def test_factor_scorer_scores_exactly_the_rows_of_any_block():
    u, v = torch.randn(8, 3), torch.randn(5, 3)
    score = ranking.factor_scorer(u, v)
    for block in ([0, 2, 5], [0, 3, 5], [0, 1, 4], [3, 4, 5], [6]):
        assert torch.allclose(score(np.array(block)), u[block] @ v.T), block
    subset = ranking.factor_scorer(u, v, rows=np.array([7, 1, 4]))
    assert torch.allclose(subset(np.array([0, 2])), u[[7, 4]] @ v.T)


# ------------------------------------------------------------------------------------------------ losses
# mutants: BPR's and BCE's every operator (no selected test called them: bpr's own tests are model tests)
def test_pairwise_and_pointwise_losses_by_hand():
    pos, neg = torch.tensor([2.0, 0.5]), torch.tensor([1.0, 1.5])
    sig = torch.sigmoid
    assert BPRLoss()(pos, neg).item() == pytest.approx(-(math.log(sig(torch.tensor(1.0))) +
                                                         math.log(sig(torch.tensor(-1.0)))) / 2, rel=1e-6)
    bce = -((torch.log(sig(pos)).mean() + torch.log(sig(-neg)).mean()) / 2).item()
    assert BCELoss()(pos, neg).item() == pytest.approx(bce, rel=1e-6)


def _specs():
    out = {}
    register_losses(lambda spec: out.__setitem__(spec.name, spec))
    return out


# mutants: the constructors' defaults (alpha..delta_beta = 2, negatives = 101, power = 2.0, "XXuniformXX") that
# differ from the registry's declared defaults, and _preset passing the Table II switches in the wrong slots
def test_constructor_defaults_are_the_declared_ones_and_presets_follow_table_two():
    specs = _specs()
    for name in ("nce_eq10", "ssm", "bce_neg"):
        declared = {p.name: p.default for p in specs[name].params}
        bare, explicit = specs[name].factory(), specs[name].factory(**declared)
        assert vars(bare) == vars(explicit), name
    for name, (a, b, da, db, _) in PRESETS.items():
        loss = specs[name].factory()
        assert (loss.alpha, loss.beta, loss.delta_alpha, loss.delta_beta) == (a, b, da, db), name


# mutants: every error message of the losses (the name of the bad switch, "alpha=beta=0", the choices of bce_neg,
# "item"/"user" in the zero-weight error) replaced or emptied; `w.sum() <= 0` -> `< 0` (all-zero counts give NaN
# probabilities) or `<= 1` (a single training event is refused)
def test_loss_errors_name_the_culprit():
    for kwargs, part in (({"alpha": 2}, "loss: alpha must be 0 or 1"), ({"beta": 2}, "loss: beta must be 0 or 1"),
                         ({"delta_alpha": 3}, "loss: delta_alpha must be 0 or 1"),
                         ({"delta_beta": -1}, "loss: delta_beta must be 0 or 1"),
                         ({"alpha": 0, "beta": 0}, "alpha=beta=0 leaves no loss; set alpha (row part) and/or beta")):
        with pytest.raises(ConfigError, match=re.escape(part)):
            InBatchNCE(**kwargs)
    with pytest.raises(ConfigError, match=r"negatives='users' is not one of \['user', 'item', 'user_item'"):
        BCENeg("users")
    with pytest.raises(ValueError, match="every item has zero weight"):
        SampledSoftmax().plan(np.ones(3), np.zeros(4))
    with pytest.raises(ValueError, match="every item has zero weight"):
        BCENeg("item").plan(np.ones(3), np.zeros(4))
    with pytest.raises(ValueError, match="every user has zero weight"):
        BCENeg("user").plan(np.zeros(3), np.ones(4))
    assert SampledSoftmax().plan(np.ones(3), np.array([0.0, 1.0])).q_item.tolist() == [0.0, 1.0]


# mutants: ssm's proposal `c ** power` -> `c * power`, and with power 0 `(c > 0)` -> `(c > 1)`
def test_sampled_softmax_proposal_is_count_to_the_power_over_seen_items():
    counts = np.array([0.0, 1.0, 4.0, 9.0])
    assert SampledSoftmax(power=0.5).plan(None, counts).q_item == pytest.approx([0, 1 / 6, 2 / 6, 3 / 6])
    assert SampledSoftmax(power=0.0).plan(None, counts).q_item == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3])
