"""Linear systems: least norm, least squares and the pseudoinverse (THEORY.md §1).

``Ax = b`` with ``A`` of shape (m, n) has

- exactly one solution when ``A`` is square and invertible (``kind='unique'``);
- infinitely many when ``b`` is in the column space but ``A`` has a null space: the one of least norm,
  ``x* = A⁺b = Aᵀ(AAᵀ)⁻¹b`` for full row rank, lies in the **row space** of A (``kind='least_norm'``);
- none when ``b`` is not in the column space: ``A⁺b`` is then the least-squares solution of least norm and the
  residual ``b − Ax*`` lies in the left null space (``kind='least_squares'``).

Every solution is the unique row-space part plus a free null-space part (:func:`decompose`).

Numerics are float64 LAPACK through SciPy. ``rcond`` follows NumPy's convention: singular values below
``rcond · σ_max`` are treated as zero, with default ``rcond = eps · max(m, n)`` (``numpy.linalg.lstsq``/``pinv``
with ``rcond=None``). Sparse matrices and ``scipy.sparse.linalg.LinearOperator`` go to SciPy's LSMR, never to a
dense SVD.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ._arrays import ArrayKind, ValidationError, as_numpy, check_int, check_memory, check_positive, warn

__all__ = ["SolveResult", "Subspaces", "PowerResult", "solve", "pinv", "subspaces", "decompose",
           "power_iteration", "default_rcond"]

_EPS = np.finfo(np.float64).eps


def default_rcond(shape: tuple[int, int]) -> float:
    """NumPy's default cut-off for small singular values: ``eps · max(m, n)``."""
    return _EPS * max(shape)


@dataclass
class SolveResult:
    """The answer of :func:`solve`.

    Attributes
    ----------
    x : ndarray of shape (n,) or (n, k) - the minimum-norm (least-squares) solution ``A⁺b``.
    kind : 'unique' | 'least_norm' | 'least_squares' (for several right-hand sides: the most general of the
        columns' kinds; see ``kinds``).
    kinds : tuple of str, one per right-hand side.
    rank : numerical rank of A (``None`` for LSMR, which does not compute it; ``info['rank']`` says 'unknown').
    residual : ndarray like b - ``b − A x``.
    row_part, null_part : x split into its row-space and null-space components (``null_part`` is zero up to
        rounding: the least-norm solution has no null-space component).
    method : 'svd', 'qr' (full-rank fast path) or 'lsmr'.
    shape : (m, n) of A.
    info : solver details (LSMR iterations and stop reason, singular values when computed...).
    """

    x: Any
    kind: str
    kinds: tuple[str, ...]
    rank: int | None
    residual: Any
    row_part: Any
    null_part: Any
    method: str
    shape: tuple[int, int]
    info: dict = field(default_factory=dict)

    @property
    def residual_norm(self) -> float:
        return float(sla.norm(np.asarray(_to_np(self.residual))))

    @property
    def nullity(self) -> int | None:
        return None if self.rank is None else self.shape[1] - self.rank


@dataclass
class Subspaces:
    """Orthonormal bases (as columns) of the four fundamental subspaces of A (m × n, rank r).

    row : (n, r) = V[:, :r]; null : (n, n − r) = V[:, r:]; col : (m, r) = U[:, :r]; left_null : (m, m − r) = U[:, r:].
    """

    row: Any
    null: Any
    col: Any
    left_null: Any
    rank: int
    singular_values: Any

    @property
    def dims(self) -> dict[str, int]:
        return {"row": self.row.shape[1], "null": self.null.shape[1], "col": self.col.shape[1],
                "left_null": self.left_null.shape[1]}


@dataclass
class PowerResult:
    """Dominant eigenpair from :func:`power_iteration`: ``A v ≈ eigenvalue · v``, ``‖v‖ = 1``."""

    eigenvalue: float
    eigenvector: Any
    iterations: int
    converged: bool
    residual: float  # ‖Av − λv‖ at the end
    history: list[float] = field(default_factory=list)  # Rayleigh quotient vᵀAv at each iteration


def _to_np(a: Any) -> Any:
    try:
        import torch

        if isinstance(a, torch.Tensor):
            return a.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return a


def _is_operator(A: Any) -> bool:
    return sp.issparse(A) or isinstance(A, spla.LinearOperator)


def _check_matrix(A: Any, name: str = "A") -> np.ndarray:
    return as_numpy(A, name, ndim=2, shape_hint="(n_rows, n_cols)")


def _check_rcond(rcond: float | None, shape: tuple[int, int]) -> float:
    if rcond is None:
        return default_rcond(shape)
    return check_positive(rcond, "rcond", allow_zero=True)


def _check_rhs(b: Any, m: int) -> np.ndarray:
    b_np = as_numpy(b, "b", ndim=(1, 2), shape_hint="(n_rows,) or (n_rows, n_rhs)")
    if b_np.shape[0] != m:
        raise ValidationError("b", f"{m} rows (as many as A has rows)", f"shape {tuple(b_np.shape)}")
    return b_np


def _norms(M: np.ndarray) -> np.ndarray:
    """Euclidean norms of the columns of M (m, k) (of M itself for (m,)), as (k,): BLAS ``nrm2``, which scales as it
    sums, so entries near 1e300 (whose squares overflow) or 1e-300 (whose squares underflow) keep their norm."""
    M2 = M if M.ndim == 2 else M[:, None]
    return np.array([sla.norm(M2[:, j], check_finite=False) for j in range(M2.shape[1])], dtype=np.float64)


