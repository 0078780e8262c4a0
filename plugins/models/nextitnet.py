"""`nextitnet`: Yuan et al., WSDM 2019, "A Simple Convolutional Generative Network for Next Item Recommendation".

Item embeddings (size `factors`) pass through `blocks` repetitions of residual blocks, one per entry d of
`dilations`; each block is the paper's block (b): a dilated causal 1-D convolution (kernel `kernel`, dilation d),
layer norm, ReLU, a second one with dilation 2d, layer norm, ReLU, plus the block's input (the authors' code doubles
the dilation inside a block, so dilations (1, 4) give convolutions of dilation 1, 2, 4, 8 — the paper's
{1, 2, 4, 8}). Causal: the output at position t reads positions ≤ t only (left zero padding of (kernel − 1)·dilation),
so one pass trains next-item prediction at every position; the receptive field is 1 + (kernel − 1)·Σ dilations.
Output: p(y | x) = softmax(w_y·h_t + b_y) with separate output item vectors and biases (the authors' softmax
layer), full-softmax cross-entropy at every position, Adam.

Training sequences: each user's time-ordered training sequence [BOS, i_1, ..., i_n] cut into windows of `max_len`
inputs (`windows` of plugins/models/sequence.py): a window ends every `stride` targets and trains only its last
`stride` positions, so each target is predicted from at least max_len − stride earlier items (stride = max_len or
null: disjoint windows with a loss at every position, as the paper trains). `dropout` (not in the paper) drops input
embeddings and each residual block's branch while training. With a validation set, the best epoch by validation
NDCG@10 is kept and training stops after `patience` epochs without a better one (as `rnn` / `sasrec`).

Defaults chosen by experiment on ML-100K leave-one-out validation NDCG@10 (seed 0, one thread, loaded machine; the
test set was not looked at): the paper's disjoint windows at lr 1e-3 without dropout peaked at 0.0558 (best epoch
13 of 20) and then overfit; stride 25 alone 0.0568 (epoch 6, then overfit), with lr 3e-3 0.0626 (epoch 3), with 5
blocks instead of 2 (RecBole's depth, 2.5x the epoch) 0.0571; with dropout 0.2 0.0786 (epoch 18);
**dropout 0.3 at lr 3e-3, stride 25: 0.0885** (epoch 16, stopped at 22 by patience 5; ~7.6 CPU s per epoch
under load, vs ~4 for the paper's windows). Hence stride 25, lr 3e-3, dropout 0.3, blocks 2, up to 40 epochs.
Those runs used patience 5 to save time; the default stays 10: validation NDCG@10 on ML-100K's 943 users moves by
~0.003 between epochs, and with patience 5 one seed stopped at its epoch 14 (best 8).

Scores log p(y | x) from the output at the last position of x's last `max_len` items (a BOS token first when they
fit; an empty history reads BOS alone): factors [h, 1, −logsumexp_y(w_y·h + b_y)]·[w_y, b_y, 1].
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.plugin import DataError, Model, ModelSpec, Param, UserStates, hookimpl, validation_ndcg

from .sequence import state_inputs, windows


class CausalConv(nn.Module):
    """1-D convolution over [B, L, d] whose output at t reads inputs t − (kernel − 1)·dilation, ..., t only."""

    def __init__(self, d: int, kernel: int, dilation: int):
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(d, d, kernel, dilation=dilation)

    def forward(self, x):
        return self.conv(F.pad(x.transpose(1, 2), (self.pad, 0))).transpose(1, 2)


class ResidualBlock(nn.Module):
    """The paper's residual block (b): x + dropout(ReLU(LN(conv_2d(ReLU(LN(conv_d(x)))))))."""

    def __init__(self, d: int, kernel: int, dilation: int, dropout: float = 0.0):
        super().__init__()
        self.conv1, self.conv2 = CausalConv(d, kernel, dilation), CausalConv(d, kernel, 2 * dilation)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return x + self.drop(F.relu(self.ln2(self.conv2(F.relu(self.ln1(self.conv1(x)))))))


class NextItNetEncoder(nn.Module):
    """Token embeddings (0 = padding, n_items + 1 = BOS) → dropout → the stack of residual blocks;
    [B, L] → [B, L, d]."""

    def __init__(self, n_tokens: int, d: int, dilations, kernel: int, blocks: int, dropout: float = 0.0):
        super().__init__()
        self.emb = nn.Embedding(n_tokens, d, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[ResidualBlock(d, kernel, int(r), dropout) for _ in range(blocks)
                                      for r in dilations])
        self.receptive_field = 1 + (kernel - 1) * blocks * sum(3 * int(r) for r in dilations)

    def forward(self, tok):
        return self.blocks(self.drop(self.emb(tok)))


