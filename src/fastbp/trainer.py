"""Trainer: minibatch training with the whole batch loop in compiled code.

A ``fit`` builds one ``_engine.TrainState`` (the network's plan and parameters, a cached
workspace, the optimizer's settings and state, the shuffle's RNG) and then calls
``_engine.train_batches`` once per chunk of batches (about a fifth of a second of work);
between calls Python updates the progress bar, checks for Ctrl-C and divergence, and
chooses how many threads run the next chunk. Shuffling, gathering each batch into a
preallocated buffer, forward, backward and the optimizer update run in one ``nogil`` call
per chunk, with no allocation.
"""
import math
import sys
import time
import warnings
from dataclasses import dataclass, field, fields

import numpy as np

from . import _container, _engine, callbacks as _callbacks, data as _data, losses as _losses
from . import optimizers as _opt, schedules as _schedules
from .network import Network
from ._config import blas_single_threaded, check_thread_count, get_num_threads, num_threads
from ._validation import (as_float_matrix, check_number, check_positive_int,
                          check_sample_weight, targets_for_loss, _max_abs)

__all__ = ["Trainer", "History", "TrainingDiverged"]

CHECKPOINT_MAGIC = b"FASTBPCK"
CHECKPOINT_VERSION = 1
LOSS_RISE_WARNING = 100.0   # warn when an epoch's loss exceeds this many times the lowest,
                            # and the loss this Trainer started from

CHUNK_SECONDS = 0.2
# Slow steps are grouped into chunks of a few, as long as a chunk stays under 1 s, so that
# the thread probe compares more than single steps and its 1-thread chunks stay few.
CHUNK_MIN_STEPS, CHUNK_MAX_SECONDS = 6, 1.0
PROBE_EVERY = 4       # chunks between two probes of 1 thread against n_threads ...
PROBE_EVERY_MAX = 80  # ... doubling while the choice holds
PROBE_SECONDS = 0.05  # a probe's 1-thread chunk lasts about this long at the n-thread pace
PROBE_MARGIN = 0.9    # the other thread count wins a probe only if this much faster per sample


def _chunk_steps(per_batch, n_batches):
    """Batches in the next compiled call, given the seconds one took so far."""
    per_batch = max(per_batch, 1e-7)
    steps = max(int(CHUNK_SECONDS / per_batch),
                min(CHUNK_MIN_STEPS, int(CHUNK_MAX_SECONDS / per_batch)))
    return max(1, min(n_batches, steps))


class TrainingDiverged(ArithmeticError):
    """The training loss, or a parameter after an update, became NaN/inf.

    The network keeps its last finite parameters: those before the failing batch (its
    update is never applied, or is undone from a backup made in the update pass; SGD with
    momentum backs up only a step that a bound on its values cannot prove finite, see
    ``_engine.may_overflow``). The optimizer's state (momentum, Adam moments, ...) is
    reset, since it may hold NaN/inf.
    """

    def __init__(self, epoch, batch, what="loss"):
        self.epoch, self.batch = epoch, batch
        super().__init__(f"training diverged: non-finite {what} at epoch {epoch}, batch {batch}; "
                         "the network keeps its last finite parameters (try a smaller lr)")


@dataclass
class History:
    """Per-epoch records of training: one entry per epoch in each list (``val_*`` and
    ``accuracy`` only where they apply). ``history`` is the Keras-style mapping of the
    lists (``pandas.DataFrame(h.history)``), ``to_pandas()`` that DataFrame indexed by
    epoch."""
    loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    samples_per_second: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    epochs: list = field(default_factory=list)
    interrupted: bool = False
    extra: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.loss)

    @property
    def history(self):
        """{name: list} of the per-epoch records that are present (every list as long as
        ``epochs``), ``extra``'s lists included."""
        out = {f.name: list(getattr(self, f.name)) for f in fields(self)
               if f.name not in ("interrupted", "extra", "epochs")
               and len(getattr(self, f.name)) == len(self.epochs) and self.epochs}
        out.update({k: list(v) for k, v in self.extra.items()
                    if isinstance(v, list) and len(v) == len(self.epochs) and self.epochs})
        return out

    def to_pandas(self):
        """The records as a pandas DataFrame, one row per epoch (needs pandas)."""
        import pandas as pd   # an optional dependency
        return pd.DataFrame(self.history, index=pd.Index(self.epochs, name="epoch"))

    def to_dict(self):
        """Every field, JSON-able (checkpoints)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d):
        """The History of a :meth:`to_dict` mapping (unknown keys ignored)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


_OPT_ARGS = {"sgd": ("momentum", "nesterov"), "rmsprop": ("momentum",)}


