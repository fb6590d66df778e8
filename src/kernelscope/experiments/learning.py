"""The mathematics of learning: the applied-math deck (002), the link from chapter 1 to the NTK (deck 000), and
the spiral lecture's loose ends (003). Each function returns a dataclass the figures draw from.

Norms and sparsity
- :func:`least_norms` - ``3x + 4y = 12`` solved with least ℓ1, ℓ2 and ℓ∞ norm (LPs for ℓ1/ℓ∞), the unit balls
  grown until they touch the line, and the lasso and ridge paths of the same equation.
- :func:`regularization_paths` - lasso against ridge on a regression whose truth is sparse.

Curvature and descent (:mod:`kernelscope.optim`)
- :func:`stationary_points` - minima, maxima and saddles of ``x³ − 3x + y³ − 3y`` from the Hessian.
- :func:`momentum_escape` - gradient descent stuck in a local minimum that heavy-ball momentum rolls out of.
- :func:`step_sizes` - η against 2/λ_max on a quadratic; :func:`model_step_sizes` the same on torch models
  with λ_max measured by Lanczos on Hessian-vector products.
- :func:`batch_sizes` - full batch against mini-batch against per-sample SGD on one problem, each trained by
  the library's one training loop (:func:`kernelscope.dynamics.train`, through :func:`train_epochs`);
  :func:`regression_batch_sizes` on the chapter's regression problem.

Chapter 1 meets chapter 5
- :func:`least_norm_link` - gradient descent on the linearised network from w₀ moves the weights by the
  least-norm solution ``Δw = J⁺(y − f₀)`` of ``J Δw = y − f₀``.
- :func:`gauss_newton_spectrum` - at an interpolating minimum of ½Σ(f − y)² the Hessian is the Gauss–Newton
  matrix ``JᵀJ``, whose non-zero eigenvalues are those of the empirical NTK ``JJᵀ``.

Spirals
- :func:`lift` - the hand-made feature ``x₁² + x₂²`` after which a plane separates two rings.
- :func:`spiral_sgd` - the linear classifier's regions on the spirals, a network trained full batch and per
  sample, and the NTK's influence map ``Θ(·, x_i)``: what one gradient step on x_i does to f everywhere.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import empirical, linsys, optim
from .._arrays import as_numpy, check_int, check_positive
from .._model import stable_lr, with_weights

__all__ = ["SURFACES", "LeastNorms", "least_norms", "RegularizationPaths", "regularization_paths",
           "lasso_kkt_violation", "StationaryPoints", "stationary_points", "surface_grid", "Descent",
           "momentum_escape", "StepSizes", "step_sizes", "ModelStepSizes", "model_step_sizes", "BatchSizes",
           "batch_sizes", "regression_batch_sizes", "LeastNormLink", "least_norm_link", "GaussNewtonSpectrum",
           "gauss_newton_spectrum", "Lift", "lift", "SpiralSGD", "spiral_sgd", "EpochRun", "train_epochs",
           "with_weights", "linear_regions"]

Grid = tuple[np.ndarray, np.ndarray, np.ndarray]  # (gx, gy, values), each (R, R)


# ---------------------------------------------------------------------------------------------------------------
# Surfaces in the plane (torch functions of a point (2,))
# ---------------------------------------------------------------------------------------------------------------

def cubic(z: torch.Tensor) -> torch.Tensor:
    """``x³ − 3x + y³ − 3y``: stationary points (±1, ±1), Hessian diag(6x, 6y) - a minimum at (1, 1), a maximum
    at (−1, −1), saddles at (1, −1) and (−1, 1)."""
    return z[0] ** 3 - 3 * z[0] + z[1] ** 3 - 3 * z[1]


def tilted_double_well(z: torch.Tensor) -> torch.Tensor:
    """``(x² − 1)² + 0.5x + y²``: a shallow local minimum near x = 0.93 and the global one near x = −1.06, with a
    barrier between them near x = 0.13."""
    return (z[0] ** 2 - 1) ** 2 + 0.5 * z[0] + z[1] ** 2


SURFACES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"cubic": cubic, "tilted_double_well": tilted_double_well}


def surface_grid(f: Callable[[torch.Tensor], torch.Tensor], lims: Sequence[float], resolution: int = 200) -> Grid:
    """f on a ``resolution × resolution`` grid of ``lims = (x0, x1, y0, y1)``: ``(gx, gy, values)``, row i at
    ``y = linspace(y0, y1)[i]``."""
    x0, x1, y0, y1 = (float(v) for v in lims)
    resolution = check_int(resolution, "resolution", minimum=2)
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    pts = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], axis=1))
    with torch.no_grad():
        vals = torch.vmap(f)(pts).numpy().reshape(gx.shape)
    return gx, gy, vals


# ---------------------------------------------------------------------------------------------------------------
# Norms and sparsity
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class LeastNorms:
    """What :func:`least_norms` returns for one equation ``a·x = β`` in the plane.

    a : (2,) ; beta : float ; solutions : {p: (2,) the least-ℓp solution} for p in '1', '2', 'inf'
    norms : {p: ‖x_p‖_p} ; exact : {p: |β|/‖a‖_q (Hölder)} ; spheres : {p: (S, 2) unit circle of ℓp}
    lasso, ridge : the paths of the same equation (coefficients (L, 2) against α / λ)
    """

    a: np.ndarray
    beta: float
    solutions: dict[str, np.ndarray]
    norms: dict[str, float]
    exact: dict[str, float]
    spheres: dict[str, np.ndarray]
    lasso: linsys.RegularizationPath
    ridge: linsys.RegularizationPath


_P = {"1": 1.0, "2": 2.0, "inf": np.inf}
_DUAL = {"1": np.inf, "2": 2.0, "inf": 1.0}


def least_norms(a: Sequence[float] = (3.0, 4.0), beta: float = 12.0, n_path: int = 60) -> LeastNorms:
    """The solutions of least ℓ1, ℓ2 and ℓ∞ norm of ``a·x = β`` (:func:`kernelscope.linsys.min_norm`), the
    closed forms ``|β|/‖a‖_q`` they must reach, and the lasso/ridge paths of the same one-row system (the lasso
    ends at the least-ℓ1 point, ridge at the least-ℓ2 point as the penalty goes to 0)."""
    a = as_numpy(a, "a", ndim=1)
    A, b = a[None, :], np.array([float(beta)])
    sols = {k: np.asarray(linsys.min_norm(A, b, p).x) for k, p in _P.items()}
    norms = {k: float(linsys.norm(sols[k], p)) for k, p in _P.items()}
    exact = {k: abs(float(beta)) / float(linsys.norm(a, _DUAL[k])) for k in _P}
    spheres = {k: linsys.unit_sphere(p, 401) for k, p in _P.items()}
    # ``(1/2N)‖Xw − y‖² + α‖w‖₁`` with N = 1: α ≥ |a·β|max switches every coefficient off
    amax = float(np.abs(a * beta).max())
    lasso = linsys.lasso_path(A, b, np.geomspace(amax, amax * 1e-6, n_path))
    ridge = linsys.ridge_path(A, b, np.geomspace(1e3 * float(a @ a), 1e-6 * float(a @ a), n_path))
    return LeastNorms(a=a, beta=float(beta), solutions=sols, norms=norms, exact=exact, spheres=spheres,
                      lasso=lasso, ridge=ridge)


@dataclass
class RegularizationPaths:
    """Lasso against ridge on a regression with a sparse truth (:func:`regularization_paths`).

    w_true : (d,) ; lasso, ridge : the paths ; kkt_violation : the largest violation, over the path, of the lasso's
    optimality conditions (:func:`lasso_kkt_violation`) ; support_true : indices of the non-zero true weights
    """

    w_true: np.ndarray
    lasso: linsys.RegularizationPath
    ridge: linsys.RegularizationPath
    kkt_violation: float
    support_true: list[int]


def lasso_kkt_violation(X: np.ndarray, y: np.ndarray, alphas: np.ndarray, coefs: np.ndarray) -> float:
    """How far ``coefs`` (L, d) are from solving ``min (1/2N)‖Xw − y‖² + α‖w‖₁`` for each α of ``alphas`` (L,):
    with the correlations ``r = Xᵀ(y − Xw)/N``, the optimum has ``r_j = α sign(w_j)`` where ``w_j ≠ 0`` and
    ``|r_j| ≤ α`` where ``w_j = 0`` (Karush–Kuhn–Tucker); returns the largest violation of either."""
    worst = 0.0
    for a, w in zip(alphas, coefs):
        r = X.T @ (y - X @ w) / X.shape[0]
        on = w != 0
        v_on = np.abs(r[on] - a * np.sign(w[on])).max(initial=0.0)
        v_off = np.maximum(np.abs(r[~on]) - a, 0.0).max(initial=0.0)
        worst = max(worst, float(v_on), float(v_off))
    return worst


def regularization_paths(n: int = 60, d: int = 8, support: int = 3, noise: float = 0.3, n_path: int = 50,
                         seed: int = 0) -> RegularizationPaths:
    """Standard-normal design (n, d), ``y = X w + noise·ε`` with ``support`` non-zero true weights; the lasso
    path (:func:`kernelscope.linsys.lasso_path`, checked by its optimality conditions) and the ridge path on
    matching penalties (λ = N·α, so that both objectives are scaled alike). The lasso drops coefficients to
    exactly 0 one by one; ridge shrinks all of them and zeroes none."""
    n, d = check_int(n, "n", minimum=2), check_int(d, "d", minimum=1)
    support = check_int(support, "support", minimum=0, maximum=d)
    rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
    X = rng.standard_normal((n, d))
    w = np.zeros(d)
    idx = rng.choice(d, support, replace=False)
    w[idx] = rng.choice([-1.0, 1.0], support) * rng.uniform(1.0, 3.0, support)
    y = X @ w + noise * rng.standard_normal(n)
    amax = float(np.abs(X.T @ y).max() / n)
    alphas = np.geomspace(amax, amax * 1e-4, n_path)
    lasso = linsys.lasso_path(X, y, alphas)
    ridge = linsys.ridge_path(X, y, n * alphas * 10)
    return RegularizationPaths(w_true=w, lasso=lasso, ridge=ridge,
                               kkt_violation=lasso_kkt_violation(X, y, alphas, lasso.coefs),
                               support_true=sorted(idx.tolist()))


# ---------------------------------------------------------------------------------------------------------------
# Curvature and descent
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class StationaryPoints:
    """The critical points of a surface found by Newton from a grid of starts, classified by the Hessian.

    points : list of :class:`kernelscope.optim.StationaryPoint` (distinct, sorted by value) ; grid : f on the box
    lims : the box ; name : the surface's name in :data:`SURFACES`
    """

    name: str
    points: list[optim.StationaryPoint]
    grid: Grid
    lims: tuple[float, float, float, float]


def stationary_points(name: str = "cubic", lims: Sequence[float] = (-2.0, 2.0, -2.0, 2.0), starts: int = 4,
                      resolution: int = 200) -> StationaryPoints:
    """Newton's iteration (:func:`kernelscope.optim.stationary_point`) from ``starts × starts`` points of the box;
    the distinct critical points inside it, each with its Hessian eigenvalues and kind."""
    f = SURFACES[name]
    x0, x1, y0, y1 = (float(v) for v in lims)
    found: list[optim.StationaryPoint] = []
    import warnings

    for sx in np.linspace(x0, x1, starts + 2)[1:-1]:
        for sy in np.linspace(y0, y1, starts + 2)[1:-1]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sp = optim.stationary_point(f, np.array([sx, sy]), max_iter=40)
            inside = x0 <= sp.x[0] <= x1 and y0 <= sp.x[1] <= y1
            if sp.converged and inside and all(np.abs(sp.x - q.x).max() > 1e-6 for q in found):
                found.append(sp)
    found.sort(key=lambda q: q.value)
    return StationaryPoints(name=name, points=found, grid=surface_grid(f, lims, resolution), lims=(x0, x1, y0, y1))


@dataclass
class Descent:
    """Trajectories on one surface: ``runs[label]`` a :class:`kernelscope.optim.Trajectory` ; ``minima`` the
    surface's local minima (Newton) ; ``ends_in[label]`` index into ``minima`` of where each run ended."""

    name: str
    grid: Grid
    lims: tuple[float, float, float, float]
    runs: dict[str, optim.Trajectory]
    minima: list[optim.StationaryPoint]
    ends_in: dict[str, int]


