"""DMR's other CTR baselines (plugins/models/ctr_baselines.py): wide_deep, pnn and dien train on the synthetic
world's impressions as well as lr / din / dmr do, and their distinctive parts do what the papers say: the wide
part of Wide&Deep is LR, PNN's product layer is the pairwise inner products, DIEN's AUGRU and auxiliary loss."""
import copy

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from harness.ctr import run_ctr
from harness.model import FitContext
from harness.registry import Registry
from plugins.models.ctr_baselines import AUGRUCell, augru, inner_products, oldest_first
from plugins.models.ctr_models import LRNet

# small nets so the file runs in seconds on 2 cores; the defaults are the paper's 512-256-128
PARAMS = {"wide_deep": {"epochs": 4, "hidden": [64, 32]},
          "pnn": {"epochs": 4, "hidden": [64, 32]},
          "dien": {"epochs": 3, "hidden": [64, 32], "dim": 16, "gru_dim": 16}}


@pytest.fixture(scope="module")
def reg():
    return Registry.load()


@pytest.fixture(scope="module")
def world_split(reg):
    ds = reg.create("dataset", "synthetic", n_users=500, n_items=120, days=30.0, impressions=True)
    return ds, reg.create("split", "impressions", test_days=5).split(ds, 0)


@pytest.fixture(scope="module")
def fitted(reg, world_split):
    """{name: (model, run_ctr metrics, logged curves)}."""
    ds, split = world_split
    out = {}
    for name, params in PARAMS.items():
        model, curves = reg.create("model", name, **params), {}
        with threadpool_limits(1):
            model.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=torch.device("cpu"),
                log_metric=lambda k, v, s, c=curves: c.setdefault(k, []).append(v)))
            out[name] = (model, run_ctr(model, split, ds), curves)
    return out


def _batch(model, split, n=64):
    return model._tensors(split.test_impressions.take(np.arange(n)))


# ----------------------------------------------------------------------------- all three on the synthetic world
@pytest.mark.parametrize("name", list(PARAMS))
def test_baselines_approach_the_oracle_and_track_the_true_click_probability(fitted, name):
    """The bar of test_ctr's lr / din / dmr check: most (65%) of the oracle's AUC, predicted CTR ranked like the
    true click probability, calibrated."""
    _, r, curves = fitted[name]
    assert r["ctr/auc"] > 0.5 + 0.65 * (r["truth/ctr_auc_oracle"] - 0.5), r
    assert r["ctr/auc"] <= r["truth/ctr_auc_oracle"] + 0.02, r
    assert r["truth/ctr_spearman"] > 0.6, r
    assert 0.7 < r["ctr/calibration"] < 1.3, r
    assert curves["train/loss"][-1] < curves["train/loss"][0]
    assert ("train/aux_loss" in curves) == (name == "dien")


def test_the_baselines_are_registered_for_ctr_only(reg):
    for name in PARAMS:
        spec = reg.get("model", name)
        assert spec.tasks == ("ctr",)
    names = {p.name for p in reg.get("model", "dien").params}
    assert {"aux_weight", "gru_dim", "hidden", "dim", "max_len"} <= names
    assert {"cross_buckets", "cross_pooling"} <= {p.name for p in reg.get("model", "wide_deep").params}


# ----------------------------------------------------------------------------- Wide&Deep
def test_wide_deep_wide_part_is_lr(fitted, world_split):
    """logit = LR(x) + deep(x): an LRNet with the wide part's weights gives the logit once the deep output is 0."""
    model, _, _ = fitted["wide_deep"]
    net = model.net
    b = _batch(model, world_split[1])
    lr = LRNet(model)
    lr.load_state_dict(net.wide.state_dict())
    with torch.no_grad():
        wide, deep = lr(b)[0], net.deep_logit(b)
        assert torch.allclose(net(b)[0], wide + deep, atol=1e-5)
        assert wide.std() > 1e-3 and deep.std() > 1e-3                 # both parts were trained and vary
        assert net.wide.w_cross.weight.abs().max() > 0                    # the behaviour × target crosses learned
        no_deep = copy.deepcopy(net)
        no_deep.deep[-1].weight.zero_()
        no_deep.deep[-1].bias.zero_()
        assert torch.allclose(no_deep(b)[0], wide, atol=1e-6)


