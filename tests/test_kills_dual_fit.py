"""fit_dual (plugins/planners/dual.py, RIM Algorithm 1) beyond the LP comparisons of test_planners: the trivial cases
(no item constraint, alpha = 1, beta = 1), where v starts and how gamma moves it, the annealing schedule the log
callback sees, the summary it returns, the defaults against the plugin's declared Params, user batches (shuffled
per epoch from the scores' seed), the memory path (a batch that fits is scored once per epoch, a larger one is
streamed in blocks of at most the budget, with the same result) and the warm starts of the root finders.
Issue 13: each test names, in its docstring, the mutmut mutants (x_fit_dual__mutmut_N) it kills."""
import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from harness.matching import NEG, FactorScores, PlanningScores
from plugins.planners import dual as dual_mod
from plugins.planners.dual import Dual, fit_dual


def dense(S, exclude=None, seed=0, **kw):
    S = np.asarray(S, np.float32)
    return PlanningScores(FactorScores(S, np.eye(S.shape[1])), "intensity", exclude, seed, **kw)


def declared_params():
    specs = []
    dual_mod.register_planners(specs.append)
    (spec,) = specs
    return {p.name: p.default for p in spec.params}


def spy_blocks(scores):
    """Record the rows of every scores.block call (the only way fit_dual reads scores)."""
    calls = []
    block = scores.block

    def recording(rows):
        calls.append(np.asarray(rows).copy())
        return block(rows)

    scores.block = recording
    return calls


def scores_12x8(seed=0, **kw):
    rng = np.random.default_rng(seed)
    return dense(rng.random((12, 8)) + 0.1, seed=seed, **kw)


# ------------------------------------------------------------------------------------------ trivial cases
@pytest.mark.parametrize("beta_max", [None, 1.0])
def test_no_item_constraint_gives_zero_duals_without_fitting(beta_max):
    """beta = 0 and beta_max absent or 1 constrain no item: v = 0 (the plan is plain top-K), no epoch is run.
    Kills 22, 23 (beta_max = 1 taken as a cap), 25-32 (the summary of the skipped fit)."""
    v, info = fit_dual(scores_12x8(), 2, 0.0, beta_max)
    assert torch.equal(v, torch.zeros(8))
    assert info == {"epochs": 0, "n_batches": 0, "epsilon": None}


def test_no_item_constraint_gives_zeros_on_the_scores_device():
    """v lives where the scores do (a GPU in practice); on this CPU machine the meta device stands in, which the
    unconstrained case can use since it reads no score. Kills 6 (dev = None), 36, 38 (the zeros' device dropped)."""
    scores = PlanningScores(FactorScores(np.ones((4, 2)), np.ones((3, 2)), device=torch.device("meta")), "intensity")
    v, _ = fit_dual(scores, 1, 0.0, None)
    assert v.device.type == "meta" and v.shape == (3,)


def test_alpha_one_every_state_takes_every_item():
    """K = |Y|: u = 0 (no capacity binds), v <= 0 from the lower bound, and the plan is every unexcluded pair.
    Kills 143 (K = |Y| sent to the row solver: logit(1) fails), 144, 145, 147 (u of such a batch)."""
    rng = np.random.default_rng(1)
    excl = rng.random((10, 6)) < 0.2
    scores = dense(rng.random((10, 6)) + 0.1, exclude=sp.csr_matrix(excl))
    v, info = fit_dual(scores, 6, 0.5, None, epochs=3)
    assert v.shape == (6,) and torch.isfinite(v).all() and (v <= 0).all() and info["epochs"] == 3
    a = Dual(alpha=1.0, beta=0.5, epochs=3).plan(scores).assignment.toarray()
    np.testing.assert_array_equal(a, (~excl).astype(a.dtype))


