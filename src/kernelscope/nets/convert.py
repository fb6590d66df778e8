"""``from_torch(module)``: the :mod:`kernelscope.nets` network of a torch model's architecture — the NNGP and NTK its
random finite versions converge to as the widths grow (THEORY.md §4).

The weights of the module are not read: the network describes the distribution of its initialisation. It reads an
``nn.Sequential`` (nested ones too), or any model ``torch.fx`` can trace, whose graph is a chain of the operations
below with residual additions ``a + b`` (each addition becomes ``FanOut(2)``, ``parallel(branch_a, branch_b)``,
``FanInSum()`` from the point where the two branches part; the branches must not share operations):

=============================================================  ===============================================
torch                                                          nets
=============================================================  ===============================================
``nn.Linear(in, out, bias)``                                   ``Dense(out, w_std, b_std)``
``nn.Conv1d/Conv2d`` (groups 1, dilation 1; padding 'valid',    ``Conv(out, kernel, stride, padding)``
'same' or the explicit padding equal to it; zeros or circular)
``nn.ReLU``, ``LeakyReLU``, ``Tanh``, ``Sigmoid``, ``GELU``,       ``ReLU()``, ``LeakyReLU(s)``, ``Tanh()``,
``torch.erf``, ``sin``, ``cos``, ``abs``, ``exp`` (modules,         ``Sigmoid()``, ``GELU()``, ``Erf()``, ``Sin()``,
functions or tensor methods)                                    ``Cos()``, ``Abs()``, ``Exp()``
other elementwise activations (``ELU``, ``SiLU``, ``Softplus``,  ``Elementwise(fn)`` (Gauss–Hermite quadrature)
``Mish``, ``Hardtanh``, ...)
``nn.AvgPool1d/2d`` (floor mode; padding as for Conv)           ``AvgPool(kernel, stride, padding)``
``nn.AdaptiveAvgPool1d/2d(1)``, ``x.mean((2, 3))``              ``GlobalAvgPool()``
``nn.Flatten()``, ``torch.flatten(x, 1)``, ``x.flatten(1)``     ``Flatten()``
``nn.LayerNorm`` over all but the batch axis                    ``LayerNorm(axis)`` (its affine weights, 1 and 0 at
                                                                initialisation, are not part of the limit)
``nn.Identity``, ``nn.Dropout`` in eval mode, eval-mode           ``Identity()``, a scale ``ABReLU(s, s)``
``BatchNorm`` at its initial statistics
``a + b``                                                       ``FanOut(2), parallel(...), FanInSum()``
=============================================================  ===============================================

The kernel of an activation assumes its input is a Gaussian process at infinite width: the output of a Dense or
Conv, or a sum of such outputs (neural-tangents' assumption too). An activation applied to a sum that carries the
output of another activation — a residual stream of post-activations, ``relu(x + f(x))`` with ``x = relu(...)`` —
or to the raw input gets a warning: its finite networks converge to another kernel. Pre-activation blocks
(``x + conv(relu(conv(relu(x))))`` with ``x`` the output of a Conv) keep the limit exact.

Anything else is refused by name (``MaxPool2d``, ``BatchNorm`` in training mode or with learnt statistics,
``Dropout`` in training mode, dilated or grouped convolutions, concatenations, ...), with the way out:
:func:`kernelscope.nets.monte_carlo` takes any ``factory(seed) -> nn.Module`` and estimates the kernels with
standard errors.

The scales: ``w_std`` and ``b_std`` given apply to every layer. Left None, they are those of torch's default
initialisation, layer by layer: ``kaiming_uniform_(a=√5)`` weights and ``U(±1/√fan_in)`` biases both have variance
``1/(3·fan_in)``, so ``w_std = 1/√3`` (the NTK parameterisation divides by ``√fan_in`` itself) and
``b_std = 1/√(3·fan_in)`` with the layer's own fan-in (in_features, or in_channels·kernel size) — 0 without a
bias. The network's ``repr`` shows the scales it reads. ``parameterization='standard'`` gives the kernel of the
standard parameterisation (torch's own) instead, whose NTK grows with the widths.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .._arrays import ValidationError, check_choice, check_nonnegative, check_positive, warn
from . import finite as _finite
from .activations import GELU, ABReLU, Abs, Cos, Elementwise, Erf, Exp, Identity, LeakyReLU, ReLU, Sigmoid, Sin, Tanh
from .combinators import FanInSum, FanOut, parallel, serial
from .conv import AvgPool, Conv, Flatten, GlobalAvgPool, conv_geometry
from .dense import Dense
from .engine import Layer
from .normalization import LayerNorm

__all__ = ["from_torch"]

# activations by torch function / tensor-method name -> nets layer
_FUNCTIONS = {torch.relu: ReLU, F.relu: ReLU, torch.tanh: Tanh, F.tanh: Tanh, torch.sigmoid: Sigmoid,
              F.sigmoid: Sigmoid, torch.erf: Erf, torch.special.erf: Erf, torch.sin: Sin, torch.cos: Cos,
              torch.abs: Abs, torch.exp: Exp}
_METHODS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "erf": Erf, "sin": Sin, "cos": Cos, "abs": Abs,
            "exp": Exp}
_ELEMENTWISE = (nn.ELU, nn.CELU, nn.SELU, nn.SiLU, nn.Softplus, nn.Mish, nn.Softsign, nn.Hardtanh, nn.ReLU6,
                nn.Hardswish, nn.Hardsigmoid, nn.LogSigmoid, nn.Tanhshrink)
_ADD = (operator.add, operator.iadd, torch.add)
_REFUSED = {nn.modules.pooling._MaxPoolNd: "max pooling has no closed-form kernel",
            nn.modules.pooling._AdaptiveMaxPoolNd: "max pooling has no closed-form kernel",
            nn.Embedding: "an embedding of integer inputs has no infinite-width kernel here",
            nn.MultiheadAttention: "attention has no kernel in kernelscope.nets"}
_WAY_OUT = "nets.monte_carlo(lambda seed: ..., X) estimates the kernels of any torch model, with standard errors."


def _refuse(what: str, why: str) -> ValidationError:
    return ValidationError("module", "layers with an infinite-width kernel (nets.from_torch's table)",
                           f"{what}: {why}", _WAY_OUT)


def _init_scales(fan_in: int, bias: bool, w_std: float | None, b_std: float | None) -> tuple[float, float]:
    """torch's default initialisation (variance 1/(3·fan_in) for weights and biases) unless given."""
    w = 1.0 / math.sqrt(3.0) if w_std is None else w_std
    b = (1.0 / math.sqrt(3.0 * fan_in) if bias else 0.0) if b_std is None else (b_std if bias else 0.0)
    return w, b


