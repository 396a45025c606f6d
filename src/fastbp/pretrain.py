"""Greedy layer-wise autoencoder pretraining (Bengio, Lamblin, Popovici, Larochelle 2007).

Before deep networks could be trained from a random start, their hidden layers were first
trained one at a time, without labels, to reconstruct their own input ("Greedy Layer-Wise
Training of Deep Networks", NIPS 2006; Hinton & Salakhutdinov 2006 did the same with RBMs
in Deep Belief Networks; Vincent et al. 2008 added input corruption, "denoising"
autoencoders). The pretrained weights then serve as the initialization of supervised
fine-tuning, which in fastbp is just ``Trainer.fit``::

    net = fastbp.Network([64, 64, 64, 64, 10], activation="sigmoid", output="softmax")
    fastbp.pretrain_autoencoders(net, X, epochs=20, optimizer="adam", lr=1e-3)
    fastbp.Trainer(net, loss="cross_entropy").fit(X, y, epochs=50)

Good random initializations (``glorot_*``, ``he_*``, ``lsuv``) have made it rarely
necessary; ``examples/pretraining.py`` measures what it does on the digits data.
"""
import sys

import numpy as np

from . import initializers as _init
from ._validation import as_float_matrix, check_number, check_positive_int
from .network import Network
from .trainer import Trainer

__all__ = ["pretrain_autoencoders"]


def _decoder_for(decoder, z):
    if decoder != "auto":
        return decoder
    return "sigmoid" if z.size and z.min() >= 0 and z.max() <= 1 else "identity"


def _hidden_layers(layers, n_hidden):
    if layers is None:
        return list(range(n_hidden))
    out = []
    for l in layers:
        if isinstance(l, (bool, np.bool_)) or not isinstance(l, (int, np.integer)):
            raise TypeError(f"layers must contain ints, got {l!r}")
        if not 0 <= l < n_hidden:
            raise ValueError(f"layers: {l} is not a hidden layer; hidden layers are "
                             f"0..{n_hidden - 1} (the output layer is never pretrained)")
        out.append(int(l))
    return sorted(set(out))


