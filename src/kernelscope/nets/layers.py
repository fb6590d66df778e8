"""Infinite-width networks described once: each layer knows its kernel map *and* its finite torch module.

The idea is neural-tangents' ``stax``: a layer is a pair (kernel recursion, finite module) and combinators
compose both at once. The kernel recursion of THEORY.md §4 acts on a :class:`KState` — the NNGP ``Σ``, the NTK
``Θ`` and the variances ``Σ(x, x)`` and ``Σ(x', x')`` the activations need — flowing from the input kernel
``Σ⁰(x, x') = x·x'/d`` (``Θ⁰ = 0``) to the readout.

Parameterisations of ``Dense(out, w_std, b_std, parameterization)`` (both exactly as in neural-tangents):

- ``'ntk'`` (default, THEORY.md §4): ``z = (w_std/√n_in) W x + b_std b`` with ``W, b ~ N(0, 1)``.
  Kernel: ``Σ' = w_std² Σ + b_std²``, ``Θ' = Σ' + w_std² Θ``. Width-independent NTK.
- ``'standard'``: ``z = W x + b`` with ``W ~ N(0, w_std²/n_in)``, ``b ~ N(0, b_std²)``.
  Same NNGP, but ``Θ' = n_in Σ + 1 + w_std² Θ`` (``Σ``, ``Θ`` the kernels *entering* the layer): the NTK grows
  with the declared widths ``n_in`` (it has no finite infinite-width limit, one reason the 'ntk' form exists).

An activation maps ``Σ' = E[φ(u)φ(v)]``, ``Σ̇ = E[φ'(u)φ'(v)]``, ``Θ' = Σ̇ Θ`` with
``(u, v) ~ N(0, [[Σ(x,x), Σ(x,x')], [Σ(x,x'), Σ(x',x')]])`` (see :mod:`kernelscope.nets.dual`).
``FanOut(n)`` copies the kernel, ``parallel`` maps branches, ``FanInSum`` adds the branches' kernels: exact when
the branches are uncorrelated, e.g. a residual block ``x + Dense(ReLU(Dense(x)))`` (a branch ending in a fresh
zero-mean Dense is uncorrelated with any other) — the same assumption as neural-tangents.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .._arrays import (
    ArrayKind,
    ValidationError,
    as_generator,
    as_tensor,
    check_choice,
    check_int,
    check_memory,
    check_nonnegative,
    check_positive,
)
from . import dual as _dual
from . import finite as _finite

__all__ = ["KState", "NetKernel", "Layer", "Dense", "ABReLU", "ReLU", "LeakyReLU", "Identity", "Erf",
           "Elementwise", "GELU", "Tanh", "Sigmoid", "FanOut", "FanInSum", "serial", "parallel", "Serial",
           "Parallel"]


# --------------------------------------------------------------------------------------------------------------
# Kernel state and result
# --------------------------------------------------------------------------------------------------------------
@dataclass
class KState:
    """The kernels between two sets of inputs at one point of the network.

    Full mode: ``nngp``, ``ntk`` of shape (B, N2), ``var1`` (B,) = Σ(x, x), ``var2`` (N2,) = Σ(x', x').
    Diag mode: ``nngp``, ``ntk`` of shape (N,) and ``var1 = var2 = nngp``. ``ntk=None`` stands for Θ = 0 (the
    input). ``width`` is the number of channels here (the input dimension d before the first Dense).
    """

    nngp: torch.Tensor
    ntk: torch.Tensor | None
    var1: torch.Tensor
    var2: torch.Tensor
    width: int
    diag: bool
    self_block: bool = False  # full mode: the leading B×B square of the block is k(x_i, x_i) (exact cosines 1)
    # Full mode only: multipliers not yet applied (a pass over the block saved when a Dense layer follows and
    # fuses them into its own update): nngp·scale1·scale2 with scale1 (B, 1), scale2 (1, N2);
    # ntk·ntk_factor·ntk_scale (ntk_scale a number).
    scale1: torch.Tensor | None = None
    scale2: torch.Tensor | None = None
    ntk_factor: torch.Tensor | None = None
    ntk_scale: float = 1.0

    def materialized(self) -> KState:
        """The same kernels with pending multipliers applied — in place, so use the returned state only."""
        if self.scale1 is None and self.ntk_factor is None:
            return self
        nngp = self.nngp if self.scale1 is None else self.nngp.mul_(self.scale1).mul_(self.scale2)
        ntk = self.ntk
        if ntk is not None and self.ntk_factor is not None:
            ntk = ntk.mul_(self.ntk_factor if self.ntk_scale == 1.0 else self.ntk_factor.mul_(self.ntk_scale))
        return replace(self, nngp=nngp, ntk=ntk, scale1=None, scale2=None, ntk_factor=None, ntk_scale=1.0)

    def clone(self) -> KState:
        if self.scale1 is not None or self.ntk_factor is not None:
            raise RuntimeError("clone() of a KState with pending multipliers; call materialized() first")
        nngp = self.nngp.clone()
        ntk = None if self.ntk is None else self.ntk.clone()
        if self.diag:
            return replace(self, nngp=nngp, ntk=ntk, var1=nngp, var2=nngp)
        return replace(self, nngp=nngp, ntk=ntk)


@dataclass
class NetKernel:
    """Infinite-width kernels of a network: ``nngp`` and ``ntk`` of shape (N1, N2), or (N,) in diag mode."""

    nngp: Any
    ntk: Any


# Default tile side. On CPU a 512×512 float64 tile is 2 MB: the recursion's few buffers stay in L2/L3, and the
# per-op overhead of torch stays small (measured at N = 4000: sides 448–512 fastest, 256 is 1.5× slower, 1000
# 1.15× slower). On a GPU bigger tiles mean fewer kernel launches.
_TILE_CPU, _TILE_GPU = 512, 4096


def _run_blocks(fn: Callable[[int, int], None], n: int, block_rows: int, device: torch.device, threads: int
                ) -> None:
    """Run ``fn(r0, r1)`` over row blocks: on CPU on ``threads`` worker threads (the blocks write disjoint parts
    of the outputs), otherwise in order. torch's process-wide intra-op thread count is read by the caller, never
    written, so each worker's ops may use it too. Measured at N = 4000 on 2 busy cores (load 3.5–4.7, medians of
    11 interleaved runs): 0.68 s against 1.06 s at d = 64 and 1.08 s against 1.48 s at d = 784 for the former
    scheme, which set torch's count to 1 for the whole process while the workers ran."""
    starts = list(range(0, n, block_rows))
    if device.type != "cpu" or threads <= 1 or len(starts) == 1:
        for r0 in starts:
            fn(r0, min(n, r0 + block_rows))
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(starts))) as pool:
        for f in [pool.submit(fn, r0, min(n, r0 + block_rows)) for r0 in starts]:
            f.result()


