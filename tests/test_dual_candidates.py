"""The Dual planner on candidate pairs (issue 14, item 5; plugins/planners/dual_candidates.py): the segment root
finder against scipy, the candidate set against a dense top-M, the certificate against every pruned pair, and the
plans against the dense planner and the LP optimum (scipy HiGHS)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import lam_of, lp_optimum
from scipy.optimize import brentq
from test_dual_feasible import skewed

from harness.errors import ConfigError
from harness.matching import FactorScores, PlanningScores
from plugins.planners.dual import Dual, fit_dual
from plugins.planners.dual_candidates import CandidateSet, fit_dual_pruned, item_thresholds, solve_segments


def random_scores(n_x: int, n_y: int, seed: int = 0, d: int = 16) -> PlanningScores:
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n_x, d, generator=g) / d ** 0.5
    v = torch.randn(n_y, d, generator=g) + 0.5 * torch.randn(n_y, 1, generator=g)
    return PlanningScores(FactorScores(u, v), "logit", None, seed=seed, block_size=max(1, n_x // 3))


# ------------------------------------------------------------------------------------------------ solve_segments
@pytest.mark.parametrize("eps", [0.5, 0.05, 0.002])
def test_segment_roots_solve_each_segments_equation_as_brentq_does(eps):
    """Ragged segments in shuffled order (one empty, one with fewer entries than the count: no root, the bracket's
    lower end, where every sigmoid is ~1)."""
    rng = np.random.default_rng(1)
    sizes = [7, 0, 12, 3, 30, 2]
    seg = np.repeat(np.arange(len(sizes)), sizes)
    w = rng.random(len(seg)).astype(np.float32)
    perm = rng.permutation(len(seg))
    count = 2.5
    x = solve_segments(torch.as_tensor(w[perm]), torch.as_tensor(seg[perm], dtype=torch.int32),
                       torch.as_tensor(np.bincount(seg, minlength=len(sizes))), count, eps, 100).numpy()
    for s, n in enumerate(sizes):
        ws = w[seg == s].astype(np.float64)
        if n == 0:
            assert x[s] == 0.0
        elif n <= count:
            assert (1 / (1 + np.exp(-(ws - x[s]) / eps))).sum() == pytest.approx(n, abs=1e-3)
        else:
            def f(t, ws=ws):
                return (1 / (1 + np.exp(np.clip(-(ws - t) / eps, -700, 700)))).sum() - count

            ref = brentq(f, -50, 50, xtol=1e-12)
            total = (1 / (1 + np.exp(-(ws - x[s]) / eps))).sum()
            assert total == pytest.approx(count, abs=2e-3)
            assert x[s] == pytest.approx(ref, abs=max(1e-4, 1e-2 * eps))


# ------------------------------------------------------------------------------------------------ CandidateSet
def test_candidate_set_holds_each_states_top_m_each_items_top_t_once_with_their_lambda():
    """Few states: the items' thresholds are exact (each item's t-th largest lambda - u)."""
    n_x, n_y, m, t, k = 40, 25, 6, 5, 3
    scores = random_scores(n_x, n_y, seed=3)
    lam = lam_of(scores).astype(np.float32)
    v = -torch.rand(n_y, generator=torch.Generator().manual_seed(0))
    cand = CandidateSet(scores, v, None, m, t, k)
    w = lam - v.numpy()[None, :]
    kth = np.sort(w, 1)[:, -k]
    u_ref = np.maximum(kth, 0)
    np.testing.assert_allclose(cand.u_ref.numpy(), u_ref, atol=1e-6)
    want = set()
    for x in range(n_x):
        want |= {(x, y) for y in np.argsort(-w[x])[:m]}
    c = lam - u_ref[:, None]
    thr = np.sort(c, 0)[-t]
    for y in range(n_y):
        want |= {(x, y) for x in np.flatnonzero(c[:, y] >= thr[y])}
    got = list(zip(cand.rows.tolist(), cand.cols.tolist(), strict=True))
    assert len(got) == len(set(got)) == len(want) and set(got) == want
    np.testing.assert_allclose(cand.lam.numpy(), lam[cand.rows.long().numpy(), cand.cols.long().numpy()], atol=1e-6)
    np.testing.assert_allclose(cand.row_bound.numpy(), np.sort(w, 1)[:, -(m + 1)], atol=1e-6)
    np.testing.assert_allclose(cand.col_bound.numpy(), thr, atol=1e-6)
    assert cand.n_row.sum() == cand.n_col.sum() == len(want)


def test_uncertified_never_misses_a_pruned_pair_that_could_enter():
    """Soundness of the certificate: whenever some pruned pair has lambda - u - v >= 0 at the moved duals, some state
    is reported; with the duals of the last refresh nothing is (its pruned pairs lie below both bounds)."""
    n_x, n_y, m, t, k = 30, 20, 4, 3, 2
    scores = random_scores(n_x, n_y, seed=5)
    lam = lam_of(scores)
    rng = np.random.default_rng(0)
    v0 = -torch.rand(n_y, generator=torch.Generator().manual_seed(1))
    cand = CandidateSet(scores, v0, None, m, t, k)
    pruned = np.ones((n_x, n_y), bool)
    pruned[cand.rows.long().numpy(), cand.cols.long().numpy()] = False
    n_bad, _ = cand.uncertified(cand.u_ref, v0)
    enter = (lam - cand.u_ref.numpy()[:, None] - v0.numpy()[None, :] >= 0) & pruned
    assert not enter.any() and n_bad == 0
    seen_enter = 0
    for _ in range(200):
        v = v0 - torch.as_tensor(rng.exponential(0.3, n_y) * (rng.random(n_y) < 0.3), dtype=torch.float32)
        u = cand.u_ref + torch.as_tensor(rng.normal(0, 0.1, n_x), dtype=torch.float32)
        n_bad, worst = cand.uncertified(u, v)
        enter = (lam - u.numpy()[:, None] - v.numpy()[None, :] >= 0) & pruned
        seen_enter += enter.any()
        if enter.any():
            assert n_bad >= enter.any(1).sum() and worst >= 0
    assert seen_enter > 20  # the moves did reach pruned pairs


def test_item_thresholds_from_a_sample_let_about_t_states_through():
    """Many states: the threshold is the 32nd largest lambda - u over a sample of 32·|X|/t states, so about t of the
    |X| states reach it (the count of a sample quantile: within a few standard deviations of t)."""
    n_x, n_y, t = 20000, 30, 100
    scores = random_scores(n_x, n_y, seed=2)
    lam = lam_of(scores)
    v = torch.zeros(n_y)
    u = torch.as_tensor(np.random.default_rng(0).normal(0, 0.05, n_x), dtype=torch.float32)
    thr = item_thresholds(scores, v, u, t, 3).numpy()
    counts = ((lam - u.numpy()[:, None]) >= thr[None, :]).sum(0)
    assert abs(counts.mean() - t) < 0.15 * t  # 30 items: the mean count is close to t
    assert counts.min() > t / 3 and counts.max() < 3 * t


# ------------------------------------------------------------------------------------------------ plans
def test_pruned_duals_converge_to_the_dense_planners():
    """Random factors, 600 x 150, K = 3 with 2K candidates: after 100 epochs v equals the dense planner's (its
    certificate holds, so both solve the same LP) and the plans coincide."""
    scores = random_scores(600, 150, seed=0)
    v_dense, _ = fit_dual(scores, 3, 0.01, None, epochs=100)
    v_pruned, info = fit_dual_pruned(scores, 3, 0.01, None, 100, 1e-10, 50, 1, 6)
    assert info["certified"] == 1 and info["candidate_share"] < 0.25
    assert float((v_dense - v_pruned).abs().max()) < 1e-3


@pytest.mark.parametrize("seed", [0, 1, 4, 6, 10])
def test_pruned_plans_are_as_good_as_the_dense_ones_on_skewed_instances(seed):
    """The popularity-skewed instances of test_dual_feasible (where a narrower item side, T = 2·ceil(beta·|X|) + 8,
    ran off to 46-58% of the LP optimum on seeds 0, 1 and 6): the plan on 2K candidates per state meets every
    minimum and the capacity, and its objective is within 1% of the LP optimum's share the dense plan reaches."""
    scores, alpha, beta = skewed(seed)
    lam = lam_of(scores)
    n_x, n_y = lam.shape
    k = int(np.ceil(alpha * n_y - 1e-9))
    lp = lp_optimum(lam, k, beta * n_x, n_x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dense = Dual(alpha=alpha, beta=beta, candidates="all").plan(scores).assignment.toarray()
        plan = Dual(alpha=alpha, beta=beta, candidates=2 * k).plan(scores)
    a = plan.assignment.toarray()
    assert plan.info["certified"] == 1
    assert a.sum(1).max() <= k and a.sum(0).min() >= np.ceil(beta * n_x - 1e-9)
    assert (a * lam).sum() / lp >= (dense * lam).sum() / lp - 0.01


def test_candidates_null_plans_dense_below_the_threshold_and_pruned_above():
    small = random_scores(50, 40)
    planner = Dual(alpha=0.05, beta=0.01)
    assert planner.candidates_for(small, 2) is None
    planner.plan(small)
    assert "candidates" not in planner.fit(small)

    class Big:  # only the sizes are read
        n_states, n_items = 100_000, 20_000

    assert planner.candidates_for(Big, 200) == 400
    assert Dual(alpha=0.05, beta=0.01, batch_size=1000).candidates_for(Big, 200) is None
    assert Dual(candidates="all").candidates_for(Big, 200) is None
    assert Dual(candidates=300).candidates_for(Big, 200) == 300


@pytest.mark.parametrize("bad, phrase", [(0, "must be a number of items"), ("many", "must be a number of items"),
                                         (True, "must be a number of items")])
def test_bad_candidates_values_are_refused_with_the_fix(bad, phrase):
    with pytest.raises(ConfigError, match=phrase):
        Dual(candidates=bad)


def test_candidates_at_most_k_or_with_a_batch_size_are_refused():
    with pytest.raises(ConfigError, match="must exceed the user capacity K = 2"):
        Dual(alpha=0.05, beta=0.01, candidates=2).plan(random_scores(50, 40))
    with pytest.raises(ConfigError, match="cannot be combined"):
        Dual(candidates=10, batch_size=100)


def test_pair_buffer_grows_past_its_capacity_keeping_every_pair_in_order():
    from plugins.planners.dual_candidates import _PairBuffer

    buf = _PairBuffer(2, torch.device("cpu"))
    pieces = [(torch.tensor([0, 1]), torch.tensor([5, 6]), torch.tensor([0.5, 0.6])),
              (torch.tensor([2, 2, 3]), torch.tensor([1, 2, 3]), torch.tensor([0.1, 0.2, 0.3])),
              (torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), torch.tensor([])),
              (torch.tensor([9]), torch.tensor([0]), torch.tensor([0.9]))]
    for r, c, lam in pieces:
        buf.append(r, c, lam)
    rows, cols, lam = buf.arrays()
    assert rows.tolist() == [0, 1, 2, 2, 3, 9] and cols.tolist() == [5, 6, 1, 2, 3, 0]
    assert rows.dtype == cols.dtype == torch.int32
    np.testing.assert_allclose(lam.numpy(), [0.5, 0.6, 0.1, 0.2, 0.3, 0.9], rtol=1e-6)
