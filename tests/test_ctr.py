"""Task ctr: metrics against scikit-learn and hand-computed cases, the impressions split (no leakage), the
synthetic impressions layer (its click model), the CTR models (lr, din, dmr) and suites end to end."""
import numpy as np
import pytest
import torch
from conftest import tiny_suite
from sklearn.metrics import log_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from harness import api
from harness.ctr import ImpressionRows, auc, calibration, ctr_metrics, gauc, group_auc, logloss
from harness.data import Dataset, Interactions
from harness.errors import ConfigError, DataError
from harness.model import FitContext
from harness.registry import Registry
from harness.suite import build_suite
from plugins.splits import impressions as impressions_split

WORLD = {"name": "synthetic", "n_users": 300, "n_items": 80, "days": 30.0, "impressions": True}


@pytest.fixture(scope="module")
def reg():
    return Registry.load()


def _rows(user, label, seqs=None, time=None):
    n = len(user)
    seqs = seqs or [[] for _ in range(n)]
    ptr = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    flat = np.array([i for s in seqs for i in s], dtype=np.int64)
    return ImpressionRows(user=np.asarray(user), item=np.zeros(n, np.int64),
                          time=np.asarray(time if time is not None else np.full(n, 100.0)),
                          label=np.asarray(label), seq_ptr=ptr, seq_item=flat, seq_time=np.zeros(len(flat)))


# ----------------------------------------------------------------------------- metrics
def test_auc_and_logloss_match_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for n in (7, 50, 1000):
        y = rng.random(n) < 0.3
        y[:2] = [True, False]
        p = np.round(rng.random(n), 1)  # many ties
        assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert logloss(y, p) == pytest.approx(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-9)
    assert np.isnan(auc([1, 1], [0.2, 0.3]))


