"""Paper claims as code: a suite's `claims:` block states what a paper found, and `matchbench check` tests it on
the suite's tracked results alone.

    claims:
      - {source: "UniMatch Table II", metric: truth/spearman_joint, dataset: synthetic,
         best: bbcNCE, among: [InfoNCE, SimCLR, row-bcNCE, col-bcNCE, bbcNCE]}
      - {source: "RIM Fig. 4", metric: matching/dual/recall_17, dataset: movielens, greater: RNN-Pop, than: RNN}
      - {source: "DMR Table 2", metric: ctr/auc, at_least: DMR, than: DIN, margin: 0.002}
      - {source: "UniMatch Table VIII", metric: truth/spearman_joint, method: bbcNCE, above: 0.5}
      - {source: "UMA² Table 1", untestable: "Alipay's private logs; no public data has its funnel"}

Names are the report's method and data labels. A relation is one of `greater`/`than` (a > b), `at_least`/`than`
with `margin` (a ≥ b − margin), `best`/`among` (better than each of the others, in the metric's direction) and
`method`/`above` (a value, e.g. a correlation, above a threshold); `untestable` lists a claim the harness cannot
test, with the reason.

How a verdict is reached: the claim's one-sided paired test over seeds (a t-test on the per-seed differences), or,
where every run involved saved per-query values (`per_query.parquet`), a one-sided Wilcoxon signed-rank test over
the test users (per user, the difference averaged over the seeds both methods have; far more pairs than seeds).
`best` is an intersection-union test: its p is the largest of its pairwise p's; against it, the smallest
(Bonferroni within the claim). Holm corrects across the claims checked together; **reproduced** where the claim's
adjusted p < 0.05, **contradicted** where the adjusted p of the opposite direction is, **inconclusive** otherwise
(not significant, or one seed without per-query values), **no data** where a method has no FINISHED run.

Internal: plugin authors use `harness.plugin`.
"""
from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, model_validator

from .errors import did_you_mean

ALPHA = 0.05
RELATIONS = ("greater", "at_least", "best", "above")
RANKING = ("itemrec", "userrec")
RESULT_TASKS = ("truth", "matching", "ctr")
"""Tasks whose metric names depend on the data or the planners: checked when the claim is evaluated."""


