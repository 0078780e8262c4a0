"""Suites end to end: MLflow records, artifacts, failures, resume, parallel workers, block-size invariance."""
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_suite

from harness import api, hookimpl
from harness.evaluate import ScoreSource, evaluate_full
from harness.model import FitContext, Model
from harness.registry import Registry
from harness.runner import make_tracker
from harness.specs import ModelSpec
from harness.suite import build_suite


class Broken(Model):
    def fit(self, train, loss, ctx):
        raise RuntimeError("this model always fails")


class BrokenPlugin:
    @hookimpl
    def register_models(self, register):
        register(ModelSpec(name="broken", factory=Broken, description="fails in fit"))


def test_suite_runs_end_to_end_and_lands_in_mlflow(workdir):
    reg = Registry.load(extra=[BrokenPlugin()])
    suite = tiny_suite(models=tiny_suite()["models"] + [{"name": "broken"}])
    frame = api.run(suite, registry=reg)
    assert set(frame.status) == {"FINISHED", "FAILED"}
    failed = frame[frame.status == "FAILED"]
    assert len(failed) == 1 and "this model always fails" in failed.error.iloc[0]
    ok = frame[frame.status == "FINISHED"]
    for col in ["metrics.itemrec/ndcg_10", "metrics.userrec/recall_5", "metrics.itemrec/popularity_10",
                "metrics.userrec/activeness_5", "metrics.itemrec/n_without_target"]:
        assert col in ok and ok[col].notna().all(), col

    tracker = make_tracker(reg, build_suite(suite, reg))
    runs = tracker.runs("tiny")
    assert len(runs) == 4
    assert set(runs.status) == {"FINISHED", "FAILED"}
    bpr = runs[runs["params.model"] == "bpr"].iloc[0]
    assert bpr["params.model.factors"] == "8" and bpr["params.seed"] == "0"
    assert "bpr" in bpr.run_name and "synthetic" in bpr.run_name and "seed 0" in bpr.run_name
    rankings = pd.read_parquet(tracker.artifact(bpr.run_id, "rankings.parquet"))
    assert list(rankings.columns[:6]) == ["task", "query", "state", "rank", "candidate", "score"]
    assert set(rankings.task) == {"itemrec", "userrec"}
    targets = pd.read_parquet(tracker.artifact(bpr.run_id, "targets.parquet"))
    assert {"task", "query", "target"} <= set(targets.columns)
    assert tracker.curve(bpr.run_id, "train/loss")


def test_resume_skips_finished_cells_and_rerun_redoes_them(workdir):
    reg = Registry.load()
    suite = tiny_suite(models=[{"name": "item_pop"}, {"name": "user_pop"}])
    assert len(api.run(suite, registry=reg)) == 2
    assert len(api.run(suite, registry=reg)) == 0          # resumed: nothing left
    assert len(api.run(suite, registry=reg, rerun=True)) == 2


def test_four_parallel_workers_lose_nothing(workdir):
    suite = tiny_suite(models=[{"name": "item_pop"}, {"name": "user_pop"}], seeds=[0, 1, 2, 3])
    frame = api.run(suite, jobs=4)
    assert len(frame) == 8 and (frame.status == "FINISHED").all()
    reg = Registry.load()
    runs = make_tracker(reg, build_suite(suite, reg)).runs("tiny")
    assert len(runs) == 8 and runs["metrics.itemrec/ndcg_10"].notna().all()


def test_metrics_do_not_depend_on_block_size():
    reg = Registry.load()
    ds = reg.create("dataset", "synthetic", n_users=150, n_items=60, days=30.0)
    split = reg.create("split", "temporal", horizon=7).split(ds, 0)
    model = reg.create("model", "bpr", factors=8, epochs=2)
    model.fit(split.train, reg.create("loss", "bpr"), FitContext(seed=0, device=torch.device("cpu")))
    metrics = {m: reg.get("metric", m) for m in ["recall", "ndcg", "mrr", "coverage", "popularity"]}
    src = ScoreSource(model, split.test, split.n_items, torch.device("cpu"))
    pop = split.train.item_counts
    for task in ("itemrec",):
        ref = evaluate_full(task, src, split.test, [5, 10], metrics, pop).metrics
        for block in (1, 3, 17):
            assert evaluate_full(task, src, split.test, [5, 10], metrics, pop, block_size=block).metrics == ref
    metrics.pop("popularity")
    ref = evaluate_full("userrec", src, split.test, [5, 10], metrics, pop).metrics
    assert evaluate_full("userrec", src, split.test, [5, 10], metrics, pop, block_size=2).metrics == ref


@pytest.mark.parametrize("name", Registry.load().names("model"))
def test_every_registered_model_fits_and_ranks_on_the_tiny_world(name):
    """Conformance over the registry (third-party models included)."""
    reg = Registry.load()
    spec = reg.get("model", name)
    ds = reg.create("dataset", "synthetic", n_users=80, n_items=30, days=30.0)
    split = reg.create("split", "temporal", horizon=7, calibration=7).split(ds, 0)  # calibrated priors need one
    if "ctr" in spec.tasks:  # ctr models train on impressions
        ds = reg.create("dataset", "synthetic", n_users=80, n_items=30, days=30.0, impressions=True)
        split = reg.create("split", "impressions", test_days=5).split(ds, 0)
    if "funnel" in spec.requires:  # UMA²'s models train on the funnel's spaces
        ds = reg.create("dataset", "synthetic", n_users=80, n_items=30, days=30.0, funnel=True, recall_size=8)
        split = reg.create("split", "funnel", test_days=7).split(ds, 0)
    params = {"epochs": 1} if "epochs" in spec.schema.names() else {}
    model = reg.create("model", name, **params)
    loss = reg.create("loss", spec.default_loss) if spec.default_loss else None
    model.fit(split.train, loss, FitContext.for_split(split, ds, seed=0, device=torch.device("cpu")))
    if "ctr" in spec.tasks:
        from harness.ctr import predict

        assert predict(model, split.test_impressions).shape == (len(split.test_impressions),)
    src = ScoreSource(model, split.test, split.n_items, torch.device("cpu"))
    metrics = {"ndcg": reg.get("metric", "ndcg")}
    for task in set(spec.tasks) & {"itemrec", "userrec"}:
        res = evaluate_full(task, src, split.test, [5], metrics, split.train.item_counts)
        assert np.isfinite(res.metrics["ndcg_5"])
        assert res.topk.index.shape[1] == 5
