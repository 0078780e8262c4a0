"""The dual planner's root finders and its planner class (issue 13, plugins/planners/dual.py): `_logit`, `_root`,
`solve_rows`, `solve_columns` against hand-computed cases and scipy's brentq on the stated equations; `Dual`'s
defaults, error messages and plan info. fit_dual itself is covered in test_kills_dual_fit.py."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.optimize import brentq
from scipy.special import expit

from harness.errors import ConfigError, DataError
from harness.matching import NEG, FactorScores, PlanningScores
from plugins.planners.dual import TOL_COUNT, Dual, _logit, register_planners, solve_columns, solve_rows
from plugins.planners.roots import bracketed_root as _root


def dense(S):
    """Planning scores whose raw scores are the matrix S (states x items)."""
    S = np.asarray(S, np.float32)
    return PlanningScores(FactorScores(S, np.eye(S.shape[1])), "intensity", seed=0)


def _excess(w, x, target, eps, axis):
    """mean sigmoid((w - x) / eps) - target along `axis` (1: rows, 0: columns), in float64 (excluded entries at NEG
    count as 0)."""
    w = np.asarray(w, np.float64)
    x = np.asarray(x, np.float64)
    return expit((w - (x[:, None] if axis == 1 else x[None, :])) / eps).mean(axis) - target


def _brentq_roots(w, target, eps, axis):
    w = np.asarray(w, np.float64)
    lines = w if axis == 1 else w.T
    return np.array([brentq(lambda x, r=r: expit((r - x) / eps).mean() - target, -50, 50, xtol=1e-13)
                     for r in lines])


def _blocks(w, cuts):
    """A `blocks()` callable yielding w's row blocks split at `cuts` (fresh tensors on each call, like the
    streamed planner: the solver divides them in place)."""
    edges = [0, *cuts, w.shape[0]]

    def gen():
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            yield w[a:b].clone()
    return gen


def _w(seed, shape):
    return torch.tensor(np.random.default_rng(seed).random(shape), dtype=torch.float32)


# ------------------------------------------------------------------------------------------------ _logit
# mutants: _logit's `log(p) - log1p(-p)` -> `log(p) + log1p(-p)` / `log(p) - log1p(+p)`
def test_logit_is_the_log_odds():
    for p in (0.01, 0.2, 0.5, 0.9):
        assert _logit(p) == pytest.approx(math.log(p / (1 - p)), abs=1e-12)
    assert _logit(0.5) == 0.0


# ------------------------------------------------------------------------------------------------ _root
class _Linear:
    """f(x) = r - x (decreasing, root r) on x's rows, with a chosen derivative; records where it is evaluated."""

    def __init__(self, r, slope):
        self.r, self.slope, self.points = torch.tensor([r], dtype=torch.float32), slope, []

    def __call__(self, x):
        self.points.append(float(x[0]))
        return self.r - x, torch.full_like(x, self.slope)


# mutants: the start `(lo + hi) / 2` -> `* 2` / `(lo - hi)` / `/ 3`; Newton accepted on the bracket's end
# (`newton > lo` -> `>=`, `newton < hi` -> `<=`: with an infinite slope Newton proposes the bracket end just set,
# and taking it stalls there)
@pytest.mark.parametrize("slope", [0.0, -math.inf])
def test_root_bisects_when_newton_gives_no_step(slope):
    """slope 0: the Newton step is infinite; slope -inf: it stays on the point just evaluated, which is the new end of
    the bracket. Either way the step is refused and _root bisects [0, 1] from its midpoint towards r = 0.3."""
    f = _Linear(0.3, slope)
    x = _root(f, torch.zeros(1), torch.ones(1), 5, 1e-9)
    assert f.points == [0.5, 0.25, 0.375, 0.3125, 0.28125]
    assert float(x[0]) == 0.296875
    f = _Linear(0.3, slope)
    assert abs(float(_root(f, torch.zeros(1), torch.ones(1), 40, 1e-7)[0]) - 0.3) < 1e-6


# mutants: `newton = x - f / df` -> `x + f / df`; `done = |f| <= tol` -> `< tol` (an exact root with tol 0 is not
# accepted); the early exit `if bool(done.all())` -> `if bool(None)` (evaluates all `iters` times)
def test_root_takes_the_newton_step_and_stops_at_the_root():
    f = _Linear(0.375, -1.0)  # exact in binary: the Newton step from 0.5 lands on the root
    x = _root(f, torch.zeros(1), torch.ones(1), 10, 0.0)
    assert float(x[0]) == 0.375
    assert f.points == [0.5, 0.375]  # one Newton step, then |f| = 0 <= tol and no further evaluation


