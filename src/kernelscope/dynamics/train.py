"""The one training loop of the library: a torch model, a loss, an optimiser, and divergence detection.

``train(model, X, y, loss=..., optimizer=..., lr=..., steps=...)`` takes ``steps`` optimiser steps and evaluates
the loss before each one and once after the last (``steps + 1`` values, entry 0 being the initial model). It stops
early - with a :class:`~kernelscope._arrays.KernelscopeWarning` naming the step and ``diverged_at`` in the
result - when the loss becomes NaN/inf or grows beyond ``explode`` times its initial value.

The settings are a :class:`TrainOptions`, checked once when it is made: ``train`` takes one (or the same settings
as keywords), and so do the functions that train through it (:func:`kernelscope.dynamics.path_kernel`), so a
setting is validated once however deep the call.

Losses (:data:`LOSSES`, :mod:`kernelscope._model`), per example, for outputs ``f`` of shape (B, O):

- ``'mse'``: ``ℓ = ½ ‖f − y‖²`` (targets (B, O), or (B,) for one output);
- ``'cross_entropy'``: ``ℓ = −log softmax(f)_y`` (integer labels (B,), or label rows (B, O)),

summed over the batch (``reduction='sum'``) or averaged (``'mean'``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._arrays import (
    DivergenceWarning,
    ValidationError,
    as_generator,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
    warn,
)
from .._model import LOSSES, REDUCTIONS, check_module, loss_value, materialize, targets

__all__ = ["train", "TrainOptions", "TrainResult", "loss_value", "LOSSES", "OPTIMIZERS", "diverged",
           "batch_indices"]

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")


def diverged(value: float, first: float, explode: float) -> bool:
    """True when a loss ``value`` is NaN/inf or above ``explode`` times the initial loss ``first``."""
    return not math.isfinite(value) or (math.isfinite(first) and first > 0 and value > explode * first)


@dataclass(frozen=True)
class TrainOptions:
    """How a model is trained: every setting of :func:`train`, checked once, when the options are made.

    steps : optimiser steps (≥ 0). lr : the step size η > 0.
    loss : one of :data:`LOSSES`; reduction : 'sum' or 'mean' over the batch.
    optimizer : ``'sgd'`` (with ``momentum`` μ if > 0), ``'momentum'`` (SGD, μ = 0.9 unless given), ``'adam'``,
        ``'adamw'`` (``betas`` (β₁, β₂) in [0, 1), ``eps`` > 0); ``weight_decay`` λ ≥ 0 as torch defines it for
        each (L2 in the gradient for SGD and Adam, decoupled for AdamW). μ in [0, 1): μ ≥ 1 never damps the
        velocity.
    batch_size : None for full batch, else the next ``batch_size`` points of a seeded permutation (``seed``, an
        integer ≥ 0 or a ``torch.Generator``; :func:`batch_indices`).
    explode : the loss growing beyond ``explode`` times its initial value counts as divergence.
    """

    steps: int
    lr: float
    loss: str = "mse"
    reduction: str = "sum"
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    batch_size: int | None = None
    seed: int | torch.Generator = 0
    explode: float = 1e12

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen: set once, here
        put("steps", check_int(self.steps, "steps", minimum=0))
        put("lr", check_positive(self.lr, "lr"))
        check_choice(self.loss, "loss", LOSSES)
        check_choice(self.reduction, "reduction", REDUCTIONS)
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        momentum = check_nonnegative(self.momentum, "momentum")
        if momentum >= 1:
            raise ValidationError("momentum", "a number in [0, 1)", repr(self.momentum),
                                  "μ ≥ 1 never damps the velocity: training cannot settle.")
        put("momentum", momentum)
        put("weight_decay", check_nonnegative(self.weight_decay, "weight_decay"))
        try:
            b1, b2 = (float(b) for b in self.betas)
        except (TypeError, ValueError):
            raise ValidationError("betas", "two numbers (β₁, β₂) in [0, 1)", repr(self.betas)) from None
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValidationError("betas", "two numbers (β₁, β₂) in [0, 1)", repr(self.betas),
                                  "torch's default is (0.9, 0.999).")
        put("betas", (b1, b2))
        put("eps", check_positive(self.eps, "eps"))
        if self.batch_size is not None:
            put("batch_size", check_int(self.batch_size, "batch_size", minimum=1))
        if not isinstance(self.seed, torch.Generator):
            put("seed", check_int(self.seed, "seed", minimum=0))
        put("explode", check_positive(self.explode, "explode"))

    @property
    def rule(self) -> str:
        """The update rule: 'sgd' (plain or with momentum), 'adam' or 'adamw'."""
        return "sgd" if self.optimizer in ("sgd", "momentum") else self.optimizer

    @property
    def effective_momentum(self) -> float:
        """The momentum SGD gets: ``momentum``, or 0.9 for ``'momentum'`` when it is 0."""
        return 0.9 if self.optimizer == "momentum" and self.momentum == 0.0 else self.momentum

    def optimizer_for(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        """The ``torch.optim`` optimiser of these options over ``params``."""
        if self.rule == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.effective_momentum,
                                   weight_decay=self.weight_decay)
        cls = torch.optim.Adam if self.rule == "adam" else torch.optim.AdamW
        return cls(params, lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)

    def batches(self, n: int) -> list[torch.Tensor | None]:
        """The examples of each step for a training set of n points (:func:`batch_indices`)."""
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size", maximum=n)
        return batch_indices(n, self.batch_size, self.steps, self.seed)


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


def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, options: TrainOptions | None = None, *,
          batches: Sequence[torch.Tensor | None] | None = None,
          callback: Callable[[int, float, torch.Tensor, bool], None] | None = None,
          track: Callable[[Iterable[int], str], Iterable[int]] | None = None, desc: str = "training",
          what: str = "training", **settings) -> TrainResult:
    """Train ``model`` in place for ``steps`` optimiser steps on ``loss``; stop at divergence with a warning.

    Parameters
    ----------
    model : ``nn.Module`` mapping X (N, ...) to (N, O) (or (N,) for one output); its trainable parameters move.
    X : (N, ...) tensor in the model's dtype. y : targets, checked against the loss and the model's outputs:
        (N,) or (N, O) for ``'mse'``; (N,) integer labels in [0, O) or (N, O) label rows for ``'cross_entropy'``.
    options : a :class:`TrainOptions`, or its settings as keywords (``lr=``, ``steps=``, ``loss=``,
        ``optimizer=``, ``batch_size=`` ...; not both).
    batches : the examples of each step given explicitly (``steps`` index tensors, None for all), e.g. from
        :func:`batch_indices`; overrides ``batch_size``.
    callback : ``callback(step, loss, out, diverged)`` at each evaluation (before step ``step``; ``out`` the
        model's output on the batch, detached; ``diverged`` True at the evaluation where training stops for
        divergence), e.g. to record snapshots.
    track : progress wrapper ``track(iterable, desc)``. what : names the training in the warning.

    Returns
    -------
    TrainResult. Diverging training stops at the bad loss (no step is taken from it), warns with
    :class:`~kernelscope._arrays.KernelscopeWarning` and records ``diverged_at``.
    """
    if options is None:
        options = TrainOptions(**settings)
    elif settings:
        raise ValidationError("options", "a TrainOptions or keyword settings, not both",
                              f"both (keywords {', '.join(sorted(settings))})")
    elif not isinstance(options, TrainOptions):
        raise ValidationError("options", "a TrainOptions", type(options).__name__)
    check_module(model)
    o, steps = options, options.steps
    n = X.shape[0]
    materialize(model, X)  # a lazily built model draws its parameters for these inputs
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValidationError("model", "a model with trainable parameters", "none",
                              "Build the model's parameters first (e.g. net.finite(seed, in_dim=d)).")
    opt = o.optimizer_for(params)
    if batches is None:
        batches = o.batches(n)
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
        if step == 0:  # the targets, checked against the loss and the model's outputs on the first evaluation
            out0 = model(X if idx is None else X[idx])
            y = targets(y, o.loss, n, out0.reshape(out0.shape[0], -1).shape[1], dtype=out0.dtype, device=out0.device)
        xb, yb = (X, y) if idx is None else (X[idx], y[idx])
        out = out0 if step == 0 else model(xb)
        out2 = out.reshape(out.shape[0], -1)
        value = loss_value(out2, yb, o.loss, o.reduction)
        lv = float(value.detach())
        losses[step] = lv
        bad = diverged(lv, losses[0], o.explode)
        if callback is not None:
            callback(step, lv, out.detach(), bad)
        if bad:
            diverged_at = step
            warn(f"{what} diverged: the loss became {lv:.4g} at step {step} (initial {losses[0]:.4g}, "
                 f"lr={o.lr:.3g}); stopped there, what was recorded before is kept. Use a smaller lr.",
                 DivergenceWarning)
            break
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    stop = step + 1
    return TrainResult(losses[:stop], stop - 1 if diverged_at is None else diverged_at, diverged_at)
