"""The suite file's typed schema: every top-level and nested key typed and documented (pydantic v2 models with
`extra="forbid"`), and the typed settings the runner receives.

Validation here is structural (types, ranges, unknown keys, each reported with its key path and the nearest valid
name); the registry's checks (plugin names and parameters, impossible combinations) follow in `harness.suite`.
Internal: plugin authors use `harness.plugin`.
"""
from __future__ import annotations

import typing
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from .errors import did_you_mean
from .schema import text_hint
from .specs import Task


def _as_list(value: Any) -> Any:
    """A scalar where a list is expected is a list of one (`tasks: itemrec`)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _named(value: Any) -> Any:
    """A bare plugin name is {name: it}."""
    return {"name": value} if isinstance(value, str) else value


Positive = Annotated[Union[StrictInt, StrictFloat], Field(gt=0, allow_inf_nan=False)]
PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonEmpty = Annotated[StrictStr, Field(min_length=1, pattern=r"\S")]
SEED_MAX = 2**32 - 1
"""numpy's seed range is [0, 2**32 - 1]: a seed outside it would pass here and fail at run time."""
Seed = Annotated[StrictInt, Field(ge=0, le=SEED_MAX)]
NAME_MAX = 100
"""A suite name is an MLflow experiment, a report file name and a tag: a line of text, not a paragraph."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Entry(BaseModel):
    """A plugin and its parameters: a bare name, or {name: ..., **params} (a list value expands the grid)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: NonEmpty = Field(description="the registered plugin name")

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return _named(value)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ModelEntry(Entry):
    """A model with its parameters, optionally its own losses and the name reports give it."""

    loss: Any = Field(None,
                      description="loss name(s) or {name, **params} for this model only (else the suite's losses)")
    label: NonEmpty | None = Field(None, description="the method's name in reports (e.g. DMR-NO-AM)")
    tune: dict[str, Any] | None = Field(None, description="an Optuna study per cell on the split's validation set: "
                                        "{params, trials, metric, sampler, pruner} (harness.tuning)")


class FullCandidates(_Strict):
    """Rank every item (itemrec) or every test user-state (userrec)."""

    name: Literal["full"] = "full"


class SampledCandidates(_Strict):
    """UniMatch's protocol: each positive ranked among `negatives` sampled negatives."""

    name: Literal["sampled"]
    negatives: PositiveInt = Field(99, description="negatives per positive")
    weighting: Literal["uniform", "popularity"] = Field("uniform", description="how negatives are drawn")


Candidates = Annotated[Union[FullCandidates, SampledCandidates], Field(discriminator="name"),
                       BeforeValidator(lambda v: {"name": v} if isinstance(v, str) else v)]


class RankingSettings(_Strict):
    """The ranking engine's memory budget."""

    budget_mib: Positive = Field(256, description="peak MiB of one block of scores")
    block_size: PositiveInt | None = Field(None, description="rows per block (default: as many as the budget allows)")


class ReportSettings(_Strict):
    """What `matchbench report` writes for this suite."""

    enabled: StrictBool = Field(True, description="write reports/<suite>.md after a run")
    dir: StrictStr = Field("reports", description="folder of the report")
    metrics: Annotated[list[StrictStr], BeforeValidator(_as_list)] | None = Field(
        None, description="the table columns, e.g. [ndcg_10, recall]")
    note: StrictStr | None = Field(None, description="text under the title")
    tables: list[dict[str, Any]] | None = Field(None, description="paper tables: [{metric, baseline, ...}]")
    scatter: list[dict[str, Any]] | None = Field(None, description="two metrics per method: [{x, y}]")
    fronts: list[dict[str, Any]] | None = Field(None, description="planner fronts over beta: [{x, y}]")
    curves: list[dict[str, Any]] | None = Field(None, description="training curves of one method: [{method, metrics}]")