# mutant: the warm start `x0` ignored (`if x0 is None` -> `if (x0 is None) or True`)
def test_root_starts_from_the_warm_start_clamped_to_the_bracket():
    f = _Linear(0.3, -1.0)
    x = _root(f, torch.zeros(1), torch.ones(1), 10, 0.01, x0=torch.tensor([0.305]))
    assert f.points == [pytest.approx(0.305)] and float(x[0]) == pytest.approx(0.305)  # within tol: returned as is
    f = _Linear(0.999, 0.0)
    _root(f, torch.zeros(1), torch.ones(1), 1, 0.01, x0=torch.tensor([5.0]))
    assert f.points == [1.0]  # a warm start outside [lo, hi] starts from the nearer end


# ------------------------------------------------------------------------------------------------ solve_rows
CASES = [(0.1, 1.0), (0.1, 0.05), (0.7, 0.3), (0.3, 0.01), (0.9, 2.0)]  # (target, eps): below/above 1/2, eps != 1
PASSES = 10  # Newton from the bracket's midpoint needs 2-8 passes on these instances; bisection alone, 20 or more


# mutants: the bracket `hi = max - c * eps + M` -> `c / eps`; `lo = min - c * eps - M` -> `+ c * eps` (above the
# root when target > 1/2); the Newton slope `-(z - z*z).mean(1) / eps` -> `* eps`, `+(...)`, `.mean(None)`,
# `z - z / z` (each costs the Newton step: bisection needs far more than PASSES)
@pytest.mark.parametrize("target,eps", CASES)
def test_solve_rows_finds_each_rows_root_in_a_few_newton_passes(target, eps):
    w = _w(1, (5, 40))
    w[2] *= 3.0  # rows on different scales (different slopes)
    x = solve_rows(w, target, eps, PASSES)
    assert np.abs(_excess(w, x, target, eps, 1)).max() <= TOL_COUNT / 40 + 1e-6
    assert np.allclose(x.numpy(), _brentq_roots(w, target, eps, 1), atol=1e-3)


# mutants: `lo = min - c * eps - MARGIN` -> `+ MARGIN` (the bracket is empty when all scores are equal)
@pytest.mark.parametrize("target", [0.05, 0.7])
def test_solve_rows_of_equal_scores_is_the_score_less_eps_logit(target):
    """mean_j sigmoid((w - x) / eps) = target with every w_j = 0.4: x = 0.4 - eps * logit(target)."""
    w = torch.full((3, 20), 0.4)
    x = solve_rows(w, target, 0.2, 50)
    assert np.allclose(x.numpy(), 0.4 - 0.2 * math.log(target / (1 - target)), atol=1e-5)


# mutant: the lower end `.amin(1)` -> `.amin(None)` (every row's bracket from the whole matrix's minimum)
def test_solve_rows_solves_each_row_on_its_own():
    """Stacking rows changes nothing: a row's root is the one it gets alone (bit for bit: the rows do not mix)."""
    w = _w(2, (4, 30))
    w[0] -= 5.0  # one row far below the others
    together = solve_rows(w, 0.1, 0.05, 50)
    alone = torch.cat([solve_rows(w[r:r + 1].clone(), 0.1, 0.05, 50) for r in range(4)])
    assert torch.equal(together, alone)


# mutants: the warm start dropped (`x0` -> None, or left out) in solve_rows' call of _root
def test_solve_rows_returns_a_warm_start_that_already_solves_the_row():
    w = _w(3, (4, 30))
    x = solve_rows(w, 0.2, 0.1, 50)
    again = solve_rows(w, 0.2, 0.1, 1, x0=x)  # one pass: only a warm start can be within tolerance
    assert torch.equal(again, x)


# mutant: `valid = w > NEG / 2` -> `> NEG * 2` (excluded entries taken for scores: the bracket reaches down to NEG).
# Also the bracket with exclusions: excluded entries add 0 to the mean, so the lower end must allow for them (it did
# not: the root -0.886 lay below lo = 1.885 and the solver returned lo)
def test_solve_rows_with_excluded_entries_meets_the_target():
    w = torch.tensor([[0.5, NEG, NEG, NEG], [0.5, 1.0, NEG, 2.0], [NEG, NEG, NEG, NEG]])
    x = solve_rows(w, 0.2, 1.0, 50)  # sigmoid(0.5 - x) / 4 = 0.2: x = 0.5 - logit(0.8)
    assert float(x[0]) == pytest.approx(0.5 - math.log(4.0), abs=1e-3)
    got = torch.sigmoid(w[1] - x[1]).sum() / 4
    assert float(got) == pytest.approx(0.2, abs=1e-3)
    assert math.isfinite(float(x[2]))  # nothing to plan in the row: a finite end, no root


