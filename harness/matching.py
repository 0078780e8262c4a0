"""The matching task: planners turn a model's scores and the suite's constraints into an assignment
of items to user-states, and the assignment is measured against the test targets.

Method-agnostic pieces live here; concrete planners (`topk`, `greedy`, `dual`) are plugins.

- `Constraints`: user capacity alpha (each state takes at most K = ceil(alpha·|Y|) items), item
  minimum exposure beta and optional maximum exposure beta_max (shares of the |X| states), as in
  RIM's Eq. 9-10. `check` turns bad or infeasible values into one clear error naming the key.
- `PlanningScores`: what a planner plans on, streamed block by block from a `ScoreSource` (factors
  or `score_block`), never the whole |X|x|Y| matrix. RIM plans on nonnegative intensities lambda
  ("ideally scaled to lambda <= 1", Algorithm 1), so a model's scores become lambda by its
  `score_kind`: `intensity`/`probability` as they are, `log_intensity` -> exp, `logit` -> softplus
  (RIM Appendix B: softplus keeps the larger raw scores apart, sigmoid saturates); then divided by
  the largest unexcluded value. Pairs seen in the state's history get a -1e10 prior, and ties are
  broken by a tiny seeded perturbation (1e-6 · frac(a_x + b_y), a_x, b_y uniform per state / item),
  deterministic per (state, item) so results do not depend on the block size.
- `Planner`: base class, `plan(scores, calibration=None) -> Plan` (a sparse states x items 0/1 matrix).
- `matching_metrics`: precision and recall of the assignment against the targets, item-exposure
  and user-load perplexity (RIM Eq. 15), coverage and constraint satisfaction (Figure S7's mean
  delivered share per item), computed from sparse matrices without a loop over states.
- `run_planners`: what the runner calls once per cell: every planner on the same scores.

Internal: plugin authors import what they need of it from `harness.plugin`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp
import torch

from .errors import ConfigError, DataError
from .schema import Param

DIRECTIONS = {"precision": 1, "recall": 1, "item_perplexity": 1, "user_perplexity": 1, "item_coverage": 1,
              "beta_satisfied": 1, "beta_max_satisfied": 1, "delivered_share": 0, "per_state": 0,
              "beta_unmet_items": -1, "repair_swaps": 0}  # for reports
# What a planner says about its own plan (Plan.info) that lands in the cell's metrics beside the plan's metrics: how
# many items still miss their minimum exposure, and how many swaps a feasibility repair made
PLAN_INFO_METRICS = ("beta_unmet_items", "repair_swaps")

ALPHA = Param("alpha", "float", 0.01, "user capacity: share of the catalogue per user-state (K/|Y|)",
              low=1e-12, high=1.0)
CONSTRAINT_PARAMS = (
    ALPHA,
    Param("beta", "float", 0.0, "item minimum exposure: share of user-states per item", low=0.0, high=1.0),
    Param("beta_max", "float", None, "item maximum exposure share (null: none)", low=0.0, high=1.0, nullable=True),
)
"""The constraint parameters every planner plugin shares (RIM Eq. 9: alpha, beta, beta')."""

NEG = -1e10
"""Prior added to excluded (seen) pairs: never planned."""
TIE = 1e-6
"""Amplitude of the seeded tie-breaking perturbation, in units of the scaled intensity (max 1)."""
BYTES_PER_PAIR = 24
"""Peak bytes per (state, item) pair of a planning block: the block and a few temporaries."""


# --------------------------------------------------------------------------- constraints
@dataclass(frozen=True)
class Constraints:
    """RIM Eq. 10: E_y[pi_xy] <= alpha for every state x; beta <= E_x[pi_xy] <= beta_max for every item y."""

    alpha: float
    beta: float = 0.0
    beta_max: float | None = None

    def validate(self, where: str = "planner") -> None:
        """Problems that do not depend on the data (also checked when the suite is loaded)."""
        if not 0.0 < self.alpha <= 1.0:
            raise ConfigError(f"{where}: alpha={self.alpha!r} must be in (0, 1] (the share of items a user-state "
                              "may take, K/|Y|); e.g. alpha: 0.01 for top-1% of the catalogue")
        if not 0.0 <= self.beta <= 1.0:
            raise ConfigError(f"{where}: beta={self.beta!r} must be in [0, 1] (each item's minimum share of "
                              "user-states); e.g. beta: 0.001")
        if self.beta > self.alpha:
            raise ConfigError(
                f"{where}: beta={self.beta:g} > alpha={self.alpha:g} is infeasible: the items' minimum exposure "
                f"needs beta·|X|·|Y| assignments but the user-states can take at most alpha·|X|·|Y|; "
                f"lower beta to at most {self.alpha:g} or raise alpha")
        if self.beta_max is not None and not self.beta <= self.beta_max <= 1.0:
            raise ConfigError(f"{where}: beta_max={self.beta_max!r} must be in [beta, 1] = [{self.beta:g}, 1] "
                              "(each item's maximum share of user-states); raise it or set it to null")

    def check(self, n_states: int, n_items: int, where: str = "planner") -> tuple[int, float, float]:
        """(K, min exposure count, max exposure count) for this many states and items, or a ConfigError."""
        self.validate(where)
        if n_states == 0 or n_items == 0:
            raise DataError(f"{where}: nothing to plan ({n_states} user-states x {n_items} items); "
                            "the split left no test states")
        k = int(math.ceil(self.alpha * n_items - 1e-9))  # the authors: K = ceil(1% of items); with beta <= alpha
        c_min = self.beta * n_states                       # the minimum exposure, beta·|X|·|Y| <= K·|X|, is feasible
        c_max = n_states if self.beta_max is None else self.beta_max * n_states
        return k, c_min, c_max


# --------------------------------------------------------------------------- planning scores
def _raw_scores(source, rows: np.ndarray) -> torch.Tensor:
    """The model's raw scores of states[rows] against every item (a block, float32)."""
    if source.u is not None:
        idx = torch.as_tensor(rows, device=source.u.device)
        return source.u[idx] @ source.v.T
    return source._state_block(rows).float()


class FactorScores:
    """A score source of factors alone (scores = u @ vᵀ), for planning scores that no fitted model produced:
    synthetic benchmarks and hand-made test cases. Offers what PlanningScores reads of a ScoreSource."""

    def __init__(self, u, v, device: torch.device | None = None):
        self.u = torch.as_tensor(u, dtype=torch.float32, device=device)
        self.v = torch.as_tensor(v, dtype=torch.float32, device=device)
        self.states = range(len(self.u))  # only its length is read
        self.n_items, self.device = len(self.v), self.u.device


class PlanningScores:
    """Scaled nonnegative intensities of a set of states against every item, streamed in blocks.

    `source`: a `harness.evaluate.ScoreSource` (the model's factors or score_block on these states);
    `exclude`: states x items pairs to exclude (their history) or None; `scale`: the largest raw
    score the scaling divides by (None: computed from these states; pass the calibration set's for
    online planning, so both live on one scale).
    """

    def __init__(self, source, score_kind: str, exclude: sp.csr_matrix | None = None, seed: int = 0,
                 budget_mib: float = 256.0, block_size: int | None = None, scale: float | None = None):
        if score_kind not in ("intensity", "probability", "log_intensity", "logit"):
            raise ValueError(f"unknown score_kind {score_kind!r}")
        self.source, self.score_kind, self.seed = source, score_kind, seed
        self.exclude = None if exclude is None or exclude.nnz == 0 else exclude.tocsr()
        self.n_states, self.n_items = len(source.states), int(source.n_items)
        self.device = source.device
        self.budget_mib, self.block_size = budget_mib, block_size
        gen = torch.Generator().manual_seed(int(seed) % 2**63)
        self._b = torch.rand(self.n_items, generator=gen).to(self.device)
        self._a = torch.rand(self.n_states, generator=gen).to(self.device)
        self._scale = scale

    # sizes ------------------------------------------------------------------------------
    def rows_per_block(self) -> int:
        if self.block_size:
            return int(self.block_size)
        return int(max(1, (self.budget_mib * 2**20) // max(1, self.n_items * BYTES_PER_PAIR)))

    def row_blocks(self, rows: np.ndarray | None = None) -> Iterator[np.ndarray]:
        rows = np.arange(self.n_states) if rows is None else np.asarray(rows)
        step = self.rows_per_block()
        for start in range(0, len(rows), step):
            yield rows[start:start + step]

    # the scale ----------------------------------------------------------------------------
    @property
    def scale(self) -> float:
        """The largest unexcluded raw score (computed in one streaming pass, once)."""
        if self._scale is None:
            best = -math.inf
            for rows in self.row_blocks():
                s = _raw_scores(self.source, rows)
                self._mask(s, rows, -torch.inf)
                s = torch.nan_to_num(s, nan=-torch.inf)
                best = max(best, float(s.max())) if s.numel() else best
            if not math.isfinite(best):
                raise DataError("matching: every (state, item) pair is excluded or has no finite score; "
                                "nothing can be planned (check exclude_seen and the model's scores)")
            if self.score_kind in ("intensity", "probability") and best <= 0:
                raise DataError(f"matching: the model's {self.score_kind} scores are all <= 0 (max {best:g}); a "
                                "planner needs nonnegative intensities — declare score_kind logit or log_intensity")
            self._scale = best
        return self._scale

    def with_scale(self, scale: float) -> "PlanningScores":
        """The same scores on another set's scale (online planning: the calibration set's)."""
        other = PlanningScores.__new__(PlanningScores)
        other.__dict__.update(self.__dict__)
        other._scale = float(scale)
        return other

    # blocks -------------------------------------------------------------------------------
    def _mask(self, s: torch.Tensor, rows: np.ndarray, value: float) -> None:
        if self.exclude is None:
            return
        sub = self.exclude[rows]
        if sub.nnz == 0:
            return
        r = np.repeat(np.arange(sub.shape[0]), np.diff(sub.indptr))
        s[torch.as_tensor(r, device=s.device), torch.as_tensor(sub.indices.astype(np.int64), device=s.device)] = value

    def block(self, rows: np.ndarray) -> torch.Tensor:
        """lambda / max lambda for states[rows] x all items, excluded pairs at NEG, ties perturbed."""
        rows = np.asarray(rows)
        m = self.scale
        s = _raw_scores(self.source, rows).float()
        if self.score_kind == "log_intensity":
            lam = torch.exp(s - m)
        elif self.score_kind == "logit":
            lam = torch.nn.functional.softplus(s) / float(torch.nn.functional.softplus(torch.tensor(m)))
        else:
            lam = s.clamp_min(0.0) / m
        a = self._a[torch.as_tensor(rows, device=self._a.device)]
        lam = lam + TIE * torch.frac(a[:, None] + self._b[None, :])
        lam = torch.nan_to_num(lam, nan=NEG, neginf=NEG)
        self._mask(lam, rows, NEG)
        return lam

    def blocks(self, rows: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        for r in self.row_blocks(rows):
            yield r, self.block(r)

    def ranking_block(self, rows: np.ndarray) -> torch.Tensor:
        """Values that order each state's items as its lambda does, excluded pairs at NEG, ties perturbed: the raw
        scores (log lambda and logits are monotone in lambda). A per-state top-K needs no common scale, and on
        `block`'s global scale a state whose lambda(x) is 1e-6 of the largest would underflow into the
        perturbation and get random items."""
        rows = np.asarray(rows)
        s = _raw_scores(self.source, rows).float()
        if self.score_kind in ("intensity", "probability"):
            s = s.clamp_min(0.0)
        a = self._a[torch.as_tensor(rows, device=self._a.device)]
        s = s + TIE * torch.frac(a[:, None] + self._b[None, :])
        s = torch.nan_to_num(s, nan=NEG, neginf=NEG)
        self._mask(s, rows, NEG)
        return s


# --------------------------------------------------------------------------- planners
@dataclass
class Plan:
    """A planner's output: `assignment` states x items (1.0 = assigned) and free-form `info`."""

    assignment: sp.csr_matrix
    info: dict[str, Any] = field(default_factory=dict)


class Planner:
    """Base class for planner plugins. Subclasses set `constraints` (from their parameters) and
    implement `plan`. `online` planners are handed a calibration set's scores to learn from."""

    constraints: Constraints
    online: bool = False

    def plan(self, scores: PlanningScores, calibration: PlanningScores | None = None) -> Plan:
        raise NotImplementedError


def topk_assignment(scores: PlanningScores, k: int, shift: torch.Tensor | None = None,
                    positive_only: bool = False) -> sp.csr_matrix:
    """Each state's top-k items of lambda - shift (shift: one value per item, e.g. the dual variables v),
    never an excluded pair (and, with `positive_only`, only where lambda - shift > 0), block by block."""
    n, m = scores.n_states, scores.n_items
    k = min(k, m)
    r_parts, c_parts = [], []
    blocks = scores.blocks() if shift is not None else (
        (rows, scores.ranking_block(rows)) for rows in scores.row_blocks())  # per state: its own scale
    for rows, lam in blocks:
        w = lam if shift is None else lam - shift[None, :]
        vals, idx = torch.topk(w, k, dim=1)
        keep = (vals > NEG / 2) & (lam.gather(1, idx) > NEG / 2)
        if positive_only:
            keep &= vals > 0
        keep_np = keep.cpu().numpy()
        r_parts.append(np.broadcast_to(np.asarray(rows)[:, None], keep_np.shape)[keep_np])
        c_parts.append(idx.cpu().numpy()[keep_np])
    r = np.concatenate(r_parts) if r_parts else np.zeros(0, np.int64)
    c = np.concatenate(c_parts) if c_parts else np.zeros(0, np.int64)
    out = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, m))
    out.sort_indices()
    return out


# --------------------------------------------------------------------------- metrics
def perplexity(counts: np.ndarray) -> float:
    """RIM Eq. 15: exp(entropy of counts / sum(counts)); 0 when nothing was assigned."""
    c = np.asarray(counts, dtype=np.float64).ravel()
    total = c.sum()
    if total <= 0:
        return 0.0
    p = c[c > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def matching_metrics(assignment: sp.csr_matrix, targets: sp.csr_matrix, constraints: Constraints) -> dict[str, float]:
    """Metrics of a 0/1 assignment (states x items) against binary targets (states x items).

    precision: hits / assigned pairs; recall: mean over states with a target of hits / targets
    (states without one are counted in `n_without_target`); item_perplexity / user_perplexity:
    Eq. 15 over items' exposure counts / states' loads; item_coverage: share of items assigned at
    least once; beta_satisfied: share of items with exposure >= beta·|X| (and beta_max_satisfied
    with exposure <= beta_max·|X|, when set); delivered_share: mean over items of exposure / |X|
    (Figure S7); per_state: mean items per state.
    """
    a = sp.csr_matrix(assignment, dtype=np.float32)
    a.eliminate_zeros()
    a.data[:] = 1.0
    t = sp.csr_matrix(targets, dtype=np.float32)
    t.eliminate_zeros()
    t.data[:] = 1.0
    n_states, n_items = a.shape
    hits_row = np.asarray(a.multiply(t).sum(1)).ravel()
    n_t = np.diff(t.indptr)
    has = n_t > 0
    exposure = np.bincount(a.indices, minlength=n_items).astype(np.float64)
    load = np.diff(a.indptr).astype(np.float64)
    n_assigned = float(a.nnz)
    out = {
        "precision": float(hits_row.sum() / n_assigned) if n_assigned else 0.0,
        "recall": float((hits_row[has] / n_t[has]).mean()) if has.any() else 0.0,
        "item_perplexity": perplexity(exposure),
        "user_perplexity": perplexity(load),
        "item_coverage": float((exposure > 0).mean()),
        "beta_satisfied": float((exposure >= constraints.beta * n_states - 1e-9).mean()),
        "delivered_share": float((exposure / n_states).mean()),
        "per_state": n_assigned / n_states,
        "n_without_target": float((~has).sum()),
    }
    if constraints.beta_max is not None:
        out["beta_max_satisfied"] = float((exposure <= constraints.beta_max * n_states + 1e-9).mean())
    return out


# --------------------------------------------------------------------------- the runner's entry
def calibration_set(split):
    """Where an online planner learns: the split's calibration window, else its validation set, else
    one state per held-in training user (users without a test state; all training users if none),
    history = all their training events."""
    for ev in (getattr(split, "calibration", None), getattr(split, "valid", None)):
        if ev is not None and ev.n_states:
            return ev
    from .splits import states_from_events

    train = split.train
    users = np.unique(train.user)
    held_in = np.setdiff1d(users, split.test.states.user)
    users = held_in if len(held_in) else users
    cut = float(train.time.max()) + 1.0
    return states_from_events(train, users, np.full(len(users), cut), name="calibration")


def planner_label(name: str, params: dict[str, Any], varying: set[str] = frozenset()) -> str:
    """e.g. dual_online_b0.001: the name, `_online` for online mode, then every varying parameter
    (alpha -> a, beta -> b, beta_max -> bmax)."""
    short = {"alpha": "a", "beta": "b", "beta_max": "bmax"}
    label = name + ("_online" if params.get("mode") == "online" else "")
    for key in sorted(varying):
        if key == "mode":
            continue
        val = params.get(key)
        label += f"_{short.get(key, key)}{val:g}" if isinstance(val, float) else f"_{short.get(key, key)}{val}"
    return label


def run_planners(planners, registry, model, kind: str, split, device, seed: int = 0,
                 exclude_seen: bool = True, budget_mib: float = 256.0, block_size: int | None = None
                 ) -> dict[str, float]:
    """Run every planner (`PlannerRun`: name, params, label) on the model's scores of the test states; return
    `matching/<label>/<metric>` (and `time/matching/<label>_s`). `kind`: the model's score kind (its spec's)."""
    from .evaluate import ScoreSource

    test = split.test
    targets = test.remaining_targets(exclude_seen)
    exclude = test.exclude if exclude_seen else None
    scores = PlanningScores(ScoreSource(model, test, split.n_items, device), kind, exclude, seed, budget_mib,
                            block_size)
    calib = None
    out: dict[str, float] = {}
    for entry in planners:
        planner = registry.create("planner", entry.name, **entry.params)
        cal_scores = None
        if planner.online:
            if calib is None:
                ev = calibration_set(split)
                calib = PlanningScores(ScoreSource(model, ev, split.n_items, device), kind,
                                       ev.exclude if exclude_seen else None, seed + 1, budget_mib, block_size)
            cal_scores = calib
        t0 = time.time()
        plan = planner.plan(scores, cal_scores)
        out[f"time/matching/{entry.label}_s"] = time.time() - t0
        for k, v in matching_metrics(plan.assignment, targets, planner.constraints).items():
            out[f"matching/{entry.label}/{k}"] = v
        for k in PLAN_INFO_METRICS:
            if k in (plan.info or {}):
                out[f"matching/{entry.label}/{k}"] = float(plan.info[k])
    return out
