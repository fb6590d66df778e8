"""Chapter 4: infinite-width networks — the NNGP and NTK, and the finite networks that converge to them.

Text and figures; the experiments are :mod:`kernelscope.experiments.nets`.
"""

from __future__ import annotations

import math

from ..story import Chapter, ChapterResult, StepContext, Table, fmt

__all__ = ["CHAPTER"]

INTRO = """
<p>A network with a random first layer B and a trained readout is linear regression on the features
<code>σ(Bx)/√k</code>; as the width k → ∞ their inner products become the <strong>NNGP kernel</strong>
<code>E[σ(u)σ(v)]</code>, a dual activation of the Gaussian pair (u, v) = (b·x, b·x'). Stacking layers repeats the
map: <code>Σ<sup>l+1</sup> = σ<sub>w</sub>² E[φ(u)φ(v)] + σ<sub>b</sub>²</code>. Training <em>all</em> layers of a
very wide network by gradient descent is kernel regression too, with the <strong>neural tangent kernel</strong>
<code>Θ<sup>l+1</sup> = Σ<sup>l+1</sup> + σ<sub>w</sub>² E[φ'(u)φ'(v)] Θ<sup>l</sup></code> (NTK parameterisation,
as in neural-tangents). <code>kernelscope.nets</code> describes a network once — <code>serial(Dense(512),
ReLU(), Dense(1))</code> — and gives both its kernels in closed form (arc-cosine for ReLU, arcsin for erf,
Gauss–Hermite quadrature otherwise) and the finite random network they are the limit of.</p>
<p>Convolutions work the same way, position by position: the CNN-GP and the CNTK of
<code>Conv(256, 3) → ReLU → Conv(256, 3) → ReLU → Flatten / GlobalAvgPool → Dense(1)</code> (neural-tangents'
conventions: fan-in = channels × filter size; Flatten averages the positions, so only pairs of the <em>same</em>
position interact, while pooling mixes every pair of positions and so sees translations).</p>
"""

