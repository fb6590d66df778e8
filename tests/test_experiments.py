"""Where the kernel picture stops: NTK of the finite nets, alignment, kernel classifiers, GD limits, the table."""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pytest
import torch

from kernelscope._arrays import KernelscopeWarning, ValidationError
from kernelscope._io import from_json, to_json
from kernelscope.experiments import regimes as rg
from kernelscope.nets.finite import mlp
from kernelscope.predict import gradient_flow
from kernelscope.story import json_checkpoint

W_STD, B_STD = 1.3, 0.2


def _closed_form_ntk(model, X1, X2, w, b):
    """NTK of ``f(x) = (w/sqrt(n)) W2 relu(z) + b b2``, ``z = (w/sqrt(d)) W1 x + b b1``, averaged over K outputs,
    written out by hand: ``b^2 + (w^2/n) relu(z).relu(z') + Sigma1 (w^2/n) sum_i mean_k(W2_ki^2) 1[z_i>0] 1[z'_i>0]``
    with ``Sigma1 = w^2 x.x'/d + b^2``."""
    W1, b1 = model[0].weight.detach(), model[0].bias.detach()
    W2 = model[2].weight.detach()
    n, d = W1.shape
    z1 = (w / math.sqrt(d)) * X1 @ W1.T + b * b1
    z2 = (w / math.sqrt(d)) * X2 @ W1.T + b * b1
    sigma1 = w**2 * (X1 @ X2.T) / d + b**2
    last = (w**2 / n) * z1.clamp_min(0) @ z2.clamp_min(0).T + b**2
    first = (w**2 / n) * ((z1 > 0).double() * (W2**2).mean(0)) @ (z2 > 0).double().T
    return last + sigma1 * first


def _model(width, d=2, out=3, seed=0):
    return mlp(d, width, depth=2, d_out=out, w_std=W_STD, b_std=B_STD, seed=seed)


