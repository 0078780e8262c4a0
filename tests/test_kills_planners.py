"""Tests for the survivors of the planners' mutation run in plugins/planners/topk.py and greedy.py (issue 13):
behaviour checked against a sequential greedy written from greedy.py's docstring, hand-computed cases, the
specs' declared `Param` defaults and the error messages' culprit and fix. A comment above each test names the
mutants (by their diff) it kills."""
import math

import numpy as np
import pytest
import scipy.sparse as sp

from harness.errors import ConfigError, DataError
from harness.matching import NEG, Constraints, FactorScores, PlanningScores
from plugins.planners import greedy as greedy_module
from plugins.planners import topk as topk_module
from plugins.planners.greedy import Greedy, greedy_accept
from plugins.planners.topk import TopK


def dense(S, exclude=None, seed=0, **kw):
    S = np.asarray(S, np.float32)
    return PlanningScores(FactorScores(S, np.eye(S.shape[1])), "intensity", exclude, seed, **kw)


def lam_of(scores):
    """The planning intensities as one float64 array (float32 values exactly, so ties stay ties)."""
    return np.concatenate([b.numpy() for _, b in scores.blocks()]).astype(np.float64)


def sequential_greedy(lam, k, c_min, c_max):
    """Greedy as greedy.py's docstring states it, one pair at a time in decreasing lam (ties: the lower
    row-major pair index first), excluded pairs (NEG) never: with c_min = 0 one pass with caps K per state and
    c_max per item; else phase 1 with K1 = ceil(T/|X|) per state and C1 = floor(T/|Y|) per item, T =
    min(K·|X|, C·|Y|), then phase 2 up to K per state and c_max per item."""
    n_x, n_y = lam.shape
    flat = lam.ravel()
    order = [int(p) for p in np.argsort(-flat, kind="stable") if flat[p] > NEG / 2]
    if c_min <= 0:
        caps = [(k, c_max)]
    else:
        total = min(n_x * k, c_min * n_y)
        caps = [(min(k, -(-total // n_x)), min(c_min, total // n_y)), (k, c_max)]
    a = np.zeros((n_x, n_y), int)
    for cap_x, cap_y in caps:
        for p in order:
            x, y = divmod(p, n_y)
            if not a[x, y] and a[x].sum() < cap_x and a[:, y].sum() < cap_y:
                a[x, y] = 1
    return a


def declared(module):
    """The PlannerSpec a planner module registers."""
    specs = []
    module.register_planners(specs.append)
    (spec,) = specs
    return spec


def no_states():
    return PlanningScores(FactorScores(np.zeros((0, 3), np.float32), np.eye(3)), "intensity")


# ----------------------------------------------------------------------------------------- defaults
# mutants: topk `def __init__(self, alpha: float = 1.01)`; greedy `alpha: float = 1.01`, `max_pairs: int = 50000001`
def test_bare_constructors_take_the_declared_param_defaults():
    topk_spec, greedy_spec = declared(topk_module), declared(greedy_module)
    assert topk_spec.name == "topk" and greedy_spec.name == "greedy"
    want = {p.name: p.default for p in topk_spec.params}
    assert TopK().constraints == Constraints(alpha=want["alpha"])
    want = {p.name: p.default for p in greedy_spec.params}
    g = Greedy()
    assert g.constraints == Constraints(alpha=want["alpha"], beta=want["beta"], beta_max=want["beta_max"])
    assert g.max_pairs == want["max_pairs"] and isinstance(g.max_pairs, int)


# ----------------------------------------------------------------------------------------- error messages
# mutants: topk/greedy `self.constraints.validate("planner '...'")` -> validate(None) / "XXplanner '...'XX" /
# "PLANNER '...'"
@pytest.mark.parametrize("cls, name", [(TopK, "topk"), (Greedy, "greedy")])
def test_a_bad_alpha_names_the_planner_and_the_fix(cls, name):
    with pytest.raises(ConfigError) as err:
        cls(alpha=0.0)
    msg = str(err.value)
    assert msg.startswith(f"planner '{name}': alpha=0.0 must be in (0, 1]"), msg
    assert "e.g. alpha: 0.01" in msg


# mutants: topk `self.constraints.check(..., "planner 'topk'")` -> None / no argument / "XXplanner 'topk'XX" /
# "PLANNER 'TOPK'"; greedy `where = "planner 'greedy'"` -> None / "XX...XX" / "PLANNER 'GREEDY'" and
# `self.constraints.check(..., where)` -> None / no argument
@pytest.mark.parametrize("planner, name", [(TopK(alpha=0.5), "topk"), (Greedy(alpha=0.5), "greedy")])
def test_nothing_to_plan_names_the_planner(planner, name):
    with pytest.raises(DataError) as err:
        planner.plan(no_states())
    msg = str(err.value)
    assert msg.startswith(f"planner '{name}': nothing to plan (0 user-states x 3 items)"), msg


# mutants: `if n_x * n_y > self.max_pairs` -> `>=`; the message's `{n_x * n_y:,}` -> `{n_x / n_y:,}`; its tail
# "planner, which streams user-states in blocks" -> "XX...XX" / upper case
def test_max_pairs_refuses_only_more_pairs_and_says_how_many_and_what_to_do():
    S = np.arange(12, dtype=np.float32).reshape(3, 4)
    a = Greedy(alpha=0.25, max_pairs=12).plan(dense(S)).assignment  # exactly max_pairs pairs: planned
    assert a.toarray().tolist() == [[0, 0, 0, 1]] * 3                 # K = 1: every state its best item
    with pytest.raises(ConfigError) as err:
        Greedy(alpha=0.25, max_pairs=1_199).plan(dense(np.ones((40, 30), np.float32)))
    msg = str(err.value)
    assert msg.startswith("planner 'greedy': greedy sorts all |X|·|Y| = 1,200 pairs, more than max_pairs=1,199;")
    assert msg.endswith("raise max_pairs (about 40 bytes a pair) or use the dual planner, which streams "
                        "user-states in blocks"), msg


# ----------------------------------------------------------------------------------------- plan info
# mutants: topk `Plan(topk_assignment(scores, k), {"k": k})` -> info None / missing / {"XXkXX": k} / {"K": k}
def test_topk_reports_k_and_takes_each_states_best_k():
    S = np.array([[5, 1, 4, 2, 3], [1, 2, 3, 4, 5]], np.float32)
    plan = TopK(alpha=0.3).plan(dense(S))   # K = ceil(1.5) = 2
    assert plan.info == {"k": 2}
    assert plan.assignment.toarray().tolist() == [[1, 0, 1, 0, 0], [0, 0, 0, 1, 1]]


# mutants: `if c_min_i <= 0` -> `< 0` (beta = 0 through two phases); `phases = 1` -> None / 2; the info dict
# `{"k": k, "phases": phases}` -> None / missing / "XXkXX" / "K" / "XXphasesXX" / "PHASES"
def test_greedy_without_minimum_exposure_is_one_pass_and_says_so():
    rng = np.random.default_rng(0)
    S = rng.random((7, 5))
    scores = dense(S)
    plan = Greedy(alpha=0.4, beta_max=3 / 7).plan(scores)   # K = 2, at most 3 states an item
    assert plan.info == {"k": 2, "phases": 1}
    np.testing.assert_array_equal(plan.assignment.toarray(), sequential_greedy(lam_of(scores), 2, 0, 3))


# mutants: `if c_min_i <= 0` -> `<= 1` (a minimum exposure of one state skipped); `phases = 2` -> None / 3
def test_a_minimum_exposure_of_one_state_runs_phase_one():
    rng = np.random.default_rng(1)
    S = rng.random((6, 4)) * 0.1 + np.array([1.0, 0.6, 0.3, 0.0])  # everyone prefers item 0, nobody item 3
    scores = dense(S)
    plan = Greedy(alpha=0.25, beta=1 / 6).plan(scores)                # K = 1, C = 1
    a = plan.assignment.toarray()
    assert plan.info == {"k": 1, "phases": 2}
    assert (a.sum(0) >= 1).all() and (a.sum(1) == 1).all()          # one pass would give item 0 all six
    np.testing.assert_array_equal(a, sequential_greedy(lam_of(scores), 1, 1, 6))


# ----------------------------------------------------------------------------------------- phase-1 quotas
# the phase-1 item quota when K·|X| < C·|Y| (floor(K·|X|/|Y|), a share every item can get); this replaced the
# `c1 = min(c_min_i, int(math.ceil(total / n_y)))` line whose `total * n_y` mutant is now moot
def test_too_few_states_for_the_minimum_share_it_out_equally():
    rng = np.random.default_rng(2)
    S = rng.random((6, 4)) * 0.1 + np.array([1.0, 0.6, 0.3, 0.0])
    scores = dense(S)
    plan = Greedy(alpha=0.25, beta=0.25).plan(scores)   # K = 1, C = ceil(1.5) = 2 > K·|X|/|Y| = 1.5: C1 = 1
    a = plan.assignment.toarray()
    assert (a.sum(0) >= 1).all() and a.sum() == 6
    np.testing.assert_array_equal(a, sequential_greedy(lam_of(scores), 1, 2, 6))


# mutant: `expo = np.bincount(ys[acc1], minlength=n_y)` -> no minlength (phase 2's item caps too short when
# the last items got nothing in phase 1; here C1 = floor(2·1/3) = 0, so nothing at all)
def test_a_phase_one_with_a_zero_item_quota_leaves_everything_to_phase_two():
    S = np.array([[3, 1, 2], [1, 3, 2]], np.float32)
    scores = dense(S)
    plan = Greedy(alpha=1 / 3, beta=1 / 3).plan(scores)   # K = 1, C = 1, T = 2: K1 = 1, C1 = 0
    assert plan.info == {"k": 1, "phases": 2}
    assert plan.assignment.toarray().tolist() == [[1, 0, 0], [0, 1, 0]]
    np.testing.assert_array_equal(plan.assignment.toarray(), sequential_greedy(lam_of(scores), 1, 1, 2))


# mutant: `np.maximum(c_max_i - expo, 0)` -> `np.maximum(c_max_i - expo, 1)` (an item phase 1 filled to its
# maximum gets one more state in phase 2)
def test_items_filled_to_their_maximum_in_phase_one_get_nothing_more():
    rng = np.random.default_rng(3)
    S = rng.random((4, 4))
    scores = dense(S)
    plan = Greedy(alpha=0.5, beta=0.25, beta_max=0.25).plan(scores)   # K = 2, C = C_max = 1
    a = plan.assignment.toarray()
    assert (a.sum(0) == 1).all() and (a.sum(1) == 1).all()            # states keep room, items do not
    np.testing.assert_array_equal(a, sequential_greedy(lam_of(scores), 2, 1, 1))


# ----------------------------------------------------------------------------------------- order and masking
# mutants: `torch.cat([...], 0)` -> `torch.cat([...], 1)` (several blocks scramble the flat pair index);
# `valid = lam > NEG / 2` -> `lam > NEG * 2` (excluded pairs join the order, last)
@pytest.mark.parametrize("beta", [0.0, 0.2])
def test_greedy_streamed_in_blocks_with_exclusions_matches_the_sequential_rule(beta):
    rng = np.random.default_rng(4)
    n_x, n_y = 6, 5
    S = rng.random((n_x, n_y))
    excl = sp.csr_matrix(rng.random((n_x, n_y)) < 0.3)
    one = dense(S, exclude=excl)
    blocks = dense(S, exclude=excl, block_size=2)
    want = sequential_greedy(lam_of(one), 4, math.ceil(beta * n_x), n_x)
    for scores in (one, blocks):
        a = Greedy(alpha=0.8, beta=beta).plan(scores).assignment.toarray()   # K = 4
        np.testing.assert_array_equal(a, want)
        assert not a[excl.toarray()].any()
    full = Greedy(alpha=1.0).plan(blocks).assignment.toarray()   # room for every pair: all but the excluded
    np.testing.assert_array_equal(full, ~excl.toarray())


# mutants: `torch.argsort(lam[flat], descending=True, stable=True)` -> stable dropped / stable=False
def test_exactly_tied_intensities_go_by_the_lower_pair_index():
    S = np.ones((12, 10), np.float32)   # 1 + 1e-6·frac(a + b) takes a handful of float32 values: many exact ties
    scores = dense(S)
    lam = lam_of(scores)
    assert len(np.unique(lam)) < 20
    plan = Greedy(alpha=0.2, beta_max=0.25).plan(scores)   # K = 2, at most 3 states an item
    np.testing.assert_array_equal(plan.assignment.toarray(), sequential_greedy(lam, 2, 0, 3))


# ----------------------------------------------------------------------------------------- the plan's shape
# mutants: `sp.csr_matrix(..., shape=(n_x, n_y))` -> shape=None / no shape (inferred from the last assigned pair)
@pytest.mark.parametrize("beta", [0.0, 0.25])
def test_the_plan_spans_every_state_and_item_when_the_last_ones_get_nothing(beta):
    S = np.arange(1, 17, dtype=np.float32).reshape(4, 4)
    excl = np.zeros((4, 4), bool)
    excl[3] = True       # the last state has seen every item
    excl[:, 3] = True    # and every state has seen the last item
    plan = Greedy(alpha=0.5, beta=beta).plan(dense(S, exclude=sp.csr_matrix(excl)))
    assert plan.assignment.shape == (4, 4)
    assert plan.assignment.toarray()[:3, :3].sum(1).tolist() == [2, 2, 2]


# ----------------------------------------------------------------------------------------- the fixed point
# mutant: greedy_accept `range(max_rounds or n + 1)` -> `range(max_rounds or n - 1)`
@pytest.mark.parametrize("m", [1, 4, 7])
def test_greedy_accept_settles_a_chain_that_needs_a_round_per_pair(m):
    """Pair 0's state has no capacity, and pairs 1.. form a chain where each shares a state or an item (capacity 1)
    with the next: the iteration from "all accepted" settles one more pair per round, so it takes all n rounds."""
    i = np.arange(m)
    xs, ys = np.r_[0, i // 2 + 1], np.r_[0, (i + 1) // 2]
    cap_x, cap_y = np.ones(xs.max() + 1, np.int64), np.ones(ys.max() + 1, np.int64)
    cap_x[0] = 0
    want = np.r_[False, i % 2 == 0]   # sequentially: pair 0 refused, then every other pair of the chain
    np.testing.assert_array_equal(greedy_accept(xs, ys, cap_x, cap_y), want)
