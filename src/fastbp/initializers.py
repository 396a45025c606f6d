r"""Weight initializers, ``calculate_gain`` and data-dependent LSUV initialization.

Every initializer is a plain NumPy function with the signature::

    init(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0, **params)

and returns a new C-contiguous array of shape ``(fan_in, fan_out)`` and the requested
dtype (``"float32"`` or ``"float64"``). ``rng`` is ``None`` (a fresh
``numpy.random.default_rng()``), an int seed, or a ``numpy.random.Generator``; the same
seed always gives the same array, and the random numbers are drawn in float64 and then
rounded, so a float32 array is the rounded float64 one drawn from the same seed.
``gain`` multiplies the standard deviation of the distribution (for ``zeros`` and
``constant`` it multiplies the value). Bad arguments raise as everywhere in fastbp: a
``TypeError`` for a wrong type, a ``ValueError`` for a bad value, naming the argument.

Weight layout
-------------
fastbp computes ``z @ W + b`` with ``W`` of shape ``(n_in, n_out)``, so
``fan_in = W.shape[0]`` and ``fan_out = W.shape[1]`` (as in Keras). PyTorch stores
``nn.Linear.weight`` as ``(out, in)``, i.e. transposed: its ``fan_in`` is ``size(1)``.

Names
-----
========================================================  ===================================
name (aliases)                                            distribution
========================================================  ===================================
``zeros``, ``constant(value=0)``                          constant ``gain * value``
``normal`` (``gaussian``)                                 N(mean, (gain*std)^2), std 0.01
``uniform``                                               U(low, high), [-0.05, 0.05]
``truncated_normal``                                      N(mean, std^2) redrawn beyond 2 std
``lecun_normal``, ``lecun_uniform``                       Var = gain^2 / fan_in
``glorot_normal`` (``xavier_normal``),                    Var = gain^2 * 2 / (fan_in + fan_out)
``glorot_uniform`` (``xavier_uniform``)
``he_normal`` (``msra``, ``kaiming_normal``),             Var = gain^2 * 2 / fan_in
``he_uniform`` (``kaiming_uniform``)                      (or 2 / fan_out with mode="fan_out")
``orthogonal``                                            (semi-)orthogonal matrix times gain
``variance_scaling``                                      Var = gain^2 * scale / n (Keras)
========================================================  ===================================

In formulas, with :math:`g` the ``gain``:

.. math::

    \operatorname{Var}(W_{ij}) = \frac{g^2}{n_\text{in}} \ \text{(LeCun)}, \qquad
    \frac{2 g^2}{n_\text{in} + n_\text{out}} \ \text{(Glorot/Xavier)}, \qquad
    \frac{2 g^2}{n_\text{in}} \ \text{(He/Kaiming/MSRA)}.

%(xavier)s

The ``*_normal`` variance-scaling initializers are untruncated (PyTorch convention) unless
``truncated=True`` is passed; then they use Keras' truncated normal (redrawn beyond two
standard deviations) with the std divided by 0.87962566103423978 so that the standard
deviation after truncation is exactly the one in the table.
"""

import math
import numbers
import re
import textwrap

import numpy as np

from . import activations as _activations
from ._validation import as_float_matrix, check_dtype, check_number, check_positive_int

__all__ = [
    "zeros",
    "constant",
    "normal",
    "gaussian",
    "uniform",
    "truncated_normal",
    "variance_scaling",
    "lecun_normal",
    "lecun_uniform",
    "glorot_normal",
    "glorot_uniform",
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "msra",
    "kaiming_normal",
    "kaiming_uniform",
    "orthogonal",
    "calculate_gain",
    "lsuv",
    "get",
    "names",
]

#: Standard deviation of a standard normal truncated to [-2, 2] (Keras' correction).
TRUNCATED_NORMAL_STD = 0.87962566103423978

_SQRT2 = math.sqrt(2.0)
_SQRT3 = math.sqrt(3.0)


