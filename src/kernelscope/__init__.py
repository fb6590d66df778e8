"""kernelscope: from linear systems to neural networks, through kernels.

Public modules, in the order of the story (docs/THEORY.md): ``linsys`` (least norm, pseudoinverse, subspaces,
least-ℓp), ``optim`` (gradients, Hessians, descent), ``kernels`` and ``regression`` (kernel regression,
``KernelRegressor``, ``gradient_flow``), ``solvers`` and ``scale`` (iterative and Dask solves), ``nets``
(infinite-width NNGP/NTK and their finite networks), ``empirical`` (the NTK of any torch module), ``dynamics``
(the training loop, lazy training, the path kernel), ``stats``, ``data``, ``experiments``, ``plots`` and ``tour``
(the story as a report).
"""

from __future__ import annotations

from ._lazy import exports

__version__ = "0.1.0"

# Public submodules, imported on first use so that `import kernelscope` stays light.
_SUBMODULES = ("linsys", "data", "tour", "plots", "kernels", "nets", "regression", "solvers", "empirical",
               "dynamics", "experiments", "scale", "stats", "optim", "predict", "duals")
# Public names re-exported at the top level: name -> module that defines it.
_NAMES = {
    "KernelRegressor": "regression",
    "KernelClassifier": "regression",
    "gradient_flow": "predict",
    "ValidationError": "_arrays",
    "MemoryBudgetError": "_arrays",
    "KernelscopeWarning": "_arrays",
    "DivergenceWarning": "_arrays",
}

__all__ = sorted([*_SUBMODULES, *_NAMES, "__version__"])
__getattr__, _ = exports(__name__, _NAMES, _SUBMODULES)


def __dir__():
    return __all__
