"""The third-party story: the example package registers through the entry point and runs in a suite."""
import importlib.metadata as md

from conftest import tiny_suite
from harness import api
from harness.registry import Registry


def test_example_plugin_is_installed_through_the_entry_point():
    assert "item_cooc" in {ep.name for ep in md.entry_points(group="matchbench")}
    assert Registry.load().get("model", "item_cooc").description


def test_example_plugin_runs_in_a_suite(workdir):
    frame = api.run(tiny_suite(models=[{"name": "item_cooc", "shrink": [0.0, 5.0]}]))
    assert len(frame) == 2 and (frame.status == "FINISHED").all()
    assert frame["metrics.itemrec/ndcg_10"].notna().all() and frame["metrics.userrec/ndcg_10"].notna().all()
