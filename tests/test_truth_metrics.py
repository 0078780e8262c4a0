"""harness/truth.py: Spearman correlations of a model's scores with a dataset's known truth."""
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import tiny_suite
from scipy.stats import spearmanr

from harness import api
from harness.evaluate import ScoreSource
from harness.model import Model
from harness.splits import EvalSet, UserStates
from harness.truth import spearman, spearman_rows, truth_metrics


class Fixed(Model):
    """Scores from a fixed (n_users x n_items) table, looked up by each state's user."""

    def __init__(self, table, kind="logit"):
        self.table, self.score_kind = torch.as_tensor(table, dtype=torch.float32), kind

    def score_block(self, states, rows):
        return self.table[torch.as_tensor(states.user[rows])]


def _states(users):
    n = len(users)
    return UserStates(user=np.asarray(users), time=np.zeros(n), hist_ptr=np.zeros(n + 1, dtype=np.int64),
                      hist_item=np.zeros(0, dtype=np.int64), hist_time=np.zeros(0))


def _hand_case():
    # a 3-user x 4-item joint; states: users 2, 0, 1 (order scrambled on purpose)
    joint = np.array([[4, 1, 2, 1], [1, 1, 6, 2], [2, 5, 1, 4]], dtype=float)
    joint /= joint.sum()
    pu, pi = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    truth = SimpleNamespace(log_joint=lambda: np.log(joint), log_item_given_user=lambda: np.log(joint / pu),
                            log_user_given_item=lambda: np.log(joint / pi), pmi=lambda: np.log(joint / pu / pi))
    users = np.array([2, 0, 1])
    states = _states(users)
    evalset = EvalSet(states=states, targets=sp.csr_matrix((3, 4)))
    return joint, pu, pi, truth, users, evalset


def test_spearman_helpers_match_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    x[0, :3] = 1.0  # ties
    assert spearman(x, y) == pytest.approx(spearmanr(x.ravel(), y.ravel()).statistic)
    want = [spearmanr(a, b).statistic for a, b in zip(x, y, strict=False)]
    np.testing.assert_allclose(spearman_rows(x, y), want)
    assert np.isnan(spearman_rows(np.ones((1, 4)), y[:1, :4])[0])


def test_hand_made_case_gives_the_definitions():
    joint, pu, pi, truth, users, evalset = _hand_case()
    # scores = the true log p(i|u): perfect on item_given_user, exact scipy values elsewhere
    scores = np.log(joint / pu)
    src = ScoreSource(Fixed(scores), evalset, 4, torch.device("cpu"))
    m = truth_metrics(SimpleNamespace(truth=truth), evalset, src)
    s = scores[users].ravel()
    assert m["truth/spearman_item_given_user"] == pytest.approx(1.0)
    assert m["truth/spearman_joint"] == pytest.approx(spearmanr(s, np.log(joint)[users].ravel()).statistic)
    assert m["truth/spearman_pmi"] == pytest.approx(spearmanr(s, np.log(joint / pu / pi)[users].ravel()).statistic)
    assert m["truth/spearman_user_given_item"] == pytest.approx(
        spearmanr(s, np.log(joint / pi)[users].ravel()).statistic)
    # within a state, log p(i|u) and log p(u,i) rank alike; the PMI does not
    assert m["truth/spearman_item_given_user_per_state"] == pytest.approx(1.0)
    want_pmi = np.mean([spearmanr(scores[u], np.log(joint / pu / pi)[u]).statistic for u in users])
    assert m["truth/spearman_pmi_per_state"] == pytest.approx(want_pmi)
    want_col = np.mean([spearmanr(scores[users, i], np.log(joint / pi)[users, i]).statistic for i in range(4)])
    assert m["truth/spearman_user_given_item_per_item"] == pytest.approx(want_col)
    assert "truth/spearman_intensity" not in m          # a logit model gets no intensity correlation
    # a per-user shift changes the pooled correlation but not the per-state one
    shifted = scores + np.array([[5.0], [-3.0], [0.0]])
    m2 = truth_metrics(SimpleNamespace(truth=truth), evalset,
                       ScoreSource(Fixed(shifted), evalset, 4, torch.device("cpu")))
    assert m2["truth/spearman_item_given_user_per_state"] == pytest.approx(1.0)
    assert m2["truth/spearman_item_given_user"] < 0.9


def test_no_truth_no_metrics():
    *_, evalset = _hand_case()
    src = ScoreSource(Fixed(np.zeros((3, 4))), evalset, 4, torch.device("cpu"))
    assert truth_metrics(SimpleNamespace(name="csv"), evalset, src) == {}


def test_sampling_bounds_the_pairs_and_is_seeded():
    joint, pu, pi, truth, users, evalset = _hand_case()
    src = ScoreSource(Fixed(np.log(joint)), evalset, 4, torch.device("cpu"))
    a = truth_metrics(SimpleNamespace(truth=truth), evalset, src, seed=1, max_states=2, max_items=3)
    b = truth_metrics(SimpleNamespace(truth=truth), evalset, src, seed=1, max_states=2, max_items=3)
    assert a == b and a["truth/n_pairs"] == 6
    assert a["truth/spearman_joint"] == pytest.approx(1.0)


