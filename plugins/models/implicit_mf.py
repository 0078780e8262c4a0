"""Matrix factorisation through the `implicit` library: `als` (Hu, Koren & Volinsky's implicit ALS,
conjugate-gradient solver) and `logistic_mf` (Johnson's logistic MF).

Both train on the user x item count matrix of the training events (`Interactions.csr()`; implicit
>= 0.5 takes users x items) and expose their factors, so the harness ranks them in blocks for
itemrec and userrec. A state's vector is its user's row; users without training events get no
personal vector (ALS: a zero vector, score 0 for every item; LMF: zero personal factors but the
constant that multiplies the item bias, so they are ranked by item bias, as `bpr` does and as
implicit's own LMF does for users without events).

`implicit` is optional (`pip install implicit==0.7.3`, or the `baselines` extra): it is imported in
`fit`, so this module, the registry and `matchbench list` work without it.

Threads: implicit's native code runs `num_threads` OpenMP threads: `ctx.threads`, the executor's share of
the CPU per worker. BLAS is pinned to one thread around fitting: implicit calls BLAS from inside its own
parallel loops, and a multi-threaded OpenBLAS there is many times slower (implicit warns about it).
LMF draws its negatives from one RNG per thread, so its factors are reproducible per seed for a
given thread count; ALS's do not depend on the thread count.

On a GPU (implicit built with CUDA, torch sees a GPU, and the fit context's device is CUDA) ALS uses
implicit's GPU solver; LMF has none in implicit and always runs on the CPU.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness.plugin import ConfigError, FitContext, Model, ModelSpec, Param, hookimpl

INSTALL_HINT = 'pip install implicit==0.7.3 (or pip install -e ".[baselines]")'


def require_implicit(model: str):
    """The `implicit` package, or a ConfigError that says how to install it."""
    try:
        import implicit
        import implicit.als
        import implicit.gpu
        import implicit.lmf
    except ImportError as e:
        raise ConfigError(f"model {model!r} needs the `implicit` library, which is not importable ({e}); "
                          f"install it: {INSTALL_HINT}") from None
    return implicit


def _numpy(m: Any) -> np.ndarray:
    """implicit's factors as a float32 numpy array (GPU models hold implicit.gpu.Matrix objects)."""
    if hasattr(m, "to_numpy"):
        m = m.to_numpy()
    return np.ascontiguousarray(m, dtype=np.float32)


def _threads(ctx: FitContext) -> int:
    return max(1, int(ctx.threads))


class _ImplicitMF(Model):
    """Fit an implicit model on the training counts; factors = (user rows of the states, items)."""

    name = "implicit"

    def _build(self, implicit, ctx: FitContext, threads: int):
        raise NotImplementedError

    def _cold_users(self, U: np.ndarray, cold: np.ndarray) -> None:
        U[cold] = 0.0

    def fit(self, train, loss, ctx):
        implicit = require_implicit(self.name)
        from threadpoolctl import threadpool_limits

        user_items = train.csr()  # users x items event counts, float32, canonical (sorted, summed)
        total = self.iterations

        def callback(iteration, elapsed=None, loss=None, *rest):
            if loss is not None:
                ctx.log_metric("train/loss", float(loss), iteration)
            ctx.progress(iteration + 1, total)

        # construct inside the limit too: implicit checks the BLAS thread count in __init__
        with threadpool_limits(1, "blas"):
            self.model = self._build(implicit, ctx, _threads(ctx))
            self.model.fit(user_items, show_progress=False, callback=callback)
        U, V = _numpy(self.model.user_factors), _numpy(self.model.item_factors)
        cold = train.user_counts == 0
        if cold.any():
            self._cold_users(U, cold)
            if isinstance(self.model.user_factors, np.ndarray):  # keep the wrapped model in step
                self.model.user_factors = U.astype(self.model.user_factors.dtype, copy=True)
        self.U, self.V = torch.from_numpy(U), torch.from_numpy(V)

    def factors(self, states):
        return self.U[torch.as_tensor(states.user, dtype=torch.long)], self.V


