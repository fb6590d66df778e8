"""Figures of the chapter "the mathematics of learning": they draw results of
:mod:`kernelscope.experiments.learning` and compute nothing heavy. Each is ``plot_x(result, ax=None) -> Axes``
(multi-panel figures take ``axes`` and return the list)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap

from . import new_axes, new_figure
from .spirals import class_colors

__all__ = ["plot_unit_balls", "plot_paths", "plot_stationary_points", "plot_descent", "plot_step_sizes",
           "plot_model_step_sizes", "plot_batch_sizes", "plot_least_norm_link", "plot_gauss_newton_spectrum",
           "plot_lift", "plot_spiral_regions", "plot_influence"]

_P_STYLE = {"1": ("#c0392b", "ℓ1"), "2": ("#2c5aa0", "ℓ2"), "inf": ("#27ae60", "ℓ∞")}
_KIND = {"minimum": ("o", "#27ae60"), "maximum": ("^", "#c0392b"), "saddle": ("X", "#8e44ad"),
         "degenerate": ("s", "gray")}


def _factor_colors(factors) -> list:
    """Blues for step-size factors below 1 (converging), reds above (diverging), darker farther from 1."""
    f = np.asarray(factors, dtype=float)
    out = []
    for v in f:
        if v < 1:
            out.append(matplotlib.colormaps["Blues"](0.95 - 0.5 * v))
        else:
            out.append(matplotlib.colormaps["Reds"](min(0.95, 0.55 + 0.4 * (v - 1))))
    return out


def _ax(ax, size=(5.6, 4.6)):
    return new_axes(ax, size)


def _axes(axes, n, size):
    if axes is None:
        axes = new_figure(size).subplots(1, n)
    return list(np.ravel(axes))


def plot_unit_balls(res, ax=None):
    """The line ``a·x = β`` and the ℓ1, ℓ2, ℓ∞ balls grown until they first touch it: the touching points are
    the least-norm solutions (the diamond touches at a corner, on an axis: a sparse solution)."""
    ax = _ax(ax, (6.0, 5.6))
    a, beta = res.a, res.beta
    big = 1.4 * max(res.norms.values()) * 1.3
    t = np.linspace(-3 * big, 3 * big, 2)
    d = np.array([-a[1], a[0]]) / np.linalg.norm(a)
    base = a * beta / (a @ a)
    ax.plot(base[0] + t * d[0], base[1] + t * d[1], color="k", lw=1.6, label=f"{a[0]:g}x + {a[1]:g}y = {beta:g}")
    for k, (color, name) in _P_STYLE.items():
        r = res.norms[k]
        s = res.spheres[k] * r
        ax.fill(s[:, 0], s[:, 1], color=color, alpha=0.08)
        ax.plot(s[:, 0], s[:, 1], color=color, lw=1.6)
        x = res.solutions[k]
        ax.scatter(*x, color=color, s=70, zorder=5, edgecolor="k", lw=0.6,
                   label=f"least {name}: ({x[0]:.3g}, {x[1]:.3g}), ‖x‖ = {r:.4g}")
    ax.axhline(0, color="#bbb", lw=0.6)
    ax.axvline(0, color="#bbb", lw=0.6)
    lim = 1.15 * max(float(np.abs(res.solutions["1"]).max()), res.norms["1"])
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("The smallest ball of each norm that meets the line")
    ax.legend(loc="lower left", fontsize=8.5, framealpha=0.9)
    return ax


def plot_paths(paths, axes=None, *, labels: Sequence[str] | None = None):
    """Lasso (left) and ridge (right) coefficient paths against the penalty (log scale, strong penalty on the
    left): the lasso zeroes coefficients one at a time; ridge shrinks all and zeroes none. ``paths`` is a
    :class:`~kernelscope.experiments.learning.RegularizationPaths` (true non-zero weights drawn solid)."""
    axes = _axes(axes, 2, (11.0, 4.2))
    support = set(paths.support_true)
    d = paths.w_true.shape[0]
    colors = matplotlib.colormaps["tab10"]
    for ax, path, name in ((axes[0], paths.lasso, "lasso  (1/2N)‖Xw − y‖² + α‖w‖₁"),
                           (axes[1], paths.ridge, "ridge  ‖Xw − y‖² + λ‖w‖²")):
        for j in range(d):
            lab = (labels[j] if labels else f"w{j}") + (" (true ≠ 0)" if j in support else "")
            ax.plot(path.penalties, path.coefs[:, j], color=colors(j % 10), lw=2.0 if j in support else 1.0,
                    ls="-" if j in support else "--", label=lab)
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("penalty α" if path.penalty == "lasso" else "penalty λ")
        ax.set_title(name, fontsize=10)
    axes[0].set_ylabel("coefficient")
    axes[1].legend(fontsize=8, ncol=2, loc="upper left")
    axes[0].figure.tight_layout()
    return axes


def plot_stationary_points(res, ax=None):
    """Contours of the surface with its critical points, marked by kind (Hessian eigenvalues in the legend)."""
    ax = _ax(ax, (6.0, 5.2))
    gx, gy, z = res.grid
    cs = ax.contourf(gx, gy, z, levels=30, cmap="viridis")
    ax.contour(gx, gy, z, levels=15, colors="k", linewidths=0.4, alpha=0.5)
    ax.figure.colorbar(cs, ax=ax, shrink=0.85, label="f(x, y)")
    for p in res.points:
        m, c = _KIND[p.kind]
        ev = ", ".join(f"{v:.3g}" for v in p.eigenvalues)
        ax.scatter(*p.x, marker=m, s=140, color=c, edgecolor="white", lw=1.4, zorder=5,
                   label=f"({p.x[0]:.2g}, {p.x[1]:.2g}) {p.kind}: λ(H) = {ev}")
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("x³ − 3x + y³ − 3y: stationary points by the Hessian" if res.name == "cubic" else res.name)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, framealpha=0.95)
    return ax


def plot_descent(res, ax=None):
    """Trajectories (every iterate a dot) over the contours of the surface, with its minima."""
    ax = _ax(ax, (7.0, 5.0))
    gx, gy, z = res.grid
    ax.contourf(gx, gy, z, levels=40, cmap="Greys_r", alpha=0.85)
    ax.contour(gx, gy, z, levels=25, colors="k", linewidths=0.3, alpha=0.6)
    colors = ["#e67e22", "#2980b9", "#c0392b", "#27ae60"]
    for (label, tr), c in zip(res.runs.items(), colors):
        end = res.minima[res.ends_in[label]]
        ax.plot(tr.points[:, 0], tr.points[:, 1], "-o", color=c, ms=2.2, lw=1.2,
                label=f"{label}: ends at x = {tr.x[0]:.2f}, f = {tr.values[-1]:.3f}"
                      f" ({'global' if end.value == min(m.value for m in res.minima) else 'local'} minimum)")
    ax.scatter(*res.runs[next(iter(res.runs))].points[0], color="k", s=60, zorder=6, label="start")
    for m in res.minima:
        ax.scatter(*m.x, marker="*", s=220, color="gold", edgecolor="k", zorder=6)
    ax.set_xlim(res.lims[0], res.lims[1])
    ax.set_ylim(res.lims[2], res.lims[3])
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("(x² − 1)² + 0.5x + y²: momentum rolls over the barrier (★ minima)")
    ax.legend(fontsize=8.5, loc="lower left", framealpha=0.95)
    return ax


def _distinct_factor_styles(factors) -> list[tuple]:
    """(colour, marker) per step-size factor: blues and greens below 1 (converging), oranges and reds above
    (diverging), each factor its own hue and marker, so that neighbours such as 0.9 and 0.99 are told apart."""
    below = ["#08306b", "#2171b5", "#17becf", "#2ca02c", "#6baed6", "#74c476"]
    above = ["#fd8d3c", "#d62728", "#7f2704", "#e377c2"]
    markers = "osD^vP*Xh"
    out, nb, na = [], 0, 0
    for i, f in enumerate(np.asarray(factors, float)):
        if f < 1:
            out.append((below[nb % len(below)], markers[i % len(markers)]))
            nb += 1
        else:
            out.append((above[na % len(above)], markers[i % len(markers)]))
            na += 1
    return out


def plot_step_sizes(res, axes=None):
    """Left: ‖x_t‖ against t for each η = c·2/λ_max (markers: the run; lines: the closed form). Right: the first
    iterates in the plane for three of them (0.5, 0.99 and 1.1 when present) on the contours of the quadratic:
    at 0.99 the iterate bounces from one wall of the valley to the other, at 1.1 it bounces out of it."""
    axes = _axes(axes, 2, (12.0, 4.8))
    styles = _distinct_factor_styles(res.factors)
    t = np.arange(res.error.shape[1])
    for (c, m), f, e, p in zip(styles, res.factors, res.error, res.predicted):
        axes[0].semilogy(t, p, color=c, lw=1.2)
        axes[0].semilogy(t[::3], e[::3], m, color=c, ms=4, label=f"η = {f:g} · 2/λ$_{{max}}$")
    axes[0].axhline(1.0, color="k", lw=0.6, ls=":")
    axes[0].set_xlabel("step t")
    axes[0].set_ylabel(r"$\|x_t - x^*\|$")
    axes[0].set_title(r"$\frac{1}{2}(\lambda_1 x^2 + \lambda_2 y^2)$: converges iff $\eta < 2/\lambda_{max}$",
                      fontsize=10.5)
    axes[0].legend(fontsize=8.5, ncol=2)
    lam = res.curvatures
    g = np.linspace(-1.6, 1.6, 200)
    gx, gy = np.meshgrid(g, g)
    axes[1].contour(gx, gy, 0.5 * (lam[0] * gx**2 + lam[1] * gy**2), levels=12, colors="#bbb", linewidths=0.6)
    show = [int(np.argmin(np.abs(res.factors - c))) for c in (0.5, 0.99, 1.1)]
    n_show = 12
    for i in dict.fromkeys(show):
        if i < len(res.runs):
            c, m = styles[i]
            pts = res.runs[i].points[:n_show]
            out = np.flatnonzero(np.abs(pts).max(axis=1) > 1.6)
            pts = pts[: out[0] + 1] if out.size else pts  # a diverging run: up to its first iterate out of frame
            axes[1].plot(pts[:, 0], pts[:, 1], "-", marker=m, color=c, ms=4.5, lw=1.1,
                         label=f"η = {res.factors[i]:g} · 2/λ$_{{max}}$")
    axes[1].plot(*res.runs[0].points[0], "o", color="k", ms=6, zorder=5, label="start")
    axes[1].set_xlim(-1.6, 1.6)
    axes[1].set_ylim(-1.6, 1.6)
    axes[1].set_aspect("equal")
    axes[1].set_xlabel(f"x  (curvature λ₁ = {lam[0]:g})")
    axes[1].set_ylabel(f"y  (curvature λ₂ = {lam[1]:g})")
    axes[1].set_title(f"the first {n_show} iterates: bouncing across the steep direction x", fontsize=10.5)
    axes[1].legend(fontsize=8.5, loc="lower right", framealpha=0.95)
    axes[0].figure.tight_layout()
    return axes


def plot_model_step_sizes(res, axes=None):
    """Loss curves of full-batch gradient descent on each model at η = c·2/λ_max(w₀); a curve that stops diverged."""
    axes = _axes(axes, len(res.models), (5.5 * len(res.models), 4.2))
    cols = _factor_colors(res.factors)
    for ax, name in zip(axes, res.models):
        curves = res.loss[name]
        for i, c in enumerate(res.factors):
            col = cols[i]
            y = curves[i]
            ok = np.isfinite(y)
            s = res.sharpness_end[name][i]
            tail = "diverged" if not ok.all() else f"λ$_{{max}}$ at end {s:.3g} (2/η = {res.lambda_max[name] / c:.3g})"
            ax.semilogy(np.arange(len(y))[ok], y[ok], color=col, lw=1.6, label=f"η = {c:g}·2/λ₀: {tail}")
        ax.set_ylim(top=max(10 * np.nanmax(curves[:, 0]), 1e-3))
        ax.set_xlabel("step")
        ax.set_title(f"{name}: λ₀ = {res.lambda_max[name]:.3g} (Lanczos, {res.n_hvp[name]} HVPs)", fontsize=9.5)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("training loss (mean ½(f − y)²)")
    axes[0].figure.tight_layout()
    return axes


def plot_batch_sizes(runs: dict, axes=None, *, title: str = ""):
    """The full objective for each batch size against epochs (= N per-example gradients each; left) and against
    parameter updates (right, log). The right panel uses the losses recorded inside epochs (``curve_updates``,
    ``curve_loss``) when the runs have them, so the runs can be compared at equal numbers of updates; drawn from the
    epoch ends only, a per-sample run would be a straight line over its first N updates.
    ``runs``: {label: EpochRun} of :mod:`kernelscope.experiments.learning`."""
    axes = _axes(axes, 2, (11.0, 4.2))
    colors = ["#2c3e50", "#e67e22", "#c0392b", "#27ae60"]
    for (label, run), c in zip(runs.items(), colors):
        axes[0].semilogy(run.epochs, run.loss, "-o", ms=2.5, color=c, label=label)
        cu, cl = getattr(run, "curve_updates", None), getattr(run, "curve_loss", None)
        if cu is None or len(cu) == 0:
            cu, cl = run.updates, run.loss
        keep = np.asarray(cu) >= 1  # the start (0 updates) has no place on a log axis
        axes[1].loglog(np.asarray(cu)[keep], np.asarray(cl)[keep], "-", lw=1.6, color=c, label=label)
        axes[1].plot([max(int(run.updates[-1]), 1)], [run.loss[-1]], "o", ms=4, color=c)
    start = next(iter(runs.values())).loss[0]
    axes[1].axhline(start, color="0.6", lw=0.8, ls=":", label="at the start")
    axes[0].set_xlabel("epoch (each: N per-example gradients)")
    axes[1].set_xlabel("parameter updates (log scale; dot: the end of training)")
    axes[0].set_ylabel("training loss (full data)")
    for ax in axes:
        ax.legend(fontsize=8.5)
        ax.grid(True, which="both", alpha=0.25)
    if title:
        axes[0].set_title(f"{title}: per epoch", fontsize=10)
        axes[1].set_title("the same runs per update", fontsize=10)
    axes[0].figure.tight_layout()
    return axes


def plot_least_norm_link(res, axes=None):
    """Left: each weight's move Δw under gradient descent on the linearised network against the least-norm
    solution J⁺(y − f₀) (on the diagonal). Right: the nonlinear network's distance to its own J⁺(y − f₀)
    against width."""
    axes = _axes(axes, 2, (10.5, 4.4))
    ax = axes[0]
    ax.scatter(res.dw_least_norm, res.dw_gd, s=8, color="#2c5aa0", alpha=0.7)
    lim = 1.05 * float(np.abs(np.concatenate([res.dw_least_norm, res.dw_gd])).max())
    ax.plot([-lim, lim], [-lim, lim], color="#c0392b", lw=1, label="Δw = J⁺(y − f₀)")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("J⁺(y − f₀) (least-norm solution, linsys.solve)")
    ax.set_ylabel(r"$w_T - w_0$ (gradient descent, linearised net)")
    ax.set_title(f"N = {res.n} equations, P = {res.n_params} weights: ‖Δw − J⁺(y−f₀)‖/‖·‖ = {res.rel_error:.1e}",
                 fontsize=9)
    ax.legend(fontsize=8.5, loc="upper left")
    if res.net:
        w = np.array(sorted(res.net))
        axes[1].loglog(w, [res.net[k] for k in w], "o-", color="#e67e22", label="nonlinear network")
        axes[1].loglog(w, res.net[w[0]] * (w / w[0]) ** -0.5, ":", color="gray", label="∝ width^(−1/2)")
        axes[1].set_xlabel("hidden width")
        axes[1].set_ylabel(r"$\|\Delta w_{net} - J^+(y - f_0)\|\, /\, \|J^+(y - f_0)\|$")
        axes[1].set_title("the real network approaches it as it gets wider (lazy)", fontsize=9.5)
        axes[1].legend(fontsize=8.5)
    axes[0].figure.tight_layout()
    return axes


def plot_gauss_newton_spectrum(res, ax=None):
    """Eigenvalues of the loss Hessian at an interpolating minimum (all P, by |λ|), of JᵀJ, and the N of the NTK,
    against their index on a log axis, so that the N sharp ones are spread out: open circles (Hessian), dots
    (Gauss–Newton) and thin crosses (NTK) sit on one another where they agree, each still visible."""
    ax = _ax(ax, (7.4, 4.8))
    k = np.arange(1, res.hessian_eigs.shape[0] + 1)
    floor = 1e-18
    ax.loglog(k, np.maximum(np.abs(res.hessian_eigs), floor), "o", ms=8, mfc="none", mew=1.3, color="#2c5aa0",
              label="|eigenvalues| of the Hessian ∇²L (P of them)")
    ax.loglog(k, np.maximum(np.abs(res.gauss_newton_eigs), floor), ".", ms=5, color="#e67e22",
              label="eigenvalues of Gauss–Newton JᵀJ")
    kn = np.arange(1, res.ntk_eigs.shape[0] + 1)
    ax.loglog(kn, res.ntk_eigs, "x", ms=6, mew=1.0, color="#c0392b", label="eigenvalues of the empirical NTK JJᵀ (N)")
    ax.axvline(res.n + 0.5, color="gray", ls=":", lw=1)
    ax.text(res.n + 0.7, 1e-9, f"N = {res.n}", color="0.35", fontsize=9)
    ax.set_xlabel("index, largest first (log scale)")
    ax.set_ylabel("eigenvalue")
    ax.set_title(f"At an interpolating minimum (‖f − y‖ = {res.residual:.1e}):\n"
                 f"N = {res.n} sharp directions, {res.n_params - res.n} flat (P = {res.n_params})", fontsize=10)
    ax.legend(fontsize=8.5, loc="upper right")
    ax.grid(True, which="major", alpha=0.3)
    return ax


def plot_lift(res, axes=None):
    """Left: the two rings in the plane with the circle the lifted plane cuts out. Right: the lifted points
    (x₁, x₂, x₁² + x₂²) and the separating plane, in 3-D."""
    if axes is None:
        fig = new_figure((11.0, 4.8))
        axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2, projection="3d")]
    c = class_colors(2)
    ax = axes[0]
    for k in (0, 1):
        m = res.y == k
        ax.scatter(res.X[m, 0], res.X[m, 1], s=10, color=c[k], label=f"class {k}")
    if res.radius is not None:
        th = np.linspace(0, 2 * np.pi, 200)
        ax.plot(res.radius * np.cos(th), res.radius * np.sin(th), color="k", lw=1.5,
                label=f"boundary: x₁² + x₂² = {res.radius:.2f}²")
    ax.set_aspect("equal")
    ax.set_title(f"in the plane a line gets {res.acc_plane:.0%}", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax3 = axes[1]
    for k in (0, 1):
        m = res.y == k
        ax3.scatter(res.Z[m, 0], res.Z[m, 1], res.Z[m, 2], s=8, color=c[k])
    w, b = res.plane
    g = np.linspace(-1.2, 1.2, 12)
    gx, gy = np.meshgrid(g, g)
    gz = -(w[0] * gx + w[1] * gy + b) / w[2]
    ax3.plot_surface(gx, gy, gz, color="gray", alpha=0.3, linewidth=0)
    ax3.set_xlabel("x₁")
    ax3.set_ylabel("x₂")
    ax3.set_zlabel("x₁² + x₂²")
    ax3.view_init(elev=12, azim=-60)
    ax3.set_title(f"lifted by x₁² + x₂², a plane gets {res.acc_lifted:.0%}", fontsize=10)
    return axes


def _regions(ax, regions, lims, k):
    ax.imshow(regions, origin="lower", extent=lims, cmap=ListedColormap(class_colors(k)), alpha=0.3,
              interpolation="nearest", aspect="equal")


def _points(ax, X, y, k, s=7):
    cs = class_colors(k)
    for c in range(k):
        m = y == c
        ax.scatter(X[m, 0], X[m, 1], s=s, color=cs[c], edgecolor="k", lw=0.2)


def plot_spiral_regions(res, axes=None):
    """The linear classifier's regions on the spirals next to the network's (trained per sample), and the
    full-batch network after the same epochs."""
    labels = list(res.regions)
    if axes is None:
        n = 1 + len(labels)
        cols = 2 if n == 4 else n
        rows = (n + cols - 1) // cols
        axes = new_figure((4.4 * cols, 4.4 * rows)).subplots(rows, cols)
    axes = list(np.ravel(axes))
    k = int(res.y.max()) + 1
    _regions(axes[0], res.linear_regions, res.lims, k)
    _points(axes[0], res.X, res.y, k)
    axes[0].set_title(f"linear classifier: {res.linear_accuracy:.0%}", fontsize=10)
    for ax, lab in zip(axes[1:], labels):
        _regions(ax, res.regions[lab], res.lims, k)
        _points(ax, res.X, res.y, k)
        ax.set_title(f"network, {lab}: {res.accuracy[lab]:.0%}", fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].figure.tight_layout()
    return axes


def plot_influence(res, axes=None):
    """The NTK's influence map ``Θ(x, x_i)/Θ(x_i, x_i)`` for each anchor x_i (★): at w₀ (top) and after
    training (bottom), all panels on one colour scale (one colour bar). Red: f(x) moves with f(x_i) when x_i is
    pulled; blue: against it. Points are drawn by class with a dark edge, so that no class colour vanishes into
    the map behind it."""
    A = len(res.anchors)
    if axes is None:
        fig = new_figure((4.2 * A + 1.0, 8.4), layout="constrained")
        axes = fig.subplots(2, A)
    axes = np.asarray(axes).reshape(2, A)
    k = int(res.y.max()) + 1
    cs = class_colors(k)
    v = max(float(np.abs(np.asarray(m)).max()) for m in (*res.influence_init, *res.influence_trained))
    im = None
    for row, (maps, when) in enumerate(((res.influence_init, "at $w_0$"), (res.influence_trained, "after training"))):
        for j, i in enumerate(res.anchors):
            ax = axes[row, j]
            im = ax.imshow(maps[j], origin="lower", extent=res.lims, cmap="RdBu_r", vmin=-v, vmax=v, aspect="equal")
            for c in range(k):
                sel = res.y == c
                ax.scatter(res.X[sel, 0], res.X[sel, 1], s=11, color=cs[c], edgecolor="k", linewidths=0.4,
                           label=f"class {c}" if row == 0 and j == 0 else None)
            ax.scatter(*res.X[i], marker="*", s=360, color="gold", edgecolor="k", lw=1.2, zorder=5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{when}; ★ = $x_i$ of class {int(res.y[i])}", fontsize=10)
    axes[0, 0].figure.colorbar(im, ax=list(axes.ravel()), shrink=0.8,
                               label=r"$\Theta(x, x_i)\, /\, \Theta(x_i, x_i)$ (one scale for all panels)")
    axes[0, 0].legend(fontsize=8, loc="lower left", framealpha=0.9)
    return list(axes.ravel())
