"""Network <-> torch.nn.Sequential (``Network.to_torch``, ``Network.from_torch``).

A layer is ``nn.Linear`` (weight stored (out, in): fastbp's W transposed), then
``nn.BatchNorm1d`` for a batch-normalized layer, then the activation module, then
``nn.Dropout`` for a hidden layer with dropout (``nn.Dropout`` first for input dropout).
Activations without a torch module (the step, LeCun's tanh) are the small modules below.
Imported only when used: torch is optional.
"""
import numpy as np
import torch
from torch import nn

from .activations import LEAKY_SLOPE, LECUN_A, LECUN_B
from .network import BN_EPS, BN_MOMENTUM

__all__ = ["Step", "LeCunTanh", "to_torch", "from_torch"]


class Step(nn.Module):
    """1 where x >= 0, else 0 (fastbp's "step")."""

    def forward(self, x):
        return (x >= 0).to(x.dtype)


class LeCunTanh(nn.Module):
    """1.7159 tanh(2x/3) (fastbp's "lecun_tanh")."""

    def forward(self, x):
        return LECUN_A * torch.tanh(LECUN_B * x)


def _module(name):
    return {"identity": nn.Identity, "step": Step, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
            "lecun_tanh": LeCunTanh, "relu": nn.ReLU,
            "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE), "elu": lambda: nn.ELU(1.0),
            "softplus": nn.Softplus, "softsign": nn.Softsign, "silu": nn.SiLU,
            "gelu": lambda: nn.GELU(approximate="tanh"),
            "softmax": lambda: nn.Softmax(dim=-1)}[name]()


def to_torch(net):
    dtype = torch.float32 if net.dtype == np.float32 else torch.float64
    mods = [nn.Dropout(net.input_dropout)] if net.input_dropout else []
    L = len(net.weights)
    for i, (W, b, act) in enumerate(zip(net.weights, net.biases, net.activations)):
        lin = nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        mods.append(lin)
        if net.gammas[i] is not None:
            bn = nn.BatchNorm1d(W.shape[1], eps=BN_EPS, momentum=BN_MOMENTUM, dtype=dtype)
            with torch.no_grad():
                bn.weight.copy_(torch.from_numpy(net.gammas[i].copy()))
                bn.bias.copy_(torch.from_numpy(net.betas[i].copy()))
                bn.running_mean.copy_(torch.from_numpy(net.running_means[i]).to(dtype))
                bn.running_var.copy_(torch.from_numpy(net.running_vars[i]).to(dtype))
            mods.append(bn)
        if act != "identity":
            mods.append(_module(act))
        if i < L - 1 and net.dropout[i]:
            mods.append(nn.Dropout(net.dropout[i]))
    return nn.Sequential(*mods).eval()


_ACTIVATIONS = [(nn.Sigmoid, "sigmoid"), (nn.Tanh, "tanh"), (nn.ReLU, "relu"),
                (nn.Softsign, "softsign"), (nn.SiLU, "silu"), (Step, "step"),
                (LeCunTanh, "lecun_tanh"), (nn.Identity, "identity")]


def _activation_name(m, where):
    for cls, name in _ACTIVATIONS:
        if type(m) is cls:
            return name
    if type(m) is nn.LeakyReLU:
        if m.negative_slope != LEAKY_SLOPE:
            raise ValueError(f"{where}: LeakyReLU(negative_slope={m.negative_slope}) is not "
                             f"fastbp's leaky_relu (slope {LEAKY_SLOPE})")
        return "leaky_relu"
    if type(m) is nn.ELU:
        if m.alpha != 1.0:
            raise ValueError(f"{where}: ELU(alpha={m.alpha}) is not fastbp's elu (alpha 1)")
        return "elu"
    if type(m) is nn.Softplus:
        if m.beta != 1 or m.threshold != 20:
            raise ValueError(f"{where}: Softplus(beta={m.beta}, threshold={m.threshold}) is "
                             "not fastbp's softplus (beta 1)")
        return "softplus"
    if type(m) is nn.GELU:
        if m.approximate != "tanh":
            raise ValueError(f"{where}: GELU(approximate={m.approximate!r}); fastbp's gelu is "
                             "the tanh approximation: use nn.GELU(approximate='tanh')")
        return "gelu"
    if type(m) is nn.Softmax:
        if m.dim not in (-1, 1):
            raise ValueError(f"{where}: Softmax(dim={m.dim}); fastbp's softmax is over the "
                             "last axis")
        return "softmax"
    return None


