"""Chapter 6's experiments: a model trained by gradient descent as a kernel machine (THEORY.md §6, Domingos 2020).

- :func:`pathkernel_1d_problem` - the 1-D regression set and its test grid;
- :func:`agreement_1d` - a two-layer tanh net on the 1-D set as a kernel machine, exact and left-endpoint;
- :func:`step_size_study` - the left-endpoint (Domingos) sum against exact quadrature as the step size shrinks;
- :func:`digits_explained` - a digits classifier (cross-entropy, mini-batches) explained by its training images;
- :func:`kernel_distance` - how far the path kernel is from ``T·Θ₀`` and ``T·Θ_T`` (and from Θ₀, Θ_T up to scale);
  :func:`narrow_vs_wide` measures it for a narrow and a wide net;
- Domingos' critiques made measurable: :func:`coefficient_spread` (the "coefficients" a_i depend on x) and
  :func:`path_dependence` (two data orders reach similar functions through different kernels), gathered by
  :func:`domingos_critiques`;
- :func:`kernel_machine` - a net trained on the 1-D set or on digits, as a kernel machine (``kernelscope
  pathkernel``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import data
from .._arrays import check_choice
from ..dynamics import PathKernelResult, layer_shares, mlp, path_kernel, stable_lr, top_contributions
from ..stats import fit_slope
from .spirals import SpiralKernelMachine, spiral_kernel_machine

__all__ = ["PK_1D", "pathkernel_1d_problem", "Agreement1D", "agreement_1d", "StepSizeStudy", "step_size_study",
           "step_size_study_1d", "DigitsExplained", "digits_explained", "KernelDistance", "kernel_distance",
           "NarrowVsWide", "narrow_vs_wide", "coefficient_spread", "PathDependence", "path_dependence",
           "Explanation", "DomingosCritiques", "DomingosStudy", "domingos_critiques", "KernelMachineRun",
           "kernel_machine"]

PK_1D = dict(depth=2, activation="tanh", w_std=1.0, b_std=0.5)  # the two-layer tanh nets of the chapter


def pathkernel_1d_problem(seed: int = 0):
    """20 points of the 1-D set: X (20, 1), y (20,), and a test grid X_test (60, 1)."""
    X, y = data.regression_1d(20, seed=seed)
    return X, y, np.linspace(-1.2, 1.2, 60)[:, None]


@dataclass
class Agreement1D:
    """A two-layer tanh net trained by full-batch gradient descent on the 1-D set, as a kernel machine twice."""

    lr: float  # η = stable_lr of the net (½ / λ_max(Θ₀))
    steps: int
    exact: PathKernelResult  # Gauss–Legendre quadrature of each step: identity exact to rounding
    left: PathKernelResult  # Domingos' left-endpoint sum: first order in η


def agreement_1d(seed: int = 0, steps: int = 60, *, width: int = 256, nodes: int = 4, track=None) -> Agreement1D:
    """Train ``mlp(1, width, **PK_1D)`` for ``steps`` steps of gradient descent at ``η = stable_lr`` on
    :func:`pathkernel_1d_problem` and write it as ``Σ a_i K(x, x_i) + b`` on the test grid, exactly (``nodes``
    Gauss–Legendre nodes per step) and with the left-endpoint sum (THEORY.md §6, Domingos 2020)."""
    X, y, Xs = pathkernel_1d_problem(seed)
    model = mlp(1, width, seed=seed, **PK_1D)
    lr = stable_lr(model, X)
    exact = path_kernel(model, X, y, Xs, lr=lr, steps=steps, exact=True, nodes=nodes, track=track)
    left = path_kernel(model, X, y, Xs, lr=lr, steps=steps, exact=False)
    return Agreement1D(lr, steps, exact, left)


@dataclass
class StepSizeStudy:
    """The kernel machine's error at fixed training time T as the step size shrinks (:func:`step_size_study`)."""

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


def step_size_study_1d(seed: int = 0, steps: list[int] = (20, 40, 80, 160), *, width: int = 64,
                       stable_steps: int = 40) -> StepSizeStudy:
    """:func:`step_size_study` of the chapter's two-layer tanh net (``PK_1D``, ``width``) on the 1-D set, at the
    training time ``T`` of ``stable_steps`` steps of :func:`~kernelscope.dynamics.stable_lr`."""
    X, y, Xs = pathkernel_1d_problem(seed)
    model = mlp(1, width, seed=seed, **PK_1D)
    return step_size_study(model, X, y, Xs, T=stable_lr(model, X) * stable_steps, steps=list(steps))


