"""Training callbacks: called after each epoch with ``(epoch, logs)``; returning True stops.

``logs`` holds this epoch's ``loss``, ``val_loss``, ``accuracy``, ``val_accuracy``,
``samples_per_second`` and ``lr`` (those that apply), and ``trainer``.
"""
import contextlib

import numpy as np

__all__ = ["Callback", "EarlyStopping", "check_callbacks", "running"]


class Callback:
    def on_train_begin(self, trainer):
        pass

    def on_epoch_end(self, epoch, logs):
        """Return True to stop training."""
        return False

    def on_train_end(self, trainer):
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
    optionally put back the best weights seen."""

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
