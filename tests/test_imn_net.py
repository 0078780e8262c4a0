"""`imn_net` and its ablations: the resource branch moves only on purchases (training and serving), t-batches keep
users and items apart, the NCE estimator, fusion loss and joint discriminator against hand computations, the
conformance kit for the four names, and IMN-Net against JODIE on a world whose resource limits bind."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.model import FitContext
from harness.plugin import Interactions, UserStates
from harness.registry import Registry
from harness.testing import check_plugin
from plugins.models.imn_net import ImnNet, ImnNetwork, _last_purchase, nce_loss

NAMES = ("imn_net", "imn_mse", "imn_nce", "imn_net_star")


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


def _np(t):
    return t.detach().numpy().astype(np.float64)


# ----------------------------------------------------------------------------------------- conformance

@pytest.mark.parametrize("name", NAMES)
def test_conformance(registry, name):
    check_plugin("model", name, registry, epochs=1, dim=8, windows=10, n_samples=4)


# ----------------------------------------------------------------------------------------- a tiny fitted model

def _log():
    """3 users, 5 items; user 0 clicks item 1 then buys it (a second row at the same time), clicks 2, buys 3."""
    rows = [(0, 1, 1.0, "click"), (0, 1, 1.0, "purchase"), (1, 2, 1.5, "click"), (0, 2, 2.0, "click"),
            (2, 0, 2.5, "click"), (1, 4, 3.0, "click"), (1, 4, 3.0, "purchase"), (0, 3, 4.0, "click"),
            (0, 3, 4.0, "purchase"), (2, 1, 4.5, "click"), (1, 0, 5.0, "click"), (2, 2, 6.0, "click")]
    u, i, t, e = map(np.array, zip(*rows, strict=True))
    return Interactions(user=u, item=i, time=t.astype(float), n_users=3, n_items=5, time_unit="day",
                        event=e.astype(object))


@pytest.fixture(scope="module")
def tiny():
    train = _log()
    m = ImnNet(dim=4, epochs=2, windows=3, n_samples=4, patience=None)
    m.fit(train, None, FitContext(train=train, seed=0))
    return m, train


def test_last_purchase_times_by_hand():
    user = np.array([0, 0, 1, 0, 1, 0])
    t = np.array([1.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    buy = np.array([False, True, False, False, True, False])
    before, after = _last_purchase(user, t, buy)
    np.testing.assert_array_equal(before, [np.nan, np.nan, np.nan, 1.0, np.nan, 1.0])
    np.testing.assert_array_equal(after, [np.nan, 1.0, np.nan, 1.0, 4.0, 1.0])


def test_resource_trajectory_moves_only_on_purchases(tiny):
    m, train = tiny
    buy = train.event == "purchase"          # the log is already in time order
    for u in range(3):
        rows = np.flatnonzero(train.user == u)
        traj = _np(m.ltraj[rows])           # h^l after each of the user's events (the first: from l0 or moved)
        moved = ~np.isclose(traj[1:], traj[:-1], atol=1e-7).all(1)
        np.testing.assert_array_equal(moved, buy[rows][1:], err_msg=f"user {u}")
    assert m.n_purchases == 3


def _one_event(m, user, item, prev, purchase):
    """The tensors of a one-event t-batch (ImnNet._step's input)."""
    z = torch.zeros(1)
    return {"u": torch.tensor([user]), "i": torch.tensor([item]), "prev": torch.tensor([prev]),
            "pos": torch.tensor([0]), "du": z + 0.3, "di": z - 0.2, "dl": z + 0.7, "f": torch.zeros(1, 0),
            "purchase": torch.tensor([purchase])}


@pytest.mark.parametrize("purchase", [False, True])
def test_step_updates_resource_state_by_hand(tiny, purchase):
    m, _ = tiny
    net = m.net
    m._neg_gen = torch.Generator().manual_seed(0)
    state = m._start(1)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for k in ("U", "I", "L"):
            state[k] = torch.nn.functional.normalize(torch.randn(state[k].shape, generator=g), dim=1)
    U0, I0, L0 = state["U"].clone(), state["I"].clone(), state["L"].clone()
    ev = _one_event(m, 1, 2, 4, purchase)
    m._step(ev, slice(0, 1), state)
    with torch.no_grad():
        u_new = net.update_user(U0[[1]], I0[[2]], ev["du"], ev["f"])
        i_new = net.update_item(I0[[2]], U0[[1]], ev["di"], ev["f"])
        want_l = net.update_limited(L0[[1]], u_new, i_new, torch.tensor([1]), torch.tensor([2]), ev["dl"], ev["f"])
    np.testing.assert_allclose(_np(state["U"][1]), _np(u_new[0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(state["L"][[0, 2]]), _np(L0[[0, 2]]))          # other users: untouched
    if purchase:
        np.testing.assert_allclose(_np(state["L"][1]), _np(want_l[0]), rtol=1e-5, atol=1e-6)
        assert not np.allclose(_np(state["L"][1]), _np(L0[1]))
    else:
        np.testing.assert_array_equal(_np(state["L"][1]), _np(L0[1]))             # a click: h^l unchanged
    np.testing.assert_allclose(_np(state["ltraj"][0]), _np(state["L"][1]))


def test_serving_replays_purchases_into_the_resource_branch(tiny):
    m, train = tiny
    hist_items = [1, 1, 2, 3, 3]                      # user 0's training history
    hist_times = [1.0, 1.0, 2.0, 4.0, 4.0]
    extra = {"click": ([4], [7.0]), "purchase": ([4, 4], [7.0, 7.0])}
    got = {}
    for kind, (items, times) in extra.items():
        hi, ht = np.array(hist_items + items), np.array(hist_times + times)
        states = UserStates(user=np.array([0]), time=np.array([8.0]), hist_ptr=np.array([0, len(hi)]),
                            hist_item=hi, hist_time=ht)
        got[kind] = m._serve_begin(np.array([0]), np.array([True]), np.array([8])), states
    # replay hooks: a click leaves h^l and the purchase time; the repeated (item, time) row is a purchase
    for kind, (ex, _) in got.items():
        l_before, tb = ex["L"].clone(), ex["t_buy"].copy()
        assert tb[0] == 4.0
        u_new = m.traj[[8]]
        it = torch.tensor([4])
        m._serve_event(ex, np.array([True]), np.array([0]), it, np.array([7.0]), u_new, torch.zeros(1, 0),
                       same=np.array([kind == "purchase"]))
        if kind == "click":
            np.testing.assert_array_equal(_np(ex["L"]), _np(l_before))
        else:
            want = m.net.update_limited(l_before, u_new, m.I_end[it], torch.tensor([0]), it,
                                        torch.tensor(m._std_l(np.array([3.0])), dtype=torch.float32),
                                        torch.zeros(1, 0))
            np.testing.assert_allclose(_np(ex["L"]), _np(want), rtol=1e-5, atol=1e-6)
            assert ex["t_buy"][0] == 7.0
    # end to end: the two histories give different rankings inputs, and only through h^l
    pa = m.query_states(got["click"][1])[0]
    pb = m.query_states(got["purchase"][1])[0]
    assert not torch.allclose(pa, pb)


def test_tbatches_keep_users_and_items_apart(tiny):
    m, train = tiny
    _, ev, ptr, _ = m._prepare(train)
    for b in range(len(ptr) - 1):
        s = slice(int(ptr[b]), int(ptr[b + 1]))
        assert len(set(ev["u"][s].tolist())) == ptr[b + 1] - ptr[b]
        assert len(set(ev["i"][s].tolist())) == ptr[b + 1] - ptr[b]
    # a purchase row always follows its click in a later t-batch (same user and item)
    batch = np.empty(len(train), np.int64)
    for b in range(len(ptr) - 1):
        batch[ev["pos"][int(ptr[b]):int(ptr[b + 1])].numpy()] = b
    buys = np.flatnonzero(train.event == "purchase")
    assert (batch[buys] > batch[buys - 1]).all()


# ----------------------------------------------------------------------------------------- the estimator and losses

def test_nce_loss_matches_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.5, -1.0]])
    pos = torch.tensor([[2.0, 1.0], [0.0, 1.0]])
    neg = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [2.0, 1.0]])
    pos_items, neg_items = torch.tensor([7, 3]), torch.tensor([1, 2, 7])     # event 0's item 7 drawn as a negative
    # event 0: logits pos 2, negatives 1, -1, (masked); event 1: pos -1, negatives -0.5, -0.5, 0
    l0 = -(2.0 - np.log(np.exp(2.0) + np.exp(1.0) + np.exp(-1.0)))
    l1 = -(-1.0 - np.log(np.exp(-1.0) + 2 * np.exp(-0.5) + np.exp(0.0)))
    assert float(nce_loss(q, pos, neg, pos_items, neg_items)) == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_fusion_loss_matches_hand_computation(tiny):
    m, _ = tiny
    net = m.net
    m.lambda_m, m.lambda_n, m.lambda_u, m.lambda_i = 0.7, 0.3, 0.5, 2.0
    try:
        state = m._start(2)
        g = torch.Generator().manual_seed(9)
        with torch.no_grad():
            for k in ("U", "I", "L"):
                state[k] = torch.randn(state[k].shape, generator=g)
        U, I, L = state["U"].clone(), state["I"].clone(), state["L"].clone()
        ev = {"u": torch.tensor([0, 2]), "i": torch.tensor([1, 3]), "prev": torch.tensor([5, 1]),
              "pos": torch.tensor([0, 1]), "du": torch.tensor([0.2, -0.4]), "di": torch.tensor([1.0, 0.1]),
              "dl": torch.tensor([0.5, -1.5]), "f": torch.zeros(2, 0), "purchase": torch.tensor([False, True])}
        m._neg_gen = torch.Generator().manual_seed(3)
        loss = m._step(ev, slice(0, 2), state)
        neg = torch.randint(0, m.n_items, (m.n_samples - 1,), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            w, b = _np(net.time.weight)[:, 0], _np(net.time.bias)

            def proj(h, dt):
                return h * (1 + np.outer(dt, w) + b)
            f = proj(_np(U[[0, 2]]), [0.2, -0.4]) + proj(_np(L[[0, 2]]), [0.5, -1.5])     # ĥ^g + ĥ^l
            ibar = _np(net.item_static(torch.arange(6)))
            c = np.concatenate([f, _np(net.u_static.weight)[[0, 2]], _np(I)[[5, 1]], ibar[[5, 1]]], 1)
            pred = c @ _np(net.predict.weight).T + _np(net.predict.bias)
            target = np.concatenate([_np(I)[[1, 3]], ibar[[1, 3]]], 1)
            mse = np.mean((pred - target) ** 2)
            q = c @ _np(net.density.weight).T
            negv = np.concatenate([_np(I)[neg.numpy()], ibar[neg.numpy()]], 1)
            logits = np.concatenate([(q * target).sum(1, keepdims=True), q @ negv.T], 1)
            logits[:, 1:][neg.numpy()[None] == np.array([[1], [3]])] = -np.inf
            nce = np.mean(np.log(np.exp(logits).sum(1)) - logits[:, 0])
            u_out = _np(net.update_user(U[[0, 2]], I[[1, 3]], ev["du"], ev["f"]))
            i_out = _np(net.update_item(I[[1, 3]], U[[0, 2]], ev["di"], ev["f"]))
        want = (0.7 * mse + 0.3 * nce + 0.5 * np.mean((u_out - _np(U[[0, 2]])) ** 2)
                + 2.0 * np.mean((i_out - _np(I[[1, 3]])) ** 2))
        assert float(loss.detach()) == pytest.approx(want, rel=1e-5)
    finally:
        m.lambda_m, m.lambda_n, m.lambda_u, m.lambda_i = 1.0, 0.1, 1.0, 1.0


def test_joint_discriminator_factors(tiny):
    m, train = tiny
    states = UserStates(user=np.array([0, 1, 2]), time=np.array([6.5, 7.0, 9.0]), hist_ptr=np.array([0, 0, 0, 0]),
                        hist_item=np.zeros(0, np.int64), hist_time=np.zeros(0))
    pred, q = m.query_states(states)
    s, v = m.factors(states)
    b = m.item_vec.double()
    want = (m.alpha_m * -torch.cdist(pred.double(), b).square() + m.alpha_n * q.double() @ b.T).numpy()
    np.testing.assert_allclose((s @ v.T).numpy(), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(m.score_block(states, np.array([2, 0])).numpy(), want[[2, 0]], rtol=1e-4, atol=1e-4)
    assert s.shape == (3, 2 * m.d + 2) and v.shape == (5, 2 * m.d + 2)


def test_without_branch_the_resource_state_is_unused():
    train = _log()
    m = ImnNet(dim=4, epochs=1, windows=3, n_samples=4, patience=None, resource=False)
    m.fit(train, None, FitContext(train=train, seed=0))
    assert isinstance(m.net, ImnNetwork)
    states = UserStates(user=np.array([0]), time=np.array([8.0]), hist_ptr=np.array([0, 0]),
                        hist_item=np.zeros(0, np.int64), hist_time=np.zeros(0))
    base = m.query_states(states)[0]
    with torch.no_grad():
        m.ltraj.add_(1.0)
    np.testing.assert_array_equal(m.query_states(states)[0].numpy(), base.numpy())


# ----------------------------------------------------------------------------------------- learning

def test_beats_jodie_on_a_resource_limited_world(registry):
    """Budgets bind (median capacity 1.5 median prices) and stock runs out: IMN-Net's Recall@10 over JODIE's, both
    with the same size, epochs, windows and t-batch limit."""
    from harness.evaluate import ScoreSource, evaluate_full

    ds = registry.create("dataset", "synthetic", n_users=300, n_items=100, resources=True, budget_scale=1.5, seed=0)
    split = registry.create("split", "temporal", test_fraction=0.1, valid_fraction=0.1).split(ds, 0)
    metrics = {"recall": registry.get("metric", "recall")}
    got = {}
    for name in ("jodie", "imn_net"):
        m = registry.create("model", name, epochs=4, dim=32, windows=100, max_batch=256, patience=None)
        m.fit(split.train, None, FitContext.for_split(split, ds, seed=0))
        res = evaluate_full("itemrec", ScoreSource(m, split.test, split.n_items, torch.device("cpu")), split.test,
                            [10], metrics, split.train.item_counts)
        got[name] = res.metrics["recall_10"]
    assert got["imn_net"] > got["jodie"] + 0.03, got
