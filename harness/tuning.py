"""Hyper-parameter tuning of one cell: a model entry's `tune:` block runs an Optuna study on the split's validation
set, and the cell then fits and tests the chosen parameters once.

    models:
      - name: bpr
        tune:
          params: {factors: {int: [16, 128], log: true}, lr: {float: [1.0e-4, 1.0e-1], log: true},
                   reg: {choice: [0, 1.0e-4, 1.0e-3]}}
          trials: 30
          metric: itemrec/ndcg_10        # measured on the split's validation set
          sampler: tpe                   # tpe | random | grid
          pruner: median                 # none | median (on the model's per-epoch validation curve)

What keeps the choice honest: a trial sees a copy of the split whose test set *is* the validation set (the test
targets are not in it), so no trial can read a test metric; the study's objective is the block's metric on that
set. What makes it resumable: the study lives in an Optuna storage beside the tracking store (`Tracker.
study_storage`, e.g. `mlruns.db` -> `mlruns.optuna.db`), named after the cell's configuration hash (which includes
the tune block, so a changed search space is a new study); a rerun loads it and runs only the trials its budget
still lacks. Trials a killed process left RUNNING are closed as FAILED (interrupted) and not counted.

Every trial becomes a record nested under the cell's (`CellRecord.trials`: its parameters, validation metrics and
curves, status FINISHED, PRUNED or FAILED), built from the study at the end, so trials of an earlier, interrupted
attempt are recorded too.

Parallel trials (`parallel: N`, Optuna's own way of distributing a study: several processes share its storage): the
runner puts N − 1 helper cells (`Cell.study_worker` 1 … N − 1) beside the cell on the executor; each runs trials of
the same study until the budget is used up and records nothing of its own. The cell's own worker runs trials too,
then waits for the helpers' trials still running, and refits. The storage keeps a heartbeat per running trial, so a
trial whose process died (a killed helper, a killed driver) is closed as interrupted once its heartbeat is
`GRACE_S` old, not while a sibling is still working on it. A study in memory (no sidecar store) runs its trials one
after another whatever `parallel` says. Near the end of the budget two workers may both start the last trial: a
study can end with up to N − 1 trials more than `trials`.

Internal: plugin authors use `harness.plugin`.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import traceback
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from .errors import did_you_mean
from .tracking import CellRecord

if TYPE_CHECKING:
    from .journey import Journey
    from .registry import Registry

RANKING_TASKS = ("itemrec", "userrec")
Number = Union[StrictInt, StrictFloat]


class Distribution(BaseModel):
    """One parameter's search space: `{int: [lo, hi]}`, `{float: [lo, hi]}` (both optionally `log: true` or a
    `step`) or `{choice: [a, b, ...]}`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    int_: tuple[StrictInt, StrictInt] | None = Field(None, alias="int", description="an integer range [lo, hi]")
    float_: tuple[Number, Number] | None = Field(None, alias="float", description="a real range [lo, hi]")
    choice: list[Any] | None = Field(None, min_length=1, description="the values to choose from")
    log: StrictBool = Field(False, description="sample the range on a log scale (lo > 0)")
    step: Number | None = Field(None, gt=0, description="the range's grid step (not with log)")

    @model_validator(mode="after")
    def _one_kind(self) -> "Distribution":
        given = [k for k, v in (("int", self.int_), ("float", self.float_), ("choice", self.choice)) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of int: [lo, hi], float: [lo, hi] or choice: [...]"
                             + (f" (got {' and '.join(given)})" if given else ""))
        rng = self.range
        if rng is not None:
            lo, hi = rng
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"the range [{lo}, {hi}] must be finite")
            if lo > hi:
                raise ValueError(f"the range [{lo}, {hi}] is empty: write it [low, high]")
            if self.log and lo <= 0:
                raise ValueError(f"log: true needs a positive range, got [{lo}, {hi}]")
            if self.log and self.step is not None:
                raise ValueError("log and step do not go together: drop one")
            if self.int_ is not None and self.step is not None and not float(self.step).is_integer():
                raise ValueError(f"an int range's step must be a whole number, got {self.step}")
        elif self.log or self.step is not None:
            raise ValueError("log and step apply to int and float ranges, not to choice")
        return self

    @property
    def kind(self) -> str:
        return "int" if self.int_ is not None else "float" if self.float_ is not None else "choice"

    @property
    def range(self) -> tuple[float, float] | None:
        return self.int_ or self.float_

    def grid(self) -> list[Any] | None:
        """Every value of the space, or None where it is continuous (a float range without a step)."""
        if self.choice is not None:
            return list(self.choice)
        lo, hi = self.range
        if self.int_ is not None:
            return list(range(lo, hi + 1, int(self.step or 1)))
        if self.step is None:
            return None
        n = int(math.floor((hi - lo) / self.step + 1e-9))
        return [lo + i * self.step for i in range(n + 1)]

    def suggest(self, trial, name: str) -> Any:
        if self.choice is not None:
            return trial.suggest_categorical(name, self.choice)
        lo, hi = self.range
        if self.int_ is not None:
            return trial.suggest_int(name, lo, hi, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, float(lo), float(hi), step=self.step, log=self.log)

    def as_config(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class TuneBlock(BaseModel):
    """A model entry's `tune:` block: search `params` for `trials` trials, maximising (or minimising, as the metric
    declares) `metric` on the split's validation set."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    params: dict[StrictStr, Distribution] = Field(min_length=1, description="parameter -> its search space")
    trials: StrictInt = Field(20, gt=0, description="the number of finished trials the study runs")
    metric: StrictStr | list[StrictStr] = Field(
        min_length=1, description="the objective, <task>/<metric>_<K> (e.g. itemrec/ndcg_10), measured on the split's "
                                  "validation set; a list: their mean (e.g. UniMatch's AVG of IR and UT)")
    sampler: Literal["tpe", "random", "grid"] = Field("tpe", description="Optuna's sampler")
    pruner: Literal["none", "median"] = Field("none", description="stop trials whose validation curve lags "
                                                                  "the median")
    parallel: StrictInt = Field(1, ge=1, le=256, description="trials run at once on the executor's workers (the "
                                "cell's and parallel − 1 helpers'); how the study runs, not what it searches, so "
                                "it is not part of the cell's configuration")

    @property
    def metrics(self) -> list[str]:
        """The objective's metrics (one, or the several whose mean it is)."""
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    @property
    def objective(self) -> str:
        """The objective's name: the metric, or `mean(a, b)`."""
        return self.metric if isinstance(self.metric, str) else f"mean({', '.join(self.metric)})"

    def as_config(self) -> dict[str, Any]:
        """What enters the cell's configuration hash."""
        return {"params": {k: d.as_config() for k, d in sorted(self.params.items())}, "trials": self.trials,
                "metric": self.metric, "sampler": self.sampler, "pruner": self.pruner}

    def budget(self) -> int:
        """The trials to run: `trials`, or the grid's size where the grid sampler has fewer points."""
        if self.sampler != "grid":
            return self.trials
        return min(self.trials, math.prod(len(d.grid() or ()) for d in self.params.values()))


# ------------------------------------------------------------------------------------------------ validation
def parse_tune(raw: Any, where: str) -> tuple[TuneBlock | None, list[str]]:
    """The typed block and its structural problems (each with its key path), or (None, problems)."""
    from pydantic import ValidationError

    from .schema import text_hint

    try:
        return TuneBlock.model_validate(raw), []
    except ValidationError as exc:
        errors = exc.errors()
    def key(loc) -> tuple:  # drop the union members' tags pydantic appends after a list index
        return tuple(p for i, p in enumerate(loc) if not (p in ("int", "float") and i and isinstance(loc[i - 1], int)))

    floats = {key(e["loc"]) for e in errors if e["loc"][-1:] == ("float",)}
    errors = [e for e in errors if not (e["loc"][-1:] == ("int",) and key(e["loc"]) in floats)]
    out = []
    for err in errors:
        loc = list(key(err["loc"]))
        path = where + ".tune" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            known = ["int", "float", "choice", "log", "step"] if len(loc) > 2 else list(TuneBlock.model_fields)
            out.append(f"{where}.tune: unknown key {str(loc[-1])!r}{did_you_mean(str(loc[-1]), known)}"
                       if len(loc) == 1 else f"{path[:path.rfind('.')]}: unknown key {str(loc[-1])!r}"
                       f"{did_you_mean(str(loc[-1]), known)}")
            continue
        msg = err["msg"][0].lower() + err["msg"][1:]
        msg = msg.removeprefix("value error, ")
        shown = f", got {value!r}" if value is not None and not isinstance(value, dict) and err["type"] not in (
            "value_error", "missing") else ""
        want = err["type"].split("_")[0]
        out.append(f"{path}: {msg}{shown}" + (text_hint(want, value) if want in ("int", "float") else ""))
    return None, list(dict.fromkeys(out))


def objectives(settings, served: set[str], registry: "Registry") -> dict[str, int]:
    """Every metric the validation evaluation of a cell produces, `<prefix>/<metric>_<K>`, with its direction."""
    out = {}
    for cand in settings.candidates:
        negatives = getattr(cand, "negatives", None)
        for task in (t for t in settings.tasks if t in RANKING_TASKS and t in served):
            prefix = task if negatives is None else (
                f"{task}_s{negatives}" + ("p" if getattr(cand, "weighting", "uniform") == "popularity" else ""))
            for name in settings.metrics:
                spec = registry.get("metric", name)
                if task in spec.tasks:
                    out.update({f"{prefix}/{name}_{k}": int(spec.direction) for k in settings.cutoffs})
    return out


def name_problems(raw: Any, spec, where: str) -> list[str]:
    """Unknown parameter names of a block that did not parse (so they are reported with its other problems)."""
    params = raw.get("params") if isinstance(raw, dict) else None
    known = [p.name for p in spec.params]
    return [f"{where}.tune.params.{name}: {spec.name!r} has no parameter {name!r}{did_you_mean(str(name), known)}"
            for name in (params if isinstance(params, dict) else ()) if name not in known]


def tune_problems(block: TuneBlock, spec, comps: list, given: dict[str, Any], splits: list, settings,
                  registry: "Registry", where: str) -> list[str]:
    """Everything wrong with a model entry's tune block, against the model's parameter schema, the suite's splits
    and the metrics its evaluation produces."""
    where = f"{where}.tune"
    out: list[str] = []
    schema = {p.name: p for p in spec.params}
    for name, dist in block.params.items():
        at = f"{where}.params.{name}"
        p = schema.get(name)
        if p is None:
            out.append(f"{at}: {spec.name!r} has no parameter {name!r}{did_you_mean(name, list(schema))}")
            continue
        if name in given:
            out.append(f"{at}: {name} is both set on the entry ({given[name]!r}) and tuned; drop one of the two")
        if dist.kind != "choice" and p.type not in ("int", "float"):
            out.append(f"{at}: {name} is {p.type}; a range needs an int or float parameter, use choice: [...]")
            continue
        if dist.kind == "float" and p.type == "int":
            out.append(f"{at}: {name} is an int parameter; write int: [lo, hi] (or choice: [...])")
            continue
        odd = [v for v in dist.choice or () if v is not None and not isinstance(v, (bool, int, float, str))]
        if odd:
            out.append(f"{at}: choice values must be numbers, text, booleans or null (Optuna's categorical), got "
                       f"{odd[0]!r}; tune a list or mapping parameter through a text or number it is built from")
            continue
        values = dist.choice if dist.kind == "choice" else list(dist.range)
        for v in values:
            _, problem = p.check(v)
            if problem:
                out.append(f"{at}: {problem}" + ("" if dist.kind == "choice" else
                                                  f" (the range must lie within {name}'s schema: {p.describe()})"))
    if block.sampler == "grid":
        cont = [n for n, d in block.params.items() if d.grid() is None]
        if cont:
            out.append(f"{where}: the grid sampler needs countable spaces; {', '.join(cont)} "
                       "is a float range without a step: give step: or choice: [...]")
    for split in splits:
        if "valid" not in registry.get("split", split.name).provision(split.params):
            out.append(f"{where}: split {split.name!r} has no validation set to tune on; give it one "
                       "(temporal: valid: true, funnel: valid_days: N, or use leave_one_out)")
    served = set.union(*(spec.serves(c.params) for c in comps)) if comps else set(spec.tasks)
    produced = objectives(settings, served, registry)
    for metric in block.metrics:
        if metric not in produced:
            task = metric.split("/", 1)[0]
            why = (" (the ctr task has no validation impressions: tune on a ranking task)" if task == "ctr" else "")
            out.append(f"{where}: metric {metric!r} is not produced by this suite's evaluation of {spec.name!r}"
                       f"{why}{did_you_mean(metric, sorted(produced))}")
        elif produced[metric] == 0:
            out.append(f"{where}: metric {metric!r} is descriptive (neither higher nor lower is better); "
                       "tune on a metric with a direction")
    senses = {produced[m] for m in block.metrics if produced.get(m)}
    if len(senses) > 1:
        out.append(f"{where}: the metrics of {block.objective} do not share a direction (some are better higher, "
                   "some lower), so their mean is no objective; tune on metrics of one direction")
    return out


# ------------------------------------------------------------------------------------------------ the study
_RETRY = "matchbench_retry_of"
"""The user attribute of a trial queued to redo an interrupted one: the interrupted trial's number."""
_COUNTED = "matchbench_counted"
"""The user attribute of a trial that failed by an error of its own (it counts towards the budget)."""
HEARTBEAT_S = 2
"""Seconds between the heartbeats of a running trial in a parallel study."""
GRACE_S = 20
"""A parallel study's running trial whose heartbeat is this old lost its process: it is closed as interrupted."""
POLL_S = 0.5
"""How often the cell's worker looks at a parallel study while it waits for the helpers' last trials."""


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage(url: str | None, heartbeat: bool = False):
    """The Optuna storage at `url`, or None: in memory. An SQLite file waits for a lock instead of failing, and
    its tables are created under a file lock, so workers that start together do not race on the schema. With
    `heartbeat`, running trials beat every HEARTBEAT_S seconds (a parallel study tells a dead worker's trial from a
    live sibling's by it)."""
    if not url:
        return None
    optuna = _optuna()
    beat = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S} if heartbeat else {}
    if not url.startswith("sqlite:///"):
        return optuna.storages.RDBStorage(url, **beat)
    import os
    import tempfile

    path = url[len("sqlite:///"):]
    digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:16]
    lock = os.path.join(tempfile.gettempdir(), f"matchbench-optuna-init-{digest}.lock")
    fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): Optuna's own handling is all there is
            pass
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}, **beat)
    finally:
        os.close(fd)  # releases the lock


