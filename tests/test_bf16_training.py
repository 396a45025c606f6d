"""bfloat16 mixed-precision training (Trainer(precision="bf16")): every product of a step
against a NumPy reference with bf16-rounded operands, against float32 within bf16's
tolerance, the fused update, sharded steps, both implementations (native and the portable
emulation), checkpoints, scikit-learn's estimators, and the errors."""
import numpy as np
import pytest

import fastbp
from fastbp import _bf16, _engine

NATIVE = _bf16.bf16_cpu_capability() == "avx512_bf16"
MODES = ["emulate"] + (["native"] if NATIVE else [])
needs_native = pytest.mark.skipif(not NATIVE, reason="CPU or build lacks AVX512_BF16")



def R(a):
    """a rounded to bfloat16, as float64 (the products' operands)."""
    return _bf16.bf16_round(np.ascontiguousarray(a, dtype=np.float32)).astype(np.float64)


def reference(net, X, y, act, dact):
    """Loss, weight and bias gradients and dE/dX of a softmax-CE network whose products all
    take bf16-rounded operands (float64 sums), the rest in float64."""
    W = [w.astype(np.float64) for w in net.weights]
    b = [v.astype(np.float64) for v in net.biases]
    z, L = [X.astype(np.float64)], len(W)
    for l in range(L):
        pre = R(z[-1]) @ R(W[l]) + b[l]
        z.append(act(pre) if l < L - 1 else pre)
    e = np.exp(z[-1] - z[-1].max(axis=1, keepdims=True))
    out = e / e.sum(axis=1, keepdims=True)
    n = X.shape[0]
    loss = -np.mean(np.log(out[np.arange(n), y]))
    G = (out - np.eye(W[-1].shape[1])[y]) / n
    gW, gb = [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        gW[l] = R(z[l]).T @ R(G)
        gb[l] = G.sum(axis=0)
        G = (R(G) @ R(W[l]).T) * (dact(z[l]) if l > 0 else 1.0)
    return loss, gW, gb, G


TANH = (np.tanh, lambda z: 1 - z ** 2)
RELU = (lambda p: np.maximum(p, 0), lambda z: (z > 0).astype(np.float64))


@pytest.mark.parametrize("which", MODES)
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_gradients_match_rounded_reference(bf16_mode, which, act, rng):
    """Forward, dW and dX products in bf16, the rest float32: the reference with the same
    rounded operands agrees to float32 rounding; float32's own gradients differ by bf16's."""
    _bf16.set_bf16_mode(which)
    net = fastbp.Network([37, 64, 48, 7], activation=act, output="softmax", seed=4)
    X = rng.standard_normal((61, 37)).astype(np.float32)
    y = rng.integers(0, 7, 61)
    loss, g = net.loss_and_gradients(X, y, precision="bf16")
    ref_loss, gW, gb, dX = reference(net, X, y, *(TANH if act == "tanh" else RELU))
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    for l in range(3):
        scale = np.abs(gW[l]).max()
        np.testing.assert_allclose(g.weights[l], gW[l], rtol=0, atol=2e-5 * scale)
        np.testing.assert_allclose(g.biases[l], gb[l], rtol=0, atol=2e-5 * np.abs(gb[l]).max())
    np.testing.assert_allclose(g.inputs, dX, rtol=0, atol=2e-5 * np.abs(dX).max())
    _, g32 = net.loss_and_gradients(X, y)
    for l in range(3):
        diff = np.linalg.norm(g.weights[l] - g32.weights[l]) / np.linalg.norm(g32.weights[l])
        assert 1e-5 < diff < 0.1, (l, diff)   # bf16: 8 bits of mantissa; ReLU's kinks flip


@needs_native
def test_emulation_equals_native_gradients(bf16_mode, rng):
    net = fastbp.Network([30, 50, 20, 4], activation="relu", output="softmax", seed=1,
                         dropout=0.2)
    X = rng.standard_normal((40, 30)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    _bf16.set_bf16_mode("native")
    a = net.loss_and_gradients(X, y, precision="bf16", training=True, seed=3)[1].flat
    _bf16.set_bf16_mode("emulate")
    b = net.loss_and_gradients(X, y, precision="bf16", training=True, seed=3)[1].flat
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("optimizer,kw", [("sgd", {"momentum": 0.9}), ("sgd", {}),
                                          ("adam", {})])
def test_first_step_is_the_bf16_gradient(optimizer, kw, rng):
    """One full-batch step from a fresh Trainer: SGD moves the parameters by -lr times the
    gradient of loss_and_gradients(precision="bf16"), Adam by -lr * sign (its first step)."""
    net = fastbp.Network([20, 40, 30, 5], activation="tanh", output="softmax", seed=2)
    X = rng.standard_normal((64, 20)).astype(np.float32)
    y = rng.integers(0, 5, 64)
    _, g = net.loss_and_gradients(X, y, precision="bf16", inputs=False)
    before = net.parameters.copy()
    tr = fastbp.Trainer(net, optimizer=optimizer, lr=0.1, batch_size=64, n_threads=1,
                        seed=0, precision="bf16", **kw)
    tr.fit(X, y, epochs=1, shuffle=False)
    step = before - net.parameters
    if optimizer == "sgd":
        np.testing.assert_allclose(step, 0.1 * g.flat, rtol=1e-4, atol=1e-7)
    else:
        big = np.abs(g.flat) > 1e-4
        np.testing.assert_allclose(step[big], 0.1 * np.sign(g.flat[big]), rtol=1e-3)


def test_dropout_and_batch_norm_in_bf16(rng):
    """Dropout masks and batch norm run around bf16 products: the step equals -lr times
    loss_and_gradients(training=True, precision="bf16") with the step's mask, close to
    float32's within bf16's tolerance."""
    net = fastbp.Network([24, 32, 16, 3], activation="relu", output="softmax", seed=5,
                         batch_norm=True)
    X = rng.standard_normal((48, 24)).astype(np.float32)
    y = rng.integers(0, 3, 48)
    _, g = net.loss_and_gradients(X, y, precision="bf16", training=True, inputs=False)
    _, g32 = net.loss_and_gradients(X, y, training=True, inputs=False)
    assert 0 < np.abs(g.flat - g32.flat).max() < 0.03 * np.abs(g32.flat).max()
    before = net.parameters.copy()
    tr = fastbp.Trainer(net, optimizer="sgd", lr=0.05, batch_size=48, n_threads=2, seed=0,
                        precision="bf16")
    tr.fit(X, y, epochs=1, shuffle=False)
    np.testing.assert_allclose(before - net.parameters, 0.05 * g.flat, rtol=1e-4, atol=1e-7)


def test_sharded_steps_use_bf16(rng):
    """Small layers at 2 threads split the batch into shards, each with its own scratch:
    the step still equals the bf16 gradient's (to float32 summation order)."""
    net = fastbp.Network([64, 64, 64, 4], activation="tanh", output="softmax", seed=6)
    assert _engine.batch_shards(net.plan, 256, 2) > 1
    X = rng.standard_normal((256, 64)).astype(np.float32)
    y = rng.integers(0, 4, 256)
    _, g = net.loss_and_gradients(X, y, precision="bf16", inputs=False)
    _, g32 = net.loss_and_gradients(X, y, inputs=False)
    before = net.parameters.copy()
    tr = fastbp.Trainer(net, optimizer="sgd", lr=0.1, batch_size=256, n_threads=2, seed=0,
                        precision="bf16")
    tr.fit(X, y, epochs=1, shuffle=False)
    step = (before - net.parameters) / 0.1
    np.testing.assert_allclose(step, g.flat, rtol=0, atol=1e-5 * np.abs(g.flat).max())
    assert np.abs(step - g32.flat).max() > 1e-4 * np.abs(g32.flat).max()


def test_runs_repeat_and_learn(rng):
    """The same seed gives the same bits; bf16 training learns as float32 does."""
    X = rng.standard_normal((512, 20)).astype(np.float32)
    y = (X[:, :5].sum(axis=1) > 0).astype(int) + 2 * (X[:, 5] > 0)

    def run(precision):
        net = fastbp.Network([20, 64, 4], activation="relu", output="softmax", seed=0)
        tr = fastbp.Trainer(net, optimizer="adam", lr=0.01, batch_size=32, n_threads=2,
                            seed=1, precision=precision)
        hist = tr.fit(X, y, epochs=15)
        return net, hist

    a, ha = run("bf16")
    b, _ = run("bf16")
    np.testing.assert_array_equal(a.parameters, b.parameters)
    c, hc = run(None)
    assert ha.loss[-1] < 0.5 * ha.loss[0]
    assert abs(ha.loss[-1] - hc.loss[-1]) < 0.1 * hc.loss[0]
    acc = lambda n: np.mean(n.predict(X).argmax(axis=1) == y)   # noqa: E731
    assert acc(a) > 0.9 and abs(acc(a) - acc(c)) < 0.05


def test_precision_is_checked_and_saved(tmp_path, rng):
    net64 = fastbp.Network([8, 6, 3], dtype="float64", seed=0)
    with pytest.raises(ValueError, match="precision='bf16' needs a float32 network"):
        fastbp.Trainer(net64, precision="bf16")
    net = fastbp.Network([8, 6, 3], output="softmax", seed=0)
    with pytest.raises(ValueError, match="precision must be"):
        fastbp.Trainer(net, precision="fp8")
    with pytest.raises(ValueError, match="precision"):
        net.loss_and_gradients(np.zeros((2, 8), np.float32), [0, 1], precision="half")
    tr = fastbp.Trainer(net, precision="bfloat16", batch_size=4, seed=0)
    assert tr.precision == "bf16"
    assert fastbp.Trainer(net).precision == "float32"
    assert fastbp.Trainer(net, precision="fp32").precision == "float32"   # API-NEXT's name
    with pytest.raises(ValueError, match="precision must be"):
        fastbp.Trainer(net, precision="fp64")
    X = rng.standard_normal((16, 8)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    tr.fit(X, y, epochs=1)
    path = tmp_path / "ck.fbpc"
    tr.save_checkpoint(path)
    back = fastbp.Trainer.load_checkpoint(path)
    assert back.precision == "bf16" and back.net.dtype == np.float32
    np.testing.assert_array_equal(back.net.parameters, net.parameters)   # float32 masters
    tr.fit(X, y, epochs=1)
    back.fit(X, y, epochs=1)
    np.testing.assert_array_equal(back.net.parameters, net.parameters)


def test_state_rejects_bf16_for_float64():
    net = fastbp.Network([4, 3, 2], dtype="float64", seed=0)
    ws = _engine.Workspace(net.plan, 8, net.dtype, "train", 1)
    opt = fastbp.optimizers.SGD(lr=0.1)
    opt.ensure_state(net.plan.n_params, net.dtype)
    with pytest.raises(ValueError, match="precision 'bf16' needs float32"):
        _engine.TrainState(net.plan, net.parameters, ws, opt.config(), opt.state, 0,
                           batch_size=8, precision="bf16")


def test_train_many_passes_precision(rng):
    X = rng.standard_normal((64, 10)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    cfg = {"layer_sizes": [10, 16, 3], "output": "softmax", "seed": 0, "lr": 0.1,
           "batch_size": 16, "epochs": 2}
    nets = fastbp.train_many([dict(cfg, precision="bf16"), cfg], X, y, n_threads=1)
    alone = fastbp.Network([10, 16, 3], output="softmax", seed=0)
    fastbp.Trainer(alone, lr=0.1, batch_size=16, seed=0, n_threads=1,
                   precision="bf16").fit(X, y, epochs=2)
    got = [r.net if hasattr(r, "net") else r for r in nets]
    got = [g[0] if isinstance(g, tuple) else g for g in got]
    np.testing.assert_array_equal(got[0].parameters, alone.parameters)
    assert not np.array_equal(got[1].parameters, alone.parameters)


def test_sklearn_precision(rng):
    pytest.importorskip("sklearn")
    from fastbp.sklearn import MLPClassifier, MLPRegressor
    X = rng.standard_normal((200, 12))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    kw = dict(hidden_layer_sizes=(32,), max_iter=40, learning_rate_init=0.01, random_state=0)
    clf = MLPClassifier(precision="bf16", **kw).fit(X, y)
    assert clf.coefs_[0].dtype == np.float32 and clf.score(X, y) > 0.9
    ref = MLPClassifier(dtype="float32", **kw).fit(X, y)
    assert not np.array_equal(clf.coefs_[0], ref.coefs_[0])
    assert np.mean(clf.predict(X) == ref.predict(X)) > 0.95
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=20, random_state=0,
                       precision="bf16")
    reg.fit(X, X[:, 0])
    with pytest.raises(ValueError, match="needs solver 'sgd' or 'adam'"):
        MLPClassifier(solver="lbfgs", precision="bf16").fit(X, y)
    with pytest.raises(ValueError, match="dtype must be None or 'float32'"):
        MLPClassifier(dtype="float64", precision="bf16").fit(X, y)
    with pytest.raises(ValueError, match="precision"):
        MLPClassifier(precision="fp8").fit(X, y)


@pytest.mark.parametrize("which", MODES)
@pytest.mark.parametrize("opts", [{}, {"weight_decay": 1e-2},
                                  {"weight_decay": 1e-2, "decay_biases": True},
                                  {"max_norm": 0.5}, {"dropout": 0.3}],
                         ids=["plain", "decay", "decay_biases", "max_norm", "dropout"])
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_momentum_update_is_the_separate_pass(bf16_mode, which, opts, threads, rng):
    """bf16 SGD momentum updates each tile of W inside dW's product, while it is in cache:
    the same bits as the optimizer's own pass over the buffer, with tiles cut at the edges
    (widths that are not multiples of the 8 x 48 tile), two k blocks (300 rows > 256), a
    short last batch, weight decay on the weights only or on all, max-norm, dropout, and in
    both implementations; bit-exact because neither forms an FMA (_momentum.h)."""
    bf16_mode(which)
    dropout = opts.pop("dropout", 0.0)
    X = rng.standard_normal((700, 37)).astype(np.float32)
    y = rng.integers(0, 5, 700)

    def run(fused):
        old = _engine._set_fused_sgd(fused)
        count = _engine._fused_sgd_count()
        try:
            net = fastbp.Network([37, 53, 29, 5], activation="relu", output="softmax",
                                 seed=3, dropout=dropout)
            tr = fastbp.Trainer(net, optimizer="sgd", lr=0.05, momentum=0.9, batch_size=300,
                                n_threads=threads, seed=0, precision="bf16", **opts)
            tr.fit(X, y, epochs=3)
            return net, tr, _engine._fused_sgd_count() - count
        finally:
            _engine._set_fused_sgd(old)

    a, ta, n_fused = run(True)
    b, tb, n_separate = run(False)
    assert n_fused == 3 * 3 * 3 and n_separate == 0   # 3 epochs x 3 batches x 3 layers
    np.testing.assert_array_equal(a.parameters, b.parameters)
    np.testing.assert_array_equal(ta.optimizer.state.buffers["momentum_buffer"],
                                  tb.optimizer.state.buffers["momentum_buffer"])
    assert np.all(np.isfinite(a.parameters))


@pytest.mark.filterwarnings("ignore:training loss rose")
@pytest.mark.parametrize("which", MODES)
def test_fused_momentum_update_diverges_cleanly(bf16_mode, which, rng):
    """Weights that blow up through weight decay (lr * wd = 1000) while loss and gradient
    stay finite: the fused steps report the bounds of |p| and |buf| that the next step's
    overflow check reads (once it cannot rule an overflow out, the step is backed up and
    takes the separate pass), and training stops with TrainingDiverged at the same batch
    and the same last finite parameters as with the separate pass throughout."""
    bf16_mode(which)
    X = rng.standard_normal((64, 24)).astype(np.float32)
    Y = (rng.uniform(size=(64, 2)) > 0.5).astype(np.float32)

    def run(fused):
        old = _engine._set_fused_sgd(fused)
        count = _engine._fused_sgd_count()
        try:
            net = fastbp.Network([24, 16, 2], activation="tanh", output="sigmoid", seed=0)
            tr = fastbp.Trainer(net, loss="binary_cross_entropy", optimizer="sgd", lr=1.0,
                                weight_decay=1000.0, momentum=0.9, batch_size=8,
                                n_threads=1, precision="bf16", decay_biases=True)
            with pytest.raises(fastbp.TrainingDiverged) as info:
                tr.fit(X, Y, epochs=20, shuffle=False)
            return net, (info.value.epoch, info.value.batch), _engine._fused_sgd_count() - count
        finally:
            _engine._set_fused_sgd(old)

    a, where_a, n_fused = run(True)
    b, where_b, _ = run(False)
    assert n_fused > 0
    assert np.isfinite(a.parameters).all()
    assert where_a == where_b
    np.testing.assert_array_equal(a.parameters, b.parameters)
