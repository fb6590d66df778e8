"""The primer (kernelscope.experiments.primer): each tool against an independent reference - the chain rule against
torch autograd and the closed form, power iteration against numpy's eig/eigh and scikit-learn's PCA, the
higher-derivative test against the derivatives by hand, Monte Carlo against closed forms and SciPy quadrature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kernelscope._arrays import ValidationError
from kernelscope.experiments import primer as E


class TestChainRule:
    def test_the_decks_example(self):
        ch = E.chain_rule(2.0, 1.0)
        assert ch.values == {"a": 2.0, "b": 1.0, "c": 3.0, "d": 2.0, "e": 6.0}
        assert ch.by_hand == {"a": 2.0, "b": 5.0} == ch.autograd == ch.closed_form
        # ∂e/∂b: two paths, b -> c -> e (∂e/∂c·∂c/∂b = d·1 = 2) and b -> d -> e (c·1 = 3)
        assert sorted((tuple(p), v) for p, v in ch.paths["b"]) == [(("b", "c", "e"), 2.0), (("b", "d", "e"), 3.0)]
        assert ch.paths["a"] == [(["a", "c", "e"], 2.0)]
        assert sorted(ch.edges) == sorted([("c", "a", 1.0), ("c", "b", 1.0), ("d", "b", 1.0), ("e", "c", 2.0),
                                           ("e", "d", 3.0)])

    @pytest.mark.parametrize("a,b", [(-1.3, 0.7), (0.25, -4.0), (3.0, 3.0)])
    def test_by_hand_equals_autograd_and_closed_form(self, a, b):
        ch = E.chain_rule(a, b)
        for v in "ab":
            assert ch.by_hand[v] == pytest.approx(ch.autograd[v], abs=1e-14)
            assert ch.by_hand[v] == pytest.approx(ch.closed_form[v], abs=1e-14)
            assert ch.by_hand[v] == pytest.approx(sum(p for _, p in ch.paths[v]), abs=1e-14)

    def test_node_graph_against_autograd(self):
        """A deeper graph with shared nodes and constants: Node.backward equals torch autograd."""
        rng = np.random.default_rng(0)
        for _ in range(5):
            x0, y0 = rng.standard_normal(2)

            def build(x, y):
                s = x * y + x
                return (s * (y + 3.0)) * x + 2.0 * s * s

            X, Y = E.Node(x0, "x"), E.Node(y0, "y")
            out = build(X, Y)
            grad = out.backward()
            tx = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
            ty = torch.tensor(y0, dtype=torch.float64, requires_grad=True)
            gx, gy = torch.autograd.grad(build(tx, ty), (tx, ty))
            assert out.value == pytest.approx(float(build(tx, ty).detach()), rel=1e-14)
            assert grad[id(X)] == pytest.approx(float(gx), rel=1e-12)
            assert grad[id(Y)] == pytest.approx(float(gy), rel=1e-12)


class TestEigenvectors:
    def test_shear_has_one_eigen_direction_and_power_iteration_creeps(self):
        sh = E.shear_eigenvectors(s=1.0)
        np.testing.assert_allclose(sh.eigenvalues, [1.0, 1.0], atol=1e-15)
        # numpy's two eigenvectors are (numerically) the same direction: the horizontal axis
        assert all(abs(v[1]) < 1e-12 for v in sh.eigenvectors.T)
        np.testing.assert_allclose(sh.angle, sh.angle_exact, rtol=1e-12, atol=1e-15)
        assert -1.02 < sh.slope < -0.95
        assert sh.angle[-1] == pytest.approx(1 / (sh.iterations[-1] * 1.0), rel=0.01)  # ≈ 1/(k s)
        np.testing.assert_allclose(np.linalg.norm(sh.iterates, axis=1), 1.0)
        np.testing.assert_allclose(sh.image, sh.S @ sh.circle)

    def test_shear_factor_sets_the_pace(self):
        a, b = E.shear_eigenvectors(s=1.0), E.shear_eigenvectors(s=4.0)
        assert b.angle[-1] == pytest.approx(a.angle[-1] / 4, rel=0.01)

    def test_digits_pca_equals_eigh_and_sklearn(self):
        from sklearn.decomposition import PCA

        from kernelscope import data

        pca = E.digits_pca(k=3)
        np.testing.assert_allclose(pca.eigenvalues_power, pca.eigenvalues_eigh, rtol=1e-10)
        assert np.all(1 - pca.cosine < 1e-9)
        X, y = data.digits()
        ref = PCA(n_components=3).fit(X)  # an independent reference: scikit-learn's SVD-based PCA
        np.testing.assert_allclose(pca.eigenvalues_power, ref.explained_variance_, rtol=1e-10)
        np.testing.assert_allclose(pca.explained, ref.explained_variance_ratio_, rtol=1e-10)
        np.testing.assert_allclose(np.abs(pca.components_power @ ref.components_.T), np.eye(3), atol=1e-6)
        assert pca.projection.shape == (len(y), 2) and np.array_equal(pca.labels, y)
        # the slowest component is the one with the smallest gap
        assert np.argmax(pca.iterations) == np.argmax(pca.gap_ratio)


class TestDerivativeTest:
    def test_maximum_inflection_minimum(self):
        t = E.derivative_test("x⁵/5 − x³/3")
        kinds = {round(p.x): p.kind for p in t.points}
        assert kinds == {-1: "maximum", 0: "inflection", 1: "minimum"}
        by_x = {round(p.x): p for p in t.points}
        # f' = x⁴ − x², f'' = 4x³ − 2x, f''' = 12x² − 2, f'''' = 24x, by hand
        np.testing.assert_allclose(by_x[-1].derivatives, [0.0, -2.0, 10.0, -24.0], atol=1e-12)
        np.testing.assert_allclose(by_x[1].derivatives, [0.0, 2.0, 10.0, 24.0], atol=1e-12)
        assert by_x[-1].order == by_x[1].order == 2 and by_x[0].order == 3
        assert by_x[0].second_derivative_says.startswith("silent") and abs(by_x[0].derivatives[2] + 2) < 1e-9
        assert abs(by_x[0].x) < 1e-9
        np.testing.assert_allclose(t.df, t.x**4 - t.x**2, atol=1e-12)
        np.testing.assert_allclose(t.d2f, 4 * t.x**3 - 2 * t.x, atol=1e-12)

    def test_second_derivative_cannot_see_the_minimum_of_x4(self):
        (p,) = E.derivative_test("x⁴").points
        assert p.kind == "minimum" and p.order == 4 and p.derivatives[3] == pytest.approx(24.0)
        assert p.second_derivative_says.startswith("silent") and abs(p.x) < 1e-7

    def test_unknown_function(self):
        with pytest.raises(ValidationError, match="name"):
            E.derivative_test("sin")


class TestSampling:
    def test_gaussian_pair_has_the_covariance(self):
        n = 200_000
        u, v = E.gaussian_pair(-0.6, n, seed=3)
        C = np.cov(u, v)
        np.testing.assert_allclose(C, [[1, -0.6], [-0.6, 1]], atol=5 / math.sqrt(n))
        with pytest.raises(ValidationError, match="rho"):
            E.gaussian_pair(1.5, 10)

    def test_relu_moments_against_quadrature(self):
        from scipy import integrate

        for rho in (-0.7, 0.0, 0.4, 0.95):
            s = math.sqrt(1 - rho**2)

            def pdf(v, u, rho=rho, s=s):
                return math.exp(-(u * u - 2 * rho * u * v + v * v) / (2 * s * s)) / (2 * math.pi * s)

            m1 = integrate.dblquad(lambda v, u: u * v * pdf(v, u), 0, 12, 0, 12, epsabs=1e-13)[0]
            m2 = integrate.dblquad(lambda v, u: (u * v) ** 2 * pdf(v, u), 0, 12, 0, 12, epsabs=1e-13)[0]
            mean, var = E.relu_moments(rho)
            assert mean[0] == pytest.approx(m1, abs=1e-10)
            assert var[0] == pytest.approx(m2 - m1**2, abs=1e-9)

    def test_sample_mean_error_is_sigma_over_root_k(self):
        r = E.sample_mean_rate(rho=0.3, ks=(10, 100, 1000), repeats=400, seed=1)
        assert -0.58 < r.slope < -0.42
        # the RMS of 400 means estimates σ/√k to about 1/√800 = 3.5% (relative)
        np.testing.assert_allclose(r.rms_error, r.sigma / np.sqrt(r.k), rtol=0.15)
        assert r.expectation == pytest.approx(float(E.relu_moments(0.3)[0][0]))

    def test_monte_carlo_dual_within_its_standard_error(self):
        d = E.dual_check(n=50_000, seed=2)
        assert np.all(np.abs(d.z) < 4)
        np.testing.assert_allclose(d.closed, E.relu_moments(d.rho)[0])
        # the closed form at ρ = 0: 1/(2π); at ρ = 1: E[relu(u)²] = 1/2
        assert d.closed_grid[100] == pytest.approx(1 / (2 * math.pi)) and d.closed_grid[-1] == pytest.approx(0.5)
        assert len(d.u) == len(d.v) == 1500

    def test_conditional_probability_by_counting(self):
        c = E.conditional_check(n=50_000, seed=4)
        np.testing.assert_allclose(c.exact_b_given_a, 1 - np.arccos(c.rho) / np.pi)
        np.testing.assert_allclose(c.exact_b_given_a, c.exact_ab / 0.5)  # P(B|A) = P(AB)/P(A), P(A) = ½
        assert np.all(np.abs(c.z) < 4) and c.bayes_gap < 1e-15
        np.testing.assert_allclose(c.p_a, 0.5, atol=4 * 0.5 / math.sqrt(c.n))
        np.testing.assert_allclose(c.p_b_given_a, c.p_ab / c.p_a, rtol=1e-12)


def test_primer_plots_draw():
    from kernelscope.plots import primer as P

    ch, sh, pca = E.chain_rule(), E.shear_eigenvectors(), E.digits_pca(k=2)
    dual, cond = E.dual_check(n=2000), E.conditional_check(n=2000)
    axes = [P.plot_computation_graph(ch), P.plot_shear(sh), P.plot_power_convergence(sh, pca),
            *P.plot_digits_pca(pca), P.plot_derivative_test(E.derivative_test("x⁴")),
            P.plot_sample_mean(E.sample_mean_rate(ks=(10, 100), repeats=20)), P.plot_gaussian_pair(dual),
            P.plot_dual_check(dual), P.plot_conditional(cond), P.plot_standard_errors(dual, cond)]
    assert all(a.figure is not None for a in axes)
    assert "∂e/∂b = 5" in axes[0].get_title()


def test_primer_chapter_opens_the_story(tmp_path):
    from kernelscope import tour

    assert tour.chapters()[0].key == "primer"
    res = tour.run_tour(tmp_path, only=["primer"], quick=True, progress=False, jobs=1)
    assert res.ok and res.done == ["primer"]
    import json

    ch = json.loads((tmp_path / "results.json").read_text())["chapters"]["primer"]
    assert ch["numbers"]["chain_rule"]["by_hand"] == {"a": 2.0, "b": 5.0}
    assert any("∂e/∂b = 5" in f for f in ch["findings"]) and len(ch["figures"]) == 6
    for f in ch["figures"]:
        assert (tmp_path / f).stat().st_size > 10_000
