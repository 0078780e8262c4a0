"""Checks every dataset plugin passes, on the files its parameters name (`check_plugin('dataset', name,
path=...)`): a Dataset with integer ids in range, raw-id maps of the right length, numeric times.

Internal: plugin authors run these checks through `harness.testing`; this module may change between versions.
"""
from __future__ import annotations

import numpy as np

from ..data import TIME_UNITS, Dataset, Interactions
from .base import PluginCase, check, require


def loaded(case: PluginCase) -> Dataset:
    return case.cached("dataset", case.create)


@check("dataset")
def check_dataset_loads(case: PluginCase) -> None:
    """The factory returns a harness.plugin.Dataset holding Interactions with at least one event."""
    ds = loaded(case)
    require(isinstance(ds, Dataset), f"the factory returned {type(ds).__name__}, not harness.plugin.Dataset")
    require(isinstance(ds.interactions, Interactions), f"interactions is {type(ds.interactions).__name__}")
    require(len(ds.interactions) > 0, "the dataset has no events")


@check("dataset")
def check_dataset_ids_in_range(case: PluginCase) -> None:
    """User and item ids are integer indices in [0, n_users) and [0, n_items) (dense ids, raw ids in the maps)."""
    x = loaded(case).interactions
    for what, ids, n in (("user", x.user, x.n_users), ("item", x.item, x.n_items)):
        ids = np.asarray(ids)
        require(np.issubdtype(ids.dtype, np.integer), f"{what} ids have dtype {ids.dtype}; map raw ids to dense "
                                                      "integer indices (harness.plugin.encode_ids)")
        require(ids.min() >= 0 and ids.max() < n, f"{what} ids span [{ids.min()}, {ids.max()}], outside [0, {n})")


@check("dataset")
def check_dataset_id_maps_match(case: PluginCase) -> None:
    """`user_ids` / `item_ids` hold one raw id per dense index."""
    ds = loaded(case)
    for what, ids, n in (("user_ids", ds.user_ids, ds.n_users), ("item_ids", ds.item_ids, ds.n_items)):
        require(len(ids) == n, f"{what} has {len(ids)} entries for {n} dense indices")


@check("dataset")
def check_dataset_times_numeric(case: PluginCase) -> None:
    """Times are finite numbers in a known time unit."""
    x = loaded(case).interactions
    t = np.asarray(x.time)
    require(np.issubdtype(t.dtype, np.number), f"times have dtype {t.dtype}; convert them to numbers in time_unit")
    require(np.isfinite(t).all(), f"{int((~np.isfinite(t)).sum())} times are not finite")
    require(x.time_unit in TIME_UNITS, f"unknown time unit {x.time_unit!r} (valid: {', '.join(TIME_UNITS)})")
