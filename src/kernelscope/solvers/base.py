"""What every solver shares: the registry :data:`SOLVERS`, :func:`register`, the :class:`SolverResult` a fit
function returns, and the input helpers of the public solve functions.

The solver modules (:mod:`~kernelscope.solvers.dense`, :mod:`~kernelscope.solvers.cg`,
:mod:`~kernelscope.solvers.nystrom`) import this module and register themselves; :mod:`kernelscope.solvers`
imports them and re-exports these names (read its docstring for the protocol). Nothing here imports a solver, so
the package has no import cycle.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._arrays import ValidationError, as_numpy

__all__ = ["SolverResult", "FitFunction", "SOLVERS", "register", "takes_memory_budget", "check_xy", "numpy_view"]


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


#: the type of a solver: ``fit(kernel, X, Y, ridge, **solver_options) -> SolverResult``
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


def numpy_view(t: torch.Tensor) -> np.ndarray:
    """A validated float64 tensor as an ndarray (shares memory on the CPU), for the NumPy/Dask solvers."""
    return t.detach().cpu().numpy()
