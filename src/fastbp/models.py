"""Trained models as saved by ``fastbp train``: a network plus its preprocessing.

A model is two files side by side:

* ``MODEL`` (e.g. ``model.fbp``): the network, written by :meth:`fastbp.Network.save`
  (loadable on its own with :meth:`fastbp.Network.load`);
* ``MODEL.json`` (e.g. ``model.fbp.json``): the metadata ("sidecar") that turns raw
  features into network inputs and network outputs into predictions.

Both files are written atomically (temporary file + ``os.replace``). The metadata is a
JSON object with these keys:

``format``, ``version``
    ``"fastbp-model"`` and ``1``.
``task``
    ``"classification"`` or ``"regression"``.
``n_features``
    Number of input features (the network's inputs).
``feature_names``
    Names of the feature columns in network-input order, or None (trained on arrays).
``target``, ``ignored_columns``, ``source_format``
    Name of the target, columns that were skipped, ``"csv"`` or ``"npz"``.
``index_columns``
    Optional: names of the CSV columns dropped as row indices (``--index-col``, or
    pandas' unnamed 0..n-1 index column); ``fastbp predict`` skips them too.
``feature_mean``, ``feature_std``
    Per-feature standardization statistics, or None (raw features).
``classes``
    Classification: the class names, in network-output order.
``target_names``, ``target_mean``, ``target_std``
    Regression: one name per output; the standardization of the targets or None.
``training``
    How the model was trained (optional, informative only).
``network_sha256``
    SHA-256 of ``MODEL``, written by :meth:`TrainedModel.save`, so that a network and a
    metadata file from different runs are never paired by mistake.

Examples
--------
>>> model = fastbp.models.load_model("model.fbp")          # doctest: +SKIP
>>> model.predict(X)                                       # doctest: +SKIP
"""
import json
import os

import numpy as np

from ._files import atomic_write
from .network import _MAGIC, Network

__all__ = ["TrainedModel", "load_model", "META_SUFFIX"]

#: suffix of the JSON sidecar next to a model file (``model.fbp`` -> ``model.fbp.json``)
META_SUFFIX = ".json"
META_FORMAT = "fastbp-model"
META_VERSION = 1


class TrainedModel:
    """A network with the metadata that maps raw features to predictions.

    Parameters
    ----------
    net : Network
        The trained network.
    meta : dict
        The metadata described in the module docstring.
    path : str or None
        The network file the model was loaded from or last saved to.

    Notes
    -----
    ``X`` arguments hold raw (unstandardized) features, shape (n_samples, n_features),
    columns in the order of ``feature_names``.
    """

    def __init__(self, net, meta, path=None):
        self.net, self.meta, self.path = net, meta, path

    task = property(lambda self: self.meta["task"],
                    doc='"classification" or "regression".')
    classes = property(lambda self: self.meta.get("classes"),
                       doc="Class names in output order (classification), else None.")
    feature_names = property(lambda self: self.meta.get("feature_names"),
                             doc="Feature column names in input order, or None.")
    n_features = property(lambda self: self.meta["n_features"],
                          doc="Number of input features.")

    def transform(self, X):
        """Standardize raw features as in training.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples, n_features)
            C-contiguous, in the network's dtype: the network's input.
        """
        X = np.asarray(X, dtype=np.float64)
        mean, std = self.meta.get("feature_mean"), self.meta.get("feature_std")
        if mean is not None:
            X = (X - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)
        return np.ascontiguousarray(X, dtype=self.net.dtype)

    def outputs(self, X):
        """Network outputs for raw features.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples, n_outputs)
            Classification: class probabilities in the network's dtype. Regression: values
            in the target's units (float64 when the targets were standardized).
        """
        out = self.net.predict(self.transform(X))
        if self.task == "regression" and self.meta.get("target_mean") is not None:
            out = (out.astype(np.float64) * np.asarray(self.meta["target_std"], np.float64)
                   + np.asarray(self.meta["target_mean"], np.float64))
        return out

    def predict_proba(self, X):
        """Class probabilities (classification models only).

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples, n_classes)
            Columns in the order of ``classes``.

        Raises
        ------
        ValueError
            For a regression model.
        """
        if self.task != "classification":
            raise ValueError("predict_proba: this is a regression model")
        return self.outputs(X)

    def predict(self, X):
        """Predictions for raw features.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)

        Returns
        -------
        ndarray
            Classification: the most probable class name per sample (object array,
            shape (n_samples,)). Regression: values in the target's units, shape
            (n_samples,) for one target, (n_samples, n_targets) for several.
        """
        out = self.outputs(X)
        if self.task == "classification":
            return np.array(self.classes, dtype=object)[out.argmax(axis=1)]
        return out[:, 0] if out.shape[1] == 1 else out

    def save(self, path):
        """Write the network to ``path`` and the metadata to ``path + ".json"``.

        Each file is written atomically; the metadata gets ``format`` and ``version``
        first and the network file's SHA-256 last. Sets ``self.path``.

        Parameters
        ----------
        path : str or os.PathLike

        Raises
        ------
        ValueError
            When the metadata does not fit the network or is not JSON-serializable
            (checked before anything is written).
        """
        path = os.fspath(path)
        meta = {"format": META_FORMAT, "version": META_VERSION}
        meta.update(self.meta)
        meta.update(format=META_FORMAT, version=META_VERSION)
        try:
            _check_meta(meta, self.net)
            json.dumps(meta)
        except KeyError as e:
            raise ValueError(f"cannot save the model: the metadata has no {e.args[0]!r} "
                             "key") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"cannot save the model: invalid metadata ({e})") from None
        self.net.save(path)
        meta["network_sha256"] = _sha256(path)
        atomic_write(path + META_SUFFIX, (json.dumps(meta, indent=1) + "\n").encode())
        self.path = path


