"""UMA² (Lou et al., SIGIR 2022): a two-tower GMM whose negatives are re-weighted by inverse propensities from
the Negative Samples Debias Network (NSDN), and the paper's SOS ablation. `tower` picks the GMM (youtube_dnn or
dat, the paper's UMA²_YTB / UMA²_DAT); mimic_user / mimic_item are DAT's and only act with tower: dat.

`uma2`, Eq. 2:  loss = loss₊ + λ1·loss_A + λ2·loss_B + λ3·loss_C + λ4·loss_ER + λ5·loss_RE, where loss_A / loss_B /
loss_C are the BCE of each positive's negatives that lie in space A / B / C, weighted 1/(p̂1·p̂2), 1/p̂1 and 1
(Eq. 1 applied to B w.r.t. the entire space, and to A through recall then exposure). Every GMM term is a sum over
its samples divided by the batch's P·(1 + n_neg), so with all weights 1 and λ = 1 the GMM part is exactly the
tower's own mean BCE (the weights re-weigh, they do not rescale the learning rate). Negatives of code 3 (another
click of the request, only under ss_abc_random) were exposed and weigh as A.

NSDN (our choice of "small network"): two auxiliary two-towers, ER for p̂1 and RE for p̂2, each an MLP
`aux_layers` on the GMM's user input (id embedding ⊕ mean history embedding) and an MLP on its item input (id
embedding ⊕ log-clicks, CTR); p̂ = σ(⟨a_u, a_i⟩). The embeddings are shared with the GMM (the paper's end-to-end
multi-task set-up), the MLPs are the tasks' own. Per positive the epoch draws `aux_rows` recalled pairs uniformly
from the training funnel: ER labels them 1 and `aux_neg` Space-C items of the same request per pair 0
("recalled items are positive samples while the items randomly sampled from Space C are negative ones"); RE
labels them exposed (stage ≥ 2) or not (stage 1). loss_ER, loss_RE are their mean BCE. p̂1 is the classifier's
probability as the paper uses it: with `aux_neg` C draws per recalled pair it is not P(recalled) but a monotone
function of it (ranks, hence the Spearman truth metrics, are unaffected; the IPW weights' scale is).

Left open by the paper, parameters here: `stop_gradient` (IPW weights are constants to the GMM loss: no gradient
reaches NSDN through them) and `clip` (the largest weight allowed; null: none). Defaults stop_gradient: true,
clip: 2, chosen on the synthetic funnel (n_users 2000, n_items 2000, funnel: true; split funnel; 3 epochs; whole-
catalogue recall@100, mean of seeds 0, 1): clip null .870 (stop-gradient) / .867 (not), clip 10 .868 / .868,
clip 4 .874, clip 2 .877 / .877, clip 1 (no re-weighting at all) .877; youtube_dnn ss_abc_fixed .880, uma2_sos
.883. On this world, where exposure leans towards the preference, larger weights on A/B negatives cost recall;
stop-gradient is never worse.

`uma2_sos`: NSDN replaced by the Sample Optimization Strategy the paper cites ([5] Fei et al., CIKM 2020). Its
mechanism beyond the abstract ("sample augmentation and sample refinement" against covariate shift) could not be
found, so this is the stated fallback: observed negatives (A, B) and random negatives (C) mixed, the observed ones
weighted by a fixed `observed_weight`, no propensities.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.plugin import DEFAULT_RATIO, ConfigError, ModelSpec, Param, hookimpl
from plugins.models.dat import DAT, dat_params
from plugins.models.funnel_towers import FunnelTwoTower, histories, mlp, tower_params

TOWERS = ("youtube_dnn", "dat")
SPACE_C, SPACE_B, SPACE_A = 0, 1, 2


def ipw_weights(space: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, clip: float | None = None,
                stop_gradient: bool = True) -> torch.Tensor:
    """Eq. 2's per-negative weights: A (and code 3) 1/(p̂1 p̂2), B 1/p̂1, C 1; at most `clip` when set."""
    if stop_gradient:
        p1, p2 = p1.detach(), p2.detach()
    w = torch.where(space >= SPACE_A, 1.0 / (p1 * p2), torch.where(space == SPACE_B, 1.0 / p1, torch.ones_like(p1)))
    return w.clamp(max=float(clip)) if clip is not None else w


