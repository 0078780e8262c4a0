"""The two-tower matching models of UMA²'s Table 1, on one training loop: `youtube_dnn` here; DAT, MIND, FM, UMA²
and ESAM build on `FunnelTwoTower` (same inputs, same negatives, same optimiser: the paper's fairness rule).

Inputs. User tower: the user's id embedding (the profile) and the mean of the embeddings of the user's last
`max_len` clicks before the request (the behaviour sequence), through an MLP. Item tower: the item's id embedding
and two item features from the training log — log(1 + clicks) and the item's accumulated CTR (clicks / exposures,
smoothed by one prior exposure at the global CTR), standardised — through an MLP. `layers` = the MLP widths, the
last one the output dimension (the paper: 512-256-128-32, ReLU between layers); s(u, i) = ⟨V_u, V_i⟩; binary
cross-entropy on each positive and its `n_neg` negatives (every sample weighs the same) of s plus one trained
global offset (the logit of the base rate; it does not change a ranking); Adam, lr 1e-3, batch 512 (the paper's).

Training pairs. On a funnel split (`ctx.funnel`): the positives are the training clicks, each at its request's
time, and the negatives are drawn each epoch by `sampling` from the request's spaces (`harness.plugin.
draw_negatives`: ss_a, ss_ab, ss_abc_random, ss_abc_fixed with `ratio`). On any other split: the positives are
the training events and the negatives uniform over the catalogue (ss_abc_random is the only meaningful strategy
there; another one is refused).

Subclasses change `score_pairs` (the scores of a batch's users against [B, M] items) and `extra_loss`, and
serving (`factors`, or `score_block` for a model without one vector per user).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.plugin import (
    DEFAULT_RATIO,
    SAMPLING,
    ConfigError,
    Model,
    ModelSpec,
    Param,
    draw_negatives,
    hookimpl,
    padded_sequences,
)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of `sizes` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for j, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if j < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def histories(clicks, users: np.ndarray, times: np.ndarray, max_len: int, pad: int) -> np.ndarray:
    """[n, max_len] the items of each (users[r], times[r])'s last `max_len` clicks with time < times[r], most
    recent first, `pad` after the end: one searchsorted over an exact (user, time-rank) key."""
    order = clicks.order
    su, st, si = clicks.user[order], clicks.time[order], clicks.item[order]
    grid = np.unique(np.concatenate([st, times]))
    width = np.int64(len(grid) + 1)
    key = su.astype(np.int64) * width + np.searchsorted(grid, st)
    q = np.asarray(users, dtype=np.int64) * width
    hi = np.searchsorted(key, q + np.searchsorted(grid, times), side="left")
    lo = np.maximum(np.searchsorted(key, q, side="left"), hi - max_len)
    ptr = np.concatenate([[0], np.cumsum(hi - lo)])
    idx = np.repeat(lo - ptr[:-1], hi - lo) + np.arange(ptr[-1])
    return padded_sequences(ptr, si[idx], max_len, pad)


def item_features(train, funnel) -> np.ndarray:
    """[n_items, 2]: log(1 + training clicks) and the smoothed accumulated CTR (clicks / exposures with one prior
    exposure at the global CTR; without a funnel, exposures are unknown and the CTR column is 0)."""
    clicks = np.bincount(train.item, minlength=train.n_items).astype(np.float64)
    ctr = np.zeros(train.n_items)
    if funnel is not None:
        exposed = np.bincount(funnel.item[funnel.stage >= 2], minlength=train.n_items).astype(np.float64)
        prior = clicks.sum() / max(exposed.sum(), 1.0)
        ctr = (clicks + prior) / (exposed + 1.0)
    return np.stack([np.log1p(clicks), ctr], 1).astype(np.float32)


def standardised(feats: np.ndarray) -> np.ndarray:
    """Columns to mean 0, standard deviation 1 (a constant column to 0): raw log-counts of several units would
    dominate the first steps, when BCE with many negatives pushes every score down along the largest input."""
    sd = feats.std(axis=0)
    return ((feats - feats.mean(axis=0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


class Towers(nn.Module):
    """YouTube DNN's towers: user = MLP[user emb ⊕ mean(history item embs)], item = MLP[item emb ⊕ features]."""

    def __init__(self, n_users: int, n_items: int, emb_dim: int, layers: list[int], n_feats: int,
                 user_extra: int = 0, item_extra: int = 0):
        super().__init__()
        self.n_items = n_items
        self.user_emb = nn.Embedding(n_users, emb_dim)
        self.item_emb = nn.Embedding(n_items + 1, emb_dim, padding_idx=n_items)   # n_items = padding
        for e in (self.user_emb, self.item_emb):
            nn.init.normal_(e.weight, std=0.05)
        self.user_mlp = mlp([2 * emb_dim + user_extra] + list(layers))
        self.item_mlp = mlp([emb_dim + n_feats + item_extra] + list(layers))

    def user_input(self, users: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        mask = (seq != self.n_items).float()
        hist = (self.item_emb(seq) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)
        return torch.cat([self.user_emb(users), hist], 1)

    def item_input(self, items: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.item_emb(items), feats[items]], -1)


