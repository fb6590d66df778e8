"""Figures of the MNIST-1D experiments (:mod:`kernelscope.experiments.mnist1d`): draw only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import new_axes, new_figure

__all__ = ["plot_signals", "plot_learning_curves", "plot_pooling"]

_COLORS = {"MLP": "tab:gray", "CNN + Flatten": "tab:blue", "CNN + GlobalAvgPool": "tab:red"}
_STYLES = {"NTK": "-", "NNGP": "--"}
_FILLED = {"NTK": None, "NNGP": "white"}  # NNGP markers hollow, so the legend tells them apart


def plot_signals(X: np.ndarray, y: np.ndarray, ax=None):
    """The signals X (10, L) of labels y, one above the other (the digit on the left)."""
    ax = new_axes(ax, (4.2, 6.0))
    for i, (x, label) in enumerate(zip(X, y)):
        offset = -3.0 * i
        ax.plot(np.arange(len(x)), x + offset, color="k", lw=1.2)
        ax.axhline(offset, color="0.85", lw=0.6, zorder=0)
        ax.text(-1.5, offset, str(label), ha="right", va="center", fontsize=11)
    ax.set_xlim(-4, X.shape[1])
    ax.set_yticks([])
    ax.set_xlabel("position")
    ax.set_title("MNIST-1D: one training signal per digit", fontsize=10)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    return ax


def plot_learning_curves(results: Sequence, paper: dict[str, float], n_test: int, ax=None):
    """Test accuracy against the number of training signals (log scale) for every architecture's NTK (solid)
    and NNGP (dashed) classifier, with the paper's trained networks (4000 signals) as dotted lines."""
    ax = new_axes(ax, (7.2, 4.6))
    for r in results:
        for kind in ("NTK", "NNGP"):
            ax.plot(r.sizes, 100 * np.asarray(r.accuracy[kind]), _STYLES[kind], marker="o", ms=4,
                    mfc=_FILLED[kind], color=_COLORS.get(r.name, None), label=f"{r.name} {kind}")
    # labelled to the right of the axes, clear of the curves; neighbours above and below their lines
    for i, (name, acc) in enumerate(sorted(paper.items(), key=lambda kv: -kv[1])):
        ax.axhline(100 * acc, color="0.55", ls=":", lw=1)
        ax.text(1.01, 100 * acc, f"{name} {100 * acc:.0f}%", fontsize=7, va="bottom" if i % 2 == 0 else "top",
                ha="left", color="0.35", transform=ax.get_yaxis_transform(), clip_on=False)
    ax.set_xscale("log", base=2)
    sizes = sorted({s for r in results for s in r.sizes})
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("training signals")
    ax.set_ylabel(f"test accuracy (%), {n_test} signals")
    ax.set_ylim(0, 100)
    ax.set_title("Infinite-width kernels on MNIST-1D (solid: NTK, dashed: NNGP; dotted: the paper's trained "
                 "networks)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", ncol=1)
    ax.grid(alpha=0.3)
    return ax


def plot_pooling(results: Sequence, shift, axes=None):
    """Left: accuracy of the CNN read out by Flatten against global average pooling, per number of training
    signals. Right: the kernel between a signal and its circular shift by s places, relative to s = 0."""
    if axes is None:
        axes = new_figure((11.0, 4.0)).subplots(1, 2)
    ax, bx = axes
    by_name = {r.name: r for r in results}
    for name in ("CNN + Flatten", "CNN + GlobalAvgPool"):
        r = by_name.get(name)
        if r is None:
            continue
        for kind in ("NTK", "NNGP"):
            ax.plot(r.sizes, 100 * np.asarray(r.accuracy[kind]), _STYLES[kind], marker="o", ms=4,
                    mfc=_FILLED[kind], color=_COLORS[name], label=f"{name} {kind}")
    flat, gap = by_name.get("CNN + Flatten"), by_name.get("CNN + GlobalAvgPool")
    if flat is not None and gap is not None:
        ax.fill_between(gap.sizes, 100 * np.asarray(flat.accuracy["NTK"]), 100 * np.asarray(gap.accuracy["NTK"]),
                        color="tab:red", alpha=0.12, lw=0)
    ax.set_xscale("log", base=2)
    sizes = sorted({s for r in results for s in r.sizes})
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("training signals")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Same convolutions, two read-outs", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    for key, values in shift.ratio.items():
        name, _, kind = key.rpartition(" ")
        bx.plot(shift.shifts, values, _STYLES[kind], color=_COLORS.get(name, None), label=key, lw=1.4)
    bx.set_xlabel("circular shift s (positions)")
    bx.set_ylabel("k(x, shift(x, s)) / k(x, x)")
    bx.set_title(f"A signal against its own shifts (mean over {shift.n_signals})", fontsize=10)
    bx.set_ylim(0, 1.4)  # room for the legend above the invariant line at 1
    bx.legend(fontsize=7, loc="upper center", ncol=3)
    bx.grid(alpha=0.3)
    return axes