def _chain(rate, p):
    """The rate of two dropouts in a row."""
    return p if rate == 0 else 1 - (1 - rate) * (1 - p)


def from_torch(module, dtype, network_cls):
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"module must be a torch.nn.Sequential, got {type(module).__name__}")
    mods = list(module)
    layers = []       # dicts: linear, bn, act, dropout (after)
    input_dropout = 0.0
    k = 0
    while k < len(mods) and type(mods[k]) is nn.Dropout and not layers:
        input_dropout = _chain(input_dropout, mods[k].p)
        k += 1
    for pos in range(k, len(mods)):
        m, where = mods[pos], f"module [{pos}] {type(mods[pos]).__name__}"
        if type(m) is nn.Linear:
            if m.bias is None:
                raise ValueError(f"{where}: a Linear without bias is not supported")
            if layers and m.in_features != layers[-1]["out"]:
                raise ValueError(f"{where}: in_features {m.in_features} != the previous "
                                 f"layer's {layers[-1]['out']}")
            layers.append(dict(linear=m, bn=None, act=None, dropout=0.0,
                               in_features=m.in_features, out=m.out_features))
            continue
        if not layers:
            raise ValueError(f"{where}: the Sequential must start with Linear (or Dropout)")
        cur = layers[-1]
        if type(m) is nn.BatchNorm1d:
            if cur["bn"] is not None or cur["act"] is not None or cur["dropout"]:
                raise ValueError(f"{where}: batch norm must come right after its Linear")
            if not m.track_running_stats or m.running_mean is None:
                raise ValueError(f"{where}: batch norm without running statistics")
            if abs(m.eps - BN_EPS) > 1e-12 or m.momentum != BN_MOMENTUM:
                raise ValueError(f"{where}: eps={m.eps}, momentum={m.momentum}; fastbp's batch "
                                 f"norm has eps={BN_EPS}, momentum={BN_MOMENTUM}")
            cur["bn"] = m
            continue
        if type(m) is nn.Dropout:
            cur["dropout"] = _chain(cur["dropout"], m.p)
            continue
        name = _activation_name(m, where)
        if name is None:
            raise ValueError(f"{where} is not supported (Linear, BatchNorm1d, Dropout and "
                             "fastbp's activations are)")
        if cur["act"] is not None or cur["dropout"]:
            raise ValueError(f"{where}: a second activation for one layer")
        cur["act"] = name
    if not layers:
        raise ValueError("the Sequential holds no Linear layer")
    last = layers[-1]
    if last["bn"] is not None or last["dropout"]:
        raise ValueError("batch norm or dropout after the output layer is not supported")
    sizes = [layers[0]["in_features"]] + [lay["out"] for lay in layers]
    hidden = [lay["act"] or "identity" for lay in layers[:-1]]
    if dtype is None:
        dtype = "float64" if layers[0]["linear"].weight.dtype == torch.float64 else "float32"
    net = network_cls(sizes, activation=hidden or "tanh", output=last["act"] or "identity",
                      init="zeros", dtype=dtype, dropout=[lay["dropout"] for lay in layers[:-1]],
                      input_dropout=input_dropout,
                      batch_norm=[lay["bn"] is not None for lay in layers[:-1]])
    with torch.no_grad():
        for i, lay in enumerate(layers):
            net.weights[i][...] = lay["linear"].weight.detach().cpu().numpy().T
            net.biases[i][...] = lay["linear"].bias.detach().cpu().numpy()
            bn = lay["bn"]
            if bn is not None:
                net.gammas[i][...] = bn.weight.detach().cpu().numpy() if bn.affine else 1
                net.betas[i][...] = bn.bias.detach().cpu().numpy() if bn.affine else 0
                net.running_means[i][...] = bn.running_mean.cpu().numpy()
                net.running_vars[i][...] = bn.running_var.cpu().numpy()
    return net