def _in_col_space(A_norm: float, x: np.ndarray, b: np.ndarray, r: np.ndarray, m: int, n: int,
                  rel: float = 0.0) -> np.ndarray:
    """Per right-hand side: is b in the column space, i.e. ``‖r‖ ≤ τ (‖A‖‖x‖ + ‖b‖)`` with
    ``τ = max(100 eps max(m, n), rel)`` (rounding level for a direct solve; ``rel`` for an iterative one)?

    Every norm is divided by ``c = max(‖A‖, ‖b‖)`` first, so that ``‖A‖‖x‖`` does not overflow for a system scaled
    by 1e300 (an infinite tolerance would call every such system consistent)."""
    tiny = np.finfo(np.float64).tiny
    xn, bn, rn = _norms(x), _norms(b), _norms(r)
    c = max(float(A_norm), float(bn.max(initial=0.0)), tiny)
    scale = (float(A_norm) / c) * xn + bn / c
    tol = max(100.0 * _EPS * max(m, n), rel) * np.maximum(scale, tiny)
    return rn / c <= tol


def _kinds(square_full_rank: bool, has_null: bool, in_col: np.ndarray) -> tuple[str, ...]:
    out = []
    for inside in np.atleast_1d(in_col):
        if not inside:
            out.append("least_squares")
        elif has_null:
            out.append("least_norm")
        else:
            out.append("unique")
    return tuple(out)


_KIND_ORDER = {"unique": 0, "least_norm": 1, "least_squares": 2}


def solve(A: Any, b: Any, rcond: float | None = None, *, atol: float = 1e-12, btol: float = 1e-12,
          max_iter: int | None = None) -> SolveResult:
    """Minimum-norm (least-squares) solution of ``Ax = b``, and what kind of solution it is.

    Parameters
    ----------
    A : array-like of shape (m, n), a ``scipy.sparse`` matrix, or a ``scipy.sparse.linalg.LinearOperator``.
        Dense input is solved through LAPACK (a rank-revealing QR fast path when A is clearly of full rank,
        otherwise the SVD); sparse input and operators go to LSMR.
    b : array-like of shape (m,) or (m, k) (k right-hand sides).
    rcond : singular values below ``rcond · σ_max`` count as zero; ``None`` means ``eps · max(m, n)`` (NumPy).
    atol, btol, max_iter : LSMR stopping rules (sparse/operator input only).

    Returns
    -------
    SolveResult with ``x`` = A⁺b of shape (n,) or (n, k), ``kind``, ``rank``, ``residual``, ``row_part`` and
    ``null_part``. NumPy in -> NumPy out; torch in -> torch out.

    Singular and ill-conditioned systems are not errors: they are answered by the pseudoinverse.
    """
    if _is_operator(A):
        return _solve_lsmr(A, b, atol=atol, btol=btol, max_iter=max_iter)
    kind_of = ArrayKind.of(A, b)
    A_np = _check_matrix(A)
    m, n = A_np.shape
    b_np = _check_rhs(b, m)
    cutoff = _check_rcond(rcond, (m, n))

    x, rank, method, info = _dense_min_norm(A_np, b_np, cutoff)
    residual = _residual(A_np, x, b_np)
    A_norm = info.get("sigma_max") or (np.linalg.norm(A_np, 2) if min(m, n) <= 64
                                       else sla.norm(A_np, check_finite=False))
    in_col = _in_col_space(float(A_norm), x, b_np, residual, m, n)
    has_null = rank < n
    kinds = _kinds(m == n and rank == n, has_null, in_col)
    kind = max(kinds, key=_KIND_ORDER.__getitem__)
    if has_null and method == "svd":
        V_r = info.pop("_V_r")
        row_part = V_r @ (V_r.T @ x)
    else:
        info.pop("_V_r", None)
        row_part = x.copy()  # x = A⁺b always lies in the row space (QR path: full rank)
    null_part = x - row_part
    if rank < min(m, n):
        warn(f"A is rank deficient (rank {rank} < min(m, n) = {min(m, n)}); answered by the pseudoinverse.")
    w = kind_of.wrap
    return SolveResult(x=w(x), kind=kind, kinds=kinds, rank=int(rank), residual=w(residual),
                       row_part=w(row_part), null_part=w(null_part), method=method, shape=(m, n), info=info)


