"""The markdown of a report: one table per task (best bold, second underlined, significance markers), the
legend that says what the marks mean, the cells table with the skipped and failed cells, and the writer of
`reports/<suite>.md` with its PNG plots.

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

import io
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..tracking import Tracker
from .aggregation import TRUTH, aggregate, direction, keep_metrics, long_frame, metric_key, suite_labels
from .plots import learning_curves, metric_vs_k, safe_name
from .statistics import ALPHA, MARK_T, MARK_U, MARK_W, PerQuery, columns
from .views import VIEW_KEYS, render


def _fmt(mean: float, std: float, n: int) -> str:
    if pd.isna(mean):
        return "—"
    return f"{mean:.4f}" if n < 2 or pd.isna(std) else f"{mean:.4f} ± {std:.4f}"


def _escape(cell: object) -> str:
    return str(cell).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    """A markdown table; `|` and newlines inside cells are escaped."""
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_escape(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _descriptive_count(metric: str) -> bool:
    return metric_key(metric)[0].rsplit("/", 1)[-1].startswith("n_")


def task_table(agg: pd.DataFrame, long: pd.DataFrame, task: str, pq: PerQuery | None) -> tuple[str, bool]:
    """(markdown table of one task: rows = methods, columns = dataset × metric; whether any marker is set)."""
    sub = agg[(agg["task"] == task) & ~agg["metric"].map(_descriptive_count).astype(bool)]
    if sub.empty:
        return "", False
    cols = {(c.dataset, c.metric): c for c in columns(long[long["metric"].isin(sub["metric"])], task, pq)}
    datasets = list(dict.fromkeys(sub["dataset"]))
    keys = sorted(dict.fromkeys(zip(sub["dataset"], sub["metric"], strict=False)), key=lambda k: (datasets.index(k[0]),
                                                                                      metric_key(k[1])))
    several = len({d for d, _ in keys}) > 1
    cell = {(r.method, r.dataset, r.metric): r for r in sub.itertuples()}
    rows, any_mark = [], False
    for m in dict.fromkeys(sorted(sub["method"])):
        row = [m]
        for ds, metric in keys:
            r = cell.get((m, ds, metric))
            if r is None:
                row.append("")
                continue
            text = _fmt(r.mean, r.std, r.n_seeds)
            c = cols.get((ds, metric))
            if c is not None:
                if m in c.best:
                    text = f"**{text}**"
                elif m in c.second:
                    text = f"<u>{text}</u>"
                mark = c.marks.get(m, "")
                any_mark = any_mark or bool(mark)
                text += mark
            row.append(text)
        rows.append(row)
    declared = long.groupby("metric")["direction"].first() if "direction" in long else {}
    arrow = {1: " ↑", -1: " ↓", 0: ""}
    header = ["method"] + [(f"{ds} · {metric}" if several else metric)
                           + arrow[int(declared[metric]) if metric in declared else direction(metric)]
                           for ds, metric in keys]
    return md_table(header, rows, ["---"] + ["--:"] * len(keys)), any_mark


def legend(n_seeds: int) -> str:
    """What the numbers, bold, underline and markers of a task table mean."""
    return (f"Mean ± std over seeds (n = {n_seeds} where complete); ↑ higher is better, ↓ lower is better; "
            "best per column in **bold**, second <u>underlined</u>. Against the column's best, Holm-corrected "
            f"across the methods of the column, p < {ALPHA}: {MARK_T} paired t-test over seeds, "
            f"{MARK_W} Wilcoxon signed-rank over seeds (needs ≥ 6 seeds to ever reach {ALPHA}), "
            f"{MARK_U} Wilcoxon signed-rank over test users (per-query values paired by query id on the same "
            "seed, differences averaged over seeds; only where cells saved `per_query.parquet`). "
            "No marker: no significant difference (or too few seeds).")


def tables_md(agg: pd.DataFrame, long: pd.DataFrame, pq: PerQuery | None, level: str = "##") -> str:
    """Every task's table with its legend, the truth metrics last."""
    if agg.empty:
        return "_No FINISHED cells with metrics yet._\n"
    parts = []
    tasks = [t for t in dict.fromkeys(agg["task"]) if t != TRUTH] + ([TRUTH] if TRUTH in set(agg["task"]) else [])
    for task in tasks:
        table, _ = task_table(agg, long, task, pq)
        if not table:
            continue
        title = "Truth (scores against the known ground truth)" if task == TRUTH else f"Task: {task}"
        n = int(agg.loc[agg["task"] == task, "n_seeds"].max())
        parts.append(f"{level} {title}\n\n{table}\n\n{legend(n)}\n")
    return "\n".join(parts) if parts else "_No FINISHED cells with metrics yet._\n"


