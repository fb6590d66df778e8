"""Lazy training (THEORY.md §5): a network and its linearisation trained side by side.

Full-batch gradient descent ``w ← w − η ∇L`` on ``L = ½ Σ_i (f(x_i) − y_i)²`` (``torch.optim.SGD(lr=η)`` on the
summed loss) for the network and for ``linearize(network)``. Recorded along the way:

- the relative weight change ``‖w_t − w₀‖ / ‖w₀‖``,
- the relative NTK change ``‖Θ_t − Θ₀‖_F / ‖Θ₀‖_F`` on the training inputs,
- the RMS distance on test inputs between the trained net, the trained linearised net and the kernel
  prediction ``f_t(x) = f₀(x) + Θ(x, X) Θ⁻¹ (I − e^{−ηΘt})(y − f₀)`` of :func:`kernelscope.predict.gradient_flow`
  (with the empirical Θ₀, and optionally with the infinite-width NTK).

For width m the first three shrink like ``m^{-1/2}``: :func:`lazy_width_sweep` fits the log-log slopes.

Why (Chizat, Oyallon & Bach 2019, "On lazy training in differentiable programming"): laziness is set by the
output scale, not by the width as such. The centred model ``h = α·(g(w) − g(w₀))`` (:func:`scaled`) trained on
``L(h)/α²`` follows the same function-space flow for every α to first order, while its weights move by O(1/α):
for large α the net is its linearisation. What decides is the ratio ``‖∇²h‖/‖∇h‖² = (1/α)·‖∇²g‖/‖∇g‖²`` at
initialisation (:func:`curvature_ratio`), which in the NTK parameterisation falls like ``m^{-1/2}`` (Liu, Zhu &
Belkin 2020) and in the mean-field/μP one (``nets.finite``, ``parameterization='mup'``) does not.
:func:`train_lazy` takes ``alpha=``, and :func:`lazy_alpha_sweep` fits the slopes against α (theory −1).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import _model, empirical, optim
from .._arrays import (
    ValidationError,
    as_tensor,
    check_choice,
    check_int,
    check_memory,
    check_positive,
    check_same_rows,
)
from .._model import Weights, check_module, flat_weights, outputs, trainable_parameters
from ..nets.finite import mlp
from ..predict import gradient_flow
from ..stats import fit_slope
from .train import train

__all__ = ["LazyRun", "train_lazy", "LazySweep", "lazy_width_sweep", "ntk_convergence", "NTKConvergence",
           "stable_lr", "Scaled", "scaled", "AlphaSweep", "lazy_alpha_sweep", "CurvatureRatio", "curvature_ratio"]


@dataclass
class LazyRun:
    """What :func:`train_lazy` records (plain lists and numbers, so it round-trips through JSON).

    record_steps : steps at which the metrics below were taken (0 ... steps_done)
    loss_net, loss_lin : ``½ Σ (f − y)²`` of the network and of its linearisation
    weight_change : ``‖w_t − w₀‖ / ‖w₀‖`` ; ntk_change : ``‖Θ_t − Θ₀‖_F / ‖Θ₀‖_F`` (training inputs)
    dist_net_lin : RMS over the test inputs of ``f_net − f_lin``
    f0_test, f_net_test, f_lin_test, f_flow_test, f_inf_test : (M,) test predictions at the end
    dist_net_flow, dist_lin_flow : RMS distances to the gradient-flow prediction with the empirical Θ₀
    dist_net_inf : RMS distance to the gradient-flow prediction with the infinite-width NTK (if given)
    stopped_at : step at which the loss became NaN/inf (training stopped there), else None
    alpha : the output scale α of :func:`scaled` (None: the model as it is, not centred)
    test_error_net, test_error_lin : RMS over the test inputs of ``f − y_test`` at each record (with ``y_test``)
    """

    width: int
    lr: float
    steps: int
    steps_done: int
    n_params: int
    record_steps: list[int] = field(default_factory=list)
    loss_net: list[float] = field(default_factory=list)
    loss_lin: list[float] = field(default_factory=list)
    weight_change: list[float] = field(default_factory=list)
    ntk_change: list[float] = field(default_factory=list)
    dist_net_lin: list[float] = field(default_factory=list)
    f0_test: list[float] = field(default_factory=list)
    f_net_test: list[float] = field(default_factory=list)
    f_lin_test: list[float] = field(default_factory=list)
    f_flow_test: list[float] | None = None
    f_inf_test: list[float] | None = None
    dist_net_flow: float | None = None
    dist_lin_flow: float | None = None
    dist_net_inf: float | None = None
    stopped_at: int | None = None
    alpha: float | None = None
    test_error_net: list[float] = field(default_factory=list)
    test_error_lin: list[float] = field(default_factory=list)


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean((a - b) ** 2)))


def stable_lr(model: nn.Module, X: Any, fraction: float = 0.5) -> float:
    """``fraction / λ_max(Θ₀)``: gradient descent on ½Σ‖f − y‖² is stable for ``η < 2/λ_max``.

    ``X`` : (N, ...) inputs of any shape the model takes. For a model with O outputs, Θ₀ is the (N·O, N·O) matrix
    ``Θ[(n, o), (m, c)] = ∇f_o(x_n)·∇f_c(x_m)`` - the function-space Hessian of the summed squared loss - so the
    bound holds for every output shape. (For cross-entropy, whose Hessian in f is at most ½ of that per example,
    the same η is stable too.)
    """
    fraction = check_positive(fraction, "fraction")
    return _model.stable_lr(empirical.ntk(model, X), fraction)


def _scalar(out: torch.Tensor, n: int) -> torch.Tensor:
    if out.numel() != n:
        raise ValidationError("model output", f"one number per example ({n})", f"shape {tuple(out.shape)}",
                              "Lazy training fits scalar targets: use a model with one output.")
    return out.reshape(n)


class _SideBySide(nn.Module):
    """``x -> [net(x), lin(x)]`` of shape (N, 2), for two scalar-output models trained in one loop."""

    def __init__(self, net: nn.Module, lin: nn.Module):
        super().__init__()
        self.net, self.lin = net, lin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        return torch.stack([_scalar(self.net(x), n), _scalar(self.lin(x), n)], 1)


class Scaled(nn.Module):
    """Chizat & Bach's centred, scaled model ``h(x; w) = α·(g(x; w) − g(x; w₀))``: (N, ...) -> g's output shape.

    ``model`` is g, whose parameters are the trainable weights w (trained in place when this module is trained);
    ``initial`` a frozen copy of g at w₀ (no trainable parameters, so :mod:`kernelscope.empirical` and the
    optimisers see only w). ``h(x; w₀) = 0`` for every α, its NTK is ``α² Θ_g`` and its Hessian in w is
    ``α ∇²g``.
    """

    def __init__(self, model: nn.Module, alpha: float):
        super().__init__()
        self.model, self.alpha = model, alpha
        self.initial = copy.deepcopy(model).requires_grad_(False)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * (self.model(x) - self.initial(x))


def scaled(model: nn.Module, alpha: float) -> Scaled:
    """``h = α·(g(w) − g(w₀))`` of a torch model g at its current weights w₀ (Chizat, Oyallon & Bach 2019, §2).

    Trained by gradient descent on ``L(h)/α²`` (step η), i.e. on ``L(h)`` with step ``η/α²`` (what
    :func:`train_lazy` does with ``alpha=``), h moves in function space by the same first step for every α -
    ``Δh = −η Θ_g ∇_h L`` - while the weights move by ``Δw = −(η/α) ∇g ∇_h L``: O(1/α). Large α is lazy training
    (the net stays its linearisation, with the kernel Θ_g of w₀), small α leaves the kernel regime. ``model`` must
    have its parameters (a lazily built ``nets`` network: pass ``in_dim=`` or call it once).
    """
    check_module(model)
    trainable_parameters(model)  # w: an error that says how to get them when there are none yet
    return Scaled(model, check_positive(alpha, "alpha"))


def train_lazy(model: nn.Module, X: Any, y: Any, X_test: Any, *, lr: float | None = None, steps: int = 300,
               records: int = 8, ntk_infinite: tuple[Any, Any] | None = None, alpha: float | None = None,
               y_test: Any = None) -> LazyRun:
    """Train a copy of ``model`` and its linearisation with full-batch gradient descent; record the lazy metrics.

    Parameters
    ----------
    model : scalar-output ``nn.Module`` g (left untouched: a copy is trained).
    X : (N, d) training inputs ; y : (N,) targets ; X_test : (M, d) inputs where predictions are compared.
    lr : step size η on ``½ Σ (f − y)²/α²`` (α = 1 without ``alpha``; default :func:`stable_lr` of g,
        ``0.5/λ_max(Θ_g)``, which is stable for every α) ; steps : gradient-descent steps.
    records : number of times (evenly spaced, first and last included) the metrics are taken.
    ntk_infinite : optional (Θ∞(X, X) of shape (N, N), Θ∞(X_test, X) of shape (M, N)) of g, to also compare with
        the infinite-width gradient-flow prediction (same f₀ as the network).
    alpha : train the centred, scaled model ``α·(g(w) − g(w₀))`` of :func:`scaled` on ``L/α²`` (Chizat & Bach's
        laziness knob; f₀ = 0) instead of g itself.
    y_test : optional (M,) targets at ``X_test``: the test errors of the net and of its linearisation are recorded.

    Returns
    -------
    LazyRun. A NaN/inf loss stops training with a warning naming the step; what was recorded is kept.
    """
    Xt = as_tensor(X, "X", ndim=2)
    yt = as_tensor(y, "y", ndim=1)
    Xs = as_tensor(X_test, "X_test", ndim=2)
    check_same_rows(Xt, yt, "X", "y")
    ys = None if y_test is None else as_tensor(y_test, "y_test", ndim=1)
    if ys is not None:
        check_same_rows(Xs, ys, "X_test", "y_test")
    steps = check_int(steps, "steps", minimum=1)
    records = check_int(records, "records", minimum=2)
    scale = 1.0 if alpha is None else check_positive(alpha, "alpha")
    n = Xt.shape[0]
    net = copy.deepcopy(model)
    with torch.no_grad():
        _scalar(net(Xt), n)  # a scalar-output model, checked before any work
    lr = stable_lr(net, Xt) if lr is None else check_positive(lr, "lr")
    if alpha is not None:
        net = scaled(net, scale)
    step = lr / scale**2  # the step on ½Σ(f − y)² that is η on ½Σ(f − y)²/α²
    lin = empirical.linearize(net)
    w0 = flat_weights(net)
    theta0 = torch.as_tensor(empirical.ntk(net, Xt))  # (N, N), α² Θ_g
    with torch.no_grad():
        f0_train = _scalar(net(Xt), n)
        f0_test = _scalar(net(Xs), Xs.shape[0])
    theta0_st = torch.as_tensor(empirical.ntk(net, Xs, Xt))  # (M, N), at w₀
    run = LazyRun(width=0, lr=lr, steps=steps, steps_done=0, n_params=int(w0.numel()), f0_test=f0_test.tolist(),
                  alpha=alpha)
    at = set(np.unique(np.linspace(0, steps, records).round().astype(int)).tolist())

    def record(step: int, loss: float, out: torch.Tensor, diverged: bool) -> None:
        if step not in at or diverged:
            return
        with torch.no_grad():
            f_net, f_lin = _scalar(net(Xs), Xs.shape[0]), _scalar(lin(Xs), Xs.shape[0])
        theta = torch.as_tensor(empirical.ntk(net, Xt))
        run.record_steps.append(step)
        run.loss_net.append(float(0.5 * ((out[:, 0] - yt) ** 2).sum()))
        run.loss_lin.append(float(0.5 * ((out[:, 1] - yt) ** 2).sum()))
        run.weight_change.append(float(torch.linalg.norm(flat_weights(net) - w0) / torch.linalg.norm(w0)))
        run.ntk_change.append(float(torch.linalg.norm(theta - theta0) / torch.linalg.norm(theta0)))
        run.dist_net_lin.append(_rms(f_net, f_lin))
        if ys is not None:
            run.test_error_net.append(_rms(f_net, ys))
            run.test_error_lin.append(_rms(f_lin, ys))

    # the network and its linearisation side by side: one SGD over both, on the sum of their (independent) losses
    res = train(_SideBySide(net, lin), Xt, torch.stack([yt, yt], 1), loss="mse", optimizer="sgd", lr=step,
                steps=steps, callback=record, what="lazy training (network and linearisation)")
    run.steps_done, run.stopped_at = res.steps_done, res.diverged_at

    with torch.no_grad():
        f_net, f_lin = _scalar(net(Xs), Xs.shape[0]), _scalar(lin(Xs), Xs.shape[0])
    run.f_net_test, run.f_lin_test = f_net.tolist(), f_lin.tolist()
    t = run.steps_done
    f_flow = torch.as_tensor(gradient_flow(theta0, theta0_st, yt, t, lr=step, f0_train=f0_train,
                                           f0_test=f0_test).test)
    run.f_flow_test = f_flow.reshape(-1).tolist()
    run.dist_net_flow = _rms(f_net, f_flow.reshape(-1))
    run.dist_lin_flow = _rms(f_lin, f_flow.reshape(-1))
    if ntk_infinite is not None:
        k_tr = as_tensor(ntk_infinite[0], "ntk_infinite[0]", ndim=2) * scale**2
        k_st = as_tensor(ntk_infinite[1], "ntk_infinite[1]", ndim=2) * scale**2
        f_inf = torch.as_tensor(gradient_flow(k_tr, k_st, yt, t, lr=step, f0_train=f0_train,
                                              f0_test=f0_test).test)
        run.f_inf_test = f_inf.reshape(-1).tolist()
        run.dist_net_inf = _rms(f_net, f_inf.reshape(-1))
    return run


#: The lazy metrics whose value at the end of training the sweeps fit against the width or α.
SWEPT = ("weight_change", "ntk_change", "dist_net_lin")


def _fits(xs: list[float], runs: list[LazyRun], infinite: bool) -> tuple[dict[str, float], dict[str, float]]:
    """Log-log lines ``log v = slope·log x + intercept`` of the end-of-training metrics against ``xs``
    (:func:`kernelscope.stats.fit_slope`): ``(slopes, intercepts)``, keyed by metric."""
    values = {key: [getattr(r, key)[-1] for r in runs] for key in SWEPT}
    values["dist_net_flow"] = [r.dist_net_flow for r in runs]
    if infinite:
        values["dist_net_inf"] = [r.dist_net_inf for r in runs]
    lines = {key: fit_slope(xs, v) for key, v in values.items()}
    return {k: v[0] for k, v in lines.items()}, {k: v[1] for k, v in lines.items()}


@dataclass
class LazySweep:
    """What :func:`lazy_width_sweep` returns: one :class:`LazyRun` per width (``runs[i].width``), the step size
    ``lr`` they share, and the log-log slopes against the width of the metrics at the end of training
    (``slopes[metric]`` for ``weight_change``, ``ntk_change``, ``dist_net_lin``, ``dist_net_flow`` and, with the
    infinite-width NTK, ``dist_net_inf``; theory ≈ −½ in the NTK parameterisation, ≈ 0 in μP), with the
    intercepts of the fitted lines (``value ≈ e^intercept · m^slope``)."""

    depth: int
    lr: float
    steps: int
    runs: list[LazyRun]
    slopes: dict[str, float]
    parameterization: str = "ntk"
    intercepts: dict[str, float] = field(default_factory=dict)


def lazy_width_sweep(X: Any, y: Any, X_test: Any, widths: Iterable[int], *, depth: int = 2, steps: int = 300,
                     lr: float | None = None, seed: int = 0, activation: str = "relu", w_std: float = 1.0,
                     b_std: float = 0.0, checkpoint: Callable[[str, Callable[[], Any]], Any] | None = None,
                     ntk_infinite: tuple[Any, Any] | None = None, track: Callable | None = None,
                     tag: str = "lazy", parameterization: str = "ntk", y_test: Any = None) -> LazySweep:
    """:func:`train_lazy` for ``mlp(width=m)`` over ``widths``, with the fitted log-log slopes (theory ≈ −½).

    ``lr`` defaults to :func:`stable_lr` of the widest network (the closest to the width-independent limit), the
    same for every width. ``parameterization``: ``'ntk'`` or ``'mup'`` (:mod:`kernelscope.nets.finite`; μP keeps
    the features moving as the width grows). ``checkpoint(name, compute)`` (e.g. ``StepContext.checkpoint``) saves
    each finished :class:`LazyRun` (and the default step size) so that an interrupted sweep resumes.
    """
    widths = [check_int(m, "widths", minimum=1) for m in widths]
    if not widths:
        raise ValidationError("widths", "at least one width", "an empty list")
    Xt = as_tensor(X, "X", ndim=2)
    d = Xt.shape[1]
    # μP's runs are saved under their own names; the NTK ones under the names they always had
    tag = tag if parameterization == "ntk" else f"{tag}_{parameterization}"

    def build(m):
        return mlp(d, m, depth=depth, activation=activation, w_std=w_std, b_std=b_std, seed=seed,
                   parameterization=parameterization)

    if lr is None:
        # keyed by the widest width: a rerun with a wider net added gets that net's step size, as a fresh run does
        lr = checkpoint(f"{tag}_lr_widest{max(widths)}", lambda: stable_lr(build(max(widths)), Xt)) if checkpoint else \
            stable_lr(build(max(widths)), Xt)
    runs = []
    hidden = depth - 1  # depth counts weight layers (mlp's convention); what a reader is told counts hidden ones
    it = track(widths, f"widths ({hidden} hidden layer{'s' if hidden != 1 else ''})") if track else widths
    for m in it:
        def compute(m=m):
            r = train_lazy(build(m), Xt, y, X_test, lr=lr, steps=steps, ntk_infinite=ntk_infinite, y_test=y_test)
            r.width = m
            return r

        runs.append(checkpoint(f"{tag}_m{m}_lr{lr:.12g}", compute) if checkpoint else compute())
    slopes, intercepts = _fits([r.width for r in runs], runs, ntk_infinite is not None)
    return LazySweep(depth, lr, steps, runs, slopes, parameterization, intercepts)


@dataclass
class AlphaSweep:
    """What :func:`lazy_alpha_sweep` returns: one :class:`LazyRun` per output scale α (``runs[i].alpha``) of one
    network, the step size η on ``L/α²`` they share, and the log-log slopes against α of the end-of-training
    metrics, fitted over the ``alpha ≥ 1`` runs (theory −1: the weights, the kernel and the gap to the
    linearisation all move by O(1/α)), with the intercepts of the fitted lines (``value ≈ e^intercept · α^slope``).
    """

    lr: float
    steps: int
    runs: list[LazyRun]
    slopes: dict[str, float]
    intercepts: dict[str, float]


def lazy_alpha_sweep(model: nn.Module, X: Any, y: Any, X_test: Any, alphas: Iterable[float], *, steps: int = 300,
                     lr: float | None = None, y_test: Any = None, records: int = 8,
                     checkpoint: Callable[[str, Callable[[], Any]], Any] | None = None,
                     track: Callable | None = None, tag: str = "alpha") -> AlphaSweep:
    """:func:`train_lazy` of ``α·(g(w) − g(w₀))`` (:func:`scaled`, ``g = model``) on ``L/α²`` for each α.

    The same step η for every α (default :func:`stable_lr` of g): the linearised models then follow one and the
    same function-space trajectory, and what differs is how far the net leaves it. ``checkpoint(name, compute)``
    saves each finished run under ``tag``. Returns :class:`AlphaSweep`.
    """
    alphas = [check_positive(a, "alphas") for a in alphas]
    if not alphas:
        raise ValidationError("alphas", "at least one output scale α > 0", "an empty list")
    Xt = as_tensor(X, "X", ndim=2)
    if lr is None:
        lr = checkpoint(f"{tag}_lr", lambda: stable_lr(model, Xt)) if checkpoint else stable_lr(model, Xt)
    runs = []
    for a in (track(alphas, "output scales α") if track else alphas):
        def compute(a=a):
            return train_lazy(model, Xt, y, X_test, lr=lr, steps=steps, records=records, alpha=a, y_test=y_test)

        runs.append(checkpoint(f"{tag}_a{a:.6g}_lr{lr:.12g}", compute) if checkpoint else compute())
    lazy = [r for r in runs if r.alpha >= 1]
    return AlphaSweep(lr, steps, runs, *_fits([r.alpha for r in lazy], lazy, False))


@dataclass
class CurvatureRatio:
    """What :func:`curvature_ratio` returns, one entry per input x_i (NumPy, (N,) each): ``hessian_norm``
    ``‖∇²_w f(x_i; w₀)‖`` (operator norm), ``gradient_sq`` ``‖∇_w f(x_i; w₀)‖² = Θ(x_i, x_i)``, ``ratio`` their
    quotient; ``n_params`` P and ``n_hvp`` the Hessian-vector products spent."""

    hessian_norm: np.ndarray
    gradient_sq: np.ndarray
    ratio: np.ndarray
    n_params: int
    n_hvp: int


#: ARPACK's Lanczos basis for one eigenpair (``scipy.sparse.linalg.eigsh``: ncv = max(2k + 1, 20)), in vectors of P
LANCZOS_VECTORS = 20


def curvature_ratio(model: nn.Module, X: Any, *, tol: float = 1e-8, seed: int = 0, method: str = "lanczos",
                    max_iter: int = 2000) -> CurvatureRatio:
    """How far a model is from its linearisation at its current weights: ``‖∇²f(x)‖ / ‖∇f(x)‖²`` per input.

    Chizat, Oyallon & Bach (2019) show that training stays lazy when ``κ = ‖y − f₀‖·‖∇²f‖/‖∇f‖²`` is small: a
    step that changes f by O(‖y − f₀‖) moves the weights by ``‖y − f₀‖/‖∇f‖`` and so changes the gradient by a
    relative ``κ``. For the two-layer NTK net ``(w₂/√m) Σ b_i σ(w₁ a_iᵀx/√d)`` with ReLU the Hessian couples each
    ``b_i`` to its ``a_i`` only, ``∂²f/∂b_i∂a_i = w₁w₂ 1[a_iᵀx > 0] x/√(md)``, so ``‖∇²f‖ = w₁w₂‖x‖/√(md)`` while
    ``‖∇f‖² = Θ(x, x)`` = O(1): the ratio falls like ``m^{-1/2}`` (for deep nets too: Liu, Zhu & Belkin 2020). In
    μP it does not fall, and for :func:`scaled` it is divided by α.

    Parameters
    ----------
    model : scalar-output ``nn.Module`` ; X : (N, d) inputs.
    tol : relative accuracy of the operator norm, the largest |eigenvalue| of the Hessian H in w, from
        Hessian-vector products only (the P×P matrix is never formed) ; seed : the start vector.
    method : ``'lanczos'`` - :func:`kernelscope.optim.hessian_eigs` (``which='LM'``), fast and accurate, holding
        about 20 vectors of P weights (refused up front, naming the GB, when they do not fit); ``'power'`` -
        :func:`kernelscope.linsys.power_iteration` on ``H²`` (``‖H‖ = √λ_max(H²)``; a ±λ pair, as ReLU nets have,
        is one eigenvalue of H²), three vectors of P, slower where the top |eigenvalues| are close.
    max_iter : power-iteration steps at most (each two Hessian-vector products).

    Returns :class:`CurvatureRatio`.
    """
    from .. import linsys

    check_module(model)
    check_choice(method, "method", ("lanczos", "power"))
    Xt = as_tensor(X, "X", ndim=2, dtype=_model.model_dtype(model), device=_model.model_device(model))
    with torch.no_grad():
        _scalar(model(Xt), Xt.shape[0])
    layout = Weights.of(model)
    w0 = layout.read(model)
    P = int(w0.numel())
    if method == "lanczos":
        check_memory(LANCZOS_VECTORS * P * 8, f"Lanczos on the Hessian of {P} weights ({LANCZOS_VECTORS} vectors)",
                     "Use method='power' (power iteration on H², three vectors of P).")
    hess, grad_sq, n_hvp = [], [], 0
    for x in Xt:
        def f(w: torch.Tensor, x: torch.Tensor = x) -> torch.Tensor:  # f(x; w), a scalar
            return outputs(model, x[None], layout.unflatten(w))[0, 0]

        if method == "lanczos":
            eig = optim.hessian_eigs(f, w0, k=1, which="LM", tol=tol, seed=seed)
            hess.append(float(np.abs(eig.eigenvalues).max()))
            n_hvp += eig.n_hvp
        else:
            hv = optim.hvp(f, w0)
            res = linsys.power_iteration(lambda v, hv=hv: hv(hv(v)), n=P, seed=seed, tol=tol, max_iter=max_iter)
            hess.append(float(np.sqrt(max(res.eigenvalue, 0.0))))
            n_hvp += 2 * res.iterations
        grad_sq.append(float(torch.sum(optim.gradient(f, w0) ** 2)))
    h, g = np.array(hess), np.array(grad_sq)
    return CurvatureRatio(h, g, h / g, P, n_hvp)


@dataclass
class NTKConvergence:
    """Relative Frobenius error ``‖Θ̂_m − Θ∞‖/‖Θ∞‖`` of the empirical NTK of width-m networks (one row per seed)."""

    widths: list[int]
    errors: list[list[float]]  # (n_widths, n_seeds)
    slope: float



def ntk_convergence(net: Any, X: Any, widths: Iterable[int], *, seeds: int = 3, seed: int = 0,
                    method: str = "auto") -> NTKConvergence:
    """Empirical NTK of ``net.finite(seed, width=m)`` against the infinite-width ``net.kernel(X).ntk``.

    ``net`` is a :mod:`kernelscope.nets` description (anything with ``kernel(x).ntk`` and ``finite(seed, width)``).
    The error falls like ``m^{-1/2}`` (a Monte Carlo average over m units).
    """
    Xt = as_tensor(X, "X", ndim=2)
    seeds = check_int(seeds, "seeds", minimum=1)
    K_inf = torch.as_tensor(net.kernel(Xt).ntk)
    widths = [check_int(m, "widths", minimum=1) for m in widths]
    errors = []
    for m in widths:
        row = []
        for s in range(seeds):
            model = net.finite(seed=seed + 1000 * s + m, width=m)
            K = torch.as_tensor(empirical.ntk(model, Xt, method=method))
            row.append(float(torch.linalg.norm(K - K_inf) / torch.linalg.norm(K_inf)))
        errors.append(row)
    slope = fit_slope(widths, [float(np.mean(r)) for r in errors])[0]
    return NTKConvergence(widths, errors, slope)


