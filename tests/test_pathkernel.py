"""kernelscope.dynamics.path_kernel: the kernel machine reproduces plain torch.optim.SGD training to 1e-9 (float64)
with exact per-step quadrature, for MSE and cross-entropy, full batch and mini-batches, nn.Linear models
(per-layer factors) and others (per-example Jacobians); Domingos' left-endpoint sum is first order; one step is
η·Θ₀; NaN losses stop training and keep what was done."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn

from kernelscope import data, empirical
from kernelscope._arrays import KernelscopeWarning, ValidationError
from kernelscope.dynamics import mlp, path_kernel, stable_lr, top_contributions


@pytest.fixture(scope="module")
def problem():
    X, y = data.regression_1d(15, seed=1)
    return X, y, np.linspace(-1.1, 1.1, 11)[:, None]


def plain_sgd(model, X, y, lr, steps, loss="mse"):
    """Reference: torch.optim.SGD on the summed loss, nothing else."""
    net = copy.deepcopy(model)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    X = torch.as_tensor(X)
    for _ in range(steps):
        opt.zero_grad()
        out = net(X)
        if loss == "mse":
            L = 0.5 * ((out.reshape(-1) - torch.as_tensor(y)) ** 2).sum()
        else:
            L = nn.functional.cross_entropy(out, torch.as_tensor(y), reduction="sum")
        L.backward()
        opt.step()
    return net


def test_exact_reproduces_sgd_training(problem):
    X, y, Xs = problem
    model = mlp(1, 64, depth=3, activation="tanh", b_std=0.5, seed=0)
    w_before = [p.detach().clone() for p in model.parameters()]
    lr = stable_lr(model, X)
    res = path_kernel(model, X, y, Xs, lr=lr, steps=60, exact=True)
    assert res.rel_error < 1e-9
    ref = plain_sgd(model, X, y, lr, 60)
    with torch.no_grad():
        np.testing.assert_allclose(res.f_model, ref(torch.as_tensor(Xs)).numpy().ravel(), rtol=0, atol=1e-12)
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), w_before))  # caller's model untouched
    assert res.K.shape == (11, 15) and res.a.shape == (11, 15) and res.b.shape == (11,)
    np.testing.assert_allclose(res.f_kernel, res.b + (res.a * res.K).sum(1), rtol=0, atol=1e-12)
    assert res.T == pytest.approx(lr * 60) and res.steps_done == 60 and res.stopped_at is None
    assert isinstance(res.K, np.ndarray) and isinstance(res.model, nn.Module)


def test_one_step_left_endpoint_is_eta_times_ntk(problem):
    X, y, Xs = problem
    model = mlp(1, 16, activation="tanh", b_std=0.5, seed=1)
    res = path_kernel(model, X, y, Xs, lr=0.01, steps=1, exact=False)
    np.testing.assert_allclose(res.K, 0.01 * res.ntk0, rtol=1e-12)


def test_left_endpoint_is_first_order(problem):
    """At fixed T, halving η roughly halves the left-endpoint error (first order); exact stays at rounding."""
    X, y, Xs = problem
    model = mlp(1, 32, activation="tanh", b_std=0.5, seed=2)
    T = 40 * stable_lr(model, X)
    errs = [path_kernel(model, X, y, Xs, lr=T / s, steps=s, exact=False).rel_error for s in (80, 160, 320)]
    assert errs[0] > errs[1] > errs[2] > 0
    assert 1.6 < errs[1] / errs[2] < 3.0
    assert path_kernel(model, X, y, Xs, lr=T / 80, steps=80, exact=True).rel_error < 1e-9


def test_cross_entropy_minibatches():
    X, labels = data.digits(70, seed=0, classes=3)
    model = mlp(64, 32, d_out=3, activation="tanh", b_std=0.1, seed=0)
    res = path_kernel(model, X[:60], labels[:60], X[60:], lr=0.05, steps=12, loss="cross_entropy",
                      batch_size=16, nodes=4, seed=3)
    assert res.rel_error < 1e-9
    assert res.K.shape == (10, 60, 3, 3) and res.a.shape == (10, 60, 3) and res.f_model.shape == (10, 3)
    np.testing.assert_allclose(np.einsum("mioc,mic->mio", res.K, res.a), res.contributions, atol=1e-10)
    # mini-batch SGD with the same seeded batches, done by hand
    net = copy.deepcopy(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(3)
    Xt, yt = torch.as_tensor(X[:60]), torch.as_tensor(labels[:60])
    order, cursor = None, 60
    for _ in range(12):
        if cursor + 16 > 60:
            order, cursor = torch.randperm(60, generator=g), 0
        idx = order[cursor:cursor + 16]
        cursor += 16
        opt.zero_grad()
        nn.functional.cross_entropy(net(Xt[idx]), yt[idx], reduction="sum").backward()
        opt.step()
    with torch.no_grad():
        np.testing.assert_allclose(res.f_model, net(torch.as_tensor(X[60:])).numpy(), atol=1e-12)
    top, c = top_contributions(res, 0, k=4)
    assert len(top) == 4 and np.all(np.diff(np.abs(c)) <= 0)


def test_jacobian_path_for_models_outside_linear(problem):
    X, y, Xs = problem

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp(1, 16, activation="tanh", b_std=0.5, seed=4)
            self.gain = nn.Parameter(torch.tensor(0.8, dtype=torch.float64))

        def forward(self, x):
            return self.gain * self.body(x)

    model = Scaled()
    res = path_kernel(model, X, y, Xs, lr=0.02, steps=30)
    assert res.rel_error < 1e-9
    # 'structured' factorises the Linear layers and takes the model's own Jacobian for 'gain' alone
    s = path_kernel(model, X, y, Xs, lr=0.02, steps=3, method="structured")
    j = path_kernel(model, X, y, Xs, lr=0.02, steps=3, method="jacobian")
    np.testing.assert_allclose(s.K, j.K, rtol=1e-10, atol=1e-12)
    plain = mlp(1, 16, activation="tanh", b_std=0.5, seed=4)
    a = path_kernel(plain, X, y, Xs, lr=0.02, steps=10, method="jacobian")
    b = path_kernel(plain, X, y, Xs, lr=0.02, steps=10, method="structured")
    np.testing.assert_allclose(a.K, b.K, rtol=1e-10, atol=1e-12)


def test_multi_output_mse(problem):
    X, y, Xs = problem
    model = mlp(1, 16, d_out=2, activation="tanh", b_std=0.5, seed=5)
    Y = np.stack([y, -y], 1)
    res = path_kernel(model, X, Y, Xs, lr=0.02, steps=20)
    assert res.rel_error < 1e-9 and res.K.shape == (11, 15, 2, 2)


def test_nan_loss_stops_and_keeps_the_kernel_machine(problem):
    X, y, Xs = problem
    model = mlp(1, 16, seed=6)
    with pytest.warns(KernelscopeWarning, match="at step [0-9]+"):
        res = path_kernel(model, X, y, Xs, lr=50.0, steps=100, exact=True)
    assert res.stopped_at is not None and res.steps_done == res.stopped_at < 100
    assert len(res.losses) == res.steps_done + 1 and res.diverged  # the last loss is the bad one
    fm, fk = np.asarray(res.f_model), np.asarray(res.f_kernel)
    if np.all(np.isfinite(fm)):
        assert np.linalg.norm(fk - fm) <= 1e-6 * np.linalg.norm(fm)


def test_bad_inputs(problem):
    X, y, Xs = problem
    model = mlp(1, 8)
    with pytest.raises(ValidationError, match="loss"):
        path_kernel(model, X, y, Xs, lr=0.1, steps=2, loss="hinge")
    with pytest.raises(ValidationError, match="y"):
        path_kernel(model, X, y[:-2], Xs, lr=0.1, steps=2)
    with pytest.raises(ValidationError, match="X_test"):
        path_kernel(model, X, y, np.zeros((3, 2)), lr=0.1, steps=2)
    with pytest.raises(ValidationError, match="per-class"):
        path_kernel(model, X, y, Xs, lr=0.1, steps=2, loss="cross_entropy")
    clf = mlp(1, 8, d_out=3)
    with pytest.raises(ValidationError, match="labels"):
        path_kernel(clf, X, np.full(len(y), 5), Xs, lr=0.1, steps=2, loss="cross_entropy")
    with pytest.raises(ValidationError, match="lr"):
        path_kernel(model, X, y, Xs, lr=0.0, steps=2)
    with pytest.raises(ValidationError, match="batch_size"):
        path_kernel(model, X, y, Xs, lr=0.1, steps=2, batch_size=100)


def test_cli_pathkernel(tmp_path, capsys):
    import json

    from kernelscope.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["pathkernel", "--out", str(tmp_path), "--width", "16", "--steps", "5", "--nodes", "3"])
    out = capsys.readouterr()
    assert exc.value.code == 0, out.err
    assert "relative error" in out.out
    assert "initial NTK" in out.out and "vs_T_theta0" not in out.out  # readable labels, not raw keys (issue 17)
    payload = json.loads((tmp_path / "pathkernel.json").read_text())
    assert payload["steps_done"] == 5 and payload["rel_error"] < 1e-9
    assert (tmp_path / "pathkernel.png").stat().st_size > 5000
    with pytest.raises(SystemExit) as exc:
        main(["pathkernel", "--out", str(tmp_path), "--width", "0"])
    assert exc.value.code == 2 and "--width" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# momentum, Adam, AdamW, weight decay (issue 15)
# ---------------------------------------------------------------------------------------------------------------

TORCH_RULES = {  # what path_kernel's optimizer= must be, written with torch.optim directly
    "sgd": lambda P, lr, wd: torch.optim.SGD(P, lr=lr, weight_decay=wd),
    "momentum": lambda P, lr, wd: torch.optim.SGD(P, lr=lr, momentum=0.9, weight_decay=wd),
    "adam": lambda P, lr, wd: torch.optim.Adam(P, lr=lr, betas=(0.8, 0.99), eps=1e-7, weight_decay=wd),
    "adamw": lambda P, lr, wd: torch.optim.AdamW(P, lr=lr, betas=(0.8, 0.99), eps=1e-7, weight_decay=wd),
}


def torch_trajectory(model, X, Y, rule, lr, wd, steps, batches=None):
    """Reference: the weights after every step of torch.optim's rule on the summed squared loss."""
    net = copy.deepcopy(model)
    opt = TORCH_RULES[rule](list(net.parameters()), lr, wd)
    X, Y = torch.as_tensor(X), torch.as_tensor(Y).reshape(len(X), -1)
    out = []
    for s in range(steps):
        idx = slice(None) if batches is None else batches[s]
        opt.zero_grad()
        (0.5 * ((net(X[idx]).reshape(-1, Y.shape[1]) - Y[idx]) ** 2).sum()).backward()
        opt.step()
        out.append([p.detach().clone() for p in net.parameters()])
    return out, net


