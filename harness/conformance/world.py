"""The tiny synthetic world the model and split checks run on, and the reference a model must beat.

The world is the `synthetic` dataset, small (150 users, 50 items, 30 days) with strong item popularity
(pop_sigma 2: ranking by training counts alone scores about twice a constant scorer's recall@10), then made to
hold one *cold* user and one *cold* item: every event of the last user and of the last item is dropped, so
neither is ever seen in training and the checks can ask a model for their scores.

Internal: plugin authors run these checks through `harness.testing`; this module may change between versions.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ..data import Dataset
from ..errors import ConfigError
from ..model import Model
from ..registry import Registry
from ..splits import UserStates

WORLD = {"n_users": 150, "n_items": 50, "days": 30.0, "pop_sigma": 2.0, "seed": 0}
"""The synthetic parameters of the tiny world (plus `impressions: true` for models and splits that need it)."""

_WORLDS: dict[tuple, Dataset] = {}


def tiny_world(registry: Registry, impressions: bool = False, funnel: bool = False) -> Dataset:
    """The tiny world (built once per process and synthetic factory), its last user and last item cold; with
    `impressions` or `funnel` that layer too."""
    try:
        spec = registry.get("dataset", "synthetic")
    except ConfigError:
        raise ConfigError("the conformance kit runs models and splits on the built-in 'synthetic' dataset, and this "
                          "registry has none; build it with Registry.load() (entry points on)") from None
    key = (id(spec.factory), impressions, funnel)
    if key not in _WORLDS:
        layer = {"impressions": True} if impressions else {"funnel": True, "recall_size": 10} if funnel else {}
        ds = registry.create("dataset", "synthetic", **WORLD, **layer)
        _WORLDS[key] = make_cold(ds)
    return _WORLDS[key]


def make_cold(ds: Dataset) -> Dataset:
    """The dataset without any event of its last user or last item (the truth's per-event table follows)."""
    x = ds.interactions
    keep = (x.user != cold_user(ds)) & (x.item != cold_item(ds))
    truth = ds.truth
    per_event = {f: getattr(truth, f)[keep] for f in ("click_prob", "recall_prob", "exposure_prob")
                 if getattr(truth, f, None) is not None}
    if per_event:
        truth = dataclasses.replace(truth, **per_event)
    return dataclasses.replace(ds, interactions=x.subset(keep), truth=truth)


def cold_user(ds: Dataset) -> int:
    return ds.n_users - 1


def cold_item(ds: Dataset) -> int:
    return ds.n_items - 1


def model_split(spec: Any, served: set[str]) -> tuple[str, dict[str, Any]]:
    """The split a model is checked on, from what it requires: impressions (or serving ctr) -> `impressions`;
    funnel -> `funnel` (on the tiny world's funnel layer);
    calibration -> `temporal` with a calibration window; valid -> `temporal` with `valid: true`; else
    `temporal` (7-day horizon)."""
    requires = set(spec.requires)
    if "impressions" in requires or "ctr" in served:
        return "impressions", {"test_days": 5.0}
    if "funnel" in requires:
        return "funnel", {"test_days": 7.0}
    params: dict[str, Any] = {"horizon": 7.0}
    if "calibration" in requires:
        params["calibration"] = 3.0
    if "valid" in requires:
        params["valid"] = True
    return "temporal", params


def with_cold_state(states: UserStates, user: int) -> UserStates:
    """`states` plus one state of `user` with an empty history, cut at the latest cut of `states`."""
    cut = float(np.max(states.time)) if len(states) else 0.0
    ptr = np.asarray(states.hist_ptr, dtype=np.int64)
    return UserStates(user=np.append(np.asarray(states.user, dtype=np.int64), user),
                      time=np.append(np.asarray(states.time, dtype=np.float64), cut),
                      hist_ptr=np.append(ptr, ptr[-1]), hist_item=np.asarray(states.hist_item),
                      hist_time=np.asarray(states.hist_time))


class ConstantModel(Model):
    """Every score equal (ranking ties go to the lower index; click probability one half): the reference every
    model must beat."""

    def fit(self, train, loss, ctx):
        self.n_items = train.n_items

    def factors(self, states):
        return torch.zeros((len(states), 1)), torch.zeros((self.n_items, 1))

    def predict_ctr(self, rows):
        return np.full(len(rows), 0.5)