def test_every_cell_logs_truth_and_the_oracle_tracks_the_true_intensity(workdir):
    """Through the runner: the oracle's scores are log λ(x, y), so its intensity correlation is 1;
    item_pop (an intensity score too) is far from it; a dataset without truth logs none."""
    suite = tiny_suite(models=[{"name": "oracle"}, {"name": "item_pop"}, {"name": "bpr", "factors": 8, "epochs": 2}],
                       metrics=["ndcg"], cutoffs=[5])
    frame = api.run(suite).set_index("params.model")
    assert (frame.status == "FINISHED").all()
    assert frame.loc["oracle", "metrics.truth/spearman_intensity"] == pytest.approx(1.0, abs=1e-6)
    assert frame.loc["item_pop", "metrics.truth/spearman_intensity"] < 0.9
    assert np.isnan(frame.loc["bpr"].get("metrics.truth/spearman_intensity", np.nan))  # bpr gives logits
    for col in ("joint", "item_given_user", "user_given_item", "pmi"):
        assert frame[f"metrics.truth/spearman_{col}"].notna().all(), col
    # the oracle ranks items per state by the true p(y|x): close to p(i|u) within each state
    assert frame.loc["oracle", "metrics.truth/spearman_item_given_user_per_state"] > 0.8


def test_the_truth_side_is_built_once_per_split_and_rebuilt_for_another():
    """Cells of one (dataset, split, seed) share the truth tables and their rankings (harness.truth.truth_grid): the
    truth is asked once per table, the second model's metrics equal a fresh computation's, and another evalset,
    seed or truth rebuilds the grid."""
    from harness import truth as truth_mod

    joint, pu, pi, truth, users, evalset = _hand_case()
    calls = []

    def counted(fn, name):
        def wrapper():
            calls.append(name)
            return fn()
        return wrapper

    counting = SimpleNamespace(**{name: counted(getattr(truth, name), name) for name in
                                  ("log_joint", "log_item_given_user", "log_user_given_item", "pmi")})
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    ds = SimpleNamespace(truth=counting)
    truth_mod._LAST_GRID.clear()
    m_a = truth_metrics(ds, evalset, ScoreSource(Fixed(a), evalset, 4, torch.device("cpu")))
    m_b = truth_metrics(ds, evalset, ScoreSource(Fixed(b), evalset, 4, torch.device("cpu")))
    assert sorted(calls) == sorted(["log_joint", "log_item_given_user", "log_user_given_item", "pmi"])
    truth_mod._LAST_GRID.clear()
    fresh_b = truth_metrics(SimpleNamespace(truth=truth), evalset,
                            ScoreSource(Fixed(b), evalset, 4, torch.device("cpu")))
    assert m_b == fresh_b and m_a != m_b
    want = spearmanr(b[users].ravel(), np.log(joint)[users].ravel()).statistic
    assert m_b["truth/spearman_joint"] == pytest.approx(want)
    # another evalset (same content, another object), another seed: the truth is asked again
    calls.clear()
    _, _, _, _, _, other = _hand_case()
    truth_metrics(ds, other, ScoreSource(Fixed(a), other, 4, torch.device("cpu")))
    assert len(calls) == 4
    truth_metrics(ds, other, ScoreSource(Fixed(a), other, 4, torch.device("cpu")), seed=1)
    assert len(calls) == 8
    # a cached dataset loaded again by the next cell (another truth object, the same cache key) reuses the grid
    calls.clear()
    copy1 = SimpleNamespace(truth=counting, meta={"cache_key": "synthetic-abc"})
    copy2 = SimpleNamespace(truth=SimpleNamespace(**vars(counting)), meta={"cache_key": "synthetic-abc"})
    truth_metrics(copy1, other, ScoreSource(Fixed(a), other, 4, torch.device("cpu")))
    truth_metrics(copy2, other, ScoreSource(Fixed(b), other, 4, torch.device("cpu")))
    assert len(calls) == 4
    truth_metrics(SimpleNamespace(truth=copy2.truth, meta={"cache_key": "synthetic-xyz"}), other,
                  ScoreSource(Fixed(b), other, 4, torch.device("cpu")))
    assert len(calls) == 8


def test_rankdata_matches_scipys_average_ranks_with_ties_constant_rows_and_nans():
    import scipy.stats

    from harness.truth import rankdata

    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(40, 30)) * 2)  # many ties
    x[3] = 1.5                                   # a constant row
    x[7, :5] = -np.inf
    np.testing.assert_array_equal(rankdata(x, axis=1), scipy.stats.rankdata(x, axis=1))
    np.testing.assert_array_equal(rankdata(x.T, axis=1), scipy.stats.rankdata(x.T, axis=1))
    np.testing.assert_array_equal(rankdata(x), scipy.stats.rankdata(x))
    ints = rng.integers(0, 4, (6, 9))
    np.testing.assert_array_equal(rankdata(ints, axis=1), scipy.stats.rankdata(ints, axis=1))
    x[11, 2] = np.nan
    got = rankdata(x, axis=1)
    assert np.isnan(got[11]).all() and not np.isnan(np.delete(got, 11, axis=0)).any()
    assert rankdata(np.zeros((0, 4)), axis=1).shape == (0, 4)
    with pytest.raises(ValueError, match="axis"):
        rankdata(x, axis=0)
