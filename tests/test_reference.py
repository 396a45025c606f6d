"""Checks of the NumPy reference itself (tests/reference.py): it must be right before the
compiled package is measured against it. Nothing here imports fastbp."""

import math
import zlib

import numpy as np
import pytest
from numpy.testing import assert_allclose

from reference import (
    ACTIVATIONS, PAIRINGS, activation, adam_step, forward, irprop_plus_step,
    layer_activations, loss_and_gradients, loss_value, numeric_gradients, output_size,
    quickprop_step, random_targets, rmsprop_step, rprop_step, sgd_step, softmax,
)

SMOOTH = [a for a in ACTIVATIONS if a != "step"]
KINKED = {"relu", "leaky_relu"}


def tiny_net(sizes, hidden, output, seed=0):
    """Random float64 weights and (non-zero) biases for the given layer sizes."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0.0, 1.0 / math.sqrt(a), size=(a, b))
               for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(0.0, 0.5, size=b) for b in sizes[1:]]
    return weights, biases, layer_activations(len(sizes) - 1, hidden, output)


def assert_grads_close(got, want, rtol, atol=0.0):
    """Max-abs comparison, scaled by the largest entry of `want`."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1.0)
    err = float(np.max(np.abs(got - want), initial=0.0))
    assert err <= rtol * scale + atol, f"max abs error {err:.3g} (scale {scale:.3g})"


# ---- activations ---------------------------------------------------------------------

GRID = np.concatenate([np.linspace(-6, -1e-3, 300), np.linspace(1e-3, 6, 300)])


