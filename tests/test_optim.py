"""kernelscope.optim against torch.autograd.functional, finite differences, closed forms and torch.optim.SGD."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kernelscope import optim
from kernelscope._arrays import KernelscopeWarning, ValidationError


def _small_model(d_in=3, width=6, d_out=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, d_out)).double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.7)
    return m


def _data(n=12, d_in=3, d_out=1, seed=1, labels=False):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    if labels:
        return X, torch.randint(0, d_out, (n,), generator=g)
    y = torch.randn(n, generator=g, dtype=torch.float64) if d_out == 1 else torch.randn(n, d_out, generator=g,
                                                                                          dtype=torch.float64)
    return X, y


def _reference_hessian(model, X, y, loss):
    """torch.autograd.functional.hessian over the parameter tensors, assembled into a (P, P) block matrix."""
    params = tuple(p.detach().clone() for p in model.parameters())
    names = [n for n, _ in model.named_parameters()]

    def L(*ps):
        out = torch.func.functional_call(model, dict(zip(names, ps)), (X,))
        if loss == "mse":
            return 0.5 * ((out.reshape(y.shape) - y) ** 2).sum()
        return torch.nn.functional.cross_entropy(out, y, reduction="sum")

    blocks = torch.autograd.functional.hessian(L, params)
    sizes = [p.numel() for p in params]
    return torch.cat([torch.cat([blocks[i][j].reshape(sizes[i], sizes[j]) for j in range(len(sizes))], 1)
                      for i in range(len(sizes))], 0)


def _fd_gradient(f, x, h=1e-6):
    g = torch.zeros_like(x)
    for j in range(x.numel()):
        e = torch.zeros_like(x)
        e[j] = h
        g[j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


SURFACE = lambda z: z[0] ** 3 - 3 * z[0] + z[1] ** 3 - 3 * z[1]  # noqa: E731 - stationary points at (±1, ±1)


class TestDerivatives:
    @pytest.mark.parametrize("loss,d_out", [("mse", 1), ("mse", 2), ("cross_entropy", 3)])
    def test_hessian_matches_autograd_functional(self, loss, d_out):
        model = _small_model(d_out=d_out)
        X, y = _data(d_out=d_out, labels=loss == "cross_entropy")
        L, theta = optim.model_loss(model, X, y, loss)
        H = optim.hessian(L, theta)
        H_ref = _reference_hessian(model, X, y, loss)
        assert H.shape == H_ref.shape == (theta.numel(), theta.numel())
        torch.testing.assert_close(H, H_ref, rtol=1e-10, atol=1e-12)

    def test_gradient_matches_finite_differences(self):
        model = _small_model()
        X, y = _data()
        L, theta = optim.model_loss(model, X, y, reduction="mean")
        torch.testing.assert_close(optim.gradient(L, theta), _fd_gradient(L, theta), rtol=1e-6, atol=1e-8)

    def test_hvp_matches_matrix_and_finite_difference_of_gradient(self):
        model = _small_model()
        X, y = _data()
        L, theta = optim.model_loss(model, X, y)
        H = optim.hessian(L, theta)
        v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        Hv = optim.hvp(L, theta)(v)
        torch.testing.assert_close(Hv, H @ v, rtol=1e-11, atol=1e-12)
        h = 1e-5
        fd = (optim.gradient(L, theta + h * v) - optim.gradient(L, theta - h * v)) / (2 * h)
        torch.testing.assert_close(Hv, fd, rtol=1e-6, atol=1e-7)
        # NumPy in -> NumPy out (what power iteration and SciPy's LinearOperator hand it)
        assert isinstance(optim.hvp(L, theta)(v.numpy()), np.ndarray)

    def test_numpy_point_gives_numpy(self):
        g = optim.gradient(SURFACE, np.array([2.0, 0.0]))
        assert isinstance(g, np.ndarray)
        np.testing.assert_allclose(g, [9.0, -3.0])
        np.testing.assert_allclose(optim.hessian(SURFACE, np.array([2.0, -1.0])), np.diag([12.0, -6.0]))

    @settings(max_examples=20, deadline=None)
    @given(st.integers(2, 6), st.integers(0, 2**16))
    def test_quadratic_hessian_is_the_symmetric_part(self, n, seed):
        rng = np.random.default_rng(seed)
        A = torch.as_tensor(rng.standard_normal((n, n)))
        b = torch.as_tensor(rng.standard_normal(n))
        f = lambda x: 0.5 * x @ A @ x + b @ x  # noqa: E731
        x = torch.as_tensor(rng.standard_normal(n))
        torch.testing.assert_close(optim.hessian(f, x), 0.5 * (A + A.T), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(optim.gradient(f, x), 0.5 * (A + A.T) @ x + b, rtol=1e-12, atol=1e-12)


class TestSpectrum:
    def _setup(self):
        model = _small_model(width=10)
        X, y = _data(n=20)
        L, theta = optim.model_loss(model, X, y)
        return L, theta, torch.linalg.eigvalsh(optim.hessian(L, theta)).numpy()

    def test_lanczos_top_and_bottom(self):
        L, theta, w = self._setup()
        top = optim.hessian_eigs(L, theta, k=3)
        np.testing.assert_allclose(top.eigenvalues, w[::-1][:3], rtol=1e-8)
        assert top.method == "lanczos" and top.n_hvp > 0
        H = optim.hessian(L, theta).numpy()
        np.testing.assert_allclose(H @ top.eigenvectors, top.eigenvectors * top.eigenvalues, atol=1e-7)
        bottom = optim.hessian_eigs(L, theta, k=2, which="SA")
        np.testing.assert_allclose(np.sort(bottom.eigenvalues), w[:2], rtol=1e-8)

    def test_power_iteration_finds_largest_magnitude(self):
        L, theta, w = self._setup()
        res = optim.hessian_eigs(L, theta, method="power", tol=1e-12, max_iter=5000)
        assert res.eigenvalues[0] == pytest.approx(w[np.argmax(np.abs(w))], rel=1e-7)
        with pytest.raises(ValidationError, match="k"):
            optim.hessian_eigs(L, theta, k=2, method="power")

    def test_small_problem_falls_back_to_dense(self):
        res = optim.hessian_eigs(SURFACE, np.array([2.0, -1.0]), k=2)
        np.testing.assert_allclose(res.eigenvalues, [12.0, -6.0])


class TestStationaryPoints:
    @pytest.mark.parametrize("start,where,kind", [((0.7, 1.3), (1, 1), "minimum"), ((-1.3, -0.6), (-1, -1), "maximum"),
                                                  ((1.2, -0.7), (1, -1), "saddle"), ((-0.8, 1.4), (-1, 1), "saddle")])
    def test_cubic_surface_closed_form(self, start, where, kind):
        sp = optim.stationary_point(SURFACE, np.array(start))
        assert sp.converged
        np.testing.assert_allclose(sp.x, where, atol=1e-12)
        np.testing.assert_allclose(sp.hessian, np.diag(6.0 * np.array(where, dtype=float)), atol=1e-10)
        assert sp.kind == kind

    def test_classify(self):
        assert optim.classify([1.0, 2.0]) == "minimum"
        assert optim.classify([-1.0, -2.0]) == "maximum"
        assert optim.classify([-1.0, 2.0]) == "saddle"
        assert optim.classify([0.0, 2.0]) == "degenerate"  # x² + y⁴ at 0: the test does not decide
        with pytest.raises(ValidationError):
            optim.classify([])


class TestIterations:
    def test_trajectory_equals_torch_sgd_with_momentum(self):
        model = _small_model()
        X, y = _data()
        L, theta = optim.model_loss(model, X, y, reduction="mean")
        tr = optim.trajectory(L, theta, lr=0.05, momentum=0.9, steps=40, keep_points=True)
        ref = _small_model()
        opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
        values = []
        for _ in range(41):
            opt.zero_grad()
            loss = 0.5 * ((ref(X).reshape(-1) - y) ** 2).mean()
            values.append(float(loss.detach()))
            loss.backward()
            opt.step()
        np.testing.assert_allclose(tr.values, values, rtol=1e-12)
        assert tr.points.shape == (41, theta.numel())

    @pytest.mark.parametrize("factor", [0.5, 0.95, 1.05])
    def test_quadratic_step_size_against_curvature(self, factor):
        lam = torch.tensor([10.0, 1.0], dtype=torch.float64)
        f = lambda x: 0.5 * (lam * x * x).sum()  # noqa: E731
        lr = factor * 2 / 10.0
        x0 = np.array([1.0, 1.0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KernelscopeWarning)
            tr = optim.trajectory(f, x0, lr=lr, steps=60)
        t = np.arange(61)[:, None]
        np.testing.assert_allclose(tr.points, x0 * (1 - lr * lam.numpy()) ** t, rtol=1e-9, atol=1e-300)
        grows = abs(1 - lr * 10.0) > 1
        assert (abs(tr.points[-1, 0]) > 1) == grows == (factor > 1)

    def test_divergence_is_reported(self):
        f = lambda x: 0.5 * 10.0 * (x * x).sum()  # noqa: E731
        with pytest.warns(KernelscopeWarning, match="2/λ_max"):
            tr = optim.trajectory(f, np.array([1.0]), lr=0.5, steps=10_000)
        assert tr.diverged_at is not None and tr.diverged_at < 100


class TestValidation:
    def test_bad_arguments(self):
        model = _small_model()
        X, y = _data()
        with pytest.raises(ValidationError, match="loss"):
            optim.model_loss(model, X, y, "hinge")
        with pytest.raises(ValidationError, match="y"):
            optim.model_loss(model, X, y[:5])
        with pytest.raises(ValidationError, match="y"):
            optim.model_loss(model, X, torch.zeros(12, 2, dtype=torch.float64))
        with pytest.raises(ValidationError, match="scores"):
            optim.model_loss(model, X, torch.zeros(12, dtype=torch.int64), "cross_entropy")
        L, theta = optim.model_loss(model, X, y)
        with pytest.raises(ValidationError, match="momentum"):
            optim.trajectory(L, theta, lr=0.1, momentum=1.0)
        with pytest.raises(ValidationError, match="lr"):
            optim.trajectory(L, theta, lr=0.0)
        with pytest.raises(ValidationError, match="x0"):
            optim.trajectory(L, theta[None, :], lr=0.1)

    def test_model_is_not_modified(self):
        model = _small_model()
        before = [p.detach().clone() for p in model.parameters()]
        X, y = _data()
        L, theta = optim.model_loss(model, X, y)
        optim.trajectory(L, theta, lr=0.01, steps=5)
        for a, b in zip(before, model.parameters()):
            assert torch.equal(a, b.detach())
