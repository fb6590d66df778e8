"""Issue 26, across modules: every memory need checked before it is allocated, every bad input refused clearly (one
line naming the argument), no silent wrong answer, every interrupt obeyed.

Memory tests set the budget (``kernelscope._arrays.memory_budget_bytes``) so that the refusal does not depend on
the machine, and check that it comes before any work (the sizes they ask for would take many GB)."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import kernelscope as ks
from kernelscope import _arrays, kernels, linsys, nets, optim, predict
from kernelscope.cli import main


@pytest.fixture
def budget(monkeypatch):
    """Set the memory budget of every check_memory to ``bytes``."""
    def set_budget(n_bytes: float) -> None:
        monkeypatch.setattr(_arrays, "memory_budget_bytes", lambda device=None: int(n_bytes))
    return set_budget


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("kernelscope: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------------------------------------------
# The memory budget itself
# --------------------------------------------------------------------------------------------------------------
def test_the_budget_respects_an_address_space_limit():
    """Under ``ulimit -v 8G`` psutil still reports the machine's free memory; the budget must not promise more than
    the limit leaves (a request past it fails in the allocator, not in a check)."""
    import subprocess
    import sys

    code = ("import resource; from kernelscope._arrays import memory_budget_bytes as b; "
            "resource.setrlimit(resource.RLIMIT_AS, (8 << 30, resource.RLIM_INFINITY)); print(b())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 0 < int(out) <= 4 << 30


# --------------------------------------------------------------------------------------------------------------
# Memory: refused up front, naming the bytes and the argument that makes it fit
# --------------------------------------------------------------------------------------------------------------
class TestMemoryRefusedUpFront:
    def test_radau_jacobian(self, budget):
        """(N + M)·O = 3000 outputs: the implicit solver's dense Jacobian and its factors (~430 MB)."""
        budget(100e6)
        y = np.arange(300) % 10
        with pytest.raises(ks.MemoryBudgetError, match="method='Radau'.*3000×3000.*'auto' or 'RKC'"):
            predict.gradient_descent(np.eye(300), y, 1.0, loss="cross_entropy", method="Radau")

    @pytest.mark.parametrize("which", ["gradient_descent", "gradient_flow"])
    def test_many_times(self, which, budget):
        budget(1e9)
        K, y, t = np.eye(2000), np.zeros((2000, 10)), np.linspace(0, 1, 100_000)
        t0 = time.perf_counter()
        with pytest.raises(ks.MemoryBudgetError, match="at 100000 times.*fewer times t"):
            if which == "gradient_flow":
                predict.gradient_flow(K, None, y, t)
            else:
                predict.gradient_descent(K, y, t)
        assert time.perf_counter() - t0 < 5  # before any work (it took 17-28 s to fail)

    def test_ensemble_before_the_kernels(self, budget):
        budget(1e9)

        class Net:  # counts kernel calls: the refusal must come before any
            calls = 0

            def kernel(self, *a, **k):
                Net.calls += 1
                raise AssertionError("kernel computed before the memory check")

        with pytest.raises(ks.MemoryBudgetError, match="60000.*fewer times t or fewer test points"):
            predict.ensemble(Net(), np.zeros((500, 3)), np.zeros(500), np.zeros((60_000, 3)),
                             np.linspace(0, 1, 100), cov=False)
        assert Net.calls == 0

    def test_a_stray_huge_label(self, budget):
        budget(1e9)
        with pytest.raises(ks.MemoryBudgetError, match="y_train's one-hot.*relabel"):
            predict.gradient_descent(np.eye(3), np.array([0, 1, 10**9]), 1.0, loss="cross_entropy")

    def test_sample_y(self, budget):
        budget(1e9)
        reg = ks.KernelRegressor(kernel="rbf").fit(np.random.default_rng(0).normal(size=(20, 2)), np.arange(20.0))
        with pytest.raises(ks.MemoryBudgetError, match="10×1000000000 draws.*fewer n_samples"):
            reg.sample_y(np.zeros((10, 2)), 10**9)
        with pytest.raises(ks.MemoryBudgetError, match="25000×25000 covariance"):
            reg.sample_y(np.zeros((25_000, 2)), 2)

    def test_ridge_zero_asks_for_the_pseudoinverse(self):
        """ridge=0 goes to an SVD of K: ~7 N×N matrices at its peak, not the 2 of Cholesky (494 MB at N = 3000
        against 144 MB checked)."""
        from kernelscope.solvers import cholesky_bytes, choose, pinv_bytes

        X, y = np.random.default_rng(0).normal(size=(3000, 2)), np.zeros(3000)
        assert cholesky_bytes(3000) < 3e8 < pinv_bytes(3000)
        with pytest.raises(ks.MemoryBudgetError, match="ridge=0 asks for the pseudoinverse.*ridge > 0"):
            ks.KernelRegressor(kernel="rbf", ridge=0, solver="cholesky", solver_options={"memory_budget": 3e8}
                               ).fit(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ks.KernelscopeWarning)  # "using 'cg'"
            assert choose(3000, budget=int(3e8), ridge=0) != "cholesky"
            assert choose(3000, budget=int(3e8), ridge=0.1) == "cholesky"

    def test_min_norm_l1_of_a_wide_row_uses_the_thin_svd(self):
        """1×40000: the full SVD would be a 40000² V (11.9 GiB) and the LP had 2n dense inequality rows."""
        res = linsys.min_norm(np.ones((1, 40_000)), [1.0], p=1, check_unique=False)
        assert res.norm == pytest.approx(1.0) and abs(float(np.asarray(res.residual)[0])) < 1e-12
        assert np.count_nonzero(np.asarray(res.x)) == 1  # a vertex: one coordinate carries it

    def test_subspaces_of_a_wide_row(self, budget):
        budget(1e9)
        with pytest.raises(ks.MemoryBudgetError, match=r"full SVD of a 1×50000 matrix.*V \(50000×50000\)"):
            linsys.subspaces(np.ones((1, 50_000)))

    def test_subspaces_past_lapack_indices(self, budget):
        budget(1e15)  # enough memory: what stops it is LAPACK's 32-bit indices (it raised a raw LAPACK error)
        with pytest.raises(ks.ValidationError, match="A: expected a matrix whose SVD factors have fewer than 2³¹"):
            linsys.subspaces(np.ones((1, 50_000)))

    def test_path_kernel_history(self):
        from kernelscope import dynamics

        model = dynamics.mlp(1, 8, seed=0)
        X = np.linspace(-1, 1, 200)[:, None]
        with pytest.raises(ks.MemoryBudgetError, match="history.*record_every=1.*larger record_every"):
            dynamics.path_kernel(model, X, np.sin(3 * X[:, 0]), X[:100], lr=0.01, steps=10**7, record_every=1)

    def test_optim_iterations(self, budget):
        budget(1e9)
        with pytest.raises(ks.MemoryBudgetError, match="trajectory's 1000001×100000 iterates.*keep_points=False"):
            optim.trajectory(lambda x: (x ** 2).sum(), np.ones(100_000), lr=1e-9, steps=10**6)
        with pytest.raises(ks.MemoryBudgetError, match="stationary_point's 60000×60000 Hessian.*hessian_eigs"):
            optim.stationary_point(lambda x: (x ** 2).sum(), np.ones(60_000))

    def test_generated_data(self, budget):
        budget(1e9)
        with pytest.raises(ks.MemoryBudgetError, match="spiral arms of 1000000000 points.*smaller n_per_class"):
            ks.data.spirals(10**9)
        with pytest.raises(ks.MemoryBudgetError, match="points in 100000 dimensions"):
            ks.data.sphere(10**6, 100_000)

    def test_a_dense_solve_needs_a_copy_of_a(self, budget):
        A = np.ones((2000, 1000))
        budget(8 * A.size * 0.9)  # A exists; LAPACK's copy of it would not fit
        with pytest.raises(ks.MemoryBudgetError, match="least-squares solve of a 2000×1000 system.*LinearOperator"):
            linsys.solve(A, np.ones(2000))

    @pytest.mark.parametrize("argv", [["lazy", "--widths", "2000000000"], ["pathkernel", "--width", "200000000"],
                                      ["spiral", "--width", "1000000000", "--no-gif"]],
                             ids=["lazy", "pathkernel", "spiral"])
    def test_cli_widths(self, argv, tmp_path, capsys, budget):
        budget(4e9)
        code, _, err = run_cli([*argv, "--out", str(tmp_path)], capsys)
        assert code == 2
        assert "Dense layer" in one_line_error(err) and "Use a smaller width" in err

    def test_cli_allocation_failure_is_one_line(self, capsys, monkeypatch):
        """What no check caught: torch's allocator error (a RuntimeError) is one line and exit 2 as well."""
        from kernelscope import cli

        def fail(*a, **k):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                               "memory: you tried to allocate 16000000000 bytes. Error code 12")

        monkeypatch.setattr(cli, "app", fail)
        code, _, err = run_cli(["anything"], capsys)
        assert code == 2 and "out of memory: an allocation of 16.0 GB failed" in one_line_error(err)


