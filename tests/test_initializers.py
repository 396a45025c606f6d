"""Tests for fastbp.initializers: distributions, gains, registry, validation, LSUV."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from fastbp import activations, initializers as init

DTYPES = ["float32", "float64"]
FAN_IN, FAN_OUT = 400, 300
N = FAN_IN * FAN_OUT
TRUNC = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2]
SQ3 = math.sqrt(3.0)
Z_TOL = 5.0  # tolerance in standard errors (seeds are fixed, so this is deterministic)

RANDOM_NAMES = [n for n in init.names() if n not in ("zeros", "constant")]


def _stats(W):
    w = np.asarray(W, dtype=np.float64).ravel()
    return w.mean(), w.std()


# (name, kwargs, mean, std, shape of the distribution, half-width bound or None)
def _specs():
    s_lecun = math.sqrt(1.0 / FAN_IN)
    s_glorot = math.sqrt(2.0 / (FAN_IN + FAN_OUT))
    s_he = math.sqrt(2.0 / FAN_IN)
    s_he_out = math.sqrt(2.0 / FAN_OUT)
    return [
        ("normal", {}, 0.0, 0.01, "normal", None),
        ("normal", {"mean": 0.5, "std": 0.2}, 0.5, 0.2, "normal", None),
        ("gaussian", {"std": 0.3}, 0.0, 0.3, "normal", None),
        ("uniform", {}, 0.0, 0.1 / math.sqrt(12), "uniform", 0.05),
        ("uniform", {"low": 1.0, "high": 3.0}, 2.0, 2.0 / math.sqrt(12), "uniform", 1.0),
        ("uniform", {"low": 0.0, "high": 1.0, "gain": 2.0}, 0.5, 2.0 / math.sqrt(12),
         "uniform", 1.0),
        ("truncated_normal", {}, 0.0, 0.05 * TRUNC, "truncated", 0.1),
        ("truncated_normal", {"mean": 0.3, "std": 0.2}, 0.3, 0.2 * TRUNC, "truncated", 0.4),
        ("lecun_normal", {}, 0.0, s_lecun, "normal", None),
        ("lecun_normal", {"truncated": True}, 0.0, s_lecun, "truncated", 2 * s_lecun / TRUNC),
        ("lecun_uniform", {}, 0.0, s_lecun, "uniform", SQ3 * s_lecun),
        ("glorot_normal", {}, 0.0, s_glorot, "normal", None),
        ("glorot_normal", {"truncated": True}, 0.0, s_glorot, "truncated",
         2 * s_glorot / TRUNC),
        ("xavier_normal", {}, 0.0, s_glorot, "normal", None),
        ("glorot_uniform", {}, 0.0, s_glorot, "uniform", SQ3 * s_glorot),
        ("xavier_uniform", {"gain": 5 / 3}, 0.0, 5 / 3 * s_glorot, "uniform",
         5 / 3 * SQ3 * s_glorot),
        ("he_normal", {}, 0.0, s_he, "normal", None),
        ("he_normal", {"mode": "fan_out"}, 0.0, s_he_out, "normal", None),
        ("he_normal", {"truncated": True}, 0.0, s_he, "truncated", 2 * s_he / TRUNC),
        ("msra", {"gain": 0.5}, 0.0, 0.5 * s_he, "normal", None),
        ("kaiming_normal", {}, 0.0, s_he, "normal", None),
        ("he_uniform", {}, 0.0, s_he, "uniform", SQ3 * s_he),
        ("he_uniform", {"mode": "fan_out"}, 0.0, s_he_out, "uniform", SQ3 * s_he_out),
        ("kaiming_uniform", {"gain": 3.0}, 0.0, 3.0 * s_he, "uniform", 3.0 * SQ3 * s_he),
        ("variance_scaling", {"scale": 3.0, "mode": "fan_avg", "distribution": "uniform"},
         0.0, math.sqrt(3.0 / 350), "uniform", SQ3 * math.sqrt(3.0 / 350)),
        ("variance_scaling", {"mode": "fan_out"}, 0.0, math.sqrt(1.0 / FAN_OUT), "normal",
         None),
    ]


SPECS = _specs()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs,mean,std,shape,bound", SPECS,
                         ids=[f"{s[0]}-{i}" for i, s in enumerate(SPECS)])
def test_distribution_moments_and_shape(name, kwargs, mean, std, shape, bound, dtype):
    W = init.get(name)(FAN_IN, FAN_OUT, rng=1234, dtype=dtype, **kwargs)
    assert W.shape == (FAN_IN, FAN_OUT)
    assert W.dtype == np.dtype(dtype)
    assert W.flags.c_contiguous

    m, s = _stats(W)
    # standard errors of the sample mean and of the sample variance (normal kurtosis,
    # an upper bound for the uniform and the truncated normal)
    assert abs(m - mean) < Z_TOL * std / math.sqrt(N)
    assert abs(s**2 - std**2) < Z_TOL * std**2 * math.sqrt(2.0 / N)

    z = (np.asarray(W, dtype=np.float64) - mean) / std
    if shape == "normal":
        # untruncated: tails beyond the uniform's sqrt(3) and beyond the truncation bound
        assert 0.075 < np.mean(np.abs(z) > SQ3) < 0.092  # 2 * P(Z > 1.732) = 0.0833
        assert 0.019 < np.mean(np.abs(z) > 2 / TRUNC) < 0.027  # 2 * P(Z > 2.274) = 0.0230
    else:
        w = np.asarray(W, dtype=np.float64)
        lo, hi = mean - bound, mean + bound
        eps = 1e-6 * max(abs(lo), abs(hi))  # float32 rounding of the bounds
        assert w.min() >= lo - eps and w.max() <= hi + eps
        # and the bound is really reached (the distribution is not narrower)
        assert w.min() < lo + 0.01 * bound and w.max() > hi - 0.01 * bound
        if shape == "uniform":
            # flat: each quarter of the interval holds a quarter of the samples
            counts = np.histogram(w, bins=4, range=(lo, hi))[0] / N
            assert np.all(np.abs(counts - 0.25) < 0.01)
        else:
            # truncated normal: more mass near the centre than a uniform
            assert 0.70 < np.mean(np.abs(w - mean) < 0.5 * bound) < 0.73  # 0.6827 / 0.9545


@pytest.mark.parametrize("dtype", DTYPES)
def test_zeros_and_constant(dtype):
    Z = init.zeros(3, 4, dtype=dtype)
    assert Z.shape == (3, 4) and Z.dtype == np.dtype(dtype) and not Z.any()
    C = init.constant(5, 2, value=0.25, dtype=dtype)
    assert C.dtype == np.dtype(dtype) and C.flags.c_contiguous
    np.testing.assert_array_equal(C, np.full((5, 2), 0.25))
    np.testing.assert_array_equal(init.constant(2, 2, value=0.25, gain=4.0, dtype=dtype),
                                  np.ones((2, 2)))
    np.testing.assert_array_equal(init.constant(2, 3, dtype=dtype), np.zeros((2, 3)))
    assert not init.zeros(2, 2, gain=3.0).any()


def test_constant_docstring_mentions_symmetry():
    for f in (init.zeros, init.constant):
        assert "symmetry" in f.__doc__


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", [n for n in RANDOM_NAMES if n != "orthogonal"])
def test_gain_multiplies_std(name, dtype):
    f = init.get(name)
    W1 = f(30, 20, rng=7, dtype=dtype).astype(np.float64)
    W3 = f(30, 20, rng=7, dtype=dtype, gain=3.0).astype(np.float64)
    rtol = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(W3, 3.0 * W1, rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(120, 90), (90, 120), (64, 64), (1, 10), (10, 1)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal(shape, gain, dtype):
    W = init.orthogonal(*shape, rng=3, dtype=dtype, gain=gain)
    assert W.shape == shape and W.dtype == np.dtype(dtype) and W.flags.c_contiguous
    W = W.astype(np.float64)
    fan_in, fan_out = shape
    G = W.T @ W if fan_in >= fan_out else W @ W.T
    atol = 2e-5 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(G, gain**2 * np.eye(min(shape)), atol=atol * gain**2)
    # not a trivial (identity-like / sparse) matrix: a dense random rotation
    if min(shape) > 1:
        assert np.mean(np.abs(W) > 1e-3 * gain) > 0.9
        m, s = _stats(W)
        assert abs(s**2 - gain**2 / max(shape)) < 0.1 * gain**2 / max(shape)


def test_orthogonal_sign_fix():
    # Q * sign(diag R) is Haar distributed: W[0, 0] is positive about half the time.
    # Without the sign fix LAPACK's Householder QR makes it negative every time.
    first = [init.orthogonal(8, 8, rng=s, dtype="float64")[0, 0] for s in range(60)]
    n_pos = sum(v > 0 for v in first)
    assert 15 <= n_pos <= 45


def test_orthogonal_rows_vs_columns():
    wide = init.orthogonal(3, 7, rng=0, dtype="float64")
    tall = init.orthogonal(7, 3, rng=0, dtype="float64")
    np.testing.assert_allclose(wide @ wide.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(tall.T @ tall, np.eye(3), atol=1e-12)
    # a wide semi-orthogonal matrix does not have orthonormal columns
    assert not np.allclose(wide.T @ wide, np.eye(7), atol=1e-3)


@pytest.mark.parametrize("nonlinearity,param,expected", [
    ("linear", None, 1.0),
    ("identity", None, 1.0),
    ("conv2d", None, 1.0),
    ("sigmoid", None, 1.0),
    ("logistic", None, 1.0),
    ("tanh", None, 5.0 / 3.0),
    ("relu", None, math.sqrt(2.0)),
    ("leaky_relu", None, math.sqrt(2.0 / (1.0 + 0.01**2))),
    ("leaky_relu", 0.2, math.sqrt(2.0 / 1.04)),
    ("leaky_relu", 1, 1.0),
    ("selu", None, 0.75),
    ("lecun_tanh", None, 1.0),
    ("softsign", None, 1.0),
    ("elu", None, math.sqrt(2.0)),
    ("softplus", None, math.sqrt(2.0)),
    ("silu", None, math.sqrt(2.0)),
    ("swish", None, math.sqrt(2.0)),
    ("gelu", None, math.sqrt(2.0)),
    ("TANH", None, 5.0 / 3.0),
])
def test_calculate_gain(nonlinearity, param, expected):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-15)


def test_calculate_gain_knows_every_activation():
    for name in activations.names():
        g = init.calculate_gain(name)
        assert math.isfinite(g) and g > 0


def test_calculate_gain_errors():
    with pytest.raises(ValueError, match="valid names:.*leaky_relu.*tanh"):
        init.calculate_gain("sine")
    with pytest.raises(ValueError, match="param"):
        init.calculate_gain("leaky_relu", "0.1")
    with pytest.raises(ValueError, match="param"):
        init.calculate_gain("leaky_relu", True)
    with pytest.raises(TypeError, match="nonlinearity"):
        init.calculate_gain(None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", RANDOM_NAMES)
def test_reproducible(name, dtype):
    f = init.get(name)
    a = f(20, 30, rng=42, dtype=dtype)
    np.testing.assert_array_equal(a, f(20, 30, rng=42, dtype=dtype))
    np.testing.assert_array_equal(a, f(20, 30, rng=np.random.default_rng(42), dtype=dtype))
    assert not np.array_equal(a, f(20, 30, rng=43, dtype=dtype))
    assert not np.array_equal(a, f(20, 30, dtype=dtype))  # rng=None: fresh entropy
    # a Generator is advanced: two draws from it differ
    g = np.random.default_rng(5)
    assert not np.array_equal(f(20, 30, rng=g, dtype=dtype), f(20, 30, rng=g, dtype=dtype))


@pytest.mark.parametrize("name", RANDOM_NAMES)
def test_float32_is_rounded_float64(name):
    f = init.get(name)
    np.testing.assert_array_equal(f(9, 11, rng=0, dtype="float32"),
                                  f(9, 11, rng=0, dtype="float64").astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.dtype("float64"), "f4", "float64"])
def test_numpy_dtypes_accepted(dtype):
    assert init.glorot_uniform(3, 2, rng=0, dtype=dtype).dtype == np.dtype(dtype)


def test_aliases_are_the_same_function():
    pairs = [("gaussian", "normal"), ("xavier_normal", "glorot_normal"),
             ("xavier_uniform", "glorot_uniform"), ("msra", "he_normal"),
             ("kaiming_normal", "he_normal"), ("kaiming_uniform", "he_uniform")]
    for alias, name in pairs:
        assert init.get(alias) is init.get(name)
        assert getattr(init, alias) is getattr(init, name)
    # and not everything is the same function
    assert init.get("glorot_normal") is not init.get("lecun_normal")
    assert init.get("he_uniform") is not init.get("he_normal")


def test_registry():
    expected = {"zeros", "constant", "normal", "gaussian", "uniform", "truncated_normal",
                "lecun_normal", "lecun_uniform", "glorot_normal", "xavier_normal",
                "glorot_uniform", "xavier_uniform", "he_normal", "msra", "kaiming_normal",
                "he_uniform", "kaiming_uniform", "orthogonal"}
    assert expected <= set(init.names())
    assert init.names() == sorted(init.names())
    for n in init.names():
        assert init.get(n) is getattr(init, n)
    assert init.get("Glorot_Uniform") is init.glorot_uniform


def test_get_unknown_and_callable():
    with pytest.raises(ValueError) as exc:
        init.get("glorot")
    assert ", ".join(sorted(init.names())) in str(exc.value)
    assert "'glorot'" in str(exc.value)

    def mine(fan_in, fan_out, *, rng=None, dtype="float32"):
        return np.ones((fan_in, fan_out), dtype=dtype)

    assert init.get(mine) is mine
    with pytest.raises(TypeError):
        init.get(3)


# As in fastbp._validation: TypeError for a wrong type, ValueError for a bad value.
@pytest.mark.parametrize("name", init.names())
@pytest.mark.parametrize("arg", ["fan_in", "fan_out"])
@pytest.mark.parametrize("bad,error", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                       (3.0, TypeError), ("3", TypeError), (None, TypeError),
                                       (True, TypeError)])
def test_bad_fans(name, arg, bad, error):
    fans = {"fan_in": 4, "fan_out": 5}
    fans[arg] = bad
    with pytest.raises(error, match=arg):
        init.get(name)(fans["fan_in"], fans["fan_out"], rng=0)


def test_numpy_integer_fans_accepted():
    assert init.he_normal(np.int64(4), np.int32(3), rng=0).shape == (4, 3)


@pytest.mark.parametrize("name", init.names())
@pytest.mark.parametrize("bad,error", [("int32", ValueError), ("float16", ValueError),
                                       ("complex64", ValueError), (int, ValueError),
                                       (">f4" if np.little_endian else "<f4", ValueError),
                                       ("banana", TypeError), (None, TypeError)])
def test_bad_dtype(name, bad, error):
    with pytest.raises(error, match="dtype"):
        init.get(name)(4, 5, rng=0, dtype=bad)


@pytest.mark.parametrize("name", RANDOM_NAMES)
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_gain(name, bad):
    with pytest.raises(ValueError, match="gain"):
        init.get(name)(4, 5, rng=0, gain=bad)


@pytest.mark.parametrize("call,match", [
    (lambda: init.normal(3, 3, std=0.0), "std"),
    (lambda: init.normal(3, 3, std=-0.1), "std"),
    (lambda: init.normal(3, 3, mean=float("nan")), "mean"),
    (lambda: init.truncated_normal(3, 3, std=0.0), "std"),
    (lambda: init.uniform(3, 3, low=0.1, high=0.1), "low"),
    (lambda: init.uniform(3, 3, low=1.0, high=-1.0), "low"),
    (lambda: init.constant(3, 3, value=float("inf")), "value"),
    (lambda: init.he_normal(3, 3, mode="fan_avg"), "mode"),
    (lambda: init.he_uniform(3, 3, mode="in"), "mode"),
    (lambda: init.variance_scaling(3, 3, mode="avg"), "mode"),
    (lambda: init.variance_scaling(3, 3, distribution="cauchy"), "distribution"),
    (lambda: init.variance_scaling(3, 3, scale=0), "scale"),
    (lambda: init.glorot_normal(3, 3, rng=-1), "rng"),
    (lambda: init.calculate_gain("leaky_relu", float("nan")), "param"),
])
def test_bad_parameters(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_types():
    with pytest.raises(TypeError, match="rng"):
        init.glorot_uniform(3, 3, rng="seed")
    with pytest.raises(TypeError, match="truncated"):
        init.lecun_normal(3, 3, truncated="yes")
    with pytest.raises(TypeError):
        init.glorot_uniform(3, 3, rng=0, stddev=1.0)  # unknown keyword


def test_docstrings_document_conventions():
    assert "Caffe" in init.lecun_normal.__doc__ and "Caffe" in init.glorot_uniform.__doc__
    assert "Saxe" in init.orthogonal.__doc__
    assert "0.8796" in init.truncated_normal.__doc__
    for f in (init.glorot_normal, init.glorot_uniform, init.lecun_normal, init.lecun_uniform,
              init.he_normal, init.he_uniform, init.orthogonal, init.normal, init.uniform):
        assert "Parameters" in f.__doc__ and "Returns" in f.__doc__


# ----------------------------------------------------------------------------- LSUV
def _fake_net(sizes, acts, dtype):
    weights = [np.zeros((a, b), dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [np.zeros(b, dtype=dtype) for b in sizes[1:]]
    return SimpleNamespace(weights=weights, biases=biases, activations=tuple(acts),
                           dtype=np.dtype(dtype))


def _preactivation_vars(net, X):
    z = np.asarray(X, dtype=np.float64)
    out = []
    for W, b, a in zip(net.weights, net.biases, net.activations):
        B = z @ W.astype(np.float64) + b.astype(np.float64)
        out.append(B.var())
        z = np.asarray(activations.get(a).forward(B), dtype=np.float64)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("acts", [("tanh", "relu", "identity"), ("relu", "sigmoid", "softmax")])
@pytest.mark.parametrize("tol", [0.1, 0.01])
def test_lsuv_unit_variance(acts, tol, dtype):
    rng = np.random.default_rng(0)
    X = 3.0 * rng.standard_normal((256, 12)) + 1.0  # far from unit variance
    X_copy = X.copy()
    net = _fake_net([12, 32, 16, 5], acts, dtype)
    ids = [id(W) for W in net.weights]
    # orthogonal weights alone would not give unit variance on this X
    for W in net.weights:
        W[...] = init.orthogonal(*W.shape, rng=1, dtype=dtype)
    assert abs(_preactivation_vars(net, X)[0] - 1.0) > 1.0

    assert init.lsuv(net, X, tol=tol, rng=0) is net
    np.testing.assert_array_equal(X, X_copy)  # X not modified
    assert [id(W) for W in net.weights] == ids  # in place
    for W in net.weights:
        assert W.dtype == np.dtype(dtype)
    for var in _preactivation_vars(net, X):
        assert abs(var - 1.0) < tol
    # each W is a scaled orthogonal matrix (orthogonal start, then uniform rescaling)
    for W in net.weights:
        W = W.astype(np.float64)
        G = W.T @ W if W.shape[0] >= W.shape[1] else W @ W.T
        c = G[0, 0]
        np.testing.assert_allclose(G, c * np.eye(len(G)), atol=1e-5 * c)


def test_lsuv_reproducible_and_max_iter():
    X = np.random.default_rng(1).standard_normal((64, 6)) * 5.0
    a = _fake_net([6, 8, 3], ("tanh", "identity"), "float64")
    b = _fake_net([6, 8, 3], ("tanh", "identity"), "float64")
    init.lsuv(a, X, rng=3)
    init.lsuv(b, X, rng=3)
    for Wa, Wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(Wa, Wb)
    # max_iter=0: only the orthogonal start
    c = _fake_net([6, 8, 3], ("tanh", "identity"), "float64")
    init.lsuv(c, X, rng=3, max_iter=0)
    np.testing.assert_array_equal(c.weights[0], init.orthogonal(6, 8, rng=3, dtype="float64"))
    assert not np.allclose(c.weights[0], a.weights[0])


@pytest.mark.parametrize("X,match", [
    (np.zeros((10,)), "2-D"),
    (np.zeros((10, 5)), "4 columns"),
    (np.zeros((0, 4)), "empty"),
    (np.full((3, 4), np.nan), "NaN"),
    (np.array([[1.0, 2.0, np.inf, 0.0]]), "inf"),
])
def test_lsuv_bad_X(X, match):
    net = _fake_net([4, 3, 2], ("tanh", "identity"), "float32")
    before = [W.copy() for W in net.weights]
    with pytest.raises(ValueError, match=match):
        init.lsuv(net, X)
    for W, W0 in zip(net.weights, before):
        np.testing.assert_array_equal(W, W0)  # nothing changed on error


def test_lsuv_bad_options():
    net = _fake_net([4, 3, 2], ("tanh", "identity"), "float32")
    X = np.ones((5, 4))
    with pytest.raises(ValueError, match="tol"):
        init.lsuv(net, X, tol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        init.lsuv(net, X, max_iter=-1)
    with pytest.raises(TypeError, match="max_iter"):
        init.lsuv(net, X, max_iter=2.0)
    with pytest.raises(TypeError, match="X"):
        init.lsuv(net, [["a", "b", "c", "d"]])
