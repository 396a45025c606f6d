"""Plain NumPy reference implementation of backpropagation and of fastbp's optimizers.

This module is the yardstick the compiled package is tested against. It is written to be
obviously correct, not fast: float64 everywhere, no fused passes, no workspaces.
It imports nothing from ``fastbp``.

Conventions (the same as fastbp's):

* ``X`` has shape ``(n, n_features)``; layer ``l`` computes ``a_l = f_l(z_{l-1} @ W_l + b_l)``
  with ``W_l`` of shape ``(n_in, n_out)`` and ``b_l`` of shape ``(n_out,)``.
* ``g_l`` is the gradient of the loss with respect to layer ``l``'s pre-activation:
  ``dW_l = z_{l-1}.T @ g_l``, ``db_l = g_l.sum(0)``, ``dz_{l-1} = g_l @ W_l.T``,
  ``g_{l-1} = dz_{l-1} * f'_{l-1}(pre_{l-1})`` and ``dX = g_1 @ W_1.T``.
* Losses are averaged over the samples of the batch (see :func:`loss_and_gradients`).
"""

import math

import numpy as np

__all__ = [
    "ACTIVATIONS", "ALIASES", "LOSSES", "activation", "layer_activations", "softmax",
    "log_softmax", "forward", "predict", "loss_value", "loss_and_gradients",
    "numeric_gradients", "sgd_step", "adam_step", "rmsprop_step", "rprop_step",
    "irprop_plus_step", "quickprop_step", "PAIRINGS", "random_targets", "output_size",
]

# ---------------------------------------------------------------------------------------
# activations: name -> (f, df), df a function of the pre-activation x
# ---------------------------------------------------------------------------------------

LECUN_A = 1.7159
LECUN_B = 2.0 / 3.0
LEAKY_SLOPE = 0.01
GELU_C = 0.044715
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _sigmoid(x):
    """1 / (1 + exp(-x)), evaluated without overflow for either sign of x."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _step_derivative(x):
    raise ValueError("the 'step' activation has no useful derivative; it cannot be trained "
                     "by backpropagation")


def _gelu(x):
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + GELU_C * x ** 3)))


def _gelu_derivative(x):
    t = np.tanh(SQRT_2_OVER_PI * (x + GELU_C * x ** 3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x)


ACTIVATIONS = {
    "identity": (lambda x: x * 1.0, lambda x: np.ones_like(x)),
    # Heaviside with H(0) = 1 (FANN's threshold, and fastbp's kernel); forward only
    "step": (lambda x: np.where(x >= 0, 1.0, 0.0), _step_derivative),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x))),
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "lecun_tanh": (lambda x: LECUN_A * np.tanh(LECUN_B * x),
                   lambda x: LECUN_A * LECUN_B * (1.0 - np.tanh(LECUN_B * x) ** 2)),
    "relu": (lambda x: np.where(x > 0, x, 0.0), lambda x: np.where(x > 0, 1.0, 0.0)),
    "leaky_relu": (lambda x: np.where(x > 0, x, LEAKY_SLOPE * x),
                   lambda x: np.where(x > 0, 1.0, LEAKY_SLOPE)),
    "elu": (lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
            lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0)))),
    "softplus": (lambda x: np.logaddexp(0.0, x), _sigmoid),
    "softsign": (lambda x: x / (1.0 + np.abs(x)), lambda x: 1.0 / (1.0 + np.abs(x)) ** 2),
    "silu": (lambda x: x * _sigmoid(x),
             lambda x: _sigmoid(x) * (1.0 + x * (1.0 - _sigmoid(x)))),
    "gelu": (_gelu, _gelu_derivative),
}
"""Element-wise activations: ``name -> (f, df)``; ``df`` takes the pre-activation.
``softmax`` is not here: it is row-wise and allowed on the output layer only."""

ALIASES = {"linear": "identity", "logistic": "sigmoid", "swish": "silu"}

LOSSES = ("mse", "cross_entropy", "binary_cross_entropy")


def _canonical(name):
    name = ALIASES.get(name, name)
    if name != "softmax" and name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of "
                         f"{sorted(list(ACTIVATIONS) + ['softmax'] + list(ALIASES))}")
    return name


def activation(name):
    """``(f, df)`` for an element-wise activation name (aliases accepted)."""
    name = _canonical(name)
    if name == "softmax":
        raise ValueError("softmax is row-wise; use softmax() (output layer only)")
    return ACTIVATIONS[name]


def layer_activations(n_layers, hidden="tanh", output="identity"):
    """Expand a hidden activation name (or a list, one per hidden layer) and the output
    name into the list of ``n_layers`` names :func:`forward` takes."""
    if isinstance(hidden, str):
        hidden = [hidden] * (n_layers - 1)
    hidden = list(hidden)
    if len(hidden) != n_layers - 1:
        raise ValueError(f"expected {n_layers - 1} hidden activations, got {len(hidden)}")
    return hidden + [output]


def softmax(z):
    """Row-wise softmax of a 2-D array, shifted by the row maximum."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z):
    """Row-wise log(softmax(z)) without forming softmax."""
    s = z - z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


