"""Chapter 3: from linear regression to kernel regression, and random features (THEORY.md §2–3).

Text and figures; the experiments are :mod:`kernelscope.experiments.kernels`.
"""

from __future__ import annotations

import numpy as np

from ..story import Chapter, ChapterResult, StepContext, Table

__all__ = ["CHAPTER"]

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
# The tour step
# ------------------------------------------------------------------------------------------------------------
def run(ctx: StepContext) -> ChapterResult:
    from ..data import TARGETS_1D, regression_1d
    from ..experiments.kernels import feature_map_vs_kernel, gp_band, random_features_sweep, ridge_path
    from ..plots import kernels as P
    from ..plots import new_figure

    out = ChapterResult()
    seed = ctx.seed
    target = TARGETS_1D["sin"]
    x_grid = np.linspace(-1.1, 1.1, 300)[:, None]
    truth = target(x_grid[:, 0])

    # 1. Feature map vs kernel trick
    x, y = regression_1d(20, noise=0.1, seed=seed, target="sin")
    fm = feature_map_vs_kernel(x, y, x_grid, degree=5, coef0=1.0, ridge=1e-4)
    fig = new_figure((7, 4.6))
    ax = fig.subplots()
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
    fig = new_figure((12, 4.6))
    axes = fig.subplots(1, 2)
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
    fig = new_figure((7, 4.6))
    ax = fig.subplots()
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
    fig = new_figure((12, 4.6))
    axes = fig.subplots(1, 2)
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


CHAPTER = Chapter(key="kernels", order=20, title="3. From linear regression to kernels", intro=INTRO, run=run,
                  seconds=12)
