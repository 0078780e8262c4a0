"""Eight `matchbench run` processes started at once on one store lose nothing and fail nothing (issue 17, item 4):
a fresh SQLite file (WAL, MLflow's busy timeout, the schema created once under a file lock), `matchbench server`
on SQLite, and `matchbench server` on a real PostgreSQL that the test starts on 127.0.0.1. Four processes run four
different suites, four run the same suite: each records the cells it found unfinished when it started (all of them
when they start together; a late starter resumes), and every record each process reports is in the store.

Plain MLflow on a fresh SQLite file loses this race: clients opened at once run the migrations together and some
fail ("duplicate column name", "Online migration expected to match one row"); `test_schema_race` is that case.
"""
import getpass
import glob
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_suite

from harness.server import Server, ServerConfig, free_port
from plugins.trackers.mlflow_tracker import MlflowTracker

pytest.importorskip("mlflow")

N_PROC = 8
RUN_TIMEOUT_S = 900
MODELS = [{"name": "item_pop"}, {"name": "user_pop"}, {"name": "bpr", "factors": 8, "epochs": 3}]
SEEDS = [0, 1]
PG_INSTALL = ("PostgreSQL is not installed: apt-get update && apt-get install -y postgresql (Debian/Ubuntu; the "
              "test runs initdb/pg_ctl from /usr/lib/postgresql/*/bin), and pip install 'matchbench[server]' for "
              "the driver")


AT_ONCE = """
import sys, time
from pathlib import Path
import mlflow, torch  # the slow imports first, so that every process reaches the store at the same moment
from harness.cli import main
import harness.runner, plugins.trackers.mlflow_tracker
barrier, me, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(barrier / me).touch()
deadline = time.monotonic() + 600
while len(list(barrier.iterdir())) < n and time.monotonic() < deadline:
    time.sleep(0.01)
sys.exit(main(sys.argv[4:]))
"""
"""`matchbench run ARGS` (harness.cli.main, as the console script calls it) once every process is ready."""


def write_suites(root: Path) -> list[tuple[str, Path]]:
    """(suite name, path) per process: four different suites, then the same suite four times."""
    out = []
    for i in range(N_PROC):
        name = f"diff{i}" if i < N_PROC // 2 else "same"
        path = root / f"suite{i}.yaml"
        path.write_text(yaml.safe_dump(tiny_suite(name=name, models=MODELS, tasks=["itemrec"], metrics=["recall"],
                                                  cutoffs=[5], seeds=SEEDS, report={"enabled": False})))
        out.append((name, path))
    return out


