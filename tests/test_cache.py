"""The dataset disk cache: keyed by resolved params (+ source file stamps), hit without calling the factory."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import hookimpl
from harness.cache import cache_root, dataset_key, load_dataset, param_hash
from harness.data import from_events
from harness.errors import ConfigError
from harness.registry import Registry
from harness.schema import Param
from harness.specs import DatasetSpec

FIXTURE_1M = Path(__file__).resolve().parents[1] / "datasets" / "fixtures" / "ml-1m-tiny"


class Counting:
    """A test plugin: a tiny dataset whose factory counts its calls."""

    def __init__(self):
        self.calls = 0

    def make(self, n: int = 3, truth: bool = False):
        self.calls += 1
        df = pd.DataFrame({"user": [10, 11, 10][:n], "item": ["b", "a", "c"][:n], "time": [1.0, 2.0, 3.0][:n]})
        ds = from_events("counting", df, "s", meta={"source": "test"})
        ds.truth = object() if truth else None
        return ds

    @hookimpl
    def register_datasets(self, register):
        params = (Param("n", "int", 3, "rows", low=1, high=3), Param("truth", "bool", False, "carry a truth"))
        register(DatasetSpec(name="counting", factory=self.make, description="counts calls", params=params))
        register(DatasetSpec(name="uncached", factory=self.make, description="never cached", params=params,
                             cache=False))


@pytest.fixture
def plugin():
    p = Counting()
    return p, Registry.load(extra=[p])


def same(a, b):
    x, y = a.interactions, b.interactions
    return (np.array_equal(x.user, y.user) and np.array_equal(x.item, y.item) and np.array_equal(x.time, y.time)
            and list(a.user_ids) == list(b.user_ids) and list(a.item_ids) == list(b.item_ids)
            and a.fingerprint == b.fingerprint)


def test_cache_root_and_param_hash(workdir, monkeypatch):
    assert cache_root() == workdir / "cache"
    monkeypatch.delenv("MATCHBENCH_CACHE")
    assert cache_root() == workdir / ".matchbench_cache"
    assert param_hash({"a": 1, "b": [1, 2]}) == param_hash({"b": [1, 2], "a": 1})
    assert param_hash({"a": 1}) != param_hash({"a": 2}) and len(param_hash({})) == 16


def test_cache_hit_skips_factory(workdir, plugin):
    p, reg = plugin
    first = load_dataset(reg, "counting", {})
    second = load_dataset(reg, "counting", {"n": 3})  # the same resolved params
    assert p.calls == 1 and same(first, second)
    assert list(second.user_ids) == [10, 11] and list(second.item_ids) == ["a", "b", "c"]
    assert second.meta["fingerprint"] == first.fingerprint and second.meta["checksum"]
    entries = os.listdir(cache_root() / "datasets")
    assert entries == [dataset_key("counting", reg.get("dataset", "counting"), {"n": 3, "truth": False})]
    load_dataset(reg, "counting", {"n": 2})
    assert p.calls == 2
    load_dataset(reg, "counting", {}, cache=False)
    assert p.calls == 3


def test_uncached_spec_and_truth_are_never_cached(workdir, plugin):
    p, reg = plugin
    load_dataset(reg, "uncached", {})
    load_dataset(reg, "uncached", {})
    load_dataset(reg, "counting", {"truth": True})
    ds = load_dataset(reg, "counting", {"truth": True})
    assert p.calls == 4 and ds.truth is not None
    assert not (cache_root() / "datasets").exists()


def test_bad_params_raise_config_error(workdir, plugin):
    _, reg = plugin
    with pytest.raises(ConfigError) as e:
        load_dataset(reg, "counting", {"n": 9, "nn": 1})
    assert len(e.value.problems) == 2 and "did you mean 'n'" in str(e.value)


def test_editing_the_file_invalidates(workdir):
    reg = Registry.load()
    path = workdir / "log.csv"
    path.write_text("user,item,time\n1,1,1\n2,1,2\n")
    a = load_dataset(reg, "csv", {"path": str(path)})
    assert len(a.interactions) == 2 and a.meta["checksum"]
    assert load_dataset(reg, "csv", {"path": str(path)}).fingerprint == a.fingerprint  # hit
    path.write_text("user,item,time\n1,1,1\n2,1,2\n3,2,3\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    b = load_dataset(reg, "csv", {"path": str(path)})
    assert len(b.interactions) == 3 and b.meta["checksum"] != a.meta["checksum"]
    assert len(os.listdir(cache_root() / "datasets")) == 2


def test_movielens_fixture_through_cache(workdir):
    reg = Registry.load()
    a = load_dataset(reg, "movielens", {"path": str(FIXTURE_1M)})
    b = load_dataset(reg, "movielens", {"path": str(FIXTURE_1M)})
    assert same(a, b) and b.item_features is not None and b.meta["variant"] == "1m"
    assert list(b.item_ids)[:2] == [647, 648]
