"""Run cells: one cell's journey (dataset -> split -> fit -> scores -> metrics -> record), and a
whole suite (validate, resume, execute, track, report)."""
from __future__ import annotations

import json
import platform
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import yaml

from . import __version__
from .cache import load_dataset, param_hash
from .evaluate import ScoreSource, evaluate_full, evaluate_sampled
from .model import FitContext, default_device
from .registry import Registry
from .suite import Cell, Suite
from .tracking import CellRecord, Tracker
from .truth import truth_metrics


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for dist in ("torch", "numpy", "pandas", "scipy", "mlflow", "pluggy", "pyarrow"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return {"matchbench": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "device": str(default_device()), "torch_threads": torch.get_num_threads(), **versions}


def run_cell(cell: Cell, registry: Registry, progress: Callable[[str, int, int], None] | None = None,
             artifact_dir: Path | None = None) -> CellRecord:
    """Fit once and evaluate every task, candidate protocol and metric on the same scores.
    Never raises for a failing cell: the record says FAILED and carries the traceback."""
    rec = CellRecord(suite=cell.suite, config_hash=cell.config_hash, run_name=cell.run_name, status="FINISHED",
                     params=cell.flat_params(), start_time=time.time())
    rec.tags = {"matchbench.model": cell.model.name, "matchbench.dataset": cell.dataset.name,
                # the suite's labels (harness.suite): the report's rows and columns, read back from these tags
                "matchbench.method": cell.labels.get("method", cell.model.name),
                "matchbench.dataset_label": cell.labels.get("data", cell.dataset.name)}
    rec.tags["matchbench.directions"] = json.dumps(metric_directions(cell, registry), sort_keys=True)
    if cell.skip_reason:
        rec.status, rec.reason, rec.end_time = "SKIPPED", cell.skip_reason, time.time()
        return rec
    try:
        _run(cell, registry, rec, progress, artifact_dir or Path(tempfile.mkdtemp(prefix="matchbench-")))
    except Exception:  # a failing cell is recorded, the suite goes on
        rec.status, rec.error = "FAILED", traceback.format_exc()
    rec.end_time = time.time()
    return rec


def metric_directions(cell: Cell, registry: Registry) -> dict[str, int]:
    """Per metric family, +1 higher is better, -1 lower, 0 descriptive: what the report bolds and tests.
    Metric plugins declare theirs (MetricSpec.direction); the ctr and matching tasks own theirs."""
    from .ctr import DIRECTIONS as CTR
    from .matching import DIRECTIONS as MATCHING

    out = {}
    for name in cell.settings.get("metrics", []):
        try:
            out[name] = int(registry.get("metric", name).direction)
        except Exception:  # noqa: BLE001 - an unknown metric fails the cell later with its own message
            continue
    tasks = set(cell.settings.get("tasks", []))
    out.update(CTR if "ctr" in tasks else {})
    out.update(MATCHING if cell.settings.get("planners") else {})
    return out


def _run(cell: Cell, registry: Registry, rec: CellRecord, progress, out: Path) -> None:
    s = cell.settings
    dataset = load_dataset(registry, cell.dataset.name, cell.dataset.params)
    splitter = registry.create("split", cell.split.name, **cell.split.params)
    split = splitter.split(dataset, cell.seed)
    rec.params.update({f"split.info.{k}": v for k, v in split.info.items() if np.isscalar(v)})
    loss = registry.create("loss", cell.loss.name, **cell.loss.params) if cell.loss else None
    model = registry.create("model", cell.model.name, **cell.model.params)
    spec = registry.get("model", cell.model.name)
    torch.manual_seed(cell.seed)
    np.random.seed(cell.seed % 2**32)

    def log_metric(name: str, value: float, step: int) -> None:
        rec.curves.setdefault(name, []).append((int(step), float(value)))

    ctx = FitContext.for_split(split, dataset, seed=cell.seed, log_metric=log_metric, threads=torch.get_num_threads(),
                               progress=(lambda e, n: progress(cell.run_name, e, n)) if progress else (lambda e, n: None))
    t0 = time.time()
    model.fit(split.train, loss, ctx)
    rec.metrics["time/fit_s"] = time.time() - t0

    t0 = time.time()
    device = ctx.device
    served = spec.serves(cell.model.params)
    tasks = [t for t in s["tasks"] if t in served and t in ("itemrec", "userrec")]
    ranking_truth = bool(served & {"itemrec", "userrec"}) and set(s["tasks"]) != {"ctr"}
    # a ctr-only cell never asks the model for ranking scores (a model may serve ctr without them)
    source = ScoreSource(model, split.test, split.n_items, device) if tasks or ranking_truth else None
    popularity = split.train.item_counts
    rankings, targets, per_query = [], [], []
    for cand in s["candidates"]:
        for task in tasks:
            metrics = {m: registry.get("metric", m) for m in s["metrics"] if task in registry.get("metric", m).tasks}
            if cand["name"] == "full":
                res = evaluate_full(task, source, split.test, s["cutoffs"], metrics, popularity,
                                    exclude_seen=s["exclude_seen"], budget_mib=s["budget_mib"],
                                    block_size=s["block_size"])
                prefix = task
            else:
                key = "-".join([dataset.fingerprint, cell.split.name, param_hash(cell.split.params), str(cell.seed),
                                task, str(cand["negatives"]), cand["weighting"]])
                res = evaluate_sampled(task, source, split.test, s["cutoffs"], metrics, popularity,
                                       cand["negatives"], cand["weighting"], cell.seed, key)
                prefix = f"{task}_s{cand['negatives']}" + ("p" if cand["weighting"] == "popularity" else "")
            rec.metrics.update({f"{prefix}/{k}": v for k, v in res.metrics.items()})
            per_query.append(res.per_query_frame(prefix))
            if s["save_rankings"] and cand["name"] == "full":
                r, t = _ranking_frames(task, res, split.test, dataset)
                rankings.append(r)
                targets.append(t)
    if ranking_truth:  # ranking truths need ranking scores
        rec.metrics.update(truth_metrics(dataset, split.test, source, spec.score_kind, cell.seed))
    if "ctr" in s["tasks"] and "ctr" in served:  # the ctr task: click probabilities on the test impressions
        from .ctr import run_ctr

        rec.metrics.update(run_ctr(model, split, dataset))
    rec.metrics["time/eval_s"] = time.time() - t0
    if s.get("planners"):  # the matching task: every planner on the same scores
        from .matching import run_planners

        rec.metrics.update(run_planners(s["planners"], registry, model, spec.score_kind, split, device, cell.seed,
                                        s["exclude_seen"],
                                        s["budget_mib"], s["block_size"]))

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(cell.config(), default=str)), sort_keys=True))
    (out / "environment.json").write_text(json.dumps(environment(), indent=1))
    rec.artifacts = {"config.yaml": out / "config.yaml", "environment.json": out / "environment.json"}
    if per_query:
        pd.concat(per_query, ignore_index=True).to_parquet(out / "per_query.parquet")
        rec.artifacts["per_query.parquet"] = out / "per_query.parquet"
    if rankings:
        pd.concat(rankings, ignore_index=True).to_parquet(out / "rankings.parquet")
        pd.concat(targets, ignore_index=True).to_parquet(out / "targets.parquet")
        rec.artifacts["rankings.parquet"] = out / "rankings.parquet"
        rec.artifacts["targets.parquet"] = out / "targets.parquet"
    if rec.curves:
        rows = [(name, step, value) for name, pts in rec.curves.items() for step, value in pts]
        pd.DataFrame(rows, columns=["metric", "step", "value"]).to_csv(out / "training_curve.csv", index=False)
        rec.artifacts["training_curve.csv"] = out / "training_curve.csv"


