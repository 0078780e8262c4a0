"""harness/evaluate.py against brute-force numpy (issue 13): every function and method checked on small worlds
whose full score matrix is known (integer scores, so ties are exact), ranked in the test by sorting each row on
(score descending, column ascending), with seen items masked, targets less the seen pairs, queries without a
target counted, several row blocks, k above the candidate count, itemrec and userrec, factor and block models,
sampled candidates, the per-query frame and the validation NDCG. Every metric value is recomputed here from the
definitions (recall, capped recall, precision, hit, MRR, NDCG with binary relevance; coverage, mean popularity).
The functions are called through the module (`ev.`) so that a patched module attribute is what runs."""
import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import harness.evaluate as ev
from harness.candidates import sampled_candidates
from harness.model import Model
from harness.ranking import row_blocks, topk_rows
from harness.specs import MetricSpec
from harness.splits import EvalSet, UserStates
from plugins.metrics import ranking as rk

CPU = torch.device("cpu")
PER_QUERY = ("recall", "recall_capped", "precision", "hit", "mrr", "ndcg")
assert set(PER_QUERY) == set(rk.PER_QUERY)
METRICS = {n: MetricSpec(name=n, factory=lambda fn=fn: fn, description=n) for n, (fn, _) in rk.PER_QUERY.items()}
METRICS["coverage"] = MetricSpec(name="coverage", factory=lambda: rk.coverage, description="c", per_query=False)
METRICS["popularity"] = MetricSpec(name="popularity", factory=lambda: rk.mean_weight, description="p",
                                   per_query=False)


# ----------------------------------------------------------------------------------------- models and worlds
class TableModel(Model):
    """Block scores from a (users x items) table, looked up by each state's user; returned as float64 (the engine
    must cast). Records the state rows of every call."""

    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float64)
        self.calls = []

    def score_block(self, states, rows):
        rows = np.asarray(rows)
        self.calls.append(rows.tolist())
        return torch.as_tensor(self.table[np.asarray(states.user)[rows]], dtype=torch.float64)


class FactorModel(Model):
    """Factors (float64 numpy, the engine must cast): state factors = the user's row of `u`, item factors `v`."""

    def __init__(self, u, v):
        self.u, self.v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)

    def factors(self, states):
        return self.u[np.asarray(states.user)], self.v


def make_world(seed=0, n_users=5, n_states=7, n_items=9, d=3, p_target=0.3, max_hist=3):
    """States (user, history) with seen items excluded, targets partly inside the history; state 0 has no
    target, state 1's only target is seen, state 0 has seen item 0 (an excluded pair in the first row)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_states)
    hist = [rng.choice(n_items, rng.integers(1, max_hist + 1), replace=False) for _ in range(n_states)]
    hist[0] = np.union1d(hist[0], [0])
    T = rng.random((n_states, n_items)) < p_target
    T[0] = False
    T[1] = False
    T[1, hist[1][0]] = True
    T[2, hist[2][0]] = True  # a target that is also seen
    ptr = np.concatenate([[0], np.cumsum([len(h) for h in hist])]).astype(np.int64)
    items = np.concatenate(hist).astype(np.int64)
    states = UserStates(user=users, time=np.zeros(n_states), hist_ptr=ptr, hist_item=items,
                        hist_time=np.zeros(len(items)))
    es = EvalSet(states=states, targets=sp.csr_matrix(T.astype(np.float32)),
                 exclude=states.history_matrix(n_items))
    u = rng.integers(-2, 3, (n_users, d)).astype(np.float64)
    v = rng.integers(-2, 3, (n_items, d)).astype(np.float64)
    pop = rng.integers(1, 20, n_items).astype(np.float64)
    return es, u, v, pop


def source(es, u, v, kind):
    """(ScoreSource, model, dense state x item scores) for a world."""
    model = FactorModel(u, v) if kind == "factors" else TableModel(u @ v.T)
    S = (u @ v.T)[np.asarray(es.states.user)]
    return ev.ScoreSource(model, es, v.shape[0], CPU), model, S


def dense(m):
    return np.asarray(m.toarray()) > 0


# ----------------------------------------------------------------------------------------- references
def ranked(S, mask=None):
    """Each row's columns best first: score descending, ties to the lower column; masked pairs score -inf."""
    S = np.where(mask, -np.inf, S) if mask is not None else np.asarray(S, dtype=np.float64)
    return np.array([sorted(range(S.shape[1]), key=lambda j, r=r: (-S[r, j], j)) for r in range(S.shape[0])],
                    dtype=np.int64).reshape(S.shape)


