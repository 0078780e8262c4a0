"""Checks every model plugin passes, on the tiny world (see `world`), in the order `check_plugin` runs them.

A model is fitted as the runner fits it (global torch / numpy seeds set, `FitContext.for_split`, its spec's
default loss when it takes one) on the split its `requires` call for; the fit is memoised on the case, so the
checks after `check_fits` reuse it and `check_deterministic_for_a_seed` adds exactly one more fit.

Internal: plugin authors run these checks through `harness.testing`; this module may change between versions.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..ctr import ImpressionRows, run_ctr
from ..evaluate import ScoreSource, TaskResult, evaluate_full
from ..matching import PlanningScores, topk_assignment
from ..model import FitContext, Model, default_device
from ..specs import MetricSpec
from ..splits import EvalSet, SplitData, UserStates
from .base import PluginCase, check, require
from .world import (
    ConstantModel,
    cold_item,
    cold_user,
    model_split,
    tiny_world,
    with_cold_state,
)

RANKING = ("itemrec", "userrec")
K = 10
ROWS = 32
"""States (or impressions x 8) compared between fits and between `factors` and `score_block`."""


def _recall(hits: torch.Tensor, n_rel: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k].sum(1) / n_rel


RECALL = {"recall": MetricSpec(name="recall", factory=lambda: _recall, description="found / relevant")}


# ------------------------------------------------------------------------------------------- the setting

def served(case: PluginCase) -> set[str]:
    return set(case.spec.serves(case.resolved()))


def ranking_tasks(case: PluginCase) -> list[str]:
    return [t for t in RANKING if t in served(case)]


def world_and_split(case: PluginCase) -> tuple[Any, SplitData]:
    def make():
        name, params = model_split(case.spec, served(case))
        world = tiny_world(case.registry, impressions=name == "impressions", funnel=name == "funnel")
        return world, case.registry.create("split", name, **params).split(world, 0)
    return case.cached("world", make)


def fit(case: PluginCase, seed: int = 0, model: Model | None = None) -> Model:
    """A fresh fit (of `model`, default a new instance of the plugin) with `seed`, as the runner fits."""
    world, split = world_and_split(case)
    spec = case.spec
    model = case.create() if model is None else model
    loss = case.registry.create("loss", spec.default_loss) if spec.contracts and spec.default_loss else None
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    ctx = FitContext.for_split(split, world, seed=seed, device=default_device())
    model.fit(split.train, loss, ctx)
    return model


def fitted(case: PluginCase) -> Model:
    return case.cached("fitted", lambda: fit(case, 0))


def source(case: PluginCase, model: Model, evalset: EvalSet) -> ScoreSource:
    return ScoreSource(model, evalset, world_and_split(case)[1].n_items, default_device())


def score_rows(model: Model, states: UserStates, rows: np.ndarray, n_items: int) -> torch.Tensor:
    """Scores of states[rows] against every item, through `factors` when the model gives them, on the CPU."""
    f = model.factors(states)
    if f is not None:
        u, v = (torch.as_tensor(a, dtype=torch.float32).cpu() for a in f)
        return u[torch.as_tensor(rows)] @ v.T
    s = torch.as_tensor(model.score_block(states, rows)).float().cpu()
    require(s.shape == (len(rows), n_items), f"score_block returned shape {tuple(s.shape)} for {len(rows)} rows, "
                                             f"expected ({len(rows)}, {n_items})")
    return s


def test_rows(split: SplitData, n: int) -> ImpressionRows:
    rows = split.test_impressions
    return rows.take(np.arange(min(n, len(rows))))


def probabilities(model: Model, rows: ImpressionRows) -> np.ndarray:
    p = np.asarray(model.predict_ctr(rows), dtype=np.float64)
    require(p.shape == (len(rows),), f"predict_ctr returned shape {p.shape} for {len(rows)} rows")
    require(np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all(),
            f"predict_ctr must return probabilities in [0, 1]; got values in [{np.nanmin(p):g}, {np.nanmax(p):g}]"
            f"{' with non-finite ones' if not np.isfinite(p).all() else ''}")
    return p


def evaluate(case: PluginCase, model: Model, task: str, block_size: int | None = None) -> TaskResult:
    split = world_and_split(case)[1]
    return evaluate_full(task, source(case, model, split.test), split.test, [5, K], RECALL,
                         split.train.item_counts, block_size=block_size)


# ------------------------------------------------------------------------------------------- the checks

@check("model")
def check_fits(case: PluginCase) -> None:
    """Fits on the tiny world (with its spec's default loss when it takes one), on the split its `requires`
    call for."""
    fitted(case)


@check("model")
def check_declared_tasks_evaluate(case: PluginCase) -> None:
    """Every task the configuration serves gives finite metrics: itemrec / userrec recall@5,10 through the
    full-ranking engine, ctr's AUC and logloss, and matching's planning scores (by the spec's score_kind)."""
    model, (world, split) = fitted(case), world_and_split(case)
    for task in ranking_tasks(case):
        res = evaluate(case, model, task)
        bad = {k: v for k, v in res.metrics.items() if not np.isfinite(v)}
        require(not bad, f"task {task}: non-finite metrics {bad}; the model's scores contain nan or inf")
    if "ctr" in served(case):
        m = run_ctr(model, split, world)
        bad = {k: m[k] for k in ("ctr/auc", "ctr/logloss") if not np.isfinite(m[k])}
        require(not bad, f"task ctr: non-finite metrics {bad}")
    if "matching" in served(case):
        scores = PlanningScores(source(case, model, split.test), case.spec.score_kind, split.test.exclude, seed=0)
        plan = topk_assignment(scores, 1)
        require(plan.nnz > 0, f"task matching: no pair could be planned from scores of kind {case.spec.score_kind!r}")


@check("model")
def check_offers_are_implemented(case: PluginCase) -> None:
    """What `offers` says works, for the tasks this configuration serves (an ablation that serves ctr alone may
    have no factors): `factors` gives a pair of 2-D tensors (states x d, items x d); `score_block` gives rows x
    items; `predict_ctr` gives one probability in [0, 1] per impression."""
    model, (_, split) = fitted(case), world_and_split(case)
    states, n_items, offers = split.test.states, split.n_items, set(case.spec.offers)
    if not ranking_tasks(case):
        offers -= {"factors", "block_scores"}
    if "ctr" not in served(case):
        offers.discard("ctr_probabilities")
    if "factors" in offers:
        f = model.factors(states)
        require(isinstance(f, tuple) and len(f) == 2,
                f"offers 'factors' but factors(states) returned {type(f).__name__}, not a (states, items) pair")
        u, v = f
        require(isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor),
                f"factors must be torch tensors, got ({type(u).__name__}, {type(v).__name__})")
        require(u.ndim == 2 and v.ndim == 2 and u.shape[0] == len(states) and v.shape[0] == n_items
                and u.shape[1] == v.shape[1],
                f"factors shapes {tuple(u.shape)} and {tuple(v.shape)}; expected ({len(states)}, d) and ({n_items}, d)")
    if "block_scores" in offers:
        rows = np.arange(min(5, len(states)))
        s = model.score_block(states, rows)
        require(isinstance(s, torch.Tensor), f"score_block must return a torch tensor, got {type(s).__name__}")
        require(tuple(s.shape) == (len(rows), n_items),
                f"score_block returned shape {tuple(s.shape)} for {len(rows)} rows, expected ({len(rows)}, {n_items})")
    if "ctr_probabilities" in offers:
        require(split.test_impressions is not None, "offers 'ctr_probabilities' but its split has no impressions; "
                                                    "declare requires=('impressions',) in its spec")
        probabilities(model, test_rows(split, 8 * ROWS))


@check("model")
def check_deterministic_for_a_seed(case: PluginCase) -> None:
    """Two fits with the same seed give the same scores (within float tolerance): every random draw comes from
    ctx.seed (ctx.generator(), torch generators seeded from it) or the global seeds the harness sets."""
    a, (_, split) = fitted(case), world_and_split(case)
    b = fit(case, 0)
    if ranking_tasks(case):
        states, rows = split.test.states, np.arange(min(ROWS, split.test.n_states))
        sa, sb = score_rows(a, states, rows, split.n_items), score_rows(b, states, rows, split.n_items)
        _same(sa.numpy(), sb.numpy(), "scores of the first test states")
    if "ctr" in served(case):
        rows = test_rows(split, 8 * ROWS)
        _same(probabilities(a, rows), probabilities(b, rows), "click probabilities of the first test impressions")


def _same(a: np.ndarray, b: np.ndarray, what: str) -> None:
    close = np.isclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)
    if not close.all():
        where = np.unravel_index(np.argmin(close), close.shape)
        require(False, f"two fits with seed 0 give different {what}: {a[where]:g} vs {b[where]:g} at {where} "
                       f"({(~close).sum()} of {close.size} differ); seed every random draw from ctx.seed")


