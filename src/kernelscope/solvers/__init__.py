"""Solvers of kernel ridge regression ``(K + λI) α = Y`` behind :class:`kernelscope.KernelRegressor`.

The registry is a plain dict, :data:`SOLVERS`, from a name to a *fit function*::

    fit(kernel, X, Y, ridge, **solver_options) -> SolverResult

- ``kernel``: a kernel object (``kernel(A, B) -> (len(A), len(B))`` and ``kernel.diag(A) -> (len(A),)``) over
  float64 torch tensors (see :mod:`kernelscope.kernels`);
- ``X``: float64 tensor (N, d); ``Y``: float64 tensor (N, O) (always 2-D here); ``ridge``: λ ≥ 0.

The caller (:class:`kernelscope.KernelRegressor`) has validated ``X``, ``Y`` and ``ridge``: a fit function does not
check them again, and computes kernel matrices through the unvalidated :meth:`kernelscope.kernels.Kernel.matrix`
(directly or in Dask tiles, :func:`kernelscope.scale.evaluate`). A fit function that takes a ``memory_budget``
keyword gets the budget (bytes) the estimator read once for the whole fit.

A :class:`SolverResult` holds the ``centers`` (M, d) the predictions are made from, the ``coef`` (M, O) so that
``f(x) = k(x, centers) @ coef``, an ``info`` dict (solver name, timings, iterations...) and, if the solver can
give it, ``variance(K_test_centers (T, M), k_test_diag (T,)) -> (T,)``, the Gaussian-process posterior variance
of the latent function. Keep ``variance`` picklable (a module-level function bound with ``functools.partial``).

Adding a solver::

    from kernelscope.solvers import SOLVERS, SolverResult, register

    @register("cg")
    def fit_cg(kernel, X, Y, ridge, *, tol=1e-8, max_iter=None) -> SolverResult: ...

and extend :func:`choose`, which picks a solver for ``solver='auto'``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import _arrays
from .._arrays import ValidationError, as_numpy, check_int, check_memory, format_bytes

__all__ = ["SolverResult", "SOLVERS", "register", "choose", "cholesky_bytes", "check_xy", "takes_memory_budget"]


@dataclass
class SolverResult:
    """What a fit function returns.

    Attributes
    ----------
    centers : tensor of shape (M, d) - the points predictions are made from (M = N for exact solvers).
    coef : tensor of shape (M, O) - ``f(x) = k(x, centers) @ coef``.
    info : dict - at least ``solver``; timings in seconds, iterations, the method actually used...
    variance : callable ``(K_test_centers (T, M), k_test_diag (T,)) -> (T,)`` giving the posterior variance of
        the latent function ``k(x, x) − k(x, X)(K + λI)⁻¹k(X, x)``, or None if the solver gives no std.
    """

    centers: torch.Tensor
    coef: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)
    variance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


FitFunction = Callable[..., SolverResult]

#: name -> fit function ``fit(kernel, X, Y, ridge, **solver_options) -> SolverResult``.
SOLVERS: dict[str, FitFunction] = {}


def register(name: str) -> Callable[[FitFunction], FitFunction]:
    """Decorator adding a fit function to :data:`SOLVERS` under ``name``."""

    def deco(fn: FitFunction) -> FitFunction:
        SOLVERS[name] = fn
        return fn

    return deco


def takes_memory_budget(fit: FitFunction) -> bool:
    """Whether a fit function declares the ``memory_budget`` keyword (then the estimator passes its budget)."""
    return "memory_budget" in inspect.signature(fit).parameters


def check_xy(X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
    """The public solve functions' input check: X (N, d) and Y (N,) or (N, O) -> float64 ndarrays X, Y (N, O)."""
    Xn = as_numpy(X, "X", ndim=2, shape_hint="(n_samples, n_features)")
    Yn = as_numpy(Y, "Y", ndim=(1, 2))
    if Yn.shape[0] != Xn.shape[0]:
        raise ValidationError("Y", f"{Xn.shape[0]} rows (as many as X)", f"{Yn.shape[0]} rows")
    return Xn, (Yn[:, None] if Yn.ndim == 1 else Yn)


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A validated float64 tensor as an ndarray (shares memory on the CPU), for the NumPy/Dask solvers."""
    return t.detach().cpu().numpy()


def cholesky_bytes(n: int) -> float:
    """Memory of the dense path: the N×N float64 matrix, factorised in place, plus slack for one more copy."""
    return 2 * 8.0 * n * n


def choose(n: int, *, d: int | None = None, n_outputs: int = 1, budget: int | None = None) -> str:
    """The solver ``solver='auto'`` uses for N training points.

    ``'cholesky'`` when the dense N×N system fits the memory budget (:func:`cholesky_bytes`); otherwise a
    :class:`~kernelscope.MemoryBudgetError` naming the memory needed and the way out.
    """
    n = check_int(n, "n", minimum=1)
    budget = _arrays.memory_budget_bytes() if budget is None else int(budget)  # looked up now (patchable)
    need = cholesky_bytes(n)
    if need <= budget:
        return "cholesky"
    if "nystrom" in SOLVERS:  # the scale-out solvers (cg.py, nystrom.py) never form the N×N matrix
        from .cg import choose_scaleout

        return choose_scaleout(n, d=d, n_outputs=n_outputs, budget=budget, dense_bytes=need)
    others = sorted(set(SOLVERS) - {"cholesky"})
    way_out = (f"Use solver={others[0]!r}" + (f" (or one of {others[1:]})" if len(others) > 1 else "")
               if others else "Use fewer training points or a matrix-free solver")
    check_memory(need, f"the dense Cholesky solver for N={n} ({format_bytes(need)} for K and its factor)",
                 way_out + ".", budget=budget)
    return "cholesky"  # pragma: no cover - check_memory raised


# The registry fills as the solver modules are imported, in this order: 'cholesky' (dense) first, then the
# matrix-free solvers on Dask, 'nystrom' and 'cg'.
from . import dense  # noqa: E402,F401,I001
from . import cg, nystrom  # noqa: E402,F401
