"""`dat` (Dual Augmented Two-tower) and `fm` (factorisation machine), UMA²'s Table 1 competitors: the
conformance kit, DAT's Adaptive-Mimic losses and FM's O(kn) identity against hand / brute-force computations,
FM's served factors against the full FM, and both beating a random ranking on a small funnel world."""
import itertools

import numpy as np
import pytest
import torch

from harness.evaluate import ScoreSource, evaluate_full
from harness.model import FitContext
from harness.registry import Registry
from harness.testing import check_plugin
from plugins.models.dat import DAT
from plugins.models.fm import FM

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def reg():
    return Registry.load()


# ------------------------------------------------------------------------------------------------ conformance

@pytest.mark.parametrize("name", ["dat", "fm"])
def test_conformance(reg, name):
    # one epoch at the default batch 512 is 6 Adam steps on the tiny world (youtube_dnn fails the kit too);
    # smaller batches and a larger step make one epoch learn
    check_plugin("model", name, registry=reg, epochs=1, batch_size=32, lr=1e-2)


# ------------------------------------------------------------------------------------------------ DAT

def tiny_dat(**kw) -> DAT:
    """A DAT with one linear layer per tower (output dim 3), 2 users, 3 items, fixed item features."""
    torch.manual_seed(0)
    m = DAT(emb_dim=2, layers=[3], **kw)
    m.n_items = 3
    m.net = m.build(2, 3)
    m.feats = torch.tensor([[0.5, 0.1], [1.0, 0.2], [0.0, 0.3], [0.0, 0.0]])   # last row: padding
    return m


def dat_reference(m: DAT, users, seq, items):
    """p_u, p_v, a_u, a_i in numpy from the net's weights (MLP of one Linear: W·x + b)."""
    g = {k: v.detach().numpy() for k, v in m.net.state_dict().items()}
    E_u, E_i, A_u, A_i = g["user_emb.weight"], g["item_emb.weight"], g["user_aug.weight"], g["item_aug.weight"]
    p_u, p_v = [], []
    for u, h, i in zip(users, seq, items, strict=True):
        h = [x for x in h if x != 3]
        hist = E_i[h].mean(0) if h else np.zeros(2)
        p_u.append(g["user_mlp.0.weight"] @ np.concatenate([E_u[u], hist, A_u[u]]) + g["user_mlp.0.bias"])
        x = np.concatenate([E_i[i], m.feats[i].numpy(), A_i[i]])
        p_v.append(g["item_mlp.0.weight"] @ x + g["item_mlp.0.bias"])
    return np.array(p_u), np.array(p_v), A_u[users], A_i[items]


def test_dat_mimic_losses_match_a_reference_and_stop_the_other_towers_gradient():
    m = tiny_dat()
    users, seq, pos = [0, 1], [[1, 3], [0, 2]], [2, 0]
    p_u, p_v, a_u, a_i = dat_reference(m, users, seq, pos)
    tu, ts, tp = torch.tensor(users), torch.tensor(seq), torch.tensor(pos)
    # the towers take the augmented vectors among their inputs (serving too: user_vec / item_vec)
    np.testing.assert_allclose(m.user_vec(tu, ts).detach().numpy(), p_u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.item_vec(tp).detach().numpy(), p_v, rtol=1e-5, atol=1e-6)
    loss_u, loss_v = m.mimic_losses(tu, ts, tp)
    assert loss_u.item() == pytest.approx(((a_u - p_v) ** 2).sum(1).mean(), rel=1e-5)
    assert loss_v.item() == pytest.approx(((a_i - p_u) ** 2).sum(1).mean(), rel=1e-5)
    m.net.zero_grad()
    loss_u.backward()
    # stopgrad(p_v): loss_u moves a_u only, by d/da_u mean ||a_u − p_v||² = 2 (a_u − p_v) / B
    np.testing.assert_allclose(m.net.user_aug.weight.grad[users].numpy(), (a_u - p_v), rtol=1e-5, atol=1e-6)
    for p in list(m.net.item_mlp.parameters()) + list(m.net.user_mlp.parameters()) + [m.net.item_emb.weight]:
        assert p.grad is None or not p.grad.any()


