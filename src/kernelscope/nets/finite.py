"""Finite random networks: the one implementation of a fully connected layer, its activations and the builders.

Every finite network of the library is made of these modules: ``net.finite(seed, width)`` of a
:mod:`kernelscope.nets` description, :func:`mlp` (the perceptrons of the lazy-training and path-kernel chapters)
and :func:`stack` (the spiral experiments' nets). The parameters of a :class:`DenseModule` live in an
``nn.Linear``, so :func:`kernelscope.empirical.ntk` can use its per-layer ``'structured'`` factorisation.

Weights and biases are drawn N(0, 1) from one ``torch.Generator``, layer by layer, weight before bias:

- ``'ntk'`` parameterisation (THEORY.md §4): ``z = (w_std/√n_in) W x + b_std b`` with ``W``, ``b`` stored as
  drawn, computed as ``s · Linear(x · w_std/(s √n_in))`` with ``s = b_std`` (1 without bias): the same
  function and the same parameter gradients;
- ``'standard'``: ``z = W' x + b'`` with ``W' = W·w_std/√n_in`` and ``b' = b·b_std`` stored (same random
  function at initialisation, other gradients, hence another NTK);
- ``'mup'``, the maximal-update parameterisation μP (Yang & Hu 2021, "Feature learning in infinite-width neural
  networks", Table 3 for SGD): every layer of width n moves its features by O(1) per step, at one width-independent
  step size. A parameter is stored as ``N(0, 1)/√n`` and used with the multiplier ``√n`` times its 'ntk'
  multiplier, with ``n`` the width it maps to (input weights: ``n_out``; biases of a hidden layer: ``n_out``) or
  from (hidden weights: ``n_in``) - the same function at initialisation as 'ntk', each such parameter learning
  n times faster in SGD. The readout (width ``n_in`` to a finite output) keeps its 'ntk' multiplier
  ``w_std/√n_in`` but is stored as ``N(0, 1)/√n_in``: its initial output is ``√n_in`` times smaller. For a
  two-layer net this is the mean-field net ``f(x) = (w_std/m) Σ_i b_i σ(a_iᵀx w_std/√d)`` trained with step
  ``η·m`` (Mei, Montanari & Nguyen 2018; Chizat & Bach 2018), i.e. Chizat & Bach's output scale ``α = m^(−1/2)``
  of the NTK net. 'mup' belongs to the finite builders only (:func:`stack`, :func:`mlp`): its infinite-width
  limit learns features and has no fixed kernel.

``fan_in=False`` drops the ``1/√n_in`` (``w_std`` is then the standard deviation of each weight entry).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._arrays import (
    ValidationError,
    as_generator,
    check_choice,
    check_int,
    check_memory,
    check_nonnegative,
    check_positive,
)

__all__ = ["DenseModule", "ActivationModule", "FanOutModule", "ParallelModule", "FanInSumModule",
           "LazyNetwork", "PARAMETERIZATIONS", "FINITE_PARAMETERIZATIONS", "POSITIONS", "ACTIVATIONS", "activation",
           "mlp", "stack"]

#: The parameterisations with an infinite-width kernel (``nets.Dense``, ``nets.Conv`` and their finite layers).
PARAMETERIZATIONS = ("ntk", "standard")
#: The parameterisations of the finite builders (:class:`DenseModule`, :func:`stack`, :func:`mlp`).
FINITE_PARAMETERIZATIONS = (*PARAMETERIZATIONS, "mup")
#: Where a layer sits in a μP network: from a finite input to the width, width to width, width to a finite output,
#: or finite to finite (a network of one layer, which has no width: 'ntk' numbers).
POSITIONS = ("input", "hidden", "output", "single")


class DenseModule(nn.Module):
    """A fully connected layer, (N, n_in) -> (N, n_out); parameters in ``self.linear`` (an ``nn.Linear``).

    Parameters
    ----------
    n_in, n_out : widths.  w_std > 0, b_std >= 0 : weight and bias scales.
    parameterization : ``'ntk'``, ``'standard'`` or ``'mup'`` (module docstring).
    generator : the N(0, 1) draws, weight (n_out, n_in) then bias (n_out,).
    fan_in : divide ``w_std`` by ``√n_in`` (True) or not.
    draw_unused_bias : in the ``'ntk'`` and ``'mup'`` parameterisations with ``b_std = 0`` the bias does nothing
        and the layer has none; True still draws it from the generator (what ``net.finite`` does, so that later
        layers get the same numbers whatever ``b_std``), False does not (:func:`mlp`).
    position : for ``'mup'``, where the layer sits (:data:`POSITIONS`): ``'input'`` (finite -> width),
        ``'hidden'`` (width -> width), ``'output'`` (width -> finite) or ``'single'`` (finite -> finite).
    """

    def __init__(self, n_in: int, n_out: int, w_std: float = 1.0, b_std: float = 0.0,
                 parameterization: str = "ntk", generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float64, *, fan_in: bool = True, draw_unused_bias: bool = True,
                 position: str = "hidden"):
        super().__init__()
        check_choice(parameterization, "parameterization", FINITE_PARAMETERIZATIONS)
        check_choice(position, "position", POSITIONS)
        # the weights, their draw and scaled copy, and in training their gradient and an optimiser's two moments
        check_memory(6.0 * n_in * n_out * torch.finfo(dtype).bits / 8,
                     f"a Dense layer of {n_out}×{n_in} weights (with their draw, gradient and optimiser state)",
                     "Use a smaller width.")
        self.parameterization = parameterization
        has_bias = parameterization == "standard" or b_std > 0
        self.linear = nn.Linear(n_in, n_out, bias=has_bias, dtype=dtype)
        W = torch.randn(n_out, n_in, generator=generator, dtype=dtype)
        b = torch.randn(n_out, generator=generator, dtype=dtype) if has_bias or draw_unused_bias else None
        root = math.sqrt(n_in) if fan_in else 1.0
        # the layer's scales as in the formulas: z = w_scale·W x + b_scale·b over the stored W, b
        if parameterization == "ntk":
            self.w_scale, self.b_scale = (w_std / root if fan_in else w_std), b_std
            self.out_scale = b_std if has_bias else 1.0
            self.in_scale = w_std / (root * self.out_scale)
        elif parameterization == "mup":
            # μP: stored N(0, 1)/√n, used with √n times the 'ntk' multiplier (the readout's stays as it is)
            n_w = {"input": n_out, "hidden": n_in, "output": n_in, "single": 1}[position]
            n_b = n_out if position in ("input", "hidden") else 1
            W = W / math.sqrt(n_w)
            b = None if b is None else b / math.sqrt(n_b)
            self.w_scale = (w_std / root) * (1.0 if position == "output" else math.sqrt(n_w))
            self.b_scale = b_std * math.sqrt(n_b)
            self.out_scale = self.b_scale if has_bias else 1.0
            self.in_scale = self.w_scale / self.out_scale
        else:
            W, b = W * (w_std / root if fan_in else w_std), b * b_std
            self.w_scale = self.b_scale = self.out_scale = self.in_scale = 1.0
        with torch.no_grad():
            self.linear.weight.copy_(W)
            if has_bias:
                self.linear.bias.copy_(b)

    @property
    def weight(self) -> torch.Tensor:
        """The stored weight (n_out, n_in)."""
        return self.linear.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The stored bias (n_out,), None for an ``'ntk'`` layer with ``b_std = 0``."""
        return self.linear.bias

    def extra_repr(self) -> str:
        return f"{self.linear.in_features} -> {self.linear.out_features}, parameterization={self.parameterization!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.out_scale == 1.0 and self.in_scale == 1.0:
            return self.linear(x)
        return self.out_scale * self.linear(x * self.in_scale)