class TestNetworkBranches:
    def net(self, n):
        return nets.serial(nets.Dense(16), nets.FanOut(n),
                           nets.parallel(*[nets.serial(nets.Dense(16), nets.ReLU()) for _ in range(n)]),
                           nets.FanInSum(), nets.Dense(1))

    def test_estimate_counts_the_branches(self, monkeypatch):
        """Each FanOut branch holds its own tile buffers: FanOut(32) used 9.3× an estimate that ignored them."""
        from kernelscope.nets import engine

        asked = []
        real = engine.check_memory
        monkeypatch.setattr(engine, "check_memory", lambda n, *a, **k: asked.append(n) or real(n, *a, **k))
        X = np.random.default_rng(0).normal(size=(64, 3))
        self.net(1).kernel(X, block_rows=32, threads=1)
        self.net(32).kernel(X, block_rows=32, threads=1)
        assert self.net(32).branch_states() == 32
        assert asked[1] - asked[0] == pytest.approx(8.0 * 4 * 31 * 32 * 32)  # 4 tile buffers per extra branch

    def test_many_branches_shrink_the_tiles_instead_of_failing(self, budget):
        """With many branches the default tiles shrink to the budget before anything is refused (FanOut(3000)
        raised torch's allocator error from a worker thread). The kernel is linear in the number of equal branches
        (FanInSum adds them): k(n) − k(2) = (n − 2)(k(2) − k(1))."""
        budget(2e7)
        X = np.random.default_rng(0).normal(size=(40, 3))
        k, k2, k1 = self.net(300).kernel(X), self.net(2).kernel(X), self.net(1).kernel(X)
        np.testing.assert_allclose(k.nngp - k2.nngp, 298 * (k2.nngp - k1.nngp), rtol=1e-9)
        np.testing.assert_allclose(k.ntk - k2.ntk, 298 * (k2.ntk - k1.ntk), rtol=1e-9)


