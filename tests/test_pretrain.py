"""Greedy layer-wise autoencoder pretraining."""
import numpy as np
import pytest

import fastbp
from fastbp.datasets import load_digits
from fastbp.pretrain import pretrain_autoencoders
from reference import forward

KW = {"optimizer": "adam", "lr": 1e-2, "batch_size": 32, "n_threads": 1}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits()                       # pixels in [0, 1]
    return X[:300], y[:300]


def sigmoid_net(seed=0, sizes=(64, 32, 16, 10), dtype="float32"):
    return fastbp.Network(list(sizes), activation="sigmoid", output="softmax", seed=seed,
                          dtype=dtype)


def test_reduces_reconstruction_loss_changes_hidden_not_output(digits):
    X, _ = digits
    net = sigmoid_net()
    start = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    out, records = pretrain_autoencoders(net, X, epochs=8, seed=0, return_losses=True, **KW)
    assert out is net
    assert [r["layer"] for r in records] == [0, 1]
    for r in records:
        assert r["final_loss"] < 0.7 * r["initial_loss"]
        assert len(r["history"]) == 8
        assert r["decoder"] == "sigmoid"                 # inputs and sigmoid codes in [0, 1]
        assert r["activation"] == "sigmoid"
    assert records[0]["shape"] == (64, 32) and records[1]["shape"] == (32, 16)
    for l in (0, 1):
        assert not np.allclose(net.weights[l], start[0][l])
        assert not np.allclose(net.biases[l], start[1][l])
    np.testing.assert_array_equal(net.weights[2], start[0][2])     # output layer untouched
    np.testing.assert_array_equal(net.biases[2], start[1][2])


def test_records_describe_the_trained_autoencoders(digits):
    """The reported loss is that of encoder (now in the net) + recorded decoder."""
    X, _ = digits
    net = sigmoid_net(dtype="float64")
    _, records = pretrain_autoencoders(net, X, epochs=3, seed=1, return_losses=True, **KW)
    z = X.astype(np.float64)
    for l, r in enumerate(records):
        W, b = net.weights[l], net.biases[l]
        recon = forward([W, r["decoder_weights"]], [b, r["decoder_bias"]],
                        ["sigmoid", r["decoder"]], z)[1][1]
        loss = 0.5 * np.sum((recon - z) ** 2) / len(z)
        assert loss == pytest.approx(r["final_loss"], rel=1e-9)
        z = forward([W], [b], ["sigmoid"], z)[1][0]       # the next layer's input


def test_encoder_starts_from_the_network_and_zero_epochs_change_nothing(digits):
    X, _ = digits
    net = sigmoid_net()
    before = net.parameters.copy()
    _, records = pretrain_autoencoders(net, X, epochs=0, return_losses=True, **KW)
    np.testing.assert_array_equal(net.parameters, before)
    assert all(r["initial_loss"] == r["final_loss"] and r["history"] == [] for r in records)


def test_same_seed_same_weights_and_fine_tuning_works(digits):
    X, y = digits
    a, b = sigmoid_net(seed=3), sigmoid_net(seed=3)
    pretrain_autoencoders(a, X, epochs=2, seed=7, **KW)
    pretrain_autoencoders(b, X, epochs=2, seed=7, **KW)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    h = fastbp.Trainer(a, loss="cross_entropy", optimizer="sgd", lr=0.1, momentum=0.9,
                       n_threads=1, seed=0).fit(X, y, epochs=5)
    assert h.loss[-1] < h.loss[0]


def test_layers_subset_decoder_choice_and_other_activations(digits):
    X, _ = digits
    Xs = (X - X.mean(axis=0)) / (X.std(axis=0) + 0.1)         # standardized: not in [0, 1]
    net = fastbp.Network([64, 24, 16, 12, 10], activation=["tanh", "relu", "tanh"],
                         output="softmax", seed=0)
    W0, W2 = net.weights[0].copy(), net.weights[2].copy()
    _, records = pretrain_autoencoders(net, Xs, epochs=2, layers=[1], seed=0,
                                       return_losses=True, **KW)
    assert [r["layer"] for r in records] == [1]
    assert records[0]["decoder"] == "identity"                 # tanh codes are not in [0, 1]
    np.testing.assert_array_equal(net.weights[0], W0)
    np.testing.assert_array_equal(net.weights[2], W2)
    _, records = pretrain_autoencoders(net, Xs, epochs=2, seed=0, return_losses=True,
                                       decoder="identity", init="glorot_uniform", **KW)
    assert [r["decoder"] for r in records] == ["identity"] * 3
    assert all(r["final_loss"] < r["initial_loss"] for r in records)


def test_denoising_and_binary_cross_entropy(digits):
    X, _ = digits
    net = sigmoid_net()
    _, records = pretrain_autoencoders(net, X, epochs=4, corruption=0.3, seed=0,
                                       loss="binary_cross_entropy", return_losses=True, **KW)
    for r in records:
        assert len(r["history"]) == 4
        assert r["final_loss"] < r["initial_loss"]


def test_no_hidden_layer_is_a_no_op():
    net = fastbp.Network([4, 3], output="softmax", seed=0)
    before = net.parameters.copy()
    out, records = pretrain_autoencoders(net, np.ones((5, 4)), epochs=3, return_losses=True)
    assert out is net and records == []
    np.testing.assert_array_equal(net.parameters, before)


def test_bad_arguments(digits):
    X, _ = digits
    net = sigmoid_net()
    with pytest.raises(TypeError, match="Network"):
        pretrain_autoencoders("net", X)
    with pytest.raises(ValueError, match="X"):
        pretrain_autoencoders(net, X[:, :10])
    with pytest.raises(ValueError, match="hidden layer"):
        pretrain_autoencoders(net, X, layers=[2])                # the output layer
    with pytest.raises(ValueError, match="corruption"):
        pretrain_autoencoders(net, X, corruption=1.0)
    with pytest.raises(ValueError, match="epochs"):
        pretrain_autoencoders(net, X, epochs=-1)
    with pytest.raises(ValueError, match="initializer"):
        pretrain_autoencoders(net, X, init="nonsense")
    with pytest.raises(ValueError):
        pretrain_autoencoders(net, X, optimizer="nonsense")
    with pytest.raises(ValueError):
        pretrain_autoencoders(net, X - 1, loss="binary_cross_entropy", decoder="identity")