def test_dat_extra_loss_weighs_the_mimic_terms_on_positives_only():
    m = tiny_dat(mimic_user=2.0, mimic_item=0.25)
    batch = {"user": torch.tensor([0, 1]), "seq": torch.tensor([[1, 3], [0, 2]]),
             "items": torch.tensor([[2, 0, 1], [0, 1, 2]])}
    loss_u, loss_v = m.mimic_losses(batch["user"], batch["seq"], batch["items"][:, 0])
    got = m.extra_loss(batch, torch.zeros(2, 3)).item()
    assert got == pytest.approx(2.0 * loss_u.item() + 0.25 * loss_v.item(), rel=1e-6)
    assert loss_u.item() > 0 and loss_v.item() > 0
    other_negs = dict(batch, items=torch.tensor([[2, 1, 1], [0, 2, 2]]))
    assert m.extra_loss(other_negs, torch.zeros(2, 3)).item() == pytest.approx(got, rel=1e-6)
    assert DAT().mimic_user == 0.5 and DAT().mimic_item == 0.5


# ------------------------------------------------------------------------------------------------ FM

def hand_fm() -> FM:
    """k = 1: user 0 v=1 w=.2; bag items 0 (v=2, w=.3), 2 (v=5, w=.7); item 1 v=3 w=.4; features v=(.5, −1),
    w=(.05, −.02), item 1's features (2, .5); w0 = .1."""
    m = FM(emb_dim=1)
    m.n_items = 3
    m.net = m.build(1, 3)
    m.feats = torch.tensor([[0.0, 0.0], [2.0, 0.5], [0.0, 0.0], [0.0, 0.0]])
    n = m.net
    with torch.no_grad():
        for p in n.parameters():
            p.zero_()
        n.w0.fill_(0.1)
        n.user_v.weight[0, 0], n.user_w.weight[0, 0] = 1.0, 0.2
        n.hist_v.weight[0, 0], n.hist_w.weight[0, 0] = 2.0, 0.3
        n.hist_v.weight[2, 0], n.hist_w.weight[2, 0] = 5.0, 0.7
        n.item_v.weight[1, 0], n.item_w.weight[1, 0] = 3.0, 0.4
        n.feat_v.copy_(torch.tensor([[0.5], [-1.0]]))
        n.feat_w.copy_(torch.tensor([0.05, -0.02]))
    return m


def test_fm_score_is_the_full_fm_by_hand():
    m = hand_fm()
    seq = torch.tensor([[0, 3, 3], [0, 0, 3], [0, 2, 3]])
    s = m.score_pairs(torch.zeros(3, dtype=torch.long), seq, torch.ones(3, 1, dtype=torch.long))[:, 0]
    # bag [0]: linear .1+.2+.3+.4+.05·2−.02·.5 = 1.09; v·x = (1, 2, 3, 1, −.5): ½(6.5² − 15.25) = 13.5
    # bag [0, 0]: item 0 is one feature with x = 2/2 = 1, the same FM (two separate features would add 1)
    # bag [0, 2]: x = .5 each; linear 1.29; v·x = (1, 1, 2.5, 3, 1, −.5): ½(8² − 18.5) = 22.75
    np.testing.assert_allclose(s.detach().numpy(), [14.59, 14.59, 24.04], rtol=1e-6)
    # served: [U, 1]·[I, b_i] = full − c_u with c_u = w0 + user linear + user-user pairs (bag [0]: .6 + 1·2)
    u, v = m.user_vec(torch.zeros(3, dtype=torch.long), seq), m.item_vec(torch.tensor([1]))
    # bag [0, 2]: c_u = .1 + .2 + .3·.5 + .7·.5 + (1·1 + 1·2.5 + 1·2.5) = 6.8
    np.testing.assert_allclose((u[:, :2] @ v[:, :2].T)[:, 0].detach().numpy(), [11.99, 11.99, 17.24], rtol=1e-6)
    np.testing.assert_allclose((u @ v.T)[:, 0].detach().numpy(), [14.59, 14.59, 24.04], rtol=1e-6)