# --------------------------------------------------------------------------------------
# shared docstring text
# --------------------------------------------------------------------------------------
# A docstring line that is only ``%(key)s`` is replaced by _DOCS[key], indented as the line.
_DOCS = {
    "fans": """\
fan_in, fan_out : int
    Number of inputs and outputs of the layer, ``W.shape``: fastbp's weights are
    ``(fan_in, fan_out)`` (PyTorch's are transposed).""",
    "rng": """\
rng : None, int or numpy.random.Generator, optional
    Random source; the same seed gives the same array.""",
    "rng_unused": """\
rng : None, int or numpy.random.Generator, optional
    Unused (no randomness).""",
    "dtype": 'dtype : {"float32", "float64"} or numpy dtype, default "float32"',
    "gain": """\
gain : float, default 1.0
    Multiplies the standard deviation (must be > 0).""",
    "gain_value": """\
gain : float, default 1.0
    Multiplies the value.""",
    "he_mode": """\
mode : {"fan_in", "fan_out"}, default "fan_in"
    ``n`` in Var = 2/n: ``fan_in`` preserves the variance of the forward pass,
    ``fan_out`` that of the backward pass.""",
    "truncated": """\
truncated : bool, default False
    False: untruncated normal (PyTorch). True: Keras' truncated normal, values redrawn
    beyond 2 pre-truncation standard deviations, rescaled by 1/0.87962566103423978 so
    that the final std is exactly ``std``.""",
    "returns": """\
Returns
-------
numpy.ndarray of shape (fan_in, fan_out)""",
    "symmetry": """\
A constant initialization never breaks the symmetry between the hidden units of a
layer: every unit computes the same output and receives the same gradient, so
backpropagation keeps them identical and the layer behaves like a single unit. Use it
for output layers of special models or for tests, not for hidden layers.""",
    "xavier": """\
A note on the name "Xavier": Caffe's ``XavierFiller`` (and many notes and blog posts
that follow it) uses Var = 1/fan_in. Here, as in PyTorch and Keras, Var = 1/fan_in is
``lecun_*`` and ``xavier_*`` is Glorot & Bengio's Var = 2/(fan_in + fan_out).""",
}
_DOCS["random_params"] = "\n".join(_DOCS[k] for k in ["fans", "rng", "dtype", "gain"])
_DOCS["constant_params"] = "\n".join(_DOCS[k] for k in ["fans", "rng_unused", "dtype",
                                                        "gain_value"])

_PLACEHOLDER = re.compile(r"^( *)%\((\w+)\)s$", re.MULTILINE)


def _fill(doc):
    if not doc:  # python -OO strips docstrings
        return doc
    return _PLACEHOLDER.sub(lambda m: textwrap.indent(_DOCS[m[2]], m[1]), doc)


def _doc(func):
    """Decorator: fill the ``%(key)s`` lines of ``func``'s docstring from ``_DOCS``."""
    func.__doc__ = _fill(func.__doc__)
    return func


__doc__ = _fill(__doc__)


# --------------------------------------------------------------------------------------
# argument checking (the messages and exception types of fastbp._validation)
# --------------------------------------------------------------------------------------
def _check_dtype(dtype):
    if dtype is None:  # np.dtype(None) would silently be float64
        raise TypeError("dtype must be 'float32' or 'float64', got None")
    dt = check_dtype(dtype)
    if not dt.isnative:  # check_dtype goes by the name, which ignores the byte order
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def _as_generator(rng):
    """Return a ``numpy.random.Generator`` for ``rng`` (None, int seed or Generator)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        return np.random.default_rng(check_positive_int(rng, "rng", minimum=0))
    if isinstance(rng, (np.random.SeedSequence, np.random.BitGenerator)):
        return np.random.default_rng(rng)
    raise TypeError(
        f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}"
    )


def _prepare(fan_in, fan_out, rng, dtype, gain, *, random=True):
    fan_in = check_positive_int(fan_in, "fan_in")
    fan_out = check_positive_int(fan_out, "fan_out")
    dt = _check_dtype(dtype)
    gain = check_number(gain, "gain", low=0 if random else None, low_open=True)
    gen = _as_generator(rng)
    return fan_in, fan_out, gen, dt, gain


def _finish(values, dt):
    return np.ascontiguousarray(values, dtype=dt)


def _truncated_standard_normal(gen, shape):
    """Standard normal samples with every value outside [-2, 2] redrawn."""
    z = gen.standard_normal(shape)
    bad = np.abs(z) > 2.0
    n_bad = int(np.count_nonzero(bad))
    while n_bad:
        z[bad] = gen.standard_normal(n_bad)
        bad = np.abs(z) > 2.0
        n_bad = int(np.count_nonzero(bad))
    return z


# --------------------------------------------------------------------------------------
# constant initializers
# --------------------------------------------------------------------------------------
@_doc
def zeros(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0):
    """All-zero weights.

    ``W_ij = 0``. ``rng`` and ``gain`` are accepted for a uniform signature (``gain``
    multiplies the value, which stays 0).

    %(symmetry)s

    Parameters
    ----------
    %(constant_params)s

    %(returns)s

    Examples
    --------
    >>> zeros(2, 3).tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    fan_in, fan_out, _, dt, gain = _prepare(fan_in, fan_out, rng, dtype, gain, random=False)
    return np.zeros((fan_in, fan_out), dtype=dt)


