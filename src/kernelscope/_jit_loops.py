"""The loops of :mod:`kernelscope._jit`, compiled by numba (imported only when first needed)."""

from __future__ import annotations

import math

import numba

# asin(s) = s + s·z·P(z)/Q(z), z = s², on 0 <= s <= 1/2: fdlibm's minimax rational approximation (error < 2^-58)
P0, P1, P2, P3, P4, P5 = (1.66666666666666657415e-01, -3.25565818622400915405e-01, 2.01212532134862925881e-01,
                          -4.00555345006794114027e-02, 7.91534994289814532176e-04, 3.47933107596021167570e-05)
Q1, Q2, Q3, Q4 = (-2.40339491173441421878e+00, 2.02094576023350569471e+00, -6.88283971605453293030e-01,
                  7.70381505559019352791e-02)
HALF_PI = 0.5 * math.pi


def _jit(fn):
    """Compiled without the GIL, cached on disk where numba finds a writable place (next to this file, or the
    user's cache); compiled afresh in each process where it finds none (a read-only install)."""
    try:
        return numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=False)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, cache=False, error_model="numpy", fastmath=False)(fn)


@numba.njit(inline="always", error_model="numpy", fastmath=False)
def acos(x):
    """arccos(x) on [−1, 1] without branches the compiler cannot turn into selects (so the loops vectorise):
    ``π/2 − asin(x)`` for |x| <= 1/2, ``2 asin(√((1 − |x|)/2))`` (or π minus it) beyond."""
    ax = abs(x)
    big = ax > 0.5
    z = 0.5 * (1.0 - ax) if big else x * x
    s = math.sqrt(z) if big else ax
    r = z * (P0 + z * (P1 + z * (P2 + z * (P3 + z * (P4 + z * P5))))) / (1.0 + z * (Q1 + z * (Q2 + z * (Q3 + z * Q4))))
    a = s + s * r  # asin(s)
    if big:
        return 2.0 * a if x >= 0.0 else math.pi - 2.0 * a
    return HALF_PI - (a if x >= 0.0 else -a)


@_jit
def acos_array(x, out):
    """``out[i] = acos(x[i])`` (1-D arrays): for the tests of :func:`acos`."""
    for i in range(x.size):
        out[i] = acos(x[i])


@_jit
def abrelu(n, phi, shift, theta_snap, cos_snap):
    """See :func:`kernelscope._jit.abrelu_` (1-D arrays of one dtype)."""
    floor = shift + theta_snap
    for i in range(n.size):
        x = n[i]
        x = -1.0 if x <= -cos_snap else x
        x = 1.0 if x > 1.0 else x
        p = acos(x) + shift
        n[i] = math.sqrt(1.0 - x * x) - x * p
        phi[i] = p if p > floor else shift
