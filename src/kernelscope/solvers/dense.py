"""Dense solver: Cholesky of ``K + λI`` (O(N³) time, one N×N buffer), pseudoinverse when that fails or λ = 0.

``(K + λI) α = Y`` with ``K + λI = L Lᵀ``: ``α = L⁻ᵀ L⁻¹ Y``; posterior variance of the latent function
``σ²(x) = k(x, x) − ‖L⁻¹ k(X, x)‖²`` (Rasmussen & Williams, Algorithm 2.1).

λ = 0 asks for the least-norm interpolant ``α = K⁺Y`` (THEORY.md §2): it goes to the pseudoinverse
(:func:`kernelscope.linsys.pinv`) directly, so a singular K is answered, not refused. A λ > 0 whose
``K + λI`` is numerically not positive definite falls back to the pseudoinverse with a warning.
"""

from __future__ import annotations

import time
from functools import partial

import scipy.linalg as sla
import torch

from .._arrays import check_memory, format_bytes, warn
from ..kernels import Kernel
from .base import SolverResult, register

__all__ = ["fit_cholesky", "cholesky_variance", "pinv_variance", "cholesky_bytes", "pinv_bytes", "dense_bytes"]


def cholesky_bytes(n: int) -> float:
    """Memory of the Cholesky path: the N×N float64 matrix, factorised in place, plus slack for one more copy."""
    return 2 * 8.0 * n * n


def pinv_bytes(n: int) -> float:
    """Memory of the pseudoinverse path (λ = 0, or a ``K + λI`` that is not positive definite): K, the SVD's copy
    of it, U, Vᵀ, gesdd's workspace (≈ 4N²) and the pseudoinverse P: 8 N×N float64 matrices (measured peak at
    N = 3000: 6.9 of them)."""
    return 8 * 8.0 * n * n


def dense_bytes(n: int, ridge: float | None = None) -> float:
    """Memory of :func:`fit_cholesky` for N points: the pseudoinverse's for ``ridge == 0``, else Cholesky's."""
    return pinv_bytes(n) if ridge == 0 else cholesky_bytes(n)


