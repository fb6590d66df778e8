"""Combinators: layers in series, branches in parallel, fan-out and fan-in (neural-tangents' ``serial``,
``parallel``, ``FanOut``, ``FanInSum``, ``FanInConcat``, ``FanInProd``).

``FanOut(n)`` copies the kernel, ``parallel`` maps branches, ``FanInSum`` adds the branches' kernels: exact when
the branches are uncorrelated, e.g. a residual block ``x + Dense(ReLU(Dense(x)))`` (a branch ending in a fresh
zero-mean Dense is uncorrelated with any other) — the same assumption as neural-tangents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .._arrays import ValidationError, check_int
from . import finite as _finite
from .engine import Layer
from .shape import Reshape
from .state import KState

__all__ = ["FanInConcat", "FanInProd", "FanInSum", "FanOut", "Parallel", "Serial", "parallel", "serial"]


def _check_layers(layers: Sequence[Any], name: str) -> list[Layer]:
    if len(layers) == 0:
        raise ValidationError(name, "at least one layer", "none")
    for i, l in enumerate(layers):
        if not isinstance(l, Layer):
            raise ValidationError(f"{name}[{i}]", "a kernelscope.nets layer (Dense(...), ReLU(), ...)",
                                  f"{type(l).__name__}", "Did you forget the parentheses, e.g. ReLU()?")
    return list(layers)


def _same_layout(ks: list[KState], name: str) -> list[KState]:
    """Check that branches meet with the same positions (and make their position-pair modes agree)."""
    spatial = {k.spatial for k in ks}
    if len(spatial) > 1:
        raise ValidationError(name, "branches with the same positions", f"positions {sorted(spatial)}",
                              "Give the branches the same strides and paddings.")
    if len({k.pairs for k in ks}) > 1:
        ks = [k.unpaired() if k.pairs else k for k in ks]
    return ks


def _branches(ks, name: str) -> list[KState]:
    """The branches meeting at a fan-in layer, multipliers applied, checked to have the same positions."""
    if not isinstance(ks, list):
        raise ValidationError(name, "a list of branches (after FanOut/parallel)", "a single input")
    return _same_layout([k.materialized() for k in ks], name)

class Serial(Layer):
    """Layers applied one after the other (kernels and modules composed in order); ``input_shape`` declares the
    per-example shape of the inputs, as a first :class:`~kernelscope.nets.Reshape` would."""

    def __init__(self, *layers: Layer, input_shape: Any = None):
        self.layers = _check_layers(layers, "layers")
        self.input_shape = None if input_shape is None else Reshape(input_shape).shape

    def __repr__(self) -> str:
        shape = "" if self.input_shape is None else f", input_shape={self.input_shape}"
        return "serial(" + ", ".join(map(repr, self.layers)) + shape + ")"

    def declared_input_shape(self):
        return self.input_shape if self.input_shape is not None else self.layers[0].declared_input_shape()

    def dense_layers(self):
        return [d for l in self.layers for d in l.dense_layers()]

    def branch_states(self) -> int:
        return sum(l.branch_states() for l in self.layers)

    def pairs_before(self, after: bool) -> bool:
        for l in reversed(self.layers):
            after = l.pairs_before(after)
        return after

    def kernel_fn(self, k):
        if self.input_shape is not None:
            k = Reshape(self.input_shape).kernel_fn(k)  # checks that this is where the inputs come in
        for i, l in enumerate(self.layers):
            # drop the position pairs as soon as nothing downstream pools (unknown layers after this serial
            # are assumed to need them)
            if any(s.pairs for s in (k if isinstance(k, list) else [k])) and not Serial.pairs_before(
                    Serial(*self.layers[i:]), True):
                k = [s.unpaired() if s.pairs else s for s in k] if isinstance(k, list) else k.unpaired()
            k = l.kernel_fn(k)
        return k

    def build(self, in_width, gen, hidden, readout, dtype):
        mods = []
        for l in ([Reshape(self.input_shape)] if self.input_shape is not None else []) + self.layers:
            m, in_width = l.build(in_width, gen, hidden, readout, dtype)
            mods.append(m)
        return torch.nn.Sequential(*mods), in_width


class Parallel(Layer):
    """Branch i applies ``layers[i]`` to input i (a list of the same length, e.g. from FanOut)."""

    def __init__(self, *layers: Layer):
        self.layers = _check_layers(layers, "layers")

    def __repr__(self) -> str:
        return "parallel(" + ", ".join(map(repr, self.layers)) + ")"

    def dense_layers(self):
        return [d for l in self.layers for d in l.dense_layers()]

    def branch_states(self) -> int:
        return sum(l.branch_states() for l in self.layers)

    def _check(self, ks):
        if not isinstance(ks, list) or len(ks) != len(self.layers):
            got = f"{len(ks)} branches" if isinstance(ks, list) else "a single input"
            raise ValidationError("parallel", f"{len(self.layers)} input branches", got,
                                  f"Put FanOut({len(self.layers)}) before it.")

    def pairs_before(self, after: bool) -> bool:
        return any(l.pairs_before(after) for l in self.layers)

    def kernel_fn(self, ks):
        self._check(ks)
        return [l.kernel_fn(k) for l, k in zip(self.layers, ks)]

    def build(self, in_width, gen, hidden, readout, dtype):
        self._check(in_width)
        built = [l.build(w, gen, hidden, readout, dtype) for l, w in zip(self.layers, in_width)]
        return _finite.ParallelModule([m for m, _ in built]), [w for _, w in built]


def serial(*layers: Layer, input_shape: Any = None) -> Serial:
    """Compose layers in order: ``serial(Dense(512), ReLU(), Dense(1))``; ``input_shape=(C, L)`` (or (C, H, W))
    lets a convolutional network take rows (N, C·L) as scikit-learn passes them (:mod:`kernelscope.nets.shape`)."""
    return Serial(*layers, input_shape=input_shape)


def parallel(*layers: Layer) -> Parallel:
    """Apply ``layers[i]`` to branch i: ``serial(FanOut(2), parallel(block, Identity()), FanInSum())``."""
    return Parallel(*layers)


class FanOut(Layer):
    """Copy the input into ``n`` branches."""

    def __init__(self, n: int):
        self.n = check_int(n, "n", minimum=1)

    def __repr__(self) -> str:
        return f"FanOut({self.n})"

    def branch_states(self) -> int:
        return self.n

    def kernel_fn(self, k):
        k = k.materialized()  # pending multipliers applied once, before the branches part
        return [k] + [k.clone() for _ in range(self.n - 1)]  # buffers of their own: a donated branch is overwritten

    def build(self, in_width, gen, hidden, readout, dtype):
        return _finite.FanOutModule(self.n), [in_width] * self.n


class FanInSum(Layer):
    """Add the branches (same width); kernels add (exact for uncorrelated branches, as in neural-tangents)."""

    def __repr__(self) -> str:
        return "FanInSum()"

    def kernel_fn(self, ks):
        ks = _branches(ks, "FanInSum")
        widths = {k.width for k in ks}
        if len(widths) > 1:
            raise ValidationError("FanInSum", "branches of equal width", f"widths {sorted(widths)}")
        nngp = ks[0].nngp
        for k in ks[1:]:
            nngp = nngp.add_(k.nngp)
        ntks = [k.ntk for k in ks if k.ntk is not None]
        ntk = None
        if ntks:
            ntk = ntks[0]
            for t in ntks[1:]:
                ntk = ntk.add_(t)
        if ks[0].diag:
            return ks[0].replace(nngp=nngp, ntk=ntk)
        v1 = sum(k.var1 for k in ks)
        v2 = v1 if all(k.var2 is k.var1 for k in ks) else sum(k.var2 for k in ks)
        return ks[0].replace(nngp=nngp, ntk=ntk, var1=v1, var2=v2)

    def build(self, in_width, gen, hidden, readout, dtype):
        if not isinstance(in_width, list):
            raise ValidationError("FanInSum", "a list of branches (after FanOut/parallel)", "a single input")
        if len(set(in_width)) > 1:
            raise ValidationError("FanInSum", "branches of equal width", f"widths {in_width}",
                                  "Give the branches' Dense layers the same out (and width=...).")
        return _finite.FanInSumModule(), in_width[0]


class FanInConcat(Layer):
    """Concatenate the branches along the channel axis (neural-tangents' ``FanInConcat``; torch layout: axis 1).

    The kernel is the channel-weighted mean ``Σ = Σ_i (n_i/n) Σ_i`` (likewise Θ) of the branches' kernels
    (uncorrelated branches, as in neural-tangents), with ``n_i`` the branches' declared widths. A following
    Dense or Conv sees ``n = Σ n_i`` channels. Concatenation along other axes is not supported.
    """

    def __init__(self, axis: int = 1):
        if axis not in (1, -1):
            raise ValidationError("axis", "1 (the channel axis; -1 for (N, C) inputs)", repr(axis),
                                  "Concatenate along the channels.")
        self.axis = 1

    def __repr__(self) -> str:
        return "FanInConcat()"

    def kernel_fn(self, ks):
        ks = _branches(ks, "FanInConcat")
        n = float(sum(k.width for k in ks))
        ws = [k.width / n for k in ks]
        nngp = ks[0].nngp.mul_(ws[0])
        for k, w in zip(ks[1:], ws[1:]):
            nngp.add_(k.nngp, alpha=w)
        ntk = None
        if any(k.ntk is not None for k in ks):
            ntk = torch.zeros_like(nngp)
            for k, w in zip(ks, ws):
                if k.ntk is not None:
                    ntk.add_(k.ntk, alpha=w)
        width = int(n)
        if ks[0].diag:
            return ks[0].replace(nngp=nngp, ntk=ntk, width=width)
        v1 = sum(w * k.var1 for k, w in zip(ks, ws))
        v2 = v1 if all(k.var2 is k.var1 for k in ks) else sum(w * k.var2 for k, w in zip(ks, ws))
        return ks[0].replace(nngp=nngp, ntk=ntk, var1=v1, var2=v2, width=width)

    def build(self, in_width, gen, hidden, readout, dtype):
        if not isinstance(in_width, list):
            raise ValidationError("FanInConcat", "a list of branches (after FanOut/parallel)", "a single input")
        if isinstance(in_width[0], tuple):
            if len({w[1:] for w in in_width}) > 1:
                raise ValidationError("FanInConcat", "branches with the same positions", f"shapes {in_width}")
            out = (sum(w[0] for w in in_width),) + in_width[0][1:]
        else:
            out = sum(int(w) for w in in_width)
        return _FanInModule("concat"), out


class FanInProd(Layer):
    """Multiply the branches elementwise (neural-tangents' ``FanInProd``; branches of equal width).

    For uncorrelated branches ``Σ = Π_i Σ_i`` and ``Θ = Σ_i Θ_i Π_{j≠i} Σ_j`` (product rule). The product of
    Gaussian processes is not Gaussian: put a Dense or Conv after it before another activation.
    """

    def __repr__(self) -> str:
        return "FanInProd()"

    def kernel_fn(self, ks):
        ks = _branches(ks, "FanInProd")
        if len({k.width for k in ks}) > 1:
            raise ValidationError("FanInProd", "branches of equal width", f"widths {sorted(k.width for k in ks)}")
        ntk = None
        for i, k in enumerate(ks):
            if k.ntk is None:
                continue
            term = k.ntk
            for j, other in enumerate(ks):
                if j != i:
                    term = term.mul_(other.nngp)
            ntk = term if ntk is None else ntk.add_(term)
        nngp = ks[0].nngp
        for k in ks[1:]:
            nngp = nngp.mul_(k.nngp)
        if ks[0].diag:
            return ks[0].replace(nngp=nngp, ntk=ntk)
        v1 = math.prod([k.var1 for k in ks])
        v2 = v1 if all(k.var2 is k.var1 for k in ks) else math.prod([k.var2 for k in ks])
        return ks[0].replace(nngp=nngp, ntk=ntk, var1=v1, var2=v2)

    def build(self, in_width, gen, hidden, readout, dtype):
        if not isinstance(in_width, list):
            raise ValidationError("FanInProd", "a list of branches (after FanOut/parallel)", "a single input")
        if len(set(in_width)) > 1:
            raise ValidationError("FanInProd", "branches of equal width", f"widths {in_width}")
        return _FanInModule("prod"), in_width[0]


class _FanInModule(torch.nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how = how

    def extra_repr(self) -> str:
        return self.how

    def forward(self, xs):
        if self.how == "concat":
            return torch.cat(xs, dim=1)
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out