def _sampler(block: TuneBlock, seed: int, n_before: int, worker: int = 0):
    """The block's sampler, seeded by the cell's seed, the number of trials the study already has (a resumed
    study does not draw the same points again; the grid sampler keeps its order and skips visited points itself)
    and the worker (parallel workers do not draw the same points; TPE's constant liar keeps them apart too)."""
    optuna = _optuna()
    key = f"{seed}-{n_before}" + (f"-{worker}" if worker else "")
    s = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
    if block.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s)
    if block.sampler == "grid":  # its grid ids index a seeded shuffle: the same on every resume
        return optuna.samplers.GridSampler({n: d.grid() for n, d in block.params.items()}, seed=seed)
    return optuna.samplers.TPESampler(seed=s)


def _close_stale(study) -> None:
    """Trials left RUNNING by a killed process (one cell runs one study at a time): closed as FAILED. Like the trials
    Optuna failed on an interrupt, they carry no outcome of their own (`interrupted`): not counted, so the budget
    runs them again."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)


def _retry_interrupted(study, block: TuneBlock) -> None:
    """Queue the parameters of each interrupted trial once more (the grid sampler counts a failed point as visited
    and would never return to it; the other samplers lose nothing by finishing what was started)."""
    retried = {t.user_attrs.get(_RETRY) for t in study.get_trials(deepcopy=False)}
    for t in study.get_trials(deepcopy=False):
        if interrupted(t) and t.number not in retried and set(t.params) == set(block.params):
            study.enqueue_trial(t.params, user_attrs={_RETRY: t.number})


def interrupted(t) -> bool:
    """A FAILED trial that did not fail by itself: its process was killed or interrupted."""
    return t.state.name == "FAIL" and _COUNTED not in t.user_attrs


def counted(study) -> list:
    """The trials that count towards the budget: COMPLETE, PRUNED, and FAILED by an error of their own."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and _COUNTED in t.user_attrs)]


