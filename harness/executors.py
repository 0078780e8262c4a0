"""Executors run cells and yield their records as they finish; the driver (this process) records them, so it stays
the single writer of the tracking store. Both keep the same guarantees:

- a cell that raises is a FAILED record with its traceback (deterministic: never retried);
- a worker process that dies while it runs a cell (killed, out of memory, `os._exit`) costs that cell only: the
  cell is retried up to `retries` times, then recorded FAILED with the cause ("worker process died (signal 9,
  SIGKILL ...)"); the other cells go on. Each attempt that died is listed in the record's tags
  (`matchbench.attempts`, `matchbench.worker_deaths`).

`local` runs `jobs` worker processes (each with the machine's threads divided between them; forked from a fork server
that imported torch, the harness and the plugins once, so a replacement starts in a moment; spawned where there is no
fork server), one cell at a time each, and sees each worker's exit: a dead one is replaced and only its own cell is
charged (a `concurrent.futures` pool cannot tell which task killed it and breaks every pending one). `jobs=1` without
retries runs the cells in this process (progress per epoch); a crash there is the driver's own (resume recovers).
`ray` (harness.ray_executor) runs each cell as a Ray task.

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from collections import deque
from multiprocessing import get_context
from multiprocessing.connection import wait
from typing import Callable, Iterator

from .errors import ConfigError, MatchbenchError
from .registry import Registry
from .suite import Cell
from .tracking import CellRecord

STOP_GRACE_S = 5.0
"""Seconds a worker gets to drop its cell's scratch folder when the driver stops, before it is killed."""

_WORKER_REGISTRY: Registry | None = None


def pin_threads(threads: int) -> None:
    """Limit this process's numeric libraries (OpenMP, torch) to `threads`."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _init_worker(threads: int, registry_blob: bytes) -> None:
    """Pin the worker's threads and unpickle the driver's registry: plugins registered in code (a notebook's
    `Registry.load(extra=[...])`) exist in the workers too, not only the entry-point ones."""
    global _WORKER_REGISTRY
    import cloudpickle

    pin_threads(threads)
    _WORKER_REGISTRY = cloudpickle.loads(registry_blob)


def _run_in_worker(cell: Cell) -> CellRecord:
    from threadpoolctl import threadpool_limits

    from .runner import run_cell

    with threadpool_limits(limits=int(os.environ.get("OMP_NUM_THREADS", "1"))):
        return run_cell(cell, _WORKER_REGISTRY)


# ------------------------------------------------------------------------------------------------ dead workers
def death_cause(exitcode: int | None) -> str:
    """What a worker's exit code says about its death, in words."""
    if exitcode is None:
        return "worker process died"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        hint = ": killed, e.g. by the kernel's out-of-memory killer" if -exitcode == signal.SIGKILL else ""
        return f"worker process died (signal {-exitcode}, {name}{hint})"
    return f"worker process died (exit code {exitcode})"


class Attempts:
    """Per cell, the worker deaths so far and whether another attempt is allowed (`retries` per cell)."""

    def __init__(self, retries: int):
        self.retries = max(0, int(retries))
        self.deaths: dict[str, list[str]] = {}

    def died(self, cell: Cell, cause: str) -> bool:
        """Count a death against `cell`; True when it gets another attempt."""
        self.deaths.setdefault(cell.config_hash, []).append(cause)
        return len(self.deaths[cell.config_hash]) <= self.retries

    def final(self, cell: Cell, registry: Registry, rec: CellRecord | None = None) -> CellRecord:
        """The record to hand on: the worker's (tagged with the deaths before it), or FAILED with the last cause."""
        deaths = self.deaths.get(cell.config_hash, [])
        failed = None
        if rec is None:
            from .runner import new_record

            rec = new_record(cell, registry)
            rec.status, rec.end_time = "FAILED", time.time()
            tries = f" (attempt {len(deaths)} of {self.retries + 1})" if self.retries else ""
            rec.error = f"{deaths[-1]} while running this cell{tries}"
            failed = rec
        if deaths:
            rec.tags["matchbench.attempts"] = str(len(deaths) + (rec is not failed))
            rec.tags["matchbench.worker_deaths"] = "; ".join(f"attempt {i}: {d}" for i, d in enumerate(deaths, 1))
        return rec


