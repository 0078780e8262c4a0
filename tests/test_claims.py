"""Claims as code (harness.claims, `matchbench check`): verdicts from tracked values whose answer is known by
construction — a constant lead is reproduced, a constant deficit contradicted, noise inconclusive, one seed too few
unless per-query values let the users decide — with hand-computed p-values and Holm across claims; bad claims are
refused in one error naming each; the CLI exits 0 whatever the verdicts and 2 on bad input."""
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import tiny_suite
from scipy import stats

from harness import api
from harness.claims import Claim, check_claims, one_sided
from harness.cli import main
from harness.errors import ConfigError
from harness.registry import Registry
from harness.runner import make_tracker, new_record

# per seed, itemrec/ndcg_10 of each method: bpr leads item_pop by 0.010, 0.011, 0.012 and user_pop by a constant
# 0.1; oracle ties bpr on average (0, +0.01, -0.01)
VALUES = {"bpr": [0.300, 0.320, 0.340], "item_pop": [0.290, 0.309, 0.328], "user_pop": [0.20, 0.22, 0.24],
          "oracle": [0.30, 0.33, 0.33]}


@pytest.fixture
def reg():
    return Registry.load()


def claims_suite(claims, seeds=(0, 1, 2)) -> dict:
    return tiny_suite(name="claimed", models=[{"name": "item_pop"}, {"name": "user_pop"}, {"name": "oracle"},
                                              {"name": "bpr", "factors": 8, "epochs": 2}],
                      seeds=list(seeds), claims=claims)


def record_values(suite: dict, reg, values=VALUES, per_query: dict | None = None, tmp=None,
                  failed: tuple = ()) -> None:
    """Track one record per cell with the given per-seed values (and per-query artifacts); the models in `failed`
    FAILED, without values."""
    s = api.suite(suite, reg)
    tracker = make_tracker(reg, s)
    tracker.suite_started(s.name, s.raw, len(s.cells))
    for cell in s.cells:
        rec = new_record(cell, reg)
        if cell.model.name in failed:
            rec.status, rec.error, rec.end_time = "FAILED", "boom", rec.start_time + 1
            tracker.cell_finished(rec)
            continue
        rec.metrics = {"itemrec/ndcg_10": values[cell.model.name][cell.seed], "truth/spearman_joint": 0.4 + 0.01 *
                       cell.seed}
        if per_query and cell.model.name in per_query:
            path = tmp / f"{cell.config_hash}.parquet"
            v = per_query[cell.model.name]
            pd.DataFrame({"task": "itemrec", "metric": "ndcg_10", "query": np.arange(len(v)).astype(str),
                          "value": v}).to_parquet(path)
            rec.artifacts = {"per_query.parquet": path}
        rec.end_time = rec.start_time + 1
        tracker.cell_finished(rec)
    tracker.suite_finished("FINISHED")


def verdicts_of(suite, reg):
    s = api.suite(suite, reg)
    return check_claims([(s, make_tracker(reg, s))])


def test_one_sided_against_a_hand_computation():
    # d = 0.01, 0.02, 0.03: t = 0.02 / (0.01 / sqrt 3) = 3.4641 on 2 df; one-sided p = 0.0371
    p_for, p_against = one_sided(np.array([0.01, 0.02, 0.03]))
    assert p_for == pytest.approx(0.0371, abs=2e-4) and p_against == pytest.approx(1 - 0.0371, abs=2e-4)
    assert one_sided(np.array([0.01, 0.01])) == (0.0, 1.0)  # a constant lead is certain
    assert one_sided(np.array([0.0, 0.0, 0.0])) == (1.0, 1.0)
    assert all(math.isnan(p) for p in one_sided(np.array([0.5])))


def test_verdicts_and_holm_on_known_values(reg, workdir):
    claims = [
        {"source": "Paper A Table 1", "metric": "itemrec/ndcg_10", "greater": "user_pop", "than": "item_pop"},
        {"source": "Paper A Table 2", "metric": "itemrec/ndcg_10", "greater": "bpr", "than": "user_pop"},
        {"source": "Paper B Fig. 3", "metric": "itemrec/ndcg_10", "greater": "oracle", "than": "bpr"},
        {"source": "Paper B Fig. 4", "metric": "itemrec/ndcg_10", "at_least": "item_pop", "than": "bpr",
         "margin": 0.05},
        {"source": "Paper B Table 5", "metric": "itemrec/ndcg_10", "best": "bpr",
         "among": ["item_pop", "user_pop", "bpr"]},
        {"source": "Paper C", "metric": "truth/spearman_joint", "method": "bpr", "above": 0.2},
        {"source": "Paper C Table 9", "untestable": "private data"},
    ]
    suite = claims_suite(claims)
    record_values(suite, reg)
    v = verdicts_of(suite, reg)
    assert [x.verdict for x in v] == ["contradicted", "reproduced", "inconclusive", "reproduced", "reproduced",
                                      "reproduced", "untestable"]
    assert v[0].means["user_pop"] == pytest.approx((0.22, 0.02, 3))
    # Holm over the six testable claims, by hand: the raw p's, sorted, times 6, 5, 4, ... with the running max
    raw = [x.p_for for x in v[:6]]
    def t(d):
        return stats.ttest_1samp(d, 0, alternative="greater").pvalue

    assert raw[1] == 0.0  # a constant lead
    assert raw[3] == pytest.approx(t([0.04, 0.039, 0.038]))  # item_pop − bpr + margin
    assert raw[5] == pytest.approx(t([0.2, 0.21, 0.22]))  # spearman − threshold
    # best: the largest pairwise p (bpr vs item_pop; vs user_pop the lead is constant: 0)
    assert raw[4] == pytest.approx(t([0.010, 0.011, 0.012]))
    order = np.argsort(raw, kind="stable")
    running, holm = 0.0, [0.0] * 6
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (6 - rank) * raw[i]))
        holm[i] = running
    assert [x.p_for_holm for x in v[:6]] == pytest.approx(holm)
    assert v[2].why.startswith("not significant")


