r"""Activation functions: names, compiled-kernel codes and NumPy reference formulas.

Every activation has ``forward(x)`` and ``derivative(x)`` (with respect to the
pre-activation ``x``) as plain NumPy functions; the compiled kernels compute
the same functions, with derivatives taken from the stored output where the
math allows (sigmoid ``y(1-y)``, tanh ``1-y^2``, ReLU ``y>0``, ...).

Each name (aliases in parentheses) with :math:`f(x)` and :math:`f'(x)`, where
:math:`y = f(x)` is the stored output:

- ``identity`` (``linear``): :math:`x`; :math:`1`.
- ``step``: :math:`[x \ge 0]`; forward only (no useful gradient: it cannot be trained).
- ``sigmoid`` (``logistic``): :math:`\sigma(x) = 1/(1+e^{-x})`; :math:`y(1-y)`.
- ``tanh``: :math:`\tanh x`; :math:`1-y^2`.
- ``lecun_tanh``: :math:`1.7159 \tanh(2x/3)` (LeCun et al. 1998);
  :math:`1.7159 \cdot \tfrac{2}{3}\,(1-\tanh^2(2x/3))`.
- ``relu``: :math:`\max(x, 0)`; :math:`[x > 0]`.
- ``leaky_relu``: :math:`x` for :math:`x > 0`, else :math:`0.01\,x`; :math:`1` or :math:`0.01`.
- ``elu``: :math:`x` for :math:`x > 0`, else :math:`e^x - 1`; :math:`1` or :math:`e^x`.
- ``softplus``: :math:`\log(1+e^x)`; :math:`\sigma(x)`.
- ``softsign``: :math:`x/(1+|x|)`; :math:`1/(1+|x|)^2`.
- ``silu`` (``swish``): :math:`x\,\sigma(x)`; :math:`\sigma(x)\,(1+x(1-\sigma(x)))`.
- ``gelu`` (tanh approximation):
  :math:`\tfrac{x}{2}\big(1+\tanh(\sqrt{2/\pi}\,(x+0.044715\,x^3))\big)`; its derivative.
- ``softmax`` (output layer only): :math:`e^{x_j}/\sum_k e^{x_k}`; its Jacobian is taken
  together with the loss (:mod:`fastbp.losses`).

Examples
--------
>>> import numpy as np
>>> from fastbp import activations
>>> act = activations.get("tanh")
>>> act
Activation('tanh')
>>> x = np.array([-1.0, 0.0, 2.0])
>>> bool(np.allclose(act.derivative(x), 1 - act.forward(x) ** 2))
True
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import _kernels

__all__ = ["Activation", "get", "names"]

# the compiled kernels' constants (src/fastbp/_constants.h), so both sides agree
LECUN_A, LECUN_B = _kernels.LECUN_SCALE, _kernels.LECUN_SLOPE   # f(x) = A tanh(B x)
LEAKY_SLOPE = _kernels.LEAKY_SLOPE
GELU_C, GELU_SCALE = _kernels.GELU_CUBIC, _kernels.GELU_SCALE   # C x^3, sqrt(2/pi)


@dataclass(frozen=True)
class Activation:
    """An activation: its canonical name, kernel code and NumPy reference.

    The compiled kernels compute the activation by its code, so only the built-in objects
    (``get(name)``) are accepted by a Network; a new Activation is refused there, never run
    as something else.
    """
    name: str
    code: int
    forward: Callable
    derivative: Callable
    trainable: bool = True       # has a useful gradient (False for step)
    output_only: bool = False    # softmax

    def __repr__(self):
        return f"Activation({self.name!r})"


def _sigmoid(x):
    x = np.asarray(x)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))),
                    np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x)))).astype(x.dtype, copy=False)


def _softmax(x):
    x = np.asarray(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_derivative(x):
    raise ValueError("softmax has a Jacobian, not an elementwise derivative; "
                     "use it as the output layer (its gradient is computed with the loss)")


def _step_derivative(x):
    raise ValueError("the step activation has no useful gradient and cannot be trained by BP")


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(GELU_SCALE * (x + GELU_C * x ** 3)))


def _gelu_derivative(x):
    t = np.tanh(GELU_SCALE * (x + GELU_C * x ** 3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_SCALE * (1 + 3 * GELU_C * x * x)


_K = _kernels.Act
_ACTIVATIONS = {a.name: a for a in [
    Activation("identity", _K.IDENTITY, lambda x: np.asarray(x) * 1, lambda x: np.ones_like(x)),
    Activation("step", _K.STEP, lambda x: (np.asarray(x) >= 0).astype(np.asarray(x).dtype),
               _step_derivative, trainable=False),
    Activation("sigmoid", _K.SIGMOID, _sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x))),
    Activation("tanh", _K.TANH, np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    Activation("lecun_tanh", _K.LECUN_TANH, lambda x: LECUN_A * np.tanh(LECUN_B * x),
               lambda x: LECUN_A * LECUN_B * (1 - np.tanh(LECUN_B * x) ** 2)),
    Activation("relu", _K.RELU, lambda x: np.maximum(x, 0),
               lambda x: (np.asarray(x) > 0).astype(np.asarray(x).dtype)),
    Activation("leaky_relu", _K.LEAKY_RELU, lambda x: np.where(x > 0, x, LEAKY_SLOPE * x),
               lambda x: np.where(np.asarray(x) > 0, 1.0, LEAKY_SLOPE).astype(np.asarray(x).dtype)),
    Activation("elu", _K.ELU, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
               lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0))).astype(np.asarray(x).dtype)),
    Activation("softplus", _K.SOFTPLUS, lambda x: np.logaddexp(0, x), _sigmoid),
    Activation("softsign", _K.SOFTSIGN, lambda x: x / (1 + np.abs(x)),
               lambda x: 1 / (1 + np.abs(x)) ** 2),
    Activation("silu", _K.SILU, lambda x: x * _sigmoid(x),
               lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x)))),
    Activation("gelu", _K.GELU, _gelu, _gelu_derivative),
    Activation("softmax", _K.SOFTMAX, _softmax, _softmax_derivative, output_only=True),
]}
_ALIASES = {"linear": "identity", "logistic": "sigmoid", "swish": "silu"}


def names():
    """All activation names, aliases included, sorted."""
    return sorted(list(_ACTIVATIONS) + list(_ALIASES))


def get(name):
    """The Activation called ``name`` (or an alias); ValueError lists the valid names."""
    if isinstance(name, Activation):
        if _ACTIVATIONS.get(name.name) is not name:
            raise ValueError(
                f"activation: {name!r} is not one of fastbp's activations; the compiled "
                f"kernels compute only these (pass one by name): {sorted(_ACTIVATIONS)}")
        return name
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name (str), got {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid names: {names()}")
    return _ACTIVATIONS[key]
