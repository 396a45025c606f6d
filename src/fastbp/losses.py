r"""Loss names, their kernel codes and the output activations they accept.

All losses are averaged over the samples of the batch (with ``sample_weight``
:math:`s_i`, a weighted mean: :math:`\sum_i s_i E_i / \sum_i s_i`). For a batch of
:math:`n` rows, outputs :math:`\hat y` (probabilities :math:`p` for softmax and sigmoid)
and targets :math:`y`:

``mse`` (alias ``squared_error``), any output activation:

.. math::

    E = \frac{1}{n} \sum_i \frac{1}{2} \sum_j (\hat y_{ij} - y_{ij})^2,
    \qquad \frac{\partial E}{\partial \hat y_{ij}} = \frac{\hat y_{ij} - y_{ij}}{n}.

``cross_entropy`` (aliases ``ce``, ``log_loss``), softmax output; targets are integer
labels :math:`c_i` of shape (n,), or one-hot / probability rows :math:`t` of shape (n, k):

.. math::

    E = -\frac{1}{n} \sum_i \log p_{i c_i}
    \quad\text{or}\quad
    E = -\frac{1}{n} \sum_i \sum_j t_{ij} \log p_{ij},
    \qquad \frac{\partial E}{\partial a_{ij}} = \frac{p_{ij} - t_{ij}}{n}

(the gradient with respect to the softmax's input :math:`a`; :math:`t` one-hot for
labels).

``binary_cross_entropy`` (alias ``bce``), sigmoid output, targets in [0, 1] of shape
(n, k) or (n,); summed over the outputs, averaged over the samples, computed from the
logits :math:`a` (:math:`p = \sigma(a)`) so that it stays finite where :math:`p` rounds to 0
or 1:

.. math::

    E = -\frac{1}{n} \sum_i \sum_j \big[ y_{ij} \log p_{ij} + (1 - y_{ij}) \log(1 - p_{ij})
    \big], \qquad \frac{\partial E}{\partial a_{ij}} = \frac{p_{ij} - y_{ij}}{n}.

Only ``cross_entropy`` without a softmax output and ``binary_cross_entropy`` without a
sigmoid output are mismatched (a ``ValueError``); :func:`for_output` gives the default
loss of an output activation.

Examples
--------
>>> from fastbp import losses
>>> losses.names()
['bce', 'binary_cross_entropy', 'ce', 'cross_entropy', 'log_loss', 'mse', 'squared_error']
>>> losses.required_output("cross_entropy"), losses.for_output("sigmoid")
('softmax', 'binary_cross_entropy')
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
    """All loss names, aliases included, sorted."""
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
    """Kernel code of the loss called ``name`` (or an alias); ValueError lists the valid
    names."""
    return int(_LOSSES[canonical(name)])


def required_output(name):
    """The output activation a loss needs, or None when any output works."""
    return _REQUIRED_OUTPUT.get(canonical(name))


def for_output(activation):
    """The loss a network with this output activation trains on when none is named:
    cross_entropy for softmax, binary_cross_entropy for sigmoid, mse otherwise."""
    return {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy"}.get(activation, "mse")
