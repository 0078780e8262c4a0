"""The common dataset filters (harness.data.filter_events), each on a hand-computed case, and through a plugin."""
import numpy as np
import pandas as pd
import pytest
from test_datasets_plugins import FIX

from harness.cache import dataset_key, load_dataset
from harness.data import filter_events
from harness.errors import DataError
from harness.registry import Registry
from plugins.datasets import tmall


def frame(rows, event=None):
    df = pd.DataFrame(rows, columns=["user", "item", "time"])
    if event is not None:
        df["event"] = event
    return df


def pairs(df):
    return sorted(zip(df["user"], df["item"], strict=False))


# u4 -> i3 once: round 1 drops u4, which leaves i3 with one event; round 2 drops i3, leaving u3 with one
# event; round 3 drops u3. The 2-core is u1, u2 x i1, i2. One pass of min counts would keep u3's events.
CASCADE = frame([("u1", "i1", 1), ("u1", "i2", 2), ("u2", "i1", 3), ("u2", "i2", 4), ("u3", "i2", 5),
                 ("u3", "i3", 6), ("u4", "i3", 7)])


def test_k_core_iterates_to_the_core():
    df, lines, removed = filter_events(CASCADE, np.arange(2, 9), k_core=2)
    assert pairs(df) == [("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2")]
    assert lines.tolist() == [2, 3, 4, 5] and removed["k_core"] == 3 and removed["k_core_rounds"] == 4


def test_min_counts_are_one_pass():
    df, _, removed = filter_events(CASCADE, min_user_interactions=2, min_item_interactions=2)
    assert pairs(df) == [("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2"), ("u3", "i2"), ("u3", "i3")]
    assert removed == {"min_user_interactions": 1, "min_item_interactions": 0}
    df, _, _ = filter_events(CASCADE, min_item_interactions=3)  # only i2 has 3 events
    assert pairs(df) == [("u1", "i2"), ("u2", "i2"), ("u3", "i2")]


def test_k_core_leaving_nothing_is_an_error():
    with pytest.raises(DataError, match="leave no events after k_core.*loosen k_core"):
        filter_events(CASCADE, k_core=3)


def test_max_history_keeps_each_users_last_events():
    df = frame([("a", "x", 5), ("a", "y", 1), ("b", "x", 9), ("a", "z", 3), ("a", "w", 2), ("b", "y", 9)])
    out, lines, _ = filter_events(df, np.arange(1, 7), max_history=2)
    assert lines.tolist() == [1, 3, 4, 6]  # a: times 5 and 3; b: both (ties keep file order)
    out, _, _ = filter_events(df, max_history=1)
    assert pairs(out) == [("a", "x"), ("b", "y")]  # b's two events at time 9: the later line wins


def test_date_range_and_event_types():
    day = 86400.0
    df = frame([("a", "x", 0.5 * day), ("a", "y", 1.0 * day), ("b", "x", 1.5 * day), ("b", "y", 2.0 * day)],
               event=["click", "buy", "click", "buy"])
    out, _, _ = filter_events(df, start="1970-01-02", end="1970-01-03")  # [start, end)
    assert out["time"].tolist() == [1.0 * day, 1.5 * day]
    out, _, _ = filter_events(df, start=1.5 * day)  # a number is in the time unit
    assert out["time"].tolist() == [1.5 * day, 2.0 * day]
    days = df.assign(time=df["time"] / day)
    out, _, _ = filter_events(days, start="1970-01-02", time_unit="day")  # an ISO date in days since 1970
    assert out["time"].tolist() == [1.0, 1.5, 2.0]
    out, _, removed = filter_events(df, event_types=["buy"])
    assert out["event"].tolist() == ["buy", "buy"] and removed == {"event_types": 2}
    with pytest.raises(DataError, match=r"\['purchase'\] not among this dataset's event types \['buy', 'click'\]"):
        filter_events(df, event_types=["purchase"])
    with pytest.raises(DataError, match="has no event types"):
        filter_events(df.drop(columns="event"), event_types=["buy"])
    with pytest.raises(DataError, match="start='yesterday' is neither a number"):
        filter_events(df, start="yesterday")
    with pytest.raises(DataError, match="has no times"):
        filter_events(df, start=0, has_time=False)


def test_filters_apply_event_types_before_k_core():
    df = frame([("a", "x", 1), ("a", "y", 2), ("b", "x", 3), ("b", "y", 4), ("c", "x", 5), ("c", "y", 6),
                ("c", "z", 7)], event=["buy"] * 4 + ["click"] * 3)
    assert len(filter_events(df, k_core=2)[0]) == 6  # only c-z (item z has one event) goes
    out, _, removed = filter_events(df, event_types=["buy"], k_core=2)
    assert pairs(out) == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]
    assert removed["event_types"] == 3 and removed["k_core"] == 0


def test_filters_through_a_plugin_and_in_the_cache_key(workdir):
    reg = Registry.load(extra=[tmall], entry_points=False)
    path = str(FIX / "tmall-tiny")
    full = load_dataset(reg, "tmall", {"path": path})
    buys = load_dataset(reg, "tmall", {"path": path, "event_types": ["buy"]})
    assert len(full.interactions) == 8 and len(buys.interactions) == 2
    assert (buys.n_users, buys.n_items) == (2, 2)  # re-indexed densely after filtering
    assert list(buys.user_ids) == [141, 925] and list(buys.item_ids) == [1, 2]
    assert buys.meta["filters"] == {"event_types": ["buy"]} and buys.meta["filtered_out"] == {"event_types": 6}
    spec = reg.get("dataset", "tmall")
    keys = {dataset_key("tmall", spec, spec.schema.validate(p, "t")[0])
            for p in ({"path": path}, {"path": path, "k_core": 2}, {"path": path, "k_core": 3},
                      {"path": path, "max_history": 2}, {"path": path, "start": "2015-08-01"})}
    assert len(keys) == 5
    cored = load_dataset(reg, "tmall", {"path": path, "k_core": 2})
    # users 141 (3 events), 925 (3), 3031 (2); items 1 (3), 2 (2), 3 (2), 4 (1): drop item 4 -> 3031 has 1 -> drop
    assert sorted(cored.user_ids) == [141, 925] and sorted(cored.item_ids) == [1, 2]
