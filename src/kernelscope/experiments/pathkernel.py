"""Chapter 6's experiments: a model trained by gradient descent as a kernel machine (THEORY.md §6, Domingos 2020).

- :func:`pathkernel_1d_problem` - the 1-D regression set and its test grid;
- :func:`step_size_study` - the left-endpoint (Domingos) sum against exact quadrature as the step size shrinks;
- :func:`kernel_distance` - how far the path kernel is from ``T·Θ₀`` and ``T·Θ_T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import data
from ..dynamics import path_kernel
from ..stats import fit_slope

__all__ = ["PK_1D", "pathkernel_1d_problem", "StepSizeStudy", "step_size_study", "KernelDistance",
           "kernel_distance"]

PK_1D = dict(depth=2, activation="tanh", w_std=1.0, b_std=0.5)  # the two-layer tanh nets of the chapter


def pathkernel_1d_problem(seed: int = 0):
    """20 points of the 1-D set: X (20, 1), y (20,), and a test grid X_test (60, 1)."""
    X, y = data.regression_1d(20, seed=seed)
    return X, y, np.linspace(-1.2, 1.2, 60)[:, None]


@dataclass
class StepSizeStudy:
    T: float  # training time η·steps, the same for every row
    steps: list[int]
    lr: list[float]  # η = T / steps
    left_endpoint: list[float]  # relative error of Domingos' left-endpoint sum
    exact: list[float]  # relative error with Gauss–Legendre quadrature per step
    slope: float  # log-log slope of left_endpoint against lr (theory: 1 as η → 0)
    slope_smallest: float  # the same between the two smallest steps


def step_size_study(model, X, y, X_test, *, T: float, steps: list[int], nodes: int = 4) -> StepSizeStudy:
    """Relative error of the kernel machine at fixed training time ``T`` for ``η = T/steps``: left-endpoint sum and
    exact quadrature, with the fitted log-log slope of the left-endpoint error (theory: 1)."""
    lrs, left, exact = [], [], []
    for s in steps:
        lr = T / s
        lrs.append(lr)
        left.append(path_kernel(model, X, y, X_test, lr=lr, steps=s, exact=False).rel_error)
        exact.append(path_kernel(model, X, y, X_test, lr=lr, steps=s, exact=True, nodes=nodes).rel_error)
    return StepSizeStudy(T, list(steps), lrs, left, exact, fit_slope(lrs, left)[0], fit_slope(lrs[-2:], left[-2:])[0])


@dataclass
class KernelDistance:
    vs_T_theta0: float  # ‖K − T·Θ₀‖_F / ‖K‖_F
    vs_T_thetaT: float  # ‖K − T·Θ_T‖_F / ‖K‖_F
    T: float


def kernel_distance(res) -> KernelDistance:
    """Relative Frobenius distances of the path kernel of ``res`` (a ``PathKernelResult``, scalar output) from
    ``T·Θ₀`` and ``T·Θ_T``."""
    K, K0, KT = (np.asarray(a, float) for a in (res.K, res.ntk0, res.ntkT))
    nK = np.linalg.norm(K)
    return KernelDistance(float(np.linalg.norm(K - res.T * K0) / nK), float(np.linalg.norm(K - res.T * KT) / nK),
                          res.T)
