"""Kill tests for `repair_minimum` (plugins/planners/dual.py; the module docstring's "Feasibility repair"): every item
below ceil(c_min) is swapped into the states that lose least by it, a state giving up its cheapest item whose exposure
stays at or above the minimum, never for an excluded pair, never taking an item above floor(c_max), every state keeping
its number of items; the items fewest states may take go first.

The checks: hand-computed plans; a brute-force optimum for one deficient item (the m states that lose least, found by
enumerating every set of m states); a plain-loop reference of the documented rounds (per round, the states sorted by
their loss, each z given up by at most its surplus over the minimum); and the invariants (loads kept, no excluded
pair, nobody pushed below its minimum or above the cap, swaps = changed pairs / 2, unmet = items still short).
Every call runs under a deadline: a repair that stops making progress must fail, not hang."""
from __future__ import annotations

import contextlib
import itertools
import signal
import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import csr, lam_of, sets

from harness.matching import NEG, FactorScores, PlanningScores
from plugins.planners.dual import repair_minimum

DEADLINE_S = 5.0
"""Each repair here takes milliseconds; a repair still running after this long loops without progress."""


# ------------------------------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def deadline(seconds: float):
    """Raise TimeoutError in the main thread after `seconds`; restores any timer and handler set before."""
    def expire(signum, frame):
        raise TimeoutError(f"repair_minimum still running after {seconds:g} s: it loops without progress")

    old_handler = signal.signal(signal.SIGALRM, expire)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - start), 1e-3), old_interval)


def repair(scores, a0, k, c_min, c_max):
    with deadline(DEADLINE_S):
        return repair_minimum(scores, a0, k, c_min, c_max)


def scores_of(S, exclude=None, block_size=2, device=None) -> PlanningScores:
    """lambda = S / max(S) (+ the 1e-6 tie perturbation), streamed `block_size` states at a time."""
    S = np.asarray(S, np.float32)
    source = FactorScores(S, np.eye(S.shape[1]), device=device)
    return PlanningScores(source, "intensity", exclude, seed=0, block_size=block_size)


def exposure_of(rows: list[list[int]], n_y: int) -> np.ndarray:
    return np.bincount([y for r in rows for y in r], minlength=n_y)


def reference(lam: np.ndarray, rows: list[list[int]], need: int, cap: int):
    """The documented rounds in plain loops. Items below `need` in order (states allowed, item index); per round every
    state that may take y (not excluded, not holding it) offers its cheapest item z with exposure above `need`; in order
    of loss lam_xz - lam_xy (then state index) a state is taken while z has surplus left this round and y is short of
    min(need, cap). Returns (rows, swaps, unmet)."""
    n_x, n_y = lam.shape
    held = [list(r) for r in rows]  # slot order: ascending item index, as the csr rows
    exposure = exposure_of(held, n_y)
    allowed = lam > NEG / 2
    short = [y for y in range(n_y) if exposure[y] < need]
    swaps = 0
    for y in sorted(short, key=lambda y: (int(allowed[:, y].sum()), y)):
        target = min(need, cap)
        while exposure[y] < target:
            offers = []
            for x in range(n_x):
                if not allowed[x, y] or y in held[x]:
                    continue
                free = [(lam[x, z], pos) for pos, z in enumerate(held[x]) if exposure[z] > need]
                if free:
                    cost, pos = min(free)
                    offers.append((cost - lam[x, y], x, pos))
            if not offers:
                break
            used: dict[int, int] = {}
            moves = []
            for _, x, pos in sorted(offers):
                z = held[x][pos]
                if used.get(z, 0) < exposure[z] - need and exposure[y] + len(moves) < target:
                    used[z] = used.get(z, 0) + 1
                    moves.append((x, pos, z))
            for x, pos, z in moves:
                held[x][pos] = y
                exposure[z] -= 1
            exposure[y] += len(moves)
            swaps += len(moves)
    return [sorted(r) for r in held], swaps, int((exposure < need).sum())


