"""Figures of the primer (:mod:`kernelscope.experiments.primer`): a computation graph with its derivatives, a shear
and power iteration, the digits' principal components, the second-derivative test, and sampling.

Each function draws a result dataclass and returns its Axes (or an array of Axes); nothing is computed here.
"""

from __future__ import annotations

import numpy as np

from .._io import fmt
from . import new_axes, new_figure

__all__ = ["plot_computation_graph", "plot_shear", "plot_power_convergence", "plot_digits_pca",
           "plot_derivative_test", "plot_sample_mean", "plot_gaussian_pair", "plot_dual_check",
           "plot_conditional", "plot_standard_errors"]

KINDS = {"minimum": "#2ca02c", "maximum": "#d62728", "inflection": "#9467bd", "undecided": "0.4"}


def _axes(axes, n: int, size: tuple[float, float]):
    if axes is not None:
        return np.asarray(axes).ravel()
    return np.atleast_1d(new_figure(size).subplots(1, n))


def plot_computation_graph(chain, ax=None):
    """The graph of :func:`~kernelscope.experiments.primer.chain_rule`: each node with its value and ∂e/∂node (by
    hand), each edge with its local derivative; the title compares the chain rule with autograd."""
    ax = new_axes(ax, (6.4, 3.8))
    names = list(chain.values)
    parents = {n: [p for c, p, _ in chain.edges if c == n] for n in names}
    layer: dict[str, int] = {}

    def depth(n: str) -> int:
        if n not in layer:
            layer[n] = 0 if not parents[n] else 1 + max(depth(p) for p in parents[n])
        return layer[n]

    for n in names:
        depth(n)
    cols: dict[int, list[str]] = {}
    for n in names:
        cols.setdefault(layer[n], []).append(n)
    pos = {n: (2.0 * layer[n], (len(col) - 1) / 2 - i) for col in cols.values() for i, n in enumerate(col)}
    grads = {"a": chain.by_hand["a"], "b": chain.by_hand["b"]}
    for c, p, d in chain.edges:
        (x0, y0), (x1, y1) = pos[p], pos[c]
        ax.annotate("", xy=(x1 - 0.38, y1), xytext=(x0 + 0.38, y0),
                    arrowprops=dict(arrowstyle="-|>", color="0.35", lw=1.2))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12, f"∂{c}/∂{p} = {d:g}", ha="center", fontsize=8.5,
                color="#1f4e79", bbox=dict(fc="white", ec="none", pad=0.5))
    formulas = {"a": "input", "b": "input", "c": "c = a + b", "d": "d = b + 1", "e": "e = c · d"}
    for n, (x, y) in pos.items():
        text = f"{formulas.get(n, n)}\n{n} = {chain.values[n]:g}"
        if n in grads:
            text += f"\n∂e/∂{n} = {grads[n]:g}"
        ax.text(x, y, text, ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.4", fc="#fdf6e3" if n in grads else "#eef4fb", ec="0.4"))
    ax.set_xlim(-0.8, 2.0 * max(layer.values()) + 0.8)
    ax.set_ylim(-1.2, 1.2)
    ax.axis("off")
    ax.set_title(f"Chain rule by hand: ∂e/∂a = {chain.by_hand['a']:g}, ∂e/∂b = {chain.by_hand['b']:g} "
                 f"(autograd: {chain.autograd['a']:g}, {chain.autograd['b']:g})", fontsize=10)
    return ax


def plot_shear(shear, ax=None):
    """The shear ``[[1, s], [0, 1]]`` acting on the unit circle (grey -> blue), its one eigen-direction (the
    horizontal axis, red) and the power iterates ``S^k v0/‖S^k v0‖`` leaning towards it."""
    ax = new_axes(ax, (5.0, 4.4))
    ax.plot(*shear.circle, color="0.6", lw=1, label="unit circle")
    ax.plot(*shear.image, color="#1f77b4", lw=1.5, label="its image S·x")
    ax.axhline(0, color="#d62728", lw=2, alpha=0.7, label="eigenvector (1, 0), λ = 1")
    for k, a in enumerate(shear.iterates):
        ax.annotate("", xy=a, xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color="#ff7f0e",
                                                              alpha=0.35 + 0.13 * k, lw=1.4))
    ax.plot([], [], color="#ff7f0e", label=f"S^k v₀ / ‖S^k v₀‖, k = 0 … {len(shear.iterates) - 1}")
    ax.set_aspect("equal")
    ax.set_xlim(-2.3, 2.3)
    ax.set_ylim(-1.6, 1.6)
    ax.legend(fontsize=7.5, loc="lower right")
    s = shear.S[0, 1]
    ax.set_title(f"Shear [[1, {s:g}], [0, 1]]: one eigen-direction")
    return ax