# ---------------------------------------------------------------------------------------
# forward / loss / backward
# ---------------------------------------------------------------------------------------

def _as_float64_params(weights, biases, activations):
    weights = [np.array(w, dtype=np.float64) for w in weights]
    biases = [np.array(b, dtype=np.float64) for b in biases]
    activations = [_canonical(a) for a in activations]
    if not (len(weights) == len(biases) == len(activations)):
        raise ValueError("weights, biases and activations must have one entry per layer")
    for l, (w, b) in enumerate(zip(weights, biases)):
        if w.ndim != 2 or b.shape != (w.shape[1],):
            raise ValueError(f"layer {l}: weight {w.shape} and bias {b.shape} do not match")
        if l > 0 and weights[l - 1].shape[1] != w.shape[0]:
            raise ValueError(f"layer {l}: {w.shape[0]} inputs after {weights[l - 1].shape[1]} outputs")
    if "softmax" in activations[:-1]:
        raise ValueError("softmax is allowed on the output layer only")
    return weights, biases, activations


def forward(weights, biases, activations, X):
    """Forward pass.

    Returns ``(pre, out)``: two lists with one ``(n, n_out_l)`` float64 array per layer
    (the input itself is not included): ``pre[l] = out[l-1] @ W_l + b_l`` (with
    ``out[-1]`` meaning X for the first layer) and ``out[l] = f_l(pre[l])``.
    """
    weights, biases, activations = _as_float64_params(weights, biases, activations)
    z = np.array(X, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != weights[0].shape[0]:
        raise ValueError(f"X must have shape (n, {weights[0].shape[0]}), got {z.shape}")
    pre, out = [], []
    for w, b, name in zip(weights, biases, activations):
        a = z @ w + b
        z = softmax(a) if name == "softmax" else ACTIVATIONS[name][0](a)
        pre.append(a)
        out.append(z)
    return pre, out


def predict(weights, biases, activations, X):
    """Output activations of the network, float64."""
    return forward(weights, biases, activations, X)[1][-1]


def _targets(loss, output, Y, n, k):
    """Validate Y for the loss/output pair; return float64 target rows of shape (n, k)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
    if loss == "cross_entropy" and output != "softmax":
        raise ValueError(f"cross_entropy needs a softmax output, not {output!r}")
    if loss == "binary_cross_entropy" and output != "sigmoid":
        raise ValueError(f"binary_cross_entropy needs a sigmoid output, not {output!r}")
    Y = np.asarray(Y)
    if loss == "cross_entropy" and Y.ndim == 1:
        if Y.shape != (n,) or not np.issubdtype(Y.dtype, np.integer):
            raise ValueError(f"integer labels must have shape ({n},) and an integer dtype")
        if Y.size and (Y.min() < 0 or Y.max() >= k):
            raise ValueError(f"labels must lie in [0, {k})")
        T = np.zeros((n, k))
        T[np.arange(n), Y] = 1.0
        return T
    T = np.array(Y, dtype=np.float64)
    if loss == "binary_cross_entropy" and T.ndim == 1 and k == 1:
        T = T[:, None]
    if T.shape != (n, k):
        raise ValueError(f"targets must have shape ({n}, {k}), got {np.shape(Y)}")
    if not np.all(np.isfinite(T)):
        raise ValueError("targets contain NaN or inf")
    if loss == "binary_cross_entropy" and (T.min() < 0 or T.max() > 1):
        raise ValueError("binary_cross_entropy targets must lie in [0, 1]")
    return T


def _loss_and_output_delta(loss, output, a, p, T):
    """Loss E and g_L = dE/da for output pre-activation a, output p = f(a), targets T."""
    n = a.shape[0]
    if loss == "mse":
        E = 0.5 * np.sum((p - T) ** 2) / n
        d = (p - T) / n                                          # dE/dp
        if output == "softmax":                                  # full softmax Jacobian
            # dE/da_ik = sum_j d_ij p_ij (delta_jk - p_ik) = p_ik (d_ik - sum_j d_ij p_ij)
            g = p * (d - np.sum(d * p, axis=1, keepdims=True))
        else:
            g = d * ACTIVATIONS[output][1](a)
    elif loss == "cross_entropy":                                # softmax output
        E = -np.sum(T * log_softmax(a)) / n
        # dE/da_ik = -(1/n) sum_j t_ij (delta_jk - p_ik) = (p_ik sum_j t_ij - t_ik) / n
        g = (p * T.sum(axis=1, keepdims=True) - T) / n
    else:                                                        # binary_cross_entropy, sigmoid
        # -log p = softplus(-a), -log(1 - p) = softplus(a)
        E = np.sum(T * np.logaddexp(0.0, -a) + (1.0 - T) * np.logaddexp(0.0, a)) / n
        g = (p - T) / n
    return float(E), g


def loss_value(weights, biases, activations, X, Y, loss="mse"):
    """The loss E alone (forward pass only)."""
    weights, biases, activations = _as_float64_params(weights, biases, activations)
    pre, out = forward(weights, biases, activations, X)
    T = _targets(loss, activations[-1], Y, pre[-1].shape[0], pre[-1].shape[1])
    return _loss_and_output_delta(loss, activations[-1], pre[-1], out[-1], T)[0]


def loss_and_gradients(weights, biases, activations, X, Y, loss="mse"):
    """Loss and its gradients by backpropagation, all float64.

    Losses (n = number of rows of X, sums over samples i and outputs j):

    * ``"mse"``: ``E = (1/n) sum_i 0.5 sum_j (yhat_ij - y_ij)^2``, any output activation
      (softmax through its full Jacobian);
    * ``"cross_entropy"`` (softmax output only): ``E = -(1/n) sum_ij t_ij log p_ij`` with
      ``t`` one-hot rows from integer labels ``(n,)`` or given rows ``(n, k)``;
    * ``"binary_cross_entropy"`` (sigmoid output only), targets in [0, 1] of shape
      ``(n, k)``, or ``(n,)`` when k == 1:
      ``E = -(1/n) sum_ij [y log p + (1 - y) log(1 - p)]``.

    Returns ``(E, dW, db, dX)``: a float, a list of ``(n_in, n_out)`` arrays, a list of
    ``(n_out,)`` arrays and ``dE/dX`` of X's shape.
    """
    weights, biases, activations = _as_float64_params(weights, biases, activations)
    pre, out = forward(weights, biases, activations, X)
    n, k = pre[-1].shape
    T = _targets(loss, activations[-1], Y, n, k)
    if "step" in activations:
        _step_derivative(None)                                    # raises ValueError
    E, g = _loss_and_output_delta(loss, activations[-1], pre[-1], out[-1], T)
    X64 = np.array(X, dtype=np.float64)
    L = len(weights)
    dW, db = [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        z_prev = out[l - 1] if l > 0 else X64
        dW[l] = z_prev.T @ g
        db[l] = g.sum(axis=0)
        dz = g @ weights[l].T
        if l > 0:
            g = dz * ACTIVATIONS[activations[l - 1]][1](pre[l - 1])
    return E, dW, db, dz


def loss_and_gradients_regularized(weights, biases, activations, X, Y, loss, masks, rates,
                                   bn, eps=1e-5):
    """``loss_and_gradients`` with dropout and batch normalization, float64.

    ``masks[l]``: None, or the 0/1 mask of layer l's input (its rate ``rates[l]``: the
    input is ``z * mask / (1 - rate)``); ``bn[l]``: None, or a dict with ``gamma``,
    ``beta`` and, for evaluation, ``mean`` and ``var`` (training: the batch's mean and
    biased variance), for ``h = gamma * (a - mean) / sqrt(var + eps) + beta`` between the
    product ``a = z W + b`` and f. Returns ``(E, dW, db, dgamma, dbeta, dX)``.
    """
    weights, biases, activations = _as_float64_params(weights, biases, activations)
    z = np.array(X, dtype=np.float64)
    n = z.shape[0]
    L = len(weights)
    ins, pre_h, outs, cache = [], [], [], []
    for l in range(L):
        zin = z if masks[l] is None else z * masks[l] / (1.0 - rates[l])
        a = zin @ weights[l] + biases[l]
        if bn[l] is not None:
            mean = a.mean(axis=0) if bn[l].get("mean") is None else np.asarray(bn[l]["mean"])
            var = a.var(axis=0) if bn[l].get("var") is None else np.asarray(bn[l]["var"])
            istd = 1.0 / np.sqrt(var + eps)
            xh = (a - mean) * istd
            h = np.asarray(bn[l]["gamma"], np.float64) * xh + np.asarray(bn[l]["beta"], np.float64)
            cache.append((xh, istd))
        else:
            h = a
            cache.append(None)
        z = softmax(h) if activations[l] == "softmax" else ACTIVATIONS[activations[l]][0](h)
        ins.append(zin)
        pre_h.append(h)
        outs.append(z)
    k = outs[-1].shape[1]
    T = _targets(loss, activations[-1], Y, n, k)
    E, g = _loss_and_output_delta(loss, activations[-1], pre_h[-1], outs[-1], T)
    dW, db, dg, dbeta = [None] * L, [None] * L, [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        if bn[l] is not None:                       # g = dE/dh -> dE/da
            xh, istd = cache[l]
            dg[l] = (g * xh).sum(axis=0)
            dbeta[l] = g.sum(axis=0)
            gamma = np.asarray(bn[l]["gamma"], np.float64)
            if bn[l].get("mean") is None:
                g = gamma * istd * (g - g.mean(axis=0) - xh * (g * xh).mean(axis=0))
            else:
                g = gamma * istd * g
        dW[l] = ins[l].T @ g
        db[l] = g.sum(axis=0)
        dz = g @ weights[l].T
        if masks[l] is not None:
            dz = dz * masks[l] / (1.0 - rates[l])
        if l > 0:
            g = dz * ACTIVATIONS[activations[l - 1]][1](pre_h[l - 1])
    return E, dW, db, dg, dbeta, dz


def numeric_gradients(weights, biases, activations, X, Y, loss="mse", eps=1e-6):
    """Central finite differences ``(E(x + eps) - E(x - eps)) / (2 eps)`` of
    :func:`loss_value` for every weight, bias and input entry.

    Returns ``(dW, db, dX)`` shaped like :func:`loss_and_gradients`'s.
    """
    weights = [np.array(w, dtype=np.float64) for w in weights]
    biases = [np.array(b, dtype=np.float64) for b in biases]
    X = np.array(X, dtype=np.float64)

    def E():
        return loss_value(weights, biases, activations, X, Y, loss)

    def fd(arr):
        grad = np.zeros_like(arr)
        flat, gflat = arr.reshape(-1), grad.reshape(-1)          # views
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            e_plus = E()
            flat[i] = old - eps
            e_minus = E()
            flat[i] = old
            gflat[i] = (e_plus - e_minus) / (2.0 * eps)
        return grad

    dW = [fd(w) for w in weights]
    db = [fd(b) for b in biases]
    dX = fd(X)
    return dW, db, dX


# ---------------------------------------------------------------------------------------
# optimizers: one step on a flat float64 parameter vector.
# Each function updates p IN PLACE (and returns it), never modifies g, and keeps its
# state in the dict `state` (pass {} before the first step).
# ---------------------------------------------------------------------------------------

def _check(p, g):
    if not (isinstance(p, np.ndarray) and p.dtype == np.float64):
        raise TypeError("p must be a float64 ndarray (updated in place)")
    g = np.asarray(g, dtype=np.float64)
    if g.shape != p.shape:
        raise ValueError(f"gradient shape {g.shape} != parameter shape {p.shape}")
    return g


def sgd_step(p, g, state, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """torch.optim.SGD (dampening 0)::

        g = g + weight_decay * p
        if momentum:  buf = g (first step) | momentum * buf + g
                      g = g + momentum * buf (nesterov) | buf
        p -= lr * g
    """
    g = _check(p, g)
    if np.any(weight_decay):
        g = g + weight_decay * p
    if momentum:
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = g.copy()
        else:
            state["momentum_buffer"] = momentum * state["momentum_buffer"] + g
        buf = state["momentum_buffer"]
        g = g + momentum * buf if nesterov else buf
    p -= lr * g
    return p


def adam_step(p, g, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """torch.optim.Adam (L2 weight decay added to the gradient, eps added to sqrt(v_hat))::

        t += 1; g = g + weight_decay * p
        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """
    g = _check(p, g)
    b1, b2 = betas
    if np.any(weight_decay):
        g = g + weight_decay * p
    if "step" not in state:
        state.update(step=0, exp_avg=np.zeros_like(p), exp_avg_sq=np.zeros_like(p))
    state["step"] += 1
    t = state["step"]
    state["exp_avg"] = b1 * state["exp_avg"] + (1.0 - b1) * g
    state["exp_avg_sq"] = b2 * state["exp_avg_sq"] + (1.0 - b2) * g * g
    m_hat = state["exp_avg"] / (1.0 - b1 ** t)
    v_hat = state["exp_avg_sq"] / (1.0 - b2 ** t)
    p -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def adamw_step(p, g, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """torch.optim.AdamW: the decay decoupled from the gradient::

        p *= 1 - lr * weight_decay;  then Adam's step with g (no decay term)
    """
    g = _check(p, g)
    p *= 1.0 - lr * np.asarray(weight_decay)
    return adam_step(p, g, state, lr, betas, eps)


def clip_value(g, v):
    """torch.nn.utils.clip_grad_value_: each entry clamped to [-v, v]."""
    return np.clip(g, -v, v)


def clip_norm(g, c):
    """torch.nn.utils.clip_grad_norm_ (2-norm): g * min(1, c / (||g|| + 1e-6))."""
    total = float(np.sqrt(np.sum(np.asarray(g, np.float64) ** 2)))
    return g * min(1.0, c / (total + 1e-6))


def max_norm(W, c):
    """Each column of W (a unit's incoming weights) with norm > c rescaled: W * c/(norm+1e-7)."""
    norms = np.sqrt((W * W).sum(axis=0))
    return W * np.where(norms > c, c / (norms + 1e-7), 1.0)


def weight_mask(sizes):
    """1.0 on the weight entries, 0.0 on the biases, of a flat buffer in fastbp's layout."""
    parts = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        parts += [np.ones(n_in * n_out), np.zeros(n_out)]
    return np.concatenate(parts)


def rmsprop_step(p, g, state, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0):
    """torch.optim.RMSprop (not centered)::

        g = g + weight_decay * p
        v = alpha v + (1 - alpha) g^2            (v starts at 0)
        momentum == 0: p -= lr * g / (sqrt(v) + eps)
        momentum  > 0: buf = momentum buf + g / (sqrt(v) + eps)  (buf starts at 0); p -= lr buf
    """
    g = _check(p, g)
    if np.any(weight_decay):
        g = g + weight_decay * p
    if "square_avg" not in state:
        state["square_avg"] = np.zeros_like(p)
        if momentum:
            state["momentum_buffer"] = np.zeros_like(p)
    state["square_avg"] = alpha * state["square_avg"] + (1.0 - alpha) * g * g
    d = g / (np.sqrt(state["square_avg"]) + eps)
    if momentum:
        state["momentum_buffer"] = momentum * state["momentum_buffer"] + d
        d = state["momentum_buffer"]
    p -= lr * d
    return p


def _rprop_common(p, g, state, lr, etas, step_sizes, weight_decay):
    """Shared part of iRprop-/iRprop+: adapt the step sizes; return (g, flipped)."""
    g = _check(p, g)
    if np.any(weight_decay):
        g = g + weight_decay * p
    eta_minus, eta_plus = etas
    step_min, step_max = step_sizes
    if "prev" not in state:
        state.update(prev=np.zeros_like(p), step_size=np.full_like(p, lr),
                     last_update=np.zeros_like(p))
    s = np.sign(g * state["prev"])
    factor = np.where(s > 0, eta_plus, np.where(s < 0, eta_minus, 1.0))
    state["step_size"] = np.clip(state["step_size"] * factor, step_min, step_max)
    flipped = s < 0
    g = np.where(flipped, 0.0, g)
    return g, flipped


def rprop_step(p, g, state, lr=0.01, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0),
               weight_decay=0.0):
    """torch.optim.Rprop, i.e. iRprop- (Igel & Huesken 2000), initial step size = lr::

        g = g + weight_decay * p                 (torch has no weight decay; fastbp's API adds it)
        s = sign(g * prev)                       (prev starts at 0)
        step = clip(step * (eta+ if s > 0, eta- if s < 0, 1 if s == 0), step_min, step_max)
        g = 0 where s < 0                        (no move after a sign change)
        p -= sign(g) * step;  prev = g
    """
    g, _ = _rprop_common(p, g, state, lr, etas, step_sizes, weight_decay)
    update = -np.sign(g) * state["step_size"]
    p += update
    state["prev"] = g
    state["last_update"] = update
    return p


