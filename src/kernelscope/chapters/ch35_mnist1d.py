"""Chapter 4b: real data — MNIST-1D with infinite-width MLP and CNN kernels, against the paper's trained networks.

Text and figures; the experiments are :mod:`kernelscope.experiments.mnist1d`. The kernels of each architecture are
computed once, in panels of rows saved as checkpoints (so an interrupted run resumes inside the longest kernel),
and serve both NNGP and NTK and every learning-curve size; once an architecture's classifiers are saved, its panels
are deleted (they are the size of the kernel matrices).
"""

from __future__ import annotations

import shutil

from ..story import Chapter, ChapterResult, StepContext, Table, json_checkpoint

__all__ = ["CHAPTER"]

INTRO = """
<p>Toy sets are easy; MNIST-1D (Greydanus &amp; Kobak, <em>Scaling down deep learning with MNIST-1D</em>, ICML 2024)
is small but not easy: ten 12-point digit templates, each padded, stretched, shifted, sheared and buried in
correlated noise, sampled at 40 positions; 4000 training and 1000 test signals. Logistic regression gets 32%, a
trained MLP 68%, a trained CNN 94% (the paper's numbers): what separates them is the inductive bias of
convolutions — the same local pattern is recognised wherever it sits.</p>
<p>The same comparison with <em>infinitely wide</em> networks: the NNGP and NTK of a two-hidden-layer ReLU MLP and of
three circular 5-tap ReLU convolutions, read out either by <code>Flatten</code> (a weight for every position) or
by <code>GlobalAvgPool</code> (the average over positions), each used as a kernel classifier
(<code>KernelClassifier</code>: kernel regression on centred one-hot targets, the class of the largest output). No
training, no learning rate, no epochs: one kernel matrix and one linear solve per model. The CNNs declare
<code>input_shape=(1, 40)</code>, so they take the data set's rows as scikit-learn passes them. The pooled
kernel, whose every pair of signals needs all 40 × 40 pairs of positions, is computed in float32
(<code>precision='float32'</code>) and returned in float64: on the whole data set its largest difference to the
float64 kernel is 2.4e-7 of the largest entry and the test accuracies are the same
(<code>benchmarks/bench_conv.py --full</code>).</p>
"""


