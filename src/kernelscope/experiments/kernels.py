"""Chapter 3's experiments: from linear regression to kernel regression, and random features (THEORY.md §2–3).

Each is a pure function returning a dataclass that :mod:`kernelscope.plots.kernels` draws:

1. :func:`feature_map_vs_kernel` - ridge regression on explicit polynomial features and kernel regression with
   the polynomial kernel give the same curve (max difference reported);
2. :func:`ridge_path` - RBF kernel regression as λ → 0, down to the least-norm interpolant ``α = K⁺y``;
3. :func:`gp_band` - the Gaussian-process reading: posterior mean ± 2 std;
4. :func:`random_features_sweep` - regression on k random ReLU features converges to the exact arc-cosine
   kernel regression, with error ∝ k^{-1/2}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels as K
from ..regression import KernelRegressor
from ..stats import fit_slope

__all__ = ["FeatureMapResult", "RidgePathResult", "GPBandResult", "RandomFeaturesResult",
           "feature_map_vs_kernel",
           "ridge_path", "gp_band", "random_features_sweep", "random_features_fit"]


# ------------------------------------------------------------------------------------------------------------
# 1. Explicit polynomial features = the polynomial kernel
# ------------------------------------------------------------------------------------------------------------
@dataclass
class FeatureMapResult:
    """Explicit polynomial features against the polynomial kernel (:func:`feature_map_vs_kernel`): the fits on a
    grid and their largest difference."""

    x_train: np.ndarray  # (N,)
    y_train: np.ndarray  # (N,)
    x_grid: np.ndarray  # (G,)
    f_linear: np.ndarray  # (G,) linear regression on (x, 1)
    f_features: np.ndarray  # (G,) ridge regression on φ(x)
    f_kernel: np.ndarray  # (G,) kernel regression with (x·x' + c₀)^p
    degree: int
    coef0: float
    ridge: float
    n_features: int
    max_difference: float


def feature_map_vs_kernel(x: np.ndarray, y: np.ndarray, x_grid: np.ndarray, *, degree: int = 5,
                          coef0: float = 1.0, ridge: float = 1e-4) -> FeatureMapResult:
    """Primal ridge ``w = (ΦᵀΦ + λI)⁻¹Φᵀy`` on explicit features against ``α = (K + λI)⁻¹y`` with the kernel.

    x (N, 1), y (N,), x_grid (G, 1). Features are :func:`kernelscope.kernels.polynomial_features` with γ = 1.
    """
    Phi = K.polynomial_features(x, degree, gamma=1.0, coef0=coef0)  # (N, C(p+1, p))
    Phi_grid = K.polynomial_features(x_grid, degree, gamma=1.0, coef0=coef0)  # (G, C(p+1, p))
    w = np.linalg.solve(Phi.T @ Phi + ridge * np.eye(Phi.shape[1]), Phi.T @ y)
    f_features = Phi_grid @ w
    model = KernelRegressor("poly", ridge=ridge, kernel_params={"degree": degree, "gamma": 1.0, "coef0": coef0})
    f_kernel = model.fit(x, y).predict(x_grid)
    A = np.column_stack([x[:, 0], np.ones(len(x))])
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    f_linear = coef[0] * x_grid[:, 0] + coef[1]
    return FeatureMapResult(x[:, 0], y, x_grid[:, 0], f_linear, f_features, f_kernel, degree, coef0, ridge,
                            Phi.shape[1], float(np.max(np.abs(f_features - f_kernel))))


# ------------------------------------------------------------------------------------------------------------
# 2. Ridge path down to the least-norm interpolant
# ------------------------------------------------------------------------------------------------------------
@dataclass
class RidgePathResult:
    """RBF kernel regression along a path of ridges λ down to 0 (:func:`ridge_path`): fits, training error, RKHS
    norm and error to the truth per λ."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_grid: np.ndarray
    ridges: list[float]
    f_grid: list[np.ndarray]  # one (G,) curve per ridge
    train_rmse: list[float]
    rkhs_norm2: list[float]  # αᵀKα
    test_rmse: list[float]  # against the noiseless target on the grid
    gamma: float


def ridge_path(x: np.ndarray, y: np.ndarray, x_grid: np.ndarray, truth: np.ndarray, *,
               ridges=(1.0, 1e-1, 1e-2, 1e-4, 0.0), gamma: float = 10.0) -> RidgePathResult:
    """RBF kernel regression for each λ in ``ridges``; λ = 0 goes through the pseudoinverse (``α = K⁺y``)."""
    Kx = K.rbf(x, gamma=gamma)
    curves, rmse, norms, test = [], [], [], []
    for lam in ridges:
        model = KernelRegressor("rbf", ridge=lam, kernel_params={"gamma": gamma}).fit(x, y)
        f = model.predict(x_grid)
        alpha = model.dual_coef_
        curves.append(f)
        rmse.append(float(np.sqrt(np.mean((model.predict(x) - y) ** 2))))
        norms.append(float(alpha @ Kx @ alpha))
        test.append(float(np.sqrt(np.mean((f - truth) ** 2))))
    return RidgePathResult(x[:, 0], y, x_grid[:, 0], [float(r) for r in ridges], curves, rmse, norms, test, gamma)


