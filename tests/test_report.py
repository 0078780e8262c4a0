"""The report writer and results tables, on a hand-made in-memory tracker (no MLflow) and once end to end
through the MLflow tracker; the labels the suite gives a cell, written as run tags and read back by the report."""
import json
import time

import numpy as np
import pandas as pd
import pytest

from harness import report
from harness.report import holm, results_csv, results_json, results_markdown, results_table, write_report
from harness.tracking import CellRecord, Tracker

NDCG10 = {"bpr(factors=64)": [0.30, 0.31, 0.32],  # best
          "bpr(factors=8)": [0.295, 0.325, 0.305],  # noise around the best -> second, no marker
          "item_pop": [0.10, 0.12, 0.11]}  # far below, consistently -> marker
NDCG5 = {"bpr(factors=64)": [0.20, 0.21, 0.22], "bpr(factors=8)": [0.19, 0.20, 0.21], "item_pop": [0.05, 0.06, 0.07]}
N_QUERIES = 60


class FakeTracker(Tracker):
    """Holds a runs frame, curves and per-query artifacts in memory."""

    def __init__(self, frame, curves, artifacts):
        self.frame, self.curves, self.artifacts = frame, curves, artifacts

    def runs(self, suite):
        return self.frame.copy() if suite == "fake" else pd.DataFrame(columns=["run_id", "status"])

    def curve(self, run_id, metric):
        return self.curves.get((run_id, metric), [])

    def artifact(self, run_id, path):
        return self.artifacts.get((run_id, path))


@pytest.fixture
def fake(tmp_path):
    rows, curves, artifacts = [], {}, {}
    base = np.random.default_rng(0).uniform(0.2, 0.8, size=N_QUERIES)
    for method in NDCG10:
        model, factors = ("bpr", method[len("bpr(factors="):-1]) if method.startswith("bpr") else ("item_pop", None)
        for seed in range(3):
            rid = f"{model}-{factors}-{seed}"
            row = {"run_id": rid, "run_name": f"{method} · synthetic · temporal · seed {seed}", "status": "FINISHED",
                   "config_hash": rid, "wall_time": 1.5 + seed, "reason": None, "error": None,
                   "tags.matchbench.method": method, "tags.matchbench.dataset_label": "synthetic",
                   "params.model": model, "params.dataset": "synthetic", "params.split": "temporal",
                   "params.loss": "bpr" if model == "bpr" else "none", "params.seed": str(seed),
                   "params.dataset.n_users": "100", "params.split.info.n_train": str(900 + seed),
                   "metrics.itemrec/ndcg_10": NDCG10[method][seed], "metrics.itemrec/ndcg_5": NDCG5[method][seed],
                   "metrics.itemrec/n_queries": 60.0, "metrics.itemrec/popularity_10": 3.0 + seed,
                   "metrics.truth/pmi_corr": 0.5 + 0.1 * seed, "metrics.wall_time_s": 1.5 + seed,
                   "metrics.time/fit_s": 1.0, "metrics.valid/ndcg_10": 0.4}
            if factors:
                row["params.model.factors"] = factors
                row["params.model.epochs"] = "5"  # does not vary: not in the label
                row["metrics.train/loss"] = 0.4
                curves[(rid, "train/loss")] = [(0, 1.0), (1, 0.6), (2, 0.4)]
            # per-query values: item_pop far below the best on every user; bpr(8) symmetric noise around it
            if method == "item_pop":
                values = base - 0.2
            elif method == "bpr(factors=8)":
                values = base + np.where(np.arange(N_QUERIES) % 2 == 0, 0.03, -0.03)
            else:
                values = base
            pq = pd.DataFrame({"task": "itemrec", "metric": "ndcg_10", "query": np.arange(N_QUERIES), "value": values})
            path = tmp_path / f"{rid}.parquet"
            pq.to_parquet(path)
            artifacts[(rid, "per_query.parquet")] = path
            rows.append(row)
    rows.append({"run_id": "skip", "run_name": "bpr · synthetic · seed 0 (bce)", "status": "SKIPPED",
                 "config_hash": "skip", "wall_time": 0.0, "reason": "loss 'bce' is pointwise; bpr accepts pairwise",
                 "error": None, "tags.matchbench.method": "bpr", "params.model": "bpr", "params.dataset": "synthetic",
                 "params.seed": "0",
                 "params.loss": "bce"})
    rows.append({"run_id": "fail", "run_name": "broken · synthetic · seed 0", "status": "FAILED",
                 "config_hash": "fail", "wall_time": 0.2, "reason": None,
                 "error": "Traceback (most recent call last):\n  File x\nRuntimeError: this model always fails",
                 "params.model": "broken", "params.dataset": "synthetic", "params.seed": "0", "params.loss": "none",
                 "metrics.itemrec/ndcg_10": 0.99})  # FAILED cells never enter the tables
    return FakeTracker(pd.DataFrame(rows), curves, artifacts)


