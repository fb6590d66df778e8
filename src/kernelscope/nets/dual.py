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
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

__all__ = ["abrelu_dual", "erf_dual", "gauss_hermite_dual", "hermite_nodes", "derivative"]

_TWO_PI = 2.0 * math.pi


def _safe_rsqrt(a: torch.Tensor) -> torch.Tensor:
    """1/√a, with 0 where a <= 0 (a zero-norm input has cosine 0 with everything, and its kernel is 0)."""
    return torch.where(a > 0, a.clamp_min(torch.finfo(a.dtype).tiny).rsqrt(), torch.zeros_like(a))


def cosine_(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """In place: ``c <- clamp(c / √(ab), −1, 1)``; ``a``, ``b`` broadcast against ``c``. Returns ``c``."""
    return c.mul_(_safe_rsqrt(a)).mul_(_safe_rsqrt(b)).clamp_(-1.0, 1.0)


def abrelu_dual(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, alpha: float = 0.0, beta: float = 1.0,
                *, inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form dual of ``φ(x) = alpha·min(x, 0) + beta·max(x, 0)`` (the arc-cosine kernel of order 1).

    ``E[φ(u)φ(v)] = √(ab) [ (β−α)²/(2π) sin θ + ((α²+β²)/2 − (β−α)² θ/(2π)) cos θ ]`` and
    ``E[φ'(u)φ'(v)] = (α²+β²)/2 − (β−α)² θ/(2π)``, ``θ = arccos(c/√(ab))``.

    Parameters
    ----------
    c : covariances, shape (B, N2) (or (N,) in diag mode); overwritten when ``inplace``.
    a, b : variances broadcasting against ``c`` ((B, 1) and (1, N2), or (N,)).

    Returns
    -------
    (nngp, dot) : tensors of ``c``'s shape. With ``inplace`` the first one *is* ``c``'s storage.
    Temporaries: two buffers of ``c``'s size.
    """
    jump = (beta - alpha) ** 2 / _TWO_PI
    mean_sq = 0.5 * (alpha * alpha + beta * beta)
    cos = cosine_(c if inplace else c.clone(), a, b)  # (B, N2)
    sin = torch.mul(cos, cos)
    sin.neg_().add_(1.0).clamp_min_(0.0).sqrt_()  # √(1 − cos²) = sin θ ∈ [0, 1]
    dot = torch.acos(cos)
    dot.mul_(-jump).add_(mean_sq)  # (α²+β²)/2 − (β−α)² θ/(2π)
    nngp = cos.mul_(dot).add_(sin, alpha=jump)  # reuse the cosine buffer
    nngp.mul_(a.clamp_min(0).sqrt()).mul_(b.clamp_min(0).sqrt())
    return nngp, dot


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
                       b: torch.Tensor, degree: int = 32, deriv: Callable | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual of any elementwise ``fn`` by 2-D Gauss–Hermite quadrature with ``degree²`` nodes.

    ``E[φ(u)φ(v)] ≈ Σ_ij w_i w_j φ(√a z_i) φ(√b (ρ z_i + √(1−ρ²) z_j))`` with ``ρ = c/√(ab)`` clamped to [−1, 1];
    the same sum with ``φ'`` (``deriv``, or autodiff of ``fn``) gives ``E[φ'(u)φ'(v)]``. Accurate to rounding for
    smooth ``φ`` and moderate variances; slow (algebraic) convergence for kinks (use the closed forms there).

    Memory: a few buffers of shape ``c.shape + (degree,)``.
    """
    dtype, device = c.dtype, c.device
    shape = torch.broadcast_shapes(c.shape, a.shape, b.shape)
    z, w = hermite_nodes(degree, dtype, device)
    rho = cosine_(c.clone(), a, b).expand(shape)  # (B, N2)
    comp = torch.sqrt((1.0 - rho * rho).clamp_min_(0.0))
    sa = a.clamp_min(0).sqrt().expand(shape)
    sb = b.clamp_min(0).sqrt().expand(shape)
    d_fn = deriv if deriv is not None else (lambda t: derivative(fn, t))
    nngp = torch.zeros(shape, dtype=dtype, device=device)
    dot = torch.zeros(shape, dtype=dtype, device=device)
    for zi, wi in zip(z, w):
        u = sa * zi  # (B, N2)
        fu, du = fn(u), d_fn(u)
        v = sb[..., None] * (rho[..., None] * zi + comp[..., None] * z)  # (B, N2, D)
        fv, dv = fn(v), d_fn(v)
        nngp.add_(fu * (fv @ w), alpha=float(wi))
        dot.add_(du * (dv @ w), alpha=float(wi))
    return nngp, dot
