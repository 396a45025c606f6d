"""The systems under test.  Each ``train_*`` / ``infer_*`` function runs inside
a fresh cell subprocess (see ``cell.py``) whose thread environment variables
were set by the orchestrator before Python started.

Every training runner follows the same protocol:

* build the model (fastbp, torch and numpy start from the same Glorot-uniform
  weights, see ``workloads.init_weights``; scikit-learn uses its own
  Glorot-uniform init),
* one untimed warm-up epoch,
* timed epochs, each timed individually with ``time.perf_counter`` around one
  whole epoch (shuffle + all mini-batch steps), until ``repeats`` epochs are
  done or ``budget`` seconds are spent (at least ``min_repeats`` epochs),
* throughput of an epoch = n_samples / wall time of that epoch.
"""
from __future__ import annotations

import time

import numpy as np

from workloads import LR, MOMENTUM, Workload, eval_loss, init_weights

EVAL_N = 1024  # samples used for the before/after loss sanity check


class NotAvailable(Exception):
    """The system cannot run here (not installed / not importable)."""


def _epochs(run_epoch, repeats, budget, min_repeats):
    """Warm-up epoch, then timed epochs. Returns (warmup_s, [epoch_s, ...])."""
    t0 = time.perf_counter()
    run_epoch()
    warm = time.perf_counter() - t0
    times = []
    spent = 0.0
    while len(times) < repeats:
        t0 = time.perf_counter()
        run_epoch()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
        if len(times) >= min_repeats and spent >= budget:
            break
    return warm, times


def _timed_calls(fn, repeats, budget, min_repeats):
    fn()  # warm-up
    times, spent = [], 0.0
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
        if len(times) >= min_repeats and spent >= budget:
            break
    return times


# --------------------------------------------------------------------- fastbp
def _import_fastbp():
    try:
        import fastbp  # noqa: F401
    except Exception as e:  # ImportError, or a half-written package
        import os
        import sys
        src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
        if os.path.isdir(os.path.join(src, "fastbp")) and src not in sys.path:
            sys.path.insert(0, src)
            for k in [k for k in sys.modules if k == "fastbp" or k.startswith("fastbp.")]:
                del sys.modules[k]
            try:
                import fastbp  # noqa: F401,F811
            except Exception as e2:
                raise NotAvailable(f"fastbp not importable: {type(e2).__name__}: {e2}") from e2
        else:
            raise NotAvailable(f"fastbp not importable: {type(e).__name__}: {e}") from e
    import fastbp
    missing = [name for name in ("Network", "Trainer") if not hasattr(fastbp, name)]
    if missing:
        raise NotAvailable(f"fastbp imported from {getattr(fastbp, '__file__', '?')} "
                           f"but lacks {', '.join(missing)} (incomplete build?)")
    return fastbp


def _check_supported(w: Workload, system: str):
    why = w.unsupported(system)
    if why:
        raise NotAvailable(why)


def _fastbp_net(w: Workload, fastbp):
    extra = {}
    if w.dropout:
        extra["dropout"] = w.dropout
    if w.batch_norm:
        extra["batch_norm"] = True
    try:
        net = fastbp.Network(list(w.sizes), activation=w.activation, output=w.output,
                             dtype="float32", seed=0, **extra)
    except TypeError as e:  # a build from before dropout / batch norm
        if not extra:
            raise
        raise NotAvailable(f"this fastbp has no {' / '.join(extra)}: {e}") from e
    shared_init = True
    try:
        Ws, bs = init_weights(w)
        for l in range(len(Ws)):
            net.weights[l][...] = Ws[l]
            net.biases[l][...] = bs[l]
    except Exception:
        shared_init = False  # keep fastbp's own (Glorot-uniform) init
    return net, shared_init


