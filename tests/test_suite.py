"""Suite parsing: grid expansion, pruning, skipped pairs, and one error listing every problem."""
import pytest
import yaml

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
    assert {(c.model.name, c.model.params.get("factors"), c.seed) for c in s.cells} == {("item_pop", None, 0),
                                                                                         ("bpr", 8, 0)}


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
    assert "report: unknown key 'colums'" in msg and "did you mean 'ndcg'" in msg


@pytest.mark.parametrize("over, needle", [
    ({"jobs": "two"}, "jobs: input should be a valid integer, got 'two'"),
    ({"ranking": {"block_size": "big"}}, "ranking.block_size: input should be a valid integer, got 'big'"),
    ({"exclude_seen": "false"}, "exclude_seen: input should be a valid boolean, got 'false'"),
    ({"ranking": {"budgit_mib": 64}}, "ranking: unknown key 'budgit_mib'; did you mean 'budget_mib'?"),
    ({"candidates": [{"name": "sampled", "negativs": 9}]},
     "candidates[0]: unknown key 'negativs'; did you mean 'negatives'?"),
    ({"tasks": ["itemrec", "itmrec"]}, "tasks[1]: unknown task 'itmrec'; did you mean 'itemrec'?"),
    ({"models": [{"name": "bpr", "label": ""}]}, "models[0].label: string should have at least 1 character"),
    ({"seeds": [1.5]}, "seeds[0]: input should be a valid integer, got 1.5"),
])
def test_the_typed_schema_refuses_what_the_hand_validation_let_through(registry, over, needle):
    with pytest.raises(ConfigError) as exc:
        build_suite(dict(BASE, **over), registry)
    assert needle in str(exc.value)


def test_a_suite_file_without_name_takes_its_stem_and_the_cli_exits_2_on_a_typed_error(tmp_path, registry, capsys):
    from harness.cli import main
    from harness.suite import load_suite

    path = tmp_path / "my_grid.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in BASE.items() if k != "name"}))
    assert load_suite(path, registry).name == "my_grid"
    path.write_text(yaml.safe_dump(dict(BASE, jobs="two")))
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "jobs: input should be a valid integer" in err and "Traceback" not in err


def test_a_late_parameter_stays_out_of_the_config_at_its_default_only(registry):
    """synthetic's funnel parameters came after runs were recorded: all at their defaults, the cells (and hashes)
    are those of before; one set, all of them are part of the cell."""
    from harness.suite import build_suite

    base = {"datasets": [{"name": "synthetic", "n_users": 30, "n_items": 10}], "split": {"name": "temporal"},
            "models": [{"name": "item_pop"}], "name": "late"}
    plain = build_suite(base, registry).cells[0]
    assert "funnel" not in plain.dataset.params and "impressions" in plain.dataset.params
    same = build_suite(dict(base, datasets=[{"name": "synthetic", "n_users": 30, "n_items": 10,
                                              "recall_size": 50}]), registry).cells[0]
    assert same.config_hash == plain.config_hash
    other = build_suite(dict(base, datasets=[{"name": "synthetic", "n_users": 30, "n_items": 10,
                                               "recall_size": 40}]), registry).cells[0]
    assert other.dataset.params["recall_size"] == 40 and other.config_hash != plain.config_hash
    assert other.dataset.params["funnel"] is False and other.dataset.params["exposure_quality"] == 0.8


def test_config_hashes_are_those_of_the_recorded_runs(registry):
    """Resume and the reports key on these: a change to how settings enter the hash orphans every stored run.
    (The quickstart suite as it was when these hashes were recorded; its file has changed since.)"""
    s = build_suite({
        "name": "quickstart", "datasets": [{"name": "synthetic", "n_users": 2000, "n_items": 500}],
        "split": {"name": "temporal", "horizon": 7}, "tasks": ["itemrec", "userrec"],
        "models": [{"name": "item_pop"}, {"name": "user_pop"}, {"name": "oracle"},
                   {"name": "bpr", "factors": 32, "epochs": 20}],
        "metrics": ["recall", "ndcg", "hit", "precision", "mrr", "recall_capped", "coverage", "popularity",
                    "activeness"],
        "cutoffs": [10, 20], "seeds": [0, 1], "save_rankings": True,
        "tracking": {"tracker": "mlflow", "uri": "sqlite:///mlruns.db"}, "report": {"enabled": True, "dir": "reports"}},
        registry)
    assert [c.config_hash for c in s.cells] == [
        "0dc6cb5749e0b168", "45660bba3e04d1d7", "126d27ac89991a51", "d4b327842afbe871", "3aa587cdf3135da4",
        "c4631b199561f59f", "2e031ee8e51293cd", "46b3567aca8d1f3f"]
