"""Suites: a YAML grid parsed, validated against the registry (every problem at once), and
expanded into cells, each with a configuration hash.

A list value for a parameter expands the grid (for list-typed parameters, a list of lists
does). `include` / `exclude` entries prune it: each is a mapping of flat keys (model, loss,
dataset, split, seed, model.factors, ...) that a cell must all match.

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import suite_yaml
from .claims import claim_problems, parse_claims
from .errors import ConfigError, did_you_mean
from .registry import Registry
from .report.views import check as check_views
from .suite_schema import TOP_KEYS, EvalSettings, PlannerRun, name_problem, parse

__all__ = ["Cell", "Component", "Suite", "TOP_KEYS", "build_suite", "load_suite", "read_yaml"]

@dataclass(frozen=True)
class Component:
    """A plugin and its resolved parameters (defaults filled)."""

    kind: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    tune: Any = None
    """A model's `harness.tuning.TuneBlock`: the study that chooses some of its parameters, None for the rest."""

    def label(self, varying: set[str] = frozenset()) -> str:
        shown = {k: v for k, v in self.params.items() if k in varying}
        return self.name + ("(" + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) + ")" if shown else "")


@dataclass(frozen=True)
class Cell:
    """One grid point: fit `model` with `loss` on `dataset` under `split` and `seed`, evaluate everything."""

    suite: str
    dataset: Component
    split: Component
    model: Component
    loss: Component | None
    seed: int
    settings: EvalSettings
    skip_reason: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    study_storage: str | None = None
    """Where a tuned cell's Optuna study lives (the runner sets it from the tracker); not part of the config."""
    study_worker: int = 0
    """0: the cell itself; i > 0: its i-th study helper, which only runs trials of the cell's study beside it (a
    `tune:` block's `parallel`, harness.tuning) and is never recorded as a run; not part of the config."""

    def flat_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model.name, "dataset": self.dataset.name, "split": self.split.name,
                               "loss": self.loss.name if self.loss else "none", "seed": self.seed}
        for comp in (self.dataset, self.split, self.model) + ((self.loss,) if self.loss else ()):
            for k, v in comp.params.items():
                out[f"{comp.kind}.{k}"] = v
        return out

    def config(self) -> dict[str, Any]:
        """Everything that determines the cell's result (and nothing about where it is tracked)."""
        def comp(c):
            if c is None:
                return None
            # a tuned model's search space is part of it (a changed block is a new cell); others keep their hashes
            return {"name": c.name, "params": c.params, **({"tune": c.tune.as_config()} if c.tune else {})}

        return {"dataset": comp(self.dataset), "split": comp(self.split), "model": comp(self.model),
                "loss": comp(self.loss), "seed": self.seed, "settings": self.settings.as_config()}

    @property
    def config_hash(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def run_name(self) -> str:
        loss = f" · {self.loss.name}" if self.loss else ""
        return (f"{self.labels.get('model', self.model.name)}{loss} · {self.labels.get('dataset', self.dataset.name)}"
                f" · {self.split.name} · seed {self.seed}" + (f" · study helper {self.study_worker}"
                                                               if self.study_worker else ""))


@dataclass
class Suite:
    name: str
    raw: dict[str, Any]
    cells: list[Cell]
    tracking: dict[str, Any]
    report: dict[str, Any]
    source: str = "<suite>"
    jobs: int = 1
    executor: dict[str, Any] = field(default_factory=lambda: {"name": "local"})
    """{name, address?, resources?}: where the cells run (harness.executors.executor_for)."""
    retries: int = 0
    """Attempts more for a cell whose worker process died."""
    warnings: list[str] = field(default_factory=list)
    """What was accepted but is worth a word (an entry listed twice, run once); the CLI prints each once."""
    claims: list = field(default_factory=list)
    """The papers' findings this suite can test (harness.claims.Claim), checked by `matchbench check`."""

    @property
    def runnable(self) -> list[Cell]:
        return [c for c in self.cells if c.skip_reason is None]

    @property
    def config_hashes(self) -> list[str]:
        """The configurations the suite has now (a report counts only their records)."""
        return [c.config_hash for c in self.cells]


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a suite file safely and within limits (see harness.suite_yaml); a syntax error names the file, line and
    column, a duplicate key both lines."""
    text = suite_yaml.read_text(path)
    try:
        data = suite_yaml.load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(suite_yaml.yaml_problem(exc), source=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("a suite must be a YAML mapping with at least datasets, split and models",
                          source=str(path))
    return data


def load_suite(path_or_dict: str | Path | dict, registry: Registry, overrides: dict[str, Any] | None = None) -> Suite:
    """A suite from a YAML file (its name defaults to the file's stem) or a dict, with top-level `overrides`."""
    if isinstance(path_or_dict, dict):
        raw, source, stem = copy.deepcopy(path_or_dict), "<suite>", None
    else:
        raw, source, stem = read_yaml(path_or_dict), str(path_or_dict), Path(path_or_dict).stem
    raw.update(overrides or {})
    return build_suite(raw, registry, source, default_name=stem)


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _entries(raw_list, key: str, problems: list[str]) -> list[tuple[str, dict]]:
    """[(name, params)] from a list of names or {name: ..., **params} mappings."""
    out = []
    for n, entry in enumerate(_as_list(raw_list)):
        if isinstance(entry, str):
            out.append((entry, {}))
        elif isinstance(entry, dict) and "name" in entry:
            params = {k: v for k, v in entry.items() if k != "name"}
            out.append((str(entry["name"]), params))
        else:
            problems.append(f"{key}[{n}]: expected a name or a mapping with 'name', got {entry!r}")
    return out


def _expand(kind: str, name: str, params: dict, registry: Registry, where: str, problems: list[str],
            reserved: tuple[str, ...] = ()) -> list[Component]:
    """All parameter combinations of one entry, each validated against the plugin's schema."""
    try:
        spec = registry.get(kind, name)
    except ConfigError as exc:
        problems.append(f"{where}: {exc}")
        return []
    types = {p.name: p.type for p in spec.params}
    axes = []
    for key, value in params.items():
        if key in reserved:
            continue
        is_axis = isinstance(value, list) and (types.get(key) != "list" or (value and isinstance(value[0], list)))
        axes.append([(key, v) for v in value] if is_axis else [(key, value)])
        if is_axis and not value:
            problems.append(f"{where}: {key} is an empty list; give at least one value")
    comps = []
    for combo in itertools.product(*axes) if axes else [()]:
        resolved, probs = spec.schema.validate(dict(combo), where)
        problems.extend(p for p in probs if p not in problems)
        # parameters added after runs were recorded (`late`) stay out of the cell and its config hash while every
        # one of them is at its default, so those runs still resume and report (the plugin receives the same
        # defaults either way); once one is set, all of them are in
        late = [p for p in spec.params if p.late]
        if all(resolved.get(p.name) == p.default for p in late):
            resolved = {k: v for k, v in resolved.items() if k not in {p.name for p in late}}
        comps.append(Component(kind, name, resolved))
    return comps


def build_suite(raw: dict[str, Any], registry: Registry, source: str = "<suite>", default_name: str | None = None
                ) -> Suite:
    """Parse `raw` against the typed schema, validate every plugin name and parameter against the registry, and
    expand the grid; every problem is reported at once (a ConfigError listing them)."""
    sf, problems = parse(raw)
    if sf is None:  # a required key is malformed: nothing to check the registry against
        raise ConfigError(problems, source=source)
    name = sf.name or default_name
    if not name:
        problems.append("name: missing (the suite's name and MLflow experiment; a suite file defaults to its stem)")
        name = "unnamed"
    elif name_problem(name):
        problems.append(name_problem(name) + ("" if sf.name else f" (the name comes from the file name {source!r})"))
    warnings: list[str] = []
    tasks = list(sf.tasks)
    cutoffs, seeds = sf.cutoffs, list(dict.fromkeys(sf.seeds))
    for seed in sorted({x for x in sf.seeds if sf.seeds.count(x) > 1}):
        warnings.append(f"seeds: {seed} is listed more than once; each seed runs once (drop the duplicate)")

    default_metrics = ["recall", "ndcg"] if set(tasks) & {"itemrec", "userrec"} else []  # ctr logs its own
    metric_names = list(sf.metrics if sf.metrics is not None else default_metrics)
    for m in metric_names:
        try:
            spec = registry.get("metric", m)
            if not set(spec.tasks) & set(tasks):
                problems.append(f"metrics: {m!r} measures {'/'.join(spec.tasks)} but the suite's tasks are "
                                f"{'/'.join(tasks)}; drop it or add a task it measures")
        except ConfigError as exc:
            problems.append(f"metrics: {exc}")

    datasets = _unique("datasets", [c for n, e in enumerate(sf.datasets) for c in _expand(
        "dataset", e.name, e.params, registry, f"datasets[{n}] {e.name!r}", problems)], registry, warnings)
    splits = _unique("split", [c for e in sf.split for c in _expand("split", e.name, e.params, registry,
                                                                    f"split {e.name!r}", problems)], registry, warnings)

    problems.extend(_split_problems(tasks, splits, registry))
    loss_comps = _unique("losses", [c for e in sf.losses for c in _expand("loss", e.name, e.params, registry,
                                                                          f"losses {e.name!r}", problems)],
                         registry, warnings)
    planners = _planners(sf.planners, tasks, registry, problems, warnings)
    settings = EvalSettings(tasks=tuple(tasks), metrics=tuple(metric_names), cutoffs=tuple(sorted(set(cutoffs))),
                            candidates=tuple(sf.candidates), exclude_seen=sf.exclude_seen,
                            cold_items=sf.cold_items, save_rankings=sf.save_rankings, budget_mib=sf.ranking.budget_mib,
                            block_size=sf.ranking.block_size, planners=tuple(planners))
    if sf.cold_items == "exclude" and not sf.exclude_seen:
        problems.append("cold_items: exclude leaves cold items out as excluded pairs, which exclude_seen: false "
                        "ignores; set exclude_seen: true, or cold_items: rank")

    model_cells: list[tuple[Component, Component | None, str | None]] = []
    given_labels: dict[int, str] = {}  # id(model component) -> the entry's `label`, for the report
    origin: dict[int, str] = {}  # id(model component) -> its entry, for a duplicate's warning
    for n, entry in enumerate(sf.models):
        mn, mp = entry.name, entry.params
        where = f"models[{n}] {mn!r}"
        comps = _expand("model", mn, mp, registry, where, problems)
        if entry.tune is not None:
            comps = _tuned(entry, comps, splits, settings, registry, where, problems)
        if not comps:
            continue
        origin.update((id(comp), where) for comp in comps)
        if entry.label is not None:
            inner = _varying(comps).get(mn, set())
            for comp in comps:
                given_labels[id(comp)] = entry.label + (comp.label(inner)[len(mn):] if inner else "")
        spec = registry.get("model", mn)
        if not (set(spec.tasks) | ({"matching"} if "itemrec" in spec.tasks else set())) & set(tasks):
            problems.append(f"{where}: serves {'/'.join(spec.tasks)} only, none of the suite's tasks {tasks}")
        for comp in comps:
            problems.extend(p for p in _task_problems(spec, comp, tasks, where) if p not in problems)
        own = _entries(entry.loss, f"{where}.loss", problems) if entry.loss is not None else None
        losses = ([c for ln, lp in own for c in _expand("loss", ln, lp, registry, f"{where}.loss {ln!r}", problems)]
                  if own is not None else loss_comps)
        for comp in comps:
            if not spec.contracts:
                model_cells.append((comp, None, None))
            elif not losses:
                default = registry.get("loss", spec.default_loss)
                model_cells.append((comp, Component("loss", default.name, default.schema.defaults()), None))
            else:
                for loss in losses:
                    contract = registry.get("loss", loss.name).contract
                    reason = None if contract in spec.contracts else (
                        f"model {mn!r} accepts {'/'.join(spec.contracts)} losses; {loss.name!r} is {contract}")
                    model_cells.append((comp, loss, reason))

    model_cells = _unique_models(model_cells, origin, registry, warnings)
    kept = {id(m) for m, _, _ in model_cells}
    given_labels = {k: v for k, v in given_labels.items() if k in kept}
    named = list(given_labels.values())  # one per model component (its losses share it)
    for label in sorted({x for x in named if named.count(x) > 1}):
        problems.append(f"models: label {label!r} names several entries; give each entry its own label")
    report = sf.report.model_dump(exclude_none=True)
    problems.extend(check_views(report))

    # a cell's labels, computed once here: run names use model and dataset; the runner tags the run with method
    # and data, the report's rows and columns
    losses = [loss for _, loss, _ in model_cells if loss is not None]
    varying = {kind: _varying(comps) for kind, comps in
               (("dataset", datasets), ("split", splits), ("model", [m for m, _, _ in model_cells]), ("loss", losses))}
    ran: dict[str, set[str]] = {}  # per model name, the loss configurations it runs with
    for model, loss, reason in model_cells:
        if loss is not None and reason is None:
            ran.setdefault(model.name, set()).add(json.dumps([loss.name, loss.params], sort_keys=True, default=str))
    split_shown = len({s.name for s in splits}) > 1 or any(varying["split"].values())
    cells = []
    for ds, split, (model, loss, reason), seed in itertools.product(datasets, splits, model_cells, seeds):
        labels = {"dataset": ds.label(varying["dataset"].get(ds.name, set())),
                  "model": given_labels.get(id(model)) or model.label(  # a tuned parameter's default is no name
                      varying["model"].get(model.name, set()) - set(model.tune.params if model.tune else ()))
                  + (" (tuned)" if model.tune else "")}
        several = loss is not None and len(ran.get(model.name, ())) > 1  # the loss tells methods apart
        labels["method"] = labels["model"] + (f" · {loss.label(varying['loss'][loss.name])}" if several else "")
        labels["data"] = labels["dataset"] + (f" / {split.label(varying['split'][split.name])}" if split_shown else "")
        cells.append(Cell(name, ds, split, model, loss, int(seed), settings, reason, labels))
    try:
        cells = _prune(cells, sf.include, sf.exclude, source)
    except ConfigError as exc:
        problems.extend(exc.problems)
    problems.extend(_requirement_problems(cells, registry))  # after pruning: an excluded pair is no problem
    claims, claim_structure = parse_claims(sf.claims)
    problems.extend(claim_structure)
    problems.extend(claim_problems(claims, cells, list(tasks), metric_names, sorted(set(cutoffs))))
    if problems:
        raise ConfigError(problems, source=source)
    by_hash: dict[str, Cell] = {}
    for cell in cells:  # what the entries above cannot tell apart still runs once
        if by_hash.setdefault(cell.config_hash, cell) is not cell:
            warnings.append(f"cell {cell.run_name!r} is configured twice; it runs once")
    return Suite(name=name, raw=raw, cells=list(by_hash.values()), tracking=sf.tracking.model_dump(exclude_unset=True),
                 report=report, source=source, jobs=sf.jobs, warnings=list(dict.fromkeys(warnings)),
                 executor=sf.executor.model_dump(exclude_none=True), retries=sf.retries, claims=[c for _, c in claims])


def _key(*comps: Component | None) -> str:
    """What makes components the same configuration: names and resolved parameters (defaults filled), and a
    model's tune block."""
    return json.dumps([None if c is None else [c.name, c.params] + ([c.tune.as_config()] if c.tune else [])
                       for c in comps], sort_keys=True, default=str)


def _tuned(entry, comps: list[Component], splits: list[Component], settings: EvalSettings, registry: Registry,
           where: str, problems: list[str]) -> list[Component]:
    """The entry's components with its parsed `tune:` block, every problem of the block added to `problems`."""
    if not comps:  # an unknown model or parameter: already a problem
        return comps
    from .tuning import name_problems, parse_tune, tune_problems

    block, probs = parse_tune(entry.tune, where)
    problems.extend(probs)
    if block is None:
        problems.extend(name_problems(entry.tune, registry.get("model", entry.name), where))
        return comps
    problems.extend(p for p in tune_problems(block, registry.get("model", entry.name), comps, entry.params, splits,
                                             settings, registry, where) if p not in problems)
    return [Component(c.kind, c.name, c.params, block) for c in comps]


def _unique(key: str, comps: list[Component], registry: Registry, warnings: list[str]) -> list[Component]:
    """The components in order, each configuration once; a repeated one (two entries that resolve to the same
    plugin and parameters once defaults are filled) is dropped with a warning, so it is not run twice."""
    out: dict[str, Component] = {}
    for comp in comps:
        if out.setdefault(_key(comp), comp) is not comp:
            what = _described(registry.get(comp.kind, comp.name), comp, repr(comp.name))
            warnings.append(f"{key}: {what} is listed more than once (the same plugin and parameters once defaults "
                            "are filled); it runs once: drop the duplicate entry")
    return list(out.values())


def _unique_models(model_cells: list, origin: dict[int, str], registry: Registry, warnings: list[str]) -> list:
    """(model, loss, reason) triples, each model-and-loss configuration once: an identical entry is trained once."""
    out: dict[str, tuple] = {}
    for triple in model_cells:
        model, loss, _ = triple
        first = out.setdefault(_key(model, loss), triple)
        if first is not triple:
            what = _described(registry.get("model", model.name), model, origin[id(model)])
            warnings.append(f"{what}{f' with loss {loss.name!r}' if loss else ''} is the same configuration as "
                            f"{origin[id(first[0])]}; it is trained once: drop one of the entries")
    return list(out.values())


def _described(spec, comp: Component, where: str) -> str:
    """`where` plus the parameters that differ from the defaults: names one configuration of an entry."""
    shown = ", ".join(f"{k}={v}" for k, v in comp.params.items() if v != spec.schema.defaults().get(k))
    return where + (f" ({shown})" if shown else "")


def _task_problems(spec, model: Component, tasks: list[str], where: str) -> list[str]:
    """A task of the suite that the model claims but cannot serve with these parameters (an ablation without the
    part that ranks, say)."""
    served = spec.serves(model.params)
    lost = [t for t in tasks if t in set(spec.tasks) and t not in served]
    if not lost:
        return []
    return [f"{_described(spec, model, where)}: cannot serve {'/'.join(lost)} with these parameters (it serves "
            f"{'/'.join(sorted(served)) or 'nothing'}); drop those tasks or this configuration"]


def _requirement_problems(cells: list["Cell"], registry: Registry) -> list[str]:
    """Cells whose model requires what their dataset and split do not provide (before any training)."""
    out: list[str] = []
    for cell in cells:
        spec = registry.get("model", cell.model.name)
        have = (set(registry.get("dataset", cell.dataset.name).provides)
                | registry.get("split", cell.split.name).provision(cell.split.params))
        missing = [r for r in spec.requires if r not in have]
        if missing:
            msg = (f"{_described(spec, cell.model, f'model {cell.model.name!r}')}: requires {'/'.join(missing)}, "
                   f"which dataset {cell.dataset.name!r} with split {cell.split.name!r} does not provide; "
                   f"{_REQUIREMENT_FIX[missing[0]]}, or exclude the combination (exclude: [{{model: "
                   f"{cell.model.name}, dataset: {cell.dataset.name}}}])")
            if msg not in out:
                out.append(msg)
    return out


_REQUIREMENT_FIX = {
    "truth": "use it on the synthetic dataset (the only one whose truth is known)",
    "calibration": "give the split a calibration window (temporal: calibration: DAYS; user: calibration: true)",
    "impressions": "use split {name: impressions} on a dataset with impressions and clicks",
    "funnel": "use split {name: funnel} on a dataset with recall / exposure / click events (synthetic: funnel: true)",
    "valid": "give the split a validation set (temporal: valid: true, or leave_one_out)",
}


def _split_problems(tasks: list[str], splits: list[Component], registry: Registry) -> list[str]:
    """The ctr task scores the split's test impressions: every split of the grid must yield them."""
    if "ctr" not in tasks:
        return []
    return [f"tasks: ctr needs a split that yields impressions, and split {c.name!r} does not; "
            f"{_REQUIREMENT_FIX['impressions']}" for c in splits
            if "impressions" not in registry.get("split", c.name).provision(c.params)]


def _varying(comps: list[Component]) -> dict[str, set[str]]:
    """Per plugin name, the parameters that take more than one value in the grid."""
    out: dict[str, set[str]] = {}
    by_name: dict[str, list[Component]] = {}
    for c in comps:
        by_name.setdefault(c.name, []).append(c)
    for name, group in by_name.items():
        keys = {k for c in group for k in c.params}
        out[name] = {k for k in keys
                     if len({json.dumps(c.params.get(k), sort_keys=True, default=str) for c in group}) > 1}
    return out


def _matches(cell: Cell, pattern: dict) -> bool:
    flat = cell.flat_params()
    return all(str(flat.get(k)) == str(v) for k, v in pattern.items())


def _prune(cells: list[Cell], include, exclude, source: str) -> list[Cell]:
    for key, pats in (("include", include), ("exclude", exclude)):
        for n, p in enumerate(_as_list(pats)):
            if not isinstance(p, dict):
                raise ConfigError(f"{key}[{n}]: expected a mapping like {{model: bpr, seed: 0}}, got {p!r}", source)
            known = {k for c in cells for k in c.flat_params()}
            bad = [k for k in p if k not in known]
            if bad and cells:
                raise ConfigError([f"{key}[{n}]: unknown key {k!r}{did_you_mean(k, sorted(known))}" for k in bad],
                                  source)
    if include:
        cells = [c for c in cells if any(_matches(c, p) for p in _as_list(include))]
    if exclude:
        cells = [c for c in cells if not any(_matches(c, p) for p in _as_list(exclude))]
    return cells


def _planners(entries, tasks: list[str], registry: Registry, problems: list[str], warnings: list[str]
              ) -> list[PlannerRun]:
    """The suite's planner runs: every parameter combination, validated against the schema and the planner's own
    checks (e.g. beta <= alpha); labels name what varies."""
    from .matching import planner_label

    if entries and "matching" not in tasks:
        problems.append("planners: listed, but the suite's tasks have no 'matching'; add matching to tasks "
                        "or drop planners")
    if "matching" in tasks and not entries:
        problems.append("tasks: 'matching' needs planners, e.g. planners: [{name: dual, alpha: 0.01, beta: 0.001}]")
    comps: list[Component] = []
    for n, e in enumerate(entries):
        where = f"planners[{n}] {e.name!r}"
        for comp in _expand("planner", e.name, e.params, registry, where, problems):
            try:
                registry.get("planner", e.name).factory(**comp.params)
            except ConfigError as exc:
                problems.extend(f"planners[{n}]: {p}" for p in exc.problems if f"planners[{n}]: {p}" not in problems)
            except (TypeError, ValueError) as exc:
                problems.append(f"{where}: {exc}")
            comps.append(comp)
    comps = _unique("planners", comps, registry, warnings)
    keys = {k for c in comps for k in c.params}
    varying = {k for k in keys if len({json.dumps(c.params[k], default=str) for c in comps if k in c.params}) > 1}
    out = [PlannerRun(c.name, c.params, planner_label(c.name, c.params, varying & set(c.params))) for c in comps]
    labels = [o.label for o in out]
    for label in sorted({x for x in labels if labels.count(x) > 1}):
        problems.append(f"planners: {label!r} names two configurations; give them parameters that tell them apart")
    return out
