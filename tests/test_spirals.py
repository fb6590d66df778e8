"""The spiral chapter: data, the lecture's network, width sweep, the narrow folding net, figures, chapter and CLI."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest

from kernelscope import data
from kernelscope._arrays import KernelscopeWarning, ValidationError
from kernelscope._io import from_json, to_json
from kernelscope.experiments import anatomy as an
from kernelscope.experiments import spirals as sp

# --------------------------------------------------------------------------------------------------------------
# fixtures: small trainings shared by several tests
# --------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_run():
    """3 arms, 100 points each, Adam lr 1e-2 for 300 epochs."""
    return sp.train_spiral(classes=3, n_per_class=100, epochs=300, lr=1e-2, snapshots=12, seed=3,
                           n_test_per_class=100, regions_resolution=60)


@pytest.fixture(scope="module")
def small_fold():
    return sp.train_folding_net(depth=3, classes=3, n_per_class=60, epochs=200, lr=1e-2, restarts=1, seed=0)


# --------------------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------------------

class TestSpiralData:
    def test_formula_without_noise(self):
        K, n = 5, 50
        X, y = data.spirals(n, K, noise=0.0, seed=0)
        assert X.shape == (K * n, 2) and X.dtype == np.float64 and y.dtype == np.int64
        t = np.linspace(0, 1, n)
        for k in range(K):
            Xk = X[y == k]
            np.testing.assert_allclose(np.linalg.norm(Xk, axis=1), 0.8 * t + 0.2, rtol=1e-12)
            # point = r (sin a, cos a): the angle measured from the y axis towards x
            angle = np.arctan2(Xk[:, 0], Xk[:, 1])
            expected = (2 * t + k) * 2 * np.pi / K
            np.testing.assert_allclose(np.angle(np.exp(1j * (angle - expected))), 0.0, atol=1e-12)

    def test_noise_is_angular_and_reproducible(self):
        X1, y1 = data.spirals(200, 3, noise=0.2, seed=7)
        X2, _ = data.spirals(200, 3, noise=0.2, seed=7)
        X3, _ = data.spirals(200, 3, noise=0.2, seed=8)
        np.testing.assert_array_equal(X1, X2)
        assert not np.allclose(X1, X3)
        t = np.linspace(0, 1, 200)
        # angular noise leaves the radius alone; the angle residual has std ~ noise
        np.testing.assert_allclose(np.linalg.norm(X1[y1 == 1], axis=1), 0.8 * t + 0.2, rtol=1e-12)
        resid = np.angle(np.exp(1j * (np.arctan2(X1[:, 0], X1[:, 1]) - (2 * np.tile(t, 3) + y1) * 2 * np.pi / 3)))
        assert 0.17 < resid.std() < 0.23

    @pytest.mark.parametrize("kwargs, name", [({"classes": 1}, "classes"), ({"n_per_class": 0}, "n_per_class"),
                                              ({"noise": -0.1}, "noise")])
    def test_bad_input(self, kwargs, name):
        with pytest.raises(ValidationError, match=f"^{name}:"):
            data.spirals(**{"n_per_class": 10, "classes": 3, "noise": 0.2, **kwargs})


# --------------------------------------------------------------------------------------------------------------
# the lecture's network
# --------------------------------------------------------------------------------------------------------------

class TestTrainSpiral:
    def test_learns_and_records(self, small_run):
        r = small_run
        N = 300
        assert r.final_train_accuracy >= 0.9 and r.final_test_accuracy >= 0.85
        assert r.epochs.shape == r.loss.shape == r.train_accuracy.shape == (301,)
        S = len(r.snapshot_epochs)
        assert r.snapshot_epochs[0] == 0 and r.snapshot_epochs[-1] == 300 and S >= 8
        assert r.embeddings.shape == (S, N, 2) and r.class_vectors.shape == (S, 3, 2) and r.class_biases.shape == (S, 3)
        assert np.all(np.diff(r.snapshot_epochs) > 0)
        assert r.loss[-1] < 0.5 * r.loss[0]

    def test_embedding_starts_collapsed_and_grows(self, small_run):
        radius = np.sqrt((small_run.embeddings ** 2).sum(-1)).mean(-1)
        assert radius[0] < 0.5 and radius[-1] > 5 * radius[0]
        np.testing.assert_allclose(small_run.embedding_radius, radius, rtol=1e-12)  # what chapter and plots show

    def test_final_state_reproduces_the_record(self, small_run):
        r = small_run
        # the last snapshot was taken with the final weights
        np.testing.assert_allclose(sp.embed(r.params, r.X_train), r.embeddings[-1], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(r.params[-1][0], r.class_vectors[-1])
        # cross-entropy and accuracy recomputed in NumPy from the scores
        s = sp.scores(r.params, r.X_train)
        log_p = s - s.max(1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
        assert math.isclose(-log_p[np.arange(len(r.y_train)), r.y_train].mean(), r.final_loss, rel_tol=1e-10)
        assert math.isclose((s.argmax(1) == r.y_train).mean(), r.final_train_accuracy)
        assert math.isclose((sp.scores(r.params, r.X_test).argmax(1) == r.y_test).mean(), r.final_test_accuracy)

    def test_decision_regions_and_interpolation_grid(self, small_run):
        r = small_run
        lims = r.input_lims
        reg = sp.decision_regions(r.params, lims, 60)
        np.testing.assert_array_equal(reg, r.input_regions)
        # row i is y = linspace(y0, y1)[i], column j is x = linspace(x0, x1)[j]
        xs, ys = np.linspace(lims[0], lims[1], 60), np.linspace(lims[2], lims[3], 60)
        assert reg[7, 41] == sp.scores(r.params, [[xs[41], ys[7]]]).argmax()
        lines, emb = r.grid_input, r.grid_embedding
        assert lines.shape == emb.shape and lines.shape[-1] == 2
        np.testing.assert_allclose(sp.embed(r.params, lines[3]), emb[3], rtol=1e-12)

    def test_same_seed_same_run(self):
        kw = dict(classes=3, n_per_class=20, epochs=20, lr=1e-2, snapshots=0, regions_resolution=2)
        a, b = sp.train_spiral(seed=1, **kw), sp.train_spiral(seed=1, **kw)
        c = sp.train_spiral(seed=2, **kw)
        np.testing.assert_array_equal(a.loss, b.loss)
        assert not np.array_equal(a.loss, c.loss)

    def test_sgd_with_momentum(self):
        r = sp.train_spiral(classes=2, n_per_class=50, epochs=200, lr=0.1, optimizer="sgd", momentum=0.9,
                            init_std=0.3, snapshots=4, regions_resolution=2)
        assert r.loss[-1] < r.loss[0]

    def test_divergence_stops_and_keeps_snapshots(self):
        with pytest.warns(KernelscopeWarning, match="diverged"):
            r = sp.train_spiral(classes=3, n_per_class=30, epochs=200, lr=1e6, optimizer="sgd", init_std=1.0,
                                snapshots=200, regions_resolution=2)
        assert r.diverged_at is not None and 0 < r.diverged_at < 200
        # stopped at a NaN/inf loss or one 1e12 times the initial one (dynamics.train's divergence test)
        assert len(r.loss) == r.diverged_at + 1 and not (np.isfinite(r.loss[-1]) and r.loss[-1] < 1e12 * r.loss[0])
        assert r.snapshot_epochs[-1] == r.diverged_at and len(r.embeddings) == len(r.snapshot_epochs) >= 2
        assert math.isnan(r.final_test_accuracy)

    @pytest.mark.parametrize("kwargs, name", [({"classes": 1}, "classes"), ({"n_per_class": 0}, "n_per_class"),
                                              ({"noise": -1.0}, "noise"), ({"width": 0}, "width"),
                                              ({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"),
                                              ({"optimizer": "lbfgs"}, "optimizer")])
    def test_bad_input(self, kwargs, name):
        with pytest.raises(ValidationError, match=f"^{name}:"):
            sp.train_spiral(**{"classes": 3, "n_per_class": 5, "epochs": 1, **kwargs})

    def test_lecture_setup_five_arms(self):
        """The lecture's 5 arms and width 100 pass 95% training accuracy (fewer points/epochs than the course, a
        larger lr); a linear classifier on the raw inputs stays far below."""
        r = sp.train_spiral(classes=5, n_per_class=200, epochs=500, lr=1e-2, snapshots=0, regions_resolution=2)
        assert r.final_train_accuracy >= 0.95 and r.final_test_accuracy >= 0.93
        lin = sp.linear_baseline(r.X_train, r.y_train, r.X_test, r.y_test)
        assert 0.2 < lin < 0.65


class TestWidthSweep:
    def test_narrow_struggles(self):
        sw = sp.spiral_width_sweep((2, 64), classes=5, n_per_class=100, epochs=400, lr=1e-2)
        acc = sw.final_train_accuracy()
        assert acc[0] < 0.7 < 0.9 < acc[1]
        assert sw.final_loss()[0] > sw.final_loss()[1]
        assert all(len(v) == 401 for v in sw.loss)
        back = from_json(json.loads(json.dumps(to_json(sw))))
        np.testing.assert_array_equal(back.loss[1], sw.loss[1])
        assert back.widths == [2, 64] and isinstance(back, sp.WidthSweep)
        assert sw.summary()["final_train_accuracy"] == acc and sw.summary()["widths"] == [2, 64]

    def test_checkpoint_hook_is_used(self):
        calls = []

        def run_one(w, compute):
            calls.append(w)
            return sp.WidthCurves(w, np.array([1.0, 0.5]), np.array([0.2, 0.4]), 0.3)

        sw = sp.spiral_width_sweep((3, 5), classes=3, n_per_class=5, epochs=1, run_one=run_one)
        assert calls == [3, 5] and sw.test_accuracy == [0.3, 0.3]

    @pytest.mark.parametrize("widths", [(0, 4), (4, -1), ()])
    def test_bad_widths(self, widths):
        with pytest.raises(ValidationError, match="^widths:"):
            sp.spiral_width_sweep(widths, classes=3, n_per_class=5, epochs=1)


# --------------------------------------------------------------------------------------------------------------
# piecewise-linear maps
# --------------------------------------------------------------------------------------------------------------

class TestLinearPieces:
    @pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
    def test_lines_in_general_position(self, n):
        # tangents to the circle |x| = 0.1: never three through one point; normals spread over less than pi, so
        # every crossing lies within 0.1 / sin(pi / (2n)) of the origin, inside the box [-1, 1]^2
        theta = np.arange(n) * np.pi / n
        W = np.stack([np.cos(theta), np.sin(theta)], 1)
        b = -0.1 * np.ones(n)
        assert sp.count_linear_pieces([(W, b)], (-1, 1, -1, 1), 801) == 1 + n + n * (n - 1) // 2

    def test_parallel_lines_and_leaky_slope(self):
        W = np.array([[1.0, 0.0]] * 3)
        b = np.array([-0.5, 0.0, 0.5])
        for slope in (0.0, 0.1):
            assert sp.count_linear_pieces([(W, b)], (-1, 1, -1, 1), 200, slope=slope) == 4

    def test_pieces_are_affine(self, small_fold):
        """Inside one piece the map is affine: second differences along a short segment vanish."""
        f = small_fold
        hidden = f.params[: f.config["depth"]]
        slope = f.config["slope"]
        rng = np.random.default_rng(0)
        checked = 0
        for _ in range(200):
            x0, d = rng.uniform(-1, 1, 2), rng.normal(size=2) * 1e-4
            pts = np.stack([x0 - d, x0, x0 + d])
            pats = []
            h = pts
            for W, bb in hidden:
                z = h @ W.T + bb
                pats.append(z > 0)
                h = np.where(z > 0, z, slope * z)
            pats = np.concatenate(pats, 1)
            if (pats == pats[0]).all():
                e = sp.embed(f.params, pts, slope=slope)
                np.testing.assert_allclose(e[0] + e[2] - 2 * e[1], 0.0, atol=1e-9 * (1 + np.abs(e).max()))
                checked += 1
        assert checked > 150


class TestFoldingNet:
    def test_stages(self, small_fold):
        f = small_fold
        depth = f.config["depth"]
        S = 2 + 2 * depth
        assert len(f.stage_names) == len(f.stage_points) == len(f.stage_grid) == len(f.pieces) == S
        assert f.stage_names[0] == "input" and f.stage_names[-1].startswith("embedding")
        np.testing.assert_array_equal(f.stage_points[0], f.X_train)
        np.testing.assert_allclose(f.stage_points[-1], sp.embed(f.params, f.X_train, slope=f.config["slope"]),
                                   rtol=1e-12)
        W1, b1 = f.params[0]
        np.testing.assert_allclose(f.stage_points[1], f.X_train @ W1.T + b1, rtol=1e-12)
        z = f.stage_points[1]
        np.testing.assert_allclose(f.stage_points[2], np.where(z > 0, z, f.config["slope"] * z), rtol=1e-12)
        assert f.pieces[0] == 1 and all(b >= a for a, b in zip(f.pieces, f.pieces[1:]))
        # one layer of two lines cuts the plane into at most 4 pieces
        assert f.pieces[2] <= 4
        assert all(s.shape == f.stage_grid[0].shape for s in f.stage_grid)
        assert f.final_train_accuracy > 1 / 3

    def test_bad_depth(self):
        with pytest.raises(ValidationError, match="^depth:"):
            sp.train_folding_net(depth=0)


# --------------------------------------------------------------------------------------------------------------
# the lecture's pictures as numbers (issue 23, item 2)
# --------------------------------------------------------------------------------------------------------------

def _rot(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


class TestClassVectors:
    def test_even_spread_has_no_deviation(self):
        K = 5
        a = np.radians(17 + 72 * np.array([3, 0, 4, 1, 2]))
        s = an.class_vector_spread(np.stack([np.cos(a), np.sin(a)], 1) * np.arange(1, 6)[:, None])
        np.testing.assert_allclose(s.gaps, 72.0, atol=1e-12)
        assert s.ideal == 72.0 and s.max_deviation < 1e-12 and s.rms_deviation < 1e-12
        assert s.angles[0] == pytest.approx(17.0) and s.gaps.sum() == pytest.approx(360.0)
        np.testing.assert_allclose(s.norms, [2, 4, 5, 1, 3])  # sorted by angle: 17°, 89°, 161°, 233°, 305°
        assert len(s.angles) == K

    def test_random_directions_closed_form_by_monte_carlo(self):
        """E[mean (gap − 360/K)²] for K uniform directions is 360² (K − 1)/(K²(K + 1))."""
        rng = np.random.default_rng(0)
        for K in (3, 5):
            draws = [an.class_vector_spread(rng.normal(size=(K, 2))) for _ in range(4000)]
            sq = [s.rms_deviation ** 2 for s in draws]
            se = np.std(sq) / np.sqrt(len(sq))
            assert abs(np.mean(sq) - 360.0 ** 2 * (K - 1) / (K * K * (K + 1))) < 4 * se
            assert draws[0].random_rms_deviation == pytest.approx(360.0 * np.sqrt((K - 1) / (K * K * (K + 1))))

    def test_bad_input(self):
        with pytest.raises(ValidationError, match="^W:"):
            an.class_vector_spread(np.ones((3, 3)))


class TestPhases:
    def test_linear_r2(self):
        rng = np.random.default_rng(1)
        X = rng.normal(size=(50, 2))
        assert an.linear_r2(X, X @ rng.normal(size=(2, 2)) + [3.0, -1.0]) == pytest.approx(1.0)
        assert an.linear_r2(X, np.column_stack([X[:, 0] ** 2, np.abs(X[:, 1])])) < 0.5

    def test_inner_and_outer_turning_opposite_ways(self):
        """A synthetic run: a linear map for 3 snapshots, then the inner third turns +4° per epoch about the
        centroid and the outer third −2°, so the velocities and totals are known exactly."""
        from types import SimpleNamespace

        X, _ = data.spirals(60, 3, noise=0.0, seed=0)
        X = X - X.mean(0)
        r = np.linalg.norm(X, axis=1)
        inner, outer = r <= np.quantile(r, 1 / 3), r >= np.quantile(r, 2 / 3)
        epochs = np.array([0, 1, 2, 4, 6, 10])
        E, e = [], X.copy()
        for s, ep in enumerate(epochs):
            if s > 2:
                dt = ep - epochs[s - 1]
                e = e.copy()
                e[inner] = e[inner] @ _rot(4 * dt).T
                e[outer] = e[outer] @ _rot(-2 * dt).T
            E.append(e.copy())
        run = SimpleNamespace(X_train=X, embeddings=np.array(E), snapshot_epochs=epochs)
        ph = an.training_phases(run, threshold=0.999)
        assert ph.linear_until == 2 and ph.early_inner == pytest.approx(0, abs=1e-9)
        np.testing.assert_allclose(ph.linear_r2[:3], 1.0)
        # centroid moves a little as the groups turn: velocities equal to the rotation rates to about 1e-2 degrees
        np.testing.assert_allclose(ph.inner_velocity[2:], 4.0, atol=0.3)
        np.testing.assert_allclose(ph.outer_velocity[2:], -2.0, atol=0.3)
        assert ph.late_inner == pytest.approx(4 * 8, rel=0.05) and ph.late_outer == pytest.approx(-2 * 8, rel=0.05)

    def test_on_a_trained_run(self, small_run):
        ph = an.training_phases(small_run)
        S = len(small_run.snapshot_epochs)
        assert ph.linear_r2.shape == (S,) and ph.inner_velocity.shape == (S - 1,)
        assert ph.linear_until in set(small_run.snapshot_epochs.tolist())
        with pytest.raises(ValidationError, match="^fraction:"):
            an.training_phases(small_run, fraction=0.7)


class TestLayers:
    def test_layer_norms(self, small_fold):
        n = an.layer_norms(small_fold.params)
        for (W, b), f, s, bb in zip(small_fold.params, n.frobenius, n.spectral, n.bias):
            assert f == pytest.approx(np.sqrt((W ** 2).sum())) and bb == pytest.approx(np.sqrt((b ** 2).sum()))
            assert s == pytest.approx(np.sqrt(np.linalg.eigvalsh(W.T @ W).max()))

    @pytest.mark.parametrize("reflect", [False, True])
    def test_svd_angles_of_a_known_layer(self, reflect):
        """W = R(out) [diag(1, −1)] diag(3, 0.5) R(in): the angles come back (up to a joint half turn, the SVD's
        one freedom), V is a rotation, and a reflection sits in U."""
        a_in, a_out = 25.0, -70.0
        F = np.diag([1.0, -1.0]) if reflect else np.eye(2)
        W = _rot(a_out) @ F @ np.diag([3.0, 0.5]) @ _rot(a_in)
        L = an.layer_svd(W, [0.1, 0.2])
        np.testing.assert_allclose(L.s, [3.0, 0.5])
        assert L.error < 1e-15 and L.reflection == reflect and np.linalg.det(L.Vt) > 0
        d_in, d_out = (L.angle_in - a_in) % 360, (L.angle_out - a_out) % 360
        assert min(abs(d_in), abs(d_in - 180), abs(d_in - 360)) < 1e-9 and abs(d_in - d_out) < 1e-9
        with pytest.raises(ValidationError, match="^b:"):
            an.layer_svd(W, [1.0])

    def test_svd_stages_rebuild_the_folding_net(self, small_fold):
        """The stages end where the network's own forward pass is (FoldingRun.stage_points, by torch)."""
        f = small_fold
        st = an.svd_stages(f)
        depth = f.config["depth"]
        assert len(st.layers) == depth + 1 and len(st.stage_names) == 6 and st.error < 1e-12
        for layer in range(depth + 1):
            np.testing.assert_allclose(st.points[layer][4], f.stage_points[2 * layer + 1], rtol=1e-12, atol=1e-12)
            if layer < depth:
                np.testing.assert_allclose(st.points[layer][5], f.stage_points[2 * layer + 2], rtol=1e-12,
                                           atol=1e-12)
            np.testing.assert_allclose(st.grids[layer][5], f.stage_grid[min(2 * layer + 2, 2 * depth + 1)],
                                       rtol=1e-12, atol=1e-12)
        S = st.layers[0]
        np.testing.assert_allclose(st.points[0][1], f.X_train @ S.Vt.T, rtol=1e-14)


