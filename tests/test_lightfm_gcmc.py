"""LightFM (library wrapper) and GCMC / GCMC-Ex (RIM appendix B) on the synthetic world."""
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import tiny_suite

import plugins.models.gcmc as gcmc_plugin
import plugins.models.lightfm_model as lightfm_plugin
from harness import api
from harness.errors import ConfigError
from harness.evaluate import ScoreSource, evaluate_full
from harness.model import FitContext, Model
from harness.registry import Registry

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def reg():
    """The registry with both plugins: passed as extra modules until their entry points are installed."""
    installed = Registry.load().names("model")
    extra = [m for m, name in ((lightfm_plugin, "lightfm"), (gcmc_plugin, "gcmc")) if name not in installed]
    return Registry.load(extra=extra)


@pytest.fixture(scope="module")
def world(reg):
    ds = reg.create("dataset", "synthetic", n_users=600, n_items=150, days=40.0)
    return ds, reg.create("split", "temporal", horizon=7).split(ds, 0)


def fit(reg, name, split, seed=0, **params):
    spec = reg.get("model", name)
    model = reg.create("model", name, **params)
    loss = reg.create("loss", spec.default_loss) if spec.default_loss else None
    model.fit(split.train, loss, FitContext(seed=seed, device=CPU))
    return model


@pytest.fixture(scope="module")
def fitted(reg, world):
    _, split = world
    return {name: fit(reg, name, split) for name in ("gcmc", "gcmc_ex")}


class RandomScores(Model):
    def fit(self, train, loss, ctx):
        self.n_items, self.seed = train.n_items, ctx.seed

    def score_block(self, states, rows):
        g = torch.Generator().manual_seed(self.seed)
        return torch.rand(len(states), self.n_items, generator=g)[torch.as_tensor(rows)]


def ndcg10(model, split, reg, task):
    src = ScoreSource(model, split.test, split.n_items, CPU)
    res = evaluate_full(task, src, split.test, [10], {"ndcg": reg.get("metric", "ndcg")}, split.train.item_counts)
    return res.metrics["ndcg_10"]


def test_lightfm_factors_reproduce_predict(reg, world):
    _, split = world
    for loss in ("warp", "bpr"):
        model = fit(reg, "lightfm", split, lightfm_loss=loss, epochs=3, no_components=8)
        u, v = model.factors(split.test.states)
        rng = np.random.default_rng(0)
        rows = rng.integers(0, len(split.test.states), 50)
        items = rng.integers(0, split.n_items, 50)
        users = split.test.states.user[rows]
        assert (split.train.user_counts[users] > 0).all()
        ours = (u[rows] * v[items]).sum(1).numpy()
        theirs = model.model.predict(users.astype(np.int32), items.astype(np.int32))
        np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)


def test_lightfm_missing_library_is_a_config_error(reg, world, monkeypatch):
    monkeypatch.setitem(sys.modules, "lightfm", None)  # makes `import lightfm` raise ImportError
    with pytest.raises(ConfigError, match="pip install rectools-lightfm==1.17.3"):
        fit(reg, "lightfm", world[1], epochs=1)


def test_gcmc_learns_the_world_and_scores_are_positive(reg, world, fitted):
    _, split = world
    rand = RandomScores()
    rand.fit(split.train, None, FitContext(seed=0, device=CPU))
    for task in ("itemrec", "userrec"):
        base = ndcg10(rand, split, reg, task)
        for name, model in fitted.items():
            got = ndcg10(model, split, reg, task)
            assert got > 2 * base, (name, task, got, base)
    for model in fitted.values():
        s = model.score_block(split.test.states, np.arange(len(split.test.states)))
        assert s.shape == (len(split.test.states), split.n_items)
        assert torch.isfinite(s).all() and (s > 0).all()
    assert fitted["gcmc_ex"].info["n_train_labels"] > fitted["gcmc"].info["n_train_labels"]


