"""The built-in `mlflow` tracker: one parent run per suite invocation, one child run per grid cell.

Writes through an explicit `MlflowClient(tracking_uri=...)` (no global MLflow state is touched),
so several trackers on different stores can live in one process. The default store is a local
SQLite file; its artifacts go to `mlartifacts/` beside the database file, whatever the working
directory. Every store call is retried with backoff when SQLite reports "database is locked",
so parallel writers lose nothing: a SQLite store is put in WAL mode (readers never block the writer) and its
schema is created under a file lock by the first process that opens it, so processes started together do not
race on MLflow's migrations (MLflow itself sets a 20 s busy timeout on every session). A store or artifact root
that cannot be written (permissions, a full disk) is one `TrackingStoreError` naming the path; the cell being
recorded is closed FAILED, so a rerun redoes it and keeps every FINISHED one.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import pandas as pd
import yaml

from harness.plugin import CellRecord, MatchbenchError, Param, Tracker, TrackerSpec, hookimpl, sqlite_wal

T = TypeVar("T")

MAX_PARAM_VAL_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_TAG_VAL_LENGTH = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH
MAX_KEY_LENGTH = 250  # mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH
PARAMS_PER_BATCH = 100  # mlflow.utils.validation.MAX_PARAMS_TAGS_PER_BATCH
METRICS_PER_BATCH = 1000  # mlflow.utils.validation.MAX_METRICS_PER_BATCH
PAGE = 1000
_RETRYABLE = ("database is locked", "database table is locked", "database is busy", "unable to open database",
              "disk i/o error", "deadlock", "connection reset", "temporarily unavailable")
_PERMANENT = ("readonly database", "read-only file system", "database or disk is full", "no space left on device",
              "disk quota exceeded", "permission denied", "not a directory", "is a directory", "file exists")
"""Messages of a store or artifact root that cannot be written: waiting does not help, the user must act."""
_PERMANENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
                     errno.EISDIR, errno.EEXIST}


class TrackingStoreError(MatchbenchError):
    """The tracking store or its artifact root cannot be written (or read): permissions, a full disk, a file
    where a folder should be. The message names the path and the fix; the CLI exits 2 without a traceback."""


def _storage_problem(exc: BaseException) -> str | None:
    """What is wrong with the storage when `exc` says it cannot be written (or read), else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # the OSError may sit under MLflow's or SQLAlchemy's wrapper
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _PERMANENT_ERRNOS:
            return f"{os.strerror(exc.errno)}" + (f" ({exc.filename})" if exc.filename else "")
        text = str(exc).lower()
        for needle in _PERMANENT:
            if needle in text:
                return {"readonly database": "the database file is read-only"}.get(needle, needle.capitalize())
        exc = exc.__cause__ or exc.__context__
    return None


def _server_failed(exc: BaseException) -> bool:
    """Whether a tracking server kept answering 500 (MLflow's client gives up with this after its retries): the
    server's own storage failed, and it does not send the cause back."""
    text = str(exc).lower()
    return "too many 500 error responses" in text or "error code 500" in text


def _retryable(exc: BaseException) -> bool:
    if _storage_problem(exc) is not None:
        return False
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(s in text for s in _RETRYABLE) or type(exc).__name__ in ("OperationalError", "ConnectionError")