@pytest.mark.parametrize("rule", list(TORCH_RULES))
def test_trajectory_is_torch_optim_at_every_step(problem, rule):
    """The weights path_kernel trains through equal torch.optim's own, step by step (bit for bit here)."""
    X, y, Xs = problem
    model = mlp(1, 12, activation="tanh", b_std=0.5, seed=7)
    lr = 0.01 if rule.startswith("adam") else 0.02
    ref, _ = torch_trajectory(model, X, y, rule, lr, 0.05, 5)
    for k in range(1, 6):
        res = path_kernel(model, X, y, Xs[:2], lr=lr, steps=k, optimizer=rule, weight_decay=0.05, betas=(0.8, 0.99),
                          eps=1e-7, exact=False)
        for p, w in zip(res.model.parameters(), ref[k - 1]):
            torch.testing.assert_close(p.detach(), w, rtol=0, atol=1e-14)


@pytest.mark.parametrize("rule,wd", [("momentum", 0.0), ("momentum", 0.1), ("adam", 0.0), ("adam", 0.1),
                                     ("adamw", 0.1)])
def test_kernel_machine_exact_for_every_optimiser(problem, rule, wd):
    """f_T = b + Σ a_i K(x, x_i) + decay to 1e-9 against the model trained by torch.optim itself; the weight-decay
    part is zero exactly when there is no weight decay."""
    X, y, Xs = problem
    model = mlp(1, 16, depth=3, activation="tanh", b_std=0.5, seed=8)
    lr = 0.01 if rule.startswith("adam") else 0.005
    res = path_kernel(model, X, y, Xs, lr=lr, steps=25, optimizer=rule, weight_decay=wd, betas=(0.8, 0.99),
                      eps=1e-7, nodes=4)
    _, ref = torch_trajectory(model, X, y, rule, lr, wd, 25)
    with torch.no_grad():
        f_ref = ref(torch.as_tensor(Xs)).numpy().ravel()
    assert np.linalg.norm(res.f_kernel - f_ref) <= 1e-9 * np.linalg.norm(f_ref)
    np.testing.assert_allclose(res.f_kernel, res.b + (res.a * res.K).sum(1) + res.decay, rtol=0, atol=1e-12)
    assert (np.abs(res.decay).max() > 1e-4) if wd else np.all(res.decay == 0)
    assert res.optimizer == rule and not res.diverged


