"""Early stopping measures what the test measures: with `exclude_seen: false` (session data, where the next click
often repeats one of the session) the validation set a model gets keeps its repeats as targets and masks nothing."""
import numpy as np
import pytest
import torch
from conftest import tiny_suite

from harness import api, hookimpl
from harness.model import Model
from harness.registry import Registry
from harness.specs import ModelSpec

SEEN: list[dict] = []


class Probe(Model):
    """Records what fit gets as its validation set; scores every item 0."""

    def fit(self, train, loss, ctx):
        v = ctx.valid
        SEEN.append({"exclude": None if v.exclude is None else int(v.exclude.nnz),
                     "targets": int(v.remaining_targets().nnz), "n": v.n_states})
        self.n_items = train.n_items

    def factors(self, states):
        return torch.zeros(len(states), 1), torch.zeros(self.n_items, 1)


class ProbePlugin:
    @hookimpl
    def register_models(self, register):
        register(ModelSpec(name="probe", factory=Probe, tasks=("itemrec",), description="records ctx.valid"))


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_the_validation_set_follows_exclude_seen(workdir, exclude_seen):
    SEEN.clear()
    reg = Registry.load(extra=[ProbePlugin()])
    suite = tiny_suite(name=f"probe_{exclude_seen}", split={"name": "leave_one_out"}, tasks=["itemrec"],
                       models=[{"name": "probe"}], metrics=["ndcg"], exclude_seen=exclude_seen)
    frame = api.run(suite, registry=reg)
    assert (frame.status == "FINISHED").all() and len(SEEN) == 1
    got = SEEN[0]
    if exclude_seen:
        assert got["exclude"] > 0 and got["targets"] < got["n"]    # histories masked, repeats dropped
    else:
        assert got["exclude"] is None and got["targets"] == got["n"]  # nothing masked, every repeat a target


def test_repeats_are_validation_targets_only_without_exclusion(workdir):
    """The tiny world repeats items (40 items, long histories): with exclusion some validation targets drop out."""
    from harness.api import plugin

    ds = plugin("dataset", "synthetic", n_users=120, n_items=40, days=30.0)
    valid = plugin("split", "leave_one_out").split(ds, 0).valid
    repeats = np.asarray(valid.targets.multiply(valid.exclude > 0).sum(1)).ravel() > 0
    assert repeats.any()
    assert valid.remaining_targets().nnz == valid.n_states - repeats.sum()
    assert valid.remaining_targets(exclude_seen=False).nnz == valid.n_states
