"""Suite parsing: grid expansion, pruning, skipped pairs, and one error listing every problem."""
import pytest

from harness.errors import ConfigError
from harness.registry import Registry
from harness.suite import build_suite


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


BASE = {
    "name": "t",
    "datasets": [{"name": "synthetic", "n_users": 50, "n_items": 20}],
    "split": {"name": "temporal", "horizon": 7},
    "models": [{"name": "item_pop"}, {"name": "bpr", "factors": [8, 16], "epochs": 2}],
    "seeds": [0, 1],
}


def test_lists_expand_into_a_cartesian_grid(registry):
    s = build_suite(dict(BASE), registry)
    assert len(s.cells) == (1 + 2) * 2
    bpr = [c for c in s.cells if c.model.name == "bpr"]
    assert {c.model.params["factors"] for c in bpr} == {8, 16}
    assert all(c.loss.name == "bpr" for c in bpr)  # the model's default loss
    assert all(c.loss is None for c in s.cells if c.model.name == "item_pop")
    assert "bpr(factors=8)" in bpr[0].run_name or "bpr(factors=16)" in bpr[0].run_name
    assert len({c.config_hash for c in s.cells}) == len(s.cells)


def test_config_hash_is_stable_and_ignores_tracking(registry):
    a = build_suite(dict(BASE), registry)
    b = build_suite(dict(BASE, tracking={"uri": "sqlite:///elsewhere.db"}), registry)
    assert [c.config_hash for c in a.cells] == [c.config_hash for c in b.cells]


def test_include_and_exclude_prune(registry):
    s = build_suite(dict(BASE, exclude=[{"model": "bpr", "model.factors": 16}], include=[{"seed": 0}]), registry)
    assert {(c.model.name, c.model.params.get("factors"), c.seed) for c in s.cells} == {("item_pop", None, 0), ("bpr", 8, 0)}


def test_loss_the_model_does_not_accept_is_skipped_with_reason(registry):
    from harness import hookimpl
    from harness.specs import LossSpec

    class Plugin:
        @hookimpl
        def register_losses(self, register):
            register(LossSpec(name="fake_in_batch", factory=object, contract="in_batch", description="test"))

    reg = Registry.load(extra=[Plugin()])
    s = build_suite(dict(BASE, models=[{"name": "bpr", "epochs": 1}], losses=["bpr", "fake_in_batch"], seeds=[0]), reg)
    skipped = [c for c in s.cells if c.skip_reason]
    assert len(skipped) == 1 and "in_batch" in skipped[0].skip_reason and "pairwise" in skipped[0].skip_reason


def test_every_problem_is_reported_at_once_with_nearest_names(registry):
    bad = dict(BASE, modles=[], datasets=[{"name": "synthetc"}],
               models=[{"name": "bpr", "factor": 8, "epochs": -1}, {"name": "itempop"}],
               metrics=["ndgc"], cutoffs=[0])
    with pytest.raises(ConfigError) as exc:
        build_suite(bad, registry)
    msg = str(exc.value)
    for needle in ["'modles'", "did you mean 'models'", "'synthetc'", "did you mean 'synthetic'", "'factor'",
                   "did you mean 'factors'", "epochs=-1 is below its minimum", "'itempop'", "did you mean 'item_pop'",
                   "'ndgc'", "did you mean 'ndcg'", "cutoffs"]:
        assert needle in msg, needle
    assert len(exc.value.problems) >= 7


def test_bad_types_and_ranges(registry):
    with pytest.raises(ConfigError, match="factors must be int"):
        build_suite(dict(BASE, models=[{"name": "bpr", "factors": "big"}]), registry)
    with pytest.raises(ConfigError, match="lr=100.0 is above its maximum"):
        build_suite(dict(BASE, models=[{"name": "bpr", "lr": 100.0}]), registry)


def test_impossible_combinations(registry):
    with pytest.raises(ConfigError, match="activeness.*userrec"):
        build_suite(dict(BASE, tasks=["itemrec"], metrics=["activeness"]), registry)
    with pytest.raises(ConfigError, match="unknown task 'itemrek'"):
        build_suite(dict(BASE, tasks=["itemrek"]), registry)


def test_unknown_report_key_is_one_of_the_problems(registry):
    bad = dict(BASE, metrics=["ndgc"], report={"enabled": False, "colums": ["ndcg_10"]})
    with pytest.raises(ConfigError) as exc:
        build_suite(bad, registry)
    msg = str(exc.value)
    assert "report: unknown key(s) 'colums'" in msg and "did you mean 'ndcg'" in msg
