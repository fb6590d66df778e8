"""Chapter 5: every model trained by gradient descent is a kernel machine (THEORY.md §6, Domingos 2020).

1. a two-layer tanh net fitted to the 1-D set by gradient descent, rewritten as ``Σ a_i K(x, x_i) + b``: exact per
   step (Gauss–Legendre) and Domingos' left-endpoint sum;
2. the left-endpoint error against the step size at fixed training time (first order);
3. a digits classifier (cross-entropy, mini-batches): which training images make each prediction;
4. the path kernel against T·Θ₀ and T·Θ_T for a narrow and a wide net;
5. the Adam-trained spiral net of chapter 7 as a kernel machine, and Domingos' critiques measured: coefficients
   that depend on x, kernels that depend on the path, and the distance to the tangent kernels.
"""

from __future__ import annotations

import numpy as np

from ..experiments.pathkernel import (
    agreement_1d,
    digits_explained,
    domingos_critiques,
    narrow_vs_wide,
    pathkernel_1d_problem,
    step_size_study_1d,
)
from ..story import Chapter, ChapterResult, StepContext, Table

__all__ = ["CHAPTER"]

INTRO = """
<p>Domingos (2020) observed that <em>any</em> model trained by gradient descent is a kernel machine. Each step
moves the weights by <code>Δw<sub>s</sub> = −η Σ<sub>i</sub> ℓ'<sub>i,s</sub> ∇f(x<sub>i</sub>; w<sub>s</sub>)</code>,
so the output at a new point changes by <code>∫₀¹ ∇f(x; w<sub>s</sub> + τΔw<sub>s</sub>) dτ · Δw<sub>s</sub> =
−η Σ<sub>i</sub> ℓ'<sub>i,s</sub> k<sub>s</sub>(x, x<sub>i</sub>)</code>. Summed over the path,
<code>f(x) = Σ<sub>i</sub> a<sub>i</sub> K(x, x<sub>i</sub>) + b</code> with the <strong>path kernel</strong>
<code>K = η Σ<sub>s</sub> k<sub>s</sub></code>, <code>b = f₀(x)</code> and a<sub>i</sub> the kernel-weighted path
average of −ℓ'. Integrating each step's segment with Gauss–Legendre quadrature makes the identity exact to
rounding; Domingos' left-endpoint sum (the tangent kernel at the start of each step) is first order in η.</p>
<p>Keep the critiques in view: the "coefficients" a<sub>i</sub> depend on x, and the kernel depends on the whole
training path — it is the training that chooses the kernel. For a wide (lazy) net the path kernel is just T·Θ₀;
for a narrow one it is not, and that difference is feature learning.</p>
<p>The identity is not tied to plain gradient descent. With momentum or Adam a step is still linear in the
per-example gradients of <em>past</em> steps, <code>Δw<sub>s</sub> = −η P<sub>s</sub> Σ<sub>r≤s</sub>
c<sub>s,r</sub> Σ<sub>i</sub> ℓ'<sub>i,r</sub> ∇f(x<sub>i</sub>; w<sub>r</sub>)</code> (c the momentum or Adam
averaging weights, P<sub>s</sub> Adam's diagonal preconditioner), so the kernel becomes a preconditioned,
history-weighted path kernel and weight decay adds a part that belongs to no training point. The last section
rewrites the Adam-trained spiral net of chapter 7 this way and measures the critiques.</p>
"""