def check_invariants(lam, rows0, a, swaps, unmet, need, cap):
    """What the docstring promises of any repaired plan."""
    a = sp.csr_matrix(a)
    n_x, n_y = lam.shape
    rows = sets(a)
    assert a.shape == (n_x, n_y)
    assert [len(r) for r in rows] == [len(r) for r in rows0], "a state's number of items changed"
    assert all(len(set(r)) == len(r) for r in rows), "an item twice in one state"
    e0, e = exposure_of(rows0, n_y), exposure_of(rows, n_y)
    assert all(lam[x, y] > NEG / 2 for x, r in enumerate(rows) for y in r if y not in rows0[x]), "excluded pair"
    assert (e[e0 >= need] >= need).all(), "an item pushed below its minimum"
    assert (e[e > e0] <= max(cap, 0)).all(), "an item pushed above the cap"
    assert (e[e0 < need] >= e0[e0 < need]).all(), "a deficient item lost a state"
    changed = sum(len(set(r) ^ set(r0)) for r, r0 in zip(rows, rows0, strict=True))
    assert changed == 2 * swaps
    assert unmet == int((e < need).sum())


def value(lam, rows) -> float:
    return float(sum(lam[x, y] for x, r in enumerate(rows) for y in r))


# ------------------------------------------------------------------------------------------------ hand-computed plans
def test_one_deficient_item_one_swap_into_the_cheapest_state():
    """4 states x 3 items, K = 1, minimum 1: states 0-2 on item 0, state 3 on item 1, item 2 at 0 (the only deficient
    item, the last column). Losses lambda_x0 - lambda_x2 (x 1/0.9): 0.6, 0.1, 0.5 -> state 1, the one swap."""
    S = [[0.9, 0.1, 0.3], [0.9, 0.2, 0.8], [0.9, 0.3, 0.4], [0.1, 0.9, 0.85]]
    a0 = csr([[0], [0], [0], [1]], 3)
    a, swaps, unmet = repair(scores_of(S), a0, 1, 1.0, 4.0)
    assert sets(a) == [[0], [2], [0], [1]] and (swaps, unmet) == (1, 0)
    assert a.shape == (4, 3) and a.dtype == a0.dtype == np.float32
    assert np.array_equal(a.toarray(), csr([[0], [2], [0], [1]], 3).toarray())


def test_a_feasible_plan_is_returned_as_is_with_no_swaps_and_nothing_unmet():
    S = [[0.9, 0.1], [0.2, 0.5], [0.3, 0.4]]
    a0 = csr([[0], [1], [0]], 2)
    a, swaps, unmet = repair(scores_of(S), a0, 1, 1.0, 3.0)
    assert a is a0 and (swaps, unmet) == (0, 0)


def test_an_item_no_state_may_take_stays_unmet_and_the_plan_unchanged():
    """Item 1 is excluded in every state: nothing to swap, the input back with 0 swaps and 1 unmet item."""
    S = [[0.9, 0.8], [0.7, 0.6], [0.5, 0.4]]
    excl = sp.csr_matrix(np.array([[0, 1]] * 3, bool))
    a0 = csr([[0]] * 3, 2)
    a, swaps, unmet = repair(scores_of(S, excl), a0, 1, 1.0, 3.0)
    assert a is a0 and (swaps, unmet) == (0, 1)


def test_an_item_only_one_state_may_take_goes_there():
    """Item 1 is allowed only in state 2 (the most expensive swap): one candidate, one swap."""
    S = [[0.5, 0.9], [0.5, 0.8], [0.9, 0.1]]
    excl = sp.csr_matrix(np.array([[0, 1], [0, 1], [0, 0]], bool))
    a, swaps, unmet = repair(scores_of(S, excl), csr([[0]] * 3, 2), 1, 1.0, 3.0)
    assert sets(a) == [[0], [0], [1]] and (swaps, unmet) == (1, 0)


def test_an_excluded_pair_is_never_the_cheapest_swap():
    """State 0 would lose nothing by item 1 but excludes it: item 1 goes to state 1 (loss 0.5 vs 0.7)."""
    S = [[0.9, 0.95], [0.9, 0.4], [0.9, 0.2]]
    excl = sp.csr_matrix(np.array([[0, 1], [0, 0], [0, 0]], bool))
    a, swaps, unmet = repair(scores_of(S, excl), csr([[0]] * 3, 2), 1, 1.0, 3.0)
    assert sets(a) == [[0], [1], [0]] and (swaps, unmet) == (1, 0)


def test_an_item_at_its_minimum_is_never_given_up():
    """3 states x 3 items, K = 2, minimum 2, all on items 0 and 1 (3, 3, 0). Every state's cheapest item is 0, but item
    0 can give up one state: state 0 (loss 0.3 - 0.5 < 0) swaps 0 -> 2; then state 2 gives up item 1 (0.8 - 0.35 =
    0.45 < state 1's 0.6 - 0.1) rather than item 0, which is at its minimum."""
    S = [[0.3, 0.9, 0.5], [0.2, 0.6, 0.1], [0.4, 0.8, 0.35]]
    a, swaps, unmet = repair(scores_of(S), csr([[0, 1]] * 3, 3), 2, 2.0, 3.0)
    assert sets(a) == [[1, 2], [0, 1], [0, 2]] and (swaps, unmet) == (2, 0)


