"""The check every tracker plugin passes: a minimal lifecycle in a temporary working directory (so a relative
store lands there), without a NotImplementedError.

Internal: plugin authors run these checks through `harness.testing`; this module may change between versions.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time

from ..tracking import CellRecord
from .base import PluginCase, check, require

SUITE, HASH = "conformance", "conformance-cell-0"


@contextlib.contextmanager
def inside(folder: str):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@check("tracker")
def check_tracker_lifecycle(case: PluginCase) -> None:
    """suite_started, cell_finished with a tiny FINISHED CellRecord, suite_finished; then finished_hashes names
    the cell."""
    with tempfile.TemporaryDirectory(prefix="matchbench-conformance-") as folder, inside(folder):
        tracker = case.create()
        tracker.suite_started(SUITE, {"name": SUITE}, 1)
        now = time.time()
        tracker.cell_finished(CellRecord(suite=SUITE, config_hash=HASH, run_name="conformance cell", status="FINISHED",
                                         params={"model": "constant", "seed": 0},
                                         metrics={"itemrec/recall_10": 0.5}, start_time=now - 1.0, end_time=now))
        tracker.suite_finished("FINISHED")
        done = tracker.finished_hashes(SUITE)
        require(HASH in done, f"finished_hashes({SUITE!r}) = {sorted(done)!r} lacks the FINISHED cell {HASH!r}")
