"""Lazy ↔ rich (Chizat, Oyallon & Bach 2019; Yang & Hu 2021): the μP parameterisation of nets.finite, the output
scale α of dynamics.scaled, and the curvature ratio ‖∇²f‖/‖∇f‖², against closed forms, re-implementations from the
random draws, and the equivalences the papers state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from kernelscope import data, dynamics, empirical, nets, optim
from kernelscope._arrays import ValidationError
from kernelscope._model import Weights, outputs
from kernelscope.dynamics import curvature_ratio, lazy_alpha_sweep, scaled, train, train_lazy
from kernelscope.nets.finite import DenseModule, mlp


@pytest.fixture(scope="module")
def problem():
    X, y = data.regression_1d(10, seed=0)
    Xs = np.linspace(-1, 1, 7)[:, None]
    return X, y, Xs, np.sin(3 * Xs[:, 0])


def _draws(seed, shapes):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=gen, dtype=torch.float64) for s in shapes]


class TestParameterizations:
    def test_ntk_layers_are_the_formula_over_the_draws(self):
        """'ntk' (and 'standard') unchanged: z = (w_std/√n_in) W x + b_std b, W then b drawn from the seed."""
        d, m, x = 3, 5, torch.randn(4, 3, dtype=torch.float64)
        W1, b1, W2, b2 = _draws(7, [(m, d), (m,), (1, m), (1,)])
        for p in ("ntk", "standard"):
            model = mlp(d, m, activation="tanh", w_std=1.3, b_std=0.4, seed=7, parameterization=p)
            h = torch.tanh(1.3 / math.sqrt(d) * x @ W1.T + 0.4 * b1)
            want = 1.3 / math.sqrt(m) * h @ W2.T + 0.4 * b2
            torch.testing.assert_close(model(x), want, rtol=1e-13, atol=1e-13)

    def test_mup_stores_scaled_draws_and_keeps_the_initial_function_but_the_readout(self):
        d, m, x = 3, 64, torch.randn(6, 3, dtype=torch.float64)
        ntk = mlp(d, m, depth=3, activation="tanh", w_std=1.2, b_std=0.3, seed=1)
        mup = mlp(d, m, depth=3, activation="tanh", w_std=1.2, b_std=0.3, seed=1, parameterization="mup")
        W1, b1, W2, b2, W3, b3 = _draws(1, [(m, d), (m,), (m, m), (m,), (1, m), (1,)])
        # stored: N(0, 1)/√n with n the width each parameter maps to (input, hidden biases) or from (weights)
        torch.testing.assert_close(mup[0].weight, W1 / math.sqrt(m))
        torch.testing.assert_close(mup[0].bias, b1 / math.sqrt(m))
        torch.testing.assert_close(mup[2].weight, W2 / math.sqrt(m))
        torch.testing.assert_close(mup[4].weight, W3 / math.sqrt(m))
        torch.testing.assert_close(mup[4].bias, b3)  # the readout's bias: no width, stored as drawn
        torch.testing.assert_close(mup[:4](x), ntk[:4](x), rtol=1e-13, atol=1e-13)  # same hidden features
        h = ntk[:4](x)
        torch.testing.assert_close(mup(x), 1.2 / m * h @ W3.T + 0.3 * b3, rtol=1e-13, atol=1e-13)  # 1/m readout

    def test_mup_has_the_ntk_kernel_at_initialisation(self):
        X = np.random.default_rng(0).standard_normal((6, 2))
        for depth in (2, 3):
            a = mlp(2, 48, depth=depth, activation="erf", b_std=0.5, seed=3)
            b = mlp(2, 48, depth=depth, activation="erf", b_std=0.5, seed=3, parameterization="mup")
            np.testing.assert_allclose(empirical.ntk(b, X), empirical.ntk(a, X), rtol=1e-12)
            np.testing.assert_allclose(empirical.ntk(b, X, method="jacobian"), empirical.ntk(a, X), rtol=1e-12)

    def test_two_layer_mup_is_the_mean_field_net_trained_m_times_faster(self):
        """μP at step η ≡ the NTK net with its output divided by √m (α = m^-½), trained at step η·m (the mean-field
        net of Mei, Montanari & Nguyen; Chizat & Bach), step for step."""
        X, y = data.regression_1d(12, seed=1)
        Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
        m, lr, steps = 32, 0.05, 15
        mup = mlp(1, m, activation="tanh", seed=5, parameterization="mup")
        ntk = mlp(1, m, activation="tanh", seed=5)
        mean_field = nn.Sequential(ntk, _Times(1 / math.sqrt(m)))
        train(mup, Xt, yt, lr=lr, steps=steps)
        train(mean_field, Xt, yt, lr=lr * m, steps=steps)
        torch.testing.assert_close(mup(Xt), mean_field(Xt), rtol=1e-11, atol=1e-12)

    def test_features_move_by_order_one_in_mup_and_by_m_to_the_minus_half_in_ntk(self):
        """One SGD step at one η: the hidden pre-activations of μP move by the same amount at every width; those of
        the NTK net by m^(-1/2) (Yang & Hu's 'maximal update')."""
        X, y = data.regression_1d(16, seed=2)
        Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
        moves = {}
        for p in ("ntk", "mup"):
            for m in (128, 2048):
                model = mlp(1, m, activation="tanh", b_std=0.5, seed=0, parameterization=p)
                z0 = model[0](Xt).detach()
                train(model, Xt, yt, lr=0.1, steps=1)
                moves[p, m] = float((model[0](Xt).detach() - z0).pow(2).mean().sqrt())
        assert moves["mup", 2048] / moves["mup", 128] == pytest.approx(1.0, rel=0.25)
        assert moves["ntk", 2048] / moves["ntk", 128] == pytest.approx(0.25, rel=0.25)  # (2048/128)^(-1/2)

    def test_bad_choices(self):
        with pytest.raises(ValidationError, match="position"):
            DenseModule(3, 4, parameterization="mup", position="middle")
        with pytest.raises(ValidationError, match="parameterization"):
            mlp(2, 4, parameterization="meanfield")
        with pytest.raises(ValidationError, match="parameterization"):
            nets.Dense(4, parameterization="mup")  # no infinite-width kernel: its features move

    def test_single_layer_mup_is_ntk(self):
        x = torch.randn(3, 4, dtype=torch.float64)
        a = nets.finite.stack([4, 2], w_std=0.7, b_std=0.2, seed=0)
        b = nets.finite.stack([4, 2], w_std=0.7, b_std=0.2, seed=0, parameterization="mup")
        torch.testing.assert_close(a(x), b(x))
        torch.testing.assert_close(a[0].weight, b[0].weight)


class _Times(nn.Module):
    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x):
        return self.c * x