def irprop_plus_step(p, g, state, loss, lr=0.01, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0),
                     weight_decay=0.0):
    """iRprop+ (Igel & Huesken 2000): iRprop- plus weight backtracking.

    ``loss`` is E at the current p (before this step); the previous call's loss is kept
    in the state (``+inf`` before the first step, so the first step never backtracks).
    Per weight, with s = sign(g * prev):

    * s > 0: step = min(step eta+, step_max); dw = -sign(g) step; p += dw
    * s < 0: step = max(step eta-, step_min); if loss > previous loss: p -= dw_prev
      (undo that weight's last change); g = 0; the weight's recorded change becomes
      -dw_prev if it was undone, else 0
    * s == 0: dw = -sign(g) step; p += dw
    * prev = g
    """
    g, flipped = _rprop_common(p, g, state, lr, etas, step_sizes, weight_decay)
    loss_increased = loss > state.get("prev_loss", math.inf)
    update = -np.sign(g) * state["step_size"]                   # 0 where flipped (g = 0)
    if loss_increased:
        update = np.where(flipped, -state["last_update"], update)
    p += update
    state["prev"] = g
    state["last_update"] = update
    state["prev_loss"] = loss
    return p


def quickprop_step(p, g, state, lr, mu=1.75, weight_decay=0.0):
    """Quickprop (Fahlman 1988), exactly as FANN's ``fann_update_weights_quickprop``
    rewritten for the gradient convention (FANN's slope is minus ours), without FANN's
    0.001 dead zone, its lr/num_data scaling (fastbp's losses are already averaged) and
    its +-1500 weight clipping.

    Per weight, with S = g + weight_decay * p (the slope; Fahlman's decay term),
    S_prev the previous slope and dw_prev the previous change (both 0 before the first
    step) and shrink = mu / (1 + mu)::

        if dw_prev > 0:                                    # last step went up
            dw = -lr * S   if S < 0 else 0                 # gradient term while still downhill
            if S < shrink * S_prev:  dw += mu * dw_prev    # maximum growth
            else:                    dw += dw_prev * S / (S_prev - S)   # secant/parabola
        elif dw_prev < 0:                                  # mirror image
            dw = -lr * S   if S > 0 else 0
            if S > shrink * S_prev:  dw += mu * dw_prev
            else:                    dw += dw_prev * S / (S_prev - S)
        else:                                              # dw_prev == 0 exactly: restart
            dw = -lr * S
        p += dw;  dw_prev = dw;  S_prev = S

    The comparisons are strict as in FANN. One guard FANN lacks: when the parabola
    branch is taken with S_prev == S (a degenerate parabola, which would give inf or
    NaN), its term is 0 instead.
    """
    g = _check(p, g)
    S = g + weight_decay * p if np.any(weight_decay) else g.copy()
    if "prev_step" not in state:
        state.update(prev_step=np.zeros_like(p), prev_slope=np.zeros_like(p))
    d, Sp = state["prev_step"], state["prev_slope"]
    shrink = mu / (1.0 + mu)
    denom = Sp - S
    safe = np.where(denom == 0, 1.0, denom)
    parabola = np.where(denom == 0, 0.0, d * S / safe)
    up = np.where(S < 0, -lr * S, 0.0) + np.where(S < shrink * Sp, mu * d, parabola)
    down = np.where(S > 0, -lr * S, 0.0) + np.where(S > shrink * Sp, mu * d, parabola)
    dw = np.where(d > 0, up, np.where(d < 0, down, -lr * S))
    p += dw
    state["prev_step"] = dw
    state["prev_slope"] = S
    return p


