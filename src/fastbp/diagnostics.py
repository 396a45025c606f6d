"""Verify BP and look at gradient health: gradient checking, per-layer norms, saturation."""
import numpy as np

__all__ = ["gradient_check", "gradient_norms", "health"]


def gradient_check(net, X, Y, loss="mse", eps=None, floor=1e-6, max_checks=None, seed=0,
                   return_details=False):
    """Compare BP gradients with float64 central finite differences.

    Returns ``max_i |g_bp - g_fd| / max(|g_bp|, |g_fd|, floor)`` over the checked entries of
    dW, db and dX. The check runs on a float64 copy of ``net`` (``eps`` defaults to 1e-6).
    With ``max_checks`` set, that many entries are sampled at random (per kind) instead of
    all of them. Perturbations across a kink (ReLU at 0, step) can give spurious errors.
    """
    from .network import Network
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
    _, grads = ref.loss_and_gradients(X, Y, loss=name, inputs=True)
    rng = np.random.default_rng(seed)

    def pick(n):
        idx = np.arange(n)
        if max_checks is not None and n > max_checks:
            idx = rng.choice(n, size=max_checks, replace=False)
        return idx

    def relerr(bp, fd):
        return np.abs(bp - fd) / np.maximum(np.maximum(np.abs(bp), np.abs(fd)), floor)

    params = ref.parameters
    idx = pick(params.size)
    fd = np.empty(idx.size)
    for j, i in enumerate(idx):
        old = params[i]
        params[i] = old + eps
        up = ref.loss(X, Y, loss=name)
        params[i] = old - eps
        down = ref.loss(X, Y, loss=name)
        params[i] = old
        fd[j] = (up - down) / (2 * eps)
    err_params = relerr(grads.flat[idx], fd)

    flatX = X.reshape(-1)
    xidx = pick(flatX.size)
    fdx = np.empty(xidx.size)
    for j, i in enumerate(xidx):
        old = flatX[i]
        flatX[i] = old + eps
        up = ref.loss(X, Y, loss=name)
        flatX[i] = old - eps
        down = ref.loss(X, Y, loss=name)
        flatX[i] = old
        fdx[j] = (up - down) / (2 * eps)
    err_inputs = relerr(grads.inputs.reshape(-1)[xidx], fdx)
    worst = float(max(err_params.max(initial=0), err_inputs.max(initial=0)))
    if return_details:
        return worst, {"params": err_params, "inputs": err_inputs}
    return worst


def gradient_norms(net, X, Y, loss="mse"):
    """Frobenius norm of dE/dW for each layer, input layer first."""
    _, grads = net.loss_and_gradients(X, Y, loss=loss, inputs=False)
    return [float(np.linalg.norm(g)) for g in grads.weights]


def health(net, X, Y, loss="mse", lr=None):
    """Per-layer table (list of dicts): gradient and weight norms, update/weight ratio
    (when ``lr`` is given), activation mean/std, saturated % (|tanh| > 0.97, sigmoid
    < 0.03 or > 0.97, LeCun tanh |y| > 0.97*1.7159) and dead-ReLU % (units never active)."""
    from . import activations
    from ._validation import as_float_matrix
    X = as_float_matrix(X, net.dtype, "X", n_columns=net.n_inputs)
    _, grads = net.loss_and_gradients(X, Y, loss=loss, inputs=False)
    rows, z = [], X.astype(np.float64)
    for i, (W, b, name) in enumerate(zip(net.weights, net.biases, net.activations)):
        a = activations.get(name).forward(z @ W.astype(np.float64) + b)
        gn, wn = float(np.linalg.norm(grads.weights[i])), float(np.linalg.norm(W))
        row = {"layer": i, "shape": W.shape, "activation": name, "grad_norm": gn,
               "weight_norm": wn, "act_mean": float(a.mean()), "act_std": float(a.std())}
        if lr is not None:
            row["update_ratio"] = lr * gn / wn if wn > 0 else np.inf
        if name == "tanh":
            row["saturated_pct"] = 100 * float((np.abs(a) > 0.97).mean())
        elif name == "lecun_tanh":
            row["saturated_pct"] = 100 * float((np.abs(a) > 0.97 * 1.7159).mean())
        elif name == "sigmoid":
            row["saturated_pct"] = 100 * float(((a < 0.03) | (a > 0.97)).mean())
        if name in ("relu",):
            row["dead_pct"] = 100 * float((a.max(axis=0) <= 0).mean())
        rows.append(row)
        z = a
    return rows