class TestNTK:
    def test_finite_ntk_equals_the_closed_form(self):
        """finite_ntk (kernelscope.empirical, structured) against the two-layer formula written out by hand."""
        model = _model(7, out=3)
        X1 = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        X2 = torch.randn(4, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        ref = _closed_form_ntk(model, X1, X2, W_STD, B_STD)
        both = torch.cat([X1, X2])
        torch.testing.assert_close(rg.finite_ntk(model, both)[:6, 6:], ref, rtol=1e-12, atol=1e-12)

    def test_finite_ntk_equals_jacobian_product(self):
        """Same, against a Jacobian assembled by hand with torch.autograd.functional.jacobian."""
        model = _model(5, out=2, seed=3)
        X = torch.randn(4, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        names = [n for n, _ in model.named_parameters()]

        def f(*flat):
            return torch.func.functional_call(model, dict(zip(names, flat)), (X,))  # (N, K)

        J = torch.autograd.functional.jacobian(f, tuple(p.detach() for p in model.parameters()))
        J = torch.cat([j.reshape(4, 2, -1) for j in J], -1)  # (N, K, P)
        ref = torch.einsum("ikp,jkp->ij", J, J) / 2
        torch.testing.assert_close(rg.finite_ntk(model, X), ref, rtol=1e-12, atol=1e-12)

    def test_wide_finite_ntk_approaches_the_analytic_kernel(self):
        """Monte Carlo: the finite-width NTK converges to the infinite-width one like 1/sqrt(n)."""
        X = torch.as_tensor(np.random.default_rng(0).normal(size=(8, 2)))
        _, ntk = rg.analytic_kernels(X, w_std=W_STD, b_std=B_STD)
        errs = []
        for width in (400, 25600):
            emp = rg.finite_ntk(_model(width, seed=5), X)
            errs.append(float(torch.linalg.norm(emp - ntk) / torch.linalg.norm(ntk)))
        assert errs[1] < 0.05 and errs[1] < errs[0] / 3  # 64x the width: ~8x smaller error

    def test_analytic_kernels_closed_form(self):
        """THEORY.md section 3-4 arc-cosine formulas, written out here independently of kernelscope.nets."""
        X = np.random.default_rng(1).normal(size=(5, 2))
        nngp, ntk = rg.analytic_kernels(torch.as_tensor(X), w_std=W_STD, b_std=B_STD)
        s = W_STD**2 * X @ X.T / 2 + B_STD**2
        n = np.sqrt(np.outer(np.diag(s), np.diag(s)))
        th = np.arccos(np.clip(s / n, -1, 1))
        s2 = W_STD**2 * n * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi) + B_STD**2
        np.testing.assert_allclose(nngp.numpy(), s2, rtol=1e-10)
        np.testing.assert_allclose(ntk.numpy(), s2 + W_STD**2 * (np.pi - th) / (2 * np.pi) * s, rtol=1e-10)


class TestAlignment:
    def test_against_centring_matrices(self):
        rng = np.random.default_rng(0)
        y = rng.integers(0, 3, 20)
        A = rng.normal(size=(20, 20))
        K = A @ A.T
        H = np.eye(20) - 1 / 20
        T = np.eye(3)[y] @ np.eye(3)[y].T
        Kc, Tc = H @ K @ H, H @ T @ H
        expected = (Kc * Tc).sum() / (np.linalg.norm(Kc) * np.linalg.norm(Tc))
        assert math.isclose(rg.kernel_target_alignment(K, y), expected, rel_tol=1e-12)

    def test_limits(self):
        y = np.array([0, 0, 1, 1, 2, 2])
        Y = np.eye(3)[y]
        assert math.isclose(rg.kernel_target_alignment(Y @ Y.T, y), 1.0, rel_tol=1e-12)
        assert math.isclose(rg.kernel_target_alignment(5 * Y @ Y.T + 3.0, y), 1.0, rel_tol=1e-12)  # scale, constant
        assert rg.kernel_target_alignment(np.ones((6, 6)), y) == 0.0  # centred to zero
        assert rg.kernel_target_alignment(-(Y @ Y.T), y) == pytest.approx(-1.0)

    def test_bad_shape(self):
        with pytest.raises(ValidationError, match="^K:"):
            rg.kernel_target_alignment(np.eye(3), np.array([0, 1]))


class TestKernelPredictions:
    def _kernel(self, n=30, m=10, seed=0):
        rng = np.random.default_rng(seed)
        Phi = rng.normal(size=(n + m, 50))
        K = torch.as_tensor(Phi @ Phi.T)
        Y = torch.as_tensor(rng.normal(size=(n, 3)))
        return K[:n, :n], K[n:, :n], Y, Phi

    @staticmethod
    def _gd(Ktr, Kte, Y, lr, steps):
        """gradient_flow in discrete steps on (1/2N)|f - Y|^2 (step lr/N on the summed loss), test predictions."""
        return torch.as_tensor(gradient_flow(Ktr, Kte, Y, steps, lr=lr / Ktr.shape[0], discrete=True).test)

    def test_gd_limits(self):
        Ktr, Kte, Y, _ = self._kernel()
        N = Ktr.shape[0]
        lr = 0.5 * N / float(torch.linalg.eigvalsh(Ktr)[-1])
        torch.testing.assert_close(self._gd(Ktr, Kte, Y, lr, 0), torch.zeros(10, 3, dtype=torch.float64))
        torch.testing.assert_close(self._gd(Ktr, Kte, Y, lr, 1), lr / N * Kte @ Y)
        # t -> infinity: kernel regression K(x, X) K^-1 Y
        torch.testing.assert_close(self._gd(Ktr, Kte, Y, lr, 10**7), Kte @ torch.linalg.solve(Ktr, Y),
                                   rtol=1e-7, atol=1e-7)
        torch.testing.assert_close(self._gd(Ktr, Kte, Y, lr, math.inf), Kte @ torch.linalg.solve(Ktr, Y),
                                   rtol=1e-7, atol=1e-7)

    def test_gd_equals_training_the_linear_model(self):
        """T steps of GD on w for (1/2N)|Phi w - Y|^2 from w = 0 predict exactly what the kernel formula says."""
        Ktr, Kte, Y, Phi = self._kernel(n=20, m=5, seed=1)
        Phi_tr, Phi_te = torch.as_tensor(Phi[:20]), torch.as_tensor(Phi[20:])
        N, lr, T = 20, 0.01, 37
        w = torch.zeros(50, 3, dtype=torch.float64)
        for _ in range(T):
            w = w - lr / N * Phi_tr.T @ (Phi_tr @ w - Y)
        torch.testing.assert_close(self._gd(Ktr, Kte, Y, lr, T), Phi_te @ w, rtol=1e-9, atol=1e-9)
        # large steps (lr * lambda_max / N in (1, 2)) take the power, not log1p, and still agree
        lr = 1.5 * N / float(torch.linalg.eigvalsh(Ktr)[-1])
        w = torch.zeros(50, 3, dtype=torch.float64)
        for _ in range(T):
            w = w - lr / N * Phi_tr.T @ (Phi_tr @ w - Y)
        torch.testing.assert_close(self._gd(Ktr, Kte, Y, lr, T), Phi_te @ w, rtol=1e-8, atol=1e-8)

    def test_gd_train_predictions_and_times(self):
        """Train predictions f_T(X) = (I - (I - lr K)^T) Y, for an array of step counts at once."""
        Ktr, _, Y, _ = self._kernel(n=12, m=1, seed=4)
        lr = 0.3 / float(torch.linalg.eigvalsh(Ktr)[-1])
        out = torch.as_tensor(gradient_flow(Ktr, None, Y, [0, 3], lr=lr, discrete=True).train)
        A = torch.eye(12, dtype=torch.float64) - lr * Ktr
        torch.testing.assert_close(out[0], torch.zeros_like(Y))
        torch.testing.assert_close(out[1], (torch.eye(12, dtype=torch.float64) - A @ A @ A) @ Y)

    def test_singular_kernel(self):
        """Targets in the null space of K never move under gradient descent: no division by the zero eigenvalue."""
        v = torch.tensor([[1.0], [1.0]], dtype=torch.float64) / math.sqrt(2)
        K = 2.0 * v @ v.T  # eigenvalues 2 and 0
        Y = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)  # in the null space of K
        out = gradient_flow(K, K, Y, 5, lr=0.1, discrete=True)
        torch.testing.assert_close(torch.as_tensor(out.train), torch.zeros_like(Y))
        torch.testing.assert_close(torch.as_tensor(out.test), torch.zeros_like(Y))

    def test_kernel_rows_match_sklearn(self):
        """The table's kernel classifier rows are kernel ridge regression on centred one-hot targets with
        lambda = ridge * mean(diag K): the same labels as scikit-learn's KernelRidge on the precomputed kernel."""
        from sklearn.kernel_ridge import KernelRidge

        from kernelscope.data import spirals

        X, y = spirals(20, 3, 0.2, 0)
        Xt, yt = spirals(30, 3, 0.2, 1)
        ridge = 1e-3
        t = rg.regime_table(widths=(4,), classes=3, n_per_class=20, n_test_per_class=30, steps=2, ridge=ridge)
        nngp, _ = rg.analytic_kernels(torch.as_tensor(X))
        nngp_t, _ = rg.analytic_kernels(torch.as_tensor(Xt), torch.as_tensor(X))
        lam = ridge * float(torch.diagonal(nngp).mean())
        ref = KernelRidge(alpha=lam, kernel="precomputed").fit(nngp.numpy(), np.eye(3)[y] - 1 / 3)
        acc = float((ref.predict(nngp_t.numpy()).argmax(1) == yt).mean())
        assert t.rows[0].model.startswith("NNGP") and t.rows[0].test_accuracy == acc


