"""`matchbench server` (issue 17, item 3): an MLflow tracking server on 127.0.0.1 that `run`, `report`, `results`
and `ui` use exactly as the SQLite file store, stopped with its whole process group by SIGTERM; bad options are
one error (exit 2) before anything starts."""
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_suite
from processes import alive, descendants

from harness.cli import main
from harness.server import ServerConfig, free_port
from plugins.trackers.mlflow_tracker import MlflowTracker

pytest.importorskip("mlflow")
needs_uvicorn = pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None, reason="MLflow's server needs uvicorn")
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the processes")
START_TIMEOUT_S = 180  # MLflow's server takes 15-25 s to start on two busy cores


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_cli_server(tmp_path: Path, port: int, *extra: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "server", "--port", str(port), "--workers", "1",
                             *extra], cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None and "ready" not in log.read_text():
        time.sleep(0.25)
    text = log.read_text()
    assert proc.poll() is None, f"`matchbench server` ended: {text[-3000:]}"
    assert "matchbench server: ready" in text, f"not ready within {START_TIMEOUT_S} s: {text[-3000:]}"
    return proc, log


def stop(proc: subprocess.Popen, procs: set[tuple[int, str]]) -> None:
    if proc.poll() is None:
        proc.kill()
    for pid in alive(procs | descendants(proc.pid)):
        os.kill(pid, signal.SIGKILL)


@needs_uvicorn
@needs_proc
def test_run_report_results_ui_against_the_server_then_sigterm_stops_it(workdir, capsys):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    suite = workdir / "tiny.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite(
        models=[{"name": "item_pop"}, {"name": "user_pop"}, {"name": "bpr", "factors": 8, "epochs": 1}],
        tasks=["itemrec"], metrics=["recall", "ndcg"], cutoffs=[5], save_rankings=True,
        report={"enabled": True, "dir": "reports"})))
    proc, log = start_cli_server(workdir, port, "--backend-store-uri", "sqlite:///srv/mlruns.db")
    server: set[tuple[int, str]] = set()
    try:
        server = descendants(proc.pid)
        assert server, "the MLflow server runs as a child of `matchbench server`"
        text = log.read_text()
        assert f"--tracking-uri {uri}" in text and str(workdir / "srv" / "mlartifacts") in text
        assert (workdir / "srv" / "mlruns.db").exists()
        import sqlite3

        with sqlite3.connect(workdir / "srv" / "mlruns.db") as con:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

        assert main(["run", str(suite), "--tracking-uri", uri]) == 0
        out = capsys.readouterr()
        assert "3 finished, 0 failed" in out.err and (workdir / "reports" / "tiny.md").exists()
        runs = MlflowTracker(uri).runs("tiny")
        assert len(runs) == 3 and set(runs.status) == {"FINISHED"}
        assert all(u.startswith("mlflow-artifacts:") for u in
                   (MlflowTracker(uri).client.get_run(r).info.artifact_uri for r in runs.run_id))
        assert list((workdir / "srv" / "mlartifacts").rglob("per_query.parquet"))  # kept by the server
        assert main(["results", str(suite), "--format", "json", "--tracking-uri", uri]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert {r["method"] for r in rows} == {"item_pop", "user_pop", "bpr"}
        (workdir / "reports" / "tiny.md").unlink()
        assert main(["report", str(suite), "--tracking-uri", uri]) == 0
        md = (workdir / "reports" / "tiny.md").read_text()
        assert "3 cells: 3 FINISHED" in md and "§" in md  # per-query tests read artifacts through the server
        assert main(["ui", "--tracking-uri", uri]) == 0
        assert uri in capsys.readouterr().out
        assert main(["run", str(suite), "--tracking-uri", uri, "--no-report"]) == 0  # resumes: nothing to redo
        assert "3 already finished" in capsys.readouterr().err

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "matchbench server: stopped" in log.read_text()
        assert alive(server) == [] and not listening(port)
    finally:
        stop(proc, server)
    assert main(["ui", "--tracking-uri", uri]) == 2  # no server: one error naming how to start it
    assert "matchbench server --port" in capsys.readouterr().err


def test_bad_server_options_are_one_error_before_anything_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    assert main(["server", "--port", str(free_port()), "--artifacts-destination", "afile/art"]) == 2
    err = capsys.readouterr().err
    assert "--artifacts-destination" in err and "afile" in err and "Traceback" not in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["server", "--port", str(port)]) == 2
        assert f"--port {port}" in capsys.readouterr().err
    assert main(["server", "--backend-store-uri", "sqlite:///afile/x.db"]) == 2
    assert "--backend-store-uri" in capsys.readouterr().err
    assert main(["server", "--backend-store-uri", "mongodb://x"]) == 2
    assert "postgresql://" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("psycopg") else real(name, *a))
    assert main(["server", "--backend-store-uri", "postgresql://u@127.0.0.1:1/db"]) == 2
    assert "matchbench[server]" in capsys.readouterr().err
    assert not (tmp_path / "mlruns.db").exists()


def test_server_config_resolves_paths_and_ports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = ServerConfig(port=0, backend_store_uri="sqlite:///sub/m.db").resolved()
    assert cfg.backend_store_uri == f"sqlite:///{tmp_path / 'sub' / 'm.db'}"
    assert cfg.artifacts_destination == str(tmp_path / "sub" / "mlartifacts") and cfg.port > 0
    cmd = cfg.command()
    assert cmd[1:4] == ["-m", "mlflow", "server"] and "--serve-artifacts" in cmd
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    pg = ServerConfig(backend_store_uri="postgresql://u@127.0.0.1:5432/db").resolved()
    assert pg.backend_store_uri == "postgresql://u@127.0.0.1:5432/db"
    assert pg.artifacts_destination == str(tmp_path / "mlartifacts")
