"""Block-wise kernel matrices on Dask, matrix-free products, disk stacks, and where the work runs."""

from __future__ import annotations

import functools
import logging
import os
import signal
import time

import numpy as np
import pytest
import torch

from contract import check_kernel_contract
from kernelscope import scale
from kernelscope._arrays import MemoryBudgetError, ValidationError


def rbf(A, B, gamma=0.2):
    """A module-level kernel (picklable by reference for the worker processes)."""
    A, B = torch.as_tensor(A, dtype=torch.float64), torch.as_tensor(B, dtype=torch.float64)
    d2 = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2 * A @ B.T
    return torch.exp(-gamma * d2.clamp_min(0))


def slow_rbf(A, B, seconds=0.25):
    time.sleep(seconds)
    return rbf(A, B)


def dense(k, A, B):
    return k(torch.as_tensor(A), torch.as_tensor(B)).numpy()


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(97, 4)), rng.normal(size=(41, 4))


class TestBlockKernel:
    @pytest.mark.parametrize("block", [3, 7, 32, 97, 500])
    def test_contract_blocks_equal_dense(self, data, block):
        X, Y = data
        check_kernel_contract(lambda A, B=None: rbf(A, A if B is None else B), X, Y,
                              blocks=lambda A, B: scale.block_kernel(rbf, A, B, block=block).compute())

    def test_lazy_and_chunked(self, data):
        X, Y = data
        calls = []

        def counting(A, B):
            calls.append((len(A), len(B)))
            return rbf(A, B)

        K = scale.block_kernel(counting, X, Y, block=20)
        assert calls == [] or all(c[0] == 0 for c in calls)  # only meta inference may run, on empty blocks
        assert K.shape == (97, 41) and K.chunks == ((20, 20, 20, 20, 17), (20, 20, 1))
        calls.clear()
        K.compute()
        assert sorted(calls) == sorted((r, c) for r in (20, 20, 20, 20, 17) for c in (20, 20, 1))

    def test_symmetric_default_and_kernelscope_kernels(self, data):
        from kernelscope import kernels, nets

        X, _ = data
        k = kernels.get("rbf", gamma=0.3)
        np.testing.assert_allclose(scale.block_kernel(k, X, block=13).compute(), np.asarray(k(X, X)),
                                   rtol=0, atol=1e-13)
        net = nets.serial(nets.Dense(64, w_std=1.5, b_std=0.1), nets.ReLU(), nets.Dense(1, w_std=1.5, b_std=0.1))

        def ntk(A, B):
            return net.kernel(A, B).ntk

        check_kernel_contract(lambda A, B=None: ntk(A, A if B is None else B), X, X[:30],
                              blocks=lambda A, B: scale.block_kernel(ntk, A, B, block=16).compute())

    def test_dask_inputs(self, data):
        import dask.array as da

        X, Y = data
        K = scale.block_kernel(rbf, da.from_array(X, chunks=10), Y, block=25)
        np.testing.assert_allclose(K.compute(), dense(rbf, X, Y), rtol=0, atol=1e-14)

    def test_persist(self, data):
        X, Y = data
        K = scale.persist(scale.block_kernel(rbf, X, Y, block=30))
        np.testing.assert_allclose(K.compute(), dense(rbf, X, Y), rtol=0, atol=1e-14)

    def test_npy_stack_roundtrip(self, data, tmp_path):
        X, Y = data
        K = scale.block_kernel(rbf, X, Y, block=30)
        path = scale.save_blocks(K, tmp_path / "K")
        assert sorted(os.listdir(path)) == ["0.npy", "1.npy", "2.npy", "3.npy", "info"]
        back = scale.load_blocks(path)
        assert back.chunks[0] == (30, 30, 30, 7)
        np.testing.assert_array_equal(back.compute(), K.compute())
        assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
        with pytest.raises(ValidationError, match="does not exist yet"):
            scale.save_blocks(K, path)
        with pytest.raises(ValidationError, match="save_blocks"):
            scale.load_blocks(tmp_path / "nothing")

    @pytest.mark.parametrize("block", [0, -3, 2.5, True])
    def test_bad_block(self, data, block):
        with pytest.raises(ValidationError, match="block"):
            scale.block_kernel(rbf, data[0], block=block)

    def test_bad_inputs(self, data):
        X, Y = data
        with pytest.raises(ValidationError, match="X2: expected 4 features"):
            scale.block_kernel(rbf, X, Y[:, :3])
        with pytest.raises(ValidationError, match="X1"):
            scale.block_kernel(rbf, X[0])
        with pytest.raises(ValidationError, match="kernel"):
            scale.block_kernel(lambda A, B: torch.zeros(3, 3), X, block=10).compute()

    def test_persist_refused_past_budget(self, monkeypatch):
        X = np.zeros((200_000, 2))
        K = scale.block_kernel(rbf, X, block=10_000)  # 320 GB: nothing is computed
        with pytest.raises(MemoryBudgetError, match=r"320\.0 GB"):
            scale.persist(K)


