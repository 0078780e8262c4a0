"""The bad-input contract (issue 13, items 3 and 4), in one place: every bad input of a suite, its YAML, the command
line, a data file or an interrupted run is refused with one message naming the culprit (file, line, key or store) and
the fix, exit code 2, no traceback, and nothing recorded is lost. One short test per bad input, in the issue's order:
first the suite, YAML and command line, then the data and run-time inputs."""
import gc
import os
import sys
import tempfile
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from conftest import raises_data_error, tiny_suite

from harness import api, hookimpl
from harness.cache import keep_last_loaded, load_dataset, raw_dir
from harness.cli import effective_jobs, main
from harness.errors import ConfigError, DataError
from harness.model import Model
from harness.preflight import preflight
from harness.registry import Registry
from harness.schema import Param
from harness.specs import DatasetSpec, ModelSpec
from harness.suite import build_suite, read_yaml
from harness.tracking import CellRecord
from plugins.datasets.files import load_csv

GOOD = """
name: t
datasets: [{name: synthetic, n_users: 50, n_items: 20}]
split: {name: temporal, horizon: 7}
models: [{name: item_pop}]
report: {enabled: false}
"""


def named(name: str) -> str:
    """GOOD with another suite name (a YAML scalar)."""
    return GOOD.replace("name: t\n", f"name: {name}\n")


