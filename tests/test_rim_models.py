"""RIM's models (issue 6): sequence item models p(y|x), the intensity priors λ(x) and their product (Eq. 5).

Checked against hand-computed cases, the synthetic world's truth and simulator, and tick (where installed)."""
import numpy as np
import pytest
import scipy.stats
import torch
from conftest import tiny_suite

from harness import api
from harness.data import Interactions
from harness.model import FitContext
from harness.registry import Registry
from harness.splits import UserStates
from plugins.datasets.world import hawkes_times
from plugins.models import sequence
from plugins.models.intensity import HawkesPrior, PopPrior, fit_hawkes, hawkes_design, hawkes_neg_loglik, kernel_decays
from plugins.models.sequence import IntensityRecommender, state_inputs, windows

CPU = torch.device("cpu")
NAMES = ["rnn", "sasrec"] + [f"{a}_{p}" for a in ("rnn", "sasrec") for p in ("pop", "hawkes", "hp")]


@pytest.fixture(scope="module")
def reg():
    names = Registry.load().names("model")
    return Registry.load() if "rnn" in names else Registry.load(extra=[sequence])


def _states(users, cuts, hists, times=None):
    lens = [len(h) for h in hists]
    ptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    items = np.concatenate([np.asarray(h, np.int64) for h in hists]) if sum(lens) else np.zeros(0, np.int64)
    if times is None:
        times = np.concatenate([np.arange(n, dtype=np.float64) for n in lens]) if sum(lens) else np.zeros(0)
    return UserStates(user=np.asarray(users, np.int64), time=np.asarray(cuts, np.float64), hist_ptr=ptr,
                      hist_item=items, hist_time=np.asarray(times, np.float64))


# ------------------------------------------------------------------------------------------- Hawkes likelihood

def test_hawkes_loglik_matches_a_hand_computed_case():
    t, end, decays = np.array([1.0, 2.0, 2.5]), 4.0, np.array([0.5, 5.0])
    mu, alpha = 0.4, np.array([0.3, 0.2])
    ll = 0.0
    for i, ti in enumerate(t):
        ll += np.log(mu + sum(a * b * np.exp(-b * (ti - tj))
                              for a, b in zip(alpha, decays, strict=False) for tj in t[:i]))
    ll -= mu * end + sum(a * (1 - np.exp(-b * (end - tj))) for a, b in zip(alpha, decays, strict=False) for tj in t)
    G, I = hawkes_design(np.array([0, 3]), t, np.array([end]), decays, onset=False)
    assert hawkes_neg_loglik(np.r_[mu, alpha], G, I) == pytest.approx(-ll, rel=1e-12)
    # the onset column: an extra kernel from time 0, a_r β_r e^{-β_r t}, integrated to a_r (1 - e^{-β_r end})
    G, I = hawkes_design(np.array([0, 3]), t, np.array([end]), decays, onset=True)
    np.testing.assert_allclose(G[:, 3:], decays[None, :] * np.exp(-decays[None, :] * t[:, None]))
    np.testing.assert_allclose(I[3:], 1 - np.exp(-decays * end))


def test_hawkes_fit_recovers_the_synthetic_worlds_simulated_parameters():
    """Simulate with the synthetic world's own Hawkes simulator (known μ, α, β) and recover them."""
    rng = np.random.default_rng(0)
    n, mu, alpha, beta, T = 400, 0.5, 0.5, 2.0, 100.0
    rep, t = hawkes_times(rng, np.full(n, mu), np.full(n, alpha), beta, np.zeros(n), np.full(n, T), np.zeros(n))
    order = np.lexsort((t, rep))
    ptr = np.concatenate([[0], np.cumsum(np.bincount(rep, minlength=n))])
    G, I = hawkes_design(ptr, t[order], np.full(n, T), np.array([beta]), onset=False)
    theta = fit_hawkes(G, I, C=1e6)
    assert theta[0] == pytest.approx(mu, rel=0.08) and theta[1] == pytest.approx(alpha, rel=0.08), theta
    # with 50 log-spaced kernels the excitation mass Σ α_r is still the branching ratio
    G, I = hawkes_design(ptr, t[order], np.full(n, T), kernel_decays(50, 1e-3, 100.0), onset=False)
    theta = fit_hawkes(G, I, C=1e6)
    assert theta[0] == pytest.approx(mu, rel=0.1) and theta[1:].sum() == pytest.approx(alpha, rel=0.1), theta


