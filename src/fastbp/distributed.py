"""Data-parallel training over MPI (mpi4py): one model, its batches shared by the processes.

    # mpiexec -n 4 python train.py
    from mpi4py import MPI
    from fastbp.distributed import DataParallelTrainer
    trainer = DataParallelTrainer(net, comm=MPI.COMM_WORLD, batch_size=512, lr=0.1)
    trainer.fit(X, y, epochs=10)          # every process holds X, y (or the same memmap)

Every process shuffles the rows with the same seeded generator; each global batch of
``batch_size`` rows is cut in ``world`` consecutive shares, one per process (rank r takes
rows [nb*r/world, nb*(r+1)/world)). A process computes its share's gradient scaled by one
over the global batch's weight sum, so one in-place ``Allreduce`` (sum) of the flat gradient
buffer per step gives every process the global batch's mean gradient; each then applies the
same update to the same parameters. The result equals one process training with the global
batch, to float rounding (dropout masks are those of the global batch's rows; batch norm,
as PyTorch's DistributedDataParallel without SyncBatchNorm, normalizes each share with its
own statistics, and the running statistics are averaged over the processes after each
epoch). With ``average_every=k`` > 1 (local SGD) each process steps on its own
share's mean gradient and the parameters are averaged every k steps instead.

Only rank 0 writes files (``save_checkpoint``; ``ModelCheckpoint`` callbacks run on rank 0
only; a resumed run loads the same checkpoint on every process); an exception in any
process prints its error and aborts all of them (``comm.Abort``), never a hang.
mpi4py is optional (``pip install mpi4py mpich``).
"""
import sys
import time
import traceback

import numpy as np

from . import _engine
from ._validation import check_positive_int, check_sample_weight
from .trainer import History, Trainer, TrainingDiverged

__all__ = ["DataParallelTrainer"]


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("fastbp.distributed needs mpi4py (and an MPI): pip install mpi4py "
                          "mpich") from None
    return MPI


