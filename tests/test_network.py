"""Network surface: parameter views, dtype, predict, persistence, pickling, errors."""
import os
import pickle
import threading

import numpy as np
import pytest

import fastbp
from reference import forward


def make(dtype="float32", **kw):
    kw.setdefault("activation", "tanh")
    kw.setdefault("output", "softmax")
    return fastbp.Network([6, 9, 7, 4], dtype=dtype, seed=3, **kw)


def test_views_are_live_and_share_one_buffer():
    net = make()
    assert net.layer_sizes == (6, 9, 7, 4)
    assert [w.shape for w in net.weights] == [(6, 9), (9, 7), (7, 4)]
    assert [b.shape for b in net.biases] == [(9,), (7,), (4,)]
    for arr in net.weights + net.biases:
        assert np.shares_memory(arr, net.parameters)
    assert net.parameters.size == 6 * 9 + 9 + 9 * 7 + 7 + 7 * 4 + 4
    X = np.random.default_rng(0).normal(size=(5, 6))
    before = net.predict(X)
    net.weights[2][...] = 0
    net.biases[2][...] = np.log([1, 2, 3, 4])
    after = net.predict(X)
    np.testing.assert_allclose(after, np.tile([0.1, 0.2, 0.3, 0.4], (5, 1)), rtol=1e-6)
    assert not np.allclose(before, after)


def test_biases_start_at_zero_and_seed_reproducible():
    a, b = make(), make()
    assert all((x == 0).all() for x in a.biases)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    c = fastbp.Network([6, 9, 7, 4], seed=4)
    assert not np.array_equal(a.parameters, c.parameters)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_matches_reference_and_keeps_dtype(dtype):
    net = make(dtype, activation=["relu", "sigmoid"])
    X = np.random.default_rng(1).normal(size=(33, 6))
    out = net.predict(X)
    assert out.dtype == np.dtype(dtype) and out.shape == (33, 4)
    ref = forward([w.astype(float) for w in net.weights], [b.astype(float) for b in net.biases],
                  list(net.activations), X)[1][-1]
    np.testing.assert_allclose(out, ref, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6)


def test_predict_is_chunked_with_identical_results():
    net = make("float64")
    X = np.random.default_rng(2).normal(size=(1000, 6))
    np.testing.assert_array_equal(net.predict(X, chunk_size=7), net.predict(X))
    assert net.predict(np.empty((0, 6))).shape == (0, 4)