def test_adam_minibatch_cross_entropy_multi_output():
    X, labels = data.digits(50, seed=1, classes=3)
    model = mlp(64, 16, d_out=3, activation="tanh", b_std=0.1, seed=2)
    res = path_kernel(model, X[:40], labels[:40], X[40:], lr=0.01, steps=8, loss="cross_entropy",
                      reduction="mean", optimizer="adamw", weight_decay=0.01, batch_size=16, seed=4, nodes=3)
    assert res.rel_error < 1e-9 and res.K.shape == (10, 40, 3, 3) and res.decay.shape == (10, 3)
    # the same mini-batch AdamW (mean cross-entropy) by hand, batches from the shared rule
    from kernelscope.dynamics.train import batch_indices

    net = copy.deepcopy(model)
    opt = torch.optim.AdamW(net.parameters(), lr=0.01, weight_decay=0.01)
    Xt, yt = torch.as_tensor(X[:40]), torch.as_tensor(labels[:40])
    for idx in batch_indices(40, 16, 8, 4):
        opt.zero_grad()
        nn.functional.cross_entropy(net(Xt[idx]), yt[idx]).backward()
        opt.step()
    with torch.no_grad():
        np.testing.assert_allclose(res.f_model, net(torch.as_tensor(X[40:])).numpy(), rtol=0, atol=1e-13)