def _padding(mod: nn.Module, name: str, kernel: tuple, stride: tuple, padding: Any, mode: str,
             spatial: tuple | None) -> str:
    """The nets padding ('valid', 'same', 'circular') computing the same positions as torch's ``padding``."""
    if mode not in ("zeros", "circular"):
        raise _refuse(f"{type(mod).__name__} '{name}'", f"padding_mode={mode!r} (nets pads with zeros or circularly)")
    same = "circular" if mode == "circular" else "same"
    if padding == "same":
        return same
    pads = (padding,) * len(kernel) if isinstance(padding, int) else tuple(padding)
    if padding == "valid" or not any(pads):
        return "valid"
    if all(s == 1 and 2 * p == k - 1 for k, s, p in zip(kernel, stride, pads)):
        return same
    if spatial is not None and all(conv_geometry(L, k, s, "same") == ((L + 2 * p - k) // s + 1, p)
                                   for L, k, s, p in zip(spatial, kernel, stride, pads)):
        return same  # the same output positions and offsets at this input size
    raise _refuse(f"{type(mod).__name__} '{name}'",
                  f"padding={padding} with stride={stride} is neither 'valid' nor 'same' (TensorFlow/JAX's: "
                  "⌈L/s⌉ outputs, the odd zero after); pass input_shape= if it equals 'same' at your input size")


def _module_layer(mod: nn.Module, name: str, spatial: tuple | None, ndim: int | None, w_std, b_std,
                  parameterization: str) -> Layer:
    """The nets layer of one leaf module."""
    what = f"{type(mod).__name__} '{name}'"
    if isinstance(mod, nn.Linear):
        w, b = _init_scales(mod.in_features, mod.bias is not None, w_std, b_std)
        return Dense(mod.out_features, w, b, parameterization)
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
        if mod.groups != 1 or any(d != 1 for d in mod.dilation):
            raise _refuse(what, f"groups={mod.groups}, dilation={mod.dilation} (nets.Conv has neither)")
        padding = _padding(mod, name, mod.kernel_size, mod.stride, mod.padding, mod.padding_mode, spatial)
        w, b = _init_scales(mod.in_channels * math.prod(mod.kernel_size), mod.bias is not None, w_std, b_std)
        return Conv(mod.out_channels, mod.kernel_size, mod.stride, padding, w, b, parameterization)
    if isinstance(mod, (nn.AvgPool1d, nn.AvgPool2d)):
        kernel = (mod.kernel_size,) * (1 if isinstance(mod, nn.AvgPool1d) else 2) \
            if isinstance(mod.kernel_size, int) else tuple(mod.kernel_size)
        stride = kernel if mod.stride is None else ((mod.stride,) * len(kernel) if isinstance(mod.stride, int)
                                                    else tuple(mod.stride))
        if mod.ceil_mode or getattr(mod, "divisor_override", None) or not mod.count_include_pad:
            raise _refuse(what, "ceil_mode, divisor_override or count_include_pad=False (nets averages the "
                          "zeros of 'same' padding too)")
        return AvgPool(kernel, stride, _padding(mod, name, kernel, stride, mod.padding, "zeros", spatial))
    if isinstance(mod, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        size = mod.output_size
        if any(s != 1 for s in ((size,) if isinstance(size, int) else size)):
            raise _refuse(what, f"output_size={size} (only 1: the global average)")
        return GlobalAvgPool()
    if isinstance(mod, nn.Flatten):
        if mod.start_dim != 1 or mod.end_dim != -1:
            raise _refuse(what, f"start_dim={mod.start_dim}, end_dim={mod.end_dim} (only 1, -1)")
        return Flatten()
    if isinstance(mod, nn.LayerNorm):
        k = len(mod.normalized_shape)
        if ndim is not None and k != ndim - 1:
            raise _refuse(what, f"it normalises the last {k} of {ndim - 1} axes (nets: the channels and "
                          "positions together)")
        return LayerNorm(axis=-1 if k == 1 else tuple(range(1, k + 1)), eps=mod.eps)
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        if mod.training:
            raise _refuse(what, "in training mode its output depends on the batch; call .eval() to use its running "
                          "statistics")
        stats = (mod.running_mean is not None and (bool(mod.running_mean.any()) or not bool((mod.running_var == 1)
                 .all()))) or (mod.affine and (not bool((mod.weight == 1).all()) or bool(mod.bias.any())))
        if stats:
            raise _refuse(what, "in eval mode with learnt statistics or affine weights it is a per-channel affine "
                          "map, which has no infinite-width layer")
        s = 1.0 / math.sqrt(1.0 + mod.eps)  # x / √(running_var + eps) at the initial statistics
        return ABReLU(s, s)
    if isinstance(mod, nn.modules.dropout._DropoutNd):
        if mod.training and mod.p > 0:
            raise _refuse(what, f"in training mode (p={mod.p:g}) it draws a new mask on every call; call .eval()")
        return Identity()
    simple = {nn.ReLU: ReLU, nn.Tanh: Tanh, nn.Sigmoid: Sigmoid, nn.Identity: Identity}
    if type(mod) in simple:
        return simple[type(mod)]()
    if isinstance(mod, nn.LeakyReLU):
        return LeakyReLU(mod.negative_slope)
    if isinstance(mod, nn.GELU):
        return GELU(approximate=mod.approximate == "tanh")
    if isinstance(mod, _ELEMENTWISE):
        return Elementwise(mod, name=type(mod).__name__)
    for kind, why in _REFUSED.items():
        if isinstance(mod, kind):
            raise _refuse(what, why)
    raise _refuse(what, "not a layer kernelscope.nets knows")


def _function_layer(node: fx.Node, ndim: int | None) -> Layer:
    """The nets layer of a call_function / call_method node with one tensor input (of ``ndim`` axes if known)."""
    target, args, kwargs = node.target, node.args, node.kwargs
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    if node.op == "call_function" and target in _FUNCTIONS and len(args) == 1 and not kwargs:
        return _FUNCTIONS[target]()
    if node.op == "call_method" and target in _METHODS and len(args) == 1 and not kwargs:
        return _METHODS[target]()
    if target in (F.leaky_relu,):
        return LeakyReLU(args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01))
    if target is F.gelu:
        return GELU(approximate=kwargs.get("approximate", "none") == "tanh")
    if target in (torch.flatten, "flatten"):
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
        if start == 1 and end == -1:
            return Flatten()
    if target in (torch.mean, "mean") and not kwargs.get("keepdim", False):
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        dims = {dims} if isinstance(dims, int) else set(dims or ())
        nd = ndim or (4 if len(dims) == 2 else 3)  # without input_shape: the dims given are the positions
        if {d % nd for d in dims} == set(range(2, nd)):
            return GlobalAvgPool()
    if target in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d) and tuple(
            (args[1],) if isinstance(args[1], int) else args[1]) in ((1,), (1, 1)):
        return GlobalAvgPool()
    raise _refuse(f"the operation {name}{tuple(a for a in args[1:])}", "not a layer kernelscope.nets knows")


