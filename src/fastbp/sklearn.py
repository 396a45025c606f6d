"""scikit-learn compatible estimators: drop-in replacements for ``MLPClassifier`` and
``MLPRegressor`` trained by fastbp's compiled backpropagation.

    from fastbp.sklearn import MLPClassifier, MLPRegressor

Everything scikit-learn's estimators accept is accepted here, with the same defaults and
meanings: every constructor parameter, the fitted attributes (``coefs_``, ``intercepts_``,
``loss_``, ``loss_curve_``, ``best_loss_``, ``validation_scores_``,
``best_validation_score_``, ``n_iter_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``,
``classes_``, ``t_``, ``n_features_in_``, ``feature_names_in_``), the methods (``fit``,
``partial_fit``, ``predict``, ``predict_proba``, ``predict_log_proba``, ``score``), the
solvers (``"sgd"``, ``"adam"``, ``"lbfgs"``), learning-rate schedules, early stopping,
``warm_start``, ``sample_weight``, multilabel classification, multi-output regression,
sparse input, ``verbose`` output, the warnings and the errors.

What runs where:

- ``"sgd"``/``"adam"``: each epoch is one compiled call (``fastbp.Trainer.fit(epochs=1)``);
  Python runs once per epoch for ``tol``/``n_iter_no_change``, the learning-rate schedule
  (``invscaling``, ``adaptive``), early stopping and ``verbose``, as scikit-learn does.
  The update rules are scikit-learn's (velocity-form momentum and Nesterov momentum;
  Adam with ``lr_t = lr*sqrt(1-b2^t)/(1-b1^t)``), so from the same initial weights and
  without shuffling an epoch gives the same ``coefs_`` as scikit-learn (float rounding).
  With ``shuffle=True`` the batches are drawn by fastbp's own seeded permutation, not
  scikit-learn's, so the trajectories differ (in distribution they are the same).
- ``"lbfgs"``: ``scipy.optimize.minimize(method="L-BFGS-B")`` over the flat parameter
  vector, with the loss and gradient from fastbp's compiled forward/backward pass.
- Initialization: by default scikit-learn's (Glorot uniform weights *and* biases, bound
  ``sqrt(6/(fan_in+fan_out))``, ``sqrt(2/...)`` for ``activation="logistic"``), drawn from
  ``random_state`` in the same order as scikit-learn, so the same ``random_state`` gives
  the same initial weights.

Beyond scikit-learn (extra keyword arguments; scikit-learn's parameters keep their meaning):

- ``activation``: any trainable fastbp hidden activation (``fastbp.activations.names()``:
  ``"gelu"``, ``"silu"``, ``"elu"``, ``"leaky_relu"``, ``"softplus"``, ...), or a list with
  one per hidden layer.
- ``init``: a fastbp initializer name or callable (or one per layer), e.g.
  ``"he_uniform"``, ``"orthogonal"``; biases then start at zero. ``None`` (default) is
  scikit-learn's initialization.
- ``n_threads``: threads of the compiled kernels (``None``: ``fastbp.get_num_threads()``:
  fastbp's setting, else inside a Dask or Ray task the task's share of its worker, else
  ``OMP_NUM_THREADS`` when it is set, as joblib does in its workers). The count a fit used
  is ``n_threads_``.
- ``dtype``: ``"float32"`` or ``"float64"`` training (``None``: the input's, as
  scikit-learn: float32 input trains in float32, anything else in float64).
- ``callbacks``: callables ``(epoch, logs) -> stop?`` or ``fastbp.callbacks.Callback``
  objects, called after every epoch (every L-BFGS iteration for ``"lbfgs"``) with
  ``logs`` holding ``loss``, ``val_loss`` and ``val_score`` (when there is a validation
  set), ``lr``, ``estimator`` and ``trainer``; returning True stops training.
- ``validation_loss_curve_``: the validation loss after every epoch whenever there is a
  validation set (``early_stopping=True``, or ``fit(..., validation_data=(X_val, y_val))``).
- ``dropout`` (a rate, or one per hidden layer), ``input_dropout``, ``batch_norm`` (a bool,
  or one per hidden layer): fastbp's Network options, for ``"sgd"``/``"adam"``. Predictions
  are evaluation mode (no dropout; batch norm with its running statistics). Batch norm's
  state is fitted: ``bn_gammas_``, ``bn_betas_``, ``bn_running_means_``,
  ``bn_running_vars_`` (one entry per layer, as ``coefs_``; None for a layer without batch
  norm; absent when no layer has it), used by ``predict`` as ``coefs_`` are, kept by
  pickling, ``warm_start``, ``partial_fit`` and early stopping. With batch norm every
  training batch needs 2 samples or more: ``batch_size="auto"`` picks such a size.
- ``l1`` (L1 penalty on the weights, ``l1 * sum|W|`` in ``loss_``; every solver),
  ``clip_norm`` (gradient clipping by global norm) and ``max_norm`` (per-unit max-norm):
  fastbp's Trainer options; the last two for ``"sgd"``/``"adam"``.
- ``class_weight`` (MLPClassifier): a dict ``{class label: weight}`` (missing classes 1)
  or ``"balanced"`` (scikit-learn's ``compute_class_weight``); each sample's weight is
  multiplied by its class's, so it equals fitting with those sample weights (every
  solver; not for multilabel targets; ``"balanced"`` not in ``partial_fit``).
- ``transform(X)``: the last hidden layer's activations (evaluation mode), and
  ``hidden_activations(X, layer=k)`` any hidden layer's (1 the first, -1 the last): the
  learned features, e.g. as a Pipeline step (scikit-learn #8291, declined upstream). So
  the estimators are also transformers (``fit_transform``, ``get_feature_names_out``).

- ``MLPClassifier.from_sklearn(mlp)`` / ``MLPRegressor.from_sklearn(mlp)``: the fastbp
  estimator of a fitted scikit-learn (or fastbp) MLP, its parameters, fitted attributes
  and optimizer state (so ``partial_fit`` takes scikit-learn's next step); ``to_sklearn()``
  the other way, batch norm folded into ``coefs_``/``intercepts_``;
  ``fastbp.Network.from_sklearn(est)`` the fitted network as a ``fastbp.Network``.
- skl2onnx: ``skl2onnx.to_onnx(pipeline, X[:1])`` converts the estimators, alone or in a
  Pipeline, with every fastbp activation and batch norm; their converters are registered
  when skl2onnx is imported (``register_skl2onnx``), fastbp.sklearn never imports it.

Every extra's default keeps scikit-learn's behaviour and results exactly; the solver
combinations that cannot hold raise ValueError: ``"lbfgs"`` (one deterministic full-batch
objective) with dropout, batch norm, ``clip_norm`` or ``max_norm``, and
``loss="poisson"`` with dropout or batch norm.

Sparse input (CSR/CSC) is densified: at once when the dense copy takes at most
``SPARSE_DENSE_LIMIT`` bytes (256 MiB), otherwise a block of whole batches (at most
``SPARSE_BLOCK_BYTES``, 64 MiB) at a time during training, and a block of rows at a
time in ``predict``; memory stays bounded, the arithmetic is the dense arithmetic.

Known differences from scikit-learn, all documented in the estimators' docstrings:
``loss_``/``loss_curve_`` of sgd/adam include the L2 penalty evaluated at the weights of the
start and end of each epoch (scikit-learn evaluates it before every batch), and with
``sample_weight`` the epoch loss is the weighted mean over all samples (scikit-learn
averages the per-batch weighted means); for multi-output squared-error regression with
``lbfgs`` the function L-BFGS minimizes is the one whose gradient is used (sum over
outputs; scikit-learn divides the value, but not the gradient, by the number of
outputs), while ``loss_`` is reported in scikit-learn's convention; ``sample_weight``
must be non-negative.

scikit-learn is an optional dependency: ``pip install fastbp[sklearn]``.
"""
import copy
import functools
import math
import warnings
from numbers import Integral, Real
from types import SimpleNamespace

try:
    import sklearn  # noqa: F401
    from sklearn.base import (BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin,
                              RegressorMixin, TransformerMixin, clone, is_classifier)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "fastbp.sklearn needs scikit-learn, which is an optional dependency of fastbp: "
        "pip install fastbp[sklearn]") from exc

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from scipy.special import xlogy
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

try:
    from sklearn.base import _fit_context
except ImportError:  # pragma: no cover - scikit-learn < 1.3
    def _fit_context(prefer_skip_nested_validation):
        def decorator(fit_method):
            def wrapper(estimator, *args, **kwargs):
                if fit_method.__name__ != "partial_fit" or not hasattr(estimator, "coefs_"):
                    estimator._validate_params()
                return fit_method(estimator, *args, **kwargs)
            wrapper.__name__ = fit_method.__name__
            wrapper.__doc__ = fit_method.__doc__
            return wrapper
        return decorator

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - scikit-learn < 1.6
    def validate_data(estimator, X="no_validation", y="no_validation", **kwargs):
        return estimator._validate_data(X, y, **kwargs)

try:
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
except ImportError:  # pragma: no cover
    def _get_additional_lbfgs_options_dict(key, value):
        return {}

from . import activations as _act
from . import callbacks as _callbacks
from .network import BN_EPS, Network, _layer_views
from .optimizers import SGD, Adam
from .trainer import Trainer, TrainingDiverged
from ._config import blas_single_threaded, get_num_threads, num_threads

__all__ = ["MLPClassifier", "MLPRegressor", "register_skl2onnx"]

_STOCHASTIC_SOLVERS = ["sgd", "adam"]

#: Sparse input whose dense copy needs at most this many bytes is densified once per fit.
SPARSE_DENSE_LIMIT = 256 * 2**20
#: Otherwise training densifies blocks of whole batches of at most this many bytes, and
#: predict blocks of rows of at most this many bytes.
SPARSE_BLOCK_BYTES = 64 * 2**20

# scikit-learn's output activation names -> fastbp's (the "exp" of Poisson regression is
# applied to an identity output in Python).
_OUTPUT = {"identity": "identity", "logistic": "sigmoid", "softmax": "softmax", "exp": "identity"}
_HIDDEN_ACTIVATIONS = sorted(n for n in _act.names()
                             if n != "softmax" and _act.get(n).trainable
                             and not _act.get(n).output_only)
_NONFINITE_MSG = ("Solver produced non-finite parameter weights. The input data may"
                  " contain large values and need to be preprocessed.")


# ---- losses in scikit-learn's conventions (for loss_, batches of the Poisson path) ------

