"""Chapter 4: the neural tangent kernel and lazy training (THEORY.md §5).

Text and figures of three experiments (:mod:`kernelscope.experiments.lazy`), each saved per finished piece
(``ctx.checkpoint``) so an interrupted run resumes:

1. a width sweep of two-layer erf networks on a 1-D regression set: the trained net, its trained linearisation,
   and the gradient-flow predictions with the empirical Θ₀ and with the infinite-width NTK (``nets``);
2. the same sweep for three-layer ReLU networks on a digits subset (parity as a ±1 target);
3. the empirical NTK of ``net.finite(width=m)`` converging to ``net.kernel().ntk``;
4. the infinite ensemble's mean and error bars (``kernelscope.predict.ensemble``) against many trained finite nets;
5. ten-class digit classifiers trained on cross-entropy against the infinitely wide network trained the same way in
   function space (``kernelscope.predict.gradient_descent``);
6. lazy ↔ rich, the mechanism: Chizat & Bach's output scale α at a fixed width, the NTK parameterisation against
   μP at growing width, and the curvature ratio ``‖∇²f‖/‖∇f‖²`` at initialisation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..story import Chapter, ChapterResult, StepContext, Table, fmt

if TYPE_CHECKING:  # the experiments are imported when the chapter runs: the tour's processes start faster
    from ..dynamics.lazy import LazySweep

__all__ = ["CHAPTER", "WIDTHS"]

INTRO = """
<p>Linearise a network around its initial weights: <code>f(x; w) ≈ f(x; w₀) + ∇<sub>w</sub>f(x; w₀)·(w − w₀)</code>.
This is a linear model with the features <code>φ(x) = ∇<sub>w</sub>f(x; w₀)</code>, whose kernel is the
<strong>neural tangent kernel</strong> Θ. Trained by gradient descent on ½Σ(f − y)², the linear model follows
<code>f<sub>t</sub> = f₀ + (I − e<sup>−ηΘt</sup>)(y − f₀)</code>: kernel regression, run in time.</p>
<p>The surprise is that wide networks <em>stay</em> close to their linearisation: with the NTK parameterisation
each weight moves by O(1/√m), so the relative weight change, the change of Θ during training and the gap between
the network and its linearisation all shrink as the width m grows — <strong>lazy training</strong>. Below we train
networks of widths 16 … 4096 side by side with their linearisations (computed by forward-mode products, no
Jacobian stored) and measure the slopes on log-log axes; the empirical NTK itself, computed for any torch
module by <code>kernelscope.empirical.ntk</code>, converges to the infinite-width formula of chapter 4.</p>
<p>Each wide net starts from a random function drawn from the NNGP and is then pulled towards the data by the NTK,
so an <em>ensemble</em> of trained wide nets is Gaussian, with a mean and error bars in closed form (Lee et al.
2019; <code>kernelscope.predict.ensemble</code>) — which we check against many trained finite nets.</p>
<p>Nothing here needs the squared loss. A wide classifier trained on cross-entropy follows the function-space flow
<code>f' = −η Θ (softmax f − y)</code>, nonlinear in f but still driven by the one kernel Θ; it has no closed form,
so <code>kernelscope.predict.gradient_descent</code> integrates it (Runge–Kutta–Chebyshev: the flow is stiff, its
Jacobian −ηΘ∇²L has real eigenvalues spread over the whole spectrum of Θ). A later section trains ten-class digit
classifiers of growing width and holds them against that flow.</p>
<p><strong>Why</strong> are wide nets lazy? Not because they are wide, but because of how their output is scaled
(Chizat, Oyallon &amp; Bach 2019). Take any model g, centre and scale it, <code>f = α·(g(w) − g(w₀))</code>, and
train it on <code>L/α²</code>. A step then moves f by the same amount for every α, <code>Δf = −ηΘ<sub>g</sub>∇L</code>,
while it moves the weights by <code>Δw = −(η/α)∇g·∇L</code>: a large α reaches the same function with weights that
hardly move, so the kernel stays put and the net stays its linearisation; a small α has to move the weights far.
What decides is the curvature against the slope at the start, <code>‖∇²f‖/‖∇f‖²</code>, which is divided by α. In
the NTK parameterisation the width does the same job: the ratio falls like m<sup>−½</sup> (for ReLU the Hessian
norm is exactly <code>(w₂/√m)·√(w₁²‖x‖²/d + b²)</code>, b the hidden layer's bias scale), so the width acts as
α = √m. The mean-field or μP
parameterisation (Yang &amp; Hu 2021; <code>parameterization='mup'</code> in <code>kernelscope.nets.finite</code>)
starts from the very same NTK Θ₀, but it is, up to how its weights are stored, the NTK net with its output divided
by √m (its output bias aside) and trained with steps m times larger: α = m<sup>−½</sup>. The ratio then no longer
falls, and the features keep moving however wide the net is. The last section measures all of this: against α at
one width, against the width in both parameterisations, and where the test error of the net leaves that of its
linearisation.</p>
"""

WIDTHS = {
    "1d": {"quick": [16, 64, 256, 1024], "full": [16, 64, 256, 1024, 4096]},
    "digits": {"quick": [16, 64, 256], "full": [16, 64, 256, 1024, 4096]},
    "ntk": {"quick": [16, 128, 1024], "full": [16, 64, 256, 1024, 4096]},
}
ENSEMBLE = {"quick": dict(n_nets=24, width=512, steps=30), "full": dict(n_nets=64, width=512, steps=30)}
CLASSIFIER = {"quick": dict(widths=[64, 256, 1024], steps=120, n_train=150, n_test=150),
              "full": dict(widths=[64, 256, 1024, 4096], steps=400, n_train=300, n_test=300)}
#: lazy ↔ rich: output scales at one width, and the curvature ratio's widths and inputs
ALPHA = {"quick": dict(alphas=[0.125, 0.5, 2.0, 8.0, 32.0], width=128, steps=40, records=2),
         "full": dict(alphas=[0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0], width=256, steps=300)}
CURVATURE = {"quick": dict(widths=[16, 128, 1024], n_points=1),
             "full": dict(widths=[16, 64, 256, 1024, 4096], n_points=5)}

def _run(ctx: StepContext) -> ChapterResult:
    from ..experiments.lazy import classifier_sweep, digits_ntk_convergence, ensemble_bands, lazy_sweep
    from ..plots import dynamics as P
    from ..plots import new_figure

    mode = "quick" if ctx.quick else "full"
    res = ChapterResult()
    one_d = lazy_sweep("1d", WIDTHS["1d"][mode], steps=100 if ctx.quick else 300, seed=ctx.seed,
                       checkpoint=ctx.checkpoint, track=ctx.track)
    digits = lazy_sweep("digits", WIDTHS["digits"][mode], steps=30 if ctx.quick else 120, seed=ctx.seed,
                        checkpoint=ctx.checkpoint, track=ctx.track)
    s1, sd = one_d.sweep, digits.sweep
    X, y, Xs = one_d.X, one_d.y, one_d.X_test

    fig = new_figure((11, 6.0))
    axes = fig.subplots(1, 2)
    P.plot_width_sweep(s1, ax=axes[0], title=f"1-D regression, two-layer erf ({s1.steps} steps)")
    P.plot_width_sweep(sd, ax=axes[1], title=f"digits parity, three-layer ReLU ({sd.steps} steps)")
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "sweep.png", "Lazy training: relative weight change, relative NTK change, "
                                   "network-vs-linearisation gap and gap to the infinite-width gradient flow, "
                                   "against the width m (log-log; the legend gives each fitted slope, and the slope "
                                   "between the two widest nets where a curve bends away from it)."))

    fig = new_figure((11, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    P.plot_lazy_functions(s1.runs[0], X, y, Xs, ax=axes[0])
    P.plot_lazy_functions(s1.runs[-1], X, y, Xs, ax=axes[1])
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "functions.png", "Narrowest vs widest two-layer net on the 1-D set: the "
                                   "trained net, its trained linearisation and the gradient-flow predictions. "
                                   "Wide: all curves coincide."))

    ax = P.plot_lazy_history(s1, "dist_net_lin")
    res.figures.append(ctx.savefig(ax.figure, "history.png", "RMS gap between the network and its linearisation "
                                   "during training, one curve per width (1-D set)."))

    # 3. empirical NTK of nets' finite networks -> infinite-width NTK
    conv = ctx.checkpoint("ntk_convergence", lambda: digits_ntk_convergence(WIDTHS["ntk"][mode], seed=ctx.seed))
    ax = P.plot_ntk_convergence(conv)
    res.figures.append(ctx.savefig(ax.figure, "ntk_convergence.png", "Empirical NTK of net.finite(width=m) "
                                   "(kernelscope.empirical.ntk) against net.kernel().ntk on 30 digits: the relative "
                                   "error falls like m^(−1/2)."))

    # 4. the infinite ensemble's error bars against trained finite nets (Lee et al. 2019)
    bands = ctx.checkpoint("ensemble_bands", lambda: ensemble_bands(seed=ctx.seed, track=ctx.track,
                                                                    **ENSEMBLE[mode]))
    axes = P.plot_ensemble_bands(bands)
    res.figures.append(ctx.savefig(axes[0].figure, "ensemble.png",
                                   f"{len(bands.nets)} two-layer erf nets of width {bands.width}, each from "
                                   f"its own random initialisation, after {bands.steps} gradient-descent steps, "
                                   "against the infinite ensemble of infinitely wide nets trained the same way "
                                   "(kernelscope.predict.ensemble: mean and standard deviation from the NNGP and "
                                   "the NTK). Right: the standard deviations over x (log scale), with the prior's."))
    # 5. a classifier: cross-entropy, trained nets against the infinite-width flow
    cl = classifier_sweep(seed=ctx.seed, checkpoint=ctx.checkpoint, track=ctx.track, **CLASSIFIER[mode])
    at_T = cl.times.index(float(cl.steps))
    ce_train_T, ce_test_T = cl.infinite_train_accuracy[at_T], cl.infinite_test_accuracy[at_T]
    axes = P.plot_classifier_sweep(cl)
    axes[0].figure.tight_layout()
    res.figures.append(ctx.savefig(axes[0].figure, "classifier.png",
                                   f"Two-layer ReLU digit classifiers (10 classes) trained by {cl.steps} "
                                   "gradient-descent steps on the summed cross-entropy. Left: their distance on the "
                                   "test images to the infinitely wide network trained the same way in function "
                                   "space from the same f₀ (kernelscope.predict.gradient_descent with Θ∞). Right: "
                                   "the infinitely wide classifier (f₀ = 0) trained far longer, on cross-entropy "
                                   "and on the squared loss, with the nets' test accuracy where they stopped."))
    res.tables.append(Table(f"Digit classifiers on cross-entropy ({cl.n_train} train, {cl.n_test} test, "
                            f"{cl.steps} steps, η = {cl.lr:.3g})",
                            ["model", "train accuracy", "test accuracy", "‖f − f_∞‖/‖f_∞ − f₀‖",
                             "same prediction as the flow"],
                            [[f"net m={r.width}", f"{r.train_accuracy:.3f}", f"{r.test_accuracy:.3f}",
                              f"{r.gap:.3g}", f"{r.agree:.3f}"] for r in cl.runs]
                            + [[f"infinite width, f₀ = 0, t = {cl.steps}", f"{ce_train_T:.3f}", f"{ce_test_T:.3f}",
                                "", ""],
                               [f"infinite width, f₀ = 0, t = {cl.times[-1]:.0e}",
                                f"{cl.infinite_train_accuracy[-1]:.3f}", f"{cl.infinite_test_accuracy[-1]:.3f}",
                                "", ""],
                               ["squared-loss kernel regression", "", f"{cl.mse_kernel_test_accuracy:.3f}", "",
                                ""]],
                            note=f"The infinite-width flow: {cl.solver['method']}, {cl.solver['steps']} steps, "
                                 f"{cl.solver['nfev']} evaluations of Θ∞·g, rtol {cl.solver['rtol']:g}."))

    # 6. lazy ↔ rich: the output scale α, the parameterisation, the curvature ratio
    rich, rich_findings = _lazy_rich(ctx, mode, s1, res)

    F, z_mean, std_ratio = bands.nets, bands.max_mean_z, bands.std_ratio

    rows = []
    for name, sw in (("1-D, 2-layer erf", s1), ("digits, 3-layer ReLU", sd)):
        for r in sw.runs:
            rows.append([name, r.width, r.n_params, f"{r.weight_change[-1]:.3g}",
                         f"{r.ntk_change[-1]:.3g}", f"{r.dist_net_lin[-1]:.3g}",
                         f"{r.dist_net_flow:.3g}", f"{r.dist_net_inf:.3g}", f"{r.loss_net[-1]:.3g}"])
    res.tables.append(Table("Lazy-training metrics at the end of training", ["set", "m", "P", "Δw rel", "ΔΘ rel",
                            "net−lin", "net−flow Θ₀", "net−flow Θ∞", "loss"], rows,
                            note=f"lr: 1-D {s1.lr:.3g}, digits {sd.lr:.3g} (0.5/λ_max(Θ₀) of the widest net)."))
    res.numbers = {"slopes_1d": s1.slopes, "slopes_digits": sd.slopes, "lr_1d": s1.lr,
                   "lr_digits": sd.lr, "ntk_convergence_slope": conv.slope,
                   "widths_1d": WIDTHS["1d"][mode], "widths_digits": WIDTHS["digits"][mode],
                   "ensemble": {"n_nets": len(F), "width": bands.width, "steps": bands.steps,
                                "max_mean_z": z_mean, "std_ratio_median": float(np.median(std_ratio)),
                                "std_ratio_range": [float(std_ratio.min()), float(std_ratio.max())]},
                   "classifier": cl, "lazy_rich": rich}
    a, b = s1.runs[0], s1.runs[-1]
    sl1 = {k: fmt(v, "+.2f") for k, v in s1.slopes.items()}  # signed, never "-0.00"
    sld = {k: fmt(v, "+.2f") for k, v in sd.slopes.items()}
    res.findings = [
        f"1-D two-layer erf nets: the relative weight change falls with slope {sl1['weight_change']} "
        f"(theory −0.5), from {a.weight_change[-1]:.3g} at m={a.width} to {b.weight_change[-1]:.3g} at "
        f"m={b.width}.",
        f"The relative NTK change falls with slope {sl1['ntk_change']} and the RMS gap between the net "
        f"and its linearisation with slope {sl1['dist_net_lin']} ({a.dist_net_lin[-1]:.3g} → "
        f"{b.dist_net_lin[-1]:.3g}): "
        + ("both at least as fast as the m^(−1/2) of the theory's bound."
           if max(s1.slopes['ntk_change'], s1.slopes['dist_net_lin']) <= -0.45
           else "slower than the m^(−1/2) of the theory at these widths."),
        f"Against the infinite-width gradient flow (nets' Θ∞, same f₀) the gap falls with slope "
        f"{sl1.get('dist_net_inf', 'n/a')}{_bend(s1, 'dist_net_inf', 'dist_net_flow')}; the linearised net "
        f"and the empirical-Θ₀ flow differ only by time discretisation (RMS {b.dist_lin_flow:.2g} at m={b.width}).",
        f"Digits, three-layer ReLU: slopes Δw {sld['weight_change']}, ΔΘ "
        f"{sld['ntk_change']}, net−lin {sld['dist_net_lin']}. With m² weights in the "
        "middle layer ‖w₀‖ grows like m, so the relative weight change can fall faster than m^(−1/2); the NTK still "
        f"moves by {sd.runs[-1].ntk_change[-1]:.0%} at m={sd.runs[-1].width}: deeper ReLU nets need more "
        "width before they are lazy.",
        "The empirical NTK of nets' finite networks converges to the analytic NTK with slope "
        f"{fmt(conv.slope, '+.2f')} "
        f"(relative error {np.mean(conv.errors[0]):.3g} at m={conv.widths[0]}, "
        f"{np.mean(conv.errors[-1]):.3g} at m={conv.widths[-1]}).",
        f"Error bars: {len(F)} nets of width {bands.width} trained {bands.steps} steps from their own "
        f"initialisations scatter around the infinite ensemble's mean within {z_mean:.1f} standard errors at every "
        f"test point, and their spread is {np.median(std_ratio):.2f}× the ensemble's predicted σ(t) (median over x; "
        f"range {std_ratio.min():.2f}–{std_ratio.max():.2f}, sampling error ≈ ±{1 / np.sqrt(2 * (len(F) - 1)):.2f}): "
        "the Gaussian of Lee et al. (NNGP for the initial spread, NTK for the training) is the distribution of "
        "trained wide nets, not just their mean.",
        f"Cross-entropy: ten-class digit classifiers approach the infinite-width flow from their own f₀ with slope "
        f"{fmt(cl.gap_slope, '+.2f')} in the width (relative distance {cl.runs[0].gap:.3g} at "
        f"m={cl.runs[0].width}, {cl.runs[-1].gap:.3g} at m={cl.runs[-1].width}; the widest net "
        f"predicts the flow's class for {100 * cl.runs[-1].agree:.1f}% of the test images). The "
        f"infinite-width classifier has test accuracy {ce_test_T:.3f} after the nets' {cl.steps} steps (the "
        f"widest net {cl.runs[-1].test_accuracy:.3f}) and {cl.infinite_test_accuracy[-1]:.3f} at "
        f"t = {cl.times[-1]:.0e}, where its training accuracy is {cl.infinite_train_accuracy[-1]:.3f}; "
        f"squared-loss kernel regression with the same kernel: {cl.mse_kernel_test_accuracy:.3f}. The flow "
        f"to t = {cl.times[-1]:.0e} took {cl.solver['steps']} steps ({cl.solver['method']}).",
    ] + rich_findings
    return res


def _bend(sweep, key: str, own: str) -> str:
    """Words for a log-log curve that flattens at the wide end, where the fitted slope alone would mislead: the
    local slope between the two widest nets, and the same for the gap ``own`` to the net's own Θ₀ flow."""
    runs = sweep.runs
    if len(runs) < 3 or any(not getattr(r, k) or getattr(r, k) <= 0 for r in runs[-2:] for k in (key, own)):
        return ""
    a, b = runs[-2], runs[-1]
    local = lambda k: float(np.log(getattr(b, k) / getattr(a, k)) / np.log(b.width / a.width))  # noqa: E731
    if abs(local(key) - sweep.slopes.get(key, float("nan"))) <= 0.15:
        return ""
    return (f", but it bends at the wide end: from m={a.width} to m={b.width} it falls only from "
            f"{getattr(a, key):.3g} to {getattr(b, key):.3g} (local slope {fmt(local(key), '+.2f')}), while the gap "
            f"to the flow with the net's own Θ₀ falls with local slope {fmt(local(own), '+.2f')}: what is left is the "
            "difference between this one random net's Θ₀ and Θ∞ (one draw per width)")


def _lazy_rich(ctx: StepContext, mode: str, ntk: LazySweep, res: ChapterResult) -> tuple[dict, list[str]]:
    """Section 6: its figures and tables (appended to ``res``); returns its numbers and findings. ``ntk``: the
    chapter's NTK width sweep on the 1-D set, which μP's sweep repeats."""
    from ..experiments.lazy import alpha_study, curvature_sweep, lazy_sweep
    from ..plots import lazy as PL
    from ..plots import new_figure

    al = alpha_study(seed=ctx.seed, checkpoint=ctx.checkpoint, track=ctx.track, **ALPHA[mode])
    mup = lazy_sweep("1d", WIDTHS["1d"][mode], steps=ntk.steps, seed=ctx.seed, checkpoint=ctx.checkpoint,
                     track=ctx.track, parameterization="mup").sweep
    curv = curvature_sweep(seed=ctx.seed, checkpoint=ctx.checkpoint, track=ctx.track, **CURVATURE[mode])
    sw = al.sweep

    fig = new_figure((16.5, 4.6))
    axes = fig.subplots(1, 3)
    PL.plot_alpha_sweep(al, ax=axes[0])
    PL.plot_alpha_errors(al, ax=axes[1])
    PL.plot_alpha_functions(al, 0, ax=axes[2])
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "alpha.png",
                                   f"One two-layer erf net (m = {al.width}) on the 1-D set, centred and scaled, "
                                   f"f = α·(g(w) − g(w₀)), and its linearisation, each trained {sw.steps} "
                                   "gradient-descent steps on L/α² with one step size. Left: what moves, against α "
                                   "(dotted: the lines fitted over α ≥ 1). Middle: the test errors of the net and "
                                   "of its linearisation. Right: the functions at the smallest α, "
                                   f"{sw.runs[0].alpha:g}."))
    fig = new_figure((16.5, 4.6))
    axes = fig.subplots(1, 3)
    PL.plot_parameterizations(ntk, mup, ax=axes[0])
    PL.plot_width_errors(ntk, mup, ax=axes[1])
    PL.plot_curvature_ratio(curv, ax=axes[2])
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "parameterizations.png",
                                   "The same widths and steps in the NTK parameterisation and in μP (mean field). "
                                   "Left: relative change of the weights and of the NTK (dotted: fitted lines). "
                                   "Middle: test errors of the nets and of their linearisations (the NTK nets keep "
                                   "their random initial function f₀, of the same size at every width; μP's shrinks "
                                   "like m^(−1/2)). Right: the ratio "
                                   "‖∇²f(x)‖/‖∇f(x)‖² at initialisation (Hessian operator norm by Lanczos on "
                                   "Hessian-vector products), one dot per input."))
    res.tables.append(Table(f"Lazy ↔ rich: one net (m = {al.width}) at output scales α, {sw.steps} steps, "
                            f"η = {sw.lr:.3g} on L/α²",
                            ["α", "Δw rel", "ΔΘ rel", "net−lin (test)", "test error net", "test error lin",
                             "loss net", "loss lin"],
                            [[f"{r.alpha:g}", f"{r.weight_change[-1]:.3g}", f"{r.ntk_change[-1]:.3g}",
                              f"{r.dist_net_lin[-1]:.3g}", f"{r.test_error_net[-1]:.3g}",
                              f"{r.test_error_lin[-1]:.3g}", f"{r.loss_net[-1]:.3g}", f"{r.loss_lin[-1]:.3g}"]
                             for r in sw.runs]))
    res.tables.append(Table(f"NTK parameterisation against μP, 1-D set, {ntk.steps} steps",
                            ["parameterisation", "m", "Δw rel", "ΔΘ rel", "net−lin", "net−flow Θ∞",
                             "test error net", "test error lin", "‖∇²f‖/‖∇f‖² at w₀"],
                            [[name, r.width, f"{r.weight_change[-1]:.3g}", f"{r.ntk_change[-1]:.3g}",
                              f"{r.dist_net_lin[-1]:.3g}", f"{r.dist_net_inf:.3g}", f"{r.test_error_net[-1]:.3g}",
                              f"{r.test_error_lin[-1]:.3g}",
                              f"{curv.ratio[key][curv.widths.index(r.width)].mean():.3g}"
                              if r.width in curv.widths and key in curv.ratio else ""]
                             for name, key, sweep in (("NTK", "ntk", ntk), ("μP", "mup", mup))
                             for r in sweep.runs]))

    lo, hi = sw.runs[0], sw.runs[-1]
    slp = {k: fmt(v, "+.2f") for k, v in sw.slopes.items()}
    a_fit = [r.alpha for r in sw.runs if r.alpha >= 1]
    n, u = ntk.runs[-1], mup.runs[-1]
    sn = {k: fmt(v, "+.2f") for k, v in ntk.slopes.items()}
    su = {k: fmt(v, "+.2f") for k, v in mup.slopes.items()}
    relu_err = float(np.max(np.abs(curv.hessian_norm["ntk_relu"] / curv.hessian_exact - 1)))
    gap = lambda r: r.test_error_net[-1] - r.test_error_lin[-1]  # noqa: E731
    where = f"mean over {curv.X.shape[0]} inputs" if curv.X.shape[0] > 1 else "at one input"
    lin_losses = np.array([r.loss_lin[-1] for r in sw.runs])
    lin_spread = float(np.ptp(lin_losses) / lin_losses.mean())
    findings = [
        f"Output scale, one net of width {al.width}: from α = {a_fit[0]:g} to {a_fit[-1]:g} the relative weight "
        f"change falls with slope {slp['weight_change']}, the relative NTK change with slope {slp['ntk_change']} "
        f"and the test-set gap between the net and its linearisation with slope {slp['dist_net_lin']} (theory −1 "
        f"for all three). At α = {lo.alpha:g} the weights moved by {lo.weight_change[-1]:.3g} of their size and "
        f"the NTK by {lo.ntk_change[-1]:.3g}; at α = {hi.alpha:g} by {hi.weight_change[-1]:.2g} and "
        f"{hi.ntk_change[-1]:.2g}.",
        f"Where the linear model stops describing the net: at α = {hi.alpha:g} the test errors of the net and of its "
        f"linearisation are {hi.test_error_net[-1]:.4f} and {hi.test_error_lin[-1]:.4f} (they differ by "
        f"{abs(gap(hi)):.1e}); at α = {lo.alpha:g} they are {lo.test_error_net[-1]:.3f} and "
        f"{lo.test_error_lin[-1]:.3f}, and the net's training loss is {lo.loss_net[-1]:.3g} against the "
        f"linearisation's {lo.loss_lin[-1]:.3g}. The linearisation's loss is the same for every α to a relative "
        f"{lin_spread:.0e}: its steps in function space do not depend on α.",
        f"Parameterisation, widths {ntk.runs[0].width}–{n.width} with the same step size: in the NTK "
        f"parameterisation the relative weight change falls with slope {sn['weight_change']} and the NTK change "
        f"with slope {sn['ntk_change']}; in μP the slopes are {su['weight_change']} and {su['ntk_change']}: at "
        f"m = {u.width} μP's weights moved by {u.weight_change[-1]:.3g} of their size and its NTK by "
        f"{u.ntk_change[-1]:.3g}, against {n.weight_change[-1]:.3g} and {n.ntk_change[-1]:.3g} for the NTK net. "
        f"The widest μP net ends {u.dist_net_inf:.3g} (RMS) from the infinite-width NTK flow, the NTK net "
        f"{n.dist_net_inf:.3g}.",
        f"Test errors at m = {n.width}: NTK net {n.test_error_net[-1]:.3f}, its linearisation "
        f"{n.test_error_lin[-1]:.3f}; μP net {u.test_error_net[-1]:.3f}, its linearisation "
        f"{u.test_error_lin[-1]:.3f} (training losses: μP net {u.loss_net[-1]:.3g}, linearisation "
        f"{u.loss_lin[-1]:.3g}).",
        f"Curvature against slope at initialisation, ‖∇²f‖/‖∇f‖² ({where}), widths "
        f"{curv.widths[0]}–{curv.widths[-1]}: slope {fmt(curv.slopes['ntk'], '+.2f')} for the NTK erf net, "
        f"{fmt(curv.slopes['ntk_relu'], '+.2f')} for the NTK ReLU net (theory −½; for ReLU Lanczos gives the "
        f"closed-form Hessian norm to {relu_err:.0e}) and {fmt(curv.slopes['mup'], '+.2f')} for μP (theory 0), "
        f"after {curv.n_hvp} Hessian-vector products in all. The erf nets sit a little above the theory in both "
        "parameterisations: their Hessian also holds the terms b_i·σ″(z_i), whose largest over m units grows like "
        "√(log m); ReLU has none (σ″ = 0).",
    ]
    return {"alpha": {"width": al.width, "steps": sw.steps, "lr": sw.lr, "slopes": sw.slopes,
                      "alphas": [r.alpha for r in sw.runs],
                      "weight_change": [r.weight_change[-1] for r in sw.runs],
                      "ntk_change": [r.ntk_change[-1] for r in sw.runs],
                      "dist_net_lin": [r.dist_net_lin[-1] for r in sw.runs],
                      "test_error_net": [r.test_error_net[-1] for r in sw.runs],
                      "test_error_lin": [r.test_error_lin[-1] for r in sw.runs]},
            "slopes_ntk": ntk.slopes, "slopes_mup": mup.slopes,
            "test_error": {name: {"widths": [r.width for r in sw_.runs],
                                  "net": [r.test_error_net[-1] for r in sw_.runs],
                                  "lin": [r.test_error_lin[-1] for r in sw_.runs]}
                           for name, sw_ in (("ntk", ntk), ("mup", mup))},
            "curvature": {"widths": curv.widths, "slopes": curv.slopes,
                          "mean_ratio": {k: v.mean(1).tolist() for k, v in curv.ratio.items()},
                          "relu_hessian_rel_error": relu_err, "n_hvp": curv.n_hvp}}, findings


CHAPTER = Chapter(key="lazy", order=40, title="5. The neural tangent kernel and lazy training", intro=INTRO,
                  run=_run, seconds=120)
