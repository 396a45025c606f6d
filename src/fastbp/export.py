"""Export a Network to ONNX: the graph of ``net.predict``, for any ONNX runtime.

    model = fastbp.export.to_onnx(net, "model.onnx")      # onnx.ModelProto; input "X", output "Y"

The graph is built with the ``onnx`` package's helpers (``pip install "fastbp[onnx]"``): per
layer a MatMul and an Add, batch norm folded into a per-unit scale and shift (inference
form, the running statistics), dropout gone (inference), and the activation as one ONNX
operator where one exists, else composed from standard ones (LeCun's tanh, SiLU, GELU's tanh
form, the step; in float64 also ELU, leaky ReLU, softplus and softsign, which onnxruntime
runs in float32 only). Float32 and float64 networks export in their dtype; the batch axis is
dynamic.
"""
import numpy as np

from ._files import atomic_write
from .network import BN_EPS, Network

__all__ = ["to_onnx", "DEFAULT_OPSET"]

#: ONNX opset of :func:`to_onnx` when none is given
DEFAULT_OPSET = 17       # onnxruntime runs it everywhere; Softmax on the last axis since 13


def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("fastbp.export needs the onnx package: pip install \"fastbp[onnx]\"") \
            from None
    return onnx


class _Graph:
    """Nodes and initializers of one graph, with fresh names."""

    def __init__(self, onnx, dtype):
        self.onnx, self.helper = onnx, onnx.helper
        self.np_dtype = np.dtype(dtype)
        self.elem = (onnx.TensorProto.FLOAT if self.np_dtype == np.float32
                     else onnx.TensorProto.DOUBLE)
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, stem):
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, value, stem="c", dtype=None):
        """An initializer holding ``value`` (in the graph's dtype, or ``dtype``)."""
        name = self.name(stem)
        value = np.asarray(value, dtype=self.np_dtype if dtype is None else dtype)
        self.add_initializer(self.onnx.numpy_helper.from_array(value, name))
        return name

    def op(self, op_type, inputs, domain="", **attrs):
        out = self.name(op_type.lower())
        self.add_node(op_type, list(inputs), out, domain, attrs)
        return out

    # the two places a graph's parts go (_ContainerGraph sends them to skl2onnx)
    def add_initializer(self, tensor):
        self.inits.append(tensor)

    def add_node(self, op_type, inputs, output, domain, attrs):
        self.nodes.append(self.helper.make_node(op_type, inputs, [output],
                                                domain=domain or None, **attrs))

    def activation(self, name, x):
        """x through fastbp's activation ``name`` (the formulas of fastbp.activations)."""
        from .activations import GELU_C, GELU_SCALE, LEAKY_SLOPE, LECUN_A, LECUN_B
        if name == "identity":
            return x
        if name == "step":                       # 1 where x >= 0, else 0
            ge = self.op("GreaterOrEqual", [x, self.const(0.0)])
            return self.op("Cast", [ge], to=self.elem)
        if name in ("sigmoid", "tanh", "relu"):
            return self.op({"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}[name], [x])
        f64 = self.np_dtype == np.float64   # onnxruntime has no float64 kernels of these four
        if name == "softsign":
            return (self.op("Div", [x, self.op("Add", [self.op("Abs", [x]), self.const(1.0)])])
                    if f64 else self.op("Softsign", [x]))
        if name == "softplus":           # max(x, 0) + log(1 + exp(-|x|))
            if not f64:
                return self.op("Softplus", [x])
            e = self.op("Exp", [self.op("Neg", [self.op("Abs", [x])])])
            return self.op("Add", [self.op("Relu", [x]),
                                   self.op("Log", [self.op("Add", [e, self.const(1.0)])])])
        if name == "lecun_tanh":
            t = self.op("Tanh", [self.op("Mul", [x, self.const(LECUN_B)])])
            return self.op("Mul", [t, self.const(LECUN_A)])
        if name == "leaky_relu":
            if not f64:
                return self.op("LeakyRelu", [x], alpha=float(LEAKY_SLOPE))
            return self.op("Where", [self.op("Greater", [x, self.const(0.0)]), x,
                                     self.op("Mul", [x, self.const(LEAKY_SLOPE)])])
        if name == "elu":
            if not f64:
                return self.op("Elu", [x], alpha=1.0)
            neg = self.op("Sub", [self.op("Exp", [self.op("Min", [x, self.const(0.0)])]),
                                  self.const(1.0)])
            return self.op("Where", [self.op("Greater", [x, self.const(0.0)]), x, neg])
        if name == "silu":
            return self.op("Mul", [x, self.op("Sigmoid", [x])])
        if name == "gelu":                       # 0.5 x (1 + tanh(s (x + c x^3)))
            x3 = self.op("Mul", [self.op("Mul", [x, x]), x])
            inner = self.op("Add", [x, self.op("Mul", [x3, self.const(GELU_C)])])
            t = self.op("Tanh", [self.op("Mul", [inner, self.const(GELU_SCALE)])])
            half = self.op("Mul", [x, self.const(0.5)])
            return self.op("Mul", [half, self.op("Add", [t, self.const(1.0)])])
        if name == "softmax":
            return self.op("Softmax", [x], axis=-1)
        raise ValueError(f"activation {name!r} has no ONNX form")   # pragma: no cover


def _forward(g, net, x):
    """Adds ``net.predict`` of the tensor named ``x`` (in the network's dtype) to the graph
    ``g``; returns the name of the output."""
    for i, (W, b, act) in enumerate(zip(net.weights, net.biases, net.activations)):
        x = g.op("Add", [g.op("MatMul", [x, g.const(W, f"W{i}")]), g.const(b, f"b{i}")])
        if net.gammas[i] is not None:            # inference: a per-unit scale and shift
            scale = net.gammas[i] / np.sqrt(net.running_vars[i] + BN_EPS)
            shift = net.betas[i] - net.running_means[i] * scale
            x = g.op("Add", [g.op("Mul", [x, g.const(scale, f"bn_scale{i}")]),
                             g.const(shift, f"bn_shift{i}")])
        x = g.activation(act, x)
    return x


class _ContainerGraph(_Graph):
    """A _Graph whose nodes and initializers go into a skl2onnx converter's container,
    named by its scope (unique across the whole converted pipeline)."""

    def __init__(self, onnx, dtype, scope, container):
        super().__init__(onnx, dtype)
        self.scope, self.container = scope, container

    def name(self, stem):
        return self.scope.get_unique_variable_name(f"fastbp_{stem}")

    def add_initializer(self, tensor):
        # the container copies a TensorProto's raw_data; strings are not raw data
        content = (list(tensor.string_data)
                   if tensor.data_type == self.onnx.TensorProto.STRING else tensor)
        self.container.add_initializer(tensor.name, tensor.data_type, list(tensor.dims),
                                       content)

    def add_node(self, op_type, inputs, output, domain, attrs):
        self.container.add_node(op_type, inputs, [output], op_domain=domain,
                                name=self.scope.get_unique_operator_name(f"fastbp_{op_type}"),
                                **attrs)


def to_onnx(net, path=None, opset=None):
    """The ONNX model (``onnx.ModelProto``) of ``net.predict``: input "X" (batch,
    n_inputs), output "Y" (batch, n_outputs), in the network's dtype.

    ``path``: also write it there (atomically). ``opset``: the ONNX opset to target
    (default DEFAULT_OPSET; 13 or newer). The model passes ``onnx.checker``.

    Parameters
    ----------
    net : Network
        The network; batch norm is folded into a per-unit scale and shift (its running
        statistics), dropout left out (inference).
    path : str, os.PathLike or None
        Where to write the model too.
    opset : int or None
        Target ONNX opset (None: :data:`DEFAULT_OPSET`).

    Returns
    -------
    onnx.ModelProto

    Examples
    --------
    >>> import fastbp
    >>> net = fastbp.Network([4, 8, 3], activation="gelu", output="softmax", seed=0)
    >>> model = fastbp.export.to_onnx(net)             # needs: pip install "fastbp[onnx]"
    >>> [i.name for i in model.graph.input], [o.name for o in model.graph.output]
    (['X'], ['Y'])
    """
    onnx = _require_onnx()
    if not isinstance(net, Network):
        raise TypeError(f"net must be a fastbp.Network, got {type(net).__name__}")
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or \
            not 13 <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset must be an int in [13, {onnx.defs.onnx_opset_version()}], "
                         f"got {opset!r}")
    g = _Graph(onnx, net.dtype)
    x = _forward(g, net, "X")
    g.nodes.append(onnx.helper.make_node("Identity", [x], ["Y"]))
    graph = onnx.helper.make_graph(
        g.nodes, "fastbp_network",
        [onnx.helper.make_tensor_value_info("X", g.elem, ["batch", net.n_inputs])],
        [onnx.helper.make_tensor_value_info("Y", g.elem, ["batch", net.n_outputs])],
        initializer=g.inits)
    model = onnx.helper.make_model(graph, producer_name="fastbp",
                                   opset_imports=[onnx.helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 9)      # readable by current onnxruntime releases
    onnx.checker.check_model(model)
    if path is not None:
        atomic_write(path, model.SerializeToString())
    return model
