"""The engine of :mod:`kernelscope.nets`: the :class:`Layer` base and the tiles and threads its kernels run on.

The idea is neural-tangents' ``stax``: a layer is a pair (kernel map, finite module) and combinators compose
both at once. A layer's ``kernel_fn`` maps the :class:`~kernelscope.nets.state.KState` of THEORY.md §4 — the
NNGP ``Σ``, the NTK ``Θ`` and the variances ``Σ(x, x)``, ``Σ(x', x')`` the activations need — from the input
kernel ``Σ⁰(x, x') = x·x'/d`` (``Θ⁰ = 0``) to the readout; its ``build`` makes the finite torch module.

:meth:`Layer.kernel` computes the (N1, N2) matrices tile by tile: each tile's input state gets one GEMM for its
Gram matrix and is *donated* to the network, whose layers then run the whole recursion in that tile's buffers
while it is in cache; for k(X, X) only the tiles on and above the diagonal are computed, and mirrored. Inputs
with positions (N, C, L) or (N, C, H, W): networks without pooling carry the diagonal of positions only
(N1·N2·|S| numbers per kernel); pooling needs all pairs of positions (N1·N2·|S|²) up to the last pooling layer.
Tiles are sized to the memory budget; a network that cannot fit one tile is refused before any work, with the
bytes named.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._arrays import (
    ArrayKind,
    ValidationError,
    as_generator,
    as_tensor,
    check_int,
    check_magnitude,
    check_memory,
    memory_budget_bytes,
)
from .._threads import Cancelled, cancellable, check_cancelled
from . import finite as _finite
from .state import KState

__all__ = ["Layer", "NetKernel"]


@dataclass
class NetKernel:
    """Infinite-width kernels of a network: ``nngp`` and ``ntk`` of shape (N1, N2), or (N,) in diag mode."""

    nngp: Any
    ntk: Any


# --------------------------------------------------------------------------------------------------------------
# Base class: every layer (and combination of layers) is a network
# --------------------------------------------------------------------------------------------------------------
class Layer:
    """A layer, or a whole network: ``kernel_fn`` (the infinite-width recursion) and ``build`` (a finite module).

    Public methods: :meth:`kernel` (analytic NNGP/NTK) and :meth:`finite` (a random torch network).
    """

    # -- to be defined by each layer ---------------------------------------------------------------------------
    def kernel_fn(self, k):
        """The layer's kernel map: a :class:`KState` (or a list of them, one per branch) -> a new one (or list).
        The state given is left as it is unless it was donated (see :mod:`kernelscope.nets.state`)."""
        raise TypeError(f"{type(self).__name__} has no kernel map")  # pragma: no cover

    def build(self, in_width, gen: torch.Generator, hidden: int | None, readout: Layer | None, dtype):
        """Return (module, out_width) for inputs of ``in_width`` channels (an int, or a list for branches)."""
        raise TypeError(f"{type(self).__name__} has no finite module")  # pragma: no cover

    def dense_layers(self) -> list[Layer]:
        """The layers with weights (Dense, Conv), in order: the last one is the readout."""
        return []

    def pairs_before(self, after: bool) -> bool:
        """Whether this layer needs all pairs of positions at its input, given whether the layers after it need
        them at its output (convolutional kernels; pooling needs them, Flatten does not)."""
        return after

    def branch_states(self) -> int:
        """How many kernel states of branches (FanOut's copies) this layer may hold at once, an upper bound for
        the memory estimates of :meth:`kernel` (0 for a layer without branches)."""
        return 0

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
        if np.ndim(x1) in (3, 4):
            return _spatial_kernel(self, x1, x2, diag, block_rows, kind, threads)
        return _vector_kernel(self, x1, x2, diag, block_rows, kind, threads)

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
# Tiles and threads
# --------------------------------------------------------------------------------------------------------------
# Default tile side for (N, d) inputs. On CPU a 512×512 float64 tile is 2 MB: the recursion's few buffers stay in
# L2/L3, and the per-op overhead of torch stays small (measured at N = 4000: sides 448–512 fastest, 256 is 1.5×
# slower, 1000 1.15× slower). On a GPU bigger tiles mean fewer kernel launches.
_TILE_CPU, _TILE_GPU = 512, 4096
# Inputs with positions: numbers per tile buffer (8 MB on CPU: stays in cache), and buffers per tile (nngp, ntk,
# pending factors, conv outputs and the activations' temporaries).
_TILE_ENTRIES_CPU, _TILE_ENTRIES_GPU = 2**20, 2**25
_TILE_BUFFERS = 12


def _run_blocks(fn: Callable[[int, int, threading.Event], None], n: int, block_rows: int, device: torch.device,
                threads: int) -> None:
    """Run ``fn(r0, r1, stop)`` over row blocks: on CPU on ``threads`` worker threads (the blocks write disjoint
    parts of the outputs), otherwise in order. torch's process-wide intra-op thread count is read by the caller,
    never written, so each worker's ops may use it too. Measured at N = 4000 on 2 busy cores (load 3.5–4.7, medians
    of 11 interleaved runs): 0.68 s against 1.06 s at d = 64 and 1.08 s against 1.48 s at d = 784 for the former
    scheme, which set torch's count to 1 for the whole process while the workers ran.

    ``stop`` is set when the caller is interrupted (Ctrl-C, any exception in a block): ``fn`` checks it between
    tiles, and the blocks not started yet are cancelled, so an interrupt is obeyed after the tiles in flight
    instead of after every queued one."""
    stop = threading.Event()
    starts = list(range(0, n, block_rows))
    if device.type != "cpu" or threads <= 1 or len(starts) == 1:
        for r0 in starts:
            fn(r0, min(n, r0 + block_rows), stop)
        return
    pool = ThreadPoolExecutor(max_workers=min(threads, len(starts)), thread_name_prefix="kernelscope-tiles")
    try:
        pending = {pool.submit(fn, r0, min(n, r0 + block_rows), stop) for r0 in starts}
        while pending:  # short waits: the main thread returns to Python often enough to see Ctrl-C at once
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
            for f in done:
                f.result()  # a block's exception, raised here
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)  # the running tiles finish theirs (milliseconds), then stop
        raise
    pool.shutdown(wait=True)


def _output(out) -> KState:
    """The network's output state, checked to be one kernel per pair of inputs, multipliers applied."""
    if isinstance(out, list):
        raise ValidationError("network", "a single output", f"{len(out)} branches",
                              "End the branches with FanInSum().")
    if out.spatial:
        raise ValidationError("network", "an output without positions (a kernel per pair of inputs)",
                              f"outputs of shape (C, {', '.join(map(str, out.spatial))})",
                              "End a convolutional network with Flatten() or GlobalAvgPool() (and a Dense).")
    return out.materialized()


