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

Cosines are clamped to [−1, 1] and zero variances give zero (no NaN for zero-norm inputs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

__all__ = ["abrelu_dual", "erf_dual", "gauss_hermite_dual", "hermite_nodes", "derivative"]

_TWO_PI = 2.0 * math.pi


def _safe_rsqrt(a: torch.Tensor) -> torch.Tensor:
    """1/√a, with 0 where a <= 0 (a zero-norm input has cosine 0 with everything, and its kernel is 0)."""
    return torch.where(a > 0, a, math.inf).rsqrt()


_THETA_SNAP = math.sqrt(128 * torch.finfo(torch.float64).eps)  # θ below this is rounding of θ = 0
_COS_SNAP = math.cos(_THETA_SNAP)  # 1 − 64 ε: cosines at or above it are rounding of cos θ = 1


def cosine_(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, same: str | None = None) -> torch.Tensor:
    """In place: ``c <- clamp(c / √(ab), −1, 1)``; ``a``, ``b`` broadcast against ``c``. Returns ``c``.

    ``same='all'`` (diag mode) or ``'diagonal'`` (the leading square of a block compares each point with itself)
    sets those cosines to exactly 1 where the variance is positive: ``arccos(1 − ε) ≈ √(2ε)`` would otherwise
    turn a rounding error of 1e-16 into an error of 1e-8 in θ.
    """
    c.mul_(_safe_rsqrt(a)).mul_(_safe_rsqrt(b)).clamp_(-1.0, 1.0)
    if same == "all":
        c.copy_((c != 0).to(c.dtype))  # 1, or 0 for a zero-norm input
    elif same == "diagonal":
        dg = c.diagonal()
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
    positions get identical kernel rows.
    """
    jump = (beta - alpha) ** 2 / _TWO_PI
    mean_sq = 0.5 * (alpha * alpha + beta * beta)
    if same == "all" or jump == 0.0:
        # a point with itself (θ = 0: E[φ(u)²] = a·(α²+β²)/2), or α = β (a linear map: E[φ(u)φ(v)] = α² c);
        # either way E[φ'φ'] = (α²+β²)/2 and nothing is left to scale
        nngp = torch.mul(a.clamp_min(0) if same == "all" else c, mean_sq, out=c if inplace else None)
        dot = torch.full_like(nngp, mean_sq)
        return (nngp, dot) if scaled else (nngp, dot, None, None, 1.0)
    ra, rb = _safe_rsqrt(a), _safe_rsqrt(b)  # 1/√a, 0 for a = 0 (a zero-norm input: c = 0 too)
    s1, s2 = a * ra * jump, b * rb  # jump·√a, √b
    # Work with n = −cos θ and φ = arccos(n) = π − θ: then sin θ = sin φ and E[φ'φ'] = jump·φ + αβ, so the
    # derivative kernel needs no pass of its own (its factor jump is left to the caller when not scaled).
    n = (c if inplace else c.clone()).mul_(ra).mul_(rb.neg_())
    # θ below √(128 ε) is rounding of θ = 0 (so is a cosine above 1): cos θ = 1 exactly; then cos θ >= −1
    torch.nn.functional.threshold(n, -_COS_SNAP, -1.0, inplace=True).clamp_(max=1.0)
    if same == "diagonal":  # each point with itself: cos θ = 1 exactly (0 for a zero-norm input)
        dg = n.diagonal()
        dg.copy_((dg != 0).to(n.dtype).neg_())
    phi = torch.acos(n)  # π − θ
    sin = torch.sin(phi)  # sin θ
    if alpha * beta != 0.0:
        phi.add_(alpha * beta / jump)  # E[φ'φ'] / jump
    nngp = torch.addcmul(sin, n, phi, value=-1.0, out=n)  # sin θ + cos θ·E[φ'φ']/jump = E[φφ]/(jump·√(ab))
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
    x, w = np.polynomial.hermite.hermgauss(degree)
    # Probabilists' form: E_{z~N(0,1)}[g(z)] ≈ Σ w_i g(√2 x_i) / √π
    return x * math.sqrt(2.0), w / math.sqrt(math.pi)


def hermite_nodes(degree: int, dtype=torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``z`` and weights ``w`` with ``E_{z~N(0,1)}[g(z)] ≈ Σ w_i g(z_i)`` (exact for polynomials of degree
    < 2·degree)."""
    z, w = _hermgauss(int(degree))
    return torch.as_tensor(z, dtype=dtype, device=device), torch.as_tensor(w, dtype=dtype, device=device)


def derivative(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``φ'(x)`` of an elementwise ``φ`` by torch autodiff (the gradient of ``Σ φ(x)``)."""
    with torch.enable_grad():
        t = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(t).sum(), t)
    return g


def gauss_hermite_dual(fn: Callable[[torch.Tensor], torch.Tensor], c: torch.Tensor, a: torch.Tensor,
                       b: torch.Tensor, degree: int = 32, deriv: Callable | None = None,
                       same: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual of any elementwise ``fn`` by 2-D Gauss–Hermite quadrature with ``degree²`` nodes.

    ``E[φ(u)φ(v)] ≈ Σ_ij w_i w_j φ(u_ij) φ(v_ij)`` with ``(u, v)_ij = S (z_i, z_j)`` and ``S`` the *symmetric*
    square root of the covariance, ``S = [[a + s, c], [c, b + s]] / √(a + b + 2s)``, ``s = √(ab − c²)`` (so the
    rule is symmetric in the two inputs: k(x, x') = k(x', x) to rounding). The same sum with ``φ'`` (``deriv``, or
    torch autodiff of ``fn``) gives ``E[φ'(u)φ'(v)]``. Exact for polynomials of degree < 2·degree; accurate to
    rounding for smooth ``φ`` and moderate variances; slow (algebraic) convergence at kinks (use the closed forms).

    Memory: a few buffers of shape ``c.shape + (degree,)``.
    """
    dtype, device = c.dtype, c.device
    shape = torch.broadcast_shapes(c.shape, a.shape, b.shape)
    z, w = hermite_nodes(degree, dtype, device)
    a_, b_ = a.clamp_min(0).expand(shape), b.clamp_min(0).expand(shape)
    cos = cosine_(c.clone(), a, b, same).expand(shape)  # (B, N2), clamped to [−1, 1]
    root_ab = a_.sqrt() * b_.sqrt()  # no overflow of ab for huge scales
    cov = cos * root_ab  # consistent with the clamped cosine
    s = ((1.0 - cos * cos).clamp_min_(0.0)).sqrt_().mul_(root_ab)  # √(ab − c²) = √(ab)·sin θ
    t_inv = _safe_rsqrt(a_ + b_ + 2.0 * s)
    s11, s12, s22 = ((a_ + s) * t_inv)[..., None], (cov * t_inv)[..., None], ((b_ + s) * t_inv)[..., None]
    d_fn = deriv if deriv is not None else (lambda x: derivative(fn, x))
    nngp = torch.zeros(shape, dtype=dtype, device=device)
    dot = torch.zeros(shape, dtype=dtype, device=device)
    for zi, wi in zip(z, w):
        u = s11 * zi + s12 * z  # (B, N2, D): node (z_i, z_j) for all j
        v = s12 * zi + s22 * z
        nngp.add_((fn(u) * fn(v)) @ w, alpha=float(wi))
        dot.add_((d_fn(u) * d_fn(v)) @ w, alpha=float(wi))
    return nngp, dot
