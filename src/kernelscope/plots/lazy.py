"""Figures of lazy ↔ rich training (THEORY.md §5; Chizat, Oyallon & Bach 2019; Yang & Hu 2021): what moves when the
output scale α, the width and the parameterisation change.

Each function draws a result of :mod:`kernelscope.experiments.lazy` (:class:`~kernelscope.experiments.lazy.AlphaStudy`,
:class:`~kernelscope.dynamics.LazySweep`, :class:`~kernelscope.experiments.lazy.CurvatureSweep`) and returns its
Axes; fitted lines are drawn from the slopes and intercepts the experiments fitted, nothing is computed here.
"""

from __future__ import annotations

import numpy as np

from .._io import fmt
from . import new_axes

__all__ = ["plot_alpha_sweep", "plot_alpha_errors", "plot_alpha_functions", "plot_parameterizations",
           "plot_width_errors", "plot_curvature_ratio"]

#: metric -> (label, colour, marker), the same in every figure of this module
METRICS = {
    "weight_change": ("‖w_T − w₀‖ / ‖w₀‖", "#1f77b4", "o"),
    "ntk_change": ("‖Θ_T − Θ₀‖ / ‖Θ₀‖", "#d62728", "s"),
    "dist_net_lin": ("RMS(f_net − f_lin), test", "#2ca02c", "^"),
}
#: parameterisation -> (label, line style)
STYLES = {"ntk": ("NTK", "-"), "mup": ("μP (mean field)", "--")}


def _log_ticks(ax, values, fmt_tick: str = "{:g}") -> None:
    from matplotlib.ticker import FixedLocator, NullFormatter

    ax.xaxis.set_major_locator(FixedLocator(list(values)))
    ax.set_xticklabels([fmt_tick.format(v) for v in values], fontsize=8)
    ax.xaxis.set_minor_formatter(NullFormatter())


def _fitted(ax, x, slope: float, intercept: float, color, ls=":") -> None:
    """The fitted power law ``e^intercept · x^slope`` over the x it was fitted on."""
    if np.isfinite(slope) and np.isfinite(intercept):
        ax.plot(x, np.exp(intercept) * x ** slope, ls=ls, color=color, lw=1)


def plot_alpha_sweep(study, ax=None):
    """The lazy metrics at the end of training against the output scale α (log-log), one marker per α, with the
    lines fitted over α ≥ 1 (dotted; their slopes in the legend, theory −1). ``study``: an
    :class:`~kernelscope.experiments.lazy.AlphaStudy`."""
    ax = new_axes(ax, (5.6, 4.4))
    sw = study.sweep
    a = np.array([r.alpha for r in sw.runs], float)
    lazy = a[a >= 1]
    for key, (label, color, marker) in METRICS.items():
        ax.loglog(a, [getattr(r, key)[-1] for r in sw.runs], marker=marker, color=color, lw=1.4,
                  label=f"{label}  (slope {fmt(sw.slopes[key], '+.2f')})")
        _fitted(ax, lazy, sw.slopes[key], sw.intercepts[key], color)
    from matplotlib.transforms import blended_transform_factory

    ax.axvspan(a.min() / 1.3, 1.0, color="#f5deb3", alpha=0.35, lw=0)
    ax.text(1.0, 0.96, "← rich   lazy →", transform=blended_transform_factory(ax.transData, ax.transAxes),
            ha="center", va="top", fontsize=8.5, color="0.25")
    _log_ticks(ax, a)
    ax.set_xlabel("output scale α   (f = α·(g(w) − g(w₀)), trained on L/α²)")
    ax.set_ylabel(f"after {sw.steps} steps")
    ax.set_title(f"Width m = {study.width} fixed, α varies: all move as 1/α")
    ax.legend(fontsize=7.5, loc="lower left")
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_alpha_errors(study, ax=None):
    """Test error (RMS against the noiseless target) of the trained net and of its trained linearisation against
    α. The linearisation's is the same for every α (its function-space steps do not depend on α). ``study``: an
    :class:`~kernelscope.experiments.lazy.AlphaStudy`."""
    ax = new_axes(ax, (5.6, 4.4))
    runs = study.sweep.runs
    a = np.array([r.alpha for r in runs], float)
    ax.semilogx(a, [r.test_error_net[-1] for r in runs], "o-", color="#1f77b4", lw=2, label="trained net")
    ax.semilogx(a, [r.test_error_lin[-1] for r in runs], "s--", color="#ff7f0e", lw=1.4,
                label="trained linearisation")
    _log_ticks(ax, a)
    ax.set_xlabel("output scale α")
    ax.set_ylabel("test RMS error against sin 3x")
    ax.set_title("Where the linear model stops describing the net")
    ax.legend(fontsize=8, loc="best")
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_alpha_functions(study, index: int, ax=None):
    """The trained net and its trained linearisation on the 1-D test grid at the α of ``study.sweep.runs[index]``,
    with the training points and the noiseless target."""
    ax = new_axes(ax, (5.6, 4.4))
    r = study.sweep.runs[index]
    xs = np.asarray(study.X_test, float)[:, 0]
    o = np.argsort(xs)
    ax.plot(xs[o], np.asarray(study.y_test)[o], color="0.6", lw=1, ls=":", label="target sin 3x")
    ax.plot(xs[o], np.asarray(r.f_net_test)[o], color="#1f77b4", lw=2.2, label="trained net")
    ax.plot(xs[o], np.asarray(r.f_lin_test)[o], color="#ff7f0e", lw=1.4, ls="--", label="trained linearisation")
    ax.scatter(np.asarray(study.X)[:, 0], study.y, s=18, color="#c0392b", zorder=5, label="training points")
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title(f"α = {r.alpha:g}: RMS(net − lin) = {r.dist_net_lin[-1]:.2g}")
    ax.legend(fontsize=7)
    return ax


