"""The funnel (UMA²): the synthetic world's funnel layer against its own truth, the `funnel` split, the sampling
strategies on a hand-built funnel, and whole-catalogue recall of SS-ABC against SS-A."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from harness.data import Dataset, Interactions
from harness.errors import ConfigError, DataError
from harness.funnel import FunnelRows, draw_negatives, propensity_truth, space_counts
from plugins.datasets.synthetic import make_world_dataset
from plugins.splits.funnel import FunnelSplit


@pytest.fixture(scope="module")
def world():
    return make_world_dataset(funnel=True, n_users=600, n_items=300, days=30.0, seed=3)


@pytest.fixture(scope="module")
def split(world):
    return FunnelSplit(test_days=5.0).split(world, 0)


# ------------------------------------------------------------------------------------------ the world

def test_stored_recall_propensities_are_the_recallers_formula(world, split):
    f, truth = split.train_funnel, world.truth
    rows = np.arange(0, len(f), 7)
    np.testing.assert_allclose(truth.recall_propensity(f.req_key[f.request[rows]], f.item[rows]),
                               truth.recall_prob[f.event_id[rows]], rtol=1e-12)


def test_recall_exposure_and_click_rates_match_the_known_propensities(world):
    x, truth = world.interactions, world.truth
    event = np.asarray(x.event).astype(str)
    req = np.asarray(x.features["request"])
    funnel = event != "organic"
    n_req = int(req.max()) + 1
    # recalled per request: E = Σ_y p1 over the catalogue (sampled requests, exact sums)
    some = np.arange(0, n_req, 37)
    items = np.arange(x.n_items)
    expected = np.array([truth.recall_propensity(np.full(x.n_items, r), items).sum() for r in some])
    counts = np.bincount(req[funnel], minlength=n_req)[some]
    var = np.array([(p * (1 - p)).sum() for p in (truth.recall_propensity(np.full(x.n_items, r), items)
                                                   for r in some)])
    assert abs(counts.sum() - expected.sum()) < 4 * np.sqrt(var.sum())
    # exposed given recalled: Bernoulli(p2); clicked given exposed: Bernoulli(p_click)
    p2 = truth.exposure_prob[funnel]
    exposed = event[funnel] != "recall"
    assert abs(exposed.sum() - p2.sum()) < 4 * np.sqrt((p2 * (1 - p2)).sum())
    pc = truth.click_prob[funnel][exposed]
    clicked = event[funnel][exposed] == "click"
    assert abs(clicked.sum() - pc.sum()) < 4 * np.sqrt((pc * (1 - pc)).sum())
    assert np.isnan(truth.click_prob[funnel][~exposed]).all()


def test_spaces_are_large_and_biased(world, split):
    f, b = split.train_funnel, world.truth.b
    per_req = len(f) / f.n_requests
    assert 20 < per_req < 80 and per_req < 0.3 * f.n_items        # B + A + clicked per request vs the catalogue
    assert (f.stage == 1).sum() > 5 * (f.stage == 2).sum()          # B much larger than A
    # recall leans to popular items, exposure further: mean popularity bias C < B < A
    assert b[f.item[f.stage == 1]].mean() > b.mean() + 0.2
    assert b[f.item[f.stage >= 2]].mean() > b[f.item[f.stage == 1]].mean()


def test_funnel_and_impressions_layers_are_exclusive():
    with pytest.raises(ValueError, match="choose one"):
        make_world_dataset(funnel=True, impressions=True, n_users=20, n_items=10)


# ------------------------------------------------------------------------------------------ the split

def test_split_train_before_the_cut_test_the_last_days_clicks(world, split):
    x = world.interactions
    T = split.info["cut"]
    assert np.all(split.train.time < T)
    event = np.asarray(x.event).astype(str)
    test_clicks = (event == "click") & (x.time >= T)
    users = split.test.states.user
    want = pd.DataFrame({"u": x.user[test_clicks], "i": x.item[test_clicks]})
    want = want[want.u.isin(users)].drop_duplicates()
    t = split.test.targets.tocoo()
    got = pd.DataFrame({"u": users[t.row], "i": t.col})
    assert sorted(map(tuple, got.values)) == sorted(map(tuple, want.values))
    assert len(split.train) == int(((event == "click") & (x.time < T)).sum())
    f = split.train_funnel
    assert np.all(f.req_time < T) and np.all(split.test_funnel.req_time >= T)
    assert split.info["n_train_space_B"] == int((f.stage == 1).sum())


def _log(rows, n_users=3, n_items=10, request=True):
    df = pd.DataFrame(rows, columns=["user", "item", "time", "event", "request"])
    feats = {"request": df.request.to_numpy(np.int64)} if request else {}
    x = Interactions(user=df.user.to_numpy(np.int64), item=df.item.to_numpy(np.int64),
                     time=df.time.to_numpy(np.float64), n_users=n_users, n_items=n_items, time_unit="day",
                     event=df.event.to_numpy(object), features=feats)
    return Dataset(name="hand", interactions=x, user_ids=np.arange(n_users).astype(str).astype(object),
                   item_ids=np.arange(n_items).astype(str).astype(object), meta={})


def test_a_pair_logged_at_every_stage_counts_at_its_deepest_and_requests_fall_back_to_user_time():
    rows = [(0, 1, 1.0, "recall", 0), (0, 1, 1.0, "exposure", 0), (0, 1, 1.0, "click", 0),
            (0, 2, 1.0, "recall", 0), (0, 3, 1.0, "exposure", 0),
            (1, 4, 2.0, "recall", 1), (1, 5, 2.0, "click", 1),
            (1, 6, 9.0, "click", 2), (0, 7, 9.5, "click", 3)]
    for request in (True, False):
        sd = FunnelSplit(test_days=1.0).split(_log(rows, request=request), 0)
        f = sd.train_funnel
        got = sorted(zip(f.req_user[f.request], f.item, f.stage, strict=True))
        assert got == [(0, 1, 3), (0, 2, 1), (0, 3, 2), (1, 4, 1), (1, 5, 3)]
        assert f.n_requests == 2
        assert sd.test.targets.toarray()[list(sd.test.states.user).index(1), 6] == 1


def test_split_errors_name_the_fix():
    rows = [(0, 1, 1.0, "recall", 0), (0, 2, 1.0, "exposure", 0)]
    with pytest.raises(DataError, match="no click events"):
        FunnelSplit().split(_log(rows), 0)
    ds = _log(rows + [(0, 3, 2.0, "click", 1)])
    ds = dataclasses.replace(ds, interactions=dataclasses.replace(ds.interactions, event=None))
    with pytest.raises(DataError, match="no `event` column"):
        FunnelSplit().split(ds, 0)
    with pytest.raises(DataError, match="outside the funnel's time span"):
        FunnelSplit(cut=50.0).split(_log(rows + [(0, 3, 2.0, "click", 1)]), 0)


# ------------------------------------------------------------------------------------------ sampling

@pytest.fixture
def hand():
    """Request 0 (user 0): clicked 1, A {2, 3}, B {4, 5, 6}; request 1 (user 1): clicked 7, no A, B {8}."""
    return FunnelRows(request=np.array([0, 0, 0, 0, 0, 0, 1, 1]), item=np.array([1, 2, 3, 4, 5, 6, 7, 8]),
                      stage=np.array([3, 2, 2, 1, 1, 1, 3, 1]), req_user=np.array([0, 1]),
                      req_time=np.array([1.0, 2.0]), n_items=12)


def test_each_strategy_draws_from_the_space_it_names(hand):
    rng = np.random.default_rng(0)
    recalled = {0: {1, 2, 3, 4, 5, 6}, 1: {7, 8}}
    d = draw_negatives(hand, "ss_a", 40, rng)
    assert d.item.shape == (2, 40) and (d.space == 2).all()
    assert set(d.item[0]) == {2, 3} and not d.borrowed[0].any()
    assert set(d.item[1]) <= {2, 3} and d.borrowed[1].all()       # request 1 has no A: borrowed from all A
    d = draw_negatives(hand, "ss_ab", 5, rng)
    assert [(d.space[0] == s).sum() for s in (2, 1)] == [1, 4]
    assert set(d.item[0][d.space[0] == 1]) <= {4, 5, 6} and set(d.item[1][d.space[1] == 1]) == {8}
    d = draw_negatives(hand, "ss_abc_fixed", 25, rng)
    assert [(d.space[0] == s).sum() for s in (2, 1, 0)] == [1, 4, 20]
    for r in (0, 1):
        c = d.item[r][d.space[r] == 0]
        assert not set(c) & recalled[r] and set(c) <= set(range(12))
    d = draw_negatives(hand, "ss_abc_random", 3000, rng)
    assert not (d.item[0] == 1).any() and not (d.item[1] == 7).any()
    assert set(d.item[0]) == set(range(12)) - {1}
    np.testing.assert_array_equal(d.space, hand.space_of(np.repeat([[0], [1]], 3000, 1), d.item))
    assert (d.space[0][np.isin(d.item[0], [4, 5, 6])] == 1).all()


def test_every_strategy_gives_the_same_number_of_negatives_and_ratio_scales_by_largest_remainders():
    assert space_counts("ss_abc_fixed", 25) == (1, 4, 20)
    assert space_counts("ss_abc_fixed", 10) == (0, 2, 8)      # 0.4, 1.6, 8 -> floors 0, 1, 8 + the largest rest
    assert space_counts("ss_ab", 10) == (2, 8, 0)
    assert space_counts("ss_a", 7) == (7, 0, 0) and space_counts("ss_abc_random", 7) == (0, 0, 7)
    with pytest.raises(ConfigError, match="unknown sampling 'ss_x'"):
        space_counts("ss_x", 5)
    with pytest.raises(ConfigError, match="three non-negative"):
        space_counts("ss_abc_fixed", 5, (1, 2))


def test_a_catalogue_recalled_whole_has_no_space_c():
    f = FunnelRows(request=np.array([0, 0, 0]), item=np.array([0, 1, 2]), stage=np.array([3, 2, 1]),
                   req_user=np.array([0]), req_time=np.array([0.0]), n_items=3)
    with pytest.raises(ConfigError, match="Space C is"):
        draw_negatives(f, "ss_abc_fixed", 25, np.random.default_rng(0))


# ------------------------------------------------------------------------------------------ truth of propensities

class _Oracle:
    def __init__(self, truth, funnel, noise=0.0):
        self.truth, self.funnel, self.noise = truth, funnel, noise

    def propensities(self, users, times, items):
        f = self.funnel
        req = np.searchsorted(f.req_time, times)    # test requests have distinct times
        p1 = self.truth.recall_propensity(f.req_key[req], items)
        p2 = np.random.default_rng(0).random(len(items)) if self.noise else np.ones(len(items))
        return p1, p2


def test_propensity_truth_is_one_for_the_true_p1_and_chance_for_noise(world, split):
    f = split.test_funnel
    assert np.all(np.diff(f.req_time) > 0)
    out = propensity_truth(_Oracle(world.truth, f), f, world.truth, seed=0)
    assert out["truth/recall_propensity_spearman"] == pytest.approx(1.0)
    assert out["truth/n_propensity_pairs"] == 2 * len(f)
    out = propensity_truth(_Oracle(world.truth, f, noise=1.0), f, world.truth, seed=0)
    assert abs(out["truth/exposure_propensity_spearman"]) < 0.05
    assert propensity_truth(object(), f, world.truth, 0) == {}
