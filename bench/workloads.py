"""Workload definitions, synthetic data and FLOP counts for the fastbp benchmarks.

Imported by both the orchestrator (``run.py``) and the per-cell subprocess
(``cell.py``); it needs NumPy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DATA_SEED = 12345      # teacher network + inputs
INIT_SEED = 0          # initial weights (shared by fastbp, torch and numpy)
LR = 0.01
MOMENTUM = 0.9


@dataclass(frozen=True)
class Workload:
    name: str
    sizes: tuple            # layer sizes, input first
    activation: str         # hidden activation: "relu" | "tanh"
    loss: str               # "cross_entropy" (softmax output) | "mse" (identity output)
    batch_size: int
    n_samples: int          # samples per epoch in a full run
    n_samples_quick: int    # samples per epoch with --quick
    description: str = field(default="", compare=False)
    dropout: float = 0.0    # inverted dropout on every hidden layer's output (training)
    batch_norm: bool = False  # batch norm between every hidden product and its activation
    base: str | None = None  # variant of this workload: same data, initial weights, shapes

    @property
    def data_id(self) -> int:
        """Seeds the data and the initial weights: a variant shares its base's."""
        return int((self.base or self.name)[1:])

    @property
    def gemm_workload(self) -> str:
        """The workload whose GEMM-only bound this one has (dropout and batch norm add no
        matrix products, so a variant has its base's)."""
        return self.base or self.name

    @property
    def regularized(self) -> bool:
        return bool(self.dropout) or self.batch_norm

    def unsupported(self, system: str):
        """Why ``system`` cannot run this workload in the harness, or None."""
        if not self.regularized:
            return None
        if system == "sklearn":
            return "scikit-learn's MLP has neither dropout nor batch normalization"
        if system == "numpy":
            return "the NumPy BP baseline has neither dropout nor batch normalization"
        return None

    @property
    def output(self) -> str:
        return "softmax" if self.loss == "cross_entropy" else "identity"

    @property
    def shapes(self):
        return list(zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def n_weights(self) -> int:
        """P: number of weight-matrix entries (biases not counted)."""
        return sum(a * b for a, b in self.shapes)

    @property
    def n_params(self) -> int:
        return self.n_weights + sum(self.sizes[1:])

    @property
    def flops_per_sample(self) -> int:
        """Training FLOPs per sample: 6*P minus 2*(first layer weights).

        Forward z@W is 2*n_in*n_out per sample, backward dW = z^T g another 2,
        dz = g W^T another 2 -- except for the first layer, whose input gradient
        is not needed. Dropout and batch normalization add no products (their
        elementwise work is not counted), so a variant has its base's figure.
        """
        a, b = self.shapes[0]
        return 6 * self.n_weights - 2 * a * b

    @property
    def inference_flops_per_sample(self) -> int:
        return 2 * self.n_weights

    def samples(self, quick: bool) -> int:
        n = self.n_samples_quick if quick else self.n_samples
        return n


WORKLOADS = {
    w.name: w
    for w in [
        Workload("W1", (784, 512, 512, 10), "relu", "cross_entropy", 128,
                 n_samples=16384, n_samples_quick=4096,
                 description="784-512-512-10 ReLU, softmax-CE, batch 128 (MNIST-sized MLP)"),
        Workload("W2", (64, 64, 10), "tanh", "cross_entropy", 32,
                 n_samples=65536, n_samples_quick=16384,
                 description="64-64-10 tanh, CE, batch 32 (tiny: per-step overhead dominates)"),
        Workload("W3", (1024, 2048, 2048, 1024), "relu", "mse", 256,
                 n_samples=4096, n_samples_quick=1024,
                 description="1024-2048-2048-1024 ReLU, MSE, batch 256 (GEMM-bound)"),
        Workload("W4", (128,) + (128,) * 16 + (10,), "tanh", "cross_entropy", 64,
                 n_samples=16384, n_samples_quick=4096,
                 description="128, 16 x 128 tanh, 10, CE, batch 64 (deep and narrow)"),
        Workload("W1D", (784, 512, 512, 10), "relu", "cross_entropy", 128,
                 n_samples=16384, n_samples_quick=4096, dropout=0.2, base="W1",
                 description="W1 with dropout 0.2 after both hidden ReLUs (training mode)"),
        Workload("W1B", (784, 512, 512, 10), "relu", "cross_entropy", 128,
                 n_samples=16384, n_samples_quick=4096, batch_norm=True, base="W1",
                 description="W1 with batch norm between both hidden products and ReLUs"),
    ]
}

INFERENCE_WORKLOADS = ("W1", "W3")


def make_data(w: Workload, n: int):
    """X ~ N(0,1) float32; targets from a fixed random teacher network.

    The teacher is a one-hidden-layer tanh network (n_in -> 64 -> n_out) with
    N(0, 1/fan_in) weights.  Classification: int64 labels = argmax of the
    teacher's outputs.  Regression: float32 targets = teacher outputs (std ~0.5).
    Deterministic: the same (workload, n) always gives the same arrays; a variant
    (W1D, W1B) gets exactly its base's (W1's).
    """
    rng = np.random.default_rng([DATA_SEED, w.data_id])
    n_in, n_out = w.sizes[0], w.sizes[-1]
    X = rng.standard_normal((n, n_in), dtype=np.float32)
    t1 = rng.standard_normal((n_in, 64)) / np.sqrt(n_in)
    t2 = rng.standard_normal((64, n_out)) / np.sqrt(64)
    out = np.tanh(X.astype(np.float64) @ t1) @ t2
    if w.loss == "cross_entropy":
        y = np.argmax(out, axis=1).astype(np.int64)
    else:
        y = (out / out.std()).astype(np.float32) * np.float32(0.5)
    return X, y


def init_weights(w: Workload, dtype=np.float32):
    """Glorot-uniform weights (fastbp's default init), zero biases, fixed seed.

    fastbp, torch and numpy all start from these exact arrays, so their
    per-epoch losses are comparable.
    """
    rng = np.random.default_rng([INIT_SEED, w.data_id])
    Ws, bs = [], []
    for a, b in w.shapes:
        lim = np.sqrt(6.0 / (a + b))
        Ws.append(rng.uniform(-lim, lim, size=(a, b)).astype(dtype))
        bs.append(np.zeros(b, dtype=dtype))
    return Ws, bs


def eval_loss(w: Workload, out, y) -> float:
    """Loss of output activations ``out`` (probabilities or identity outputs)
    in fastbp's convention (mean over samples; MSE = 0.5 * squared error
    summed over outputs)."""
    out = np.asarray(out, dtype=np.float64)
    if w.loss == "cross_entropy":
        p = np.clip(out[np.arange(len(y)), y], 1e-12, None)
        return float(-np.mean(np.log(p)))
    return float(0.5 * np.mean(np.sum((out - y) ** 2, axis=1)))


def parse_list(spec: str, allowed=None):
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if allowed is not None:
        bad = [s for s in items if s not in allowed]
        if bad:
            raise SystemExit(f"unknown entries {bad}; choose from {sorted(allowed)}")
    return items