def test_each_state_gives_up_its_own_cheapest_item():
    """2 states x 4 items, K = 2, minimum 1: states on {0, 1} and {0, 2}; item 0 (2 states) has a surplus of 1, items 1
    and 2 none, item 3 is at 0. Giving up item 0 costs state 0 lambda_00 - lambda_03 = 0.5 - 0.45 and state 1
    0.9 - 0.1: state 0 swaps 0 -> 3 (its own lambda_00 counts, not the 0.6 of its other item)."""
    S = [[0.5, 0.6, 0.1, 0.45], [0.9, 0.1, 0.95, 0.1]]
    a, swaps, unmet = repair(scores_of(S, block_size=1), csr([[0, 1], [0, 2]], 4), 2, 1.0, 2.0)
    assert sets(a) == [[1, 3], [0, 2]] and (swaps, unmet) == (1, 0)


def test_a_state_with_an_empty_slot_keeps_it_empty():
    """K = 2 but state 1 holds one item (a dual's positive_only state): the repair keeps its load of one. Item 2 needs
    1: state 0 gives up its cheapest item, 1 (loss 0.3 - 0.8 < 0; state 2 would lose 0.5 - 0.2)."""
    S = [[0.9, 0.3, 0.8], [0.9, 0.2, 0.1], [0.9, 0.5, 0.2]]
    a0 = csr([[0, 1], [0], [0, 1]], 3)
    a, swaps, unmet = repair(scores_of(S), a0, 2, 1.0, 3.0)
    assert sets(a) == [[0, 2], [0], [0, 1]] and (swaps, unmet) == (1, 0)
    assert np.array_equal(np.diff(a.indptr), [2, 1, 2])


def test_the_cap_stops_the_repair_and_the_item_stays_short():
    """6 states x 2 items, K = 1, all on item 0; losses lambda_x0 - lambda_x1 (x 1/0.95) 0.8, 0.3, 0.05, 0.4, 0.65,
    0.06. Minimum 2.5 -> 3 but cap floor(2.5) = 2: item 1 gets the 2 cheapest states, 2 and 5, and stays one short.
    A cap of exactly 2.0 is 2 (not 1); a minimum of exactly 3.0 is 3 (not 2) and adds state 1."""
    S = [[0.9, 0.1], [0.8, 0.5], [0.7, 0.65], [0.6, 0.2], [0.95, 0.3], [0.5, 0.44]]
    a0 = csr([[0]] * 6, 2)
    a, swaps, unmet = repair(scores_of(S), a0, 1, 2.5, 2.5)
    assert sets(a) == [[0], [0], [1], [0], [0], [1]] and (swaps, unmet) == (2, 1)
    a, swaps, unmet = repair(scores_of(S), a0, 1, 2.0, 2.0)
    assert sets(a) == [[0], [0], [1], [0], [0], [1]] and (swaps, unmet) == (2, 0)
    a, swaps, unmet = repair(scores_of(S), a0, 1, 3.0, 6.0)
    assert sets(a) == [[0], [1], [1], [0], [0], [1]] and (swaps, unmet) == (3, 0)


def test_a_partly_exposed_item_is_topped_up_to_its_minimum_not_beyond():
    """8 states x 2 items, K = 1, minimum 3: item 1 already has state 7, so it needs exactly 2 more (the two cheapest
    of states 0-6), ending at 3, not 3 + 1."""
    S = [[0.9, 0.8], [0.9, 0.7], [0.9, 0.6], [0.9, 0.5], [0.9, 0.4], [0.9, 0.3], [0.9, 0.2], [0.1, 0.9]]
    a0 = csr([[0]] * 7 + [[1]], 2)
    a, swaps, unmet = repair(scores_of(S, block_size=3), a0, 1, 3.0, 8.0)
    assert sets(a) == [[1], [1], [0], [0], [0], [0], [0], [1]] and (swaps, unmet) == (2, 0)


