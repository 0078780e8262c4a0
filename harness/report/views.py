"""Paper-shaped views of a suite's results, asked for in the suite's `report:` block.

The generic report has one wide table per task; papers compare methods in other shapes. Each view reads the
same aggregated results (`results_table`: task, method, dataset, metric, mean, std, n_seeds), so any suite can
ask for any of them:

    report:
      tables:   [{title: ..., metric: ctr/auc, baseline: LR, rows: [LR, DIN, DMR]}]   # value and RI per dataset
      scatter:  [{title: ..., x: itemrec/recall_10, y: userrec/recall_10}]            # one point per method
      fronts:   [{title: ..., x: item_perplexity, y: recall, methods: [bpr, ...]}]     # matching planners over beta
      curves:   [{title: ..., method: DMR, metrics: [train/target_loss_iter, train/aux_loss_iter]}]

- `tables`: rows = methods (`rows`, default all), per dataset the metric's mean ± std and its relative
  improvement RI = (value − baseline) / baseline over the `baseline` method (DMR Tables 1–2);
- `scatter`: per dataset, each method at (mean x, mean y) with ± std bars (RIM Figure 3: item recommendation
  against user targeting);
- `fronts`: per dataset, each method × planner family (the planner label without its `_b<beta>` part) as a line
  through its beta settings in the (x, y) plane of two matching metrics (RIM Figure 4: relevance against
  diversity); `methods` limits the lines;
- `curves`: several training curves of one method on one plot per dataset (seed 0 or the first seed; DMR
  Figure 3: L_target and β·L_NS).

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..tracking import Tracker
from .plots import curve, first_seed, plot_curves, pyplot, safe_name, wrap

VIEW_KEYS = {"tables": ("metric", "baseline"), "scatter": ("x", "y"), "fronts": ("x", "y"),
             "curves": ("method", "metrics")}
_BETA = re.compile(r"_b(?P<beta>[0-9.eE+-]+)(?=_|$)")


def check(report: dict[str, Any]) -> list[str]:
    """Problems with the views of a suite's `report:` block (each a list of mappings with its required keys)."""
    problems = []
    for kind, required in VIEW_KEYS.items():
        entries = report.get(kind)
        if entries is None:
            continue
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            problems.append(f"report.{kind}: a list of mappings, e.g. [{{{', '.join(f'{k}: ...' for k in required)}}}]")
            continue
        for n, e in enumerate(entries):
            missing = [k for k in required if k not in e]
            if missing:
                problems.append(f"report.{kind}[{n}]: missing {', '.join(missing)} (needs {', '.join(required)})")
    return problems


def _split(metric: str) -> tuple[str, str]:
    task, _, name = metric.partition("/")
    return task, name


# --------------------------------------------------------------------------- relative-improvement table
def relative_table(agg: pd.DataFrame, metric: str, baseline: str, rows: list[str] | None = None,
                   title: str | None = None) -> str:
    """Markdown: per dataset the metric (mean ± std) and RI against `baseline`, rows in the order given."""
    task, name = _split(metric)
    sub = agg[(agg["task"] == task) & (agg["metric"] == name)]
    head = f"### {title or f'{metric}, relative improvement over {baseline}'}\n\n"
    if sub.empty:
        return head + f"_No results for {metric}._\n\n"
    methods = rows or sorted(sub["method"].unique())
    datasets = sorted(sub["dataset"].unique())
    header = ["method"] + [h for d in datasets for h in (f"{d} {name}", f"{d} RI")]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|--:" * (len(header) - 1) + "|"]
    for m in methods:
        cells = [m]
        for d in datasets:
            here = sub[(sub["method"] == m) & (sub["dataset"] == d)]
            base = sub[(sub["method"] == baseline) & (sub["dataset"] == d)]
            if here.empty:
                cells += ["–", "–"]
                continue
            mean, std = float(here["mean"].iloc[0]), here["std"].iloc[0]
            cells.append(f"{mean:.4f}" + (f" ± {float(std):.4f}" if pd.notna(std) else ""))
            b = float(base["mean"].iloc[0]) if not base.empty else np.nan
            cells.append(f"{100 * (mean - b) / b:+.2f}%" if np.isfinite(b) and b != 0 else "–")
        lines.append("| " + " | ".join(cells) + " |")
    missing = [m for m in methods if m not in set(sub["method"])]
    note = f"\n\nNo results for: {', '.join(missing)}." if missing else ""
    return (head + "\n".join(lines) + f"\n\nRI = (value − {baseline}) / {baseline}, per dataset; mean ± std over "
            "seeds." + note + "\n\n")


