"""A suite's tracked results as plain files, and back: `matchbench export` / `matchbench import`.

A tracking store is one machine's (a local SQLite file, a team's server); a suite's results often have to move:
to a colleague, from a cloud machine back to a laptop, from an old store to a server, or into the repository
beside the report they produced, so that `matchbench report` and `matchbench check` can be run again on them
without the hours of training. MLflow has no copy between stores (the separate mlflow-export-import package
predates MLflow 3); an archive holds what matchbench's reports and claims read, through the `Tracker` interface,
so it works for any tracker:

    results/<suite>/manifest.json       format, suite, when, by which matchbench, how many cells
    results/<suite>/cells.jsonl         one cell per line: name, config hash, status, params, metrics, curves,
                                        tags, reason, error, start and end times, the artifact paths kept
    results/<suite>/artifacts/<hash>/   the cell's per_query.parquet, config.yaml, environment.json, error.txt

An archive holds the newest record of each configuration of the suite's current grid (what reports read).
Not kept: saved rankings (`save_rankings`: rankings.parquet, targets.parquet, often larger than everything else)
and a tuned cell's trials (its nested runs; the cell's own tuned parameters and metrics are kept). Importing writes
every archived cell whose configuration has no FINISHED record in the store yet, under a parent run that names the
archive, so importing twice adds nothing and an import never hides a result the store already has.
"""
from __future__ import annotations

import json
import math
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import ConfigError
from .tracking import CellRecord, Tracker

FORMAT = "matchbench-archive/1"
ARTIFACTS = ("per_query.parquet", "config.yaml", "environment.json", "error.txt")
"""The artifacts an archive keeps: what reports and claims read, and what says how a cell was run."""
CURVES = "training_curve.csv"
"""The artifact a cell's curves are read from (the runner writes every curve into it)."""
TRACKER_TAGS = ("matchbench.suite", "matchbench.kind", "matchbench.config_hash", "matchbench.status",
                "matchbench.reason", "matchbench.error", "matchbench.tracking_error", "matchbench.killed_reason")
"""Tags a tracker sets itself when it records a cell: not archived (the import's tracker sets them again)."""


def default_folder(suite_name: str) -> Path:
    from .report.plots import safe_name

    return Path("results") / safe_name(suite_name)


