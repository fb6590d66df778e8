"""Chapter 6's experiments: a model trained by gradient descent as a kernel machine (THEORY.md §6, Domingos 2020).

- :func:`pathkernel_1d_problem` - the 1-D regression set and its test grid;
- :func:`step_size_study` - the left-endpoint (Domingos) sum against exact quadrature as the step size shrinks;
- :func:`kernel_distance` - how far the path kernel is from ``T·Θ₀`` and ``T·Θ_T`` (and from Θ₀, Θ_T up to scale);
- Domingos' critiques made measurable: :func:`coefficient_spread` (the "coefficients" a_i depend on x) and
  :func:`path_dependence` (two data orders reach similar functions through different kernels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .. import data
from ..dynamics import path_kernel
from ..stats import fit_slope

__all__ = ["PK_1D", "pathkernel_1d_problem", "StepSizeStudy", "step_size_study", "KernelDistance",
           "kernel_distance", "coefficient_spread", "PathDependence", "path_dependence", "DomingosCritiques",
           "domingos_critiques"]

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
    shape_vs_theta0: float = float("nan")  # min_c ‖K − c·Θ₀‖_F / ‖K‖_F: the distance up to scale (any optimiser)
    shape_vs_thetaT: float = float("nan")  # the same for Θ_T


def _shape_distance(K: np.ndarray, Theta: np.ndarray) -> float:
    """``min_c ‖K − cΘ‖_F / ‖K‖_F = √(1 − cos²(K, Θ))``: how far K is from any multiple of Θ (Adam's path kernel is
    preconditioned, so only its shape can be compared with a tangent kernel)."""
    k, t = K.ravel(), Theta.ravel()
    cos = float(k @ t / (np.linalg.norm(k) * np.linalg.norm(t)))
    return float(np.sqrt(max(0.0, 1.0 - cos * cos)))


def kernel_distance(res) -> KernelDistance:
    """Relative Frobenius distances of the path kernel of ``res`` (a ``PathKernelResult``) from ``T·Θ₀`` and
    ``T·Θ_T``, and from Θ₀ and Θ_T up to a scale (:func:`_shape_distance`)."""
    K, K0, KT = (np.asarray(a, float) for a in (res.K, res.ntk0, res.ntkT))
    nK = np.linalg.norm(K)
    return KernelDistance(float(np.linalg.norm(K - res.T * K0) / nK), float(np.linalg.norm(K - res.T * KT) / nK),
                          res.T, _shape_distance(K, K0), _shape_distance(K, KT))


def coefficient_spread(res) -> float:
    """How much Domingos' "coefficients" depend on the test point: for each training point i (and output o),
    ``std_x a_i(x) / rms_x a_i(x)`` over the test points x; the median over (i, o). 0 would be a true kernel machine
    (one a_i per training point); 1 means a_i varies across x as much as it is large."""
    a = np.asarray(res.a, float)
    a = a.reshape(a.shape[0], a.shape[1], -1)  # (M, N, O)
    rms = np.sqrt((a ** 2).mean(0))
    ok = rms > 0
    return float(np.median(a.std(0)[ok] / rms[ok]))


@dataclass
class PathDependence:
    """Two trainings from the same initial weights that differ only in the data order (mini-batch seeds)."""

    seeds: tuple[int, int]
    function_distance: float  # ‖f¹_T − f²_T‖ / ‖f¹_T − f₀‖ on the test points (relative to what was learned)
    kernel_distance: float  # ‖K¹ − K²‖_F / ‖K¹‖_F
    contribution_distance: float  # ‖C¹ − C²‖_F / ‖C¹‖_F: which training points explain the predictions
    rel_errors: tuple[float, float]  # each kernel machine against its trained model


def path_dependence(model, X, y, X_test, *, seeds: tuple[int, int] = (1, 2), **kwargs) -> PathDependence:
    """Train ``model`` twice with :func:`kernelscope.dynamics.path_kernel` (``kwargs``: lr, steps, optimizer,
    batch_size, ...) with mini-batch orders ``seeds``, and compare the functions with their path kernels."""
    r1, r2 = (path_kernel(model, X, y, X_test, seed=s, **kwargs) for s in seeds)
    f1, f2, b = (np.asarray(v, float) for v in (r1.f_model, r2.f_model, r1.b))
    K1, K2 = np.asarray(r1.K, float), np.asarray(r2.K, float)
    C1, C2 = np.asarray(r1.contributions, float), np.asarray(r2.contributions, float)
    return PathDependence(tuple(seeds), float(np.linalg.norm(f1 - f2) / np.linalg.norm(f1 - b)),
                          float(np.linalg.norm(K1 - K2) / np.linalg.norm(K1)),
                          float(np.linalg.norm(C1 - C2) / np.linalg.norm(C1)), (r1.rel_error, r2.rel_error))


@dataclass
class DomingosCritiques:
    """Chapter 6's section on the Adam-trained spiral net and Domingos' critiques (plain numbers and lists)."""

    spiral_accuracy: float
    spiral_rel_error: float
    spiral_spread: float  # coefficient_spread of the spiral net's kernel machine
    spiral_distance: dict  # asdict(kernel_distance(...)) of the spiral net
    spiral_layers: dict  # layer_shares of the spiral net
    spiral_decay_share: float  # ‖decay‖ / ‖f_T − f₀‖ on the test points
    explained: list  # per explained test point: index, predicted, top training indices, their contributions
    spread_1d: dict  # optimiser -> coefficient_spread on the 1-D problem
    distance_1d: dict  # optimiser -> asdict(kernel_distance)
    path: dict  # optimiser -> asdict(path_dependence)


def domingos_critiques(seed: int = 0, quick: bool = True, track=None):
    """The spiral net of chapter 7 trained by Adam as a kernel machine (:func:`spiral_kernel_machine`), and the
    critiques measured on it and on the 1-D problem (SGD and Adam, two data orders). Returns
    (DomingosCritiques, the SpiralKernelMachine, {optimiser: 1-D PathKernelResult}) - the last two for figures."""
    from ..dynamics import layer_shares, mlp, top_contributions
    from .spirals import spiral_kernel_machine

    sk = spiral_kernel_machine(n_per_class=30 if quick else 40, width=32 if quick else 100,
                               epochs=150 if quick else 300, seed=seed, track=track)
    r = sk.result
    pred = np.argmax(np.asarray(r.f_model), 1)
    explained = []
    for j in range(0, len(pred), max(1, len(pred) // 4))[:4]:
        top, c = top_contributions(r, j, 12)
        explained.append(dict(index=j, predicted=int(pred[j]), top=top.tolist(), contributions=c.tolist(),
                              same_class=float(np.mean(sk.y_train[top] == pred[j]))))
    learned = np.asarray(r.f_model) - np.asarray(r.b)
    X, y, Xs = pathkernel_1d_problem(seed)
    Xs = Xs[::2]
    net = mlp(1, 64, seed=seed, **PK_1D)
    runs, spread, dist, path = {}, {}, {}, {}
    for opt, lr in (("sgd", 0.05), ("adam", 0.01)):
        steps = 100 if quick else 200
        runs[opt] = path_kernel(net, X, y, Xs, lr=lr, steps=steps, optimizer=opt)
        spread[opt] = coefficient_spread(runs[opt])
        dist[opt] = asdict(kernel_distance(runs[opt]))
        path[opt] = asdict(path_dependence(net, X, y, Xs, lr=lr, steps=steps, optimizer=opt, batch_size=5))
    crit = DomingosCritiques(sk.test_accuracy, r.rel_error, coefficient_spread(r), asdict(kernel_distance(r)),
                             layer_shares(r), float(np.linalg.norm(r.decay) / np.linalg.norm(learned)), explained,
                             spread, dist, path)
    return crit, sk, runs
