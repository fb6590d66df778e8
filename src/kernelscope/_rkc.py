"""Runge–Kutta–Chebyshev (RKC): a second-order explicit integrator for stiff ODEs with a real, non-positive spectrum.

The function-space flows of :mod:`kernelscope.predict` (``f' = −Θ ∇L(f)`` with a positive semi-definite Θ and a
convex loss) have Jacobians ``−Θ ∇²L`` similar to ``−(∇²L)^½ Θ (∇²L)^½``: their eigenvalues are real and ≤ 0, spread
from ≈ 0 to ``−λ_max(Θ)·max‖∇²L‖``. A classical explicit method is held by the largest of them to steps below
``≈ 3/ρ`` for the whole run, long after the fast modes have settled; an implicit one needs the dense (N·O)²
Jacobian. RKC instead stretches its stability interval along the negative real axis quadratically with the number
of stages s (``h ρ ≤ 0.653 s²``), so a step costs ``s ≈ √(1.54 h ρ)`` evaluations and the step size is set by
accuracy alone.

Method (second order, damping ε = 2/13, shifted Chebyshev recursion, the embedded error estimate and step-size
control) as published in B.P. Sommeijer, L.F. Shampine, J.G. Verwer, "RKC: an explicit solver for parabolic
PDEs", J. Comput. Appl. Math. 88 (1998) 315-326, and J.G. Verwer, W.H. Hundsdorfer, B.P. Sommeijer, Numer. Math.
57 (1990) 157-178. Written here on torch tensors (any device); SciPy has no stabilised explicit method.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

__all__ = ["rkc", "power_radius", "radius_estimate"]

EPS_DAMPING = 2.0 / 13.0


@lru_cache(maxsize=512)
def _coefficients(s: int) -> tuple:
    """(μ̃₁, [(μ_j, ν_j, μ̃_j, γ̃_j, c_j) for j = 2..s]) of the s-stage second-order RKC method (c_j: stage times)."""
    w0 = 1.0 + EPS_DAMPING / s**2
    # Chebyshev polynomials of the first kind and their first two derivatives at w0, j = 0..s
    T, dT, ddT = [1.0, w0], [0.0, 1.0], [0.0, 0.0]
    for j in range(2, s + 1):
        T.append(2 * w0 * T[j - 1] - T[j - 2])
        dT.append(2 * T[j - 1] + 2 * w0 * dT[j - 1] - dT[j - 2])
        ddT.append(4 * dT[j - 1] + 2 * w0 * ddT[j - 1] - ddT[j - 2])
    w1 = dT[s] / ddT[s]
    b = [0.0] * (s + 1)
    for j in range(2, s + 1):
        b[j] = ddT[j] / dT[j] ** 2
    b[0] = b[1] = b[2]
    mu1 = b[1] * w1
    # stage times c_j (c_1 = μ̃₁, c_s = 1): c_j = T'_s(w0) T''_j(w0) / (T''_s(w0) T'_j(w0)) for j ≥ 2
    c = [0.0, mu1] + [dT[s] * ddT[j] / (ddT[s] * dT[j]) for j in range(2, s + 1)]
    stages = []
    for j in range(2, s + 1):
        mu = 2 * w0 * b[j] / b[j - 1]
        nu = -b[j] / b[j - 2]
        mut = 2 * w1 * b[j] / b[j - 1]
        gt = -(1 - b[j - 1] * T[j - 1]) * mut
        stages.append((mu, nu, mut, gt, c[j]))
    return mu1, stages


def stages_for(h_rho: float) -> int:
    """The number of stages whose stability interval covers ``h ρ`` (≥ 2): ``s² ≥ 1 + 1.54 h ρ``."""
    return max(2, 1 + int(math.sqrt(1.0 + 1.54 * h_rho)))


def radius_estimate(jvp: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, iters: int = 30
                    ) -> tuple[float, torch.Tensor, int]:
    """1.2 × the largest eigenvalue magnitude of the Jacobian-vector product ``jvp`` (a real spectrum), by
    :func:`kernelscope.linsys.power_iteration` from ``v``, stopped at a 5 % residual or after ``iters`` products:
    the rough, cheap upper estimate RKC needs to pick its stages (the 1.2 covers what the residual leaves).
    Returns (estimate, the last direction, products)."""
    from .linsys import power_iteration

    shape, dev, dtype = v.shape, v.device, v.dtype

    def matvec(u: np.ndarray) -> np.ndarray:
        return jvp(torch.from_numpy(u).to(device=dev, dtype=dtype).reshape(shape)).reshape(-1).cpu().numpy()

    start = v.reshape(-1).cpu().numpy()
    if not np.any(start):
        start = np.ones_like(start)
    res = power_iteration(matvec, v0=start, tol=0.05, max_iter=iters, warn_unconverged=False)
    direction = torch.from_numpy(np.asarray(res.eigenvector)).to(device=dev, dtype=dtype).reshape(shape)
    return 1.2 * abs(res.eigenvalue), direction, res.iterations


def power_radius(fun: Callable[[float, torch.Tensor], torch.Tensor], t: float, y: torch.Tensor, fy: torch.Tensor,
                 v: torch.Tensor | None = None, iters: int = 50) -> tuple[float, torch.Tensor, int]:
    """Estimate the spectral radius of ∂fun/∂y at (t, y) by power iteration on finite differences (as RKC does):
    ``J u ≈ (fun(t, y + δu) − fun(t, y))/δ`` (:func:`radius_estimate`). Returns (ρ with a 1.2 safety factor,
    the last direction, evaluations)."""
    if v is None or float(torch.linalg.vector_norm(v)) == 0:
        v = fy.clone() if float(torch.linalg.vector_norm(fy)) > 0 else torch.ones_like(y)
    dy = math.sqrt(np.finfo(np.float64).eps) * max(float(torch.linalg.vector_norm(y)), 1.0)

    def jvp(u: torch.Tensor) -> torch.Tensor:
        scale = float(torch.linalg.vector_norm(u))
        return (fun(t, y + u * (dy / scale)) - fy) * (scale / dy)

    return radius_estimate(jvp, v, iters)


def rkc(fun: Callable[[float, torch.Tensor], torch.Tensor], y0: torch.Tensor, t_eval: np.ndarray, *, rtol: float,
        atol: float, spectral_radius: float | Callable[[float, torch.Tensor], float] | None = None,
        max_steps: int = 1_000_000) -> tuple[torch.Tensor, dict]:
    """Integrate ``y' = fun(t, y)`` from t = 0 to each time of ``t_eval`` (sorted, ≥ 0) by RKC.

    Parameters
    ----------
    fun : the right-hand side on torch tensors (the state's shape, dtype and device).
    y0 : the state at t = 0.  t_eval : (T,) non-decreasing times ≥ 0; the solver steps onto each of them.
    rtol, atol : the local error of every component held to ``atol + rtol·|y|`` (weighted RMS norm, as RKC).
    spectral_radius : an upper bound of the Jacobian's spectral radius along the whole path (a number); or a
        function ``(t, y) -> ρ`` that estimates it at the current state (an exact Jacobian-vector product, say),
        or None to estimate it by power iteration on finite differences - both called at the start, every 25
        steps and after each rejected step (a flow whose curvature fades, like cross-entropy's as the classes
        separate, then takes far fewer stages per step than its worst-case bound asks for).

    Returns
    -------
    ys (T, *y0.shape) and info: ``steps`` (accepted), ``rejected``, ``nfev``, ``max_stages``, ``spectral_radius``.
    """
    t_eval = np.asarray(t_eval, dtype=np.float64)
    out = torch.empty((len(t_eval), *y0.shape), dtype=y0.dtype, device=y0.device)
    y = y0.clone()
    t = 0.0
    fy = fun(t, y)
    nfev, steps, rejected, max_stages = 1, 0, 0, 0
    estimate = spectral_radius is None or callable(spectral_radius)
    v, since_rho, n_estimates = None, 0, 0

    def radius() -> float:
        nonlocal v, nfev, n_estimates
        n_estimates += 1
        if callable(spectral_radius):
            return float(spectral_radius(t, y))
        r, v, n = power_radius(fun, t, y, fy, v)
        nfev += n
        return r

    rho = radius() if estimate else float(spectral_radius)
    end = float(t_eval[-1]) if len(t_eval) else 0.0
    rho_used = rho

    def wnorm(e: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
        w = atol + rtol * torch.maximum(a.abs(), b.abs())
        return float(torch.sqrt(torch.mean((e / w) ** 2)))

    # initial step: Hairer, Nørsett & Wanner's rule for a second-order method (as scipy's select_initial_step)
    h = end
    if end > 0:
        w0 = atol + rtol * y.abs()
        d0 = float(torch.sqrt(torch.mean((y / w0) ** 2)))
        d1 = float(torch.sqrt(torch.mean((fy / w0) ** 2)))
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        h0 = min(h0, end)
        f1 = fun(t + h0, y + h0 * fy)
        nfev += 1
        d2 = float(torch.sqrt(torch.mean(((f1 - fy) / w0) ** 2))) / h0
        h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1 / 3)
        h = min(100 * h0, h1, end)
    err_old, h_old, after_reject = None, None, True
    for k, te in enumerate(t_eval):
        while t < te:
            if steps + rejected >= max_steps:
                raise RuntimeError(f"RKC: more than {max_steps} steps before t = {te:g} (reached t = {t:.4g})")
            last = h >= te - t or (te - t) - h <= 1e-12 * te
            if last:
                h = te - t
            s = stages_for(h * rho)
            max_stages = max(max_stages, s)
            mu1, stages = _coefficients(s)
            # Y_0 = y, Y_1 = y + μ̃₁ h F_0, Y_j = (1 − μ_j − ν_j) y + μ_j Y_{j−1} + ν_j Y_{j−2} + μ̃_j h F_{j−1}
            #                                       + γ̃_j h F_0
            y_jm2, y_jm1 = y, y + (mu1 * h) * fy
            c_prev = mu1
            for mu, nu, mut, gt, c in stages:
                f_jm1 = fun(t + c_prev * h, y_jm1)
                y_j = (1 - mu - nu) * y + mu * y_jm1 + nu * y_jm2 + (mut * h) * f_jm1 + (gt * h) * fy
                y_jm2, y_jm1, c_prev = y_jm1, y_j, c
            nfev += s - 1
            y_new = y_jm1
            f_new = fun(t + h, y_new)
            nfev += 1
            err = wnorm((12.0 * (y - y_new) + 6.0 * h * (fy + f_new)) / 15.0, y, y_new)
            if not math.isfinite(err):
                err = 1e10
            if err <= 1.0:  # accept
                t = te if last else t + h
                y, fy = y_new, f_new
                steps += 1
                since_rho += 1
                if err == 0:
                    fac = 10.0
                elif after_reject or err_old is None:
                    fac = min(10.0, 0.8 / err ** (1 / 3))
                else:  # the PI-type control of RKC
                    fac = min(10.0, 0.8 * (h / h_old) * err_old ** (1 / 3) / err ** (2 / 3))
                h_old, err_old, after_reject = h, err, False
                h = max(0.1, fac) * h
                if estimate and since_rho >= 25:
                    rho, since_rho = radius(), 0
                    rho_used = max(rho_used, rho)
            else:
                rejected += 1
                after_reject = True
                h = max(0.1, 0.8 / err ** (1 / 3)) * h
                if estimate:
                    rho, since_rho = radius(), 0
                    rho_used = max(rho_used, rho)
                if h < 10 * np.spacing(max(t, h)):
                    raise RuntimeError(f"RKC: the step size fell to {h:.3g} at t = {t:.6g}")
        out[k] = y
    return out, {"steps": steps, "rejected": rejected, "nfev": nfev, "max_stages": max_stages,
                 "spectral_radius": rho_used, "radius_estimates": n_estimates}
