"""Figures: activation functions, training curves, gradient norms across depth, demo plots.

matplotlib is optional (``pip install fastbp[plot]``) and imported only when a function
here is called. Figures are drawn with matplotlib's object API on the Agg canvas, so they
never open a window and never change pyplot's global backend. Every function writes a PNG
file (the parent folder is created when missing) and returns its path.
"""
import math
import os

import numpy as np

from . import activations
from .diagnostics import health

__all__ = ["plot_activations", "plot_history", "plot_gradient_norms", "demo_figures"]

_HINT = "fastbp.plots needs matplotlib: pip install fastbp[plot] (or pip install matplotlib)"


def _figure(nrows=1, ncols=1, size=(5.0, 3.6)):
    """A matplotlib Figure on an Agg canvas and its (nrows, ncols) array of axes."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(_HINT) from e
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save(fig, path, dpi=110):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


# ---- activation functions ---------------------------------------------------------------

def plot_activations(path, x_range=(-5.0, 5.0)):
    """Activation functions and their derivatives, as in the BP notes.

    Top row: the sigmoid family (sigmoid, tanh, LeCun's 1.7159 tanh(2x/3)) and their
    derivatives: sigmoid's derivative peaks at 0.25, tanh's at 1, so gradients shrink less
    through tanh layers; both vanish in the saturated tails. Bottom row: the ReLU family
    (ReLU, leaky ReLU, ELU, softplus, SiLU, GELU) and their derivatives.
    """
    x = np.linspace(float(x_range[0]), float(x_range[1]), 801)
    fig, ax = _figure(2, 2)
    families = [("sigmoid family", ["sigmoid", "tanh", "lecun_tanh"]),
                ("ReLU family", ["relu", "leaky_relu", "elu", "softplus", "silu", "gelu"])]
    for row, (title, names) in enumerate(families):
        for name in names:
            act = activations.get(name)
            ax[row, 0].plot(x, act.forward(x), label=name)
            ax[row, 1].plot(x, act.derivative(x), label=name)
        ax[row, 0].set_title(f"{title}: f(x)")
        ax[row, 1].set_title(f"{title}: f'(x)")
        for a in ax[row]:
            a.axhline(0, color="0.7", lw=0.6)
            a.axvline(0, color="0.7", lw=0.6)
            a.set_xlabel("x")
            a.grid(alpha=0.3)
            a.legend(fontsize=8)
    ax[0, 1].annotate("max 0.25", xy=(0, 0.25), xytext=(1.5, 0.45),
                      arrowprops={"arrowstyle": "->", "lw": 0.7}, fontsize=8)
    return _save(fig, path)


# ---- training curves --------------------------------------------------------------------

def _series(history, key):
    if isinstance(history, dict):
        return list(history.get(key) or [])
    return list(getattr(history, key, None) or [])


def plot_history(history, path, title=None):
    """Training curves of a ``fastbp.History`` (or a dict of lists): loss and val_loss,
    and, when recorded, accuracy and val_accuracy, against the epoch."""
    loss, val_loss = _series(history, "loss"), _series(history, "val_loss")
    acc, val_acc = _series(history, "accuracy"), _series(history, "val_accuracy")
    if not loss and not val_loss:
        raise ValueError("history has no loss values to plot")
    panels = 2 if (acc or val_acc) else 1
    fig, ax = _figure(1, panels)
    for values, label in ((loss, "training loss"), (val_loss, "validation loss")):
        if values:
            ax[0, 0].plot(np.arange(1, len(values) + 1), values, marker=".", label=label)
    ax[0, 0].set_ylabel("loss")
    if min(loss + val_loss) > 0 and max(loss + val_loss) / min(loss + val_loss) > 30:
        ax[0, 0].set_yscale("log")
    if panels == 2:
        for values, label in ((acc, "training accuracy"), (val_acc, "validation accuracy")):
            if values:
                ax[0, 1].plot(np.arange(1, len(values) + 1), values, marker=".", label=label)
        ax[0, 1].set_ylabel("accuracy")
    for a in ax[0]:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# ---- gradient norms ---------------------------------------------------------------------

def _positive(values):
    """For log axes: non-positive and non-finite values become NaN (gaps in the curves)."""
    arr = np.array(values, dtype=np.float64)
    arr[~(arr > 0) | ~np.isfinite(arr)] = np.nan
    return arr


def plot_gradient_norms(norms_per_epoch, path, epochs=None, title=None, max_curves=10):
    """Per-layer gradient norms across depth and epochs, on log scales.

    Parameters
    ----------
    norms_per_epoch : list of lists (n_records, n_layers), or a GradientNormRecorder
        ``||dE/dW_l||`` per recorded epoch, input layer first (``GradientNormRecorder.history``).
    path : output PNG
    epochs : epoch number of each record (default: the recorder's ``epochs``, or 0, 1, ...)
    max_curves : at most this many epochs are drawn in the across-depth panel

    Left panel: norm against layer, one curve per epoch (vanishing gradients show as a
    curve rising steeply towards the output). Right panel (with two or more records): each
    layer's norm against the epoch.
    """
    if hasattr(norms_per_epoch, "history"):
        if epochs is None:
            epochs = getattr(norms_per_epoch, "epochs", None)
        norms_per_epoch = norms_per_epoch.history
    norms = np.array(norms_per_epoch, dtype=np.float64)
    if norms.ndim == 1:
        norms = norms[None, :]
    if norms.ndim != 2 or norms.size == 0:
        raise ValueError("norms_per_epoch must be a non-empty list of per-layer norm lists, "
                         f"got shape {norms.shape}")
    n_rec, n_layers = norms.shape
    epochs = np.arange(n_rec) if epochs is None or len(epochs) != n_rec else np.asarray(epochs)
    values = _positive(norms)
    fig, ax = _figure(1, 2 if n_rec > 1 else 1)
    from matplotlib import colormaps            # optional dependency: imported on call
    cmap = colormaps["viridis"]
    picks = np.unique(np.linspace(0, n_rec - 1, min(n_rec, max_curves)).round().astype(int))
    layers = np.arange(n_layers)
    for k, i in enumerate(picks):
        color = cmap(k / max(len(picks) - 1, 1))
        ax[0, 0].plot(layers, values[i], marker="o", ms=3, color=color,
                      label=f"epoch {epochs[i]}")
    ax[0, 0].set_xlabel("layer (0 = input side)")
    ax[0, 0].set_ylabel("||dE/dW||")
    ax[0, 0].set_title("gradient norm across depth")
    from matplotlib.ticker import MaxNLocator
    ax[0, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    if n_rec > 1:
        for l in layers:
            ax[0, 1].plot(epochs, values[:, l], color=cmap(l / max(n_layers - 1, 1)),
                          label=f"layer {l}" if n_layers <= 12 or l in (0, n_layers - 1) else None)
        ax[0, 1].set_xlabel("epoch")
        ax[0, 1].set_ylabel("||dE/dW||")
        ax[0, 1].set_title("gradient norm per layer during training")
    for a in ax[0]:
        if np.isfinite(values).any():
            a.set_yscale("log")
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# ---- demo ------------------------------------------------------------------------------

def _loss_and_targets(net, y):
    """A loss fitting the network's output and y, with y in the form it needs (or None)."""
    y = np.asarray(y)
    out = net.activations[-1]
    k = net.n_outputs
    if out == "softmax":
        return "cross_entropy", y
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer) and k > 1:
        if y.min() < 0 or y.max() >= k:
            return None, None
        y = np.eye(k, dtype=net.dtype)[y]
    if out == "sigmoid" and y.min() >= 0 and y.max() <= 1:
        return "binary_cross_entropy", y
    return "mse", y


def _plot_confusion(net, X, y, path):
    y = np.asarray(y)
    k = net.n_outputs
    pred = net.predict(X).argmax(axis=1)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    fig, ax = _figure(1, 1, size=(5.0, 4.4))
    a = ax[0, 0]
    im = a.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                a.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                       color="white" if cm[i, j] > cm.max() / 2 else "black")
    a.set_xticks(range(k))
    a.set_yticks(range(k))
    a.set_xlabel("predicted class")
    a.set_ylabel("true class")
    a.set_title(f"test confusion matrix (accuracy {np.trace(cm) / max(cm.sum(), 1):.2%})")
    fig.colorbar(im, ax=a, shrink=0.8)
    return _save(fig, path)