def uma2_loss(scores: torch.Tensor, space: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, lambdas=(1, 1, 1),
              clip: float | None = None, stop_gradient: bool = True) -> torch.Tensor:
    """loss₊ + λ1 loss_A + λ2 loss_B + λ3 loss_C of Eq. 2 on scores [P, 1 + n] (positive first), spaces and p̂
    [P, n]; every term divided by P·(1 + n) so unit weights give the plain mean BCE."""
    denom = scores.numel()
    pos = F.binary_cross_entropy_with_logits(scores[:, 0], torch.ones_like(scores[:, 0]), reduction="sum")
    neg = F.binary_cross_entropy_with_logits(scores[:, 1:], torch.zeros_like(scores[:, 1:]), reduction="none")
    w = ipw_weights(space, p1, p2, clip, stop_gradient) * neg
    l1, l2, l3 = lambdas
    parts = (l1 * w[space >= SPACE_A].sum() + l2 * w[space == SPACE_B].sum() + l3 * w[space == SPACE_C].sum())
    return (pos + parts) / denom


class NSDNet(nn.Module):
    """ER and RE auxiliary towers: MLPs on the GMM's user / item inputs, logit = ⟨a_u, a_i⟩."""

    def __init__(self, user_in: int, item_in: int, layers: list[int]):
        super().__init__()
        self.er_user, self.er_item = mlp([user_in] + layers), mlp([item_in] + layers)
        self.re_user, self.re_item = mlp([user_in] + layers), mlp([item_in] + layers)


class FunnelTowerChoice(FunnelTwoTower):
    """A funnel model with a `tower` choice: `tower: dat` makes the instance the DAT-based twin class, so the
    GMM hooks are DAT's and this class's own hooks wrap them through super()."""

    dat_twin: type | None = None

    def __new__(cls, tower: str = "youtube_dnn", *args, **kwargs):
        if tower not in TOWERS:
            raise ConfigError(f"{cls.name}: unknown tower {tower!r}; choose one of {', '.join(TOWERS)}")
        if tower == "dat" and cls.dat_twin is not None and cls is not cls.dat_twin:
            return object.__new__(cls.dat_twin)
        return object.__new__(cls)