class TestScaled:
    def test_centred_scaled_model_and_its_kernel(self, problem):
        X = torch.as_tensor(problem[0])
        g = mlp(1, 24, activation="tanh", b_std=0.5, seed=0)
        h = scaled(g, 3.0)
        assert float(h(X).detach().abs().max()) == 0.0  # f₀ = 0 for every α
        assert Weights.of(h).size == Weights.of(g).size  # w: g's weights only, not the frozen copy at w₀
        np.testing.assert_allclose(empirical.ntk(h, X), 9.0 * np.asarray(empirical.ntk(g, X)), rtol=1e-12)
        np.testing.assert_allclose(empirical.ntk(h, X, method="jacobian"), 9.0 * np.asarray(empirical.ntk(g, X)),
                                   rtol=1e-12)
        with torch.no_grad():
            g[0].linear.weight.add_(0.1)  # h trains g's weights in place and remembers g at w₀
        g0 = mlp(1, 24, activation="tanh", b_std=0.5, seed=0)
        torch.testing.assert_close(h(X), 3.0 * (g(X) - g0(X)))
        assert sum(p.numel() for p in h.parameters() if p.requires_grad) == sum(p.numel() for p in g.parameters())

    def test_bad_alpha_and_unbuilt_models(self):
        g = mlp(1, 4)
        for a in (0.0, -1.0, float("nan")):
            with pytest.raises(ValidationError, match="alpha"):
                scaled(g, a)
        lazy_net = nets.serial(nets.Dense(8), nets.ReLU(), nets.Dense(1)).finite(seed=0)
        with pytest.raises(ValidationError, match="in_dim"):
            scaled(lazy_net, 2.0)

    def test_linearised_dynamics_do_not_depend_on_alpha(self, problem):
        """α²Θ with step η/α²: the trained linearisation is the same function for every α, and equals the closed
        form of discrete gradient descent with Θ_g and η from f₀ = 0."""
        X, y, Xs, ys = problem
        g = mlp(1, 32, activation="erf", b_std=0.5, seed=1)
        runs = [train_lazy(g, X, y, Xs, steps=25, records=2, alpha=a, y_test=ys) for a in (0.5, 4.0)]
        assert runs[0].lr == runs[1].lr == pytest.approx(dynamics.stable_lr(g, X))
        np.testing.assert_allclose(runs[0].f_lin_test, runs[1].f_lin_test, rtol=1e-10, atol=1e-12)
        Th, Ts = np.asarray(empirical.ntk(g, X)), np.asarray(empirical.ntk(g, Xs, X))
        M = np.linalg.matrix_power(np.eye(len(y)) - runs[0].lr * Th, 25)
        np.testing.assert_allclose(runs[1].f_lin_test, Ts @ np.linalg.solve(Th, (np.eye(len(y)) - M) @ y),
                                   atol=1e-8)
        assert runs[1].f0_test == [0.0] * len(Xs) and runs[1].alpha == 4.0
        for r in runs:
            assert len(r.test_error_net) == len(r.test_error_lin) == 2
            assert r.test_error_lin[-1] == pytest.approx(float(np.sqrt(np.mean((np.array(r.f_lin_test) - ys) ** 2))))
        assert runs[0].weight_change[-1] > 6 * runs[1].weight_change[-1]  # ∝ 1/α: 8× in theory

    def test_everything_moves_as_one_over_alpha(self, problem):
        X, y, Xs, ys = problem
        alphas = [0.5, 4.0, 16.0, 64.0]  # the fit uses α ≥ 1, past the first-order regime's start
        sweep = lazy_alpha_sweep(mlp(1, 64, activation="erf", b_std=0.5, seed=0), X, y, Xs, alphas, steps=20,
                                 records=2, y_test=ys)
        assert isinstance(sweep, dynamics.AlphaSweep) and [r.alpha for r in sweep.runs] == alphas
        for key in ("weight_change", "ntk_change", "dist_net_lin"):
            assert -1.05 < sweep.slopes[key] < -0.95, (key, sweep.slopes[key])
            fitted = np.exp(sweep.intercepts[key]) * 64.0 ** sweep.slopes[key]
            assert fitted == pytest.approx(sweep.runs[-1].__getattribute__(key)[-1], rel=0.2)
        # the net's test error approaches its linearisation's as α grows
        gaps = [abs(r.test_error_net[-1] - r.test_error_lin[-1]) for r in sweep.runs]
        assert gaps[-1] < gaps[0] / 20

    def test_alpha_sweep_resumes_from_checkpoints(self, problem):
        X, y, Xs, _ = problem
        store, calls = {}, []

        def checkpoint(name, compute):
            calls.append(name)
            if name not in store:
                store[name] = compute()
            return store[name]

        g = mlp(1, 8, seed=0)
        a = lazy_alpha_sweep(g, X, y, Xs, [0.5, 2.0, 4.0], steps=5, records=2, checkpoint=checkpoint)
        n_calls = len(calls)
        b = lazy_alpha_sweep(g, X, y, Xs, [0.5, 2.0, 4.0], steps=5, records=2, checkpoint=checkpoint)
        assert a.slopes == b.slopes and len(store) == 4 and any(n.startswith("alpha_a0.5_") for n in store)
        assert len(calls) == 2 * n_calls and all(np.isfinite(v) for v in a.slopes.values())
        assert b.runs[0] is store[next(n for n in store if n.startswith("alpha_a0.5_"))]
        with pytest.raises(ValidationError, match="alphas"):
            lazy_alpha_sweep(g, X, y, Xs, [])


