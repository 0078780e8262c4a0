"""The `implicit` wrappers (`als`, `logistic_mf`): the harness's metrics against implicit's own
evaluation on the same fitted factors, determinism, shapes, cold users, and clear errors."""
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import plugins.models.implicit_mf as implicit_mf
from harness.data import Interactions
from harness.errors import ConfigError
from harness.evaluate import ScoreSource, evaluate_full
from harness.model import FitContext, Model
from harness.plugin import data_root
from harness.registry import Registry
from harness.splits import states_from_events

ML100K = data_root() / "movielens-100k" / "u.data"
needs_ml = pytest.mark.skipif(not ML100K.is_file(), reason=f"MovieLens-100K not found at {ML100K} "
                                                          "(set MATCHBENCH_DATA to the folder holding movielens-100k/)")
CPU = torch.device("cpu")
K = 10


@pytest.fixture(scope="module")
def reg():
    # until pyproject.toml names the module in the entry-point group, load it as an extra plugin
    # (registering it twice would be refused as a duplicate)
    reg = Registry.load()
    return reg if "als" in reg.names("model") else Registry.load(extra=[implicit_mf])


def ctx(seed=0, **kw):
    return FitContext(seed=seed, device=CPU, **kw)


def random_holdout(ds, frac=0.2, seed=0):
    """80/20 random holdout of events; one state per user, history = all its training events
    (as benchmarks/bpr_fit.py builds it). Returns (train, evalset)."""
    x = ds.interactions
    test = np.random.default_rng(seed).random(len(x)) < frac
    train, held = x.subset(~test), x.subset(test)
    ev = states_from_events(train, np.arange(x.n_users), np.full(x.n_users, np.inf))
    ev.targets = sp.csr_matrix((np.ones(len(held), np.float32), (held.user, held.item)), shape=(x.n_users, x.n_items))
    ev.__post_init__()
    return train, ev


@pytest.fixture(scope="module")
def ml_splits(reg):
    if not ML100K.is_file():
        pytest.skip(f"MovieLens-100K not found at {ML100K}")
    ds = reg.create("dataset", "movielens")
    split = reg.create("split", "temporal", horizon=60).split(ds, 0)
    return {"temporal_60d": (split.train, split.test), "random_80_20": random_holdout(ds)}


@pytest.fixture(scope="module")
def ml_als(reg, ml_splits):
    """ALS (default parameters) fitted through the harness on each split."""
    pytest.importorskip("implicit")
    out = {}
    for name, (train, _) in ml_splits.items():
        model = reg.create("model", "als")
        model.fit(train, None, ctx(0))
        out[name] = model
    return out


# ------------------------------------------------------------------------------- the cross-check with implicit

