"""Optimisation as mathematics: gradients, Hessians, their spectra, and gradient-descent iterations.

Everything here acts on a scalar function of one flat vector, ``f: R^P -> R`` (a torch callable):

- a 2-D surface ``f(x, y)`` written with torch operations, or
- the loss of any ``torch.nn.Module`` as a function of its flattened trainable weights θ (:func:`model_loss`),

so that one set of functions serves the deck's pictures and real networks alike (the applied-math deck 002,
THEORY.md §1 "Hessian eigenvalues classify stationary points", "batch vs mini-batch vs stochastic", "momentum").

Derivatives come from ``torch.func`` (no hand-written backprop):

``gradient``     ``∇f(x)`` by reverse mode (``torch.func.grad``).
``hessian``      ``∇²f(x)`` (P, P), forward-over-reverse (``torch.func.hessian``); memory P².
``hvp``          ``v ↦ ∇²f(x) v`` without the matrix: the JVP of the gradient, ``jvp(grad f, (x,), (v,))``
                 (Pearlmutter 1994, "Fast exact multiplication by the Hessian"); cost ≈ two gradients.
``hessian_eigs`` the top of the spectrum from HVPs only: Lanczos (``scipy.sparse.linalg.eigsh`` on a
                 ``LinearOperator``) or power iteration (:func:`kernelscope.linsys.power_iteration`).
``stationary_point`` / ``classify``  Newton's iteration ``x ← x − H⁻¹∇f`` to a critical point, and its kind from
                 the signs of the Hessian's eigenvalues: all > 0 a minimum, all < 0 a maximum, both a saddle.

Iterations (the *mathematical* iterations; a training framework for models lives in :mod:`kernelscope.dynamics`):

``trajectory``   gradient descent with heavy-ball momentum (Polyak 1964) on f,
                 ``v ← μ v − η ∇f(x)``, ``x ← x + v`` (μ = 0: plain gradient descent). On a quadratic with
                 curvature λ plain descent multiplies the error by ``1 − ηλ`` per step: it converges iff
                 ``η < 2/λ_max``.

Training a model with mini-batches (per sample, mini-batch, full batch) is :func:`kernelscope.dynamics.train`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import grad, jvp

from ._arrays import (
    ArrayKind,
    ValidationError,
    as_numpy,
    as_tensor,
    check_choice,
    check_int,
    check_memory,
    check_nonnegative,
    check_positive,
    warn,
)
from ._model import (
    LOSSES,
    REDUCTIONS,
    Weights,
    lanczos,
    loss_value,
    output_dim,
    outputs,
    targets,
    trainable_parameters,
    value_and_grad,
)

__all__ = ["LOSSES", "model_loss", "gradient", "hessian", "hvp", "hessian_operator", "HessianEigs",
           "hessian_eigs", "classify", "StationaryPoint", "stationary_point", "Trajectory", "trajectory",
           "unflatten"]

Function = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------------------------
# The loss of a torch model as a function of its flat weights
# ---------------------------------------------------------------------------------------------------------------

def unflatten(theta: torch.Tensor, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Split a flat vector (P,) into named tensors of the given shapes (in order): the inverse of concatenating
    ``p.reshape(-1)`` over ``shapes`` (:meth:`kernelscope._model.Weights.unflatten`)."""
    return Weights(tuple(shapes), tuple(shapes.values())).unflatten(theta)