# ----------------------------------------------------------------------------- PNN
def test_pnn_product_layer_is_the_pairwise_inner_products(fitted, world_split):
    f = torch.tensor([[[1., 2.], [3., 4.], [5., 6.]],
                      [[1., 0.], [0., 1.], [2., -1.]]])
    # pairs (0, 1), (0, 2), (1, 2): 1·3 + 2·4, 1·5 + 2·6, 3·5 + 4·6; then 0, 2, -1
    assert inner_products(f).tolist() == [[11., 17., 39.], [0., 2., -1.]]
    assert inner_products(torch.zeros(5, 4, 3)).shape == (5, 6)
    model, _, _ = fitted["pnn"]
    net, b = model.net, _batch(model, world_split[1])
    with torch.no_grad():
        fields = net.fields(b)
        n = 2 + len(model.ctx_sizes)                                      # target, behaviours, context columns
        assert fields.shape == (64, n, model.dim)
        assert torch.equal(fields[:, 0], net.item(b["item"]))
        mask = (b["seq"] > 0).float()
        pooled = (net.item(b["seq"]) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        assert torch.allclose(fields[:, 1], pooled, atol=1e-6)
        assert net.mlp[0][0].in_features == n * model.dim + n * (n - 1) // 2


# ----------------------------------------------------------------------------- DIEN
def test_oldest_first_reverses_the_valid_prefix():
    seq = torch.tensor([[3, 5, 9, 0], [7, 0, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4]])
    assert oldest_first(seq).tolist() == [[9, 5, 3, 0], [7, 0, 0, 0], [0, 0, 0, 0], [4, 3, 2, 1]]


def test_augru_gate_and_masking():
    torch.manual_seed(0)
    cell = AUGRUCell(5, 4)
    x, h0 = torch.randn(3, 6, 5), torch.randn(3, 4)
    valid = torch.ones(3, 6, dtype=torch.bool)
    # a_t = 0: the attentional update gate is closed, the state never moves
    assert torch.equal(augru(cell, x, torch.zeros(3, 6), valid, h0), h0)
    # a_t = 1: a plain GRU step (torch's GRUCell, whose update gate z weights the old state: u = 1 − z)
    gru = torch.nn.GRUCell(5, 4)
    flip = torch.ones(12, 1)
    flip[4:8] = -1
    with torch.no_grad():
        cell.x2h.weight.copy_(gru.weight_ih * flip)
        cell.x2h.bias.copy_(gru.bias_ih * flip[:, 0])
        cell.h2h.weight.copy_(gru.weight_hh * flip)
        cell.h2h.bias.copy_(gru.bias_hh * flip[:, 0])
        assert torch.allclose(cell(x[:, 0], h0, torch.ones(3)), gru(x[:, 0], h0), atol=1e-6)
        # u' = a·u: h = h_prev + a·u ⊙ (h̃ − h_prev), i.e. the fraction a of the plain GRU's move
        a = torch.tensor([0.25, 0.5, 0.9])
        full = cell(x[:, 0], h0, torch.ones(3))
        assert torch.allclose(cell(x[:, 0], h0, a), h0 + a[:, None] * (full - h0), atol=1e-6)
    # invalid steps leave the state alone: what sits at padded positions cannot matter
    a = torch.rand(3, 6)
    valid[1, 2:] = False
    valid[2] = False
    out = augru(cell, x, a, valid, h0)
    x2 = x.clone()
    x2[1, 2:] = 100.0
    x2[2] = -100.0
    assert torch.equal(augru(cell, x2, a, valid, h0), out)
    assert torch.equal(out[2], h0[2])
    assert torch.allclose(out[1], augru(cell, x[1:2, :2], a[1:2, :2], valid[1:2, :2], h0[1:2])[0])


def test_dien_ignores_padding_and_follows_the_behaviour_order(fitted):
    model, _, _ = fitted["dien"]
    net = model.net
    with torch.no_grad():
        ec = net.emb.item(torch.tensor([7, 7]))
        short = net.interest(torch.tensor([[3, 5, 9, 0], [4, 0, 0, 0]]), ec)
        long = net.interest(torch.tensor([[3, 5, 9, 0, 0, 0, 0], [4, 0, 0, 0, 0, 0, 0]]), ec)
        assert torch.allclose(short, long, atol=1e-6)
        swapped = net.interest(torch.tensor([[9, 5, 3, 0], [4, 0, 0, 0]]), ec)
        assert not torch.allclose(short[0], swapped[0], atol=1e-4)          # an order model, not a bag
        assert torch.allclose(short[1], swapped[1])
        b = {"seq": torch.tensor([[3, 5, 0, 0]]), "item": torch.tensor([7]), "user": torch.tensor([1]),
             "ctx": torch.zeros(1, len(model.ctx_sizes), dtype=torch.long)}
        b2 = {**b, "seq": torch.tensor([[3, 5, 0, 0, 0, 0, 0, 0]])}
        assert torch.allclose(net(b)[0], net(b2)[0], atol=1e-6)
        empty = {**b, "seq": torch.zeros(1, 4, dtype=torch.long)}
        logit, aux = net(empty)
        assert aux is None and torch.isfinite(logit).all()


def test_dien_aux_loss_uses_only_the_valid_next_behaviours(fitted):
    model, _, curves = fitted["dien"]
    net = model.net
    assert curves["train/aux_loss"][0] > 0 and curves["train/aux_loss"][-1] < curves["train/aux_loss"][0]
    with torch.no_grad():
        torch.manual_seed(1)
        loss = net.aux_loss(torch.tensor([[4, 5, 0], [3, 0, 0], [0, 0, 0]]))
        assert loss > 0
        # by hand: oldest first the row is (5, 4): the extractor state after 5 must predict 4, not the negative
        torch.manual_seed(1)
        neg = torch.randint(1, model.n_items + 1, (1,))
        h = net.extractor(net.emb.item(torch.tensor([[5, 4]])))[0][0, 0]
        q = net.aux_proj(h)
        want = -(torch.nn.functional.logsigmoid(q @ net.emb.item.weight[4])
                 + torch.nn.functional.logsigmoid(-(q @ net.emb.item.weight[neg[0]])))
        assert torch.allclose(loss, want, atol=1e-6)
        # rows with fewer than two behaviours and extra padding add nothing
        torch.manual_seed(1)
        assert torch.allclose(net.aux_loss(torch.tensor([[4, 5, 0, 0, 0, 0]])), loss, atol=1e-6)
        assert net.aux_loss(torch.tensor([[4, 0], [0, 0]])) == 0
    m = copy.copy(model)
    m.aux_weight = 0.0
    net.m = m
    try:
        b = {"seq": torch.tensor([[3, 5]]), "item": torch.tensor([7]), "user": torch.tensor([1]),
             "ctx": torch.zeros(1, len(model.ctx_sizes), dtype=torch.long)}
        assert net(b, train=True)[1] is None                              # aux_weight 0: no auxiliary loss
    finally:
        net.m = model