def test_per_layer_kernels_and_history(problem):
    from kernelscope.dynamics import layer_shares

    X, y, Xs = problem
    model = mlp(1, 16, depth=3, activation="tanh", b_std=0.5, seed=9)
    res = path_kernel(model, X, y, Xs, lr=0.01, steps=12, optimizer="adam", per_layer=True, record_every=5)
    assert res.layers == ["0.linear", "2.linear", "4.linear"] and res.K_layers.shape == (3, 11, 15)
    np.testing.assert_allclose(res.K_layers.sum(0), res.K, rtol=0, atol=1e-13)
    np.testing.assert_allclose(res.contributions_layers.sum(0), res.contributions, rtol=0, atol=1e-13)
    shares = layer_shares(res)
    assert sum(v["kernel"] for v in shares.values()) == pytest.approx(1.0)
    assert all(0 <= v["prediction"] <= 1 for v in shares.values())
    assert res.history_steps == [5, 10, 12] and res.K_history.shape == (3, 11, 15)
    np.testing.assert_array_equal(res.K_history[-1], res.K)
    # the history is the kernel of the shorter runs (training is deterministic)
    short = path_kernel(model, X, y, Xs, lr=0.01, steps=5, optimizer="adam")
    np.testing.assert_allclose(res.K_history[0], short.K, rtol=1e-12, atol=1e-15)
    # plain SGD per layer: the per-layer kernels of the NTK parameterisation sum to the structured total
    sgd = path_kernel(model, X, y, Xs, lr=0.01, steps=5, per_layer=True)
    np.testing.assert_allclose(sgd.K, path_kernel(model, X, y, Xs, lr=0.01, steps=5).K, rtol=1e-11, atol=1e-14)
    with pytest.raises(ValidationError, match="per_layer"):
        layer_shares(short)


def test_relu_kinks_are_warned_about_not_silent():
    """A ReLU CNN whose loss oscillates under large cross-entropy steps: the kernel machine is far off, and
    path_kernel says so (before: a silent rel_error of order 1)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 3)).double()
    X, labels = data.digits(40, seed=0, classes=3)
    X = X.reshape(-1, 1, 8, 8)
    with pytest.warns(KernelscopeWarning, match="relative error"):
        res = path_kernel(net, X[:32], labels[:32], X[32:], lr=0.3, steps=15, loss="cross_entropy", nodes=2)
    assert res.rel_error > 1e-6 and not res.diverged and res.loss_growth > 1


def test_divergence_is_reported(problem):
    X, y, Xs = problem
    model = mlp(1, 16, seed=6)
    with pytest.warns(KernelscopeWarning, match="diverged"):
        res = path_kernel(model, X, y, Xs, lr=1.0, steps=50, optimizer="momentum")
    assert res.diverged and res.stopped_at == res.steps_done < 50


@pytest.mark.parametrize("kind", ["mlp3", "cnn"])
def test_stable_lr_any_output_shape(kind):
    """stable_lr works for 3 outputs (before: 'only one element tensors can be converted'): 0.5/λ_max of the
    (N·O, N·O) NTK, built here from empirical.ntk's (N, N, O, O) blocks."""
    X, labels = data.digits(24, seed=3, classes=3)
    if kind == "mlp3":
        model = mlp(64, 32, d_out=3, activation="tanh", b_std=0.1, seed=3)
    else:
        torch.manual_seed(1)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 36, 3)).double()
        X = X.reshape(-1, 1, 8, 8)
    lr = stable_lr(model, X)
    K = empirical.ntk(model, X)  # (N, N, 3, 3)
    lam = np.linalg.eigvalsh(K.transpose(0, 2, 1, 3).reshape(72, 72))[-1]
    assert lr == pytest.approx(0.5 / lam, rel=1e-10)
    assert stable_lr(model, X, fraction=0.25) == pytest.approx(lr / 2)


def test_cli_pathkernel_adam_and_divergence(tmp_path, capsys):
    import json

    from kernelscope.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["pathkernel", "--out", str(tmp_path), "--width", "16", "--steps", "5", "--nodes", "3",
              "--optimizer", "adam", "--weight-decay", "0.01", "--lr", "0.01"])
    assert exc.value.code == 0, capsys.readouterr().err
    payload = json.loads((tmp_path / "pathkernel.json").read_text())
    assert payload["optimizer"] == "adam" and payload["rel_error"] < 1e-9 and not payload["diverged"]
    with pytest.raises(SystemExit) as exc:
        main(["pathkernel", "--out", str(tmp_path), "--width", "16", "--steps", "40", "--lr", "5"])
    err = capsys.readouterr().err  # the library's warning reaches the user as a `note:` line (issue 24)
    assert exc.value.code == 1 and "DIVERGED" in err and re.search(r"^kernelscope: note: .*diverged", err, re.M)
    assert json.loads((tmp_path / "pathkernel.json").read_text())["diverged"]