class Claim(BaseModel):
    """One claim of a paper about the suite's methods (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: StrictStr = Field(min_length=1, description="paper and table or figure, e.g. 'UniMatch Table II'")
    metric: StrictStr | None = Field(None, description="<task>/<metric>, e.g. itemrec/ndcg_10, truth/spearman_joint")
    dataset: StrictStr | None = Field(None, description="the data label it applies to (needed with several)")
    greater: StrictStr | None = Field(None, description="a in a > b (with than)")
    at_least: StrictStr | None = Field(None, description="a in a ≥ b − margin (with than, margin)")
    than: StrictStr | None = Field(None, description="b of greater / at_least")
    margin: StrictFloat | StrictInt = Field(0.0, ge=0, description="at_least: how far below b a may fall")
    best: StrictStr | None = Field(None, description="the method that is best among `among`")
    among: list[StrictStr] | None = Field(None, description="best: the methods compared (best included)")
    method: StrictStr | None = Field(None, description="above: the method whose value is above the threshold")
    above: StrictFloat | StrictInt | None = Field(None, description="the threshold of method's value")
    untestable: StrictStr | None = Field(None, description="why the harness cannot test this claim")
    note: StrictStr = Field("", description="free text shown with the verdict")

    @model_validator(mode="after")
    def _one_relation(self) -> "Claim":
        given = [r for r in RELATIONS if getattr(self, r) is not None]
        if self.untestable is not None:
            if given or self.metric:
                raise ValueError("an untestable claim states its source and reason only: drop "
                                 + ", ".join(given + (["metric"] if self.metric else [])))
            return self
        if len(given) != 1:
            got = f" (got {', '.join(given)})" if given else ""
            raise ValueError("give exactly one relation: greater/than, at_least/than/margin, best/among or "
                             f"method/above (or untestable: reason){got}")
        if not self.metric or "/" not in self.metric:
            raise ValueError(f"metric must be <task>/<metric>, e.g. itemrec/ndcg_10 (got {self.metric!r})")
        rel = given[0]
        needs = {"greater": ("than",), "at_least": ("than",), "best": ("among",), "above": ("method",)}[rel]
        for key in needs:
            if getattr(self, key) is None:
                raise ValueError(f"{rel} needs {key}")
        stray = [k for k, owner in (("than", ("greater", "at_least")), ("among", ("best",)),
                                    ("method", ("above",))) if getattr(self, k) is not None and rel not in owner]
        stray += ["margin"] if self.margin and rel != "at_least" else []
        if stray:
            raise ValueError(f"{', '.join(stray)} does not go with {rel}")
        if rel == "best" and len(set(self.among) | {self.best}) < 2:
            raise ValueError("best needs at least one other method in among")
        return self

    @property
    def relation(self) -> str | None:
        return next((r for r in RELATIONS if getattr(self, r) is not None), None)

    @property
    def task(self) -> str:
        return self.metric.split("/", 1)[0]

    @property
    def metric_name(self) -> str:
        return self.metric.split("/", 1)[1]

    def methods(self) -> list[str]:
        rel = self.relation
        if rel in ("greater", "at_least"):
            return [getattr(self, rel), self.than]
        if rel == "best":
            return [self.best] + [m for m in dict.fromkeys(self.among) if m != self.best]
        return [self.method] if rel == "above" else []

    def text(self) -> str:
        rel = self.relation
        if rel == "greater":
            return f"{self.greater} > {self.than}"
        if rel == "at_least":
            return f"{self.at_least} ≥ {self.than}" + (f" − {self.margin:g}" if self.margin else "")
        if rel == "best":
            return f"{self.best} best of {{{', '.join(self.methods()[1:])}}}"
        if rel == "above":
            return f"{self.method} > {self.above:g}"
        return f"untestable: {self.untestable}"


# ------------------------------------------------------------------------------------------------ validation
def parse_claims(raw: list[dict[str, Any]]) -> tuple[list[tuple[int, Claim]], list[str]]:
    """The claims that parse, with their index in the block, and the structural problems of the others (each
    with its `claims[i]` path), so the label checks still run on the rest."""
    from pydantic import ValidationError

    out, problems = [], []
    for i, item in enumerate(raw):
        try:
            out.append((i, Claim.model_validate(item)))
        except ValidationError as exc:
            src = item.get("source") if isinstance(item, dict) else None
            at = f"claims[{i}]" + (f" ({src})" if src else "")
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = f"unknown key{did_you_mean(key, list(Claim.model_fields))}"
                problems.append(f"{at}{'.' + key if key else ''}: {msg}")
    return out, problems


def claim_problems(claims: list[tuple[int, Claim]], cells: list, tasks: list[str], metrics: list[str],
                   cutoffs: list[int]) -> list[str]:
    """Every claim naming a method label, data label, task or metric the suite does not have."""
    methods = sorted({c.labels.get("method", c.model.name) for c in cells})
    data = sorted({c.labels.get("data", c.dataset.name) for c in cells})
    out = []
    for i, claim in claims:
        at = f"claims[{i}] ({claim.source})"
        if claim.untestable is not None:
            continue
        for name in claim.methods():
            if name not in methods:
                out.append(f"{at}: no method labelled {name!r}{did_you_mean(name, methods)}; the suite's methods: "
                           f"{', '.join(methods)}")
        if claim.dataset is not None and claim.dataset not in data:
            out.append(f"{at}: no data labelled {claim.dataset!r}{did_you_mean(claim.dataset, data)}; the suite's: "
                       f"{', '.join(data)}")
        elif claim.dataset is None and len(data) > 1:
            out.append(f"{at}: the suite has several data labels ({', '.join(data)}): name the claim's dataset")
        task, name = claim.task, claim.metric_name
        sampled = re.fullmatch(r"(itemrec|userrec)_s\d+p?", task)  # a sampled-candidates protocol's prefix
        task = sampled.group(1) if sampled else task
        if task in RANKING and task in tasks:
            family, _, k = name.rpartition("_")
            if family not in metrics or not k.isdigit() or int(k) not in cutoffs:
                known = [f"{task}/{m}_{c}" for m in metrics for c in cutoffs]
                out.append(f"{at}: metric {claim.metric!r} is not produced (metrics {metrics}, cutoffs "
                           f"{cutoffs}){did_you_mean(claim.metric, known)}")
        elif task not in tasks and task not in RESULT_TASKS:
            out.append(f"{at}: task {task!r} of metric {claim.metric!r} is not among the suite's tasks "
                       f"({', '.join(tasks)}) nor truth")
    return out


# ------------------------------------------------------------------------------------------------ the tests
def one_sided(d: np.ndarray) -> tuple[float, float]:
    """(p of mean d > 0, p of mean d < 0): one-sided t-tests on paired differences; NaN with fewer than 2. A
    constant difference is certain (p 0 on its side, 1 on the other); all zero supports neither side."""
    from scipy import stats

    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return math.nan, math.nan
    if np.allclose(d, 0, atol=1e-12):
        return 1.0, 1.0
    if np.allclose(d, d.mean(), rtol=1e-9, atol=1e-12):
        return (0.0, 1.0) if d.mean() > 0 else (1.0, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (float(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue),
                float(stats.ttest_1samp(d, 0.0, alternative="less").pvalue))


def one_sided_users(d: np.ndarray) -> tuple[float, float]:
    """(p of d > 0, p of d < 0) by one-sided Wilcoxon signed-rank tests over users; NaN with fewer than 2."""
    from scipy import stats

    d = np.asarray(d, dtype=float)
    d = d[~np.isnan(d)]
    if len(d) < 2 or np.allclose(d, 0, atol=1e-12):
        return (math.nan, math.nan) if len(d) < 2 else (1.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (float(stats.wilcoxon(d, alternative="greater").pvalue),
                float(stats.wilcoxon(d, alternative="less").pvalue))


@dataclass
class Verdict:
    """A claim's verdict with the numbers behind it."""

    claim: Claim
    suite: str
    dataset: str
    verdict: str = "no data"
    means: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    """method -> (mean, std, seeds)"""
    test: str = ""
    """'seeds' or 'users': which test decided"""
    n: int = 0
    """pairs the deciding test had (seeds or users)"""
    p_for: float = math.nan
    p_against: float = math.nan
    p_for_holm: float = math.nan
    p_against_holm: float = math.nan
    why: str = ""


