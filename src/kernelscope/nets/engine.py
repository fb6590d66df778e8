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

Near the hardware (issue 25): the tiles are independent tasks for worker threads that each run their torch ops
on one thread (:mod:`kernelscope._threads`), so no op waits at a barrier for a thread another process holds
the core of; each worker's tile buffers come from a workspace reused from tile to tile (:mod:`kernelscope._scratch`:
fresh memory costs a page fault per 4 KB); pair-of-positions tiles are laid out positions first in memory, so
that every op, a convolution's shifts included, runs over long contiguous stretches; and the per-point variances
each layer needs go through the network once per block of rows, shared by the tiles (:class:`~.state.VarMemo`),
not once per tile.
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

from .. import _scratch
from .._arrays import (
    ArrayKind,
    ValidationError,
    as_generator,
    as_tensor,
    check_choice,
    check_int,
    check_magnitude,
    check_memory,
    memory_budget_bytes,
)
from .._scratch import Workspace
from .._threads import Cancelled, cancellable, check_cancelled, single_threaded_worker
from ..kernels import row_dots
from . import finite as _finite
from .params import Parameters
from .state import KState, VarMemo

__all__ = ["Layer", "NetKernel"]


@dataclass
class NetKernel:
    """Infinite-width kernels of a network: ``nngp`` and ``ntk`` of shape (N1, N2), or (N,) in diag mode."""

    nngp: Any
    ntk: Any


