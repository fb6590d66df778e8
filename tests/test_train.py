"""The one training loop (kernelscope.dynamics.train) and the one finite network (kernelscope.nets.finite)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from kernelscope import data, dynamics, empirical, nets
from kernelscope._arrays import KernelscopeWarning, ValidationError
from kernelscope.dynamics import train
from kernelscope.experiments import regimes
from kernelscope.experiments import spirals as sp
from kernelscope.nets.finite import DenseModule, mlp, stack


def _problem(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return X, torch.sin(X[:, 0])


class TestTrain:
    def test_sgd_matches_a_hand_written_loop(self):
        X, y = _problem()
        model = mlp(3, 8, b_std=0.1, seed=1)
        ref = mlp(3, 8, b_std=0.1, seed=1)
        res = train(model, X, y, loss="mse", lr=0.05, steps=5)
        losses = []
        for _ in range(5):
            loss = 0.5 * ((ref(X)[:, 0] - y) ** 2).sum()
            losses.append(float(loss.detach()))
            ref.zero_grad()
            loss.backward()
            with torch.no_grad():
                for p in ref.parameters():
                    p -= 0.05 * p.grad
        np.testing.assert_allclose(res.losses[:5], losses, rtol=1e-13)
        for p, q in zip(model.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
        assert res.steps_done == 5 and res.diverged_at is None and len(res.losses) == 6

    def test_non_finite_loss_stops_with_a_warning(self):
        X, y = _problem()
        with pytest.warns(KernelscopeWarning, match=r"diverged.*at step [0-9]+.*smaller lr"):
            res = train(mlp(3, 8, seed=0), X, y, lr=1e8, steps=100)
        assert res.diverged_at is not None and res.diverged_at < 100
        assert len(res.losses) == res.diverged_at + 1 and res.steps_done == res.diverged_at
        assert np.isfinite(res.losses[:-1]).all()

    def test_growing_loss_stops_before_it_overflows(self):
        """A finite loss above `explode` times the initial one counts as divergence."""
        X, y = _problem()
        with pytest.warns(KernelscopeWarning, match="diverged"):
            res = train(mlp(3, 8, seed=0), X, y, lr=5.0, steps=200, explode=100.0)
        assert res.diverged_at is not None
        assert math.isfinite(res.losses[-1]) and res.losses[-1] > 100 * res.losses[0]
        assert (res.losses[:-1] <= 100 * res.losses[0]).all()

    def test_callback_sees_every_evaluation_and_the_divergence(self):
        X, y = _problem()
        seen = []
        with pytest.warns(KernelscopeWarning):
            train(mlp(3, 8, seed=0), X, y, lr=1e8, steps=50, callback=lambda s, v, out, bad: seen.append((s, bad)))
        assert [s for s, _ in seen] == list(range(len(seen))) and seen[-1][1] and not any(b for _, b in seen[:-1])

    @pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw"])
    def test_optimizers_reduce_the_loss(self, optimizer):
        X, y = _problem()
        res = train(mlp(3, 16, seed=0), X, y, optimizer=optimizer, lr=0.01, steps=40)
        assert res.losses[-1] < res.losses[0]

    def test_mini_batches_and_cross_entropy(self):
        X, labels = data.spirals(20, 3, 0.2, 0)
        Xt, yt = torch.as_tensor(X), torch.as_tensor(labels)
        res = train(mlp(2, 32, d_out=3, seed=0), Xt, yt, loss="cross_entropy", reduction="mean", optimizer="adam",
                    lr=0.01, steps=60, batch_size=16, seed=3)
        assert res.losses[-1] < res.losses[0] and res.diverged_at is None

    def test_bad_arguments(self):
        X, y = _problem()
        with pytest.raises(ValidationError, match="^optimizer:"):
            train(mlp(3, 4), X, y, optimizer="lbfgs", lr=0.1, steps=1)
        with pytest.raises(ValidationError, match="^lr:"):
            train(mlp(3, 4), X, y, lr=-1.0, steps=1)
        with pytest.raises(ValidationError, match="^model:"):
            train(torch.nn.ReLU(), X, y, lr=0.1, steps=1)  # nothing to train

    def test_finite_network_without_in_dim(self):
        """net.finite() draws its parameters when the input width is known: train() and empirical.ntk() draw them
        from the data; an optimiser built before that gets a clear error naming in_dim (issue 17)."""
        X, y = _problem()
        model = nets.serial(nets.Dense(4), nets.ReLU(), nets.Dense(1)).finite(seed=0)
        with pytest.raises(ValidationError, match="in_dim="):
            torch.optim.SGD(model.parameters(), lr=0.1)
        res = train(model, X, y, lr=0.01, steps=3)
        assert len(res.losses) == 4 and model.in_width == X.shape[1]
        torch.optim.SGD(model.parameters(), lr=0.1)  # drawn now


class TestFiniteNetwork:
    @pytest.mark.parametrize("parameterization", ["ntk", "standard"])
    @pytest.mark.parametrize("b_std", [0.0, 0.3])
    def test_structured_ntk_equals_jacobian(self, parameterization, b_std):
        """Every parameter lives in an nn.Linear, so the per-layer factorisation applies and agrees."""
        X, _ = _problem(7)
        model = mlp(3, 12, depth=3, d_out=2, activation="tanh", b_std=b_std, parameterization=parameterization)
        assert all(isinstance(m, nn.Linear) for m in model.modules() if any(True for _ in m.parameters(False)))
        a = empirical.ntk(model, X, method="structured")
        b = empirical.ntk(model, X, method="jacobian")
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)

    def test_net_finite_uses_the_same_modules(self):
        net = nets.serial(nets.Dense(16, w_std=1.4, b_std=0.1), nets.Erf(), nets.Dense(2, w_std=1.4, b_std=0.1))
        model = net.finite(seed=0, in_dim=3)
        assert empirical.resolve_method(model, "auto") == "structured"
        X, _ = _problem(5)
        torch.testing.assert_close(empirical.ntk(model, X, method="structured"),
                                   empirical.ntk(model, X, method="jacobian"), rtol=1e-12, atol=1e-12)

    def test_parameterisations_are_the_same_function_at_initialisation(self):
        """'ntk' and 'standard' draw the same numbers: same outputs at init, NTKs differing as theory says."""
        X, _ = _problem(6)
        a = mlp(3, 10, b_std=0.2, seed=4)
        b = mlp(3, 10, b_std=0.2, seed=4, parameterization="standard")
        torch.testing.assert_close(a(X), b(X), rtol=1e-12, atol=1e-12)
        # ntk: z = (w/sqrt(n)) W x + b_std b; by hand
        W1, b1, W2, b2 = (p.detach() for p in a.parameters())
        h = torch.relu(X @ W1.T / math.sqrt(3) + 0.2 * b1)
        torch.testing.assert_close(a(X), h @ W2.T / math.sqrt(10) + 0.2 * b2, rtol=1e-12, atol=1e-12)
        assert not torch.allclose(torch.as_tensor(empirical.ntk(a, X)), torch.as_tensor(empirical.ntk(b, X)))

    def test_draws_in_layer_order(self):
        """Weight then bias, layer by layer, from one generator; mlp skips the unused biases, net.finite draws them."""
        g = torch.Generator().manual_seed(7)
        W1, b1 = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
        W2 = torch.randn(1, 5, generator=g, dtype=torch.float64)
        m = stack([2, 5, 1], w_std=1.0, b_std=[0.5, 0.0], seed=7)
        torch.testing.assert_close(m[0].weight, W1)
        torch.testing.assert_close(m[0].bias, b1)
        torch.testing.assert_close(m[2].weight, W2)
        assert m[2].bias is None
        g = torch.Generator().manual_seed(7)
        torch.randn(5, 2, generator=g, dtype=torch.float64)
        plain = mlp(2, 5, seed=7)  # b_std = 0: no biases drawn, the second weight follows the first
        torch.testing.assert_close(plain[2].weight, torch.randn(1, 5, generator=g, dtype=torch.float64))
        finite = nets.serial(nets.Dense(5), nets.ReLU(), nets.Dense(1)).finite(seed=7, in_dim=2)
        torch.testing.assert_close(finite.body[2].weight, W2)  # the unused b1 was drawn

    def test_dense_module_validates_per_layer_scales(self):
        with pytest.raises(ValidationError, match="^w_std:"):
            stack([2, 3, 1], w_std=[1.0])
        with pytest.raises(ValidationError, match="^activation:"):
            stack([2, 3, 1], "swish")
        assert isinstance(stack([2, 3, 1])[0], DenseModule)


def test_no_library_call_changes_the_thread_count():
    before = torch.get_num_threads()
    X, y = data.spirals(10, 3, 0.2, 0)
    sp.train_spiral(classes=3, n_per_class=10, width=8, epochs=3, snapshots=2, regions_resolution=4)
    sp.train_folding_net(depth=2, n_per_class=10, epochs=3, restarts=1)
    regimes.train_ntk_net(X, y, X, 8, steps=3)
    Xr, yr = _problem(8)
    dynamics.train_lazy(mlp(3, 8), Xr, yr, Xr, steps=3)
    nets.monte_carlo(nets.serial(nets.Dense(8), nets.ReLU(), nets.Dense(1)), Xr, width=8, n_samples=2)
    assert torch.get_num_threads() == before
