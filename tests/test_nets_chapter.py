"""The infinite-width chapter's experiments at small sizes, its figures, and the tour step in quick mode."""

from __future__ import annotations

import math

import numpy as np

from kernelscope.experiments import nets as ch
from kernelscope.plots import nets as P
from kernelscope.story import json_checkpoint


def test_random_features_converge_to_nngp_regression():
    r = ch.random_features_experiment([8, 64, 512], n_draws=3, seed=0)
    err = r.rf_error
    assert err[0] > err[1] > err[2] and r.rf_slope < -0.3
    assert len(r.f_rf_example) == 3 and len(r.f_rf_example[0]) == len(r.x_grid)
    ax = P.plot_rf_fits(r)
    assert ax.get_xlabel() == "x" and len(ax.lines) == 5
    assert P.plot_rf_error(r).get_xscale() == "log"


def test_width_experiment_errors_shrink():
    r = ch.width_experiment([16, 256], n_draws=3, n_points=6, d=4)
    assert r.nngp_error[1] < r.nngp_error[0] and r.ntk_error[1] < r.ntk_error[0]
    assert P.plot_mc_error(r).get_yscale() == "log"


def test_angle_curves_start_at_one_and_relu_depth_one_matches_arccos():
    r = ch.angle_experiment(depths=(1, 2), n_angles=19)
    for act in ch.ANGLE_ACTIVATIONS:
        for which in ("nngp", "ntk"):
            for curve in r.curves[act][which].values():
                assert abs(curve[0] - 1.0) < 1e-12 and np.all(np.isfinite(curve))
    # depth 1 ReLU NNGP between unit inputs at angle γ: w²/(2π)·s(sin θ + (π−θ)cos θ) + b², Σ¹ = w²cos γ/2 + b²
    w, b = ch.W_STD, ch.B_STD
    g = np.asarray(r.angles)
    s11 = w * w / 2 + b * b
    c = (w * w * np.cos(g) / 2 + b * b) / s11
    th = np.arccos(np.clip(c, -1, 1))
    k = w * w * s11 / (2 * math.pi) * (np.sin(th) + (math.pi - th) * np.cos(th)) + b * b
    np.testing.assert_allclose(r.curves["ReLU"]["nngp"]["1"], k / k[0], rtol=1e-10)
    # at(): the curve between grid angles, linearly interpolated; exact on the grid
    assert r.at(float(g[3]), "ReLU", "nngp", 1) == r.curves["ReLU"]["nngp"]["1"][3]
    mid = 0.5 * (g[3] + g[4])
    assert abs(r.at(mid, "Erf", "ntk", 2) - 0.5 * sum(r.curves["Erf"]["ntk"]["2"][3:5])) < 1e-12
    ax = P.plot_angle_kernels(r, "GELU", "ntk")
    assert "GELU" in ax.get_title()


def test_results_survive_the_json_checkpoint(tmp_path):
    """The tour's checkpoint saves the result as JSON and gives back the same dataclass: nothing changes."""
    r = ch.width_experiment([8, 32], n_draws=2, n_points=4, d=3)
    back = json_checkpoint(tmp_path)("width", lambda: r)
    assert back == r and isinstance(back, ch.WidthResult) and isinstance(back.nngp_slope, float)
    assert json_checkpoint(tmp_path)("width", lambda: None) == r  # read back from the file
    assert ch.mlp_description(2).kernel(np.eye(3)).ntk.shape == (3, 3)


def test_digits_kernels_classify_well():
    r = ch.digits_experiment(150, 150, depths=(1,))
    assert r.accuracy["rbf"] > 0.85
    for key, acc in r.accuracy.items():
        assert acc > 0.85, key
    ax = P.plot_digits_accuracy(r)
    # the models differ by a few images: the axis counts them, the accuracy is on the right (issue 24)
    assert ax.get_ylabel() == "misclassified test images (of 150)"
    assert [a.get_ylabel() for a in ax.child_axes] == ["test accuracy"]
    assert ax.figure.canvas.manager is None  # a Figure outside pyplot: no window, nothing to close
