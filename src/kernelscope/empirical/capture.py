"""How a model uses its trainable weights, read off a forward pass (``torch.overrides.TorchFunctionMode``).

A weight ``W`` (with its bias ``b``) that enters the model only as the weight of ``F.linear``, ``F.conv1d`` or
``F.conv2d`` applied to the batch — ``z = W a + b`` for each example and each use — has the per-layer NTK factors of
:mod:`kernelscope.empirical.features`: the layer inputs ``a`` and the output gradients ``∂f/∂z``. This covers
``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d`` (any stride, padding, padding mode, dilation, groups) and every module
that calls these functions with its weight, e.g. the library's own NTK-parameterised layers, which scale the input
or the output of the call. A zero ``ε`` is added to each such output, so that one backward pass gives
``∂f/∂z = ∂f/∂ε`` for every layer at once (also when a later in-place operation overwrites z).

Every other trainable parameter (the scale of a LayerNorm or an eval-mode BatchNorm, a bias added outside the
call, a weight used twice in different ways, a parameter of the model's own forward) gets its per-example
gradients from the smallest module that holds all its uses and sees the batch as its first axis: its inputs are
recorded, a zero ``ε`` is added to its output, and a vector-Jacobian product of that module alone, vmapped over the
examples and the outputs, turns ``∂f/∂(module output)`` into ``∂f/∂p``. For a parameter of the model's own forward
this module is the model, and its per-example gradients are its Jacobian.

:func:`plan` reads which is which from one pass on two examples; :func:`capture` runs the forward and backward
passes of a chunk of examples and returns what the features need.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vjp, vmap
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from .._model import tensor_bytes

__all__ = ["Conv", "Group", "Plan", "Capture", "StructuredUnsupported", "plan", "capture"]

# the functions whose weight factorises: spatial dimensions of their input (0 for F.linear)
_FACTORED = {F.linear: 0, torch.conv1d: 1, torch.conv2d: 2}
_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


class StructuredUnsupported(ValueError):
    """``method='structured'`` cannot handle this model: a module whose per-example gradients are needed does not
    compute one example independently of the others, or changes its inputs in place."""


@dataclass(frozen=True)
class Conv:
    """The geometry of one convolution call in two dimensions (a Conv1d's input gets a height of 1).

    kernel, stride, dilation : (height, width).  pads : (left, right, top, bottom) zeros, as ``F.pad`` takes them.
    """

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]
    groups: int


@dataclass(frozen=True)
class Group:
    """One factorised layer: a linear map (``'linear'``) or a convolution (``'conv'``) and the names of its
    trainable weight and bias (None where not trainable, or where the parameter is used elsewhere too)."""

    kind: str
    weight: str | None
    bias: str | None


@dataclass
class Plan:
    """What :func:`plan` read off a forward pass.

    groups : the factorised layers, in the order of their first call.
    fallback : module name -> the names of the parameters whose per-example gradients that module's
        vector-Jacobian products give ("" is the model itself).
    group_bytes : per group, bytes per example of its inputs ``a`` (summed over calls) and of its outputs ``z``.
    group_shapes : per group, per call: (input shape, output shape) without the batch axis, and the Conv geometry.
    fallback_bytes : per fallback module, bytes per example of its outputs and of what its forward produces.
    sizes : parameter name -> number of entries.
    """

    groups: list[Group]
    fallback: dict[str, tuple[str, ...]]
    group_bytes: list[tuple[float, float]]
    group_shapes: list[list[tuple[tuple, tuple, Conv | None]]]
    fallback_bytes: dict[str, tuple[float, float]]
    sizes: dict[str, int]

    @property
    def factored(self) -> set[str]:
        return {name for g in self.groups for name in (g.weight, g.bias) if name is not None}


@dataclass
class Capture:
    """The forward and backward pass of one chunk of n examples.

    calls : per group, per call: (layer input a, output gradients g of shape (n, O, *z.shape[1:]), Conv or None).
    modules : per fallback module, per call: (recorded args, kwargs, output gradients (n, O, *out.shape[1:])).
    """

    calls: list[list[tuple[torch.Tensor, torch.Tensor, Conv | None]]] = field(default_factory=list)
    modules: dict[str, list[tuple[Any, Any, torch.Tensor]]] = field(default_factory=dict)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[-1]))


def _geometry(spatial: int, weight: torch.Tensor, call: dict[str, Any]) -> Conv:
    """The Conv of a conv1d/conv2d call (torch's defaults for the arguments not given)."""
    kernel = tuple(weight.shape[2:])
    stride, dilation, padding = call.get("stride", 1), call.get("dilation", 1), call.get("padding", 0)
    if spatial == 1:  # (N, C, L) seen as (N, C, 1, L)
        kernel, stride = (1, kernel[0]), (1, _pair(stride)[0])
        dilation = (1, _pair(dilation)[0])
        padding = padding if isinstance(padding, str) else (0, _pair(padding)[0])
    else:
        stride, dilation = _pair(stride), _pair(dilation)
    if padding == "valid":
        pads = (0, 0, 0, 0)
    elif padding == "same":  # total d·(k − 1) per axis, the odd one after (torch's convention)
        th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
        pads = (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    else:
        ph, pw = _pair(padding)
        pads = (pw, pw, ph, ph)
    return Conv(kernel, stride, dilation, pads, int(call.get("groups", 1)))


def _batched(t: Any, n: int) -> bool:
    return isinstance(t, torch.Tensor) and t.ndim > 0 and t.shape[0] == n


class _Mode(TorchFunctionMode):
    """Watches the calls that involve a trainable parameter. Planning (``wanted`` None): records every use of each
    parameter and the module stack at that moment. Capturing: adds ``ε`` to the outputs of the wanted groups'
    calls and records their inputs."""

    def __init__(self, names: dict[int, str], n: int, stack: list[str], wanted: dict[tuple, int] | None,
                 factored: set[str] | None = None):
        super().__init__()
        self.names, self.n, self.stack, self.wanted, self.factored = names, n, stack, wanted, factored
        self.uses: dict[str, list[tuple[tuple | None, tuple[str, ...]]]] = defaultdict(list)
        self.first: dict[tuple, tuple[str, list]] = {}  # key -> (kind, [(a shape, z shape, Conv), ...])
        self.bytes: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.records: dict[int, list] = defaultdict(list)
        self.op_bytes: dict[str, float] = defaultdict(float)  # module name -> bytes its forward produced

    def _key(self, w: Any, b: Any) -> tuple[str | None, str | None]:
        kw = self.names.get(id(w)) if isinstance(w, torch.Tensor) else None
        kb = self.names.get(id(b)) if isinstance(b, torch.Tensor) else None
        if self.factored is not None:
            kw, kb = (kw if kw in self.factored else None), (kb if kb in self.factored else None)
        return kw, kb

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        spatial = _FACTORED.get(func)
        if spatial is not None:
            call = dict(zip(_ARGS, args))
            call.update(kwargs)
            a, w = call.get("input"), call.get("weight")
            key = self._key(w, call.get("bias"))
            if key != (None, None):
                z = func(*args, **kwargs)
                ok = (_batched(a, self.n) and _batched(z, self.n) and a.ndim >= 2
                      and (spatial == 0 or a.ndim == spatial + 2))
                geo = _geometry(spatial, w, call) if spatial and ok else None
                if self.wanted is None:
                    self._count(z)
                    for name in key:
                        if name is not None:
                            self.uses[name].append((key if ok else None, tuple(self.stack)))
                    if ok:
                        kind, shapes = self.first.setdefault(key, ("conv" if spatial else "linear", []))
                        shapes.append((tuple(a.shape[1:]), tuple(z.shape[1:]), geo))
                        self.bytes[key][0] += tensor_bytes(a) / self.n
                        self.bytes[key][1] += tensor_bytes(z) / self.n
                    return z
                if key in self.wanted:
                    if not ok:
                        raise StructuredUnsupported(
                            f"method='structured': a layer of the model gets input of shape {tuple(a.shape)} for a "
                            f"chunk of {self.n} examples, though it saw the batch as its first axis before. "
                            "Use method='jacobian'.")
                    eps = torch.zeros_like(z, requires_grad=True)
                    a4 = a.unsqueeze(2) if spatial == 1 else a  # conv1d as conv2d of height 1
                    self.records[self.wanted[key]].append((a4.detach(), eps, geo))
                    return z + eps
                return z
        out = func(*args, **kwargs)
        if self.wanted is None:
            self._count(out)
            used = {self.names[id(t)] for t in tree_flatten((args, kwargs))[0]
                    if isinstance(t, torch.Tensor) and id(t) in self.names}
            if used and any(isinstance(t, torch.Tensor) for t in tree_flatten(out)[0]):
                for name in used:  # used otherwise than as the weight of a factorised call
                    self.uses[name].append((None, tuple(self.stack)))
        return out

    def _count(self, out: Any) -> None:
        nbytes = sum(tensor_bytes(t) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)) / self.n
        for name in self.stack:
            self.op_bytes[name] += nbytes


def _hooks(model: nn.Module, names: list[str], pre, post) -> list:
    handles = []
    for name in names:
        mod = model.get_submodule(name)
        handles.append(mod.register_forward_pre_hook(lambda m, args, kwargs, name=name: pre(name, args, kwargs),
                                                     with_kwargs=True))
        handles.append(mod.register_forward_hook(lambda m, args, out, name=name: post(name, out)))
    return handles


def _reduced(key: tuple | None, good: set[str]) -> tuple | None:
    """A group key with the names that do not factorise replaced by None."""
    return None if key is None else tuple(k if k in good else None for k in key)


def plan(model: nn.Module, x: torch.Tensor, params: dict[str, torch.Tensor]) -> Plan:
    """Which trainable parameters factorise and which modules give the others' per-example gradients, from one
    forward pass on the first two examples of ``x`` (with the weights ``params``)."""
    n = min(2, x.shape[0])
    names = {id(t): k for k, t in params.items()}
    stack: list[str] = []
    capable: dict[str, bool] = {}
    out_bytes: dict[str, float] = defaultdict(float)
    mode = _Mode(names, n, stack, None)

    def pre(name, args, kwargs):
        stack.append(name)
        capable[name] = capable.get(name, True) and any(_batched(t, n) for t in tree_flatten((args, kwargs))[0])

    def post(name, out):
        stack.pop()
        capable[name] = capable[name] and _batched(out, n)
        out_bytes[name] += tensor_bytes(out) / n if isinstance(out, torch.Tensor) else 0.0

    handles = _hooks(model, [k for k, _ in model.named_modules()], pre, post)
    try:
        with torch.no_grad(), mode:
            functional_call(model, params, (x[:n],))
    finally:
        for h in handles:
            h.remove()
    # a parameter factorises when every use is as the weight (or bias) of one group; dropping the others from
    # their groups can merge keys, so repeat until nothing changes
    good = set(mode.uses)
    while True:
        bad = {name for name, uses in mode.uses.items() if name in good
               and (any(k is None for k, _ in uses) or len({_reduced(k, good) for k, _ in uses}) != 1)}
        if not bad:
            break
        good -= bad
    groups, group_bytes, group_shapes, seen = [], [], [], {}
    for key, (kind, shapes) in mode.first.items():
        rk = _reduced(key, good)
        if rk == (None, None):
            continue
        if rk not in seen:
            seen[rk] = len(groups)
            groups.append(Group(kind, *rk))
            group_bytes.append([0.0, 0.0])
            group_shapes.append([])
        i = seen[rk]
        group_bytes[i][0] += mode.bytes[key][0]
        group_bytes[i][1] += mode.bytes[key][1]
        group_shapes[i].extend(shapes)
    fallback: dict[str, list[str]] = {}
    for name in params:
        if name in good or not mode.uses.get(name):
            continue  # factorised, or unused (no gradient)
        stacks = [s for _, s in mode.uses[name]]
        common = []
        for level in zip(*stacks):
            if len(set(level)) > 1:
                break
            common.append(level[0])
        owner = next((m for m in reversed(common) if capable.get(m)), "")
        fallback.setdefault(owner, []).append(name)
    return Plan(groups, {k: tuple(v) for k, v in fallback.items()}, [tuple(b) for b in group_bytes], group_shapes,
                {k: (out_bytes[k], mode.op_bytes[k]) for k in fallback}, {k: t.numel() for k, t in params.items()})


def _output_gradients(out: torch.Tensor, eps: list[torch.Tensor], n_out: int) -> list[torch.Tensor]:
    """``∂(Σ_n f_o(x_n))/∂ε_k`` for every ε, each of shape (O, *ε.shape): one batched backward pass over the O
    outputs (vmap over the cotangents ``e_o``), or one pass per output where batching is not supported."""
    if n_out > 1:
        cot = torch.eye(n_out, dtype=out.dtype, device=out.device)[:, None, :].expand(n_out, *out.shape)
        try:
            grads = torch.autograd.grad(out, eps, grad_outputs=cot, is_grads_batched=True, retain_graph=True,
                                        allow_unused=True)
            return [torch.zeros((n_out, *e.shape), dtype=e.dtype, device=e.device) if g is None else g
                    for g, e in zip(grads, eps)]
        except RuntimeError:  # an operation without a batching rule: one pass per output
            pass
    per = [torch.autograd.grad(out[:, o].sum(), eps, retain_graph=o < n_out - 1, allow_unused=True)
           for o in range(n_out)]
    return [torch.stack([torch.zeros_like(e) if g[k] is None else g[k] for g in per]) for k, e in enumerate(eps)]


def capture(model: nn.Module, x: torch.Tensor, n_out: int, params: dict[str, torch.Tensor], the_plan: Plan
            ) -> Capture:
    """One forward pass of the chunk ``x`` (n examples) with ``ε`` on the outputs of the plan's groups and
    fallback modules, and one (batched) backward pass over the O outputs."""
    n = x.shape[0]
    names = {id(t): k for k, t in params.items()}
    wanted = {(g.weight, g.bias): i for i, g in enumerate(the_plan.groups)}
    mode = _Mode(names, n, [], wanted, the_plan.factored)
    pending: dict[str, list] = defaultdict(list)
    done: dict[str, list] = defaultdict(list)

    def pre(name, args, kwargs):
        leaves = tree_flatten((args, kwargs))[0]
        pending[name].append((tree_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, (args, kwargs)),
                              [t._version if isinstance(t, torch.Tensor) else None for t in leaves]))

    def post(name, out):
        inputs, versions = pending[name].pop()
        now = [t._version if isinstance(t, torch.Tensor) else None for t in tree_flatten(inputs)[0]]
        if now != versions:
            raise StructuredUnsupported(
                f"method='structured' needs the inputs of module '{name}' as they were, but its forward changes them "
                "in place. Use method='jacobian'.")
        if not _batched(out, n):
            raise StructuredUnsupported(
                f"method='structured' needs module '{name or type(model).__name__}' to return one row per example "
                f"({n}); it returned {type(out).__name__}"
                f"{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}. Use method='jacobian'.")
        eps = torch.zeros_like(out, requires_grad=True)
        done[name].append((inputs, eps))
        return out + eps

    handles = _hooks(model, list(the_plan.fallback), pre, post)
    try:
        with torch.enable_grad(), mode:
            out = functional_call(model, params, (x,))
        out = out.reshape(n, n_out)
    finally:
        for h in handles:
            h.remove()
    records = [mode.records[i] for i in range(len(the_plan.groups))]
    eps = [e for calls in records for _, e, _ in calls] + [e for name in the_plan.fallback for _, e in done[name]]
    if not eps:
        return Capture([[] for _ in the_plan.groups], {name: [] for name in the_plan.fallback})
    if out.requires_grad:
        grads = iter(_output_gradients(out, eps, n_out))
    else:  # no trainable parameter reaches the output
        grads = iter([torch.zeros((n_out, *e.shape), dtype=e.dtype, device=e.device) for e in eps])
    moved = lambda g: g.movedim(0, 1)  # noqa: E731  (O, n, ...) -> (n, O, ...)
    calls = [[(a, moved(next(grads)), geo) for a, _, geo in group] for group in records]
    modules = {name: [(args, kwargs, moved(next(grads))) for (args, kwargs), _ in done[name]]
               for name in the_plan.fallback}
    return Capture(calls, modules)


def module_jacobian(model: nn.Module, name: str, names: tuple[str, ...], params: dict[str, torch.Tensor],
                    calls: list[tuple[Any, Any, torch.Tensor]], n: int, n_out: int) -> torch.Tensor:
    """Per-example gradients ``∂f_o(x_n)/∂p`` (n, O, P) of the parameters ``names`` (full names, concatenated in
    that order) from the calls of module ``name``: ``Σ_calls gᵀ ∂(module output)/∂p``, a vector-Jacobian product
    of that module alone on each example (vmap over the examples, and over the O cotangents)."""
    module = model.get_submodule(name)
    prefix = f"{name}." if name else ""
    local = {k[len(prefix):]: t for k, t in params.items() if k.startswith(prefix)}
    wrt = [k[len(prefix):] for k in names]
    fixed = {k: t for k, t in local.items() if k not in wrt}
    J = None
    for args, kwargs, g in calls:
        leaves, spec = tree_flatten((args, kwargs))
        batched = [_batched(t, n) for t in leaves]

        def one(rows, g_n, leaves=leaves, spec=spec, batched=batched):  # one example
            it = iter(rows)
            a, kw = tree_unflatten([next(it).unsqueeze(0) if b else t for t, b in zip(leaves, batched)], spec)
            _, pull = vjp(lambda p: functional_call(module, {**fixed, **p}, a, kw), {k: local[k] for k in wrt})
            (grads,) = vmap(pull)(g_n.unsqueeze(1))  # dict: (O, *shape) per parameter
            return torch.cat([grads[k].reshape(n_out, -1) for k in wrt], dim=1)  # (O, P)

        part = vmap(one)([t for t, b in zip(leaves, batched) if b], g)  # (n, O, P)
        J = part if J is None else J.add_(part)
    return J