def test_holm_by_hand():
    # sorted: 0.01*3 = 0.03; 0.03*2 = 0.06; 0.04*1 = 0.04 -> max(0.06, 0.04) = 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # min(1, 2*0.5) = 1, then monotone
    out = holm([0.02, float("nan"), 0.01])  # NaN does not count towards m
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_results_table_aggregates_over_seeds(fake):
    t = results_table(fake, "fake")
    assert list(t.columns) == ["task", "method", "dataset", "metric", "mean", "std", "n_seeds"]
    assert set(t.task) == {"itemrec", "truth"}  # train/, time/ and wall_time_s are left out
    assert set(t.method) == {"bpr(factors=64)", "bpr(factors=8)", "item_pop"}
    assert set(t.dataset) == {"synthetic"}  # n_users does not vary, split.info.* never counts
    row = t[(t.method == "item_pop") & (t.metric == "ndcg_10")].iloc[0]
    assert row["mean"] == pytest.approx(0.11) and row["std"] == pytest.approx(0.01) and row["n_seeds"] == 3
    assert 0.99 not in set(t["mean"])  # the FAILED cell is not in it
    assert results_table(fake, "nothing-here").empty


def test_table_bold_underline_and_markers(fake):
    md = results_markdown(fake, "fake")
    itemrec = md.split("## Truth")[0]
    lines = {ln.split(" | ")[0].lstrip("| "): ln for ln in itemrec.splitlines() if ln.startswith("| ")}
    header = lines["method"].split(" | ")
    i10 = next(i for i, h in enumerate(header) if h.startswith("ndcg_10"))
    cells = {m: lines[m].split(" | ")[i10] for m in ("bpr(factors=64)", "bpr(factors=8)", "item_pop")}
    assert cells["bpr(factors=64)"] == "**0.3100 ± 0.0100**"
    assert cells["bpr(factors=8)"] == "<u>0.3083 ± 0.0153</u>"  # noise: no marker
    # large and consistent: paired t-test over seeds and Wilcoxon over users; Wilcoxon over 3 seeds cannot be
    assert cells["item_pop"] == "0.1100 ± 0.0100†§"
    assert "n_queries" not in lines["method"]  # counts are not results
    assert "popularity_10" in lines["method"]  # descriptive metric shown ...
    ipop = header.index(next(h for h in header if h.startswith("popularity_10")))
    assert "**" not in "".join(lines[m].split(" | ")[ipop] for m in cells)  # ... but never bolded
    assert "## Truth" in md and "Holm" in md and "†" in md
    truth = md.split("## Truth")[1]
    assert "**" not in truth.split("Mean ±")[0]  # every method ties: nothing is best

    sig = report.significance(fake, "fake")
    s = sig[(sig.metric == "ndcg_10")].set_index("method")
    assert s.loc["item_pop", "p_t_holm"] < 0.05 and s.loc["item_pop", "p_users_holm"] < 0.05
    assert s.loc["bpr(factors=8)", "p_t_holm"] > 0.05 and s.loc["bpr(factors=8)", "p_users_holm"] > 0.05
    assert s.loc["item_pop", "p_wilcoxon"] == pytest.approx(0.25)


def test_write_report_cells_and_plots(fake, tmp_path):
    path = write_report(fake, "fake", tmp_path / "reports")
    assert path == tmp_path / "reports" / "fake.md"
    md = path.read_text()
    assert "## Task: itemrec" in md and "## Cells" in md
    assert "## Task: valid" not in md and "## Task: time" not in md  # curves logged while fitting: no table
    assert "### Skipped cells" in md and "loss 'bce' is pointwise; bpr accepts pairwise" in md
    assert "### Failed cells" in md and "RuntimeError: this model always fails" in md
    assert "3.50" in md  # per-cell wall time
    pngs = sorted(p.name for p in (tmp_path / "reports" / "fake").glob("*.png"))
    assert "curve_train_loss_synthetic.png" in pngs and "vs_k_itemrec_ndcg.png" in pngs
    for name in pngs:
        assert f"(fake/{name})" in md


