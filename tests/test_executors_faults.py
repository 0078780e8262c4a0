"""Faults of the local executor: a worker that dies costs its own cell only (FAILED with the cause, the suite goes
on), `retries` retries a death but not an exception, and a driver killed with kill -9 resumes on the next
invocation without losing or duplicating a FINISHED cell (the runs it left RUNNING are marked KILLED).

The kill -9 test runs two drivers in subprocesses: `-m slow`; the marking of what a dead driver left RUNNING is also
checked in the default run, in process."""
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import tiny_suite
from fault_plugins import FaultPlugin

from harness import api
from harness.cli import main
from harness.executors import LocalExecutor, death_cause, executor_for
from harness.registry import Registry
from harness.runner import make_tracker
from harness.suite import build_suite

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def crashy(label, **params):
    return {"name": "crashy", "label": label, **params}


def _tags(tracker, suite):
    runs = tracker.runs(suite)
    return runs.set_index("run_name")


def test_death_causes_are_named():
    assert death_cause(-9) == ("worker process died (signal 9, SIGKILL: killed, e.g. by the kernel's out-of-memory "
                               "killer)")
    assert death_cause(-15) == "worker process died (signal 15, SIGTERM)"
    assert death_cause(3) == "worker process died (exit code 3)"


def test_a_dead_worker_fails_its_own_cell_only_retries_retry_it_and_an_exception_is_not_retried(workdir):
    """One pool, retries: 1. `killed` dies (SIGKILL, what the out-of-memory killer sends) on seed 1 at every attempt,
    `exits` (os._exit(3)) likewise, `once` dies on its first attempt of seed 0 only, `raises` raises once on seed 0
    (a retry would pass: it must not be retried)."""
    reg = Registry.load(extra=[FaultPlugin()])
    once, raised = workdir / "died-once", workdir / "raised-once"
    suite = tiny_suite(models=[crashy("killed", die_on=1), crashy("exits", die_on=1, how="exit"),
                               crashy("once", die_on=0, once=str(once)),
                               crashy("raises", die_on=0, how="raise", once=str(raised))],
                       seeds=[0, 1], tasks=["itemrec"], metrics=["recall"], cutoffs=[5], retries=1)
    frame = api.run(suite, registry=reg, jobs=2).set_index("run_name")
    assert len(frame) == 8
    killed, exits = "killed · synthetic · temporal · seed 1", "exits · synthetic · temporal · seed 1"
    raises = "raises · synthetic · temporal · seed 0"
    assert sorted(frame.index[frame.status == "FAILED"]) == sorted([exits, killed, raises])
    assert frame.loc[killed, "error"] == ("worker process died (signal 9, SIGKILL: killed, e.g. by the kernel's "
                                          "out-of-memory killer) while running this cell (attempt 2 of 2)")
    assert frame.loc[exits, "error"] == "worker process died (exit code 3) while running this cell (attempt 2 of 2)"
    assert "crashy raised on seed 0" in frame.loc[raises, "error"]  # its own traceback, recorded at once
    runs = _tags(make_tracker(reg, build_suite(suite, reg)), "tiny")
    assert len(runs) == 8 and "signal 9" in runs.loc[killed, "error"]
    assert runs.loc[killed, "tags.matchbench.attempts"] == "2"
    first = "once · synthetic · temporal · seed 0"
    assert frame.loc[first, "status"] == "FINISHED" and once.exists()
    assert runs.loc[first, "tags.matchbench.attempts"] == "2"
    assert "attempt 1: worker process died (signal 9" in runs.loc[first, "tags.matchbench.worker_deaths"]
    assert pd_missing(runs.loc[raises].get("tags.matchbench.attempts"))  # never died, never retried
    assert set(runs.drop([killed, exits, raises]).run_status) == {"FINISHED"}


def pd_missing(value) -> bool:
    return value is None or value != value  # None or NaN


def test_retries_and_executor_come_from_the_suite_or_the_command_line():
    reg = Registry.load()
    s = build_suite(tiny_suite(retries=2), reg)
    ex = executor_for(s, None, 1)
    assert isinstance(ex, LocalExecutor) and ex.retries == 2 and not ex.in_process  # a retry needs a worker
    assert executor_for(s, "local", 1, retries=0).in_process
    s = build_suite(tiny_suite(executor={"name": "local"}), reg)
    assert executor_for(s, None, 2).jobs == min(2, os.cpu_count() or 1)