def plot_power_convergence(shear, pca, ax=None):
    """Power iteration's error against the step: the angle to the eigenvector for the shear (log-log would be a
    line of slope −1; here against k on a log axis with its closed form) and, for the digits' components, the
    geometric rate ``(λ₂/λ₁)^k`` that a gap gives."""
    ax = new_axes(ax, (5.4, 4.4))
    k = np.asarray(shear.iterations, float)
    ax.loglog(k, shear.angle, "o", color="#1f77b4", label="shear: angle after k steps")
    ax.loglog(k, shear.angle_exact, "-", color="#1f77b4", lw=1, label="closed form atan(v_y/(v_x + k s v_y))")
    late = k[k >= 10]
    ax.loglog(late, np.exp(shear.intercept) * late ** shear.slope, ":", color="k", lw=1,
              label=f"fit over k ≥ 10: slope {fmt(shear.slope, '+.2f')}")
    for j, (r, c) in enumerate(zip(pca.gap_ratio[:2], ("#2ca02c", "#9467bd"))):
        ks = np.arange(1, int(pca.iterations[j]) + 1)
        ax.loglog(ks, r ** ks, "--", color=c, lw=1.2,
                  label=f"digits PC{j + 1}: (λ{j + 2}/λ{j + 1})^k = {r:.3f}^k ({pca.iterations[j]} steps)")
    ax.set_xlabel("power-iteration steps k")
    ax.set_ylabel("error (angle / rate)")
    ax.set_title("No gap: error ∝ 1/k.  A gap: geometric")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_digits_pca(pca, axes=None):
    """Left: the 1797 digits on their first two principal components (from power iteration), coloured by digit.
    Right: the top components as 8×8 images, power iteration (top row) over ``eigh`` (bottom row)."""
    import matplotlib as mpl

    axes = _axes(axes, 2, (11.0, 4.4))
    cmap = mpl.colormaps["tab10"]
    P = np.asarray(pca.projection)
    for d in range(10):
        sel = pca.labels == d
        axes[0].scatter(P[sel, 0], P[sel, 1], s=5, color=cmap(d), label=str(d))
    axes[0].set_xlabel(f"PC1 ({pca.explained[0]:.1%} of the variance)")
    axes[0].set_ylabel(f"PC2 ({pca.explained[1]:.1%})")
    axes[0].set_title("Digits on the top two principal components")
    axes[0].legend(fontsize=7, markerscale=2.5, ncol=2, title="digit", title_fontsize=7)
    k = len(pca.eigenvalues_power)
    tile = np.full((2 * 8 + 1, k * 9 - 1), np.nan)
    for j in range(k):
        # an eigenvector's sign is arbitrary: show eigh's with the sign of the power iterate
        sign = np.sign(pca.components_power[j] @ pca.components_eigh[j]) or 1.0
        tile[:8, 9 * j:9 * j + 8] = pca.components_power[j].reshape(8, 8)
        tile[9:, 9 * j:9 * j + 8] = sign * pca.components_eigh[j].reshape(8, 8)
    lim = np.nanmax(np.abs(tile))
    axes[1].imshow(tile, cmap="RdBu_r", vmin=-lim, vmax=lim)
    for j in range(k):
        axes[1].text(9 * j + 3.5, -0.9, f"PC{j + 1}: λ = {pca.eigenvalues_power[j]:.4f}", ha="center", fontsize=8)
    axes[1].set_xticks([])
    axes[1].set_yticks([3.5, 12.5])
    axes[1].set_yticklabels(["power\niteration", "eigh"], fontsize=8)
    axes[1].set_title("Top components (red +, blue −)", pad=16)
    return axes


def plot_derivative_test(test, ax=None):
    """f, f' and f'' of one function of :func:`~kernelscope.experiments.primer.derivative_test` on its interval,
    with each stationary point labelled by its kind and the derivative that decided it."""
    ax = new_axes(ax, (5.4, 4.2))
    ax.plot(test.x, test.f, color="k", lw=2, label="f")
    ax.plot(test.x, test.df, color="#1f77b4", lw=1, ls="--", label="f′")
    ax.plot(test.x, test.d2f, color="#ff7f0e", lw=1, ls=":", label="f″")
    ax.axhline(0, color="0.7", lw=0.8)
    for p in test.points:
        n = p.order
        which = {2: "f″", 3: "f‴", 4: "f⁗"}.get(n, "?")
        color = KINDS[p.kind]
        ax.scatter([p.x], [p.value], s=60, color=color, zorder=5)
        ax.annotate(f"{p.kind}\nf″ = {fmt(p.derivatives[1], '.2g')}" + (f", {which} = {p.derivatives[n - 1]:.3g}"
                                                                        if n > 2 else ""),
                    (p.x, p.value), xytext=(0, 14 if p.kind != "minimum" else -30), textcoords="offset points",
                    ha="center", fontsize=8, color=color)
    ax.set_xlabel("x")
    ax.set_title(f"f(x) = {test.name}")
    ax.legend(fontsize=8, loc="upper left")
    lo, hi = np.nanmin(test.f), np.nanmax(test.f)
    pad = 0.6 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    ax.grid(True, alpha=0.3)
    return ax