@check("model")
def check_rankings_independent_of_block_size(case: PluginCase) -> None:
    """The same top-10 whether the engine scores 7 states at a time or all at once (a model must not let one
    state's scores depend on which others share its block); near-ties within float tolerance may swap."""
    model = fitted(case)
    for task in ranking_tasks(case):
        small, whole = evaluate(case, model, task, block_size=7), evaluate(case, model, task)
        diff = small.topk.index != whole.topk.index
        tied = np.isclose(small.topk.score, whole.topk.score, rtol=1e-5, atol=1e-6)
        rows = np.flatnonzero((diff & ~(tied & _near_ties(whole.topk.score, diff))).any(1))
        if len(rows):
            q = rows[0]
            require(False, f"task {task}: top-{K} of query {whole.queries[q]} is {small.topk.index[q].tolist()} "
                           f"when scored 7 states at a time but {whole.topk.index[q].tolist()} all at once "
                           f"({len(rows)} of {len(diff)} queries differ); score each state on its own")


def _near_ties(score: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """Where a differing position holds a score within tolerance of another differing position's in its row."""
    out = np.zeros_like(diff)
    for r in np.flatnonzero(diff.any(1)):
        s = score[r, diff[r]]
        out[r, diff[r]] = np.isclose(s[:, None], s[None, :], rtol=1e-5, atol=1e-6).sum(1) > 1
    return out


@check("model")
def check_factors_agree_with_score_block(case: PluginCase) -> None:
    """A model that overrides both `factors` and `score_block` gives the same scores through either."""
    model, (_, split) = fitted(case), world_and_split(case)
    cls = type(model)
    if cls.factors is Model.factors or cls.score_block is Model.score_block or not ranking_tasks(case):
        return
    states, rows = split.test.states, np.arange(min(ROWS, split.test.n_states))
    f = model.factors(states)
    if f is None:
        return
    u, v = (torch.as_tensor(a, dtype=torch.float32).cpu() for a in f)
    a = (u[torch.as_tensor(rows)] @ v.T).numpy()
    b = torch.as_tensor(model.score_block(states, rows)).float().cpu().numpy()
    require(a.shape == b.shape, f"factors give {a.shape} scores, score_block {b.shape}")
    scale = max(1.0, float(np.nanmax(np.abs(a))))
    close = np.isclose(a, b, rtol=1e-4, atol=1e-5 * scale)
    require(close.all(), f"factors and score_block disagree on {(~close).sum()} of {close.size} scores (max "
                         f"|diff| {np.nanmax(np.abs(a - b)):g}); make score_block the product of the factors")


@check("model")
def check_cold_users_and_items_get_finite_scores(case: PluginCase) -> None:
    """A user-state with an empty history and an item never seen in training get finite scores (and click
    probabilities)."""
    model, (world, split) = fitted(case), world_and_split(case)
    user, item = cold_user(world), cold_item(world)
    require(split.train.item_counts[item] == 0 and split.train.user_counts[user] == 0,
            "the tiny world's cold user and item have training events (a kit defect)")
    if ranking_tasks(case):
        states = with_cold_state(split.test.states, user)
        s = score_rows(model, states, np.arange(len(states)), split.n_items).numpy()
        require(np.isfinite(s[:, item]).all(), f"item {item}, never seen in training, gets non-finite scores from "
                                               f"{int((~np.isfinite(s[:, item])).sum())} states")
        require(np.isfinite(s[-1]).all(), f"a state with an empty history (user {user}) gets non-finite scores "
                                          f"for {int((~np.isfinite(s[-1])).sum())} items")
    if "ctr" in served(case):
        probabilities(model, cold_rows(split.test_impressions, user, item))


def cold_rows(rows: ImpressionRows, user: int, item: int) -> ImpressionRows:
    """Three impressions like the first test row: (cold user, cold item), (cold user, its item), (its user with
    its sequence, cold item); the cold user's rows have an empty behaviour sequence."""
    r = rows.take(np.zeros(3, dtype=np.int64))
    n_seq = int(r.lengths[0])
    return ImpressionRows(user=np.array([user, user, r.user[0]]), item=np.array([item, r.item[0], item]),
                          time=r.time, label=np.zeros(3, dtype=np.int8),
                          seq_ptr=np.array([0, 0, 0, n_seq], dtype=np.int64), seq_item=r.seq_item[:n_seq],
                          seq_time=r.seq_time[:n_seq], context=r.context)


@check("model")
def check_beats_a_constant_scorer(case: PluginCase) -> None:
    """On the tiny world (strong popularity: ranking by training counts roughly doubles a constant scorer's
    recall@10), the model beats a constant scorer (every score equal, ties to the lower index) on at least one
    task it serves: itemrec or userrec recall@10, or ctr AUC (a constant's is 0.5)."""
    model, (world, split) = fitted(case), world_and_split(case)
    constant = fit(case, 0, ConstantModel())
    shown = []
    for task in ranking_tasks(case):
        mine = evaluate(case, model, task).metrics[f"recall_{K}"]
        ref = evaluate(case, constant, task).metrics[f"recall_{K}"]
        if mine > ref + 1e-9:
            return
        shown.append(f"{task} recall@{K} {mine:.4f} <= constant {ref:.4f}")
    if "ctr" in served(case):
        auc = run_ctr(model, split, world)["ctr/auc"]
        if auc > 0.5 + 1e-9:
            return
        shown.append(f"ctr AUC {auc:.4f} <= constant 0.5")
    require(False, "; ".join(shown) + " (a model no better than equal scores; check that fit learns and that "
                                      "higher scores mean more likely)")