def test_hawkes_kernel_ranges_paper_and_code():
    """RIM Sec. 4.2: half-lives log-spaced from 1e-3 to 10·t_max horizons, t_max the longest training history's
    span (here user 1: days 2 → 14 with a 4-day horizon, 3 horizons); `code`: time constants 1e-6 … 10 horizons."""
    x = Interactions(user=np.array([0, 0, 1, 1, 1]), item=np.array([0, 1, 0, 1, 2]),
                     time=np.array([0.0, 5.0, 2.0, 9.0, 14.0]), n_users=2, n_items=3, time_unit="day")
    ctx = FitContext(split_info={"horizon_days": 4.0})
    paper = HawkesPrior(n_kernels=5)
    paper.fit(x, ctx)
    assert paper.t_max == pytest.approx(3.0)
    half_lives = np.log(2.0) / paper.decays
    assert half_lives[0] == pytest.approx(1e-3) and half_lives[-1] == pytest.approx(30.0)
    assert np.allclose(np.diff(np.log(half_lives)), np.log(30.0 / 1e-3) / 4)
    code = HawkesPrior(n_kernels=5, kernel_range="code")
    code.fit(x, ctx)
    assert 1.0 / code.decays[0] == pytest.approx(1e-6) and 1.0 / code.decays[-1] == pytest.approx(10.0)
    assert not hasattr(code, "t_max")
    with pytest.raises(Exception, match="kernel_range must be one of paper, code"):
        HawkesPrior(kernel_range="both")


def _tick():
    tick_hawkes = pytest.importorskip("tick.hawkes")
    try:
        tick_hawkes.HawkesSumExpKern(np.array([1.0]))
    except AttributeError as e:  # tick without numpydoc
        pytest.skip(f"tick's learners do not work here ({e}); pip install numpydoc")
    return tick_hawkes


def test_hawkes_matches_tick_likelihood_simulator_and_fit():
    tick_hawkes = _tick()
    from tick.hawkes.model import ModelHawkesSumExpKernLogLik

    from plugins.models.intensity import fit_hawkes_tick

    decays, T = np.array([0.5, 5.0]), 100.0
    seqs = []
    for s in range(40):
        sim = tick_hawkes.SimuHawkesSumExpKernels(adjacency=np.array([[[0.3, 0.3]]]), decays=decays, baseline=[0.4],
                                                  end_time=T, seed=s + 1, verbose=False)
        sim.simulate()
        seqs.append(sim.timestamps[0])
    ptr = np.concatenate([[0], np.cumsum([len(x) for x in seqs])])
    t, end = np.concatenate(seqs), np.full(len(seqs), T)
    G, I = hawkes_design(ptr, t, end, decays, onset=False)
    # tick's loss is -loglik/N shifted by the constant Σ end_time
    model = ModelHawkesSumExpKernLogLik(decays)
    model.fit([[x] for x in seqs], end_times=end)
    for th in (np.array([0.4, 0.3, 0.3]), np.array([0.1, 0.0, 0.7])):
        assert model.loss(th) * len(t) + end.sum() == pytest.approx(hawkes_neg_loglik(th, G, I), rel=1e-9)
    ours = fit_hawkes(G, I)
    np.testing.assert_allclose(ours, [0.4, 0.3, 0.3], atol=0.08)           # recovers the simulator's parameters
    np.testing.assert_allclose(ours, fit_hawkes_tick(ptr, t, end, decays, onset=False), atol=0.01)  # = tick's fit
    # with the onset channel (the authors' setting) our optimum is at least as good as tick's under tick's own loss
    G, I = hawkes_design(ptr, t, end, decays, onset=True)
    ours, theirs = fit_hawkes(G, I), fit_hawkes_tick(ptr, t, end, decays, onset=True)
    assert hawkes_neg_loglik(ours, G, I) <= hawkes_neg_loglik(theirs, G, I) + 1e-6


# ------------------------------------------------------------------------------------------- Figure 2

