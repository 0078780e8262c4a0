"""The ray executor on a local Ray instance that each test starts and stops (127.0.0.1 only, time-bounded): the
same records as local, the driver the only MLflow writer, a dead worker FAILED with the suite going on, retries.

One short test runs by default when ray is installed; the fault tests are `-m slow` (each starts its own Ray)."""
import os
import signal
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_suite
from fault_plugins import FaultPlugin

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read on import: a local instance on 127.0.0.1
ray = pytest.importorskip("ray")

from harness import api  # noqa: E402
from harness.registry import Registry  # noqa: E402
from harness.runner import make_tracker  # noqa: E402
from harness.suite import build_suite  # noqa: E402

LIMIT_S = 300


@contextmanager
def time_limit(seconds: int = LIMIT_S):
    """Fail (instead of hanging) when Ray does not finish in time; the executor then shuts its instance down."""
    def expired(_signum, _frame):
        raise TimeoutError(f"the Ray run took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        assert not ray.is_initialized()  # the executor stopped the instance it started


def small(**over):
    return tiny_suite(tasks=["itemrec"], metrics=["recall", "ndcg"], cutoffs=[5], **over)


def test_ray_runs_a_suite_with_the_same_records_as_local(workdir):
    suite = small(models=[{"name": "item_pop"}, {"name": "user_pop"}], seeds=[0, 1])
    reg = Registry.load()
    with time_limit():
        on_ray = api.run(suite, registry=reg, executor="ray", jobs=2).set_index("run_name").sort_index()
    local = api.run(dict(suite, tracking={"uri": "sqlite:///local.db"}), registry=reg).set_index("run_name")
    local = local.sort_index()
    assert len(on_ray) == 4 and (on_ray.status == "FINISHED").all()
    cols = [c for c in local.columns if c.startswith("metrics.") and not c.startswith("metrics.time/")]
    assert cols and np.allclose(on_ray[cols].to_numpy(float), local[cols].to_numpy(float), rtol=1e-6, atol=1e-9,
                             equal_nan=True)
    tracker = make_tracker(reg, build_suite(suite, reg))  # recorded by the driver, artifacts included
    runs = tracker.runs("tiny")
    assert len(runs) == 4 and (runs.run_status == "FINISHED").all()
    rankings = tracker.artifact(runs.run_id.iloc[0], "rankings.parquet")
    assert rankings is not None and len(pd.read_parquet(rankings)) > 0


@pytest.mark.slow
def test_ray_trains_bpr_with_the_same_metrics_as_local(workdir):
    suite = small(models=[{"name": "bpr", "factors": 8, "epochs": 2}], seeds=[0, 1])
    reg = Registry.load()
    with time_limit():
        on_ray = api.run(suite, registry=reg, executor="ray", jobs=2).set_index("run_name").sort_index()
    local = api.run(dict(suite, tracking={"uri": "sqlite:///local.db"}), registry=reg, jobs=2)
    local = local.set_index("run_name").sort_index()
    cols = [c for c in local.columns if c.startswith("metrics.itemrec/")]
    assert np.allclose(on_ray[cols].to_numpy(float), local[cols].to_numpy(float), rtol=1e-6, equal_nan=True)


@pytest.mark.slow
def test_ray_a_dead_worker_fails_its_cell_retries_retry_and_the_suite_goes_on(workdir):
    reg = Registry.load(extra=[FaultPlugin()])
    once = workdir / "died-once"
    suite = small(models=[{"name": "crashy", "label": "killed", "die_on": 1},
                          {"name": "crashy", "label": "once", "die_on": 0, "once": str(once)}],
                  seeds=[0, 1], retries=1)
    with time_limit():
        frame = api.run(suite, registry=reg, executor="ray", jobs=2).set_index("run_name")
    assert len(frame) == 4
    dead = frame.loc["killed · synthetic · temporal · seed 1"]
    assert dead.status == "FAILED" and "worker process died (Ray WorkerCrashedError" in dead.error
    assert "(attempt 2 of 2)" in dead.error
    assert (frame.drop(dead.name).status == "FINISHED").all() and once.exists()
    runs = make_tracker(reg, build_suite(suite, reg)).runs("tiny").set_index("run_name")
    assert runs.loc["once · synthetic · temporal · seed 0", "tags.matchbench.attempts"] == "2"


@pytest.mark.slow
def test_ray_without_retries_records_the_death_and_ships_artifacts_from_other_nodes(workdir):
    from harness.ray_executor import RayExecutor
    from harness.runner import run_suite

    reg = Registry.load(extra=[FaultPlugin()])
    suite = build_suite(small(models=[{"name": "crashy", "die_on": 0, "how": "exit"}, {"name": "item_pop"}]), reg)
    tracker = make_tracker(reg, suite)
    with time_limit():  # ship_artifacts: what a cell on another node does, here on one machine
        records = run_suite(suite, reg, RayExecutor(2, ship_artifacts=True), tracker)
    by_model = {r.params["model"]: r for r in records}
    assert by_model["crashy"].status == "FAILED" and "worker process died" in by_model["crashy"].error
    assert by_model["item_pop"].status == "FINISHED"
    runs = tracker.runs("tiny").set_index("params.model")
    assert tracker.artifact(runs.loc["item_pop", "run_id"], "rankings.parquet") is not None


def test_a_cell_asks_for_a_gpu_only_when_its_model_wants_one_and_the_cluster_has_one():
    from harness import hookimpl
    from harness.errors import ConfigError
    from harness.ray_executor import RayExecutor
    from harness.specs import ModelSpec
    from plugins.models.popularity import ItemPop

    class GpuPlugin:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec(name="gpu_pop", factory=ItemPop, score_kind="intensity", gpu=True,
                               description="item_pop that says it trains on a GPU"))

    reg = Registry.load(extra=[GpuPlugin()])
    cells = {c.model.name: c for c in build_suite(small(models=["gpu_pop", "item_pop"]), reg).cells}
    ex = RayExecutor(2)
    assert ex._gpus(ray, cells["gpu_pop"], reg, has_gpu=True) == 1
    assert ex._gpus(ray, cells["gpu_pop"], reg, has_gpu=False) == 0  # runs on CPUs instead of waiting forever
    assert ex._gpus(ray, cells["item_pop"], reg, has_gpu=True) == 0
    assert RayExecutor(2, resources={"num_gpus": 0.5})._gpus(ray, cells["item_pop"], reg, has_gpu=True) == 0.5
    with pytest.raises(ConfigError, match="the Ray cluster has no GPU"):
        RayExecutor(2, resources={"num_gpus": 1})._gpus(ray, cells["item_pop"], reg, has_gpu=False)
    with pytest.raises(ConfigError, match="unknown key"):
        RayExecutor(2, resources={"gpus": 1})