class TestMatrixFree:
    @pytest.mark.parametrize("block", [2, 16, 50, 200])
    def test_matvec_equals_dense(self, data, block):
        X, _ = data
        V = np.random.default_rng(1).normal(size=(97, 3))
        K = dense(rbf, X, X)
        np.testing.assert_allclose(scale.block_matvec(rbf, X, V, ridge=0.5, block=block), K @ V + 0.5 * V,
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(scale.block_matvec(rbf, X, V[:, 0], block=block), K @ V[:, 0], rtol=0,
                                   atol=1e-12)

    def test_predict_and_gram(self, data):
        X, Y = data
        coef = np.random.default_rng(2).normal(size=(41, 2))
        Kxy = dense(rbf, X, Y)
        np.testing.assert_allclose(scale.block_predict(rbf, X, Y, coef, block=9), Kxy @ coef, rtol=0, atol=1e-12)
        T = np.random.default_rng(3).normal(size=(97, 2))
        G, z = scale.gram_reduce(rbf, X, T, Y, block=8, n_panels=5)
        np.testing.assert_allclose(G, Kxy.T @ Kxy, rtol=0, atol=1e-11)
        np.testing.assert_allclose(z, Kxy.T @ T, rtol=0, atol=1e-11)

    @pytest.mark.parametrize("strip", [1, 7, 41, 64])
    def test_gram_upper_strips(self, data, monkeypatch, strip):
        # the panels compute only G's upper triangle in strips of rows (ragged last strip included); the result
        # is the full, exactly symmetric K_nmᵀ K_nm
        X, Y = data
        monkeypatch.setattr(scale, "_GRAM_STRIP", strip)
        Kxy = dense(rbf, X, Y)
        G, _ = scale.gram_reduce(rbf, X, np.zeros((X.shape[0], 1)), Y, block=16, n_panels=3)
        np.testing.assert_array_equal(G, G.T)
        np.testing.assert_allclose(G, Kxy.T @ Kxy, rtol=0, atol=1e-11)

    @pytest.mark.parametrize("n,block", [(100, 10), (100, 7), (97, 97)])
    def test_each_tile_computed_once(self, n, block):
        # the symmetric product evaluates each unordered pair of panels once: (N² + Σ b_i²)/2 entries
        X = np.random.default_rng(6).normal(size=(n, 2))
        entries = []

        def counting(A, B):
            entries.append(len(A) * len(B))
            return rbf(A, B)

        scale.BlockOperator(counting, X, block).matvec(np.ones(n))
        sizes = [min(block, n - s) for s in range(0, n, block)]
        assert sum(entries) == (n * n + sum(b * b for b in sizes)) // 2

    def test_operator_counts_products(self, data):
        op = scale.BlockOperator(rbf, data[0], 10)
        op(np.ones(97))
        op.matvec(np.ones((97, 2)))
        assert op.n_products == 2 and op.shape == (97, 97)

    def test_shape_mismatch(self, data):
        with pytest.raises(ValidationError, match="V: expected 97 rows"):
            scale.block_matvec(rbf, data[0], np.ones(5))


class TestScheduler:
    def test_local_threads_by_default(self):
        assert scale.active_client() is None
        assert scale.n_workers() == (os.cpu_count() or 1)

    def test_unreachable_scheduler_names_address(self):
        t0 = time.perf_counter()
        with pytest.raises(scale.SchedulerUnreachableError, match=r"tcp://127\.0\.0\.1:9 within 1 s") as e:
            scale.connect("tcp://127.0.0.1:9", timeout=1)
        assert isinstance(e.value, OSError)
        assert time.perf_counter() - t0 < 15

    @pytest.mark.parametrize("address", ["127.0.0.1:8786", "", None, 8786, "tcp://"])
    def test_malformed_address(self, address):
        with pytest.raises(ValidationError, match="scheduler"):
            scale.connect(address)

    def test_scheduler_none_is_local(self):
        with scale.scheduler(None) as client:
            assert client is None and scale.active_client() is None


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.ERROR) as lc:
        yield lc


