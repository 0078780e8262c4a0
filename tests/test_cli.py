"""Bad input through the CLI: one clear message, exit code 2, no traceback."""
import subprocess
import sys
import textwrap

import pytest

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
