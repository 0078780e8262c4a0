"""Tuning (`tune:` blocks, harness.tuning): the study finds a known best, never reads the test set, resumes without
repeating a finished trial, records pruned trials as pruned, refuses bad blocks in one error, and shows its choice in
MLflow, the report and `matchbench results`.

The world here is built so that the answer is known: a split whose every validation state has one target item
(`valid_item`) and every test state another (`test_item`), and a model `knob` whose ranking puts the items nearest to
its parameter `center` first. Its validation quality therefore peaks at center = valid_item, its test quality at
center = test_item: a study that chose by the test set would be caught.
"""
import math
import textwrap
import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import tiny_suite

from harness import api, hookimpl
from harness.cli import main
from harness.data import Dataset, Interactions
from harness.errors import ConfigError
from harness.model import Model
from harness.registry import Registry
from harness.runner import make_tracker, run_cell
from harness.schema import Param
from harness.specs import DatasetSpec, ModelSpec, SplitSpec
from harness.splits import EvalSet, SplitData, UserStates
from harness.suite import build_suite

N_USERS, N_ITEMS = 30, 40


class Interrupted(BaseException):
    """Stands for kill -9: not an Exception, so nothing on the way catches it and the running trial stays open."""


class Knob(Model):
    """Ranks items by closeness to `center`: score(i) = -(i - center)^2 as a dot product of factors
    [1, 2·center] · [-i^2, i]. Logs `valid/ndcg_40`-style curves per epoch for the pruner (worse early epochs)."""

    fits = 0
    interrupt_at: int | None = None

    def __init__(self, center: float = 0.0, epochs: int = 3, curve: str = "valid/ndcg_40", pause: float = 0.0):
        self.center, self.epochs, self.curve, self.pause = float(center), int(epochs), curve, float(pause)

    def fit(self, train, loss, ctx):
        type(self).fits += 1
        time.sleep(self.pause)
        if type(self).interrupt_at is not None and type(self).fits >= type(self).interrupt_at:
            raise Interrupted()
        self.n_items = train.n_items
        if ctx.valid is not None and self.curve:
            target = int(ctx.valid.targets.indices[0])  # every validation state has the same target
            for epoch in range(self.epochs):
                # a curve that improves with the epochs and is better the nearer center is to the validation target
                ctx.log_metric(self.curve, (epoch + 1) / self.epochs / (1 + abs(self.center - target)), epoch)

    def factors(self, states):
        i = torch.arange(self.n_items, dtype=torch.float64)
        u = torch.tensor([[1.0, 2.0 * self.center]], dtype=torch.float64).expand(len(states), 2)
        return u.float().contiguous(), torch.stack([-i * i, i], 1).float()


class FixedTargets:
    """Train on every event; each user has a validation state targeting `valid_item` and a test state targeting
    `test_item` (empty histories: nothing is excluded)."""

    def __init__(self, valid_item: int = 23, test_item: int = 23):
        self.valid_item, self.test_item = int(valid_item), int(test_item)

    def _set(self, x, item, name):
        n = x.n_users
        states = UserStates(user=np.arange(n), time=np.full(n, x.time.max() + 1.0), hist_ptr=np.zeros(n + 1, np.int64),
                            hist_item=np.zeros(0, np.int64), hist_time=np.zeros(0))
        targets = sp.csr_matrix((np.ones(n, np.float32), np.full(n, item), np.arange(n + 1)), shape=(n, x.n_items))
        return EvalSet(states=states, targets=targets, name=name)

    def split(self, dataset, seed):
        x = dataset.interactions
        return SplitData(train=x, test=self._set(x, self.test_item, "test"),
                         valid=self._set(x, self.valid_item, "valid"), info={"n_train": len(x)})