def _ranking_frames(task: str, res, evalset, dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top-K lists and targets in raw ids: (task, query, state, rank, candidate, score), (task, query, state, target)."""
    states = evalset.states
    n, k = res.topk.index.shape
    user_raw = np.asarray(dataset.user_ids, dtype=object)
    item_raw = np.asarray(dataset.item_ids, dtype=object)
    truth = res.truth.tocoo()
    if task == "itemrec":
        q_raw, q_state = user_raw[states.user[res.queries]], res.queries
        cand = item_raw[res.topk.index.ravel()]
        t_cand = item_raw[truth.col]
    else:
        q_raw, q_state = item_raw[res.queries], np.full(len(res.queries), -1)
        cand = user_raw[states.user[res.topk.index.ravel()]]
        t_cand = user_raw[states.user[truth.col]]
    r = pd.DataFrame({"task": task, "query": np.repeat(q_raw, k).astype(str), "state": np.repeat(q_state, k),
                      "rank": np.tile(np.arange(1, k + 1), n), "candidate": cand.astype(str),
                      "score": res.topk.score.ravel()})
    t = pd.DataFrame({"task": task, "query": q_raw[truth.row].astype(str), "state": q_state[truth.row],
                      "target": t_cand.astype(str)})
    return r, t


def make_tracker(registry: Registry, suite: Suite, uri: str | None = None) -> Tracker:
    params = {k: v for k, v in suite.tracking.items() if k != "tracker"}
    if uri:
        params["uri"] = uri
    return registry.create("tracker", suite.tracking.get("tracker", "mlflow"), **params)


def run_suite(suite: Suite, registry: Registry, executor, tracker: Tracker, rerun: bool = False,
              on_record: Callable[[CellRecord, int, int], None] | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> list[CellRecord]:
    """Execute the suite's cells (skipping FINISHED ones unless `rerun`), recording each in the tracker
    from this process only. Returns the records of this invocation."""
    done = set() if rerun else tracker.finished_hashes(suite.name)
    todo = [c for c in suite.cells if c.config_hash not in done]
    tracker.suite_started(suite.name, suite.raw, len(todo))
    records: list[CellRecord] = []
    status = "FAILED"
    try:
        skipped = [c for c in todo if c.skip_reason]
        for cell in skipped:
            rec = run_cell(cell, registry)
            tracker.cell_finished(rec)
            records.append(rec)
            if on_record:
                on_record(rec, len(records), len(todo))
        for rec in executor.map([c for c in todo if not c.skip_reason], registry, progress):
            tracker.cell_finished(rec)
            records.append(rec)
            if on_record:
                on_record(rec, len(records), len(todo))
        status = "FINISHED"
    finally:
        tracker.suite_finished(status)
    return records


