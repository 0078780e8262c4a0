"""Tests for the mutants that survived a hand mutation run (issue 13): each one fails when its mutant is applied.
A one-line comment above each test names the mutant it kills."""
import contextlib
import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from test_planners import dense, lam_of, lp_relaxation

from harness.data import Dataset, Interactions, from_events
from harness.errors import DataError
from harness.evaluate import ScoreSource
from harness.report import write_report
from harness.splits import EvalSet, UserStates
from harness.tracking import CellRecord, Tracker
from plugins.datasets.synthetic import WorldTruth
from plugins.planners.dual import Dual
from plugins.planners.greedy import Greedy
from plugins.splits.next_n_day import NextNDaySplit


# ------------------------------------------------------------------------------------------------ dual planner
# mutant: dual.py u-step `us.append(root.clamp_min(0.0))` -> `us.append(root)` (the u >= 0 projection dropped)
@pytest.mark.parametrize("seed", [0, 1])
def test_dual_with_sparse_scores_and_a_binding_cap_matches_the_lp(seed):
    """Most states have fewer than K positive scores, so their unprojected u root is negative; one item is wanted by
    half the states and its cap binds. The plan must still reach HiGHS's optimum (the mutant plans nothing)."""
    rng = np.random.default_rng(seed)
    n_x, n_y, k, c_max = 60, 20, 3, 6
    S = rng.random((n_x, n_y)) * (rng.random((n_x, n_y)) < 0.08)
    hot = rng.random(n_x) < 0.5
    S[hot, 0] = rng.uniform(0.5, 1.0, hot.sum())  # distinct values: the cap falls between two of them
    assert (np.count_nonzero(S, axis=1) < k).mean() > 0.5
    scores = dense(S, seed=seed)
    lam = lam_of(scores)
    opt, _ = lp_relaxation(lam, k, 0, c_max)
    a = Dual(alpha=k / n_y, beta_max=c_max / n_x, steps=5).plan(scores).assignment.toarray()
    assert abs((a * lam).sum() / opt - 1) < 0.01
    assert a[:, 0].sum() == c_max                          # the cap binds, exactly here
    assert (a.sum(1) <= k).all() and (a.sum(0) <= c_max + 1).all()


