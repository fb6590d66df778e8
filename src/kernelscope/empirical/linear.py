"""The empirical NNGP (the kernel of the readout's input features) and the linearised model (THEORY.md §5)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jvp

from .._arrays import ValidationError, check_nonnegative
from .._model import check_fixed_function, check_module, trainable_parameters
from .inputs import inputs

__all__ = ["nngp", "linearize", "LinearizedModel"]


def _readout(model: nn.Module, x: torch.Tensor) -> str:
    """Name of the readout: the last module called that owns parameters, widened to the enclosing module while
    that holds no other parameters (``nets.finite.DenseModule`` wrapping an ``nn.Linear``)."""
    owners = [(n, m) for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    if not owners:
        raise ValidationError("model", "a model with a readout layer that owns parameters", "none")
    order: list[str] = []
    hs = [m.register_forward_pre_hook(lambda mod, inp, n=n: order.append(n)) for n, m in owners]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hs:
            h.remove()
    name = order[-1]
    count = lambda n: sum(p.numel() for p in model.get_submodule(n).parameters())  # noqa: E731
    while "." in name:
        parent = name.rpartition(".")[0]
        if count(parent) != count(name):
            break
        name = parent
    return name


def nngp(model: nn.Module, x1: Any, x2: Any = None, *, w_std: float = 1.0, b_std: float = 0.0,
         layer: str | None = None) -> Any:
    """Empirical NNGP kernel: the kernel of the features entering the readout layer.

    With ``φ(x)`` (of width n) the input of the readout (the last module with parameters called in forward, or
    the submodule named ``layer``)::

        K(x, x') = w_std² φ(x)·φ(x') / n + b_std²,

    the covariance of a readout ``(w_std/√n) W φ + b_std b`` over standard normal ``W, b`` (NTK parameterisation,
    THEORY.md §4), which converges to the infinite-width NNGP Σ of the whole network.

    Returns (N1, N2); NumPy in -> NumPy out.
    """
    check_fixed_function(check_module(model))
    w_std = check_nonnegative(w_std, "w_std")
    b_std = check_nonnegative(b_std, "b_std")
    t1, t2, kind = inputs(model, x1, x2)
    if layer is None:
        layer = _readout(model, t1)
    try:
        readout = model.get_submodule(layer)
    except AttributeError:
        raise ValidationError("layer", "the name of a submodule of the model", repr(layer)) from None

    def features(x):
        seen: list[torch.Tensor] = []
        h = readout.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach()))
        try:
            with torch.no_grad():
                model(x)
        finally:
            h.remove()
        return seen[-1].reshape(x.shape[0], -1)  # (n, width)

    p1 = features(t1)
    p2 = p1 if t2 is None else features(t2)
    K = w_std**2 * (p1 @ p2.T) / p1.shape[1] + b_std**2
    return kind.wrap(K)


class LinearizedModel(nn.Module):
    """``f_lin(x; w) = f(x; w₀) + J(x; w₀)(w − w₀)``, computed with ``torch.func.jvp`` (no Jacobian stored).

    The trainable weights ``w`` start at ``w₀`` and are ordinary ``nn.Parameter`` s (``params``), so any torch
    optimiser trains the linearised model; ``w₀`` and the base network are frozen copies.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        trainable_parameters(model)
        check_fixed_function(model)
        base = copy.deepcopy(model)
        self._names = [n for n, p in base.named_parameters() if p.requires_grad]
        for p in base.parameters():
            p.requires_grad_(False)
        self.base = base
        self.params = nn.ParameterList([nn.Parameter(base.get_parameter(n).detach().clone()) for n in self._names])
        for i, n in enumerate(self._names):
            self.register_buffer(f"w0_{i}", base.get_parameter(n).detach().clone())

    def w0(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, f"w0_{i}") for i, n in enumerate(self._names)}

    def w(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in zip(self._names, self.params)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w0, w = self.w0(), self.w()
        dw = {n: w[n] - w0[n] for n in self._names}
        f0, df = jvp(lambda p: functional_call(self.base, p, (x,)), (w0,), (dw,))
        return f0 + df


def linearize(model: nn.Module) -> LinearizedModel:
    """The first-order Taylor model of ``model`` around its current weights ``w₀`` (THEORY.md §5).

    ``linearize(model)(x) = f(x; w₀) + ∇_w f(x; w₀)ᵀ (w − w₀)``; equal to ``model(x)`` at ``w = w₀``; train its
    ``parameters()`` with any torch optimiser. The caller's model is not modified.
    """
    return LinearizedModel(check_module(model))
