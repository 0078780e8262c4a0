"""PNG figures of a report: training curves (one drawing function for the learning-curve plots and the
`curves` view) and each ranking metric against its cut-off K.

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..tracking import Tracker
from .aggregation import metric_key


def safe_name(name: str) -> str:
    """A file-name stem: runs of other characters become `_`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "x"


def wrap(text: str, width: int = 70) -> str:
    return "\n".join(textwrap.wrap(text, width))


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (reports are written where no display exists)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def first_seed(runs: pd.DataFrame) -> str:
    """The seed a curve plot shows: seed 0 if there is one, else the first."""
    seeds = sorted(runs["_seed"].unique(), key=lambda s: (s != "0", s))
    return seeds[0] if seeds else "0"


def curve(tracker: Tracker, run_id: str, name: str) -> list[tuple[int, float]]:
    """A run's curve, empty where the tracker keeps none."""
    try:
        return tracker.curve(run_id, name)
    except NotImplementedError:
        return []


def plot_curves(lines: Iterable[tuple[str, list[tuple[int, float]]]], path: Path, title: str, xlabel: str,
                ylabel: str) -> Path | None:
    """One figure, a line per (label, points); nothing is written (None) when no line has a point."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = 0
    for label, pts in lines:
        if not pts:
            continue
        steps, values = zip(*sorted(pts), strict=False)
        ax.plot(steps, values, marker="." if len(pts) < 30 else None, label=label)
        drawn += 1
    if drawn:
        save_single(fig, ax, path, title, xlabel, ylabel)
    plt.close(fig)
    return path if drawn else None


def save_single(fig, ax, path: Path, title: str, xlabel: str, ylabel: str) -> None:
    """Label, grid and legend the one axes of `fig` the way every single-panel report figure is, and write it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(wrap(title), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _has_steps(tracker: Tracker, runs: pd.DataFrame, name: str) -> bool:
    """Whether `name` is a curve (several steps) rather than one value logged once, judged on one run."""
    try:
        return len(tracker.curve(runs["run_id"].iloc[0], name)) > 1
    except NotImplementedError:
        return True


def learning_curves(df: pd.DataFrame, tracker: Tracker, folder: Path) -> list[tuple[str, Path]]:
    """Per `train/` curve and dataset, every method's curve on one plot (seed 0 or the first seed)."""
    fin = df[df["status"] == "FINISHED"]
    names = sorted(c[len("metrics."):] for c in fin.columns if c.startswith("metrics.train/") and fin[c].notna().any()
                   and _has_steps(tracker, fin[fin[c].notna()], c[len("metrics."):]))
    seed = first_seed(fin)
    out = []
    for name in names:
        sub = fin[(fin["_seed"] == seed) & fin[f"metrics.{name}"].notna()]
        for dataset, group in sub.groupby("_dataset", sort=True):
            lines = [(r["_method"], curve(tracker, r["run_id"], name))
                     for _, r in group.sort_values("_method").iterrows()]
            path = plot_curves(lines, folder / f"curve_{safe_name(name)}_{safe_name(dataset)}.png",
                               f"{name} · {dataset} · seed {seed}", "step (epoch)", name)
            if path is not None:
                out.append((f"{name} — {dataset} (seed {seed})", path))
    return out


def metric_vs_k(agg: pd.DataFrame, folder: Path) -> list[tuple[str, Path]]:
    """Per task and metric family with several cut-offs: mean ± std against K, one panel per dataset."""
    out = []
    if agg.empty:
        return out
    plt = pyplot()
    a = agg.copy()
    keys = a["metric"].map(metric_key)
    a["family"] = [k[0] for k in keys]
    a["k"] = [k[1] for k in keys]
    a = a[a["k"] >= 0]
    for (task, family), group in a.groupby(["task", "family"], sort=False):
        if group["k"].nunique() < 2 or family.startswith("n_"):
            continue
        datasets = sorted(group["dataset"].unique())
        fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
        for ax, ds in zip(axes[0], datasets, strict=False):
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
        path = folder / f"vs_k_{safe_name(task)}_{safe_name(family)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append((f"{task}: {family} vs K (mean ± std over seeds)", path))
    return out