class _ModelLoss:
    """``L(θ, idx=None)``: the loss of ``model`` with flat weights θ on the examples ``idx`` (all when None)."""

    def __init__(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss: str, reduction: str,
                 weights: Weights, n_out: int):
        self.model, self.X, self.y, self.loss, self.reduction = model, X, y, loss, reduction
        self.weights, self.n_out, self.n = weights, n_out, X.shape[0]

    def outputs(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Model outputs at weights θ: (n,) for one output, else (n, O)."""
        out = outputs(self.model, X, self.weights.unflatten(theta))  # (n, O)
        return out[:, 0] if self.n_out == 1 else out

    def __call__(self, theta: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        X, y = (self.X, self.y) if idx is None else (self.X[idx], self.y[idx])
        return loss_value(outputs(self.model, X, self.weights.unflatten(theta)), y, self.loss, self.reduction)


def model_loss(model: nn.Module, X: Any, y: Any, loss: str = "mse", *, reduction: str = "sum"
               ) -> tuple[_ModelLoss, torch.Tensor]:
    """The training loss of a torch model as a function of its flattened trainable weights.

    ``L(θ) = Σ_i ℓ(f(x_i; θ), y_i)`` (``reduction='sum'``, the convention of THEORY.md §5 and of
    :func:`kernelscope.dynamics.path_kernel`) or its mean (``'mean'``), with ``ℓ = ½‖f − y‖²`` (``'mse'``) or
    the cross-entropy of the scores ``f`` against integer labels (``'cross_entropy'``).

    Parameters
    ----------
    model : any ``nn.Module`` mapping (N, ...) to (N,) or (N, O); its trainable parameters (``requires_grad``) are
        the variables, in ``named_parameters`` order (the column order of :func:`kernelscope.empirical.jacobian`).
    X : (N, ...) inputs ; y : (N,) or (N, O) targets for 'mse', (N,) integer labels for 'cross_entropy'.

    Returns
    -------
    ``(L, θ₀)``: ``L(θ)`` a scalar tensor (``L(θ, idx)`` the loss of the examples ``idx`` alone, with the same
    reduction), and θ₀ (P,) the model's current weights. The model itself is never modified.
    """
    loss = check_choice(loss, "loss", LOSSES)
    reduction = check_choice(reduction, "reduction", REDUCTIONS)
    params = trainable_parameters(model)
    first = next(iter(params.values()))
    Xt = as_tensor(X, "X", dtype=first.dtype, device=first.device)
    weights = Weights.of(model)
    n_out = output_dim(model, Xt, "X")
    yt = targets(y, loss, Xt.shape[0], n_out, dtype=first.dtype, device=first.device)
    return _ModelLoss(model, Xt, yt, loss, reduction, weights, n_out), weights.read(model)


# ---------------------------------------------------------------------------------------------------------------
# Derivatives of f: R^P -> R
# ---------------------------------------------------------------------------------------------------------------

def _point(x: Any, name: str = "x", f: Any = None) -> tuple[torch.Tensor, ArrayKind]:
    """The point x (P,) as a tensor (its kind, to give results back as such); with ``f``, also check that f is a
    function of it returning a scalar tensor (evaluated once)."""
    kind = ArrayKind.of(x)
    t = as_tensor(x, name, dtype=x.dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() \
        else as_tensor(x, name)
    if t.ndim != 1:
        raise ValidationError(name, "a flat vector of shape (P,)", f"shape {tuple(t.shape)}",
                              "Flatten the point first (model weights: use model_loss, which returns θ₀ flat).")
    if f is not None:
        _check_function(f, t)
    return t, kind


def _check_function(f: Any, t: torch.Tensor) -> None:
    """f must map a tensor like t (P,) to a scalar tensor: checked by one call, so that a wrong f gets one line
    naming it rather than an error from inside torch.func."""
    if not callable(f):
        raise ValidationError("f", "a callable f(x) of a flat tensor x (P,) returning a scalar tensor",
                              type(f).__name__)
    with torch.no_grad():
        out = f(t)
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValidationError("f", "a function returning a scalar torch tensor (a 0-d tensor)", got,
                              "Sum or reduce the output; write f with torch operations so that it can be "
                              "differentiated.")


def gradient(f: Function, x: Any) -> Any:
    """``∇f(x)`` of shape (P,) (reverse mode). NumPy in -> NumPy out; tensor in -> tensor out."""
    t, kind = _point(x, f=f)
    return kind.wrap(grad(f)(t).detach())


def hessian(f: Function, x: Any) -> Any:
    """``∇²f(x)`` of shape (P, P), ``H_jk = ∂²f/∂x_j∂x_k``, by forward-over-reverse differentiation.

    Needs P² numbers: refused up front when they would not fit the memory budget (use :func:`hvp` or
    :func:`hessian_eigs`, which never form the matrix).
    """
    t, kind = _point(x, f=f)
    P = t.numel()
    check_memory(P * P * t.element_size(), f"the {P}×{P} Hessian",
                 "Use optim.hvp (Hessian-vector products) or optim.hessian_eigs for its top eigenvalues.")
    H = torch.func.hessian(f)(t).detach()
    return kind.wrap(0.5 * (H + H.T))  # symmetric up to rounding; symmetrise so eigvalsh sees the same matrix


def hvp(f: Function, x: Any) -> Callable[[Any], Any]:
    """The map ``v ↦ ∇²f(x) v`` (P,) -> (P,), as the JVP of the gradient (no P×P matrix).

    The returned callable takes and returns the kind it is given (NumPy or tensor), so it plugs into
    :func:`kernelscope.linsys.power_iteration` and SciPy's ``LinearOperator`` as is.
    """
    t, _ = _point(x, f=f)
    g = grad(f)

    def matvec(v: Any) -> Any:
        vk = ArrayKind.of(v)
        vt = torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v, dtype=t.dtype,
                             device=t.device).reshape(t.shape)
        return vk.wrap(jvp(g, (t,), (vt,))[1].detach())

    return matvec


def hessian_operator(f: Function, x: Any):
    """``scipy.sparse.linalg.LinearOperator`` (P, P), float64, whose matvec is :func:`hvp`; counts its calls in
    ``.calls``."""
    import scipy.sparse.linalg as spla

    t, _ = _point(x, f=f)
    P = t.numel()
    mv = hvp(f, t)

    class _Op(spla.LinearOperator):
        calls = 0

        def _matvec(self, v):
            _Op.calls += 1
            return np.asarray(mv(np.ascontiguousarray(v, dtype=np.float64).reshape(P)), dtype=np.float64)

        def _rmatvec(self, v):  # the Hessian is symmetric
            return self._matvec(v)

    return _Op(dtype=np.float64, shape=(P, P))


@dataclass
class HessianEigs:
    """Top eigenpairs of a Hessian from :func:`hessian_eigs`: ``eigenvalues`` (k,) in decreasing order,
    ``eigenvectors`` (P, k) orthonormal columns, ``n_hvp`` Hessian-vector products used, ``method``."""

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    n_hvp: int
    method: str


def hessian_eigs(f: Function, x: Any, k: int = 1, *, method: str = "lanczos", which: str = "LA",
                 tol: float = 1e-10, seed: int = 0, max_iter: int = 1000) -> HessianEigs:
    """The top of the Hessian's spectrum at x from Hessian-vector products only.

    Parameters
    ----------
    k : how many eigenpairs (``method='power'``: 1).
    method : 'lanczos' - implicitly restarted Lanczos (ARPACK through ``scipy.sparse.linalg.eigsh``) on the
        :func:`hessian_operator`; 'power' - :func:`kernelscope.linsys.power_iteration` ``v ← Hv/‖Hv‖``, which
        finds the eigenvalue of largest *magnitude* (the top one when the Hessian is positive semi-definite,
        e.g. near a minimum), at rate |λ₂/λ₁|.
    which : for Lanczos, 'LA' largest algebraic (the sharpness λ_max), 'SA' smallest algebraic (negative
        curvature), 'LM' largest magnitude.
    tol, max_iter : stopping rules; seed : the start vector.

    Returns :class:`HessianEigs` (NumPy, float64), eigenvalues sorted in decreasing order.
    """
    from . import linsys

    method = check_choice(method, "method", ("lanczos", "power"))
    which = check_choice(which, "which", ("LA", "SA", "LM"))
    k = check_int(k, "k", minimum=1)
    tol = check_positive(tol, "tol")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    t, _ = _point(x, f=f)
    P = t.numel()
    if k > P:
        raise ValidationError("k", f"at most {P} eigenpairs (the Hessian is {P}×{P})", repr(k))
    v0 = np.random.default_rng(check_int(seed, "seed", minimum=0)).standard_normal(P)
    if method == "power":
        if k != 1:
            raise ValidationError("k", "1 with method='power'", repr(k), "Use method='lanczos' for several.")
        op = hessian_operator(f, t)
        res = linsys.power_iteration(op.matvec, n=P, v0=v0, tol=tol, max_iter=max_iter)
        return HessianEigs(np.array([res.eigenvalue]), np.asarray(res.eigenvector)[:, None], op.calls, "power")
    if k >= P - 1:  # ARPACK needs k < P - 1: form the (small) matrix instead
        H = np.asarray(_to_np(hessian(f, t)))
        w, V = np.linalg.eigh(H)
        order = {"LA": np.argsort(-w), "SA": np.argsort(w), "LM": np.argsort(-np.abs(w))}[which][:k]
        sel = order[np.argsort(-w[order])]
        return HessianEigs(w[sel], V[:, sel], 0, "dense")
    op = hessian_operator(f, t)
    # ARPACK counts restarts in a 32-bit integer: max_iter·P overflows it for models of millions of weights
    w, V = lanczos(op.matvec, P, k, which=which, tol=tol, v0=v0, max_iter=min(max_iter * P, 2**31 - 1))
    return HessianEigs(w, V, op.calls, "lanczos")


def _to_np(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def classify(eigenvalues: Any, tol: float = 1e-8) -> str:
    """Kind of a stationary point from its Hessian's eigenvalues (the deck's rule, second-derivative test):
    'minimum' (all > tol·scale), 'maximum' (all < −tol·scale), 'saddle' (both signs), else 'degenerate'
    (a zero eigenvalue: the second derivatives do not decide). ``scale = max |λ|``."""
    w = as_numpy(_to_np(eigenvalues), "eigenvalues", min_rows=0).ravel()
    if w.size == 0:
        raise ValidationError("eigenvalues", "at least one eigenvalue", "none")
    cut = check_nonnegative(tol, "tol") * max(float(np.abs(w).max()), np.finfo(np.float64).tiny)
    return _kind(w, np.abs(w) <= cut)


def _kind(w: np.ndarray, zero: np.ndarray) -> str:
    """The second-derivative test on eigenvalues ``w`` of which those marked ``zero`` do not count as non-zero."""
    pos, neg = bool((~zero & (w > 0)).any()), bool((~zero & (w < 0)).any())
    if pos and neg:
        return "saddle"
    if not zero.any():
        return "minimum" if pos else "maximum"
    return "degenerate"


def _unresolved(f: Function, x: torch.Tensor, w: np.ndarray, V: np.ndarray, radius: float) -> np.ndarray:
    """Which eigenvalues of ∇²f(x) are zero as far as the test can tell, x being the critical point only to within
    ``radius``: those whose curvature ``vᵀ∇²f(x ± radius·v)v`` along their eigenvector v changes sign, or changes by
    as much as the eigenvalue itself, across that ball (a degenerate point, like 0 for x³ or x⁴, which Newton
    approaches only linearly, so that it stops at a point whose small Hessian still has a clear sign)."""
    g = grad(f)
    out = np.zeros(w.shape, dtype=bool)
    if radius == 0.0:
        return out
    for i in range(w.size):
        v = torch.as_tensor(V[:, i], dtype=x.dtype, device=x.device)
        c = [float(jvp(g, (x + sgn * radius * v,), (v,))[1] @ v) for sgn in (1.0, -1.0)]
        out[i] = c[0] * w[i] <= 0 or c[1] * w[i] <= 0 or abs(c[0] - c[1]) >= abs(w[i])
    return out


@dataclass
class StationaryPoint:
    """A critical point found by :func:`stationary_point`: ``x`` (P,), ``value`` f(x), ``gradient_norm``,
    ``hessian`` (P, P), ``eigenvalues`` (P,) ascending, ``kind`` (see :func:`classify`), Newton ``iterations``."""

    x: np.ndarray
    value: float
    gradient_norm: float
    hessian: np.ndarray
    eigenvalues: np.ndarray
    kind: str
    iterations: int
    converged: bool


def stationary_point(f: Function, x0: Any, *, tol: float = 1e-10, max_iter: int = 50) -> StationaryPoint:
    """Newton's iteration ``x ← x − H(x)⁺ ∇f(x)`` from x0 to a nearby critical point (of any kind: Newton is
    attracted by minima, maxima and saddles alike), then its Hessian's eigenvalues and :func:`classify`.

    Stops when ``‖∇f‖ ≤ tol · max(1, |f|)``. For small P (the matrix is formed). NumPy out.

    The kind is the second-derivative test, with an eigenvalue counted as zero when it is below ``1e-8 · max|λ|``
    or when it is not resolved: x is the critical point only to within the distance Newton would still travel,
    ``r = ‖H⁺∇f‖ / (1 − q)`` (q the ratio of the last two steps: about ½ for x³, where Newton converges linearly,
    and near 0 at a non-degenerate point, where it converges quadratically), and an eigenvalue whose curvature
    changes sign or by as much as itself within r says nothing (x³ at 0 is 'degenerate', not a minimum).
    """
    x, _ = _point(x0, "x0", f=f)
    x = x.to(torch.float64)
    tol = check_positive(tol, "tol")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    P = x.numel()
    check_memory(3 * 8.0 * P * P, f"stationary_point's {P}×{P} Hessian and its pseudoinverse",
                 "Newton's method forms the Hessian: for many variables use hessian_eigs (Hessian-vector products) "
                 "or trajectory (gradient descent).")
    converged, it = False, 0
    steps: list[float] = []  # ‖x_{k+1} − x_k‖
    for it in range(max_iter + 1):
        val, g = value_and_grad(f, x)
        if not (math.isfinite(float(val)) and bool(torch.isfinite(g).all())):
            raise ValidationError("f", "a function whose value and gradient are finite along Newton's iterates",
                                  f"f = {float(val):.3g} at iteration {it}", "Start elsewhere (x0), or check f.")
        if float(g.norm()) <= tol * max(1.0, abs(float(val))):
            converged = True
            break
        if it == max_iter:
            break
        H = torch.autograd.functional.hessian(f, x)  # P is small here; 5x less overhead than torch.func (P = 2)
        step = torch.linalg.pinv(H) @ g  # pinv: a singular Hessian (degenerate point) still gives a step
        steps.append(float(step.norm()))
        x = x - step
    if not converged:
        warn(f"stationary_point: Newton did not converge in {max_iter} iterations (‖∇f‖ = {float(g.norm()):.3e}); "
             "start closer to the critical point.")
    H = np.asarray(_to_np(hessian(f, x)))
    w, V = np.linalg.eigh(H)
    remaining = float(np.linalg.norm(np.linalg.pinv(H) @ _to_np(g)))  # the next Newton step
    q = min(steps[-1] / steps[-2], 0.9) if len(steps) >= 2 and steps[-2] > 0 else 0.0
    cut = 1e-8 * max(float(np.abs(w).max()), np.finfo(np.float64).tiny)
    zero = (np.abs(w) <= cut) | _unresolved(f, x, w, V, remaining / (1.0 - q))
    return StationaryPoint(x=_to_np(x).copy(), value=float(val), gradient_norm=float(g.norm()), hessian=H,
                           eigenvalues=w, kind=_kind(w, zero), iterations=it, converged=converged)


# ---------------------------------------------------------------------------------------------------------------
# Gradient descent with momentum: full batch and mini-batch
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class Trajectory:
    """What :func:`trajectory` returns (NumPy).

    points : (T + 1, P) the iterates x₀ ... x_T (only when ``keep_points``; else just (1, P) with x_T)
    values : (T + 1,) f at each iterate ; grad_norms : (T + 1,) ‖∇f‖ at each iterate
    x : (P,) the last iterate ; lr, momentum : the step size η and the momentum μ
    diverged_at : first step whose value was NaN/inf or above ``blowup`` (the run stopped there), else None
    """

    points: np.ndarray
    values: np.ndarray
    grad_norms: np.ndarray
    x: np.ndarray
    lr: float
    momentum: float
    diverged_at: int | None = None

    @property
    def steps(self) -> int:
        return len(self.values) - 1


def _check_step(lr: Any, momentum: Any) -> tuple[float, float]:
    lr = check_positive(lr, "lr")
    momentum = check_nonnegative(momentum, "momentum")
    if momentum >= 1:
        raise ValidationError("momentum", "a number in [0, 1)", repr(momentum),
                              "μ ≥ 1 never damps the velocity: the iteration cannot settle.")
    return lr, momentum


def trajectory(f: Function, x0: Any, *, lr: float, momentum: float = 0.0, steps: int = 100,
               keep_points: bool = True, blowup: float = 1e12) -> Trajectory:
    """Gradient descent with heavy-ball momentum on f from x0 (Polyak 1964)::

        v₀ = 0,   v_{t+1} = μ v_t − η ∇f(x_t),   x_{t+1} = x_t + v_{t+1}

    (μ = 0: plain gradient descent ``x ← x − η∇f(x)``). The same iterates as ``torch.optim.SGD(lr=η,
    momentum=μ)``. Momentum keeps the velocity of the descent, so it can carry the iterate over a barrier that
    stops plain descent in a local minimum, and it damps the zig-zag across a narrow valley.

    Parameters
    ----------
    f : torch callable (P,) -> scalar ; x0 : start (P,) ; lr : η > 0 ; momentum : μ in [0, 1) ; steps : T.
    keep_points : store every iterate (T + 1, P) (for pictures); False keeps only the last (for models).
    blowup : stop (``diverged_at``, with a warning) once |f| exceeds this (> 0; inf: only NaN/inf stop) or is not
        finite.

    Returns :class:`Trajectory` (NumPy).
    """
    lr, momentum = _check_step(lr, momentum)
    steps = check_int(steps, "steps", minimum=0)
    if isinstance(blowup, bool) or not isinstance(blowup, (int, float, np.number)) or not blowup > 0:  # NaN too
        raise ValidationError("blowup", "a positive number (inf: never stop)", repr(blowup))
    blowup = float(blowup)
    x, _ = _point(x0, "x0", f=f)
    if keep_points:  # the iterates (T + 1, P), as a list and then as one array
        check_memory(2 * 8.0 * (steps + 1) * x.numel(), f"trajectory's {steps + 1}×{x.numel()} iterates",
                     "Use keep_points=False (only the last iterate) or fewer steps.")
    x = x.clone()
    v = torch.zeros_like(x)
    points, values, norms = [], [], []
    diverged = None
    for t in range(steps + 1):
        val, g = value_and_grad(f, x)
        fv = float(val)
        values.append(fv)
        norms.append(float(g.norm()))
        if keep_points:
            points.append(_to_np(x).copy())
        if not math.isfinite(fv) or abs(fv) > blowup:
            diverged = t
            warn(f"trajectory: f reached {fv:.3g} at step {t} with lr={lr:.3g}; stopped there. A smaller lr "
                 "(below 2/λ_max of the Hessian) converges.")
            break
        if t == steps:
            break
        v = momentum * v - lr * g
        x = x + v
    last = _to_np(x).copy()
    pts = np.array(points) if keep_points else last[None, :]
    return Trajectory(points=pts, values=np.array(values), grad_norms=np.array(norms), x=last, lr=lr,
                      momentum=momentum, diverged_at=diverged)