def momentum_escape(x0: Sequence[float] = (2.0, 1.0), lr: float = 0.01, momentum: float = 0.9, steps: int = 400,
                    lims: Sequence[float] = (-2.0, 2.2, -1.5, 1.5)) -> Descent:
    """Gradient descent and heavy-ball momentum from the same start on the tilted double well: plain descent
    settles in the shallow minimum nearest the start; with momentum μ the iterate keeps the speed it gathered
    coming down and rolls over the barrier into the deeper minimum."""
    f = tilted_double_well
    start = np.asarray(x0, dtype=np.float64)
    runs = {"gradient descent": optim.trajectory(f, start, lr=lr, steps=steps),
            f"momentum μ = {momentum:g}": optim.trajectory(f, start, lr=lr, momentum=momentum, steps=steps)}
    minima = [optim.stationary_point(f, np.array([s, 0.0])) for s in (-1.0, 1.0)]
    ends = {k: int(np.argmin([np.linalg.norm(r.x - m.x) for m in minima])) for k, r in runs.items()}
    return Descent(name="tilted_double_well", grid=surface_grid(f, lims, 200), lims=tuple(float(v) for v in lims),
                   runs=runs, minima=minima, ends_in=ends)


@dataclass
class StepSizes:
    """Gradient descent on ``f(x) = ½ Σ λ_i x_i²`` for step sizes ``η = factor · 2/λ_max``.

    curvatures : (d,) the λ_i ; factors : (F,) ; runs : one Trajectory per factor ; error : (F, T + 1) ‖x_t‖
    predicted : (F, T + 1) the closed form ``‖((1 − ηλ_i)^t x0_i)_i‖``
    """

    curvatures: np.ndarray
    factors: np.ndarray
    runs: list[optim.Trajectory]
    error: np.ndarray
    predicted: np.ndarray