class FixedItemModel(IntensityRecommender):
    """p(y = D | x) of Figure 2, with a real prior and the real combination λ(x, y) = λ(x) p(y | x)."""

    def __init__(self, probs, **kw):
        super().__init__(**kw)
        self.probs = torch.as_tensor(probs, dtype=torch.float64)

    def fit(self, train, loss, ctx):
        self.prior.fit(train, ctx)
        self.n_items = self.probs.shape[1]

    def represent(self, states, rows=None):
        rows = np.arange(len(states)) if rows is None else rows
        logp = torch.log(self.probs[torch.as_tensor(states.user[rows])]).float()
        return logp, torch.zeros(len(rows))  # h = log p (one-hot item "embeddings" below), lse = 0

    def factors(self, states):
        h, lse = self.represent(states)
        c = torch.as_tensor(self.log_prior(states), dtype=torch.float32) - lse
        n, m = h.shape
        return torch.cat([h, c[:, None]], 1), torch.cat([torch.eye(m), torch.ones(m, 1)], 1)


def test_bayesian_paradox_of_figure_2():
    A, B, C, D = 0, 1, 2, 3
    # users 0: [A, B]; 1: [C]; 2..4: nothing in the last week (the 60% of inactive states)
    probs = np.zeros((5, 4))
    probs[:, D] = [0.4, 0.8, 0.3, 0.3, 0.3]
    probs[:, :D] = (1 - probs[:, D:]) / 3
    states = _states([0, 1, 2, 3, 4], [9.0] * 5, [[A, B], [C], [], [], []])
    model = FixedItemModel(probs, arch="gru", prior="pop", dropout=0.3, lr=0.003)
    model.fit(None, None, FitContext())
    u, v = model.factors(states)
    mtpp = torch.exp(u @ v.T)[:, D].numpy()
    # Bayes rule: p(x | y=D) ∝ p(D | x) p(x), p(x) the share of each kind of state
    p_x = np.array([0.2, 0.2, 0.6])
    bayes = probs[[0, 1, 2], D] * p_x
    np.testing.assert_allclose(bayes, [0.08, 0.16, 0.18])
    assert list(np.argsort(-bayes)) == [2, 1, 0]                       # Bayes: ∅ > [C] > [A, B]
    np.testing.assert_allclose(mtpp[:3], [2 * 0.4, 1 * 0.8, 0.01 * 0.3], rtol=1e-5)  # λ(x) p(D|x), μ = 0.01
    assert mtpp[0] == pytest.approx(mtpp[1], rel=1e-5) and min(mtpp[:2]) > mtpp[2]  # MTPP: [A, B] = [C] > ∅


# ------------------------------------------------------------------------------------------- sequence models

def test_windows_make_every_training_event_a_target_once_after_its_predecessor():
    items = np.array([5, 6, 7, 8, 9, 1, 2, 3])
    ptr = np.array([0, 5, 5, 8])          # sequences [5..9], [], [1, 2, 3]
    inp, tgt = windows(ptr, items, max_len=3, bos=11)
    got = sorted(int(x) for x in tgt[tgt >= 0])
    assert got == sorted(items.tolist())
    pairs = {(int(a), int(b)) for a, b in zip(inp[tgt >= 0], tgt[tgt >= 0], strict=False)}
    assert pairs == {(11, 5), (6, 6), (7, 7), (8, 8), (9, 9), (11, 1), (2, 2), (3, 3)}  # token = item + 1
    assert ((inp == 0) == (tgt < 0)).all()
    tok, n_tok = state_inputs(_states([0, 1], [9, 9], [[5, 6, 7, 8, 9], []]), np.array([0, 1]), 3, 11)
    assert tok.tolist() == [[8, 9, 10], [11, 0, 0]] and n_tok.tolist() == [3, 1]


