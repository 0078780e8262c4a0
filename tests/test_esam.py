"""ESAM (plugins/models/esam.py): the conformance kit, its three losses on hand-computed cases, the target domain
drawn from Space B, and a trained model that ranks the whole catalogue better than chance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.model import FitContext, default_device
from harness.registry import Registry
from harness.testing import check_plugin
from plugins.models.esam import (
    center_clustering,
    confident_mask,
    correlation_alignment,
    make_esam,
    self_training,
)


@pytest.fixture(scope="module")
def funnel_world():
    reg = Registry.load()
    ds = reg.create("dataset", "synthetic", n_users=300, n_items=100, days=30, funnel=True, recall_size=20)
    return ds, reg.create("split", "funnel", test_days=7.0).split(ds, 0)


def test_esam_passes_the_conformance_kit():
    check_plugin("model", "esam", epochs=1)


def test_correlation_alignment_is_zero_for_identical_domains():
    d = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    assert float(correlation_alignment(d, d.clone())) == 0.0
    # the Gram matrix ignores the order of the items: a shuffled copy is the same domain
    assert float(correlation_alignment(d, d[torch.tensor([3, 1, 6, 0, 2, 5, 4])])) == pytest.approx(0.0, abs=1e-12)


def test_correlation_alignment_hand_computed_2x2():
    """D^s = I: Gram/n = I/2; D^t = [[1, 1], [0, 0]]: Gram/n = all 1/2; the difference has two off-diagonal
    -1/2 entries: (1/L²)·(1/4 + 1/4) = 0.5 / 4 = 0.125."""
    ds = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    dt = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert float(correlation_alignment(ds, dt)) == pytest.approx(0.125)
    with pytest.raises(ValueError):
        correlation_alignment(ds, dt[:1])


def test_center_clustering_hand_computed():
    """One query: a click [2, 0] (normalised [1, 0]) and two exposed items [0, 1] and [1, 0]: centres c1 = [1, 0],
    c0 = [.5, .5]; intra hinge (0, .5 - .2, .5 - .2) averaged = .2; inter hinge .9 - ‖c1 - c0‖² = .9 - .5 = .4."""
    vec = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    label = torch.tensor([1, 0, 0])
    query = torch.tensor([7, 7, 7])
    assert float(center_clustering(vec, label, query, m1=0.2, m2=0.9)) == pytest.approx(0.6)
    # well separated classes inside the margins cost nothing; a second query is its own centres
    vec2 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 1.0], [1.0, 0.0]])
    assert float(center_clustering(vec2, torch.tensor([1, 0, 0, 1, 0]), torch.tensor([0, 0, 0, 5, 5]),
                                   m1=0.2, m2=0.9)) == pytest.approx(0.0)


def test_self_training_selects_exactly_the_confident_pairs():
    prob = torch.tensor([0.1, 0.3, 0.5, 0.79, 0.85, 0.95, 0.19])
    logits = torch.log(prob / (1 - prob)).requires_grad_(True)
    picked = confident_mask(prob, 0.2, 0.8)
    assert picked.tolist() == [True, False, False, False, True, True, True]
    loss = self_training(logits, 0.2, 0.8)
    p = prob.numpy().astype(np.float64)
    sel = [0, 4, 5, 6]
    assert float(loss.detach()) == pytest.approx(-(p[sel] * np.log(p[sel])).sum() / len(p), rel=1e-5)
    loss.backward()
    grad = logits.grad.numpy()
    assert np.all(grad[[1, 2, 3]] == 0.0) and np.all(grad[sel] != 0.0)


def test_the_target_domain_is_space_b(funnel_world):
    ds, split = funnel_world
    model = make_esam(epochs=1, layers=[16, 8])
    ctx = FitContext.for_split(split, ds, seed=0, device=default_device())
    data = model.training_pairs(split.train, ctx, np.random.default_rng(0))
    fr = split.train_funnel
    req = np.repeat(data["request"], data["target"].shape[1])
    has_b = np.bincount(fr.request[fr.stage == 1], minlength=fr.n_requests)[req] > 0
    spaces = fr.space_of(req, data["target"].ravel())
    assert has_b.mean() > 0.5
    assert np.all(spaces[has_b] == 1)
    # ss_ab by default: the BCE's negatives are A and B only
    assert set(np.unique(data["space"]).tolist()) <= {1, 2}


def test_trained_esam_beats_a_random_ranking(funnel_world):
    ds, split = funnel_world
    torch.manual_seed(0)
    model = make_esam(epochs=20, layers=[64, 32])
    model.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=default_device()))
    ev = split.test
    u, v = model.factors(ev.states)
    top = np.argsort(-(u @ v.T).numpy(), 1)[:, :20]
    truth = ev.targets.toarray() > 0
    recall = (np.take_along_axis(truth, top, 1).sum(1) / truth.sum(1)).mean()
    random_recall = 20 / split.n_items        # a random ranking's expected recall@20 over the catalogue
    assert recall > 2 * random_recall, (recall, random_recall)