class TestRegionsAndDrag:
    def test_exact_regions_against_the_grid(self):
        rng = np.random.default_rng(3)
        for H in (1, 3, 6, 12):
            W, b = rng.normal(size=(H, 2)), 0.5 * rng.normal(size=H)
            exact = an.count_regions(W, b, (-1, 1, -1, 1))
            grid = sp.count_linear_pieces([(W, b)], (-1, 1, -1, 1), 300)
            assert grid <= exact <= 1 + H + H * (H - 1) // 2
            if H <= 6:  # no piece thinner than the grid here: the grid count is the exact one
                assert grid == exact
        # tangents to a small circle: every crossing inside, the bound is reached; lines outside the box cut nothing
        n = 7
        theta = np.arange(n) * np.pi / n
        Wt = np.stack([np.cos(theta), np.sin(theta)], 1)
        assert an.count_regions(Wt, -0.1 * np.ones(n), (-1, 1, -1, 1)) == 1 + n + n * (n - 1) // 2
        assert an.count_regions(Wt, 5.0 * np.ones(n), (-1, 1, -1, 1)) == 1

    def test_drag_is_one_small_gradient_step(self, small_run):
        """drag = ‖Δe_j‖/‖Δe_i‖ after one SGD step (lr 1e-7) on the loss of x_i alone through the extractor."""
        import torch

        X, y = small_run.X_train, small_run.y_train
        anchors = [5, 150]
        d = an.drag(small_run.params, X, y, anchors)
        assert d.shape == (2, len(X))
        (W1, b1), (W2, b2), (W3, b3) = small_run.params
        for a, i in enumerate(anchors):
            # the lecture's net rebuilt in plain torch: 2 -> H (ReLU) -> 2 (embedding), classifier 2 -> K
            ext = torch.nn.Sequential(torch.nn.Linear(2, len(b1)), torch.nn.ReLU(), torch.nn.Linear(len(b1), 2))
            head = torch.nn.Linear(2, len(b3)).double()
            ext = ext.double()
            with torch.no_grad():
                for lin, (W, b) in zip((ext[0], ext[2], head), ((W1, b1), (W2, b2), (W3, b3))):
                    lin.weight.copy_(torch.as_tensor(W))
                    lin.bias.copy_(torch.as_tensor(b))
                e0 = ext(torch.as_tensor(X)).numpy()
            opt = torch.optim.SGD(ext.parameters(), lr=1e-7)
            xi, yi = torch.as_tensor(X[i:i + 1]), torch.as_tensor(y[i:i + 1])
            loss = torch.nn.functional.cross_entropy(head(ext(xi)), yi)
            loss.backward()
            opt.step()
            with torch.no_grad():
                de = ext(torch.as_tensor(X)).numpy() - e0
            ref = np.linalg.norm(de, axis=1) / np.linalg.norm(de[i])
            np.testing.assert_allclose(d[a], ref, rtol=1e-4, atol=1e-6)

    def test_influence_and_pieces_of_a_sweep(self):
        sweep = sp.spiral_width_sweep((2, 8), classes=3, n_per_class=30, epochs=20, lr=1e-2)
        assert len(sweep.params) == 2 and sweep.X_train.shape == (90, 2)
        infl = an.influence(sweep, anchors=5, k=3, keep_maps=(8,))
        assert infl.widths == [2, 8] and len(infl.near) == 2 and set(infl.maps) == {8}
        d = an.drag(sweep.params[1], sweep.X_train, sweep.y_train, infl.anchors)
        np.testing.assert_allclose(infl.maps[8], d)
        np.testing.assert_allclose(d[np.arange(len(infl.anchors)), infl.anchors], 1.0)
        pc = an.pieces_vs_width(sweep, resolution=100)
        assert pc.bound == [4, 37] and all(g <= t for g, t in zip(pc.grid, pc.trained))
        assert pc.trained[0] == an.count_regions(*sweep.params[0][0], pc.lims)
        old = sp.WidthSweep(sweep.widths, sweep.epochs, sweep.loss, sweep.train_accuracy, sweep.test_accuracy)
        with pytest.raises(ValidationError, match="^sweep:"):
            an.influence(old)
        with pytest.raises(ValidationError, match="^sweep:"):
            an.pieces_vs_width(old)