def ref_query(rank, rel, k):
    """The per-query metrics of one ranking (best first) against a set of relevant ids, at cut-off k."""
    hits = [1.0 if j in rel else 0.0 for j in rank[:k]]
    found, n = sum(hits), len(rel)
    first = next((r for r, h in enumerate(hits) if h), None)
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
    idcg = sum(1 / math.log2(r + 2) for r in range(min(n, k)))
    return dict(recall=found / n, recall_capped=found / min(n, k), precision=found / k, hit=float(found > 0),
                mrr=0.0 if first is None else 1 / (first + 1), ndcg=dcg / idcg)


def check_metrics(res, tops, rels, cutoffs, weight, n_cand):
    """res (a TaskResult, or (metrics, per_query)) against the definitions over rankings `tops` and sets `rels`."""
    metrics, per_query = (res.metrics, res.per_query) if isinstance(res, ev.TaskResult) else res
    assert set(per_query) == {f"{m}_{k}" for m in PER_QUERY for k in cutoffs}
    for k in cutoffs:
        ref = [ref_query(list(t), r, k) for t, r in zip(tops, rels, strict=True)]
        for m in PER_QUERY:
            want = np.array([x[m] for x in ref])
            np.testing.assert_allclose(per_query[f"{m}_{k}"], want, rtol=1e-12, err_msg=f"{m}_{k}")
            assert metrics[f"{m}_{k}"] == pytest.approx(want.mean(), rel=1e-12), f"{m}_{k}"
        got = np.concatenate([np.asarray(t[:k]) for t in tops]).astype(np.int64)
        assert metrics[f"coverage_{k}"] == pytest.approx(len(set(got.tolist())) / n_cand)
        assert metrics[f"popularity_{k}"] == pytest.approx(weight[got].mean())


# ----------------------------------------------------------------------------------------- merge_topk
# mutants: argsort(None)/dim, gather(0|2|None, ...), sort(descending=False|None, stable=False, dim=2), [:, :k] lost
@pytest.mark.parametrize("k", [1, 3, 40, 70])
def test_merge_topk_is_the_sort_by_value_then_lower_index(k):
    rng = np.random.default_rng(k)
    n, m = 4, 64
    vals = rng.integers(0, 3, (n, m)).astype(np.float32)
    vals[rng.random((n, m)) < 0.1] = -np.inf
    idx = np.stack([rng.permutation(200)[:m] for _ in range(n)])
    v, i = ev.merge_topk(torch.as_tensor(vals), torch.as_tensor(idx), k)
    want = [sorted(zip(vals[r].tolist(), idx[r].tolist(), strict=True), key=lambda p: (-p[0], p[1]))[:k]
            for r in range(n)]
    np.testing.assert_array_equal(i.numpy(), [[p[1] for p in row] for row in want])
    np.testing.assert_array_equal(v.numpy(), [[p[0] for p in row] for row in want])


# ----------------------------------------------------------------------------------------- hit_matrix
# mutants: width = shape[2]; keys with - / '/' instead of * +; repeat/arange args dropped; searchsorted args;
# '|' for '&'; clamp at len - 2 / len + 1; '!=' for '=='; reshape(None/k)
def test_hit_matrix_is_the_dense_lookup():
    rng = np.random.default_rng(5)
    n, width, k = 30, 11, 6
    T = rng.random((n, width)) < 0.3
    T[3] = False  # a row without targets between others
    T[-1] = False
    T[-1, 4] = True  # the largest key: last row, column 4 ...
    index = np.stack([rng.permutation(width)[:k] for _ in range(n)])
    index[-1, :2] = [4, width - 1]  # ... is asked for, and so is a key above every stored key
    index[0, 0] = width - 1
    # a coo truth with unsorted duplicates-free entries: hit_matrix converts and sorts
    r, c = np.nonzero(T)
    p = rng.permutation(len(r))
    truth = sp.coo_matrix((np.ones(len(r)), (r[p], c[p])), shape=(n, width))
    got = ev.hit_matrix(index, truth)
    assert got.dtype == np.float64 and got.shape == (n, k)
    np.testing.assert_array_equal(got, T[np.arange(n)[:, None], index].astype(np.float64))


