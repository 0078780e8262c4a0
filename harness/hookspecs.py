"""The plugin hooks: one per kind, each called with a `register(spec)` callback.

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
import pluggy

hookspec = pluggy.HookspecMarker("matchbench")
hookimpl = pluggy.HookimplMarker("matchbench")


@hookspec
def register_datasets(register):
    """Register dataset plugins: call register(DatasetSpec(...)) for each."""


@hookspec
def register_splits(register):
    """Register split protocols: call register(SplitSpec(...)) for each."""


@hookspec
def register_models(register):
    """Register models: call register(ModelSpec(...)) for each."""


@hookspec
def register_losses(register):
    """Register training losses: call register(LossSpec(...)) for each."""


@hookspec
def register_planners(register):
    """Register planners (scores + constraints -> assignment): call register(PlannerSpec(...))."""


@hookspec
def register_metrics(register):
    """Register evaluation metrics: call register(MetricSpec(...)) for each."""


@hookspec
def register_trackers(register):
    """Register experiment trackers: call register(TrackerSpec(...)) for each."""