@_doc
def constant(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0, value=0.0):
    """Constant weights ``W_ij = gain * value``.

    %(symmetry)s

    Parameters
    ----------
    %(constant_params)s
    value : float, default 0.0

    %(returns)s

    Examples
    --------
    >>> constant(1, 2, value=0.5, gain=2.0).tolist()
    [[1.0, 1.0]]
    """
    fan_in, fan_out, _, dt, gain = _prepare(fan_in, fan_out, rng, dtype, gain, random=False)
    value = check_number(value, "value")
    return np.full((fan_in, fan_out), gain * value, dtype=dt)


# --------------------------------------------------------------------------------------
# plain random initializers
# --------------------------------------------------------------------------------------
@_doc
def normal(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0, mean=0.0, std=0.01):
    r"""Gaussian weights ``W_ij ~ N(mean, (gain * std)^2)`` (untruncated).

    With :math:`g` = ``gain``, :math:`n_\text{in}` = ``fan_in`` and
    :math:`n_\text{out}` = ``fan_out``:

    .. math::

        W_{ij} \sim \mathcal{N}\big(\mu,\ (g\,\sigma)^2\big), \qquad
        \mu = \texttt{mean},\ \sigma = \texttt{std}

    Parameters
    ----------
    %(random_params)s
    mean : float, default 0.0
    std : float, default 0.01
        Standard deviation (> 0).

    %(returns)s

    Examples
    --------
    >>> normal(3, 2, rng=0).shape
    (3, 2)
    """
    fan_in, fan_out, gen, dt, gain = _prepare(fan_in, fan_out, rng, dtype, gain)
    mean = check_number(mean, "mean")
    std = check_number(std, "std", low=0, low_open=True)
    values = gen.standard_normal((fan_in, fan_out))
    values *= gain * std
    values += mean
    return _finish(values, dt)


@_doc
def uniform(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0, low=-0.05, high=0.05):
    r"""Uniform weights ``W_ij ~ U(low, high)``.

    ``gain`` multiplies the standard deviation, i.e. the half-width of the interval
    around its centre: the samples are drawn from
    ``U(c - gain * h, c + gain * h)`` with ``c = (low + high) / 2`` and
    ``h = (high - low) / 2``; with ``gain=1`` that is exactly ``U(low, high)``.
    ``Var = gain^2 * (high - low)^2 / 12``.

    With :math:`g` = ``gain``, :math:`n_\text{in}` = ``fan_in`` and
    :math:`n_\text{out}` = ``fan_out``:

    .. math::

        W_{ij} \sim \mathcal{U}\big(c - g\,r,\ c + g\,r\big), \quad
        c = \frac{\ell + h}{2},\ r = \frac{h - \ell}{2}, \qquad
        \operatorname{Var}(W_{ij}) = \frac{g^2 (h - \ell)^2}{12}

    (:math:`\ell` = ``low``, :math:`h` = ``high``).

    Parameters
    ----------
    %(random_params)s
    low, high : float, default -0.05, 0.05
        Interval bounds, ``low < high``.

    %(returns)s

    Examples
    --------
    >>> W = uniform(4, 5, rng=0)
    >>> bool((W >= -0.05).all() and (W <= 0.05).all())
    True
    """
    fan_in, fan_out, gen, dt, gain = _prepare(fan_in, fan_out, rng, dtype, gain)
    low = check_number(low, "low")
    high = check_number(high, "high")
    if not low < high:
        raise ValueError(f"low must be < high, got low={low!r}, high={high!r}")
    if gain != 1.0:
        centre = 0.5 * (low + high)
        half = 0.5 * (high - low) * gain
        low, high = centre - half, centre + half
    return _finish(gen.uniform(low, high, (fan_in, fan_out)), dt)


