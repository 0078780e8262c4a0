"""Planners (matching task): topk, greedy, dual offline/online, against hand-computed cases and the LP
relaxation of RIM Eq. 9 solved by HiGHS; streaming invariance; matching metrics; suites end to end."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import tiny_suite
from scipy.optimize import linprog

from harness import api
from harness.errors import ConfigError
from harness.matching import NEG, Constraints, FactorScores, PlanningScores, matching_metrics, perplexity
from harness.registry import Registry
from harness.runner import make_tracker
from harness.suite import build_suite
from plugins.planners.dual import Dual
from plugins.planners.greedy import Greedy, greedy_accept
from plugins.planners.topk import TopK


def dense(S, kind="intensity", exclude=None, seed=0, **kw):
    S = np.asarray(S, np.float32)
    return PlanningScores(FactorScores(S, np.eye(S.shape[1])), kind, exclude, seed, **kw)


def lam_of(scores):
    return torch.cat([b for _, b in scores.blocks()]).numpy().astype(np.float64)


def lp_relaxation(lam, k, c_min, c_max=None):
    """RIM Eq. 9 (counts): max sum lam*pi s.t. sum_y pi <= K, c_min <= sum_x pi <= c_max, 0 <= pi <= 1,
    pi = 0 on excluded pairs."""
    n_x, n_y = lam.shape
    rows_x = sp.kron(sp.eye(n_x), np.ones((1, n_y)))
    rows_y = sp.kron(np.ones((1, n_x)), sp.eye(n_y))
    a, b = [rows_x, -rows_y], [np.full(n_x, k), np.full(n_y, -c_min)]
    if c_max is not None:
        a.append(rows_y)
        b.append(np.full(n_y, c_max))
    ub = (lam > NEG / 2).ravel().astype(float)
    res = linprog(-np.where(lam > NEG / 2, lam, 0).ravel(), A_ub=sp.vstack(a).tocsr(), b_ub=np.concatenate(b),
                  bounds=np.c_[np.zeros(n_x * n_y), ub], method="highs")
    assert res.status == 0, res.message
    return -res.fun, res.x.reshape(n_x, n_y)


# ----------------------------------------------------------------------------- dual vs the LP
def test_three_by_three_comes_out_as_a_permutation():
    S = [[1, 2, 3], [2, 4, 6], [3, 6, 9]]
    for seed in range(3):
        a = Dual(alpha=1 / 3, beta=1 / 3).plan(dense(S, seed=seed)).assignment.toarray()
        assert (a.sum(0) == 1).all() and (a.sum(1) == 1).all(), a
        assert np.array_equal(a, np.eye(3))  # the unique optimum (rearrangement inequality): 1 + 4 + 9


LP_CASES = [  # (seed, states, items, K, min exposure count, max exposure count or None, excluded share)
    (0, 80, 30, 2, 4, None, 0.0),
    (1, 45, 35, 1, 1, None, 0.0),
    (2, 60, 20, 3, 6, None, 0.1),
    (3, 70, 25, 2, 2, 10, 0.0),
]


@pytest.mark.parametrize("seed,n_x,n_y,k,c_min,c_max,excl", LP_CASES)
def test_dual_matches_the_lp_relaxation(seed, n_x, n_y, k, c_min, c_max, excl):
    """Objective within 1% of HiGHS's optimum; user capacity exact; every item's exposure within one
    state of [c_min, c_max] (the stated tolerance of the eps -> 0 rounding)."""
    rng = np.random.default_rng(seed)
    S = np.exp(rng.normal(size=(n_x, 4)) @ rng.normal(size=(n_y, 4)).T / 2)
    exclude = sp.csr_matrix(rng.random((n_x, n_y)) < excl) if excl else None
    scores = dense(S, exclude=exclude, seed=seed)
    lam = lam_of(scores)
    opt, _ = lp_relaxation(lam, k, c_min, c_max)
    planner = Dual(alpha=k / n_y, beta=c_min / n_x, beta_max=None if c_max is None else c_max / n_x, steps=5)
    a = planner.plan(scores).assignment.toarray()
    assert abs((a * lam).sum() / opt - 1) < 0.01
    assert (a.sum(1) <= k).all()
    assert (a.sum(0) >= c_min - 1).all()
    if c_max is not None:
        assert (a.sum(0) <= c_max + 1).all()
    if exclude is not None:
        assert not (a * exclude.toarray()).any()


def test_dual_streams_blocks_with_the_same_result():
    rng = np.random.default_rng(5)
    u, v = rng.normal(size=(60, 8)), rng.normal(size=(25, 8))
    excl = sp.csr_matrix(rng.random((60, 25)) < 0.1)
    big = PlanningScores(FactorScores(u, v), "logit", excl, seed=1)
    small = PlanningScores(FactorScores(u, v), "logit", excl, seed=1, block_size=7)
    assert small.rows_per_block() == 7 < 60 and big.rows_per_block() >= 60
    p_big, p_small = Dual(alpha=0.12, beta=0.05, epochs=15), Dual(alpha=0.12, beta=0.05, epochs=15)
    a_big, a_small = p_big.plan(big).assignment, p_small.plan(small).assignment
    # roots are accepted within the solver's count tolerance (TOL_COUNT) from warm starts, so float
    # summation order can move v within that band: the same plan up to a few pairs at the margin
    assert np.allclose(p_big.v.numpy(), p_small.v.numpy(), atol=2e-2)
    assert (a_big != a_small).nnz <= 0.05 * a_big.nnz
    # a tiny memory budget gives one state per block, and still (nearly) the same plan
    tiny = PlanningScores(FactorScores(u, v), "logit", excl, seed=1, budget_mib=1e-4)
    assert tiny.rows_per_block() == 1
    assert (Dual(alpha=0.12, beta=0.05, epochs=15).plan(tiny).assignment != a_big).nnz <= 0.05 * a_big.nnz


def test_online_dual_meets_beta_on_states_it_never_saw():
    rng = np.random.default_rng(7)
    items = rng.normal(size=(40, 6))
    pop = np.linspace(2, 0, 40)  # skewed item popularity: top-K alone starves most items

    def states(n):
        return np.c_[rng.normal(size=(n, 6)), np.ones(n)]

    v = np.c_[items, pop]
    cal = PlanningScores(FactorScores(states(600), v), "log_intensity", seed=0)
    test = PlanningScores(FactorScores(states(600), v), "log_intensity", seed=1)
    c = Constraints(alpha=0.05, beta=0.02)
    online = Dual(alpha=0.05, beta=0.02, mode="online", epochs=60)
    plan = online.plan(test, cal)
    exposure = plan.assignment.sum(0).A.ravel() / 600
    assert np.mean(exposure >= 0.5 * c.beta) >= 0.95          # approximately: at least half of beta, nearly everywhere
    assert np.quantile(exposure, 0.1) >= 0.6 * c.beta            # the least exposed items sit near beta
    assert (plan.assignment.sum(1) <= 2).all()
    top = TopK(alpha=0.05).plan(test).assignment.sum(0).A.ravel() / 600
    assert top.min() == 0 < exposure.min()                      # the test can fail: top-K starves items
    assert np.mean(top >= 0.5 * c.beta) < np.mean(exposure >= 0.5 * c.beta)
    with pytest.raises(ConfigError, match="calibration"):
        Dual(alpha=0.05, beta=0.02, mode="online").plan(test, None)


# ----------------------------------------------------------------------------- greedy and topk by hand
def test_topk_and_greedy_on_hand_computed_cases():
    S = [[9, 8, 1], [7, 3, 2], [6, 5, 4]]
    top = TopK(alpha=1 / 3).plan(dense(S)).assignment.toarray()
    assert np.array_equal(top, [[1, 0, 0], [1, 0, 0], [1, 0, 0]])
    # global order 9(0,0) 8(0,1)x 7(1,0)x 6(2,0)x 5(2,1) 4(2,2)x 3(1,1)x 2(1,2): each item at most once
    g = Greedy(alpha=1 / 3, beta_max=1 / 3).plan(dense(S)).assignment.toarray()
    assert np.array_equal(g, [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    # beta = 1/2 of 4 states: phase 1 gives each item two states in global order; top-K gives item 0 all four
    S2 = [[9, 1], [8, 2], [7, 3], [6, 4]]
    g2 = Greedy(alpha=0.5, beta=0.5).plan(dense(S2)).assignment.toarray()
    assert np.array_equal(g2, [[1, 0], [1, 0], [0, 1], [0, 1]])
    assert np.array_equal(TopK(alpha=0.5).plan(dense(S2)).assignment.toarray()[:, 0], [1, 1, 1, 1])
    # seen pairs are never assigned
    excl = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0]]))
    assert TopK(alpha=1 / 3).plan(dense(S, exclude=excl)).assignment.toarray()[0].tolist() == [0, 1, 0]


def test_greedy_fixed_point_equals_the_sequential_loop():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n_x, n_y = rng.integers(2, 30), rng.integers(2, 30)
        order = rng.permutation(n_x * n_y)
        xs, ys = order // n_y, order % n_y
        cap_x, cap_y = rng.integers(0, 4, n_x), rng.integers(0, 6, n_y)
        ref, kx, ky = np.zeros(len(xs), bool), cap_x.copy(), cap_y.copy()
        for i, (x, y) in enumerate(zip(xs, ys, strict=False)):  # the authors' sequential rule
            if kx[x] > 0 and ky[y] > 0:
                kx[x] -= 1
                ky[y] -= 1
                ref[i] = True
        assert np.array_equal(greedy_accept(xs, ys, cap_x, cap_y), ref)


def test_ties_are_broken_by_a_seeded_perturbation_and_scores_become_intensities():
    S = np.ones((4, 5), np.float32)
    a0 = TopK(alpha=0.2).plan(dense(S, seed=0)).assignment
    assert (a0 != TopK(alpha=0.2).plan(dense(S, seed=0)).assignment).nnz == 0
    assert any((TopK(alpha=0.2).plan(dense(S, seed=s)).assignment != a0).nnz for s in range(1, 5))
    raw = np.array([[-3.0, 0.0, 2.0]], np.float32)
    for kind, want in (("logit", np.log1p(np.exp(raw)) / np.log1p(np.exp(2.0))), ("log_intensity", np.exp(raw - 2.0)),
                       ("intensity", np.clip(raw, 0, None) / 2.0)):
        assert np.allclose(lam_of(dense(raw, kind)), want, atol=2e-6), kind


# ----------------------------------------------------------------------------- metrics
def test_matching_metrics_on_a_hand_computed_assignment():
    a = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]], np.float32))
    t = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0]], np.float32))
    m = matching_metrics(a, t, Constraints(alpha=0.5, beta=1 / 3, beta_max=0.5))
    assert m["precision"] == pytest.approx(2 / 4)                       # hits (0,0), (2,2) of 4 assigned
    assert m["recall"] == pytest.approx((1 / 2 + 1) / 2)               # state 1 has no target: left out
    assert m["n_without_target"] == 1
    assert m["item_perplexity"] == pytest.approx(np.exp(-(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25))))
    assert m["user_perplexity"] == pytest.approx(perplexity([2, 1, 1]))
    assert m["item_coverage"] == pytest.approx(3 / 4)
    assert m["beta_satisfied"] == pytest.approx(3 / 4)                  # exposures 2,1,1,0 vs beta·|X| = 1
    assert m["beta_max_satisfied"] == pytest.approx(3 / 4)              # 2 > 0.5·3
    assert m["delivered_share"] == pytest.approx(np.mean([2, 1, 1, 0]) / 3)
    assert m["per_state"] == pytest.approx(4 / 3)
    assert perplexity([5, 5, 5, 5]) == pytest.approx(4.0) and perplexity([0, 0]) == 0.0


# ----------------------------------------------------------------------------- errors
def test_bad_constraints_give_clear_errors():
    with pytest.raises(ConfigError, match=r"beta=0.02 > alpha=0.01.*infeasible.*lower beta"):
        Dual(alpha=0.01, beta=0.02)
    with pytest.raises(ConfigError, match=r"beta_max.*\[beta, 1\]"):
        Greedy(alpha=0.1, beta=0.05, beta_max=0.01)
    assert TopK(alpha=0.1).plan(dense(np.ones((3, 5)))).assignment.sum(1).tolist() == [[1]] * 3  # K = ceil(0.5)
    with pytest.raises(ConfigError, match="max_pairs"):
        Greedy(alpha=0.5, max_pairs=5).plan(dense(np.ones((3, 4))))
    reg = Registry.load()
    base = tiny_suite(tasks=["itemrec", "matching"], models=[{"name": "item_pop"}])
    with pytest.raises(ConfigError) as err:
        build_suite({**base, "planners": [{"name": "dual", "alpha": 0.01, "beta": [0.001, 0.02]},
                                          {"name": "dula"}]}, reg)
    msg = str(err.value)
    assert "planners[0]" in msg and "beta=0.02 > alpha=0.01" in msg and "did you mean 'dual'" in msg
    with pytest.raises(ConfigError, match="add matching to tasks"):
        build_suite({**base, "tasks": ["itemrec"], "planners": ["topk"]}, reg)
    with pytest.raises(ConfigError, match="'matching' needs planners"):
        build_suite(base, reg)


# ----------------------------------------------------------------------------- end to end
def test_suite_with_planners_runs_end_to_end_into_mlflow(workdir):
    reg = Registry.load()
    suite = tiny_suite(
        tasks=["itemrec", "matching"], metrics=["recall"], models=[{"name": "item_pop"}, {"name": "bpr", "factors": 8,
                                                                                          "epochs": 2}],
        datasets=[{"name": "synthetic", "n_users": 150, "n_items": 50, "days": 30.0}],
        split={"name": "temporal", "horizon": 7, "calibration": 7},
        planners=[{"name": "topk", "alpha": 0.04}, {"name": "greedy", "alpha": 0.04, "beta": 0.01},
                  {"name": "dual", "alpha": 0.04, "beta": [0.0, 0.01], "epochs": 20},
                  {"name": "dual", "alpha": 0.04, "beta": 0.01, "mode": "online", "epochs": 20}])
    s = build_suite(suite, reg)
    assert [p.label for p in s.cells[0].settings.planners] == [
        "topk", "greedy_b0.01", "dual_b0", "dual_b0.01", "dual_online_b0.01"]
    frame = api.run(suite, registry=reg)
    assert (frame.status == "FINISHED").all(), frame.error.tolist()
    for label in ("topk", "greedy_b0.01", "dual_b0", "dual_b0.01", "dual_online_b0.01"):
        for metric in ("precision", "recall", "item_perplexity", "user_perplexity", "beta_satisfied",
                       "delivered_share"):
            col = f"metrics.matching/{label}/{metric}"
            assert col in frame and frame[col].notna().all(), col
    # offline dual meets beta (one item at most a state short); top-K does not have to
    assert (frame["metrics.matching/dual_b0.01/per_state"] <= 2 + 1e-9).all()
    assert (frame["metrics.matching/dual_b0.01/item_perplexity"] > frame["metrics.matching/topk/item_perplexity"]).all()
    runs = make_tracker(reg, s).runs("tiny")
    assert runs["metrics.matching/dual_online_b0.01/precision"].notna().all()
    # the dual's own account of its plan lands beside the plan's metrics: items still short of β after the
    # feasibility repair (0 here: feasible) and the swaps the repair made; planners without a repair have neither
    assert (frame["metrics.matching/dual_b0.01/beta_unmet_items"] == 0).all()
    assert (frame["metrics.matching/dual_b0.01/repair_swaps"] >= 0).all()
    assert "metrics.matching/greedy_b0.01/repair_swaps" not in frame


def test_topk_ignores_each_states_intensity_level_however_far_it_spans():
    """A per-state top-K is the same for log λ(x) + log p(y|x) whatever λ(x) is: even states whose λ(x) is
    e^-200 of the largest (on the planners' common scale they underflow into the tie perturbation) get their own
    best items, and excluded pairs stay out."""
    rng = np.random.default_rng(0)
    logp = np.log(rng.dirichlet(np.ones(40), size=30)).astype(np.float32)
    offsets = np.linspace(0.0, -200.0, 30, dtype=np.float32)[:, None]        # log λ(x)
    excl = sp.random(30, 40, density=0.1, random_state=1, format="csr")
    excl.data[:] = 1
    plain = TopK(alpha=0.1).plan(dense(logp, "log_intensity", excl)).assignment
    shifted = TopK(alpha=0.1).plan(dense(logp + offsets, "log_intensity", excl)).assignment
    masked = np.where(excl.toarray() > 0, -np.inf, logp)
    best = np.argsort(-masked, axis=1)[:, :4]
    expected = np.zeros_like(logp)
    np.put_along_axis(expected, best, 1.0, axis=1)
    np.testing.assert_array_equal(plain.toarray(), expected)
    np.testing.assert_array_equal(shifted.toarray(), expected)
