"""fastbp.sklearn's estimators through skl2onnx: converters registered without being asked,
alone and in Pipelines, run by onnxruntime against predict / predict_proba (skipped
without skl2onnx or onnxruntime)."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import fastbp  # noqa: E402
from fastbp.activations import names as activation_names  # noqa: E402
from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

HIDDEN = sorted({fastbp.activations.get(a).name for a in activation_names()}
                - {"softmax", "step"})        # step: no gradient, not trainable


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:500], y[:500]


def fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def run(model, X):
    """{output name: value} of the ONNX model on X (ZipMap's list of dicts as a matrix)."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: X})
    res = {}
    for o, value in zip(sess.get_outputs(), out):
        if isinstance(value, list):           # ZipMap: one {class: probability} per row
            value = np.array([[row[k] for k in sorted(row)] for row in value])
        res[o.name] = value
    return res


def check_classifier(pipe, X, zipmap=True, tol=1e-5):
    clf = pipe.steps[-1][1] if hasattr(pipe, "steps") else pipe
    X32 = X.astype(np.float32)
    options = None if zipmap else {id(clf): {"zipmap": False}}
    out = run(skl2onnx.to_onnx(pipe, X32[:1], options=options), X32)
    label, proba = (out["output_label"], out["output_probability"]) if zipmap else (
        out["label"], out["probabilities"])
    np.testing.assert_array_equal(label, pipe.predict(X))
    np.testing.assert_allclose(proba, pipe.predict_proba(X), rtol=0, atol=tol)
    return label, proba


# ---- registration ------------------------------------------------------------------------

def _python(code):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(fastbp.__file__)),
                                         env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


REGISTERED = (
    "from skl2onnx._supported_operators import sklearn_operator_name_map as m\n"
    "from fastbp.sklearn import MLPClassifier, MLPRegressor\n"
    "assert m[MLPClassifier] == 'FastbpMLPClassifier', m.get(MLPClassifier)\n"
    "assert m[MLPRegressor] == 'FastbpMLPRegressor', m.get(MLPRegressor)\n")


def test_registered_when_skl2onnx_is_imported_later():
    """fastbp.sklearn does not import skl2onnx (~0.75 s with onnx); importing skl2onnx
    afterwards registers the converters, and leaves skl2onnx its own loader."""
    print(_python(
        "import sys, importlib.machinery\n"
        "import fastbp.sklearn\n"
        "assert 'skl2onnx' not in sys.modules and 'onnx' not in sys.modules\n"
        "import skl2onnx\n" + REGISTERED +
        "assert isinstance(skl2onnx.__loader__, importlib.machinery.SourceFileLoader)\n"
        "assert skl2onnx.__spec__.loader is skl2onnx.__loader__\n"
        "assert not any(type(f).__name__ == '_Skl2onnxHook' for f in sys.meta_path)\n"
        "print('ok')"))


def test_registered_when_skl2onnx_was_imported_first():
    assert _python("import skl2onnx\nimport fastbp.sklearn\n" + REGISTERED + "print('ok')") \
        == "ok"


def test_registered_by_from_import_of_a_submodule():
    assert _python("import fastbp.sklearn\nfrom skl2onnx.common.data_types import "
                   "FloatTensorType\n" + REGISTERED + "print('ok')") == "ok"


def test_register_skl2onnx_is_public_and_idempotent(digits):
    X, y = digits
    fastbp.sklearn.register_skl2onnx()
    fastbp.sklearn.register_skl2onnx()
    check_classifier(fit(MLPClassifier((8,), max_iter=5, random_state=0), X, y), X)


# ---- classifiers -------------------------------------------------------------------------

@pytest.mark.parametrize("option", [dict(activation="relu"), dict(activation="gelu"),
                                    dict(activation="relu", batch_norm=True, dropout=0.2),
                                    dict(activation="tanh", dtype="float32")],
                         ids=["relu", "gelu", "relu+bn+dropout", "tanh-float32"])
@pytest.mark.parametrize("zipmap", [True, False])
def test_pipeline_digits(digits, option, zipmap):
    X, y = digits
    pipe = fit(make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=30, random_state=0,
                                                             **option)), X, y)
    label, _ = check_classifier(pipe, X, zipmap=zipmap)
    assert label.dtype == np.int64


@pytest.mark.parametrize("option", [dict(activation="relu"), dict(activation="gelu"),
                                    dict(activation="elu", batch_norm=True)],
                         ids=["relu", "gelu", "elu+bn"])
