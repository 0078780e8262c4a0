"""`matchbench datasets fetch NAME --from PATH`: verify, import into the cache, later runs need no path."""
import json
import shutil

import pytest
from test_datasets_plugins import DATA, FIX, NEW, need

import harness.registry
from harness.cache import load_dataset, raw_dir
from harness.cli import main
from harness.registry import Registry
from plugins.datasets import movielens


@pytest.fixture
def reg_with_new(monkeypatch):
    """Registry.load() also registers the new dataset plugins (until their entry points are installed)."""
    original = Registry.load.__func__
    installed = set(original(Registry).names("dataset"))
    missing = [m for m in NEW if m.NAME not in installed]

    def load(cls, extra=(), entry_points=True):
        return original(cls, extra=[*extra, *missing], entry_points=entry_points)

    monkeypatch.setattr(harness.registry.Registry, "load", classmethod(load))
    return Registry.load()


@pytest.fixture
def clean(workdir, monkeypatch):
    monkeypatch.delenv("MATCHBENCH_DATA", raising=False)
    return workdir


def test_fetch_imports_and_later_runs_need_no_path(clean, capsys):
    assert main(["datasets", "fetch", "movielens", "--from", str(FIX / "ml-1m-tiny")]) == 0
    out = capsys.readouterr().out
    assert "ratings.dat: sha256 f4d2e146" in out and "NOT verified" in out and "no published checksum" in out
    assert "cached movielens: 20 events, 5 users, 15 items" in out
    dest = raw_dir("movielens")
    assert sorted(p.name for p in dest.iterdir()) == ["FETCHED.json", "movies.dat", "ratings.dat"]
    assert json.loads((dest / "FETCHED.json").read_text())["from"] == str(FIX / "ml-1m-tiny")
    ds = load_dataset(Registry.load(), "movielens", {})  # no path: the imported copy
    assert len(ds.interactions) == 20 and str(dest) in ds.meta["file"]


def test_fetch_wrong_checksum_names_file_and_both_hashes(clean, capsys, tmp_path):
    src = tmp_path / "ml"
    src.mkdir()
    (src / "u.data").write_text("1\t2\t5\t100\n")
    assert main(["datasets", "fetch", "movielens", "--from", str(src)]) == 2
    err = capsys.readouterr().err
    assert str(src / "u.data") in err and movielens.VARIANTS["100k"].sha256 in err and "Traceback" not in err
    assert err.count("sha256") >= 2 and not raw_dir("movielens").exists()
    assert main(["datasets", "fetch", "movielens", "--from", str(src), "--no-verify"]) == 0
    assert "cached movielens: 1 events" in capsys.readouterr().out


def test_fetch_new_plugin_verifies_known_checksums(clean, capsys, tmp_path, reg_with_new):
    f = need(DATA / "yoochoose" / "yoochoose-clicks-100k_test.txt")
    assert main(["datasets", "fetch", "yoochoose", "--from", str(f)]) == 0
    out = capsys.readouterr().out
    assert "— verified (matches the known sha256)" in out and "cached yoochoose: 13568 events" in out
    assert len(load_dataset(Registry.load(), "yoochoose", {}).interactions) == 13_568
    bad = tmp_path / f.name
    bad.write_text(f.read_text().replace("214536502", "214536503", 1))
    assert main(["datasets", "fetch", "yoochoose", "--from", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "380410c606403531019e1ec0b4d192ef90492d594b9b5a91633b860618dd7136" in err
    assert "Traceback" not in err


def test_fetch_fixture_folder_with_params(clean, capsys, reg_with_new):
    code = main(["datasets", "fetch", "taobao_ad", "--from", str(FIX / "taobao-ad-tiny"), "-p", "k_core=1"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("NOT verified (no known checksum") == 3 and "cached taobao_ad: 8 events" in out
    ds = load_dataset(Registry.load(), "taobao_ad", {"k_core": 1})
    assert ds.item_features is not None and len(ds.interactions) == 8


@pytest.mark.parametrize("argv, needle", [
    (["datasets", "fetch", "movielens"], "needs --from PATH"),
    (["datasets", "fetch"], "needs a NAME"),
    (["datasets", "fetch", "movielens", "--from", "/no/such/dir"], "no such file or folder"),
    (["datasets", "fetch", "movielenz", "--from", "."], "did you mean 'movielens'"),
    (["datasets", "fetch", "movielens", "--from", ".", "-p", "k_cor=2"], "unknown parameter 'k_cor'"),
    (["datasets", "fetch", "movielens", "--from", ".", "-p", "oops"], "expected KEY=VALUE"),
])
def test_fetch_usage_errors(clean, capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_fetch_malformed_row_exit_2(clean, capsys, tmp_path, reg_with_new):
    src = tmp_path / "tm"
    shutil.copytree(FIX / "tmall-tiny", src)
    f = src / "ijcai2016_taobao.csv"
    f.write_text(f.read_text() + "1,2,3\n")
    assert main(["datasets", "fetch", "tmall", "--from", str(src)]) == 2
    err = capsys.readouterr().err
    assert f"{f}: line 10: expected 6 comma-separated integers" in err and not raw_dir("tmall").exists()
