"""Run cells and suites: a cell travels its journey (`harness.journey`) and becomes a record; a suite is validated,
resumed (FINISHED cells skipped), executed and tracked from this process only. Internal: plugin authors use
`harness.plugin`."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .cache import keep_last_loaded
from .errors import ConfigError
from .journey import Journey, environment, travel
from .preflight import by_data_group, preflight
from .registry import Registry
from .suite import Cell, Suite
from .tracking import CellRecord, Tracker

__all__ = ["run_cell", "run_suite", "make_tracker", "metric_directions", "environment", "new_record"]


def run_cell(cell: Cell, registry: Registry, progress: Callable[[str, int, int], None] | None = None,
             artifact_dir: Path | None = None) -> CellRecord:
    """Fit once and evaluate every task, candidate protocol and metric on the same scores.
    Never raises for a failing cell: the record says FAILED and carries the traceback."""
    rec = new_record(cell, registry)
    if cell.skip_reason:
        rec.status, rec.reason, rec.end_time = "SKIPPED", cell.skip_reason, time.time()
        return rec
    try:
        journey = Journey(cell, registry, rec, (lambda e, n: progress(cell.run_name, e, n)) if progress
                          else (lambda e, n: None))
        if artifact_dir is None:  # ours: removed once the tracker has the artifacts (discard_scratch)
            rec.scratch = artifact_dir = Path(tempfile.mkdtemp(prefix="matchbench-"))
        travel(journey, artifact_dir)
    except Exception:  # a failing cell is recorded, the suite goes on
        rec.status, rec.error = "FAILED", traceback.format_exc()
    except BaseException:  # interrupted: nobody will upload what the cell wrote
        discard_scratch(rec)
        raise
    rec.end_time = time.time()
    return rec


def new_record(cell: Cell, registry: Registry) -> CellRecord:
    """A cell's record before it runs: FINISHED until something fails, with its params and the tags the report
    reads (also the record of a cell whose worker died, harness.executors)."""
    rec = CellRecord(suite=cell.suite, config_hash=cell.config_hash, run_name=cell.run_name, status="FINISHED",
                     params=cell.flat_params(), start_time=time.time())
    rec.tags = {"matchbench.model": cell.model.name, "matchbench.dataset": cell.dataset.name,
                # the suite's labels (harness.suite): the report's rows and columns, read back from these tags
                "matchbench.method": cell.labels.get("method", cell.model.name),
                "matchbench.dataset_label": cell.labels.get("data", cell.dataset.name)}
    rec.tags["matchbench.directions"] = json.dumps(metric_directions(cell, registry), sort_keys=True)
    if cell.study_worker:
        rec.tags["matchbench.study_worker"] = str(cell.study_worker)
    return rec


def discard_scratch(rec: CellRecord) -> None:
    """Remove the temporary folder run_cell made for a cell's artifacts (once the tracker has recorded them);
    MATCHBENCH_KEEP_TMP keeps it, for debugging."""
    if rec.scratch is not None and os.environ.get("MATCHBENCH_KEEP_TMP") is None:
        shutil.rmtree(rec.scratch, ignore_errors=True)


def metric_directions(cell: Cell, registry: Registry) -> dict[str, int]:
    """Per metric family, +1 higher is better, -1 lower, 0 descriptive: what the report bolds and tests.
    Metric plugins declare theirs (MetricSpec.direction); the ctr and matching tasks own theirs."""
    from .ctr import DIRECTIONS as CTR
    from .matching import DIRECTIONS as MATCHING

    out = {}
    out = {name: int(registry.get("metric", name).direction) for name in cell.settings.metrics}
    out.update(CTR if "ctr" in cell.settings.tasks else {})
    out.update(MATCHING if cell.settings.planners else {})
    return out


def with_study_helpers(cells: list[Cell], executor, on_note: Callable[[str], None] | None = None) -> list[Cell]:
    """Each tuned cell with `parallel: N` preceded by its N − 1 study helpers (harness.tuning), so that they start
    beside it on the executor's workers. Not where the executor runs cells one at a time in this process, nor
    where the study lives in memory (nothing to share): there the cell runs its trials alone."""
    out = []
    for cell in cells:
        n = cell.model.tune.parallel if cell.model.tune is not None else 1
        if n > 1 and (getattr(executor, "in_process", False) or not cell.study_storage):
            if on_note:
                why = ("the executor runs one cell at a time in this process" if cell.study_storage
                       else "its study lives in memory (the tracking store has no sidecar study storage)")
                on_note(f"{cell.run_name}: parallel: {n} ignored, {why}; its trials run one after another")
            tune = cell.model.tune.model_copy(update={"parallel": 1})  # not in the config: the hash stays
            cell = replace(cell, model=replace(cell.model, tune=tune))
        else:
            out.extend(replace(cell, study_worker=i) for i in range(1, n))
        out.append(cell)
    return out


def make_tracker(registry: Registry, suite: Suite, uri: str | None = None) -> Tracker:
    name = suite.tracking.get("tracker", "mlflow")
    params = {k: v for k, v in suite.tracking.items() if k != "tracker"}
    if uri:
        if "uri" not in registry.get("tracker", name).schema.names():
            raise ConfigError(f"tracker {name!r} takes no uri; drop --tracking-uri or set its parameters in the "
                              "suite's tracking: block")
        params["uri"] = uri
    return registry.create("tracker", name, **params)


def run_suite(suite: Suite, registry: Registry, executor, tracker: Tracker, rerun: bool = False,
              on_record: Callable[[CellRecord, int, int], None] | None = None,
              progress: Callable[[str, int, int], None] | None = None,
              on_note: Callable[[str], None] | None = None) -> list[CellRecord]:
    """Execute the suite's cells (skipping FINISHED ones unless `rerun`), recording each in the tracker
    from this process only. Returns the records of this invocation.

    The data of the cells to run is loaded and split first (`harness.preflight`): a data problem raises a
    DataError before anything is trained or recorded. However the suite ends (an exception, Ctrl-C), the
    tracker's invocation is closed: FAILED, or KILLED when interrupted, so no run is left RUNNING. Runs that a
    driver killed outright (kill -9, a lost machine) left RUNNING are marked KILLED first (`on_note` hears of it);
    they never count as finished."""
    closed = tracker.close_abandoned(suite.name)
    if closed and on_note:
        on_note(f"{closed} run(s) of {suite.name!r} left RUNNING by a driver that died were marked KILLED")
    done = set() if rerun else tracker.finished_hashes(suite.name)
    todo = [c for c in suite.cells if c.config_hash not in done]
    studies = getattr(tracker, "study_storage", lambda: None)()  # tuned cells' Optuna studies (harness.tuning)
    todo = [replace(c, study_storage=studies) if c.model.tune is not None else c for c in todo]
    if rerun and studies:  # --rerun tunes again: the studies of the cells it redoes start empty
        from .tuning import forget_studies

        forget_studies(studies, [c.config_hash for c in todo if c.model.tune is not None and not c.skip_reason])
    runnable = by_data_group(with_study_helpers([c for c in todo if not c.skip_reason], executor, on_note))
    records: list[CellRecord] = []

    def record(rec: CellRecord) -> None:
        if "matchbench.study_worker" in rec.tags:  # a study helper's trials are its cell's record
            discard_scratch(rec)
            if rec.status != "FINISHED" and on_note:
                on_note(f"{rec.run_name}: {rec.status} ({(rec.reason or rec.error or '').strip()[-300:]}); "
                        "the cell runs the study's remaining trials itself")
            return
        try:
            tracker.cell_finished(rec)
        finally:
            discard_scratch(rec)
        records.append(rec)
        if on_record:
            on_record(rec, len(records), len(todo))

    with keep_last_loaded() if getattr(executor, "in_process", False) else nullcontext():
        preflight(runnable, registry)
        status = "FAILED"
        try:
            tracker.suite_started(suite.name, suite.raw, len(todo))
            for cell in (c for c in todo if c.skip_reason):
                record(run_cell(cell, registry))
            for rec in executor.map(runnable, registry, progress):
                record(rec)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            tracker.suite_finished(status)
    return records