def forget_studies(url: str, names: list[str]) -> None:
    """Delete the studies `names` from the storage at `url` where they exist (`--rerun`: tune again from scratch)."""
    if not names:
        return
    optuna = _optuna()
    store = storage(url)
    have = {s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)}
    for name in names:
        if name in have:
            optuna.delete_study(study_name=name, storage=store)


def _open_study(j: "Journey"):
    """The cell's study (created, or loaded to resume) and its metric's sense (+1 maximise, −1 minimise)."""
    cell = j.cell
    block: TuneBlock = cell.model.tune
    optuna = _optuna()
    sense = objectives(j.settings, j.registry.get("model", cell.model.name).serves(cell.model.params),
                       j.registry)[block.metrics[0]]
    store = storage(cell.study_storage, heartbeat=_parallel(cell))
    kw = dict(study_name=cell.config_hash, direction="maximize" if sense > 0 else "minimize",
              pruner=optuna.pruners.MedianPruner() if block.pruner == "median" else optuna.pruners.NopPruner())
    if store is None:
        return optuna.create_study(storage=optuna.storages.InMemoryStorage(), **kw), sense
    return optuna.create_study(storage=store, load_if_exists=True, **kw), sense


def _parallel(cell) -> bool:
    """Whether the cell's study runs on several workers at once (a block with parallel > 1 and a shared storage)."""
    return cell.model.tune.parallel > 1 and bool(cell.study_storage)