def load_model(path):
    """Read a model written by :meth:`TrainedModel.save` or ``fastbp train``.

    Parameters
    ----------
    path : str or os.PathLike
        The network file ``MODEL``; ``MODEL.json`` must be next to it.

    Returns
    -------
    TrainedModel

    Raises
    ------
    FileNotFoundError
        When ``MODEL`` or ``MODEL.json`` is missing.
    ValueError
        When ``MODEL`` is not a fastbp network file (checked first), a file is corrupt or
        of an unsupported version, or the two files do not belong together.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file")
    meta_path = path + META_SUFFIX
    if path.endswith(META_SUFFIX) and os.path.exists(path[:-len(META_SUFFIX)]):
        raise ValueError(f"{path}: give the network file {path[:-len(META_SUFFIX)]} as MODEL, "
                         f"not its {META_SUFFIX} metadata")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory, not a model file")
    with open(path, "rb") as f:
        magic = f.read(len(_MAGIC))
    if magic != _MAGIC:
        raise ValueError(f"{path}: not a fastbp model file (expected the network file that "
                         f"`fastbp train` or TrainedModel.save wrote, next to its "
                         f"{META_SUFFIX} metadata)")
    if not os.path.exists(meta_path):
        raise FileNotFoundError(f"{meta_path}: the model's metadata file is missing (`fastbp "
                                f"train` writes MODEL and MODEL{META_SUFFIX} side by side)")
    try:
        with open(meta_path, "rb") as f:
            meta = json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{meta_path}: corrupt model metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise ValueError(f"{meta_path}: not a fastbp model metadata file")
    if meta.get("version") != META_VERSION:
        raise ValueError(f"{meta_path}: metadata version {meta.get('version')!r} is not "
                         f"supported (this fastbp reads version {META_VERSION})")
    net = Network.load(path)
    if meta.get("network_sha256") != _sha256(path):
        raise ValueError(f"{path}: the network file does not match its metadata "
                         f"{meta_path} (they come from different training runs)")
    try:
        _check_meta(meta, net)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{meta_path}: corrupt model metadata ({e})") from None
    return TrainedModel(net, meta, path)


def _sha256(path):
    import hashlib   # here, not at import: it loads OpenSSL's libcrypto (3.5 MB of RSS)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_meta(meta, net):
    """Raise KeyError, TypeError or ValueError when ``meta`` does not fit ``net``."""
    d = meta["n_features"]
    if d != net.n_inputs:
        raise ValueError(f"n_features {d} != network inputs {net.n_inputs}")
    if meta["feature_names"] is not None and len(meta["feature_names"]) != d:
        raise ValueError("feature_names has the wrong length")
    for key in ("feature_mean", "feature_std"):
        if meta[key] is not None and len(meta[key]) != d:
            raise ValueError(f"{key} has the wrong length")
    if meta["task"] == "classification":
        if len(meta["classes"]) != net.n_outputs:
            raise ValueError(f"{len(meta['classes'])} classes != network outputs {net.n_outputs}")
    elif meta["task"] == "regression":
        if len(meta["target_names"]) != net.n_outputs:
            raise ValueError("target_names has the wrong length")
    else:
        raise ValueError(f"unknown task {meta['task']!r}")