def test_csv_and_json(fake):
    csv = results_csv(fake, "fake")
    assert csv.splitlines()[0] == "task,method,dataset,metric,mean,std,n_seeds"
    recs = json.loads(results_json(fake, "fake"))
    assert {"task", "method", "dataset", "metric", "mean", "std", "n_seeds"} == set(recs[0])


def test_end_to_end_through_mlflow(tmp_path):
    pytest.importorskip("mlflow")
    from plugins.trackers.mlflow_tracker import MlflowTracker

    tr = MlflowTracker(f"sqlite:///{tmp_path / 'mlruns.db'}")
    tr.suite_started("e2e", {"name": "e2e"}, 4)
    now = time.time()
    for model, shift in (("item_pop", 0.0), ("bpr", 0.2)):
        for seed in (0, 1):
            tr.cell_finished(CellRecord(
                suite="e2e", config_hash=f"{model}{seed}", run_name=f"{model} seed {seed}", status="FINISHED",
                params={"model": model, "dataset": "synthetic", "seed": seed, "loss": "none"},
                metrics={"itemrec/ndcg_10": 0.1 + shift + 0.01 * seed, "itemrec/ndcg_5": 0.05 + shift},
                curves={"train/loss": [(0, 1.0), (1, 0.5)]} if model == "bpr" else {},
                start_time=now - 1, end_time=now))
    tr.suite_finished()
    path = write_report(tr, "e2e", tmp_path / "reports")
    md = path.read_text()
    assert path.exists() and "ndcg_10" in md and "**0.3050 ± 0.0071**" in md
    assert (tmp_path / "reports" / "e2e" / "vs_k_itemrec_ndcg.png").exists()
    assert (tmp_path / "reports" / "e2e" / "curve_train_loss_synthetic.png").exists()


def test_report_metrics_option_limits_the_columns(fake, tmp_path):
    full = write_report(fake, "fake", tmp_path / "all").read_text()
    assert "ndcg_10" in full and "ndcg_5" in full and "popularity_10" in full
    md = write_report(fake, "fake", tmp_path, metrics=["ndcg_10", "popularity"]).read_text()
    assert "ndcg_10" in md and "popularity_10" in md and "ndcg_5" not in md


def test_ranking_survives_nan_and_rounding_edge_cases(tmp_path):
    runs = []
    for seed in range(2):
        # 498.89451094797147: pandas' and Python's round(x, 12) disagree on it (the report once crashed there)
        for model, v in (("a", 498.89451094797147), ("b", 0.4), ("c", float("nan"))):
            runs.append({"run_id": f"{model}{seed}", "run_name": f"{model} {seed}", "status": "FINISHED",
                         "config_hash": f"{model}{seed}", "wall_time": 1.0, "reason": None, "error": None,
                         "params.model": model, "params.dataset": "d", "params.split": "s", "params.loss": "none",
                         "params.seed": str(seed), "metrics.matching/dual/item_perplexity": v})
    md = write_report(FakeTracker(pd.DataFrame(runs), {}, {}), "fake", tmp_path).read_text()
    line = next(row for row in md.splitlines() if row.startswith("| a "))
    assert "**" in line


def test_two_configurations_under_one_label_count_once_newest_first(tmp_path):
    runs = []
    for n, (value, start) in enumerate(((0.1, 1000), (0.9, 2000))):  # an old configuration, then a new one
        for model, v in (("a", value), ("b", 0.5)):
            runs.append({"run_id": f"{model}{n}", "run_name": model, "status": "FINISHED", "config_hash": f"{model}{n}",
                         "wall_time": 1.0, "reason": None, "error": None, "start_time": start,
                         "params.model": model, "params.dataset": "d", "params.split": "s", "params.loss": "none",
                         "params.seed": "0", "metrics.itemrec/ndcg_10": v})
    table = results_table(FakeTracker(pd.DataFrame(runs), {}, {}), "fake")
    a = table[(table.method == "a") & (table.metric == "ndcg_10")]
    assert len(a) == 1 and a["mean"].iloc[0] == 0.9 and a["n_seeds"].iloc[0] == 1
    text = write_report(FakeTracker(pd.DataFrame(runs), {}, {}), "fake", tmp_path).read_text()
    cells = text[text.index("## Cells"):]
    # the cells table lists each cell once, its newest record, and says how many older records it left out
    assert "2 cells: 2 FINISHED" in cells and "(2 older records of these cells" in cells, cells
    assert sum(line.startswith("| a |") for line in cells.splitlines()) == 1