class ALS(_ImplicitMF):
    """implicit.als.AlternatingLeastSquares on confidences alpha * counts.

    Its score is the fitted preference (a real number near 0/1, not calibrated)."""

    name = "als"

    def __init__(self, factors=100, regularization=0.01, alpha=1.0, iterations=15, use_native=True, use_cg=True,
                 calculate_training_loss=False):
        self.d, self.regularization, self.alpha, self.iterations = factors, regularization, alpha, iterations
        self.use_native, self.use_cg, self.calculate_training_loss = use_native, use_cg, calculate_training_loss

    def _build(self, implicit, ctx, threads):
        use_gpu = bool(implicit.gpu.HAS_CUDA and torch.cuda.is_available() and ctx.device.type == "cuda")
        self.on_gpu = use_gpu
        # implicit scales the confidences itself: C = alpha * counts (skipped when alpha == 1)
        return implicit.als.AlternatingLeastSquares(
            factors=self.d, regularization=self.regularization, alpha=self.alpha, dtype=np.float32,
            use_native=self.use_native, use_cg=self.use_cg, use_gpu=use_gpu, iterations=self.iterations,
            calculate_training_loss=self.calculate_training_loss, num_threads=threads, random_state=ctx.seed)


class LogisticMF(_ImplicitMF):
    """implicit.lmf.LogisticMatrixFactorization; score = the logit of P(like), user and item biases
    included (implicit stores them as the last two factor columns)."""

    name = "logistic_mf"

    def __init__(self, factors=30, learning_rate=1.0, regularization=0.6, iterations=30, neg_prop=30):
        self.d, self.learning_rate, self.regularization = factors, learning_rate, regularization
        self.iterations, self.neg_prop = iterations, neg_prop

    def _build(self, implicit, ctx, threads):
        self.on_gpu = False
        return implicit.lmf.LogisticMatrixFactorization(
            factors=self.d, learning_rate=self.learning_rate, regularization=self.regularization, dtype=np.float32,
            iterations=self.iterations, neg_prop=self.neg_prop, use_gpu=False, num_threads=threads,
            random_state=ctx.seed)

    def _cold_users(self, U, cold):
        # user row = [personal factors, 1 (times the item bias), user bias]: keep only the constant
        U[cold] = 0.0
        U[cold, -2] = 1.0


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="als", factory=ALS,
        description="implicit's ALS (Hu et al. 2008, CG solver) on confidences alpha*counts; GPU when available",
        params=(
            Param("factors", "int", 100, "number of latent factors", low=1, high=4096),
            Param("regularization", "float", 0.01, "L2 penalty (lambda) on user and item factors", low=0.0),
            Param("alpha", "float", 1.0, "confidence scaling: trains on C = alpha * event counts", low=1e-9),
            Param("iterations", "int", 15, "ALS sweeps (users then items)", low=1),
            Param("use_native", "bool", True, "use implicit's compiled solver (false: its slow numpy reference)"),
            Param("use_cg", "bool", True, "conjugate-gradient solver (false: exact Cholesky per row)"),
            Param("calculate_training_loss", "bool", False,
                  "compute the weighted training loss each sweep (logged as train/loss; costs one pass)"),
        )))
    register(ModelSpec(
        name="logistic_mf", factory=LogisticMF,
        description="implicit's logistic matrix factorisation (Johnson 2014), Adagrad, sampled negatives; CPU",
        params=(
            Param("factors", "int", 30, "number of latent factors (plus a user and an item bias)", low=1, high=4096),
            Param("learning_rate", "float", 1.0, "Adagrad learning rate", low=1e-12),
            Param("regularization", "float", 0.6, "L2 penalty on the factors", low=0.0),
            Param("iterations", "int", 30, "training epochs (users then items)", low=1),
            Param("neg_prop", "int", 30, "negatives sampled per positive of a user / item", low=0),
        )))
