"""Bad data and interrupted runs (issue 13, item 3: the data and run-time part): each gives one clear message
naming the file, line or store and the fix, exit 2 where the input is bad, and loses nothing that was recorded.
One short test per item, in the issue's order."""
import gc
import tempfile
import textwrap

import numpy as np
import pandas as pd
import pytest
from conftest import raises_data_error, tiny_suite

from harness import api, hookimpl
from harness.cache import keep_last_loaded, load_dataset, raw_dir
from harness.cli import main
from harness.errors import DataError
from harness.model import Model
from harness.preflight import preflight
from harness.registry import Registry
from harness.schema import Param
from harness.specs import DatasetSpec, ModelSpec
from harness.suite import build_suite
from harness.tracking import CellRecord
from plugins.datasets.files import load_csv


def event_log(path, n_users=12, n_items=8, days=30, seed=0, **change):
    """A small valid event log (user, item, time in unix seconds), one event per user and day."""
    rng = np.random.default_rng(seed)
    rows = [(u, int(rng.integers(n_items)), 1_400_000_000 + d * 86400 + u) for d in range(days)
            for u in range(n_users)]
    df = pd.DataFrame(rows, columns=["user", "item", "time"])
    for col, value in change.items():
        df[col] = df[col].astype(object)
        df.loc[len(df) // 2, col] = value
    df.to_csv(path, index=False)
    return path


def suite_file(path, datasets, name="bad", models=("item_pop",)):
    path.write_text(textwrap.dedent(f"""
        name: {name}
        datasets: {datasets}
        split: {{name: temporal, horizon: 7}}
        tasks: [itemrec, userrec]
        models: [{", ".join("{name: %s}" % m for m in models)}]
        metrics: [recall]
        cutoffs: [5]
        seeds: [0, 1]
        tracking: {{tracker: mlflow, uri: "sqlite:///mlruns.db"}}
        report: {{enabled: false}}
    """))
    return str(path)


def mlflow_runs(db):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


# 1 ------------------------------------------------------------------------------------------------- pre-flight
def test_preflight_finds_a_text_time_before_any_training_exit_2(workdir, capsys):
    event_log(workdir / "log.csv", time="yesterday")
    suite = suite_file(workdir / "s.yaml", "[{name: csv, path: log.csv}]")
    for extra in (["--dry-run"], []):  # --dry-run, and a real run: the same message, nothing run
        assert main(["run", suite, *extra]) == 2
        err = capsys.readouterr().err
        assert "log.csv: line 182: time 'yesterday' is not a number" in err and "time_format" in err
        assert "before any training" in err and "FAILED" not in err and "Traceback" not in err
    store = workdir / "mlruns.db"
    assert not store.exists() or not mlflow_runs(store)  # nothing recorded


def test_preflight_loads_each_dataset_once_for_all_cells(workdir):
    calls = []

    def counting_csv(path, truth=False):
        calls.append(path)
        ds = load_csv(path)
        ds.truth = object() if truth else None  # a dataset with a truth never goes to the disk cache
        return ds

    class Counting:
        @hookimpl
        def register_datasets(self, register):
            register(DatasetSpec(name="counting_csv", factory=counting_csv, description="csv, counted",
                                 params=(Param("path", "str", None, "the file"), Param("truth", "bool", False, ""))))

    reg = Registry.load(extra=[Counting()])
    event_log(workdir / "log.csv")
    for truth in (False, True):
        calls.clear()
        suite = build_suite(tiny_suite(datasets=[{"name": "counting_csv", "path": "log.csv", "truth": truth}],
                                       models=[{"name": "item_pop"}, {"name": "user_pop"}], seeds=[0, 1]), reg)
        with keep_last_loaded():  # as run_suite does when the cells run in this process
            assert preflight(suite.cells, reg) == 1
            for cell in suite.cells:  # the cells' load step: the disk cache, or the dataset kept in memory
                load_dataset(reg, cell.dataset.name, cell.dataset.params)
        assert len(calls) == 1, truth


# 2 ------------------------------------------------------------------------------------------- wrong field count
def test_a_row_with_an_extra_field_names_its_line(workdir):
    (workdir / "log.csv").write_text("user,item,time\n1,2,3\n\n1,3,4\n2,2,5\n2,3,6\n3,3,8,9\n4,2,9\n")
    msg = raises_data_error(lambda: load_dataset(Registry.load(), "csv", {"path": "log.csv"}, cache=False),
                            "log.csv: line 7: expected 3 fields", "got 4: '3,3,8,9'", "fix or delete the line")
    assert "\n" not in msg


# 3 --------------------------------------------------------------------------------------------- partial last line
def test_a_last_line_cut_mid_number_is_an_error_even_without_verification(workdir):
    folder = workdir / "ml"
    folder.mkdir()
    whole = "".join(f"{u}\t{10 + u}\t3\t8812509{u:02d}\n" for u in range(1, 30))
    (folder / "u.data").write_text(whole + "7\t208\t4\t8812")  # cut inside the last timestamp

    def load():
        return load_dataset(Registry.load(), "movielens", {"path": str(folder), "verify": False}, cache=False)

    raises_data_error(load, f"{folder / 'u.data'}: line 30: the file ends mid-line", "'7\\t208\\t4\\t8812'",
                      "get a fresh copy")
    (folder / "u.data").write_text(whole + "7\t208\t4\t881250907")  # complete, only the final newline missing
    assert len(load().interactions) == 30


# 4 -------------------------------------------------------------------------------------- a cached copy shadows
def test_a_bad_imported_copy_is_named_with_how_to_drop_it(workdir, monkeypatch, capsys):
    monkeypatch.delenv("MATCHBENCH_DATA", raising=False)
    src = workdir / "cut"
    src.mkdir()
    (src / "u.data").write_text("".join(f"{u}\t{u % 5}\t3\t88125{u:04d}\n" for u in range(1, 40)))
    assert main(["datasets", "fetch", "movielens", "--from", str(src), "--no-verify"]) == 0
    capsys.readouterr()
    assert main(["run", suite_file(workdir / "s.yaml", "[{name: movielens}]"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{raw_dir('movielens')}/u.data: sha256" in err and "does not match" in err
    assert f"rm -r {raw_dir('movielens')}" in err and "matchbench datasets fetch movielens --from" in err


# 5 ------------------------------------------------------------------------------------ temporary folders removed
def test_no_temporary_folder_is_left_after_a_suite(workdir, monkeypatch):
    tmp = workdir / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))  # the workers' temp dir
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # this process's
    suite = tiny_suite(models=[{"name": "item_pop"}, {"name": "user_pop"}])
    for jobs in (1, 2):  # in this process, and in two workers
        frame = api.run(suite, jobs=jobs, rerun=True)
        assert len(frame) == 2 and (frame.status == "FINISHED").all()
        gc.collect()
        assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("matchbench-")) == [], jobs
    reg = Registry.load()
    tracker = api.make_tracker(reg, build_suite(suite, reg))
    for run_id in tracker.runs("tiny").run_id:  # removed after the upload, not before
        assert tracker.artifact(run_id, "config.yaml") is not None


# 6 ------------------------------------------------------------------------------------------ no run left RUNNING
class Interrupted(Model):
    def fit(self, train, loss, ctx):
        raise KeyboardInterrupt


class InterruptedPlugin:
    @hookimpl
    def register_models(self, register):
        register(ModelSpec(name="interrupted", factory=Interrupted, description="Ctrl-C in fit"))


def test_an_interrupted_suite_leaves_no_run_running(workdir):
    reg = Registry.load(extra=[InterruptedPlugin()])
    suite = tiny_suite(models=[{"name": "item_pop"}, {"name": "interrupted"}])
    with pytest.raises(KeyboardInterrupt):
        api.run(suite, registry=reg)
    runs = mlflow_runs(workdir / "mlruns.db")
    status = {r.data.tags.get("matchbench.kind"): r.info.status for r in runs}
    assert status == {"parent": "KILLED", "cell": "FINISHED"} and len(runs) == 2  # item_pop recorded, closed


# 7 --------------------------------------------------------------------------------- report from an empty store
def test_report_from_a_store_without_the_suite_keeps_the_report(workdir, capsys):
    suite = suite_file(workdir / "s.yaml", "[{name: synthetic, n_users: 40, n_items: 15}]", name="good")
    report = workdir / "reports" / "good.md"
    report.parent.mkdir()
    report.write_text("a good report")
    assert main(["report", suite, "--tracking-uri", "sqlite:///mistyped.db"]) == 2
    err = capsys.readouterr().err
    assert "suite 'good' has no runs in the tracking store" in err and "mistyped.db" in err
    assert "left as it is" in err and report.read_text() == "a good report"
    assert not (workdir / "mistyped.db").exists()  # reading a store does not create it
    assert main(["report", suite]) == 2 and "run it first" in capsys.readouterr().err  # never ran


# 8 ---------------------------------------------------------------------------- the last FINISHED result counts
def test_a_newer_failed_record_does_not_hide_the_finished_one(workdir):
    from plugins.trackers.mlflow_tracker import MlflowTracker

    tracker = MlflowTracker("sqlite:///mlruns.db")
    tracker.suite_started("s", {}, 1)
    for t, status, recall in ((100.0, "FINISHED", 0.5), (200.0, "FAILED", None)):
        tracker.cell_finished(CellRecord(suite="s", config_hash="h", run_name="c", status=status,
                                         params={"seed": 0, "model": "m"}, error="boom" if recall is None else None,
                                         metrics={} if recall is None else {"itemrec/recall_10": recall},
                                         start_time=t, end_time=t + 1))
    tracker.suite_finished()
    runs = tracker.runs("s")
    assert list(runs.status) == ["FINISHED"] and runs["metrics.itemrec/recall_10"].tolist() == [0.5]
    assert tracker.finished_hashes("s") == {"h"}


def test_a_cell_whose_run_failed_is_run_again_on_resume(workdir, monkeypatch):
    from plugins.trackers.mlflow_tracker import MlflowTracker

    def full_disk(self, run_id, record):
        raise OSError("No space left on device")

    suite = tiny_suite(models=[{"name": "item_pop"}, {"name": "user_pop"}])
    with monkeypatch.context() as m:  # the first cell's metrics are logged, its upload fails: run FAILED
        m.setattr(MlflowTracker, "_log_artifacts", full_disk)
        with pytest.raises(OSError, match="No space left"):
            api.run(suite)
    runs = mlflow_runs(workdir / "mlruns.db")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED"]  # the parent, and that cell
    again = api.run(suite)  # resumed: that cell is not FINISHED, it runs again with the one never run
    assert len(again) == 2 and (again.status == "FINISHED").all()


# 9 ------------------------------------------------------------------------ nothing to rank, an absurd time
def test_one_item_absurd_times_and_nothing_to_rank_are_data_errors(workdir):
    reg = Registry.load()
    event_log(workdir / "one.csv", n_items=1)
    with pytest.raises(DataError, match="the data has 1 item: there is nothing to rank"):
        api.run(tiny_suite(datasets=[{"name": "csv", "path": "one.csv"}]), registry=reg)
    event_log(workdir / "far.csv", time=1e30)
    raises_data_error(lambda: load_dataset(reg, "csv", {"path": "far.csv"}, cache=False),
                      "far.csv: line 182: time 1e+30", "days from time 0")
    # two items, every user has both before the cut: the test window holds repeats only
    rows = [(u, i, 1_400_000_000 + d * 86400) for d in range(30) for u in range(6) for i in (0, 1)]
    pd.DataFrame(rows, columns=["user", "item", "time"]).to_csv(workdir / "repeats.csv", index=False)
    with pytest.raises(DataError, match="no rankable queries.*exclude_seen"):
        api.run(tiny_suite(datasets=[{"name": "csv", "path": "repeats.csv"}]), registry=reg)