class DataParallelTrainer(Trainer):
    """A Trainer whose batches are shared by the processes of ``comm`` (default
    ``MPI.COMM_WORLD``); the other arguments as ``fastbp.Trainer`` (``batch_size`` is the
    global batch). The processes start from rank 0's parameters and seed."""

    def __init__(self, net, *args, comm=None, average_every=1, **kwargs):
        MPI = _mpi()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.world = self.comm.Get_rank(), self.comm.Get_size()
        self.average_every = check_positive_int(average_every, "average_every")
        super().__init__(net, *args, **kwargs)
        if self.batch_size is not None and self.batch_size < self.world:
            raise ValueError(f"batch_size ({self.batch_size}) must be at least the number of "
                             f"processes ({self.world})")
        # one starting point: rank 0's parameters, statistics and generators
        self.comm.Bcast(net.parameters, root=0)
        self.comm.Bcast(net.running_stats, root=0)
        self.comm.Bcast(self._rng_state, root=0)
        self._dropout_seed = self.comm.bcast(self._dropout_seed, root=0)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("comm", None)
        return state

    def save_checkpoint(self, path):
        """Rank 0 writes the checkpoint (the others hold the same state and write nothing)."""
        if self.rank == 0:
            super().save_checkpoint(path)

    def _train_state(self, batch_size, n_threads):
        net, ws = self.net, self._workspace
        if (ws is None or ws.plan is not net.plan or ws.capacity != batch_size
                or ws.dtype != net.dtype or ws.shards != 1):
            ws = self._workspace = _engine.Workspace(net.plan, batch_size, net.dtype, "train", 1)
        self.optimizer.ensure_state(net.plan.n_params, net.dtype)
        return _engine.TrainState(
            net.plan, net.parameters, ws, self.optimizer.config(), self.optimizer.state,
            _losses_code(self.loss), batch_size=batch_size, n_threads=n_threads,
            count_correct=self.loss != "mse", l2=self.l2, rng=self._rng_state, l1=self.l1,
            decay_biases=self.decay_biases, clip_norm=self.clip_norm,
            clip_value=self.clip_value, max_norm=self.max_norm, running=net.running_stats,
            dropout_seed=self._dropout_seed, distributed=True, precision=self.precision)

    def fit(self, X, y, epochs=10, shuffle=True, verbose=False, callbacks=None,
            sample_weight=None, class_weight=None, validation_data=None):
        """Train for ``epochs`` epochs on the rows every process holds; returns the History
        (the same on every process). An exception anywhere aborts every process."""
        try:
            return self._fit(X, y, epochs, shuffle, verbose, callbacks, sample_weight,
                             class_weight, validation_data)
        except BaseException as e:
            if isinstance(e, TrainingDiverged):       # every process diverges together
                raise
            sys.stderr.write(f"fastbp.distributed: rank {self.rank} of {self.world} failed, "
                             f"aborting every process:\n{traceback.format_exc()}")
            sys.stderr.flush()
            self.comm.Abort(1)
            raise                                   # pragma: no cover - Abort does not return

    def _fit(self, X, y, epochs, shuffle, verbose, callbacks, sample_weight, class_weight,
             validation_data):
        from . import callbacks as _callbacks
        from ._config import blas_single_threaded, get_num_threads, num_threads
        MPI = _mpi()
        epochs = check_positive_int(epochs, "epochs", minimum=0)
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
            val = self._prepare(*validation_data, name="validation_data")[:3]
        cbs = _callbacks.check_callbacks(callbacks) if self.rank == 0 else \
            [cb for cb in _callbacks.check_callbacks(callbacks)
             if not isinstance(cb, _callbacks.ModelCheckpoint)]
        n = X.shape[0]
        bs = n if self.batch_size is None else min(self.batch_size, n)
        if bs < self.world:
            raise ValueError(f"batch_size: {bs} rows per batch for {self.world} processes")
        nt = self.n_threads or get_num_threads()
        state = self._train_state(bs, nt)
        grads = self._workspace.grads
        n_batches = -(-n // bs)
        history = History()
        self.stop_training = False
        local = self.average_every > 1
        sums = np.zeros(4)
        with _callbacks.running(cbs, self), num_threads(nt), blas_single_threaded():
            for _ in range(epochs):
                lr = float(self._schedule(self.epoch))
                state.begin_epoch(data, lr, bool(shuffle))
                t0 = time.perf_counter()
                sums[:] = 0
                reduce_s = 0.0
                for b in range(n_batches):
                    loss, wsum, corr, rows, gw = _engine.gradient_share(
                        state, data, b, self.rank, self.world)
                    tr = time.perf_counter()
                    if local:         # this process's own mean gradient
                        grads *= gw / wsum if wsum > 0 else 0.0
                        mean = loss / wsum if wsum > 0 else 0.0
                    else:             # the global batch's mean gradient, one call, in place
                        self.comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM)
                        mean = self.comm.allreduce(loss, op=MPI.SUM) / gw
                    reduce_s += time.perf_counter() - tr
                    status = _engine.apply_update(state, data, b, wsum if local else gw, mean)
                    if status != _engine.Status.OK:
                        raise TrainingDiverged(self.epoch, b, "parameter update")
                    if local and ((b + 1) % self.average_every == 0 or b == n_batches - 1):
                        tr = time.perf_counter()
                        self.comm.Allreduce(MPI.IN_PLACE, net.parameters, op=MPI.SUM)
                        net.parameters[...] /= self.world
                        reduce_s += time.perf_counter() - tr
                    sums += (loss, wsum, corr, rows)
                self.comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)
                if net.running_stats.size:   # each share's batch-norm statistics: averaged
                    self.comm.Allreduce(MPI.IN_PLACE, net.running_stats, op=MPI.SUM)
                    net.running_stats[...] /= self.world
                logs = {"loss": sums[0] / sums[1],
                        "samples_per_second": sums[3] / max(time.perf_counter() - t0, 1e-12),
                        "lr": lr}
                if self.loss != "mse":
                    logs["accuracy"] = sums[2] / sums[3]
                if val is not None:
                    vX, vT, vL = val
                    logs["val_loss"] = net.loss(vX, vL if vL is not None else vT, loss=self.loss)
                    if self.loss != "mse":
                        logs["val_accuracy"] = self._accuracy(vX, vT, vL)
                self._record(history, logs)
                self._record(self.history, logs)
                history.extra.setdefault("reduce_seconds", []).append(reduce_s)
                logs["trainer"] = self
                self.epoch += 1
                stop = any([bool(cb(self.epoch - 1, logs)) for cb in cbs])
                stop = self.comm.allreduce(stop, op=MPI.LOR)
                if stop:
                    break
        return history


def _losses_code(name):
    from . import losses
    return losses.get(name)
