"""UniMatch's losses (plugins/losses/inbatch.py) against hand-computed values and torch's cross-entropy."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import plugins.losses.inbatch as inbatch
from harness.errors import ConfigError
from harness.registry import Registry


@pytest.fixture(scope="module")
def reg():
    return Registry.load()


def _eq10_by_hand(phi, log_pu, log_pi, a, b, da, db):
    """Eq. 10 written out term by term with Python floats."""
    n = len(phi)
    total = 0.0
    for k in range(n):
        h = [math.exp(phi[k][c] - da * log_pi[c]) for c in range(n)]
        o = [math.exp(phi[r][k] - db * log_pu[r]) for r in range(n)]
        total += a * math.log(h[k] / sum(h)) + b * math.log(o[k] / sum(o))
    return -total / n


@pytest.mark.parametrize("name", ["infonce", "simclr", "row_bcnce", "col_bcnce", "bbcnce"])
def test_eq10_presets_match_the_hand_computed_loss(reg, name):
    phi = [[1.0, -0.5, 0.3], [0.2, 0.7, -1.0], [0.0, 0.4, 1.5]]
    log_pu, log_pi = [math.log(0.5), math.log(0.2), math.log(0.3)], [math.log(0.1), math.log(0.6), math.log(0.3)]
    a, b, da, db, _ = inbatch.PRESETS[name]
    loss = reg.create("loss", name)
    assert reg.get("loss", name).contract == "in_batch"
    got = loss(torch.tensor(phi), torch.tensor(log_pu), torch.tensor(log_pi))
    assert float(got) == pytest.approx(_eq10_by_hand(phi, log_pu, log_pi, a, b, da, db), rel=1e-5)


def test_infonce_and_simclr_are_cross_entropy_over_the_batch(reg):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 6, generator=g)
    lp = torch.log(torch.rand(6, generator=g))
    target = torch.arange(6)
    assert float(reg.create("loss", "infonce")(logits, lp, lp)) == pytest.approx(
        float(F.cross_entropy(logits, target)), rel=1e-6)
    assert float(reg.create("loss", "simclr")(logits, lp, lp)) == pytest.approx(
        float(F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)), rel=1e-6)
    # bbcNCE = cross-entropy of the corrected rows + corrected columns
    lu, li = torch.log(torch.rand(6, generator=g)), torch.log(torch.rand(6, generator=g))
    want = F.cross_entropy(logits - li[None, :], target) + F.cross_entropy((logits - lu[:, None]).T, target)
    assert float(reg.create("loss", "bbcnce")(logits, lu, li)) == pytest.approx(float(want), rel=1e-6)


def test_bias_correction_is_invariant_to_shifts_it_should_ignore(reg):
    """Row losses ignore per-user shifts of φ, column losses per-item shifts; a shift of log p̂ by a constant
    changes nothing (only ratios of marginals matter)."""
    g = torch.Generator().manual_seed(1)
    logits, lu, li = torch.randn(5, 5, generator=g), torch.randn(5, generator=g), torch.randn(5, generator=g)
    f, gi = torch.randn(5, 1, generator=g), torch.randn(1, 5, generator=g)
    row, col = reg.create("loss", "row_bcnce"), reg.create("loss", "col_bcnce")
    assert float(row(logits + f, lu, li)) == pytest.approx(float(row(logits, lu, li)), rel=1e-5)
    assert float(col(logits + gi, lu, li)) == pytest.approx(float(col(logits, lu, li)), rel=1e-5)
    bb = reg.create("loss", "bbcnce")
    assert float(bb(logits, lu + 3.0, li - 2.0)) == pytest.approx(float(bb(logits, lu, li)), rel=1e-5)
    assert float(row(logits + gi, lu, li)) != pytest.approx(float(row(logits, lu, li)), rel=1e-3)


@pytest.mark.parametrize("name, target", [("bbcnce", "joint"), ("row_bcnce", "item_given_user"),
                                          ("col_bcnce", "user_given_item"), ("infonce", "pmi")])
def test_table_two_optima_with_a_free_score_table(reg, name, target):
    """Fit a free table φ[u, i] with the loss on in-batch samples of a known joint p(u, i): the optimum of
    Table II is reached up to what the loss leaves free (a constant for bbcNCE, f(u) for row losses, g(i) for
    column losses), so the residual φ - target is constant overall / per user / per item."""
    rng = np.random.default_rng(0)
    joint = rng.dirichlet(np.full(30, 2.0)).reshape(5, 6)
    pu, pi = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    truth = {"joint": np.log(joint), "item_given_user": np.log(joint / pu), "user_given_item": np.log(joint / pi),
             "pmi": np.log(joint / pu / pi)}[target]
    g = torch.Generator().manual_seed(0)
    pairs = torch.multinomial(torch.as_tensor(joint.ravel()), 400 * 512, replacement=True, generator=g).view(400, 512)
    phi = torch.zeros(5, 6, requires_grad=True)
    opt = torch.optim.Adam([phi], lr=0.05)
    lpu, lpi = torch.log(torch.as_tensor(pu.ravel())).float(), torch.log(torch.as_tensor(pi.ravel())).float()
    loss = reg.create("loss", name)
    for step, batch in enumerate(pairs):
        if step == 300:
            opt.param_groups[0]["lr"] = 0.01
        u, i = batch // 6, batch % 6
        out = loss(phi[u][:, i], lpu[u], lpi[i])
        opt.zero_grad()
        out.backward()
        opt.step()
    resid = phi.detach().numpy() - truth
    free = {"joint": resid.mean(), "item_given_user": resid.mean(1, keepdims=True),
            "user_given_item": resid.mean(0, keepdims=True), "pmi": resid.mean(1, keepdims=True)}[target]
    assert np.abs(resid - free).max() < 0.1, (resid - free).round(2)
    if name == "bbcnce":  # and it is not the row optimum: the per-user offset log p(u) is learned too
        off = phi.detach().numpy() - np.log(joint / pu)
        assert np.abs(off - off.mean()).max() > 0.3


def test_ssm_is_logq_corrected_sampled_softmax(reg):
    loss = reg.create("loss", "ssm", negatives=3, power=1.0)
    assert loss.contract == "sampled"
    plan = loss.plan(np.array([1, 2]), np.array([1, 3, 0, 4]))
    np.testing.assert_allclose(plan.q_item, [1 / 8, 3 / 8, 0, 4 / 8])
    assert plan.q_user is None and plan.k == 3 and not plan.paired
    pos, neg = torch.tensor([1.0, 0.5]), torch.tensor([[0.2, -0.3, 0.9], [0.0, 0.1, 0.4]])
    lq, lqp = torch.log(torch.tensor([0.5, 0.25, 0.25])), torch.log(torch.tensor([0.125, 0.375]))
    want = 0.0
    for b in range(2):
        z = [float(pos[b] - lqp[b])] + [float(neg[b, j] - lq[j]) for j in range(3)]
        want += -(z[0] - math.log(sum(math.exp(v) for v in z)))
    assert float(loss(pos, neg, lq, lqp)) == pytest.approx(want / 2, rel=1e-6)
    assert reg.create("loss", "ssm", power=0.0).plan(np.ones(2), np.array([2, 0, 5])).q_item.tolist() == [0.5, 0, 0.5]


@pytest.mark.parametrize("negatives, q_user, q_item", [
    ("user", [1 / 6, 0, 5 / 6], [1 / 4] * 4),
    ("item", [1 / 2, 0, 1 / 2], [0.1, 0.2, 0.3, 0.4]),
    ("user_item", [1 / 6, 0, 5 / 6], [0.1, 0.2, 0.3, 0.4]),
    ("uniform", [1 / 2, 0, 1 / 2], [1 / 4] * 4),
])
def test_bce_neg_draws_the_table_one_distributions(reg, negatives, q_user, q_item):
    loss = reg.create("loss", "bce_neg", negatives=negatives)
    plan = loss.plan(np.array([1, 0, 5]), np.array([1, 2, 3, 4]))
    np.testing.assert_allclose(plan.q_user, q_user)
    np.testing.assert_allclose(plan.q_item, q_item)
    assert plan.paired and plan.k == 1
    pos, neg = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -0.2])

    def sig(x):
        return 1 / (1 + math.exp(-x))

    want = -(math.log(sig(2.0)) + math.log(sig(-1.0)) + math.log(1 - sig(0.5)) + math.log(1 - sig(-0.2))) / 4
    assert float(loss(pos, neg)) == pytest.approx(want, rel=1e-6)


def test_bad_parameters_are_clear_errors(reg):
    with pytest.raises(ConfigError, match="negatives='popular' is not one of"):
        reg.create("loss", "bce_neg", negatives="popular")
    with pytest.raises(ConfigError, match="alpha=2 is above its maximum"):
        reg.create("loss", "nce_eq10", alpha=2)
    with pytest.raises(ConfigError, match="alpha=beta=0 leaves no loss"):
        reg.create("loss", "nce_eq10", alpha=0, beta=0)
    with pytest.raises(ConfigError, match="negatives=0 is below its minimum"):
        reg.create("loss", "ssm", negatives=0)
    with pytest.raises(ValueError, match="square B x B"):
        reg.create("loss", "bbcnce")(torch.zeros(2, 3), torch.zeros(2), torch.zeros(3))


def test_nce_eq10_switches_reproduce_the_presets(reg):
    g = torch.Generator().manual_seed(2)
    logits, lu, li = torch.randn(4, 4, generator=g), torch.randn(4, generator=g), torch.randn(4, generator=g)
    for name, (a, b, da, db, _) in inbatch.PRESETS.items():
        got = reg.create("loss", "nce_eq10", alpha=a, beta=b, delta_alpha=da, delta_beta=db)(logits, lu, li)
        assert float(got) == pytest.approx(float(reg.create("loss", name)(logits, lu, li)), rel=1e-6), name
