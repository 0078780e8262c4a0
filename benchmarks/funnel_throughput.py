"""UMA² training throughput: (user, item) samples per second of `youtube_dnn` and `uma2` on the synthetic funnel,
CPU (or the device given).

A sample is one scored (user, item) pair of the GMM's BCE: each positive with its `n_neg` negatives counts
1 + n_neg (`n_pairs_seen`); uma2's auxiliary pairs (NSDN's ER and RE tasks) are extra work, not counted. Each fit
runs `epochs` passes after a one-epoch warm-up fit that is not timed.

    python -m benchmarks.funnel_throughput [--threads 2] [--device cpu] [--epochs 2] [--layers 512 256 128 32]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from harness.model import FitContext
from harness.registry import Registry

MODELS = (("youtube_dnn", "youtube_dnn", {}), ("uma2 (tower youtube_dnn)", "uma2", {"tower": "youtube_dnn"}),
          ("uma2 (tower dat)", "uma2", {"tower": "dat"}))


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--layers", type=int, nargs="+", default=[512, 256, 128, 32])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=4000)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    reg = Registry.load()
    ds = reg.create("dataset", "synthetic", n_users=args.users, n_items=args.items, days=30.0, funnel=True,
                    n_requests=10 * args.users)
    split = reg.create("split", "funnel", test_days=5.0).split(ds, 0)
    print(f"synthetic funnel {args.users:,} x {args.items:,}, {len(split.train):,} training clicks, sampling "
          f"ss_abc_fixed (25 negatives), MLP {'-'.join(map(str, args.layers))}, batch 512, {args.epochs} epochs, "
          f"device {dev}, {args.threads} threads")
    out = []
    for label, name, extra in MODELS:
        kw = dict(extra, layers=args.layers, sampling="ss_abc_fixed")
        ctx = FitContext.for_split(split, ds, seed=0, device=dev)
        reg.create("model", name, epochs=1, **kw).fit(split.train, None, ctx)
        m = reg.create("model", name, epochs=args.epochs, **kw)
        t0 = time.perf_counter()
        m.fit(split.train, None, ctx)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        row = {"model": label, "samples": m.n_pairs_seen, "fit_s": round(dt, 2),
               "samples_per_s": round(m.n_pairs_seen / dt)}
        print(f"{label:28s} {m.n_pairs_seen:10,d} samples {dt:8.2f} s {m.n_pairs_seen / dt:10,.0f} samples/s")
        out.append(row)
    print(json.dumps({"benchmark": "funnel_throughput", "device": str(dev), "threads": args.threads,
                      "layers": args.layers, "rows": out}))
    return out


if __name__ == "__main__":
    main()
