"""The Python API: what the CLI does, for notebooks.

    from harness import api
    records = api.run("suites/quickstart.yaml", seeds=[0])
    table = api.results("suites/quickstart.yaml")
    model = api.plugin("model", "bpr", factors=32)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .executors import executor_for
from .registry import Registry
from .runner import make_tracker, run_suite
from .suite import Suite, load_suite

__all__ = ["Registry", "plugin", "results", "run", "suite"]

SUITES_DIR = Path("suites")


def resolve_suite_path(suite: str | Path) -> str | Path:
    """A path to a YAML file, or the name of one in ./suites (quickstart -> suites/quickstart.yaml)."""
    p = Path(suite)
    if p.exists() or p.suffix in (".yaml", ".yml"):
        return p
    candidate = SUITES_DIR / f"{suite}.yaml"
    return candidate if candidate.exists() else p


def suite(suite: str | Path | dict, registry: Registry | None = None, **overrides: Any) -> Suite:
    src = suite if isinstance(suite, dict) else resolve_suite_path(suite)
    return load_suite(src, registry or Registry.load(), overrides)


def run(suite_: str | Path | dict, registry: Registry | None = None, jobs: int = 1, executor: str | None = None,
        tracking_uri: str | None = None, rerun: bool = False, report: bool | None = None,
        retries: int | None = None, address: str | None = None, **overrides: Any) -> pd.DataFrame:
    """Run a suite (overrides replace top-level suite keys) and return this invocation's records as a frame.
    `executor` ('local' or 'ray'), `retries` and `address` (a Ray cluster) override the suite's keys."""
    registry = registry or Registry.load()
    s = suite(suite_, registry, **overrides)
    tracker = make_tracker(registry, s, tracking_uri)
    records = run_suite(s, registry, executor_for(s, executor, jobs, retries, address), tracker, rerun=rerun)
    if report if report is not None else s.report.get("enabled", True):
        from .report import write_suite_report

        write_suite_report(tracker, s)
    rows = [{"run_name": r.run_name, "status": r.status, "config_hash": r.config_hash, "wall_time": r.wall_time,
             "reason": r.reason, "error": r.error, **{f"params.{k}": v for k, v in r.params.items()},
             **{f"metrics.{k}": v for k, v in r.metrics.items()}} for r in records]
    return pd.DataFrame(rows)


def results(suite_: str | Path | dict, registry: Registry | None = None,
            tracking_uri: str | None = None) -> pd.DataFrame:
    """The aggregated results table (mean/std over seeds) of a suite, read from the tracker."""
    from .report import results_table, suite_labels

    registry = registry or Registry.load()
    s = suite(suite_, registry)
    return results_table(make_tracker(registry, s, tracking_uri), s.name, s.config_hashes, suite_labels(s))


def plugin(kind: str, name: str, registry: Registry | None = None, **params: Any) -> Any:
    """A configured plugin instance (parameters validated against its schema)."""
    return (registry or Registry.load()).create(kind, name, **params)
