"""Input checks shared by every public entry point: done once, before compiled code runs."""
import numbers

import numpy as np

from . import _engine
from ._config import get_num_threads

FLOAT_DTYPES = ("float32", "float64")


def check_dtype(dtype, name="dtype"):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be 'float32' or 'float64', got {dtype!r}") from None
    if dt.name not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be 'float32' or 'float64', got {dt.name!r}")
    if not dt.isnative:
        raise ValueError(f"{name} must be in the machine's byte order, got {dtype!r}")
    return dt


def check_positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_number(value, name, low=None, high=None, low_open=False, high_open=False):
    """A finite real number within [low, high] (ends open when asked)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def _max_abs(arr, n_threads=None):
    """max |element| of a C-contiguous array of float32/float64, inf if one is not finite
    (compiled, one parallel pass on n_threads (None: get_num_threads()), no temporary)."""
    flat = arr.reshape(-1)     # (threads only pay from 4 * 32768 entries on)
    return float(_engine.max_abs(flat, (n_threads or get_num_threads())
                                 if flat.size >= 131072 else 1))


def as_float_matrix(X, dtype, name="X", n_columns=None, allow_empty=False, with_max=False,
                    n_threads=None):
    """X as a C-contiguous 2-D array of ``dtype`` (copied only when needed), finite values.

    Integer, boolean and other-precision float input is converted; anything else raises.
    with_max: return (X, max |X|), the max from the same pass as the finiteness check (on
    n_threads threads; None: get_num_threads()).
    """
    if (type(X) is np.ndarray and X.dtype == dtype and X.ndim == 2 and X.flags.c_contiguous
            and (n_columns is None or X.shape[1] == n_columns) and X.shape[0]):
        out = X                          # already what it must be: only the values to check
    else:
        out = _converted(X, dtype, name, n_columns, allow_empty)
    top = _max_abs(out, n_threads)
    if not top < np.inf:
        bad = "NaN" if np.isnan(out).any() else "inf"
        raise ValueError(f"{name} contains {bad} values (after conversion to {np.dtype(dtype).name})")
    return (out, top) if with_max else out


def _converted(X, dtype, name, n_columns, allow_empty):
    if hasattr(X, "toarray") and hasattr(X, "nnz"):  # scipy.sparse
        X = X.toarray()
    arr = np.asarray(X)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (0 samples)")
    if n_columns is not None and arr.shape[1] != n_columns:
        raise ValueError(f"{name} must have {n_columns} columns, got shape {arr.shape}")
    with np.errstate(over="ignore", invalid="ignore"):   # reported by the caller
        return np.ascontiguousarray(arr, dtype=dtype)


def targets_for_loss(Y, loss, n_samples, n_outputs, dtype, name="Y"):
    """Targets as (dense (n, k) array or None, int64 labels or None)."""
    arr = np.asarray(Y)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.shape[:1] != (n_samples,):
        raise ValueError(f"{name} must have {n_samples} rows (one per sample of X), "
                         f"got shape {arr.shape}")
    if loss == "cross_entropy" and arr.ndim == 1:
        if np.issubdtype(arr.dtype, np.floating):
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} contains NaN or inf labels")
            if (arr != np.round(arr)).any():
                raise ValueError(f"{name}: class labels must be integers, got non-integral values")
        labels = arr.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= n_outputs):
            raise ValueError(f"{name}: class labels must be in [0, {n_outputs - 1}] for a network "
                             f"with {n_outputs} outputs, got range [{labels.min()}, {labels.max()}]")
        return None, np.ascontiguousarray(labels)
    if arr.ndim == 1 and n_outputs == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        want = "(n,) integer labels or " if loss == "cross_entropy" else ""
        raise ValueError(f"{name} must have shape {want}({n_samples}, {n_outputs}) for loss "
                         f"{loss!r}, got {arr.shape}")
    T = as_float_matrix(arr, dtype, name=name, allow_empty=True)
    if loss == "cross_entropy" and (T < 0).any():
        raise ValueError(f"{name}: cross_entropy target rows must be probabilities (>= 0)")
    if loss == "binary_cross_entropy" and ((T < 0) | (T > 1)).any():
        raise ValueError(f"{name}: binary_cross_entropy targets must be in [0, 1]")
    return T, None


def check_sample_weight(sample_weight, n_samples, dtype, name="sample_weight"):
    """None, or a C-contiguous (n,) array of finite non-negative weights with a positive sum."""
    if sample_weight is None:
        return None
    if np.isscalar(sample_weight):
        sample_weight = np.full(n_samples, sample_weight)
    sw = as_float_matrix(np.asarray(sample_weight).reshape(-1, 1), dtype, name).reshape(-1)
    if sw.shape[0] != n_samples:
        raise ValueError(f"{name} must have {n_samples} entries (one per sample), got {sw.shape[0]}")
    if (sw < 0).any():
        raise ValueError(f"{name} must be non-negative")
    if not sw.sum() > 0:
        raise ValueError(f"{name} must have a positive sum")
    return sw
