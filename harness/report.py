"""Reports and results tables, read back through a `Tracker` only (never the runner, never MLflow directly).

`results_table` aggregates FINISHED cells over seeds: one row per (task, method, dataset, metric).
`write_report` renders `reports/<suite>.md`: one table per task (rows = method, columns = dataset ×
metric, mean ± std over seeds, best **bold**, second <u>underlined</u>, markers for significant
differences from the column's best over seeds and over test users), the cells (wall time, status,
skipped and failed ones with their reasons) and PNG plots (learning curves, metric vs K).
"""
from __future__ import annotations

import io
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .tracking import Tracker
from .views import VIEW_KEYS, render

ALPHA = 0.05
# logged while fitting (training curves, early-stopping validation, timings): plotted, never a results table
CURVE_PREFIXES = ("train/", "time/", "valid/")
TRUTH = "truth"
MARK_T, MARK_W, MARK_U = "†", "‡", "§"
RESULT_COLUMNS = ["task", "method", "dataset", "metric", "mean", "std", "n_seeds"]
_K = re.compile(r"^(?P<family>.+?)_(?P<k>\d+)$")


# --------------------------------------------------------------------------- labels and the table
def _varying(frame: pd.DataFrame, name_col: str, prefix: str) -> dict[str, list[str]]:
    """Per plugin name (column `name_col`), the `prefix*` parameter keys that take several values."""
    out: dict[str, list[str]] = {}
    cols = [c for c in frame.columns if c.startswith(prefix) and not c.startswith("params.split.info.")]
    if name_col not in frame:
        return out
    for name, group in frame.groupby(name_col, dropna=False, sort=False):
        keys = [c for c in cols if group[c].dropna().astype(str).nunique() > 1]
        out[name] = sorted(keys)
    return out


def _label(row: pd.Series, name_col: str, keys: Iterable[str], prefix: str) -> str:
    shown = [f"{k[len(prefix):]}={row[k]}" for k in keys if pd.notna(row.get(k))]
    return str(row[name_col]) + (f"({', '.join(shown)})" if shown else "")


def _with_labels(runs: pd.DataFrame) -> pd.DataFrame:
    """Add `_method`, `_dataset` and `_seed` columns built from the cells' params."""
    df = runs.copy()
    if "params.model" not in df:
        df["params.model"] = df["tags.matchbench.model"] if "tags.matchbench.model" in df else df.get("run_name", "?")
    if "params.dataset" not in df:
        df["params.dataset"] = "data"
    var_model = _varying(df, "params.model", "params.model.")
    var_ds = _varying(df, "params.dataset", "params.dataset.")
    var_loss = _varying(df, "params.loss", "params.loss.") if "params.loss" in df else {}
    splits = df["params.split"].dropna().unique() if "params.split" in df else []
    var_split = _varying(df, "params.split", "params.split.") if len(splits) else {}
    # name the loss only where it tells methods apart: a model run with several losses in this suite
    ran = df[df["status"] != "SKIPPED"] if "status" in df else df
    many_losses = (set(ran.groupby("params.model")["params.loss"].nunique().loc[lambda n: n > 1].index)
                   if "params.loss" in df else set())

    given = df["tags.matchbench.model_label"] if "tags.matchbench.model_label" in df else None

    def method(row):
        if given is not None and isinstance(given.get(row.name), str):
            label = given[row.name]
        else:
            label = _label(row, "params.model", var_model.get(row["params.model"], []), "params.model.")
        loss = row.get("params.loss")
        if row["params.model"] in many_losses and isinstance(loss, str) and loss.lower() not in ("none", "nan"):
            label += " · " + _label(row, "params.loss", var_loss.get(loss, []), "params.loss.")
        return label

    def dataset(row):
        label = _label(row, "params.dataset", var_ds.get(row["params.dataset"], []), "params.dataset.")
        if len(splits) > 1 or any(var_split.values()):
            label += " / " + _label(row, "params.split", var_split.get(row["params.split"], []), "params.split.")
        return label

    df["_method"] = [method(r) for _, r in df.iterrows()] if len(df) else []
    df["_dataset"] = [dataset(r) for _, r in df.iterrows()] if len(df) else []
    seed = df["params.seed"] if "params.seed" in df else pd.Series("0", index=df.index)
    df["_seed"] = seed.fillna("0").astype(str)
    return df