class UMA2(FunnelTowerChoice):
    """UMA²: the tower (GMM) trained with Eq. 2, NSDN's p̂1, p̂2 learnt alongside."""

    name = "uma2"

    def __init__(self, tower: str = "youtube_dnn", lambda1: float = 1.0, lambda2: float = 1.0,
                 lambda3: float = 1.0, lambda4: float = 1.0, lambda5: float = 1.0, stop_gradient: bool = True,
                 clip: float | None = 2.0, aux_layers=(64, 32), aux_rows: int = 4, aux_neg: int = 1,
                 emb_dim: int = 32, layers=(512, 256, 128, 32), max_len: int = 20, epochs: int = 5,
                 batch_size: int = 512, lr: float = 1e-3, n_neg: int = 25, sampling: str = "ss_abc_fixed",
                 ratio=DEFAULT_RATIO, mimic_user: float = 0.5, mimic_item: float = 0.5):
        super().__init__(emb_dim=emb_dim, layers=layers, max_len=max_len, epochs=epochs, batch_size=batch_size,
                         lr=lr, n_neg=n_neg, sampling=sampling, ratio=ratio)
        self.tower, self.mimic_user, self.mimic_item = tower, float(mimic_user), float(mimic_item)
        self.lambdas = tuple(float(v) for v in (lambda1, lambda2, lambda3, lambda4, lambda5))
        self.stop_gradient, self.clip = bool(stop_gradient), (None if clip is None else float(clip))
        if self.clip is not None and self.clip < 1.0:
            raise ConfigError(f"uma2: clip={clip} would cap Space C's unit weight; use clip >= 1 or null")
        self.aux_layers, self.aux_rows, self.aux_neg = [int(v) for v in aux_layers], int(aux_rows), int(aux_neg)

    # ------------------------------------------------------------------------------------------ network
    def build(self, n_users: int, n_items: int) -> nn.Module:
        net = super().build(n_users, n_items)
        net.add_module("nsdn", NSDNet(2 * self.emb_dim, self.emb_dim + 2, self.aux_layers))
        return net

    def aux_logits(self, users: torch.Tensor, seq: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor,
                                                                                                  torch.Tensor]:
        """(ER, RE) logits [B, M] of users [B] (histories [B, L]) against items [B, M]."""
        net = self.net
        u = net.user_input(users, seq)
        i = net.item_input(items, self.feats)
        er = (net.nsdn.er_user(u)[:, None, :] * net.nsdn.er_item(i)).sum(-1)
        re = (net.nsdn.re_user(u)[:, None, :] * net.nsdn.re_item(i)).sum(-1)
        return er, re

    def prepare(self, train, ctx) -> None:
        super().prepare(train, ctx)
        if ctx.funnel is None:
            raise ConfigError("uma2 needs a funnel split (recall / exposure / click spaces) for NSDN's tasks")
        f = ctx.funnel
        self.clicks = train
        self.req_seq = torch.as_tensor(histories(train, f.req_user, f.req_time, self.max_len, self.n_items),
                                       device=ctx.device)
        self.req_user = torch.as_tensor(f.req_user, device=ctx.device)

    def training_pairs(self, train, ctx, rng: np.random.Generator) -> dict:
        """The tower's samples plus, per positive, `aux_rows` uniform recalled pairs (request, item, exposed)
        and `aux_neg` Space-C items of the same request for each."""
        data = super().training_pairs(train, ctx, rng)
        f, n, k = ctx.funnel, len(data["user"]), self.aux_rows
        rows = rng.integers(0, len(f), (n, k))
        req = f.request[rows]
        c = f.draw_unrecalled(rng, np.repeat(req.ravel(), self.aux_neg)).reshape(n, k * self.aux_neg)
        data.update(aux_req=req, aux_item=f.item[rows], aux_exposed=(f.stage[rows] >= 2).astype(np.float32),
                    aux_c=c)
        return data

    # ------------------------------------------------------------------------------------------ losses
    def pair_loss(self, batch: dict, scores: torch.Tensor) -> torch.Tensor:
        er, re = self.aux_logits(batch["user"], batch["seq"], batch["items"][:, 1:])
        return uma2_loss(scores, batch["space"], torch.sigmoid(er), torch.sigmoid(re), self.lambdas[:3],
                         self.clip, self.stop_gradient)

    def extra_loss(self, batch: dict, scores: torch.Tensor) -> torch.Tensor | float:
        """The tower's own extra term + λ4 loss_ER + λ5 loss_RE on the batch's auxiliary pairs."""
        req = batch["aux_req"].reshape(-1)
        users, seq = self.req_user[req], self.req_seq[req]
        m = self.aux_neg
        items = torch.cat([batch["aux_item"].reshape(-1, 1), batch["aux_c"].reshape(-1, m)], 1)   # [B·k, 1 + m]
        er, re = self.aux_logits(users, seq, items)
        er_labels = torch.zeros_like(er)
        er_labels[:, 0] = 1.0
        loss_er = F.binary_cross_entropy_with_logits(er, er_labels)
        loss_re = F.binary_cross_entropy_with_logits(re[:, 0], batch["aux_exposed"].reshape(-1))
        return super().extra_loss(batch, scores) + self.lambdas[3] * loss_er + self.lambdas[4] * loss_re

    # ------------------------------------------------------------------------------------------ propensities
    @torch.no_grad()
    def propensities(self, users, times, items) -> tuple[np.ndarray, np.ndarray]:
        """(p̂1, p̂2) per (user at time, item) pair, histories = the training clicks before `time`."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        seq = histories(self.clicks, users, np.asarray(times, dtype=np.float64), self.max_len, self.n_items)
        dev = self.feats.device
        p1, p2 = np.empty(len(users)), np.empty(len(users))
        for s in range(0, len(users), 8192):
            sl = slice(s, s + 8192)
            er, re = self.aux_logits(torch.as_tensor(users[sl], device=dev), torch.as_tensor(seq[sl], device=dev),
                                     torch.as_tensor(items[sl, None], device=dev))
            p1[sl] = torch.sigmoid(er[:, 0]).double().cpu().numpy()
            p2[sl] = torch.sigmoid(re[:, 0]).double().cpu().numpy()
        return p1, p2


class UMA2SOS(FunnelTowerChoice):
    """The SOS ablation (fallback, see the module doc): observed negatives weighted `observed_weight`."""

    name = "uma2_sos"

    def __init__(self, tower: str = "youtube_dnn", observed_weight: float = 0.5, emb_dim: int = 32,
                 layers=(512, 256, 128, 32), max_len: int = 20, epochs: int = 5, batch_size: int = 512,
                 lr: float = 1e-3, n_neg: int = 25, sampling: str = "ss_abc_fixed", ratio=DEFAULT_RATIO,
                 mimic_user: float = 0.5, mimic_item: float = 0.5):
        super().__init__(emb_dim=emb_dim, layers=layers, max_len=max_len, epochs=epochs, batch_size=batch_size,
                         lr=lr, n_neg=n_neg, sampling=sampling, ratio=ratio)
        self.tower, self.observed_weight = tower, float(observed_weight)
        self.mimic_user, self.mimic_item = float(mimic_user), float(mimic_item)

    def pair_loss(self, batch: dict, scores: torch.Tensor) -> torch.Tensor:
        space = batch["space"]
        w = torch.where(space >= SPACE_B, torch.full_like(scores[:, 1:], self.observed_weight),
                        torch.ones_like(scores[:, 1:]))
        one = torch.ones_like(scores[:, :1])
        return uma2_sos_loss(scores, torch.cat([one, w], 1))


def uma2_sos_loss(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ weight·BCE / (P·(1 + n)), column 0 the positive."""
    labels = torch.zeros_like(scores)
    labels[:, 0] = 1.0
    return (weights * F.binary_cross_entropy_with_logits(scores, labels, reduction="none")).sum() / scores.numel()