@_doc
def truncated_normal(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0, mean=0.0,
                     std=0.05):
    r"""Truncated Gaussian weights (Keras ``TruncatedNormal`` convention).

    Samples are drawn from ``N(mean, s^2)`` with ``s = gain * std`` and every value more
    than two standard deviations from the mean (``|W_ij - mean| > 2 s``) is redrawn, so
    all values lie in ``[mean - 2 s, mean + 2 s]``.

    As in Keras (and TensorFlow's ``truncated_normal``), ``std`` is the standard deviation
    of the normal distribution *before* truncation: the standard deviation of the
    returned values is ``0.87962566103423978 * gain * std``. (PyTorch's ``trunc_normal_``
    differs: its bounds ``a, b`` are absolute values, not multiples of std.) To get an
    exact post-truncation std, use the ``truncated=True`` option of ``lecun_normal``,
    ``glorot_normal`` or ``he_normal``, or divide ``std`` by ``TRUNCATED_NORMAL_STD``.

    With :math:`g` = ``gain``, :math:`n_\text{in}` = ``fan_in`` and
    :math:`n_\text{out}` = ``fan_out``:

    .. math::

        W_{ij} \sim \mathcal{N}\big(\mu,\ \sigma^2\big)
        \text{ conditioned on } |W_{ij} - \mu| \le 2\sigma, \qquad
        \sigma = g \cdot \texttt{std}, \qquad
        \operatorname{Var}(W_{ij}) = (0.87962566\,\sigma)^2

    Parameters
    ----------
    %(random_params)s
    mean : float, default 0.0
    std : float, default 0.05
        Standard deviation of the untruncated normal (> 0).

    %(returns)s

    Examples
    --------
    >>> W = truncated_normal(50, 40, rng=0, std=0.1)
    >>> bool(abs(W).max() <= 0.2 + 1e-7)
    True
    """
    fan_in, fan_out, gen, dt, gain = _prepare(fan_in, fan_out, rng, dtype, gain)
    mean = check_number(mean, "mean")
    std = check_number(std, "std", low=0, low_open=True)
    values = _truncated_standard_normal(gen, (fan_in, fan_out))
    values *= gain * std
    values += mean
    return _finish(values, dt)


# --------------------------------------------------------------------------------------
# variance scaling (LeCun, Glorot, He)
# --------------------------------------------------------------------------------------
_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")


def _scaled(gen, shape, std, distribution):
    if distribution == "normal":
        values = gen.standard_normal(shape)
        values *= std
    elif distribution == "truncated_normal":
        values = _truncated_standard_normal(gen, shape)
        values *= std / TRUNCATED_NORMAL_STD
    else:  # uniform: Var(U(-a, a)) = a^2 / 3
        limit = _SQRT3 * std
        values = gen.uniform(-limit, limit, shape)
    return values


@_doc
def variance_scaling(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0, scale=1.0,
                     mode="fan_in", distribution="normal"):
    r"""Zero-mean weights with ``Var(W_ij) = gain^2 * scale / n`` (Keras ``VarianceScaling``).

    ``n`` is ``fan_in``, ``fan_out`` or ``(fan_in + fan_out) / 2`` for ``mode`` =
    ``"fan_in"``, ``"fan_out"``, ``"fan_avg"``. With ``std = gain * sqrt(scale / n)``:

    - ``"normal"``: ``N(0, std^2)``, untruncated (PyTorch convention);
    - ``"truncated_normal"``: normal with std ``std / 0.87962566103423978`` and values
      beyond two of those standard deviations redrawn, so the final std is exactly
      ``std`` (Keras convention; values bounded by ``2.27 * std``);
    - ``"uniform"``: ``U(-a, a)`` with ``a = sqrt(3) * std``.

    ``lecun_*`` is ``scale=1, mode="fan_in"``, ``glorot_*`` is ``scale=1, mode="fan_avg"``,
    ``he_*`` is ``scale=2, mode="fan_in"``.

    With :math:`g` = ``gain``, :math:`n_\text{in}` = ``fan_in`` and
    :math:`n_\text{out}` = ``fan_out``:

    .. math::

        \operatorname{Var}(W_{ij}) = \frac{g^2\, s}{n}, \qquad
        n = n_\text{in},\ n_\text{out} \text{ or } \tfrac{1}{2}(n_\text{in} + n_\text{out}), \qquad
        s = \texttt{scale}

    Parameters
    ----------
    %(random_params)s
    scale : float, default 1.0
        Variance numerator (> 0).
    mode : {"fan_in", "fan_out", "fan_avg"}, default "fan_in"
    distribution : {"normal", "truncated_normal", "uniform"}, default "normal"

    %(returns)s
    """
    fan_in, fan_out, gen, dt, gain = _prepare(fan_in, fan_out, rng, dtype, gain)
    scale = check_number(scale, "scale", low=0, low_open=True)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}; got {mode!r}")
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(
            f"distribution must be one of {', '.join(_DISTRIBUTIONS)}; got {distribution!r}"
        )
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": 0.5 * (fan_in + fan_out)}[mode]
    std = gain * math.sqrt(scale / n)
    return _finish(_scaled(gen, (fan_in, fan_out), std, distribution), dt)


def _normal_kind(truncated):
    if not isinstance(truncated, (bool, np.bool_)):
        raise TypeError(f"truncated must be True or False, got {truncated!r}")
    return "truncated_normal" if truncated else "normal"