def tiny_log(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    n = 300
    x = Interactions(user=rng.integers(0, N_USERS, n), item=rng.integers(0, N_ITEMS, n), time=np.sort(rng.random(n)),
                     n_users=N_USERS, n_items=N_ITEMS)
    return Dataset(name="tiny_log", interactions=x, user_ids=np.arange(N_USERS).astype(str),
                   item_ids=np.arange(N_ITEMS).astype(str))


class KnobPlugins:
    @hookimpl
    def register_models(self, register):
        register(ModelSpec(name="knob", factory=Knob, description="ranks items by closeness to center",
                           tasks=("itemrec",),
                           params=(Param("center", "float", 0.0, "the item the ranking centres on", low=0.0,
                                         high=N_ITEMS - 1.0),
                                   Param("epochs", "int", 3, "epochs of the logged curve", low=1),
                                   Param("curve", "str", "valid/ndcg_40", "the curve's name (empty: none)"),
                                   Param("pause", "float", 0.0, "seconds each fit sleeps", low=0.0))))

    @hookimpl
    def register_splits(self, register):
        register(SplitSpec(name="fixed_targets", factory=FixedTargets, provides=("valid",),
                           description="validation targets one item, test targets another",
                           params=(Param("valid_item", "int", 23, "every validation target", low=0),
                                   Param("test_item", "int", 23, "every test target", low=0))))

    @hookimpl
    def register_datasets(self, register):
        register(DatasetSpec(name="tiny_log", factory=tiny_log, cache=False, description="random events",
                             params=(Param("seed", "int", 0, "rng seed"),)))


@pytest.fixture
def reg():
    Knob.fits, Knob.interrupt_at = 0, None
    yield Registry.load(extra=[KnobPlugins()])
    Knob.fits, Knob.interrupt_at = 0, None


def knob_suite(tune: dict, valid_item: int = 23, test_item: int = 23, **over) -> dict:
    block = {"params": {"center": {"float": [0.0, N_ITEMS - 1.0]}}, "trials": 20, "metric": "itemrec/ndcg_40",
             **tune}
    return tiny_suite(name="knobs", datasets=["tiny_log"], split={"name": "fixed_targets", "valid_item": valid_item,
                                                                   "test_item": test_item},
                      tasks=["itemrec"], metrics=["ndcg", "recall"], cutoffs=[10, 40],
                      models=[{"name": "knob", "tune": block}], **over)


def only_cell(suite: dict, reg):
    cells = build_suite(suite, reg).cells
    assert len(cells) == 1
    return cells[0]


# ------------------------------------------------------------------------------------------------ the study
def test_tpe_finds_the_known_best_center(reg):
    """Validation NDCG@40 peaks at center = 23 (the target ranks first within 0.5 of it). TPE with 20 trials lands
    within 1.5 of it (the target in the top 3: NDCG >= 0.5), as the exhaustive grid's best point (23) does exactly."""
    rec = run_cell(only_cell(knob_suite({"trials": 20, "sampler": "tpe"}), reg), reg)
    assert rec.status == "FINISHED", rec.error
    assert abs(rec.params["tuned.center"] - 23) <= 1.5
    assert rec.metrics["tune/best_value"] >= 0.5 and rec.metrics["tune/trials"] == 20
    assert rec.params["model.center"] == rec.params["tuned.center"]  # the refit used the chosen value
    assert rec.metrics["itemrec/ndcg_40"] >= 0.5  # validation and test agree in this world
    assert len(rec.trials) == 20 and {t.status for t in rec.trials} == {"FINISHED"}
    grid = run_cell(only_cell(knob_suite({"params": {"center": {"int": [0, N_ITEMS - 1]}}, "trials": 100,
                                          "sampler": "grid"}), reg), reg)
    assert grid.params["tuned.center"] == 23 and grid.metrics["tune/trials"] == N_ITEMS  # the grid's size caps it
    assert math.isclose(grid.metrics["tune/best_value"], 1.0)


def test_the_objective_never_reads_the_test_set(reg):
    """Validation targets item 5, test targets item 30: a study that chose by the test would pick 30."""
    suite = knob_suite({"params": {"center": {"choice": [5.0, 30.0]}}, "trials": 2, "sampler": "grid"},
                       valid_item=5, test_item=30)
    rec = run_cell(only_cell(suite, reg), reg)
    assert rec.status == "FINISHED", rec.error
    assert rec.params["tuned.center"] == 5.0
    assert math.isclose(rec.metrics["tune/best_value"], 1.0)  # item 5 first on validation
    assert rec.metrics["itemrec/ndcg_10"] == 0.0  # ...and item 30 is 26th at center 5: the test pays for it
    by_center = {t.params["model.center"]: t for t in rec.trials}
    assert by_center[30.0].metrics["tune/value"] < 0.5 < by_center[5.0].metrics["tune/value"]
    assert all(k.startswith(("valid/", "time/", "tune/")) for t in rec.trials for k in t.metrics)


def test_resume_repeats_no_finished_trial(reg, workdir):
    """Killed during trial 4 (its fit raises a BaseException, as kill -9 would leave it RUNNING): the rerun
    loads the study from the sidecar store, closes trial 4 as interrupted, runs the 4 trials the budget still
    lacks and refits once — no finished trial is fitted again."""
    suite = knob_suite({"trials": 8, "sampler": "random"})
    Knob.interrupt_at = 5
    with pytest.raises(Interrupted):
        api.run(suite, registry=reg)
    assert Knob.fits == 5
    assert (workdir / "mlruns.optuna.db").exists()
    Knob.fits, Knob.interrupt_at = 0, None
    frame = api.run(suite, registry=reg)
    assert list(frame.status) == ["FINISHED"]
    assert Knob.fits == 4 + 1  # 4 new trials and the refit
    row = frame.iloc[0]
    assert row["metrics.tune/trials"] == 8 and row["metrics.tune/resumed"] == 4

    import optuna

    study = optuna.load_study(study_name=row["config_hash"], storage=f"sqlite:///{workdir / 'mlruns.optuna.db'}")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * 4 + ["FAIL"] + ["COMPLETE"] * 4
    centers = [t.params["center"] for t in study.trials if t.state.name == "COMPLETE"]
    assert len(set(centers)) == 8  # the resumed sampler did not draw the first points again

    # every trial, the interrupted one too, is a run nested under the cell's
    tracker = make_tracker(reg, build_suite(suite, reg))
    cell = tracker.runs("knobs").iloc[0]
    client = tracker.client
    trials = client.search_runs([cell_experiment(tracker)], f"tags.`mlflow.parentRunId` = '{cell.run_id}'")
    assert len(trials) == 9
    interrupted = [t for t in trials if t.data.tags.get("matchbench.interrupted") == "true"]
    assert len(interrupted) == 1 and interrupted[0].info.status == "FAILED"
    assert api.run(suite, registry=reg).empty  # FINISHED: nothing left to do
    assert Knob.fits == 5
    api.run(suite, registry=reg, rerun=True)  # --rerun tunes again, from an empty study
    assert Knob.fits == 5 + 8 + 1
    again = optuna.load_study(study_name=row["config_hash"], storage=f"sqlite:///{workdir / 'mlruns.optuna.db'}")
    assert [t.state.name for t in again.trials] == ["COMPLETE"] * 8


def test_a_resumed_grid_study_evaluates_every_point_once(reg, tmp_path):
    """The grid sampler counts a failed point as visited: the interrupted point is queued again on resume, so the
    grid ends with every point evaluated exactly once."""
    from dataclasses import replace

    import optuna

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    cell = replace(only_cell(knob_suite({"params": {"center": {"int": [0, 5]}}, "sampler": "grid"}, valid_item=3,
                                        test_item=3), reg), study_storage=url)
    Knob.interrupt_at = 3
    with pytest.raises(Interrupted):
        run_cell(cell, reg)
    Knob.fits, Knob.interrupt_at = 0, None
    rec = run_cell(cell, reg)
    assert rec.status == "FINISHED" and rec.params["tuned.center"] == 3 and Knob.fits == 4 + 1
    trials = optuna.load_study(study_name=cell.config_hash, storage=url).trials
    assert sorted(t.params["center"] for t in trials if t.state.name == "COMPLETE") == [0, 1, 2, 3, 4, 5]
    assert [t.state.name for t in trials].count("FAIL") == 1


def cell_experiment(tracker) -> str:
    return tracker.client.get_experiment_by_name("knobs").experiment_id


def test_pruned_trials_are_recorded_as_pruned_not_failed(reg, workdir):
    suite = knob_suite({"trials": 10, "sampler": "random", "pruner": "median",
                        "params": {"center": {"float": [0.0, N_ITEMS - 1.0]}, "epochs": {"int": [3, 4]}}})
    api.run(suite, registry=reg)
    tracker = make_tracker(reg, build_suite(suite, reg))
    cell = tracker.runs("knobs").iloc[0]
    assert cell["status"] == "FINISHED"
    runs = tracker.client.search_runs([cell_experiment(tracker)], "tags.`matchbench.kind` = 'trial'")
    pruned = [r for r in runs if r.data.tags["matchbench.status"] == "PRUNED"]
    assert pruned and int(float(cell["metrics.tune/pruned"])) == len(pruned)
    assert all(r.info.status == "KILLED" and r.data.tags["optuna.state"] == "PRUNED" for r in pruned)
    assert not [r for r in runs if r.data.tags["matchbench.status"] == "FAILED"]
    # a pruned trial stopped early: its curve is shorter than its epochs
    r = pruned[0]
    assert len(tracker.curve(r.info.run_id, "valid/ndcg_40")) < int(r.data.params["model.epochs"])


def test_the_pruner_reads_the_early_stopping_curve_or_says_it_has_none(reg):
    """A metric without its own curve (recall_40) is pruned on the valid/ndcg_10 curve models log; a model that logs
    no validation curve cannot be pruned, and the cell says so."""
    block = {"trials": 10, "sampler": "random", "pruner": "median", "metric": "itemrec/recall_40"}
    suite = knob_suite(block)
    suite["models"][0]["curve"] = "valid/ndcg_10"
    rec = run_cell(only_cell(suite, reg), reg)
    assert rec.metrics["tune/pruned"] > 0 and "matchbench.tune_note" not in rec.tags
    suite["models"][0]["curve"] = ""
    rec = run_cell(only_cell(suite, reg), reg)
    assert rec.metrics["tune/pruned"] == 0 and "no per-epoch validation curve" in rec.tags["matchbench.tune_note"]


# ------------------------------------------------------------------------------------------------ validation
def test_bad_blocks_are_refused_in_one_error(reg):
    suite = knob_suite({"params": {"centre": {"float": [0, 1]}, "epochs": {"float": [1, 3]},
                                   "center": {"float": [-5.0, 80.0]}}, "metric": "itemrec/ndcg_50"})
    suite["split"] = {"name": "temporal", "horizon": 7}
    suite["datasets"] = [{"name": "synthetic", "n_users": 50, "n_items": 40}]
    with pytest.raises(ConfigError) as e:
        build_suite(suite, reg)
    msg = str(e.value)
    for part in ("has no parameter 'centre'; did you mean 'center'", "epochs is an int parameter",
                 "center=-5.0 is below its minimum 0.0", "center=80.0 is above its maximum 39.0",
                 "split 'temporal' has no validation set", "metric 'itemrec/ndcg_50' is not produced",
                 "did you mean 'itemrec/ndcg_40'"):
        assert part in msg, (part, msg)
    assert len(e.value.problems) == 6

    structural = knob_suite({"params": {"center": {"float": [3.0, 1.0]}, "nope": {"int": [1, 2]}},
                             "sampler": "bayes", "trials": 0})
    with pytest.raises(ConfigError) as e:
        build_suite(structural, reg)
    msg = str(e.value)
    for part in ("tune.params.center: the range [3.0, 1.0] is empty", "tune.sampler", "tune.trials",
                 "'knob' has no parameter 'nope'"):
        assert part in msg, (part, msg)

    also_set = knob_suite({})
    also_set["models"][0]["center"] = 3.0
    with pytest.raises(ConfigError, match="center is both set on the entry"):
        build_suite(also_set, reg)
    listed = knob_suite({"params": {"center": {"choice": [[1.0, 2.0]]}}})
    with pytest.raises(ConfigError, match="choice values must be numbers, text, booleans or null"):
        build_suite(listed, reg)
    ctr_metric = knob_suite({"metric": "ctr/auc"})
    with pytest.raises(ConfigError, match="not produced"):
        build_suite(ctr_metric, reg)


def test_the_tune_block_is_part_of_the_config_hash(reg):
    a = only_cell(knob_suite({"trials": 5}), reg)
    b = only_cell(knob_suite({"trials": 6}), reg)
    c = only_cell(knob_suite({"trials": 5}), reg)
    assert a.config_hash != b.config_hash and a.config_hash == c.config_hash
    plain = only_cell(tiny_suite(name="knobs", datasets=["tiny_log"], split={"name": "fixed_targets"},
                                 tasks=["itemrec"], metrics=["ndcg"], cutoffs=[10, 40], models=["knob"]), reg)
    assert plain.config_hash != a.config_hash and "tune" not in plain.config()["model"]
    assert a.labels["method"] == "knob (tuned)" and plain.labels["method"] == "knob"


# ------------------------------------------------------------------------------------------------ end to end
SUITE = """
name: tuned
datasets: [{name: synthetic, n_users: 120, n_items: 40, days: 30.0}]
split: {name: temporal, horizon: 7, valid: true, calibration: 7}
tasks: [itemrec]
models:
  - {name: item_pop}
  - name: bpr
    epochs: 2
    tune:
      params: {factors: {int: [4, 16], log: true}, lr: {float: [1.0e-3, 1.0e-1], log: true}}
      trials: 3
      metric: itemrec/ndcg_10
metrics: [ndcg, recall]
cutoffs: [10]
tracking: {tracker: mlflow, uri: "sqlite:///mlruns.db"}
report: {enabled: true, dir: reports}
"""


def test_a_tuned_suite_runs_from_the_cli_and_reports_its_choice(workdir, capsys):
    path = workdir / "tuned.yaml"
    path.write_text(textwrap.dedent(SUITE))
    assert main(["run", str(path)]) == 0
    capsys.readouterr()
    report = (workdir / "reports" / "tuned.md").read_text()
    assert "## Tuned methods" in report and "bpr (tuned)" in report and "factors=" in report
    assert (workdir / "reports" / "tuned" / "study_bpr_tuned_synthetic.png").exists()
    assert "Task: tune" not in report  # the study's numbers are not a results table
    assert main(["results", str(path), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "tuned" in out.splitlines()[0] and "factors=" in out and "lr=" in out
    assert main(["results", str(path)]) == 0
    assert "Tuned methods" in capsys.readouterr().out
    assert main(["results", str(path), "--format", "summary"]) == 0
    out = capsys.readouterr().out
    assert "bpr (tuned)" in out and "factors=" in out and "★" in out and "reports/tuned.md" in out
    assert (workdir / "mlruns.optuna.db").exists()


def test_a_tuned_suite_runs_from_the_api(reg, workdir):
    suite = knob_suite({"trials": 4, "sampler": "random"}, seeds=[0, 1], report={"enabled": True, "dir": "reports"})
    suite["models"].append({"name": "knob", "center": 3.0})
    frame = api.run(suite, registry=reg)
    tuned = frame[frame["params.tuned.center"].notna()]
    assert len(tuned) == 2 and (tuned["metrics.tune/trials"] == 4).all() and set(frame.status) == {"FINISHED"}
    table = api.results(suite, registry=reg)
    assert set(table.method) == {"knob (tuned)", "knob(center=3.0)"}
    chosen = table.loc[table["method"] == "knob (tuned)", "tuned"]
    assert len(chosen) and chosen.str.contains("center=").all()
    assert (table.loc[table["method"] != "knob (tuned)", "tuned"] == "").all()
    report = (workdir / "reports" / "knobs.md").read_text()
    for seed, value in zip(tuned["params.seed"], tuned["params.tuned.center"], strict=True):
        assert f"| knob (tuned) | tiny_log | {seed} | center={value:.4g} | 4 |" in report


def test_parallel_trials_of_one_study_run_on_several_workers_at_once(reg, workdir):
    """`parallel: 2` on two local workers: a helper runs trials of the cell's study beside it (trials of both
    workers overlap in time), the budget is kept (at most one extra trial), the helper is no run of its own, and
    every trial is a run nested under the one cell run. In this process (jobs=1) the block runs its trials alone."""
    import optuna

    suite = knob_suite({"trials": 6, "sampler": "random", "parallel": 2})
    suite["models"][0]["pause"] = 0.5
    frame = api.run(suite, registry=reg, jobs=2)
    assert list(frame.status) == ["FINISHED"] and len(frame) == 1
    row = frame.iloc[0]
    study = optuna.load_study(study_name=row["config_hash"], storage=f"sqlite:///{workdir / 'mlruns.optuna.db'}")
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert 6 <= len(trials) <= 7 and len(trials) == len(study.trials) == row["metrics.tune/trials"]
    by_worker = {w: [t for t in trials if t.user_attrs["worker"] == w] for w in (0, 1)}
    assert by_worker[0] and by_worker[1]
    assert any(a.datetime_start < b.datetime_complete and b.datetime_start < a.datetime_complete
               for a in by_worker[0] for b in by_worker[1])
    tracker = make_tracker(reg, build_suite(suite, reg))
    runs = tracker.runs("knobs")
    assert len(runs) == 1  # the helper recorded no run
    nested = tracker.client.search_runs([cell_experiment(tracker)],
                                        f"tags.`mlflow.parentRunId` = '{runs.iloc[0].run_id}'")
    assert sorted(r.data.tags["matchbench.study_worker"] for r in nested) == sorted(
        str(t.user_attrs["worker"]) for t in study.trials)

    alone = knob_suite({"trials": 3, "sampler": "random", "parallel": 2}, seeds=[1])
    frame = api.run(alone, registry=reg)
    study = optuna.load_study(study_name=frame.iloc[0]["config_hash"],
                              storage=f"sqlite:///{workdir / 'mlruns.optuna.db'}")
    assert [t.user_attrs["worker"] for t in study.trials] == [0, 0, 0]
    assert frame.iloc[0]["params.tune.parallel"] in (1, "1")


def test_a_validation_set_made_of_training_events_is_refused_before_anything_runs(workdir, capsys):
    """temporal's `valid: true` without calibration keeps the validation window in training: a study there
    rewards memorisation (on the quickstart world it chose 118 factors at validation NDCG@10 0.83 and tested
    below the untuned default), so a tuned cell on it is a data problem found before any training."""
    path = workdir / "leaky.yaml"
    path.write_text(textwrap.dedent(SUITE).replace(", calibration: 7", ""))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "validation targets are also training events" in err and "calibration >= horizon" in err
    assert "Traceback" not in err and not (workdir / "mlruns.optuna.db").exists()
    path.write_text(textwrap.dedent(SUITE).replace(", calibration: 7", "").replace("    tune:", "    tun:")
                    .split("    tun:")[0] + "metrics: [ndcg]\ncutoffs: [10]\n")
    assert main(["run", str(path), "--dry-run"]) == 0  # without a tune block the same split is fine


def test_a_bad_block_exits_2_from_the_cli(workdir, capsys):
    path = workdir / "bad.yaml"
    path.write_text(textwrap.dedent(SUITE).replace("valid: true", "valid: false").replace("lr:", "lrr:"))
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "no validation set" in err and "has no parameter 'lrr'" in err


def test_an_objective_of_several_metrics_is_their_mean(reg):
    """UniMatch tunes for the average of IR and UT: `metric: [a, b]` maximises the mean of the two validation
    values (each trial's value is exactly that mean); a metric the suite does not produce is named."""
    rec = run_cell(only_cell(knob_suite({"metric": ["itemrec/ndcg_40", "itemrec/recall_10"], "trials": 6,
                                         "sampler": "random"}), reg), reg)
    assert rec.status == "FINISHED", rec.error
    assert rec.params["tune.metric"] == "mean(itemrec/ndcg_40, itemrec/recall_10)"
    for t in rec.trials:
        both = (t.metrics["valid/itemrec/ndcg_40"] + t.metrics["valid/itemrec/recall_10"]) / 2
        assert math.isclose(t.metrics["tune/value"], both), t.metrics
    assert rec.metrics["tune/best_value"] == max(t.metrics["tune/value"] for t in rec.trials)
    with pytest.raises(ConfigError, match="metric 'itemrec/ndcg_50' is not produced"):
        build_suite(knob_suite({"metric": ["itemrec/ndcg_40", "itemrec/ndcg_50"]}), reg)