def test_cells_sharing_a_run_name_but_not_a_label_are_listed_apart(tmp_path):
    """Run names leave out parameters (bce_neg's `negatives`): two cells named alike but labelled apart by the suite
    are two cells, not one cell with an older record."""
    runs = [{"run_id": f"r{n}", "run_name": "bce_neg · d · seed 0", "status": "FINISHED", "config_hash": f"h{n}",
             "wall_time": 1.0, "reason": None, "error": None, "start_time": 1000 + n, "params.model": "m",
             "params.dataset": "d", "params.split": "s", "params.loss": "bce_neg", "params.loss.negatives": neg,
             "params.seed": "0", "metrics.itemrec/ndcg_10": 0.1 * (n + 1), "tags.matchbench.method": f"m · {neg}"}
            for n, neg in enumerate(("user", "item"))]
    text = write_report(FakeTracker(pd.DataFrame(runs), {}, {}), "fake", tmp_path).read_text()
    cells = text[text.index("## Cells"):]
    assert "2 cells: 2 FINISHED" in cells and "older records" not in cells, cells


def test_configs_the_suite_no_longer_has_are_left_out(tmp_path):
    """A default that changed gives a model new parameters and a new config hash; with the suite's current hashes
    the old records neither enter the tables nor appear as an extra method labelled by the changed parameter."""
    runs = [{"run_id": f"r{n}", "run_name": f"rnn · seed {n}", "status": "FINISHED", "config_hash": h,
             "wall_time": 1.0, "reason": None, "error": None, "start_time": 1000 + n, "params.model": "rnn",
             "params.model.epochs": e, "params.dataset": "d", "params.split": "s", "params.loss": "none",
             "params.seed": "0", "metrics.itemrec/ndcg_10": v, "tags.matchbench.method": label}
            for n, (h, e, v, label) in enumerate((("old", "20", 0.1, "rnn(epochs=20)"), ("new", "15", 0.3, "rnn")))]
    tracker = FakeTracker(pd.DataFrame(runs), {}, {})
    assert set(results_table(tracker, "fake").method) == {"rnn", "rnn(epochs=20)"}
    table = results_table(tracker, "fake", configs=["new"])
    assert list(table.method.unique()) == ["rnn"] and table["mean"].iloc[0] == 0.3
    text = write_report(tracker, "fake", tmp_path, configs=["new"]).read_text()
    assert "epochs=20" not in text and "1 cells: 1 FINISHED" in text


def test_metric_directions_come_from_the_cells_tag(tmp_path):
    """A metric plugin or task declares its direction (tag matchbench.directions); the report bolds and marks
    by it: descriptive metrics are never bolded, lower-is-better ones bold their minimum."""
    import json as _json

    from conftest import tiny_suite

    from harness.registry import Registry
    from harness.runner import metric_directions
    from harness.suite import build_suite

    runs = []
    for m, (pop, err, ll) in {"a": (5.0, 0.2, 0.3), "b": (9.0, 0.1, 0.5)}.items():
        runs.append({"run_id": m, "run_name": m, "status": "FINISHED", "config_hash": m, "wall_time": 1.0,
                     "params.model": m, "params.dataset": "d", "params.seed": "0", "params.loss": "none",
                     "tags.matchbench.directions": _json.dumps({"popularity": 0, "err": -1, "logloss": -1}),
                     "metrics.itemrec/popularity_10": pop, "metrics.itemrec/err_10": err, "metrics.ctr/logloss": ll})
    md = write_report(FakeTracker(pd.DataFrame(runs), {}, {}), "fake", tmp_path).read_text()
    assert "| popularity_10 |" in md.replace(" ↑", "").replace(" ↓", "") and "popularity_10 ↑" not in md
    assert "**9.0000" not in md and "**5.0000" not in md          # descriptive: never bold
    assert "err_10 ↓" in md and "**0.1000" in md                   # declared lower-is-better: b's 0.1 is best
    assert "logloss ↓" in md and "**0.3000" in md
    reg = Registry.load()
    cell = build_suite(tiny_suite(metrics=["recall", "popularity"], tasks=["itemrec", "matching"],
                                  planners=[{"name": "topk"}]), reg).cells[0]
    d = metric_directions(cell, reg)
    assert d["recall"] == 1 and d["popularity"] == 0 and d["delivered_share"] == 0 and "logloss" not in d


