"""Kill tests for the survivors reports/quality.md lists for the MLflow tracker's resume path, the report's
statistics, the CTR logloss and (none needed on the CPU) the ranking: each test names the mutants it kills."""
import math
import uuid

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import log_loss

from harness.ctr import logloss
from harness.report import statistics
from harness.report.statistics import ALPHA, MARK_W, PerQuery, _user_p, columns, paired_p
from harness.tracking import CellRecord


# ------------------------------------------------------------------------------------------------ mlflow resume
class _MemoryStore:
    """An in-memory MLflow client: just the calls the tracker's cell writes and resume search make. Its search is
    mlflow's own: the filter grammar of `SearchUtils.filter` and the offset tokens of `SearchUtils.paginate` (what
    mlflow's file store does), so a filter mlflow cannot parse fails here as it does against a real store."""

    MAX_SEARCHES = 50  # a search loop that never ends (a page token that is not followed) fails fast

    def __init__(self):
        self.experiments: dict[str, str] = {}
        self.runs: dict[str, dict] = {}
        self.searches = 0

    def get_experiment_by_name(self, name):
        from types import SimpleNamespace

        if name not in self.experiments:
            return None
        return SimpleNamespace(experiment_id=self.experiments[name], lifecycle_stage="active")

    def create_experiment(self, name, artifact_location=None, tags=None):
        self.experiments[name] = str(len(self.experiments) + 1)
        return self.experiments[name]

    def create_run(self, experiment_id, start_time=None, tags=None, run_name=None):
        from types import SimpleNamespace

        run_id = uuid.uuid4().hex
        self.runs[run_id] = {"experiment_id": experiment_id, "tags": dict(tags or {}), "status": "RUNNING",
                             "start_time": start_time or 0, "run_name": run_name}
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id))

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self.runs[run_id]["tags"].update({t.key: t.value for t in tags})

    def set_terminated(self, run_id, status="FINISHED", end_time=None):
        self.runs[run_id]["status"] = status

    def log_artifacts(self, run_id, local_dir, artifact_path=None):  # a failed cell's error.txt: not searched
        pass

    def search_runs(self, experiment_ids, filter_string="", max_results=1000, page_token=None):
        from mlflow.entities import Run, RunData, RunInfo, RunTag
        from mlflow.store.entities.paged_list import PagedList
        from mlflow.utils.search_utils import SearchUtils

        self.searches += 1
        assert self.searches <= self.MAX_SEARCHES, "the tracker keeps searching: it does not follow the page token"
        runs = [Run(RunInfo(run_id, r["experiment_id"], "", r["status"], r["start_time"], None, "active",
                            run_name=r["run_name"]), RunData(tags=[RunTag(k, v) for k, v in r["tags"].items()]))
                for run_id, r in self.runs.items() if r["experiment_id"] in experiment_ids]
        page, token = SearchUtils.paginate(SearchUtils.filter(runs, filter_string), page_token, max_results)
        return PagedList(page, token)


# mutants: _search's quote choice for the suite filter of a shared experiment (_search__mutmut_5 always ', _6
# always ", _7 'XX"XX', _8 "XX'XX" looked for, _9 the test inverted: a quote inside the suite's name ends the
# string, mlflow rejects the filter); the paging (_20 max_results=None, _21/_25 no page_token: page one again and
# again, _27 token=None: page one only, _28 `if token`: stops while pages remain)
def test_resume_finds_every_finished_cell_of_suites_with_quotes_in_a_shared_experiment_page_by_page(monkeypatch):
    pytest.importorskip("mlflow")
    from plugins.trackers import mlflow_tracker

    monkeypatch.setattr(mlflow_tracker, "PAGE", 2)  # 5 finished cells of a suite: three pages
    store = _MemoryStore()
    suites = ("it's", 'the "big" grid', "plain")
    for suite in suites:
        tracker = mlflow_tracker.MlflowTracker("http://store.invalid", experiment="shared")
        tracker._client = store
        for i in range(5):
            tracker.cell_finished(CellRecord(suite=suite, config_hash=f"{suite}/{i}", run_name=f"cell {i}",
                                             status="FINISHED", start_time=100.0 + i, end_time=101.0 + i))
        tracker.cell_finished(CellRecord(suite=suite, config_hash=f"{suite}/failed", run_name="failed",
                                         status="FAILED", error="boom", start_time=90.0, end_time=91.0))
    for suite in suites:
        reader = mlflow_tracker.MlflowTracker("http://store.invalid", experiment="shared")
        reader._client = store
        assert reader.finished_hashes(suite) == {f"{suite}/{i}" for i in range(5)}, suite


