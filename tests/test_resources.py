"""The synthetic world's resource-limited layer (IMN-Net) against references: today's world when off, a plain-loop
replay of stocks and budgets, purchase rates against the truth's probabilities, and the shift that binding limits
cause in what users click and buy."""
from __future__ import annotations

import numpy as np
import pytest

from plugins.datasets.resources import purchase_probability
from plugins.datasets.synthetic import PARAMS, make_world, make_world_dataset
from plugins.datasets.world import event_contexts

SMALL = dict(n_users=800, n_items=200, days=30.0, seed=4)
NEW = ("resources", "price_sigma", "stock_scale", "budget_scale", "budget_sigma", "budget_recovery",
       "purchase_base", "purchase_shape", "limit_weight")


@pytest.fixture(scope="module")
def world():
    return make_world_dataset(resources=True, **SMALL)


def _rows(d):
    x = d.interactions
    return np.asarray(x.event).astype(str), np.asarray(x.features["price"])


# ------------------------------------------------------------------------------------------ off: today's world

def test_resources_off_is_todays_world_exactly():
    user, item, time, truth = make_world(**SMALL)
    for d in (make_world_dataset(**SMALL), make_world_dataset(resources=False, budget_scale=0.1, **SMALL)):
        x = d.interactions
        np.testing.assert_array_equal(x.user, user)
        np.testing.assert_array_equal(x.item, item)
        np.testing.assert_array_equal(x.time, time)
        assert x.event is None and x.features == {}
        assert d.truth.price is None and d.truth.purchase_prob is None
        np.testing.assert_array_equal(d.truth.ctx_count, truth.ctx_count)
        assert "resources" not in d.meta["params"]
    # the parameters came after runs were recorded: late, so existing suites' config hashes hold
    late = {p.name: p.late for p in PARAMS}
    assert all(late[name] for name in NEW)


def test_resources_on_keeps_the_worlds_event_times(world):
    user, _, time, _ = make_world(**SMALL)
    event, _ = _rows(world)
    click = event == "click"
    x = world.interactions
    np.testing.assert_array_equal(x.user[click], user)
    np.testing.assert_array_equal(x.time[click], time)
    assert set(event) == {"click", "purchase"}
    assert world.meta["params"]["resources"] is True


def test_limits_off_gives_the_same_clicks_as_no_limits():
    """limit_weight = 1: the click law ignores the state, so the clicks are those of the world without limits."""
    a = make_world_dataset(resources=True, limit_weight=1.0, **SMALL).interactions
    b = make_world_dataset(resources=True, budget_scale=1e9, stock_scale=1e9, **SMALL).interactions
    ca, cb = np.asarray(a.event) == "click", np.asarray(b.event) == "click"
    np.testing.assert_array_equal(a.item[ca], b.item[cb])


# ------------------------------------------------------------------------------------------ the state, replayed

def test_purchase_probability_by_hand():
    p = purchase_probability([1.0, 4.0, 5.0, 1.0], [4.0, 4.0, 4.0, 4.0], [True, True, True, False], 0.5, 2.0)
    np.testing.assert_allclose(p, [0.5 * 0.75 ** 2, 0.0, 0.0, 0.0])