def test_swaps_are_counted_over_every_round_and_item():
    """5 states x 3 items, K = 1, minimum 2, all on item 0 (surplus 3): item 1 takes 2 states in one round, item 2 the
    one left above item 0's minimum; 3 swaps, item 2 one short."""
    S = [[0.9, 0.8, 0.1], [0.8, 0.1, 0.2], [0.7, 0.6, 0.3], [0.6, 0.1, 0.55], [0.5, 0.2, 0.3]]
    a, swaps, unmet = repair(scores_of(S), csr([[0]] * 5, 3), 1, 2.0, 5.0)
    assert sets(a) == [[1], [0], [1], [2], [0]] and (swaps, unmet) == (3, 1)


def test_each_given_up_item_loses_at_most_its_surplus_per_round():
    """8 states x 3 items, K = 1, minimum 2, item 2 at 0. Item 0 (states 0-4, surplus 3), item 1 (states 5-7, surplus
    1). Losses lambda_xz - lambda_x2 (x 1/0.9): state 5 0.05, state 0 0.1, state 1 0.2, state 6 0.3, state 2 0.4, ...
    The two cheapest are states 5 (giving up item 1) and 0 (item 0), each item within its surplus."""
    S = [[0.9, 0.0, 0.8], [0.9, 0.0, 0.7], [0.9, 0.0, 0.5], [0.9, 0.0, 0.4], [0.9, 0.0, 0.3],
         [0.0, 0.9, 0.85], [0.0, 0.9, 0.6], [0.0, 0.9, 0.45]]
    a0 = csr([[0]] * 5 + [[1]] * 3, 3)
    a, swaps, unmet = repair(scores_of(S, block_size=3), a0, 1, 2.0, 8.0)
    assert sets(a) == [[2], [0], [0], [0], [0], [2], [1], [1]] and (swaps, unmet) == (2, 0)


def test_a_surplus_item_shared_by_more_cheap_states_than_its_surplus():
    """9 states x 3 items, K = 1, minimum 2, item 2 at 0 and needing 2. Item 1 (states 0-3, surplus 2) is given up at
    the lowest losses (0.01, 0.02, 0.03, 0.04 in state order 3, 1, 0, 2), item 0 (states 4-8, surplus 3) at 0.5+.
    Item 1 may lose two states: the two cheapest, states 3 and 1."""
    S = [[0.1, 0.9, 0.87], [0.1, 0.9, 0.88], [0.1, 0.9, 0.86], [0.1, 0.9, 0.89],
         [0.9, 0.1, 0.4], [0.9, 0.1, 0.3], [0.9, 0.1, 0.2], [0.9, 0.1, 0.1], [0.9, 0.1, 0.35]]
    a0 = csr([[1]] * 4 + [[0]] * 5, 3)
    a, swaps, unmet = repair(scores_of(S, block_size=4), a0, 1, 2.0, 9.0)
    assert sets(a) == [[1], [2], [1], [2], [0], [0], [0], [0], [0]] and (swaps, unmet) == (2, 0)


def test_the_items_fewest_states_may_take_go_first():
    """3 states x 3 items, K = 1, minimum 1, all on item 0. Item 1 is allowed only in state 0, where item 2 would also
    lose least: item 1 goes first (1 state allowed vs 3) and takes state 0, item 2 the next cheapest, state 2."""
    S = [[0.5, 0.1, 0.6], [0.9, 0.2, 0.3], [0.8, 0.3, 0.4]]
    excl = sp.csr_matrix(([True, True], ([1, 2], [1, 1])), shape=(3, 3))
    a, swaps, unmet = repair(scores_of(S, excl), csr([[0]] * 3, 3), 1, 1.0, 3.0)
    assert sets(a) == [[1], [0], [2]] and (swaps, unmet) == (2, 0)


def test_the_repaired_matrix_keeps_the_shape_when_the_last_state_and_item_are_empty():
    """The last state holds nothing (load 0) and the last item is excluded everywhere (unmet): the result is still
    |X| x |Y|, float32, with one swap (item 1 into state 0)."""
    S = [[0.9, 0.8, 0.1], [0.9, 0.2, 0.1], [0.3, 0.3, 0.3]]
    excl = sp.csr_matrix(np.array([[0, 0, 1]] * 3, bool))
    a0 = csr([[0], [0], []], 3)
    a, swaps, unmet = repair(scores_of(S, excl), a0, 1, 1.0, 3.0)
    assert a.shape == (3, 3) and a.dtype == np.float32
    assert sets(a) == [[1], [0], []] and (swaps, unmet) == (1, 1)


