"""The loops of :mod:`kernelscope._jit`, compiled by numba (imported only when first needed)."""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

# asin(s) = s + s·z·P(z)/Q(z), z = s², on 0 <= s <= 1/2: fdlibm's minimax rational approximation (error < 2^-58)
_P = (1.66666666666666657415e-01, -3.25565818622400915405e-01, 2.01212532134862925881e-01,
      -4.00555345006794114027e-02, 7.91534994289814532176e-04, 3.47933107596021167570e-05)
_Q = (-2.40339491173441421878e+00, 2.02094576023350569471e+00, -6.88283971605453293030e-01,
      7.70381505559019352791e-02)


@functools.cache
def constants(dtype) -> tuple:
    """The loops' constants as numbers of ``dtype`` (NumPy's float32 or float64), passed in with the arrays: the
    arithmetic then stays in the arrays' precision (a Python float would turn float32 work into float64)."""
    t = np.dtype(dtype).type
    return tuple(t(v) for v in (0.0, 0.5, 1.0, 2.0, math.pi, 0.5 * math.pi, *_P, *_Q))


def _jit(fn):
    """Compiled without the GIL, cached on disk where numba finds a writable place (next to this file, or the
    user's cache); compiled afresh in each process where it finds none (a read-only install)."""
    try:
        return numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=False)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, cache=False, error_model="numpy", fastmath=False)(fn)


@numba.njit(inline="always", error_model="numpy", fastmath=False)
def acos(x, c):
    """arccos(x) on [−1, 1], in the precision of ``x`` and of ``c`` (:func:`constants`), without branches the
    compiler cannot turn into selects (so the loops vectorise): ``π/2 − asin(x)`` for |x| <= 1/2,
    ``2 asin(√((1 − |x|)/2))`` (or π minus it) beyond."""
    zero, half, one, two, pi, half_pi, p0, p1, p2, p3, p4, p5, q1, q2, q3, q4 = c
    ax = abs(x)
    big = ax > half
    z = half * (one - ax) if big else x * x
    s = math.sqrt(z) if big else ax
    r = z * (p0 + z * (p1 + z * (p2 + z * (p3 + z * (p4 + z * p5))))) / (one + z * (q1 + z * (q2 + z * (q3 + z * q4))))
    a = s + s * r  # asin(s)
    if big:
        return two * a if x >= zero else pi - two * a
    return half_pi - (a if x >= zero else -a)


@_jit
def acos_array(x, out, c):
    """``out[i] = acos(x[i])`` (1-D arrays): for the tests of :func:`acos`."""
    for i in range(x.size):
        out[i] = acos(x[i], c)


@_jit
def abrelu(n, phi, shift, theta_snap, cos_snap, c):
    """See :func:`kernelscope._jit.abrelu_` (1-D arrays of one dtype; the scalars and ``c`` of that dtype)."""
    one = c[2]
    floor = shift + theta_snap
    for i in range(n.size):
        x = n[i]
        x = -one if x <= -cos_snap else x
        x = one if x > one else x
        p = acos(x, c) + shift
        n[i] = math.sqrt(one - x * x) - x * p
        phi[i] = p if p > floor else shift