@_doc
def lecun_normal(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0, truncated=False):
    r"""LeCun normal: ``W_ij ~ N(0, std^2)``, ``std = gain * sqrt(1 / fan_in)``.

    Var = 1/fan_in keeps the variance of the pre-activations equal to that of the inputs
    (LeCun, Bottou, Orr & Mueller, "Efficient BackProp", 1998).

    %(xavier)s

    With :math:`g` = ``gain``, :math:`n_\text{in}` = ``fan_in`` and
    :math:`n_\text{out}` = ``fan_out``:

    .. math::

        W_{ij} \sim \mathcal{N}(0, \sigma^2), \qquad
        \sigma^2 = \operatorname{Var}(W_{ij}) = \frac{g^2}{n_\text{in}}

    Parameters
    ----------
    %(random_params)s
    %(truncated)s

    %(returns)s

    Examples
    --------
    >>> lecun_normal(784, 256, rng=0).shape
    (784, 256)
    """
    return variance_scaling(fan_in, fan_out, rng=rng, dtype=dtype, gain=gain, scale=1.0,
                            mode="fan_in", distribution=_normal_kind(truncated))


@_doc
def lecun_uniform(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0):
    r"""LeCun uniform: ``W_ij ~ U(-a, a)``, ``a = gain * sqrt(3 / fan_in)`` (Var = gain^2/fan_in).

    LeCun, Bottou, Orr & Mueller, "Efficient BackProp" (1998). PyTorch's default
    ``nn.Linear`` init, ``U(+-1/sqrt(fan_in))``, is ``lecun_uniform(gain=1/sqrt(3))``.

    %(xavier)s

    With :math:`g` = ``gain``, :math:`n_\text{in}` = ``fan_in`` and
    :math:`n_\text{out}` = ``fan_out``:

    .. math::

        W_{ij} \sim \mathcal{U}(-a, a), \qquad a = g\sqrt{\frac{3}{n_\text{in}}}, \qquad
        \operatorname{Var}(W_{ij}) = \frac{g^2}{n_\text{in}}

    Parameters
    ----------
    %(random_params)s

    %(returns)s
    """
    return variance_scaling(fan_in, fan_out, rng=rng, dtype=dtype, gain=gain, scale=1.0,
                            mode="fan_in", distribution="uniform")


@_doc
def glorot_normal(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0, truncated=False):
    r"""Glorot (Xavier) normal: ``N(0, std^2)``, ``std = gain * sqrt(2 / (fan_in + fan_out))``.

    Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
    networks", AISTATS 2010: the compromise between preserving the forward
    (1/fan_in) and the backward (1/fan_out) variance. Same as PyTorch's
    ``xavier_normal_`` (untruncated) or, with ``truncated=True``, Keras'
    ``GlorotNormal``. Alias: ``xavier_normal``.

    %(xavier)s

    With :math:`g` = ``gain``, :math:`n_\text{in}` = ``fan_in`` and
    :math:`n_\text{out}` = ``fan_out``:

    .. math::

        W_{ij} \sim \mathcal{N}(0, \sigma^2), \qquad
        \sigma^2 = \operatorname{Var}(W_{ij}) = \frac{2 g^2}{n_\text{in} + n_\text{out}}

    Parameters
    ----------
    %(random_params)s
    %(truncated)s

    %(returns)s
    """
    return variance_scaling(fan_in, fan_out, rng=rng, dtype=dtype, gain=gain, scale=1.0,
                            mode="fan_avg", distribution=_normal_kind(truncated))


@_doc
def glorot_uniform(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0):
    r"""Glorot (Xavier) uniform: ``U(-a, a)``, ``a = gain * sqrt(6 / (fan_in + fan_out))``.

    Glorot & Bengio (AISTATS 2010), their "normalized initialization";
    Var = gain^2 * 2/(fan_in + fan_out). Same as PyTorch's ``xavier_uniform_`` and
    Keras' ``GlorotUniform`` (the Keras ``Dense`` default); PyTorch's
    ``xavier_uniform_(w, gain=calculate_gain(name))`` is
    ``glorot_uniform(gain=calculate_gain(name))``. Alias: ``xavier_uniform``.

    %(xavier)s

    With :math:`g` = ``gain``, :math:`n_\text{in}` = ``fan_in`` and
    :math:`n_\text{out}` = ``fan_out``:

    .. math::

        W_{ij} \sim \mathcal{U}(-a, a), \qquad
        a = g\sqrt{\frac{6}{n_\text{in} + n_\text{out}}}, \qquad
        \operatorname{Var}(W_{ij}) = \frac{2 g^2}{n_\text{in} + n_\text{out}}

    Parameters
    ----------
    %(random_params)s

    %(returns)s

    Examples
    --------
    >>> W = glorot_uniform(300, 100, rng=0)
    >>> bool(abs(W).max() <= (6 / 400) ** 0.5)
    True
    """
    return variance_scaling(fan_in, fan_out, rng=rng, dtype=dtype, gain=gain, scale=1.0,
                            mode="fan_avg", distribution="uniform")


