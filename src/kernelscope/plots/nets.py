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
    ax.legend(fontsize=8, loc="best")
    return ax


def _loglog_with_slope(ax, x, y, slope, intercept, label, color, marker="o"):
    x = np.asarray(x, float)
    ax.loglog(x, y, marker, color=color, label=label)
    ax.loglog(x, np.exp(intercept) * x**slope, "-", color=color, alpha=0.6, label=f"fit: slope {slope:.2f}")


def plot_rf_error(result, ax=None):
    """Distance between random-features and NNGP predictions against k (log-log, fitted slope)."""
    ax = _ax(ax)
    _loglog_with_slope(ax, result.ks, result.rf_error, result.rf_slope, result.rf_intercept,
                       r"RMS $|f_k - f_{NNGP}|$ on the grid (mean over draws)", "tab:blue")
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
    """k(γ)/k(0) between unit inputs at angle γ, for 1–5 hidden layers (one activation, NNGP or NTK)."""
    ax = _ax(ax)
    g = np.degrees(np.asarray(result.angles))
    curves = result.curves[activation][which]
    colors = matplotlib.colormaps["plasma"](np.linspace(0.05, 0.8, len(curves)))
    for depth, c in zip(sorted(curves, key=int), colors):
        ax.plot(g, curves[depth], color=c, label=f"{depth} hidden layer{'s' if str(depth) != '1' else ''}")
    ax.set_xlabel("angle γ between unit inputs (degrees)")
    ax.set_ylabel(f"{which.upper()}(γ) / {which.upper()}(0)")
    ax.set_title(f"{activation}: {which.upper()}")
    ax.set_xlim(0, 180)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_digits_accuracy(result, ax=None):
    """Test errors on digits (misclassified test images, out of ``n_test``) of NNGP and NTK regression against
    depth, RBF kernel ridge as a reference line.

    The models differ by a few images, so the axis counts images (accuracy on the right): on an accuracy axis
    from 0.9 to 1 the curves lie on top of each other. Each curve is shifted a little sideways so that equal
    counts stay visible.
    """
    ax = _ax(ax)
    n = result.n_test
    series = [(act, which) for act in result.activations for which in ("nngp", "ntk")]
    markers = {"nngp": "o", "ntk": "s"}
    shift = 0.06 * (np.arange(len(series)) - (len(series) - 1) / 2)  # sideways, in units of depth
    colors = matplotlib.colormaps["tab10"]
    errors = {}
    for j, (act, which) in enumerate(series):
        acc = np.array([result.accuracy[f"{act}-{which}-{d}"] for d in result.depths])
        err = np.rint((1 - acc) * n)
        errors[(act, which)] = err
        ax.plot(np.asarray(result.depths) + shift[j], err, "-" if which == "nngp" else "--", marker=markers[which],
                color=colors(result.activations.index(act)), ms=6, mfc="none" if which == "ntk" else None,
                mew=1.6, label=f"{act} {which.upper()}")
    rbf = round((1 - result.accuracy["rbf"]) * n)
    ax.axhline(rbf, color="k", lw=1.2, ls=":", label=f"RBF kernel ridge ({rbf})")
    hi = max(max(e.max() for e in errors.values()), rbf)
    ax.set_ylim(-0.5, hi + 2.5)  # room for the legend above the curves
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    right = ax.secondary_yaxis("right", functions=(lambda e: 1 - e / n, lambda a: (1 - a) * n))
    right.set_ylabel("test accuracy")
    right.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=1))
    ax.set_xlabel("number of hidden layers")
    ax.set_ylabel(f"misclassified test images (of {n})")
    ax.set_xticks(result.depths)
    ax.set_title(f"Digits: {result.n_train} train / {n} test images")
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    ax.grid(True, alpha=0.3)
    return ax
