"""The compiled loops (kernelscope._jit): their acos within 1 ulp, the arc-cosine dual equal to the torch ops it
replaces, and the networks' kernels unchanged with the loops on and off."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from kernelscope import _jit, duals, nets

numba = pytest.importorskip("numba")


def ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.abs(got - want) / np.spacing(np.abs(want))


def test_acos_within_one_ulp_of_libm_everywhere_it_changes_formula():
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.uniform(-1, 1, 200_000),
        np.linspace(-1.0, 1.0, 200_001),
        0.5 + np.linspace(-1e-9, 1e-9, 2001), -0.5 + np.linspace(-1e-9, 1e-9, 2001),  # the switch of formulas
        1.0 - rng.uniform(0, 1e-6, 20_000), -1.0 + rng.uniform(0, 1e-6, 20_000),  # ill-conditioned ends
        1.0 - np.spacing(1.0) * np.arange(64), -1.0 + np.spacing(1.0) * np.arange(64),
        [0.0, -0.0, 1e-300, -1e-300],
    ])
    out = np.empty_like(x)
    _jit._loops().acos_array(x, out, _jit._loops().constants(np.float64))
    want = np.arccos(x)  # libm: itself within 1 ulp of the correctly rounded value
    nonzero = want != 0
    assert ulps(out[nonzero], want[nonzero]).max() <= 2.0
    assert np.all(out[~nonzero] == 0.0)  # acos(1) = 0 exactly
    assert out[x == -1.0][0] == np.float64(math.pi)


def test_acos_in_float32_within_two_ulps():
    """The float32 loop computes in float32 (its constants are float32: twice the lanes of float64): within 2
    float32 ulps of the exact arccos (measured 1.24; torch's float32 acos 0.79)."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-1, 1, 100_000), np.linspace(-1, 1, 100_001),
                        1 - rng.uniform(0, 1e-3, 10_000), -1 + rng.uniform(0, 1e-3, 10_000)]).astype(np.float32)
    out = np.empty_like(x)
    loops = _jit._loops()
    loops.acos_array(x, out, loops.constants(np.float32))
    assert out.dtype == np.float32
    want = np.arccos(x.astype(np.float64))
    nonzero = want != 0
    ulp = np.spacing(np.abs(want[nonzero]).astype(np.float32)).astype(np.float64)
    assert (np.abs(out[nonzero] - want[nonzero]) / ulp).max() <= 2.0


