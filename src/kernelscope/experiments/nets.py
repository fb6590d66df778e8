"""Chapter 4's experiments: infinite-width networks, the NNGP and NTK, and the finite networks that converge to them.

Four experiments (THEORY.md §3–4), each returning a dataclass of plain lists and numbers that
:mod:`kernelscope.plots.nets` draws; the tour saves ``dataclasses.asdict(result)`` as a checkpoint and rebuilds the
result with ``Result(**saved)``:

1. :func:`random_features_experiment` - a two-layer net with a frozen random first layer and a trained readout
   is random-features regression; as the width k grows its prediction converges to NNGP regression;
2. :func:`width_experiment` - one finite network's empirical NNGP (last-layer features) and NTK (per-example
   Jacobians) against the analytic kernels: relative error against width on log-log axes, fitted slope ≈ −½;
3. :func:`angle_experiment` - the NNGP/NTK between unit inputs as functions of their angle, depths 1–5, for
   ReLU (closed form), Erf (closed form) and GELU (Gauss–Hermite);
4. :func:`digits_experiment` - NNGP and NTK regression on scikit-learn's digits (one-hot targets, argmax)
   against RBF kernel ridge, through :class:`kernelscope.regression.KernelRegressor`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import nets
from ..data import digits, one_hot_centred, regression_1d, sphere
from ..regression import KernelRegressor
from ..stats import fit_slope

__all__ = ["W_STD", "B_STD", "mlp_description", "RandomFeaturesResult", "random_features_experiment",
           "WidthResult", "width_experiment", "AngleResult", "angle_experiment", "ANGLE_ACTIVATIONS",
           "DigitsResult", "digits_experiment", "DIGIT_ACTIVATIONS"]

W_STD, B_STD = 1.5, 0.05


def mlp_description(depth: int, activation: Any = nets.ReLU, width: int = 512, w_std: float = W_STD,
                    b_std: float = B_STD) -> nets.Serial:
    """The infinite-width description ``serial(Dense(width), activation()) × depth + Dense(1)`` with the same
    (w_std, b_std) everywhere; ``.kernel(X)`` gives its NNGP/NTK, ``.finite(seed, width)`` a finite module."""
    layers: list = []
    for _ in range(depth):
        layers += [nets.Dense(width, w_std, b_std), activation()]
    return nets.serial(*layers, nets.Dense(1, w_std, b_std))


# ------------------------------------------------------------------------------------------------------------
# 1. Random features -> NNGP regression
# ------------------------------------------------------------------------------------------------------------
@dataclass
class RandomFeaturesResult:
    """Random-features regression against NNGP regression as the width k grows (:func:`random_features_experiment`)."""

    ks: list[int]
    rf_error: list[float]  # (len(ks),) RMS gap to NNGP regression on the grid, mean over draws
    rf_slope: float  # log-log fit of rf_error against k
    rf_intercept: float
    x_grid: list[float]  # (G,)
    f_nngp: list[float]  # (G,) NNGP regression
    f_rf_example: list[list[float]]  # (len(ks), G) the first draw's random-features fit for each k
    x_train: list[float]  # (N,)
    y_train: list[float]  # (N,)
    ridge: float
    n_draws: int


def random_features_experiment(ks: list[int], n_draws: int = 5, seed: int = 0, ridge: float = 1e-3,
                               n_train: int = 20) -> RandomFeaturesResult:
    """Frozen first layer of width k, trained readout (ridge ``ridge``) vs NNGP regression on 1-D data.

    The net is ``serial(Dense(k, 1.5, 1.0), ReLU(), Dense(1, 1.5, 0.05))``; its random features are
    ``φ(x) = [w_std·relu(z(x))/√k, b_std]`` so that ``φ(x)·φ(x') → NNGP(x, x')`` (THEORY.md §3).
    """
    X, y = regression_1d(n=n_train, noise=0.05, seed=seed, target="sin")
    grid = np.linspace(-1.2, 1.2, 241)[:, None]
    net = nets.serial(nets.Dense(1, 1.5, 1.0), nets.ReLU(), nets.Dense(1, 1.5, 0.05))
    f_nngp = KernelRegressor(kernel=net, nngp=True, ridge=ridge).fit(X, y).predict(grid)
    Xt, Gt = torch.as_tensor(X), torch.as_tensor(grid)
    errors, examples = [], []
    for k in ks:
        errs = []
        for s in range(n_draws):
            model = net.finite(seed=seed * 10_000 + s, width=k).materialize(1)
            dense, act, readout = model.body[0], model.body[1], model.body[2]
            with torch.no_grad():
                feats = lambda A: torch.cat([act(dense(A)) * readout.w_scale,  # noqa: E731, B023 - used at once
                                             torch.full((A.shape[0], 1), readout.b_scale, dtype=A.dtype)], 1)  # noqa: B023
                P, Pg = feats(Xt), feats(Gt)  # (N, k+1), (G, k+1)
                alpha = torch.linalg.solve(P @ P.T + ridge * torch.eye(len(X), dtype=P.dtype),
                                           torch.as_tensor(y))
                f = (Pg @ (P.T @ alpha)).numpy()
            errs.append(float(np.sqrt(np.mean((f - f_nngp) ** 2))))
            if s == 0:
                examples.append(f.tolist())
        errors.append(float(np.mean(errs)))
    slope, intercept = fit_slope(ks, errors)
    return RandomFeaturesResult(ks=list(ks), rf_error=errors, rf_slope=slope, rf_intercept=intercept,
                                x_grid=grid[:, 0].tolist(), f_nngp=f_nngp.tolist(), f_rf_example=examples,
                                x_train=X[:, 0].tolist(), y_train=y.tolist(), ridge=ridge, n_draws=n_draws)


# ------------------------------------------------------------------------------------------------------------
# 2. Monte Carlo error of one finite network's kernels against width
# ------------------------------------------------------------------------------------------------------------
@dataclass
class WidthResult:
    """Relative errors of a finite network's empirical NNGP and NTK against the analytic kernels, per width
    (:func:`width_experiment`)."""

    widths: list[int]
    nngp_error: list[float]  # (len(widths),) RMS over draws of ‖K̂ − K‖_F/‖K‖_F
    ntk_error: list[float]
    nngp_slope: float  # log-log fits against width
    nngp_intercept: float
    ntk_slope: float
    ntk_intercept: float
    depth: int
    n_draws: int


def width_experiment(widths: list[int], n_draws: int = 4, depth: int = 2, n_points: int = 16, d: int = 8,
                     seed: int = 0, track=lambda it, desc: it) -> WidthResult:
    """RMS over draws of the relative Frobenius errors ``‖K̂ − K‖/‖K‖`` of one random network's empirical NNGP
    and NTK, against width.

    Empirical NNGP: ``(w_std²/n) Φ Φᵀ + b_std²`` from the last hidden layer Φ (the output covariance over the
    readout weights given the rest); empirical NTK: ``∇_w f · ∇_w f`` by ``torch.func`` (:func:`nets.empirical_ntk`).
    """
    X = torch.as_tensor(sphere(n_points, d, seed=seed))
    net = mlp_description(depth)
    exact = net.kernel(X)
    nrm_nngp, nrm_ntk = float(torch.linalg.norm(exact.nngp)), float(torch.linalg.norm(exact.ntk))
    e_nngp, e_ntk = [], []
    for width in track(widths, "widths"):
        a, b = [], []
        for s in range(n_draws):
            model = net.finite(seed=seed * 10_000 + s, width=width).materialize(d)
            body, readout = model.body[:-1], model.body[-1]
            with torch.no_grad():
                F = body(X)  # (N, n) last hidden layer
                K = readout.w_scale**2 * F @ F.T + readout.b_scale**2
            a.append(float(torch.linalg.norm(K - exact.nngp)) / nrm_nngp)
            b.append(float(torch.linalg.norm(nets.empirical_ntk(model, X) - exact.ntk)) / nrm_ntk)
        e_nngp.append(float(np.sqrt(np.mean(np.square(a)))))  # RMS over draws
        e_ntk.append(float(np.sqrt(np.mean(np.square(b)))))
    s1, c1 = fit_slope(widths, e_nngp)
    s2, c2 = fit_slope(widths, e_ntk)
    return WidthResult(widths=list(widths), nngp_error=e_nngp, ntk_error=e_ntk, nngp_slope=s1, nngp_intercept=c1,
                       ntk_slope=s2, ntk_intercept=c2, depth=depth, n_draws=n_draws)


# ------------------------------------------------------------------------------------------------------------
# 3. Kernels as functions of the angle
# ------------------------------------------------------------------------------------------------------------
ANGLE_ACTIVATIONS = {"ReLU": nets.ReLU, "Erf": nets.Erf, "GELU": lambda: nets.GELU(degree=32)}


@dataclass
class AngleResult:
    """NNGP and NTK between unit inputs as functions of their angle, per activation and number of hidden layers
    (:func:`angle_experiment`)."""

    angles: list[float]  # (G,) γ in radians, 0..π
    depths: list[int]
    curves: dict[str, dict[str, dict[str, list[float]]]]  # activation -> "nngp"/"ntk" -> str(depth) -> (G,) k(γ)/k(0)

    def at(self, gamma: float, activation: str, which: str, depth: int) -> float:
        """k(γ)/k(0) at the angle ``gamma`` (radians), linearly interpolated between the computed angles."""
        return float(np.interp(gamma, self.angles, self.curves[activation][which][str(depth)]))


def angle_experiment(depths=(1, 2, 3, 4, 5), n_angles: int = 91) -> AngleResult:
    """NNGP/NTK between ``(1, 0)`` and ``(cos γ, sin γ)``, normalised by their value at γ = 0."""
    angles = np.linspace(0.0, math.pi, n_angles)
    U = np.stack([np.cos(angles), np.sin(angles)], 1)  # (G, 2) unit inputs
    curves: dict[str, Any] = {}
    for name, act in ANGLE_ACTIVATIONS.items():
        curves[name] = {"nngp": {}, "ntk": {}}
        for depth in depths:
            k = mlp_description(depth, act).kernel(U[:1], U)
            for which in ("nngp", "ntk"):
                row = getattr(k, which)[0]
                curves[name][which][str(depth)] = (row / row[0]).tolist()
    return AngleResult(angles=angles.tolist(), depths=list(depths), curves=curves)


# ------------------------------------------------------------------------------------------------------------
# 4. Digits
# ------------------------------------------------------------------------------------------------------------
DIGIT_ACTIVATIONS = {"ReLU": nets.ReLU, "Erf": nets.Erf}


@dataclass
class DigitsResult:
    """Test accuracy and time of NNGP/NTK regression and RBF kernel ridge on digits (:func:`digits_experiment`)."""

    accuracy: dict[str, float]  # "rbf" and "<activation>-<nngp|ntk>-<depth>" -> test accuracy
    seconds: dict[str, float]  # the same keys -> fit + predict time
    depths: list[int]
    activations: list[str]
    n_train: int
    n_test: int
    ridge: float
    rbf_gamma: float


def digits_experiment(n_train: int, n_test: int, depths=(1, 3), ridge: float = 1e-3, seed: int = 0
                      ) -> DigitsResult:
    """Test accuracy of NNGP/NTK regression (MLPs of several depths) and RBF kernel ridge on digits.

    Targets are one-hot minus 1/10 (zero mean), predictions the argmax of the 10 outputs. The RBF width is the
    median heuristic ``γ = 1/median‖x − x'‖²``; all models use the same ``ridge``.
    """
    X, y = digits(n_train + n_test, seed=seed)
    Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    Y = one_hot_centred(ytr, 10)
    acc: dict[str, float] = {}
    seconds: dict[str, float] = {}

    def score(key, model):
        t0 = time.perf_counter()
        pred = model.fit(Xtr, Y).predict(Xte)
        seconds[key] = time.perf_counter() - t0
        acc[key] = float(np.mean(np.argmax(pred, 1) == yte))

    sq = ((Xtr[:, None, :] - Xtr[None, :, :]) ** 2).sum(-1)
    gamma = 1.0 / float(np.median(sq[np.triu_indices(n_train, 1)]))
    score("rbf", KernelRegressor("rbf", ridge=ridge, kernel_params={"gamma": gamma}))
    for name, act in DIGIT_ACTIVATIONS.items():
        for depth in depths:
            for which in ("nngp", "ntk"):
                net = mlp_description(depth, act)
                score(f"{name}-{which}-{depth}", KernelRegressor(net, ridge=ridge, nngp=which == "nngp"))
    return DigitsResult(accuracy=acc, seconds=seconds, depths=list(depths), activations=list(DIGIT_ACTIVATIONS),
                        n_train=n_train, n_test=n_test, ridge=ridge, rbf_gamma=gamma)