@pytest.mark.parametrize("rows,dtype", [(300, "float64"), (3, "float32")])
def test_predict_from_many_threads_equals_serial(rows, dtype):
    # 3 float32 rows: the serving path, its workspaces shared through the network's pool
    net = fastbp.Network([20, 64, 64, 5], activation="gelu", seed=0, dtype=dtype)
    Xs = [np.random.default_rng(i).normal(size=(rows, 20)).astype(dtype) for i in range(8)]
    serial = [net.predict(X) for X in Xs]
    results = [None] * len(Xs)

    def work(i):
        for _ in range(5):
            results[i] = net.predict(Xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(Xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_bit_identical(tmp_path, dtype):
    net = make(dtype, activation=["elu", "silu"])
    path = tmp_path / "model.fbp"
    net.save(path)
    back = fastbp.Network.load(path)
    assert back.layer_sizes == net.layer_sizes and back.activations == net.activations
    assert back.dtype == net.dtype
    np.testing.assert_array_equal(back.parameters, net.parameters)
    X = np.random.default_rng(0).normal(size=(10, 6))
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    assert [p.name for p in tmp_path.iterdir()] == ["model.fbp"]   # no temporary left


def test_load_rejects_truncated_corrupt_and_foreign_files(tmp_path):
    net = make()
    path = tmp_path / "m.fbp"
    net.save(path)
    data = path.read_bytes()
    (tmp_path / "trunc").write_bytes(data[:-10])
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    (tmp_path / "flip").write_bytes(bytes(flipped))
    (tmp_path / "foreign").write_bytes(b"PK\x03\x04 this is a zip file, not a network" * 3)
    (tmp_path / "empty").write_bytes(b"")
    for name in ["trunc", "flip", "foreign", "empty"]:
        with pytest.raises(ValueError):
            fastbp.Network.load(tmp_path / name)
    with pytest.raises(OSError):
        fastbp.Network.load(tmp_path / "missing")


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    net = make()
    path = tmp_path / "m.fbp"
    net.save(path)
    original = path.read_bytes()
    other = make(activation="relu")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        other.save(path)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.fbp"]


def test_pickle_round_trip():
    net = make("float64", activation=["softsign", "lecun_tanh"])
    back = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(back.parameters, net.parameters)
    assert back.weights[0].base is not None and np.shares_memory(back.weights[0], back.parameters)
    X = np.random.default_rng(0).normal(size=(4, 6))
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    back.weights[0][...] = 0     # independent copy
    assert not np.array_equal(back.parameters, net.parameters)


def test_copy_to_other_dtype():
    net = make("float32")
    c = net.copy(dtype="float64")
    assert c.dtype == np.float64
    np.testing.assert_array_equal(c.parameters, net.parameters.astype(np.float64))


@pytest.mark.parametrize("kwargs, match", [
    (dict(layer_sizes=[5]), "layer_sizes"),
    (dict(layer_sizes=[5, 0, 2]), r"layer_sizes\[1\]"),
    (dict(layer_sizes=[5, 2.5, 2]), r"layer_sizes\[1\]"),
    (dict(activation="tanhh"), "valid names"),
    (dict(activation=["tanh"]), "one name per hidden layer"),
    (dict(activation="softmax"), "output activation"),
    (dict(output="nope"), "valid names"),
    (dict(dtype="float16"), "dtype"),
    (dict(dtype="int32"), "dtype"),
    (dict(init="nope"), "nope"),
    (dict(init=["zeros"]), "one initializer per layer"),
])
def test_constructor_errors_name_the_argument(kwargs, match):
    args = dict(layer_sizes=[5, 4, 3, 2])
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        fastbp.Network(args.pop("layer_sizes"), **args)


def test_predict_errors():
    net = make()
    with pytest.raises(ValueError, match="6 columns"):
        net.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="2-D"):
        net.predict(np.zeros(6))
    with pytest.raises(ValueError, match="NaN"):
        net.predict(np.full((2, 6), np.nan))
    with pytest.raises(ValueError, match="inf"):
        net.predict(np.full((2, 6), np.inf))
    with pytest.raises(TypeError, match="numeric"):
        net.predict(np.array([["a"] * 6]))
    with pytest.raises(ValueError, match="X contains inf"):
        fastbp.Network([2, 1], dtype="float32").predict(np.array([[1e300, 0.0]]))


def test_callable_and_per_layer_init():
    def ones(fan_in, fan_out, rng=None, dtype="float32"):
        return np.ones((fan_in, fan_out), dtype=dtype)

    net = fastbp.Network([3, 4, 2], init=[ones, "zeros"])
    assert (net.weights[0] == 1).all() and (net.weights[1] == 0).all()


@pytest.mark.parametrize("sizes,acts,output", [
    ([5, 3], [], "softmax"),
    ([6, 9, 4, 11, 7, 3], ["gelu", "relu", "silu", "tanh"], "softmax"),
    ([6, 9, 4, 11, 7, 3], ["silu", "gelu", "elu", "gelu"], "silu"),
    ([4] + [8] * 9 + [2], ["tanh", "relu"] * 4 + ["gelu"], "identity"),
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_predict_with_two_alternating_buffers_matches_the_reference(sizes, acts, output, dtype):
    """predict's workspace holds two hidden outputs that alternate and one pre-activation
    buffer (SiLU and GELU keep theirs, the output layer too): deep and mixed networks, chunks
    smaller than the data, agree with the reference forward."""
    rng = np.random.default_rng(5)
    net = fastbp.Network(sizes, activation=acts or "tanh", output=output, dtype=dtype, seed=2)
    for b in net.biases:
        b[...] = rng.normal(scale=0.3, size=b.shape)
    X = rng.normal(size=(37, sizes[0]))
    ref = forward([w.astype(float) for w in net.weights], [b.astype(float) for b in net.biases],
                  list(net.activations), X)[1][-1]
    tol = 1e-12 if dtype == "float64" else 1e-5
    for chunk in (37, 8, 1):
        np.testing.assert_allclose(net.predict(X, chunk_size=chunk), ref, rtol=tol, atol=tol)
    ws = net._workspace(37, 8, kind="predict")
    assert ws.buf.size == 8 * (2 * max(sizes[1:]) + max(
        [sizes[-1]] + [s for s, a in zip(sizes[1:-1], acts) if a in ("silu", "gelu")])) \
        + max(sizes[1:])         # the zero bias of activation passes after batch norm


def test_a_foreign_byte_order_is_refused_naming_the_argument():
    other = ">f4" if np.little_endian else "<f4"
    with pytest.raises(ValueError, match="dtype.*byte order"):
        fastbp.Network([2, 3, 1], dtype=other)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_on_a_few_rows_split_over_threads_equals_one_thread(dtype):
    # a few rows and a large B: the products are split over the columns (memory bound)
    net = fastbp.Network([300, 400, 256, 10], activation="relu", output="softmax",
                         dtype=dtype, seed=1)
    rng = np.random.default_rng(0)
    for rows in (1, 2, 3, 4, 5):
        X = rng.normal(size=(rows, 300))
        with fastbp.num_threads(1):
            one = net.predict(X)
        with fastbp.num_threads(2):
            np.testing.assert_array_equal(net.predict(X), one)
        ref = forward([w.astype(float) for w in net.weights],
                      [b.astype(float) for b in net.biases], list(net.activations), X)
        np.testing.assert_allclose(one, ref[1][-1],
                                   rtol=1e-4 if dtype == "float32" else 1e-12, atol=1e-6)


def test_the_serving_path_of_predict_equals_the_general_path_bit_for_bit():
    """A few rows of C-contiguous float32 take _engine.predict_rows (checks, pool and output
    in one compiled call); it must give the general path's bits, and hand anything else
    (other dtypes, layouts, byte order, sizes, NaN) back to the general path."""
    from fastbp import _blas, _engine
    net = fastbp.Network([30, 40, 20, 5], activation=["relu", "tanh"], output="softmax",
                         batch_norm=True, dropout=0.1, seed=3)
    net._running[:] = np.random.default_rng(1).uniform(0.5, 2, net._running.shape)
    rng = np.random.default_rng(0)
    pool = []
    rows_max = _blas.rows_kernel_rows()
    for rows in (1, 2, 7, 64, 65):
        X = rng.normal(size=(rows, 30)).astype(np.float32)
        general = net.predict(X, chunk_size=10_000)        # chunk_size: the general path
        fast = _engine.predict_rows(net._plan, pool, net._params, X, rows_max, 2, net._running)
        if rows <= min(rows_max, _engine.POOLED_ROWS):
            np.testing.assert_array_equal(fast, general)
            np.testing.assert_array_equal(net.predict(X), general)
            assert fast.dtype == np.float32 and fast.flags.c_contiguous
        else:
            assert fast is None
            np.testing.assert_array_equal(net.predict(X), general)
    assert 1 <= len(pool) <= 4
    X = rng.normal(size=(3, 30)).astype(np.float32)
    ref = net.predict(X, chunk_size=10_000)
    others = {"float64": X.astype(np.float64), "swapped": X.astype(X.dtype.newbyteorder()),
              "fortran": np.asfortranarray(X), "strided": np.repeat(X, 2, axis=1)[:, ::2],
              "list": X.tolist()}
    for name, Y in others.items():
        assert _engine.predict_rows(net._plan, pool, net._params, Y, rows_max, 1,
                                    net._running) is None, name
        np.testing.assert_allclose(net.predict(Y), ref, rtol=1e-6, atol=1e-7, err_msg=name)
    ro = X.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(net.predict(ro), ref)
    for bad in (np.nan, np.inf):
        Y = X.copy()
        Y[1, 4] = bad
        assert _engine.predict_rows(net._plan, pool, net._params, Y, rows_max, 1,
                                    net._running) is None
        with pytest.raises(ValueError, match="X contains"):
            net.predict(Y)
    with pytest.raises(ValueError, match="columns"):
        net.predict(X[:, :29].copy())
    with pytest.raises(ValueError, match="chunk_size"):
        net.predict(X, chunk_size=0)
