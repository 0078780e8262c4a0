"""`mind` (MIND, Li et al. 2019): B2I routing, squash and the adaptive K'_u against direct computations of the
paper's Algorithm 1, label-aware attention's limits, serving as the max over interests, the conformance kit, and
learning on a small funnel world (whole-catalogue recall@20 above a random ranking's)."""
import numpy as np
import pytest
import torch

from harness.model import FitContext
from harness.registry import Registry
from harness.splits import UserStates
from harness.testing import check_plugin
from plugins.models.mind import Mind, b2i_routing, interest_count, label_aware, squash

CPU = torch.device("cpu")


def test_squash_matches_its_definition_and_keeps_zero_finite():
    z = torch.tensor([[3.0, 4.0], [0.1, -0.2], [0.0, 0.0]], dtype=torch.float64)
    n2 = (z * z).sum(1, keepdim=True)
    ref = n2 / (1 + n2) * z / torch.sqrt(n2)
    got = squash(z)
    assert torch.allclose(got[:2], ref[:2], atol=1e-9)
    assert torch.allclose(got[0], torch.tensor([15 / 26, 20 / 26], dtype=torch.float64))   # |z| = 5: 25/26 · z/5
    assert torch.equal(got[2], torch.zeros(2, dtype=torch.float64))
    zz = torch.zeros(1, 3, requires_grad=True)
    squash(zz).sum().backward()
    assert torch.isfinite(zz.grad).all()


def test_interest_count_is_the_papers_adaptive_k():
    n = torch.tensor([0, 1, 2, 3, 4, 7, 8, 15, 16, 1000])
    assert interest_count(n, 4, True).tolist() == [1, 1, 1, 1, 2, 2, 3, 3, 4, 4]
    assert interest_count(n, 4, False).tolist() == [4] * 10


def routing_reference(e, mask, bil, b0, kprime, iters):
    """Algorithm 1 with explicit loops (float64): w_ij = softmax over the K' capsules, z_j = Σ_i w_ij S e_i,
    u_j = squash(z_j), b_ij += u_jᵀ S e_i; padding behaviours are skipped."""
    L, K = e.shape[0], b0.shape[0]
    se = [bil.T @ e[i] for i in range(L)]          # S e_i with S = bilinear.T (the code's row convention)
    b = b0.copy()
    u = np.zeros((K, bil.shape[1]))
    for _ in range(iters):
        w = np.zeros((K, L))
        for i in range(L):
            if mask[i]:
                ex = np.exp(b[:kprime, i] - b[:kprime, i].max())
                w[:kprime, i] = ex / ex.sum()
        for j in range(kprime):
            z = sum(w[j, i] * se[i] for i in range(L))
            n2 = float(z @ z)
            u[j] = n2 / (1 + n2) * z / np.sqrt(n2)
        for j in range(kprime):
            for i in range(L):
                b[j, i] += u[j] @ se[i]
    return u


@pytest.mark.parametrize("iters,kprime", [(1, 3), (3, 3), (3, 2)])
def test_routing_matches_a_direct_computation_of_algorithm_1(iters, kprime):
    g = np.random.default_rng(1)
    L, K, d = 5, 3, 4
    e, bil, b0 = g.normal(size=(L, d)), g.normal(size=(d, d)), g.normal(size=(K, L))
    mask = np.array([1, 1, 1, 0, 0])
    kmask = (np.arange(K) < kprime).astype(np.float64)
    got = b2i_routing(*(torch.as_tensor(a[None]) for a in (e, mask.astype(np.float64))), torch.as_tensor(bil),
                      torch.as_tensor(b0), torch.as_tensor(kmask[None]), iters)[0].numpy()
    ref = routing_reference(e, mask, bil, b0, kprime, iters)
    np.testing.assert_allclose(got, ref, atol=1e-10)
    assert np.abs(got[kprime:]).sum() == 0.0


def test_padding_behaviours_get_no_coupling():
    """Changing a padded behaviour's embedding (or its initial logits) leaves every capsule unchanged; an empty
    history gives zero capsules."""
    g = torch.Generator().manual_seed(0)
    e = torch.randn(1, 6, 4, generator=g, dtype=torch.float64)
    bil, b0 = torch.randn(4, 4, generator=g, dtype=torch.float64), torch.randn(3, 6, generator=g, dtype=torch.float64)
    mask, kmask = torch.tensor([[1.0, 1, 1, 1, 0, 0]], dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)
    a = b2i_routing(e, mask, bil, b0, kmask, 3)
    e2, b2 = e.clone(), b0.clone()
    e2[0, 4:] = 100.0
    b2[:, 4:] = -50.0
    assert torch.allclose(a, b2i_routing(e2, mask, bil, b2, kmask, 3), atol=1e-12)
    assert not torch.allclose(a, b2i_routing(e2, torch.ones_like(mask), bil, b2, kmask, 3))   # unmasked: it does
    empty = b2i_routing(e, torch.zeros_like(mask), bil, b0, kmask, 3)
    assert torch.equal(empty, torch.zeros_like(empty))