def plot_parameterizations(ntk, mup, ax=None):
    """Relative weight change and relative NTK change at the end of training against the width, for the NTK
    parameterisation (solid) and μP (dashed), with the fitted lines (dotted) and their slopes. ``ntk``, ``mup``:
    the :class:`~kernelscope.dynamics.LazySweep` of each (the same data, steps and step size)."""
    ax = new_axes(ax, (5.6, 4.4))
    for sweep in (ntk, mup):
        name, ls = STYLES[sweep.parameterization]
        m = np.array([r.width for r in sweep.runs], float)
        for key in ("weight_change", "ntk_change"):
            label, color, marker = METRICS[key]
            ax.loglog(m, [getattr(r, key)[-1] for r in sweep.runs], marker=marker, ls=ls, color=color,
                      label=f"{name}: {label} (slope {fmt(sweep.slopes[key], '+.2f')})")
            _fitted(ax, m, sweep.slopes[key], sweep.intercepts.get(key, np.nan), color)
    _log_ticks(ax, [r.width for r in ntk.runs], "{:.0f}")
    ax.set_xlabel("width m")
    ax.set_ylabel(f"after {ntk.steps} steps")
    ax.set_title("NTK parameterisation: lazy as m grows; μP: not")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_width_errors(ntk, mup, ax=None):
    """Test error of the trained net (markers, solid) and of its trained linearisation (open markers, thin)
    against the width, for the NTK parameterisation and μP. ``ntk``, ``mup``: :class:`~kernelscope.dynamics.LazySweep`
    s recorded with ``y_test``."""
    ax = new_axes(ax, (5.6, 4.4))
    colors = {"ntk": "#1f77b4", "mup": "#9467bd"}
    for sweep in (ntk, mup):
        name, ls = STYLES[sweep.parameterization]
        c = colors[sweep.parameterization]
        m = np.array([r.width for r in sweep.runs], float)
        ax.semilogx(m, [r.test_error_net[-1] for r in sweep.runs], "o", ls=ls, color=c, lw=2, label=f"{name}: net")
        ax.semilogx(m, [r.test_error_lin[-1] for r in sweep.runs], "o", ls=ls, color=c, lw=0.8, mfc="white",
                    label=f"{name}: linearisation")
    _log_ticks(ax, [r.width for r in ntk.runs], "{:.0f}")
    ax.set_xlabel("width m")
    ax.set_ylabel("test RMS error against sin 3x")
    ax.set_title(f"Test error after {ntk.steps} steps: net (filled), linearisation (open)")
    ax.legend(fontsize=7.5)
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_curvature_ratio(curv, ax=None):
    """``‖∇²f(x)‖/‖∇f(x)‖²`` at initialisation against the width: one dot per input, the mean joined, the fitted
    line dotted with its slope; per network of the sweep. ``curv``: a
    :class:`~kernelscope.experiments.lazy.CurvatureSweep`."""
    ax = new_axes(ax, (5.6, 4.4))
    m = np.array(curv.widths, float)
    looks = {"ntk": ("NTK, erf", "#1f77b4", "-"), "mup": ("μP, erf", "#9467bd", "--"),
             "ntk_relu": ("NTK, ReLU", "#2ca02c", "-")}
    for k, ratio in curv.ratio.items():
        label, color, ls = looks.get(k, (k, "0.3", "-"))
        r = np.asarray(ratio, float)  # (n_widths, n_points)
        for j in range(r.shape[1]):
            ax.scatter(m, r[:, j], s=10, color=color, alpha=0.45)
        ax.loglog(m, r.mean(1), marker="o", ls=ls, color=color,
                  label=f"{label} (slope {fmt(curv.slopes[k], '+.2f')})")
        _fitted(ax, m, curv.slopes[k], curv.intercepts[k], color)
    _log_ticks(ax, curv.widths, "{:.0f}")
    ax.set_xlabel("width m")
    ax.set_ylabel("‖∇²f(x)‖ / ‖∇f(x)‖² at w₀")
    ax.set_title("Curvature against slope at initialisation")
    ax.legend(fontsize=7.5)
    ax.grid(True, which="both", alpha=0.3)
    return ax