def _residual(A: np.ndarray, x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """b − Ax through SciPy's BLAS, the library the LAPACK solve just used.

    NumPy and SciPy wheels each bundle their own OpenBLAS; after a NumPy matrix product NumPy's threads keep
    spinning for a while and take the cores from SciPy's next LAPACK call (measured: +30% on the next 2000×1000
    gelsy on 2 cores). Staying in one BLAS keeps repeated solves as fast as the bare driver.
    """
    if A.dtype != np.float64 or x.dtype != np.float64 or b.dtype != np.float64 or not (
            A.flags.c_contiguous or A.flags.f_contiguous):
        return b - A @ x
    a, trans = (A.T, 1) if A.flags.c_contiguous else (A, 0)  # Fortran-ordered view: no copy
    if b.ndim == 1:
        return sla.blas.dgemv(-1.0, a, x, beta=1.0, y=b, trans=trans)
    return sla.blas.dgemm(-1.0, a, x, beta=1.0, c=np.asfortranarray(b), trans_a=trans)


#: cut-offs above this go straight to the SVD: the QR fast path cannot tell singular values apart so coarsely
_QR_CUTOFF_LIMIT = 1e-6


def _dense_min_norm(A: np.ndarray, b: np.ndarray, cutoff: float) -> tuple[np.ndarray, int, str, dict]:
    """x = A⁺b. Fast path: LAPACK gelsy (QR with column pivoting) when A is clearly of full rank; else the SVD."""
    m, n = A.shape
    # gelsy declares full rank when its condition estimate of R is below 1/cond. We ask it with a cut-off 1e4
    # times stricter than ours, so that "full rank" there means full rank under the SVD rule too (condition
    # estimators are accurate to a small factor); anything closer to the edge goes to the SVD. A cut-off above
    # 1e-6 (rcond=0.1, say) has no stricter cut-off below gelsy's reach: the SVD applies it exactly.
    rank = -1
    k = 1 if b.ndim == 1 else b.shape[1]
    check_memory(8.0 * (m * n + max(m, n) * k + 2 * max(m, n)), f"the least-squares solve of a {m}×{n} system "
                 "(LAPACK overwrites a copy of A)", "Pass A as a scipy.sparse matrix or a LinearOperator (LSMR needs "
                 "no copy), or use a smaller system.")
    if 0 < cutoff <= _QR_CUTOFF_LIMIT:
        try:
            x, _, rank, _ = sla.lstsq(A, b, cond=cutoff * 1e4, lapack_driver="gelsy", check_finite=False)
        except (np.linalg.LinAlgError, ValueError):
            rank = -1
    if rank == min(m, n):
        x = np.asarray(x)
        _check_solution_finite(x)
        return x, int(rank), "qr", {"rcond": cutoff}
    U, s, Vt = _svd(A, full=False)
    sigma_max = float(s[0]) if s.size else 0.0
    r = int(np.sum(s > cutoff * sigma_max)) if sigma_max > 0 else 0
    _check_invertible(s[:r])
    coef = (U[:, :r].T @ b) / (s[:r, None] if b.ndim == 2 else s[:r])
    x = Vt[:r].T @ coef
    _check_solution_finite(x)
    return x, r, "svd", {"rcond": cutoff, "sigma_max": sigma_max, "singular_values": s, "_V_r": Vt[:r].T}


#: LAPACK's 32-bit indices: no matrix it forms may have 2³¹ or more entries
_LAPACK_MAX_ENTRIES = 2**31 - 1


def _svd(A: np.ndarray, *, full: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The SVD ``A = U Σ Vᵀ`` (thin, or ``full`` with square U (m, m) and V (n, n)), refused up front when its
    factors would not fit the memory budget or LAPACK's 32-bit indices; gesdd, else the slower, robust gesvd."""
    m, n = A.shape
    k = min(m, n)
    u_cols, v_rows = (m, n) if full else (k, k)
    # A's copy, U, Vᵀ and gesdd's workspace (about 4k²)
    need = 8.0 * (m * n + m * u_cols + v_rows * n + 4 * k * k + max(m, n))
    what = (f"the full SVD of a {m}×{n} matrix (square bases U ({m}×{m}) and V ({n}×{n}))" if full
            else f"the SVD of a {m}×{n} matrix")
    check_memory(need, what, "The full bases (the null spaces) of a wide or tall matrix need n² numbers: ask "
                 "linsys.solve or linsys.decompose (thin SVD) for what you need, or use a smaller matrix.")
    if max(m * u_cols, v_rows * n, m * n) > _LAPACK_MAX_ENTRIES:
        raise ValidationError("A", f"a matrix whose SVD factors have fewer than 2³¹ entries (LAPACK's 32-bit "
                              f"indices){' for the full bases' if full else ''}", f"shape ({m}, {n})",
                              "Use a smaller matrix, or the thin bases of linsys.solve / linsys.decompose.")
    try:
        return sla.svd(A, full_matrices=full, lapack_driver="gesdd", check_finite=False)
    except np.linalg.LinAlgError:  # gesdd can fail to converge on nasty matrices; gesvd is slower but robust
        return sla.svd(A, full_matrices=full, lapack_driver="gesvd", check_finite=False)


#: the smallest singular value whose reciprocal is finite in float64
_INVERTIBLE = 1.0 / np.finfo(np.float64).max


def _check_invertible(s_kept: np.ndarray) -> None:
    """The pseudoinverse divides by every kept singular value; one below 1/float-max (a subnormal) has no finite
    reciprocal, and A⁺ would hold inf (NaN after the product)."""
    if s_kept.size and float(s_kept[-1]) <= _INVERTIBLE:
        raise ValidationError("A", f"kept singular values whose reciprocals are finite in float64 (σ > "
                              f"{_INVERTIBLE:.3g})", f"σ = {float(s_kept[-1]):.3g}",
                              "Scale A up (pinv(c·A) = pinv(A)/c), or raise rcond so that such values count as zero.")


def _check_solution_finite(x: np.ndarray) -> None:
    if not np.isfinite(x).all():
        raise ValidationError("b", "a right-hand side whose solution is finite in float64",
                              "a solution that overflows", "Scale b down (or A up) and scale the answer back.")


def _solve_lsmr(A: Any, b: Any, *, atol: float, btol: float, max_iter: int | None) -> SolveResult:
    m, n = A.shape
    kind_of = ArrayKind.of(b)
    b_np = _check_rhs(b, m)
    if sp.issparse(A) and A.dtype.kind in "fc" and not np.isfinite(A.data).all():
        bad = int(np.flatnonzero(~np.isfinite(A.data))[0])
        raise ValidationError("A", "finite values", f"{'NaN' if np.isnan(A.data[bad]) else 'inf'} among the "
                              "stored entries", "Remove or impute non-finite entries first.")
    if max_iter is not None:
        max_iter = check_int(max_iter, "max_iter", minimum=1)
    B = b_np if b_np.ndim == 2 else b_np[:, None]
    xs, stops, iters, norms = [], [], [], []
    for j in range(B.shape[1]):
        out = spla.lsmr(A, B[:, j], atol=atol, btol=btol, maxiter=max_iter)
        xs.append(out[0])
        stops.append(int(out[1]))
        iters.append(int(out[2]))
        norms.append(float(out[5]))  # LSMR's estimate of ‖A‖_F
    X = np.stack(xs, axis=1)
    R = B - np.column_stack([A @ X[:, j] for j in range(X.shape[1])])
    if not (np.isfinite(X).all() and np.isfinite(R).all()):  # an operator's products held NaN/inf
        raise ValidationError("A", "an operator whose products A @ v and A.T @ v are finite",
                              "NaN or inf in them during LSMR", "Check the operator's matvec and rmatvec.")
    # The kind from the residual, as on the dense path, not from LSMR's stop code (which says 'least squares' or
    # 'iteration limit' for a consistent system solved to 1e-12): b is in the column space when
    # ‖r‖ ≤ τ(‖A‖‖x‖ + ‖b‖) with τ = 10 max(atol, btol), the accuracy LSMR was asked for.
    A_norm = float(spla.norm(A)) if sp.issparse(A) else max(norms, default=0.0)
    in_col = _in_col_space(A_norm, X, B, R, m, n, rel=10.0 * max(atol, btol))
    if any(s == 7 for s in stops):
        warn(f"LSMR stopped at its iteration limit ({max(iters)} iterations); the answer may be inaccurate.")
    # LSMR started at 0 stays in the row space (a Krylov space of AᵀA built from Aᵀb): its answer is least-norm.
    # Whether a null space exists is not known without the rank; "least_norm" is reported when m < n.
    kinds = _kinds(False, n > m, in_col)
    kind = max(kinds, key=_KIND_ORDER.__getitem__)
    if b_np.ndim == 1:
        X, R = X[:, 0], R[:, 0]
    w = kind_of.wrap
    return SolveResult(x=w(X), kind=kind, kinds=kinds, rank=None, residual=w(R), row_part=w(X.copy()),
                       null_part=w(np.zeros_like(X)), method="lsmr", shape=(m, n),
                       info={"iterations": iters, "istop": stops, "rank": "unknown"})


def pinv(A: Any, rcond: float | None = None) -> Any:
    """Moore–Penrose pseudoinverse ``A⁺ = V Σ⁺ Uᵀ`` of shape (n, m).

    Singular values below ``rcond · σ_max`` are treated as zero (default ``eps · max(m, n)``, NumPy's
    convention). NumPy in -> NumPy out; torch in -> torch out (same device).
    """
    kind_of = ArrayKind.of(A)
    A_np = _check_matrix(A)
    cutoff = _check_rcond(rcond, A_np.shape)
    U, s, Vt = _svd(A_np, full=False)
    r = int(np.sum(s > cutoff * s[0])) if s.size and s[0] > 0 else 0
    _check_invertible(s[:r])
    P = (Vt[:r].T / s[:r]) @ U[:, :r].T
    return kind_of.wrap(P)


def subspaces(A: Any, rcond: float | None = None) -> Subspaces:
    """Orthonormal bases of the four fundamental subspaces of A (m × n) from its full SVD ``A = U Σ Vᵀ``.

    Returns :class:`Subspaces` with ``row`` (n, r), ``null`` (n, n−r), ``col`` (m, r), ``left_null`` (m, m−r),
    ``rank`` r and the singular values. ``rank`` counts singular values above ``rcond · σ_max``.
    """
    kind_of = ArrayKind.of(A)
    A_np = _check_matrix(A)
    cutoff = _check_rcond(rcond, A_np.shape)
    U, s, Vt = _svd(A_np, full=True)
    r = int(np.sum(s > cutoff * s[0])) if s.size and s[0] > 0 else 0
    V = Vt.T
    w = kind_of.wrap
    return Subspaces(row=w(V[:, :r]), null=w(V[:, r:]), col=w(U[:, :r]), left_null=w(U[:, r:]), rank=r,
                     singular_values=w(s))


def decompose(A: Any, x: Any, rcond: float | None = None) -> tuple[Any, Any]:
    """Split any x (n,) or (n, k) into its row-space part (unique) and null-space part (free) for A (m × n).

    Returns ``(row_part, null_part)`` with ``row_part + null_part = x``.
    """
    kind_of = ArrayKind.of(A, x)
    A_np = _check_matrix(A)
    x_np = as_numpy(x, "x", ndim=(1, 2))
    if x_np.shape[0] != A_np.shape[1]:
        raise ValidationError("x", f"{A_np.shape[1]} rows (as many as A has columns)", f"shape {x_np.shape}")
    V_r = _row_basis(A_np, rcond)  # (n, r)
    row = V_r @ (V_r.T @ x_np)
    return kind_of.wrap(row), kind_of.wrap(x_np - row)


def _row_basis(A: np.ndarray, rcond: float | None) -> np.ndarray:
    """V_r (n, r): an orthonormal basis of the row space, from the thin SVD (no n×n factor)."""
    cutoff = _check_rcond(rcond, A.shape)
    _, s, Vt = _svd(A, full=False)
    r = int(np.sum(s > cutoff * s[0])) if s.size and s[0] > 0 else 0
    return Vt[:r].T


def power_iteration(A: Any, *, seed: int = 0, tol: float = 1e-10, max_iter: int = 1000, n: int | None = None,
                    v0: Any = None, warn_unconverged: bool = True) -> PowerResult:
    """Dominant eigenpair by power iteration ``v ← Av / ‖Av‖``.

    Parameters
    ----------
    A : a square array (n, n), a ``LinearOperator``, or a callable ``matvec(v) -> Av`` (then give ``n`` or ``v0``).
    n : int, the dimension of the vectors, needed when A is a callable and ``v0`` is not given (a matrix
        or an operator has its shape).
    v0 : array (n,), optional - the start vector (default: a standard normal vector drawn with ``seed``).
    seed : seed of the random start vector (ignored when ``v0`` is given).
    tol : stop when ``‖Av − λv‖ ≤ tol · |λ|`` with λ the Rayleigh quotient ``vᵀAv``.
    max_iter : iteration limit; a :class:`~kernelscope.KernelscopeWarning` says when it was reached (unless
        ``warn_unconverged=False``: a caller that wants a rough estimate within a fixed budget, such as the
        spectral-radius estimates of :mod:`kernelscope._rkc`, reads ``converged`` instead).

    Returns :class:`PowerResult` (eigenvalue, unit eigenvector with its largest entry positive, iterations,
    converged, residual). Converges at rate |λ₂/λ₁|; for a dominant pair ±λ it cannot converge (and says so).
    """
    tol = check_positive(tol, "tol")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    kind_of = ArrayKind.of(A, v0)
    if callable(A) and not hasattr(A, "shape"):
        matvec: Callable[[np.ndarray], np.ndarray] = lambda v: np.asarray(_to_np(A(v)), dtype=np.float64)
        if v0 is None and n is None:
            raise ValidationError("n", "the dimension of the vectors A acts on (or v0) when A is a callable",
                                  "neither", "Give n=<length of v> (or a start vector v0=...).")
    else:
        if _is_operator(A):
            op = A
            dim = A.shape
        else:
            op = _check_matrix(A)
            dim = op.shape
        if dim[0] != dim[1]:
            raise ValidationError("A", "a square matrix (n, n)", f"shape {tuple(dim)}")
        matvec = lambda v: np.asarray(op @ v, dtype=np.float64)
        n = dim[0]
    if v0 is not None:
        v = as_numpy(v0, "v0", ndim=1).copy()
        if n is not None and v.shape[0] != n:
            raise ValidationError("v0", f"a vector of length {n}", f"shape {v.shape}")
    else:
        n = check_int(n, "n", minimum=1)
        v = np.random.default_rng(check_int(seed, "seed", minimum=0)).standard_normal(n)
    nv = sla.norm(v)
    if nv == 0:
        raise ValidationError("v0", "a non-zero start vector", "the zero vector")
    v /= nv
    lam, res, converged = 0.0, np.inf, False
    history: list[float] = []
    for _ in range(max_iter):
        Av = matvec(v)
        if not np.isfinite(Av).all():
            raise ValidationError("A", "a matrix or operator whose products A @ v are finite",
                                  f"NaN or inf in A @ v at iteration {len(history) + 1}",
                                  "Check A for NaN/inf (or entries near the float64 limit, 1.8e308).")
        lam = float(v @ Av)
        history.append(lam)
        # BLAS nrm2 scales as it sums: ‖Av‖ of entries near 1e300 does not overflow to inf (and v to 0)
        res = float(sla.norm(Av - lam * v, check_finite=False))
        if res <= tol * max(abs(lam), np.finfo(np.float64).tiny):
            converged = True
            break
        nAv = sla.norm(Av, check_finite=False)
        if nAv == 0:  # v is in the null space: the dominant eigenvalue seen from here is 0
            converged = True
            lam, res = 0.0, 0.0
            break
        v = Av / nAv
    if not converged and warn_unconverged:
        warn(f"power_iteration did not converge in {max_iter} iterations (residual {res:.3e}); "
             "the two largest |eigenvalues| may be (nearly) equal.")
    k = int(np.argmax(np.abs(v)))
    if v[k] < 0:
        v = -v
    return PowerResult(eigenvalue=lam, eigenvector=kind_of.wrap(v), iterations=len(history), converged=converged,
                       residual=res, history=history)


# ---------------------------------------------------------------------------------------------------------------
# Other norms: ℓ1, ℓp, ℓ∞; the least-ℓ1 and least-ℓ∞ solutions; the lasso and ridge paths (applied-math deck)
# ---------------------------------------------------------------------------------------------------------------

__all__ += ["norm", "unit_sphere", "MinNormResult", "min_norm", "RegularizationPath", "ridge_path", "lasso_path"]


def _check_p(p: Any) -> float:
    if isinstance(p, str) and p.lower() in ("inf", "∞"):
        return np.inf
    if isinstance(p, (int, float, np.number)) and not isinstance(p, bool) and p == np.inf:
        return np.inf
    v = check_positive(p, "p")
    if v < 1:
        raise ValidationError("p", "p >= 1 or inf (below 1 it is not a norm: the unit ball is not convex)", repr(p))
    return v


def norm(x: Any, p: float = 2) -> Any:
    """The ℓp norm ``‖x‖_p = (Σ_i |x_i|^p)^{1/p}`` for p ≥ 1, and ``‖x‖_∞ = max_i |x_i|`` (p = inf).

    x : (n,) one vector -> a float; (k, n) k vectors as rows -> (k,) norms (NumPy in -> NumPy out, tensor in ->
    tensor out). ℓ1 is the "taxicab" length, ℓ2 the Euclidean one, ℓ∞ the largest coordinate.
    """
    p = _check_p(p)
    kind_of = ArrayKind.of(x)
    a = np.abs(as_numpy(x, "x", ndim=(1, 2)))
    if p == np.inf:
        out = a.max(axis=-1)
    elif p == 1:
        out = a.sum(axis=-1)
    else:
        scale = a.max(axis=-1, keepdims=True)  # scaled so that |x_i|^p neither overflows nor underflows
        safe = np.where(scale > 0, scale, 1.0)
        out = (safe[..., 0] * ((a / safe) ** p).sum(axis=-1) ** (1.0 / p)) * (scale[..., 0] > 0)
    return float(out) if np.ndim(out) == 0 else kind_of.wrap(out)


def unit_sphere(p: float = 2, n_points: int = 401) -> np.ndarray:
    """Points of the ℓp unit circle ``{x ∈ R²: ‖x‖_p = 1}`` (the boundary of the unit ball), shape (n_points, 2).

    The ray of angle θ meets it at ``u/‖u‖_p`` with ``u = (cos θ, sin θ)``; θ runs once around (first point =
    last point). ℓ1 gives the diamond, ℓ2 the circle, ℓ∞ the square; the ball grows with p.
    """
    p = _check_p(p)
    n_points = check_int(n_points, "n_points", minimum=5)
    # the corners of the ℓ1 diamond and ℓ∞ square lie at multiples of 45°: include them exactly
    theta = np.linspace(0.0, 2 * np.pi, 8 * ((n_points - 1) // 8) + 1) if n_points > 8 else \
        np.linspace(0.0, 2 * np.pi, n_points)
    u = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return u / norm(u, p)[:, None]


@dataclass
class MinNormResult:
    """The answer of :func:`min_norm`: among the least-squares solutions of ``Ax = b``, the one of least ℓp norm.

    x : (n,) ; p : 1, 2 or inf ; norm : ‖x‖_p ; residual : (m,) ``b − Ax`` ; kind : as in :class:`SolveResult`
    ('unique', 'least_norm' or 'least_squares') ; method : 'svd' (p = 2) or 'linprog-highs' ; rank : of A ;
    unique : for p = 1 or inf, whether the LP's minimiser is the only one (checked on the optimal face), else None.
    """

    x: Any
    p: float
    norm: float
    residual: Any
    kind: str
    method: str
    rank: int
    unique: bool | None = None


def min_norm(A: Any, b: Any, p: float = 2, *, rcond: float | None = None, check_unique: bool = True,
             progress: bool = False) -> MinNormResult:
    """The least-ℓp-norm solution of ``Ax = b`` (p = 1, 2 or inf), among all least-squares solutions.

    - p = 2: ``x = A⁺b`` (:func:`solve`): it lies in the row space of A.
    - p = 1: the linear program ``min Σ_i (u_i + v_i)`` over ``u, v ≥ 0`` with ``x = u − v ∈ S``; its minimisers
      sit at vertices, so the answer is *sparse* (at most rank(A) non-zeros): for ``3x + 4y = 12`` it is (0, 3),
      where ℓ2 gives (36/25, 48/25). This is basis pursuit (Chen, Donoho & Saunders 1998), the noiseless lasso.
    - p = inf: ``min t`` subject to ``−t ≤ x_i ≤ t``, ``x ∈ S``: the entries spread out to equal magnitudes.

    ``S`` is the set of least-squares solutions ``{x : V_rᵀ x = V_rᵀ A⁺b}`` (``V_r`` (n, r) the row-space basis of
    the thin SVD), which is ``{Ax = b}`` when b is in the column space. Writing it with the orthonormal ``V_r`` keeps
    the LP well conditioned and free of redundant rows. The LPs are solved by HiGHS (``scipy.optimize.linprog``)
    with sparse constraint matrices (the bound constraints of ℓ∞ are 2n rows of two entries each).
    By Hölder's inequality, for one equation ``aᵀx = β`` the minimum is ``|β| / ‖a‖_q`` with ``1/p + 1/q = 1``.

    A : (m, n) dense ; b : (m,). ``check_unique`` (p = 1, inf): probe whether the minimiser is the only one (four
    more LPs of the same size; ``unique`` is None without it). ``progress``: print HiGHS's log and one line per LP
    (a 500×2000 ℓ1 problem takes tens of seconds). NumPy in -> NumPy out; tensor in -> tensor out.
    """
    import scipy.sparse as sparse

    p = _check_p(p)
    if p not in (1.0, 2.0, np.inf):
        raise ValidationError("p", "1, 2 or inf", repr(p), "Other p need a nonlinear solver (e.g. scipy.optimize).")
    kind_of = ArrayKind.of(A, b)
    A_np = _check_matrix(A)
    m, n = A_np.shape
    b_np = as_numpy(b, "b", ndim=1)
    if b_np.shape[0] != m:
        raise ValidationError("b", f"{m} values (as many as A has rows)", f"shape {b_np.shape}")
    base = _quiet_solve(A_np, b_np, rcond)
    if p == 2:
        x = base.x
        return MinNormResult(x=kind_of.wrap(x), p=2.0, norm=float(sla.norm(x)),
                             residual=kind_of.wrap(base.residual), kind=base.kind, method="svd", rank=int(base.rank))
    Vr = _row_basis(A_np, rcond)  # (n, r)
    r = Vr.shape[1]
    c_eq = Vr.T @ base.x  # (r,)
    # the equality rows are dense (r × n); in CSR with int32 indices 12 bytes an entry, HiGHS keeps a copy
    check_memory(3 * 12.0 * 2 * r * n, f"the ℓ{'1' if p == 1 else '∞'} linear program ({r} equations, {n} unknowns)",
                 "Use a smaller system, or p=2 (the SVD).")
    if p == 1:
        # variables z = (u, v) in R^{2n}, u, v ≥ 0, x = u − v: min Σ (u + v), V_rᵀ (u − v) = c. At an optimum
        # u_i v_i = 0, so z is x's positive and negative parts and the LP's minimiser is unique iff x is.
        c = np.ones(2 * n)
        A_ub = b_ub = None
        A_eq = sparse.csr_matrix(np.hstack([Vr.T, -Vr.T])) if r else None
        bounds = (0, None)
    else:
        # variables (x, t) in R^{n+1}: min t, x_i − t ≤ 0, −x_i − t ≤ 0, V_rᵀ x = c
        c = np.concatenate([np.zeros(n), [1.0]])
        eye = sparse.identity(n, format="csr")
        ones = sparse.csr_matrix(np.ones((n, 1)))
        A_ub = sparse.vstack([sparse.hstack([eye, -ones]), sparse.hstack([-eye, -ones])], format="csr")
        b_ub = np.zeros(2 * n)
        A_eq = sparse.csr_matrix(np.hstack([Vr.T, np.zeros((r, 1))])) if r else None
        bounds = [(None, None)] * n + [(0, None)]
    lp = _linprog(c, A_ub, b_ub, A_eq, c_eq if r else None, bounds, progress, "the minimiser")
    if lp.status != 0:  # pragma: no cover - the LP is always feasible and bounded
        raise RuntimeError(f"min_norm: linprog failed ({lp.message})")
    x = (lp.x[:n] - lp.x[n:] if p == 1 else lp.x[:n]) + 0.0  # no negative zeros in the answer
    unique = _lp_unique(c, A_ub, b_ub, A_eq, c_eq if r else None, bounds, lp, progress) if check_unique else None
    return MinNormResult(x=kind_of.wrap(x), p=float(p), norm=float(norm(x, p)), residual=kind_of.wrap(b_np - A_np @ x),
                         kind=base.kind, method="linprog-highs", rank=int(base.rank), unique=unique)


def _linprog(c, A_ub, b_ub, A_eq, b_eq, bounds, progress: bool, what: str):
    """One HiGHS solve; with ``progress`` a line before it and HiGHS's own log."""
    import sys
    import time

    from scipy.optimize import linprog

    t0 = time.perf_counter()
    if progress:
        print(f"min_norm: solving the LP for {what} ({c.shape[0]} variables) ...", file=sys.stderr, flush=True)
    lp = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs",
                 options={"disp": bool(progress)})
    if progress:
        print(f"min_norm: {what}: {lp.message.strip()} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr,
              flush=True)
    return lp


def _quiet_solve(A: np.ndarray, b: np.ndarray, rcond: float | None) -> SolveResult:
    import warnings

    from ._arrays import KernelscopeWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KernelscopeWarning)  # rank deficiency is expected here (n > m)
        return solve(A, b, rcond=rcond)


def _lp_unique(c, A_ub, b_ub, A_eq, b_eq, bounds, lp, progress: bool = False, tol: float = 1e-7) -> bool:
    """Is the LP's minimiser the only one? Probe the optimal face {c·z = c·z*} in a few random directions: if the
    farthest point from z* stays at z* (up to tol), the face is a single point (a probe, not a proof)."""
    import scipy.sparse as sparse

    row = sparse.csr_matrix(c[None, :])
    A_eq2 = sparse.vstack([A_eq, row], format="csr") if A_eq is not None else row
    b_eq2 = np.concatenate([b_eq, [lp.fun]]) if b_eq is not None else np.array([lp.fun])
    rng = np.random.default_rng(0)
    scale = max(1.0, float(np.abs(lp.x).max()))
    for i in range(4):
        d = rng.standard_normal(c.shape[0])
        probe = _linprog(-d, A_ub, b_ub, A_eq2, b_eq2, bounds, progress, f"uniqueness probe {i + 1}/4")
        if probe.status == 0 and float(np.abs(probe.x - lp.x).max()) > tol * scale:
            return False
    return True


@dataclass
class RegularizationPath:
    """Coefficients along a penalty path (from :func:`ridge_path` or :func:`lasso_path`).

    penalties : (L,) the λ (ridge) or α (lasso) values, in the order given ; coefs : (L, n_features)
    penalty : 'ridge' or 'lasso' ; iterations : coordinate-descent sweeps per α (lasso), else empty
    """

    penalties: np.ndarray
    coefs: np.ndarray
    penalty: str
    iterations: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    @property
    def nonzeros(self) -> np.ndarray:
        """(L,) how many coefficients are non-zero at each penalty (exact zeros: the lasso's sparsity)."""
        return (self.coefs != 0).sum(axis=1)


def _check_xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    X_np = as_numpy(X, "X", ndim=2, shape_hint="(n_samples, n_features)")
    y_np = as_numpy(y, "y", ndim=1)
    if y_np.shape[0] != X_np.shape[0]:
        raise ValidationError("y", f"{X_np.shape[0]} values (one per row of X)", f"shape {y_np.shape}")
    return X_np, y_np


def _check_penalties(values: Any, name: str) -> np.ndarray:
    v = as_numpy(values, name, ndim=1)
    if (v < 0).any():
        raise ValidationError(name, "non-negative penalties", f"{float(v.min())}")
    return v


def ridge_path(X: Any, y: Any, lambdas: Any) -> RegularizationPath:
    """Ridge coefficients ``w(λ) = argmin ‖Xw − y‖² + λ‖w‖² = (XᵀX + λI)⁻¹Xᵀy`` for each λ (no intercept).

    From one SVD ``X = UΣVᵀ``: ``w(λ) = V diag(σ/(σ² + λ)) Uᵀy``. Every coefficient shrinks smoothly towards 0 and
    none is ever exactly 0 (λ > 0); λ → 0 gives the least-norm least-squares ``X⁺y`` (THEORY.md §2).
    X : (n_samples, n_features) ; y : (n_samples,) ; lambdas : (L,) ≥ 0. Returns coefs (L, n_features).
    """
    X_np, y_np = _check_xy(X, y)
    lam = _check_penalties(lambdas, "lambdas")
    U, s, Vt = sla.svd(X_np, full_matrices=False)
    cutoff = default_rcond(X_np.shape) * (s[0] if s.size else 0.0)
    uty = U.T @ y_np
    with np.errstate(divide="ignore", invalid="ignore"):
        shrink = np.where(s[None, :] > cutoff, s[None, :] / (s[None, :] ** 2 + lam[:, None]), 0.0)  # (L, r)
    return RegularizationPath(penalties=lam, coefs=(shrink * uty[None, :]) @ Vt, penalty="ridge")


def lasso_path(X: Any, y: Any, alphas: Any, *, tol: float = 1e-10, max_iter: int = 10000) -> RegularizationPath:
    """Lasso coefficients ``w(α) = argmin (1/2N)‖Xw − y‖² + α‖w‖₁`` for each α (no intercept; scikit-learn's
    scaling of the objective), by scikit-learn's coordinate descent (``sklearn.linear_model.lasso_path``, warm
    starts along the path; Friedman, Hastie & Tibshirani 2010, "Regularization paths for GLMs via coordinate
    descent").

    One coordinate at a time the problem is a 1-D lasso solved exactly by soft thresholding::

        w_j ← S(c_j − Σ_{k≠j} G_jk w_k, α) / G_jj,   G = XᵀX/N, c = Xᵀy/N, S(z, a) = sign(z) max(|z| − a, 0).

    Coefficients hit exactly 0 one after another as α grows (α ≥ max_j |c_j| gives w = 0), unlike ridge.
    X : (n_samples, n_features) ; y : (n_samples,) ; alphas : (L,) ≥ 0 (solved from the largest down, reported
    in the given order) ; tol : scikit-learn's stopping tolerance (on the duality gap, relative to ‖y‖²/N) ;
    max_iter : sweeps per α. Returns coefs (L, n_features) and the sweeps per α; a
    :class:`~kernelscope.KernelscopeWarning` when an α did not converge.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import lasso_path as sk_lasso_path

    X_np, y_np = _check_xy(X, y)
    alphas = _check_penalties(alphas, "alphas")
    tol = check_positive(tol, "tol")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    order = np.argsort(-alphas, kind="stable")  # scikit-learn solves (and returns) α in decreasing order
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        _, coefs_dec, _, n_iter = sk_lasso_path(X_np, y_np, alphas=alphas[order], tol=tol, max_iter=max_iter,
                                                return_n_iter=True)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        warn(f"lasso_path: coordinate descent did not converge in {max_iter} sweeps for some alpha "
             f"(smallest alpha {float(alphas.min()):.3g}); raise max_iter or tol.")
    coefs = np.zeros((alphas.shape[0], X_np.shape[1]))
    sweeps = np.zeros(alphas.shape[0], dtype=int)
    coefs[order] = coefs_dec.T
    sweeps[order] = n_iter
    return RegularizationPath(penalties=alphas, coefs=coefs, penalty="lasso", iterations=sweeps)