def _plot_layers(net, X, y, path):
    loss, target = _loss_and_targets(net, y)
    rows = health(net, X, target, loss=loss)
    layers = [r["layer"] for r in rows]
    fig, ax = _figure(1, 3, size=(4.0, 3.4))
    ax[0, 0].bar(layers, _positive([r["grad_norm"] for r in rows]), color="tab:red")
    ax[0, 0].set_yscale("log")
    ax[0, 0].set_title(f"||dE/dW|| on the test set ({loss})")
    ax[0, 1].bar(layers, [r["weight_norm"] for r in rows], color="tab:blue")
    ax[0, 1].set_title("||W||")
    ax[0, 2].bar(layers, [r["act_std"] for r in rows], color="tab:green")
    ax[0, 2].set_title("std of the layer's outputs")
    for a in ax[0]:
        a.set_xlabel("layer (0 = input side)")
        a.set_xticks(layers)
        a.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def _plot_first_layer(net, path, max_units=64):
    side = math.isqrt(net.n_inputs)
    W = np.asarray(net.weights[0], dtype=np.float64)
    n = min(W.shape[1], max_units)
    cols = min(8, n)
    rows = math.ceil(n / cols)
    mosaic = np.full((rows * (side + 1) - 1, cols * (side + 1) - 1), np.nan)
    for u in range(n):                           # one tile per hidden unit, NaN gaps
        r, c = divmod(u, cols)
        mosaic[r * (side + 1):r * (side + 1) + side,
               c * (side + 1):c * (side + 1) + side] = W[:, u].reshape(side, side)
    fig, ax = _figure(1, 1, size=(0.2 + 0.75 * cols, 0.4 + 0.75 * rows))
    lim = np.abs(W[:, :n]).max() or 1.0
    im = ax[0, 0].imshow(mosaic, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax[0, 0].set_axis_off()
    fig.colorbar(im, ax=ax[0, 0], shrink=0.8)
    ax[0, 0].set_title(f"incoming weights of {n} first-layer units ({side}x{side} inputs)",
                       fontsize=9)
    return _save(fig, path)


def demo_figures(net, history, X_test, y_test, outdir):
    """The figures of ``fastbp demo --plots DIR``; returns the list of PNG paths written.

    * ``training_curves.png``: loss / accuracy per epoch (:func:`plot_history`);
    * ``confusion_matrix.png``: test confusion matrix (classifiers with integer labels);
    * ``layers.png``: per-layer gradient norm, weight norm and output std of the trained
      network on the test set (:func:`fastbp.diagnostics.health`);
    * ``first_layer_weights.png``: each hidden unit's incoming weights as an image (when
      the number of inputs is a perfect square, e.g. the 8x8 digits);
    * ``activations.png``: activation functions and their derivatives
      (:func:`plot_activations`).

    ``outdir`` is created when missing.
    """
    _figure()                                 # ImportError with the install hint, early
    outdir = os.fspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    paths = [plot_history(history, os.path.join(outdir, "training_curves.png"))]
    y = np.asarray(y_test)
    if (net.n_outputs > 1 and y.ndim == 1 and np.issubdtype(y.dtype, np.integer)
            and y.size and y.min() >= 0 and y.max() < net.n_outputs):
        paths.append(_plot_confusion(net, X_test, y, os.path.join(outdir, "confusion_matrix.png")))
    loss, _ = _loss_and_targets(net, y)
    if loss is not None:
        paths.append(_plot_layers(net, X_test, y, os.path.join(outdir, "layers.png")))
    if math.isqrt(net.n_inputs) ** 2 == net.n_inputs and net.n_inputs >= 4:
        paths.append(_plot_first_layer(net, os.path.join(outdir, "first_layer_weights.png")))
    paths.append(plot_activations(os.path.join(outdir, "activations.png")))
    return paths
