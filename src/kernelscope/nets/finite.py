"""Finite random networks built from a :mod:`kernelscope.nets` description (the ``finite`` half of a layer).

Weights and biases are drawn N(0, 1) from one ``torch.Generator`` in layer order. ``'ntk'`` parameterisation
stores them as drawn and applies ``w_std/√n_in`` and ``b_std`` in ``forward``; ``'standard'`` stores
``W·w_std/√n_in`` and ``b·b_std`` and applies them as they are (so gradients, hence the NTK, differ while the
outputs at initialisation are the same random function).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

__all__ = ["DenseModule", "ActivationModule", "FanOutModule", "ParallelModule", "FanInSumModule",
           "LazyNetwork"]


class DenseModule(torch.nn.Module):
    """``z = (w_std/√n_in) x Wᵀ + b_std b`` ('ntk') or ``z = x Wᵀ + b`` ('standard'); x (N, n_in) -> (N, n_out)."""

    def __init__(self, n_in: int, n_out: int, w_std: float, b_std: float, parameterization: str,
                 gen: torch.Generator, dtype: torch.dtype):
        super().__init__()
        W = torch.randn(n_out, n_in, generator=gen, dtype=dtype)
        b = torch.randn(n_out, generator=gen, dtype=dtype)
        self.parameterization = parameterization
        if parameterization == "ntk":
            self.w_scale, self.b_scale = w_std / math.sqrt(n_in), b_std
        else:
            W, b = W * (w_std / math.sqrt(n_in)), b * b_std
            self.w_scale, self.b_scale = 1.0, 1.0
        self.weight = torch.nn.Parameter(W)  # (n_out, n_in)
        self.bias = torch.nn.Parameter(b)  # (n_out,)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}, parameterization={self.parameterization!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.weight) * self.w_scale + self.b_scale * self.bias


class ActivationModule(torch.nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str):
        super().__init__()
        self.fn, self.name = fn, name

    def extra_repr(self) -> str:
        return self.name

    def forward(self, x):
        return self.fn(x)


class FanOutModule(torch.nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x):
        return [x] * self.n


class ParallelModule(torch.nn.Module):
    def __init__(self, mods: list[torch.nn.Module]):
        super().__init__()
        self.branches = torch.nn.ModuleList(mods)

    def forward(self, xs):
        return [m(x) for m, x in zip(self.branches, xs)]


class FanInSumModule(torch.nn.Module):
    def forward(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class LazyNetwork(torch.nn.Module):
    """The finite network; its parameters are drawn when the input dimension is known.

    Call :meth:`materialize` (or the module once) with the input dimension before reading ``parameters()``.
    """

    def __init__(self, description: Any, gen: torch.Generator, width: int | None, readout: Any,
                 dtype: torch.dtype):
        super().__init__()
        self.description, self._gen, self._width, self._readout, self._dtype = description, gen, width, readout, dtype
        self.body: torch.nn.Module | None = None

    def materialize(self, d: int | tuple) -> "LazyNetwork":
        """``d``: the input dimension, or the per-example shape (C, L) / (C, H, W) of convolutional inputs."""
        d = tuple(int(v) for v in d) if isinstance(d, tuple) else int(d)
        if self.body is None:
            self.body, self.out_width = self.description.build(d, self._gen, self._width, self._readout,
                                                               self._dtype)
        elif self.in_width != d:
            raise ValueError(f"x: expected {self.in_width} columns (the network was built for them), got {d}.")
        self.in_width = d
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, d) -> (N, out); or (N, C, L) / (N, C, H, W) for convolutional networks."""
        self.materialize(x.shape[-1] if x.ndim <= 2 else tuple(x.shape[1:]))
        return self.body(x)