# ------------------------------------------------------------------------------------------------ ties
def test_equal_allowed_counts_are_taken_in_item_order():
    """6 states x 5 items, K = 1, minimum 1, all on item 0. Items 1-4 all lose least in state 0 (loss ~0) and next in
    state y (loss 0.1); items 3 and 4 are excluded in state 5, so they may take 5 states, items 1 and 2 six. The
    documented order, fewest states first and equal counts by item index (3, 4, 1, 2; a platform-independent plan, not
    a sort's accident), gives state 0 to item 3, and each other item its state y."""
    S = np.full((6, 5), 0.2, np.float32)
    S[:, 0] = 0.9
    S[0, 1:] = 0.9
    S[[1, 2, 3, 4], [1, 2, 3, 4]] = 0.8
    excl = np.zeros((6, 5), bool)
    excl[5, [3, 4]] = True
    scores = scores_of(S, sp.csr_matrix(excl), block_size=4)
    rows0 = [[0]] * 6
    a, swaps, unmet = repair(scores, csr(rows0, 5), 1, 1.0, 6.0)
    assert sets(a) == [[3], [1], [2], [0], [4], [0]] and (swaps, unmet) == (4, 0)
    assert (sets(a), swaps, unmet) == reference(lam_of(scores), rows0, 1, 6)


def test_a_surplus_item_is_counted_across_the_whole_round():
    """14 states x 4 items, K = 1, minimum 3, item 3 at 0. Items 0 (states 0-3) and 1 (states 4-7) have a surplus of
    1, item 2 (states 8-13) of 3. In order of loss the states give up items 0, 1, 0, 1, 2, 2, ... (states 0, 4, 1, 5,
    8, 9): item 0 and item 1 may each lose one state, so item 3 takes states 0, 4 and 8, never state 1 (which would
    take item 0 below its minimum)."""
    S = np.zeros((14, 4), np.float32)
    S[0:4, 0] = S[4:8, 1] = S[8:14, 2] = 0.9
    S[:, 3] = [0.8, 0.6, 0.1, 0.05, 0.7, 0.5, 0.12, 0.08, 0.4, 0.3, 0.15, 0.13, 0.11, 0.09]
    rows0 = [[0]] * 4 + [[1]] * 4 + [[2]] * 6
    a, swaps, unmet = repair(scores_of(S, block_size=5), csr(rows0, 4), 1, 3.0, 14.0)
    want = [[3], [0], [0], [0], [3], [1], [1], [1], [3]] + [[2]] * 5
    assert sets(a) == want and (swaps, unmet) == (3, 0)


def test_equal_losses_go_to_the_lower_state():
    """40 states all on item 0 with raw score 1 (lambda 1 up to the tie perturbation's float32 steps) and item 1 at raw
    score 1 too: the losses take a few distinct values, many states share each. Item 1 needs 12 states: the 12 smallest
    losses, ties to the lower state index (as the reference, by a sort on (loss, state))."""
    n_x = 40
    S = np.ones((n_x, 2), np.float32)
    scores = scores_of(S, block_size=16)
    lam = lam_of(scores)
    loss = lam[:, 0] - lam[:, 1]
    assert len(np.unique(loss)) < n_x // 2  # ties abound
    rows0 = [[0]] * n_x
    a, swaps, unmet = repair(scores, csr(rows0, 2), 1, 12.0, float(n_x))
    want = sorted(sorted(range(n_x), key=lambda x: (loss[x], x))[:12])
    assert [x for x, r in enumerate(sets(a)) if r == [1]] == want
    assert (swaps, unmet) == (12, 0)


# ------------------------------------------------------------------------------------------------ brute force
@pytest.mark.parametrize("seed", range(6))
def test_one_deficient_item_gets_the_cheapest_set_of_states(seed):
    """One item short by m = 3, the others with surplus to spare (12 states on items {x mod 4, x + 1 mod 4}: 6 each for
    a minimum of 3): the repaired plan loses exactly the least total lambda over every set of 3 states (each giving up
    its cheapest item), found by brute force over all sets of states allowed the item."""
    rng = np.random.default_rng(seed)
    n_x, n_y, k, need = 12, 5, 2, 3
    S = rng.random((n_x, n_y)).astype(np.float32) * 0.9 + 0.05
    rows0 = [sorted([x % 4, (x + 1) % 4]) for x in range(n_x)]
    excl = rng.random((n_x, n_y)) < 0.25
    for x, r in enumerate(rows0):
        excl[x, r] = False
    scores = scores_of(S, sp.csr_matrix(excl), block_size=5)
    lam = lam_of(scores)
    e0 = exposure_of(rows0, n_y)
    m = need - e0[4]
    assert m == 3 and (e0[:4] - need >= m).all()  # no surplus binds
    a, swaps, unmet = repair(scores, csr(rows0, n_y), k, float(need), float(n_x))
    check_invariants(lam, rows0, a, swaps, unmet, need, n_x)
    ok = [x for x in range(n_x) if not excl[x, 4]]
    per_state = {x: min(lam[x, z] for z in rows0[x]) - lam[x, 4] for x in ok}
    best = min(sum(per_state[x] for x in group) for group in itertools.combinations(ok, m))
    assert swaps == m and unmet == 0
    assert value(lam, rows0) - value(lam, sets(a)) == pytest.approx(best, abs=1e-9)


