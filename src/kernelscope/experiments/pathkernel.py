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
  pathkernel``);
- Domingos' kernel examined as a kernel: :func:`examine_1d` (the 1-D net: symmetry and spectrum of the path
  kernel on train × train, kernel ridge with it against the net, Θ₀ and Θ_T, :func:`vacuity` - any function is a
  "kernel machine" once the coefficients depend on x - and :func:`leave_one_out` - attributions against retraining)
  and :func:`examine_spiral` (the Adam-trained spiral net: the same, with :func:`svm_precomputed`, and the tangent
  kernel's path Θ_t).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import data
from .._arrays import ValidationError, check_choice
from ..dynamics import (
    GramProperties,
    PathKernelResult,
    gram_properties,
    layer_shares,
    mlp,
    path_kernel,
    stable_lr,
    top_contributions,
)
from ..stats import fit_slope
from .spirals import SpiralKernelMachine, spiral_kernel_machine

__all__ = ["PK_1D", "pathkernel_1d_problem", "Agreement1D", "agreement_1d", "StepSizeStudy", "step_size_study",
           "step_size_study_1d", "DigitsExplained", "digits_explained", "KernelDistance", "kernel_distance",
           "NarrowVsWide", "narrow_vs_wide", "coefficient_spread", "PathDependence", "path_dependence",
           "Explanation", "DomingosCritiques", "DomingosStudy", "domingos_critiques", "KernelMachineRun",
           "kernel_machine", "kernel_ridge_precomputed", "svm_precomputed", "KernelReuse", "Vacuity", "vacuity",
           "LeaveOneOut", "leave_one_out", "Kernel1D", "examine_1d", "KernelPath", "KernelSpiral", "examine_spiral"]

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
    width: int = 256
    seed: int = 0
    exact_train: PathKernelResult | None = None  # with_train: the same kernel machines on the 20 training points
    left_train: PathKernelResult | None = None  # (K of shape (20, 20): the path kernel on train × train)


def agreement_1d(seed: int = 0, steps: int = 60, *, width: int = 256, nodes: int = 4, with_train: bool = False,
                 track=None) -> Agreement1D:
    """Train ``mlp(1, width, **PK_1D)`` for ``steps`` steps of gradient descent at ``η = stable_lr`` on
    :func:`pathkernel_1d_problem` and write it as ``Σ a_i K(x, x_i) + b`` on the test grid, exactly (``nodes``
    Gauss–Legendre nodes per step) and with the left-endpoint sum (THEORY.md §6, Domingos 2020). ``with_train``
    also evaluates both on the training points (one training each: the grid and the training points together,
    split by :meth:`~kernelscope.dynamics.PathKernelResult.rows`)."""
    X, y, Xs = pathkernel_1d_problem(seed)
    model = mlp(1, width, seed=seed, **PK_1D)
    lr = stable_lr(model, X)
    m = len(Xs)
    where = np.vstack([Xs, X]) if with_train else Xs
    exact = path_kernel(model, X, y, where, lr=lr, steps=steps, exact=True, nodes=nodes, track=track)
    left = path_kernel(model, X, y, where, lr=lr, steps=steps, exact=False)
    if not with_train:
        return Agreement1D(lr, steps, exact, left, width, seed)
    test, train = slice(0, m), slice(m, None)
    return Agreement1D(lr, steps, exact.rows(test), left.rows(test), width, seed, exact.rows(train),
                       left.rows(train))


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


def domingos_critiques(seed: int = 0, quick: bool = True, track=None, with_train: bool = False) -> DomingosStudy:
    """The spiral net of chapter 7 trained by Adam as a kernel machine
    (:func:`~kernelscope.experiments.spirals.spiral_kernel_machine`), and the critiques measured on it and on the
    1-D problem (SGD and Adam, two data orders). ``with_train`` also keeps the spiral net's kernel machine on its
    training points and the tangent kernel every 1/30 of training (for :func:`examine_spiral`)."""
    epochs = 150 if quick else 300
    sk = spiral_kernel_machine(n_per_class=30 if quick else 40, width=32 if quick else 100, epochs=epochs, seed=seed,
                               with_train=with_train, ntk_every=max(1, epochs // 30) if with_train else None,
                               track=track)
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
        steps = 60 if quick else 200
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


# ---------------------------------------------------------------------------------------------------------------
# Domingos' kernel examined as a kernel: symmetry and spectrum, reuse in true kernel machines, vacuity,
# attributions against retraining, the tangent kernel's path
# ---------------------------------------------------------------------------------------------------------------

def _np(a) -> np.ndarray:
    return np.asarray(torch.as_tensor(a).detach().cpu(), dtype=np.float64)


def _trace(K) -> np.ndarray:
    """(M, N) as it is; (M, N, O, O) blocks traced over the outputs, ``Σ_o K[:, :, o, o]``."""
    K = _np(K)
    return K if K.ndim == 2 else np.einsum("mioo->mi", K)


def _sym(K: np.ndarray) -> np.ndarray:
    return (K + K.T) / 2


#: the relative ridges :func:`kernel_ridge_precomputed` chooses from
RIDGES = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _index_kernel(K_train: np.ndarray, K_test: np.ndarray):
    """A precomputed kernel as the callable ``k(A, B)`` that :class:`kernelscope.KernelRegressor` takes: inputs are
    point indices (a column), 0..N−1 the training points and N..N+M−1 the test points; ``k(A, B)`` reads rows of
    ``[K_train; K_test]`` (N + M, N) at columns B (training points only: all that fitting and predicting ask)."""
    table = torch.as_tensor(np.vstack([K_train, K_test]))  # (N + M, N)
    return lambda A, B: table[A[:, 0].long()][:, B[:, 0].long()]


def kernel_ridge_precomputed(K_train, K_test, targets, ridges=RIDGES
                             ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Kernel ridge regression (:class:`kernelscope.KernelRegressor`) with a precomputed kernel, the ridge chosen
    by leave-one-out over ``ridges``.

    K_train (N, N) (its symmetric part is used), K_test (M, N), targets (N,) or (N, O). The kernel is divided by
    its mean diagonal first, so that kernels of different scales (a path kernel ≈ T·Θ) meet the same ridges.
    Leave-one-out in closed form: with ``H = (K + λI)⁻¹`` and ``α = H t``, the prediction at x_i of the machine
    fitted without it is ``t_i − α_i / H_ii`` (Rifkin & Lippert 2007, "Notes on regularized least squares"); λ
    minimises the mean squared leave-one-out error. Returns (predictions on the training points, on the test
    points, λ relative to the mean diagonal, the leave-one-out predictions at that λ).
    """
    from ..regression import KernelRegressor

    S, Kt = _sym(_np(K_train)), _np(K_test)
    scale = float(np.mean(np.diag(S)))
    n, m = len(S), len(Kt)
    t = np.asarray(targets, float)
    best = None
    for lam in ridges:
        H = np.linalg.inv(S / scale + lam * np.eye(n))
        alpha = H @ t
        loo = t - alpha / (np.diag(H)[:, None] if t.ndim == 2 else np.diag(H))
        err = float(np.mean((loo - t) ** 2))
        if best is None or err < best[0]:
            best = (err, float(lam), loo)
    _, lam, loo = best
    reg = KernelRegressor(_index_kernel(S / scale, Kt / scale), ridge=lam).fit(np.arange(n, dtype=float)[:, None], t)
    return (np.asarray(reg.predict(np.arange(n, dtype=float)[:, None])),
            np.asarray(reg.predict(np.arange(n, n + m, dtype=float)[:, None])), lam, loo)


def svm_precomputed(K_train, K_test, labels, Cs=(0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0), folds: int = 5
                    ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """scikit-learn's ``SVC(kernel='precomputed')`` with C chosen by ``folds``-fold cross-validation on the
    training points (``GridSearchCV``). K_train (N, N) (its symmetric part, divided by its mean diagonal), K_test
    (M, N), labels (N,). Returns (training predictions, test predictions, the C chosen, its cross-validated
    accuracy - slightly optimistic, since C was chosen on the same folds)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC

    S, Kt = _sym(_np(K_train)), _np(K_test)
    scale = float(np.mean(np.diag(S)))
    search = GridSearchCV(SVC(kernel="precomputed"), {"C": list(Cs)},
                          cv=StratifiedKFold(folds, shuffle=True, random_state=0))
    search.fit(S / scale, labels)
    return (search.predict(S / scale), search.predict(Kt / scale), float(search.best_params_["C"]),
            float(search.best_score_))


@dataclass
class KernelReuse:
    """One row of "the same kernel in a true kernel machine" (one coefficient per training point) beside the net.

    kernel : which kernel ("path kernel", "Θ₀", "Θ_T") or "network" ; method : the machine ("kernel ridge", "SVM",
    or "trained net") ; param : the ridge λ or C chosen (NaN for the net) ; train, test : RMS error (regression) or
    accuracy (classification) ; agreement : with the network on the test points (RMS distance, or the share of
    equal predictions) ; held_out : on the training points, each predicted by a machine fitted without it
    (kernel ridge: leave-one-out in closed form) or without its fold (SVM: 5-fold cross-validation); NaN for the net.
    """

    kernel: str
    method: str
    param: float
    train: float
    test: float
    agreement: float
    held_out: float = float("nan")


@dataclass
class Vacuity:
    """With coefficients that may depend on x, any function g is a "kernel machine" over any kernel k:
    ``a_i(x) = (g(x) − b(x)) k(x, x_i) / Σ_j k(x, x_j)²`` gives ``b(x) + Σ_i a_i(x) k(x, x_i) = g(x)`` wherever
    some ``k(x, x_j) ≠ 0`` (the construction behind the walkthrough's critique of Domingos' Remark 1).

    functions (F,), kernels (K,) : names. x_dependent (F, K) : relative error ``‖b + Σ a_i(x) k − g‖ / ‖g − b‖``
    of the construction on the test points (rounding). constant (F, K) : the same error with the best constant
    coefficients (least squares over the M test points; a true kernel machine has only N degrees of freedom).
    """

    functions: list[str]
    kernels: list[str]
    x_dependent: np.ndarray
    constant: np.ndarray


def vacuity(functions: dict, kernels: dict, b) -> Vacuity:
    """:class:`Vacuity` of each function ``g`` (name -> (M,) values on the test points) over each kernel (name ->
    (M, N) matrix k(x, x_i)), with the offset ``b`` (M,)."""
    b = _np(b)
    names_f, names_k = list(functions), list(kernels)
    xdep = np.zeros((len(names_f), len(names_k)))
    const = np.zeros_like(xdep)
    for p, fname in enumerate(names_f):
        r = _np(functions[fname]) - b  # what the kernel machine must explain
        for q, kname in enumerate(names_k):
            k = _np(kernels[kname])
            a = r[:, None] * k / (k ** 2).sum(1, keepdims=True)  # (M, N) a_i(x)
            xdep[p, q] = np.linalg.norm((a * k).sum(1) - r) / np.linalg.norm(r)
            alpha = np.linalg.lstsq(k, r, rcond=None)[0]  # (N,) one coefficient per training point
            const[p, q] = np.linalg.norm(k @ alpha - r) / np.linalg.norm(r)
    return Vacuity(names_f, names_k, xdep, const)


@dataclass
class LeaveOneOut:
    """Domingos' attributions ``a_i K(x, x_i)`` against retraining without x_i (same w₀, η and steps).

    contributions, retrained : (M, N) on the test points: ``a_i K(x, x_i)`` and ``f_T(x) − f_T^{(−i)}(x)``.
    spearman : (M,) rank correlation over the training points at each test point ; median_spearman ;
    pearson : over all (x, i) pairs ; top_match : share of test points whose largest |attribution| is also the
    largest |retraining change| ; slope : the least-squares ``s`` in ``retrained ≈ s · contributions`` over all pairs
    (below 1: retraining without x_i changes f by less than x_i's attribution - the other points take over).
    """

    contributions: np.ndarray
    retrained: np.ndarray
    spearman: np.ndarray
    median_spearman: float
    pearson: float
    top_match: float
    slope: float


def leave_one_out(model, X, y, X_test, contributions, *, lr: float, steps: int, track=None) -> LeaveOneOut:
    """Retrain ``model`` (full-batch gradient descent on the summed squared loss, as :func:`path_kernel` with its
    defaults) once without each training point and compare the change of the output on ``X_test`` with the
    attributions ``contributions`` (M, N) of the full training (scalar-output model)."""
    import copy

    from scipy.stats import pearsonr, spearmanr

    from ..dynamics import train

    Xt = torch.as_tensor(np.asarray(X, float))
    yt = torch.as_tensor(np.asarray(y, float))
    Xs = torch.as_tensor(np.asarray(X_test, float))

    def fit(keep):
        net = copy.deepcopy(model)
        train(net, Xt[keep], yt[keep], lr=lr, steps=steps, what="leave-one-out retraining")
        with torch.no_grad():
            return net(Xs).reshape(-1).numpy()

    n = len(Xt)
    full = fit(torch.ones(n, dtype=torch.bool))
    idx = range(n) if track is None else track(range(n), "leave-one-out retraining")
    delta = np.stack([full - fit(torch.arange(n) != i) for i in idx], axis=1)  # (M, N)
    C = _np(contributions)
    rho = np.array([spearmanr(C[j], delta[j])[0] for j in range(len(C))])
    top = float(np.mean(np.argmax(np.abs(C), 1) == np.argmax(np.abs(delta), 1)))
    slope = float(C.ravel() @ delta.ravel() / (C.ravel() @ C.ravel()))
    return LeaveOneOut(C, delta, rho, float(np.median(rho)), float(pearsonr(C.ravel(), delta.ravel())[0]), top,
                       slope)


@dataclass
class Kernel1D:
    """The 1-D net's path kernel examined as a kernel (what :func:`examine_1d` returns).

    grams : name -> :class:`~kernelscope.dynamics.GramProperties` of the train × train matrices ; reuse : the
    network and kernel ridge with each kernel (RMS errors: training targets, the noise-free target on the test grid)
    ; vacuity ; loo : attributions against leave-one-out retraining.
    """

    grams: dict[str, GramProperties]
    reuse: list[KernelReuse]
    vacuity: Vacuity
    loo: LeaveOneOut


def examine_1d(agree: Agreement1D, track=None) -> Kernel1D:
    """The path kernel of :func:`agreement_1d` (``with_train=True``) examined as a kernel: symmetry and spectrum
    on train × train (exact and left-endpoint, against Θ₀ and Θ_T), reused in kernel ridge regression of
    ``y − f₀`` (offset ``b = f₀``, as the kernel machine has), the vacuity construction, and the attributions
    against leave-one-out retraining."""
    if agree.exact_train is None or agree.left_train is None:
        raise ValidationError("agree", "an Agreement1D from agreement_1d(..., with_train=True)",
                              "one without the training-point kernels", "Pass with_train=True.")
    X, y, Xs = pathkernel_1d_problem(agree.seed)
    ex, tr, lt = agree.exact, agree.exact_train, agree.left_train
    grams = {"path kernel (exact)": gram_properties(tr.K), "path kernel (left-endpoint)": gram_properties(lt.K),
             "Θ₀": gram_properties(tr.ntk0), "Θ_T": gram_properties(tr.ntkT)}
    clean = data.TARGETS_1D["sin"](Xs[:, 0])
    f_T, b, b_train = _np(ex.f_model), _np(ex.b), _np(tr.b)
    rms = lambda v: float(np.sqrt(np.mean(np.square(v))))  # noqa: E731
    reuse = [KernelReuse("network", "trained net", float("nan"), rms(_np(tr.f_model) - y), rms(f_T - clean), 0.0)]
    for name, Ktr, Kte in (("path kernel", tr.K, ex.K), ("Θ₀", tr.ntk0, ex.ntk0), ("Θ_T", tr.ntkT, ex.ntkT)):
        p_tr, p_te, lam, loo = kernel_ridge_precomputed(Ktr, Kte, y - b_train)
        reuse.append(KernelReuse(name, "kernel ridge", lam, rms(b_train + p_tr - y), rms(b + p_te - clean),
                                 rms(b + p_te - f_T), rms(b_train + loo - y)))
    noise = np.random.default_rng(agree.seed).standard_normal(len(Xs))
    from ..kernels import rbf

    vac = vacuity({"the trained net f_T": f_T, "cos(4x), never trained on": np.cos(4 * Xs[:, 0]),
                   "Gaussian noise, one value per test point": noise},
                  {"path kernel": ex.K, "Θ₀": ex.ntk0, "RBF (γ = 10)": rbf(Xs, X, gamma=10.0)}, b)
    model = mlp(1, agree.width, seed=agree.seed, **PK_1D)
    loo = leave_one_out(model, X, y, Xs, ex.contributions, lr=agree.lr, steps=agree.steps, track=track)
    return Kernel1D(grams, reuse, vac, loo)


@dataclass
class KernelPath:
    """The tangent kernel along training, Θ_t on train × train (trace over the outputs).

    steps (R,) ; alignment (R,) : centred kernel-target alignment with the labels
    (:func:`kernelscope.stats.kernel_target_alignment`) ; distance (R,) : ``‖Θ_t − Θ₀‖_F / ‖Θ₀‖_F`` ;
    shape_distance (R,) : ``min_c ‖Θ_t − cΘ₀‖_F / ‖Θ_t‖_F`` (how far it moved up to scale) ; alignment_path :
    the alignment of the path kernel's symmetric part.
    """

    steps: list[int]
    alignment: list[float]
    distance: list[float]
    shape_distance: list[float]
    alignment_path: float


@dataclass
class KernelSpiral:
    """The Adam-trained spiral net's path kernel examined as a kernel (what :func:`examine_spiral` returns).

    grams : name -> GramProperties (train × train) ; reuse : the network, SVMs and kernel-ridge classifiers with
    the path kernel, Θ₀ and Θ_T (accuracies) ; path : the tangent kernel's path ; n_test : test points.
    """

    grams: dict[str, GramProperties]
    reuse: list[KernelReuse]
    path: KernelPath
    n_test: int


def examine_spiral(sk: SpiralKernelMachine) -> KernelSpiral:
    """The path kernel of the spiral net (:func:`~kernelscope.experiments.spirals.spiral_kernel_machine` with
    ``with_train=True`` and ``ntk_every``) examined as a kernel: symmetry and spectrum of the O×O-block and the
    traced train × train matrices, the traced kernels reused in an SVM (C by cross-validation) and in kernel ridge
    on centred one-hot labels (argmax; ridge by marginal likelihood), and the tangent kernel's path."""
    from ..data import one_hot_centred
    from ..stats import kernel_target_alignment

    tr, te = sk.train_result, sk.result
    if tr is None or tr.ntk_history is None:
        raise ValidationError("sk", "a SpiralKernelMachine from spiral_kernel_machine(..., with_train=True, "
                              "ntk_every=k)", "one without the training-point kernels or the tangent kernel's path")
    y, yt = sk.y_train, sk.y_test
    classes = int(y.max()) + 1
    grams = {"path kernel (O×O blocks)": gram_properties(tr.K), "path kernel (trace)": gram_properties(_trace(tr.K)),
             "Θ₀ (trace)": gram_properties(_trace(tr.ntk0)), "Θ_T (trace)": gram_properties(_trace(tr.ntkT))}
    net_train, net_test = np.argmax(_np(tr.f_model), 1), np.argmax(_np(te.f_model), 1)
    acc = lambda p, t: float(np.mean(p == t))  # noqa: E731
    reuse = [KernelReuse("network", "trained net", float("nan"), acc(net_train, y), acc(net_test, yt), 1.0)]
    Y = one_hot_centred(y, classes)
    for name, Ktr, Kte in (("path kernel", tr.K, te.K), ("Θ₀", tr.ntk0, te.ntk0), ("Θ_T", tr.ntkT, te.ntkT)):
        Ktr, Kte = _trace(Ktr), _trace(Kte)
        p_tr, p_te, C, cv = svm_precomputed(Ktr, Kte, y)
        reuse.append(KernelReuse(name, "SVM", C, acc(p_tr, y), acc(p_te, yt), acc(p_te, net_test), cv))
        s_tr, s_te, lam, loo = kernel_ridge_precomputed(Ktr, Kte, Y)
        p_tr, p_te = np.argmax(s_tr, 1), np.argmax(s_te, 1)
        reuse.append(KernelReuse(name, "kernel ridge", lam, acc(p_tr, y), acc(p_te, yt), acc(p_te, net_test),
                                 acc(np.argmax(loo, 1), y)))
    H = [_trace(h) for h in _np(tr.ntk_history)]
    th0 = H[0]
    path = KernelPath(list(tr.ntk_steps), [kernel_target_alignment(h, y, classes) for h in H],
                      [float(np.linalg.norm(h - th0) / np.linalg.norm(th0)) for h in H],
                      [_shape_distance(h, th0) for h in H], kernel_target_alignment(_sym(_trace(tr.K)), y, classes))
    return KernelSpiral(grams, reuse, path, len(yt))