class TestCurvatureRatio:
    def test_relu_closed_form_ntk_and_mup(self):
        """Two-layer ReLU: ‖∇²f(x)‖ = w₁w₂‖x‖/√(md) exactly (NTK), w₁w₂‖x‖/√d (μP), and ‖∇f(x)‖² = Θ(x, x)."""
        X = np.random.default_rng(1).standard_normal((3, 2))
        for m in (8, 200):
            for p, root in (("ntk", math.sqrt(m * 2)), ("mup", math.sqrt(2))):
                model = nets.finite.stack([2, m, 1], "relu", w_std=[1.5, 0.8], seed=m, parameterization=p)
                c = curvature_ratio(model, X)
                np.testing.assert_allclose(c.hessian_norm, [1.5 * 0.8 * np.linalg.norm(x) / root for x in X],
                                           rtol=1e-7)
                np.testing.assert_allclose(c.gradient_sq, np.diag(np.asarray(empirical.ntk(model, X))), rtol=1e-12)
                np.testing.assert_allclose(c.ratio, c.hessian_norm / c.gradient_sq)
                assert c.n_params == 3 * m and c.n_hvp > 0

    def test_power_iteration_on_the_squared_hessian(self, monkeypatch):
        """method='power' (three vectors of P): the ReLU closed form despite its ±λ pairs, erf as Lanczos; Lanczos's
        20 vectors of P are refused up front, naming the way out, when they do not fit."""
        from kernelscope import _arrays

        X = np.array([[0.8, -0.3], [0.1, 1.2]])
        relu = nets.finite.stack([2, 64, 1], "relu", w_std=[1.5, 0.8], seed=1)
        c = curvature_ratio(relu, X, method="power", tol=1e-10)
        np.testing.assert_allclose(c.hessian_norm, 1.2 * np.linalg.norm(X, axis=1) / math.sqrt(128), rtol=1e-8)
        erf = mlp(2, 16, activation="erf", b_std=0.5, seed=3)
        # the Rayleigh quotient of H² is off by about the square of the residual: tol 1e-6 gives ~1e-12
        np.testing.assert_allclose(curvature_ratio(erf, X, method="power", tol=1e-6).hessian_norm,
                                   curvature_ratio(erf, X).hessian_norm, rtol=1e-8)
        monkeypatch.setattr(_arrays, "memory_budget_bytes", lambda device=None: 1000)  # Lanczos: 20·192 weights·8 bytes
        with pytest.raises(_arrays.MemoryBudgetError, match="method='power'"):
            curvature_ratio(relu, X)
        with pytest.raises(ValidationError, match="method"):
            curvature_ratio(relu, X, method="dense")

    def test_against_the_dense_hessian(self):
        model = mlp(2, 6, activation="tanh", b_std=0.3, seed=4)
        x = np.array([[0.3, -1.1]])
        c = curvature_ratio(model, x)
        W = Weights.of(model)
        f = lambda w: outputs(model, torch.as_tensor(x), W.unflatten(w))[0, 0]  # noqa: E731
        H = np.asarray(optim.hessian(f, W.read(model)))
        assert c.hessian_norm[0] == pytest.approx(np.abs(np.linalg.eigvalsh(H)).max(), rel=1e-6)

    def test_scaled_divides_the_ratio_by_alpha(self):
        X = np.array([[0.5], [-0.2]])
        g = mlp(1, 16, activation="erf", b_std=0.5, seed=2)
        c1, c5 = curvature_ratio(g, X), curvature_ratio(scaled(g, 5.0), X)
        np.testing.assert_allclose(c5.hessian_norm, 5 * c1.hessian_norm, rtol=1e-6)
        np.testing.assert_allclose(c5.ratio, c1.ratio / 5, rtol=1e-6)

    def test_falls_with_width_in_ntk_not_in_mup(self):
        from kernelscope.experiments.lazy import curvature_sweep

        cs = curvature_sweep([16, 256, 4096], nets=("ntk_relu", "mup"), n_points=2)
        assert -0.7 < cs.slopes["ntk_relu"] < -0.35 and abs(cs.slopes["mup"]) < 0.2
        np.testing.assert_allclose(cs.hessian_norm["ntk_relu"], cs.hessian_exact, rtol=1e-6)
        assert cs.ratio["ntk_relu"].shape == (3, 2)

    def test_lanczos_restart_limit_fits_arpack_for_millions_of_weights(self):
        """optim.hessian_eigs asks ARPACK for max_iter·P restarts, a 32-bit integer there: 30000·10⁵ used to
        overflow it (what a 4096-wide three-layer net, P = 1.7·10⁷, hits with the default max_iter)."""
        c = torch.ones(100_000, dtype=torch.float64)
        c[7] = 3.0  # one top eigenvalue, well apart from the rest
        eig = optim.hessian_eigs(lambda w: 0.5 * (c * w * w).sum(), torch.zeros(100_000, dtype=torch.float64),
                                 max_iter=30_000, tol=1e-8)
        assert eig.eigenvalues[0] == pytest.approx(3.0, rel=1e-8)

    def test_needs_one_output(self):
        with pytest.raises(ValidationError, match="output"):
            curvature_ratio(mlp(1, 4, d_out=2), np.zeros((2, 1)))


