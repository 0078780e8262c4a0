"""BPR matrix factorisation in torch, with negatives sampled on both sides.

For each positive pair (u, i) it draws a negative item j ~ (count(j)+1)^0.5 and a negative user
v ~ (count(v)+1)^0.5 and averages the loss of (u,i) vs (u,j) and of (u,i) vs (v,i), as in the
RIM paper's appendix B — so one model ranks items for users and users for items. Scores are
p_u·q_i + b_i + c_u, exposed as factors [p, 1, c]·[q, b, 1].
"""
from __future__ import annotations

import torch

from harness.plugin import Model, ModelSpec, Param, hookimpl


class BPR(Model):

    def __init__(self, factors=64, epochs=10, lr=0.015, batch_size=4096, reg=0.01, neg_power=0.5,
                 sample_users=True):
        self.d, self.epochs, self.lr, self.batch_size = factors, epochs, lr, batch_size
        self.reg, self.neg_power, self.sample_users = reg, neg_power, sample_users

    def fit(self, train, loss, ctx):
        gen = torch.Generator().manual_seed(ctx.seed)
        csr = train.csr()
        coo = csr.tocoo()
        users = torch.as_tensor(coo.row, dtype=torch.long)
        items = torch.as_tensor(coo.col, dtype=torch.long)
        n_u, n_i, d = train.n_users, train.n_items, self.d
        p_item = torch.as_tensor((train.item_counts + 1.0) ** self.neg_power, dtype=torch.float)
        p_user = torch.as_tensor((train.user_counts + 1.0) ** self.neg_power, dtype=torch.float)
        P = (torch.randn(n_u, d, generator=gen) * 0.1).requires_grad_()
        Q = (torch.randn(n_i, d, generator=gen) * 0.1).requires_grad_()
        b = torch.zeros(n_i, requires_grad=True)
        c = torch.zeros(n_u, requires_grad=True)
        opt = torch.optim.Adam([P, Q, b, c], lr=self.lr)
        n = len(users)
        for epoch in range(self.epochs):
            perm = torch.randperm(n, generator=gen)
            neg_i = torch.multinomial(p_item, n, replacement=True, generator=gen)
            neg_u = torch.multinomial(p_user, n, replacement=True, generator=gen) if self.sample_users else None
            total = 0.0
            for start in range(0, n, self.batch_size):
                sel = perm[start:start + self.batch_size]
                m = len(sel)
                u, i = users[sel], items[sel]
                # one gather per table (index_select's backward is a fast index_add_)
                uu = torch.cat([u, neg_u[start:start + m]]) if neg_u is not None else u
                ii = torch.cat([i, neg_i[start:start + m]])
                pu, qi = P.index_select(0, uu), Q.index_select(0, ii)
                cu, bi = c.index_select(0, uu), b.index_select(0, ii)
                pos = (pu[:m] * qi[:m]).sum(1) + bi[:m] + cu[:m]
                out = loss(pos, (pu[:m] * qi[m:]).sum(1) + bi[m:] + cu[:m])
                if neg_u is not None:
                    out = 0.5 * (out + loss(pos, (pu[m:] * qi[:m]).sum(1) + bi[:m] + cu[m:]))
                obj = out + self.reg * (pu.square().sum() + qi.square().sum()) / m
                opt.zero_grad(set_to_none=True)
                obj.backward()
                opt.step()
                total += float(out.detach()) * m
            ctx.log_metric("train/loss", total / n, epoch)
            ctx.progress(epoch + 1, self.epochs)
        seen_u = torch.as_tensor(train.user_counts > 0)
        with torch.no_grad():
            # users without training events get no personal vector: they are ranked by item bias alone
            self.P = torch.where(seen_u[:, None], P, torch.zeros_like(P)).detach()
            self.c = torch.where(seen_u, c, torch.zeros_like(c)).detach()
            self.Q, self.b = Q.detach(), b.detach()

    def factors(self, states):
        u = torch.as_tensor(states.user, dtype=torch.long)
        ones_u = torch.ones(len(u), 1)
        ones_i = torch.ones(self.Q.shape[0], 1)
        return (torch.cat([self.P[u], ones_u, self.c[u][:, None]], 1),
                torch.cat([self.Q, self.b[:, None], ones_i], 1))


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="bpr", factory=BPR, contracts=("pairwise", "pointwise"), default_loss="bpr",
        description="BPR-MF in torch; negatives sampled on both sides with p ~ (count+1)^0.5 (RIM appendix B)",
        params=(
            Param("factors", "int", 64, "embedding dimension", low=1, high=4096),
            Param("epochs", "int", 10, "passes over the training pairs", low=1),
            Param("lr", "float", 0.015, "Adam learning rate", low=0.0, high=10.0),
            Param("batch_size", "int", 4096, "positive pairs per step", low=1),
            Param("reg", "float", 0.01, "L2 penalty on the embeddings in a batch", low=0.0),
            Param("neg_power", "float", 0.5, "negatives drawn with p ~ (count+1)^neg_power", low=0.0, high=2.0),
            Param("sample_users", "bool", True, "also contrast against sampled negative users (both sides)"),
        )))