@dataclass
class DigitsExplained:
    """A digits classifier trained by mini-batch SGD on cross-entropy, written as a kernel machine."""

    result: PathKernelResult  # on the test images: f_model (n_test, classes), contributions (n_test, n_train, classes)
    X_train: np.ndarray  # (n_train, 64)
    X_test: np.ndarray  # (n_test, 64)
    labels_train: np.ndarray  # (n_train,)
    labels_test: np.ndarray  # (n_test,)
    batch_size: int
    accuracy: float  # test accuracy of the trained net
    share_same: float  # mean over test images: share of the k most influential training images in the predicted class
    k: int


def digits_explained(seed: int = 0, *, n_train: int = 120, n_test: int = 30, classes: int = 5, width: int = 128,
                     lr: float = 0.1, steps: int = 40, batch_size: int = 30, nodes: int = 3, k: int = 5,
                     track=None) -> DigitsExplained:
    """Train ``mlp(64, width, d_out=classes)`` (tanh) on ``n_train`` digits with cross-entropy, mini-batches of
    ``batch_size`` and exact per-step quadrature (``nodes``), and explain each of ``n_test`` test predictions by its
    ``k`` training images of largest ``|a_i K(x, x_i)|`` (:func:`kernelscope.dynamics.top_contributions`)."""
    Xd, labels = data.digits(n_train + n_test, seed=seed, classes=classes)
    Xtr, ltr, Xte, lte = Xd[:n_train], labels[:n_train], Xd[n_train:], labels[n_train:]
    clf = mlp(64, width, d_out=int(labels.max()) + 1, activation="tanh", b_std=0.1, seed=seed)
    res = path_kernel(clf, Xtr, ltr, Xte, lr=lr, steps=steps, loss="cross_entropy", batch_size=batch_size,
                      exact=True, nodes=nodes, seed=seed, track=track)
    pred = np.argmax(np.asarray(res.f_model), 1)
    same = [float(np.mean(ltr[top_contributions(res, j, k)[0]] == pred[j])) for j in range(len(pred))]
    return DigitsExplained(res, Xtr, Xte, ltr, lte, batch_size, float(np.mean(pred == lte)), float(np.mean(same)), k)


@dataclass
class KernelDistance:
    """How far a path kernel K is from the tangent kernels at the ends of its path (:func:`kernel_distance`): scaled
    by T, and up to scale."""

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


@dataclass
class NarrowVsWide:
    """Path kernels of nets of several widths on the 1-D set (left-endpoint sums), and their distance to the NTKs."""

    lr: float
    steps: int
    widths: list[int]
    results: dict[int, PathKernelResult]  # width -> path kernel on every third test point
    distances: dict[int, KernelDistance]  # width -> kernel_distance(results[width])


def narrow_vs_wide(seed: int = 0, *, lr: float, steps: int = 200, widths=(4, 1024)) -> NarrowVsWide:
    """For each width m, ``mlp(1, m, **PK_1D)`` trained for ``steps`` steps at ``lr`` on :func:`pathkernel_1d_problem`
    (every third test point); the path kernel by left-endpoint sums (distances of order 1e-2 need no 1e-15) and its
    :func:`kernel_distance` to ``T·Θ₀`` and ``T·Θ_T``: a wide (lazy) net stays at T·Θ₀, a narrow one does not."""
    X, y, Xs = pathkernel_1d_problem(seed)
    results, distances = {}, {}
    for m in widths:
        net = mlp(1, m, seed=seed, **PK_1D)
        results[m] = path_kernel(net, X, y, Xs[::3], lr=lr, steps=steps, exact=False)
        distances[m] = kernel_distance(results[m])
    return NarrowVsWide(lr, steps, list(widths), results, distances)


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
class Explanation:
    """One explained prediction: test point ``index``, its ``predicted`` class, the training points ``top`` with the
    largest contributions a_i K(x, x_i) to that class, the ``contributions`` and the share of them in that class."""

    index: int
    predicted: int
    top: list[int]
    contributions: list[float]
    same_class: float


@dataclass
class DomingosCritiques:
    """Chapter 6's section on the Adam-trained spiral net and Domingos' critiques (the numbers)."""

    spiral_accuracy: float
    spiral_rel_error: float
    spiral_spread: float  # coefficient_spread of the spiral net's kernel machine
    spiral_distance: KernelDistance  # of the spiral net's path kernel
    spiral_layers: dict  # layer_shares of the spiral net
    spiral_decay_share: float  # ‖decay‖ / ‖f_T − f₀‖ on the test points
    explained: list[Explanation]  # four test points of the spiral net
    spread_1d: dict[str, float]  # optimiser -> coefficient_spread on the 1-D problem
    distance_1d: dict[str, KernelDistance]  # optimiser -> kernel_distance
    path: dict[str, PathDependence]  # optimiser -> path_dependence