def pretrain_autoencoders(net, X, epochs=10, *, decoder="auto", loss="mse", init=None,
                          corruption=0.0, layers=None, seed=None, verbose=False,
                          return_losses=False, **trainer_kwargs):
    """Greedy layer-wise autoencoder pretraining of the hidden layers of ``net``, in place.

    For each hidden layer ``l`` in turn (input side first), with ``z_{l-1}`` the
    representation of X computed by the layers below (``z_{-1} = X``), a one-hidden-layer
    autoencoder ``fastbp.Network([n_in, n_out, n_in], activation=<layer l's activation>,
    output=<decoder>)`` is trained by ``fastbp.Trainer`` to reconstruct ``z_{l-1}``::

        h = f_l(z_{l-1} @ W_l + b_l)          (encoder: becomes layer l)
        r = g(h @ V + c)                      (decoder: thrown away)
        E = (1/n) sum_i 0.5 ||r_i - z_{l-1,i}||^2     (loss="mse")

    Its encoder ``(W_l, b_l)`` is then copied into ``net.weights[l]``, ``net.biases[l]`` and
    ``z_l = f_l(z_{l-1} @ W_l + b_l)`` (computed by the compiled forward pass) is the input
    of the next autoencoder. The output layer is never changed. Fine-tune afterwards with
    ``fastbp.Trainer(net, ...).fit(X, y)``.

    Parameters
    ----------
    net : fastbp.Network
        Modified in place (hidden layers only).
    X : array_like (n_samples, n_inputs)
        Unlabelled training inputs.
    epochs : int
        Training epochs of each autoencoder (0 leaves the network unchanged).
    decoder : "auto" or an activation name
        Output activation of the decoders. "auto": ``sigmoid`` when the layer's input lies
        in [0, 1] (pixels scaled to [0, 1], sigmoid hidden units), else ``identity``.
    loss : str
        Reconstruction loss, ``"mse"`` (default), or ``"binary_cross_entropy"`` with a
        sigmoid decoder and inputs in [0, 1].
    init : None, or an initializer (name, callable)
        None: each encoder starts from the network's current weights of that layer (so the
        network's own ``init`` and ``seed`` decide) and its decoder from ``glorot_uniform``.
        Otherwise encoder and decoder are both drawn from ``init``.
    corruption : float in [0, 1)
        Denoising autoencoders (Vincent et al. 2008): each epoch, every input entry is set
        to 0 with this probability, and the clean input is the target. 0 = plain autoencoder.
    layers : None or iterable of int
        The hidden layers to pretrain (default all, ``0 .. len(net.weights) - 2``); the
        others keep their weights (and still transform the data for the layers above).
    seed : int or None
        Seeds the decoders' initialization, the shuffling and the corruption
        (the same seed and threads give identical weights).
    verbose : bool
        Progress bars during training and one line per layer on stderr.
    return_losses : bool
        Also return the per-layer records (see Returns).
    **trainer_kwargs
        Passed to ``fastbp.Trainer``: ``optimizer``, ``lr``, ``momentum``, ``batch_size``,
        ``weight_decay``, ``n_threads``, ``lr_schedule``, ...

    Returns
    -------
    net
        The same network, or ``(net, records)`` when ``return_losses=True``: ``records`` has
        one dict per pretrained layer with ``layer``, ``shape``, ``activation``, ``decoder``,
        ``initial_loss`` and ``final_loss`` (the reconstruction loss of the clean inputs
        before and after training), ``history`` (the training loss of each epoch) and the
        trained decoder's ``decoder_weights`` and ``decoder_bias``.

    Raises
    ------
    TypeError, ValueError
        Bad arguments (through ``Network`` and ``Trainer`` as well).
    fastbp.TrainingDiverged
        An autoencoder diverged; the layers already pretrained keep their new weights, the
        failing layer keeps its old ones.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a fastbp.Network, got {type(net).__name__}")
    epochs = check_positive_int(epochs, "epochs", minimum=0)
    corruption = check_number(corruption, "corruption", low=0, high=1, high_open=True)
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    if init is not None:
        _init.get(init)                                   # unknown names fail before training
    z = as_float_matrix(X, net.dtype, "X", n_columns=net.n_inputs)
    todo = _hidden_layers(layers, len(net.weights) - 1)
    rng = np.random.default_rng(seed)
    records = []
    for l in range(todo[-1] + 1 if todo else 0):
        W, b, act = net.weights[l], net.biases[l], net.activations[l]
        n_in, n_out = W.shape
        if l in todo:
            dec = _decoder_for(decoder, z)
            ae = Network([n_in, n_out, n_in], activation=act, output=dec,
                         init=init if init is not None else "glorot_uniform",
                         dtype=net.dtype, seed=rng)
            if init is None:
                ae.weights[0][...] = W
                ae.biases[0][...] = b
            trainer = Trainer(ae, loss=loss, seed=int(rng.integers(2**31)), **trainer_kwargs)
            initial = ae.loss(z, z, loss=trainer.loss)
            if epochs and corruption == 0:
                history = list(trainer.fit(z, z, epochs=epochs, verbose=verbose).loss)
            else:
                history = []
                for _ in range(epochs):
                    noisy = z * (rng.random(z.shape) >= corruption)
                    history += trainer.fit(noisy, z, epochs=1, verbose=verbose).loss
            final = ae.loss(z, z, loss=trainer.loss)
            W[...] = ae.weights[0]
            b[...] = ae.biases[0]
            records.append({"layer": l, "shape": (n_in, n_out), "activation": act,
                            "decoder": ae.activations[-1], "initial_loss": initial,
                            "final_loss": final, "history": history,
                            "decoder_weights": ae.weights[1].copy(),
                            "decoder_bias": ae.biases[1].copy()})
            if verbose:
                print(f"pretrain layer {l} ({n_in}->{n_out} {act}, decoder {dec}): "
                      f"reconstruction loss {initial:.4g} -> {final:.4g}", file=sys.stderr)
        if l < todo[-1]:                                   # the next layer's input
            enc = Network([n_in, n_out], output=act, init="zeros", dtype=net.dtype)
            enc.weights[0][...] = W
            enc.biases[0][...] = b
            z = enc.predict(z)
    return (net, records) if return_losses else net
