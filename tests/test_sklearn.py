"""fastbp.sklearn: drop-in MLPClassifier / MLPRegressor.

Checks the scikit-learn contract (check_estimator), equivalence with scikit-learn's
estimators (same initial weights, no shuffling -> same coefs_ within float tolerance),
the fitted attributes, warnings and errors, sparse input, pickling, Pipeline and
GridSearchCV(n_jobs=2), the fastbp extras, and that fastbp does not need scikit-learn.
"""
import contextlib
import importlib.util
import inspect
import io
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

import scipy.sparse as sp  # noqa: E402
from sklearn.datasets import load_digits, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastbp  # noqa: E402
import fastbp.sklearn as fsk  # noqa: E402
from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:360] / 16.0, y[:360]


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=240, n_features=8, n_targets=2, noise=0.1, random_state=0)
    return X, y / 100.0


def max_diff(a, b):
    return max(float(np.abs(np.asarray(p) - np.asarray(q)).max())
               for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))


# ---- 3. scikit-learn is optional ------------------------------------------------------------

def test_fastbp_imports_without_sklearn():
    code = (
        "import sys\n"
        "sys.modules['sklearn'] = None\n"          # makes 'import sklearn' raise ImportError
        "import fastbp\n"
        "assert 'fastbp.sklearn' not in sys.modules\n"
        "try:\n"
        "    import fastbp.sklearn\n"
        "except ImportError as e:\n"
        "    assert 'pip install fastbp[sklearn]' in str(e), str(e)\n"
        "    print('ok')\n"
        "else:\n"
        "    raise SystemExit('no ImportError')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(fastbp.__file__)),
                                         env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_fastbp_init_does_not_import_sklearn_module():
    with open(os.path.join(os.path.dirname(fastbp.__file__), "__init__.py")) as f:
        assert "sklearn" not in f.read()


# ---- 4. the scikit-learn estimator contract ------------------------------------------------

@parametrize_with_checks([
    MLPClassifier(max_iter=100, n_threads=1),
    MLPRegressor(max_iter=100, n_threads=1),
    MLPClassifier(solver="lbfgs", max_iter=30, n_threads=1),
    MLPRegressor(solver="sgd", max_iter=100, n_threads=1),
])
def test_check_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ---- 1. same interface ------------------------------------------------------------------

def _norm(constraint):
    """A comparable form of a scikit-learn parameter constraint (sets print unordered)."""
    if hasattr(constraint, "options"):
        return (type(constraint).__name__, frozenset(constraint.options))
    return str(constraint)


@pytest.mark.parametrize("ours, theirs", [(MLPClassifier, SkMLPClassifier),
                                          (MLPRegressor, SkMLPRegressor)])
def test_same_constructor_parameters_and_defaults(ours, theirs):
    mine = inspect.signature(ours).parameters
    ref = inspect.signature(theirs).parameters
    for name, p in ref.items():
        assert name in mine, name
        assert mine[name].default == p.default, name
        assert mine[name].kind == p.kind, name
    extras = {name: p.default for name, p in mine.items() if name not in ref}
    expected = dict(init=None, n_threads=None, dtype=None, callbacks=None, dropout=0.0,
                    input_dropout=0.0, batch_norm=False, l1=0.0, clip_norm=None, max_norm=None,
                    precision=None)
    if ours is MLPClassifier:
        expected["class_weight"] = None
    assert extras == expected
    for name in extras:   # keyword-only, each with a validation constraint
        assert mine[name].kind == inspect.Parameter.KEYWORD_ONLY
        assert name in ours._parameter_constraints, name
    for name in ref:   # the same parameter validation as scikit-learn's
        if name in theirs._parameter_constraints and name != "activation":
            assert [_norm(c) for c in ours._parameter_constraints[name]] == [
                _norm(c) for c in theirs._parameter_constraints[name]], name


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_same_fitted_attributes(digits, solver, early_stopping):
    X, y = digits
    kw = dict(hidden_layer_sizes=(12,), solver=solver, max_iter=3, random_state=0,
              early_stopping=early_stopping)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = SkMLPClassifier(**kw).fit(X, y)
        b = MLPClassifier(**kw).fit(X, y)
    public = lambda est: {k for k in vars(est) if k.endswith("_") and not k.startswith("_")}
    extra = {"n_threads_"} | ({"validation_loss_curve_"} if solver != "lbfgs" else set())
    assert public(b) == public(a) | extra
    for name in public(a):
        va, vb = getattr(a, name), getattr(b, name)
        assert type(va) is type(vb) or (np.isscalar(va) and np.isscalar(vb)), name
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert ca.shape == cb.shape and ca.dtype == cb.dtype
    assert (b.n_layers_, b.n_outputs_, b.out_activation_, b.t_, b.n_iter_) == (
        a.n_layers_, a.n_outputs_, a.out_activation_, a.t_, a.n_iter_)
    np.testing.assert_array_equal(a.classes_, b.classes_)
    if early_stopping and solver != "lbfgs":
        assert len(b.validation_scores_) == len(b.loss_curve_) == len(b.validation_loss_curve_)


def test_same_initial_weights_as_sklearn(digits):
    """Default initialization draws scikit-learn's Glorot-uniform weights and biases from
    random_state in scikit-learn's order; with learning_rate_init tiny the first epoch
    hardly moves them."""
    X, y = digits
    for activation in ["relu", "logistic"]:
        kw = dict(hidden_layer_sizes=(9, 7), activation=activation, random_state=3,
                  max_iter=1, solver="sgd", learning_rate_init=1e-12, momentum=0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            assert max_diff(SkMLPClassifier(**kw).fit(X, y), MLPClassifier(**kw).fit(X, y)) < 1e-9


# ---- 5. equivalence: same initial weights, no shuffling -> same coefs_ -----------------

def _fit_from(est, X, y, coefs, intercepts, **fit_kw):
    """One warm-start pass to create the attributes, then the same initial weights."""
    est.set_params(warm_start=True)
    max_iter = est.max_iter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_params(max_iter=1).fit(X, y, **fit_kw)
        est.coefs_ = [c.copy() for c in coefs]
        est.intercepts_ = [i.copy() for i in intercepts]
        est.set_params(max_iter=max_iter).fit(X, y, **fit_kw)
    return est


def _random_weights(sizes, seed):
    rng = np.random.default_rng(seed)
    coefs = [rng.uniform(-0.3, 0.3, (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    intercepts = [rng.uniform(-0.3, 0.3, b) for b in sizes[1:]]
    return coefs, intercepts


@pytest.mark.parametrize("solver, extra", [
    ("sgd", {}),
    ("adam", {}),
    ("sgd", dict(nesterovs_momentum=False, batch_size=50, alpha=0.01)),
    ("sgd", dict(momentum=0.0, learning_rate="invscaling", learning_rate_init=0.05)),
    ("adam", dict(batch_size=64, alpha=0.1, beta_1=0.8, beta_2=0.99, epsilon=1e-6)),
])
@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel"])
def test_one_epoch_equals_sklearn(digits, solver, extra, task):
    X, y = digits
    y = {"multiclass": y, "binary": y % 2, "multilabel": np.c_[y % 2, y % 3 == 0, y > 5]}[task]
    n_out = {"multiclass": 10, "binary": 1, "multilabel": 3}[task]
    coefs, intercepts = _random_weights([64, 16, 12, n_out], seed=7)
    kw = dict(hidden_layer_sizes=(16, 12), solver=solver, shuffle=False, max_iter=1,
              random_state=0, **extra)
    a = _fit_from(SkMLPClassifier(**kw), X, y, coefs, intercepts)
    b = _fit_from(MLPClassifier(**kw), X, y, coefs, intercepts)
    assert max_diff(a, b) < 1e-10
    np.testing.assert_allclose(b.loss_, a.loss_, rtol=1e-3 if extra.get("alpha") else 1e-7)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


@pytest.mark.parametrize("kw", [
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2, power_t=0.3),
    dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.5, tol=0.5,
         n_iter_no_change=1, max_iter=12),
    dict(solver="sgd", early_stopping=True, learning_rate_init=0.1, max_iter=15),
    dict(solver="adam", early_stopping=True, validation_fraction=0.2, n_iter_no_change=2),
    dict(solver="adam", activation="tanh", alpha=0.0),
    dict(solver="sgd", activation="logistic", momentum=1.0, learning_rate_init=0.01),
])
def test_epochs_equal_sklearn_default_init(digits, kw):
    """Several epochs with scikit-learn's own initialization (same random_state), the
    learning-rate schedules, n_iter_no_change and early stopping (same split)."""
    X, y = digits
    kw = dict(dict(hidden_layer_sizes=(15,), shuffle=False, random_state=1, max_iter=6), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = SkMLPClassifier(**kw).fit(X, y)
        b = MLPClassifier(**kw).fit(X, y)
    assert max_diff(a, b) < 1e-8
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-5)
    if kw.get("early_stopping"):
        np.testing.assert_allclose(b.validation_scores_, a.validation_scores_)
        assert b.best_validation_score_ == a.best_validation_score_
        assert b.best_loss_ is None
    else:
        np.testing.assert_allclose(b.best_loss_, a.best_loss_, rtol=1e-5)
    assert b._optimizer.learning_rate == pytest.approx(a._optimizer.learning_rate)


@pytest.mark.parametrize("kw", [dict(solver="sgd", learning_rate_init=0.01),
                                dict(solver="adam"),
                                dict(solver="adam", loss="poisson"),
                                dict(solver="sgd", learning_rate_init=0.01, batch_size=32)])
def test_regression_epochs_equal_sklearn(regression, kw):
    X, y = regression
    if kw.get("loss") == "poisson":
        y = np.abs(y)
    kw = dict(hidden_layer_sizes=(20,), shuffle=False, random_state=1, max_iter=4, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = SkMLPRegressor(**kw).fit(X, y)
        b = MLPRegressor(**kw).fit(X, y)
    assert max_diff(a, b) < 1e-9
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-5)
    np.testing.assert_allclose(b.predict(X), a.predict(X), rtol=1e-7, atol=1e-9)
    assert b.out_activation_ == a.out_activation_


def test_sample_weight_equals_sklearn(digits):
    X, y = digits
    sw = np.random.default_rng(0).uniform(0.2, 2.0, len(y))
    kw = dict(hidden_layer_sizes=(15,), shuffle=False, random_state=1, max_iter=3, solver="sgd",
              batch_size=70)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = SkMLPClassifier(**kw).fit(X, y, sample_weight=sw)
        b = MLPClassifier(**kw).fit(X, y, sample_weight=sw)
    assert max_diff(a, b) < 1e-10
    assert b.score(X, y, sample_weight=sw) == a.score(X, y, sample_weight=sw)


@pytest.mark.parametrize("alpha", [1e-4, 0.1])
def test_lbfgs_equals_sklearn(digits, alpha):
    X, y = digits
    kw = dict(hidden_layer_sizes=(15,), solver="lbfgs", random_state=1, max_iter=15, alpha=alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = SkMLPClassifier(**kw).fit(X, y)
        b = MLPClassifier(**kw).fit(X, y)
    assert max_diff(a, b) < 1e-6
    assert b.loss_ == pytest.approx(a.loss_, rel=1e-7)
    assert b.n_iter_ == a.n_iter_


def test_lbfgs_regression_and_private_loss_grad(regression):
    X, y = regression
    kw = dict(hidden_layer_sizes=(10,), solver="lbfgs", random_state=1, max_iter=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = SkMLPRegressor(**kw).fit(X, y[:, 0])
        b = MLPRegressor(**kw).fit(X, y[:, 0])
    assert max_diff(a, b) < 1e-6
    # scikit-learn's private _loss_grad_lbfgs (packed coefs then intercepts) gives the same
    theta = np.hstack([c.ravel() for c in b.coefs_ + b.intercepts_])
    value, grad = b._loss_grad_lbfgs(theta, X, y[:, :1], None)
    eps, i = 1e-6, 5
    e = np.zeros_like(theta)
    e[i] = eps
    fd = (b._loss_grad_lbfgs(theta + e, X, y[:, :1])[0]
          - b._loss_grad_lbfgs(theta - e, X, y[:, :1])[0]) / (2 * eps)
    assert grad[i] == pytest.approx(fd, rel=1e-5)


def test_partial_fit_equals_sklearn_and_survives_pickle(digits):
    X, y = digits
    kw = dict(hidden_layer_sizes=(15,), shuffle=False, random_state=1, solver="sgd")
    a, b = SkMLPClassifier(**kw), MLPClassifier(**kw)
    for _ in range(3):
        a.partial_fit(X, y, classes=np.arange(10))
        b.partial_fit(X, y, classes=np.arange(10))
        b = pickle.loads(pickle.dumps(b))      # optimizer state (velocities) travels along
    assert max_diff(a, b) < 1e-10
    assert (b.t_, b.n_iter_, len(b.loss_curve_)) == (a.t_, a.n_iter_, len(a.loss_curve_))


def test_warm_start_equals_sklearn(digits):
    X, y = digits
    kw = dict(hidden_layer_sizes=(15,), shuffle=False, random_state=1, solver="adam",
              warm_start=True, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = SkMLPClassifier(**kw).fit(X, y).fit(X, y)
        b = MLPClassifier(**kw).fit(X, y).fit(X, y)
    assert max_diff(a, b) < 1e-10
    assert len(b.loss_curve_) == 4 and b.t_ == a.t_


# ---- warnings and errors -----------------------------------------------------------------

def test_convergence_warnings(digits):
    X, y = digits
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(2\\) reached"):
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, solver="sgd").fit(X, y)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, solver="lbfgs").fit(X, y)


def test_errors_match_sklearn(digits):
    X, y = digits
    from sklearn.utils._param_validation import InvalidParameterError
    for bad in [dict(solver="newton"), dict(alpha=-1.0), dict(batch_size=0),
                dict(activation="softmax"), dict(n_threads=0), dict(dtype="float16")]:
        with pytest.raises(InvalidParameterError):
            MLPClassifier(**bad).fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes must be > 0"):
        MLPClassifier(hidden_layer_sizes=(3, 0)).fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=np.arange(10))
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'"):
        MLPClassifier(solver="lbfgs").partial_fit(X, y)
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=1).partial_fit(X, y, classes=np.arange(10))
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X, y + 10)
    with pytest.raises(ValueError, match="warm_start can only be used"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            MLPClassifier(hidden_layer_sizes=(5,), max_iter=1, warm_start=True).fit(X, y).fit(
                X, y % 3)
    with pytest.raises(ValueError, match="4 features"):
        clf.predict(X[:, :4])
    with pytest.raises(ValueError, match="validation set is too small"):
        MLPClassifier(early_stopping=True, validation_fraction=0.001).fit(X[:50], y[:50])


def test_diverging_training_like_sklearn():
    """A diverging SGD run: NaN loss, like scikit-learn; early stopping keeps the best
    (finite) weights, without it fit raises scikit-learn's non-finite-weights error."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4)) * 50
    y = X @ rng.normal(size=4)
    kw = dict(hidden_layer_sizes=(50,), activation="identity", solver="sgd",
              learning_rate_init=1.0, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPRegressor(early_stopping=True, **kw).fit(X, y)
        assert np.isnan(est.validation_scores_[-1])
        assert all(np.isfinite(c).all() for c in est.coefs_)
        with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
            MLPRegressor(**kw).fit(X, y)
        with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
            SkMLPRegressor(**kw).fit(X, y)


def test_verbose_output_like_sklearn(digits, capsys):
    X, y = digits
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", shuffle=False, random_state=0, max_iter=30,
              verbose=True, early_stopping=True, learning_rate="adaptive", tol=0.2,
              n_iter_no_change=2, alpha=0.0)
    SkMLPClassifier(**kw).fit(X, y)
    theirs = capsys.readouterr().out.splitlines()
    MLPClassifier(**kw).fit(X, y)
    ours = capsys.readouterr().out.splitlines()
    assert len(ours) == len(theirs) > 5
    for a, b in zip(theirs, ours):
        if a.startswith("Iteration"):
            assert b.split("=")[0] == a.split("=")[0]
            assert float(b.split("=")[1]) == pytest.approx(float(a.split("=")[1]), abs=2e-8)
        else:
            assert a == b


# ---- multilabel, multi-output, sparse ----------------------------------------------------

def test_multilabel_and_multioutput(digits, regression):
    X, y = digits
    Y = np.c_[y % 2, y % 3 == 0, y > 5].astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(30,), max_iter=200, random_state=0).fit(X, Y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 3
    assert clf.predict(X).shape == (len(X), 3) and clf.predict_proba(X).shape == (len(X), 3)
    assert clf.score(X, Y) > 0.8
    Xr, yr = regression
    reg = MLPRegressor(hidden_layer_sizes=(30,), solver="lbfgs", max_iter=300,
                       random_state=0).fit(Xr, yr)
    assert reg.predict(Xr).shape == yr.shape and reg.score(Xr, yr) > 0.9
    # scikit-learn's loss_ convention for multi-output squared error: 0.5 * mean over outputs
    out = reg.predict(Xr)
    pen = 0.5 * reg.alpha * sum((c ** 2).sum() for c in reg.coefs_) / len(Xr)
    assert reg.loss_ == pytest.approx(0.5 * ((out - yr) ** 2).mean() + pen, rel=1e-6)


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
@pytest.mark.parametrize("blocks", [False, True])
def test_sparse_input_equals_dense(digits, monkeypatch, solver, blocks):
    X, y = digits
    Xs = sp.csr_matrix(np.where(X > 0.5, X, 0.0))
    if blocks:   # force the bounded-memory path: blocks of batches densified one at a time
        monkeypatch.setattr(fsk, "SPARSE_DENSE_LIMIT", 0)
        monkeypatch.setattr(fsk, "SPARSE_BLOCK_BYTES", 64 * 8 * 50)
    kw = dict(hidden_layer_sizes=(12,), solver=solver, shuffle=False, random_state=0,
              max_iter=4, batch_size=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        d = MLPClassifier(**kw).fit(Xs.toarray(), y)
        s = MLPClassifier(**kw).fit(Xs, y)
        s_csc = MLPClassifier(**kw).fit(Xs.tocsc(), y)
    assert max_diff(d, s) < 1e-10 and max_diff(d, s_csc) < 1e-10
    np.testing.assert_allclose(s.predict_proba(Xs), d.predict_proba(Xs.toarray()), atol=1e-12)


# ---- pickling, Pipeline, GridSearchCV ------------------------------------------------------

def test_pickle_roundtrip_predictions(digits):
    X, y = digits
    clf = MLPClassifier(hidden_layer_sizes=(10,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    clone_ = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone_.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(clone_.predict_log_proba(X), np.log(clf.predict_proba(X)))
    # user-edited coefs_ are what predict uses (as in scikit-learn)
    clone_.coefs_[-1][:] = 0
    clone_.intercepts_[-1][:] = 0
    np.testing.assert_allclose(clone_.predict_proba(X), 0.1)


def test_pipeline_and_grid_search_n_jobs_2(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=100, learning_rate_init=0.01,
                                                         random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(16,), (32,)],
                               "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=2, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert grid.best_score_ > 0.8
    assert len(grid.cv_results_["params"]) == 4
    best = pickle.loads(pickle.dumps(grid.best_estimator_))
    np.testing.assert_array_equal(best.predict(X), grid.predict(X))


def test_sklearn_own_mlp_test_suite_passes(tmp_path):
    """scikit-learn's own tests of its MLP estimators (sklearn/neural_network/tests/
    test_mlp.py of the installed version), run against fastbp's estimators."""
    src = os.path.join(os.path.dirname(sklearn.__file__), "neural_network", "tests",
                       "test_mlp.py")
    if not os.path.exists(src):
        pytest.skip("scikit-learn's test files are not installed")
    with open(src) as f:
        text = f.read()
    line = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
    if line not in text:
        pytest.skip("unexpected layout of scikit-learn's test_mlp.py")
    (tmp_path / "test_mlp_fastbp.py").write_text(
        text.replace(line, "from fastbp.sklearn import MLPClassifier, MLPRegressor"))
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n\n@pytest.fixture(params=[0, 42])\n"
        "def global_random_seed(request):\n    return request.param\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(fastbp.__file__)),
                                         env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-W", "ignore", str(tmp_path / "test_mlp_fastbp.py")],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout


def test_hyperparameter_search_example_runs():
    path = os.path.join(ROOT, "examples", "hyperparameter_search.py")
    spec = importlib.util.spec_from_file_location("hyperparameter_search_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        search = module.main(quick=True)
    assert search.best_score_ > 0.8
    assert "best" in out.getvalue()


# ---- 2. the fastbp extras -------------------------------------------------------------------

def test_extra_activations_init_dtype_threads(digits):
    X, y = digits
    clf = MLPClassifier(hidden_layer_sizes=(20, 10), activation=["gelu", "silu"],
                        init="he_uniform", dtype="float32", n_threads=1, max_iter=60,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert all(c.dtype == np.float32 for c in clf.coefs_ + clf.intercepts_)
    assert all((i == 0).all() for i in clf.intercepts_) is False   # trained away from zero
    assert clf._net.activations == ("gelu", "silu", "softmax")
    assert clf.score(X, y) > 0.9
    # float32 input trains in float32 by default, like scikit-learn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = MLPRegressor(hidden_layer_sizes=(5,), max_iter=2).fit(X.astype(np.float32), y)
    assert reg.coefs_[0].dtype == np.float32
    with pytest.raises(ValueError, match="one name per hidden layer"):
        MLPClassifier(hidden_layer_sizes=(5, 5), activation=["relu"]).fit(X, y)


def test_callbacks_and_validation_loss_curve(digits):
    X, y = digits
    seen = []

    def stop_after_three(epoch, logs):
        seen.append((epoch, logs["loss"], logs["val_loss"], logs["val_score"]))
        return epoch >= 2

    clf = MLPClassifier(hidden_layer_sizes=(10,), max_iter=50, random_state=0,
                        callbacks=[stop_after_three])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)   # a callback stop is no warning
        clf.fit(X[:300], y[:300], validation_data=(X[300:], y[300:]))
    assert clf.n_iter_ == 3 and [s[0] for s in seen] == [0, 1, 2]
    assert clf.validation_loss_curve_ == [s[2] for s in seen]
    assert clf.validation_scores_ is None   # early_stopping=False, as in scikit-learn
    p = clf.predict_proba(X[300:])
    assert clf.validation_loss_curve_[-1] == pytest.approx(
        -np.mean(np.log(p[np.arange(60), y[300:]])), rel=1e-6)
    # fastbp's EarlyStopping callback on the validation loss of early_stopping's split
    es = fastbp.callbacks.EarlyStopping(monitor="val_loss", patience=0)
    clf = MLPClassifier(hidden_layer_sizes=(10,), max_iter=200, random_state=0,
                        learning_rate_init=0.05, early_stopping=True, n_iter_no_change=1000,
                        callbacks=[es])
    clf.fit(X, y)
    assert clf.n_iter_ < 200 and len(clf.validation_loss_curve_) == clf.n_iter_
    # lbfgs: called once per iteration
    calls = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = MLPClassifier(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=100, random_state=0,
                            callbacks=[lambda e, logs: calls.append(logs["loss"]) or e >= 4])
        est.fit(X, y)
    assert len(calls) == 5 and est.n_iter_ == 5


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_callback_train_end_runs_when_training_raises(digits, solver):
    """on_train_begin/on_train_end bracket training on every solver, also when a callback
    raises; a non-callable callback is a TypeError."""
    X, y = digits

    class Failing(fastbp.callbacks.Callback):
        events = []

        def on_train_begin(self, trainer):
            self.events.append(("begin", trainer.net is clf._net))

        def on_epoch_end(self, epoch, logs):
            raise RuntimeError("callback failed")

        def on_train_end(self, trainer):
            self.events.append(("end", trainer.net is clf._net))

    clf = MLPClassifier(hidden_layer_sizes=(5,), solver=solver, max_iter=5, random_state=0,
                        callbacks=[Failing()])
    with pytest.raises(RuntimeError, match="callback failed"):
        clf.fit(X[:100], y[:100])
    assert Failing.events == [("begin", True), ("end", True)]
    with pytest.raises(TypeError, match="callbacks must be callables"):
        MLPClassifier(solver=solver, callbacks=[3]).fit(X[:100], y[:100])


def test_default_threads_follow_omp_num_threads(monkeypatch):
    """n_threads=None: fastbp's setting, capped by OMP_NUM_THREADS (joblib's loky sets it
    to cores // n_jobs in its workers, so parallel searches do not oversubscribe)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert fsk._default_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert fsk._default_threads() == fastbp.get_num_threads()
    assert MLPClassifier(n_threads=3)._threads() == 3


# ---- issue #14: dropout, batch norm, L1, clipping, max-norm, class_weight, transform ----

def _fit_quiet(est, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kw)


def _np_forward(est, X, upto=None):
    """The hidden layers (and output) of a fitted estimator in NumPy from its public
    attributes: coefs_, intercepts_, the activation, and batch norm's bn_* attributes."""
    acts = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "identity": lambda z: z,
            "logistic": lambda z: 1 / (1 + np.exp(-z))}
    hidden = est.activation if isinstance(est.activation, (list, tuple)) else \
        [est.activation] * (len(est.coefs_) - 1)
    gammas = getattr(est, "bn_gammas_", [None] * len(est.coefs_))
    a, outs = np.asarray(X, dtype=np.float64), []
    for i, (W, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        z = a @ W + b
        if gammas[i] is not None:
            z = (gammas[i] * (z - est.bn_running_means_[i])
                 / np.sqrt(est.bn_running_vars_[i] + 1e-5) + est.bn_betas_[i])
        if i == len(est.coefs_) - 1:
            break
        a = acts[hidden[i]](z)
        outs.append(a)
    return outs


EXTRA_OPTIONS = [dict(dropout=0.3), dict(input_dropout=0.2), dict(dropout=[0.0, 0.4]),
                 dict(batch_norm=True), dict(batch_norm=[False, True]), dict(l1=1e-3),
                 dict(clip_norm=0.3), dict(max_norm=1.0)]


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("option", EXTRA_OPTIONS, ids=lambda o: ",".join(o))
def test_each_extra_option_changes_the_fit(digits, solver, option):
    X, y = digits
    kw = dict(hidden_layer_sizes=(16, 12), solver=solver, max_iter=10, random_state=0,
              batch_size=40, learning_rate_init=0.05 if solver == "sgd" else 0.01)
    base = _fit_quiet(MLPClassifier(**kw), X, y)
    est = _fit_quiet(MLPClassifier(**kw, **option), X, y)
    assert max_diff(base, est) > 1e-6
    assert est.predict(X).shape == y.shape and est.predict_proba(X).shape == (len(y), 10)
    assert est.score(X, y) > 0.5
    # predictions are evaluation mode: deterministic, and what the attributes say
    np.testing.assert_array_equal(est.predict_proba(X), est.predict_proba(X))
    assert est.transform(X).shape == (len(y), 12)
    if "max_norm" in option:
        for W in est.coefs_:
            assert np.linalg.norm(W, axis=0).max() <= 1.0 * (1 + 1e-9)
    if "l1" in option:
        assert sum(np.abs(W).sum() for W in est.coefs_) < sum(np.abs(W).sum()
                                                              for W in base.coefs_)
    bn = option.get("batch_norm", False)
    if bn:
        flags = [bn] * 2 if isinstance(bn, bool) else bn
        assert [g is not None for g in est.bn_gammas_] == flags + [False]
        for name in ("bn_betas_", "bn_running_means_", "bn_running_vars_"):
            assert [v is not None for v in getattr(est, name)] == flags + [False]
        assert all(m.dtype == np.float64 for m in est.bn_running_means_ if m is not None)
        # the running statistics were updated from their start (0 and 1)
        assert any(np.abs(m).max() > 0 for m in est.bn_running_means_ if m is not None)
    else:
        assert not any(hasattr(est, a) for a in ("bn_gammas_", "bn_betas_",
                                                 "bn_running_means_", "bn_running_vars_"))


def test_extra_options_on_the_regressor(regression):
    X, y = regression
    kw = dict(hidden_layer_sizes=(20,), max_iter=30, random_state=0, learning_rate_init=0.01)
    base = _fit_quiet(MLPRegressor(**kw), X, y)
    for option in [dict(dropout=0.2), dict(batch_norm=True), dict(l1=1e-3),
                   dict(clip_norm=0.1), dict(max_norm=1.0)]:
        est = _fit_quiet(MLPRegressor(**kw, **option), X, y)
        assert max_diff(base, est) > 1e-6, option
        assert est.predict(X).shape == y.shape and np.isfinite(est.score(X, y)), option


def test_explicit_defaults_equal_no_extras(digits):
    X, y = digits
    kw = dict(hidden_layer_sizes=(12,), max_iter=3, random_state=0)
    a = _fit_quiet(MLPClassifier(**kw), X, y)
    b = _fit_quiet(MLPClassifier(**kw, dropout=0.0, input_dropout=0.0, batch_norm=False,
                                 l1=0.0, clip_norm=None, max_norm=None, class_weight=None),
                   X, y)
    assert max_diff(a, b) == 0 and a.loss_curve_ == b.loss_curve_


def test_l1_loss_includes_the_penalty(digits):
    """lbfgs minimizes data loss + L2 + l1 * sum|W| (weights only): loss_ is that value."""
    X, y = digits
    est = _fit_quiet(MLPClassifier(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=40,
                                   random_state=0, l1=1e-3, alpha=1e-3), X, y)
    p = est.predict_proba(X)
    data = -np.mean(np.log(p[np.arange(len(y)), y]))
    l2 = 0.5 * 1e-3 * sum((W ** 2).sum() for W in est.coefs_) / len(y)
    l1 = 1e-3 * sum(np.abs(W).sum() for W in est.coefs_)
    assert est.loss_ == pytest.approx(data + l2 + l1, rel=1e-6)
    base = _fit_quiet(MLPClassifier(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=40,
                                    random_state=0, alpha=1e-3), X, y)
    assert (sum(np.abs(W).sum() for W in est.coefs_)
            < sum(np.abs(W).sum() for W in base.coefs_))
    # sgd/adam: loss_ holds the L1 term too (l1 times the mean of the epoch's start and
    # end L1 norms), so it exceeds the data loss
    est = _fit_quiet(MLPClassifier(hidden_layer_sizes=(10,), max_iter=3, random_state=0,
                                   l1=1e-2, alpha=0.0), X, y)
    p = est.predict_proba(X)
    assert est.loss_ > 1e-2 * sum(np.abs(W).sum() for W in est.coefs_) * 0.9


# ---- class_weight ---------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_class_weight_dict_equals_sample_weight(digits, solver):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    labels = names[y]
    cw = {"one": 3.0, "seven": 0.5, "nine": 2.0}        # the others: 1
    sw = np.random.default_rng(0).uniform(0.5, 1.5, len(y))
    kw = dict(hidden_layer_sizes=(12,), solver=solver, max_iter=5, random_state=0)
    a = _fit_quiet(MLPClassifier(**kw, class_weight=cw), X, labels, sample_weight=sw)
    b = _fit_quiet(MLPClassifier(**kw), X, labels,
                   sample_weight=sw * np.array([cw.get(c, 1.0) for c in labels]))
    assert max_diff(a, b) == 0 and a.loss_ == b.loss_
    c = _fit_quiet(MLPClassifier(**kw), X, labels, sample_weight=sw)
    assert max_diff(a, c) > 1e-6
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert set(a.predict(X)) <= set(names)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_class_weight_balanced_equals_compute_class_weight(digits, solver):
    from sklearn.utils.class_weight import compute_class_weight
    X, y = digits
    keep = (y != 3) | (np.arange(len(y)) % 4 == 0)       # make class 3 rare
    X, y = X[keep], np.where(y[keep] % 2 == 0, "even", "odd").astype(object)
    y[::7] = "seventh"
    classes = np.unique(y)
    w = dict(zip(classes, compute_class_weight("balanced", classes=classes, y=y)))
    kw = dict(hidden_layer_sizes=(10,), solver=solver, max_iter=5, random_state=0)
    a = _fit_quiet(MLPClassifier(**kw, class_weight="balanced"), X, y)
    b = _fit_quiet(MLPClassifier(**kw), X, y, sample_weight=np.array([w[c] for c in y]))
    assert max_diff(a, b) == 0
    # binary targets (one logistic output): classes_[0] and classes_[1] weighted
    yb = np.where(y == "seventh", "rare", "common")
    a = _fit_quiet(MLPClassifier(**kw, class_weight={"rare": 4.0}), X, yb)
    b = _fit_quiet(MLPClassifier(**kw), X, yb, sample_weight=np.where(yb == "rare", 4.0, 1.0))
    assert a.out_activation_ == "logistic" and max_diff(a, b) == 0


def test_class_weight_partial_fit_and_errors(digits):
    from sklearn.utils._param_validation import InvalidParameterError
    X, y = digits
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", random_state=0)
    a = MLPClassifier(**kw, class_weight={2: 5.0})
    b = MLPClassifier(**kw)
    for _ in range(2):
        a.partial_fit(X, y, classes=np.arange(10))
        b.partial_fit(X, y, classes=np.arange(10), sample_weight=np.where(y == 2, 5.0, 1.0))
    assert max_diff(a, b) == 0
    with pytest.raises(ValueError, match="class_weight='balanced' is not supported for "
                                         "partial_fit"):
        MLPClassifier(**kw, class_weight="balanced").partial_fit(X, y, classes=np.arange(10))
    with pytest.raises(ValueError, match=r"class_weight has keys \[11\] that are not classes"):
        MLPClassifier(**kw, class_weight={1: 2.0, 11: 3.0}).fit(X, y)
    with pytest.raises(ValueError, match="class_weight has keys"):
        MLPClassifier(**kw, class_weight={"one": 2.0}).fit(X, y)
    with pytest.raises(ValueError, match=r"class_weight\[1\] must be a finite number >= 0"):
        MLPClassifier(**kw, class_weight={1: -2.0}).fit(X, y)
    with pytest.raises(InvalidParameterError, match="class_weight"):
        MLPClassifier(**kw, class_weight="balance").fit(X, y)
    with pytest.raises(ValueError, match="class_weight is not supported for multilabel"):
        MLPClassifier(**kw, class_weight={0: 2.0}).fit(X, np.c_[y % 2, y > 4])
    assert "class_weight" not in MLPRegressor().get_params()


# ---- bad values ---------------------------------------------------------------------------

@pytest.mark.parametrize("param, bad", [
    ("dropout", 1.0), ("dropout", -0.1), ("dropout", "0.1"), ("input_dropout", 1.0),
    ("input_dropout", None), ("batch_norm", "yes"), ("batch_norm", 1.5), ("l1", -1e-3),
    ("l1", None), ("clip_norm", 0.0), ("clip_norm", -1.0), ("max_norm", 0), ("max_norm", "2"),
])
def test_bad_extra_values_raise_naming_the_parameter(digits, param, bad):
    from sklearn.utils._param_validation import InvalidParameterError
    X, y = digits
    for cls in (MLPClassifier, MLPRegressor):
        with pytest.raises(InvalidParameterError, match=f"'{param}' parameter"):
            cls(hidden_layer_sizes=(5,), max_iter=1, **{param: bad}).fit(X, y)


def test_bad_per_layer_lists_and_solver_combinations(digits, regression):
    X, y = digits
    kw = dict(hidden_layer_sizes=(6, 5), max_iter=1)
    for bad, msg in [(dict(dropout=[0.1]), r"dropout: expected one value per hidden layer \(2\)"),
                     (dict(dropout=[0.1, 1.5]), r"dropout: each entry must be a float in \[0, 1\)"),
                     (dict(dropout=[0.1, True]), "dropout: each entry"),
                     (dict(batch_norm=[True]), "batch_norm: expected one value per hidden"),
                     (dict(batch_norm=[True, 1]), "batch_norm: each entry must be a bool"),
                     (dict(solver="lbfgs", dropout=0.1), "dropout/batch_norm need solver 'sgd' "
                                                         "or 'adam'"),
                     (dict(solver="lbfgs", input_dropout=0.1), "dropout/batch_norm need"),
                     (dict(solver="lbfgs", batch_norm=[False, True]), "dropout/batch_norm need"),
                     (dict(solver="lbfgs", clip_norm=1.0), "clip_norm needs solver"),
                     (dict(solver="lbfgs", max_norm=1.0), "max_norm needs solver")]:
        with pytest.raises(ValueError, match=msg):
            MLPClassifier(**kw, **bad).fit(X, y)
    Xr, yr = regression
    with pytest.raises(ValueError, match="not supported with loss='poisson'"):
        MLPRegressor(loss="poisson", batch_norm=True, max_iter=1).fit(Xr, np.abs(yr))
    # lbfgs does take l1 and class_weight
    _fit_quiet(MLPClassifier(solver="lbfgs", l1=1e-4, class_weight="balanced", max_iter=2,
                             hidden_layer_sizes=(5,)), X, y)


def test_batch_norm_batch_sizes(digits):
    """Batch norm needs 2+ samples in every training batch: batch_size='auto' picks such a
    size, an explicit one that leaves a batch of one is an error naming both."""
    X, y = digits
    X, y = X[:201], y[:201]                  # 'auto' would be 200, then a batch of 1
    est = _fit_quiet(MLPClassifier(hidden_layer_sizes=(8,), batch_norm=True, max_iter=2,
                                   random_state=0), X, y)
    assert est.n_iter_ == 2
    with pytest.raises(ValueError, match="batch_norm needs at least 2 samples in every "
                                         "training batch.*batch_size=50"):
        MLPClassifier(batch_norm=True, batch_size=50, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="n_samples=1"):
        MLPClassifier(batch_norm=True, max_iter=1).fit(X[:1], y[:1])
    _fit_quiet(MLPClassifier(hidden_layer_sizes=(8,), dropout=0.5, batch_size=50, max_iter=1),
               X, y)                          # dropout alone has no such need


# ---- batch norm and dropout: fitted state, pickling, warm_start, partial_fit ----------------

@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("option", [{}, dict(dropout=0.3, input_dropout=0.1),
                                    dict(batch_norm=True), dict(batch_norm=[True, False])],
                         ids=["plain", "dropout", "bn", "bn-first"])
def test_transform_and_hidden_activations_equal_numpy(digits, activation, option):
    X, y = digits
    est = _fit_quiet(MLPClassifier(hidden_layer_sizes=(14, 9), activation=activation,
                                   max_iter=5, random_state=0, **option), X, y)
    h1, h2 = _np_forward(est, X)
    np.testing.assert_allclose(est.hidden_activations(X, layer=1), h1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.hidden_activations(X, layer=2), h2, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(est.hidden_activations(X, layer=-2),
                                  est.hidden_activations(X, layer=1))
    np.testing.assert_array_equal(est.transform(X), est.hidden_activations(X))
    np.testing.assert_array_equal(est.hidden_activations(X, layer=-1),
                                  est.hidden_activations(X, layer=2))
    # the output from the same attributes: predict_proba is the softmax of the last layer
    z = h2 @ est.coefs_[-1] + est.intercepts_[-1]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(est.predict_proba(X), p / p.sum(axis=1, keepdims=True),
                               rtol=1e-9, atol=1e-12)
    # sparse input: the same values
    Xs = sp.csr_matrix(np.where(X > 0.5, X, 0.0))
    np.testing.assert_allclose(est.transform(Xs), est.transform(Xs.toarray()), atol=1e-13)
    np.testing.assert_allclose(est.hidden_activations(Xs.tocsc(), layer=1),
                               est.hidden_activations(Xs.toarray(), layer=1), atol=1e-13)


def test_transform_errors_dtype_and_pipeline(digits, regression):
    from sklearn.exceptions import NotFittedError
    from sklearn.linear_model import LogisticRegression
    X, y = digits
    with pytest.raises(NotFittedError):
        MLPClassifier().transform(X)
    with pytest.raises(NotFittedError):
        MLPClassifier().hidden_activations(X, layer=1)
    est = _fit_quiet(MLPClassifier(hidden_layer_sizes=(7, 5), max_iter=3, random_state=0), X, y)
    for bad in [0, 3, -3, 1.0, "1", True]:
        with pytest.raises(ValueError, match=r"layer must be a hidden layer, 1\.\.2 or -1\.\.-2"):
            est.hidden_activations(X, layer=bad)
    with pytest.raises(ValueError, match="4 features"):
        est.transform(X[:, :4])
    flat = _fit_quiet(MLPClassifier(hidden_layer_sizes=(), max_iter=3, random_state=0), X, y)
    assert flat.predict(X).shape == y.shape
    with pytest.raises(ValueError, match="no hidden layer"):
        flat.transform(X)
    # float32 training: float32 features; the regressor has them too
    est32 = _fit_quiet(MLPClassifier(hidden_layer_sizes=(6,), max_iter=2, random_state=0),
                       X.astype(np.float32), y)
    assert est32.transform(X).dtype == np.float32
    Xr, yr = regression
    reg = _fit_quiet(MLPRegressor(hidden_layer_sizes=(6, 4), max_iter=5, random_state=0), Xr, yr)
    assert reg.transform(Xr).shape == (len(Xr), 4)
    np.testing.assert_allclose(reg.hidden_activations(Xr, 1), _np_forward(reg, Xr)[0],
                               rtol=1e-10, atol=1e-12)
    # learned features feed a Pipeline; their names follow scikit-learn's prefix scheme
    pipe = make_pipeline(MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0),
                         LogisticRegression(max_iter=500))
    _fit_quiet(pipe, X, y)
    assert pipe.score(X, y) > 0.8
    assert list(pipe[0].get_feature_names_out()) == [f"mlpclassifier{i}" for i in range(16)]
    np.testing.assert_array_equal(_fit_quiet(MLPClassifier(hidden_layer_sizes=(16,), max_iter=50,
                                                           random_state=0), X, y).transform(X),
                                  pipe[0].transform(X))


@pytest.mark.parametrize("option", [dict(batch_norm=True), dict(dropout=0.2, batch_norm=True),
                                    dict(dropout=0.2)], ids=["bn", "bn+dropout", "dropout"])
def test_bn_dropout_pickle_and_attribute_round_trip(digits, option):
    X, y = digits
    est = _fit_quiet(MLPClassifier(hidden_layer_sizes=(12,), max_iter=5, random_state=0,
                                   **option), X, y)
    clone_ = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(clone_.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(clone_.transform(X), est.transform(X))
    for name in ("bn_gammas_", "bn_betas_", "bn_running_means_", "bn_running_vars_"):
        assert hasattr(clone_, name) == ("batch_norm" in option)
    if "batch_norm" not in option:
        return
    # predictions come from the attributes: edited running statistics are used
    clone_.bn_running_means_[0] = clone_.bn_running_means_[0] + 0.5
    assert not np.allclose(clone_.predict_proba(X), est.predict_proba(X))
    np.testing.assert_allclose(clone_.transform(X), _np_forward(clone_, X)[0], rtol=1e-10,
                               atol=1e-12)
    # another estimator given the same attributes predicts the same
    other = _fit_quiet(MLPClassifier(hidden_layer_sizes=(12,), max_iter=1, random_state=5,
                                     **option), X, y)
    for name in ("coefs_", "intercepts_", "bn_gammas_", "bn_betas_", "bn_running_means_",
                 "bn_running_vars_"):
        setattr(other, name, [None if a is None else a.copy() for a in getattr(est, name)])
    np.testing.assert_array_equal(other.predict_proba(X), est.predict_proba(X))
    other.bn_gammas_[0] = other.bn_gammas_[0][:5]
    with pytest.raises(ValueError, match=r"bn_gammas_\[0\] must have shape \(12,\)"):
        other.predict(X)


@pytest.mark.parametrize("option", [dict(batch_norm=True), dict(dropout=0.3, batch_norm=True),
                                    dict(dropout=0.3, input_dropout=0.1)],
                         ids=["bn", "bn+dropout", "dropout"])
def test_bn_dropout_warm_start_and_partial_fit(digits, option):
    X, y = digits
    kw = dict(hidden_layer_sizes=(12,), random_state=0, **option)
    est = _fit_quiet(MLPClassifier(max_iter=3, warm_start=True, **kw), X, y)
    state = pickle.dumps(est)
    _fit_quiet(est, X, y)
    assert len(est.loss_curve_) == 6 and est.t_ == 6 * len(y)
    bn = "batch_norm" in option
    if bn:
        before = pickle.loads(state)
        assert not np.array_equal(before.bn_running_means_[0], est.bn_running_means_[0])
        # warm_start continues the fitted network: its batch-norm layout cannot change
        with pytest.raises(ValueError, match="batch_norm: the fitted network has batch norm"):
            est.set_params(batch_norm=False).fit(X, y)
        est.set_params(batch_norm=True)
    # dropout is a training setting: a warm start may change its rate
    _fit_quiet(est.set_params(dropout=0.1, max_iter=1), X, y)
    assert len(est.loss_curve_) == 7
    # partial_fit, with pickling between the calls
    pf = MLPClassifier(learning_rate_init=0.01, batch_size=40, **kw)
    means = []
    for _ in range(3):
        pf.partial_fit(X, y, classes=np.arange(10))
        pf = pickle.loads(pickle.dumps(pf))
        if bn:
            means.append(pf.bn_running_means_[0].copy())
    assert pf.t_ == 3 * len(y) and pf.score(X, y) > 0.3
    if bn:
        assert not np.array_equal(means[0], means[1]) and not np.array_equal(means[1], means[2])
    else:   # no batch norm: training is deterministic, pickling changes nothing
        ref = MLPClassifier(learning_rate_init=0.01, batch_size=40, **kw)
        for _ in range(3):
            ref.partial_fit(X, y, classes=np.arange(10))
        assert max_diff(ref, pf) == 0


def test_bn_early_stopping_restores_the_best_state(digits):
    """early_stopping keeps the best epoch's coefs_ and batch norm's parameters and running
    statistics together: the restored model scores best_validation_score_."""
    X, y = digits
    est = _fit_quiet(MLPClassifier(hidden_layer_sizes=(20,), batch_norm=True, dropout=0.2,
                                   early_stopping=True, n_iter_no_change=3, max_iter=60,
                                   learning_rate_init=0.05, random_state=0),
                     X[:300], y[:300], validation_data=(X[300:], y[300:]))
    assert est.n_iter_ < 60
    assert est.validation_scores_[-1] < est.best_validation_score_
    assert est.score(X[300:], y[300:]) == est.best_validation_score_


# ---- the scikit-learn contract with the extras ------------------------------------------------

# Where the estimator contract cannot hold with these options, and why:
_WEIGHT_EQUIVALENCE = ("a sample of weight k is not k repeated samples: dropout draws one "
                       "mask per row and batch norm's batch statistics are unweighted means "
                       "over a batch's rows (as torch.nn.BatchNorm1d)")
def _expected_failures(estimator):
    return {"check_sample_weight_equivalence_on_dense_data": _WEIGHT_EQUIVALENCE,
            "check_sample_weight_equivalence_on_sparse_data": _WEIGHT_EQUIVALENCE}


if "expected_failed_checks" in inspect.signature(parametrize_with_checks).parameters:
    @parametrize_with_checks([
        MLPClassifier(max_iter=100, n_threads=1, dropout=0.1, batch_norm=True),
        MLPRegressor(max_iter=100, n_threads=1, dropout=0.1, batch_norm=True),
        MLPClassifier(max_iter=100, n_threads=1, dropout=0.2, input_dropout=0.1, l1=1e-4,
                      clip_norm=5.0, max_norm=3.0),
    ], expected_failed_checks=_expected_failures, xfail_strict=True)
    def test_check_estimator_with_extras(estimator, check):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            check(estimator)


# ---- scikit-learn's own MLPs: from_sklearn, to_sklearn, Network.from_sklearn --------------

def _targets(task, y):
    return {"multiclass": y, "binary": y % 2, "strings": np.array(["no", "yes", "maybe"])[y % 3],
            "multilabel": np.c_[y % 2, y % 3 == 0, y > 5]}[task]


def _public(est):
    return {k for k in vars(est) if k.endswith("_") and not k.startswith("_")}


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("task", ["multiclass", "binary", "strings", "multilabel"])
def test_from_sklearn_predicts_as_sklearn(digits, solver, task):
    X, y = digits
    y = _targets(task, y)
    sk = _fit_quiet(SkMLPClassifier((13, 7), activation="tanh", solver=solver, max_iter=8,
                                    alpha=1e-3, random_state=0), X, y)
    est = MLPClassifier.from_sklearn(sk)
    assert type(est) is MLPClassifier and est.get_params() == {
        **MLPClassifier().get_params(), **sk.get_params()}
    assert _public(est) == _public(sk)
    np.testing.assert_array_equal(est.classes_, sk.classes_)
    assert (est.n_iter_, est.t_, est.loss_, est.n_layers_, est.n_outputs_,
            est.out_activation_) == (sk.n_iter_, sk.t_, sk.loss_, sk.n_layers_, sk.n_outputs_,
                                     sk.out_activation_)
    np.testing.assert_array_equal(est.predict(X), sk.predict(X))
    np.testing.assert_allclose(est.predict_proba(X), sk.predict_proba(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(est.score(X, y), sk.score(X, y))
    # a copy: changing one leaves the other
    est.coefs_[0][...] = 0
    assert np.abs(sk.coefs_[0]).max() > 0
    # and back: scikit-learn's estimator again, the same predictions
    back = MLPClassifier.from_sklearn(sk).to_sklearn()
    assert type(back) is SkMLPClassifier and back.get_params() == sk.get_params()
    assert _public(back) == _public(sk)
    np.testing.assert_array_equal(back.predict(X), sk.predict(X))
    np.testing.assert_allclose(back.predict_proba(X), sk.predict_proba(X), rtol=0, atol=1e-12)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_regressor_from_and_to_sklearn(regression, loss, solver):
    X, y = regression
    if loss == "poisson":
        y = np.exp(y / np.abs(y).max())
    sk = _fit_quiet(SkMLPRegressor(loss=loss, hidden_layer_sizes=(10,), solver=solver,
                                   max_iter=15, random_state=0), X, y)
    est = MLPRegressor.from_sklearn(sk)
    assert est.loss == loss and _public(est) == _public(sk)
    np.testing.assert_allclose(est.predict(X), sk.predict(X), rtol=1e-12, atol=1e-12)
    back = est.to_sklearn()
    assert type(back) is SkMLPRegressor and back.get_params() == sk.get_params()
    np.testing.assert_allclose(back.predict(X), sk.predict(X), rtol=1e-12, atol=1e-12)
    # single output, as predict gives it
    one = MLPRegressor.from_sklearn(_fit_quiet(SkMLPRegressor(loss=loss, max_iter=5,
                                                              random_state=0), X, y[:, 0]))
    assert one.predict(X).shape == (len(X),)
    if loss == "poisson":         # Network has no exp output
        with pytest.raises(ValueError, match="loss='poisson'.*no Network form"):
            fastbp.Network.from_sklearn(est)
    else:
        np.testing.assert_allclose(fastbp.Network.from_sklearn(est).predict(X), sk.predict(X),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_and_warm_start_continue_after_conversion(digits, solver):
    """The optimizer's state travels too: fastbp's next partial_fit step is the step
    scikit-learn's would take, and the other way round."""
    X, y = digits
    kw = dict(hidden_layer_sizes=(15,), solver=solver, shuffle=False, random_state=1,
              learning_rate="invscaling" if solver == "sgd" else "constant")
    sk = SkMLPClassifier(**kw)
    for _ in range(2):
        sk.partial_fit(X, y, classes=np.arange(10))
    est = MLPClassifier.from_sklearn(sk)
    for _ in range(2):
        sk.partial_fit(X, y)
        est.partial_fit(X, y)
    assert max_diff(sk, est) < 1e-10
    assert (est.t_, est.n_iter_, len(est.loss_curve_)) == (sk.t_, sk.n_iter_, 4)
    # (loss_ differs by how the L2 term is evaluated: see the module docstring)
    np.testing.assert_allclose(est.loss_curve_, sk.loss_curve_, rtol=1e-7)
    back = est.to_sklearn()
    back.partial_fit(X, y)
    est.partial_fit(X, y)
    assert max_diff(back, est) < 1e-10
    # warm_start: fit continues from the converted weights (a new optimizer, as in both)
    sk2 = SkMLPClassifier(**kw, max_iter=2).set_params(warm_start=True)
    _fit_quiet(sk2, X, y)
    est2 = MLPClassifier.from_sklearn(sk2)
    _fit_quiet(sk2, X, y)
    _fit_quiet(est2, X, y)
    assert max_diff(sk2, est2) < 1e-10 and len(est2.loss_curve_) == 4


def test_from_sklearn_keeps_feature_names_and_float32(digits):
    pd = pytest.importorskip("pandas")
    X, y = digits
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    sk = _fit_quiet(SkMLPClassifier((8,), max_iter=5, random_state=0), df, y)
    est = MLPClassifier.from_sklearn(sk)
    np.testing.assert_array_equal(est.feature_names_in_, sk.feature_names_in_)
    np.testing.assert_array_equal(est.predict(df), sk.predict(df))
    sk32 = _fit_quiet(SkMLPClassifier((8,), max_iter=5, random_state=0), X.astype(np.float32), y)
    est32 = MLPClassifier.from_sklearn(sk32)
    assert est32.coefs_[0].dtype == np.float32
    np.testing.assert_allclose(est32.predict_proba(X.astype(np.float32)),
                               sk32.predict_proba(X.astype(np.float32)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_to_sklearn_folds_batch_norm(digits, regression, dtype, tol):
    X, y = digits
    est = _fit_quiet(MLPClassifier((12, 8), batch_norm=True, dropout=0.2, max_iter=10,
                                   random_state=0, dtype=dtype), X, y)
    sk = est.to_sklearn()
    assert not any(name.startswith("bn_") for name in vars(sk))
    assert sk.coefs_[0].dtype == np.dtype(dtype) and "batch_norm" not in sk.get_params()
    np.testing.assert_array_equal(sk.predict(X), est.predict(X))
    np.testing.assert_allclose(sk.predict_proba(X), est.predict_proba(X), rtol=0, atol=tol)
    # the fold by hand: W * s per column, (b - mean) * s + beta
    s = est.bn_gammas_[0] / np.sqrt(est.bn_running_vars_[0] + 1e-5)
    np.testing.assert_allclose(sk.coefs_[0], est.coefs_[0] * s, rtol=tol)
    np.testing.assert_allclose(sk.intercepts_[0], (est.intercepts_[0] - est.bn_running_means_[0])
                               * s + est.bn_betas_[0], rtol=tol, atol=tol)
    # a network of sklearn's form: another fastbp estimator predicts the same without BN
    again = MLPClassifier.from_sklearn(sk)
    assert not hasattr(again, "bn_gammas_")
    np.testing.assert_allclose(again.predict_proba(X), est.predict_proba(X), rtol=0, atol=tol)
    Xr, yr = regression
    reg = _fit_quiet(MLPRegressor(hidden_layer_sizes=(9,), batch_norm=True, max_iter=10, random_state=0,
                                  dtype=dtype), Xr, yr)
    np.testing.assert_allclose(reg.to_sklearn().predict(Xr), reg.predict(Xr), rtol=tol,
                               atol=tol * np.abs(yr).max())


def test_fastbp_from_fastbp_copies_everything(digits):
    X, y = digits
    est = _fit_quiet(MLPClassifier((12,), batch_norm=True, dropout=0.1, activation="gelu",
                                   class_weight="balanced", max_iter=4, random_state=0), X, y)
    other = MLPClassifier.from_sklearn(est)
    assert other.get_params() == est.get_params() and _public(other) == _public(est)
    np.testing.assert_array_equal(other.predict_proba(X), est.predict_proba(X))
    net = fastbp.Network.from_sklearn(est)
    assert list(net.batch_norm) == [True] and net.activations == ("gelu", "softmax")
    np.testing.assert_array_equal(net.predict(X), est.predict_proba(X))
    assert fastbp.Network.from_sklearn(est, dtype="float32").dtype == np.float32
    net.weights[0][...] = 0                    # a copy, not the estimator's network
    np.testing.assert_array_equal(other.predict_proba(X), est.predict_proba(X))
    binary = _fit_quiet(MLPClassifier((6,), max_iter=3, random_state=0), X, y % 2)
    np.testing.assert_allclose(fastbp.Network.from_sklearn(binary).predict(X)[:, 0],
                               binary.predict_proba(X)[:, 1], rtol=0, atol=1e-15)


@pytest.mark.parametrize("option, match", [
    (dict(activation="gelu"), r"identity, logistic, tanh and relu; this network uses \['gelu'\]"),
    (dict(activation=["relu", "tanh"]), r"one activation for every hidden layer"),
])
def test_to_sklearn_refuses_what_sklearn_cannot_represent(digits, option, match):
    X, y = digits
    est = _fit_quiet(MLPClassifier((6, 5), max_iter=2, random_state=0, **option), X, y)
    with pytest.raises(ValueError, match=match):
        est.to_sklearn()


def test_to_sklearn_maps_fastbp_names(digits):
    X, y = digits
    est = _fit_quiet(MLPClassifier((6, 5), activation=["sigmoid", "logistic"], max_iter=2,
                                   random_state=0), X, y)
    sk = est.to_sklearn()
    assert sk.activation == "logistic"
    np.testing.assert_allclose(sk.predict_proba(X), est.predict_proba(X), atol=1e-12)
    none = _fit_quiet(MLPRegressor(hidden_layer_sizes=(), activation="gelu", max_iter=2, random_state=0), X, y)
    np.testing.assert_allclose(none.to_sklearn().predict(X), none.predict(X), rtol=1e-12)


def test_conversions_refuse_unfitted_and_foreign_models():
    for unfitted in (SkMLPClassifier(), MLPClassifier()):
        with pytest.raises(ValueError, match="MLPClassifier is not fitted"):
            MLPClassifier.from_sklearn(unfitted)
        with pytest.raises(ValueError, match="not fitted"):
            fastbp.Network.from_sklearn(unfitted)
    with pytest.raises(ValueError, match="MLPRegressor instance is not fitted"):
        MLPRegressor().to_sklearn()
    with pytest.raises(TypeError, match="needs a scikit-learn or fastbp MLPRegressor, got "
                                        "MLPClassifier"):
        MLPRegressor.from_sklearn(SkMLPClassifier())
    with pytest.raises(TypeError, match="got GridSearchCV"):
        MLPClassifier.from_sklearn(GridSearchCV(SkMLPClassifier(), {}))
