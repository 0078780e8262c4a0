"""GRU4Rec (Hidasi et al. 2016; Hidasi & Karatzoglou 2018) and NextItNet (Yuan et al. 2019), issue 16.

Losses against a direct numpy computation of the 2018 paper's formulas and a hand-computed case; the
session-parallel schedule and hidden-state resets on hand-built sequences; NextItNet's causality and receptive field;
both models against item_pop on a synthetic world with strong first-order transitions."""
import math

import numpy as np
import pytest
import torch

from harness.evaluate import ScoreSource, evaluate_full
from harness.model import FitContext
from harness.registry import Registry
from harness.testing import check_plugin
from plugins.models import gru4rec as g4r
from plugins.models import nextitnet as nin

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def reg():
    names = Registry.load().names("model")
    return Registry.load() if {"gru4rec", "nextitnet"} <= set(names) else Registry.load(extra=[g4r, nin])


# ------------------------------------------------------------------------------------------- conformance

def test_gru4rec_passes_the_conformance_kit(reg):
    check_plugin("model", "gru4rec", registry=reg, epochs=3, hidden=16, n_sample=32, batch_size=16, lr=0.1)


def test_nextitnet_passes_the_conformance_kit(reg):
    check_plugin("model", "nextitnet", registry=reg, epochs=3, factors=16, blocks=1, batch_size=16, lr=3e-3)


# ------------------------------------------------------------------------------------------- losses

def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def _reference(r, bpreg):
    """TOP1-max and BPR-max per row written from the 2018 paper: s_j = softmax over the negatives j != i."""
    top1, bpr = [], []
    for i, row in enumerate(r):
        neg = [j for j in range(len(row)) if j != i]
        z = sum(math.exp(row[j]) for j in neg)
        s = {j: math.exp(row[j]) / z for j in neg}
        top1.append(sum(s[j] * (_sig(row[j] - row[i]) + _sig(row[j] ** 2)) for j in neg))
        bpr.append(-math.log(sum(s[j] * _sig(row[i] - row[j]) for j in neg)) + bpreg * sum(s[j] * row[j] ** 2
                                                                                             for j in neg))
    return np.array(top1), np.array(bpr)


def test_top1_max_and_bpr_max_match_the_papers_formulas():
    # one row, one negative: s = [0, 1]; TOP1-max = σ(0 − 1) + σ(0²), BPR-max = −log σ(1 − 0) + λ·0²
    r1 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert g4r.top1_max(r1).item() == pytest.approx(_sig(-1.0) + 0.5, abs=1e-12)
    assert g4r.bpr_max(r1, 2.0).item() == pytest.approx(-math.log(_sig(1.0)), abs=1e-12)
    # 3 rows (targets on the diagonal), 2 sampled columns
    r = np.array([[2.0, -1.0, 0.5, 0.3, -0.2],
                  [0.1, 0.4, 1.5, -0.7, 0.0],
                  [-0.3, 0.8, -1.2, 1.1, 0.6]])
    top1, bpr = _reference(r, bpreg=0.7)
    rt = torch.tensor(r)
    np.testing.assert_allclose(g4r.top1_max(rt).numpy(), top1, rtol=1e-12)
    np.testing.assert_allclose(g4r.bpr_max(rt, 0.7).numpy(), bpr, rtol=1e-12)
    # cross-entropy: −log softmax over target and negatives
    ce = [-(r[i, i] - math.log(np.exp(r[i]).sum())) for i in range(3)]
    np.testing.assert_allclose(g4r.cross_entropy(rt).numpy(), ce, rtol=1e-12)
    # an excluded column (a copy of the row's target) drops out of the negatives
    excl = torch.zeros(3, 5, dtype=torch.bool)
    excl[0, 3] = True
    keep = [0, 1, 2, 4]
    top1_x, bpr_x = _reference(r[:1, keep], bpreg=0.7)
    assert g4r.top1_max(rt, excl)[0].item() == pytest.approx(top1_x[0], rel=1e-12)
    assert g4r.bpr_max(rt, 0.7, excl)[0].item() == pytest.approx(bpr_x[0], rel=1e-12)
    np.testing.assert_allclose(g4r.top1_max(rt, excl)[1:].numpy(), top1[1:], rtol=1e-12)


