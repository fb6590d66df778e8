"""Figures of the infinite-width chapter (ch30_nets). Each takes an experiment's result (a dataclass of
:mod:`kernelscope.experiments.nets`) and draws it."""

from __future__ import annotations

import matplotlib
import numpy as np

from . import new_axes

__all__ = ["plot_rf_fits", "plot_rf_error", "plot_mc_error", "plot_angle_kernels", "plot_digits_accuracy"]


def _ax(ax):
    return new_axes(ax, (5.6, 4.0))


def plot_rf_fits(result, ax=None):
    """Random-features (frozen first layer, trained readout) fits for several k against NNGP regression."""
    ax = _ax(ax)
    x = np.asarray(result.x_grid)
    ks = result.ks
    colors = matplotlib.colormaps["viridis"](np.linspace(0.1, 0.85, len(ks)))
    for k, f, c in zip(ks, result.f_rf_example, colors):
        ax.plot(x, f, color=c, lw=1.2, label=f"k = {k} random features")
    ax.plot(x, result.f_nngp, "k--", lw=2, label="NNGP regression (k = ∞)")
    ax.plot(result.x_train, result.y_train, "o", color="tab:red", ms=4, label="training data")
    ax.set_xlabel("x")
    ax.set_ylabel("prediction f(x)")
    ax.set_title("Two-layer net, frozen first layer, trained readout")
    ax.legend(fontsize=7, loc="best")
    return ax


def _loglog_with_slope(ax, x, y, slope, intercept, label, color, marker="o"):
    x = np.asarray(x, float)
    ax.loglog(x, y, marker, color=color, label=label)
    ax.loglog(x, np.exp(intercept) * x**slope, "-", color=color, alpha=0.6, label=f"fit: slope {slope:.2f}")


def plot_rf_error(result, ax=None):
    """Distance between random-features and NNGP predictions against k (log-log, fitted slope)."""
    ax = _ax(ax)
    _loglog_with_slope(ax, result.ks, result.rf_error, result.rf_slope, result.rf_intercept,
                       "RMS |f_k − f_NNGP| on the grid (mean over draws)", "tab:blue")
    ax.set_xlabel("number of random features k")
    ax.set_ylabel("prediction error vs NNGP regression")
    ax.set_title(f"Random features → NNGP regression: measured slope {result.rf_slope:.2f}\n"
                 "(the kernel's own Monte Carlo error falls like k^−0.5)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_mc_error(result, ax=None):
    """Relative error of one finite network's empirical NNGP and NTK against width (log-log, fitted slopes)."""
    ax = _ax(ax)
    w = result.widths
    _loglog_with_slope(ax, w, result.nngp_error, result.nngp_slope, result.nngp_intercept,
                       "empirical NNGP (last-layer features)", "tab:blue")
    _loglog_with_slope(ax, w, result.ntk_error, result.ntk_slope, result.ntk_intercept,
                       "empirical NTK (torch.func Jacobians)", "tab:orange", marker="s")
    ax.set_xlabel("hidden width n")
    ax.set_ylabel("relative Frobenius error vs analytic")
    ax.set_title(f"Finite nets → infinite width ({result.depth} hidden ReLU layers)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_angle_kernels(result, activation: str, which: str, ax=None):
    """k(γ)/k(0) between unit inputs at angle γ, for depths 1–5 (one activation, NNGP or NTK)."""
    ax = _ax(ax)
    g = np.degrees(np.asarray(result.angles))
    curves = result.curves[activation][which]
    colors = matplotlib.colormaps["plasma"](np.linspace(0.05, 0.8, len(curves)))
    for depth, c in zip(sorted(curves, key=int), colors):
        ax.plot(g, curves[depth], color=c, label=f"depth {depth}")
    ax.set_xlabel("angle γ between unit inputs (degrees)")
    ax.set_ylabel(f"{which.upper()}(γ) / {which.upper()}(0)")
    ax.set_title(f"{activation}: {which.upper()}")
    ax.set_xlim(0, 180)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_digits_accuracy(result, ax=None):
    """Test accuracy on digits: NNGP and NTK regression against depth, RBF kernel ridge as a reference line."""
    ax = _ax(ax)
    for act, marker in zip(result.activations, ("o", "s", "^")):
        for which, ls in (("nngp", "-"), ("ntk", "--")):
            acc = [result.accuracy[f"{act}-{which}-{d}"] for d in result.depths]
            ax.plot(result.depths, acc, ls, marker=marker, label=f"{act} {which.upper()}")
    ax.axhline(result.accuracy["rbf"], color="k", lw=1.5, label="RBF kernel ridge")
    # an axis that starts near the data would blow differences of a few images up into a drama: show at least a
    # 10-point range, and the counts of correct test images on the right
    accs = list(result.accuracy.values())
    n = result.n_test
    lo = max(0.0, min(min(accs) - 0.02, max(accs) - 0.10))
    ax.set_ylim(lo, 1.0)
    right = ax.secondary_yaxis("right", functions=(lambda a: a * n, lambda c: c / n))
    right.set_ylabel(f"correct test images (of {n})")
    ax.set_xlabel("number of hidden layers")
    ax.set_ylabel("test accuracy")
    ax.set_xticks(result.depths)
    ax.set_title(f"Digits: {result.n_train} train / {result.n_test} test")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return ax
