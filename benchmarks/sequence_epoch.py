"""Epoch time and NDCG@10 of the sequential models on MovieLens-100K, leave-one-out, full ranking (RecBole's protocol
for sequential models: last item test, second-last validation, every item ranked), with the user's already-seen
items excluded (the harness's protocol) and kept (RecBole's evaluator).

Each model is fitted as a suite cell fits it (`FitContext.for_split`: the split's train and validation sets, its
info, the dataset's side tables) with its default parameters, so the models that early-stop on validation NDCG@10
(`rnn`, `sasrec`, `gru4rec`, `nextitnet`) keep their best epoch. Epoch time is the median of the model's training
passes without validation: the model's own `epoch_times` where it records them (`rnn`, `sasrec`, `gru4rec`,
`nextitnet`, `jodie`), else the time between its `ctx.progress` calls, which every model makes once per epoch
(`fpmc`: one pass over the shuffled transitions with its negatives drawn; the first interval also holds the set-up).

Reference: RecBole 1.2.1 on the same data, CPU and thread count (`benchmarks/recbole_reference.py`; RECBOLE below:
its training-pass CPU time and its test NDCG@10 re-scored with seen items excluded / kept, seed 0); the printed
ratio is RecBole's epoch over ours in CPU time. The target of issues 6 and 16: an epoch at most a tenth of
RecBole's at NDCG@10 no worse. Run:
`OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.sequence_epoch [--models rnn sasrec] [--seeds 0 1 2]
[--threads 1]`. Prints one line per model and seed, a summary line per model, and ends with a JSON line;
`--combine OUT...` summarises the saved outputs of runs made separately (one process per seed).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

# RecBole 1.2.1 on MovieLens-100K (benchmarks.recbole_reference train / rescore, seed 0, one thread): the model it is
# compared with, the CPU seconds of its training pass (time.process_time: on a shared machine a wall time depends on
# the share of the CPU the process got; on a quiet machine the two agree) and its test NDCG@10 with seen items
# excluded / kept. rnn / sasrec: issue 6's quiet-machine wall times. NextItNet: the median CPU time of its first
# two epochs (225.2 and 244.9 s; 341 and 2,846 s wall on a loaded machine, nice 5) and the test NDCG@10 of its best
# checkpoint after them (epoch 1; validation NDCG@10 0.0381, 0.0522: still rising, NOT converged — it was stopped
# there, a third epoch would not have fitted in the session). reports/benchmarks.md names the runs.
RECBOLE = {
    "rnn": {"model": "GRU4Rec", "epoch_s": 61.0, "ndcg_10": {"excluded": 0.1113, "kept": 0.0719}},
    "gru4rec": {"model": "GRU4Rec", "epoch_s": 124.3, "ndcg_10": {"excluded": 0.1113, "kept": 0.0719}},
    "sasrec": {"model": "SASRec", "epoch_s": 167.0, "ndcg_10": {"excluded": 0.0972, "kept": 0.0580}},
    "fpmc": {"model": "FPMC", "epoch_s": 4.87, "ndcg_10": {"excluded": 0.0960, "kept": 0.0514}},
    "nextitnet": {"model": "NextItNet", "epoch_s": 235.0, "ndcg_10": {"excluded": 0.0758, "kept": 0.0480}},
}
NO_REF = {"model": None, "epoch_s": None, "ndcg_10": {"excluded": None, "kept": None}}
# the default stays issue 6's pair (tests/test_rim_models.py runs it); issue 16's: --models fpmc gru4rec nextitnet
# jodie imn_net
MODELS = ["rnn", "sasrec"]


def _fmt(x, spec=".4f") -> str:
    return "n/a" if x is None else format(x, spec)


def fit_timed(model, split, ds, seed: int, threads: int) -> dict:
    """Fit `model` on `split` as a suite cell does; its per-epoch training times (wall and CPU) and the whole fit's.

    On a shared machine the wall time of an epoch depends on this process's share of the CPU: each epoch's CPU
    time is its wall time times the process's CPU / wall ratio between the two `ctx.progress` calls around it
    (exact where nothing but the epoch runs between them, as for `fpmc`)."""
    from harness.model import FitContext

    ticks: list[tuple[float, float]] = []
    ctx = FitContext.for_split(split, ds, seed=seed, device=torch.device("cpu"), threads=threads,
                               progress=lambda epoch, total: ticks.append((time.perf_counter(), time.process_time())))
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(split.train, None, ctx)
    fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    wall, cpu = np.diff([t0, *(t for t, _ in ticks)]), np.diff([c0, *(c for _, c in ticks)])
    own = list(getattr(model, "epoch_times", None) or [])
    epochs = np.asarray(own or wall, dtype=float)
    share = cpu[:len(epochs)] / np.maximum(wall[:len(epochs)], 1e-9) if len(ticks) >= len(epochs) else \
        np.full(len(epochs), fit_cpu_s / max(fit_s, 1e-9))
    return {"epoch_s": epochs.tolist(), "epoch_cpu_s": (epochs * share).tolist(),
            "epoch_source": "epoch_times" if own else "progress", "epochs_run": len(epochs),
            "best_epoch": getattr(model, "best_epoch", None), "fit_s": fit_s, "fit_cpu_s": fit_cpu_s}


def summarise(name: str, runs: list[dict], ref: dict) -> dict:
    """Mean and sd over the seeds' runs of one model, printed as one line."""
    keys = ("epoch_s_median", "epoch_cpu_s_median", "fit_s", "epochs_run", "ndcg_10_excluded", "ndcg_10_kept",
            "recall_10_excluded", "recall_10_kept")
    keys = [k for k in keys if all(k in r for r in runs)]          # runs saved before CPU times were recorded
    summary = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    summary.update({f"{k}_sd": float(np.std([r[k] for r in runs])) for k in keys})
    # RecBole's CPU time over ours (runs saved before CPU times were recorded: none)
    speedup = ref["epoch_s"] / summary["epoch_cpu_s_median"] if ref["epoch_s"] and "epoch_cpu_s_median" in summary \
        else None
    cpu = (f", CPU {summary['epoch_cpu_s_median']:.3f} ± {summary['epoch_cpu_s_median_sd']:.3f}s"
           if "epoch_cpu_s_median" in summary else "")
    print(f"{name:9s} mean of {len(runs)} (seeds {[r['seed'] for r in runs]}): epoch {summary['epoch_s_median']:.3f} ± "
          f"{summary['epoch_s_median_sd']:.3f}s{cpu} (x{_fmt(speedup, '.1f')} RecBole)  NDCG@10 excluded "
          f"{summary['ndcg_10_excluded']:.4f} ± {summary['ndcg_10_excluded_sd']:.4f}, kept "
          f"{summary['ndcg_10_kept']:.4f} ± {summary['ndcg_10_kept_sd']:.4f}", flush=True)
    return {"runs": runs, "mean": summary, "recbole": ref, "speedup_vs_recbole": speedup}