# random instances include infeasible minimums: the dual says so in a warning (tests/test_dual_feasible.py checks it)
@pytest.mark.filterwarnings("ignore:planner 'dual'.*miss their minimum exposure:UserWarning")
def test_beta_one_puts_every_unexcluded_pair_in_the_plan():
    """beta = 1 (so alpha = 1): every item must reach every state; its root is infinite, so v is a huge negative
    constant and lambda - v > 0 on every unexcluded pair, never on an excluded one (NEG = -1e10).
    Kills 199, 200 (beta = 1 sent to the column solver: logit(1) fails), 221, 228 (v huge positive: empty plan),
    222, 223, 225, 226 (the constant misbuilt)."""
    rng = np.random.default_rng(2)
    excl = rng.random((9, 5)) < 0.25
    scores = dense(rng.random((9, 5)) + 0.1, exclude=sp.csr_matrix(excl))
    v, _ = fit_dual(scores, 5, 1.0, None, epochs=2)
    assert v.shape == (5,) and (v <= -1.0).all() and (v > NEG / 2).all()
    a = Dual(alpha=1.0, beta=1.0, epochs=2).plan(scores).assignment.toarray()
    np.testing.assert_array_equal(a, (~excl).astype(a.dtype))


# ------------------------------------------------------------------------------------------ the start and gamma
@pytest.mark.parametrize("beta,beta_max,low,high", [(0.1, None, -1.0, 0.0), (0.0, 0.5, 0.0, 1.0),
                                                    (0.1, 0.5, -1.0, 1.0)])
def test_gamma_zero_keeps_v_at_its_start_in_the_projections_region(beta, beta_max, low, high):
    """v <- (1 - gamma) v + gamma v': with gamma = 0 v never leaves its start, which is spread over the region the
    v-step projects to: [-1, 0] with beta only (v <= 0), [0, 1] with beta_max only (v >= 0), [-1, 1] with both.
    Kills 46-56 (the start's sign or range), 69, 71 (gamma ignored or broken)."""
    rng = np.random.default_rng(3)
    scores = dense(rng.random((10, 60)) + 0.1, seed=4)
    seen = []
    v, _ = fit_dual(scores, 6, beta, beta_max, epochs=3, gamma=0.0, log=lambda e, eps, w: seen.append(w.clone()))
    assert len(seen) == 3 and all(torch.equal(w, v) for w in seen)
    assert low <= float(v.min()) < low + 0.2 and high - 0.2 < float(v.max()) <= high


def test_the_start_follows_the_scores_seed_modulo_2_63():
    """The start is drawn from the scores' seed, reduced to 63 bits as PlanningScores reduces it: seeds s, s + 2**63
    and s + 2**64 start alike, seeds 1 and 3 do not. Kills 11 (seed % 2 * 63), 12 (seed % 3**63: 2**64 + 3 is
    left whole and overflows the generator's seed)."""
    rng = np.random.default_rng(5)
    S = rng.random((8, 20)) + 0.1

    def start(seed):
        return fit_dual(dense(S, seed=seed), 2, 0.1, None, epochs=1, gamma=0.0)[0]

    assert torch.equal(start(1), start(1 + 2**63))
    assert torch.equal(start(3), start(3 + 2**63)) and torch.equal(start(3), start(3 + 2**64))
    assert not torch.equal(start(1), start(3))


def test_zero_epochs_leave_the_start_and_eps_at_one():
    """Annealing starts from eps = 1: with no epoch run, the summary reports eps = 1 and v is the start.
    Kills 77 (eps None), 78 (eps 2)."""
    v, info = fit_dual(scores_12x8(), 2, 0.1, None, epochs=0)
    assert info["epochs"] == 0 and info["epsilon"] == 1.0
    assert (v <= 0).all() and (v >= -1).all()


# ------------------------------------------------------------------------------------------ schedule and summary
def test_log_sees_every_epoch_with_its_annealed_eps_and_v():
    """log(epoch, eps, v) once per epoch 1..epochs, eps = epsilon_min^(epoch/epochs) (from 1 down to epsilon_min),
    the last v being the one returned. Kills 92, 94, 95, 96 (epoch range), 257-262 (log's arguments)."""
    seen = []
    v, info = fit_dual(scores_12x8(), 2, 0.1, 0.5, epochs=4, epsilon_min=1e-4,
                       log=lambda epoch, eps, w: seen.append((epoch, eps, w.clone())))
    assert [e for e, _, _ in seen] == [1, 2, 3, 4]
    np.testing.assert_allclose([eps for _, eps, _ in seen], [1e-1, 1e-2, 1e-3, 1e-4], rtol=1e-9)
    assert torch.equal(seen[-1][2], v) and info["epsilon"] == pytest.approx(1e-4, rel=1e-9)