def train_fastbp(w, X, y, threads, repeats, budget, min_repeats, precision=None):
    _check_supported(w, "fastbp")
    fastbp = _import_fastbp()
    net, shared_init = _fastbp_net(w, fastbp)
    extra = {} if precision is None else {"precision": precision}
    try:
        tr = fastbp.Trainer(net, loss=w.loss, optimizer="sgd", lr=LR, momentum=MOMENTUM,
                            batch_size=w.batch_size, n_threads=threads, seed=0, **extra)
    except TypeError as e:   # a build from before bf16 training
        raise NotAvailable(f"this fastbp has no precision=: {e}") from e
    loss_start = eval_loss(w, net.predict(X[:EVAL_N]), y[:EVAL_N])
    reported = []
    epoch_losses = []

    def run_epoch():
        hist = tr.fit(X, y, epochs=1, shuffle=True)
        sps = getattr(hist, "samples_per_second", None)
        if sps:
            reported.append(float(sps[-1]))
        if getattr(hist, "loss", None):
            epoch_losses.append(float(hist.loss[-1]))

    warm, times = _epochs(run_epoch, repeats, budget, min_repeats)
    loss_end = eval_loss(w, net.predict(X[:EVAL_N]), y[:EVAL_N])
    return dict(warmup_s=warm, epoch_s=times, loss_start=loss_start, loss_end=loss_end,
                reported_samples_per_second=reported[1:],  # drop the warm-up epoch
                epoch_losses=epoch_losses, shared_init=shared_init,
                version=getattr(fastbp, "__version__", "?"),
                module=getattr(fastbp, "__file__", "?"))


def train_fastbp_bf16(w, X, y, threads, repeats, budget, min_repeats):
    """fastbp with Trainer(precision="bf16"): bfloat16 products, float32 the rest."""
    fastbp = _import_fastbp()
    from fastbp import _bf16
    res = train_fastbp(w, X, y, threads, repeats, budget, min_repeats, precision="bf16")
    res["bf16"] = _bf16.bf16_capability()
    return res


def infer_fastbp(w, X, threads, repeats, budget, min_repeats, precision=None):
    fastbp = _import_fastbp()
    net, _ = _fastbp_net(w, fastbp)
    try:
        fastbp.set_num_threads(threads)
    except Exception:
        pass
    kw = {} if precision is None else {"precision": precision}
    times = _timed_calls(lambda: net.predict(X, **kw), repeats, budget, min_repeats)
    return dict(call_s=times, version=getattr(fastbp, "__version__", "?"))


# ---------------------------------------------------------------------- torch
def _import_torch(threads):
    try:
        import torch
    except ImportError as e:
        raise NotAvailable(f"torch not installed: {e}") from e
    torch.set_num_threads(threads)
    return torch