@pytest.mark.slow
def test_ray_runs_on_a_cluster_given_its_address(workdir, monkeypatch):
    """A throwaway one-node cluster (`ray start --head` on 127.0.0.1, token auth off), stopped with its process
    group afterwards; an unreachable address and a request larger than any node are one error each."""
    import shutil
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    from harness.errors import ConfigError

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    tmp = Path(tempfile.mkdtemp(prefix="mbray", dir="/tmp"))  # short: Ray's Unix socket paths live under it
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--port=0", "--num-cpus=2",
                             "--include-dashboard=false", "--node-ip-address=127.0.0.1", f"--temp-dir={tmp}",
                             "--disable-usage-stats", "--block"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        found = tmp / "ray_current_cluster"
        deadline = time.monotonic() + 120
        while not (found.exists() and found.read_text().strip()) and time.monotonic() < deadline:
            assert head.poll() is None, "ray start --head exited"
            time.sleep(0.5)
        address = found.read_text().strip()
        reg = Registry.load()
        suite = small(models=["item_pop"], seeds=[0, 1])
        with time_limit():
            frame = api.run(suite, registry=reg, executor="ray", address=address, jobs=2)
        assert len(frame) == 2 and (frame.status == "FINISHED").all()
        with time_limit(), pytest.raises(ConfigError, match="the largest node of the Ray cluster has 2 CPUs"):
            api.run(dict(suite, executor={"name": "ray", "resources": {"num_cpus": 4}}), registry=reg,
                    address=address, rerun=True)
        with pytest.raises(ConfigError, match="no Ray cluster answers at 127.0.0.1:1 within"):
            api.run(suite, registry=reg, executor="ray", address="127.0.0.1:1", rerun=True)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # what --block left behind
        except ProcessLookupError:
            pass
        head.wait()
        shutil.rmtree(tmp, ignore_errors=True)
