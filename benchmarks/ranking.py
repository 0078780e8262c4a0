"""Full-ranking evaluation throughput of the harness vs a bare matmul + topk loop.

For each size (users x items, d=64, top-100 over all items) it prints user-states ranked per
second through the harness's engine (`topk_rows` with a factor scorer under the memory
budget) and through a bare `torch.matmul` + `torch.topk` loop over the same block size (which
keeps its results too), their ratio (harness wall time / bare wall time), and the peak working
memory: peak RSS growth minus the top-k results themselves (n × k ids and scores, which any
evaluator keeps and which the budget does not cover); then the end-to-end
evaluation cost per user-state at MovieLens-100K size (943 x 1,682: masks of seen items,
ranking and five metrics at K=10/20). The last line is JSON for scripts.

    python benchmarks/ranking.py            # up to 200,000 x 50,000
    python benchmarks/ranking.py --quick    # small sizes only
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

SIZES = [(10_000, 5_000), (50_000, 20_000), (200_000, 50_000)]
QUICK = [(5_000, 2_000), (20_000, 10_000)]


def _peak_mib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, n_users: int, n_items: int, d: int, k: int, budget: float, device: str) -> dict:
    """One measurement in this process (called in a fresh subprocess so peak memory is its own)."""
    from harness.ranking import block_rows, factor_scorer, topk_rows

    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(n_users, d, generator=g).to(dev)
    v = torch.randn(n_items, d, generator=g).to(dev)
    rows = block_rows(n_items, budget)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = _peak_mib()
    t0 = time.perf_counter()
    if kind == "harness":
        out = topk_rows(factor_scorer(u, v), n_users, n_items, k, budget_mib=budget)
        checksum = int(out.index[:, 0].sum())
    else:
        # the bare loop keeps its results too, as any evaluator must
        vt = v.T.contiguous()
        out_i = np.empty((n_users, k), dtype=np.int64)
        out_s = np.empty((n_users, k), dtype=np.float32)
        for s in range(0, n_users, rows):
            vals, idx = torch.topk(u[s:s + rows] @ vt, k, dim=1)
            out_i[s:s + rows] = idx.cpu().numpy()
            out_s[s:s + rows] = vals.cpu().numpy()
        checksum = int(out_i[:, 0].sum())
    if dev.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    result_mib = n_users * k * (8 + 4) / 2**20  # the top-k ids and scores every evaluator must keep
    extra = _peak_mib() - base
    return {"wall_s": wall, "peak_extra_mib": extra, "result_mib": result_mib, "working_mib": extra - result_mib,
            "block_rows": rows, "checksum": checksum}


def run_sub(kind, n_users, n_items, d, k, budget, device) -> dict:
    code = (f"import json,sys; sys.path.insert(0,'.'); from benchmarks.ranking import measure; "
            f"print(json.dumps(measure({kind!r},{n_users},{n_items},{d},{k},{budget},{device!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def movielens_sized(device: str, repeats: int = 20) -> float:
    """End-to-end itemrec evaluation (mask, rank, metrics) per user-state, 943 x 1,682, in microseconds."""
    import scipy.sparse as sp

    from harness.evaluate import ScoreSource, evaluate_full
    from harness.model import Model
    from harness.registry import Registry
    from harness.splits import EvalSet, UserStates

    n_u, n_i, d = 943, 1682, 64
    rng = np.random.default_rng(0)
    hist = sp.random(n_u, n_i, density=0.06, random_state=1, format="csr")  # ~95k seen pairs, as ML-100K
    targets = sp.random(n_u, n_i, density=0.005, random_state=2, format="csr")
    states = UserStates(np.arange(n_u), np.zeros(n_u), hist.indptr.astype(np.int64), hist.indices.astype(np.int64),
                        np.zeros(hist.nnz))
    ev = EvalSet(states=states, targets=targets, exclude=hist)
    u = torch.as_tensor(rng.standard_normal((n_u, d)), dtype=torch.float32)
    v = torch.as_tensor(rng.standard_normal((n_i, d)), dtype=torch.float32)

    class Factors(Model):
        def factors(self, states):
            return u, v

    reg = Registry.load()
    metrics = {m: reg.get("metric", m) for m in ["recall", "ndcg", "precision", "hit", "mrr"]}
    src = ScoreSource(Factors(), ev, n_i, torch.device(device))
    evaluate_full("itemrec", src, ev, [10, 20], metrics, np.ones(n_i))  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        res = evaluate_full("itemrec", src, ev, [10, 20], metrics, np.ones(n_i))
    per_state = (time.perf_counter() - t0) / repeats / n_u
    assert res.metrics["n_queries"] > 0
    return per_state * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--budget-mib", type=float, default=256)
    ap.add_argument("--repeats", type=int, default=3, help="best of N alternating runs")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    print(f"device={args.device} torch_threads={torch.get_num_threads()} d={args.d} top-{args.k} "
          f"budget={args.budget_mib} MiB")
    results = []
    for n_users, n_items in (QUICK if args.quick else SIZES):
        # alternate the two, best of `repeats` each, so neither pays for a cold machine
        runs = {"harness": [], "bare": []}
        for _ in range(args.repeats):
            for kind in runs:
                runs[kind].append(run_sub(kind, n_users, n_items, args.d, args.k, args.budget_mib, args.device))
        h, b = (min(runs[kind], key=lambda r: r["wall_s"]) for kind in ("harness", "bare"))
        row = {"n_users": n_users, "n_items": n_items, "states_per_s": n_users / h["wall_s"],
               "bare_states_per_s": n_users / b["wall_s"], "ratio": h["wall_s"] / b["wall_s"],
               "peak_mib": h["working_mib"], "bare_peak_mib": b["working_mib"], "result_mib": h["result_mib"],
               "peak_with_result_mib": h["peak_extra_mib"], "block_rows": h["block_rows"]}
        results.append(row)
        print(f"{n_users:>8,} x {n_items:>6,}: harness {row['states_per_s']:>10,.0f} states/s, bare "
              f"{row['bare_states_per_s']:>10,.0f} states/s, ratio {row['ratio']:.3f}, peak working memory "
              f"{row['peak_mib']:.0f} MiB (budget {args.budget_mib:.0f}; bare {row['bare_peak_mib']:.0f}) + "
              f"{row['result_mib']:.0f} MiB of top-k results, block {row['block_rows']} rows", flush=True)
    us = movielens_sized(args.device)
    print(f"MovieLens-100K size (943 x 1,682) end-to-end itemrec evaluation: {us:.2f} us per user-state")
    print(json.dumps({"device": args.device, "d": args.d, "k": args.k, "budget_mib": args.budget_mib,
                      "sizes": results, "states_per_s": results[-1]["states_per_s"],
                      "bare_states_per_s": results[-1]["bare_states_per_s"], "ratio": max(r["ratio"] for r in results),
                      "peak_mib": max(r["peak_mib"] for r in results), "ml100k_us_per_state": us}))


if __name__ == "__main__":
    main()
