"""`youtube_dnn` and the funnel two-tower loop: conformance, its inputs (no history leaks past the request, the
item features), and the paper's first finding on the synthetic funnel: SS-ABC beats SS-A on whole-catalogue
recall@100."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data import Interactions
from harness.errors import ConfigError
from harness.funnel import FunnelRows
from harness.model import FitContext
from harness.registry import Registry
from harness.testing import check_plugin
from plugins.models.funnel_towers import histories, item_features


@pytest.fixture(scope="module")
def reg():
    return Registry.load()


@pytest.fixture(scope="module")
def funnel_split(reg):
    ds = reg.create("dataset", "synthetic", n_users=1500, n_items=2000, days=30.0, funnel=True, seed=0)
    return ds, reg.create("split", "funnel", test_days=5.0).split(ds, 0)


def test_youtube_dnn_passes_the_conformance_kit():
    check_plugin("model", "youtube_dnn", epochs=1, layers=[16, 8])


def test_histories_are_the_last_clicks_strictly_before_the_request_most_recent_first():
    clicks = Interactions(user=np.array([0, 0, 0, 1, 0]), item=np.array([5, 6, 7, 8, 9]),
                          time=np.array([1.0, 2.0, 3.0, 1.0, 3.0]), n_users=2, n_items=10)
    got = histories(clicks, np.array([0, 0, 0, 1, 1]), np.array([3.0, 3.5, 0.5, 1.0, 9.0]), max_len=2, pad=10)
    np.testing.assert_array_equal(got, [[6, 5], [9, 7], [10, 10], [10, 10], [8, 10]])


def test_item_features_are_log_clicks_and_the_smoothed_accumulated_ctr():
    train = Interactions(user=np.array([0, 0, 1]), item=np.array([0, 0, 1]), time=np.zeros(3), n_users=2,
                         n_items=3)
    f = FunnelRows(request=np.array([0, 0, 1, 1, 1]), item=np.array([0, 1, 0, 1, 2]),
                   stage=np.array([3, 2, 3, 3, 2]), req_user=np.array([0, 1]), req_time=np.zeros(2), n_items=3)
    got = item_features(train, f)
    prior = 3 / 5                                   # 3 clicks over 5 exposures (stage >= 2)
    np.testing.assert_allclose(got[:, 0], np.log1p([2, 1, 0]), rtol=1e-6)
    np.testing.assert_allclose(got[:, 1], [(2 + prior) / 3, (1 + prior) / 3, prior / 2], rtol=1e-6)
    assert (item_features(train, None)[:, 1] == 0).all()


def test_funnel_strategies_need_a_funnel(reg):
    ds = reg.create("dataset", "synthetic", n_users=50, n_items=20, days=20.0)
    sd = reg.create("split", "temporal", horizon=5.0).split(ds, 0)
    m = reg.create("model", "youtube_dnn", sampling="ss_ab", epochs=1, layers=[8])
    with pytest.raises(ConfigError, match="needs a funnel split"):
        m.fit(sd.train, None, FitContext.for_split(sd, ds))


def _recall_at(model, split, k: int) -> float:
    u, v = model.factors(split.test.states)
    top = torch.topk(u @ v.T, k, dim=1).indices.numpy()
    t = split.test.targets.tocsr()
    return float(np.mean([np.isin(t[r].indices, top[r]).mean() for r in range(t.shape[0])]))


def test_ss_abc_beats_ss_a_on_whole_catalogue_recall_at_100(reg, funnel_split):
    ds, sd = funnel_split
    got = {}
    for sampling in ("ss_a", "ss_abc_random"):
        m = reg.create("model", "youtube_dnn", sampling=sampling, epochs=3, layers=[64, 32])
        torch.manual_seed(0)
        m.fit(sd.train, None, FitContext.for_split(sd, ds, seed=0))
        got[sampling] = _recall_at(m, sd, 100)
    # exposed-but-unclicked negatives alone never show the model the catalogue the funnel does not recall:
    # measured 0.73 against 0.88 (740 test users)
    assert got["ss_abc_random"] > got["ss_a"] + 0.05, got
