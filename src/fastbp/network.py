"""Network: fully-connected layers over one flat parameter buffer.

Layer l computes ``a_l = f_l(z_{l-1} @ W_l + b_l)`` with ``W_l`` of shape
``(n_in, n_out)``; with batch normalization, ``a_l = f_l(gamma_l * xhat + beta_l)`` where
``xhat`` normalizes ``z_{l-1} @ W_l + b_l`` per unit; with dropout, a training pass drops
(and scales by 1/(1-p)) entries of a layer's input. All weights, biases, gammas and betas
live in one contiguous array (``weights``, ``biases``, ``gammas``, ``betas`` are writable
views into it); batch norm's running statistics in a second, float64.
"""
from dataclasses import dataclass

import numpy as np

from . import _blas, _container, _engine, activations as _act, initializers as _init, losses as _losses
from ._config import blas_single_threaded, get_num_threads
from ._validation import (as_float_matrix, check_dtype, check_number, check_positive_int,
                          check_sample_weight, targets_for_loss)

__all__ = ["Network", "Gradients"]

_MAGIC = b"FASTBPNN"
_FORMAT_VERSION = 2        # 2: dropout, batch norm and its running statistics
_READS = (1, 2)
PREDICT_CHUNK = 2048   # rows per forward pass in predict / loss_and_gradients
POOLED_ROWS = _engine.POOLED_ROWS   # predict workspaces up to this capacity are kept for the next call
BN_EPS, BN_MOMENTUM = 1e-5, 0.1     # as torch.nn.BatchNorm1d


@dataclass
class Gradients:
    """The gradients :meth:`Network.loss_and_gradients` returns.

    dE/dW, dE/db per layer (views into one flat buffer), dE/dgamma and dE/dbeta (None
    for layers without batch norm) and dE/dX (or None).

    Attributes
    ----------
    weights : list of ndarray
        dE/dW_l, each shaped as ``Network.weights[l]``.
    biases : list of ndarray
        dE/db_l, each shaped as ``Network.biases[l]``.
    inputs : ndarray or None
        dE/dX, shaped as X (None when ``inputs=False``).
    flat : ndarray
        All the parameter gradients in the layout of ``Network.parameters``.
    gammas, betas : list
        Batch norm's dE/dgamma_l and dE/dbeta_l (None for layers without it).
    """
    weights: list
    biases: list
    inputs: object
    flat: np.ndarray
    gammas: list = None
    betas: list = None


def _layer_views(flat, sizes, bn):
    """(weights, biases, gammas, betas) views of a flat buffer in the engine's layout."""
    ws, bs, gs, betas, off = [], [], [], [], 0
    for n_in, n_out, norm in zip(sizes[:-1], sizes[1:], bn):
        ws.append(flat[off:off + n_in * n_out].reshape(n_in, n_out))
        off += n_in * n_out
        bs.append(flat[off:off + n_out])
        off += n_out
        if norm:
            gs.append(flat[off:off + n_out])
            betas.append(flat[off + n_out:off + 2 * n_out])
            off += 2 * n_out
        else:
            gs.append(None)
            betas.append(None)
    return ws, bs, gs, betas


