"""The Nyström kernel ridge estimator (Falkon's model) with M centres, never forming the N×N matrix (THEORY.md §8).

With centres ``C = {c_1..c_M} ⊂ X`` the predictor is restricted to ``f(x) = Σ_j β_j k(x, c_j)`` and the ridge
objective ``‖K_nm β − y‖² + λ βᵀ K_mm β`` (the exact problem ``‖Kα − y‖² + λ αᵀKα`` of ``α = (K + λI)⁻¹y``
restricted to the span of the centres) has the normal equations::

    (K_nmᵀ K_nm + λ K_mm) β = K_nmᵀ y.

Following Rudi, Carratino & Rosasco (2017, "FALKON: An Optimal Large Scale Kernel Method") they are solved in the
well-conditioned variables ``γ = Tβ`` with ``K_mm = TᵀT`` (Cholesky, T upper)::

    (T⁻ᵀ K_nmᵀ K_nm T⁻¹ + λI) γ = T⁻ᵀ K_nmᵀ y,

where ``K_nmᵀ K_nm`` and ``K_nmᵀ y`` are accumulated over row blocks on Dask (:func:`kernelscope.scale.gram_reduce`),
so the memory is O(M² + block·M) — never N×M, never N×N. ``M ≈ √N·log N`` centres reach the statistical accuracy
of the exact estimator when the ridge is of the order the learning theory prescribes, λ ≈ √N in these units
(Rudi, Camoriano & Rosasco 2015, "Less is more: Nyström computational regularization"; Meanti et al. 2020,
"Kernel methods through the roof"). In general M must exceed the effective dimension
``d_eff(λ) = tr(K (K + λI)⁻¹)``: a small ridge (little noise) or a kernel with a flat spectrum (the ReLU NTK in
high dimension) needs M close to N, and there the exact CG solver is the right tool. Every fit reports the effective
dimension of its own model (``info['effective_dimension']``, ``info['saturation']`` = d_eff/M) and warns when
the centres are saturated (d_eff > M/2).

Centres are sampled uniformly, or by approximate ridge leverage scores (Alaoui & Mahoney 2015; Rudi et al. 2018)
``ℓ_i(λ) = [K (K + λI)⁻¹]_ii``, estimated from a uniform Nyström sketch ``K ≈ B Bᵀ`` as
``ℓ̃_i = (k(x_i, x_i) − b_iᵀ S (S + λI)⁻¹ b_i) / λ`` with ``S = BᵀB`` (see :func:`leverage_scores`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import torch

from .. import _arrays, scale
from .._arrays import (
    MemoryBudgetError,
    ValidationError,
    as_generator,
    check_choice,
    check_int,
    check_memory,
    check_nonnegative,
    warn,
)
from .base import SolverResult, check_xy, numpy_view, register

__all__ = ["default_n_centers", "check_n_centers", "sample_centers", "leverage_scores", "nystrom_solve",
           "NystromSolution", "fit", "effective_dimension_from_factor"]

Kernel = Callable[[Any, Any], Any]


def default_n_centers(n: int) -> int:
    """``M = ⌈√N · log N⌉`` (at least 100, at most N): the number of centres of Rudi et al. (2015)'s rate.

    N = 20 000 gives 1 401; N = 200 000 gives 5 459.
    """
    n = int(n)
    if n <= 100:
        return n
    return int(min(n, max(100, math.ceil(math.sqrt(n) * math.log(n)))))


def check_n_centers(n_centers: Any, n: int) -> int:
    """M from ``n_centers``: the default :func:`default_n_centers` for None, else an integer 1 ≤ M ≤ N."""
    if n_centers is None:
        return default_n_centers(n)
    m = check_int(n_centers, "n_centers", minimum=1)
    if m > n:
        raise ValidationError("n_centers", f"at most the number of training points N = {n}", f"M = {m}",
                              "Use fewer centres (the default is ceil(sqrt(N) log N)), or solver='cholesky'.")
    return m


def cholesky_jitter(K: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Lower Cholesky factor L of ``K + εI`` with the smallest ε in ``1e-10·mean(diag), ×10, ...`` that works.

    A small jitter is always added: kernel matrices of close centres are numerically singular, and an exact
    factor of an ill-conditioned K_mm would amplify rounding errors by its condition number.
    """
    scale_ = float(K.diagonal().abs().mean()) or 1.0
    eye = torch.eye(K.shape[0], dtype=K.dtype)
    for eps in [scale_ * 10.0 ** p for p in range(-10, -1)]:
        L, info = torch.linalg.cholesky_ex(K + eps * eye)
        if int(info) == 0:
            return L, eps
    raise np.linalg.LinAlgError("the centres' kernel matrix K_mm is not positive definite even with jitter "
                                f"{scale_ * 1e-2:.1e}; is the kernel PSD?")