def test_summary_describes_the_fit():
    """12 states in batches of 5 are 3 batches, gamma defaults to 1/3, and the summary's v statistics are v's.
    Kills 73 (gamma = number of batches), 264-282 (the summary's keys, fit_s = time + t0)."""
    t0 = time.time()
    v, info = fit_dual(scores_12x8(), 2, 0.1, 0.5, epochs=2, epsilon_min=1e-2, batch_size=5)
    elapsed = time.time() - t0
    assert set(info) == {"epochs", "n_batches", "gamma", "epsilon", "fit_s", "extra_alternations", "v_min", "v_max",
                         "v_mean"}
    assert info["epochs"] == 2 and info["n_batches"] == 3 and info["gamma"] == pytest.approx(1 / 3)
    assert info["epsilon"] == pytest.approx(1e-2)
    assert 0.0 <= info["fit_s"] <= elapsed
    assert info["v_min"] == float(v.min()) and info["v_max"] == float(v.max())
    assert info["v_mean"] == pytest.approx(float(v.mean()), abs=1e-7)
    assert info["v_min"] < info["v_max"]


# ------------------------------------------------------------------------------------------ defaults
def test_defaults_epochs_and_epsilon_min_are_the_declared_params():
    """A bare call anneals over the Param's epochs down to its epsilon_min. Kills 1 (epochs 101), 2 (epsilon_min)."""
    P = declared_params()
    rng = np.random.default_rng(6)
    seen = []
    _, info = fit_dual(dense(rng.random((4, 3)) + 0.1), 1, 0.25, None, log=lambda e, eps, w: seen.append(eps))
    assert info["epochs"] == len(seen) == P["epochs"]
    assert info["epsilon"] == pytest.approx(P["epsilon_min"], rel=1e-6)
    assert info["n_batches"] == 1 and info["gamma"] == 1.0  # batch_size and gamma default to null: one batch


def cold_item_scores(block_size):
    """Item 0 is excluded for every state but one, so no v reaches beta = 1/4 for it: the v-step's root lies
    outside its bracket and the root finder runs all its iterations."""
    rng = np.random.default_rng(7)
    excl = np.zeros((12, 8), bool)
    excl[1:, 0] = True
    return dense(rng.random((12, 8)) + 0.1, exclude=sp.csr_matrix(excl), block_size=block_size)


def test_streamed_passes_count_iters_and_steps():
    """A streamed batch (12 states, blocks of 5: 3 parts) is read once for the u-step, once for the v-step's
    bracket and once per root-finding iteration, all `steps` times. Kills 4 (steps 2)."""
    scores = cold_item_scores(5)
    calls = spy_blocks(scores)
    fit_dual(scores, 2, 0.25, None, epochs=1, iters=3, steps=2)
    assert [len(c) for c in calls] == [5, 5, 2] * ((2 + 3) * 2)
    calls.clear()
    fit_dual(scores, 2, 0.25, None, epochs=1)  # one step by default
    assert len(calls) % 3 == 0 and 0 < len(calls) <= 3 * (2 + declared_params()["iters"])


def test_root_finding_gets_the_declared_iters(monkeypatch):
    """The u- and v-steps' root finders run at most the declared `iters` passes (they stop earlier once a bracket
    has collapsed, so the passes alone do not show it). Kills 3 (iters 51)."""
    import plugins.planners.dual as dual_module

    seen = []
    real = dual_module.bracketed_root

    def spy(evaluate, lo, hi, iters, tol, x0=None):
        seen.append(iters)
        return real(evaluate, lo, hi, iters, tol, x0)

    monkeypatch.setattr(dual_module, "bracketed_root", spy)
    fit_dual(cold_item_scores(5), 2, 0.25, None, epochs=1)
    assert seen and set(seen) == {declared_params()["iters"]}


