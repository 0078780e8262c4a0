"""Results as frames: a suite's cell records, labelled and aggregated over seeds.

A cell's method and data labels are computed once, when the suite expands its grid (`harness.suite`), and the
runner records them as run tags (`matchbench.method`, `matchbench.dataset_label`); the report reads them back and
never rebuilds them from parameters. Given the suite, its labels win for the configurations it has now: a label
names what varies in the grid, so a suite that grew since a run was recorded (or runs recorded before the tags
carried these labels) still gets one consistent naming. Everything else here reads the tracker's runs frame only.

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from ..tracking import Tracker

# logged while fitting (training curves, early-stopping validation, timings, a tuned cell's study) or describing the
# split (its cold items): plotted or listed, never a results table
CURVE_PREFIXES = ("train/", "time/", "valid/", "tune/", "split/")
TRUTH = "truth"
RESULT_COLUMNS = ["task", "method", "dataset", "metric", "mean", "std", "n_seeds"]
LONG_COLUMNS = ["task", "method", "dataset", "metric", "seed", "value", "run_id", "direction"]
_K = re.compile(r"^(?P<family>.+?)_(?P<k>\d+)$")


def metric_key(metric: str) -> tuple:
    """(family, K) of `ndcg_10`, (metric, -1) without a cut-off: the order of a table's columns."""
    m = _K.match(metric)
    return (m["family"], int(m["k"])) if m else (metric, -1)


def direction(metric: str, declared: dict[str, int] | None = None) -> int:
    """+1 higher is better, -1 lower is better, 0 descriptive (not ranked, not tested): as the cell's
    `matchbench.directions` tag declares it (metric plugins and tasks own their directions); counts are
    descriptive; runs logged without the tag fall back to "a loss is lower-is-better, the rest higher"."""
    family = metric_key(metric)[0].rsplit("/", 1)[-1]  # matching metrics are <planner>/<metric>
    if family.startswith("n_"):
        return 0
    if declared and family in declared:
        return int(declared[family])
    return -1 if family.endswith("loss") else 1


def _declared(tag: object) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(tag).items()} if isinstance(tag, str) else {}
    except (ValueError, TypeError, AttributeError):
        return {}


def _first(df: pd.DataFrame, columns: Iterable[str], default: str) -> pd.Series:
    """Per row, the first of `columns` that has a value, else `default`."""
    out = pd.Series(default, index=df.index, dtype=object)
    for col in reversed(list(columns)):
        if col in df:
            out = df[col].where(df[col].notna(), out)
    return out.astype(str)


def suite_labels(suite: Any) -> dict[str, dict[str, str]]:
    """Config hash -> the labels a `harness.suite.Suite` gave that cell (`method`, `data`)."""
    return {c.config_hash: c.labels for c in suite.cells}


def labelled(runs: pd.DataFrame, labels: Mapping[str, Mapping[str, str]] | None = None) -> pd.DataFrame:
    """Add `_method`, `_dataset` and `_seed`: the labels of `labels` (config hash -> the suite's labels) for the
    suite's configurations, else the labels the run was tagged with, else the model and dataset names."""
    df = runs.copy()
    if labels and "config_hash" in df:
        given = df["config_hash"].map(lambda h: labels.get(h, {}) if isinstance(h, str) else {})
        df["_suite.method"] = given.map(lambda g: g.get("method"))
        df["_suite.data"] = given.map(lambda g: g.get("data"))
    df["_method"] = _first(df, ["_suite.method", "tags.matchbench.method", "params.model", "tags.matchbench.model",
                                "run_name"], "?")
    df["_dataset"] = _first(df, ["_suite.data", "tags.matchbench.dataset_label", "params.dataset"], "data")
    df["_seed"] = _first(df, ["params.seed"], "0")
    return df.drop(columns=["_suite.method", "_suite.data"], errors="ignore")