def test_strided_windows_train_each_target_once_with_at_least_max_len_minus_stride_context():
    rng = np.random.default_rng(3)
    lens = rng.integers(1, 40, 30)
    ptr = np.concatenate([[0], np.cumsum(lens)])
    items = rng.integers(0, 50, ptr[-1])
    max_len, stride, bos = 12, 5, 51
    inp, tgt = windows(ptr, items, max_len=max_len, bos=bos, stride=stride)
    assert sorted(tgt[tgt >= 0].tolist()) == sorted(items.tolist())          # every target exactly once
    assert (tgt >= 0).sum() == len(items)
    for row_in, row_tgt in zip(inp.numpy(), tgt.numpy(), strict=False):
        real = row_in[row_in > 0]
        for j in np.flatnonzero(row_tgt >= 0):
            # the context of a trained position is the window's inputs up to it: at least max_len - stride
            # earlier items, unless the window starts at the sequence's beginning (bos)
            assert j + 1 >= max_len - stride + 1 or real[0] == bos
    # windows read the sequence in order: input at j+1 is the target at j
    both = (tgt[:, :-1] >= 0) & (inp[:, 1:] > 0)
    assert (inp[:, 1:][both] == tgt[:, :-1][both] + 1).all()
    # stride >= max_len is the disjoint cut
    a, b = windows(ptr, items, max_len, bos, stride=max_len), windows(ptr, items, max_len, bos, stride=None)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_early_stopping_keeps_the_best_validation_epoch_and_scores_as_the_harness_does(reg):
    """The validation NDCG@10 that drives early stopping is the harness's itemrec NDCG@10 (seen items excluded),
    and the weights kept are those of the best logged epoch."""
    from harness.evaluate import ScoreSource, evaluate_full

    ds = reg.create("dataset", "synthetic", n_users=300, n_items=60, days=30.0, seed=4)
    split = reg.create("split", "leave_one_out").split(ds, 0)
    log = []
    m = reg.create("model", "rnn", epochs=12, patience=2, factors=16, lr=0.02)
    m.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=CPU,
                                        log_metric=lambda k, v, s: log.append((k, v, s))))
    curve = [(s, v) for k, v, s in log if k == "valid/ndcg_10"]
    assert len(curve) == len(m.epoch_times) >= 3
    best_step, best = max(curve, key=lambda sv: (sv[1], -sv[0]))
    assert m.best_epoch == best_step and ("train/best_epoch", float(best_step), 0) in log
    if len(curve) < 12:                              # stopped early: `patience` epochs without improvement
        assert len(curve) - 1 - best_step == 2
    ndcg_spec = {"ndcg": reg.get("metric", "ndcg")}
    res = evaluate_full("itemrec", ScoreSource(m, split.valid, split.n_items, CPU), split.valid, [10], ndcg_spec,
                        split.train.item_counts)
    assert m.valid_ndcg(split.valid) == pytest.approx(res.metrics["ndcg_10"], abs=1e-9) == pytest.approx(best, abs=1e-6)
    # without a validation set (or with patience null) the fit runs every epoch
    m2 = reg.create("model", "rnn", epochs=3, patience=None, factors=8)
    m2.fit(split.train, None, FitContext.for_split(split, ds, seed=0, device=CPU))
    assert len(m2.epoch_times) == 3 and m2.best_epoch is None


@pytest.mark.parametrize("name", ["rnn", "sasrec"])
def test_sequence_models_learn_a_successor_rule_and_score_unseen_users(reg, name):
    rng = np.random.default_rng(0)
    n_users, n_items, length = 80, 12, 25
    start = rng.integers(0, n_items, n_users)
    item = ((start[:, None] + np.arange(length)[None, :]) % n_items).ravel()
    user = np.repeat(np.arange(n_users), length)
    train = Interactions(user=user, item=item, time=np.tile(np.arange(length, dtype=float), n_users),
                         n_users=n_users + 1, n_items=n_items, time_unit="day")
    model = reg.create("model", name, epochs=30, factors=16, dropout=0.0, lr=0.01, max_len=10)
    model.fit(train, None, FitContext(seed=0, device=CPU))
    # states of the never-seen user n_users: scored from their own histories
    hists = [[(k + j) % n_items for j in range(3)] for k in range(n_items)]
    states = _states([n_users] * n_items, [100.0] * n_items, hists)
    logp = model.log_item_probs(states)
    np.testing.assert_allclose(torch.logsumexp(logp, 1).numpy(), 0.0, atol=1e-4)
    top = logp.argmax(1).numpy()
    assert (top == (np.arange(n_items) + 3) % n_items).mean() >= 0.9, top
    u, v = model.factors(states)                       # factors give the same scores in blocks
    np.testing.assert_allclose((u @ v.T).numpy(), logp.numpy(), atol=1e-4)
    assert reg.get("model", "rnn").score_kind == "logit"


def test_sasrec_heads_must_divide_the_dimension(reg):
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="n_heads=2 must divide factors=7"):
        reg.create("model", "sasrec_pop", factors=7)
    assert reg.create("model", "sasrec", factors=7, n_heads=1).n_heads == 1


