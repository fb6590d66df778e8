"""Closed-form duals and error-controlled quadrature against independent references.

References: SciPy's adaptive 2-D quadrature (``dblquad``) for GELU, a kink-aware polar quadrature for Sign and
Abs, a NumPy Gauss–Hermite rule on the *Cholesky* factor (not the library's symmetric square root) at high
degree for the smooth closed forms, Isserlis' theorem for monomials, and Monte Carlo of wide finite networks.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from kernelscope import duals as dual
from kernelscope import nets
from kernelscope._arrays import KernelscopeWarning, ValidationError

T = lambda *v: torch.tensor(v, dtype=torch.float64)


def _dblquad(f, c, a, b):
    from scipy import integrate

    L = np.linalg.cholesky(np.array([[a, c], [c, b]]))
    dens = lambda z1, z2: math.exp(-0.5 * (z1 * z1 + z2 * z2)) / (2 * math.pi)
    return integrate.dblquad(lambda z2, z1: f(L[0, 0] * z1) * f(L[1, 0] * z1 + L[1, 1] * z2) * dens(z1, z2),
                             -10, 10, -10, 10, epsabs=1e-14, epsrel=1e-13)[0]


def _gh_cholesky(f, c, a, b, degree=200):
    """E[f(u)f(v)] by a NumPy tensor Gauss–Hermite rule on the Cholesky factor of [[a, c], [c, b]]."""
    z, w = np.polynomial.hermite_e.hermegauss(degree)
    w = w / w.sum()
    r = c / math.sqrt(a * b)
    u = math.sqrt(a) * z[:, None] + 0 * z[None, :]
    v = math.sqrt(b) * (r * z[:, None] + math.sqrt(max(0.0, 1 - r * r)) * z[None, :])
    return float(np.sum(w[:, None] * w[None, :] * f(u) * f(v)))


@pytest.mark.parametrize("c,a,b", [(0.5, 1.1, 0.7), (-2.0, 3.0, 2.0), (10.0, 12.0, 9.5)])
def test_gelu_closed_form_matches_scipy_dblquad_to_1e12(c, a, b):
    from scipy import special

    Phi = lambda x: 0.5 * (1 + special.erf(x / math.sqrt(2)))
    gelu = lambda x: x * Phi(x)
    dgelu = lambda x: Phi(x) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    nngp, dot = dual.gelu_dual(T(c), T(a), T(b))
    for got, ref in ((nngp, _dblquad(gelu, c, a, b)), (dot, _dblquad(dgelu, c, a, b))):
        assert abs(float(got) - ref) <= 1e-12 * abs(ref)


def test_gelu_network_no_longer_off_at_large_variance():
    """The issue's case: depth 2, w_std 1.5, b_std 0.1. Depth-1 entries against dblquad, and the layer's finite
    function is torch's exact GELU."""
    from scipy import special

    X = np.array([[1.0, -0.5, 2.0], [0.3, 0.8, -1.2]])
    w, bb = 1.5, 0.1
    net = nets.serial(nets.Dense(8, w, bb), nets.GELU(), nets.Dense(1, w, bb))
    S = w * w * X @ X.T / 3 + bb * bb
    gelu = lambda x: 0.5 * x * (1 + special.erf(x / math.sqrt(2)))
    ref = w * w * _dblquad(gelu, S[0, 1], S[0, 0], S[1, 1]) + bb * bb
    assert abs(net.kernel(X).nngp[0, 1] - ref) <= 1e-12 * abs(ref)
    x = torch.linspace(-4, 4, 9, dtype=torch.float64)
    assert torch.allclose(nets.GELU().fn(x), x * 0.5 * (1 + torch.erf(x / math.sqrt(2))), atol=1e-15)


