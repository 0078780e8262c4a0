"""The tracker interface: what the runner tells a tracker, and what the report reads back.

Trackers are plugins (MLflow is the built-in one). The runner calls them from the driver
process only, one cell at a time, so parallel workers never race on the store.

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

STATUSES = ("FINISHED", "FAILED", "SKIPPED")


@dataclass
class CellRecord:
    """Everything one grid cell produced.

    `params` are flat dotted keys (model, dataset, split, loss, seed, model.factors, ...);
    `metrics` are named `<task>/<metric>_<k>` (e.g. itemrec/ndcg_10) or `<task>/<name>`;
    `curves` are training curves {name: [(step, value), ...]}; `artifacts` maps an artifact
    path (e.g. "rankings.parquet") to a local file to upload; `error` is the traceback of a
    FAILED cell and `reason` the reason a cell was SKIPPED. `scratch` is the temporary folder the
    runner made for the artifacts: it removes it once the tracker has recorded the cell.
    """

    suite: str
    config_hash: str
    run_name: str
    status: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    error: str | None = None
    reason: str | None = None
    start_time: float = 0.0
    end_time: float = 0.0
    scratch: Path | None = None
    trials: list["CellRecord"] = field(default_factory=list)
    """A tuned cell's study (`harness.tuning`): one record per trial (status FINISHED, PRUNED or FAILED), which a
    tracker nests under the cell's record."""

    @property
    def wall_time(self) -> float:
        return self.end_time - self.start_time


def _process_start(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, from /proc/PID/stat), "" where unknown: with the pid it
    names one process, even after the pid is reused."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def sqlite_wal(db: Path) -> None:
    """Put the SQLite database `db` (created with its folder when missing) in WAL mode, a persistent property of
    the file: readers then never block the writer. Raises sqlite3.Error / OSError; callers decide what a store that
    cannot be switched means."""
    import sqlite3

    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(db), timeout=30)
    try:
        if str(con.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def driver_id() -> str:
    """This process as `host:pid:start`: a tracker tags its suite invocation with it, so that a later one can tell
    whether the driver that opened it still runs (`driver_alive`)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def driver_alive(driver: str) -> bool | None:
    """Whether the driver `host:pid:start` (driver_id) still runs: True or False on its own host; None on another
    host or for a malformed id (this process cannot tell)."""
    host, pid, start = (driver.rsplit(":", 2) + ["", ""])[:3]
    if not pid.isdigit() or host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        pass
    return not start or _process_start(int(pid)) in ("", start)


class Tracker:
    """Lifecycle of one suite invocation, plus read-back for resume and reports."""

    def suite_started(self, suite: str, config: dict[str, Any], n_cells: int) -> None:
        """Open the invocation (MLflow: the parent run)."""

    def cell_finished(self, record: CellRecord) -> None:
        """Record one cell, whatever its status."""

    def suite_finished(self, status: str = "FINISHED") -> None:
        """Close the invocation."""

    def close_abandoned(self, suite: str) -> int:
        """Mark KILLED the runs of `suite` left RUNNING by a driver that no longer runs (kill -9, a lost machine);
        the runs of a driver still at work are left alone. Returns how many were closed."""
        return 0

    def study_storage(self) -> str | None:
        """Where tuned cells keep their Optuna studies (a database URL beside this tracker's store), so a rerun
        resumes them; None keeps them in memory (a rerun starts them again)."""
        return None

    def finished_hashes(self, suite: str) -> set[str]:
        """Config hashes of cells of `suite` that already have a FINISHED record (for resume)."""
        return set()

    def runs(self, suite: str) -> pd.DataFrame:
        """One row per configuration of `suite`: its newest FINISHED record, else its newest record (a failed
        `--rerun` does not hide the last good result), with columns run_id, run_name,
        status, config_hash, wall_time, `params.<key>`, `metrics.<name>`, `tags.<key>`."""
        raise NotImplementedError

    def curve(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        """A training curve of one run."""
        raise NotImplementedError

    def artifact(self, run_id: str, path: str) -> Path | None:
        """A local copy of one run's artifact, or None if it has none."""
        raise NotImplementedError
