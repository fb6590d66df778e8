"""Figure of the convolutional-kernel experiment (:func:`kernelscope.experiments.conv.conv_digits`): draw only."""

from __future__ import annotations

import numpy as np

from . import new_figure

__all__ = ["plot_conv_digits"]


def plot_conv_digits(result, axes=None):
    """Left: test accuracy of the NNGP/NTK regressors per architecture. Right: the finite CNNs' empirical-NTK
    error against the CNTK versus width (log-log) with the fitted slope and a −½ guide."""
    if axes is None:
        axes = new_figure((10.5, 3.8)).subplots(1, 2)
    ax, bx = axes
    archs = list(dict.fromkeys(r["architecture"] for r in result.rows))
    x = np.arange(len(archs))
    for i, (which, color) in enumerate((("NNGP", "tab:blue"), ("NTK", "tab:orange"))):
        acc = [next(r["test_accuracy"] for r in result.rows if r["architecture"] == a and r["kernel"] == which)
               for a in archs]
        bars = ax.bar(x + (i - 0.5) * 0.38, np.asarray(acc) * 100, 0.38, color=color, label=which)
        ax.bar_label(bars, labels=[f"{100 * v:.1f}" for v in acc], fontsize=8, padding=1)
    ax.set_xticks(x, archs, fontsize=8)
    ax.set_ylabel(f"test accuracy (%), {result.n_test} digits")
    ax.set_ylim(0, 105)
    ax.set_title(f"Kernel regression on {result.n_train} 8×8 digits", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    w, e = np.asarray(result.widths, float), np.asarray(result.ntk_errors)
    bx.errorbar(w, e, yerr=result.ntk_errors_se, fmt="o", color="tab:green", label="finite CNN (mean over draws)")
    bx.loglog(w, e[0] * (w / w[0]) ** -0.5, "k--", lw=1, label="slope −½")
    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_xlabel("channels per conv layer")
    bx.set_ylabel(r"$\|\Theta_{finite} - \Theta_\infty\|_F\, /\, \|\Theta_\infty\|_F$")
    bx.set_title(f"Empirical NTK → CNTK (fitted slope {result.slope:.2f})", fontsize=10)
    bx.legend(fontsize=8)
    return axes