def _torch_model(w, torch):
    """Linear (+ BatchNorm1d) + activation (+ Dropout) per hidden layer, Linear out: the
    order fastbp computes in (batch norm between the product and the activation, dropout
    on the activation's output)."""
    Ws, bs = init_weights(w)
    act = torch.nn.ReLU if w.activation == "relu" else torch.nn.Tanh
    layers = []
    for l, (W, b) in enumerate(zip(Ws, bs)):
        lin = torch.nn.Linear(*W.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if l < len(Ws) - 1:
            if w.batch_norm:  # momentum 0.1, eps 1e-5: fastbp's constants
                layers.append(torch.nn.BatchNorm1d(W.shape[1], eps=1e-5, momentum=0.1))
            layers.append(act())
            if w.dropout:
                layers.append(torch.nn.Dropout(w.dropout))
    return torch.nn.Sequential(*layers)


def _torch_out(w, torch, logits):
    return torch.softmax(logits, dim=1) if w.loss == "cross_entropy" else logits


def infer_fastbp_bf16(w, X, threads, repeats, budget, min_repeats):
    return infer_fastbp(w, X, threads, repeats, budget, min_repeats, precision="bf16")


def train_torch(w, X, y, threads, repeats, budget, min_repeats, autocast=False):
    """autocast: the forward (and so the backward) under torch.autocast("cpu",
    dtype=torch.bfloat16), PyTorch's mixed precision: float32 master weights, bf16 mm."""
    _check_supported(w, "torch")
    torch = _import_torch(threads)
    import torch.nn.functional as F
    torch.manual_seed(0)  # dropout's masks
    model = _torch_model(w, torch)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    n, B = X.shape[0], w.batch_size
    gen = torch.Generator().manual_seed(0)
    ce = w.loss == "cross_entropy"

    def evaluate():
        # evaluation mode (no dropout, batch norm's running statistics), as fastbp's
        # predict; then back to training mode
        model.eval()
        try:
            with torch.no_grad():
                return eval_loss(w, _torch_out(w, torch, model(Xt[:EVAL_N])).numpy(),
                                 y[:EVAL_N])
        finally:
            model.train()

    loss_start = evaluate()
    last = []

    def run_epoch():
        perm = torch.randperm(n, generator=gen)
        loss = None
        for i in range(0, n, B):
            idx = perm[i:i + B]
            xb, yb = Xt[idx], yt[idx]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = model(xb)
            out = out.float()
            if ce:
                loss = F.cross_entropy(out, yb)
            else:  # fastbp's MSE: 0.5 * sum over outputs, mean over samples
                loss = (out - yb).pow(2).sum() * (0.5 / xb.shape[0])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        last.append(float(loss.item()))

    warm, times = _epochs(run_epoch, repeats, budget, min_repeats)
    return dict(warmup_s=warm, epoch_s=times, loss_start=loss_start, loss_end=evaluate(),
                last_batch_losses=last, version=torch.__version__,
                torch_threads=torch.get_num_threads())


def infer_torch(w, X, threads, repeats, budget, min_repeats, autocast=False):
    torch = _import_torch(threads)
    model = _torch_model(w, torch)
    model.eval()
    Xt = torch.from_numpy(X)

    def call():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return _torch_out(w, torch, model(Xt).float())

    times = _timed_calls(call, repeats, budget, min_repeats)
    return dict(call_s=times, version=torch.__version__)


# -------------------------------------------------------------------- sklearn
def train_sklearn(w, X, y, threads, repeats, budget, min_repeats):
    _check_supported(w, "sklearn")
    try:
        import sklearn
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    except ImportError as e:
        raise NotAvailable(f"scikit-learn not installed: {e}") from e
    import warnings
    warnings.filterwarnings("ignore")
    ce = w.loss == "cross_entropy"
    cls = MLPClassifier if ce else MLPRegressor
    est = cls(hidden_layer_sizes=tuple(w.sizes[1:-1]), activation=w.activation,
              solver="sgd", alpha=0.0, batch_size=w.batch_size, learning_rate="constant",
              learning_rate_init=LR, momentum=MOMENTUM, nesterovs_momentum=False,
              shuffle=True, random_state=0, max_iter=1, tol=0.0, early_stopping=False)
    # scikit-learn's default dtype: float64 (we pass float64 explicitly)
    X64 = X.astype(np.float64)
    y64 = y if ce else y.astype(np.float64)
    classes = np.arange(w.sizes[-1]) if ce else None

    def predict_out(Xs):
        return est.predict_proba(Xs) if ce else est.predict(Xs)

    state = {"first": True}

    def run_epoch():
        if ce:
            if state["first"]:
                est.partial_fit(X64, y64, classes=classes)
            else:
                est.partial_fit(X64, y64)
        else:
            est.partial_fit(X64, y64)
        state["first"] = False

    warm, times = _epochs(run_epoch, repeats, budget, min_repeats)
    loss_end = eval_loss(w, predict_out(X64[:EVAL_N]), y[:EVAL_N])
    return dict(warmup_s=warm, epoch_s=times, loss_start=None, loss_end=loss_end,
                version=sklearn.__version__, coef_dtype=str(est.coefs_[0].dtype))


# ---------------------------------------------------------------------- numpy
class NumpyMLP:
    """The minimal backprop loop in plain NumPy (float32), preallocated buffers.

    Same conventions as fastbp: a_l = f(a_{l-1} @ W_l + b_l); softmax + CE
    collapses to g = (p - onehot)/n; MSE gives g = (yhat - y)/n;
    dW = a^T g, db = sum(g), g_prev = (g @ W^T) * f'(a_prev); no input
    gradient for the first layer; SGD momentum in PyTorch's form
    (v = m v + g; w -= lr v).
    """

    def __init__(self, w: Workload, max_batch: int):
        self.w = w
        self.W, self.b = init_weights(w)
        self.vW = [np.zeros_like(W) for W in self.W]
        self.vb = [np.zeros_like(b) for b in self.b]
        self.dW = [np.empty_like(W) for W in self.W]
        self.db = [np.empty_like(b) for b in self.b]
        self.A = [np.empty((max_batch, s), np.float32) for s in w.sizes]   # activations
        self.G = [np.empty((max_batch, s), np.float32) for s in w.sizes[1:]]  # dE/dz
        self.relu = w.activation == "relu"
        self.ce = w.loss == "cross_entropy"

    def forward(self, x, A=None):
        L = len(self.W)
        a = x
        for l in range(L):
            z = np.matmul(a, self.W[l], out=None if A is None else A[l + 1][:x.shape[0]])
            z += self.b[l]
            if l < L - 1:
                if self.relu:
                    np.maximum(z, 0, out=z)
                else:
                    np.tanh(z, out=z)
            a = z
        if self.ce:
            a -= a.max(axis=1, keepdims=True)
            np.exp(a, out=a)
            a /= a.sum(axis=1, keepdims=True)
        return a

    def step(self, X, y, idx):
        nb = len(idx)
        A, G, L = self.A, self.G, len(self.W)
        x = A[0][:nb]
        np.take(X, idx, axis=0, out=x)
        out = self.forward(x, A)
        g = G[L - 1][:nb]
        if self.ce:
            g[...] = out
            g[np.arange(nb), y[idx]] -= 1.0
        else:
            np.subtract(out, y[idx], out=g)
        g *= np.float32(1.0 / nb)
        for l in range(L - 1, -1, -1):
            g = G[l][:nb]
            np.matmul(A[l][:nb].T, g, out=self.dW[l])
            np.sum(g, axis=0, out=self.db[l])
            if l > 0:
                gp = G[l - 1][:nb]
                np.matmul(g, self.W[l].T, out=gp)
                a = A[l][:nb]
                if self.relu:
                    gp *= a > 0
                else:
                    gp *= 1.0 - a * a
        for p, v, d in zip(self.W + self.b, self.vW + self.vb, self.dW + self.db):
            v *= MOMENTUM
            v += d
            p -= LR * v


def train_numpy(w, X, y, threads, repeats, budget, min_repeats):
    _check_supported(w, "numpy")
    n, B = X.shape[0], w.batch_size
    m = NumpyMLP(w, B)
    rng = np.random.default_rng(0)
    loss_start = eval_loss(w, m.forward(X[:EVAL_N]), y[:EVAL_N])

    def run_epoch():
        perm = rng.permutation(n)
        for i in range(0, n, B):
            m.step(X, y, perm[i:i + B])

    warm, times = _epochs(run_epoch, repeats, budget, min_repeats)
    return dict(warmup_s=warm, epoch_s=times, loss_start=loss_start,
                loss_end=eval_loss(w, m.forward(X[:EVAL_N]), y[:EVAL_N]),
                version=np.__version__)


def infer_numpy(w, X, threads, repeats, budget, min_repeats):
    m = NumpyMLP(w, 1)
    times = _timed_calls(lambda: m.forward(X), repeats, budget, min_repeats)
    return dict(call_s=times, version=np.__version__)


# ------------------------------------------------ GEMM-only bound (scipy BLAS)
def _sgemm_ops(w: Workload, B: int, rng):
    """The training step's matrix products, as scipy.linalg.blas.sgemm calls
    on float32 arrays of the workload's shapes, in the row-major-through-
    column-major form fastbp uses (operands swapped, .T views, trans flags,
    no copies)."""
    ops = []
    for l, (a, b) in enumerate(w.shapes):
        A = rng.standard_normal((B, a), dtype=np.float32)      # layer input z_{l-1}
        W = rng.standard_normal((a, b), dtype=np.float32)
        Z = np.empty((B, b), np.float32)                       # z_{l-1} @ W
        G = rng.standard_normal((B, b), dtype=np.float32)      # dE/dpre-activation
        dW = np.empty((a, b), np.float32)
        dA = np.empty((B, a), np.float32)
        # forward  Z = A @ W        <=>  Z^T = W^T A^T
        ops.append((W.T, A.T, Z.T, 0, 0))
        # backward dW = A^T @ G     <=>  dW^T = G^T (A^T)^T
        ops.append((G.T, A.T, dW.T, 0, 1))
        # backward dA = G @ W^T     <=>  dA^T = (W^T)^T G^T   (not for the first layer)
        if l > 0:
            ops.append((W.T, G.T, dA.T, 1, 0))
    return ops


def gemm_bound(w, threads, repeats, budget, min_repeats, n_samples):
    from scipy.linalg import blas
    sgemm = blas.sgemm
    rng = np.random.default_rng(0)
    B = w.batch_size
    ops = _sgemm_ops(w, B, rng)
    for a, b, c, ta, tb in ops:  # check: no hidden copies
        assert a.flags.f_contiguous and b.flags.f_contiguous and c.flags.f_contiguous
        assert sgemm(1.0, a, b, 0.0, c, ta, tb, 1) is c
    steps = max(1, n_samples // B)
    one = np.ones((1, 1), np.float32, order="F")
    tiny = [(one, one, np.zeros((1, 1), np.float32, order="F"), 0, 0) for _ in ops]

    def epoch(op_list):
        def f():
            for _ in range(steps):
                for a, b, c, ta, tb in op_list:
                    sgemm(1.0, a, b, 0.0, c, ta, tb, 1)
        return f

    times = _timed_calls(epoch(ops), repeats, budget, min_repeats)
    overhead = _timed_calls(epoch(tiny), max(3, repeats), budget / 4, 3)
    t_raw = float(np.median(times))
    t_ovh = float(np.median(overhead))
    t_net = max(t_raw - t_ovh, 1e-12)
    flops = 2.0 * sum(c.shape[0] * c.shape[1] * (a.shape[1] if ta == 0 else a.shape[0])
                      for a, b, c, ta, tb in ops) * steps
    # sanity: equals flops_per_sample * steps * B
    return dict(epoch_s=times, overhead_epoch_s=overhead, n_calls_per_step=len(ops),
                steps=steps, call_overhead_us=t_ovh / (steps * len(ops)) * 1e6,
                samples_per_second_raw=steps * B / t_raw,
                samples_per_second=steps * B / t_net,
                gflops=flops / t_net / 1e9, flops_check=flops / (steps * B))


def sgemm_rate(threads, repeats, budget, min_repeats, n=2048):
    """Square n x n x n products: numpy float32 matmul (numpy's BLAS),
    scipy.linalg.blas.sgemm (scipy's BLAS: the one fastbp uses), and numpy
    float64 matmul (the dgemm scikit-learn's float64 MLP uses)."""
    from scipy.linalg import blas
    rng = np.random.default_rng(0)
    flop = 2.0 * n ** 3
    out = {}
    A = rng.standard_normal((n, n), dtype=np.float32)
    Bm = rng.standard_normal((n, n), dtype=np.float32)
    C = np.empty((n, n), np.float32)
    t = _timed_calls(lambda: np.matmul(A, Bm, out=C), repeats, budget, min_repeats)
    out["numpy_sgemm"] = dict(call_s=t, gflops=flop / float(np.median(t)) / 1e9,
                              gflops_best=flop / min(t) / 1e9)
    Af, Bf = np.asfortranarray(A), np.asfortranarray(Bm)
    Cf = np.empty((n, n), np.float32, order="F")
    assert blas.sgemm(1.0, Af, Bf, 0.0, Cf, 0, 0, 1) is Cf
    t = _timed_calls(lambda: blas.sgemm(1.0, Af, Bf, 0.0, Cf, 0, 0, 1), repeats, budget, min_repeats)
    out["scipy_sgemm"] = dict(call_s=t, gflops=flop / float(np.median(t)) / 1e9,
                              gflops_best=flop / min(t) / 1e9)
    A64, B64 = A.astype(np.float64), Bm.astype(np.float64)
    C64 = np.empty((n, n), np.float64)
    t = _timed_calls(lambda: np.matmul(A64, B64, out=C64), repeats, budget, min_repeats)
    out["numpy_dgemm"] = dict(call_s=t, gflops=flop / float(np.median(t)) / 1e9,
                              gflops_best=flop / min(t) / 1e9)
    try:  # PyTorch's own BLAS (MKL in the x86 wheels): context for the torch numbers
        import torch
        torch.set_num_threads(threads)
        At, Bt = torch.from_numpy(A), torch.from_numpy(Bm)
        Ct = torch.empty_like(At)
        t = _timed_calls(lambda: torch.mm(At, Bt, out=Ct), repeats, budget, min_repeats)
        out["torch_sgemm"] = dict(call_s=t, gflops=flop / float(np.median(t)) / 1e9,
                                  gflops_best=flop / min(t) / 1e9)
    except ImportError:
        pass
    peak = bf16_peak(budget)
    if peak:
        out["bf16_peak"] = peak
    out["n"] = n
    return out


def bf16_peak(budget=1.0):
    """One core's VDPBF16PS rate (GFLOP/s) in fastbp's register-only loop (see
    bench/bf16_peak.py), or None where the CPU or build lacks it. The threads' peak is this
    times the cores used (one bf16 unit each on the CPUs measured)."""
    try:
        fastbp = _import_fastbp()
        from fastbp import _bf16
        chains = _bf16.peak_chains()
        if not chains or _bf16.bf16_cpu_capability() != "avx512_bf16":
            return None
        iters = 2_000_000
        _bf16.peak_loop("dpbf16", iters)             # clocks up
        rates = []
        t_end = time.perf_counter() + max(budget, 0.5)
        while len(rates) < 5 or time.perf_counter() < t_end and len(rates) < 15:
            t0 = time.perf_counter()
            _bf16.peak_loop("dpbf16", iters)
            rates.append(64.0 * chains * iters / (time.perf_counter() - t0) / 1e9)
        del fastbp
        return dict(gflops=float(np.median(rates)), gflops_best=float(max(rates)))
    except Exception:
        return None


def train_torch_bf16(w, X, y, threads, repeats, budget, min_repeats):
    return train_torch(w, X, y, threads, repeats, budget, min_repeats, autocast=True)


def infer_torch_bf16(w, X, threads, repeats, budget, min_repeats):
    return infer_torch(w, X, threads, repeats, budget, min_repeats, autocast=True)


TRAIN = {"fastbp": train_fastbp, "torch": train_torch, "sklearn": train_sklearn,
         "numpy": train_numpy, "fastbp_bf16": train_fastbp_bf16,
         "torch_bf16": train_torch_bf16}
INFER = {"fastbp": infer_fastbp, "torch": infer_torch, "numpy": infer_numpy,
         "fastbp_bf16": infer_fastbp_bf16, "torch_bf16": infer_torch_bf16}