# ------------------------------------------------------------------------------------------- session-parallel batches

def test_session_parallel_schedule_on_hand_built_sequences():
    """A=[0,1,2,3], B=[4,5], C=[6,7,8], D=[9] (one event: no pair), E=[10,11]; two lanes. Lane 0 reads A for three
    steps; lane 1 reads B, frees at step 1 and takes C; at step 3 both lanes are free and E goes to lane 0."""
    seqs = [[0, 1, 2, 3], [4, 5], [6, 7, 8], [9], [10, 11]]
    ptr = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    inp, out, reset = g4r.session_parallel(ptr, np.concatenate(seqs), 2)
    np.testing.assert_array_equal(inp, [[0, 4], [1, 6], [2, 7], [10, -1]])
    np.testing.assert_array_equal(out, [[1, 5], [2, 7], [3, 8], [11, -1]])
    np.testing.assert_array_equal(reset, [[True, True], [False, True], [False, False], [True, False]])


def test_hidden_state_is_carried_within_a_sequence_and_reset_at_a_switch():
    torch.manual_seed(0)
    net = g4r.GRU4RecNet(12, 6, 1, 0.0, 0.0).eval()
    seqs = [[0, 1, 2, 3], [4, 5], [6, 7, 8], [9], [10, 11]]
    ptr = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    inp, out, reset = (torch.as_tensor(a) for a in g4r.session_parallel(ptr, np.concatenate(seqs), 2))

    def fresh(items):  # the GRU's output after reading `items` from a zero state
        o, _ = net.gru(net.W[torch.tensor(items)][None])
        return o[0, -1]

    H = torch.full((1, 2, 6), 5.0)                        # garbage: every lane starts with a reset
    with torch.no_grad():
        outs = []
        for t in range(len(inp)):
            lanes = (out[t] >= 0).nonzero()[:, 0]
            o, H = g4r.advance(net, H, inp[t], reset[t], None if len(lanes) == 2 else lanes)
            outs.append(o)
        torch.testing.assert_close(outs[2][0], fresh([0, 1, 2]))   # lane 0 carried through A
        torch.testing.assert_close(outs[2][1], fresh([6, 7]))      # lane 1 reset when C replaced B
        torch.testing.assert_close(outs[3][0], fresh([10]))        # lane 0 reset when E replaced A
        assert not torch.allclose(outs[3][0], fresh([0, 1, 2, 10]))  # what carrying A's state would give


# ------------------------------------------------------------------------------------------- NextItNet convolutions

def test_nextitnet_is_causal_and_its_receptive_field_matches_the_dilations():
    torch.manual_seed(0)
    enc = nin.NextItNetEncoder(30, 8, (1, 2), 3, 1).eval()   # convolutions of dilation 1, 2, 2, 4
    R = 1 + 2 * (1 + 2 + 2 + 4)
    assert enc.receptive_field == R == 19
    tok = torch.randint(1, 30, (1, 40))
    with torch.no_grad():
        base = enc(tok)[0]
        for p in (5, 20, 30):                                # a later item never changes earlier outputs
            t2 = tok.clone()
            t2[0, p] = tok[0, p] % 29 + 1
            out = enc(t2)[0]
            torch.testing.assert_close(out[:p], base[:p], rtol=0, atol=0)
            assert not torch.allclose(out[p], base[p])
        t = 39                                               # output t reads t − R + 1 but not t − R
        for p, seen in ((t - R + 1, True), (t - R, False)):
            t2 = tok.clone()
            t2[0, p] = tok[0, p] % 29 + 1
            assert (not torch.allclose(enc(t2)[0, t], base[t], rtol=0, atol=0)) == seen


def test_nextitnet_dropout_acts_in_training_only():
    torch.manual_seed(0)
    enc = nin.NextItNetEncoder(30, 8, (1, 2), 3, 1, dropout=0.5)
    tok = torch.randint(1, 30, (2, 12))
    with torch.no_grad():
        assert not torch.allclose(enc.train()(tok), enc(tok))          # a fresh mask per call
        torch.testing.assert_close(enc.eval()(tok), enc(tok), rtol=0, atol=0)
        plain = nin.NextItNetEncoder(30, 8, (1, 2), 3, 1)
        plain.load_state_dict(enc.state_dict())                       # dropout has no weights
        torch.testing.assert_close(enc(tok), plain.eval()(tok), rtol=0, atol=0)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="dropout"):
            nin.NextItNet(dropout=bad)