# ------------------------------------------------------------------------------------------------ report statistics
# mutants: paired_p's constant-shift tolerance (paired_p__mutmut_27: rtol 1e-9 -> numpy's 1e-5; _28: atol 1e-12 ->
# numpy's 1e-8): a difference that varies by 1e-6 of itself, or by a few 1e-9 around 1e-6, is not a constant shift,
# so the t-test p is scipy's (tiny but positive), not 0
def test_paired_p_takes_only_a_shift_constant_to_rounding_for_constant():
    base = np.array([0.3, 0.5, 0.2, 0.4])
    for d in (0.1 * (1 + np.array([0.0, 1e-6, -1e-6, 2e-6])),  # relative spread 1e-6 (mutant 27 calls it constant)
              1e-6 + np.array([0.0, 3e-9, -3e-9, 6e-9])):  # absolute spread 3e-9 (mutant 28 calls it constant)
        a = base + d
        t, w = paired_p(a, base)
        expected = stats.ttest_rel(a, base).pvalue
        assert 0.0 < expected < 1e-3
        assert t == pytest.approx(expected, rel=1e-6, abs=0)
        assert w == pytest.approx(stats.wilcoxon(a, base).pvalue)


class _Artifacts:
    """A tracker that only serves `per_query.parquet`: per run id a frame, an exception to raise, or None."""

    def __init__(self, tmp_path, served):
        self.tmp_path, self.served, self.calls = tmp_path, served, 0

    def artifact(self, run_id, path):
        self.calls += 1
        item = self.served.get(run_id)
        if isinstance(item, BaseException):
            raise item
        if item is None:
            return None
        out = self.tmp_path / f"{run_id}.parquet"
        item.to_parquet(out)
        return out


def _per_query(values, queries=None, task="itemrec", metric="ndcg_10"):
    queries = list(range(1, len(values) + 1)) if queries is None else queries
    return pd.DataFrame({"task": task, "metric": metric, "query": queries, "value": np.asarray(values, float)})


# mutants: PerQuery.values' `&` -> `|` (values__mutmut_5: rows of another task or metric kept); the str cast of the
# query column (get__mutmut_14/15 written to another column, _16 astype(None) = float); get__mutmut_19 (a store
# error caches "" instead of None: values() then indexes a string)
def test_per_query_values_keep_the_asked_task_and_metric_with_str_queries_and_none_on_a_store_error(tmp_path):
    frame = pd.concat([_per_query([0.2, 0.5]), _per_query([0.4, 0.9]),
                       _per_query([0.9, 0.9], metric="recall_10"), _per_query([0.7, 0.1], task="ctr"),
                       _per_query([0.8], queries=[3], metric="recall_10")], ignore_index=True)
    tracker = _Artifacts(tmp_path, {"run": frame, "down": OSError("store unreachable"),
                                    "old": NotImplementedError("no artifacts"), "none": None})
    pq = PerQuery(tracker)
    got = pq.values("run", "itemrec", "ndcg_10")
    assert got.to_dict() == pytest.approx({"1": 0.3, "2": 0.7})  # the two ndcg_10 rows per query, averaged
    assert list(got.index) == ["1", "2"]  # int queries read back as str, the same key as another run's "1"
    for run in ("down", "old", "none"):
        assert pq.values(run, "itemrec", "ndcg_10") is None
        assert pq.values(run, "itemrec", "ndcg_10") is None  # the cached answer too
    assert tracker.calls == 4  # one fetch per run


def _runs(method, seeds):
    return pd.DataFrame({"method": method, "seed": seeds, "run_id": [f"{method}-{s}" for s in seeds]})


