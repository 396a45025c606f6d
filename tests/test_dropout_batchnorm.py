"""Dropout and batch normalization: the training pass against the NumPy reference (with the
engine's own masks) and PyTorch autograd, finite differences, evaluation mode, the running
statistics, masks that do not depend on threads, save/load/pickle/checkpoints, bad input."""
import pickle

import numpy as np
import pytest

import fastbp
from fastbp import _engine
import reference as ref


def make(dtype="float64", dropout=0.0, input_dropout=0.0, batch_norm=False, sizes=(5, 7, 6, 3),
         act=("tanh", "relu"), output="softmax", seed=0):
    net = fastbp.Network(list(sizes), activation=list(act), output=output, dtype=dtype,
                         seed=seed, dropout=dropout, input_dropout=input_dropout,
                         batch_norm=batch_norm)
    rng = np.random.default_rng(seed + 1)
    for b in net.biases:
        b[...] = rng.normal(scale=0.2, size=b.shape)
    for g, beta in zip(net.gammas, net.betas):
        if g is not None:
            g[...] = rng.uniform(0.5, 1.5, size=g.shape)
            beta[...] = rng.normal(scale=0.2, size=beta.shape)
    return net


def data(n=12, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, k, n)


def reference_grads(net, X, y, training, seed, loss="cross_entropy"):
    L = len(net.weights)
    rates = (net.input_dropout,) + tuple(net.dropout)
    masks = [None] * L
    if training:
        units = net.layer_sizes
        masks = [_engine.dropout_mask(seed, l, rates[l], X.shape[0], units[l])
                 if rates[l] > 0 else None for l in range(L)]
    bn = []
    for l in range(L):
        if net.gammas[l] is None:
            bn.append(None)
        else:
            bn.append(dict(gamma=net.gammas[l], beta=net.betas[l],
                           mean=None if training else net.running_means[l],
                           var=None if training else net.running_vars[l]))
    return ref.loss_and_gradients_regularized(net.weights, net.biases, list(net.activations),
                                              X, y, loss, masks, rates, bn)


CASES = {
    "dropout": dict(dropout=[0.3, 0.5]),
    "input-dropout": dict(input_dropout=0.2),
    "batch-norm": dict(batch_norm=True),
    "bn-one-layer": dict(batch_norm=[False, True]),
    "both": dict(dropout=0.25, input_dropout=0.1, batch_norm=True),
}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_gradients_equal_the_reference(case, training):
    net = make(**CASES[case])
    for m, v in zip(net.running_means, net.running_vars):
        if m is not None:
            m[...] = np.linspace(-0.3, 0.3, m.size)
            v[...] = np.linspace(0.5, 2.0, v.size)
    X, y = data()
    E, g = net.loss_and_gradients(X, y, training=training, seed=11)
    rE, rW, rb, rg, rbeta, rX = reference_grads(net, X, y, training, 11)
    assert E == pytest.approx(rE, rel=1e-12)
    for a, b in zip(g.weights + g.biases, rW + rb):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    for a, b in zip(g.gammas + g.betas, rg + rbeta):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g.inputs, rX, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_gradient_check_passes(case, training):
    net = make(**CASES[case], act=("tanh", "sigmoid"))
    X, y = data(n=8)
    assert fastbp.gradient_check(net, X, y, training=training, seed=5) < 1e-4   # fd noise / floor


def test_the_same_seed_gives_the_same_masks_and_a_different_seed_others():
    net = make(dropout=0.5)
    X, y = data()
    a = net.loss_and_gradients(X, y, training=True, seed=1)[1].flat
    b = net.loss_and_gradients(X, y, training=True, seed=1)[1].flat
    c = net.loss_and_gradients(X, y, training=True, seed=2)[1].flat
    e = net.loss_and_gradients(X, y)[1].flat
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, e)