def cli(capsys, *argv):
    """(exit code, stdout, stderr) of `matchbench *argv`."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def suite_file(workdir, text=GOOD, name="suite.yaml"):
    path = workdir / name
    path.write_text(textwrap.dedent(text))
    return path


def refused(capsys, *argv, needles=()):
    """Run the command, expect exit 2 with every needle in stderr and no traceback; return stderr."""
    code, _, err = cli(capsys, *argv)
    assert code == 2, err
    assert "Traceback" not in err and "matchbench: error:" in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in: {err}"
    return err


def dry_run(workdir, capsys, text, *extra, needles=()):
    return refused(capsys, "run", suite_file(workdir, text), "--dry-run", *extra, needles=needles)


# ---------------------------------------------------------------- 1. YAML read with limits, regular files only
def test_an_alias_bomb_is_refused_at_once_without_expanding(workdir, capsys):
    levels = ["  a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    text = "name: bomb\ndescription:\n" + "\n".join(levels) + "\n" + GOOD.replace("name: t\n", "")
    assert len(text.encode()) < 800  # 9**10 values once expanded
    dry_run(workdir, capsys, text, needles=["suite.yaml", "aliases", "line 7"])
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb"):
        read_yaml(workdir / "suite.yaml")
    assert time.perf_counter() - start < 1.0


def test_a_recursive_alias_is_refused(workdir, capsys):
    dry_run(workdir, capsys, "x: &a [1, *a]\n" + GOOD, needles=["recursive"])


def test_a_top_level_key_given_twice_is_refused_naming_key_and_lines(workdir, capsys):
    dry_run(workdir, capsys, GOOD + "models: [{name: user_pop}]\n",
            needles=["duplicate key 'models'", "line 7", "first given at line 5", "merge the two"])


def test_a_nested_key_given_twice_is_refused(workdir, capsys):
    text = GOOD.replace("n_items: 20}", "n_items: 20, n_users: 60}")
    dry_run(workdir, capsys, text, needles=["duplicate key 'n_users'", "line 3"])


def test_merge_keys_may_still_be_overridden(workdir, capsys):
    text = GOOD.replace("datasets: [{name: synthetic, n_users: 50, n_items: 20}]",
                        "base: &b {name: synthetic, n_users: 50, n_items: 20}\n"
                        "datasets: [{<<: *b, n_users: 60}]").replace("base:", "description: x\nbase:")
    code, _, err = cli(capsys, "run", suite_file(workdir, text), "--dry-run")
    assert code == 2 and "unknown key 'base'" in err  # the merge itself was accepted; only the extra key is not


def test_a_folder_as_suite_path_is_refused(workdir, capsys):
    (workdir / "suites.d").mkdir()
    refused(capsys, "run", workdir / "suites.d", "--dry-run", needles=["is a folder", "the .yaml file itself"])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_suite_path_is_refused_without_hanging(workdir, capsys):
    fifo = workdir / "s.yaml"
    os.mkfifo(fifo)
    refused(capsys, "run", fifo, "--dry-run", needles=["not a regular file"])


def test_a_non_utf8_suite_is_refused_with_its_line(workdir, capsys):
    path = workdir / "latin.yaml"
    path.write_bytes(GOOD.encode() + "description: caf\xe9\n".encode("latin-1"))
    refused(capsys, "run", path, "--dry-run", needles=["not UTF-8", "line 7", "save it as UTF-8"])


def test_results_on_a_folder_is_refused(workdir, capsys):
    (workdir / "runs").mkdir()
    refused(capsys, "results", workdir / "runs", needles=["is a folder"])


# ---------------------------------------------------------------- 2. booleans, numbers, seeds
def test_a_quoted_boolean_is_not_truthy(workdir, capsys):
    dry_run(workdir, capsys, GOOD + "exclude_seen: \"false\"\n",
            needles=["exclude_seen", "'false'", "write false without quotes"])


def test_jobs_as_text_is_refused(workdir, capsys):
    dry_run(workdir, capsys, GOOD + "jobs: two\n", needles=["jobs: input should be a valid integer, got 'two'"])


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_nan_and_inf_are_refused_even_inside_a_range(workdir, capsys, value):
    text = GOOD.replace("n_items: 20}", f"n_items: 20, branching: {value}, pop_sigma: {value}}}")
    dry_run(workdir, capsys, text, needles=["branching must be a finite number", "pop_sigma must be a finite number"])


def test_nan_is_refused_without_a_declared_range():
    assert "finite" in Param("x", "float", 1.0).check(float("nan"))[1]
    assert "finite" in Param("n", "int", 1).check(float("inf"))[1]
    assert Param("x", "float", 1.0).check(1e300) == (1e300, None)


@pytest.mark.parametrize("seeds, needle", [
    ("[-1]", "seeds[0]: input should be greater than or equal to 0, got -1; a seed is an integer in [0, 4294967295]"),
    ("[1.0e+20]", "seeds[0]: input should be a valid integer, got 1e+20"),
    ("[4294967296]", "a seed is an integer in [0, 4294967295]"),
    ("[1e20]", "YAML 1.1 reads 1e20 as text (an exponent needs a dot and a sign): write 1.0e+20"),
])
def test_seeds_outside_numpys_range_are_refused_at_validation(workdir, capsys, seeds, needle):
    dry_run(workdir, capsys, GOOD + f"seeds: {seeds}\n", needles=[needle])


@pytest.mark.parametrize("cut, fixed", [("1.0e12", "1.0e+12"), ("1e12", "1.0e+12")])
def test_a_yaml_11_exponent_that_is_text_is_explained(workdir, capsys, cut, fixed):
    text = GOOD.replace("horizon: 7}", f"horizon: 7, cut: {cut}}}")
    dry_run(workdir, capsys, text, needles=[f"cut must be float, got '{cut}' (str)", "YAML 1.1", f"write {fixed}"])


def test_the_yaml_11_exponent_form_is_read_as_a_number(workdir, capsys):
    text = GOOD.replace("horizon: 7}", "horizon: 7, cut: 5.0e+1}")
    code, _, err = cli(capsys, "run", suite_file(workdir, text), "--dry-run")
    assert code == 0, err


# ---------------------------------------------------------------- 3. --jobs and the suite's jobs
@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_jobs_below_one_are_refused(workdir, capsys, jobs):
    refused(capsys, "run", suite_file(workdir), "--dry-run", "--jobs", jobs,
            needles=[f"--jobs {jobs}: must be at least 1"])


@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_suite_jobs_below_one_are_refused(workdir, capsys, jobs):
    dry_run(workdir, capsys, GOOD + f"jobs: {jobs}\n",
            needles=[f"jobs: must be at least 1 (worker processes), got {jobs}"])


@pytest.mark.parametrize("where", ["cli", "suite"])
def test_jobs_over_the_cores_are_capped_with_a_note(workdir, capsys, monkeypatch, where):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    text = GOOD + ("jobs: 1000\n" if where == "suite" else "")
    flag = ["--jobs", "1000"] if where == "cli" else []
    code, _, err = cli(capsys, "run", suite_file(workdir, text), "--dry-run", *flag)
    assert code == 0 and "1000 is more than this machine's 4 cores; capped at 4" in err


def test_never_more_processes_than_cells(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    s = build_suite(dict(name="t", datasets=["synthetic"], split="temporal", models=["item_pop", "user_pop"]),
                    Registry.load())
    assert effective_jobs(16, s) == len(s.runnable) == 2
    assert effective_jobs(None, s) == 1


# ---------------------------------------------------------------- 4. identical entries run once
def test_identical_entries_run_once_with_one_warning(workdir, capsys):
    text = GOOD.replace("models: [{name: item_pop}]", "models: [{name: item_pop}, item_pop, {name: user_pop}]")
    text = text.replace("datasets: [{name: synthetic, n_users: 50, n_items: 20}]",
                        "datasets: [{name: synthetic, n_users: 50, n_items: 20},\n"
                        "           {name: synthetic, n_users: 50, n_items: 20, seed: 0}]")
    code, _, err = cli(capsys, "run", suite_file(workdir, text + "seeds: [0, 0]\n"), "--dry-run")
    assert code == 0
    assert err.count("warning") == 3
    assert "models[1] 'item_pop' is the same configuration as models[0] 'item_pop'; it is trained once" in err
    assert "datasets: 'synthetic' (n_users=50, n_items=20) is listed more than once" in err
    assert "seeds: 0 is listed more than once" in err
    assert "2 cells" in err and err.count("item_pop · synthetic") == 1


def test_identical_losses_and_planners_run_once():
    s = build_suite(dict(name="t", datasets=["synthetic"], split="temporal", tasks=["itemrec", "matching"],
                         models=[{"name": "bpr", "epochs": 1}], losses=["bpr", {"name": "bpr"}],
                         planners=[{"name": "greedy"}, "greedy"]), Registry.load())
    assert len(s.cells) == 1 and len(s.cells[0].settings.planners) == 1
    assert any(w.startswith("losses: 'bpr'") for w in s.warnings)
    assert any(w.startswith("planners: 'greedy'") for w in s.warnings)


# ---------------------------------------------------------------- 5. user text printed literally
def test_labels_with_markup_are_printed_as_written(workdir, capsys):
    text = GOOD.replace("models: [{name: item_pop}]",
                        'models: [{name: item_pop, label: "timestamp[s]"}, {name: user_pop, label: "created[/]"}]')
    code, _, err = cli(capsys, "run", suite_file(workdir, text), "--dry-run")
    assert code == 0 and "timestamp[s] · synthetic" in err and "created[/] · synthetic" in err


def test_a_suite_name_with_brackets_runs_and_is_printed_as_written(workdir, capsys):
    text = named('"mk[bold]x"').replace(
        "models: [{name: item_pop}]", 'models: [{name: item_pop, label: "created[/]"}]')
    code, _, err = cli(capsys, "run", suite_file(workdir, text))
    assert code == 0, err
    assert "done created[/] · synthetic" in err and "mk[bold]x: 1 finished" in err and "Traceback" not in err


def test_a_suite_name_with_a_closing_tag_and_a_slash_is_refused_not_a_markup_error(workdir, capsys):
    dry_run(workdir, capsys, named('"mk[/x]"'),
            needles=["name 'mk[/x]': contains '/'", "path separator"])


# ---------------------------------------------------------------- 6. suite names
def test_a_300_character_suite_name_is_refused_before_anything_is_tracked(workdir, capsys):
    refused(capsys, "run", suite_file(workdir, named("n" * 300)),
            needles=["name: 300 characters, over the limit of 100"])
    assert not (workdir / "mlruns.db").exists()


def test_a_control_character_in_a_suite_name_is_refused(workdir, capsys):
    dry_run(workdir, capsys, named('"a\\tb"'), needles=["control character"])


# ---------------------------------------------------------------- 7. report --out, results, datasets fetch -p
def test_report_out_a_file_is_refused(workdir, capsys):
    (workdir / "taken").write_text("x")
    refused(capsys, "report", suite_file(workdir), "--out", workdir / "taken",
            needles=["--out", "is a file, not a folder", "pass a folder you can write to"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_report_out_an_unwritable_path_is_refused(workdir, capsys):
    refused(capsys, "report", suite_file(workdir), "--out", "/proc/reports", needles=["cannot create a file in /proc"])


def test_fetch_with_a_bad_yaml_parameter_is_refused(workdir, capsys):
    (workdir / "ml").mkdir()
    refused(capsys, "datasets", "fetch", "movielens", "--from", workdir / "ml", "-p", "x=[4",
            needles=["-p 'x=[4'", "not valid YAML", "quote it"])


# ---------------------------------------------------------------- 8. tracking URIs that cannot work
@pytest.mark.parametrize("uri, needle", [
    ("sqlite:////proc/m.db", "cannot create a file in /proc"),
    ("sqlite:///{tmp}/file.txt/m.db", "file.txt is a file, not a folder"),
    ("not a uri", "has no scheme"),
    ("http://127.0.0.1:9", "no server answers at 127.0.0.1:9 within 3 s"),
])
def test_an_unusable_tracking_uri_is_refused_quickly(workdir, capsys, uri, needle):
    (workdir / "file.txt").write_text("x")
    uri = uri.format(tmp=workdir)
    start = time.perf_counter()
    refused(capsys, "run", suite_file(workdir), "--tracking-uri", uri, needles=[f"tracking URI {uri!r}", needle])
    assert time.perf_counter() - start < 5
    assert not (workdir / "mlruns.db").exists()


def test_an_unusable_tracking_uri_in_the_suite_is_refused_for_results(workdir, capsys):
    refused(capsys, "results", suite_file(workdir, GOOD + "tracking: {uri: 'not a uri'}\n"),
            needles=["tracking URI 'not a uri' has no scheme"])


# ================================================ data files and run time: bad data, interrupted runs, stores
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


def data_suite_file(path, datasets, name="bad", models=("item_pop",)):
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
    suite = data_suite_file(workdir / "s.yaml", "[{name: csv, path: log.csv}]")
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


@pytest.mark.parametrize("stamp", ["1.3e9", "1300000000.0", "13e8"])
def test_a_decimal_or_exponent_in_an_integer_field_names_its_line(workdir, stamp):
    """pandas' C parser reads 13e8 and 1300000000.0 into an int64 column as 1300000000: a timestamp field that is
    not a whole number is a malformed line (the strict readers' `read_table`; here the Amazon ratings CSV)."""
    good = [f"A{u},B{u % 3},5.0,13000{u:05d}" for u in range(6)]
    bad = f"A9,B1,4.0,{stamp}"
    (workdir / "ratings_Tiny.csv").write_text("\n".join(good[:3] + [bad] + good[3:]) + "\n")
    raises_data_error(lambda: load_dataset(Registry.load(), "amazon", {"path": "ratings_Tiny.csv", "verify": False},
                                           cache=False),
                      "ratings_Tiny.csv: line 4: expected", repr(bad), "timestamp must be a whole number")


def test_signs_spaces_and_decimal_ratings_still_load(workdir):
    rows = ["A1,B1,5.0,1300000000", "A2,B1,4.5,+1300000001", "A3,B2,3, 1300000002"]
    (workdir / "ratings_Tiny.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(Registry.load(), "amazon", {"path": "ratings_Tiny.csv", "verify": False}, cache=False)
    assert sorted(ds.interactions.time.tolist()) == [1300000000, 1300000001, 1300000002]


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
    assert main(["run", data_suite_file(workdir / "s.yaml", "[{name: movielens}]"), "--dry-run"]) == 2
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
        # scratch folders (mkdtemp); the tracker's per-store SQLite init lock file is meant to stay
        assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("matchbench-") and p.is_dir()) == [], jobs
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
    suite = data_suite_file(workdir / "s.yaml", "[{name: synthetic, n_users: 40, n_items: 15}]", name="good")
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
    from plugins.trackers.mlflow_tracker import MlflowTracker, TrackingStoreError

    def full_disk(self, run_id, record):
        raise OSError("No space left on device")

    suite = tiny_suite(models=[{"name": "item_pop"}, {"name": "user_pop"}])
    with monkeypatch.context() as m:  # the first cell's metrics are logged, its upload fails: run FAILED
        m.setattr(MlflowTracker, "_log_artifacts", full_disk)
        with pytest.raises(TrackingStoreError, match="No space left"):  # one error naming the artifact root
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
