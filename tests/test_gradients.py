"""Gradients, losses and predictions of fastbp.Network against the NumPy reference
(tests/reference.py), and against central finite differences in float64.

The reference always runs in float64 on the network's own parameters (cast up), so a
float64 network must agree to rounding error and a float32 network to float32 accuracy.
"""

import zlib

import numpy as np
import pytest

import fastbp
from reference import (
    ACTIVATIONS, PAIRINGS, forward, layer_activations, loss_and_gradients,
    numeric_gradients, output_size, random_targets,
)

DTYPES = ["float32", "float64"]
# max |got - want| <= TOL * max |want|, per array
TOL = {"float32": 2e-4, "float64": 1e-10}
# the same, for the same computation fed differently laid-out (but equal) inputs
LAYOUT_TOL = {"float32": 1e-5, "float64": 1e-12}
HIDDEN = [a for a in ACTIVATIONS if a != "step"]
SMOOTH = [a for a in HIDDEN if a not in ("relu", "leaky_relu")]


def _seed(*parts):
    return zlib.crc32("/".join(map(str, parts)).encode())


def make_net(sizes, hidden, output, dtype, seed=0):
    """A fastbp network whose biases are set to random values (they start at zero), so
    that the bias path of the forward pass is exercised too."""
    net = fastbp.Network(sizes, activation=hidden, output=output, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for b in net.biases:
        b[...] = rng.normal(0.0, 0.3, size=b.shape)
    return net


def params64(net):
    return ([np.array(w, dtype=np.float64) for w in net.weights],
            [np.array(b, dtype=np.float64) for b in net.biases])


def make_data(sizes, kind, n, dtype, seed):
    """X in the network's dtype and targets (float targets in that dtype, labels int64)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    Y = random_targets(kind, n, sizes[-1], rng)
    if kind != "labels":
        Y = Y.astype(dtype)
    return X, Y


def assert_close(got, want, tol, what=""):
    got = np.asarray(got)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(float(np.max(np.abs(want), initial=0.0)), np.finfo(np.float64).tiny)
    err = float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0))
    assert err <= tol * scale, f"{what}: max abs error {err:.3g} > {tol:g} * {scale:.3g}"


def check_against_reference(net, acts, X, Y, loss, dtype, numeric=None):
    """Run net.loss_and_gradients and compare everything with the reference."""
    E, grads = net.loss_and_gradients(X, Y, loss=loss)
    W, b = params64(net)
    rE, rW, rb, rX = loss_and_gradients(W, b, acts, np.asarray(X, np.float64), Y, loss)
    tol = TOL[dtype]
    assert np.isfinite(float(E))
    assert abs(float(E) - rE) <= tol * max(abs(rE), 1e-300), f"loss {float(E)!r} != {rE!r}"
    assert len(grads.weights) == len(W) and len(grads.biases) == len(b)
    for l in range(len(W)):
        assert grads.weights[l].dtype == np.dtype(dtype)
        assert grads.biases[l].dtype == np.dtype(dtype)
        assert_close(grads.weights[l], rW[l], tol, f"dW[{l}]")
        assert_close(grads.biases[l], rb[l], tol, f"db[{l}]")
    assert grads.inputs.dtype == np.dtype(dtype)
    assert_close(grads.inputs, rX, tol, "dX")
    if numeric:
        nW, nb, nX = numeric_gradients(W, b, acts, np.asarray(X, np.float64), Y, loss)
        for l in range(len(W)):
            assert_close(grads.weights[l], nW[l], 1e-6, f"dW[{l}] vs finite differences")
            assert_close(grads.biases[l], nb[l], 1e-6, f"db[{l}] vs finite differences")
        assert_close(grads.inputs, nX, 1e-6, "dX vs finite differences")
    return E, grads


# ---- every hidden activation x every loss/output pairing x dtype ---------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pairing", list(PAIRINGS))
@pytest.mark.parametrize("hidden", HIDDEN)
def test_gradients_match_reference(hidden, pairing, dtype):
    loss, output, kind = PAIRINGS[pairing]
    sizes = [5, 6, 4, output_size(kind)]
    seed = _seed(hidden, pairing) % 1000
    net = make_net(sizes, hidden, output, dtype, seed=seed)
    X, Y = make_data(sizes, kind, 9, dtype, seed + 2)
    acts = layer_activations(len(sizes) - 1, hidden, output)
    check_against_reference(net, acts, X, Y, loss, dtype, numeric=(dtype == "float64"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", [a for a in HIDDEN if a not in ("identity", "sigmoid", "tanh")])
def test_mse_with_other_outputs(output, dtype):
    sizes = [4, 5, 3]
    net = make_net(sizes, "tanh", output, dtype, seed=3)
    X, Y = make_data(sizes, "real", 7, dtype, 4)
    check_against_reference(net, ["tanh", output], X, Y, "mse", dtype, numeric=(dtype == "float64"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_layer_hidden_activations(dtype):
    sizes = [6, 8, 7, 5, 3]
    hidden = ["relu", "tanh", "gelu"]
    net = make_net(sizes, hidden, "softmax", dtype, seed=5)
    X, y = make_data(sizes, "labels", 10, dtype, 6)
    acts = layer_activations(4, hidden, "softmax")
    check_against_reference(net, acts, X, y, "cross_entropy", dtype, numeric=(dtype == "float64"))
    X, Y = make_data(sizes, "real", 10, dtype, 7)
    check_against_reference(net, acts, X, Y, "mse", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pairing", ["mse-identity", "ce-labels", "bce-2d", "bce-1d"])
def test_single_layer_and_single_sample(pairing, dtype):
    loss, output, kind = PAIRINGS[pairing]
    sizes = [7, output_size(kind, 3)]
    net = make_net(sizes, "tanh", output, dtype, seed=8)
    for n in (1, 2, 5):
        X, Y = make_data(sizes, kind, n, dtype, 9 + n)
        check_against_reference(net, [output], X, Y, loss, dtype, numeric=(dtype == "float64"))


LARGE_CASES = [("float64", "relu"), ("float64", "gelu"), ("float64", "tanh"),
               ("float32", "tanh"), ("float32", "sigmoid")]


@pytest.mark.parametrize("pairing", ["ce-labels", "mse-identity", "bce-2d"])
@pytest.mark.parametrize("dtype, hidden", LARGE_CASES)
def test_large_layers(dtype, hidden, pairing):
    """Hundreds of units per layer and odd sizes: no small-size fast path covers this."""
    loss, output, kind = PAIRINGS[pairing]
    sizes = [300, 257, 129, 10]
    net = make_net(sizes, hidden, output, dtype, seed=11)
    X, Y = make_data(sizes, kind, 67, dtype, 12)
    check_against_reference(net, layer_activations(3, hidden, output), X, Y, loss, dtype)


def test_aliases_give_the_same_network():
    sizes = [4, 5, 2]
    X, Y = make_data(sizes, "unit", 6, "float64", 13)
    a = fastbp.Network(sizes, activation="swish", output="logistic", dtype="float64", seed=1)
    b = fastbp.Network(sizes, activation="silu", output="sigmoid", dtype="float64", seed=1)
    Ea, ga = a.loss_and_gradients(X, Y, loss="binary_cross_entropy")
    Eb, gb = b.loss_and_gradients(X, Y, loss="binary_cross_entropy")
    assert float(Ea) == float(Eb)
    for u, v in zip(ga.weights + [ga.inputs], gb.weights + [gb.inputs]):
        np.testing.assert_array_equal(u, v)
    c = fastbp.Network(sizes, activation="tanh", output="linear", dtype="float64", seed=1)
    d = fastbp.Network(sizes, activation="tanh", output="identity", dtype="float64", seed=1)
    np.testing.assert_array_equal(c.predict(X), d.predict(X))


# ---- predict -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", ["identity", "sigmoid", "tanh", "softmax", "relu"])
@pytest.mark.parametrize("hidden", list(ACTIVATIONS))
def test_predict_matches_reference_forward(hidden, output, dtype):
    sizes = [5, 7, 6, 4]
    net = make_net(sizes, hidden, output, dtype, seed=_seed(hidden, output) % 1000)
    X, _ = make_data(sizes, "real", 8, dtype, 14)
    P = net.predict(X)
    assert P.dtype == np.dtype(dtype)
    assert P.shape == (8, 4)
    W, b = params64(net)
    want = forward(W, b, layer_activations(3, hidden, output), X.astype(np.float64))[1][-1]
    assert_close(P, want, TOL[dtype], "predict")


@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_large(dtype):
    sizes = [300, 257, 129, 10]
    net = make_net(sizes, "tanh", "softmax", dtype, seed=15)
    X, _ = make_data(sizes, "real", 33, dtype, 16)
    W, b = params64(net)
    want = forward(W, b, layer_activations(3, "tanh", "softmax"), X.astype(np.float64))[1][-1]
    assert_close(net.predict(X), want, TOL[dtype], "predict")


def test_step_activation_predicts_but_cannot_be_trained():
    sizes = [4, 6, 3]
    for hidden, output in (("step", "identity"), ("tanh", "step")):
        net = make_net(sizes, hidden, output, "float64", seed=17)
        X, Y = make_data(sizes, "real", 5, "float64", 18)
        W, b = params64(net)
        want = forward(W, b, [hidden, output], X)[1][-1]
        assert_close(net.predict(X), want, TOL["float64"], "predict with step")
        with pytest.raises(ValueError):
            net.loss_and_gradients(X, Y, loss="mse")


# ---- memory layouts, read-only inputs, no mutation ------------------------------------------

def _fortran(a):
    return np.asfortranarray(a)


def _strided(a):
    """A view taking every other column (or element) of a wider array."""
    if a.ndim == 1:
        wide = np.zeros(2 * a.shape[0], dtype=a.dtype)
        wide[::2] = a
        return wide[::2]
    wide = np.zeros((a.shape[0], 2 * a.shape[1]), dtype=a.dtype)
    wide[:, ::2] = a
    return wide[:, ::2]


def _negative_rows(a):
    return a[::-1].copy()[::-1]


def _readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


def _upcast(a):
    return a.astype(np.float64) if a.dtype == np.float32 else a.copy()


LAYOUTS = {"fortran": _fortran, "strided": _strided, "negative_stride": _negative_rows,
           "readonly": _readonly, "float64_input": _upcast}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("pairing", ["mse-identity", "ce-labels", "bce-1d"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_input_layouts_give_the_same_results(dtype, pairing, layout):
    loss, output, kind = PAIRINGS[pairing]
    sizes = [6, 5, output_size(kind)]
    net = make_net(sizes, "tanh", output, dtype, seed=19)
    X0, Y0 = make_data(sizes, kind, 8, dtype, 20)
    E0, g0 = net.loss_and_gradients(X0, Y0, loss=loss)
    E0 = float(E0)
    w0 = [w.copy() for w in g0.weights]
    b0 = [v.copy() for v in g0.biases]
    x0 = g0.inputs.copy()
    P0 = net.predict(X0).copy()

    to = LAYOUTS[layout]
    X = to(X0)
    Y = to(Y0)
    np.testing.assert_array_equal(X, X0)
    Xc, Yc = X.copy(), Y.copy()
    Wc, bc = [w.copy() for w in net.weights], [v.copy() for v in net.biases]

    E, g = net.loss_and_gradients(X, Y, loss=loss)
    tol = LAYOUT_TOL[dtype]
    assert abs(float(E) - E0) <= tol * abs(E0)
    for l in range(len(w0)):
        assert_close(g.weights[l], w0[l], tol, f"dW[{l}] ({layout})")
        assert_close(g.biases[l], b0[l], tol, f"db[{l}] ({layout})")
        assert g.weights[l].dtype == np.dtype(dtype)
    assert g.inputs.shape == X0.shape
    assert g.inputs.dtype == np.dtype(dtype)
    assert_close(g.inputs, x0, tol, f"dX ({layout})")
    P = net.predict(X)
    assert P.dtype == np.dtype(dtype)
    assert_close(P, P0, tol, f"predict ({layout})")

    # nothing the caller passed was modified, nor were the parameters
    np.testing.assert_array_equal(X, Xc)
    np.testing.assert_array_equal(Y, Yc)
    assert X.dtype == Xc.dtype and Y.dtype == Yc.dtype
    for w, wc in zip(net.weights, Wc):
        np.testing.assert_array_equal(w, wc)
    for v, vc in zip(net.biases, bc):
        np.testing.assert_array_equal(v, vc)


@pytest.mark.parametrize("dtype", DTYPES)
def test_label_dtypes(dtype):
    sizes = [4, 5, 3]
    net = make_net(sizes, "relu", "softmax", dtype, seed=21)
    X, y = make_data(sizes, "labels", 6, dtype, 22)
    E0, g0 = net.loss_and_gradients(X, y, loss="cross_entropy")
    E0, w0 = float(E0), [w.copy() for w in g0.weights]
    for lab in (y.astype(np.int32), y.astype(np.intp), y.astype(np.uint8)):
        E, g = net.loss_and_gradients(X, lab, loss="cross_entropy")
        assert float(E) == pytest.approx(E0, rel=LAYOUT_TOL[dtype])
        for a, c in zip(g.weights, w0):
            assert_close(a, c, LAYOUT_TOL[dtype])


def test_labels_and_onehot_agree():
    sizes = [4, 5, 3]
    net = make_net(sizes, "tanh", "softmax", "float64", seed=23)
    X, y = make_data(sizes, "labels", 9, "float64", 24)
    E1, g1 = net.loss_and_gradients(X, y, loss="cross_entropy")
    E1, w1, x1 = float(E1), [w.copy() for w in g1.weights], g1.inputs.copy()
    E2, g2 = net.loss_and_gradients(X, np.eye(3)[y], loss="cross_entropy")
    assert float(E2) == pytest.approx(E1, rel=1e-12)
    for a, c in zip(g2.weights, w1):
        assert_close(a, c, 1e-12)
    assert_close(g2.inputs, x1, 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_repeated_calls_with_changing_batch_sizes(dtype):
    """Workspaces reused across calls must not leak state between batch sizes."""
    sizes = [5, 9, 4]
    net = make_net(sizes, "gelu", "softmax", dtype, seed=25)
    X, y = make_data(sizes, "labels", 12, dtype, 26)
    first = None
    for n in (12, 3, 12, 1, 40, 12):
        Xn, yn = (X, y) if n == 12 else make_data(sizes, "labels", n, dtype, 27 + n)
        E, g = net.loss_and_gradients(Xn, yn, loss="cross_entropy")
        assert g.inputs.shape == (n, 5)
        if n == 12:
            snap = (float(E), [w.copy() for w in g.weights], g.inputs.copy())
            if first is None:
                first = snap
            else:
                assert snap[0] == first[0]
                for a, c in zip(snap[1], first[1]):
                    np.testing.assert_array_equal(a, c)
                np.testing.assert_array_equal(snap[2], first[2])


# ---- gradient_check ----------------------------------------------------------------------

# A correct float64 backward pass leaves only finite-difference error: about 3e-6 for these
# nets with eps = 1e-6 (rounding, ~1e-16 * E / eps, on entries ~1e-4), about 2e-7 with
# eps ~ 1e-5 (the cube root of machine epsilon). A wrong gradient is off by > 1e-2.
GRADCHECK_OK = 1e-5


@pytest.mark.parametrize("hidden", SMOOTH)
def test_gradient_check_small_for_smooth_activations(hidden):
    sizes = [4, 5, 3]
    net = make_net(sizes, hidden, "identity", "float64", seed=28)
    X, Y = make_data(sizes, "real", 6, "float64", 29)
    W, b = [w.copy() for w in net.weights], [v.copy() for v in net.biases]
    r = fastbp.gradient_check(net, X, Y, loss="mse")
    assert isinstance(r, (float, np.floating))
    assert np.isfinite(r) and 0.0 <= float(r) < GRADCHECK_OK
    for w, wc in zip(net.weights, W):                  # parameters restored exactly
        np.testing.assert_array_equal(w, wc)
    for v, vc in zip(net.biases, b):
        np.testing.assert_array_equal(v, vc)


@pytest.mark.parametrize("pairing", list(PAIRINGS))
def test_gradient_check_small_for_every_loss(pairing):
    loss, output, kind = PAIRINGS[pairing]
    sizes = [4, 5, output_size(kind, 3)]
    net = make_net(sizes, "tanh", output, "float64", seed=30)
    X, Y = make_data(sizes, kind, 6, "float64", 31)
    r = fastbp.gradient_check(net, X, Y, loss=loss)
    assert 0.0 <= float(r) < GRADCHECK_OK


def test_gradient_check_is_not_vacuous():
    """A huge finite-difference step makes the differences inaccurate on a curved loss:
    the reported discrepancy must then be large."""
    sizes = [3, 4, 2]
    net = make_net(sizes, "tanh", "identity", "float64", seed=32)
    for w in net.weights:
        w *= 3.0
    X, Y = make_data(sizes, "real", 5, "float64", 33)
    assert float(fastbp.gradient_check(net, X, Y, loss="mse", eps=1.0)) > 1e-3


# ---- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("loss, output", [
    ("cross_entropy", "identity"), ("cross_entropy", "sigmoid"), ("cross_entropy", "tanh"),
    ("binary_cross_entropy", "identity"), ("binary_cross_entropy", "softmax"),
    ("binary_cross_entropy", "tanh"),
])
def test_mismatched_loss_and_output_raise(loss, output):
    net = make_net([3, 4, 2], "tanh", output, "float64")
    X = np.zeros((4, 3))
    Y = np.array([0, 1, 1, 0]) if loss == "cross_entropy" else np.zeros((4, 2))
    with pytest.raises(ValueError):
        net.loss_and_gradients(X, Y, loss=loss)


@pytest.fixture
def softmax_net():
    return make_net([3, 4, 3], "tanh", "softmax", "float64")


@pytest.mark.parametrize("labels", [[0, 1, 3, 2], [0, -1, 1, 2]], ids=["too_large", "negative"])
def test_labels_out_of_range_raise(softmax_net, labels):
    with pytest.raises(ValueError):
        softmax_net.loss_and_gradients(np.zeros((4, 3)), np.array(labels), loss="cross_entropy")


@pytest.mark.parametrize("where, value", [("X", np.nan), ("X", np.inf), ("Y", np.nan),
                                          ("Y", -np.inf)])
def test_nonfinite_inputs_raise(where, value):
    net = make_net([3, 4, 2], "tanh", "identity", "float64")
    X, Y = np.ones((4, 3)), np.ones((4, 2))
    (X if where == "X" else Y)[2, 1] = value
    with pytest.raises(ValueError):
        net.loss_and_gradients(X, Y, loss="mse")


def test_nonfinite_inputs_raise_float32():
    net = make_net([3, 4, 2], "tanh", "identity", "float32")
    X = np.ones((4, 3), dtype=np.float32)
    X[0, 0] = np.nan
    with pytest.raises(ValueError):
        net.loss_and_gradients(X, np.ones((4, 2), dtype=np.float32), loss="mse")


@pytest.mark.parametrize("shapes", [
    ((4, 4), (4, 2)),          # wrong number of features
    ((4, 3), (5, 2)),          # targets have other rows
    ((4, 3), (4, 3)),          # wrong number of outputs
    ((4, 3), (4,)),            # 1-D targets for two outputs
    ((4, 3, 1), (4, 2)),       # 3-D X
], ids=["features", "rows", "outputs", "targets_1d", "X_3d"])
def test_wrong_shapes_raise(shapes):
    net = make_net([3, 4, 2], "tanh", "identity", "float64")
    with pytest.raises(ValueError):
        net.loss_and_gradients(np.zeros(shapes[0]), np.zeros(shapes[1]), loss="mse")


def test_wrong_label_shapes_raise(softmax_net):
    X = np.zeros((4, 3))
    with pytest.raises(ValueError):
        softmax_net.loss_and_gradients(X, np.array([0, 1, 2]), loss="cross_entropy")
    with pytest.raises(ValueError):
        softmax_net.loss_and_gradients(X, np.zeros((4, 2)), loss="cross_entropy")
    with pytest.raises(ValueError):
        softmax_net.predict(np.zeros((4, 5)))


def test_bce_targets_outside_unit_interval_raise():
    net = make_net([3, 4, 2], "tanh", "sigmoid", "float64")
    Y = np.full((4, 2), 0.5)
    Y[1, 1] = 1.5
    with pytest.raises(ValueError):
        net.loss_and_gradients(np.zeros((4, 3)), Y, loss="binary_cross_entropy")


def test_unknown_loss_raises():
    net = make_net([3, 4, 2], "tanh", "identity", "float64")
    with pytest.raises(ValueError):
        net.loss_and_gradients(np.zeros((4, 3)), np.zeros((4, 2)), loss="hinge")
