"""Sampled evaluation candidates: valid rows, determinism, the on-disk store, popularity weighting."""
import numpy as np
import pytest
import scipy.sparse as sp

import harness.candidates as C
from harness.candidates import Candidates, sampled_candidates
from harness.data import Dataset, Interactions
from harness.errors import DataError
from harness.splits import EvalSet, UserStates
from plugins.splits.temporal import TemporalSplit


def random_ds(n_users, n_items, n, days=40.0, seed=0):
    rng = np.random.default_rng(seed)
    x = Interactions(user=rng.integers(0, n_users, n), item=rng.integers(0, n_items, n),
                     time=rng.random(n) * days * 86400.0, n_users=n_users, n_items=n_items, time_unit="s")
    return Dataset("rand", x, np.arange(n_users), np.arange(n_items))


@pytest.fixture(scope="module")
def split():
    return TemporalSplit(horizon=8).split(random_ds(n_users=80, n_items=60, n=2500), 0)


def _pairs(m: sp.csr_matrix) -> set:
    m = m.tocoo()
    return set(zip(m.row.tolist(), m.col.tolist(), strict=False))


def check_rows(c: Candidates, ev: EvalSet, task: str, n: int):
    t, ex = _pairs(ev.targets), _pairs(ev.exclude)
    if task == "userrec":
        t, ex = {(j, i) for i, j in t}, {(j, i) for i, j in ex}
    assert c.candidates.dtype == np.int64 and c.candidates.shape == (len(c.owner), n + 1)
    pos = {(int(o), int(p)) for o, p in zip(c.owner, c.candidates[:, 0], strict=False)}
    assert pos == t - ex, "one query per (owner, positive) pair, seen pairs left out"
    assert len(pos) == len(c)
    for o, row in zip(c.owner.tolist(), c.candidates.tolist(), strict=False):
        assert len(set(row)) == len(row), "duplicate candidate in a row"
        for neg in row[1:]:
            assert (o, neg) not in t and (o, neg) not in ex, "a negative is a target or excluded"
    pool = ev.targets.shape[1] if task == "itemrec" else ev.n_states
    assert c.candidates.min() >= 0 and c.candidates.max() < pool


@pytest.mark.parametrize("task", ["itemrec", "userrec"])
@pytest.mark.parametrize("weighting", ["uniform", "popularity"])
def test_rows_are_valid(split, task, weighting):
    c = sampled_candidates(split.test, task, 20, weighting, split.train.item_counts, 0, None, "k")
    assert len(c) > 50
    check_rows(c, split.test, task, 20)
    if task == "itemrec":
        assert np.array_equal(c.query_state, c.owner)
        with pytest.raises(AttributeError, match="query_item is defined for userrec candidates"):
            _ = c.query_item
    else:
        assert np.array_equal(c.query_item, c.owner)


def test_deterministic_per_seed_and_stored(split, tmp_path, monkeypatch):
    args = (split.test, "itemrec", 15, "uniform", split.train.item_counts)
    a = sampled_candidates(*args, 7, None, "k")
    b = sampled_candidates(*args, 7, None, "k")
    assert np.array_equal(a.candidates, b.candidates) and np.array_equal(a.owner, b.owner)
    other = sampled_candidates(*args, 8, None, "k")
    assert np.array_equal(other.candidates[:, 0], a.candidates[:, 0])
    assert not np.array_equal(other.candidates, a.candidates)

    stored = sampled_candidates(*args, 7, tmp_path, "fp-temporal-abc-7-itemrec-15-uniform")
    path = tmp_path / "candidates" / "fp-temporal-abc-7-itemrec-15-uniform.npz"
    assert path.exists() and np.array_equal(stored.candidates, a.candidates)
    with np.load(path, allow_pickle=False) as z:
        assert np.array_equal(z["candidates"], a.candidates)
    # reloaded, not redrawn: a different seed under the same key still returns the stored rows
    monkeypatch.setattr(C, "_draw", lambda *a, **k: pytest.fail("redrew instead of loading"))
    again = sampled_candidates(*args, 99, tmp_path, "fp-temporal-abc-7-itemrec-15-uniform")
    assert np.array_equal(again.candidates, a.candidates) and np.array_equal(again.owner, a.owner)


