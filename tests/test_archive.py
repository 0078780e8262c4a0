"""Suite archives (harness.archive, `matchbench export` / `import`): a suite run in one store, exported and imported
into an empty one, gives the same results table, curves, per-query values and claim verdicts; importing twice adds
nothing; a damaged archive or the wrong suite is refused with the file, line and fix."""
import json

import pandas as pd
import pytest
import yaml
from conftest import tiny_suite

from harness import api
from harness.archive import export_suite, import_archive, read_archive
from harness.claims import check_claims
from harness.cli import main
from harness.errors import ConfigError
from harness.registry import Registry
from harness.report import results_table, suite_labels
from harness.runner import make_tracker

CLAIMS = [{"source": "Paper A Table 1", "metric": "itemrec/ndcg_10", "greater": "bpr", "than": "user_pop"},
          {"source": "Paper A Table 2", "metric": "itemrec/recall_10", "at_least": "item_pop", "than": "bpr",
           "margin": 0.01}]


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """A small suite (3 models x 2 seeds, one of them with training curves) run once into store A."""
    root = tmp_path_factory.mktemp("archive")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    mp.setenv("MATCHBENCH_CACHE", str(root / "cache"))
    reg = Registry.load()
    raw = tiny_suite(name="archived", seeds=[0, 1], claims=CLAIMS,
                     models=[{"name": "item_pop"}, {"name": "user_pop"},
                             {"name": "bpr", "factors": 8, "epochs": 3}],
                     tracking={"tracker": "mlflow", "uri": f"sqlite:///{root / 'a.db'}"})
    (root / "archived.yaml").write_text(yaml.safe_dump(raw))
    api.run(raw, reg, report=False)
    yield root, reg, raw
    mp.undo()


def store(reg, raw, uri):
    s = api.suite(raw, reg)
    return s, make_tracker(reg, s, uri)


def test_export_then_import_gives_the_same_results(ran, tmp_path):
    root, reg, raw = ran
    s, a = store(reg, raw, f"sqlite:///{root / 'a.db'}")
    counts = export_suite(a, s, tmp_path / "arch")
    assert counts == {"cells": 6, "not_in_grid": 0, "tuned": 0}
    manifest, cells = read_archive(tmp_path / "arch")
    assert manifest["suite"] == "archived" and len(cells) == 6
    assert all("per_query.parquet" in c["artifacts"] for c in cells)
    bpr = [c for c in cells if c["params"]["model"] == "bpr"]
    assert bpr and all(len(pts) == 3 for c in bpr for pts in c["curves"].values()) and bpr[0]["curves"]

    _, b = store(reg, raw, f"sqlite:///{tmp_path / 'b.db'}")
    assert import_archive(b, s, tmp_path / "arch") == {"imported": 6, "already": 0, "not_in_grid": 0}
    labels = suite_labels(s)
    pd.testing.assert_frame_equal(results_table(a, s.name, s.config_hashes, labels),
                                  results_table(b, s.name, s.config_hashes, labels))
    ra, rb = a.runs(s.name).set_index("config_hash"), b.runs(s.name).set_index("config_hash")
    assert (rb.loc[ra.index, "wall_time"] - ra["wall_time"]).abs().max() < 1e-3
    assert (rb.loc[ra.index, "run_name"] == ra["run_name"]).all()
    for h in ra.index:
        for name in (k for c in cells if c["config_hash"] == h for k in c["curves"]):
            assert a.curve(ra.loc[h, "run_id"], name) == b.curve(rb.loc[h, "run_id"], name)
        qa = pd.read_parquet(a.artifact(ra.loc[h, "run_id"], "per_query.parquet"))
        qb = pd.read_parquet(b.artifact(rb.loc[h, "run_id"], "per_query.parquet"))
        pd.testing.assert_frame_equal(qa, qb)
    va, vb = check_claims([(s, a)]), check_claims([(s, b)])
    assert [(v.verdict, v.means, v.p_for_holm) for v in va] == [(v.verdict, v.means, v.p_for_holm) for v in vb]
    assert {v.test for v in va} == {"users"}  # per-query values came along: the users decide

    # importing again adds nothing; a store that already has some cells keeps them
    assert import_archive(b, s, tmp_path / "arch")["imported"] == 0
    assert len(b.runs(s.name)) == 6