def test_masks_have_the_rate_and_do_not_depend_on_the_chunking():
    m = _engine.dropout_mask(7, 2, 0.3, 400, 250)
    assert abs(1 - m.mean() - 0.3) < 0.01
    net = make(dropout=0.4, sizes=(5, 64, 64, 3))
    X, y = data(n=50)
    whole = net.loss_and_gradients(X, y, training=True, seed=3)
    chunked = net.loss_and_gradients(X, y, training=True, seed=3, chunk_size=7)
    assert whole[0] == pytest.approx(chunked[0], rel=1e-12)
    np.testing.assert_allclose(whole[1].flat, chunked[1].flat, rtol=1e-10, atol=1e-13)


def test_against_torch_batchnorm_and_dropout_in_train_mode():
    """nn.BatchNorm1d in train mode and dropout (with fastbp's masks applied by hand) under
    torch autograd: the same loss and gradients to 1e-9 (float64)."""
    torch = pytest.importorskip("torch")
    net = make(dropout=[0.3, 0.2], batch_norm=True)
    X, y = data(n=16)
    E, g = net.loss_and_gradients(X, y, training=True, seed=4)
    units = net.layer_sizes
    masks = [None] + [torch.from_numpy(_engine.dropout_mask(4, l, net.dropout[l - 1], 16,
                                                            units[l]).astype(np.float64))
                      for l in (1, 2)]
    lins = [torch.nn.Linear(a, b).double() for a, b in zip(units[:-1], units[1:])]
    bns = [torch.nn.BatchNorm1d(units[l + 1]).double() for l in range(2)]
    with torch.no_grad():
        for lin, W, b in zip(lins, net.weights, net.biases):
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        for bn, gm, bt in zip(bns, net.gammas, net.betas):
            bn.weight.copy_(torch.from_numpy(gm.copy()))
            bn.bias.copy_(torch.from_numpy(bt.copy()))
    Xt = torch.from_numpy(X).requires_grad_(True)
    z = torch.tanh(bns[0](lins[0](Xt)))
    z = z * masks[1] / (1 - 0.3)
    z = torch.relu(bns[1](lins[1](z)))
    z = z * masks[2] / (1 - 0.2)
    out = lins[2](z)
    loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y))
    loss.backward()
    assert E == pytest.approx(loss.item(), rel=1e-12)
    for lin, dW, db in zip(lins, g.weights, g.biases):
        np.testing.assert_allclose(dW, lin.weight.grad.numpy().T, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(db, lin.bias.grad.numpy(), rtol=1e-9, atol=1e-12)
    for bn, dg, dbt in zip(bns, g.gammas, g.betas):
        np.testing.assert_allclose(dg, bn.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(dbt, bn.bias.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g.inputs, Xt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_training_updates_the_running_statistics_as_torch():
    """One training step of full batch: the running mean and (unbiased) variance move by
    momentum 0.1 toward the batch's, as torch.nn.BatchNorm1d; predict then uses them."""
    torch = pytest.importorskip("torch")
    net = make(batch_norm=[True, False])
    X, y = data(n=20)
    a = X @ net.weights[0] + net.biases[0]
    bn = torch.nn.BatchNorm1d(7).double()
    bn.train()
    bn(torch.from_numpy(a))
    fastbp.Trainer(net, optimizer="sgd", lr=0.01, batch_size=None, n_threads=1).fit(
        X, y, epochs=1, shuffle=False)
    np.testing.assert_allclose(net.running_means[0], bn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(net.running_vars[0], bn.running_var.numpy(), rtol=1e-12)
    _, out = ref.forward(net.weights, net.biases, list(net.activations), X)   # no BN: differs
    rE, *_ = reference_grads(net, X, y, False, 0)
    assert net.loss(X, y) == pytest.approx(rE, rel=1e-12)
    assert not np.allclose(net.predict(X), out[-1])


def test_predict_is_evaluation_mode():
    net = make(dropout=0.5, batch_norm=True)
    X, y = data()
    p = net.predict(X)
    np.testing.assert_array_equal(p, net.predict(X))
    rE = reference_grads(net, X, y, False, 0)[0]
    assert net.loss(X, y) == pytest.approx(rE, rel=1e-12)
    np.testing.assert_allclose(p, net.copy().predict(X), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_is_reproducible_and_thread_count_only_rounds(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 100)).astype(dtype)
    y = rng.integers(0, 10, 512)
    ends = {}
    for nt in (1, 2, 2):
        for bn in (False, True):
            net = fastbp.Network([100, 64, 64, 10], activation="relu", output="softmax",
                                 dtype=dtype, seed=1, dropout=0.3, input_dropout=0.1,
                                 batch_norm=bn)
            fastbp.Trainer(net, lr=0.05, momentum=0.9, batch_size=128, n_threads=nt,
                           seed=0).fit(X, y, epochs=2)
            key = (nt, bn)
            if key in ends:
                np.testing.assert_array_equal(net.parameters, ends[key])   # bit-reproducible
            ends[key] = net.parameters.copy()
    tol = 1e-4 if dtype == "float32" else 1e-10
    for bn in (False, True):
        np.testing.assert_allclose(ends[(2, bn)], ends[(1, bn)], rtol=0, atol=tol)


def test_dropout_and_batch_norm_learn_digits():
    from fastbp.datasets import load_digits, train_test_split
    X, y = load_digits()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_fraction=0.3, seed=0)
    for kw in (dict(dropout=0.2), dict(batch_norm=True), dict(dropout=0.2, batch_norm=True)):
        net = fastbp.Network([64, 128, 10], activation="relu", output="softmax", seed=0,
                             init="he_normal", **kw)
        fastbp.Trainer(net, optimizer="adam", lr=3e-3, batch_size=32, seed=0).fit(
            Xtr, ytr, epochs=15)
        assert (net.predict(Xte).argmax(1) == yte).mean() > 0.94, kw


def test_save_load_pickle_copy_and_checkpoints_keep_everything(tmp_path):
    X, y = data(n=30)
    net = make(dropout=[0.2, 0.1], input_dropout=0.05, batch_norm=[True, False], dtype="float32")
    tr = fastbp.Trainer(net, batch_size=10, seed=0)
    tr.fit(X, y, epochs=2)
    assert net.running_means[0].any()
    net.save(tmp_path / "n.fbp")
    for other in (fastbp.Network.load(tmp_path / "n.fbp"), pickle.loads(pickle.dumps(net)),
                  net.copy()):
        assert other.dropout == (0.2, 0.1) and other.input_dropout == 0.05
        assert other.batch_norm == (True, False)
        np.testing.assert_array_equal(other.parameters, net.parameters)
        np.testing.assert_array_equal(other.running_stats, net.running_stats)
        np.testing.assert_array_equal(other.predict(X), net.predict(X))
    plain = fastbp.Network([3, 4, 2], seed=0)
    plain.save(tmp_path / "p.fbp")
    assert (tmp_path / "p.fbp").read_bytes()[8:12] == b"\x01\x00\x00\x00"   # format 1 still
    tr.save_checkpoint(tmp_path / "c.fbpc")
    back = fastbp.Trainer.load_checkpoint(tmp_path / "c.fbpc")
    np.testing.assert_array_equal(back.net.running_stats, net.running_stats)
    tr.fit(X, y, epochs=2)
    back.fit(X, y, epochs=2)
    np.testing.assert_array_equal(back.net.parameters, net.parameters)
    np.testing.assert_array_equal(back.net.running_stats, net.running_stats)


@pytest.mark.parametrize("kw, match", [
    (dict(dropout=1.0), "dropout"), (dict(dropout=-0.1), "dropout"),
    (dict(dropout=[0.1]), "dropout"), (dict(input_dropout=1.5), "input_dropout"),
    (dict(batch_norm="yes"), "batch_norm"), (dict(batch_norm=[True]), "batch_norm")])
def test_bad_options_name_the_argument(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fastbp.Network([4, 5, 6, 2], **kw)


def test_batch_norm_refuses_single_sample_batches_in_training():
    X, y = data(n=11)
    net = make(batch_norm=True)
    with pytest.raises(ValueError, match="batch_size.*2 samples"):
        fastbp.Trainer(net, batch_size=5).fit(X, y, epochs=1)      # the last batch has 1
    with pytest.raises(ValueError, match="batch_size"):
        fastbp.Trainer(net, batch_size=1).fit(X, y, epochs=1)
    fastbp.Trainer(net, batch_size=4).fit(X, y, epochs=1)


def test_health_reads_the_layers_through_batch_norm():
    net = make(batch_norm=True, act=("tanh", "tanh"))
    X, y = data(n=40)
    rows = fastbp.diagnostics.health(net, X, y)
    for i, row in enumerate(rows[:-1]):
        a = net.hidden_activations(X, i + 1)
        assert row["act_mean"] == pytest.approx(a.mean(), rel=1e-12)
        assert row["act_std"] == pytest.approx(a.std(), rel=1e-12)


def test_momentum_with_batch_norm_and_dropout_backs_up_only_when_a_bound_needs_it():
    """The overflow bound covers dropout's scale and batch norm's backward: an ordinary
    step writes no backup; weights blown up through weight decay stop with TrainingDiverged
    at finite parameters."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(256, 20)), rng.integers(0, 3, 256)
    net = fastbp.Network([20, 32, 32, 3], activation="relu", output="softmax", seed=0,
                         dropout=0.3, input_dropout=0.1, batch_norm=True)
    tr = fastbp.Trainer(net, lr=0.05, momentum=0.9, batch_size=32, n_threads=1, seed=0)
    tr.fit(X, y, epochs=1)
    tr._workspace.backup[:] = np.nan
    tr.fit(X, y, epochs=2)
    assert np.isnan(tr._workspace.backup).all() and np.isfinite(net.parameters).all()
    tr = fastbp.Trainer(net, lr=1.0, momentum=0.9, weight_decay=1e4, batch_size=32,
                        n_threads=1, seed=0)
    with pytest.raises(fastbp.TrainingDiverged):
        tr.fit(X, y, epochs=30)
    assert np.isfinite(net.parameters).all()
    for bn in ([False, True], [True, False]):          # either layer normalized
        net = fastbp.Network([20, 32, 32, 3], activation="relu", output="softmax", seed=0,
                             batch_norm=bn)
        tr = fastbp.Trainer(net, lr=1.0, momentum=0.9, weight_decay=1e4, batch_size=32,
                            n_threads=1, seed=0)
        with pytest.raises(fastbp.TrainingDiverged):
            tr.fit(X, y, epochs=30)
        assert np.isfinite(net.parameters).all()


def test_batch_norm_gradients_never_read_stale_buffer_contents():
    """A fresh training workspace is allocated, not zeroed: the first step's dgamma, dbeta
    must overwrite it (beta 0), so garbage there changes nothing."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((256, 20)).astype(np.float32), rng.integers(0, 4, 256)
    for opt in ("sgd", "adam"):
        ends = []
        for garbage in (False, True):
            net = fastbp.Network([20, 64, 64, 4], activation="relu", output="softmax",
                                 seed=1, batch_norm=True)
            tr = fastbp.Trainer(net, optimizer=opt, lr=1e-3, batch_size=32, n_threads=1,
                                seed=1)
            tr.fit(X, y, epochs=1)
            if garbage:
                tr._workspace.grads[:] = np.nan
            tr.fit(X, y, epochs=1)
            ends.append(net.parameters.copy())
        np.testing.assert_array_equal(ends[0], ends[1])


def test_a_nan_gradient_under_adam_stops_training_instead_of_being_skipped():
    """An overflowing product makes batch norm's statistics NaN, which ReLU hides from the
    loss; the NaN gradient must end in TrainingDiverged, not be flushed to 0 by Adam."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 20)).astype(np.float32), rng.integers(0, 4, 64)
    net = fastbp.Network([20, 16, 4], activation="relu", output="softmax", seed=1,
                         batch_norm=True)
    net.weights[0][...] = 3e38          # every row sum overflows float32
    before = net.parameters.copy()
    with pytest.raises(fastbp.TrainingDiverged):
        fastbp.Trainer(net, optimizer="adam", batch_size=32, n_threads=1).fit(X, y, epochs=1)
    np.testing.assert_array_equal(net.parameters, before)