def _run_trials(j: "Journey", study, sense: int, worker: int) -> None:
    """Run trials of the study until it has its budget of counted trials. In a parallel study every worker does
    this; trials running elsewhere count as on their way, so a helper (worker > 0) leaves when the budget is
    taken, and the cell's own worker (0) waits for them: it refits only when every trial has ended."""
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    block: TuneBlock = j.cell.model.tune
    parallel = _parallel(j.cell)
    study.sampler = _sampler(block, j.cell.seed, len(study.trials), worker)
    objective = Objective(j, block, sense)
    while True:
        if parallel:
            fail_stale_trials(study)  # a dead worker's trials: interrupted, so run again
            if worker == 0:
                _retry_interrupted(study, block)
        done = len(counted(study))
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if done + running >= block.budget():
            if worker or not parallel or not running:  # the cell's worker waits for every trial still running
                return
            time.sleep(POLL_S)
            continue
        study.optimize(objective, n_trials=1, catch=(Exception,))


def assist_study(j: "Journey") -> None:
    """A helper cell's `tune` step (`Cell.study_worker` > 0): run trials of the cell's study beside it; the cell
    records them and refits."""
    study, sense = _open_study(j)
    _run_trials(j, study, sense, j.cell.study_worker)


def run_study(j: "Journey") -> None:
    """The journey's `tune` step: run (or resume) the cell's study, record its trials and the choice, and leave
    the journey's cell with the chosen parameters for the fit step (its test set is used once, by that fit)."""
    cell, rec = j.cell, j.record
    block: TuneBlock = cell.model.tune
    t0 = time.time()
    study, sense = _open_study(j)
    if not _parallel(cell):  # alone on its study: whatever is still RUNNING was left by a killed process
        _close_stale(study)
    _retry_interrupted(study, block)
    resumed = len(counted(study))
    _run_trials(j, study, sense, 0)
    trials = counted(study)
    rec.trials = [_trial_record(cell, t) for t in study.get_trials(deepcopy=False)]
    states = [t.state.name for t in trials]
    rec.metrics.update({"tune/trials": float(len(trials)), "tune/complete": float(states.count("COMPLETE")),
                        "tune/pruned": float(states.count("PRUNED")), "tune/failed": float(states.count("FAIL")),
                        "tune/resumed": float(resumed), "time/tune_s": time.time() - t0})
    rec.params.update({"tune.metric": block.objective, "tune.sampler": block.sampler, "tune.pruner": block.pruner,
                       "tune.budget": block.budget(), "tune.storage": cell.study_storage or "memory",
                       "tune.parallel": block.parallel if _parallel(cell) else 1})
    if block.pruner != "none" and trials and not any(t.intermediate_values for t in trials):
        rec.tags["matchbench.tune_note"] = (f"pruner {block.pruner}: the model logged no per-epoch validation curve "
                                            f"(valid/{block.metrics[0].split('/', 1)[1]}), so no trial could be "
                                            "pruned")
    done = [t for t in trials if t.state.name == "COMPLETE"]
    rec.curves["tune/trial_value"] = [(t.number, float(t.value)) for t in done]
    best_so_far, best = [], None
    for t in sorted(done, key=lambda t: t.number):
        best = t.value if best is None or (t.value > best if sense > 0 else t.value < best) else best
        best_so_far.append((t.number, float(best)))
    rec.curves["tune/trial_best"] = best_so_far
    if not done:
        errors = [t.user_attrs.get("error", "") for t in trials if t.state.name == "FAIL"]
        raise RuntimeError(f"tune: none of the {len(trials)} trials completed on the validation set "
                           f"({states.count('PRUNED')} pruned, {states.count('FAIL')} failed); nothing to refit"
                           + (f". The first failure:\n{errors[0]}" if errors else ""))
    chosen = study.best_trial
    rec.metrics["tune/best_value"] = float(chosen.value)
    rec.metrics["tune/best_trial"] = float(chosen.number)
    for k, v in chosen.params.items():
        rec.params[f"tuned.{k}"] = v
        rec.params[f"model.{k}"] = v
    rec.tags["matchbench.tuned"] = json.dumps(chosen.params, sort_keys=True, default=str)
    # the fit step fits these parameters on the training data and the test set is evaluated once
    j.cell = replace(cell, model=replace(cell.model, params={**cell.model.params, **chosen.params}))


