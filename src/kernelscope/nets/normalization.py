"""Normalisation: ``LayerNorm`` (neural-tangents' ``LayerNorm(axis, eps)``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .. import duals as _dual
from .._arrays import ValidationError, check_nonnegative
from . import finite as _finite
from .engine import Layer
from .state import KState

__all__ = ["LayerNorm"]


class LayerNorm(Layer):
    """Normalise each input over ``axis`` (torch layout: 1 = the channels) to zero mean and unit variance.

    As neural-tangents' ``LayerNorm(axis, eps)``: at infinite width the channel mean is 0 and the channel variance
    is the variance ``Σ(x_p, x_p)`` of the pre-activations, so ``Σ'(x_p, x'_q) = Σ(x_p, x'_q)/√(n(x)_p n(x')_q)``
    and likewise Θ, with ``n(x)_p = Σ(x_p, x_p)`` (``axis=1``) or its mean over the positions when ``axis``
    also holds the spatial axes (e.g. ``(1, 2, 3)`` for (N, C, H, W)). ``axis=-1`` means the channels of (N, C)
    inputs. ``eps`` enters the finite network only (the infinite-width variance is positive).
    """

    def __init__(self, axis: int | Sequence[int] = 1, eps: float = 1e-12):
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
        if not axes or not all(isinstance(a, (int, np.integer)) for a in axes):
            raise ValidationError("axis", "an axis or axes of the (N, C, ...) input", repr(axis))
        self.axes = tuple(int(a) for a in axes)
        self.eps = check_nonnegative(eps, "eps")

    def __repr__(self) -> str:
        return f"LayerNorm(axis={self.axes if len(self.axes) > 1 else self.axes[0]}, eps={self.eps})"

    def _spatial_axes(self, ns: int) -> tuple[int, ...]:
        nd = ns + 2
        axes = {a % nd if -nd <= a < nd else a for a in self.axes}
        if ns == 0 and axes == {1}:
            return ()
        if 1 not in axes or not axes <= set(range(1, nd)):
            raise ValidationError("LayerNorm axis", f"the channel axis 1 and any of the spatial axes 2..{nd - 1}",
                                  f"axis={self.axes} for inputs with {nd} dimensions",
                                  "neural-tangents' kernel needs the channel axis among the normalised ones.")
        return tuple(sorted(a - 2 for a in axes - {1}))

    def _norms(self, k: KState, v: torch.Tensor) -> torch.Tensor:
        n = k.variances(v)  # (B,) + S
        sp = self._spatial_axes(len(k.spatial))
        if sp:
            n = n.mean(dim=tuple(1 + a for a in sp), keepdim=True).expand_as(n)
        return _dual.safe_rsqrt(n)  # 1/√n, 0 for a zero input

    def kernel_fn(self, k: KState) -> KState:
        k = k.materialized()
        r1, r2 = k.map_vars(("layernorm-scale", id(self)), lambda v: self._norms(k, v))
        s = k.var_view(r1, True) * k.var_view(r2, False)
        nngp = k.nngp.mul_(s)
        ntk = None if k.ntk is None else k.ntk.mul_(s)
        if k.diag:
            return k.replace(nngp=nngp, ntk=ntk)
        v1, v2 = k.map_vars(("layernorm", id(self)), lambda v: self.kernel_fn(k.self_state(v)).nngp)  # Σ'(x, x)
        return k.replace(nngp=nngp, ntk=ntk, var1=v1, var2=v2)

    def build(self, in_width, gen, hidden, readout, dtype):
        ns = len(in_width) - 1 if isinstance(in_width, tuple) else 0
        sp = self._spatial_axes(ns)
        return _finite.ActivationModule(_LayerNormFn((1,) + tuple(2 + a for a in sp), self.eps), repr(self)), \
            in_width


class _LayerNormFn:
    """(x − mean) / √(var + eps) over ``axes`` (biased variance), as neural-tangents' finite LayerNorm."""

    def __init__(self, axes: tuple[int, ...], eps: float):
        self.axes, self.eps = axes, eps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=self.axes, keepdim=True)
        var = x.var(dim=self.axes, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps)