def test_hit_matrix_with_unsorted_csr_indices():
    # row 0 stores its targets as [5, 1] (unsorted), row 1 as [2, 0]
    truth = sp.csr_matrix((np.ones(4), np.array([5, 1, 2, 0]), np.array([0, 2, 4])), shape=(2, 6))
    index = np.array([[1, 0, 5], [0, 5, 2]])
    np.testing.assert_array_equal(ev.hit_matrix(index, truth), [[1, 0, 1], [1, 0, 1]])


# hit_matrix indexed t_keys[-1] of an empty array when `truth` stored no entry (score_rankings on a chunk of
# target-less rows raised IndexError); fixed: all-zero hits
def test_hit_matrix_of_a_truth_without_entries_is_all_zero():
    np.testing.assert_array_equal(ev.hit_matrix(np.array([[0, 2]]), sp.csr_matrix((1, 3))), [[0.0, 0.0]])


# ----------------------------------------------------------------------------------------- score_rankings
# mutants: range(1, ...), slice(start, start - CHUNK) / slice(start + CHUNK), truth[sl] dropped, n_rel dropped,
# kk/padding (k beyond the list width), setdefault keys, per-query vs set metrics, counts '=' / '-=' per chunk,
# bincount minlength, weight dropped
@pytest.mark.parametrize("chunk", [2, 65536])
def test_score_rankings_by_definition_in_chunks(monkeypatch, chunk):
    monkeypatch.setattr(ev, "EVAL_CHUNK", chunk)
    rng = np.random.default_rng(11)
    n, n_cand, width = 7, 12, 4
    index = np.stack([rng.permutation(n_cand - 1)[:width] for _ in range(n)])  # candidate 11 never retrieved
    T = rng.random((n, n_cand)) < 0.25
    T[np.arange(n), index[:, 1]] = True  # every query has a target
    weight = rng.integers(1, 9, n_cand).astype(np.float64)
    cutoffs = [1, 3, 6]  # 6 > the list width 4
    out, per_query = ev.score_rankings(index, sp.csr_matrix(T), cutoffs, METRICS, weight, n_cand,
                                       np.arange(n), "itemrec")
    assert set(out) == {f"{m}_{k}" for m in METRICS for k in cutoffs}
    rels = [set(np.flatnonzero(T[q]).tolist()) for q in range(n)]
    check_metrics((out, per_query), list(index), rels, cutoffs, weight, n_cand)


# ----------------------------------------------------------------------------------------- ScoreSource
# mutants: __init__ (factors(None), `is None`, f[1]/f[2] swapped, dtype dropped, u = v = ""), _state_block
# (score_block(None, rows), rows dropped, dtype dropped)
def test_score_source_holds_float32_factors_or_none():
    es, u, v, _ = make_world()
    src, _, _ = source(es, u, v, "factors")
    assert src.states is es.states and src.n_items == v.shape[0] and src.device == CPU
    assert src.u.dtype == torch.float32 and src.v.dtype == torch.float32
    np.testing.assert_array_equal(src.u.numpy(), u[es.states.user])
    np.testing.assert_array_equal(src.v.numpy(), v)
    src, model, S = source(es, u, v, "table")
    assert src.u is None and src.v is None
    block = src._state_block(np.array([4, 1]))
    assert block.dtype == torch.float32 and model.calls == [[4, 1]]
    np.testing.assert_array_equal(block.numpy(), S[[4, 1]])


# item_topk mutants: the factor branch inverted, factor_scorer rows dropped (all rows scored), _state_block(None),
# exclude dropped / inverted / not subset to the rows, topk_rows arguments dropped or swapped
@pytest.mark.parametrize("kind", ["factors", "table"])
@pytest.mark.parametrize("masked", [True, False])
def test_item_topk_is_the_brute_force_ranking_of_those_rows(kind, masked):
    es, u, v, _ = make_world(seed=1)
    src, model, S = source(es, u, v, kind)
    rows = np.array([5, 0, 3, 6, 2])
    E = dense(es.exclude)
    for k in (4, 30):
        top = src.item_topk(rows, k, es.exclude if masked else None, 256.0, block_size=2)
        full = ranked(S[rows], E[rows] if masked else None)
        kk = min(k, S.shape[1])
        np.testing.assert_array_equal(top.index, full[:, :kk])
        Sm = np.where(E, -np.inf, S) if masked else S
        np.testing.assert_array_equal(top.score, Sm[rows[:, None], full[:, :kk]].astype(np.float32))
    if kind == "table":
        assert model.calls[:3] == [[5, 0], [3, 6], [2]]


