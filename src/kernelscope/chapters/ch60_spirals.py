"""Chapter "spirals": learning the feature vector, and where the kernel picture stops (THEORY.md section 7)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..story import Chapter, ChapterResult, StepContext, Table, fmt

INTRO = """
<p>A network is a <em>feature extractor</em> followed by a <em>linear classifier</em>: scores <code>s = W e(x)</code>,
softmax, cross-entropy, prediction <code>argmax<sub>k</sub> s<sub>k</sub></code>. K interleaved spiral arms are not
linearly separable in the plane, so the lecture's network <code>2 &rarr; 100 (ReLU) &rarr; 2 (embedding) &rarr; K</code>
has to <em>learn</em> a feature map that un-warps them. Its embedding is 2-D so we can watch it: starting from small
weights it is collapsed at 0, grows, then rotates the centre one way and the outside the other until the arms are
linearly separable; the arrows are the class vectors (rows of W) and the colours behind the points are the
classifier's argmax regions.</p>
<p>The lecture's pictures are also numbers here: how evenly the class vectors spread, the phases of training (a
near-linear map of the plane first, then the centre and the outside turning opposite ways), weight norms towards
the head, each layer split into rotation · scaling · rotation + bias + activation (its singular value
decomposition), how far pulling one point drags the others, and how many linear pieces a net cuts the plane into
as it gets wider.</p>
<p>Wider hidden layers make this easier (the width sweep); a narrow deep net (2 units per layer, leaky ReLU) shows
that ReLU networks are piecewise-linear maps of the plane, folding it layer by layer. Finally, the bridge back to
the kernel chapters: the analytic NNGP/NTK of the same architecture as kernel classifiers, against finite networks
of growing width in the NTK parameterisation. In the lazy regime the NTK stays put; feature learning is exactly the
NTK moving during training, towards the labels.</p>
"""


def _settings(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(main=dict(classes=5, n_per_class=120, epochs=400, lr=1e-2, snapshots=12),
                    sweep=dict(classes=5, n_per_class=120, epochs=400, lr=1e-2),
                    fold=dict(depth=4, classes=3, n_per_class=150, epochs=600, lr=1e-2, restarts=2),
                    regime=dict(widths=(16, 128, 2048), classes=5, n_per_class=40, n_test_per_class=100,
                                steps=300))
    # the course's setting: 1000 points per arm, Adam lr 1e-3, weight decay 1e-5, 2000 full-batch epochs
    return dict(main=dict(classes=5, n_per_class=1000, epochs=2000, lr=1e-3, snapshots=40),
                sweep=dict(classes=5, n_per_class=1000, epochs=2000, lr=1e-3),
                fold=dict(depth=4, classes=3, n_per_class=200, epochs=2000, lr=1e-2, restarts=3),
                regime=dict(widths=(16, 64, 256, 1024, 4096), classes=5, n_per_class=100, n_test_per_class=200,
                            steps=1000))


def run(ctx: StepContext) -> ChapterResult:
    from ..experiments import regimes
    from ..experiments import spirals as sp
    from ..plots import spirals as ps

    cfg = _settings(ctx.quick)
    seed = ctx.seed
    res = ChapterResult()

    # --- the lecture's network ---------------------------------------------------------------------------------
    run_ = sp.train_spiral(width=100, seed=seed, track=ctx.track, **cfg["main"])
    summary = run_.summary()
    ax_list = ps.plot_embedding_panels(run_, 6)
    res.figures.append(ctx.savefig(ax_list[0].figure, "embedding.png",
                                   "The 2-D embedding e(x) along training (same axes in every panel): collapsed at "
                                   "the start, grown, then un-warped until the arms are linearly separable. Arrows: "
                                   "class vectors; background: the classifier's argmax regions."))
    gif = ps.animate_embedding(run_, ctx.figure_path("embedding.gif"))
    res.figures.append(ctx.figure(gif, "The embedding over training (one frame per snapshot, epoch in the title)."))
    ax = ps.plot_input_regions(run_)
    res.figures.append(ctx.savefig(ax.figure, "input_regions.png",
                                   "Decision regions of the trained network over the input plane (argmax of the "
                                   "scores over a grid), with the training spiral."))
    axes = ps.plot_interpolation_panels(run_)
    res.figures.append(ctx.savefig(axes[0].figure, "interpolation.png",
                                   "The trained map pulling the input plane (a = 0) into the embedding (a = 1): "
                                   "points and grid lines at (1 - a) x + a c e(x), where the constant c rescales the "
                                   "embedding to the size of the input box so that both fit one frame."))
    gif = ps.animate_interpolation(run_, ctx.figure_path("interpolation.gif"), frames=9 if ctx.quick else 21)
    res.figures.append(ctx.figure(gif, "The interpolation from input plane to embedding, as a loop."))
    axes = ps.plot_training_curves(run_)
    res.figures.append(ctx.savefig(axes[0].figure, "curves.png", "Loss and training accuracy of the lecture's net."))
    linear_acc = sp.linear_baseline(run_.X_train, run_.y_train, run_.X_test, run_.y_test)

    # --- width sweep (one checkpoint per width, so an interrupted sweep resumes) -------------------------------
    # (checkpoints named for the layout that keeps each width's weights)
    sweep = sp.spiral_width_sweep(sp.WIDTHS, seed=seed, track=ctx.track,
                                  run_one=lambda w, compute: ctx.checkpoint(f"width_{w}_weights", compute),
                                  **cfg["sweep"])
    axes = ps.plot_width_sweep(sweep)
    res.figures.append(ctx.savefig(axes[0].figure, "width_sweep.png",
                                   "The same network with hidden width H = 2 ... 100 (same data, same seed): "
                                   "narrow hidden layers struggle to un-warp the spiral."))

    # --- the narrow deep net -----------------------------------------------------------------------------------
    fold = sp.train_folding_net(seed=seed, track=ctx.track, **cfg["fold"])
    axes = ps.plot_folding(fold)
    res.figures.append(ctx.savefig(axes[0].figure, "folding.png",
                                   "A narrow deep net (2 units per layer, leaky ReLU), stage by stage: each linear "
                                   "map rotates, scales, reflects and shifts the plane; each leaky ReLU folds it. "
                                   "Titles count the linear pieces of the map so far."))

    # --- the lecture's pictures as numbers (the nets trained above; nothing is trained here) -------------------
    lecture = ChapterResult()
    lecture.findings = _lecture_numbers(ctx, run_, sweep, fold, lecture)
    res.figures += lecture.figures

    # --- where the kernel picture stops -------------------------------------------------------------------------
    with ctx.threads():  # nets up to width 4096: these gain from every thread (measured 9.8 s -> 6.5 s per 300 steps)
        table = regimes.regime_table(seed=seed, track=ctx.track, run_one=ctx.checkpoint, **cfg["regime"])
    axes = ps.plot_regimes(table)
    res.figures.append(ctx.savefig(axes[0].figure, "regimes.png",
                                   "Finite NTK-parameterised nets vs the analytic kernels of the same architecture: "
                                   "relative change of the NTK and of the weights during training (left); test "
                                   "accuracy, the kernel classifiers as horizontal lines (middle); the kernel-target "
                                   "alignment of the nets' NTK at the start (Θ₀) and at the end (Θ_T) of training, "
                                   "an arrow per width, against the analytic kernels' (right). Accuracy and alignment "
                                   "each have an axis of their own, zoomed on their values."))

    # --- numbers, tables, findings ------------------------------------------------------------------------------
    res.numbers = {
        "train_accuracy": run_.final_train_accuracy, "test_accuracy": run_.final_test_accuracy,
        "final_loss": run_.final_loss, "diverged_at": run_.diverged_at, "config": run_.config,
        "linear_pieces_width100": summary["linear_pieces"], "linear_classifier_test_accuracy": linear_acc,
        "embedding_radius_start": run_.embedding_radius[0], "embedding_radius_end": run_.embedding_radius[-1],
        "width_sweep": sweep.summary(),
        "folding": {"stages": fold.stage_names, "pieces": fold.pieces, "train_accuracy": fold.final_train_accuracy,
                    "config": fold.config},
        "regime_table": table,
        **lecture.numbers,
    }
    res.tables.append(Table(
        "Hidden-width sweep", ["hidden width H", "final train accuracy", "test accuracy", "final loss"],
        [[w, a, t, loss] for w, a, t, loss in zip(sweep.widths, sweep.final_train_accuracy(), sweep.test_accuracy,
                                            sweep.final_loss())],
        note=f"{cfg['sweep']['epochs']} full-batch Adam epochs, lr {cfg['sweep']['lr']}, "
             f"{cfg['sweep']['n_per_class']} points per arm."))
    res.tables.append(Table(
        "Where the kernel picture stops",
        ["model", "width", "train acc.", "test acc.", "NTK change", "weight change", "alignment Θ₀", "alignment Θ_T"],
        [[r.model, r.width if math.isfinite(r.width) else "∞", r.train_accuracy, r.test_accuracy, r.ntk_change,
          r.weight_change, r.alignment_0, r.alignment_T] for r in table.rows],
        note="Kernel rows: the analytic NNGP/NTK of the architecture (regression to centred one-hot targets; the NTK "
             "cross-entropy row is the infinitely wide net trained on softmax cross-entropy by function-space "
             "gradient flow, kernelscope.predict.gradient_descent). "
             "Finite nets: 2 → n (ReLU) → K in the NTK parameterisation (w_std = 1, b_std = 0.1), full-batch GD "
             f"on the squared loss, lr {table.config['lr']:.3g}, {table.config['steps']} steps. Changes are relative "
             "(Frobenius norms); alignment is the centred kernel-target alignment on the training points."))
    res.tables += lecture.tables
    res.findings = _findings(run_, linear_acc, sweep, fold, summary["linear_pieces"], table) + lecture.findings
    return res


def _lecture_numbers(ctx: StepContext, run_, sweep, fold, res: ChapterResult) -> list[str]:
    """Canziani's pictures as numbers: figures, tables and numbers into ``res``; returns the findings."""
    from ..experiments import anatomy as an
    from ..plots import new_figure
    from ..plots import spirals as ps

    K = run_.classes
    phases = an.training_phases(run_)
    spread = an.class_vector_spread(run_.class_vectors[-1])
    depth = int(fold.config["depth"])
    norms = {f"2→{run_.config['width']}→2→{K}": an.layer_norms(run_.params),
             f"narrow 2→2×{depth}→2→{fold.config['classes']}": an.layer_norms(fold.params)}
    fig = new_figure((18, 4.4), layout="constrained")
    axes = fig.subplots(1, 4)
    ps.plot_phases(phases, axes=axes[:2])
    ps.plot_class_vectors(spread, ax=axes[2])
    ps.plot_layer_norms(norms, ax=axes[3])
    res.figures.append(ctx.savefig(fig, "lecture_numbers.png",
                                   "The lecture's net as numbers. Left: how much of the embedding an affine map of "
                                   "the input explains (R²) along training. Second: angular velocity of the inner "
                                   "and outer thirds of the points about the embedding's centroid. Third: the "
                                   "trained class vectors' directions and the gaps between neighbours. Right: "
                                   "spectral (and Frobenius) norms of each layer, input to head, for the lecture's "
                                   "net and the narrow deep net."))
    stages = an.svd_stages(fold)
    axes = ps.plot_svd_stages(stages)
    res.figures.append(ctx.savefig(axes[0].figure, "svd_stages.png",
                                   "Each layer of the narrow deep net as rotation · scaling · rotation + bias + leaky "
                                   "ReLU (W = U Σ Vᵀ): rows are layers, columns the stages applied to the grid of the "
                                   "input plane and the training points; the row labels give the rotation angles and "
                                   "the singular values."))
    near10 = min(sweep.widths, key=lambda w: abs(w - 10))
    wide = max(sweep.widths)
    infl = an.influence(sweep, keep_maps=(near10, wide))
    pieces = an.pieces_vs_width(sweep)
    fig = new_figure((18, 4.4), layout="constrained")
    axes = fig.subplots(1, 4)
    ps.plot_pieces_vs_width(pieces, ax=axes[0])
    ps.plot_influence_vs_width(infl, ax=axes[1])
    anchor = len(infl.anchors) // 4
    ps.plot_drag(infl, near10, anchor, ax=axes[2])
    ps.plot_drag(infl, wide, anchor, ax=axes[3])
    res.figures.append(ctx.savefig(fig, "pieces_drag.png",
                                   "The width sweep's nets. Left: linear pieces on the input box against the hidden "
                                   "width (exact counts of the lines' arrangement, a grid count, the initial weights "
                                   "and the most H lines can make). Second: when one point is pulled by a gradient "
                                   "step on its own loss, how far the others' embeddings move relative to its own "
                                   "(mean over 20 pulled points). Right: that drag for one pulled point (★) at "
                                   f"H = {near10} and H = {wide}."))
    svd_err = max([stages.error] + [an.layer_svd(W, b).error for W, b in run_.params])
    res.numbers["lecture_numbers"] = {
        "class_vectors": spread, "phases": {k: getattr(phases, k) for k in (
            "epochs", "linear_r2", "linear_until", "early_inner", "early_outer", "late_inner", "late_outer")},
        "layer_norms": norms, "svd_max_error": svd_err,
        "svd_angles": [[lay.angle_in, lay.angle_out, bool(lay.reflection)] for lay in stages.layers],
        "influence": {"widths": infl.widths, "near": infl.near, "far": infl.far, "k": infl.k,
                      "anchors": len(infl.anchors)},
        "pieces": pieces}
    res.tables.append(Table(
        "Linear pieces and drag against the hidden width",
        ["hidden width H", "pieces (trained, exact)", f"pieces ({pieces.resolution}² grid)", "pieces (initial)",
         "1 + H + H(H−1)/2", f"drag on {infl.k} nearest", "drag on other classes"],
        [[w, a, g, i, bd, f"{n:.3f}", f"{fa:.3f}"] for w, a, g, i, bd, n, fa in
         zip(pieces.widths, pieces.trained, pieces.grid, pieces.initial, pieces.bound, infl.near, infl.far)],
        note="Pieces of the one-hidden-layer nets of the width sweep on the input box: exact counts (1 + lines "
             "crossing the box + their crossings inside it) and a grid count, a lower bound. Drag: "
             "‖Δe_j‖/‖Δe_i‖ when x_i is pulled by one gradient step on its own loss through the feature extractor, "
             f"mean over {len(infl.anchors)} pulled points."))
    f: list[str] = []
    even = spread.rms_deviation < spread.random_rms_deviation / 2
    how = "spread nearly evenly" if even else "not evenly spread"
    f.append(f"Class vectors: the {K} trained class vectors are {how} around the circle - gaps between neighbours "
             + ", ".join(f"{g:.0f}°" for g in spread.gaps)
             + f" against 360/K = {spread.ideal:.0f}° (rms deviation {spread.rms_deviation:.1f}°, largest "
             f"{spread.max_deviation:.1f}°; {K} random directions would deviate by {spread.random_rms_deviation:.0f}° "
             "rms).")
    peak = int(np.nanargmax(phases.linear_r2))
    opposite = phases.late_inner * phases.late_outer < 0
    f.append(f"Phases of training: an affine map of the input explains {phases.linear_r2[peak]:.1%} of the "
             f"embedding at epoch {int(phases.epochs[peak])} and at least {phases.threshold:.0%} until epoch "
             f"{phases.linear_until} (the near-linear phase; {phases.linear_r2[-1]:.1%} at the end). In that phase the "
             f"inner and outer thirds turn {phases.early_inner:+.0f}° and {phases.early_outer:+.0f}° about the "
             f"centroid; afterwards {phases.late_inner:+.0f}° and {phases.late_outer:+.0f}° - "
             + ("opposite ways, as the lecture describes." if opposite else "not opposite ways here."))
    names = list(norms)
    lect, narrow = norms[names[0]], norms[names[1]]
    grows = all(b >= a for a, b in zip(narrow.spectral, narrow.spectral[1:]))
    f.append("Weight norms towards the head (spectral norms, input to head): narrow deep net "
             + ", ".join(f"{v:.2g}" for v in narrow.spectral)
             + (" - growing layer after layer" if grows else f" - from {narrow.spectral[0]:.2g} to "
                f"{narrow.spectral[-1]:.2g}, not monotone")
             + f"; the lecture's net (input layer, embedding, classifier): "
             f"{', '.join(f'{v:.2g}' for v in lect.spectral)}.")
    refl = sum(lay.reflection for lay in stages.layers)
    f.append(f"Each layer is rotation · scaling · rotation + bias (then the activation): the SVD stages rebuild "
             f"every layer of both nets to {svd_err:.0e} (relative); the narrow net's {len(stages.layers)} layers "
             f"scale by singular values from {min(min(lay.s) for lay in stages.layers):.2g} to "
             f"{max(max(lay.s) for lay in stages.layers):.2g}, and {refl} of them "
             f"{'reflects' if refl == 1 else 'reflect'} the plane.")
    j10, jw = infl.widths.index(near10), infl.widths.index(wide)
    f.append(f"Pulling one point drags the others: a gradient step on one point's loss moves its {infl.k} nearest "
             f"neighbours' embeddings by {infl.near[j10]:.2f} (H = {near10}) and {infl.near[jw]:.2f} (H = {wide}) of "
             f"its own move, and the points of the other classes by {infl.far[j10]:.2f} and {infl.far[jw]:.2f} "
             f"(H = {infl.widths[0]}: {infl.far[0]:.2f}). "
             + ("The wider the hidden layer, the less the rest follows" if infl.far[jw] < infl.far[j10] else
                "Here the wider net does not drag the rest less")
             + f", but at every width the rest moves by more than {min(infl.far):.2f} of the pulled point.")
    f.append("Linear pieces against width (exact counts on the input box): "
             + ", ".join(f"H={w}: {a}" for w, a in zip(pieces.widths, pieces.trained))
             + f"; a {pieces.resolution}² grid finds {pieces.grid[-1]} of the {pieces.trained[-1]} pieces at "
             f"H = {pieces.widths[-1]} (the most {pieces.widths[-1]} lines can make: {pieces.bound[-1]}).")
    return f