class TestFiniteNets:
    def test_training_reduces_loss_and_is_reproducible(self):
        from kernelscope.data import spirals

        X, y = spirals(30, 3, 0.2, 0)
        a = rg.train_ntk_net(X, y, X, 64, lr=2.0, steps=100, seed=1)
        b = rg.train_ntk_net(X, y, X, 64, lr=2.0, steps=100, seed=1)
        assert isinstance(a, rg.NTKNetRun)
        assert a.loss[-1] < 0.5 * a.loss[0]
        np.testing.assert_array_equal(a.loss, b.loss)
        assert a.diverged_at is None and a.test_pred.shape == (90,)

    def test_lazy_at_large_width(self):
        """The relative NTK change during training shrinks with width (~ 1/sqrt(n))."""
        from kernelscope.data import spirals

        X, y = spirals(20, 3, 0.2, 0)
        Xt = torch.as_tensor(X)
        change = {}
        for width in (16, 2048):
            r = rg.train_ntk_net(X, y, X, width, lr=2.0, steps=150, seed=0)
            th0, thT = rg.finite_ntk(r.model0, Xt), rg.finite_ntk(r.modelT, Xt)
            change[width] = float(torch.linalg.norm(thT - th0) / torch.linalg.norm(th0))
        assert change[2048] < change[16] / 3

    def test_divergence_is_reported(self):
        from kernelscope.data import spirals

        X, y = spirals(10, 2, 0.2, 0)
        with pytest.warns(KernelscopeWarning, match="diverged"):
            r = rg.train_ntk_net(X, y, X, 32, lr=1e4, steps=50)
        assert r.diverged_at is not None and len(r.loss) == 51