# --------------------------------------------------------------------------- scatter: one point per method
def scatter(agg: pd.DataFrame, x: str, y: str, path: Path, title: str | None = None) -> Path | None:
    """One panel per dataset: each method at (mean x, mean y) with ± std bars."""
    (tx, mx), (ty, my) = _split(x), _split(y)
    a = agg[(agg["task"] == tx) & (agg["metric"] == mx)].set_index(["dataset", "method"])
    b = agg[(agg["task"] == ty) & (agg["metric"] == my)].set_index(["dataset", "method"])
    both = a.merge(b, left_index=True, right_index=True, how="inner", suffixes=("_x", "_y")).reset_index()
    if both.empty:
        return None
    plt = pyplot()
    datasets = sorted(both["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.5), squeeze=False)
    for ax, d in zip(axes[0], datasets, strict=False):
        g = both[both["dataset"] == d]
        ax.errorbar(g["mean_x"], g["mean_y"], xerr=g["std_x"].fillna(0), yerr=g["std_y"].fillna(0), fmt="o",
                    capsize=2, alpha=0.8)
        for _, r in g.iterrows():
            ax.annotate(r["method"], (r["mean_x"], r["mean_y"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(d)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(wrap(title, 110), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- fronts: planners over beta
def front_points(agg: pd.DataFrame, x: str, y: str, methods: list[str] | None = None) -> pd.DataFrame:
    """(dataset, method, family, beta, x, y) for every matching planner label that reports both metrics."""
    m = agg[agg["task"] == "matching"]
    parts = m["metric"].str.rsplit("/", n=1, expand=True) if not m.empty else None
    if parts is None or parts.shape[1] < 2:
        return pd.DataFrame(columns=["dataset", "method", "family", "beta", "x", "y"])
    m = m.assign(planner=parts[0], name=parts[1])
    px = m[m["name"] == x].set_index(["dataset", "method", "planner"])["mean"].rename("x")
    py = m[m["name"] == y].set_index(["dataset", "method", "planner"])["mean"].rename("y")
    pts = pd.concat([px, py], axis=1, join="inner").reset_index()
    if methods:
        pts = pts[pts["method"].isin(methods)]
    beta = pts["planner"].map(lambda p: float(_BETA.search(p)["beta"]) if _BETA.search(p) else 0.0)
    family = pts["planner"].map(lambda p: _BETA.sub("", p))
    return pts.assign(family=family, beta=beta).sort_values(["dataset", "method", "family", "beta"])[
        ["dataset", "method", "family", "beta", "x", "y"]]


def fronts(agg: pd.DataFrame, x: str, y: str, path: Path, methods: list[str] | None = None,
           title: str | None = None) -> Path | None:
    """One panel per dataset (rows) and planner family (columns), as the paper's Figure 4(a)-(c): each method a
    line through its beta settings."""
    pts = front_points(agg, x, y, methods)
    if pts.empty:
        return None
    plt = pyplot()
    datasets, families = sorted(pts["dataset"].unique()), sorted(pts["family"].unique())
    fig, axes = plt.subplots(len(datasets), len(families), figsize=(4.2 * len(families), 3.6 * len(datasets)),
                             squeeze=False)
    colours = {m: f"C{i % 10}" for i, m in enumerate(sorted(pts["method"].unique()))}
    for r, d in enumerate(datasets):
        for c, f in enumerate(families):
            ax = axes[r][c]
            for method, g in pts[(pts["dataset"] == d) & (pts["family"] == f)].groupby("method", sort=True):
                ax.plot(g["x"], g["y"], "-o", color=colours[method], label=method, ms=3)
            ax.set_title(f"{d} · {f}", fontsize=9)
            ax.set_xlabel(f"matching/{x}", fontsize=8)
            ax.set_ylabel(f"matching/{y}", fontsize=8)
            ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=col, marker="o", label=m) for m, col in colours.items()]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8)
    if title:
        fig.suptitle(wrap(title + " (points: beta; left to right as beta grows)", 130), fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(handles) // 6), 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- several curves of one method
def curves(df: pd.DataFrame, tracker: Tracker, method: str, metrics: list[str], path_of: Callable[[str], Path],
           title: str | None = None) -> list[tuple[str, Path]]:
    """One plot per dataset: the training curves `metrics` of `method` (its first seed)."""
    fin = df[(df["status"] == "FINISHED") & (df["_method"] == method)]
    if fin.empty:
        return []
    seed = first_seed(fin)
    out = []
    for dataset, group in fin[fin["_seed"] == seed].groupby("_dataset", sort=True):
        run_id = group["run_id"].iloc[0]
        path = plot_curves([(name, curve(tracker, run_id, name)) for name in metrics], path_of(f"{method}_{dataset}"),
                           f"{title or method} · {dataset} · seed {seed}", "step", "training loss")
        if path is not None:
            out.append((f"{title or method} — {dataset} (seed {seed})", path))
    return out


def render(views: dict[str, Any], agg: pd.DataFrame, df: pd.DataFrame, tracker: Tracker, folder: Path, out_dir: Path
           ) -> str:
    """Markdown for every view the suite asked for (PNG files written into `folder`)."""
    buf = []
    for t in views.get("tables") or []:
        buf.append(relative_table(agg, t["metric"], t["baseline"], t.get("rows"), t.get("title")))
    figs: list[tuple[str, Path | None]] = []
    for n, s in enumerate(views.get("scatter") or []):
        title = s.get("title") or f"{s['y']} against {s['x']}"
        path = folder / f"scatter_{n}_{safe_name(s['x'])}_{safe_name(s['y'])}.png"
        figs.append((title, scatter(agg, s["x"], s["y"], path, s.get("title"))))
    for n, f in enumerate(views.get("fronts") or []):
        title = f.get("title") or f"matching: {f['y']} against {f['x']} over beta"
        path = folder / f"front_{n}_{safe_name(f['x'])}_{safe_name(f['y'])}.png"
        figs.append((title, fronts(agg, f["x"], f["y"], path, f.get("methods"), f.get("title"))))
    for n, c in enumerate(views.get("curves") or []):
        figs += curves(df, tracker, c["method"], list(c["metrics"]),
                       lambda stem, n=n: folder / f"curves_{n}_{safe_name(stem)}.png", c.get("title"))
    for title, path in figs:
        if path is None:
            buf.append(f"### {title}\n\n_No results to plot._\n\n")
        else:
            buf.append(f"### {title}\n\n![{title}]({path.relative_to(out_dir).as_posix()})\n\n")
    return "".join(buf)