@needs_ml
@pytest.mark.parametrize("split_name", ["temporal_60d", "random_80_20"])
def test_als_metrics_equal_implicits_own_evaluation(reg, ml_splits, ml_als, split_name):
    """Harness P@10 / NDCG@10 == implicit.evaluation.ranking_metrics_at_k on the same model and matrices.

    implicit 0.7.3's ranking_metrics_at_k (implicit/evaluation.pyx) ranks with
    model.recommend(users, train_user_items[users], N=K) (already-liked train items filtered) for
    every user with a test item, and with likes = that user's test items returns
      precision = sum_u hits_u / sum_u min(K, |likes_u|)      (micro-averaged; "precision" in name only)
      ndcg      = mean_u sum_{i<K, hit} (1/log2(i+2)) / idcg_u, idcg_u = sum_{i<min(K,|likes_u|)} 1/log2(i+2).
    Its ndcg is the harness's (ranx's binary) NDCG@K averaged over the same users, so it is compared
    directly. Its precision is not the harness's Precision@K (hits/K, averaged per query): we rebuild
    implicit's aggregate from the harness's per-query Precision@10 (hits = value * K) and the
    per-query target counts, then compare. Any difference in the ranked lists, the exclusion of
    training items, the user <-> row alignment or the set of evaluated users shows up here.
    """
    from implicit.evaluation import ranking_metrics_at_k

    train, ev = ml_splits[split_name]
    model = ml_als[split_name]
    n_users, n_items = train.n_users, train.n_items
    train_ui = train.csr()
    st = ev.states
    # implicit's inputs, built from the very matrices the harness uses: state s is user row st.user[s]
    assert len(np.unique(st.user)) == len(st.user)
    t = ev.targets.tocoo()
    test_ui = sp.csr_matrix((t.data, (st.user[t.row], t.col)), shape=(n_users, n_items))
    # preconditions that make the two evaluations comparable: the harness excludes each state's
    # history, implicit the user's training row; they must be the same pairs, and no test pair is a
    # training pair (the harness drops such targets, implicit would keep them as unreachable likes)
    hist = st.history_matrix(n_items)
    assert (abs((hist > 0).astype(np.int8) - (train_ui[st.user] > 0).astype(np.int8))).nnz == 0
    assert test_ui.multiply(train_ui).nnz == 0

    metrics = {m: reg.get("metric", m) for m in ("precision", "ndcg")}
    res = evaluate_full("itemrec", ScoreSource(model, ev, n_items, CPU), ev, [K], metrics, train.item_counts)
    theirs = ranking_metrics_at_k(model.model, train_ui, test_ui, K=K, show_progress=False, num_threads=1)

    n_rel = np.diff(res.truth.indptr)
    assert res.metrics["n_queries"] == (np.diff(test_ui.indptr) > 0).sum() > 20
    hits = res.per_query[f"precision_{K}"] * K
    ours_micro_precision = hits.sum() / np.minimum(K, n_rel).sum()
    assert ours_micro_precision == pytest.approx(theirs["precision"], abs=1e-6)
    assert res.metrics[f"ndcg_{K}"] == pytest.approx(theirs["ndcg"], abs=1e-6)
    assert theirs["ndcg"] > 0.05  # a real ranking, not two empty ones agreeing


class RandomScores(Model):
    """Random factors: a random ranking per state."""

    def fit(self, train, loss, ctx):
        g = torch.Generator().manual_seed(ctx.seed)
        self.U = torch.randn(train.n_users, 16, generator=g)
        self.V = torch.randn(train.n_items, 16, generator=g)

    def factors(self, states):
        return self.U[torch.as_tensor(states.user)], self.V


@needs_ml
def test_als_beats_a_random_ranking_by_a_wide_margin(reg, ml_splits, ml_als):
    train, ev = ml_splits["random_80_20"]
    ndcg = {"ndcg": reg.get("metric", "ndcg")}
    rand = RandomScores()
    rand.fit(train, None, ctx(0))
    got = {name: evaluate_full("itemrec", ScoreSource(m, ev, train.n_items, CPU), ev, [K], ndcg,
                               train.item_counts).metrics[f"ndcg_{K}"]
           for name, m in (("als", ml_als["random_80_20"]), ("random", rand))}
    assert got["als"] > 0.15 and got["als"] > 5 * got["random"], got


# ------------------------------------------------------------------------------- determinism, shapes, cold users

@pytest.fixture(scope="module")
def tiny(reg):
    """A small synthetic world plus 5 users with no training event (ids n_users-5 ..)."""
    ds = reg.create("dataset", "synthetic", n_users=150, n_items=60, days=30.0)
    x = ds.interactions
    train = Interactions(user=x.user, item=x.item, time=x.time, n_users=x.n_users + 5, n_items=x.n_items,
                         time_unit=x.time_unit)
    ev = states_from_events(train, np.arange(train.n_users), np.full(train.n_users, np.inf))
    return train, ev


SMALL = {"als": {"factors": 8, "iterations": 4}, "logistic_mf": {"factors": 6, "iterations": 5}}


