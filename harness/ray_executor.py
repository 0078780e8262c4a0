"""The `ray` executor: each cell a Ray task; the driver (this process) stays the single writer of the tracking store.

    matchbench run SUITE --executor ray --jobs 4            # a local Ray instance with 4 workers
    matchbench run SUITE --executor ray --address HOST:6379 # a running cluster (`ray start --head` on HOST)

A task computes one cell and returns its record (params, metrics, curves, artifacts); it never talks to MLflow.
Resources: each task asks for `num_cpus` (the threads it runs with: on a local instance the machine's cores divided
by `jobs`, on a cluster 1 unless the suite's `executor.resources` says otherwise) and one GPU when its model's spec
says it trains on a GPU (`ModelSpec.gpu`) or `resources.num_gpus` asks for it, and only when the cluster has one.

Data: a worker loads datasets through the disk cache (`harness.cache`) like a local worker, so each node builds a
dataset once and every later cell on it reads the cached copy; on a local instance the workers use the driver's
cache folder (`MATCHBENCH_CACHE`, else ./.matchbench_cache, which the pre-flight has filled already). On a cluster
each node uses `MATCHBENCH_CACHE` as the driver sets it (a path that must be writable on every node), else
.matchbench_cache in its worker's working directory. Splits are kept per worker process, and cells sharing a
dataset and split are submitted one after another.

Artifacts: a cell writes them to a scratch folder on its node. When the node is the driver's (a local instance) the
driver uploads them from there; from another node the task sends the files back inside its result (they travel
through Ray's object store, so size the object store for the largest rankings file), and the driver uploads them.

Faults: a task whose worker process or node dies (killed, out of memory, os._exit) is resubmitted up to `retries`
times, then recorded FAILED with Ray's cause; a task that raised is FAILED at once (run_cell records its
traceback). Ray's own task retries are off, so every attempt is counted here.

A local instance binds to 127.0.0.1 and starts without the dashboard; it stops when the suite ends. The code
must be importable on every node of a cluster (`pip install matchbench[ray]` and the plugins the suite uses).

Internal: plugin authors use `harness.plugin`.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import ConfigError, MatchbenchError
from .executors import Attempts, pin_threads
from .registry import Registry
from .suite import Cell
from .tracking import CellRecord

INSTALL_HINT = "pip install 'matchbench[ray]'"
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20
"""A local instance's object store: records are small (artifacts stay on the node), so a lean one starts faster."""
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CONNECT_TIMEOUT_S = 3.0
CANCEL_GRACE_S = 5.0
"""Seconds cancelled cells get to drop their scratch folders before the local instance stops."""


