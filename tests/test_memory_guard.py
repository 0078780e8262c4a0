"""The memory guard (issue 14, item 4): an allocation planned beyond memory is refused at once with a message that
names what needed it and the parameter to change; the CLI exits 2 without a traceback."""
import os
import time

import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.memory import ENV, budget_bytes, fmt_bytes, require
from plugins.datasets.synthetic import make_world


def test_a_world_far_beyond_memory_fails_in_under_a_second_naming_the_parameters():
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        make_world(n_users=1_000_000_000, n_items=1_000_000)
    assert time.monotonic() - t0 < 1.0
    msg = str(e.value)
    # 8 B × (10⁹ + 10⁶) × 16 of parameters, plus the mark sampler's 64 MiB block
    assert "n_users, n_items = 1,000,000,000, 1,000,000" in msg and "119.4 GiB" in msg
    assert msg.endswith("lower n_users, n_items or dim")


def test_a_world_with_more_events_than_memory_is_refused_before_simulating(monkeypatch):
    monkeypatch.setenv(ENV, "0.5")
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"the synthetic world's events \(about [\d,]+ expected\) needs .*"
                                          r"lower n_users, days or mean_rate$"):
        make_world(n_users=100, n_items=20, mean_rate=1e5)
    assert time.monotonic() - t0 < 1.0


def test_the_cli_refuses_it_before_any_training_with_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("name: huge\ndatasets: [{name: synthetic, n_users: 1000000000, n_items: 1000}]\n"
                                     "split: {name: temporal, horizon: 7}\nmodels: [{name: item_pop}]\n")
    assert main(["run", "s.yaml", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "lower n_users, n_items or dim" in err and "Traceback" not in err


def test_the_budget_follows_the_environment_cap(monkeypatch):
    monkeypatch.setenv(ENV, "0.5")
    assert budget_bytes() == 2**29
    require(2**29, "x", "y")  # exactly the budget: allowed
    with pytest.raises(ConfigError, match=r"^a block needs 512\.0 MiB, more than this process may use \(512\.0 MiB, "
                                          r"set by MATCHBENCH_MEMORY_GIB\); lower block_size$"):
        require(2**29 + 1, "a block", "lower block_size")
    # a small world passes under the cap, a larger one is refused by the same rule
    make_world(n_users=50, n_items=20, days=5)
    monkeypatch.setenv(ENV, "0.001")
    with pytest.raises(ConfigError, match="n_users, n_items = 2,000, 500"):
        make_world(n_users=2000, n_items=500)


@pytest.mark.parametrize("value", ["lots", "0", "-1"])
def test_a_bad_cap_is_named(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(ConfigError, match=f"MATCHBENCH_MEMORY_GIB='{value}'"):
        budget_bytes()


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="Linux: MemAvailable")
def test_without_a_cap_the_budget_is_a_share_of_available_memory(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with open("/proc/meminfo") as fh:
        avail = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
    assert abs(budget_bytes() - 0.8 * avail) < 0.05 * avail  # memory moves a little between the two reads


def test_sizes_are_shown_in_binary_units():
    assert [fmt_bytes(n) for n in (512, 2048, 3 * 2**20, 1.5 * 2**30, 2**41)] == [
        "512 B", "2.0 KiB", "3.0 MiB", "1.5 GiB", "2.0 TiB"]
