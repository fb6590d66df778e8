"""Chapter "spirals": learning the feature vector, and where the kernel picture stops (THEORY.md section 7)."""

from __future__ import annotations

import math
from typing import Any

from ..story import Chapter, ChapterResult, StepContext, Table, fmt

INTRO = """
<p>A network is a <em>feature extractor</em> followed by a <em>linear classifier</em>: scores <code>s = W e(x)</code>,
softmax, cross-entropy, prediction <code>argmax<sub>k</sub> s<sub>k</sub></code>. K interleaved spiral arms are not
linearly separable in the plane, so the lecture's network <code>2 &rarr; 100 (ReLU) &rarr; 2 (embedding) &rarr; K</code>
has to <em>learn</em> a feature map that un-warps them. Its embedding is 2-D so we can watch it: starting from small
weights it is collapsed at 0, grows, then rotates the centre one way and the outside the other until the arms are
linearly separable; the arrows are the class vectors (rows of W) and the colours behind the points are the
classifier's argmax regions.</p>
<p>Wider hidden layers make this easier (the width sweep); a narrow deep net (2 units per layer, leaky ReLU) shows
that ReLU networks are piecewise-linear maps of the plane, folding it layer by layer. Finally, the bridge back to
the kernel chapters: the analytic NNGP/NTK of the same architecture as kernel classifiers, against finite networks
of growing width in the NTK parameterisation. In the lazy regime the NTK stays put; feature learning is exactly the
NTK moving during training, towards the labels.</p>
"""


def _settings(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(main=dict(classes=5, n_per_class=200, epochs=600, lr=1e-2, snapshots=20),
                    sweep=dict(classes=5, n_per_class=200, epochs=600, lr=1e-2),
                    fold=dict(depth=4, classes=3, n_per_class=150, epochs=1000, lr=1e-2, restarts=2),
                    regime=dict(widths=(16, 256, 4096), classes=5, n_per_class=40, n_test_per_class=100,
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
    gif = ps.animate_interpolation(run_, ctx.figure_path("interpolation.gif"), frames=13 if ctx.quick else 21)
    res.figures.append(ctx.figure(gif, "The interpolation from input plane to embedding, as a loop."))
    axes = ps.plot_training_curves(run_)
    res.figures.append(ctx.savefig(axes[0].figure, "curves.png", "Loss and training accuracy of the lecture's net."))
    linear_acc = sp.linear_baseline(run_.X_train, run_.y_train, run_.X_test, run_.y_test)

    # --- width sweep (one checkpoint per width, so an interrupted sweep resumes) -------------------------------
    sweep = sp.spiral_width_sweep(sp.WIDTHS, seed=seed, track=ctx.track,
                           run_one=lambda w, compute: ctx.checkpoint(f"width_{w}", compute), **cfg["sweep"])
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
    res.findings = _findings(run_, linear_acc, sweep, fold, summary["linear_pieces"], table)
    return res


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
