"""The synthetic world at scale: generation time and peak memory, and the truth by blocks.

Issue 14's target: 10⁵ users × 2·10⁴ items generated in ≤ 5 min and ≤ 2 GiB on 2 cores (10⁶ × 10⁵ on a GPU). The
world stores no users × items array: marks are drawn per event position in float32 blocks, the truth keeps the
events' (user, last item) contexts and computes p(u, i) and its conditionals on demand. Prints the generation time,
the events and contexts, the time of the truth metrics' block (2,000 users × 2,000 items of log p(u, i), log p(i|u),
log p(u|i) and the PMI), the peak resident memory (ru_maxrss), and ends with one JSON line.

    .venv/bin/python -m benchmarks.world_scale                                  # 10^5 x 2*10^4
    .venv/bin/python -m benchmarks.world_scale --users 20000 --items 5000      # quicker
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
import torch

from plugins.datasets.synthetic import make_world


def peak_rss_mib() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--sample", type=int, default=2000, help="users and items of the truth block")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    user, item, _, truth = make_world(n_users=args.users, n_items=args.items, seed=args.seed)
    gen_s = time.perf_counter() - t0
    print(f"world {args.users:,} users x {args.items:,} items: {len(user):,} events, {len(truth.ctx_user):,} "
          f"contexts, generated in {gen_s:.1f} s; peak RSS {peak_rss_mib():,.0f} MiB", flush=True)
    rng = np.random.default_rng(args.seed)
    users = rng.choice(args.users, min(args.sample, args.users), replace=False)
    items = np.sort(rng.choice(args.items, min(args.sample, args.items), replace=False))
    t0 = time.perf_counter()
    p_i = truth.item_marginal()
    marg_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for table in ("log_joint_rows", "log_item_given_user_rows", "log_user_given_item_rows", "pmi_rows"):
        getattr(truth, table)(users, items)
    block_s = time.perf_counter() - t0
    print(f"p(i) in {marg_s:.2f} s (sums to {p_i.sum():.6f}); the truth block {len(users):,} x {len(items):,} "
          f"(4 tables) in {block_s:.1f} s", flush=True)
    dense_gib = 8 * args.users * args.items / 2**30
    out = {"benchmark": "world_scale", "users": args.users, "items": args.items, "events": int(len(user)),
           "contexts": int(len(truth.ctx_user)), "generate_s": round(gen_s, 1), "truth_block_s": round(block_s, 2),
           "peak_rss_mib": round(peak_rss_mib()), "dense_joint_gib": round(dense_gib, 1), "threads": args.threads,
           "device": "cpu"}
    print(f"peak RSS {out['peak_rss_mib']:,} MiB (a dense float64 p(u, i) alone would be {dense_gib:.1f} GiB)")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
