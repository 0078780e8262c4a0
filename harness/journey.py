"""One cell's journey, as a short pipeline of named steps over one state object:

    load → split → fit → score → evaluate (one typed request per task) → truth → ctr → plan → record

Each step reads what the steps before it left in the `Journey` and adds its own; nothing reaches back upstream.
Internal: plugin authors use `harness.plugin`.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import yaml

from . import __version__
from .cache import load_dataset, param_hash, split_dataset
from .data import Dataset
from .evaluate import EvalRequest, ScoreSource, TaskResult
from .model import FitContext, Model, default_device
from .registry import Registry
from .specs import ModelSpec
from .splits import SplitData, treat_cold_items
from .suite import Cell
from .tracking import CellRecord

RANKING_TASKS = ("itemrec", "userrec")


@dataclass
class Journey:
    """What one cell has produced so far; each step fills its part."""

    cell: Cell
    registry: Registry
    record: CellRecord
    progress: Callable[[int, int], None] = lambda epoch, total: None
    dataset: Dataset | None = None
    split: SplitData | None = None
    spec: ModelSpec | None = None
    model: Model | None = None
    device: torch.device = field(default_factory=default_device)
    source: ScoreSource | None = None
    served: set[str] = field(default_factory=set)
    results: list[tuple[EvalRequest, TaskResult]] = field(default_factory=list)
    on_metric: Callable[[str, float, int], None] | None = None
    """Hears every training-curve point the model logs (a tuning trial's pruner, harness.tuning)."""

    @property
    def settings(self):
        return self.cell.settings

    def wants_ranking_scores(self) -> bool:
        """A ctr-only suite never asks the model for ranking scores (a model may serve ctr without them)."""
        return bool(self.served & set(RANKING_TASKS)) and set(self.settings.tasks) != {"ctr"}


def load(j: Journey) -> None:
    j.dataset = load_dataset(j.registry, j.cell.dataset.name, j.cell.dataset.params)


def split(j: Journey) -> None:
    cell = j.cell
    j.split, cold = treat_cold_items(split_dataset(j.registry, j.dataset, cell.split.name, cell.split.params,
                                                   cell.seed), j.settings.cold_items)
    j.record.params.update({f"split.info.{k}": v for k, v in j.split.info.items() if np.isscalar(v)})
    j.record.metrics.update({f"split/{k}": v for k, v in cold.items()})


def tune(j: Journey) -> None:
    """A model entry's `tune:` block: an Optuna study on the split's validation set chooses the parameters the fit
    step then fits and the test set measures once (harness.tuning); nothing for other cells."""
    if j.cell.study_worker:
        from .tuning import assist_study

        assist_study(j)
    elif j.cell.model.tune is not None:
        from .tuning import run_study

        run_study(j)


def fit(j: Journey) -> None:
    cell, rec = j.cell, j.record
    loss = j.registry.create("loss", cell.loss.name, **cell.loss.params) if cell.loss else None
    j.model = j.registry.create("model", cell.model.name, **cell.model.params)
    j.spec = j.registry.get("model", cell.model.name)
    j.served = j.spec.serves(cell.model.params)
    torch.manual_seed(cell.seed)
    np.random.seed(cell.seed % 2**32)

    def log_metric(name: str, value: float, step: int) -> None:
        rec.curves.setdefault(name, []).append((int(step), float(value)))
        if j.on_metric is not None:
            j.on_metric(name, value, step)

    ctx = FitContext.for_split(j.split, j.dataset, set_back=j.spec.set_back, seed=cell.seed, device=j.device,
                               log_metric=log_metric, progress=j.progress)
    if ctx.valid is not None and not j.settings.exclude_seen:
        # early stopping measures what the test measures: with exclude_seen false, repeats count as targets
        ctx.valid = replace(ctx.valid, exclude=None)
    t0 = time.time()
    rec.params["fit.n_train_events"] = len(ctx.train)
    j.model.fit(ctx.train, loss, ctx)
    rec.metrics["time/fit_s"] = time.time() - t0
    rec.metrics["time/eval_s"] = 0.0


def score(j: Journey) -> None:
    if j.wants_ranking_scores():
        t0 = time.time()
        j.source = ScoreSource(j.model, j.split.test, j.split.n_items, j.device)
        j.record.metrics["time/eval_s"] += time.time() - t0


def requests(j: Journey) -> list[EvalRequest]:
    """One evaluation request per (candidate protocol, ranking task) the suite asks for and the model serves."""
    s, out = j.settings, []
    specs = {m: j.registry.get("metric", m) for m in s.metrics}
    for cand in s.candidates:
        for task in (t for t in s.tasks if t in RANKING_TASKS and t in j.served):
            out.append(EvalRequest(task=task, cutoffs=s.cutoffs, metrics={m: sp for m, sp in specs.items()
                                                                        if task in sp.tasks},
                                   negatives=getattr(cand, "negatives", None),
                                   weighting=getattr(cand, "weighting", "uniform"), exclude_seen=s.exclude_seen,
                                   budget_mib=s.budget_mib, block_size=s.block_size))
    return out


def evaluate(j: Journey) -> None:
    t0 = time.time()
    cell, popularity = j.cell, j.split.train.item_counts
    for req in requests(j):
        key = "-".join([j.dataset.fingerprint, cell.split.name, param_hash(cell.split.params), str(cell.seed),
                        req.task, str(req.negatives), req.weighting])
        res = req.run(j.source, j.split.test, popularity, cell.seed, key)
        j.record.metrics.update({f"{req.prefix}/{k}": v for k, v in res.metrics.items()})
        j.results.append((req, res))
    j.record.metrics["time/eval_s"] += time.time() - t0


def truth(j: Journey) -> None:
    """Ranking truths (a dataset that knows its truth) need ranking scores."""
    if j.wants_ranking_scores():
        from .truth import truth_metrics

        t0 = time.time()
        j.record.metrics.update(truth_metrics(j.dataset, j.split.test, j.source, j.spec.score_kind, j.cell.seed))
        if j.split.test_funnel is not None:
            from .funnel import propensity_truth

            j.record.metrics.update(propensity_truth(j.model, j.split.test_funnel, j.dataset.truth, j.cell.seed))
        j.record.metrics["time/eval_s"] += time.time() - t0


def ctr(j: Journey) -> None:
    """The ctr task: click probabilities on the split's test impressions."""
    if "ctr" in j.settings.tasks and "ctr" in j.served:
        from .ctr import run_ctr

        t0 = time.time()
        j.record.metrics.update(run_ctr(j.model, j.split, j.dataset))
        j.record.metrics["time/eval_s"] += time.time() - t0


def plan(j: Journey) -> None:
    """The matching task: every planner on the same scores."""
    s = j.settings
    if s.planners:
        from .matching import run_planners

        j.record.metrics.update(run_planners(s.planners, j.registry, j.model, j.spec.score_kind, j.split, j.device,
                                             j.cell.seed, s.exclude_seen, s.budget_mib, s.block_size))


STEPS = (load, split, tune, fit, score, evaluate, truth, ctr, plan)


def travel(j: Journey, out: Path) -> None:
    """Every step in order, then the record's artifacts; each step's wall time is a metric `time/step/<step>_s`
    (where a cell's time goes: the harness's own load and split against the model's fit and the evaluation)."""
    for step in STEPS[:STEPS.index(tune) + 1] if j.cell.study_worker else STEPS:  # a study helper only tunes
        t0 = time.perf_counter()
        step(j)
        j.record.metrics[f"time/step/{step.__name__}_s"] = time.perf_counter() - t0
    if j.cell.study_worker:
        return
    t0 = time.perf_counter()
    record(j, out)
    j.record.metrics["time/step/record_s"] = time.perf_counter() - t0


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


def record(j: Journey, out: Path) -> None:
    """The cell's artifacts: resolved config, environment, per-query values, rankings and targets, curves."""
    rec = j.record
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(j.cell.config(), default=str)),
                                                    sort_keys=True))
    (out / "environment.json").write_text(json.dumps(environment(), indent=1))
    rec.artifacts = {"config.yaml": out / "config.yaml", "environment.json": out / "environment.json"}
    per_query = [res.per_query_frame(req.prefix) for req, res in j.results]
    if per_query:
        pd.concat(per_query, ignore_index=True).to_parquet(out / "per_query.parquet")
        rec.artifacts["per_query.parquet"] = out / "per_query.parquet"
    full = [(req, res) for req, res in j.results if not req.sampled]
    if j.settings.save_rankings and full:
        frames = [_ranking_frames(req.task, res, j.split.test, j.dataset) for req, res in full]
        pd.concat([r for r, _ in frames], ignore_index=True).to_parquet(out / "rankings.parquet")
        pd.concat([t for _, t in frames], ignore_index=True).to_parquet(out / "targets.parquet")
        rec.artifacts["rankings.parquet"] = out / "rankings.parquet"
        rec.artifacts["targets.parquet"] = out / "targets.parquet"
    if rec.curves:
        rows = [(name, step, value) for name, pts in rec.curves.items() for step, value in pts]
        pd.DataFrame(rows, columns=["metric", "step", "value"]).to_csv(out / "training_curve.csv", index=False)
        rec.artifacts["training_curve.csv"] = out / "training_curve.csv"


def _ranking_frames(task: str, res, evalset, dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top-K lists and targets in raw ids: (task, query, state, rank, candidate, score),
    (task, query, state, target)."""
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
