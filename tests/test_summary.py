"""The terminal summary (`matchbench results SUITE --format summary`, what `make demo` prints): one row per
method, the headline metrics, best per column marked, rows ordered by the first column."""
import pandas as pd
from rich.console import Console

from harness.report.summary import headline, print_summary, summary_frame


def agg_frame() -> pd.DataFrame:
    rows = []
    for method, ndcg in (("item_pop", 0.069), ("bpr", 0.047), ("oracle", 0.135), ("rnn", 0.071)):
        for k, scale in ((10, 1.0), (20, 1.5)):
            rows.append(("itemrec", method, "synthetic", f"ndcg_{k}", ndcg * scale))
            rows.append(("itemrec", method, "synthetic", f"recall_{k}", 2 * ndcg * scale))
            rows.append(("itemrec", method, "synthetic", f"popularity_{k}", 100 - ndcg))
        rows.append(("itemrec", method, "synthetic", "n_queries", 50.0))
        rows.append(("userrec", method, "synthetic", "ndcg_10", 1 - ndcg))
        rows.append(("truth", method, "synthetic", "spearman_joint", ndcg))
    frame = pd.DataFrame(rows, columns=["task", "method", "dataset", "metric", "mean"])
    frame["std"], frame["n_seeds"] = 0.0, 2
    return frame


def test_headline_metrics_are_ndcg_and_recall_at_the_smallest_k_per_task():
    assert headline(agg_frame()) == [("itemrec", "synthetic", "ndcg_10"), ("itemrec", "synthetic", "recall_10"),
                                     ("userrec", "synthetic", "ndcg_10")]
    assert headline(agg_frame(), ["popularity_20"]) == [("itemrec", "synthetic", "popularity_20")]


def test_rows_follow_the_first_column_and_each_column_marks_its_best():
    frame, best = summary_frame(agg_frame())
    assert list(frame.index) == ["oracle", "rnn", "item_pop", "bpr"]
    assert best == {"itemrec ndcg_10": "oracle", "itemrec recall_10": "oracle", "userrec ndcg_10": "bpr"}
    console = Console(record=True, width=150)
    print_summary(agg_frame(), console, title="quickstart: results", report="reports/quickstart.md")
    text = console.export_text()
    assert "★ 0.1350" in text and "★ 0.9530" in text and text.count("★") == 4  # three bests and the legend
    assert "reports/quickstart.md" in text and "spearman" not in text and "n_queries" not in text
    lines = [ln for ln in text.splitlines() if "│" in ln]
    assert [ln.split("│")[1].strip() for ln in lines] == ["oracle", "rnn", "item_pop", "bpr"]


def test_a_descriptive_metric_gets_no_best_and_no_arrow():
    """popularity@K describes a list (its runs declare direction 0): without the declaration the summary would star
    the most popular list as the best."""
    frame, best = summary_frame(agg_frame(), ["ndcg_10", "popularity_10"], declared={"popularity": 0})
    assert best == {"itemrec ndcg_10": "oracle", "userrec ndcg_10": "bpr"}
    console = Console(record=True, width=150)
    print_summary(agg_frame(), console, ["popularity_10"], declared={"popularity": 0})
    text = console.export_text()
    assert "★" not in text.split("★ best")[0] and "popularity_10 ↑" not in text
    _, undeclared = summary_frame(agg_frame(), ["popularity_10"])
    assert undeclared == {"itemrec popularity_10": "bpr"}  # the most popular list: what the declaration prevents


def test_method_names_survive_a_console_too_narrow_for_the_columns():
    """Six long data-label columns on a 160-column pipe (the imn suite's summary) once squeezed the method column
    to nothing: the summary then prints one table per data label, each with the names whole."""
    rows = []
    for method, v in (("IMN-Net*", 0.2), ("NextItNet", 0.1), ("ItemPop", 0.3)):
        for data in ("synthetic(resources=False)", "synthetic(resources=True)", "movielens-100k(something=long)"):
            for metric in ("ndcg_10", "recall_10"):
                rows.append(("itemrec", method, data, metric, v))
    frame = pd.DataFrame(rows, columns=["task", "method", "dataset", "metric", "mean"])
    frame["std"], frame["n_seeds"] = 0.0, 2
    console = Console(record=True, width=100)
    print_summary(frame, console, ["ndcg_10", "recall_10"])
    text = console.export_text()
    lines = [ln for ln in text.splitlines() if "│" in ln]
    assert [ln.split("│")[1].strip() for ln in lines] == ["ItemPop", "IMN-Net*", "NextItNet"] * 3
    assert "synthetic(resources=True)" in text and text.count("★ 0.3000") == 6
    wide = Console(record=True, width=400)  # wide enough: one table
    print_summary(frame, wide, ["ndcg_10", "recall_10"])
    assert [ln.split("│")[1].strip() for ln in wide.export_text().splitlines() if "│" in ln] == [
        "ItemPop", "IMN-Net*", "NextItNet"]


def test_data_labels_holding_the_separator_keep_whole_in_the_tables_per_label():
    """Data labels themselves hold " · " (dataset · split): each table per label is titled with the whole label and
    its columns carry no piece of it (the columns were once split on their first " · ")."""
    rows = []
    for method, v in (("Transformer-HP", 0.2), ("RNN-Hawkes (code kernels)", 0.1)):
        for data in ("movielens · user", "synthetic · temporal"):
            for metric in ("ndcg_10", "recall_10", "precision_10"):
                rows.append(("itemrec", method, data, metric, v))
    frame = pd.DataFrame(rows, columns=["task", "method", "dataset", "metric", "mean"])
    frame["std"], frame["n_seeds"] = 0.0, 3
    console = Console(record=True, width=90)
    print_summary(frame, console, ["ndcg_10", "recall_10", "precision_10"], title="rim")
    text = console.export_text()
    assert "rim — movielens · user" in text and "rim — synthetic · temporal" in text
    assert "user · itemrec" not in text and "temporal · itemrec" not in text
    assert text.count("ndcg_10") == 2 and text.count("RNN-Hawkes (code kernels)") == 2
