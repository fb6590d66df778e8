"""Chapter 2: from linear regression to kernel regression, and random features (THEORY.md §2–3).

Four experiments, each a pure function returning a dataclass that :mod:`kernelscope.plots.kernels` draws:

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
from ..data import TARGETS_1D, regression_1d
from ..regression import KernelRegressor
from ..story import Chapter, ChapterResult, StepContext, Table

__all__ = ["CHAPTER", "FeatureMapResult", "RidgePathResult", "GPBandResult", "RandomFeaturesResult",
           "feature_map_vs_kernel", "ridge_path", "gp_band", "random_features_sweep", "random_features_fit"]

INTRO = """
<p>Linear regression fits <code>f(x) = w·x</code>. To fit curves, map the input to features
<code>φ(x) ∈ R<sup>k</sup></code> (monomials, say) and do linear regression there. The least-norm solution lies in
the row space again: <code>w = Φᵀα</code> with <code>α = (K + λI)⁻¹y</code> and <code>K<sub>ij</sub> =
φ(x<sub>i</sub>)·φ(x<sub>j</sub>) = k(x<sub>i</sub>, x<sub>j</sub>)</code>. Only inner products are needed, so the
features never have to be written down — the <strong>kernel trick</strong>: N unknowns however large k is, even
infinite (the RBF kernel). As λ → 0 the fit becomes the interpolant of least RKHS norm, <code>α = K⁺y</code>; read
as a Gaussian process, the same kernel gives the prediction as a posterior mean and error bars as a posterior
standard deviation.</p>
<p>Going the other way, a two-layer network with a <em>random, frozen</em> first layer B and a trained readout is
linear regression on <code>φ(x) = relu(Bx)/√k</code>. Its kernel is a Monte Carlo average that converges, like
1/√k, to the arc-cosine kernel <code>E[relu(b·x) relu(b·x')]</code>: the infinite-width network <em>is</em> a
kernel machine.</p>
"""


# ------------------------------------------------------------------------------------------------------------
# 1. Explicit polynomial features = the polynomial kernel
# ------------------------------------------------------------------------------------------------------------
@dataclass
class FeatureMapResult:
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
    slope, intercept = np.polyfit(np.log(np.asarray(ks, dtype=float)), np.log(mean), 1)
    fits = [random_features_fit(x, y, x_grid, int(k), ridge=ridge, seed=seed) for k in example_k]
    return RandomFeaturesResult(x[:, 0], y, x_grid[:, 0], exact, [int(k) for k in ks], mean, q10, q90,
                                float(slope), float(intercept), [int(k) for k in example_k], fits, n_draws, ridge)


# ------------------------------------------------------------------------------------------------------------
# The tour step
# ------------------------------------------------------------------------------------------------------------
def run(ctx: StepContext) -> ChapterResult:
    import matplotlib.pyplot as plt

    from ..plots import kernels as P

    out = ChapterResult()
    seed = ctx.seed
    target = TARGETS_1D["sin"]
    x_grid = np.linspace(-1.1, 1.1, 300)[:, None]
    truth = target(x_grid[:, 0])

    # 1. Feature map vs kernel trick
    x, y = regression_1d(20, noise=0.1, seed=seed, target="sin")
    fm = feature_map_vs_kernel(x, y, x_grid, degree=5, coef0=1.0, ridge=1e-4)
    fig, ax = plt.subplots(figsize=(7, 4.6))
    P.plot_feature_map_vs_kernel(fm, ax=ax)
    out.figures.append(ctx.savefig(fig, "feature_map.png",
                                   f"Linear regression on x (grey) cannot bend. Ridge regression on the "
                                   f"{fm.n_features} explicit monomial features φ(x) (blue) and kernel regression "
                                   f"with (x·x' + 1)^{fm.degree} (red, dashed) are the same curve: max difference "
                                   f"{fm.max_difference:.1e}."))
    out.numbers["feature_map_max_difference"] = fm.max_difference
    out.numbers["feature_map_n_features"] = fm.n_features

    # 2. Ridge path
    xr, yr = regression_1d(12, noise=0.1, seed=seed + 1, target="sin")
    rp = ridge_path(xr, yr, x_grid, truth, ridges=(1.0, 1e-1, 1e-2, 1e-4, 0.0), gamma=10.0)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    P.plot_ridge_path(rp, ax=axes[0])
    P.plot_ridge_norms(rp, ax=axes[1])
    fig.tight_layout()
    out.figures.append(ctx.savefig(fig, "ridge_path.png",
                                   "Left: RBF kernel regression as the ridge λ shrinks; at λ = 0 the curve is "
                                   "the least-norm interpolant α = K⁺y and passes through every point. Right: the "
                                   "training error falls and the RKHS norm αᵀKα grows as λ → 0."))
    out.tables.append(Table("Ridge path (RBF, γ = 10, 12 points)",
                            ["ridge λ", "training RMSE", "RKHS norm² αᵀKα", "RMSE to the true function"],
                            [[lam, r, n, t] for lam, r, n, t in zip(rp.ridges, rp.train_rmse, rp.rkhs_norm2,
                                                                     rp.test_rmse)]))
    out.numbers["ridge_path"] = {"ridges": rp.ridges, "train_rmse": rp.train_rmse, "rkhs_norm2": rp.rkhs_norm2,
                                 "test_rmse": rp.test_rmse}

    # 3. GP band
    xg, yg = regression_1d(10, noise=0.05, seed=seed + 2, target="sin", low=-1.0, high=1.0)
    gp = gp_band(xg, yg, x_grid, truth, gamma=5.0, ridge=0.05**2)
    fig, ax = plt.subplots(figsize=(7, 4.6))
    P.plot_gp_band(gp, ax=ax)
    out.figures.append(ctx.savefig(fig, "gp_band.png",
                                   "The same kernel regression read as a Gaussian process: the mean is the "
                                   "prediction, the band ±2 posterior std is narrow near data and widens in gaps "
                                   f"and beyond the data; the truth lies in the band on {100 * gp.coverage:.0f}% "
                                   "of the grid."))
    out.numbers["gp_coverage_2std"] = gp.coverage
    out.numbers["gp_std_range"] = [float(gp.std.min()), float(gp.std.max())]

    # 4. Random features → arc-cosine kernel
    ks = [10, 30, 100, 300, 1000, 3000] if ctx.quick else [10, 30, 100, 300, 1000, 3000, 10000, 30000]
    n_draws = 8 if ctx.quick else 40
    xf, yf = regression_1d(30, noise=0.1, seed=seed + 3, target="sin")
    rf = random_features_sweep(xf, yf, x_grid, ks, n_draws=n_draws, ridge=1e-2, seed=seed,
                               errors_for=lambda k, compute: ctx.checkpoint(f"random_features_k{k}", compute),
                               track=ctx.track)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    P.plot_random_features_fits(rf, ax=axes[0])
    P.plot_random_features_error(rf, ax=axes[1])
    fig.tight_layout()
    out.figures.append(ctx.savefig(fig, "random_features.png",
                                   "Left: regression on k random ReLU features relu(b·(x, 1))/√k approaches the "
                                   "exact arc-cosine kernel regression (dashed). Right: the RMS distance falls "
                                   f"like k^{rf.slope:.2f} (Monte Carlo theory: k^-0.5), mean over {n_draws} "
                                   "draws of the first layer."))
    out.tables.append(Table("Random ReLU features vs the arc-cosine kernel (ridge 1e-2, 30 points)",
                            ["k", "mean RMS distance", "10% quantile", "90% quantile"],
                            [[k, m, lo, hi] for k, m, lo, hi in zip(rf.ks, rf.error_mean, rf.error_q10,
                                                                     rf.error_q90)]))
    out.numbers["random_features"] = {"ks": rf.ks, "error_mean": rf.error_mean, "slope": rf.slope,
                                      "n_draws": n_draws}

    i0 = rp.ridges.index(0.0)
    out.findings = [
        f"The explicit feature map ({fm.n_features} monomials of degree ≤ {fm.degree}) and the polynomial kernel "
        f"give the same predictions to {fm.max_difference:.1e}: the kernel trick changes the cost, not the "
        "answer.",
        f"As λ goes from {rp.ridges[0]:g} to 0 the training RMSE falls from {rp.train_rmse[0]:.3f} to "
        f"{rp.train_rmse[i0]:.1e} and the RKHS norm² grows from {rp.rkhs_norm2[0]:.2f} to "
        f"{rp.rkhs_norm2[i0]:.1f}; λ = 0 (K⁺y) interpolates the noisy points. The error to the true function is "
        f"smallest at λ = {rp.ridges[int(np.argmin(rp.test_rmse))]:g} ({min(rp.test_rmse):.3f}), not at λ = 0 "
        f"({rp.test_rmse[i0]:.3f}).",
        f"The GP posterior std ranges from {gp.std.min():.3f} at the data to {gp.std.max():.2f} away from it; "
        f"the true function lies within ±2 std on {100 * gp.coverage:.0f}% of the grid.",
        f"Random-features regression converges to arc-cosine kernel regression: the mean RMS distance falls from "
        f"{rf.error_mean[0]:.3f} at k = {rf.ks[0]} to {rf.error_mean[-1]:.1e} at k = {rf.ks[-1]}, a fitted "
        f"log-log slope of {rf.slope:.2f} against the Monte Carlo −1/2.",
    ]
    return out


CHAPTER = Chapter(key="kernels", order=20, title="2. From linear regression to kernels", intro=INTRO, run=run)