def _slug(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def run(ctx: StepContext) -> ChapterResult:
    from .. import data
    from ..experiments import mnist1d as E
    from ..plots import mnist1d as P
    from ..plots import new_figure

    q = ctx.quick
    n_train, n_test = (100, 100) if q else (4000, 1000)
    sizes = (25, 50, 100) if q else (250, 500, 1000, 2000, 4000)
    X, y, Xt, yt = data.mnist1d(n_train, n_test)
    networks = E.mnist1d_networks()
    results = []
    for name, net in networks.items():
        folder = ctx.ckpt_dir / f"kernels-{_slug(name)}"

        def compute(net=net, name=name, folder=folder):
            K = E.kernel_panels(net, X, Xt, block=1000, panels=json_checkpoint(folder), precision=E.PRECISION[name],
                                track=lambda jobs, what, name=name: ctx.track(jobs, f"{name}: {what}"))
            return E.classify_architecture(name, K, y, yt, sizes)

        results.append(ctx.checkpoint(_slug(name), compute))
        shutil.rmtree(folder, ignore_errors=True)  # the classifiers are saved: the kernel panels are not needed
    shift = ctx.checkpoint("shift", lambda: E.shift_experiment(networks, Xt[:4 if q else 8]))
    examples = E.signal_examples()

    res = ChapterResult()
    fig = new_figure((11.5, 4.8))
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2.2]})
    P.plot_signals(*examples, ax=ax)
    P.plot_learning_curves(results, E.PAPER_ACCURACY, n_test, ax=bx)
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "learning_curves.png",
                                   "Left: what MNIST-1D looks like. Right: test accuracy of the infinite-width "
                                   "kernel classifiers against the number of training signals (the first n of the "
                                   "paper's training set), with the trained networks of the paper (4000 signals) "
                                   "as dotted lines."))
    axes = P.plot_pooling(results, shift)
    axes[0].figure.tight_layout()
    res.figures.append(ctx.savefig(axes[0].figure, "pooling.png",
                                   "What pooling buys. Left: the same three convolutions read out by Flatten or by "
                                   "global average pooling. Right: the kernel between a test signal and its own "
                                   "circular shifts, relative to no shift: pooling makes it exactly invariant."))

    by = {r.name: r for r in results}
    top = max(sizes)
    rows = [[f"{name} (paper: trained, 4000 signals)", "—", f"{100 * acc:.0f}"]
            for name, acc in E.PAPER_ACCURACY.items()]
    for r in results:
        for kind in ("NNGP", "NTK"):
            rows.append([f"{r.name}, infinite width", kind, f"{100 * r.accuracy[kind][-1]:.1f}"])
    res.tables.append(Table(f"MNIST-1D test accuracy (%): {top} training signals, {n_test} test signals",
                            ["model", "kernel", "accuracy"], rows,
                            note=f"Kernel classifiers: ridge {E.RELATIVE_RIDGE:g} × the mean of the kernel's "
                                 f"diagonal; one test signal is {100 / n_test:.1f} points."))
    res.tables.append(Table("Learning curves: test accuracy (%) against training signals",
                            ["model", "kernel", *map(str, sizes)],
                            [[r.name, kind, *(f"{100 * a:.1f}" for a in r.accuracy[kind])]
                             for r in results for kind in ("NNGP", "NTK")]))
    res.tables.append(Table("Time (s) of the kernels (train × train and test × train, NNGP and NTK together) "
                            "and of all the fits",
                            ["model", "kernels", "fits"],
                            [[r.name, f"{r.kernel_seconds:.1f}", f"{r.fit_seconds:.1f}"] for r in results]))

    flat, gap, mlp = by["CNN + Flatten"], by["CNN + GlobalAvgPool"], by["MLP"]
    small = sizes[0]
    best = max(((r.name, kind) for r in results for kind in ("NNGP", "NTK")),
               key=lambda rk: by[rk[0]].accuracy[rk[1]][-1])
    best_acc = by[best[0]].accuracy[best[1]][-1]
    gap_small = gap.accuracy["NTK"][0]
    flat_needs = next((s for s, a in zip(flat.sizes, flat.accuracy["NTK"]) if a >= gap_small), None)
    worst_shift = {key: min(v) for key, v in shift.ratio.items()}
    res.numbers.update({
        "sizes": list(sizes), "n_test": n_test,
        "accuracy": {r.name: r.accuracy for r in results},
        "kernel_seconds": {r.name: r.kernel_seconds for r in results},
        "paper_accuracy": E.PAPER_ACCURACY,
        "calibration": {r.name: {"temperature": r.temperature, "confidence": r.confidence,
                                 "calibration_error": r.calibration_error} for r in results},
        "shift_min_ratio": worst_shift,
    })
    res.findings += [
        f"With {top} training signals the best infinite-width kernel is {best[0]} {best[1]}: "
        f"{100 * best_acc:.1f}% on {n_test} test signals. The MLP kernels reach {100 * mlp.accuracy['NNGP'][-1]:.1f}% "
        f"(NNGP) and {100 * mlp.accuracy['NTK'][-1]:.1f}% (NTK), Flatten {100 * flat.accuracy['NNGP'][-1]:.1f}% and "
        f"{100 * flat.accuracy['NTK'][-1]:.1f}%, global average pooling {100 * gap.accuracy['NNGP'][-1]:.1f}% and "
        f"{100 * gap.accuracy['NTK'][-1]:.1f}%; the paper's trained networks: MLP 68%, CNN 94%, GRU 91%"
        + (" (quick run: a small subset, so far below the full set's numbers)." if q else "."),
        f"Pooling is worth data: with only {small} signals the pooled CNN kernel (NTK) reaches "
        f"{100 * gap_small:.1f}%, against {100 * flat.accuracy['NTK'][0]:.1f}% for Flatten and "
        f"{100 * mlp.accuracy['NTK'][0]:.1f}% for the MLP; "
        + (f"Flatten needs {flat_needs} signals to do as well." if flat_needs is not None else
           f"Flatten does not get there even with {top} ({100 * flat.accuracy['NTK'][-1]:.1f}%).")
        + " The reason is in the right panel of the second figure: with circular convolutions and global average "
        "pooling the kernel between a signal and any circular shift of another does not depend on the shift "
        f"(smallest ratio {worst_shift['CNN + GlobalAvgPool NTK']:.3f}), so every training signal stands for all "
        f"its shifts; with Flatten it falls to {worst_shift['CNN + Flatten NTK']:.2f} of its value.",
        "Calibrated probabilities (predict_proba: softmax of the outputs at a temperature fitted on the exact "
        f"leave-one-out outputs of the training signals): for {gap.name} NTK at {top} signals the mean probability of "
        f"the predicted class is {gap.confidence['NTK']:.3f} against an accuracy of "
        f"{gap.accuracy['NTK'][-1]:.3f} (expected calibration error {gap.calibration_error['NTK']:.3f}).",
    ]
    return res


CHAPTER = Chapter("mnist1d", 35, "4b. Real data: MNIST-1D against its paper", INTRO, run, seconds=480)