def retry(fn: Callable[[], T], tries: int = 10, base: float = 0.05, cap: float = 2.0) -> T:
    """Call `fn`, retrying with jittered exponential backoff while the store is locked or busy."""
    for attempt in range(tries):
        try:
            return fn()
        except Exception as exc:  # re-raised below unless it is a transient store error
            if attempt == tries - 1 or not _retryable(exc):
                raise
            time.sleep(min(cap, base * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def _absolute_sqlite(uri: str) -> str:
    """sqlite:///relative.db -> sqlite:////abs/relative.db, so the store does not move with the cwd."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:" and not path.startswith("file:"):
            return "sqlite:///" + str(Path(path).resolve())
    return uri


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI; None for others, in-memory ones and SQLite URI filenames (file:)."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):].split("?", 1)[0]
        if path and path != ":memory:" and not path.startswith("file:"):
            return Path(path)
    return None


class _QuietStorageErrors(logging.Filter):
    """Drops MLflow's own ERROR log (with a traceback) of a database write that failed for a storage reason: the
    tracker raises it again as one TrackingStoreError, and the CLI prints that instead of a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[1] is not None
                    and _storage_problem(record.exc_info[1]) is not None)


def _quiet_storage_errors() -> None:
    log = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _QuietStorageErrors) for f in log.filters):
        log.addFilter(_QuietStorageErrors())


