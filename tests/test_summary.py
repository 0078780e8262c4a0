"""The terminal summary (`matchbench results SUITE --format summary`, what `make demo` prints): one row per
method, the headline metrics, best per column marked, rows ordered by the first column."""
import io

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


# ------------------------------------------------------------------------------------------ what each piece shows
def long_frame(rows, n_seeds=3) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["task", "method", "dataset", "metric", "mean"])
    frame["std"], frame["n_seeds"] = 0.0, n_seeds
    return frame


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a rendered table, as stripped cells (header and rules left out)."""
    rows = [ln for ln in text.splitlines() if ln.startswith("│")]
    return [[c.strip() for c in ln.split("│")[1:-1]] for ln in rows]


def test_headline_orders_columns_by_task_appearance_then_data_label_then_family():
    """Tasks in the order the results list them (not alphabetically), then data labels, then NDCG before recall
    before AUC whatever order the suite named them in, then K; counts (n_*) never become columns."""
    rows = []
    for task in ("userrec", "itemrec"):
        for data in ("zeta", "alpha"):
            for metric in ("auc", "recall_10", "ndcg_20", "ndcg_10", "n_queries"):
                rows.append((task, "m", data, metric, 0.5))
    agg = long_frame(rows)
    cols = headline(agg, ["recall_10", "auc", "ndcg_20", "ndcg_10", "n_queries"])
    assert cols[:6] == [("userrec", "alpha", "ndcg_10"), ("userrec", "alpha", "ndcg_20"),
                        ("userrec", "alpha", "recall_10"), ("userrec", "alpha", "auc"),
                        ("userrec", "zeta", "ndcg_10"), ("userrec", "zeta", "ndcg_20")]
    assert headline(agg, ["n_queries"]) == []


def test_a_declared_lower_is_better_metric_picks_the_smallest_and_sorts_ascending():
    """A plugin's metric whose runs declare direction −1 (its name says nothing): best is the smallest mean, the
    rows go smallest first, the header gets ↓; a method without a value in the first column comes last."""
    rows = [("itemrec", m, "d", "regret_10", v) for m, v in (("a", 0.3), ("b", 0.1), ("c", 0.2))]
    rows += [("itemrec", m, "d", "yield_10", v) for m, v in (("a", 0.3), ("b", 0.1), ("c", 0.2), ("late", 0.9))]
    agg = long_frame(rows)
    declared = {"regret": -1}
    frame, best = summary_frame(agg, ["regret_10", "yield_10"], declared)
    assert list(frame.index) == ["b", "c", "a", "late"]
    assert best == {"itemrec regret_10": "b", "itemrec yield_10": "late"}
    console = Console(record=True, width=150)
    print_summary(agg, console, ["regret_10", "yield_10"], declared=declared)
    text = console.export_text()
    assert "itemrec regret_10 ↓" in text and "itemrec yield_10 ↑" in text
    assert table_rows(text)[-1] == ["late", "—", "★ 0.9000"]


def test_ties_keep_the_order_the_results_list_the_methods_in():
    """A stable sort: methods with equal first-column means stay in the order of the results (40 of them: numpy's
    default quicksort is not stable at that size)."""
    methods = [f"m{i:02d}" for i in range(40)]
    agg = long_frame([("itemrec", m, "d", "ndcg_10", 0.5 if i % 2 else 0.25) for i, m in enumerate(methods)])
    frame, _ = summary_frame(agg)
    assert list(frame.index) == methods[1::2] + methods[0::2]
    popularity, _ = summary_frame(agg.assign(metric="popularity_10"), ["popularity_10"], {"popularity": 0})
    assert list(popularity.index) == methods[1::2] + methods[0::2]  # a descriptive column: largest first


def test_tuned_parameters_show_the_first_seeds_choice_cut_to_one_line():
    rows = [("itemrec", m, "d", "ndcg_10", v) for m, v in (("rnn", 0.3), ("bpr", 0.2), ("pop", 0.1))]
    agg = long_frame(rows)
    agg["tuned"] = agg["method"].map({"rnn": "seed 0: factors=32, lr=0.01; seed 1: factors=64, lr=0.02",
                                      "bpr": "factors=16, " + ", ".join(f"p{i}=0.{i}" for i in range(20)),
                                      "pop": ""})
    console = Console(record=True, width=150)
    print_summary(agg, console, title="grid")
    text = console.export_text()
    assert "┃ method " in text and "┃ tuned parameters (first seed)" in text
    body = table_rows(text)
    assert [r[0] for r in body] == ["rnn", "bpr", "pop"]  # one line each: the long choice does not wrap
    assert body[0][2] == "factors=32, lr=0.01" and body[2][2] == ""
    assert body[1][2].startswith("factors=16, p0=0.0") and body[1][2].endswith("…") and len(body[1][2]) == 48


def test_numbers_are_right_aligned_best_bold_and_the_title_left():
    agg = long_frame([("itemrec", m, "d", "ndcg_10", v) for m, v in (("a", 0.3), ("b", 0.1))])
    console = Console(record=True, width=100, force_terminal=True, color_system="standard")
    print_summary(agg, console, title="my title")
    styled = console.export_text(styles=True)
    assert "\x1b[1m         ★ 0.3000\x1b[0m" in styled and "│            0.1000 │" in styled
    assert "(mean over seeds)" in styled  # the footer is plain text: no highlighting of its parentheses
    text = Console(record=True, width=100)
    print_summary(agg, text, title="my title")
    lines = text.export_text().splitlines()
    assert lines[0].startswith("my title")
    assert table_rows("\n".join(lines))[1] == ["b", "0.1000"]
    cell = next(ln for ln in lines if ln.startswith("│ b")).split("│")[2]
    assert cell.endswith("0.1000 ") and cell.startswith("     ")  # right-justified under its wider header


def test_one_data_label_never_splits_and_footer_names_the_report_or_the_command():
    """A table too wide for the console but with one data label stays one table under the suite's title (there is
    nothing to split it by): its lines run long rather than cutting names and numbers (rich shrank every column,
    the method names to nothing); without a report path the footer names the command that writes one."""
    agg = long_frame([("itemrec", m, "a very long data label " * 3, f"{f}_10", 0.1)
                      for m in ("method x", "method y") for f in ("ndcg", "recall", "precision", "hit", "mrr", "map")])
    out = io.StringIO()  # what a terminal gets (a recording would keep what the console crops)
    print_summary(agg, Console(file=out, width=60), ["ndcg_10", "recall_10", "precision_10", "hit_10", "mrr_10",
                                                     "map_10"], title="t")
    text = out.getvalue()
    assert text.splitlines()[0].strip() == "t"
    body = [r for r in table_rows(text) if r[0]]  # a wrapped header's lines have no method
    assert [r[0] for r in body] == ["method x", "method y"] and body[0][1:] == ["★ 0.1000"] * 6
    assert "itemrec" in text and "precision_10" in text  # headers wrap between words instead of being cut
    assert " ".join(text.split()).endswith("★ best per column (mean over seeds); every metric, with spreads and "
                                           "significance tests: matchbench report SUITE")


def test_tables_per_data_label_keep_tuned_parameters_and_declarations_and_an_untitled_label():
    rows = []
    for method, v in (("IMN-Net*", 0.2), ("NextItNet", 0.1)):
        for data in ("synthetic(resources=False)", "synthetic(resources=True)", "movielens-100k(something=long)"):
            rows += [("itemrec", method, data, m, v) for m in ("ndcg_10", "popularity_10")]
    agg = long_frame(rows)
    agg["tuned"] = agg["method"].map({"IMN-Net*": "lr=0.001", "NextItNet": ""})
    console = Console(record=True, width=90)
    print_summary(agg, console, ["ndcg_10", "popularity_10"], declared={"popularity": 0})
    text = console.export_text()
    assert text.count("lr=0.001") == 3 and text.count("itemrec popularity_10 ↑") == 0
    assert text.count("itemrec ndcg_10 ↑") == 3 and text.count("↑") == 3 and " — " not in text
    assert [ln.strip() for ln in text.splitlines() if ln.strip().startswith("synthetic(resources=")] == [
        "synthetic(resources=False)", "synthetic(resources=True)"]


def test_no_results_says_what_to_run():
    console = Console(record=True, width=120, force_terminal=True, color_system="standard")
    print_summary(pd.DataFrame(columns=["task", "method", "dataset", "metric", "mean"]), console)
    assert console.export_text(styles=True).strip() == (
        "no FINISHED cells with metrics yet: run the suite first (matchbench run)")  # plain: no highlighting


def test_arrows_follow_the_metric_not_the_data_label_in_front_of_it():
    """With several data labels a column is named `data · task metric`: its direction is the metric's (a loss points
    down where its runs declare so), and a descriptive column has no arrow and nothing else after its name."""
    rows = [("ctr", m, d, f, v) for m, v in (("a", 0.3), ("b", 0.1)) for d in ("x", "y")
            for f in ("regret_10", "popularity_10")]
    console = Console(record=True, width=200)
    print_summary(long_frame(rows), console, ["regret_10", "popularity_10"], declared={"popularity": 0, "regret": -1})
    header = next(ln for ln in console.export_text().splitlines() if ln.startswith("┃"))
    assert [c.strip() for c in header.split("┃")[1:-1]] == [
        "method", "x · ctr popularity_10", "x · ctr regret_10 ↓", "y · ctr popularity_10", "y · ctr regret_10 ↓"]
