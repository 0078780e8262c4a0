import os

import pytest

from harness.errors import DataError

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
