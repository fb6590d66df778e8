"""Conjugate gradients (Nyström-preconditioned, matrix-free) and the Nyström estimator, against dense solves."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import kernelscope as ks
from kernelscope import kernels, solvers
from kernelscope._arrays import KernelscopeWarning, MemoryBudgetError, ValidationError
from kernelscope.solvers.cg import (
    NystromPreconditioner,
    cg_solve,
    choose_scaleout,
    conjugate_gradient,
    nystrom_preconditioner,
)
from kernelscope.solvers.nystrom import default_n_centers, leverage_scores, nystrom_solve, sample_centers

EPS = np.finfo(np.float64).eps


def rbf(A, B, gamma=0.3):
    A, B = torch.as_tensor(A, dtype=torch.float64), torch.as_tensor(B, dtype=torch.float64)
    return torch.exp(-gamma * ((A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2 * A @ B.T).clamp_min(0))


def K_of(A, B=None):
    return rbf(A, A if B is None else B).numpy()


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 3))
    Y = np.stack([np.sin(X[:, 0]) + 0.1 * rng.normal(size=240), X[:, 1] * X[:, 2]], axis=1)
    return X, Y, rng.normal(size=(60, 3))


class TestConjugateGradient:
    def spd(self, n, cond, seed=0):
        rng = np.random.default_rng(seed)
        Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        return (Q * np.geomspace(1, cond, n)) @ Q.T

    def test_solves_spd_systems_columnwise(self):
        A = self.spd(40, 1e3)
        B = np.random.default_rng(1).normal(size=(40, 3))
        B[:, 2] = 0.0  # a zero column is solved by zero and must not spoil the others
        res = conjugate_gradient(lambda V: A @ V, B, tol=1e-12, max_iter=200)
        assert res.converged and res.residual <= 1e-12
        exact = np.linalg.solve(A, B)
        np.testing.assert_allclose(res.x, exact, rtol=0, atol=1e-9 * np.abs(exact).max())
        assert len(res.history) == res.n_iter + 1 and res.history[0] == 1.0

    def test_exact_preconditioner_converges_in_one_step(self):
        A = self.spd(30, 1e6)
        b = np.random.default_rng(2).normal(size=30)
        Ainv = np.linalg.inv(A)
        res = conjugate_gradient(lambda V: A @ V, b, precond=lambda V: Ainv @ V, tol=1e-8)
        assert res.n_iter == 1 and res.x.shape == (30,)

    def test_not_converged_warns_and_keeps_best_iterate(self):
        A = self.spd(60, 1e8)
        b = np.random.default_rng(3).normal(size=(60, 1))
        with pytest.warns(KernelscopeWarning, match=r"did not converge in 3 iterations.*relative residual") as w:
            res = conjugate_gradient(lambda V: A @ V, b, tol=1e-14, max_iter=3)
        assert not res.converged and res.n_iter == 3
        true = np.linalg.norm(A @ res.x - b) / np.linalg.norm(b)
        assert res.residual == min(res.history)
        np.testing.assert_allclose(true, res.residual, rtol=1e-6)
        assert f"{res.residual:.3e}" in str(w[0].message)


class TestPreconditioner:
    def test_full_rank_flattens_the_spectrum(self, problem):
        # With M = N centres, K̂ = K and P⁻¹(K + λI) = (λ_N + λ)·I (Frangella et al. 2023): condition number 1.
        X = problem[0][:80]
        ridge = 1e-2
        P = nystrom_preconditioner(rbf, X, ridge, X, block=32)
        K = K_of(X)
        A = P(K + ridge * np.eye(80))
        w = np.linalg.eigvals(A).real
        assert w.max() / w.min() < 1.0 + 1e-4
        # P⁻¹ is symmetric positive definite
        Pm = P(np.eye(80))
        np.testing.assert_allclose(Pm, Pm.T, atol=1e-10)
        assert np.linalg.eigvalsh((Pm + Pm.T) / 2).min() > 0

    def test_preconditioning_cuts_iterations(self, problem):
        X, Y, _ = problem
        ridge = 1e-4
        A = K_of(X) + ridge * np.eye(len(X))
        P = nystrom_preconditioner(rbf, X, ridge, X[::4], block=64)  # 60 centres
        plain = conjugate_gradient(lambda V: A @ V, Y, tol=1e-8, max_iter=2000)
        pre = conjugate_gradient(lambda V: A @ V, Y, precond=P, tol=1e-8)
        assert pre.converged and plain.converged
        assert pre.n_iter * 3 < plain.n_iter
        np.testing.assert_allclose(pre.x, plain.x, rtol=0, atol=1e-5 * np.abs(plain.x).max())

    def test_identity_when_rank_zero(self):
        P = NystromPreconditioner(np.zeros((5, 0)), np.zeros(0), 0.1)
        V = np.arange(10.0).reshape(5, 2)
        np.testing.assert_array_equal(P(V), V)


class TestCGSolve:
    @pytest.mark.parametrize("block", [40, 1000])
    def test_equals_dense_ridge_solution(self, problem, block):
        X, Y, Xt = problem
        ridge = 1e-3
        alpha = np.linalg.solve(K_of(X) + ridge * np.eye(len(X)), Y)
        sol = cg_solve(rbf, X, Y, ridge, tol=1e-12, block=block, n_centers=50)
        pred, exact = K_of(Xt, X) @ sol.coef, K_of(Xt, X) @ alpha
        assert np.linalg.norm(pred - exact) / np.linalg.norm(exact) < 1e-8
        info = sol.info
        assert info["converged"] and info["residual"] <= 1e-12 and info["tol"] == 1e-12
        assert len(info["residual_history"]) == info["n_iter"] + 1
        assert info["n_matvecs"] == info["n_iter"] and info["scheduler"] == "threads"

    def test_persisted_tiles_give_the_same_answer(self, problem):
        X, Y, _ = problem
        a = cg_solve(rbf, X, Y[:, 0], 1e-2, tol=1e-10, block=120, n_centers=60)
        b = cg_solve(rbf, X, Y[:, 0], 1e-2, tol=1e-10, block=120, n_centers=60, persist=True)
        np.testing.assert_allclose(b.coef, a.coef, rtol=1e-8, atol=1e-8 * np.abs(a.coef).max())

    def test_bad_input(self, problem):
        X, Y, _ = problem
        with pytest.raises(ValidationError, match="n_centers: expected at most the number of training points N = 240"):
            cg_solve(rbf, X, Y, 1e-3, n_centers=241)
        with pytest.raises(ValidationError, match="block"):
            cg_solve(rbf, X, Y, 1e-3, block=0)
        with pytest.raises(ValidationError, match="Y: expected 240 rows"):
            cg_solve(rbf, X, Y[:10], 1e-3)
        with pytest.raises(ValidationError, match="ridge"):
            cg_solve(rbf, X, Y, -1.0)
        with pytest.raises(ValidationError, match="max_iter"):
            cg_solve(rbf, X, Y, 1e-3, max_iter=0)

    def test_memory_refused_before_any_kernel_evaluation(self):
        def never(A, B):
            raise AssertionError("the kernel was evaluated before the memory check")

        X = np.zeros((100_000, 2))
        with pytest.raises(MemoryBudgetError, match=r"conjugate gradients on N = 100000.* needs [\d.]+ GB"):
            cg_solve(never, X, np.zeros(100_000), 1e-3, memory_budget=10**9)


class TestNystrom:
    def test_default_centres(self):
        assert default_n_centers(50) == 50
        assert default_n_centers(20_000) == 1401 and default_n_centers(200_000) == 5459

    # few centres on purpose
    @pytest.mark.filterwarnings("ignore:Nyström with M:kernelscope._arrays.KernelscopeWarning")
    def test_normal_equations_closed_form(self, problem):
        X, Y, Xt = problem
        ridge = 1e-2
        sol = nystrom_solve(rbf, X, Y, ridge, n_centers=40, seed=3, block=33)
        idx = sol.indices
        Knm, Kmm = K_of(X, X[idx]), K_of(X[idx])
        beta = np.linalg.solve(Knm.T @ Knm + ridge * Kmm, Knm.T @ Y)  # (K_nmᵀK_nm + λK_mm)β = K_nmᵀy
        np.testing.assert_allclose(K_of(Xt, sol.centers) @ sol.coef, K_of(Xt, X[idx]) @ beta, rtol=0, atol=1e-6)
        assert sol.coef.shape == (40, 2) and len(set(idx.tolist())) == 40

    def test_all_centres_is_exact_kernel_ridge(self, problem):
        X, Y, Xt = problem
        ridge = 0.1
        sol = nystrom_solve(rbf, X, Y, ridge, n_centers=len(X))
        exact = K_of(Xt, X) @ np.linalg.solve(K_of(X) + ridge * np.eye(len(X)), Y)
        assert np.linalg.norm(K_of(Xt, sol.centers) @ sol.coef - exact) / np.linalg.norm(exact) < 1e-6

    def test_effective_dimension_and_saturation_warning(self, problem):
        X, Y, _ = problem
        ridge = 1e-2
        ev = np.linalg.eigvalsh(K_of(X))
        exact = float(np.sum(ev / (ev + ridge)))  # d_eff(λ) = tr(K (K + λI)⁻¹)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # all centres: nothing is missed, no warning
            full = nystrom_solve(rbf, X, Y, ridge, n_centers=len(X))
        # The reduced matrix T⁻ᵀ K_nmᵀ K_nm T⁻¹ holds K² (condition number squared; eigenvalues of K reach 2e-11
        # here): its rounding moves d_eff by 3e-5 relative on this machine, 4e-4 on an H100 host's CPU BLAS
        assert abs(full.info["effective_dimension"] - exact) < 2e-3 * exact
        assert full.info["saturation"] == pytest.approx(exact / len(X), rel=2e-3)
        with pytest.warns(KernelscopeWarning, match=r"M = 12 centres.*saturated.*solver='cg'"):
            few = nystrom_solve(rbf, X, Y, ridge, n_centers=12, seed=0)
        assert 0.5 * 12 < few.info["effective_dimension"] <= 12
        with warnings.catch_warnings():  # a large ridge leaves the centres room to spare: no warning
            warnings.simplefilter("error")
            spare = nystrom_solve(rbf, X, Y, 30.0, n_centers=12, seed=0)
        assert spare.info["saturation"] < 0.5

    # few centres on purpose
    @pytest.mark.filterwarnings("ignore:Nyström with M:kernelscope._arrays.KernelscopeWarning")
    def test_error_shrinks_with_more_centres(self, problem):
        X, Y, Xt = problem
        exact = K_of(Xt, X) @ np.linalg.solve(K_of(X) + 1e-2 * np.eye(len(X)), Y[:, 0])
        errs = []
        for m in (10, 40, 160):
            sol = nystrom_solve(rbf, X, Y[:, 0], 1e-2, n_centers=m, seed=0)
            errs.append(np.linalg.norm(K_of(Xt, sol.centers) @ sol.coef[:, 0] - exact))
        assert errs[0] > errs[1] > errs[2]

    def test_leverage_scores_with_full_sketch_are_exact(self, problem):
        X = problem[0][:120]
        lam = 0.05
        K = K_of(X)
        exact = np.diag(K @ np.linalg.inv(K + lam * np.eye(120)))
        approx = leverage_scores(rbf, X, lam, n_sketch=120, seed=0, block=50)
        np.testing.assert_allclose(approx, exact, rtol=1e-4, atol=1e-6)
        assert abs(approx.sum() - np.trace(K @ np.linalg.inv(K + lam * np.eye(120)))) < 1e-3  # d_eff(λ)

    def test_leverage_sampling_prefers_isolated_points(self):
        # 200 points in a tight cluster and 10 far apart: the isolated ones have leverage ≈ 1 and are sampled.
        rng = np.random.default_rng(7)
        X = np.concatenate([0.01 * rng.normal(size=(200, 2)), 10 * np.arange(1, 11)[:, None] * np.ones((1, 2))])
        idx = sample_centers(rbf, X, 15, sampling="leverage", ridge=1e-3, seed=0, block=64)
        assert np.sum(idx >= 200) >= 9
        again = sample_centers(rbf, X, 15, sampling="leverage", ridge=1e-3, seed=0, block=64)
        np.testing.assert_array_equal(idx, again)

    def test_bad_input(self, problem):
        X, Y, _ = problem
        with pytest.raises(ValidationError,
                           match="n_centers: expected at most the number of training points N = 240, got M = 500"):
            nystrom_solve(rbf, X, Y, 1e-2, n_centers=500)
        with pytest.raises(ValidationError, match="n_centers"):
            nystrom_solve(rbf, X, Y, 1e-2, n_centers=0)
        with pytest.raises(ValidationError, match="sampling"):
            nystrom_solve(rbf, X, Y, 1e-2, sampling="random")
        with pytest.raises(ValidationError, match="block"):
            nystrom_solve(rbf, X, Y, 1e-2, block=-1)

    def test_memory_refused_before_any_kernel_evaluation(self):
        def never(A, B):
            raise AssertionError("the kernel was evaluated before the memory check")

        with pytest.raises(MemoryBudgetError,
                           match=r"Nyström solver with M = 5000 centres \(N = 200000\) needs [\d.]+ GB"):
            nystrom_solve(never, np.zeros((200_000, 2)), np.zeros(200_000), 1e-2, n_centers=5000,
                          memory_budget=10**9)


class TestRegistry:
    # few centres on purpose
    @pytest.mark.filterwarnings("ignore:Nyström with M:kernelscope._arrays.KernelscopeWarning")
    def test_registered_and_tensor_results(self, problem):
        X, Y, _ = problem
        Xt_, Yt_ = torch.as_tensor(X), torch.as_tensor(Y)
        k = kernels.get("rbf", gamma=0.3)
        for name, opts in [("cg", dict(tol=1e-10, n_centers=30)), ("nystrom", dict(n_centers=30))]:
            res = solvers.SOLVERS[name](k, Xt_, Yt_, 1e-2, **opts)
            assert isinstance(res.coef, torch.Tensor) and res.coef.dtype == torch.float64
            assert res.info["solver"] == name and res.variance is None and "seconds_fit" in res.info
        assert solvers.SOLVERS["cg"](k, Xt_, Yt_, 1e-2).centers is Xt_

    def test_solver_modules_import_the_registry_not_the_package(self):
        # solvers/__init__.py imports the solver modules; they take the registry from solvers.base: no import cycle
        import ast
        from pathlib import Path

        root = Path(solvers.__file__).parent
        assert {"cholesky", "cg", "nystrom"} <= set(solvers.SOLVERS)
        for path in root.glob("*.py"):
            if path.name == "__init__.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    names = {a.name for a in node.names}
                    package = (node.level == 1 and node.module is None  # from . import ...
                               or node.level == 2 and node.module is None and "solvers" in names
                               or node.module == "kernelscope.solvers"
                               or node.module == "kernelscope" and "solvers" in names)
                    assert not package, f"{path.name} imports the solvers package"
                    if path.name == "base.py":  # the registry imports no solver
                        assert node.level != 1, f"base.py imports .{node.module}"

    def test_choose_past_the_dense_budget(self, monkeypatch):
        monkeypatch.setattr(ks.scale, "n_workers", lambda: 2)  # the memory of tiles in flight: 2 threads, as here
        assert solvers.choose(1000, d=5, budget=10**9) == "cholesky"
        with pytest.warns(KernelscopeWarning, match=r"needs 6\.4 GB > the memory budget 1\.0 GB; using 'cg'"):
            assert solvers.choose(20_000, d=64, budget=10**9) == "cg"
        with pytest.warns(KernelscopeWarning, match="using 'nystrom' with M = 5459 centres"):
            assert solvers.choose(200_000, d=64, budget=6 * 10**9) == "nystrom"
        with pytest.raises(MemoryBudgetError, match=r"Nyström solver with M = \d+ centres for N = 10000000.* GB"):
            choose_scaleout(10**7, d=64, budget=10**9)


class TestKernelRegressor:
    @pytest.mark.parametrize("solver,opts,tol", [("cg", dict(tol=1e-12, n_centers=40), 1e-8),
                                                 ("nystrom", dict(n_centers=240), 1e-6)])
    def test_matches_cholesky(self, problem, solver, opts, tol):
        X, Y, Xt = problem
        exact = ks.KernelRegressor(kernel="rbf", kernel_params={"gamma": 0.3}, ridge=0.1, solver="cholesky")
        est = ks.KernelRegressor(kernel="rbf", kernel_params={"gamma": 0.3}, ridge=0.1, solver=solver,
                                 solver_options=opts)
        p0, p1 = exact.fit(X, Y).predict(Xt), est.fit(X, Y).predict(Xt)
        assert np.linalg.norm(p1 - p0) / np.linalg.norm(p0) < tol
        assert est.solver_ == solver and est.solver_info_["solver"] == solver
        if solver == "cg":
            assert est.solver_info_["converged"] and est.solver_info_["residual_history"][-1] <= 1e-12
        with pytest.raises(ValueError, match="return_std"):
            est.predict(Xt, return_std=True)

    def test_auto_says_which(self, problem, monkeypatch):
        from sklearn.base import clone

        X, Y, Xt = problem
        monkeypatch.setattr(solvers, "cholesky_bytes", lambda n: 1e15)  # as if K were a petabyte
        est = ks.KernelRegressor(kernel="rbf", ridge=0.1, solver_options=None)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            est.fit(X, Y[:, 0])
        assert est.solver_ == "cg" and any("using 'cg'" in str(x.message) for x in w)
        assert clone(est).get_params() == est.get_params()

    def test_nets_ntk(self, problem):
        from kernelscope import nets

        X, Y, Xt = problem
        net = nets.serial(nets.Dense(64, w_std=1.5, b_std=0.1), nets.ReLU(), nets.Dense(1, w_std=1.5, b_std=0.1))
        exact = ks.KernelRegressor(kernel=net, ridge=0.05, solver="cholesky").fit(X, Y).predict(Xt)
        cg = ks.KernelRegressor(kernel=net, ridge=0.05, solver="cg", solver_options=dict(tol=1e-12, block=50))
        p = cg.fit(X, Y).predict(Xt)
        assert np.linalg.norm(p - exact) / np.linalg.norm(exact) < 1e-8


def test_regression_nd_power_law_spectrum():
    X0, y0 = ks.data.regression_nd(50, 6, seed=3)
    rng = np.random.default_rng(3)
    _u, _v = rng.standard_normal(6), rng.standard_normal(6)  # the two directions regression_nd draws first
    np.testing.assert_array_equal(X0, rng.standard_normal((50, 6)) / np.sqrt(6))  # decay = 0: isotropic, as before
    X, _ = ks.data.regression_nd(40_000, 8, decay=2.0, seed=1)
    lam = np.arange(1, 9) ** -2.0
    eig = np.sort(np.linalg.eigvalsh(X.T @ X / len(X)))[::-1]
    np.testing.assert_allclose(eig, lam / lam.sum(), rtol=0.05)  # variances ∝ i^-2, summing to 1
    with pytest.raises(ValueError, match="decay"):
        ks.data.regression_nd(10, 3, decay=-1.0)


def test_nystrom_accuracy_follows_the_spectrum():
    """The same M = N/2 centres: within 1% of exact kernel ridge on power-law inputs (few effective dimensions),
    far from it on isotropic ones (a flat spectrum)."""
    k = kernels.get("rbf", gamma=0.1)
    errors = {}
    for decay in (0.0, 2.0):
        X, y = ks.data.regression_nd(2400, 64, noise=0.1, decay=decay, seed=0)
        X, Xt, y = X[:2000], X[2000:], y[:2000]
        lam = 1e-2
        exact = ks.KernelRegressor(k, ridge=lam).fit(X, y).predict(Xt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KernelscopeWarning)
            sol = nystrom_solve(k, X, y, lam, n_centers=1000, seed=0)
        pred = np.asarray(k(Xt, sol.centers)) @ sol.coef
        errors[decay] = (np.linalg.norm(pred.ravel() - exact) / np.linalg.norm(exact), sol.info["saturation"])
    assert errors[2.0][0] < 0.01 and errors[2.0][1] < 0.5
    assert errors[0.0][0] > 0.05 and errors[0.0][1] > 0.5


def test_nystrom_auto_centres_grow_until_the_span_is_not_saturated():
    k = kernels.get("rbf", gamma=0.1)
    X, y = ks.data.regression_nd(2300, 64, noise=0.1, decay=2.0, seed=0)
    X, Xt, y = X[:2000], X[2000:], y[:2000]
    exact = ks.KernelRegressor(k, ridge=1e-2).fit(X, y).predict(Xt)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelscopeWarning)  # no saturation warning: auto stops unsaturated
        sol = nystrom_solve(k, X, y, 1e-2, n_centers="auto")
    path = sol.info["n_centers_path"]
    assert [m for m, _ in path] == [default_n_centers(2000) * 2**i for i in range(len(path))]
    assert all(s > 0.25 for _, s in path[:-1]) and path[-1][1] <= 0.25
    assert sol.info["n_centers"] == path[-1][0] < 2000
    pred = (np.asarray(k(Xt, sol.centers)) @ sol.coef).ravel()
    assert np.linalg.norm(pred - exact) / np.linalg.norm(exact) < 0.01
    # the same through the estimator, and bad values named
    est = ks.KernelRegressor(k, ridge=1e-2, solver="nystrom", solver_options={"n_centers": "auto"}).fit(X, y)
    np.testing.assert_allclose(est.predict(Xt), pred, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="n_centers"):
        nystrom_solve(k, X, y, 1e-2, n_centers="many")


def test_nystrom_auto_on_a_flat_spectrum_ends_at_n_or_the_budget(monkeypatch):
    monkeypatch.setattr(ks.scale, "n_workers", lambda: 2)  # the budget below counts 2 threads' tiles
    k = kernels.get("rbf", gamma=0.1)
    X, y = ks.data.regression_nd(600, 64, noise=0.1, seed=0)  # isotropic: d_eff ≈ N at this ridge
    with pytest.warns(KernelscopeWarning, match="reached M = N"):
        sol = nystrom_solve(k, X, y, 1e-2, n_centers="auto")
    assert sol.info["n_centers"] == 600
    exact = ks.KernelRegressor(k, ridge=1e-2).fit(X, y)
    np.testing.assert_allclose(np.asarray(k(X[:50], sol.centers)) @ sol.coef[:, 0], exact.predict(X[:50]),
                               rtol=1e-6, atol=1e-8)
    # a budget that holds M = default but not 2·default: stops there, and says so
    m0 = default_n_centers(600)
    budget = solvers.nystrom.memory_needed(600, m0, 64, 1, 600, 2, 1) * 2
    with pytest.warns(KernelscopeWarning, match="would not fit the memory budget"):
        sol = nystrom_solve(k, X, y, 1e-2, n_centers="auto", memory_budget=budget)
    assert sol.info["n_centers"] < 600
