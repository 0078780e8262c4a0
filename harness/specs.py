"""What a plugin is and supports, in small frozen records kept apart from its code."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from .schema import Param, Schema

TASKS = ("itemrec", "userrec", "ctr", "matching")
SCORE_KINDS = ("logit", "log_intensity", "intensity", "probability")
LOSS_CONTRACTS = ("in_batch", "sampled", "pointwise", "pairwise", "weighted")


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


@dataclass(frozen=True)
class DatasetSpec(PluginSpec):
    """`cache`: False for datasets that must not be cached on disk (e.g. they carry a `truth` object).
    `sources`: fn(resolved params) -> the files it reads; the disk cache keys on their size and mtime
    (default: the `path` parameter, if any)."""

    kind: ClassVar[str] = "dataset"
    cache: bool = True
    sources: Callable[[dict[str, Any]], list[Any]] | None = None


@dataclass(frozen=True)
class SplitSpec(PluginSpec):
    kind: ClassVar[str] = "split"


@dataclass(frozen=True)
class ModelSpec(PluginSpec):
    """`tasks` it serves; `contracts` of the losses it accepts (empty: it trains without a loss)."""

    kind: ClassVar[str] = "model"
    tasks: tuple[str, ...] = ("itemrec", "userrec")
    contracts: tuple[str, ...] = ()
    default_loss: str | None = None

    def supports(self) -> str:
        s = "tasks: " + ",".join(self.tasks)
        if self.contracts:
            s += "; losses: " + ",".join(self.contracts) + f" (default {self.default_loss})"
        return s


@dataclass(frozen=True)
class LossSpec(PluginSpec):
    kind: ClassVar[str] = "loss"
    contract: str = "pairwise"

    def supports(self) -> str:
        return f"contract: {self.contract}"


@dataclass(frozen=True)
class PlannerSpec(PluginSpec):
    kind: ClassVar[str] = "planner"
    tasks: tuple[str, ...] = ("matching",)


@dataclass(frozen=True)
class MetricSpec(PluginSpec):
    """A ranking metric. `per_query`: fn(hits[n,K] bool tensor, n_rel[n], k) -> per-query values.
    Otherwise a set-level metric: fn(counts_k: per-candidate retrieval counts at k,
    weight: per-candidate popularity/activeness) -> float. `direction`: +1 higher is better, -1 lower is
    better, 0 descriptive (reports show it, never bold or test it)."""

    kind: ClassVar[str] = "metric"
    tasks: tuple[str, ...] = ("itemrec", "userrec")
    per_query: bool = True
    uses_cutoff: bool = True
    direction: int = 1

    def supports(self) -> str:
        return "tasks: " + ",".join(self.tasks) + ("; at each K" if self.uses_cutoff else "")


@dataclass(frozen=True)
class TrackerSpec(PluginSpec):
    kind: ClassVar[str] = "tracker"


SPEC_TYPES: dict[str, type[PluginSpec]] = {
    c.kind: c for c in (DatasetSpec, SplitSpec, ModelSpec, LossSpec, PlannerSpec, MetricSpec, TrackerSpec)
}
KINDS = tuple(SPEC_TYPES)