# ------------------------------------------------------------------------------------------------ solve_columns
# mutants: `lo = min - c * eps - M` -> `+ c * eps`; the slope `-d / (n_rows * eps)` -> `-d * (...)`, `+d`,
# `n_rows / eps`; `d += (z - z*z)` -> `d = ...` (only the last block's slope), `d -= ...`, `z - z / z`
@pytest.mark.parametrize("target,eps", CASES)
def test_solve_columns_over_blocks_finds_each_columns_root_in_a_few_newton_passes(target, eps):
    w = _w(4, (60, 12))
    w[:, 3] *= 3.0
    x = solve_columns(_blocks(w, [20, 45]), 12, 60, target, eps, PASSES)
    assert np.abs(_excess(w, x, target, eps, 0)).max() <= TOL_COUNT / 60 + 1e-6
    assert np.allclose(x.numpy(), _brentq_roots(w, target, eps, 0), atol=1e-3)


# mutant: `lo = bl if lo is None else torch.minimum(lo, bl)` -> always the last block's minimum (above the root)
def test_solve_columns_brackets_with_the_minimum_of_every_block():
    target, eps = 0.5, 0.05
    w = _w(7, (60, 6))
    w[:40] -= 2.0  # two thirds of each column far below the last block: the root lies below that block's minimum
    x = solve_columns(_blocks(w, [20, 40]), 6, 60, target, eps, 50)
    assert np.abs(_excess(w, x, target, eps, 0)).max() <= TOL_COUNT / 60 + 1e-6
    assert np.allclose(x.numpy(), _brentq_roots(w, target, eps, 0), atol=1e-3)


# mutant: `lo = lo - c * eps - MARGIN` -> `+ MARGIN`
@pytest.mark.parametrize("target", [0.05, 0.7])
def test_solve_columns_of_equal_scores_is_the_score_less_eps_logit(target):
    w = torch.full((20, 3), 0.4)
    x = solve_columns(_blocks(w, [7]), 3, 20, target, 0.2, 50)
    assert np.allclose(x.numpy(), 0.4 - 0.2 * math.log(target / (1 - target)), atol=1e-5)


# mutants: `bh = w.amax(0)` -> `.amax(None)`, `bl = ....amin(0)` -> `.amin(None)` (every column's bracket from the
# whole block)
def test_solve_columns_solves_each_column_on_its_own():
    w = _w(5, (30, 4))
    w[:, 0] -= 5.0
    w[:, 1] += 5.0
    together = solve_columns(_blocks(w, [10]), 4, 30, 0.1, 0.05, 50)
    alone = torch.cat([solve_columns(_blocks(w[:, j:j + 1].clone(), [10]), 1, 30, 0.1, 0.05, 50) for j in range(4)])
    assert torch.equal(together, alone)


# mutants: the warm start dropped (`x0` -> None, or left out) in solve_columns' call of _root
def test_solve_columns_returns_a_warm_start_that_already_solves_the_column():
    w = _w(6, (30, 5))
    x = solve_columns(_blocks(w, [12]), 5, 30, 0.2, 0.1, 50)
    assert torch.equal(solve_columns(_blocks(w, [12]), 5, 30, 0.2, 0.1, 1, x0=x), x)


# mutants: the column sums in float32 (`z.sum(0, dtype=torch.float64)` -> `dtype=None` or no dtype; the
# accumulator `s = torch.zeros(n_cols, dtype=torch.float64, ...)` -> `dtype=None` or no dtype)
def test_solve_columns_counts_131072_states_to_the_count_tolerance():
    """The root is accepted within TOL_COUNT (a thousandth of a state) of the target count; summed in float32 over
    2^17 states (columns reduced across rows), the counts are off by several thousandths."""
    n = 2 ** 17
    w = torch.tensor(np.random.default_rng(8).uniform(-1, 1, (n, 4)), dtype=torch.float32)
    x = solve_columns(_blocks(w, []), 4, n, 0.5, 1.0, 50)  # roots near 0: float32 x resolves far finer counts
    assert np.abs(_excess(w, x, 0.5, 1.0, 0)).max() * n <= TOL_COUNT


# mutant: `valid = w > NEG / 2` -> `> NEG * 2` in solve_columns (the bracket reaches down to NEG)
def test_solve_columns_with_excluded_entries_meets_the_target():
    w = torch.tensor([[0.5], [NEG], [NEG], [NEG]])
    x = solve_columns(_blocks(w, [2]), 1, 4, 0.2, 1.0, 50)
    assert float(x[0]) == pytest.approx(0.5 - math.log(4.0), abs=1e-3)


