"""What wrapping `implicit` costs: ALS fitted and ranked directly vs through the harness.

Protocol: MovieLens-100K u.data, a random 80/20 holdout of events (numpy seed 0); test users are
those with a held-out event. Each repeat times, in alternating order,

  direct   build the users x items count CSR, fit implicit.als.AlternatingLeastSquares (default
           parameters, seed 0), then model.recommend(test_users, user_items[test_users], N=10,
           filter_already_liked_items=True) in one batch call;
  harness  the `als` model plugin's fit on a fresh Interactions (so its CSR is built again), then
           ScoreSource + evaluate_full (itemrec, training items excluded, NDCG@10 and Precision@10).

BLAS is pinned to one thread in both (threadpoolctl) and implicit runs --threads OpenMP threads in
both. It prints the medians, the ratio harness / direct (design target: <= 1.10), whether both
produced the same top-10 lists, and ends with one JSON line. On a shared or busy machine implicit's
fit times are noisy (its OpenMP threads spin-wait; OMP_WAIT_POLICY=passive steadies them): run it
more than once, or with --threads 1.

    python benchmarks/implicit_overhead.py [--data PATH/u.data] [--repeats 5] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from harness.plugin import data_root

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(data_root() / "movielens-100k" / "u.data"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="implicit's num_threads (and torch's), same on both sides")
    ap.add_argument("--factors", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import implicit
    from threadpoolctl import threadpool_limits

    import plugins.models.implicit_mf as implicit_mf
    from harness.evaluate import ScoreSource, evaluate_full
    from harness.model import FitContext
    from harness.registry import Registry
    from harness.splits import states_from_events

    reg = Registry.load()
    if "als" not in reg.names("model"):  # the entry point is not in pyproject.toml yet
        reg = Registry.load(extra=[implicit_mf])
    ds = reg.create("dataset", "movielens", path=args.data)
    x = ds.interactions
    test = np.random.default_rng(0).random(len(x)) < 0.2
    train, held = x.subset(~test), x.subset(test)
    ev = states_from_events(train, np.arange(x.n_users), np.full(x.n_users, np.inf))
    ev.targets = sp.csr_matrix((np.ones(len(held), np.float32), (held.user, held.item)), shape=(x.n_users, x.n_items))
    ev.__post_init__()
    test_users = np.flatnonzero(np.diff(ev.targets.indptr) > 0).astype(np.int32)
    metrics = {m: reg.get("metric", m) for m in ("ndcg", "precision")}
    params = dict(factors=args.factors, iterations=args.iterations)
    device = torch.device("cpu")

    def direct():
        t0 = time.perf_counter()
        user_items = sp.csr_matrix((np.ones(len(train), np.float32), (train.user, train.item)),
                                   shape=(train.n_users, train.n_items))
        user_items.sum_duplicates()
        model = implicit.als.AlternatingLeastSquares(**params, num_threads=args.threads, random_state=0,
                                                     use_gpu=False)
        model.fit(user_items, show_progress=False)
        t1 = time.perf_counter()
        ids, _ = model.recommend(test_users, user_items[test_users], N=10, filter_already_liked_items=True)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, ids

    def harness():
        fresh = replace(train)  # a new Interactions: its cached CSR is built again inside the timing
        t0 = time.perf_counter()
        model = reg.create("model", "als", **params)
        model.fit(fresh, None, FitContext(seed=0, device=device, extra={"num_threads": args.threads}))
        t1 = time.perf_counter()
        src = ScoreSource(model, ev, fresh.n_items, device)
        res = evaluate_full("itemrec", src, ev, [10], metrics, fresh.item_counts)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, res

    times = {"direct_fit": [], "direct_rank": [], "harness_fit": [], "harness_eval": []}
    with threadpool_limits(1, "blas"):
        _, _, ids = direct()       # warm-up (imports, first calls, allocator), not timed
        _, _, res = harness()
        for r in range(args.repeats):
            order = ((("direct", direct), ("harness", harness)) if r % 2 == 0
                     else (("harness", harness), ("direct", direct)))
            for name, fn in order:
                a, b, _ = fn()
                times[f"{name}_fit"].append(a)
                times[f"{name}_{'rank' if name == 'direct' else 'eval'}"].append(b)

    same = float((np.asarray(ids, np.int64) == res.topk.index).all(1).mean())
    med = {k: statistics.median(v) for k, v in times.items()}
    direct_total = statistics.median(
        [a + b for a, b in zip(times["direct_fit"], times["direct_rank"], strict=False)])
    harness_total = statistics.median(
        [a + b for a, b in zip(times["harness_fit"], times["harness_eval"], strict=False)])
    ratio = harness_total / direct_total
    # each repeat's two runs are adjacent in time: the median of their ratios is less exposed to drifting load
    paired = statistics.median([(a + b) / (c + d) for a, b, c, d in zip(
        times["harness_fit"], times["harness_eval"], times["direct_fit"], times["direct_rank"], strict=False)])
    print(f"MovieLens-100K {x.n_users} users x {x.n_items} items, {len(train)} train events, {len(test_users)} test "
          f"users; ALS {args.factors} factors x {args.iterations} iterations, {args.threads} implicit threads, "
          f"BLAS 1 thread, implicit {implicit.__version__}, {args.repeats} repeats (medians)")
    print(f"  direct : fit {med['direct_fit']:.3f} s + recommend {med['direct_rank']:.3f} s = {direct_total:.3f} s")
    print(f"  harness: fit {med['harness_fit']:.3f} s + evaluate {med['harness_eval']:.3f} s = {harness_total:.3f} s "
          f"(NDCG@10 {res.metrics['ndcg_10']:.4f}, P@10 {res.metrics['precision_10']:.4f})")
    print(f"  ratio harness/direct: {ratio:.3f} (median of per-repeat ratios {paired:.3f}; target <= 1.10); "
          f"identical top-10 lists: {same:.1%} of test users")
    print(json.dumps({"benchmark": "implicit_overhead", "threads": args.threads, "repeats": args.repeats,
                      "cpu_count": os.cpu_count(), **{f"{k}_s": round(v, 4) for k, v in med.items()},
                      "direct_s": round(direct_total, 4), "harness_s": round(harness_total, 4),
                      "ratio": round(ratio, 3), "paired_ratio": round(paired, 3), "target": 1.10, "same_top10": same,
                      "ndcg_10": res.metrics["ndcg_10"]}))


if __name__ == "__main__":
    main()
