"""kernelscope.dynamics (lazy training): the NTK-parameterised MLP against the infinite-width NTK, the trained
linearisation against the closed form of gradient descent on a linear model, the lazy metrics shrinking with
width, NaN handling and resumable sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kernelscope import data, dynamics, empirical, nets
from kernelscope._arrays import KernelscopeWarning, ValidationError
from kernelscope.dynamics import lazy_width_sweep, mlp, train_lazy
from kernelscope.dynamics.lazy import LazySweep
from kernelscope.stats import fit_slope


@pytest.fixture(scope="module")
def problem():
    X, y = data.regression_1d(12, seed=0)
    return X, y, np.linspace(-1, 1, 9)[:, None]


def test_mlp_is_ntk_parameterised():
    """Wide mlp(): empirical NTK close to nets' analytic NTK of the same architecture; 'structured' applies."""
    X = np.random.default_rng(0).standard_normal((7, 3))
    net = nets.serial(nets.Dense(8, w_std=1.4, b_std=0.3), nets.Erf(), nets.Dense(8, w_std=1.4, b_std=0.3),
                      nets.Erf(), nets.Dense(1, w_std=1.4, b_std=0.3))
    K_inf = net.kernel(X).ntk
    model = mlp(3, 2048, depth=3, activation="erf", w_std=1.4, b_std=0.3, seed=1)
    assert empirical.resolve_method(model, "auto") == "structured"
    K = empirical.ntk(model, X)
    assert np.linalg.norm(K - K_inf) / np.linalg.norm(K_inf) < 0.05
    with pytest.raises(ValidationError, match="activation"):
        mlp(3, 4, activation="sigmoidish")


def test_linearised_training_is_gradient_descent_on_a_linear_model(problem):
    """Discrete GD on ½Σ(f_lin − y)² has the closed form f_s = f₀ + Θ(x, X)Θ⁻¹(I − (I − ηΘ)^s)(y − f₀)."""
    X, y, Xs = problem
    model = mlp(1, 32, activation="tanh", b_std=0.5, seed=2)
    steps = 40
    run = train_lazy(model, X, y, Xs, steps=steps, records=3)
    Th = np.asarray(empirical.ntk(model, X))
    Ts = np.asarray(empirical.ntk(model, Xs, X))
    with torch.no_grad():
        f0 = model(torch.as_tensor(X)).numpy().ravel()
    M = np.linalg.matrix_power(np.eye(len(y)) - run.lr * Th, steps)
    want = np.asarray(run.f0_test) + Ts @ np.linalg.solve(Th, (np.eye(len(y)) - M) @ (y - f0))
    np.testing.assert_allclose(run.f_lin_test, want, rtol=0, atol=1e-8)
    # the gradient-flow prediction differs from discrete GD only by the time discretisation
    assert run.dist_lin_flow < 0.05
    assert run.record_steps == [0, 20, 40] and run.weight_change[0] == 0.0 and run.dist_net_lin[0] == 0.0


def test_lazy_metrics_shrink_with_width(problem):
    X, y, Xs = problem
    sweep = lazy_width_sweep(X, y, Xs, [16, 64, 256, 1024], steps=60, activation="erf", b_std=0.5, seed=0)
    assert isinstance(sweep, LazySweep) and all(isinstance(r, dynamics.LazyRun) for r in sweep.runs)
    runs = {r.width: r for r in sweep.runs}
    assert -0.8 < sweep.slopes["weight_change"] < -0.3  # theory: -1/2
    assert sweep.slopes["ntk_change"] < -0.3
    assert runs[1024].dist_net_lin[-1] < runs[16].dist_net_lin[-1] / 4
    assert runs[1024].dist_net_flow < 0.05
    assert runs[1024].loss_net[-1] < runs[1024].loss_net[0]


def test_nan_loss_stops_and_keeps_records(problem):
    X, y, Xs = problem
    model = mlp(1, 16, seed=0)
    with pytest.warns(KernelscopeWarning, match="at step [0-9]+"):
        run = train_lazy(model, X, y, Xs, lr=1e6, steps=200, records=201)
    assert run.stopped_at is not None and run.stopped_at < 200
    assert len(run.record_steps) == run.stopped_at  # one record per step taken before the NaN
    assert all(np.isfinite(run.weight_change))


def test_sweep_resumes_from_checkpoints(problem):
    X, y, Xs = problem
    store, computed = {}, []

    def checkpoint(name, compute):
        if name not in store:
            computed.append(name)
            store[name] = compute()
        return store[name]

    a = lazy_width_sweep(X, y, Xs, [8, 32], steps=5, checkpoint=checkpoint)
    n_first = len(computed)
    b = lazy_width_sweep(X, y, Xs, [8, 32], steps=5, checkpoint=checkpoint)
    assert len(computed) == n_first == 3  # lr + two widths, nothing recomputed
    assert a == b