# ------------------------------------------------------------------------------------------------ Dual
def _spec():
    out = []
    register_planners(out.append)
    return out[0]


# mutants: the constructor's defaults (alpha 1.01, mode "XXofflineXX"/"OFFLINE", epochs 101, iters 51, steps 2)
# against the declared Param defaults; `self.v = None` -> `""` before any fit
def test_dual_defaults_are_the_declared_ones():
    spec = _spec()
    declared = {p.name: p.default for p in spec.params}
    assert set(declared) == {"alpha", "beta", "beta_max", "mode", "epochs", "epsilon_min", "gamma", "batch_size",
                             "steps", "iters", "repair", "candidates", "max_steps"}
    bare = Dual()
    explicit = spec.factory(**declared)
    assert vars(bare) == vars(explicit)
    assert bare.mode == "offline" and not bare.online and bare.v is None
    assert (bare.epochs, bare.iters, bare.steps, bare.epsilon_min, bare.candidates) == (100, 50, 1, 1e-10, None)
    assert bare.max_steps == 5
    assert (bare.constraints.alpha, bare.constraints.beta, bare.constraints.beta_max) == (0.01, 0.0, None)


# mutants: the constraint errors' culprit `planner 'dual' (mode ...)` replaced by None (validate in __init__, check in
# fit and plan, `where` in plan) or by check's default "planner"; the online error's text uppercased or wrapped in XX
def test_dual_errors_name_the_planner_its_mode_and_the_fix():
    with pytest.raises(ConfigError) as e:
        Dual(alpha=0.01, beta=0.02, mode="online")
    assert str(e.value).startswith("planner 'dual' (mode online): beta=0.02 > alpha=0.01")
    empty = dense(np.zeros((0, 5)))
    scores = dense(np.random.default_rng(0).random((6, 5)))
    with pytest.raises(DataError) as e:
        Dual(alpha=0.2).plan(empty)
    assert str(e.value).startswith("planner 'dual' (mode offline): nothing to plan (0 user-states x 5 items)")
    with pytest.raises(DataError) as e:  # plan accepts the test states, fit refuses the empty calibration set
        Dual(alpha=0.2, mode="online").plan(scores, empty)
    assert str(e.value).startswith("planner 'dual' (mode online): nothing to plan (0 user-states x 5 items)")
    with pytest.raises(DataError) as e:
        Dual(alpha=0.2).fit(empty)
    assert str(e.value).startswith("planner 'dual' (mode offline): nothing to plan")
    with pytest.raises(ConfigError) as e:
        Dual(alpha=0.2, mode="online").plan(scores, None)
    assert str(e.value) == (
        "planner 'dual' (mode online): online mode learns v on a calibration set of user-states and got none; "
        "use a split with a calibration window (temporal: calibration: DAYS) or mode: offline")


# mutants: the plan's info `{"k": k, **info}` -> None / left out / key "XXkXX" / "K"; fit passing gamma or batch_size
# to fit_dual as None
def test_dual_plan_info_reports_k_and_the_fit_it_ran():
    rng = np.random.default_rng(1)
    scores = PlanningScores(FactorScores(rng.random((12, 3)), rng.random((10, 3))), "intensity", seed=0)
    plan = Dual(alpha=0.2, beta=0.1, epochs=3, gamma=0.5, batch_size=5).plan(scores)
    assert plan.info["k"] == 2  # ceil(0.2 * 10 items)
    assert plan.info["n_batches"] == 3 and plan.info["gamma"] == 0.5  # 12 states in batches of 5
    assert plan.info["epochs"] == 3
    assert (plan.assignment.sum(1) <= 2).all()
    assert isinstance(plan.assignment, sp.csr_matrix)


# ------------------------------------------------------------------------------- the bracket with exclusions
# The documented bracket: hi = max(w) - eps·logit(target) + MARGIN; lo = min(valid w) - eps·logit(share) - MARGIN with
# share = target·n / n_valid capped at 1 - 1e-6 (excluded entries add 0 to the mean). With iters = 0 the solver
# returns the bracket's midpoint, so the bracket itself is checked; with no root the solver ends at lo.
MARGIN = 1e-3


def _bracket(valid_w, n, target, eps):
    share = min(target * n / len(valid_w), 1 - 1e-6)
    lo = min(valid_w) - eps * math.log(share / (1 - share)) - MARGIN
    hi = max(valid_w) - eps * math.log(target / (1 - target)) + MARGIN
    return lo, hi


