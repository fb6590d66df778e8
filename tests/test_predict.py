"""kernelscope.predict: function-space dynamics against closed forms, autograd-trained linearised networks and
Monte Carlo over trained finite networks."""

import numpy as np
import pytest
import torch

from kernelscope import empirical, nets, predict
from kernelscope._arrays import ValidationError
from kernelscope.dynamics import train
from kernelscope.predict import gradient_flow


def _problem(n=12, m=5, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X, Xs = rng.standard_normal((n, d)), rng.standard_normal((m, d))
    net = nets.serial(nets.Dense(512, w_std=1.2, b_std=0.2), nets.ReLU(), nets.Dense(1, w_std=1.2, b_std=0.2))
    return net, X, Xs, net.kernel(X).ntk, net.kernel(Xs, X).ntk, rng


class TestGradientDescentMSE:
    def test_equals_gradient_flow(self):
        net, X, Xs, K, Kx, rng = _problem()
        y, f0, f0x = rng.standard_normal((12, 2)), rng.standard_normal((12, 2)), rng.standard_normal((5, 2))
        t = np.array([0.0, 0.1, 1.0, 7.0, np.inf])
        a = predict.gradient_descent(K, y, t, lr=0.3, k_test_train=Kx, f0_train=f0, f0_test=f0x)
        b = gradient_flow(K, Kx, y, t, lr=0.3, f0_train=f0, f0_test=f0x)
        np.testing.assert_allclose(a.train, b.train, rtol=0, atol=1e-8)
        np.testing.assert_allclose(a.test, b.test, rtol=0, atol=1e-8)

    def test_kernel_over_outputs_equals_tensor_product(self):
        net, X, Xs, K, Kx, rng = _problem()
        y = rng.standard_normal((12, 3))
        eye = np.eye(3)
        K4, Kx4 = np.einsum("ij,ab->ijab", K, eye), np.einsum("ij,ab->ijab", Kx, eye)
        a = predict.gradient_descent(K4, y, 2.0, k_test_train=Kx4)
        b = predict.gradient_descent(K, y, 2.0, k_test_train=Kx)
        np.testing.assert_allclose(a.train, b.train, atol=1e-10)
        np.testing.assert_allclose(a.test, b.test, atol=1e-10)

    def test_ode_meets_its_tolerance(self):
        """A callable squared loss goes through autograd and the ODE solver; the closed form is the reference."""
        net, X, Xs, K, Kx, rng = _problem()
        y = rng.standard_normal(12)
        t = np.array([0.5, 3.0, 20.0])
        for method in ("DOP853", "RK45"):
            ode = predict.gradient_descent(K, y, t, loss=lambda f, yy: 0.5 * ((f[:, 0] - yy) ** 2).sum(),
                                           k_test_train=Kx, method=method, rtol=1e-9, atol=1e-11)
            ref = gradient_flow(K, Kx, y, t)
            assert ode.train.shape == ref.train.shape == (3, 12)
            np.testing.assert_allclose(ode.train, ref.train, atol=1e-7)
            np.testing.assert_allclose(ode.test, ref.test, atol=1e-7)
            assert ode.info["steps"] > 0 and ode.info["method"] == method

    def test_momentum_is_a_damped_oscillator_per_eigenmode(self):
        """Closed form of f'' = −Θ(f − y) − γ f' in the eigenbasis of Θ (s = √η t, γ = (1 − μ)/√η, f'(0) = 0)."""
        net, X, Xs, K, Kx, rng = _problem()
        y = rng.standard_normal(12)
        lr, mu, t = 0.04, 0.8, np.array([1.0, 5.0, 30.0])
        got = predict.gradient_descent(K, y, t, lr=lr, momentum=mu, k_test_train=Kx)
        w, V = np.linalg.eigh(K)
        w = np.clip(w, 0, None)
        gamma = (1 - mu) / np.sqrt(lr)
        disc = np.sqrt((gamma**2 - 4 * w).astype(complex))
        s1, s2 = (-gamma + disc) / 2, (-gamma - disc) / 2  # roots of s² + γs + w
        r0 = V.T @ y  # residual y − f at s = 0, eigenbasis
        for k, tk in enumerate(t):
            s = np.sqrt(lr) * tk
            r = ((s2 * np.exp(s1 * s) - s1 * np.exp(s2 * s)) / (s2 - s1)).real * r0
            f = V @ (r0 - r)
            np.testing.assert_allclose(got.train[k], f, atol=1e-7)
            keep = w > 1e-10 * w.max()
            np.testing.assert_allclose(got.test[k], Kx @ V[:, keep] @ ((r0 - r)[keep] / w[keep]), atol=1e-6)

    def test_momentum_is_the_limit_of_heavy_ball(self):
        """Discrete heavy ball in function space (v ← μv − ηΘ(f − y), f ← f + v) converges to the ODE at time t."""
        net, X, Xs, K, Kx, rng = _problem()
        y = rng.standard_normal(12)
        mu, steps = 0.9, 400
        errs = []
        for lr in (1e-4, 2.5e-5):
            n_steps = int(steps * np.sqrt(1e-4 / lr))  # the same absolute time √η·t
            f, v = np.zeros(12), np.zeros(12)
            for _ in range(n_steps):
                v = mu * v - lr * K @ (f - y)
                f = f + v
            ref = predict.gradient_descent(K, y, n_steps, lr=lr, momentum=mu).train
            errs.append(np.abs(f - ref).max())
        assert errs[1] < 0.6 * errs[0] and errs[1] < 0.05 * np.abs(ref).max()


class TestGradientDescentCrossEntropy:
    @pytest.mark.slow
    def test_linearised_network_trained_by_autograd(self):
        """The empirical NTK (N, N, O, O) of a 3-output net: ODE vs its linearisation trained by small steps."""
        torch.manual_seed(0)
        net = nets.serial(nets.Dense(64, w_std=1.0, b_std=0.1), nets.ReLU(), nets.Dense(3, w_std=1.0, b_std=0.1))
        rng = np.random.default_rng(1)
        X, Xs = torch.as_tensor(rng.standard_normal((10, 2))), torch.as_tensor(rng.standard_normal((4, 2)))
        labels = torch.as_tensor(rng.integers(0, 3, 10))
        model = net.finite(seed=3, in_dim=2)
        with torch.no_grad():
            f0, f0x = model(X), model(Xs)
        K, Kx = empirical.ntk(model, X), empirical.ntk(model, Xs, X)  # (N, N, 3, 3), (M, N, 3, 3)
        lin = empirical.linearize(model)
        lr, steps = 1e-2, 100
        train(lin, X, labels, loss="cross_entropy", reduction="sum", lr=lr, steps=steps)
        with torch.no_grad():
            got_tr, got_te = lin(X), lin(Xs)
        ode = predict.gradient_descent(K, labels, float(steps), loss="cross_entropy", lr=lr, k_test_train=Kx,
                                       f0_train=f0, f0_test=f0x)
        assert isinstance(ode.train, torch.Tensor) and ode.train.shape == (10, 3)
        moved = (got_tr - f0).abs().max()
        assert moved > 0.5  # the outputs moved by O(1): not a trivial agreement
        # explicit Euler (gradient descent) vs the flow: an O(η) gap, here below 1% of the movement
        assert (ode.train - got_tr).abs().max() < 0.01 * moved
        assert (ode.test - got_te).abs().max() < 0.01 * moved

    def test_implicit_solvers_agree(self):
        net, X, Xs, K, Kx, rng = _problem()
        labels = rng.integers(0, 3, 12)
        t = np.array([0.5, 3.0])
        ref = predict.gradient_descent(K, labels, t, loss="cross_entropy", k_test_train=Kx, rtol=1e-10, atol=1e-12)
        for method in ("Radau", "BDF"):
            got = predict.gradient_descent(K, labels, t, loss="cross_entropy", k_test_train=Kx, method=method,
                                           rtol=1e-7, atol=1e-9)
            assert got.info["njev"] >= 1
            np.testing.assert_allclose(got.train, ref.train, atol=1e-5)
            np.testing.assert_allclose(got.test, ref.test, atol=1e-5)

    def test_one_hot_equals_labels_and_autograd(self):
        net, X, Xs, K, Kx, rng = _problem()
        labels = rng.integers(0, 4, 12)
        a = predict.gradient_descent(K, labels, 3.0, loss="cross_entropy", k_test_train=Kx)
        b = predict.gradient_descent(K, np.eye(4)[labels], 3.0, loss="cross_entropy", k_test_train=Kx)

        def ce(f, y):
            return -(torch.log_softmax(f, 1) * y).sum()

        c = predict.gradient_descent(K, np.eye(4)[labels], 3.0, loss=ce, k_test_train=Kx)
        np.testing.assert_allclose(a.train, b.train, atol=1e-12)
        np.testing.assert_allclose(a.train, c.train, atol=1e-6)
        np.testing.assert_allclose(a.test, c.test, atol=1e-6)
        # gradient flow lowers the loss
        assert (a.train.argmax(1) == labels).mean() > 0.5

    def test_validation(self):
        net, X, Xs, K, Kx, rng = _problem()
        with pytest.raises(ValidationError, match="loss"):
            predict.gradient_descent(K, np.zeros(12), 1.0, loss="hinge")
        with pytest.raises(ValidationError, match="t"):
            predict.gradient_descent(K, np.zeros(12, int), np.inf, loss="cross_entropy")
        with pytest.raises(ValidationError, match="momentum"):
            predict.gradient_descent(K, np.zeros(12), 1.0, momentum=1.5)
        with pytest.raises(ValidationError, match="k_test_train"):
            predict.gradient_descent(K, np.zeros(12), 1.0, k_test_train=Kx[:, :5])
        with pytest.raises(ValidationError, match="y_train"):
            predict.gradient_descent(K, np.zeros(11), 1.0)


class TestEnsemble:
    def test_prior_at_zero_and_posteriors_at_infinity(self):
        net, X, Xs, K, Kx, rng = _problem(n=8, m=4)
        y = rng.standard_normal(8)
        g0 = predict.ensemble(net, X, y, Xs, 0.0)
        np.testing.assert_allclose(g0.mean, 0.0, atol=1e-14)
        np.testing.assert_allclose(g0.covariance, net.kernel(Xs).nngp, atol=1e-12)
        KK, Kxx, Ktt = net.kernel(X).nngp, net.kernel(Xs, X).nngp, net.kernel(Xs).nngp
        gp = predict.ensemble(net, X, y, Xs, np.inf, kind="nngp")
        np.testing.assert_allclose(gp.mean, Kxx @ np.linalg.solve(KK, y), atol=1e-7)
        np.testing.assert_allclose(gp.covariance, Ktt - Kxx @ np.linalg.solve(KK, Kxx.T), atol=1e-7)
        nt = predict.ensemble(net, X, y, Xs, np.inf)
        np.testing.assert_allclose(nt.mean, Kx @ np.linalg.solve(K, y), atol=1e-7)
        A = Kx @ np.linalg.inv(K)
        np.testing.assert_allclose(nt.covariance, Ktt + A @ KK @ A.T - A @ Kxx.T - Kxx @ A.T, atol=1e-6)
        # ridge: kernel ridge regression; the variances alone equal the diagonal
        rr = predict.ensemble(net, X, y, Xs, [np.inf, 2.0], ridge=0.5, cov=False)
        np.testing.assert_allclose(rr.mean[0], Kx @ np.linalg.solve(K + 0.5 * np.eye(8), y), atol=1e-8)
        full = predict.ensemble(net, X, y, Xs, [np.inf, 2.0], ridge=0.5)
        np.testing.assert_allclose(rr.covariance, np.diagonal(full.covariance, axis1=1, axis2=2), atol=1e-10)

    def test_tensors_in_tensors_out(self):
        net, X, Xs, K, Kx, rng = _problem(n=6, m=3)
        g = predict.ensemble(net, torch.as_tensor(X), torch.as_tensor(rng.standard_normal((6, 2))),
                             torch.as_tensor(Xs), torch.tensor([0.5, 1.0]))
        assert isinstance(g.mean, torch.Tensor) and g.mean.shape == (2, 3, 2) and g.covariance.shape == (2, 3, 3)

    @pytest.mark.slow
    def test_monte_carlo_over_trained_finite_networks(self):
        """120 networks of width 512, each trained by gradient descent from its own initialisation: the sample mean
        and covariance of their test outputs match the ensemble's within a few standard errors."""
        net = nets.serial(nets.Dense(512, w_std=1.5, b_std=0.1), nets.ReLU(), nets.Dense(1, w_std=1.5, b_std=0.1))
        rng = np.random.default_rng(0)
        X, Xs = rng.standard_normal((6, 2)), rng.standard_normal((3, 2))
        y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
        lr = 0.5 / np.linalg.eigvalsh(net.kernel(X).ntk)[-1]
        steps, n_nets = 20, 120
        Xt, Xst, yt = torch.as_tensor(X), torch.as_tensor(Xs), torch.as_tensor(y)
        outs = []
        for seed in range(n_nets):
            model = net.finite(seed=seed, in_dim=2)
            train(model, Xt, yt, loss="mse", reduction="sum", lr=lr, steps=steps)
            with torch.no_grad():
                outs.append(model(Xst)[:, 0].numpy())
        F = np.array(outs)  # (n_nets, M)
        g = predict.ensemble(net, X, y, Xs, steps, lr=lr, discrete=True)
        mean, cov = F.mean(0), np.cov(F.T)
        se_mean = np.sqrt(np.diag(g.covariance) / n_nets)
        d = np.diag(g.covariance)
        se_cov = np.sqrt((np.outer(d, d) + g.covariance**2) / n_nets)
        assert np.all(np.abs(mean - g.mean) < 4 * se_mean), (mean, g.mean, se_mean)
        assert np.all(np.abs(cov - g.covariance) < 4 * se_cov), (cov, g.covariance, se_cov)
        # not trivially: training moved the mean far from the prior's 0
        assert np.abs(g.mean).max() > 10 * se_mean.max()


class TestRKC:
    """kernelscope._rkc: the Runge–Kutta–Chebyshev integrator behind predict.gradient_descent's stiff flows."""

    @staticmethod
    def _one_step_factor(z: float, s: int) -> float:
        """The amplification P_s(z) of one s-stage step of size 1 on y' = z y (the stability polynomial)."""
        from kernelscope._rkc import _coefficients

        mu1, stages = _coefficients(s)
        y0 = 1.0
        y_jm2, y_jm1 = y0, y0 + mu1 * z * y0
        for mu, nu, mut, gt, _c in stages:
            y_j = (1 - mu - nu) * y0 + mu * y_jm1 + nu * y_jm2 + mut * z * y_jm1 + gt * z * y0
            y_jm2, y_jm1 = y_jm1, y_j
        return y_jm1

    @pytest.mark.parametrize("s", [2, 3, 5, 10, 40, 200])
    def test_stability_interval_and_second_order(self, s):
        from kernelscope._rkc import stages_for

        # second order: P(z) = 1 + z + z²/2 + O(z³)
        for z in (-1e-3, -2e-3):
            assert abs(self._one_step_factor(z, s) - (1 + z + z * z / 2)) < 10 * abs(z) ** 3 * s**4
        # stable on the whole interval the step-size rule gives s stages for: |P(z)| ≤ 1 on [−h ρ, 0]
        h_rho = max(z for z in np.linspace(0, 0.7 * s * s, 4000) if stages_for(z) <= s)
        zs = np.linspace(-h_rho, 0, 2001)
        assert max(abs(self._one_step_factor(z, s)) for z in zs) <= 1.0 + 1e-12

    def test_stiff_linear_system_against_eigendecomposition(self):
        from kernelscope._rkc import rkc

        rng = np.random.default_rng(0)
        n = 60
        A = rng.standard_normal((n, n))
        K = torch.as_tensor(A @ A.T / n + 20 * np.ones((n, n)))  # λ_max ≈ 1200, λ_min ≈ 1e-3: stiff
        w, V = torch.linalg.eigh(K)
        y = torch.as_tensor(rng.standard_normal(n))
        t = np.array([0.01, 1.0, 50.0, 400.0])
        exact = torch.stack([V @ ((1 - torch.exp(-w * tt)) * (V.T @ y)) for tt in t])
        for rho in (float(w[-1]), None):  # a given bound, or power iteration
            out, info = rkc(lambda _t, f: -(K @ (f - y)), torch.zeros(n, dtype=torch.float64), t, rtol=1e-7,
                            atol=1e-9, spectral_radius=rho)
            assert (out - exact).abs().max() < 2e-5 * exact.abs().max()
            # a classical explicit method needs ≥ ρ t / 3 evaluations just to stay stable (≈ 1.6e5 here)
            assert info["nfev"] < 0.25 * float(w[-1]) * t[-1] / 3
            assert info["max_stages"] > 10

    def test_gradient_descent_rkc_mse_equals_closed_form(self):
        """A callable squared loss (power iteration for ρ) and 'auto' switching to RKC on a stiff flow."""
        net, X, Xs, K, Kx, rng = _problem()
        y = rng.standard_normal(12)
        t = np.array([0.5, 30.0, 3000.0])
        ref = gradient_flow(K, Kx, y, t)
        for method in ("RKC", "auto"):
            got = predict.gradient_descent(K, y, t, loss=lambda f, yy: 0.5 * ((f[:, 0] - yy) ** 2).sum(),
                                           k_test_train=Kx, method=method, rtol=1e-9, atol=1e-11)
            # 'auto' starts with DOP853 and hands the stiff tail to RKC
            assert got.info["method"] == "RKC" or got.info["method"].startswith("DOP853 -> RKC at t = ")
            np.testing.assert_allclose(got.train, ref.train, atol=1e-6)
            np.testing.assert_allclose(got.test, ref.test, atol=1e-6)

    def test_cross_entropy_rkc_agrees_with_dop853(self):
        net, X, Xs, K, Kx, rng = _problem()
        labels = rng.integers(0, 3, 12)
        t = np.array([0.2, 2.0, 40.0])
        a = predict.gradient_descent(K, labels, t, loss="cross_entropy", k_test_train=Kx, method="DOP853",
                                     rtol=1e-11, atol=1e-13)
        b = predict.gradient_descent(K, labels, t, loss="cross_entropy", k_test_train=Kx, method="RKC",
                                     rtol=1e-9, atol=1e-11)
        assert b.info["method"] == "RKC" and b.info["spectral_radius"] > 0
        np.testing.assert_allclose(b.train, a.train, atol=1e-6)
        np.testing.assert_allclose(b.test, a.test, atol=1e-6)
        # 'auto' on a short, non-stiff run keeps the high-order explicit method
        c = predict.gradient_descent(K, labels, 0.01, loss="cross_entropy", lr=1e-3, k_test_train=Kx)
        assert c.info["method"] == "DOP853"

    def test_rkc_refuses_momentum(self):
        net, X, Xs, K, Kx, rng = _problem()
        with pytest.raises(ValidationError, match="method"):
            predict.gradient_descent(K, np.zeros(12), 1.0, momentum=0.9, method="RKC")
        assert predict.gradient_descent(K, np.zeros(12), 1.0, momentum=0.9).info["method"] == "DOP853"
