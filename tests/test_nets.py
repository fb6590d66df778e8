"""kernelscope.nets: dual activations, deep NNGP/NTK recursions, finite networks and Monte Carlo estimates.

References used here are independent of the library's code paths: a kink-aware polar quadrature for the
piecewise-linear duals, hand-written NumPy recursions from THEORY.md §3–4, per-example Jacobians from
``torch.func.jacrev`` written in the test, and Monte Carlo over finite random networks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call, jacrev, vmap

from contract import check_kernel_contract
from kernelscope import duals as dual
from kernelscope import nets
from kernelscope._arrays import MemoryBudgetError

T = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731


# ----------------------------------------------------------------------------------------------------------
# Dual activations
# ----------------------------------------------------------------------------------------------------------
def polar_reference(phi, c, a, b, degree: int = 1):
    """E[φ(u)φ(v)] for positively homogeneous φ of the given degree (ReLU family: 1; its derivative: 0).

    z = r(cos t, sin t): E = (1/2π) ∫ φ(α(t)) φ(β(t)) dt · ∫ r^{2·degree+1} e^{-r²/2} dr, the radial factor is
    2^degree·degree!; the angular integral is split at the kinks (α = 0 or β = 0) and done by Gauss–Legendre.
    """
    rho = c / math.sqrt(a * b)
    sa, sb, comp = math.sqrt(a), math.sqrt(b), math.sqrt(max(0.0, 1 - rho * rho))
    alpha = lambda t: sa * np.cos(t)  # noqa: E731
    beta = lambda t: sb * (rho * np.cos(t) + comp * np.sin(t))  # noqa: E731
    # kinks: cos t = 0 and rho cos t + comp sin t = 0
    t0 = math.atan2(-rho, comp)
    cuts = sorted({(x % (2 * math.pi)) for x in (math.pi / 2, 3 * math.pi / 2, t0, t0 + math.pi)} | {0.0})
    cuts.append(2 * math.pi)
    x, w = np.polynomial.legendre.leggauss(40)
    total = 0.0
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        t = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
        total += 0.5 * (hi - lo) * np.sum(w * phi(alpha(t)) * phi(beta(t)))
    radial = 2.0**degree * math.factorial(degree)
    return total * radial / (2 * math.pi)


@pytest.mark.parametrize("alpha,beta", [(0.0, 1.0), (0.2, 1.0), (-0.5, 2.0), (1.0, 1.0)])
@pytest.mark.parametrize("c,a,b", [(0.3, 1.0, 2.0), (-0.9, 1.5, 0.7), (0.0, 1.0, 1.0), (1.19, 1.2, 1.2),
                                   (-0.7999, 0.8, 0.8)])
def test_abrelu_closed_form_matches_kink_aware_quadrature(alpha, beta, c, a, b):
    nngp, dot = dual.abrelu_dual(T(c), T(a), T(b), alpha, beta)
    phi = lambda x: alpha * np.minimum(x, 0) + beta * np.maximum(x, 0)  # noqa: E731
    dphi = lambda x: np.where(x > 0, beta, alpha)  # noqa: E731
    assert abs(float(nngp) - polar_reference(phi, c, a, b, 1)) < 1e-10
    assert abs(float(dot) - polar_reference(dphi, c, a, b, 0)) < 1e-10


def test_relu_dual_is_theory_formula_and_gauss_hermite_converges_slowly():
    a, b, c = 1.3, 0.6, 0.4
    theta = math.acos(c / math.sqrt(a * b))
    want = math.sqrt(a * b) / (2 * math.pi) * (math.sin(theta) + (math.pi - theta) * math.cos(theta))
    nngp, dot = dual.abrelu_dual(T(c), T(a), T(b))
    assert abs(float(nngp) - want) < 1e-14 and abs(float(dot) - (math.pi - theta) / (2 * math.pi)) < 1e-14
    # Gauss–Hermite on a kink converges, but only algebraically: why the closed form exists
    errs = [abs(float(dual.gauss_hermite_dual(torch.relu, T(c), T(a), T(b), deg)[0]) - want) for deg in (8, 64)]
    assert errs[1] < errs[0] and errs[1] < 1e-3


@pytest.mark.parametrize("c,a,b", [(0.3, 1.0, 2.0), (-0.5, 0.6, 0.9), (0.0, 1.0, 0.3), (0.5, 0.5, 0.5),
                                   (0.05, 0.1, 0.1)])
def test_erf_closed_form_matches_gauss_hermite(c, a, b):
    nngp, dot = dual.erf_dual(T(c), T(a), T(b))
    gh_nngp, gh_dot = dual.gauss_hermite_dual(torch.erf, T(c), T(a), T(b), degree=120)
    assert abs(float(nngp - gh_nngp)) < 1e-10
    assert abs(float(dot - gh_dot)) < 1e-10


def test_gauss_hermite_is_exact_for_polynomials_and_autodiff_derivative_is_used():
    # φ(x) = x³: E[u³v³] = 9ab c + 6c³ (Isserlis); φ' = 3x²: E[9u²v²] = 9(ab + 2c²)
    a, b, c = 1.4, 0.8, -0.6
    nngp, dot = dual.gauss_hermite_dual(lambda x: x**3, T(c), T(a), T(b), degree=4)
    assert abs(float(nngp) - (9 * a * b * c + 6 * c**3)) < 1e-12
    assert abs(float(dot) - 9 * (a * b + 2 * c * c)) < 1e-12


def test_gelu_quadrature_against_scipy_double_integral():
    from scipy import integrate, special

    a, b, c = 1.1, 0.7, 0.5
    gelu = lambda x: 0.5 * x * (1 + special.erf(x / math.sqrt(2)))  # noqa: E731
    L = np.linalg.cholesky(np.array([[a, c], [c, b]]))
    dens = lambda z1, z2: math.exp(-0.5 * (z1 * z1 + z2 * z2)) / (2 * math.pi)  # noqa: E731
    ref, _ = integrate.dblquad(lambda z2, z1: gelu(L[0, 0] * z1) * gelu(L[1, 0] * z1 + L[1, 1] * z2) * dens(z1, z2),
                               -9, 9, -9, 9, epsabs=1e-12, epsrel=1e-12)
    got = nets.GELU(degree=48).dual(T(c), T(a), T(b))[0]
    assert abs(float(got) - ref) < 1e-9


def test_zero_identical_huge_and_tiny_inputs_give_no_nan():
    x = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1e150, -1e150, 2e150],
                  [1e-160, 3e-160, -1e-160], [-1.0, -2.0, -3.0]])
    for act in (nets.ReLU(), nets.LeakyReLU(0.1), nets.Erf(), nets.GELU(degree=12)):
        net = nets.serial(nets.Dense(8, w_std=1.3, b_std=0.1), act, nets.Dense(8), act, nets.Dense(1))
        k = net.kernel(x)
        kd = net.kernel(x, diag=True)
        for m in (k.nngp, k.ntk, kd.nngp, kd.ntk):
            assert np.all(np.isfinite(m)), repr(act)
        np.testing.assert_allclose(k.nngp[1], k.nngp[2], rtol=1e-12)  # identical points, identical rows
        np.testing.assert_allclose(k.ntk[1], k.ntk[2], rtol=1e-12)
        np.testing.assert_allclose(net.kernel(x, x[1:3]).ntk, k.ntk[:, 1:3], rtol=1e-12)  # repeated across sets
    # zero input through ReLU: only the bias survives, Σ¹ = b², the activation sees variance b²
    net = nets.serial(nets.Dense(4, w_std=1.0, b_std=0.0), nets.ReLU(), nets.Dense(1, w_std=1.0, b_std=0.5))
    assert abs(net.kernel(x[:1]).nngp[0, 0] - 0.25) < 1e-15


# ----------------------------------------------------------------------------------------------------------
# Deep recursions against hand computations
# ----------------------------------------------------------------------------------------------------------
def _inputs(n=7, d=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def _relu_np(c, a, b):
    s = np.sqrt(np.outer(a, b))
    th = np.arccos(np.clip(c / s, -1, 1))
    return s / (2 * np.pi) * (np.sin(th) + (np.pi - th) * np.cos(th)), (np.pi - th) / (2 * np.pi)


def test_relu_depth_one_is_theory_formula():
    X = _inputs()
    w, b = 1.5, 0.05
    net = nets.serial(nets.Dense(512, w_std=w, b_std=b), nets.ReLU(), nets.Dense(1, w_std=w, b_std=b))
    k = net.kernel(X)
    S1 = w * w * X @ X.T / X.shape[1] + b * b
    E, Ed = _relu_np(S1, np.diag(S1), np.diag(S1))
    nngp = w * w * E + b * b
    ntk = nngp + w * w * Ed * S1
    np.testing.assert_allclose(k.nngp, nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(k.ntk, ntk, rtol=1e-12, atol=1e-14)


def test_two_hidden_layer_ntk_recursion_by_hand():
    X, Y = _inputs(6, 4, 1), _inputs(3, 4, 2)
    (w1, b1), (w2, b2), (w3, b3) = (1.2, 0.3), (0.8, 0.1), (1.7, 0.0)
    net = nets.serial(nets.Dense(100, w1, b1), nets.Erf(), nets.Dense(100, w2, b2), nets.ReLU(),
                      nets.Dense(1, w3, b3))
    k = net.kernel(X, Y)
    d = X.shape[1]
    # layer 1 (Dense): Σ¹ = Θ¹ = w1² x·y/d + b1²
    S = w1**2 * X @ Y.T / d + b1**2
    vx, vy = w1**2 * (X * X).sum(1) / d + b1**2, w1**2 * (Y * Y).sum(1) / d + b1**2
    Th = S.copy()
    # erf, then Dense 2
    den = np.sqrt(np.outer(1 + 2 * vx, 1 + 2 * vy))
    E = 2 / np.pi * np.arcsin(2 * S / den)
    Ed = 4 / np.pi / np.sqrt(den**2 - 4 * S**2)
    vx2 = w2**2 * 2 / np.pi * np.arcsin(2 * vx / (1 + 2 * vx)) + b2**2
    vy2 = w2**2 * 2 / np.pi * np.arcsin(2 * vy / (1 + 2 * vy)) + b2**2
    S = w2**2 * E + b2**2
    Th = S + w2**2 * Ed * Th
    # ReLU, then the readout
    E, Ed = _relu_np(S, vx2, vy2)
    S3 = w3**2 * E + b3**2
    Th = S3 + w3**2 * Ed * Th
    np.testing.assert_allclose(k.nngp, S3, rtol=1e-12)
    np.testing.assert_allclose(k.ntk, Th, rtol=1e-12)


def test_standard_parameterization_ntk_by_hand():
    X = _inputs(5, 3, 3)
    n, w, b = 64, 1.4, 0.2
    net = nets.serial(nets.Dense(n, w, b, parameterization="standard"), nets.ReLU(),
                      nets.Dense(1, w, b, parameterization="standard"))
    k = net.kernel(X)
    d = X.shape[1]
    S0 = X @ X.T / d
    S1 = w * w * S0 + b * b
    Th1 = d * S0 + 1.0  # gradients w.r.t. W¹ (x·x') and b¹ (1)
    E, Ed = _relu_np(S1, np.diag(S1), np.diag(S1))
    np.testing.assert_allclose(k.nngp, w * w * E + b * b, rtol=1e-12)
    np.testing.assert_allclose(k.ntk, n * E + 1.0 + w * w * Ed * Th1, rtol=1e-12)
    # same NNGP as the 'ntk' parameterisation
    net_ntk = nets.serial(nets.Dense(n, w, b), nets.ReLU(), nets.Dense(1, w, b))
    np.testing.assert_allclose(k.nngp, net_ntk.kernel(X).nngp, rtol=1e-13)


# ----------------------------------------------------------------------------------------------------------
# The kernel contract (nngp and ntk, full and diag)
# ----------------------------------------------------------------------------------------------------------
def _residual():
    block = nets.serial(nets.Dense(64, 1.2, 0.1), nets.ReLU(), nets.Dense(64, 1.0, 0.0))
    return nets.serial(nets.Dense(64, 1.0, 0.1),
                       nets.FanOut(2), nets.parallel(block, nets.Identity()), nets.FanInSum(),
                       nets.ReLU(), nets.Dense(1, 1.0, 0.05))


NETWORKS = {
    "relu3": lambda: nets.serial(*[l for _ in range(3) for l in (nets.Dense(512, 1.5, 0.05), nets.ReLU())],
                                 nets.Dense(1, 1.5, 0.05)),
    "erf": lambda: nets.serial(nets.Dense(10, 2.0, 0.3), nets.Erf(), nets.Dense(1, 1.0, 0.1)),
    "gelu": lambda: nets.serial(nets.Dense(10, 1.0, 0.1), nets.GELU(degree=16), nets.Dense(1)),
    # fixed-degree quadrature (rtol=None): the contract is about tiling; accuracy control has its own tests
    "tanh_sigmoid": lambda: nets.serial(nets.Dense(10), nets.Tanh(degree=12, rtol=None), nets.Dense(10),
                                        nets.Sigmoid(12, rtol=None), nets.Dense(1)),
    "leaky_abrelu": lambda: nets.serial(nets.Dense(10, 1.1), nets.LeakyReLU(0.1), nets.Dense(10),
                                        nets.ABReLU(-0.5, 2.0), nets.Dense(1)),
    "elementwise_sin": lambda: nets.serial(nets.Dense(10), nets.Elementwise(torch.sin, degree=12, rtol=None),
                                           nets.Dense(1)),
    "standard": lambda: nets.serial(nets.Dense(32, 1.3, 0.1, "standard"), nets.ReLU(),
                                    nets.Dense(1, 1.0, 0.1, "standard")),
    "residual": _residual,
}


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("which", ["nngp", "ntk"])
def test_kernel_contract(name, which):
    net = NETWORKS[name]()
    X, Y = _inputs(13, 4, 5), _inputs(6, 4, 6)
    full = lambda A, B=None: getattr(net.kernel(A, B), which)  # noqa: E731
    diag = lambda A: getattr(net.kernel(A, diag=True), which)  # noqa: E731
    blocks = lambda A, B: getattr(net.kernel(A, B, block_rows=4), which)  # noqa: E731
    check_kernel_contract(full, X, Y, diag=diag, blocks=blocks)
    # the symmetric path (upper triangle + mirror) equals the general one on distinct copies
    Xs = np.vstack([X, X[:2] + 1e-3])
    np.testing.assert_allclose(full(Xs)[:, :13], full(Xs, X), rtol=1e-11, atol=1e-13)


def test_tiled_symmetric_kernel_past_one_tile():
    """N above the default tile side: exactly symmetric, and equal to the rectangular path and to other tilings."""
    net = NETWORKS["relu3"]()
    X = _inputs(700, 5, 7)
    k = net.kernel(X)
    for m in (k.nngp, k.ntk):
        assert np.array_equal(m, m.T)  # the lower tiles are the upper ones transposed
        assert np.all(np.isfinite(m))
    perm = np.random.default_rng(0).permutation(700)
    rect = net.kernel(X, X[perm])  # not the same array: the general path, every tile computed
    np.testing.assert_allclose(rect.ntk, k.ntk[:, perm], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rect.nngp, k.nngp[:, perm], rtol=1e-12, atol=1e-14)
    other = net.kernel(X, block_rows=96)  # tiles that do not divide N
    np.testing.assert_allclose(other.ntk, k.ntk, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.diag(k.ntk), net.kernel(X, diag=True).ntk, rtol=1e-14)


def test_array_kinds_in_and_out():
    net = NETWORKS["relu3"]()
    X = _inputs(5, 3)
    k = net.kernel(X)
    assert isinstance(k.nngp, np.ndarray) and k.nngp.dtype == np.float64
    kt = net.kernel(torch.as_tensor(X, dtype=torch.float32))
    assert isinstance(kt.ntk, torch.Tensor) and kt.ntk.dtype == torch.float64
    np.testing.assert_allclose(kt.ntk.numpy(), k.ntk, rtol=1e-6)
    kl = net.kernel(X.tolist(), diag=True)
    assert isinstance(kl.nngp, np.ndarray) and kl.nngp.shape == (5,)


def test_bad_input_is_refused_with_clear_errors():
    net = NETWORKS["relu3"]()
    X = _inputs(4, 3)
    with pytest.raises(ValueError, match="w_std"):
        nets.Dense(3, w_std=0.0)
    with pytest.raises(ValueError, match="b_std"):
        nets.Dense(3, b_std=-1.0)
    with pytest.raises(ValueError, match="parameterization"):
        nets.Dense(3, parameterization="mup")
    with pytest.raises(ValueError, match="x1"):
        net.kernel(np.array([[1.0, np.nan, 0.0]]))
    with pytest.raises(ValueError, match="x2"):
        net.kernel(X, _inputs(2, 4))
    with pytest.raises(ValueError, match="x2"):
        net.kernel(X, X, diag=True)
    with pytest.raises(ValueError, match="elementwise"):
        nets.Elementwise(lambda t: t.cumsum(-1))
    with pytest.raises(ValueError, match="fn"):
        nets.Elementwise(3.0)
    with pytest.raises(ValueError, match="layers"):
        nets.serial(nets.Dense(3), nets.ReLU)
    with pytest.raises(ValueError, match="FanInSum"):
        nets.serial(nets.FanOut(2)).kernel(X)
    with pytest.raises(MemoryBudgetError, match="needs"):
        net.kernel(np.zeros((1_000_000, 1)))


# ----------------------------------------------------------------------------------------------------------
# Finite networks and Monte Carlo
# ----------------------------------------------------------------------------------------------------------
def _ntk_by_jacobian(model, x):
    """Empirical NTK written out in the test: per-example gradients with torch.func."""
    model.materialize(x.shape[1])  # parameters are drawn once the input dimension is known
    params = {k: v.detach() for k, v in model.named_parameters()}
    f = lambda p, xi: functional_call(model, p, (xi[None],))[0, 0]  # noqa: E731
    J = vmap(jacrev(f), in_dims=(None, 0))(params, x)
    J = torch.cat([j.reshape(x.shape[0], -1) for j in J.values()], 1)  # (N, P)
    return (J @ J.T).numpy()


def test_finite_network_architecture_and_width_override():
    net = NETWORKS["relu3"]()
    m = net.finite(seed=0, width=37)
    X = torch.as_tensor(_inputs(4, 3))
    assert m(X).shape == (4, 1)
    shapes = [tuple(p.shape) for n, p in m.named_parameters() if n.endswith("weight")]
    assert shapes == [(37, 3), (37, 37), (37, 37), (1, 37)]
    m2 = net.finite(seed=0, width=37)
    assert torch.equal(m(X), m2(X))  # same seed, same network
    assert not torch.equal(m(X), net.finite(seed=1, width=37)(X))
    r = _residual().finite(seed=0, width=16)
    assert r(X).shape == (4, 1)
    eager = net.finite(seed=0, width=37, in_dim=3)
    assert len(list(eager.parameters())) == 8 and torch.equal(eager(X), m(X))


def test_empirical_ntk_of_finite_network_converges_to_analytic():
    net = nets.serial(nets.Dense(1, 1.5, 0.1), nets.ReLU(), nets.Dense(1, 1.5, 0.1), nets.ReLU(),
                      nets.Dense(1, 1.5, 0.1))
    X = torch.as_tensor(_inputs(5, 3, 7))
    theta = net.kernel(X).ntk.numpy()
    errs = []
    for width in (32, 2048):
        e = [np.linalg.norm(_ntk_by_jacobian(net.finite(seed=s, width=width), X) - theta) for s in range(4)]
        errs.append(np.mean(e) / np.linalg.norm(theta))
    assert errs[1] < errs[0] / 3  # error ∝ width^{-1/2}: 8× expected for 64× the width
    assert errs[1] < 0.08
    m = net.finite(seed=3, width=64)
    np.testing.assert_allclose(nets.empirical_ntk(m, X).numpy(), _ntk_by_jacobian(m, X), rtol=1e-10)


@pytest.mark.parametrize("name,width,samples", [("relu1", None, 200), ("relu2", 64, 100), ("erf", 64, 100),
                                                ("standard", None, 200), ("residual", 32, 100)])
def test_deep_kernels_within_four_standard_errors_of_monte_carlo(name, width, samples):
    net = {
        "relu1": lambda: nets.serial(nets.Dense(64, 1.5, 0.05), nets.ReLU(), nets.Dense(1, 1.5, 0.05)),
        "relu2": lambda: nets.serial(nets.Dense(1, 1.5, 0.05), nets.ReLU(), nets.Dense(1, 1.5, 0.05), nets.ReLU(),
                                     nets.Dense(1, 1.5, 0.05)),
        "erf": lambda: nets.serial(nets.Dense(1, 2.0, 0.3), nets.Erf(), nets.Dense(1, 1.2, 0.1), nets.Erf(),
                                   nets.Dense(1, 1.0, 0.1)),
        "standard": NETWORKS["standard"],
        "residual": _residual,
    }[name]()
    X = _inputs(5, 3, 11)
    k = net.kernel(X)
    mc = nets.monte_carlo(net, X, width=width, n_samples=samples, seed=1)
    iu = np.triu_indices(5)
    for est, se, exact in ((mc.nngp, mc.nngp_se, k.nngp), (mc.ntk, mc.ntk_se, k.ntk)):
        z = (est - exact)[iu] / se[iu]
        assert np.all(np.abs(z) < 4), (name, z)


def test_monte_carlo_error_shrinks_like_inverse_sqrt_width():
    net = nets.serial(nets.Dense(1, 1.5, 0.05), nets.ReLU(), nets.Dense(1, 1.5, 0.05))
    X = _inputs(4, 3, 12)
    k = net.kernel(X)
    rms = []
    for width in (16, 1024):
        mc = nets.monte_carlo(net, X, width=width, n_samples=30, seed=2)
        rms.append(float(np.sqrt(np.mean(mc.ntk_se**2))))
    slope = math.log(rms[1] / rms[0]) / math.log(1024 / 16)
    assert -0.65 < slope < -0.35
    assert np.all(np.isfinite(k.ntk))
