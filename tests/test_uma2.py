"""UMA² (`uma2`, `uma2_sos`): conformance, Eq. 2's IPW weights on hand-built batches (clip, stop-gradient), and
NSDN's p̂1, p̂2 against the synthetic funnel's true propensities."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from harness.errors import ConfigError
from harness.model import FitContext
from harness.registry import Registry
from harness.testing import check_plugin
from plugins.models.dat import DAT
from plugins.models.funnel_towers import histories
from plugins.models.uma2 import uma2_loss

CPU = torch.device("cpu")
A, B, C = 2, 1, 0


def bce(s: float, y: int) -> float:
    """Binary cross-entropy of one logit, by hand."""
    return math.log1p(math.exp(-s)) if y == 1 else math.log1p(math.exp(s))


@pytest.fixture(scope="module")
def reg():
    return Registry.load()


@pytest.fixture(scope="module")
def fitted(reg):
    """uma2 on a small funnel world (300 users, 200 items, ~20 recalled per request)."""
    ds = reg.create("dataset", "synthetic", n_users=300, n_items=200, funnel=True, recall_size=20, seed=0)
    split = reg.create("split", "funnel").split(ds, 0)
    m = reg.create("model", "uma2", epochs=5, layers=[64, 32], aux_rows=8, batch_size=256)
    m.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=CPU))
    return ds, split, m


@pytest.mark.parametrize("name", ["uma2", "uma2_sos"])
def test_conformance(name):
    check_plugin("model", name, epochs=1)


def test_conformance_with_dat_as_the_gmm(reg):
    check_plugin("model", "uma2", epochs=1, tower="dat")
    m, s = reg.create("model", "uma2", tower="dat"), reg.create("model", "uma2_sos", tower="dat")
    assert isinstance(m, DAT) and isinstance(s, DAT) and not isinstance(reg.create("model", "uma2"), DAT)
    assert m.mimic_user == 0.5 and m.sampling == "ss_abc_fixed" and m.n_neg == 25


# one positive, five negatives in A, B, C, A, B
SCORES = [0.7, -0.3, 1.2, 0.4, -1.5, 2.0]
SPACE = [A, B, C, A, B]
P1 = [0.5, 0.25, 0.9, 0.2, 0.05]
P2 = [0.5, 0.3, 0.7, 0.1, 0.6]


def hand_loss(lambdas, clip):
    w = [1 / (P1[j] * P2[j]) if SPACE[j] == A else 1 / P1[j] if SPACE[j] == B else 1.0 for j in range(5)]
    w = [min(x, clip) if clip is not None else x for x in w]   # A: 4, 50; B: 4, 20; C: 1
    lam = {A: lambdas[0], B: lambdas[1], C: lambdas[2]}
    total = bce(SCORES[0], 1) + sum(lam[SPACE[j]] * w[j] * bce(SCORES[j + 1], 0) for j in range(5))
    return total / 6


@pytest.mark.parametrize("clip", [None, 10.0])
@pytest.mark.parametrize("stop_gradient", [True, False])
def test_eq2_weights_on_a_hand_built_batch(clip, stop_gradient):
    lambdas = (2.0, 3.0, 5.0)
    got = uma2_loss(torch.tensor([SCORES], dtype=torch.float64), torch.tensor([SPACE]),
                    torch.tensor([P1], dtype=torch.float64), torch.tensor([P2], dtype=torch.float64), lambdas,
                    clip, stop_gradient)
    assert float(got) == pytest.approx(hand_loss(lambdas, clip), rel=1e-12)
    # hand value itself: unclipped A weights 4 and 50, B 4 and 20
    assert hand_loss((1, 1, 1), None) != pytest.approx(hand_loss((1, 1, 1), 10.0))


def test_unit_weights_give_the_towers_plain_mean_bce():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(7, 26, generator=g, dtype=torch.float64)
    space = torch.randint(0, 3, (7, 25), generator=g)
    one = torch.ones(7, 25, dtype=torch.float64)
    labels = torch.zeros_like(scores)
    labels[:, 0] = 1
    ref = F.binary_cross_entropy_with_logits(scores, labels)
    assert float(uma2_loss(scores, space, one, one)) == pytest.approx(float(ref), rel=1e-12)


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_stop_gradient_on_the_propensities(stop_gradient):
    p1 = torch.tensor([P1], dtype=torch.float64, requires_grad=True)
    p2 = torch.tensor([P2], dtype=torch.float64, requires_grad=True)
    scores = torch.tensor([SCORES], dtype=torch.float64, requires_grad=True)
    uma2_loss(scores, torch.tensor([SPACE]), p1, p2, stop_gradient=stop_gradient).backward()
    assert float(scores.grad[0, 1]) == pytest.approx(4 * torch.sigmoid(torch.tensor(SCORES[1])).item() / 6)
    if stop_gradient:
        assert p1.grad is None and p2.grad is None
    else:
        # d/dp1 of w·e for a B negative (w = 1/p1) is -e/p1²; loss divides by 6
        assert float(p1.grad[0, 1]) == pytest.approx(-bce(SCORES[2], 0) / P1[1] ** 2 / 6, rel=1e-9)
        assert float(p2.grad[0, 0]) == pytest.approx(-bce(SCORES[1], 0) / (P1[0] * P2[0] ** 2) / 6, rel=1e-9)
        assert float(p2.grad[0, 1]) == 0.0   # B's weight has no p2


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_no_gradient_reaches_nsdn_through_the_weights(fitted, stop_gradient):
    """The GMM part alone (pair_loss) on a real batch: NSDN's towers get a gradient only without stop_gradient."""
    ds, split, m = fitted
    m.stop_gradient, m.clip = stop_gradient, None
    data = m.training_pairs(split.train, FitContext.for_split(split, ds, seed=0, device=CPU),
                            np.random.default_rng(0))
    b = np.arange(64)
    batch = {k: torch.as_tensor(v[b]) for k, v in data.items() if isinstance(v, np.ndarray)}
    batch["seq"] = torch.as_tensor(histories(split.train, data["user"][b], data["time"][b], m.max_len, m.n_items))
    m.net.zero_grad(set_to_none=True)
    m.pair_loss(batch, m.score_pairs(batch["user"], batch["seq"], batch["items"])).backward()
    grads = [p.grad for p in m.net.nsdn.parameters()]
    if stop_gradient:
        assert all(g is None for g in grads)
    else:
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    assert m.net.user_mlp[0].weight.grad.abs().sum() > 0   # the GMM itself learns in both cases
    m.stop_gradient = True


