"""The third-party story: the example package registers one plugin per kind through entry points, imports
harness.plugin only, passes the conformance kit, and its plugins run next to the built-ins in a parallel suite.
So does a plugin registered in code (workers get the driver's registry)."""
import ast
import importlib.metadata as md
import pathlib
import sys

import numpy as np
import pytest
import torch
from conftest import raises_data_error, tiny_suite

import matchbench_example
from harness import api
from harness.plugin import MetricSpec, Model, ModelSpec, hookimpl
from harness.registry import Registry

PACKAGE = pathlib.Path(matchbench_example.__file__).parent
EXAMPLES = {  # entry point / module -> (kind, name, small parameters for the conformance kit)
    "item_cooc": ("model", "item_cooc", {"shrink": 1.0}),
    "hinge": ("loss", "hinge", {"margin": 0.5}),
    "last_fraction": ("split", "last_fraction", {"fraction": 0.25, "valid": True}),
    "average_precision": ("metric", "ap", {}),
    "threshold": ("planner", "threshold", {"alpha": 0.2, "tau": 0.3}),
    "tsv_ratings": ("dataset", "tsv_ratings", {}),
    "jsonl_tracker": ("tracker", "jsonl", {}),
}
LIBRARIES = {"numpy", "torch", "scipy", "pandas"}  # besides harness.plugin and the standard library


def test_example_plugin_runs_in_a_suite(workdir):
    frame = api.run(tiny_suite(models=[{"name": "item_cooc", "shrink": [0.0, 5.0]}]))
    assert len(frame) == 2 and (frame.status == "FINISHED").all()
    assert frame["metrics.itemrec/ndcg_10"].notna().all() and frame["metrics.userrec/ndcg_10"].notna().all()


def test_every_example_is_its_own_entry_point_and_registers_one_plugin():
    eps = {ep.name: ep.value for ep in md.entry_points(group="matchbench")}
    registry = Registry.load()
    for module, (kind, name, _) in EXAMPLES.items():
        assert eps.get(module) == f"matchbench_example.{module}", module
        assert registry.get(kind, name).description
        assert registry.origin[(kind, name)] == module  # registered by that entry point, not a built-in
    assert sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__") == sorted(EXAMPLES)