def test_a_partial_store_is_completed_not_duplicated(ran, tmp_path):
    root, reg, raw = ran
    s, a = store(reg, raw, f"sqlite:///{root / 'a.db'}")
    export_suite(a, s, tmp_path / "arch")
    one_seed = dict(raw, seeds=[0], tracking={"tracker": "mlflow", "uri": f"sqlite:///{tmp_path / 'c.db'}"})
    api.run(one_seed, reg, report=False)
    _, c = store(reg, raw, f"sqlite:///{tmp_path / 'c.db'}")
    before = set(c.runs(s.name)["run_id"])
    assert import_archive(c, s, tmp_path / "arch") == {"imported": 3, "already": 3, "not_in_grid": 0}
    after = c.runs(s.name)
    assert len(after) == 6 and before <= set(after["run_id"])  # the store's own seed-0 runs are the ones kept


def test_damaged_archives_and_the_wrong_suite_are_refused(ran, tmp_path):
    root, reg, raw = ran
    s, a = store(reg, raw, f"sqlite:///{root / 'a.db'}")
    with pytest.raises(ConfigError, match="no manifest.json"):
        read_archive(tmp_path / "nothing")
    arch = tmp_path / "arch"
    export_suite(a, s, arch)
    lines = (arch / "cells.jsonl").read_text().splitlines()
    cell = json.loads(lines[1])
    (arch / "artifacts" / cell["config_hash"] / "per_query.parquet").unlink()
    (arch / "cells.jsonl").write_text("\n".join([lines[0], lines[1], "{not json", json.dumps({"run_name": "x"})]))
    with pytest.raises(ConfigError) as e:
        read_archive(arch)
    msg = str(e.value)
    assert "line 2: artifact(s) per_query.parquet missing" in msg and "line 3: not valid JSON" in msg
    assert "line 4: missing config_hash" in msg and "export the suite again" in msg
    other = dict(raw, name="another")
    export_suite(a, s, tmp_path / "good")
    s2, b = store(reg, other, f"sqlite:///{tmp_path / 'b.db'}")
    with pytest.raises(ConfigError, match="holds suite 'archived', not 'another'"):
        import_archive(b, s2, tmp_path / "good")
    empty = dict(raw, tracking={"tracker": "mlflow", "uri": f"sqlite:///{tmp_path / 'empty.db'}"})
    s3, e3 = store(reg, empty, None)
    with pytest.raises(ConfigError, match="no recorded cell in this store to export"):
        export_suite(e3, s3, tmp_path / "none")


def test_export_and_import_from_the_cli(ran, tmp_path, capsys, monkeypatch):
    root, reg, raw = ran
    monkeypatch.chdir(root)
    suite_file = str(root / "archived.yaml")
    assert main(["export", suite_file, "--out", str(tmp_path / "arch")]) == 0
    assert "6 cell(s) of suite 'archived'" in capsys.readouterr().out
    uri = f"sqlite:///{tmp_path / 'd.db'}"
    assert main(["import", suite_file, "--from", str(tmp_path / "arch"), "--tracking-uri", uri]) == 0
    assert "6 cell(s) imported, 0 already FINISHED" in capsys.readouterr().out
    assert main(["check", suite_file, "--tracking-uri", uri, "--format", "csv"]) == 0
    imported = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    s = api.suite(raw, reg)
    assert list(imported.verdict) == [v.verdict for v in check_claims([(s, make_tracker(reg, s))])]
    assert "no data" not in set(imported.verdict)
    assert main(["import", suite_file, "--from", str(tmp_path / "missing"), "--tracking-uri", uri]) == 2
    assert "not a matchbench archive" in capsys.readouterr().err


def test_the_committed_archives_are_readable_and_name_a_suite():
    """results/<suite>/ in the repository: each one reads (manifest, every line, every artifact present) and belongs
    to a suite file of suites/ (so `matchbench import suites/<suite>.yaml` finds it)."""
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    folders = sorted(p.parent for p in (repo / "results").glob("*/manifest.json"))
    suites = {yaml.safe_load(p.read_text()).get("name", p.stem) for p in (repo / "suites").glob("*.yaml")}
    for folder in folders:
        manifest, cells = read_archive(folder)
        assert manifest["suite"] == folder.name and manifest["suite"] in suites
        assert len(cells) == manifest["cells"], folder
        assert {c["status"] for c in cells} <= {"FINISHED", "FAILED", "SKIPPED", "KILLED"}, folder