def test_width_sweep_in_mup_keeps_moving(problem):
    X, y, Xs, ys = problem
    names = []

    def checkpoint(name, compute):
        names.append(name)
        return compute()

    sw = dynamics.lazy_width_sweep(X, y, Xs, [16, 256], steps=15, activation="erf", b_std=0.5,
                                   parameterization="mup", y_test=ys, checkpoint=checkpoint)
    ref = dynamics.lazy_width_sweep(X, y, Xs, [16, 256], steps=15, activation="erf", b_std=0.5, lr=sw.lr)
    assert sw.parameterization == "mup" and all(n.startswith("lazy_mup_") for n in names)
    assert abs(sw.slopes["weight_change"]) < 0.2 < abs(ref.slopes["weight_change"])
    assert sw.runs[-1].ntk_change[-1] > 10 * ref.runs[-1].ntk_change[-1]
    assert set(sw.intercepts) == set(sw.slopes)


def test_lazy_rich_experiments_and_plots(tmp_path):
    from kernelscope.experiments import lazy as E
    from kernelscope.plots import lazy as PL

    al = E.alpha_study([0.25, 1.0, 4.0], width=16, steps=5)
    assert al.width == 16 and [r.width for r in al.sweep.runs] == [16] * 3
    np.testing.assert_allclose(al.y_test, np.sin(3 * al.X_test[:, 0]))
    study = E.lazy_sweep("1d", [8, 16], steps=5)
    mup = E.lazy_sweep("1d", [8, 16], steps=5, parameterization="mup")
    assert study.y_test is not None and len(study.sweep.runs[0].test_error_net) > 0
    curv = E.curvature_sweep([8, 32], nets=("ntk", "mup"), n_points=1)
    axes = [PL.plot_alpha_sweep(al), PL.plot_alpha_errors(al), PL.plot_alpha_functions(al, 0),
            PL.plot_parameterizations(study.sweep, mup.sweep), PL.plot_width_errors(study.sweep, mup.sweep),
            PL.plot_curvature_ratio(curv)]
    for i, ax in enumerate(axes):
        ax.figure.savefig(tmp_path / f"{i}.png")
        assert (tmp_path / f"{i}.png").stat().st_size > 5000
