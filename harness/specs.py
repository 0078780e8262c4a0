"""What a plugin is and supports, in small frozen records kept apart from its code.

The vocabularies (tasks, score kinds, loss contracts, what a model needs from a split and what it offers)
are `Literal` types; `PluginSpec.problems()` checks a record against them, and the registry refuses a plugin
whose record names an unknown value, at start-up, naming the plugin and the nearest valid value.

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Literal

from .errors import did_you_mean
from .schema import Param, Schema

Task = Literal["itemrec", "userrec", "ctr", "matching"]
"""itemrec ranks items per user-state, userrec user-states per item, ctr scores impressions, matching plans."""
ScoreKind = Literal["logit", "log_intensity", "intensity", "probability"]
"""What a model's ranking scores are: planners and truth metrics transform them accordingly."""
LossContract = Literal["in_batch", "sampled", "pointwise", "pairwise", "weighted"]
"""How a model calls a loss (see `harness.losses`)."""
Requirement = Literal["valid", "calibration", "impressions", "funnel", "truth"]
"""What a model may need from the split (a validation set, a calibration window, training impressions) or the
dataset (the synthetic world's truth)."""
Offer = Literal["factors", "block_scores", "ctr_probabilities"]
"""How a fitted model gives scores: `factors(states)`, `score_block(states, rows)`, `predict_ctr(rows)`."""

TASKS: tuple[str, ...] = typing.get_args(Task)
SCORE_KINDS: tuple[str, ...] = typing.get_args(ScoreKind)
LOSS_CONTRACTS: tuple[str, ...] = typing.get_args(LossContract)
REQUIREMENTS: tuple[str, ...] = typing.get_args(Requirement)
OFFERS: tuple[str, ...] = typing.get_args(Offer)
RANKING_TASKS = ("itemrec", "userrec")

Params = dict[str, Any]


def _unknown(field_name: str, values: Iterable[str], valid: tuple[str, ...]) -> list[str]:
    vals = (values,) if isinstance(values, str) else tuple(values)
    return [f"{field_name}: unknown value {v!r}{did_you_mean(str(v), valid)}" for v in vals if v not in valid]


@dataclass(frozen=True)
class PluginSpec:
    """Name, factory, typed parameters, a one-line description; subclasses add what it supports."""

    kind: ClassVar[str] = "plugin"
    name: str
    factory: Callable[..., Any]
    description: str
    params: tuple[Param, ...] = field(default_factory=tuple)

    @property
    def schema(self) -> Schema:
        return Schema(tuple(self.params))

    def supports(self) -> str:
        return ""

    def problems(self) -> list[str]:
        """What is wrong with this record (unknown vocabulary values, inconsistent declarations)."""
        out = []
        if not isinstance(self.name, str) or not self.name.strip():
            out.append(f"name must be a non-empty string, got {self.name!r}")
        if not callable(self.factory):
            out.append(f"factory must be callable, got {self.factory!r}")
        if not all(isinstance(p, Param) for p in self.params):
            out.append("params must be harness.plugin.Param records")
        return out


@dataclass(frozen=True)
class DatasetSpec(PluginSpec):
    """`cache`: False for datasets that must not be cached on disk. `sources`: fn(resolved params) -> the files
    it reads; the disk cache keys on their size and mtime (default: the `path` parameter, if any).
    `provides`: what every dataset it builds carries beyond the event log ("truth": the synthetic world's)."""

    kind: ClassVar[str] = "dataset"
    cache: bool = True
    sources: Callable[[Params], list[Any]] | None = None
    provides: tuple[Requirement, ...] = ()

    def problems(self) -> list[str]:
        return super().problems() + _unknown("provides", self.provides, REQUIREMENTS)

    def supports(self) -> str:
        return "provides: " + ",".join(self.provides) if self.provides else ""


@dataclass(frozen=True)
class SplitSpec(PluginSpec):
    """`provides`: what the split can give models besides train and test (valid, calibration, impressions);
    `provides_for(params)` narrows it for a configuration (e.g. a calibration window only when asked for)."""

    kind: ClassVar[str] = "split"
    provides: tuple[Requirement, ...] = ()
    provides_for: Callable[[Params], Iterable[str]] | None = None

    def provision(self, params: Params) -> set[str]:
        """What this split gives with these (resolved) parameters."""
        if self.provides_for is None:
            return set(self.provides)
        return set(self.provides_for(params)) & set(self.provides)

    def problems(self) -> list[str]:
        return super().problems() + _unknown("provides", self.provides, tuple(r for r in REQUIREMENTS if r != "truth"))

    def supports(self) -> str:
        return "provides: " + ",".join(self.provides) if self.provides else ""