class TestCluster:
    def test_cg_fit_equals_dense_cholesky(self, cluster):
        from kernelscope.solvers.cg import cg_solve

        rng = np.random.default_rng(4)
        X, Xt = rng.normal(size=(300, 3)), rng.normal(size=(50, 3))
        y = np.sin(X @ np.array([1.0, -0.5, 0.3])) + 0.05 * rng.normal(size=300)
        ridge = 1e-2
        K = dense(rbf, X, X)
        exact = dense(rbf, Xt, X) @ np.linalg.solve(K + ridge * np.eye(300), y)
        with scale.scheduler(cluster.scheduler_address) as client:
            assert scale.active_client() is client and scale.n_workers() == 2
            sol = cg_solve(rbf, X, y, ridge, tol=1e-10, block=150, n_centers=100)
            pred = scale.block_predict(rbf, Xt, sol.centers, sol.coef, block=150)[:, 0]
            assert sol.info["scheduler"] == "distributed" and sol.info["converged"]
            worked = client.run(lambda dask_worker: len(dask_worker.data) + dask_worker.state.executed_count)
        assert scale.active_client() is None  # the context manager closed its client
        assert all(v > 0 for v in worked.values())  # both worker processes computed tiles
        assert np.linalg.norm(pred - exact) / np.linalg.norm(exact) < 1e-6

    def test_convolutional_network_kernel_in_tiles_on_the_cluster(self, cluster):
        """A CNN with pooling that declares its input shape is a kernel like any other: its tiles of rows are
        computed by the worker processes and equal the dense kernel of the same signals in (N, C, L)."""
        from kernelscope import nets
        from kernelscope.regression import NetworkKernel

        def cnn(**kw):
            return nets.serial(nets.Conv(16, 3, padding="circular", w_std=1.4, b_std=0.1), nets.ReLU(),
                               nets.Conv(16, 3, padding="circular", w_std=1.4, b_std=0.1), nets.ReLU(),
                               nets.GlobalAvgPool(), nets.Dense(1, 1.4, 0.1), **kw)

        rng = np.random.default_rng(6)
        X, Y = rng.normal(size=(30, 12)), rng.normal(size=(17, 12))
        ref = cnn().kernel(X.reshape(30, 1, 12), Y.reshape(17, 1, 12))
        with scale.scheduler(cluster.scheduler_address) as client:
            tiles = {which: scale.block_kernel(NetworkKernel(cnn(input_shape=(1, 12)), nngp=which == "nngp"), X, Y,
                                               block=8) for which in ("ntk", "nngp")}
            assert tiles["ntk"].chunks == ((8, 8, 8, 6), (8, 8, 1))
            count = lambda dask_worker: dask_worker.state.executed_count  # noqa: E731
            before = client.run(count)
            got = {which: K.compute() for which, K in tiles.items()}
            after = client.run(count)
        assert all(after[w] > before[w] for w in after)  # both worker processes computed tiles
        np.testing.assert_allclose(got["ntk"], ref.ntk, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got["nngp"], ref.nngp, rtol=1e-12, atol=1e-14)

    def test_no_client_becomes_the_process_default(self, cluster):
        """connect() leaves Dask's default alone; scheduler() makes its client current only inside the block and
        leaves Dask's configuration as it found it."""
        import dask

        before = dask.config.get("scheduler", None)
        client = scale.connect(cluster.scheduler_address)
        try:
            assert scale.active_client() is None and dask.config.get("scheduler", None) == before
            with client.as_current():
                assert scale.active_client() is client
        finally:
            client.close()
        with scale.scheduler(cluster.scheduler_address) as client:
            assert scale.active_client() is client
        assert scale.active_client() is None and dask.config.get("scheduler", None) == before

    def test_killed_worker_loses_nothing(self, cluster):
        from distributed import Client

        rng = np.random.default_rng(5)
        X = rng.normal(size=(64, 3))
        with Client(cluster) as client:
            pids = client.run(os.getpid)
            K = scale.block_kernel(functools.partial(slow_rbf, seconds=0.25), X, block=16)  # 16 tiles, 4 s work
            future = client.compute(K)
            victim = None
            deadline = time.time() + 20
            while victim is None and time.time() < deadline:  # a worker that holds tiles and is computing one
                held, busy = client.has_what(), client.processing()
                victim = next((w for w in pids if held.get(w) and busy.get(w)), None)
                time.sleep(0.05)
            assert victim is not None, "no worker was found in the middle of the computation"
            assert not future.done()
            os.kill(pids[victim], signal.SIGKILL)
            result = future.result(timeout=60)
            np.testing.assert_allclose(result, dense(rbf, X, X), rtol=0, atol=1e-14)
            client.wait_for_workers(2, timeout=30)
            assert pids[victim] not in client.run(os.getpid).values()  # the nanny started a fresh process

    def test_cli_regress_on_the_cluster(self, cluster, tmp_path, capsys):
        from kernelscope.cli import main

        rng = np.random.default_rng(8)
        X = rng.normal(size=(200, 3))
        table = np.column_stack([X, np.sin(X[:, 0])])
        np.save(tmp_path / "train.npy", table)
        np.save(tmp_path / "test.npy", table[:20])
        args = ["regress", "--train", str(tmp_path / "train.npy"), "--test", str(tmp_path / "test.npy"),
                "--ridge", "0.1"]
        for extra, out in [(["--solver", "cholesky"], "dense.npy"),
                           (["--solver", "cg", "--scheduler", cluster.scheduler_address], "cg.npy")]:
            with pytest.raises(SystemExit) as e:
                main(args + extra + ["--out", str(tmp_path / out)])
            assert e.value.code == 0
        assert "solver cg" in capsys.readouterr().out
        dense_pred, cg_pred = np.load(tmp_path / "dense.npy"), np.load(tmp_path / "cg.npy")
        assert np.linalg.norm(cg_pred - dense_pred) / np.linalg.norm(dense_pred) < 1e-6
        assert scale.active_client() is None

    def test_cli_bad_scheduler_and_solver(self, tmp_path, capsys):
        from kernelscope.cli import main
        from kernelscope.solvers import SOLVERS

        np.save(tmp_path / "t.npy", np.random.default_rng(9).normal(size=(30, 3)))
        base = ["regress", "--train", str(tmp_path / "t.npy"), "--test", str(tmp_path / "t.npy")]
        assert {"cholesky", "cg", "nystrom"} <= set(SOLVERS)  # the CLI lists the registry's solvers
        for extra, message in [(["--solver", "lu"], f"--solver: expected one of {', '.join(['auto', *SOLVERS])}"),
                               (["--scheduler", "localhost:8786"], "expected a Dask scheduler address")]:
            with pytest.raises(SystemExit) as e:
                main(base + extra + ["--out", str(tmp_path / "p.npy")])
            assert e.value.code == 2 and message in capsys.readouterr().err