def _metric_columns(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(column, task, metric) for every `metrics.<task>/<metric>` column that belongs in a results table."""
    out = []
    for col in df.columns:
        if not col.startswith("metrics."):
            continue
        name = col[len("metrics."):]
        if "/" not in name or name.startswith(CURVE_PREFIXES):
            continue  # wall_time_s, training curves, timings
        task, metric = name.split("/", 1)
        out.append((col, task, metric))
    return out


def long_frame(tracker: Tracker, suite: str, configs: Iterable[str] | None = None,
               labels: Mapping[str, Mapping[str, str]] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labelled runs frame, long frame of FINISHED per-seed values: task, method, dataset, metric, seed, value,
    run_id, direction). `configs`: the config hashes of the suite as it now stands; records of configurations it no
    longer has (a default or a parameter that changed since) are left out, so they cannot appear as extra methods.
    `labels`: the suite's labels per config hash (`suite_labels`), which win over the run tags."""
    runs = tracker.runs(suite)
    if configs is not None and runs is not None and "config_hash" in runs:
        runs = runs[runs["config_hash"].isin(set(configs))]
    if runs is None or runs.empty:
        return pd.DataFrame(), pd.DataFrame(columns=LONG_COLUMNS[:-1])
    df = labelled(runs, labels)
    fin = df[df["status"] == "FINISHED"]
    if "start_time" in fin:  # newest first, so the newest run wins where two configurations share a label
        fin = fin.sort_values("start_time", ascending=False, kind="stable")
    tag = "tags.matchbench.directions"
    declared = (fin[tag] if tag in fin else pd.Series(None, index=fin.index)).map(_declared)
    parts = []
    for col, task, metric in _metric_columns(fin):
        vals = pd.to_numeric(fin[col], errors="coerce")
        keep = vals.notna()
        if not keep.any():
            continue
        parts.append(pd.DataFrame({"task": task, "method": fin.loc[keep, "_method"],
                                   "dataset": fin.loc[keep, "_dataset"], "metric": metric,
                                   "seed": fin.loc[keep, "_seed"], "value": vals[keep],
                                   "run_id": fin.loc[keep, "run_id"],
                                   "direction": [direction(metric, d) for d in declared[keep]]}))
    long = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=LONG_COLUMNS)
    # one value per (task, method, dataset, metric, seed): an edited suite can leave an older configuration
    # under the same label (e.g. a default that changed); the newest run counts
    long = long.drop_duplicates(["task", "method", "dataset", "metric", "seed"], keep="first")
    return df, long


def aggregate(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std and count over seeds, rows in task, dataset, metric (family, K), method order."""
    if long.empty:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    order = {k: i for i, k in enumerate(dict.fromkeys(long["task"]))}
    g = long.groupby(["task", "method", "dataset", "metric"], sort=False)["value"]
    out = g.agg(mean="mean", std="std", n_seeds="count").reset_index()
    out["_t"] = out["task"].map(order)
    out["_m"] = out["metric"].map(metric_key)
    out = out.sort_values(["_t", "dataset", "_m", "method"], kind="stable").drop(columns=["_t", "_m"])
    out["n_seeds"] = out["n_seeds"].astype(int)
    return out.reset_index(drop=True)[RESULT_COLUMNS]


def keep_metrics(frame: pd.DataFrame, metrics: Iterable[str] | None) -> pd.DataFrame:
    """Rows whose metric is named in `metrics`, either exactly (`ndcg_10`), by family (`ndcg`: every K) or, for
    planner metrics `<planner>/<metric>`, by the metric (`precision`: every planner). Truth metrics always stay."""
    if not metrics or frame.empty:
        return frame
    want = set(metrics)
    keep = frame["metric"].map(lambda m: m in want or metric_key(m)[0] in want
                               or m.rsplit("/", 1)[-1] in want) | (frame["task"] == TRUTH)
    return frame[keep]


def results_table(tracker: Tracker, suite: str, configs: Iterable[str] | None = None,
                  labels: Mapping[str, Mapping[str, str]] | None = None) -> pd.DataFrame:
    """FINISHED cells aggregated over seeds: one row per (task, method, dataset, metric) with mean, std
    (sample std, NaN for one seed) and n_seeds. Task `truth` holds the truth metrics, if any. `configs` and
    `labels` as in `long_frame`. A suite with tuned cells gets a `tuned` column: the parameters their studies
    chose (harness.report.tuning)."""
    from .tuning import with_tuned

    df, long = long_frame(tracker, suite, configs, labels)
    return with_tuned(aggregate(long), df)


def results_csv(tracker: Tracker, suite: str, configs: Iterable[str] | None = None,
                labels: Mapping[str, Mapping[str, str]] | None = None) -> str:
    return results_table(tracker, suite, configs, labels).to_csv(index=False)


def results_json(tracker: Tracker, suite: str, configs: Iterable[str] | None = None,
                 labels: Mapping[str, Mapping[str, str]] | None = None) -> str:
    frame = results_table(tracker, suite, configs, labels)
    records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
               for r in frame.to_dict(orient="records")]
    return json.dumps(records, indent=1, default=str)