# ------------------------------------------------------------------------------------------------------------
# 3. The Gaussian-process reading
# ------------------------------------------------------------------------------------------------------------
@dataclass
class GPBandResult:
    """The Gaussian-process posterior of RBF kernel regression (:func:`gp_band`): mean, standard deviation and their
    coverage of the truth."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_grid: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    truth: np.ndarray
    gamma: float
    ridge: float
    coverage: float  # fraction of the grid where |truth − mean| ≤ 2 std


def gp_band(x: np.ndarray, y: np.ndarray, x_grid: np.ndarray, truth: np.ndarray, *, gamma: float = 5.0,
            ridge: float = 2.5e-3) -> GPBandResult:
    """Posterior mean and std of the latent function (noise variance λ = ridge)."""
    mean, std = KernelRegressor("rbf", ridge=ridge, kernel_params={"gamma": gamma}).fit(x, y).predict(
        x_grid, return_std=True)
    coverage = float(np.mean(np.abs(truth - mean) <= 2 * std))
    return GPBandResult(x[:, 0], y, x_grid[:, 0], mean, std, truth, gamma, ridge, coverage)


# ------------------------------------------------------------------------------------------------------------
# 4. Random ReLU features → the arc-cosine kernel
# ------------------------------------------------------------------------------------------------------------
def _with_bias(x: np.ndarray) -> np.ndarray:
    # z = (x, 1): the bias input makes relu(b·z) a ReLU with a random kink position, not one through 0
    return np.column_stack([x, np.ones(len(x))])


def random_features_fit(x: np.ndarray, y: np.ndarray, x_grid: np.ndarray, k: int, *, ridge: float,
                        seed: int) -> np.ndarray:
    """Ridge regression on ``φ(z) = relu(Bz)/√k`` (z = (x, 1)): f = Φ_grid Φᵀ (ΦΦᵀ + λI)⁻¹ y, shape (G,)."""
    Z = _with_bias(np.concatenate([x, x_grid]))
    Phi = K.random_relu_features(Z, k, seed=seed)  # one draw of B for train and grid alike
    P, Pg = Phi[: len(x)], Phi[len(x):]
    alpha = np.linalg.solve(P @ P.T + ridge * np.eye(len(x)), y)
    return Pg @ (P.T @ alpha)


@dataclass
class RandomFeaturesResult:
    """Random ReLU features against arc-cosine kernel regression (:func:`random_features`): the error per number of
    features k and its log-log slope."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_grid: np.ndarray
    f_exact: np.ndarray  # (G,) arc-cosine kernel regression
    ks: list[int]
    error_mean: list[float]  # mean over draws of the RMS distance to f_exact
    error_q10: list[float]
    error_q90: list[float]
    slope: float
    intercept: float
    example_k: list[int]
    example_fits: list[np.ndarray]
    n_draws: int
    ridge: float


def random_features_sweep(x: np.ndarray, y: np.ndarray, x_grid: np.ndarray, ks, *, n_draws: int = 10,
                          ridge: float = 1e-2, seed: int = 0, example_k=(10, 100, 1000), errors_for=None,
                          track=lambda it, desc: it) -> RandomFeaturesResult:
    """Distance between random-features regression and exact arc-cosine kernel regression, against k.

    ``errors_for(k, compute)`` may wrap each k's computation (the tour uses it to checkpoint); the log-log slope
    of the mean error against k is fitted by least squares (theory: −1/2).
    """
    exact = KernelRegressor("arccos", ridge=ridge).fit(_with_bias(x), y).predict(_with_bias(x_grid))
    errors_for = errors_for or (lambda k, compute: compute())

    def errors(k: int) -> list[float]:
        return [float(np.sqrt(np.mean((random_features_fit(x, y, x_grid, k, ridge=ridge, seed=seed + s) - exact)
                                      ** 2))) for s in range(n_draws)]

    mean, q10, q90 = [], [], []
    for k in track(list(ks), "random features"):
        e = np.asarray(errors_for(int(k), lambda k=int(k): errors(k)))
        mean.append(float(e.mean()))
        q10.append(float(np.quantile(e, 0.1)))
        q90.append(float(np.quantile(e, 0.9)))
    slope, intercept = fit_slope(ks, mean)
    fits = [random_features_fit(x, y, x_grid, int(k), ridge=ridge, seed=seed) for k in example_k]
    return RandomFeaturesResult(x[:, 0], y, x_grid[:, 0], exact, [int(k) for k in ks], mean, q10, q90,
                                float(slope), float(intercept), [int(k) for k in example_k], fits, n_draws, ridge)