class FunnelTwoTower(Model):
    """YouTube DNN (Covington et al. 2016) as UMA²'s GMM: the towers above, s = ⟨V_u, V_i⟩, BCE."""

    name = "youtube_dnn"

    def __init__(self, emb_dim: int = 32, layers=(512, 256, 128, 32), max_len: int = 20, epochs: int = 5,
                 batch_size: int = 512, lr: float = 1e-3, n_neg: int = 25, sampling: str = "ss_abc_random",
                 ratio=DEFAULT_RATIO):
        if sampling not in SAMPLING:
            raise ConfigError(f"{self.name}: unknown sampling {sampling!r}; choose one of {', '.join(SAMPLING)}")
        self.emb_dim, self.layers, self.max_len = int(emb_dim), [int(v) for v in layers], int(max_len)
        self.epochs, self.batch_size, self.lr, self.n_neg = int(epochs), int(batch_size), float(lr), int(n_neg)
        self.sampling, self.ratio = sampling, tuple(ratio)

    # ------------------------------------------------------------------------------------------ the network
    def build(self, n_users: int, n_items: int) -> nn.Module:
        return Towers(n_users, n_items, self.emb_dim, self.layers, 2)

    def user_vec(self, users: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        return self.net.user_mlp(self.net.user_input(users, seq))

    def item_vec(self, items: torch.Tensor) -> torch.Tensor:
        return self.net.item_mlp(self.net.item_input(items, self.feats))

    def score_pairs(self, users: torch.Tensor, seq: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores [B, M] of the batch's users (ids [B], histories [B, L]) against items [B, M]."""
        return (self.user_vec(users, seq)[:, None, :] * self.item_vec(items)).sum(-1)

    def extra_loss(self, batch: dict, scores: torch.Tensor) -> torch.Tensor | float:
        """A subclass's additional training term on a batch (0 here)."""
        return 0.0

    def pair_loss(self, batch: dict, scores: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of column 0 (the positive) and the negatives, every sample weighted alike."""
        labels = torch.zeros_like(scores)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(scores, labels)

    # ------------------------------------------------------------------------------------------ training data
    def training_pairs(self, train, ctx, rng: np.random.Generator) -> dict:
        """One epoch's samples: users, request times, items [P, 1 + n_neg] (the positive first), spaces
        [P, n_neg] (harness.funnel's codes; None off the funnel), and the funnel's positive rows."""
        funnel = ctx.funnel
        if funnel is None:
            if self.sampling != "ss_abc_random":
                raise ConfigError(f"{self.name}: sampling {self.sampling!r} needs a funnel split (recall / exposure "
                                  "/ click spaces); off the funnel use sampling: ss_abc_random")
            neg = rng.integers(0, train.n_items - 1, (len(train), self.n_neg))
            neg += neg >= train.item[:, None]
            return {"user": train.user, "time": train.time, "items": np.concatenate([train.item[:, None], neg], 1),
                    "space": None, "positive": None}
        draw = draw_negatives(funnel, self.sampling, self.n_neg, rng, self.ratio)
        req = funnel.request[draw.positive]
        return {"user": funnel.req_user[req], "time": funnel.req_time[req],
                "items": np.concatenate([funnel.item[draw.positive][:, None], draw.item], 1),
                "space": draw.space, "positive": draw.positive, "request": req}

    # ------------------------------------------------------------------------------------------ fit / serve
    def fit(self, train, loss, ctx):
        if len(train) == 0:
            raise ConfigError(f"model {self.name!r}: the training data is empty; move the split's cut later")
        torch.manual_seed(ctx.seed)
        rng = ctx.generator()
        dev = ctx.device
        self.n_items = train.n_items
        self.net = self.build(train.n_users, train.n_items).to(dev)
        self.feats = torch.as_tensor(standardised(item_features(train, ctx.funnel)), device=dev)
        self.feats = torch.cat([self.feats, torch.zeros(1, self.feats.shape[1], device=dev)])   # padding row
        self.prepare(train, ctx)
        # a global logit offset, trained, starting at the base rate 1/(1 + n_neg): ranking ignores it, but without
        # it BCE first spends the towers on pushing every score down (the dot product has no bias of its own)
        self.offset = torch.tensor(-float(np.log(self.n_neg)), device=dev, requires_grad=True)
        opt = torch.optim.Adam(list(self.net.parameters()) + [self.offset], lr=self.lr)
        self.net.train()
        self.n_pairs_seen = 0
        for epoch in range(self.epochs):
            data = self.training_pairs(train, ctx, rng)
            seq = histories(train, data["user"], data["time"], self.max_len, self.n_items)
            perm = rng.permutation(len(data["user"]))
            tot = 0.0
            for s in range(0, len(perm), self.batch_size):
                b = perm[s:s + self.batch_size]
                batch = {k: (torch.as_tensor(v[b], device=dev) if isinstance(v, np.ndarray) else v)
                         for k, v in data.items()}
                batch["seq"] = torch.as_tensor(seq[b], device=dev)
                scores = self.score_pairs(batch["user"], batch["seq"], batch["items"]) + self.offset
                out = self.pair_loss(batch, scores) + self.extra_loss(batch, scores)
                opt.zero_grad(set_to_none=True)
                out.backward()
                opt.step()
                tot += float(out.detach()) * len(b)
            self.n_pairs_seen += len(perm) * (1 + self.n_neg)
            ctx.log_metric("train/loss", tot / max(len(perm), 1), epoch)
            ctx.progress(epoch + 1, self.epochs)
        self.net.eval()

    def prepare(self, train, ctx) -> None:
        """A subclass's set-up after the network is built and before training (nothing here)."""

    def state_inputs(self, states) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.feats.device
        seq = padded_sequences(states.hist_ptr, states.hist_item, self.max_len, self.n_items)
        return (torch.as_tensor(np.asarray(states.user, dtype=np.int64), device=dev),
                torch.as_tensor(seq, device=dev))

    @torch.no_grad()
    def factors(self, states):
        users, seq = self.state_inputs(states)
        u = torch.cat([self.user_vec(users[s:s + 8192], seq[s:s + 8192]) for s in range(0, len(users), 8192)]) \
            if len(users) else torch.zeros(0, self.layers[-1], device=seq.device)
        return u, self.item_vec(torch.arange(self.n_items, device=seq.device))


def tower_params() -> tuple[Param, ...]:
    """The parameters every funnel two-tower model shares (the paper's defaults)."""
    return (
        Param("emb_dim", "int", 32, "embedding size of user and item ids", low=1),
        Param("layers", "list", [512, 256, 128, 32], "MLP widths per tower; the last is V_u, V_i's dimension"),
        Param("max_len", "int", 20, "behaviour sequence: the last max_len clicks before the request", low=1),
        Param("epochs", "int", 5, "passes over the training positives (negatives redrawn each)", low=1),
        Param("batch_size", "int", 512, "positives per batch", low=1),
        Param("lr", "float", 1e-3, "Adam learning rate", low=0.0),
        Param("n_neg", "int", 25, "negatives per positive, the same for every strategy", low=1),
        Param("sampling", "str", "ss_abc_random", "negative sampling: " + ", ".join(SAMPLING), choices=SAMPLING),
        Param("ratio", "list", list(DEFAULT_RATIO), "A:B:C ratio of ss_abc_fixed (ss_ab uses A:B)"),
    )


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="youtube_dnn", factory=FunnelTwoTower, params=tower_params(), tasks=("itemrec", "userrec"),
        offers=("factors",), score_kind="logit",
        description="YouTube DNN two-tower (UMA²'s GMM): profile + behaviour MLP vs item id + features MLP, "
                    "dot product, BCE with `sampling` negatives from the funnel's spaces"))