# -- chapter 6's experiments (kernelscope.experiments.pathkernel) ---------------------------------------------------


def test_agreement_1d_exact_and_left_endpoint():
    """The exact kernel machine is the net plain torch SGD trains (same η = stable_lr); the left-endpoint sum is off."""
    from kernelscope.experiments.pathkernel import PK_1D, agreement_1d, pathkernel_1d_problem

    ag = agreement_1d(seed=1, steps=8, width=32)
    X, y, Xs = pathkernel_1d_problem(1)
    model = mlp(1, 32, seed=1, **PK_1D)
    assert ag.lr == stable_lr(model, X) and ag.steps == 8
    assert ag.exact.exact and not ag.left.exact
    assert ag.exact.rel_error < 1e-9 and ag.left.rel_error > 1e3 * max(ag.exact.rel_error, 1e-15)
    trained = plain_sgd(model, X, y, ag.lr, 8)
    with torch.no_grad():
        ref = trained(torch.as_tensor(Xs)).numpy().ravel()
    np.testing.assert_allclose(ag.exact.f_model, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ag.left.f_model, ref, rtol=0, atol=1e-12)  # the same training, another sum
    assert ag.exact.T == pytest.approx(8 * ag.lr)


@pytest.mark.parametrize("dataset", ["1d", "digits"])
def test_kernel_machine_is_the_command_line_experiment(dataset):
    """experiments.pathkernel.kernel_machine (what `kernelscope pathkernel` runs): the 1-D net at stable_lr with its
    distance to the tangent kernels; the digits classifier at lr 0.05 with its test accuracy."""
    from kernelscope.experiments.pathkernel import (
        PK_1D,
        KernelMachineRun,
        kernel_distance,
        kernel_machine,
        pathkernel_1d_problem,
    )

    run = kernel_machine(dataset, width=16, steps=4, nodes=2, seed=1)
    assert isinstance(run, KernelMachineRun) and run.dataset == dataset and run.result.steps_done == 4
    if dataset == "1d":
        X, y, Xs = pathkernel_1d_problem(1)
        assert run.lr == stable_lr(mlp(1, 16, seed=1, **PK_1D), X) and run.test_accuracy is None
        np.testing.assert_array_equal(run.X_test, Xs)
        assert run.distance == kernel_distance(run.result)
    else:
        assert run.lr == 0.05 and run.distance is None and run.X_train.shape == (300, 64) and len(run.y_test) == 6
        assert run.test_accuracy == np.mean(np.argmax(run.result.f_model, 1) == run.y_test)
    with pytest.raises(ValidationError, match="^dataset:"):
        kernel_machine("mnist")


def test_narrow_vs_wide_distances():
    """A narrow net's path kernel is farther from T·Θ₀ than a wide one's; distances are those of its results."""
    from kernelscope.experiments.pathkernel import kernel_distance, narrow_vs_wide

    nw = narrow_vs_wide(seed=0, lr=0.05, steps=30, widths=(4, 256))
    assert nw.widths == [4, 256] and set(nw.results) == {4, 256}
    for m in nw.widths:
        r = nw.results[m]
        assert not r.exact and r.steps_done == 30 and r.T == pytest.approx(0.05 * 30)
        assert r.K.shape == (20, 20)  # every third of the 60 test points, 20 training points
        K, K0 = np.asarray(r.K), np.asarray(r.ntk0)
        assert nw.distances[m].vs_T_theta0 == pytest.approx(np.linalg.norm(K - r.T * K0) / np.linalg.norm(K))
        assert nw.distances[m] == kernel_distance(r)
    assert nw.distances[4].vs_T_theta0 > 5 * nw.distances[256].vs_T_theta0
    assert nw.distances[256].vs_T_theta0 < 0.05


def test_digits_explained():
    """A small digits classifier is a kernel machine to < 1e-6; accuracy and the same-class share recomputed here
    from the contributions (argsort of |a_i K| at the predicted class)."""
    from kernelscope.experiments.pathkernel import digits_explained

    d = digits_explained(seed=2, n_train=40, n_test=12, classes=3, width=16, steps=8, batch_size=10, k=4)
    r = d.result
    assert r.rel_error < 1e-6 and r.steps_done == 8 and d.batch_size == 10 and d.k == 4
    assert d.X_train.shape == (40, 64) and d.X_test.shape == (12, 64) and r.f_model.shape == (12, 3)
    assert len(d.labels_train) == 40 and len(d.labels_test) == 12 and set(d.labels_train) <= {0, 1, 2}
    pred = np.argmax(r.f_model, 1)
    assert d.accuracy == pytest.approx(np.mean(pred == d.labels_test))
    C = np.asarray(r.contributions)  # (12, 40, 3)
    share = np.mean([np.mean(d.labels_train[np.argsort(-np.abs(C[j, :, pred[j]]))[:4]] == pred[j])
                     for j in range(12)])
    assert d.share_same == pytest.approx(share) and 0.0 <= d.share_same <= 1.0