def _squared_loss(y, out, sw):
    return 0.5 * np.average((y - out) ** 2, weights=sw, axis=0).mean()


def _poisson_loss(y, z, sw):
    """Half Poisson deviance of exp(z) (scikit-learn's value), from the linear output z."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        mu = np.exp(z)
        return np.average(xlogy(y, y / mu) - y + mu, weights=sw, axis=0).sum()


def _poisson_targets(z, y):
    """Squared-error targets ``z - exp(z) + y`` whose gradient at the linear output z,
    exp(z) - y, is the half Poisson deviance's: how the engine, which has no exp output,
    trains Poisson regression."""
    with np.errstate(over="ignore", invalid="ignore"):
        return z - np.exp(z) + y


def _log_loss(y, prob, sw):
    eps = np.finfo(prob.dtype).eps
    prob = np.clip(prob, eps, 1 - eps)
    if prob.shape[1] == 1:
        prob = np.append(1 - prob, prob, axis=1)
    if y.shape[1] == 1:
        y = np.append(1 - y, y, axis=1)
    return -np.average(xlogy(y, prob), weights=sw, axis=0).sum()


def _binary_log_loss(y, prob, sw):
    eps = np.finfo(prob.dtype).eps
    prob = np.clip(prob, eps, 1 - eps)
    return -np.average(xlogy(y, prob) + xlogy(1 - y, 1 - prob), weights=sw, axis=0).sum()


def _sum_squares(arrays):
    # einsum, not np.dot: no BLAS call (whose threads would wake up for a tiny reduction)
    return sum(float(np.einsum("ij,ij->", W, W)) for W in arrays)


def _sum_abs(arrays):
    return sum(float(np.abs(W).sum()) for W in arrays)


def _run_callbacks(callbacks, epoch, logs):
    """Calls every callback with ``(epoch, logs)`` (all of them, even after one asked to
    stop); True when one asked to stop."""
    return any([bool(cb(epoch, logs)) for cb in callbacks])


def _default_threads():
    # a Dask/Ray task's share of its worker, else OMP_NUM_THREADS (joblib's loky workers
    # set it), else the usable cores: see fastbp._config.get_num_threads
    return get_num_threads()


class _Rows:
    """Training/prediction rows: a dense C-contiguous array, or a CSR matrix that is
    densified a block of rows at a time."""

    def __init__(self, X, dtype):
        self.dtype = np.dtype(dtype)
        if sp.issparse(X):
            if X.shape[0] * X.shape[1] * self.dtype.itemsize <= SPARSE_DENSE_LIMIT:
                X = X.toarray()
            else:
                X = sp.csr_matrix(X, dtype=self.dtype)
        self.sparse = sp.issparse(X)
        if not self.sparse:
            X = np.ascontiguousarray(X, dtype=self.dtype)   # read-only input is fine
        self.X = X
        self.n, self.d = X.shape

    def rows_per_block(self, multiple=1):
        per = max(1, SPARSE_BLOCK_BYTES // max(1, self.d * self.dtype.itemsize))
        return max(multiple, per // multiple * multiple)

    def take(self, idx):
        """Dense rows ``idx`` (a slice or an index array)."""
        block = self.X[idx]
        if self.sparse:
            block = block.toarray()
        return np.ascontiguousarray(block, dtype=self.dtype)

    def blocks(self, rows):
        for s in range(0, self.n, rows):
            yield slice(s, min(self.n, s + rows))


class _LearningRate:
    """The trainer's lr_schedule: reads the optimizer's current learning rate, which the
    estimator changes between epochs (invscaling, adaptive)."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def __call__(self, epoch):
        return self.optimizer.lr


class _SGDOptimizer(SGD):
    """fastbp's SGD in scikit-learn's velocity form, with scikit-learn's attribute names."""

    @property
    def learning_rate(self):
        return self.lr

    @property
    def learning_rate_init(self):
        return self._lr_init


class _AdamOptimizer(Adam):
    """fastbp's Adam with scikit-learn's step size and attribute names."""

    @property
    def learning_rate(self):
        # scikit-learn's AdamOptimizer.learning_rate: the bias-corrected step size
        b1, b2 = self.betas
        if self.t == 0:
            return self.lr
        return self.lr * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)

    @property
    def learning_rate_init(self):
        return self.lr


def _new_optimizer(est):
    if est.solver == "sgd":
        mu = float(est.momentum)
        opt = _SGDOptimizer(lr=est.learning_rate_init, momentum=min(mu, 0.5),
                            nesterov=bool(est.nesterovs_momentum) and mu > 0,
                            classic_momentum=True)
        opt.momentum = mu   # scikit-learn allows momentum=1 (SGD's own check stops at < 1)
        opt._lr_init = float(est.learning_rate_init)
        return opt
    return _AdamOptimizer(lr=est.learning_rate_init, betas=(est.beta_1, est.beta_2),
                          eps=est.epsilon, eps_before_bias_correction=True)


