"""Chapter 1's experiment: a linear system solved, with everything its picture needs (THEORY.md §1)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import linsys
from .._arrays import KernelscopeWarning

__all__ = ["LinearSystem", "solve_system"]


@dataclass
class LinearSystem:
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
