"""Function-space predictors: a kernel machine (a linearised or infinitely wide network) trained in time.

In the spirit of neural-tangents' ``predict`` module (Lee et al. 2019, "Wide neural networks of any depth evolve as
linear models under gradient descent", arXiv 1902.06720):

- :func:`gradient_flow` - squared error in closed form, from one eigendecomposition of Θ (or t steps of gradient
  descent), on the training set and at test points; t = ∞ is kernel regression.
- :func:`gradient_descent` - the outputs after training time t of gradient flow ``f' = −η Θ ∇_f L(f)`` (or its
  heavy-ball version with ``momentum``) for any differentiable loss: squared error (:func:`gradient_flow`),
  cross-entropy, or a callable differentiated by torch autograd (an ODE integrated with error control).
- :func:`ensemble` - mean and covariance over test points of the infinite ensemble of infinitely wide networks
  trained by gradient flow on the squared loss (Lee et al. 2019, eqs. 15-16), from a ``kernelscope.nets``
  description.

Losses are summed over examples and outputs (:mod:`kernelscope._model`, ``reduction='sum'``): squared
error ``½ Σ ‖f_i − y_i‖²``, cross-entropy ``−Σ_i Σ_k y_ik log softmax(f_i)_k`` (y one-hot, or integer labels).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from ._arrays import (
    ArrayKind,
    ValidationError,
    as_tensor,
    check_choice,
    check_memory,
    check_nonnegative,
    check_positive,
    warn,
)
from ._model import LOSSES, flat_kernel, lambda_max, loss_gradient, loss_hessian
from ._rkc import power_radius, radius_estimate, rkc

__all__ = ["gradient_flow", "GradientFlow", "gradient_descent", "ensemble", "Dynamics", "Gaussian", "LOSSES",
           "METHODS"]

#: 'auto' (RKC for stiff flows without momentum, else DOP853), 'RKC' (Runge–Kutta–Chebyshev, kernelscope._rkc),
#: and scipy.integrate's solvers; the implicit ones ('Radau', 'BDF') get the exact Jacobian for the built-in losses.
METHODS = ("auto", "RKC", "RK45", "DOP853", "Radau", "BDF")
#: 'auto' starts with DOP853 and hands over to RKC when, at SWITCH_EVERY-step checks, DOP853's step h times the
#: Jacobian's spectral radius ρ has stayed above SWITCH_AT (its stability interval ends near h ρ ≈ 6) three times
#: in a row: from then on stability, not accuracy, would set its steps.
SWITCH_EVERY, SWITCH_AT = 10, 3.0


class Dynamics(NamedTuple):
    """What :func:`gradient_descent` returns: ``train`` (.., N, O), ``test`` (.., M, O) or None, and ``info``
    (``method``; for ODE solves ``steps`` (accepted steps), ``nfev``, ``njev``, ``rtol``, ``atol``)."""

    train: Any
    test: Any
    info: dict


class Gaussian(NamedTuple):
    """``mean`` (.., M[, O]) and ``covariance`` (.., M, M) (or the variances (.., M) with ``cov=False``)."""

    mean: Any
    covariance: Any


# ------------------------------------------------------------------------------------------------------------
# Kernels as operators: Θ ⊗ I (shape (N, N)) or a full kernel over outputs (shape (N, N, O, O))
# ------------------------------------------------------------------------------------------------------------
def _apply(K: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """``K G``: (R, N) @ (N, O) for ``Θ ⊗ I``, or ``Σ_jb K[i, j, a, b] G[j, b]`` for a (R, N, O, O) kernel."""
    return K @ G if K.ndim == 2 else torch.einsum("ijab,jb->ia", K, G)


def _jacobian_block(K: torch.Tensor, H: torch.Tensor, n_out: int) -> torch.Tensor:
    """``∂(K g(f))/∂f`` = ``K H`` as a dense (R·O, N·O) matrix; H (N, O, O) the per-example Hessians of the loss."""
    if K.ndim == 2:
        J = torch.einsum("ij,jab->iajb", K, H)  # (R, O, N, O)
    else:
        J = torch.einsum("ijac,jcb->iajb", K, H)
    return J.reshape(K.shape[0] * n_out, -1)


# ------------------------------------------------------------------------------------------------------------
# Checks of what the flows are given: a kernel (symmetric PSD), memory for the outputs over time
# ------------------------------------------------------------------------------------------------------------
#: relative tolerance of the kernel checks: asymmetry ‖K − Kᵀ‖_F ≤ tol ‖K‖_F, smallest eigenvalue ≥ −tol λ_max
#: (a kernel computed in float64 misses both by ~1e-13; one in float32 by ~1e-6)
KERNEL_TOL = 1e-5


def _check_symmetric(K: torch.Tensor, name: str) -> None:
    """Warn when K (N, N) is not symmetric to ``KERNEL_TOL``: a kernel matrix is (K_ij = k(x_i, x_j) = K_ji)."""
    asym = float(torch.linalg.matrix_norm(K - K.T)) / max(float(torch.linalg.matrix_norm(K)), 1e-300)
    if asym > KERNEL_TOL:
        warn(f"{name} is not symmetric (‖K − Kᵀ‖/‖K‖ = {asym:.2g}): it is not a kernel matrix, and gradient flow "
             "with it is not gradient descent on the loss; pass k(X, X) (or (K + Kᵀ)/2).")


def _warn_not_psd(name: str, w_min: float, w_max: float, *, upper_bound: bool = False) -> None:
    """Warn when the smallest eigenvalue is below ``−KERNEL_TOL · max|λ|``: along its eigenvector the flow grows
    like e^{|λ_min| η t} instead of settling. ``upper_bound``: ``w_min`` is a Rayleigh quotient (λ_min is lower)
    and ``w_max`` the largest diagonal entry (the scale)."""
    if w_min < -KERNEL_TOL * max(abs(w_max), abs(w_min)):
        what = (f"an eigenvalue at most {w_min:.3g}, largest diagonal entry {w_max:.3g}" if upper_bound
                else f"smallest eigenvalue {w_min:.3g}, largest {w_max:.3g}")
        warn(f"{name} is not positive semi-definite ({what}): along the negative directions the outputs grow "
             "without bound instead of converging. A kernel matrix is PSD; check how it was computed.")


#: up to this size the PSD check is one Cholesky factorisation (≤ 0.2 s, 134 MB); above, a few products with K
PSD_CHOLESKY_BELOW = 4096


def _check_psd(K: torch.Tensor, name: str) -> None:
    """The PSD check without an eigendecomposition. Up to :data:`PSD_CHOLESKY_BELOW` rows one Cholesky
    factorisation of ``K + δI`` with ``δ = KERNEL_TOL · max_i |K_ii|`` (≤ KERNEL_TOL · λ_max for a PSD K, since
    λ_max ≥ every K_ii): it fails when K has an eigenvalue below −δ, and only then are the eigenvalues computed,
    to name them in the warning. Larger kernels: 30 steps of power iteration on ``cI − K`` (c the Gershgorin
    bound, so that its top eigenvector is K's bottom one), whose Rayleigh quotients ``vᵀKv`` bound λ_min from
    above: one below −δ proves a negative eigenvalue (clearly negative ones show within a few steps; a slightly
    negative one in a large kernel may go unseen)."""
    d = float(K.diagonal().abs().max()) if K.numel() else 0.0
    if d == 0.0:
        return
    n = K.shape[0]
    if n <= PSD_CHOLESKY_BELOW:
        sym = (K + K.T) / 2
        _, info = torch.linalg.cholesky_ex(sym + KERNEL_TOL * d * torch.eye(n, dtype=K.dtype, device=K.device))
        if int(info) != 0:
            w = torch.linalg.eigvalsh(sym)
            _warn_not_psd(name, float(w[0]), float(w[-1]))
        return
    c = float(K.abs().sum(1).max())  # every eigenvalue lies in [−c, c]
    gen = torch.Generator(device=K.device).manual_seed(0)
    v = torch.randn(n, generator=gen, dtype=K.dtype, device=K.device)
    v /= torch.linalg.vector_norm(v)
    bound = math.inf
    for _ in range(30):
        Kv = K @ v
        bound = min(bound, float(v @ Kv))  # ≥ λ_min (a Rayleigh quotient)
        if bound < -KERNEL_TOL * d:
            _warn_not_psd(name, bound, d, upper_bound=True)
            return
        w = c * v - Kv
        v = w / torch.linalg.vector_norm(w)


def _check_output_memory(n_times: int, rows: int, n_out: int, what: str, extra: float = 0.0) -> None:
    """The outputs at every time, (T, rows, O) float64, with their temporaries (two copies), plus ``extra``."""
    need = 3 * 8.0 * n_times * rows * n_out + extra
    check_memory(need, f"{what} at {n_times} times ({n_times}×{rows}×{n_out} numbers)",
                 "Ask for fewer times t (call again for the next ones), or fewer test points.")


# ------------------------------------------------------------------------------------------------------------
# gradient_flow: the squared loss in closed form
# ------------------------------------------------------------------------------------------------------------
class GradientFlow(NamedTuple):
    """Predictions after gradient flow: ``train`` (.., N[, O]) and ``test`` (.., M[, O]) or None."""

    train: Any
    test: Any


def gradient_flow(k_train: Any, k_test_train: Any, y_train: Any, t: Any, lr: float = 1.0,
                  f0_train: Any = None, f0_test: Any = None, rcond: float | None = None, *,
                  discrete: bool = False, ridge: float = 0.0) -> GradientFlow:
    """Function values after training time t of gradient flow ``df/dt = −η Θ (f − y)`` on ``½‖f − y‖²``
    (or, with ``discrete=True``, after t steps of gradient descent ``f ← f − η Θ (f − y)``).

    With ``Θ = V diag(w) Vᵀ`` (one eigendecomposition) and ``E(t) = I − e^{−ηΘt} = −V expm1(−ηwt) Vᵀ``
    (discrete: ``E(t) = I − (I − ηΘ)^t``, computed as ``−expm1(t·log1p(−ηw))`` while ``ηw < 1``):

    - train:  ``f_t(X) = f₀(X) + E(t) (y − f₀(X))``
    - test:   ``f_t(x) = f₀(x) + Θ(x, X) Θ⁻¹ E(t) (y − f₀(X))``, where ``Θ⁻¹E(t) = V diag(−expm1(−ηwt)/w) Vᵀ``

    ``expm1`` keeps small t accurate; eigenvalues below ``rcond · w_max`` (default ``eps · N``) count as zero,
    i.e. Θ⁻¹ is the pseudoinverse on the range of Θ (for a PSD kernel ``Θ(x, X)`` has no component in the null
    space of ``Θ(X, X)``, so nothing is lost). At t = 0 this is f₀; as t → ∞ it is kernel regression
    with ridge 0 (the least-norm interpolant) added to f₀ — the lazy-training limit of a wide network (and of
    gradient descent with ``η < 2/w_max``). A loss averaged over the N points, ``(1/2N)‖f − y‖²``, is
    ``lr = η/N`` here.

    With ``ridge`` λ > 0, Θ(X, X) + λI stands for Θ(X, X) throughout (neural-tangents' ``diag_reg``, in absolute
    units): as t → ∞ the test predictions become kernel ridge regression ``Θ(x, X)(Θ + λI)⁻¹(y − f₀)``; the
    training-set output is that of the regularised system (pass ``k_test_train=k_train`` for the ridge fit on the
    training points). The MSE special case of :func:`gradient_descent`, and the engine of :func:`ensemble`.

    Parameters
    ----------
    k_train : array-like of shape (N, N) - Θ(X, X), symmetric PSD.
    k_test_train : array-like of shape (M, N) - Θ(x, X) for M test points, or None (train only).
    y_train : array-like of shape (N,) or (N, O).
    t : float or array-like of shape (T,) - training times (≥ 0; ``inf`` allowed); with ``discrete``, numbers
        of gradient-descent steps.
    lr : float > 0 - the learning rate η.
    f0_train : array-like like y_train, optional - the initial function on X (default 0).
    f0_test : array-like of shape (M,) or (M, O), optional - the initial function at the test points.
    rcond : float, optional - relative cut-off for the eigenvalues of Θ.
    discrete : gradient descent in steps of size η instead of gradient flow.
    ridge : float >= 0 - λ added to the diagonal of Θ(X, X).

    Returns
    -------
    GradientFlow(train, test): ``train`` of shape (N,)/(N, O) for scalar t and (T, N)/(T, N, O) for an array
    of times; ``test`` likewise with M (None when ``k_test_train`` is None). NumPy in -> NumPy out.
    """
    kind = ArrayKind.of(k_train, k_test_train, y_train, f0_train, f0_test)
    Theta = as_tensor(k_train, "k_train", ndim=2, shape_hint="(n_train, n_train)")
    n = Theta.shape[0]
    if Theta.shape[1] != n:
        raise ValidationError("k_train", "a square matrix (n_train, n_train)", f"shape {tuple(Theta.shape)}")
    dev = Theta.device
    y = as_tensor(y_train, "y_train", ndim=(1, 2), device=dev)
    if y.shape[0] != n:
        raise ValidationError("y_train", f"{n} rows (as many as k_train)", f"shape {tuple(y.shape)}")
    Y = y.reshape(n, -1)  # (N, O)
    Kx = None
    if k_test_train is not None:
        Kx = as_tensor(k_test_train, "k_test_train", ndim=2, shape_hint="(n_test, n_train)", device=dev)
        if Kx.shape[1] != n:
            raise ValidationError("k_test_train", f"{n} columns (as many as k_train)", f"shape {tuple(Kx.shape)}")
    times = as_tensor(t, "t", ndim=(0, 1), finite=False, device=dev)
    if bool(torch.isnan(times).any()) or bool((times < 0).any()):
        raise ValidationError("t", "times >= 0 (inf allowed)", f"{t!r}")
    eta = check_positive(lr, "lr")
    lam = check_nonnegative(ridge, "ridge")
    rcond = None if rcond is None else check_nonnegative(rcond, "rcond")
    _check_output_memory(times.numel(), n + (0 if Kx is None else Kx.shape[0]), Y.shape[1], "gradient_flow's outputs",
                         extra=8.0 * (3 * n * n + 2 * times.numel() * n))  # eigh's V and copies; (T, N) gains
    _check_symmetric(Theta, "k_train")
    if lam > 0:
        Theta = Theta + lam * torch.eye(n, dtype=Theta.dtype, device=dev)

    def initial(f0: Any, name: str, rows: int) -> torch.Tensor:
        if f0 is None:
            return torch.zeros(rows, Y.shape[1], dtype=torch.float64, device=dev)
        f = as_tensor(f0, name, ndim=(1, 2), device=dev)
        if f.shape[0] != rows or f.reshape(rows, -1).shape[1] != Y.shape[1]:
            want = f"shape ({rows},)" if y.ndim == 1 else f"shape ({rows}, {Y.shape[1]})"
            raise ValidationError(name, want, f"shape {tuple(f.shape)}")
        return f.reshape(rows, -1)

    F0 = initial(f0_train, "f0_train", n)  # (N, O)
    F0x = None if Kx is None else initial(f0_test, "f0_test", Kx.shape[0])  # (M, O)

    w, V = torch.linalg.eigh((Theta + Theta.T) / 2)  # (N,), (N, N)
    if n:
        _warn_not_psd("k_train" + (" + ridge·I" if lam > 0 else ""), float(w[0]), float(w[-1]))
    if discrete and n and eta * float(w[-1]) >= 2.0 and bool((times > 0).any()):
        growth = abs(1.0 - eta * float(w[-1]))
        warn(f"gradient descent diverges: lr = {eta:.4g} >= 2/λ_max = {2.0 / float(w[-1]):.4g} (λ_max of k_train"
             f"{' + ridge·I' if lam > 0 else ''} = {float(w[-1]):.4g}), so the error along the top eigenvector is "
             f"multiplied by {-growth if eta * float(w[-1]) > 2 else -1.0:.4g} at every step. Take lr < "
             f"{2.0 / float(w[-1]):.4g} (stable_lr gives 1/λ_max).")
    cutoff = (rcond if rcond is not None else torch.finfo(torch.float64).eps * n) * float(w.abs().max())
    keep = w > cutoff
    w = torch.where(keep, w, torch.zeros_like(w))
    R = V.T @ (Y - F0)  # (N, O): residual in the eigenbasis
    T = times.reshape(-1, 1)  # (T, 1)
    if discrete:  # 1 − (1 − ηw)^t, through log1p while 1 − ηw > 0 (accurate for small ηw)
        g = eta * w
        log_contraction = torch.log1p(-torch.clamp(g, max=0.5))
        steps_power = torch.where(g < 0.5, -torch.expm1(torch.where(keep, T * log_contraction, 0.0 * T)),
                                  1.0 - torch.pow(1.0 - g, T))
        decayed = torch.where(keep, steps_power, torch.zeros((), dtype=torch.float64, device=dev))  # (T, N)
    else:
        # ηwt, with 0 (not 0·inf = nan) on the null space of Θ, which gradient flow never moves
        ewt = torch.where(keep, eta * w * T, torch.zeros((), dtype=torch.float64, device=dev))  # (T, N)
        decayed = -torch.expm1(-ewt)  # (T, N): 1 − e^{−ηwt}, accurate for small ηwt
    train = F0 + V @ (decayed[:, :, None] * R)  # (T, N, O)
    test = None
    if Kx is not None:
        safe_w = torch.where(keep, w, torch.ones_like(w))
        gain = torch.where(keep, decayed / safe_w, torch.zeros_like(decayed))  # (T, N): Θ⁻¹(I − e^{−ηΘt})
        test = F0x + (Kx @ V) @ (gain[:, :, None] * R)  # (T, M, O)

    def shape(f: torch.Tensor | None) -> Any:
        if f is None:
            return None
        if y.ndim == 1:
            f = f[..., 0]
        if times.ndim == 0:
            f = f[0]
        return kind.wrap(f)

    return GradientFlow(shape(train), shape(test))


# ------------------------------------------------------------------------------------------------------------
# gradient_descent
# ------------------------------------------------------------------------------------------------------------
def gradient_descent(k_train: Any, y_train: Any, t: Any, *, loss: str | Callable = "mse", lr: float = 1.0,
                     momentum: float | None = None, k_test_train: Any = None, f0_train: Any = None,
                     f0_test: Any = None, method: str = "auto", rtol: float = 1e-8, atol: float = 1e-10
                     ) -> Dynamics:
    """Outputs after training time t of function-space gradient descent on a loss L (Lee et al. 2019, §2.2).

    Gradient flow: ``df/dt = −η Θ(X, X) ∇_f L(f(X))`` on the training set, and at test points
    ``df(x)/dt = −η Θ(x, X) ∇_f L(f(X))`` (integrated jointly, one state). With ``momentum`` μ, the continuous
    heavy-ball ODE in neural-tangents' convention: in the time ``s = √η t``,
    ``d²f/ds² = −Θ ∇_f L(f) − ((1 − μ)/√η) df/ds``, ``df/ds = 0`` at the start - the limit of
    ``v ← μ v − η g, w ← w + v`` for small η, t counting its steps (so η and t are not interchangeable).

    - ``loss='mse'`` without momentum: the closed form of :func:`kernelscope.regression.gradient_flow` (exact; t may
      be ``inf``).
    - otherwise: an ODE integrated with the local error of every output held to ``atol + rtol·|f|``
      (``method``): ``'RKC'``, Runge–Kutta–Chebyshev (:mod:`kernelscope._rkc`), explicit and stable far into the
      stiff regime: the Jacobian ``−η Θ ∇²L`` has real eigenvalues in ``[−ρ, 0]`` (Θ and the convex loss's Hessian
      positive semi-definite), ``ρ ≤ η λ_max(Θ)·max‖∇²L‖`` for the built-in losses (½ for cross-entropy with
      one-hot targets, 1 for mse), estimated by power iteration for callables; a step of size h costs
      ``≈ √(1.54 h ρ)`` evaluations instead of the ``≈ h ρ / 3`` of a classical explicit method; or scipy's
      ``'DOP853'``/``'RK45'`` (explicit, for non-stiff flows and momentum) and ``'Radau'``/``'BDF'`` (implicit,
      with the exact dense Jacobian for the built-in losses: (N+M)·O squared, small problems only). ``'auto'``:
      DOP853, handing over to RKC (no momentum) once its steps are held by stability rather than accuracy
      (``h ρ > 3`` at three checks in a row, ρ estimated at the current outputs): a flow whose curvature stays
      small runs at DOP853's eighth order to the end, a stiff one pays RKC's √(hρ) per step.

    Parameters
    ----------
    k_train : array-like of shape (N, N) - Θ(X, X), applied to every output (Θ ⊗ I); or (N, N, O, O), a kernel
        over outputs as well (``kernelscope.empirical.ntk`` of an O-output model).
    y_train : array-like of shape (N,) or (N, O) - targets (mse, callables), one-hot rows or integer labels (N,)
        (cross-entropy; O = ``f0_train``'s columns, else the kernel's, else ``max(label) + 1``).
    t : float or array-like of shape (T,) - training times ≥ 0, in steps of size ``lr``.
    loss : 'mse', 'cross_entropy', or a callable ``loss(f, y) -> 0-d tensor`` on torch float64 tensors f (N, O)
        and y (as given), differentiated by torch autograd.
    lr : float > 0 - the learning rate η.  momentum : float in [0, 1], or None for plain gradient descent.
    k_test_train : array-like of shape (M, N) or (M, N, O, O) - Θ(x, X), or None (train only).
    f0_train : array-like like the outputs (N[, O]) - f at t = 0 on X (default 0).  f0_test : (M[, O]) likewise.
    method, rtol, atol : the ODE solver and its tolerances (not used by the closed form); ``info['method']`` says
        which solver 'auto' chose.

    Returns
    -------
    Dynamics(train, test, info): ``train`` of shape (N, O) (or (N,) for mse/callable with y (N,)) for scalar t,
    (T, N, O) for an array of times; ``test`` likewise with M, None without ``k_test_train``. NumPy in -> NumPy
    out, a tensor in -> a tensor on its device out.
    """
    kind = ArrayKind.of(k_train, k_test_train, y_train, f0_train, f0_test)
    Theta = as_tensor(k_train, "k_train", ndim=(2, 4), shape_hint="(n_train, n_train) or (N, N, O, O)")
    n, dev = Theta.shape[0], Theta.device
    if Theta.shape[1] != n or (Theta.ndim == 4 and Theta.shape[2] != Theta.shape[3]):
        raise ValidationError("k_train", "a square kernel (N, N) or (N, N, O, O)", f"shape {tuple(Theta.shape)}")
    if not callable(loss):
        check_choice(loss, "loss", LOSSES)
    eta = check_positive(lr, "lr")
    mu = None if momentum is None else check_nonnegative(momentum, "momentum")
    if mu is not None and mu > 1:
        raise ValidationError("momentum", "a number in [0, 1] (or None)", repr(momentum))
    check_choice(method, "method", METHODS)
    if method == "RKC" and mu is not None:
        raise ValidationError("method", "a solver for oscillatory flows with momentum (DOP853, RK45, 'auto'): "
                              "RKC needs a real spectrum", "'RKC' with momentum")
    rtol, atol = check_positive(rtol, "rtol"), check_positive(atol, "atol")

    # targets (N, O)
    integer_labels = False
    if loss == "cross_entropy":
        y_raw = as_tensor(y_train, "y_train", ndim=(1, 2), dtype=None, device=dev)
        integer_labels = y_raw.ndim == 1
    else:
        y_raw = as_tensor(y_train, "y_train", ndim=(1, 2), device=dev)
    if y_raw.shape[0] != n:
        raise ValidationError("y_train", f"{n} rows (as many as k_train)", f"shape {tuple(y_raw.shape)}")
    if integer_labels:
        if y_raw.is_floating_point() and not bool((y_raw == y_raw.round()).all()) or bool((y_raw < 0).any()):
            raise ValidationError("y_train", "integer class labels >= 0 (or one-hot rows (N, O))", "other values")
        labels = y_raw.long()
        if f0_train is not None and np.ndim(f0_train) == 2:
            n_out = int(np.shape(f0_train)[1])
        elif Theta.ndim == 4:
            n_out = Theta.shape[2]
        else:
            n_out = int(labels.max()) + 1
            # the labels alone set the number of outputs: a stray huge label would ask for a huge one-hot matrix
            check_memory(3 * 8.0 * n * n_out, f"y_train's one-hot targets ({n}×{n_out}: labels up to "
                         f"{n_out - 1} mean {n_out} outputs)", "Class labels run from 0 to O − 1: relabel them, "
                         "or fix O with f0_train of shape (N, O) or a kernel over outputs (N, N, O, O).")
        if int(labels.max()) >= n_out:
            raise ValidationError("y_train", f"labels below {n_out} (the number of outputs)",
                                  f"max {int(labels.max())}")
        Y = torch.nn.functional.one_hot(labels, n_out).to(torch.float64)
    else:
        Y = y_raw.to(torch.float64).reshape(n, -1)
    n_out = Y.shape[1]
    if Theta.ndim == 4 and Theta.shape[2] != n_out:
        raise ValidationError("k_train", f"a kernel over {n_out} outputs (as y_train)", f"shape {tuple(Theta.shape)}")
    squeeze = y_raw.ndim == 1 and not integer_labels

    Kx = None
    if k_test_train is not None:
        Kx = as_tensor(k_test_train, "k_test_train", ndim=Theta.ndim, device=dev,
                       shape_hint="(n_test, n_train)" if Theta.ndim == 2 else "(n_test, N, O, O)")
        if Kx.shape[1] != n or Kx.shape[2:] != Theta.shape[2:]:
            want = f"(n_test, {n})" if Theta.ndim == 2 else f"(n_test, {n}, {n_out}, {n_out})"
            raise ValidationError("k_test_train", f"shape {want}", f"shape {tuple(Kx.shape)}")

    def initial(f0: Any, name: str, rows: int) -> torch.Tensor:
        if f0 is None:
            return torch.zeros(rows, n_out, dtype=torch.float64, device=dev)
        f = as_tensor(f0, name, ndim=(1, 2), device=dev)
        if f.shape[0] != rows or f.reshape(rows, -1).shape[1] != n_out:
            raise ValidationError(name, f"shape ({rows}, {n_out})" + (f" or ({rows},)" if n_out == 1 else ""),
                                  f"shape {tuple(f.shape)}")
        return f.reshape(rows, n_out)

    F0 = initial(f0_train, "f0_train", n)  # (N, O)
    F0x = None if Kx is None else initial(f0_test, "f0_test", Kx.shape[0])  # (M, O)
    times = as_tensor(t, "t", ndim=(0, 1), finite=False)
    if bool(torch.isnan(times).any()) or bool((times < 0).any()):
        raise ValidationError("t", "times >= 0", f"{t!r}")
    m = 0 if Kx is None else Kx.shape[0]
    d = (n + m) * n_out  # the outputs integrated together
    implicit = method in ("Radau", "BDF")
    # Radau/BDF: the dense (d, d) Jacobian, its LU factors (Radau: one real, one complex) and torch's (R, O, N, O)
    # blocks; the ODE path also keeps the state at every time (with momentum twice as long)
    if implicit:
        check_memory(6 * 8.0 * d * d, f"method={method!r}'s dense Jacobian ({d}×{d}: (N + M)·O = ({n} + {m})·"
                     f"{n_out} outputs) and its factors", "Use method='auto' or 'RKC' (matrix-free), or fewer points.")
    _check_output_memory(times.numel(), n + m, n_out * (1 if mu is None else 2), "gradient_descent's outputs",
                         extra=(6 * 8.0 * d * d if implicit else 0.0))
    if Theta.ndim == 2:
        _check_symmetric(Theta, "k_train")
        _check_psd(Theta, "k_train")
    else:
        flat = flat_kernel(Theta)
        _check_symmetric(flat, "k_train")
        _check_psd(flat, "k_train")

    def shape(f: torch.Tensor | None) -> Any:  # (T, R, O) -> the caller's shape and kind
        if f is None:
            return None
        if squeeze:
            f = f[..., 0]
        if times.ndim == 0:
            f = f[0]
        return kind.wrap(f)

    if loss == "mse" and mu is None:
        if Theta.ndim == 2:
            flow = gradient_flow(Theta, Kx, Y, times.reshape(-1).to(dev), lr=eta, f0_train=F0, f0_test=F0x)
            tr, te = flow.train, flow.test
        else:  # a kernel over outputs: the same flow on the flattened (N·O) outputs
            flow = gradient_flow(flat_kernel(Theta), None if Kx is None else flat_kernel(Kx), Y.reshape(-1),
                                 times.reshape(-1).to(dev), lr=eta, f0_train=F0.reshape(-1),
                                 f0_test=None if F0x is None else F0x.reshape(-1))
            tr = flow.train.reshape(-1, n, n_out)
            te = None if flow.test is None else flow.test.reshape(-1, Kx.shape[0], n_out)
        return Dynamics(shape(tr), shape(te), {"method": "closed form"})

    if not bool(torch.isfinite(times).all()):
        raise ValidationError("t", "finite times for this loss (only mse without momentum has a closed form)",
                              f"{t!r}")
    grad = loss_gradient(loss, y_raw if callable(loss) else Y)
    if callable(loss):
        g0 = grad(F0)
        if not bool(torch.isfinite(g0).all()):
            raise ValidationError("loss", "a callable whose gradient is finite at the initial outputs f0_train",
                                  "NaN or inf in ∇loss(f0_train, y_train)",
                                  "Check the loss for log(0), 0/0 or NaN constants.")
    hess = (lambda F: loss_hessian(F, Y, loss)) if not callable(loss) and method in ("Radau", "BDF") and mu is None \
        else None
    radius = None  # (s, z) -> the Jacobian's spectral radius at a state, in the time s = ηt (None: callables)
    if mu is None and method in ("auto", "RKC") and loss == "cross_entropy":
        bound = lambda_max(Theta) * 0.5 * float(Y.sum(1).abs().max()) * 1.01  # 1 % margin over λ_max
        radius = _ce_radius(Theta, lambda F: loss_hessian(F, Y, loss), n, n_out, bound)
    F, Fx, info = _integrate(Theta, Kx, F0, F0x, grad, hess, times.reshape(-1).cpu().numpy(), eta, mu, method,
                             rtol, atol, radius)
    return Dynamics(shape(F), shape(Fx), info)


def _ce_radius(Theta: torch.Tensor, hess: Callable, n: int, n_out: int, bound: float
               ) -> Callable[[float, torch.Tensor], float]:
    """``(s, z) -> ρ``: the spectral radius of the cross-entropy flow's Jacobian ``Θ ∇²L(f)`` at the current
    outputs, by power iteration with exact products (warm-started from the last direction), times 1.2, capped by
    the global ``bound``. The softmax Hessians ``diag(p) − ppᵀ`` fade as examples become confident, so late in
    training ρ is far below ``λ_max(Θ)/2`` and RKC needs far fewer stages per step."""
    state: dict[str, Any] = {"products": 0}  # the last direction; the Θ products spent (as many as evaluations)

    def radius(_s: float, z: torch.Tensor) -> float:
        H = hess(z[:n * n_out].reshape(n, n_out))  # (N, O, O)
        v = state.get("v")
        if v is None:  # the same direction for every example, not along the softmax's null vector (1, …, 1)
            v = 0.1 * torch.arange(n_out, dtype=z.dtype, device=z.device).expand(n, n_out)
        r, state["v"], k = radius_estimate(lambda u: _apply(Theta, torch.einsum("nab,nb->na", H, u)), v)
        state["products"] += k
        return min(bound, r) if r > 0 else bound

    radius.state = state  # type: ignore[attr-defined]
    return radius


def _flow_radius(velocity: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[float, torch.Tensor], float]:
    """``(s, z) -> ρ`` for any flow ``dz/ds = velocity(z)``: power iteration on finite differences
    (:func:`kernelscope._rkc.power_radius`), warm-started from the last direction; ``.state['products']`` counts
    the evaluations it spent."""
    state: dict[str, Any] = {"v": None, "products": 0}

    def radius(_s: float, z: torch.Tensor) -> float:
        r, state["v"], k = power_radius(lambda _t, zz: velocity(zz), 0.0, z, velocity(z), state["v"])
        state["products"] += k + 1
        return r

    radius.state = state  # type: ignore[attr-defined]
    return radius


class _NotFinite(ArithmeticError):
    """The flow's velocity stopped being finite (raised inside the ODE solvers, reported by :func:`_integrate`)."""


def _integrate(Theta, Kx, F0, F0x, grad, hess, times: np.ndarray, eta: float, mu: float | None, method: str,
               rtol: float, atol: float, radius: Callable | None = None):
    """Integrate the joint state ``z = [f(X), f(x)]`` (and, with momentum, ``[df/ds]``) to the times ``times``.

    Without momentum the ODE runs in ``s = η t`` (``dz/ds = −[Θ; Θ(x, X)] g``), with momentum in ``s = √η t``.
    ``radius``: ``(s, z) -> ρ``, the spectral radius of ``dz/ds``'s Jacobian at a state, for RKC and for 'auto''s
    checks (None: power iteration on finite differences of the flow, where they need it).
    Returns (T, N, O), (T, M, O) or None, info. A flow whose outputs or velocity stop being finite (a kernel that
    is not PSD, a loss unbounded below or NaN somewhere) is a ``FloatingPointError`` naming the time.
    """
    try:
        return _integrate_unchecked(Theta, Kx, F0, F0x, grad, hess, times, eta, mu, method, rtol, atol, radius)
    except _NotFinite as exc:
        s = float(exc.args[0])
        scale = math.sqrt(eta) if mu is not None else eta
        raise FloatingPointError(
            f"gradient_descent: the outputs or their velocity stopped being finite at t ≈ {s / scale:.4g}: the "
            "flow blew up (is k_train positive semi-definite? is the loss bounded below and finite there?)") from None


def _integrate_unchecked(Theta, Kx, F0, F0x, grad, hess, times: np.ndarray, eta: float, mu: float | None,
                         method: str, rtol: float, atol: float, radius: Callable | None = None):
    from scipy import integrate


    dev, n, n_out = F0.device, F0.shape[0], F0.shape[1]
    m = 0 if F0x is None else F0x.shape[0]
    d = (n + m) * n_out  # size of the output part of the state
    scale = math.sqrt(eta) if mu is not None else eta
    damping = None if mu is None else (1.0 - mu) / math.sqrt(eta)  # γ of the heavy-ball ODE

    clock = {"s": 0.0}  # the time of the last evaluation, for the message when the flow blows up

    def velocity(z_out: torch.Tensor) -> torch.Tensor:  # −[Θ; Θ(x, X)] ∇L(f(X)), flattened (d,)
        g = grad(z_out[:n * n_out].reshape(n, n_out))  # (N, O)
        parts = [_apply(Theta, g)] + ([] if Kx is None else [_apply(Kx, g)])
        v = -torch.cat(parts).reshape(-1)
        if not bool(torch.isfinite(v).all()):
            raise _NotFinite(clock["s"])
        return v

    if radius is None and mu is None and method in ("auto", "RKC"):  # a callable loss
        radius = _flow_radius(velocity)

    def rhs(_s: float, z: np.ndarray) -> np.ndarray:
        clock["s"] = _s
        zt = torch.from_numpy(z).to(dev)
        if mu is None:
            return velocity(zt).cpu().numpy()
        f, q = zt[:d], zt[d:]
        return torch.cat([q, velocity(f) - damping * q]).cpu().numpy()

    jac = None
    if hess is not None:
        zeros = torch.zeros(d, m * n_out, dtype=torch.float64, device=dev)

        def jac(_s: float, z: np.ndarray) -> np.ndarray:
            H = hess(torch.from_numpy(z[:n * n_out]).to(dev).reshape(n, n_out))  # (N, O, O)
            blocks = [_jacobian_block(Theta, H, n_out)] + ([] if Kx is None else [_jacobian_block(Kx, H, n_out)])
            return torch.cat([-torch.cat(blocks), zeros], 1).cpu().numpy()  # (d, d): test outputs feed nothing

    parts0 = [F0.reshape(-1)] + ([] if F0x is None else [F0x.reshape(-1)])
    z0 = torch.cat(parts0)
    if mu is not None:
        z0 = torch.cat([z0, torch.zeros_like(z0)])
    z0 = z0.cpu().numpy()
    s_eval = times * scale
    order = np.argsort(s_eval, kind="stable")
    out = np.empty((len(times), z0.size))
    pending = list(order)
    while pending and s_eval[pending[0]] == 0.0:
        out[pending.pop(0)] = z0
    info: dict[str, Any] = {"method": method, "steps": 0, "nfev": 0, "njev": 0, "rtol": rtol, "atol": atol}
    z_now, s_now = z0, 0.0
    if pending and method != "RKC":
        # scipy's solver, stepped here; under 'auto' (no momentum) it hands over to RKC once it is stiffness-bound:
        # its steps held near its stability limit (h ρ ≈ 6 for DOP853) for several checks in a row
        scipy_method = "DOP853" if method == "auto" else method
        estimate = radius if method == "auto" and mu is None else None
        kw = {"jac": jac} if jac is not None else {}
        solver = getattr(integrate, scipy_method)(rhs, 0.0, z0, float(s_eval.max()), rtol=rtol, atol=atol, **kw)
        stiff_checks = 0
        while pending:
            message = solver.step()
            if solver.status == "failed":
                raise RuntimeError(f"the ODE solver {scipy_method} failed at t = {solver.t / scale:.4g}: {message} "
                                   f"The outputs had reached {float(np.abs(solver.y).max()):.3g}: a flow that blows "
                                   "up in finite time (a loss unbounded below, a kernel that is not PSD) ends so.")
            info["steps"] += 1
            dense = None
            while pending and s_eval[pending[0]] <= solver.t:
                if s_eval[pending[0]] == solver.t:
                    out[pending.pop(0)] = solver.y
                else:
                    dense = dense or solver.dense_output()
                    i = pending.pop(0)
                    out[i] = dense(s_eval[i])
            if estimate is not None and pending and info["steps"] % SWITCH_EVERY == 0:
                h_rho = solver.step_size * estimate(solver.t, torch.from_numpy(solver.y).to(dev))
                stiff_checks = stiff_checks + 1 if h_rho > SWITCH_AT else 0
                if stiff_checks >= 3:
                    z_now, s_now = solver.y, solver.t
                    break
        info["method"] = scipy_method
        info["nfev"] += solver.nfev
        info["njev"] = getattr(solver, "njev", 0)
    if pending:  # RKC: asked for, or taking over from 'auto'
        def rkc_rhs(_s: float, z: torch.Tensor) -> torch.Tensor:
            clock["s"] = s_now + _s
            return velocity(z)

        zs, rk = rkc(rkc_rhs, torch.from_numpy(np.ascontiguousarray(z_now)).to(dev),
                     s_eval[pending] - s_now, rtol=rtol, atol=atol, spectral_radius=radius)
        out[pending] = zs.cpu().numpy()
        info["method"] = "RKC" if s_now == 0.0 else f"{info['method']} -> RKC at t = {s_now / scale:.4g}"
        info["steps"] += rk["steps"]
        info["nfev"] += rk["nfev"]
        info.update(rejected=rk["rejected"], max_stages=rk["max_stages"], radius_estimates=rk["radius_estimates"],
                    spectral_radius=rk["spectral_radius"] * scale)  # per unit of t
    if radius is not None:
        info["nfev"] += radius.state["products"]  # type: ignore[attr-defined]
    Z = torch.from_numpy(out[:, :d]).to(dev)
    F = Z[:, :n * n_out].reshape(-1, n, n_out)
    Fx = None if F0x is None else Z[:, n * n_out:].reshape(-1, m, n_out)
    return F, Fx, info


# ------------------------------------------------------------------------------------------------------------
# ensemble
# ------------------------------------------------------------------------------------------------------------
def ensemble(net: Any, X_train: Any, y_train: Any, X_test: Any, t: Any, *, kind: str = "ntk", ridge: float = 0.0,
             cov: bool = True, lr: float = 1.0, discrete: bool = False) -> Gaussian:
    """The distribution over test points of infinitely many infinitely wide networks, each trained by gradient flow
    on ``½ Σ ‖f(x_i) − y_i‖²`` from its own random initialisation (Lee et al. 2019, eqs. 15-16).

    With the NNGP K (the covariance of f₀) and the NTK Θ of ``net``, and ``A(t) = Θ(x, X) Θ⁻¹ (I − e^{−ηΘt})``
    (from :func:`kernelscope.regression.gradient_flow`, the same eigendecomposition), the test outputs are Gaussian:

    - mean ``μ(t) = A(t) y``
    - covariance ``Σ(t) = K(x, x') + A K(X, X) Aᵀ − A K(X, x') − K(x, X) Aᵀ``

    ``kind='nngp'`` trains only the readout layer: Θ is replaced by K, and ``Σ(t) = K(x, x') − K(x, X) K⁻¹
    (I − e^{−2ηKt}) K(X, x')``. At t = 0 this is the prior (mean 0, covariance K(x, x')); at t = ∞ it is kernel
    regression with the NTK (mean) and, for ``'nngp'``, the Gaussian-process posterior with kernel K. ``ridge`` λ:
    Θ + λI (K + λI for 'nngp') on the training set, as in :func:`gradient_flow`, in neural-tangents' convention
    (``gradient_descent_mse_ensemble`` with ``diag_reg=λ, diag_reg_absolute_scale=True``): for 'nngp'
    ``Σ(t) = K(x, x') − K(x, X)(K + λI)⁻¹(I − e^{−2η(K+λI)t})K(X, x')``, at t = ∞ the Gaussian-process posterior
    with noise variance λ (the middle K of the general formula is K + λI: the readout is fitted to targets seen
    through that noise); for 'ntk' the general formula above with Θ + λI in A(t) and the prior K in the middle.
    ``discrete=True``: t gradient-descent steps of size ``lr`` instead of the flow. neural-tangents' learning rate
    is ours times the number of targets (its loss is the mean over them).

    Parameters
    ----------
    net : a ``kernelscope.nets`` network (anything whose ``.kernel(x1, x2)`` returns ``.nngp`` and ``.ntk``).
    X_train : (N, ...) - N inputs of any shape the network takes ((N, d) for dense networks, (N, H, W, C) for
        convolutional ones). y_train : (N,) or (N, O). X_test : (M, ...) like X_train. t : float or (T,) (``inf``
        allowed).
    kind : 'ntk' (every layer trained) or 'nngp' (only the readout).  cov : the full (M, M) covariance, or only
        the variances (M,).  lr : η.

    Returns
    -------
    Gaussian(mean, covariance): mean (M,)/(M, O) for scalar t, (T, M[, O]) for an array; covariance (M, M) or
    (M,) (the same for every output), with a leading T for an array of times. NumPy in -> NumPy out.
    """
    if not callable(getattr(net, "kernel", None)):
        raise ValidationError("net", "a kernelscope.nets network (with .kernel(x1, x2))", type(net).__name__)
    check_choice(kind, "kind", ("ntk", "nngp"))
    lam = check_nonnegative(ridge, "ridge")
    cov = bool(cov)
    out_kind = ArrayKind.of(X_train, y_train, X_test, t)
    X = as_tensor(X_train, "X_train", ndim=(2, 3, 4), shape_hint="(N, d) or (N, H, W, C)")
    Xs = as_tensor(X_test, "X_test", ndim=X.ndim, shape_hint=f"like X_train: (M, {', '.join(map(str, X.shape[1:]))})")
    if Xs.shape[1:] != X.shape[1:]:
        raise ValidationError("X_test", f"inputs of shape {tuple(X.shape[1:])} (as X_train)",
                              f"shape {tuple(Xs.shape[1:])}")
    y = as_tensor(y_train, "y_train", ndim=(1, 2))
    if y.shape[0] != X.shape[0]:
        raise ValidationError("y_train", f"{X.shape[0]} rows (as X_train)", f"shape {tuple(y.shape)}")
    times = as_tensor(t, "t", ndim=(0, 1), finite=False).reshape(-1)
    n, m, n_t = X.shape[0], Xs.shape[0], times.numel()
    # A(t), A K and a product's temporary, (T, M, N) each; with cov the (T, M, M) covariance and two more like it
    need = 8.0 * n_t * m * (4 * n + (3 * m if cov else 2))
    check_memory(need, f"the ensemble's {n_t}×{m}×{n} gains A(t)" + (f" and {n_t}×{m}×{m} covariances" if cov else ""),
                 "Ask for fewer times t or fewer test points at once" + ("" if not cov else ", or cov=False for "
                 "the variances only") + ".")
    k_tr, k_xt = net.kernel(X), net.kernel(Xs, X)
    K, Kx = k_tr.nngp, k_xt.nngp  # (N, N), (M, N)
    Th, Thx = (k_tr.ntk, k_xt.ntk) if kind == "ntk" else (K, Kx)
    eye = torch.eye(n, dtype=torch.float64)
    # A(t) = Θ(x, X) Θ⁻¹(I − e^{−ηΘt}): the test output of the flow with the identity as targets; (T, M, N)
    A = gradient_flow(Th, Thx, eye, times, lr=lr, discrete=discrete, ridge=lam).test
    mean = A @ y.reshape(n, -1)  # (T, M, O)
    if y.ndim == 1:
        mean = mean[..., 0]
    # the covariance of f₀ on the training set that A carries to the test points: K, or for 'nngp' with ridge the
    # K + λI of neural-tangents' convention (Σ(∞) is then the GP posterior with noise variance λ)
    K_mid = K + lam * torch.eye(n, dtype=K.dtype, device=K.device) if kind == "nngp" and lam > 0 else K
    AK = A @ K_mid  # (T, M, N)
    if cov:
        cross = A @ Kx.T  # (T, M, M): A K(X, x')
        Sigma = net.kernel(Xs).nngp + AK @ A.transpose(1, 2) - cross - cross.transpose(1, 2)
    else:
        Sigma = net.kernel(Xs, diag=True).nngp + (AK * A).sum(2) - 2 * (A * Kx).sum(2)  # (T, M)
    if np.ndim(t) == 0:
        mean, Sigma = mean[0], Sigma[0]
    return Gaussian(out_kind.wrap(mean), out_kind.wrap(Sigma))