class _Evidence:
    """The per-seed values and per-query artifacts of one claim's methods."""

    def __init__(self, sub: pd.DataFrame, per_query, task: str, metric: str):
        self.sub, self.pq, self.task, self.metric = sub, per_query, task, metric

    def seeds(self, method: str) -> pd.Series:
        rows = self.sub[self.sub["method"] == method]
        return rows.set_index("seed")["value"].astype(float)

    def users(self, method: str) -> dict[str, pd.Series] | None:
        """Per seed, the method's per-query values; None where a run has none."""
        if self.pq is None:
            return None
        rows = self.sub[self.sub["method"] == method]
        out = {}
        for seed, run_id in zip(rows["seed"], rows["run_id"], strict=True):
            v = self.pq.values(run_id, self.task, self.metric)
            if v is None:
                return None
            out[seed] = v
        return out or None

    def pair(self, a: str, b: str, shift: float = 0.0, sense: int = 1) -> tuple[str, int, float, float]:
        """(test, pairs, p for sense·(a − b) + shift > 0, p against): over users where both have per-query values
        on common seeds, else over seeds."""
        ua, ub = self.users(a), self.users(b)
        common = sorted(set(ua or ()) & set(ub or ()))
        if common:
            diffs = [(ua[s] - ub[s]).rename(s) for s in common]  # aligned on the query id
            d = pd.concat(diffs, axis=1).mean(axis=1).dropna().to_numpy()
            p = one_sided_users(sense * d + shift)
            return "users", len(d), *p
        sa, sb = self.seeds(a), self.seeds(b)
        both = sa.index.intersection(sb.index)
        d = sense * (sa[both] - sb[both]).to_numpy() + shift
        return "seeds", len(d), *one_sided(d)


