"""Data the story uses, all generated or bundled (no downloads).

- :func:`spirals` - K interleaved spiral arms (the NYU Deep Learning course's generator).
- :func:`digits` - scikit-learn's bundled 8x8 digits (1797 images), scaled to [0, 1].
- :func:`regression_1d` - a smooth 1-D target with noise, for curves you can look at.
- :func:`regression_nd` - a smooth target on d-dimensional inputs.
- :func:`sphere` - points on the unit sphere (kernels of normalised data depend on angles alone).
- :func:`mnist1d` - MNIST-1D (Greydanus & Kobak 2024), generated procedurally: 4000 + 1000 signals of length 40.
"""

from __future__ import annotations

import math

import numpy as np

from ._arrays import ValidationError, check_int, check_memory, check_nonnegative

__all__ = ["spirals", "digits", "regression_1d", "regression_nd", "sphere", "one_hot_centred", "TARGETS_1D",
           "mnist1d", "MNIST1D_TEMPLATES"]


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


# ------------------------------------------------------------------------------------------------------------
# MNIST-1D (Greydanus & Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024)
# ------------------------------------------------------------------------------------------------------------
#: The ten 12-point templates of the digits 0-9 (the paper's Figure 1; the ``mnist1d`` package's
#: ``get_templates``), before whitening.
MNIST1D_TEMPLATES = np.array([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
])

# the package's default arguments (mnist1d.data.get_dataset_args)
_MNIST1D = {"num_samples": 5000, "train_split": 0.8, "padding": (36, 60), "scale_coeff": 0.4, "max_translation": 48,
            "corr_noise_scale": 0.25, "iid_noise_scale": 2e-2, "shear_scale": 0.75, "final_seq_length": 40}


def _resample(x: np.ndarray, n: int) -> np.ndarray:
    """Rows of x (B, L) linearly interpolated from L to n equally spaced points on [0, 1] (the package's
    ``interpolate``, scipy's ``interp1d(kind='linear')``)."""
    old, new = np.linspace(0.0, 1.0, x.shape[-1]), np.linspace(0.0, 1.0, n)
    hi = np.clip(np.searchsorted(old, new, side="left"), 1, len(old) - 1)
    lo = hi - 1
    slope = (x[..., hi] - x[..., lo]) / (old[hi] - old[lo])
    return slope * (new - old[lo]) + x[..., lo]


def mnist1d(n_train: int = 4000, n_test: int = 1000, *, seed: int = 42, shuffle_positions: bool = False
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-1D: ten digit templates of 12 points, each padded, stretched, scaled, translated, with correlated and
    white noise added, sheared and sampled at 40 points (Greydanus & Kobak 2024).

    With the defaults this is the data set of the paper: the ``mnist1d`` package's
    ``make_dataset(get_dataset_args())`` (seed 42; 5000 signals, the first 4000 for training), generated here with
    the same random draws in the same order, without the package and without touching NumPy's global random
    state (``tests/test_mnist1d.py`` checks the two agree). Per signal, with ``r`` the draws of
    ``np.random.RandomState(seed)``: pad the template (+1e-8) with ``36 + ⌊61 r⌋`` zeros, resample to 72 points,
    scale by ``1 + 0.4 (r − ½)``, roll by ``randint(48)`` places, fill the zeros with Gaussian-smoothed (σ = 2)
    noise of scale 0.25, add white noise of scale 0.02, subtract the shear ``0.75 (r − ½)·linspace(−½, ½)``
    and resample to 40 points; then the 5000 signals are shuffled and standardised together.

    Parameters
    ----------
    n_train : the first ``n_train`` (≤ 4000) of the training signals.  n_test : the first (≤ 1000) test signals.
    seed : the generator's seed (42: the paper's set).
    shuffle_positions : permute the 40 positions of every signal the same way (the paper's "shuffled" set, which
        destroys locality: the MLP does not notice, convolutions do).

    Returns
    -------
    X_train (n_train, 40), y_train (n_train,) int64 in 0..9, X_test (n_test, 40), y_test (n_test,).
    """
    from scipy.ndimage import gaussian_filter1d

    a = _MNIST1D
    n_split = int(a["num_samples"] * a["train_split"])
    n_train = check_int(n_train, "n_train", minimum=1, maximum=n_split)
    n_test = check_int(n_test, "n_test", minimum=1, maximum=a["num_samples"] - n_split)
    rng = np.random.RandomState(check_int(seed, "seed", minimum=0))  # the package's draws, in its order
    t = MNIST1D_TEMPLATES - MNIST1D_TEMPLATES.mean(1, keepdims=True)
    t = t / t.std(1, keepdims=True)
    t = (t - t[:, :1]) / 6.0 + 1e-8  # start and end at 0 (and the package's eps)
    low, high = a["padding"]
    width = t.shape[1] + high  # 72 points after the padding is stretched
    per_class = a["num_samples"] // len(t)
    labels = np.repeat(np.arange(len(t)), per_class)
    pads, scales, shifts = [], [], []
    corr, white, shears = [], [], []
    for _ in labels:  # the draws of one signal: pad, scale, translation, two noises, shear
        pads.append(low + int(rng.rand() * (high - low + 1)))
        scales.append(1 + a["scale_coeff"] * (rng.rand() - 0.5))
        shifts.append(rng.choice(a["max_translation"]))
        corr.append(a["corr_noise_scale"] * rng.randn(width))
        white.append(a["iid_noise_scale"] * rng.randn(width))
        shears.append(a["shear_scale"] * (rng.rand() - 0.5))
    pads = np.asarray(pads)
    x = np.empty((len(labels), width))
    for p in np.unique(pads):  # the padded templates, resampled to 72 points: one batch per padding length
        rows = np.flatnonzero(pads == p)
        x[rows] = _resample(np.concatenate([t[labels[rows]], np.zeros((len(rows), p))], axis=1), width)
    x = x * np.asarray(scales)[:, None]
    x = np.take_along_axis(x, (np.arange(width) - np.asarray(shifts)[:, None]) % width, axis=1)  # roll each row
    x = np.where(x != 0, x, gaussian_filter1d(np.stack(corr), 2.0, axis=1))  # noise where there is no signal
    x = x + np.stack(white) - np.asarray(shears)[:, None] * np.linspace(-0.5, 0.5, width)
    x = _resample(x, a["final_seq_length"])  # (N, 40)
    order = rng.permutation(len(labels))
    x, y = x[order], labels[order]
    if shuffle_positions:
        x = x[:, rng.permutation(x.shape[1])]
    x = (x - x.mean()) / x.std()
    return x[:n_train], y[:n_train], x[n_split:n_split + n_test], y[n_split:n_split + n_test]
