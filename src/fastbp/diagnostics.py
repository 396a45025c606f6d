"""Verify BP and look at gradient health: gradient checking, per-layer norms, saturation.

* :func:`fastbp.gradient_check` compares the BP gradients with central finite differences.
* :func:`gradient_norms` gives ``||dE/dW_l||`` per layer: the quickest look at vanishing
  (first layers' norms orders of magnitude below the last's) or exploding gradients.
* :func:`health` gives a per-layer table: gradient and weight norms, update/weight ratio,
  activation statistics, saturated and dead units.
* :class:`GradientNormRecorder` is a training callback recording the per-layer gradient
  norms on a fixed probe batch after every epoch.
"""
import numpy as np

from ._validation import as_float_matrix, check_dtype, check_number, check_positive_int
from .activations import LECUN_A
from .callbacks import Callback
from .network import Network

__all__ = ["gradient_check", "gradient_norms", "health", "HealthReport", "GradientNormRecorder"]


def gradient_check(net, X, Y, loss=None, eps=None, floor=1e-6, max_checks=None, seed=None,
                   return_details=False, training=False):
    """Compare BP gradients with float64 central finite differences.

    Returns ``max_i |g_bp - g_fd| / max(|g_bp|, |g_fd|, floor)`` over the checked entries of
    dW, db and dX. The check runs on a float64 copy of ``net`` (``eps`` defaults to 1e-6).
    With ``max_checks`` set, that many entries are sampled at random (per kind) instead of
    all of them. Perturbations across a kink (ReLU at 0, step) can give spurious errors.
    ``loss`` None: the output activation's (softmax: cross_entropy, sigmoid:
    binary_cross_entropy, else mse), as everywhere in fastbp. ``training=True`` checks the
    training pass: dropout with the fixed masks of ``seed`` (None: 0), batch norm with the
    statistics of X. ``seed`` also picks the sampled entries.

    Examples
    --------
    >>> import numpy as np
    >>> import fastbp
    >>> net = fastbp.Network([3, 4, 2], activation="tanh", output="sigmoid", seed=0)
    >>> X = np.random.default_rng(0).normal(size=(6, 3))
    >>> Y = np.random.default_rng(1).random((6, 2))
    >>> bool(fastbp.gradient_check(net, X, Y) < 1e-6)       # binary cross-entropy
    True
    """
    seed = 0 if seed is None else seed
    if not isinstance(net, Network):
        raise TypeError(f"net must be a fastbp.Network, got {type(net).__name__}")
    eps = 1e-6 if eps is None else float(eps)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    ref = net.copy(dtype="float64")
    name = ref.check_loss(loss)
    X = np.array(X, dtype=np.float64, copy=True)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    _, grads = ref.loss_and_gradients(X, Y, loss=name, inputs=True, training=training,
                                      seed=seed)
    rng = np.random.default_rng(seed)

    def pick(n):
        idx = np.arange(n)
        if max_checks is not None and n > max_checks:
            idx = rng.choice(n, size=max_checks, replace=False)
        return idx

    def relerr(bp, fd):
        return np.abs(bp - fd) / np.maximum(np.maximum(np.abs(bp), np.abs(fd)), floor)

    def central_differences(flat, idx):
        """(E(v + eps) - E(v - eps)) / 2 eps for each flat[i], i in idx (flat is a view)."""
        fd = np.empty(idx.size)
        for j, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + eps
            up = ref.loss(X, Y, loss=name, training=training, seed=seed)
            flat[i] = old - eps
            down = ref.loss(X, Y, loss=name, training=training, seed=seed)
            flat[i] = old
            fd[j] = (up - down) / (2 * eps)
        return fd

    idx = pick(ref.parameters.size)
    err_params = relerr(grads.flat[idx], central_differences(ref.parameters, idx))
    flatX = X.reshape(-1)
    xidx = pick(flatX.size)
    fdx = central_differences(flatX, xidx)
    err_inputs = relerr(grads.inputs.reshape(-1)[xidx], fdx)
    worst = float(max(err_params.max(initial=0), err_inputs.max(initial=0)))
    if return_details:
        return worst, {"params": err_params, "inputs": err_inputs}
    return worst


def _as_network(net, dtype=None):
    if not isinstance(net, Network):
        raise TypeError(f"net must be a fastbp.Network, got {type(net).__name__}")
    if dtype is not None:
        if check_dtype(dtype) != net.dtype:
            return net.copy(dtype=dtype)
    return net


def gradient_norms(net, X, Y, loss=None, dtype=None):
    """Frobenius norm of dE/dW for each layer, input layer first.

    ``E`` is the mean loss over the rows of X (the gradients of ``net.loss_and_gradients``).
    A ratio ``norms[0] / norms[-1]`` many orders of magnitude below 1 is the vanishing-gradient
    signature of deep sigmoid networks with small weights; far above 1, exploding gradients.

    Parameters
    ----------
    net : Network
    X, Y : the probe batch and its targets (as for ``net.loss_and_gradients``)
    loss : str or None
        None: the output activation's (as ``net.loss_and_gradients``).
    dtype : None, "float32" or "float64"
        Compute on a copy of the network in this dtype. Vanishing gradients of deep
        networks can underflow float32 (they print as 0.0); ``dtype="float64"`` shows
        their actual size.

    Returns
    -------
    list of float, one per layer.
    """
    net = _as_network(net, dtype)
    _, grads = net.loss_and_gradients(X, Y, loss=loss, inputs=False)
    return [float(np.linalg.norm(g.astype(np.float64))) for g in grads.weights]


