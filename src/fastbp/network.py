"""Network: fully-connected layers over one flat parameter buffer.

Layer l computes ``a_l = f_l(z_{l-1} @ W_l + b_l)`` with ``W_l`` of shape
``(n_in, n_out)``. All weights and biases live in one contiguous array; the
``weights`` and ``biases`` lists are writable views into it.
"""
from dataclasses import dataclass

import numpy as np

from . import _container, _engine, activations as _act, initializers as _init, losses as _losses
from ._config import blas_single_threaded, get_num_threads
from ._validation import (as_float_matrix, check_dtype, check_number, check_positive_int,
                          check_sample_weight, targets_for_loss)

__all__ = ["Network", "Gradients"]

_MAGIC = b"FASTBPNN"
_FORMAT_VERSION = 1
PREDICT_CHUNK = 2048   # rows per forward pass in predict / loss_and_gradients


@dataclass
class Gradients:
    """dE/dW, dE/db per layer (views into one flat buffer) and dE/dX (or None)."""
    weights: list
    biases: list
    inputs: object
    flat: np.ndarray


def _layer_views(flat, sizes):
    ws, bs, off = [], [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        ws.append(flat[off:off + n_in * n_out].reshape(n_in, n_out))
        off += n_in * n_out
        bs.append(flat[off:off + n_out])
        off += n_out
    return ws, bs


class Network:
    """A multilayer perceptron trained by backpropagation.

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
    """

    def __init__(self, layer_sizes, activation="tanh", output="identity", init="glorot_uniform",
                 dtype="float32", seed=None):
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
        self._plan = _engine.Plan([{"n_in": n_in, "n_out": n_out, "activation": int(a.code)}
                                   for n_in, n_out, a in zip(sizes[:-1], sizes[1:], acts)])
        self._params = np.zeros(self._plan.n_params, dtype=self._dtype)
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
        self._weights, self._biases = _layer_views(self._params, self._sizes)

    def initialize(self, init="glorot_uniform", seed=None):
        """Re-draw every weight matrix with ``init`` (name, callable or list); zero the biases."""
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
        return self

    # ---- properties --------------------------------------------------------------------
    layer_sizes = property(lambda self: self._sizes, doc="Units per layer, input first.")
    weights = property(lambda self: self._weights, doc="Live views (n_in, n_out) per layer.")
    biases = property(lambda self: self._biases, doc="Live views (n_out,) per layer.")
    dtype = property(lambda self: self._dtype)
    parameters = property(lambda self: self._params, doc="The flat parameter buffer (live).")
    activations = property(lambda self: tuple(a.name for a in self._acts),
                           doc="Activation name of each layer, hidden layers then output.")
    plan = property(lambda self: self._plan,
                    doc="The compiled layout of the layers that fastbp's engine runs.")
    n_inputs = property(lambda self: self._sizes[0])
    n_outputs = property(lambda self: self._sizes[-1])

    def __repr__(self):
        hidden = ",".join(self.activations[:-1]) or "-"
        return (f"Network({list(self._sizes)}, activation={hidden}, output={self.activations[-1]}, "
                f"dtype={self._dtype.name}, params={self._params.size})")

    # ---- compute -----------------------------------------------------------------------
    def _workspace(self, n_rows, chunk=PREDICT_CHUNK, kind="gradients"):
        return _engine.Workspace(self._plan, max(1, min(n_rows, chunk)), self._dtype, kind)

    def predict(self, X, chunk_size=PREDICT_CHUNK):
        """Output activations for X (n, n_inputs) -> (n, n_outputs), in the network's dtype.

        Rows are processed ``chunk_size`` at a time, so scratch memory stays bounded.
        """
        check_positive_int(chunk_size, "chunk_size")
        X = as_float_matrix(X, self._dtype, "X", n_columns=self._sizes[0], allow_empty=True)
        out = np.empty((X.shape[0], self._sizes[-1]), dtype=self._dtype)
        if X.shape[0]:
            ws = self._workspace(X.shape[0], chunk_size, kind="predict")
            with blas_single_threaded():
                _engine.predict(self._plan, ws, self._params, X, out, get_num_threads())
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
        for i, a in enumerate(self._acts):
            if not a.trainable:
                raise ValueError(f"layer {i} uses the {a.name!r} activation, which has no useful "
                                 f"gradient: networks with it can be evaluated but not trained")

    def loss_and_gradients(self, X, Y, loss=None, inputs=True, chunk_size=PREDICT_CHUNK,
                           sample_weight=None, l2=0.0):
        """Mean loss over the rows of X and its gradients by backpropagation.

        ``loss`` None: the output activation's (softmax: cross_entropy, sigmoid:
        binary_cross_entropy, else mse). Returns ``(loss, grads)`` with ``grads.weights``,
        ``grads.biases`` (same shapes as
        the parameters) and ``grads.inputs`` (dE/dX, shape of X; None if ``inputs=False``).
        With ``sample_weight`` the mean is weighted (divided by the sum of the weights).
        ``l2`` adds ``l2 / sum_w * W`` to the weight gradients only (not the loss; this is
        scikit-learn's ``alpha``).
        """
        name = self.check_loss(loss)
        self.check_trainable()
        X = as_float_matrix(X, self._dtype, "X", n_columns=self._sizes[0])
        T, labels = targets_for_loss(Y, name, X.shape[0], self._sizes[-1], self._dtype, "Y")
        sw = check_sample_weight(sample_weight, X.shape[0], self._dtype)
        l2 = check_number(l2, "l2", low=0)
        flat = np.zeros_like(self._params)
        dX = np.zeros(X.shape, dtype=self._dtype) if inputs else None
        data = _engine.Samples(X, targets=T, labels=labels, sample_weight=sw)
        ws = self._workspace(X.shape[0], chunk_size)
        with blas_single_threaded():
            value = _engine.loss_and_gradients(self._plan, ws, self._params, flat, data,
                                               _losses.get(name), dX, l2, get_num_threads())
        gw, gb = _layer_views(flat, self._sizes)
        return float(value), Gradients(gw, gb, dX, flat)

    def loss(self, X, Y, loss=None, sample_weight=None):
        """Mean loss over the rows of X (weighted mean with ``sample_weight``; ``loss`` None:
        the output activation's)."""
        return self.loss_and_gradients(X, Y, loss=loss, inputs=False,
                                       sample_weight=sample_weight)[0]

    # ---- copies, pickling, files -------------------------------------------------------
    def _config(self):
        return {"layer_sizes": list(self._sizes), "activation": list(self.activations[:-1]),
                "output": self.activations[-1], "dtype": self._dtype.name}

    def copy(self, dtype=None):
        """An independent copy (optionally converted to another dtype)."""
        cfg = self._config()
        if dtype is not None:
            cfg["dtype"] = check_dtype(dtype).name
        net = Network(cfg["layer_sizes"], cfg["activation"] or "tanh", cfg["output"],
                      init="zeros", dtype=cfg["dtype"])
        net._params[...] = self._params
        return net

    def __getstate__(self):
        return {"config": self._config(), "params": self._params.copy()}

    def __setstate__(self, state):
        cfg = state["config"]
        other = Network(cfg["layer_sizes"], cfg["activation"] or "tanh", cfg["output"],
                        init="zeros", dtype=cfg["dtype"])
        params = np.asarray(state["params"], dtype=other._dtype)
        if params.shape != other._params.shape:
            raise ValueError("pickled parameters do not match the network's layer sizes")
        self.__dict__.update(other.__dict__)
        self._params[...] = params

    def save(self, path):
        """Write the network to one file, atomically (temporary file + rename).

        Format: magic, format version, JSON header, raw parameters, SHA-256 of all of it.
        """
        header = {**self._config(), "n_params": int(self._params.size), "byteorder": "little"}
        _container.write(path, _MAGIC, _FORMAT_VERSION, header, [self._params])

    @classmethod
    def load(cls, path):
        """Read a network written by ``save``; a corrupt or foreign file raises ValueError."""
        _, cfg, raw = _container.read(path, _MAGIC, (_FORMAT_VERSION,), "network")
        try:
            net = cls(cfg["layer_sizes"], cfg["activation"] or "tanh", cfg["output"],
                      init="zeros", dtype=cfg["dtype"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: invalid header ({e})") from None
        if len(raw) != net._params.size * net._dtype.itemsize:
            raise ValueError(f"{path}: parameter block has the wrong size")
        net._params[...] = _container.split(path, raw, [(net._dtype, net._params.size)])[0]
        return net
