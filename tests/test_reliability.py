"""Reliability: property tests, bad input never crashes, Ctrl-C, concurrency, memory."""
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastbp
import reference as R

HIDDEN = ["identity", "sigmoid", "tanh", "lecun_tanh", "relu", "leaky_relu", "elu", "softplus",
          "softsign", "silu", "gelu"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_gradients_match_reference_for_random_networks(data):
    sizes = data.draw(st.lists(st.integers(1, 12), min_size=2, max_size=5), label="sizes")
    pairing = data.draw(st.sampled_from(sorted(R.PAIRINGS)), label="pairing")
    loss, output, kind = R.PAIRINGS[pairing]
    if kind == "binary1d":
        sizes[-1] = 1
    if output == "softmax" and sizes[-1] < 2:
        sizes[-1] = 2
    hidden = [data.draw(st.sampled_from(HIDDEN)) for _ in sizes[1:-1]]
    dtype = data.draw(st.sampled_from(["float32", "float64"]), label="dtype")
    n = data.draw(st.integers(1, 9), label="n")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    rng = np.random.default_rng(seed)
    net = fastbp.Network(sizes, activation=hidden, output=output, dtype=dtype, seed=seed)
    X = rng.normal(size=(n, sizes[0]))
    Y = R.random_targets(kind, n, sizes[-1], rng)
    value, grads = net.loss_and_gradients(X, Y, loss=loss)
    W = [w.astype(np.float64) for w in net.weights]
    b = [x.astype(np.float64) for x in net.biases]
    ref = R.loss_and_gradients(W, b, list(net.activations), X.astype(dtype).astype(np.float64),
                               Y, loss)
    tol = 1e-9 if dtype == "float64" else 2e-4
    scale = max(1.0, abs(ref[0]))
    assert abs(value - ref[0]) <= tol * scale
    for got, want in zip(grads.weights + grads.biases + [grads.inputs], ref[1] + ref[2] + [ref[3]]):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, atol=tol * max(1.0, np.abs(want).max()), rtol=0)


BAD_X = {
    "extra_column": lambda n, d: np.zeros((n, d + 1)),
    "1d": lambda n, d: np.zeros((n,)),
    "3d": lambda n, d: np.zeros((n, d, 1)),
    "nan": lambda n, d: np.full((n, d), np.nan),
    "inf": lambda n, d: np.full((n, d), -np.inf),
    "empty": lambda n, d: np.zeros((0, d)),
    "strings": lambda n, d: np.array([["x"] * d] * n),
    "complex": lambda n, d: np.zeros((n, d), dtype=complex),
    "objects": lambda n, d: [[object()] * d] * n,
}


def _targets(n):
    labels = np.zeros(n, dtype=np.int64)
    return {"ok": labels, "nan": np.full(n, np.nan), "short": labels[:-1],
            "label_oob": labels + 3, "label_frac": labels + 0.5, "wide": np.zeros((n, 7))}


@settings(max_examples=80, deadline=None)
@given(x_case=st.sampled_from(sorted(BAD_X)), n=st.integers(1, 5), d=st.integers(1, 6),
       target=st.sampled_from(sorted(_targets(1))),
       api=st.sampled_from(["predict", "grad", "fit"]))
def test_bad_inputs_raise_clean_errors(x_case, n, d, target, api):
    net = fastbp.Network([d, 4, 3], activation="tanh", output="softmax", seed=0)
    X, y = BAD_X[x_case](n, d), _targets(n)[target]
    if api == "predict" and x_case == "empty":
        out = net.predict(X)                        # no samples, no predictions: not an error
        assert out.shape == (0, 3) and out.dtype == net.dtype
    else:
        with pytest.raises((ValueError, TypeError), match=r"^X\b"):   # X is checked first
            if api == "predict":
                net.predict(X)
            elif api == "grad":
                net.loss_and_gradients(X, y, loss="cross_entropy")
            else:
                fastbp.Trainer(net, batch_size=2).fit(X, y, epochs=1)
    # and a good call still works afterwards
    assert net.predict(np.zeros((n, d))).shape == (n, 3)


@pytest.mark.parametrize("target", ["nan", "short", "label_oob", "label_frac", "wide"])
@pytest.mark.parametrize("api, name", [("grad", "Y"), ("fit", "y")])
def test_bad_targets_name_the_argument(target, api, name):
    # the targets are Y for Network methods, y for Trainer.fit (as in scikit-learn)
    net = fastbp.Network([3, 4, 3], activation="tanh", output="softmax", seed=0)
    X, y = np.zeros((4, 3)), _targets(4)[target]
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        if api == "grad":
            net.loss_and_gradients(X, y, loss="cross_entropy")
        else:
            fastbp.Trainer(net, batch_size=2).fit(X, y, epochs=1)
    assert net.loss_and_gradients(X, _targets(4)["ok"], loss="cross_entropy")[0] > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0), "lr"), (dict(lr=-1), "lr"), (dict(batch_size=0), "batch_size"),
    (dict(momentum=1.0), "momentum"), (dict(momentum=-0.1), "momentum"),
    (dict(n_threads=0), "n_threads"), (dict(optimizer="bfgs"), "valid names"),
    (dict(loss="hinge"), "valid names"), (dict(loss="binary_cross_entropy"), "sigmoid"),
    (dict(optimizer="adam", momentum=0.9), "momentum"), (dict(weight_decay=-1), "weight_decay"),
])
def test_invalid_hyperparameters_name_the_argument(kwargs, match):
    net = fastbp.Network([3, 4, 2], output="softmax")
    with pytest.raises((ValueError, TypeError), match=match):
        fastbp.Trainer(net, **kwargs)