def combine(paths: list[str]) -> dict:
    """Merge the JSON lines of runs made separately (e.g. one process per seed) and summarise each model."""
    runs: dict[str, list[dict]] = {}
    for path in paths:
        with open(path) as f:
            last = [line for line in f if line.startswith("{")][-1]
        for name, res in json.loads(last)["models"].items():
            runs.setdefault(name, []).extend(res["runs"])
    return {"models": {name: summarise(name, sorted(rs, key=lambda r: r["seed"]), RECBOLE.get(name, NO_REF))
                       for name, rs in runs.items()}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="epochs per model (default: the model's default)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (RecBole's reference ran on 1)")
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--combine", nargs="+", metavar="OUTPUT", help="summarise the outputs of earlier runs instead")
    args = ap.parse_args(argv)
    if args.combine:
        out = combine(args.combine)
        print(json.dumps(out))
        return out
    torch.set_num_threads(args.threads)

    from harness.evaluate import ScoreSource, evaluate_full
    from harness.registry import Registry

    reg = Registry.load()
    ds = reg.create("dataset", "movielens", variant="100k")
    split = reg.create("split", "leave_one_out").split(ds, 0)
    metrics = {m: reg.get("metric", m) for m in ["ndcg", "recall"]}
    out = {"dataset": "movielens-100k", "split": "leave_one_out", "threads": args.threads,
           "n_train": int(len(split.train)), "n_items": int(split.n_items), "models": {}, "skipped": {}}
    registered = set(reg.names("model"))
    for name in args.models:
        if name not in registered:
            out["skipped"][name] = "not registered"
            print(f"{name:9s} skipped: not a registered model", flush=True)
            continue
        ref = RECBOLE.get(name, NO_REF)
        runs = []
        for seed in args.seeds:
            kw = {} if args.epochs is None else {"epochs": args.epochs}
            model = reg.create("model", name, **kw)
            row = {"seed": seed, **fit_timed(model, split, ds, seed, args.threads)}
            row["epoch_s_median"] = float(np.median(row["epoch_s"]))
            row["epoch_cpu_s_median"] = float(np.median(row["epoch_cpu_s"]))
            src = ScoreSource(model, split.test, split.n_items, torch.device("cpu"))
            for proto, excl in (("excluded", True), ("kept", False)):
                res = evaluate_full("itemrec", src, split.test, [10], metrics, split.train.item_counts,
                                    exclude_seen=excl)
                row[f"ndcg_10_{proto}"] = float(res.metrics["ndcg_10"])
                row[f"recall_10_{proto}"] = float(res.metrics["recall_10"])
            runs.append(row)
            vs = (f"; RecBole {ref['model']} {ref['epoch_s']}s, x{ref['epoch_s'] / row['epoch_cpu_s_median']:.1f}"
                  if ref["epoch_s"] else "")
            print(f"{name:9s} seed {seed}: epoch {row['epoch_s_median']:.3f}s, CPU {row['epoch_cpu_s_median']:.3f}s "
                  f"(median of {row['epochs_run']} from "
                  f"{row['epoch_source']}, best {row['best_epoch']}, fit {row['fit_s']:.1f}s{vs})"
                  f"  NDCG@10 seen excluded {row['ndcg_10_excluded']:.4f} (RecBole {_fmt(ref['ndcg_10']['excluded'])}),"
                  f" kept {row['ndcg_10_kept']:.4f} (RecBole {_fmt(ref['ndcg_10']['kept'])})", flush=True)
        out["models"][name] = summarise(name, runs, ref)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
