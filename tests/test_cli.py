"""Bad input through the CLI: one clear message, exit code 2, no traceback."""
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from processes import alive, descendants

from harness.cli import main


def run_cli(tmp_path, capsys, text, *extra):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(text))
    code = main(["run", str(path), "--dry-run", *extra])
    return code, capsys.readouterr().err


GOOD = """
name: t
datasets: [{name: synthetic, n_users: 50, n_items: 20}]
split: {name: temporal, horizon: 7}
models: [{name: item_pop}]
"""


def test_dry_run_lists_cells(tmp_path, capsys):
    code, err = run_cli(tmp_path, capsys, GOOD)
    assert code == 0 and "item_pop" in err and "1 cells" in err


@pytest.mark.parametrize("text, needle", [
    ("name: t\ndatasets: [{name: synthetic\n", "YAML syntax error at line"),
    (GOOD.replace("item_pop", "item_popp"), "did you mean 'item_pop'"),
    (GOOD.replace("n_items: 20", "n_itemz: 20"), "unknown parameter 'n_itemz'"),
    (GOOD.replace("horizon: 7", "horizon: -3"), "horizon=-3"),
    ("- just\n- a list\n", "must be a YAML mapping"),
])
def test_bad_suites_exit_2_with_one_message(tmp_path, capsys, text, needle):
    code, err = run_cli(tmp_path, capsys, text)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err


def test_missing_suite_file(capsys):
    assert main(["run", "no/such/suite.yaml"]) == 2
    assert "not found" in capsys.readouterr().err


def test_console_script_exits_2_without_traceback(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.replace("item_pop", "nosuchmodel"))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(path), "--dry-run"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown model 'nosuchmodel'" in proc.stderr and "Traceback" not in proc.stderr


def test_list_prints_parameters(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "bpr" in out and "factors" in out and "item_pop" in out


@pytest.mark.parametrize("arg, heading", [("loss", "losses"), ("losses", "losses"), ("dataset", "datasets"),
                                          ("Models", "models"), ("metric", "metrics")])
def test_list_takes_singular_or_plural_kinds(capsys, arg, heading):
    assert main(["list", arg]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == heading and "losss" not in lines


def test_list_unknown_kind_names_the_nearest(capsys):
    assert main(["list", "modle"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'model'?" in err and "valid: dataset, loss" in err and "Traceback" not in err


def test_list_filters_names_by_wildcard(capsys):
    assert main(["list", "models", "*rnn*"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()
             if line.startswith("  ") and not line.startswith("   ")]
    assert names and all("rnn" in n for n in names) and "rnn" in names
    assert main(["list", "models", "zz*"]) == 0
    assert "no models match 'zz*'" in capsys.readouterr().out


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the server's processes")
@pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None, reason="MLflow's server needs uvicorn, not installed")
def test_ui_stops_its_server_on_sigterm(tmp_path):
    """SIGTERM to `matchbench ui` must take MLflow's server and its workers down with it and free the port."""
    import signal
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "ui.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "ui", "--port", str(port),
                             "--tracking-uri", f"sqlite:///{tmp_path}/x.db"], cwd=tmp_path, stdout=log, stderr=log)
    server: set[tuple[int, str]] = set()
    try:
        deadline = time.monotonic() + 60
        while not _listening(port) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        server = descendants(proc.pid)
        log.seek(0)
        assert proc.poll() is None, f"`matchbench ui` ended before its server listened: {log.read()[-2000:]}"
        if not _listening(port):
            pytest.skip(f"MLflow's server did not listen on port {port} within 60 s here: {log.read()[-2000:]}")
        assert server, "`matchbench ui` should run the server as its child"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not _listening(port)
        assert alive(server) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in alive(server | descendants(proc.pid)):
            os.kill(pid, signal.SIGKILL)
        log.close()
