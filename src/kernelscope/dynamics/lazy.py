"""Lazy training (THEORY.md §5): a network and its linearisation trained side by side.

Full-batch gradient descent ``w ← w − η ∇L`` on ``L = ½ Σ_i (f(x_i) − y_i)²`` (``torch.optim.SGD(lr=η)`` on the
summed loss) for the network and for ``linearize(network)``. Recorded along the way:

- the relative weight change ``‖w_t − w₀‖ / ‖w₀‖``,
- the relative NTK change ``‖Θ_t − Θ₀‖_F / ‖Θ₀‖_F`` on the training inputs,
- the RMS distance on test inputs between the trained net, the trained linearised net and the kernel
  prediction ``f_t(x) = f₀(x) + Θ(x, X) Θ⁻¹ (I − e^{−ηΘt})(y − f₀)`` of :func:`kernelscope.predict.gradient_flow`
  (with the empirical Θ₀, and optionally with the infinite-width NTK).

For width m the first three shrink like ``m^{-1/2}``: :func:`lazy_width_sweep` fits the log-log slopes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import _model, empirical
from .._arrays import ValidationError, as_tensor, check_int, check_positive, check_same_rows
from .._model import flat_weights
from ..nets.finite import mlp
from ..predict import gradient_flow
from ..stats import fit_slope
from .train import train

__all__ = ["LazyRun", "train_lazy", "LazySweep", "lazy_width_sweep", "ntk_convergence", "NTKConvergence",
           "stable_lr"]


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


def train_lazy(model: nn.Module, X: Any, y: Any, X_test: Any, *, lr: float | None = None, steps: int = 300,
               records: int = 8, ntk_infinite: tuple[Any, Any] | None = None) -> LazyRun:
    """Train a copy of ``model`` and its linearisation with full-batch gradient descent; record the lazy metrics.

    Parameters
    ----------
    model : scalar-output ``nn.Module`` (left untouched: a copy is trained).
    X : (N, d) training inputs ; y : (N,) targets ; X_test : (M, d) inputs where predictions are compared.
    lr : step size η (default :func:`stable_lr`, ``0.5/λ_max(Θ₀)``) ; steps : gradient-descent steps.
    records : number of times (evenly spaced, first and last included) the metrics are taken.
    ntk_infinite : optional (Θ∞(X, X) of shape (N, N), Θ∞(X_test, X) of shape (M, N)), to also compare with the
        infinite-width gradient-flow prediction (same f₀ as the network).

    Returns
    -------
    LazyRun. A NaN/inf loss stops training with a warning naming the step; what was recorded is kept.
    """
    Xt = as_tensor(X, "X", ndim=2)
    yt = as_tensor(y, "y", ndim=1)
    Xs = as_tensor(X_test, "X_test", ndim=2)
    check_same_rows(Xt, yt, "X", "y")
    steps = check_int(steps, "steps", minimum=1)
    records = check_int(records, "records", minimum=2)
    n = Xt.shape[0]
    net = copy.deepcopy(model)
    with torch.no_grad():
        _scalar(net(Xt), n)  # a scalar-output model, checked before any work
    lr = stable_lr(net, Xt) if lr is None else check_positive(lr, "lr")
    lin = empirical.linearize(net)
    w0 = flat_weights(net)
    theta0 = torch.as_tensor(empirical.ntk(net, Xt))  # (N, N)
    with torch.no_grad():
        f0_train = _scalar(net(Xt), n)
        f0_test = _scalar(net(Xs), Xs.shape[0])
    run = LazyRun(width=0, lr=lr, steps=steps, steps_done=0, n_params=int(w0.numel()),
                  f0_test=f0_test.tolist())
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

    # the network and its linearisation side by side: one SGD over both, on the sum of their (independent) losses
    res = train(_SideBySide(net, lin), Xt, torch.stack([yt, yt], 1), loss="mse", optimizer="sgd", lr=lr,
                steps=steps, callback=record, what="lazy training (network and linearisation)")
    run.steps_done, run.stopped_at = res.steps_done, res.diverged_at

    with torch.no_grad():
        f_net, f_lin = _scalar(net(Xs), Xs.shape[0]), _scalar(lin(Xs), Xs.shape[0])
    run.f_net_test, run.f_lin_test = f_net.tolist(), f_lin.tolist()
    t = run.steps_done
    theta0_st = torch.as_tensor(empirical.ntk(model, Xs, Xt))  # (M, N), at w₀ (the caller's model)
    f_flow = torch.as_tensor(gradient_flow(theta0, theta0_st, yt, t, lr=lr, f0_train=f0_train, f0_test=f0_test).test)
    run.f_flow_test = f_flow.reshape(-1).tolist()
    run.dist_net_flow = _rms(f_net, f_flow.reshape(-1))
    run.dist_lin_flow = _rms(f_lin, f_flow.reshape(-1))
    if ntk_infinite is not None:
        k_tr = as_tensor(ntk_infinite[0], "ntk_infinite[0]", ndim=2)
        k_st = as_tensor(ntk_infinite[1], "ntk_infinite[1]", ndim=2)
        f_inf = torch.as_tensor(gradient_flow(k_tr, k_st, yt, t, lr=lr, f0_train=f0_train, f0_test=f0_test).test)
        run.f_inf_test = f_inf.reshape(-1).tolist()
        run.dist_net_inf = _rms(f_net, f_inf.reshape(-1))
    return run


@dataclass
class LazySweep:
    """What :func:`lazy_width_sweep` returns: one :class:`LazyRun` per width (``runs[i].width``), the step size
    ``lr`` they share, and the log-log slopes against the width of the metrics at the end of training
    (``slopes[metric]`` for ``weight_change``, ``ntk_change``, ``dist_net_lin``, ``dist_net_flow`` and, with the
    infinite-width NTK, ``dist_net_inf``; theory ≈ −½)."""

    depth: int
    lr: float
    steps: int
    runs: list[LazyRun]
    slopes: dict[str, float]


def lazy_width_sweep(X: Any, y: Any, X_test: Any, widths: Iterable[int], *, depth: int = 2, steps: int = 300,
                     lr: float | None = None, seed: int = 0, activation: str = "relu", w_std: float = 1.0,
                     b_std: float = 0.0, checkpoint: Callable[[str, Callable[[], Any]], Any] | None = None,
                     ntk_infinite: tuple[Any, Any] | None = None, track: Callable | None = None,
                     tag: str = "lazy") -> LazySweep:
    """:func:`train_lazy` for ``mlp(width=m)`` over ``widths``, with the fitted log-log slopes (theory ≈ −½).

    ``lr`` defaults to :func:`stable_lr` of the widest network (the closest to the width-independent limit), the
    same for every width. ``checkpoint(name, compute)`` (e.g. ``StepContext.checkpoint``) saves each finished
    :class:`LazyRun` (and the default step size) so that an interrupted sweep resumes.
    """
    widths = [check_int(m, "widths", minimum=1) for m in widths]
    if not widths:
        raise ValidationError("widths", "at least one width", "an empty list")
    Xt = as_tensor(X, "X", ndim=2)
    d = Xt.shape[1]

    def build(m):
        return mlp(d, m, depth=depth, activation=activation, w_std=w_std, b_std=b_std, seed=seed)

    if lr is None:
        # keyed by the widest width: a rerun with a wider net added gets that net's step size, as a fresh run does
        lr = checkpoint(f"{tag}_lr_widest{max(widths)}", lambda: stable_lr(build(max(widths)), Xt)) if checkpoint else \
            stable_lr(build(max(widths)), Xt)
    runs = []
    hidden = depth - 1  # depth counts weight layers (mlp's convention); what a reader is told counts hidden ones
    it = track(widths, f"widths ({hidden} hidden layer{'s' if hidden != 1 else ''})") if track else widths
    for m in it:
        def compute(m=m):
            r = train_lazy(build(m), Xt, y, X_test, lr=lr, steps=steps, ntk_infinite=ntk_infinite)
            r.width = m
            return r

        runs.append(checkpoint(f"{tag}_m{m}_lr{lr:.12g}", compute) if checkpoint else compute())
    ws = [r.width for r in runs]
    slopes = {key: fit_slope(ws, [getattr(r, key)[-1] for r in runs])[0]
              for key in ("weight_change", "ntk_change", "dist_net_lin")}
    slopes["dist_net_flow"] = fit_slope(ws, [r.dist_net_flow for r in runs])[0]
    if ntk_infinite is not None:
        slopes["dist_net_inf"] = fit_slope(ws, [r.dist_net_inf for r in runs])[0]
    return LazySweep(depth, lr, steps, runs, slopes)


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