class TestRegimeTable:
    def test_small_table(self, tmp_path):
        calls = []
        checkpoint = json_checkpoint(tmp_path)

        def run_one(name, compute):
            calls.append(name)
            return checkpoint(name, compute)  # a row comes back from its JSON as the same RegimeRow

        t = rg.regime_table(widths=(8, 512), classes=3, n_per_class=20, n_test_per_class=30, steps=200,
                            run_one=run_one)
        assert calls == ["regime_width_8", "regime_width_512"]
        names = [r.model for r in t.rows]
        assert names[:2] == ["NNGP kernel regression", "NTK kernel regression"] and names[2].startswith("NTK lin")
        assert [r.width for r in t.finite_rows()] == [8.0, 512.0]
        kern = t.rows[1]
        assert math.isinf(kern.width) and kern.train_accuracy > 0.95 and kern.alignment_0 == kern.alignment_T
        narrow, wide = t.finite_rows()
        assert wide.ntk_change < narrow.ntk_change and wide.weight_change < narrow.weight_change
        assert 0 <= wide.test_accuracy <= 1 and -1 <= wide.alignment_T <= 1
        # the default lr is 1 / lambda_max(Theta / N) of the analytic NTK
        from kernelscope.data import spirals

        X, _ = spirals(20, 3, 0.2, 0)
        _, ntk = rg.analytic_kernels(torch.as_tensor(X), w_std=1.0, b_std=0.1)
        assert math.isclose(t.config["lr"], 60 / float(torch.linalg.eigvalsh(ntk)[-1]), rel_tol=1e-9)
        back = from_json(json.loads(json.dumps(to_json(t))))
        assert [r.model for r in back.rows] == names and math.isinf(back.rows[0].width)
        assert back.rows[-1].ntk_change == pytest.approx(wide.ntk_change)
        assert all(isinstance(r, rg.RegimeRow) for r in back.rows) and back.config["widths"] == [8, 512]
        # the chapter's slope between the two widest nets is the library's one slope fit
        assert t.tail_slope("ntk_change") == pytest.approx(
            math.log(wide.ntk_change / narrow.ntk_change) / math.log(512 / 8), rel=1e-9)

    @pytest.mark.parametrize("kwargs, name", [({"widths": (0,)}, "widths"), ({"classes": 1}, "classes"),
                                              ({"n_per_class": 0}, "n_per_class"), ({"noise": -1}, "noise")])
    def test_bad_input(self, kwargs, name):
        with pytest.raises(ValidationError, match=f"^{name}:"):
            rg.regime_table(**{"widths": (4,), "n_per_class": 3, "steps": 1, **kwargs})

    @pytest.mark.parametrize("lr", [None, 0.5])
    def test_training_settings_are_checked_once(self, lr, monkeypatch):
        """regime_table -> train_ntk_net -> dynamics.train: lr and steps are checked once, in the TrainOptions the
        table makes, however many nets it trains (issue 21); a bad lr is refused before any kernel is computed."""
        train_module = importlib.import_module("kernelscope.dynamics.train")  # the module, not the function
        checked = []
        real = train_module.check_positive
        monkeypatch.setattr(train_module, "check_positive", lambda v, name, **kw: (checked.append(name),
                                                                                     real(v, name, **kw))[1])
        rg.regime_table(widths=(4, 8), n_per_class=3, n_test_per_class=3, steps=2, lr=lr, ce_time=0)
        assert checked.count("lr") == 1
        monkeypatch.setattr(rg, "analytic_kernels", lambda *a, **k: pytest.fail("kernels computed before the check"))
        with pytest.raises(ValidationError, match="^lr:"):
            rg.regime_table(widths=(4,), n_per_class=3, steps=2, lr=-1.0)