def test_sweep_resumed_from_json_checkpoints_is_the_same_sweep(problem, tmp_path):
    """Typed checkpoints: the widths read back from their JSON files are the same LazyRuns a fresh sweep has."""
    from kernelscope.story import json_checkpoint

    X, y, Xs = problem
    fresh = lazy_width_sweep(X, y, Xs, [8, 32], steps=5)
    first = lazy_width_sweep(X, y, Xs, [8, 32], steps=5, checkpoint=json_checkpoint(tmp_path))
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    resumed = lazy_width_sweep(X, y, Xs, [8, 32], steps=5, checkpoint=json_checkpoint(tmp_path))
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps and len(stamps) == 3
    assert resumed == first == fresh and isinstance(resumed.runs[0], dynamics.LazyRun)


def test_sweep_resumed_with_a_wider_net_equals_a_fresh_sweep(problem):
    """The default step size is the widest net's: adding a wider width to a saved sweep must not reuse the old one
    (issue 17: the table then differed from a fresh run)."""
    X, y, Xs = problem
    store = {}

    def checkpoint(name, compute):
        if name not in store:
            store[name] = compute()
        return store[name]

    lazy_width_sweep(X, y, Xs, [8, 32], steps=5, checkpoint=checkpoint)
    resumed = lazy_width_sweep(X, y, Xs, [8, 32, 128], steps=5, checkpoint=checkpoint)
    fresh = lazy_width_sweep(X, y, Xs, [8, 32, 128], steps=5)
    assert resumed.lr == fresh.lr
    assert resumed == fresh


def test_fit_slope_and_ntk_convergence():
    x = np.array([1.0, 4.0, 16.0])
    assert fit_slope(x, 3 * x**-0.5)[0] == pytest.approx(-0.5, abs=1e-12)
    X = np.random.default_rng(3).standard_normal((6, 2))
    net = nets.serial(nets.Dense(8, w_std=1.0, b_std=0.1), nets.ReLU(), nets.Dense(1, w_std=1.0, b_std=0.1))
    conv = dynamics.ntk_convergence(net, X, [16, 256, 4096], seeds=3)
    assert -0.8 < conv.slope < -0.3
    assert np.shape(conv.errors) == (3, 3)


def test_bad_inputs(problem):
    X, y, Xs = problem
    model = mlp(1, 4)
    with pytest.raises(ValidationError, match="y"):
        train_lazy(model, X, y[:-1], Xs)
    with pytest.raises(ValidationError, match="lr"):
        train_lazy(model, X, y, Xs, lr=-1.0)
    with pytest.raises(ValidationError, match="model output"):
        train_lazy(mlp(1, 4, d_out=2), X, y, Xs)
    with pytest.raises(ValidationError, match="widths"):
        lazy_width_sweep(X, y, Xs, [])


def _cli(argv, capsys):
    from kernelscope.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cli_lazy_writes_json_and_figures_and_resumes(tmp_path, capsys):
    import json

    argv = ["lazy", "--out", str(tmp_path), "--widths", "8,32", "--steps", "5"]
    code, out, err = _cli(argv, capsys)
    assert code == 0, err
    assert "log-log slopes" in out
    sweep = json.loads((tmp_path / "lazy.json").read_text())
    assert [r["width"] for r in sweep["runs"]] == [8, 32]
    # the JSON users had before (the LazySweep), and the parameterisation and the fitted lines' intercepts
    assert set(sweep) == {"depth", "lr", "steps", "runs", "slopes", "parameterization", "intercepts"}
    assert sweep["parameterization"] == "ntk" and set(sweep["intercepts"]) == set(sweep["slopes"])
    assert (tmp_path / "lazy_sweep.png").stat().st_size > 5000
    saved = sorted(p.name for p in (tmp_path / "steps").iterdir())
    assert len(saved) == 3  # lr + one file per finished width: an interrupted sweep resumes from them
    stamps = [(tmp_path / "steps" / s).stat().st_mtime_ns for s in saved]
    assert _cli(argv, capsys)[0] == 0
    assert stamps == [(tmp_path / "steps" / s).stat().st_mtime_ns for s in saved]  # nothing recomputed
    code, _, err = _cli(["lazy", "--out", str(tmp_path), "--widths", "8,x"], capsys)
    assert code == 2 and "--widths" in err and "Traceback" not in err
    code, _, err = _cli(["lazy", "--out", str(tmp_path), "--dataset", "mnist"], capsys)
    assert code == 2 and "--dataset" in err