# ------------------------------------------------------------------------------------------------ local pool
class _Stopped(BaseException):
    """Raised in a worker by SIGTERM: the driver stops; run_cell drops the cell's scratch folder on the way out."""


def _on_sigterm(_signum, _frame):
    raise _Stopped


def _orphan_watch(driver: int) -> None:
    """Exit when the driver is gone (kill -9 leaves nobody to read the result): no orphan burns the CPU. A forked
    worker's parent is the fork server, which exits with the driver; a spawned one's is the driver."""
    parent = os.getppid()
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _worker_main(conn, threads: int, registry_blob: bytes, driver: int) -> None:
    """A worker: run the cells the driver sends, one at a time, and send back each record."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the driver, which stops the workers
    signal.signal(signal.SIGTERM, _on_sigterm)
    threading.Thread(target=_orphan_watch, args=(driver,), daemon=True).start()
    try:
        _serve(conn, threads, registry_blob)
    except _Stopped:
        pass
    finally:  # on the way out a late SIGTERM has nothing left to interrupt
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _serve(conn, threads: int, registry_blob: bytes) -> None:
    try:
        _init_worker(threads, registry_blob)
    except _Stopped:
        return
    except BaseException:
        conn.send(("init_failed", traceback.format_exc()))
        return
    while True:
        try:
            cell = conn.recv()
        except (EOFError, OSError, _Stopped):
            return
        if cell is None:
            return
        try:
            rec = _run_in_worker(cell)
        except _Stopped:
            return
        except BaseException:  # SystemExit from a plugin: the cell's own failure, not a dead worker
            from .runner import new_record

            rec = new_record(cell, _WORKER_REGISTRY)
            rec.status, rec.error, rec.end_time = "FAILED", traceback.format_exc(), time.time()
        try:
            conn.send(("record", rec))
        except (OSError, _Stopped):
            from .runner import discard_scratch

            discard_scratch(rec)
            return


class _Worker:
    def __init__(self, ctx, threads: int, blob: bytes):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, threads, blob, os.getpid()),
                                name="matchbench-worker")
        self.proc.start()
        child.close()
        self.cell: Cell | None = None

    def stop(self) -> None:
        """Stop the worker: an idle one was told to exit (None) and gets a moment; a busy one is interrupted."""
        if self.cell is None:
            self.proc.join(STOP_GRACE_S)
        if self.proc.is_alive():
            self.proc.terminate()  # SIGTERM: _Stopped in the worker
        self.proc.join(STOP_GRACE_S)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _context():
    """Workers forked from a fork server that has imported torch, the harness and the entry-point plugins once
    (a new or replaced worker starts in a fraction of a second, and nothing of the driver is inherited), else
    (no fork server on this platform) spawned."""
    try:
        ctx = get_context("forkserver")
    except ValueError:
        return get_context("spawn")
    from importlib.metadata import entry_points

    ctx.set_forkserver_preload(["torch", "harness.runner", "harness.journey",
                                *(ep.module for ep in entry_points(group="matchbench"))])
    return ctx


class LocalExecutor:
    """A pool of `jobs` worker processes on this machine; `retries`: attempts more for a cell whose worker died."""

    name = "local"

    def __init__(self, jobs: int = 1, retries: int = 0):
        self.jobs = max(1, min(int(jobs), os.cpu_count() or 1))  # never more processes than cores
        self.retries = max(0, int(retries))

    @property
    def in_process(self) -> bool:
        """Cells run in the driver's process (what was loaded before them can serve them)."""
        return self.jobs == 1 and self.retries == 0

    def map(self, cells: list[Cell], registry: Registry,
            progress: Callable[[str, int, int], None] | None = None) -> Iterator[CellRecord]:
        if self.in_process or not cells:
            from threadpoolctl import threadpool_limits

            from .runner import run_cell

            for cell in cells:
                with threadpool_limits(limits=1, user_api="blas"):
                    yield run_cell(cell, registry, progress)
            return
        yield from self._pool(cells, registry)

    def _pool(self, cells: list[Cell], registry: Registry) -> Iterator[CellRecord]:
        import cloudpickle

        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        blob = cloudpickle.dumps(registry)  # by value where needed: classes defined in a notebook or a test
        ctx = _context()
        todo: deque[Cell] = deque(cells)
        attempts = Attempts(self.retries)
        workers: list[_Worker] = []
        try:
            while todo or any(w.cell is not None for w in workers):
                busy = sum(w.cell is not None for w in workers)
                while todo and len(workers) < min(self.jobs, busy + len(todo)):
                    workers.append(_Worker(ctx, threads, blob))
                for w in workers:
                    if w.cell is None and todo:
                        w.cell = todo.popleft()
                        try:
                            w.conn.send(w.cell)
                        except OSError:  # died before it took the cell: not the cell's fault, try it elsewhere
                            todo.appendleft(w.cell)
                            w.cell = None
                ready = set(wait([w.conn for w in workers] + [w.proc.sentinel for w in workers]))
                for w in list(workers):
                    if w.conn not in ready and w.proc.sentinel not in ready:
                        continue
                    msg = None
                    try:
                        if w.conn.poll():
                            msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg is not None and msg[0] == "init_failed":
                        raise MatchbenchError(f"a worker process could not start (the registry or a plugin did not "
                                              f"load there):\n{msg[1]}")
                    if msg is not None:
                        cell, w.cell = w.cell, None
                        yield attempts.final(cell, registry, msg[1])
                        continue
                    # nothing to read: the worker is gone
                    w.proc.join(STOP_GRACE_S)
                    workers.remove(w)
                    w.stop()
                    if w.cell is not None:
                        if attempts.died(w.cell, death_cause(w.proc.exitcode)):
                            todo.appendleft(w.cell)  # its next attempt goes first
                        else:
                            yield attempts.final(w.cell, registry)
        finally:  # done, interrupted or the caller stopped: stop every worker (they drop their scratch folders)
            for w in workers:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
            for w in workers:
                w.stop()


