"""The synthetic world at scale (issue 14): the mark sampler draws from p(y | x) exactly, the truth computed by
blocks equals the dense sums, truth metrics on a sample agree with the exact ones, worlds are cached on disk with
their truth, and cells that share dataset, split and seed split once per process."""
import numpy as np
import pytest
import yaml
from conftest import tiny_suite
from scipy.special import softmax
from scipy.stats import chisquare

from harness import cache
from harness.cache import load_dataset
from harness.cli import main
from harness.evaluate import ScoreSource
from harness.model import FitContext
from harness.registry import Registry
from harness.truth import sample_pairs, truth_metrics
from plugins.datasets import synthetic
from plugins.datasets.synthetic import make_world, make_world_dataset
from plugins.datasets.world import MarkSampler, event_contexts
from plugins.datasets.world_truth import WorldTruth
from plugins.splits.temporal import TemporalSplit


def _truth(n_users=3, n_items=37, d=4, gamma=1.5, seed=0):
    rng = np.random.default_rng(seed)
    return WorldTruth(theta=rng.normal(size=(n_users, d)), phi=rng.normal(size=(n_items, d)),
                      b=rng.normal(size=n_items), mu=np.ones(n_users), alpha=np.full(n_users, 0.3), beta=1.0,
                      gamma=gamma, taste_scale=1.2, days=10.0)


@pytest.mark.parametrize("n_items", [37, 49, 1])  # groups padded (37 = 7·6 − 5), exact squares, a single item
def test_the_mark_sampler_draws_from_the_stated_softmax(n_items):
    tr = _truth(n_items=n_items)
    sampler = MarkSampler(tr)
    users, last = np.array([0, 1, 2]), np.array([-1, 0 % n_items, n_items - 1])
    n = 20_000
    rng = np.random.default_rng(1)
    draws = sampler.draw(rng, np.repeat(users, n), np.repeat(last, n))
    assert draws.min() >= 0 and draws.max() < n_items
    for r in range(3):
        q = tr.taste_scale * tr.theta[users[r]] + (tr.gamma * tr.phi[last[r]] if last[r] >= 0 else 0.0)
        p = softmax(q @ tr.phi.T + tr.b)
        got = np.bincount(draws[r * n:(r + 1) * n], minlength=n_items)
        if n_items == 1:
            assert got[0] == n
            continue
        keep = p * n >= 5  # chi-square needs expected counts of at least 5: pool the rare items
        f_obs = np.append(got[keep], got[~keep].sum())
        f_exp = np.append(p[keep], p[~keep].sum()) * n
        assert chisquare(f_obs[f_exp > 0], f_exp[f_exp > 0]).pvalue > 1e-4


def test_the_sampler_adds_each_events_law_to_the_item_mass():
    tr = _truth()
    users, last = np.array([0, 1, 2, 0]), np.array([-1, 3, 5, 7])
    mass = np.zeros(tr.n_items)
    MarkSampler(tr).draw(np.random.default_rng(0), users, last, mass)
    want = sum(softmax(tr._logits(users[r:r + 1], last[r:r + 1])[0]) for r in range(4))
    np.testing.assert_allclose(mass, want, rtol=1e-5, atol=1e-7)  # float32 terms


def test_contexts_are_the_distinct_user_and_previous_item_with_counts():
    user = np.array([0, 0, 0, 0, 2, 2])
    item = np.array([5, 5, 5, 1, 3, 3])
    cu, cl, cc = event_contexts(user, item, n_items=6)
    assert list(zip(cu.tolist(), cl.tolist(), cc.tolist(), strict=True)) == [
        (0, -1, 1.0), (0, 5, 3.0), (2, -1, 1.0), (2, 3, 1.0)]


