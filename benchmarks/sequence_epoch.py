"""Epoch time and NDCG@10 of `rnn` and `sasrec` on MovieLens-100K, leave-one-out, full ranking (RecBole's protocol
for sequential models: last item test, second-last validation, every item ranked), with the user's already-seen
items excluded (the harness's protocol) and kept (RecBole's evaluator).

Reference: RecBole 1.2.1's GRU4Rec and SASRec on this machine class (issue 6: 61 s and 167 s per epoch on 2 CPU
cores; the target is at most a tenth of that), and their test NDCG@10 on the same targets, early-stopped on
validation NDCG@10 (RECBOLE_NDCG: its checkpoints re-scored with seen items excluded / kept). Run:
`OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.sequence_epoch [--seeds 0 1 2] [--threads 1]`.
Prints one line per model and seed and ends with a JSON line.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

RECBOLE_EPOCH_S = {"rnn": 61.0, "sasrec": 167.0}
RECBOLE_NDCG = {"rnn": {"excluded": 0.1113, "kept": 0.0719}, "sasrec": {"excluded": 0.0972, "kept": 0.0580}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="epochs per model (default: the model's default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["rnn", "sasrec"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    import plugins.models.sequence as sequence
    from harness.evaluate import ScoreSource, evaluate_full
    from harness.model import FitContext
    from harness.registry import Registry

    reg = Registry.load(extra=[sequence]) if "rnn" not in Registry.load().names("model") else Registry.load()
    ds = reg.create("dataset", "movielens", variant="100k")
    split = reg.create("split", "leave_one_out").split(ds, 0)
    metrics = {m: reg.get("metric", m) for m in ["ndcg", "recall"]}
    out = {"dataset": "movielens-100k", "split": "leave_one_out", "threads": args.threads,
           "n_train": int(len(split.train)), "n_items": int(split.n_items), "models": {}}
    for name in args.models:
        runs = []
        for seed in args.seeds:
            kw = {} if args.epochs is None else {"epochs": args.epochs}
            model = reg.create("model", name, **kw)
            ctx = FitContext(seed=seed, device=torch.device("cpu"), dataset=ds, extra={"split": split})
            t0 = time.perf_counter()
            model.fit(split.train, None, ctx)
            fit_s = time.perf_counter() - t0
            src = ScoreSource(model, split.test, split.n_items, torch.device("cpu"))
            row = {"seed": seed, "epochs_run": len(model.epoch_times), "best_epoch": model.best_epoch,
                   "epoch_s_median": float(np.median(model.epoch_times)), "fit_s": fit_s}
            for proto, excl in (("excluded", True), ("kept", False)):
                res = evaluate_full("itemrec", src, split.test, [10], metrics, split.train.item_counts,
                                    exclude_seen=excl)
                row[f"ndcg_10_{proto}"] = float(res.metrics["ndcg_10"])
                row[f"recall_10_{proto}"] = float(res.metrics["recall_10"])
            runs.append(row)
            print(f"{name:8s} seed {seed}: epoch {row['epoch_s_median']:.2f}s (median of {row['epochs_run']}, best "
                  f"{row['best_epoch']}; RecBole {RECBOLE_EPOCH_S[name]}s, "
                  f"x{RECBOLE_EPOCH_S[name] / row['epoch_s_median']:.1f})"
                  f"  NDCG@10 seen excluded {row['ndcg_10_excluded']:.4f} (RecBole {RECBOLE_NDCG[name]['excluded']}),"
                  f" kept {row['ndcg_10_kept']:.4f} (RecBole {RECBOLE_NDCG[name]['kept']})", flush=True)
        summary = {k: float(np.mean([r[k] for r in runs])) for k in runs[0] if k not in ("seed", "best_epoch")}
        summary.update({f"{k}_sd": float(np.std([r[k] for r in runs])) for k in ("ndcg_10_excluded", "ndcg_10_kept")})
        out["models"][name] = {"runs": runs, "mean": summary, "recbole_epoch_s": RECBOLE_EPOCH_S[name],
                               "recbole_ndcg_10": RECBOLE_NDCG[name],
                               "speedup_vs_recbole": RECBOLE_EPOCH_S[name] / summary["epoch_s_median"]}
        print(f"{name:8s} mean of {len(runs)}: epoch {summary['epoch_s_median']:.2f}s  NDCG@10 excluded "
              f"{summary['ndcg_10_excluded']:.4f} ± {summary['ndcg_10_excluded_sd']:.4f}, kept "
              f"{summary['ndcg_10_kept']:.4f} ± {summary['ndcg_10_kept_sd']:.4f}", flush=True)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