def test_gcmc_scores_held_out_users_from_their_history(reg):
    ds = reg.create("dataset", "synthetic", n_users=300, n_items=80, days=30.0)
    split = reg.create("split", "user", test_fraction=0.3, horizon=7).split(ds, 0)
    model = fit(reg, "gcmc", split, epochs=3, factors=16)
    st = split.test.states
    rows = np.arange(len(st))
    base = model.score_block(st, rows)
    # another user id with the same history scores the same: the representation is the history's
    renamed = replace(st, user=(st.user + 1) % ds.n_users)
    torch.testing.assert_close(model.score_block(renamed, rows), base)
    # a different history gives different scores
    changed = replace(st, hist_item=(st.hist_item + 7) % ds.n_items)
    assert not torch.allclose(model.score_block(changed, rows), base)


def test_gcmc_score_blocks_do_not_depend_on_block_size(world, fitted):
    _, split = world
    st = split.test.states
    model = fitted["gcmc_ex"]
    rows = np.arange(len(st))
    whole = model.score_block(st, rows)
    parts = torch.cat([model.score_block(st, rows[i:i + 37]) for i in range(0, len(rows), 37)])
    torch.testing.assert_close(parts, whole, rtol=1e-6, atol=1e-6)
    perm = np.random.default_rng(1).permutation(len(st))
    torch.testing.assert_close(model.score_block(st, perm), whole[perm], rtol=1e-6, atol=1e-6)


def test_determinism_per_seed(reg, world):
    _, split = world
    st, rows = split.test.states, np.arange(len(split.test.states))
    for name in ("gcmc", "lightfm"):
        params = {"epochs": 2, "factors": 16} if name == "gcmc" else {"epochs": 2, "no_components": 8}
        a, b, c = (fit(reg, name, split, seed=s, **params) for s in (0, 0, 1))
        sa, sb, sc = (m.score_block(st, rows) for m in (a, b, c))
        assert torch.equal(sa, sb), name
        assert not torch.allclose(sa, sc), name


def test_suite_runs_lightfm_and_gcmc(workdir, reg):
    suite = tiny_suite(models=[{"name": "lightfm", "lightfm_loss": ["warp", "bpr"], "epochs": 2, "no_components": 8},
                               {"name": "gcmc", "epochs": 2, "factors": 8},
                               {"name": "gcmc_ex", "epochs": 2, "factors": 8, "n_periods": 2}])
    frame = api.run(suite, registry=reg)
    assert (frame.status == "FINISHED").all(), frame.error.tolist()
    assert frame["metrics.userrec/ndcg_10"].notna().all()


def test_gcmc_takes_its_labels_from_the_calibration_window(reg):
    """RIM sets GCMC(*) back: with a calibration window [T', T) its labels are that window's targets (states at T',
    histories before T'), not the last period of its own training data; gcmc_ex's earlier periods end at T'."""
    ds = reg.create("dataset", "synthetic", n_users=80, n_items=30, days=40.0)
    split = reg.create("split", "temporal", horizon=7, calibration=7).split(ds, 0)
    calib = split.calibration
    assert split.train.time.max() < calib.states.time.min()  # train stops at T'
    g = reg.create("model", "gcmc")
    states, period_of, pos_s, pos_i = g._training_states(split.train, 7.0, calib)
    want = calib.targets.tocoo()
    assert (period_of == 0).all() and len(states) == calib.n_states
    assert sorted(zip(pos_s, pos_i, strict=True)) == sorted(zip(want.row, want.col, strict=True))
    alone = g._training_states(split.train, 7.0)[0]  # without it: the states at the last training period's start
    assert alone.time.max() < calib.states.time.min()
    ex = reg.create("model", "gcmc_ex", n_periods=2)
    states, period_of, pos_s, _ = ex._training_states(split.train, 7.0, calib)
    assert set(period_of) == {0, 1} and (period_of[:calib.n_states] == 0).all()
    T1 = float(calib.states.time.min())
    assert np.allclose(states.time[period_of == 1], T1 - 7.0 * split.train.per_day)