# user_topk / _user_topk_streamed mutants: branch inverted, factor_scorer(v, u, rows) args, exclude dropped or
# inverted, k = min(k, n_states) lost, running lists started with a column (+-inf), state blocks (arange, start,
# stop), mask rows/cols (shape[1], +inf), index expand, merge args
@pytest.mark.parametrize("kind", ["factors", "table"])
@pytest.mark.parametrize("masked", [True, False])
def test_user_topk_is_the_brute_force_ranking_of_states_per_item(kind, masked):
    es, u, v, _ = make_world(seed=2)
    src, model, S = source(es, u, v, kind)
    items = np.array([8, 0, 2, 5])
    E = dense(es.exclude)
    n_states = S.shape[0]
    for k in (3, n_states, n_states + 4):
        model_calls = len(getattr(model, "calls", []))
        top = src.user_topk(items, k, es.exclude.T.tocsr() if masked else None, 256.0, block_size=3)
        full = ranked(S.T[items], E.T[items] if masked else None)
        kk = min(k, n_states)
        assert top.index.shape == (len(items), kk) and top.score.dtype == np.float32
        np.testing.assert_array_equal(top.index, full[:, :kk])
        Sm = np.where(E, -np.inf, S).T if masked else S.T
        np.testing.assert_array_equal(top.score, Sm[items[:, None], full[:, :kk]].astype(np.float32))
        if kind == "table":
            assert model.calls[model_calls:] == [[0, 1, 2], [3, 4, 5], [6]]


def test_streamed_user_topk_masks_state_zero_of_the_first_block():
    # item 0 is seen by state 0 (make_world): with k = all states it must come last among the -inf, by index
    es, u, v, _ = make_world(seed=3)
    src, _, S = source(es, u, v, "table")
    E = dense(es.exclude)
    assert E[0, 0]
    top = src.user_topk(np.array([0]), 50, es.exclude.T.tocsr(), 256.0, block_size=2)
    np.testing.assert_array_equal(top.index[0], ranked(S.T[[0]], E.T[[0]])[0])
    assert top.index[0].tolist().count(0) == 1


def test_streamed_user_topk_with_fewer_items_than_states_keeps_every_state():
    # k is capped by the states ranked (7), not by the items (5)
    es, u, v, _ = make_world(seed=3, n_states=7, n_items=5)
    src, _, S = source(es, u, v, "table")
    top = src.user_topk(np.array([4, 1]), 9, es.exclude.T.tocsr(), 256.0, block_size=3)
    np.testing.assert_array_equal(top.index, ranked(S.T[[4, 1]], dense(es.exclude).T[[4, 1]]))


# mutants: budget_mib / block_size dropped or None in item_topk, user_topk, _user_topk_streamed's row_blocks
@pytest.mark.parametrize("kind", ["factors", "table"])
def test_topk_forwards_the_budget_and_block_size(monkeypatch, kind):
    seen = []

    def spy_topk(scorer, n_rows, n_cols, k, exclude=None, budget_mib=256.0, block_size=None):
        seen.append(("topk", n_rows, n_cols, budget_mib, block_size))
        return topk_rows(scorer, n_rows, n_cols, k, exclude, budget_mib, block_size)

    def spy_blocks(n_rows, n_cols, budget_mib, block_size=None):
        seen.append(("blocks", n_rows, n_cols, budget_mib, block_size))
        return row_blocks(n_rows, n_cols, budget_mib, block_size)

    monkeypatch.setattr(ev, "topk_rows", spy_topk)
    monkeypatch.setattr(ev, "row_blocks", spy_blocks)
    es, u, v, _ = make_world(seed=4)
    src, _, _ = source(es, u, v, kind)
    src.item_topk(np.array([1, 2]), 3, None, 7.5, 3)
    src.user_topk(np.array([4]), 3, None, 0.5, 2)
    users_via = ("topk", 1, 7) if kind == "factors" else ("blocks", 7, 9)
    assert seen == [("topk", 2, 9, 7.5, 3), users_via + (0.5, 2)]