# --------------------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------------------

class TestFigures:
    def test_static_plots(self, small_run, small_fold, tmp_path):
        import matplotlib.pyplot as plt

        from kernelscope.plots import spirals as ps

        ax = ps.plot_embedding(small_run, 3)
        assert ax.get_xlabel() and "epoch" in ax.get_title()
        # the embedding regions behind the points are the classifier's argmax
        lims = ps.embedding_lims(small_run)
        for ax in ps.plot_embedding_panels(small_run, 4)[:4]:
            assert ax.get_xlim() == (lims[0], lims[1])
        for axes in (ps.plot_interpolation_panels(small_run), ps.plot_training_curves(small_run),
                     ps.plot_folding(small_fold)):
            assert all(a.get_xlabel() for a in axes if a.axison)
        ax = ps.plot_input_regions(small_run)
        assert "test" in ax.get_title()
        plt.close("all")

    def test_gifs(self, small_run, tmp_path):
        from PIL import Image

        from kernelscope.plots import spirals as ps

        old = os.umask(0o022)
        try:
            p = ps.animate_embedding(small_run, tmp_path / "emb.gif")
            q = ps.animate_interpolation(small_run, tmp_path / "interp.gif", frames=5)
        finally:
            os.umask(old)
        # written by the one atomic writer (kernelscope._io): the umask's mode, not mkstemp's 0600
        assert stat.S_IMODE(p.stat().st_mode) == stat.S_IMODE(q.stat().st_mode) == 0o644
        with Image.open(p) as im:
            assert im.n_frames == len(small_run.snapshot_epochs)
            im.seek(0)
            first = np.asarray(im.convert("RGB")).copy()
            im.seek(im.n_frames - 1)
            last = np.asarray(im.convert("RGB"))
            assert first.shape == last.shape and (first != last).mean() > 0.01
        with Image.open(q) as im:
            assert im.n_frames == 8  # 5 there, 3 back
        assert p.stat().st_size < 5e6 and q.stat().st_size < 5e6
        assert not list(tmp_path.glob(".*.gif"))  # no temporary left behind