def test_gauc_by_hand_and_against_per_user_sklearn():
    # user 0: scores (pos .9, neg .1, neg .95) -> AUC 1/2; user 1: (pos .4, pos .4, neg .4) -> 1/2 (ties);
    # user 2: pos .3, neg .2 -> 1; user 3 only clicks -> left out. Weighted by impressions: (3·.5 + 3·.5 + 2·1)/8
    user = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3])
    y = np.array([1, 0, 0, 1, 1, 0, 1, 0, 1])
    p = np.array([.9, .1, .95, .4, .4, .4, .3, .2, .5])
    value, left_out = gauc(user, y, p)
    assert value == pytest.approx((3 * .5 + 3 * .5 + 2 * 1) / 8) and left_out == 1
    rng = np.random.default_rng(1)
    user, y, p = rng.integers(0, 30, 600), rng.random(600) < 0.4, np.round(rng.random(600), 2)
    groups, a, n = group_auc(user, y, p)
    for g, ag in zip(groups, a, strict=False):
        m = user == g
        want = roc_auc_score(y[m], p[m]) if 0 < y[m].sum() < m.sum() else np.nan
        assert (np.isnan(ag) and np.isnan(want)) or ag == pytest.approx(want, abs=1e-12)
    assert calibration([1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(2.0)
    m = ctr_metrics(_rows([0, 0, 1], [1, 0, 1]), np.array([0.8, 0.3, 0.5]))
    assert m["auc"] == 1.0 and m["gauc"] == 1.0 and m["n_users_without_both"] == 1 and m["n_clicks"] == 2


def test_rows_padded_most_recent_first_and_take():
    r = _rows([0, 1, 2], [0, 1, 0], seqs=[[5, 6, 7], [], [9]])
    assert r.padded(2).tolist() == [[7, 6], [-1, -1], [9, -1]]
    t = r.take(np.array([2, 0]))
    assert t.user.tolist() == [2, 0] and t.sequence(1).tolist() == [5, 6, 7]
    assert t.padded(4)[0].tolist() == [9, -1, -1, -1]


# ----------------------------------------------------------------------------- the impressions split
def _taobao_like():
    """raw_sample-style log: event click/impression, value = clk, feature pid; one organic-like 'buy' event."""
    user = np.array([0, 0, 0, 0, 1, 1, 1, 0, 1])
    item = np.array([1, 2, 3, 4, 1, 2, 3, 2, 4])
    time = np.array([1., 2., 2., 3., 1., 4., 9., 9.5, 10.]) * 86400
    event = np.array(["click", "impression", "click", "buy", "impression", "click", "impression", "click",
                      "click"], dtype=object)
    pid = np.array(["a", "b", "a", "a", "b", "b", "a", "a", "b"], dtype=object)
    x = Interactions(user=user, item=item, time=time, n_users=2, n_items=5, time_unit="s", event=event,
                     value=(event == "click").astype(np.int64), features={"pid": pid})
    return Dataset("toy", x, np.array(["u0", "u1"], dtype=object), np.array([f"i{i}" for i in range(5)], dtype=object))


def test_impressions_split_rows_labels_and_no_leakage():
    ds = _taobao_like()
    s = impressions_split.ImpressionsSplit(test_days=1.0, max_len=2).split(ds, 0)
    tr, te = s.train_impressions, s.test_impressions
    assert s.info["cut"] == pytest.approx(9 * 86400)
    assert tr.event_id.tolist() == [0, 1, 2, 4, 5] and te.event_id.tolist() == [6, 7, 8]  # 'buy' is no impression
    assert tr.label.tolist() == [1, 0, 1, 0, 1] and te.label.tolist() == [0, 1, 1]
    # the click at t=2 is not in the sequence of the impression at the same time; 'buy' is a behaviour;
    # a shown-but-not-clicked impression is not
    assert [tr.sequence(r).tolist() for r in range(len(tr))] == [[], [1], [1], [], []]
    assert [te.sequence(r).tolist() for r in range(len(te))] == [[2], [3, 4], [2]]   # max_len 2 keeps the latest
    assert set(te.context) == {"pid"} and te.context["pid"].tolist() == [0, 0, 1]
    assert s.train.event.tolist() == ["click", "click", "buy", "click"]   # ranking models train on behaviour only
    assert s.test.targets.toarray()[0].tolist() == [0, 0, 1, 0, 0]           # user 0 clicks item 2 in the window
    # the value column alone (no event column) also works: every event an impression, value > 0 a click
    x = ds.interactions
    ds2 = Dataset("v", Interactions(user=x.user, item=x.item, time=x.time, n_users=2, n_items=5, value=x.value),
                  ds.user_ids, ds.item_ids)
    assert impressions_split.ImpressionsSplit().split(ds2, 0).test_impressions.label.tolist() == [0, 1, 1]
    ds3 = Dataset("n", Interactions(user=x.user, item=x.item, time=x.time, n_users=2, n_items=5), ds.user_ids,
                  ds.item_ids)
    with pytest.raises(DataError, match="neither an event column"):
        impressions_split.ImpressionsSplit().split(ds3, 0)
    with pytest.raises(DataError, match="context column"):
        impressions_split.ImpressionsSplit(context=["slot"]).split(ds, 0)


def test_sequences_on_the_synthetic_world_are_exactly_the_earlier_behaviours(reg):
    ds = reg.create("dataset", "synthetic", **{k: v for k, v in WORLD.items() if k != "name"})
    s = reg.create("split", "impressions", test_days=5, max_len=8).split(ds, 0)
    x = ds.interactions
    beh = np.isin(x.event, ["organic", "click"])
    for rows in (s.train_impressions, s.test_impressions):
        owner = np.repeat(np.arange(len(rows)), rows.lengths)
        assert (rows.seq_time < rows.time[owner]).all()
        for r in np.random.default_rng(0).choice(len(rows), 40, replace=False):
            m = beh & (x.user == rows.user[r]) & (x.time < rows.time[r])
            assert rows.sequence(r).tolist() == x.item[m][-8:].tolist()
        assert np.array_equal(rows.label, x.event[rows.event_id] == "click")
    assert (x.time[s.train_impressions.event_id] < s.info["cut"]).all()
    assert (x.time[s.test_impressions.event_id] >= s.info["cut"]).all()


# ----------------------------------------------------------------------------- the synthetic impressions layer
def test_synthetic_impressions_follow_the_stated_click_model(reg):
    base = {k: v for k, v in WORLD.items() if k != "name"}
    ds = reg.create("dataset", "synthetic", n_requests=3000, **base)
    plain = reg.create("dataset", "synthetic", **{k: v for k, v in base.items() if k != "impressions"})
    x, t = ds.interactions, ds.truth
    org = x.event == "organic"
    assert np.array_equal(x.item[org], plain.interactions.item) and np.array_equal(x.time[org], plain.interactions.time)
    assert plain.interactions.event is None and plain.truth.click_prob is None
    exp = np.flatnonzero(~org)
    assert len(exp) == 3000 * 5 and np.isnan(t.click_prob[org]).all()
    p = t.click_probability(exp)
    # exact: recompute position_bias^slot · σ(a + b·log(|Y| p(y|x))) from p(y|x) at the organic history
    from harness.splits import states_from_events
    sample = exp[np.random.default_rng(0).choice(len(exp), 200, replace=False)]
    states = states_from_events(x.subset(org), x.user[sample], x.time[sample]).states
    py = t.item_probs(states)[np.arange(len(sample)), x.item[sample]]
    slot = x.features["slot"][sample]
    want = 0.7 ** slot / (1 + np.exp(-(-1.0 + np.log(t.n_items * py))))
    assert np.allclose(t.click_probability(sample), want, rtol=1e-9)
    # clicks are Bernoulli(p): observed vs expected clicks within 4 standard deviations, per slot
    clicked = x.event[exp] == "click"
    for s in range(5):
        m = x.features["slot"][exp] == s
        assert abs(clicked[m].sum() - p[m].sum()) < 4 * np.sqrt((p[m] * (1 - p[m])).sum())
    rate = [clicked[x.features["slot"][exp] == s].mean() for s in range(5)]
    assert rate[0] > rate[2] > rate[4]                      # the position effect shows


# ----------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def world_split(reg):
    ds = reg.create("dataset", "synthetic", n_users=500, n_items=120, days=30.0, impressions=True)
    return ds, reg.create("split", "impressions", test_days=5).split(ds, 0)


def _fit(reg, name, ds, split, model_out=None, **params):
    from threadpoolctl import threadpool_limits

    from harness.ctr import run_ctr

    model = reg.create("model", name, **params)
    with threadpool_limits(1):
        model.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=torch.device("cpu")))
        if model_out is not None:
            model_out[name] = model
        return run_ctr(model, split, ds)


