"""Diagnostics: gradient norms and health against NumPy, the recorder callback, symmetry
breaking by random initialization, vanishing gradients across depth."""
import functools

import numpy as np
import pytest

import fastbp
from fastbp.datasets import load_digits
from fastbp.diagnostics import GradientNormRecorder, HealthReport, gradient_norms, health
from reference import forward, loss_and_gradients


def params(net):
    return ([np.array(w, np.float64) for w in net.weights],
            [np.array(b, np.float64) for b in net.biases], list(net.activations))


def data(rng, n=40, d=6, k=4, scale=1.0):
    X = scale * rng.normal(size=(n, d))
    return X, rng.integers(0, k, size=n)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(dtype="float64")
    X = (X - X.mean(axis=0)) / (X.std(axis=0) + 0.1)
    return X[:300], y[:300]


# ---- gradient_norms ------------------------------------------------------------------

@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 2e-4)])
@pytest.mark.parametrize("act,output,loss", [("tanh", "softmax", "cross_entropy"),
                                             ("sigmoid", "identity", "mse"),
                                             ("relu", "sigmoid", "binary_cross_entropy")])
def test_gradient_norms_match_numpy(rng, dtype, rtol, act, output, loss):
    net = fastbp.Network([6, 9, 7, 4], activation=act, output=output, dtype=dtype, seed=1)
    X, labels = data(rng)
    Y = labels if loss == "cross_entropy" else np.eye(4)[labels]
    W, b, acts = params(net)
    _, dW, _, _ = loss_and_gradients(W, b, acts, X.astype(dtype), Y, loss=loss)
    want = [np.linalg.norm(g) for g in dW]
    got = gradient_norms(net, X, Y, loss=loss)
    assert len(got) == 3 and all(isinstance(v, float) for v in got)
    np.testing.assert_allclose(got, want, rtol=rtol)


def test_gradient_norms_in_float64_on_a_float32_network(rng):
    net = fastbp.Network([6, 5, 5, 5, 3], activation="sigmoid", output="softmax",
                         init="normal", seed=2)
    before = net.parameters.copy()
    X, y = data(rng, k=3)
    W, b, acts = params(net)
    _, dW, _, _ = loss_and_gradients(W, b, acts, X.astype(np.float32), y, loss="cross_entropy")
    got = gradient_norms(net, X.astype(np.float32), y, loss="cross_entropy", dtype="float64")
    np.testing.assert_allclose(got, [np.linalg.norm(g) for g in dW], rtol=1e-9)
    assert net.dtype == np.float32
    np.testing.assert_array_equal(net.parameters, before)


# ---- health ------------------------------------------------------------------------------