class Objective:
    """One trial: fit the suggested parameters on the training data, evaluate on the validation set (the trial's
    copy of the split has the validation set in the test set's place and no test data at all)."""

    def __init__(self, j: "Journey", block: TuneBlock, sense: int):
        self.j, self.block = j, block
        split = j.split
        self.split = replace(split, test=split.valid, test_impressions=None, test_funnel=None)
        # the curve the pruner reads: the model's per-epoch `valid/<metric>_<K>`; where a model logs only the
        # early-stopping curve every built-in logs, valid/ndcg_10, that one stands in for a metric to maximise
        self.curve = f"valid/{block.metrics[0].split('/', 1)[1]}"
        self.fallback = "valid/ndcg_10" if sense > 0 else None

    def __call__(self, trial) -> float:
        from .journey import Journey, fit, requests

        j, block = self.j, self.block
        params = {name: dist.suggest(trial, name) for name, dist in block.params.items()}
        trial.set_user_attr("worker", j.cell.study_worker)
        cell = replace(j.cell, model=replace(j.cell.model, params={**j.cell.model.params, **params}))
        rec = CellRecord(suite=cell.suite, config_hash=cell.config_hash, run_name=f"trial {trial.number}",
                         status="RUNNING", start_time=time.time())
        seen: set[str] = set()

        def observe(name: str, value: float, step: int) -> None:
            seen.add(name)
            if block.pruner == "none" or not (name == self.curve or (name == self.fallback and self.curve not in seen)):
                return
            trial.report(float(value), int(step))
            if trial.should_prune():
                import optuna

                raise optuna.TrialPruned(f"{name}={value:.4g} at step {step} lags the median of earlier trials")

        sub = Journey(cell, j.registry, rec, dataset=j.dataset, split=self.split, device=j.device,
                      on_metric=observe)
        try:
            fit(sub)
            value = self._validate(sub, requests)
            if not math.isfinite(value):
                raise ValueError(f"{block.objective} is {value} on the validation set")
        except Exception as exc:
            import optuna

            trial.set_user_attr("curves", _curves(rec))
            if not isinstance(exc, optuna.TrialPruned):
                trial.set_user_attr("error", traceback.format_exc()[-4000:])
                trial.set_user_attr(_COUNTED, True)
            raise
        trial.set_user_attr("metrics", {k: float(v) for k, v in rec.metrics.items() if math.isfinite(v)})
        trial.set_user_attr("curves", _curves(rec))
        return value

    def _validate(self, sub, requests) -> float:
        """The block's objective (and the other metrics of its tasks and protocols) on the validation set."""
        from .cache import param_hash
        from .evaluate import ScoreSource

        cell, prefixes = sub.cell, {m.split("/", 1)[0] for m in self.block.metrics}
        t0 = time.time()
        source = ScoreSource(sub.model, self.split.test, self.split.n_items, sub.device)
        for req in requests(sub):
            if req.prefix not in prefixes:
                continue
            key = "-".join([sub.dataset.fingerprint, cell.split.name, param_hash(cell.split.params), str(cell.seed),
                            req.task, str(req.negatives), req.weighting, "valid"])
            res = req.run(source, self.split.test, self.split.train.item_counts, cell.seed, key)
            sub.record.metrics.update({f"valid/{req.prefix}/{k}": v for k, v in res.metrics.items()})
        sub.record.metrics["time/eval_s"] = time.time() - t0
        values = [float(sub.record.metrics[f"valid/{m}"]) for m in self.block.metrics]
        return math.fsum(values) / len(values)