@pytest.fixture(scope="module")
def fitted(reg, world_split):
    ds, split = world_split
    models = {}
    # dmr with 100 negatives: the default 2,000 (the paper's, for catalogues of millions) triples this fixture's time
    res = {name: _fit(reg, name, ds, split, models, epochs=4, **({"negatives": 100} if name == "dmr" else {}))
           for name in ("lr", "din", "dmr")}
    return models, res


def test_ctr_models_approach_the_oracle_and_track_the_true_click_probability(fitted):
    """On this small world (10k training impressions) lr, din and dmr all land within 0.02 AUC of each other
    (the ordering DMR > DIN > LR shows on larger worlds, see the issue note), so the check is against the truth:
    each gets most (65%) of the oracle's AUC and its predicted CTR ranks impressions like the true click probability."""
    _, res = fitted
    for name, r in res.items():
        assert r["ctr/auc"] > 0.5 + 0.65 * (r["truth/ctr_auc_oracle"] - 0.5), (name, r)
        assert r["ctr/auc"] <= r["truth/ctr_auc_oracle"] + 0.02, (name, r)
        assert r["truth/ctr_spearman"] > 0.6, (name, r)
        assert 0.7 < r["ctr/calibration"] < 1.3, (name, r)


def test_dmr_ranks_items_by_its_match_score(reg, world_split):
    """itemrec/userrec from (u, V′): r = uᵀv′ on the split's test states ranks the clicked items well and
    follows the true p(i | u) per state."""
    from harness.evaluate import ScoreSource, evaluate_full
    from harness.truth import truth_metrics

    ds, split = world_split
    # r trained against uniform negatives (the paper's background distribution with 2,000 negatives — the
    # default — learns a popularity-corrected r: on this 120-item world it ranks at recall@10 0.11, uniform 0.35)
    dmr = reg.create("model", "dmr", epochs=4, sampler="uniform", negatives=20)
    with threadpool_limits(1):
        dmr.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=torch.device("cpu")))
    u, v = dmr.factors(split.test.states)
    assert u.shape == (split.test.n_states, 32) and v.shape == (split.n_items, 32)
    seq = np.where(np.arange(50) < 3, np.array([4, 2, 7] + [0] * 47), 0)[None, :]
    want = (dmr.net.user_vector(torch.as_tensor(seq)) @ dmr.net.v_out.weight[1:].T).detach()
    from harness.splits import UserStates
    one = UserStates(user=np.array([0]), time=np.array([1.0]), hist_ptr=np.array([0, 3]),
                     hist_item=np.array([6, 1, 3]), hist_time=np.zeros(3))  # oldest first: latest is 3 (+1 = 4)
    got = torch.as_tensor(dmr.factors(one)[0]) @ torch.as_tensor(dmr.factors(one)[1]).T
    assert torch.allclose(got, want, atol=1e-6)
    src = ScoreSource(dmr, split.test, split.n_items, torch.device("cpu"))
    res = evaluate_full("itemrec", src, split.test, [10], {"recall": reg.get("metric", "recall")},
                        split.train.item_counts)
    assert res.metrics["recall_10"] > 0.3                    # 10 of 120 items at random: about 0.08
    truth = truth_metrics(ds, split.test, src, Registry.load().get("model", "dmr").score_kind)
    assert truth["truth/spearman_item_given_user_per_state"] > 0.4
    # the no_u2i ablation has no User-to-Item network: its spec serves ctr only, so an itemrec suite refuses it
    assert reg.get("model", "dmr").serves({"no_u2i": True}) == {"ctr"}
    suite = {"name": "t", "datasets": [{"name": "synthetic", "n_users": 50, "n_items": 20, "impressions": True}],
             "split": {"name": "impressions"}, "tasks": ["ctr", "itemrec"],
             "models": [{"name": "dmr", "no_u2i": True}]}
    with pytest.raises(ConfigError, match=r"no_u2i=True\): cannot serve itemrec"):
        build_suite(suite, reg)