@pytest.mark.parametrize("zipmap", [True, False])
def test_pipeline_binary_string_classes(digits, option, zipmap):
    X, y = digits
    y = np.where(y % 2 == 0, "even", "odd")
    pipe = fit(make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=20, random_state=0,
                                                             **option)), X, y)
    label, proba = check_classifier(pipe, X, zipmap=zipmap)
    assert set(label) == {"even", "odd"} and proba.shape == (len(X), 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", HIDDEN)
def test_every_activation_in_both_dtypes(digits, act, dtype):
    X, y = digits
    clf = fit(MLPClassifier((12,), activation=act, batch_norm=True, max_iter=5, random_state=0,
                            dtype=dtype), X / 16, y)
    check_classifier(clf, X / 16, zipmap=False)
    # float64 input (DoubleTensorType): the graph casts it when the network is float32
    out = run(skl2onnx.to_onnx(clf, X[:1] / 16, options={"zipmap": False}), X / 16)
    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(X / 16), rtol=0,
                               atol=1e-12 if dtype == "float64" else 1e-5)
    assert out["probabilities"].dtype == np.float64


def test_multilabel_as_sklearns_converter(digits):
    X, y = digits
    Y = np.c_[y % 2, y % 3 == 0, y > 5]
    clf = fit(MLPClassifier((16,), max_iter=20, random_state=0), X / 16, Y)
    out = run(skl2onnx.to_onnx(clf, X[:1].astype(np.float32) / 16,
                               options={"zipmap": False}), (X / 16).astype(np.float32))
    np.testing.assert_array_equal(out["label"], clf.predict(X / 16))
    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(X / 16), atol=1e-5)


def test_classifier_options_and_label_types(digits):
    X, y = digits
    X = X / 16
    clf = fit(MLPClassifier((10,), max_iter=10, random_state=0), X, y + 3)
    X32 = X.astype(np.float32)
    out = run(skl2onnx.to_onnx(clf, X32[:1], options={"zipmap": "columns"}), X32)
    assert sorted(k for k in out if k != "output_label") == sorted(f"i{c}" for c in range(3, 13))
    np.testing.assert_allclose(out["i5"], clf.predict_proba(X)[:, 2], atol=1e-5)
    out = run(skl2onnx.to_onnx(clf, X32[:1], options={"zipmap": False, "nocl": True}), X32)
    np.testing.assert_array_equal(out["label"], clf.predict(X) - 3)     # class indices
    out = run(skl2onnx.to_onnx(clf, X32[:1], options={"zipmap": False,
                                                      "output_class_labels": True}), X32)
    np.testing.assert_array_equal(out["class_labels"], clf.classes_)
    # bool and integral float classes give int64 labels (as skl2onnx does for scikit-learn's)
    for yy in (y % 2 == 0, (y % 3).astype(float)):
        clf = fit(MLPClassifier((6,), max_iter=5, random_state=0), X, yy)
        out = run(skl2onnx.to_onnx(clf, X[:1], options={"zipmap": False}), X)
        assert out["label"].dtype == np.int64
        np.testing.assert_array_equal(out["label"], clf.predict(X).astype(np.int64))


# ---- regressors --------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_regressor_pipeline(digits, loss, n_outputs):
    X, _ = digits
    rng = np.random.default_rng(0)
    y = np.exp(X[:, :3] / 16 + rng.normal(scale=0.1, size=(len(X), 3)))
    y = y[:, 0] if n_outputs == 1 else y
    pipe = fit(make_pipeline(StandardScaler(), MLPRegressor(
        loss=loss, hidden_layer_sizes=(16,), activation="silu", max_iter=20,
        random_state=0)), X, y)
    for Xin, tol in ((X.astype(np.float32), 1e-5), (X.astype(np.float64), 1e-12)):
        out = run(skl2onnx.to_onnx(pipe, Xin[:1]), Xin)["variable"]
        assert out.shape == (len(X), n_outputs) and out.dtype == Xin.dtype
        np.testing.assert_allclose(out.reshape(np.shape(y)), pipe.predict(X), rtol=tol,
                                   atol=tol)


def test_regressor_with_batch_norm_float32(digits):
    X, y = digits
    reg = fit(MLPRegressor(hidden_layer_sizes=(16, 8), activation="gelu", batch_norm=True,
                           dropout=0.1, max_iter=10, random_state=0, dtype="float32"),
              X / 16, y / 10)
    out = run(skl2onnx.to_onnx(reg, X[:1].astype(np.float32)), (X / 16).astype(np.float32))
    np.testing.assert_allclose(out["variable"][:, 0], reg.predict(X / 16), rtol=1e-5, atol=1e-5)


# ---- bad input -----------------------------------------------------------------------------

def test_conversion_errors(digits):
    X, y = digits
    for est in (MLPClassifier(), MLPRegressor()):
        with pytest.raises(NotFittedError, match=f"{type(est).__name__} instance is not fitted"):
            skl2onnx.to_onnx(est, X[:1].astype(np.float32))
    clf = fit(MLPClassifier((6,), max_iter=3, random_state=0), X, y)
    with pytest.raises(ValueError, match="expects 64 features, the ONNX input has 10"):
        skl2onnx.to_onnx(clf, X[:1, :10].astype(np.float32))
    with pytest.raises(ValueError, match="needs target_opset 13 or newer, got 12"):
        skl2onnx.to_onnx(clf, X[:1].astype(np.float32), target_opset=12)