def _polar(phi, c, a, b, degree):
    """E[φ(u)φ(v)] for φ positively homogeneous of ``degree`` (0: sign, 1: abs), angular Gauss–Legendre split at
    the kinks, radial part in closed form."""
    rho = c / math.sqrt(a * b)
    sa, sb, comp = math.sqrt(a), math.sqrt(b), math.sqrt(max(0.0, 1 - rho * rho))
    t0 = math.atan2(-rho, comp)
    cuts = sorted({(x % (2 * math.pi)) for x in (math.pi / 2, 3 * math.pi / 2, t0, t0 + math.pi)} | {0.0})
    cuts.append(2 * math.pi)
    x, w = np.polynomial.legendre.leggauss(40)
    total = 0.0
    for lo, hi in zip(cuts[:-1], cuts[1:]):  # noqa: RUF007 - same as the reference in test_nets.py
        t = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
        total += 0.5 * (hi - lo) * np.sum(w * phi(sa * np.cos(t)) * phi(sb * (rho * np.cos(t) + comp * np.sin(t))))
    return total * 2.0**degree * math.factorial(degree) / (2 * math.pi)


@pytest.mark.parametrize("c,a,b", [(0.3, 1.0, 2.0), (-0.9, 1.5, 0.7), (1.19, 1.2, 1.2)])
def test_sign_and_abs_against_polar_quadrature(c, a, b):
    nngp, dot = nets.Sign().dual(T(c), T(a), T(b))
    assert abs(float(nngp) - _polar(np.sign, c, a, b, 0)) < 1e-12 and float(dot) == 0.0
    nngp, dot = nets.Abs().dual(T(c), T(a), T(b))
    assert abs(float(nngp) - _polar(np.abs, c, a, b, 1)) < 1e-11
    assert abs(float(dot) - _polar(np.sign, c, a, b, 0)) < 1e-12


SMOOTH = {
    "sin": (lambda: nets.Sin(1.3, 0.8, 0.4), lambda x: 1.3 * np.sin(0.8 * x + 0.4),
            lambda x: 1.3 * 0.8 * np.cos(0.8 * x + 0.4)),
    "cos": (lambda: nets.Cos(0.7, 1.1, -0.2), lambda x: 0.7 * np.cos(1.1 * x - 0.2),
            lambda x: -0.7 * 1.1 * np.sin(1.1 * x - 0.2)),
    "rbf": (lambda: nets.Rbf(0.6), lambda x: math.sqrt(2) * np.sin(math.sqrt(1.2) * x + math.pi / 4),
            lambda x: math.sqrt(2) * math.sqrt(1.2) * np.cos(math.sqrt(1.2) * x + math.pi / 4)),
    "exp": (lambda: nets.Exp(0.5, 0.7), lambda x: 0.5 * np.exp(0.7 * x), lambda x: 0.35 * np.exp(0.7 * x)),
    "gaussian": (lambda: nets.Gaussian(1.2, -0.8), lambda x: 1.2 * np.exp(-0.8 * x * x),
                 lambda x: -1.92 * x * np.exp(-0.8 * x * x)),
    "erf_abc": (lambda: nets.Erf(0.9, 1.4, 0.3), None, None),
    "hermite3": (lambda: nets.Hermite(3), lambda x: (x**3 - 3 * x) / math.sqrt(6),
                 lambda x: (3 * x**2 - 3) / math.sqrt(6)),
    "poly": (lambda: nets.Polynomial([0.5, -1.0, 0.0, 0.25, 0.1]), lambda x: 0.5 - x + 0.25 * x**3 + 0.1 * x**4,
             lambda x: -1 + 0.75 * x**2 + 0.4 * x**3),
}


@pytest.mark.parametrize("name", list(SMOOTH))
@pytest.mark.parametrize("c,a,b", [(0.4, 1.2, 0.8), (-0.7, 0.9, 1.5), (1.0, 1.0, 1.0)])
def test_smooth_closed_forms_against_cholesky_gauss_hermite(name, c, a, b):
    make, f, df = SMOOTH[name]
    act = make()
    if f is None:  # erf(a, b, c): torch's erf through numpy
        from scipy import special

        f = lambda x: 0.9 * special.erf(1.4 * x) + 0.3
        df = lambda x: 0.9 * 1.4 * 2 / math.sqrt(math.pi) * np.exp(-(1.4 * x) ** 2)
    nngp, dot = act.dual(T(c), T(a), T(b))
    for got, ref in ((nngp, _gh_cholesky(f, c, a, b)), (dot, _gh_cholesky(df, c, a, b))):
        assert abs(float(got) - ref) <= 1e-11 * max(1.0, abs(ref)), (name, float(got), ref)
    # the finite function is the one the dual describes
    x = torch.linspace(-2, 2, 5, dtype=torch.float64)
    np.testing.assert_allclose(act.fn(x).numpy(), f(x.numpy()), rtol=1e-13, atol=1e-14)