# -- the path kernel examined as a kernel (issue 23, item 3) ------------------------------------------------------


def test_train_by_train_left_endpoint_is_a_sum_of_gram_matrices(problem):
    """Without X_test the kernel is N × N. Plain GD's left-endpoint sum is η Σ_s J_s J_sᵀ (the Jacobians of the
    training points at every step, by autograd on plain torch SGD): symmetric and PSD to rounding."""
    from kernelscope.dynamics import gram_properties

    X, y, _ = problem
    model = mlp(1, 16, activation="tanh", b_std=0.5, seed=3)
    lr, steps = 0.02, 5
    res = path_kernel(model, X, y, lr=lr, steps=steps, exact=False)
    assert res.K.shape == (15, 15)
    ref = np.zeros((15, 15))
    for s in range(steps):
        net = plain_sgd(model, X, y, lr, s)
        params = [p for p in net.parameters()]
        rows = []
        for x in torch.as_tensor(X):
            g = torch.autograd.grad(net(x[None]).sum(), params)
            rows.append(torch.cat([t.reshape(-1) for t in g]))
        J = torch.stack(rows).numpy()
        ref += lr * J @ J.T
    np.testing.assert_allclose(res.K, ref, rtol=1e-10, atol=1e-14)
    g = gram_properties(res.K)
    assert g.n == 15 and g.asymmetry < 1e-14 and g.negative == 0 and g.eig_max > 0
    ev = np.linalg.eigvalsh((ref + ref.T) / 2)
    assert g.eig_min == pytest.approx(ev[0], abs=1e-12) and g.eig_max == pytest.approx(ev[-1], rel=1e-12)
    # exact quadrature pairs the segment average at x with the left endpoint at x_i: symmetric only to O(η)
    ex = path_kernel(model, X, y, lr=lr, steps=steps, exact=True)
    assert 1e-12 < gram_properties(ex.K).asymmetry < 1e-2


def test_rows_split_one_training_into_test_and_train(problem):
    """Evaluating on [X_test; X] and splitting with rows() gives the separate runs' kernel machines."""
    X, y, Xs = problem
    model = mlp(1, 16, activation="tanh", b_std=0.5, seed=4)
    both = path_kernel(model, X, y, np.vstack([Xs, X]), lr=0.02, steps=6, optimizer="adam", per_layer=True,
                       record_every=3, ntk_every=2)
    test, train = both.rows(slice(0, 11)), both.rows(np.arange(11, 26))
    for part, where in ((test, Xs), (train, X)):
        alone = path_kernel(model, X, y, where, lr=0.02, steps=6, optimizer="adam", per_layer=True,
                            record_every=3, ntk_every=2)
        for name in ("f_model", "f_kernel", "K", "a", "b", "contributions", "decay", "ntk0", "ntkT", "K_layers",
                     "contributions_layers", "K_history", "contributions_history", "ntk_history"):
            np.testing.assert_allclose(getattr(part, name), getattr(alone, name), rtol=1e-10, atol=1e-13,
                                       err_msg=name)
        assert part.history_steps == alone.history_steps and part.ntk_steps == alone.ntk_steps
    mask = np.zeros(26, bool)
    mask[[0, 12]] = True
    assert both.rows(mask).K.shape == (2, 15)
    tt = path_kernel(model, torch.as_tensor(X), y, lr=0.02, steps=2)
    assert isinstance(tt.rows(torch.as_tensor([0, 1])).K, torch.Tensor) and tt.rows([0, 1]).K.shape == (2, 15)


def test_tangent_kernel_path_is_the_ntk_of_the_trained_net(problem):
    """ntk_every records Θ_s(X_test, X) after s steps: empirical.ntk of the net plain torch SGD trains s steps."""
    X, y, Xs = problem
    model = mlp(1, 16, activation="tanh", b_std=0.5, seed=5)
    res = path_kernel(model, X, y, Xs, lr=0.02, steps=7, ntk_every=3)
    assert res.ntk_steps == [0, 3, 6, 7] and res.ntk_history.shape == (4, 11, 15)
    np.testing.assert_allclose(res.ntk_history[0], res.ntk0, rtol=1e-12)
    np.testing.assert_allclose(res.ntk_history[-1], res.ntkT, rtol=1e-12)
    ref = empirical.ntk(plain_sgd(model, X, y, 0.02, 3), Xs, X)
    np.testing.assert_allclose(res.ntk_history[1], ref, rtol=1e-10)
    # plain GD's left-endpoint path kernel is the step size times the sum of the tangent kernels along the path
    left = path_kernel(model, X, y, Xs, lr=0.02, steps=7, exact=False, ntk_every=1)
    np.testing.assert_allclose(left.K, 0.02 * left.ntk_history[:-1].sum(0), rtol=1e-10)
    with pytest.raises(ValidationError, match="^ntk_every:"):
        path_kernel(model, X, y, Xs, lr=0.02, steps=2, ntk_every=0)


