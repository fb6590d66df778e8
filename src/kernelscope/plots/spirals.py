"""Figures of the spiral chapter: they draw results of :mod:`kernelscope.experiments`, they do not train.

Every function is ``plot_x(result, ..., ax=None) -> Axes`` (or a list of Axes for multi-panel figures); the two
moving pictures are written as GIFs by :func:`animate_embedding` and :func:`animate_interpolation`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.colors import ListedColormap

from .._io import atomic_save_animation
from . import new_axes, new_figure

__all__ = ["class_colors", "embedding_lims", "plot_embedding", "plot_embedding_panels", "plot_input_regions",
           "plot_interpolation", "plot_interpolation_panels", "embedding_scale", "plot_training_curves",
           "plot_width_sweep",
           "plot_folding", "plot_regimes", "animate_embedding", "animate_interpolation", "plot_phases",
           "plot_class_vectors", "plot_layer_norms", "plot_svd_stages", "plot_pieces_vs_width", "plot_drag",
           "plot_influence_vs_width"]


def class_colors(k: int) -> list:
    """``k`` distinguishable colours (tab10, then tab20)."""
    cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]


def _regions_cmap(k: int) -> ListedColormap:
    return ListedColormap(class_colors(k))


def embedding_lims(run, pad: float = 1.1) -> tuple[float, float, float, float]:
    """Square limits holding every snapshot of the embedding (the same for every frame of the GIF)."""
    emb = run.embeddings[np.isfinite(run.embeddings).all(axis=(1, 2))] if len(run.embeddings) else np.zeros((1, 1, 2))
    lim = pad * float(np.abs(emb).max()) if emb.size else 1.0
    lim = lim if lim > 0 else 1.0
    return (-lim, lim, -lim, lim)


def _linear_regions(W: np.ndarray, c: np.ndarray, lims, resolution: int = 160) -> np.ndarray:
    # argmax_k (W e + c)_k on a grid of the embedding plane: the linear classifier's decision regions
    x0, x1, y0, y1 = lims
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    s = np.stack([gx.ravel(), gy.ravel()], 1) @ W.T + c
    return s.argmax(1).reshape(resolution, resolution)


def _arrow_style(color) -> dict:
    from matplotlib import patheffects

    return dict(arrowstyle="-|>", color=color, lw=2.4, mutation_scale=15,
                path_effects=[patheffects.withStroke(linewidth=3.6, foreground="k")])


def plot_embedding(run, index: int = -1, ax=None, *, lims=None, max_points: int = 2000, show_regions: bool = True):
    """The 2-D embedding at snapshot ``index``: points by class, class vectors as arrows, decision regions behind.

    Arrows are the rows ``w_k`` of the classifier (directions exact; lengths scaled together to fit the frame).
    """
    ax = new_axes(ax, (5.2, 5.0))
    K = run.classes
    lims = embedding_lims(run) if lims is None else lims
    e = run.embeddings[index]
    W, c = run.class_vectors[index], run.class_biases[index]
    colors = class_colors(K)
    if show_regions and np.isfinite(W).all():
        ax.imshow(_linear_regions(W, c, lims), origin="lower", extent=lims, cmap=_regions_cmap(K), alpha=0.25,
                  vmin=-0.5, vmax=K - 0.5, interpolation="nearest", aspect="auto")
    step = max(1, len(e) // max_points)
    ax.scatter(e[::step, 0], e[::step, 1], c=[colors[k] for k in run.y_train[::step]], s=4, linewidths=0)
    norms = np.linalg.norm(W, axis=1)
    if np.isfinite(norms).all() and norms.max() > 0:
        scale = 0.8 * lims[1] / norms.max()
        for k in range(K):
            ax.annotate("", xy=(W[k, 0] * scale, W[k, 1] * scale), xytext=(0, 0),
                        arrowprops=_arrow_style(colors[k]))
    ax.set_xlim(lims[0], lims[1])
    ax.set_ylim(lims[2], lims[3])
    ax.set_aspect("equal")
    ax.set_xlabel("embedding $e_1$")
    ax.set_ylabel("embedding $e_2$")
    ax.text(0.02, 0.02, f"mean |e| = {run.embedding_radius[index]:.3g}", transform=ax.transAxes, fontsize=9,
            bbox=dict(facecolor="white", alpha=0.7, edgecolor="none"))
    epoch = int(run.snapshot_epochs[index])
    acc = run.train_accuracy[epoch] if epoch < len(run.train_accuracy) else float("nan")
    ax.set_title(f"epoch {epoch}   train accuracy {acc:.1%}")
    return ax


def plot_embedding_panels(run, n_panels: int = 6, axes=None):
    """``n_panels`` snapshots side by side with shared limits: collapsed, grown, then un-warped."""
    # epochs 0, then 5% ... 100% of training, spaced geometrically (growth early, un-warping later)
    E = int(run.snapshot_epochs[-1])
    targets = np.concatenate([[0], np.geomspace(0.05 * E, E, max(n_panels - 1, 1))]) if E > 0 else [0]
    idx = np.unique([int(np.abs(run.snapshot_epochs - t).argmin()) for t in targets])
    if axes is None:
        cols = min(3, len(idx))
        rows = math.ceil(len(idx) / cols)
        axes = new_figure((4.3 * cols, 4.4 * rows), layout="constrained").subplots(rows, cols, squeeze=False)
        axes = list(axes.ravel())
    lims = embedding_lims(run)
    for ax, i in zip(axes, idx):
        plot_embedding(run, int(i), ax, lims=lims, max_points=1500)
    for ax in axes[len(idx):]:
        ax.axis("off")
    return axes


def plot_input_regions(run, ax=None):
    """Decision regions ``argmax_k s_k(x)`` of the trained net over the input plane, with the training points."""
    ax = new_axes(ax, (5.2, 5.0))
    K = run.classes
    colors = class_colors(K)
    ax.imshow(run.input_regions, origin="lower", extent=run.input_lims, cmap=_regions_cmap(K), alpha=0.3,
              vmin=-0.5, vmax=K - 0.5, interpolation="nearest", aspect="auto")
    step = max(1, len(run.X_train) // 2500)
    ax.scatter(run.X_train[::step, 0], run.X_train[::step, 1], c=[colors[k] for k in run.y_train[::step]], s=4,
               linewidths=0)
    ax.set_xlim(run.input_lims[:2])
    ax.set_ylim(run.input_lims[2:])
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(f"input plane: train {run.final_train_accuracy:.1%}, test {run.final_test_accuracy:.1%}")
    return ax


def _morph(a: float, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    return (1.0 - a) * start + a * end


def embedding_scale(run) -> float:
    """Factor ``c`` that brings the embedded grid to the size of the input grid, so the morph fits one frame."""
    big = float(np.nanmax(np.abs(run.grid_embedding))) if np.isfinite(run.grid_embedding).any() else 0.0
    return float(np.abs(run.grid_input).max()) / big if big > 0 else 1.0


def _morph_lims(run, pad: float = 1.05):
    c = embedding_scale(run)
    both = np.concatenate([run.grid_input.reshape(-1, 2), c * run.grid_embedding.reshape(-1, 2)])
    lim = pad * float(np.nanmax(np.abs(both)))
    return (-lim, lim, -lim, lim)


def plot_interpolation(run, alpha: float, ax=None, *, lims=None):
    """The trained map morphing the plane: grid and points at ``(1 - a) x + a c e(x)``.

    ``c`` (:func:`embedding_scale`) rescales the embedding to the size of the input box (the map's shape, not its
    overall scale, is the point); it is given in the title.
    """
    ax = new_axes(ax, (5.2, 5.0))
    lims = _morph_lims(run) if lims is None else lims
    c = embedding_scale(run)
    lines = _morph(alpha, run.grid_input, c * run.grid_embedding)
    for line in lines:
        ax.plot(line[:, 0], line[:, 1], color="0.45", lw=0.6)
    pts = _morph(alpha, run.X_train, c * run.embeddings[-1]) if len(run.embeddings) else run.X_train
    colors = class_colors(run.classes)
    step = max(1, len(pts) // 2000)
    ax.scatter(pts[::step, 0], pts[::step, 1], c=[colors[k] for k in run.y_train[::step]], s=4, linewidths=0,
               zorder=3)
    ax.set_xlim(lims[:2])
    ax.set_ylim(lims[2:])
    ax.set_aspect("equal")
    ax.set_xlabel("$(1-a)\\,x_1 + a\\,c\\,e_1$")
    ax.set_ylabel("$(1-a)\\,x_2 + a\\,c\\,e_2$")
    where = {0.0: "input plane", 1.0: "embedding"}.get(float(alpha), "on the way")
    ax.set_title(f"a = {alpha:.2f}: {where}")
    return ax


def plot_interpolation_panels(run, alphas: Sequence[float] = (0.0, 0.5, 1.0), axes=None):
    """Three stages of the morph, large enough to read at page width, with ``c`` explained in the title."""
    if axes is None:
        fig = new_figure((4.4 * len(alphas), 4.9), layout="constrained")
        axes = fig.subplots(1, len(alphas), squeeze=False)
        axes = list(axes.ravel())
        fig.suptitle(f"Input x (a = 0) morphing into the learned embedding e(x) (a = 1); c = "
                     f"{embedding_scale(run):.3g} rescales e to the size of the input box (the shape matters, "
                     "not the scale)", fontsize=10)
    lims = _morph_lims(run)
    for ax, a in zip(axes, alphas):
        plot_interpolation(run, a, ax, lims=lims)
    return axes


def plot_training_curves(run, axes=None):
    """Loss (log scale) and training accuracy per epoch of one run; two axes."""
    if axes is None:
        axes = new_figure((10, 3.8)).subplots(1, 2)
    a0, a1 = axes
    a0.semilogy(run.epochs, run.loss, color="C0")
    a0.set_xlabel("epoch")
    a0.set_ylabel("cross-entropy (train)")
    a0.set_title("loss")
    a1.plot(run.epochs, run.train_accuracy, color="C1")
    a1.axhline(1.0 / run.classes, color="0.5", ls=":", label=f"chance 1/{run.classes}")
    a1.set_ylim(0, 1.02)
    a1.set_xlabel("epoch")
    a1.set_ylabel("train accuracy")
    a1.set_title(f"accuracy (test at the end: {run.final_test_accuracy:.1%})")
    a1.legend(loc="lower right")
    for ax in axes:
        ax.grid(alpha=0.3)
    return axes


def plot_width_sweep(sweep, axes=None):
    """Loss and training-accuracy curves for every hidden width (narrow widths struggle)."""
    if axes is None:
        axes = new_figure((13, 4.4), layout="constrained").subplots(1, 2)
    a0, a1 = axes
    cmap = matplotlib.colormaps["viridis"]
    n = len(sweep.widths)
    for i, (w, loss, acc) in enumerate(zip(sweep.widths, sweep.loss, sweep.train_accuracy)):
        color = cmap(i / max(n - 1, 1))
        a0.semilogy(np.arange(len(loss)), loss, color=color, label=f"H = {w}")
        a1.plot(np.arange(len(acc)), acc, color=color, label=f"H = {w} (test {sweep.test_accuracy[i]:.0%})")
    a0.set_xlabel("epoch")
    a0.set_ylabel("cross-entropy (train)")
    a0.set_title("loss per hidden width H")
    a1.set_xlabel("epoch")
    a1.set_ylabel("train accuracy")
    a1.set_ylim(0, 1.02)
    a1.set_title("accuracy per hidden width H")
    # one legend for both panels (same colours), outside the axes so that it hides no curve
    a1.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              title="hidden width (final test accuracy)", title_fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    return axes


def plot_folding(fold, axes=None):
    """The narrow deep net stage by stage: a grid of the plane and the data after every linear map / leaky ReLU.

    Each panel's title names the stage and the number of linear pieces of the map from the input to it.
    """
    S = len(fold.stage_names)
    if axes is None:
        cols = min(5, S)
        rows = math.ceil(S / cols)
        axes = new_figure((2.9 * cols, 3.3 * rows), layout="constrained").subplots(rows, cols, squeeze=False)
        axes = list(axes.ravel())
    K = int(fold.config["classes"])
    colors = class_colors(K)
    pc = [colors[k] for k in fold.y_train]
    n_lines = fold.stage_grid[0].shape[0]
    for s, ax in enumerate(axes[:S]):
        grid, pts = fold.stage_grid[s], fold.stage_points[s]
        for j, line in enumerate(grid):
            ax.plot(line[:, 0], line[:, 1], color="C0" if j < n_lines // 2 else "C3", lw=0.5, alpha=0.6)
        ax.scatter(pts[:, 0], pts[:, 1], c=pc, s=3, linewidths=0, zorder=3)
        both = np.concatenate([grid.reshape(-1, 2), pts])
        lo, hi = np.quantile(both, 0.005, axis=0), np.quantile(both, 0.995, axis=0)
        span = np.maximum(hi - lo, 1e-9)
        ax.set_xlim(lo[0] - 0.05 * span[0], hi[0] + 0.05 * span[0])
        ax.set_ylim(lo[1] - 0.05 * span[1], hi[1] + 0.05 * span[1])
        ax.set_title(f"{fold.stage_names[s]}\n{fold.pieces[s]} linear piece{'s' if fold.pieces[s] != 1 else ''}",
                     fontsize=10)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("unit 1", fontsize=9)
        ax.set_ylabel("unit 2", fontsize=9)
    for ax in axes[S:]:
        ax.axis("off")
    return axes


def _zoomed(ax, values, pad: float = 0.15, floor: float = 0.01) -> None:
    """y limits around ``values`` (a span of at least ``floor``): differences of a few hundredths stay visible."""
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    if not v.size:
        return
    lo, hi = float(v.min()), float(v.max())
    span = max(hi - lo, floor)
    ax.set_ylim(lo - pad * span, hi + pad * span)


def plot_regimes(table, axes=None):
    """Three panels against the width n of the finite nets (log axis): the relative change of the NTK and of the
    weights during training (log-log, with a 1/sqrt(n) guide); test accuracy, the kernel classifiers as horizontal
    lines; the kernel-target alignment of Θ₀ and Θ_T (an arrow per width from start to end of training), the
    analytic kernels' alignments as horizontal lines. Accuracy and alignment have axes of their own, each zoomed on
    its values: on one 0–1 axis their differences of a few hundredths cannot be seen."""
    if axes is None:
        axes = new_figure((14, 4.5), layout="constrained").subplots(1, 3)
    a0, a1, a2 = axes
    fin = table.finite_rows()
    kern = [r for r in table.rows if not math.isfinite(r.width)]
    w = np.array([r.width for r in fin])
    ch = np.array([r.ntk_change for r in fin])
    a0.loglog(w, ch, "o-", label="NTK: $\\|\\Theta_T-\\Theta_0\\|_F\\,/\\,\\|\\Theta_0\\|_F$")
    wc = np.array([r.weight_change for r in fin])
    a0.loglog(w, wc, "s--", label="weights: $\\|w_T-w_0\\|\\,/\\,\\|w_0\\|$")
    if len(w) and np.isfinite(ch[-1]) and ch[-1] > 0:
        a0.loglog(w, ch[-1] * np.sqrt(w[-1] / w), ":", color="0.4", label="$\\propto 1/\\sqrt{n}$ (through the widest)")
    a0.set_xlabel("width n")
    a0.set_ylabel("relative change during training")
    a0.set_title("the NTK stops moving as width grows")
    a0.legend(fontsize=8.5)

    styles = ["--", "-.", ":", (0, (5, 1, 1, 1))]
    acc = [r.test_accuracy for r in fin] + [r.test_accuracy for r in kern]
    a1.semilogx(w, [r.test_accuracy for r in fin], "o-", color="C2", label="finite nets")
    for i, r in enumerate(kern):
        a1.axhline(r.test_accuracy, color=f"C{i + 5}", ls=styles[i % len(styles)], lw=1.6,
                   label=f"{r.model} ({r.test_accuracy:.1%})")
    _zoomed(a1, acc)
    a1.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=None))
    a1.set_xlabel("width n")
    a1.set_ylabel("test accuracy")
    a1.set_title("test accuracy: kernel classifiers vs trained nets")
    a1.legend(fontsize=8, loc="lower right")

    al0 = np.array([r.alignment_0 for r in fin])
    alT = np.array([r.alignment_T for r in fin])
    a2.semilogx(w, al0, "v:", color="C4", alpha=0.7, label="$\\Theta_0$ (start of training)")
    a2.semilogx(w, alT, "^-", color="C4", label="$\\Theta_T$ (end of training)")
    for x, y0, y1 in zip(w, al0, alT):
        if np.isfinite(y0) and np.isfinite(y1) and y0 != y1:
            a2.annotate("", xy=(x, y1), xytext=(x, y0), arrowprops=dict(arrowstyle="->", color="C4", lw=1.2))
    kernel_alignments = {}  # the kernel rows share their kernel's alignment: one line per kernel
    for r in kern:
        name = "NNGP" if r.model.startswith("NNGP") else "NTK"
        kernel_alignments.setdefault(name, r.alignment_0)
    for i, (name, a) in enumerate(kernel_alignments.items()):
        if np.isfinite(a):
            a2.axhline(a, color=f"C{i + 5}", ls=styles[i], lw=1.4, label=f"analytic {name} ({a:.3f})")
    _zoomed(a2, list(al0) + list(alT) + list(kernel_alignments.values()))
    a2.set_xlabel("width n")
    a2.set_ylabel("kernel-target alignment")
    a2.set_title("alignment moves during training only when narrow")
    a2.legend(fontsize=8, loc="best")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    return axes


# ---------------------------------------------------------------------------------------------------------------
# The lecture's pictures as numbers
# ---------------------------------------------------------------------------------------------------------------

def plot_phases(phases, axes=None):
    """Left: the share of the embedding an affine map of the input explains (R²) against the epoch - near 1 in the
    early phase. Right: the mean angular velocity of the inner and outer points about the embedding's centroid
    (degrees per epoch, counter-clockwise positive; symmetric-log axis): the same sign early (a global rotation),
    opposite signs while the spiral is un-warped. The shaded span is the near-linear phase."""
    if axes is None:
        axes = new_figure((11, 4.0), layout="constrained").subplots(1, 2)
    a0, a1 = axes
    ep = np.asarray(phases.epochs, float)
    x0 = max(float(ep[1]) / 2, 0.5) if len(ep) > 1 else 0.5
    xs = np.where(ep > 0, ep, x0)
    a0.semilogx(xs, phases.linear_r2, "o-", color="C0")
    a0.axhline(phases.threshold, color="0.5", ls=":", lw=1, label=f"R² = {phases.threshold:g}")
    for ax in axes:
        ax.axvspan(x0, max(phases.linear_until, x0), color="C2", alpha=0.12, label="near-linear phase")
    a0.set_xlabel("epoch (epoch 0 drawn at the left edge)")
    a0.set_ylabel("R² of the best affine map x ↦ e")
    a0.set_title("how linear is the map x ↦ e(x)?", fontsize=10)
    a0.legend(fontsize=8, loc="lower left")
    mid = np.asarray(phases.mid_epochs, float)
    a1.semilogx(mid, phases.inner_velocity, "o-", color="C3", label=f"inner {phases.fraction:.0%} of the points")
    a1.semilogx(mid, phases.outer_velocity, "s-", color="C0", label=f"outer {phases.fraction:.0%}")
    a1.set_yscale("symlog", linthresh=0.05)
    a1.axhline(0, color="k", lw=0.6)
    a1.set_xlabel("epoch")
    a1.set_ylabel("angular velocity (degrees / epoch)")
    a1.set_title(f"inner and outer points turning\n(after epoch {phases.linear_until}: inner "
                 f"{phases.late_inner:+.0f}°, outer {phases.late_outer:+.0f}° in all)", fontsize=10)
    a1.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    return axes


def plot_class_vectors(spread, ax=None):
    """The class vectors' directions as unit arrows around the circle, each gap labelled in degrees, against the
    even spread 360/K."""
    ax = new_axes(ax, (4.6, 4.6))
    K = len(spread.angles)
    colors = class_colors(K)
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(t), np.sin(t), color="0.7", lw=0.8)
    for k, a in enumerate(np.radians(spread.angles)):
        ax.annotate("", xy=(np.cos(a), np.sin(a)), xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color=colors[k],
                                                                                  lw=2))
        mid = a + np.radians(spread.gaps[k]) / 2
        ax.text(1.18 * np.cos(mid), 1.18 * np.sin(mid), f"{spread.gaps[k]:.0f}°", ha="center", va="center",
                fontsize=9)
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.45, 1.45)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"class vectors: gaps vs 360/K = {spread.ideal:.0f}° (rms deviation {spread.rms_deviation:.1f}°;\n"
                 f"random directions: {spread.random_rms_deviation:.0f}°)", fontsize=9)
    return ax


def plot_layer_norms(norms: dict, ax=None):
    """Spectral norm ‖W‖₂ of each linear layer, input to head, for each net of ``norms`` (name -> LayerNorms)."""
    ax = new_axes(ax, (5.2, 4.2))
    for i, (name, n) in enumerate(norms.items()):
        layers = np.arange(1, len(n.spectral) + 1)
        ax.semilogy(layers, n.spectral, "o-", color=f"C{i}", label=f"{name}: ‖W‖₂")
        ax.semilogy(layers, n.frobenius, ":", marker=".", color=f"C{i}", alpha=0.6, label=f"{name}: ‖W‖_F")
    ax.set_xlabel("layer (1 = input side, last = classifier)")
    ax.set_ylabel("norm")
    ax.set_title("weight norms towards the head", fontsize=10)
    ax.legend(fontsize=7.5)
    ax.grid(alpha=0.3, which="both")
    return ax


def plot_svd_stages(stages, axes=None):
    """The narrow net layer by layer (rows) and each layer stage by stage (columns): input, Vᵀ (a rotation),
    Σ (a scaling along the axes), U (a rotation, or a rotation and a reflection), + b (a shift), leaky ReLU
    (a fold). Grid lines of the input plane and the training points; row titles give the angles and scales."""
    from matplotlib.collections import LineCollection

    L, T = len(stages.layers), len(stages.stage_names)
    if axes is None:
        fig = new_figure((2.35 * T, 2.45 * L))
        fig.subplots_adjust(left=0.08, right=0.99, bottom=0.01, top=0.96, wspace=0.06, hspace=0.1)
        axes = fig.subplots(L, T, squeeze=False)
    axes = np.asarray(axes).reshape(L, T)
    K = int(np.max(stages.y)) + 1
    colors = class_colors(K)
    pc = [colors[k] for k in stages.y]
    for l, svd in enumerate(stages.layers):
        for t in range(T):
            ax = axes[l, t]
            grid, pts = stages.grids[l][t], stages.points[l][t]
            n_lines = grid.shape[0]
            # one collection per panel: the horizontal grid lines blue, the vertical ones red
            line_colors = ["C0"] * (n_lines // 2) + ["C3"] * (n_lines - n_lines // 2)
            ax.add_collection(LineCollection(list(grid), colors=line_colors, linewidths=0.4, alpha=0.55))
            ax.scatter(pts[:, 0], pts[:, 1], c=pc, s=2, linewidths=0, zorder=3)
            both = np.concatenate([grid.reshape(-1, 2), pts])
            lo, hi = np.quantile(both, 0.005, axis=0), np.quantile(both, 0.995, axis=0)
            c, half = (lo + hi) / 2, max(float(np.max(hi - lo)) / 2, 1e-9) * 1.08
            ax.set_xlim(c[0] - half, c[0] + half)
            ax.set_ylim(c[1] - half, c[1] + half)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if l == 0:
                ax.set_title(stages.stage_names[t], fontsize=9)
        last = l == L - 1
        axes[l, 0].set_ylabel(f"layer {l + 1}{' (embedding)' if last else ''}\nVᵀ {svd.angle_in:+.0f}°, "
                              f"Σ = ({svd.s[0]:.2g}, {svd.s[-1]:.2g})\nU {svd.angle_out:+.0f}°"
                              f"{' + reflection' if svd.reflection else ''}", fontsize=8)
        if last:
            axes[l, T - 1].set_title("(no activation)", fontsize=8)
    return list(axes.ravel())


def plot_pieces_vs_width(curve, ax=None):
    """Linear pieces of the one-hidden-layer nets on the input box against the hidden width H (log-log): exact
    counts of the trained and the initial nets, the grid count (a lower bound), and the most H lines can make."""
    ax = new_axes(ax, (5.4, 4.3))
    w = np.asarray(curve.widths, float)
    ax.loglog(w, curve.bound, ":", color="0.4", label="1 + H + H(H−1)/2 (all crossings in the box)")
    ax.loglog(w, curve.trained, "o-", color="C3", label="trained (exact)")
    ax.loglog(w, curve.grid, "x--", color="C1", label=f"trained, counted on a {curve.resolution}² grid")
    ax.loglog(w, curve.initial, "s-", color="C0", label="initial weights (exact)")
    ax.set_xlabel("hidden width H")
    ax.set_ylabel("linear pieces on the input box")
    ax.set_title("more units, more pieces: why wide nets look smooth", fontsize=10)
    ax.legend(fontsize=7.5)
    ax.grid(alpha=0.3, which="both")
    return ax


def plot_drag(infl, width: int, anchor: int = 0, ax=None, vmax: float | None = None):
    """The drag ``‖Δe_j‖/‖Δe_i‖`` of every training point when the anchor (★) is pulled, for the net of hidden
    width ``width`` (kept in ``infl.maps``)."""
    ax = new_axes(ax, (4.6, 4.4))
    d = infl.maps[width][anchor]
    X = infl.X_train
    top = vmax if vmax is not None else max(1.0, float(np.quantile(d, 0.99)))
    sc = ax.scatter(X[:, 0], X[:, 1], c=d, s=4, cmap="viridis", vmin=0, vmax=top)
    i = int(infl.anchors[anchor])
    ax.scatter(*X[i], marker="*", s=300, color="red", edgecolor="k", lw=1.0, zorder=5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    j = infl.widths.index(width)
    ax.set_title(f"H = {width}: drag $\\|\\Delta e_j\\| / \\|\\Delta e_i\\|$ "
                 f"(other classes {infl.far[j]:.2f} on average)", fontsize=9)
    ax.figure.colorbar(sc, ax=ax, shrink=0.8)
    return ax


def plot_influence_vs_width(infl, ax=None):
    """Mean drag on the nearest neighbours and on the other classes' points against the hidden width."""
    ax = new_axes(ax, (5.0, 4.2))
    w = np.asarray(infl.widths, float)
    ax.semilogx(w, infl.near, "o-", color="C2", label=f"{infl.k} nearest neighbours")
    ax.semilogx(w, infl.far, "s-", color="C4", label="points of the other classes")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("hidden width H")
    ax.set_ylabel("mean drag when one point is pulled")
    ax.set_title("pulling one point drags the others", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return ax


# ---------------------------------------------------------------------------------------------------------------
# GIFs
# ---------------------------------------------------------------------------------------------------------------

def _save_gif(fig, draw, n_frames: int, path: str | os.PathLike, fps: int, dpi: int) -> Path:
    """Render ``draw(i)`` for each frame with matplotlib's Pillow writer into ``path`` (atomically, with the
    umask's mode: :func:`kernelscope._io.atomic_save_animation`)."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    anim = FuncAnimation(fig, draw, frames=n_frames, blit=False)
    return atomic_save_animation(anim, path, writer=PillowWriter(fps=fps), dpi=dpi)


def animate_embedding(run, path: str | os.PathLike, *, fps: int = 6, dpi: int = 70, max_points: int = 1500) -> Path:
    """GIF of the embedding over training (every snapshot; fixed limits; the epoch in each frame's title).

    The first frame is drawn by :func:`plot_embedding`; later frames only move its artists (points, arrows,
    regions, title), which keeps a 40-frame GIF to a few seconds.
    """
    fig = new_figure((5.0, 5.0))
    ax = fig.subplots()
    lims = embedding_lims(run)
    plot_embedding(run, 0, ax, lims=lims, max_points=max_points)
    step = max(1, len(run.y_train) // max_points)
    scatter = ax.collections[0]
    image = ax.images[0] if ax.images else None
    radius_text = next(t for t in ax.texts if t.get_text().startswith("mean |e|"))

    def draw(i):
        e = run.embeddings[i]
        W, c = run.class_vectors[i], run.class_biases[i]
        scatter.set_offsets(e[::step])
        if image is not None and np.isfinite(W).all():
            image.set_data(_linear_regions(W, c, lims))
        for arrow in [t for t in ax.texts if t is not radius_text]:  # the class-vector arrows
            arrow.remove()
        norms = np.linalg.norm(W, axis=1)
        if np.isfinite(norms).all() and norms.max() > 0:
            scale = 0.8 * lims[1] / norms.max()
            for k, color in enumerate(class_colors(run.classes)):
                ax.annotate("", xy=(W[k, 0] * scale, W[k, 1] * scale), xytext=(0, 0),
                            arrowprops=_arrow_style(color))
        radius_text.set_text(f"mean |e| = {run.embedding_radius[i]:.3g}")
        epoch = int(run.snapshot_epochs[i])
        acc = run.train_accuracy[epoch] if epoch < len(run.train_accuracy) else float("nan")
        ax.set_title(f"epoch {epoch}   train accuracy {acc:.1%}")

    return _save_gif(fig, draw, len(run.snapshot_epochs), path, fps, dpi)


def animate_interpolation(run, path: str | os.PathLike, *, frames: int = 21, fps: int = 6, dpi: int = 70) -> Path:
    """GIF of the trained network morphing the input plane into the embedding (there and back).

    The first frame is :func:`plot_interpolation` at ``a = 0``; later frames only move its lines and points.
    """
    fig = new_figure((5.0, 5.0))
    ax = fig.subplots()
    lims = _morph_lims(run)
    alphas = np.concatenate([np.linspace(0, 1, frames), np.linspace(1, 0, frames)[1:-1]])
    plot_interpolation(run, 0.0, ax, lims=lims)
    lines = ax.lines[: len(run.grid_input)]
    scatter = ax.collections[0]
    c = embedding_scale(run)
    end_pts = c * run.embeddings[-1] if len(run.embeddings) else run.X_train
    step = max(1, len(run.X_train) // 2000)

    def draw(i):
        a = float(alphas[i])
        for line, start, end in zip(lines, run.grid_input, run.grid_embedding):
            xy = _morph(a, start, c * end)
            line.set_data(xy[:, 0], xy[:, 1])
        scatter.set_offsets(_morph(a, run.X_train, end_pts)[::step])
        ax.set_title(f"input -> embedding, a = {a:.2f} (c = {c:.3g})")

    return _save_gif(fig, draw, len(alphas), path, fps, dpi)