# mutants: _user_p's seed intersection `&` -> `|` (_user_p__mutmut_21: the best's missing seed is looked up,
# KeyError); `va is None or vb is None` -> `and` (_37: None concatenated); `continue` -> `break` (_40: the seeds after
# a seed without artifacts are lost); the query cast again (get__mutmut_14/15/16: seed 2's int and str queries no
# longer join, so only seed 3's differences count)
def test_user_p_averages_the_per_query_differences_over_the_seeds_both_runs_have(tmp_path):
    q = np.arange(1, 7)
    b_vals = np.array([0.2, 0.3, 0.1, 0.4, 0.25, 0.35])
    d2 = np.full(6, 0.5)
    d3 = np.array([0.1, -0.2, 0.3, -0.1, 0.2, 0.4])
    served = {"m-0": _per_query(b_vals), "b-1": _per_query(b_vals),  # m-1 has no artifact
              "m-2": _per_query(b_vals + d2, queries=list(q)), "b-2": _per_query(b_vals, queries=[str(x) for x in q]),
              "m-3": _per_query(b_vals + d3), "b-3": _per_query(b_vals)}
    long_col = pd.concat([_runs("m", [0, 1, 2, 3]), _runs("b", [1, 2, 3])], ignore_index=True)  # b lacks seed 0
    got = _user_p(long_col, "m", "b", "itemrec", "ndcg_10", PerQuery(_Artifacts(tmp_path, served)))
    d = (d2 + d3) / 2  # seeds 2 and 3: every query better, so the exact two-sided p is 2 / 2**6
    assert got == pytest.approx(stats.wilcoxon(d).pvalue) and got == pytest.approx(2 / 2**6)


def _user_p_one_seed(tmp_path, a_vals, b_vals):
    served = {"m-0": _per_query(a_vals), "b-0": _per_query(b_vals)}
    long_col = pd.concat([_runs("m", [0]), _runs("b", [0])], ignore_index=True)
    return _user_p(long_col, "m", "b", "itemrec", "ndcg_10", PerQuery(_Artifacts(tmp_path, served)))


# mutants: _user_p's guard `len(d) < 2 or np.allclose(d, 0)` -> `and` (_73: one user gets wilcoxon's 1.0), `<= 2` /
# `< 3` (_74/_75: two users get NaN), `np.allclose(d, 1)` (_80: every user better by exactly 1 gets NaN)
def test_user_p_needs_two_users_and_a_difference(tmp_path):
    assert math.isnan(_user_p_one_seed(tmp_path, [0.5], [0.2]))
    assert _user_p_one_seed(tmp_path, [0.5, 0.4], [0.2, 0.3]) == pytest.approx(stats.wilcoxon([0.3, 0.1]).pvalue)
    assert _user_p_one_seed(tmp_path, [0.5, 0.4], [0.2, 0.3]) == pytest.approx(0.5)  # both better: 2 / 2**2
    hit, miss = np.ones(5), np.zeros(5)
    assert _user_p_one_seed(tmp_path, hit, miss) == pytest.approx(stats.wilcoxon(hit - miss).pvalue)
    assert math.isnan(_user_p_one_seed(tmp_path, hit, hit))


def _long(rows, direction=1, task="itemrec"):
    """Long frame rows (method, dataset, metric, seed, value) -> the columns long_frame gives."""
    df = pd.DataFrame(rows, columns=["method", "dataset", "metric", "seed", "value"])
    df["task"], df["direction"] = task, direction
    df["run_id"] = df["method"] + "-" + df["seed"].astype(str)
    return df


# mutant: _tests' seed intersection `&` -> `|` (_tests__mutmut_22: a method missing one seed of the best makes the
# best's seed be looked up for it, KeyError): the t-test pairs the seeds both have
def test_tests_pair_only_the_seeds_both_methods_have():
    best = [0.50, 0.52, 0.55, 0.49]
    other = [0.40, 0.47, 0.41]  # no seed 3
    long = _long([("best", "synthetic", "ndcg_10", s, v) for s, v in enumerate(best)]
                 + [("other", "synthetic", "ndcg_10", s, v) for s, v in enumerate(other)])
    (col,) = columns(long, "itemrec", None)
    assert col.best == ["best"] and col.second == ["other"]
    assert col.tests["other"]["p_t"] == pytest.approx(stats.ttest_rel(other, best[:3]).pvalue)
    assert col.tests["other"]["p_wilcoxon"] == pytest.approx(stats.wilcoxon(other, best[:3]).pvalue)


