"""Small multilayer perceptrons in the NTK parameterisation (THEORY.md §4), built from ``nn.Linear``.

A layer computes ``z = (w_std/√n_in) W a + b_std b`` with ``W, b ~ N(0, 1)``. It is written as
``s · Linear(a · w_std/(s √n_in))`` with ``s = b_std`` (or 1 without bias): the same function and the same
parameter gradients, and the parameters live in an ``nn.Linear``, so :func:`kernelscope.empirical.ntk` can use
its per-layer ``'structured'`` factorisation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._arrays import ValidationError, as_generator, check_choice, check_int, check_nonnegative, check_positive

__all__ = ["NTKDense", "mlp", "ACTIVATIONS"]

class Erf(nn.Module):
    """``erf(z)``: the activation with a closed-form infinite-width kernel (``nets.Erf``)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.erf(z)


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "erf": Erf, "gelu": nn.GELU, "softplus": nn.Softplus}


class NTKDense(nn.Module):
    """``z = (w_std/√n_in) W a + b_std b`` for ``a`` of shape (N, n_in) -> ``z`` of shape (N, n_out)."""

    def __init__(self, n_in: int, n_out: int, w_std: float = 1.0, b_std: float = 0.0, *,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=b_std > 0, dtype=dtype)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(n_out, n_in, generator=generator, dtype=dtype))
            if self.linear.bias is not None:
                self.linear.bias.copy_(torch.randn(n_out, generator=generator, dtype=dtype))
        self.out_scale = b_std if b_std > 0 else 1.0
        self.in_scale = w_std / (math.sqrt(n_in) * self.out_scale)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.out_scale * self.linear(a * self.in_scale)


def mlp(d_in: int, width: int, *, depth: int = 2, d_out: int = 1, activation: str = "relu",
        w_std: float = 1.0, b_std: float = 0.0, seed: int | torch.Generator = 0,
        dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A ``depth``-layer perceptron ``d_in -> width -> ... -> width -> d_out`` in the NTK parameterisation.

    ``depth = 2`` is the two-layer net of THEORY.md §5, ``f(x) = (w_std/√m) Σ_i b_i σ(a_iᵀx w_std/√d)``.
    Output of shape (N, d_out). All weights are N(0, 1) draws from ``seed``.
    """
    d_in = check_int(d_in, "d_in", minimum=1)
    width = check_int(width, "width", minimum=1)
    depth = check_int(depth, "depth", minimum=1)
    d_out = check_int(d_out, "d_out", minimum=1)
    check_choice(activation, "activation", tuple(ACTIVATIONS))
    w_std = check_positive(w_std, "w_std")
    b_std = check_nonnegative(b_std, "b_std")
    gen = as_generator(seed)
    sizes = [d_in] + [width] * (depth - 1) + [d_out]
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(NTKDense(sizes[i], sizes[i + 1], w_std, b_std, generator=gen, dtype=dtype))
        if i < depth - 1:
            layers.append(ACTIVATIONS[activation]())
    if not layers:  # pragma: no cover - depth >= 1 is checked
        raise ValidationError("depth", "at least 1", repr(depth))
    return nn.Sequential(*layers)