# ------------------------------------------------------------------------------------------------------------
# The tour step
# ------------------------------------------------------------------------------------------------------------
def run(ctx: StepContext) -> ChapterResult:
    from ..experiments.conv import conv_digits
    from ..experiments.nets import (
        ANGLE_ACTIVATIONS,
        B_STD,
        W_STD,
        angle_experiment,
        digits_experiment,
        random_features_experiment,
        width_experiment,
    )
    from ..plots import nets as P
    from ..plots import new_figure

    q = ctx.quick
    res = ChapterResult()
    # each experiment is a checkpoint (an interrupted chapter resumes); it comes back as the same dataclass
    rf = ctx.checkpoint("random_features", lambda: random_features_experiment(
        [10, 40, 160, 640] if q else [10, 30, 100, 300, 1000, 3000, 10000], n_draws=3 if q else 8, seed=ctx.seed))
    mc = ctx.checkpoint("width", lambda: width_experiment(
        [32, 128, 512] if q else [16, 32, 64, 128, 256, 512, 1024], n_draws=8 if q else 16,
        seed=ctx.seed, track=ctx.track))
    ang = ctx.checkpoint("angles", lambda: angle_experiment(n_angles=46 if q else 91))
    dg = ctx.checkpoint("digits", lambda: digits_experiment(
        300 if q else 1000, 300 if q else 797, depths=(1, 3) if q else (1, 2, 3, 4, 5), seed=ctx.seed))
    cv = ctx.checkpoint("conv", lambda: conv_digits(
        70 if q else 200, 70 if q else 200, widths=(8, 32, 128) if q else (8, 32, 128, 512),
        seeds=2 if q else 4, seed=ctx.seed))

    fig = new_figure((11, 4.2))
    axes = fig.subplots(1, 2)
    P.plot_rf_fits(rf, axes[0])
    P.plot_rf_error(rf, axes[1])
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "random_features.png",
                                   "A two-layer ReLU net with a frozen random first layer of width k and a trained "
                                   "readout (left) is random-features regression; its prediction converges to NNGP "
                                   "regression as k grows (right, log-log, mean over draws)."))
    fig = new_figure((6.2, 4.4))
    ax = fig.subplots()
    P.plot_mc_error(mc, ax)
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "width_error.png",
                                   "Relative error of one random finite network's empirical NNGP and NTK against "
                                   "the analytic infinite-width kernels, against width (log-log, fitted slopes)."))
    fig = new_figure((13, 7.4))
    axes = fig.subplots(2, 3)
    for j, act in enumerate(ANGLE_ACTIVATIONS):
        for i, which in enumerate(("nngp", "ntk")):
            P.plot_angle_kernels(ang, act, which, axes[i, j])
    fig.suptitle(f"Kernels between unit inputs at angle γ (σ$_w$ = {W_STD}, σ$_b$ = {B_STD}), 1–5 hidden layers")
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "angles.png",
                                   "NNGP (top) and NTK (bottom) as functions of the angle between unit inputs, "
                                   "normalised at γ = 0, for ReLU, Erf and GELU networks with 1 to 5 hidden layers."))
    fig = new_figure((6.2, 4.4))
    ax = fig.subplots()
    P.plot_digits_accuracy(dg, ax)
    fig.tight_layout()
    res.figures.append(ctx.savefig(fig, "digits.png",
                                   "Test accuracy on scikit-learn's digits of NNGP and NTK kernel regression "
                                   "(one-hot targets, argmax) for ReLU and Erf networks, against RBF kernel ridge."))

    from ..plots.conv import plot_conv_digits

    axes = plot_conv_digits(cv)
    axes[0].figure.tight_layout()
    res.figures.append(ctx.savefig(axes[0].figure, "conv.png",
                                   "Left: NNGP and NTK regression on the 8×8 digits with an MLP, a CNN read out by "
                                   "Flatten (the mean over positions) and a CNN with global average pooling. Right: "
                                   "the empirical NTK of finite CNNs (GlobalAvgPool) against the analytic CNTK as the "
                                   "channel count grows (log-log, mean ± s.e. over draws)."))
    res.tables.append(Table(f"Convolutional kernels on digits ({cv.n_train} train, {cv.n_test} test)",
                            ["architecture", "kernel", "accuracy", "kernels (s, NNGP and NTK in one pass)",
                             "fit+predict (s)"],
                            [[r["architecture"], r["kernel"], f"{r['test_accuracy']:.3f}",
                              f"{r.get('kernel_seconds', float('nan')):.2f}", f"{r['seconds']:.2f}"]
                             for r in cv.rows],
                            note=f"One test image is {100 / cv.n_test:.1f} points of accuracy."))
    conv_acc = {f"{r['architecture']} {r['kernel']}": r["test_accuracy"] for r in cv.rows}
    top_conv = max(conv_acc.values())
    best_conv = [k for k, v in conv_acc.items() if round((top_conv - v) * cv.n_test) == 0]
    acc = dg.accuracy
    rows = [["RBF kernel ridge", "—", f"{acc['rbf']:.3f}", f"{dg.seconds['rbf']:.2f}"]]
    for act in dg.activations:
        for d in dg.depths:
            for which in ("nngp", "ntk"):
                key = f"{act}-{which}-{d}"
                rows.append([f"{act} {which.upper()}", d, f"{acc[key]:.3f}", f"{dg.seconds[key]:.2f}"])
    res.tables.append(Table(f"Digits test accuracy ({dg.n_train} train, {dg.n_test} test, ridge "
                            f"{dg.ridge:g})", ["model", "hidden layers", "accuracy", "fit+predict (s)"], rows,
                            note="KernelRegressor with a nets network as kernel; RBF γ from the median heuristic."))
    res.tables.append(Table("Convergence slopes (log-log)", ["quantity", "slope", "expected"], [
        ["random features → NNGP prediction", f"{rf.rf_slope:.2f}", "−0.5"],
        ["empirical NNGP of one net vs width", f"{mc.nngp_slope:.2f}", "−0.5"],
        ["empirical NTK of one net vs width", f"{mc.ntk_slope:.2f}", "−0.5"]]))

    # the models differ by a few test images: name every model that reaches the top, not an arbitrary one of them
    top = max(v for k, v in acc.items() if k != "rbf")
    best = [k for k in acc if k != "rbf" and round((top - acc[k]) * dg.n_test) == 0]
    spread = round((max(acc.values()) - min(acc.values())) * dg.n_test)
    at90 = {name: [ang.at(math.pi / 2, name, "nngp", d) for d in (1, 5)] for name in ANGLE_ACTIVATIONS}
    res.numbers.update({"rf_slope": rf.rf_slope, "rf_error_largest_k": rf.rf_error[-1],
                        "nngp_width_slope": mc.nngp_slope, "ntk_width_slope": mc.ntk_slope,
                        "ntk_error_widest": mc.ntk_error[-1], "digits_accuracy": acc,
                        "nngp_at_90deg_depth1_depth5": at90, "conv_accuracy": conv_acc,
                        "conv_ntk_width_slope": cv.slope, "conv_ntk_error_widest": cv.ntk_errors[-1]})
    res.findings += [
        f"Random-features regression approaches NNGP regression as the width k grows: the RMS gap falls from "
        f"{rf.rf_error[0]:.3f} (k = {rf.ks[0]}) to {rf.rf_error[-1]:.4f} (k = {rf.ks[-1]}), slope "
        f"{rf.rf_slope:.2f} on log-log (the Monte Carlo rate of the kernel itself is −0.5).",
        f"One finite network's empirical kernels converge to the analytic ones: slope {mc.nngp_slope:.2f} "
        f"(NNGP) and {mc.ntk_slope:.2f} (NTK) against width, relative NTK error {mc.ntk_error[-1]:.3f} at "
        f"width {mc.widths[-1]} (RMS over {mc.n_draws} random networks per width"
        + ("; quick mode: few draws, so the slopes are noisy" if q else "") + ").",
        "Depth changes how kernels see angles: NNGP(90°)/NNGP(0) goes from 1 to 5 hidden layers as "
        + ", ".join(f"{fmt(v[0], '.2f')} → {fmt(v[1], '.2f')} ({k})" for k, v in at90.items())
        + "; the one-sided ReLU/GELU kernels flatten towards a constant with depth (distinct inputs look alike), "
        "the odd Erf kernel stays near 0 at 90° and changes shape only mildly.",
        f"On digits {_best_models(best, dg.depths)} "
        + ("reaches" if len(best) == 1 else "tie at")
        + f" the top accuracy {top:.3f} ({round((1 - top) * dg.n_test)} of {dg.n_test} test images wrong), against "
        f"{acc['rbf']:.3f} for RBF kernel ridge; all {len(acc)} models are within {spread} of {dg.n_test} test "
        "images of each other, so NNGP/NTK regression is as good a kernel machine as a tuned RBF here, and depth "
        "or activation barely matters on this easy task.",
        f"Convolutional kernels on {cv.n_train} digits: "
        + (f"the best is {best_conv[0]}" if len(best_conv) == 1 else "the best, tied, are " + " and ".join(best_conv))
        + f" ({top_conv:.3f}); "
        + ", ".join(f"{k} {v:.3f}" for k, v in conv_acc.items() if k not in best_conv)
        + f" (one image = {1 / cv.n_test:.3f}). Finite CNNs converge to the CNTK: relative error "
        f"{cv.ntk_errors[0]:.2f} at {cv.widths[0]} channels, {cv.ntk_errors[-1]:.3f} at {cv.widths[-1]}, "
        f"slope {cv.slope:.2f} (−0.5 expected).",
    ]
    return res