@pytest.mark.parametrize("extra, message", [
    (["--retries", "-1"], "--retries -1: must be at least 0"),
    (["--address", "127.0.0.1:1"], "--address 127.0.0.1:1: only the ray executor connects to a cluster"),
])
def test_bad_executor_options_exit_2(workdir, capsys, extra, message):
    import yaml

    (workdir / "s.yaml").write_text(yaml.safe_dump(tiny_suite()))
    assert main(["run", "s.yaml", "--dry-run", *extra]) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_executor_key_names_the_valid_ones(workdir, capsys):
    import yaml

    (workdir / "s.yaml").write_text(yaml.safe_dump(tiny_suite(executor={"name": "ray", "adress": "x"})))
    assert main(["run", "s.yaml", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "executor: unknown key 'adress'; did you mean 'address'?" in err


def test_ray_missing_is_one_clear_error(workdir, capsys, monkeypatch):
    import yaml

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    (workdir / "s.yaml").write_text(yaml.safe_dump(tiny_suite()))
    assert main(["run", "s.yaml", "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'matchbench[ray]'" in err and "Traceback" not in err
    assert not (workdir / "mlruns.db").exists()


# ------------------------------------------------------------------------------------------------ driver kill -9
DRIVER = textwrap.dedent("""
    import sys
    sys.path[:0] = [{tests!r}, {root!r}]
    from conftest import tiny_suite
    from fault_plugins import FaultPlugin
    from harness import api
    from harness.registry import Registry

    if __name__ == "__main__":
        suite = tiny_suite(models=[{{"name": "crashy", "sleep": 1.0}}], seeds=list(range(6)), tasks=["itemrec"],
                           metrics=["recall"], cutoffs=[5])
        frame = api.run(suite, registry=Registry.load(extra=[FaultPlugin()]), jobs=2)
        print("RAN", len(frame), flush=True)
""")


def _cell_runs(db: Path) -> list[tuple[str, str, str]]:
    """(config hash, run status, status tag) of every cell run in the store, read with sqlite3 directly."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("""
            SELECT h.value, r.status, s.value FROM runs r
            JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'matchbench.kind' AND k.value = 'cell'
            JOIN tags h ON h.run_uuid = r.run_uuid AND h.key = 'matchbench.config_hash'
            JOIN tags s ON s.run_uuid = r.run_uuid AND s.key = 'matchbench.status'""").fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        con.close()
    return rows


@pytest.mark.slow
def test_kill_9_of_the_driver_then_the_same_command_resumes(workdir):
    script = workdir / "driver.py"
    script.write_text(DRIVER.format(tests=str(TESTS), root=str(ROOT)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen([sys.executable, str(script)], cwd=workdir, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    db = workdir / "mlruns.db"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and first.poll() is None:
            if sum(status == "FINISHED" for _, status, _ in _cell_runs(db)) >= 2:
                break
            time.sleep(0.2)
        assert first.poll() is None, first.communicate()[0]
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.communicate()
    before = {h for h, status, _ in _cell_runs(db) if status == "FINISHED"}
    assert 2 <= len(before) < 6

    second = subprocess.run([sys.executable, str(script)], cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"RAN {6 - len(before)}" in second.stdout  # the cells FINISHED before the kill were not run again

    rows = _cell_runs(db)
    finished = [h for h, status, tag in rows if status == "FINISHED" and tag == "FINISHED"]
    assert len(finished) == 6 and len(set(finished)) == 6  # every cell once: none lost, none duplicated
    assert before <= set(finished)
    assert not [r for r in rows if r[1] == "RUNNING"]
    con = sqlite3.connect(db)
    parents = con.execute("""SELECT r.status, d.value FROM runs r
        JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'matchbench.kind' AND k.value = 'parent'
        LEFT JOIN tags d ON d.run_uuid = r.run_uuid AND d.key = 'matchbench.killed_reason'
        ORDER BY r.start_time""").fetchall()
    con.close()
    assert [p[0] for p in parents] == ["KILLED", "FINISHED"]
    assert f"its driver ({socket.gethostname()}:{first.pid}:" in parents[0][1]


def test_runs_a_dead_driver_left_running_are_killed_and_a_live_drivers_are_not(workdir):
    reg = Registry.load()
    suite = tiny_suite(models=[{"name": "item_pop"}], tasks=["itemrec"], metrics=["recall"], cutoffs=[5])
    s = build_suite(suite, reg)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = make_tracker(reg, s)  # a driver that died while it recorded a cell: parent and cell left RUNNING
    dead.suite_started("tiny", {}, 1)
    client = dead.client
    client.set_tag(dead.parent_id, "matchbench.driver", f"{socket.gethostname()}:{gone.pid}:1")
    exp = client.get_experiment_by_name("tiny").experiment_id
    half = client.create_run(exp, run_name="half", tags={
        "matchbench.kind": "cell", "matchbench.suite": "tiny", "matchbench.config_hash": s.cells[0].config_hash,
        "matchbench.status": "FINISHED", "mlflow.parentRunId": dead.parent_id}).info.run_id
    live = make_tracker(reg, s)  # a driver at work (this process): its invocation is left alone
    live.suite_started("tiny", {}, 1)
    try:
        assert dead.finished_hashes("tiny") == set()  # a RUNNING cell run never counts as finished
        frame = api.run(suite, registry=reg)
        assert list(frame.status) == ["FINISHED"]  # the half-recorded cell ran again
        assert client.get_run(dead.parent_id).info.status == "KILLED"
        assert "no longer runs" in client.get_run(dead.parent_id).data.tags["matchbench.killed_reason"]
        run = client.get_run(half)
        assert run.info.status == "KILLED" and run.data.tags["matchbench.status"] == "KILLED"
        assert client.get_run(live.parent_id).info.status == "RUNNING"
        assert live.finished_hashes("tiny") == {s.cells[0].config_hash}
    finally:
        live.suite_finished()