@pytest.mark.parametrize("name", ["als", "logistic_mf"])
def test_deterministic_per_seed_with_factor_shapes_and_cold_users(reg, tiny, name):
    pytest.importorskip("implicit")
    train, ev = tiny

    def fit(seed):
        m = reg.create("model", name, **SMALL[name])
        m.fit(train, None, ctx(seed))
        return m.factors(ev.states)

    (u0, v0), (u0b, v0b), (_, v1) = fit(0), fit(0), fit(1)
    d = SMALL[name]["factors"] + (2 if name == "logistic_mf" else 0)  # LMF: + user bias, item bias columns
    assert u0.shape == (len(ev.states), d) and v0.shape == (train.n_items, d)
    assert u0.dtype == v0.dtype == torch.float32
    assert torch.equal(u0, u0b) and torch.equal(v0, v0b)
    assert not torch.equal(v0, v1)
    cold = torch.as_tensor(train.user_counts == 0)
    assert cold[-5:].all() and torch.isfinite(u0).all() and torch.isfinite(v0).all()
    if name == "als":
        assert (u0[cold] == 0).all() and (u0[~cold].abs().sum(1) > 0).all()
    else:  # no personal factors, only the constant that multiplies the item bias: ranked by item bias
        expect = torch.zeros(d)
        expect[-2] = 1.0
        assert (u0[cold] == expect).all()


def test_als_factors_do_not_depend_on_the_thread_count(reg, tiny):
    pytest.importorskip("implicit")
    train, ev = tiny
    got = []
    for threads in (1, 2):
        m = reg.create("model", "als", **SMALL["als"])
        m.fit(train, None, ctx(0, threads=threads))
        got.append(m.factors(ev.states))
    assert torch.equal(got[0][0], got[1][0]) and torch.equal(got[0][1], got[1][1])


def test_progress_and_training_loss_reach_the_fit_context(reg, tiny):
    pytest.importorskip("implicit")
    train, _ = tiny
    for name, params in (("als", dict(SMALL["als"], calculate_training_loss=True)),
                         ("logistic_mf", SMALL["logistic_mf"])):
        curve, progress = [], []
        m = reg.create("model", name, **params)
        m.fit(train, None, ctx(0, log_metric=lambda k, v, s, curve=curve: curve.append((k, s, v)),
                               progress=lambda e, n, progress=progress: progress.append((e, n))))
        n = params["iterations"]
        assert progress == [(e, n) for e in range(1, n + 1)], name
        if name == "als":
            assert [(k, s) for k, s, _ in curve] == [("train/loss", s) for s in range(n)]
            assert all(np.isfinite(v) and v > 0 for _, _, v in curve)


# ------------------------------------------------------------------------------- errors

def test_bad_parameters_are_clear_config_errors(reg):
    with pytest.raises(ConfigError, match=r"model 'als': factors=0 is below its minimum 1"):
        reg.create("model", "als", factors=0)
    with pytest.raises(ConfigError, match=r"model 'logistic_mf': unknown parameter 'factor'; did you mean 'factors'"):
        reg.create("model", "logistic_mf", factor=8)
    with pytest.raises(ConfigError, match=r"alpha must be float, got 'high'"):
        reg.create("model", "als", alpha="high")


def test_missing_implicit_says_how_to_install_it(reg, tiny, monkeypatch):
    train, _ = tiny
    model = reg.create("model", "als")            # constructing needs no implicit: it is imported in fit
    for mod in [m for m in sys.modules if m == "implicit" or m.startswith("implicit.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "implicit", None)  # `import implicit` now raises ImportError
    with pytest.raises(ConfigError, match=r"model 'als' needs the `implicit` library.*pip install implicit==0\.7\.3"):
        model.fit(train, None, ctx(0))


def test_both_models_are_registered_with_their_specs(reg):
    for name in ("als", "logistic_mf"):
        spec = reg.get("model", name)
        assert spec.tasks == ("itemrec", "userrec") and spec.contracts == () and spec.default_loss is None
    assert reg.get("model", "als").schema.defaults() == {
        "factors": 100, "regularization": 0.01, "alpha": 1.0, "iterations": 15, "use_native": True, "use_cg": True,
        "calculate_training_loss": False}
    assert reg.get("model", "logistic_mf").schema.defaults() == {
        "factors": 30, "learning_rate": 1.0, "regularization": 0.6, "iterations": 30, "neg_prop": 30}