class _BaseMLP(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared implementation of the two estimators (use MLPClassifier / MLPRegressor)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "activation": [StrOptions(set(_HIDDEN_ACTIVATIONS)), list, tuple],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            Options(Real, {np.inf}),
        ],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        # fastbp extras
        "init": [None, str, callable, list, tuple],
        "n_threads": [None, Interval(Integral, 1, None, closed="left")],
        "dtype": [None, StrOptions({"float32", "float64"})],
        "callbacks": [None, list, tuple],
        "dropout": [Interval(Real, 0, 1, closed="left"), list, tuple],
        "input_dropout": [Interval(Real, 0, 1, closed="left")],
        "batch_norm": ["boolean", list, tuple],
        "l1": [Interval(Real, 0, None, closed="left")],
        "clip_norm": [None, Interval(Real, 0, None, closed="neither")],
        "max_norm": [None, Interval(Real, 0, None, closed="neither")],
        "precision": [None, StrOptions({"float32", "float64", "bf16"})],
    }

    def __init__(self, hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                 learning_rate_init, power_t, max_iter, loss, shuffle, random_state, tol,
                 verbose, warm_start, momentum, nesterovs_momentum, early_stopping,
                 validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun,
                 init, n_threads, dtype, callbacks, dropout, input_dropout, batch_norm, l1,
                 clip_norm, max_norm, precision=None):
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.init = init
        self.n_threads = n_threads
        self.dtype = dtype
        self.callbacks = callbacks
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.batch_norm = batch_norm
        self.l1 = l1
        self.clip_norm = clip_norm
        self.max_norm = max_norm
        self.precision = precision

    # ---- pickling: the cached Network is rebuilt from coefs_ --------------------------
    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        state.pop("_net", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if hasattr(self, "coefs_"):
            try:
                self._net = self._coefs_net()
            except (ValueError, TypeError, AttributeError):
                pass

    # ---- network <-> coefs_ -----------------------------------------------------------
    def _hidden_activations(self, n_hidden):
        act = self.activation
        if isinstance(act, (list, tuple)):
            acts = list(act)
            if len(acts) != n_hidden:
                raise ValueError(f"activation: expected one name per hidden layer ({n_hidden}), "
                                 f"got {len(acts)}")
            for a in acts:
                if a not in _HIDDEN_ACTIVATIONS:
                    raise ValueError(f"activation: {a!r} is not a trainable hidden activation; "
                                     f"valid names: {_HIDDEN_ACTIVATIONS}")
            return acts
        return [act] * n_hidden

    def _per_hidden(self, name, n_hidden):
        """The parameter ``name`` (dropout or batch_norm) as one value per hidden layer:
        floats in [0, 1) for dropout, bools for batch_norm."""
        value = getattr(self, name)
        values = list(value) if isinstance(value, (list, tuple)) else [value] * n_hidden
        if len(values) != n_hidden:
            raise ValueError(f"{name}: expected one value per hidden layer ({n_hidden}), "
                             f"got {len(values)}")
        for v in values:
            if name == "batch_norm":
                ok = isinstance(v, (bool, np.bool_))
            else:
                ok = (isinstance(v, Real) and not isinstance(v, (bool, np.bool_))
                      and 0 <= v < 1)
            if not ok:
                raise ValueError(f"{name}: each entry must be "
                                 f"{'a bool' if name == 'batch_norm' else 'a float in [0, 1)'}"
                                 f", got {v!r}")
        return [bool(v) for v in values] if name == "batch_norm" else [float(v) for v in values]

    def _regularized(self):
        """Whether dropout (on any layer or the inputs) or batch norm is asked for."""
        def on(value):
            return any(value) if isinstance(value, (list, tuple)) else bool(value)
        return on(self.dropout) or bool(self.input_dropout) or on(self.batch_norm)

    def _make_net(self, layer_units, dtype, batch_norm=False, dropout=0.0, input_dropout=0.0):
        hidden = self._hidden_activations(len(layer_units) - 2)
        return Network(list(layer_units), activation=hidden if hidden else "tanh",
                       output=_OUTPUT[self.out_activation_], init="zeros", dtype=dtype,
                       dropout=dropout, input_dropout=input_dropout, batch_norm=batch_norm)

    def _fitted_batch_norm(self):
        """Batch norm on each hidden layer of the fitted network (from ``bn_gammas_``: an
        entry per layer, as coefs_, None for a layer without it)."""
        gammas = getattr(self, "bn_gammas_", None)
        if gammas is None:
            return [False] * (len(self.coefs_) - 1)
        if len(gammas) != len(self.coefs_) or gammas[-1] is not None:
            raise ValueError(f"bn_gammas_ must have one entry per layer ({len(self.coefs_)}, "
                             "as coefs_), None for the output layer and for the layers "
                             "without batch norm")
        return [g is not None for g in gammas[:-1]]

    def _load_coefs(self, net):
        for W, b, c, i in zip(net.weights, net.biases, self.coefs_, self.intercepts_):
            c, i = np.asarray(c), np.asarray(i)
            if c.shape != W.shape or i.shape != b.shape:
                raise ValueError(f"coefs_/intercepts_ have shapes {c.shape}/{i.shape}, the network "
                                 f"needs {W.shape}/{b.shape} (hidden_layer_sizes, the number of "
                                 "features or of outputs changed?)")
            W[...] = c
            b[...] = i
        if not any(net.batch_norm):
            return
        for name, views in (("bn_gammas_", net.gammas), ("bn_betas_", net.betas),
                            ("bn_running_means_", net.running_means),
                            ("bn_running_vars_", net.running_vars)):
            values = getattr(self, name)
            if len(values) != len(views):
                raise ValueError(f"{name} must have one entry per layer ({len(views)})")
            for layer, (view, value) in enumerate(zip(views, values)):
                if view is None:
                    continue
                value = np.asarray(value) if value is not None else None
                if value is None or value.shape != view.shape:
                    raise ValueError(f"{name}[{layer}] must have shape {view.shape}, got "
                                     f"{None if value is None else value.shape}")
                view[...] = value

    _BN_ATTRIBUTES = ("bn_gammas_", "bn_betas_", "bn_running_means_", "bn_running_vars_")

    def _store_coefs(self, net):
        self.coefs_ = [W.copy() for W in net.weights]
        self.intercepts_ = [b.copy() for b in net.biases]
        if any(net.batch_norm):
            for name, views in zip(self._BN_ATTRIBUTES, (net.gammas, net.betas,
                                                         net.running_means, net.running_vars)):
                setattr(self, name, [None if v is None else v.copy() for v in views])
        else:
            for name in self._BN_ATTRIBUTES:
                self.__dict__.pop(name, None)

    @staticmethod
    def _bn_snapshot(net):
        """Batch norm's parameters and running statistics (None without batch norm): what
        early stopping keeps beside the best coefs_/intercepts_."""
        if not any(net.batch_norm):
            return None
        return ([None if g is None else g.copy() for g in net.gammas],
                [None if b is None else b.copy() for b in net.betas],
                net.running_stats.copy())

    @staticmethod
    def _bn_restore(net, snapshot):
        if snapshot is None or not any(net.batch_norm):
            return
        gammas, betas, running = snapshot
        for view, value in zip(net.gammas + net.betas, gammas + betas):
            if view is not None:
                view[...] = value
        net.running_stats[...] = running

    def _threads(self):
        return self.n_threads if self.n_threads is not None else _default_threads()

    def _coefs_units(self):
        """Layer sizes of the network that coefs_ describe."""
        return [c.shape[0] for c in self.coefs_] + [self.coefs_[-1].shape[1]]

    def _coefs_net(self, training=False):
        """A network of coefs_'s layer sizes and dtype (float32 or float64; float64 for
        any other) and the fitted batch-norm layout: the cached one when it has them,
        otherwise a new one. ``training``: also the dropout rates of the current
        parameters (prediction runs without dropout, whatever the rates). Its parameters
        are not loaded."""
        units = self._coefs_units()
        dtype = np.asarray(self.coefs_[0]).dtype
        if dtype not in (np.float32, np.float64):
            dtype = np.float64
        bn = self._fitted_batch_norm()
        rates = {}
        if training:
            rates = dict(dropout=self._per_hidden("dropout", len(units) - 2),
                         input_dropout=self.input_dropout)
        net = getattr(self, "_net", None)
        if (net is None or list(net.layer_sizes) != units or net.dtype != dtype
                or list(net.batch_norm) != bn
                or (training and (list(net.dropout) != [float(r) for r in rates["dropout"]]
                                  or net.input_dropout != float(rates["input_dropout"])))):
            net = self._make_net(units, dtype, batch_norm=bn, **rates)
        return net

    def _loaded_net(self, training=False):
        """The network loaded with the current coefs_/intercepts_ (and batch norm's
        fitted parameters and running statistics)."""
        net = self._coefs_net(training)
        self._load_coefs(net)
        return net

    # ---- scikit-learn's own MLPs and fastbp Networks -------------------------------------
    # The fitted attributes scikit-learn's MLPs have (the last three are private ones that
    # warm_start and early stopping read), those of classifiers, and fastbp's own.
    _SK_FITTED = ("coefs_", "intercepts_", "n_layers_", "n_outputs_", "out_activation_",
                  "n_features_in_", "feature_names_in_", "n_iter_", "t_", "loss_",
                  "loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_",
                  "_no_improvement_count", "_best_coefs", "_best_intercepts")
    _SK_CLASSIFIER_FITTED = ("classes_", "_label_binarizer")
    _FASTBP_FITTED = _BN_ATTRIBUTES + ("validation_loss_curve_", "_best_bn", "n_threads_")
    # fastbp's canonical hidden activation names -> scikit-learn's
    _SK_ACTIVATIONS = {"identity": "identity", "sigmoid": "logistic", "tanh": "tanh",
                       "relu": "relu"}

    def _fitted_names(self):
        names = self._SK_FITTED
        return names + self._SK_CLASSIFIER_FITTED if is_classifier(self) else names

    def _fastbp_network(self):
        """A copy of the fitted network as a ``fastbp.Network`` (what
        ``fastbp.Network.from_sklearn`` returns for a fastbp estimator): coefs_,
        intercepts_, the activations, batch norm's parameters and running statistics and the
        dropout layout; its ``predict`` equals ``predict_proba`` (binary: the positive
        class's column) or ``predict``."""
        check_is_fitted(self)
        if self.out_activation_ == "exp":
            raise ValueError(
                f"this {type(self).__name__} (loss='poisson') predicts exp of its network's "
                "output, and a fastbp.Network has no exp output activation: it has no "
                "Network form (export it with skl2onnx, or use the estimator itself)")
        return self._loaded_net().copy()

    @classmethod
    def _counterparts(cls):
        """(scikit-learn's class, fastbp's class) of this kind of estimator."""
        from sklearn.neural_network import MLPClassifier as SkC, MLPRegressor as SkR
        return (SkC, MLPClassifier) if issubclass(cls, ClassifierMixin) else (SkR, MLPRegressor)

    @classmethod
    def from_sklearn(cls, mlp):
        """This estimator built from a fitted scikit-learn ``MLPClassifier``/``MLPRegressor``
        (or a fastbp one): the parameters both have, and the fitted attributes
        (``coefs_``, ``intercepts_``, ``classes_``, ``n_iter_``, ``t_``, ``loss_curve_``,
        ...). Its predictions equal ``mlp``'s (float rounding of the forward pass), and
        ``partial_fit`` and ``warm_start`` continue from there: the optimizer's state
        (SGD velocities, Adam's moments and step count, the current learning rate) is
        carried too, so a ``partial_fit`` takes the step ``mlp.partial_fit`` would. From a
        fastbp estimator every parameter and fitted attribute is copied (batch norm's
        too). An unfitted ``mlp`` raises ValueError (NotFittedError)."""
        sk_cls, fb_cls = cls._counterparts()
        if not isinstance(mlp, (sk_cls, fb_cls)):
            raise TypeError(f"{cls.__name__}.from_sklearn needs a scikit-learn or fastbp "
                            f"{sk_cls.__name__}, got {type(mlp).__name__}")
        if getattr(mlp, "coefs_", None) is None:
            owner = "fastbp's" if isinstance(mlp, _BaseMLP) else "scikit-learn's"
            raise NotFittedError(f"{cls.__name__}.from_sklearn: this {owner} "
                                 f"{type(mlp).__name__} is not fitted (it has no coefs_); "
                                 "fit it first")
        ours = set(cls._get_param_names())
        est = cls(**{name: clone(value, safe=False)
                     for name, value in mlp.get_params(deep=False).items() if name in ours})
        names = est._fitted_names()
        if isinstance(mlp, _BaseMLP):
            names += cls._FASTBP_FITTED
        for name in names:
            if name in vars(mlp):
                setattr(est, name, copy.deepcopy(getattr(mlp, name)))
        optimizer = getattr(mlp, "_optimizer", None)
        if optimizer is not None:
            optimizer = (copy.deepcopy(optimizer) if isinstance(mlp, _BaseMLP)
                         else est._optimizer_from_sklearn(optimizer))
            if optimizer is not None:
                est._optimizer = optimizer
        est._loaded_net()                 # the attributes make a network (shapes checked)
        return est

    def to_sklearn(self):
        """The scikit-learn ``MLPClassifier``/``MLPRegressor`` with this estimator's
        scikit-learn parameters and fitted attributes, predicting what this one predicts
        (float rounding of the forward pass; ``partial_fit``/``warm_start`` continue with
        the optimizer's state, as ``from_sklearn``). Batch norm is folded into
        ``coefs_``/``intercepts_`` (its inference form: ``W * s`` per unit and
        ``(b - running_mean) * s + beta`` with ``s = gamma / sqrt(running_var + 1e-5)``);
        dropout has no effect on predictions. The fastbp extras that only shape training
        (init, n_threads, dtype, precision, callbacks, dropout, batch_norm, l1, clip_norm,
        max_norm, class_weight) have no scikit-learn parameter and are left out. A hidden activation
        scikit-learn does not have (it has identity, logistic, tanh and relu), or
        different activations per layer, raise ValueError."""
        check_is_fitted(self)
        sk_cls = self._counterparts()[0]
        n_hidden = len(self.coefs_) - 1
        hidden = [_act.get(a).name for a in self._hidden_activations(n_hidden)]
        unknown = sorted({a for a in hidden if a not in self._SK_ACTIVATIONS})
        if unknown:
            raise ValueError(f"to_sklearn: scikit-learn's MLPs have the hidden activations "
                             f"identity, logistic, tanh and relu; this network uses {unknown}")
        if len(set(hidden)) > 1:
            raise ValueError(f"to_sklearn: scikit-learn's MLPs have one activation for every "
                             f"hidden layer; this network has {hidden}")
        if hidden:
            activation = self._SK_ACTIVATIONS[hidden[0]]
        else:                            # no hidden layer: the parameter is not used
            name = self.activation if isinstance(self.activation, str) else None
            activation = self._SK_ACTIVATIONS.get(_act.get(name).name if name else None,
                                                  "relu")
        theirs = set(sk_cls._get_param_names())
        params = {name: clone(value, safe=False)
                  for name, value in self.get_params(deep=False).items() if name in theirs}
        params["activation"] = activation
        sk = sk_cls(**params)
        coefs, intercepts = self._folded_coefs()
        folded = any(self._fitted_batch_norm())
        for name in self._fitted_names():
            if name in ("coefs_", "intercepts_", "_best_coefs", "_best_intercepts"):
                continue
            if name in vars(self):
                setattr(sk, name, copy.deepcopy(getattr(self, name)))
        sk.coefs_, sk.intercepts_ = coefs, intercepts
        if "_best_coefs" in vars(self):
            # with batch norm, the current state: early stopping has already restored the
            # best one into it (the best batch-norm state is not foldable separately)
            best = (coefs, intercepts) if folded else (self._best_coefs, self._best_intercepts)
            sk._best_coefs = [c.copy() for c in best[0]]
            sk._best_intercepts = [i.copy() for i in best[1]]
        optimizer = getattr(self, "_optimizer", None)
        if optimizer is not None and not folded:
            sk._optimizer = self._optimizer_to_sklearn(optimizer, sk)
        return sk

    def _folded_coefs(self):
        """coefs_ and intercepts_ (copies) with batch norm folded in (inference form)."""
        net = self._loaded_net()
        coefs, intercepts = [], []
        for c, i, W, b, g, beta, mean, var in zip(
                self.coefs_, self.intercepts_, net.weights, net.biases, net.gammas, net.betas,
                net.running_means, net.running_vars):
            c, i = np.asarray(c), np.asarray(i)
            if g is None:
                coefs.append(c.copy())
                intercepts.append(i.copy())
                continue
            s = g.astype(np.float64) / np.sqrt(var + BN_EPS)
            coefs.append((W.astype(np.float64) * s).astype(c.dtype))
            intercepts.append(((b.astype(np.float64) - mean) * s + beta).astype(i.dtype))
        return coefs, intercepts

    def _flat_state(self, arrays, net):
        """scikit-learn's per-parameter optimizer arrays (all coefs_, then all
        intercepts_) in fastbp's flat layout (W0, b0, W1, b1, ...; no batch norm)."""
        L = len(net.weights)
        return np.concatenate([a for W, b in zip(arrays[:L], arrays[L:])
                               for a in (np.ravel(W), np.ravel(b))])

    def _sk_state(self, flat, net):
        """The inverse of _flat_state: float64 copies shaped as coefs_ then intercepts_."""
        ws, bs, _, _ = _layer_views(np.asarray(flat, dtype=np.float64), net.layer_sizes,
                                    [False] * len(net.weights))
        return [W.copy() for W in ws] + [b.copy() for b in bs]

    def _optimizer_from_sklearn(self, sk_opt):
        """fastbp's optimizer for this estimator holding scikit-learn's optimizer state
        (None when the solver is not the optimizer's)."""
        kind = type(sk_opt).__name__
        if (self.solver, kind) not in (("sgd", "SGDOptimizer"), ("adam", "AdamOptimizer")):
            return None
        net = self._coefs_net()
        opt = _new_optimizer(self)
        opt.reset(net.parameters.size, net.dtype)
        if kind == "SGDOptimizer":
            opt.lr = float(sk_opt.learning_rate)
            buffers = {"momentum_buffer": sk_opt.velocities}
        else:
            opt.state.t = int(sk_opt.t)
            buffers = {"exp_avg": sk_opt.ms, "exp_avg_sq": sk_opt.vs}
        for name, arrays in buffers.items():
            if name in opt.state:
                opt.state[name][...] = self._flat_state(arrays, net)
        return opt

    def _optimizer_to_sklearn(self, opt, sk):
        """scikit-learn's optimizer for ``sk`` holding fastbp's optimizer state ``opt``
        (None when there is none to carry)."""
        from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer
        params = sk.coefs_ + sk.intercepts_
        state = getattr(opt, "state", None)
        net = self._coefs_net()
        if state is None or state.size != net.parameters.size:
            return None
        if self.solver == "sgd" and isinstance(opt, SGD):
            sk_opt = SGDOptimizer(params, sk.learning_rate_init, sk.learning_rate, sk.momentum,
                                  sk.nesterovs_momentum, sk.power_t)
            sk_opt.learning_rate = float(opt.lr)
            if "momentum_buffer" in state:
                sk_opt.velocities = self._sk_state(state["momentum_buffer"], net)
            return sk_opt
        if self.solver == "adam" and isinstance(opt, Adam):
            sk_opt = AdamOptimizer(params, sk.learning_rate_init, sk.beta_1, sk.beta_2,
                                   sk.epsilon)
            sk_opt.t = int(state.t)
            sk_opt.ms = self._sk_state(state["exp_avg"], net)
            sk_opt.vs = self._sk_state(state["exp_avg_sq"], net)
            if state.t:
                sk_opt.learning_rate = float(opt.learning_rate)
            return sk_opt
        return None

    # ---- forward passes ---------------------------------------------------------------
    def _rows_apply(self, net, X, forward, width):
        """``forward`` (a network's predict or hidden_activations) of X, given as a _Rows,
        a dense array or a sparse matrix (densified a block of rows at a time)."""
        rows = X if isinstance(X, _Rows) else _Rows(X, net.dtype)
        with num_threads(self._threads()):
            if not rows.sparse:
                return forward(rows.X)
            out = np.empty((rows.n, width), dtype=net.dtype)
            for sl in rows.blocks(rows.rows_per_block()):
                out[sl] = forward(rows.take(sl))
        return out

    def _net_output(self, net, X):
        """Output activations (scikit-learn's, so with exp for Poisson) for X, given as a
        _Rows, a dense array or a sparse matrix."""
        out = self._rows_apply(net, X, net.predict, net.n_outputs)
        if self.out_activation_ == "exp":
            with np.errstate(over="ignore"):
                np.exp(out, out=out)
        return out

    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        return self._net_output(self._loaded_net(), X)

    def hidden_activations(self, X, layer=-1):
        """The outputs of a hidden layer for X, in evaluation mode as ``predict`` (no
        dropout; batch norm with its running statistics). fastbp extra.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        layer : int, default=-1
            The hidden layer: 1 is the first, 2 the second, ...; -1 the last, -2 the one
            before, ...

        Returns
        -------
        H : ndarray of shape (n_samples, hidden_layer_sizes[layer])
            The layer's activations (after its activation function), in the training
            dtype.
        """
        check_is_fitted(self)
        n_hidden = len(self.coefs_) - 1
        if n_hidden == 0:
            raise ValueError("this network has no hidden layer (hidden_layer_sizes=()): "
                             "there are no hidden activations to return")
        if (isinstance(layer, (bool, np.bool_)) or not isinstance(layer, Integral)
                or not (1 <= layer <= n_hidden or -n_hidden <= layer <= -1)):
            raise ValueError(f"layer must be a hidden layer, 1..{n_hidden} or "
                             f"-1..-{n_hidden}, got {layer!r}")
        layer = int(layer)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        net = self._loaded_net()
        width = net.layer_sizes[layer if layer > 0 else n_hidden + 1 + layer]
        return self._rows_apply(net, X, lambda A: net.hidden_activations(A, layer=layer),
                                width)

    def transform(self, X):
        """The last hidden layer's activations for X (evaluation mode, as ``predict``):
        the learned features. fastbp extra; ``hidden_activations(X, layer=k)`` reads any
        hidden layer.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        H : ndarray of shape (n_samples, hidden_layer_sizes[-1])
        """
        return self.hidden_activations(X, layer=-1)

    # ---- fit ----------------------------------------------------------------------------
    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"

        n_hidden = len(layer_units) - 2
        net = self._make_net(layer_units, dtype,
                             batch_norm=self._per_hidden("batch_norm", n_hidden),
                             dropout=self._per_hidden("dropout", n_hidden),
                             input_dropout=self.input_dropout)
        if self.init is None:
            # scikit-learn's _init_coef, same draws in the same order
            hidden = self._hidden_activations(len(layer_units) - 2)
            factor = 2.0 if hidden and all(a in ("logistic", "sigmoid") for a in hidden) else 6.0
            if not hidden and self.activation in ("logistic", "sigmoid"):
                factor = 2.0
            for W, b, fan_in, fan_out in zip(net.weights, net.biases, layer_units[:-1],
                                             layer_units[1:]):
                bound = np.sqrt(factor / (fan_in + fan_out))
                W[...] = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
                b[...] = self._random_state.uniform(-bound, bound, fan_out)
        else:
            net.initialize(self.init, seed=int(self._random_state.randint(np.iinfo(np.int32).max)))
        self._net = net
        self._store_coefs(net)
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        self._best_bn = self._bn_snapshot(net)

        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self.validation_loss_curve_ = None
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _check_extras(self, n_hidden):
        """The fastbp extras that the solver or the loss cannot honour: ValueError."""
        self._per_hidden("dropout", n_hidden)
        self._per_hidden("batch_norm", n_hidden)
        if self.solver not in _STOCHASTIC_SOLVERS:
            # L-BFGS minimizes one deterministic function: the full-batch objective. Dropout
            # would make it random, and batch norm's batch statistics and running
            # statistics belong to minibatch training.
            if self._regularized():
                raise ValueError("dropout/batch_norm need solver 'sgd' or 'adam' (L-BFGS "
                                 f"minimizes a deterministic full-batch loss), got solver="
                                 f"{self.solver!r}")
            for name in ("clip_norm", "max_norm"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} needs solver 'sgd' or 'adam' (it acts on each "
                                     f"optimizer step), got solver={self.solver!r}")
        if getattr(self, "loss", None) == "poisson" and self._regularized():
            # the Poisson path trains on targets shifted by the batch's evaluation-mode
            # output, which is not the training pass's output under dropout/batch norm
            raise ValueError("dropout/batch_norm are not supported with loss='poisson'")

    def _class_sample_weight(self, y, sample_weight, incremental):
        """sample_weight times each sample's class weight (``class_weight``: a dict
        {class label: weight}, missing classes 1, or 'balanced', scikit-learn's
        ``compute_class_weight``); sample_weight itself without class_weight."""
        class_weight = getattr(self, "class_weight", None)
        if class_weight is None:
            return sample_weight
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError("class_weight is not supported for multilabel targets")
        classes = self._label_binarizer.classes_
        index = np.argmax(y, axis=1) if y.shape[1] > 1 else y[:, 0].astype(np.intp)
        if isinstance(class_weight, str):   # "balanced" (the parameter constraints)
            if incremental:
                raise ValueError("class_weight='balanced' is not supported for partial_fit "
                                 "(one call sees only part of the data): pass the weights "
                                 "of compute_class_weight('balanced', classes=classes, "
                                 "y=y_all) as a dict")
            weights = compute_class_weight("balanced", classes=np.arange(len(classes)),
                                           y=index)
        else:
            known = set(classes.tolist())
            unknown = [k for k in class_weight if k not in known]
            if unknown:
                raise ValueError(f"class_weight has keys {unknown} that are not classes; the "
                                 f"classes are {classes.tolist()}")
            weights = np.ones(len(classes))
            for i, c in enumerate(classes.tolist()):
                if c in class_weight:
                    w = class_weight[c]
                    if (isinstance(w, (bool, np.bool_)) or not isinstance(w, Real)
                            or not (np.isfinite(w) and w >= 0)):
                        raise ValueError(f"class_weight[{c!r}] must be a finite number >= 0, "
                                         f"got {w!r}")
                    weights[i] = w
        per_sample = weights[index]
        return per_sample if sample_weight is None else sample_weight * per_sample

    def _bf16(self):
        """True when training products run in bfloat16 (precision='bf16'), after checking
        that the settings allow it."""
        if self.precision in (None, "float32", "float64"):
            if self.precision is not None and self.dtype is not None and self.precision != self.dtype:
                raise ValueError(f"precision={self.precision!r} contradicts dtype={self.dtype!r}")
            return False
        if self.dtype == "float64":
            raise ValueError("precision='bf16' trains a float32 network: dtype must be None "
                             "or 'float32', got 'float64'")
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise ValueError(f"precision='bf16' needs solver 'sgd' or 'adam', got "
                             f"{self.solver!r}")
        return True

    def _train_dtype(self, X):
        if self._bf16():
            return np.dtype(np.float32)
        if self.dtype is not None:
            return np.dtype(self.dtype)
        if self.precision is not None:
            return np.dtype(self.precision)
        return np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)

    def _fit(self, X, y, sample_weight=None, incremental=False, validation_data=None):
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden_layer_sizes)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        self._check_extras(len(hidden_layer_sizes))

        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        n_features = X.shape[1]
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        sample_weight = self._class_sample_weight(y, sample_weight, incremental)
        self.n_outputs_ = y.shape[1]
        layer_units = [n_features] + hidden_layer_sizes + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        self.n_threads_ = self._threads()   # resolved once per fit (engine_threads in a worker)

        if first_pass:
            self._initialize(y, layer_units, self._train_dtype(X))
        elif self._coefs_units() != layer_units:
            raise ValueError(f"warm_start/partial_fit: the network has layer sizes "
                             f"{self._coefs_units()}, this fit needs {layer_units}")
        elif self._fitted_batch_norm() != self._per_hidden("batch_norm",
                                                            len(hidden_layer_sizes)):
            raise ValueError(f"batch_norm: the fitted network has batch norm on the hidden "
                             f"layers {self._fitted_batch_norm()}, this fit asks for "
                             f"{self._per_hidden('batch_norm', len(hidden_layer_sizes))} "
                             "(warm_start/partial_fit continue the fitted network)")
        net = self._loaded_net(training=True)
        self._net = net

        try:
            if self.solver in _STOCHASTIC_SOLVERS:
                self._fit_stochastic(net, X, y, sample_weight, incremental, validation_data)
            else:
                if validation_data is not None:
                    warnings.warn("validation_data is used by the 'sgd' and 'adam' solvers "
                                  "only; solver='lbfgs' ignores it")
                self._fit_lbfgs(net, X, y, sample_weight)
        finally:
            self._store_coefs(net)
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError(_NONFINITE_MSG)
        return self

    # targets of fastbp's loss from scikit-learn's (binarized) y
    def _fastbp_loss(self):
        return {"softmax": "cross_entropy", "logistic": "binary_cross_entropy"}.get(
            self.out_activation_, "mse")

    def _targets(self, y, dtype):
        if self.out_activation_ == "softmax":
            return np.ascontiguousarray(np.argmax(y, axis=1), dtype=np.int64)
        return np.ascontiguousarray(y, dtype=dtype)

    def _sk_loss(self, y, out, sw):
        """scikit-learn's data loss for targets y (2-D) and output activations out."""
        if self.out_activation_ == "identity":
            return _squared_loss(y, out, sw)
        if self.out_activation_ == "exp":
            with np.errstate(divide="ignore"):
                return _poisson_loss(y, np.log(out), sw)
        if self.out_activation_ == "softmax":
            return _log_loss(y, out, sw)
        return _binary_log_loss(y, out, sw)

    def _penalty(self, net, sw_sum):
        """The L2 penalty (scikit-learn's alpha term) plus ``l1`` times the weights' L1
        norm (the biases are not penalized)."""
        pen = 0.0
        if self.alpha:
            pen = 0.5 * self.alpha * _sum_squares(net.weights) / sw_sum
        if self.l1:
            pen += self.l1 * _sum_abs(net.weights)
        return pen

    # ---- L-BFGS -------------------------------------------------------------------------
    def _data_loss_grad(self, net, Xb, Tb, yb, swb, l2):
        """(data loss, flat gradient) of a dense block; the gradient includes
        ``l2 / sum_w * W``, the loss no penalty. Poisson: the engine has no exp output, so
        the gradient comes from its squared-error backward pass with the targets shifted
        to ``z - exp(z) + y`` (then dE/dz = exp(z) - y)."""
        if self.out_activation_ == "exp":
            Z = net.predict(Xb)
            value = _poisson_loss(yb, Z, swb)
            _, g = net.loss_and_gradients(Xb, _poisson_targets(Z, yb), loss="mse", inputs=False,
                                          sample_weight=swb, l2=l2)
            return value, g.flat
        value, g = net.loss_and_gradients(Xb, Tb, loss=self._fastbp_loss(), inputs=False,
                                          sample_weight=swb, l2=l2)
        return value, g.flat

    def _objective(self, net, rows, T, yf, sw):
        """L-BFGS objective at the network's parameters: (data loss + L2 (and L1) penalty,
        float64 gradient in fastbp's flat layout W0, b0, W1, b1, ...), and the penalty."""
        sw_sum = float(rows.n if sw is None else sw.sum())
        with num_threads(self._threads()):
            if not rows.sparse:
                value, grad = self._data_loss_grad(net, rows.X, T, yf, sw, self.alpha)
                grad = grad.astype(np.float64)
            else:
                value, grad = 0.0, np.zeros(net.parameters.size)
                for sl in rows.blocks(rows.rows_per_block()):
                    swb = None if sw is None else sw[sl]
                    wb = float(sl.stop - sl.start if swb is None else swb.sum())
                    if wb <= 0:
                        continue
                    v, g = self._data_loss_grad(net, rows.take(sl), T[sl], yf[sl], swb, 0.0)
                    value += v * wb / sw_sum
                    grad += g.astype(np.float64) * (wb / sw_sum)
                if self.alpha:
                    off = 0
                    for W, b in zip(net.weights, net.biases):
                        grad[off:off + W.size] += self.alpha / sw_sum * W.ravel()
                        off += W.size + b.size
            if self.l1:   # the subgradient l1 * sign(W), as fastbp's Trainer
                off = 0
                for W, b in zip(net.weights, net.biases):
                    grad[off:off + W.size] += self.l1 * np.sign(W.ravel())
                    off += W.size + b.size
        pen = self._penalty(net, sw_sum)
        return value + pen, grad, pen

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight=None, *unused):
        """scikit-learn's private helper, for code that calls it: loss (scikit-learn's
        value) and gradient for parameters packed as all coefs then all intercepts."""
        net = self._loaded_net()
        if any(net.batch_norm):
            raise ValueError("_loss_grad_lbfgs packs coefs_ and intercepts_ only; this "
                             "network has batch norm (batch_norm needs solver 'sgd' or 'adam')")
        packed = np.asarray(packed_coef_inter)
        off = 0
        for W in net.weights:
            W[...] = packed[off:off + W.size].reshape(W.shape)
            off += W.size
        for b in net.biases:
            b[...] = packed[off:off + b.size]
            off += b.size
        y = np.asarray(y)
        y = y.reshape(-1, 1) if y.ndim == 1 else y
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, net.dtype)
        value, grad, pen = self._objective(net, _Rows(X, net.dtype), self._targets(y, net.dtype),
                                           np.asarray(y, dtype=net.dtype), sw)
        if self.out_activation_ == "identity" and y.shape[1] > 1:
            value = (value - pen) / y.shape[1] + pen
        ws, bs, off = [], [], 0
        for W, b in zip(net.weights, net.biases):
            ws.append(grad[off:off + W.size])
            bs.append(grad[off + W.size:off + W.size + b.size])
            off += W.size + b.size
        return value, np.concatenate(ws + bs)

    def _fit_lbfgs(self, net, X, y, sample_weight):
        data = self._training_set(X, y, sample_weight, net.dtype)

        def fun(x):
            net.parameters[...] = x
            value, grad, _ = self._objective(net, data.rows, data.T, data.y, data.sw)
            return value, grad

        cbs = _callbacks.check_callbacks(self.callbacks)
        shim = SimpleNamespace(net=net)   # what Callback objects read from a trainer
        iteration = 0
        stopped = False

        def opt_cb(intermediate_result):
            nonlocal iteration, stopped
            logs = {"loss": float(intermediate_result.fun), "lr": None, "estimator": self,
                    "trainer": shim, "net": net}
            stop = _run_callbacks(cbs, iteration, logs)
            iteration += 1
            if stop:
                stopped = True
                raise StopIteration

        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        x0 = net.parameters.astype(np.float64)
        with _callbacks.running(cbs, shim):
            # BLAS held at one thread for the whole search: between fastbp's calls L-BFGS
            # makes small BLAS calls whose spinning OpenBLAS threads would fight fastbp's
            # OpenMP ones
            with blas_single_threaded():
                opt_res = scipy.optimize.minimize(
                    fun, x0, method="L-BFGS-B", jac=True, callback=opt_cb if cbs else None,
                    options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                             **_get_additional_lbfgs_options_dict("iprint", iprint)})
            if stopped:   # a callback asked to stop: no ConvergenceWarning (as for sgd/adam)
                self.n_iter_ = min(opt_res.nit, self.max_iter)
            else:
                self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
            net.parameters[...] = opt_res.x
        self.loss_ = float(opt_res.fun)
        if self.out_activation_ == "identity" and self.n_outputs_ > 1:
            # scikit-learn's squared-error loss_ averages over the outputs
            pen = self._penalty(net, data.sw_sum)
            self.loss_ = (self.loss_ - pen) / self.n_outputs_ + pen

    # ---- SGD / Adam ---------------------------------------------------------------------
    def _fit_stochastic(self, net, X, y, sample_weight, incremental, validation_data):
        """SGD/Adam: up to max_iter epochs (one for partial_fit) with scikit-learn's
        bookkeeping after each: loss_, validation, stopping rules, learning-rate schedule,
        then the callbacks."""
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = _new_optimizer(self)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        train, validation = self._split_validation(X, y, sample_weight, validation_data)
        batch_size = self._batch_size(train[0].shape[0], any(net.batch_norm))
        data = self._training_set(*train, net.dtype)
        val = None
        if validation is not None:
            val = self._validation_set(*validation, net.dtype)
            if getattr(self, "validation_loss_curve_", None) is None:
                self.validation_loss_curve_ = []
        # sum over batches of len_b / sw_sum_b: the L2 term's weight in scikit-learn's loss_
        n_batches = math.ceil(data.n / batch_size)
        penalty_batches = (n_batches if data.sw is None
                           else n_batches * data.n / max(data.sw_sum, 1e-300))

        nt = self.n_threads_
        seed = int(self._random_state.randint(np.iinfo(np.int32).max))
        trainer = Trainer(net, loss=self._fastbp_loss(), optimizer=self._optimizer,
                          batch_size=batch_size, n_threads=nt, seed=seed,
                          lr_schedule=_LearningRate(self._optimizer), l2=float(self.alpha),
                          l1=float(self.l1), clip_norm=self.clip_norm, max_norm=self.max_norm,
                          precision="bf16" if self._bf16() else None)
        if data.rows.sparse or self.out_activation_ == "exp":
            run_epoch = functools.partial(self._block_epoch, trainer, data, batch_size,
                                          np.random.default_rng(seed))
        else:
            run_epoch = functools.partial(self._dense_epoch, trainer, data)
        cbs = _callbacks.check_callbacks(self.callbacks)

        diverged = False
        with _callbacks.running(cbs, trainer):
            try:
                self.n_iter_ = 0
                with num_threads(nt):
                    for _ in range(self.max_iter):
                        lr = self._optimizer.lr
                        sq_start = _sum_squares(net.weights) if self.alpha else 0.0
                        abs_start = _sum_abs(net.weights) if self.l1 else 0.0
                        data_loss = np.nan
                        if not diverged:
                            data_loss, diverged = self._epoch_or_divergence(run_epoch, net)
                        self._record_epoch_loss(data_loss, sq_start, net, data.n, penalty_batches,
                                                abs_start)

                        logs = {"loss": self.loss_, "lr": lr}
                        if val is not None:
                            logs.update(self._validate(net, val))
                        if self._no_improvement_stop(logs.get("val_score"), net):
                            break
                        if cbs:
                            logs.update(estimator=self, trainer=trainer, net=net)
                            if _run_callbacks(cbs, self.n_iter_ - 1, logs):
                                break
                        if incremental:
                            break
                        if self.n_iter_ == self.max_iter:
                            warnings.warn(
                                "Stochastic Optimizer: Maximum iterations (%d) reached and "
                                "the optimization hasn't converged yet." % self.max_iter,
                                ConvergenceWarning)
            except KeyboardInterrupt:
                warnings.warn("Training interrupted by user.")

        if self.early_stopping:
            for W, b, c, i in zip(net.weights, net.biases, self._best_coefs, self._best_intercepts):
                W[...] = c
                b[...] = i
            self._bn_restore(net, getattr(self, "_best_bn", None))

    def _split_validation(self, X, y, sample_weight, validation_data):
        """((X, y, sample_weight) to train on, (X_val, y_val, sample_weight_val) or None):
        validation_data when given, else with early_stopping scikit-learn's split of
        validation_fraction of the data (stratified for single-output classification;
        y_val as labels for classifiers), else no validation set."""
        if validation_data is not None:
            return (X, y, sample_weight), self._check_validation_data(validation_data)
        if not self.early_stopping:
            return (X, y, sample_weight), None
        classifier = is_classifier(self)
        stratify = y if classifier and self.n_outputs_ == 1 else None
        if sample_weight is None:
            X_train, X_val, y_train, y_val = train_test_split(
                X, y, random_state=self._random_state, test_size=self.validation_fraction,
                stratify=stratify)
            sample_weight_train = sample_weight_val = None
        else:
            (X_train, X_val, y_train, y_val, sample_weight_train,
             sample_weight_val) = train_test_split(
                X, y, sample_weight, random_state=self._random_state,
                test_size=self.validation_fraction, stratify=stratify)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        if classifier:
            y_val = self._label_binarizer.inverse_transform(y_val)
        return (X_train, y_train, sample_weight_train), (X_val, y_val, sample_weight_val)

    def _batch_size(self, n_samples, batch_norm=False):
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
            if batch_norm:
                # batch norm needs 2 samples or more in every batch: 'auto' then takes the
                # largest size up to 200 that leaves no batch of one
                while batch_size > 2 and n_samples % batch_size == 1:
                    batch_size -= 1
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than "
                              "sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        if batch_norm and (batch_size == 1 or n_samples % batch_size == 1):
            raise ValueError(f"batch_norm needs at least 2 samples in every training batch; "
                             f"with n_samples={n_samples} and batch_size={batch_size} "
                             f"{'every' if batch_size == 1 else 'the last'} batch has 1 "
                             "(choose another batch_size)")
        return batch_size

    def _training_set(self, X, y, sample_weight, dtype):
        """The training data in ``dtype``: ``rows`` (_Rows), ``T`` (fastbp's targets),
        ``y`` (scikit-learn's 2-D targets as floats), ``sw`` (sample weights or None),
        ``n`` (the number of samples) and ``sw_sum`` (their weight sum, n when unweighted)."""
        rows = _Rows(X, dtype)
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype)
        return SimpleNamespace(rows=rows, T=self._targets(y, dtype),
                               y=np.asarray(y, dtype=dtype), sw=sw, n=rows.n,
                               sw_sum=float(rows.n if sw is None else sw.sum()))

    def _validation_set(self, X_val, y_val, sample_weight_val, dtype):
        """The validation data: ``rows`` (_Rows in ``dtype``), ``y`` (as the score
        function takes it), ``y_2d`` (the 2-D float targets of the loss) and ``sw``."""
        if is_classifier(self):
            y_2d = np.asarray(self._label_binarizer.transform(y_val), dtype=dtype)
        else:
            y_2d = np.asarray(y_val, dtype=dtype)
        if y_2d.ndim == 1:
            y_2d = y_2d.reshape(-1, 1)
        return SimpleNamespace(rows=_Rows(X_val, dtype), y=y_val, y_2d=y_2d,
                               sw=sample_weight_val)

    def _dense_epoch(self, trainer, data):
        """One epoch of the compiled trainer over dense rows; scikit-learn's data loss."""
        history = trainer.fit(data.rows.X, data.T, epochs=1, shuffle=bool(self.shuffle),
                              sample_weight=data.sw)
        value = history.loss[0]
        if self.out_activation_ == "identity":
            value /= self.n_outputs_
        return value

    def _block_epoch(self, trainer, data, batch_size, perm_rng):
        """One epoch, a block of rows at a time: blocks of whole batches densified from
        sparse rows, or (Poisson) single batches whose targets are shifted from the
        batch's forward pass (the engine has no exp output); scikit-learn's data loss."""
        poisson = self.out_activation_ == "exp"
        order = perm_rng.permutation(data.n) if self.shuffle else None
        per = batch_size if poisson else data.rows.rows_per_block(batch_size)
        total = 0.0
        for sl in data.rows.blocks(per):
            idx = sl if order is None else order[sl]
            Xb = data.rows.take(idx)
            swb = None if data.sw is None else data.sw[idx]
            if poisson:
                yb = data.y[idx]
                Z = trainer.net.predict(Xb)
                target = _poisson_targets(Z, yb)
                total += _poisson_loss(yb, Z, swb) * Xb.shape[0]
            else:
                target = data.T[idx]
            history = trainer.fit(Xb, target, epochs=1, shuffle=False, sample_weight=swb)
            if not poisson:
                wb = Xb.shape[0] if swb is None else float(swb.sum())
                value = history.loss[0] * wb
                if self.out_activation_ == "identity":
                    value /= self.n_outputs_
                total += value
        return total / (data.n if poisson else data.sw_sum)

    @staticmethod
    def _epoch_or_divergence(run_epoch, net):
        """(run_epoch()'s data loss, False), or (NaN, True) when training diverges, with
        the weights set to NaN: scikit-learn goes on with NaN weights (NaN losses and
        scores; early stopping then restores the best weights, otherwise fit raises at
        the end), and so does the caller, without computing on NaNs."""
        try:
            return run_epoch(), False
        except TrainingDiverged:
            net.parameters[...] = np.nan
            return np.nan, True

    def _record_epoch_loss(self, data_loss, sq_start, net, n_samples, penalty_batches,
                           abs_start=0.0):
        """n_iter_, t_, loss_ and loss_curve_ (and the verbose line) after an epoch. loss_
        is the data loss plus the L2 penalty, its squared weights the mean of those at the
        epoch's start (``sq_start``) and end (and the L1 penalty, ``l1`` times the mean of
        the weights' L1 norms at the start, ``abs_start``, and end)."""
        penalty = 0.0
        if self.alpha:
            penalty = (0.5 * self.alpha * 0.5 * (sq_start + _sum_squares(net.weights))
                       * penalty_batches / n_samples)
        if self.l1:
            penalty += self.l1 * 0.5 * (abs_start + _sum_abs(net.weights))
        self.n_iter_ += 1
        self.loss_ = data_loss + penalty
        self.t_ += n_samples
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

    def _validate(self, net, val):
        """``val_loss`` (also appended to validation_loss_curve_) and ``val_score`` of the
        network on the validation set."""
        out = self._net_output(net, val.rows)
        val_loss = float(self._sk_loss(val.y_2d, out, val.sw))
        self.validation_loss_curve_.append(val_loss)
        return {"val_loss": val_loss, "val_score": self._score_output(out, val.y, val.sw)}

    def _no_improvement_stop(self, val_score, net):
        """scikit-learn's end of an iteration: the no-improvement count (on val_score with
        early stopping, else on the training loss), the invscaling learning rate, and
        after n_iter_no_change iterations without improvement the stop or (adaptive) the
        learning-rate cut. True to stop."""
        self._update_no_improvement_count(val_score, net)
        self._iteration_ends()
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        if self.early_stopping:
            msg = ("Validation score did not improve more than tol=%f for %d consecutive "
                   "epochs." % (self.tol, self.n_iter_no_change))
        else:
            msg = ("Training loss did not improve more than tol=%f for %d consecutive "
                   "epochs." % (self.tol, self.n_iter_no_change))
        if self._trigger_stopping(msg):
            return True
        self._no_improvement_count = 0
        return False

    def _iteration_ends(self):
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._optimizer.lr = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t

    def _trigger_stopping(self, msg):
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if self._optimizer.lr <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._optimizer.lr /= 5.0
        if self.verbose:
            print(msg + " Setting learning rate to %f" % self._optimizer.lr)
        return False

    def _update_no_improvement_count(self, val_score, net):
        if self.early_stopping:
            self.validation_scores_.append(val_score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last_valid_score = self.validation_scores_[-1]
            if last_valid_score < (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                self._best_coefs = [W.copy() for W in net.weights]
                self._best_intercepts = [b.copy() for b in net.biases]
                self._best_bn = self._bn_snapshot(net)
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _check_validation_data(self, validation_data):
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be a pair (X_val, y_val) or a triple "
                             "(X_val, y_val, sample_weight_val)")
        X_val, y_val = validation_data[0], validation_data[1]
        X_val = validate_data(self, X_val, accept_sparse=["csr", "csc"], reset=False,
                              dtype=(np.float64, np.float32))
        y_val = np.asarray(y_val)
        if y_val.ndim == 2 and y_val.shape[1] == 1:
            y_val = column_or_1d(y_val)
        if y_val.shape[0] != X_val.shape[0]:
            raise ValueError(f"validation_data: X_val has {X_val.shape[0]} samples, y_val "
                             f"{y_val.shape[0]}")
        sw_val = None
        if len(validation_data) == 3 and validation_data[2] is not None:
            sw_val = _check_sample_weight(validation_data[2], X_val)
        if not is_classifier(self) and y_val.ndim == 1:
            y_val = y_val.reshape(-1, 1)
        return X_val, y_val, sw_val

    def _score_output(self, out, y, sample_weight):
        if not np.isfinite(out).all():
            return np.nan
        return self._score_function(out, y, sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, validation_data=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : ndarray or sparse matrix of shape (n_samples, n_features)
            The input data.
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers in regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights (non-negative).
        validation_data : tuple (X_val, y_val[, sample_weight_val]), default=None
            fastbp extra (sgd/adam): a validation set. Its loss after every epoch is kept
            in ``validation_loss_curve_``; with ``early_stopping=True`` it replaces the
            split of ``validation_fraction`` of the training data. In a Pipeline
            (``fit(..., mlpclassifier__validation_data=...)``) X_val is not transformed by
            the earlier steps: pass it preprocessed.

        Returns
        -------
        self : object
            Returns a trained MLP model.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False,
                         validation_data=validation_data)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic"
                                 " optimizers. %s is not stochastic." % self.solver)
        return True

    @property
    def _n_features_out(self):
        """Columns of transform's output (the last hidden layer's units), for
        get_feature_names_out."""
        return self.coefs_[-1].shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        # transform's output has the training dtype: the input's (float32 or float64)
        # unless dtype= fixes it
        tags.transformer_tags.preserves_dtype = (["float64", "float32"] if self.dtype is None
                                                 else [self.dtype])
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multilabel": is_classifier(self)}


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer Perceptron classifier trained by fastbp: a drop-in for
    :class:`sklearn.neural_network.MLPClassifier`.

    This model optimizes the log-loss function using LBFGS or stochastic gradient descent
    (SGD, Adam). Parameters, attributes and methods are scikit-learn's (see its
    documentation); the forward and backward passes and the optimizer updates run in
    fastbp's compiled code.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
    activation : str or list of str, default='relu'
        scikit-learn's 'identity', 'logistic', 'tanh', 'relu', or any trainable fastbp
        activation ('gelu', 'silu', 'elu', 'leaky_relu', 'softplus', ...); a list gives
        one per hidden layer.
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
    alpha : float, default=0.0001
        Strength of the L2 regularization term (divided by the sample weight sum).
    batch_size : int, default='auto'
        ``min(200, n_samples)`` when 'auto'.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        (solver='sgd' only)
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
    max_iter : int, default=200
    shuffle : bool, default=True
    random_state : int, RandomState instance, default=None
        Weight initialization (scikit-learn's draws), the early-stopping split and the
        seed of fastbp's batch shuffling.
    tol : float, default=1e-4
    verbose : bool, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    beta_1 : float, default=0.9
    beta_2 : float, default=0.999
    epsilon : float, default=1e-8
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
    init : str, callable or list, default=None
        fastbp extra: a fastbp initializer (``fastbp.initializers``) for the weights, or one
        per layer; biases then start at 0. None: scikit-learn's initialization.
    n_threads : int, default=None
        fastbp extra: threads of the compiled kernels. None: ``fastbp.get_num_threads()``
        (inside a Dask or Ray task: the task's share of its worker; else
        ``OMP_NUM_THREADS`` when set, as joblib sets it in its workers).
    dtype : {'float32', 'float64'}, default=None
        fastbp extra: the training precision. None: float32 input trains in float32,
        anything else in float64 (scikit-learn's rule).
    callbacks : list, default=None
        fastbp extra: callables ``(epoch, logs) -> stop`` or ``fastbp.callbacks.Callback``
        objects, called after each epoch (each iteration for lbfgs); ``logs`` holds
        ``loss``, ``lr``, ``val_loss``/``val_score`` (with a validation set),
        ``estimator`` and ``trainer``.
    dropout : float or list of float, default=0.0
        fastbp extra (sgd/adam): inverted dropout on each hidden layer's output, one rate
        in [0, 1) or one per hidden layer. Predictions use no dropout.
    input_dropout : float, default=0.0
        fastbp extra (sgd/adam): dropout on the inputs.
    batch_norm : bool or list of bool, default=False
        fastbp extra (sgd/adam): batch normalization before each hidden activation (or
        on the hidden layers where the list says True); predictions use the running
        statistics. Every training batch needs 2 samples or more.
    l1 : float, default=0.0
        fastbp extra: L1 penalty ``l1 * sum|W|`` on the weights (not the biases): its
        subgradient is added to each step's gradient (lbfgs: to the objective).
    clip_norm : float, default=None
        fastbp extra (sgd/adam): scale each step's gradient to a global norm of at most
        clip_norm (``torch.nn.utils.clip_grad_norm_``).
    max_norm : float, default=None
        fastbp extra (sgd/adam): after each step, rescale each unit's incoming weights (a
        column of a ``coefs_`` matrix) to a norm of at most max_norm.
    class_weight : dict or 'balanced', default=None
        fastbp extra: weights ``{class label: weight}`` (missing classes 1), or 'balanced'
        (``n_samples / (n_classes * np.bincount(y))``); multiplies each sample's weight
        by its class's, for every solver. Not for multilabel targets; 'balanced' not in
        partial_fit (pass the weights of the whole data as a dict).
    precision : {'float32', 'float64', 'bf16'}, default=None
        fastbp extra (sgd/adam): 'bf16' trains a float32 network with every matrix product
        in bfloat16 operands and float32 sums (``fastbp.Trainer(precision="bf16")``); the
        fitted ``coefs_`` are float32 and predictions are float32. 'float32'/'float64' are
        ``dtype``'s choices; None: ``dtype``'s rule.

    Attributes
    ----------
    classes_, loss_, best_loss_, loss_curve_, validation_scores_ : as in scikit-learn
    best_validation_score_, t_, coefs_, intercepts_, n_features_in_ : as in scikit-learn
    feature_names_in_, n_iter_, n_layers_, n_outputs_, out_activation_ : as in scikit-learn
    validation_loss_curve_ : list or None
        fastbp extra: validation log-loss after each epoch (sgd/adam) when there is a
        validation set (``early_stopping=True`` or ``fit(validation_data=...)``).
    n_threads_ : int
        fastbp extra: the thread count the last fit resolved and used (``n_threads``, or
        the default it resolved to: in a Dask or Ray worker, the task's share).
    bn_gammas_, bn_betas_, bn_running_means_, bn_running_vars_ : list of ndarray or None
        fastbp extra, only with batch_norm: batch norm's scales and shifts (training
        dtype) and running means and variances (float64), one entry per layer as
        ``coefs_`` (None where a layer has no batch norm, always for the output layer).
        A hidden unit computes ``f(gamma * (z - mean) / sqrt(var + 1e-5) + beta)`` with
        ``z = a @ coefs_[i] + intercepts_[i]``.

    Methods beyond scikit-learn: ``transform(X)`` (the last hidden layer's activations)
    and ``hidden_activations(X, layer=-1)`` (any hidden layer's), in evaluation mode;
    ``from_sklearn(mlp)`` (classmethod) and ``to_sklearn()``, conversions from and to
    scikit-learn's MLPClassifier.

    Notes
    -----
    Differences from scikit-learn: see the module docstring (``fastbp.sklearn``): the
    batches are shuffled by fastbp's own generator, the L2 term of ``loss_`` is evaluated
    at the epoch's start and end weights, ``sample_weight`` must be non-negative.
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 init=None, n_threads=None, dtype=None, callbacks=None, dropout=0.0,
                 input_dropout=0.0, batch_norm=False, l1=0.0, clip_norm=None, max_norm=None,
                 class_weight=None, precision=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss="log_loss", shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            init=init, n_threads=n_threads, dtype=dtype, callbacks=callbacks, dropout=dropout,
            input_dropout=input_dropout, batch_norm=batch_norm, l1=l1, clip_norm=clip_norm,
            max_norm=max_norm, precision=precision)
        self.class_weight = class_weight

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)

        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}.")
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray, shape (n_samples,) or (n_samples, n_classes)
            The predicted classes.
        """
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score_function(self, out, y, sample_weight):
        if self.n_outputs_ == 1:
            out = out.ravel()
        return accuracy_score(y, self._label_binarizer.inverse_transform(out),
                              sample_weight=sample_weight)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array of shape (n_classes,), default=None
            Classes across all calls to partial_fit; required for the first call.

        Returns
        -------
        self : object
            Trained MLP model.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_log_proba(self, X):
        """Return the log of probability estimates, ``log(predict_proba(X))``."""
        y_prob = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Probability estimates, shape (n_samples, n_classes), columns ordered as
        ``classes_``."""
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer Perceptron regressor trained by fastbp: a drop-in for
    :class:`sklearn.neural_network.MLPRegressor`.

    Optimizes the squared error (or the half Poisson deviance with ``loss='poisson'``,
    output ``exp``) using LBFGS or stochastic gradient descent. Parameters are those of
    :class:`MLPClassifier` plus ``loss``; multi-output targets (n_samples, n_outputs) are
    supported. ``loss='poisson'`` runs one compiled step per batch from Python (the
    engine has no exp output; the gradient is obtained from its squared-error
    backward pass with shifted targets), so it is slower than ``'squared_error'``.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose,
    warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1,
    beta_2, epsilon, n_iter_no_change, max_fun, init, n_threads, dtype, callbacks, dropout,
    input_dropout, batch_norm, l1, clip_norm, max_norm, precision :
        see :class:`MLPClassifier` (dropout and batch_norm not with loss='poisson').

    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_ (R2), best_validation_score_, t_,
    coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_,
    n_outputs_, out_activation_ : as in scikit-learn.
    validation_loss_curve_ : list or None
        fastbp extra: validation loss after each epoch when there is a validation set.
    n_threads_ : int
        fastbp extra: the thread count the last fit used (see :class:`MLPClassifier`).
    bn_gammas_, bn_betas_, bn_running_means_, bn_running_vars_ :
        with batch_norm: see :class:`MLPClassifier`.

    ``transform(X)``, ``hidden_activations(X, layer=-1)``, ``from_sklearn(mlp)`` and
    ``to_sklearn()``: see :class:`MLPClassifier`.
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 init=None, n_threads=None, dtype=None, callbacks=None, dropout=0.0,
                 input_dropout=0.0, batch_norm=False, l1=0.0, clip_norm=None, max_norm=None,
                 precision=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss=loss, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            init=init, n_threads=n_threads, dtype=dtype, callbacks=callbacks, dropout=dropout,
            input_dropout=input_dropout, batch_norm=batch_norm, l1=l1, clip_norm=clip_norm,
            max_norm=max_norm, precision=precision)

    def predict(self, X):
        """Predict using the multi-layer perceptron model.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def _score_function(self, out, y, sample_weight):
        if out.shape[1] == 1:
            out = out.ravel()
        return r2_score(y, out, sample_weight=sample_weight)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    # scikit-learn's MLPRegressor offers partial_fit for every solver (its available_if
    # tests the bound method, which is always true); with lbfgs it runs L-BFGS from the
    # current weights. Kept as is for drop-in compatibility.
    @available_if(lambda est: est._check_solver)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
            Trained MLP model.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)


# ---- skl2onnx: converters for both estimators ---------------------------------------------
#
# skl2onnx.to_onnx converts a Pipeline step by the converter registered for its class.
# Importing skl2onnx (and onnx) takes ~0.75 s, so fastbp.sklearn does not import it: the
# converters are registered the moment skl2onnx is imported, by a one-shot import hook
# (_Skl2onnxHook) installed when fastbp.sklearn is imported, or right away when skl2onnx
# was imported first. Nothing to call; register_skl2onnx() does it by hand.

_SKL2ONNX_CLASSIFIER_OPTIONS = {"zipmap": [True, False, "columns"],
                                "output_class_labels": [False, True], "nocl": [True, False]}


def register_skl2onnx():
    """Registers fastbp's MLPClassifier and MLPRegressor with skl2onnx
    (``skl2onnx.update_registered_converter``), so that ``skl2onnx.to_onnx`` converts them
    alone or in a Pipeline. Done automatically when skl2onnx is imported (before or after
    fastbp.sklearn); calling it again is harmless.

    The graphs compute in the network's dtype (the input is cast to it when it differs)
    with every fastbp activation and batch norm (inference form), as
    ``fastbp.export.to_onnx``. The classifier gives ``label`` (``predict``) and
    ``probabilities`` (``predict_proba``; the binary ``[1 - p, p]``; multilabel: the
    per-label probabilities and a label indicator matrix, as skl2onnx does for
    scikit-learn's MLPClassifier) with skl2onnx's options ``zipmap`` (default a ZipMap,
    as scikit-learn's classifiers), ``nocl`` and ``output_class_labels``; the regressor
    gives ``variable`` (n_samples, n_outputs), Poisson's exp included.
    """
    from skl2onnx import update_registered_converter
    update_registered_converter(MLPClassifier, "FastbpMLPClassifier", _skl2onnx_classifier_shapes,
                                _skl2onnx_convert_classifier, parser=_skl2onnx_parse_classifier,
                                options=dict(_SKL2ONNX_CLASSIFIER_OPTIONS))
    update_registered_converter(MLPRegressor, "FastbpMLPRegressor", _skl2onnx_regressor_shapes,
                                _skl2onnx_convert_regressor, parser=_skl2onnx_parse_regressor)


def _register_skl2onnx_quietly():
    try:
        register_skl2onnx()
    except Exception as exc:     # never break the user's import of skl2onnx
        warnings.warn(f"fastbp.sklearn could not register its skl2onnx converters ({exc!r}); "
                      "call fastbp.sklearn.register_skl2onnx() to see why", RuntimeWarning)


class _RegisteringLoader:
    """Runs skl2onnx's own loader, then registers the converters."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        # the module keeps its real loader (importlib.resources and the like read it)
        module.__spec__.loader = module.__loader__ = self.loader
        self.loader.exec_module(module)
        _register_skl2onnx_quietly()


class _Skl2onnxHook:
    """A sys.meta_path finder that only watches for ``skl2onnx``: it leaves the finding to
    the other finders and wraps the loader so that fastbp's converters are registered as
    soon as skl2onnx has run. It removes itself at the first lookup of skl2onnx."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "skl2onnx":
            return None
        _remove_skl2onnx_hook()
        import importlib.util
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisteringLoader(spec.loader)
        return spec

    def invalidate_caches(self):
        pass


def _remove_skl2onnx_hook():
    import sys
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Skl2onnxHook)]


def _install_skl2onnx_registration():
    import sys
    if sys.modules.get("skl2onnx") is not None:
        _register_skl2onnx_quietly()
    elif not any(isinstance(f, _Skl2onnxHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _Skl2onnxHook())


# skl2onnx's own parsers, after a clear error for an unfitted estimator (theirs would fail
# later on a missing attribute)
def _skl2onnx_parse_classifier(scope, model, inputs, custom_parsers=None):
    from skl2onnx._parse import _parse_sklearn_classifier
    check_is_fitted(model)
    return _parse_sklearn_classifier(scope, model, inputs, custom_parsers=custom_parsers)


def _skl2onnx_parse_regressor(scope, model, inputs, custom_parsers=None):
    from skl2onnx._parse import _parse_sklearn_simple_model
    check_is_fitted(model)
    return _parse_sklearn_simple_model(scope, model, inputs, custom_parsers=custom_parsers)


def _skl2onnx_classifier_shapes(operator):
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    calculate_linear_classifier_output_shapes(operator)
    est = operator.raw_operator
    if est._label_binarizer.y_type_.startswith("multilabel"):     # an indicator matrix
        operator.outputs[0].type.shape = [operator.inputs[0].get_first_dimension(),
                                          len(est.classes_)]


def _skl2onnx_regressor_shapes(operator):
    from skl2onnx.common.data_types import (BooleanTensorType, DoubleTensorType,
                                            FloatTensorType, Int64TensorType)
    from skl2onnx.common.utils import (check_input_and_output_numbers,
                                       check_input_and_output_types)
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    check_input_and_output_types(operator, good_input_types=[
        BooleanTensorType, DoubleTensorType, FloatTensorType, Int64TensorType])
    kind = (DoubleTensorType if isinstance(operator.inputs[0].type, DoubleTensorType)
            else FloatTensorType)
    operator.outputs[0].set_type(kind([operator.inputs[0].get_first_dimension(),
                                       operator.raw_operator.n_outputs_]))


def _skl2onnx_forward(scope, operator, container):
    """The estimator's output activations (scikit-learn's: with exp for Poisson) added to
    the container: (the _ContainerGraph, the name of the output), in the network's dtype."""
    import onnx
    from skl2onnx.common.data_types import guess_proto_type
    from .export import _ContainerGraph, _forward
    est = operator.raw_operator
    check_is_fitted(est)
    opset = container.target_opset
    if opset is not None and opset < 13:
        raise ValueError(f"fastbp's {type(est).__name__} converter needs target_opset 13 or "
                         f"newer, got {opset}")
    width = operator.inputs[0].type.shape[1] if len(operator.inputs[0].type.shape) > 1 else None
    if isinstance(width, Integral) and width != est.n_features_in_:
        raise ValueError(f"{type(est).__name__} expects {est.n_features_in_} features, the "
                         f"ONNX input has {width}")
    net = est._loaded_net()
    g = _ContainerGraph(onnx, net.dtype, scope, container)
    x = operator.inputs[0].full_name
    if guess_proto_type(operator.inputs[0].type) != g.elem:
        x = g.op("Cast", [x], to=g.elem)
    y = _forward(g, net, x)
    if est.out_activation_ == "exp":
        y = g.op("Exp", [y])
    return g, y


def _skl2onnx_output(g, x, variable):
    """x into the operator's output ``variable``, cast to its declared type."""
    from skl2onnx.common.data_types import guess_proto_type
    to = guess_proto_type(variable.type)
    if to in (g.onnx.TensorProto.FLOAT, g.onnx.TensorProto.DOUBLE) and to != g.elem:
        g.add_node("Cast", [x], variable.full_name, "", {"to": to})
    else:
        g.add_node("Identity", [x], variable.full_name, "", {})


def _skl2onnx_convert_classifier(scope, operator, container):
    from skl2onnx.common.utils_classifier import get_label_classes
    est = operator.raw_operator
    g, out = _skl2onnx_forward(scope, operator, container)
    TP = g.onnx.TensorProto
    proba = out
    if est.n_outputs_ == 1:                           # scikit-learn's [1 - p, p]
        proba = g.op("Concat", [g.op("Sub", [g.const(1.0, "one"), out]), out], axis=1)
    if est._label_binarizer.y_type_.startswith("multilabel"):
        label = g.op("Cast", [g.op("Greater", [out, g.const(0.5, "half")])], to=TP.INT64)
    else:
        classes = np.asarray(get_label_classes(scope, est))
        if operator.outputs[0].type.__class__.__name__ == "StringTensorType":
            classes, dtype = np.array([str(c) for c in classes], dtype=object), object
        else:
            if not np.array_equal(classes, np.round(classes.astype(np.float64))):
                raise ValueError(f"{type(est).__name__}: ONNX labels are integers or "
                                 f"strings, classes_ {classes.tolist()} are neither")
            dtype = np.int64
        index = g.op("ArgMax", [proba], axis=1, keepdims=0)
        label = g.op("Gather", [g.const(classes, "classes", dtype=dtype), index], axis=0)
    _skl2onnx_output(g, label, operator.outputs[0])
    _skl2onnx_output(g, proba, operator.outputs[1])


def _skl2onnx_convert_regressor(scope, operator, container):
    g, out = _skl2onnx_forward(scope, operator, container)
    _skl2onnx_output(g, out, operator.outputs[0])


_install_skl2onnx_registration()
