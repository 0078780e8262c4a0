"""WorldTruth (plugins/datasets/world_truth.py): the surviving mutants of the 2026-12-02 mutmut run (issue 13).

Tiny hand-built truths (dense joint counts, or the events' contexts) checked against independent numpy/scipy
references: scipy's softmax of the stated logits summed by hand over the contexts, the uniform / first-event law of
a world without events, the memory guards' stated estimates (two float64 tables) and messages naming what to change.
The comment above each test names the mutants (`plugins.datasets.world_truth.` omitted) it kills.
"""
import re

import numpy as np
import pytest
from scipy.special import softmax

import plugins.datasets.world_truth as wt
from harness.errors import ConfigError
from harness.splits import UserStates
from plugins.datasets.world_truth import WorldTruth, _row_bincount


def _params(n_users, n_items, dim, seed, **over) -> dict:
    rng = np.random.default_rng(seed)
    kw = dict(theta=rng.normal(size=(n_users, dim)), phi=rng.normal(size=(n_items, dim)), b=rng.normal(size=n_items),
              mu=rng.uniform(0.5, 2.0, n_users), alpha=rng.uniform(0.1, 0.6, n_users), beta=2.0, gamma=1.5,
              taste_scale=1.3, days=30.0)
    kw.update(over)
    return kw


def _dense_world(n_users=4, n_items=5, dim=3, seed=0, idle=(), **over) -> WorldTruth:
    """A truth given by its dense joint counts; the users in `idle` have no events (zero rows)."""
    rng = np.random.default_rng(seed + 100)
    jc = rng.uniform(0.5, 3.0, (n_users, n_items))
    jc[list(idle)] = 0.0
    return WorldTruth(**_params(n_users, n_items, dim, seed, joint_counts=jc, **over))


# (user, last item or -1, events): sorted by user; user 3 has no events
CONTEXTS = [(0, -1, 1.0), (0, 2, 3.0), (0, 0, 1.0), (1, -1, 1.0), (1, 1, 2.0), (2, -1, 1.0), (2, 3, 4.0),
            (4, -1, 1.0), (4, 0, 1.0), (4, 2, 2.0)]


def _ctx_world(n_users=5, n_items=4, dim=2, seed=1, contexts=CONTEXTS, **over) -> WorldTruth:
    u, last, c = (np.array(col) for col in zip(*contexts, strict=True))
    return WorldTruth(**_params(n_users, n_items, dim, seed, ctx_user=u.astype(np.int64),
                                ctx_last=last.astype(np.int64), ctx_count=c.astype(np.float64), **over))


def _ref_probs(tr, u, last) -> np.ndarray:
    """p(· | x) = softmax(taste_scale·θ_u·φ + b + γ·φ_last·φ), the drift only after a history item."""
    z = tr.taste_scale * (tr.phi @ tr.theta[u]) + tr.b
    if last >= 0:
        z = z + tr.gamma * (tr.phi @ tr.phi[last])
    return softmax(z)


def _ref_joint_counts(tr, contexts=CONTEXTS) -> np.ndarray:
    out = np.zeros((tr.n_users, tr.n_items))
    for u, last, c in contexts:
        out[u] += c * _ref_probs(tr, u, last)
    return out


def _ref_first_event_law(tr) -> np.ndarray:
    """p(i | u) of a user without events: the law of its first item (empty history), users × items."""
    return softmax(tr.taste_scale * tr.theta @ tr.phi.T + tr.b, axis=1)


def _states(users, hists) -> UserStates:
    ptr = np.concatenate([[0], np.cumsum([len(h) for h in hists])]).astype(np.int64)
    items = np.array([i for h in hists for i in h], dtype=np.int64)
    times = np.array([float(j) for h in hists for j in range(len(h))])
    return UserStates(user=np.asarray(users, dtype=np.int64), time=np.full(len(users), 50.0), hist_ptr=ptr,
                      hist_item=items, hist_time=times)


