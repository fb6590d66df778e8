"""Compiled elementwise loops (numba) for the one place where torch's op-at-a-time style costs most: the arc-cosine
dual of the piecewise-linear activations (:func:`kernelscope.duals.abrelu_dual`), the inner loop of every ReLU
kernel, dense or convolutional.

Why (issue 25): torch runs the dual as about ten passes over the kernel block, and its float64 ``acos`` (SLEEF,
vectorised) costs ≈ 4.4 ns per entry on this project's 2-core machine, against one GEMM and a few passes that any
implementation must do. Here one loop does the snaps, ``acos``, ``sqrt`` and both outputs in one pass, with an
``acos`` of its own that the compiler vectorises (its two cases are selects, not branches): the rational
approximation of fdlibm's ``asin`` on [0, 1/2] and ``acos(x) = 2 asin(√((1 − |x|)/2))`` beyond; ≈ 1.1 ns per
entry, within 1 ulp of the exact value on 20 000 points checked against mpmath (``tests/test_jit.py`` holds it
within 2 ulps of libm's ``acos`` everywhere the formulas change). Measured on the analytic NNGP+NTK of a 3-layer
ReLU MLP at N = 4000 (``benchmarks/bench_nets.py``): see the README. A float32 block is computed in float32 (the
constants go in with the arrays, in their precision: twice the vector lanes), its ``acos`` within 1.3 float32 ulps.

The loops are compiled on first use (≈ 1 s) and cached on disk by numba (next to this file, or in the user's
cache when that is not writable); a later process loads them in ≈ 0.5 s. They run where they apply — CPU
tensors, float32 or float64, dense in memory — and :mod:`kernelscope.duals` keeps the torch ops for everything
else (a GPU) and as the reference the tests compare against. ``KERNELSCOPE_JIT=0`` in the environment, or
:func:`disabled`, turns the loops off (the torch ops then run everywhere); without numba installed they are off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np
import torch

__all__ = ["abrelu_", "disabled", "usable"]

_lock = threading.Lock()
_off = 0  # how many disabled() blocks are open
_DTYPES = (torch.float64, torch.float32)


@contextmanager
def disabled() -> Iterator[None]:
    """Run the block with the torch ops only, in every thread (the kernel engines' workers too): for the tests and
    benchmarks that compare the two. Process-wide, like the environment variable; blocks may nest."""
    global _off
    with _lock:
        _off += 1
    try:
        yield
    finally:
        with _lock:
            _off -= 1


def usable(*ts: torch.Tensor) -> bool:
    """Whether the compiled loops can run on these tensors: numba present and not turned off, CPU, one float dtype,
    no autograd, each dense in memory and laid out alike (so that their flat memories match entry for entry)."""
    if _off or os.environ.get("KERNELSCOPE_JIT", "1") == "0":
        return False
    first = ts[0]
    for t in ts:
        if (t.device.type != "cpu" or t.dtype != first.dtype or t.dtype not in _DTYPES or t.requires_grad
                or t.shape != first.shape or t.stride() != first.stride() or not _dense(t)):
            return False
    return _loops() is not None


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t``'s entries fill one stretch of memory, each once (contiguous in some order of its axes)."""
    expected = 1
    for stride, size in sorted((st, s) for s, st in zip(t.shape, t.stride()) if s != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _flat(t: torch.Tensor) -> np.ndarray:
    """The memory of a dense tensor as a 1-D NumPy array (a view: writes go to ``t``)."""
    return torch.as_strided(t, (t.numel(),), (1,)).numpy()


def abrelu_(n: torch.Tensor, phi: torch.Tensor, shift: float, theta_snap: float, cos_snap: float) -> None:
    """The arc-cosine dual's loop of :func:`kernelscope.duals.abrelu_dual`, in one pass, in place.

    ``n`` holds ``−cos θ`` on entry (self pairs already set) and, on return, ``sin θ − n·(φ + shift)`` (the
    NNGP over its scales); ``phi`` gets ``φ + shift`` with ``φ = arccos(n) = π − θ``, snapped to ``shift``
    where ``φ <= theta_snap``. First ``n`` itself is snapped: ``−1`` at or below ``−cos_snap`` and clamped to 1
    above. ``usable(n, phi)`` must hold.
    """
    flat = _flat(n)
    t = flat.dtype.type  # the scalars in the arrays' precision, as the constants (float32 stays float32)
    loops = _loops()
    loops.abrelu(flat, _flat(phi), t(shift), t(theta_snap), t(cos_snap), loops.constants(flat.dtype))


@cache
def _loops():
    """The module of compiled loops, or None without numba. Imported lazily: importing numba costs ≈ 0.2 s."""
    try:
        from . import _jit_loops
    except ImportError:  # pragma: no cover - numba is a dependency; an unsupported Python may lack a wheel
        return None
    return _jit_loops