class ActivationModule(nn.Module):
    """An elementwise activation ``fn`` (torch -> torch) as a module; ``name`` is shown in ``repr``."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str):
        super().__init__()
        self.fn, self.name = fn, name

    def extra_repr(self) -> str:
        return self.name

    def forward(self, x):
        return self.fn(x)


def _leaky(slope: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: torch.nn.functional.leaky_relu(x, slope)


#: The activations of the finite networks by name: ``name -> (fn, nets layer factory)``. The nets layer
#: (``kernelscope.nets.ReLU`` ...) gives the same function its infinite-width kernel.
ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], str]] = {
    "relu": (torch.relu, "ReLU"),
    "tanh": (torch.tanh, "Tanh"),
    "erf": (torch.erf, "Erf"),
    "gelu": (torch.nn.functional.gelu, "GELU"),
    "sigmoid": (torch.sigmoid, "Sigmoid"),
    "softplus": (torch.nn.functional.softplus, "Elementwise"),
    "identity": (lambda x: x, "Identity"),
}


def activation(name: str, slope: float = 0.01) -> ActivationModule:
    """The activation module called ``name`` (a key of :data:`ACTIVATIONS`, or ``'leaky_relu'`` with ``slope``)."""
    check_choice(name, "activation", (*ACTIVATIONS, "leaky_relu"))
    if name == "leaky_relu":
        return ActivationModule(_leaky(slope), f"leaky_relu({slope})")
    return ActivationModule(ACTIVATIONS[name][0], name)


def _per_layer(value: float | Sequence[float], n: int, name: str, positive: bool) -> list[float]:
    values = [value] * n if isinstance(value, (int, float)) else list(value)
    if len(values) != n:
        raise ValidationError(name, f"one number or {n} (one per layer)", f"{len(values)} numbers")
    check = check_positive if positive else check_nonnegative
    return [check(v, name) for v in values]


def stack(sizes: Sequence[int], activation_name: str = "relu", *, w_std: float | Sequence[float] = 1.0,
          b_std: float | Sequence[float] = 0.0, parameterization: str = "ntk", seed: int | torch.Generator = 0,
          linear_tail: int = 1, slope: float = 0.01, fan_in: bool = True, draw_unused_bias: bool = False,
          dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """``sizes[0] -> sizes[1] -> ... -> sizes[-1]``: :class:`DenseModule` s, an activation after each but the last
    ``linear_tail`` of them.

    ``linear_tail = 1`` is a perceptron; the spiral net ``2 -> H (ReLU) -> 2 (embedding) -> K`` has
    ``linear_tail = 2``. ``w_std``, ``b_std``: one number or one per layer. Weights and biases are drawn from
    ``seed`` layer by layer (weight, then bias). ``parameterization``: one of :data:`FINITE_PARAMETERIZATIONS`;
    ``'mup'`` takes ``sizes[1:-1]`` as the widths (the first layer is its input layer, the last its readout).
    Returns an ``nn.Sequential`` mapping (N, sizes[0]) -> (N, sizes[-1]).
    """
    sizes = [check_int(s, "sizes", minimum=1) for s in sizes]
    if len(sizes) < 2:
        raise ValidationError("sizes", "at least two widths (input and output)", repr(sizes))
    n = len(sizes) - 1
    linear_tail = check_int(linear_tail, "linear_tail", minimum=1, maximum=n)
    check_choice(parameterization, "parameterization", FINITE_PARAMETERIZATIONS)
    ws = _per_layer(w_std, n, "w_std", True)
    bs = _per_layer(b_std, n, "b_std", False)
    gen = as_generator(seed)
    positions = ["single"] if n == 1 else ["input"] + ["hidden"] * (n - 2) + ["output"]
    layers: list[nn.Module] = []
    for i in range(n):
        layers.append(DenseModule(sizes[i], sizes[i + 1], ws[i], bs[i], parameterization, gen, dtype,
                                  fan_in=fan_in, draw_unused_bias=draw_unused_bias, position=positions[i]))
        if i < n - linear_tail:
            layers.append(activation(activation_name, slope))
    return nn.Sequential(*layers)


def mlp(d_in: int, width: int, *, depth: int = 2, d_out: int = 1, activation: str = "relu",
        w_std: float = 1.0, b_std: float = 0.0, seed: int | torch.Generator = 0,
        parameterization: str = "ntk", dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A ``depth``-layer perceptron ``d_in -> width -> ... -> width -> d_out`` (NTK parameterisation by default).

    ``depth = 2`` is the two-layer net of THEORY.md §5, ``f(x) = (w_std/√m) Σ_i b_i σ(a_iᵀx w_std/√d)``;
    ``parameterization='mup'`` makes it the mean-field net ``(w_std/m) Σ_i b_i σ(·)`` of μP (module docstring),
    trained at a step size that does not depend on the width.
    Output of shape (N, d_out). All weights are N(0, 1) draws from ``seed``; a layer has a bias only when
    ``b_std > 0`` (or in the standard parameterisation). ``activation``: a key of :data:`ACTIVATIONS`.
    """
    d_in = check_int(d_in, "d_in", minimum=1)
    width = check_int(width, "width", minimum=1)
    depth = check_int(depth, "depth", minimum=1)
    d_out = check_int(d_out, "d_out", minimum=1)
    check_choice(activation, "activation", tuple(ACTIVATIONS))
    return stack([d_in] + [width] * (depth - 1) + [d_out], activation, w_std=w_std, b_std=b_std,
                 parameterization=parameterization, seed=seed, dtype=dtype)


