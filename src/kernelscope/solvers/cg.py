"""Conjugate gradients for ``(K + λI) α = y`` with a matrix-free block matvec and a Nyström preconditioner.

The exact kernel ridge coefficients ``α = (K + λI)⁻¹ y`` (THEORY.md §2, §8) without ever holding K: every product
``(K + λI) p`` is computed from (block, block) tiles on Dask (:class:`kernelscope.scale.BlockOperator`), so the
memory is O(N·block + N·M). Convergence is made fast by preconditioning with a rank-M Nyström approximation of K,
the idea of Falkon (Rudi, Carratino & Rosasco 2017; Meanti et al. 2020) applied to the full system as in
Frangella, Tropp & Udell (2023, "Randomized Nyström preconditioning"): with M centres C ⊂ X,

    K ≈ K̂ = K_nm K_mm⁻¹ K_mn = U Λ Uᵀ       (U: N×r orthonormal, Λ = diag(λ_1 ≥ … ≥ λ_r))
    P⁻¹ = (λ_r + λ) U (Λ + λI)⁻¹ Uᵀ + (I − U Uᵀ),

so that ``P⁻¹(K + λI)`` has its large eigenvalues flattened to ≈ λ_r + λ and CG needs few iterations.

Preconditioned CG (Hestenes & Stiefel 1952; Saad, *Iterative Methods*, Alg. 9.1), run on all output columns at
once; stops when every column has ``‖r‖ ≤ tol·‖y‖`` and otherwise warns with the residual reached and returns the
best iterate seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import _arrays, scale
from .._arrays import check_int, check_memory, check_nonnegative, check_positive, format_bytes, warn
from .base import SolverResult, check_xy, numpy_view, register
from .nystrom import check_n_centers, cholesky_jitter, default_n_centers, sample_centers
from .nystrom import memory_needed as nystrom_bytes

__all__ = ["CGResult", "conjugate_gradient", "NystromPreconditioner", "nystrom_preconditioner", "CGSolution",
           "cg_solve", "fit", "default_precond_centers", "choose_scaleout"]

Kernel = Callable[[Any, Any], Any]


@dataclass
class CGResult:
    """x (N, O): the best iterate; history: max over columns of ‖r‖/‖y‖ after each iteration."""

    x: np.ndarray
    n_iter: int
    residual: float
    converged: bool
    history: list[float] = field(default_factory=list)


def conjugate_gradient(matvec: Callable[[np.ndarray], np.ndarray], B: np.ndarray, *,
                       precond: Callable[[np.ndarray], np.ndarray] | None = None, tol: float = 1e-8,
                       max_iter: int = 500, callback: Callable[[int, float], None] | None = None) -> CGResult:
    """Solve ``A X = B`` for symmetric positive (semi)definite A given as ``matvec``, column by column at once.

    Parameters
    ----------
    matvec : callable (N, O) -> (N, O)
    B : ndarray of shape (N, O)
    precond : callable (N, O) -> (N, O), optional
        Applies ``P⁻¹`` (symmetric positive definite).
    tol : float
        Stop when ``‖r_j‖ ≤ tol·‖b_j‖`` for every column j.
    max_iter : int
    callback : callable(iteration, relative residual), optional

    Returns
    -------
    CGResult
        When not converged after ``max_iter`` iterations, a :class:`~kernelscope.KernelscopeWarning` names the
        residual reached, and ``x`` is the iterate with the smallest residual.
    """
    B = np.asarray(B, dtype=np.float64)
    B2 = B[:, None] if B.ndim == 1 else B
    # A X = B is linear in B: solve for B / s (entries of order 1) and scale back, so that ‖r‖² and rᵀz stay finite
    # for targets near 1e155 (their squares overflow: the residual would read inf, the step 0 and the answer 0)
    s = float(np.abs(B2).max()) if B2.size else 0.0
    if s > 0 and not 1e-100 < s < 1e100:
        inner = conjugate_gradient(matvec, B2 / s, precond=precond, tol=tol, max_iter=max_iter, callback=callback)
        x = inner.x * s
        return CGResult(x if B.ndim == 2 else x[:, 0], inner.n_iter, inner.residual, inner.converged, inner.history)
    norm_b = np.linalg.norm(B2, axis=0)
    norm_b = np.where(norm_b > 0, norm_b, 1.0)  # a zero column is solved by x = 0 at once
    x = np.zeros_like(B2)
    r = B2.copy()
    z = precond(r) if precond is not None else r.copy()
    p = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    res = np.linalg.norm(r, axis=0) / norm_b
    history = [float(res.max())]
    best_x, best_res = x.copy(), float(res.max())
    active = res > tol
    it = 0
    while it < max_iter and active.any():
        q = matvec(p)
        pq = np.einsum("ij,ij->j", p, q)
        ok = active & (pq > 0)
        alpha = np.where(ok, rz / np.where(ok, pq, 1.0), 0.0)
        x += alpha * p
        r -= alpha * q
        res = np.linalg.norm(r, axis=0) / norm_b
        it += 1
        history.append(float(res.max()))
        if callback is not None:
            callback(it, history[-1])
        if history[-1] < best_res:
            best_x, best_res = x.copy(), history[-1]
        active = ok & (res > tol)
        if not active.any():
            break
        z = precond(r) if precond is not None else r
        rz_new = np.einsum("ij,ij->j", r, z)
        beta = np.where(active, rz_new / np.where(rz != 0, rz, 1.0), 0.0)
        p = z + beta * p
        rz = rz_new
    converged = best_res <= tol
    if not converged:
        warn(f"conjugate gradients did not converge in {it} iterations (max_iter={max_iter}): relative residual "
             f"{best_res:.3e} > tol={tol:.1e}; returning the best iterate. Raise max_iter or ridge, or use more "
             "preconditioner centres (n_centers).")
    out = best_x if B.ndim == 2 else best_x[:, 0]
    return CGResult(out, it, best_res, converged, history)


@dataclass
class NystromPreconditioner:
    """``P⁻¹ v = (λ_r + λ) U (Λ + λI)⁻¹ Uᵀ v + v − U Uᵀ v`` (Frangella et al. 2023). U (N, r), eigenvalues (r,)."""

    U: np.ndarray
    eigenvalues: np.ndarray
    ridge: float

    def __call__(self, V: np.ndarray) -> np.ndarray:
        UtV = self.U.T @ V  # (r, O)
        lam_r = float(self.eigenvalues[-1]) if self.eigenvalues.size else 0.0
        scaled = (lam_r + self.ridge) / (self.eigenvalues + self.ridge)
        return V + self.U @ ((scaled[:, None] - 1.0) * UtV)


def nystrom_preconditioner(kernel: Kernel, X: np.ndarray, ridge: float, centers: np.ndarray, *,
                           block: int) -> NystromPreconditioner:
    """The rank-M Nyström preconditioner from centres C (M, d): ``K̂ = B Bᵀ``, ``B = K_nm L⁻ᵀ``, ``K_mm = L Lᵀ``.

    The eigenpairs of ``K̂`` come from the M×M matrix ``BᵀB = W S² Wᵀ``: ``U = B W S⁻¹``, ``Λ = S²``. Directions
    with ``S² ≤ 1e-12·S²_max`` are dropped. Memory O(N·M).
    """
    Knm = scale.kernel_tiles(kernel, X, centers, block).compute()  # (N, M)
    L, _ = cholesky_jitter(scale.evaluate(kernel, centers, centers))
    Bt = torch.linalg.solve_triangular(L, torch.as_tensor(Knm).T, upper=False)  # Bᵀ = L⁻¹ K_mn, (M, N)
    del Knm
    S2, W = torch.linalg.eigh(Bt @ Bt.T)  # ascending
    keep = S2 > 1e-12 * max(float(S2.max()), 1e-300)
    S2, W = S2[keep].flip(0), W[:, keep].flip(1)  # descending
    U = (Bt.T @ W) / S2.sqrt()  # (N, r)
    return NystromPreconditioner(U.numpy(), S2.numpy(), float(ridge))


def default_precond_centers(n: int) -> int:
    """Preconditioner rank: ⌈√N·log N⌉ as for the Nyström estimator, capped at 2 000 (N·M memory)."""
    return min(default_n_centers(n), 2000)


@dataclass
class CGSolution:
    """centers = X (N, d), coef = α (N, O) with ``f(x) = k(x, X) α``; info: iterations, residuals, tolerances."""

    centers: np.ndarray
    coef: np.ndarray
    info: dict


def memory_needed(n: int, d: int, o: int, m: int, block: int, threads: int) -> int:
    """Peak bytes of :func:`cg_solve`: tiles in flight, the N×M preconditioner (built via K_nm), CG vectors."""
    return int(8 * (threads * block * block + 2 * n * m + m * m * 3 + n * (d + 8 * o)))


def cg_solve(kernel: Kernel, X: Any, Y: Any, ridge: float, *, tol: float = 1e-8, max_iter: int = 500,
             n_centers: int | None = None, precondition: bool = True, block: int | None = None, seed: Any = 0,
             persist: bool = False, memory_budget: int | None = None,
             callback: Callable[[int, float], None] | None = None) -> CGSolution:
    """Exact kernel ridge coefficients ``α = (K + λI)⁻¹ Y`` by Nyström-preconditioned CG, matrix-free.

    Parameters
    ----------
    kernel : callable ``k(A, B) -> (len(A), len(B))``
    X : array-like of shape (n_samples, n_features)
    Y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    ridge : float >= 0
        λ of ``K + λI`` (a positive ridge makes the system well posed; 0 is allowed for consistent systems).
    tol : float
        Relative residual ``‖(K + λI)α − y‖ / ‖y‖`` to reach, per output column.
    max_iter : int
        At most this many block matvecs (each one pass over all N² kernel entries).
    n_centers : int, optional
        Rank M of the Nyström preconditioner (≤ N; default :func:`default_precond_centers`).
    precondition : bool
        ``False`` runs plain CG (to see what the preconditioner buys).
    block : int, optional
        Tile side (default: tiles of at most 64 MB).
    seed : int or torch.Generator
        Sampling of the preconditioner's centres.
    persist : bool
        Compute the tiles once and keep them (in the cluster's memory when a client is active) instead of
        recomputing them at every product: O(N²) memory, worth it for costly kernels (deep NTKs).
    memory_budget : int, optional
        Bytes this fit may take (default: half the available memory); refused up front beyond it.
    callback : callable(iteration, relative residual), optional

    Returns
    -------
    CGSolution
        ``coef`` (N, n_outputs) (2-D even for 1-D Y); ``info`` with ``n_iter``, ``residual``, ``converged``,
        ``tol``, ``max_iter``, ``residual_history``, ``n_centers``, ``block``, ``scheduler``.
    """
    Xn, Y2 = check_xy(X, Y)
    return _cg_solve(kernel, Xn, Y2, check_nonnegative(ridge, "ridge"), tol=tol, max_iter=max_iter,
                     n_centers=n_centers, precondition=precondition, block=block, seed=seed, persist=persist,
                     memory_budget=memory_budget, callback=callback)


def _cg_solve(kernel: Kernel, Xn: np.ndarray, Y2: np.ndarray, ridge: float, *, tol: float = 1e-8,
              max_iter: int = 500, n_centers: int | None = None, precondition: bool = True, block: int | None = None,
              seed: Any = 0, persist: bool = False, memory_budget: int | None = None,
              callback: Callable[[int, float], None] | None = None) -> CGSolution:
    """:func:`cg_solve` for validated Xn (N, d), Y2 (N, O) float64 ndarrays and ridge >= 0; checks the options.
    The memory budget is read here once (unless given) and passed down."""
    tol = check_positive(tol, "tol")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    n, d = Xn.shape
    m = (check_n_centers(n_centers, n) if n_centers is not None else default_precond_centers(n)) \
        if precondition else 0
    block = scale.default_block(n) if block is None else scale.check_block(block)
    threads = scale.n_workers() if scale.active_client() is None else 1  # tiles in flight here
    need = memory_needed(n, d, Y2.shape[1], m, block, threads)
    if persist and scale.active_client() is None:
        need += 8 * n * n  # the persisted tiles, in this process
    budget = _arrays.memory_budget_bytes() if memory_budget is None else int(memory_budget)  # once per fit
    check_memory(need, f"conjugate gradients on N = {n} with a rank-{m} preconditioner and {block}-row tiles",
                 "Use a smaller block, fewer preconditioner centres (n_centers), or solver='nystrom'.",
                 budget=budget)

    op = scale.BlockOperator.of_validated(kernel, Xn, block, ridge, bool(persist), budget=budget)
    precond = None
    if m > 0:
        idx = sample_centers(kernel, Xn, m, sampling="uniform", seed=seed, block=block)
        precond = nystrom_preconditioner(kernel, Xn, ridge, Xn[idx], block=block)
    res = conjugate_gradient(op.matvec, Y2, precond=precond, tol=tol, max_iter=max_iter, callback=callback)
    info = {"solver": "cg", "n_iter": res.n_iter, "residual": res.residual, "converged": res.converged,
            "tol": tol, "max_iter": max_iter, "residual_history": res.history, "n_centers": m,
            "preconditioner": "nystrom" if m else "none", "block": block, "persist": bool(persist),
            "n_matvecs": op.n_products,
            "memory_bytes_estimate": need,
            "scheduler": "distributed" if scale.active_client() is not None else "threads"}
    return CGSolution(Xn, res.x, info)


@register("cg")
def fit(kernel: Kernel, X: torch.Tensor, Y: torch.Tensor, ridge: float, *, memory_budget: int | None = None,
        **solver_options: Any) -> SolverResult:
    """Registry entry ``SOLVERS['cg']``: :func:`cg_solve` as a :class:`~kernelscope.solvers.SolverResult`.

    X (N, d), Y (N, O) float64 tensors and ridge >= 0, validated by the caller (not again here). Options:
    ``tol``, ``max_iter``, ``n_centers``, ``precondition``, ``block``, ``seed``, ``persist``, ``memory_budget``
    (bytes, read once by the caller). CG gives no posterior standard deviation (that needs the N×N
    inverse; use solver='cholesky'), so ``variance`` is None.
    """
    t0 = time.perf_counter()
    sol = _cg_solve(kernel, numpy_view(X), numpy_view(Y), ridge, memory_budget=memory_budget, **solver_options)
    sol.info["seconds_fit"] = time.perf_counter() - t0
    return SolverResult(centers=X, coef=torch.as_tensor(sol.coef, device=X.device), info=sol.info)


def choose_scaleout(n: int, *, d: int | None = None, n_outputs: int = 1, budget: int | None = None,
                    dense_bytes: float | None = None) -> str:
    """``solver='auto'`` past the dense budget: ``'cg'`` (exact) while N ≤ 50 000 and its memory fits, else
    ``'nystrom'`` (each CG iteration evaluates all N² kernel entries: beyond 50 000 points the Nyström estimator
    with ⌈√N log N⌉ centres is the practical choice). Warns which solver was picked and why; refuses up front
    (:class:`~kernelscope.MemoryBudgetError` naming the bytes) when not even the Nyström solver fits.
    """
    budget = _arrays.memory_budget_bytes() if budget is None else int(budget)
    d = 1 if d is None else int(d)
    why = (f"the dense N×N system for N = {n} needs {format_bytes(dense_bytes)}" if dense_bytes is not None
           else f"N = {n}") + f" > the memory budget {format_bytes(budget)}"
    threads = scale.n_workers()
    m_cg = default_precond_centers(n)
    if n <= 50_000 and memory_needed(n, d, n_outputs, m_cg, scale.default_block(n), threads) <= budget:
        warn(f"solver='auto': {why}; using 'cg' (Nyström-preconditioned conjugate gradients, matrix-free).")
        return "cg"
    m = default_n_centers(n)
    block = scale.default_block(n, max_bytes=min(64e6, 8.0 * 4096 * m))
    need = nystrom_bytes(n, m, d, n_outputs, block, threads, 2 * threads)
    check_memory(need, f"the Nyström solver with M = {m} centres for N = {n} ({why})",
                 "Use fewer centres through solver='nystrom' with n_centers, or fewer training points.",
                 budget=budget)
    warn(f"solver='auto': {why}; using 'nystrom' with M = {m} centres.")
    return "nystrom"