def test_stale_store_is_redrawn(split, tmp_path):
    key = "same-key"
    sampled_candidates(split.test, "itemrec", 5, "uniform", split.train.item_counts, 0, tmp_path, key)
    c = sampled_candidates(split.test, "itemrec", 6, "uniform", split.train.item_counts, 0, tmp_path, key)
    assert c.candidates.shape[1] == 7  # a different N under the same key is not served from the old file


@pytest.mark.parametrize("rounds", [C._MAX_ROUNDS, 0])  # 0: every row through the exact Gumbel fallback
def test_popularity_weighting_draws_popular_items_more(rounds, monkeypatch):
    monkeypatch.setattr(C, "_MAX_ROUNDS", rounds)
    n_states, n_items, n = 400, 200, 5
    rng = np.random.default_rng(1)
    states = UserStates(user=np.arange(n_states), time=np.zeros(n_states), hist_ptr=np.zeros(n_states + 1, np.int64),
                        hist_item=np.zeros(0, np.int64), hist_time=np.zeros(0))
    tgt = sp.csr_matrix((np.ones(n_states), rng.integers(0, n_items, n_states), np.arange(n_states + 1)),
                        shape=(n_states, n_items))
    ev = EvalSet(states=states, targets=tgt, exclude=None)
    pop = np.arange(n_items, dtype=np.float64)  # item 0 has weight 0: never drawn
    counts = {}
    for w in ("uniform", "popularity"):
        c = sampled_candidates(ev, "itemrec", n, w, pop, 3, None, "k")
        check_rows(c, EvalSet(states=states, targets=tgt, exclude=sp.csr_matrix(tgt.shape)), "itemrec", n)
        counts[w] = np.bincount(c.candidates[:, 1:].ravel(), minlength=n_items)
    draws = n_states * n
    assert counts["popularity"][0] == 0
    top, bottom = slice(150, 200), slice(1, 51)
    # expected share of the top quarter: ~ (sum 150..199)/(sum 1..199) = 0.44 vs 0.25 uniform
    assert counts["popularity"][top].sum() / draws > 0.38
    assert counts["popularity"][top].sum() > 5 * counts["popularity"][bottom].sum()
    assert 0.18 < counts["uniform"][top].sum() / draws < 0.32
    assert np.corrcoef(counts["popularity"], pop)[0, 1] > 0.8
    assert abs(np.corrcoef(counts["uniform"], pop)[0, 1]) < 0.3


def test_heavy_skew_still_fills_rows():
    # nearly all weight on items the states must not get: rejection rounds then the exact fallback
    n_states, n_items = 30, 40
    states = UserStates(user=np.arange(n_states), time=np.zeros(n_states), hist_ptr=np.zeros(n_states + 1, np.int64),
                        hist_item=np.zeros(0, np.int64), hist_time=np.zeros(0))
    tgt = sp.csr_matrix((np.ones(n_states), np.zeros(n_states, np.int64), np.arange(n_states + 1)),
                        shape=(n_states, n_items))
    ex = sp.csr_matrix(np.tile((np.arange(n_items) < 5), (n_states, 1)).astype(np.float32))
    ex[:, 0] = 0
    ex.eliminate_zeros()
    ev = EvalSet(states=states, targets=tgt, exclude=ex)
    pop = np.where(np.arange(n_items) < 5, 1e12, 1.0)
    c = sampled_candidates(ev, "itemrec", 30, "popularity", pop, 0, None, "k")
    check_rows(c, ev, "itemrec", 30)


def test_too_few_negatives_is_a_data_error(split):
    with pytest.raises(DataError, match=r"fewer than negatives=500; lower negatives"):
        sampled_candidates(split.test, "itemrec", 500, "uniform", split.train.item_counts, 0, None, "k")
    pop = np.zeros(split.n_items)
    pop[:3] = 1
    with pytest.raises(DataError, match="non-zero weight.*use weighting: uniform"):
        sampled_candidates(split.test, "itemrec", 10, "popularity", pop, 0, None, "k")
