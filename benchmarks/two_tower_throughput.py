"""UniMatch two-tower training throughput: positive pairs per second for bbcNCE with the YouTube-DNN (mean) and
GRU (mean) encoders, on CPU (or the device given), on the synthetic world and, when present, MovieLens-100K.

Each fit runs `epochs` shuffled passes over the training pairs of a next_n_day split (30-day horizon); a
one-epoch warm-up fit is run first and not timed. Throughput = pairs consumed / fit seconds.

    python benchmarks/two_tower_throughput.py [--threads 2] [--device cpu] [--epochs 2] [--batch-size 256]
"""
from __future__ import annotations

import argparse
import time

import torch

import plugins.losses.inbatch as inbatch
import plugins.models.two_tower as two_tower
from harness.errors import MatchbenchError
from harness.model import FitContext
from harness.registry import Registry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--dim", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    reg = Registry.load(extra=[inbatch, two_tower])
    datasets = [("synthetic 2000x500, 120 days", "synthetic", dict(n_users=2000, n_items=500, days=120.0)),
                ("movielens-100k", "movielens", {})]
    print(f"two_tower + bbcnce, d={args.dim}, batch {args.batch_size}, {args.epochs} epochs, device {dev}, "
          f"{args.threads} threads")
    print(f"{'dataset':32s} {'encoder':14s} {'pairs':>8s} {'fit s':>7s} {'pairs/s':>9s}")
    for label, name, params in datasets:
        try:
            ds = reg.create("dataset", name, **params)
        except (MatchbenchError, OSError) as exc:
            print(f"{label:32s} skipped: {exc}")
            continue
        split = reg.create("split", "next_n_day", n=30).split(ds, 0)
        for enc in ("none", "gru"):
            kw = dict(dim=args.dim, extractor=enc, aggregator="mean", batch_size=args.batch_size)
            reg.create("model", "two_tower", epochs=1, **kw).fit(split.train, reg.create("loss", "bbcnce"),
                                                                  FitContext(seed=0, device=dev))
            m = reg.create("model", "two_tower", epochs=args.epochs, **kw)
            t0 = time.perf_counter()
            m.fit(split.train, reg.create("loss", "bbcnce"), FitContext(seed=0, device=dev))
            if dev.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            enc_label = "YouTube-DNN" if enc == "none" else "GRU"
            print(f"{label:32s} {enc_label + ' mean':14s} {m.n_pairs_seen:8d} {dt:7.2f} {m.n_pairs_seen / dt:9.0f}")


if __name__ == "__main__":
    main()