# The factor L is a row-major (C-order) tensor; LAPACK is column-major. Lᵀ viewed as column-major is the same
# memory, so on the CPU the triangular solves go to SciPy's LAPACK on ``L.T`` (an upper factor) without the
# N×N transposing copy torch would make; other devices use torch.
def _forward(L: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``L⁻¹ B`` for L (N, N) lower, B (N, T)."""
    if L.device.type == "cpu":
        Ln = L.numpy()
        return torch.from_numpy(sla.solve_triangular(Ln.T, B.numpy(), lower=False, trans="T", check_finite=False))
    return torch.linalg.solve_triangular(L, B, upper=False)


def _cho_solve(L: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``(L Lᵀ)⁻¹ Y`` for L (N, N) lower, Y (N, O)."""
    if L.device.type == "cpu":
        return torch.from_numpy(sla.cho_solve((L.numpy().T, False), Y.numpy(), check_finite=False))
    return torch.cholesky_solve(Y, L, upper=False)


def cholesky_variance(L: torch.Tensor, K_star: torch.Tensor, k_diag: torch.Tensor) -> torch.Tensor:
    """``k(x, x) − ‖L⁻¹ k(X, x)‖²`` for K_star (T, N), k_diag (T,), L (N, N) lower; clamped at 0."""
    V = _forward(L, K_star.T.contiguous())  # (N, T)
    return (k_diag - (V * V).sum(0)).clamp_(min=0.0)


def pinv_variance(P: torch.Tensor, K_star: torch.Tensor, k_diag: torch.Tensor) -> torch.Tensor:
    """``k(x, x) − k(x, X) P k(X, x)`` with P = (K + λI)⁺ (N, N); clamped at 0."""
    return (k_diag - ((K_star @ P) * K_star).sum(1)).clamp_(min=0.0)


def _fit_pinv(K: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, info: dict, rcond: float | None
              ) -> SolverResult:
    from ..linsys import pinv

    t0 = time.perf_counter()
    P = torch.as_tensor(pinv(K.cpu().numpy(), rcond=rcond), dtype=torch.float64).to(K.device)  # (N, N)
    coef = P @ Y  # (N, O)
    info.update(method="pinv", seconds_solve=time.perf_counter() - t0)
    return SolverResult(centers=X, coef=coef, info=info, variance=partial(pinv_variance, P))


def _gram(kernel, X: torch.Tensor, budget: int | None) -> torch.Tensor:
    """k(X, X) (N, N) in a fresh buffer, through the unvalidated path of a kernelscope kernel."""
    if isinstance(kernel, Kernel):
        return kernel.matrix(X, X, budget=budget)
    return kernel(X, X)


@register("cholesky")
def fit_cholesky(kernel, X: torch.Tensor, Y: torch.Tensor, ridge: float, *, rcond: float | None = None,
                 memory_budget: int | None = None) -> SolverResult:
    """Exact kernel ridge regression by Cholesky (pseudoinverse for λ = 0 or a non-PD ``K + λI``).

    Parameters
    ----------
    kernel : kernel object over float64 tensors (a :class:`~kernelscope.kernels.Kernel`: its unvalidated
        ``matrix`` is used; any other callable ``kernel(A, B)`` is called).
    X : tensor (N, d); Y : tensor (N, O); ridge : λ ≥ 0 (validated by the caller).
    rcond : cut-off of the pseudoinverse path (``None``: ``eps · N``, NumPy's default).
    memory_budget : bytes the N×N matrix may take (default: the memory budget, read when it is allocated).

    Returns
    -------
    SolverResult with centers = X, coef = (K + λI)⁻¹Y (or K⁺Y), info = {solver, method, n, seconds_*}.
    Peak memory: one N×N float64 matrix (the factor overwrites K) plus O(N·O).
    """
    n = X.shape[0]
    info: dict = {"solver": "cholesky", "n": n}
    need = dense_bytes(n, ridge)
    check_memory(need, f"the dense solver for N={n} ({format_bytes(need)}: " + (
        "ridge=0 asks for the pseudoinverse, an SVD of K)" if ridge == 0 else "K and its Cholesky factor)"),
        "Use a ridge > 0 (Cholesky needs a quarter of the pseudoinverse's memory), solver='cg' or 'nystrom', or "
        "fewer points." if ridge == 0 else "Use solver='cg' or 'nystrom' (matrix-free), or fewer points.",
        budget=memory_budget)
    t0 = time.perf_counter()
    K = _gram(kernel, X, memory_budget)  # (N, N), a fresh buffer we may overwrite
    info["seconds_kernel"] = time.perf_counter() - t0
    if ridge == 0:
        return _fit_pinv(K, X, Y, info, rcond)
    t0 = time.perf_counter()
    K.diagonal().add_(ridge)
    K_copy = None if n > 2048 else K.clone()  # small systems: keep K for the fallback instead of recomputing
    L, status = torch.linalg.cholesky_ex(K, out=(K, torch.empty((), dtype=torch.int32, device=K.device)))
    info["seconds_factor"] = time.perf_counter() - t0
    if int(status) != 0 or not bool(torch.isfinite(L.diagonal()).all()):
        warn(f"K + ridge·I is not positive definite (Cholesky failed at column {int(status)}, ridge={ridge:g}); "
             "answered by the pseudoinverse. A larger ridge makes the system well posed.")
        if K_copy is None:
            K_copy = _gram(kernel, X, memory_budget)
            K_copy.diagonal().add_(ridge)
        del L, K
        return _fit_pinv(K_copy, X, Y, info, rcond)
    del K_copy
    t0 = time.perf_counter()
    coef = _cho_solve(L, Y.contiguous())  # (N, O)
    info.update(method="cholesky", seconds_solve=time.perf_counter() - t0)
    return SolverResult(centers=X, coef=coef, info=info, variance=partial(cholesky_variance, L))