def test_a_tiny_budget_scores_one_state_per_block():
    es, u, v, _ = make_world(seed=4)
    src, model, S = source(es, u, v, "table")
    budget = 100 / 2**20  # 100 bytes: less than one row of 9 scores at 12 bytes each -> one row per block
    top = src.user_topk(np.array([3, 1]), 4, None, budget)
    assert model.calls == [[s] for s in range(7)]
    np.testing.assert_array_equal(top.index, ranked(S.T[[3, 1]])[:, :4])
    model.calls.clear()
    src.item_topk(np.array([2, 5, 6]), 4, None, budget)
    assert model.calls == [[2], [5], [6]]


# pair_scores mutants: chunk bounds (start +- 1 << 20, 1 >> 20), out slice, u/v swapped, unique/inverse swapped,
# dtype of out
@pytest.mark.parametrize("kind", ["factors", "table"])
def test_pair_scores_are_the_matrix_entries_in_the_input_shape(kind):
    es, u, v, _ = make_world(seed=6)
    src, _, S = source(es, u, v, kind)
    rng = np.random.default_rng(0)
    s = rng.integers(0, S.shape[0], (5, 4))
    i = rng.integers(0, S.shape[1], (5, 4))
    got = src.pair_scores(s, i)
    assert got.dtype == np.float32 and got.shape == (5, 4)
    np.testing.assert_array_equal(got, S[s, i])
    n = (1 << 20) + 5  # two chunks
    s, i = rng.integers(0, S.shape[0], n), rng.integers(0, S.shape[1], n)
    np.testing.assert_array_equal(src.pair_scores(s, i), S[s, i])


# ----------------------------------------------------------------------------------------- evaluate_full
# mutants: targets/exclude with exclude_seen, k_max = max(cutoffs), itemrec vs userrec truth / weight / n_cand,
# exclude transposed for userrec, queries = rows with a target, item_topk vs user_topk, truth rows, n_queries,
# n_without_target, TaskResult fields, budget/block_size forwarded
@pytest.mark.parametrize("task", ["itemrec", "userrec"])
@pytest.mark.parametrize("kind", ["factors", "table"])
@pytest.mark.parametrize("exclude_seen", [True, False])
def test_evaluate_full_by_brute_force(task, kind, exclude_seen):
    es, u, v, pop = make_world(seed=7)
    src, model, S = source(es, u, v, kind)
    T, E = dense(es.targets), dense(es.exclude)
    assert (T & E).any()
    cutoffs = [2, 5, 20]  # 20 > items and states
    res = ev.evaluate_full(task, src, es, cutoffs, METRICS, pop.astype(np.int64), exclude_seen=exclude_seen,
                           budget_mib=256.0, block_size=2)
    Tr = T & ~E if exclude_seen else T
    mask = E if exclude_seen else None
    if task == "itemrec":
        rel, full, weight, n_cand = Tr, ranked(S, mask), pop, S.shape[1]
    else:
        rel, full = Tr.T, ranked(S.T, None if mask is None else mask.T)
        weight, n_cand = np.diff(es.states.hist_ptr).astype(np.float64), S.shape[0]
    queries = np.flatnonzero(rel.any(1))
    assert res.task == task and isinstance(res, ev.TaskResult)
    np.testing.assert_array_equal(res.queries, queries)
    np.testing.assert_array_equal(res.topk.index, full[queries, :min(20, n_cand)])
    assert res.truth.shape == (len(queries), n_cand)
    np.testing.assert_array_equal(dense(res.truth), rel[queries])
    rels = [set(np.flatnonzero(rel[q]).tolist()) for q in queries]
    check_metrics(res, full[queries], rels, cutoffs, weight, n_cand)
    assert res.metrics["n_queries"] == len(queries)
    assert res.metrics["n_without_target"] == rel.shape[0] - len(queries) > 0
    if kind == "table":
        blocks = [queries[j:j + 2].tolist() for j in range(0, len(queries), 2)] if task == "itemrec" \
            else [[0, 1], [2, 3], [4, 5], [6]]
        assert model.calls == blocks