def _per_hidden(value, n_hidden, name, check):
    """One value per hidden layer from a scalar or a list of n_hidden."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_hidden
    if len(values) != n_hidden:
        raise ValueError(f"{name}: expected one value per hidden layer ({n_hidden}), "
                         f"got {len(values)}")
    return [check(v) for v in values]


def _rate(name):
    def check(v):
        return check_number(v, name, low=0, high=1, high_open=True)
    return check


def _flag(name):
    def check(v):
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool (or a list of bools), got {v!r}")
        return bool(v)
    return check


class Network:
    r"""A multilayer perceptron trained by backpropagation.

    Parameters
    ----------
    layer_sizes : sequence of int
        Units per layer, input first, e.g. ``[784, 512, 512, 10]`` (at least 2).
    activation : str or list of str
        Hidden activation, or one per hidden layer (see ``fastbp.activations.names()``).
    output : str
        Output activation (``"identity"``, ``"sigmoid"``, ``"softmax"``, ...).
    init : str, callable or list
        Weight initializer (``fastbp.initializers``), or one per layer. Biases start at 0.
    dtype : {"float32", "float64"}
    seed : int, numpy.random.Generator or None
        Same seed -> identical weights.
    dropout : float or list of float
        Inverted dropout on each hidden layer's output (one rate, or one per hidden layer),
        in [0, 1): training passes zero each entry with that probability and scale the
        rest by 1/(1-p); ``predict`` and evaluation passes do not.
    input_dropout : float
        The same on the network's inputs.
    batch_norm : bool or list of bool
        Batch normalization between each hidden layer's product and its activation
        (``f(gamma * (z W + b - mean) / sqrt(var + 1e-5) + beta)``), with learnable
        ``gammas`` (start 1) and ``betas`` (start 0); training uses the batch's mean and
        variance and folds them into ``running_means``/``running_vars`` (momentum 0.1, the
        variance unbiased, as torch.nn.BatchNorm1d); ``predict`` uses the running ones.

    Notes
    -----
    With a batch :math:`X` of :math:`D` rows as :math:`z_0` (row-major: one sample per
    row), layer :math:`l = 1..L` computes

    .. math::

        a_l = z_{l-1} W_l + \mathbf{1} b_l^\top, \qquad z_l = f_l(a_l),
        \qquad W_l \in \mathbb{R}^{n_{l-1} \times n_l},

    and backpropagation, with :math:`g_l = \partial E / \partial a_l`
    (:math:`g_L = \partial E/\partial z_L \odot f_L'(a_L)`, for softmax with
    cross-entropy and sigmoid with binary cross-entropy simply
    :math:`(z_L - Y)/D`),

    .. math::

        \frac{\partial E}{\partial W_l} = z_{l-1}^\top g_l, \qquad
        \frac{\partial E}{\partial b_l} = g_l^\top \mathbf{1}, \qquad
        \frac{\partial E}{\partial z_{l-1}} = g_l W_l^\top, \qquad
        g_{l-1} = \frac{\partial E}{\partial z_{l-1}} \odot f_{l-1}'(a_{l-1}).

    :math:`\partial E / \partial z_0` is the gradient with respect to the inputs
    (``grads.inputs``). The derivative :math:`f'` is computed from the stored output
    :math:`z_l` where the function allows (sigmoid :math:`z(1-z)`, tanh :math:`1-z^2`).

    Examples
    --------
    >>> import numpy as np
    >>> import fastbp
    >>> net = fastbp.Network([4, 8, 3], activation="tanh", output="softmax", seed=0)
    >>> net
    Network([4, 8, 3], activation=tanh, output=softmax, dtype=float32, params=67)
    >>> [W.shape for W in net.weights]
    [(4, 8), (8, 3)]
    >>> X = np.random.default_rng(0).normal(size=(5, 4))
    >>> P = net.predict(X)
    >>> P.shape, P.dtype, bool(np.allclose(P.sum(axis=1), 1))
    ((5, 3), dtype('float32'), True)
    >>> loss, grads = net.loss_and_gradients(X, [0, 1, 2, 1, 0])
    >>> grads.weights[0].shape, grads.inputs.shape
    ((4, 8), (5, 4))
    """

    def __init__(self, layer_sizes, activation="tanh", output="identity", init="glorot_uniform",
                 dtype="float32", seed=None, dropout=0.0, input_dropout=0.0, batch_norm=False):
        sizes = self._check_sizes(layer_sizes)
        L = len(sizes) - 1
        hidden = list(activation) if isinstance(activation, (list, tuple)) else [activation] * (L - 1)
        if len(hidden) != L - 1:
            raise ValueError(f"activation: expected one name per hidden layer ({L - 1}), "
                             f"got {len(hidden)}")
        acts = [_act.get(a) for a in hidden]
        for a in acts:
            if a.output_only:
                raise ValueError(f"activation: {a.name!r} can only be the output activation")
        acts.append(_act.get(output))
        self._sizes = sizes
        self._acts = tuple(acts)
        self._dtype = check_dtype(dtype)
        self._dropout = tuple(_per_hidden(dropout, L - 1, "dropout", _rate("dropout")))
        self._input_dropout = _rate("input_dropout")(input_dropout)
        self._bn = tuple(_per_hidden(batch_norm, L - 1, "batch_norm", _flag("batch_norm"))) \
            + (False,)
        rates = (self._input_dropout,) + self._dropout
        self._plan = _engine.Plan([
            {"n_in": n_in, "n_out": n_out, "activation": int(a.code), "dropout": rate,
             "batch_norm": norm}
            for n_in, n_out, a, rate, norm in zip(sizes[:-1], sizes[1:], acts, rates, self._bn)])
        self._params = np.zeros(self._plan.n_params, dtype=self._dtype)
        self._running = np.zeros(self._plan.n_stats, dtype=np.float64)
        self._bind_views()
        self.initialize(init, seed=seed)

    @staticmethod
    def _check_sizes(layer_sizes):
        try:
            sizes = tuple(layer_sizes)
        except TypeError:
            raise TypeError(f"layer_sizes must be a sequence of ints, got {layer_sizes!r}") from None
        if len(sizes) < 2:
            raise ValueError(f"layer_sizes needs at least 2 entries (input, output), got {sizes}")
        return tuple(check_positive_int(s, f"layer_sizes[{i}]") for i, s in enumerate(sizes))

    def _bind_views(self):
        self._weights, self._biases, self._gammas, self._betas = _layer_views(
            self._params, self._sizes, self._bn)
        self._means, self._vars, off = [], [], 0
        for n_out, norm in zip(self._sizes[1:], self._bn):
            self._means.append(self._running[off:off + n_out] if norm else None)
            self._vars.append(self._running[off + n_out:off + 2 * n_out] if norm else None)
            off += 2 * n_out if norm else 0

    def initialize(self, init="glorot_uniform", seed=None):
        """Re-draw every weight matrix with ``init`` (name, callable or list); zero the
        biases; batch norm's gammas to 1, betas to 0, running means 0 and variances 1."""
        L = len(self._sizes) - 1
        inits = list(init) if isinstance(init, (list, tuple)) else [init] * L
        if len(inits) != L:
            raise ValueError(f"init: expected one initializer per layer ({L}), got {len(inits)}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        for W, b, spec in zip(self._weights, self._biases, inits):
            fn = _init.get(spec)
            values = np.asarray(fn(W.shape[0], W.shape[1], rng=rng, dtype=self._dtype))
            if values.shape != W.shape:
                raise ValueError(f"init: initializer returned shape {values.shape}, "
                                 f"expected {W.shape}")
            W[...] = values
            b[...] = 0
        for g, beta, m, v in zip(self._gammas, self._betas, self._means, self._vars):
            if g is not None:
                g[...], beta[...], m[...], v[...] = 1, 0, 0, 1
        return self

    # ---- properties --------------------------------------------------------------------
    layer_sizes = property(lambda self: self._sizes, doc="Units per layer, input first.")
    weights = property(lambda self: self._weights, doc="Live views (n_in, n_out) per layer.")
    biases = property(lambda self: self._biases, doc="Live views (n_out,) per layer.")
    gammas = property(lambda self: self._gammas,
                      doc="Batch norm's scales, live views per layer (None without it).")
    betas = property(lambda self: self._betas,
                     doc="Batch norm's shifts, live views per layer (None without it).")
    running_means = property(lambda self: self._means,
                             doc="Batch norm's running means (float64 views; None without it).")
    running_vars = property(lambda self: self._vars,
                            doc="Batch norm's running variances (float64 views; None without it).")
    running_stats = property(lambda self: self._running,
                             doc="All running statistics, one float64 buffer (live).")
    dropout = property(lambda self: self._dropout, doc="Dropout rate of each hidden layer.")
    input_dropout = property(lambda self: self._input_dropout,
                             doc="Dropout rate on the network's inputs.")
    batch_norm = property(lambda self: self._bn[:-1], doc="Batch norm on each hidden layer.")
    dtype = property(lambda self: self._dtype,
                     doc="The parameters' dtype (numpy.float32 or numpy.float64).")
    parameters = property(lambda self: self._params, doc="The flat parameter buffer (live).")
    activations = property(lambda self: tuple(a.name for a in self._acts),
                           doc="Activation name of each layer, hidden layers then output.")
    plan = property(lambda self: self._plan,
                    doc="The compiled layout of the layers that fastbp's engine runs.")
    n_inputs = property(lambda self: self._sizes[0], doc="Features per input row.")
    n_outputs = property(lambda self: self._sizes[-1], doc="Units of the output layer.")

    def __repr__(self):
        hidden = ",".join(self.activations[:-1]) or "-"
        extra = ""
        if any(self._dropout) or self._input_dropout:
            extra += f", dropout={list(self._dropout)}, input_dropout={self._input_dropout}"
        if any(self._bn):
            extra += f", batch_norm={list(self.batch_norm)}"
        return (f"Network({list(self._sizes)}, activation={hidden}, output={self.activations[-1]}"
                f"{extra}, dtype={self._dtype.name}, params={self._params.size})")

    # ---- compute -----------------------------------------------------------------------
    def _workspace(self, n_rows, chunk=PREDICT_CHUNK, kind="gradients"):
        return _engine.Workspace(self._plan, max(1, min(n_rows, chunk)), self._dtype, kind)

    def predict(self, X, chunk_size=PREDICT_CHUNK, precision=None):
        """Output activations for X (n, n_inputs) -> (n, n_outputs), in the network's dtype.

        Rows are processed ``chunk_size`` at a time, so scratch memory stays bounded.
        ``precision``: None (or the network's dtype name) computes in that dtype; "bf16"
        (float32 networks only) does each layer's product with its input and weights
        rounded to bfloat16 and float32 sums (AVX512_BF16's VDPBF16PS where the CPU has it,
        else a portable emulation; ``fastbp._bf16.bf16_capability()`` says which), and
        biases, batch norm and activations in float32. The outputs then differ from the
        float32 ones by bfloat16's rounding (8 significant bits) of the operands.
        """
        if precision is None and chunk_size == PREDICT_CHUNK and self._dtype == np.float32:
            out = _engine.predict_rows(self._plan, self.__dict__.setdefault("_ws_pool", []),
                                       self._params, X, _blas.rows_kernel_rows(),
                                       get_num_threads(), self._running)
            if out is not None:
                return out
        if chunk_size != PREDICT_CHUNK:
            check_positive_int(chunk_size, "chunk_size")
        bf16 = self._check_precision(precision)
        X = as_float_matrix(X, self._dtype, "X", n_columns=self._sizes[0], allow_empty=True)
        out = np.empty((X.shape[0], self._sizes[-1]), dtype=self._dtype)
        if X.shape[0]:
            self._forward(X, out, chunk_size, 0, bf16)
        return out

    def _check_precision(self, precision):
        """True for bf16 products, False for the network's dtype; errors otherwise."""
        if precision is None or precision == self._dtype.name or precision == {
                "float32": "fp32", "float64": "fp64"}[self._dtype.name]:
            return False
        if precision in ("bf16", "bfloat16"):
            if self._dtype != np.float32:
                raise ValueError(f"precision='bf16' needs a float32 network, this one is "
                                 f"{self._dtype.name}")
            return True
        raise ValueError(f"precision must be None, {self._dtype.name!r} or 'bf16', got "
                         f"{precision!r}")

    def _forward(self, X, out, chunk_size, n_layers, bf16=False):
        """The compiled forward pass (evaluation mode) of X into out. A few rows of float32
        (the latency of serving one sample) skip what only larger products need: their
        products never reach the BLAS, so its threads need no holding, and the small
        workspace is taken from a pool instead of allocated (a list: pop and append are
        atomic, so threads never share one)."""
        n = X.shape[0]
        capacity = max(1, min(n, chunk_size))
        pool = self.__dict__.setdefault("_ws_pool", [])
        ws = None
        if capacity <= POOLED_ROWS:
            try:
                ws = pool.pop()
            except IndexError:
                pass
            if ws is not None and ws.capacity < capacity:
                ws = None
        if ws is None:
            ws = _engine.Workspace(self._plan, POOLED_ROWS if capacity <= POOLED_ROWS
                                   else capacity, self._dtype, "predict")
        if self._dtype == np.float32 and n <= _blas.rows_kernel_rows():
            _engine.predict(self._plan, ws, self._params, X, out, get_num_threads(),
                            self._running, n_layers, bf16)
        else:
            with blas_single_threaded():
                _engine.predict(self._plan, ws, self._params, X, out, get_num_threads(),
                                self._running, n_layers, bf16)
        if ws.capacity <= POOLED_ROWS and len(pool) < 4:
            pool.append(ws)

    def hidden_activations(self, X, layer=-1, chunk_size=PREDICT_CHUNK, precision=None):
        """The outputs of hidden layer ``layer`` (1 = the first; negative counts back from
        the last hidden layer, -1) for X, in evaluation mode as ``predict`` (``precision``
        as there): (n, units)."""
        L = len(self._sizes) - 1
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) \
                or not (1 <= layer < L or -(L - 1) <= layer <= -1):
            raise ValueError(f"layer must be a hidden layer, 1..{L - 1} or -1..-{L - 1}, "
                             f"got {layer!r}")
        layer = int(layer) if layer > 0 else L + int(layer)
        check_positive_int(chunk_size, "chunk_size")
        bf16 = self._check_precision(precision)
        X = as_float_matrix(X, self._dtype, "X", n_columns=self._sizes[0], allow_empty=True)
        out = np.empty((X.shape[0], self._sizes[layer]), dtype=self._dtype)
        if X.shape[0]:
            self._forward(X, out, chunk_size, layer, bf16)
        return out

    def check_loss(self, loss=None):
        """Canonical loss name (None: the output activation's, ``losses.for_output``);
        ValueError when the loss does not fit the output activation."""
        name = _losses.canonical(_losses.for_output(self._acts[-1].name) if loss is None
                                 else loss)
        need = _losses.required_output(name)
        if need is not None and self._acts[-1].name != need:
            raise ValueError(f"loss {name!r} needs a {need!r} output activation, this network's "
                             f"output is {self._acts[-1].name!r}")
        return name

    def check_trainable(self):
        """ValueError when a layer's activation has no useful gradient (``step``): such
        a network can be evaluated but not trained."""
        for i, a in enumerate(self._acts):
            if not a.trainable:
                raise ValueError(f"layer {i} uses the {a.name!r} activation, which has no useful "
                                 f"gradient: networks with it can be evaluated but not trained")

    def loss_and_gradients(self, X, Y, loss=None, inputs=True, chunk_size=PREDICT_CHUNK,
                           sample_weight=None, l2=0.0, training=False, seed=None,
                           precision=None):
        """Mean loss over the rows of X and its gradients by backpropagation.

        ``loss`` None: the output activation's (softmax: cross_entropy, sigmoid:
        binary_cross_entropy, else mse). Returns ``(loss, grads)`` with ``grads.weights``,
        ``grads.biases`` (same shapes as
        the parameters) and ``grads.inputs`` (dE/dX, shape of X; None if ``inputs=False``).
        With ``sample_weight`` the mean is weighted (divided by the sum of the weights).
        ``l2`` adds ``l2 / sum_w * W`` to the weight gradients only (not the loss; this is
        scikit-learn's ``alpha``). ``training=True``: dropout with the masks that ``seed``
        fixes (the same seed, the same masks) and batch norm with the statistics of all the
        rows of X as one batch; False: no dropout and the running statistics, as
        ``predict``. The running statistics are not changed. ``grads.gammas`` and
        ``grads.betas`` hold batch norm's gradients. ``precision="bf16"`` (float32 networks):
        every matrix product (forward, input gradients, dW) with bfloat16 operands and
        float32 sums, as ``Trainer(precision="bf16")`` trains; the rest in float32.
        """
        name = self.check_loss(loss)
        bf16 = self._check_precision(precision)
        self.check_trainable()
        X = as_float_matrix(X, self._dtype, "X", n_columns=self._sizes[0])
        T, labels = targets_for_loss(Y, name, X.shape[0], self._sizes[-1], self._dtype, "Y")
        sw = check_sample_weight(sample_weight, X.shape[0], self._dtype)
        l2 = check_number(l2, "l2", low=0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise TypeError(f"seed must be an int >= 0 or None, got {seed!r}")
        flat = np.zeros_like(self._params)
        dX = np.zeros(X.shape, dtype=self._dtype) if inputs else None
        data = _engine.Samples(X, targets=T, labels=labels, sample_weight=sw)
        if training and self._plan.batch_norm:
            chunk_size = X.shape[0]          # the batch statistics of all the rows
        ws = self._workspace(X.shape[0], chunk_size)
        with blas_single_threaded():
            value = _engine.loss_and_gradients(self._plan, ws, self._params, flat, data,
                                               _losses.get(name), dX, l2, get_num_threads(),
                                               bool(training), seed, self._running, bf16)
        gw, gb, gg, gbeta = _layer_views(flat, self._sizes, self._bn)
        return float(value), Gradients(gw, gb, dX, flat, gg, gbeta)

    def loss(self, X, Y, loss=None, sample_weight=None, training=False, seed=None):
        """Mean loss over the rows of X (weighted mean with ``sample_weight``; ``loss`` None:
        the output activation's; ``training``, ``seed`` as for ``loss_and_gradients``)."""
        return self.loss_and_gradients(X, Y, loss=loss, inputs=False,
                                       sample_weight=sample_weight, training=training,
                                       seed=seed)[0]

    # ---- other libraries ---------------------------------------------------------------
    def to_torch(self):
        """This network as a ``torch.nn.Sequential`` in eval mode, in its dtype: per layer
        ``nn.Linear`` (weight = W.T), ``nn.BatchNorm1d`` (with the running statistics) where
        there is batch norm, the activation module, ``nn.Dropout`` where there is dropout;
        its outputs equal ``predict``'s (to the float rounding of the activations)."""
        from . import _torch
        return _torch.to_torch(self)

    @classmethod
    def from_torch(cls, module, dtype=None):
        """The Network of a ``torch.nn.Sequential`` of Linear, BatchNorm1d, Dropout and
        activations fastbp has (as ``to_torch`` writes them; dtype None: the module's).
        A module it cannot represent raises ValueError naming it."""
        from . import _torch
        return _torch.from_torch(module, dtype, cls)

    @classmethod
    def from_sklearn(cls, mlp, dtype=None):
        """The Network of a fitted scikit-learn ``MLPClassifier``/``MLPRegressor`` (or a
        fastbp.sklearn one): its ``coefs_``, ``intercepts_``, activation and output; the
        outputs equal its ``predict_proba`` (a binary classifier: its one column p, the
        second of predict_proba's [1-p, p]) or ``predict`` (regressor)."""
        if hasattr(mlp, "_fastbp_network"):
            return mlp._fastbp_network().copy(dtype)
        coefs = getattr(mlp, "coefs_", None)
        if coefs is None or not hasattr(mlp, "out_activation_"):
            raise ValueError(f"mlp: {type(mlp).__name__} is not fitted (no coefs_); fit it "
                             "first")
        names = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh",
                 "relu": "relu", "softmax": "softmax"}
        act, out = getattr(mlp, "activation", None), mlp.out_activation_
        if act not in names or out not in names:
            raise ValueError(f"mlp: activation {act!r} / output {out!r} has no fastbp form")
        sizes = [c.shape[0] for c in coefs] + [coefs[-1].shape[1]]
        dtype = dtype or ("float32" if coefs[0].dtype == np.float32 else "float64")
        net = cls(sizes, activation=names[act], output=names[out], init="zeros", dtype=dtype)
        for W, b, c, i in zip(net.weights, net.biases, coefs, mlp.intercepts_):
            W[...] = c
            b[...] = i
        return net

    # ---- copies, pickling, files -------------------------------------------------------
    def _config(self):
        cfg = {"layer_sizes": list(self._sizes), "activation": list(self.activations[:-1]),
               "output": self.activations[-1], "dtype": self._dtype.name}
        if any(self._dropout) or self._input_dropout:
            cfg.update(dropout=list(self._dropout), input_dropout=self._input_dropout)
        if any(self._bn):
            cfg["batch_norm"] = list(self.batch_norm)
        return cfg

    @classmethod
    def _from_config(cls, cfg, dtype=None):
        """A network of this configuration, its parameters zero (running stats 0 and 1)."""
        return cls(cfg["layer_sizes"], cfg["activation"] or "tanh", cfg["output"],
                   init="zeros", dtype=dtype or cfg["dtype"],
                   dropout=cfg.get("dropout", 0.0), input_dropout=cfg.get("input_dropout", 0.0),
                   batch_norm=cfg.get("batch_norm", False))

    def copy(self, dtype=None):
        """An independent copy (optionally converted to another dtype)."""
        net = self._from_config(self._config(),
                                None if dtype is None else check_dtype(dtype).name)
        net._params[...] = self._params
        net._running[...] = self._running
        return net

    def __getstate__(self):
        return {"config": self._config(), "params": self._params.copy(),
                "running": self._running.copy()}

    def __setstate__(self, state):
        other = self._from_config(state["config"])
        params = np.asarray(state["params"], dtype=other._dtype)
        if params.shape != other._params.shape:
            raise ValueError("pickled parameters do not match the network's layer sizes")
        self.__dict__.clear()
        self.__dict__.update(other.__dict__)
        self._params[...] = params
        if "running" in state:
            self._running[...] = state["running"]

    def save(self, path):
        """Write the network to one file, atomically (temporary file + rename).

        Format: magic, format version, JSON header, raw parameters (then batch norm's
        running statistics, float64), SHA-256 of all of it. A network without dropout and
        batch norm is written in format 1, which every fastbp reads; format 2 adds them.
        """
        header = {**self._config(), "n_params": int(self._params.size), "byteorder": "little"}
        arrays = [self._params]
        version = 1
        if self._running.size or any(self._dropout) or self._input_dropout:
            header["n_stats"] = int(self._running.size)
            arrays.append(self._running)
            version = _FORMAT_VERSION
        _container.write(path, _MAGIC, version, header, arrays)

    @classmethod
    def load(cls, path):
        """Read a network written by ``save`` (formats 1 and 2); a corrupt or foreign file
        raises ValueError."""
        version, cfg, raw = _container.read(path, _MAGIC, _READS, "network")
        try:
            net = cls._from_config(cfg)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: invalid header ({e})") from None
        specs = [(net._dtype, net._params.size)]
        if version >= 2:
            specs.append((np.float64, net._running.size))
        if len(raw) != sum(np.dtype(d).itemsize * n for d, n in specs):
            raise ValueError(f"{path}: parameter block has the wrong size")
        arrays = _container.split(path, raw, specs)
        net._params[...] = arrays[0]
        if version >= 2:
            net._running[...] = arrays[1]
        return net
