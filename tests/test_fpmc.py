"""`fpmc` (Rendle et al. 2010): baskets and scores against hand computations, S-BPR negatives outside the basket,
the conformance kit, and quality on synthetic worlds with and without first-order transitions (drift γ)."""
import numpy as np
import pytest
import torch

from harness.model import FitContext
from harness.plugin import UserStates, validation_ndcg
from harness.registry import Registry
from harness.testing import check_plugin
from plugins.models.fpmc import FPMC, baskets

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def reg():
    return Registry.load()


def test_baskets_are_same_time_events_of_a_user():
    user = np.array([0, 0, 0, 0, 1, 1, 2])
    time = np.array([1.0, 1.0, 2.0, 5.0, 2.0, 2.0, 1.0])   # sorted by (user, time)
    bid, prev = baskets(user, time)
    assert bid.tolist() == [0, 0, 1, 2, 3, 3, 4]
    assert prev.tolist() == [-1, 0, 1, -1, -1]


def test_score_is_mf_plus_mean_markov_over_the_last_basket():
    rng = np.random.default_rng(0)
    d, n_u, n_i = 3, 3, 5
    m = FPMC(factors=d)
    m.UI, m.IU, m.IL, m.LI = (torch.as_tensor(rng.standard_normal((r, d)), dtype=torch.float32)
                              for r in (n_u, n_i, n_i, n_i))
    m.UI[2] = 0.0   # a user without training events
    # state 0: user 0, history items 4 @1, 1 @3, 2 @3 -> last basket {1, 2}; state 1: user 1, history 3 @2;
    # state 2: user 2 (cold), history 0 @4; state 3: user 1, no history
    states = UserStates(user=np.array([0, 1, 2, 1]), time=np.array([5.0, 5.0, 5.0, 5.0]),
                        hist_ptr=np.array([0, 3, 4, 5, 5]), hist_item=np.array([4, 1, 2, 3, 0]),
                        hist_time=np.array([1.0, 3.0, 3.0, 2.0, 4.0]))
    U, V = m.factors(states)
    got = (U @ V.T).numpy()
    UI, IU, IL, LI = (t.numpy().astype(np.float64) for t in (m.UI, m.IU, m.IL, m.LI))
    want = np.empty((4, n_i))
    for i in range(n_i):
        want[0, i] = UI[0] @ IU[i] + 0.5 * (IL[i] @ LI[1] + IL[i] @ LI[2])
        want[1, i] = UI[1] @ IU[i] + IL[i] @ LI[3]
        want[2, i] = IL[i] @ LI[0]
        want[3, i] = UI[1] @ IU[i]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_negatives_avoid_the_positive_basket():
    m = FPMC(n_neg=3)
    basket = np.repeat(np.arange(200), 2)                # 200 baskets of two items out of 6
    items = np.random.default_rng(1).permutation(np.tile(np.arange(6), 70))[:400]
    keys = np.unique(basket * 6 + items)
    neg = m._negatives(np.random.default_rng(0), basket, keys, 6)
    assert neg.shape == (400, 3)
    assert not np.isin(np.repeat(basket, 3) * 6 + neg.reshape(-1), keys).any()


def test_conformance_kit():
    check_plugin("model", "fpmc", factors=8, epochs=4, batch_size=1024, lr=0.01, reg=0.01)  # tiny world: more steps


def ndcg10(registry, name, split, n_items, **params):
    model = registry.create("model", name, **params)
    loss = registry.create("loss", "bpr") if name != "item_pop" else None
    model.fit(split.train, loss, FitContext(seed=0, device=CPU))
    u, v = model.factors(split.test.states)
    return validation_ndcg(split.test, lambda rows: u[torch.as_tensor(rows)] @ v.T, n_items, k=10)


# plain MF trained as FPMC's MF term is: uniform negatives on the item side only, the same factors and epochs
MF = dict(factors=32, epochs=30, batch_size=1024, neg_power=0.0, sample_users=False, reg=0.03)
FP = dict(factors=32, epochs=30, batch_size=1024, reg=0.01)


@pytest.mark.parametrize("drift", [0.0, 3.0])
def test_fpmc_uses_transitions_when_there_are_some(reg, drift):
    """1000 users, 100 items, d = 4 (so γ·φ_last·φ_y has std γ/2), leave-one-out; measured (seed 0):
    γ = 0: item_pop .096, bpr .192, fpmc .202; γ = 3: item_pop .180, bpr .355, fpmc .484."""
    ds = reg.create("dataset", "synthetic", n_users=1000, n_items=100, days=30.0, dim=4, pop_sigma=0.5,
                    drift=drift, seed=0)
    split = reg.create("split", "leave_one_out").split(ds, 0)
    n_items = ds.interactions.n_items
    pop = ndcg10(reg, "item_pop", split, n_items)
    mf = ndcg10(reg, "bpr", split, n_items, **MF)
    fp = ndcg10(reg, "fpmc", split, n_items, **FP)
    assert fp > pop + 0.05
    if drift == 0:
        assert abs(fp - mf) < 0.03, (fp, mf)   # no transitions: the Markov term adds nothing, FPMC ties MF
    else:
        assert fp > mf + 0.08, (fp, mf)        # strong transitions: the Markov term wins