def test_health_matches_numpy(rng):
    net = fastbp.Network([6, 8, 7, 9, 4], activation=["tanh", "sigmoid", "relu"],
                         output="softmax", dtype="float64", seed=3)
    net.biases[2][:3] = -50.0                      # three ReLU units that never fire
    X, y = data(rng, n=60, scale=3.0)              # large inputs: some saturation
    W, b, acts = params(net)
    _, dW, db, _ = loss_and_gradients(W, b, acts, X, y, loss="cross_entropy")
    _, out = forward(W, b, acts, X)
    lr = 0.05
    rows = health(net, X, y, loss="cross_entropy", lr=lr)
    assert isinstance(rows, list) and isinstance(rows, HealthReport) and len(rows) == 4
    for l, row in enumerate(rows):
        assert row["layer"] == l and row["shape"] == W[l].shape and row["activation"] == acts[l]
        np.testing.assert_allclose(row["grad_norm"], np.linalg.norm(dW[l]), rtol=1e-10)
        np.testing.assert_allclose(row["bias_grad_norm"], np.linalg.norm(db[l]), rtol=1e-10)
        np.testing.assert_allclose(row["weight_norm"], np.linalg.norm(W[l]), rtol=1e-12)
        np.testing.assert_allclose(row["update_ratio"],
                                   lr * np.linalg.norm(dW[l]) / np.linalg.norm(W[l]), rtol=1e-10)
        np.testing.assert_allclose(row["act_mean"], out[l].mean(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(row["act_std"], out[l].std(), rtol=1e-10)
    tanh_sat = 100 * np.mean(np.abs(out[0]) > 0.97)
    sig_sat = 100 * np.mean((out[1] < 0.03) | (out[1] > 0.97))
    assert tanh_sat > 0
    assert rows[0]["saturated_pct"] == pytest.approx(tanh_sat)
    assert rows[1]["saturated_pct"] == pytest.approx(sig_sat)
    assert rows[2]["dead_pct"] == pytest.approx(100 * np.mean(out[2].max(axis=0) <= 0))
    assert rows[2]["dead_pct"] >= 100 * 3 / 9
    assert "saturated_pct" not in rows[2] and "dead_pct" not in rows[0]
    assert "saturated_pct" not in rows[3] and "dead_pct" not in rows[3]


def test_health_table_text_and_markdown(rng):
    net = fastbp.Network([6, 8, 4], activation="relu", output="softmax", seed=0)
    X, y = data(rng)
    rows = health(net, X, y, loss="cross_entropy")
    assert "update_ratio" not in rows[0]                       # no lr, no column
    text = str(rows)
    assert "grad norm" in text and "dead %" in text and "update ratio" not in text
    assert len(text.splitlines()) >= 2 + len(rows)
    md = rows.to_markdown().splitlines()
    assert len(md) == 2 + len(rows)
    assert all(line.startswith("| ") and line.endswith(" |") for line in md[:1] + md[2:])
    assert md[0].count("|") == md[2].count("|") == md[3].count("|")   # same number of cells
    assert " - |" in md[3]                                     # output layer has no dead %
    rows_lr = health(net, X, y, loss="cross_entropy", lr=0.1)
    assert "update ratio" in rows_lr.to_markdown().splitlines()[0]


def test_health_warnings_name_the_problems(rng):
    X, y = data(rng, n=50)
    deep = fastbp.Network([6] + [16] * 8 + [4], activation="sigmoid", output="softmax",
                          init="normal", dtype="float64", seed=0)
    report = health(deep, X, y, loss="cross_entropy")
    assert report.gradient_ratio() < 1e-6
    assert any("vanishing" in w for w in report.warnings())
    assert "vanishing" in str(report)
    relu = fastbp.Network([6, 8, 4], activation="relu", output="softmax", seed=0)
    relu.biases[0][:6] = -100.0
    assert any("dead" in w for w in health(relu, X, y, loss="cross_entropy").warnings())


def test_health_and_norms_reject_bad_arguments(rng):
    net = fastbp.Network([6, 8, 4], output="softmax", seed=0)
    X, y = data(rng)
    with pytest.raises(ValueError, match="lr"):
        health(net, X, y, loss="cross_entropy", lr=0)
    with pytest.raises(ValueError, match="X"):
        health(net, X[:, :5], y, loss="cross_entropy")
    with pytest.raises(TypeError, match="Network"):
        gradient_norms("net", X, y)
    with pytest.raises(ValueError):
        gradient_norms(net, X, y, loss="binary_cross_entropy")       # softmax output
    with pytest.raises(ValueError, match="dtype"):
        gradient_norms(net, X, y, loss="cross_entropy", dtype="float16")


# ---- GradientNormRecorder ------------------------------------------------------------------

class LogsSpy(fastbp.callbacks.Callback):
    def __init__(self):
        self.seen = []

    def on_epoch_end(self, epoch, logs):
        self.seen.append(logs.get("grad_norms"))


def test_recorder_one_entry_per_epoch_one_norm_per_layer(rng):
    net = fastbp.Network([6, 9, 7, 4], output="softmax", seed=0)
    X, y = data(rng, n=64)
    probe = (X[:16], y[:16])
    rec, spy = GradientNormRecorder(*probe, initial=True), LogsSpy()
    before = gradient_norms(net, *probe, loss="cross_entropy")
    trainer = fastbp.Trainer(net, loss="cross_entropy", lr=0.1, batch_size=16, seed=0)
    h = trainer.fit(X, y, epochs=4, callbacks=[rec, spy])
    assert len(rec.history) == len(h) == 4 and rec.epochs == [0, 1, 2, 3]
    assert all(len(norms) == 3 for norms in rec.history)
    assert all(v > 0 for norms in rec.history for v in norms)
    assert spy.seen == rec.history                                  # also in the epoch logs
    assert rec.initial_norms == before
    assert rec.history[-1] == gradient_norms(net, *probe, loss="cross_entropy")
    assert rec.history[0] != rec.history[-1]
    trainer.fit(X, y, epochs=2, callbacks=[rec])                   # records accumulate
    assert rec.epochs == [0, 1, 2, 3, 4, 5]
    rec.reset()
    assert rec.history == [] and rec.epochs == [] and rec.initial_norms is None


def test_recorder_every_and_explicit_loss(rng):
    net = fastbp.Network([6, 5, 4], output="softmax", seed=0)
    X, y = data(rng, n=32)
    rec = GradientNormRecorder(X, y, loss="cross_entropy", every=2, dtype="float64")
    fastbp.Trainer(net, loss="cross_entropy", batch_size=8, seed=0).fit(X, y, epochs=5,
                                                                         callbacks=[rec])
    assert rec.epochs == [0, 2, 4] and len(rec.history) == 3
    with pytest.raises(ValueError):
        GradientNormRecorder(X, y, every=0)
    bad = GradientNormRecorder(X[:, :3], y)
    with pytest.raises(ValueError, match="X"):
        fastbp.Trainer(net, loss="cross_entropy").fit(X, y, epochs=1, callbacks=[bad])


# ---- symmetry ------------------------------------------------------------------------------

def train_few(init, activation, rng):
    net = fastbp.Network([8, 6, 3], activation=activation, output="softmax", init=init,
                         dtype="float64", seed=0)
    X = rng.normal(size=(60, 8))
    y = rng.integers(0, 3, size=60)
    start = net.parameters.copy()
    fastbp.Trainer(net, loss="cross_entropy", lr=0.1, momentum=0.9, batch_size=10,
                   seed=0).fit(X, y, epochs=5)
    return net, start


def spread(columns):
    """Largest difference between any hidden unit's column and the first unit's."""
    return float(np.abs(columns - columns[:, :1]).max())


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("init", ["zeros", functools.partial(fastbp.initializers.constant,
                                                              value=0.3)])
def test_constant_init_never_breaks_symmetry(rng, init, activation):
    net, start = train_few(init, activation, rng)
    W0, b0, W1 = net.weights[0], net.biases[0], net.weights[1]
    # every hidden unit has the same incoming weights and bias, and the same outgoing row
    assert spread(W0) <= 1e-12 * max(1.0, np.abs(W0).max())
    assert np.ptp(b0) <= 1e-12 * max(1.0, np.abs(b0).max())
    assert spread(W1.T) <= 1e-12 * max(1.0, np.abs(W1).max())
    if init == "zeros" and activation == "tanh":
        # tanh(0) = 0: the hidden layer outputs 0, so W1 and then W0 get no gradient at all
        np.testing.assert_array_equal(W0, 0)
        np.testing.assert_array_equal(W1, 0)
    else:
        assert not np.array_equal(net.parameters, start)   # it trained, symmetrically


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_random_init_breaks_symmetry(rng, activation):
    net, start = train_few("glorot_uniform", activation, rng)
    W0 = net.weights[0]
    d = np.abs(W0[:, :, None] - W0[:, None, :]).max(axis=0)     # unit-vs-unit differences
    off_diag = d[~np.eye(W0.shape[1], dtype=bool)]
    assert off_diag.min() > 1e-2


# ---- vanishing gradients -----------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_deep_sigmoid_small_gaussian_gradients_vanish(digits, seed):
    X, y = digits
    net = fastbp.Network([64] + [32] * 9 + [10], activation="sigmoid", output="softmax",
                         init="normal", dtype="float64", seed=seed)
    norms = gradient_norms(net, X, y, loss="cross_entropy")
    assert norms[0] / norms[-1] < 1e-8                   # orders of magnitude
    assert all(a < b for a, b in zip(norms[:-1], norms[1:]))   # shrink towards the input
    # float32 underflows, the float64 view shows it
    net32 = net.copy(dtype="float32")
    n32 = gradient_norms(net32, X, y, loss="cross_entropy", dtype="float64")
    np.testing.assert_allclose(n32[-1], norms[-1], rtol=1e-3)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("activation,init", [("relu", "he_normal"), ("tanh", "glorot_normal")])
def test_relu_he_and_tanh_glorot_keep_gradients_in_range(digits, seed, activation, init):
    X, y = digits
    net = fastbp.Network([64] + [32] * 9 + [10], activation=activation, output="softmax",
                         init=init, dtype="float64", seed=seed)
    norms = np.array(gradient_norms(net, X, y, loss="cross_entropy"))
    assert 0.1 < norms[0] / norms[-1] < 10
    assert norms.max() / norms.min() < 20
