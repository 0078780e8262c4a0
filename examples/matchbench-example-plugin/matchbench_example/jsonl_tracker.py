"""Tracker `jsonl`: every cell record as one JSON line in `<dir>/<suite>.jsonl`, artifacts copied beside it.

A dependency-free store for a laptop or a CI job: `suites: tracking: {tracker: jsonl, dir: runs}`. The runner
calls a tracker from the driver process only, one record at a time, so appending needs no lock. Resume reads the
FINISHED config hashes back (`finished_hashes`); reports read `runs` (per config hash the latest FINISHED record,
else the latest),
`curve` and `artifact`. A run's id is its config hash and a counter: unique within the file, stable across reads.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from harness.plugin import CellRecord, DataError, Param, Tracker, TrackerSpec, hookimpl


class JsonlTracker(Tracker):
    def __init__(self, dir: str = "matchbench-runs"):
        self.dir = Path(dir).expanduser()
        self.suite: str | None = None

    def _file(self, suite: str) -> Path:
        return self.dir / f"{suite}.jsonl"

    def _records(self, suite: str) -> list[dict[str, Any]]:
        f = self._file(suite)
        if not f.is_file():
            return []
        out = []
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{f}: line {n}: not a JSON record ({e.msg}); delete the line (that cell reruns)") \
                    from None
        return out

    def suite_started(self, suite: str, config: dict[str, Any], n_cells: int) -> None:
        self.suite = suite
        self.dir.mkdir(parents=True, exist_ok=True)

    def cell_finished(self, record: CellRecord) -> None:
        run_id = f"{record.config_hash}-{len(self._records(record.suite))}"
        stored = {}
        for path, local in record.artifacts.items():
            if Path(local).is_file():
                target = self.dir / "artifacts" / run_id / path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(local, target)
                stored[path] = str(target)
        line = {"run_id": run_id, "run_name": record.run_name, "status": record.status,
                "config_hash": record.config_hash, "wall_time": record.wall_time, "params": record.params,
                "metrics": record.metrics, "tags": record.tags, "curves": record.curves, "artifacts": stored,
                "error": record.error, "reason": record.reason}
        with self._file(record.suite).open("a", encoding="utf-8") as h:
            h.write(json.dumps(line, default=str) + "\n")

    def finished_hashes(self, suite: str) -> set[str]:
        return {r["config_hash"] for r in self._records(suite) if r["status"] == "FINISHED"}

    def runs(self, suite: str) -> pd.DataFrame:
        latest: dict[str, dict[str, Any]] = {}  # later lines win, but a FINISHED one only over another FINISHED
        for r in self._records(suite):
            if r["status"] == "FINISHED" or latest.get(r["config_hash"], {}).get("status") != "FINISHED":
                latest[r["config_hash"]] = r
        rows = [{"run_id": r["run_id"], "run_name": r["run_name"], "status": r["status"],
                 "config_hash": r["config_hash"], "wall_time": r["wall_time"],
                 **{f"params.{k}": v for k, v in r["params"].items()},
                 **{f"metrics.{k}": v for k, v in r["metrics"].items()},
                 **{f"tags.{k}": v for k, v in r["tags"].items()}} for r in latest.values()]
        return pd.DataFrame(rows, columns=None if rows else ["run_id", "run_name", "status", "config_hash",
                                                             "wall_time"])

    def _run(self, run_id: str) -> dict[str, Any] | None:
        suites = [self.suite] if self.suite else [f.stem for f in sorted(self.dir.glob("*.jsonl"))]
        return next((r for s in suites for r in self._records(s) if r["run_id"] == run_id), None)

    def curve(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        run = self._run(run_id)
        return [tuple(p) for p in run["curves"].get(metric, [])] if run else []

    def artifact(self, run_id: str, path: str) -> Path | None:
        run = self._run(run_id)
        stored = run["artifacts"].get(path) if run else None
        return Path(stored) if stored and Path(stored).is_file() else None


@hookimpl
def register_trackers(register):
    register(TrackerSpec(
        name="jsonl", factory=JsonlTracker,
        description="one JSON line per cell record in <dir>/<suite>.jsonl, artifacts copied beside it "
                    "(example plugin)",
        params=(Param("dir", "str", "matchbench-runs", "the folder of the .jsonl files and artifacts"),)))