def _he_mode(mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return mode


@_doc
def he_normal(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0, mode="fan_in",
              truncated=False):
    r"""He (Kaiming, MSRA) normal: ``N(0, std^2)``, ``std = gain * sqrt(2 / n)``.

    He, Zhang, Ren & Sun, "Delving Deep into Rectifiers", ICCV 2015: Var = 2/n keeps
    the variance through ReLU layers, with ``n = fan_in`` (``mode="fan_in"``, preserves
    the forward pass) or ``n = fan_out`` (``mode="fan_out"``, preserves the backward
    pass). The factor 2 is built in: ``gain`` multiplies further. PyTorch's
    ``kaiming_normal_(w, nonlinearity="relu")`` equals ``he_normal()``; for another
    nonlinearity use ``lecun_normal(gain=calculate_gain(name))``. With
    ``truncated=True``, Keras' ``HeNormal``. Aliases: ``msra``, ``kaiming_normal``.

    With :math:`g` = ``gain``, :math:`n_\text{in}` = ``fan_in`` and
    :math:`n_\text{out}` = ``fan_out``:

    .. math::

        W_{ij} \sim \mathcal{N}(0, \sigma^2), \qquad
        \sigma^2 = \operatorname{Var}(W_{ij}) = \frac{2 g^2}{n}, \qquad
        n = n_\text{in} \text{ (or } n_\text{out}\text{)}

    Parameters
    ----------
    %(random_params)s
    %(he_mode)s
    %(truncated)s

    %(returns)s
    """
    return variance_scaling(fan_in, fan_out, rng=rng, dtype=dtype, gain=gain, scale=2.0,
                            mode=_he_mode(mode), distribution=_normal_kind(truncated))


@_doc
def he_uniform(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0, mode="fan_in"):
    r"""He (Kaiming) uniform: ``U(-a, a)``, ``a = gain * sqrt(6 / n)`` (Var = gain^2 * 2/n).

    He, Zhang, Ren & Sun, "Delving Deep into Rectifiers", ICCV 2015. ``n = fan_in``
    (``mode="fan_in"``) or ``fan_out`` (``mode="fan_out"``). PyTorch's
    ``kaiming_uniform_(w, nonlinearity="relu")`` and Keras' ``HeUniform``.
    Alias: ``kaiming_uniform``.

    With :math:`g` = ``gain``, :math:`n_\text{in}` = ``fan_in`` and
    :math:`n_\text{out}` = ``fan_out``:

    .. math::

        W_{ij} \sim \mathcal{U}(-a, a), \qquad a = g\sqrt{\frac{6}{n}}, \qquad
        \operatorname{Var}(W_{ij}) = \frac{2 g^2}{n}, \qquad
        n = n_\text{in} \text{ (or } n_\text{out}\text{)}

    Parameters
    ----------
    %(random_params)s
    %(he_mode)s

    %(returns)s
    """
    return variance_scaling(fan_in, fan_out, rng=rng, dtype=dtype, gain=gain, scale=2.0,
                            mode=_he_mode(mode), distribution="uniform")


@_doc
def orthogonal(fan_in, fan_out, *, rng=None, dtype="float32", gain=1.0):
    r"""(Semi-)orthogonal weights times ``gain`` (Saxe, McClelland & Ganguli 2013).

    "Exact solutions to the nonlinear dynamics of learning in deep linear neural
    networks" (arXiv:1312.6120). A ``max(fan_in, fan_out) x min(fan_in, fan_out)`` matrix
    ``A`` with N(0, 1) entries is factored ``A = QR``; ``Q * sign(diag(R))`` (the sign
    fix makes the result uniformly (Haar) distributed) is transposed if needed to shape
    ``(fan_in, fan_out)`` and multiplied by ``gain``. The result satisfies
    ``W.T @ W = gain^2 I`` when ``fan_in >= fan_out`` (orthonormal columns) and
    ``W @ W.T = gain^2 I`` when ``fan_in < fan_out`` (orthonormal rows). Same as
    PyTorch's ``orthogonal_`` and Keras' ``Orthogonal``.

    With :math:`g` = ``gain``, :math:`n_\text{in}` = ``fan_in`` and
    :math:`n_\text{out}` = ``fan_out``:

    .. math::

        W^\top W = g^2 I \ (n_\text{in} \ge n_\text{out}), \qquad
        W W^\top = g^2 I \ (n_\text{in} < n_\text{out}), \qquad
        \operatorname{Var}(W_{ij}) = \frac{g^2}{\max(n_\text{in}, n_\text{out})}

    Parameters
    ----------
    %(random_params)s

    %(returns)s

    Examples
    --------
    >>> import numpy as np
    >>> W = orthogonal(5, 3, rng=0, dtype="float64")
    >>> bool(np.allclose(W.T @ W, np.eye(3)))
    True
    """
    fan_in, fan_out, gen, dt, gain = _prepare(fan_in, fan_out, rng, dtype, gain)
    rows, cols = max(fan_in, fan_out), min(fan_in, fan_out)
    q, r = np.linalg.qr(gen.standard_normal((rows, cols)))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    q *= signs
    if fan_in < fan_out:
        q = q.T
    q *= gain
    return _finish(q, dt)


# --------------------------------------------------------------------------------------
# gains
# --------------------------------------------------------------------------------------
_GAINS = {
    # PyTorch's table
    "linear": 1.0,
    "identity": 1.0,
    "conv1d": 1.0,
    "conv2d": 1.0,
    "conv3d": 1.0,
    "conv_transpose1d": 1.0,
    "conv_transpose2d": 1.0,
    "conv_transpose3d": 1.0,
    "sigmoid": 1.0,
    "tanh": 5.0 / 3.0,
    "relu": _SQRT2,
    "leaky_relu": None,  # depends on the slope
    "selu": 0.75,
    # fastbp activation names
    "logistic": 1.0,
    "lecun_tanh": 1.0,
    "softsign": 1.0,
    "elu": _SQRT2,
    "softplus": _SQRT2,
    "silu": _SQRT2,
    "swish": _SQRT2,
    "gelu": _SQRT2,
    "softmax": 1.0,
    "step": 1.0,
}


def calculate_gain(nonlinearity, param=None):
    """Recommended ``gain`` for an activation function (PyTorch's table, extended).

    ======================================  =============================================
    nonlinearity                            gain
    ======================================  =============================================
    identity / linear / conv*               1
    sigmoid (logistic)                      1
    tanh                                    5/3
    relu                                    sqrt(2)
    leaky_relu                              sqrt(2 / (1 + negative_slope^2)), slope 0.01
    selu                                    3/4
    lecun_tanh                              1
    softsign                                1
    elu, softplus, silu (swish), gelu       sqrt(2)
    softmax, step                           1
    ======================================  =============================================

    The first six rows are PyTorch's ``torch.nn.init.calculate_gain``. For the other
    fastbp activations there is no canonical value; the choices are: ``lecun_tanh``
    (``1.7159 tanh(2x/3)``) is designed to have unit output variance for unit input
    variance, so 1; ``softsign`` is a bounded, tanh-like squashing function with a slope
    of 1 at 0, so 1; ``elu``, ``softplus``, ``silu`` and ``gelu`` are ReLU-like (near
    zero for negative inputs, near identity for positive ones, roughly halving the second
    moment), so ReLU's sqrt(2); ``softmax`` (output layer only) and ``step`` get 1.

    Parameters
    ----------
    nonlinearity : str
        Activation name.
    param : float, optional
        Negative slope of ``leaky_relu`` (default 0.01); ignored for other names.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones) or a non-numeric ``param``.

    Examples
    --------
    >>> calculate_gain("tanh")
    1.6666666666666667
    >>> round(calculate_gain("leaky_relu", 0.2), 6)
    1.38675
    """
    if not isinstance(nonlinearity, str):
        raise TypeError(f"nonlinearity must be a str, got {type(nonlinearity).__name__}")
    key = nonlinearity.lower()
    if key not in _GAINS:
        raise ValueError(
            f"unknown nonlinearity {nonlinearity!r}; valid names: {', '.join(sorted(_GAINS))}"
        )
    if key == "leaky_relu":
        if param is None:
            slope = 0.01
        else:
            slope = check_number(param, "param (negative_slope)")
        return math.sqrt(2.0 / (1.0 + slope * slope))
    return _GAINS[key]


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------
gaussian = normal
xavier_normal = glorot_normal
xavier_uniform = glorot_uniform
msra = he_normal
kaiming_normal = he_normal
kaiming_uniform = he_uniform

_REGISTRY = {
    "zeros": zeros,
    "constant": constant,
    "normal": normal,
    "gaussian": normal,
    "uniform": uniform,
    "truncated_normal": truncated_normal,
    "variance_scaling": variance_scaling,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "glorot_normal": glorot_normal,
    "xavier_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "xavier_uniform": glorot_uniform,
    "he_normal": he_normal,
    "msra": he_normal,
    "kaiming_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_uniform": he_uniform,
    "orthogonal": orthogonal,
}


def names():
    """All initializer names, aliases included, sorted."""
    return sorted(_REGISTRY)


def get(name):
    """Return the initializer function called ``name`` (a callable is returned as is).

    Parameters
    ----------
    name : str or callable
        An initializer name or alias (see ``names()``; case-insensitive), or a function
        ``init(fan_in, fan_out, *, rng, dtype, ...)``.

    Returns
    -------
    callable

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid names.
    TypeError
        ``name`` is neither a str nor callable.

    Examples
    --------
    >>> get("xavier_uniform") is get("glorot_uniform")
    True
    """
    if isinstance(name, str):
        try:
            return _REGISTRY[name.lower()]
        except KeyError:
            raise ValueError(
                f"unknown initializer {name!r}; valid names: {', '.join(sorted(_REGISTRY))}"
            ) from None
    if callable(name):
        return name
    raise TypeError(f"init must be an initializer name or a callable, got {type(name).__name__}")


# --------------------------------------------------------------------------------------
# LSUV
# --------------------------------------------------------------------------------------
def lsuv(net, X, *, tol=0.1, max_iter=10, rng=None):
    """Layer-sequential unit-variance initialization, in place (Mishkin & Matas 2015).

    "All you need is a good init", ICLR 2016 (arXiv:1511.06422):

    1. every weight matrix is set to an orthogonal matrix (``orthogonal``, gain 1);
    2. for each layer ``l = 1..L`` in order (the output layer included), with
       ``B_l = z_{l-1} @ W_l + b_l`` its pre-activations on the batch ``X``
       (``z_0 = X``, ``z_l = f_l(B_l)``)::

           while |Var(B_l) - 1| >= tol and iterations < max_iter:
               W_l <- W_l / sqrt(Var(B_l))

    ``Var`` is the variance of all the entries of ``B_l``. The statistics are computed
    in float64 with NumPy (the activations' ``forward`` functions), the scaled weights
    are written back into the network's own arrays in its dtype. Biases are left as they
    are (fastbp starts them at zero).

    Parameters
    ----------
    net : fastbp.Network
        Modified in place: needs ``weights`` (live arrays ``(n_in, n_out)``), ``biases``
        and ``activations`` (one name per layer).
    X : array_like of shape (n_samples, n_features)
        A representative batch (finite values, ``n_features = net.weights[0].shape[0]``).
    tol : float, default 0.1
        Tolerance on ``|Var(B_l) - 1|`` (> 0).
    max_iter : int, default 10
        Maximum number of rescalings per layer (>= 0).
    rng : None, int or numpy.random.Generator, optional
        Random source of the orthogonal matrices.

    Returns
    -------
    net
        The same network.

    Raises
    ------
    TypeError
        Non-numeric ``X``, non-integer ``max_iter``.
    ValueError
        Bad ``X`` (not 2-D, wrong number of columns, empty, NaN/inf), bad ``tol`` or
        ``max_iter``, or a layer whose pre-activations have zero or non-finite variance
        on ``X`` (it cannot be scaled to unit variance).
    """
    weights = list(net.weights)
    biases = list(net.biases)
    acts = tuple(net.activations)
    if not weights or len(biases) != len(weights) or len(acts) != len(weights):
        raise ValueError(
            "net must have as many weights, biases and activations (one per layer); got "
            f"{len(weights)}, {len(biases)}, {len(acts)}"
        )
    tol = check_number(tol, "tol", low=0, low_open=True)
    max_iter = check_positive_int(max_iter, "max_iter", minimum=0)
    X = as_float_matrix(X, np.float64, "X", n_columns=weights[0].shape[0])

    forwards = []
    for a in acts:
        if isinstance(a, str):
            forwards.append(_activations.get(a).forward)
        elif hasattr(a, "forward"):
            forwards.append(a.forward)
        elif callable(a):
            forwards.append(a)
        else:
            raise ValueError(f"unknown activation {a!r} in net.activations")

    gen = _as_generator(rng)
    for W in weights:
        W[...] = orthogonal(W.shape[0], W.shape[1], rng=gen, dtype=W.dtype)

    z = X
    for layer, (W, b, forward) in enumerate(zip(weights, biases, forwards)):
        b64 = np.asarray(b, dtype=np.float64)
        for it in range(max_iter + 1):
            B = z @ np.asarray(W, dtype=np.float64) + b64
            var = float(B.var())
            if not math.isfinite(var) or var <= 0.0:
                raise ValueError(
                    f"LSUV: the pre-activations of layer {layer} have variance {var!r} on X; "
                    "they cannot be scaled to unit variance (constant or degenerate X?)"
                )
            if abs(var - 1.0) < tol or it == max_iter:
                break
            W[...] = np.asarray(W, dtype=np.float64) / math.sqrt(var)
        z = np.asarray(forward(B), dtype=np.float64)
    return net
