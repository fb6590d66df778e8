"""The nets engine near the hardware: scratch buffers, the shifted sums of convolutions, the positions-first tiles,
float32 precision, and the threads the tiles run on.

References are independent of the library's code paths: shifts by explicit NumPy index arithmetic, input Grams by
``np.einsum``, float64 kernels for the float32 path (and MNIST-1D-like signals for its error), and the
process's CPU time for the number of threads an op ran on.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from kernelscope import _scratch, nets
from kernelscope._threads import free_cores, single_threaded_worker, thread_local_threads
from kernelscope.nets import conv as conv_mod
from kernelscope.nets import engine


# ----------------------------------------------------------------------------------------------------------
# Scratch buffers
# ----------------------------------------------------------------------------------------------------------
def test_workspace_reuses_buffers_across_rounds_never_within_one():
    ws = _scratch.Workspace()
    with ws.round():
        a = _scratch.empty((64, 64))
        b = _scratch.empty((32, 10))
        assert a.data_ptr() != b.data_ptr()
        ptrs = {a.data_ptr(), b.data_ptr()}
    with ws.round():
        c = _scratch.empty((64, 64))
        d = _scratch.empty((32, 10))  # the smaller free buffer that holds it
        assert {c.data_ptr(), d.data_ptr()} == ptrs and c.data_ptr() == a.data_ptr()
        e = _scratch.empty((64, 64))  # none free any more: a new one
        assert e.data_ptr() not in ptrs
    assert ws.nbytes == 8 * (2 * 64 * 64 + 32 * 10)
    outside = _scratch.empty((64, 64))  # no round: torch.empty
    assert outside.data_ptr() not in ptrs | {e.data_ptr()}


def test_empty_like_keeps_the_memory_order():
    t = torch.empty(5, 6, 3, 4).permute(2, 3, 0, 1)  # logically (3, 4, 5, 6); its last two axes outermost
    u = _scratch.empty_like(t, (3, 4, 2, 2))
    assert u.shape == (3, 4, 2, 2) and u.dtype == t.dtype
    assert u.permute(2, 3, 0, 1).is_contiguous()
    assert _scratch.empty_like(torch.empty(2, 3)).is_contiguous()


# ----------------------------------------------------------------------------------------------------------
# Shifted sums (convolutions and pooling on the kernels)
# ----------------------------------------------------------------------------------------------------------
def _shift_reference(t, axes, L, k, s, lo, out, circular):
    """Σ_f t[idx_f] with idx_f(p) = s p + f − lo on every axis of ``axes`` jointly, by NumPy index arithmetic."""
    t = np.asarray(t)
    res = np.zeros([out if i in axes else n for i, n in enumerate(t.shape)])
    for f in range(k):
        idx = s * np.arange(out) + f - lo
        valid = np.ones(out, bool) if circular else (idx >= 0) & (idx < L)
        idx = idx % L
        grids = np.meshgrid(*[np.arange(out)] * len(axes), indexing="ij")
        ok = np.logical_and.reduce([valid[g] for g in grids])
        src = [slice(None)] * t.ndim
        for ax, g in zip(axes, grids):
            src[ax] = idx[g]
        # fancy indexing on several axes: move them to the front in a consistent way
        moved = np.moveaxis(t, axes, range(len(axes)))
        picked = moved[tuple(idx[g] for g in grids)]  # (out, ..., out, rest)
        picked = picked * ok.reshape(ok.shape + (1,) * (picked.ndim - ok.ndim))
        res += np.moveaxis(picked, range(len(axes)), axes)
    return res


@pytest.mark.parametrize("padding", ["valid", "same", "circular"])
@pytest.mark.parametrize("k,s", [(3, 1), (5, 1), (2, 2), (3, 2)])
@pytest.mark.parametrize("layout", ["contiguous", "positions_first"])
def test_shift_sum_against_index_arithmetic(padding, k, s, layout):
    L = 9
    out, lo = conv_mod.conv_geometry(L, k, s, padding)
    x = torch.randn(4, 3, L, L, dtype=torch.float64, generator=torch.Generator().manual_seed(k + s))
    if layout == "positions_first":  # the engine's tiles: positions outermost in memory
        x = x.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)
    for axes in ((2, 3), (3,), (2,)):
        got = conv_mod.shift_sum(x, axes, L, k, s, lo, out, padding == "circular")
        np.testing.assert_allclose(got.numpy(), _shift_reference(x.numpy(), axes, L, k, s, lo, out,
                                                                 padding == "circular"), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(conv_mod.shift_average(x, axes, L, k, s, lo, out, padding == "circular"),
                                   got / k, rtol=1e-15)


@pytest.mark.parametrize("C", [1, 3, 6])
def test_input_grams_are_positions_first_and_exact(C):
    rng = np.random.default_rng(C)
    A, B = rng.normal(size=(5, C, 7)), rng.normal(size=(4, C, 7))
    G = engine._grams(torch.as_tensor(A), torch.as_tensor(B), pairs=True)
    assert G.shape == (5, 4, 7, 7) and G.permute(2, 3, 0, 1).is_contiguous()
    np.testing.assert_allclose(G.numpy(), np.einsum("icp,jcq->ijpq", A, B) / C, rtol=1e-13, atol=1e-15)
    D = engine._grams(torch.as_tensor(A), torch.as_tensor(B), pairs=False)
    np.testing.assert_allclose(D.numpy(), np.einsum("icp,jcp->ijp", A, B) / C, rtol=1e-13, atol=1e-15)
    V = engine._self_grams(torch.as_tensor(A), pairs=True)
    np.testing.assert_allclose(V.numpy(), np.einsum("icp,icq->ipq", A, A) / C, rtol=1e-13, atol=1e-15)


# ----------------------------------------------------------------------------------------------------------
# float32 precision
# ----------------------------------------------------------------------------------------------------------
def _mlp():
    return nets.serial(*[l for _ in range(3) for l in (nets.Dense(64, 1.5, 0.05), nets.ReLU())],
                       nets.Dense(1, 1.5, 0.05))


def _cnn_gap():
    layers = [l for _ in range(2) for l in (nets.Conv(16, 5, padding="circular", w_std=1.4, b_std=0.1),
                                            nets.ReLU())]
    return nets.serial(*layers, nets.GlobalAvgPool(), nets.Dense(1, 1.0, 0.0))


def _signals(n, length=24, seed=0):
    """Smooth random signals with a random phase (MNIST-1D-like): neighbouring positions correlate."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, length, endpoint=False)
    x = sum(rng.normal(size=(n, 1)) * np.sin((f + 1) * t + rng.uniform(0, 6, size=(n, 1))) for f in range(3))
    return (x + 0.1 * rng.normal(size=(n, length)))[:, None, :]