def test_classifier_sweep_wide_nets_follow_the_cross_entropy_flow(tmp_path):
    """experiments.lazy.classifier_sweep: trained ten-class nets approach the infinite-width cross-entropy flow
    (from their own f₀) as they widen; the f₀ = 0 classifier and the squared-loss baseline are recorded along t."""
    from kernelscope.experiments.lazy import ClassifierRun, ClassifierSweep, classifier_sweep

    r = classifier_sweep([16, 512], 40, n_train=60, n_test=40, t_max=1e3, checkpoint=json_checkpoint(tmp_path))
    narrow, wide = r.runs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier_m16_steps40.json",
                                                          "classifier_m512_steps40.json"]
    assert isinstance(wide, ClassifierRun) and isinstance(r, ClassifierSweep)
    assert wide.gap < 0.5 * narrow.gap and wide.agree >= 0.8
    assert r.gap_slope < -0.2 and r.steps == 40 and 40.0 in r.times
    assert len(r.times) == len(r.infinite_test_accuracy) == len(r.mse_test_accuracy)
    # training accuracy of the infinite-width classifier rises along t (cross-entropy keeps separating)
    first, last = r.infinite_train_accuracy[0], r.infinite_train_accuracy[-1]
    assert last >= first and last > 0.9
    assert all(0.0 <= a <= 1.0 for a in r.infinite_test_accuracy + [r.mse_kernel_test_accuracy])
    assert r.solver["rtol"] == 1e-6 and r.solver["steps"] > 0
    # resumed from the saved widths: the same sweep
    again = classifier_sweep([16, 512], 40, n_train=60, n_test=40, t_max=1e3, checkpoint=json_checkpoint(tmp_path))
    assert again.runs == r.runs


def test_ensemble_bands_measure_the_nets_against_the_gaussian():
    """experiments.lazy.ensemble_bands: the nets' distance to the infinite ensemble (what the chapter reports) is
    computed from the arrays it returns."""
    from kernelscope.experiments.lazy import EnsembleBands, ensemble_bands

    b = ensemble_bands(4, 32, 5, seed=1)
    assert isinstance(b, EnsembleBands) and b.nets.shape == (4, len(b.x)) and b.width == 32 and b.steps == 5
    z = np.max(np.abs(b.nets.mean(0) - b.mean) / (b.std / np.sqrt(4)))
    assert b.max_mean_z == z and np.array_equal(b.std_ratio, b.nets.std(0, ddof=1) / b.std)
    assert np.all(b.prior_std > 0) and np.all(b.std > 0)


def test_lazy_sweep_and_ntk_convergence_resume_as_dataclasses(tmp_path):
    """experiments.lazy.lazy_sweep carries its data; its widths and the NTK convergence come back from their JSON
    checkpoints as the same dataclasses."""
    from kernelscope.dynamics import NTKConvergence
    from kernelscope.experiments.lazy import LazyStudy, digits_ntk_convergence, lazy_1d_problem, lazy_sweep

    study = lazy_sweep("1d", [8, 32], steps=3, checkpoint=json_checkpoint(tmp_path))
    assert isinstance(study, LazyStudy) and [r.width for r in study.sweep.runs] == [8, 32]
    for got, want in zip((study.X, study.y, study.X_test), lazy_1d_problem(0)):
        np.testing.assert_array_equal(got, want)
    assert sorted(p.name.split("_")[0] for p in tmp_path.iterdir()) == ["1d"] * 3  # lr + two widths, tagged
    assert lazy_sweep("1d", [8, 32], steps=3, checkpoint=json_checkpoint(tmp_path)).sweep == study.sweep
    assert study.sweep.runs[-1].dist_net_inf is not None  # compared with the infinite-width flow
    with pytest.raises(ValidationError, match="^dataset:"):
        lazy_sweep("mnist", [8], steps=1)
    conv = json_checkpoint(tmp_path)("conv", lambda: digits_ntk_convergence([8, 64], n=6, seeds=2))
    assert isinstance(conv, NTKConvergence) and np.shape(conv.errors) == (2, 2)
    assert json_checkpoint(tmp_path)("conv", lambda: None) == conv