@pytest.mark.parametrize("switch", ["no_u2i", "no_i2i", "no_aux", "no_pos", "double_embedding"])
def test_dmr_ablations_train_and_predict(reg, world_split, switch):
    ds, split = world_split
    out = _fit(reg, "dmr", ds, split, epochs=1, hidden=[32, 16], negatives=50, **{switch: True})
    assert 0 < out["ctr/auc"] < 1 and np.isfinite(out["ctr/logloss"]) and 0 < out["ctr/calibration"] < 10


def test_dmr_parts_follow_the_paper(reg, world_split):
    ds, split = world_split
    m = reg.create("model", "dmr", epochs=1, hidden=[16], negatives=7, user_embedding=True)
    curves = {}
    m.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=torch.device("cpu"),
                                        log_metric=lambda k, v, s: curves.setdefault(k, []).append(v)))
    assert "train/aux_loss" in curves and curves["train/aux_loss"][0] > 0
    net = m.net
    assert net.v_out is not None and net.v_out.weight.data_ptr() != net.emb.item.weight.data_ptr()  # V' ≠ V
    b = m._tensors(split.test_impressions.take(np.arange(64)))
    b["seq"][0] = 0                                   # an empty behaviour sequence still gets a finite logit
    with torch.no_grad():
        logit, aux = net(b)
        assert aux is None and torch.isfinite(logit).all()
        # u (Eq. 4) ignores padding: the same behaviours padded further give the same user vector
        seq = torch.tensor([[3, 5, 0, 0]])
        assert torch.allclose(net.user_vector(seq), net.user_vector(torch.tensor([[3, 5, 0, 0, 0, 0]])))
        assert net.aux_loss(torch.tensor([[3, 5, 0], [4, 0, 0]])) > 0   # only rows with >= 2 behaviours
    # L_NS's negatives come from the background distribution (Eq. 8): each item ∝ its training count + 1
    counts = np.bincount(split.train.item, minlength=split.train.n_items) + 1.0
    assert net.background[0] == 0 and np.allclose(net.background[1:].numpy(), counts / counts.sum(), atol=1e-7)
    assert reg.get("model", "dmr").schema.defaults()["negatives"] == 2000  # the paper's public-data setting
    torch.manual_seed(0)
    drawn = np.bincount(torch.multinomial(net.background, 200_000, replacement=True).numpy(),
                        minlength=len(counts) + 1)[1:]
    top = np.argsort(-counts)[:5]
    assert np.allclose(drawn[top] / 200_000, counts[top] / counts.sum(), rtol=0.1)
    # more negatives than items: the k draws as counts per item give the same loss in expectation as k gathered draws
    seq = torch.tensor([[3, 5, 9, 0], [4, 2, 0, 0]])
    k = 2 * net.m.n_items
    with torch.no_grad():
        net.m.negatives = k
        torch.manual_seed(1)
        counted = torch.stack([net.aux_loss(seq) for _ in range(300)])
        prefix, pos = seq[:, 1:], seq[:, 0]
        u = net.user_vector(prefix)
        draws = torch.multinomial(net.background, 300 * 2 * k, replacement=True).view(300, 2, k)
        s_pos = (u * net.out_embedding(pos)).sum(1)
        gathered = torch.stack([-(torch.nn.functional.logsigmoid(s_pos) + torch.nn.functional.logsigmoid(
            -torch.einsum("bd,bkd->bk", u, net.out_embedding(d))).sum(1)).mean() for d in draws])
        net.m.negatives = 7
    assert float(counted.mean()) == pytest.approx(float(gathered.mean()), rel=0.01)
    uniform = reg.create("model", "dmr", epochs=1, hidden=[16], negatives=7, sampler="uniform")
    uniform.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=torch.device("cpu")))
    d = reg.create("model", "dmr", epochs=1, hidden=[16], negatives=7, double_embedding=True)
    d.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=torch.device("cpu")))
    assert d.net.v_out is None and d.net.emb.item.weight.shape[1] == 64