def evaluate(claim: Claim, ev: _Evidence, sense: int) -> tuple[str, int, float, float, str]:
    """(test, pairs, p for, p against, why) of one claim."""
    rel = claim.relation
    if rel == "above":
        v = ev.seeds(claim.method).to_numpy() - float(claim.above)
        return "seeds", len(v), *one_sided(v), ""
    if rel in ("greater", "at_least"):
        a = claim.greater if rel == "greater" else claim.at_least
        shift = float(claim.margin) if rel == "at_least" else 0.0
        return (*ev.pair(a, claim.than, shift), "")
    results = [ev.pair(claim.best, other, sense=sense or 1) for other in claim.methods()[1:]]
    tests = {r[0] for r in results}
    if any(math.isnan(r[2]) for r in results):  # one untestable pair leaves the claim untested
        return "seeds", min(r[1] for r in results), math.nan, math.nan, ""
    p_for = max(r[2] for r in results)
    p_against = min(1.0, min(r[3] for r in results) * len(results))
    return ("users" if tests == {"users"} else "seeds"), min(r[1] for r in results), p_for, p_against, ""


def check_claims(tracked: Iterable[tuple[Any, Any]]) -> list[Verdict]:
    """Every claim of each (suite, its tracker) checked from that tracker's runs alone, Holm-corrected together."""
    from .report.aggregation import long_frame, suite_labels
    from .report.statistics import PerQuery

    verdicts: list[Verdict] = []
    for suite, tracker in tracked:
        per_query = PerQuery(tracker)
        _, long = long_frame(tracker, suite.name, suite.config_hashes, suite_labels(suite))
        data = sorted({c.labels.get("data", c.dataset.name) for c in suite.cells})
        for claim in suite.claims:
            dataset = claim.dataset or (data[0] if data else "")
            v = Verdict(claim=claim, suite=suite.name, dataset=dataset)
            verdicts.append(v)
            if claim.untestable is not None:
                v.verdict, v.why = "untestable", claim.untestable
                continue
            sub = long[(long["task"] == claim.task) & (long["metric"] == claim.metric_name)
                       & (long["dataset"] == dataset)] if not long.empty else long
            ev = _Evidence(sub, per_query, claim.task, claim.metric_name)
            for m in claim.methods():
                s = ev.seeds(m) if not sub.empty else pd.Series(dtype=float)
                if len(s):
                    v.means[m] = (float(s.mean()), float(s.std()) if len(s) > 1 else math.nan, len(s))
            missing = [m for m in claim.methods() if m not in v.means]
            if missing:
                v.why = (f"no FINISHED value of {claim.metric} on {dataset} for {', '.join(missing)} "
                         f"(run the suite: matchbench run {suite.source})")
                continue
            sense = int(sub["direction"].iloc[0]) if "direction" in sub and len(sub) else 1
            v.test, v.n, v.p_for, v.p_against, v.why = evaluate(claim, ev, sense)
    testable = [v for v in verdicts if not math.isnan(v.p_for)]
    from .report.statistics import holm

    for v, pf, pa in zip(testable, holm([v.p_for for v in testable]), holm([v.p_against for v in testable]),
                         strict=True):
        v.p_for_holm, v.p_against_holm = float(pf), float(pa)
        v.verdict = ("reproduced" if pf < ALPHA else "contradicted" if pa < ALPHA else "inconclusive")
        if v.verdict == "inconclusive":
            v.why = v.why or f"not significant at {ALPHA} after Holm over {len(testable)} claims"
    for v in verdicts:
        if v.verdict == "no data" and v.claim.untestable is None and not v.why:
            v.verdict, v.why = "inconclusive", (f"{v.n} paired {v.test or 'seeds'}: too few to test (needs ≥ 2 "
                                                "seeds, or per-query values)")
    return verdicts


