"""Small statistics shared by the experiments and the figures: power-law fits and kernel-target alignment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._arrays import ValidationError, as_numpy

__all__ = ["fit_slope", "kernel_target_alignment"]


def fit_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares line ``log y = slope · log x + intercept``: the power law ``y = e^intercept · x^slope``.

    Points with ``x <= 0``, ``y <= 0`` or a non-finite ``y`` are left out; with fewer than two left the result
    is ``(nan, nan)``. Returns ``(slope, intercept)``.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (x > 0) & (y > 0) & np.isfinite(y)
    if keep.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return float(slope), float(intercept)


def kernel_target_alignment(K: Any, y: Any, classes: int | None = None) -> float:
    """Centred kernel-target alignment ``<HKH, T>_F / (|HKH|_F |HTH|_F)``, ``T = Y Yᵀ`` of one-hot labels.

    ``H = I - 11ᵀ/N`` (Cortes, Mohri & Rostamizadeh 2012). ``K`` of shape (N, N), ``y`` of shape (N,) integer
    labels. 1 means the kernel's geometry is exactly the labels' (same class similar, other classes not); near 0
    means unrelated.
    """
    K = as_numpy(K, "K", ndim=2)
    y = as_numpy(y, "y", ndim=1, dtype=np.int64)
    if K.shape != (len(y), len(y)):
        raise ValidationError("K", f"a square matrix of shape ({len(y)}, {len(y)})", f"shape {K.shape}")
    classes = int(y.max()) + 1 if classes is None else classes
    Y = np.eye(classes)[y]
    T = Y @ Y.T
    Kc = K - K.mean(0, keepdims=True) - K.mean(1, keepdims=True) + K.mean()
    # <HKH, T> = <HKH, HTH> since H is a projection; normalise by the centred target too
    Tc = T - T.mean(0, keepdims=True) - T.mean(1, keepdims=True) + T.mean()
    denom = np.linalg.norm(Kc) * np.linalg.norm(Tc)
    return float((Kc * Tc).sum() / denom) if denom > 0 else 0.0