def import_ray():
    """The ray module, or one clear error naming the extra to install (the CLI exits 2)."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _run_task(cell: Cell, registry: Registry, threads: int,
              driver_node: str | None) -> tuple[CellRecord, dict | None]:
    """One cell in a Ray worker: its record, and its artifact files' bytes when this node is not the driver's
    (`driver_node` None: never ship them)."""
    import ray
    from threadpoolctl import threadpool_limits

    from .runner import discard_scratch, run_cell

    pin_threads(threads)
    with threadpool_limits(limits=threads):
        rec = run_cell(cell, registry)
    if not rec.artifacts or driver_node is None or ray.get_runtime_context().get_node_id() == driver_node:
        return rec, None
    files = {path: Path(local).read_bytes() for path, local in rec.artifacts.items()}
    discard_scratch(rec)
    rec.artifacts, rec.scratch = {}, None
    return rec, files


def _unpack(rec: CellRecord, files: dict | None) -> CellRecord:
    """Write artifact files shipped from another node into a scratch folder here (the runner removes it)."""
    if files:
        rec.scratch = Path(tempfile.mkdtemp(prefix="matchbench-"))
        for path, data in files.items():
            local = rec.scratch / Path(str(path).strip("/"))
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)
            rec.artifacts[path] = local
    return rec


class RayExecutor:
    """Cells as Ray tasks. `jobs`: workers of a local instance (ignored with `address`: the cluster's CPUs decide);
    `retries`: attempts more for a cell whose worker died; `address`: a running cluster (`auto`, `HOST:PORT` or
    `ray://HOST:10001`); `resources`: what each cell asks for (num_cpus, num_gpus, memory in bytes);
    `ship_artifacts`: send artifact files back inside the result (None: only from another node than the driver's)."""

    name = "ray"
    in_process = False

    def __init__(self, jobs: int = 1, retries: int = 0, address: str | None = None,
                 resources: dict[str, Any] | None = None, ship_artifacts: bool | None = None):
        self.ship_artifacts = ship_artifacts  # None: when the cell ran on another node than the driver's
        self.jobs = max(1, int(jobs))
        self.retries = max(0, int(retries))
        self.address = address or None
        self.resources = dict(resources or {})
        unknown = sorted(set(self.resources) - set(RESOURCE_KEYS))
        if unknown:
            raise ConfigError(f"executor.resources: unknown key(s) {', '.join(unknown)}; valid: "
                              f"{', '.join(RESOURCE_KEYS)}")
        if not self.address or _host(self.address) in LOOPBACK:
            # a local instance on 127.0.0.1 only, or a cluster started there (`ray start --node-ip-address
            # 127.0.0.1`): Ray reads this when it is first imported, else it takes 127.0.0.1 for the machine's address
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import_ray()  # fail now, before any data is loaded

    def _cpus_per_cell(self) -> float:
        if "num_cpus" in self.resources:
            return float(self.resources["num_cpus"])
        return 1.0 if self.address else float(max(1, (os.cpu_count() or 1) // self.jobs))

    def _start(self, ray) -> bool:
        """Connect to the cluster, or start a local instance; True when this call started or connected (and so
        must shut down)."""
        if ray.is_initialized():
            return False
        env = {}
        cache = os.environ.get("MATCHBENCH_CACHE")
        if not self.address:
            from .cache import cache_root

            cache = str(cache_root().resolve())
            # the driver's import path, so that plugins registered in code (a test's, a notebook's) import there
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        if cache:
            env["MATCHBENCH_CACHE"] = cache
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level="WARNING",
                                      runtime_env={"env_vars": env})
        if self.address:
            problem = _unreachable(self.address)
            if problem:
                raise ConfigError(problem)
            kwargs["address"] = self.address
        else:
            kwargs.update(num_cpus=math.ceil(self.jobs * self._cpus_per_cell()),  # `jobs` cells at once
                          object_store_memory=LOCAL_OBJECT_STORE_BYTES)
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise MatchbenchError(f"could not start or reach {where}: {exc}") from None
        return True

    def _gpus(self, ray, cell: Cell, registry: Registry, has_gpu: bool) -> float:
        asked = self.resources.get("num_gpus")
        if asked is not None:
            if float(asked) > 0 and not has_gpu:
                raise ConfigError(f"executor.resources.num_gpus: {asked}, but the Ray cluster has no GPU; drop it "
                                  "(cells then run on CPUs)")
            return float(asked)
        wants = bool(getattr(registry.get("model", cell.model.name), "gpu", False))
        return 1.0 if wants and has_gpu else 0.0

    def map(self, cells: list[Cell], registry: Registry,
            progress: Callable[[str, int, int], None] | None = None) -> Iterator[CellRecord]:
        if not cells:
            return
        ray = import_ray()
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}  # ray.init sets its own
        started = self._start(ray)
        try:
            yield from self._run(ray, cells, registry)
        finally:
            if started:
                ray.shutdown()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def _run(self, ray, cells: list[Cell], registry: Registry) -> Iterator[CellRecord]:
        from ray import exceptions as rx

        from .runner import new_record

        died = (rx.WorkerCrashedError, rx.OutOfMemoryError, rx.NodeDiedError, rx.ObjectLostError)
        cpus = self._cpus_per_cell()
        threads = max(1, int(cpus))
        has_gpu = ray.cluster_resources().get("GPU", 0) >= 1
        largest = max((n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
        if cpus > largest:  # Ray would wait for a node that can take the task, forever
            raise ConfigError(f"executor.resources.num_cpus: {cpus:g} per cell, but the largest node of the Ray "
                              f"cluster has {largest:g} CPUs; ask for at most {largest:g}")
        driver_node = {True: "", False: None}.get(self.ship_artifacts, ray.get_runtime_context().get_node_id())
        task = ray.remote(_run_task)
        reg_ref = ray.put(registry)
        attempts = Attempts(self.retries)
        pending: dict[Any, Cell] = {}

        def submit(cell: Cell) -> None:
            opts: dict[str, Any] = dict(num_cpus=cpus, num_gpus=self._gpus(ray, cell, registry, has_gpu),
                                        max_retries=0)
            if self.resources.get("memory"):
                opts["memory"] = int(self.resources["memory"])
            pending[task.options(**opts).remote(cell, reg_ref, threads, driver_node)] = cell

        for cell in cells:
            submit(cell)
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(ref)
                try:
                    rec, files = ray.get(ref)
                except died as exc:
                    if attempts.died(cell, f"worker process died (Ray {type(exc).__name__}: {_first_line(exc)})"):
                        submit(cell)
                    else:
                        yield attempts.final(cell, registry)
                    continue
                except rx.RayError as exc:  # not a death: the task itself could not run (e.g. a plugin that does
                    rec, files = new_record(cell, registry), None  # not import on the node)
                    rec.status, rec.error = "FAILED", f"Ray {type(exc).__name__}: {exc}"
                yield attempts.final(cell, registry, _unpack(rec, files))
        finally:  # interrupted or stopped: cancel what is left (a cancelled cell drops its scratch folder)
            for ref in pending:
                ray.cancel(ref)
            if pending:
                ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_GRACE_S)


def _host(address: str) -> str:
    """The host of a Ray address (HOST:PORT or ray://HOST:PORT); '' for 'auto'."""
    rest = address.split("://", 1)[-1]
    return "" if rest == "auto" else rest.rsplit(":", 1)[0].strip("[]")


def _unreachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why the cluster at `address` cannot be reached, or None: a TCP connection to HOST:PORT must open within
    `timeout` seconds (Ray itself keeps retrying for minutes). 'auto' is left to Ray."""
    import socket

    rest = address.split("://", 1)[-1]
    if rest == "auto":
        return None
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return (f"--address {address}: expected HOST:PORT (the head's GCS port, e.g. 10.0.0.5:6379), "
                "ray://HOST:10001 (Ray Client) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        return (f"--address {address}: no Ray cluster answers at {host}:{port} within {timeout:g} s "
                f"({exc.strerror or exc}); start one there (ray start --head --port {port}) or fix the address")
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