# mutants: _lower_logit's n / n_valid -> n * n_valid; n_valid summed over blocks with - instead of +
def test_the_bracket_allows_for_the_excluded_entries_of_a_row_and_of_a_column_over_blocks():
    row = torch.tensor([[0.2, NEG, 1.0, NEG, 0.7, NEG, NEG, 0.4]])
    lo, hi = _bracket([0.2, 1.0, 0.7, 0.4], 8, 0.3, 0.5)
    assert float(solve_rows(row.clone(), 0.3, 0.5, 0)[0]) == pytest.approx((lo + hi) / 2, abs=1e-5)
    col = row.T.contiguous()  # the valid entries fall in both blocks (rows 0-3 and 4-7)
    got = solve_columns(_blocks(col, [4]), 1, 8, 0.3, 0.5, 0)
    assert float(got[0]) == pytest.approx((lo + hi) / 2, abs=1e-5)


# mutants: the share's cap 1 - 1e-6 -> 1 + 1e-6 or 2 - 1e-6 (logit NaN: lo falls back to hi - 1); valid = w > NEG*2
# in solve_rows / solve_columns (excluded entries counted as valid: lo near NEG)
def test_a_line_that_cannot_reach_its_target_ends_at_the_bracket_floor():
    w = torch.tensor([[0.5, NEG, NEG, NEG, NEG, NEG, NEG, NEG]])  # 1 valid of 8: the mean is at most 1/8 < 0.25
    lo, _ = _bracket([0.5], 8, 0.25, 1.0)
    assert float(solve_rows(w.clone(), 0.25, 1.0, 50)[0]) == pytest.approx(lo, abs=1e-3)
    got = solve_columns(_blocks(w.T.contiguous(), [3]), 1, 8, 0.25, 1.0, 50)
    assert float(got[0]) == pytest.approx(lo, abs=1e-3)


# ------------------------------------------------------------------------------------------------ stopping early
class _Step:
    """f(x) = 0.5 - (x > jump): a step function (eps -> 0 with a count target between integers), so |f| never meets a
    tolerance below 1/2; records its evaluations."""

    def __init__(self, jump):
        self.jump, self.points = torch.tensor([jump], dtype=torch.float32), []

    def __call__(self, x):
        self.points.append(float(x[0]))
        return 0.5 - (x > self.jump).float(), torch.zeros_like(x)


def test_root_stops_once_the_bracket_holds_no_float():
    """Bisection on [0, 1] reaches a bracket of adjacent floats around the jump in ~24 passes of float32; the line then
    keeps its x (within an ulp of the jump) instead of running all 200 passes in place."""
    f = _Step(0.3)
    x = float(_root(f, torch.zeros(1), torch.ones(1), 200, 1e-3)[0])
    assert len(f.points) < 40
    assert abs(x - 0.3) <= 2 * float(torch.finfo(torch.float32).eps)


def test_only_moved_recomputes_just_the_lines_whose_x_moved():
    from plugins.planners.roots import only_moved

    parts = []

    def lines(idx, x):
        parts.append(None if idx is None else idx.tolist())
        return x * 2, -torch.ones_like(x)

    evaluate = only_moved(lines, lambda idx: idx)
    f, _ = evaluate(torch.tensor([1.0, 2.0, 3.0]))
    assert parts == [None] and f.tolist() == [2.0, 4.0, 6.0]
    f, _ = evaluate(torch.tensor([1.0, 5.0, 3.0]))
    assert parts[-1] == [1] and f.tolist() == [2.0, 10.0, 6.0]
    f, _ = evaluate(torch.tensor([1.0, 5.0, 3.0]))
    assert len(parts) == 2 and f.tolist() == [2.0, 10.0, 6.0]  # nothing moved: nothing recomputed


def test_solvers_give_the_roots_of_a_full_evaluation():
    """Reusing the unmoved lines' f changes no root: each line's root equals the one it gets alone."""
    w = _w(11, (30, 20))
    w[:, 2] -= 3.0
    rows = solve_rows(w, 0.15, 0.02, 50)
    assert torch.equal(rows, torch.cat([solve_rows(w[r:r + 1].clone(), 0.15, 0.02, 50) for r in range(30)]))
    cols = solve_columns(_blocks(w, [10]), 20, 30, 0.2, 0.02, 50)
    alone = torch.cat([solve_columns(_blocks(w[:, j:j + 1].clone(), [10]), 1, 30, 0.2, 0.02, 50) for j in range(20)])
    assert torch.allclose(cols, alone, atol=1e-6)
