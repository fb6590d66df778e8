"""Tests of kernelscope.regression and kernelscope.solvers: scikit-learn's own estimator checks, KernelRidge and
GaussianProcessRegressor as references, the least-norm interpolant through the pseudoinverse, the solver
registry, and gradient_flow against its limits (t = 0, t → ∞), the matrix exponential and an ODE solver."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.integrate as si
import scipy.linalg as sla
import torch
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF as SkRBF
from sklearn.kernel_ridge import KernelRidge
from sklearn.utils.estimator_checks import parametrize_with_checks

import kernelscope as ks
import kernelscope._arrays as _arrays
from kernelscope import kernels as K
from kernelscope import solvers
from kernelscope._arrays import KernelscopeWarning, MemoryBudgetError, ValidationError
from kernelscope.regression import KernelRegressor, gradient_flow


@pytest.fixture
def reg_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = np.sin(X @ rng.standard_normal(4)) + 0.1 * rng.standard_normal(60)
    return X, y, rng.standard_normal((25, 4))


@parametrize_with_checks([KernelRegressor(), KernelRegressor(kernel="laplace", ridge=1e-3)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


class TestAgainstScikitLearn:
    @pytest.mark.parametrize("kernel,params,ridge", [
        ("rbf", None, 1e-3), ("rbf", {"gamma": 0.7}, 1e-2), ("linear", None, 0.5),
        ("poly", {"degree": 2, "coef0": 1.0}, 1e-2), ("laplace", {"gamma": 0.2}, 1e-4)])
    def test_predictions_equal_kernel_ridge(self, reg_data, kernel, params, ridge):
        X, y, Xt = reg_data
        sk_kernel = "laplacian" if kernel == "laplace" else ("polynomial" if kernel == "poly" else kernel)
        ref = KernelRidge(alpha=ridge, kernel=sk_kernel, **(params or {})).fit(X, y)
        model = KernelRegressor(kernel, ridge=ridge, kernel_params=params).fit(X, y)
        assert model.solver_ == "cholesky" and model.solver_info_["method"] == "cholesky"
        np.testing.assert_allclose(model.predict(Xt), ref.predict(Xt), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(model.dual_coef_, ref.dual_coef_, rtol=1e-7, atol=1e-9)

    def test_std_is_the_gaussian_process_posterior_std(self, reg_data):
        X, y, Xt = reg_data
        gp = GaussianProcessRegressor(SkRBF(length_scale=1.3), alpha=1e-2, optimizer=None).fit(X, y)
        mean_ref, std_ref = gp.predict(Xt, return_std=True)
        model = KernelRegressor(K.RBF(lengthscale=1.3), ridge=1e-2).fit(X, y)
        mean, std = model.predict(Xt, return_std=True)
        np.testing.assert_allclose(mean, mean_ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(std, std_ref, rtol=1e-7, atol=1e-9)
        # at the training points with a tiny ridge the latent std nearly vanishes
        _, std_train = KernelRegressor(K.RBF(lengthscale=1.3), ridge=1e-10).fit(X, y).predict(X, return_std=True)
        assert std_train.max() < 1e-3

    def test_multi_output_is_column_by_column(self, reg_data):
        X, y, Xt = reg_data
        Y = np.column_stack([y, y**2, -y])
        model = KernelRegressor("rbf", ridge=1e-3).fit(X, Y)
        pred, std = model.predict(Xt, return_std=True)
        assert pred.shape == std.shape == (25, 3) and model.dual_coef_.shape == (60, 3)
        for j in range(3):
            single = KernelRegressor("rbf", ridge=1e-3).fit(X, Y[:, j])
            np.testing.assert_allclose(pred[:, j], single.predict(Xt), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(std[:, 0], std[:, 2])

    def test_blocked_predictions_equal_one_block(self, reg_data, monkeypatch):
        X, y, Xt = reg_data
        model = KernelRegressor("rbf", ridge=1e-3).fit(X, y)
        whole, whole_std = model.predict(Xt, return_std=True)
        monkeypatch.setattr(K, "BLOCK_ELEMENTS", 4 * 60 * 7)  # 7 test rows per block
        part, part_std = model.predict(Xt, return_std=True)
        np.testing.assert_allclose(part, whole, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(part_std, whole_std, rtol=1e-12, atol=1e-14)


class TestLeastNorm:
    def test_ridge_zero_interpolates_with_the_pseudoinverse(self, reg_data):
        X, y, Xt = reg_data
        model = KernelRegressor("rbf", ridge=0.0, kernel_params={"gamma": 0.5}).fit(X, y)
        assert model.solver_info_["method"] == "pinv"
        np.testing.assert_allclose(model.predict(X), y, atol=1e-6)
        Kx = K.rbf(X, gamma=0.5)
        np.testing.assert_allclose(model.dual_coef_, np.linalg.pinv(Kx) @ y, rtol=1e-6, atol=1e-6)

    def test_singular_linear_kernel_gives_least_norm_least_squares(self, reg_data):
        # N = 60 > d = 4: K = XXᵀ has rank 4. f(x) = xᵀXᵀK⁺y = xᵀ X⁺y, the least-norm least-squares linear fit.
        X, y, Xt = reg_data
        model = KernelRegressor("linear", ridge=0).fit(X, y)
        w = np.linalg.lstsq(X, y, rcond=None)[0]
        np.testing.assert_allclose(model.predict(Xt), Xt @ w, rtol=1e-9, atol=1e-10)
        # the dual coefficients lie in the row space of K (orthogonal to its null space): α = K⁺y
        np.testing.assert_allclose(model.dual_coef_, np.linalg.pinv(X @ X.T) @ y, rtol=1e-7, atol=1e-9)

    def test_duplicate_points_ridge_zero(self):
        X = np.array([[0.0], [0.0], [1.0], [2.0]])
        y = np.array([1.0, 3.0, 0.0, 1.0])  # two labels at x = 0: the interpolant takes their mean
        model = KernelRegressor("rbf", ridge=0, kernel_params={"gamma": 1.0}).fit(X, y)
        np.testing.assert_allclose(model.predict(np.array([[0.0], [1.0], [2.0]])), [2.0, 0.0, 1.0], atol=1e-9)
        _, std = model.predict(X, return_std=True)
        np.testing.assert_allclose(std, 0.0, atol=1e-6)

    def test_non_positive_definite_system_falls_back_with_a_warning(self, reg_data):
        X, y, Xt = reg_data
        indefinite = lambda A, B: A @ B.T - 3.0  # not PSD: K − 3·11ᵀ has a large negative eigenvalue
        with pytest.warns(KernelscopeWarning, match="not positive definite"):
            model = KernelRegressor(indefinite, ridge=1e-3).fit(X, y)
        assert model.solver_info_["method"] == "pinv"
        Kx = X @ X.T - 3.0
        alpha = np.linalg.pinv(Kx + 1e-3 * np.eye(60)) @ y
        np.testing.assert_allclose(model.predict(Xt), (Xt @ X.T - 3.0) @ alpha, rtol=1e-7, atol=1e-8)


class TestKernelsAndNetworks:
    def test_kernel_object_callable_and_name_agree(self, reg_data):
        X, y, Xt = reg_data
        preds = [KernelRegressor(k, ridge=1e-2, kernel_params=p).fit(X, y).predict(Xt) for k, p in [
            ("rbf", {"gamma": 0.3}), (K.RBF(0.3), None), (lambda A, B: K.rbf(A, B, gamma=0.3), None)]]
        np.testing.assert_allclose(preds[1], preds[0], rtol=1e-12)
        np.testing.assert_allclose(preds[2], preds[0], rtol=1e-12)

    def test_composite_kernel_and_tensor_input(self, reg_data):
        X, y, Xt = reg_data
        k = 0.5 * K.RBF(0.3) + K.ArcCosine()
        model = KernelRegressor(k, ridge=1e-2).fit(torch.tensor(X), torch.tensor(y))
        Kx = k(X)
        alpha = np.linalg.solve(Kx + 1e-2 * np.eye(60), y)
        np.testing.assert_allclose(model.predict(Xt), k(Xt, X) @ alpha, rtol=1e-9, atol=1e-10)

    def test_network_kernel_ntk_and_nngp(self, reg_data):
        nets = pytest.importorskip("kernelscope.nets")
        X, y, Xt = reg_data
        net = nets.serial(nets.Dense(64, w_std=1.5, b_std=0.1), nets.ReLU(), nets.Dense(1, w_std=1.5, b_std=0.1))
        for use_nngp in (False, True):
            model = KernelRegressor(net, ridge=1e-3, nngp=use_nngp).fit(X, y)
            kxx, kxt = net.kernel(X), net.kernel(Xt, X)
            Kx = kxx.nngp if use_nngp else kxx.ntk
            Kt = kxt.nngp if use_nngp else kxt.ntk
            alpha = np.linalg.solve(Kx + 1e-3 * np.eye(60), y)
            mean, std = model.predict(Xt, return_std=True)
            np.testing.assert_allclose(mean, Kt @ alpha, rtol=1e-9, atol=1e-10)
            kdiag = net.kernel(Xt, diag=True)
            var = (kdiag.nngp if use_nngp else kdiag.ntk) - np.einsum("ij,ij->i", Kt @ np.linalg.inv(
                Kx + 1e-3 * np.eye(60)), Kt)
            np.testing.assert_allclose(std**2, np.maximum(var, 0), rtol=1e-6, atol=1e-9)

    def test_network_kernel_passes_the_contract(self, reg_data, monkeypatch):
        nets = pytest.importorskip("kernelscope.nets")
        from contract import check_kernel_contract
        from kernelscope.regression import MLPKernel, resolve_kernel

        X, _, Xt = reg_data
        net = nets.serial(nets.Dense(8, w_std=1.2, b_std=0.2), nets.Erf(), nets.Dense(1, w_std=1.2, b_std=0.2))
        for use_nngp in (False, True):
            for k in (resolve_kernel(net, nngp=use_nngp), MLPKernel(2, 1.3, 0.2, nngp=use_nngp)):
                def blocks(A, B, k=k):  # the same kernel filled 3 rows at a time
                    with monkeypatch.context() as m:
                        m.setattr(K, "BLOCK_ELEMENTS", 3 * len(B) * k.block_factor)
                        return k(A, B)

                check_kernel_contract(k, X[:20], Xt, diag=k.diag, blocks=blocks)

    def test_duck_typed_network(self, reg_data):
        X, y, Xt = reg_data

        class StandIn:  # anything with .kernel(x1, x2) -> .ntk / .nngp
            def kernel(self, x1, x2=None, diag=False):
                class Out:
                    pass

                out = Out()
                out.ntk, out.nngp = K.rbf(x1, x2, gamma=0.3), K.linear(x1, x2)
                return out

        ntk_pred = KernelRegressor(StandIn(), ridge=1e-2).fit(X, y).predict(Xt)
        nngp_pred = KernelRegressor(StandIn(), ridge=1e-2, nngp=True).fit(X, y).predict(Xt)
        np.testing.assert_allclose(ntk_pred, KernelRegressor("rbf", 1e-2, {"gamma": 0.3}).fit(X, y).predict(Xt),
                                   rtol=1e-12)
        np.testing.assert_allclose(nngp_pred, KernelRegressor("linear", 1e-2).fit(X, y).predict(Xt), rtol=1e-12)


class TestSolversAndErrors:
    def test_bad_parameters_are_value_errors(self, reg_data):
        X, y, _ = reg_data
        with pytest.raises(ValueError, match="ridge: expected a non-negative number"):
            KernelRegressor(ridge=-1.0).fit(X, y)
        with pytest.raises(ValueError, match="solver: expected one of 'auto', 'cholesky'"):
            KernelRegressor(solver="magic").fit(X, y)
        with pytest.raises(ValueError, match="kernel: expected one of"):
            KernelRegressor(kernel="gauss").fit(X, y)
        with pytest.raises(ValueError, match="kernel_params"):
            KernelRegressor(kernel="rbf", kernel_params={"sigma": 1}).fit(X, y)
        with pytest.raises(ValueError, match="NaN"):
            KernelRegressor().fit(np.where(X > 2, np.nan, X), y)
        with pytest.raises(ValueError, match="inconsistent numbers of samples"):
            KernelRegressor().fit(X, y[:-1])

    def test_choose_refuses_what_does_not_fit(self, monkeypatch):
        assert solvers.choose(1000) == "cholesky"
        with pytest.raises(MemoryBudgetError, match=r"160\.0 GB"):  # 2 N² float64 for N = 100 000
            solvers.choose(100_000, budget=10**9)
        for other in set(solvers.SOLVERS) - {"cholesky"}:  # with the dense solver alone: its own message
            monkeypatch.delitem(solvers.SOLVERS, other)
        with pytest.raises(MemoryBudgetError, match=r"dense Cholesky solver for N=100000 \(160.0 GB"):
            solvers.choose(100_000, budget=10**9)

    def test_auto_is_refused_up_front(self, reg_data, monkeypatch):
        X, y, _ = reg_data
        for other in set(solvers.SOLVERS) - {"cholesky"}:
            monkeypatch.delitem(solvers.SOLVERS, other)
        monkeypatch.setattr(_arrays, "memory_budget_bytes", lambda device=None: 1000)
        with pytest.raises(MemoryBudgetError, match="dense Cholesky solver for N=60"):
            KernelRegressor().fit(X, y)

    def test_registry_takes_new_solvers(self, reg_data, monkeypatch):
        X, y, Xt = reg_data
        calls = {}

        def fit_subset(kernel, Xs, Y, ridge, *, m=10):  # a crude solver: regression on the first m points
            calls["m"] = m
            C = Xs[:m]
            coef = torch.linalg.solve(kernel(C, C) + ridge * torch.eye(m, dtype=torch.float64), Y[:m])
            return solvers.SolverResult(centers=C, coef=coef, info={"solver": "subset"})

        monkeypatch.setitem(solvers.SOLVERS, "subset", fit_subset)
        model = KernelRegressor(ridge=1e-3, solver="subset", solver_options={"m": 12}).fit(X, y)
        assert calls["m"] == 12 and model.X_fit_.shape == (12, 4) and model.solver_info_ == {"solver": "subset"}
        ref = KernelRegressor(ridge=1e-3).fit(X[:12], y[:12]).predict(Xt)
        np.testing.assert_allclose(model.predict(Xt), ref, rtol=1e-10)
        with pytest.raises(ValueError, match="return_std"):
            model.predict(Xt, return_std=True)

    def test_top_level_names(self):
        assert ks.KernelRegressor is KernelRegressor and ks.gradient_flow is gradient_flow


class TestValidateOnce:
    """One fit validates its data and ridge once and reads the memory budget once: the solvers and every Dask
    tile use the unvalidated Kernel.matrix (issue 12)."""

    @pytest.fixture
    def counts(self, monkeypatch):
        from kernelscope import regression, scale
        from kernelscope.solvers import cg, nystrom

        counts = {"budget": 0, "validate_data": 0, "ridge": 0, "arrays": 0, "call": 0, "diag": 0, "matrix": 0}

        def counted(key, fn, only=None):
            def wrapper(*args, **kwargs):
                if only is None or only(*args, **kwargs):
                    counts[key] += 1
                return fn(*args, **kwargs)
            return wrapper

        monkeypatch.setattr(_arrays, "memory_budget_bytes", counted("budget", lambda device=None: 10**12))
        monkeypatch.setattr(regression, "validate_data", counted("validate_data", regression.validate_data))
        for mod in (regression, scale, cg, nystrom):
            monkeypatch.setattr(mod, "check_nonnegative", counted("ridge", mod.check_nonnegative,
                                                                  lambda v, name: name == "ridge"))
        for mod, name in ((K, "as_tensor"), (scale, "as_numpy"), (solvers.base, "as_numpy")):
            monkeypatch.setattr(mod, name, counted("arrays", getattr(mod, name)))
        for key, method in (("call", "__call__"), ("diag", "diag"), ("matrix", "matrix")):
            monkeypatch.setattr(K.Kernel, method, counted(key, getattr(K.Kernel, method)))
        return counts

    @pytest.mark.parametrize("solver,options", [
        ("auto", {}), ("cholesky", {}), ("cg", {"block": 16, "n_centers": 20}),
        ("cg", {"block": 16, "n_centers": 20, "persist": True}),
        ("nystrom", {"block": 16, "n_centers": 30, "sampling": "leverage"}),
        ("nystrom", {"n_centers": "auto", "block": 16})])
    def test_one_fit_validates_once_and_reads_the_budget_once(self, reg_data, counts, solver, options):
        X, y, _ = reg_data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KernelscopeWarning)
            KernelRegressor("rbf", ridge=1e-2, solver=solver, solver_options=options).fit(X, y)
        assert counts["budget"] == 1 and counts["validate_data"] == 1 and counts["ridge"] == 1, counts
        assert counts["arrays"] == 0 and counts["call"] == 0 and counts["diag"] == 0, counts
        assert counts["matrix"] >= (4 if solver in ("cg", "nystrom") else 1), counts  # tiles on Dask

    def test_a_given_budget_is_not_read(self, reg_data, counts):
        X, y, _ = reg_data
        KernelRegressor("rbf", solver="cg", solver_options={"memory_budget": 10**9, "n_centers": 20}).fit(X, y)
        assert counts["budget"] == 0 and counts["ridge"] == 1, counts

    def test_predict_validates_once_and_reads_the_budget_once(self, reg_data, counts, monkeypatch):
        X, y, Xt = reg_data
        model = KernelRegressor("rbf", ridge=1e-2).fit(X, y)
        counts.update(budget=0, validate_data=0, matrix=0)
        monkeypatch.setattr(K, "BLOCK_ELEMENTS", 4 * 60 * 5)  # 5 test rows per block: 5 blocks
        model.predict(Xt, return_std=True)
        assert counts["budget"] == 1 and counts["validate_data"] == 1 and counts["matrix"] == 5, counts
        assert counts["arrays"] == 0 and counts["call"] == 0 and counts["diag"] == 0, counts

    def test_public_solve_functions_still_validate(self, reg_data):
        from kernelscope.solvers.cg import cg_solve
        from kernelscope.solvers.nystrom import nystrom_solve

        X, y, _ = reg_data
        for solve in (cg_solve, nystrom_solve):
            with pytest.raises(ValidationError, match="ridge: expected a non-negative number"):
                solve(K.RBF(), X, y, -1.0)
            with pytest.raises(ValidationError, match="X: expected finite values"):
                solve(K.RBF(), np.where(X > 1, np.inf, X), y, 1.0)
            with pytest.raises(ValidationError, match="Y: expected 60 rows"):
                solve(K.RBF(), X, y[:5], 1.0)


class TestGradientFlow:
    @pytest.fixture
    def problem(self):
        rng = np.random.default_rng(3)
        X, Xt = rng.standard_normal((30, 3)), rng.standard_normal((12, 3))
        k = K.ArcCosine() + 0.1 * K.Linear()
        return k(X), k(Xt, X), rng.standard_normal(30), rng.standard_normal(30) * 0.1, rng.standard_normal(12) * 0.1

    def test_t0_is_the_initial_function_and_infinity_is_kernel_regression(self, problem):
        Th, Tx, y, f0, f0x = problem
        start = gradient_flow(Th, Tx, y, 0.0, f0_train=f0, f0_test=f0x)
        np.testing.assert_array_equal(start.train, f0)
        np.testing.assert_array_equal(start.test, f0x)
        end = gradient_flow(Th, Tx, y, np.inf, lr=0.3, f0_train=f0, f0_test=f0x)
        np.testing.assert_allclose(end.train, y, atol=1e-8)
        alpha = np.linalg.pinv(Th) @ (y - f0)
        np.testing.assert_allclose(end.test, f0x + Tx @ alpha, rtol=1e-7, atol=1e-8)
        late = gradient_flow(Th, Tx, y, 1e9, lr=0.3, f0_train=f0, f0_test=f0x)
        np.testing.assert_allclose(late.test, end.test, rtol=1e-7, atol=1e-8)

    def test_matches_matrix_exponential_and_an_ode_solver(self, problem):
        Th, Tx, y, f0, f0x = problem
        lr, t = 0.5, 0.8
        flow = gradient_flow(Th, Tx, y, t, lr=lr, f0_train=f0, f0_test=f0x)
        expm = np.eye(30) - sla.expm(-lr * Th * t)
        np.testing.assert_allclose(flow.train, f0 + expm @ (y - f0), rtol=1e-10, atol=1e-12)
        # the coupled ODE: df(X)/dt = −ηΘ(f(X) − y), df(x)/dt = −ηΘ(x, X)(f(X) − y)
        rhs = lambda _, f: np.concatenate([-lr * Th @ (f[:30] - y), -lr * Tx @ (f[:30] - y)])
        sol = si.solve_ivp(rhs, (0, t), np.concatenate([f0, f0x]), rtol=1e-12, atol=1e-13, method="DOP853")
        np.testing.assert_allclose(flow.train, sol.y[:30, -1], atol=1e-9)
        np.testing.assert_allclose(flow.test, sol.y[30:, -1], atol=1e-9)

    def test_small_t_is_accurate(self, problem):
        Th, Tx, y, _, _ = problem
        t = 1e-12  # f_t ≈ ηtΘy: expm1 keeps the relative accuracy that 1 − exp would lose
        flow = gradient_flow(Th, Tx, y, t, lr=2.0)
        np.testing.assert_allclose(flow.train, 2.0 * t * Th @ y, rtol=1e-9)
        np.testing.assert_allclose(flow.test, 2.0 * t * Tx @ y, rtol=1e-9)

    def test_times_stack_and_multi_output_and_torch(self, problem):
        Th, Tx, y, _, _ = problem
        Y = np.column_stack([y, -2 * y])
        ts = np.array([0.0, 0.1, 1.0, 10.0])
        flow = gradient_flow(Th, Tx, Y, ts)
        assert flow.train.shape == (4, 30, 2) and flow.test.shape == (4, 12, 2)
        for i, t in enumerate(ts):
            one = gradient_flow(Th, Tx, y, t)
            np.testing.assert_allclose(flow.train[i, :, 0], one.train, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(flow.test[i, :, 1], -2 * one.test, rtol=1e-12, atol=1e-14)
        tflow = gradient_flow(torch.tensor(Th), torch.tensor(Tx), torch.tensor(y), 1.0)
        assert isinstance(tflow.train, torch.Tensor) and isinstance(tflow.test, torch.Tensor)
        assert gradient_flow(Th, None, y, [1.0, 2.0]).test is None

    def test_singular_ntk_uses_the_range(self):
        rng = np.random.default_rng(4)
        X, Xt = rng.standard_normal((20, 3)), rng.standard_normal((5, 3))
        Th, Tx = X @ X.T, Xt @ X.T  # rank 3
        y = rng.standard_normal(20)
        flow = gradient_flow(Th, Tx, y, [5.0, np.inf])
        assert np.all(np.isfinite(flow.test)) and np.all(np.isfinite(flow.train))
        w = np.linalg.lstsq(X, y, rcond=None)[0]
        np.testing.assert_allclose(flow.test[1], Xt @ w, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(flow.train[1], X @ w, rtol=1e-8, atol=1e-10)  # projection of y on the range

    def test_bad_input(self, problem):
        Th, Tx, y, _, _ = problem
        with pytest.raises(ValidationError, match="t: expected times >= 0"):
            gradient_flow(Th, Tx, y, -1.0)
        with pytest.raises(ValidationError, match="k_train: expected a square"):
            gradient_flow(Th[:, :5], Tx, y, 1.0)
        with pytest.raises(ValidationError, match="k_test_train: expected 30 columns"):
            gradient_flow(Th, Tx[:, :5], y, 1.0)
        with pytest.raises(ValidationError, match="y_train: expected 30 rows"):
            gradient_flow(Th, Tx, y[:5], 1.0)
        with pytest.raises(ValidationError, match="lr"):
            gradient_flow(Th, Tx, y, 1.0, lr=0)
        with pytest.raises(ValidationError, match="f0_test"):
            gradient_flow(Th, Tx, y, 1.0, f0_test=np.zeros(3))


class TestCommandLine:
    @pytest.fixture
    def files(self, tmp_path):
        rng = np.random.default_rng(5)
        X = rng.uniform(-1, 1, (40, 2))
        y = np.sin(3 * X[:, 0]) + X[:, 1]
        Xt = rng.uniform(-1, 1, (9, 2))
        train = tmp_path / "train.csv"
        np.savetxt(train, np.column_stack([y, X]), delimiter=",", header="y,a,b", comments="")
        np.save(tmp_path / "test.npy", Xt)
        return tmp_path, X, y, Xt

    def run(self, args, capsys):
        from kernelscope.cli import main

        with pytest.raises(SystemExit) as exc:
            main(["regress", *args])
        cap = capsys.readouterr()
        return exc.value.code, cap.out, cap.err

    def test_predictions_and_std_equal_the_estimator(self, files, capsys):
        d, X, y, Xt = files
        code, out, err = self.run(["--train", str(d / "train.csv"), "--test", str(d / "test.npy"), "--kernel",
                                   "rbf", "--ridge", "1e-3", "--gamma", "2", "--target-col", "0",
                                   "--out", str(d / "pred.csv"), "--std"], capsys)
        assert code == 0, err
        model = KernelRegressor("rbf", ridge=1e-3, kernel_params={"gamma": 2.0}).fit(X, y)
        mean, std = model.predict(Xt, return_std=True)
        table = np.loadtxt(d / "pred.csv", delimiter=",", skiprows=1)
        np.testing.assert_allclose(table[:, 0], mean, rtol=1e-12)
        np.testing.assert_allclose(table[:, 1], std, rtol=1e-12)
        rmse = np.sqrt(np.mean((model.predict(X) - y) ** 2))
        assert f"train RMSE: {rmse:.6g}" in out

    def test_npy_output_and_test_targets(self, files, capsys):
        d, X, y, Xt = files
        yt = np.sin(3 * Xt[:, 0]) + Xt[:, 1]
        np.save(d / "test_with_y.npy", np.column_stack([Xt, yt]))
        np.save(d / "train.npy", np.column_stack([X, y]))
        code, out, _ = self.run(["--train", str(d / "train.npy"), "--test", str(d / "test_with_y.npy"),
                                 "--kernel", "poly", "--degree", "2", "--out", str(d / "p.npy")], capsys)
        assert code == 0 and "test RMSE" in out
        ref = KernelRegressor("poly", ridge=1e-3, kernel_params={"degree": 2}).fit(X, y).predict(Xt)
        np.testing.assert_allclose(np.load(d / "p.npy")[:, 0], ref, rtol=1e-12)

    @pytest.mark.parametrize("args,message", [
        (["--train", "missing.csv"], "--train: expected an existing file"),
        (["--kernel", "gauss"], "--kernel: expected one of"),
        (["--ridge", "-1"], "--ridge: expected a number >= 0"),
        (["--kernel", "rbf", "--degree", "3"], "rbf takes: --gamma, --lengthscale"),
        (["--target-col", "9"], "--target-col: expected a column index"),
    ])
    def test_errors_are_one_line_exit_2(self, files, capsys, args, message, monkeypatch):
        d, *_ = files
        monkeypatch.chdir(d)
        base = {"--train": "train.csv", "--test": "test.npy", "--out": "p.csv"}
        for flag, value in zip(args[::2], args[1::2]):
            base[flag] = value
        code, _, err = self.run([t for kv in base.items() for t in kv], capsys)
        assert code == 2
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err

    def test_mismatched_test_columns(self, files, capsys):
        d, *_ = files
        np.save(d / "wide.npy", np.ones((3, 5)))
        code, _, err = self.run(["--train", str(d / "train.csv"), "--test", str(d / "wide.npy")], capsys)
        assert code == 2 and "--test: expected 2 feature columns" in err


class TestChapterExperiments:
    def test_feature_map_equals_kernel_and_ridge_path(self):
        from kernelscope.data import regression_1d
        from kernelscope.experiments import kernels as ch

        x, y = regression_1d(15, noise=0.1, seed=0)
        grid = np.linspace(-1, 1, 50)[:, None]
        fm = ch.feature_map_vs_kernel(x, y, grid, degree=4)
        assert fm.max_difference < 1e-8 and fm.n_features == 5
        rp = ch.ridge_path(x, y, grid, np.sin(3 * grid[:, 0]), ridges=(1.0, 1e-2, 0.0))
        assert rp.train_rmse[0] > rp.train_rmse[1] > rp.train_rmse[2] and rp.train_rmse[2] < 1e-4
        assert rp.rkhs_norm2[0] < rp.rkhs_norm2[1] < rp.rkhs_norm2[2]

    def test_random_features_slope_is_minus_half(self):
        from kernelscope.data import regression_1d
        from kernelscope.experiments import kernels as ch

        x, y = regression_1d(20, noise=0.1, seed=1)
        grid = np.linspace(-1, 1, 40)[:, None]
        rf = ch.random_features_sweep(x, y, grid, [30, 100, 300, 1000, 3000], n_draws=6, example_k=(10,))
        assert -0.7 < rf.slope < -0.35
        assert rf.error_mean[-1] < rf.error_mean[0] / 5


# ------------------------------------------------------------------------------------------------------------
# What a PyTorch / scikit-learn user expects (issue 17)
# ------------------------------------------------------------------------------------------------------------
def _toy(n=30, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, np.sin(X @ np.arange(1.0, d + 1)) + 0.1 * rng.normal(size=n)


def test_predict_tensor_in_tensor_out():
    X, y = _toy()
    model = KernelRegressor(K.RBF(lengthscale=1.0), ridge=1e-3, solver="cholesky").fit(X, y)
    Xt = torch.as_tensor(X[:5])
    mean, std = model.predict(Xt, return_std=True)
    assert isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor)
    assert mean.device == Xt.device and mean.shape == (5,) and std.shape == (5,)
    ref_mean, ref_std = model.predict(X[:5], return_std=True)
    np.testing.assert_allclose(mean.numpy(), ref_mean, rtol=1e-14)
    np.testing.assert_allclose(std.numpy(), ref_std, rtol=1e-14)
    assert isinstance(model.predict(Xt), torch.Tensor)


def test_grid_search_over_nested_kernel_parameters():
    from sklearn.model_selection import GridSearchCV

    X, y = _toy(40)
    search = GridSearchCV(KernelRegressor(K.RBF(lengthscale=1.0), ridge=1e-2),
                          {"kernel__lengthscale": [0.1, 0.5, 2.0]}, cv=3).fit(X, y)
    assert search.best_params_["kernel__lengthscale"] in (0.1, 0.5, 2.0)
    search = GridSearchCV(KernelRegressor(K.RBF(lengthscale=1.0) + K.Linear(), ridge=1e-2),
                          {"kernel__k1__lengthscale": [0.5, 2.0]}, cv=3).fit(X, y)
    assert search.best_estimator_.kernel.k1.lengthscale == search.best_params_["kernel__k1__lengthscale"]


def test_sample_weight_matches_kernel_ridge():
    X, y = _toy(25)
    w = np.random.default_rng(1).uniform(0.2, 3.0, size=25)
    ref = KernelRidge(alpha=0.1, kernel="rbf", gamma=0.7).fit(X, y, sample_weight=w)
    for solver in ("cholesky", "cg"):
        model = KernelRegressor("rbf", ridge=0.1, kernel_params={"gamma": 0.7}, solver=solver,
                                solver_options={"tol": 1e-13} if solver == "cg" else None)
        model.fit(X, y, sample_weight=w)
        np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=1e-10, atol=1e-10)
    # weight 2 is the same as the point twice; the error bars see the noise λ/w
    m2 = KernelRegressor("rbf", ridge=0.1, kernel_params={"gamma": 0.7}).fit(X, y, sample_weight=np.full(25, 2.0))
    md = KernelRegressor("rbf", ridge=0.1, kernel_params={"gamma": 0.7}).fit(np.vstack([X, X]), np.r_[y, y])
    Xq = X[:4] + 0.3
    for a, b in zip(m2.predict(Xq, return_std=True), md.predict(Xq, return_std=True)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_a_weighted_fit_takes_the_kernels_own_diagonal():
    # leverage sampling needs k(x, x) of the weighted kernel: from the kernel's diag_fn, not from matrix blocks
    X, y = _toy(60)
    calls = []

    def diag_fn(A):
        calls.append(len(A))
        return torch.ones(len(A), dtype=torch.float64)

    kern = K.CallableKernel(lambda A, B: K.RBF(0.7).matrix(A, B), diag_fn=diag_fn)
    w = np.random.default_rng(2).uniform(0.5, 2.0, size=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KernelscopeWarning)
        KernelRegressor(kern, ridge=0.1, solver="nystrom",
                        solver_options={"n_centers": 20, "sampling": "leverage", "block": 16}).fit(X, y, w)
    assert calls and sum(calls) >= 60, calls


# ------------------------------------------------------------------------------------------------------------
# Gaussian-process evidence, hyperparameter fitting and samples (issue 17)
# ------------------------------------------------------------------------------------------------------------
def _sk_gpr(c, ell, noise, optimizer=None):
    from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel

    return GaussianProcessRegressor(ConstantKernel(c) * SkRBF(ell) + WhiteKernel(noise), alpha=0.0,
                                    optimizer=optimizer)


def test_log_marginal_likelihood_matches_sklearn_gpr():
    X, y = _toy(30)
    ref = _sk_gpr(1.7, 0.8, 0.05).fit(X, y).log_marginal_likelihood_value_
    model = KernelRegressor(1.7 * K.RBF(lengthscale=0.8), ridge=0.05, solver="cholesky").fit(X, y)
    assert model.log_marginal_likelihood() == pytest.approx(ref, rel=1e-10, abs=1e-10)
    Y2 = np.c_[y, np.cos(X[:, 0])]  # a sum over targets, as scikit-learn
    ref2 = _sk_gpr(1.0, 0.5, 0.1).fit(X, Y2).log_marginal_likelihood_value_
    assert KernelRegressor(K.RBF(lengthscale=0.5), ridge=0.1).fit(X, Y2).log_marginal_likelihood() == \
        pytest.approx(ref2, rel=1e-10)


def test_lml_gradient_matches_finite_differences():
    X, y = _toy(20)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    kern = 1.3 * K.RBF(lengthscale=0.7) + K.Laplace(gamma=0.4)
    names = ["k1__scale", "k1__kernel__lengthscale", "k2__gamma"]
    z0 = torch.tensor([1.3, 0.7, 0.4, 0.05], dtype=torch.float64)

    def lml(z):
        return ks.regression.log_marginal_likelihood(kern.formula(Xt, Xt, dict(zip(names, z[:3]))), yt, z[3])

    z = z0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(lml(z), z)
    h = 1e-6
    fd = [(float(lml(z0 + h * e)) - float(lml(z0 - h * e))) / (2 * h) for e in torch.eye(4, dtype=torch.float64)]
    np.testing.assert_allclose(g.numpy(), fd, rtol=1e-6)


def test_optimised_lml_matches_sklearn_optimum():
    X, y = _toy(30)
    fit = ks.regression.fit_hyperparameters(1.0 * K.RBF(lengthscale=1.0), X, y, ridge=0.1)
    ref = _sk_gpr(1.0, 1.0, 0.1, optimizer="fmin_l_bfgs_b").fit(X, y)
    assert fit.log_marginal_likelihood >= fit.initial
    assert fit.log_marginal_likelihood == pytest.approx(ref.log_marginal_likelihood_value_, abs=1e-5)
    sk = ref.kernel_.get_params()
    assert fit.params["kernel__lengthscale"] == pytest.approx(sk["k1__k2__length_scale"], rel=1e-3)
    assert fit.ridge == pytest.approx(sk["k2__noise_level"], rel=1e-3)
    model = KernelRegressor(1.0 * K.RBF(lengthscale=1.0), ridge=0.1, optimize=True).fit(X, y)
    assert model.log_marginal_likelihood() == pytest.approx(fit.log_marginal_likelihood, abs=1e-8)
    assert model.ridge_ == pytest.approx(fit.ridge)


def test_network_hyperparameters_and_depth_by_evidence():
    X, y = _toy(15, d=2)
    kern = ks.regression.MLPKernel(depth=1, w_std=1.0, b_std=0.1, nngp=True)
    Xt = torch.as_tensor(X)
    # the finite-difference backward agrees with differences of the marginal likelihood itself
    theta = {"w_std": torch.tensor(1.2, dtype=torch.float64, requires_grad=True)}
    v = ks.regression.log_marginal_likelihood(kern.formula(Xt, Xt, theta), torch.as_tensor(y), 0.05)
    (g,) = torch.autograd.grad(v, theta["w_std"])
    f = lambda w: float(ks.regression.log_marginal_likelihood(  # noqa: E731
        kern.set_params(w_std=w).matrix(Xt, Xt), torch.as_tensor(y), 0.05))
    assert float(g) == pytest.approx((f(1.2 + 1e-5) - f(1.2 - 1e-5)) / 2e-5, rel=1e-5)
    fit = ks.regression.fit_hyperparameters(ks.regression.MLPKernel(1, 1.0, 0.1, nngp=True), X, y, ridge=0.05,
                                            grid={"depth": [1, 2, 3]}, max_iter=30)
    assert fit.log_marginal_likelihood >= fit.initial and fit.params["depth"] in (1, 2, 3)
    for depth in (1, 2, 3):  # the winner is at least as good as every depth at its optimum
        other = ks.regression.fit_hyperparameters(ks.regression.MLPKernel(depth, 1.0, 0.1, nngp=True), X, y,
                                                  ridge=0.05, max_iter=30)
        assert fit.log_marginal_likelihood >= other.log_marginal_likelihood - 1e-8


def test_sample_y_prior_and_posterior_moments():
    X, y = _toy(10, d=1)
    Xq = np.linspace(-1, 1, 4)[:, None]
    model = KernelRegressor(K.RBF(lengthscale=0.5), ridge=0.01)
    prior = model.sample_y(Xq, n_samples=4000, random_state=0)
    assert prior.shape == (4, 4000)
    np.testing.assert_allclose(np.cov(prior), K.rbf(Xq, lengthscale=0.5), atol=0.08)
    model.fit(X, y)
    post = model.sample_y(Xq, n_samples=4000, random_state=1)
    mean, std = model.predict(Xq, return_std=True)
    np.testing.assert_allclose(post.mean(1), mean, atol=4 * std.max() / np.sqrt(4000) + 1e-12)
    np.testing.assert_allclose(post.std(1), std, rtol=0.1, atol=1e-6)
    np.testing.assert_array_equal(model.sample_y(Xq, 3, random_state=5), model.sample_y(Xq, 3, random_state=5))
    assert isinstance(model.sample_y(torch.as_tensor(Xq), 2), torch.Tensor)


def test_precomputed_kernel_equals_the_kernel_itself(reg_data):
    X, y, Xt = reg_data
    k = K.Laplace(gamma=0.3)
    w = np.random.default_rng(5).uniform(0.5, 2.0, len(y))
    for sw in (None, w):
        pre = KernelRegressor("precomputed", ridge=1e-2).fit(k(X), y, sample_weight=sw)
        ref = KernelRegressor(k, ridge=1e-2).fit(X, y, sample_weight=sw)
        np.testing.assert_allclose(pre.predict(k(Xt, X)), ref.predict(Xt), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(pre.leave_one_out(), ref.leave_one_out(), rtol=1e-12, atol=1e-14)
    assert pre.log_marginal_likelihood() == pytest.approx(
        KernelRegressor(k, ridge=1e-2).fit(X, y).log_marginal_likelihood(), rel=1e-12)
    options = {"n_centers": 20}
    ny = KernelRegressor("precomputed", ridge=1e-2, solver="nystrom", solver_options=options).fit(k(X), y)
    assert ny.X_fit_.shape == (20, 1)  # the centers' indices
    ref = KernelRegressor(k, ridge=1e-2, solver="nystrom", solver_options=options).fit(X, y)
    np.testing.assert_allclose(ny.predict(k(Xt, X)), ref.predict(Xt), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValidationError, match=r"X: expected the square \(n_samples, n_samples\) training kernel"):
        KernelRegressor("precomputed").fit(X, y)
    with pytest.raises(ValidationError, match="return_std"):
        pre.predict(k(Xt, X), return_std=True)
    with pytest.raises(ValidationError, match="kernel: expected a kernel function"):
        pre.sample_y(k(Xt, X))
    with pytest.raises(ValidationError, match="leave_one_out: expected a fit with ridge > 0"):
        KernelRegressor(k, ridge=0.0).fit(X, y).leave_one_out()
    with pytest.raises(ValidationError, match="leave_one_out: expected a fit with ridge > 0"):
        KernelRegressor(k, ridge=1e-2, solver="cg").fit(X, y).leave_one_out()


def test_leave_one_out_is_refitting_without_each_point(reg_data):
    X, y, _ = reg_data
    Y = np.column_stack([y, np.cos(X[:, 0])])  # two targets
    model = KernelRegressor("rbf", ridge=1e-3).fit(X, Y)
    brute = np.stack([KernelRegressor("rbf", ridge=1e-3).fit(np.delete(X, i, 0), np.delete(Y, i, 0))
                      .predict(X[i:i + 1])[0] for i in range(len(y))])
    np.testing.assert_allclose(model.leave_one_out(), brute, rtol=1e-8, atol=1e-10)