def plot_sample_mean(rate, ax=None):
    """RMS error of the sample mean of ``relu(u)relu(v)`` against the number of draws k (log-log), with the
    theory ``σ/√k`` and the fitted line."""
    ax = new_axes(ax, (5.4, 4.2))
    k = np.asarray(rate.k, float)
    ax.loglog(k, rate.rms_error, "o", color="#1f77b4", label=f"RMS error over {rate.repeats} repeats")
    ax.loglog(k, rate.sigma / np.sqrt(k), "-", color="k", lw=1, label=f"σ/√k, σ = {rate.sigma:.4f} (closed form)")
    ax.loglog(k, np.exp(rate.intercept) * k ** rate.slope, ":", color="#d62728",
              label=f"fit: slope {fmt(rate.slope, '+.3f')}")
    ax.set_xlabel("draws k")
    ax.set_ylabel("|sample mean − E[relu(u) relu(v)]|")
    ax.set_title(f"The sample mean converges at rate 1/√k (ρ = {rate.rho:g})")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_gaussian_pair(dual, ax=None):
    """The draws (u, v) of the Gaussian pair at ``dual.rho_scatter``: both positive (a ReLU unit fires on both
    inputs) in colour, the rest grey."""
    ax = new_axes(ax, (4.6, 4.4))
    u, v = np.asarray(dual.u), np.asarray(dual.v)
    both = (u > 0) & (v > 0)
    ax.scatter(u[~both], v[~both], s=4, color="0.7", label="not both > 0")
    ax.scatter(u[both], v[both], s=4, color="#d62728", label="u > 0 and v > 0")
    ax.axhline(0, color="0.4", lw=0.8)
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_aspect("equal")
    ax.set_xlabel("u = b·x")
    ax.set_ylabel("v = b·x′")
    ax.set_title(f"(u, v), correlation ρ = {dual.rho_scatter:g}, {len(u)} draws")
    ax.legend(fontsize=7.5, loc="upper left", markerscale=3)
    return ax


def plot_dual_check(dual, ax=None):
    """``E[relu(u)relu(v)]`` against ρ: the closed form (line) and the Monte-Carlo means (dots, with ±2 standard
    error bars, mostly smaller than the dots)."""
    ax = new_axes(ax, (5.0, 4.2))
    ax.plot(dual.rho_grid, dual.closed_grid, color="k", lw=1.2, label="closed form (sin θ + (π − θ) cos θ)/2π")
    ax.errorbar(dual.rho, dual.mean, yerr=2 * np.asarray(dual.se), fmt="o", color="#d62728", capsize=3,
                label=f"Monte Carlo, {dual.n} draws (±2 s.e.)")
    ax.set_xlabel("correlation ρ = cos θ")
    ax.set_ylabel("E[relu(u) relu(v)]")
    ax.set_title("The ReLU dual activation")
    ax.legend(fontsize=7.5)
    ax.grid(True, alpha=0.3)
    return ax


def plot_conditional(cond, ax=None):
    """``P(v > 0 | u > 0)`` and ``P(u > 0, v > 0)`` against ρ: exact (lines) and counted (dots)."""
    ax = new_axes(ax, (5.0, 4.2))
    ax.plot(cond.rho_grid, cond.exact_b_given_a_grid, color="#1f77b4", lw=1.2, label="P(B | A) = 1 − θ/π")
    ax.plot(cond.rho, cond.p_b_given_a, "o", color="#1f77b4", label="#AB / #A")
    ax.plot(cond.rho_grid, cond.exact_ab_grid, color="#ff7f0e", lw=1.2, ls="--", label="P(AB) = (π − θ)/2π")
    ax.plot(cond.rho, cond.p_ab, "s", color="#ff7f0e", label="#AB / n")
    ax.set_xlabel("correlation ρ = cos θ")
    ax.set_ylabel("probability")
    ax.set_title(f"A = {{u > 0}}, B = {{v > 0}}, {cond.n} draws")
    ax.legend(fontsize=7.5)
    ax.grid(True, alpha=0.3)
    return ax


def plot_standard_errors(dual, cond, ax=None):
    """How far each Monte-Carlo estimate lands from the truth, in its own standard errors (z), for the dual
    activation and the conditional probability; the band |z| < 2 holds about 95% of such estimates."""
    ax = new_axes(ax, (5.0, 4.2))
    ax.axhspan(-2, 2, color="#2ca02c", alpha=0.12, lw=0, label="|z| < 2")
    w = 0.04
    ax.bar(np.asarray(dual.rho) - w / 2, dual.z, width=w, color="#d62728", label="E[relu(u) relu(v)]")
    ax.bar(np.asarray(cond.rho) + w / 2, cond.z, width=w, color="#1f77b4", label="P(v > 0 | u > 0)")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("correlation ρ")
    ax.set_ylabel("(estimate − exact) / standard error")
    ax.set_title("Monte Carlo within its standard error")
    ax.legend(fontsize=7.5)
    ax.grid(True, axis="y", alpha=0.3)
    return ax
