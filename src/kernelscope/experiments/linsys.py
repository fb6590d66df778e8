"""Chapter 1's experiments: linear systems solved and checked, ill-conditioning, power iteration (THEORY.md §1).

Each is a function returning a dataclass that :mod:`kernelscope.plots.linsys` draws and chapter 1 reports:

1. :func:`solve_system` - ``Ax = b`` solved (least norm, least squares) with the SVD's four subspaces;
2. :func:`check_least_norm` - the solution against an expected one (a closed form, or ``numpy.linalg.pinv``);
3. :func:`rank_deficient_example` - an n×n integer matrix of rank r, with ``b`` in and not in its column space;
4. :func:`hilbert_study` - Hilbert matrices: condition number, the numerical rank found, residuals against
   NumPy's ``lstsq``;
5. :func:`power_iteration_study` - power iteration on a symmetric matrix with a known spectrum.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla

from .. import linsys
from .._arrays import KernelscopeWarning

__all__ = ["LinearSystem", "solve_system", "LeastNormCheck", "check_least_norm", "RankDeficientExample",
           "rank_deficient_example", "HilbertRow", "hilbert_study", "PowerStudy", "power_iteration_study"]


@dataclass
class LinearSystem:
    """A solved system ``Ax = b`` (:func:`solve_system`): the data, the :class:`~kernelscope.linsys.SolveResult` and
    the four subspaces."""

    A: Any  # (m, n) array (dense, or a SciPy sparse matrix)
    b: np.ndarray  # (m,) or (m, k)
    result: linsys.SolveResult  # x, kind, rank, residual, row/null parts
    subspaces: linsys.Subspaces | None  # orthonormal bases of the four subspaces (dense A only)


def solve_system(A, b, *, rcond: float | None = None, quiet: bool = False) -> LinearSystem:
    """Solve ``Ax = b`` (least norm, least squares) and take the SVD's four subspaces of a dense ``A``.

    ``quiet`` silences the warning for singular systems (the story shows them on purpose).
    """
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", KernelscopeWarning)
        result = linsys.solve(A, b, rcond=rcond)
    S = linsys.subspaces(A) if isinstance(A, np.ndarray) else None
    return LinearSystem(A, np.asarray(b), result, S)


# ------------------------------------------------------------------------------------------------------------
# A solution against the one it should be
# ------------------------------------------------------------------------------------------------------------
@dataclass
class LeastNormCheck:
    """A least-norm solution checked against an independent reference (:func:`check_least_norm`)."""

    system: LinearSystem
    expected: np.ndarray  # (n,) the solution it should be
    norm: float  # ‖x*‖
    expected_norm: float  # ‖expected‖
    max_error: float  # max |x* − expected|
    null_component: float  # ‖Nᵀx*‖, N an orthonormal basis of the null space: 0 for the least-norm solution


def check_least_norm(A: np.ndarray, b: np.ndarray, expected: np.ndarray | None = None, *,
                     quiet: bool = False) -> LeastNormCheck:
    """Solve ``Ax = b`` with :func:`solve_system` and compare with ``expected`` (default ``numpy.linalg.pinv(A)
    @ b``, an independent reference); A dense (m, n), b (m,)."""
    s = solve_system(A, b, quiet=quiet)
    x = s.result.x
    expected = np.linalg.pinv(A) @ b if expected is None else np.asarray(expected, dtype=float)
    return LeastNormCheck(s, expected, float(np.linalg.norm(x)), float(np.linalg.norm(expected)),
                          float(np.abs(x - expected).max()), float(np.linalg.norm(s.subspaces.null.T @ x)))


# ------------------------------------------------------------------------------------------------------------
# A rank-deficient square system
# ------------------------------------------------------------------------------------------------------------
@dataclass
class RankDeficientExample:
    """A rank-deficient system with b inside and outside the column space (:func:`rank_deficient_example`)."""

    A: np.ndarray  # (n, n) of rank r
    inside: LeastNormCheck  # b in the column space: exact solution of least norm
    outside: LeastNormCheck  # b not in it: least-squares solution of least norm
    residual_in_col_space: float  # ‖Uᵣᵀ(b − Ax*)‖ of the outside case: 0, the residual is in the left null space


def rank_deficient_example(rng: np.random.Generator, n: int = 8, rank: int = 4,
                           noise: float = 1.5) -> RankDeficientExample:
    """``A = B C`` with B (n, r) and C (r, n) of entries in {−1, 0, 1} (redrawn until rank A = r);
    ``b_in = A x`` for x with entries in {−1, 0, 1}, ``b_out = b_in + noise · N(0, I)``.

    ``rng`` is used in this order, so a caller that draws more from it afterwards gets reproducible numbers.
    """
    def draw():
        return rng.integers(-1, 2, (n, rank)).astype(float) @ rng.integers(-1, 2, (rank, n)).astype(float)

    A = draw()
    while np.linalg.matrix_rank(A) != rank:
        A = draw()
    b_in = A @ rng.integers(-1, 2, n).astype(float)
    b_out = b_in + noise * rng.standard_normal(n)
    inside, outside = check_least_norm(A, b_in, quiet=True), check_least_norm(A, b_out, quiet=True)
    col = inside.system.subspaces.col
    return RankDeficientExample(A, inside, outside, float(np.linalg.norm(col.T @ outside.system.result.residual)))


# ------------------------------------------------------------------------------------------------------------
# Ill-conditioning: Hilbert matrices
# ------------------------------------------------------------------------------------------------------------
@dataclass
class HilbertRow:
    """One Hilbert matrix of :func:`hilbert_study`: its conditioning, the rank found and the residuals."""

    n: int
    cond: float  # 2-norm condition number of H
    rank: int  # numerical rank found by linsys.solve (rcond = eps·n)
    method: str  # the path linsys.solve took
    residual: float  # ‖b − Hx‖ of linsys.solve
    residual_lstsq: float  # ‖b − Hx‖ of numpy.linalg.lstsq


def hilbert_study(sizes=(6, 8, 10, 12, 14, 16)) -> list[HilbertRow]:
    """``H x = H·1`` for Hilbert matrices ``H_ij = 1/(i + j + 1)`` of each size: where truncating tiny singular
    values is the answer."""
    rows = []
    for n in sizes:
        H = sla.hilbert(n)
        b = H @ np.ones(n)
        r = solve_system(H, b, quiet=True).result
        x_np = np.linalg.lstsq(H, b, rcond=None)[0]
        rows.append(HilbertRow(int(n), float(np.linalg.cond(H)), r.rank, r.method, float(np.linalg.norm(b - H @ r.x)),
                               float(np.linalg.norm(b - H @ x_np))))
    return rows


# ------------------------------------------------------------------------------------------------------------
# Power iteration
# ------------------------------------------------------------------------------------------------------------
@dataclass
class PowerStudy:
    """Power iteration on a matrix of known spectrum (:func:`power_iteration_study`)."""

    eigenvalues: np.ndarray  # (n,) the spectrum of the matrix, largest first
    result: linsys.PowerResult  # eigenvalue, iterations, converged, Rayleigh-quotient history


def power_iteration_study(rng: np.random.Generator, n: int = 50, *, seed: int = 0, tol: float = 1e-12,
                          max_iter: int = 500) -> PowerStudy:
    """Power iteration on ``M = Q diag(10, 8, 5 … 0.1) Qᵀ`` (Q orthogonal, from ``rng``); start vector from
    ``seed``. The Rayleigh quotient converges at the rate (λ₂/λ₁)^(2k) = 0.8^(2k)."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    ev = np.concatenate([[10.0, 8.0], np.linspace(5, 0.1, n - 2)])
    M = (Q * ev) @ Q.T
    return PowerStudy(ev, linsys.power_iteration(M, seed=seed, tol=tol, max_iter=max_iter))
