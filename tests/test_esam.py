"""ESAM (plugins/models/esam.py): the conformance kit, its three losses on hand-computed cases, the target domain
drawn from Space B, and a trained model that ranks the whole catalogue better than chance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.model import FitContext, default_device
from harness.registry import Registry
from harness.testing import check_plugin
from plugins.models.dat import DAT
from plugins.models.esam import (
    center_clustering,
    confident_mask,
    correlation_alignment,
    make_esam,
    self_training,
)
from plugins.models.funnel_towers import FunnelTwoTower, histories


@pytest.fixture(scope="module")
def funnel_world():
    reg = Registry.load()
    ds = reg.create("dataset", "synthetic", n_users=300, n_items=100, days=30, funnel=True, recall_size=20)
    return ds, reg.create("split", "funnel", test_days=7.0).split(ds, 0)


@pytest.mark.parametrize("tower", ["youtube_dnn", "dat"])
def test_esam_passes_the_conformance_kit(tower):
    check_plugin("model", "esam", epochs=1, tower=tower)


def test_the_towers_are_youtube_dnn_and_dat():
    assert isinstance(make_esam(), FunnelTwoTower) and not isinstance(make_esam(), DAT)
    dat = make_esam(tower="dat", mimic_user=0.25)
    assert isinstance(dat, DAT) and dat.mimic_user == 0.25 and dat.sampling == "ss_ab"


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
    assert confident_mask(torch.tensor([0.2, 0.8]), 0.2, 0.8).tolist() == [False, False]   # strict, as ESAM's δ
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


@pytest.mark.parametrize("tower", ["youtube_dnn", "dat"])
def test_trained_esam_beats_a_random_ranking(funnel_world, tower):
    ds, split = funnel_world
    torch.manual_seed(0)
    model = make_esam(tower=tower, epochs=20, layers=[64, 32])
    model.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=default_device()))
    ev = split.test
    u, v = model.factors(ev.states)
    top = np.argsort(-(u @ v.T).numpy(), 1)[:, :20]
    truth = ev.targets.toarray() > 0
    recall = (np.take_along_axis(truth, top, 1).sum(1) / truth.sum(1)).mean()
    random_recall = 20 / split.n_items        # a random ranking's expected recall@20 over the catalogue
    assert recall > 2 * random_recall, (recall, random_recall)


@pytest.mark.parametrize("tower", ["youtube_dnn", "dat"])
def test_extra_loss_is_the_weighted_sum_of_the_three_terms(funnel_world, tower):
    """The training term on a batch equals λ1·L_DA + λ2·L_DC^c + λ3·L_DC^p recomputed here: source = each row's
    click and its Space-A negatives, target = the Space-B items drawn at the same positions, labels 1 / 0, the
    query = the row's request, the logits with the model's offset (and DAT's mimic losses on tower dat)."""
    ds, split = funnel_world
    model = make_esam(tower=tower, epochs=1, layers=[16, 8], lambda_da=0.7, lambda_dc=0.3, lambda_st=0.5)
    ctx = FitContext.for_split(split, ds, seed=0, device=default_device())
    model.fit(split.train, None, ctx)
    data = model.training_pairs(split.train, ctx, np.random.default_rng(1))
    rows = np.arange(40)
    batch = {k: torch.as_tensor(v[rows]) for k, v in data.items() if isinstance(v, np.ndarray)}
    batch["seq"] = torch.as_tensor(histories(split.train, data["user"][rows], data["time"][rows], model.max_len,
                                             model.n_items))
    with torch.no_grad():
        got = float(model.extra_loss(batch, torch.zeros(len(rows), data["items"].shape[1])))
        shown = np.concatenate([np.ones((len(rows), 1), bool), data["space"][rows] == 2], 1)
        src = torch.as_tensor(data["items"][rows][shown])
        tgt = torch.as_tensor(data["target"][rows][shown])
        label = torch.as_tensor(np.broadcast_to(np.arange(shown.shape[1]) == 0, shown.shape)[shown].astype(int))
        query = torch.as_tensor(np.broadcast_to(data["request"][rows][:, None], shown.shape)[shown])
        vs, vt = model.item_vec(src), model.item_vec(tgt)
        user = torch.as_tensor(np.broadcast_to(data["user"][rows][:, None], shown.shape)[shown])
        seq = batch["seq"][torch.as_tensor(np.nonzero(shown)[0])]
        logits = (model.user_vec(user, seq) * vt).sum(-1) + model.offset
        want = (0.7 * correlation_alignment(vs, vt) + 0.3 * center_clustering(vs, label, query, 0.2, 0.9)
                + 0.5 * self_training(logits, 0.2, 0.8))
        if tower == "dat":
            loss_u, loss_v = model.mimic_losses(batch["user"], batch["seq"], batch["items"][:, 0])
            want = want + 0.5 * loss_u + 0.5 * loss_v
    assert shown.sum() > len(rows)
    assert got == pytest.approx(float(want), rel=1e-5)