def _model_name(key: str) -> str:
    """``"ReLU-nngp-3"`` -> ``"ReLU NNGP, 3 hidden layers"``: the page speaks of models, not of result keys."""
    act, which, depth = key.rsplit("-", 2)
    return f"{act} {which.upper()}, {depth} hidden layer{'s' if depth != '1' else ''}"


def _best_models(keys: list[str], depths) -> str:
    """The models that tie at the top, grouped by kernel: ``"ReLU NNGP (1–5 hidden layers) and Erf NTK (1, 2)"``."""
    if len(keys) == 1:
        return _model_name(keys[0])
    groups: dict[str, list[int]] = {}
    for k in keys:
        act, which, depth = k.rsplit("-", 2)
        groups.setdefault(f"{act} {which.upper()}", []).append(int(depth))
    parts = []
    for name, ds in groups.items():
        ds = sorted(ds)
        every = list(depths) == ds and len(ds) > 2
        span = f"{ds[0]}–{ds[-1]}" if every else ", ".join(map(str, ds))
        parts.append(f"{name} ({span} hidden layer{'s' if len(ds) > 1 or ds[0] != 1 else ''})")
    return f"{len(keys)} models — " + "; ".join(parts) + " —"


CHAPTER = Chapter("nets", 30, "4. Infinite-width networks: NNGP and NTK", INTRO, run, seconds=45)