def test_ctr_models_need_impressions(reg):
    ds = reg.create("dataset", "synthetic", n_users=60, n_items=20, days=20.0)
    split = reg.create("split", "temporal", horizon=5).split(ds, 0)
    with pytest.raises(DataError, match="split: {name: impressions}"):
        reg.create("model", "lr").fit(split.train, None, FitContext.for_split(split, ds, seed=0))


# ----------------------------------------------------------------------------- suites end to end
def test_ctr_suite_runs_end_to_end(workdir, reg):
    suite = tiny_suite(datasets=[{**WORLD, "n_users": 150, "n_items": 40}],
                       split={"name": "impressions", "test_days": 5},
                       tasks=["itemrec", "ctr"], metrics=["recall"],
                       models=[{"name": "item_pop"}, {"name": "lr", "epochs": 2},
                               {"name": "dmr", "epochs": 1, "hidden": [[32, 16]]}])
    frame = api.run(suite, registry=reg)
    assert (frame.status == "FINISHED").all(), frame.error.tolist()
    ctr = frame[frame["params.model"] != "item_pop"]
    for col in ("ctr/auc", "ctr/gauc", "ctr/logloss", "ctr/calibration", "ctr/n_users_without_both",
                "truth/ctr_spearman", "truth/ctr_auc_oracle"):
        assert ctr[f"metrics.{col}"].notna().all(), col
    pop = frame[frame["params.model"] == "item_pop"]
    assert pop["metrics.itemrec/recall_10"].notna().all() and pop["metrics.ctr/auc"].isna().all()
    # a ctr-only suite needs no ranking metrics; a ranking-only model there is an error; ctr without impressions fails
    ctr_split = {"datasets": [WORLD], "split": {"name": "impressions", "test_days": 5}}
    assert build_suite({k: v for k, v in tiny_suite(tasks=["ctr"], models=["lr"], **ctr_split).items()
                        if k != "metrics"}, reg)
    with pytest.raises(ConfigError, match="serves itemrec/userrec only"):
        build_suite({k: v for k, v in tiny_suite(tasks=["ctr"], models=["item_pop"], **ctr_split).items()
                     if k != "metrics"}, reg)
    with pytest.raises(ConfigError, match="ctr needs a split that yields impressions") as err:
        build_suite({k: v for k, v in tiny_suite(name="bad", tasks=["ctr"],
                                                 models=[{"name": "lr", "epochs": 1}]).items()
                     if k != "metrics"}, reg)
    assert "model 'lr' (epochs=1): requires impressions" in str(err.value)  # every problem at once


