"""No library call changes process-wide state: torch's thread count and default dtype, NumPy's error state, the
warnings filters, the environment. ``nets.kernel`` runs its tiles on worker threads without touching torch's
thread count, also when two Python threads call it at once (issue 12)."""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import pytest
import torch

import kernelscope as ks
import kernelscope.regression  # noqa: F401 - imported first: importing scikit-learn sets KMP_* variables
from kernelscope import data, kernels, linsys, nets, scale
from kernelscope.solvers.cg import cg_solve
from kernelscope.solvers.nystrom import nystrom_solve


def network():
    return nets.serial(nets.Dense(64, 1.5, 0.1), nets.ReLU(), nets.Dense(64, 1.5, 0.1), nets.Erf(),
                       nets.Dense(1, 1.5, 0.1))


def snapshot():
    return (torch.get_num_threads(), torch.get_default_dtype(), np.geterr(), list(warnings.filters),
            dict(os.environ))


@pytest.fixture
def no_thread_count_writes(monkeypatch):
    """Any torch.set_num_threads during the test is recorded (and not applied)."""
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    return calls


X = np.random.default_rng(0).normal(size=(300, 3))
Y = np.sin(X[:, 0])


@pytest.mark.parametrize("call", [
    lambda: network().kernel(X, block_rows=64),
    lambda: network().kernel(X, X[:50], block_rows=32, threads=3),
    lambda: network().kernel(X, diag=True),
    lambda: kernels.rbf(X, X[:40]),
    lambda: kernels.random_relu_features(X, 20, seed=1),
    lambda: ks.KernelRegressor("rbf", ridge=1e-2).fit(X, Y).predict(X[:10], return_std=True),
    lambda: ks.KernelRegressor(network(), ridge=1e-2, solver="cg", solver_options={"block": 64}).fit(X, Y),
    lambda: cg_solve(kernels.RBF(), X, Y, 1e-2, block=64, n_centers=20),
    lambda: nystrom_solve(kernels.RBF(), X, Y, 1e-2, block=64, n_centers=30, sampling="leverage"),
    lambda: scale.block_kernel(kernels.Laplace(), X, block=50).compute(),
    lambda: scale.block_matvec(kernels.RBF(), X, Y, ridge=0.1, block=64),
    lambda: linsys.solve(X[:5].T, Y[:3]),
    lambda: linsys.power_iteration(X.T @ X, seed=0),
    lambda: data.spirals(20, seed=0),
], ids=["net-kernel", "net-kernel-threads", "net-diag", "rbf", "relu-features", "regressor", "regressor-ntk-cg",
        "cg", "nystrom", "block-kernel", "block-matvec", "linsys-solve", "power-iteration", "spirals"])
def test_public_calls_leave_process_state_alone(call, no_thread_count_writes):
    before = snapshot()
    with warnings.catch_warnings():  # (the test's own filter change, undone before the comparison)
        warnings.simplefilter("ignore", ks.KernelscopeWarning)
        call()
    assert snapshot() == before
    assert no_thread_count_writes == []


def test_threads_argument_gives_the_same_numbers(no_thread_count_writes):
    net, Z = network(), torch.as_tensor(X)
    one = net.kernel(Z, block_rows=64, threads=1)
    for threads in (2, 5):
        k = net.kernel(Z, block_rows=64, threads=threads)
        assert torch.equal(k.ntk, one.ntk) and torch.equal(k.nngp, one.nngp)
    with pytest.raises(ks.ValidationError, match="threads: expected an integer >= 1"):
        net.kernel(Z, threads=0)
    assert no_thread_count_writes == []


def test_two_python_threads_at_once_see_their_thread_count_unchanged():
    # Real torch.set_num_threads here: a library call that wrote it would be seen by the other threads, and by a
    # thread whose first torch call falls while the kernels run (torch initialises a thread's count lazily).
    net, Z = network(), torch.randn(1500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = torch.get_num_threads()
    ref = net.kernel(Z[:300]).ntk
    start, seen, errors = threading.Barrier(3), [], []
    running = threading.Event()

    def caller():
        try:
            start.wait()
            seen.append(torch.get_num_threads())
            k = net.kernel(Z, block_rows=128)
            assert torch.allclose(k.ntk[:300, :300], ref, rtol=1e-12, atol=0)
            seen.append(torch.get_num_threads())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def watcher():  # fresh threads all along: each one's first torch call reads the count anew
        start.wait()
        while not running.is_set():
            fresh = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
            fresh.start()
            fresh.join()

    callers = [threading.Thread(target=caller) for _ in range(2)]
    watch = threading.Thread(target=watcher)
    for t in [*callers, watch]:
        t.start()
    for t in callers:
        t.join()
    running.set()
    watch.join()
    assert not errors, errors
    assert set(seen) == {expected} and torch.get_num_threads() == expected


def test_plots_leave_the_matplotlib_backend_alone(tmp_path):
    """Importing kernelscope.plots and drawing and saving a figure neither chooses nor changes matplotlib's backend
    and never touches pyplot (its figures belong to no window): run in a fresh interpreter whose backend is svg."""
    import subprocess
    import sys

    script = (
        "import sys, matplotlib, numpy as np\n"
        "before = matplotlib.get_backend()\n"
        "import kernelscope.plots.spirals, kernelscope.plots.learning, kernelscope.plots.nets\n"
        "from kernelscope.plots.linsys import plot_system\n"
        "from kernelscope.experiments.linsys import solve_system\n"
        "ax = plot_system(solve_system(np.array([[1.0, 2.0, 2.0]]), np.array([9.0])))\n"
        "ax.figure.savefig(sys.argv[1])\n"
        "print(before, matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "plane.png")], capture_output=True, text=True,
                         env={**os.environ, "MPLBACKEND": "svg"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "svg", "False"]
    assert (tmp_path / "plane.png").read_bytes()[:4] == b"\x89PNG"  # rendered when saved, whatever the backend
