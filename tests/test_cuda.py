"""The same computations on a CUDA device as on the CPU (skipped where torch sees no GPU; CI has none).

Tensors in on the GPU give tensors out on the GPU, equal to the CPU results to rounding.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import kernelscope as ks
from kernelscope import empirical, kernels, nets
from kernelscope.dynamics.pathkernel import path_kernel

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CUDA = torch.device("cuda")


def _relu3():
    layers = [layer for _ in range(3) for layer in (nets.Dense(512, 1.5, 0.05), nets.ReLU())]
    return nets.serial(*layers, nets.Dense(1, 1.5, 0.05))


def _close(gpu: torch.Tensor, cpu, rtol=1e-11, atol=1e-13):
    assert isinstance(gpu, torch.Tensor) and gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.cpu().numpy(), np.asarray(cpu), rtol=rtol, atol=atol)


@pytest.mark.parametrize("make", [_relu3, lambda: nets.serial(nets.Dense(16, 2.0, 0.3), nets.Erf(), nets.Dense(1)),
                                  lambda: nets.serial(nets.Dense(16), nets.GELU(degree=16), nets.Dense(1))])
def test_nets_kernel_on_the_gpu_equals_the_cpu(make):
    net = make()
    X = np.random.default_rng(0).standard_normal((300, 7))
    Y = np.random.default_rng(1).standard_normal((50, 7))
    Xg, Yg = torch.as_tensor(X, device=CUDA), torch.as_tensor(Y, device=CUDA)
    for args in [(X,), (X, Y)]:
        ref = net.kernel(*args)
        out = net.kernel(*[torch.as_tensor(a, device=CUDA) for a in args])
        _close(out.nngp, ref.nngp)
        _close(out.ntk, ref.ntk)
    _close(net.kernel(Xg, diag=True).ntk, net.kernel(X, diag=True).ntk)
    assert net.kernel(Yg, Xg).nngp.shape == (50, 300)


def test_nets_kernel_past_one_gpu_tile_is_symmetric_and_matches_the_cpu():
    net = _relu3()
    X = np.random.default_rng(2).standard_normal((4500, 16))  # > the 4096 GPU tile: mirrored tiles
    out = net.kernel(torch.as_tensor(X, device=CUDA))
    assert torch.equal(out.ntk, out.ntk.T) and torch.equal(out.nngp, out.nngp.T)
    idx = np.r_[0:40, 4460:4500]
    ref = net.kernel(X[idx], X)
    _close(out.ntk[idx], ref.ntk, rtol=1e-10)


def test_classic_kernels_on_the_gpu():
    X = np.random.default_rng(3).standard_normal((80, 5))
    for name in ("linear", "poly", "rbf", "laplace"):
        k = kernels.get(name)
        _close(k(torch.as_tensor(X, device=CUDA)), k(X))


def test_empirical_ntk_on_the_gpu_equals_the_cpu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 64), nn.Tanh(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)).double()
    x = torch.randn(40, 6, dtype=torch.float64)
    ref = empirical.ntk(model, x, method="jacobian")
    gmodel = model.to(CUDA)
    for method in ("structured", "jacobian"):
        _close(empirical.ntk(gmodel, x.to(CUDA), method=method), ref.numpy(), rtol=1e-10)
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 1)).double()
    xi = torch.randn(12, 1, 6, 6, dtype=torch.float64)
    ref = empirical.ntk(cnn, xi, method="jacobian")
    _close(empirical.ntk(cnn.to(CUDA), xi.to(CUDA), method="structured"), ref.numpy(), rtol=1e-10)


def test_gradient_flow_on_the_gpu():
    """NTK regression on the GPU: the kernels and the gradient-flow predictions stay there."""
    X, y = ks.data.regression_nd(120, 4, seed=0)
    Xt = X[:10] + 0.01
    net = _relu3()
    K, Kx = net.kernel(X).ntk, net.kernel(Xt, X).ntk
    Xg = torch.as_tensor(X, device=CUDA)
    Kg, Kxg = net.kernel(Xg).ntk, net.kernel(torch.as_tensor(Xt, device=CUDA), Xg).ntk
    g = ks.gradient_flow(Kg, Kxg, torch.as_tensor(y, device=CUDA), [0.0, 10.0, np.inf])
    ref = ks.gradient_flow(K, Kx, y, [0.0, 10.0, np.inf])
    _close(g.train, ref.train, rtol=1e-8, atol=1e-10)
    _close(g.test, ref.test, rtol=1e-8, atol=1e-10)


@pytest.mark.filterwarnings("error")  # a diverging run (DivergenceWarning) would make the identity vacuous
def test_path_kernel_on_the_gpu_reproduces_the_model():
    """The path kernel's prediction equals the trained model's on the GPU, and both equal the CPU run's. The loss is
    summed over the 30 points (THEORY.md), so the step is 0.01: at 0.05 this network diverges on every seed."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 1)).double()
    X = torch.randn(30, 3, dtype=torch.float64)
    y = torch.sin(X[:, 0])
    ref = path_kernel(copy.deepcopy(model), X, y, X[:8], lr=0.01, steps=20)
    Xg = X.to(CUDA)
    res = path_kernel(model.to(CUDA), Xg, y.to(CUDA), Xg[:8], lr=0.01, steps=20)
    assert res.f_kernel.device.type == "cuda"
    torch.testing.assert_close(res.f_kernel, res.f_model, rtol=1e-9, atol=1e-11)
    _close(res.f_model, ref.f_model.numpy(), rtol=1e-9, atol=1e-11)