def _init_lock_path(db: Path) -> Path:
    """The lock file that serialises opening (WAL, schema creation) of the SQLite store `db` on this machine."""
    digest = hashlib.sha256(str(db.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"matchbench-sqlite-init-{digest}.lock"


def open_sqlite_store(db: Path, open_store: Callable[[], T]) -> T:
    """Open the SQLite store `db` with `open_store()` (which creates MLflow's tables when they are missing), after
    putting the database in WAL mode (readers never block the writer) under an exclusive file lock, which is held
    on through `open_store()` while the schema is missing: processes started at once then create the schema once
    instead of racing on MLflow's migrations, and a store that has its schema is opened without waiting."""
    try:
        import fcntl
    except ImportError:  # no fcntl (Windows): MLflow's own retries are all there is
        _use_wal(db)
        return open_store()
    lock = _init_lock_path(db)
    fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _use_wal(db)
        if not _has_schema(db):  # whoever creates the schema holds the lock until it is complete
            return open_store()
    finally:
        os.close(fd)  # releases the lock
    return open_store()  # the schema is there: open it without making the other processes wait


def _has_schema(db: Path) -> bool:
    """Whether MLflow's migrations have already run on `db` (read-only look; False when in doubt)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            return {"experiments", "runs", "alembic_version"} <= tables and bool(
                con.execute("SELECT count(*) FROM alembic_version").fetchone()[0])
        finally:
            con.close()
    except (sqlite3.Error, OSError):
        return False


def _use_wal(db: Path) -> None:
    """Best effort `sqlite_wal`: a read-only copy stays as it is, and writing to it then fails with an error that
    names it."""
    import sqlite3

    try:
        sqlite_wal(db)
    except (sqlite3.Error, OSError):
        pass


def _local_path(uri: str | None) -> str | None:
    """The local path of a file:// (or plain path) artifact URI, else None."""
    if not uri:
        return None
    if uri.startswith("file:"):
        from urllib.parse import urlsplit
        from urllib.request import url2pathname

        return url2pathname(urlsplit(uri).path)
    return uri if "://" not in uri and ":" not in uri.split("/", 1)[0] else None


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "suite"


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def _param_value(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    return text[:MAX_PARAM_VAL_LENGTH]


def _chunks(seq: list, n: int):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


class MlflowTracker(Tracker):
    """Tracker on an MLflow store. `experiment`: the experiment name (default: the suite's name)."""

    def __init__(self, uri: str = "sqlite:///mlruns.db", experiment: str | None = None):
        self.uri = _absolute_sqlite(uri)
        self.experiment = experiment
        self._client = None
        self.parent_id: str | None = None
        self.suite: str | None = None
        self._experiment_ids: dict[str, str] = {}
        self._tmp: Path | None = None
        self._broken = False  # a storage error was raised: closing the invocation is best effort

    def _store_error(self, exc: BaseException, what: str, artifact_uri: str | None = None) -> BaseException:
        """`exc` as a TrackingStoreError naming the path when it says the storage cannot be written (or read),
        else `exc` itself. `what`: what was being written; `artifact_uri`: the artifact folder when it was an
        artifact."""
        if isinstance(exc, TrackingStoreError):
            return exc
        problem = _storage_problem(exc)
        if problem is None and artifact_uri is not None and _server_failed(exc):
            problem = ("the server answered 500 Internal Server Error to the upload, after MLflow's retries; its log "
                       "names the cause (a full disk or an unwritable --artifacts-destination does this)")
        if problem is None:
            return exc
        self._broken = True
        if artifact_uri is not None:
            local = _local_path(artifact_uri)
            where = (f"the artifact root {local}" if local else
                     f"the artifact store {artifact_uri} (on the tracking server {self.uri}: its "
                     "--artifacts-destination)")
            fix = "free space or fix the folder's permissions (or move the store elsewhere with --tracking-uri)"
            if any(k in problem.lower() for k in ("not a directory", "file exists", "is a directory")):
                fix = "move the file that stands where a folder should be (or use another store with --tracking-uri)"
        else:
            db = _sqlite_path(self.uri)
            where = f"the tracking store {db}" if db is not None else f"the tracking store {self.uri}"
            fix = ("free space or make the database file and its folder writable, or pass another store with "
                   "--tracking-uri")
        return TrackingStoreError(
            f"cannot write {what} to {where}: {problem}. Cells already FINISHED are kept in the store; {fix}, then "
            "run the same command again to resume")

    @property
    def client(self):
        """The store's client, made on first use: making it creates an SQLite store's file, which a command that
        only reads (report, results) must not do for a mistyped path."""
        if self._client is None:
            from mlflow import MlflowClient

            _quiet_storage_errors()
            # no "View run ... at: URL" line on stdout per run logged to a server (it would land in `results`
            # output and between the progress lines); an explicit user setting wins
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            db = _sqlite_path(self.uri)
            if db is None:
                self._client = MlflowClient(tracking_uri=self.uri)
            else:
                def open_store():
                    client = MlflowClient(tracking_uri=self.uri)
                    retry(lambda: client.search_experiments(max_results=1))  # creates the tables if missing
                    return client

                try:
                    self._client = open_sqlite_store(db, open_store)
                except Exception as exc:
                    raise self._store_error(exc, "the schema") from exc
        return self._client

    def _no_store(self) -> bool:
        """An SQLite store whose file does not exist holds no runs; reading it must not create it."""
        db = _sqlite_path(self.uri)
        return db is not None and not db.exists()

    # ----------------------------------------------------------------- experiment
    def _experiment_name(self, suite: str) -> str:
        return self.experiment or suite

    def _artifact_location(self, name: str) -> str | None:
        db = _sqlite_path(self.uri)
        if db is None:
            return None  # a server or other store chooses its own artifact root
        return (db.resolve().parent / "mlartifacts" / _safe_name(name)).as_uri()

    def _find_experiment(self, suite: str) -> str | None:
        name = self._experiment_name(suite)
        if name in self._experiment_ids:
            return self._experiment_ids[name]
        if self._no_store():
            return None
        exp = retry(lambda: self.client.get_experiment_by_name(name))
        if exp is None:
            return None
        if exp.lifecycle_stage == "deleted":
            return None
        self._experiment_ids[name] = exp.experiment_id
        return exp.experiment_id

    def _ensure_experiment(self, suite: str) -> str:
        from mlflow.exceptions import MlflowException

        name = self._experiment_name(suite)
        found = self._find_experiment(suite)
        if found is not None:
            return found
        exp = retry(lambda: self.client.get_experiment_by_name(name))
        if exp is not None and exp.lifecycle_stage == "deleted":
            retry(lambda: self.client.restore_experiment(exp.experiment_id))
            self._experiment_ids[name] = exp.experiment_id
            return exp.experiment_id
        try:
            exp_id = retry(lambda: self.client.create_experiment(
                name, artifact_location=self._artifact_location(name), tags={"matchbench.suite": suite}))
        except MlflowException as exc:  # another worker created it meanwhile
            if "already exists" not in str(exc).lower() and "unique" not in str(exc).lower():
                raise
            exp = retry(lambda: self.client.get_experiment_by_name(name))
            if exp is None:
                raise
            exp_id = exp.experiment_id
        self._experiment_ids[name] = exp_id
        return exp_id

    def _tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="matchbench-mlflow-"))
        return self._tmp

    # ----------------------------------------------------------------- writing
    def _log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        for chunk in _chunks(list(params), PARAMS_PER_BATCH):
            retry(lambda c=chunk: self.client.log_batch(run_id, params=c))
        for chunk in _chunks(list(tags), PARAMS_PER_BATCH):
            retry(lambda c=chunk: self.client.log_batch(run_id, tags=c))
        for chunk in _chunks(list(metrics), METRICS_PER_BATCH):
            retry(lambda c=chunk: self.client.log_batch(run_id, metrics=c))

    def suite_started(self, suite: str, config: dict[str, Any], n_cells: int) -> None:
        from mlflow.entities import Param as MParam

        from harness.plugin import driver_id  # the driver tag: a later invocation closes this run if it dies

        self.suite = suite
        try:
            exp_id = self._ensure_experiment(suite)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            tags = {"matchbench.suite": suite, "matchbench.kind": "parent", "matchbench.driver": driver_id()}
            run = retry(lambda: self.client.create_run(exp_id, tags=tags, run_name=f"{suite} {stamp}"))
            self.parent_id = run.info.run_id
            self._log_batch(self.parent_id, params=[MParam("n_cells", str(int(n_cells)))])
        except Exception as exc:
            raise self._store_error(exc, f"the run of suite {suite!r}") from exc
        plain = json.loads(json.dumps(config or {}, default=str))
        with tempfile.TemporaryDirectory(prefix="matchbench-mlflow-") as tmp:
            path = Path(tmp) / "suite.yaml"
            path.write_text(yaml.safe_dump(plain, sort_keys=False))
            try:  # an artifact root that cannot be written stops the suite here, before any cell runs
                retry(lambda: self.client.log_artifact(self.parent_id, str(path)))
            except Exception as exc:
                raise self._store_error(exc, "the suite's artifacts", run.info.artifact_uri) from exc

    def cell_finished(self, record: CellRecord) -> None:
        from mlflow.entities import Metric, RunTag
        from mlflow.entities import Param as MParam

        exp_id = self._ensure_experiment(record.suite)
        now = time.time()
        start = record.start_time or record.end_time or now
        end = record.end_time or start
        tags: dict[str, str] = {
            "matchbench.suite": record.suite,
            "matchbench.kind": "cell",
            "matchbench.config_hash": record.config_hash,
            "matchbench.status": record.status,
        }
        if self.parent_id:
            tags["mlflow.parentRunId"] = self.parent_id
        if record.reason:
            tags["matchbench.reason"] = str(record.reason)
        if record.error:
            tags["matchbench.error"] = record.error[:500]
        tags.update({str(k): str(v) for k, v in record.tags.items()})
        what = f"cell {record.run_name!r}"
        try:
            run = retry(lambda: self.client.create_run(exp_id, start_time=_ms(start), tags={
                k[:MAX_KEY_LENGTH]: v[:MAX_TAG_VAL_LENGTH] for k, v in tags.items()}, run_name=record.run_name))
        except Exception as exc:
            raise self._store_error(exc, what) from exc
        run_id, stage = run.info.run_id, "store"
        try:
            ts = _ms(end)
            params = [MParam(str(k)[:MAX_KEY_LENGTH], _param_value(v)) for k, v in record.params.items()]
            metrics = [Metric(str(k)[:MAX_KEY_LENGTH], float(v), ts, 0) for k, v in record.metrics.items()]
            metrics.append(Metric("wall_time_s", float(max(0.0, end - start)), ts, 0))
            for name, points in record.curves.items():
                metrics.extend(Metric(str(name)[:MAX_KEY_LENGTH], float(v), ts, int(step)) for step, v in points)
            self._log_batch(run_id, metrics=metrics, params=params)
            stage = "artifacts"
            self._log_artifacts(run_id, record)
            stage = "store"
            self._log_trials(exp_id, run_id, record)
            status = "FAILED" if record.status == "FAILED" else "FINISHED"
            retry(lambda: self.client.set_terminated(run_id, status, end_time=_ms(end)))
        except BaseException as exc:  # record what went wrong with the recording itself, then close the run
            error = str(exc)[:500] or type(exc).__name__
            closed = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"  # never left RUNNING
            try:
                retry(lambda: self.client.log_batch(run_id, tags=[RunTag("matchbench.tracking_error", error)]))
                retry(lambda: self.client.set_terminated(run_id, closed, end_time=_ms(end)))
            except Exception:  # the store itself cannot be written: the error below says so
                if _storage_problem(exc) is None:
                    raise
            if isinstance(exc, Exception):
                mapped = self._store_error(exc, f"{what}'s {'artifacts' if stage == 'artifacts' else 'results'}",
                                           run.info.artifact_uri if stage == "artifacts" else None)
                if mapped is not exc:
                    raise mapped from exc
            raise

    def _log_artifacts(self, run_id: str, record: CellRecord) -> None:
        with tempfile.TemporaryDirectory(prefix="matchbench-mlflow-") as tmp:
            staged = Path(tmp)  # artifacts stored under another name, and error.txt
            for art_path, local in record.artifacts.items():
                local = Path(local)
                art = Path(str(art_path).strip("/"))
                if art.name == local.name:
                    parent = None if str(art.parent) in ("", ".") else art.parent.as_posix()
                    retry(lambda lp=local, ap=parent: self.client.log_artifact(run_id, str(lp), artifact_path=ap))
                    continue
                dst = staged / art
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(local, dst)
            if record.status == "FAILED" and record.error:
                (staged / "error.txt").write_text(record.error)
            if any(staged.iterdir()):
                retry(lambda: self.client.log_artifacts(run_id, str(staged)))

    def _log_trials(self, exp_id: str, cell_run: str, record: CellRecord) -> None:
        """A tuned cell's trials (`record.trials`), each a run nested under the cell's run (tag matchbench.kind
        trial): parameters, validation metrics and curves; a pruned trial ends KILLED with status tag PRUNED."""
        from mlflow.entities import Metric
        from mlflow.entities import Param as MParam

        for trial in record.trials:
            start = trial.start_time or record.start_time
            end = trial.end_time or start
            tags = {"matchbench.suite": record.suite, "matchbench.kind": "trial", "mlflow.parentRunId": cell_run,
                    "matchbench.config_hash": record.config_hash, "matchbench.status": trial.status,
                    **{str(k): str(v) for k, v in trial.tags.items()}}
            if trial.reason:
                tags["matchbench.reason"] = str(trial.reason)
            if trial.error:
                tags["matchbench.error"] = trial.error[-MAX_TAG_VAL_LENGTH:]
            run = retry(lambda t=trial, tg=tags, s=start: self.client.create_run(
                exp_id, start_time=_ms(s), run_name=t.run_name,
                tags={k[:MAX_KEY_LENGTH]: v[:MAX_TAG_VAL_LENGTH] for k, v in tg.items()}))
            ts = _ms(end)
            metrics = [Metric(str(k)[:MAX_KEY_LENGTH], float(v), ts, 0) for k, v in trial.metrics.items()]
            for name, points in trial.curves.items():
                metrics.extend(Metric(str(name)[:MAX_KEY_LENGTH], float(v), ts, int(step)) for step, v in points)
            self._log_batch(run.info.run_id, metrics=metrics, params=[
                MParam(str(k)[:MAX_KEY_LENGTH], _param_value(v)) for k, v in trial.params.items()])
            status = {"FINISHED": "FINISHED", "PRUNED": "KILLED"}.get(trial.status, "FAILED")
            retry(lambda r=run.info.run_id, st=status, e=ts: self.client.set_terminated(r, st, end_time=e))

    def study_storage(self) -> str | None:
        """A sidecar SQLite file named after an SQLite store (mlruns.db -> mlruns.optuna.db); None (in memory)
        for a server or file store."""
        db = _sqlite_path(self.uri)
        return None if db is None else "sqlite:///" + str(db.resolve().with_name(db.stem + ".optuna.db"))

    def suite_finished(self, status: str = "FINISHED") -> None:
        if self.parent_id is None:
            return
        status = status if status in ("FINISHED", "FAILED", "KILLED") else "FINISHED"
        parent = self.parent_id
        self.parent_id = None
        try:
            retry(lambda: self.client.set_terminated(parent, status))
        except Exception as exc:
            if self._broken:  # the error already raised names the storage problem; do not mask it
                return
            raise self._store_error(exc, "the suite's run") from exc

    def close_abandoned(self, suite: str) -> int:
        """Parent runs left RUNNING by a driver that no longer runs on this host (or that carry no driver tag), and
        cell runs left RUNNING under such a parent or a closed one: marked KILLED (attribute and status tag), with
        `matchbench.killed_reason`. A RUNNING parent whose driver ran on another host is left alone: this host
        cannot tell whether it still runs (its cells are not counted as finished either way). Each run is read
        again just before it is closed, so a writer that finished it meanwhile keeps its status."""
        from mlflow.entities import RunTag

        from harness.plugin import driver_alive, driver_id

        def abandoned_parent(run) -> bool:
            tags = run.data.tags
            return run.info.status != "RUNNING" or "matchbench.driver" not in tags or driver_alive(
                tags["matchbench.driver"]) is False

        runs = self._search(suite, "attributes.status = 'RUNNING'")
        parents = {r.info.run_id: r for r in runs if r.data.tags.get("matchbench.kind") == "parent"}
        closed = 0
        for r in runs:
            tags = r.data.tags
            kind = tags.get("matchbench.kind")
            if kind == "parent":
                if not abandoned_parent(r):
                    continue
                why = f"its driver ({tags.get('matchbench.driver', 'unknown')}) no longer runs"
            elif kind == "cell":
                pid = tags.get("mlflow.parentRunId")
                parent = parents.get(pid)
                if parent is None and pid:  # closed since, or on another page: read it now
                    try:
                        parent = retry(lambda p=pid: self.client.get_run(p))
                    except Exception:  # deleted: nobody will close this run
                        parent = None
                if parent is not None and not abandoned_parent(parent):
                    continue
                why = "its suite invocation ended before the run was closed"
            else:
                continue
            if retry(lambda rid=r.info.run_id: self.client.get_run(rid)).info.status != "RUNNING":
                continue  # its writer closed it meanwhile
            new = [RunTag("matchbench.killed_reason", f"{why}; closed by {driver_id()}")]
            if kind == "cell":
                new.append(RunTag("matchbench.status", "KILLED"))
            retry(lambda rid=r.info.run_id, t=new: self.client.log_batch(rid, tags=t))
            retry(lambda rid=r.info.run_id: self.client.set_terminated(rid, "KILLED"))
            closed += 1
        return closed

    # ----------------------------------------------------------------- reading
    def _search(self, suite: str, filter_string: str) -> list:
        exp_id = self._find_experiment(suite)
        if exp_id is None:
            return []
        if self.experiment:  # an experiment shared by several suites: keep this suite's runs
            quote = '"' if "'" in suite else "'"
            filter_string += f" and tags.`matchbench.suite` = {quote}{suite}{quote}"
        out, token = [], None
        while True:  # the store returns at most PAGE runs per call: follow the page token to the last one
            page = retry(lambda t=token: self.client.search_runs(
                [exp_id], filter_string=filter_string, max_results=PAGE, page_token=t))
            out.extend(page)
            token = page.token
            if not token:
                return out

    def finished_hashes(self, suite: str) -> set[str]:
        runs = self._search(suite, "tags.`matchbench.kind` = 'cell' and tags.`matchbench.status` = 'FINISHED' "
                                   "and attributes.status = 'FINISHED'")
        return {r.data.tags["matchbench.config_hash"] for r in runs if "matchbench.config_hash" in r.data.tags}

    BASE_COLUMNS = ("run_id", "run_name", "status", "run_status", "config_hash", "wall_time", "reason", "error",
                    "start_time", "end_time")

    def runs(self, suite: str) -> pd.DataFrame:
        rows = []
        for r in self._search(suite, "tags.`matchbench.kind` = 'cell'"):
            tags, info = r.data.tags, r.info
            end = info.end_time
            wall = r.data.metrics.get("wall_time_s")
            if wall is None and end is not None:
                wall = (end - info.start_time) / 1000
            row = {"run_id": info.run_id, "run_name": info.run_name,
                   "status": tags.get("matchbench.status", info.status), "run_status": info.status,
                   "config_hash": tags.get("matchbench.config_hash"), "wall_time": wall,
                   "reason": tags.get("matchbench.reason"), "error": tags.get("matchbench.error"),
                   "start_time": info.start_time, "end_time": end}
            row.update({f"params.{k}": v for k, v in r.data.params.items()})
            row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
            row.update({f"tags.{k}": v for k, v in tags.items()})
            rows.append(row)
        if not rows:
            return pd.DataFrame(columns=list(self.BASE_COLUMNS))
        df = pd.DataFrame(rows)
        # per configuration its newest FINISHED record, else its newest: a newer attempt that failed (a --rerun
        # after the data broke) does not hide the last good result; the newest finished one replaces it
        df["_finished"] = (df["status"] == "FINISHED") & (df["run_status"] == "FINISHED")
        df = df.sort_values(["_finished", "start_time", "end_time"], ascending=False, kind="stable",
                            na_position="last")
        df = df.drop_duplicates("config_hash", keep="first").drop(columns="_finished")
        df = df.sort_values("start_time", kind="stable")
        for col in ("start_time", "end_time"):
            df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
        base = [c for c in self.BASE_COLUMNS if c in df.columns]
        rest = sorted(c for c in df.columns if c not in base)
        return df[base + rest].reset_index(drop=True)

    def curve(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        hist = retry(lambda: self.client.get_metric_history(run_id, metric))
        return sorted((int(m.step), float(m.value)) for m in hist)

    def artifact(self, run_id: str, path: str) -> Path | None:
        dst = self._tmpdir() / "downloads" / run_id
        dst.mkdir(parents=True, exist_ok=True)
        # no tqdm bar per download (a report fetches one artifact per cell); an explicit user setting wins
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from mlflow.exceptions import MlflowException

        try:
            local = retry(lambda: self.client.download_artifacts(run_id, path, dst_path=str(dst)))
        except (MlflowException, OSError):  # missing artifact (or run): mlflow wraps it, a store may raise OSError
            return None
        p = Path(local)
        return p if p.exists() else None

    def __del__(self):  # best effort: remove staged and downloaded copies
        tmp = getattr(self, "_tmp", None)
        if tmp is not None and os.environ.get("MATCHBENCH_KEEP_TMP") is None:
            shutil.rmtree(tmp, ignore_errors=True)


@hookimpl
def register_trackers(register):
    register(TrackerSpec(
        name="mlflow",
        factory=MlflowTracker,
        description="MLflow: one parent run per suite invocation, one child run per cell (params, metrics, "
                    "curves, artifacts); default store a local SQLite file",
        params=(
            Param("uri", "str", "sqlite:///mlruns.db",
                  "tracking URI: sqlite:///file.db (artifacts in mlartifacts/ beside it) or an MLflow server URL"),
            Param("experiment", "str", None, "experiment name (default: the suite's name)", nullable=True),
        ),
    ))