def _diag(kernel: Kernel, X: torch.Tensor) -> torch.Tensor:
    """``k(x_i, x_i)`` (N,) for the validated rows X (N, d)."""
    if callable(getattr(kernel, "formula", None)):  # the Kernel protocol: its diagonal, unvalidated
        return kernel.formula(X, X, paired=True)  # unvalidated, as the rest of the fit
    d = getattr(kernel, "diag", None)
    if callable(d):
        try:
            out = d(X)
            out = torch.as_tensor(out.detach().cpu() if isinstance(out, torch.Tensor) else np.asarray(out),
                                  dtype=torch.float64)
            if out.shape == (X.shape[0],):
                return out
        except Exception:  # noqa: BLE001 - an adapter without a usable diag: compute it from tiles
            pass
    return torch.stack([scale.evaluate(kernel, X[i:i + 1], X[i:i + 1])[0, 0] for i in range(X.shape[0])]) \
        if X.shape[0] <= 64 else torch.cat([scale.evaluate(kernel, X[s:s + 64], X[s:s + 64]).diagonal()
                                            for s in range(0, X.shape[0], 64)])


def _score_panel(kernel: Kernel, X: np.ndarray, J: np.ndarray, Linv: np.ndarray, W: np.ndarray, lam: float,
                 start: int, stop: int, block: int) -> np.ndarray:
    """Approximate ridge leverage scores of rows start:stop (see :func:`leverage_scores`). Shape (stop-start,)."""
    Jt, Linv_t, W_t = torch.as_tensor(J), torch.as_tensor(Linv), torch.as_tensor(W)
    out = []
    for s in range(start, stop, block):
        Xb = torch.as_tensor(X[s:min(s + block, stop)])
        Bb = scale.evaluate(kernel, Xb, Jt) @ Linv_t.T  # (b, m0): rows b_i of the sketch K ≈ B Bᵀ
        kii = _diag(kernel, Xb)
        out.append((kii - ((Bb @ W_t) * Bb).sum(1)) / lam)
    return torch.cat(out).numpy()


def leverage_scores(kernel: Kernel, X: np.ndarray, ridge: float, *, n_sketch: int, seed: Any = 0,
                    block: int = 1024) -> np.ndarray:
    """Approximate ridge leverage scores ``ℓ_i(λ) = [K (K + λI)⁻¹]_ii`` of every row of X. Shape (N,).

    With a uniform sketch J of ``n_sketch`` points, ``K ≈ B Bᵀ``, ``B = K_nJ L⁻ᵀ`` (``K_JJ = L Lᵀ``) and
    ``K (K+λI)⁻¹ = (K − K (K+λI)⁻¹ K)/λ``, the second term taken from the sketch:
    ``ℓ̃_i = (k_ii − b_iᵀ S (S + λI)⁻¹ b_i)/λ`` with ``S = BᵀB``. Memory O(block·n_sketch + n_sketch²).
    """
    n = X.shape[0]
    g = as_generator(seed)
    J = X[torch.randperm(n, generator=g)[:n_sketch].numpy()]
    L, _ = cholesky_jitter(scale.evaluate(kernel, J, J))
    Linv = torch.linalg.solve_triangular(L, torch.eye(L.shape[0], dtype=torch.float64), upper=False)
    GJ, _ = scale.gram_reduce(kernel, X, np.zeros((n, 1)), J, block=block)  # K_nJᵀ K_nJ (m0, m0)
    S = Linv @ torch.as_tensor(GJ) @ Linv.T  # BᵀB
    S = (S + S.T) / 2
    W = torch.linalg.solve(S + ridge * torch.eye(S.shape[0], dtype=torch.float64), S)  # (S+λI)⁻¹S = S(S+λI)⁻¹
    W = (W + W.T) / 2
    n_tasks = max(1, min(math.ceil(n / block), 2 * scale.n_workers()))
    edges = np.linspace(0, n, n_tasks + 1).astype(int)
    parts = [dask.delayed(_score_panel, pure=False)(kernel, X, J, Linv.numpy(), W.numpy(), ridge, int(s), int(e),
                                                     block) for s, e in zip(edges[:-1], edges[1:]) if e > s]
    scores = np.concatenate(dask.compute(*parts))
    return np.clip(scores, 1e-12 * max(scores.max(), 1e-300), None)