@pytest.mark.parametrize("make, X", [(_mlp, np.random.default_rng(1).normal(size=(200, 8))),
                                     (_cnn_gap, _signals(40))], ids=["mlp", "cnn-gap"])
def test_float32_precision_is_float64_to_float32_rounding(make, X):
    net = make()
    k64, k32 = net.kernel(X), net.kernel(X, precision="float32")
    assert k32.nngp.dtype == np.float64 and k32.ntk.dtype == np.float64
    for a, b in ((k32.nngp, k64.nngp), (k32.ntk, k64.ntk)):
        assert np.abs(a - b).max() / np.abs(b).max() < 2e-5
        assert np.array_equal(a, a.T)
    d32 = net.kernel(X, diag=True, precision="float32")
    np.testing.assert_allclose(d32.ntk, np.diag(k64.ntk), rtol=2e-5)
    Y = X[:7] + 0.5
    np.testing.assert_allclose(net.kernel(X, Y, precision="float32").ntk, net.kernel(X, Y).ntk, rtol=1e-4)


def test_float32_snaps_repeated_points_like_float64():
    net = _mlp()
    X = np.random.default_rng(2).normal(size=(30, 5))
    X[7] = X[3]
    k = net.kernel(X, precision="float32")
    # θ = 0 for the repeated point (unsnapped, float32's rounding of cos θ = 1 gives θ up to ≈ 5e-4, and the
    # derivative kernel (π − θ)/2π would be off by ≈ 1e-4)
    np.testing.assert_allclose(k.ntk[3, 7], k.ntk[3, 3], rtol=1e-6)
    np.testing.assert_allclose(k.ntk[3], k.ntk[7], rtol=1e-6)
    with pytest.raises(ValueError, match="precision: expected one of"):
        net.kernel(X, precision="float16")


# ----------------------------------------------------------------------------------------------------------
# Threads
# ----------------------------------------------------------------------------------------------------------
def _threads_used(fn) -> float:
    """CPU seconds of the whole process per CPU second of this thread while ``fn`` runs: ≈ the number of threads
    its ops ran on (spinning OpenMP threads count too, which only pushes it up)."""
    fn()
    p, t = time.process_time(), time.thread_time()
    fn()
    return (time.process_time() - p) / max(time.thread_time() - t, 1e-9)


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="torch runs on one thread here")
def test_thread_local_threads_changes_this_thread_only():
    X = torch.rand(1500, 1500, dtype=torch.float64)
    work = lambda: (torch.acos(X), X @ X)  # noqa: E731 - MKL vector math and GEMM, and an OpenMP op
    before = torch.get_num_threads()
    seen = []
    with thread_local_threads(1):
        assert torch.get_num_threads() == 1
        other = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        other.start()
        other.join()
        assert _threads_used(work) < 1.3
        assert _threads_used(lambda: X + X) < 1.3
    assert seen == [before] and torch.get_num_threads() == before
    assert _threads_used(work) > 1.5  # back to torch's threads


def test_single_threaded_worker_keeps_its_setting_and_free_cores_is_sane():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, initializer=single_threaded_worker) as pool:
        assert pool.submit(torch.get_num_threads).result() == 1
        assert pool.submit(torch.get_num_threads).result() == 1  # still, for later tasks
    n = free_cores(0.02)
    assert 1 <= n <= (len(__import__("os").sched_getaffinity(0)))