def import_violations(path: pathlib.Path) -> list[str]:
    """Imports of a third-party plugin module outside harness.plugin, numpy/torch/scipy/pandas and the stdlib."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            modules = [node.module or ""]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        for m in modules:
            top = m.split(".")[0]
            ok = m == "harness.plugin" if top == "harness" else top in LIBRARIES or top in sys.stdlib_module_names
            if not ok:
                out.append(f"{path.name}:{node.lineno}: imports {m}")
    return out


def test_examples_import_nothing_but_harness_plugin():
    problems = [v for p in sorted(PACKAGE.glob("*.py")) for v in import_violations(p)]
    assert not problems, "\n".join(problems)


def test_the_import_check_can_fail(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from harness.model import Model\nimport harness\nfrom plugins.models.bpr import BPR\n"
                     "import sklearn\nfrom harness.plugin import Model\nimport numpy.linalg\n"
                     "from pathlib import Path\n")
    assert [v.split(": ")[1] for v in import_violations(probe)] == [
        "imports harness.model", "imports harness", "imports plugins.models.bpr", "imports sklearn"]


@pytest.mark.parametrize("kind,name,params", list(EXAMPLES.values()), ids=list(EXAMPLES))
def test_each_example_passes_the_conformance_kit(kind, name, params):
    from harness.testing import check_plugin

    check_plugin(kind, name, **params)


def test_the_example_dataset_names_the_bad_line_and_verifies_only_its_own_file(tmp_path):
    shipped = api.plugin("dataset", "tsv_ratings")
    assert shipped.meta["verified"] and (shipped.n_users, shipped.n_items, len(shipped.interactions)) == (30, 24, 338)
    f = tmp_path / "mine.tsv"
    f.write_text("user\titem\trating\ttimestamp\nu1\ti1\t4\t100\nu1\ti2\t4.5\t200\n")
    mine = api.plugin("dataset", "tsv_ratings", path=str(f))
    assert len(mine.interactions) == 2 and not mine.meta["verified"]
    f.write_text("user\titem\trating\ttimestamp\nu1\ti1\t4\t100\nu1\ti2\tfive\t200\n")
    raises_data_error(lambda: api.plugin("dataset", "tsv_ratings", path=str(f)), f"{f}: line 3", "'five'",
                      "fix or delete")
    f.write_text("user\titem\trating\ttimestamp\nu1\ti1\t-1\t100\n")
    raises_data_error(lambda: api.plugin("dataset", "tsv_ratings", path=str(f)), "line 2", "a negative rating")


# --------------------------------------------------------------------------- the acceptance test

def test_third_party_plugins_run_next_to_builtins_with_two_workers(workdir):
    suite = tiny_suite(
        datasets=[{"name": "synthetic", "n_users": 80, "n_items": 30, "days": 30.0}, {"name": "tsv_ratings"}],
        split={"name": "last_fraction", "fraction": 0.2, "min_events": 4},
        tasks=["itemrec", "userrec", "matching"],
        models=[{"name": "item_cooc", "shrink": 1.0}, {"name": "bpr", "loss": "hinge", "factors": 8, "epochs": 2}],
        planners=[{"name": "threshold", "alpha": 0.1, "tau": 0.2}, {"name": "topk", "alpha": 0.1}],
        metrics=["recall", "recall_capped", "ap"], cutoffs=[5], tracking={"tracker": "jsonl", "dir": "runs"})
    frame = api.run(suite, registry=Registry.load(), jobs=2)
    assert len(frame) == 4 and (frame.status == "FINISHED").all(), frame[["run_name", "status", "error"]]
    assert set(frame["params.loss"]) == {"none", "hinge"}
    for col in ("itemrec/ap_5", "itemrec/recall_5", "userrec/ap_5", "matching/threshold/recall"):
        assert frame[f"metrics.{col}"].between(0, 1).all(), col
    # per query AP@k <= found / min(relevant, k) (every precision is at most 1), so the means keep the order
    assert (frame["metrics.itemrec/ap_5"] <= frame["metrics.itemrec/recall_capped_5"] + 1e-9).all()
    assert (frame["metrics.itemrec/ap_5"] > 0).all()
    # the example tracker stored them: a second run resumes (nothing left to do) and reads them back
    assert api.run(suite, jobs=2).empty
    stored = api.plugin("tracker", "jsonl", dir="runs").runs("tiny")
    assert sorted(stored.config_hash) == sorted(frame.config_hash) and (stored.status == "FINISHED").all()


class InCodePlugins:
    """Plugins registered in code (a notebook's way), not through an entry point: a model and a metric."""

    @hookimpl
    def register_models(self, register):
        register(ModelSpec(name="in_code_pop", factory=InCodePop, description="log item popularity (test)"))

    @hookimpl
    def register_metrics(self, register):
        register(MetricSpec(name="in_code_found", factory=lambda: found, description="relevant in top-k (test)"))


class InCodePop(Model):
    def fit(self, train, loss, ctx):
        self.item = torch.log1p(torch.as_tensor(train.item_counts, dtype=torch.float32))[:, None]

    def factors(self, states):
        return torch.ones(len(states), 1), self.item


def found(hits, n_rel, k):
    return hits[:, :k].sum(1)


def test_a_plugin_registered_in_code_runs_in_the_workers(workdir):
    registry = Registry.load(extra=[InCodePlugins()])
    suite = tiny_suite(models=[{"name": "in_code_pop"}, {"name": "item_pop"}], tasks=["itemrec"],
                       metrics=["recall", "in_code_found"], cutoffs=[5])
    frame = api.run(suite, registry=registry, jobs=2)
    assert len(frame) == 2 and (frame.status == "FINISHED").all(), frame[["run_name", "status", "error"]]
    assert (frame["metrics.itemrec/in_code_found_5"] >= 0).all()
    ours = frame[frame["params.model"] == "in_code_pop"]
    assert np.isfinite(ours["metrics.itemrec/recall_5"]).all()