def _tensor_inputs(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.args if isinstance(a, fx.Node)] + [a for a in node.kwargs.values()
                                                               if isinstance(a, fx.Node)]


def _dominators(graph: fx.Graph) -> dict[fx.Node, set[fx.Node]]:
    """dom(v): the nodes on every path from the input to v (v included)."""
    dom: dict[fx.Node, set[fx.Node]] = {}
    for node in graph.nodes:
        ins = _tensor_inputs(node) if node.op != "placeholder" else []
        dom[node] = {node} | (set.intersection(*(dom[i] for i in ins)) if ins else set())
    return dom


def from_torch(module: nn.Module, *, w_std: float | None = None, b_std: float | None = None,
               parameterization: str = "ntk", input_shape: Sequence[int] | None = None) -> Layer:
    """The :mod:`kernelscope.nets` network with the architecture of ``module`` (module docstring: what is read).

    Parameters
    ----------
    module : a torch.nn.Module taking one tensor (N, d) or (N, C, *S) and returning (N, out).
    w_std, b_std : the scales of every Dense and Conv; None (default): torch's default initialisation layer by
        layer, ``w_std = 1/√3`` and ``b_std = 1/√(3·fan_in)`` (0 without a bias).
    parameterization : 'ntk' (default, THEORY.md §4) or 'standard'.
    input_shape : the shape of one example, e.g. (C, H, W): lets explicit paddings equal to 'same' at that size
        through, and checks LayerNorm's axes. Optional.

    Returns
    -------
    a ``nets`` network (``serial(...)``): ``net.kernel(X)`` its NNGP and NTK, ``net.finite(width=...)`` a random
    network of the same architecture whose empirical kernels converge to them.
    """
    if not isinstance(module, nn.Module):
        raise ValidationError("module", "a torch.nn.Module", type(module).__name__)
    w_std = None if w_std is None else check_positive(w_std, "w_std")
    b_std = None if b_std is None else check_nonnegative(b_std, "b_std")
    parameterization = check_choice(parameterization, "parameterization", _finite.PARAMETERIZATIONS)
    try:
        gm = fx.GraphModule(module, fx.Tracer().trace(module))
    except Exception as exc:  # noqa: BLE001 - any tracing failure: say what torch.fx said
        raise ValidationError("module", "a model torch.fx can trace (no control flow on the values of the input)",
                              f"{type(module).__name__}: {type(exc).__name__}: {exc}", _WAY_OUT) from None
    if input_shape is not None:
        param = next(module.parameters(), None)
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float64
        fx.passes.shape_prop.ShapeProp(gm).propagate(torch.zeros(2, *input_shape, dtype=dtype))
    nodes = list(gm.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise ValidationError("module", "a forward taking one tensor", f"{len(inputs)} inputs")
    output = next(n for n in nodes if n.op == "output")
    if not isinstance(output.args[0], fx.Node):
        raise ValidationError("module", "a forward returning one tensor", f"{type(output.args[0]).__name__}")
    dom = _dominators(gm.graph)
    done: set[fx.Node] = set()
    gaussian: dict[fx.Node, bool] = {}

    def shape(node: fx.Node) -> tuple | None:
        meta = node.meta.get("tensor_meta")
        return None if meta is None else tuple(meta.shape)

    def layer(node: fx.Node) -> Layer:
        src = shape(_tensor_inputs(node)[0])
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            return _module_layer(mod, node.target, None if src is None else src[2:], None if src is None
                                 else len(src), w_std, b_std, parameterization)
        return _function_layer(node, None if src is None else len(src))

    def is_gaussian(node: fx.Node) -> bool:
        """Whether ``node`` is a Gaussian process at infinite width: a Dense/Conv output, linear maps and sums of
        such (not the raw input, not an activation's output)."""
        if node not in gaussian:
            ins = _tensor_inputs(node)
            if node.op == "placeholder" or not ins:
                gaussian[node] = False
            elif node.op == "call_function" and node.target in _ADD and len(ins) == 2:
                gaussian[node] = all(is_gaussian(i) for i in ins)
            else:
                lay = built[node]
                if isinstance(lay, (Dense, Conv)):
                    gaussian[node] = True
                elif _linear(lay):
                    gaussian[node] = is_gaussian(ins[0])
                else:
                    gaussian[node] = False
        return gaussian[node]

    built: dict[fx.Node, Layer] = {}

    def build(node: fx.Node, stop: fx.Node) -> Layer:
        """The layers computing ``node`` from ``stop`` (excluded)."""
        layers: list[Layer] = []
        while node is not stop:
            if node.op == "placeholder" or node in done:
                raise _refuse("the graph", "its branches share operations or reach the input apart (only chains "
                              "with residual additions are series-parallel networks)")
            done.add(node)
            ins = _tensor_inputs(node)
            if node.op == "call_function" and node.target in _ADD and len(ins) == 2 and len(node.args) == 2 \
                    and not node.kwargs:
                common = dom[node] - {node}
                if not common:
                    raise _refuse("the graph", "an addition of a tensor that does not come from the input")
                split = max(common, key=lambda d: len(dom[d]))  # where the two branches part
                layers[:0] = [FanOut(2), parallel(build(ins[0], split), build(ins[1], split)), FanInSum()]
                node = split
                continue
            if len(ins) != 1:
                raise _refuse(f"the operation {node.target}", f"{len(ins)} tensor inputs (only additions of two "
                              "branches join them)")
            built[node] = layer(node)
            layers.insert(0, built[node])
            node = ins[0]
        return serial(*layers) if layers else Identity()

    net = build(output.args[0], inputs[0])
    for node, lay in built.items():
        if not _linear(lay) and not isinstance(lay, (Dense, Conv)):
            src = _tensor_inputs(node)[0]
            while src in built and _linear(built[src]):  # back through linear maps without weights
                src = _tensor_inputs(src)[0]
            if src.op == "call_function" and src.target in _ADD and not is_gaussian(src):
                warn(f"from_torch: the kernel of {lay!r} at '{node.name}' treats its input, a sum carrying an "
                     "activation's output (or the raw input), as Gaussian (as neural-tangents does): the finite "
                     "networks converge to another kernel. Residual blocks that add Conv/Dense outputs "
                     "(pre-activation blocks) keep the limit exact.")
                break
    return net


def _linear(layer: Layer) -> bool:
    """Layers without weights that map a Gaussian process to a Gaussian process."""
    return isinstance(layer, (Identity, AvgPool, GlobalAvgPool, Flatten, LayerNorm)) or (
        isinstance(layer, ABReLU) and layer.a == layer.b)