def _cases(dtype, same):
    """Covariances with every special case the dual handles: parallel, opposite, orthogonal and nearly parallel
    pairs, zero-variance points, and cosines a rounding error past ±1."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(40, 7, generator=g, dtype=torch.float64)
    X[3] = X[1]  # identical points
    X[4] = -X[1]  # opposite points
    X[5] = 0.0  # a zero-norm input
    X[6] = X[2] * (1 + 1e-9)  # nearly parallel
    X[7] = 3.0 * X[8]  # parallel, another scale
    c = (X @ X.T).to(dtype)
    v = torch.diagonal(c).clone()
    c[0, 9] *= 1 + 1e-12  # a cosine past 1 by rounding
    if same is None:
        c = c[:, 1:].contiguous()
        return c, v[:, None], v[None, 1:]
    return c, v[:, None], v[None, :]


@pytest.mark.parametrize("alpha,beta", [(0.0, 1.0), (0.1, 1.0), (-1.0, 1.0), (0.3, -2.0)])
@pytest.mark.parametrize("same", [None, "diagonal"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scaled", [True, False])
def test_abrelu_dual_compiled_equals_the_torch_ops(alpha, beta, same, dtype, scaled):
    c, a, b = _cases(dtype, same)
    assert _jit.usable(c)
    got = duals.abrelu_dual(c.clone(), a, b, alpha, beta, inplace=True, same=same, scaled=scaled)
    with _jit.disabled():
        assert not _jit.usable(c)
        want = duals.abrelu_dual(c.clone(), a, b, alpha, beta, inplace=True, same=same, scaled=scaled)
    tol = 1e-14 if dtype == torch.float64 else 2e-6
    for g, w in zip(got, want):
        if isinstance(g, torch.Tensor):
            scale = w.abs().max().clamp_min(1.0)
            assert torch.allclose(g, w, rtol=tol, atol=tol * float(scale)), float((g - w).abs().max())
        else:
            assert g == w
    nngp, dot = got[:2]
    if same == "diagonal" and dtype == torch.float64:  # each point with itself: φ = π − θ = π, as the torch ops
        # give (in float32 the loop adds the shift in float64 and rounds once: a last-bit difference)
        assert torch.equal(torch.diagonal(dot), torch.diagonal(want[1]))


def test_usable_only_where_the_loops_apply():
    t = torch.zeros(4, 5)
    assert _jit.usable(t.double())
    assert _jit.usable(t.double().T)  # dense in another order: its flat memory is used as it is
    assert not _jit.usable(t.double()[:, :3])  # not dense
    assert not _jit.usable(t.double(), t.double().T.contiguous().T)  # laid out differently
    assert not _jit.usable(t.double().requires_grad_())  # autograd: the torch ops (which refuse it too)
    assert not _jit.usable(t.half())
    assert not _jit.usable(t.double(), t.float())


def test_environment_turns_the_loops_off(monkeypatch):
    monkeypatch.setenv("KERNELSCOPE_JIT", "0")
    assert not _jit.usable(torch.zeros(3))


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_network_kernels_the_same_with_the_loops_on_and_off(precision):
    """A dense MLP and a CNN with pooling (pairs of positions, laid out positions first): the loops change the
    last bits only."""
    g = torch.Generator().manual_seed(2)
    mlp = nets.serial(nets.Dense(64, 1.4, 0.1), nets.ReLU(), nets.Dense(64, 1.4, 0.1), nets.LeakyReLU(0.2),
                      nets.Dense(1, 1.4, 0.1))
    cnn = nets.serial(nets.Conv(8, 3, padding="same", w_std=1.3, b_std=0.1), nets.ReLU(),
                      nets.Conv(8, 3, padding="same", w_std=1.3), nets.Abs(), nets.GlobalAvgPool(), nets.Dense(1))
    for net, X in ((mlp, torch.randn(300, 10, generator=g, dtype=torch.float64)),
                   (cnn, torch.randn(24, 2, 12, generator=g, dtype=torch.float64))):
        got = net.kernel(X, X[:7], precision=precision)
        gotsym = net.kernel(X, precision=precision)
        with _jit.disabled():  # process-wide: the engine's worker threads see it too
            want = net.kernel(X, X[:7], precision=precision)
            wantsym = net.kernel(X, precision=precision)
        tol = 1e-13 if precision == "float64" else 1e-5
        for g_, w_ in ((got.nngp, want.nngp), (got.ntk, want.ntk), (gotsym.nngp, wantsym.nngp),
                       (gotsym.ntk, wantsym.ntk)):
            assert torch.allclose(g_, w_, rtol=tol, atol=tol * float(w_.abs().max()))


def test_loops_compile_where_numba_finds_no_cache_location():
    """A read-only install without a user cache: numba refuses cache=True, and the loops compile uncached."""
    code = """
import numba, numpy as np
real = numba.njit
def njit(*args, **kwargs):
    if kwargs.get("cache"):
        raise RuntimeError("cannot cache function 'abrelu': no locator available for file '...'")
    return real(*args, **kwargs)
numba.njit = njit
from kernelscope import _jit_loops
x = np.linspace(-1, 1, 101); out = np.empty_like(x)
_jit_loops.acos_array(x, out, _jit_loops.constants(np.float64))
assert np.allclose(out, np.arccos(x), rtol=1e-15, atol=0)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