def _curves(rec: CellRecord) -> dict[str, list]:
    return {k: [[int(s), float(v)] for s, v in pts if math.isfinite(v)] for k, pts in rec.curves.items()}


def _trial_record(cell, t) -> CellRecord:
    """A study's trial as a record nested under the cell's: FINISHED, PRUNED or FAILED (interrupted trials too)."""
    state = t.state.name
    status = {"COMPLETE": "FINISHED", "PRUNED": "PRUNED"}.get(state, "FAILED")
    start = t.datetime_start.timestamp() if t.datetime_start else 0.0
    end = t.datetime_complete.timestamp() if t.datetime_complete else start
    rec = CellRecord(suite=cell.suite, config_hash=cell.config_hash, run_name=f"trial {t.number}", status=status,
                     start_time=start, end_time=end)
    rec.params = {"trial": t.number, **{f"model.{k}": v for k, v in t.params.items()}}
    rec.metrics = dict(t.user_attrs.get("metrics", {}))
    if t.value is not None:
        rec.metrics["tune/value"] = float(t.value)
    rec.curves = {k: [(int(s), float(v)) for s, v in pts] for k, pts in t.user_attrs.get("curves", {}).items()}
    rec.tags = {"optuna.trial_number": str(t.number), "optuna.state": state,
                "matchbench.study_worker": str(t.user_attrs.get("worker", 0))}
    if interrupted(t):
        rec.tags["matchbench.interrupted"] = "true"
        rec.reason = "interrupted (the process running it stopped); not counted, the study ran another"
    if "error" in t.user_attrs:
        rec.error = t.user_attrs["error"]
    return rec
