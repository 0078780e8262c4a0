"""The conformance kit: the checks every plugin of a kind must pass, as scikit-learn's `check_estimator` does.

    from harness.testing import check_plugin
    check_plugin("model", "my_model", epochs=2)        # runs every model check; raises on the first failure

Each check is a named function that raises an `AssertionError` starting with its name and the plugin:
"check_deterministic_for_a_seed(model 'bpr'): two fits with seed 0 give different ...". Run one alone with
`check_fits("my_model", epochs=2)` (or pass a `PluginCase`, which memoises the fit between checks);
`checks_for(kind)` lists them in the order `check_plugin` runs them.

Models and splits run on a tiny synthetic world (150 users, 50 items, 30 days, strong popularity, one user and
one item without any event; `harness.conformance.world`). Datasets load from the parameters given (e.g.
`path=`), trackers run a minimal lifecycle in a temporary directory, losses / metrics / planners on small
hand-made inputs. What each kind's checks assert is in their docstrings and in `harness.conformance.<kind>s`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .conformance import datasets as _datasets
from .conformance import losses as _losses
from .conformance import metrics as _metrics
from .conformance import models as _models
from .conformance import planners as _planners
from .conformance import splits as _splits
from .conformance import trackers as _trackers
from .conformance.base import CHECKS, PluginCase
from .conformance.world import WORLD, ConstantModel
from .errors import ConfigError, did_you_mean
from .registry import Registry
from .specs import KINDS

check_fits = _models.check_fits
check_declared_tasks_evaluate = _models.check_declared_tasks_evaluate
check_offers_are_implemented = _models.check_offers_are_implemented
check_deterministic_for_a_seed = _models.check_deterministic_for_a_seed
check_rankings_independent_of_block_size = _models.check_rankings_independent_of_block_size
check_factors_agree_with_score_block = _models.check_factors_agree_with_score_block
check_cold_users_and_items_get_finite_scores = _models.check_cold_users_and_items_get_finite_scores
check_beats_a_constant_scorer = _models.check_beats_a_constant_scorer

check_loss_instantiates = _losses.check_loss_instantiates
check_loss_contract_matches_spec = _losses.check_loss_contract_matches_spec
check_loss_is_a_finite_differentiable_scalar = _losses.check_loss_is_a_finite_differentiable_scalar
check_loss_prefers_separated_scores = _losses.check_loss_prefers_separated_scores

check_split_builds = _splits.check_split_builds
check_histories_end_before_their_cut = _splits.check_histories_end_before_their_cut
check_targets_follow_their_cut = _splits.check_targets_follow_their_cut
check_no_target_in_train = _splits.check_no_target_in_train
check_split_provides_what_it_promises = _splits.check_split_provides_what_it_promises
check_split_deterministic_for_a_seed = _splits.check_split_deterministic_for_a_seed

check_metric_matches_its_example = _metrics.check_metric_matches_its_example
check_metric_values_are_well_formed = _metrics.check_metric_values_are_well_formed
check_rate_metrics_stay_in_unit_interval = _metrics.check_rate_metrics_stay_in_unit_interval

check_planner_declares_constraints = _planners.check_planner_declares_constraints
check_plan_respects_constraints = _planners.check_plan_respects_constraints

check_dataset_loads = _datasets.check_dataset_loads
check_dataset_ids_in_range = _datasets.check_dataset_ids_in_range
check_dataset_id_maps_match = _datasets.check_dataset_id_maps_match
check_dataset_times_numeric = _datasets.check_dataset_times_numeric

check_tracker_lifecycle = _trackers.check_tracker_lifecycle


def checks_for(kind: str) -> list[Callable[..., None]]:
    """The checks of `kind`, in the order `check_plugin` runs them (later ones reuse what earlier ones built)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown plugin kind {kind!r}{did_you_mean(kind, KINDS)}")
    return list(CHECKS[kind])


def check_plugin(kind: str, name: str, registry: Registry | None = None, **params: Any) -> None:
    """Run every check of `kind` on plugin `name` with `params` (validated through the registry's schema; default
    registry: `Registry.load()`). Returns None when all pass; raises the first failure's AssertionError."""
    case = PluginCase(kind, name, registry, **params)
    for run in checks_for(kind):
        run(case)


__all__ = ["check_plugin", "checks_for", "PluginCase", "ConstantModel", "WORLD"] + [
    f.__name__ for kind in KINDS for f in CHECKS[kind]]
