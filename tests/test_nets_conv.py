"""Convolutional kernels (nets.Conv, AvgPool, GlobalAvgPool, Flatten) against independent references.

The reference writes the network on the kernel over (point, position) pairs as an (N·P) × (N·P) matrix, with
every convolution and pooling an explicit linear operator (selection matrices built with NumPy index
arithmetic) — none of the library's shift code; and Monte Carlo / empirical NTK of wide finite CNNs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kernelscope import empirical, nets
from kernelscope._arrays import MemoryBudgetError, ValidationError


def _select_1d(L, k, s, padding):
    """Selection matrices E_f (out × L), one per filter offset f: (E_f x)_q = x[s q + f − lo] (0 or wrapped)."""
    if padding == "valid":
        out, lo = (L - k) // s + 1, 0
    else:
        out = -(-L // s)
        lo = max((out - 1) * s + k - L, 0) // 2
    mats = []
    for f in range(k):
        E = np.zeros((out, L))
        for q in range(out):
            p = s * q + f - lo
            if padding == "circular":
                E[q, p % L] = 1
            elif 0 <= p < L:
                E[q, p] = 1
        mats.append(E)
    return mats


def _select(S, k, s, padding):
    """Filter-offset selection matrices for 1-D or 2-D positions (row-major), each (P_out × P_in)."""
    per_axis = [_select_1d(L, kk, ss, padding) for L, kk, ss in zip(S, k, s)]
    if len(S) == 1:
        return per_axis[0], (per_axis[0][0].shape[0],)
    return [np.kron(a, b) for a in per_axis[0] for b in per_axis[1]], (per_axis[0][0].shape[0],
                                                                         per_axis[1][0].shape[0])


class Ref:
    """Kernels as (N·P) × (N·P) matrices K[(i, p), (j, q)]; layers as matrix maps."""

    def __init__(self, X):
        N, C = X.shape[:2]
        self.S = X.shape[2:]
        F = X.reshape(N, C, -1).transpose(0, 2, 1).reshape(-1, C)  # rows (i, p)
        self.K = F @ F.T / C
        self.T = np.zeros_like(self.K)
        self.N, self.C = N, C

    def conv(self, out, k, s, padding, w, b, param="ntk"):
        Es, S = _select(self.S, k, s, padding)
        I = np.eye(self.N)
        A = lambda M: sum(np.kron(I, E) @ M @ np.kron(I, E).T for E in Es) / len(Es)
        AK, AT = A(self.K), A(self.T)
        self.K = w * w * AK + b * b
        self.T = self.K + w * w * AT if param == "ntk" else self.C * len(Es) * AK + 1 + w * w * AT
        self.S, self.C = S, out

    def relu(self):
        v = np.sqrt(np.diag(self.K))
        cos = np.clip(self.K / np.outer(v, v), -1, 1)
        np.fill_diagonal(cos, 1.0)  # a point at a position with itself: θ = 0 exactly (arccos(1 − ε) ≈ 1e-8)
        th = np.arccos(cos)
        self.T = self.T * (np.pi - th) / (2 * np.pi)
        self.K = np.outer(v, v) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * cos)

    def pool(self, k, s, padding):
        Es, S = _select(self.S, k, s, padding)
        Pm = np.kron(np.eye(self.N), sum(Es) / len(Es))
        self.K, self.T, self.S = Pm @ self.K @ Pm.T, Pm @ self.T @ Pm.T, S

    def _reduce(self, M, diagonal):
        P = int(np.prod(self.S))
        M4 = M.reshape(self.N, P, self.N, P)
        return np.einsum("ipjp->ij", M4) / P if diagonal else M4.mean(axis=(1, 3))

    def flatten(self):
        P = int(np.prod(self.S))
        self.K, self.T = self._reduce(self.K, True), self._reduce(self.T, True)
        self.S, self.C = (), self.C * P

    def gap(self):
        self.K, self.T = self._reduce(self.K, False), self._reduce(self.T, False)
        self.S = ()

    def dense(self, w, b):
        self.K = w * w * self.K + b * b
        self.T = self.K + w * w * self.T


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


@pytest.mark.parametrize("padding", ["valid", "same", "circular"])
def test_conv_flatten_2d_against_matrix_reference(padding):
    X = _x((4, 2, 5, 6))
    net = nets.serial(nets.Conv(7, 3, padding=padding, w_std=1.4, b_std=0.1), nets.ReLU(),
                      nets.Conv(7, (2, 3), stride=(2, 1), padding=padding, w_std=1.2, b_std=0.2), nets.ReLU(),
                      nets.Flatten(), nets.Dense(1, 1.1, 0.05))
    r = Ref(X)
    r.conv(7, (3, 3), (1, 1), padding, 1.4, 0.1)
    r.relu()
    r.conv(7, (2, 3), (2, 1), padding, 1.2, 0.2)
    r.relu()
    r.flatten()
    r.dense(1.1, 0.05)
    k = net.kernel(X)
    np.testing.assert_allclose(k.nngp, r.K, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(k.ntk, r.T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(net.kernel(X, diag=True).ntk, np.diag(r.T), rtol=1e-12)


@pytest.mark.parametrize("param", ["ntk", "standard"])
def test_pooling_networks_1d_and_2d_against_matrix_reference(param):
    for shape, k1, pool in (((3, 2, 9), (3,), (2,)), ((3, 2, 6, 5), (3, 2), (2, 2))):
        X = _x(shape, 1)
        net = nets.serial(nets.Conv(5, k1, padding="same", w_std=1.3, b_std=0.1, parameterization=param),
                          nets.ReLU(), nets.AvgPool(pool, padding="same"),
                          nets.Conv(5, k1, padding="circular", parameterization=param), nets.ReLU(),
                          nets.GlobalAvgPool(), nets.Dense(1, 1.0, 0.1))
        r = Ref(X)
        r.conv(5, k1, (1,) * len(k1), "same", 1.3, 0.1, param)
        r.relu()
        r.pool(pool, pool, "same")
        r.conv(5, k1, (1,) * len(k1), "circular", 1.0, 0.0, param)
        r.relu()
        r.gap()
        r.dense(1.0, 0.1)
        k = net.kernel(X)
        np.testing.assert_allclose(k.nngp, r.K, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(k.ntk, r.T, rtol=1e-12, atol=1e-14)
        kd = net.kernel(X, diag=True)
        np.testing.assert_allclose(kd.nngp, np.diag(r.K), rtol=1e-12)
        np.testing.assert_allclose(net.kernel(X, X[:2]).ntk, r.T[:, :2], rtol=1e-12)
        np.testing.assert_allclose(net.kernel(X, block_rows=2).ntk, k.ntk, rtol=1e-13, atol=1e-15)


def _resnet():
    block = nets.serial(nets.ReLU(), nets.Conv(6, 3, padding="same", w_std=1.2), nets.ReLU(),
                        nets.Conv(6, 3, padding="same", w_std=1.2))
    return nets.serial(nets.Conv(6, 3, padding="same"), nets.FanOut(2), nets.parallel(block, nets.Identity()),
                       nets.FanInSum(), nets.Erf(), nets.AvgPool(2), nets.Flatten(), nets.Dense(1, 1.0, 0.1))


def test_residual_cnn_symmetry_and_finite_module():
    X = _x((4, 1, 6, 6), 2)
    net = _resnet()
    k = net.kernel(X)
    assert np.allclose(k.ntk, k.ntk.T, atol=1e-14) and np.linalg.eigvalsh(k.nngp).min() > -1e-12
    np.testing.assert_allclose(net.kernel(X, diag=True).nngp, np.diag(k.nngp), rtol=1e-12)
    m = net.finite(seed=0, width=8)
    assert m(torch.as_tensor(X)).shape == (4, 1)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert len(convs) == 3 and convs[0].weight.shape == (8, 1, 3, 3) and convs[1].weight.shape == (8, 8, 3, 3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flatten", "pool"])
def test_wide_finite_cnns_within_standard_errors_of_the_kernel(name):
    X = _x((3, 2, 5, 5), 3)
    net = {"flatten": nets.serial(nets.Conv(1, 3, padding="same", w_std=1.3, b_std=0.1), nets.ReLU(),
                                  nets.Conv(1, 3, stride=2, padding="valid"), nets.GELU(), nets.Flatten(),
                                  nets.Dense(1, 1.0, 0.1)),
           "pool": nets.serial(nets.Conv(1, 3, padding="circular", w_std=1.3), nets.ReLU(), nets.AvgPool(2),
                               nets.Conv(1, 2), nets.ReLU(), nets.GlobalAvgPool(), nets.Dense(1))}[name]
    k = net.kernel(X)
    mc = nets.monte_carlo(net, X, width=96, n_samples=40, seed=5)
    iu = np.triu_indices(3)
    for est, se, exact in ((mc.nngp, mc.nngp_se, k.nngp), (mc.ntk, mc.ntk_se, k.ntk)):
        z = (est - exact)[iu] / se[iu]
        assert np.all(np.abs(z) < 4.5), (name, z)


def test_empirical_ntk_of_finite_cnn_converges_like_inverse_sqrt_width():
    X = torch.as_tensor(_x((3, 1, 5, 5), 4))
    net = nets.serial(nets.Conv(1, 3, padding="same", w_std=1.3, b_std=0.1), nets.ReLU(),
                      nets.Conv(1, 3, padding="same"), nets.ReLU(), nets.GlobalAvgPool(), nets.Dense(1))
    theta = net.kernel(X).ntk.numpy()
    errs = []
    widths = (8, 128)
    for width in widths:
        e = [np.linalg.norm(empirical.ntk(net.finite(seed=s, width=width), X).detach().numpy() - theta)
             for s in range(6)]
        errs.append(np.mean(e) / np.linalg.norm(theta))
    slope = math.log(errs[1] / errs[0]) / math.log(widths[1] / widths[0])
    assert -0.75 < slope < -0.3, (errs, slope)


def test_memory_is_checked_up_front_and_flatten_needs_only_the_diagonal(monkeypatch):
    from kernelscope.nets import engine

    monkeypatch.setattr(engine, "memory_budget_bytes", lambda device=None: 50_000_000)
    X = np.zeros((64, 1, 16, 16))
    pool = nets.serial(nets.Conv(4, 3, padding="same"), nets.ReLU(), nets.GlobalAvgPool(), nets.Dense(1))
    with pytest.raises(MemoryBudgetError, match=r"all pairs of positions.*needs \d+\.\d MB.*Flatten"):
        pool.kernel(X)
    flat = nets.serial(nets.Conv(4, 3, padding="same"), nets.ReLU(), nets.Flatten(), nets.Dense(1))
    assert flat.kernel(X[:8]).nngp.shape == (8, 8)


def test_bad_convolutional_inputs_are_refused():
    net = nets.serial(nets.Conv(4, 3), nets.ReLU(), nets.Flatten(), nets.Dense(1))
    with pytest.raises(ValidationError, match="Conv"):
        net.kernel(np.ones((3, 5)))
    with pytest.raises(ValidationError, match="kernel_size"):
        net.kernel(np.ones((3, 1, 2, 2)))
    with pytest.raises(ValidationError, match="Flatten"):
        nets.serial(nets.Conv(4, 3), nets.ReLU()).kernel(np.ones((3, 1, 5, 5)))
    with pytest.raises(ValidationError, match="padding"):
        nets.Conv(4, 3, padding="reflect")


@pytest.mark.slow
def test_conv_digits_experiment_small():
    from kernelscope.experiments.conv import conv_digits

    res = conv_digits(n_train=60, n_test=40, widths=(8, 128), seeds=3, n_convergence=4)
    assert [(r["architecture"], r["kernel"]) for r in res.rows][:2] == [("MLP", "NNGP"), ("MLP", "NTK")]
    accs = [r["test_accuracy"] for r in res.rows]
    assert len(accs) == 6 and min(accs) > 0.5  # far above chance (0.1) even on 60 training digits
    assert res.ntk_errors[1] < res.ntk_errors[0] and res.slope < -0.25  # -½ expected; few draws: loose