# mutants: the defaults exclude_seen=True (-> False) and budget_mib (one block of every query)
def test_evaluate_full_defaults_exclude_the_seen_items_in_one_block():
    es, u, v, pop = make_world(seed=8)
    src, model, S = source(es, u, v, "table")
    res = ev.evaluate_full("itemrec", src, es, [3], METRICS, pop)
    Tr = dense(es.targets) & ~dense(es.exclude)
    queries = np.flatnonzero(Tr.any(1))
    np.testing.assert_array_equal(res.queries, queries)
    np.testing.assert_array_equal(res.topk.index, ranked(S, dense(es.exclude))[queries, :3])
    assert model.calls == [queries.tolist()]
    model.calls.clear()
    res = ev.evaluate_full("userrec", src, es, [3], METRICS, pop)
    np.testing.assert_array_equal(res.topk.index, ranked(S.T, dense(es.exclude).T)[res.queries, :3])
    assert model.calls == [list(range(es.n_states))]


# mutant: user_topk(queries, k_max, exclude, None, block_size) (the budget decides the state blocks)
def test_evaluate_full_userrec_state_blocks_follow_the_budget():
    es, u, v, pop = make_world(seed=8)
    src, model, S = source(es, u, v, "table")
    res = ev.evaluate_full("userrec", src, es, [3], METRICS, pop, budget_mib=100 / 2**20)
    np.testing.assert_array_equal(res.topk.index, ranked(S.T, dense(es.exclude).T)[res.queries, :3])
    assert model.calls == [[s] for s in range(es.n_states)]


def test_evaluate_full_rejects_other_tasks():
    es, u, v, pop = make_world()
    src, _, _ = source(es, u, v, "factors")
    with pytest.raises(ValueError, match="'ctr'"):
        ev.evaluate_full("ctr", src, es, [3], METRICS, pop)


# ----------------------------------------------------------------------------------------- evaluate_sampled
# mutants: pair_scores(owner, cands) vs (cands, owner), n_cand / weight per task, lexsort keys (-scores, c),
# [:, :max(cutoffs)], truth column 0, queries, n_queries, and every argument of sampled_candidates
@pytest.mark.parametrize("task", ["itemrec", "userrec"])
@pytest.mark.parametrize("kind", ["factors", "table"])
@pytest.mark.parametrize("weighting", ["uniform", "popularity"])
def test_evaluate_sampled_ranks_each_positive_among_its_negatives(task, kind, weighting):
    es, u, v, pop = make_world(seed=9, n_states=12, n_items=14, p_target=0.15, max_hist=2)
    src, _, S = source(es, u, v, kind)
    neg, cutoffs = 3, [1, 2, 7]  # 7 > 1 + 3 candidates
    res = ev.evaluate_sampled(task, src, es, cutoffs, METRICS, pop, neg, weighting, 5, "k")
    c = sampled_candidates(es, task, neg, weighting, pop, 5, None, "k")
    owner, cand = c.owner, c.candidates
    sc = S[owner[:, None], cand] if task == "itemrec" else S[cand, owner[:, None]]
    tops = [cand[q][sorted(range(neg + 1), key=lambda j, q=q: (-sc[q, j], cand[q, j]))] for q in range(len(cand))]
    assert any(len(set(row.tolist())) < neg + 1 for row in sc)  # ties are decided by the lower id
    if task == "itemrec":
        weight, n_cand = pop, S.shape[1]
    else:
        weight, n_cand = np.diff(es.states.hist_ptr).astype(np.float64), S.shape[0]
    check_metrics(res, tops, [{int(x)} for x in cand[:, 0]], cutoffs, weight, n_cand)
    assert res.task == task and res.metrics["n_queries"] == len(cand) > 0
    assert set(res.metrics) == {f"{m}_{k}" for m in METRICS for k in cutoffs} | {"n_queries"}
    np.testing.assert_array_equal(res.queries, np.arange(len(cand)))


# mutant: the truth's shape=(n, n_cand) dropped: positives on low item ids make the inferred width narrower than
# the candidate ids, so (query, candidate) keys of different queries collide
def test_evaluate_sampled_positives_on_low_ids_with_high_negatives():
    es, u, v, pop = make_world(seed=14, n_states=12, n_items=14, p_target=0.3, max_hist=2)
    T = dense(es.targets)
    T[:, 2:] = False
    T[np.arange(12), np.arange(12) % 2] = True
    es = EvalSet(states=es.states, targets=sp.csr_matrix(T.astype(np.float32)), exclude=es.exclude)
    src, _, S = source(es, u, v, "factors")
    res = ev.evaluate_sampled("itemrec", src, es, [2, 4], METRICS, pop, 3, "uniform", 1, "k")
    c = sampled_candidates(es, "itemrec", 3, "uniform", pop, 1, None, "k")
    sc = S[c.owner[:, None], c.candidates]
    tops = [c.candidates[q][sorted(range(4), key=lambda j, q=q: (-sc[q, j], c.candidates[q, j]))]
            for q in range(len(sc))]
    check_metrics(res, tops, [{int(x)} for x in c.candidates[:, 0]], [2, 4], pop, 14)


