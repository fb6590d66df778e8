"""Chapter 5: every model trained by gradient descent is a kernel machine (THEORY.md §6, Domingos 2020).

1. a two-layer tanh net fitted to the 1-D set by gradient descent, rewritten as ``Σ a_i K(x, x_i) + b``: exact per
   step (Gauss–Legendre) and Domingos' left-endpoint sum;
2. the left-endpoint error against the step size at fixed training time (first order);
3. a digits classifier (cross-entropy, mini-batches): which training images make each prediction;
4. the path kernel against T·Θ₀ and T·Θ_T for a narrow and a wide net;
5. the Adam-trained spiral net of chapter 7 as a kernel machine, and Domingos' critiques measured: coefficients
   that depend on x, kernels that depend on the path, and the distance to the tangent kernels;
6. Domingos' kernel examined as a kernel: symmetry and spectrum on train × train, reused in kernel ridge and an
   SVM, the vacuity of x-dependent coefficients, attributions against leave-one-out retraining, and the tangent
   kernel's path Θ_t.
"""

from __future__ import annotations

import numpy as np

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
<p>Is the path kernel a kernel at all? The last section evaluates it on the training points themselves (N × N)
and asks what a kernel has to be - symmetric, positive semi-definite - then uses it the way kernels are used: in
kernel ridge regression and a support-vector machine with one coefficient per training point, against the net and
against the tangent kernels Θ₀ and Θ_T. It shows the "vacuity" behind the critiques (with coefficients allowed to
depend on x, <em>any</em> function is a "kernel machine" over <em>any</em> kernel), checks the attributions
a<sub>i</sub>K(x, x<sub>i</sub>) against retraining without x<sub>i</sub>, and follows the tangent kernel Θ<sub>t</sub>
along training, whose time integral the path kernel is.</p>
"""

def _run(ctx: StepContext) -> ChapterResult:
    from ..experiments.pathkernel import (
        agreement_1d,
        digits_explained,
        domingos_critiques,
        narrow_vs_wide,
        pathkernel_1d_problem,
        step_size_study_1d,
    )
    from ..plots import dynamics as P
    from ..plots import new_figure

    q = ctx.quick
    res = ChapterResult()
    X, y, Xs = pathkernel_1d_problem(ctx.seed)

    # 1. the trained net as a kernel machine, exact and left-endpoint
    agree = agreement_1d(ctx.seed, 60 if q else 300, with_train=True, track=ctx.track)
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
    # quick: the same step sizes over half the training time T
    study = ctx.checkpoint("step_size", lambda: step_size_study_1d(
        ctx.seed, [10, 20, 40, 80] if q else [20, 40, 80, 160, 320, 640], stable_steps=20 if q else 40))
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
    nvw = narrow_vs_wide(ctx.seed, lr=lr, steps=120 if q else 600, widths=(4, 1024))
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
    dom = domingos_critiques(ctx.seed, q, ctx.track, with_train=True)
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
    examined = _examine(ctx, agree, sk, res)
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
    ] + examined
    return res


def _examine(ctx: StepContext, agree, sk, res: ChapterResult) -> list[str]:
    """Section 6: Domingos' kernel examined as a kernel (figures, tables, numbers; returns the findings)."""
    from ..experiments.pathkernel import examine_1d, examine_spiral
    from ..plots import new_figure
    from ..plots import pathkernel as PP

    k1 = examine_1d(agree, track=ctx.track)
    ks = examine_spiral(sk)
    fig = new_figure((16, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    PP.plot_leave_one_out(k1.loo, ax=axes[0])
    PP.plot_kernel_path(ks.path, axes=axes[1:])
    res.figures.append(ctx.savefig(fig, "kernel_examined.png", "Left: for the 1-D net, Domingos' attribution "
                                   "a_i K(x, x_i) of every training point at every test point against the change of "
                                   "f(x) when the net is retrained without x_i (same initial weights, step size and "
                                   "steps). Middle and right: the spiral net's tangent kernel Θ_t on train × train "
                                   "(trace over the outputs) along Adam training - its alignment with the labels "
                                   "(dashed: the path kernel's) and its distance to Θ₀, relative and up to scale."))
    gram_rows = [[f"1-D net (SGD): {k}", g.n, f"{g.asymmetry:.1e}", f"{g.rel_eig_min:.1e}", g.negative]
                 for k, g in k1.grams.items()]
    gram_rows += [[f"spiral net (Adam): {k}", g.n, f"{g.asymmetry:.1e}", f"{g.rel_eig_min:.1e}", g.negative]
                  for k, g in ks.grams.items()]
    res.tables.append(Table("The path kernel as a kernel (train × train)",
                            ["kernel", "size", "‖K − Kᵀ‖/‖K‖", "λ_min/λ_max of (K + Kᵀ)/2",
                             "eigenvalues below −rounding"], gram_rows,
                            note="A kernel's Gram matrix is symmetric and positive semi-definite. Rounding: "
                                 "n · eps · |λ_max|."))
    net_row = lambda r: r.kernel == "network"  # noqa: E731
    reuse_rows = [["1-D net", r.kernel, r.method, "" if net_row(r) else f"{r.param:.2g}", f"{r.train:.3f}",
                   "" if net_row(r) else f"{r.held_out:.3f}", f"{r.test:.3f}",
                   "" if net_row(r) else f"{r.agreement:.3f}"] for r in k1.reuse]
    reuse_rows += [["spiral net", r.kernel, r.method, "" if net_row(r) else f"{r.param:.2g}", f"{r.train:.1%}",
                    "" if net_row(r) else f"{r.held_out:.1%}", f"{r.test:.1%}",
                    "" if net_row(r) else f"{r.agreement:.1%}"] for r in ks.reuse]
    res.tables.append(Table("The same kernel in a true kernel machine (one coefficient per training point)",
                            ["problem", "kernel", "machine", "λ or C", "train", "held out (train points)", "test",
                             "agreement with the net"], reuse_rows,
                            note="1-D: RMS errors (training targets; the noise-free sin on the 60-point test grid), "
                                 "kernel ridge on y − f₀ with the offset f₀(x); agreement = RMS distance to the "
                                 "net's function. Spiral: accuracies, "
                                 f"{ks.n_test} test points, kernels traced over the outputs, symmetric part, "
                                 "divided by the mean diagonal; SVM with C by 5-fold cross-validation, kernel ridge "
                                 "on centred one-hot labels; agreement = share of the net's test predictions. The "
                                 "ridge λ (relative to the mean diagonal) and C are chosen on the training points: "
                                 "λ by leave-one-out (closed form), C by 5-fold cross-validation; 'held out' is that "
                                 "error or accuracy at the chosen value (slightly optimistic)."))
    v = k1.vacuity
    res.tables.append(Table("Any function is a 'kernel machine' once a_i may depend on x (1-D test grid)",
                            ["function g", "kernel", "x-dependent a_i(x): error", "constant a_i: error"],
                            [[f, k, f"{v.x_dependent[i, j]:.1e}", f"{v.constant[i, j]:.2g}"]
                             for i, f in enumerate(v.functions) for j, k in enumerate(v.kernels)],
                            note="a_i(x) = (g(x) − b(x)) k(x, x_i) / Σ_j k(x, x_j)² reproduces g exactly; constant "
                                 "coefficients: least squares over the 60 test points (20 unknowns). Errors relative "
                                 "to ‖g − b‖, b = f₀."))
    res.numbers["kernel_examined"] = {"one_d": {"grams": k1.grams, "reuse": k1.reuse, "vacuity": v,
                                                "loo": {"median_spearman": k1.loo.median_spearman,
                                                        "pearson": k1.loo.pearson, "top_match": k1.loo.top_match,
                                                        "slope": k1.loo.slope}},
                                      "spiral": {"grams": ks.grams, "reuse": ks.reuse, "path": ks.path,
                                                 "n_test": ks.n_test}}
    g_ex, g_left = k1.grams["path kernel (exact)"], k1.grams["path kernel (left-endpoint)"]
    g_blk, g_tr = ks.grams["path kernel (O×O blocks)"], ks.grams["path kernel (trace)"]
    net1, rows1 = k1.reuse[0], {r.kernel: r for r in k1.reuse[1:]}
    net2 = ks.reuse[0]
    svm = {r.kernel: r for r in ks.reuse if r.method == "SVM"}
    krr = {r.kernel: r for r in ks.reuse if r.method == "kernel ridge"}
    p = ks.path
    peak = int(np.argmax(p.alignment))
    rho = k1.loo.median_spearman
    lo, hi = (f"{f(r.agreement for r in rows1.values()):.2f}" for f in (min, max))
    span = lo if lo == hi else f"{lo}–{hi}"
    psd = g_left.negative == 0 and g_left.asymmetry < 1e-12
    agrees = "agrees" if rho >= 0.7 else ("agrees only partly" if rho >= 0.3 else "does not agree")
    return [
        f"On train × train the 1-D net's left-endpoint path kernel (a sum of Gram matrices) is "
        f"{'a kernel to rounding' if psd else 'not a kernel here'} (asymmetry {g_left.asymmetry:.1e}, λ_min/λ_max "
        f"{g_left.rel_eig_min:.1e}); "
        f"exact quadrature pairs the segment average at x with the left endpoint at x_i, so it is symmetric only to "
        f"O(η) ({g_ex.asymmetry:.1e}). Adam's path kernel of the spiral net is not symmetric "
        f"({g_blk.asymmetry:.1e} for the {g_blk.n}×{g_blk.n} output blocks, {g_tr.asymmetry:.1e} traced) and its "
        f"symmetric part has {g_blk.negative} eigenvalue{'' if g_blk.negative == 1 else 's'} below rounding (the "
        f"smallest {g_blk.rel_eig_min:.1e} of the largest): the preconditioner and the momentum pair gradients of "
        "different steps.",
        f"Used as a kernel - kernel ridge with one coefficient per training point - the 1-D net's path kernel, Θ₀ "
        f"and Θ_T reach test RMS {rows1['path kernel'].test:.3f}, {rows1['Θ₀'].test:.3f} and "
        f"{rows1['Θ_T'].test:.3f} against the noise-free target (leave-one-out "
        f"{rows1['path kernel'].held_out:.3f}, {rows1['Θ₀'].held_out:.3f}, {rows1['Θ_T'].held_out:.3f}), "
        f"{span} RMS from "
        f"the net itself (test RMS {net1.test:.3f}), which stopped after {agree.steps} steps while kernel ridge is "
        f"solved to the end. On the spiral the net scores {net2.test:.1%} on {ks.n_test} test points; SVMs with its "
        f"path kernel, Θ₀ and Θ_T {svm['path kernel'].test:.1%}, {svm['Θ₀'].test:.1%}, {svm['Θ_T'].test:.1%} "
        f"(5-fold cross-validation on the {len(sk.y_train)} training points: {svm['path kernel'].held_out:.1%}, "
        f"{svm['Θ₀'].held_out:.1%}, {svm['Θ_T'].held_out:.1%}); kernel ridge {krr['path kernel'].test:.1%}, "
        f"{krr['Θ₀'].test:.1%}, {krr['Θ_T'].test:.1%} (leave-one-out {krr['path kernel'].held_out:.1%}, "
        f"{krr['Θ₀'].held_out:.1%}, {krr['Θ_T'].held_out:.1%}). The machines with the path kernel make the net's "
        f"own prediction on {svm['path kernel'].agreement:.0%} (SVM) and {krr['path kernel'].agreement:.0%} "
        "(kernel ridge) of the test points.",
        f"The vacuity, measured: with coefficients a_i(x) that may depend on x, the trained net, cos(4x) (never "
        f"trained on) and Gaussian noise are each reproduced over the path kernel, Θ₀ and an unrelated RBF kernel to "
        f"{v.x_dependent.max():.0e} or better. With constant coefficients - a true kernel machine - the net is "
        f"reproduced over its path kernel to {v.constant[0, 0]:.1e} and over the RBF kernel to "
        f"{v.constant[0, 2]:.1e}, the noise only to {v.constant[2, 0]:.2f}: what the theorem says about a model is in "
        "the kernel and in whether the coefficients can be constants, not in the form Σ a_i K(x, x_i) + b.",
        f"Attributions against retraining: at each test point the ranking of the training points by a_i K(x, x_i) "
        f"{agrees} with the ranking by the change when the net "
        f"is retrained without each point (Spearman median {k1.loo.median_spearman:.2f} over "
        f"the test grid, Pearson {k1.loo.pearson:.2f} over all pairs; the most influential point is the same in "
        f"{k1.loo.top_match:.0%} of the test points); retraining without x_i changes f by "
        f"{k1.loo.slope:.2g} × its attribution (least squares)"
        + (": without one point, the others take over most of what it contributed." if k1.loo.slope < 0.5 else "."),
        f"The tangent kernel moves along the path: for the spiral net its alignment with the labels goes "
        f"{p.alignment[0]:.3f} → {p.alignment[peak]:.3f} (step {p.steps[peak]}) → {p.alignment[-1]:.3f} at the end, "
        f"it ends {p.distance[-1]:.3g} × ‖Θ₀‖ away from Θ₀ ({p.shape_distance[-1]:.2f} up to scale), and the path "
        f"kernel, its time average, has alignment {p.alignment_path:.3f}.",
    ]


CHAPTER = Chapter(key="pathkernel", order=50, title="6. Every trained model is a kernel machine: the path kernel",
                  intro=INTRO, run=_run, threads=1, seconds=40)