class FanOutModule(nn.Module):
    """The finite counterpart of ``FanOut(n)``: the input, n times (a list)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x):
        return [x] * self.n


class ParallelModule(nn.Module):
    """The finite counterpart of ``parallel(...)``: each branch applied to its own input of a list."""

    def __init__(self, mods: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(mods)

    def forward(self, xs):
        return [m(x) for m, x in zip(self.branches, xs)]


class FanInSumModule(nn.Module):
    """The finite counterpart of ``FanInSum()``: the sum of a list of inputs."""

    def forward(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


def _example_shape(x: Any) -> int | tuple:
    """What a network is built for: the width d of rows (N, d), or the shape (C, *S) of images (N, C, *S)."""
    shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
    return shape[-1] if len(shape) <= 2 else tuple(shape[1:])


class LazyNetwork(nn.Module):
    """The finite network of a ``nets`` description; its parameters are drawn when the input dimension is known.

    ``net.finite(seed, in_dim=d)`` draws them at once; otherwise call :meth:`materialize` (or the module once)
    with the input dimension before reading ``parameters()``. It follows torch's lazy-module protocol
    (:meth:`has_uninitialized_params`), so the library's functions that take a model draw them from their inputs.
    """

    def __init__(self, description: Any, gen: torch.Generator, width: int | None, readout: Any,
                 dtype: torch.dtype):
        super().__init__()
        self.description, self._gen, self._width, self._readout, self._dtype = description, gen, width, readout, dtype
        self.body: nn.Module | None = None

    def materialize(self, d: int | tuple) -> LazyNetwork:
        """``d``: the input dimension, or the per-example shape (C, L) / (C, H, W) of convolutional inputs."""
        d = tuple(int(v) for v in d) if isinstance(d, tuple) else int(d)
        if self.body is None:
            self.body, self.out_width = self.description.build(d, self._gen, self._width, self._readout,
                                                               self._dtype)
        elif self.in_width != d:
            raise ValueError(f"x: expected {self.in_width} columns (the network was built for them), got {d}.")
        self.in_width = d
        return self

    def extra_repr(self) -> str:
        """What ``print(model)`` shows: before the parameters are drawn, the description and how to draw them
        (once drawn, torch lists the layers of ``body`` below)."""
        if self.body is not None:
            return f"in={self.in_width}, out={self.out_width}"
        width = f", width={self._width}" if self._width is not None else ""
        return (f"{self.description!r}{width}\n(parameters not drawn yet: they are drawn for the input width at the "
                "first call, or pass in_dim=d to finite())")

    def has_uninitialized_params(self) -> bool:
        """True until the input shape is known and the parameters are drawn (``torch.nn.modules.lazy`` protocol)."""
        return self.body is None

    def initialize_parameters(self, x: torch.Tensor) -> None:
        """Draw the parameters for inputs shaped like ``x`` (N, d) or (N, C, *S) (``torch.nn.modules.lazy``
        protocol; what the first call does)."""
        self.materialize(_example_shape(x))

    def named_parameters(self, *args: Any, **kwargs: Any):
        """As ``nn.Module.named_parameters``; before the input width is known there are none yet, which an
        optimiser would take for "nothing to train": say so instead of yielding nothing."""
        if self.body is None:
            from .._arrays import ValidationError

            raise ValidationError(
                "finite()", "the input width, to draw the parameters",
                "a network whose parameters are not drawn yet (it was never called)",
                "Pass in_dim= (e.g. net.finite(seed=0, in_dim=8), or the per-example shape (C, H, W) of images), "
                "or call the model on a batch once.")
        return super().named_parameters(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, d) -> (N, out); or (N, C, L) / (N, C, H, W) for convolutional networks."""
        self.materialize(_example_shape(x))
        return self.body(x)
