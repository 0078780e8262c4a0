"""Where a suite's time goes: the harness's own per-cell overhead against the models' fit and evaluation.

Issue 14's target: on the 20,000 × 5,000 synthetic world with item_pop, bpr and als (temporal split, itemrec +
userrec, truth metrics on), the overhead per cell — everything but fit and evaluation: load, split, scoring setup,
recording, tracking — is ≤ 10% of fit + evaluation, and the whole suite ≥ 4× faster than before (8 min 15 s). Runs the
suite in this process (jobs 1) into a fresh SQLite store and a fresh dataset cache, and prints the seconds per
phase summed over the cells (from each record's `time/step/*` metrics; tracking timed around the tracker), the
world's own generation (the pre-flight's first load) and the total, then one JSON line.

    .venv/bin/python -m benchmarks.suite_overhead
    .venv/bin/python -m benchmarks.suite_overhead --users 100000 --items 20000      # the issue's large suite
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness import api
from harness.executors import LocalExecutor
from harness.registry import Registry
from harness.runner import make_tracker, run_suite

PHASES = ("load", "split", "fit", "score", "evaluate", "truth", "ctr", "plan", "record")


def peak_rss_mib() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def suite_dict(users: int, items: int, models: list[str]) -> dict:
    return {"name": "suite_overhead", "datasets": [{"name": "synthetic", "n_users": users, "n_items": items}],
            "split": {"name": "temporal", "horizon": 7}, "tasks": ["itemrec", "userrec"],
            "models": [{"name": m} for m in models], "metrics": ["recall", "ndcg"], "cutoffs": [10, 50],
            "seeds": [0], "tracking": {"tracker": "mlflow", "uri": "sqlite:///mlruns.db"},
            "report": {"enabled": False}}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--items", type=int, default=5_000)
    p.add_argument("--models", nargs="+", default=["item_pop", "bpr", "als"])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="matchbench-overhead-"))
    os.chdir(work)
    os.environ["MATCHBENCH_CACHE"] = str(work / "cache")
    reg = Registry.load()
    suite = api.suite(suite_dict(args.users, args.items, args.models), reg)
    tracker = make_tracker(reg, suite)
    tracking = [0.0]
    finished = tracker.cell_finished

    def timed(rec):
        t0 = time.perf_counter()
        finished(rec)
        tracking[0] += time.perf_counter() - t0

    tracker.cell_finished = timed
    t0 = time.perf_counter()
    records = run_suite(suite, reg, LocalExecutor(1), tracker)
    total = time.perf_counter() - t0
    phases = {ph: sum(r.metrics.get(f"time/step/{ph}_s", 0.0) for r in records) for ph in PHASES}
    phases["tracking"] = tracking[0]
    cells = sum(phases.values())
    phases["pre-flight (world generated, cached, split)"] = total - cells
    work_s = phases["fit"] + phases["evaluate"] + phases["truth"]
    harness_s = sum(phases[ph] for ph in ("load", "split", "score", "ctr", "plan", "record", "tracking"))
    print(f"{len(records)} cells ({', '.join(r.status for r in records)}), world {args.users:,} x {args.items:,}, "
          f"{args.threads} threads, {total:.1f} s in all, peak RSS {peak_rss_mib():,.0f} MiB")
    for name, s in phases.items():
        print(f"  {name:46} {s:8.1f} s")
    print(f"per-cell harness overhead {harness_s:.1f} s = {harness_s / max(work_s, 1e-9):.1%} of fit + evaluation "
          f"+ truth ({work_s:.1f} s)")
    out = {"benchmark": "suite_overhead", "users": args.users, "items": args.items, "models": args.models,
           "total_s": round(total, 1), "phases_s": {k: round(v, 2) for k, v in phases.items()},
           "overhead_ratio": round(harness_s / max(work_s, 1e-9), 4), "peak_rss_mib": round(peak_rss_mib()),
           "threads": args.threads}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