# ---------------------------------------------------------------------------------------
# helpers shared by the test modules
# ---------------------------------------------------------------------------------------

PAIRINGS = {
    # id: (loss, output activation, target kind)
    "mse-identity": ("mse", "identity", "real"),
    "mse-sigmoid": ("mse", "sigmoid", "unit"),
    "mse-tanh": ("mse", "tanh", "real"),
    "mse-softmax": ("mse", "softmax", "prob"),
    "ce-labels": ("cross_entropy", "softmax", "labels"),
    "ce-onehot": ("cross_entropy", "softmax", "onehot"),
    "ce-prob": ("cross_entropy", "softmax", "prob"),
    "bce-2d": ("binary_cross_entropy", "sigmoid", "binary"),
    "bce-1d": ("binary_cross_entropy", "sigmoid", "binary1d"),
}
"""Every valid (loss, output activation, target kind) combination the tests cover."""


def random_targets(kind, n, k, rng):
    """Targets of a given kind (see PAIRINGS) for n samples and k outputs."""
    if kind == "real":
        return rng.normal(size=(n, k))
    if kind == "unit":
        return rng.uniform(size=(n, k))
    if kind == "prob":
        return rng.dirichlet(np.ones(k), size=n)
    if kind == "labels":
        return rng.permutation(np.arange(n) % k).astype(np.int64)  # every class present
    if kind == "onehot":
        return np.eye(k)[rng.permutation(np.arange(n) % k)]
    if kind == "binary":                                  # hard 0/1 and soft targets
        t = rng.uniform(size=(n, k))
        t[::3] = np.round(t[::3])
        return t
    if kind == "binary1d":
        if k != 1:
            raise ValueError("binary1d targets need k == 1")
        t = rng.uniform(size=n)
        t[::3] = np.round(t[::3])
        return t
    raise ValueError(f"unknown target kind {kind!r}")


def output_size(kind, k=4):
    """Number of outputs to use with a target kind (1 for binary1d)."""
    return 1 if kind == "binary1d" else k