# -------------------------------------------------------------------------------------------- reference, random plans
def random_case(seed: int):
    """9-14 states x 5-8 items, a popularity-skewed plan of K in {1, 2, 3} items per state (some states one short),
    20% excluded pairs outside the plan, minimum 2 or 3 (sometimes x.5), cap none, the minimum, or the minimum + 1."""
    rng = np.random.default_rng(1000 + seed)
    n_x, n_y = int(rng.integers(9, 15)), int(rng.integers(5, 9))
    k = int(rng.integers(1, 4))
    pop = rng.gamma(0.7, 1.0, n_y) + 0.05
    S = (pop[None, :] * rng.random((n_x, n_y))).astype(np.float32)
    rows0 = []
    for _ in range(n_x):
        load = k - int(rng.random() < 0.2)
        p = pop / pop.sum()
        rows0.append(sorted(int(y) for y in rng.choice(n_y, size=load, replace=False, p=p)))
    excl = rng.random((n_x, n_y)) < 0.2
    for x, r in enumerate(rows0):
        excl[x, r] = False
    need = int(rng.integers(2, 4))
    c_min = need - 0.5 * int(rng.random() < 0.3)
    c_max = [float(n_x), float(c_min), c_min + 1.0][int(rng.integers(0, 3))]
    return S, excl, rows0, k, c_min, c_max


@pytest.mark.parametrize("seed", range(40))
def test_repair_matches_the_reference_and_keeps_the_invariants(seed):
    S, excl, rows0, k, c_min, c_max = random_case(seed)
    n_x, n_y = S.shape
    scores = scores_of(S, sp.csr_matrix(excl), block_size=4)
    lam = lam_of(scores)
    need, cap = int(np.ceil(c_min - 1e-9)), int(np.floor(c_max + 1e-9))
    a0 = csr(rows0, n_y)
    a, swaps, unmet = repair(scores, a0, k, c_min, c_max)
    check_invariants(lam, rows0, a, swaps, unmet, need, cap)
    assert (sets(a), swaps, unmet) == reference(lam, rows0, need, cap)
    if swaps:
        assert a.dtype == np.float32 and a.has_sorted_indices
    else:
        assert a is a0


def test_the_random_cases_exercise_the_repair():
    """The 40 random cases above are not vacuous: most need swaps, some leave items unmet, some hit the cap."""
    stats = {"swaps": 0, "unmet": 0, "cap": 0}
    for seed in range(40):
        S, excl, rows0, k, c_min, c_max = random_case(seed)
        lam = np.where(excl, NEG, S)
        need, cap = int(np.ceil(c_min - 1e-9)), int(np.floor(c_max + 1e-9))
        _, swaps, unmet = reference(lam, rows0, need, cap)
        stats["swaps"] += swaps > 0
        stats["unmet"] += unmet > 0
        stats["cap"] += cap < need
    assert stats["swaps"] >= 25 and stats["unmet"] >= 3 and stats["cap"] >= 3, stats


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_scores_on_a_gpu_give_the_reference_plan():
    """The scores' blocks on a CUDA device: the columns and the assigned items are read there (index tensors on the
    scores' device) and the plan is the reference's on the same lambda."""
    for seed in range(5):
        S, excl, rows0, k, c_min, c_max = random_case(seed)
        scores = scores_of(S, sp.csr_matrix(excl), block_size=4, device=torch.device("cuda"))
        need, cap = int(np.ceil(c_min - 1e-9)), int(np.floor(c_max + 1e-9))
        a, swaps, unmet = repair(scores, csr(rows0, S.shape[1]), k, c_min, c_max)
        assert (sets(a), swaps, unmet) == reference(lam_of(scores), rows0, need, cap)
