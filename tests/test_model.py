"""kernelscope._model: a torch model as f(x; w) and its losses, checked against autograd, torch.func, finite
differences and NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kernelscope import _model, empirical, nets
from kernelscope._arrays import ValidationError
from kernelscope._model import (
    Weights,
    flat_kernel,
    lambda_max,
    loss_derivative,
    loss_gradient,
    loss_hessian,
    loss_value,
    stable_lr,
    targets,
    value_and_grad,
)
from kernelscope.dynamics import mlp


def _model_and_data(n=7, d=3, o=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return mlp(d, 6, depth=2, d_out=o, activation="tanh", b_std=0.2, seed=seed), X


class TestWeights:
    def test_flatten_unflatten_round_trip_in_named_parameters_order(self):
        model, _ = _model_and_data()
        W = Weights.of(model)
        params = dict(model.named_parameters())
        w = W.read(model)
        assert w.shape == (W.size,) and W.size == sum(p.numel() for p in model.parameters())
        expected = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(w, expected, rtol=0, atol=0)
        back = W.unflatten(w)
        assert list(back) == list(params)
        for name, t in back.items():
            torch.testing.assert_close(t, params[name].detach(), rtol=0, atol=0)

    def test_frozen_parameters_are_not_weights(self):
        model, _ = _model_and_data()
        first = next(model.parameters())
        first.requires_grad_(False)
        W = Weights.of(model)
        assert W.size == sum(p.numel() for p in model.parameters()) - first.numel()

    def test_write_and_with_weights(self):
        model, X = _model_and_data()
        W = Weights.of(model)
        w = torch.linspace(-1, 1, W.size, dtype=torch.float64)
        copy = _model.with_weights(model, w)
        torch.testing.assert_close(W.read(copy), w, rtol=0, atol=0)
        assert not torch.equal(W.read(model), w)  # the original is untouched
        with pytest.raises(ValidationError, match="^w:"):
            W.write(model, w[:-1])

    def test_outputs_at_given_weights_equal_the_module_with_those_weights(self):
        model, X = _model_and_data()
        W = Weights.of(model)
        w = W.read(model) * 1.5
        torch.testing.assert_close(_model.outputs(model, X, W.unflatten(w)), _model.with_weights(model, w)(X))

    def test_layers_group_weights_by_owning_module(self):
        model, _ = _model_and_data()
        names, slices = Weights.of(model).layers()
        owners = [n for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
        assert names == owners
        assert slices[0].start == 0 and slices[-1].stop == Weights.of(model).size
        assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))


class TestLosses:
    @pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
    @pytest.mark.parametrize("labels", ["integer", "rows"])
    def test_derivative_and_hessian_equal_autograd(self, loss, labels):
        gen = torch.Generator().manual_seed(1)
        F = torch.randn(5, 4, generator=gen, dtype=torch.float64)
        if loss == "mse":
            y = torch.randn(5, 4, generator=gen, dtype=torch.float64)
        elif labels == "integer":
            y = torch.tensor([0, 3, 1, 1, 2])
        else:  # soft label rows whose totals differ
            y = torch.rand(5, 4, generator=gen, dtype=torch.float64) * torch.tensor([[1.0], [2], [0.5], [1], [3]])
        g = torch.func.grad(lambda f: loss_value(f, y, loss))(F)
        torch.testing.assert_close(loss_derivative(F, y, loss), g)
        torch.testing.assert_close(loss_gradient(loss, y)(F), g)
        for i in range(F.shape[0]):  # per-example Hessians (the loss is a sum over examples)
            H = torch.func.hessian(lambda f, yi=y[i:i + 1]: loss_value(f[None], yi, loss))(F[i])
            torch.testing.assert_close(loss_hessian(F, y, loss)[i], H)

    def test_callable_loss_gradient_by_autograd(self):
        F = torch.randn(6, 2, dtype=torch.float64)
        y = torch.randn(6, 2, dtype=torch.float64)
        g = loss_gradient(lambda f, t: ((f - t) ** 4).sum(), y)(F)
        torch.testing.assert_close(g, 4 * (F - y) ** 3)
        with pytest.raises(ValidationError, match="^loss:"):
            loss_gradient(lambda f, t: f - t, y)(F)

    def test_mean_reduction(self):
        F, y = torch.randn(8, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
        assert torch.isclose(loss_value(F, y, "cross_entropy", "mean") * 8, loss_value(F, y, "cross_entropy"))


class TestTargets:
    def test_mse_targets_take_the_outputs_shape(self):
        assert targets(np.arange(4.0), "mse", 4, 1).shape == (4, 1)
        assert targets(np.ones((4, 3)), "mse", 4, 3).shape == (4, 3)
        with pytest.raises(ValidationError, match=r"^y:.*\(4, 3\)"):
            targets(np.ones(4), "mse", 4, 3)

    def test_cross_entropy_labels_inside_the_output_width(self):
        assert targets([0, 2, 1.0], "cross_entropy", 3, 3).dtype == torch.int64
        # a label of 10⁹ would be a 240 GB one-hot: refused before anything is built (issue 26)
        for bad in ([0, 7, 1], [0, -1, 1], [10**9, 0, 1]):
            with pytest.raises(ValidationError, match=r"labels in \[0, 3\)"):
                targets(bad, "cross_entropy", 3, 3)
        with pytest.raises(ValidationError, match="integer class labels"):
            targets([0, 1.5, 1], "cross_entropy", 3, 3)
        with pytest.raises(ValidationError, match="finite"):
            targets([0, float("nan"), 1], "cross_entropy", 3, 3)
        with pytest.raises(ValidationError, match="per-class scores"):
            targets([0, 1, 1], "cross_entropy", 3, 1)
        rows = targets(np.eye(3), "cross_entropy", 3, 3)
        assert rows.shape == (3, 3) and rows.dtype == torch.float64


class TestKernels:
    def test_flat_kernel_is_the_kernel_of_the_flattened_outputs(self):
        model, X = _model_and_data(n=5, o=3)
        K = torch.as_tensor(empirical.ntk(model, X))  # (5, 5, 3, 3)
        J = empirical.jacobian(model, X, 3).reshape(15, -1)  # rows (example, output)
        torch.testing.assert_close(flat_kernel(K), J @ J.T)

    @pytest.mark.parametrize("n", [40, 700])  # dense below DENSE_EIGEN_BELOW, Lanczos above
    def test_lambda_max_against_numpy(self, n):
        gen = np.random.default_rng(n)
        A = gen.standard_normal((n, 30))
        K = A @ A.T + np.eye(n)
        want = np.linalg.eigvalsh(K)[-1]
        assert abs(lambda_max(K) - want) <= 1e-10 * want
        assert stable_lr(K, 0.5) == pytest.approx(0.5 / want, rel=1e-10)

    def test_stable_lr_keeps_gradient_descent_stable(self):
        """η = 1.9/λ_max converges on ½‖Kα − y‖²-flow in function space; η = 2.1/λ_max diverges."""
        gen = np.random.default_rng(0)
        A = gen.standard_normal((20, 5))
        K = A @ A.T
        y = gen.standard_normal(20)

        def run(eta):
            f = np.zeros(20)
            for _ in range(400):
                f = f - eta * K @ (f - y)
            return np.linalg.norm(K @ (f - y))

        assert run(stable_lr(K, 1.9)) < 1e-6
        assert run(stable_lr(K, 2.1)) > 1e3


class TestValueAndGrad:
    @settings(max_examples=20, deadline=None)
    @given(st.lists(st.floats(-2, 2, allow_subnormal=False), min_size=1, max_size=6))
    def test_against_finite_differences(self, xs):
        x = torch.tensor(xs, dtype=torch.float64)
        f = lambda t: (torch.sin(t) * t**2).sum() + t.prod()  # noqa: E731
        value, g = value_and_grad(f, x)
        assert torch.isclose(value, f(x))
        h = 1e-6
        fd = torch.stack([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in torch.eye(len(xs), dtype=x.dtype)])
        torch.testing.assert_close(g, fd, rtol=1e-6, atol=1e-6)

    def test_works_under_no_grad(self):
        with torch.no_grad():
            _, g = value_and_grad(lambda t: (t**2).sum(), torch.ones(3, dtype=torch.float64))
        torch.testing.assert_close(g, 2 * torch.ones(3, dtype=torch.float64))


class TestModel:
    def test_lazily_built_models_draw_their_parameters_from_the_inputs(self):
        X = torch.randn(4, 5, dtype=torch.float64)
        lazy = nets.serial(nets.Dense(8), nets.ReLU(), nets.Dense(2)).finite(seed=0)
        assert _model.materialize(lazy, X) is lazy and lazy.in_width == 5
        f64 = {"dtype": torch.float64}
        torch_lazy = nn.Sequential(nn.LazyLinear(6, **f64), nn.Tanh(), nn.Linear(6, 1, **f64))
        _model.materialize(torch_lazy, X)
        assert Weights.of(torch_lazy).size == 5 * 6 + 6 + 6 + 1
        assert empirical.ntk(torch_lazy, X).shape == (4, 4)

    def test_checks_name_the_argument(self):
        with pytest.raises(ValidationError, match="^model: expected a torch.nn.Module"):
            _model.check_module("not a model")
        drop = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
        with pytest.raises(ValidationError, match="fixed function"):
            _model.check_fixed_function(drop)
        _model.check_fixed_function(drop.eval())
        with pytest.raises(ValidationError, match="trainable parameters"):
            _model.trainable_parameters(nn.ReLU())
        model, X = _model_and_data(d=3)
        with pytest.raises(ValidationError, match=r"^x: expected examples with 3 features"):
            _model.output_dim(model, torch.ones(2, 4, dtype=torch.float64))
        assert _model.output_dim(model, X) == 2
