"""Chapter 5's experiments: lazy training of wide networks, against the infinite-width NTK (THEORY.md §5).

- :func:`lazy_1d_problem`, :func:`lazy_digits_problem` - the two data sets;
- :func:`infinite_ntk` - Θ∞ of the same architecture from :mod:`kernelscope.nets`;
- :func:`lazy_sweep` - :func:`kernelscope.dynamics.lazy_width_sweep` on one of the sets, with the infinite-width
  flow;
- :func:`digits_ntk_convergence` - the empirical NTK of finite networks converging to the analytic one;
- :func:`ensemble_bands` - many finite networks trained from their own initialisations against the infinite
  ensemble's mean and error bars (:func:`kernelscope.predict.ensemble`);
- :func:`classifier_sweep` - ten-class digit classifiers trained on cross-entropy, widening, against the
  infinite-width network trained the same way in function space (:func:`kernelscope.predict.gradient_descent`);
- lazy ↔ rich (Chizat, Oyallon & Bach 2019; Yang & Hu 2021): :func:`alpha_study` - one network trained at output
  scales α (:func:`kernelscope.dynamics.lazy_alpha_sweep`); ``lazy_sweep(..., parameterization='mup')`` - the
  width sweep in μP; :func:`curvature_sweep` - ``‖∇²f‖/‖∇f‖²`` at initialisation against the width, per
  parameterisation.

Each returns a dataclass (:class:`LazyStudy`, :class:`~kernelscope.dynamics.lazy.NTKConvergence`,
:class:`EnsembleBands`, :class:`ClassifierSweep`, :class:`AlphaStudy`, :class:`CurvatureSweep`), also when its
pieces come back from a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import data, nets
from .._arrays import check_choice
from .._model import stable_lr
from ..data import one_hot_centred
from ..dynamics import NTKConvergence, curvature_ratio, lazy_alpha_sweep, lazy_width_sweep, ntk_convergence, train
from ..dynamics.lazy import AlphaSweep, LazySweep
from ..nets.finite import mlp
from ..predict import ensemble, gradient_descent, gradient_flow
from ..stats import fit_slope

__all__ = ["ONE_D", "DIGITS", "lazy_1d_problem", "lazy_digits_problem", "infinite_ntk", "LazyStudy", "lazy_sweep",
           "digits_ntk_convergence", "EnsembleBands", "ensemble_bands", "CLASSIFIER", "ClassifierRun",
           "ClassifierSweep", "classifier_sweep", "lazy_1d_targets", "AlphaStudy", "alpha_study", "CurvatureSweep",
           "curvature_sweep", "CURVATURE_NETS"]

ONE_D = dict(depth=2, activation="erf", w_std=1.0, b_std=0.5)  # two-layer erf nets on the 1-D set
DIGITS = dict(depth=3, activation="relu", w_std=1.0, b_std=0.1)  # three-layer ReLU nets on digits parity
CLASSIFIER = dict(depth=2, activation="relu", w_std=1.0, b_std=0.1)  # two-layer ReLU nets, ten digit classes


def lazy_1d_problem(seed: int = 0, n: int = 20):
    """1-D regression set (``sin 3x`` + noise): X (n, 1), y (n,), a test grid (60, 1)."""
    X, y = data.regression_1d(n, seed=seed)
    return X, y, np.linspace(-1.2, 1.2, 60)[:, None]


def lazy_1d_targets(X_test) -> np.ndarray:
    """The noiseless target ``sin 3x`` of :func:`lazy_1d_problem` at ``X_test`` (M, 1): (M,), for test errors."""
    return data.TARGETS_1D["sin"](np.asarray(X_test, float)[:, 0])


def lazy_digits_problem(seed: int = 0, n_train: int = 64, n_test: int = 40):
    """Digits subset with the parity target ±1: X (n_train, 64), y (n_train,), X_test (n_test, 64)."""
    X, labels = data.digits(n_train + n_test, seed=seed)
    y = np.where(labels % 2 == 0, 1.0, -1.0)
    return X[:n_train], y[:n_train], X[n_train:]


def infinite_ntk(X, X_test, cfg: dict):
    """(network, (Θ∞(X, X), Θ∞(X_test, X))) of the architecture ``cfg`` (``ONE_D`` or ``DIGITS``)."""
    act = {"erf": nets.Erf, "relu": nets.ReLU}[cfg["activation"]]
    layers = []
    for _ in range(cfg["depth"] - 1):
        layers += [nets.Dense(512, w_std=cfg["w_std"], b_std=cfg["b_std"]), act()]
    net = nets.serial(*layers, nets.Dense(1, w_std=cfg["w_std"], b_std=cfg["b_std"]))
    return net, (net.kernel(X).ntk, net.kernel(X_test, X).ntk)


@dataclass
class LazyStudy:
    """A lazy-training width sweep (:class:`~kernelscope.dynamics.lazy.LazySweep`) on one data set of the chapter,
    with the data it ran on: X (N, d), y (N,), X_test (M, d)."""

    dataset: str  # "1d" (two-layer erf, ONE_D) or "digits" (three-layer ReLU, DIGITS)
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    sweep: LazySweep
    y_test: np.ndarray | None = None  # the 1-D set's noiseless targets at X_test (test errors recorded)


#: the data set and the architecture of each sweep
PROBLEMS = {"1d": (lazy_1d_problem, ONE_D), "digits": (lazy_digits_problem, DIGITS)}


def lazy_sweep(dataset: str, widths, *, steps: int, lr: float | None = None, seed: int = 0, checkpoint=None,
               track=None, tag: str | None = None, parameterization: str = "ntk") -> LazyStudy:
    """:func:`kernelscope.dynamics.lazy_width_sweep` of the ``dataset``'s architecture (``"1d"``: ``ONE_D`` on
    :func:`lazy_1d_problem`; ``"digits"``: ``DIGITS`` on :func:`lazy_digits_problem`) over ``widths``, compared with
    the infinite-width gradient flow (:func:`infinite_ntk`). ``lr`` None: ``stable_lr`` of the widest net.
    ``parameterization``: ``'ntk'`` or ``'mup'`` (:mod:`kernelscope.nets.finite`; μP has the same NTK at
    initialisation, so the same Θ∞ flow to compare with). On the 1-D set the test errors against the noiseless
    target are recorded too. ``checkpoint(name, compute)`` saves each finished width under names starting with
    ``tag`` (default: the data set's name)."""
    dataset = check_choice(dataset, "dataset", tuple(PROBLEMS))
    problem, cfg = PROBLEMS[dataset]
    X, y, Xs = problem(seed)
    ys = lazy_1d_targets(Xs) if dataset == "1d" else None
    _, k_inf = infinite_ntk(X, Xs, cfg)
    sweep = lazy_width_sweep(X, y, Xs, widths, steps=steps, lr=lr, seed=seed, checkpoint=checkpoint,
                             ntk_infinite=k_inf, track=track, tag=dataset if tag is None else tag,
                             parameterization=parameterization, y_test=ys, **cfg)
    return LazyStudy(dataset, X, y, Xs, sweep, ys)


def digits_ntk_convergence(widths, *, n: int = 30, seeds: int = 3, seed: int = 0) -> NTKConvergence:
    """:func:`kernelscope.dynamics.ntk_convergence` of a two-layer ReLU network (``w_std`` 1, ``b_std`` 0.1) on
    ``n`` digits: the empirical NTK of ``net.finite(width=m)`` against ``net.kernel().ntk`` (error ∝ m^(−1/2))."""
    X, _, _ = lazy_digits_problem(seed, n_train=n, n_test=0)
    net = nets.serial(nets.Dense(512, w_std=1.0, b_std=0.1), nets.ReLU(), nets.Dense(1, w_std=1.0, b_std=0.1))
    return ntk_convergence(net, X, widths, seeds=seeds, seed=seed)


@dataclass
class EnsembleBands:
    """What :func:`ensemble_bands` returns. x (M,) the test grid ; X (N,), y (N,) the training set ; nets
    (n_nets, M) the trained nets' outputs ; mean, std (M,) the infinite ensemble's after the same steps ;
    prior_std (M,) its spread at t = 0 ; max_mean_z : the largest distance, in standard errors
    ``std/√n_nets``, between the nets' mean and the ensemble's ; std_ratio (M,) : the nets' spread (ddof 1)
    over the ensemble's std."""

    x: np.ndarray
    X: np.ndarray
    y: np.ndarray
    nets: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    prior_std: np.ndarray
    width: int
    steps: int
    lr: float
    max_mean_z: float
    std_ratio: np.ndarray


def ensemble_bands(n_nets: int, width: int, steps: int, *, seed: int = 0, track=None) -> EnsembleBands:
    """``n_nets`` two-layer erf nets of ``width`` (``ONE_D``) on the 1-D set, each from its own initialisation,
    trained by ``steps`` full-batch gradient-descent steps on ``½ Σ (f − y)²`` at ``lr = 1/λ_max(Θ∞)``, against the
    infinite ensemble after the same steps (Lee et al. 2019; :func:`kernelscope.predict.ensemble` with
    ``discrete=True``) and its prior (t = 0).

    Returns :class:`EnsembleBands`, with how far the nets are from the ensemble's Gaussian.
    """
    X, y, Xs = lazy_1d_problem(seed)
    net, (K, _) = infinite_ntk(X, Xs, ONE_D)
    lr = stable_lr(K, 1.0)
    Xt, yt, Xst = torch.as_tensor(X), torch.as_tensor(y), torch.as_tensor(Xs)
    outs = []
    seeds = range(seed * 100003, seed * 100003 + n_nets)  # disjoint from other seeds' nets
    for s in (seeds if track is None else track(seeds, "ensemble nets")):
        model = net.finite(seed=s, width=width, in_dim=1)
        train(model, Xt, yt, loss="mse", reduction="sum", lr=lr, steps=steps, what=f"ensemble net {s}")
        with torch.no_grad():
            outs.append(model(Xst)[:, 0].numpy())
    g = ensemble(net, X, y, Xs, [0.0, float(steps)], lr=lr, discrete=True, cov=False)
    F, mean, std = np.array(outs), np.asarray(g.mean[1]), np.sqrt(np.clip(g.covariance[1], 0, None))
    return EnsembleBands(x=Xs[:, 0], X=X[:, 0], y=y, nets=F, mean=mean, std=std,
                         prior_std=np.sqrt(g.covariance[0]), width=width, steps=steps, lr=lr,
                         max_mean_z=float(np.max(np.abs(F.mean(0) - mean) / (std / np.sqrt(len(F))))),
                         std_ratio=F.std(0, ddof=1) / std)


@dataclass
class ClassifierRun:
    """One width of :func:`classifier_sweep`: the trained net's accuracies, the infinite-width flow's from the
    net's f₀, their relative distance on the test images ``gap`` and the share of equal predictions ``agree``."""

    width: int
    train_accuracy: float
    test_accuracy: float
    flow_test_accuracy: float
    steps_done: int
    gap: float
    agree: float


@dataclass
class ClassifierSweep:
    """What :func:`classifier_sweep` returns: one :class:`ClassifierRun` per width, the fitted log-log line of
    their gaps, and the f₀ = 0 infinite-width classifier (cross-entropy and squared loss) along ``times``."""

    runs: list[ClassifierRun]
    lr: float
    steps: int
    n_train: int
    n_test: int
    gap_slope: float
    gap_intercept: float
    times: list[float]
    infinite_train_accuracy: list[float]
    infinite_test_accuracy: list[float]
    mse_test_accuracy: list[float]
    solver: dict  # method, steps, nfev, rtol of the cross-entropy flow's integration
    mse_kernel_test_accuracy: float


def classifier_sweep(widths, steps: int, *, n_train: int = 300, n_test: int = 300, t_max: float = 1e5,
                     seed: int = 0, checkpoint=None, track=None) -> ClassifierSweep:
    """Ten-class digit classifiers ``64 -> m -> 10`` (``CLASSIFIER``), trained by ``steps`` full-batch gradient-
    descent steps on the summed cross-entropy at ``lr = 1/λ_max(Θ∞)``, against the infinitely wide network trained
    the same way in function space: ``f' = −η Θ∞ (softmax f − y)`` (:func:`kernelscope.predict.gradient_descent`).

    - per width: train/test accuracy of the net, and its distance on the test images to the infinite-width flow
      started from the same f₀ (relative to how far that flow moved: ‖f_net − f_∞‖/‖f_∞ − f₀‖), which lazy
      training says falls like m^(−1/2);
    - the infinite-width classifier itself (f₀ = 0: the mean network's starting point) along a log grid of times up
      to ``t_max`` (the accuracies saturate long after the nets stop), and the same for squared-loss gradient flow
      with the same Θ∞ (one-hot minus 1/10 targets; its t = ∞ limit is kernel regression), the baseline the
      cross-entropy classifier replaces.

    Returns :class:`ClassifierSweep` (``checkpoint(name, compute)`` saves each finished width).
    """
    X, labels = data.digits(n_train + n_test, seed=seed)
    Xtr, ytr, Xte, yte = X[:n_train], labels[:n_train], X[n_train:], labels[n_train:]
    _, (K, Kx) = infinite_ntk(Xtr, Xte, CLASSIFIER)
    lr = stable_lr(K, 1.0)
    Xt, Xst, yt = torch.as_tensor(Xtr), torch.as_tensor(Xte), torch.as_tensor(ytr)

    def accuracy(f, y) -> float:
        return float(np.mean(np.argmax(np.asarray(f), -1) == y))

    def one(m: int) -> ClassifierRun:
        model = mlp(X.shape[1], m, d_out=10, seed=seed, **CLASSIFIER)
        with torch.no_grad():
            f0, f0x = model(Xt), model(Xst)
        res = train(model, Xt, yt, loss="cross_entropy", reduction="sum", lr=lr, steps=steps,
                    what=f"digit classifier m={m}")
        with torch.no_grad():
            f, fx = model(Xt).numpy(), model(Xst).numpy()
        flow = gradient_descent(K, ytr, float(res.steps_done), loss="cross_entropy", lr=lr, k_test_train=Kx,
                                f0_train=f0.numpy(), f0_test=f0x.numpy())
        moved = np.linalg.norm(flow.test - f0x.numpy())
        return ClassifierRun(width=m, train_accuracy=accuracy(f, ytr), test_accuracy=accuracy(fx, yte),
                             flow_test_accuracy=accuracy(flow.test, yte), steps_done=res.steps_done,
                             gap=float(np.linalg.norm(fx - flow.test) / moved),
                             agree=float(np.mean(np.argmax(fx, 1) == np.argmax(flow.test, 1))))

    runs = []
    for m in (widths if track is None else track(widths, "classifier widths")):
        runs.append(checkpoint(f"classifier_m{m}_steps{steps}", lambda m=m: one(m)) if checkpoint else one(m))
    times = np.unique(np.concatenate([np.geomspace(1, t_max, 6 * int(round(np.log10(t_max))) + 1), [steps]]))
    inf = gradient_descent(K, ytr, times, loss="cross_entropy", lr=lr, k_test_train=Kx, rtol=1e-6, atol=1e-8)
    mse = gradient_flow(K, Kx, one_hot_centred(ytr, 10), np.append(times, np.inf), lr=lr)
    slope, intercept = fit_slope([r.width for r in runs], [r.gap for r in runs])
    return ClassifierSweep(runs=runs, lr=lr, steps=steps, n_train=n_train, n_test=n_test, gap_slope=slope,
                           gap_intercept=intercept, times=times.tolist(),
                           infinite_train_accuracy=[accuracy(f, ytr) for f in inf.train],
                           infinite_test_accuracy=[accuracy(f, yte) for f in inf.test],
                           mse_test_accuracy=[accuracy(f, yte) for f in mse.test[:-1]],
                           solver={k: inf.info[k] for k in ("method", "steps", "nfev", "rtol")},
                           mse_kernel_test_accuracy=accuracy(mse.test[-1], yte))


# ---------------------------------------------------------------------------------------------------------------
# Lazy ↔ rich: the output scale α, the parameterisation, the curvature ratio
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class AlphaStudy:
    """What :func:`alpha_study` returns: the 1-D set (X (N, 1), y (N,), X_test (M, 1), y_test (M,) the noiseless
    target), the ``width`` of the two-layer erf net (``ONE_D``) and its :class:`~kernelscope.dynamics.AlphaSweep`."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    width: int
    sweep: AlphaSweep


def alpha_study(alphas, *, width: int = 256, steps: int = 300, records: int = 8, seed: int = 0, checkpoint=None,
                track=None) -> AlphaStudy:
    """Chizat & Bach's knob on the 1-D set: the centred two-layer erf net ``α·(g(w) − g(w₀))`` (``ONE_D``, width
    ``width``) and its linearisation, trained by ``steps`` gradient-descent steps on ``L/α²`` for each α
    (:func:`kernelscope.dynamics.lazy_alpha_sweep`, one step size η = 0.5/λ_max(Θ_g) for all), with the test
    errors against the noiseless target, ``records`` times along the way. ``checkpoint(name, compute)`` saves
    each finished α."""
    X, y, Xs = lazy_1d_problem(seed)
    ys = lazy_1d_targets(Xs)
    model = mlp(1, width, seed=seed, **ONE_D)
    sweep = lazy_alpha_sweep(model, X, y, Xs, alphas, steps=steps, y_test=ys, records=records,
                             checkpoint=checkpoint, track=track, tag=f"alpha_m{width}")
    for r in sweep.runs:
        r.width = width
    return AlphaStudy(X, y, Xs, ys, width, sweep)


#: The networks of :func:`curvature_sweep`: name -> (parameterisation, activation), all ``ONE_D`` otherwise.
CURVATURE_NETS = {"ntk": ("ntk", "erf"), "mup": ("mup", "erf"), "ntk_relu": ("ntk", "relu")}


@dataclass
class CurvatureSweep:
    """What :func:`curvature_sweep` returns. For each network name k of :data:`CURVATURE_NETS`: ``ratio[k]``,
    ``hessian_norm[k]``, ``gradient_sq[k]`` of shape (n_widths, n_points) - ``‖∇²f(x)‖/‖∇f(x)‖²``, its numerator
    and its denominator at initialisation (:func:`kernelscope.dynamics.curvature_ratio`) - and the log-log line of
    the mean ratio against the width (``slopes[k]``, ``intercepts[k]``; theory −½ in the NTK parameterisation, 0
    in μP). For ReLU ``‖∇²f‖ = (w₂/√m)·√(w₁²‖x‖²/d + b₂²)`` exactly (``hessian_exact``, (n_widths, n_points))."""

    widths: list[int]
    X: np.ndarray  # (n_points, 1) the inputs
    ratio: dict[str, np.ndarray]
    hessian_norm: dict[str, np.ndarray]
    gradient_sq: dict[str, np.ndarray]
    slopes: dict[str, float]
    intercepts: dict[str, float]
    hessian_exact: np.ndarray
    n_hvp: int


def curvature_sweep(widths, *, nets=("ntk", "mup", "ntk_relu"), n_points: int = 3, seed: int = 0,
                    checkpoint=None, track=None) -> CurvatureSweep:
    """``‖∇²f(x)‖/‖∇f(x)‖²`` at initialisation of the two-layer nets of the 1-D set (``ONE_D``: erf, and the same
    net with ReLU) at ``n_points`` training inputs spread over [−1, 1], for each width and each network of
    :data:`CURVATURE_NETS` named in ``nets`` (the Hessian's operator norm by Lanczos on Hessian-vector products;
    the matrix is never formed). ``checkpoint(name, compute)`` saves each finished (network, width)."""
    X, _, _ = lazy_1d_problem(seed)
    Xp = X[np.linspace(0, len(X) - 1, n_points).round().astype(int)]
    widths = [int(m) for m in widths]
    nets = [check_choice(k, "nets", tuple(CURVATURE_NETS)) for k in nets]
    out: dict[str, dict[str, list]] = {q: {k: [] for k in nets} for q in ("ratio", "hessian_norm", "gradient_sq")}
    n_hvp = 0
    cells = [(k, m) for k in nets for m in widths]
    for k, m in (track(cells, "curvature ratios") if track else cells):
        def one(k=k, m=m):
            p, act = CURVATURE_NETS[k]
            cfg = {**ONE_D, "activation": act}
            return curvature_ratio(mlp(1, m, seed=seed, parameterization=p, **cfg), Xp, tol=1e-6, seed=seed)

        c = checkpoint(f"curvature_{k}_m{m}", one) if checkpoint else one()
        for q in out:
            out[q][k].append(np.asarray(getattr(c, q)))
        n_hvp += c.n_hvp
    arrays = {q: {k: np.array(v) for k, v in d.items()} for q, d in out.items()}
    lines = {k: fit_slope(widths, arrays["ratio"][k].mean(1)) for k in nets}
    w1, w2, b = ONE_D["w_std"], ONE_D["w_std"], ONE_D["b_std"]
    exact = np.array([[w2 / np.sqrt(m) * np.sqrt(w1**2 * x**2 + b**2) for x in Xp[:, 0]] for m in widths])
    return CurvatureSweep(widths, Xp, arrays["ratio"], arrays["hessian_norm"], arrays["gradient_sq"],
                          {k: v[0] for k, v in lines.items()}, {k: v[1] for k, v in lines.items()}, exact, n_hvp)