def test_evaluate_sampled_stores_the_candidates_it_drew(tmp_path):
    es, u, v, pop = make_world(seed=10, n_states=12, n_items=14, p_target=0.15, max_hist=2)
    src, _, _ = source(es, u, v, "factors")
    ev.evaluate_sampled("userrec", src, es, [2], METRICS, pop, 2, "popularity", 3, "run/a", cache_dir=tmp_path)
    with np.load(tmp_path / "candidates" / "run_a.npz") as z:
        stored = z["candidates"]
    want = sampled_candidates(es, "userrec", 2, "popularity", pop, 3, None, "x").candidates
    np.testing.assert_array_equal(stored, want)


# ----------------------------------------------------------------------------------------- EvalRequest
def test_eval_request_prefix_and_sampled():
    assert not ev.EvalRequest("itemrec", (10,), METRICS).sampled
    assert ev.EvalRequest("itemrec", (10,), METRICS).prefix == "itemrec"
    assert ev.EvalRequest("itemrec", (10,), METRICS, negatives=99).prefix == "itemrec_s99"
    assert ev.EvalRequest("userrec", (10,), METRICS, negatives=5, weighting="popularity").prefix == "userrec_s5p"


# EvalRequest.run mutants: every argument forwarded (None / dropped), seed default 0 -> 1, list(cutoffs)
def test_eval_request_run_forwards_everything(monkeypatch):
    calls = []
    monkeypatch.setattr(ev, "evaluate_full", lambda *a, **kw: calls.append(("full", a, kw)))
    monkeypatch.setattr(ev, "evaluate_sampled", lambda *a, **kw: calls.append(("sampled", a, kw)))
    src, es, pop = object(), object(), np.arange(3.0)
    ev.EvalRequest("userrec", (5, 10), METRICS, exclude_seen=False, budget_mib=3.0, block_size=4).run(src, es, pop)
    ev.EvalRequest("itemrec", (1, 2), METRICS, negatives=9, weighting="popularity").run(src, es, pop, 7, "kk")
    ev.EvalRequest("itemrec", (3,), METRICS, negatives=4).run(src, es, pop)
    assert calls[0] == ("full", ("userrec", src, es, [5, 10], METRICS, pop),
                        dict(exclude_seen=False, budget_mib=3.0, block_size=4))
    assert calls[1] == ("sampled", ("itemrec", src, es, [1, 2], METRICS, pop, 9, "popularity", 7, "kk"), {})
    assert calls[2] == ("sampled", ("itemrec", src, es, [3], METRICS, pop, 4, "uniform", 0, ""), {})


def test_eval_request_run_gives_the_direct_results():
    es, u, v, pop = make_world(seed=9, n_states=12, n_items=14, p_target=0.15, max_hist=2)
    src, _, _ = source(es, u, v, "factors")
    full = ev.EvalRequest("itemrec", (2, 4), METRICS, block_size=3).run(src, es, pop)
    want = ev.evaluate_full("itemrec", src, es, [2, 4], METRICS, pop)
    assert full.metrics == want.metrics
    sampled = ev.EvalRequest("userrec", (2,), METRICS, negatives=3).run(src, es, pop)
    want = ev.evaluate_sampled("userrec", src, es, [2], METRICS, pop, 3, "uniform", 0, "")
    np.testing.assert_array_equal(sampled.per_query["ndcg_2"], want.per_query["ndcg_2"])