def _metric_columns(df: pd.DataFrame, include_truth: bool = True) -> list[tuple[str, str, str]]:
    """(column, task, metric) for every `metrics.<task>/<metric>` column that belongs in a results table."""
    out = []
    for col in df.columns:
        if not col.startswith("metrics."):
            continue
        name = col[len("metrics."):]
        if "/" not in name or name.startswith(CURVE_PREFIXES):
            continue  # wall_time_s, training curves, timings
        if name.startswith("truth/") and not include_truth:
            continue
        task, metric = name.split("/", 1)
        out.append((col, task, metric))
    return out


def _metric_key(metric: str) -> tuple:
    m = _K.match(metric)
    return (m["family"], int(m["k"])) if m else (metric, -1)


def _long(tracker: Tracker, suite: str, configs: Iterable[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labelled runs frame, long frame of FINISHED per-seed values: task, method, dataset, metric, seed,
    value, run_id). `configs`: the config hashes of the suite as it now stands; records of configurations it no
    longer has (a default or a parameter that changed since) are left out, so they cannot appear as extra methods."""
    runs = tracker.runs(suite)
    if configs is not None and runs is not None and "config_hash" in runs:
        runs = runs[runs["config_hash"].isin(set(configs))]
    if runs is None or runs.empty:
        return pd.DataFrame(), pd.DataFrame(columns=["task", "method", "dataset", "metric", "seed", "value", "run_id"])
    df = _with_labels(runs)
    fin = df[df["status"] == "FINISHED"]
    if "start_time" in fin:  # newest first, so the newest run wins where two configurations share a label
        fin = fin.sort_values("start_time", ascending=False, kind="stable")
    parts = []
    tags = fin["tags.matchbench.directions"] if "tags.matchbench.directions" in fin else pd.Series(None, index=fin.index)
    declared = tags.map(_declared)
    for col, task, metric in _metric_columns(fin):
        vals = pd.to_numeric(fin[col], errors="coerce")
        keep = vals.notna()
        if not keep.any():
            continue
        parts.append(pd.DataFrame({"task": task, "method": fin.loc[keep, "_method"], "dataset": fin.loc[keep, "_dataset"],
                                   "metric": metric, "seed": fin.loc[keep, "_seed"], "value": vals[keep],
                                   "run_id": fin.loc[keep, "run_id"],
                                   "direction": [_direction(metric, d) for d in declared[keep]]}))
    long = (pd.concat(parts, ignore_index=True) if parts else
            pd.DataFrame(columns=["task", "method", "dataset", "metric", "seed", "value", "run_id", "direction"]))
    # one value per (task, method, dataset, metric, seed): an edited suite can leave an older configuration
    # under the same label (e.g. a default that changed); the newest run counts
    long = long.drop_duplicates(["task", "method", "dataset", "metric", "seed"], keep="first")
    return df, long


def _aggregate(long: pd.DataFrame) -> pd.DataFrame:
    if long.empty:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    order = {k: i for i, k in enumerate(dict.fromkeys(long["task"]))}
    g = long.groupby(["task", "method", "dataset", "metric"], sort=False)["value"]
    out = g.agg(mean="mean", std="std", n_seeds="count").reset_index()
    out["_t"] = out["task"].map(order)
    out["_m"] = out["metric"].map(_metric_key)
    out = out.sort_values(["_t", "dataset", "_m", "method"], kind="stable").drop(columns=["_t", "_m"])
    out["n_seeds"] = out["n_seeds"].astype(int)
    return out.reset_index(drop=True)[RESULT_COLUMNS]


def results_table(tracker: Tracker, suite: str, configs: Iterable[str] | None = None) -> pd.DataFrame:
    """FINISHED cells aggregated over seeds: one row per (task, method, dataset, metric) with mean, std
    (sample std, NaN for one seed) and n_seeds. Task `truth` holds the truth metrics, if any. `configs` as in
    `_long`."""
    return _aggregate(_long(tracker, suite, configs)[1])


# --------------------------------------------------------------------------- statistics
def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaN stays NaN and does not count towards m)."""
    p = np.asarray(list(pvalues), dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out


def _direction(metric: str, declared: dict[str, int] | None = None) -> int:
    """+1 higher is better, -1 lower is better, 0 descriptive (not ranked, not tested): as the cell's
    `matchbench.directions` tag declares it (metric plugins and tasks own their directions); counts are
    descriptive; runs logged without the tag fall back to "a loss is lower-is-better, the rest higher"."""
    family = _metric_key(metric)[0].rsplit("/", 1)[-1]  # matching metrics are <planner>/<metric>
    if family.startswith("n_"):
        return 0
    if declared and family in declared:
        return int(declared[family])
    return -1 if family.endswith("loss") else 1


def _declared(tag: object) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(tag).items()} if isinstance(tag, str) else {}
    except (ValueError, TypeError, AttributeError):
        return {}


def _paired_p(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(paired t-test p, Wilcoxon signed-rank p) of a vs b; NaN where undefined."""
    from scipy import stats

    d = a - b
    if len(d) < 2 or np.allclose(d, 0):
        return math.nan, math.nan
    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        constant = np.allclose(d, d.mean(), rtol=1e-9, atol=1e-12)
        t = 0.0 if constant else stats.ttest_rel(a, b).pvalue  # a constant non-zero shift: t -> inf
        try:
            w = stats.wilcoxon(a, b).pvalue
        except ValueError:
            w = math.nan
    return float(t), float(w)


@dataclass
class _Column:
    dataset: str
    metric: str
    best: list[str]
    second: list[str]
    marks: dict[str, str]
    tests: dict[str, dict[str, float]]


class _PerQuery:
    """Per-query artifacts (`per_query.parquet`: task, metric, query, value), fetched once per run."""

    def __init__(self, tracker: Tracker):
        self.tracker, self.cache = tracker, {}

    def get(self, run_id: str) -> pd.DataFrame | None:
        if run_id not in self.cache:
            frame = None
            try:
                path = self.tracker.artifact(run_id, "per_query.parquet")
                if path is not None:
                    frame = pd.read_parquet(path)
                    frame["query"] = frame["query"].astype(str)
            except (NotImplementedError, OSError, ValueError, KeyError):
                frame = None
            self.cache[run_id] = frame
        return self.cache[run_id]

    def values(self, run_id: str, task: str, metric: str) -> pd.Series | None:
        frame = self.get(run_id)
        if frame is None:
            return None
        sel = frame[(frame["task"] == task) & (frame["metric"] == metric)]
        if sel.empty:
            return None
        return sel.groupby("query")["value"].mean()


def _user_p(long_col: pd.DataFrame, method: str, best: str, task: str, metric: str, pq: _PerQuery) -> float:
    """Wilcoxon over test users: per query, the difference to the best on the same seed, averaged over
    the seeds both have; NaN without per-query artifacts."""
    from scipy import stats

    a = long_col[long_col["method"] == method].set_index("seed")["run_id"]
    b = long_col[long_col["method"] == best].set_index("seed")["run_id"]
    diffs = []
    for seed in sorted(set(a.index) & set(b.index)):
        va, vb = pq.values(a[seed], task, metric), pq.values(b[seed], task, metric)
        if va is None or vb is None:
            continue
        joined = pd.concat([va.rename("a"), vb.rename("b")], axis=1, join="inner").dropna()
        diffs.append((joined["a"] - joined["b"]).rename(seed))
    if not diffs:
        return math.nan
    d = pd.concat(diffs, axis=1).mean(axis=1).dropna().to_numpy()
    if len(d) < 2 or np.allclose(d, 0):
        return math.nan
    try:
        return float(stats.wilcoxon(d).pvalue)
    except ValueError:
        return math.nan


def _columns(long: pd.DataFrame, task: str, pq: _PerQuery | None) -> list[_Column]:
    sub = long[long["task"] == task]
    out = []
    for (dataset, metric), col in sub.groupby(["dataset", "metric"], sort=False):
        means = col.groupby("method")["value"].mean().dropna()  # a method without a value is not ranked
        direction = int(col["direction"].iloc[0]) if "direction" in col else _direction(metric)
        best, second, marks, tests = [], [], {}, {}
        signed = (means * direction).round(12)  # one rounding for ranking and membership (pandas' and
        ranked = sorted(set(signed), reverse=True) if direction else []  # Python's round can differ)
        if len(ranked) >= 2:  # several methods that do not all tie
            best = [m for m, v in signed.items() if v == ranked[0]]
            second = [m for m, v in signed.items() if v == ranked[1]]
            ref = best[0]
            others = [m for m in means.index if m not in best]
            pt, pw, pu = [], [], []
            for m in others:
                a = col[col["method"] == m].set_index("seed")["value"]
                b = col[col["method"] == ref].set_index("seed")["value"]
                seeds = sorted(set(a.index) & set(b.index))
                t, w = _paired_p(a[seeds].to_numpy(float), b[seeds].to_numpy(float))
                pt.append(t)
                pw.append(w)
                pu.append(_user_p(col, m, ref, task, metric, pq) if pq is not None else math.nan)
            for name, raw, adj in (("t", pt, holm(pt)), ("wilcoxon", pw, holm(pw)), ("users", pu, holm(pu))):
                for m, p, q in zip(others, raw, adj):
                    tests.setdefault(m, {})[f"p_{name}"] = p
                    tests[m][f"p_{name}_holm"] = q
            for m in others:
                mk = ""
                if tests[m]["p_t_holm"] < ALPHA:
                    mk += MARK_T
                if tests[m]["p_wilcoxon_holm"] < ALPHA:
                    mk += MARK_W
                if tests[m]["p_users_holm"] < ALPHA:
                    mk += MARK_U
                marks[m] = mk
        out.append(_Column(dataset, metric, best, second, marks, tests))
    return out


def significance(tracker: Tracker, suite: str, per_query: bool = True) -> pd.DataFrame:
    """Each method vs its column's best: raw and Holm-corrected p-values over seeds (paired t-test,
    Wilcoxon) and over test users (Wilcoxon on per-query artifacts)."""
    _, long = _long(tracker, suite)
    pq = _PerQuery(tracker) if per_query else None
    rows = []
    for task in dict.fromkeys(long["task"]):
        for c in _columns(long, task, pq):
            for m, t in c.tests.items():
                rows.append({"task": task, "dataset": c.dataset, "metric": c.metric, "method": m, "best": c.best[0],
                             **t, "marker": c.marks.get(m, "")})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- markdown
def _fmt(mean: float, std: float, n: int) -> str:
    if pd.isna(mean):
        return "—"
    return f"{mean:.4f}" if n < 2 or pd.isna(std) else f"{mean:.4f} ± {std:.4f}"


def _md_table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _task_table(agg: pd.DataFrame, long: pd.DataFrame, task: str, pq: _PerQuery | None) -> tuple[str, bool]:
    sub = agg[(agg["task"] == task) & agg["metric"].map(lambda m: not _metric_key(m)[0].rsplit("/", 1)[-1].startswith("n_"))]
    if sub.empty:
        return "", False
    cols = {(c.dataset, c.metric): c for c in _columns(long[long["metric"].isin(sub["metric"])], task, pq)}
    keys = list(dict.fromkeys(zip(sub["dataset"], sub["metric"])))
    keys.sort(key=lambda k: (list(dict.fromkeys(sub["dataset"])).index(k[0]), _metric_key(k[1])))
    several = len({d for d, _ in keys}) > 1
    methods = list(dict.fromkeys(sorted(sub["method"])))
    cell = {(r.method, r.dataset, r.metric): r for r in sub.itertuples()}
    rows, any_mark = [], False
    for m in methods:
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
                mk = c.marks.get(m, "")
                if mk:
                    any_mark = True
                    text += mk
            row.append(text)
        rows.append(row)
    header = ["method"] + [f"{ds} · {metric}" if several else metric for ds, metric in keys]
    declared = long.groupby("metric")["direction"].first() if "direction" in long else {}
    arrows = {metric: {1: " ↑", -1: " ↓", 0: ""}[int(declared[metric]) if metric in declared else _direction(metric)]
              for _, metric in keys}
    header = [header[0]] + [h + arrows[k[1]] for h, k in zip(header[1:], keys)]
    return _md_table(header, rows, ["---"] + ["--:"] * len(keys)), any_mark


def _legend(n_seeds: int) -> str:
    return (f"Mean ± std over seeds (n = {n_seeds} where complete); ↑ higher is better, ↓ lower is better; "
            "best per column in **bold**, second <u>underlined</u>. Against the column's best, Holm-corrected "
            f"across the methods of the column, p < {ALPHA}: {MARK_T} paired t-test over seeds, "
            f"{MARK_W} Wilcoxon signed-rank over seeds (needs ≥ 6 seeds to ever reach {ALPHA}), "
            f"{MARK_U} Wilcoxon signed-rank over test users (per-query values paired by query id on the same "
            "seed, differences averaged over seeds; only where cells saved `per_query.parquet`). "
            "No marker: no significant difference (or too few seeds).")


def _tables_md(agg: pd.DataFrame, long: pd.DataFrame, pq: _PerQuery | None, level: str = "##") -> str:
    if agg.empty:
        return "_No FINISHED cells with metrics yet._\n"
    parts = []
    tasks = [t for t in dict.fromkeys(agg["task"]) if t != TRUTH] + ([TRUTH] if TRUTH in set(agg["task"]) else [])
    for task in tasks:
        table, _ = _task_table(agg, long, task, pq)
        if not table:
            continue
        title = "Truth (scores against the known ground truth)" if task == TRUTH else f"Task: {task}"
        n = int(agg.loc[agg["task"] == task, "n_seeds"].max())
        parts.append(f"{level} {title}\n\n{table}\n\n{_legend(n)}\n")
    return "\n".join(parts) if parts else "_No FINISHED cells with metrics yet._\n"


def results_markdown(tracker: Tracker, suite: str, per_query: bool = True,
                     configs: Iterable[str] | None = None) -> str:
    _, long = _long(tracker, suite, configs)
    return _tables_md(_aggregate(long), long, _PerQuery(tracker) if per_query else None)


def results_csv(tracker: Tracker, suite: str, configs: Iterable[str] | None = None) -> str:
    return results_table(tracker, suite, configs).to_csv(index=False)


def results_json(tracker: Tracker, suite: str, configs: Iterable[str] | None = None) -> str:
    frame = results_table(tracker, suite, configs)
    records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
               for r in frame.to_dict(orient="records")]
    return json.dumps(records, indent=1, default=str)


def _cells_md(df: pd.DataFrame, tracker: Tracker) -> str:
    if df.empty:
        return "## Cells\n\n_No cells recorded._\n"
    superseded = 0
    if "start_time" in df and "run_name" in df:  # as in the tables: the newest record of a cell counts
        newest = df.sort_values("start_time", ascending=False, kind="stable").drop_duplicates("run_name")
        superseded, df = len(df) - len(newest), newest
    counts = df["status"].value_counts()
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("FINISHED", "FAILED", "SKIPPED") if counts.get(s, 0))
    wall = pd.to_numeric(df.get("wall_time"), errors="coerce")
    total = float(np.nansum(wall)) if len(wall) else 0.0
    older = (f" ({superseded} older records of these cells, from earlier configurations or attempts, are not listed)"
             if superseded else "")
    out = [f"## Cells\n\n{len(df)} cells: {summary}; total wall time {total:.1f} s{older}.\n"]
    has_fit = "metrics.time/fit_s" in df
    has_eval = "metrics.time/eval_s" in df
    header = ["cell", "status", "wall time (s)"] + (["fit (s)"] if has_fit else []) + (["eval (s)"] if has_eval else [])
    rows = []
    for _, r in df.sort_values(["_dataset", "_method", "_seed"], kind="stable").iterrows():
        name = r.get("run_name") if pd.notna(r.get("run_name")) else r.get("config_hash")
        row = [name, r["status"], "" if pd.isna(r.get("wall_time")) else f"{float(r['wall_time']):.2f}"]
        for flag, col in ((has_fit, "metrics.time/fit_s"), (has_eval, "metrics.time/eval_s")):
            if flag:
                row.append("" if pd.isna(r.get(col)) else f"{float(r[col]):.2f}")
        rows.append(row)
    out.append(_md_table(header, rows, ["---", "---"] + ["--:"] * (len(header) - 2)) + "\n")
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
            out.append(f"- {r.get('run_name')}:\n\n```\n{_error_excerpt(tracker, r)}\n```\n")
    return "\n".join(out)


def _error_excerpt(tracker: Tracker, row: pd.Series, n_lines: int = 4) -> str:
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


# --------------------------------------------------------------------------- plots
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "x"


def _has_steps(tracker: Tracker, runs: pd.DataFrame, name: str) -> bool:
    """Whether `name` is a curve (several steps) rather than one value logged once, judged on one run."""
    try:
        return len(tracker.curve(runs["run_id"].iloc[0], name)) > 1
    except NotImplementedError:
        return True


def _plot_curves(df: pd.DataFrame, tracker: Tracker, folder: Path) -> list[tuple[str, Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fin = df[df["status"] == "FINISHED"]
    names = sorted(c[len("metrics."):] for c in fin.columns if c.startswith("metrics.train/") and fin[c].notna().any()
                   and _has_steps(tracker, fin[fin[c].notna()], c[len("metrics."):]))
    out = []
    seeds = sorted(fin["_seed"].unique(), key=lambda s: (s != "0", s))
    seed = seeds[0] if seeds else "0"
    for name in names:
        sub = fin[(fin["_seed"] == seed) & fin[f"metrics.{name}"].notna()]
        for dataset, group in sub.groupby("_dataset", sort=True):
            fig, ax = plt.subplots(figsize=(6, 4))
            drawn = 0
            for _, r in group.sort_values("_method").iterrows():
                try:
                    pts = tracker.curve(r["run_id"], name)
                except NotImplementedError:
                    pts = []
                if len(pts) < 1:
                    continue
                steps, values = zip(*sorted(pts))
                ax.plot(steps, values, marker="." if len(pts) < 30 else None, label=r["_method"])
                drawn += 1
            if drawn:
                ax.set_xlabel("step (epoch)")
                ax.set_ylabel(name)
                ax.set_title(f"{name} · {dataset} · seed {seed}")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8)
                fig.tight_layout()
                path = folder / f"curve_{_safe(name)}_{_safe(dataset)}.png"
                fig.savefig(path, dpi=100)
                out.append((f"{name} — {dataset} (seed {seed})", path))
            plt.close(fig)
    return out


def _plot_vs_k(agg: pd.DataFrame, folder: Path) -> list[tuple[str, Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    if agg.empty:
        return out
    a = agg.copy()
    keys = a["metric"].map(_metric_key)
    a["family"] = [k[0] for k in keys]
    a["k"] = [k[1] for k in keys]
    a = a[a["k"] >= 0]
    for (task, family), group in a.groupby(["task", "family"], sort=False):
        if group["k"].nunique() < 2 or family.startswith("n_"):
            continue
        datasets = sorted(group["dataset"].unique())
        fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
        for ax, ds in zip(axes[0], datasets):
            for method, g in group[group["dataset"] == ds].groupby("method", sort=True):
                g = g.sort_values("k")
                ax.errorbar(g["k"], g["mean"], yerr=g["std"].fillna(0), marker="o", capsize=3, label=method)
            ax.set_xticks(sorted(group.loc[group["dataset"] == ds, "k"].unique()))
            ax.set_xlabel("K")
            ax.set_ylabel(f"{task}/{family}@K")
            ax.set_title(ds)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / f"vs_k_{_safe(task)}_{_safe(family)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append((f"{task}: {family} vs K (mean ± std over seeds)", path))
    return out


# --------------------------------------------------------------------------- the report
def _keep_metrics(frame: pd.DataFrame, metrics: Iterable[str] | None) -> pd.DataFrame:
    """Rows whose metric is named in `metrics`, either exactly (`ndcg_10`), by family (`ndcg`: every K) or, for
    planner metrics `<planner>/<metric>`, by the metric (`precision`: every planner)."""
    if not metrics or frame.empty:
        return frame
    want = set(metrics)
    keep = frame["metric"].map(lambda m: m in want or _metric_key(m)[0] in want
                               or m.rsplit("/", 1)[-1] in want) | (frame["task"] == TRUTH)  # planner/metric
    return frame[keep]


def write_suite_report(tracker: Tracker, suite, out_dir: Path | str | None = None) -> Path:
    """`write_report` for a `harness.suite.Suite` as its `report:` block asks (folder, metrics, views, note),
    counting only the configurations the suite has now."""
    rep = suite.report
    return write_report(tracker, suite.name, Path(out_dir or rep.get("dir", "reports")), metrics=rep.get("metrics"),
                        views=rep, note=rep.get("note"), configs=suite.config_hashes)


def write_report(tracker: Tracker, suite: str, out_dir: Path = Path("reports"), per_query: bool = True,
                 metrics: Iterable[str] | None = None, views: dict | None = None, note: str | None = None,
                 configs: Iterable[str] | None = None) -> Path:
    """Write `<out_dir>/<suite>.md` and its PNG plots in `<out_dir>/<suite>/`; return the markdown path.
    `metrics` (the suite's `report.metrics`) limits the tables' columns, e.g. [ndcg_10, recall] — a wide grid
    otherwise gives tables nobody can read; `matchbench results` still prints every metric. `views` (the suite's
    `report:` block) adds the paper-shaped tables and figures of `harness.views` it names; `note` (its
    `report.note`) is the suite author's reading guide, printed under the title. `configs` (the config hashes of
    the suite's cells) keeps records of configurations the suite no longer has out of the report."""
    out_dir = Path(out_dir)
    stem = _safe(suite)
    plots_dir = out_dir / stem
    plots_dir.mkdir(parents=True, exist_ok=True)
    for old in plots_dir.glob("*.png"):
        old.unlink()
    df, long_all = _long(tracker, suite, configs)
    long = _keep_metrics(long_all, metrics)
    agg = _aggregate(long)
    pq = _PerQuery(tracker) if per_query else None

    buf = io.StringIO()
    buf.write(f"# Suite `{suite}`\n\n")
    buf.write(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} from the tracking store by `matchbench report`. ")
    buf.write("Only FINISHED cells enter the tables; the latest record per configuration counts.\n\n")
    if note:
        buf.write(str(note).strip() + "\n\n")
    buf.write(_tables_md(agg, long, pq))
    buf.write("\n")
    if views and not df.empty and any(views.get(k) for k in VIEW_KEYS):
        buf.write("## Views\n\n" + render(views, _aggregate(long_all), df, tracker, plots_dir, out_dir))
    plots = []
    if not df.empty:
        plots = _plot_curves(df, tracker, plots_dir) + _plot_vs_k(agg, plots_dir)
    if plots:
        buf.write("## Plots\n\n")
        for title, path in plots:
            rel = path.relative_to(out_dir).as_posix()
            buf.write(f"### {title}\n\n![{title}]({rel})\n\n")
    buf.write(_cells_md(df, tracker) if not df.empty else "## Cells\n\n_No cells recorded._\n")
    md = out_dir / f"{stem}.md"
    md.write_text(buf.getvalue())
    if not any(plots_dir.iterdir()):
        plots_dir.rmdir()
    return md
