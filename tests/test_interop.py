"""A trained network leaves fastbp: ONNX export run by onnxruntime, PyTorch and scikit-learn
interchange, each checked by running the other side for real (skipped without it)."""
import numpy as np
import pytest

import fastbp
from fastbp.activations import names as activation_names

HIDDEN = sorted({fastbp.activations.get(a).name for a in activation_names()} - {"softmax"})
OUTPUTS = HIDDEN + ["softmax"]


def net_with(hidden, output, dtype, **kw):
    net = fastbp.Network([6, 9, 7, 4], activation=hidden, output=output, dtype=dtype, seed=3,
                         **kw)
    rng = np.random.default_rng(1)
    for b in net.biases:
        b[...] = rng.normal(scale=0.3, size=b.shape)
    for g, be, m, v in zip(net.gammas, net.betas, net.running_means, net.running_vars):
        if g is not None:
            g[...] = rng.uniform(0.5, 1.5, g.shape)
            be[...] = rng.normal(scale=0.2, size=be.shape)
            m[...] = rng.normal(scale=0.3, size=m.shape)
            v[...] = rng.uniform(0.5, 2.0, v.shape)
    return net


def X_for(dtype, n=50):
    return np.random.default_rng(0).normal(size=(n, 6)).astype(dtype)


# ---- ONNX ------------------------------------------------------------------------------

def run_onnx(model, X):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["Y"], {"X": X})[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", HIDDEN)
def test_onnx_every_hidden_activation(act, dtype):
    pytest.importorskip("onnx")
    net = net_with([act, "tanh"], "identity", dtype)
    X = X_for(dtype)
    model = fastbp.export.to_onnx(net)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(run_onnx(model, X), net.predict(X), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("out", OUTPUTS)
def test_onnx_every_output(out, dtype):
    pytest.importorskip("onnx")
    net = net_with("relu", out, dtype, batch_norm=True, dropout=0.3, input_dropout=0.1)
    X = X_for(dtype)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(run_onnx(fastbp.export.to_onnx(net), X), net.predict(X),
                               rtol=tol, atol=tol)


def test_onnx_on_real_data_with_a_dynamic_batch_and_a_file(tmp_path):
    onnx = pytest.importorskip("onnx")
    from fastbp.datasets import load_digits
    X, y = load_digits()
    net = fastbp.Network([64, 64, 10], activation="relu", output="softmax", seed=0,
                         batch_norm=True, dropout=0.2)
    fastbp.Trainer(net, optimizer="adam", batch_size=32, seed=0).fit(X, y, epochs=3)
    model = fastbp.export.to_onnx(net, tmp_path / "digits.onnx")
    back = onnx.load(str(tmp_path / "digits.onnx"))
    onnx.checker.check_model(back)
    assert back.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    for n in (1, 7, len(X)):
        np.testing.assert_allclose(run_onnx(back, X[:n].astype(np.float32)),
                                   net.predict(X[:n]), rtol=1e-5, atol=1e-6)
    assert model.opset_import[0].version == fastbp.export.DEFAULT_OPSET


def test_onnx_bad_input():
    pytest.importorskip("onnx")
    net = fastbp.Network([3, 2], seed=0)          # untrained: fine, it has weights
    fastbp.export.to_onnx(net)
    with pytest.raises(TypeError, match="net"):
        fastbp.export.to_onnx("net")
    with pytest.raises(ValueError, match="opset"):
        fastbp.export.to_onnx(net, opset=7)


# ---- PyTorch -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("out", OUTPUTS)
def test_to_torch_outputs_equal_predict_and_the_round_trip_is_exact(out, dtype):
    torch = pytest.importorskip("torch")
    for hidden, kw in [(["gelu", "lecun_tanh"], {}), (["step", "elu"], {}),
                       (["relu", "silu"], dict(batch_norm=True, dropout=[0.1, 0.2],
                                               input_dropout=0.05))]:
        net = net_with(hidden, out, dtype, **kw)
        X = X_for(dtype)
        module = net.to_torch()
        assert not module.training
        with torch.no_grad():
            got = module(torch.from_numpy(X)).numpy()
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(got, net.predict(X), rtol=tol, atol=tol)
        back = fastbp.Network.from_torch(module)
        assert back.activations == net.activations and back.dtype == net.dtype
        assert back.dropout == net.dropout and back.batch_norm == net.batch_norm
        np.testing.assert_array_equal(back.parameters, net.parameters)
        # fastbp keeps running statistics in float64, a float32 module in float32
        np.testing.assert_allclose(back.running_stats, net.running_stats,
                                   rtol=1e-7 if dtype == "float32" else 0)


def test_from_torch_takes_a_model_trained_in_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16),
                                torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 3))
    X = torch.randn(64, 6)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        model(X).pow(2).mean().backward()
        opt.step()
    model.eval()
    net = fastbp.Network.from_torch(model)
    with torch.no_grad():
        np.testing.assert_allclose(net.predict(X.numpy()), model(X).numpy(), rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.Conv1d(1, 1, 1)), "Conv1d"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.GELU()), "approximate"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2)), "LeakyReLU"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2)), "in_features"),
    (lambda nn: nn.Sequential(nn.ReLU(), nn.Linear(3, 4)), "start with Linear"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, eps=1e-3), nn.Linear(4, 1)),
     "eps"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Tanh()), "second activation"),
    (lambda nn: nn.Linear(3, 4), "Sequential")])
def test_from_torch_refuses_what_it_cannot_represent(bad, match):
    torch = pytest.importorskip("torch")
    with pytest.raises((ValueError, TypeError), match=match):
        fastbp.Network.from_torch(bad(torch.nn))


# ---- scikit-learn ------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
def test_from_sklearn_gives_sklearns_predictions(activation):
    neural = pytest.importorskip("sklearn.neural_network")
    from fastbp.datasets import load_digits
    X, y = load_digits(dtype="float64")
    import warnings
    warnings.simplefilter("ignore")          # not converged: fine here
    clf = neural.MLPClassifier((32,), activation=activation, max_iter=30, random_state=0)
    clf.fit(X, y)
    net = fastbp.Network.from_sklearn(clf)
    np.testing.assert_allclose(net.predict(X), clf.predict_proba(X), rtol=1e-12, atol=1e-14)
    reg = neural.MLPRegressor(hidden_layer_sizes=(16, 8), activation=activation, max_iter=20,
                              random_state=0)
    reg.fit(X, X[:, :3] / 16)
    net = fastbp.Network.from_sklearn(reg)
    np.testing.assert_allclose(net.predict(X), reg.predict(X), rtol=1e-12, atol=1e-14)
    binary = neural.MLPClassifier((8,), activation=activation, max_iter=20, random_state=0)
    binary.fit(X, y == 3)
    np.testing.assert_allclose(fastbp.Network.from_sklearn(binary).predict(X)[:, 0],
                               binary.predict_proba(X)[:, 1], rtol=1e-12, atol=1e-14)


def test_from_sklearn_refuses_an_unfitted_model():
    neural = pytest.importorskip("sklearn.neural_network")
    with pytest.raises(ValueError, match="not fitted"):
        fastbp.Network.from_sklearn(neural.MLPClassifier())