def sample_centers(kernel: Kernel, X: np.ndarray, n_centers: int, *, sampling: str = "uniform",
                   ridge: float = 1e-3, seed: Any = 0, block: int = 1024) -> np.ndarray:
    """Indices (M,) of the centres: uniform without replacement, or proportional to approximate ridge
    leverage scores (sketch of ``max(100, M // 2)`` uniform points; ridge ``max(λ, 1e-6·mean k_ii)``)."""
    sampling = check_choice(sampling, "sampling", ("uniform", "leverage"))
    n = X.shape[0]
    g = as_generator(seed)
    if sampling == "uniform" or n_centers == n:
        return np.sort(torch.randperm(n, generator=g)[:n_centers].numpy())
    n_sketch = min(n, max(100, n_centers // 2))
    mean_diag = float(_diag(kernel, torch.as_tensor(X[: min(n, 256)])).mean())
    lam = max(ridge, 1e-6 * abs(mean_diag), 1e-300)
    scores = torch.as_tensor(leverage_scores(kernel, X, lam, n_sketch=n_sketch, seed=g, block=block))
    idx = torch.multinomial(scores / scores.sum(), n_centers, replacement=False, generator=g)
    return np.sort(idx.numpy())


SATURATION_WARN = 0.5  # warn when d_eff of the Nyström model exceeds this fraction of M (M < 2·d_eff)
# n_centers='auto' doubles M until d_eff ≤ M/4: measured within about 1% of exact kernel ridge (bench_scale.py and
# tests: 0.1–1.1% at saturations 0.14–0.29, 1–2.4% at 0.40–0.49)
SATURATION_AUTO = 0.25


def effective_dimension_from_factor(R: torch.Tensor, ridge: float) -> float:
    """``d_eff = tr(A (A + λI)⁻¹) = M − λ·tr((A + λI)⁻¹)`` from the Cholesky factor ``A + λI = R Rᵀ``.

    With ``A = T⁻ᵀ K_nmᵀ K_nm T⁻¹`` (whose eigenvalues are the non-zero eigenvalues of the Nyström approximation
    ``K̂ = K_nm K_mm⁻¹ K_mn``) this is the effective dimension of K̂ at the ridge λ: the number of directions the
    estimator fits rather than shrinks. Close to M, every direction the centres span is in use and the ones they
    miss most likely matter too (more centres would change the fit); well below M, the centres have room to
    spare. Cost: one triangular inverse, M³/3.
    """
    m = R.shape[0]
    Rinv = torch.linalg.solve_triangular(R, torch.eye(m, dtype=R.dtype, device=R.device), upper=False)
    return float(m - ridge * (Rinv * Rinv).sum())


def memory_needed(n: int, m: int, d: int, o: int, block: int, threads: int, n_panels: int) -> int:
    """Peak bytes of :func:`nystrom_solve`: partial Gram sums, tiles in flight, the M×M factors (with the
    triangular inverse of :func:`effective_dimension_from_factor`), inputs."""
    return int(8 * (m * m * (n_panels + 7) + threads * block * m + m * (d + 2 * o) + n * (d + o)))


@dataclass
class NystromSolution:
    """centers (M, d), coef (M, O) with ``f(x) = k(x, centers) @ coef``, indices (M,) of the centres in X."""

    centers: np.ndarray
    coef: np.ndarray
    indices: np.ndarray
    info: dict = field(default_factory=dict)


def nystrom_solve(kernel: Kernel, X: Any, Y: Any, ridge: float, *, n_centers: int | str | None = None,
                  sampling: str = "uniform", seed: Any = 0, block: int | None = None,
                  memory_budget: int | None = None) -> NystromSolution:
    """Fit the Nyström estimator ``(K_nmᵀ K_nm + λ K_mm) β = K_nmᵀ y`` (see the module docstring).

    Parameters
    ----------
    kernel : callable ``k(A, B) -> (len(A), len(B))``
    X : array-like of shape (n_samples, n_features)
    Y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    ridge : float >= 0
        λ of ``K + λI`` (the same convention as the exact solvers and scikit-learn's ``KernelRidge.alpha``).
        ``ridge = 0`` is answered by the pseudoinverse of the reduced system.
    n_centers : int or 'auto', optional
        M ≤ N; default :func:`default_n_centers` (⌈√N log N⌉). ``'auto'`` starts there and doubles M (the smaller
        set of centres inside the larger one for uniform sampling) until the model's saturation d_eff/M is at most
        ¼ (measured: within about 1% of exact kernel ridge), M reaches N, or the next M would not fit the memory
        budget; ``info['n_centers_path']`` lists the (M, saturation) pairs tried. The fits cost about 4/3 of the
        last one. Kernels with a flat spectrum at this ridge (isotropic data, the ReLU NTK) end at M = N, with a
        warning: use solver='cg' for them.
    sampling : {'uniform', 'leverage'}
    seed : int or torch.Generator
    block : int, optional
        Rows of K_nm per tile (default: tiles of at most 64 MB).
    memory_budget : int, optional
        Bytes this fit may take (default: half the available memory); refused up front beyond it.

    Returns
    -------
    NystromSolution
        ``coef`` of shape (M, n_outputs) (2-D even for 1-D Y), ``info`` with the solver's numbers.
    """
    Xn, Y2 = check_xy(X, Y)
    return _nystrom_solve(kernel, Xn, Y2, check_nonnegative(ridge, "ridge"), n_centers=n_centers,
                          sampling=sampling, seed=seed, block=block, memory_budget=memory_budget)


def _nystrom_solve(kernel: Kernel, Xn: np.ndarray, Y2: np.ndarray, ridge: float, *,
                   n_centers: int | str | None = None, sampling: str = "uniform", seed: Any = 0,
                   block: int | None = None, memory_budget: int | None = None) -> NystromSolution:
    """:func:`nystrom_solve` for validated Xn (N, d), Y2 (N, O) float64 ndarrays and ridge >= 0; checks the
    options. The memory budget is read here once (unless given) and passed down."""
    budget = _arrays.memory_budget_bytes() if memory_budget is None else int(memory_budget)  # once per fit
    if isinstance(n_centers, str):
        check_choice(n_centers, "n_centers", ("auto",))
        return _nystrom_auto(kernel, Xn, Y2, ridge, sampling=sampling, seed=seed, block=block,
                             memory_budget=budget)
    return _nystrom_fixed(kernel, Xn, Y2, ridge, check_n_centers(n_centers, Xn.shape[0]), sampling=sampling,
                          seed=seed, block=block, memory_budget=budget)


def _nystrom_auto(kernel: Kernel, Xn: np.ndarray, Y2: np.ndarray, ridge: float, **options: Any) -> NystromSolution:
    """``n_centers='auto'``: double M from the default until d_eff ≤ M/4 (or M = N, or the memory budget)."""
    n, path = Xn.shape[0], []
    m = default_n_centers(n)
    while True:
        sol = _nystrom_fixed(kernel, Xn, Y2, ridge, m, quiet=True, **options)
        path.append((m, sol.info["saturation"]))
        saturated = sol.info["saturation"] is not None and sol.info["saturation"] > SATURATION_AUTO
        if not saturated or m >= n:
            break
        m_next = min(n, 2 * m)
        try:  # the next fit must fit the memory budget; otherwise keep this one, and say why it stopped
            _plan(Xn.shape, Y2.shape[1], m_next, options["block"], options["memory_budget"])
        except MemoryBudgetError:
            _warn_saturated(sol.info, n, ridge, " (n_centers='auto' stopped there: the next M would not fit the "
                            "memory budget)")
            break
        m = m_next
    sol.info["n_centers_path"] = path
    if m >= n and len(path) > 1:
        warn(f"n_centers='auto' reached M = N = {n} (at M = {path[-2][0]} the effective dimension was "
             f"{path[-2][1]:.0%} of M: a flat spectrum at ridge {ridge:.3g}), so this is exact kernel ridge at "
             "Nyström's cost; solver='cg' or 'cholesky' gives that solution for less.")
    return sol


def _warn_saturated(info: dict, n: int, ridge: float, why: str = "") -> None:
    m, d_eff = info["n_centers"], info["effective_dimension"]
    if d_eff is not None and m < n and d_eff > SATURATION_WARN * m:
        warn(f"Nyström with M = {m} centres{why}: the kernel at ridge {ridge:.3g} has {d_eff:.0f} effective "
             f"dimensions within the centres' span ({d_eff / m:.0%} of M > {SATURATION_WARN:.0%}): the span is "
             "saturated and the predictions are likely far from exact kernel ridge regression. Use more centres "
             "(n_centers), solver='cg' (exact, matrix-free) or a larger ridge.")


def _plan(shape: tuple[int, int], n_outputs: int, m: int, block: int | None, memory_budget: int | None
          ) -> tuple[int, int, int]:
    """``(block, n_panels, bytes needed)`` of a fit with M = ``m`` centres; refused up front beyond the budget."""
    n, d = shape
    block = scale.default_block(n, max_bytes=min(64e6, 8.0 * 4096 * max(m, 1))) if block is None \
        else scale.check_block(block)
    threads = scale.n_workers()
    n_panels = max(1, min(math.ceil(n / block), max(2 * threads, math.ceil(n / (16 * block)))))
    need = memory_needed(n, m, d, n_outputs, block, threads, n_panels if scale.active_client() is None else 0)
    check_memory(need, f"the Nyström solver with M = {m} centres (N = {n})",
                 "Use fewer centres (n_centers) or a smaller block.", budget=memory_budget)
    return block, n_panels, need


def _nystrom_fixed(kernel: Kernel, Xn: np.ndarray, Y2: np.ndarray, ridge: float, m: int, *, sampling: str,
                   seed: Any, block: int | None, memory_budget: int | None, quiet: bool = False) -> NystromSolution:
    """The fit with M = ``m`` centres (``quiet``: no saturation warning)."""
    n = Xn.shape[0]
    block, n_panels, need = _plan(Xn.shape, Y2.shape[1], m, block, memory_budget)

    idx = sample_centers(kernel, Xn, m, sampling=sampling, ridge=max(ridge, 1e-300), seed=seed, block=block)
    C = Xn[idx]
    L, jitter = cholesky_jitter(scale.evaluate(kernel, C, C))  # K_mm + εI = L Lᵀ  (T = Lᵀ)
    G, z = scale.gram_reduce(kernel, Xn, Y2, C, block=block, n_panels=n_panels)  # (M, M), (M, O)
    G, z = torch.as_tensor(G), torch.as_tensor(z)
    LiG = torch.linalg.solve_triangular(L, G, upper=False)  # L⁻¹ G
    A = torch.linalg.solve_triangular(L, LiG.T, upper=False)  # L⁻¹ G L⁻ᵀ = T⁻ᵀ G T⁻¹
    A = (A + A.T) / 2
    rhs = torch.linalg.solve_triangular(L, z, upper=False)  # T⁻ᵀ z
    d_eff = None
    if ridge > 0:
        R, info = torch.linalg.cholesky_ex(A + ridge * torch.eye(m, dtype=torch.float64))
        gamma = torch.cholesky_solve(rhs, R) if int(info) == 0 else torch.linalg.lstsq(
            A + ridge * torch.eye(m, dtype=torch.float64), rhs).solution
        method = "cholesky" if int(info) == 0 else "lstsq"
        if int(info) == 0:
            d_eff = effective_dimension_from_factor(R, ridge)
    else:
        gamma = torch.linalg.pinv(A, hermitian=True) @ rhs
        method = "pinv"
    beta = torch.linalg.solve_triangular(L.T, gamma, upper=True)  # β = T⁻¹ γ, (M, O)
    info = {"solver": "nystrom", "n_centers": m, "sampling": sampling, "block": block, "jitter": jitter,
            "reduced_solve": method, "memory_bytes_estimate": need,
            "scheduler": "distributed" if scale.active_client() is not None else "threads",
            "effective_dimension": d_eff, "saturation": None if d_eff is None else d_eff / m}
    if not quiet:
        _warn_saturated(info, n, ridge)
    return NystromSolution(C, beta.numpy(), idx, info)


@register("nystrom")
def fit(kernel: Kernel, X: torch.Tensor, Y: torch.Tensor, ridge: float, *, memory_budget: int | None = None,
        **solver_options: Any) -> SolverResult:
    """Registry entry ``SOLVERS['nystrom']``: :func:`nystrom_solve` as a :class:`~kernelscope.solvers.SolverResult`.

    X (N, d), Y (N, O) float64 tensors and ridge >= 0, validated by the caller (not again here). Options:
    ``n_centers``, ``sampling``, ``seed``, ``block``, ``memory_budget`` (bytes, read once by the caller). The
    Nyström estimator gives no posterior standard deviation here (``variance`` is None; use solver='cholesky' for
    ``return_std``).
    """
    t0 = time.perf_counter()
    sol = _nystrom_solve(kernel, numpy_view(X), numpy_view(Y), ridge, memory_budget=memory_budget, **solver_options)
    sol.info["seconds_fit"] = time.perf_counter() - t0
    return SolverResult(centers=torch.as_tensor(sol.centers, device=X.device),
                        coef=torch.as_tensor(sol.coef, device=X.device), info=sol.info)
