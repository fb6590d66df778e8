"""Dual activations: ``E[φ(u)φ(v)]`` and ``E[φ'(u)φ'(v)]`` for a centred Gaussian pair (THEORY.md §3).

For ``(u, v) ~ N(0, [[a, c], [c, b]])`` (``a``, ``b`` the variances, ``c`` the covariance) every function here
returns the pair ``(E[φ(u)φ(v)], E[φ'(u)φ'(v)])``. Arguments broadcast: in a kernel matrix ``c`` is a block of
shape (B, N2), ``a`` has shape (B, 1) and ``b`` shape (1, N2); in diag mode ``c = a = b`` of shape (N,).

Closed forms (Cho & Saul 2009 for the arc-cosine kernel; Williams 1997 for erf):

- ABReLU ``φ(x) = α·min(x, 0) + β·max(x, 0)``, ``θ = arccos(c/√(ab))``:
  ``E[φ(u)φ(v)] = √(ab) [ (β−α)²/(2π) · sin θ + ((α²+β²)/2 − (β−α)² θ/(2π)) · cos θ ]``,
  ``E[φ'(u)φ'(v)] = (α²+β²)/2 − (β−α)² θ/(2π)``
  (ReLU: α=0, β=1 gives THEORY.md's ``√(ab)/(2π) (sin θ + (π−θ) cos θ)`` and ``(π−θ)/(2π)``).
- erf: ``E = (2/π) arcsin(2c/√((1+2a)(1+2b)))``, ``E[φ'φ'] = (4/π) / √((1+2a)(1+2b) − 4c²)``.
- anything else: 2-D Gauss–Hermite quadrature of degree ``D`` (``D²`` nodes), with
  ``u = √a z₁``, ``v = √b (ρ z₁ + √(1−ρ²) z₂)``, ``ρ = c/√(ab)``, and ``φ'`` from torch autodiff.

Cosines are clamped to [−1, 1] and zero variances give zero (no NaN for zero-norm inputs). The one home of these
formulas: the two-layer kernels of :mod:`kernelscope.kernels` and the deep recursions of :mod:`kernelscope.nets`
both call them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from . import _jit, _scratch
from ._model import value_and_grad
from ._threads import check_cancelled

__all__ = [
    "abrelu_dual",
    "clamp_covariance",
    "cosine_",
    "derivative",
    "erf_dual",
    "exp_dual",
    "gauss_hermite_degree",
    "gauss_hermite_dual",
    "gaussian_dual",
    "gelu_dual",
    "hermite_nodes",
    "polynomial_dual",
    "safe_rsqrt",
    "self_entries",
    "sign_dual",
    "sin_dual",
]

_TWO_PI = 2.0 * math.pi
_ONE = torch.tensor(1.0, dtype=torch.float64)


def safe_rsqrt(a: torch.Tensor) -> torch.Tensor:
    """1/√a, with 0 where a <= 0 (a zero-norm input has cosine 0 with everything, and its kernel is 0)."""
    return torch.where(a > 0, a, math.inf).rsqrt()


_THETA_SNAP = math.sqrt(128 * torch.finfo(torch.float64).eps)  # θ below this is rounding of θ = 0
_COS_SNAP = math.cos(_THETA_SNAP)  # 1 − 64 ε: cosines at or above it are rounding of cos θ = 1
# float32 (the nets engine's precision='float32'): θ whose cosine is 4 ulps below 1 (≈ 9.8e-4); float32 cannot
# resolve smaller angles (the first cosine below 1 is θ ≈ 3.5e-4), so below it the computed angle is rounding
_SNAPS = {torch.float64: (_THETA_SNAP, _COS_SNAP),
          torch.float32: (math.sqrt(8 * torch.finfo(torch.float32).eps),
                          math.cos(math.sqrt(8 * torch.finfo(torch.float32).eps)))}


def cosine_(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, same: str | None = None) -> torch.Tensor:
    """In place: ``c <- clamp(c / √(ab), −1, 1)``; ``a``, ``b`` broadcast against ``c``. Returns ``c``.

    ``same='all'`` (diag mode), ``'diagonal'`` (the leading square of a block compares each point with itself) or a
    callable returning the view of those entries (see :func:`self_entries`) sets those cosines to exactly 1 where
    the variance is positive: ``arccos(1 − ε) ≈ √(2ε)`` would otherwise
    turn a rounding error of 1e-16 into an error of 1e-8 in θ.
    """
    c.mul_(safe_rsqrt(a)).mul_(safe_rsqrt(b)).clamp_(-1.0, 1.0)
    if same == "all":
        c.copy_((c != 0).to(c.dtype))  # 1, or 0 for a zero-norm input
    elif same is not None:
        dg = self_entries(c, same)
        dg.copy_((dg != 0).to(c.dtype))
    return c


def abrelu_dual(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, alpha: float = 0.0, beta: float = 1.0,
                *, inplace: bool = False, same: str | None = None, scaled: bool = True) -> tuple:
    """Closed-form dual of ``φ(x) = alpha·min(x, 0) + beta·max(x, 0)`` (the arc-cosine kernel of order 1).

    ``E[φ(u)φ(v)] = √(ab) [ (β−α)²/(2π) sin θ + ((α²+β²)/2 − (β−α)² θ/(2π)) cos θ ]`` and
    ``E[φ'(u)φ'(v)] = (α²+β²)/2 − (β−α)² θ/(2π)``, ``θ = arccos(c/√(ab))``.

    Parameters
    ----------
    c : covariances, shape (B, N2) (or (N,) in diag mode); overwritten when ``inplace``.
    a, b : variances broadcasting against ``c`` ((B, 1) and (1, N2), or (N,)).
    same : None, ``'diagonal'`` or ``'all'``: which entries pair a point with itself (see :func:`cosine_`).

    scaled : if False, return ``(nngp / (s1·s2), dot / t, s1, s2, t)`` with the row/column factors ``s1``, ``s2``
        (shapes of ``a`` and ``b``, or None) and the scalar ``t`` left for the caller to fuse into its next pass.

    Returns
    -------
    (nngp, dot) : tensors of ``c``'s shape. With ``inplace`` the first one *is* ``c``'s storage.
    Temporaries: two buffers of ``c``'s size.

    Notes
    -----
    ``arccos`` is ill-conditioned at 1: a cosine off by one rounding error gives θ ≈ 1e-8 instead of 0, and the
    derivative kernel (linear in θ) inherits that error. Angles below ``√(128 ε) ≈ 1.7e-7`` are therefore set
    to 0 — they cannot be told from 0 given the rounding of the Gram matrix — so identical points at different
    positions get identical kernel rows; likewise angles within ``√(128 ε)`` of π (opposite inputs).

    Cost per entry (the recursion's inner loop; measured on a 2-core AVX-512 CPU, float64, one thread): one
    ``acos`` (≈ 4.5 ns), one ``sqrt`` (≈ 2 ns; ``sin θ = √(1 − cos²θ)``, half the cost of ``sin``: the
    cancellation at cos θ → ±1 costs no more than the conditioning of ``acos`` there already does) and seven
    cheap passes over the block (≈ 0.1–0.3 ns each; the snaps are ``threshold`` passes, not masks).
    """
    jump = (beta - alpha) ** 2 / _TWO_PI
    mean_sq = 0.5 * (alpha * alpha + beta * beta)
    if same == "all" or jump == 0.0:
        # a point with itself (θ = 0: E[φ(u)²] = a·(α²+β²)/2), or α = β (a linear map: E[φ(u)φ(v)] = α² c);
        # either way E[φ'φ'] = (α²+β²)/2 and nothing is left to scale
        nngp = torch.mul(a.clamp_min(0) if same == "all" else c, mean_sq, out=c if inplace else None)
        dot = torch.full_like(nngp, mean_sq)
        return (nngp, dot) if scaled else (nngp, dot, None, None, 1.0)
    ra, rb = safe_rsqrt(a), safe_rsqrt(b)  # 1/√a, 0 for a = 0 (a zero-norm input: c = 0 too)
    s1, s2 = a * ra * jump, b * rb  # jump·√a, √b
    # Work with n = −cos θ and φ = arccos(n) = π − θ: then sin θ = sin φ and E[φ'φ'] = jump·φ + αβ, so the
    # derivative kernel needs no pass of its own (its factor jump is left to the caller when not scaled).
    n = (torch.mul(c, ra, out=c) if inplace else c * ra).mul_(rb.neg_())
    theta_snap, cos_snap = _SNAPS.get(n.dtype, (_THETA_SNAP, _COS_SNAP))
    if same is not None:  # each point with itself: cos θ = 1 exactly (0 for a zero-norm input); the snaps below
        dg = self_entries(n, same)  # leave −1 and 0 as they are
        dg.copy_((dg != 0).to(n.dtype).neg_())
    shift = alpha * beta / jump
    phi = _scratch.empty_like(n)
    if _jit.usable(n, phi):  # the same steps in one compiled pass (kernelscope._jit)
        _jit.abrelu_(n, phi, shift, theta_snap, cos_snap)
        nngp = n
    else:
        # θ below √(128 ε) is rounding of θ = 0 (so is a cosine above 1): cos θ = 1 exactly
        torch.nn.functional.threshold(n, -cos_snap, -1.0, inplace=True)
        n.clamp_(max=1.0)  # a cosine below −1 (rounding): −1
        torch.acos(n, out=phi)  # π − θ
        # sin θ = √(1 − cos²θ) (a temporary)
        sin = torch.addcmul(_ONE.to(n.device), n, n, value=-1.0, out=_scratch.empty_like(n)).sqrt_()
        if shift != 0.0:
            phi.add_(shift)  # E[φ'φ'] / jump
        # sin θ + cos θ·E[φ'φ']/jump = E[φφ]/(jump·√(ab)), into n's buffer
        nngp = torch.addcmul(sin, n, phi, value=-1.0, out=n)
        _scratch.release(sin)
        # θ within √(128 ε) of π is rounding of opposite inputs (x and −x): π − θ = 0 exactly, so E[φ'φ'] = αβ
        # exactly (E[φφ] above needs no snap: its terms in π − θ vanish like (π − θ)³ and (π − θ)²·αβ there)
        torch.nn.functional.threshold(phi, shift + theta_snap, shift, inplace=True)
    if not scaled:
        return nngp, phi, s1, s2, jump
    return nngp.mul_(s1).mul_(s2), phi.mul_(jump)


def erf_dual(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, inplace: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form dual of erf: ``(2/π) arcsin(2c/√((1+2a)(1+2b)))`` and ``(4/π)/√((1+2a)(1+2b) − 4c²)``."""
    ra = (1.0 + 2.0 * a).rsqrt()
    rb = (1.0 + 2.0 * b).rsqrt()
    s = (c if inplace else c.clone()).mul_(2.0).mul_(ra).mul_(rb).clamp_(-1.0, 1.0)  # 2c/√((1+2a)(1+2b))
    # (1+2a)(1+2b) − 4c² = (1+2a)(1+2b)(1 − s²)
    dot = torch.mul(s, s).neg_().add_(1.0).clamp_min_(torch.finfo(s.dtype).tiny).rsqrt_()
    dot.mul_(ra).mul_(rb).mul_(4.0 / math.pi)
    nngp = s.asin_().mul_(2.0 / math.pi)
    return nngp, dot


@lru_cache(maxsize=32)
def _hermgauss(degree: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.special import (
        roots_hermite,  # stable past degree 300, where numpy's hermgauss overflows
    )

    x, w = roots_hermite(degree)
    # Probabilists' form: E_{z~N(0,1)}[g(z)] ≈ Σ w_i g(√2 x_i) / √π
    return x * math.sqrt(2.0), w / math.sqrt(math.pi)


def hermite_nodes(degree: int, dtype=torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``z`` and weights ``w`` with ``E_{z~N(0,1)}[g(z)] ≈ Σ w_i g(z_i)`` (exact for polynomials of degree
    < 2·degree)."""
    z, w = _hermgauss(int(degree))
    return torch.as_tensor(z, dtype=dtype, device=device), torch.as_tensor(w, dtype=dtype, device=device)


def derivative(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``φ'(x)`` of an elementwise ``φ`` by torch autodiff (the gradient of ``Σ φ(x)``)."""
    return value_and_grad(lambda t: fn(t).sum(), x)[1]


def _gh_rule(fn, d_fn, s11, s12, s22, shape, degree: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The degree²-node rule on prepared square-root factors ``s11``, ``s12``, ``s22`` (each ``shape + (1,)``)."""
    z, w = hermite_nodes(degree, dtype, device)
    nngp = torch.zeros(shape, dtype=dtype, device=device)
    dot = torch.zeros(shape, dtype=dtype, device=device)
    chunk = 64  # inner nodes at a time: memory a few buffers of shape + (64,) whatever the degree
    for zi, wi in zip(z, w):
        check_cancelled()  # a large tile at a high degree runs for minutes: obey an interrupt between nodes
        for j0 in range(0, degree, chunk):
            zj, wj = z[j0:j0 + chunk], w[j0:j0 + chunk]
            u = s11 * zi + s12 * zj  # (..., chunk): nodes (z_i, z_j)
            v = s12 * zi + s22 * zj
            nngp.add_((fn(u) * fn(v)) @ wj, alpha=float(wi))
            dot.add_((d_fn(u) * d_fn(v)) @ wj, alpha=float(wi))
    return nngp, dot


def _gh_factors(c, a, b, same):
    shape = torch.broadcast_shapes(c.shape, a.shape, b.shape)
    a_, b_ = a.clamp_min(0).expand(shape), b.clamp_min(0).expand(shape)
    cos = cosine_(c.clone(), a, b, same).expand(shape)  # clamped to [−1, 1]
    root_ab = a_.sqrt() * b_.sqrt()  # no overflow of ab for huge scales
    cov = cos * root_ab  # consistent with the clamped cosine
    s = ((1.0 - cos * cos).clamp_min_(0.0)).sqrt_().mul_(root_ab)  # √(ab − c²) = √(ab)·sin θ
    t_inv = safe_rsqrt(a_ + b_ + 2.0 * s)
    return shape, ((a_ + s) * t_inv)[..., None], (cov * t_inv)[..., None], ((b_ + s) * t_inv)[..., None]


_DEGREE_CACHE: dict = {}
_PROBE_COS = (-1.0, -0.9, -0.5, 0.0, 0.5, 0.9, 1.0)


def gauss_hermite_degree(fn, v: float, degree: int, rtol: float, max_degree: int, deriv=None
                         ) -> tuple[int, float]:
    """The degree (``degree``·1.5^k rounded up, at most ``max_degree``) whose estimated relative error is
    <= ``rtol`` for pairs of variances up to ``v``, and that estimate.

    The estimate: the difference between degree D and 2D at variances ``(v, v)`` and ``(v, v/4)`` and cosines
    −1 … 1 (:data:`_PROBE_COS`), relative to the pair's Cauchy–Schwarz scale ``√(E[φ(u)²] E[φ(v)²])`` (likewise
    for φ'), maximised over the probes and both kernels. Smooth activations get harder as the variance grows
    (the integrand's features shrink relative to the node spacing), so ``v`` is the largest variance to cover.
    Cached per (fn, deriv, v, degree, rtol, max_degree).
    """
    key = (fn, deriv, float(v), int(degree), float(rtol), int(max_degree))
    hit = _DEGREE_CACHE.get(key)
    if hit is not None:
        return hit
    cos = torch.tensor(_PROBE_COS, dtype=torch.float64)
    a = torch.full((2 * len(_PROBE_COS),), float(v), dtype=torch.float64)
    b = torch.cat([a[:len(_PROBE_COS)], a[len(_PROBE_COS):] / 4])
    c = torch.cat([cos, cos]) * (a * b).sqrt()
    d = int(degree)
    while True:
        coarse = gauss_hermite_dual(fn, c, a, b, d, deriv)
        fine = gauss_hermite_dual(fn, c, a, b, 2 * d, deriv)
        va = gauss_hermite_dual(fn, a, a, a, 2 * d, deriv, same="all")
        vb = gauss_hermite_dual(fn, b, b, b, 2 * d, deriv, same="all")
        err = 0.0
        for i in range(2):
            scale = (va[i].abs() * vb[i].abs()).sqrt().clamp_min(torch.finfo(torch.float64).tiny)
            err = max(err, float(((coarse[i] - fine[i]).abs() / scale).max()))
        if err <= rtol or d >= max_degree:
            break
        d = min(max_degree, math.ceil(1.5 * d))
    if len(_DEGREE_CACHE) > 4096:
        _DEGREE_CACHE.clear()
    _DEGREE_CACHE[key] = (d, err)
    return d, err


def gauss_hermite_dual(fn: Callable[[torch.Tensor], torch.Tensor], c: torch.Tensor, a: torch.Tensor,
                       b: torch.Tensor, degree: int = 32, deriv: Callable | None = None,
                       same=None, *, rtol: float | None = None, max_degree: int = 512
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual of any elementwise ``fn`` by 2-D Gauss–Hermite quadrature with ``degree²`` nodes.

    ``E[φ(u)φ(v)] ≈ Σ_ij w_i w_j φ(u_ij) φ(v_ij)`` with ``(u, v)_ij = S (z_i, z_j)`` and ``S`` the *symmetric*
    square root of the covariance, ``S = [[a + s, c], [c, b + s]] / √(a + b + 2s)``, ``s = √(ab − c²)`` (so the
    rule is symmetric in the two inputs: k(x, x') = k(x', x) to rounding). The same sum with ``φ'`` (``deriv``, or
    torch autodiff of ``fn``) gives ``E[φ'(u)φ'(v)]``. Exact for polynomials of degree < 2·degree; accurate to
    rounding for smooth ``φ`` and moderate variances; slow (algebraic) convergence at kinks (use the closed forms).

    rtol : if given, each entry gets the degree :func:`gauss_hermite_degree` picks for its larger variance
        rounded up to a power of 2 (so an entry's value does not depend on which others it is computed with):
        ``degree``·1.5^k with estimated relative error <= ``rtol``; past ``max_degree`` the result comes back with
        a :class:`KernelscopeWarning` naming the estimate. None: the plain rule at ``degree``.

    Memory: a few buffers of shape ``c.shape + (min(degree, 64),)``.
    """
    dtype, device = c.dtype, c.device
    d_fn = deriv if deriv is not None else (lambda x: derivative(fn, x))
    shape, s11, s12, s22 = _gh_factors(c, a, b, same)
    if rtol is None:
        return _gh_rule(fn, d_fn, s11, s12, s22, shape, degree, dtype, device)
    vmax = torch.maximum(a, b).expand(shape).clamp_min(2.0**-20)
    bucket = torch.ceil(torch.log2(vmax)).to(torch.int64)  # covers variances up to 2^bucket
    degrees = {}
    worst = (0.0, degree)
    for u in torch.unique(bucket).tolist():
        d, err = gauss_hermite_degree(fn, 2.0**u, degree, rtol, max_degree, deriv)
        degrees[u] = d
        if err > rtol and err > worst[0]:
            worst = (err, d)
    if worst[0] > 0:
        from ._arrays import KernelscopeWarning

        warnings.warn(f"Gauss–Hermite quadrature of {getattr(fn, '__name__', 'the activation')}: estimated "
                      f"relative error {worst[0]:.1e} > rtol={rtol:g} at degree {worst[1]} (max_degree="
                      f"{max_degree}): the variances are too large for the rule. Use a closed-form activation, "
                      "smaller w_std, or pass the dual (Elementwise(fn, nngp_fn=...)).", KernelscopeWarning,
                      stacklevel=2)
    by_degree: dict[int, list[int]] = {}
    for u, d in degrees.items():
        by_degree.setdefault(d, []).append(u)
    if len(by_degree) == 1:
        return _gh_rule(fn, d_fn, s11, s12, s22, shape, next(iter(by_degree)), dtype, device)
    nngp = torch.empty(shape, dtype=dtype, device=device)
    dot = torch.empty(shape, dtype=dtype, device=device)
    flat_b = bucket.reshape(-1)
    for d, us in by_degree.items():
        idx = torch.isin(flat_b, torch.tensor(us, device=device)).nonzero().squeeze(1)
        s11_, s12_, s22_ = (t.expand(shape + (1,)).reshape(-1, 1)[idx] for t in (s11, s12, s22))
        n_, d_ = _gh_rule(fn, d_fn, s11_, s12_, s22_, (idx.numel(),), d, dtype, device)
        nngp.view(-1)[idx] = n_
        dot.view(-1)[idx] = d_
    return nngp, dot


# --------------------------------------------------------------------------------------------------------------
# More closed forms
# --------------------------------------------------------------------------------------------------------------
def clamp_covariance(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, inplace: bool, same) -> torch.Tensor:
    """``c`` clamped to ``[−√(ab), √(ab)]`` (rounding can push a covariance past Cauchy–Schwarz), with the entries
    that pair a point with itself (``same``, see :func:`cosine_`) set to ``a`` exactly."""
    r = (a.clamp_min(0) * b.clamp_min(0)).sqrt()
    out = c if inplace else c.clone()
    out = torch.minimum(torch.maximum(out, -r, out=out), r, out=out)
    if same == "all":
        out.copy_(a.expand_as(out))
    elif same is not None:
        dst = self_entries(out, same)
        dst.copy_(self_entries(a.expand_as(out), same))
    return out


def self_entries(t: torch.Tensor, same) -> torch.Tensor:
    """The view of ``t`` whose entries pair a point with itself: ``same='diagonal'`` the diagonal of the two
    leading axes, or a callable ``view(t)`` (e.g. points *and* positions for convolutional kernels)."""
    return t.diagonal() if same == "diagonal" else same(t)


def gelu_dual(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, inplace: bool = False, same=None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form dual of GELU ``φ(x) = x Φ(x)`` (Tsuchida et al. 2021, arXiv:2002.08517).

    With ``A = 1 + a``, ``B = 1 + b``, ``δ = √(AB − c²)`` (>= √(1 + a + b) > 0) and ``θ = arctan(c/δ)``:

    ``E[φ(u)φ(v)] = c/4 + (c θ + (c² + ab δ²)/(AB δ)) / (2π)``,
    ``E[φ'(u)φ'(v)] = 1/4 + θ/(2π) + c (1/δ² + (1 − ab)/(AB) + 1) / (2π δ)``.

    Every term is well conditioned (δ is bounded away from 0), so the result is accurate to a few ulps.
    """
    c = clamp_covariance(c, a, b, inplace, same)
    # Scale-free form (no overflow of ab or c² for huge variances): r = √(AB), ρ = c/r, σ = δ/r, so
    # (c² + ab δ²)/(AB δ) = ρ² q + (a/A)(b/B)/q and c/δ = ρ/σ with q = 1/(rσ) = 1/δ; and without cancellation
    # σ² = (1 + a + b + ab sin²θ)/(AB), θ the angle of the pair (ab − c² = ab sin²θ).
    ia, ib = (1.0 + a).reciprocal(), (1.0 + b).reciprocal()
    pa, pb = a * ia, b * ib  # a/A, b/B
    ab_AB = pa * pb
    cos = c * safe_rsqrt(a) * safe_rsqrt(b)
    sin2 = ((1.0 - cos) * (1.0 + cos)).clamp_min_(0.0)
    sigma = (ia * ib + pa * ib + pb * ia + ab_AB * sin2).sqrt_()  # >= √((1 + a + b)/(AB)) > 0
    inv_r = ia.sqrt() * ib.sqrt()
    rho = c * inv_r
    theta = torch.atan2(rho, sigma)
    q = inv_r / sigma  # 1/δ
    dot = (q * q + ia * ib - ab_AB + 1.0).mul_(rho / sigma)
    dot = dot.add_(theta).mul_(1.0 / _TWO_PI).add_(0.25)
    nngp = (rho * rho * q).addcmul_(ab_AB, q.reciprocal())
    nngp = nngp.addcmul_(c, theta).mul_(1.0 / _TWO_PI).add_(c, alpha=0.25)
    return nngp, dot


def sin_dual(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, amp: float = 1.0, freq: float = 1.0,
             phase: float = 0.0, *, inplace: bool = False, same=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form dual of ``φ(x) = amp·sin(freq·x + phase)``.

    ``sin p sin q = (cos(p − q) − cos(p + q))/2`` and ``E[cos(s·w + t)] = cos t · e^{−s² Var(w)/2}``:
    ``E[φφ] = amp²/2 (e^{−f²(a + b − 2c)/2} − cos(2·phase) e^{−f²(a + b + 2c)/2})``,
    ``E[φ'φ'] = amp² f²/2 (e^{−f²(a + b − 2c)/2} + cos(2·phase) e^{−f²(a + b + 2c)/2})``. Cos is phase + π/2.
    """
    c = clamp_covariance(c, a, b, inplace, same)
    f2 = freq * freq
    s = a + b
    minus = torch.exp((c * 2.0 - s) * (0.5 * f2))
    plus = torch.exp((c * 2.0 + s) * (-0.5 * f2)).mul_(math.cos(2.0 * phase))
    half = 0.5 * amp * amp
    return torch.sub(minus, plus, out=c).mul_(half), minus.add_(plus).mul_(half * f2)


def exp_dual(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, amp: float = 1.0, rate: float = 1.0, *,
             inplace: bool = False, same=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form dual of ``φ(x) = amp·e^{rate·x}`` (the log-normal moment generating function):
    ``E[φφ] = amp² e^{rate²(a + b + 2c)/2}``, ``E[φ'φ'] = rate² E[φφ]``."""
    c = clamp_covariance(c, a, b, inplace, same)
    nngp = torch.exp((c * 2.0 + a + b) * (0.5 * rate * rate)).mul_(amp * amp)
    return nngp, nngp * (rate * rate)


def gaussian_dual(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, amp: float = 1.0, rate: float = -1.0, *,
                  inplace: bool = False, same=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form dual of ``φ(x) = amp·e^{rate·x²}``: with ``D = √((1 − 2·rate·a)(1 − 2·rate·b) − 4 rate² c²)``,
    ``E[φφ] = amp²/D`` and ``E[φ'φ'] = 4 amp² rate² c / D³`` (Gaussian integrals of a quadratic form).
    Finite only where ``D² > 0`` (always for ``rate <= 0``); infinite (inf) otherwise."""
    c = clamp_covariance(c, a, b, inplace, same)
    r = rate
    det2 = (1.0 - 2.0 * r * a) * (1.0 - 2.0 * r * b) - (4.0 * r * r) * c * c
    ok = det2 > 0
    inv = torch.where(ok, det2, 1.0).rsqrt()
    nngp = torch.where(ok, inv * (amp * amp), math.inf)
    dot = torch.where(ok, inv.pow(3).mul_(c).mul_(4.0 * r * r * amp * amp), math.inf)
    return nngp, dot


def sign_dual(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, inplace: bool = False, same=None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form dual of ``sign``: ``E[sign u sign v] = 1 − 2θ/π = (2/π) arcsin(cos θ)`` (Sheppard); the
    derivative is 0 almost everywhere, so ``E[φ'φ'] = 0`` (as neural-tangents: the NTK does not pass through).
    A zero-variance input gives 0 (sign 0)."""
    cos = cosine_(c if inplace else c.clone(), a, b, same)
    nz = ((a > 0) & (b > 0)).to(cos.dtype)
    nngp = cos.asin_().mul_(2.0 / math.pi).mul_(nz)
    return nngp, torch.zeros_like(nngp)


def _gaussian_moment(n: int) -> int:
    """``E[z^n]`` for ``z ~ N(0, 1)``: ``(n − 1)!!`` for even n, 0 for odd n."""
    return 0 if n % 2 else math.prod(range(n - 1, 0, -2))


def polynomial_dual(coeffs: tuple[float, ...], c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *,
                    inplace: bool = False, same=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact dual of a polynomial ``p(x) = Σ_n coeffs[n] xⁿ``, by the Hermite (Mehler) expansion in the covariance:

    ``E[f(u) g(v)] = Σ_k c^k/k! · E[f⁽ᵏ⁾(u)] · E[g⁽ᵏ⁾(v)]`` for a centred Gaussian pair (Price's theorem: the k-th
    c-derivative of the left side is ``E[f⁽ᵏ⁾ g⁽ᵏ⁾]``, and at c = 0 the pair is independent). For a polynomial the
    sum stops at k = deg p, and ``m_k(a) = E[p⁽ᵏ⁾(u)] = Σ_n coeffs[n] n!/(n−k)! E[z^{n−k}] a^{(n−k)/2}``. So
    ``E[pp] = Σ_k c^k/k! m_k(a) m_k(b)`` and ``E[p'p'] = Σ_k c^k/k! m_{k+1}(a) m_{k+1}(b)``.
    """
    c = clamp_covariance(c, a, b, inplace, same)
    deg = len(coeffs) - 1

    def m(k: int, v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(v)
        for n in range(k, deg + 1):
            e = _gaussian_moment(n - k)
            if e and coeffs[n]:
                out = out + coeffs[n] * math.perm(n, k) * e * v.clamp_min(0) ** ((n - k) // 2)
        return out

    nngp = torch.zeros_like(c)
    dot = torch.zeros_like(c)
    ck = torch.ones_like(c)  # c^k / k!
    for k in range(deg + 1):
        nngp.add_(ck * m(k, a) * m(k, b))
        if k < deg:
            dot.add_(ck * m(k + 1, a) * m(k + 1, b))
        ck = ck * c / (k + 1)
    return nngp, dot
