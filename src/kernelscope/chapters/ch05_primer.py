"""Chapter "primer": what the applied-math deck (seed 002) and the first lecture (seed 000) take for granted - the
chain rule on a computation graph, eigenvectors and power iteration, the second-derivative test, and sampling (the
sample mean, the dual activation by Monte Carlo, a conditional probability) - each computed and checked
(:mod:`kernelscope.experiments.primer`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..story import Chapter, ChapterResult, StepContext, Table, fmt

__all__ = ["CHAPTER"]

INTRO = """
<p>The story uses four tools without stopping to explain them; this chapter computes each one once, on the
examples of the applied-mathematics deck, and checks it against an independent answer.</p>
<p><strong>Derivatives on a graph.</strong> A network is a chain of simple operations, and its gradient is the chain
rule applied along that chain. The deck's example: <code>c = a + b</code>, <code>d = b + 1</code>,
<code>e = c·d</code>. The derivative of e with respect to an input is a sum over the paths from the input to e of
the products of the local derivatives along each path: a reaches e through c only, b through c and through d.
Reverse-mode automatic differentiation (torch's autograd) does exactly this bookkeeping, from e backwards.</p>
<p><strong>Eigenvectors.</strong> An eigenvector is a direction that a matrix only stretches. The deck's shear moves
every point sideways by its height: only the horizontal axis keeps its direction. Power iteration
<code>v ← Av/‖Av‖</code> finds the dominant eigenvector of any matrix it can multiply by; how fast depends on the gap
to the next eigenvalue, and a shear has none. With a gap, on the digits' covariance matrix, it gives the principal
components (PCA) - the directions along which the images vary most - to the last digit of a dense eigensolver.</p>
<p><strong>The second-derivative test.</strong> Where f′ = 0, f″ &gt; 0 means a minimum and f″ &lt; 0 a maximum.
Where f″ = 0 too the test is silent and the deck's "point of inflection" is only one possibility: the first
higher derivative that is not zero decides - an odd one gives an inflection point (f keeps rising through a flat
spot), an even one a minimum or a maximum after all (x⁴ at 0).</p>
<p><strong>Sampling.</strong> The NNGP kernel of chapter 4 is an expectation, <code>E[σ(u)σ(v)]</code> over a
Gaussian pair (u, v) = (b·x, b·x′), and a finite network estimates it by a sample mean over its units. The sample
mean of k draws misses the expectation by about σ/√k - the rate of every random-feature and finite-width result
later on - and a Monte-Carlo estimate with its standard error is an honest measurement: the closed form should
lie within a couple of standard errors. The same pair gives a conditional probability, <code>P(B|A) =
P(AB)/P(A)</code>: given that a random ReLU unit fires on x, how likely does it fire on x′?</p>
"""


def _settings(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(pca=dict(k=3), rate=dict(ks=(10, 100, 1000, 10000), repeats=100),
                    dual=dict(n=20000), conditional=dict(n=20000))
    return dict(pca=dict(k=5), rate=dict(ks=(10, 100, 1000, 10000, 100000), repeats=400),
                dual=dict(n=200000), conditional=dict(n=200000))


def run(ctx: StepContext) -> ChapterResult:
    from ..experiments import primer as E
    from ..plots import new_figure
    from ..plots import primer as P

    cfg = _settings(ctx.quick)
    seed = ctx.seed
    res = ChapterResult()

    # 1. The chain rule on a computation graph --------------------------------------------------------------------
    ch = E.chain_rule(2.0, 1.0)
    ax = P.plot_computation_graph(ch)
    res.figures.append(ctx.savefig(ax.figure, "graph.png",
                                   "The deck's computation graph at (a, b) = (2, 1): values forward, local "
                                   "derivatives on the edges. ∂e/∂a is the product along the one path a → c → e; "
                                   "∂e/∂b is the sum over the two paths b → c → e and b → d → e."))
    res.tables.append(Table("e = (a + b)(b + 1) at (a, b) = (2, 1)",
                            ["derivative", "paths (product of local derivatives)", "chain rule by hand",
                             "torch autograd", "closed form"],
                            [[f"∂e/∂{v}", " + ".join(f"{' → '.join(p)}: {prod:g}" for p, prod in ch.paths[v]),
                              ch.by_hand[v], ch.autograd[v], ch.closed_form[v]] for v in ("a", "b")],
                            note="Closed form: ∂e/∂a = b + 1, ∂e/∂b = a + 2b + 1."))

    # 2. Eigenvectors: the shear, power iteration, PCA of the digits ---------------------------------------------
    sh = E.shear_eigenvectors()
    pca = E.digits_pca(seed=seed, **cfg["pca"])
    fig = new_figure((11.0, 4.4))
    axes = fig.subplots(1, 2)
    P.plot_shear(sh, ax=axes[0])
    P.plot_power_convergence(sh, pca, ax=axes[1])
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "eigen.png",
                                   "Left: the shear maps the unit circle to an ellipse and keeps only the "
                                   "horizontal direction; power iteration leans towards it. Right: without a gap "
                                   "between the eigenvalues (the shear's are both 1) the angle falls like 1/k; the "
                                   "digits' covariance has gaps, and the error falls geometrically."))
    axes = P.plot_digits_pca(pca)
    axes[0].figure.tight_layout()
    res.figures.append(ctx.savefig(axes[0].figure, "pca.png",
                                   "PCA of the 1797 digits by power iteration with deflation (only products with "
                                   "the covariance matrix). Right: the components as images, power iteration over "
                                   "numpy.linalg.eigh."))
    res.tables.append(Table("Principal components of the digits: power iteration against eigh",
                            ["component", "λ (power iteration)", "λ (eigh)", "relative difference",
                             "|cos(v_power, v_eigh)|", "steps", "λ_{j+1}/λ_j", "share of variance"],
                            [[j + 1, float(pca.eigenvalues_power[j]), float(pca.eigenvalues_eigh[j]),
                              f"{abs(pca.eigenvalues_power[j] / pca.eigenvalues_eigh[j] - 1):.1e}",
                              f"{pca.cosine[j]:.12f}", int(pca.iterations[j]), f"{pca.gap_ratio[j]:.4f}",
                              f"{pca.explained[j]:.4f}"] for j in range(len(pca.cosine))]))

    # 3. The second-derivative test -------------------------------------------------------------------------------
    tests = [E.derivative_test(name) for name in E.FUNCTIONS_1D]
    fig = new_figure((11.0, 4.2))
    axes = fig.subplots(1, len(tests))
    for t, a in zip(tests, axes):
        P.plot_derivative_test(t, ax=a)
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "derivative_test.png",
                                   "Stationary points found by Newton's iteration and classified. Left: a maximum "
                                   "(f″ < 0), a minimum (f″ > 0) and, at 0, f″ = 0 with f‴ ≠ 0: an inflection "
                                   "point. Right: x⁴ has f″ = 0 at its minimum; the fourth derivative decides."))
    res.tables.append(Table("The second-derivative test at the stationary points",
                            ["f", "x*", "f″(x*)", "f‴(x*)", "f⁗(x*)", "f″ alone says", "decided by", "kind",
                             "Newton steps"],
                            [[t.name, fmt(p.x, ".3g"), fmt(p.derivatives[1], ".3g"), fmt(p.derivatives[2], ".3g"),
                              fmt(p.derivatives[3], ".3g"), p.second_derivative_says,
                              {2: "f″", 3: "f‴", 4: "f⁗"}.get(p.order, "none"), p.kind, p.iterations]
                             for t in tests for p in t.points],
                            note=f"A derivative counts as zero below {tests[0].zero_tol:g} times its largest size on "
                                 "the plotted interval: Newton converges only linearly to a double root of f′, so "
                                 "x* there is off by ~1e-12 and f″(x*) by as much."))

    # 4. Sampling -------------------------------------------------------------------------------------------------
    rate = E.sample_mean_rate(seed=seed, **cfg["rate"])
    dual = E.dual_check(seed=seed, **cfg["dual"])
    cond = E.conditional_check(seed=seed, **cfg["conditional"])
    fig = new_figure((15.5, 4.3))
    axes = fig.subplots(1, 3)
    P.plot_sample_mean(rate, ax=axes[0])
    P.plot_gaussian_pair(dual, ax=axes[1])
    P.plot_dual_check(dual, ax=axes[2])
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "sampling.png",
                                   "Left: the sample mean of relu(u)relu(v) misses its expectation by σ/√k. Middle: "
                                   "the Gaussian pair (u, v) behind a dual activation (THEORY.md §3). Right: the "
                                   "ReLU dual by Monte Carlo against its closed form at five correlations."))
    fig = new_figure((10.5, 4.2))
    axes = fig.subplots(1, 2)
    P.plot_conditional(cond, ax=axes[0])
    P.plot_standard_errors(dual, cond, ax=axes[1])
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "probability.png",
                                   "Left: P(v > 0 | u > 0) = P(AB)/P(A) counted in the draws against 1 − θ/π. Right: "
                                   "each Monte-Carlo estimate's distance to the exact value, in its own standard "
                                   "errors."))
    res.tables.append(Table(f"Monte Carlo against closed forms ({dual.n} draws per correlation)",
                            ["ρ", "E[relu(u)relu(v)] exact", "Monte Carlo", "standard error", "z",
                             "P(B|A) exact", "counted", "standard error", "z"],
                            [[f"{r:g}", float(dual.closed[i]), float(dual.mean[i]), f"{dual.se[i]:.2g}",
                              f"{dual.z[i]:+.2f}", float(cond.exact_b_given_a[i]), float(cond.p_b_given_a[i]),
                              f"{cond.se[i]:.2g}", f"{cond.z[i]:+.2f}"] for i, r in enumerate(dual.rho)],
                            note="A = {u > 0}, B = {v > 0}; P(AB) = (π − θ)/(2π) is also the ReLU derivative kernel "
                                 "E[relu′(u) relu′(v)] of THEORY.md §3."))

    res.numbers = {
        "chain_rule": {"values": ch.values, "by_hand": ch.by_hand, "autograd": ch.autograd,
                       "closed_form": ch.closed_form},
        "shear": {"eigenvalues": sh.eigenvalues.tolist(), "slope": sh.slope,
                  "max_angle_error": float(np.max(np.abs(sh.angle - sh.angle_exact)))},
        "digits_pca": {"eigenvalues_power": pca.eigenvalues_power.tolist(),
                       "eigenvalues_eigh": pca.eigenvalues_eigh.tolist(), "cosine": pca.cosine.tolist(),
                       "iterations": pca.iterations.tolist(), "explained": pca.explained.tolist()},
        "derivative_test": {t.name: [{"x": p.x, "derivatives": p.derivatives, "kind": p.kind, "order": p.order}
                                     for p in t.points] for t in tests},
        "sample_mean": {"rho": rate.rho, "k": rate.k.tolist(), "rms_error": rate.rms_error.tolist(),
                        "sigma": rate.sigma, "slope": rate.slope},
        "dual": {"rho": dual.rho.tolist(), "z": dual.z.tolist(), "n": dual.n},
        "conditional": {"rho": cond.rho.tolist(), "z": cond.z.tolist(), "bayes_gap": cond.bayes_gap},
    }
    eig_err = float(np.max(np.abs(pca.eigenvalues_power / pca.eigenvalues_eigh - 1)))
    infl = next(p for p in tests[0].points if p.kind == "inflection")
    quartic = tests[-1].points[0]
    ratio = rate.rms_error * np.sqrt(rate.k) / rate.sigma
    findings = [
        f"Chain rule: at (a, b) = ({ch.a:g}, {ch.b:g}) the graph gives e = {ch.values['e']:g}, ∂e/∂a = "
        f"{ch.by_hand['a']:g} (one path) and ∂e/∂b = {ch.by_hand['b']:g} (two paths: "
        + " + ".join(f"{prod:g}" for _, prod in ch.paths["b"]) + f"); torch autograd gives {ch.autograd['a']:g} and "
        f"{ch.autograd['b']:g}, the closed form {ch.closed_form['a']:g} and {ch.closed_form['b']:g}.",
        f"Shear [[1, 1], [0, 1]]: eigenvalues {sh.eigenvalues[0]:g} and {sh.eigenvalues[1]:g}, one eigen-direction. "
        f"Power iteration's angle to it after k steps equals the closed form to "
        f"{np.max(np.abs(sh.angle - sh.angle_exact)):.0e} and falls with slope {fmt(sh.slope, '+.3f')} (k ≥ 10; "
        f"theory −1): {sh.angle[-1]:.2e} rad after {sh.iterations[-1]} steps.",
        f"Digits PCA: power iteration with deflation finds the top {len(pca.cosine)} eigenvalues of the covariance "
        f"to a relative {eig_err:.0e} of eigh's and the components to |cos| ≥ {pca.cosine.min():.12f}, in "
        + ", ".join(str(int(i)) for i in pca.iterations) + " steps (rates λ_{j+1}/λ_j = "
        + ", ".join(f"{r:.3f}" for r in pca.gap_ratio) + f"); the first two components carry "
        f"{pca.explained[:2].sum():.1%} of the variance.",
        "Second-derivative test on x⁵/5 − x³/3: "
        + ", ".join(f"x* = {fmt(p.x, '.2g')} {p.kind} (f″ = {fmt(p.derivatives[1], '.2g')})"
                    for p in tests[0].points)
        + f"; at the inflection point f‴ = {infl.derivatives[2]:.3g} decides. x⁴: f″(x*) = "
          f"{fmt(quartic.derivatives[1], '.1e')} at x* = {fmt(quartic.x, '.1e')}, so the second derivative is "
          f"silent and f⁗ = {quartic.derivatives[3]:g} > 0 makes it a {quartic.kind}.",
        f"Sample mean of relu(u)relu(v) at ρ = {rate.rho:g}: the RMS error over {rate.repeats} repeats falls with "
        f"slope {fmt(rate.slope, '+.3f')} in the number of draws k (theory −½), and is "
        f"{ratio.min():.2f}–{ratio.max():.2f} times the predicted σ/√k (σ = {rate.sigma:.4f}).",
        f"ReLU dual by Monte Carlo with {dual.n} draws: at ρ = "
        + ", ".join(f"{r:g}" for r in dual.rho) + " the estimates lie "
        + ", ".join(f"{z:+.1f}" for z in dual.z) + f" standard errors from the closed form "
        f"({int(np.sum(np.abs(dual.z) < 2))} of {len(dual.z)} within 2).",
        f"Conditional probability: P(v > 0 | u > 0) counted as #AB/#A matches 1 − θ/π within "
        f"{np.max(np.abs(cond.z)):.1f} standard errors at every ρ (e.g. {cond.p_b_given_a[-1]:.4f} against "
        f"{cond.exact_b_given_a[-1]:.4f} at ρ = {cond.rho[-1]:g}); P(B|A)P(A) and P(A|B)P(B) agree to "
        f"{cond.bayes_gap:.0e} (both are #AB/n).",
    ]
    res.findings = findings
    return res


CHAPTER = Chapter(key="primer", order=5, title="0. A primer: derivatives, eigenvectors, probability", intro=INTRO,
                  run=run, threads=1, seconds=10)
