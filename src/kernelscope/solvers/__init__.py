"""Solvers of kernel ridge regression ``(K + λI) α = Y`` behind :class:`kernelscope.KernelRegressor`.

The registry is a plain dict, :data:`SOLVERS`, from a name to a *fit function*::

    fit(kernel, X, Y, ridge, **solver_options) -> SolverResult

- ``kernel``: a :class:`kernelscope.kernels.Kernel` (or any callable ``kernel(A, B) -> (len(A), len(B))``) over
  float64 torch tensors;
- ``X``: float64 tensor (N, d); ``Y``: float64 tensor (N, O) (always 2-D here); ``ridge``: λ ≥ 0.

The caller (:class:`kernelscope.KernelRegressor`) has validated ``X``, ``Y`` and ``ridge``: a fit function does not
check them again, and evaluates a Kernel through its unvalidated entry points: ``kernel.matrix(A, B, out=,
budget=)`` for kernel matrices (directly or in Dask tiles, :func:`kernelscope.scale.evaluate`) and
``kernel.formula(A, A, paired=True)`` for the diagonal ``k(a_i, a_i)`` (see :class:`~kernelscope.kernels.Kernel`).
A fit function that takes a ``memory_budget`` keyword gets the budget (bytes) the estimator read once for the
whole fit.

A :class:`SolverResult` holds the ``centers`` (M, d) the predictions are made from, the ``coef`` (M, O) so that
``f(x) = k(x, centers) @ coef``, an ``info`` dict (solver name, timings, iterations...) and, if the solver can
give it, ``variance(K_test_centers (T, M), k_test_diag (T,)) -> (T,)``, the Gaussian-process posterior variance
of the latent function. Keep ``variance`` picklable (a module-level function bound with ``functools.partial``).

Adding a solver::

    from kernelscope.solvers import SOLVERS, SolverResult, register

    @register("cg")
    def fit_cg(kernel, X, Y, ridge, *, tol=1e-8, max_iter=None) -> SolverResult: ...

and extend :func:`choose`, which picks a solver for ``solver='auto'``. The registry and the shared types live in
:mod:`kernelscope.solvers.base` (what the solver modules import); this package imports the solvers, so that
``SOLVERS`` is full once ``kernelscope.solvers`` is imported.
"""

from __future__ import annotations

from .. import _arrays
from .._arrays import check_int, check_memory, format_bytes
from .base import SOLVERS, FitFunction, SolverResult, check_xy, numpy_view, register, takes_memory_budget

# The registry fills as the solver modules are imported, in this order: 'cholesky' (dense) first, then the
# matrix-free solvers on Dask, 'nystrom' and 'cg'.
# isort: off
from . import dense  # noqa: F401
from . import cg, nystrom  # noqa: F401
# isort: on

__all__ = ["SolverResult", "FitFunction", "SOLVERS", "register", "choose", "cholesky_bytes", "pinv_bytes",
           "check_xy", "takes_memory_budget", "numpy_view"]


cholesky_bytes, pinv_bytes = dense.cholesky_bytes, dense.pinv_bytes


def choose(n: int, *, d: int | None = None, n_outputs: int = 1, budget: int | None = None,
           ridge: float | None = None) -> str:
    """The solver ``solver='auto'`` uses for N training points.

    ``'cholesky'`` when the dense N×N system fits the memory budget (:func:`cholesky_bytes`; with ``ridge=0`` the
    pseudoinverse's :func:`pinv_bytes`); otherwise a scale-out solver, or a :class:`~kernelscope.MemoryBudgetError`
    naming the memory needed and the way out.
    """
    n = check_int(n, "n", minimum=1)
    budget = _arrays.memory_budget_bytes() if budget is None else int(budget)  # looked up now (patchable)
    need = pinv_bytes(n) if ridge == 0 else cholesky_bytes(n)  # looked up here: patchable, as the budget
    if need <= budget:
        return "cholesky"
    if "nystrom" in SOLVERS:  # the scale-out solvers (cg.py, nystrom.py) never form the N×N matrix
        return cg.choose_scaleout(n, d=d, n_outputs=n_outputs, budget=budget, dense_bytes=need)
    others = sorted(set(SOLVERS) - {"cholesky"})
    way_out = (f"Use solver={others[0]!r}" + (f" (or one of {others[1:]})" if len(others) > 1 else "")
               if others else "Use fewer training points or a matrix-free solver")
    check_memory(need, f"the dense Cholesky solver for N={n} ({format_bytes(need)} for K and its factor)",
                 way_out + ".", budget=budget)
    return "cholesky"  # pragma: no cover - check_memory raised