# --------------------------------------------------------------------------------------------------------------
# Base class: every layer (and combination of layers) is a network
# --------------------------------------------------------------------------------------------------------------
class Layer(Parameters):
    """A layer, or a whole network: ``kernel_fn`` (the infinite-width recursion) and ``build`` (a finite module).

    Public methods: :meth:`kernel` (analytic NNGP/NTK) and :meth:`finite` (a random torch network); scikit-learn's
    ``get_params``/``set_params``/``clone`` (:mod:`kernelscope.nets.params`).
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

    def declared_input_shape(self) -> tuple[int, ...] | None:
        """The per-example shape the network declares for its inputs (a first :class:`~kernelscope.nets.Reshape`
        or ``serial(..., input_shape=...)``), or None: then inputs come in the shape the layers take."""
        return None

    def branch_states(self) -> int:
        """How many kernel states of branches (FanOut's copies) this layer may hold at once, an upper bound for
        the memory estimates of :meth:`kernel` (0 for a layer without branches)."""
        return 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- public API -------------------------------------------------------------------------------------------
    def kernel(self, x1: Any, x2: Any = None, diag: bool = False, *, block_rows: int | None = None,
               threads: int | None = None, precision: str = "float64") -> NetKernel:
        """Infinite-width NNGP and NTK of the network between the rows of ``x1`` and ``x2``.

        Parameters
        ----------
        x1 : array of shape (N1, d); or (N1, C, L) / (N1, C, H, W) (torch layout) for convolutional networks
            (:mod:`kernelscope.nets.conv`: they end in Flatten or GlobalAvgPool), or rows (N1, C·L) when the
            network declares its input shape (:mod:`kernelscope.nets.shape`).
        x2 : array of the same shape but N2 rows, or None for ``x1`` itself.
        diag : if True, only ``k(x, x)`` for the rows of ``x1`` (``x2`` must be None): shape (N1,).
        block_rows : the side of the tiles the matrix is computed in (rows of ``x1`` at a time, and as many
            columns of ``x2``). Default: 512 on CPU, 4096 on a GPU, with tiles of as many entries but other
            shapes when ``x1`` or ``x2`` has fewer rows than that.
        threads : worker threads the tiles run on (CPU), each running its torch ops on one thread. Default:
            ``torch.get_num_threads()``, read and never changed.
        precision : ``'float64'`` (default) or ``'float32'``: the arithmetic of the recursion; the results are
            float64 either way. float32 is for large convolutional kernels with pooling, where it runs about
            2–3× faster on CPU; it costs accuracy — see Notes.

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
        transposed below the diagonal. The tiles run on ``threads`` worker threads, each on one thread of its own;
        torch's own (process-wide) thread count is left as it is. Peak memory: the two outputs
        (``2·N1·N2·8`` bytes) plus each worker's reused tile buffers (about ``6·B·T·8`` bytes: 12 MB for the
        default 512×512 tiles); quadrature activations (:class:`Elementwise`) add ``4·B·T·degree·8`` bytes per
        worker. Measured at N = 4000: 2.2–2.3 N×N buffers in all.
        k(X) and k(X, X) pair each point with itself exactly; for the piecewise-linear activations angles below
        1.7e-7 (rounding of 0) are set to 0, so a point repeated in x1 and x2 gets the same entries as k(X).

        ``precision='float32'``: float32 resolves angles down to ≈ 3.5e-4 only (the first cosine below 1), so
        the piecewise-linear activations set angles below 9.8e-4 to 0 and the derivative kernel of nearly
        parallel pairs is off by up to ≈ 1e-4 relative; elsewhere the error is that of float32 arithmetic
        through the layers. Measured on MNIST-1D (``benchmarks/bench_conv.py``): largest relative difference
        to float64 ≈ 1e-5 (of the largest entry), test accuracy of kernel regression unchanged.
        """
        threads = torch.get_num_threads() if threads is None else check_int(threads, "threads", minimum=1)
        dtype = _PRECISIONS[check_choice(precision, "precision", tuple(_PRECISIONS))]
        kind = ArrayKind.of(x1, x2)
        shape = self.declared_input_shape()
        if shape is not None:  # rows (N, C·L) seen as (N, C, L): before the Gram matrix (nets.shape)
            x1, x2 = _as_declared(x1, shape, "x1"), None if x2 is None else _as_declared(x2, shape, "x2")
        if np.ndim(x1) in (3, 4):
            return _spatial_kernel(self, x1, x2, diag, block_rows, kind, threads, dtype)
        return _vector_kernel(self, x1, x2, diag, block_rows, kind, threads, dtype)

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


def _as_declared(x: Any, shape: tuple[int, ...], name: str) -> Any:
    """``x`` of shape (N, prod(shape)) or (N, *shape) as (N, *shape) (a view; NumPy stays NumPy)."""
    if not hasattr(x, "reshape"):  # a list
        x = np.asarray(x, dtype=np.float64)
    got = tuple(np.shape(x))
    if len(got) >= 1 and (got[1:] == shape or got[1:] == (math.prod(shape),)):
        return x.reshape((got[0],) + shape)
    raise ValidationError(name, f"inputs of shape (n_samples, {math.prod(shape)}) or (n_samples, "
                          f"{', '.join(map(str, shape))}) (the network's input_shape)", f"shape {got}")


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
_PRECISIONS = {"float64": torch.float64, "float32": torch.float32}


def _run_tiles(fn: Callable[[tuple[int, int, int, int]], None], tiles: list[tuple[int, int, int, int]],
               device: torch.device, threads: int) -> None:
    """Run ``fn(tile)`` for every tile (they write disjoint parts of the outputs): on CPU on ``threads`` worker
    threads, each running its torch ops on one thread (:func:`kernelscope._threads.single_threaded_worker`: its
    own OpenMP and MKL counts; torch's process-wide count is neither read nor written there); otherwise, or for
    a single tile, in order in the calling thread.

    Why single-threaded workers: a torch op on several threads ends on a barrier, so on a machine whose cores
    other processes keep busy every op waits for its slowest thread, and workers that each fan out into torch's
    threads oversubscribe the cores (2 workers × 2 threads on 2 cores). Independent tiles on one thread each
    wait on nobody until the last tile. Measured with ``benchmarks/bench_nets.py --busy``.

    On an error in a tile or an interrupt (Ctrl-C), ``stop`` is set: the tiles not started yet are dropped and
    the running ones stop at their next :func:`~kernelscope._threads.check_cancelled` (a tile, a quadrature node
    of a slow activation), so an interrupt is obeyed within a tile, not after every queued one."""
    if device.type != "cpu" or threads <= 1 or len(tiles) == 1:
        for tile in tiles:
            fn(tile)
        return
    stop = threading.Event()

    def task(tile: tuple[int, int, int, int]) -> None:
        with cancellable(stop), contextlib.suppress(Cancelled):  # the caller was interrupted: leave
            check_cancelled()
            fn(tile)

    pool = ThreadPoolExecutor(max_workers=min(threads, len(tiles)), initializer=single_threaded_worker,
                              thread_name_prefix="kernelscope-tiles")
    try:
        pending = {pool.submit(task, tile) for tile in tiles}
        while pending:  # short waits: the main thread returns to Python often enough to see Ctrl-C at once
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
            for f in done:
                f.result()  # a tile's exception, raised here
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)  # the running tiles stop at their next check
        raise
    pool.shutdown(wait=True)


def _transposed(tile: torch.Tensor) -> torch.Tensor:
    """``tile.T`` as a contiguous (T, B) tensor: torch copies a transposed contiguous matrix in cache-sized
    blocks (4× faster than writing the transposed view into the strided output directly)."""
    tile = tile.contiguous()
    return _scratch.empty((tile.shape[1], tile.shape[0]), dtype=tile.dtype, device=tile.device).copy_(tile.T)


def _float64(t: torch.Tensor) -> torch.Tensor:
    """A tile's result as float64 (as it is, unless the recursion ran in float32)."""
    return t if t.dtype == torch.float64 else t.to(torch.float64)


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
    """k(x, x) for the points of a donated diag-mode input ``state`` (float64 out)."""
    out = _output(net.kernel_fn(state))
    nngp = out.nngp.to(torch.float64)
    ntk = torch.zeros_like(nngp) if out.ntk is None else out.ntk.to(torch.float64)
    return NetKernel(kind.wrap(nngp), kind.wrap(ntk))


def _fill_tiles(net: Layer, state: Callable[[int, int, int, int, bool], KState], n1: int, n2: int,
                block_rows: int, tc: int, symmetric: bool, device: torch.device, threads: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The (N1, N2) NNGP and NTK, tile by tile: ``state(r0, r1, j0, j1, diagonal)`` gives a tile's donated input
    KState (``diagonal``: it pairs each point with itself on its leading square); for k(X, X) only the tiles
    on and above the diagonal are computed and mirrored."""
    nngp = _scratch.output((n1, n2), dtype=torch.float64, device=device)
    ntk = _scratch.output((n1, n2), dtype=torch.float64, device=device)
    tiles = [(r0, min(n1, r0 + block_rows), j0, min(n2, j0 + tc)) for r0 in range(0, n1, block_rows)
             for j0 in range(r0 if symmetric else 0, n2, tc)]
    local = threading.local()  # each thread's Workspace: its tiles' buffers, reused from tile to tile

    def run(tile: tuple[int, int, int, int]) -> None:
        ws = getattr(local, "workspace", None)
        if ws is None:
            ws = local.workspace = Workspace()
        with ws.round():  # everything the tile allocates is dead once its results are copied out, below
            write(tile)

    def write(tile: tuple[int, int, int, int]) -> None:
        r0, r1, j0, j1 = tile
        diagonal = symmetric and j0 == r0  # this tile pairs each point with itself on its diagonal
        out = _output(net.kernel_fn(state(r0, r1, j0, j1, diagonal)))
        mirror = symmetric and not diagonal  # the tile below the diagonal is this one's transpose
        for dst, t in ((nngp, out.nngp), (ntk, out.ntk)):
            t = None if t is None else _float64(t)
            if t is None:  # Θ = 0 (a network without a Dense layer)
                dst[r0:r1, j0:j1].zero_()
                if mirror:
                    dst[j0:j1, r0:r1].zero_()
            elif diagonal:  # exactly symmetric: the tile's upper triangle, mirrored
                upper = torch.ones(r1 - r0, j1 - j0, dtype=torch.bool, device=device).triu_()
                tt = _transposed(t)
                torch.where(upper, t, tt, out=dst[r0:r1, j0:j1])
                _scratch.release(tt)
            else:
                dst[r0:r1, j0:j1].copy_(t)
                if mirror:
                    tt = _transposed(t)
                    dst[j0:j1, r0:r1].copy_(tt)
                    _scratch.release(tt)

    _run_tiles(run, tiles, device, threads)
    return nngp, ntk


# --------------------------------------------------------------------------------------------------------------
# Inputs (N, d)
# --------------------------------------------------------------------------------------------------------------
def _vector_kernel(net: Layer, x1: Any, x2: Any, diag: bool, block_rows: int | None, kind: ArrayKind,
                   threads: int, dtype: torch.dtype) -> NetKernel:
    """:meth:`Layer.kernel` for inputs of shape (N, d)."""
    device = kind.device if kind.is_torch else None
    X1 = as_tensor(x1, "x1", ndim=2, device=device, shape_hint="(n_samples, n_features)", dtype=dtype)
    check_magnitude(X1, "x1")
    # tile buffers per branch state: its NNGP and NTK, and the new ones its layers make before the old are freed
    # (measured peaks: FanOut(32), N = 4000, 0.92 of the estimate; FanOut(128), N = 2000, 0.83)
    branches = 4 * net.branch_states()
    if diag:
        if x2 is not None:
            raise ValidationError("x2", "None in diag mode (diag computes k(x, x) for the rows of x1)",
                                  f"an array of shape {tuple(np.shape(x2))}", "Call kernel(x1, diag=True).")
        check_memory(8.0 * (8 + branches) * X1.shape[0], f"the diagonal kernels of {X1.shape[0]} inputs",
                     "Use fewer points at once (diag is computed row by row).", device=X1.device)
        sq = row_dots(X1, X1) / X1.shape[1]  # (N,)
        return _diag_kernel(net, KState(sq, None, sq, sq, X1.shape[1], donated=True), kind)
    X2 = X1 if x2 is None else as_tensor(x2, "x2", ndim=2, device=X1.device, dtype=dtype,
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
        if symmetric and threads > 1 and X1.device.type == "cpu":  # two rows of tiles per worker, 256² at least
            block_rows = max(min(block_rows, -(-n1 // (2 * threads))), min(block_rows, _TILE_CPU // 2))
        # tile columns: square tiles for k(X, X); wider ones when x1 has few rows (as many entries)
        tc = min(n2, block_rows if symmetric else max(block_rows, side * side // min(block_rows, n1)))
    else:
        block_rows = check_int(block_rows, "block_rows", minimum=1)
        tc = min(block_rows, n2)
    workers = min(threads, -(-n1 // block_rows)) if X1.device.type == "cpu" else 1

    def need(br: int, cols: int) -> float:  # the two outputs, and each worker's tile buffers (branches included)
        return 8.0 * (2 * n1 * n2 + (8 + branches) * workers * br * cols)

    if auto_tiles:  # shrink the tiles to the budget before refusing (many FanOut branches)
        budget = memory_budget_bytes(X1.device)
        while block_rows > 8 and need(block_rows, tc) > budget:
            block_rows, tc = max(8, block_rows // 2), max(1, tc // 2)
    check_memory(need(block_rows, tc), f"the {n1}×{n2} NNGP and NTK matrices (tiles of {block_rows}×{tc}"
                 + (f", {branches // 4} branch states" if branches else "") + ")",
                 "Use fewer points, diag=True, or a blocked solver.", device=X1.device)
    sq1 = row_dots(X1, X1) / d  # (N1,)
    X2 = X1 if symmetric else X2
    sq2 = sq1 if symmetric else row_dots(X2, X2) / d  # (N2,)
    inv_d = 1.0 / d

    def state(r0: int, r1: int, j0: int, j1: int, diagonal: bool) -> KState:
        G = _scratch.empty((r1 - r0, j1 - j0), dtype=X1.dtype, device=X1.device)
        torch.mm(X1[r0:r1], X2[j0:j1].T, out=G).mul_(inv_d)  # (B, T) input Gram Σ⁰ = x·x'/d
        return KState(G, None, sq1[r0:r1], sq2[j0:j1], d, self_block=diagonal, donated=True)

    nngp, ntk = _fill_tiles(net, state, n1, n2, block_rows, tc, symmetric, X1.device, threads)
    return NetKernel(kind.wrap(nngp), kind.wrap(ntk))


# --------------------------------------------------------------------------------------------------------------
# Inputs with positions (N, C, L) or (N, C, H, W)
# --------------------------------------------------------------------------------------------------------------
def _grams(A: torch.Tensor, B: torch.Tensor, pairs: bool) -> torch.Tensor:
    """Input kernel Σ⁰(x_p, x'_q) = Σ_c x_cp x'_cq / C for A (b, C, P), B (t, C, P): (b, t, P) on the diagonal of
    positions, (b, t, P, P) with pairs (in scratch buffers, :mod:`kernelscope._scratch`).

    Both are laid out positions first in memory ((P, b, t) and (P, P, b, t), seen through a permuted view): every
    op of the recursion then runs over b·t contiguous numbers per position (pair), and a convolution's shifts
    move whole blocks — with the positions innermost each op would loop over rows of |S| numbers, 3–4× slower
    per number at 40 positions. Later layers keep the layout (their buffers follow their inputs' strides)."""
    b, C, P = A.shape
    t = B.shape[0]
    if pairs:
        out = _scratch.empty((P, P, b, t), dtype=A.dtype, device=A.device)
        if C <= 4:  # few channels (1-D signals, grey images): a sum of outer products, written in place
            a, bb = A.permute(1, 2, 0), B.permute(1, 2, 0)  # (C, P, b), (C, P, t)
            torch.mul(a[0, :, None, :, None], bb[0, None, :, None, :], out=out)
            for c in range(1, C):
                out.addcmul_(a[c, :, None, :, None], bb[c, None, :, None, :])
            return (out if C == 1 else out.mul_(1.0 / C)).permute(2, 3, 0, 1)  # (b, t, P, P)
        G = _scratch.empty((P * b, P * t), dtype=A.dtype, device=A.device)  # rows (p, i), columns (q, j)
        torch.mm(A.permute(2, 0, 1).reshape(P * b, C), B.permute(1, 2, 0).reshape(C, P * t), out=G)
        torch.mul(G.view(P, b, P, t).permute(0, 2, 1, 3), 1.0 / C, out=out)
        return out.permute(2, 3, 0, 1)  # (b, t, P, P)
    G = _scratch.empty((P, b, t), dtype=A.dtype, device=A.device)
    torch.bmm(A.permute(2, 0, 1), B.permute(2, 1, 0), out=G).mul_(1.0 / C)
    return G.permute(1, 2, 0)  # (b, t, P)


def _self_grams(A: torch.Tensor, pairs: bool) -> torch.Tensor:
    """Σ⁰(x_p, x_q) of each point with itself: (N, P) or (N, P, P), laid out positions first like the tiles'
    kernels (:func:`_grams`), so that the variances broadcast against them along contiguous memory."""
    if pairs:
        return torch.einsum("icp,icq->pqi", A, A).contiguous().mul_(1.0 / A.shape[1]).permute(2, 0, 1)
    return (A * A).sum(1).mul_(1.0 / A.shape[1]).T.contiguous().T


def _spatial_kernel(net: Layer, x1: Any, x2: Any, diag: bool, block_rows: int | None, kind: ArrayKind,
                    threads: int, dtype: torch.dtype) -> NetKernel:
    """:meth:`Layer.kernel` for inputs with positions (see the module docstring)."""
    device = kind.device if kind.is_torch else None
    hint = "(n_samples, channels, length) or (n_samples, channels, height, width)"
    X1 = as_tensor(x1, "x1", ndim=(3, 4), device=device, shape_hint=hint, dtype=dtype)
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
                     way_out, device=X1.device)
        G = shaped(_self_grams(A1, pairs), 1)
        return _diag_kernel(net, KState(G, None, G, G, C, pairs=pairs, donated=True), kind)
    X2 = X1 if x2 is None else as_tensor(x2, "x2", ndim=X1.ndim, device=X1.device, shape_hint=hint, dtype=dtype)
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
    if block_rows is None and threads > 1 and X1.device.type == "cpu":  # two rows of tiles per worker, 2^18 entries
        side = max(min(side, -(-n1 // (2 * threads))), math.isqrt(max(1, target // 4 // m)), 1)
    workers = threads if X1.device.type == "cpu" else 1
    fixed = 8.0 * (2 * n1 * n2 + (n1 + n2) * m)
    budget = memory_budget_bytes(X1.device)
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
    # each layer's variances of each block of rows, once for all tiles, in what the budget leaves
    memo = VarMemo(V1, V2, limit_bytes=budget - fixed - 8.0 * buffers * workers * br * tc * m)

    def state(r0: int, r1: int, j0: int, j1: int, diagonal: bool) -> KState:
        G = shaped(_grams(A1[r0:r1], A2[j0:j1], pairs), 2)
        return KState(G, None, V1[r0:r1], V2[j0:j1], C, self_block=diagonal, pairs=pairs, donated=True, memo=memo)

    nngp, ntk = _fill_tiles(net, state, n1, n2, br, tc, symmetric, X1.device, threads)
    return NetKernel(kind.wrap(nngp), kind.wrap(ntk))
