"""The synthetic world's truth as a ranking: the ceiling learned models are read against."""
import numpy as np
import pytest
from conftest import tiny_suite

from harness import api
from harness.errors import ConfigError
from harness.model import FitContext
from harness.registry import Registry


def test_oracle_beats_learned_and_popularity_models_on_both_tasks(workdir):
    suite = tiny_suite(datasets=[{"name": "synthetic", "n_users": 800, "n_items": 150, "days": 40.0}],
                       models=[{"name": "oracle"}, {"name": "item_pop"}, {"name": "user_pop"},
                               {"name": "bpr", "factors": 16, "epochs": 10}],
                       metrics=["ndcg", "recall"], cutoffs=[10])
    frame = api.run(suite).set_index("params.model")
    assert (frame.status == "FINISHED").all()
    for task in ("itemrec", "userrec"):
        col = frame[f"metrics.{task}/ndcg_10"]
        others = col.drop("oracle")
        assert col["oracle"] > others.max(), (task, col.to_dict())


def test_oracle_scores_are_the_true_log_intensity():
    reg = Registry.load()
    data = reg.create("dataset", "synthetic", n_users=50, n_items=20, days=20.0)
    split = reg.create("split", "temporal", horizon=5).split(data, 0)
    model = reg.create("model", "oracle")
    model.fit(split.train, None, FitContext(truth=data.truth))
    states = split.test.states
    rows = np.array([3, 0, len(states) - 1])
    got = model.score_block(states, rows).numpy()
    want = np.log(data.truth.pair_intensity(states))[rows]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_oracle_on_data_without_truth_says_so():
    reg = Registry.load()
    data = reg.create("dataset", "synthetic", n_users=20, n_items=10, days=10.0)
    data.truth = None
    with pytest.raises(ConfigError, match="needs a dataset with known truth"):
        reg.create("model", "oracle").fit(data.interactions, None, FitContext(truth=data.truth))