# --------------------------------------------------------------------------------------------------------------
# Ctrl-C inside net.kernel: the tile pool stops
# --------------------------------------------------------------------------------------------------------------
def test_ctrl_c_inside_net_kernel_stops_the_tile_workers():
    """A Tanh network (quadrature at high degree, minutes of tiles): Ctrl-C (KeyboardInterrupt in the main thread)
    is obeyed within seconds; the pool used to wait for every queued tile (> 300 s)."""
    import _thread

    layers = []
    for _ in range(8):
        layers += [nets.Dense(64), nets.Tanh()]
    net = nets.serial(*layers, nets.Dense(1))
    X = np.random.default_rng(0).normal(size=(3000, 4))
    timer = threading.Timer(3.0, _thread.interrupt_main)
    t0 = time.perf_counter()
    timer.start()
    with warnings.catch_warnings(), pytest.raises(KeyboardInterrupt):
        warnings.simplefilter("ignore", ks.KernelscopeWarning)
        net.kernel(X, threads=2)
    timer.join()
    assert time.perf_counter() - t0 < 20
    assert not [t for t in threading.enumerate() if t.name.startswith("kernelscope-tiles")]


# --------------------------------------------------------------------------------------------------------------
# Silent wrong answers
# --------------------------------------------------------------------------------------------------------------
class TestLinearSystems:
    def test_rcond_is_obeyed_on_the_qr_path(self):
        """σ = (1, 0.05) with rcond = 0.1: 0.05 counts as zero, as in pinv and NumPy's lstsq."""
        A, b = np.diag([1.0, 0.05]), np.array([1.0, 1.0])
        ref = np.linalg.lstsq(A, b, rcond=0.1)[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ks.KernelscopeWarning)
            sol = linsys.solve(A, b, rcond=0.1)
            mn = linsys.min_norm(A, b, p=2, rcond=0.1)
        np.testing.assert_allclose(sol.x, ref)
        np.testing.assert_allclose(sol.x, linsys.pinv(A, rcond=0.1) @ b)
        np.testing.assert_allclose(mn.x, ref)
        assert sol.rank == 1 and sol.kind == "least_squares"

    def test_rcond_on_the_command_line(self, tmp_path, capsys):
        (tmp_path / "A.csv").write_text("1,0\n0,0.05\n")
        (tmp_path / "b.csv").write_text("1\n1\n")
        code, out, err = run_cli(["solve", str(tmp_path / "A.csv"), str(tmp_path / "b.csv"), "--rcond", "0.1"],
                                 capsys)
        assert code == 0, err
        assert "rank: 1" in out and "x = [1. 0.]" in out

    def test_sparse_and_operators_holding_nan(self):
        M = np.array([[1.0, np.nan], [0.0, 1.0]])
        with pytest.raises(ks.ValidationError, match="A: expected finite values, got NaN"):
            linsys.solve(sp.csr_matrix(M), [1.0, 1.0])
        with pytest.raises(ks.ValidationError, match="A: expected an operator whose products"):
            linsys.solve(spla.aslinearoperator(M), [1.0, 1.0])

    def test_power_iteration_near_the_float_limit(self):
        res = linsys.power_iteration(np.diag([1e300, 1.0]))
        assert res.converged and res.eigenvalue == pytest.approx(1e300)

    def test_a_scaled_inconsistent_system_is_not_unique(self):
        A = 1e300 * np.array([[1.0, 0.0], [1.0, 0.0]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ks.KernelscopeWarning)
            assert linsys.solve(A, [1e300, -1e300]).kind == "least_squares"
            assert linsys.solve(A / 1e300, [1.0, -1.0]).kind == "least_squares"

    def test_a_singular_value_without_a_finite_reciprocal(self):
        with pytest.raises(ks.ValidationError, match=r"A: expected kept singular values.*σ = 1e-310.*Scale A up"):
            linsys.pinv([[1e-310]])
        np.testing.assert_allclose(linsys.pinv([[1e-300]]), [[1e300]])

    def test_min_norm_l1_shows_progress(self, capfd):
        rng = np.random.default_rng(0)
        res = linsys.min_norm(rng.normal(size=(5, 12)), rng.normal(size=5), p=1, progress=True)
        err = capfd.readouterr().err
        assert "min_norm: solving the LP for the minimiser" in err and "uniqueness probe 4/4" in err
        assert np.count_nonzero(np.abs(np.asarray(res.x)) > 1e-9) <= 5


class TestFunctionSpace:
    def test_discrete_divergence_warns(self):
        K = np.diag([2.0, 1.0])  # λ_max = 2: lr = 4/λ_max = 2 diverges
        with pytest.warns(ks.KernelscopeWarning, match=r"gradient descent diverges: lr = 2 >= 2/λ_max = 1"):
            out = predict.gradient_flow(K, None, [1.0, 1.0], 50.0, lr=2.0, discrete=True).train
        assert abs(out[0]) > 1e20  # what gradient descent does: (1 − ηλ)^t = (−3)^50

    def test_discrete_ensemble_divergence_warns(self):
        net = nets.serial(nets.Dense(8), nets.ReLU(), nets.Dense(1))
        X = np.random.default_rng(0).normal(size=(6, 2))
        lr = 4.0 / float(np.linalg.eigvalsh(net.kernel(X).ntk)[-1])
        with pytest.warns(ks.KernelscopeWarning, match="gradient descent diverges"):
            predict.ensemble(net, X, np.ones(6), X[:2], 20.0, lr=lr, discrete=True)

    @pytest.mark.parametrize("K,what", [(-np.eye(3), "not positive semi-definite"),
                                        (np.diag([1.0, -1.0, 1.0]), "not positive semi-definite"),
                                        (np.array([[1.0, 2.0, 0], [0, 1.0, 0], [0, 0, 1.0]]), "not symmetric")],
                             ids=["negative-definite", "indefinite", "non-symmetric"])
    def test_kernels_that_are_not_kernels_warn(self, K, what):
        with pytest.warns(ks.KernelscopeWarning, match=f"k_train is {what}"):
            predict.gradient_flow(K, None, np.ones(3), 5.0)
        with pytest.warns(ks.KernelscopeWarning, match=f"k_train is {what}"):
            predict.gradient_descent(K, np.ones(3), 5.0, momentum=0.9)

    def test_large_kernels_are_checked_by_products(self, monkeypatch):
        """Past PSD_CHOLESKY_BELOW rows the check is power iteration on cI − K: a Rayleigh quotient below −δ."""
        monkeypatch.setattr(predict, "PSD_CHOLESKY_BELOW", 10)
        X = np.random.default_rng(0).normal(size=(60, 3))
        K = kernels.rbf(X)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ks.KernelscopeWarning)
            predict.gradient_descent(K, np.ones(60), 1.0, momentum=0.5)
        with pytest.warns(ks.KernelscopeWarning, match="k_train is not positive semi-definite .an eigenvalue at most"):
            predict.gradient_descent(K - 0.5 * np.eye(60), np.ones(60), 1.0, momentum=0.5)

    def test_a_true_kernel_does_not_warn(self):
        X = np.random.default_rng(0).normal(size=(40, 3))
        K = kernels.rbf(X)  # PSD with many eigenvalues at rounding level
        with warnings.catch_warnings():
            warnings.simplefilter("error", ks.KernelscopeWarning)
            predict.gradient_flow(K, None, np.ones(40), 5.0)
            predict.gradient_descent(K, np.ones(40), 5.0, momentum=0.5)

    def test_rcond_nan(self):
        with pytest.raises(ks.ValidationError, match="rcond: expected a non-negative number, got nan"):
            predict.gradient_flow(np.eye(2), None, [1.0, 1.0], 5.0, rcond=float("nan"))

    def test_callable_loss_nan(self):
        with pytest.raises(ks.ValidationError, match="loss: expected a callable whose gradient is finite"):
            predict.gradient_descent(np.eye(2), [1.0, 1.0], 1.0, loss=lambda f, y: (f * float("nan")).sum())

    def test_callable_loss_on_a_kernel_that_is_not_psd_names_the_cause(self):
        """−I as the kernel: the outputs grow like e^t and overflow; the message says so (it said "v0: expected
        finite values", from inside the solver's spectral-radius estimate), after the warning about the kernel."""
        loss = lambda f, y: ((f - y[:, None]) ** 2).sum() / 2  # noqa: E731
        with pytest.warns(ks.KernelscopeWarning, match="not positive semi-definite"), \
                pytest.raises(FloatingPointError, match="stopped being finite at t ≈ .*positive semi-definite"):
            predict.gradient_descent(-np.eye(2), [1.0, 1.0], 1e6, loss=loss)

    def test_a_flow_that_blows_up_in_finite_time_says_so(self):
        """L = −Σ(f − y)⁴ is unbounded below: f' = 4(f − y)³ reaches infinity at t = 1/8."""
        with pytest.raises(RuntimeError, match=r"failed at t = 0.12.*blows up in finite time"):
            predict.gradient_descent(np.eye(2), [1.0, 1.0], 1.0, loss=lambda f, y: -((f - y[:, None]) ** 4).sum())

    def test_nngp_ensemble_with_ridge_is_neural_tangents_posterior(self):
        """Against neural-tangents 0.6.5 (JAX 0.4.23, float64), two-layer ReLU net, diag_reg = 0.1 (absolute):

            from neural_tangents import stax; import neural_tangents as nt
            _, _, kernel_fn = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(),
                                          stax.Dense(1, W_std=1.5, b_std=0.05))
            predict_fn = nt.predict.gradient_descent_mse_ensemble(kernel_fn, X, y[:, None], learning_rate=5.0,
                                                                   diag_reg=0.1, diag_reg_absolute_scale=True)
            mean, cov = predict_fn(t=t, x_test=Xs, get=get, compute_cov=True)   # t in (0.5, inf)

        (learning_rate = N·η: neural-tangents' loss is the mean over the N targets.) Ours differed by 1.2%."""
        X = np.array([[0.3, -1.2, 0.5], [1.1, 0.4, -0.7], [-0.6, 0.9, 1.3], [0.2, 0.1, -1.5], [-1.4, -0.3, 0.8]])
        y = np.array([0.5, -1.0, 0.25, 1.5, -0.75])
        Xs = np.array([[0.7, -0.2, 0.1], [-0.5, 1.0, -0.4], [1.2, 0.8, 0.6]])
        net = nets.serial(nets.Dense(512, 1.5, 0.05), nets.ReLU(), nets.Dense(1, 1.5, 0.05))
        peer = {
            ("nngp", 0.5): ([-0.01303442263921457, 0.15738543653556092, -0.1624482483315721],
                            [[0.19431396167569276, -0.08464295265025337, 0.26856439632644846],
                             [-0.08464295265025337, 0.6607622968350467, 0.003666755141392808],
                             [0.26856439632644846, 0.003666755141392808, 0.9956364896241658]]),
            ("nngp", np.inf): ([-0.3049964245612434, 0.5141816403710123, -0.9055385806965633],
                               [[0.11474415732935583, -0.046479383887713464, 0.12039739162573415],
                                [-0.046479383887713464, 0.5974161700939219, 0.027996929263645887],
                                [0.12039739162573415, 0.027996929263645942, 0.5956837539005875]]),
            ("ntk", 0.5): ([-0.11001682818367588, 0.274479869416651, -0.4108439480444905],
                           [[0.1440185716853117, -0.06320795849285449, 0.18939925563520044],
                            [-0.06320795849285447, 0.6567321189190851, 0.024291886458242873],
                            [0.1893992556352004, 0.02429188645824293, 0.7792888680993091]]),
            ("ntk", np.inf): ([-0.29635201216107604, 0.4619544447785228, -0.8935295711988896],
                              [[0.09523779106605545, -0.0431916262300262, 0.08713760615388905],
                               [-0.04319162623002622, 0.6243656058898172, 0.04433852342869382],
                               [0.08713760615388899, 0.04433852342869388, 0.5204670746019744]]),
        }
        for (kind, t), (mean, cov) in peer.items():
            g = predict.ensemble(net, X, y, Xs, t, kind=kind, ridge=0.1)
            np.testing.assert_allclose(g.mean, mean, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(g.covariance, cov, rtol=1e-10, atol=1e-12)
            v = predict.ensemble(net, X, y, Xs, t, kind=kind, ridge=0.1, cov=False).covariance
            np.testing.assert_allclose(v, np.diag(cov), rtol=1e-10, atol=1e-12)

    def test_nngp_ensemble_at_infinity_is_the_gp_posterior_with_noise(self):
        net = nets.serial(nets.Dense(64, 1.2, 0.1), nets.Erf(), nets.Dense(1, 1.2, 0.1))
        rng = np.random.default_rng(1)
        X, Xs, y, lam = rng.normal(size=(7, 2)), rng.normal(size=(3, 2)), rng.normal(size=7), 0.3
        K, Kx, Kss = net.kernel(X).nngp, net.kernel(Xs, X).nngp, net.kernel(Xs).nngp
        g = predict.ensemble(net, X, y, Xs, np.inf, kind="nngp", ridge=lam)
        A = np.linalg.solve(K + lam * np.eye(7), Kx.T).T
        np.testing.assert_allclose(g.mean, A @ y, atol=1e-12)
        np.testing.assert_allclose(g.covariance, Kss - A @ Kx.T, atol=1e-12)

    def test_ensemble_of_a_convolutional_network(self):
        net = nets.serial(nets.Conv(4, 3, padding="same"), nets.ReLU(), nets.Flatten(), nets.Dense(1))
        rng = np.random.default_rng(0)
        X, Xs, y = rng.normal(size=(5, 1, 6, 6)), rng.normal(size=(3, 1, 6, 6)), rng.normal(size=5)
        g = predict.ensemble(net, X, y, Xs, np.inf, kind="nngp")
        K, Kx, Kss = net.kernel(X).nngp, net.kernel(Xs, X).nngp, net.kernel(Xs).nngp
        np.testing.assert_allclose(g.mean, Kx @ np.linalg.solve(K, y), atol=1e-10)
        np.testing.assert_allclose(g.covariance, Kss - Kx @ np.linalg.solve(K, Kx.T), atol=1e-10)
        with pytest.raises(ks.ValidationError, match=r"X_test: expected inputs of shape \(1, 6, 6\)"):
            predict.ensemble(net, X, y, Xs[:, :, :5], 1.0)


class TestHugeValues:
    X = np.array([[1e155, 0.0], [0.0, 1e155]])

    @pytest.mark.parametrize("fn", [kernels.rbf, kernels.arccos_kernel, kernels.erf_kernel, kernels.laplace,
                                    lambda X: kernels.RBF().diag(X)], ids=["rbf", "arccos", "erf", "laplace",
                                                                           "diag"])
    def test_classic_kernels(self, fn):
        with pytest.raises(ks.ValidationError, match=r"X1?: expected entries whose squares.*Scale the inputs"):
            fn(self.X)

    def test_networks(self):
        net = nets.serial(nets.Dense(4), nets.Erf(), nets.Dense(1))
        for call in (lambda: net.kernel(self.X), lambda: net.kernel(self.X, diag=True),
                     lambda: net.kernel(np.ones((2, 2)), self.X)):
            with pytest.raises(ks.ValidationError, match="x[12]: expected entries whose squares"):
                call()
        conv = nets.serial(nets.Conv(2, 2), nets.ReLU(), nets.Flatten(), nets.Dense(1))
        with pytest.raises(ks.ValidationError, match="x1: expected entries whose squares"):
            conv.kernel(np.full((2, 1, 4, 4), 1e155))

    def test_empirical_ntk(self):
        model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
        with pytest.raises(ks.ValidationError, match="x1: expected entries whose squares"):
            ks.empirical.ntk(model, self.X)

    def test_a_large_but_safe_input_still_works(self):
        X = np.array([[1e150, 0.0], [0.0, 1e150]])
        np.testing.assert_allclose(kernels.rbf(X), np.eye(2))

    def test_cg_with_huge_targets(self):
        rng = np.random.default_rng(0)
        X, y, Xt = rng.normal(size=(30, 2)), rng.normal(size=30), rng.normal(size=(3, 2))
        exact = ks.KernelRegressor(kernel="rbf", ridge=1e-3, solver="cholesky").fit(X, y).predict(Xt)
        big = ks.KernelRegressor(kernel="rbf", ridge=1e-3, solver="cg").fit(X, 1e155 * y).predict(Xt)
        np.testing.assert_allclose(big / 1e155, exact, rtol=1e-6)

    def test_marginal_likelihood_with_huge_targets(self):
        X = np.random.default_rng(0).normal(size=(30, 2))
        with pytest.raises(ks.ValidationError, match="y: expected entries whose squares.*Scale y"):
            ks.KernelRegressor(kernel="rbf", optimize=True).fit(X, 1e200 * np.ones(30))

    def test_polynomial_coef0_nan(self, tmp_path, capsys):
        with pytest.raises(ks.ValidationError, match="coef0: expected a finite number, got nan"):
            kernels.polynomial(np.ones((2, 2)), coef0=float("nan"))
        np.save(tmp_path / "x.npy", np.ones((3, 2)))
        code, _, err = run_cli(["kernel", "--x", str(tmp_path / "x.npy"), "--out", str(tmp_path / "k.npy"),
                                "--activation", "poly", "--coef0", "nan"], capsys)
        assert code == 2 and "coef0: expected a finite number" in one_line_error(err)


class TestStationaryPoints:
    def test_x_cubed_is_degenerate(self):
        """Newton reaches 0 only linearly; at its stop the Hessian 6x > 0 said 'minimum'."""
        assert optim.stationary_point(lambda x: (x ** 3).sum(), [1.0]).kind == "degenerate"
        assert optim.stationary_point(lambda x: x[0] ** 4 + x[1] ** 2, [1.0, 1.0]).kind == "degenerate"

    @pytest.mark.parametrize("f,x0,kind", [
        (lambda x: (x ** 2).sum(), [1.0, 2.0], "minimum"),
        (lambda x: -x[0] ** 2 + x[0] ** 3, [0.2], "maximum"),
        (lambda x: x[0] ** 2 - x[1] ** 2 + x[0] ** 3, [0.3, 0.2], "saddle"),
        (lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2, [-1.0, 1.0], "minimum"),
        (lambda x: torch.cos(x).sum(), [2.5, 3.5], "minimum"),
    ], ids=["bowl", "maximum", "saddle", "rosenbrock", "cos"])
    def test_non_degenerate_points_keep_their_kind(self, f, x0, kind):
        assert optim.stationary_point(f, x0).kind == kind

    def test_classify_nan(self):
        with pytest.raises(ks.ValidationError, match="eigenvalues: expected finite values, got NaN"):
            optim.classify([float("nan"), 1.0])


# --------------------------------------------------------------------------------------------------------------
# Raw errors: one line naming the argument
# --------------------------------------------------------------------------------------------------------------
class TestArgumentsNamed:
    f = staticmethod(lambda x: (x ** 2).sum())

    @pytest.mark.parametrize("call,match", [
        (lambda f: optim.hessian_eigs(f, np.ones(10), max_iter=-3), "max_iter: expected an integer >= 1"),
        (lambda f: optim.hessian_eigs(f, np.ones(3), k=5), r"k: expected at most 3 eigenpairs"),
        (lambda f: optim.hessian_eigs(f, np.array([np.nan] + [1.0] * 9)), "x: expected finite values"),
        (lambda f: optim.gradient(f, torch.tensor([float("nan"), 1.0])), "x: expected finite values"),
        (lambda f: optim.trajectory(f, [1.0], lr=0.1, blowup=-1), "blowup: expected a positive number"),
    ], ids=["max_iter", "k>P", "nan-point", "nan-tensor", "blowup"])
    def test_optim(self, call, match):
        with pytest.raises(ks.ValidationError, match=match):
            call(self.f)

    @pytest.mark.parametrize("f,match", [(lambda x: x, r"f: expected a function returning a scalar.*shape \(2,\)"),
                                         (3, "f: expected a callable")], ids=["vector", "not-callable"])
    def test_functions(self, f, match):
        for call in (optim.gradient, optim.hessian, optim.hvp, lambda f, x: optim.hessian_eigs(f, x, k=1),
                     optim.stationary_point, lambda f, x: optim.trajectory(f, x, lr=0.1)):
            with pytest.raises(ks.ValidationError, match=match):
                call(f, [1.0, 2.0])

    def test_model_loss(self):
        m = torch.nn.Linear(3, 3).double()
        with pytest.raises(ks.ValidationError, match="X: expected examples with 3 features"):
            optim.model_loss(m, np.ones((4, 5)), np.ones(4))
        for labels, match in (([0, 1, 2, 7], r"labels in \[0, 3\)"), ([0, 1, 2, -1], r"labels in \[0, 3\)"),
                              ([0, 1, 2, 1.5], "integer class labels"), ([0, 1, 2, np.nan], "finite values")):
            with pytest.raises(ks.ValidationError, match=match):
                optim.model_loss(m, np.ones((4, 3)), np.array(labels), "cross_entropy")

    def test_fit_hyperparameters_max_iter(self):
        from kernelscope.regression import fit_hyperparameters

        with pytest.raises(ks.ValidationError, match="max_iter: expected an integer"):
            fit_hyperparameters("rbf", np.ones((4, 2)), np.ones(4), max_iter=2.5)

    def test_path_kernel_momentum(self):
        from kernelscope import dynamics

        with pytest.raises(ks.ValidationError, match=r"momentum: expected a number in \[0, 1\)"):
            dynamics.path_kernel(dynamics.mlp(1, 4, seed=0), np.ones((3, 1)), np.ones(3), np.ones((2, 1)),
                                 lr=0.1, steps=2, momentum=1.5)

    def test_layers(self):
        assert nets.Conv(8, np.int64(3)).kernel_size == (3,)
        assert nets.AvgPool((np.int32(2), 2)).kernel_size == (2, 2)
        for call, match in ((lambda: nets.Conv(8, 3.0), "kernel_size: expected an int"),
                            (lambda: nets.AvgPool(2.5), "kernel_size: expected an int"),
                            (lambda: nets.LeakyReLU("a"), "slope: expected a number"),
                            (lambda: nets.LeakyReLU(float("nan")), "slope: expected a finite number"),
                            (lambda: nets.ABReLU(0, "b"), "b: expected a number")):
            with pytest.raises(ks.ValidationError, match=match):
                call()


# --------------------------------------------------------------------------------------------------------------
# The command line: exit statuses and one-line messages
# --------------------------------------------------------------------------------------------------------------
class TestCommandLine:
    @pytest.mark.parametrize("first", ["1,2\n", "1,2,x\n"], ids=["short-row", "bad-field"])
    def test_a_malformed_first_row_is_not_a_header(self, first, tmp_path, capsys):
        (tmp_path / "A.csv").write_text(first + "1,2,3\n4,5,6\n")
        (tmp_path / "b.csv").write_text("1\n2\n3\n")
        code, _, err = run_cli(["solve", str(tmp_path / "A.csv"), str(tmp_path / "b.csv")], capsys)
        assert code == 2 and "could not be read" in one_line_error(err)

    def test_a_header_is_still_skipped(self, tmp_path, capsys):
        (tmp_path / "A.csv").write_text("x,y\n1,0\n0,1\n")
        (tmp_path / "b.csv").write_text("b\n1\n2\n")
        code, out, err = run_cli(["solve", str(tmp_path / "A.csv"), str(tmp_path / "b.csv")], capsys)
        assert code == 0 and "kind: unique" in out, err

    def test_regress_out_of_an_unknown_format(self, tmp_path, capsys):
        np.savetxt(tmp_path / "train.csv", np.random.default_rng(0).normal(size=(10, 3)), delimiter=",")
        code, _, err = run_cli(["regress", "--train", str(tmp_path / "train.csv"), "--test",
                                str(tmp_path / "train.csv"), "--out", str(tmp_path / "pred.json")], capsys)
        assert code == 2 and "--out: expected a file name ending in .csv or .npy or .txt" in one_line_error(err)
        assert not (tmp_path / "pred.json").exists()

    def test_tour_seed_refused_up_front(self, tmp_path, capsys):
        code, _, err = run_cli(["tour", "--quick", "--seed", "-1", "--out", str(tmp_path)], capsys)
        assert code == 2 and "seed: expected an integer >= 0" in one_line_error(err)
        assert not (tmp_path / "steps").exists()

    def test_warnings_are_note_lines(self, capsys, monkeypatch):
        from kernelscope import cli

        def warns(*a, **k):
            warnings.warn("something to know", ks.KernelscopeWarning, stacklevel=2)
            return 0

        monkeypatch.setattr(cli, "app", warns)
        code, _, err = run_cli(["anything"], capsys)
        assert code == 0 and err.strip() == "kernelscope: note: something to know"

    @pytest.mark.parametrize("argv", [
        ["spiral", "--optimizer", "sgd", "--lr", "1e6", "--epochs", "20", "--n-per-class", "30", "--no-gif",
         "--no-progress"],
        ["lazy", "--lr", "1000", "--widths", "8,16", "--steps", "10"],
        ["pathkernel", "--optimizer", "adam", "--lr", "10", "--width", "32", "--steps", "30"],
    ], ids=["spiral", "lazy", "pathkernel"])
    def test_divergence_is_a_failure(self, argv, tmp_path, capsys):
        code, _, err = run_cli([*argv, "--out", str(tmp_path)], capsys)
        assert code == 1, err
        assert "diverged" in err and "Traceback" not in err
        assert ".py:" not in err  # no raw Python warning (file and line)