def _diag_kernel(net: Layer, state: KState, kind: ArrayKind) -> NetKernel:
    """k(x, x) for the points of a donated diag-mode input ``state``."""
    out = _output(net.kernel_fn(state))
    ntk = torch.zeros_like(out.nngp) if out.ntk is None else out.ntk
    return NetKernel(kind.wrap(out.nngp), kind.wrap(ntk))


def _fill_tiles(net: Layer, state: Callable[[int, int, int, int, bool], KState], n1: int, n2: int,
                block_rows: int, tc: int, symmetric: bool, device: torch.device, threads: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The (N1, N2) NNGP and NTK, tile by tile: ``state(r0, r1, j0, j1, diagonal)`` gives a tile's donated input
    KState (``diagonal``: it pairs each point with itself on its leading square); for k(X, X) only the tiles
    on and above the diagonal are computed and mirrored."""
    nngp = torch.empty(n1, n2, dtype=torch.float64, device=device)
    ntk = torch.empty(n1, n2, dtype=torch.float64, device=device)

    def rows(r0: int, r1: int, stop: threading.Event) -> None:
        with cancellable(stop), contextlib.suppress(Cancelled):  # the caller was interrupted: leave
            for j0 in range(r0 if symmetric else 0, n2, tc):
                check_cancelled()
                row_tile(r0, r1, j0)

    def row_tile(r0: int, r1: int, j0: int) -> None:
        j1 = min(n2, j0 + tc)
        diagonal = symmetric and j0 == r0  # this tile pairs each point with itself on its diagonal
        out = _output(net.kernel_fn(state(r0, r1, j0, j1, diagonal)))
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

    _run_blocks(rows, n1, block_rows, device, threads)
    return nngp, ntk


# --------------------------------------------------------------------------------------------------------------
# Inputs (N, d)
# --------------------------------------------------------------------------------------------------------------
def _vector_kernel(net: Layer, x1: Any, x2: Any, diag: bool, block_rows: int | None, kind: ArrayKind,
                   threads: int) -> NetKernel:
    """:meth:`Layer.kernel` for inputs of shape (N, d)."""
    device = kind.device if kind.is_torch else None
    X1 = as_tensor(x1, "x1", ndim=2, device=device, shape_hint="(n_samples, n_features)")
    check_magnitude(X1, "x1")
    # tile buffers per branch state: its NNGP and NTK, and the new ones its layers make before the old are freed
    # (measured peaks: FanOut(32), N = 4000, 0.92 of the estimate; FanOut(128), N = 2000, 0.83)
    branches = 4 * net.branch_states()
    if diag:
        if x2 is not None:
            raise ValidationError("x2", "None in diag mode (diag computes k(x, x) for the rows of x1)",
                                  f"an array of shape {tuple(np.shape(x2))}", "Call kernel(x1, diag=True).")
        check_memory(8.0 * (8 + branches) * X1.shape[0], f"the diagonal kernels of {X1.shape[0]} inputs",
                     "Use fewer points at once (diag is computed row by row).")
        sq = (X1 * X1).sum(1) / X1.shape[1]  # (N,)
        return _diag_kernel(net, KState(sq, None, sq, sq, X1.shape[1], donated=True), kind)
    X2 = X1 if x2 is None else as_tensor(x2, "x2", ndim=2, device=X1.device,
                                         shape_hint="(n_samples, n_features)")
    if X2.shape[1] != X1.shape[1]:
        raise ValidationError("x2", f"{X1.shape[1]} columns (as many as x1)", f"shape {tuple(X2.shape)}")
    if x2 is not None:
        check_magnitude(X2, "x2")
    n1, n2, d = X1.shape[0], X2.shape[0], X1.shape[1]
    # k(X, X): compute the tiles on and above the diagonal only, mirror each one while it is in cache, and
    # pair each point with itself exactly.
    symmetric = x2 is None or (X2.shape == X1.shape and bool(torch.equal(X1, X2)))
    side = _TILE_CPU if X1.device.type == "cpu" else _TILE_GPU
    auto_tiles = block_rows is None
    if block_rows is None:
        block_rows = side if n2 >= side else max(8, min(n1, side * side // max(n2, 1)))
        # tile columns: square tiles for k(X, X); wider ones when x1 has few rows (as many entries)
        tc = min(n2, block_rows if symmetric else max(block_rows, side * side // min(block_rows, n1)))
    else:
        block_rows = check_int(block_rows, "block_rows", minimum=1)
        tc = min(block_rows, n2)
    workers = min(threads, -(-n1 // block_rows)) if X1.device.type == "cpu" else 1

    def need(br: int, cols: int) -> float:  # the two outputs, and each worker's tile buffers (branches included)
        return 8.0 * (2 * n1 * n2 + (8 + branches) * workers * br * cols)

    if auto_tiles:  # shrink the tiles to the budget before refusing (many FanOut branches)
        budget = memory_budget_bytes()
        while block_rows > 8 and need(block_rows, tc) > budget:
            block_rows, tc = max(8, block_rows // 2), max(1, tc // 2)
    check_memory(need(block_rows, tc), f"the {n1}×{n2} NNGP and NTK matrices (tiles of {block_rows}×{tc}"
                 + (f", {branches // 4} branch states" if branches else "") + ")",
                 "Use fewer points, diag=True, or a blocked solver.")
    sq1 = (X1 * X1).sum(1) / d  # (N1,)
    X2 = X1 if symmetric else X2
    sq2 = sq1 if symmetric else (X2 * X2).sum(1) / d  # (N2,)
    inv_d = 1.0 / d

    def state(r0: int, r1: int, j0: int, j1: int, diagonal: bool) -> KState:
        G = torch.matmul(X1[r0:r1], X2[j0:j1].T).mul_(inv_d)  # (B, T) input Gram Σ⁰ = x·x'/d
        return KState(G, None, sq1[r0:r1], sq2[j0:j1], d, self_block=diagonal, donated=True)

    nngp, ntk = _fill_tiles(net, state, n1, n2, block_rows, tc, symmetric, X1.device, threads)
    return NetKernel(kind.wrap(nngp), kind.wrap(ntk))


# --------------------------------------------------------------------------------------------------------------
# Inputs with positions (N, C, L) or (N, C, H, W)
# --------------------------------------------------------------------------------------------------------------
def _grams(A: torch.Tensor, B: torch.Tensor, pairs: bool) -> torch.Tensor:
    """Input kernel Σ⁰(x_p, x'_q) = Σ_c x_cp x'_cq / C for A (b, C, P), B (t, C, P): (b, t, P) on the diagonal of
    positions, (b, t, P, P) with pairs."""
    b, C, P = A.shape
    t = B.shape[0]
    if pairs:
        G = torch.matmul(A.transpose(1, 2).reshape(b * P, C), B.transpose(0, 1).reshape(C, t * P))
        return G.reshape(b, P, t, P).permute(0, 2, 1, 3).contiguous().mul_(1.0 / C)
    G = torch.matmul(A.permute(2, 0, 1), B.permute(2, 1, 0))  # (P, b, t)
    return G.permute(1, 2, 0).contiguous().mul_(1.0 / C)


def _self_grams(A: torch.Tensor, pairs: bool) -> torch.Tensor:
    """Σ⁰(x_p, x_q) of each point with itself: (N, P) or (N, P, P)."""
    if pairs:
        return torch.matmul(A.transpose(1, 2), A).mul_(1.0 / A.shape[1])
    return (A * A).sum(1).mul_(1.0 / A.shape[1])


def _spatial_kernel(net: Layer, x1: Any, x2: Any, diag: bool, block_rows: int | None, kind: ArrayKind,
                    threads: int) -> NetKernel:
    """:meth:`Layer.kernel` for inputs with positions (see the module docstring)."""
    device = kind.device if kind.is_torch else None
    hint = "(n_samples, channels, length) or (n_samples, channels, height, width)"
    X1 = as_tensor(x1, "x1", ndim=(3, 4), device=device, shape_hint=hint)
    S = tuple(X1.shape[2:])
    P, C = math.prod(S), X1.shape[1]
    check_magnitude(X1, "x1", features=C)
    buffers = _TILE_BUFFERS + 4 * net.branch_states()  # 4 tile buffers per branch state (see _vector_kernel)
    pairs = net.pairs_before(False)
    m = P * P if pairs else P  # numbers per pair of inputs
    shaped = lambda G, nb: G.reshape(G.shape[:nb] + (S + S if pairs else S))
    A1 = X1.reshape(X1.shape[0], C, P)
    way_out = ("Use fewer points, or Flatten instead of pooling (the diagonal of positions only: "
               f"{P} instead of {P * P} numbers per pair), or smaller images.")
    if diag:
        if x2 is not None:
            raise ValidationError("x2", "None in diag mode", "an array", "Call kernel(x1, diag=True).")
        check_memory(8.0 * buffers * X1.shape[0] * m, f"the per-point kernels of {X1.shape[0]} inputs",
                     way_out)
        G = shaped(_self_grams(A1, pairs), 1)
        return _diag_kernel(net, KState(G, None, G, G, C, pairs=pairs, donated=True), kind)
    X2 = X1 if x2 is None else as_tensor(x2, "x2", ndim=X1.ndim, device=X1.device, shape_hint=hint)
    if tuple(X2.shape[1:]) != tuple(X1.shape[1:]):
        raise ValidationError("x2", f"inputs of shape {tuple(X1.shape[1:])} (as x1)", f"shape {tuple(X2.shape)}")
    if x2 is not None:
        check_magnitude(X2, "x2", features=C)
    n1, n2 = X1.shape[0], X2.shape[0]
    symmetric = x2 is None or (X2.shape == X1.shape and bool(torch.equal(X1, X2)))
    A2 = A1 if symmetric else X2.reshape(n2, C, P)
    target = _TILE_ENTRIES_CPU if X1.device.type == "cpu" else _TILE_ENTRIES_GPU
    side = check_int(block_rows, "block_rows", minimum=1) if block_rows is not None else \
        max(1, math.isqrt(max(1, target // m)))
    workers = torch.get_num_threads() if X1.device.type == "cpu" else 1
    fixed = 8.0 * (2 * n1 * n2 + (n1 + n2) * m)
    budget = memory_budget_bytes()
    if block_rows is None:  # shrink the tiles to the budget before refusing
        while side > 1 and fixed + 8.0 * buffers * workers * side * side * m > budget:
            side //= 2
    br, tc = min(side, n1), min(side, n2)
    check_memory(fixed + 8.0 * buffers * workers * br * tc * m,
                 f"the {n1}×{n2} kernels of a network on {S} positions "
                 f"({'all pairs of positions' if pairs else 'the diagonal of positions'}, tiles of {br}×{tc})",
                 way_out, budget)
    V1 = shaped(_self_grams(A1, pairs), 1)
    V2 = V1 if symmetric else shaped(_self_grams(A2, pairs), 1)

    def state(r0: int, r1: int, j0: int, j1: int, diagonal: bool) -> KState:
        G = shaped(_grams(A1[r0:r1], A2[j0:j1], pairs), 2)
        return KState(G, None, V1[r0:r1], V2[j0:j1], C, self_block=diagonal, pairs=pairs, donated=True)

    nngp, ntk = _fill_tiles(net, state, n1, n2, br, tc, symmetric, X1.device, threads)
    return NetKernel(kind.wrap(nngp), kind.wrap(ntk))
