"""Small real datasets shipped inside the package."""
import gzip
import os

import numpy as np

__all__ = ["load_digits", "train_test_split"]

_DATA = os.path.join(os.path.dirname(__file__), "data")


def load_digits(dtype="float32", scale=True):
    """The UCI optical handwritten digits (8x8), as shipped with scikit-learn.

    Returns ``(X, y)``: X (1797, 64) pixel values (divided by 16 into [0, 1] when
    ``scale``), y (1797,) int64 labels 0-9. Alpaydin & Kaynak (1998), UCI ML Repository,
    CC BY 4.0 (see ``data/DIGITS_LICENSE.txt``).

    Examples
    --------
    >>> from fastbp.datasets import load_digits
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, float(X.max()), sorted(set(y.tolist())) == list(range(10))
    ((1797, 64), dtype('float32'), 1.0, True)
    """
    with gzip.open(os.path.join(_DATA, "digits.csv.gz"), "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.float64)
    X, y = raw[:, :-1], raw[:, -1].astype(np.int64)
    if scale:
        X = X / 16.0
    return X.astype(dtype), y


def train_test_split(X, y, test_fraction=0.25, seed=0, stratify=True):
    """Random split into (X_train, X_test, y_train, y_test), stratified by class labels.

    With ``stratify`` each class contributes ``round(test_fraction * its count)`` rows to
    the test set; ``seed`` fixes the split.

    Examples
    --------
    >>> from fastbp.datasets import load_digits, train_test_split
    >>> X_train, X_test, y_train, y_test = train_test_split(*load_digits(), seed=0)
    >>> len(X_train), len(X_test)
    (1347, 450)
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    n = len(X)
    if stratify:
        test = []
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            test.extend(idx[:int(round(test_fraction * idx.size))])
        test = np.sort(np.array(test, dtype=np.int64))
    else:
        test = np.sort(rng.permutation(n)[:int(round(test_fraction * n))])
    mask = np.ones(n, bool)
    mask[test] = False
    return X[mask], X[test], y[mask], y[test]