class NextItNet(Model):
    """NextItNet: stacked dilated causal residual convolutions, next-item softmax at every position."""

    def __init__(self, *, factors=64, dilations=(1, 4), kernel=3, blocks=2, max_len=50, stride=25, lr=3e-3,
                 epochs=40, batch_size=64, weight_decay=0.0, dropout=0.3, patience=10, block=2048):
        if not dilations or any(int(r) < 1 for r in dilations):
            raise ValueError(f"dilations must be positive integers, got {dilations!r}")
        self.d, self.dilations, self.kernel, self.blocks = factors, tuple(int(r) for r in dilations), kernel, blocks
        self.max_len, self.stride, self.lr, self.epochs = max_len, stride, lr, epochs
        self.batch_size, self.weight_decay, self.patience, self.block = batch_size, weight_decay, patience, block
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)

    def _build(self, n_items: int):
        self.n_items, self.bos = n_items, n_items + 1
        self.encoder = NextItNetEncoder(n_items + 2, self.d, self.dilations, self.kernel, self.blocks, self.dropout)
        self.W = nn.Parameter(torch.randn(n_items, self.d) * self.d ** -0.5)
        self.b = nn.Parameter(torch.zeros(n_items))

    def _params(self):
        return list(self.encoder.parameters()) + [self.W, self.b]

    def fit(self, train, loss, ctx):
        if len(train) == 0:
            raise DataError("nextitnet: no training events")
        torch.manual_seed(ctx.seed)
        gen = torch.Generator().manual_seed(ctx.seed)
        self._build(train.n_items)
        order = train.order
        ptr = np.concatenate([[0], np.cumsum(np.bincount(train.user[order], minlength=train.n_users))])
        inp, tgt = windows(ptr.astype(np.int64), train.item[order], self.max_len, self.bos, self.stride)
        lengths = (inp > 0).sum(1)
        opt = torch.optim.Adam(self._params(), lr=self.lr, weight_decay=self.weight_decay)
        valid = None if self.patience is None else ctx.valid
        self.epoch_times, self.best_epoch = [], None
        best, best_state, since = -1.0, None, 0
        for epoch in range(self.epochs):
            t0 = time.perf_counter()
            self.encoder.train()
            perm = torch.randperm(len(inp), generator=gen)
            total, count = 0.0, 0
            for lo in range(0, len(inp), self.batch_size):
                sel = perm[lo:lo + self.batch_size]
                L = int(lengths[sel].max())                   # right padding: causal outputs never read it
                h, y = self.encoder(inp[sel, :L]), tgt[sel, :L]
                m = y >= 0
                out = F.cross_entropy(h[m] @ self.W.T + self.b, y[m], reduction="sum")
                opt.zero_grad(set_to_none=True)
                (out / int(m.sum())).backward()
                opt.step()
                total, count = total + float(out.detach()), count + int(m.sum())
            self.epoch_times.append(time.perf_counter() - t0)
            ctx.log_metric("train/loss", total / max(count, 1), epoch)
            ctx.log_metric("time/epoch_s", self.epoch_times[-1], epoch)
            ctx.progress(epoch + 1, self.epochs)
            if valid is not None:
                score = self.valid_ndcg(valid)
                ctx.log_metric("valid/ndcg_10", score, epoch)
                if score > best:
                    best, since, self.best_epoch = score, 0, epoch
                    best_state = [p.detach().clone() for p in self._params()]
                else:
                    since += 1
                    if since >= self.patience:
                        break
        if best_state is not None:
            with torch.no_grad():
                for p, v in zip(self._params(), best_state, strict=True):
                    p.copy_(v)
            ctx.log_metric("train/best_epoch", float(self.best_epoch), 0)
        self.encoder.eval()

    @torch.no_grad()
    def represent(self, states: UserStates) -> torch.Tensor:
        """h(x) [n, d]: the output at the last position of each state's last max_len tokens, in blocks."""
        was = self.encoder.training
        self.encoder.eval()
        hs = []
        for lo in range(0, len(states), self.block):
            tok, n_tok = state_inputs(states, np.arange(lo, min(lo + self.block, len(states))), self.max_len,
                                      self.bos)
            out = self.encoder(tok[:, :max(int(n_tok.max()), 1)])
            hs.append(out[torch.arange(len(tok)), n_tok - 1])
        self.encoder.train(was)
        return torch.cat(hs) if hs else torch.zeros(0, self.d)

    def factors(self, states):
        with torch.no_grad():
            h = self.represent(states)
            lse = torch.logsumexp(h @ self.W.T + self.b, dim=1) if len(h) else torch.zeros(0)
            return (torch.cat([h, torch.ones(len(h), 1), -lse[:, None]], 1),
                    torch.cat([self.W.detach(), self.b.detach()[:, None], torch.ones(self.n_items, 1)], 1))

    def valid_ndcg(self, valid, k: int = 10) -> float:
        """NDCG@k on a validation EvalSet, as the harness evaluates itemrec."""
        u, v = self.factors(valid.states)
        return validation_ndcg(valid, lambda rows: u[torch.as_tensor(rows)] @ v.T, self.n_items, k)


PARAMS = (
    Param("factors", "int", 64, "item embedding size = convolution channels", low=1, high=4096),
    Param("dilations", "list", [1, 4], "first dilation of each residual block (its second convolution has twice "
          "it): [1, 4] gives convolutions of dilation 1, 2, 4, 8"),
    Param("kernel", "int", 3, "convolution kernel size", low=2, high=64),
    Param("blocks", "int", 2, "repetitions of the dilation stack", low=1, high=64),
    Param("max_len", "int", 50, "history items read (training windows have this length)", low=1, high=4096),
    Param("stride", "int", 25, "training windows end every `stride` targets and train only those, so each target "
          "sees at least max_len − stride earlier items (null: max_len, disjoint windows with a loss at every "
          "position, as the paper)", low=1, nullable=True),
    Param("lr", "float", 3e-3, "Adam learning rate", low=0.0, high=10.0),
    Param("epochs", "int", 40, "passes over the training windows (the most, with early stopping)", low=1),
    Param("batch_size", "int", 64, "training windows per step", low=1),
    Param("weight_decay", "float", 0.0, "Adam weight decay", low=0.0),
    Param("dropout", "float", 0.3, "dropout on the input embeddings and on each residual block's branch (training "
          "only)", low=0.0, high=0.99),
    Param("patience", "int", 10, "early stopping: stop after this many epochs without a better validation NDCG@10 "
          "and keep the best epoch (splits with a validation set only; null: train all epochs)", low=1,
          nullable=True),
)


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="nextitnet", factory=NextItNet, params=PARAMS,
        description="NextItNet (Yuan et al. 2019): dilated causal residual convolutions over the item sequence, "
                    "next-item softmax; scores log p(y|x)"))