@dataclass
class DomingosStudy:
    """What :func:`domingos_critiques` returns: the critiques' numbers, the spiral kernel machine they were
    measured on, and the 1-D path kernels of each optimiser (``runs_1d["sgd"]``, ``["adam"]``) on every second
    test point."""

    critiques: DomingosCritiques
    spiral: SpiralKernelMachine
    runs_1d: dict[str, PathKernelResult]


def domingos_critiques(seed: int = 0, quick: bool = True, track=None) -> DomingosStudy:
    """The spiral net of chapter 7 trained by Adam as a kernel machine
    (:func:`~kernelscope.experiments.spirals.spiral_kernel_machine`), and the critiques measured on it and on the
    1-D problem (SGD and Adam, two data orders)."""
    sk = spiral_kernel_machine(n_per_class=30 if quick else 40, width=32 if quick else 100,
                               epochs=150 if quick else 300, seed=seed, track=track)
    r = sk.result
    pred = np.argmax(np.asarray(r.f_model), 1)
    explained = []
    for j in range(0, len(pred), max(1, len(pred) // 4))[:4]:
        top, c = top_contributions(r, j, 12)
        explained.append(Explanation(index=j, predicted=int(pred[j]), top=top.tolist(), contributions=c.tolist(),
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
        dist[opt] = kernel_distance(runs[opt])
        path[opt] = path_dependence(net, X, y, Xs, lr=lr, steps=steps, optimizer=opt, batch_size=5)
    crit = DomingosCritiques(sk.test_accuracy, r.rel_error, coefficient_spread(r), kernel_distance(r),
                             layer_shares(r), float(np.linalg.norm(r.decay) / np.linalg.norm(learned)), explained,
                             spread, dist, path)
    return DomingosStudy(crit, sk, runs)


# ---------------------------------------------------------------------------------------------------------------
# ``kernelscope pathkernel``: one net on the 1-D set or on digits
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class KernelMachineRun:
    """What :func:`kernel_machine` returns: the data, the step size, the path-kernel result, and either the path
    kernel's distance to the tangent kernels (1-D) or the trained net's test accuracy (digits)."""

    dataset: str  # "1d" or "digits"
    X_train: np.ndarray
    y_train: np.ndarray  # targets (1-D) or labels (digits)
    X_test: np.ndarray
    y_test: np.ndarray | None  # labels of the test digits (None for the 1-D grid)
    lr: float
    result: PathKernelResult
    distance: KernelDistance | None = None  # 1-D: kernel_distance(result)
    test_accuracy: float | None = None  # digits


def kernel_machine(dataset: str = "1d", *, width: int = 256, steps: int = 100, lr: float | None = None,
                   exact: bool = True, nodes: int = 4, batch_size: int | None = None, seed: int = 0,
                   optimizer: str = "sgd", weight_decay: float = 0.0, track=None) -> KernelMachineRun:
    """Train a two-layer tanh net of ``width`` by ``steps`` steps of ``optimizer`` and rewrite it as the kernel
    machine ``Σ a_i K(x, x_i) + b`` (:func:`kernelscope.dynamics.path_kernel`; ``exact``: ``nodes``
    Gauss–Legendre nodes per step, else Domingos' left-endpoint sum).

    ``dataset="1d"``: ``mlp(1, width, **PK_1D)`` on :func:`pathkernel_1d_problem`, squared loss, ``lr`` None:
    :func:`~kernelscope.dynamics.stable_lr`. ``"digits"``: ``64 -> width (tanh) -> 10`` on 300 digits (6 for the
    test), cross-entropy, ``lr`` None: 0.05.
    """
    dataset = check_choice(dataset, "dataset", ("1d", "digits"))
    common = dict(steps=steps, exact=exact, nodes=nodes, batch_size=batch_size, seed=seed, track=track,
                  optimizer=optimizer, weight_decay=weight_decay)
    if dataset == "1d":
        X, y, Xs = pathkernel_1d_problem(seed)
        model = mlp(1, width, seed=seed, **PK_1D)
        lr = stable_lr(model, X) if lr is None else lr
        res = path_kernel(model, X, y, Xs, lr=lr, **common)
        return KernelMachineRun(dataset, X, y, Xs, None, lr, res, distance=kernel_distance(res))
    Xd, labels = data.digits(306, seed=seed)
    X, y, Xs, ys = Xd[:300], labels[:300], Xd[300:], labels[300:]
    model = mlp(64, width, d_out=10, activation="tanh", b_std=0.1, seed=seed)
    lr = 0.05 if lr is None else lr
    res = path_kernel(model, X, y, Xs, lr=lr, loss="cross_entropy", **common)
    return KernelMachineRun(dataset, X, y, Xs, ys, lr, res,
                            test_accuracy=float(np.mean(np.argmax(res.f_model, 1) == ys)))
