"""Metrics against hand-computed cases, and identical whatever the chunk or block size."""
import math

import numpy as np
import pytest
import scipy.sparse as sp

from harness.evaluate import hit_matrix, score_rankings
from harness.registry import Registry


@pytest.fixture(scope="module")
def metrics():
    reg = Registry.load()
    return {n: reg.get("metric", n) for n in ["recall", "recall_capped", "precision", "hit", "mrr", "ndcg",
                                               "coverage", "popularity"]}


def test_hand_computed_case(metrics):
    # query 0: ranking [2, 0, 5], relevant {0, 5, 7}; query 1: ranking [1, 3, 4], relevant {4}
    index = np.array([[2, 0, 5], [1, 3, 4]])
    truth = sp.csr_matrix(([1, 1, 1, 1], ([0, 0, 0, 1], [0, 5, 7, 4])), shape=(2, 8))
    pop = np.arange(8, dtype=float)
    out, per_query = score_rankings(index, truth, [2, 3], metrics, pop, 8, np.array([0, 1]), "itemrec")

    def d(r):  # the DCG discount at rank r
        return 1 / math.log2(r + 1)

    assert out["recall_2"] == pytest.approx((1 / 3 + 0) / 2)
    assert out["recall_3"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["recall_capped_2"] == pytest.approx((1 / 2 + 0) / 2)
    assert out["precision_3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert out["hit_2"] == pytest.approx(0.5)
    assert out["mrr_3"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    ndcg0 = (d(2) + d(3)) / (d(1) + d(2) + d(3))
    ndcg1 = d(3) / d(1)
    assert out["ndcg_3"] == pytest.approx((ndcg0 + ndcg1) / 2)
    assert out["coverage_3"] == pytest.approx(6 / 8)
    assert out["popularity_2"] == pytest.approx((2 + 0 + 1 + 3) / 4)
    np.testing.assert_allclose(per_query["ndcg_3"], [ndcg0, ndcg1])


def test_hit_matrix_lookup():
    index = np.array([[3, 1], [0, 2]])
    truth = sp.csr_matrix(([1, 1], ([0, 1], [1, 0])), shape=(2, 4))
    np.testing.assert_array_equal(hit_matrix(index, truth), [[0, 1], [1, 0]])


def test_chunking_does_not_change_metrics(metrics, monkeypatch):
    rng = np.random.default_rng(0)
    index = np.stack([rng.permutation(50)[:20] for _ in range(300)])
    truth = sp.random(300, 50, density=0.1, random_state=1, format="csr")
    truth.data[:] = 1
    keep = np.diff(truth.indptr) > 0
    index, truth = index[keep], truth[keep]
    args = (index, truth, [5, 20], metrics, rng.random(50), 50, np.arange(len(index)), "itemrec")
    whole, _ = score_rankings(*args)
    import harness.evaluate as ev
    monkeypatch.setattr(ev, "EVAL_CHUNK", 7)
    chunked, _ = score_rankings(*args)
    assert whole == chunked


def test_against_ranx_when_available(metrics):
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(3)
    index = np.stack([rng.permutation(30)[:10] for _ in range(20)])
    truth = sp.random(20, 30, density=0.15, random_state=4, format="csr")
    truth.data[:] = 1
    keep = np.flatnonzero(np.diff(truth.indptr) > 0)
    index, truth = index[keep], truth[keep]
    out, _ = score_rankings(index, truth, [10], metrics, np.ones(30), 30, keep, "itemrec")
    qrels = ranx.Qrels({f"q{q}": {f"d{d}": 1 for d in truth[n].indices} for n, q in enumerate(keep)})
    run = ranx.Run({f"q{q}": {f"d{d}": float(10 - r) for r, d in enumerate(index[n])} for n, q in enumerate(keep)})
    ref = ranx.evaluate(qrels, run, ["recall@10", "precision@10", "ndcg@10", "mrr@10", "hit_rate@10"])
    assert out["recall_10"] == pytest.approx(ref["recall@10"])
    assert out["precision_10"] == pytest.approx(ref["precision@10"])
    assert out["ndcg_10"] == pytest.approx(ref["ndcg@10"])
    assert out["mrr_10"] == pytest.approx(ref["mrr@10"])
    assert out["hit_10"] == pytest.approx(ref["hit_rate@10"])


def test_median_popularity_by_hand():
    from plugins.metrics.ranking import median_weight

    # retrievals: item0 (pop 1) x1, item1 (pop 5) x1, item2 (pop 9) x3 -> sorted 1, 5, 9, 9, 9: median 9
    assert median_weight(np.array([1, 1, 3]), np.array([1.0, 5.0, 9.0])) == 9.0
    # 1, 5, 5, 9: the lower median is 5
    assert median_weight(np.array([1, 2, 1]), np.array([1.0, 5.0, 9.0])) == 5.0
    assert np.isnan(median_weight(np.zeros(3), np.ones(3)))