def make_executor(name: str = "local", jobs: int = 1, retries: int = 0, address: str | None = None,
                  resources: dict | None = None):
    """The executor named `name` ('local' or 'ray'); ray's options are refused for local."""
    if int(retries) < 0:
        raise ConfigError(f"--retries {retries}: must be at least 0 (attempts more for a cell whose worker died)")
    if name == "local":
        if address:
            raise ConfigError(f"--address {address}: only the ray executor connects to a cluster; add --executor ray")
        if resources:
            raise ConfigError("executor.resources: only the ray executor takes a resource request; use name: ray")
        return LocalExecutor(jobs, retries)
    if name == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(jobs, retries, address=address, resources=resources)
    raise ConfigError(f"unknown executor {name!r}; valid: local, ray")


def executor_for(suite, name: str | None = None, jobs: int = 1, retries: int | None = None,
                 address: str | None = None):
    """The executor a run uses: `name`, `address` and `retries` (the command line's) override the suite's
    `executor` and `retries` keys; the suite's address and resources apply only to its own executor."""
    conf = dict(getattr(suite, "executor", None) or {"name": "local"})
    chosen = name or conf.get("name", "local")
    same = chosen == conf.get("name", "local")
    return make_executor(chosen, jobs, getattr(suite, "retries", 0) if retries is None else retries,
                         address=address or (conf.get("address") if same else None),
                         resources=conf.get("resources") if same else None)


EXECUTORS = {"local": LocalExecutor}
"""The executors that need no optional package (make_executor also knows 'ray')."""