def test_intensity_variants_reuse_the_sequence_fit_of_the_same_seed_and_data(reg):
    """rnn and rnn_pop on the same events and seed share one fitted p(y | x) (so rnn_pop's score is rnn's plus
    log λ(x)); another seed, other events or other hyper-parameters fit anew."""
    from plugins.models import sequence

    rng = np.random.default_rng(1)
    train = Interactions(user=np.repeat(np.arange(20), 6), item=rng.integers(0, 9, 120),
                         time=np.tile(np.arange(6, dtype=float), 20), n_users=20, n_items=9, time_unit="day")
    sequence._FITS.clear()
    logs = {}

    def fit(name, seed=0, data=train, **kw):
        m = reg.create("model", name, epochs=2, factors=8, **kw)
        seen = logs.setdefault((name, seed, len(data), tuple(kw.items())), [])
        m.fit(data, None, FitContext(seed=seed, device=CPU, log_metric=lambda k, v, s: seen.append((k, v, s))))
        return m, seen

    base, base_log = fit("rnn")
    pop, pop_log = fit("rnn_pop")
    assert ("time/fit_reused", 1.0, 0) in pop_log and ("time/fit_reused", 1.0, 0) not in base_log
    assert [c for c in pop_log if c[0] == "train/loss"] == [c for c in base_log if c[0] == "train/loss"]
    states = _states([0, 1], [10.0, 10.0], [[1, 2, 3], [4]])
    np.testing.assert_allclose(pop.log_item_probs(states).numpy(), base.log_item_probs(states).numpy(), atol=1e-6)

    def score(m):
        u, v = m.factors(states)
        return (u @ v.T).numpy()

    diff = score(pop) - score(base)
    np.testing.assert_allclose(diff, np.broadcast_to(pop.log_prior(states)[:, None], diff.shape), atol=1e-5)
    for other in (fit("rnn", seed=1)[1], fit("rnn", data=train.subset(np.arange(100)))[1], fit("rnn", lr=0.01)[1]):
        assert ("time/fit_reused", 1.0, 0) not in other


# ------------------------------------------------------------------------------------------- synthetic world

def _column_spearman(scores: np.ndarray, truth: np.ndarray) -> float:
    """Mean over items of Spearman's ρ between the states' scores and their true intensities."""
    rs = scipy.stats.rankdata(np.broadcast_to(scores, truth.shape), axis=0)
    rt = scipy.stats.rankdata(truth, axis=0)
    rs, rt = rs - rs.mean(0), rt - rt.mean(0)
    return float(((rs * rt).sum(0) / np.sqrt((rs ** 2).sum(0) * (rt ** 2).sum(0))).mean())


def test_rnn_hawkes_ranks_states_closer_to_the_true_intensity_than_user_pop_and_rnn(reg):
    ds = reg.create("dataset", "synthetic", n_users=600, n_items=100, days=40.0, seed=1)
    split = reg.create("split", "temporal", horizon=7).split(ds, 0)
    states = split.test.states
    truth = ds.truth.pair_intensity(states)
    ctx = FitContext.for_split(split, ds, seed=0, device=CPU)
    rho = {}
    for name in ("rnn", "rnn_hawkes"):
        m = reg.create("model", name, epochs=4, factors=32)
        m.fit(split.train, None, ctx)
        u, v = m.factors(states)
        rho[name] = _column_spearman((u @ v.T).numpy(), truth)
    rho["user_pop"] = _column_spearman(states.lengths[:, None].astype(float), truth)
    print("spearman vs true λ(x, y):", rho)
    assert rho["rnn_hawkes"] > rho["user_pop"] + 0.02 and rho["rnn_hawkes"] > rho["rnn"] + 0.1, rho
    # and the Hawkes prior alone tracks the true λ(x) better than the history length does
    lam = m.prior.intensity(states)
    true_lam = ds.truth.intensity(states)
    assert scipy.stats.spearmanr(lam, true_lam)[0] > scipy.stats.spearmanr(states.lengths, true_lam)[0]


def test_pop_prior_is_the_floored_history_length():
    s = _states([0, 1, 2], [5, 5, 5], [[1, 2, 3], [], [4]])
    np.testing.assert_allclose(np.exp(PopPrior().log_intensity(s)), [3, 0.01, 1])


# ------------------------------------------------------------------------------------------- the harness

