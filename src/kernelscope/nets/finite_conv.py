"""Finite modules of the convolutional layers (:mod:`kernelscope.nets.conv`), parameterised like DenseModule.

Weights and bias drawn N(0, 1) from the network's generator; 'ntk' applies ``w_std/√(C·|F|)`` and ``b_std`` in
``forward``, 'standard' stores the scaled draws. Padding is applied explicitly (TensorFlow/JAX 'same': the
extra zero, for even totals, goes after), so strides work with 'same' and 'circular' too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["ChannelsLast", "ConvModule", "GlobalAvgPoolModule", "PoolModule"]


def _pad(x: torch.Tensor, pads: list[tuple[int, int]], padding: str) -> torch.Tensor:
    if padding == "valid" or not any(lo or hi for lo, hi in pads):
        return x
    flat = [v for lo_hi in reversed(pads) for v in lo_hi]  # F.pad: last axis first
    return F.pad(x, flat, mode="circular" if padding == "circular" else "constant")


class _NTKConv:
    """Mixin for torch.nn.Conv1d/Conv2d: explicit padding, NTK or standard scaling."""

    def _setup(self, w_std, b_std, parameterization, pads, padding, gen, dtype):
        fan_in = self.in_channels * math.prod(self.kernel_size)
        with torch.no_grad():
            W = torch.randn(self.weight.shape, generator=gen, dtype=dtype)
            b = torch.randn(self.bias.shape, generator=gen, dtype=dtype)
            if parameterization == "ntk":
                self.w_scale, self.b_scale = w_std / math.sqrt(fan_in), b_std
            else:
                W, b = W * (w_std / math.sqrt(fan_in)), b * b_std
                self.w_scale, self.b_scale = 1.0, 1.0
            self.weight = torch.nn.Parameter(W)
            self.bias = torch.nn.Parameter(b)
        self.parameterization, self.pads, self.pad_mode = parameterization, pads, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._conv_forward(_pad(x, self.pads, self.pad_mode), self.weight, None)
        return y * self.w_scale + self.b_scale * self.bias.reshape((-1,) + (1,) * (y.ndim - 2))


class NTKConv1d(_NTKConv, torch.nn.Conv1d):
    pass


class NTKConv2d(_NTKConv, torch.nn.Conv2d):
    pass


def ConvModule(c_in: int, c_out: int, kernel_size: tuple, stride: tuple, pads: list, padding: str,
               w_std: float, b_std: float, parameterization: str, gen: torch.Generator, dtype) -> torch.nn.Module:
    """An nn.Conv1d/nn.Conv2d (subclass) drawn from ``gen``; input (N, c_in, *S) -> (N, c_out, *S_out)."""
    cls = NTKConv1d if len(kernel_size) == 1 else NTKConv2d
    mod = cls(c_in, c_out, kernel_size, stride=stride, padding=0, bias=True, dtype=dtype)
    mod._setup(w_std, b_std, parameterization, pads, padding, gen, dtype)
    return mod


class PoolModule(torch.nn.Module):
    """The finite counterpart of ``AvgPool``: average pooling over windows of the spatial axes."""

    def __init__(self, kernel_size: tuple, stride: tuple, pads: list, padding: str):
        super().__init__()
        self.kernel_size, self.stride, self.pads, self.padding = kernel_size, stride, pads, padding

    def forward(self, x):
        pool = F.avg_pool1d if len(self.kernel_size) == 1 else F.avg_pool2d
        return pool(_pad(x, self.pads, self.padding), self.kernel_size, self.stride)


class GlobalAvgPoolModule(torch.nn.Module):
    """The finite counterpart of ``GlobalAvgPool()``: the mean over the ``ns`` spatial axes of (N, C, *S)."""

    def __init__(self, ns: int):
        super().__init__()
        self.ns = ns

    def forward(self, x):
        return x.mean(dim=tuple(range(2, 2 + self.ns)))


class ChannelsLast(torch.nn.Module):
    """Apply a module acting on the last axis (a Dense) to the channel axis 1 of (N, C, *S)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.movedim(1, -1)).movedim(-1, 1)