def test_gram_properties_against_eigh():
    from kernelscope.dynamics import block_matrix, gram_properties

    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6))
    g = gram_properties(A)
    ev = np.linalg.eigvalsh((A + A.T) / 2)
    assert g.eig_min == pytest.approx(ev[0]) and g.eig_max == pytest.approx(ev[-1])
    assert g.negative == int((ev < -g.tol).sum()) > 0
    assert g.asymmetry == pytest.approx(np.linalg.norm(A - A.T) / np.linalg.norm(A))
    assert g.rel_eig_min == pytest.approx(ev[0] / ev[-1])
    F = rng.normal(size=(5, 3))
    assert gram_properties(F @ F.T).negative == 0 and gram_properties(F @ F.T).asymmetry == 0.0
    # blocks: M[(m, o), (i, c)] = K[m, i, o, c]
    K = rng.normal(size=(3, 4, 2, 2))
    M = block_matrix(K)
    assert M.shape == (6, 8)
    for m, i, o, c in np.ndindex(3, 4, 2, 2):
        assert M[2 * m + o, 2 * i + c] == K[m, i, o, c]
    with pytest.raises(ValidationError, match="^K:"):
        gram_properties(rng.normal(size=(3, 4)))
    with pytest.raises(ValidationError, match="^K:"):
        block_matrix(rng.normal(size=(3, 4, 2)))


def test_vacuity_construction_and_constant_coefficients():
    """x-dependent coefficients reproduce anything; constant ones are a least-squares fit (numpy.lstsq)."""
    from kernelscope.experiments.pathkernel import vacuity

    rng = np.random.default_rng(1)
    k = np.abs(rng.normal(size=(30, 8))) + 0.1  # any kernel values k(x, x_i)
    b = rng.normal(size=30)
    in_span = b + k @ rng.normal(size=8)
    noise = rng.normal(size=30)
    v = vacuity({"in span": in_span, "noise": noise}, {"k": k}, b)
    assert v.functions == ["in span", "noise"] and v.kernels == ["k"]
    assert v.x_dependent.max() < 1e-14
    assert v.constant[0, 0] < 1e-12
    r = noise - b
    res = r - k @ np.linalg.lstsq(k, r, rcond=None)[0]
    assert v.constant[1, 0] == pytest.approx(np.linalg.norm(res) / np.linalg.norm(r))