class TrackingSettings(BaseModel):
    """The tracker plugin and its parameters (validated by its own schema)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    tracker: NonEmpty = Field("mlflow", description="tracker plugin name")


class RayResources(_Strict):
    """What each cell asks the Ray cluster for (the ray executor)."""

    num_cpus: Positive | None = Field(None, description="CPUs (and threads) per cell (default: a local instance's "
                                                        "cores / jobs, else 1)")
    num_gpus: Annotated[Union[StrictInt, StrictFloat], Field(ge=0, allow_inf_nan=False)] | None = Field(
        None, description="GPUs per cell (default: 1 for a model whose spec asks for a GPU, when the cluster has one)")
    memory: PositiveInt | None = Field(None, description="bytes of memory per cell (Ray schedules by it)")


class ExecutorSettings(_Strict):
    """Where the cells run: `local` (worker processes on this machine) or `ray` (Ray tasks)."""

    name: Literal["local", "ray"] = Field("local", description="local or ray")
    address: NonEmpty | None = Field(None, description="ray: a running cluster (auto, HOST:PORT, ray://HOST:10001); "
                                                        "default: a local instance")
    resources: RayResources | None = Field(None, description="ray: {num_cpus, num_gpus, memory} per cell")

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return _named(value)

    @model_validator(mode="after")
    def _ray_only(self) -> "ExecutorSettings":
        if self.name == "local" and (self.address or self.resources):
            raise ValueError("address and resources are for the ray executor: set name: ray, or drop them")
        return self


def _listed(inner: Any) -> Any:
    return Annotated[list[inner], BeforeValidator(_as_list)]


class SuiteFile(_Strict):
    """A suite: datasets × split × models (× losses) × seeds, the tasks, metrics and planners they are measured by."""

    name: NonEmpty | None = Field(None, description="suite name and MLflow experiment (default: the file's stem)")
    description: StrictStr = Field("", description="free text")
    datasets: _listed(Entry) = Field(min_length=1, description="list of {name, **params}")
    split: _listed(Entry) = Field(min_length=1, description="{name, **params} (or a list of them)")
    tasks: _listed(Task) = Field(["itemrec", "userrec"], min_length=1, description="itemrec, userrec, ctr, matching")
    models: _listed(ModelEntry) = Field(min_length=1, description="list of {name, loss?, label?, tune?, **params}")
    losses: _listed(Entry) = Field([], description="losses crossed with the models that accept them")
    planners: _listed(Entry) = Field([], description="planners run on every cell's scores (task matching)")
    metrics: _listed(NonEmpty) | None = Field(None, description="metric names (default recall, ndcg)")
    cutoffs: _listed(PositiveInt) = Field([10, 20], min_length=1, description="the K of metric@K")
    seeds: _listed(Seed) = Field([0], min_length=1, description="one cell per seed, each in [0, 2**32 - 1]")
    candidates: _listed(Candidates) = Field([FullCandidates()], min_length=1, description="full and/or sampled ranking")
    exclude_seen: StrictBool = Field(True, description="drop items in a state's history from its itemrec ranking")
    cold_items: Literal["rank", "exclude"] = Field(
        "rank", description="items without a training event: rank them like any other, or leave them out of "
                            "rankings and targets (the targets lost are counted per cell)")
    save_rankings: StrictBool = Field(True, description="save top-K rankings and targets as Parquet artifacts")
    ranking: RankingSettings = Field(RankingSettings(), description="{budget_mib, block_size}")
    tracking: TrackingSettings = Field(TrackingSettings(), description="{tracker: mlflow, uri: ..., **params}")
    report: ReportSettings = Field(ReportSettings(), description="{enabled, dir, metrics, note, views}")
    include: _listed(dict[str, Any]) = Field([], description="partial cells to keep, e.g. [{model: bpr, seed: 0}]")
    exclude: _listed(dict[str, Any]) = Field([], description="partial cells to drop")
    jobs: PositiveInt = Field(1, description="default number of worker processes")
    executor: ExecutorSettings = Field(ExecutorSettings(), description="{name: local|ray, address, resources}")
    retries: Annotated[StrictInt, Field(ge=0)] = Field(
        0, description="attempts more for a cell whose worker process died (a cell that raised is not retried)")
    claims: list[dict[str, Any]] = Field([], description="the papers' findings about these methods, checked by "
                                                        "`matchbench check` (harness.claims.Claim)")


TOP_KEYS = {name: f.description or "" for name, f in SuiteFile.model_fields.items()}


def parse(raw: dict[str, Any]) -> tuple[SuiteFile | None, list[str]]:
    """The typed suite and every structural problem (key path, what is wrong, the fix). With problems, the suite
    is what remains without the top-level keys at fault (so the registry's checks still run on the rest, and
    every problem is reported at once), or None when a required key is among them."""
    try:
        return SuiteFile.model_validate(raw), []
    except ValidationError as exc:
        errors = exc.errors()
    floats = {tuple(p for p in err["loc"] if p != "float") for err in errors if "float" in err["loc"]}
    errors = [err for err in errors  # an int-or-float key: the float member's problem says "a valid number"
              if "int" not in err["loc"] or tuple(p for p in err["loc"] if p != "int") not in floats]
    problems = list(dict.fromkeys(_problem(err) for err in errors))
    bad = {err["loc"][0] for err in errors if err["loc"]}
    try:
        return SuiteFile.model_validate({k: v for k, v in raw.items() if k not in bad}), problems
    except ValidationError:
        return None, problems


_TAGGED = {"full": FullCandidates, "sampled": SampledCandidates}
"""Discriminator tags pydantic puts in an error's location: not keys of the file."""


