"""The terminal summary of a suite (`matchbench results SUITE --format summary`, what `make demo` prints): one row
per method, a few headline metrics as columns (the suite's `report.metrics`, else NDCG and recall at the smallest
K of each ranking task, AUC of ctr), the best of each column marked, rows ordered by the first column; the chosen
parameters of tuned methods; and where the full report is.

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from .aggregation import TRUTH, direction, keep_metrics, metric_key

MAX_COLUMNS = 6
DEFAULT_FAMILIES = ("ndcg", "recall", "auc")


def headline(agg: pd.DataFrame, metrics: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
    """The (task, dataset, metric) columns of the summary: `metrics` where given (names or families), else the
    default families at each task's smallest K; at most MAX_COLUMNS, in task, dataset, metric order."""
    if agg.empty:
        return []
    sub = agg[(agg["task"] != TRUTH) & ~agg["metric"].map(lambda m: metric_key(m)[0].startswith("n_"))]
    if metrics:
        sub = keep_metrics(sub, metrics)
    else:
        fam = sub["metric"].map(lambda m: metric_key(m)[0])
        sub = sub[fam.isin(DEFAULT_FAMILIES)]
        ks = sub["metric"].map(lambda m: metric_key(m)[1])
        smallest = ks.groupby(sub["task"]).transform("min")
        sub = sub[ks == smallest]
    cols = list(dict.fromkeys(zip(sub["task"], sub["dataset"], sub["metric"], strict=False)))
    order = {f: i for i, f in enumerate(DEFAULT_FAMILIES)}
    tasks = list(dict.fromkeys(agg["task"]))
    cols.sort(key=lambda c: (tasks.index(c[0]), c[1], order.get(metric_key(c[2])[0], len(order)), metric_key(c[2])))
    return cols[:MAX_COLUMNS]


def summary_frame(agg: pd.DataFrame, metrics: Iterable[str] | None = None, declared: dict[str, int] | None = None
                  ) -> tuple[pd.DataFrame, dict[str, str]]:
    """(methods × headline columns of means, ordered by the first column best first; per column, its best
    method). `declared`: metric family -> direction as the runs declared them (a descriptive one gets no best).
    `frame.attrs["columns"]`: per column, its (data label, the name without it), for a table per data label."""
    cols = headline(agg, metrics)
    if not cols:
        return pd.DataFrame(), {}
    several = len({d for _, d, _ in cols}) > 1
    names = {c: (f"{c[1]} · " if several else "") + f"{c[0]} {c[2]}" for c in cols}
    frame = pd.DataFrame(index=list(dict.fromkeys(agg["method"])))
    for c in cols:
        rows = agg[(agg["task"] == c[0]) & (agg["dataset"] == c[1]) & (agg["metric"] == c[2])]
        frame[names[c]] = rows.set_index("method")["mean"]
    best = {}
    for c in cols:
        col = frame[names[c]].dropna()
        if len(col) and direction(c[2], declared):
            best[names[c]] = col.idxmax() if direction(c[2], declared) > 0 else col.idxmin()
    first = cols[0]
    frame = frame.sort_values(names[first], ascending=direction(first[2], declared) < 0, na_position="last",
                              kind="stable")
    frame.attrs["columns"] = {names[c]: (c[1], f"{c[0]} {c[2]}") for c in cols}
    return frame, best


def print_summary(agg: pd.DataFrame, console, metrics: Iterable[str] | None = None, title: str = "",
                  report: str | None = None, declared: dict[str, int] | None = None) -> None:
    """The summary as a rich table on `console` (best per column in bold with ★), then the report's path; one
    table per data label where a single one would be wider than the console."""
    frame, best = summary_frame(agg, metrics, declared)
    if frame.empty:
        console.print("no FINISHED cells with metrics yet: run the suite first (matchbench run)", markup=False,
                      highlight=False)
        return
    tuned = agg.drop_duplicates("method").set_index("method")["tuned"] if "tuned" in agg else None
    table = _table(frame, best, tuned, declared, title)
    where = frame.attrs.get("columns", {})  # column -> (data label, short name); labels may hold " · " themselves
    groups = list(dict.fromkeys(where[c][0] for c in frame.columns))
    if len(groups) > 1 and console.measure(table, options=console.options.update_width(10**6)).maximum > console.width:
        # too wide for the console (rich would squeeze the method names away): one table per data label
        for g in groups:
            cols = [c for c in frame.columns if where[c][0] == g]
            short = {c: where[c][1] for c in cols}
            sub = frame[cols].rename(columns=short)
            _print_whole(console, _table(sub, {short[k]: v for k, v in best.items() if k in short}, tuned,
                                         declared, f"{title} — {g}" if title else g))
    else:
        _print_whole(console, table)
    console.print("★ best per column (mean over seeds); every metric, with spreads and significance tests: "
                  + (f"{report}" if report else "matchbench report SUITE"), markup=False, highlight=False)


def _print_whole(console, table) -> None:
    """Print `table` uncropped: each column is at least as wide as its longest number or name (`_table`), so a
    console narrower than the sum gets long lines (a terminal scrolls or wraps them) rather than cut cells."""
    console.print(table, crop=False)


def _table(frame: pd.DataFrame, best: dict[str, str], tuned, declared, title: str):
    """One rich table: the methods, a column per headline metric (best in bold with ★), the tuned parameters.
    A metric's header may wrap between words; its numbers never do (the column is at least as wide as the longest
    of them)."""
    from rich.table import Table
    from rich.text import Text

    cells = {}
    for name in frame.columns:
        col = frame[name]
        cells[name] = [Text("—") if pd.isna(v) else Text(f"★ {v:.4f}", style="bold") if best.get(name) == m
                       else Text(f"{v:.4f}") for m, v in col.items()]
    table = Table(title=title or None, title_justify="left")
    widths = [len(str(m)) for m in frame.index]  # a method's name is never cut: the metric headers give way first
    table.add_column("method", no_wrap=True, min_width=max(widths, default=6))
    for name in frame.columns:
        sense = direction(name.rsplit(" ", 1)[-1], declared)
        header = name + {1: " ↑", -1: " ↓"}.get(sense, "")
        longest = max([len(t) for t in cells[name]] + [len(w) for w in header.split()])
        table.add_column(header, justify="right", min_width=longest)
    if tuned is not None:  # the first seed's choice (the report lists every seed's)
        table.add_column("tuned parameters (first seed)", overflow="ellipsis", no_wrap=True, max_width=48)
    for i, method in enumerate(frame.index):
        row = [Text(str(method))] + [cells[name][i] for name in frame.columns]
        if tuned is not None:
            row.append(Text(str(tuned.get(method, "") or "").split("; ")[0].split(": ", 1)[-1]))
        table.add_row(*row)
    return table
