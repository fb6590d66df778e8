"""Tests of kernelscope.kernels: scikit-learn's pairwise kernels, closed forms of the dual activations against
independent 1-D quadrature and Gauss–Hermite, feature maps (exact and Monte Carlo within standard errors), the
kernel contract, algebra, blocking, validation and memory refusal."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate as si
import scipy.stats as st
import torch
from sklearn.metrics import pairwise as skp

import kernelscope._arrays as _arrays
from contract import check_kernel_contract
from kernelscope import kernels as K
from kernelscope._arrays import MemoryBudgetError, ValidationError

EPS = np.finfo(np.float64).eps


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((23, 5)), rng.standard_normal((11, 5))


KERNEL_OBJECTS = {
    "linear": K.Linear(),
    "poly": K.Polynomial(),
    "poly2": K.Polynomial(2, gamma=0.5, coef0=2.0),
    "rbf": K.RBF(),
    "rbf_ell": K.RBF(lengthscale=0.7),
    "laplace": K.Laplace(0.3),
    "arccos0": K.ArcCosine(0),
    "arccos1": K.ArcCosine(1),
    "erf": K.Erf(),
    "sum": K.RBF(2.0) + K.Linear(),
    "product": K.Laplace() * K.Polynomial(2),
    "scaled": 3.0 * K.Erf(),
    "nested": 0.5 * (K.RBF() + K.ArcCosine()) * K.Linear(),
    "callable": K.CallableKernel(lambda A, B: (A @ B.T + 1.0) ** 2),
}


class TestContract:
    @pytest.mark.parametrize("name", sorted(KERNEL_OBJECTS))
    def test_contract(self, name, data, monkeypatch):
        X, Y = data
        k = KERNEL_OBJECTS[name]

        def blocks(A, B):  # the same kernel filled 3 rows at a time
            with monkeypatch.context() as m:
                m.setattr(K, "BLOCK_ELEMENTS", 3 * len(B) * k.block_factor)
                return k(A, B)

        check_kernel_contract(k, X, Y, diag=k.diag, blocks=blocks)

    @pytest.mark.parametrize("name", sorted(KERNEL_OBJECTS))
    def test_tensor_in_tensor_out_and_numpy_in_numpy_out(self, name, data):
        X, Y = data
        k = KERNEL_OBJECTS[name]
        Kn = k(X, Y)
        Kt = k(torch.tensor(X), torch.tensor(Y))
        assert isinstance(Kn, np.ndarray) and Kn.dtype == np.float64
        assert isinstance(Kt, torch.Tensor) and Kt.dtype == torch.float64
        np.testing.assert_allclose(Kt.numpy(), Kn, rtol=0, atol=1e-13 * max(1.0, np.abs(Kn).max()))
        assert isinstance(k.diag(torch.tensor(X)), torch.Tensor)
        # lists and float32 go in as float64
        np.testing.assert_allclose(k(X.tolist(), Y.tolist()), Kn, rtol=0, atol=0)


class TestAgainstScikitLearn:
    def test_linear(self, data):
        X, Y = data
        np.testing.assert_allclose(K.linear(X, Y), skp.linear_kernel(X, Y), rtol=1e-14, atol=1e-14)

    @pytest.mark.parametrize("params", [{}, {"degree": 2}, {"degree": 4, "gamma": 0.3, "coef0": 0.0},
                                        {"degree": 1, "gamma": 2.0, "coef0": -1.0}])
    def test_polynomial(self, data, params):
        X, Y = data
        ref = skp.polynomial_kernel(X, Y, **params)
        np.testing.assert_allclose(K.polynomial(X, Y, **params), ref, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(K.get("poly", **params)(X, Y), ref, rtol=1e-13, atol=1e-13)

    @pytest.mark.parametrize("gamma", [None, 0.01, 1.0, 5.0])
    def test_rbf(self, data, gamma):
        X, Y = data
        np.testing.assert_allclose(K.rbf(X, Y, gamma=gamma), skp.rbf_kernel(X, Y, gamma=gamma), rtol=1e-13,
                                   atol=1e-15)

    def test_rbf_lengthscale_is_gamma_half_inverse_square(self, data):
        X, Y = data
        np.testing.assert_allclose(K.rbf(X, Y, lengthscale=1.3), skp.rbf_kernel(X, Y, gamma=1 / (2 * 1.3**2)),
                                   rtol=1e-13, atol=1e-15)
        assert K.RBF(lengthscale=2.0).gamma == pytest.approx(0.125)

    @pytest.mark.parametrize("gamma", [None, 0.05, 2.0])
    def test_laplace(self, data, gamma):
        X, Y = data
        np.testing.assert_allclose(K.laplace(X, Y, gamma=gamma), skp.laplacian_kernel(X, Y, gamma=gamma),
                                   rtol=1e-13, atol=1e-15)

    def test_rbf_diagonal_is_exactly_one_and_no_negative_distances(self):
        # identical points at a large offset: rounding in ‖x‖² + ‖x'‖² − 2x·x' must not give k > 1
        X = np.full((4, 3), 1e4) + np.arange(4)[:, None] * 1e-9
        Kx = K.rbf(X, gamma=1.0)
        assert np.all(Kx <= 1.0) and np.all(np.isfinite(Kx))


def _relu_dual_quad(s11, s12, s22, order):
    """E[σ(u)σ(v)] by 1-D quadrature over u > 0 with the conditional law of v | u (independent of the code)."""
    s1, s2 = math.sqrt(s11), math.sqrt(s22)
    rho = s12 / (s1 * s2)
    cond_sd = s2 * math.sqrt(max(1 - rho * rho, 0.0))

    def integrand(u):
        m = rho * s2 / s1 * u  # E[v | u]
        if cond_sd == 0:
            ev = max(m, 0.0) if order == 1 else float(m > 0)
        elif order == 1:  # E[relu(v) | u] = m Φ(m/s) + s φ(m/s)
            ev = m * st.norm.cdf(m / cond_sd) + cond_sd * st.norm.pdf(m / cond_sd)
        else:  # P(v > 0 | u)
            ev = st.norm.cdf(m / cond_sd)
        return (u if order == 1 else 1.0) * ev * st.norm.pdf(u, scale=s1)

    val, _ = si.quad(integrand, 0, 40 * s1, epsabs=1e-14, epsrel=1e-13, limit=200)
    return val


def _gauss_hermite_2d(fn, s11, s12, s22, degree=240):
    """E[fn(u) fn(v)] for (u, v) ~ N(0, Σ) by tensor Gauss–Hermite quadrature on the Cholesky factor of Σ."""
    z, w = np.polynomial.hermite_e.hermegauss(degree)
    w = w / w.sum()
    L = np.linalg.cholesky(np.array([[s11, s12], [s12, s22]]) + 0 * np.eye(2))
    Z1, Z2 = np.meshgrid(z, z, indexing="ij")
    u = L[0, 0] * Z1
    v = L[1, 0] * Z1 + L[1, 1] * Z2
    return float(np.sum(np.outer(w, w) * fn(u) * fn(v)))


class TestDualActivations:
    @pytest.mark.parametrize("theta", [0.0, 0.3, 1.0, math.pi / 2, 2.5, math.pi])
    @pytest.mark.parametrize("norms", [(1.0, 1.0), (0.5, 3.0)])
    def test_arccos_closed_form_vs_quadrature(self, theta, norms):
        a, b = norms
        x = np.array([[a, 0.0]])
        xp = np.array([[b * math.cos(theta), b * math.sin(theta)]])
        s11, s22, s12 = a * a, b * b, a * b * math.cos(theta)
        for order in (0, 1):
            got = float(K.arccos_kernel(x, xp, order=order)[0, 0])
            assert got == pytest.approx(_relu_dual_quad(s11, s12, s22, order), rel=1e-9, abs=1e-12)

    def test_arccos_special_angles(self):
        # θ = 0: E[relu(u)²] = ‖x‖²/2; θ = π/2: ‖x‖‖x'‖/(2π); θ = π: 0
        x = np.array([[2.0, 0.0]])
        assert float(K.arccos_kernel(x, x)[0, 0]) == pytest.approx(2.0)
        assert float(K.arccos_kernel(x, np.array([[0.0, 3.0]]))[0, 0]) == pytest.approx(6 / (2 * math.pi))
        assert float(K.arccos_kernel(x, -x)[0, 0]) == pytest.approx(0.0, abs=1e-15)

    @pytest.mark.parametrize("cov", [(1.0, 0.3, 2.0), (0.2, -0.1, 0.5), (4.0, 3.9, 4.0), (1.0, 0.0, 1.0)])
    def test_erf_closed_form_vs_gauss_hermite(self, cov):
        s11, s12, s22 = cov
        t = lambda v: torch.tensor(v, dtype=torch.float64)
        got = float(K.erf_dual(t(s12), t(s11), t(s22)))
        ref = _gauss_hermite_2d(lambda z: __import__("scipy.special").special.erf(z), s11, s12, s22)
        assert got == pytest.approx(ref, abs=1e-10)

    def test_duals_are_kernels_of_the_features(self):
        # K.erf_kernel(X) uses Σ = x·x' (b ~ N(0, I)): compare one entry with the 2-D quadrature directly
        x, xp = np.array([[0.3, -0.4, 1.2]]), np.array([[0.5, 0.1, -0.7]])
        from scipy.special import erf
        ref = _gauss_hermite_2d(erf, (x @ x.T).item(), (x @ xp.T).item(), (xp @ xp.T).item())
        assert float(K.erf_kernel(x, xp)[0, 0]) == pytest.approx(ref, abs=1e-10)

    @pytest.mark.parametrize("fn", [K.arccos_kernel, K.erf_kernel,
                                    lambda A, B=None: K.arccos_kernel(A, B, order=0)])
    def test_zero_norm_identical_and_extreme_scales_give_no_nan(self, fn):
        X = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1e-160, 0.0], [1e150, -1e150], [-1.0, -1.0 + 1e-12]])
        Kx = fn(X)
        assert np.all(np.isfinite(Kx))
        np.testing.assert_allclose(Kx, Kx.T, rtol=1e-14, atol=0)
        for k in (K.ArcCosine(0), K.ArcCosine(1), K.Erf()):
            np.testing.assert_allclose(k.diag(X), np.diag(k(X)), rtol=1e-12, atol=0)

    def test_relu_derivative_kernel(self):
        # E[step(u)step(v)] = (π − θ)/(2π) → 1/2 for identical inputs, 1/4 for orthogonal, 0 for opposite
        t = lambda v: torch.tensor(v, dtype=torch.float64)
        assert float(K.relu_dual_derivative(t(1.0), t(1.0), t(1.0))) == pytest.approx(0.5)
        assert float(K.relu_dual_derivative(t(0.0), t(1.0), t(2.0))) == pytest.approx(0.25)
        assert float(K.relu_dual_derivative(t(-2.0), t(2.0), t(2.0))) == pytest.approx(0.0, abs=1e-15)


class TestFeatureMaps:
    @pytest.mark.parametrize("degree,gamma,coef0,d", [(0, None, 1.0, 3), (1, 0.5, 0.0, 4), (2, None, 1.0, 3),
                                                      (3, 0.7, 2.0, 4), (5, 0.2, 0.3, 2)])
    def test_polynomial_features_are_exact(self, degree, gamma, coef0, d):
        rng = np.random.default_rng(degree)
        X, Y = rng.standard_normal((9, d)), rng.standard_normal((7, d))
        P, Q = K.polynomial_features(X, degree, gamma, coef0), K.polynomial_features(Y, degree, gamma, coef0)
        assert P.shape == (9, math.comb(d + degree, degree)) == (9, K.n_polynomial_features(d, degree))
        Kref = ((1.0 / d if gamma is None else gamma) * X @ Y.T + coef0) ** degree  # sklearn refuses degree 0
        if degree >= 1:
            np.testing.assert_allclose(skp.polynomial_kernel(X, Y, degree=degree, gamma=gamma, coef0=coef0), Kref,
                                       rtol=1e-12)
        np.testing.assert_allclose(P @ Q.T, Kref, rtol=1e-12, atol=1e-12 * np.abs(Kref).max())

    def test_polynomial_features_refuse_negative_coef0(self):
        with pytest.raises(ValidationError, match="coef0"):
            K.polynomial_features(np.ones((2, 2)), 2, coef0=-1.0)

    @pytest.mark.parametrize("features,exact", [
        (lambda X, k, s: K.random_relu_features(X, k, seed=s), lambda X: K.arccos_kernel(X)),
        (lambda X, k, s: K.random_erf_features(X, k, seed=s), lambda X: K.erf_kernel(X)),
        (lambda X, k, s: K.random_fourier_features(X, k, gamma=0.4, seed=s), lambda X: K.rbf(X, gamma=0.4)),
    ])
    def test_random_features_converge_within_standard_errors(self, features, exact):
        rng = np.random.default_rng(1)
        X = rng.standard_normal((6, 3))
        k = 20000
        Phi = features(X, k, 3)  # (N, k) = φ_j(x)/√k
        terms = (Phi[:, None, :] * Phi[None, :, :]) * k  # (N, N, k): one sample per feature
        est = terms.mean(-1)
        se = terms.std(-1, ddof=1) / math.sqrt(k)
        z = np.abs(est - exact(X)) / np.maximum(se, 1e-300)
        assert np.all(z < 5.0), z.max()
        # the same seed gives the same map; another seed another one
        np.testing.assert_array_equal(features(X, 50, 3), features(X, 50, 3))
        assert not np.allclose(features(X, 50, 3), features(X, 50, 4))

    def test_random_features_error_shrinks_like_one_over_sqrt_k(self):
        X = np.random.default_rng(2).standard_normal((10, 3))
        ref = K.arccos_kernel(X)
        ks = np.array([100, 400, 1600, 6400])
        err = [np.mean([np.linalg.norm(K.random_relu_features(X, int(k), seed=s) @
                                       K.random_relu_features(X, int(k), seed=s).T - ref) for s in range(20)])
               for k in ks]
        slope = np.polyfit(np.log(ks), np.log(err), 1)[0]
        assert -0.65 < slope < -0.35


class TestAlgebraAndRegistry:
    def test_sum_product_scale(self, data):
        X, Y = data
        k1, k2 = K.RBF(0.5), K.Polynomial(2)
        np.testing.assert_allclose((k1 + k2)(X, Y), k1(X, Y) + k2(X, Y), rtol=1e-14)
        np.testing.assert_allclose((k1 * k2)(X, Y), k1(X, Y) * k2(X, Y), rtol=1e-14)
        np.testing.assert_allclose((2.5 * k1)(X, Y), 2.5 * k1(X, Y), rtol=1e-14)
        np.testing.assert_allclose((k1 * 2.5)(X, Y), 2.5 * k1(X, Y), rtol=1e-14)
        np.testing.assert_allclose((k1 + k2).diag(X), k1.diag(X) + k2.diag(X), rtol=1e-14)

    def test_repr_is_readable(self):
        assert repr(K.RBF(gamma=0.5)) == "RBF(gamma=0.5)"
        assert repr(2 * (K.RBF(lengthscale=1.0) + K.Linear())) == "2 * (RBF(lengthscale=1) + Linear())"
        assert repr(K.Polynomial(2) * K.Laplace()) == "Polynomial(degree=2, gamma=None, coef0=1) * Laplace(gamma=None)"

    def test_bad_algebra(self):
        with pytest.raises(ValidationError, match="scale a kernel"):
            K.RBF() + 1.0
        with pytest.raises(ValidationError, match="scale"):
            -1.0 * K.RBF()

    @pytest.mark.parametrize("name,cls", [("linear", K.Linear), ("poly", K.Polynomial), ("polynomial", K.Polynomial),
                                          ("RBF", K.RBF), ("laplace", K.Laplace), ("laplacian", K.Laplace),
                                          ("arccos", K.ArcCosine), ("erf", K.Erf)])
    def test_get_names(self, name, cls):
        assert isinstance(K.get(name), cls)

    def test_get_objects_callables_and_errors(self, data):
        X, Y = data
        k = K.RBF(0.2)
        assert K.get(k) is k
        np.testing.assert_allclose(K.get(skp.rbf_kernel, gamma=0.2)(X, Y), k(X, Y), rtol=1e-13)
        assert K.get("rbf", gamma=0.2) == k
        with pytest.raises(ValidationError, match="kernel: expected one of"):
            K.get("gaussian")
        with pytest.raises(ValidationError, match="kernel_params"):
            K.get("rbf", sigma=1.0)
        with pytest.raises(ValidationError, match="kernel_params"):
            K.get(k, gamma=1.0)
        with pytest.raises(ValidationError, match="kernel"):
            K.get(3)


class TestValidationAndMemory:
    def test_bad_inputs_name_the_argument(self):
        with pytest.raises(ValidationError, match="X1: expected a 2-D array"):
            K.rbf(np.ones(3))
        with pytest.raises(ValidationError, match="X2: expected 2 columns"):
            K.rbf(np.ones((3, 2)), np.ones((3, 4)))
        with pytest.raises(ValidationError, match="X1: expected finite values, got NaN"):
            K.linear(np.array([[1.0, np.nan]]))
        with pytest.raises(ValidationError, match="gamma"):
            K.RBF(gamma=-1.0)
        with pytest.raises(ValidationError, match="lengthscale"):
            K.RBF(gamma=1.0, lengthscale=1.0)
        with pytest.raises(ValidationError, match="degree"):
            K.Polynomial(2.5)

    def test_output_that_does_not_fit_is_refused_up_front(self, monkeypatch):
        monkeypatch.setattr(_arrays, "memory_budget_bytes", lambda device=None: 10_000)
        with pytest.raises(MemoryBudgetError, match=r"200×100 float64 kernel matrix needs 160.0 KB"):
            K.rbf(np.ones((200, 2)), np.ones((100, 2)))

    def test_blocked_fill_equals_one_block(self, data, monkeypatch):
        X, Y = data
        whole = (K.RBF() * K.Laplace() + K.Linear())(X, Y)
        monkeypatch.setattr(K, "BLOCK_ELEMENTS", 1)  # one row at a time
        np.testing.assert_allclose((K.RBF() * K.Laplace() + K.Linear())(X, Y), whole, rtol=0,
                                   atol=10 * EPS * np.abs(whole).max())


# ------------------------------------------------------------------------------------------------------------
# Parameter-aware kernels, the scikit-learn way (issue 17)
# ------------------------------------------------------------------------------------------------------------
def test_kernel_get_set_params_and_clone():
    from sklearn.base import clone

    k = K.RBF(lengthscale=1.0)
    assert k.get_params() == {"gamma": None, "lengthscale": 1.0}
    k2 = clone(k)
    assert k2 == k and k2 is not k
    k.set_params(lengthscale=0.5)
    assert k.gamma_for(3) == pytest.approx(2.0)
    k.set_params(gamma=3.0)  # switching from lengthscale to gamma clears the lengthscale
    assert k.get_params() == {"gamma": 3.0, "lengthscale": None}
    with pytest.raises(ValidationError, match="valid parameters.*gamma"):
        K.Laplace().set_params(lengthscale=1.0)
    with pytest.raises(ValidationError, match="lengthscale"):
        k.set_params(lengthscale=-1.0)


def test_nested_kernel_params_through_sum_product_scale():
    from sklearn.base import clone

    k = 2.0 * K.RBF(lengthscale=1.0) + K.Laplace(gamma=0.5) * K.Polynomial(degree=2)
    p = k.get_params()
    assert p["k1__scale"] == 2.0 and p["k1__kernel__lengthscale"] == 1.0
    assert p["k2__k1__gamma"] == 0.5 and p["k2__k2__degree"] == 2
    k.set_params(k1__kernel__lengthscale=0.25, k2__k2__degree=3)
    assert k.k1.kernel.lengthscale == 0.25 and k.k2.k2.degree == 3
    c = clone(k)
    X = np.random.default_rng(0).normal(size=(5, 2))
    np.testing.assert_allclose(c(X), k(X), rtol=1e-14)
    with pytest.raises(ValidationError, match="k3"):
        k.set_params(k3__gamma=1.0)


# ------------------------------------------------------------------------------------------------------------
# Kernel.formula: the one formula of each kernel (paired values, in place into out, differentiable in theta)
# ------------------------------------------------------------------------------------------------------------
class TestFormula:
    @pytest.mark.parametrize("name", sorted(KERNEL_OBJECTS))
    def test_paired_values_are_the_diagonal_of_the_cross_matrix(self, name, data):
        X, Y = (torch.tensor(a) for a in data)
        k = KERNEL_OBJECTS[name]
        A, B = X[:len(Y)], Y  # different points, same rows
        full = k.formula(A, B)  # (11, 11)
        np.testing.assert_allclose(k.formula(A, B, paired=True), torch.diagonal(full), rtol=0,
                                   atol=1e3 * EPS * float(full.abs().max()))

    @pytest.mark.parametrize("name", sorted(KERNEL_OBJECTS))
    def test_out_is_filled_and_returned_and_a_fresh_result_is_owned(self, name, data):
        X, Y = (torch.tensor(a) for a in data)
        k = KERNEL_OBJECTS[name]
        out = torch.full((len(X), len(Y)), np.nan, dtype=torch.float64)
        assert k.formula(X, Y, out=out) is out
        np.testing.assert_array_equal(out, k(X, Y))
        fresh = k.formula(X, Y)
        fresh.mul_(0.0)  # the caller owns it: nothing the kernel keeps changes
        np.testing.assert_array_equal(k.formula(X, Y), out)

    def test_a_callable_returning_its_own_tensor_is_copied(self, data):
        X, _ = (torch.tensor(a) for a in data)
        kept = torch.ones(len(X), len(X), dtype=torch.float64)
        k = K.CallableKernel(lambda A, B: kept) + K.Linear()  # the sum adds in place on the first result
        k.formula(X, X)
        np.testing.assert_array_equal(kept, torch.ones_like(kept))

    @pytest.mark.parametrize("kernel,theta", [
        (K.Polynomial(2, gamma=0.5, coef0=1.0), {"gamma": 0.3, "coef0": 2.0}),
        (K.RBF(lengthscale=1.0), {"lengthscale": 0.6}),
        (K.RBF(gamma=1.0), {"gamma": 0.4}),
        (K.Laplace(0.3), {"gamma": 0.8}),
        (2.0 * K.RBF(lengthscale=1.0) + K.Linear(), {"k1__scale": 1.5, "k1__kernel__lengthscale": 0.7}),
        (K.Laplace(0.5) * (3.0 * K.Erf()), {"k1__gamma": 0.2, "k2__scale": 0.5}),
    ])
    def test_theta_sets_the_hyperparameters_and_autograd_matches_differences(self, kernel, theta, data):
        from sklearn.base import clone

        X, Y = (torch.tensor(a) for a in data)
        names = sorted(theta)
        ref = clone(kernel).set_params(**theta)
        # floats in theta: the same matrix as the kernel with those values set
        np.testing.assert_allclose(kernel.formula(X, Y, theta), ref(X, Y), rtol=1e-14, atol=1e-15)
        z = torch.tensor([theta[n] for n in names], dtype=torch.float64, requires_grad=True)
        W = torch.as_tensor(np.random.default_rng(1).standard_normal((len(X), len(Y))))
        value = (W * kernel.formula(X, Y, dict(zip(names, z)))).sum()  # a scalar through every entry
        (grad,) = torch.autograd.grad(value, z)
        h = 1e-6
        for i, n in enumerate(names):
            up = (W * clone(kernel).set_params(**{**theta, n: theta[n] + h})(X, Y)).sum()
            down = (W * clone(kernel).set_params(**{**theta, n: theta[n] - h})(X, Y)).sum()
            assert float(grad[i]) == pytest.approx(float(up - down) / (2 * h), rel=1e-6, abs=1e-8), n
        assert kernel == clone(kernel)  # theta left the kernel itself alone

    def test_finite_difference_formula_agrees_with_autograd(self, data):
        X, Y = (torch.tensor(a) for a in data)
        kernel = K.RBF(lengthscale=1.0) * K.Polynomial(2, gamma=0.5)
        theta = {"k1__lengthscale": 0.8, "k2__gamma": 0.4}
        W = torch.as_tensor(np.random.default_rng(2).standard_normal((len(X), len(Y))))

        def grad(formula):
            z = torch.tensor(list(theta.values()), dtype=torch.float64, requires_grad=True)
            return torch.autograd.grad((W * formula(dict(zip(theta, z)))).sum(), z)[0]

        exact = grad(lambda t: kernel.formula(X, Y, t))
        differences = grad(lambda t: K.finite_difference_formula(kernel, X, Y, t))
        np.testing.assert_allclose(differences, exact, rtol=1e-8)
        np.testing.assert_allclose(K.finite_difference_formula(kernel, X, X, theta, paired=True),
                                   kernel.formula(X, X, theta, paired=True), rtol=1e-14)

    def test_a_callables_diag_fn_gives_the_diagonal_and_only_the_diagonal(self, data):
        X, Y = (torch.tensor(a) for a in data)
        calls = []

        def diag_fn(A):
            calls.append(len(A))
            return ((A * A).sum(1) + 1.0) ** 2

        k = K.CallableKernel(lambda A, B: (A @ B.T + 1.0) ** 2, diag_fn=diag_fn)
        np.testing.assert_allclose(k.diag(X), torch.diagonal(k(X)), rtol=1e-14)
        assert calls == [len(X)]
        A = X[:len(Y)]  # other points paired: from the matrix, not from diag_fn
        np.testing.assert_allclose(k.formula(A, Y, paired=True), torch.diagonal(k(A, Y)), rtol=1e-14)
        assert calls == [len(X)]
        bad = K.CallableKernel(lambda A, B: A @ B.T, diag_fn=lambda A: torch.ones(len(A) + 1))
        with pytest.raises(ValidationError, match=r"kernel: expected a diag_fn returning shape \(23,\)"):
            bad.diag(X)