def test_stocks_and_budgets_replayed_by_a_plain_loop(world):
    """A reference: walk the log in order; stock reset to full at each new day, decremented by purchases; budget
    recovered by rate·Δt up to its capacity, decremented by the price. The truth's states must be these."""
    x, tr = world.interactions, world.truth
    event, price = _rows(world)
    np.testing.assert_allclose(tr.budget_rate, 0.1 * tr.budget_cap)
    np.testing.assert_allclose(price, tr.price[x.item])
    stock, day = None, None
    budget, t_last = tr.budget_cap.copy(), np.zeros(x.n_users)
    ref_budget, ref_stock, ref_p = np.empty(len(x)), np.empty(len(x)), np.full(len(x), np.nan)
    min_stock, min_budget = np.inf, np.inf
    for k in range(len(x)):
        u, y, t = int(x.user[k]), int(x.item[k]), float(x.time[k])
        if event[k] == "click":
            if int(np.floor(t)) != day:
                stock, day = tr.stock_full.copy(), int(np.floor(t))
            budget[u] = min(tr.budget_cap[u], budget[u] + tr.budget_rate[u] * (t - t_last[u]))
            t_last[u] = t
            ok = tr.price[y] < budget[u] and stock[y] > 0
            ref_p[k] = 0.5 * (1.0 - tr.price[y] / budget[u]) if ok else 0.0
        else:
            assert event[k - 1] == "click" and x.user[k - 1] == u and x.item[k - 1] == y and x.time[k - 1] == t
            stock[y] -= 1
            budget[u] -= tr.price[y]
        ref_budget[k] = budget[u] if event[k] == "click" else budget[u] + tr.price[y]
        ref_stock[k] = stock[y] if event[k] == "click" else stock[y] + 1
        min_stock, min_budget = min(min_stock, stock[y]), min(min_budget, budget[u])
    assert min_stock >= 0 and min_budget >= 0
    np.testing.assert_allclose(tr.budget_before, ref_budget, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(tr.stock_before, ref_stock)
    np.testing.assert_allclose(tr.purchase_prob, ref_p, rtol=1e-9, atol=1e-12)
    # the limits do bind in this world (else the replay proves little)
    click = event == "click"
    assert (tr.stock_before[click] == 0).mean() > 0.02
    assert (price[click] >= tr.budget_before[click]).mean() > 0.02
    assert (tr.budget_before[click] < tr.budget_cap[x.user[click]] - 1e-9).mean() > 0.1


# ------------------------------------------------------------------------------------------ purchases vs the truth

def test_purchase_rates_match_the_truths_probabilities(world):
    event, _ = _rows(world)
    click = np.flatnonzero(event == "click")
    bought = np.zeros(len(event), dtype=bool)
    bought[:-1] = event[1:] == "purchase"
    p, b = world.truth.purchase_prob[click], bought[click]
    assert not b[p == 0].any()
    assert abs(b.sum() - p.sum()) < 4 * np.sqrt((p * (1 - p)).sum())
    edges = np.quantile(p[p > 0], [0, 0.25, 0.5, 0.75, 1.0])
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (p > 0) & (p >= lo) & (p <= hi)
        assert abs(b[sel].sum() - p[sel].sum()) < 4 * np.sqrt((p[sel] * (1 - p[sel])).sum())


# ------------------------------------------------------------------------------------------ limits change behaviour

def test_binding_limits_shift_clicks_and_purchases_to_cheaper_in_stock_items(world):
    free = make_world_dataset(resources=True, budget_scale=1e9, stock_scale=1e9, **SMALL)
    blind = make_world_dataset(resources=True, limit_weight=1.0, **SMALL)
    (ev, pr), (ev_f, pr_f) = _rows(world), _rows(free)

    def mean_se(v):
        return v.mean(), v.std() / np.sqrt(len(v))

    for a, b in ((pr[ev == "click"], pr_f[ev_f == "click"]), (pr[ev == "purchase"], pr_f[ev_f == "purchase"])):
        (ma, sa), (mb, sb) = mean_se(a), mean_se(b)
        assert ma < mb - 5 * np.hypot(sa, sb)
    # towards in-stock and affordable items: fewer clicks on sold-out / unaffordable items than when clicks ignore
    # the state under the same limits
    ev_b, pr_b = _rows(blind)
    c, cb = ev == "click", ev_b == "click"
    assert (world.truth.stock_before[c] == 0).mean() < 0.6 * (blind.truth.stock_before[cb] == 0).mean()
    assert ((pr[c] >= world.truth.budget_before[c]).mean()
            < 0.6 * (pr_b[cb] >= blind.truth.budget_before[cb]).mean())


def test_click_law_is_interest_times_affordability():
    """With stock unbounded only the budget binds: p(y | x, r) ∝ p(y | x)·(limit_weight if price_y ≥ budget else
    1). The expected number of unaffordable clicks and the expected total price under that law, from the truth's
    p(y | x) and each click's budget, must match the log within sampling error."""
    d = make_world_dataset(resources=True, stock_scale=1e9, budget_scale=2.0, limit_weight=0.2, **SMALL)
    x, tr = d.interactions, d.truth
    click = np.flatnonzero(np.asarray(x.event) == "click")
    u, y, budget = x.user[click], x.item[click], tr.budget_before[click]
    order = np.lexsort((x.time[click], u))
    last = np.full(len(click), -1)
    same = u[order[1:]] == u[order[:-1]]
    last[order[1:][same]] = y[order[:-1]][same]
    z = tr._logits(u, last)
    w = np.exp(z - z.max(axis=1, keepdims=True))
    unaff = tr.price[None, :] >= budget[:, None]
    w *= np.where(unaff, 0.2, 1.0)
    p = w / w.sum(axis=1, keepdims=True)
    q = (p * unaff).sum(1)
    seen = tr.price[y] >= budget
    assert seen.mean() > 0.02
    assert abs(seen.sum() - q.sum()) < 4 * np.sqrt((q * (1 - q)).sum())
    mean = p @ tr.price
    var = p @ tr.price ** 2 - mean ** 2
    assert abs(tr.price[y].sum() - mean.sum()) < 4 * np.sqrt(var.sum())


# ------------------------------------------------------------------------------------------ alignment with the log

def test_truth_arrays_align_with_the_log(world, tmp_path):
    x, tr = world.interactions, world.truth
    event, price = _rows(world)
    for name in ("budget_before", "stock_before", "purchase_prob"):
        assert len(getattr(tr, name)) == len(x)
    buy = np.flatnonzero(event == "purchase")
    np.testing.assert_array_equal(np.isnan(tr.purchase_prob), event == "purchase")
    for name in ("budget_before", "stock_before"):
        np.testing.assert_array_equal(getattr(tr, name)[buy], getattr(tr, name)[buy - 1])
    np.testing.assert_array_equal(event[buy - 1], "click")
    assert (np.diff(x.time) >= 0).all()
    assert (tr.stock_before[event == "click"] <= tr.stock_full[x.item[event == "click"]]).all()
    # the truth's contexts follow the re-drawn clicks
    click = event == "click"
    order = np.lexsort((x.time[click], x.user[click]))
    cu, cl, cc = event_contexts(x.user[click][order], x.item[click][order], x.n_items)
    np.testing.assert_array_equal(tr.ctx_user, cu)
    np.testing.assert_array_equal(tr.ctx_last, cl)
    np.testing.assert_array_equal(tr.ctx_count, cc)
    # the disk cache keeps the layer
    world.save(tmp_path / "w")
    back = type(world).load(tmp_path / "w")
    np.testing.assert_array_equal(np.asarray(back.interactions.event).astype(str), event)
    np.testing.assert_array_equal(back.interactions.features["price"], price)
    np.testing.assert_array_equal(back.truth.purchase_prob, tr.purchase_prob)


def test_resources_do_not_combine_with_other_layers():
    with pytest.raises(ValueError, match="resources"):
        make_world_dataset(resources=True, funnel=True, n_users=50, n_items=20, days=5.0)
