"""The synthetic world against its own known truth: the simulation must agree with the process it claims."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from harness.data import Dataset
from harness.registry import Registry
from harness.splits import UserStates, states_from_events
from plugins.datasets.synthetic import PARAMS, WorldTruth, make_world_dataset

SMALL = dict(n_users=300, n_items=100, days=40.0)


@pytest.fixture(scope="module")
def small():
    return make_world_dataset(**{p.name: p.default for p in PARAMS} | SMALL | {"seed": 1})


@pytest.fixture(scope="module")
def many_users():
    """Many users, few items: cheap, and enough events for tight aggregate checks."""
    return make_world_dataset(n_users=3000, n_items=8, days=60.0, seed=2)


def _states(ds, cut, horizon):
    n = ds.n_users
    ev = states_from_events(ds.interactions, np.arange(n), np.full(n, cut), np.full(n, cut + horizon))
    return ev.states, np.full(n, cut + horizon)


def test_deterministic_per_seed_sizes_and_times(small):
    again = make_world_dataset(**SMALL, seed=1)
    x, y = small.interactions, again.interactions
    for a, b in ((x.user, y.user), (x.item, y.item), (x.time, y.time), (small.truth.joint(), again.truth.joint())):
        np.testing.assert_array_equal(a, b)
    other = make_world_dataset(**SMALL, seed=5).interactions
    assert len(other) != len(x) or not np.array_equal(other.item, x.item)
    assert (small.n_users, small.n_items) == (300, 100)
    assert x.time_unit == "day" and x.time.dtype == np.float64
    assert x.time.min() >= 0 and x.time.max() < 40.0
    assert x.user.max() < 300 and x.item.max() < 100 and x.user.min() >= 0 and x.item.min() >= 0
    assert len(set(small.user_ids)) == 300 and len(set(small.item_ids)) == 100
    assert small.meta["source"] == "matchbench synthetic world"
    assert small.truth.joint().shape == (300, 100)


def test_registered_through_the_registry():
    ds = Registry.load().create("dataset", "synthetic", n_users=50, n_items=20)
    assert isinstance(ds, Dataset) and isinstance(ds.truth, WorldTruth)
    assert (ds.n_users, ds.n_items) == (50, 20) and len(ds.interactions) > 0
    assert ds.truth.joint().shape == (50, 20)


def test_event_counts_match_the_hawkes_expectation(many_users):
    tr, x = many_users.truth, many_users.interactions
    exact = tr.expected_user_counts()
    # Hawkes count variance over a long window ~ μΔ/(1-α)^3 (an upper bound here: the start-up transient lowers it)
    sd = np.sqrt((tr.mu * tr.days / (1 - tr.alpha) ** 3).sum())
    assert abs(len(x) - exact.sum()) < 4 * sd
    stationary = (tr.mu * tr.days / (1 - tr.alpha)).sum()
    assert abs(len(x) / stationary - 1) < 0.05
    # and per activity level: users binned by their expected count
    bins = np.quantile(exact, np.linspace(0, 1, 6))
    which = np.clip(np.searchsorted(bins, exact, side="right") - 1, 0, 4)
    for k in range(5):
        sel = which == k
        assert abs(x.user_counts[sel].sum() / exact[sel].sum() - 1) < 0.1
    # the closed form tends to μ days / (1-α) on a long span
    assert np.allclose(_long(tr).expected_user_counts() / (tr.mu * 1e4 / (1 - tr.alpha)), 1, rtol=1e-3)


def _long(tr):
    from dataclasses import replace
    return replace(tr, days=1e4)


def test_marginals_match_the_data(small):
    tr, x = small.truth, small.interactions
    assert spearmanr(x.item_counts, tr.item_marginal()).statistic > 0.9
    np.testing.assert_allclose(tr.user_marginal() * len(x), x.user_counts, rtol=1e-9, atol=1e-9)


def test_recorded_joint_is_the_sum_of_the_event_state_laws_and_explains_the_marks():
    """The joint counts of u = Σ_{events e of u} p(· | x_e) (kept as the events' contexts) equal the sum recomputed
    from the states at every event; the realised counts n(u,i) scatter around it with the martingale variance
    Σ_e p_e(1-p_e); a joint that ignores the Markov drift (wrong states) scatters far more."""
    ds = make_world_dataset(n_users=400, n_items=30, days=40.0, drift=4.0, seed=3)
    tr, x = ds.truth, ds.interactions
    ev = states_from_events(x, x.user, x.time)  # the state just before every event
    p = tr.item_probs(ev.states)
    at = np.zeros((tr.n_users, tr.n_items))
    np.add.at(at, x.user, p)
    np.testing.assert_allclose(tr.joint_count_rows(np.arange(tr.n_users)), at, rtol=1e-9, atol=1e-12)
    var = np.zeros_like(at)
    np.add.at(var, x.user, p * (1 - p))
    counts = x.csr().toarray()
    good = ((counts - at) ** 2).sum() / var.sum()
    assert 0.85 < good < 1.15, good
    base = tr._base_logits(x.user)
    p0 = np.exp(base - base.max(1, keepdims=True))
    p0 /= p0.sum(1, keepdims=True)
    wrong = np.zeros_like(at)
    np.add.at(wrong, x.user, p0)
    bad = ((counts - wrong) ** 2).sum() / var.sum()
    assert bad > 2 * good, (good, bad)


def test_probabilities_are_normalised_and_pmi_is_consistent():
    ds = make_world_dataset(n_users=200, n_items=50, days=10.0, mean_rate=0.05, seed=4)
    tr = ds.truth
    assert (ds.interactions.user_counts == 0).any()  # some users without events
    j = tr.joint()
    assert np.isclose(j.sum(), 1.0) and (j >= 0).all()
    np.testing.assert_allclose(np.exp(tr.log_item_given_user()).sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(tr.log_user_given_item()).sum(0), 1.0, rtol=1e-9)
    pu, pi = j.sum(1), j.sum(0)
    u = int(np.argmax(ds.interactions.user_counts))
    i = 7
    assert np.isclose(tr.log_joint()[u, i], np.log(j[u, i]))
    assert np.isclose(tr.log_item_given_user()[u, i], np.log(j[u, i] / pu[u]))
    assert np.isclose(tr.log_user_given_item()[u, i], np.log(j[u, i] / pi[i]))
    assert np.isclose(tr.pmi()[u, i], np.log(j[u, i] / (pu[u] * pi[i])))
    idle = int(np.flatnonzero(ds.interactions.user_counts == 0)[0])
    assert np.isfinite(tr.pmi()[idle]).all()


def _hand_probs(tr, u, last):
    z = tr.taste_scale * tr.theta[u] @ tr.phi.T + tr.b
    if last is not None:
        z = z + tr.gamma * tr.phi[last] @ tr.phi.T
    e = np.exp(z - z.max())
    return e / e.sum()


def test_item_probs_intensity_and_pair_intensity_by_hand(small):
    tr = small.truth
    cut = 30.0
    # state 0: a history with an event at the cut and one after it (both must not count); state 1: empty
    st = UserStates(user=np.array([5, 9]), time=np.array([cut, 12.0]), hist_ptr=np.array([0, 4, 4]),
                    hist_item=np.array([3, 17, 42, 8]), hist_time=np.array([20.0, 29.5, cut, 31.0]))
    lam = tr.intensity(st)
    hand = tr.mu[5] + sum(tr.alpha[5] * tr.beta * np.exp(-tr.beta * (cut - t)) for t in (20.0, 29.5))
    assert np.isclose(lam[0], hand) and np.isclose(lam[1], tr.mu[9])
    p = tr.item_probs(st)
    np.testing.assert_allclose(p[0], _hand_probs(tr, 5, 8), rtol=1e-10)  # the last history item is 8
    np.testing.assert_allclose(p[1], _hand_probs(tr, 9, None), rtol=1e-10)
    np.testing.assert_allclose(tr.pair_intensity(st), lam[:, None] * p)
    # on real states from a split
    states, _ = _states(small, 25.0, 5.0)
    s = int(np.argmax(states.lengths))
    h = states.hist_time[states.hist_ptr[s]:states.hist_ptr[s + 1]]
    u = states.user[s]
    assert np.isclose(tr.intensity(states)[s], tr.mu[u] + (tr.alpha[u] * tr.beta * np.exp(-tr.beta * (25.0 - h))).sum())
    np.testing.assert_allclose(tr.item_probs(states)[s], _hand_probs(tr, u, states.history(s)[-1]), rtol=1e-10)


def test_churn_lowers_the_background():
    ds = make_world_dataset(n_users=1000, n_items=5, days=40.0, churn_day=20.0, churn_factor=0.1, branching=0.2)
    tr, t = ds.truth, ds.interactions.time
    st = UserStates(user=np.array([0, 0]), time=np.array([10.0, 30.0]), hist_ptr=np.zeros(3, np.int64),
                    hist_item=np.zeros(0, np.int64), hist_time=np.zeros(0))
    np.testing.assert_allclose(tr.intensity(st), [tr.mu[0], 0.1 * tr.mu[0]])
    late, early = (t >= 20).sum(), (t < 20).sum()
    assert late < 0.35 * early
    exact = tr.expected_user_counts().sum()
    assert abs(len(t) - exact) < 4 * np.sqrt((tr.mu * tr.days / (1 - tr.alpha) ** 3).sum())


def test_closed_form_window_count_matches_simulation(many_users):
    tr = many_users.truth
    states, end = _states(many_users, 45.0, 7.0)
    sims = tr.simulate_event_counts(states, end, n_sims=100, seed=0)
    exact = tr.expected_event_counts(states, end)
    # aggregate z-score of the MC means against the closed form
    z = (sims.mean(1) - exact).sum() / np.sqrt((sims.var(1, ddof=1) / sims.shape[1]).sum())
    assert abs(z) < 4, z
    # the states with most carried-over excitation (recent bursts) too
    top = np.argsort(-tr.intensity(states) / tr.mu[states.user])[:200]
    z_top = (sims[top].mean(1) - exact[top]).sum() / np.sqrt((sims[top].var(1, ddof=1) / 100).sum())
    assert abs(z_top) < 4, z_top
    assert (exact[top] > tr.mu[states.user[top]] * 7.0).all()
    # deterministic per seed; expected_counts' row sums are those MC means
    np.testing.assert_array_equal(sims[:50], tr.simulate_event_counts(states, end, n_sims=100, seed=0)[:50])
    ec = tr.expected_counts(states, end, n_sims=100, seed=0)
    np.testing.assert_allclose(ec.sum(1), sims.mean(1), rtol=1e-9, atol=1e-12)


def test_expected_counts_empty_history_no_excitation_is_poisson():
    ds = make_world_dataset(n_users=30, n_items=40, branching=0.0, drift=0.0, seed=6)
    tr = ds.truth
    n = 30
    st = UserStates(user=np.arange(n), time=np.full(n, 10.0), hist_ptr=np.zeros(n + 1, np.int64),
                    hist_item=np.zeros(0, np.int64), hist_time=np.zeros(0))
    end = np.full(n, 20.0)
    ec = tr.expected_counts(st, end, n_sims=400, seed=1)
    mean = tr.mu * 10.0
    np.testing.assert_allclose(tr.expected_event_counts(st, end), mean)
    z = (ec.sum(1) - mean) / np.sqrt(mean / 400)
    assert np.abs(z).max() < 4.5 and abs(z.sum() / np.sqrt(n)) < 4
    # without drift every future mark has law p(y | x): E[ΔN(x, y)] = E[N] p(y | x) exactly given the MC counts
    np.testing.assert_allclose(ec, ec.sum(1, keepdims=True) * tr.item_probs(st), rtol=1e-9)


def test_expected_counts_marks_match_a_brute_force_chain():
    """Σ_k P̂(N ≥ k) π_k with π_k from explicit transition-matrix powers; busy states run long enough for
    the converged-chain shortcut to kick in, and it changes nothing."""
    ds = make_world_dataset(n_users=40, n_items=12, drift=3.0, branching=0.6, mean_rate=1.0, seed=7)
    tr = ds.truth
    states, _ = _states(ds, 30.0, 30.0)
    end = np.full(len(states), 60.0)
    ec = tr.expected_counts(states, end, n_sims=50, seed=2)
    np.testing.assert_allclose(ec, tr.expected_counts(states, end, n_sims=50, seed=2, tol=0.0), rtol=1e-8)
    all_counts = tr.simulate_event_counts(states, end, n_sims=50, seed=2)
    for s in (int(np.argmax(states.lengths)), int(np.argmax(all_counts.max(1))), int(np.argmin(states.lengths))):
        counts, u = all_counts[s], states.user[s]
        trans = np.stack([_hand_probs(tr, u, z) for z in range(tr.n_items)])
        hist = states.history(s)
        pi = _hand_probs(tr, u, hist[-1] if len(hist) else None)
        want = np.zeros(tr.n_items)
        for k in range(1, counts.max() + 1):
            want += (counts >= k).mean() * pi
            pi = pi @ trans
        np.testing.assert_allclose(ec[s], want, rtol=1e-8, atol=1e-12)


def test_expected_counts_match_full_marked_simulation():
    """The Rao-Blackwellised marks agree with marks drawn by Gumbel-max along simulated paths."""
    ds = make_world_dataset(n_users=150, n_items=20, drift=3.0, seed=8)
    tr = ds.truth
    states, end = _states(ds, 45.0, 7.0)
    n_sims = 100
    ec = tr.expected_counts(states, end, n_sims=n_sims, seed=3)
    s_idx, r_idx, t, y = tr.simulate_window(states, end, n_sims=n_sims, seed=3)
    assert ((t >= states.time[s_idx]) & (t < end[s_idx])).all()
    counts = np.zeros_like(ec)
    np.add.at(counts, (s_idx, y), 1.0 / n_sims)
    np.testing.assert_allclose(counts.sum(1), ec.sum(1), rtol=1e-9)  # same count paths
    # per item, summed over states: the per-simulation totals are i.i.d. over simulations, and their spread
    # bounds that of the (sampled - Rao-Blackwellised) difference
    per_sim = np.zeros((n_sims, tr.n_items))
    np.add.at(per_sim, (r_idx, y), 1.0)
    se = per_sim.std(0, ddof=1) / np.sqrt(n_sims)
    z = (per_sim.mean(0) - ec.sum(0)) / se
    assert (z ** 2).mean() < 1.5 and np.abs(z).max() < 4.5, z
    # and it is sensitive: dropping the drift from the prediction is clearly off
    base = tr._base_logits(states.user)
    p0 = np.exp(base - base.max(1, keepdims=True))
    p0 /= p0.sum(1, keepdims=True)
    z_bad = (per_sim.mean(0) - (ec.sum(1, keepdims=True) * p0).sum(0)) / se
    assert (z_bad ** 2).mean() > 4 * max((z ** 2).mean(), 1.0), (z, z_bad)