# ----------------------------------------------------------------------------------------- per_query_frame
# mutants: column names, ignore_index, the empty frame's columns, insert position/name/value, `label and task`
def test_per_query_frame_long_format():
    r = ev.TaskResult(task="itemrec", metrics={}, queries=np.array([4, 7]),
                      per_query={"ndcg_5": np.array([0.5, 0.25]), "hit_5": np.array([1.0, 0.0])})
    want = pd.DataFrame({"task": ["itemrec"] * 4, "metric": ["ndcg_5", "ndcg_5", "hit_5", "hit_5"],
                         "query": [4, 7, 4, 7], "value": [0.5, 0.25, 1.0, 0.0]})
    pd.testing.assert_frame_equal(r.per_query_frame(), want)
    want["task"] = "itemrec_s99"
    pd.testing.assert_frame_equal(r.per_query_frame("itemrec_s99"), want)
    empty = ev.TaskResult(task="userrec", metrics={}, per_query={}, queries=np.zeros(0, np.int64)).per_query_frame()
    assert list(empty.columns) == ["task", "metric", "query", "value"] and len(empty) == 0


# ----------------------------------------------------------------------------------------- validation_ndcg
def hand_ndcg(es, S, k, masked=True):
    Tr = dense(es.remaining_targets())
    rows = np.flatnonzero(Tr.any(1))
    full = ranked(S[rows], dense(es.exclude)[rows] if masked else None)
    return float(np.mean([ref_query(list(full[j]), set(np.flatnonzero(Tr[r]).tolist()), k)["ndcg"]
                          for j, r in enumerate(rows)]))


# mutants: rows = states with a remaining target, exclude[rows], score_rows(rows[blk]), k / default k = 10,
# block_size / budget, disc = 1/log2(rank + 1) and its slice, ideal = cumsum at min(n_rel, k) - 1, the mean
def test_validation_ndcg_is_the_hand_ndcg():
    es, u, v, _ = make_world(seed=12, n_states=9, n_items=14, p_target=0.3)
    S = (u @ v.T)[es.states.user]
    calls = []

    def score_rows(rows):
        calls.append(np.asarray(rows).tolist())
        return torch.as_tensor(S[rows], dtype=torch.float32)

    rows = np.flatnonzero(dense(es.remaining_targets()).any(1))
    assert len(rows) < es.n_states
    refs = {k: hand_ndcg(es, S, k) for k in (3, 9, 10, 11, 20)}
    assert len(set(refs.values())) == len(refs)  # every cut-off gives a different value here
    assert ev.validation_ndcg(es, score_rows, 14, k=3, block_size=2) == pytest.approx(refs[3], rel=1e-12)
    assert calls == [rows[j:j + 2].tolist() for j in range(0, len(rows), 2)]
    calls.clear()
    assert ev.validation_ndcg(es, score_rows, 14) == pytest.approx(refs[10], rel=1e-12)
    assert calls == [rows.tolist()]
    calls.clear()
    assert ev.validation_ndcg(es, score_rows, 14, k=20, budget_mib=100 / 2**20) == pytest.approx(refs[20], rel=1e-12)
    assert calls == [[r] for r in rows]


def test_validation_ndcg_without_exclusions_and_without_targets():
    es, u, v, _ = make_world(seed=13, n_states=9, n_items=14, p_target=0.3)
    S = (u @ v.T)[es.states.user]
    bare = EvalSet(states=es.states, targets=es.targets, exclude=None)
    got = ev.validation_ndcg(bare, lambda r: torch.as_tensor(S[r]), 14, k=4)
    assert got == pytest.approx(hand_ndcg(bare, S, 4, masked=False), rel=1e-12)
    assert got != pytest.approx(hand_ndcg(es, S, 4))
    none = EvalSet(states=es.states, targets=sp.csr_matrix((9, 14)), exclude=es.exclude)
    assert ev.validation_ndcg(none, lambda r: pytest.fail("no state to score"), 14) == 0.0


@pytest.mark.parametrize("kind", ["factors", "table"])
def test_grid_scores_are_the_matrix_block_over_several_row_blocks(kind):
    es, u, v, _ = make_world(seed=7)
    src, _, S = source(es, u, v, kind)
    rows, items = np.array([5, 0, 3, 3, 6]), np.array([8, 1, 4])
    got = src.grid_scores(rows, items, block_rows=2)  # three blocks, the last one short
    assert got.dtype == np.float32 and got.shape == (5, 3)
    np.testing.assert_allclose(got, S[np.ix_(rows, items)], rtol=1e-6)
    np.testing.assert_allclose(src.grid_scores(rows, items), src.pair_scores(
        np.broadcast_to(rows[:, None], got.shape), np.broadcast_to(items[None, :], got.shape)), rtol=1e-6)
