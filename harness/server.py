"""`matchbench server`: an MLflow tracking server that a team's runs share.

It runs `mlflow server` (MLflow's own command and option names) as a child in its own process group:
a SQLite (put in WAL mode before the server opens it; MLflow's server creates the schema once, in its parent
process, before its workers start) or PostgreSQL backend store, artifacts kept in a local folder and served
through the server (`--serve-artifacts`), bound to 127.0.0.1 by default. `serve` prints the URI to pass as
`--tracking-uri`, waits until the server answers on its health endpoint, and on Ctrl-C, SIGTERM or SIGHUP stops
the whole process group (the server's workers included), so nothing is left holding the port.

`Server` is the same thing as a context manager, for tests and scripts:

    with Server(ServerConfig(port=free_port(), backend_store_uri="sqlite:////tmp/x/mlruns.db",
                             artifacts_destination="/tmp/x/mlartifacts"), log=Path("server.log")) as uri:
        ...  # uri == "http://127.0.0.1:PORT"

Internal: the CLI calls it.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

from .errors import ConfigError, MatchbenchError
from .tracking import sqlite_wal

HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_STORE = "sqlite:///mlruns.db"
READY_TIMEOUT_S = 180.0  # MLflow's server imports a lot: 15-25 s on two busy cores
STOP_GRACE_S = 10.0

SERVER_ENV = {
    # matchbench uses no MLflow jobs (GenAI evaluation): their runner and its seven consumer processes would only
    # cost memory and start-up time
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
"""Environment the server starts with, unless the user set these variables."""


class ServerError(MatchbenchError):
    """The tracking server did not start or did not answer; the message says why and what to do."""


@dataclass(frozen=True)
class ServerConfig:
    """What `matchbench server` starts: MLflow's option names, host 127.0.0.1 by default."""

    port: int = DEFAULT_PORT
    backend_store_uri: str = DEFAULT_STORE
    artifacts_destination: str | None = None  # default: mlartifacts/ beside a SQLite file, else ./mlartifacts
    host: str = HOST
    workers: int | None = None  # MLflow's default (4) when None

    @property
    def uri(self) -> str:
        """The tracking URI runs pass as --tracking-uri."""
        host = HOST if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def resolved(self) -> ServerConfig:
        """A relative SQLite path and artifact folder made absolute (the server must not depend on its cwd), the
        artifact folder defaulted, and port 0 replaced by a free port."""
        backend = self.backend_store_uri
        db = sqlite_path(backend)
        if db is not None and not db.is_absolute():
            backend = "sqlite:///" + str(db.resolve())
            db = db.resolve()
        dest = self.artifacts_destination
        if dest is None:
            dest = str((db.parent if db is not None else Path.cwd()) / "mlartifacts")
        elif "://" not in dest:
            dest = str(Path(dest).expanduser().resolve())
        port = self.port or free_port(self.host)
        return ServerConfig(port=port, backend_store_uri=backend, artifacts_destination=dest, host=self.host,
                            workers=self.workers)

    def command(self) -> list[str]:
        """The `mlflow server` command line (MLflow's own CLI, run by this Python)."""
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_store_uri,
               "--serve-artifacts", "--host", self.host, "--port", str(self.port)]
        if self.artifacts_destination:
            cmd += ["--artifacts-destination", self.artifacts_destination]
        if self.workers:
            cmd += ["--workers", str(self.workers)]
        return cmd


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, else None."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):].split("?", 1)[0]
        if path and path != ":memory:":
            return Path(path)
    return None


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on at `host` now."""
    with socket.socket() as s:
        s.bind((host if host not in ("0.0.0.0", "") else HOST, 0))
        return s.getsockname()[1]


def port_problem(host: str, port: int) -> str | None:
    """Why the server cannot listen on host:port, or None."""
    if not 0 < port < 65536:
        return f"--port {port}: not a TCP port (1-65535; 0 picks a free one)"
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            return (f"--port {port}: {host}:{port} is not free ({exc.strerror or exc}); is a server already running "
                    f"there? Pass another port, e.g. --port {free_port(host)}")
    return None


def backend_problem(uri: str) -> str | None:
    """Why the backend store URI cannot serve, or None (SQLite files are checked by the CLI's store check)."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    base, _, driver = scheme.partition("+")
    if base == "postgresql":
        import importlib.util

        if not driver:  # SQLAlchemy's default PostgreSQL driver: psycopg (3) since SQLAlchemy 2.1, psycopg2 before
            from sqlalchemy.dialects import postgresql

            driver = postgresql.dialect.driver
        module = {"psycopg2": "psycopg2", "psycopg": "psycopg", "pg8000": "pg8000"}.get(driver)
        if module and importlib.util.find_spec(module) is None:
            return (f"--backend-store-uri {uri}: the PostgreSQL driver {module} is not installed; install the "
                    "server extra: pip install 'matchbench[server]' (psycopg)")
    elif base not in ("sqlite", "mysql", "mssql"):
        return (f"--backend-store-uri {uri}: use sqlite:///PATH.db (a file) or postgresql://USER@HOST:PORT/DB, "
                "e.g. --backend-store-uri sqlite:///mlruns.db")
    return None


def folder_problem(folder: Path) -> str | None:
    """Why the server could not keep artifacts in `folder` (created if missing), or None: probed by creating a
    file, since permission bits alone do not tell (root, read-only mounts)."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(folder) else ""
        return f"cannot create a file in it: {exc.strerror or exc}{where}"
    return None


def use_wal(db: Path) -> None:
    """Put the SQLite database `db` in WAL mode before the server opens it: its workers and other readers then
    never block the writer."""
    import sqlite3

    try:
        sqlite_wal(db)
    except sqlite3.Error as exc:
        raise ConfigError(f"--backend-store-uri sqlite:///{db}: cannot open it as a SQLite database ({exc}); "
                          "point it at a writable .db file") from None


def healthy(uri: str, timeout: float = 2.0) -> bool:
    """Whether the MLflow server at `uri` answers its health endpoint."""
    from urllib.error import URLError
    from urllib.request import urlopen

    try:
        with urlopen(f"{uri}/health", timeout=timeout) as resp:
            return resp.status == 200
    except (URLError, OSError, ValueError):
        return False


class Server:
    """An `mlflow server` in its own process group: `start()`, `wait_ready()`, `stop()`; or `with Server(...) as
    uri:`. `log`: a file for its output (default: inherited, i.e. printed)."""

    def __init__(self, config: ServerConfig, log: Path | IO | None = None):
        self.config = config.resolved()
        self._log_arg = log
        self._log: IO | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return self.config.uri

    def start(self) -> None:
        cfg = self.config
        problem = backend_problem(cfg.backend_store_uri) or port_problem(cfg.host, cfg.port)
        if problem:
            raise ConfigError(problem)
        if cfg.artifacts_destination and "://" not in cfg.artifacts_destination:
            problem = folder_problem(Path(cfg.artifacts_destination))
            if problem:
                raise ConfigError(f"--artifacts-destination {cfg.artifacts_destination}: {problem}; pass a folder "
                                  "you can write to")
        db = sqlite_path(cfg.backend_store_uri)
        if db is not None:
            use_wal(db)
        env = dict(os.environ)
        for key, value in SERVER_ENV.items():
            env.setdefault(key, value)
        out = None
        if isinstance(self._log_arg, (str, Path)):
            self._log = out = open(self._log_arg, "ab")  # closed in stop()
        elif self._log_arg is not None:
            out = self._log_arg
        self.proc = subprocess.Popen(cfg.command(), env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                     stdin=subprocess.DEVNULL, start_new_session=hasattr(os, "killpg"))

    def wait_ready(self, timeout: float = READY_TIMEOUT_S, stop: Callable[[], bool] | None = None) -> bool:
        """Wait until the server answers its health endpoint: True; False when `stop()` became true first.
        Raises ServerError when the server exits or does not answer within `timeout` seconds."""
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        while True:
            if stop is not None and stop():
                return False
            code = self.proc.poll()
            if code is not None:
                raise ServerError(f"mlflow server exited with code {code} before answering at {self.uri}"
                                  f"{self._log_tail()}; check --backend-store-uri and --artifacts-destination")
            if healthy(self.uri, timeout=1.0):
                return True
            if time.monotonic() > deadline:
                raise ServerError(f"mlflow server did not answer at {self.uri}/health within {timeout:g} s"
                                  f"{self._log_tail()}")
            time.sleep(0.25)

    def _log_tail(self, n: int = 15) -> str:
        path = self._log_arg if isinstance(self._log_arg, (str, Path)) else None
        if path is None:
            return " (its output is above)"
        try:
            lines = Path(path).read_text(errors="replace").strip().splitlines()[-n:]
        except OSError:
            return ""
        return ":\n  " + "\n  ".join(lines) if lines else ""

    def _signal_group(self, sig: int) -> bool:
        """Send `sig` to the server's process group; False when nothing of it is left."""
        if self.proc is None:
            return False
        if not hasattr(os, "killpg"):
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                return True
            return False
        try:
            os.killpg(self.proc.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM to the whole group; SIGKILL to what is left after `grace` seconds. Returns the exit code."""
        if self.proc is None:
            return None
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout=grace)
        deadline = time.monotonic() + grace  # its workers may outlive it by a moment
        while self._signal_group(0) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._signal_group(signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def __enter__(self) -> str:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.uri

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(config: ServerConfig, out: Callable[[str], None] = print) -> int:
    """Run the server in the foreground until Ctrl-C, SIGTERM or SIGHUP (exit 0) or until it exits by itself
    (its exit code)."""
    server = Server(config)
    cfg = server.config
    stopped: list[float] = []

    def on_stop(_signum, _frame) -> None:
        stopped.append(time.monotonic())
        server._signal_group(signal.SIGTERM)

    sigs = [s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {sig: signal.signal(sig, on_stop) for sig in sigs}
    try:
        out(f"matchbench server: MLflow tracking server on {cfg.uri} (backend store {cfg.backend_store_uri}, "
            f"artifacts {cfg.artifacts_destination}); starting...")
        server.start()
        if stopped:  # a signal came before the server had a process group
            server._signal_group(signal.SIGTERM)
        try:
            ready = server.wait_ready(stop=lambda: bool(stopped))
        except ServerError:
            server.stop()
            raise
        if ready:
            out(f"matchbench server: ready. Pass --tracking-uri {cfg.uri} to matchbench run, report, results and "
                f"ui (or set tracking: {{uri: {cfg.uri}}} in a suite); Ctrl-C to stop")
        code = None
        while code is None:
            try:
                code = server.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                if stopped and time.monotonic() - stopped[0] > STOP_GRACE_S:
                    server._signal_group(signal.SIGKILL)
        server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopped:
        out("matchbench server: stopped")
        return 0
    return code if code >= 0 else 128 - code
