"""Many networks on one machine: ``train_many`` trains K networks side by side, one thread
each, in one process.

    results = fastbp.train_many([{"layer_sizes": [64, 32, 10], "seed": s, "lr": 0.05}
                                 for s in range(8)], X, y, epochs=20)

Each network trains on one thread exactly as ``Trainer(net, n_threads=1)`` would alone (the
same parameters, bit for bit); the compiled loop releases the GIL, so the networks run in
parallel on ``n_threads`` threads. X and y are validated and converted once per dtype and
shared by every network (no copies per network).
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._config import get_num_threads, check_thread_count
from ._validation import as_float_matrix
from .network import Network
from .trainer import Trainer

__all__ = ["train_many", "NETWORK_KEYS", "TRAINER_KEYS"]

#: keys of a :func:`fastbp.train_many` config that go to :class:`fastbp.Network`
NETWORK_KEYS = ("layer_sizes", "activation", "output", "init", "dtype", "seed", "dropout",
                "input_dropout", "batch_norm")
#: keys of a :func:`fastbp.train_many` config that go to :class:`fastbp.Trainer`
TRAINER_KEYS = ("loss", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
                "batch_size", "lr_schedule", "l2", "l1", "decay_biases", "clip_norm",
                "clip_value", "max_norm", "precision")
FIT_KEYS = ("epochs", "validation_data", "shuffle", "callbacks", "sample_weight",
            "class_weight")


def _split(config, i):
    if not isinstance(config, dict):
        raise TypeError(f"configs[{i}] must be a dict, got {type(config).__name__}")
    unknown = set(config) - set(NETWORK_KEYS) - set(TRAINER_KEYS) - set(FIT_KEYS)
    if unknown:
        raise ValueError(f"configs[{i}]: unknown key(s) {sorted(unknown)}; valid keys: "
                         f"{sorted(NETWORK_KEYS + TRAINER_KEYS + FIT_KEYS)}")
    if "layer_sizes" not in config:
        raise ValueError(f"configs[{i}] needs 'layer_sizes'")
    net = {k: config[k] for k in NETWORK_KEYS if k in config}
    tr = {k: config[k] for k in TRAINER_KEYS if k in config}
    fit = {k: config[k] for k in FIT_KEYS if k in config}
    if "seed" in config:
        tr["seed"] = config["seed"]            # the shuffling's too
    return net, tr, fit


def train_many(configs, X, y, epochs=10, n_threads=None, **fit_kwargs):
    """Train one network per config on (X, y); returns ``[(Network, History), ...]`` in
    the order of ``configs``.

    A config is a dict of ``Network`` arguments (``layer_sizes`` required, ``activation``,
    ``output``, ``init``, ``dtype``, ``seed``, ``dropout``, ``input_dropout``,
    ``batch_norm``), ``Trainer`` arguments (``loss``, ``optimizer``, ``lr``, ``momentum``,
    ``batch_size``, ...; ``seed`` seeds the shuffling too) and ``fit`` arguments
    (``epochs``, ``validation_data``, ...) overriding ``epochs`` and ``fit_kwargs``.
    ``n_threads``: networks trained at once (None: ``fastbp.get_num_threads()``), each on
    one thread. An error in one network's training is raised after the others finish.

    Parameters
    ----------
    configs : list of dict
        One configuration per network (keys: :data:`NETWORK_KEYS`,
        :data:`TRAINER_KEYS` and ``fit``'s arguments).
    X, y : array-like
        The training data, shared by every network (converted once per dtype).
    epochs : int, default 10
        Epochs of each network, unless its config says otherwise.
    n_threads : int or None
        How many networks train at once, one thread each.
    **fit_kwargs
        Further ``Trainer.fit`` arguments for every network (a config's own win).

    Returns
    -------
    list of (Network, History)
        In the order of ``configs``. Each network's parameters are bit for bit those of
        ``Trainer(net, n_threads=1, ...)`` trained alone.

    Examples
    --------
    >>> import fastbp
    >>> from fastbp.datasets import load_digits
    >>> X, y = load_digits()
    >>> configs = [{"layer_sizes": [64, 16, 10], "output": "softmax", "seed": s,
    ...             "optimizer": "adam", "lr": 0.01} for s in range(4)]
    >>> results = fastbp.train_many(configs, X, y, epochs=2, n_threads=2)
    >>> len(results), [len(history.loss) for net, history in results]
    (4, [2, 2, 2, 2])
    """
    configs = list(configs)
    if not configs:
        return []
    n_threads = check_thread_count(n_threads, "n_threads", stacklevel=3) or get_num_threads()
    parts = [_split(c, i) for i, c in enumerate(configs)]
    shared = {}          # dtype -> X converted once (the trainers then take it as it is)
    for net_kw, _, _ in parts:
        dt = np.dtype(net_kw.get("dtype", "float32"))
        if dt not in shared:
            shared[dt] = as_float_matrix(X, dt, "X")
    results = [None] * len(configs)
    errors = [None] * len(configs)

    def one(i):
        net_kw, tr_kw, fit_kw = parts[i]
        try:
            net = Network(**net_kw)
            trainer = Trainer(net, n_threads=1, **tr_kw)
            kw = dict(fit_kwargs, epochs=epochs)
            kw.update(fit_kw)
            history = trainer.fit(shared[net.dtype], y, **kw)
            results[i] = (net, history)
        except BaseException as e:          # reported after the others finish
            errors[i] = e

    with ThreadPoolExecutor(max_workers=min(n_threads, len(configs)),
                            thread_name_prefix="fastbp-train-many") as pool:
        list(pool.map(one, range(len(configs))))
    for i, e in enumerate(errors):
        if e is not None:
            raise RuntimeError(f"train_many: configs[{i}] failed: {e!r}") from e
    return results