def step_sizes(curvatures: Sequence[float] = (10.0, 1.0), factors: Sequence[float] = (0.2, 0.5, 0.9, 0.99, 1.01, 1.1),
               steps: int = 60, x0: Sequence[float] | None = None) -> StepSizes:
    """η < 2/λ_max converges, η > 2/λ_max diverges: each coordinate is multiplied by ``1 − ηλ_i`` per step, and
    ``|1 − ηλ_max| < 1`` exactly when ``η < 2/λ_max``. The trajectories are also kept for the 2-D picture."""
    import warnings

    lam = as_numpy(curvatures, "curvatures", ndim=1)
    x_start = np.ones_like(lam) if x0 is None else as_numpy(x0, "x0", ndim=1)
    lam_t = torch.as_tensor(lam)
    f = lambda x: 0.5 * (lam_t * x * x).sum()  # noqa: E731
    runs, err, pred = [], [], []
    t = np.arange(steps + 1)[:, None]
    for c in factors:
        lr = float(c) * 2.0 / float(lam.max())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the runs above 2/λ_max are meant to grow
            tr = optim.trajectory(f, x_start, lr=lr, steps=steps, blowup=np.inf)
        runs.append(tr)
        err.append(np.linalg.norm(tr.points, axis=1))
        pred.append(np.linalg.norm(x_start * (1 - lr * lam) ** t, axis=1))
    return StepSizes(curvatures=lam, factors=np.asarray(factors, dtype=float), runs=runs, error=np.array(err),
                     predicted=np.array(pred))


