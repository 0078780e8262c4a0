"""The ranking engine against a brute-force full sort, with ties, masks and any block size."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from harness.ranking import block_rows, factor_scorer, topk_block, topk_rows


def reference_topk(scores: np.ndarray, k: int, exclude=None):
    """Full stable sort: descending score, ties to the lower column index."""
    s = scores.astype(np.float32).copy()
    if exclude is not None:
        s[exclude.toarray() > 0] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(s.shape[1]), s.shape), -s), axis=1)[:, :k]
    return order


def tied_scores(n, m, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4, size=(n, m)).astype(np.float32)  # heavy ties


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_topk_block_breaks_ties_by_lower_index(k):
    s = tied_scores(50, 40)
    vals, idx = topk_block(torch.as_tensor(s), k)
    np.testing.assert_array_equal(idx.numpy(), reference_topk(s, k))
    np.testing.assert_array_equal(vals.numpy(), np.take_along_axis(s, idx.numpy(), 1))


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_topk_rows_is_independent_of_block_size_and_masks(block):
    s = tied_scores(200, 30, seed=1)
    excl = sp.random(200, 30, density=0.2, random_state=3, format="csr")
    st = torch.as_tensor(s)
    got = topk_rows(lambda rows: st[torch.as_tensor(rows)], 200, 30, 5, exclude=excl, block_size=block)
    np.testing.assert_array_equal(got.index, reference_topk(s, 5, excl))


def test_factor_scorer_matches_matmul_and_subset():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(100, 8, generator=g), torch.randn(60, 8, generator=g)
    rows = np.array([5, 3, 99, 0])
    full = topk_rows(factor_scorer(u, v), 100, 60, 10, block_size=13)
    sub = topk_rows(factor_scorer(u, v, rows), 4, 60, 10)
    np.testing.assert_array_equal(sub.index, full.index[rows])
    ref = reference_topk((u @ v.T).numpy(), 10)
    np.testing.assert_array_equal(full.index, ref)


def test_block_size_respects_the_memory_budget():
    n_cols = 50_000
    rows = block_rows(n_cols, budget_mib=256)
    assert rows * n_cols * 12 <= 256 * 2**20
    assert block_rows(n_cols, budget_mib=1) >= 1
