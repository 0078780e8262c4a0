"""ESAM (Chen et al., SIGIR 2020, "Discriminative Domain Adaptation with Non-Displayed Items to Improve Long-Tail
Performance") on UMA²'s funnel two-tower models: ESAM_YTB (`tower: youtube_dnn`) and ESAM_DAT (`tower: dat`, with
DAT's mimic losses kept), UMA²'s Table 1 competitors under SS-AB.

Why: a model trained on displayed items serves the whole catalogue; ESAM adapts the item representations from
the source domain (displayed = exposed items, the click and Space A) to the target domain (recalled but not
displayed, Space B of the same request) with

    L = L_s + λ1·L_DA + λ2·L_DC^c + λ3·L_DC^p

- L_s: the tower model's BCE on its positives and `sampling` negatives (ss_ab by default: A and B, the paper's
  SS-AB);
- L_DA (ESAM eq. 4, attribute correlation alignment): (1/L²)·Σ_{j,k} (h_j^sᵀh_k^s − h_j^tᵀh_k^t)², h_j the j-th
  attribute (column) of the n×L matrix of a batch's source item vectors D^s, likewise D^t for n target items, so
  (1/L²)·‖D^sᵀD^s − D^tᵀD^t‖²_F. Here both Gram matrices are divided by n (the loss by n²), so λ1 does not change
  meaning with the batch size (ESAM's sum grows as n²); the minimiser is the same;
- L_DC^c (ESAM eqs. 6-7, center-wise clustering on the source): per query q (a training request) and label k
  (1 clicked, 0 exposed-not-clicked), the centre c_q^k = mean of the L2-normalised vectors v̂ of q's source items
  of label k; Σ_j max(0, ‖v̂_j − c_q^{y_j}‖² − m1) + Σ_{k<k'} max(0, m2 − ‖c_q^k − c_q^{k'}‖²), the first term
  averaged over the batch's source items and the second over the queries that have both labels (ESAM sums);
- L_DC^p (ESAM eq. 8, self-training on the target): −Σ_j δ(Sc_j < p1 or Sc_j > p2)·Sc_j·log Sc_j with
  Sc_j = σ(s(u, d_j^t) + the base's logit offset) (the BCE's probability), the confident target pairs pushed
  further to 0 or 1, divided by the number of target pairs.

The target batch: per source item of a row, one Space-B item of the row's request (`FunnelRows.draw_stage`, a
request without B borrows one of another request's), redrawn each epoch; so n_s = n_t in L_DA and every target
pair has its query's user for L_DC^p.

Defaults: m1 = 0.2, m2 = 0.9 (the margins of the authors' code, A-bone1/ESAM test/center_loss.py); p1 = 0.2,
p2 = 0.8 (the confidence thresholds of the authors' code, models/item_ranking/NeuMF_cikm.py); λ1 = 0.7, λ2 = 0.3,
λ3 = 0.5: ESAM tunes its λs per dataset and its text was not available to check them here, so these are our
settings, not verified paper values.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from harness.plugin import ConfigError, ModelSpec, Param, hookimpl
from plugins.models.dat import DAT, dat_params
from plugins.models.funnel_towers import FunnelTwoTower, tower_params

SOURCE_CODES = (2, 3)
"""Space codes of displayed items (A: exposed, not clicked; 3: clicked): ESAM's source domain."""
TARGET_STAGE = 1
"""FunnelRows stage of ESAM's target domain: recalled, not exposed (Space B)."""


