"""The bad-input contract of the suite, its YAML and the command line, one short test per bad input: each is
refused with one message naming the culprit and the fix, exit code 2, no traceback (issue 13, item 3).
The data and run-time bad inputs are in test_bad_inputs_data.py."""
import os
import sys
import textwrap
import time

import pytest

from harness.cli import effective_jobs, main
from harness.errors import ConfigError
from harness.registry import Registry
from harness.schema import Param
from harness.suite import build_suite, read_yaml

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