def _affine_vars(k: KState, scale: float, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    v1 = k.var1 * scale + shift
    v2 = v1 if k.var2 is k.var1 else k.var2 * scale + shift
    return v1, v2


# --------------------------------------------------------------------------------------------------------------
# Base class: every layer (and combination of layers) is a network
# --------------------------------------------------------------------------------------------------------------
class Layer:
    """A layer, or a whole network: ``kernel_fn`` (the infinite-width recursion) and ``build`` (a finite module).

    Public methods: :meth:`kernel` (analytic NNGP/NTK) and :meth:`finite` (a random torch network).
    """

    # -- to be defined by each layer ---------------------------------------------------------------------------
    def kernel_fn(self, k):  # KState or list of KState -> same
        raise TypeError(f"{type(self).__name__} has no kernel map")  # pragma: no cover

    def build(self, in_width, gen: torch.Generator, hidden: int | None, readout: Dense | None, dtype):
        """Return (module, out_width) for inputs of ``in_width`` channels (an int, or a list for branches)."""
        raise TypeError(f"{type(self).__name__} has no finite module")  # pragma: no cover

    def dense_layers(self) -> list[Dense]:
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- public API -------------------------------------------------------------------------------------------
    def kernel(self, x1: Any, x2: Any = None, diag: bool = False, *, block_rows: int | None = None,
               threads: int | None = None) -> NetKernel:
        """Infinite-width NNGP and NTK of the network between the rows of ``x1`` and ``x2``.

        Parameters
        ----------
        x1 : array of shape (N1, d).
        x2 : array of shape (N2, d), or None for ``x1`` itself.
        diag : if True, only ``k(x, x)`` for the rows of ``x1`` (``x2`` must be None): shape (N1,).
        block_rows : the side of the tiles the matrix is computed in (rows of ``x1`` at a time, and as many
            columns of ``x2``). Default: 512 on CPU, 4096 on a GPU, with tiles of as many entries but other
            shapes when ``x1`` or ``x2`` has fewer rows than that.
        threads : worker threads the rows of tiles run on (CPU). Default: ``torch.get_num_threads()``, read and
            never changed.

        Returns
        -------
        NetKernel with ``.nngp`` and ``.ntk`` of shape (N1, N2) (or (N1,)): NumPy in -> NumPy out, a tensor in ->
        a tensor on the same device out. float64.

        Notes
        -----
        The matrix is computed in B×T tiles (B = ``block_rows``; T = B for k(X, X), and by default wider when
        ``x1`` has few rows; never more than N2): each tile gets one GEMM for
        its input Gram ``x·x'/d``, then the whole recursion runs in place on that tile while it is in cache. For
        k(X, X) only the tiles on and above the diagonal are computed, and each is written twice, as itself and
        transposed below the diagonal. Rows of tiles run on ``threads`` worker threads; torch's own
        (process-wide) thread count is left as it is. Peak memory: the two
        outputs (``2·N1·N2·8`` bytes) plus about ``5·B·T·8`` bytes of temporaries per worker (10 MB for the
        default 512×512 tiles); quadrature activations (:class:`Elementwise`) add ``4·B·T·degree·8`` bytes per
        worker. Measured at N = 4000: 2.3–2.5 N×N buffers in all.
        k(X) and k(X, X) pair each point with itself exactly; for the piecewise-linear activations angles below
        1.7e-7 (rounding of 0) are set to 0, so a point repeated in x1 and x2 gets the same entries as k(X).
        """
        threads = torch.get_num_threads() if threads is None else check_int(threads, "threads", minimum=1)
        kind = ArrayKind.of(x1, x2)
        device = kind.device if kind.is_torch else None
        X1 = as_tensor(x1, "x1", ndim=2, device=device, shape_hint="(n_samples, n_features)")
        if diag:
            if x2 is not None:
                raise ValidationError("x2", "None in diag mode (diag computes k(x, x) for the rows of x1)",
                                      f"an array of shape {tuple(np.shape(x2))}", "Call kernel(x1, diag=True).")
            sq = (X1 * X1).sum(1) / X1.shape[1]  # (N,)
            out = self._output(self.kernel_fn(KState(sq, None, sq, sq, X1.shape[1], True)))
            ntk = torch.zeros_like(out.nngp) if out.ntk is None else out.ntk
            return NetKernel(kind.wrap(out.nngp), kind.wrap(ntk))
        X2 = X1 if x2 is None else as_tensor(x2, "x2", ndim=2, device=X1.device,
                                             shape_hint="(n_samples, n_features)")
        if X2.shape[1] != X1.shape[1]:
            raise ValidationError("x2", f"{X1.shape[1]} columns (as many as x1)", f"shape {tuple(X2.shape)}")
        n1, n2, d = X1.shape[0], X2.shape[0], X1.shape[1]
        # k(X, X): compute the tiles on and above the diagonal only, mirror each one while it is in cache, and
        # pair each point with itself exactly.
        symmetric = x2 is None or (X2.shape == X1.shape and bool(torch.equal(X1, X2)))
        side = _TILE_CPU if X1.device.type == "cpu" else _TILE_GPU
        if block_rows is None:
            block_rows = side if n2 >= side else max(8, min(n1, side * side // max(n2, 1)))
            # tile columns: square tiles for k(X, X); wider ones when x1 has few rows (as many entries)
            tc = min(n2, block_rows if symmetric else max(block_rows, side * side // min(block_rows, n1)))
        else:
            block_rows = check_int(block_rows, "block_rows", minimum=1)
            tc = min(block_rows, n2)
        check_memory(8.0 * (2 * n1 * n2 + 8 * block_rows * tc),
                     f"the {n1}×{n2} NNGP and NTK matrices", "Use fewer points, diag=True, or a blocked solver.")
        nngp = torch.empty(n1, n2, dtype=torch.float64, device=X1.device)
        ntk = torch.empty(n1, n2, dtype=torch.float64, device=X1.device)
        sq1 = (X1 * X1).sum(1) / d  # (N1,)
        X2 = X1 if symmetric else X2
        sq2 = sq1 if symmetric else (X2 * X2).sum(1) / d  # (N2,)
        inv_d = 1.0 / d

        def rows(r0: int, r1: int) -> None:
            for j0 in range(r0 if symmetric else 0, n2, tc):
                j1 = min(n2, j0 + tc)
                G = torch.matmul(X1[r0:r1], X2[j0:j1].T).mul_(inv_d)  # (B, T) input Gram Σ⁰ = x·x'/d
                diagonal = symmetric and j0 == r0  # this tile pairs each point with itself on its diagonal
                out = self._output(self.kernel_fn(KState(G, None, sq1[r0:r1], sq2[j0:j1], d, False, diagonal)))
                mirror = symmetric and not diagonal  # the tile below the diagonal is this one's transpose
                upper = torch.ones(r1 - r0, j1 - j0, dtype=torch.bool, device=G.device).triu_() if diagonal else None
                for dst, tile in ((nngp, out.nngp), (ntk, out.ntk)):
                    if tile is None:  # Θ = 0 (a network without a Dense layer)
                        dst[r0:r1, j0:j1].zero_()
                        if mirror:
                            dst[j0:j1, r0:r1].zero_()
                    elif diagonal:  # exactly symmetric: the tile's upper triangle, mirrored
                        torch.where(upper, tile, tile.T, out=dst[r0:r1, j0:j1])
                    else:
                        dst[r0:r1, j0:j1].copy_(tile)
                        if mirror:
                            dst[j0:j1, r0:r1].copy_(tile.T)

        _run_blocks(rows, n1, block_rows, X1.device, threads)
        return NetKernel(kind.wrap(nngp), kind.wrap(ntk))

    def _output(self, out) -> KState:
        if isinstance(out, list):
            raise ValidationError("network", "a single output", f"{len(out)} branches",
                                  "End the branches with FanInSum().")
        return out.materialized()

    def finite(self, seed: int | torch.Generator = 0, width: int | None = None,
               dtype: torch.dtype = torch.float64, *, in_dim: int | None = None) -> torch.nn.Module:
        """A finite random network of the same architecture and parameterisation (a ``torch.nn.Module``).

        Parameters
        ----------
        seed : int or torch.Generator for the N(0, 1) draws of all weights and biases.
        width : if given, replaces the output width of every Dense layer except the last one (the readout).
        dtype : parameter dtype (float64 by default).
        in_dim : the input dimension d, to draw the parameters now; otherwise they are drawn at the first call
            (or ``.materialize(d)``) — ``parameters()`` is empty until then, so pass ``in_dim`` before building
            an optimiser.

        The module maps (N, d) -> (N, out).
        """
        gen = as_generator(seed)
        if width is not None:
            width = check_int(width, "width", minimum=1)
        dense = self.dense_layers()
        readout = dense[-1] if dense else None
        model = _finite.LazyNetwork(self, gen, width, readout, dtype)
        return model if in_dim is None else model.materialize(check_int(in_dim, "in_dim", minimum=1))


# --------------------------------------------------------------------------------------------------------------
# Dense
# --------------------------------------------------------------------------------------------------------------
class Dense(Layer):
    """Fully connected layer ``out`` channels; see the module docstring for both parameterisations.

    Parameters
    ----------
    out : number of output channels (the width when the network is made finite).
    w_std : weight scale σ_w > 0.   b_std : bias scale σ_b >= 0.
    parameterization : ``'ntk'`` (default; THEORY.md §4) or ``'standard'``.
    """

    def __init__(self, out: int, w_std: float = 1.0, b_std: float = 0.0, parameterization: str = "ntk"):
        self.out = check_int(out, "out", minimum=1)
        self.w_std = check_positive(w_std, "w_std")
        self.b_std = check_nonnegative(b_std, "b_std")
        self.parameterization = check_choice(parameterization, "parameterization", ("ntk", "standard"))

    def __repr__(self) -> str:
        return f"Dense({self.out}, w_std={self.w_std}, b_std={self.b_std}, parameterization={self.parameterization!r})"

    def dense_layers(self):
        return [self]

    def kernel_fn(self, k: KState) -> KState:
        w2, b2 = self.w_std**2, self.b_std**2
        if self.parameterization == "standard":  # Θ' = n_in Σ + 1 + w² Θ, with the incoming Σ and Θ
            k = k.materialized()
            if k.ntk is None:
                ntk = torch.mul(k.nngp, float(k.width)).add_(1.0)
            else:
                ntk = k.ntk.mul_(w2).add_(k.nngp, alpha=float(k.width)).add_(1.0)
        b2_t = k.nngp.new_tensor(b2)
        if k.scale1 is not None:  # Σ' = b² + w² (Σ·s1)·s2: the activation's scale fused in (2 passes, not 4)
            nngp = torch.addcmul(b2_t, k.nngp.mul_(k.scale1 * w2), k.scale2, out=k.nngp)
        else:
            nngp = torch.add(b2_t, k.nngp, alpha=w2, out=k.nngp)  # Σ' = w² Σ + b², in place
        if self.parameterization == "ntk":  # Θ' = Σ' + w² Θ (times the activation's Σ̇, fused in)
            if k.ntk is None:
                ntk = nngp.clone()
            elif k.ntk_factor is not None:
                ntk = torch.addcmul(nngp, k.ntk, k.ntk_factor, value=w2 * k.ntk_scale, out=k.ntk)
            else:
                ntk = torch.add(nngp, k.ntk, alpha=w2, out=k.ntk)
        if k.diag:
            return KState(nngp, ntk, nngp, nngp, self.out, True)
        v1, v2 = _affine_vars(k, w2, b2)
        return KState(nngp, ntk, v1, v2, self.out, False, k.self_block)

    def build(self, in_width, gen, hidden, readout, dtype):
        n_out = self.out if (hidden is None or self is readout) else hidden
        return _finite.DenseModule(int(in_width), n_out, self.w_std, self.b_std, self.parameterization, gen,
                                   dtype), n_out


# --------------------------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------------------------
class _Activation(Layer):
    """An elementwise φ: subclasses define ``fn`` (torch) and ``dual(c, a, b, inplace)``."""

    def fn(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - each activation defines it
        raise TypeError(f"{type(self).__name__} defines no elementwise function: subclass Elementwise(fn) instead")

    def dual(self, c, a, b, inplace=False, same=None):  # pragma: no cover - each activation defines it
        raise TypeError(f"{type(self).__name__} has no dual (kernel map): subclass Elementwise(fn) for quadrature")

    def variance(self, v: torch.Tensor) -> torch.Tensor:
        """``E[φ(u)²]`` for ``u ~ N(0, v)``: the output variances of the points, elementwise."""
        return self.dual(v, v, v, same="all")[0]

    def dual_lazy(self, c, a, b, same=None):
        """``(E[φφ] / (s1·s2), E[φ'φ'] / t, s1, s2, t)``: the dual with its row/column scales ``s1``, ``s2`` and
        the derivative's scalar factor ``t`` left to the next layer (None, None, 1 here)."""
        nngp, dot = self.dual(c, a, b, inplace=True, same=same)
        return nngp, dot, None, None, 1.0

    def kernel_fn(self, k: KState) -> KState:
        k = k.materialized()
        if k.diag:
            nngp, dot = self.dual(k.nngp, k.nngp, k.nngp, inplace=False, same="all")
            ntk = None if k.ntk is None else k.ntk.mul_(dot)
            return KState(nngp, ntk, nngp, nngp, k.width, True)
        v1 = self.variance(k.var1)  # Σ'(x, x): (B,)
        v2 = v1 if k.var2 is k.var1 else self.variance(k.var2)
        nngp, dot, s1, s2, t = self.dual_lazy(k.nngp, k.var1[:, None], k.var2[None, :],
                                              same="diagonal" if k.self_block else None)  # (B, N2)
        # Θ' = Σ̇ Θ, left pending so that a following Dense fuses it into Θ'' = Σ'' + w² Σ̇ Θ
        return KState(nngp, k.ntk, v1, v2, k.width, False, k.self_block, s1, s2,
                      None if k.ntk is None else dot, t)

    def build(self, in_width, gen, hidden, readout, dtype):
        return _finite.ActivationModule(self.fn, repr(self)), in_width


class ABReLU(_Activation):
    """``φ(x) = a·min(x, 0) + b·max(x, 0)``: the general piecewise-linear case (closed-form arc-cosine dual).

    ReLU = ABReLU(0, 1), LeakyReLU(s) = ABReLU(s, 1), Identity = ABReLU(1, 1).
    """

    def __init__(self, a: float, b: float):
        self.a = float(a)
        self.b = float(b)
        if not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValidationError("a, b", "finite slopes", f"a={a!r}, b={b!r}")

    def __repr__(self) -> str:
        return f"ABReLU(a={self.a}, b={self.b})"

    def fn(self, x):
        return self.a * torch.clamp(x, max=0.0) + self.b * torch.clamp(x, min=0.0)

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.abrelu_dual(c, a, b, self.a, self.b, inplace=inplace, same=same)

    def dual_lazy(self, c, a, b, same=None):
        return _dual.abrelu_dual(c, a, b, self.a, self.b, inplace=True, same=same, scaled=False)


class ReLU(ABReLU):
    """``φ(x) = max(x, 0)``: the arc-cosine kernel of order 1 (THEORY.md §3)."""

    def __init__(self):
        super().__init__(0.0, 1.0)

    def __repr__(self) -> str:
        return "ReLU()"

    def fn(self, x):
        return torch.relu(x)


class LeakyReLU(ABReLU):
    """``φ(x) = x`` for x > 0 and ``slope·x`` otherwise."""

    def __init__(self, slope: float = 0.01):
        super().__init__(slope, 1.0)
        self.slope = self.a

    def __repr__(self) -> str:
        return f"LeakyReLU({self.slope})"


class Identity(ABReLU):
    """``φ(x) = x``: the kernel passes through unchanged (Σ̇ = 1)."""

    def __init__(self):
        super().__init__(1.0, 1.0)

    def __repr__(self) -> str:
        return "Identity()"

    def fn(self, x):
        return x

    def kernel_fn(self, k):
        return k


class Erf(_Activation):
    """``φ(x) = erf(x)``, closed-form dual ``(2/π) arcsin(2c/√((1+2a)(1+2b)))`` (Williams 1997)."""

    def fn(self, x):
        return torch.erf(x)

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.erf_dual(c, a, b, inplace=inplace)


class Elementwise(_Activation):
    """Any elementwise ``fn`` (torch -> torch): dual by 2-D Gauss–Hermite quadrature, ``φ'`` by autodiff.

    Parameters
    ----------
    fn : callable mapping a tensor to a tensor of the same shape, entry by entry.
    degree : Gauss–Hermite degree per dimension (``degree²`` nodes); exact for polynomials of degree < 2·degree.
    deriv : optional φ' (else torch autodiff of ``fn``).
    name : shown in ``repr``.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], degree: int = 32,
                 deriv: Callable | None = None, name: str | None = None):
        if not callable(fn):
            raise ValidationError("fn", "a callable elementwise activation", type(fn).__name__)
        self._fn = fn
        self.degree = check_int(degree, "degree", minimum=1, maximum=512)
        self._deriv = deriv
        self.name = name or getattr(fn, "__name__", "fn")
        _check_elementwise(fn, "fn")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, degree={self.degree})" if type(self) is Elementwise \
            else f"{type(self).__name__}(degree={self.degree})"

    def fn(self, x):
        return self._fn(x)

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.gauss_hermite_dual(self._fn, c, a, b, self.degree, self._deriv, same=same)


def _check_elementwise(fn, name: str) -> None:
    x = torch.linspace(-2.5, 2.5, 7, dtype=torch.float64).reshape(7, 1) * torch.tensor([1.0, 0.5],
                                                                                        dtype=torch.float64)
    try:
        y = fn(x)
        ok = isinstance(y, torch.Tensor) and y.shape == x.shape
        if ok:
            singles = torch.stack([torch.stack([torch.as_tensor(fn(x[i:i + 1, j:j + 1])).reshape(())
                                                for j in range(2)]) for i in range(7)])
            ok = bool(torch.allclose(singles.to(y.dtype), y, rtol=1e-10, atol=1e-12, equal_nan=True))
    except Exception as exc:  # noqa: BLE001 - any failure means "not a usable activation"
        raise ValidationError(name, "an elementwise torch function (tensor -> tensor of the same shape)",
                              f"a callable that fails on a (7, 2) tensor: {type(exc).__name__}: {exc}") from None
    if not ok:
        raise ValidationError(name, "an elementwise activation (each output entry depends on its input entry "
                              "only)", "a function that mixes entries or changes the shape")


class GELU(Elementwise):
    """``φ(x) = x Φ(x)`` (exact, erf-based); dual by Gauss–Hermite quadrature."""

    def __init__(self, degree: int = 32):
        super().__init__(torch.nn.functional.gelu, degree, name="gelu")


class Tanh(Elementwise):
    """``φ(x) = tanh(x)``; dual by Gauss–Hermite quadrature."""

    def __init__(self, degree: int = 32):
        super().__init__(torch.tanh, degree, deriv=lambda t: 1.0 - torch.tanh(t) ** 2, name="tanh")


class Sigmoid(Elementwise):
    """``φ(x) = 1/(1 + e^{−x})``; dual by Gauss–Hermite quadrature."""

    def __init__(self, degree: int = 32):
        super().__init__(torch.sigmoid, degree,
                         deriv=lambda t: torch.sigmoid(t) * (1.0 - torch.sigmoid(t)), name="sigmoid")


# --------------------------------------------------------------------------------------------------------------
# Combinators
# --------------------------------------------------------------------------------------------------------------
def _check_layers(layers: Sequence[Any], name: str) -> list[Layer]:
    if len(layers) == 0:
        raise ValidationError(name, "at least one layer", "none")
    for i, l in enumerate(layers):
        if not isinstance(l, Layer):
            raise ValidationError(f"{name}[{i}]", "a kernelscope.nets layer (Dense(...), ReLU(), ...)",
                                  f"{type(l).__name__}", "Did you forget the parentheses, e.g. ReLU()?")
    return list(layers)


class Serial(Layer):
    """Layers applied one after the other (kernels and modules composed in order)."""

    def __init__(self, *layers: Layer):
        self.layers = _check_layers(layers, "layers")

    def __repr__(self) -> str:
        return "serial(" + ", ".join(map(repr, self.layers)) + ")"

    def dense_layers(self):
        return [d for l in self.layers for d in l.dense_layers()]

    def kernel_fn(self, k):
        for l in self.layers:
            k = l.kernel_fn(k)
        return k

    def build(self, in_width, gen, hidden, readout, dtype):
        mods = []
        for l in self.layers:
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

    def _check(self, ks):
        if not isinstance(ks, list) or len(ks) != len(self.layers):
            got = f"{len(ks)} branches" if isinstance(ks, list) else "a single input"
            raise ValidationError("parallel", f"{len(self.layers)} input branches", got,
                                  f"Put FanOut({len(self.layers)}) before it.")

    def kernel_fn(self, ks):
        self._check(ks)
        return [l.kernel_fn(k) for l, k in zip(self.layers, ks)]

    def build(self, in_width, gen, hidden, readout, dtype):
        self._check(in_width)
        built = [l.build(w, gen, hidden, readout, dtype) for l, w in zip(self.layers, in_width)]
        return _finite.ParallelModule([m for m, _ in built]), [w for _, w in built]


class FanOut(Layer):
    """Copy the input into ``n`` branches."""

    def __init__(self, n: int):
        self.n = check_int(n, "n", minimum=1)

    def __repr__(self) -> str:
        return f"FanOut({self.n})"

    def kernel_fn(self, k):
        k = k.materialized()  # (materialized() updates the buffers in place: no branch may see them pending)
        return [k] + [k.clone() for _ in range(self.n - 1)]  # clones: branches update their kernels in place

    def build(self, in_width, gen, hidden, readout, dtype):
        return _finite.FanOutModule(self.n), [in_width] * self.n


class FanInSum(Layer):
    """Add the branches (same width); kernels add (exact for uncorrelated branches, as in neural-tangents)."""

    def __repr__(self) -> str:
        return "FanInSum()"

    def kernel_fn(self, ks):
        if not isinstance(ks, list):
            raise ValidationError("FanInSum", "a list of branches (after FanOut/parallel)", "a single input")
        widths = {k.width for k in ks}
        if len(widths) > 1:
            raise ValidationError("FanInSum", "branches of equal width", f"widths {sorted(widths)}")
        ks = [k.materialized() for k in ks]
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
            return KState(nngp, ntk, nngp, nngp, ks[0].width, True)
        v1 = sum(k.var1 for k in ks)
        v2 = v1 if all(k.var2 is k.var1 for k in ks) else sum(k.var2 for k in ks)
        return KState(nngp, ntk, v1, v2, ks[0].width, False, ks[0].self_block)

    def build(self, in_width, gen, hidden, readout, dtype):
        if not isinstance(in_width, list):
            raise ValidationError("FanInSum", "a list of branches (after FanOut/parallel)", "a single input")
        if len(set(in_width)) > 1:
            raise ValidationError("FanInSum", "branches of equal width", f"widths {in_width}",
                                  "Give the branches' Dense layers the same out (and width=...).")
        return _finite.FanInSumModule(), in_width[0]


def serial(*layers: Layer) -> Serial:
    """Compose layers in order: ``serial(Dense(512), ReLU(), Dense(1))``."""
    return Serial(*layers)


def parallel(*layers: Layer) -> Parallel:
    """Apply ``layers[i]`` to branch i: ``serial(FanOut(2), parallel(block, Identity()), FanInSum())``."""
    return Parallel(*layers)