# ------------------------------------------------------------------------------------------- learning

def test_both_beat_item_pop_on_a_world_with_strong_first_order_transitions(reg):
    """dim 4 item vectors, drift 3 and flat popularity: the last item predicts the next one far better than
    popularity does (leave-one-out, NDCG@10 with seen items excluded, as the harness evaluates)."""
    ds = reg.create("dataset", "synthetic", n_users=300, n_items=100, drift=3.0, pop_sigma=0.3, dim=4, seed=0)
    split = reg.create("split", "leave_one_out").split(ds, 0)
    ndcg = {"ndcg": reg.get("metric", "ndcg")}
    got = {}
    runs = [("item_pop", "item_pop", {}), ("nextitnet", "nextitnet", dict(epochs=5, batch_size=16, lr=3e-3))] + [
        (loss, "gru4rec", dict(epochs=2, loss=loss)) for loss in g4r.LOSSES]
    for key, name, kw in runs:
        m = reg.create("model", name, **kw)
        m.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=CPU))
        res = evaluate_full("itemrec", ScoreSource(m, split.test, split.n_items, CPU), split.test, [10], ndcg,
                            split.train.item_counts)
        got[key] = res.metrics["ndcg_10"]
    # measured: item_pop .081; nextitnet .378; gru4rec cross_entropy .400, bpr_max .331, top1_max .345
    for key in ("nextitnet",) + g4r.LOSSES:
        assert got[key] > 2 * got["item_pop"], got


def _logq_reference(s_all, y, cand, shift, exclude_copies):
    """Per row: −log softmax over the columns (score of column c: s[row, cand[c]] − shift[c]) at the row's own
    column; with exclude_copies the other columns holding the row's target item are dropped."""
    out = []
    for i in range(len(y)):
        cols = [c for c in range(len(cand)) if c == i or not (exclude_copies and cand[c] == y[i])]
        z = [s_all[i, cand[c]] - shift[c] for c in cols]
        out.append(-(z[cols.index(i)] - math.log(sum(math.exp(v) for v in z))))
    return np.array(out)


@pytest.mark.parametrize("exclude_copies", [True, False])
def test_logq_corrected_cross_entropy_matches_a_hand_computation_on_both_paths(exclude_copies):
    torch.manual_seed(0)
    m = g4r.GRU4Rec(hidden=4, logq=1.0, sample_alpha=0.5, exclude_copies=exclude_copies)
    m.net = g4r.GRU4RecNet(5, 4, 1, 0.0, 0.0)
    m.log_count = torch.tensor([5.0, 1.0, 2.0, 9.0, 3.0]).log()
    o = torch.randn(3, 4)
    y, extra = torch.tensor([3, 0, 3]), torch.tensor([3, 1, 1, 4])        # a copy of a target among the samples
    cand = torch.cat([y, extra])
    shift = m.logq_shift(y, extra)
    want_shift = torch.cat([m.log_count[y], 0.5 * m.log_count[extra]])
    assert torch.allclose(shift, want_shift)
    s_all = (o @ m.net.W.T + m.net.b).detach().numpy()
    ref = _logq_reference(s_all, y.tolist(), cand.tolist(), shift.tolist(), exclude_copies)
    fast = m.cross_entropy_all(o, y, cand, shift).detach().numpy()
    r = m.net.scores(o, cand) - shift[None, :]
    rows = m.row_loss(r, cand[None, :] == y[:, None] if exclude_copies else None).detach().numpy()
    np.testing.assert_allclose(fast, ref, rtol=1e-5)
    np.testing.assert_allclose(rows, ref, rtol=1e-5)
    plain = m.cross_entropy_all(o, y, cand).detach().numpy()     # no correction: a different loss
    assert np.abs(plain - ref).max() > 1e-3
    np.testing.assert_allclose(plain, _logq_reference(s_all, y.tolist(), cand.tolist(), [0.0] * len(cand),
                                                      exclude_copies), rtol=1e-5)
    m.logq = 0.0
    assert m.logq_shift(y, extra) is None