# ------------------------------------------------------------------------------------------------ output
def _num(x: float, spec: str = ".4f") -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _p(x: float) -> str:
    return "" if math.isnan(x) else ("< 1e-4" if x < 1e-4 else f"{x:.4f}")


def evidence(v: Verdict) -> str:
    """The means behind a verdict: `A 0.1234 ± 0.0012 (3)`."""
    parts = [f"{m} {_num(mean)}" + (f" ± {_num(sd)}" if not math.isnan(sd) else "") + f" ({n})"
             for m, (mean, sd, n) in v.means.items()]
    return "; ".join(parts)


def verdict_rows(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """One flat row per verdict (for csv / json / tables)."""
    return [{"suite": v.suite, "source": v.claim.source, "claim": v.claim.text(),
             "metric": v.claim.metric or "", "dataset": v.dataset if v.claim.untestable is None else "",
             "verdict": v.verdict, "evidence": evidence(v), "test": v.test, "pairs": v.n,
             "p": v.p_for, "p_holm": v.p_for_holm, "p_against_holm": v.p_against_holm, "why": v.why,
             "note": v.claim.note} for v in verdicts]


def paper(source: str) -> str:
    """The paper a source names: its first word ('UniMatch Table II' -> 'UniMatch')."""
    return source.split()[0] if source.split() else source


def markdown(verdicts: list[Verdict], title: str | None = None, command: str | None = None) -> str:
    """Verdicts grouped by paper: source, claim, data, verdict, evidence, p (Holm), the suite."""
    lines = [f"# {title}", ""] if title else []
    if command:
        rule = __doc__.split("How a verdict is reached: ", 1)[1].split("\n\nInternal")[0].replace("\n", " ")
        lines += [f"Generated by `matchbench check {command} --out ...` from the tracking stores; never edit by "
                  f"hand. How a verdict is reached: {rule}", ""]
    counts = pd.Series([v.verdict for v in verdicts]).value_counts().to_dict() if verdicts else {}
    lines += [", ".join(f"{k}: {counts[k]}" for k in ("reproduced", "contradicted", "inconclusive", "no data",
                                                      "untestable") if k in counts) + ".", ""]
    for name in dict.fromkeys(paper(v.claim.source) for v in verdicts):
        lines += [f"## {name}", "", "| source | claim | metric | data | verdict | evidence (mean ± sd (seeds)) | "
                  "test | p (Holm; of the opposite for a contradiction) | suite |",
                  "|---|---|---|---|---|---|---|--:|---|"]
        for v in (v for v in verdicts if paper(v.claim.source) == name):
            why = f" — {v.why}" if v.why and v.verdict != "reproduced" else ""
            note = f" ({v.claim.note})" if v.claim.note else ""
            test = f"{v.test}, n = {v.n}" if v.test else ""
            cells = [v.claim.source, v.claim.text() + note, v.claim.metric or "",
                     v.dataset if v.claim.untestable is None else "", f"**{v.verdict}**{why}", evidence(v), test,
                     _p(v.p_against_holm if v.verdict == "contradicted" else v.p_for_holm), v.suite]
            lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def print_verdicts(verdicts: list[Verdict], console) -> None:
    """A compact terminal table: one row per claim, its verdict coloured."""
    from rich.table import Table

    colour = {"reproduced": "green", "contradicted": "red", "inconclusive": "yellow"}
    table = Table(title="claims", show_lines=False)
    for col in ("source", "claim", "metric · data", "verdict", "evidence", "p (Holm; its direction)"):
        table.add_column(col, overflow="fold")
    for v in verdicts:
        c = colour.get(v.verdict, "dim")
        table.add_row(v.claim.source, v.claim.text(), f"{v.claim.metric or ''} · {v.dataset}".strip(" ·"),
                      f"[{c}]{v.verdict}[/{c}]", evidence(v) or v.why,
                      _p(v.p_against_holm if v.verdict == "contradicted" else v.p_for_holm))
    console.print(table)