# --------------------------------------------------------------------------------------------------------------
# the chapter (tiny sizes) and the command line
# --------------------------------------------------------------------------------------------------------------

def test_chapter_tiny(tmp_path, monkeypatch):
    from kernelscope.chapters import ch60_spirals as ch
    from kernelscope.tour import run_tour

    tiny = dict(main=dict(classes=3, n_per_class=40, epochs=60, lr=1e-2, snapshots=5),
                sweep=dict(classes=3, n_per_class=30, epochs=30, lr=1e-2),
                fold=dict(depth=2, classes=3, n_per_class=30, epochs=50, lr=1e-2, restarts=1),
                regime=dict(widths=(8, 64), classes=3, n_per_class=15, n_test_per_class=20, steps=30))
    monkeypatch.setattr(ch, "_settings", lambda quick: tiny)
    res = run_tour(tmp_path, quick=True, only=["spirals"], progress=False)
    assert res.ok, res.failed
    out = json.loads((tmp_path / "results.json").read_text())["chapters"]["spirals"]
    nums = out["numbers"]
    for key in ("train_accuracy", "test_accuracy", "width_sweep", "regime_table", "folding", "lecture_numbers"):
        assert key in nums
    lect = nums["lecture_numbers"]
    assert lect["svd_max_error"] < 1e-12 and lect["influence"]["widths"] == [2, 4, 8, 16, 32, 64, 100]
    assert lect["pieces"]["trained"][0] <= 4 and len(lect["class_vectors"]["gaps"]) == 3
    saved = json.loads((tmp_path / "steps" / "spirals-quick-seed0.json").read_text())["result"]
    assert [t["title"] for t in saved["tables"]] == ["Hidden-width sweep", "Where the kernel picture stops",
                                                     "Linear pieces and drag against the hidden width"]
    assert nums["width_sweep"]["widths"] == [2, 4, 8, 16, 32, 64, 100]
    assert len(nums["regime_table"]["rows"]) == 4 + 2
    assert len(out["findings"]) >= 12 and len(out["figures"]) == 12
    for f in out["figures"]:
        assert (tmp_path / f).stat().st_size > 1000
    # the sweep and the regime widths were checkpointed: a rerun would resume them
    assert (tmp_path / "steps" / "spirals-quick-seed0" / "width_100_weights.json").exists()
    assert (tmp_path / "steps" / "spirals-quick-seed0" / "regime_width_64.json").exists()


