"""Figures of the kernel-regression chapter (THEORY.md §2–3). Each takes a result dataclass of
:mod:`kernelscope.experiments.kernels`, draws, and returns the Axes; nothing here computes a fit."""

from __future__ import annotations

import matplotlib
import numpy as np

from . import new_axes

__all__ = ["plot_feature_map_vs_kernel", "plot_ridge_path", "plot_ridge_norms", "plot_gp_band",
           "plot_random_features_fits", "plot_random_features_error"]


def _axes(ax, figsize=(6.0, 4.2)):
    return new_axes(ax, figsize)


def _data(ax, res, label="training data"):
    ax.scatter(res.x_train, res.y_train, s=28, color="black", zorder=5, label=label)


def plot_feature_map_vs_kernel(res, ax=None):
    """Linear regression on x, linear regression on the explicit polynomial features φ(x), and kernel regression
    with the polynomial kernel: the last two are one curve (drawn solid and dashed)."""
    ax = _axes(ax)
    _data(ax, res)
    ax.plot(res.x_grid, res.f_linear, color="#7f8c8d", lw=1.6, label="linear regression on x")
    ax.plot(res.x_grid, res.f_features, color="#2980b9", lw=4, alpha=0.55,
            label=f"ridge on explicit features φ(x) ({res.n_features} monomials)")
    ax.plot(res.x_grid, res.f_kernel, color="#c0392b", lw=1.6, ls="--",
            label=f"kernel trick, (x·x' + {res.coef0:g})^{res.degree}")
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title(f"Feature map = kernel trick (max difference {res.max_difference:.1e})")
    ax.legend(fontsize=8, loc="best")
    return ax


def plot_ridge_path(res, ax=None):
    """RBF kernel regression for decreasing ridge λ; λ = 0 is the least-norm interpolant through every point."""
    ax = _axes(ax)
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, len(res.ridges)))
    for lam, f, c in zip(res.ridges, res.f_grid, colors):
        label = "λ = 0 (least-norm interpolant, K⁺y)" if lam == 0 else f"λ = {lam:g}"
        ax.plot(res.x_grid, f, color=c, lw=2.2 if lam == 0 else 1.5, label=label)
    _data(ax, res)
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title(f"Ridge path, RBF kernel (γ = {res.gamma:g})")
    ax.legend(fontsize=8, loc="best")
    return ax


def plot_ridge_norms(res, ax=None):
    """Training RMSE and RKHS norm ‖f‖² = αᵀKα against λ (λ = 0 drawn at the left edge)."""
    ax = _axes(ax)
    lams = np.array(res.ridges, dtype=float)
    pos = lams[lams > 0]
    x_zero = pos.min() / 10 if pos.size else 1e-12
    xs = np.where(lams > 0, lams, x_zero)
    ax.loglog(xs, res.train_rmse, "o-", color="#c0392b", label="training RMSE")
    ax.loglog(xs, res.rkhs_norm2, "s-", color="#2980b9", label="RKHS norm² αᵀKα")
    ticks = sorted(set(xs.tolist()))
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0" if (t == x_zero and np.any(lams == 0)) else f"{t:g}" for t in ticks])
    ax.minorticks_off()
    if np.any(lams == 0):
        ax.axvline(x_zero, color="gray", ls=":", lw=1)
    ax.set_xlabel("ridge λ (log scale; λ = 0 at the left edge)")
    ax.set_ylabel("value (log scale)")
    ax.set_title("Smaller λ: smaller training error, larger norm")
    ax.legend(fontsize=8)
    return ax


def plot_gp_band(res, ax=None):
    """Gaussian-process reading: posterior mean ± 2 posterior std of the latent function."""
    ax = _axes(ax)
    ax.fill_between(res.x_grid, res.mean - 2 * res.std, res.mean + 2 * res.std, color="#2980b9", alpha=0.25,
                    label="mean ± 2 std")
    ax.plot(res.x_grid, res.mean, color="#2980b9", lw=1.8, label="posterior mean (= kernel regression)")
    ax.plot(res.x_grid, res.truth, color="gray", ls=":", lw=1.4, label="true function")
    _data(ax, res)
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title(f"GP posterior, RBF (γ = {res.gamma:g}), noise variance λ = {res.ridge:g}")
    ax.legend(fontsize=8, loc="best")
    return ax


def plot_random_features_fits(res, ax=None):
    """Random-ReLU-features regressions for a few k, and the exact arc-cosine kernel regression (k = ∞)."""
    ax = _axes(ax)
    colors = matplotlib.colormaps["autumn"](np.linspace(0.0, 0.7, len(res.example_k)))
    for k, f, c in zip(res.example_k, res.example_fits, colors):
        ax.plot(res.x_grid, f, color=c, lw=1.2, label=f"k = {k} random ReLU features")
    ax.plot(res.x_grid, res.f_exact, color="black", lw=2.0, ls="--", label="arc-cosine kernel (k = ∞)")
    _data(ax, res)
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title("Random features → kernel regression")
    ax.legend(fontsize=8, loc="best")
    return ax


def plot_random_features_error(res, ax=None):
    """RMS distance to the exact kernel regression against k on log-log axes, with the fitted slope."""
    ax = _axes(ax)
    ks = np.asarray(res.ks, dtype=float)
    err = np.asarray(res.error_mean)
    lo = np.asarray(res.error_q10)
    hi = np.asarray(res.error_q90)
    ax.fill_between(ks, lo, hi, color="#c0392b", alpha=0.2, label="10–90% over draws")
    ax.loglog(ks, err, "o", color="#c0392b", label="mean over draws")
    fit = np.exp(res.intercept) * ks**res.slope
    ax.loglog(ks, fit, "-", color="black", lw=1.2, label=f"fit: slope {res.slope:.2f} (theory −0.5)")
    ax.set_xlabel("number of random features k")
    ax.set_ylabel(r"RMS $|f_k - f_\infty|$ on the grid")
    ax.set_title("Monte Carlo rate 1/√k")
    ax.legend(fontsize=8)
    return ax
