"""Epoch time and NDCG@10 of `rnn` and `sasrec` on MovieLens-100K, leave-one-out, full ranking (RecBole's protocol
for sequential models: last item test, second-last validation, every item ranked, history excluded).

Reference: RecBole's GRU4Rec and SASRec take 61 s and 167 s per epoch on ML-100K on 2 CPU cores (issue 6); the target
is at most a tenth of that. Run: `OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.sequence_epoch [--epochs N]`.
Prints one line per model and ends with a JSON line.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

RECBOLE_EPOCH_S = {"rnn": 61.0, "sasrec": 167.0}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="epochs per model (default: the model's default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["rnn", "sasrec"])
    ap.add_argument("--keep-seen", action="store_true",
                    help="rank the user's already-seen items too (RecBole's full-sort protocol does not exclude them)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from harness.evaluate import ScoreSource, evaluate_full
    from harness.model import FitContext
    from harness.registry import Registry
    import plugins.models.sequence as sequence

    reg = Registry.load(extra=[sequence]) if "rnn" not in Registry.load().names("model") else Registry.load()
    ds = reg.create("dataset", "movielens", variant="100k")
    split = reg.create("split", "leave_one_out").split(ds, 0)
    metrics = {m: reg.get("metric", m) for m in ["ndcg", "recall"]}
    out = {"dataset": "movielens-100k", "split": "leave_one_out", "threads": args.threads,
           "n_train": int(len(split.train)), "n_items": int(split.n_items), "models": {}}
    for name in args.models:
        kw = {} if args.epochs is None else {"epochs": args.epochs}
        model = reg.create("model", name, **kw)
        ctx = FitContext(seed=0, device=torch.device("cpu"), dataset=ds, extra={"split": split})
        t0 = time.perf_counter()
        model.fit(split.train, None, ctx)
        fit_s = time.perf_counter() - t0
        src = ScoreSource(model, split.test, split.n_items, torch.device("cpu"))
        res = evaluate_full("itemrec", src, split.test, [10], metrics, split.train.item_counts,
                            exclude_seen=not args.keep_seen)
        ep = np.asarray(model.epoch_times)
        row = {"epochs": len(ep), "epoch_s_median": float(np.median(ep)), "epoch_s_mean": float(ep.mean()),
               "fit_s": fit_s, "ndcg_10": float(res.metrics["ndcg_10"]), "recall_10": float(res.metrics["recall_10"]),
               "recbole_epoch_s": RECBOLE_EPOCH_S.get(name),
               "speedup_vs_recbole": RECBOLE_EPOCH_S[name] / float(np.median(ep)) if name in RECBOLE_EPOCH_S else None}
        out["models"][name] = row
        print(f"{name:8s} epoch {row['epoch_s_median']:.2f}s (median of {len(ep)}; RecBole {row['recbole_epoch_s']}s, "
              f"x{row['speedup_vs_recbole']:.1f})  NDCG@10 {row['ndcg_10']:.4f}  Recall@10 {row['recall_10']:.4f}",
              flush=True)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
