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
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .. import _scratch
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


@lru_cache(maxsize=256)
def _pieces(length: int, k: int, stride: int, lo: int, out: int) -> tuple[tuple[tuple[slice, slice], ...], ...]:
    """For each filter offset f, the (destination, source) slice pairs along one axis that make up the circular
    ``dst[q] = src[(s·q + f − lo) mod length]`` for q in [0, out): one per stretch of q that does not wrap."""
    per_f = []
    for f in range(k):
        idx = [stride * q + f - lo for q in range(out)]
        wraps = [i // length for i in idx]
        pieces, q0 = [], 0
        while q0 < out:
            q1 = q0
            while q1 < out and wraps[q1] == wraps[q0]:
                q1 += 1
            start = idx[q0] - wraps[q0] * length
            pieces.append((slice(q0, q1), slice(start, start + stride * (q1 - q0 - 1) + 1, stride)))
            q0 = q1
        per_f.append(tuple(pieces))
    return tuple(per_f)


def _outermost(t: torch.Tensor, axes: tuple[int, ...]) -> bool:
    """Whether ``axes`` are the outermost axes of ``t`` in memory (every other axis has a smaller stride)."""
    inner = [t.stride(d) for d in range(t.ndim) if d not in axes and t.shape[d] > 1]
    return not inner or min(t.stride(a) for a in axes) >= max(inner)


def _padded(t: torch.Tensor, axes: tuple[int, ...], length: int, lo: int, hi: int, circular: bool) -> torch.Tensor:
    """``t`` with ``lo`` entries before and ``hi`` after on each axis of ``axes``: wrapped around when ``circular``,
    else zeros (a scratch buffer). Axes are padded one after the other, the last first, each over the others'
    full (padded) extent so that the corners come out right; only the narrow strips of the last axis are copied
    with short inner loops."""
    shape = list(t.shape)
    for ax in axes:
        shape[ax] = lo + length + hi
    pad = _scratch.empty_like(t, shape)
    center = [slice(None)] * t.ndim
    for ax in axes:
        center[ax] = slice(lo, lo + length)
    pad[tuple(center)].copy_(t)
    for ax in sorted(axes, reverse=True):
        region = list(center)  # the rows already complete: padded on the axes done, centre on the others
        for done in axes:
            if done > ax:
                region[done] = slice(None)
        for dst, src in ((slice(0, lo), slice(length, length + lo)), (slice(lo + length, lo + length + hi),
                                                                       slice(lo, lo + hi))):
            if dst.stop == dst.start:
                continue
            d, s_ = list(region), list(region)
            d[ax], s_[ax] = dst, src
            if circular:
                pad[tuple(d)].copy_(pad[tuple(s_)])
            else:
                pad[tuple(d)].zero_()
    return pad


def shift_sum(t: torch.Tensor, axes: tuple[int, ...], length: int, k: int, stride: int, lo: int, out: int,
              circular: bool) -> torch.Tensor:
    """``Σ_f t[idx_f]`` with ``idx_f(p) = s·p + f − lo`` applied *jointly* on every axis of ``axes`` (all of
    length ``length``; result: length ``out`` on them). Out-of-range indices read 0, or wrap when ``circular``.
    One axis: a window sum (pooling, or a filter on the diagonal of positions); two axes (the same position
    axis of x and of x'): the diagonal filter of a convolution on pairs of positions.

    The input is padded once (:func:`_padded`; not at all for 'valid'), then each term is one strided view of
    it: ``k`` passes over the result in all, never a gathered copy (``index_select`` along both axes of a pair
    plane was 9× slower at 40 positions, and adding the wrapped stretches of each term as separate blocks 2×)."""
    hi = max(0, stride * (out - 1) + k - lo - length)
    shape = list(t.shape)
    for ax in axes:
        shape[ax] = out
    res = _scratch.empty_like(t, shape)
    if circular and _outermost(t, axes):
        # positions outermost (the engine's tiles): each wrapped stretch is a block of whole contiguous rows, so
        # the terms go in as blocks, without a padded copy
        pieces = _pieces(length, k, stride, lo, out)
        for f in range(k):
            combos: list[tuple[list[slice], list[slice]]] = [([slice(None)] * t.ndim, [slice(None)] * t.ndim)]
            for ax in axes:
                combos = [(d[:ax] + [dd] + d[ax + 1:], s_[:ax] + [ss] + s_[ax + 1:])
                          for d, s_ in combos for dd, ss in pieces[f]]
            for dst, src in combos:
                if f == 0:
                    res[tuple(dst)].copy_(t[tuple(src)])
                else:
                    res[tuple(dst)].add_(t[tuple(src)])
        return res
    if circular and (lo > length or hi > length):  # pragma: no cover - filters longer than the input
        raise ValidationError("kernel_size", f"at most the input length {length} with padding='circular'", f"{k}")
    src = t if lo == 0 and hi == 0 else _padded(t, axes, length, lo, hi, circular)

    def term(f: int) -> torch.Tensor:
        view = [slice(None)] * t.ndim
        for ax in axes:
            view[ax] = slice(f, f + stride * (out - 1) + 1, stride)
        return src[tuple(view)]

    if k == 1:
        res.copy_(term(0))
    else:
        torch.add(term(0), term(1), out=res)
        for f in range(2, k):
            res.add_(term(f))
    if src is not t:
        _scratch.release(src)
    return res


def shift_average(t: torch.Tensor, axes: tuple[int, ...], length: int, k: int, stride: int, lo: int, out: int,
                  circular: bool) -> torch.Tensor:
    """:func:`shift_sum` divided by ``k``: the window (or diagonal filter) average."""
    return shift_sum(t, axes, length, k, stride, lo, out, circular).mul_(1.0 / k)


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
                                  "inputs of shape (N, d)", "Declare the per-example shape (serial(..., "
                                  "input_shape=(C, L)) or a first Reshape), pass (N, C, L) arrays, or use Dense.")
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

        def filter_sum(t: torch.Tensor, nb: int) -> torch.Tensor:
            for d, (L, kk, s, out, lo) in enumerate(dims):
                axes = (nb + d, nb + ns + d) if k.pairs else (nb + d,)
                t = shift_sum(t, axes, L, kk, s, lo, out, circ)
            return t

        nb = 1 if k.diag else 2
        nngp = filter_sum(k.nngp, nb)
        ntk = None if k.ntk is None else filter_sum(k.ntk, nb)
        if k.donated and not k.diag:  # the tile's buffers, consumed: free for the next steps (full mode only:
            _scratch.release(k.nngp, k.ntk)  # in diag mode the variances are the same tensor)
        size = math.prod(d[1] for d in dims)  # |F|: the sums are |F| times the filter averages
        if k.diag:
            k = k.replace(nngp=nngp, ntk=ntk)
        else:
            v1, v2 = k.map_vars(("conv", tuple(dims), circ, k.pairs), lambda v: filter_sum(v, 1))
            k = k.replace(nngp=nngp, ntk=ntk, var1=v1, var2=v2)
        return affine_kernel(k, self.w_std, self.b_std, self.parameterization, self.out, k.width * size, 1.0 / size)

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
        v1, v2 = k.map_vars(("avgpool", tuple(dims), circ), lambda v: pool(v, 1))
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
        if k.donated and not k.diag:  # the pairs of positions are used up
            _scratch.release(k.nngp, k.ntk)
        if k.diag:
            return k.replace(nngp=nngp, ntk=ntk, pairs=False)
        v1, v2 = k.map_vars(("globalavgpool", ns), lambda v: mean(v, 1))
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
        v1, v2 = k.map_vars(("flatten", ns, k.pairs), lambda v: mean(v, 1))
        return k.replace(nngp=nngp, ntk=ntk, var1=v1, var2=v2, width=width, pairs=False)

    def build(self, in_width, gen, hidden, readout, dtype):
        if not isinstance(in_width, tuple):
            return torch.nn.Identity(), in_width
        return torch.nn.Flatten(), math.prod(in_width)