def test_sos_weighs_observed_negatives_by_a_fixed_weight(reg):
    m = reg.create("model", "uma2_sos", observed_weight=0.25)
    got = m.pair_loss({"space": torch.tensor([SPACE])}, torch.tensor([SCORES], dtype=torch.float64))
    w = [0.25 if s in (A, B) else 1.0 for s in SPACE]
    want = (bce(SCORES[0], 1) + sum(w[j] * bce(SCORES[j + 1], 0) for j in range(5))) / 6
    assert float(got) == pytest.approx(want, rel=1e-12)


def test_propensities_track_the_true_ones(fitted):
    ds, split, m = fitted
    f, truth = split.train_funnel, ds.truth
    p1, p2 = m.propensities(f.req_user[f.request], f.req_time[f.request], f.item)
    assert p1.shape == p2.shape == (len(f),) and p1.dtype == np.float64
    assert spearmanr(p1, truth.recall_prob[f.event_id])[0] > 0.5
    assert spearmanr(p2, truth.exposure_prob[f.event_id])[0] > 0.5
    # p̂1 on Space-C pairs (never recalled) against the recaller's p1 of any pair
    rng = np.random.default_rng(1)
    req = rng.integers(0, f.n_requests, 3000)
    items = f.draw_unrecalled(rng, req)
    world_req = ds.interactions.features["request"][f.event_id[np.searchsorted(f.request, req)]]
    q1, _ = m.propensities(f.req_user[req], f.req_time[req], items)
    assert spearmanr(q1, truth.recall_propensity(world_req, items))[0] > 0.5


def test_tower_choice_is_checked(reg):
    with pytest.raises(ConfigError):
        reg.create("model", "uma2", tower="no_such_tower")
