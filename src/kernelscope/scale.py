"""Kernel matrices past one machine's memory: block-wise evaluation on Dask.

An N×N float64 kernel matrix takes 8·N² bytes (80 GB at N = 100 000). Nothing here ever holds it whole:

- :func:`block_kernel` describes ``K[i, j] = k(x_i, x'_j)`` as a lazy ``dask.array`` of (block, block) tiles;
  each tile is computed by a worker from the two blocks of inputs, and the array can be persisted in the
  cluster's memory (:func:`persist`) or written to disk as a NumPy stack and read back (:func:`save_blocks`,
  :func:`load_blocks`).
- :class:`BlockOperator` is the matrix-free product ``(K + λI) V`` computed from tiles on the fly: each task
  holds one (block, block) tile, so the memory is O(N·block), and conjugate gradients only ever need this.
- :func:`gram_reduce` accumulates ``Σ_b K_bᵀ K_b`` and ``Σ_b K_bᵀ Y_b`` over row blocks of ``K(X, C)`` (the normal
  equations of the Nyström estimator) with O(block·M + M²) memory per task.

Where the work runs follows Dask's own convention: Dask's local thread pool by default, and the cluster of the
active ``dask.distributed.Client`` whenever there is one (``distributed.default_client()``). No client object is
ever stored on an estimator, and kernelscope never makes one the process's default: :func:`connect` creates a
client for a running ``dask scheduler`` (an unreachable address is reported with the address tried) and
:func:`scheduler` makes it the current one only inside its ``with`` block (``kernelscope regress --scheduler
tcp://host:port``).

Kernels are any callable ``k(A, B) -> (len(A), len(B))`` over float64 torch tensors (kernelscope kernels, a
``nets`` network's NTK or NNGP as :class:`kernelscope.regression.NetworkKernel`, or your own function); on a
cluster they must be picklable (module-level functions and kernelscope objects are; cloudpickle handles lambdas).
Tiles hold rows of inputs, so a convolutional network declares its per-example shape and takes rows::

    cnn = nets.serial(nets.Conv(64, 5, padding="circular"), nets.ReLU(), nets.GlobalAvgPool(), nets.Dense(1),
                      input_shape=(1, 40))
    K = scale.block_kernel(NetworkKernel(cnn), X, block=500)   # X (N, 40): tiles computed by the workers
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import torch

from ._arrays import (
    ValidationError,
    as_numpy,
    check_int,
    check_memory,
    check_nonnegative,
)

__all__ = [
    "SchedulerUnreachableError",
    "active_client",
    "connect",
    "scheduler",
    "n_workers",
    "check_block",
    "default_block",
    "evaluate",
    "block_kernel",
    "kernel_tiles",
    "persist",
    "save_blocks",
    "load_blocks",
    "BlockOperator",
    "block_matvec",
    "block_predict",
    "gram_reduce",
]

Kernel = Callable[[Any, Any], Any]


# --------------------------------------------------------------------------------------------------------------
# Where the work runs
# --------------------------------------------------------------------------------------------------------------
class SchedulerUnreachableError(ConnectionError):
    """No Dask scheduler answered at the address given (the message names the address and the timeout)."""


def active_client():
    """The active ``dask.distributed.Client`` (Dask's convention: the last one created), or ``None``.

    When it is ``None``, ``dask.compute`` runs on Dask's local thread pool.
    """
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return default_client()
    except ValueError:  # "No clients found"
        return None


def _check_address(address: Any) -> str:
    if not isinstance(address, str) or "://" not in address or not address.split("://", 1)[1]:
        raise ValidationError("scheduler", "a Dask scheduler address such as 'tcp://127.0.0.1:8786'",
                              repr(address), "Start one with `dask scheduler` and copy the address it prints.")
    return address


def connect(address: str, timeout: float = 5.0):
    """Connect to a running Dask scheduler. The client is not made the process's default (no global state): run
    work on it inside ``with client.as_current():``, or use :func:`scheduler`, which does both and closes it.

    Parameters
    ----------
    address : str
        Scheduler address, e.g. ``'tcp://127.0.0.1:8786'`` (what ``dask scheduler`` prints).
    timeout : float
        Seconds to wait for the scheduler before giving up.

    Returns
    -------
    distributed.Client
        Close it (``client.close()``) when done, or use :func:`scheduler` as a context manager.

    Raises
    ------
    SchedulerUnreachableError
        (an ``OSError``) naming the address tried, when nothing answers within ``timeout`` seconds.
    """
    from distributed import Client

    address = _check_address(address)
    timeout = check_nonnegative(timeout, "timeout")
    try:
        return Client(address, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachableError(
            f"scheduler: no Dask scheduler answered at {address} within {timeout:g} s ({type(exc).__name__}). "
            "Start one with `dask scheduler` (and workers with `dask worker ADDRESS`), or leave --scheduler out "
            "to run on local threads."
        ) from None


@contextlib.contextmanager
def scheduler(address: str | None, timeout: float = 5.0) -> Iterator[Any]:
    """``with scheduler(address):`` runs the block on that cluster (``None``: local threads); closes the client.

    The client is current only in this thread's context inside the block (``Client.as_current``); afterwards Dask's
    configuration and default client are as they were.
    """
    if address is None:
        yield None
        return
    client = connect(address, timeout=timeout)
    try:
        with client.as_current():
            yield client
    finally:
        client.close()


def n_workers() -> int:
    """Threads that compute tasks: the cluster's total when a client is active, else this machine's cores."""
    client = active_client()
    if client is not None:
        try:
            workers = client.scheduler_info()["workers"].values()
            return max(1, sum(int(w.get("nthreads", 1)) for w in workers))
        except Exception:  # pragma: no cover - scheduler went away; fall back to local count
            pass
    return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------------------------
# Kernel tiles
# --------------------------------------------------------------------------------------------------------------
def check_block(block: Any, name: str = "block") -> int:
    """A positive integer block size (rows of a tile)."""
    return check_int(block, name, minimum=1)


def default_block(n: int, *, max_bytes: float = 64e6) -> int:
    """Tile side so one (block, block) float64 tile stays under ``max_bytes`` (64 MB: 2 828 rows), at most n."""
    return int(max(1, min(n, math.isqrt(int(max_bytes // 8)))))


def evaluate(kernel: Kernel, A: np.ndarray | torch.Tensor, B: np.ndarray | torch.Tensor) -> torch.Tensor:
    """One tile ``k(A, B)`` of shape (len(A), len(B)) as a float64 CPU tensor (the kernel gets float64 tensors).

    A and B are trusted (rows of inputs validated once by the caller): a kernelscope :class:`~kernelscope.kernels.
    Kernel` fills the tile through its unvalidated :meth:`~kernelscope.kernels.Kernel.matrix`, with no memory
    check (the caller budgeted its tiles in flight); any other callable is called as ``kernel(A, B)``.
    """
    A = torch.as_tensor(A, dtype=torch.float64)
    B = torch.as_tensor(B, dtype=torch.float64)
    if callable(getattr(kernel, "matrix", None)):  # the Kernel protocol (kernelscope.kernels.Kernel and adapters)
        out = torch.empty((A.shape[0], B.shape[0]), dtype=torch.float64, device=A.device)  # (len(A), len(B))
        return kernel.matrix(A, B.to(A.device), out=out).cpu()
    K = kernel(A, B)
    if not isinstance(K, torch.Tensor):
        K = torch.as_tensor(np.asarray(K, dtype=np.float64))
    K = K.detach().to(device="cpu", dtype=torch.float64)
    if K.shape != (A.shape[0], B.shape[0]):
        raise ValidationError("kernel", f"a matrix of shape {(A.shape[0], B.shape[0])} from k(A, B)",
                              f"shape {tuple(K.shape)}")
    return K


def _tile(A: np.ndarray, B: np.ndarray, kernel: Kernel) -> np.ndarray:
    # dask.array.blockwise calls this with the (b1, d) and (b2, d) input blocks -> (b1, b2) tile
    return evaluate(kernel, A, B).numpy()


def _as_inputs(X: Any, name: str, block: int) -> da.Array:
    if isinstance(X, da.Array):
        if X.ndim != 2:
            raise ValidationError(name, "a 2-D array (n_samples, n_features)", f"shape {X.shape}")
        return X.astype(np.float64).rechunk((block, -1))
    Xn = as_numpy(X, name, ndim=2, shape_hint="(n_samples, n_features)")
    return da.from_array(Xn, chunks=(block, -1))


def block_kernel(kernel: Kernel, X1: Any, X2: Any = None, *, block: int | None = None) -> da.Array:
    """The kernel matrix ``K[i, j] = k(x1_i, x2_j)`` as a lazy ``dask.array`` of (block, block) tiles.

    Parameters
    ----------
    kernel : callable
        ``k(A, B) -> (len(A), len(B))`` over float64 tensors, or a kernel object (``kernelscope.kernels``, a
        network's ``regression.NetworkKernel(net, nngp=False)``).
    X1 : array-like or dask.array of shape (n1, n_features)
    X2 : array-like or dask.array of shape (n2, n_features), optional
        ``None`` means ``X1`` (the symmetric training matrix).
    block : int, optional
        Rows (and columns) of a tile; default :func:`default_block` (tiles of at most 64 MB).

    Returns
    -------
    dask.array.Array of shape (n1, n2), float64, chunks (block, block)
        Nothing is computed until ``.compute()``, ``.persist()`` or a reduction asks for it; each tile is
        computed by one task from the two input blocks.
    """
    n1 = X1.shape[0] if hasattr(X1, "shape") else len(X1)
    block = default_block(int(n1)) if block is None else check_block(block)
    X1d = _as_inputs(X1, "X1", block)
    X2d = X1d if X2 is None else _as_inputs(X2, "X2", block)
    if X2d.shape[1] != X1d.shape[1]:
        raise ValidationError("X2", f"{X1d.shape[1]} features (as many as X1)", f"{X2d.shape[1]} features")
    return _tiles(kernel, X1d, X2d)


def kernel_tiles(kernel: Kernel, X1: np.ndarray, X2: np.ndarray | None, block: int) -> da.Array:
    """:func:`block_kernel` of float64 arrays X1 (n1, d), X2 (n2, d) (None: X1) that the caller has validated (a
    solver inside its own public call): no second check."""
    X1d = da.from_array(X1, chunks=(block, -1))
    return _tiles(kernel, X1d, X1d if X2 is None else da.from_array(X2, chunks=(block, -1)))


def _tiles(kernel: Kernel, X1d: da.Array, X2d: da.Array) -> da.Array:
    """The (n1, n2) tile matrix of X1d (n1, d), X2d (n2, d), both chunked (block, d): chunks aligned already, so
    Dask need not unify them (that would warn that the tiles outnumber the input blocks, which is the point)."""
    return da.blockwise(_tile, "ij", X1d, "ik", X2d, "jk", kernel=kernel, dtype=np.float64, concatenate=True,
                        align_arrays=False, meta=np.empty((0, 0), dtype=np.float64))


def persist(K: da.Array, *, budget: int | None = None) -> da.Array:
    """Compute the tiles once and keep them in memory: the cluster's workers' memory when a client is active,
    this process's memory otherwise. Refused up front when the whole matrix exceeds ``budget`` bytes (default:
    this machine's memory budget, read now) and no cluster is active."""
    if active_client() is None:
        check_memory(K.nbytes, f"persisting a {K.shape[0]}x{K.shape[1]} kernel matrix",
                     "Start a Dask cluster (see `dask scheduler`), write it to disk with save_blocks, or use a "
                     "matrix-free solver (solver='cg' or 'nystrom').", budget=budget)
    return K.persist()


def save_blocks(K: da.Array, path: str | os.PathLike) -> Path:
    """Write a block matrix to ``path`` as a NumPy stack (one ``.npy`` per row block; ``dask.array.to_npy_stack``).

    The tiles are computed by the workers and written by them, so on a cluster ``path`` must be on a file system
    every worker sees. The directory appears complete or not at all (written next to it, then renamed).
    """
    path = Path(path)
    if path.exists():
        raise ValidationError("path", "a directory that does not exist yet", f"existing {str(path)!r}",
                              "Choose a new name or remove the old stack first.")
    if not isinstance(K, da.Array) or K.ndim != 2:
        raise ValidationError("K", "a 2-D dask.array (from block_kernel)", type(K).__name__)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        da.to_npy_stack(str(tmp), K, axis=0)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_blocks(path: str | os.PathLike, *, mmap: bool = True) -> da.Array:
    """Read a NumPy stack written by :func:`save_blocks` as a lazy dask.array (memory-mapped by default)."""
    path = Path(path)
    if not (path / "info").exists():
        raise ValidationError("path", "a directory written by save_blocks (with an 'info' file)",
                              repr(str(path)))
    return da.from_npy_stack(str(path), mmap_mode="r" if mmap else None)


# --------------------------------------------------------------------------------------------------------------
# Matrix-free products
# --------------------------------------------------------------------------------------------------------------
def _panel_matvec(kernel: Kernel, X: np.ndarray, V: np.ndarray, start: int, stop: int, block: int,
                  Xrows: np.ndarray | None = None) -> np.ndarray:
    """Rows ``start:stop`` of ``K(Xrows, X) @ V``, one (stop-start, block) tile at a time. Shape (stop-start, O)."""
    rows = torch.as_tensor((X if Xrows is None else Xrows)[start:stop])
    Vt = torch.as_tensor(V)
    out = torch.zeros(rows.shape[0], Vt.shape[1], dtype=torch.float64)
    for j in range(0, X.shape[0], block):
        Kij = evaluate(kernel, rows, torch.as_tensor(X[j:j + block]))  # (stop-start, block)
        out += Kij @ Vt[j:j + block]
    return out.numpy()


def _symmetric_panel_matvec(kernel: Kernel, X: np.ndarray, V: np.ndarray, i: int, n_panels: int,
                            block: int) -> np.ndarray:
    """Panel i's share of ``K V`` for the symmetric K = k(X, X), each tile computed once. Shape (N, O).

    Panel i computes the tiles (i, i + s mod P) for s = 0..⌊P/2⌋ and adds ``K_ij V_j`` to rows i and
    ``K_ijᵀ V_i`` to rows j: every unordered pair of panels is visited exactly once (for even P the pair at
    distance P/2 only by the lower panel), so a product costs ≈ N²/2 kernel entries and the P tasks do
    the same work.
    """
    n = X.shape[0]
    Vt = torch.as_tensor(V)
    out = torch.zeros(n, Vt.shape[1], dtype=torch.float64)
    ri = slice(i * block, min((i + 1) * block, n))
    Xi = torch.as_tensor(X[ri])
    for step in range(n_panels // 2 + 1):
        j = (i + step) % n_panels
        if step > 0 and (j == i or (2 * step == n_panels and i >= n_panels // 2)):
            continue
        rj = slice(j * block, min((j + 1) * block, n))
        Kij = evaluate(kernel, Xi, torch.as_tensor(X[rj])) if step else evaluate(kernel, Xi, Xi)  # (bi, bj)
        out[ri] += Kij @ Vt[rj]
        if step:
            out[rj] += Kij.T @ Vt[ri]
    return out.numpy()


def _sum(parts: list[np.ndarray]) -> np.ndarray:
    return functools.reduce(np.add, parts)


def _place(value: Any, what: str) -> Any:
    """A handle tasks share: on a cluster a large input is sent to the workers once (a Future); otherwise it is
    one graph key (named, so a large array is not hashed)."""
    client = active_client()
    if client is None or getattr(value, "nbytes", 0) < 2**20:  # small: travels inside the graph, no round trip
        return dask.delayed(value, name=f"{what}-{uuid.uuid4().hex}")
    return client.scatter(value, broadcast=True, hash=False)


class BlockOperator:
    """The matrix-free operator ``V -> (K + ridge·I) V`` with ``K = k(X, X)`` computed from tiles on the fly.

    Each task computes the tiles of one row panel (using the symmetry of K, each tile once, see
    :func:`_symmetric_panel_matvec`), one (block, block) tile at a time, so the memory is O(N·block) whatever N.
    ``X`` is sent to the workers once; only ``V`` travels per product.
    With ``persist=True`` the tiles are computed once and kept (:func:`persist`, refused beyond ``budget`` bytes):
    O(N²) memory, spread over the cluster's workers when a client is active, for kernels that cost more to
    evaluate than to store.

    Attributes
    ----------
    kernel : callable
    X : ndarray of shape (n_samples, n_features)
    block : int
    ridge : float
    persist : bool
    n_products : int - products computed so far.
    """

    def __init__(self, kernel: Kernel, X: Any, block: int, ridge: float = 0.0, persist: bool = False, *,
                 budget: int | None = None):
        self._setup(kernel, as_numpy(X, "X", ndim=2, shape_hint="(n_samples, n_features)"), check_block(block),
                    check_nonnegative(ridge, "ridge"), bool(persist), budget)

    @classmethod
    def of_validated(cls, kernel: Kernel, X: np.ndarray, block: int, ridge: float, persist: bool = False, *,
                     budget: int | None = None) -> BlockOperator:
        """The operator for arguments the caller validated already (the solvers): no second check.

        X float64 ndarray (N, d), block an int >= 1, ridge a float >= 0.
        """
        op = cls.__new__(cls)
        op._setup(kernel, X, block, ridge, persist, budget)
        return op

    def _setup(self, kernel: Kernel, X: np.ndarray, block: int, ridge: float, keep: bool,
               budget: int | None) -> None:
        self.kernel, self.X, self.block, self.ridge, self.persist = kernel, X, block, ridge, keep
        self.n_products = 0
        self._K = persist(kernel_tiles(kernel, X, None, block), budget=budget) if keep else None
        self._X = None if keep else _place(X, "X")

    def __repr__(self) -> str:
        return (f"BlockOperator(kernel={self.kernel!r}, X=<{self.X.shape[0]}×{self.X.shape[1]}>, "
                f"block={self.block}, ridge={self.ridge:g}, persist={self.persist})")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.X.shape[0], self.X.shape[0])

    def matvec(self, V: np.ndarray) -> np.ndarray:
        """``(K + ridge·I) V`` for V of shape (n_samples,) or (n_samples, n_outputs); same shape out."""
        V = np.asarray(V, dtype=np.float64)
        V2 = V[:, None] if V.ndim == 1 else V
        n = self.X.shape[0]
        if self._K is not None:
            KV = (self._K @ da.from_array(V2, chunks=(self.block, -1))).compute()  # (n, O)
        else:
            Vd = _place(V2, "V")
            n_panels = math.ceil(n / self.block)
            parts = [dask.delayed(_symmetric_panel_matvec, pure=False)(self.kernel, self._X, Vd, i, n_panels,
                                                                        self.block) for i in range(n_panels)]
            KV = dask.compute(dask.delayed(_sum, pure=False)(parts))[0]  # (n, O)
        self.n_products += 1
        if self.ridge:
            KV += self.ridge * V2
        return KV[:, 0] if V.ndim == 1 else KV

    __call__ = matvec


def block_matvec(kernel: Kernel, X: Any, V: Any, *, ridge: float = 0.0, block: int | None = None) -> np.ndarray:
    """``(k(X, X) + ridge·I) V`` without forming k(X, X): O(N·block) memory (see :class:`BlockOperator`).

    X of shape (n_samples, n_features), V of shape (n_samples,) or (n_samples, n_outputs) -> same shape as V.
    """
    Xn = as_numpy(X, "X", ndim=2, shape_hint="(n_samples, n_features)")
    Vn = as_numpy(V, "V", ndim=(1, 2))
    if Vn.shape[0] != Xn.shape[0]:
        raise ValidationError("V", f"{Xn.shape[0]} rows (as many as X)", f"{Vn.shape[0]} rows")
    block = default_block(Xn.shape[0]) if block is None else check_block(block)
    return BlockOperator.of_validated(kernel, Xn, block, check_nonnegative(ridge, "ridge")).matvec(Vn)


def block_predict(kernel: Kernel, X: Any, centers: Any, coef: Any, *, block: int | None = None) -> np.ndarray:
    """``k(X, centers) @ coef`` in row blocks: (n, M) @ (M, O) -> (n, O) with O(block·M) memory per task."""
    Xn = as_numpy(X, "X", ndim=2, shape_hint="(n_samples, n_features)")
    Cn = as_numpy(centers, "centers", ndim=2)
    Bn = as_numpy(coef, "coef", ndim=(1, 2))
    if Cn.shape[1] != Xn.shape[1]:
        raise ValidationError("X", f"{Cn.shape[1]} features (as many as the centres)", f"{Xn.shape[1]}")
    B2 = Bn[:, None] if Bn.ndim == 1 else Bn
    m = Cn.shape[0]
    block = default_block(max(Xn.shape[0], m)) if block is None else check_block(block)
    Cd, Bd = _place(Cn, "centers"), _place(B2, "coef")
    rows = max(1, min(Xn.shape[0], block))
    parts = [dask.delayed(_panel_matvec, pure=False)(kernel, Cd, Bd, 0, min(rows, Xn.shape[0] - s), block,
                                                     Xn[s:s + rows]) for s in range(0, Xn.shape[0], rows)]
    out = np.concatenate(dask.compute(*parts), axis=0)
    return out[:, 0] if Bn.ndim == 1 else out


_GRAM_STRIP = 512  # rows of the Gram strips G[i:i+w, i:] (swept 512/1024/2048: 512 fastest)


def _gram_panel(kernel: Kernel, X: np.ndarray, Y: np.ndarray, C: np.ndarray, start: int, stop: int,
                block: int) -> tuple[np.ndarray, np.ndarray]:
    """``(Σ K_bᵀ K_b, Σ K_bᵀ Y_b)`` over the row blocks b of rows start:stop, ``K_b = k(X_b, C)`` (b, M).

    Only the upper triangle of the Gram sum is computed (strips ``G[i:i+w, i:]`` of ``_GRAM_STRIP`` rows, about
    half the flops of the full product: measured 1.8× faster at M = 5 000–10 000); below the diagonal strips the
    result holds zeros, and :func:`gram_reduce` mirrors the upper triangle once at the end.
    """
    Ct = torch.as_tensor(C)
    m, o = Ct.shape[0], Y.shape[1]
    G = torch.zeros(m, m, dtype=torch.float64)
    z = torch.zeros(m, o, dtype=torch.float64)
    for s in range(start, stop, block):
        e = min(s + block, stop)
        Kb = evaluate(kernel, torch.as_tensor(X[s:e]), Ct)  # (b, M)
        for i in range(0, m, _GRAM_STRIP):
            G[i:i + _GRAM_STRIP, i:].addmm_(Kb[:, i:i + _GRAM_STRIP].T, Kb[:, i:])
        z.addmm_(Kb.T, torch.as_tensor(Y[s:e]))
    return G.numpy(), z.numpy()


def _add_pairs(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]):
    return a[0] + b[0], a[1] + b[1]


def gram_reduce(kernel: Kernel, X: np.ndarray, Y: np.ndarray, C: np.ndarray, *, block: int,
                n_panels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``G = K_nmᵀ K_nm`` (M, M) and ``z = K_nmᵀ Y`` (M, O) with ``K_nm = k(X, C)``, never holding K_nm whole.

    The rows are split into ``n_panels`` tasks (default: twice the worker threads, at least enough that a task's
    rows fit 16 blocks); each loops over (block, M) tiles and returns its partial sums, which are added in a
    binary tree. Peak memory ≈ (n_panels + 2)·M²·8 bytes + threads·block·M·8 bytes.
    """
    n = X.shape[0]
    if n_panels is None:
        n_panels = max(2 * n_workers(), math.ceil(n / (16 * block)))
    n_panels = max(1, min(n_panels, math.ceil(n / block)))
    edges = np.linspace(0, n, n_panels + 1).astype(int)
    Xd, Yd, Cd = _place(X, "X"), _place(Y, "Y"), _place(C, "centers")
    parts = [dask.delayed(_gram_panel, pure=False)(kernel, Xd, Yd, Cd, int(s), int(e), block)
             for s, e in zip(edges[:-1], edges[1:]) if e > s]
    while len(parts) > 1:  # binary tree of additions: few partial sums alive at once
        parts = [dask.delayed(_add_pairs, pure=False)(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    (G, z), = dask.compute(parts[0])
    G = np.triu(G)
    G += np.triu(G, 1).T  # the panels computed the upper triangle only
    return G, z