def correlation_alignment(ds: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """ESAM's L_DA for source / target item vectors [n, L] (same n): (1/L²)‖D^sᵀD^s/n − D^tᵀD^t/n‖²_F."""
    if ds.shape != dt.shape:
        raise ValueError(f"L_DA needs as many source as target items, got {tuple(ds.shape)} and {tuple(dt.shape)}")
    n, dim = ds.shape
    diff = (ds.T @ ds - dt.T @ dt) / max(n, 1)
    return (diff ** 2).sum() / dim ** 2


def center_clustering(vec: torch.Tensor, label: torch.Tensor, query: torch.Tensor, m1: float,
                      m2: float) -> torch.Tensor:
    """ESAM's L_DC^c on source item vectors [n, L] with binary labels [n] and query ids [n] (any integers):
    intra-class hinge to the per-query class centres of the normalised vectors (mean over items) plus the
    inter-class hinge between a query's two centres (mean over queries with both labels)."""
    v = F.normalize(vec, dim=-1)
    _, q = torch.unique(query, return_inverse=True)
    n_q = int(q.max()) + 1 if len(q) else 0
    slot = q * 2 + label.long()
    sums = torch.zeros(2 * n_q, v.shape[1], dtype=v.dtype, device=v.device).index_add_(0, slot, v)
    counts = torch.bincount(slot, minlength=2 * n_q).to(v.dtype)
    centres = sums / counts.clamp_min(1.0)[:, None]
    intra = F.relu(((v - centres[slot]) ** 2).sum(-1) - m1).mean()
    both = (counts.view(n_q, 2) > 0).all(1)
    c = centres.view(n_q, 2, -1)[both]
    inter = F.relu(m2 - ((c[:, 1] - c[:, 0]) ** 2).sum(-1)).mean() if len(c) else vec.sum() * 0.0
    return intra + inter


def confident_mask(prob: torch.Tensor, p1: float, p2: float) -> torch.Tensor:
    """The target pairs ESAM pseudo-labels: Sc < p1 (negative) or Sc > p2 (positive)."""
    return (prob < p1) | (prob > p2)


def self_training(logits: torch.Tensor, p1: float, p2: float) -> torch.Tensor:
    """ESAM's L_DC^p on target pair logits [n]: −Σ_selected Sc·log Sc / n, Sc = σ(logit)."""
    prob = torch.sigmoid(logits)
    sel = confident_mask(prob.detach(), p1, p2)
    ent = -prob * F.logsigmoid(logits)
    return (ent * sel).sum() / max(logits.numel(), 1)


class EsamLosses:
    """ESAM's three terms on top of a funnel two-tower model (mixed in before it, so its own extra_loss, e.g.
    DAT's mimic losses, still adds)."""

    name = "esam"

    def __init__(self, lambda_da: float = 0.7, lambda_dc: float = 0.3, lambda_st: float = 0.5, m1: float = 0.2,
                 m2: float = 0.9, p1: float = 0.2, p2: float = 0.8, **kw):
        super().__init__(**kw)
        if not 0.0 <= p1 <= p2 <= 1.0:
            raise ConfigError(f"esam: thresholds need 0 <= p1 <= p2 <= 1, got p1={p1}, p2={p2}")
        self.lambda_da, self.lambda_dc, self.lambda_st = float(lambda_da), float(lambda_dc), float(lambda_st)
        self.m1, self.m2, self.p1, self.p2 = float(m1), float(m2), float(p1), float(p2)

    def training_pairs(self, train, ctx, rng: np.random.Generator) -> dict:
        """The base's pairs plus `target` [P, 1 + n_neg]: Space-B items of each positive's request."""
        if ctx.funnel is None:
            raise ConfigError("esam needs a funnel split (displayed items = source, recalled-not-displayed items = "
                              "target); use split: funnel")
        data = super().training_pairs(train, ctx, rng)
        req = np.repeat(data["request"], data["items"].shape[1])
        target, _ = ctx.funnel.draw_stage(rng, req, TARGET_STAGE)
        data["target"] = target.reshape(data["items"].shape)
        return data

    def source_layout(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(column order putting each row's displayed items first, mask [B, K] of them), K = the most per row."""
        shown = torch.ones_like(batch["items"], dtype=torch.bool)
        space = batch.get("space")
        if space is not None:
            shown[:, 1:] = (space == SOURCE_CODES[0]) | (space == SOURCE_CODES[1])
        order = torch.argsort((~shown).to(torch.int8), dim=1, stable=True)
        count = shown.sum(1)
        k = int(count.max())
        mask = torch.arange(k, device=count.device)[None, :] < count[:, None]
        return order[:, :k], mask

    def extra_loss(self, batch: dict, scores: torch.Tensor) -> torch.Tensor | float:
        out = super().extra_loss(batch, scores)
        order, mask = self.source_layout(batch)
        src = torch.gather(batch["items"], 1, order)
        tgt = torch.gather(batch["target"], 1, order)
        if self.lambda_da or self.lambda_dc:
            vs = self.item_vec(src[mask])
            if self.lambda_da:
                out = out + self.lambda_da * correlation_alignment(vs, self.item_vec(tgt[mask]))
            if self.lambda_dc:
                label = torch.zeros_like(src)
                label[:, 0] = 1                 # column 0 is the click (always displayed, kept first)
                query = batch["request"][:, None].expand_as(src)
                out = out + self.lambda_dc * center_clustering(vs, label[mask], query[mask], self.m1, self.m2)
        if self.lambda_st:
            # the BCE's logits: the tower score plus the base's trained global offset
            logits = self.score_pairs(batch["user"], batch["seq"], tgt) + self.offset
            out = out + self.lambda_st * self_training(logits[mask], self.p1, self.p2)
        return out


class EsamYTB(EsamLosses, FunnelTwoTower):
    """ESAM_YTB: YouTube DNN as ESAM's source model."""


class EsamDAT(EsamLosses, DAT):
    """ESAM_DAT: DAT (augmented vectors, Adaptive-Mimic losses) as ESAM's source model."""


TOWERS = {"youtube_dnn": EsamYTB, "dat": EsamDAT}


def make_esam(tower: str = "youtube_dnn", sampling: str = "ss_ab", lambda_da: float = 0.7, lambda_dc: float = 0.3,
              lambda_st: float = 0.5, m1: float = 0.2, m2: float = 0.9, p1: float = 0.2, p2: float = 0.8,
              mimic_user: float = 0.5, mimic_item: float = 0.5, **kw):
    """ESAM on the chosen tower (ESAM_YTB or ESAM_DAT; DAT's mimic weights go to DAT only); the rest goes to the
    tower's constructor."""
    if tower not in TOWERS:
        raise ConfigError(f"esam: unknown tower {tower!r}; choose one of {', '.join(TOWERS)}")
    if tower == "dat":
        kw.update(mimic_user=mimic_user, mimic_item=mimic_item)
    return TOWERS[tower](sampling=sampling, lambda_da=lambda_da, lambda_dc=lambda_dc, lambda_st=lambda_st,
                         m1=m1, m2=m2, p1=p1, p2=p2, **kw)


def esam_params() -> tuple[Param, ...]:
    """The tower's parameters (sampling defaulting to ss_ab, the paper's SS-AB) and ESAM's."""
    base = tuple(p for p in tower_params() if p.name != "sampling")
    sampling = next(p for p in tower_params() if p.name == "sampling")
    mimic = tuple(Param(p.name, p.type, p.default, p.help + " (tower dat only)", low=p.low, high=p.high)
                  for p in dat_params())
    return (
        Param("tower", "str", "youtube_dnn", "ESAM's source model: youtube_dnn (ESAM_YTB) or dat (ESAM_DAT)",
              choices=tuple(TOWERS)),
        *base,
        Param("sampling", "str", "ss_ab", sampling.help, choices=sampling.choices),
        Param("lambda_da", "float", 0.7, "λ1: weight of L_DA, attribute correlation alignment", low=0.0),
        Param("lambda_dc", "float", 0.3, "λ2: weight of L_DC^c, center-wise clustering on displayed items", low=0.0),
        Param("lambda_st", "float", 0.5, "λ3: weight of L_DC^p, self-training on Space B", low=0.0),
        Param("m1", "float", 0.2, "intra-class margin of L_DC^c (squared distance to the class centre)", low=0.0),
        Param("m2", "float", 0.9, "inter-class margin of L_DC^c (squared distance between centres)", low=0.0),
        Param("p1", "float", 0.2, "self-training: a target pair with σ(score) < p1 is pseudo-negative",
              low=0.0, high=1.0),
        Param("p2", "float", 0.8, "self-training: a target pair with σ(score) > p2 is pseudo-positive",
              low=0.0, high=1.0),
        *mimic,
    )


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="esam", factory=make_esam, params=esam_params(), tasks=("itemrec", "userrec"), offers=("factors",),
        score_kind="logit", requires=("funnel",),
        description="ESAM (Chen et al. 2020) on a funnel two-tower: BCE on SS-AB negatives + correlation "
                    "alignment of displayed vs recalled-not-displayed items + center-wise clustering + "
                    "self-training on Space B"))
