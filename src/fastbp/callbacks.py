"""Training callbacks: called after each epoch with ``(epoch, logs)``; returning True stops.

``logs`` holds this epoch's ``loss``, ``val_loss``, ``accuracy``, ``val_accuracy``,
``samples_per_second`` and ``lr`` (those that apply), and ``trainer``.
"""
import contextlib
import os
import re

import numpy as np

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "check_callbacks", "running"]


class Callback:
    """Base of the callbacks: hooks ``Trainer.fit`` calls around and after each epoch.

    ``fit(callbacks=[...])`` takes Callback objects and plain callables
    ``(epoch, logs) -> stop``; a Callback is called the same way (``__call__`` runs
    :meth:`on_epoch_end`) and also gets :meth:`on_train_begin` and :meth:`on_train_end`.
    ``epoch`` counts from 0 over all the epochs the Trainer has trained.

    Examples
    --------
    >>> import fastbp
    >>> from fastbp.callbacks import Callback
    >>> class StopBelow(Callback):
    ...     def __init__(self, target):
    ...         self.target = target
    ...     def on_epoch_end(self, epoch, logs):
    ...         return logs["loss"] < self.target       # True stops training
    >>> net = fastbp.Network([2, 8, 1], activation="tanh", seed=0)
    >>> X, y = [[0, 0], [0, 1], [1, 0], [1, 1]], [[0], [1], [1], [0]]
    >>> trainer = fastbp.Trainer(net, optimizer="adam", lr=0.05, batch_size=None, seed=0)
    >>> history = trainer.fit(X, y, epochs=1000, callbacks=[StopBelow(0.01)])
    >>> len(history.loss) < 1000, history.loss[-1] < 0.01
    (True, True)
    """

    def on_train_begin(self, trainer):
        """Called by ``fit`` before its first epoch, with the Trainer."""
        pass

    def on_epoch_end(self, epoch, logs):
        """After each epoch: ``logs`` has the epoch's numbers (see the module); return True
        to stop training."""
        return False

    def on_train_end(self, trainer):
        """Called by ``fit`` when it returns or raises, with the Trainer."""
        pass

    def __call__(self, epoch, logs):
        return self.on_epoch_end(epoch, logs)


def check_callbacks(callbacks, name="callbacks"):
    """``callbacks`` (None or an iterable) as a list; TypeError naming the argument for an
    entry that is neither a Callback nor a callable ``(epoch, logs) -> stop``."""
    cbs = list(callbacks or [])
    for cb in cbs:
        if not callable(cb):
            raise TypeError(f"{name} must be callables (epoch, logs) -> stop or "
                            f"fastbp.callbacks.Callback objects, got {cb!r}")
    return cbs


@contextlib.contextmanager
def running(callbacks, trainer):
    """``on_train_begin(trainer)`` of each Callback on entry, ``on_train_end(trainer)`` on
    exit however the block ends (plain callables have neither)."""
    hooks = [cb for cb in callbacks if isinstance(cb, Callback)]
    for cb in hooks:
        cb.on_train_begin(trainer)
    try:
        yield
    finally:
        for cb in hooks:
            cb.on_train_end(trainer)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs;
    optionally put back the best weights seen.

    Examples
    --------
    >>> import fastbp
    >>> from fastbp.datasets import load_digits, train_test_split
    >>> X_train, X_val, y_train, y_val = train_test_split(*load_digits(), seed=0)
    >>> net = fastbp.Network([64, 32, 10], activation="relu", output="softmax", seed=0)
    >>> stop = fastbp.EarlyStopping(monitor="val_loss", patience=3,
    ...                             restore_best_weights=True)
    >>> history = fastbp.Trainer(net, optimizer="adam", lr=0.01, seed=0).fit(
    ...     X_train, y_train, epochs=200, validation_data=(X_val, y_val), callbacks=[stop])
    >>> len(history.loss) < 200
    True
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto",
                 restore_best_weights=False):
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode, self.restore_best_weights = mode, restore_best_weights

    def on_train_begin(self, trainer):
        self.best = np.inf if self.mode == "min" else -np.inf
        self.best_epoch, self.wait, self.best_params, self.stopped_epoch = None, 0, None, None

    def on_epoch_end(self, epoch, logs):
        value = logs.get(self.monitor)
        if value is None:
            raise ValueError(f"EarlyStopping: {self.monitor!r} is not in the epoch logs "
                             f"({sorted(k for k in logs if k != 'trainer')})")
        better = (value < self.best - self.min_delta if self.mode == "min"
                  else value > self.best + self.min_delta)
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_params = logs["trainer"].net.parameters.copy()
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, trainer):
        if self.restore_best_weights and self.best_params is not None:
            trainer.net.parameters[...] = self.best_params


class ModelCheckpoint(Callback):
    """Write the trainer's checkpoint (``Trainer.save_checkpoint``) into ``directory``:
    every ``every`` epochs as ``{prefix}-{epoch:05d}.fbpc`` (epoch = epochs trained so far),
    keeping the last ``keep`` of them (None: all), and with ``save_best`` also
    ``{prefix}-best.fbpc`` whenever ``monitor`` improves on the best seen by this callback.
    ``every=0`` writes only the best. ``ModelCheckpoint.latest(directory)`` finds the
    newest periodic one, to resume from with ``fastbp.Trainer.load_checkpoint``.
    """

    def __init__(self, directory, every=1, keep=3, save_best=False, monitor="val_loss",
                 mode="auto", prefix="checkpoint"):
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"every must be an int >= 0, got {every!r}")
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int)
                                 or keep < 1):
            raise ValueError(f"keep must be an int >= 1 or None, got {keep!r}")
        if not every and not save_best:
            raise ValueError("ModelCheckpoint writes nothing with every=0 and save_best=False")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.directory, self.every, self.keep = os.fspath(directory), every, keep
        self.save_best, self.monitor, self.mode, self.prefix = save_best, monitor, mode, prefix
        self.best = None

    def on_train_begin(self, trainer):
        os.makedirs(self.directory, exist_ok=True)

    def on_epoch_end(self, epoch, logs):
        trainer = logs["trainer"]
        if self.every and trainer.epoch % self.every == 0:
            trainer.save_checkpoint(os.path.join(self.directory,
                                                 f"{self.prefix}-{trainer.epoch:05d}.fbpc"))
            if self.keep is not None:
                for _, path in self._periodic(self.directory, self.prefix)[:-self.keep]:
                    os.unlink(path)
        if self.save_best:
            value = logs.get(self.monitor)
            if value is None:
                raise ValueError(f"ModelCheckpoint: {self.monitor!r} is not in the epoch logs "
                                 f"({sorted(k for k in logs if k != 'trainer')})")
            if self.best is None or (value < self.best if self.mode == "min"
                                     else value > self.best):
                self.best = value
                trainer.save_checkpoint(os.path.join(self.directory,
                                                     f"{self.prefix}-best.fbpc"))
        return False

    @staticmethod
    def _periodic(directory, prefix):
        found = []
        for name in os.listdir(directory):
            m = re.fullmatch(re.escape(prefix) + r"-(\d+)\.fbpc", name)
            if m:
                found.append((int(m.group(1)), os.path.join(directory, name)))
        return sorted(found)

    @classmethod
    def latest(cls, directory, prefix="checkpoint"):
        """The path of the newest periodic checkpoint in ``directory``, or None."""
        if not os.path.isdir(directory):
            return None
        found = cls._periodic(directory, prefix)
        return found[-1][1] if found else None
