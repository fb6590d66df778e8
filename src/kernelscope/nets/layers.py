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
``(u, v) ~ N(0, [[Σ(x,x), Σ(x,x')], [Σ(x,x'), Σ(x',x')]])`` (see :mod:`kernelscope.duals`).
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

from .. import duals as _dual
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
from . import finite as _finite

__all__ = [
    "GELU",
    "ABReLU",
    "Abs",
    "Cos",
    "Dense",
    "Elementwise",
    "Erf",
    "Exp",
    "FanInConcat",
    "FanInProd",
    "FanInSum",
    "FanOut",
    "Gaussian",
    "Hermite",
    "Identity",
    "KState",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Monomial",
    "NetKernel",
    "Parallel",
    "Polynomial",
    "Rbf",
    "ReLU",
    "Serial",
    "Sigmoid",
    "Sign",
    "Sin",
    "Tanh",
    "affine_kernel",
    "parallel",
    "serial",
]


# --------------------------------------------------------------------------------------------------------------
# Kernel state and result
# --------------------------------------------------------------------------------------------------------------
@dataclass
class KState:
    """The kernels between two sets of inputs at one point of the network.

    Full mode: ``nngp``, ``ntk`` of shape (B, N2), ``var1`` (B,) = Σ(x, x), ``var2`` (N2,) = Σ(x', x').
    Diag mode: ``nngp``, ``ntk`` of shape (N,) and ``var1 = var2 = nngp``. ``ntk=None`` stands for Θ = 0 (the
    input). ``width`` is the number of channels here (the input dimension d before the first Dense).

    Spatial (convolutional) kernels, ``spatial = S`` the positions' shape ((L,) or (H, W)): every tensor gets the
    positions after its batch axes — only the diagonal of positions (``S``, Σ(x_p, x'_p)) when ``pairs`` is False,
    all pairs of positions (``S + S``, Σ(x_p, x'_q)) when it is True (pooling needs them). ``var1`` is always the
    diag-mode kernel of the rows with themselves: (B,) + S, or (B,) + S + S with pairs (pooling mixes positions
    of a point with each other, so its variances need the point's own pairs).
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
    spatial: tuple = ()
    pairs: bool = False

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

    def new(self, nngp, ntk, var1, var2, width: int | None = None, **pending) -> KState:
        """A state of the same layout (mode, positions, self block) with new kernels; diag mode: var = nngp."""
        if self.diag:
            var1 = var2 = nngp
        return KState(nngp, ntk, var1, var2, self.width if width is None else width, self.diag, self.self_block,
                      spatial=self.spatial, pairs=self.pairs, **pending)

    # -- views for the elementwise maps ---------------------------------------------------------------------
    def variances(self, v: torch.Tensor) -> torch.Tensor:
        """The variances Σ(x_p, x_p) in a diag-mode kernel ``v`` ((B,) + S, or the positions' diagonal of
        (B,) + S + S with pairs)."""
        return _position_diagonal(v, 1, len(self.spatial)) if self.pairs else v

    def a_view(self) -> torch.Tensor:
        """Σ(x, x) of the rows, broadcasting against ``nngp``."""
        return self.var_view(self.variances(self.var1), first=True)

    def b_view(self) -> torch.Tensor:
        """Σ(x', x') of the columns, broadcasting against ``nngp``."""
        return self.var_view(self.variances(self.var2), first=False)

    def var_view(self, v: torch.Tensor, first: bool) -> torch.Tensor:
        """A per-point, per-position tensor ``v`` ((B,) + S) of the rows (``first``) or the columns, shaped to
        broadcast against ``nngp``."""
        ns = len(self.spatial)
        if not self.diag:
            v = v.unsqueeze(1) if first else v.unsqueeze(0)
        if self.pairs:  # rows' positions first, columns' positions second
            nb = 1 if self.diag else 2
            shape = v.shape[:nb] + ((v.shape[nb:] + (1,) * ns) if first else ((1,) * ns + v.shape[nb:]))
            v = v.reshape(shape)
        return v

    def same(self):
        """Which entries pair a point with itself (at the same position): the ``same`` of :mod:`.dual`."""
        ns = len(self.spatial)
        if not self.pairs:
            return "all" if self.diag else ("diagonal" if self.self_block else None)
        if self.diag:
            return lambda t: _position_diagonal(t, 1, ns)
        if self.self_block:
            return lambda t: _position_diagonal(t.diagonal().movedim(-1, 0), 1, ns)
        return None

    def unpaired(self) -> KState:
        """The same kernels on the diagonal of positions only (once no pooling is left downstream)."""
        k = self.materialized()
        nb, ns = (1 if k.diag else 2), len(k.spatial)
        nngp = _position_diagonal(k.nngp, nb, ns).contiguous()
        ntk = None if k.ntk is None else _position_diagonal(k.ntk, nb, ns).contiguous()
        if k.diag:
            return replace(k, nngp=nngp, ntk=ntk, var1=nngp, var2=nngp, pairs=False)
        v1 = _position_diagonal(k.var1, 1, ns).contiguous()
        v2 = v1 if k.var2 is k.var1 else _position_diagonal(k.var2, 1, ns).contiguous()
        return replace(k, nngp=nngp, ntk=ntk, var1=v1, var2=v2, pairs=False)

    def self_state(self, v: torch.Tensor) -> KState:
        """The diag-mode state of a variance tensor ``v`` (var1 or var2): layers map it the way they map nngp."""
        return KState(v, None, v, v, self.width, True, spatial=self.spatial, pairs=self.pairs)


def _position_diagonal(t: torch.Tensor, nb: int, ns: int) -> torch.Tensor:
    """The view of ``t`` (``nb`` batch axes, then S, then S) with both positions equal: shape batch + S."""
    for k in range(ns):
        t = t.diagonal(0, nb, nb + ns - k)  # pairs the leading axis of each set; the diagonal goes last
    return t


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
        """The layers with weights (Dense, Conv), in order: the last one is the readout."""
        return []

    def pairs_before(self, after: bool) -> bool:
        """Whether this layer needs all pairs of positions at its input, given whether the layers after it need
        them at its output (convolutional kernels; pooling needs them, Flatten does not)."""
        return after

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- public API -------------------------------------------------------------------------------------------
    def kernel(self, x1: Any, x2: Any = None, diag: bool = False, *, block_rows: int | None = None,
               threads: int | None = None) -> NetKernel:
        """Infinite-width NNGP and NTK of the network between the rows of ``x1`` and ``x2``.

        Parameters
        ----------
        x1 : array of shape (N1, d); or (N1, C, L) / (N1, C, H, W) (torch layout) for convolutional networks
            (:mod:`kernelscope.nets.conv`: they end in Flatten or GlobalAvgPool).
        x2 : array of the same shape but N2 rows, or None for ``x1`` itself.
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
        if np.ndim(x1) in (3, 4):
            from .conv import spatial_kernel

            return spatial_kernel(self, x1, x2, diag, block_rows, kind, threads)
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
        sq1 = (X1 * X1).sum(1) / d  # (N1,)
        X2 = X1 if symmetric else X2
        sq2 = sq1 if symmetric else (X2 * X2).sum(1) / d  # (N2,)
        inv_d = 1.0 / d

        def state(r0: int, r1: int, j0: int, j1: int, diagonal: bool) -> KState:
            G = torch.matmul(X1[r0:r1], X2[j0:j1].T).mul_(inv_d)  # (B, T) input Gram Σ⁰ = x·x'/d
            return KState(G, None, sq1[r0:r1], sq2[j0:j1], d, False, diagonal)

        nngp, ntk = self._fill_tiles(state, n1, n2, block_rows, tc, symmetric, X1.device, threads)
        return NetKernel(kind.wrap(nngp), kind.wrap(ntk))

    def _fill_tiles(self, state: Callable, n1: int, n2: int, block_rows: int, tc: int, symmetric: bool,
                    device: torch.device, threads: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The (N1, N2) NNGP and NTK, tile by tile: ``state(r0, r1, j0, j1, diagonal)`` gives a tile's input
        KState (``diagonal``: it pairs each point with itself on its leading square); for k(X, X) only the tiles
        on and above the diagonal are computed and mirrored."""
        nngp = torch.empty(n1, n2, dtype=torch.float64, device=device)
        ntk = torch.empty(n1, n2, dtype=torch.float64, device=device)

        def rows(r0: int, r1: int) -> None:
            for j0 in range(r0 if symmetric else 0, n2, tc):
                j1 = min(n2, j0 + tc)
                diagonal = symmetric and j0 == r0  # this tile pairs each point with itself on its diagonal
                out = self._output(self.kernel_fn(state(r0, r1, j0, j1, diagonal)))
                mirror = symmetric and not diagonal  # the tile below the diagonal is this one's transpose
                upper = torch.ones(r1 - r0, j1 - j0, dtype=torch.bool, device=device).triu_() if diagonal else None
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

        _run_blocks(rows, n1, block_rows, device, torch.get_num_threads() if threads is None else threads)
        return nngp, ntk

    def _output(self, out) -> KState:
        if isinstance(out, list):
            raise ValidationError("network", "a single output", f"{len(out)} branches",
                                  "End the branches with FanInSum().")
        if out.spatial:
            raise ValidationError("network", "an output without positions (a kernel per pair of inputs)",
                                  f"outputs of shape (C, {', '.join(map(str, out.spatial))})",
                                  "End a convolutional network with Flatten() or GlobalAvgPool() (and a Dense).")
        return out.materialized()

    def finite(self, seed: int | torch.Generator = 0, width: int | None = None,
               dtype: torch.dtype = torch.float64, *, in_dim: int | None = None) -> torch.nn.Module:
        """A finite random network of the same architecture and parameterisation (a ``torch.nn.Module``).

        Parameters
        ----------
        seed : int or torch.Generator for the N(0, 1) draws of all weights and biases.
        width : if given, replaces the output width of every Dense layer except the last one (the readout).
        dtype : parameter dtype (float64 by default).
        in_dim : the input dimension d (or the per-example shape (C, L) / (C, H, W) of convolutional inputs),
            to draw the parameters now; otherwise they are drawn at the first call
            (or ``.materialize(d)``; ``dynamics.train`` and ``empirical.ntk`` do it from their inputs) —
            ``parameters()`` before then is an error naming ``in_dim``, so pass it before building
            an optimiser.

        The module maps (N, d) -> (N, out), or (N, C, *S) -> (N, out) for convolutional networks.
        """
        gen = as_generator(seed)
        if width is not None:
            width = check_int(width, "width", minimum=1)
        dense = self.dense_layers()
        readout = dense[-1] if dense else None
        model = _finite.LazyNetwork(self, gen, width, readout, dtype)
        if in_dim is None:
            return model
        if isinstance(in_dim, (tuple, list)):
            return model.materialize(tuple(check_int(v, "in_dim", minimum=1) for v in in_dim))
        return model.materialize(check_int(in_dim, "in_dim", minimum=1))


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
        return affine_kernel(k, self.w_std, self.b_std, self.parameterization, self.out, k.width)

    def build(self, in_width, gen, hidden, readout, dtype):
        n_out = self.out if (hidden is None or self is readout) else hidden
        if isinstance(in_width, tuple):  # (C, *S): acts on the channels at each position, as neural-tangents
            from .finite_conv import ChannelsLast

            return ChannelsLast(_finite.DenseModule(in_width[0], n_out, self.w_std, self.b_std,
                                                    self.parameterization, gen, dtype)), (n_out,) + in_width[1:]
        return _finite.DenseModule(int(in_width), n_out, self.w_std, self.b_std, self.parameterization, gen,
                                   dtype), n_out


def affine_kernel(k: KState, w_std: float, b_std: float, parameterization: str, out: int, fan_in: int) -> KState:
    """The kernel map of ``z = (w_std/√fan_in) W x + b_std b`` (THEORY.md §4; module docstring for 'standard'):
    ``Σ' = w² Σ + b²`` and ``Θ' = Σ' + w² Θ`` ('ntk') or ``Θ' = fan_in Σ + 1 + w² Θ`` ('standard'), in place.
    Dense layers call it with ``Σ`` as it comes; convolutions with ``Σ`` averaged over the filter first."""
    w2, b2 = w_std**2, b_std**2
    if parameterization == "standard":  # Θ' = n_in Σ + 1 + w² Θ, with the incoming Σ and Θ
        k = k.materialized()
        if k.ntk is None:
            ntk = torch.mul(k.nngp, float(fan_in)).add_(1.0)
        else:
            ntk = k.ntk.mul_(w2).add_(k.nngp, alpha=float(fan_in)).add_(1.0)
    b2_t = k.nngp.new_tensor(b2)
    if k.scale1 is not None:  # Σ' = b² + w² (Σ·s1)·s2: the activation's scale fused in (2 passes, not 4)
        nngp = torch.addcmul(b2_t, k.nngp.mul_(k.scale1 * w2), k.scale2, out=k.nngp)
    else:
        nngp = torch.add(b2_t, k.nngp, alpha=w2, out=k.nngp)  # Σ' = w² Σ + b², in place
    if parameterization == "ntk":  # Θ' = Σ' + w² Θ (times the activation's Σ̇, fused in)
        if k.ntk is None:
            ntk = nngp.clone()
        elif k.ntk_factor is not None:
            ntk = torch.addcmul(nngp, k.ntk, k.ntk_factor, value=w2 * k.ntk_scale, out=k.ntk)
        else:
            ntk = torch.add(nngp, k.ntk, alpha=w2, out=k.ntk)
    if k.diag:
        return k.new(nngp, ntk, None, None, out)
    v1, v2 = _affine_vars(k, w2, b2)
    return k.new(nngp, ntk, v1, v2, out)


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
            nngp, dot = self.dual(k.nngp, k.a_view(), k.b_view(), inplace=False, same=k.same())
            ntk = None if k.ntk is None else k.ntk.mul_(dot)
            return k.new(nngp, ntk, None, None)
        v1 = self.kernel_fn(k.self_state(k.var1)).nngp  # Σ'(x, x): (B,) (+ positions)
        v2 = v1 if k.var2 is k.var1 else self.kernel_fn(k.self_state(k.var2)).nngp
        nngp, dot, s1, s2, t = self.dual_lazy(k.nngp, k.a_view(), k.b_view(), same=k.same())  # (B, N2)
        # Θ' = Σ̇ Θ, left pending so that a following Dense fuses it into Θ'' = Σ'' + w² Σ̇ Θ
        return k.new(nngp, k.ntk, v1, v2, scale1=s1, scale2=s2, ntk_factor=None if k.ntk is None else dot,
                     ntk_scale=t)

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


class Abs(ABReLU):
    """``φ(x) = |x|`` = ABReLU(−1, 1) (neural-tangents' ``Abs``)."""

    def __init__(self):
        super().__init__(-1.0, 1.0)

    def __repr__(self) -> str:
        return "Abs()"

    def fn(self, x):
        return torch.abs(x)


class Erf(_Activation):
    """``φ(x) = a·erf(b·x) + c`` (neural-tangents' ``Erf(a, b, c)``; default erf), closed-form dual
    ``a² (2/π) arcsin(2b²Σ₁₂/√((1+2b²Σ₁₁)(1+2b²Σ₂₂))) + c²`` (Williams 1997; E[erf] = 0 so the shift adds c²)."""

    def __init__(self, a: float = 1.0, b: float = 1.0, c: float = 0.0):
        self.a, self.b, self.c = _finite_float(a, "a"), _finite_float(b, "b"), _finite_float(c, "c")

    def __repr__(self) -> str:
        return "Erf()" if (self.a, self.b, self.c) == (1.0, 1.0, 0.0) else f"Erf(a={self.a}, b={self.b}, c={self.c})"

    def fn(self, x):
        return torch.erf(x * self.b) * self.a + self.c if (self.a, self.b, self.c) != (1.0, 1.0, 0.0) \
            else torch.erf(x)

    def dual(self, c, a, b, inplace=False, same=None):
        if (self.a, self.b, self.c) == (1.0, 1.0, 0.0):
            return _dual.erf_dual(c, a, b, inplace=inplace)
        s = self.b * self.b
        nngp, dot = _dual.erf_dual(c * s, a * s, b * s)
        return nngp.mul_(self.a**2).add_(self.c**2), dot.mul_(self.a**2 * s)


def _finite_float(v: Any, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValidationError(name, "a finite number", type(v).__name__) from None
    if not math.isfinite(f):
        raise ValidationError(name, "a finite number", repr(v))
    return f


class GELU(_Activation):
    """``φ(x) = x Φ(x)`` (Φ the standard normal CDF): closed-form dual, exact to rounding
    (:func:`kernelscope.duals.gelu_dual`).

    approximate : as neural-tangents' ``Gelu``: if True the *finite* network uses the tanh approximation (the
        kernel stays the exact GELU's, so finite nets then converge to a slightly different kernel).
    degree : ignored (kept so that ``GELU(degree=...)`` from before the closed form keeps working).
    """

    def __init__(self, approximate: bool = False, degree: int | None = None):
        self.approximate = bool(approximate)

    def __repr__(self) -> str:
        return "GELU(approximate=True)" if self.approximate else "GELU()"

    def fn(self, x):
        return torch.nn.functional.gelu(x, approximate="tanh" if self.approximate else "none")

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.gelu_dual(c, a, b, inplace=inplace, same=same)


class Sin(_Activation):
    """``φ(x) = a·sin(b·x + c)`` (neural-tangents' ``Sin(a, b, c)``), closed form :func:`kernelscope.duals.sin_dual`."""

    def __init__(self, a: float = 1.0, b: float = 1.0, c: float = 0.0):
        self.a, self.b, self.c = _finite_float(a, "a"), _finite_float(b, "b"), _finite_float(c, "c")

    def __repr__(self) -> str:
        return f"Sin(a={self.a}, b={self.b}, c={self.c})"

    def fn(self, x):
        return torch.sin(x * self.b + self.c) * self.a

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.sin_dual(c, a, b, self.a, self.b, self.c, inplace=inplace, same=same)


class Cos(Sin):
    """``φ(x) = a·cos(b·x + c)`` = Sin with phase ``c + π/2`` (neural-tangents' ``Cos``)."""

    def __init__(self, a: float = 1.0, b: float = 1.0, c: float = 0.0):
        super().__init__(a, b, _finite_float(c, "c") + math.pi / 2)

    def __repr__(self) -> str:
        return f"Cos(a={self.a}, b={self.b}, c={self.c - math.pi / 2})"


class Rbf(Sin):
    """``φ(x) = √2 sin(√(2γ) x + π/4)``, whose NNGP is the RBF kernel ``exp(−γ (Σ₁₁ + Σ₂₂ − 2Σ₁₂))`` of the
    pre-activations (neural-tangents' ``Rbf(gamma)``, γ = 1/(2ℓ²)); derivative kernel ``2γ`` times it."""

    def __init__(self, gamma: float = 1.0):
        self.gamma = check_positive(gamma, "gamma")
        super().__init__(math.sqrt(2.0), math.sqrt(2.0 * self.gamma), math.pi / 4)

    def __repr__(self) -> str:
        return f"Rbf(gamma={self.gamma})"


class Exp(_Activation):
    """``φ(x) = a·e^{b·x}`` (neural-tangents' ``Exp(a, b)``), closed form :func:`kernelscope.duals.exp_dual`."""

    def __init__(self, a: float = 1.0, b: float = 1.0):
        self.a, self.b = _finite_float(a, "a"), _finite_float(b, "b")

    def __repr__(self) -> str:
        return f"Exp(a={self.a}, b={self.b})"

    def fn(self, x):
        return torch.exp(x * self.b) * self.a

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.exp_dual(c, a, b, self.a, self.b, inplace=inplace, same=same)


class Gaussian(_Activation):
    """``φ(x) = a·e^{b·x²}`` (neural-tangents' ``Gaussian(a, b)``, default b = −1), closed form
    :func:`kernelscope.duals.gaussian_dual` (infinite where b > 0 and the variance reaches 1/(4b))."""

    def __init__(self, a: float = 1.0, b: float = -1.0):
        self.a, self.b = _finite_float(a, "a"), _finite_float(b, "b")

    def __repr__(self) -> str:
        return f"Gaussian(a={self.a}, b={self.b})"

    def fn(self, x):
        return torch.exp(x * x * self.b) * self.a

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.gaussian_dual(c, a, b, self.a, self.b, inplace=inplace, same=same)


class Sign(_Activation):
    """``φ(x) = sign(x)``: NNGP ``1 − 2θ/π``; its derivative is 0 almost everywhere, so the NTK does not pass
    (Θ' = 0, as in neural-tangents)."""

    def fn(self, x):
        return torch.sign(x)

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.sign_dual(c, a, b, inplace=inplace, same=same)


class Polynomial(_Activation):
    """``φ(x) = Σ_n coeffs[n] xⁿ``: exact dual by the Hermite expansion (:func:`kernelscope.duals.polynomial_dual`)."""

    def __init__(self, coeffs: Sequence[float], name: str | None = None):
        cs = [_finite_float(v, f"coeffs[{i}]") for i, v in enumerate(coeffs)]
        if not cs:
            raise ValidationError("coeffs", "at least one coefficient", "none")
        while len(cs) > 1 and cs[-1] == 0.0:
            cs.pop()
        self.coeffs = tuple(cs)
        self._name = name

    def __repr__(self) -> str:
        return self._name or f"Polynomial({list(self.coeffs)})"

    def fn(self, x):
        out = torch.full_like(x, self.coeffs[-1])
        for cf in self.coeffs[-2::-1]:  # Horner
            out = out * x + cf
        return out

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.polynomial_dual(self.coeffs, c, a, b, inplace=inplace, same=same)


class Monomial(Polynomial):
    """``φ(x) = x^degree`` (exact dual: :class:`Polynomial`)."""

    def __init__(self, degree: int):
        self.degree = check_int(degree, "degree", minimum=0, maximum=32)
        super().__init__([0.0] * self.degree + [1.0], name=f"Monomial({self.degree})")


class Hermite(Polynomial):
    """``φ(x) = He_n(x)/√(n!)``, the probabilists' Hermite polynomial normalised in L²(N(0, 1)) (neural-tangents'
    ``Hermite(degree)``). Exact dual for every input variance; for unit variances it is ``Σ₁₂ⁿ`` (Mehler), the
    formula neural-tangents uses (it assumes unit variances)."""

    def __init__(self, degree: int):
        self.degree = check_int(degree, "degree", minimum=1, maximum=32)
        coeffs = np.polynomial.hermite_e.herme2poly([0.0] * self.degree + [1.0]) / math.sqrt(
            math.factorial(self.degree))
        super().__init__(coeffs.tolist(), name=f"Hermite({self.degree})")


class Elementwise(_Activation):
    """Any elementwise activation: a user-supplied dual (``nngp_fn``), or 2-D Gauss–Hermite quadrature of ``fn``.

    Parameters
    ----------
    fn : callable mapping a tensor to a tensor of the same shape, entry by entry (the finite network's
        activation; may be None when ``nngp_fn`` is given, then ``finite()`` is refused).
    degree : Gauss–Hermite degree per dimension to start from (``degree²`` nodes); exact for polynomials of
        degree < 2·degree.
    deriv : optional φ' (else torch autodiff of ``fn``).
    name : shown in ``repr``.
    nngp_fn : optional ``(cov12, var1, var2) -> E[φ(u)φ(v)]`` on torch tensors (neural-tangents' ``nngp_fn``):
        the dual in closed form, used instead of quadrature.
    d_nngp_fn : optional ``(cov12, var1, var2) -> E[φ'(u)φ'(v)]``; else ``∂ nngp_fn / ∂ cov12`` by torch autodiff
        (Price's theorem: ``∂E[φ(u)φ(v)]/∂c = E[φ'(u)φ'(v)]``).
    rtol : quadrature only: the largest estimated relative error accepted (degree D against 2D on the hardest
        entries' variances, :func:`kernelscope.duals.gauss_hermite_degree`); the degree grows by 1.5× until it
        holds, up to
        ``max_degree``, past which a :class:`~kernelscope._arrays.KernelscopeWarning` names the estimate.
        None: no estimate.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor] | None = None, degree: int = 32,
                 deriv: Callable | None = None, name: str | None = None, *, nngp_fn: Callable | None = None,
                 d_nngp_fn: Callable | None = None, rtol: float | None = 1e-8, max_degree: int = 256):
        if fn is None and nngp_fn is None:
            raise ValidationError("fn", "an elementwise activation (or nngp_fn, its dual)", "neither",
                                  "Pass fn=torch.tanh, or nngp_fn=... for a kernel-only layer.")
        if fn is not None and not callable(fn):
            raise ValidationError("fn", "a callable elementwise activation", type(fn).__name__)
        for nm, f in (("nngp_fn", nngp_fn), ("d_nngp_fn", d_nngp_fn), ("deriv", deriv)):
            if f is not None and not callable(f):
                raise ValidationError(nm, "a callable", type(f).__name__)
        self._fn, self._nngp_fn, self._d_nngp_fn = fn, nngp_fn, d_nngp_fn
        self.degree = check_int(degree, "degree", minimum=1, maximum=512)
        self.max_degree = check_int(max_degree, "max_degree", minimum=self.degree, maximum=1024)
        self.rtol = None if rtol is None else check_positive(rtol, "rtol")
        self._deriv = deriv
        self.name = name or getattr(fn if fn is not None else nngp_fn, "__name__", "fn")
        if fn is not None:
            _check_elementwise(fn, "fn")

    def __repr__(self) -> str:
        if type(self) is not Elementwise:
            return f"{type(self).__name__}(degree={self.degree})"
        return f"Elementwise({self.name}, nngp_fn=...)" if self._nngp_fn is not None \
            else f"Elementwise({self.name}, degree={self.degree})"

    def fn(self, x):
        if self._fn is None:
            raise ValidationError("Elementwise.fn", "an activation for the finite network", "None",
                                  "Pass fn= as well as nngp_fn= to build finite networks.")
        return self._fn(x)

    def dual(self, c, a, b, inplace=False, same=None):
        if self._nngp_fn is not None:
            return _user_dual(self._nngp_fn, self._d_nngp_fn, c, a, b, same)
        return _dual.gauss_hermite_dual(self._fn, c, a, b, self.degree, self._deriv, same=same, rtol=self.rtol,
                                        max_degree=self.max_degree)


def _user_dual(nngp_fn, d_nngp_fn, c, a, b, same):
    """A user's closed-form dual on the (clamped) covariances, with its c-derivative by autodiff if not given."""
    shape = torch.broadcast_shapes(c.shape, a.shape, b.shape)
    c = _dual._cov(c, a, b, False, same).expand(shape)
    a, b = a.expand(shape), b.expand(shape)
    if d_nngp_fn is not None:
        nngp, dot = nngp_fn(c, a, b), d_nngp_fn(c, a, b)
    else:
        with torch.enable_grad():
            t = c.detach().clone().requires_grad_(True)
            out = nngp_fn(t, a, b)
            (dot,) = torch.autograd.grad(out.sum(), t)
        nngp = out.detach()
    return torch.as_tensor(nngp, dtype=c.dtype).expand(shape).clone(), \
        torch.as_tensor(dot, dtype=c.dtype).expand(shape).clone()


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


class Tanh(Elementwise):
    """``φ(x) = tanh(x)``; dual by Gauss–Hermite quadrature (error-controlled, see :class:`Elementwise`)."""

    def __init__(self, degree: int = 32, rtol: float | None = 1e-8):
        super().__init__(torch.tanh, degree, deriv=lambda t: 1.0 - torch.tanh(t) ** 2, name="tanh", rtol=rtol)


class Sigmoid(Elementwise):
    """``φ(x) = 1/(1 + e^{−x})``; dual by Gauss–Hermite quadrature (error-controlled, see :class:`Elementwise`)."""

    def __init__(self, degree: int = 32, rtol: float | None = 1e-8):
        super().__init__(torch.sigmoid, degree,
                         deriv=lambda t: torch.sigmoid(t) * (1.0 - torch.sigmoid(t)), name="sigmoid", rtol=rtol)


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

    def pairs_before(self, after: bool) -> bool:
        for l in reversed(self.layers):
            after = l.pairs_before(after)
        return after

    def kernel_fn(self, k):
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

    def pairs_before(self, after: bool) -> bool:
        return any(l.pairs_before(after) for l in self.layers)

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
        ks = _same_layout([k.materialized() for k in ks], "FanInSum")
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
            return ks[0].new(nngp, ntk, None, None)
        v1 = sum(k.var1 for k in ks)
        v2 = v1 if all(k.var2 is k.var1 for k in ks) else sum(k.var2 for k in ks)
        return ks[0].new(nngp, ntk, v1, v2)

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


def _same_layout(ks: list[KState], name: str) -> list[KState]:
    """Check that branches meet with the same positions (and make their position-pair modes agree)."""
    spatial = {k.spatial for k in ks}
    if len(spatial) > 1:
        raise ValidationError(name, "branches with the same positions", f"positions {sorted(spatial)}",
                              "Give the branches the same strides and paddings.")
    if len({k.pairs for k in ks}) > 1:
        ks = [k.unpaired() if k.pairs else k for k in ks]
    return ks


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
        return _dual._safe_rsqrt(n)  # 1/√n, 0 for a zero input

    def kernel_fn(self, k: KState) -> KState:
        k = k.materialized()
        r1 = self._norms(k, k.var1)
        r2 = r1 if k.var2 is k.var1 else self._norms(k, k.var2)
        s = k.var_view(r1, True) * k.var_view(r2, False)
        nngp = k.nngp.mul_(s)
        ntk = None if k.ntk is None else k.ntk.mul_(s)
        if k.diag:
            return k.new(nngp, ntk, None, None)
        v1 = self.kernel_fn(k.self_state(k.var1.clone())).nngp
        v2 = v1 if k.var2 is k.var1 else self.kernel_fn(k.self_state(k.var2.clone())).nngp
        return k.new(nngp, ntk, v1, v2)

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


def _branch_widths(ks, name: str) -> list[KState]:
    if not isinstance(ks, list):
        raise ValidationError(name, "a list of branches (after FanOut/parallel)", "a single input")
    return _same_layout([k.materialized() for k in ks], name)


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
        ks = _branch_widths(ks, "FanInConcat")
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
            return ks[0].new(nngp, ntk, None, None, width)
        v1 = sum(w * k.var1 for k, w in zip(ks, ws))
        v2 = v1 if all(k.var2 is k.var1 for k in ks) else sum(w * k.var2 for k, w in zip(ks, ws))
        return ks[0].new(nngp, ntk, v1, v2, width)

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
        ks = _branch_widths(ks, "FanInProd")
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
            return ks[0].new(nngp, ntk, None, None)
        v1 = math.prod([k.var1 for k in ks])
        v2 = v1 if all(k.var2 is k.var1 for k in ks) else math.prod([k.var2 for k in ks])
        return ks[0].new(nngp, ntk, v1, v2)

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
