"""The RecBole reference for `benchmarks.sequence_epoch`: train RecBole's GRU4Rec / SASRec on MovieLens-100K with the
leave-one-out protocol (`LS: valid_and_test`, full sort, CE loss, early stopping on validation NDCG@10), then re-score
the saved checkpoint's test ranking with the user's already-seen items kept (RecBole's evaluator) and excluded (the
harness's protocol), so both tools are compared on one protocol.

RecBole is not a matchbench dependency: install it in its own folder (RecBole 1.2.1 needs small numpy-2 / torch-2.13
fixes) and put that folder on PYTHONPATH. Usage:

    PYTHONPATH=/path/to/recbole OMP_NUM_THREADS=1 python -m benchmarks.recbole_reference convert --out DATA
    PYTHONPATH=... python -m benchmarks.recbole_reference train GRU4Rec --data DATA --out CKPT [--epochs 30]
    PYTHONPATH=... python -m benchmarks.recbole_reference rescore CKPT/GRU4Rec-*.pth [...]

`convert` writes all 100,000 ratings of MovieLens-100K's u.data (found where the `movielens` dataset finds it, or
--src) as RecBole's atomic `ml-100k.inter` (no rating threshold, as the harness's `movielens` dataset). Prints one
JSON line per model.
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


def convert(src: Path, out: Path) -> None:
    dst = out / "ml-100k" / "ml-100k.inter"
    dst.parent.mkdir(parents=True, exist_ok=True)
    rows = [line.split() for line in src.read_text().splitlines() if line.strip()]
    with open(dst, "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        f.writelines("\t".join(r) + "\n" for r in rows)
    print(json.dumps({"rows": len(rows), "file": str(dst)}))


def train(model: str, data: Path, out: Path, epochs: int, seed: int) -> None:
    from recbole.quick_start import run_recbole

    cfg = {"data_path": str(data), "checkpoint_dir": str(out),
           "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
           "train_neg_sample_args": None, "loss_type": "CE", "metrics": ["NDCG", "Recall", "Hit"], "topk": [10],
           "valid_metric": "NDCG@10", "embedding_size": 64, "MAX_ITEM_LIST_LENGTH": 50, "train_batch_size": 256,
           "learning_rate": 0.001, "epochs": epochs, "stopping_step": 5, "use_gpu": False, "device": "cpu",
           "show_progress": False, "seed": seed}
    if model == "GRU4Rec":
        cfg["hidden_size"] = 128
    t0 = time.time()
    res = run_recbole(model=model, dataset="ml-100k", config_dict=cfg)
    print(json.dumps({"model": model, "test": res["test_result"], "best_valid": res["best_valid_result"],
                      "wall_s": time.time() - t0}, default=float))


@torch.no_grad()
def rescore(paths: list[str]) -> None:
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
    t.add_argument("model", choices=["GRU4Rec", "SASRec"])
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("rescore")
    r.add_argument("checkpoints", nargs="+")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.cmd == "convert":
        from harness.plugin import locate

        return convert(args.src or locate("movielens", "movielens-100k", None) / "u.data", args.out)
    # RecBole writes log/ and log_tensorboard/ into the working directory: keep them out of the caller's
    if args.cmd == "train":
        out, data = args.out.resolve(), args.data.resolve()
        out.mkdir(parents=True, exist_ok=True)
        os.chdir(out)
        return train(args.model, data, out, args.epochs, args.seed)
    paths = [str(Path(c).resolve()) for c in args.checkpoints]
    os.chdir(tempfile.mkdtemp(prefix="recbole_"))
    return rescore(paths)


if __name__ == "__main__":
    main()