def test_precomputed_kernel_ridge_and_svm_match_scikit_learn():
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.svm import SVC

    from kernelscope.experiments.pathkernel import kernel_ridge_precomputed, svm_precomputed

    X, labels = data.spirals(20, 2, seed=0)
    Xt, _ = data.spirals(10, 2, seed=1)
    Ktr, Kte = (X @ X.T + 1.0) ** 3, (Xt @ X.T + 1.0) ** 3
    scale = np.mean(np.diag(Ktr))
    y = np.sin(3 * X[:, 0])
    p_tr, p_te, lam, loo = kernel_ridge_precomputed(Ktr, Kte, y)
    ref = KernelRidge(alpha=lam, kernel="precomputed").fit(Ktr / scale, y)
    np.testing.assert_allclose(p_tr, ref.predict(Ktr / scale), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(p_te, ref.predict(Kte / scale), rtol=1e-8, atol=1e-10)
    for i in (0, 17, 39):  # leave-one-out: refit without x_i
        keep = np.arange(40) != i
        sub = KernelRidge(alpha=lam, kernel="precomputed").fit(Ktr[np.ix_(keep, keep)] / scale, y[keep])
        assert loo[i] == pytest.approx(sub.predict(Ktr[i:i + 1, keep] / scale)[0], rel=1e-7, abs=1e-9)
    s_tr, s_te, C, cv = svm_precomputed(Ktr, Kte, labels)
    svc = SVC(kernel="precomputed", C=C).fit(Ktr / scale, labels)
    np.testing.assert_array_equal(s_te, svc.predict(Kte / scale))
    np.testing.assert_array_equal(s_tr, svc.predict(Ktr / scale))
    assert 0.0 <= cv <= 1.0


def test_leave_one_out_is_retraining(problem):
    """Each column of ``retrained`` is f_T − f_T without that point, by plain torch SGD on the other points."""
    from kernelscope.experiments.pathkernel import leave_one_out

    X, y, Xs = problem
    model = mlp(1, 16, activation="tanh", b_std=0.5, seed=6)
    res = path_kernel(model, X, y, Xs, lr=0.02, steps=10)
    loo = leave_one_out(model, X, y, Xs, res.contributions, lr=0.02, steps=10)
    assert loo.retrained.shape == loo.contributions.shape == (11, 15) and loo.spearman.shape == (11,)
    keep = np.arange(15) != 4
    nets = plain_sgd(model, X, y, 0.02, 10), plain_sgd(model, X[keep], y[keep], 0.02, 10)
    with torch.no_grad():
        full, without = (net(torch.as_tensor(Xs)).numpy().ravel() for net in nets)
    np.testing.assert_allclose(loo.retrained[:, 4], full - without, rtol=1e-9, atol=1e-12)
    from scipy.stats import spearmanr

    assert loo.spearman[3] == pytest.approx(spearmanr(res.contributions[3], loo.retrained[3])[0])
    assert -1 <= loo.median_spearman <= 1 and 0 <= loo.top_match <= 1
    c, d = loo.contributions.ravel(), loo.retrained.ravel()
    assert loo.slope == pytest.approx(c @ d / (c @ c))


@pytest.fixture(scope="module")
def small_kernel_runs():
    """The 1-D net and the Adam spiral net with their kernel machines on the training points too (small)."""
    from kernelscope.experiments.pathkernel import agreement_1d
    from kernelscope.experiments.spirals import spiral_kernel_machine

    ag = agreement_1d(seed=0, steps=6, width=16, with_train=True)
    sk = spiral_kernel_machine(n_per_class=8, width=8, epochs=12, seed=0, with_train=True, ntk_every=4, tol=1.0)
    return ag, sk


def test_examine_1d_and_spiral_small(small_kernel_runs):
    """The two experiments on small trainings: the tables' numbers are those of their parts."""
    from kernelscope.experiments.pathkernel import agreement_1d, examine_1d, examine_spiral
    from kernelscope.experiments.spirals import spiral_kernel_machine
    from kernelscope.stats import kernel_target_alignment

    ag, sk = small_kernel_runs
    plain = agreement_1d(seed=0, steps=6, width=16)
    np.testing.assert_array_equal(ag.exact.K, plain.exact.K)  # the test part is unchanged
    assert ag.exact_train.K.shape == (20, 20) and ag.left_train.K.shape == (20, 20)
    k1 = examine_1d(ag)
    assert k1.grams["path kernel (left-endpoint)"].asymmetry < 1e-14
    assert [r.kernel for r in k1.reuse] == ["network", "path kernel", "Θ₀", "Θ_T"]
    assert k1.vacuity.x_dependent.max() < 1e-12 and k1.vacuity.constant.shape == (3, 3)
    assert k1.loo.retrained.shape == (60, 20)
    with pytest.raises(ValidationError, match="^agree:"):
        examine_1d(plain)

    ks = examine_spiral(sk)
    tr = sk.train_result
    assert tr.K.shape == (24, 24, 3, 3) and tr.ntk_steps == [0, 4, 8, 12]
    assert ks.n_test == 24 and len(ks.reuse) == 7
    net = ks.reuse[0]
    assert net.test == pytest.approx(sk.test_accuracy) and net.train == pytest.approx(
        np.mean(np.argmax(tr.f_model, 1) == sk.y_train))
    th0 = np.einsum("mioo->mi", tr.ntk_history[0])
    assert ks.path.alignment[0] == pytest.approx(kernel_target_alignment(th0, sk.y_train))
    assert ks.path.distance[0] == 0.0 and len(ks.path.steps) == 4
    with pytest.raises(ValidationError, match="^sk:"):
        examine_spiral(spiral_kernel_machine(n_per_class=8, width=8, epochs=2, seed=0, tol=1.0))


def test_chapter_section_on_small_trainings(tmp_path, small_kernel_runs):
    """Chapter 6's last section (figure, three tables, findings, numbers) assembled from small trainings; its
    findings quote its results."""
    from kernelscope.chapters import ch50_pathkernel as ch
    from kernelscope.story import ChapterResult, StepContext

    ag, sk = small_kernel_runs
    res = ChapterResult()
    ctx = StepContext(tmp_path, ch.CHAPTER, quick=True, seed=0)
    found = ch._examine(ctx, ag, sk, res)
    assert len(found) == 5 and len(res.figures) == 1 and len(res.tables) == 3
    assert (tmp_path / res.figures[0].file).stat().st_size > 10_000
    k = res.numbers["kernel_examined"]
    assert k["spiral"]["n_test"] == 24 and f"{k['one_d']['loo']['median_spearman']:.2f}" in found[3]
    assert f"{k['spiral']['path'].alignment_path:.3f}" in found[4]
