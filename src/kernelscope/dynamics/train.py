"""The one training loop of the library: a torch model, a loss, an optimiser, and divergence detection.

``train(model, X, y, loss=..., optimizer=..., lr=..., steps=...)`` takes ``steps`` optimiser steps and evaluates
the loss before each one and once after the last (``steps + 1`` values, entry 0 being the initial model). It stops
early - with a :class:`~kernelscope._arrays.KernelscopeWarning` naming the step and ``diverged_at`` in the
result - when the loss becomes NaN/inf or grows beyond ``explode`` times its initial value.

Losses (:data:`LOSSES`), per example, for outputs ``f`` of shape (B, O):

- ``'mse'``: ``ℓ = ½ ‖f − y‖²`` (targets (B, O), or (B,) for one output);
- ``'cross_entropy'``: ``ℓ = −log softmax(f)_y`` (integer labels (B,)),

summed over the batch (``reduction='sum'``) or averaged (``'mean'``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._arrays import ValidationError, as_generator, check_choice, check_int, check_nonnegative, check_positive, warn
from ..nets.finite import materialize_for

__all__ = ["train", "TrainResult", "loss_value", "LOSSES", "OPTIMIZERS", "diverged", "optimizer_for", "batch_indices"]

LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")


def loss_value(out: torch.Tensor, y: torch.Tensor, loss: str, reduction: str = "sum") -> torch.Tensor:
    """The loss of outputs ``out`` (B, O) against targets ``y`` (module docstring); a 0-d tensor with its graph."""
    if loss == "mse":
        per_example = ((out - y.reshape(out.shape)) ** 2).sum(1)  # (B,) ‖f − y‖²
        return 0.5 * (per_example.sum() if reduction == "sum" else per_example.mean())
    return nn.functional.cross_entropy(out, y, reduction=reduction)


def loss_derivative(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """``ℓ' = ∂ℓ/∂f`` (B, O) of :func:`loss_value`'s losses per example, without a graph.

    ``'mse'``: ``f − y``. ``'cross_entropy'`` (−Σ y log softmax(f)): ``softmax(f)·Σy − y`` for label rows ``y``
    (B, O) (one-hot, or soft labels whose totals are kept), or integer labels (B,).
    """
    out = out.detach()
    if loss == "mse":
        return out - y.reshape(out.shape)
    if y.ndim == 1:
        y = nn.functional.one_hot(y, out.shape[1]).to(out.dtype)
    return torch.softmax(out, dim=1) * y.sum(1, keepdim=True) - y


def diverged(value: float, first: float, explode: float) -> bool:
    """True when a loss ``value`` is NaN/inf or above ``explode`` times the initial loss ``first``."""
    return not math.isfinite(value) or (math.isfinite(first) and first > 0 and value > explode * first)


def optimizer_for(params: list[torch.Tensor], optimizer: str, lr: float, momentum: float = 0.0,
                  weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
                  ) -> torch.optim.Optimizer:
    """``'sgd'`` (with ``momentum`` if given), ``'momentum'`` (SGD, momentum 0.9 unless given), ``'adam'``,
    ``'adamw'`` (``betas``, ``eps``); ``weight_decay`` as torch defines it for each."""
    if optimizer in ("sgd", "momentum"):
        return torch.optim.SGD(params, lr=lr, momentum=effective_momentum(optimizer, momentum),
                               weight_decay=weight_decay)
    cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


def effective_momentum(optimizer: str, momentum: float) -> float:
    """The momentum :func:`optimizer_for` gives SGD: ``momentum``, or 0.9 for ``'momentum'`` when it is 0."""
    return 0.9 if optimizer == "momentum" and momentum == 0.0 else momentum


def check_betas(betas) -> tuple[float, float]:
    """Adam's ``(β₁, β₂)``, each in [0, 1)."""
    try:
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise ValidationError("betas", "two numbers (β₁, β₂) in [0, 1)", repr(betas)) from None
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValidationError("betas", "two numbers (β₁, β₂) in [0, 1)", repr(betas),
                              "torch's default is (0.9, 0.999).")
    return b1, b2


def batch_indices(n: int, batch_size: int | None, steps: int, seed: int | torch.Generator = 0
                  ) -> list[torch.Tensor | None]:
    """The examples of each of ``steps`` steps: None (full batch) for ``batch_size=None``, else the next
    ``batch_size`` indices of a seeded permutation of ``range(n)``, a fresh one whenever fewer than ``batch_size``
    remain (the rest of the epoch is dropped)."""
    if batch_size is None:
        return [None] * steps
    gen = as_generator(seed)
    order, cursor, out = torch.arange(n), n, []
    for _ in range(steps):
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        out.append(order[cursor:cursor + batch_size])
        cursor += batch_size
    return out