# ------------------------------------------------------------------------------------------ batches and memory
def test_a_batch_that_fits_is_scored_once_per_epoch():
    """Batches of 6 states with a 6-row block budget fit: each is scored once per epoch and step.
    Kills 121, 122 (len == budget streamed), 124 (always streamed), 179 (the batch's scores not kept)."""
    scores = scores_12x8(block_size=6)
    calls = spy_blocks(scores)
    fit_dual(scores, 2, 0.1, 0.5, epochs=3, batch_size=6, steps=2)
    assert [len(c) for c in calls] == [6] * (3 * 2 * 2)


def test_batches_are_reshuffled_each_epoch_from_the_scores_seed():
    """Two batches of 6: each epoch they partition the 12 states, not always the same way, and the same seed gives
    the same batches and v. Kills 101, 108 (two batches not shuffled), 103-106 (the shuffle broken or unseeded)."""
    def run():
        scores = scores_12x8()
        calls = spy_blocks(scores)
        v, _ = fit_dual(scores, 2, 0.1, None, epochs=6, batch_size=6)
        return v, [tuple(c) for c in calls]

    v, calls = run()
    assert len(calls) == 12
    for e in range(6):
        assert sorted(calls[2 * e] + calls[2 * e + 1]) == list(range(12))
    assert len({frozenset(c) for c in calls}) > 2  # not always {0..5} and {6..11}
    v2, calls2 = run()
    assert calls2 == calls and torch.equal(v2, v)


def test_a_streamed_batch_reads_blocks_within_the_budget_and_gives_the_cached_result():
    """Batches of 6 states with a 4-row budget are streamed in blocks of at most 4 rows of the batch; the result is
    the cached one's (up to summation order). Kills 125 (the whole batch scored at once), 127 (blocks of all
    states instead of the batch's)."""
    streamed = scores_12x8(block_size=4)
    calls = spy_blocks(streamed)
    v_s, _ = fit_dual(streamed, 2, 0.1, 0.5, epochs=4, epsilon_min=1e-3, batch_size=6)
    v_c, _ = fit_dual(scores_12x8(), 2, 0.1, 0.5, epochs=4, epsilon_min=1e-3, batch_size=6)
    assert max(len(c) for c in calls) <= 4
    assert torch.allclose(v_s, v_c, atol=2e-3)


# ------------------------------------------------------------------------------------------ warm starts
def test_root_finders_are_warm_started():
    """u-step: a state's first root starts from the hard threshold (the K-th largest of lambda - v), later ones
    from its previous root; v-step: each root starts from the previous one (none at first).
    Kills 152, 154, 169, 174 (u's warm start), 208, 215 (v's lower root), 237, 244 (v's upper root)."""
    rows_log, cols_log = [], []

    def solve_rows(w, target, eps, iters, x0=None):
        root = real_rows(w, target, eps, iters, x0)
        rows_log.append((w.clone(), None if x0 is None else x0.clone(), root.clone()))
        return root

    def solve_columns(blocks, n_cols, n_rows, target, eps, iters, x0=None):
        root = real_cols(blocks, n_cols, n_rows, target, eps, iters, x0)
        cols_log.append((target, None if x0 is None else x0.clone(), root.clone()))
        return root

    real_rows, real_cols = dual_mod.solve_rows, dual_mod.solve_columns
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dual_mod, "solve_rows", solve_rows)
        mp.setattr(dual_mod, "solve_columns", solve_columns)
        fit_dual(scores_12x8(), 2, 0.1, 0.5, epochs=3, epsilon_min=1e-3)
    assert len(rows_log) == 3 and len(cols_log) == 6
    w, x0, _ = rows_log[0]
    assert x0 is not None and torch.equal(x0, torch.topk(w, 2, dim=1).values[:, -1])
    for (_, _, prev), (_, x0, _) in zip(rows_log, rows_log[1:], strict=False):
        assert x0 is not None and torch.equal(x0, prev)
    for target in (0.1, 0.5):
        log = [(x0, root) for t, x0, root in cols_log if t == target]
        assert len(log) == 3 and log[0][0] is None
        for (_, prev), (x0, _) in zip(log, log[1:], strict=False):
            assert x0 is not None and torch.equal(x0, prev)