def g(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def fm_features(m: FM, user: int, seq, item: int):
    """The nonzero features of a pair as (v [n, k], w [n], x [n]), a bag item repeated counted once with its
    summed weight."""
    n, pad = m.net, m.n_items
    bag = [h for h in seq if h != pad]
    vs, ws, xs = [g(n.user_v.weight)[user]], [g(n.user_w.weight)[user, 0]], [1.0]
    for h in sorted(set(bag)):
        vs.append(g(n.hist_v.weight)[h])
        ws.append(g(n.hist_w.weight)[h, 0])
        xs.append(bag.count(h) / len(bag))
    vs.append(g(n.item_v.weight)[item])
    ws.append(g(n.item_w.weight)[item, 0])
    xs.append(1.0)
    for f in range(2):
        vs.append(g(n.feat_v)[f])
        ws.append(g(n.feat_w)[f])
        xs.append(float(m.feats[item, f]))
    return np.array(vs), np.array(ws), np.array(xs)


def brute_fm(m: FM, user: int, seq, item: int, user_only: bool = False) -> float:
    """Rendle's eq. 1 by the O(kn²) double sum (user_only: w0 and the user-side terms alone, c_u)."""
    v, w, x = fm_features(m, user, seq, item)
    n_user = len(v) - 3
    keep = range(n_user) if user_only else range(len(v))
    out = m.net.w0.item() + sum(w[j] * x[j] for j in keep)
    for j, k in itertools.combinations(keep, 2):
        out += float(v[j] @ v[k]) * x[j] * x[k]
    return out


def test_fm_identity_matches_the_double_sum_and_factors_rank_as_the_full_fm():
    torch.manual_seed(1)
    m = FM(emb_dim=3)
    m.n_items = 6
    m.net = m.build(4, 6)
    with torch.no_grad():
        for p in m.net.parameters():
            p.normal_()
        m.net.hist_v.weight[6].zero_()
        m.net.hist_w.weight[6].zero_()
    m.feats = torch.cat([torch.rand(6, 2) * 3, torch.zeros(1, 2)])
    users = torch.tensor([0, 1, 2, 3])
    seq = torch.tensor([[1, 1, 4, 6], [2, 6, 6, 6], [6, 6, 6, 6], [0, 3, 0, 0]])   # repeats, one empty bag
    items = torch.arange(6)[None].expand(4, -1)
    full = m.score_pairs(users, seq, items).detach().numpy()
    ref = np.array([[brute_fm(m, u, seq[r].tolist(), i) for i in range(6)] for r, u in enumerate(users.tolist())])
    np.testing.assert_allclose(full, ref, rtol=1e-5, atol=1e-5)
    u, v = m.user_vec(users, seq).detach(), m.item_vec(torch.arange(6)).detach()
    c_u = np.array([brute_fm(m, u_, seq[r].tolist(), 0, user_only=True) for r, u_ in enumerate(users.tolist())])
    k = 3
    np.testing.assert_allclose((u[:, :k + 1] @ v[:, :k + 1].T).numpy(), ref - c_u[:, None], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose((u @ v.T).numpy(), ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ funnel world

@pytest.fixture(scope="module")
def funnel_world(reg):
    ds = reg.create("dataset", "synthetic", n_users=300, n_items=100, days=30, funnel=True, recall_size=20)
    return ds, reg.create("split", "funnel").split(ds, 0)


def fit_on(reg, world, name: str):
    ds, split = world
    m = reg.create("model", name, emb_dim=16, layers=[64, 32], epochs=3, batch_size=128, n_neg=10,
                   sampling="ss_abc_random")
    m.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=CPU))
    return m


@pytest.mark.parametrize("name", ["dat", "fm"])
def test_beats_a_random_ranking_on_the_funnel_world(reg, funnel_world, name):
    _, split = funnel_world
    m = fit_on(reg, funnel_world, name)
    res = evaluate_full("itemrec", ScoreSource(m, split.test, split.n_items, CPU), split.test, [20],
                        {"recall": reg.get("metric", "recall")}, split.train.item_counts)
    # a uniformly random ranking over a query's candidates (catalogue less its excluded items) finds each
    # target in the top 20 with probability min(20, n_cand) / n_cand
    targets = split.test.remaining_targets(True)
    q = np.flatnonzero(np.diff(targets.indptr) > 0)
    n_cand = split.n_items - np.diff(split.test.exclude.indptr)[q]
    random_recall = float(np.mean(np.minimum(20, n_cand) / n_cand))
    assert res.metrics["n_queries"] == len(q) > 100
    assert res.metrics["recall_20"] > random_recall + 0.2, (res.metrics["recall_20"], random_recall)


def test_fm_served_factors_are_the_full_fm_on_the_funnel_world(reg, funnel_world):
    _, split = funnel_world
    m = fit_on(reg, funnel_world, "fm")
    states = split.test.states
    u, v = m.factors(states)
    rows = np.arange(5)
    users, seq = m.state_inputs(states)
    with torch.no_grad():
        full = m.score_pairs(users[rows], seq[rows], torch.arange(split.n_items)[None].expand(5, -1)).numpy()
    k = m.emb_dim
    part = (u[rows, :k + 1] @ v[:, :k + 1].T).numpy()
    c_u = np.array([brute_fm(m, int(users[r]), seq[r].tolist(), 0, user_only=True) for r in rows])
    np.testing.assert_allclose(part, full - c_u[:, None], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose((u[rows] @ v.T).numpy(), full, rtol=1e-4, atol=1e-4)
    assert np.std(full - part, axis=1).max() < 1e-4 and np.abs(c_u).max() > 1e-3   # a real per-user constant
