"""Figures of the training-dynamics chapters (THEORY.md §5–6): lazy training and the path kernel.

Each function draws results computed by :mod:`kernelscope.dynamics` and :mod:`kernelscope.experiments` (their
dataclasses) and returns the Axes (or an array of Axes for the image grid); none trains or computes kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._io import fmt
from . import new_axes, new_figure

__all__ = ["plot_width_sweep", "plot_lazy_functions", "plot_ntk_convergence", "plot_path_agreement",
           "plot_step_error", "plot_explanations", "plot_kernel_comparison", "plot_lazy_history",
           "plot_ensemble_bands", "plot_spiral_explanation", "plot_coefficients_vs_x"]

_METRICS = {
    "weight_change": (r"$\|w_T - w_0\| / \|w_0\|$", "#1f77b4", "o"),
    "ntk_change": (r"$\|\Theta_T - \Theta_0\| / \|\Theta_0\|$", "#d62728", "s"),
    "dist_net_lin": (r"RMS$(f_{net} - f_{lin})$", "#2ca02c", "^"),
    "dist_net_inf": (r"RMS$(f_{net} - f_\infty)$, flow with $\Theta_\infty$", "#9467bd", "D"),
}


def _width_ticks(ax, m) -> None:
    from matplotlib.ticker import FixedLocator, NullFormatter

    ax.xaxis.set_major_locator(FixedLocator(list(m)))
    ax.set_xticklabels([str(int(v)) for v in m])
    ax.xaxis.set_minor_formatter(NullFormatter())


def _np(a: Any) -> np.ndarray:
    return np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a, dtype=np.float64)


def plot_width_sweep(sweep, ax=None, title: str | None = None):
    """Log-log of the lazy-training metrics at the end of training against the width m, with fitted slopes and
    a ``m^{-1/2}`` guide. ``sweep``: the :class:`~kernelscope.dynamics.lazy.LazySweep` of
    :func:`kernelscope.dynamics.lazy_width_sweep`."""
    ax = new_axes(ax, (5.6, 4.4))
    runs = sweep.runs
    m = np.array([r.width for r in runs], float)
    for key, (label, color, marker) in _METRICS.items():
        values = [getattr(r, key) for r in runs]
        if any(v is None for v in values):
            continue
        vals = np.array([v[-1] if isinstance(v, list) else v for v in values], float)
        slope = sweep.slopes.get(key, float("nan"))
        text = f"slope {fmt(slope, '+.2f')}"
        if len(m) > 2 and vals[-1] > 0 and vals[-2] > 0:
            # a curve that bends at the wide end is not described by its fitted slope alone: say so in the legend
            last = float(np.log(vals[-1] / vals[-2]) / np.log(m[-1] / m[-2]))
            if abs(last - slope) > 0.15:
                text += f"; {int(m[-2])}→{int(m[-1])}: {fmt(last, '+.2f')}"
        ax.loglog(m, vals, marker=marker, color=color, label=f"{label}  ({text})")
    ref = np.array([r.weight_change[-1] for r in runs])
    ax.loglog(m, ref[0] * (m / m[0]) ** -0.5, "k--", lw=1, label=r"guide $\propto m^{-1/2}$")
    _width_ticks(ax, m)
    ax.set_xlabel("width m")
    ax.set_ylabel("at the end of training")
    hidden = sweep.depth - 1  # LazySweep.depth counts weight layers (dynamics.mlp); the page counts hidden layers
    ax.set_title(title or f"Lazy training, {hidden} hidden layer{'s' if hidden != 1 else ''} ({sweep.steps} steps)")
    # below the axes: inside, the legend would hide the wide end of the curves, where they bend
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_lazy_history(sweep, key: str = "dist_net_lin", ax=None):
    """One metric of :func:`~kernelscope.dynamics.train_lazy` against the training step, one curve per width of a
    :class:`~kernelscope.dynamics.lazy.LazySweep`."""
    import matplotlib as mpl

    ax = new_axes(ax, (5.6, 4.4))
    runs = sweep.runs
    cmap = mpl.colormaps["viridis"]
    for j, r in enumerate(runs):
        steps, vals = np.array(r.record_steps), np.array(getattr(r, key), float)
        keep = vals > 0  # step 0 is exactly 0 for the gaps: no place on a log axis
        ax.plot(steps[keep], vals[keep], marker=".", color=cmap(j / max(1, len(runs) - 1)), label=f"m = {r.width}")
    ax.set_yscale("log")
    ax.set_xlabel("gradient-descent step")
    ax.set_ylabel(_METRICS.get(key, (key,))[0])
    ax.set_title("The network leaves its linearisation more slowly as m grows")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return ax


def plot_lazy_functions(run, X: Any, y: Any, X_test: Any, ax=None):
    """1-D inputs: the trained network, its trained linearisation, the gradient-flow prediction with the empirical
    Θ₀ (and with the infinite-width NTK when recorded), the initial function and the training points. ``run``: a
    :class:`~kernelscope.dynamics.LazyRun` trained on ``X`` (N, 1), ``y`` (N,), predicting at ``X_test`` (M, 1)."""
    ax = new_axes(ax, (5.6, 4.4))
    xs = _np(X_test).ravel()
    order = np.argsort(xs)
    ax.plot(xs[order], np.array(run.f0_test)[order], color="0.6", lw=1, ls=":", label="f₀ (initial net)")
    ax.plot(xs[order], np.array(run.f_net_test)[order], color="#1f77b4", lw=2.2, label="trained net")
    ax.plot(xs[order], np.array(run.f_lin_test)[order], color="#ff7f0e", lw=1.4, ls="--",
            label="trained linearisation")
    if run.f_flow_test is not None:
        ax.plot(xs[order], np.array(run.f_flow_test)[order], color="k", lw=1, ls="-.", label="gradient flow, Θ₀")
    if run.f_inf_test is not None:
        ax.plot(xs[order], np.array(run.f_inf_test)[order], color="#9467bd", lw=1, label="gradient flow, Θ∞")
    ax.scatter(_np(X).ravel(), _np(y).ravel(), s=18, color="#c0392b", zorder=5, label="training points")
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title(f"width m = {run.width} after {run.steps_done} steps")
    ax.legend(fontsize=8)
    return ax


def plot_ntk_convergence(conv, ax=None):
    """Relative error of the empirical NTK of ``net.finite(width=m)`` against ``net.kernel().ntk`` (each seed a
    dot, the mean a line), log-log with the fitted slope. ``conv``: a :class:`~kernelscope.dynamics.NTKConvergence`."""
    ax = new_axes(ax, (5.6, 4.4))
    m = np.array(conv.widths, float)
    err = np.array(conv.errors, float)  # (widths, seeds)
    for s in range(err.shape[1]):
        ax.scatter(m, err[:, s], s=12, color="#1f77b4", alpha=0.5)
    ax.loglog(m, err.mean(1), "o-", color="#1f77b4", label=f"mean over seeds (slope {fmt(conv.slope, '+.2f')})")
    ax.loglog(m, err.mean(1)[0] * (m / m[0]) ** -0.5, "k--", lw=1, label=r"guide $\propto m^{-1/2}$")
    _width_ticks(ax, m)
    ax.set_xlabel("width m")
    ax.set_ylabel(r"$\|\hat\Theta_m - \Theta_\infty\|_F\, /\, \|\Theta_\infty\|_F$")
    ax.set_title("Empirical NTK → infinite-width NTK")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_path_agreement(result: Any, X_test: Any | None = None, ax=None):
    """The kernel machine ``b + Σ a_i K(x, x_i)`` against the trained model: over a 1-D test grid when
    ``X_test`` is given (and 1-D), else as a scatter of the two."""
    ax = new_axes(ax, (5.6, 4.4))
    fm, fk, b = _np(result.f_model), _np(result.f_kernel), _np(result.b)
    how = "exact (Gauss–Legendre)" if result.exact else "left-endpoint sum"
    if X_test is not None and _np(X_test).reshape(len(fm), -1).shape[1] == 1 and fm.ndim == 1:
        xs = _np(X_test).ravel()
        o = np.argsort(xs)
        ax.plot(xs[o], b[o], color="0.6", ls=":", label="b = f₀(x)")
        ax.plot(xs[o], fm[o], color="#1f77b4", lw=3, alpha=0.6, label="trained model")
        ax.plot(xs[o], fk[o], color="#c0392b", lw=1.2, ls="--", label=f"kernel machine, {how}")
        ax.set_xlabel("x")
        ax.set_ylabel("f(x)")
    else:
        ax.scatter(fm.ravel(), fk.ravel(), s=10, color="#c0392b")
        lim = [min(fm.min(), fk.min()), max(fm.max(), fk.max())]
        ax.plot(lim, lim, "k--", lw=1)
        ax.set_xlabel("trained model f(x)")
        ax.set_ylabel(r"$\sum_i a_i K(x, x_i) + b$")
    ax.set_title(f"Path kernel machine vs model (rel. error {result.rel_error:.1e})")
    ax.legend(fontsize=8) if ax.get_legend_handles_labels()[0] else None
    return ax


def plot_step_error(study: Any, ax=None):
    """Relative error of the kernel machine against the step size at fixed training time T: Domingos'
    left-endpoint sum (first order, fitted slope) and the exact per-step quadrature. ``study``: a
    :class:`kernelscope.experiments.pathkernel.StepSizeStudy`."""
    ax = new_axes(ax, (5.6, 4.4))
    lr = np.array(study.lr, float)
    ax.loglog(lr, study.left_endpoint, "o-", color="#d62728",
              label=f"left-endpoint sum (slope {fmt(study.slope, '+.2f')})")
    exact = np.maximum(np.array(study.exact, float), 1e-17)
    ax.loglog(lr, exact, "s-", color="#2ca02c", label="Gauss–Legendre per step")
    ax.loglog(lr, study.left_endpoint[-1] * lr / lr[-1], "k--", lw=1, label="guide ∝ η (first order)")
    from matplotlib.ticker import FixedLocator, NullFormatter

    ax.xaxis.set_major_locator(FixedLocator(list(lr)))
    ax.set_xticklabels([f"{v:.2g}" for v in lr], fontsize=8)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("step size η (training time T = η·steps fixed)")
    ax.set_ylabel(r"$\|f_{kernel} - f_{model}\|\, /\, \|f_{model}\|$")
    ax.set_title(f"Discrete steps, training time T = {study.T:.3g}")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_explanations(result: Any, X_train: Any, X_test: Any, indices: Sequence[int], k: int = 5,
                      image_shape: tuple[int, int] = (8, 8), labels_train: Any = None, labels_test: Any = None,
                      fig=None):
    """For each test image (rows), the ``k`` training images with the largest ``|a_i K(x, x_i)|`` to the predicted
    class score, titled with their contribution (green adds, red subtracts). Returns the array of Axes."""
    from ..dynamics import top_contributions

    Xtr, Xte = _np(X_train), _np(X_test)
    pred = _np(result.f_model)
    rows = len(indices)
    if fig is None:
        fig = new_figure((1.35 * (k + 1) + 0.3, 1.55 * rows + 0.5))
    axes = fig.subplots(rows, k + 1, squeeze=False)
    for r, j in enumerate(indices):
        top, contrib = top_contributions(result, j, k)
        c = int(np.argmax(pred[j])) if pred.ndim == 2 else None
        a = axes[r, 0]
        a.imshow(Xte[j].reshape(image_shape), cmap="gray_r")
        true = f"label {int(_np(labels_test)[j])}, " if labels_test is not None else ""
        a.set_title(f"test: {true}pred {c}" if c is not None else f"test: {true}f={pred[j]:.2f}", fontsize=8)
        for q, (i, v) in enumerate(zip(top, contrib)):
            a = axes[r, q + 1]
            a.imshow(Xtr[i].reshape(image_shape), cmap="gray_r")
            lab = f"y={int(_np(labels_train)[i])} " if labels_train is not None else ""
            a.set_title(f"{lab}{fmt(v, '+.2f')}", fontsize=8, color="#2ca02c" if v > 0 else "#c0392b")
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(r"Which training points make the prediction: largest $|a_i K(x, x_i)|$ (green: for the class, red: "
                 "against it)", fontsize=10)
    fig.tight_layout()
    return axes


def plot_kernel_comparison(result: Any, distance: Any, ax=None, label: str = ""):
    """Path kernel ``K(x, x_i)`` of one scalar-output :class:`~kernelscope.dynamics.PathKernelResult` against
    ``T·Θ₀`` (dots) and ``T·Θ_T`` (crosses), with their relative distances in the legend (``distance``: its
    :class:`~kernelscope.experiments.pathkernel.KernelDistance`)."""
    ax = new_axes(ax, (5.0, 4.6))
    K, K0, KT = _np(result.K).ravel(), result.T * _np(result.ntk0).ravel(), result.T * _np(result.ntkT).ravel()
    ax.scatter(K0, K, s=9, color="#1f77b4", alpha=0.6, marker="o",
               label=f"vs $T\\Theta_0$  ($\\|K - T\\Theta_0\\| / \\|K\\|$ = {distance.vs_T_theta0:.2g})")
    ax.scatter(KT, K, s=12, color="#d62728", alpha=0.6, marker="x",
               label=f"vs $T\\Theta_T$  ($\\|K - T\\Theta_T\\| / \\|K\\|$ = {distance.vs_T_thetaT:.2g})")
    lo, hi = min(K.min(), K0.min(), KT.min()), max(K.max(), K0.max(), KT.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(r"$T\,\times$ tangent kernel at the start ($\Theta_0$) or end ($\Theta_T$)")
    ax.set_ylabel(r"path kernel $K(x, x_i)$")
    ax.set_title(label or "Path kernel vs the tangent kernel at the ends of the path")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_ensemble_bands(bands, axes=None):
    """Left: trained finite nets (thin lines), their mean ± 2 std (dashed) and the infinite ensemble's mean ± 2 std
    (band); right: the two standard deviations over x, with the prior's. ``bands``: the
    :class:`~kernelscope.experiments.lazy.EnsembleBands` of :func:`kernelscope.experiments.lazy.ensemble_bands`.
    Returns the two Axes."""
    if axes is None:
        axes = new_figure((11, 4.2)).subplots(1, 2)
    x, F = _np(bands.x), _np(bands.nets)
    mean, std = _np(bands.mean), _np(bands.std)
    m_net, s_net = F.mean(0), F.std(0, ddof=1)
    ax = axes[0]
    ax.fill_between(x, mean - 2 * std, mean + 2 * std, color="#9467bd", alpha=0.25, label="ensemble mean ± 2σ")
    ax.plot(x, mean, color="#9467bd", lw=2)
    for f in F[:12]:
        ax.plot(x, f, color="0.5", lw=0.6, alpha=0.6)
    ax.plot(x, m_net + 2 * s_net, "k--", lw=1, label=f"{len(F)} trained nets: mean ± 2 std")
    ax.plot(x, m_net - 2 * s_net, "k--", lw=1)
    ax.plot(_np(bands.X), _np(bands.y), "o", color="#d62728", ms=4, label="training points")
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title(f"width {bands.width}, {bands.steps} GD steps")
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1]
    ax.plot(x, std, color="#9467bd", lw=2, label="infinite ensemble σ(t)")
    ax.plot(x, s_net, "k--", lw=1.2, label="std over the trained nets")
    ax.plot(x, _np(bands.prior_std), color="0.6", lw=1, label="prior σ (t = 0)")
    ax.set_xlabel("x")
    ax.set_ylabel("standard deviation of f(x)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return axes


def plot_classifier_sweep(sweep, axes=None):
    """Left: distance of trained ten-class nets to the infinite-width cross-entropy flow (same f₀) against the width
    (log-log, fitted slope, an m^(−1/2) guide). Right: accuracy against training time of the infinite-width
    classifier (f₀ = 0) on cross-entropy and on the squared loss, with the trained nets' test accuracy at the end
    of their training. ``sweep``: the :class:`~kernelscope.experiments.lazy.ClassifierSweep` of
    :func:`kernelscope.experiments.lazy.classifier_sweep`. Returns the two Axes."""
    import matplotlib

    if axes is None:
        axes = new_figure((11, 4.2)).subplots(1, 2)
    runs = sweep.runs
    m = np.array([r.width for r in runs], float)
    gap = np.array([r.gap for r in runs])
    ax = axes[0]
    ax.loglog(m, gap, "o-", color="#1f77b4",
              label=f"$\\|f_{{net}} - f_\\infty\\| / \\|f_\\infty - f_0\\|$ (slope {fmt(sweep.gap_slope, '+.2f')})")
    ax.loglog(m, gap[0] * (m / m[0]) ** -0.5, "k--", lw=1, label=r"guide $\propto m^{-1/2}$")
    _width_ticks(ax, m)
    ax.set_xlabel("width m")
    ax.set_ylabel("relative distance on the test images")
    ax.set_title(f"trained net vs infinite-width flow, {sweep.steps} steps")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1]
    t = np.asarray(sweep.times)
    ax.semilogx(t, sweep.infinite_test_accuracy, color="#ff7f0e", lw=2,
                label="infinite width, cross-entropy (test)")
    ax.semilogx(t, sweep.infinite_train_accuracy, color="#ff7f0e", lw=1, ls="--",
                label="infinite width, cross-entropy (train)")
    ax.semilogx(t, sweep.mse_test_accuracy, color="0.35", lw=1.5, ls=":",
                label="infinite width, squared loss (test)")
    colors = matplotlib.colormaps["viridis"](np.linspace(0.1, 0.85, len(runs)))
    # the nets stop at the same t with accuracies a few images apart: spread the markers sideways (a factor on the
    # log axis) so that none hides another, and give each value in the legend
    spread = 1.25 ** (np.arange(len(runs)) - (len(runs) - 1) / 2)
    for r, c, f in zip(runs, colors, spread):
        ax.plot([r.steps_done * f], [r.test_accuracy], "o", color=c, ms=7, mec="k", mew=0.5,
                label=f"trained net m={r.width}: test {r.test_accuracy:.3f}")
    ax.axvline(sweep.steps, color="0.6", lw=0.8)
    ax.set_xlabel(r"training time t (gradient-descent steps of $\eta = 1/\lambda_{max}(\Theta_\infty)$; "
                  f"the nets stop at t = {sweep.steps})")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{sweep.n_train} training, {sweep.n_test} test images, 10 classes")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    return axes


def plot_spiral_explanation(X_train, y_train, x, contributions, predicted: int, k: int = 12, ax=None):
    """The spiral training points (by class) with the ``k`` largest ``|a_i K(x, x_i)|`` for the predicted class of
    test point ``x`` ringed, the ring's area ∝ |contribution|: a solid black ring pushes the score of the predicted
    class up, a dashed magenta ring pushes it down (ring colours no class uses). A legend says all of it.

    X_train (N, 2), y_train (N,), x (2,), contributions (N,) to the predicted class score.
    """
    from matplotlib.lines import Line2D

    from .spirals import class_colors

    ax = new_axes(ax, (5.0, 5.0))
    X, c, y = _np(X_train), _np(contributions), _np(y_train).astype(int)
    K = int(y.max()) + 1
    colors = class_colors(K)
    for j in range(K):
        sel = y == j
        ax.scatter(X[sel, 0], X[sel, 1], s=10, color=colors[j], alpha=0.55, linewidths=0)
    top = np.argsort(-np.abs(c))[:k]
    size = 400 * np.abs(c[top]) / np.abs(c[top]).max()
    up = c[top] > 0
    ax.scatter(X[top[up], 0], X[top[up], 1], s=size[up], facecolors="none", linewidths=1.6, edgecolors="k")
    ax.scatter(X[top[~up], 0], X[top[~up], 1], s=size[~up], facecolors="none", linewidths=1.6,
               edgecolors="#cc00cc", linestyles="--")
    xx = _np(x)
    ax.scatter([xx[0]], [xx[1]], marker="*", s=300, color="gold", edgecolor="k", lw=1.2, zorder=5)
    handles = [Line2D([], [], ls="", marker="o", ms=5, color=colors[j], label=f"class {j}") for j in range(K)]
    handles += [Line2D([], [], ls="", marker="*", ms=13, mfc="gold", mec="k",
                       label=f"test point (predicted {predicted})"),
                Line2D([], [], ls="", marker="o", ms=10, mfc="none", mec="k", mew=1.6,
                       label="pushes its score up"),
                Line2D([], [], ls="", marker="o", ms=10, mfc="none", mec="#cc00cc", mew=1.6,
                       label="pushes it down (ring area ∝ |contribution|)")]
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2,
              title=f"rings: the top {k} training points", title_fontsize=8)
    ax.set_aspect("equal")
    ax.set_title(r"Which training points make the prediction: largest $|a_i K(x, x_i)|$", fontsize=10)
    return ax


def plot_coefficients_vs_x(result: Any, X_test, X_train, indices, ax=None):
    """Domingos' "coefficients" ``a_i(x)`` of a few training points ``indices`` against the 1-D test input x
    (scalar-output result): a true kernel machine would draw horizontal lines. The training inputs are marked."""
    ax = new_axes(ax, (5.4, 4.2))
    xs, a, Xtr = _np(X_test).ravel(), _np(result.a), _np(X_train).ravel()
    for i in indices:
        line, = ax.plot(xs, a[:, i], lw=1.6, label=f"$a_i(x)$ for $x_i$ = {fmt(Xtr[i], '+.2f')}")
        ax.axvline(Xtr[i], color=line.get_color(), lw=0.8, ls=":")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("test input x")
    ax.set_ylabel(r"$a_i(x)$")
    ax.set_title(f"The coefficients depend on x ({result.optimizer})", fontsize=10)
    ax.legend(fontsize=8)
    return ax
