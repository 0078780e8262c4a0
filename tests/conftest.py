import os

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from harness.errors import DataError
from harness.matching import NEG

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in a temp directory with its own dataset cache and MLflow store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MATCHBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


def tiny_suite(**over):
    suite = {
        "name": "tiny",
        "datasets": [{"name": "synthetic", "n_users": 120, "n_items": 40, "days": 30.0}],
        "split": {"name": "temporal", "horizon": 7},
        "tasks": ["itemrec", "userrec"],
        "models": [{"name": "item_pop"}, {"name": "user_pop"}, {"name": "bpr", "factors": 8, "epochs": 2}],
        "metrics": ["recall", "ndcg", "coverage", "popularity", "activeness"],
        "cutoffs": [5, 10],
        "seeds": [0],
        "tracking": {"tracker": "mlflow", "uri": "sqlite:///mlruns.db"},
        "report": {"enabled": False},
    }
    suite.update(over)
    return suite


def raises_data_error(fn, *parts):
    """Call fn, expect a DataError, and check that its message contains every part (file, line, fix...)."""
    with pytest.raises(DataError) as e:
        fn()
    msg = str(e.value)
    for part in parts:
        assert str(part) in msg, f"{part!r} not in: {msg}"
    return msg


def lp_optimum(lam, k, c_min, c_max) -> float | None:
    """HiGHS on RIM Eq. 9's relaxation (max sum lam·pi s.t. sum_y pi <= K, c_min <= sum_x pi <= c_max, 0 <= pi <= 1,
    pi = 0 on excluded pairs), None when it has no solution: the planners' reference optimum."""
    n_x, n_y = lam.shape
    rows_x = sp.kron(sp.eye(n_x), np.ones((1, n_y)))
    rows_y = sp.kron(np.ones((1, n_x)), sp.eye(n_y))
    allowed = lam > NEG / 2
    res = linprog(-np.where(allowed, lam, 0).ravel(), A_ub=sp.vstack([rows_x, -rows_y, rows_y]).tocsr(),
                  b_ub=np.concatenate([np.full(n_x, k), np.full(n_y, -c_min), np.full(n_y, c_max)]),
                  bounds=np.c_[np.zeros(n_x * n_y), allowed.ravel()], method="highs")
    return -res.fun if res.status == 0 else None


def lam_of(scores) -> np.ndarray:
    """A PlanningScores' whole lambda (excluded pairs at NEG) as a float64 numpy array, from its blocks."""
    return np.concatenate([b.cpu().numpy() for _, b in scores.blocks()]).astype(np.float64)


def csr(rows: list[list[int]], n_y: int) -> sp.csr_matrix:
    """A 0/1 states x items plan from each state's list of items."""
    r = [x for x, items in enumerate(rows) for _ in items]
    c = [y for items in rows for y in items]
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(rows), n_y))


def sets(a: sp.csr_matrix) -> list[list[int]]:
    """Each state's items of a plan, sorted."""
    a = sp.csr_matrix(a)
    return [sorted(a.indices[a.indptr[x]:a.indptr[x + 1]].tolist()) for x in range(a.shape[0])]