@dataclass
class ModelStepSizes:
    """Full-batch gradient descent on torch models at ``η = factor · 2/λ_max`` with λ_max the top Hessian
    eigenvalue at the start (Lanczos on HVPs; :func:`kernelscope.optim.hessian_eigs`).

    models : names ; lambda_max : {name: λ_max at w₀} ; lambda_dense : {name: the same from the full Hessian}
    n_hvp : {name: HVPs Lanczos used} ; factors : (F,) ; loss : {name: (F, T + 1) loss curves (NaN after a stop)}
    sharpness_end : {name: (F,) λ_max at the last weights (NaN if diverged)}
    """

    models: list[str]
    lambda_max: dict[str, float]
    lambda_dense: dict[str, float]
    n_hvp: dict[str, int]
    factors: np.ndarray
    loss: dict[str, np.ndarray]
    sharpness_end: dict[str, np.ndarray]


def _sine_regression(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` standard-normal inputs in 5-D and ``y = sin(X v)`` for a standard-normal ``v``, drawn from ``gen`` in
    that order: X (n, 5), y (n,), float64."""
    X = torch.randn(n, 5, generator=gen, dtype=torch.float64)
    return X, torch.sin(X @ torch.randn(5, generator=gen, dtype=torch.float64))


def model_step_sizes(factors: Sequence[float] = (0.5, 0.9, 1.1, 2.0), steps: int = 200, n: int = 40,
                     width: int = 32, seed: int = 0) -> ModelStepSizes:
    """On a linear model (its loss is a quadratic: the threshold 2/λ_max is exact) and on a two-layer tanh
    network (the Hessian changes as the weights move, so the threshold holds only locally), regression on
    ``n`` points in 5-D with the mean squared loss."""
    import warnings

    from ..dynamics import mlp

    gen = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    X, y = _sine_regression(n, gen)
    linear = nn.Linear(5, 1).double()
    with torch.no_grad():
        linear.weight.copy_(torch.randn(1, 5, generator=gen, dtype=torch.float64))
        linear.bias.zero_()
    models = {"linear model": linear, f"2-layer tanh net (width {width})": mlp(5, width, activation="tanh",
                                                                                 b_std=0.1, seed=seed)}
    out = ModelStepSizes(models=list(models), lambda_max={}, lambda_dense={}, n_hvp={},
                         factors=np.asarray(factors, dtype=float), loss={}, sharpness_end={})
    for name, model in models.items():
        L, theta0 = optim.model_loss(model, X, y, reduction="mean")
        top = optim.hessian_eigs(L, theta0, k=1)
        lam = float(top.eigenvalues[0])
        out.lambda_max[name], out.n_hvp[name] = lam, top.n_hvp
        out.lambda_dense[name] = float(np.linalg.eigvalsh(np.asarray(optim.hessian(L, theta0)))[-1])
        curves, sharp = np.full((len(factors), steps + 1), np.nan), np.full(len(factors), np.nan)
        for i, c in enumerate(factors):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tr = optim.trajectory(L, theta0, lr=float(c) * 2.0 / lam, steps=steps, keep_points=False,
                                      blowup=1e8)
            curves[i, :len(tr.values)] = tr.values
            if tr.diverged_at is None:
                sharp[i] = float(optim.hessian_eigs(L, torch.as_tensor(tr.x), k=1).eigenvalues[0])
        out.loss[name], out.sharpness_end[name] = curves, sharp
    return out


# ---------------------------------------------------------------------------------------------------------------
# Full batch, mini-batch, per sample
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class EpochRun:
    """One run of :func:`kernelscope.dynamics.train` with the full-data loss recorded after every epoch.

    batch_size : B ; n : N ; lr : η ; momentum : μ
    epochs : (K,) epochs done at each record, 0 … E (a fraction at a divergence) ; loss : (K,) the mean loss on
    all N examples there ; updates : (K,) optimiser steps by then ; grad_evals : (K,) per-example gradients by
    then ; diverged_at : the step where training stopped for divergence, else None ; model : the trained copy
    curve_updates, curve_loss : (C,) the same loss also inside epochs: after each of the first E updates (E the
    epochs, i.e. every update a full-batch run of the same length takes), then at about 12 update counts per decade,
    and at every epoch's end, so that runs can be compared per update, not only per epoch
    """

    batch_size: int
    n: int
    lr: float
    momentum: float
    epochs: np.ndarray
    loss: np.ndarray
    updates: np.ndarray
    grad_evals: np.ndarray
    diverged_at: int | None
    model: nn.Module
    curve_updates: np.ndarray | None = None
    curve_loss: np.ndarray | None = None


def _log_grid(n: int, per_decade: int = 12) -> set[int]:
    """About ``per_decade`` integers per decade in [1, n], geometrically spaced (every integer below ~12)."""
    return {int(round(v)) for v in np.geomspace(1, max(n, 1), max(2, int(per_decade * np.log10(max(n, 10))) + 1))}


def train_epochs(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, batch_size: int, lr: float, epochs: int,
                 loss: str = "mse", momentum: float = 0.0, seed: int = 0) -> EpochRun:
    """Train a copy of ``model`` with :func:`kernelscope.dynamics.train` (SGD on the mean ``loss``) for ``epochs``
    epochs of ``⌊N/B⌋`` steps, each on the next B points of a fresh seeded permutation (B = N: full-batch gradient
    descent, B = 1: per-sample SGD), and record the loss on all N examples after every epoch."""
    from ..dynamics import loss_value, train

    n = X.shape[0]
    per_epoch = n // batch_size
    trained = copy.deepcopy(model)
    record: list[tuple[int, float]] = []
    curve: list[tuple[int, float]] = []  # also inside epochs (forward passes only: the training is unchanged)
    inside = _log_grid(epochs * per_epoch) | set(range(1, epochs + 1))

    def on_step(step: int, _batch_loss: float, _out: torch.Tensor, bad: bool) -> None:
        at_epoch = step % per_epoch == 0 or bad  # the model has taken `step` steps
        if at_epoch or step in inside:
            with torch.no_grad():
                out = trained(X)
                value = float(loss_value(out.reshape(n, -1), y, loss, "mean"))
            curve.append((step, value))
            if at_epoch:
                record.append((step, value))

    res = train(trained, X, y, loss=loss, reduction="mean", optimizer="sgd", lr=lr, momentum=momentum,
                steps=epochs * per_epoch, batch_size=None if batch_size == n else batch_size, seed=seed,
                callback=on_step, what=f"training with batch size {batch_size}")
    steps = np.array([s for s, _ in record])
    return EpochRun(batch_size=batch_size, n=n, lr=float(lr), momentum=float(momentum), epochs=steps / per_epoch,
                    loss=np.array([v for _, v in record]), updates=steps, grad_evals=steps * batch_size,
                    diverged_at=res.diverged_at, model=trained,
                    curve_updates=np.array([s for s, _ in curve]), curve_loss=np.array([v for _, v in curve]))


@dataclass
class BatchSizes:
    """The same model, data, start and step size η trained with several batch sizes (:func:`batch_sizes`).

    runs : {label: EpochRun} (labels 'full batch (N)', 'mini-batch (B)', 'per sample (1)') ; n : N ; lr : η
    """

    runs: dict[str, EpochRun]
    n: int
    lr: float
    loss: str


def _batch_label(b: int, n: int) -> str:
    return f"full batch ({n})" if b == n else ("per sample (1)" if b == 1 else f"mini-batch ({b})")


def _batch_runs(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_sizes: Sequence[int], lr: float,
                epochs: int, loss: str, seed: int) -> dict[str, EpochRun]:
    n = X.shape[0]
    runs = {}
    for b in batch_sizes:
        bs = n if int(b) == 0 else check_int(b, "batch_sizes", minimum=1, maximum=n)
        runs[_batch_label(bs, n)] = train_epochs(model, X, y, batch_size=bs, lr=lr, epochs=epochs, loss=loss,
                                                 seed=seed)
    return runs


def batch_sizes(model: nn.Module, X: Any, y: Any, *, batch_sizes: Sequence[int] = (0, 16, 1), lr: float = 0.05,
                epochs: int = 20, loss: str = "mse", seed: int = 0) -> BatchSizes:
    """Train copies of ``model`` (the same w₀) on the mean loss with each batch size (0 means N: full batch),
    the same η and epochs (:func:`train_epochs`, i.e. :func:`kernelscope.dynamics.train`): per epoch, full batch
    takes 1 step, mini-batch ⌊N/B⌋, per sample N - each computing about N per-example gradients.

    X (N, d) and y (N,) tensors or arrays in the model's dtype (y integer labels for ``loss='cross_entropy'``)."""
    X = torch.as_tensor(X)
    y = torch.as_tensor(y)
    runs = _batch_runs(model, X, y, batch_sizes, check_positive(lr, "lr"), check_int(epochs, "epochs", minimum=1),
                       loss, seed)
    return BatchSizes(runs=runs, n=X.shape[0], lr=float(lr), loss=loss)


def regression_batch_sizes(n: int = 256, width: int = 32, *, seed: int = 0, **options: Any) -> BatchSizes:
    """:func:`batch_sizes` (``options``: its ``batch_sizes``, ``lr``, ``epochs``, ``loss``) of a two-layer tanh network
    ``5 -> width -> 1`` (:func:`kernelscope.dynamics.mlp`, ``b_std`` 0.1) on ``n`` points of ``y = sin(x·v)`` in 5-D
    (inputs and v drawn with ``seed``)."""
    from ..dynamics import mlp

    gen = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    X, y = _sine_regression(check_int(n, "n", minimum=1), gen)
    model = mlp(5, width, activation="tanh", b_std=0.1, seed=seed)
    return batch_sizes(model, X, y, seed=seed, **options)


# ---------------------------------------------------------------------------------------------------------------
# Chapter 1 meets chapter 5: least norm in weight space, Gauss–Newton = NTK
# ---------------------------------------------------------------------------------------------------------------

def _jacobian(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    return empirical.jacobian(model, X, 1).reshape(X.shape[0], -1)  # (N, P), columns in θ's order


@dataclass
class LeastNormLink:
    """Gradient descent from w₀ on the linearised network against the least-norm solution (:func:`least_norm_link`).

    n, n_params : N examples, P weights (P ≫ N: infinitely many interpolating Δw) ; steps, lr : the descent
    dw_gd : (P,) ``w_T − w₀`` of the linearised network ; dw_least_norm : (P,) ``J⁺(y − f₀)`` (linsys.solve)
    rel_error : ‖Δw_gd − Δw*‖/‖Δw*‖ ; null_fraction : ‖(null-space part of Δw_gd)‖/‖Δw_gd‖ ; residual : ‖f_T − y‖
    other_norm : ‖Δw* + z‖ for a random null-space z with ‖z‖ = ‖Δw*‖ (another interpolant, √2 times longer)
    least_norm : ‖Δw*‖
    net : {width: ‖Δw_net − Δw*(width)‖/‖Δw*‖} the *nonlinear* network trained the same way
    """

    n: int
    n_params: int
    steps: int
    lr: float
    dw_gd: np.ndarray
    dw_least_norm: np.ndarray
    rel_error: float
    null_fraction: float
    residual: float
    other_norm: float
    least_norm: float
    net: dict[int, float] = field(default_factory=dict)


def _regression_set(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    X = X / X.norm(dim=1, keepdim=True)  # on the sphere, as in the kernel chapters
    y = torch.sin(3 * X[:, 0]) + 0.5 * X[:, 1]
    return X, y


def _gd_to_fit(model: nn.Module, X: torch.Tensor, y: torch.Tensor, tol: float, max_steps: int
               ) -> tuple[optim.Trajectory, float]:
    """Full-batch gradient descent on ½Σ(f − y)² with η = 1/λ_max(Θ₀); as many steps as the linear rate
    ``(1 − λ_min/λ_max)^t`` needs to bring the residual down by ``tol`` (at most ``max_steps``)."""
    L, theta0 = optim.model_loss(model, X, y, "mse")
    K = torch.as_tensor(empirical.ntk(model, X))
    lr = stable_lr(K, 1.0)
    rate = max(1e-12, float(torch.linalg.eigvalsh(K)[0]) * lr)  # η λ_min: the slowest mode's contraction
    steps = int(min(max_steps, math.ceil(math.log(tol) / math.log1p(-rate)) if rate < 1 else 1))
    return optim.trajectory(L, theta0, lr=lr, steps=steps, keep_points=False), lr


def least_norm_link(n: int = 8, d: int = 8, width: int = 64, widths: Sequence[int] = (16, 128, 1024),
                    max_steps: int = 3000, seed: int = 0) -> LeastNormLink:
    """Chapter 1 in weight space. The linearised network ``f_lin(x; w) = f₀(x) + J(x)(w − w₀)`` is linear in w;
    gradient descent on ½‖f_lin(X; w) − y‖² moves w by ``−η Jᵀ(f − y)``, always a combination of the rows of J,
    so from w₀ it can only end at the interpolant of ``J Δw = y − f₀`` that lies in the row space of J: the
    least-norm one, ``Δw = J⁺(y − f₀)`` (THEORY.md §1 and §5). The linearised model is trained as a torch
    module (:func:`kernelscope.empirical.linearize`, forward-mode products) and compared with
    :func:`kernelscope.linsys.solve` on the explicit Jacobian; the nonlinear network trained the same way
    approaches it as the width grows (lazy training)."""
    from ..dynamics import mlp

    X, y = _regression_set(check_int(n, "n", minimum=1), check_int(d, "d", minimum=1), seed)
    model = mlp(d, width, b_std=0.1, seed=seed)
    lin = empirical.linearize(model)
    tr, lr = _gd_to_fit(lin, X, y, 1e-13, max_steps)
    _, theta0 = optim.model_loss(lin, X, y)
    dw = tr.x - theta0.numpy()
    J = _jacobian(model, X).numpy()
    with torch.no_grad():
        f0 = model(X).reshape(-1).numpy()
    sol = linsys.solve(J, y.numpy() - f0)
    dw_star = np.asarray(sol.x)
    _, null = linsys.decompose(J, dw)
    rng = np.random.default_rng(seed)
    S = linsys.subspaces(J)
    z = np.asarray(S.null) @ rng.standard_normal(S.null.shape[1])
    z *= np.linalg.norm(dw_star) / np.linalg.norm(z)
    with torch.no_grad():
        resid = float(torch.linalg.norm(with_weights(lin, tr.x)(X).reshape(-1) - y))
    out = LeastNormLink(n=n, n_params=int(dw.size), steps=tr.steps, lr=lr, dw_gd=dw, dw_least_norm=dw_star,
                        rel_error=float(np.linalg.norm(dw - dw_star) / np.linalg.norm(dw_star)),
                        null_fraction=float(np.linalg.norm(null) / np.linalg.norm(dw)), residual=resid,
                        other_norm=float(np.linalg.norm(dw_star + z)), least_norm=float(np.linalg.norm(dw_star)))
    for m in widths:
        net = mlp(d, int(m), b_std=0.1, seed=seed)
        tr_net, _ = _gd_to_fit(net, X, y, 1e-10, max_steps)
        _, th0 = optim.model_loss(net, X, y)
        with torch.no_grad():
            f0m = net(X).reshape(-1).numpy()
        star = np.asarray(linsys.solve(_jacobian(net, X).numpy(), y.numpy() - f0m).x)
        out.net[int(m)] = float(np.linalg.norm(tr_net.x - th0.numpy() - star) / np.linalg.norm(star))
    return out


@dataclass
class GaussNewtonSpectrum:
    """The loss Hessian at an interpolating minimum against the Gauss–Newton matrix and the empirical NTK.

    hessian_eigs : (P,) eigenvalues of ∇²L, descending ; gauss_newton_eigs : (P,) of JᵀJ ; ntk_eigs : (N,) of
    JJᵀ = Θ (descending) ; residual : ‖f − y‖ at the minimum ; hessian_gn_gap : ‖∇²L − JᵀJ‖₂/‖∇²L‖₂ ;
    top_lanczos : λ_max of ∇²L from HVPs alone ; n : N ; n_params : P ; rank : numerical rank of JᵀJ
    max_rel_eig_diff : max_i |λ_i(∇²L) − λ_i(Θ)| / λ_i(Θ) over the top N ; flat_max : the largest |λ| of the other
    P − N eigenvalues of ∇²L (≈ 0: flat directions)
    """

    hessian_eigs: np.ndarray
    gauss_newton_eigs: np.ndarray
    ntk_eigs: np.ndarray
    residual: float
    hessian_gn_gap: float
    top_lanczos: float
    n: int
    n_params: int
    rank: int
    max_rel_eig_diff: float
    flat_max: float


def gauss_newton_spectrum(n: int = 10, d: int = 8, width: int = 24, max_steps: int = 3000, seed: int = 0
                          ) -> GaussNewtonSpectrum:
    """Train a two-layer network to interpolation (full-batch gradient descent on ``L = ½Σ(f − y)²``), then

        ∇²L = JᵀJ + Σ_i (f_i − y_i) ∇²f_i  →  JᵀJ  when the residuals vanish,

    and ``JᵀJ`` (P × P) and ``JJᵀ = Θ`` (N × N, the empirical NTK) share their non-zero eigenvalues (the SVD of
    J): the sharp directions of the loss are the NTK's eigenvectors mapped into weight space, and the other
    P − N directions are flat."""
    from ..dynamics import mlp

    X, y = _regression_set(check_int(n, "n", minimum=1), check_int(d, "d", minimum=1), seed)
    model = mlp(d, width, activation="tanh", b_std=0.1, seed=seed)
    tr, _ = _gd_to_fit(model, X, y, 1e-14, max_steps)
    trained = with_weights(model, tr.x)
    L, theta = optim.model_loss(trained, X, y, "mse")
    H = np.asarray(optim.hessian(L, theta))
    J = _jacobian(trained, X).numpy()
    GN = J.T @ J
    theta_ntk = np.asarray(empirical.ntk(trained, X.numpy()))
    with torch.no_grad():
        resid = float(torch.linalg.norm(trained(X).reshape(-1) - y))
    gap = float(np.linalg.norm(H - GN, 2) / np.linalg.norm(H, 2))
    h_eigs, ntk_eigs = np.linalg.eigvalsh(H)[::-1], np.linalg.eigvalsh(theta_ntk)[::-1]
    return GaussNewtonSpectrum(
        hessian_eigs=h_eigs, gauss_newton_eigs=np.linalg.eigvalsh(GN)[::-1], ntk_eigs=ntk_eigs, residual=resid,
        hessian_gn_gap=gap, top_lanczos=float(optim.hessian_eigs(L, theta, k=1).eigenvalues[0]), n=n,
        n_params=int(theta.numel()), rank=int(np.linalg.matrix_rank(GN)),
        max_rel_eig_diff=float(np.max(np.abs(h_eigs[:n] - ntk_eigs) / ntk_eigs)),
        flat_max=float(np.abs(h_eigs[n:]).max()))


# ---------------------------------------------------------------------------------------------------------------
# Spirals: the lift, the linear classifier, per-sample SGD, the NTK's influence map
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class Lift:
    """Two rings in the plane, before and after the lift ``(x₁, x₂) ↦ (x₁, x₂, x₁² + x₂²)``.

    X : (N, 2) ; y : (N,) ; Z : (N, 3) lifted ; acc_plane : training accuracy of a linear classifier on X ;
    acc_lifted : on Z ; plane : (w (3,), b) the separating plane ``w·z + b = 0`` in the lifted space ;
    radius : the circle ``x₁² + x₂² = r²`` the plane cuts out of the input plane (None if it cuts none)
    """

    X: np.ndarray
    y: np.ndarray
    Z: np.ndarray
    acc_plane: float
    acc_lifted: float
    plane: tuple[np.ndarray, float]
    radius: float | None


def lift(n: int = 300, noise: float = 0.08, factor: float = 0.45, seed: int = 0) -> Lift:
    """No line separates an inner ring from an outer one (a linear classifier stays near 50%), but after adding
    the hand-made feature ``x₁² + x₂²`` the inner ring sits low and the outer one high: a plane separates them,
    and that plane cuts a circle out of the input plane. The kernel trick does this lift implicitly."""
    from sklearn.datasets import make_circles
    from sklearn.linear_model import LogisticRegression

    X, y = make_circles(n_samples=check_int(n, "n", minimum=4), noise=noise, factor=factor, random_state=seed)
    Z = np.column_stack([X, (X**2).sum(axis=1)])
    flat = LogisticRegression(max_iter=1000).fit(X, y)
    lifted = LogisticRegression(C=1e4, max_iter=10000).fit(Z, y)
    w, b = lifted.coef_[0], float(lifted.intercept_[0])
    # on the plane the linear terms are small (the rings are centred): w₃ r² + b ≈ 0
    r2 = -b / w[2] if w[2] != 0 else -1.0
    return Lift(X=X, y=y, Z=Z, acc_plane=float(flat.score(X, y)), acc_lifted=float(lifted.score(Z, y)),
                plane=(w, b), radius=math.sqrt(r2) if r2 > 0 else None)


def linear_regions(X: Any, y: Any, lims: Sequence[float], resolution: int = 200) -> tuple[np.ndarray, float]:
    """A linear classifier on the raw inputs (multinomial logistic regression, scikit-learn, as
    :func:`kernelscope.experiments.spirals.linear_baseline`): its argmax regions over a grid of ``lims``
    ``(R, R)`` (row i at ``y = linspace(y0, y1)[i]``) and its training accuracy. K classes split the plane into at
    most K convex wedges, which cannot follow a spiral arm."""
    from sklearn.linear_model import LogisticRegression

    X = as_numpy(X, "X", ndim=2)
    y = as_numpy(y, "y", ndim=1, dtype=np.int64)
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    x0, x1, y0, y1 = (float(v) for v in lims)
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    return clf.predict(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape), float(clf.score(X, y))


@dataclass
class SpiralSGD:
    """Per-sample SGD against full batch on the spirals, the linear classifier, and the NTK's influence maps.

    X, y : the spiral ; lims : the plane's box ; linear_regions (R, R), linear_accuracy : the linear classifier
    runs : {label: EpochRun} ; accuracy : {label: final training accuracy} ; regions : {label: (R, R) argmax}
    anchors : indices i of the training points whose influence is mapped
    influence_init, influence_trained : (A, R, R) ``Θ(x, x_i)/Θ(x_i, x_i)`` over the grid (trace over the
    outputs) at w₀ and after per-sample training ; trained_with : the label whose weights the second map uses
    """

    X: np.ndarray
    y: np.ndarray
    lims: tuple[float, float, float, float]
    linear_regions: np.ndarray
    linear_accuracy: float
    runs: dict[str, EpochRun]
    accuracy: dict[str, float]
    regions: dict[str, np.ndarray]
    anchors: list[int]
    influence_init: np.ndarray
    influence_trained: np.ndarray
    trained_with: str
    config: dict[str, Any] = field(default_factory=dict)


def _grid_points(lims: Sequence[float], resolution: int) -> tuple[np.ndarray, tuple[int, int]]:
    x0, x1, y0, y1 = lims
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    return np.column_stack([gx.ravel(), gy.ravel()]), gx.shape


def _influence(model: nn.Module, X: np.ndarray, anchors: Sequence[int], grid: np.ndarray, shape) -> np.ndarray:
    """``Θ(x, x_i) / Θ(x_i, x_i)`` (trace over outputs) on the grid for each anchor: (A, R, R)."""
    K = np.asarray(empirical.ntk(model, grid, X[list(anchors)], trace=True))  # (G, A)
    self_k = np.diag(np.asarray(empirical.ntk(model, X[list(anchors)], trace=True)))  # (A,)
    return (K / self_k[None, :]).T.reshape(len(anchors), *shape)


def spiral_sgd(classes: int = 3, n_per_class: int = 100, noise: float = 0.2, *, width: int = 64, depth: int = 3,
               lr: float = 0.5, epochs: int = 30, batch_sizes: Sequence[int] = (0, 1), resolution: int = 120,
               anchors: int = 2, seed: int = 0) -> SpiralSGD:
    """On K spiral arms: the linear classifier's regions; a ReLU network ``2 → width → … → K`` in the NTK
    parameterisation (:func:`kernelscope.dynamics.mlp`) trained on the mean cross-entropy from the same w₀ with
    each batch size (0 = full batch) - same η, same epochs (:func:`train_epochs`); its regions; and the NTK's
    influence map
    ``Θ(x, x_i)``: a gradient step on the loss of x_i alone changes f(x) by ``−η Θ(x, x_i) ℓ'_i``, so the map
    shows which inputs move when x_i is pulled ("moving one point drags the others"). For a ReLU network it
    is a wide wedge in x_i's direction at w₀ (the NTK grows with ‖x‖); training changes it (the kernel moves)."""
    from ..data import spirals
    from ..dynamics import mlp

    X, y = spirals(n_per_class, classes, noise, seed)
    lim = 1.15 * float(np.abs(X).max())
    lims = (-lim, lim, -lim, lim)
    lin_regions, lin_acc = linear_regions(X, y, lims, resolution)
    model = mlp(2, width, depth=depth, d_out=classes, b_std=0.1, seed=seed)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.int64)
    grid, shape = _grid_points(lims, resolution)
    runs = _batch_runs(model, Xt, yt, batch_sizes, check_positive(lr, "lr"), check_int(epochs, "epochs", minimum=1),
                       "cross_entropy", seed)
    acc, regions = {}, {}
    for label, run in runs.items():
        with torch.no_grad():
            acc[label] = float((run.model(Xt).argmax(1) == yt).double().mean())
            regions[label] = run.model(torch.as_tensor(grid)).argmax(1).numpy().reshape(shape)
    # anchors: points half-way along different arms
    picks = [k * n_per_class + (n_per_class * 3) // 5 for k in range(min(anchors, classes))]
    trained_with = min(runs, key=lambda k: runs[k].batch_size)
    inf0 = _influence(model, X, picks, grid, shape)
    inf1 = _influence(runs[trained_with].model, X, picks, grid, shape)
    return SpiralSGD(X=X, y=y, lims=lims, linear_regions=lin_regions, linear_accuracy=lin_acc, runs=runs,
                     accuracy=acc, regions=regions, anchors=picks, influence_init=inf0, influence_trained=inf1,
                     trained_with=trained_with,
                     config=dict(classes=classes, n_per_class=n_per_class, noise=noise, width=width, depth=depth,
                                 lr=lr, epochs=epochs, seed=seed))
