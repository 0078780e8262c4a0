"""Dataset plugin `alimama_dmr`: the Alimama (Taobao display-ad) CTR rows in the DMR authors' preprocessed format.

The DMR release (and PaddleRec's copy of it) ships the Alimama data already joined and encoded: one line per
impression, 267 comma-separated numbers, no header and no timestamp (0-based columns):

    0-49     btag of the 50 behaviours (0 = padding)         150-199  mask (1 = a real behaviour, padding first)
    50-99    cate of the 50 behaviours                        200-249  match mask (the auxiliary network's mask)
    100-149  brand of the 50 behaviours                       250      uid
    251-258  user profile: cms_segid, cms_group_id, final_gender_code, age_level, pvalue_level, shopping_level,
             occupation, new_user_class_level
    259-263  ad: adgroup_id, cate_id, campaign_id, customer, brand;   264 price (normalised);   265 pid;   266 clk

Behaviour position 49 is the latest; padding comes first. This is not an event log (its behaviour sequences are
built already and there is no time), so the dataset carries the rows themselves as `Dataset.impressions`
(`harness.ctr.ImpressionRows`), which the `impressions` split uses as they are.

How the columns map onto the harness's rows (and why):
- item = the (cate, brand) pair, for behaviours and targets alike: behaviours carry only cate and brand, and DIN,
  DIEN and DMR embed behaviours and the target in one item space (the DMR code embeds cate ⊕ brand for both);
- context columns: the eight user-profile fields, adgroup_id, campaign_id, customer, pid and `price_bin` (price
  in 10 quantile bins: context columns are categorical);
- each behaviour's btag (pv/cart/fav/buy) is read and checked but not used: the rows hold item sequences only;
- there is no time: row r gets time r and its behaviours times in (r - 1, r), oldest first, so "before the
  impression" holds; the split draws test rows by user, not by time (see `impressions`' `test_users`), unless a
  second file named `*test*` is present, whose rows are then the test rows (the DMR release's train/test files).

The sample in ../shared/data/taobao-alimama (500 rows) has its positives duplicated to 42%: use it to check the
format and that every model runs end to end, not to report AUC.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.plugin import (
    Col,
    DataError,
    Dataset,
    DatasetSpec,
    ImpressionRows,
    Interactions,
    Param,
    first_bad,
    hookimpl,
    locate,
    read_table,
    sources_or_path,
    verify_files,
)

NAME = "alimama_dmr"
FOLDER = "taobao-alimama"
LICENCE = "Alibaba Tianchi dataset licence: research use; cite the dataset (Tianchi 56)"
SOURCE = "Alimama CTR data in the DMR preprocessed format (PaddlePaddle/PaddleRec models/rank/dmr)"
KNOWN_SHA256 = {"alimama_sampled_train.txt": "046a8d71a4912a5647adc93a6b5cf951dee1407dd72deb164652ef90c1a3f819"}
L = 50
PROFILE = ("cms_segid", "cms_group_id", "final_gender_code", "age_level", "pvalue_level", "shopping_level",
           "occupation", "new_user_class_level")
AD = ("adgroup_id", "cate_id", "campaign_id", "customer", "brand")
COLUMNS = ([f"btag_{j}" for j in range(L)] + [f"cate_{j}" for j in range(L)] + [f"brand_{j}" for j in range(L)]
           + [f"mask_{j}" for j in range(L)] + [f"match_mask_{j}" for j in range(L)] + ["uid", *PROFILE, *AD]
           + ["price", "pid", "clk"])
COLS = [Col(c, "float" if c == "price" else "int") for c in COLUMNS]
EXPECT = ("267 comma-separated numbers per line (DMR's Alimama format: 50 btag, 50 cate, 50 brand, 50 mask, "
          "50 match mask, uid, 8 user-profile fields, adgroup_id, cate_id, campaign_id, customer, brand, price, "
          "pid, clk 0/1)")
CONTEXT = (*PROFILE, "adgroup_id", "campaign_id", "customer", "pid")
PRICE_BINS = 10


def files_read(path: str | None) -> list[Path]:
    """The train file(s) and, if present, one test file: `*.txt` in the folder (or the one file given)."""
    p = locate(NAME, FOLDER, path)
    if p.is_file():
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".txt", ".csv"))
    if not files:
        found = ", ".join(sorted(f.name for f in p.iterdir())[:12]) or "nothing"
        raise DataError(f"{p}: no .txt/.csv file of DMR-format rows here (found: {found}); point path at the folder "
                        "holding alimama_sampled_train.txt (or at the file)")
    return files


def read_rows(f: Path) -> tuple[pd.DataFrame, np.ndarray]:
    raw, lines = read_table(f, COLS, EXPECT)
    mask = raw[[f"mask_{j}" for j in range(L)]].to_numpy()
    first_bad(f, lines, ~np.isin(raw["clk"].to_numpy(), (0, 1)), EXPECT, "clk is not 0/1")
    first_bad(f, lines, ~np.isin(mask, (0, 1)).all(1), EXPECT, "a mask column (150-199) is not 0/1")
    first_bad(f, lines, (np.diff(mask, axis=1) < 0).any(1), EXPECT,
              "the mask (columns 150-199) must put padding first and the behaviours last (0...0 1...1)")
    btag = raw[[f"btag_{j}" for j in range(L)]].to_numpy()
    first_bad(f, lines, ((btag < 0) | (btag > 4)).any(1), EXPECT, "a btag (columns 0-49) is not 0-4")
    return raw, lines


def load_alimama_dmr(path: str | None = None, verify: bool = True) -> Dataset:
    files = files_read(path)
    meta: dict[str, Any] = {"source": f"{SOURCE} ({files[0].parent})", "licence": LICENCE, "format": "dmr-267",
                            "time": "none in the format: time = row position"}
    meta.update(verify_files(NAME, files, KNOWN_SHA256, verify))
    frames, parts = [], []
    for f in files:
        raw, _ = read_rows(f)
        frames.append(raw)
        parts.append(np.full(len(raw), "test" if "test" in f.name.lower() and len(files) > 1 else "train", object))
    raw, part = pd.concat(frames, ignore_index=True), np.concatenate(parts)
    n = len(raw)
    mask = raw[[f"mask_{j}" for j in range(L)]].to_numpy().astype(bool)
    cate = raw[[f"cate_{j}" for j in range(L)]].to_numpy()
    brand = raw[[f"brand_{j}" for j in range(L)]].to_numpy()
    # one item vocabulary of (cate, brand) pairs over behaviours and targets
    pairs = pd.MultiIndex.from_arrays([np.concatenate([cate[mask], raw["cate_id"].to_numpy()]),
                                       np.concatenate([brand[mask], raw["brand"].to_numpy()])])
    codes, uniques = pd.factorize(pairs, sort=True)
    seq_item, item = codes[: mask.sum()].astype(np.int64), codes[mask.sum():].astype(np.int64)
    user, user_ids = pd.factorize(raw["uid"], sort=True)
    lengths = mask.sum(1)
    ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    row_of = np.repeat(np.arange(n), lengths)
    pos = np.arange(ptr[-1]) - ptr[row_of]                      # 0 = oldest behaviour of its row
    time = np.arange(n, dtype=np.float64)
    seq_time = time[row_of] - 1 + (pos + 1) / (lengths[row_of] + 1)
    price = raw["price"].to_numpy(np.float64)
    edges = np.unique(np.quantile(price, np.linspace(0, 1, PRICE_BINS + 1)[1:-1]))
    context = {c: pd.factorize(raw[c], sort=True)[0].astype(np.int64) for c in CONTEXT}
    context["price_bin"] = np.searchsorted(edges, price, side="right").astype(np.int64)
    label = raw["clk"].to_numpy().astype(np.int8)
    rows = ImpressionRows(user=user.astype(np.int64), item=item, time=time, label=label, seq_ptr=ptr,
                          seq_item=seq_item, seq_time=seq_time, context=context, event_id=np.arange(n, dtype=np.int64))
    x = Interactions(user=rows.user, item=item, time=time, n_users=len(user_ids), n_items=len(uniques),
                     time_unit="s", value=label.astype(np.int64),
                     event=np.where(label == 1, "click", "impression").astype(object),
                     features={**context, "part": part})
    item_ids = np.asarray([f"{c}:{b}" for c, b in uniques], dtype=object)
    meta.update(n_rows=n, n_test_rows=int((part == "test").sum()), ctr=float(label.mean()),
                mean_sequence=float(lengths.mean()), item="cate:brand pair", context=",".join(sorted(context)))
    return Dataset(name=NAME, interactions=x, user_ids=np.asarray(user_ids, dtype=object), item_ids=item_ids,
                   meta=meta, impressions=rows)


def _sources(params: dict[str, Any]) -> list[Path]:
    return sources_or_path(params, lambda p: files_read(p.get("path")))


@hookimpl
def register_datasets(register):
    register(DatasetSpec(
        name=NAME, factory=load_alimama_dmr, sources=_sources, cache=False,
        description="Alimama CTR rows in DMR's preprocessed 267-column format (behaviour sequences built, no time); "
                    "item = cate:brand, carries its impression rows",
        params=(Param("path", "str", None, "the folder of the DMR-format files (or one file); default: "
                                           "taobao-alimama/ under $MATCHBENCH_DATA or ../shared/data", nullable=True),
                Param("verify", "bool", True, "check the sample file's sha256 where it is known"))))
