"""Convolutional infinite-width networks: ``Conv``, ``AvgPool``, ``GlobalAvgPool``, ``Flatten`` (neural-tangents'
conventions, torch layout (N, C, L) or (N, C, H, W)).

Kernel maps (Novak et al. 2019, "Bayesian deep CNNs with many channels are GPs"; Arora et al. 2019, CNTK), with
``Σ(x_p, x'_q)`` the covariance of the channels at positions p of x and q of x':

- ``Conv(out_channels, kernel_size, stride, padding, w_std, b_std)``, NTK parameterisation
  ``z_p = (w_std/√(C·|F|)) Σ_{c, f} W_{c,f} x_{c, s·p + f − lo} + b_std b`` (fan-in = channels × filter size):
  ``Σ'(p, q) = w² A[Σ](p, q) + b²``, ``Θ'(p, q) = Σ'(p, q) + w² A[Θ](p, q)`` with the *diagonal* filter average
  ``A[Σ](p, q) = (1/|F|) Σ_f Σ(s·p + f − lo, s·q + f − lo)`` (zero outside the input for 'valid'/'same',
  wrapped around for 'circular'). 'standard': ``Θ' = C·|F|·A[Σ] + 1 + w² A[Θ]`` (as Dense).
- ``AvgPool(kernel_size, stride, padding)``: ``Σ'(p, q) = (1/|F|²) Σ_{f, g} Σ(s·p + f − lo, s·q + g − lo)``.
- ``GlobalAvgPool()``: ``Σ' = mean over all (p, q) of Σ(p, q)``: a kernel without positions.
- ``Flatten()``: ``Σ' = mean over p of Σ(p, p)`` — with the NTK parameterisation the following Dense averages
  its C·|positions| inputs, so Flatten needs only the diagonal of positions.

Filters, pooling windows, 'same' and 'circular' are separable, so every map above runs one spatial axis at a
time (|F| = k_h·k_w shifts become k_h + k_w). Activations act on each (p, q) entry with the variances
``Σ(x_p, x_p)``, ``Σ(x'_q, x'_q)``.

Memory: networks without pooling carry the diagonal of positions only (N1·N2·|S| numbers per kernel); pooling
needs all pairs of positions (N1·N2·|S|²) up to the last pooling layer (the engine's tiles,
:mod:`kernelscope.nets.engine`, are sized to the memory budget).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .._arrays import ValidationError, check_choice, check_int, check_nonnegative, check_positive
from . import finite as _finite
from .dense import affine_kernel
from .engine import Layer
from .finite_conv import ConvModule, GlobalAvgPoolModule, PoolModule
from .state import KState, position_diagonal

__all__ = ["AvgPool", "Conv", "Flatten", "GlobalAvgPool", "conv_geometry"]

_PADDINGS = ("valid", "same", "circular")


def conv_geometry(length: int, k: int, stride: int, padding: str) -> tuple[int, int]:
    """``(out, lo)``: output length and padding before the input along one axis (TensorFlow/JAX conventions,
    as neural-tangents): 'valid' ``out = ⌊(L − k)/s⌋ + 1``, ``lo = 0``; 'same'/'circular' ``out = ⌈L/s⌉`` and
    ``lo = ⌊max((out − 1)s + k − L, 0)/2⌋``."""
    if padding == "valid":
        if length < k:
            raise ValidationError("kernel_size", f"at most the input length {length} with padding='valid'",
                                  f"{k}", "Use padding='same', or a smaller filter.")
        return (length - k) // stride + 1, 0
    out = -(-length // stride)
    return out, max((out - 1) * stride + k - length, 0) // 2


def shift_average(t: torch.Tensor, axes: tuple[int, ...], length: int, k: int, stride: int, lo: int, out: int,
                  circular: bool) -> torch.Tensor:
    """``(1/k) Σ_f t[idx_f]`` with ``idx_f(p) = s·p + f − lo`` applied *jointly* on every axis of ``axes`` (all of
    length ``length``; result: length ``out`` on them). Out-of-range indices read 0, or wrap when ``circular``.
    One axis: a window average (pooling, or a filter on the diagonal of positions); two axes (the same position
    axis of x and of x'): the diagonal filter of a convolution on pairs of positions."""
    shape = list(t.shape)
    for ax in axes:
        shape[ax] = out
    res = torch.zeros(shape, dtype=t.dtype, device=t.device)
    q = torch.arange(out)
    for f in range(k):
        idx = stride * q + f - lo
        if circular:
            sel = t
            ix = (idx % length).to(t.device)
            for ax in axes:
                sel = sel.index_select(ax, ix)
            res.add_(sel)
            continue
        valid = ((idx >= 0) & (idx < length)).nonzero()
        if valid.numel() == 0:
            continue
        q0, q1 = int(valid[0]), int(valid[-1]) + 1
        p0 = int(idx[q0])
        src, dst = [slice(None)] * t.ndim, [slice(None)] * t.ndim
        for ax in axes:
            src[ax] = slice(p0, p0 + stride * (q1 - q0 - 1) + 1, stride)
            dst[ax] = slice(q0, q1)
        res[tuple(dst)].add_(t[tuple(src)])
    return res.mul_(1.0 / k)


def _tuple(v: Any, name: str) -> tuple[int, ...]:
    """An int (NumPy's too) or a tuple of 1 or 2 of them, each >= 1; a float (3.0 too) is refused by name."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        vals: tuple = (v,)
    elif isinstance(v, (tuple, list)):
        vals = tuple(v)
    else:
        raise ValidationError(name, "an int or a tuple of 1 or 2 ints (1-D or 2-D inputs)", repr(v))
    if not 1 <= len(vals) <= 2:
        raise ValidationError(name, "an int or a tuple of 1 or 2 ints (1-D or 2-D inputs)", repr(v))
    return tuple(check_int(x, name, minimum=1) for x in vals)


class _Spatial(Layer):
    """Shared geometry of Conv and AvgPool."""

    def _dims(self, spatial: tuple) -> list[tuple[int, int, int, int, int]]:
        ns = len(spatial)
        if ns == 0:
            raise ValidationError(type(self).__name__, "inputs with positions, (N, C, L) or (N, C, H, W)",
                                  "inputs of shape (N, d)", "Pass images in torch layout, or use Dense.")
        ks = self.kernel_size if len(self.kernel_size) == ns else self.kernel_size * ns
        ss = self.stride if len(self.stride) == ns else self.stride * ns
        if len(ks) != ns or len(ss) != ns:
            raise ValidationError("kernel_size", f"{ns} sizes (inputs with {ns} spatial axes)", repr(self.kernel_size))
        return [(L, k, s) + conv_geometry(L, k, s, self.padding) for L, k, s in zip(spatial, ks, ss)]


class Conv(_Spatial):
    """Convolution with ``out_channels`` filters of ``kernel_size`` (neural-tangents' ``Conv``; torch layout).

    Parameters
    ----------
    out_channels : number of filters (the width when made finite; ``finite(width=...)`` overrides it too).
    kernel_size : int or (k,) / (k_h, k_w).
    stride : int or tuple (default 1).
    padding : 'valid' (default, as neural-tangents), 'same' (zeros) or 'circular'.
    w_std, b_std, parameterization : as :class:`~kernelscope.nets.Dense`; fan-in = in_channels × filter size.
    """

    def __init__(self, out_channels: int, kernel_size: Any, stride: Any = 1, padding: str = "valid",
                 w_std: float = 1.0, b_std: float = 0.0, parameterization: str = "ntk"):
        self.out = check_int(out_channels, "out_channels", minimum=1)
        self.kernel_size = _tuple(kernel_size, "kernel_size")
        self.stride = _tuple(stride, "stride")
        self.padding = check_choice(str(padding).lower(), "padding", _PADDINGS)
        self.w_std = check_positive(w_std, "w_std")
        self.b_std = check_nonnegative(b_std, "b_std")
        self.parameterization = check_choice(parameterization, "parameterization", _finite.PARAMETERIZATIONS)

    def __repr__(self) -> str:
        return (f"Conv({self.out}, {self.kernel_size}, stride={self.stride}, padding={self.padding!r}, "
                f"w_std={self.w_std}, b_std={self.b_std}, parameterization={self.parameterization!r})")

    def dense_layers(self):
        return [self]

    def kernel_fn(self, k: KState) -> KState:
        k = k.materialized()
        dims = self._dims(k.spatial)
        ns, circ = len(dims), self.padding == "circular"

        def avg(t: torch.Tensor, nb: int) -> torch.Tensor:
            for d, (L, kk, s, out, lo) in enumerate(dims):
                axes = (nb + d, nb + ns + d) if k.pairs else (nb + d,)
                t = shift_average(t, axes, L, kk, s, lo, out, circ)
            return t

        nb = 1 if k.diag else 2
        nngp = avg(k.nngp, nb)
        ntk = None if k.ntk is None else avg(k.ntk, nb)
        fan_in = k.width * math.prod(d[1] for d in dims)
        if k.diag:
            k = k.replace(nngp=nngp, ntk=ntk)
        else:
            v1 = avg(k.var1, 1)
            v2 = v1 if k.var2 is k.var1 else avg(k.var2, 1)
            k = k.replace(nngp=nngp, ntk=ntk, var1=v1, var2=v2)
        return affine_kernel(k, self.w_std, self.b_std, self.parameterization, self.out, fan_in)

    def build(self, in_width, gen, hidden, readout, dtype):
        if not isinstance(in_width, tuple):
            raise ValidationError("Conv", "inputs with positions, (N, C, L) or (N, C, H, W)",
                                  f"inputs of {in_width} features", "Pass images in torch layout.")
        dims = self._dims(in_width[1:])
        n_out = self.out if (hidden is None or self is readout) else hidden
        mod = ConvModule(in_width[0], n_out, tuple(d[1] for d in dims), tuple(d[2] for d in dims),
                         [(d[4], (d[3] - 1) * d[2] + d[1] - d[0] - d[4]) for d in dims], self.padding,
                         self.w_std, self.b_std, self.parameterization, gen, dtype)
        return mod, (n_out,) + tuple(d[3] for d in dims)


class AvgPool(_Spatial):
    """Average pooling over windows of ``kernel_size`` (torch's ``AvgPool`` convention: ``stride=None`` means
    ``kernel_size``; 'same' padding counts the zeros, as neural-tangents' ``normalize_edges=False``)."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: str = "valid"):
        self.kernel_size = _tuple(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _tuple(stride, "stride")
        self.padding = check_choice(str(padding).lower(), "padding", _PADDINGS)

    def __repr__(self) -> str:
        return f"AvgPool({self.kernel_size}, stride={self.stride}, padding={self.padding!r})"

    def pairs_before(self, after: bool) -> bool:
        return True

    def kernel_fn(self, k: KState) -> KState:
        k = k.materialized()
        if not k.pairs:  # pragma: no cover - the planner gives pooling layers pairs of positions
            raise RuntimeError("AvgPool needs the kernel on all pairs of positions")
        dims = self._dims(k.spatial)
        ns, circ = len(dims), self.padding == "circular"

        def pool(t: torch.Tensor, nb: int) -> torch.Tensor:
            for d, (L, kk, s, out, lo) in enumerate(dims):
                for ax in (nb + d, nb + ns + d):  # each position of the pair averaged over its own window
                    t = shift_average(t, (ax,), L, kk, s, lo, out, circ)
            return t

        nb = 1 if k.diag else 2
        nngp = pool(k.nngp, nb)
        ntk = None if k.ntk is None else pool(k.ntk, nb)
        if k.diag:
            return k.replace(nngp=nngp, ntk=ntk)
        v1 = pool(k.var1, 1)
        v2 = v1 if k.var2 is k.var1 else pool(k.var2, 1)
        return k.replace(nngp=nngp, ntk=ntk, var1=v1, var2=v2)

    def build(self, in_width, gen, hidden, readout, dtype):
        dims = self._dims(in_width[1:] if isinstance(in_width, tuple) else ())
        mod = PoolModule(tuple(d[1] for d in dims), tuple(d[2] for d in dims),
                         [(d[4], (d[3] - 1) * d[2] + d[1] - d[0] - d[4]) for d in dims], self.padding)
        return mod, (in_width[0],) + tuple(d[3] for d in dims)


class GlobalAvgPool(Layer):
    """Mean over all positions: (N, C, *S) -> (N, C); kernel: the mean of Σ over all pairs of positions."""

    def pairs_before(self, after: bool) -> bool:
        return True

    def kernel_fn(self, k: KState) -> KState:
        k = k.materialized()
        if not k.spatial:
            raise ValidationError("GlobalAvgPool", "inputs with positions", "inputs of shape (N, d)")
        ns = len(k.spatial)
        nb = 1 if k.diag else 2

        def mean(t, nb_):
            return t.mean(dim=tuple(range(nb_, nb_ + 2 * ns)))

        nngp = mean(k.nngp, nb)
        ntk = None if k.ntk is None else mean(k.ntk, nb)
        if k.diag:
            return k.replace(nngp=nngp, ntk=ntk, pairs=False)
        v1 = mean(k.var1, 1)
        v2 = v1 if k.var2 is k.var1 else mean(k.var2, 1)
        return k.replace(nngp=nngp, ntk=ntk, var1=v1, var2=v2, pairs=False)

    def build(self, in_width, gen, hidden, readout, dtype):
        if not isinstance(in_width, tuple):
            raise ValidationError("GlobalAvgPool", "inputs with positions", f"inputs of {in_width} features")
        return GlobalAvgPoolModule(len(in_width) - 1), in_width[0]


class Flatten(Layer):
    """(N, C, *S) -> (N, C·|S|) (torch's order); kernel: the mean over positions of Σ(x_p, x'_p) (the Dense
    that follows averages its C·|S| inputs). On (N, d) inputs it does nothing."""

    def pairs_before(self, after: bool) -> bool:
        return False

    def kernel_fn(self, k: KState) -> KState:
        if not k.spatial:
            return k
        k = k.materialized()
        ns = len(k.spatial)
        nb = 1 if k.diag else 2

        def mean(t, nb_):
            if k.pairs:
                t = position_diagonal(t, nb_, ns)
            return t.mean(dim=tuple(range(nb_, nb_ + ns)))

        nngp = mean(k.nngp, nb)
        ntk = None if k.ntk is None else mean(k.ntk, nb)
        width = k.width * math.prod(k.spatial)
        if k.diag:
            return k.replace(nngp=nngp, ntk=ntk, width=width, pairs=False)
        v1 = mean(k.var1, 1)
        v2 = v1 if k.var2 is k.var1 else mean(k.var2, 1)
        return k.replace(nngp=nngp, ntk=ntk, var1=v1, var2=v2, width=width, pairs=False)

    def build(self, in_width, gen, hidden, readout, dtype):
        if not isinstance(in_width, tuple):
            return torch.nn.Identity(), in_width
        return torch.nn.Flatten(), math.prod(in_width)