class Trainer:
    """Train a Network by backpropagation.

    Parameters
    ----------
    net : Network
    loss : {"mse", "cross_entropy", "binary_cross_entropy"} or None
        None: the network's output activation's (softmax: cross_entropy, sigmoid:
        binary_cross_entropy, else mse).
    optimizer : str or Optimizer
        "sgd", "adam", "adamw", "rmsprop", "rprop", "quickprop", or an object from
        ``fastbp.optimizers`` (then lr, momentum, weight_decay here are ignored).
    lr : float or None
        Learning rate (None: the optimizer's default, 0.01 for SGD, 0.001 for Adam).
    momentum, nesterov : SGD (momentum also RMSprop) settings.
    weight_decay : float or None
        L2 weight decay as torch.optim: coupled (``+ wd*w`` in the gradient), decoupled for
        AdamW (``w *= 1 - lr*wd``). None: the optimizer's default (0; AdamW 0.01).
    batch_size : int or None
        Samples per batch; None trains full-batch (the natural mode of Rprop, Quickprop).
    n_threads : int or None
        Threads for the kernels and the BLAS (None: ``fastbp.get_num_threads()``).
    seed : int or None
        Seed of the shuffling; the same seed and n_threads give bit-identical weights.
    lr_schedule : None, "constant", "step", "exponential", "cosine", a Schedule or callable
        epoch -> lr (>= 0; an epoch at lr 0 changes nothing). Checkpoints keep built-in
        Schedules; a plain callable must be given again to ``load_checkpoint``.
    l2 : float
        L2 penalty on the weights only (not biases), added to each batch's weight gradient
        as ``l2 / sum_w(batch) * W``: scikit-learn's ``alpha``. ``weight_decay`` is PyTorch's.
    l1 : float
        L1 penalty: ``l1 * sign(w)`` added to the gradient (the subgradient; the reported
        loss is the data loss alone).
    decay_biases : bool
        Whether the biases get the weight decay and the L1 penalty too (default: weights
        only, as most practice; torch.optim decays whatever parameters it is given).
    clip_norm : float or None
        Scale each step's whole gradient to a norm of at most clip_norm, as
        ``torch.nn.utils.clip_grad_norm_`` (after the penalties and ``clip_value``).
    clip_value : float or None
        Clamp each gradient entry to [-clip_value, clip_value] (``clip_grad_value_``).
    max_norm : float or None
        After each update, rescale each unit's incoming weights (a column of W) whose
        norm exceeds max_norm to that norm (Keras' MaxNorm; Srivastava et al. 2014).
    precision : None, the network's dtype name, or "bf16"
        "bf16" (float32 networks): every matrix product of training (forward, input
        gradients, dW) takes bfloat16 operands, rounded to nearest even as they are packed,
        and sums in float32 (``vdpbf16ps`` where the CPU has AVX512_BF16, else a portable
        emulation: ``fastbp.info()["bf16"]``); parameters, optimizer state, biases,
        activations and their derivatives, loss and softmax stay float32 (mixed precision:
        the float32 master weights are what is saved). None: the network's dtype.

    ``history`` holds every epoch this Trainer has trained (over all ``fit`` calls, and
    those before a checkpoint it was loaded from); ``epoch`` counts them.
    """

    def __init__(self, net, loss=None, optimizer="sgd", lr=None, momentum=0.0,
                 nesterov=False, weight_decay=None, batch_size=32, n_threads=None, seed=None,
                 lr_schedule=None, l2=0.0, l1=0.0, decay_biases=False, clip_norm=None,
                 clip_value=None, max_norm=None, precision=None):
        self.net = net
        self.loss = net.check_loss(loss)
        net.check_trainable()
        if isinstance(optimizer, _opt.Optimizer):
            self.optimizer = optimizer
        else:
            name = optimizer.lower() if isinstance(optimizer, str) else optimizer
            kwargs = {} if weight_decay is None else {"weight_decay": weight_decay}
            if lr is not None:
                kwargs["lr"] = lr
            allowed = _OPT_ARGS.get(name, ())
            for key, value, default in (("momentum", momentum, 0.0), ("nesterov", nesterov, False)):
                if key in allowed:
                    kwargs[key] = value
                elif value != default:
                    raise ValueError(f"{key}: the {optimizer!r} optimizer has no {key} setting")
            self.optimizer = _opt.get(name, **kwargs)
        self.batch_size = None if batch_size is None else check_positive_int(batch_size, "batch_size")
        self.n_threads = check_thread_count(n_threads, "n_threads", stacklevel=3)
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed
        rng = np.random.default_rng(seed)
        self._rng_state = np.array([rng.integers(0, 2**63)], dtype=np.uint64)   # shuffling
        self._dropout_seed = int(rng.integers(0, 2**63))                          # the masks
        self._schedule = _schedules.get(lr_schedule, self.optimizer.lr)
        self.history = History()
        self._initial_loss = None         # the first batch's loss (the loss-rise warning)
        self.l2 = check_number(l2, "l2", low=0)
        self.l1 = check_number(l1, "l1", low=0)
        self.decay_biases = bool(decay_biases)
        self.clip_norm, self.clip_value, self.max_norm = (
            None if v is None else check_number(v, name, low=0, low_open=True)
            for v, name in ((clip_norm, "clip_norm"), (clip_value, "clip_value"),
                            (max_norm, "max_norm")))
        self.precision = "bf16" if net._check_precision(precision) else net.dtype.name
        self._workspace = None        # reused by the next fit when the shape allows
        self._threads_policy = _ThreadsPolicy()
        self.stop_training = False
        self.epoch = 0

    # ---- helpers -----------------------------------------------------------------------
    def _prepare(self, X, y, name="X"):
        """X, targets, labels and max |X| (from the finiteness check of X)."""
        net = self.net
        X, xmax = as_float_matrix(X, net.dtype, name, n_columns=net.n_inputs, with_max=True,
                                  n_threads=self.n_threads)
        T, labels = targets_for_loss(y, self.loss, X.shape[0], net.n_outputs, net.dtype,
                                     "y" if name == "X" else f"{name} targets")
        return X, T, labels, xmax

    def _train_state(self, batch_size, n_threads):
        """The compiled state of one fit (its workspace reused from the last fit if the
        network, batch size and thread split are the same)."""
        net, ws = self.net, self._workspace
        shards = _engine.batch_shards(net.plan, batch_size, n_threads)
        if (ws is None or ws.plan is not net.plan or ws.capacity != batch_size
                or ws.dtype != net.dtype or ws.shards != shards):
            ws = self._workspace = _engine.Workspace(net.plan, batch_size, net.dtype, "train",
                                                     shards)
        self.optimizer.ensure_state(net.plan.n_params, net.dtype)
        return _engine.TrainState(
            net.plan, net.parameters, ws, self.optimizer.config(), self.optimizer.state,
            _losses.get(self.loss), batch_size=batch_size, n_threads=n_threads,
            count_correct=self.loss != "mse", l2=self.l2, rng=self._rng_state, l1=self.l1,
            decay_biases=self.decay_biases, clip_norm=self.clip_norm,
            clip_value=self.clip_value, max_norm=self.max_norm, running=net.running_stats,
            dropout_seed=self._dropout_seed, precision=self.precision)

    def _class_weights(self, class_weight, T, labels):
        """Each sample's class weight (n,), from a dict or "balanced"."""
        if self.loss == "mse":
            raise ValueError("class_weight needs a classification loss (cross_entropy or "
                             "binary_cross_entropy), this trainer's is 'mse'")
        k = self.net.n_outputs
        binary = self.loss == "binary_cross_entropy"
        if binary and k != 1:
            raise ValueError("class_weight with binary_cross_entropy needs one output "
                             f"(classes 0 and 1), this network has {k}")
        n_classes = 2 if binary else k
        if labels is not None:
            counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
        elif binary:
            counts = np.array([(1 - T[:, 0]).sum(), T[:, 0].sum()])
        else:
            counts = T.sum(axis=0, dtype=np.float64)
        if isinstance(class_weight, str):
            if class_weight != "balanced":
                raise ValueError(f"class_weight must be a dict or 'balanced', got "
                                 f"{class_weight!r}")
            present = counts > 0
            w = np.ones(n_classes)
            w[present] = counts.sum() / (present.sum() * counts[present])
        elif isinstance(class_weight, dict):
            w = np.ones(n_classes)
            for c, v in class_weight.items():
                if isinstance(c, bool) or not isinstance(c, (int, np.integer)) \
                        or not 0 <= c < n_classes:
                    raise ValueError(f"class_weight names class {c!r}, not one of this "
                                     f"network's classes 0..{n_classes - 1}")
                w[c] = check_number(v, f"class_weight[{c}]", low=0)
        else:
            raise TypeError(f"class_weight must be a dict or 'balanced', got {class_weight!r}")
        if labels is not None:
            return w[labels]
        if binary:
            return w[0] * (1 - T[:, 0]) + w[1] * T[:, 0]
        return T.astype(np.float64) @ w

    def evaluate(self, X, y):
        """(mean loss, accuracy or None) on (X, y), without training."""
        X, T, labels, _ = self._prepare(X, y)
        loss = self.net.loss(X, labels if labels is not None else T, loss=self.loss)
        return loss, self._accuracy(X, T, labels)

    def _accuracy(self, X, T, labels):
        if self.loss == "mse":
            return None
        out = self.net.predict(X)
        if self.loss == "binary_cross_entropy":
            return float(((out > 0.5) == (T > 0.5)).mean())
        want = labels if labels is not None else T.argmax(axis=1)
        return float((out.argmax(axis=1) == want).mean())

    # ---- training ----------------------------------------------------------------------
    def fit(self, X, y=None, epochs=10, validation_data=None, shuffle=True, verbose=False,
            callbacks=None, sample_weight=None, class_weight=None, catch_interrupt=False,
            shuffle_buffer=4):
        """Train for ``epochs`` epochs; returns the History of these epochs.

        ``X`` may also be a ``fastbp.data.ChunkedDataset`` or a re-iterable of
        (X_chunk, y_chunk) pairs, with ``y`` None: data larger than memory, read a chunk at
        a time; each epoch visits the chunks in a new order (if ``shuffle``), shuffling the
        rows of ``shuffle_buffer`` chunks at a time (see ``fastbp.data``).

        Raises TrainingDiverged (network at its last finite parameters) when the loss or a
        gradient becomes NaN/inf. With ``sample_weight`` each batch's loss and gradient are
        weighted means over its samples; ``class_weight`` (cross-entropy losses: a dict
        {class index: weight}, missing classes 1, or "balanced", n / (k * count) as
        scikit-learn's compute_class_weight) multiplies each sample's weight by its class's
        (a target row of probabilities: their mix). Warns (RuntimeWarning) when an epoch's loss rises
        to LOSS_RISE_WARNING times the lowest seen in this fit and above the loss this
        Trainer started training from: the lr is likely too large (a spike from near zero on
        a fitted training set is not).

        Ctrl-C stops within about a second, after the current chunk of batches, with the
        network and the History consistent (``interrupted=True``); the KeyboardInterrupt
        then goes on to the caller, unless ``catch_interrupt=True``, when ``fit`` returns the
        History instead. Whatever ends a fit early, the epochs it completed are in
        ``trainer.history`` and in the exception's ``history`` attribute.
        """
        epochs = check_positive_int(epochs, "epochs", minimum=0)
        source = _data.as_source(X) if y is None else None
        if source is not None:
            if sample_weight is not None or class_weight is not None:
                raise ValueError("sample_weight/class_weight: not with a chunked source")
            return self._fit_source(source, epochs, validation_data, shuffle, verbose,
                                    callbacks, catch_interrupt,
                                    check_positive_int(shuffle_buffer, "shuffle_buffer"))
        if y is None:
            raise TypeError("y: the targets are needed (or a chunked source as X)")
        net = self.net
        X, T, labels, xmax = self._prepare(X, y)
        sw = check_sample_weight(sample_weight, X.shape[0], net.dtype)
        if class_weight is not None:
            cw = self._class_weights(class_weight, T, labels)
            sw = check_sample_weight(cw if sw is None else sw * cw, X.shape[0], net.dtype,
                                     "sample_weight * class_weight")
        data = _engine.Samples(X, targets=T, labels=labels, sample_weight=sw, input_bound=xmax)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            val = self._prepare(*validation_data, name="validation_data")[:3]
        cbs = _callbacks.check_callbacks(callbacks)
        n = X.shape[0]
        bs = n if self.batch_size is None else min(self.batch_size, n)
        if net.plan.batch_norm and (bs == 1 or n % bs == 1):
            raise ValueError(f"batch_size: batch norm needs at least 2 samples per batch in "
                             f"training, and with {n} samples in batches of {bs} "
                             f"{'every' if bs == 1 else 'the last'} batch has 1; choose "
                             f"another batch_size")
        nt = self.n_threads or get_num_threads()
        state = self._train_state(bs, nt)
        chunks = _Chunks(math.ceil(n / bs), nt, self._threads_policy)
        history = History()
        self.stop_training = False
        bar = _progress(verbose, chunks.n_batches)
        lowest, warned = math.inf, False
        try:
            with _callbacks.running(cbs, self), num_threads(nt), blas_single_threaded():
                for epoch in range(epochs):
                    lr = float(self._schedule(self.epoch))
                    if not (lr >= 0 and math.isfinite(lr)):
                        raise ValueError(f"lr_schedule gave lr={lr!r} at epoch {self.epoch}")
                    state.begin_epoch(data, lr, bool(shuffle))
                    bar.start(epoch, epochs)
                    t0 = time.perf_counter()
                    first = self._train_epoch(state, data, chunks, bar, t0)
                    loss = state.loss_sum / state.weight_sum
                    lowest = min(lowest, first)
                    if self._initial_loss is None:
                        self._initial_loss = first
                    if (not warned and loss > LOSS_RISE_WARNING * lowest > 0
                            and loss > self._initial_loss):
                        warned = True
                        warnings.warn(f"training loss rose from {lowest:.4g} to {loss:.4g} in "
                                      f"epoch {self.epoch}: the learning rate ({lr:g}) is "
                                      "probably too large", RuntimeWarning, stacklevel=2)
                    lowest = min(lowest, loss)
                    logs = {"loss": loss,
                            "samples_per_second": state.samples / max(time.perf_counter() - t0,
                                                                      1e-12),
                            "lr": lr}
                    if self.loss != "mse":
                        logs["accuracy"] = state.correct / state.samples
                    if val is not None:
                        vX, vT, vL = val
                        logs["val_loss"] = net.loss(vX, vL if vL is not None else vT, loss=self.loss)
                        if self.loss != "mse":
                            logs["val_accuracy"] = self._accuracy(vX, vT, vL)
                    self._record(history, logs)
                    self._record(self.history, logs)
                    bar.end(logs)
                    logs["trainer"] = self
                    self.epoch += 1
                    for cb in cbs:
                        if cb(self.epoch - 1, logs):
                            self.stop_training = True
                    if cbs:                        # they may have changed the parameters,
                        state.parameters_changed()
                        data.input_bound = -1      # or X in place
                    if self.stop_training:
                        break
        except KeyboardInterrupt as e:
            history.interrupted = self.history.interrupted = True
            bar.close()
            print(f"fastbp: training interrupted at epoch {self.epoch}; the network keeps the "
                  "parameters of the last completed chunk of batches", file=sys.stderr)
            if not catch_interrupt:
                e.history = history
                raise
        except Exception as e:
            e.history = history
            raise
        finally:
            state.close()
            bar.close()
        return history

    def _fit_source(self, source, epochs, validation_data, shuffle, verbose, callbacks,
                    catch_interrupt, shuffle_buffer):
        """fit over a chunked source: per epoch the chunks in a seeded order, a buffer of
        shuffle_buffer chunks at a time (its rows shuffled), the next chunks read by a
        background thread while the buffer trains."""
        from concurrent.futures import ThreadPoolExecutor
        net = self.net
        val = None
        if validation_data is not None:
            val = self._prepare(*validation_data, name="validation_data")[:3]
        cbs = _callbacks.check_callbacks(callbacks)
        nt = self.n_threads or get_num_threads()
        bs = self.batch_size or 1 << 30
        history = History()
        self.stop_training = False
        bar = _SampleProgress(_progress(verbose, source.n_samples, unit="sample"))
        state = None
        try:
            with _callbacks.running(cbs, self), num_threads(nt), blas_single_threaded(), \
                    ThreadPoolExecutor(1, thread_name_prefix="fastbp-read") as reader:
                for epoch in range(epochs):
                    lr = float(self._schedule(self.epoch))
                    if not (lr >= 0 and math.isfinite(lr)):
                        raise ValueError(f"lr_schedule gave lr={lr!r} at epoch {self.epoch}")
                    bar.start(epoch, epochs)
                    sums, t0 = np.zeros(4), time.perf_counter()
                    for i, (Xb, yb) in enumerate(self._buffers(source, shuffle, shuffle_buffer,
                                                               reader)):
                        try:
                            Xb, T, labels, xmax = self._prepare(Xb, yb)
                        except (ValueError, TypeError) as e:
                            raise type(e)(f"chunk buffer {i} of epoch {self.epoch}: {e}") \
                                from None
                        data = _engine.Samples(Xb, targets=T, labels=labels, input_bound=xmax)
                        n = Xb.shape[0]
                        b = min(bs, n)
                        if net.plan.batch_norm and (b == 1 or n % b == 1):
                            raise ValueError(f"batch_size: batch norm needs at least 2 samples "
                                             f"per batch; buffer {i} has {n} rows")
                        if state is None or state.batch_size != b:
                            if state is not None:
                                state.close()
                            state = self._train_state(b, nt)
                        state.begin_epoch(data, lr, bool(shuffle))
                        bar.next_buffer(int(sums[3]), b, n, sums[:2])
                        self._train_epoch(state, data, _Chunks(-(-n // b), nt,
                                                               self._threads_policy), bar, t0)
                        sums += (state.loss_sum, state.weight_sum, state.correct,
                                 state.samples)
                        state.close()
                    if sums[3] == 0:
                        raise ValueError("the data source gave no rows")
                    logs = {"loss": sums[0] / sums[1],
                            "samples_per_second": sums[3] / max(time.perf_counter() - t0,
                                                                1e-12), "lr": lr}
                    if self.loss != "mse":
                        logs["accuracy"] = sums[2] / sums[3]
                    if val is not None:
                        vX, vT, vL = val
                        logs["val_loss"] = net.loss(vX, vL if vL is not None else vT,
                                                    loss=self.loss)
                        if self.loss != "mse":
                            logs["val_accuracy"] = self._accuracy(vX, vT, vL)
                    self._record(history, logs)
                    self._record(self.history, logs)
                    bar.end(logs)
                    logs["trainer"] = self
                    self.epoch += 1
                    for cb in cbs:
                        if cb(self.epoch - 1, logs):
                            self.stop_training = True
                    if self.stop_training:
                        break
        except KeyboardInterrupt as e:
            history.interrupted = self.history.interrupted = True
            if not catch_interrupt:
                e.history = history
                raise
        except Exception as e:
            e.history = history
            raise
        finally:
            if state is not None:
                state.close()
            bar.close()
        return history

    def _buffers(self, source, shuffle, per_buffer, reader):
        """(X, y) buffers of per_buffer chunks each, the chunks in a seeded order, the next
        chunk read ahead by ``reader``."""
        def read(i):
            return self._checked_chunk(i, *source.chunk(i))

        if isinstance(source, _data.ChunkedDataset):
            order = np.arange(source.n_chunks, dtype=np.int64)
            if shuffle and source.n_chunks > 1:
                _engine.shuffle(order, self._rng_state)
            pending = reader.submit(read, int(order[0]))
            parts = []
            for j in range(len(order)):
                chunk = pending.result()
                if j + 1 < len(order):
                    pending = reader.submit(read, int(order[j + 1]))
                parts.append(chunk)
                if len(parts) == per_buffer or j + 1 == len(order):
                    yield _concat(parts)
                    parts = []
        else:
            parts = []
            for i, chunk in enumerate(source):
                parts.append(self._checked_chunk(i, *chunk))
                if len(parts) == per_buffer:
                    yield _concat(parts)
                    parts = []
            if parts:
                yield _concat(parts)

    def _checked_chunk(self, i, X, y):
        """A chunk as read, its shape and values checked, errors naming it (chunk i of the
        source, in the source's own numbering, whatever the shuffled order)."""
        where = f"chunk {i} of the data source (epoch {self.epoch})"
        if X.ndim != 2 or X.shape[1] != self.net.n_inputs:
            raise ValueError(f"{where}: X has shape {X.shape}, the network takes "
                             f"{self.net.n_inputs} columns")
        if y is not None and len(y) != X.shape[0]:
            raise ValueError(f"{where}: X has {X.shape[0]} rows, y {len(y)}")
        if X.dtype.kind == "f" and X.size and X.flags.c_contiguous \
                and X.dtype in (np.float32, np.float64) \
                and not _max_abs(X, self.n_threads) < np.inf:
            bad = "NaN" if np.isnan(X).any() else "inf"
            raise ValueError(f"{where}: X contains {bad} values")
        return X, y

    def _train_epoch(self, state, data, chunks, bar, t0):
        """The epoch that ``state.begin_epoch`` started, in chunks of batches; returns the
        mean loss of its first chunk."""
        b, first = 0, None
        while b < chunks.n_batches:
            end, state.run_threads = chunks.next(b)
            tc = time.perf_counter()
            done = _engine.train_batches(state, data, b, end)
            if done.status != _engine.Status.OK:
                raise TrainingDiverged(self.epoch, done.failed_batch,
                                       "loss" if done.status == _engine.Status.LOSS_NOT_FINITE
                                       else "parameter update")
            chunks.record(time.perf_counter() - tc, done.samples, done.steps)
            if first is None:
                first = state.loss_sum / max(state.weight_sum, 1e-300)
            b = end
            bar.update(b, state.loss_sum / max(state.weight_sum, 1e-300),
                       state.samples / max(time.perf_counter() - t0, 1e-9))
        return first

    # ---- checkpoints and pickling ------------------------------------------------------
    def save_checkpoint(self, path):
        """Write everything that continuing this training needs, atomically and checksummed
        (the network file's container): the network, the optimizer (settings and state),
        the schedule, the epoch count, the shuffle's RNG state, the settings and History.

        ``Trainer.load_checkpoint(path)`` then continues bit for bit as this Trainer would
        (same n_threads). Written between epochs (callbacks, ``ModelCheckpoint``) or after
        ``fit``. Needs one of ``fastbp.optimizers``' classes; a plain callable lr_schedule
        is not stored (give it to ``load_checkpoint`` again).
        """
        net, opt = self.net, self.optimizer
        if type(opt) not in _opt.CLASSES:
            raise TypeError(f"save_checkpoint needs one of fastbp.optimizers' classes "
                            f"({', '.join(c.__name__ for c in _opt.CLASSES)}), got "
                            f"{type(opt).__name__}")
        opt.ensure_state(net.parameters.size, net.dtype)
        sched = self._schedule
        sched = sched.config() if type(sched) in _schedules.BUILTIN else None
        header = {
            "network": net._config(),
            "trainer": {"loss": self.loss, "batch_size": self.batch_size,
                        "n_threads": self.n_threads, "seed": self.seed, "l2": self.l2,
                        "l1": self.l1, "decay_biases": self.decay_biases,
                        "clip_norm": self.clip_norm, "clip_value": self.clip_value,
                        "max_norm": self.max_norm, "precision": self.precision,
                        "epoch": self.epoch, "rng_state": int(self._rng_state[0]),
                        "dropout_seed": self._dropout_seed},
            "optimizer": {"class": type(opt).__name__, "params": opt.get_params(),
                          "t": int(opt.state.t), "last_loss": float(opt.state.last_loss),
                          "buffers": list(opt.state.names)},
            "lr_schedule": sched,
            "history": self.history.to_dict(),
        }
        arrays = ([net.parameters] + [opt.state[name] for name in opt.state.names]
                  + [net.running_stats])
        _container.write(path, CHECKPOINT_MAGIC, CHECKPOINT_VERSION, header, arrays)

    @classmethod
    def load_checkpoint(cls, path, lr_schedule=None):
        """The Trainer (with its Network) that ``save_checkpoint`` wrote to ``path``; a
        corrupt or foreign file raises ValueError. ``lr_schedule`` replaces the stored one
        (it must be given when the saved one was a plain callable)."""
        _, h, raw = _container.read(path, CHECKPOINT_MAGIC, (CHECKPOINT_VERSION,), "checkpoint")
        try:
            cfg, tr, o = h["network"], h["trainer"], h["optimizer"]
            net = Network._from_config(cfg)
            P = net.parameters.size
            arrays = _container.split(path, raw, [(net.dtype, P)] * (1 + len(o["buffers"]))
                                      + [(np.float64, net.running_stats.size)])
            opt_cls = {c.__name__: c for c in _opt.CLASSES}[o["class"]]
            params = {k: tuple(v) if isinstance(v, list) else v for k, v in o["params"].items()}
            opt = opt_cls(**params)
            opt.state = _opt.OptimizerState(o["buffers"], P, net.dtype,
                                            dict(zip(o["buffers"], arrays[1:])), o["t"],
                                            o["last_loss"])
            if lr_schedule is None:
                if h["lr_schedule"] is None:
                    raise ValueError("the checkpoint's lr_schedule was a plain callable: pass "
                                     "it as lr_schedule=")
                lr_schedule = _schedules.from_config(h["lr_schedule"], opt.lr)
            trainer = cls(net, loss=tr["loss"], optimizer=opt, batch_size=tr["batch_size"],
                          n_threads=tr["n_threads"], seed=tr["seed"], lr_schedule=lr_schedule,
                          l2=tr["l2"], l1=tr["l1"], decay_biases=tr["decay_biases"],
                          clip_norm=tr["clip_norm"], clip_value=tr["clip_value"],
                          max_norm=tr["max_norm"], precision=tr.get("precision"))
            history = History.from_dict(h["history"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: invalid checkpoint header ({e!r})") from None
        net.parameters[...] = arrays[0]
        net.running_stats[...] = arrays[-1]
        trainer.epoch = tr["epoch"]
        trainer._rng_state[0] = tr["rng_state"]
        trainer._dropout_seed = tr["dropout_seed"]
        trainer.history = history
        return trainer

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_workspace"] = None      # scratch memory, made again by the next fit
        return state

    def _record(self, history, logs):
        history.epochs.append(self.epoch)
        history.loss.append(logs["loss"])
        history.samples_per_second.append(logs["samples_per_second"])
        history.lr.append(logs["lr"])
        for key in ("accuracy", "val_loss", "val_accuracy"):
            if key in logs:
                getattr(history, key).append(logs[key])


def _concat(parts):
    if len(parts) == 1:
        return parts[0]
    return (np.concatenate([np.asarray(x) for x, _ in parts]),
            np.concatenate([np.asarray(y) for _, y in parts]))


class _Chunks:
    """How many batches the next compiled call takes, and on how many threads.

    A fit's first call runs one batch on all threads, to time a step; later calls last
    about CHUNK_SECONDS, with the thread count from the _ThreadsPolicy (shared by the fits
    of a Trainer).
    """

    def __init__(self, n_batches, n_threads, policy):
        self.n_batches, self.n_threads, self.policy = n_batches, n_threads, policy
        self.steps, self.timing = 1, True
        self.cap = n_threads

    def next(self, first):
        """(end batch, threads) of the call starting at batch ``first``."""
        if self.timing:
            self.cap = self.n_threads
            return first + 1, self.cap
        steps = self.policy.steps_for_next_chunk(self.steps, self.n_threads)
        self.cap = self.policy.cap_for_next_chunk(self.n_threads)
        return min(self.n_batches, first + steps), self.cap

    def record(self, seconds, samples, steps):
        if not self.timing:   # the timing call's cold caches and fresh buffers: no probe
            self.policy.record(self.cap, self.n_threads, seconds, samples, steps)
        self.timing = False
        self.steps = _chunk_steps(seconds / max(steps, 1), self.n_batches)


class _ThreadsPolicy:
    """Runs n_threads threads, or 1 when that is faster (other processes on the cores).

    Every `every` chunks, one chunk runs with all threads and the next, of as many batches
    but no more than PROBE_SECONDS take at the n-thread pace, with one; the faster per
    sample wins until the next probe, if it beats the current choice by PROBE_MARGIN (a
    shared machine's chunks differ by 20% from noise alone; a busy core makes n threads
    several times slower). The probe is short so that it costs little when 1 thread is the
    slower. The first timed chunk of a Trainer is not used: it pays for starting the
    threads and first touching the buffers (bench/README.md has the measurements behind
    these choices). Each probe that confirms the choice doubles the interval (PROBE_EVERY up to
    PROBE_EVERY_MAX), a changed choice resets it, so a probe misled by a burst of load is
    soon corrected while a settled choice costs little. The work is split by n_threads
    either way, so the weights do not depend on the choice.
    """

    def __init__(self):
        self.count, self.best, self.times, self.probe_steps = 0, None, {}, None
        self.every = PROBE_EVERY
        self.warm = False

    def cap_for_next_chunk(self, nt):
        if nt <= 1 or not _engine.openmp_enabled():
            return 1
        if self.count == 0:
            return nt
        if self.count == 1:
            return 1
        return self.best or nt

    def steps_for_next_chunk(self, steps, nt):
        """The 1-thread probe's batches (set when the n-thread chunk was timed; a probe cut
        to less than half by the epoch's end is not used)."""
        if nt > 1 and self.count == 1 and self.probe_steps:
            return self.probe_steps
        return steps

    def record(self, cap, nt, seconds, samples, steps):
        if nt <= 1 or (self.count == 0 and steps < 4 and seconds < 0.02):
            return        # too short to time (e.g. the first, one-batch chunk of a fit)
        if not self.warm:
            self.warm = True
            return        # the cold first chunk: the next one is timed instead
        if self.count == 0:
            self.times[nt] = seconds / max(samples, 1)
            per_step = seconds / max(steps, 1)
            self.probe_steps = max(1, min(steps, math.ceil(PROBE_SECONDS / max(per_step, 1e-9))))
        elif self.count == 1:
            if 2 * steps < self.probe_steps:
                self.count = 0   # cut short by the epoch's end: the next chunk probes anew
                return
            self.times[1] = seconds / max(samples, 1)
            cur = self.best or nt
            other = 1 if cur == nt else nt
            best = other if self.times[other] < PROBE_MARGIN * self.times[cur] else cur
            self.every = min(2 * self.every, PROBE_EVERY_MAX) if best == self.best \
                else PROBE_EVERY
            self.best = best
        self.count = (self.count + 1) % self.every


# ---- progress --------------------------------------------------------------------------

def _progress(verbose, total, unit="batch"):
    """A progress bar over ``total`` units (None: unknown) per epoch."""
    if not verbose:
        return _NoBar()
    try:
        import tqdm  # noqa: F401
        return _TqdmBar(total, unit)
    except ImportError:
        return _PlainBar(total, unit)


class _SampleProgress:
    """A streamed epoch's bar in samples: the buffers' batches counted on from the
    samples of the buffers before, the loss the epoch's running mean."""

    def __init__(self, bar):
        self.bar, self.before, self.batch, self.rows, self.sums = bar, 0, 1, 0, (0.0, 0.0)

    def start(self, epoch, epochs):
        self.bar.start(epoch, epochs)

    def next_buffer(self, before, batch, rows, sums):
        self.before, self.batch, self.rows, self.sums = before, batch, rows, tuple(sums)

    def update(self, done, loss, rate):
        self.bar.update(self.before + min(done * self.batch, self.rows), loss, rate)

    def end(self, logs):
        self.bar.end(logs)

    def close(self):
        self.bar.close()


class _NoBar:
    def start(self, epoch, epochs):
        pass

    def update(self, done, loss, rate):
        pass

    def end(self, logs):
        pass

    def close(self):
        pass


def _summary(logs):
    parts = [f"loss={logs['loss']:.4f}"]
    for key in ("accuracy", "val_loss", "val_accuracy"):
        if key in logs:
            parts.append(f"{key}={logs[key]:.4f}")
    parts.append(f"{logs['samples_per_second']:,.0f} samples/s")
    return " ".join(parts)


class _PlainBar(_NoBar):
    """A text progress line on stderr, redrawn per chunk of batches."""

    def __init__(self, total, unit="batch", width=30):
        self.n, self.unit, self.width = total, unit, width

    def start(self, epoch, epochs):
        self.prefix = f"epoch {epoch + 1}"

    def update(self, done, loss, rate):
        if self.n:
            fill = int(self.width * min(done, self.n) / self.n)
            where = f"[{'#' * fill}{'.' * (self.width - fill)}] {done:,}/{self.n:,}"
        else:
            where = f"{done:,} {self.unit}s"
        sys.stderr.write(f"\r{self.prefix} {where} loss={loss:.4f} {rate:,.0f} samples/s")
        sys.stderr.flush()

    def end(self, logs):
        sys.stderr.write(f"\r{self.prefix}: {_summary(logs)}" + " " * 20 + "\n")
        sys.stderr.flush()


class _TqdmBar(_NoBar):
    def __init__(self, total, unit="batch"):
        self.n, self.unit, self.bar = total, unit, None

    def start(self, epoch, epochs):
        from tqdm import tqdm
        self.bar = tqdm(total=self.n, desc=f"epoch {epoch + 1}/{epochs}", unit=self.unit,
                        leave=True, file=sys.stderr)
        self.done = 0

    def update(self, done, loss, rate):
        self.bar.update(done - self.done)
        self.done = done
        self.bar.set_postfix_str(f"loss={loss:.4f} {rate:,.0f} samples/s", refresh=False)

    def end(self, logs):
        self.bar.set_postfix_str(_summary(logs), refresh=True)
        self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