def test_the_report_reads_labels_from_the_run_tags(tmp_path):
    """The suite names a cell's method and data once; the report shows the tags, whatever the params suggest.
    Runs recorded without the tags fall back to the model and dataset names."""
    runs = []
    for seed in range(2):
        for model, factors, tag, v in (("bpr", "64", "X", 0.3), ("bpr", "8", "Y · bce", 0.2),
                                       ("item_pop", None, None, 0.1)):
            row = {"run_id": f"{model}{factors}{seed}", "run_name": f"{model} {factors} {seed}", "status": "FINISHED",
                   "config_hash": f"{model}{factors}{seed}", "wall_time": 1.0, "params.model": model,
                   "params.model.factors": factors, "params.dataset": "synthetic", "params.split": "temporal",
                   "params.loss": "bpr", "params.seed": str(seed), "metrics.itemrec/ndcg_10": v + 0.01 * seed}
            if tag:
                row.update({"tags.matchbench.method": tag,
                            "tags.matchbench.dataset_label": "synthetic / temporal(h=7)"})
            runs.append(row)
    tracker = FakeTracker(pd.DataFrame(runs), {}, {})
    table = results_table(tracker, "fake")
    assert set(zip(table.method, table.dataset, strict=False)) == {("X", "synthetic / temporal(h=7)"),
                                                                   ("item_pop", "synthetic"),
                                                                   ("Y · bce", "synthetic / temporal(h=7)")}
    md = write_report(tracker, "fake", tmp_path).read_text()
    assert "| X |  | **0.3050 ± 0.0071** |" in md and "| item_pop | 0.1050 ± 0.0071 |  |" in md
    assert "factors=" not in md
    # given the suite, its labels win for its configurations (tags recorded under an older grid, or none)
    labels = {f"bpr64{seed}": {"method": "bpr(factors=64)", "data": "synthetic"} for seed in range(2)}
    table = results_table(tracker, "fake", labels=labels)
    assert set(zip(table.method, table.dataset, strict=False)) == {("bpr(factors=64)", "synthetic"),
                                                                   ("item_pop", "synthetic"),
                                                                   ("Y · bce", "synthetic / temporal(h=7)")}


def test_the_suite_labels_reach_the_run_tags():
    """Labels are computed at suite expansion: the loss names the method only where its model runs with several
    losses; the split joins the dataset label only where it varies. The runner writes them as the run's tags."""
    from conftest import tiny_suite

    from harness.registry import Registry
    from harness.runner import run_cell
    from harness.suite import build_suite

    reg = Registry.load()
    s = build_suite(tiny_suite(split={"name": "temporal", "horizon": [7, 10]}, losses=["bpr", "bce", "infonce"],
                               models=[{"name": "item_pop", "label": "Pop"}, {"name": "bpr", "factors": [4, 8]}]), reg)
    labels = {(c.labels["method"], c.labels["data"]) for c in s.cells}
    assert ("Pop", "synthetic / temporal(horizon=7.0)") in labels
    assert ("bpr(factors=8) · bce", "synthetic / temporal(horizon=10.0)") in labels
    assert {c.run_name for c in s.cells if c.model.name == "item_pop"} == {"Pop · synthetic · temporal · seed 0"}
    skipped = next(c for c in s.cells if c.skip_reason and c.model.params["factors"] == 4)
    tags = run_cell(skipped, reg).tags  # a skipped cell is recorded with its labels, without training
    assert tags["matchbench.method"] == "bpr(factors=4) · infonce"
    assert tags["matchbench.dataset_label"] == skipped.labels["data"]
    assert skipped.labels["data"] in ("synthetic / temporal(horizon=7.0)", "synthetic / temporal(horizon=10.0)")
    one = build_suite(tiny_suite(losses=["bpr", "infonce"]), reg)  # one loss runs: it does not tell methods apart
    assert {c.labels["method"] for c in one.cells} == {"item_pop", "user_pop", "bpr"}
    assert {c.labels["data"] for c in one.cells} == {"synthetic"}