# ---- health ------------------------------------------------------------------------------

#: |output| above which a unit counts as saturated (fraction of the activation's range)
SATURATION = 0.97
_SATURATING = {"tanh": lambda a: np.abs(a) > SATURATION,
               "lecun_tanh": lambda a: np.abs(a) > SATURATION * LECUN_A,
               "sigmoid": lambda a: (a < 1 - SATURATION) | (a > SATURATION),
               "softsign": lambda a: np.abs(a) > SATURATION}
_RELU_LIKE = ("relu",)

_COLUMNS = [("layer", "layer", "{}"), ("shape", "shape", "{}"), ("activation", "activation", "{}"),
            ("grad_norm", "grad norm", "{:.3g}"), ("bias_grad_norm", "bias grad norm", "{:.3g}"),
            ("weight_norm", "weight norm", "{:.3g}"), ("update_ratio", "update ratio", "{:.3g}"),
            ("act_mean", "act mean", "{:.3f}"), ("act_std", "act std", "{:.3f}"),
            ("saturated_pct", "saturated %", "{:.1f}"), ("dead_pct", "dead %", "{:.1f}")]


class HealthReport(list):
    """The list of per-layer dicts returned by :func:`health`, printable as a table.

    ``str(report)`` is a fixed-width text table, ``report.to_markdown()`` a Markdown table;
    columns that no layer has (``update_ratio`` without ``lr``, ``dead_pct`` without ReLU
    layers, ...) are left out, and a layer without a column's entry shows ``-``.
    """

    def _columns(self):
        return [c for c in _COLUMNS if any(c[0] in row for row in self)]

    def _cells(self):
        cols = self._columns()
        head = [title for _, title, _ in cols]
        body = []
        for row in self:
            cells = []
            for key, _, fmt in cols:
                value = row.get(key)
                if value is None:
                    cells.append("-")
                elif key == "shape":
                    cells.append("x".join(str(s) for s in value))
                else:
                    cells.append(fmt.format(value))
            body.append(cells)
        return head, body

    def to_markdown(self):
        """The table in GitHub Markdown."""
        head, body = self._cells()
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)

    def __str__(self):
        head, body = self._cells()
        widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
        fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
        lines = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(cells) for cells in body]
        notes = self.warnings()
        return "\n".join(lines + [f"warning: {n}" for n in notes])

    def gradient_ratio(self):
        """``grad_norm`` of the first layer over that of the last (``nan`` if the last is 0)."""
        if not self:
            return float("nan")
        last = self[-1]["grad_norm"]
        return self[0]["grad_norm"] / last if last > 0 else float("nan")

    def warnings(self, saturated=50.0, dead=50.0, ratio=1e-3, update=(1e-5, 1e-1)):
        """Plain-language warnings: saturated or dead layers (above ``saturated`` / ``dead``
        percent), a first/last gradient ratio below ``ratio`` (vanishing) or above
        ``1/ratio`` (exploding), update/weight ratios outside ``update``."""
        out, off = [], []
        for row in self:
            tag = f"layer {row['layer']} ({row['activation']})"
            if row.get("saturated_pct", 0) > saturated:
                out.append(f"{tag}: {row['saturated_pct']:.0f}% of the outputs are saturated")
            if row.get("dead_pct", 0) > dead:
                out.append(f"{tag}: {row['dead_pct']:.0f}% of the units are dead (never active)")
            r = row.get("update_ratio")
            if r is not None and not update[0] <= r <= update[1]:
                off.append(f"{row['layer']} ({r:.2g})")
        if off:
            out.append(f"update/weight ratio outside [{update[0]:g}, {update[1]:g}] in layer(s) "
                       + ", ".join(off))
        g = self.gradient_ratio()
        if len(self) > 1 and np.isfinite(g):
            if g < ratio:
                out.append(f"vanishing gradients: |dW| of the first layer is {g:.2g} times "
                           "that of the last")
            elif g > 1 / ratio:
                out.append(f"exploding gradients: |dW| of the first layer is {g:.2g} times "
                           "that of the last")
        elif len(self) > 1 and self[0]["grad_norm"] == 0 == self[-1]["grad_norm"]:
            out.append("all gradients are zero")
        return out