def _budget(monkeypatch, nbytes: int) -> None:
    """The memory guard's budget set to exactly `nbytes` (a power-of-two scaling: exact in float)."""
    monkeypatch.setenv("MATCHBENCH_MEMORY_GIB", repr(nbytes / 2**30))


# ---------------------------------------------------------------------------------------------- _softmax_rows
# kills x__softmax_rows__mutmut_2 (logits + max: exp overflows), _3 and _5 (one max over all rows: a row far below
# the others underflows to 0/0) -- through the first-event law of users without events
def test_idle_users_first_event_law_with_extreme_logits():
    tr = _dense_world(n_users=3, n_items=3, dim=1, idle=(0, 1), theta=np.array([[0.0], [-2000.0], [0.0]]),
                      phi=np.ones((3, 1)), b=np.array([400.0, 0.0, -3.0]), taste_scale=1.0)
    got = tr.item_given_user_rows([0, 1, 2])
    ref = _ref_first_event_law(tr)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got[:2], ref[:2], rtol=1e-12, atol=0)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)


# ------------------------------------------------------------------------------------- a world without events
# kills xǁWorldTruthǁ_contexts__mutmut_2, _3, _4, _5, _6, _7, _8 (the empty contexts broken: n_events fails),
# _9 (a count array of length 1 for no contexts: the three context arrays are parallel);
# xǁWorldTruthǁjoint_rows__mutmut_6, _8 (the items dropped in the no-event branch) and with them
# xǁWorldTruthǁitem_given_user_rows__mutmut_22, _24, _26; xǁWorldTruthǁitem_marginal__mutmut_2 (total >= 0: 0/0),
# _5, _6, _7, _8, _9, _10, _11, _13, _14, _15, _16, _17, _19, _20, _21, _22, _23, _24 (blocks restarting or
# overlapping), _25, _27, _28, _29, _30, _31, _32, _34, _35, _36, _37, _38, _39, _40, _41
# (the no-event p(i) = mean over users of the first-event law)
def test_world_without_events():
    tr = WorldTruth(**_params(n_users=5, n_items=3, dim=2, seed=3))
    law = _ref_first_event_law(tr)
    user, last, count = tr._contexts()
    assert len(user) == len(last) == len(count) == 0
    assert tr.n_events == 0.0
    np.testing.assert_allclose(tr.user_marginal(), np.full(5, 0.2), rtol=1e-15)
    np.testing.assert_allclose(tr.item_given_user_rows([4, 0]), law[[4, 0]], rtol=1e-12)
    np.testing.assert_allclose(tr.joint_rows([1, 3], [2, 0]), law[[1, 3]][:, [2, 0]] / 5, rtol=1e-12)
    np.testing.assert_allclose(tr.joint(), law / 5, rtol=1e-12)
    np.testing.assert_allclose(tr.item_marginal(), law.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(tr.item_marginal().sum(), 1.0, rtol=1e-12)


# kills xǁWorldTruthǁitem_marginal__mutmut_26 (mass = : only the last block), _33 (each block from user 0), and
# most of the ones above again (_23: only the first block): the no-event p(i) summed over several blocks of users
@pytest.mark.parametrize("block_cells", [3, 6, 7])
def test_world_without_events_item_marginal_by_blocks(monkeypatch, block_cells):
    monkeypatch.setattr(wt, "BLOCK_CELLS", block_cells)  # 3 items: 1, 2, 2 users per block
    tr = WorldTruth(**_params(n_users=5, n_items=3, dim=2, seed=4))
    np.testing.assert_allclose(tr.item_marginal(), _ref_first_event_law(tr).mean(axis=0), rtol=1e-12)


# kills xǁWorldTruthǁitem_marginal__mutmut_3 (total > 1: a truth with exactly one event's mass takes the no-event
# branch)
@pytest.mark.parametrize("total", [1.0, 0.5])
def test_item_marginal_with_at_most_one_event(total):
    tr = _dense_world(n_users=2, n_items=3, seed=5)
    tr.joint_counts = np.array([[0.25, 0.0, 0.25], [0.0, 0.5, 0.0]]) * total
    np.testing.assert_allclose(tr.item_marginal(), [0.25, 0.5, 0.25], rtol=1e-15)


# -------------------------------------------------------------------------------- the joint from the contexts
# kills xǁWorldTruthǁ_context_probs__mutmut_8 (z + max: exp overflows), _9 and _11 (one max over all contexts: a
# context far below the others underflows) -- joint counts and p(i) against scipy's softmax summed by hand
def test_context_probs_with_extreme_logits():
    theta = np.array([[0.0, 0.0], [-2000.0, 0.0], [0.3, -0.2], [1.0, 1.0], [-0.5, 0.4]])
    phi = np.column_stack([np.ones(4), [0.1, -0.2, 0.3, 0.0]])
    tr = _ctx_world(theta=theta, phi=phi, b=np.array([400.0, 0.0, -1.0, 2.0]), taste_scale=1.0)
    ref = _ref_joint_counts(tr)
    got = tr.joint_count_rows(np.arange(5))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(tr.item_marginal(), ref.sum(axis=0) / ref.sum(), rtol=1e-12, atol=1e-300)


# kills xǁWorldTruthǁ_contexts__mutmut_11, _13 (ctx_user not made integer), _15, _17 (ctx_last not made integer):
# contexts given as float arrays (integral values, e.g. read back from a text file) mean the same truth
def test_contexts_given_as_floats():
    u, last, c = (np.array(col, dtype=np.float64) for col in zip(*CONTEXTS, strict=True))
    tr = WorldTruth(**_params(5, 4, 2, 1, ctx_user=u, ctx_last=last, ctx_count=c))
    ref = _ref_joint_counts(tr)
    np.testing.assert_allclose(tr.user_event_counts, ref.sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(tr.joint_count_rows([4, 0, 2]), ref[[4, 0, 2]], rtol=1e-12)
    np.testing.assert_allclose(tr.item_marginal(), ref.sum(axis=0) / ref.sum(), rtol=1e-12)


# kills xǁWorldTruthǁjoint_count_rows__mutmut_19, _20, _21, _22 (the memo never read), _33, _34, _35 (never stored):
# the truth metrics' four tables of one block (joint, p(i|u), log p(u|i), PMI) compute the block once
def test_four_tables_of_one_block_compute_it_once():
    tr = _ctx_world()
    calls = []
    block = tr._joint_count_block

    def spy(users, items):
        calls.append((users.copy(), items.copy()))
        return block(users, items)

    tr._joint_count_block = spy
    users, items = np.array([4, 0, 1]), np.array([3, 1])
    ref = _ref_joint_counts(tr)
    n = ref.sum()
    p_u, p_i = ref.sum(axis=1) / n, ref.sum(axis=0) / n
    j = ref[users][:, items] / n
    np.testing.assert_allclose(tr.joint_rows(users, items), j, rtol=1e-12)
    np.testing.assert_allclose(tr.item_given_user_rows(users, items), j / p_u[users, None], rtol=1e-12)
    np.testing.assert_allclose(tr.log_user_given_item_rows(users, items), np.log(j / p_i[items]), rtol=1e-12)
    np.testing.assert_allclose(tr.pmi_rows(users, items), np.log(j / np.outer(p_u[users], p_i[items])),
                               rtol=1e-10, atol=1e-12)
    assert len(calls) == 1
    tr.joint_rows(users[::-1], items)  # another block: computed afresh
    assert len(calls) == 2


# ------------------------------------------------------------------------------------ empty blocks, idle users
# kills xǁWorldTruthǁjoint_count_rows__mutmut_3, _5 (users not made integer), _12, _14 (items not made integer);
# xǁWorldTruthǁitem_given_user_rows__mutmut_3, _5, _25, _27; xǁWorldTruthǁ_item_marginal_at__mutmut_6, _8:
# an empty list of users or items (numpy makes it float64) is an empty block, not an IndexError
@pytest.mark.parametrize("make", [lambda: _dense_world(idle=(2,)), lambda: _ctx_world()], ids=["dense", "contexts"])
def test_empty_blocks(make):
    tr = make()
    m = tr.n_items
    idle = int(np.flatnonzero(tr.user_event_counts == 0)[0])
    for f in (tr.joint_count_rows, tr.joint_rows, tr.item_given_user_rows, tr.log_item_given_user_rows,
              tr.log_user_given_item_rows, tr.pmi_rows):
        assert f([]).shape == (0, m)
        assert f([], []).shape == (0, 0)
        assert f([idle, 0], []).shape == (2, 0)
    assert tr.joint_count_rows([]).dtype == np.float64


# kills xǁWorldTruthǁitem_given_user_rows__mutmut_22 (all items for the idle rows), _24, _26 (the items lost):
# p(i | u) at a subset of items, for an active and an idle user, against the table and the first-event law
def test_item_given_user_rows_idle_user_at_some_items():
    tr = _dense_world(n_users=4, n_items=5, idle=(2,))
    items = [4, 0, 2]
    got = tr.item_given_user_rows([1, 2], items)
    jc = tr.joint_counts
    np.testing.assert_allclose(got[0], jc[1, items] / jc[1].sum(), rtol=1e-12)
    np.testing.assert_allclose(got[1], _ref_first_event_law(tr)[2, items], rtol=1e-12)
    full = tr.item_given_user_rows([1, 2])
    np.testing.assert_allclose(full.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(full[:, items], got, rtol=1e-15)


# ------------------------------------------------------------------------------------- the dense tables' guard
DENSE = ["joint", "log_joint", "item_given_user", "log_item_given_user", "log_user_given_item", "pmi"]


# kills xǁWorldTruthǁ_all_users__mutmut_2, _3 (the message's parts lost), _7, _8, _9 (estimate too small), _10, _11
# (too large); xǁWorldTruthǁ{joint,log_joint,item_given_user,log_item_given_user,log_user_given_item,pmi}__mutmut_2,
# _3, _4 (the table's name garbled in the message): the guard refuses exactly above two float64 tables of
# users × items, naming the table and the block-wise method to use instead
@pytest.mark.parametrize("name", DENSE)
def test_dense_table_memory_guard(monkeypatch, name):
    tr = _dense_world(n_users=5, n_items=3)
    need = 2 * 8 * 5 * 3
    _budget(monkeypatch, need - 1)
    with pytest.raises(ConfigError) as err:
        getattr(tr, name)()
    msg = str(err.value)
    assert f"the dense {name} table (5 × 3 float64) needs" in msg
    assert re.search(rf"; use {name}_rows\(users, items\) for a block of users and items$", msg)
    _budget(monkeypatch, need)
    np.testing.assert_array_equal(getattr(tr, name)(), getattr(tr, f"{name}_rows")(np.arange(5)))


# ------------------------------------------------------------------------------------ expected_counts' marks
def _ref_mark_expectation(tr, u, last, counts) -> np.ndarray:
    """Σ_k P̂(N ≥ k)·π_k with π_1 = p(·|x) and π_{k+1} = π_k P_u, P_u[z] = p(· | user u, last item z)."""
    p = np.array([_ref_probs(tr, u, z) for z in range(tr.n_items)])
    pi, out = _ref_probs(tr, u, last), np.zeros(tr.n_items)
    for k in range(1, int(counts.max()) + 1):
        out += np.mean(counts >= k) * pi
        pi = pi @ p
    return out


# kills xǁWorldTruthǁ_mark_expectation__mutmut_38, _39 (the message's parts lost), _49, _50 (the fix garbled),
# _43, _44, _47 (estimate too small), _45, _46, _48 (too large): the kernel's guard refuses exactly above two
# float64 n_items² tables and names the parameter to lower
def test_mark_expectation_memory_guard(monkeypatch):
    tr = _dense_world(n_users=3, n_items=3)
    st = _states([0, 1, 2], [[], [2], [0, 1]])
    counts = np.array([[1, 0, 2], [0, 0, 1], [3, 1, 1]])
    need = 2 * 8 * 3 ** 2
    _budget(monkeypatch, need - 1)
    with pytest.raises(ConfigError) as err:
        tr._mark_expectation(st, counts, 1e-12)
    msg = str(err.value)
    assert "expected_counts' item-to-item kernel (3² float64) needs" in msg
    assert re.search(r"; lower n_items$", msg)
    _budget(monkeypatch, need)
    got = tr._mark_expectation(st, counts, 1e-12)
    for s, (u, last) in enumerate([(0, -1), (1, 2), (2, 1)]):
        np.testing.assert_allclose(got[s], _ref_mark_expectation(tr, u, last, counts[s]), rtol=1e-10)


# kills xǁWorldTruthǁ_mark_expectation__mutmut_72 (range(0, chunk): the states after the first 8191 active ones
# are never computed): more than two chunks of 4096 active states; row sums are the mean counts
def test_mark_expectation_many_states():
    tr = _dense_world(n_users=3, n_items=3)
    n = 8200
    users = np.arange(n) % 3
    st = _states(users, [[] if s % 2 else [s % 3] for s in range(n)])
    counts = np.column_stack([1 + (np.arange(n) % 2), np.ones(n, dtype=np.int64)])
    got = tr._mark_expectation(st, counts, 1e-12)
    np.testing.assert_allclose(got.sum(axis=1), counts.mean(axis=1), rtol=1e-12)
    for s in (0, 1, 2, 8191, 8198, 8199):
        last = -1 if s % 2 else s % 3
        np.testing.assert_allclose(got[s], _ref_mark_expectation(tr, s % 3, last, counts[s]), rtol=1e-10)


# --------------------------------------------------------------------------------------------- small helpers
# kills xǁWorldTruthǁ_last_items__mutmut_16 (-2 for an empty history): -1 marks an empty history, else the last
# history item
def test_last_items():
    st = _states([0, 1, 2, 0], [[3, 1], [], [4], []])
    np.testing.assert_array_equal(WorldTruth._last_items(st), [1, -1, 4, -1])


# kills xǁWorldTruthǁ_chunks__mutmut_6 (at least 2 states per chunk): the chunks cover the states in order and
# hold at most _MAX_REPLICAS states × simulations, or one state when a single one needs more
@pytest.mark.parametrize("n_states, n_sims", [(3, 300_000), (5, 150_000), (7, 40_000), (4, 1)])
def test_chunks_respect_the_replica_bound(n_states, n_sims):
    chunks = _dense_world()._chunks(n_states, n_sims)
    assert [lo for lo, _ in chunks] == [0] + [hi for _, hi in chunks[:-1]]
    assert chunks[-1][1] == n_states
    for lo, hi in chunks:
        assert hi > lo
        assert (hi - lo) * n_sims <= max(wt._MAX_REPLICAS, n_sims)


# kills x__row_bincount__mutmut_11 (counts clipped at width + 1): counts beyond the last bin are top-coded into it,
# per row
def test_row_bincount_top_codes():
    counts = np.array([[0, 4, 1, 2], [2, 2, 9, 0], [5, 5, 5, 5]])
    width = 3
    ref = np.array([np.bincount(np.minimum(row, width - 1), minlength=width) for row in counts])
    np.testing.assert_array_equal(_row_bincount(counts, width), ref)
    np.testing.assert_array_equal(ref.sum(axis=1), [4, 4, 4])
