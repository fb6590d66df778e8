"""ℓp norms and least-ℓp solutions (linsys), lasso/ridge paths, and the experiments of the chapter "learning"
against closed forms, scipy.optimize.linprog-free references (vertex enumeration, Hölder), scikit-learn and the
explicit Jacobian."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelscope import linsys
from kernelscope._arrays import KernelscopeWarning, ValidationError
from kernelscope.experiments import learning as E


@pytest.fixture(autouse=True)
def _quiet():
    from kernelscope._threads import torch_threads

    # many small torch steps: one intra-op thread, as the chapter runs them (a second one only synchronises)
    with warnings.catch_warnings(), torch_threads(1):
        warnings.simplefilter("ignore", KernelscopeWarning)
        yield


class TestNorms:
    def test_norms_against_numpy(self):
        rng = np.random.default_rng(0)
        X = rng.standard_normal((5, 7))
        for p in (1, 1.5, 2, 3, np.inf):
            np.testing.assert_allclose(linsys.norm(X, p), np.linalg.norm(X, p, axis=1), rtol=1e-13)
        assert linsys.norm([3.0, -4.0], 1) == 7.0 and linsys.norm([3.0, -4.0], "inf") == 4.0
        assert isinstance(linsys.norm(torch.tensor([[3.0, 4.0]]), 2), torch.Tensor)
        assert linsys.norm(np.array([1e200, 1e200]), 2) == pytest.approx(np.sqrt(2) * 1e200)  # no overflow
        with pytest.raises(ValidationError, match="p"):
            linsys.norm([1.0], 0.5)

    @pytest.mark.parametrize("p", [1, 2, np.inf, 3])
    def test_unit_sphere_has_norm_one(self, p):
        s = linsys.unit_sphere(p, 201)
        np.testing.assert_allclose(linsys.norm(s, p), 1.0, rtol=1e-13)
        np.testing.assert_allclose(s[0], s[-1], atol=1e-15)
        if p in (1, np.inf):  # the corners are on the curve
            corners = [[1, 0], [0, 1]] if p == 1 else [[1, 1], [-1, 1]]
            for c in corners:
                assert np.min(np.abs(s - c).max(axis=1)) < 1e-12


class TestMinNorm:
    def test_3x_4y_12(self):
        A, b = [[3.0, 4.0]], [12.0]
        r1, r2, ri = (linsys.min_norm(A, b, p) for p in (1, 2, np.inf))
        np.testing.assert_allclose(r1.x, [0.0, 3.0], atol=1e-12)
        np.testing.assert_allclose(r2.x, [36 / 25, 48 / 25], atol=1e-14)
        np.testing.assert_allclose(ri.x, [12 / 7, 12 / 7], atol=1e-12)
        assert r1.unique and ri.unique and r1.kind == "least_norm"

    @settings(max_examples=25, deadline=None)
    @given(st.integers(2, 6), st.integers(0, 2**16))
    def test_one_equation_holder(self, n, seed):
        """min ‖x‖_p subject to a·x = β is |β|/‖a‖_q (Hölder), 1/p + 1/q = 1."""
        rng = np.random.default_rng(seed)
        a = rng.standard_normal(n)
        beta = float(rng.standard_normal())
        for p, q in ((1, np.inf), (2, 2), (np.inf, 1)):
            r = linsys.min_norm(a[None, :], [beta], p)
            assert r.norm == pytest.approx(abs(beta) / np.linalg.norm(a, q), rel=1e-8, abs=1e-10)
            assert abs(a @ np.asarray(r.x) - beta) < 1e-9 * max(1.0, abs(beta))

    def test_l1_against_vertex_enumeration(self):
        """An ℓ1 minimiser sits at a basic solution: m columns of A, the others 0. Enumerate them all."""
        rng = np.random.default_rng(3)
        m, n = 3, 7
        A = rng.standard_normal((m, n))
        b = rng.standard_normal(m)
        best = min(np.abs(np.linalg.solve(A[:, list(c)], b)).sum() for c in itertools.combinations(range(n), m))
        r = linsys.min_norm(A, b, 1)
        assert r.norm == pytest.approx(best, rel=1e-9)
        assert np.count_nonzero(np.abs(np.asarray(r.x)) > 1e-9) <= m  # sparse
        np.testing.assert_allclose(A @ r.x, b, atol=1e-9)

    def test_inconsistent_system_minimises_over_least_squares_set(self):
        A = np.array([[1.0, 1.0], [1.0, 1.0]])
        b = np.array([1.0, 3.0])  # not in the column space: the least-squares set is x + y = 2
        r1 = linsys.min_norm(A, b, 1)
        r2 = linsys.min_norm(A, b, 2)
        assert r1.kind == "least_squares"
        np.testing.assert_allclose(r2.x, [1.0, 1.0], atol=1e-12)
        assert r1.norm == pytest.approx(2.0) and not r1.unique  # the whole segment has ℓ1 norm 2
        np.testing.assert_allclose(np.asarray(r1.x).sum(), 2.0, atol=1e-9)

    def test_torch_in_torch_out_and_errors(self):
        r = linsys.min_norm(torch.tensor([[3.0, 4.0]]), torch.tensor([12.0]), 1)
        assert isinstance(r.x, torch.Tensor)
        with pytest.raises(ValidationError, match="p"):
            linsys.min_norm([[1.0, 2.0]], [1.0], 3)
        with pytest.raises(ValidationError, match="b"):
            linsys.min_norm([[1.0, 2.0]], [1.0, 2.0], 1)


class TestPaths:
    def test_lasso_orthogonal_design_is_soft_thresholding(self):
        """XᵀX/N = I: the lasso solution is w = S(Xᵀy/N, α) coordinate by coordinate, in closed form."""
        rng = np.random.default_rng(0)
        Q, _ = np.linalg.qr(rng.standard_normal((40, 6)))
        X = np.sqrt(40) * Q  # XᵀX/N = I
        y = X @ np.array([2.0, 0, 0, -1.0, 0, 0.5]) + 0.1 * rng.standard_normal(40)
        c = X.T @ y / 40
        alphas = np.array([0.01, 3.0, 0.3, 0.0, 1.2])  # any order: reported as given
        path = linsys.lasso_path(X, y, alphas)
        for a, w in zip(alphas, path.coefs):
            np.testing.assert_allclose(w, np.sign(c) * np.maximum(np.abs(c) - a, 0.0), atol=1e-9)
        assert list(path.nonzeros) == [int((np.abs(c) > a).sum()) for a in alphas]
        assert path.iterations.shape == (5,) and path.iterations[3] >= 1  # α ≥ max|c|: w = 0 without a sweep

    def test_lasso_satisfies_its_optimality_conditions(self):
        rng = np.random.default_rng(1)
        X = rng.standard_normal((40, 6))
        y = X @ np.array([2.0, 0, 0, -1.0, 0, 0.5]) + 0.1 * rng.standard_normal(40)
        alphas = np.geomspace(1.0, 1e-3, 15)
        path = linsys.lasso_path(X, y, alphas)
        assert E.lasso_kkt_violation(X, y, alphas, path.coefs) < 1e-6
        assert path.nonzeros[0] < path.nonzeros[-1]
        # the check is not blind: a perturbed solution violates the conditions
        assert E.lasso_kkt_violation(X, y, alphas, path.coefs + 0.01) > 1e-3

    def test_lasso_convergence_warning_is_ours(self):
        rng = np.random.default_rng(2)
        X = rng.standard_normal((30, 8))
        X[:, 1] = X[:, 0] + 1e-6 * X[:, 1]  # nearly collinear: slow coordinate descent
        with pytest.warns(KernelscopeWarning, match="lasso_path: coordinate descent did not converge"):
            linsys.lasso_path(X, rng.standard_normal(30), [1e-6], tol=1e-16, max_iter=2)

    def test_ridge_matches_closed_form_and_sklearn(self):
        from sklearn.linear_model import Ridge

        rng = np.random.default_rng(1)
        X = rng.standard_normal((30, 5))
        y = rng.standard_normal(30)
        lams = np.array([0.0, 0.1, 10.0])
        path = linsys.ridge_path(X, y, lams)
        for lam, w in zip(lams, path.coefs):
            np.testing.assert_allclose(w, np.linalg.solve(X.T @ X + lam * np.eye(5), X.T @ y), rtol=1e-10)
        np.testing.assert_allclose(path.coefs[2], Ridge(alpha=10.0, fit_intercept=False).fit(X, y).coef_, rtol=1e-10)
        assert (path.nonzeros == 5).all()

    def test_one_equation_paths_end_at_least_l1_and_l2(self):
        res = E.least_norms()
        np.testing.assert_allclose(res.lasso.coefs[-1], [0.0, 3.0], atol=1e-4)
        np.testing.assert_allclose(res.ridge.coefs[-1], [36 / 25, 48 / 25], atol=1e-5)
        for k in res.norms:
            assert res.norms[k] == pytest.approx(res.exact[k], rel=1e-12)

    def test_errors(self):
        with pytest.raises(ValidationError, match="alphas"):
            linsys.lasso_path(np.eye(2), [1.0, 2.0], [-1.0])
        with pytest.raises(ValidationError, match="y"):
            linsys.ridge_path(np.eye(2), [1.0], [1.0])


class TestExperiments:
    def test_stationary_points_of_the_cubic(self):
        res = E.stationary_points()
        kinds = {tuple(np.round(p.x).astype(int)): p.kind for p in res.points}
        assert kinds == {(1, 1): "minimum", (-1, -1): "maximum", (1, -1): "saddle", (-1, 1): "saddle"}

    def test_momentum_escapes_where_descent_stays(self):
        res = E.momentum_escape()
        gd, mom = res.runs.values()
        glob = int(np.argmin([m.value for m in res.minima]))
        assert res.ends_in[list(res.runs)[0]] != glob and res.ends_in[list(res.runs)[1]] == glob
        assert gd.grad_norms[-1] < 1e-3 and mom.grad_norms[-1] < 1e-2

    def test_step_sizes_follow_the_closed_form(self):
        res = E.step_sizes(factors=(0.5, 0.99, 1.01), steps=40)
        np.testing.assert_allclose(res.error, res.predicted, rtol=1e-9)
        assert res.error[0, -1] < res.error[1, -1] < 1 < res.error[2, -1]

    def test_model_step_sizes_linear_model_threshold(self):
        res = E.model_step_sizes(factors=(0.9, 1.1), steps=150, width=8)
        lin = res.models[0]
        assert res.lambda_max[lin] == pytest.approx(res.lambda_dense[lin], rel=1e-8)
        assert np.isfinite(res.loss[lin][0]).all() and not np.isfinite(res.loss[lin][1]).all()

    def test_least_norm_link(self):
        res = E.least_norm_link(n=6, d=6, width=32, widths=(8, 256), max_steps=2000)
        assert res.rel_error < 1e-8 and res.null_fraction < 1e-10 and res.residual < 1e-8
        assert res.other_norm == pytest.approx(np.sqrt(2) * np.linalg.norm(res.dw_least_norm), rel=1e-10)
        assert res.least_norm == np.linalg.norm(res.dw_least_norm)
        assert res.net[256] < res.net[8]  # wider: lazier, closer to the linearised answer

    def test_gauss_newton_equals_ntk_at_interpolation(self):
        res = E.gauss_newton_spectrum(n=6, d=6, width=12, max_steps=2000)
        assert res.residual < 1e-6
        np.testing.assert_allclose(res.hessian_eigs[:res.n], res.ntk_eigs, rtol=1e-5)
        np.testing.assert_allclose(res.gauss_newton_eigs[:res.n], res.ntk_eigs, rtol=1e-9)
        assert res.rank == res.n and np.abs(res.hessian_eigs[res.n:]).max() < 1e-5 * res.ntk_eigs[0]
        assert res.top_lanczos == pytest.approx(res.hessian_eigs[0], rel=1e-8)
        # what the chapter reports: the top N against the NTK's, and the largest of the flat rest
        assert res.max_rel_eig_diff == np.max(np.abs(res.hessian_eigs[:res.n] - res.ntk_eigs) / res.ntk_eigs) < 1e-5
        assert res.flat_max == np.abs(res.hessian_eigs[res.n:]).max()

    def test_lift_separates_rings(self):
        res = E.lift(n=200)
        assert res.acc_plane < 0.7 and res.acc_lifted == 1.0 and res.radius is not None
        r = np.sqrt((res.X**2).sum(1))
        assert r[res.y == 1].max() < res.radius < r[res.y == 0].min()  # make_circles: class 1 is the inner ring

    def test_batch_sizes_count_steps_and_descend(self):
        from kernelscope.dynamics import mlp

        X = torch.randn(32, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        model = mlp(3, 8, seed=0)
        w0 = [p.detach().clone() for p in model.parameters()]
        res = E.batch_sizes(model, X, X[:, 0], batch_sizes=(0, 4, 1), lr=0.05, epochs=3)
        assert list(res.runs) == ["full batch (32)", "mini-batch (4)", "per sample (1)"]
        assert [list(r.updates) for r in res.runs.values()] == [[0, 1, 2, 3], [0, 8, 16, 24], [0, 32, 64, 96]]
        assert all(list(r.epochs) == [0, 1, 2, 3] and r.loss[-1] < r.loss[0] for r in res.runs.values())
        assert len({float(r.loss[0]) for r in res.runs.values()}) == 1  # the same start
        assert all(torch.equal(a, b) for a, b in zip(w0, model.parameters()))  # the model given is not trained

    def test_regression_batch_sizes_is_batch_sizes_on_the_sine_problem(self):
        """The chapter's problem: y = sin(x·v) on 5-D normal inputs drawn with the seed, a tanh net of width 32."""
        from kernelscope.dynamics import mlp

        res = E.regression_batch_sizes(n=64, batch_sizes=(0, 16), lr=0.2, epochs=2, seed=3)
        gen = torch.Generator().manual_seed(3)
        X = torch.randn(64, 5, generator=gen, dtype=torch.float64)
        y = torch.sin(X @ torch.randn(5, generator=gen, dtype=torch.float64))
        ref = E.batch_sizes(mlp(5, 32, activation="tanh", b_std=0.1, seed=3), X, y, batch_sizes=(0, 16), lr=0.2,
                            epochs=2, seed=3)
        assert list(res.runs) == list(ref.runs) == ["full batch (64)", "mini-batch (16)"]
        for a, b in zip(res.runs.values(), ref.runs.values()):
            np.testing.assert_array_equal(a.loss, b.loss)

    def test_full_batch_is_gradient_descent_on_the_flat_weights(self):
        """dynamics.train with B = N against optim.trajectory on model_loss (torch.func, a different code path)."""
        from kernelscope import optim
        from kernelscope.dynamics import mlp

        g = torch.Generator().manual_seed(1)
        X = torch.randn(12, 3, dtype=torch.float64, generator=g)
        y = torch.randn(12, dtype=torch.float64, generator=g)
        model = mlp(3, 6, activation="tanh", b_std=0.1, seed=2)
        run = E.train_epochs(model, X, y, batch_size=12, lr=0.1, epochs=15)
        L, theta0 = optim.model_loss(model, X, y, reduction="mean")
        tr = optim.trajectory(L, theta0, lr=0.1, steps=15, keep_points=False)
        np.testing.assert_allclose(run.loss, tr.values, rtol=1e-12)
        _, theta = optim.model_loss(run.model, X, y)
        np.testing.assert_allclose(theta.numpy(), tr.x, rtol=1e-10, atol=1e-13)

    def test_mini_batches_follow_seeded_permutations(self):
        """B = 3 of N = 8: each epoch a fresh permutation (seeded), ⌊8/3⌋ = 2 steps; against a plain torch loop."""
        from kernelscope.dynamics import mlp

        g = torch.Generator().manual_seed(3)
        X = torch.randn(8, 2, dtype=torch.float64, generator=g)
        y = torch.randint(0, 3, (8,), generator=g)
        model = mlp(2, 5, d_out=3, b_std=0.1, seed=4)
        run = E.train_epochs(model, X, y, batch_size=3, lr=0.3, epochs=3, loss="cross_entropy", seed=5)
        ref = mlp(2, 5, d_out=3, b_std=0.1, seed=4)
        opt = torch.optim.SGD(ref.parameters(), lr=0.3)
        perm = torch.Generator().manual_seed(5)
        for _ in range(3):
            order = torch.randperm(8, generator=perm)
            for s in (0, 3):
                idx = order[s:s + 3]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(ref(X[idx]), y[idx]).backward()
                opt.step()
        for a, b in zip(run.model.parameters(), ref.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
        with torch.no_grad():
            assert run.loss[-1] == pytest.approx(float(torch.nn.functional.cross_entropy(ref(X), y)), rel=1e-12)
        assert list(run.updates) == [0, 2, 4, 6] and list(run.grad_evals) == [0, 6, 12, 18]

    def test_divergence_stops_and_is_recorded(self):
        from kernelscope.dynamics import mlp

        X = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        run = E.train_epochs(mlp(3, 8, seed=0), X, 100 * X[:, 0], batch_size=16, lr=50.0, epochs=50)
        assert run.diverged_at is not None and len(run.loss) == run.diverged_at + 1 < 51
        assert not np.isfinite(run.loss[-1]) or run.loss[-1] > 1e12 * run.loss[0]

    def test_spiral_influence_is_the_ntk(self):
        from kernelscope import empirical
        from kernelscope.dynamics import mlp

        res = E.spiral_sgd(n_per_class=20, width=16, depth=2, epochs=2, resolution=12, batch_sizes=(0, 1))
        assert res.influence_init.shape == (2, 12, 12)
        model = mlp(2, 16, depth=2, d_out=3, b_std=0.1, seed=0)
        i = res.anchors[0]
        corner = np.array([[res.lims[0], res.lims[2]]])  # grid point (0, 0)
        K = float(np.asarray(empirical.ntk(model, corner, res.X[i:i + 1], trace=True))[0, 0])
        Kii = float(np.asarray(empirical.ntk(model, res.X[i:i + 1], trace=True))[0, 0])
        assert res.influence_init[0, 0, 0] == pytest.approx(K / Kii, rel=1e-10)
        assert set(res.accuracy) == {"full batch (60)", "per sample (1)"}
