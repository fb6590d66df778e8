"""Data the story uses, all generated or bundled (no downloads).

- :func:`spirals` - K interleaved spiral arms (the NYU Deep Learning course's generator).
- :func:`digits` - scikit-learn's bundled 8x8 digits (1797 images), scaled to [0, 1].
- :func:`regression_1d` - a smooth 1-D target with noise, for curves you can look at.
- :func:`regression_nd` - a smooth target on d-dimensional inputs.
- :func:`sphere` - points on the unit sphere (kernels of normalised data depend on angles alone).
"""

from __future__ import annotations

import math

import numpy as np

from ._arrays import ValidationError, check_int, check_memory, check_nonnegative

__all__ = ["spirals", "digits", "regression_1d", "regression_nd", "sphere", "one_hot_centred", "TARGETS_1D"]


def _check_size(numbers: float, what: str, way_out: str) -> None:
    """A generated data set of ``numbers`` float64 values (with its temporaries, about 4 times as many) must fit."""
    check_memory(4 * 8.0 * numbers, what, way_out)


def spirals(n_per_class: int = 100, classes: int = 3, noise: float = 0.2, seed: int = 0,
            ) -> tuple[np.ndarray, np.ndarray]:
    """K interleaved spiral arms in the plane.

    For class ``k`` and ``t`` in ``linspace(0, 1, n_per_class)``: radius ``0.8 t + 0.2``, angle
    ``(2 t + k) 2 pi / K + noise * randn``, point ``radius * (sin(angle), cos(angle))`` - the generator of the
    NYU Deep Learning 2021 course (noise 0.2, 1000 points per class, K = 5 in the lecture).

    Returns
    -------
    X : ndarray of shape (n_per_class * classes, 2), float64
    y : ndarray of shape (n_per_class * classes,), int64 class labels 0..classes-1
    """
    n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
    classes = check_int(classes, "classes", minimum=2)
    noise = check_nonnegative(noise, "noise")
    _check_size(3.0 * n_per_class * classes, f"{classes} spiral arms of {n_per_class} points",
                "Use a smaller n_per_class.")
    rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
    t = np.linspace(0.0, 1.0, n_per_class)
    xs, ys = [], []
    for k in range(classes):
        radius = 0.8 * t + 0.2
        angle = (2.0 * t + k) * 2.0 * math.pi / classes + noise * rng.standard_normal(n_per_class)
        xs.append(np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1))
        ys.append(np.full(n_per_class, k, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def digits(n: int | None = None, *, seed: int = 0, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits, pixels scaled to [0, 1].

    Parameters
    ----------
    n : number of images to return (a random subset drawn with ``seed``); ``None`` for all 1797.
    classes : keep only the digits ``0 .. classes-1``.

    Returns
    -------
    X : ndarray of shape (n, 64), float64 ; y : ndarray of shape (n,), int64
    """
    from sklearn.datasets import load_digits

    classes = check_int(classes, "classes", minimum=2, maximum=10)
    d = load_digits()
    X = d.data.astype(np.float64) / 16.0
    y = d.target.astype(np.int64)
    keep = y < classes
    X, y = X[keep], y[keep]
    if n is not None:
        n = check_int(n, "n", minimum=1, maximum=len(y))
        idx = np.random.default_rng(check_int(seed, "seed", minimum=0)).permutation(len(y))[:n]
        X, y = X[idx], y[idx]
    return X, y


TARGETS_1D = {
    "sin": lambda x: np.sin(3.0 * x),
    "bump": lambda x: np.exp(-8.0 * x**2) - 0.5 * x,
    "step": lambda x: np.sign(x) * 0.8,
    "cubic": lambda x: 2.0 * x**3 - x,
}


def regression_1d(n: int = 20, *, noise: float = 0.05, seed: int = 0, target: str = "sin",
                  low: float = -1.0, high: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A 1-D regression set: ``x`` uniform in [low, high], ``y = target(x) + noise * randn``.

    Returns X of shape (n, 1) (sorted) and y of shape (n,). ``target`` is one of :data:`TARGETS_1D`.
    """
    n = check_int(n, "n", minimum=1)
    noise = check_nonnegative(noise, "noise")
    if target not in TARGETS_1D:
        raise ValidationError("target", "one of " + ", ".join(TARGETS_1D), repr(target))
    if not high > low:
        raise ValidationError("high", f"a number greater than low={low}", repr(high))
    _check_size(2.0 * n, f"{n} points", "Use a smaller n.")
    rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
    x = np.sort(rng.uniform(low, high, n))
    y = TARGETS_1D[target](x) + noise * rng.standard_normal(n)
    return x[:, None], y


def regression_nd(n: int = 200, d: int = 8, *, noise: float = 0.05, decay: float = 0.0, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Inputs with ``E‖x‖² = 1`` and a smooth nonlinear target ``y = sin(u.x) + 0.5 (v.x)^2 + noise``.

    ``decay = 0`` gives isotropic inputs ``x ~ N(0, I_d / d)``: a flat input spectrum, the hardest case for
    low-rank (Nyström, random-feature) approximations. ``decay = p > 0`` gives ``x ~ N(0, Q diag(λ) Q^T)`` with
    variances ``λ_i ∝ i^-p`` (summing to 1) along randomly rotated directions ``Q``: the power-law spectrum of
    real data (images' principal components decay like this), whose kernel matrices have few effective
    dimensions.

    Returns X of shape (n, d) and y of shape (n,).
    """
    n = check_int(n, "n", minimum=1)
    d = check_int(d, "d", minimum=1)
    noise = check_nonnegative(noise, "noise")
    decay = check_nonnegative(decay, "decay")
    seed = check_int(seed, "seed", minimum=0)
    _check_size(n * (d + 1.0) + d * d, f"{n} points in {d} dimensions", "Use a smaller n or d.")
    rng = np.random.default_rng(seed)
    u, v = rng.standard_normal(d), rng.standard_normal(d)
    X = rng.standard_normal((n, d)) / math.sqrt(d)
    if decay > 0:
        lam = np.arange(1, d + 1, dtype=np.float64) ** -decay
        Q, _ = np.linalg.qr(np.random.default_rng([seed, 1]).standard_normal((d, d)))
        X = (X * np.sqrt(d * lam / lam.sum())) @ Q.T
    y = np.sin(X @ u) + 0.5 * (X @ v) ** 2 + noise * rng.standard_normal(n)
    return X, y


def sphere(n: int, d: int, *, seed: int = 0) -> np.ndarray:
    """``n`` points uniform on the unit sphere in R^d: an ndarray of shape (n, d) with unit rows."""
    n = check_int(n, "n", minimum=1)
    d = check_int(d, "d", minimum=1)
    _check_size(float(n) * d, f"{n} points in {d} dimensions", "Use a smaller n or d.")
    X = np.random.default_rng(check_int(seed, "seed", minimum=0)).standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def one_hot_centred(y: np.ndarray, classes: int | None = None) -> np.ndarray:
    """Regression targets for classification: one-hot rows minus ``1/classes`` (each row sums to 0), shape
    (N, classes) for integer labels ``y`` of shape (N,); ``classes`` defaults to ``max(y) + 1``. Kernel regression
    on them and an argmax over the outputs is the kernel classifier of the tour's chapters."""
    y = np.asarray(y, dtype=np.int64)
    classes = int(y.max()) + 1 if classes is None else int(classes)
    return np.eye(classes)[y] - 1.0 / classes