@dataclass
class TrainResult:
    """What :func:`train` returns.

    losses : (steps_done + 1,) the loss before each step taken and after the last one (full batch: of the
        whole training set; mini-batch: of the step's batch); with divergence, the last entry is the bad one.
    steps_done : optimiser steps taken.  diverged_at : the step whose loss was NaN/inf/exploding, else None.
    """

    losses: np.ndarray
    steps_done: int
    diverged_at: int | None


def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss: str = "mse", reduction: str = "sum",
          optimizer: str = "sgd", lr: float, momentum: float = 0.0, weight_decay: float = 0.0, steps: int,
          batch_size: int | None = None, seed: int | torch.Generator = 0, explode: float = 1e12,
          betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
          batches: Sequence[torch.Tensor | None] | None = None,
          callback: Callable[[int, float, torch.Tensor, bool], None] | None = None,
          track: Callable[[Iterable[int], str], Iterable[int]] | None = None, desc: str = "training",
          what: str = "training") -> TrainResult:
    """Train ``model`` in place for ``steps`` optimiser steps on ``loss``; stop at divergence with a warning.

    Parameters
    ----------
    model : ``nn.Module`` mapping X (N, ...) to (N, O) (or (N,) for one output); its trainable parameters move.
    X, y : tensors; y (N,) or (N, O) targets for ``'mse'``, (N,) integer labels for ``'cross_entropy'``.
    loss, reduction : see the module docstring.
    optimizer : one of :data:`OPTIMIZERS`; ``lr``, ``momentum``, ``weight_decay``, ``betas``, ``eps`` as torch
        defines them (:func:`optimizer_for`).
    steps : optimiser steps. batch_size : None for full batch, else the next ``batch_size`` points of a seeded
        permutation (a new one each epoch; ``seed``; :func:`batch_indices`). batches : the examples of each step
        given explicitly (``steps`` index tensors, None for all), e.g. from :func:`batch_indices`; overrides both.
    explode : the loss growing beyond ``explode`` times its initial value counts as divergence.
    callback : ``callback(step, loss, out, diverged)`` at each evaluation (before step ``step``; ``out`` the
        model's output on the batch, detached; ``diverged`` True at the evaluation where training stops for
        divergence), e.g. to record snapshots.
    track : progress wrapper ``track(iterable, desc)``. what : names the training in the warning.

    Returns
    -------
    TrainResult. Diverging training stops at the bad loss (no step is taken from it), warns with
    :class:`~kernelscope._arrays.KernelscopeWarning` and records ``diverged_at``.
    """
    if not isinstance(model, nn.Module):
        raise ValidationError("model", "a torch.nn.Module", type(model).__name__)
    check_choice(loss, "loss", LOSSES)
    check_choice(reduction, "reduction", ("sum", "mean"))
    check_choice(optimizer, "optimizer", OPTIMIZERS)
    lr = check_positive(lr, "lr")
    momentum = check_nonnegative(momentum, "momentum")
    weight_decay = check_nonnegative(weight_decay, "weight_decay")
    steps = check_int(steps, "steps", minimum=0)
    explode = check_positive(explode, "explode")
    betas, eps = check_betas(betas), check_positive(eps, "eps")
    n = X.shape[0]
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", minimum=1, maximum=n)
    materialize_for(model, X)  # a nets finite network not called yet: draw its parameters for these inputs
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValidationError("model", "a model with trainable parameters", "none",
                              "Build the model's parameters first (e.g. net.finite(seed, in_dim=d)).")
    opt = optimizer_for(params, optimizer, lr, momentum, weight_decay, betas, eps)
    if batches is None:
        batches = batch_indices(n, batch_size, steps, seed)
    elif len(batches) < steps:
        raise ValidationError("batches", f"one index tensor (or None) per step ({steps})", f"{len(batches)}")
    losses = np.full(steps + 1, np.nan)
    diverged_at: int | None = None
    it: Iterable[int] = range(steps + 1)
    if track is not None:
        it = track(it, desc)
    step = 0
    for step in it:
        # step s evaluates the model after s steps; the last one only evaluates
        idx = None if step == steps else batches[step]
        xb, yb = (X, y) if idx is None else (X[idx], y[idx])
        out = model(xb)
        out2 = out.reshape(out.shape[0], -1)
        value = loss_value(out2, yb, loss, reduction)
        lv = float(value.detach())
        losses[step] = lv
        bad = diverged(lv, losses[0], explode)
        if callback is not None:
            callback(step, lv, out.detach(), bad)
        if bad:
            diverged_at = step
            warn(f"{what} diverged: the loss became {lv:.4g} at step {step} (initial {losses[0]:.4g}, lr={lr:.3g}); "
                 "stopped there, what was recorded before is kept. Use a smaller lr.")
            break
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    stop = step + 1
    return TrainResult(losses[:stop], stop - 1 if diverged_at is None else diverged_at, diverged_at)