_UNION_TAGS = {"int", "float"}
"""The members of an int-or-float union that pydantic puts in an error's location (no key is named so)."""


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in _TAGGED and part not in _UNION_TAGS and not str(part).startswith("function-"):
            out += ("." if out else "") + str(part)
    return out


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The schema model whose key `loc` names (for the nearest valid key of an unknown one)."""
    cls: Any = SuiteFile
    for part in loc[:-1]:
        if part in _TAGGED:
            cls = _TAGGED[part]
        elif isinstance(cls, type) and issubclass(cls, BaseModel) and part in cls.model_fields:
            cls = _inner_model(cls.model_fields[part].annotation)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _problem(err: dict) -> str:
    loc = tuple(err["loc"])
    where = _path(loc) or "suite"
    if err["type"] == "extra_forbidden":
        model = _model_at(loc)
        known = list(model.model_fields) if model else []
        parent = _path(loc[:-1])
        return (f"{parent}: " if parent else "") + f"unknown key {str(loc[-1])!r}{did_you_mean(str(loc[-1]), known)}"
    if err["type"] == "value_error":  # a model validator's message, without pydantic's "Value error, "
        return f"{where}: {err.get('ctx', {}).get('error', err['msg'])}"
    if err["type"] == "missing":
        field = SuiteFile.model_fields.get(str(loc[-1])) if len(loc) == 1 else None
        hint = f" ({field.description})" if field and field.description else ""
        return f"{where}: missing{hint}"
    if err["type"] == "literal_error" and loc and loc[0] == "tasks":
        value = err.get("input")
        return f"{where}: unknown task {value!r}{did_you_mean(str(value), typing.get_args(Task))}"
    value = err.get("input")
    shown = f", got {value!r}" if not isinstance(value, dict) and value is not None else ""
    msg = f"{where}: {err['msg'][0].lower() + err['msg'][1:]}{shown}"
    if loc == ("jobs",) and err["type"] == "greater_than":
        return f"jobs: must be at least 1 (worker processes), got {value!r}; leave it out for 1"
    if loc and loc[0] == "seeds" and err["type"] in ("greater_than_equal", "less_than_equal"):
        msg += f"; a seed is an integer in [0, {SEED_MAX}] (numpy's seed range)"
    want = err["type"].split("_")[0]  # int_type, float_parsing, bool_type ...: what the key wanted
    return msg + (text_hint(want, value) if want in ("int", "float", "bool") else "")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a suite (it becomes an MLflow experiment, a file name under reports/ and a tag), or
    None: at most NAME_MAX characters, no path separator, no control character."""
    if len(name) > NAME_MAX:
        return (f"name: {len(name)} characters, over the limit of {NAME_MAX}; give the suite a short name "
                f"(name: ...) and put the rest in description")
    bad = sorted({c for c in name if c in "/\\" or unicodedata.category(c).startswith("C")})
    if bad:
        return (f"name {name!r}: contains {', '.join(repr(c) for c in bad)}; a suite name may not contain a path "
                "separator or a control character: use letters, digits, spaces, - _ . ( ) [ ]")
    if name.strip() in (".", ".."):
        return f"name {name!r}: not a usable name; use letters and digits"
    return None


@dataclass(frozen=True)
class PlannerRun:
    """One planner configuration of the matching task, and the label its metrics carry."""

    name: str
    params: dict[str, Any]
    label: str


@dataclass(frozen=True)
class EvalSettings:
    """What every cell of a suite is evaluated by: the typed form of the suite's evaluation keys."""

    tasks: tuple[str, ...]
    metrics: tuple[str, ...]
    cutoffs: tuple[int, ...]
    candidates: tuple[FullCandidates | SampledCandidates, ...]
    exclude_seen: bool = True
    save_rankings: bool = True
    cold_items: str = "rank"
    budget_mib: float = 256
    block_size: int | None = None
    planners: tuple[PlannerRun, ...] = ()

    def as_config(self) -> dict[str, Any]:
        """The settings as they enter a cell's configuration hash (unchanged since the first suites: resume and
        report keys depend on it)."""
        out: dict[str, Any] = {
            "tasks": list(self.tasks), "metrics": list(self.metrics), "cutoffs": list(self.cutoffs),
            "candidates": [c.model_dump() for c in self.candidates], "exclude_seen": self.exclude_seen,
            "save_rankings": self.save_rankings, "budget_mib": self.budget_mib, "block_size": self.block_size}
        if self.cold_items != "rank":  # only then, so the suites before the setting keep their config hashes
            out["cold_items"] = self.cold_items
        if self.planners:  # only then, so suites without planners keep their config hashes
            out["planners"] = [{"name": p.name, "params": p.params, "label": p.label} for p in self.planners]
        return out