def _cli(argv, capsys):
    from kernelscope.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cli_spiral(tmp_path, capsys):
    code, out, err = _cli(["spiral", "--out", str(tmp_path), "--classes", "3", "-n", "40", "--epochs", "80",
                           "--lr", "0.01", "--width", "32", "--seed", "2", "--sweep", "2", "--sweep", "8",
                           "--no-progress", "--no-gif"], capsys)
    assert code == 0, err
    assert "train accuracy" in out
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["config"]["classes"] == 3 and res["config"]["width"] == 32 and res["config"]["seed"] == 2
    assert 0 <= res["final_train_accuracy"] <= 1 and res["width_sweep"]["widths"] == [2, 8]
    for name in res["figures"]:
        assert (tmp_path / name).exists()
    assert {"embedding.png", "input_regions.png", "interpolation.png", "width_sweep.png"} <= set(res["figures"])
    assert not list(tmp_path.glob("*.gif"))  # --no-gif


@pytest.mark.parametrize("args, name", [(["--classes", "1"], "classes"), (["--width", "0"], "width"),
                                        (["--noise", "-0.5"], "noise"), (["-n", "0"], "n_per_class"),
                                        (["--optimizer", "rmsprop"], "optimizer"), (["--sweep", "0"], "--sweep")])
def test_cli_spiral_bad_input(tmp_path, capsys, args, name):
    code, _, err = _cli(["spiral", "--out", str(tmp_path), "--epochs", "2", "-n", "5", "--no-progress", *args], capsys)
    assert code == 2
    assert err.startswith("kernelscope: error: ") and f"{name}:" in err and len(err.strip().splitlines()) == 1
