"""The same 64-cell suite on `local --jobs 2` and on Ray with 2 workers: wall time, overhead per cell, driver memory.

The suite: item_pop and bpr (8 factors, 2 epochs) on a small synthetic world (300 users × 80 items), temporal
split, itemrec, × 32 seeds = 64 cells. The world is built once into a shared disk cache first, so both runs read
it from there; each executor then runs in a fresh process (its driver) into a fresh SQLite store. Figures:

- wall: the whole run_suite call, start-up of the workers (or of the local Ray instance) included;
- work: the sum over cells of fit + evaluation seconds (each record's `time/fit_s` + `time/eval_s`);
- overhead per cell: (wall − work) / cells, as the issue defines it, and (wall × workers − work) / cells, the
  worker-seconds per cell spent on anything but fit and evaluation (start-up, load, split, transfer, recording);
- driver peak RSS: the driver process's own `ru_maxrss` (workers excluded).

With `--repeats N` the executors take turns N times and the fastest run of each is shown (on a shared machine the
slow runs measure the neighbours), with every run's wall and the load average before it.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.executors --repeats 2
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.executors --seeds 8 --executors local   # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def suite_dict(seeds: int) -> dict:
    return {"name": "executors_bench", "datasets": [{"name": "synthetic", "n_users": 300, "n_items": 80, "days": 30.0}],
            "split": {"name": "temporal", "horizon": 7}, "tasks": ["itemrec"],
            "models": [{"name": "item_pop"}, {"name": "bpr", "factors": 8, "epochs": 2}],
            "metrics": ["recall", "ndcg"], "cutoffs": [10], "seeds": list(range(seeds)),
            "tracking": {"tracker": "mlflow", "uri": "sqlite:///mlruns.db"}, "report": {"enabled": False}}


def peak_rss_mib() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def one(name: str, seeds: int, jobs: int) -> dict:
    """Run the suite on one executor in this process (the driver) and return its figures."""
    from harness import api
    from harness.executors import make_executor
    from harness.registry import Registry
    from harness.runner import make_tracker, run_suite

    reg = Registry.load()
    suite = api.suite(suite_dict(seeds), reg)
    tracker = make_tracker(reg, suite)
    executor = make_executor(name, jobs)
    t0 = time.perf_counter()
    records = run_suite(suite, reg, executor, tracker)
    wall = time.perf_counter() - t0
    work = sum(r.metrics.get("time/fit_s", 0.0) + r.metrics.get("time/eval_s", 0.0) for r in records)
    n = len(records)
    return {"executor": name, "jobs": jobs, "cells": n, "finished": sum(r.status == "FINISHED" for r in records),
            "wall_s": round(wall, 2), "work_s": round(work, 2),
            "overhead_per_cell_s": round((wall - work) / n, 3),
            "worker_overhead_per_cell_s": round((wall * jobs - work) / n, 3),
            "driver_peak_rss_mib": round(peak_rss_mib())}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=32, help="seeds per model (cells = 2 × seeds)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--executors", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    p.add_argument("--repeats", type=int, default=1, help="runs per executor, interleaved; the fastest is shown")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one executor, print JSON
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.seeds, args.jobs)))
        return []
    work = Path(tempfile.mkdtemp(prefix="matchbench-executors-"))
    env = dict(os.environ, MATCHBENCH_CACHE=str(work / "cache"), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS",
                                                                                                   "1"))
    warm = ("from harness import api; from harness.registry import Registry; from harness.preflight import preflight;"
            f"reg = Registry.load(); s = api.suite({suite_dict(args.seeds)!r}, reg); preflight(s.runnable, reg)")
    subprocess.run([sys.executable, "-c", warm], cwd=ROOT, env=env, check=True)  # the world, cached once
    runs: dict[str, list[dict]] = {name: [] for name in args.executors}
    for rep, name in ((r, n) for r in range(args.repeats) for n in args.executors):
        folder = work / f"{name}-{rep}"
        folder.mkdir()
        load = os.getloadavg()[0]
        res = subprocess.run([sys.executable, "-m", "benchmarks.executors", "--one", name, "--seeds", str(args.seeds),
                              "--jobs", str(args.jobs)], cwd=folder, env=dict(env, PYTHONPATH=str(ROOT)),
                             capture_output=True, text=True)
        if res.returncode != 0:
            print(res.stdout + res.stderr, file=sys.stderr)
            raise SystemExit(f"{name}: failed (exit {res.returncode})")
        runs[name].append(dict(json.loads(res.stdout.strip().splitlines()[-1]), load_before=round(load, 1)))
    out = [min(rs, key=lambda r: r["wall_s"]) for rs in runs.values()]
    print(f"{2 * args.seeds} cells (item_pop + bpr on a 300 × 80 synthetic world, itemrec), {args.jobs} workers, "
          f"{os.cpu_count()} cores; fastest of {args.repeats} interleaved run(s) each, walls: "
          + "; ".join(f"{n} " + ", ".join(f"{r['wall_s']:.1f} s (load {r['load_before']})" for r in rs)
                      for n, rs in runs.items()))
    print(f"{'executor':10} {'wall s':>8} {'work s':>8} {'(wall-work)/cell s':>19} {'(wall*jobs-work)/cell s':>24} "
          f"{'driver peak MiB':>16}")
    for r in out:
        print(f"{r['executor']:10} {r['wall_s']:8.1f} {r['work_s']:8.1f} {r['overhead_per_cell_s']:19.3f} "
              f"{r['worker_overhead_per_cell_s']:24.3f} {r['driver_peak_rss_mib']:16,}")
    print(json.dumps({"benchmark": "executors", "results": out, "all": runs}))
    return out


if __name__ == "__main__":
    main()