# ------------------------------------------------------------------------------------------------ greedy planner
def sequential_greedy(S, k, c_min, c_max):
    """The two-phase greedy as the planner's docstring states it, one pair at a time in global score order."""
    n_x, n_y = S.shape
    order = np.argsort(-S, axis=None, kind="stable")
    total = min(n_x * k, c_min * n_y)
    k1, c1 = min(k, -(-total // n_x)), min(c_min, total // n_y)
    a = np.zeros((n_x, n_y), int)
    for cap_x, cap_y in ((np.full(n_x, k1), np.full(n_y, c1)), (np.full(n_x, k), np.full(n_y, c_max))):
        for p in order:
            x, y = divmod(int(p), n_y)
            if not a[x, y] and a[x].sum() < cap_x[x] and a[:, y].sum() < cap_y[y]:
                a[x, y] = 1
    return a


# mutant: greedy.py phase 2 item cap `np.maximum(c_max_i - expo, 0)` -> `np.full(n_y, c_max_i)` (phase-1 exposure
# ignored, so an item can end with up to phase-1 + beta_max·|X| states)
def test_greedy_with_beta_and_beta_max_keeps_the_item_cap_over_both_phases():
    rng = np.random.default_rng(0)
    n_x, n_y, alpha, beta, beta_max = 20, 10, 0.3, 0.1, 0.25   # K = 3, C_min = 2, C_max = 5
    S = rng.random((n_x, n_y)) + np.linspace(2.0, 0.0, n_y)  # popular items: everyone wants items 0, 1, 2
    a = Greedy(alpha=alpha, beta=beta, beta_max=beta_max).plan(dense(S)).assignment.toarray()
    exposure = a.sum(0)
    assert exposure.max() == 5 and (exposure >= 2).all() and (a.sum(1) <= 3).all()
    np.testing.assert_array_equal(a, sequential_greedy(lam_of(dense(S)), 3, 2, 5))


# ------------------------------------------------------------------------------------------------ next_n_day
# mutant: next_n_day.py `train = x.subset(x.time < earliest)` -> `<=` (an event exactly at the cut leaks into train)
def test_next_n_day_event_exactly_at_the_earliest_cut_is_not_trained_on():
    rows = [(0, 0, 1.0), (0, 1, 2.0), (0, 2, 8.0), (1, 0, 1.5), (1, 2, 8.0), (1, 1, 9.0), (0, 1, 10.0)]
    u, i, t = (np.array(c) for c in zip(*rows, strict=True))
    x = Interactions(user=u, item=i, time=t.astype(float), n_users=2, n_items=3, time_unit="day")
    split = NextNDaySplit(n=2, min_count=1).split(Dataset("toy", x, np.arange(2), np.arange(3)), 0)
    assert split.info["cut"] == 8.0                                  # last time 10 - 2 days
    assert (split.train.time < 8.0).all() and len(split.train) == 3  # the two events at t=8 are targets
    assert sorted(split.test.targets[0].indices.tolist()) == [1, 2] and 2 in split.test.targets[1].indices


# ------------------------------------------------------------------------------------------------ report
class RunsTracker(Tracker):
    def __init__(self, frame):
        self.frame = frame

    def runs(self, suite):
        return self.frame.copy()

    def curve(self, run_id, metric):
        return []

    def artifact(self, run_id, path):
        return None


# mutant: report/aggregation.py `direction` fallback `-1 if family.endswith("loss") else 1` -> `1` (runs recorded
# without the matchbench.directions tag: a logloss bolded at its maximum)
def test_report_without_direction_tags_bolds_the_smallest_logloss(tmp_path):
    runs = pd.DataFrame([{"run_id": m, "run_name": m, "status": "FINISHED", "config_hash": m, "wall_time": 1.0,
                          "params.model": m, "params.dataset": "d", "params.seed": "0", "params.loss": "none",
                          "metrics.ctr/logloss": ll, "metrics.ctr/auc": auc}
                         for m, ll, auc in (("a", 0.3, 0.61), ("b", 0.5, 0.72))])
    md = write_report(RunsTracker(runs), "fake", tmp_path).read_text()
    assert "logloss ↓" in md and "auc ↑" in md
    assert "**0.3000**" in md and "**0.5000**" not in md   # lower is better
    assert "**0.7200**" in md and "**0.6100**" not in md   # the rest: higher is better


# ------------------------------------------------------------------------------------------------ synthetic truth
# mutant: synthetic.py WorldTruth.joint() `self.item_given_user() / self.n_users` -> `self.item_given_user()`
def test_joint_of_a_world_without_events_sums_to_one():
    rng = np.random.default_rng(0)
    n_users, n_items = 5, 4
    truth = WorldTruth(theta=rng.normal(size=(n_users, 3)), phi=rng.normal(size=(n_items, 3)), b=rng.normal(size=4),
                       mu=np.ones(n_users), alpha=np.zeros(n_users), beta=1.0, gamma=0.0, taste_scale=1.0, days=1.0,
                       joint_counts=np.zeros((n_users, n_items)))
    j = truth.joint()
    assert j.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(truth.user_marginal(), np.full(n_users, 1 / n_users))
    np.testing.assert_allclose(j * n_users, truth.item_given_user())


# ------------------------------------------------------------------------------------------------ from_events
# mutant: data.py from_events NaN / negative id checks over `("user",)` instead of `("user", "item")`
@pytest.mark.parametrize("bad,message", [(np.nan, "line 4: item is empty/NaN"), (-2, "line 4: negative item id -2")])
def test_from_events_names_a_bad_item_id(bad, message):
    df = pd.DataFrame({"user": [1, 2, 3], "item": [5.0, bad, 7.0], "time": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError, match=message):
        from_events("t", df, "s", where="events.csv", lines=np.array([3, 4, 5]))


# ------------------------------------------------------------------------------------------------ ranking
class ScoreOnly:
    """A model without factors: score_block only (as the RIM intensity models)."""

    def __init__(self, scores):
        self.scores = scores

    def factors(self, states):
        return None

    def score_block(self, states, rows):
        return self.scores[np.asarray(rows)]


class Factored(ScoreOnly):
    def factors(self, states):
        return self.scores, np.eye(self.scores.shape[1], dtype=np.float32)


def brute_topk(scores, k, exclude):
    s = np.where(exclude.toarray() > 0, -np.inf, scores)
    return np.lexsort((np.broadcast_to(np.arange(s.shape[1]), s.shape), -s), axis=1)[:, :k]


# mutants: ranking.mask_block `exclude[rows]` -> `exclude[:rows.stop - rows.start]`; evaluate.item_topk
# `exclude[state_rows]` -> `exclude`; evaluate._user_topk_streamed `excl_c[:, blk]` ->
# `excl_c[:, :blk.stop - blk.start]` (each masks the seen items of other rows than the block's)
@pytest.mark.parametrize("model", [ScoreOnly, Factored])
@pytest.mark.parametrize("block", [2, 5, 100])
def test_seen_items_are_masked_on_their_own_rows_in_every_block(model, block):
    rng = np.random.default_rng(1)
    n_states, n_items, k = 12, 9, 3
    scores = rng.permutation(n_states * n_items).reshape(n_states, n_items).astype(np.float32)
    exclude = sp.csr_matrix(rng.random((n_states, n_items)) < 0.3)
    states = UserStates(user=np.arange(n_states), time=np.zeros(n_states), hist_ptr=np.zeros(n_states + 1, np.int64),
                        hist_item=np.zeros(0, np.int64), hist_time=np.zeros(0))
    evalset = EvalSet(states, sp.csr_matrix((n_states, n_items)))
    source = ScoreSource(model(scores), evalset, n_items, torch.device("cpu"))
    rows = np.array([7, 2, 11, 0, 5, 9, 3])  # a subset, out of order: block rows are not state rows
    got = source.item_topk(rows, k, exclude, 256.0, block)
    np.testing.assert_array_equal(got.index, brute_topk(scores[rows], k, exclude[rows]))
    items = np.array([4, 0, 8, 2])
    got_u = source.user_topk(items, k, exclude.T.tocsr(), 256.0, block)
    np.testing.assert_array_equal(got_u.index, brute_topk(scores.T[items], k, exclude.T.tocsr()[items]))


# ------------------------------------------------------------------------------------------------ mlflow resume
# mutant: mlflow_tracker.finished_hashes without `attributes.status = 'FINISHED'` (a cell tagged FINISHED whose
# MLflow run ended FAILED, e.g. after a failed artifact upload, would be skipped for good on resume)
def test_a_cell_whose_run_ended_failed_is_not_finished(tmp_path):
    pytest.importorskip("mlflow")
    from plugins.trackers.mlflow_tracker import MlflowTracker

    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlruns.db'}")
    tracker.suite_started("resume", {}, 2)
    now = time.time()
    ok = CellRecord(suite="resume", config_hash="ok", run_name="ok", status="FINISHED", params={"seed": 0},
                    metrics={"itemrec/recall_10": 0.5}, start_time=now - 1, end_time=now)
    lost = CellRecord(suite="resume", config_hash="lost", run_name="lost", status="FINISHED", params={"seed": 1},
                      metrics={"itemrec/recall_10": 0.4}, start_time=now - 1, end_time=now,
                      artifacts={"per_query.parquet": tmp_path / "missing" / "per_query.parquet"})
    tracker.cell_finished(ok)
    with contextlib.suppress(Exception):  # the upload fails (whatever it raises): the run is closed FAILED
        tracker.cell_finished(lost)
    tracker.suite_finished()
    runs = tracker.runs("resume").set_index("config_hash")
    assert runs.loc["lost", "tags.matchbench.status"] == "FINISHED" and runs.loc["lost", "run_status"] == "FAILED"
    assert tracker.finished_hashes("resume") == {"ok"}