def test_monomial_is_isserlis_and_hermite_is_mehler_at_unit_variance():
    a, b, c = 1.4, 0.8, -0.6
    nngp, dot = nets.Monomial(3).dual(T(c), T(a), T(b))
    assert abs(float(nngp) - (9 * a * b * c + 6 * c**3)) < 1e-13
    assert abs(float(dot) - 9 * (a * b + 2 * c * c)) < 1e-13
    for n in range(1, 7):
        nngp, _ = nets.Hermite(n).dual(T(0.37), T(1.0), T(1.0))
        assert abs(float(nngp) - 0.37**n) < 1e-14


def test_user_supplied_dual_with_and_without_derivative():
    def erf_nngp(c, v1, v2):
        return torch.asin(2 * c / torch.sqrt((1 + 2 * v1) * (1 + 2 * v2))) * 2 / math.pi

    X = np.random.default_rng(0).normal(size=(6, 3))
    ref = nets.serial(nets.Dense(8, 1.3, 0.2), nets.Erf(), nets.Dense(1)).kernel(X)
    for layer in (nets.Elementwise(torch.erf, nngp_fn=erf_nngp),
                  nets.Elementwise(nngp_fn=erf_nngp, d_nngp_fn=lambda c, v1, v2: nets.Erf().dual(c, v1, v2)[1])):
        k = nets.serial(nets.Dense(8, 1.3, 0.2), layer, nets.Dense(1)).kernel(X)
        np.testing.assert_allclose(k.nngp, ref.nngp, rtol=1e-12)
        np.testing.assert_allclose(k.ntk, ref.ntk, rtol=1e-10)
    with pytest.raises(ValidationError, match="fn="):
        nets.serial(nets.Dense(8), nets.Elementwise(nngp_fn=erf_nngp), nets.Dense(1)).finite(in_dim=3)(
            torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValidationError, match="neither"):
        nets.Elementwise()


def test_quadrature_raises_its_degree_to_meet_rtol_and_warns_past_max_degree():
    c, a, b = T(3.0), T(4.0), T(3.5)
    ref = dual.gauss_hermite_dual(torch.tanh, c, a, b, 300)  # SciPy's nodes, far past convergence
    plain = nets.Tanh(degree=32, rtol=None).dual(c, a, b)
    assert abs(float(plain[1] - ref[1])) > 1e-6  # the old fixed rule: off by more than 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = nets.Tanh(degree=32).dual(c, a, b)
    for g, r in zip(got, ref):
        assert abs(float(g - r)) < 1e-8 * abs(float(r))
    with pytest.warns(KernelscopeWarning, match="estimated relative error"):
        nets.Elementwise(torch.tanh, degree=8, max_degree=12).dual(c, a, b)


def test_per_entry_degree_does_not_depend_on_the_tiling():
    X = np.random.default_rng(1).normal(size=(9, 3)) * np.linspace(0.1, 1.0, 9)[:, None]  # variances 2^-7 .. 1
    net = nets.serial(nets.Dense(8, 1.0), nets.Tanh(degree=16), nets.Dense(1))
    full, blocks = net.kernel(X), net.kernel(X, block_rows=2)
    np.testing.assert_allclose(full.ntk, blocks.ntk, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("act", [nets.GELU(), nets.Sin(1.0, 1.2, 0.3), nets.Exp(1.0, 0.4), nets.Gaussian(1.0, -0.7),
                                 nets.Abs(), nets.Hermite(2), nets.Rbf(0.5)], ids=repr)
def test_new_activations_within_four_standard_errors_of_monte_carlo(act):
    net = nets.serial(nets.Dense(1, 1.2, 0.1), act, nets.Dense(1, 1.0, 0.1))
    X = np.random.default_rng(3).normal(size=(4, 3))
    k = net.kernel(X)
    mc = nets.monte_carlo(net, X, width=64, n_samples=100, seed=4)
    iu = np.triu_indices(4)
    for est, se, exact in ((mc.nngp, mc.nngp_se, k.nngp), (mc.ntk, mc.ntk_se, k.ntk)):
        z = (est - exact)[iu] / se[iu]
        assert np.all(np.abs(z) < 4.5), (repr(act), z)