def results_markdown(tracker: Tracker, suite: str, per_query: bool = True, configs: Iterable[str] | None = None,
                     labels: Mapping[str, Mapping[str, str]] | None = None) -> str:
    from .tuning import tuning_md

    df, long = long_frame(tracker, suite, configs, labels)
    return tables_md(aggregate(long), long, PerQuery(tracker) if per_query else None) + tuning_md(df)


def error_excerpt(tracker: Tracker, row: pd.Series, n_lines: int = 4) -> str:
    """The exception (last lines of the traceback from `error.txt`), else the start of the recorded error."""
    text = None
    try:
        path = tracker.artifact(row["run_id"], "error.txt")
        if path is not None:
            text = Path(path).read_text(errors="replace")
    except (NotImplementedError, OSError, KeyError):
        text = None
    if text:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        return "\n".join(lines[-n_lines:])
    err = row.get("error")
    if isinstance(err, str) and err.strip():
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        return "\n".join(lines[:n_lines] if len(lines) <= n_lines else lines[:1] + ["..."] + lines[-(n_lines - 2):])
    return "no error recorded"


def _seconds(value: object) -> str:
    return "" if pd.isna(value) else f"{float(value):.2f}"


def cells_md(df: pd.DataFrame, tracker: Tracker) -> str:
    """The cells: counts and total wall time, one row per cell (newest record), skipped and failed ones' reasons."""
    if df.empty:
        return "## Cells\n\n_No cells recorded._\n"
    superseded = 0
    # as in the tables: the newest record of a cell (its method, data and seed labels) counts. Not the run name: it
    # leaves out parameters, so four `bce_neg` cells differing only in `negatives` would count as one
    labels = ["_method", "_dataset", "_seed"]
    key = labels if set(labels) <= set(df.columns) else "run_name" if "run_name" in df else None
    if "start_time" in df and key is not None:
        newest = df.sort_values("start_time", ascending=False, kind="stable").drop_duplicates(key)
        superseded, df = len(df) - len(newest), newest
    counts = df["status"].value_counts()
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("FINISHED", "FAILED", "SKIPPED") if counts.get(s, 0))
    wall = pd.to_numeric(df.get("wall_time"), errors="coerce")
    total = float(np.nansum(wall)) if len(wall) else 0.0
    older = (f" ({superseded} older records of these cells, from earlier configurations or attempts, are not listed)"
             if superseded else "")
    out = [f"## Cells\n\n{len(df)} cells: {summary}; total wall time {total:.1f} s{older}.\n"]
    timings = [(head, col) for head, col in (("fit (s)", "metrics.time/fit_s"), ("eval (s)", "metrics.time/eval_s"),
                                             ("tuning (s)", "metrics.time/tune_s"))  # a tuned cell's study
               if col in df]
    header = ["cell", "status", "wall time (s)"] + [head for head, _ in timings]
    rows = []
    for _, r in df.sort_values(["_dataset", "_method", "_seed"], kind="stable").iterrows():
        name = r.get("run_name") if pd.notna(r.get("run_name")) else r.get("config_hash")
        rows.append([name, r["status"], _seconds(r.get("wall_time"))] + [_seconds(r.get(col)) for _, col in timings])
    out.append(md_table(header, rows, ["---", "---"] + ["--:"] * (len(header) - 2)) + "\n")
    out += cold_items_md(df)
    skipped = df[df["status"] == "SKIPPED"]
    if len(skipped):
        out.append("### Skipped cells\n")
        out += [f"- {r.get('run_name')}: {r.get('reason') if pd.notna(r.get('reason')) else 'no reason recorded'}"
                for _, r in skipped.iterrows()]
        out.append("")
    failed = df[df["status"] == "FAILED"]
    if len(failed):
        out.append("### Failed cells\n")
        for _, r in failed.iterrows():
            out.append(f"- {r.get('run_name')}:\n\n```\n{error_excerpt(tracker, r)}\n```\n")
    return "\n".join(out)


def cold_items_md(df: pd.DataFrame) -> list[str]:
    """Per dataset and split, the items without a training event and the test targets on them (mean over the cells),
    and whether the suite ranked them (`cold_items: rank`) or left them out, losing those targets (`exclude`)."""
    col = "metrics.split/cold_test_targets"
    if col not in df or df[col].isna().all():
        return []
    lost = df.get("metrics.split/cold_test_targets_lost")
    out = ["Items without a training event (`cold_items`), mean over the cells:\n"]
    for (ds, split), g in df[df[col].notna()].groupby(["_dataset", "params.split"], sort=True):
        excluded = lost is not None and lost[g.index].notna().any()
        share = 100 * g["metrics.split/cold_test_targets_share"].mean()
        out.append(f"- {ds} · {split}: {g['metrics.split/cold_items'].mean():.0f} cold items, "
                   f"{g[col].mean():.0f} test targets on them ({share:.1f}%), "
                   + ("left out of rankings and targets (those targets are lost)" if excluded else "ranked"))
    return out + [""]


