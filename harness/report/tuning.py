"""What the report says about tuned cells (`harness.tuning`): per tuned method, data and seed the parameters its
study chose, the trials it ran and the best validation value; one plot per study (the validation metric over
trials); and the `tuned` column of `matchbench results`. Read from the cells' records only (params `tuned.<name>`,
tag `matchbench.tuned`, metrics `tune/...`, curves `tune/trial_value` / `tune/trial_best`).

Internal: plugin authors use `harness.plugin`; this module may change between versions.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..tracking import Tracker
from .plots import curve, pyplot, safe_name, save_single

TAG = "tags.matchbench.tuned"


def chosen_text(tag: object) -> str:
    """`factors=64, lr=0.0123` from a cell's `matchbench.tuned` tag (floats to 4 significant digits)."""
    try:
        params = json.loads(tag) if isinstance(tag, str) else {}
    except ValueError:
        return str(tag)
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def tuned_cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per FINISHED tuned cell of a labelled runs frame: method, dataset, seed, chosen, trials (complete /
    pruned / failed), metric, best (validation value), run_id."""
    cols = ["method", "dataset", "seed", "chosen", "trials", "complete", "pruned", "failed", "metric", "best",
            "run_id"]
    if df.empty or TAG not in df:
        return pd.DataFrame(columns=cols)
    fin = df[(df["status"] == "FINISHED") & df[TAG].notna()]

    def num(col: str) -> pd.Series:
        return pd.to_numeric(fin[col], errors="coerce") if col in fin else pd.Series(float("nan"), index=fin.index)

    out = pd.DataFrame({"method": fin["_method"], "dataset": fin["_dataset"], "seed": fin["_seed"],
                        "chosen": fin[TAG].map(chosen_text), "trials": num("metrics.tune/trials"),
                        "complete": num("metrics.tune/complete"), "pruned": num("metrics.tune/pruned"),
                        "failed": num("metrics.tune/failed"),
                        "metric": fin["params.tune.metric"] if "params.tune.metric" in fin else "",
                        "best": num("metrics.tune/best_value"), "run_id": fin["run_id"]})
    return out.sort_values(["dataset", "method", "seed"], kind="stable").reset_index(drop=True)[cols]


def with_tuned(agg: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """The results table with a `tuned` column (the chosen parameters per method and dataset: one text where
    every seed chose the same, else `seed S: ...` per seed) when the suite has tuned cells; unchanged otherwise."""
    cells = tuned_cells(df)
    if cells.empty or agg.empty:
        return agg
    text = {}
    for (method, dataset), g in cells.groupby(["method", "dataset"], sort=False):
        chosen = list(dict.fromkeys(g["chosen"]))
        text[(method, dataset)] = chosen[0] if len(chosen) == 1 else "; ".join(
            f"seed {s}: {c}" for s, c in zip(g["seed"], g["chosen"], strict=False))
    out = agg.copy()
    out["tuned"] = [text.get((m, d), "") for m, d in zip(out["method"], out["dataset"], strict=False)]
    return out


def tuning_md(df: pd.DataFrame, tracker: Tracker | None = None, folder: Path | None = None,
              out_dir: Path | None = None, level: str = "##") -> str:
    """The report's tuning section (empty without tuned cells): a table of every tuned cell and, given a folder,
    one plot per study of the validation metric over its trials."""
    from .markdown import md_table

    cells = tuned_cells(df)
    if cells.empty:
        return ""
    rows = []
    for r in cells.itertuples():
        counts = f"{int(r.trials)}" if pd.notna(r.trials) else "?"
        extra = [f"{int(v)} {what}" for v, what in ((r.pruned, "pruned"), (r.failed, "failed")) if pd.notna(v) and v]
        rows.append([r.method, r.dataset, r.seed, r.chosen, counts + (f" ({', '.join(extra)})" if extra else ""),
                     "" if pd.isna(r.best) else f"{r.best:.4f}"])
    metrics = ", ".join(sorted({str(m) for m in cells["metric"] if str(m)}))
    out = [f"{level} Tuned methods\n",
           f"Each tuned cell ran an Optuna study on the split's validation set ({metrics}); the chosen parameters "
           "were fitted once and only that fit met the test set. Trials: finished trials of the study (pruned and "
           "failed ones included); best: the chosen trial's validation value.\n",
           md_table(["method", "data", "seed", "chosen parameters", "trials", "best (validation)"], rows,
                    ["---", "---", "--:", "---", "--:", "--:"]) + "\n"]
    if tracker is not None and folder is not None:
        for (method, dataset), g in cells.groupby(["method", "dataset"], sort=True):
            studies = [(r.seed, curve(tracker, r.run_id, "tune/trial_value"), curve(tracker, r.run_id,
                                                                                  "tune/trial_best"))
                       for r in g.itertuples()]
            path = study_plot(studies, Path(folder) / f"study_{safe_name(method)}_{safe_name(dataset)}.png",
                              f"study · {method} · {dataset}", f"{g['metric'].iloc[0]} (validation)")
            if path is not None:
                rel = path.relative_to(out_dir).as_posix() if out_dir is not None else path.name
                out.append(f"![study {method} · {dataset}]({rel})\n")
    return "\n".join(out) + "\n"


def study_plot(studies: list[tuple[str, list, list]], path: Path, title: str, ylabel: str) -> Path | None:
    """One study per seed: each trial's validation value (points) and the best so far (a step line, same colour);
    nothing is written (None) when no study has a completed trial."""
    if not any(values for _, values, _ in studies):
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, (seed, values, best) in enumerate(studies):
        if not values:
            continue
        colour = f"C{n % 10}"
        ax.plot(*zip(*sorted(values), strict=False), "o", color=colour, alpha=0.6, label=f"seed {seed}: trials")
        ax.step(*zip(*sorted(best), strict=False), where="post", color=colour, label=f"seed {seed}: best so far")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    save_single(fig, ax, path, title, "trial", ylabel)
    plt.close(fig)
    return path