def run_all_at_once(root: Path, uri: str) -> None:
    """Start N_PROC `matchbench run` processes together on `uri`; each must exit 0, and every record each made
    must be in the store, FINISHED."""
    root.mkdir(parents=True, exist_ok=True)
    suites = write_suites(root)
    env = dict(os.environ, MATCHBENCH_CACHE=str(root / "cache"), OMP_NUM_THREADS="1", COLUMNS="200")
    # build the data once first: this test is about the store, not about eight processes filling a cache
    subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suites[0][1]), "--dry-run"], cwd=root, env=env,
                   check=True, capture_output=True, timeout=RUN_TIMEOUT_S)
    logs = [(root / f"run{i}.log").open("w+") for i in range(N_PROC)]
    (root / "barrier").mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", AT_ONCE, str(root / "barrier"), str(i), str(N_PROC),
                               "run", str(path), "--tracking-uri", uri],
                              cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
             for i, ((_, path), log) in enumerate(zip(suites, logs, strict=True))]
    try:
        codes = [p.wait(timeout=RUN_TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    texts = []
    for log in logs:
        log.seek(0)
        texts.append(log.read())
        log.close()
    assert codes == [0] * N_PROC, "\n\n".join(t[-2500:] for t, c in zip(texts, codes, strict=True) if c)
    n_cells = len(MODELS) * len(SEEDS)
    ran: dict[str, int] = {}  # cells each suite's processes say they recorded (a late starter resumes instead)
    for (name, _), text in zip(suites, texts, strict=True):
        m = re.search(rf"^{name}: (\d+) finished, 0 failed, 0 skipped(?:, (\d+) already finished)?", text, re.M)
        assert m, text[-2500:]
        assert int(m.group(1)) + int(m.group(2) or 0) == n_cells, text[-2500:]
        ran[name] = ran.get(name, 0) + int(m.group(1))
    tr = MlflowTracker(uri)
    for name in {n for n, _ in suites}:
        writers = sum(n == name for n, _ in suites)
        cells = tr._search(name, "tags.`matchbench.kind` = 'cell'")
        assert len(cells) == ran[name], name  # every record of every process
        assert {(r.info.status, r.data.tags["matchbench.status"]) for r in cells} == {("FINISHED", "FINISHED")}
        assert len(tr.finished_hashes(name)) == n_cells
        parents = tr._search(name, "tags.`matchbench.kind` = 'parent'")
        assert len(parents) == writers and {r.info.status for r in parents} == {"FINISHED"}
    spans = [(r.info.start_time, r.info.end_time) for name in {n for n, _ in suites}
             for r in tr._search(name, "tags.`matchbench.kind` = 'parent'")]
    latest = max(start for start, _ in spans)
    overlapping = sum(start <= latest <= end for start, end in spans)
    assert overlapping >= 2, spans  # the processes did write at the same time


def _open_store(uri: str, at: float, out) -> None:
    while time.time() < at:
        time.sleep(0.001)
    try:
        MlflowTracker(uri).client.search_experiments()
        out.put("ok")
    except Exception as exc:  # reported to the test
        out.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_schema_race(tmp_path):
    """Eight trackers opening one fresh SQLite file at the same instant: every one succeeds, the file is WAL."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    at = time.time() + 15  # after every process has imported MLflow
    procs = [ctx.Process(target=_open_store, args=(uri, at, out)) for _ in range(N_PROC)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert sorted(out.get(timeout=5) for _ in procs) == ["ok"] * N_PROC
    import sqlite3

    with sqlite3.connect(tmp_path / "mlruns.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.slow
def test_eight_runs_at_once_on_one_sqlite_file(tmp_path):
    run_all_at_once(tmp_path, f"sqlite:///{tmp_path / 'mlruns.db'}")  # a fresh file: the schema race too


@pytest.mark.slow
def test_eight_runs_at_once_on_the_server(tmp_path):
    cfg = ServerConfig(port=free_port(), backend_store_uri=f"sqlite:///{tmp_path / 'srv' / 'mlruns.db'}",
                       artifacts_destination=str(tmp_path / "srv" / "mlartifacts"), workers=2)
    with Server(cfg, log=tmp_path / "server.log") as uri:
        run_all_at_once(tmp_path, uri)


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1:port in `root`, run as a non-root user (initdb refuses root)."""

    def __init__(self, root: Path, port: int):
        self.bin, self.root, self.port = _pg_bin(), root, port
        self.data = root / "pgdata"
        self.user = "postgres" if os.geteuid() == 0 else getpass.getuser()

    def _run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        full = list(cmd)
        if os.geteuid() == 0:  # drop to the postgres user
            full = ["setpriv", "--reuid", self.user, "--regid", self.user, "--init-groups", "--", *full]
        return subprocess.run(full, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def start(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, self.user, self.user)
        init = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "mlflow", "--auth=trust", "-E", "UTF8")
        assert init.returncode == 0, init.stderr
        opts = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root}"
        started = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                            str(self.root / "pg.log"), "-w", "-t", "60", "start")
        assert started.returncode == 0, started.stderr + (self.root / "pg.log").read_text()[-2000:]
        made = self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "mlflow",
                         "mlflow")
        assert made.returncode == 0, made.stderr
        return f"postgresql://mlflow@127.0.0.1:{self.port}/mlflow"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")


@pytest.mark.slow
def test_eight_runs_at_once_on_the_server_backed_by_postgresql(tmp_path):
    if _pg_bin() is None:
        pytest.skip(PG_INSTALL)
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        pytest.skip("the PostgreSQL driver is missing: pip install 'matchbench[server]' (psycopg)")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root needs setpriv (util-linux) to start PostgreSQL as the postgres user")
    import tempfile

    # under /tmp, not pytest's root-only folder: the postgres user must reach its data directory
    pg = Postgres(Path(tempfile.mkdtemp(prefix="matchbench-pg-")), free_port())
    try:
        backend = pg.start()
        cfg = ServerConfig(port=free_port(), backend_store_uri=backend,
                           artifacts_destination=str(tmp_path / "srv" / "mlartifacts"), workers=2)
        with Server(cfg, log=tmp_path / "server.log") as uri:
            run_all_at_once(tmp_path / "runs", uri)
    finally:
        pg.stop()
        shutil.rmtree(pg.root, ignore_errors=True)
