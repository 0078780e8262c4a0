"""The public surface for plugin authors: everything a plugin of any kind needs, and nothing internal.

    from harness.plugin import Model, ModelSpec, Param, hookimpl

    @hookimpl
    def register_models(register):
        register(ModelSpec(name="my_model", factory=MyModel, description="...", params=(Param(...),)))

Built-in plugins import from here (and from their own family's shared module) and nothing else of
`harness`; every other module under `harness` is internal and may change between versions. Check a plugin
with `harness.testing.check_plugin(kind, name)`. The guide: docs/plugins.md.

Per kind, what the factory returns:
- dataset: a `Dataset` (the factory is a typed callable `DatasetFactory`);
- split: a `Split` (`split(dataset, seed) -> SplitData`);
- model: a `Model` (`fit(train, loss, ctx)`, then `factors` / `score_block` / `predict_ctr`);
- loss: a `Loss` of its contract (`PairwiseLoss`, `PointwiseLoss`, `InBatchLoss`, `SampledLoss`, `WeightedLoss`);
- planner: a `Planner` (`plan(scores, calibration) -> Plan`);
- metric: a `PerQueryMetric` or `SetMetric` callable;
- tracker: a `Tracker`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .cache import sha256_file
from .ctr import ImpressionRows, padded_sequences
from .data import TIME_UNITS, Dataset, Interactions, encode_ids, filter_events, filter_params, from_events
from .errors import ConfigError, DataError, MatchbenchError, did_you_mean
from .evaluate import validation_ndcg
from .files import (
                    FILTER_NAMES,
                    FILTER_PARAMS,
                    Col,
                    align,
                    bad_line,
                    candidates,
                    check_header,
                    cut_last_line,
                    data_root,
                    finish,
                    first_bad,
                    iter_lines,
                    line_text,
                    locate,
                    nullable_ints,
                    open_text,
                    read_header,
                    read_table,
                    shown,
                    sources_or_path,
                    verify_files,
)
from .funnel import DEFAULT_RATIO, SAMPLING, FunnelRows, NegativeDraw, draw_negatives, space_counts
from .hookspecs import hookimpl
from .losses import InBatchLoss, Loss, NegativePlan, PairwiseLoss, PointwiseLoss, SampledLoss, WeightedLoss
from .matching import ALPHA, CONSTRAINT_PARAMS, NEG, Constraints, Plan, Planner, PlanningScores, topk_assignment
from .memory import require as require_memory
from .model import FitContext, Model
from .schema import Param
from .specs import (
                    DatasetSpec,
                    LossContract,
                    LossSpec,
                    MetricCase,
                    MetricSpec,
                    ModelSpec,
                    Offer,
                    PlannerSpec,
                    Requirement,
                    ScoreKind,
                    SplitSpec,
                    Task,
                    TrackerSpec,
)
from .splits import (
                    EvalSet,
                    Split,
                    SplitData,
                    UserStates,
                    concat_sets,
                    csr_ranges,
                    fmt_time,
                    require_nonempty,
                    states_from_events,
                    summary,
                    time_bounds,
                    users_with_history,
                    window_end,
)
from .tracking import CellRecord, Tracker, driver_alive, driver_id, sqlite_wal

DatasetFactory = Callable[..., Dataset]
"""A dataset plugin's factory: its resolved parameters in, a `Dataset` out."""
PerQueryMetric = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
"""metric(hits [n, K] of 0/1, n_rel [n], k) -> per-query values [n] (a metric spec's factory returns it)."""
SetMetric = Callable[[np.ndarray, np.ndarray], float]
"""metric(counts at k per candidate, weight per candidate) -> one value (coverage, popularity, ...)."""

__all__ = [
    # registering
    "hookimpl", "Param",
    "DatasetSpec", "SplitSpec", "ModelSpec", "LossSpec", "PlannerSpec", "MetricSpec", "TrackerSpec", "MetricCase",
    # vocabularies
    "Task", "ScoreKind", "LossContract", "Requirement", "Offer",
    # one base class or protocol per kind
    "DatasetFactory", "Split", "Model", "Loss", "PairwiseLoss", "PointwiseLoss", "InBatchLoss", "SampledLoss",
    "WeightedLoss", "Planner", "PerQueryMetric", "SetMetric", "Tracker",
    # data plugins receive and return
    "Interactions", "Dataset", "UserStates", "EvalSet", "SplitData", "ImpressionRows", "FitContext",
    "NegativePlan", "PlanningScores", "Plan", "Constraints", "CellRecord", "TIME_UNITS", "FunnelRows",
    "NegativeDraw",
    # errors
    "MatchbenchError", "ConfigError", "DataError", "did_you_mean",
    # helpers for datasets: events -> Dataset, filters, file reading with line-numbered errors, checksums
    "from_events", "encode_ids", "filter_events", "filter_params", "FILTER_PARAMS", "FILTER_NAMES", "Col",
    "read_table", "read_header", "check_header", "iter_lines", "line_text", "shown", "bad_line", "first_bad",
    "nullable_ints", "open_text", "finish", "align", "locate", "candidates", "data_root", "sources_or_path",
    "verify_files", "sha256_file", "cut_last_line",
    # helpers for splits
    "states_from_events", "concat_sets", "csr_ranges", "require_nonempty", "time_bounds", "window_end",
    "users_with_history", "summary", "fmt_time",
    # helpers for models and planners
    "validation_ndcg", "padded_sequences", "topk_assignment", "CONSTRAINT_PARAMS", "ALPHA", "NEG",
    # the funnel's negative sampling strategies (UMA²), shared by every model trained on funnel data
    "SAMPLING", "DEFAULT_RATIO", "draw_negatives", "space_counts",
    # the memory guard: refuse a planned allocation beyond the machine's memory, naming the parameter to change
    "require_memory",
    # helpers for trackers: which process opened a suite invocation, and whether it still runs; a SQLite store in WAL
    "driver_id", "driver_alive", "sqlite_wal",
]
