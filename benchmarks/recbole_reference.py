"""The RecBole reference for `benchmarks.sequence_epoch`: train RecBole's GRU4Rec / SASRec / NextItNet / FPMC on
MovieLens-100K with the leave-one-out protocol (`LS: valid_and_test`, full sort, early stopping on validation
NDCG@10; CE loss for the sequence encoders, BPR with one uniform negative for FPMC, the only loss RecBole's FPMC has),
timing each epoch's training pass (wall and CPU time), then re-score the saved checkpoint's test ranking with the
user's already-seen items kept (RecBole's evaluator) and excluded (the harness's protocol), so both tools are
compared on one protocol.

RecBole is not a matchbench dependency: install it in its own environment, e.g.

    python3 -m venv /tmp/recbole-venv
    /tmp/recbole-venv/bin/pip install -c constraints.txt torch==2.13.0 recbole==1.2.1 "setuptools<70"

(the CPU torch wheel; setuptools < 70 because the ray that RecBole imports needs `pkg_resources`). The numpy-2 and
torch-2.13 fixes that RecBole 1.2.1 needs are applied here at run time (`numpy2_aliases`, `torch.load` of its own
checkpoints with weights_only=False). Run from the repository root with that environment's python:

    OMP_NUM_THREADS=1 /tmp/recbole-venv/bin/python -m benchmarks.recbole_reference convert --src u.data --out DATA
    OMP_NUM_THREADS=1 ... -m benchmarks.recbole_reference train FPMC --data DATA --out CKPT [--epochs 30] [--seed 0]
    OMP_NUM_THREADS=1 ... -m benchmarks.recbole_reference rescore CKPT/FPMC-*.pth [...]

`convert` writes all 100,000 ratings of MovieLens-100K's u.data (--src, or where the `movielens` dataset finds it when
run with matchbench's environment) as RecBole's atomic `ml-100k.inter` (no rating threshold, as the harness's
`movielens` dataset). Prints one JSON line per model (`train`: first one per epoch, as each ends, with its training
pass's wall and CPU seconds).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def numpy2_aliases() -> None:
    """RecBole 1.2.1 and the ray it imports use numpy aliases that numpy 2 removed: put them back (here, not in the
    installed packages, so the fixes travel with the script)."""
    for alias, real in (("bool8", np.bool_), ("float_", np.float64), ("complex_", np.complex128),
                        ("unicode_", np.str_), ("long", np.int64), ("Inf", np.inf)):
        if alias not in np.__dict__:
            setattr(np, alias, real)


def convert(src: Path, out: Path) -> None:
    dst = out / "ml-100k" / "ml-100k.inter"
    dst.parent.mkdir(parents=True, exist_ok=True)
    rows = [line.split() for line in src.read_text().splitlines() if line.strip()]
    with open(dst, "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        f.writelines("\t".join(r) + "\n" for r in rows)
    print(json.dumps({"rows": len(rows), "file": str(dst)}))


# what each model changes in RecBole's defaults; the rest (RecBole's model yaml: embedding 64; GRU4Rec hidden 128,
# dropout 0.3; NextItNet 5 blocks x dilations [1, 4], kernel 3, reg 1e-5) is RecBole's own
MODEL_CFG = {
    "GRU4Rec": {"loss_type": "CE", "train_neg_sample_args": None},
    "SASRec": {"loss_type": "CE", "train_neg_sample_args": None},
    "NextItNet": {"loss_type": "CE", "train_neg_sample_args": None},
    # FPMC only supports BPR in RecBole: one uniformly sampled negative per training event (RecBole's default
    # train_neg_sample_args), as the S-BPR of the paper and of the harness's `fpmc`
    "FPMC": {"loss_type": "BPR"},
}


def train(model: str, data: Path, out: Path, epochs: int, seed: int, stopping_step: int) -> None:
    numpy2_aliases()
    from recbole.quick_start import run_recbole
    from recbole.trainer import Trainer

    cfg = {"data_path": str(data), "checkpoint_dir": str(out),
           "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
           "metrics": ["NDCG", "Recall", "Hit"], "topk": [10],
           "valid_metric": "NDCG@10", "embedding_size": 64, "MAX_ITEM_LIST_LENGTH": 50, "train_batch_size": 256,
           "learning_rate": 0.001, "epochs": epochs, "stopping_step": stopping_step, "use_gpu": False,
           "device": "cpu", "show_progress": False, "seed": seed, **MODEL_CFG[model]}
    # time the training pass of each epoch only (RecBole's own "training [time: ...]"), not its validation
    # (wall and this process's CPU time: on a shared machine the wall time depends on the CPU share it got)
    epoch_s: list[float] = []
    epoch_cpu_s: list[float] = []
    plain_epoch = Trainer._train_epoch

    def timed_epoch(self, *a, **k):
        t0, c0 = time.perf_counter(), time.process_time()
        res = plain_epoch(self, *a, **k)
        epoch_s.append(time.perf_counter() - t0)
        epoch_cpu_s.append(time.process_time() - c0)
        # as it goes, so a run stopped before RecBole's end (its checkpoint is its best validation epoch so far,
        # for `rescore`) keeps its timings
        print(json.dumps({"model": model, "epoch": len(epoch_s) - 1, "epoch_s": epoch_s[-1],
                          "epoch_cpu_s": epoch_cpu_s[-1]}), flush=True)
        return res

    Trainer._train_epoch = timed_epoch
    plain_load = torch.load
    torch.load = lambda *a, **k: plain_load(*a, **{**k, "weights_only": False})  # its own best checkpoint
    t0 = time.time()
    try:
        res = run_recbole(model=model, dataset="ml-100k", config_dict=cfg)
    finally:
        Trainer._train_epoch, torch.load = plain_epoch, plain_load
    print(json.dumps({"model": model, "seed": seed, "threads": torch.get_num_threads(), "epochs_run": len(epoch_s),
                      "epoch_s": epoch_s, "epoch_s_median": float(np.median(epoch_s)),
                      "epoch_cpu_s": epoch_cpu_s, "epoch_cpu_s_median": float(np.median(epoch_cpu_s)),
                      "test": res["test_result"], "best_valid": res["best_valid_result"],
                      "wall_s": time.time() - t0}, default=float))


@torch.no_grad()
def rescore(paths: list[str]) -> None:
    numpy2_aliases()
    from recbole.quick_start import load_data_and_model

    plain_load = torch.load
    torch.load = lambda *a, **k: plain_load(*a, **{**k, "weights_only": False})  # RecBole pickles its config
    for path in paths:
        config, model, dataset, _, _, test_data = load_data_and_model(path)
        model.eval()
        uid, iid = dataset.uid_field, dataset.iid_field
        seen = torch.zeros(dataset.user_num, dataset.item_num, dtype=torch.bool)
        seen[torch.as_tensor(dataset.inter_feat[uid].numpy()), torch.as_tensor(dataset.inter_feat[iid].numpy())] = True
        row = {"model": config["model"], "checkpoint": path}
        for proto in ("kept", "excluded"):
            ndcg = recall = n = 0.0
            for inter, _, _, _ in test_data:
                scores = model.full_sort_predict(inter).view(-1, dataset.item_num).clone()
                scores[:, 0] = -np.inf                            # RecBole's padding item
                target = inter[iid]
                if proto == "excluded":                           # every item of the user but the target itself
                    mask = seen[inter[uid]].clone()
                    mask[torch.arange(len(target)), target] = False
                    scores[mask] = -np.inf
                rank = (scores > scores[torch.arange(len(target)), target][:, None]).sum(1)
                hit = rank < 10
                ndcg += float((hit / torch.log2(rank + 2.0)).sum())
                recall += float(hit.sum())
                n += len(target)
            row[proto] = {"ndcg_10": ndcg / n, "recall_10": recall / n, "n_users": int(n)}
        print(json.dumps(row))
    torch.load = plain_load


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert")
    c.add_argument("--src", type=Path, default=None, help="u.data (default: the movielens dataset's folder)")
    c.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("train")
    t.add_argument("model", choices=sorted(MODEL_CFG))
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--stopping-step", type=int, default=5, help="early stopping on validation NDCG@10")
    t.add_argument("--threads", type=int, default=1, help="torch threads (as sequence_epoch's --threads)")
    r = sub.add_parser("rescore")
    r.add_argument("checkpoints", nargs="+")
    args = ap.parse_args(argv)
    torch.set_num_threads(getattr(args, "threads", 1))
    if args.cmd == "convert":
        if args.src is None:
            from harness.plugin import locate

            args.src = locate("movielens", "movielens-100k", None) / "u.data"
        return convert(args.src, args.out)
    # RecBole writes log/ and log_tensorboard/ into the working directory: keep them out of the caller's
    if args.cmd == "train":
        out, data = args.out.resolve(), args.data.resolve()
        out.mkdir(parents=True, exist_ok=True)
        os.chdir(out)
        return train(args.model, data, out, args.epochs, args.seed, args.stopping_step)
    paths = [str(Path(c).resolve()) for c in args.checkpoints]
    os.chdir(tempfile.mkdtemp(prefix="recbole_"))
    return rescore(paths)


if __name__ == "__main__":
    main()
