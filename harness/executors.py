"""Executors run cells and yield their records as they finish. `local` is a process pool with the
CPU's threads divided between workers; `jobs=1` runs in this process (progress per epoch).
A Ray executor can implement the same `map` later.

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Callable, Iterator

from .registry import Registry
from .suite import Cell
from .tracking import CellRecord

_WORKER_REGISTRY: Registry | None = None


def _init_worker(threads: int, registry_blob: bytes) -> None:
    """Pin the worker's threads and unpickle the driver's registry: plugins registered in code (a notebook's
    `Registry.load(extra=[...])`) exist in the workers too, not only the entry-point ones."""
    global _WORKER_REGISTRY
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import cloudpickle
    import torch

    torch.set_num_threads(threads)
    _WORKER_REGISTRY = cloudpickle.loads(registry_blob)


def _run_in_worker(cell: Cell) -> CellRecord:
    from threadpoolctl import threadpool_limits

    from .runner import run_cell

    with threadpool_limits(limits=int(os.environ.get("OMP_NUM_THREADS", "1"))):
        return run_cell(cell, _WORKER_REGISTRY)


class LocalExecutor:
    def __init__(self, jobs: int = 1):
        self.jobs = max(1, min(int(jobs), os.cpu_count() or 1))  # never more processes than cores

    @property
    def in_process(self) -> bool:
        """Cells run in the driver's process (what was loaded before them can serve them)."""
        return self.jobs == 1

    def map(self, cells: list[Cell], registry: Registry,
            progress: Callable[[str, int, int], None] | None = None) -> Iterator[CellRecord]:
        from threadpoolctl import threadpool_limits

        from .runner import discard_scratch, run_cell

        if self.jobs == 1 or len(cells) <= 1:
            for cell in cells:
                with threadpool_limits(limits=1, user_api="blas"):
                    yield run_cell(cell, registry, progress)
            return
        import cloudpickle

        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        blob = cloudpickle.dumps(registry)  # by value where needed: classes defined in a notebook or a test
        with ProcessPoolExecutor(max_workers=min(self.jobs, len(cells)), mp_context=get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads, blob)) as pool:
            futures = [pool.submit(_run_in_worker, c) for c in cells]
            handed: set[int] = set()
            try:
                for fut in as_completed(futures):
                    handed.add(id(fut))
                    yield fut.result()
            except BaseException:  # interrupted, or the caller stopped: start no more cells, and drop the
                for fut in futures:  # artifact folders of records nobody will read
                    fut.cancel()
                for fut in futures:
                    if id(fut) not in handed and fut.done() and not fut.cancelled() and fut.exception() is None:
                        discard_scratch(fut.result())
                raise


EXECUTORS = {"local": LocalExecutor}
