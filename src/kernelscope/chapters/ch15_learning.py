"""Chapter "learning": the mathematics of learning - norms, curvature, descent, and chapter 1 in weight space
(the applied-math deck 002, the deck 000 linking linear systems to networks, the spiral lecture 003)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..story import Chapter, ChapterResult, StepContext, Table, fmt

INTRO = """
<p>Chapter 1 chose, among the infinitely many solutions of <code>3x + 4y = 12</code>, the one of least
<em>Euclidean</em> length. Other lengths choose other points: the smallest ℓ1 ball (a diamond) that meets the line
touches it at a corner, <code>(0, 3)</code> - a <em>sparse</em> solution, found by a linear program - while the
ℓ∞ square touches it where both coordinates are equal. The same geometry separates the lasso (ℓ1 penalty: weights
switch off one by one) from ridge (ℓ2: every weight shrinks, none vanishes).</p>
<p>Training is descent on a loss surface. Its curvature, the Hessian, says what a stationary point is (all
eigenvalues positive: a minimum; all negative: a maximum; both: a saddle) and how large a step may be: on a
quadratic, gradient descent converges exactly when <code>η &lt; 2/λ<sub>max</sub></code>. For a network the
Hessian is never formed: Hessian-vector products (a forward-mode derivative of the gradient) and Lanczos give the
top of its spectrum. Momentum keeps the speed of the descent and can roll out of a shallow minimum; mini-batches
and single samples trade exact gradients for many more steps per pass over the data.</p>
<p>Finally chapter 1 reappears in weight space. The linearised network <code>f₀ + J(w − w₀)</code> is a linear
system in the weights with far more unknowns than equations; gradient descent from w₀ only ever moves along the
rows of J, so it ends at the <em>least-norm</em> solution <code>Δw = J⁺(y − f₀)</code>. At an interpolating
minimum the loss Hessian is the Gauss–Newton matrix <code>JᵀJ</code>, whose non-zero eigenvalues are those of the
empirical NTK <code>JJᵀ</code>. And on the spirals: a hand-made lift <code>x₁² + x₂²</code> makes rings linearly
separable, a linear classifier cannot follow spiral arms, and the NTK's influence map shows how pulling one
point drags the others.</p>
"""


def _per_update(runs: dict) -> str:
    """What the per-update panel of a batch-size figure shows, in numbers: each run's full loss after as many
    updates as the full-batch run took (recorded inside epochs: ``EpochRun.curve_updates``)."""
    full = next((r for r in runs.values() if r.batch_size == r.n), None)
    if full is None or getattr(full, "curve_updates", None) is None:
        return ""
    E = int(full.updates[-1])
    at = {}
    for label, r in runs.items():
        hit = np.flatnonzero(np.asarray(r.curve_updates) == E)
        if hit.size:
            at[label] = float(np.asarray(r.curve_loss)[hit[0]])
    if len(at) < 2:
        return ""
    lo, hi = min(at.values()), max(at.values())
    verdict = ("the runs are alike per update; a step on a few examples is worth about as much as a step on all N "
               "here, at a fraction of the cost, and only the small batches' curves are noisy"
               if hi <= 1.25 * lo else
               f"per update, {min(at, key=at.get)} is ahead")
    return (f"Per update (right), after the full batch's {E} updates the loss is "
            + ", ".join(f"{v:.3g} ({k})" for k, v in at.items()) + f": {verdict}.")


def _settings(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(paths=dict(n_path=25), model_steps=dict(steps=100, factors=(0.5, 1.1, 2.0)),
                    link=dict(widths=(16, 256), max_steps=1000), gn=dict(max_steps=1000),
                    batches=dict(epochs=6), spiral=dict(epochs=6, resolution=70, n_per_class=60))
    return dict(paths=dict(n_path=50), model_steps=dict(steps=200, factors=(0.5, 0.9, 1.1, 2.0)),
                link=dict(widths=(16, 128, 1024), max_steps=3000), gn=dict(max_steps=3000),
                batches=dict(epochs=25), spiral=dict(epochs=30, resolution=120, n_per_class=100))


def run(ctx: StepContext) -> ChapterResult:
    from ..experiments import learning as E
    from ..plots import learning as P

    cfg = _settings(ctx.quick)
    seed = ctx.seed
    res = ChapterResult()
    times: dict[str, float] = {}

    def timed(name, fn, *a, **k):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        times[name] = round(time.perf_counter() - t0, 3)
        return out

    # 1. Norms: least ℓ1 / ℓ2 / ℓ∞ solutions of 3x + 4y = 12, lasso vs ridge --------------------------------------
    ln = timed("least_norms", E.least_norms)
    ax = P.plot_unit_balls(ln)
    res.figures.append(ctx.savefig(ax.figure, "unit_balls.png",
                                   "3x + 4y = 12 and the smallest ℓ1 (diamond), ℓ2 (circle) and ℓ∞ (square) balls "
                                   "that meet it: the least-ℓ1 point (0, 3) is a corner on an axis (sparse), the "
                                   "least-ℓ2 point (36/25, 48/25) lies on the normal, the least-ℓ∞ point has equal "
                                   "coordinates (12/7, 12/7). ℓ1 and ℓ∞ are linear programs (SciPy's HiGHS)."))
    rp = timed("regularization_paths", E.regularization_paths, seed=seed, **cfg["paths"])
    axes = P.plot_paths(rp)
    res.figures.append(ctx.savefig(axes[0].figure, "paths.png",
                                   f"Lasso against ridge on a regression whose true weights have "
                                   f"{len(rp.support_true)} non-zeros (solid): the lasso switches weights off one "
                                   "by one as α grows and keeps the true ones longest; ridge shrinks every weight "
                                   f"and zeroes none. Along the whole lasso path (scikit-learn's coordinate descent) "
                                   f"the optimality conditions hold to {rp.kkt_violation:.1e}."))
    norm_rows = [[f"ℓ{k if k != 'inf' else '∞'}", f"({ln.solutions[k][0]:.6g}, {ln.solutions[k][1]:.6g})",
                  ln.norms[k], ln.exact[k], abs(ln.norms[k] - ln.exact[k])] for k in ("1", "2", "inf")]
    res.tables.append(Table("3x + 4y = 12: least-norm solutions in three norms",
                            ["norm", "solution", "its norm", "|β|/‖a‖_q (Hölder)", "difference"], norm_rows,
                            note="q is the dual exponent (1/p + 1/q = 1). The lasso path of the same equation ends "
                                 f"at ({ln.lasso.coefs[-1][0]:.4g}, {ln.lasso.coefs[-1][1]:.4g}), the ridge path at "
                                 f"({ln.ridge.coefs[-1][0]:.4g}, {ln.ridge.coefs[-1][1]:.4g})."))

    # 2. Curvature: stationary points, momentum, step sizes -----------------------------------------------------
    st = timed("stationary_points", E.stationary_points)
    ax = P.plot_stationary_points(st)
    res.figures.append(ctx.savefig(ax.figure, "stationary.png",
                                   "Newton's iteration from a grid of starts finds the four critical points of "
                                   "x³ − 3x + y³ − 3y; the signs of the Hessian's eigenvalues (diag(6x, 6y)) make "
                                   "one a minimum, one a maximum and two saddles."))
    de = timed("momentum_escape", E.momentum_escape)
    ax = P.plot_descent(de)
    res.figures.append(ctx.savefig(ax.figure, "momentum.png",
                                   "Gradient descent and heavy-ball momentum (same η, same start) on a tilted double "
                                   "well: descent stops in the shallow minimum nearest the start; momentum keeps "
                                   "the speed gathered coming down and rolls over the barrier into the deeper one."))
    ss = timed("step_sizes", E.step_sizes)
    axes = P.plot_step_sizes(ss)
    res.figures.append(ctx.savefig(axes[0].figure, "step_sizes.png",
                                   "Gradient descent on ½(10x² + y²): the error is multiplied by 1 − ηλ per step, so "
                                   "η below 2/λ_max = 0.2 converges and above it diverges, exactly as the closed "
                                   "form (lines) says; at 0.99·2/λ_max the iterate bounces across the valley."))
    ms = timed("model_step_sizes", E.model_step_sizes, seed=seed, **cfg["model_steps"])
    axes = P.plot_model_step_sizes(ms)
    res.figures.append(ctx.savefig(axes[0].figure, "model_step_sizes.png",
                                   "The same threshold measured on models, with λ₀ the top Hessian eigenvalue at "
                                   "w₀ from Lanczos on Hessian-vector products. The linear model's loss is a "
                                   "quadratic: above 2/λ₀ it diverges. The tanh network's Hessian moves: above "
                                   "2/λ₀ the loss does not blow up, and its sharpness ends near 2/η instead."))
    step_rows = []
    for name in ms.models:
        for i, c in enumerate(ms.factors):
            curve = ms.loss[name][i]
            diverged = not np.isfinite(curve).all()
            step_rows.append([name, float(c), ms.lambda_max[name], ms.lambda_dense[name],
                              "diverged" if diverged else float(curve[-1]),
                              None if diverged else float(ms.sharpness_end[name][i]), ms.lambda_max[name] / c])
    res.tables.append(Table("Step size against curvature on torch models",
                            ["model", "η · λ₀/2", "λ₀ (Lanczos)", "λ₀ (full Hessian)", "final loss",
                             "λ_max at the end", "2/η"], step_rows))

    # 3. Batch sizes on one regression problem ------------------------------------------------------------------
    bs = timed("batch_sizes", E.regression_batch_sizes, batch_sizes=(0, 16, 1), lr=0.2, seed=seed,
               **cfg["batches"])
    axes = P.plot_batch_sizes(bs.runs, title=f"regression, N = {bs.n}, η = {bs.lr:g}, same start")
    res.figures.append(ctx.savefig(axes[0].figure, "batch_sizes.png",
                                   "Full batch, mini-batch (16) and per-sample SGD with the same η from the same "
                                   "start. Per epoch (equal numbers of per-example gradients, left) small batches "
                                   f"win: they take N/B steps for one of full batch. {_per_update(bs.runs)}"))

    # 4. Chapter 1 in weight space ------------------------------------------------------------------------------
    link = timed("least_norm_link", E.least_norm_link, seed=seed, **cfg["link"])
    axes = P.plot_least_norm_link(link)
    res.figures.append(ctx.savefig(axes[0].figure, "least_norm_link.png",
                                   "Gradient descent from w₀ on the linearised network lands on the least-norm "
                                   "solution of J Δw = y − f₀ (chapter 1's pseudoinverse, now in weight space): every "
                                   "step −ηJᵀ(f − y) lies in the row space of J. The nonlinear network trained the "
                                   "same way gets closer to it as it widens."))
    gn = timed("gauss_newton_spectrum", E.gauss_newton_spectrum, seed=seed, **cfg["gn"])
    ax = P.plot_gauss_newton_spectrum(gn)
    res.figures.append(ctx.savefig(ax.figure, "gauss_newton.png",
                                   "At an interpolating minimum of ½Σ(f − y)² the Hessian equals the Gauss–Newton "
                                   "matrix JᵀJ; its N non-zero eigenvalues are the empirical NTK's (JJᵀ), and the "
                                   "other P − N directions are flat."))
    k = gn.n
    res.tables.append(Table("Hessian, Gauss–Newton and NTK spectra at an interpolating minimum",
                            ["i", "λ_i(∇²L)", "λ_i(JᵀJ)", "λ_i(JJᵀ) = λ_i(Θ)"],
                            [[i + 1, float(gn.hessian_eigs[i]), float(gn.gauss_newton_eigs[i]), float(gn.ntk_eigs[i])]
                             for i in range(k)],
                            note=f"P = {gn.n_params} weights, N = {gn.n}; ‖∇²L − JᵀJ‖/‖∇²L‖ = {gn.hessian_gn_gap:.1e}; "
                                 f"λ_max from Lanczos on HVPs: {gn.top_lanczos:.12g}; largest remaining |λ(∇²L)|: "
                                 f"{gn.flat_max:.1e}."))

    # 5. Spirals: the lift, the linear classifier, per sample vs full batch, influence ---------------------------
    lf = timed("lift", E.lift, seed=seed)
    axes = P.plot_lift(lf)
    res.figures.append(ctx.savefig(axes[0].figure, "lift.png",
                                   "Two rings: no line separates them in the plane, but after the hand-made lift "
                                   "(x₁, x₂) ↦ (x₁, x₂, x₁² + x₂²) a plane does, and that plane cuts a circle out of "
                                   "the input plane."))
    sg = timed("spiral_sgd", E.spiral_sgd, seed=seed, batch_sizes=(0, 16, 1), **cfg["spiral"])
    axes = P.plot_spiral_regions(sg)
    res.figures.append(ctx.savefig(axes[0].figure, "spiral_regions.png",
                                   "Decision regions on the spirals: the linear classifier cuts the plane into convex "
                                   "wedges and cannot follow the arms; a ReLU network trained per sample follows "
                                   "them; the same network trained full batch (same η, same epochs, one step per "
                                   "epoch) has barely moved."))
    axes = P.plot_batch_sizes(sg.runs, title=f"spirals, cross-entropy, η = {sg.config['lr']:g}")
    res.figures.append(ctx.savefig(axes[0].figure, "spiral_sgd.png",
                                   "The spiral network trained full batch, mini-batch and per sample from the same "
                                   "start: the lecture's stochastic gradient descent (one step per example) is far "
                                   f"ahead per epoch (left). {_per_update(sg.runs)}"))
    axes = P.plot_influence(sg)
    res.figures.append(ctx.savefig(axes[0].figure, "influence.png",
                                   "The NTK's influence map Θ(x, x_i)/Θ(x_i, x_i): a gradient step on x_i alone moves "
                                   "f(x) by −η Θ(x, x_i) ℓ'_i, so pulling one point drags others along. At w₀ it is a "
                                   "wide wedge in the direction of x_i (a ReLU network's NTK grows with ‖x‖); after "
                                   "per-sample training the wedge is narrower and bent: the kernel itself moved."))

    res.numbers = {
        "least_norm": {k: {"x": ln.solutions[k].tolist(), "norm": ln.norms[k], "expected": ln.exact[k]}
                       for k in ln.solutions},
        "lasso_kkt_violation": rp.kkt_violation,
        "lasso_nonzeros": rp.lasso.nonzeros.tolist(), "ridge_nonzeros": rp.ridge.nonzeros.tolist(),
        "stationary_points": [{"x": p.x.tolist(), "kind": p.kind, "eigenvalues": p.eigenvalues.tolist()}
                              for p in st.points],
        "momentum": {k: {"end": r.x.tolist(), "value": float(r.values[-1])} for k, r in de.runs.items()},
        "step_size_final_error": dict(zip(map(float, ss.factors), map(float, ss.error[:, -1]))),
        "model_step_sizes": {n: {"lambda_max": ms.lambda_max[n], "lambda_dense": ms.lambda_dense[n],
                                 "n_hvp": ms.n_hvp[n]} for n in ms.models},
        "batch_sizes": {k: {"final_loss": float(r.loss[-1]), "updates": int(r.updates[-1])}
                        for k, r in bs.runs.items()},
        "least_norm_link": {"rel_error": link.rel_error, "null_fraction": link.null_fraction,
                            "residual": link.residual, "n_params": link.n_params, "steps": link.steps,
                            "other_interpolant_norm": link.other_norm,
                            "least_norm": link.least_norm,
                            "network_rel_distance": {str(w): v for w, v in link.net.items()}},
        "gauss_newton": {"residual": gn.residual, "hessian_gn_gap": gn.hessian_gn_gap,
                         "max_rel_eig_diff": gn.max_rel_eig_diff,
                         "top_lanczos": gn.top_lanczos, "rank": gn.rank},
        "lift": {"accuracy_plane": lf.acc_plane, "accuracy_lifted": lf.acc_lifted, "radius": lf.radius},
        "spirals": {"linear_accuracy": sg.linear_accuracy, "accuracy": sg.accuracy,
                    "final_loss": {k: float(r.loss[-1]) for k, r in sg.runs.items()}},
        "seconds": times,
    }
    eig_diff = res.numbers["gauss_newton"]["max_rel_eig_diff"]
    gd_lab, mom_lab = list(de.runs)
    res.findings = [
        f"3x + 4y = 12: least ℓ1 ({fmt(ln.solutions['1'][0], '.3g')}, {fmt(ln.solutions['1'][1], '.6g')}), least ℓ2 "
        f"({fmt(ln.solutions['2'][0], '.6g')}, {fmt(ln.solutions['2'][1], '.6g')}), least ℓ∞ "
        f"({fmt(ln.solutions['inf'][0], '.6g')}, {fmt(ln.solutions['inf'][1], '.6g')}); each norm equals Hölder's "
        f"|β|/‖a‖_q to "
        f"{max(abs(ln.norms[k] - ln.exact[k]) for k in ln.norms):.1e}.",
        f"Lasso path: {int(rp.lasso.nonzeros.min())}–{int(rp.lasso.nonzeros.max())} non-zero weights along the "
        f"path; ridge: always {int(rp.ridge.nonzeros.min())}. Largest violation of the lasso's optimality "
        f"conditions along the path: {rp.kkt_violation:.1e}.",
        "Critical points of x³ − 3x + y³ − 3y: "
        + ", ".join(f"({fmt(p.x[0], '.0f')}, {fmt(p.x[1], '.0f')}) {p.kind}" for p in st.points) + ".",
        f"Double well from (2, 1): {gd_lab} ends at x = {fmt(de.runs[gd_lab].x[0], '.3f')} "
        f"(f = {fmt(de.runs[gd_lab].values[-1], '.3f')}), "
        f"{mom_lab} at x = {fmt(de.runs[mom_lab].x[0], '.3f')} (f = {fmt(de.runs[mom_lab].values[-1], '.3f')}).",
        "Quadratic, λ_max = 10: final error " + ", ".join(f"{e:.1e} at η = {c:g}·2/λ_max" for c, e in
                                                          zip(ss.factors, ss.error[:, -1])) + ".",
        "Models: λ₀ by Lanczos " + ", ".join(f"{n} {ms.lambda_max[n]:.6g} ({ms.n_hvp[n]} HVPs; full Hessian "
                                             f"{ms.lambda_dense[n]:.6g})" for n in ms.models) + ".",
        f"Linearised network, N = {link.n}, P = {link.n_params}: gradient descent moved the weights by J⁺(y − f₀) to "
        f"{link.rel_error:.1e} (null-space part {link.null_fraction:.1e} of the move); another interpolant is "
        f"{link.other_norm / link.least_norm:.2f} times longer. Nonlinear net: "
        + ", ".join(f"width {w}: {v:.2f}" for w, v in link.net.items()) + " relative distance.",
        f"At the interpolating minimum (‖f − y‖ = {gn.residual:.1e}) the top {k} Hessian eigenvalues equal the "
        f"NTK's to {eig_diff:.1e} (relative); ‖∇²L − JᵀJ‖/‖∇²L‖ = {gn.hessian_gn_gap:.1e}; JᵀJ has rank "
        f"{gn.rank} of P = {gn.n_params}.",
        f"Rings: a line gets {lf.acc_plane:.0%}, a plane after the lift x₁² + x₂² gets {lf.acc_lifted:.0%}.",
        f"Spirals: linear classifier {sg.linear_accuracy:.0%}; network " + ", ".join(
            f"{k} {v:.0%}" for k, v in sg.accuracy.items()) + f" after {sg.config['epochs']} epochs.",
    ]
    return res


CHAPTER = Chapter(key="learning", order=15, title="2. The mathematics of learning: norms, curvature, descent",
                  intro=INTRO, run=run, threads=1, seconds=35)