def test_truth_by_blocks_equals_the_dense_sums_over_events_for_any_rows():
    u, i, t, tr = make_world(n_users=120, n_items=40, days=20.0, seed=4)
    order = np.lexsort((t, u))
    su, si = u[order], i[order]
    prev = np.r_[-1, si[:-1]]
    prev[np.r_[True, su[1:] != su[:-1]]] = -1
    dense = np.zeros((120, 40))
    np.add.at(dense, su, softmax(tr._logits(su, prev), axis=1))
    active = np.flatnonzero(dense.sum(1) > 0)
    users, items = active[[5, 0, 5, -1, 77]], np.array([39, 0, 7, 7])  # repeats, any order
    np.testing.assert_allclose(tr.joint_count_rows(users, items), dense[users][:, items], rtol=1e-10, atol=1e-13)
    j = dense / dense.sum()
    np.testing.assert_allclose(tr.joint_rows(users, items), j[users][:, items], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(tr.item_marginal(), j.sum(0), rtol=1e-10)
    np.testing.assert_allclose(tr.sim_item_mass, dense.sum(0), rtol=1e-5)  # the simulation's float32 sum
    block, p_i = dense[users][:, items], j.sum(0)[items]
    pmi = np.log(block / dense[users].sum(1, keepdims=True)) - np.log(p_i)
    np.testing.assert_allclose(tr.pmi_rows(users, items), pmi, rtol=1e-9)
    np.testing.assert_allclose(tr.log_user_given_item_rows(users, items), np.log(block / dense.sum() / p_i), rtol=1e-9)


def test_a_large_world_takes_p_of_i_from_the_simulation(monkeypatch):
    monkeypatch.setattr("plugins.datasets.world_truth.EXACT_CELLS", 10)
    _, _, _, tr = make_world(n_users=60, n_items=30, days=10.0, seed=2)
    np.testing.assert_array_equal(tr._item_mass, tr.sim_item_mass)


def test_sampled_truth_metrics_are_within_0_01_of_the_exact_ones_at_the_threshold():
    reg = Registry.load()
    ds = make_world_dataset(n_users=600, n_items=300, days=30.0, seed=5)
    split = reg.create("split", "temporal", horizon=7).split(ds, 0)
    model = reg.create("model", "item_pop")
    model.fit(split.train, None, FitContext.for_split(split, ds, seed=0))
    source = ScoreSource(model, split.test, split.n_items, "cpu")
    n = split.test.n_states
    exact = truth_metrics(ds, split.test, source, "logit", seed=0, max_states=n, max_items=300)
    sampled = truth_metrics(ds, split.test, source, "logit", seed=0, max_states=n // 2, max_items=150)
    assert exact["truth/n_pairs"] == n * 300 > sampled["truth/n_pairs"]
    for name in ("joint", "item_given_user", "user_given_item", "pmi"):
        assert abs(exact[f"truth/spearman_{name}"] - sampled[f"truth/spearman_{name}"]) < 0.01, name


def test_the_sample_keeps_every_target_item_of_the_sampled_states():
    ds = make_world_dataset(n_users=300, n_items=200, days=30.0, seed=1)
    test = Registry.load().create("split", "temporal", horizon=7).split(ds, 0).test
    rows, items = sample_pairs(test, 200, seed=3, max_states=40, max_items=20)
    assert len(rows) == 40 and np.all(np.diff(rows) > 0)
    assert set(test.targets[rows].indices) <= set(items.tolist()) and len(items) >= 20


def test_a_world_is_cached_on_disk_with_its_truth(tmp_path, monkeypatch):
    monkeypatch.setenv("MATCHBENCH_CACHE", str(tmp_path))
    built = []
    real = synthetic.make_world

    def counting(**kw):
        built.append(kw)
        return real(**kw)

    monkeypatch.setattr(synthetic, "make_world", counting)
    reg = Registry.load()
    params = {"n_users": 200, "n_items": 50, "days": 20.0, "seed": 9}
    first = load_dataset(reg, "synthetic", params)
    again = load_dataset(reg, "synthetic", params)
    assert len(built) == 1 and isinstance(again.truth, WorldTruth)
    np.testing.assert_array_equal(first.interactions.item, again.interactions.item)
    users = np.arange(200)
    np.testing.assert_array_equal(first.truth.log_joint_rows(users), again.truth.log_joint_rows(users))
    assert again.truth.churn_day is None and again.truth.beta == first.truth.beta
    load_dataset(reg, "synthetic", dict(params, seed=10))
    assert len(built) == 2  # another world, another entry


def test_cells_sharing_dataset_split_and_seed_split_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MATCHBENCH_CACHE", str(tmp_path / "cache"))
    calls = []
    real = TemporalSplit.split

    def counting(self, dataset, seed):
        calls.append(seed)
        return real(self, dataset, seed)

    monkeypatch.setattr(TemporalSplit, "split", counting)
    cache._split_kept.clear()
    suite = tiny_suite(models=[{"name": "item_pop"}, {"name": "user_pop"}], seeds=[0, 1], jobs=1)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    assert main(["run", "s.yaml"]) == 0
    # the pre-flight splits the first seed's data; the cells run grouped by (dataset, split, seed): seed 0's cells
    # reuse that split, the first cell of seed 1 splits once more and the second reuses it
    assert calls == [0, 1]


def test_pooled_pairs_are_the_whole_grid_up_to_the_cap_then_a_sample_plus_every_target():
    import scipy.sparse as sp

    from harness.truth import pooled_pairs

    targets = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 3, 9], [5, 0, 19])), shape=(10, 20))
    assert pooled_pairs(targets, seed=0, max_pooled=200).all()
    mask = pooled_pairs(targets, seed=0, max_pooled=50)
    assert mask[0, 5] and mask[3, 0] and mask[9, 19]
    assert 50 <= mask.sum() <= 53
    np.testing.assert_array_equal(mask, pooled_pairs(targets, seed=0, max_pooled=50))  # seeded
    assert not np.array_equal(mask, pooled_pairs(targets, seed=1, max_pooled=50))


def test_a_small_catalogue_draws_for_more_rows_than_one_buffer_holds():
    """With 4 items the cell budget allows far more rows per block than the sampler's 2^16-row buffer: the blocks
    must follow the buffer (a matmul into a shorter buffer raised a shape error)."""
    tr = _truth(n_items=4)
    n = (1 << 16) + 100
    draws = MarkSampler(tr).draw(np.random.default_rng(0), np.zeros(n, np.int64), np.full(n, -1))
    p = softmax(tr.taste_scale * tr.theta[0] @ tr.phi.T + tr.b)
    assert chisquare(np.bincount(draws, minlength=4), p * n).pvalue > 1e-4