def health(net, X, Y, loss=None, lr=None, dtype=None):
    """Per-layer health table of a network on a batch (a list of dicts, one per layer).

    Each row has

    * ``layer`` (0 = first weight layer), ``shape`` of W, ``activation``;
    * ``grad_norm`` = ``||dE/dW||`` (Frobenius), ``bias_grad_norm`` = ``||dE/db||``,
      ``weight_norm`` = ``||W||``;
    * ``update_ratio`` = ``lr * ||dE/dW|| / ||W||`` when ``lr`` is given: the relative size
      of one plain SGD step (about 1e-3 is the usual healthy value; ``inf`` when W is 0);
    * ``act_mean``, ``act_std``: mean and standard deviation of the layer's outputs
      ``f(z W + b)`` (batch norm in evaluation mode, no dropout, as ``predict``) over all
      units and rows of X;
    * ``saturated_pct`` (sigmoid, tanh, LeCun tanh, softsign layers): percentage of
      outputs in the flat tails, ``|tanh| > 0.97``, sigmoid ``< 0.03`` or ``> 0.97``,
      ``|lecun_tanh| > 0.97 * 1.7159``, ``|softsign| > 0.97``;
    * ``dead_pct`` (ReLU layers): percentage of units whose output is 0 on every row of X.

    The activations are the network's forward pass (``hidden_activations``, ``predict``),
    the gradients its BP (both in ``dtype`` when given, see :func:`gradient_norms`). The returned
    :class:`HealthReport` is a list; ``print(report)`` shows it as a table with warnings,
    ``report.to_markdown()`` gives Markdown.
    """
    net = _as_network(net, dtype)
    X = as_float_matrix(X, net.dtype, "X", n_columns=net.n_inputs)
    if lr is not None:
        lr = check_number(lr, "lr", low=0, low_open=True)
    _, grads = net.loss_and_gradients(X, Y, loss=loss, inputs=False)
    rows, L = HealthReport(), len(net.weights)
    for i, (W, b, name) in enumerate(zip(net.weights, net.biases, net.activations)):
        W64 = W.astype(np.float64)
        a = (net.hidden_activations(X, i + 1) if i < L - 1 else net.predict(X)).astype(np.float64)
        gn = float(np.linalg.norm(grads.weights[i].astype(np.float64)))
        wn = float(np.linalg.norm(W64))
        row = {"layer": i, "shape": tuple(W.shape), "activation": name, "grad_norm": gn,
               "bias_grad_norm": float(np.linalg.norm(grads.biases[i].astype(np.float64))),
               "weight_norm": wn}
        if lr is not None:
            row["update_ratio"] = lr * gn / wn if wn > 0 else float("inf")
        row["act_mean"], row["act_std"] = float(a.mean()), float(a.std())
        if name in _SATURATING:
            row["saturated_pct"] = 100 * float(_SATURATING[name](a).mean())
        if name in _RELU_LIKE:
            row["dead_pct"] = 100 * float((a.max(axis=0) <= 0).mean())
        rows.append(row)
    return rows


# ---- callback ----------------------------------------------------------------------------

class GradientNormRecorder(Callback):
    """Record the per-layer gradient norms on a fixed probe batch during training.

    After every ``every``-th epoch (epochs 0, every, 2*every, ... of the trainer's count)
    it computes ``gradient_norms(net, X, Y, loss)`` and appends the list (one float per
    layer, input layer first) to ``history``, the epoch to ``epochs``, and puts it into the
    epoch's ``logs`` under ``key`` (so later callbacks see it).

    Parameters
    ----------
    X, Y : the probe batch and its targets, fixed for the whole run
    loss : str or None
        None: the trainer's loss.
    every : int
        Record every ``every`` epochs.
    dtype : None or "float64"
        Compute on a copy in this dtype (see :func:`~fastbp.diagnostics.gradient_norms`).
    initial : bool
        Also record the norms before the first epoch, in ``initial_norms``.

    Attributes
    ----------
    history : list of lists of float
    epochs : list of int
    initial_norms : list of float or None

    The records accumulate over successive ``fit`` calls; ``reset()`` clears them.

    Examples
    --------
    >>> rec = GradientNormRecorder(X[:256], y[:256])              # doctest: +SKIP
    >>> trainer.fit(X, y, epochs=20, callbacks=[rec])             # doctest: +SKIP
    >>> fastbp.plots.plot_gradient_norms(rec.history, "norms.png")  # doctest: +SKIP
    """

    def __init__(self, X, Y, loss=None, every=1, dtype=None, initial=False, key="grad_norms"):
        self.X, self.Y, self.loss = X, Y, loss
        self.every = check_positive_int(every, "every")
        self.dtype, self.initial, self.key = dtype, bool(initial), key
        self.reset()

    def reset(self):
        """Forget what was recorded (``history``, ``epochs``, ``initial_norms``)."""
        self.history, self.epochs, self.initial_norms = [], [], None

    def _norms(self, trainer):
        loss = self.loss if self.loss is not None else trainer.loss
        return gradient_norms(trainer.net, self.X, self.Y, loss=loss, dtype=self.dtype)

    def on_train_begin(self, trainer):
        self.X = as_float_matrix(self.X, trainer.net.dtype, "X", n_columns=trainer.net.n_inputs)
        if self.initial and self.initial_norms is None:
            self.initial_norms = self._norms(trainer)

    def on_epoch_end(self, epoch, logs):
        if epoch % self.every == 0:
            norms = self._norms(logs["trainer"])
            self.history.append(norms)
            self.epochs.append(epoch)
            logs[self.key] = norms
        return False
