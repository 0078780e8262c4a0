"""`jodie`: JODIE's operators against hand computations, the t-batch invariants, the distance factors, serving
(trajectory + replay of post-training history) and a learning check on a small synthetic world."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.model import FitContext
from harness.plugin import Interactions, UserStates
from harness.registry import Registry
from harness.testing import check_plugin
from plugins.models.jodie import Jodie, JodieNet, distance_factors, tbatches


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


def _net(n_feat=0, d=3):
    return JodieNet(n_users=3, n_items=4, d=d, n_feat=n_feat, gen=torch.Generator().manual_seed(7))


def _np(t):
    return t.detach().numpy().astype(np.float64)


def _normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------- conformance

def test_conformance(registry):
    check_plugin("model", "jodie", registry, epochs=1, dim=16, windows=20)


# ----------------------------------------------------------------------------------------- the operators

def test_projection_matches_hand_computation():
    net = _net()
    u = torch.tensor([[0.6, -0.8, 0.0], [0.1, 0.2, 0.3]])
    dt = torch.tensor([0.5, -2.0])
    w, b = _np(net.time.weight)[:, 0], _np(net.time.bias)
    want = _np(u) * (1.0 + np.outer(_np(dt), w) + b)        # û = (1 + w Δ + b) ⊙ u
    np.testing.assert_allclose(_np(net.project(u, dt)), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_np(net.project(u, torch.zeros(2)))[0], _np(u)[0] * (1 + b), rtol=1e-6)


def test_updates_match_hand_computation():
    net = _net(n_feat=1)
    g = torch.Generator().manual_seed(1)
    u, i = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    du, di, f = torch.tensor([0.3, -1.0]), torch.tensor([1.5, 0.0]), torch.tensor([[2.0], [-0.5]])

    def cell(rnn, h, other, dt):   # Eq. 1 / 2 with tanh, then L2-normalised (the authors' RNNCell + normalize)
        x = np.concatenate([_np(other), _np(dt)[:, None], _np(f)], 1)
        z = x @ _np(rnn.weight_ih).T + _np(rnn.bias_ih) + _np(h) @ _np(rnn.weight_hh).T + _np(rnn.bias_hh)
        return _normalize(np.tanh(z))

    np.testing.assert_allclose(_np(net.update_user(u, i, du, f)), cell(net.user_rnn, u, i, du), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(net.update_item(i, u, di, f)), cell(net.item_rnn, i, u, di), rtol=1e-5, atol=1e-6)


def test_tbatch_loss_matches_hand_computation():
    net = _net(d=3)
    g = torch.Generator().manual_seed(3)
    U, I = torch.randn(3, 3, generator=g), torch.randn(5, 3, generator=g)
    users, items, prev = torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([4, 1])   # 4 = padding item
    du, di, f = torch.tensor([0.2, -0.7]), torch.tensor([1.0, 0.4]), torch.zeros(2, 0)
    loss, u_out, i_out = net.tbatch_loss(U, I, users, items, prev, du, di, f, lambda_u=0.5, lambda_i=2.0)
    u_in, i_in = _np(U)[[0, 2]], _np(I)[[1, 3]]
    proj = u_in * (1 + np.outer(_np(du), _np(net.time.weight)[:, 0]) + _np(net.time.bias))
    i_bar = _normalize(_np(net.i_static.weight))             # static item embeddings are unit length
    x = np.concatenate([proj, _np(net.u_static.weight)[[0, 2]], _np(I)[[4, 1]], i_bar[[4, 1]]], 1)
    pred = x @ _np(net.predict.weight).T + _np(net.predict.bias)
    target = np.concatenate([i_in, i_bar[[1, 3]]], 1)
    want = (np.mean((pred - target) ** 2) + 0.5 * np.mean((_np(u_out) - u_in) ** 2)
            + 2.0 * np.mean((_np(i_out) - i_in) ** 2))
    assert float(loss.detach()) == pytest.approx(want, rel=1e-5)
    loss.backward()
    assert net.predict.weight.grad is not None and net.user_rnn.weight_ih.grad is not None


# ----------------------------------------------------------------------------------------- t-batches

def test_tbatches_hand_built_case():
    user, item = np.array([0, 1, 0, 2, 1]), np.array([0, 1, 1, 2, 0])
    assert tbatches(user, item).tolist() == [0, 0, 1, 0, 1]
    # a new window starts after every t-batch of the previous one
    assert tbatches(user, item, window=np.array([0, 0, 0, 1, 1])).tolist() == [0, 0, 1, 2, 2]
    # batch limit 1: t-batch 0 = {e0, e1, e3} is cut into three pieces, in time order
    assert tbatches(user, item, max_batch=1).tolist() == [0, 1, 3, 2, 4]


def _assert_valid_tbatches(user, item, window, batch, max_batch=None):
    n = len(user)
    for b in np.unique(batch):
        sel = batch == b
        assert len(np.unique(user[sel])) == sel.sum(), f"t-batch {b} holds two events of one user"
        assert len(np.unique(item[sel])) == sel.sum(), f"t-batch {b} holds two events of one item"
        assert max_batch is None or sel.sum() <= max_batch
        assert len(np.unique(window[sel])) == 1, f"t-batch {b} spans two windows"
    for key in (user, item):                      # each user's / item's events in strictly later t-batches
        for k in np.unique(key):
            assert (np.diff(batch[key == k]) > 0).all()
    order = np.argsort(batch, kind="stable")      # windows are processed in order
    assert (np.diff(window[order]) >= 0).all()
    assert sorted(np.unique(batch)) == list(range(batch.max() + 1)) and len(batch) == n


@pytest.mark.parametrize("seed", range(6))
def test_tbatches_property_on_random_logs(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    user, item = rng.integers(0, rng.integers(1, 30), n), rng.integers(0, rng.integers(1, 30), n)
    window = np.sort(rng.integers(0, rng.integers(1, 10), n))
    max_batch = [None, 1, 3][seed % 3]
    _assert_valid_tbatches(user, item, window, tbatches(user, item, window, max_batch), max_batch)
    # without windows or limit, a t-batch is the longest dependency chain ending at the event
    plain = tbatches(user, item)
    for j in range(n):
        earlier = [plain[k] for k in range(j) if user[k] == user[j] or item[k] == item[j]]
        assert plain[j] == (max(earlier) + 1 if earlier else 0)


# ----------------------------------------------------------------------------------------- factors and serving

def test_distance_factors_equal_negative_squared_l2():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(11, 5, generator=g, dtype=torch.float64)
    s, v = distance_factors(a, b)
    want = -((a.numpy()[:, None, :] - b.numpy()[None]) ** 2).sum(-1)
    np.testing.assert_allclose((s @ v.T).numpy(), want, rtol=1e-10, atol=1e-10)
    assert (np.argsort(-(s @ v.T).numpy(), 1) == np.argsort(-want, 1)).all()


@pytest.fixture(scope="module")
def small_fit():
    rng = np.random.default_rng(0)
    n = 60
    user, item = rng.integers(0, 3, n), rng.integers(0, 5, n)          # user 3 never acts
    t = np.sort(rng.uniform(0, 10, n))
    train = Interactions(user=user, item=item, time=t, n_users=4, n_items=6, time_unit="day")   # item 5 never seen
    m = Jodie(dim=4, epochs=2, windows=3)
    m.fit(train, None, FitContext(train=train, seed=0))
    return m, train


def test_serving_follows_trajectory_and_replays_new_history(small_fit):
    m, train = small_fit
    net, z = m.net, torch.zeros(1, 0)

    def std(x):
        return torch.tensor([(x - m.dt_mean) / m.dt_sd], dtype=torch.float32)

    def last_before(u, cut):   # position (in the time-ordered training log) of u's last event before cut
        pos = np.flatnonzero((m.train_user == u) & (m.train_time < cut))
        return pos[-1]

    u0_hist = train.time[train.user == 0]
    h0_items = np.r_[train.item[train.user == 0][np.argsort(u0_hist)], [2, 3]]
    h0_times = np.r_[np.sort(u0_hist), [12.0, 15.0]]
    u1_mask = (train.user == 1) & (train.time < 5.0)
    h1_items, h1_times = train.item[u1_mask][np.argsort(train.time[u1_mask])], np.sort(train.time[u1_mask])
    states = UserStates(user=np.array([0, 1, 3]), time=np.array([20.0, 5.0, 8.0]),
                        hist_ptr=np.array([0, len(h0_items), len(h0_items) + len(h1_items), len(h0_items) +
                                           len(h1_items)]),
                        hist_item=np.r_[h0_items, h1_items], hist_time=np.r_[h0_times, h1_times])
    got = m.predict_states(states)
    with torch.no_grad():
        # user 0: its end-of-training embedding, then two history events not in training (items 2 and 3)
        p = last_before(0, 20.0)
        u = m.traj[[p]]
        u = net.update_user(u, m.I_end[[2]], std(12.0 - m.train_time[p]), z)
        u = net.update_user(u, m.I_end[[3]], std(3.0), z)
        want0 = net.predict_item(net.project(u, std(5.0)), torch.tensor([0]), m.I_end[[3]], torch.tensor([3]))
        # user 1, cut inside training: its trajectory at its last event before the cut, nothing replayed
        p = last_before(1, 5.0)
        prev = torch.tensor([int(m.train_item[p])])
        want1 = net.predict_item(net.project(m.traj[[p]], std(5.0 - m.train_time[p])), torch.tensor([1]),
                                 m.I_end[prev], prev)
        # user 3, never seen: the initial embedding, the padding previous item, Δ from the log's start
        pad = torch.tensor([6])
        want3 = net.predict_item(net.project(net.u0[None], std(8.0 - train.time.min())), torch.tensor([3]),
                                 m.I_end[pad], pad)
    np.testing.assert_allclose(got.numpy(), torch.cat([want0, want1, want3]).numpy(), rtol=1e-5, atol=1e-6)
    # the factors rank by -||j̃ - [i ⊕ ī]||², the never-seen item included
    s, v = m.factors(states)
    want = -torch.cdist(got.double(), m.item_vec.double()).square()
    np.testing.assert_allclose((s @ v.T).numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(m.score_block(states, np.array([2, 0])).numpy(), want.numpy()[[2, 0]], rtol=1e-4,
                               atol=1e-4)
    assert np.isfinite((s @ v.T).numpy()).all() and m.item_vec.shape == (6, 8)


# ----------------------------------------------------------------------------------------- learning

def test_beats_random_on_a_synthetic_world(registry):
    from harness.evaluate import ScoreSource, evaluate_full

    ds = registry.create("dataset", "synthetic", n_users=200, n_items=80, drift=3.0, seed=0)
    split = registry.create("split", "temporal", horizon=7.0).split(ds, 0)
    m = registry.create("model", "jodie", epochs=3, dim=32, windows=100)
    m.fit(split.train, None, FitContext.for_split(split, ds, seed=0))
    metrics = {"recall": registry.get("metric", "recall")}
    res = evaluate_full("itemrec", ScoreSource(m, split.test, split.n_items, torch.device("cpu")), split.test, [10],
                        metrics, split.train.item_counts)
    # a random ranking finds each remaining target in the top 10 of its m candidates with probability 10 / m
    q = res.queries
    m_cand = split.n_items - np.diff(split.test.exclude.indptr)[q]
    random_recall = float(np.mean(np.minimum(10, m_cand) / m_cand))
    assert res.metrics["recall_10"] > random_recall + 0.05, (res.metrics["recall_10"], random_recall)
