"""The report's paper-shaped views (harness.report.views) on hand-made results, a suite's model `label`, and both
through the report writer."""
import pandas as pd
import pytest
from conftest import tiny_suite
from test_report import FakeTracker

from harness.errors import ConfigError
from harness.registry import Registry
from harness.report import views, write_report
from harness.suite import build_suite


def _agg(rows):
    return pd.DataFrame(rows, columns=["task", "method", "dataset", "metric", "mean", "std", "n_seeds"])


def test_relative_table_by_hand():
    agg = _agg([("ctr", "LR", "pub", "auc", 0.6394, 0.001, 5), ("ctr", "DMR", "pub", "auc", 0.6447, 0.002, 5),
                ("ctr", "LR", "ind", "auc", 0.6739, None, 1), ("ctr", "DMR", "ind", "auc", 0.6921, None, 1)])
    md = views.relative_table(agg, "ctr/auc", "LR", rows=["LR", "DMR", "PNN"], title="Table 1")
    # the paper's own Table 1 figures: DMR +0.83% (public) and +2.70% (industrial) over LR
    assert "| DMR | 0.6921 | +2.70% | 0.6447 ± 0.0020 | +0.83% |" in md
    assert "| LR | 0.6739 | +0.00% | 0.6394 ± 0.0010 | +0.00% |" in md
    assert "| PNN | – | – | – | – |" in md and "No results for: PNN" in md
    assert "_No results for ctr/gauc._" in views.relative_table(agg, "ctr/gauc", "LR")


def test_front_points_group_planners_by_family_over_beta():
    rows = []
    for planner, beta in (("greedy_b0", 0), ("greedy_b0.001", 0.001), ("greedy_b0.01", 0.01),
                          ("dual_online_b0.003", 0.003), ("topk", 0)):
        rows += [("matching", "bpr", "w", f"{planner}/recall", 0.5 - beta, None, 1),
                 ("matching", "bpr", "w", f"{planner}/item_perplexity", 10 + 1000 * beta, None, 1)]
    rows.append(("matching", "pop", "w", "greedy_b0/recall", 0.1, None, 1))      # no perplexity: no point
    pts = views.front_points(_agg(rows), "item_perplexity", "recall")
    assert set(pts["family"]) == {"greedy", "dual_online", "topk"} and set(pts["method"]) == {"bpr"}
    g = pts[pts["family"] == "greedy"]
    assert g["beta"].tolist() == [0, 0.001, 0.01] and g["x"].tolist() == [10, 11, 20]
    assert g["y"].tolist() == pytest.approx([0.5, 0.499, 0.49])
    assert views.front_points(_agg(rows), "item_perplexity", "recall", methods=["pop"]).empty


def test_views_are_checked_in_the_suite_and_drawn_by_the_report(tmp_path):
    reg = Registry.load()
    good = {"enabled": False, "tables": [{"metric": "itemrec/ndcg_10", "baseline": "Pop"}],
            "scatter": [{"x": "itemrec/recall_10", "y": "userrec/recall_10"}],
            "curves": [{"method": "BPR", "metrics": ["train/loss"]}]}
    s = build_suite(tiny_suite(report=good, models=[{"name": "item_pop", "label": "Pop"},
                                                    {"name": "bpr", "factors": [4, 8], "label": "BPR"}]), reg)
    assert sorted({c.labels["model"] for c in s.cells}) == ["BPR(factors=4)", "BPR(factors=8)", "Pop"]
    for bad, part in (({"report": {"tables": [{"metric": "ctr/auc"}]}}, "report.tables[0]: missing baseline"),
                      ({"report": {"fronts": {"x": 1}}}, "report.fronts"),
                      ({"models": [{"name": "item_pop", "label": "A"}, {"name": "user_pop", "label": "A"}]},
                       "label 'A' names several entries"),
                      ({"models": [{"name": "bpr", "label": ""}]}, "label")):
        with pytest.raises(ConfigError) as e:
            build_suite(tiny_suite(**bad), reg)
        assert part in str(e.value), (part, str(e.value))
    # through the report writer: labels from the tag, the table, the scatter and the curves
    runs, curves = [], {}
    for model, label, ndcg, rec in (("item_pop", "Pop", 0.10, 0.2), ("bpr", "BPR", 0.12, 0.3)):
        rid = f"{model}-0"
        runs.append({"run_id": rid, "run_name": rid, "status": "FINISHED", "config_hash": rid, "wall_time": 1.0,
                     "params.model": model, "params.dataset": "synthetic", "params.seed": "0", "params.loss": "none",
                     "tags.matchbench.method": label, "metrics.itemrec/ndcg_10": ndcg,
                     "metrics.itemrec/recall_10": rec, "metrics.userrec/recall_10": rec / 2,
                     "metrics.train/loss": 0.5})
        curves[(rid, "train/loss")] = [(0, 1.0), (1, 0.5)]
    md = write_report(FakeTracker(pd.DataFrame(runs), curves, {}), "fake", tmp_path, views=good,
                      note="Read **this** first.").read_text()
    assert md.index("Read **this** first.") < md.index("## Task: itemrec")
    assert build_suite(tiny_suite(report={"note": "text"}), reg).report["note"] == "text"
    assert "## Views" in md and "| BPR | 0.1200 | +20.00% |" in md
    assert (tmp_path / "fake" / "scatter_0_itemrec_recall_10_userrec_recall_10.png").exists()
    assert (tmp_path / "fake" / "curves_0_BPR_synthetic.png").exists()
