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
                    input_dropout=0.0, batch_norm=False, l1=0.0, clip_norm=None, max_norm=None)
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
    extra = {"validation_loss_curve_"} if solver != "lbfgs" else set()
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