def _run(ctx: StepContext) -> ChapterResult:
    from ..plots import dynamics as P
    from ..plots import new_figure

    q = ctx.quick
    res = ChapterResult()
    X, y, Xs = pathkernel_1d_problem(ctx.seed)

    # 1. the trained net as a kernel machine, exact and left-endpoint
    agree = agreement_1d(ctx.seed, 60 if q else 300, track=ctx.track)
    exact, left, lr, steps = agree.exact, agree.left, agree.lr, agree.steps
    fig = new_figure((11, 4.2))
    axes = fig.subplots(1, 2)
    P.plot_path_agreement(exact, Xs, ax=axes[0])
    P.plot_path_agreement(left, Xs, ax=axes[1])
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "agreement.png", f"Two-layer tanh net (m=256) after {steps} steps of "
                                   "gradient descent on 20 points, and Σ a_i K(x, x_i) + b: exact per-step "
                                   "quadrature (left) and Domingos' left-endpoint sum (right)."))

    # 2. left-endpoint error against the step size at fixed T
    study = ctx.checkpoint("step_size", lambda: step_size_study_1d(
        ctx.seed, [20, 40, 80, 160] if q else [20, 40, 80, 160, 320, 640]))
    ax = P.plot_step_error(study)
    res.figures.append(ctx.savefig(ax.figure, "step_error.png", "Error of the kernel machine at fixed training time "
                                   "T as the step size shrinks: Domingos' left-endpoint sum is first order, the "
                                   "per-step Gauss–Legendre version exact to rounding."))

    # 3. a digits classifier explained by its training points
    dig = digits_explained(ctx.seed, n_train=120 if q else 200, n_test=30, classes=5 if q else 10,
                           steps=40 if q else 100, batch_size=30 if q else 50, k=5, track=ctx.track)
    cls, acc, share_same = dig.result, dig.accuracy, dig.share_same
    axes = P.plot_explanations(cls, dig.X_train, dig.X_test, indices=[0, 1, 2, 3], k=dig.k,
                               labels_train=dig.labels_train, labels_test=dig.labels_test)
    res.figures.append(ctx.savefig(axes[0, 0].figure, "explanations.png", "Digits classifier (cross-entropy, "
                                   "mini-batch SGD) as a kernel machine: for four test images, the five training "
                                   "images with the largest contribution a_i K(x, x_i) to the predicted class score."))

    # 4. narrow vs wide: path kernel vs T·Θ₀ and T·Θ_T (left-endpoint sums: the comparison needs no 1e-15)
    nvw = narrow_vs_wide(ctx.seed, lr=lr, steps=200 if q else 600, widths=(4, 1024))
    names = {m: f"{kind} m={m}" for kind, m in zip(("narrow", "wide"), nvw.widths)}
    dist = {names[m]: nvw.distances[m] for m in nvw.widths}
    fig = new_figure((10.5, 4.6))
    axes = fig.subplots(1, 2)
    for ax, m in zip(axes, nvw.widths):
        r = nvw.results[m]
        P.plot_kernel_comparison(r, nvw.distances[m], ax=ax, label=f"{names[m]}, {nvw.steps} steps (T = {r.T:.3g})")
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "kernel_vs_ntk.png", "Path kernel K(x, x_i) against T·Θ₀ (dots) and "
                                   "T·Θ_T (crosses): on the diagonal for the wide net (lazy), off it for the narrow "
                                   "one, whose tangent kernel moved during training."))

    # 5. the Adam-trained spiral net as a kernel machine; Domingos' critiques measured
    dom = domingos_critiques(ctx.seed, q, ctx.track)
    crit, sk, runs = dom.critiques, dom.spiral, dom.runs_1d
    fig = new_figure((14, 5.6), layout="constrained")
    axes = fig.subplots(1, 3)
    e = crit.explained[1]
    P.plot_spiral_explanation(sk.X_train, sk.y_train, sk.X_test[e.index],
                              np.asarray(sk.result.contributions)[e.index, :, e.predicted], e.predicted, ax=axes[0])
    Xtr = np.asarray(X).ravel()
    picks = [int(np.argmin(np.abs(Xtr - v))) for v in (-0.8, 0.0, 0.8)]
    P.plot_coefficients_vs_x(runs["adam"], Xs[::2], X, picks, ax=axes[1])
    P.plot_coefficients_vs_x(runs["sgd"], Xs[::2], X, picks, ax=axes[2])
    res.figures.append(ctx.savefig(fig, "critiques.png", "Left: the spiral net of chapter 7 (ReLU, trained by "
                                   "Adam with weight decay) as a kernel machine - the twelve training points with "
                                   "the largest contributions a_i K(x, x_i) to the predicted class at one test point "
                                   "(★), ringed black when they push that class's score up and magenta (dashed) "
                                   "when they push it down, the ring's area ∝ the size of the contribution. "
                                   "Middle and right: the 'coefficients' a_i(x) of three training points of the "
                                   "1-D problem across the test inputs, for Adam and for SGD: not constants (the "
                                   "spikes are where K(x, x_i) crosses zero and a_i = C/K is ill-defined)."))
    pd_rows = [[opt, f"{v.function_distance:.2g}", f"{v.kernel_distance:.2g}",
                f"{v.contribution_distance:.2g}", f"{crit.spread_1d[opt]:.2g}",
                f"{crit.distance_1d[opt].shape_vs_theta0:.2g}", f"{crit.distance_1d[opt].shape_vs_thetaT:.2g}"]
               for opt, v in crit.path.items()]
    sd = crit.spiral_distance
    pd_rows.append(["spiral net, Adam", "", "", "", f"{crit.spiral_spread:.2g}", f"{sd.shape_vs_theta0:.2g}",
                    f"{sd.shape_vs_thetaT:.2g}"])
    res.tables.append(Table("Domingos' critiques, measured", ["run", "function distance (two data orders)",
                            "kernel distance", "contribution distance", "spread of a_i(x)", "K vs Θ₀ (up to scale)",
                            "K vs Θ_T (up to scale)"], pd_rows))
    res.tables.append(Table("Which layers carry the spiral net's prediction", ["layer", "share of f_T − f₀",
                            "share of the path kernel"], [[k, f"{v['prediction']:.2f}", f"{v['kernel']:.2f}"]
                                                          for k, v in crit.spiral_layers.items()]))
    res.tables.append(Table("Path kernel vs tangent kernels", ["net", "‖K − TΘ₀‖/‖K‖", "‖K − TΘ_T‖/‖K‖", "T"],
                            [[k, f"{v.vs_T_theta0:.3g}", f"{v.vs_T_thetaT:.3g}", f"{v.T:.3g}"]
                             for k, v in dist.items()]))
    res.tables.append(Table("Left-endpoint error against step size (fixed T)", ["steps", "η", "left-endpoint",
                            "exact"], [[s, f"{a:.3g}", f"{b:.3g}", f"{c:.2g}"] for s, a, b, c in
                                       zip(study.steps, study.lr, study.left_endpoint, study.exact)]))
    res.numbers = {"exact_rel_error": exact.rel_error, "left_rel_error": left.rel_error, "lr": lr, "steps": steps,
                   "step_study": study, "classifier_rel_error": cls.rel_error, "classifier_test_accuracy": acc,
                   "top5_share_predicted_class": share_same,
                   "kernel_distance": dist, "critiques": crit}
    nw, ww = dist["narrow m=4"], dist["wide m=1024"]
    res.findings = [
        f"Exact per-step quadrature reproduces the trained net: relative error {exact.rel_error:.1e} over "
        f"{steps} steps (target ≤ 1e-9); Domingos' left-endpoint sum is off by {left.rel_error:.1e}.",
        f"At fixed training time T the left-endpoint error falls as the step size shrinks "
        f"({study.left_endpoint[0]:.2g} "
        f"at η={study.lr[0]:.3g}, {study.left_endpoint[-1]:.2g} at η={study.lr[-1]:.3g}): fitted log-log slope "
        f"{study.slope:.2f}, {study.slope_smallest:.2f} between the two smallest steps (first order: slope 1 "
        f"as η → 0; larger steps add higher-order terms). The exact version stays at {max(study.exact):.1e} or below.",
        f"The digits classifier (cross-entropy, mini-batches of {dig.batch_size}, {cls.steps_done} steps, test "
        f"accuracy {acc:.2f} on {len(dig.labels_test)} images) is a kernel machine over its {len(dig.labels_train)} "
        f"training images to "
        f"{cls.rel_error:.1e}; {100 * share_same:.0f}% of the five most influential training images of a prediction "
        "belong to the predicted class.",
        f"Wide net (m=1024): the path kernel is within {ww.vs_T_theta0:.2g} of T·Θ₀ and {ww.vs_T_thetaT:.2g} of "
        f"T·Θ_T (lazy: one kernel all along); narrow net (m=4): {nw.vs_T_theta0:.2g} from T·Θ₀ and "
        f"{nw.vs_T_thetaT:.2g} from T·Θ_T — its kernel is an average over the whole path.",
        f"The spiral net of chapter 7 ({sk.config['width']} ReLU units, Adam with weight decay "
        f"{sk.config['weight_decay']:g}, {sk.result.steps_done} steps, test accuracy {crit.spiral_accuracy:.2f}) is "
        f"a kernel machine over its {len(sk.y_train)} training points to {crit.spiral_rel_error:.1e} (ReLU kinks "
        f"crossed inside steps; tanh nets reach 1e-15 with Adam too); the weight-decay part is "
        f"{100 * crit.spiral_decay_share:.1f}% of what was learned. Of the 12 most influential training points of "
        f"the explained predictions, {100 * np.mean([e.same_class for e in crit.explained]):.0f}% belong to the "
        "predicted class.",
        f"The coefficients are not constants: a_i(x) varies across the test points by {crit.spiral_spread:.2f} of its "
        f"size (median std/rms) for the spiral net, {crit.spread_1d['adam']:.2f} (Adam) and "
        f"{crit.spread_1d['sgd']:.2f} (SGD) on the 1-D problem.",
        f"The kernel depends on the path: two data orders give functions {crit.path['adam'].function_distance:.2g} "
        f"apart (relative to what was learned) through Adam path kernels {crit.path['adam'].kernel_distance:.2g} "
        f"apart, and training-point explanations {crit.path['adam'].contribution_distance:.2g} apart (SGD: "
        f"{crit.path['sgd'].function_distance:.2g}, {crit.path['sgd'].kernel_distance:.2g}, "
        f"{crit.path['sgd'].contribution_distance:.2g}).",
        f"Adam's path kernel of the spiral net is {sd.shape_vs_theta0:.2g} from the initial NTK and "
        f"{sd.shape_vs_thetaT:.2g} from the final one (up to scale): it is neither, but closer to the kernel the "
        "training ended with.",
    ]
    return res


CHAPTER = Chapter(key="pathkernel", order=50, title="6. Every trained model is a kernel machine: the path kernel",
                  intro=INTRO, run=_run, threads=1, seconds=35)