def test_all_variants_are_registered_and_run_in_a_suite(workdir, reg):
    for name in NAMES:
        spec = reg.get("model", name)
        assert spec.factory is not None and spec.description
    small = {"epochs": 1, "factors": 8, "n_kernels": 8}
    suite = tiny_suite(split={"name": "temporal", "horizon": 7, "calibration": 7},
                       models=[{"name": "rnn", "epochs": 1, "factors": 8}, {"name": "sasrec_pop", "epochs": 1},
                               {"name": "rnn_hawkes", **small}, {"name": "sasrec_hp", **small}],
                       metrics=["ndcg"], cutoffs=[5])
    frame = api.run(suite, registry=reg)
    assert (frame.status == "FINISHED").all(), frame[["params.model", "status", "error"]].to_dict("records")
    assert frame["metrics.userrec/ndcg_5"].notna().all()


def test_hp_without_a_calibration_window_says_how_to_get_one(reg):
    ds = reg.create("dataset", "synthetic", n_users=60, n_items=20, days=20.0)
    split = reg.create("split", "temporal", horizon=5).split(ds, 0)
    m = reg.create("model", "rnn_hp", epochs=1)
    with pytest.raises(Exception, match="calibration"):
        m.fit(split.train, None, FitContext.for_split(split, ds))


def test_hp_calibration_tracks_the_expected_window_counts(reg):
    ds = reg.create("dataset", "synthetic", n_users=500, n_items=30, days=40.0, seed=2)
    split = reg.create("split", "temporal", horizon=7, calibration=7).split(ds, 0)
    states = split.test.states
    expected = ds.truth.expected_event_counts(states, states.time + 7.0)
    m = reg.create("model", "rnn_hp", epochs=1, factors=8)
    m.prior.fit(split.train, FitContext.for_split(split, ds))
    scores = {"pop": states.lengths, "hawkes": HawkesPrior.intensity(m.prior, states), "hp": m.prior.intensity(states)}
    rhos = {k: scipy.stats.spearmanr(v, expected)[0] for k, v in scores.items()}
    print("spearman vs E[window count]:", rhos)
    assert rhos["hp"] > rhos["pop"] and rhos["hp"] > 0.5, rhos


@pytest.mark.slow
def test_movielens_epoch_time_and_ndcg():
    from benchmarks.sequence_epoch import main

    out = main(["--threads", "2"])
    for name, limit in (("rnn", 6.1), ("sasrec", 16.7)):
        row = out["models"][name]["mean"]
        assert row["epoch_s_median"] <= limit, row
        assert row["ndcg_10_excluded"] > 0.09 and row["ndcg_10_kept"] > 0.05, row


def test_setback_calibrated_sets_back_only_the_models_that_learn_from_the_window(workdir, reg):
    """RIM Sec. 5: only RNN-HP and GCMC(*) train before T'; every other model trains on all events before T. With
    `setback: all` (the default) every model trains before T' (a held-out window)."""
    ds = reg.create("dataset", "synthetic", n_users=60, n_items=20, days=20.0)
    both = reg.create("split", "temporal", horizon=5, calibration=5, setback="calibrated").split(ds, 0)
    held = reg.create("split", "temporal", horizon=5, calibration=5).split(ds, 0)
    t_prime, t_cut = both.info["calibration_cut"], both.info["cut"]
    assert both.setback_train.time.max() < t_prime <= both.train.time.max() < t_cut
    assert len(both.setback_train) == len(held.train) == both.info["n_setback_train"] and held.setback_train is None
    for name in ("rnn_hp", "sasrec_hp", "gcmc", "gcmc_ex"):
        assert reg.get("model", name).set_back, name
    for name in ("rnn", "rnn_pop", "rnn_hawkes", "bpr", "als", "item_pop"):
        assert not reg.get("model", name).set_back, name
    assert FitContext.for_split(both, ds, set_back=True).train is both.setback_train
    assert FitContext.for_split(both, ds).train is both.train
    with pytest.raises(Exception, match="calibration is 0"):
        reg.create("split", "temporal", horizon=5, setback="calibrated")
    # through a suite: the fitted event counts differ by exactly the window's events
    suite = tiny_suite(split={"name": "temporal", "horizon": 7, "calibration": 7, "setback": "calibrated"},
                       models=[{"name": "item_pop"}, {"name": "gcmc", "epochs": 1, "factors": 4}],
                       tasks=["itemrec"], metrics=["ndcg"], cutoffs=[5])
    frame = api.run(suite, registry=reg).set_index("params.model")
    n = frame["params.fit.n_train_events"].astype(int)
    assert n["item_pop"] == int(frame.loc["item_pop", "params.split.info.n_train"])
    assert n["gcmc"] == int(frame.loc["gcmc", "params.split.info.n_setback_train"]) < n["item_pop"]