@dataclass(frozen=True)
class ModelSpec(PluginSpec):
    """What a model serves, needs and gives.

    `tasks` it can serve (`tasks_for(params)` narrows them for a configuration, e.g. an ablation without the
    part that ranks); `contracts` of the losses it accepts (empty: it trains without a loss) and its
    `default_loss`; `score_kind` of its ranking scores; `offers`: how it gives scores; `requires`: what the
    split or dataset must provide (a cell that cannot is refused before any training); `gpu`: it trains on a GPU
    when there is one (the ray executor then asks the cluster for one per cell); `set_back`: it learns from the
    split's calibration window, so a split that sets only such models back (`temporal` with `setback: calibrated`,
    RIM's RNN-HP and GCMC(*)) fits it on the events before that window while the others train up to the cut."""

    kind: ClassVar[str] = "model"
    tasks: tuple[Task, ...] = ("itemrec", "userrec")
    contracts: tuple[LossContract, ...] = ()
    default_loss: str | None = None
    score_kind: ScoreKind = "logit"
    offers: tuple[Offer, ...] = ("factors",)
    requires: tuple[Requirement, ...] = ()
    tasks_for: Callable[[Params], Iterable[str]] | None = None
    gpu: bool = False
    set_back: bool = False

    def serves(self, params: Params) -> set[str]:
        """The tasks this configuration serves (matching comes with itemrec: planners use its scores)."""
        tasks = set(self.tasks) if self.tasks_for is None else set(self.tasks_for(params)) & set(self.tasks)
        return tasks | ({"matching"} if "itemrec" in tasks else set())

    def problems(self) -> list[str]:
        out = super().problems()
        out += _unknown("tasks", self.tasks, TASKS)
        out += _unknown("contracts", self.contracts, LOSS_CONTRACTS)
        out += _unknown("score_kind", self.score_kind, SCORE_KINDS)
        out += _unknown("offers", self.offers, OFFERS)
        out += _unknown("requires", self.requires, REQUIREMENTS)
        if self.contracts and not self.default_loss:
            out.append("contracts are declared but no default_loss names the loss used when a suite gives none")
        if set(self.tasks) & set(RANKING_TASKS) and not set(self.offers) & {"factors", "block_scores"}:
            out.append("serves itemrec/userrec but offers neither 'factors' nor 'block_scores'")
        if "ctr" in self.tasks and "ctr_probabilities" not in self.offers:
            out.append("serves ctr but does not offer 'ctr_probabilities' (predict_ctr)")
        return out

    def supports(self) -> str:
        s = "tasks: " + ",".join(self.tasks) + f"; scores: {self.score_kind}"
        if self.contracts:
            s += "; losses: " + ",".join(self.contracts) + f" (default {self.default_loss})"
        if self.requires:
            s += "; requires: " + ",".join(self.requires)
        return s


@dataclass(frozen=True)
class LossSpec(PluginSpec):
    kind: ClassVar[str] = "loss"
    contract: LossContract = "pairwise"

    def problems(self) -> list[str]:
        return super().problems() + _unknown("contract", self.contract, LOSS_CONTRACTS)

    def supports(self) -> str:
        return f"contract: {self.contract}"


@dataclass(frozen=True)
class PlannerSpec(PluginSpec):
    kind: ClassVar[str] = "planner"
    tasks: tuple[Task, ...] = ("matching",)

    def problems(self) -> list[str]:
        return super().problems() + _unknown("tasks", self.tasks, TASKS)


@dataclass(frozen=True)
class MetricCase:
    """A hand-computed case for a metric. Per-query metrics: `hits` (rows of 0/1 over ranks 1..K), `n_rel` (targets
    per query), `k`, `expected` (one value per query). Set metrics: `counts` (per-candidate retrieval counts at k),
    `weight` (per-candidate popularity or activeness), `expected` (one value)."""

    expected: Any
    k: int = 0
    hits: tuple = ()
    n_rel: tuple = ()
    counts: tuple = ()
    weight: tuple = ()


@dataclass(frozen=True)
class MetricSpec(PluginSpec):
    """A ranking metric. `per_query`: fn(hits[n, K] of 0/1 (float), n_rel[n], k) -> per-query values.
    Otherwise a set-level metric: fn(counts_k: per-candidate retrieval counts at k,
    weight: per-candidate popularity/activeness) -> float. `direction`: +1 higher is better, -1 lower is
    better, 0 descriptive (reports show it, never bold or test it). `example`: a hand-computed case
    (inputs, expected output) the conformance kit checks the metric against."""

    kind: ClassVar[str] = "metric"
    tasks: tuple[Task, ...] = ("itemrec", "userrec")
    per_query: bool = True
    uses_cutoff: bool = True
    direction: int = 1
    example: MetricCase | None = None

    def problems(self) -> list[str]:
        out = super().problems() + _unknown("tasks", self.tasks, TASKS)
        if self.direction not in (-1, 0, 1):
            out.append(f"direction must be +1, -1 or 0, got {self.direction!r}")
        return out

    def supports(self) -> str:
        return "tasks: " + ",".join(self.tasks) + ("; at each K" if self.uses_cutoff else "")


@dataclass(frozen=True)
class TrackerSpec(PluginSpec):
    kind: ClassVar[str] = "tracker"


SPEC_TYPES: dict[str, type[PluginSpec]] = {
    c.kind: c for c in (DatasetSpec, SplitSpec, ModelSpec, LossSpec, PlannerSpec, MetricSpec, TrackerSpec)
}
KINDS = tuple(SPEC_TYPES)
