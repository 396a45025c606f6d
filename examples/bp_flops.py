r"""
Backpropagation's cost: 2ND forward, 4ND backward
=================================================

The BP notes count the arithmetic of one training step: for a network with :math:`N`
weights and a batch of :math:`D` samples, the forward pass costs :math:`2ND` floating-point
operations (one multiply and one add per weight per sample, in :math:`z_{l-1} W_l`) and
the backward pass :math:`4ND` (:math:`z_{l-1}^\top g_l` for the weight gradients and
:math:`g_l W_l^\top` for the gradients passed back, :math:`2ND` each). This example
checks the count against fastbp's measured times: if the products dominate,
``loss_and_gradients`` (forward + backward, with the input gradient too) takes about
three times as long as ``predict`` (forward only) on the same batch, and both run near
the speed of the matrix products alone.

Run from the repository root: ``python examples/bp_flops.py`` (about ten seconds).
The documentation build runs it on a shared machine, so its times are indicative.
"""
# %%
# A network whose products dominate (512-wide layers, a batch of 512), one thread so
# that the numbers are steady.
import os
import time

import matplotlib.pyplot as plt
import numpy as np

import fastbp

QUICK = os.environ.get("FASTBP_EXAMPLES_QUICK") == "1"
sizes = [256, 512, 512, 10]
D = 512
N = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))       # weights (biases: O(1/D))
net = fastbp.Network(sizes, activation="relu", output="softmax", init="he_normal", seed=0)
rng = np.random.default_rng(0)
X = rng.normal(size=(D, sizes[0])).astype(np.float32)
y = rng.integers(0, sizes[-1], size=D)
print(f"N = {N:,} weights, D = {D}: forward 2ND = {2 * N * D / 1e6:.0f} MFLOP, "
      f"backward 4ND = {4 * N * D / 1e6:.0f} MFLOP")


def best_time(fn, repeats):
    """The fastest of ``repeats`` calls (the least disturbed by other work)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# %%
# The three measurements: the forward pass, forward + backward, and the same matrix
# products alone, done by NumPy's BLAS. fastbp runs float32 products of these sizes on its
# own AVX-512/AVX2 kernel (see the performance guide), which can be faster than the BLAS,
# so the BLAS time is a reference point, not a ceiling.
repeats = 10 if QUICK else 30
with fastbp.num_threads(1):
    t_fwd = best_time(lambda: net.predict(X), repeats)
    t_step = best_time(lambda: net.loss_and_gradients(X, y), repeats)

Ws = [rng.normal(size=(a, b)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
Zs = [rng.normal(size=(D, a)).astype(np.float32) for a in sizes[:-1]]
Gs = [rng.normal(size=(D, b)).astype(np.float32) for b in sizes[1:]]


def products_forward():
    for Z, W in zip(Zs, Ws):
        Z @ W


def products_backward():
    for Z, W, G in zip(Zs, Ws, Gs):
        Z.T @ G
        G @ W.T


from threadpoolctl import threadpool_limits  # noqa: E402  (a fastbp dependency)

with threadpool_limits(1):
    t_gemm_fwd = best_time(products_forward, repeats)
    t_gemm_bwd = best_time(products_backward, repeats)

rate = 6 * N * D / t_step / 1e9
print(f"predict:             {1e3 * t_fwd:7.2f} ms  ({2 * N * D / t_fwd / 1e9:5.1f} GFLOP/s)")
print(f"loss_and_gradients:  {1e3 * t_step:7.2f} ms  ({rate:5.1f} GFLOP/s)")
print(f"ratio step / forward: {t_step / t_fwd:.2f}   (the count predicts 6ND / 2ND = 3)")
print(f"products alone (BLAS): forward {1e3 * t_gemm_fwd:.2f} ms, backward "
      f"{1e3 * t_gemm_bwd:.2f} ms, ratio {(t_gemm_fwd + t_gemm_bwd) / t_gemm_fwd:.2f}")

# %%
# Measured against the count: the bars are the measured times, the dashed lines the
# forward time scaled by 3 (what the 2ND/4ND count predicts for the whole step) and the
# BLAS time of the products alone.
fig, ax = plt.subplots(figsize=(6.5, 3.4), layout="constrained")
ax.bar(["forward\n(predict)", "forward + backward\n(loss_and_gradients)"],
       [1e3 * t_fwd, 1e3 * t_step], color=["tab:blue", "tab:orange"])
ax.axhline(3e3 * t_fwd, ls="--", color="k", label="3 x forward (6ND / 2ND)")
ax.axhline(1e3 * (t_gemm_fwd + t_gemm_bwd), ls=":", color="tab:green",
           label="the step's products alone (BLAS)")
ax.set(ylabel="ms per batch of 512, 1 thread")
ax.legend(loc="upper left", fontsize=8)
plt.show()
