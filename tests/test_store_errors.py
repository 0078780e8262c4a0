"""A tracking store or artifact root that cannot be written: one clear error naming the path (exit 2, no
traceback), the cells already FINISHED kept, and the same command run again resumes (issue 17, item 6)."""
import errno
import os

import pytest
import yaml
from conftest import tiny_suite

from harness.cli import main
from plugins.trackers.mlflow_tracker import MlflowTracker, TrackingStoreError, _storage_problem

pytest.importorskip("mlflow")

MODELS = [{"name": "item_pop"}, {"name": "user_pop"}, {"name": "bpr", "factors": 8, "epochs": 1}]


def _suite(workdir):
    path = workdir / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_suite(models=MODELS, tasks=["itemrec"], metrics=["recall"], cutoffs=[5])))
    return path


def _cell_runs(workdir):
    """(config hash, matchbench status, MLflow status, tags) of every cell run in the store, duplicates kept."""
    tr = MlflowTracker(f"sqlite:///{workdir / 'mlruns.db'}")
    return [(r.data.tags.get("matchbench.config_hash"), r.data.tags.get("matchbench.status"), r.info.status,
             r.data.tags) for r in tr._search("tiny", "tags.`matchbench.kind` = 'cell'")]


def _one_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("matchbench: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_full_disk_while_logging_artifacts_keeps_finished_cells_and_resumes(workdir, monkeypatch, capsys):
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    suite = _suite(workdir)
    recorded = []
    original = MlflowTracker.cell_finished

    def counting(self, record):
        original(self, record)
        recorded.append(record.config_hash)

    def full(*_args, **_kwargs):
        if recorded:  # the first cell is stored whole; the disk fills up while the second one logs its artifacts
            raise OSError(errno.ENOSPC, "No space left on device")
        return None

    with monkeypatch.context() as m:
        for name in ("log_artifact", "log_artifacts"):
            real = getattr(LocalArtifactRepository, name)
            m.setattr(LocalArtifactRepository, name, lambda self, *a, _real=real, **k: full() or _real(self, *a, **k))
        m.setattr(MlflowTracker, "cell_finished", counting)
        assert main(["run", str(suite), "--no-report"]) == 2
    line = _one_error(capsys.readouterr().err)
    assert "No space left on device" in line and str(workdir / "mlartifacts" / "tiny") in line
    assert "run the same command again to resume" in line
    runs = _cell_runs(workdir)
    finished = [h for h, status, run_status, _ in runs if status == "FINISHED" and run_status == "FINISHED"]
    assert finished == recorded and len(finished) == 1
    broken = [tags for _, _, run_status, tags in runs if run_status == "FAILED"]
    assert len(broken) == 1 and "No space left" in broken[0]["matchbench.tracking_error"]  # closed, not RUNNING
    assert all(run_status != "RUNNING" for _, _, run_status, _ in runs)

    # space freed: the same command resumes, the FINISHED cell is not run again
    assert main(["run", str(suite), "--no-report"]) == 0
    assert "1 already finished" in capsys.readouterr().err
    runs = _cell_runs(workdir)
    finished = [h for h, status, run_status, _ in runs if status == "FINISHED" and run_status == "FINISHED"]
    assert len(finished) == len(set(finished)) == len(MODELS)  # every cell once, none duplicated


def test_artifact_root_that_is_a_file_stops_before_any_cell(workdir, capsys):
    suite = _suite(workdir)
    (workdir / "mlartifacts").write_text("not a folder")
    assert main(["run", str(suite), "--no-report"]) == 2
    line = _one_error(capsys.readouterr().err)
    assert str(workdir / "mlartifacts") in line and "artifact root" in line
    assert _cell_runs(workdir) == []  # nothing ran
    (workdir / "mlartifacts").unlink()
    assert main(["run", str(suite), "--no-report"]) == 0
    assert len(_cell_runs(workdir)) == len(MODELS)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders")
def test_unwritable_artifact_folder_names_it(workdir, capsys):
    suite = _suite(workdir)
    art = workdir / "mlartifacts"
    art.mkdir()
    art.chmod(0o555)
    try:
        assert main(["run", str(suite), "--no-report"]) == 2
        line = _one_error(capsys.readouterr().err)
        assert str(art) in line and "Permission denied" in line
    finally:
        art.chmod(0o755)


def test_read_only_store_is_one_error_naming_it(tmp_path, monkeypatch):
    """A database opened read-only (SQLite's own mode=ro: what a read-only file gives, also as root)."""
    monkeypatch.chdir(tmp_path)  # MLflow makes the "parent folder" of a file: name relative to the cwd
    db = tmp_path / "mlruns.db"
    MlflowTracker(f"sqlite:///{db}").client.search_experiments()  # the schema, in a writable store
    uri = f"sqlite:///file:{db}?mode=ro&uri=true"
    tr = MlflowTracker(uri)
    with pytest.raises(TrackingStoreError) as e:
        tr.suite_started("tiny", {}, 3)
    assert "read-only" in str(e.value) and str(db) in str(e.value) and "resume" in str(e.value)
    tr.suite_finished("FAILED")  # the runner's finally: does not mask the error with another one


def test_storage_problems_are_recognised_and_not_retried():
    from plugins.trackers.mlflow_tracker import _retryable

    assert _storage_problem(OSError(errno.ENOSPC, "No space left on device")).startswith("No space left")
    wrapped = RuntimeError("(sqlite3.OperationalError) database or disk is full")
    assert _storage_problem(wrapped) and not _retryable(wrapped)
    try:
        try:
            raise PermissionError(errno.EACCES, "Permission denied", "/srv/mlartifacts/1")
        except OSError as inner:
            raise RuntimeError("API request failed") from inner
    except RuntimeError as outer:
        assert "/srv/mlartifacts/1" in _storage_problem(outer)
    assert _storage_problem(RuntimeError("(sqlite3.OperationalError) database is locked")) is None
    assert _retryable(RuntimeError("(sqlite3.OperationalError) database is locked"))


@pytest.mark.slow
def test_artifact_store_failing_on_the_server_is_one_error(workdir, monkeypatch, capsys):
    """The server's --artifacts-destination cannot take the upload (a file where the experiment's folder goes):
    MLflow's server answers 500 without the cause, so the error names the server's artifact store and its log."""
    from harness.server import Server, ServerConfig, free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's default retries a 500 for ~4 minutes
    suite = _suite(workdir)
    art = workdir / "srv" / "mlartifacts"
    art.mkdir(parents=True)
    (art / "1").write_text("a file where the first experiment's folder goes")
    cfg = ServerConfig(port=free_port(), backend_store_uri=f"sqlite:///{workdir / 'srv' / 'mlruns.db'}",
                       artifacts_destination=str(art), workers=1)
    with Server(cfg, log=workdir / "server.log") as uri:
        assert main(["run", str(suite), "--tracking-uri", uri, "--no-report"]) == 2
        line = _one_error(capsys.readouterr().err)
        assert uri in line and "--artifacts-destination" in line and "500" in line
        assert MlflowTracker(uri).finished_hashes("tiny") == set()  # it stopped before any cell ran
