"""Loss names, their kernel codes and the output activations they accept.

All losses are averaged over the samples of the batch:
- ``mse``: E = (1/n) sum_i 0.5 * sum_j (yhat_ij - y_ij)^2, any output activation;
- ``cross_entropy``: softmax output, E = -(1/n) sum_i sum_j t_ij log p_ij, targets are
  integer labels (n,) or one-hot / probability rows (n, k);
- ``binary_cross_entropy``: sigmoid output, targets in [0, 1] of shape (n, k) or (n,),
  E = -(1/n) sum_i sum_j [y log p + (1-y) log(1-p)], computed from the logits.
"""
from . import _kernels

__all__ = ["get", "names", "required_output", "for_output"]

_LOSSES = {
    "mse": _kernels.Loss.MSE,
    "cross_entropy": _kernels.Loss.CROSS_ENTROPY,
    "binary_cross_entropy": _kernels.Loss.BINARY_CROSS_ENTROPY,
}
_ALIASES = {"squared_error": "mse", "ce": "cross_entropy", "log_loss": "cross_entropy",
            "bce": "binary_cross_entropy"}
_REQUIRED_OUTPUT = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}


def names():
    return sorted(list(_LOSSES) + list(_ALIASES))


def canonical(name):
    """The canonical loss name; ValueError lists the valid names."""
    if not isinstance(name, str):
        raise TypeError(f"loss must be a name (str), got {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {names()}")
    return key


def get(name):
    """Kernel code of the loss called ``name``."""
    return int(_LOSSES[canonical(name)])


def required_output(name):
    """The output activation a loss needs, or None when any output works."""
    return _REQUIRED_OUTPUT.get(canonical(name))


def for_output(activation):
    """The loss a network with this output activation trains on when none is named:
    cross_entropy for softmax, binary_cross_entropy for sigmoid, mse otherwise."""
    return {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy"}.get(activation, "mse")
