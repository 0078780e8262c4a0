"""The MLflow tracker plugin: round trip of every cell status, resume hashes, the runs frame, and
several processes writing to one SQLite store at once."""
import multiprocessing as mp
import time

import pandas as pd
import pytest

from harness.tracking import CellRecord
from plugins.trackers.mlflow_tracker import MlflowTracker, _absolute_sqlite, retry  # imports mlflow lazily

pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the whole module (creating one runs MLflow's migrations: slow)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    MlflowTracker(uri).client.search_experiments()  # create the tables once, in this process
    return root, uri


def record(suite, h, status, seed=0, **kw):
    t = time.time()
    base = dict(suite=suite, config_hash=h, run_name=f"cell {h}", status=status,
                params={"model": "bpr", "dataset": "synthetic", "seed": seed, "model.factors": 8,
                        "model.long": "x" * 7000},
                start_time=t - 2.0, end_time=t)
    base.update(kw)
    return CellRecord(**base)


@pytest.fixture(scope="module")
def roundtrip(store, tmp_path_factory):
    root, uri = store
    art = tmp_path_factory.mktemp("art") / "per_query.parquet"
    pd.DataFrame({"task": ["itemrec"] * 2, "metric": ["ndcg_10"] * 2, "query": [1, 2], "value": [0.1, 0.3]}
                 ).to_parquet(art)
    tr = MlflowTracker(uri)
    tr.suite_started("rt", {"name": "rt", "seeds": [0, 1]}, 3)
    ok = record("rt", "h-ok", "FINISHED", metrics={"itemrec/ndcg_10": 0.25, "itemrec/recall_5": float("nan")},
                curves={"train/loss": [(0, 1.0), (1, 0.6), (2, 0.4)]},
                artifacts={"per_query.parquet": art, "sub/renamed.parquet": art},
                tags={"matchbench.method": "bpr"})
    failed = record("rt", "h-fail", "FAILED", error="Traceback (most recent call last):\nRuntimeError: boom\n" * 40)
    skipped = record("rt", "h-skip", "SKIPPED", reason="loss bce not accepted by item_pop")
    for r in (ok, failed, skipped):
        tr.cell_finished(r)
    tr.suite_finished("FINISHED")
    return tr


def test_uri_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _absolute_sqlite("sqlite:///mlruns.db") == f"sqlite:///{tmp_path.resolve() / 'mlruns.db'}"
    assert _absolute_sqlite("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_retry_backs_off_on_locked_then_succeeds():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert retry(flaky, base=0.001) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):
        retry(lambda: (_ for _ in ()).throw(ValueError("not transient")))


def test_finished_hashes_only_finished(roundtrip):
    assert roundtrip.finished_hashes("rt") == {"h-ok"}
    assert roundtrip.finished_hashes("no-such-suite") == set()


def test_runs_frame_shape_and_nesting(roundtrip, store):
    runs = roundtrip.runs("rt")
    assert len(runs) == 3  # the parent run is excluded
    for col in ["run_id", "run_name", "status", "config_hash", "wall_time", "reason", "error", "start_time",
                "params.model", "params.model.factors", "metrics.itemrec/ndcg_10", "metrics.wall_time_s",
                "tags.matchbench.status", "tags.mlflow.parentRunId", "tags.matchbench.method"]:
        assert col in runs, col
    by = runs.set_index("config_hash")
    assert dict(by.status) == {"h-ok": "FINISHED", "h-fail": "FAILED", "h-skip": "SKIPPED"}
    assert by.loc["h-ok", "metrics.itemrec/ndcg_10"] == pytest.approx(0.25)
    assert pd.isna(by.loc["h-ok", "metrics.itemrec/recall_5"])  # NaN kept
    assert by.loc["h-ok", "params.model.factors"] == "8"
    assert len(by.loc["h-ok", "params.model.long"]) == 6000  # truncated to MLflow's limit
    assert by.loc["h-ok", "wall_time"] == pytest.approx(2.0, abs=0.01)
    assert by.loc["h-skip", "reason"] == "loss bce not accepted by item_pop"
    assert by.loc["h-fail", "error"].startswith("Traceback") and len(by.loc["h-fail", "error"]) == 500
    assert by.loc["h-ok", "run_status"] == "FINISHED" and by.loc["h-skip", "run_status"] == "FINISHED"
    assert by.loc["h-fail", "run_status"] == "FAILED"
    parent_ids = set(runs["tags.mlflow.parentRunId"])
    assert len(parent_ids) == 1
    parent = roundtrip.client.get_run(parent_ids.pop())
    assert parent.data.tags["matchbench.kind"] == "parent" and parent.info.status == "FINISHED"
    assert parent.data.params["n_cells"] == "3" and parent.info.run_name.startswith("rt ")
    # artifacts of a SQLite store live beside the database file
    root, _ = store
    assert parent.info.artifact_uri.startswith((root / "mlartifacts").resolve().as_uri())
    suite_yaml = roundtrip.artifact(parent.info.run_id, "suite.yaml")
    assert suite_yaml is not None and "seeds" in suite_yaml.read_text()


def test_curve_and_artifacts(roundtrip):
    by = roundtrip.runs("rt").set_index("config_hash")
    ok, failed = by.loc["h-ok", "run_id"], by.loc["h-fail", "run_id"]
    assert roundtrip.curve(ok, "train/loss") == [(0, 1.0), (1, 0.6), (2, 0.4)]
    pq = pd.read_parquet(roundtrip.artifact(ok, "per_query.parquet"))
    assert list(pq.columns) == ["task", "metric", "query", "value"] and len(pq) == 2
    assert roundtrip.artifact(ok, "sub/renamed.parquet") is not None
    assert roundtrip.artifact(ok, "missing.txt") is None
    err = roundtrip.artifact(failed, "error.txt")
    assert err is not None and "RuntimeError: boom" in err.read_text()


def test_latest_run_per_hash_wins(store):
    _, uri = store
    tr = MlflowTracker(uri)
    tr.suite_started("latest", {}, 2)
    tr.cell_finished(record("latest", "h", "FAILED", error="first try failed", start_time=100.0, end_time=101.0))
    tr.cell_finished(record("latest", "h", "FINISHED", metrics={"itemrec/ndcg_10": 0.5}))
    tr.suite_finished()
    runs = tr.runs("latest")
    assert len(runs) == 1 and runs.status.iloc[0] == "FINISHED"
    assert tr.finished_hashes("latest") == {"h"}


def test_shared_experiment_keeps_suites_apart(store):
    _, uri = store
    for suite in ("a", "b"):
        tr = MlflowTracker(uri, experiment="shared")
        tr.suite_started(suite, {}, 1)
        tr.cell_finished(record(suite, f"{suite}-1", "FINISHED"))
        tr.suite_finished()
    assert set(tr.runs("a").config_hash) == {"a-1"} and tr.finished_hashes("b") == {"b-1"}


def _worker(uri, wid, n, barrier):
    tr = MlflowTracker(uri)
    barrier.wait()
    tr.suite_started("conc", {"worker": wid}, n)
    for i in range(n):
        tr.cell_finished(record("conc", f"w{wid}-{i}", "FINISHED", seed=i,
                                metrics={"itemrec/ndcg_10": wid + i / 100, "itemrec/recall_10": 1.0},
                                curves={"train/loss": [(s, 1.0 / (s + 1)) for s in range(5)]}))
    tr.suite_finished()


def test_concurrent_writers_lose_nothing(store):
    _, uri = store
    ctx = mp.get_context("spawn")
    n_proc, n = 4, 10
    barrier = ctx.Barrier(n_proc)
    procs = [ctx.Process(target=_worker, args=(uri, w, n, barrier)) for w in range(n_proc)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * n_proc
    tr = MlflowTracker(uri)
    runs = tr.runs("conc")
    assert len(runs) == n_proc * n
    assert set(runs.config_hash) == {f"w{w}-{i}" for w in range(n_proc) for i in range(n)}
    assert runs["metrics.itemrec/recall_10"].eq(1.0).all()
    expect = {f"w{w}-{i}": w + i / 100 for w in range(n_proc) for i in range(n)}
    got = dict(zip(runs.config_hash, runs["metrics.itemrec/ndcg_10"], strict=False))
    assert got == pytest.approx(expect)
    assert runs["tags.mlflow.parentRunId"].nunique() == n_proc
    assert len(tr.finished_hashes("conc")) == n_proc * n
    assert len(tr.curve(runs.run_id.iloc[0], "train/loss")) == 5