@pytest.mark.parametrize("name", SMOOTH)
def test_activation_derivative_matches_finite_differences(name):
    f, df = ACTIVATIONS[name]
    h = 1e-6
    fd = (f(GRID + h) - f(GRID - h)) / (2 * h)
    assert_allclose(df(GRID), fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_is_finite_for_large_inputs(name):
    f, df = ACTIVATIONS[name]
    x = np.array([-800.0, -50.0, 0.0, 50.0, 800.0])
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        assert np.all(np.isfinite(f(x)))
        if name != "step":
            assert np.all(np.isfinite(df(x)))


def test_activation_values():
    x = np.array([-2.0, 0.0, 1.0])
    f = {name: fd[0] for name, fd in ACTIVATIONS.items()}
    assert_allclose(f["identity"](x), x)
    assert_allclose(f["step"](x), [0.0, 1.0, 1.0])
    assert_allclose(f["sigmoid"](x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    assert_allclose(f["tanh"](x), np.tanh(x))
    assert_allclose(f["lecun_tanh"](np.array([1.5, -1.5])), [1.7159 * np.tanh(1.0), -1.7159 * np.tanh(1.0)])
    assert abs(f["lecun_tanh"](np.array([1.0]))[0] - 1.0) < 1e-4          # f(1) ~= 1 (LeCun 1998)
    assert_allclose(f["relu"](x), [0.0, 0.0, 1.0])
    assert_allclose(f["leaky_relu"](x), [-0.02, 0.0, 1.0])
    assert_allclose(f["elu"](x), [math.exp(-2) - 1, 0.0, 1.0], rtol=1e-15)
    assert_allclose(f["softplus"](x), np.log1p(np.exp(x)), rtol=1e-15)
    assert_allclose(f["softsign"](x), [-2 / 3, 0.0, 0.5])
    assert_allclose(f["silu"](x), x / (1 + np.exp(-x)), rtol=1e-15)
    # tanh-approximated GELU (Hendrycks & Gimpel 2016)
    c = math.sqrt(2 / math.pi)
    assert_allclose(f["gelu"](x), [0.5 * v * (1 + math.tanh(c * (v + 0.044715 * v ** 3))) for v in x],
                    rtol=1e-15)
    assert_allclose(f["gelu"](np.array([1.0])), [0.8411919906082768], rtol=1e-12)


def test_step_has_no_derivative_and_softmax_is_separate():
    with pytest.raises(ValueError):
        ACTIVATIONS["step"][1](np.zeros(3))
    with pytest.raises(ValueError):
        activation("softmax")
    with pytest.raises(ValueError):
        activation("no_such_activation")
    assert activation("swish") is ACTIVATIONS["silu"]
    assert activation("logistic") is ACTIVATIONS["sigmoid"]
    assert activation("linear") is ACTIVATIONS["identity"]


def test_softmax_rows():
    z = np.array([[1000.0, 1000.0, 1000.0], [0.0, 1.0, 2.0]])
    p = softmax(z)
    assert_allclose(p[0], [1 / 3] * 3)
    assert_allclose(p[1], np.exp([0, 1, 2]) / np.exp([0, 1, 2]).sum())
    assert_allclose(p.sum(axis=1), 1.0)


def test_activations_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    fns = {
        "identity": lambda t: t * 1.0,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "lecun_tanh": lambda t: 1.7159 * torch.tanh(t * (2.0 / 3.0)),
        "relu": F.relu,
        "leaky_relu": lambda t: F.leaky_relu(t, 0.01),
        "elu": lambda t: F.elu(t, alpha=1.0),
        "softplus": F.softplus,
        "softsign": F.softsign,
        "silu": F.silu,
        "gelu": lambda t: F.gelu(t, approximate="tanh"),
    }
    assert set(fns) == set(SMOOTH)
    for name, fn in fns.items():
        t = torch.tensor(GRID, dtype=torch.float64, requires_grad=True)
        y = fn(t)
        (d,) = torch.autograd.grad(y.sum(), t)
        f, df = ACTIVATIONS[name]
        assert_allclose(f(GRID), y.detach().numpy(), rtol=1e-12, atol=1e-15, err_msg=name)
        assert_allclose(df(GRID), d.numpy(), rtol=1e-12, atol=1e-13, err_msg=name)  # gelu tail cancels


# ---- forward / loss values -------------------------------------------------------------

def test_forward_shapes_and_composition():
    W, b, acts = tiny_net([3, 5, 2], "tanh", "sigmoid")
    X = np.arange(12.0).reshape(4, 3) / 10
    pre, out = forward(W, b, acts, X)
    assert [a.shape for a in pre] == [(4, 5), (4, 2)] == [a.shape for a in out]
    assert_allclose(out[0], np.tanh(X @ W[0] + b[0]))
    assert_allclose(out[1], 1 / (1 + np.exp(-(out[0] @ W[1] + b[1]))))


def test_loss_values_by_hand():
    # one identity layer, W = I, b = 0: yhat = X
    W, b = [np.eye(2)], [np.zeros(2)]
    X = np.array([[1.0, 2.0], [0.0, 1.0]])
    Y = np.zeros((2, 2))
    # mse: (0.5 * (1 + 4) + 0.5 * (0 + 1)) / 2 = 1.5
    assert loss_value(W, b, ["identity"], X, Y, "mse") == pytest.approx(1.5, rel=1e-15)
    # all-zero logits over k classes: cross-entropy log k for any target row summing to 1
    k = 4
    Wz, bz = [np.zeros((3, k))], [np.zeros(k)]
    X3 = np.ones((5, 3))
    labels = np.array([0, 1, 2, 3, 0])
    for targets in (labels, np.eye(k)[labels]):
        E = loss_value(Wz, bz, ["softmax"], X3, targets, "cross_entropy")
        assert E == pytest.approx(math.log(k), rel=1e-14)
    # zero logits, sigmoid: p = 1/2, BCE = k log 2 per sample (summed over outputs)
    E = loss_value(Wz, bz, ["sigmoid"], X3, np.full((5, k), 0.3), "binary_cross_entropy")
    assert E == pytest.approx(k * math.log(2), rel=1e-14)
    # a non-trivial cross-entropy by hand: logits [0, ln 2, ln 3] -> p = [1/6, 2/6, 3/6]
    Wl, bl = [np.zeros((1, 3))], [np.log([1.0, 2.0, 3.0])]
    x1 = np.zeros((2, 1))
    assert loss_value(Wl, bl, ["softmax"], x1, np.array([2, 0]), "cross_entropy") == pytest.approx(
        -(math.log(0.5) + math.log(1 / 6)) / 2, rel=1e-14)
    # BCE by hand: logit ln 3 -> p = 3/4; y = 1 and y = 0.5
    Wb, bb = [np.zeros((1, 1))], [np.array([math.log(3.0)])]
    assert loss_value(Wb, bb, ["sigmoid"], x1, np.array([1.0, 0.5]), "binary_cross_entropy") == pytest.approx(
        -(math.log(0.75) + 0.5 * math.log(0.75) + 0.5 * math.log(0.25)) / 2, rel=1e-14)


def test_output_deltas_closed_forms():
    """Single layer: dW = X.T @ g_L, so g_L is visible; check the textbook closed forms."""
    rng = np.random.default_rng(1)
    n, d, k = 7, 3, 4
    X = rng.normal(size=(n, d))
    W, b = [rng.normal(size=(d, k))], [rng.normal(size=k)]
    z = X @ W[0] + b[0]
    p = softmax(z)
    T = rng.dirichlet(np.ones(k), size=n)
    _, dW, db, dX = loss_and_gradients(W, b, ["softmax"], X, T, "cross_entropy")
    assert_allclose(db[0], ((p - T) / n).sum(0), rtol=1e-12, atol=1e-15)
    assert_allclose(dW[0], X.T @ ((p - T) / n), rtol=1e-12, atol=1e-15)
    assert_allclose(dX, ((p - T) / n) @ W[0].T, rtol=1e-12, atol=1e-15)
    # mse through softmax: explicit per-row Jacobian diag(p) - p p^T
    _, dW, db, _ = loss_and_gradients(W, b, ["softmax"], X, T, "mse")
    g = np.stack([(np.diag(pi) - np.outer(pi, pi)) @ ((pi - ti) / n) for pi, ti in zip(p, T)])
    assert_allclose(db[0], g.sum(0), rtol=1e-12, atol=1e-15)
    # sigmoid + BCE: (p - y) / n
    s = 1 / (1 + np.exp(-z))
    Yb = rng.uniform(size=(n, k))
    _, dW, db, _ = loss_and_gradients(W, b, ["sigmoid"], X, Yb, "binary_cross_entropy")
    assert_allclose(dW[0], X.T @ ((s - Yb) / n), rtol=1e-12, atol=1e-15)


def test_label_and_onehot_targets_agree_and_bce_1d_equals_2d():
    W, b, acts = tiny_net([3, 4, 5], "tanh", "softmax", seed=2)
    X = np.random.default_rng(3).normal(size=(6, 3))
    labels = np.array([0, 4, 2, 2, 1, 3])
    r1 = loss_and_gradients(W, b, acts, X, labels, "cross_entropy")
    r2 = loss_and_gradients(W, b, acts, X, np.eye(5)[labels], "cross_entropy")
    assert r1[0] == pytest.approx(r2[0], rel=1e-14)
    for a, c in zip(r1[1] + r1[2] + [r1[3]], r2[1] + r2[2] + [r2[3]]):
        assert_allclose(a, c, rtol=1e-13, atol=1e-16)
    W, b, acts = tiny_net([3, 4, 1], "tanh", "sigmoid", seed=2)
    y = np.array([0.0, 1.0, 0.3, 1.0, 0.0, 0.5])
    r1 = loss_and_gradients(W, b, acts, X, y, "binary_cross_entropy")
    r2 = loss_and_gradients(W, b, acts, X, y[:, None], "binary_cross_entropy")
    assert r1[0] == r2[0]
    for a, c in zip(r1[1] + r1[2] + [r1[3]], r2[1] + r2[2] + [r2[3]]):
        assert_allclose(a, c, rtol=0, atol=0)


def test_reference_rejects_bad_pairs_and_targets():
    W, b, acts = tiny_net([3, 4, 2], "tanh", "identity")
    X = np.zeros((2, 3))
    with pytest.raises(ValueError):
        loss_and_gradients(W, b, acts, X, np.array([0, 1]), "cross_entropy")
    with pytest.raises(ValueError):
        loss_and_gradients(W, b, acts, X, np.zeros((2, 2)), "binary_cross_entropy")
    with pytest.raises(ValueError):
        loss_and_gradients(W, b, acts, X, np.zeros((2, 2)), "hinge")
    with pytest.raises(ValueError):
        loss_and_gradients(W, b, acts, X, np.zeros((2, 3)), "mse")
    Ws, bs, acts_s = tiny_net([3, 4, 2], "tanh", "softmax")
    with pytest.raises(ValueError):
        loss_and_gradients(Ws, bs, acts_s, X, np.array([0, 2]), "cross_entropy")
    with pytest.raises(ValueError):
        loss_and_gradients(Ws, bs, acts_s, X, np.array([-1, 0]), "cross_entropy")
    with pytest.raises(ValueError):
        loss_and_gradients(W, b, ["step", "identity"], X, np.zeros((2, 2)), "mse")
    with pytest.raises(ValueError):
        forward(W, b, ["softmax", "identity"], X)
    # step: forward only
    _, out = forward(W, b, ["step", "identity"], X + 1)
    assert set(np.unique(out[0])) <= {0.0, 1.0}


# ---- analytic vs numerical gradients -----------------------------------------------------

@pytest.mark.parametrize("pairing", list(PAIRINGS))
@pytest.mark.parametrize("hidden", SMOOTH)
def test_reference_gradients_match_finite_differences(hidden, pairing):
    loss, output, kind = PAIRINGS[pairing]
    k = output_size(kind)
    W, b, acts = tiny_net([4, 5, 4, k], hidden, output, seed=zlib.crc32(f"{hidden}/{pairing}".encode()))
    rng = np.random.default_rng(7)
    X = rng.normal(size=(6, 4))
    Y = random_targets(kind, 6, k, rng)
    E, dW, db, dX = loss_and_gradients(W, b, acts, X, Y, loss)
    assert E == pytest.approx(loss_value(W, b, acts, X, Y, loss), rel=1e-15)
    nW, nb, nX = numeric_gradients(W, b, acts, X, Y, loss)
    for got, want in zip(dW + db + [dX], nW + nb + [nX]):
        assert_grads_close(got, want, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("output", [a for a in SMOOTH if a not in ("identity", "sigmoid", "tanh")])
def test_reference_mse_gradients_any_output(output):
    W, b, acts = tiny_net([3, 4, 3], ["gelu"], output, seed=5)
    rng = np.random.default_rng(8)
    X = rng.normal(size=(5, 3))
    Y = rng.normal(size=(5, 3))
    _, dW, db, dX = loss_and_gradients(W, b, acts, X, Y, "mse")
    nW, nb, nX = numeric_gradients(W, b, acts, X, Y, "mse")
    for got, want in zip(dW + db + [dX], nW + nb + [nX]):
        assert_grads_close(got, want, rtol=1e-7, atol=1e-9)


def test_reference_gradients_per_layer_activations():
    W, b, acts = tiny_net([3, 4, 5, 4, 3], ["relu", "sigmoid", "softsign"], "softmax", seed=9)
    rng = np.random.default_rng(10)
    X = rng.normal(size=(5, 3))
    y = np.array([0, 1, 2, 1, 0])
    _, dW, db, dX = loss_and_gradients(W, b, acts, X, y, "cross_entropy")
    nW, nb, nX = numeric_gradients(W, b, acts, X, y, "cross_entropy")
    for got, want in zip(dW + db + [dX], nW + nb + [nX]):
        assert_grads_close(got, want, rtol=1e-7, atol=1e-9)


# ---- optimizers vs torch.optim ------------------------------------------------------------

def _gradient_sequence(n, steps, seed):
    rng = np.random.default_rng(seed)
    gs = [rng.normal(size=n) for _ in range(steps)]
    gs[1][:3] = 0.0                      # exercise the sign == 0 / zero-gradient paths
    gs[2][3:6] = gs[1][3:6]              # repeated gradients
    return gs


OPT_CASES = [
    ("SGD", sgd_step, dict(lr=0.1)),
    ("SGD", sgd_step, dict(lr=0.1, momentum=0.9)),
    ("SGD", sgd_step, dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", sgd_step, dict(lr=0.05, momentum=0.5, weight_decay=0.01)),
    ("SGD", sgd_step, dict(lr=0.05, momentum=0.5, nesterov=True, weight_decay=0.01)),
    ("SGD", sgd_step, dict(lr=0.05, weight_decay=0.1)),
    ("Adam", adam_step, dict(lr=0.01)),
    ("Adam", adam_step, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    ("RMSprop", rmsprop_step, dict(lr=0.01)),
    ("RMSprop", rmsprop_step, dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.05)),
    ("RMSprop", rmsprop_step, dict(lr=0.01, momentum=0.9)),
    ("RMSprop", rmsprop_step, dict(lr=0.01, momentum=0.9, weight_decay=0.01)),
    ("Rprop", rprop_step, dict(lr=0.01)),
    ("Rprop", rprop_step, dict(lr=0.1, etas=(0.3, 1.5), step_sizes=(0.02, 0.2))),
]


@pytest.mark.parametrize("torch_name, step_fn, kwargs", OPT_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(OPT_CASES)])
def test_optimizer_reference_matches_torch(torch_name, step_fn, kwargs):
    torch = pytest.importorskip("torch")
    n, steps = 23, 5
    rng = np.random.default_rng(11)
    p = rng.normal(size=n)
    tp = torch.nn.Parameter(torch.tensor(p.copy(), dtype=torch.float64))
    opt = getattr(torch.optim, torch_name)([tp], foreach=False, **kwargs)
    state = {}
    for t, g in enumerate(_gradient_sequence(n, steps, seed=12)):
        g_in = g.copy()
        step_fn(p, g, state, **kwargs)
        assert_allclose(g, g_in, rtol=0, atol=0)                   # g never modified
        tp.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        assert_allclose(p, tp.detach().numpy(), rtol=1e-10, atol=1e-12,
                        err_msg=f"{torch_name} step {t + 1}")


def test_rprop_reference_flips_and_zero_gradients():
    """iRprop-: after a sign change the weight does not move and the next step restarts."""
    p = np.array([0.0, 0.0, 0.0])
    st = {}
    rprop_step(p, np.array([1.0, 1.0, 0.0]), st, lr=0.1)
    assert_allclose(p, [-0.1, -0.1, 0.0])
    rprop_step(p, np.array([-1.0, 1.0, 1.0]), st, lr=0.1)
    assert_allclose(p, [-0.1, -0.1 - 0.12, -0.1])
    assert_allclose(st["step_size"], [0.05, 0.12, 0.1])
    rprop_step(p, np.array([-1.0, 1.0, 1.0]), st, lr=0.1)     # prev was zeroed: s == 0
    assert_allclose(p, [-0.1 + 0.05, -0.22 - 0.144, -0.1 - 0.12])


def test_irprop_plus_backtracks_only_when_loss_increased():
    p = np.zeros(2)
    st = {}
    irprop_plus_step(p, np.array([1.0, 1.0]), st, loss=1.0, lr=0.1)
    assert_allclose(p, [-0.1, -0.1])
    q, sq = p.copy(), {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
    irprop_plus_step(p, np.array([-1.0, 1.0]), st, loss=2.0, lr=0.1)          # worse: undo
    assert_allclose(p, [0.0, -0.1 - 0.12])
    irprop_plus_step(q, np.array([-1.0, 1.0]), sq, loss=0.5, lr=0.1)          # better: stay
    assert_allclose(q, [-0.1, -0.1 - 0.12])
    irprop_plus_step(p, np.array([1.0, 1.0]), st, loss=1.5, lr=0.1)
    assert_allclose(p, [-0.05, -0.22 - 0.144])


def test_irprop_plus_equals_irprop_minus_while_loss_decreases():
    n = 31
    rng = np.random.default_rng(13)
    p1 = rng.normal(size=n)
    p2 = p1.copy()
    s1, s2 = {}, {}
    for t, g in enumerate(_gradient_sequence(n, 8, seed=14)):
        rprop_step(p1, g, s1, lr=0.05)
        irprop_plus_step(p2, g, s2, loss=10.0 - t, lr=0.05)
        assert_allclose(p2, p1, rtol=0, atol=0)


# ---- Quickprop ----------------------------------------------------------------------------

def _fann_quickprop(w, g, prev_step, prev_slope, lr, mu, wd):
    """FANN's fann_update_weights_quickprop for one weight, transcribed in FANN's own sign
    convention (slope = -dE/dw, decay = -weight_decay), with epsilon = lr, no 0.001 dead
    zone, no clipping, and the degenerate-parabola guard. Returns (w, step, slope)."""
    slope = -g + (-wd) * w
    shrink = mu / (1.0 + mu)
    step = 0.0

    def parabola():
        return 0.0 if prev_slope == slope else prev_step * slope / (prev_slope - slope)

    if prev_step > 0:
        if slope > 0:
            step += lr * slope
        step += mu * prev_step if slope > shrink * prev_slope else parabola()
    elif prev_step < 0:
        if slope < 0:
            step += lr * slope
        step += mu * prev_step if slope < shrink * prev_slope else parabola()
    else:
        step += lr * slope
    return w + step, step, slope


@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_quickprop_reference_matches_fann_transcription(wd):
    rng = np.random.default_rng(15)
    n = 200
    curv = rng.uniform(0.2, 3.0, size=n) * np.where(np.arange(n) % 7 == 0, -1, 1)  # some concave
    centre = rng.normal(size=n)
    p = rng.normal(size=n)
    w = p.copy()
    fstep, fslope = np.zeros(n), np.zeros(n)
    st = {}
    for t in range(8):
        g = curv * (p - centre) + 0.1 * np.sin(3 * p)
        g[:5] = 0.0
        quickprop_step(p, g, st, lr=0.3, mu=1.75, weight_decay=wd)
        gw = curv * (w - centre) + 0.1 * np.sin(3 * w)
        gw[:5] = 0.0
        for i in range(n):
            w[i], fstep[i], fslope[i] = _fann_quickprop(w[i], gw[i], fstep[i], fslope[i], 0.3, 1.75, wd)
        assert_allclose(p, w, rtol=1e-13, atol=1e-13, err_msg=f"step {t + 1}")
        assert_allclose(st["prev_step"], fstep, rtol=1e-13, atol=1e-13)
        assert_allclose(st["prev_slope"], -fslope, rtol=1e-13, atol=1e-13)
    assert np.all(np.isfinite(p))


def _run_quickprop_on_parabola(w0, w_star, lr, steps, weight_decay=0.0):
    p, st, trace = np.array([w0]), {}, []
    for _ in range(steps):
        quickprop_step(p, p - w_star, st, lr=lr, weight_decay=weight_decay)  # E = (w - w*)^2 / 2
        trace.append(p[0])
    return trace


def test_quickprop_by_hand():
    # step 1 is plain gradient descent: dw = -lr * S
    assert _run_quickprop_on_parabola(0.0, 1.0, lr=1.5, steps=1) == [1.5]
    # overshoot, slope now positive after an upward step: pure parabola lands on the minimum
    assert _run_quickprop_on_parabola(0.0, 1.0, lr=1.5, steps=2)[1] == pytest.approx(1.0, abs=1e-15)
    # still downhill: gradient term 0.9 * 0.1 plus parabola 0.9 * -0.1 / (-1 + 0.1) = 0.1
    trace = _run_quickprop_on_parabola(0.0, 1.0, lr=0.9, steps=2)
    assert trace[1] == pytest.approx(0.9 + 0.09 + 0.1, rel=1e-14)
    # far from the minimum: growth limited to mu * dw_prev (1.75) plus gradient term 0.9
    trace = _run_quickprop_on_parabola(0.0, 10.0, lr=0.1, steps=2)
    assert trace[1] == pytest.approx(1.0 + 0.9 + 1.75, rel=1e-14)
    # weight decay joins the slope: S = 0.5 + 0.1 * 2
    p = np.array([2.0])
    quickprop_step(p, np.array([0.5]), {}, lr=1.0, weight_decay=0.1)
    assert p[0] == pytest.approx(2.0 - 0.7, rel=1e-15)


def test_quickprop_degenerate_parabola_is_finite():
    p = np.array([1.0, 1.0])
    st = {"prev_step": np.array([0.5, -0.5]), "prev_slope": np.array([1.0, -1.0])}
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        quickprop_step(p, np.array([1.0, -1.0]), st, lr=0.1)
    assert_allclose(p, [1.0, 1.0])
    assert_allclose(st["prev_step"], [0.0, 0.0])
