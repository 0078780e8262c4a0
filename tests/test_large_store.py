"""Past MLflow's 1,000-run page: `results` and the report count every run of an experiment with 1,200 runs
(issue 17, item 5). The tracker follows search_runs' page token; a single call would stop at 1,000.

The store is built directly through MLflow's SQL models in one transaction (about a second; logging 1,200 runs
through the client takes a minute on two cores): what is under test is the read path, the public client's paged
search. The `slow` variant builds it through the client against a tracking server (the REST pagination)."""
import json
import time
import uuid

import pytest
import yaml
from conftest import tiny_suite

from harness import api
from harness.cli import main
from plugins.trackers.mlflow_tracker import PAGE, MlflowTracker

pytest.importorskip("mlflow")

N_RUNS = 1200


def big_suite(path):
    raw = tiny_suite(name="big", models=[{"name": "item_pop"}], tasks=["itemrec"], metrics=["recall"], cutoffs=[5],
                     seeds=list(range(N_RUNS)), report={"enabled": True, "dir": "reports"})
    path.write_text(yaml.safe_dump(raw))
    return path


def value(seed: int) -> float:
    return seed / N_RUNS


def params(cell) -> dict[str, str]:
    return {"model": cell.model.name, "dataset": "synthetic", "seed": str(cell.seed)}


def build_sqlite_store(uri: str, suite) -> None:
    """One FINISHED cell run per cell of `suite` (recall_5 = seed / N_RUNS), inserted table by table in one
    transaction."""
    import sqlalchemy
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag

    tr = MlflowTracker(uri)
    exp_id = tr._ensure_experiment(suite.name)
    root = tr.client.get_experiment(exp_id).artifact_location
    now = int(time.time() * 1000)
    rows: dict = {SqlRun: [], SqlTag: [], SqlParam: [], SqlMetric: [], SqlLatestMetric: []}
    for i, cell in enumerate(suite.cells):
        rid = uuid.uuid4().hex
        rows[SqlRun].append(dict(run_uuid=rid, name=cell.run_name, source_type="LOCAL", source_name="",
                                 entry_point_name="", user_id="test", status="FINISHED", start_time=now + i,
                                 end_time=now + i + 5, deleted_time=None, source_version="", lifecycle_stage="active",
                                 artifact_uri=f"{root}/{rid}/artifacts", experiment_id=int(exp_id)))
        tags = {"matchbench.kind": "cell", "matchbench.suite": suite.name, "matchbench.status": "FINISHED",
                "matchbench.config_hash": cell.config_hash, "mlflow.runName": cell.run_name}
        rows[SqlTag] += [dict(key=k, value=v, run_uuid=rid) for k, v in tags.items()]
        rows[SqlParam] += [dict(key=k, value=v, run_uuid=rid) for k, v in params(cell).items()]
        for key, val in (("itemrec/recall_5", value(i)), ("wall_time_s", 0.005)):
            metric = dict(key=key, value=val, timestamp=now, step=0, is_nan=False, run_uuid=rid)
            rows[SqlMetric].append(metric)
            rows[SqlLatestMetric].append(metric)
    engine = sqlalchemy.create_engine(uri)
    with engine.begin() as conn:
        for model, values in rows.items():
            conn.execute(sqlalchemy.insert(model.__table__), values)
    engine.dispose()
    runs = tr.client.search_runs([exp_id], max_results=PAGE)
    assert len(runs) == PAGE and runs.token  # one page does not hold them all


def check_counts(suite_path, uri, capsys):
    s = api.suite(suite_path)
    assert len(s.cells) == N_RUNS > PAGE
    assert [cell for cell in s.cells if cell.seed is None] == []
    capsys.readouterr()  # what building the store printed
    assert main(["results", str(suite_path), "--format", "json", "--tracking-uri", uri]) == 0
    rows = json.loads(capsys.readouterr().out)
    recall = [r for r in rows if r["metric"] == "recall_5"]
    assert len(recall) == 1 and recall[0]["n_seeds"] == N_RUNS
    assert recall[0]["mean"] == pytest.approx(sum(value(i) for i in range(N_RUNS)) / N_RUNS)
    assert main(["report", str(suite_path), "--tracking-uri", uri]) == 0
    md = (suite_path.parent / "reports" / "big.md").read_text()
    assert f"{N_RUNS} cells: {N_RUNS} FINISHED" in md
    assert len(MlflowTracker(uri).finished_hashes("big")) == N_RUNS  # what a resume skips


def test_results_and_report_count_every_one_of_1200_runs(workdir, capsys):
    suite_path = big_suite(workdir / "big.yaml")
    uri = f"sqlite:///{workdir / 'mlruns.db'}"
    build_sqlite_store(uri, api.suite(suite_path))
    check_counts(suite_path, uri, capsys)


@pytest.mark.slow
def test_1200_runs_logged_through_a_server_are_all_counted(workdir, capsys):
    """The same through `matchbench server`: 1,200 runs logged with the client's log_batch, read back in pages
    over REST (about two minutes on two cores)."""
    from mlflow.entities import Metric, Param

    from harness.server import Server, ServerConfig, free_port

    suite_path = big_suite(workdir / "big.yaml")
    s = api.suite(suite_path)
    cfg = ServerConfig(port=free_port(), backend_store_uri=f"sqlite:///{workdir / 'srv' / 'mlruns.db'}",
                       artifacts_destination=str(workdir / "srv" / "mlartifacts"), workers=2)
    with Server(cfg, log=workdir / "server.log") as uri:
        tr = MlflowTracker(uri)
        exp_id = tr._ensure_experiment("big")
        for i, cell in enumerate(s.cells):
            run = tr.client.create_run(exp_id, run_name=cell.run_name, tags={
                "matchbench.kind": "cell", "matchbench.suite": "big", "matchbench.status": "FINISHED",
                "matchbench.config_hash": cell.config_hash})
            tr.client.log_batch(run.info.run_id, metrics=[Metric("itemrec/recall_5", value(i), 0, 0)],
                                params=[Param(k, v) for k, v in params(cell).items()])
            tr.client.set_terminated(run.info.run_id, "FINISHED")
        check_counts(suite_path, uri, capsys)
