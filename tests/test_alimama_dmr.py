"""The DMR-format Alimama reader (`alimama_dmr`) and the impressions split on prebuilt rows: a hand-written
file whose every field is known, malformed lines named by file and line, and the shared 500-row sample."""
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import raises_data_error

from harness.ctr import run_ctr
from harness.model import FitContext
from harness.registry import Registry
from plugins.datasets.alimama_dmr import L, load_alimama_dmr

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "taobao-alimama"


@pytest.fixture(scope="module")
def reg():
    return Registry.load()


def _line(history, uid, ad, clk, price=0.5, pid=1, profile=(1, 2, 0, 3, 1, 2, 0, 4)):
    """One 267-column line: history = [(btag, cate, brand), ...] oldest first; ad = (adgroup, cate, campaign,
    customer, brand)."""
    pad = L - len(history)
    btag = [0] * pad + [h[0] for h in history]
    cate = [0] * pad + [h[1] for h in history]
    brand = [0] * pad + [h[2] for h in history]
    mask = [0] * pad + [1] * len(history)
    vals = btag + cate + brand + mask + mask + [uid, *profile, *ad, price, pid, clk]
    return ",".join(str(v) for v in vals)


def _write(folder: Path, lines: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in lines.items():
        (folder / name).write_text("\n".join(rows) + "\n")
    return folder


HAND = [
    _line([(1, 10, 100), (2, 11, 101)], uid=7, ad=(5000, 11, 60, 70, 101), clk=1, price=0.9),
    _line([(1, 10, 100)], uid=8, ad=(5001, 12, 61, 71, 102), clk=0, price=0.1, pid=0),
    _line([(1, 12, 102), (3, 10, 100), (4, 11, 101)], uid=7, ad=(5000, 11, 60, 70, 101), clk=0),
]


def test_a_hand_written_file_maps_onto_the_rows_as_documented(tmp_path):
    ds = load_alimama_dmr(str(_write(tmp_path / "d", {"train.txt": HAND})), verify=False)
    rows = ds.impressions
    # items are (cate, brand) pairs over behaviours and targets: 10:100, 11:101, 12:102
    assert list(ds.item_ids) == ["10:100", "11:101", "12:102"]
    assert list(ds.user_ids) == [7, 8] and list(rows.user) == [0, 1, 0]
    assert list(rows.item) == [1, 2, 1] and list(rows.label) == [1, 0, 0]
    # behaviours oldest first, the mask's padding dropped; every behaviour strictly before its impression
    assert [list(rows.sequence(r)) for r in range(3)] == [[0, 1], [0], [2, 0, 1]]
    owner = np.repeat(np.arange(3), rows.lengths)
    assert (rows.seq_time < rows.time[owner]).all() and (rows.seq_time > rows.time[owner] - 1).all()
    assert list(rows.padded(4)[2]) == [1, 0, 2, -1]              # most recent first
    assert list(rows.context["adgroup_id"]) == [0, 1, 0] and list(rows.context["pid"]) == [1, 0, 1]
    assert rows.context["price_bin"][1] < rows.context["price_bin"][0]   # 0.1 bins below 0.9
    assert "adgroup_id" in rows.context and "cate_id" not in rows.context   # cate/brand are the item itself
    x = ds.interactions
    assert list(x.event) == ["click", "impression", "impression"] and list(x.value) == [1, 0, 0]


def test_a_test_file_gives_the_test_rows_and_the_ranking_side_one_state_per_click(tmp_path, reg):
    test_rows = [_line([(1, 10, 100), (1, 12, 102)], uid=8, ad=(5002, 11, 62, 72, 101), clk=1)]
    ds = load_alimama_dmr(str(_write(tmp_path / "d", {"a_train.txt": HAND, "a_test.txt": test_rows})), verify=False)
    s = reg.create("split", "impressions").split(ds, 0)
    assert len(s.train_impressions) == 3 and len(s.test_impressions) == 1
    assert s.test.n_states == 1 and s.test.targets[0].indices.tolist() == [1]           # the clicked 11:101
    assert s.test.states.history(0).tolist() == [0, 2]
    assert len(s.train) == 1 and s.train.item.tolist() == [1]                          # the training click


def test_malformed_lines_are_named(tmp_path):
    good = HAND[0].split(",")
    cases = {"short": ",".join(good[:-1]), "clk": ",".join(good[:-1] + ["2"]),
             "mask": ",".join(good[:150] + ["1"] + good[151:]),      # a 1 before the padding ends
             "text": ",".join(["x"] + good[1:])}
    for what, bad in cases.items():
        folder = _write(tmp_path / what, {"train.txt": [HAND[1], bad]})
        raises_data_error(lambda folder=folder: load_alimama_dmr(str(folder), verify=False), "train.txt", "line 2",
                          "267 comma-separated")
    raises_data_error(lambda: load_alimama_dmr(_empty(tmp_path)), "no .txt/.csv file")


def _empty(tmp_path: Path) -> str:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README").write_text("nothing")
    return str(tmp_path / "empty")


@pytest.mark.skipif(not (SAMPLE / "alimama_sampled_train.txt").is_file(), reason="shared Alimama sample not present")
def test_the_shared_sample_splits_by_user_and_every_ctr_model_runs(reg):
    ds = reg.create("dataset", "alimama_dmr")
    assert ds.meta["verified"] and len(ds.impressions) == 500 and ds.meta["ctr"] == pytest.approx(0.42)
    a, b = (reg.create("split", "impressions", test_users=0.2).split(ds, seed) for seed in (0, 1))
    for s in (a, b):
        assert not set(s.train_impressions.user) & set(s.test_impressions.user)   # duplicates never straddle
        assert len(s.train_impressions) + len(s.test_impressions) == 500
    assert set(a.test_impressions.user) != set(b.test_impressions.user)        # the seed draws the users
    for name in ("lr", "din", "dmr"):
        m = reg.create("model", name, epochs=1, hidden=[16]) if name != "lr" else reg.create("model", "lr", epochs=1)
        m.fit(a.train, None, FitContext.for_split(a, ds, seed=0, device=torch.device("cpu")))
        out = run_ctr(m, a, ds)
        assert 0 <= out["ctr/auc"] <= 1 and np.isfinite(out["ctr/logloss"]), name