def _findings(run_, linear_acc, sweep, fold, pieces_wide, table) -> list[str]:
    f: list[str] = []
    K = run_.classes
    E = int(run_.epochs[-1])
    target = "meets" if run_.final_train_accuracy >= 0.95 else "misses"
    f.append(f"The lecture's net 2 → 100 → 2 → {K} reaches {run_.final_train_accuracy:.1%} training accuracy "
             f"({target} the 95% target) and {run_.final_test_accuracy:.1%} on a held-out draw after {E} epochs; "
             f"a linear classifier on the raw inputs gets {linear_acc:.1%} (chance {1 / K:.0%}).")
    r0, r1 = run_.embedding_radius[0], run_.embedding_radius[-1]
    f.append(f"The embedding starts collapsed (mean radius {r0:.3g} at epoch 0) and grows "
             f"{r1 / max(r0, 1e-300):.0f}-fold "
             f"to {r1:.3g} by the end, where the arms sit in separate angular sectors around the class vectors.")
    accs = sweep.final_train_accuracy()
    weak = [w for w, a in zip(sweep.widths, accs) if a < 0.9]
    strong = [w for w, a in zip(sweep.widths, accs) if a >= 0.95]
    f.append("Width sweep: final training accuracy " + ", ".join(f"H={w}: {a:.1%}" for w, a in zip(sweep.widths, accs))
             + (f". H = {', '.join(map(str, weak))} stay below 90%" if weak else ". No width stays below 90%")
             + (f"; from H = {min(strong)} on the net passes 95%." if strong else "; none passes 95%."))
    f.append(f"The narrow deep net (2 units per layer, leaky ReLU) reaches {fold.final_train_accuracy:.1%} training "
             f"accuracy on {fold.config['classes']} arms with only {fold.pieces[-1]} linear pieces on the plotted box; "
             f"the width-100 net's first layer alone cuts the same kind of box into {pieces_wide} pieces, which is why "
             "it looks smooth.")
    fin = table.finite_rows()
    kern = {r.model: r for r in table.rows if not math.isfinite(r.width)}
    if len(fin) >= 2:
        a, b = fin[0], fin[-1]
        c = fin[-2]
        changes = [r.ntk_change for r in fin]
        tail = ("the NTK change decreases monotonically with width" if all(x > y for x, y in zip(changes, changes[1:]))
                else "at the narrow end the NTK change is not monotone (" + ", ".join(f"{v:.2g}" for v in changes)
                + "): narrow nets are far outside the lazy regime, where the 1/sqrt(n) law says nothing")
        f.append(f"Lazy regime: the relative NTK change falls from {a.ntk_change:.3g} at width {a.width:.0f} to "
                 f"{b.ntk_change:.3g} at width {b.width:.0f} and the relative weight change from "
                 f"{a.weight_change:.3g} to {b.weight_change:.3g}. Between widths {c.width:.0f} and {b.width:.0f} "
                 f"their log-log slopes are {table.tail_slope('ntk_change'):.2f} and "
                 f"{table.tail_slope('weight_change'):.2f} "
                 f"(lazy-training theory: -0.5); {tail}.")
        f.append(f"Features learned: the kernel-target alignment of the NTK goes {a.alignment_0:.3f} → "
                 f"{a.alignment_T:.3f} during training at width {a.width:.0f} "
                 f"({fmt(a.alignment_T - a.alignment_0, '+.3f')}) "
                 f"but only {b.alignment_0:.3f} → {b.alignment_T:.3f} at width {b.width:.0f} "
                 f"({fmt(b.alignment_T - b.alignment_0, '+.3f')}): the wide net keeps the kernel it started with.")
    ntk = kern.get("NTK kernel regression")
    nngp = kern.get("NNGP kernel regression")
    lin = next((r for name, r in kern.items() if name.startswith("NTK linearised")), None)
    if ntk is not None and nngp is not None and lin is not None and fin:
        widest, narrowest = fin[-1], fin[0]
        gap_w = abs(widest.test_accuracy - lin.test_accuracy)
        gap_n = abs(narrowest.test_accuracy - lin.test_accuracy)
        verdict = ("the widest net is the closer of the two to its linearisation, as the lazy picture predicts"
                   if gap_w <= gap_n else "here the narrowest net happens to be closer to the linearisation")
        f.append(f"Test accuracy: NNGP kernel {nngp.test_accuracy:.1%}, NTK kernel {ntk.test_accuracy:.1%} "
                 f"(trained to convergence), the linearised NTK after the nets' {table.config['steps']} steps "
                 f"{lin.test_accuracy:.1%}; finite nets {narrowest.test_accuracy:.1%} at width "
                 f"{narrowest.width:.0f} (|gap to the linearisation| {gap_n:.1%}) and {widest.test_accuracy:.1%} at "
                 f"width {widest.width:.0f} (gap {gap_w:.1%}): {verdict}. On this low-dimensional problem the "
                 f"fixed kernels are already strong; what changes with width is not the score but whether the "
                 f"features move. The feature-learning net of the lecture (standard parameterisation, small "
                 f"init, Adam, {run_.config['n_per_class']} points per arm) reaches {run_.final_test_accuracy:.1%}.")
    ce = next((r for name, r in kern.items() if name.startswith("NTK cross-entropy")), None)
    if ce is not None and ntk is not None:
        f.append(f"Trained like the lecture's classifier - softmax and cross-entropy, by gradient flow in function "
                 f"space (kernelscope.predict.gradient_descent) for {table.config.get('ce_time', 0):g}× the nets' "
                 f"training time - the infinitely wide net reaches {ce.train_accuracy:.1%} training and "
                 f"{ce.test_accuracy:.1%} test accuracy, against {ntk.test_accuracy:.1%} for the same kernel's "
                 "squared-loss regression to one-hot targets trained to convergence: with a fixed kernel, the loss "
                 "still changes the classifier.")
    return f


CHAPTER = Chapter(key="spirals", order=60,
                  title="7. Learning the feature vector: spirals, and where the kernel picture "
                  "stops", intro=INTRO, run=run, threads=1, seconds=140)
