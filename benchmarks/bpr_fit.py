"""BPR on MovieLens-100K: fit time on 2 CPU threads and NDCG@10, beside Cornac's BPR when available.

Protocol: u.data split at random 80/20 (numpy seed 0); each model ranks all items for every
user, training items excluded; NDCG@10 / Recall@10 by the harness's evaluator for both, so
the two differ only in the model. Cornac runs in its own interpreter (`--cornac-python
PATH`, a venv with cornac installed): it reads the same train file and writes its factors.

    python benchmarks/bpr_fit.py [--cornac-python /tmp/cornac/bin/python]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

CORNAC = r'''
import sys, time, numpy as np, cornac
from cornac.data import Dataset
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
data = [(u, i, 1.0) for u, i in rows]
ds = Dataset.from_uir(data, seed=0)
m = cornac.models.BPR(k=int(sys.argv[3]), max_iter=100, learning_rate=0.001, lambda_reg=0.01, seed=0, verbose=False)
t = time.perf_counter(); m.fit(ds); fit = time.perf_counter() - t
uid = np.array(list(ds.uid_map.keys())); iid = np.array(list(ds.iid_map.keys()))
np.savez(sys.argv[2], fit=fit, users=uid, items=iid, U=m.u_factors[list(ds.uid_map.values())],
         V=m.i_factors[list(ds.iid_map.values())], b=m.i_biases[list(ds.iid_map.values())])
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("MATCHBENCH_DATA", "../shared/data") + "/movielens-100k/u.data")
    ap.add_argument("--cornac-python", default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from harness.data import from_events
    from harness.evaluate import ScoreSource, evaluate_full
    from harness.model import FitContext, Model
    from harness.registry import Registry
    from harness.splits import states_from_events

    df = pd.read_csv(args.data, sep="\t", names=["user", "item", "value", "time"])
    ds = from_events("ml-100k", df, "s")
    x = ds.interactions
    test = np.random.default_rng(0).random(len(x)) < 0.2
    train = x.subset(~test)
    users = np.arange(x.n_users)
    ev = states_from_events(train, users, np.full(x.n_users, np.inf))
    t = x.subset(test)
    ev.targets = sp.csr_matrix((np.ones(len(t), np.float32), (t.user, t.item)), shape=(x.n_users, x.n_items))
    ev.__post_init__()
    reg = Registry.load()
    metrics = {m: reg.get("metric", m) for m in ("ndcg", "recall")}

    class Fixed(Model):
        """Cornac's factors, given to the harness's evaluator as a model."""

        def __init__(self, U, V):
            self.U, self.V = U, V

        def factors(self, states):
            return torch.as_tensor(self.U[states.user]), torch.as_tensor(self.V)

    def evaluate(model) -> dict:
        src = ScoreSource(model, ev, x.n_items, torch.device("cpu"))
        return evaluate_full("itemrec", src, ev, [10], metrics, train.item_counts).metrics

    out = {"threads": args.threads}
    # the first torch training step in a process pays one-off start-up costs (thread pool, allocator);
    # a suite pays them once per worker, so time it apart from the fits
    t0 = time.perf_counter()
    reg.create("model", "bpr", epochs=1).fit(train.subset(np.arange(len(train)) < 4096), reg.create("loss", "bpr"),
                                              FitContext(seed=0, device=torch.device("cpu")))
    out["warmup_s"] = time.perf_counter() - t0
    print(f"process warm-up (one 1-epoch fit on 4,096 events): {out['warmup_s']:.2f} s")
    for seed in (0, 1, 2):
        bpr = reg.create("model", "bpr")
        t0 = time.perf_counter()
        bpr.fit(train, reg.create("loss", "bpr"), FitContext(seed=seed, device=torch.device("cpu")))
        fit = time.perf_counter() - t0
        r = evaluate(bpr)
        out.setdefault("matchbench_fit_s", []).append(fit)
        out.setdefault("matchbench_ndcg_10", []).append(r["ndcg_10"])
        print(f"matchbench bpr (64 factors, {bpr.epochs} epochs, seed {seed}): fit {fit:.2f} s, "
              f"NDCG@10 {r['ndcg_10']:.4f}, Recall@10 {r['recall_10']:.4f}")

    if args.cornac_python:
        with tempfile.TemporaryDirectory() as tmp:
            tr = Path(tmp) / "train.tsv"
            tr.write_text("\n".join(f"{ds.user_ids[u]}\t{ds.item_ids[i]}"
                                    for u, i in zip(train.user, train.item, strict=False)))
            script = Path(tmp) / "cornac_bpr.py"
            script.write_text(CORNAC)
            for k in (10, 64):
                subprocess.run([args.cornac_python, str(script), str(tr), f"{tmp}/f.npz", str(k)], check=True,
                               env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
                f = np.load(f"{tmp}/f.npz")
                uix = {str(r): n for n, r in enumerate(ds.user_ids)}
                iix = {str(r): n for n, r in enumerate(ds.item_ids)}
                U = np.zeros((x.n_users, k + 1), np.float32)
                V = np.zeros((x.n_items, k + 1), np.float32)
                U[[uix[u] for u in f["users"]], :k] = f["U"]
                U[:, k] = 1
                V[[iix[i] for i in f["items"]], :k] = f["V"]
                V[[iix[i] for i in f["items"]], k] = f["b"]

                r = evaluate(Fixed(U, V))
                out[f"cornac_k{k}_fit_s"], out[f"cornac_k{k}_ndcg_10"] = float(f["fit"]), r["ndcg_10"]
                print(f"cornac BPR (k={k}, 100 iters): fit {float(f['fit']):.2f} s, "
                      f"NDCG@10 {r['ndcg_10']:.4f}, Recall@10 {r['recall_10']:.4f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