def _plain(value: Any) -> Any:
    """A cell field as JSON: NaN and missing values become None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _seconds(stamp: Any) -> float:
    return 0.0 if stamp is None or pd.isna(stamp) else pd.Timestamp(stamp).timestamp()


def _curves(tracker: Tracker, run_id: str) -> dict[str, list[list[float]]]:
    path = tracker.artifact(run_id, CURVES)
    if path is None:
        return {}
    frame = pd.read_csv(path)
    return {str(name): [[int(s), float(v)] for s, v in zip(g["step"], g["value"], strict=True)]
            for name, g in frame.groupby("metric", sort=True)}


def export_suite(tracker: Tracker, suite, folder: Path) -> dict[str, int]:
    """Write `suite`'s results (the newest record of each configuration of its grid) to `folder`.
    Returns counts: cells written, records of configurations no longer in the grid (left out), tuned cells
    (whose trials are left out)."""
    runs = tracker.runs(suite.name)
    grid = set(suite.config_hashes)
    in_grid = runs[runs["config_hash"].isin(grid)] if len(runs) else runs
    if in_grid.empty:
        raise ConfigError(f"suite {suite.name!r} has no recorded cell in this store to export; run it first "
                          f"(matchbench run {suite.source}) or name the store that has them (--tracking-uri)")
    folder.mkdir(parents=True, exist_ok=True)
    lines, tuned = [], 0
    for _, row in in_grid.iterrows():
        curves = _curves(tracker, row["run_id"])
        params = {k[len("params."):]: v for k, v in row.items() if k.startswith("params.") and not pd.isna(v)}
        metrics = {k[len("metrics."):]: float(v) for k, v in row.items()
                   if k.startswith("metrics.") and not pd.isna(v)}
        metrics = {k: v for k, v in metrics.items() if k != "wall_time_s" and k not in curves}
        tags = {k[len("tags."):]: str(v) for k, v in row.items() if k.startswith("tags.") and not pd.isna(v)}
        tags = {k: v for k, v in tags.items() if not k.startswith("mlflow.") and k not in TRACKER_TAGS}
        tuned += "tune/trials" in metrics
        kept = []
        for art in ARTIFACTS:
            local = tracker.artifact(row["run_id"], art)
            if local is not None:
                dst = folder / "artifacts" / row["config_hash"] / art
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(Path(local).read_bytes())
                kept.append(art)
        lines.append(json.dumps({
            "config_hash": row["config_hash"], "run_name": row["run_name"], "status": row["status"],
            "params": params, "metrics": metrics, "curves": curves, "tags": tags,
            "reason": _plain(row.get("reason")), "error": _plain(row.get("error")),
            "start_time": _seconds(row.get("start_time")), "end_time": _seconds(row.get("end_time")),
            "artifacts": kept}, sort_keys=True))
    (folder / "cells.jsonl").write_text("\n".join(lines) + "\n")
    from . import __version__

    manifest = {"format": FORMAT, "suite": suite.name, "source": str(suite.source), "cells": len(lines),
                "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "matchbench": __version__}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return {"cells": len(lines), "not_in_grid": int(len(runs) - len(in_grid)), "tuned": int(tuned)}


def read_archive(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest and the cells of an archive, every problem named with its file and line."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise ConfigError(f"{folder}: not a matchbench archive (no manifest.json); write one with "
                          "`matchbench export SUITE --out FOLDER`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{manifest_path}: not valid JSON ({exc}); export the suite again") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ConfigError(f"{manifest_path}: format {manifest.get('format') if isinstance(manifest, dict) else None!r}"
                          f" is not {FORMAT!r}; export the suite again with this matchbench")
    cells, problems = [], []
    need = ("config_hash", "run_name", "status", "params", "metrics")
    cells_path = folder / "cells.jsonl"
    if not cells_path.is_file():
        raise ConfigError(f"{folder}: no cells.jsonl beside manifest.json; export the suite again")
    for no, line in enumerate(StringIO(cells_path.read_text()), start=1):
        if not line.strip():
            continue
        try:
            cell = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{cells_path}, line {no}: not valid JSON ({exc.msg})")
            continue
        missing = [k for k in need if not isinstance(cell, dict) or k not in cell]
        if missing:
            problems.append(f"{cells_path}, line {no}: missing {', '.join(missing)}")
            continue
        arts = folder / "artifacts" / str(cell["config_hash"])
        absent = [a for a in cell.get("artifacts", []) if not (arts / a).is_file()]
        if absent:
            problems.append(f"{cells_path}, line {no}: artifact(s) {', '.join(absent)} missing under {arts}")
            continue
        cells.append(cell)
    if problems:
        raise ConfigError(problems + ["fix the files or export the suite again"])
    return manifest, cells


def import_archive(tracker: Tracker, suite, folder: Path) -> dict[str, int]:
    """Record every archived cell of `suite` whose configuration has no FINISHED record in `tracker` yet. Returns
    counts: imported, already in the store (left alone), not in the suite's current grid (imported, but reports,
    which read the current grid, leave them out)."""
    manifest, cells = read_archive(folder)
    if manifest.get("suite") != suite.name:
        raise ConfigError(f"{folder / 'manifest.json'}: the archive holds suite {manifest.get('suite')!r}, not "
                          f"{suite.name!r}; name that suite, or the archive of this one")
    done = tracker.finished_hashes(suite.name)
    todo = [c for c in cells if c["config_hash"] not in done]
    grid = set(suite.config_hashes)
    counts = {"imported": len(todo), "already": len(cells) - len(todo),
              "not_in_grid": sum(c["config_hash"] not in grid for c in cells)}
    if not todo:
        return counts
    tracker.suite_started(suite.name, {"imported_from": str(folder), "exported": manifest.get("exported"),
                                       "archive_source": manifest.get("source")}, len(todo))
    status = "FINISHED"
    try:
        for c in todo:
            arts = folder / "artifacts" / c["config_hash"]
            tracker.cell_finished(CellRecord(
                suite=suite.name, config_hash=c["config_hash"], run_name=c["run_name"], status=c["status"],
                params=dict(c["params"]), metrics={k: float(v) for k, v in c["metrics"].items()},
                curves={k: [(int(s), float(v)) for s, v in pts] for k, pts in c.get("curves", {}).items()},
                tags=dict(c.get("tags", {})), artifacts={a: arts / a for a in c.get("artifacts", [])},
                error=c.get("error"), reason=c.get("reason"), start_time=float(c.get("start_time") or 0.0),
                end_time=float(c.get("end_time") or 0.0)))
    except BaseException:
        status = "FAILED"
        raise
    finally:
        tracker.suite_finished(status)
    return counts