def nothing_to_report(tracker: Tracker, suite: str, configs: Iterable[str] | None, md: Path) -> str:
    """Why there is no report to write: the store has no runs of the suite, or none of its configurations."""
    store = getattr(tracker, "uri", None)
    where = f"the tracking store {store}" if store else "the tracking store"
    kept = f"{md} left as it is" if md.exists() else "no report written"
    runs = tracker.runs(suite)
    if runs is None or runs.empty:
        return (f"suite {suite!r} has no runs in {where}: nothing to report ({kept}); run it first (matchbench run), "
                "or point --tracking-uri at the store that holds its runs")
    n = len(set(configs)) if configs is not None else 0
    return (f"suite {suite!r} has {len(runs)} recorded configuration(s) in {where}, but none of its current {n} "
            f"(the suite changed since they ran): nothing to report ({kept}); run the suite (matchbench run) to "
            "record them")


def write_suite_report(tracker: Tracker, suite, out_dir: Path | str | None = None) -> Path:
    """`write_report` for a `harness.suite.Suite` as its `report:` block asks (folder, metrics, views, note),
    counting only the configurations the suite has now, under the labels the suite gives them."""
    rep = suite.report
    return write_report(tracker, suite.name, Path(out_dir or rep.get("dir", "reports")), metrics=rep.get("metrics"),
                        views=rep, note=rep.get("note"), configs=suite.config_hashes, labels=suite_labels(suite))


def write_report(tracker: Tracker, suite: str, out_dir: Path = Path("reports"), per_query: bool = True,
                 metrics: Iterable[str] | None = None, views: dict | None = None, note: str | None = None,
                 configs: Iterable[str] | None = None, labels: Mapping[str, Mapping[str, str]] | None = None) -> Path:
    """Write `<out_dir>/<suite>.md` and its PNG plots in `<out_dir>/<suite>/`; return the markdown path.
    `metrics` (the suite's `report.metrics`) limits the tables' columns, e.g. [ndcg_10, recall] — a wide grid
    otherwise gives tables nobody can read; `matchbench results` still prints every metric. `views` (the suite's
    `report:` block) adds the paper-shaped tables and figures of `harness.report.views` it names; `note` (its
    `report.note`) is the suite author's reading guide, printed under the title. `configs` (the config hashes of
    the suite's cells) keeps records of configurations the suite no longer has out of the report; `labels` (config
    hash -> the suite's labels of that cell) name the methods and data, else the runs' tags do. A store without
    records of these configurations is a ConfigError: an existing report is never replaced by an empty one."""
    out_dir = Path(out_dir)
    stem = safe_name(suite)
    df, long_all = long_frame(tracker, suite, configs, labels)
    if df.empty:  # a mistyped store or a suite that never ran: say so, and leave a good report as it is
        raise ConfigError(nothing_to_report(tracker, suite, configs, out_dir / f"{stem}.md"))
    plots_dir = out_dir / stem
    plots_dir.mkdir(parents=True, exist_ok=True)
    for old in plots_dir.glob("*.png"):
        old.unlink()
    long = keep_metrics(long_all, metrics)
    agg = aggregate(long)
    pq = PerQuery(tracker) if per_query else None

    buf = io.StringIO()
    buf.write(f"# Suite `{suite}`\n\n")
    buf.write(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} from the tracking store by `matchbench report`. ")
    buf.write("Only FINISHED cells enter the tables; per configuration, its newest FINISHED record counts.\n\n")
    if note:
        buf.write(str(note).strip() + "\n\n")
    buf.write(tables_md(agg, long, pq))
    buf.write("\n")
    from .tuning import tuning_md

    buf.write(tuning_md(df, tracker, plots_dir, out_dir))
    if views and not df.empty and any(views.get(k) for k in VIEW_KEYS):
        buf.write("## Views\n\n" + render(views, aggregate(long_all), df, tracker, plots_dir, out_dir))
    plots = learning_curves(df, tracker, plots_dir) + metric_vs_k(agg, plots_dir) if not df.empty else []
    if plots:
        buf.write("## Plots\n\n")
        for title, path in plots:
            rel = path.relative_to(out_dir).as_posix()
            buf.write(f"### {title}\n\n![{title}]({rel})\n\n")
    buf.write(cells_md(df, tracker))
    md = out_dir / f"{stem}.md"
    md.write_text(buf.getvalue())
    if not any(plots_dir.iterdir()):
        plots_dir.rmdir()
    return md
