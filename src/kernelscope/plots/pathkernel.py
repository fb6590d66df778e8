"""Figures of Domingos' path kernel examined as a kernel (chapter 6): attributions against leave-one-out
retraining, and the tangent kernel's path Θ_t. They draw results of :mod:`kernelscope.experiments.pathkernel`;
none trains or computes a kernel."""

from __future__ import annotations

import numpy as np

from . import new_axes, new_figure

__all__ = ["plot_leave_one_out", "plot_kernel_path"]


def plot_leave_one_out(loo, ax=None):
    """Domingos' attribution ``a_i K(x, x_i)`` against the change of ``f(x)`` when the net is retrained without
    ``x_i`` (every test point x and training point i; the axes have their own scales), with the least-squares line
    through the origin and the rank correlations."""
    ax = new_axes(ax, (5.0, 4.6))
    c, d = np.asarray(loo.contributions).ravel(), np.asarray(loo.retrained).ravel()
    ax.scatter(c, d, s=5, alpha=0.45, color="C0", linewidths=0)
    lim = float(np.abs(c).max()) * 1.05
    ax.plot([-lim, lim], [-lim * loo.slope, lim * loo.slope], color="C3", lw=1.0,
            label=f"least squares: change = {loo.slope:.3g} × attribution")
    ax.set_xlim(-lim, lim)
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("attribution $a_i K(x, x_i)$")
    ax.set_ylabel("$f_T(x)$ − $f_T$ without $x_i$ (retrained)")
    ax.set_title(f"attributions vs leave-one-out retraining\nSpearman per x: median {loo.median_spearman:.2f}; "
                 f"Pearson over all pairs {loo.pearson:.2f}", fontsize=9)
    ax.legend(fontsize=7.5, loc="upper left")
    return ax


def plot_kernel_path(path, axes=None):
    """The tangent kernel Θ_t on train × train along training (trace over the outputs). Left: its centred
    alignment with the labels (the path kernel's as a dashed line). Right: its distance to Θ₀, relative
    (``‖Θ_t − Θ₀‖/‖Θ₀‖``) and up to scale (``min_c ‖Θ_t − cΘ₀‖/‖Θ_t‖``), log scale."""
    if axes is None:
        axes = new_figure((10.5, 4.0), layout="constrained").subplots(1, 2)
    a0, a1 = axes
    steps = np.asarray(path.steps, float)
    a0.plot(steps, path.alignment, "o-", ms=3, color="C4", label="Θ_t")
    a0.axhline(path.alignment_path, color="C3", ls="--", label="path kernel K (symmetric part)")
    a0.set_xlabel("training step t")
    a0.set_ylabel("kernel-target alignment")
    a0.set_title("alignment of the tangent kernel with the labels", fontsize=9)
    a0.legend(fontsize=8)
    rel = np.asarray(path.distance, float)
    shape = np.asarray(path.shape_distance, float)
    a1.semilogy(steps[1:], rel[1:], "o-", ms=3, color="C0", label="‖Θ_t − Θ₀‖ / ‖Θ₀‖")
    a1.semilogy(steps[1:], shape[1:], "s-", ms=3, color="C2", label="up to scale: min_c ‖Θ_t − cΘ₀‖ / ‖Θ_t‖")
    a1.set_xlabel("training step t")
    a1.set_ylabel("distance to Θ₀")
    a1.set_title("how far the tangent kernel moved from Θ₀", fontsize=9)
    a1.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    return axes