def test_label_aware_attention_limits():
    """p large: the hard max (the interest with the largest dot product); p = 0: the uniform mean; p = 1: the
    softmax of the dot products; masked interests get no weight."""
    g = torch.Generator().manual_seed(3)
    vu = torch.rand(6, 4, 3, generator=g, dtype=torch.float64) + 0.5     # positive entries: dots in (0.75, 6.75)
    label = torch.rand(6, 3, generator=g, dtype=torch.float64) + 0.5
    kmask = torch.ones(6, 4, dtype=torch.float64)
    dots = (vu * label[:, None]).sum(-1)
    hard = vu[torch.arange(6), dots.argmax(1)]
    assert torch.allclose(label_aware(vu, kmask, label, 64), hard, atol=1e-9)
    assert not torch.allclose(label_aware(vu, kmask, label, 1), hard, atol=1e-3)
    assert torch.allclose(label_aware(vu, kmask, label, 0), vu.mean(1))
    soft = (torch.softmax(dots, 1)[:, :, None] * vu).sum(1)
    assert torch.allclose(label_aware(vu, kmask, label, 1), soft)
    kmask[:, 2:] = 0
    assert torch.allclose(label_aware(vu, kmask, label, 0), vu[:, :2].mean(1))


def built_model(n_users=7, n_items=11, adaptive_k=True):
    """An unfitted MIND with its networks built and random item features (for serving checks)."""
    torch.manual_seed(0)
    m = Mind(emb_dim=4, layers=[8, 5], max_len=4, interests=3, adaptive_k=adaptive_k)
    m.n_items = n_items
    m.net = m.build(n_users, n_items).eval()
    m.feats = torch.cat([torch.rand(n_items, 2), torch.zeros(1, 2)])
    with torch.no_grad():
        m.item_table = m.item_vec(torch.arange(n_items))
    return m


@pytest.mark.parametrize("adaptive_k", [True, False])
def test_score_block_is_the_max_over_the_users_interests(adaptive_k):
    m = built_model(adaptive_k=adaptive_k)
    hists = [[], [3], [1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 0], [2, 2], [0, 1, 2]]    # state 3 longer than max_len
    users = np.array([0, 1, 2, 3, 4, 6])
    ptr = np.concatenate([[0], np.cumsum([len(h) for h in hists])])
    flat = np.array([i for h in hists for i in h], dtype=np.int64)
    states = UserStates(user=users, time=np.zeros(6), hist_ptr=ptr, hist_item=flat,
                        hist_time=np.zeros(len(flat)))
    rows = np.array([3, 0, 5, 2])
    got = m.score_block(states, rows)
    assert got.shape == (4, 11) and torch.isfinite(got).all()
    for r, row in enumerate(rows):
        h = hists[row][::-1][:4]                                  # most recent first, the last max_len
        seq = torch.tensor([h + [11] * (4 - len(h))])
        with torch.no_grad():
            vu, _ = m.user_vecs(torch.tensor([users[row]]), seq)
        kp = max(1, min(3, int(np.floor(np.log2(len(h))))) if h else 1) if adaptive_k else 3
        direct = torch.stack([m.item_table @ vu[0, j] for j in range(kp)]).max(0).values
        assert torch.allclose(got[r], direct, atol=1e-6)


def test_training_scores_use_the_positive_as_the_label():
    """score_pairs = ⟨v_u, e_i⟩ with v_u the label-aware mix of the interests, the label being column 0."""
    m = built_model(adaptive_k=False)
    m.pow_p = 1
    with torch.no_grad():                                                # sharper attention than at initialisation
        m.net.user_mlp[-1].weight.mul_(30.0)
        m.net.item_mlp[-1].weight.mul_(30.0)
    users, seq = torch.tensor([1, 2]), torch.tensor([[1, 2, 3, 4], [5, 11, 11, 11]])
    items = torch.tensor([[0, 3, 7], [9, 1, 2]])
    with torch.no_grad():
        got = m.score_pairs(users, seq, items)
        vu, _ = m.user_vecs(users, seq)
        e = m.item_vec(items)
        att = torch.softmax((vu * e[:, :1]).sum(-1), 1)
        ref = ((att[:, :, None] * vu).sum(1)[:, None] * e).sum(-1)
        swapped = m.score_pairs(users, seq, items[:, [1, 0, 2]])
    assert torch.allclose(got, ref, atol=1e-6)
    assert not torch.allclose(swapped[:, [1, 0, 2]], got)                 # another label, another v_u


def test_conformance():
    check_plugin("model", "mind", epochs=1, batch_size=32)


def test_beats_a_random_ranking_on_a_small_funnel_world():
    reg = Registry.load()
    ds = reg.create("dataset", "synthetic", n_users=300, n_items=100, days=30, funnel=True, recall_size=20)
    split = reg.create("split", "funnel").split(ds, 0)
    torch.manual_seed(0)
    m = reg.create("model", "mind", epochs=4, batch_size=128, lr=3e-3, layers=[64, 32], sampling="ss_abc_random")
    m.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=CPU))
    test = split.test
    s = m.score_block(test.states, np.arange(test.n_states)).numpy()
    assert np.isfinite(s).all()
    targets = test.targets.toarray() > 0
    has = targets.any(1)
    top = np.argsort(-s, 1)[:, :20]
    recall = (np.take_along_axis(targets, top, 1).sum(1)[has] / targets.sum(1)[has]).mean()
    rnd = np.argsort(np.random.default_rng(0).random(s.shape), 1)[:, :20]
    rnd_recall = (np.take_along_axis(targets, rnd, 1).sum(1)[has] / targets.sum(1)[has]).mean()
    print(f"mind recall@20 {recall:.4f}, random {rnd_recall:.4f} (expected 0.20), {has.sum()} test users")
    assert recall > 0.2 + 0.05 and recall > rnd_recall + 0.05