def test_one_seed_is_too_few_unless_the_users_decide(reg, workdir):
    claims = [{"source": "Paper A", "metric": "itemrec/ndcg_10", "greater": "bpr", "than": "item_pop"},
              {"source": "Paper A", "metric": "itemrec/ndcg_10", "greater": "oracle", "than": "item_pop"}]
    suite = claims_suite(claims, seeds=[0])
    rng = np.random.default_rng(0)
    base = rng.random(200)
    record_values(suite, reg, per_query={"bpr": base + 0.05 + 0.01 * rng.standard_normal(200), "item_pop": base},
                  tmp=workdir)
    by_users, by_seeds = verdicts_of(suite, reg)
    assert by_users.verdict == "reproduced" and by_users.test == "users" and by_users.n == 200
    assert by_seeds.verdict == "inconclusive" and "too few" in by_seeds.why


def test_a_method_without_runs_has_no_data(reg, workdir):
    suite = claims_suite([{"source": "P", "metric": "itemrec/ndcg_10", "greater": "bpr", "than": "oracle"}])
    record_values(suite, reg, failed=("oracle",))
    (v,) = verdicts_of(suite, reg)
    assert v.verdict == "no data" and "oracle" in v.why and "matchbench run" in v.why


def test_bad_claims_are_refused_in_one_error(reg):
    bad = [{"source": "X", "metric": "itemrec/ndcg_10", "greater": "bprr", "than": "item_pop"},
           {"source": "Y", "metric": "itemrec/ndcg_50", "greater": "bpr", "than": "item_pop"},
           {"source": "Z", "metric": "itemrec/ndcg_10", "greater": "bpr", "than": "item_pop", "dataset": "movielens"},
           {"source": "W", "metric": "itemrec/ndcg_10", "greater": "bpr", "best": "bpr", "among": ["item_pop"]}]
    with pytest.raises(ConfigError) as exc:
        api.suite(claims_suite(bad), reg)
    text = str(exc.value)
    for part in ("claims[0] (X): no method labelled 'bprr'", "did you mean 'bpr'",
                 "claims[1] (Y): metric 'itemrec/ndcg_50' is not produced",
                 "claims[2] (Z): no data labelled 'movielens'", "claims[3]", "exactly one relation"):
        assert part in text, part
    sampled = tiny_suite(candidates=["full", {"name": "sampled", "negatives": 9}],
                         claims=[{"source": "S", "metric": "itemrec_s9/ndcg_10", "greater": "bpr", "than": "item_pop"}])
    assert api.suite(sampled, reg).claims[0].task == "itemrec_s9"
    with pytest.raises(ValueError, match="untestable claim states its source and reason only"):
        Claim(source="x", untestable="private", greater="a", than="b")


def test_check_from_the_cli(reg, workdir, capsys):
    claims = [{"source": "UniMatch Table II", "metric": "itemrec/ndcg_10", "greater": "bpr", "than": "user_pop"},
              {"source": "RIM Fig. 4", "metric": "itemrec/ndcg_10", "greater": "user_pop", "than": "item_pop"}]
    suite = claims_suite(claims)
    path = workdir / "claimed.yaml"
    path.write_text(yaml.safe_dump(suite))
    record_values(suite, reg)
    assert main(["check", str(path)]) == 0  # a contradicted claim is a finding, not an error
    out = capsys.readouterr().out
    assert "reproduced" in out and "contradicted" in out
    assert main(["check", str(path), "--out", "reports/claims.md"]) == 0
    assert capsys.readouterr().out.strip() == "reports/claims.md"
    md = (workdir / "reports" / "claims.md").read_text()
    assert "## UniMatch" in md and "## RIM" in md and "| UniMatch Table II | bpr > user_pop |" in md
    assert "**reproduced**" in md and "**contradicted**" in md and "matchbench check" in md
    assert main(["check", str(path), "--format", "csv"]) == 0
    frame = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert list(frame.verdict) == ["reproduced", "contradicted"]
    plain = workdir / "plain.yaml"
    plain.write_text(yaml.safe_dump(tiny_suite()))
    assert main(["check", str(plain)]) == 2
    assert "has no claims: block" in capsys.readouterr().err