class UMA2DAT(UMA2, DAT):
    """UMA² with DAT as the GMM (what UMA2(tower='dat') builds)."""


class UMA2SOSDAT(UMA2SOS, DAT):
    """uma2_sos with DAT as the GMM."""


UMA2.dat_twin, UMA2SOS.dat_twin = UMA2DAT, UMA2SOSDAT


def _params(extra: tuple[Param, ...]) -> tuple[Param, ...]:
    base = tuple(dataclasses.replace(p, default="ss_abc_fixed") if p.name == "sampling" else p
                 for p in tower_params())
    mimic = tuple(dataclasses.replace(p, help=p.help + " (tower: dat only)") for p in dat_params())
    return (Param("tower", "str", "youtube_dnn", "the GMM: " + ", ".join(TOWERS), choices=TOWERS),) + extra + base \
        + mimic


UMA2_PARAMS = _params((
    Param("lambda1", "float", 1.0, "weight of loss_A (Space A negatives, IPW 1/(p1 p2))", low=0.0),
    Param("lambda2", "float", 1.0, "weight of loss_B (Space B negatives, IPW 1/p1)", low=0.0),
    Param("lambda3", "float", 1.0, "weight of loss_C (Space C negatives, weight 1)", low=0.0),
    Param("lambda4", "float", 1.0, "weight of loss_ER (auxiliary Entire→Recall task)", low=0.0),
    Param("lambda5", "float", 1.0, "weight of loss_RE (auxiliary Recall→Exposure task)", low=0.0),
    Param("stop_gradient", "bool", True, "IPW weights are constants in the GMM loss (no gradient to NSDN)"),
    Param("clip", "float", 2.0, "largest IPW weight allowed (null: no clipping)", low=1.0, nullable=True),
    Param("aux_layers", "list", [64, 32], "MLP widths of each NSDN tower (last = its vector size)"),
    Param("aux_rows", "int", 4, "recalled pairs per positive drawn each epoch for the ER / RE tasks", low=1),
    Param("aux_neg", "int", 1, "Space-C negatives per recalled pair for the ER task", low=1),
))
SOS_PARAMS = _params((
    Param("observed_weight", "float", 0.5, "fixed weight of the observed negatives (A, B); random (C) weigh 1",
          low=0.0),
))


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="uma2", factory=UMA2, params=UMA2_PARAMS, tasks=("itemrec", "userrec"), offers=("factors",),
        score_kind="logit", requires=("funnel",),
        description="UMA²: two-tower GMM (youtube_dnn / dat) with negatives re-weighted by NSDN's inverse "
                    "propensities (Entire→Recall p1, Recall→Exposure p2), Eq. 2, ss_abc_fixed sampling"))
    register(ModelSpec(
        name="uma2_sos", factory=UMA2SOS, params=SOS_PARAMS, tasks=("itemrec", "userrec"), offers=("factors",),
        score_kind="logit", requires=("funnel",),
        description="UMA² ablation: NSDN replaced by a sample-optimisation mix (observed A/B negatives at a fixed "
                    "weight, random C negatives at 1, no propensities)"))
