"""LayerNorm, FanInConcat, FanInProd against Monte Carlo of wide finite networks and hand formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kernelscope import nets
from kernelscope._arrays import ValidationError


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


NETS = {
    "layernorm": lambda: nets.serial(nets.Dense(1, 1.5, 0.3), nets.LayerNorm(), nets.ReLU(), nets.Dense(1, 1.2)),
    "concat": lambda: nets.serial(nets.Dense(1, 1.3, 0.1), nets.FanOut(2),
                                  nets.parallel(nets.serial(nets.ReLU(), nets.Dense(1, 1.1)), nets.Erf()),
                                  nets.FanInConcat(), nets.Dense(1, 1.0, 0.1)),
    "prod": lambda: nets.serial(nets.Dense(1, 1.2, 0.1), nets.FanOut(2),
                                nets.parallel(nets.serial(nets.ReLU(), nets.Dense(1)), nets.Dense(1, 0.8, 0.2)),
                                nets.FanInProd(), nets.Dense(1, 1.0, 0.1)),
    "conv_layernorm": lambda: nets.serial(nets.Conv(1, 3, padding="same", b_std=0.2), nets.LayerNorm(axis=(1, 2)),
                                          nets.GELU(), nets.Flatten(), nets.Dense(1)),
}


@pytest.mark.parametrize("name", list(NETS))
def test_layers_within_standard_errors_of_monte_carlo(name):
    net = NETS[name]()
    X = _x((4, 2, 6), 1) if name.startswith("conv") else _x((4, 3), 1)
    k = net.kernel(X)
    mc = nets.monte_carlo(net, X, width=64, n_samples=60, seed=2)
    iu = np.triu_indices(4)
    for est, se, exact in ((mc.nngp, mc.nngp_se, k.nngp), (mc.ntk, mc.ntk_se, k.ntk)):
        z = (est - exact)[iu] / se[iu]
        assert np.all(np.abs(z) < 4.5), (name, z)


def test_layer_kernels_by_hand():
    X = _x((5, 3), 2)
    S = 1.5**2 * X @ X.T / 3 + 0.3**2
    v = np.sqrt(np.diag(S))
    k = nets.serial(nets.Dense(8, 1.5, 0.3), nets.LayerNorm()).kernel(X)
    np.testing.assert_allclose(k.nngp, S / np.outer(v, v), rtol=1e-13)
    # concat of widths 3 and 1: the weighted mean 3/4·Σ_a + 1/4·Σ_b
    net = nets.serial(nets.FanOut(2), nets.parallel(nets.Dense(3, 2.0), nets.Dense(1, 1.0)), nets.FanInConcat())
    G = X @ X.T / 3
    np.testing.assert_allclose(net.kernel(X).nngp, 0.75 * 4 * G + 0.25 * G, rtol=1e-13)
    net = nets.serial(nets.FanOut(2), nets.parallel(nets.Dense(2, 2.0), nets.Dense(2, 1.0, 0.5)), nets.FanInProd())
    kp = net.kernel(X)
    A, B = 4 * G, G + 0.25
    np.testing.assert_allclose(kp.nngp, A * B, rtol=1e-13)
    np.testing.assert_allclose(kp.ntk, A * B + B * A, rtol=1e-13)  # Θ_a Σ_b + Θ_b Σ_a, Θ = Σ after a Dense
    np.testing.assert_allclose(net.kernel(X, diag=True).ntk, np.diag(kp.ntk), rtol=1e-13)


def test_finite_counterparts_and_refusals():
    X = torch.as_tensor(_x((3, 4)))
    m = NETS["concat"]().finite(seed=0, width=5)
    assert m(X).shape == (3, 1)
    ln = nets.serial(nets.Dense(6), nets.LayerNorm()).finite(seed=0)
    y = ln(X)
    np.testing.assert_allclose(y.mean(1).detach().numpy(), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(1, unbiased=False).detach().numpy(), 1, rtol=1e-9)
    with pytest.raises(ValidationError, match="equal width"):
        nets.serial(nets.FanOut(2), nets.parallel(nets.Dense(2), nets.Dense(3)), nets.FanInProd()).kernel(X.numpy())
    with pytest.raises(ValidationError, match="channel axis"):
        nets.FanInConcat(axis=2)