def test_impressions_split_on_the_taobao_ad_raw_sample_fixture():
    from pathlib import Path

    from plugins.datasets.taobao_ad import load_taobao_ad

    ds = load_taobao_ad(str(Path(__file__).parent.parent / "datasets" / "fixtures" / "taobao-ad-tiny"))
    s = impressions_split.ImpressionsSplit(test_days=1.0).split(ds, 0)
    x = ds.interactions
    assert len(s.train_impressions) + len(s.test_impressions) == len(x) == 8
    for rows in (s.train_impressions, s.test_impressions):
        assert np.array_equal(rows.label, x.value[rows.event_id])          # label = clk
        assert set(rows.context) == {"pid"}
        for r in range(len(rows)):                                         # sequence = this user's earlier clicks
            m = (x.user == rows.user[r]) & (x.time < rows.time[r]) & (x.value == 1)
            assert sorted(rows.sequence(r).tolist()) == sorted(x.item[m].tolist())
    te = s.test_impressions
    assert te.label[np.argsort(te.time)].tolist() == [0, 0, 0, 1] and s.info["n_test_impressions"] == 4


def test_the_dmr_suite_validates(reg):
    from pathlib import Path

    from harness.suite import load_suite

    s = load_suite(Path(__file__).parent.parent / "suites" / "dmr.yaml", reg)
    assert len(s.cells) == 11 * 2 * 5 and not [c for c in s.cells if c.skip_reason]   # methods x datasets x seeds
    assert {c.labels["model"] for c in s.cells} == {"LR", "Wide&Deep", "PNN", "DIN", "DIEN", "DMR", "DMR I2I",
                                                   "DMR U2I", "DMR-NO-AM", "DMR-NO-PE", "DMR-Double"}
    for name in ("dmr_match", "rim", "rim_matching"):
        assert load_suite(Path(__file__).parent.parent / "suites" / f"{name}.yaml", reg).cells


@pytest.mark.slow
def test_dmr_beats_lr_and_din_on_the_synthetic_impressions(reg):
    """Issue 7's check at the dmr suite's scale (2,000 users, 300 items, 5 epochs, paper settings), seeds 0-2:
    DMR's mean AUC above DIN's and LR's (suite, 5 seeds: DMR .7160, DIN .7121, LR .7032), and its predicted
    CTR follows the true click probability more closely than LR's."""
    from threadpoolctl import threadpool_limits

    from harness.ctr import run_ctr

    ds = reg.create("dataset", "synthetic", n_users=2000, n_items=300, days=30.0, impressions=True)
    res = {m: [] for m in ("lr", "din", "dmr")}
    for seed in (0, 1, 2):
        split = reg.create("split", "impressions", test_days=5, max_len=50).split(ds, seed)
        for name in res:
            model = reg.create("model", name, epochs=5)
            with threadpool_limits(1):
                model.fit(split.train, None, FitContext.for_split(split, ds, seed=seed, device=torch.device("cpu")))
            res[name].append(run_ctr(model, split, ds))
    auc = {m: np.mean([r["ctr/auc"] for r in rs]) for m, rs in res.items()}
    assert auc["dmr"] > auc["din"] + 0.001 and auc["dmr"] > auc["lr"] + 0.005, auc
    rho = {m: np.mean([r["truth/ctr_spearman"] for r in rs]) for m, rs in res.items()}
    assert rho["dmr"] > rho["lr"], rho