# mutants: columns' groupby `sort=False` -> `sort=None` / default / `sort=True` (columns__mutmut_7/9/14: the columns
# come out sorted, not in the order the suite gave them)
def test_columns_keep_the_order_of_the_long_frame():
    rows = []
    for dataset, metric in (("synthetic", "recall_10"), ("synthetic", "ndcg_10"), ("amazon", "recall_10")):
        rows += [(m, dataset, metric, s, v + s / 100) for m, v in (("a", 0.3), ("b", 0.2)) for s in range(3)]
    got = [(c.dataset, c.metric) for c in columns(_long(rows), "itemrec", None)]
    assert got == [("synthetic", "recall_10"), ("synthetic", "ndcg_10"), ("amazon", "recall_10")]


# mutant: columns' ranking rounding `round(12)` -> `round(13)` (columns__mutmut_36): means equal to 12 decimals
# (4e-13 apart) tie as best
def test_means_equal_to_twelve_decimals_tie_as_best():
    rows = [("a", "synthetic", "ndcg_10", 0, 0.5), ("b", "synthetic", "ndcg_10", 0, 0.5 + 4e-13),
            ("c", "synthetic", "ndcg_10", 0, 0.3)]
    (col,) = columns(_long(rows), "itemrec", None)
    assert sorted(col.best) == ["a", "b"] and col.second == ["c"]


# mutant: columns' `if sign` -> `if sign or True` (columns__mutmut_39): a descriptive metric (direction 0) ranks no
# method, even when one method's mean is infinite (0 * inf is NaN, which the mutant then ranks)
def test_a_descriptive_metric_has_no_best_second_or_tests():
    rows = [(m, "synthetic", "popularity", s, v) for m, v in (("a", 3.0), ("b", 5.0), ("c", math.inf))
            for s in range(2)]
    (col,) = columns(_long(rows, direction=0), "itemrec", None)
    assert (col.best, col.second, col.marks, col.tests) == ([], [], {}, {})


# mutant: columns' marker test `< ALPHA` -> `<= ALPHA` (columns__mutmut_79): a Holm p-value of exactly ALPHA is not
# significant. One other method, so Holm leaves its p as is; paired_p stubbed to give exactly ALPHA for the t-test
def test_a_holm_p_value_of_exactly_alpha_gets_no_marker(monkeypatch):
    monkeypatch.setattr(statistics, "paired_p", lambda a, b: (ALPHA, ALPHA / 2))
    rows = [(m, "synthetic", "ndcg_10", s, v + s / 100) for m, v in (("a", 0.3), ("b", 0.2)) for s in range(3)]
    (col,) = columns(_long(rows), "itemrec", None)
    assert col.tests["b"]["p_t_holm"] == ALPHA and col.tests["b"]["p_wilcoxon_holm"] == ALPHA / 2
    assert col.marks == {"b": MARK_W}


# ------------------------------------------------------------------------------------------------ CTR logloss
# mutants: logloss' `np.asarray(prob, dtype=np.float64)` -> dtype None / dropped (logloss__mutmut_14/16: float32
# probabilities clipped and logged in float32, ~1e-7 off)
def test_logloss_of_float32_probabilities_is_computed_in_float64():
    rng = np.random.default_rng(7)
    prob = rng.uniform(0.01, 0.99, 200).astype(np.float32)
    label = (rng.random(200) < prob).astype(np.int64)
    p = prob.astype(np.float64)
    by_hand = -np.mean(label * np.log(p) + (1 - label) * np.log(1 - p))
    assert logloss(label, prob) == pytest.approx(by_hand, rel=1e-12, abs=0)
    assert logloss(label, prob) == pytest.approx(log_loss(label, p), rel=1e-12, abs=0)