def test_integer_and_float64_input_is_converted_for_float32_network():
    net = fastbp.Network([3, 5, 2], seed=0)
    Xi = np.arange(12).reshape(4, 3)
    np.testing.assert_array_equal(net.predict(Xi), net.predict(Xi.astype(np.float32)))
    assert net.predict(Xi.astype(np.float64)).dtype == np.float32


def test_training_one_network_while_another_predicts():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 20)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    a = fastbp.Network([20, 64, 2], activation="relu", output="softmax", seed=1)
    b = fastbp.Network([20, 64, 2], activation="relu", output="softmax", seed=2)
    expected = b.predict(X)
    errors = []

    def predict_loop():
        for _ in range(30):
            if not np.array_equal(b.predict(X), expected):
                errors.append("prediction changed")

    t = threading.Thread(target=predict_loop)
    t.start()
    fastbp.Trainer(a, lr=0.05, momentum=0.9, seed=0).fit(X, y, epochs=5)
    t.join()
    assert not errors
    assert np.isfinite(a.parameters).all()


def test_no_memory_growth_over_many_epochs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 10))
    y = rng.integers(0, 3, 256)
    net = fastbp.Network([10, 16, 3], output="softmax", seed=0)
    tr = fastbp.Trainer(net, batch_size=16, seed=0)
    tr.fit(X, y, epochs=5)
    tracemalloc.start()
    tr.fit(X, y, epochs=20)
    first, _ = tracemalloc.get_traced_memory()
    tr.fit(X, y, epochs=300)
    second, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert second - first < 64 * 1024, (first, second)


@pytest.mark.parametrize("catch", [False, True])
def test_ctrl_c_stops_fit_quickly_and_keeps_a_consistent_state(tmp_path, catch):
    """Ctrl-C stops fit within about a second with the network and the History consistent;
    the KeyboardInterrupt reaches the caller (its ``history`` attribute, and the trainer's,
    hold the completed epochs), or with catch_interrupt=True fit returns the History."""
    # the child restores Python's SIGINT handler: a shell starting the tests in the
    # background (``cmd &``) makes them, and so the child, ignore SIGINT
    script = textwrap.dedent(f"""
        import signal, sys, time, numpy as np, fastbp
        signal.signal(signal.SIGINT, signal.default_int_handler)
        rng = np.random.default_rng(0)
        X = rng.normal(size=(20000, 100)).astype(np.float32)
        y = rng.integers(0, 10, 20000)
        net = fastbp.Network([100, 256, 256, 10], activation="relu", output="softmax", seed=0)
        tr = fastbp.Trainer(net, lr=0.01, momentum=0.9, batch_size=32, seed=0, n_threads=1)
        print("start", flush=True)
        try:
            h = tr.fit(X, y, epochs=1000, catch_interrupt={catch})
            how = "returned"
        except KeyboardInterrupt as e:
            h, how = e.history, "raised"
        print(how, h.interrupted, len(h.loss), tr.epoch, len(tr.history),
              bool(np.isfinite(net.parameters).all()), flush=True)
    """)
    path = tmp_path / "run.py"
    path.write_text(script)
    proc = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    time.sleep(1.5)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    waited = time.perf_counter() - sent
    assert proc.returncode == 0, err
    fields = out.split()
    assert fields[0] == ("returned" if catch else "raised") and fields[1] == "True"
    assert int(fields[2]) == int(fields[3]) == int(fields[4])   # every completed epoch
    assert fields[5] == "True"
    assert waited < 3.0, waited                      # < 1 s of compute + interpreter exit
    assert "interrupted" in err


def test_predict_streams_in_chunks_with_bounded_memory():
    # 200k rows through a 512-wide hidden layer: a whole-batch forward would need
    # 200k x 512 x 4 B = 400 MB of activations; chunked, only the output is allocated.
    net = fastbp.Network([8, 512, 3], activation="relu", seed=0)
    X = np.random.default_rng(0).normal(size=(200_000, 8)).astype(np.float32)
    tracemalloc.start()
    out = net.predict(X)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.shape == (200_000, 3)
    assert peak < out.nbytes + 16 * 2**20, peak


def test_fit_peak_memory_is_batch_sized_not_data_sized():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100_000, 16)).astype(np.float32)
    y = rng.integers(0, 4, 100_000)
    net = fastbp.Network([16, 256, 4], activation="relu", output="softmax", seed=0)
    tr = fastbp.Trainer(net, batch_size=64, seed=0)
    tracemalloc.start()
    tr.fit(X, y, epochs=1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # permutation (8 B/sample) + parameters, gradients, optimizer state + batch workspace;
    # far below one hidden activation matrix of the data set (100k x 256 x 4 B = 100 MB)
    assert peak < 100_000 * 8 + 8 * 2**20, peak
