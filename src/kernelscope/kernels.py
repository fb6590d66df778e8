"""Classic kernels, composable kernel objects and explicit feature maps (THEORY.md §2–3).

A kernel is an inner product of features, ``k(x, x') = ⟨φ(x), φ(x')⟩``. This module gives

- the classic kernels as functions ``k(X1, X2=None) -> (N1, N2)`` and as :class:`Kernel` objects that compose
  (``k1 + k2``, ``k1 * k2``, ``2.0 * k``) and know their diagonal (``k.diag(X)``):

  ============  ==========================================  ====================================
  name          k(x, x')                                    defaults (scikit-learn's)
  ============  ==========================================  ====================================
  ``linear``    ``x·x'``
  ``poly``      ``(γ x·x' + c₀)^p``                          ``p = 3, γ = 1/d, c₀ = 1``
  ``rbf``       ``exp(−γ ‖x − x'‖²)``, ``γ = 1/(2ℓ²)``        ``γ = 1/d``
  ``laplace``   ``exp(−γ ‖x − x'‖₁)``                        ``γ = 1/d``
  ``arccos``    ``E[relu(b·x) relu(b·x')]``, b ~ N(0, I)     order 1 (order 0: step function)
  ``erf``       ``E[erf(b·x) erf(b·x')]``,  b ~ N(0, I)
  ============  ==========================================  ====================================

  The parameters follow :func:`sklearn.metrics.pairwise.pairwise_kernels` (``gamma``, ``coef0``, ``degree``;
  ``gamma=None`` means ``1/n_features``), so the matrices can be compared entry by entry.
- the dual activations of §3 as pure functions of a covariance, ``relu_dual``/``relu_dual_derivative``/
  ``erf_dual``, which the deep (``nets``) recursions reuse;
- feature maps whose inner products are the kernels: :func:`polynomial_features` (exact, with the multinomial
  square-root weights), :func:`random_fourier_features` (RBF), :func:`random_relu_features` (arc-cosine) and
  :func:`random_erf_features` (erf); the random ones converge at the Monte Carlo rate ``1/√k``.

Everything is computed with torch in float64 (any device); NumPy in -> NumPy out, tensor in -> tensor out.
Each kernel's formula is written once (:meth:`Kernel.formula`): in place into the caller's buffer, differentiable
in the hyperparameters, for the matrix and for its diagonal alike. Matrices are filled block by block (a block of
rows at a time) so the temporaries stay bounded whatever N1×N2; an output that does not itself fit the memory
budget is refused up front (:class:`~kernelscope.MemoryBudgetError`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import combinations_with_replacement
from typing import Any

import torch

from . import duals
from ._arrays import (
    ArrayKind,
    ValidationError,
    as_generator,
    as_tensor,
    check_finite_number,
    check_int,
    check_magnitude,
    check_memory,
    check_nonnegative,
    check_positive,
)

__all__ = [
    "Kernel", "Linear", "Polynomial", "RBF", "Laplace", "ArcCosine", "Erf", "CallableKernel",
    "SumKernel", "ProductKernel", "ScaledKernel",
    "linear", "polynomial", "rbf", "laplace", "arccos_kernel", "erf_kernel",
    "relu_dual", "relu_dual_derivative", "erf_dual",
    "polynomial_features", "n_polynomial_features", "random_fourier_features", "random_relu_features",
    "random_erf_features", "get", "KERNELS", "BLOCK_ELEMENTS", "finite_difference_formula",
]

#: Temporaries of a kernel block stay below this many float64 entries (2**25 = 256 MB).
BLOCK_ELEMENTS = 2**25


# ------------------------------------------------------------------------------------------------------------
# Dual activations: E[σ(u) σ(v)] for (u, v) ~ N(0, [[s11, s12], [s12, s22]])  (THEORY.md §3)
# ------------------------------------------------------------------------------------------------------------
def relu_dual(s12: torch.Tensor, s11: torch.Tensor, s22: torch.Tensor) -> torch.Tensor:
    """Arc-cosine kernel of order 1: ``E[relu(u) relu(v)] = √(s11 s22)/(2π) · (sin θ + (π − θ) cos θ)``.

    ``cos θ = s12 / √(s11 s22)`` (clamped to [−1, 1]; zero variance gives 0). Arguments broadcast; float64
    tensors. Cho & Saul (2009) with the ``1/(2π)`` of a standard normal ``b`` (THEORY.md §3). The formula lives in
    :func:`kernelscope.duals.abrelu_dual` (α = 0, β = 1), which the deep recursions of :mod:`kernelscope.nets` use.
    """
    c, a, b = torch.broadcast_tensors(s12, s11, s22)
    return duals.abrelu_dual(c, a, b, 0.0, 1.0)[0]


def relu_dual_derivative(s12: torch.Tensor, s11: torch.Tensor, s22: torch.Tensor) -> torch.Tensor:
    """Arc-cosine kernel of order 0: ``E[step(u) step(v)] = (π − θ)/(2π)``, ``cos θ = s12/√(s11 s22)``.

    The derivative kernel of ReLU (``relu' = step``), used by the NTK recursion (THEORY.md §4).
    """
    c, a, b = torch.broadcast_tensors(s12, s11, s22)
    return duals.abrelu_dual(c, a, b, 0.0, 1.0)[1]


def erf_dual(s12: torch.Tensor, s11: torch.Tensor, s22: torch.Tensor) -> torch.Tensor:
    """``E[erf(u) erf(v)] = (2/π) arcsin(2 s12 / √((1 + 2 s11)(1 + 2 s22)))`` (Williams 1997; THEORY.md §3);
    :func:`kernelscope.duals.erf_dual`."""
    c, a, b = torch.broadcast_tensors(s12, s11, s22)
    return duals.erf_dual(c, a, b)[0]


# ------------------------------------------------------------------------------------------------------------
# Kernel objects
# ------------------------------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v)


class Kernel:
    """A positive-definite kernel ``k(x, x')`` over rows of float64 arrays.

    Kernels compose: ``k1 + k2``, ``k1 * k2`` (entrywise), ``c * k`` (c ≥ 0); they follow scikit-learn's parameter
    protocol (``get_params``/``set_params``/``clone``, nested names ``k1__gamma``) and list their continuous
    hyperparameters (:meth:`hyperparameters`). Four entry points:

    ``k(X1, X2=None) -> (N1, N2)``
        Users. Validates the array-likes; NumPy in -> NumPy out, a tensor in -> a tensor on its device out. An
        output larger than the memory budget is refused up front (:class:`~kernelscope.MemoryBudgetError`).
    ``k.diag(X) -> (N,)``
        Users: ``k(x_i, x_i)`` without forming the N×N matrix; validates and returns like ``k(X)``.
    ``k.matrix(A, B=None, out=None, *, budget=None) -> (N1, N2)``
        The solvers (:mod:`kernelscope.solvers`), the Dask tiles (:func:`kernelscope.scale.evaluate`) and
        :class:`~kernelscope.KernelRegressor`, on inputs they validated once at their public boundary: float64
        tensors A (N1, d), B (N2, d) (None: A) on one device, not checked again. Filled a block of rows at a time
        through :meth:`formula`, so the temporaries stay below ``BLOCK_ELEMENTS × block_factor`` entries.
    ``k.formula(A, B, theta=None, *, out=None, paired=False)``
        The kernel's formula, written once: what a subclass implements, and the differentiable path of the
        marginal likelihood (:func:`kernelscope.regression.fit_hyperparameters`). Unvalidated float64 tensors as
        for :meth:`matrix`, in one piece (no blocks, no memory check). ``paired=True`` gives ``k(a_i, b_i)`` of
        shape (N,) for A, B with the same rows: the solvers take the diagonal as ``k.formula(X, X, paired=True)``.

    Results are float64 tensors on A's device.
    """

    #: rows per block are chosen so that ``rows × N2 × block_factor`` stays below :data:`BLOCK_ELEMENTS`.
    block_factor = 1

    # -- users: validating entry points -------------------------------------------------------------------------
    def __call__(self, X1: Any, X2: Any = None) -> Any:
        """Kernel matrix ``K[i, j] = k(X1[i], X2[j])`` of shape (N1, N2).

        Parameters
        ----------
        X1 : array-like of shape (N1, d)
        X2 : array-like of shape (N2, d), or None for ``X1``.
        """
        kind = ArrayKind.of(X1, X2)
        A = as_tensor(X1, "X1", ndim=2, shape_hint="(n_samples, n_features)")
        B = A if X2 is None else as_tensor(X2, "X2", ndim=2, shape_hint="(n_samples, n_features)",
                                           device=A.device)
        if B.shape[1] != A.shape[1]:
            raise ValidationError("X2", f"{A.shape[1]} columns (as many features as X1)",
                                  f"shape {tuple(B.shape)}")
        check_magnitude(A, "X1")
        if X2 is not None:
            check_magnitude(B, "X2")
        return kind.wrap(self.matrix(A, B))

    def diag(self, X: Any) -> Any:
        """``k(x_i, x_i)`` for every row of X (N, d): shape (N,), without forming the N×N matrix."""
        kind = ArrayKind.of(X)
        A = as_tensor(X, "X", ndim=2, shape_hint="(n_samples, n_features)")
        check_magnitude(A, "X")
        return kind.wrap(self.formula(A, A, paired=True))

    # -- solvers, Dask tiles and the estimator: validated tensors, not checked again ----------------------------
    def matrix(self, A: torch.Tensor, B: torch.Tensor | None = None, out: torch.Tensor | None = None, *,
               budget: int | None = None) -> torch.Tensor:
        """k(A, B) (N1, N2) for validated float64 tensors A (N1, d), B (N2, d) (None: A), a block of rows at a
        time (bounded temporaries), into ``out`` (N1, N2) when given.

        Without ``out``, an output larger than ``budget`` bytes (default: :func:`~kernelscope._arrays.
        memory_budget_bytes`, read now) is refused up front (``MemoryBudgetError``); with ``out`` nothing is
        allocated but temporaries and nothing is checked (the caller sized ``out``).
        """
        B = A if B is None else B
        n1, n2 = A.shape[0], B.shape[0]
        if out is None:
            check_memory(8.0 * n1 * n2, f"the {n1}×{n2} float64 kernel matrix",
                         "Use a matrix-free solver (solver='cg' or 'nystrom'), fewer points, or Dask blocks.",
                         budget=budget)
            out = torch.empty((n1, n2), dtype=torch.float64, device=A.device)
        rows = max(1, min(n1, BLOCK_ELEMENTS // max(1, n2 * self.block_factor)))
        for i in range(0, n1, rows):
            self.formula(A[i:i + rows], B, out=out[i:i + rows])
        return out

    # -- the formula: subclasses implement it -------------------------------------------------------------------
    def formula(self, A: torch.Tensor, B: torch.Tensor, theta: dict[str, Any] | None = None, *,
                out: torch.Tensor | None = None, paired: bool = False) -> torch.Tensor:
        """``K[i, j] = k(a_i, b_j)`` (N1, N2), or ``k(a_i, b_i)`` (N,) with ``paired``, for unvalidated float64
        tensors A (N1, d), B (N2, d) on one device (same rows when paired).

        ``theta`` maps hyperparameter names (as in :meth:`hyperparameters`; ``k1__``/``k2__``/``kernel__``
        prefixes for nested kernels) to floats or 0-d tensors that replace the kernel's own values; the result is
        differentiable in those tensors (torch autograd). With ``out`` (the result's shape) the result is written
        into it and ``out`` is returned; without, a fresh tensor is. Either way the caller owns the result (the
        composite kernels combine theirs in place).

        A subclass implements this. The base class gives only the generic paired values, from the diagonals of
        small blocks of the matrix (O(N·256) work): a subclass without a cheaper paired form calls
        ``super().formula(A, B, theta, out=out, paired=True)``. ``paired`` with ``B is A`` is the diagonal, which
        some kernels compute by a route of their own (a ``diag_fn``, a network's diag mode).
        """
        if not paired:  # pragma: no cover - abstract
            raise TypeError(f"{type(self).__name__} does not define formula(A, B, theta, out=, paired=)")
        step = 256
        return _into(out, torch.cat([torch.diagonal(self.formula(A[i:i + step], B[i:i + step], theta))
                                     for i in range(0, A.shape[0], step)]))

    # -- algebra --------------------------------------------------------------------------------------------
    def __add__(self, other: Any) -> Kernel:
        return SumKernel(self, _as_kernel(other, "other"))

    __radd__ = __add__

    def __mul__(self, other: Any) -> Kernel:
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return ScaledKernel(self, other)
        return ProductKernel(self, _as_kernel(other, "other"))

    def __rmul__(self, other: Any) -> Kernel:
        return self.__mul__(other)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params().items())
        return f"{type(self).__name__}({params})"

    def params(self) -> dict[str, Any]:
        """The hyperparameters, as given (``None`` for a data-dependent default)."""
        return {}

    # -- scikit-learn parameter protocol (GridSearchCV over ``kernel__<name>``, ``sklearn.base.clone``) ---------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments, as given; with ``deep``, a nested kernel's as ``<name>__<param>``
        (``k1__``/``k2__`` of a sum or product, ``kernel__`` of a scaled kernel), as scikit-learn's kernels do."""
        own = self._init_params()
        if not deep:
            return dict(own)
        out: dict[str, Any] = {}
        for name, value in own.items():
            out[name] = value
            if hasattr(value, "get_params") and not isinstance(value, type):  # a kernel, or a network inside
                out.update({f"{name}__{k}": v for k, v in value.get_params(deep=True).items()})
        return out

    def set_params(self, **params: Any) -> Kernel:
        """Set constructor arguments (validated as by the constructor) and nested ones (``k1__gamma=...``)."""
        own = dict(self._init_params())
        nested: dict[str, dict[str, Any]] = {}
        direct: dict[str, Any] = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in own or (sep and not hasattr(own[name], "set_params")):
                valid = ", ".join(self.get_params(deep=True)) or "none"
                raise ValidationError(key, f"one of the valid parameters of {type(self).__name__}: {valid}",
                                      repr(key))
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                direct[name] = value
        for name, sub in nested.items():
            own[name].set_params(**sub)
        fresh = type(self)(**self._merge_params(own, direct))  # validates; recomputes derived attributes
        self.__dict__.update(fresh.__dict__)
        return self

    def __sklearn_clone__(self) -> Kernel:
        # The constructor normalises values (float(1) is not 1), so scikit-learn's identity check would refuse it.
        from sklearn.base import clone

        return type(self)(**{k: clone(v, safe=False) for k, v in self._init_params().items()})

    def resolved_params(self, d: int) -> dict[str, Any]:
        """The hyperparameters used on d-dimensional inputs (``gamma=None`` resolved to its value)."""
        out = dict(self.params())
        if "gamma" in out or "lengthscale" in out:
            out["gamma"] = self.gamma_for(d)
        return out

    def hyperparameters(self, d: int) -> dict[str, float]:
        """The continuous positive hyperparameters (names as in :meth:`get_params`) and their values on
        d-dimensional inputs: the names ``theta`` of :meth:`formula` takes, the ones
        :func:`kernelscope.regression.fit_hyperparameters` can optimise."""
        out: dict[str, float] = {}
        for name, value in self._init_params().items():
            if isinstance(value, Kernel):
                out.update({f"{name}__{k}": v for k, v in value.hyperparameters(d).items()})
        return out

    def _init_params(self) -> dict[str, Any]:
        """The constructor's keyword arguments (default: :meth:`params`)."""
        return self.params()

    def _merge_params(self, current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        return {**current, **new}

    def __eq__(self, other: Any) -> bool:
        return type(self) is type(other) and self.params() == other.params()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted((k, repr(v)) for k, v in self.params().items()))))


def _as_kernel(k: Any, name: str) -> Kernel:
    if isinstance(k, Kernel):
        return k
    if isinstance(k, (int, float)) and not isinstance(k, bool):
        raise ValidationError(name, "a Kernel (scale a kernel with c * k, not c + k)", repr(k))
    raise ValidationError(name, "a Kernel", type(k).__name__)


# ------------------------------------------------------------------------------------------------------------
# The pieces formulas are written with: in place into the caller's buffer, differentiable in the hyperparameters
# (autograd records the in-place operations), and paired (N,) or pairwise (N1, N2) alike
# ------------------------------------------------------------------------------------------------------------
def _into(out: torch.Tensor | None, K: torch.Tensor) -> torch.Tensor:
    """A freshly computed K, written into ``out`` when one is given."""
    return K if out is None else out.copy_(K)


def _writable(K: torch.Tensor) -> torch.Tensor:
    """K, or a copy of it while autograd records it: an in-place update could overwrite a value the backward pass
    needs (``exp``'s output, say), which autograd would refuse."""
    return K.clone() if K.requires_grad else K


def _param(theta: dict[str, Any] | None, name: str, default: Any) -> Any:
    """``theta[name]`` (a float or a 0-d tensor) if given, else the kernel's own value."""
    return theta[name] if theta and name in theta else default


def _subset(theta: dict[str, Any] | None, prefix: str) -> dict[str, Any]:
    """The entries ``prefix__name`` of theta, as ``name``."""
    p = prefix + "__"
    return {k[len(p):]: v for k, v in (theta or {}).items() if k.startswith(p)}


def row_dots(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``a_i·b_i`` of each pair of rows, (N,): one batched dot product, no temporary of ``A``'s size (≈ 4× faster
    than ``(A * B).sum(1)`` on 4000 × 784). The one home of row norms and paired dots (here and in the nets
    engine), so ``‖x‖²`` is the same number wherever a point meets itself."""
    return torch.einsum("ij,ij->i", A, B)


def _dot(A: torch.Tensor, B: torch.Tensor, out: torch.Tensor | None, paired: bool) -> torch.Tensor:
    """``a·b``: (N1, N2) by one GEMM, or (N,) paired."""
    if not paired:
        return torch.mm(A, B.T, out=out)
    return row_dots(A, B) if out is None else out.copy_(row_dots(A, B))


def _sqnorms(A: torch.Tensor, B: torch.Tensor, paired: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``‖a‖²``, ``‖b‖²`` shaped to broadcast against the result: (N1, 1) and (1, N2), or (N,) paired."""
    a2, b2 = row_dots(A, A), row_dots(B, B)
    return (a2, b2) if paired else (a2[:, None], b2[None, :])


def _scaled_sqdist(A: torch.Tensor, B: torch.Tensor, c: Any, out: torch.Tensor | None, paired: bool
                   ) -> torch.Tensor:
    """``c ‖a − b‖²`` for a scale c ≤ 0 (a float or a 0-d tensor), clamped at 0 from above (rounding of
    ``c‖a‖² + c‖b‖² − 2c a·b`` can make it positive): one GEMM with c folded in, then ``c‖a‖²`` in place.

    A tensor c enters as the factor ``c / float(c)``, exactly 1: the value is the same to the last bit, and as
    the result is linear in c, autograd gets its derivative through that factor.
    """
    cf = float(c.detach() if isinstance(c, torch.Tensor) else c)
    if paired:
        K = torch.sum((A - B) ** 2, 1, out=out).mul_(cf)
    else:
        a2, b2 = _sqnorms(A, B, paired)
        K = torch.addmm(b2 * cf, A, B.T, alpha=-2.0 * cf, out=out).add_(a2 * cf).clamp_(max=0.0)
    return K.mul_(c / cf) if isinstance(c, torch.Tensor) and c.requires_grad else K


def _l1dist(A: torch.Tensor, B: torch.Tensor, out: torch.Tensor | None, paired: bool) -> torch.Tensor:
    """``‖a − b‖₁``."""
    if paired:
        return torch.sum((A - B).abs(), 1, out=out)
    return _into(out, torch.cdist(A, B, p=1.0))


def finite_difference_formula(kernel: Kernel, A: torch.Tensor, B: torch.Tensor, theta: dict[str, Any], *,
                              out: torch.Tensor | None = None, paired: bool = False) -> torch.Tensor:
    """``kernel.formula(A, B)`` with the hyperparameters ``theta`` set (on a clone), differentiable in them by
    central differences ``∂K/∂θ_i ≈ (K(θ_i(1 + h)) − K(θ_i(1 − h))) / (2hθ_i)``, h = 1e-5 (error O(h²) relative).

    For a kernel whose formula has no closed form in its hyperparameters (e.g. the ``w_std``, ``b_std`` of
    :class:`kernelscope.regression.MLPKernel`): its :meth:`Kernel.formula` returns this when given ``theta``.
    The backward pass costs two evaluations per hyperparameter.
    """
    names = sorted(theta)
    return _into(out, _FiniteDifferences.apply(kernel, A, B, paired, names, *(theta[n] for n in names)))


class _FiniteDifferences(torch.autograd.Function):
    """:func:`finite_difference_formula`'s forward (the formula at θ) and backward (central differences)."""

    @staticmethod
    def _at(ctx, values: list[float]) -> torch.Tensor:
        """The formula of a clone of ``ctx.kernel`` with the hyperparameters ``ctx.names`` set to ``values``."""
        from sklearn.base import clone

        k = clone(ctx.kernel).set_params(**dict(zip(ctx.names, values)))
        return k.formula(ctx.A, ctx.B, paired=ctx.paired)

    @staticmethod
    def forward(ctx, kernel, A, B, paired, names, *values):
        ctx.kernel, ctx.A, ctx.B, ctx.paired, ctx.names = kernel, A, B, paired, names
        ctx.values = [float(v) for v in values]
        return _FiniteDifferences._at(ctx, ctx.values)

    @staticmethod
    def backward(ctx, grad):
        h, grads = 1e-5, []
        for i, v in enumerate(ctx.values):
            up, down = list(ctx.values), list(ctx.values)
            up[i], down[i] = v * (1 + h), v * (1 - h)
            dK = (_FiniteDifferences._at(ctx, up) - _FiniteDifferences._at(ctx, down)) / (2 * h * v)
            grads.append((grad * dK).sum())
        return (None, None, None, None, None, *grads)


# ------------------------------------------------------------------------------------------------------------
# The classic kernels: one formula each
# ------------------------------------------------------------------------------------------------------------
def _gamma(gamma: float | None, d: int) -> float:
    return 1.0 / d if gamma is None else gamma


class _GammaKernel(Kernel):
    """A kernel with a scale ``gamma`` whose default (``None``) is ``1/d``."""

    gamma: float | None = None

    def gamma_for(self, d: int) -> float:
        """The γ used on d-dimensional inputs: the given one, or ``1/d``."""
        return _gamma(self.gamma, d)

    def _gamma_of(self, theta: dict[str, Any] | None, d: int) -> Any:
        return _param(theta, "gamma", self.gamma_for(d))


class Linear(Kernel):
    """``k(x, x') = x·x'`` (the feature map is the identity)."""

    def formula(self, A, B, theta=None, *, out=None, paired=False):
        return _dot(A, B, out, paired)


class Polynomial(_GammaKernel):
    """``k(x, x') = (γ x·x' + c₀)^p`` with scikit-learn's defaults ``p = 3``, ``γ = 1/d``, ``c₀ = 1``."""

    def __init__(self, degree: int = 3, gamma: float | None = None, coef0: float = 1.0):
        self.degree = check_int(degree, "degree", minimum=0)
        self.gamma = None if gamma is None else check_positive(gamma, "gamma")
        self.coef0 = check_finite_number(coef0, "coef0")

    def params(self):
        return {"degree": self.degree, "gamma": self.gamma, "coef0": self.coef0}

    def hyperparameters(self, d):
        return {"gamma": self.gamma_for(d), **({"coef0": self.coef0} if self.coef0 > 0 else {})}

    def formula(self, A, B, theta=None, *, out=None, paired=False):
        g, c0 = self._gamma_of(theta, A.shape[1]), _param(theta, "coef0", self.coef0)
        return _dot(A, B, out, paired).mul_(g).add_(c0).pow_(self.degree)


class RBF(_GammaKernel):
    """``k(x, x') = exp(−γ ‖x − x'‖²)``; give ``gamma`` or ``lengthscale`` ℓ (``γ = 1/(2ℓ²)``); default ``γ = 1/d``.

    ``−γ‖x − x'‖² = −γ‖x‖² − γ‖x'‖² + 2γ x·x'``: one GEMM into the output, then in-place passes and ``exp``.
    """

    def __init__(self, gamma: float | None = None, lengthscale: float | None = None):
        if gamma is not None and lengthscale is not None:
            raise ValidationError("lengthscale", "either gamma or lengthscale, not both",
                                  f"gamma={gamma!r} and lengthscale={lengthscale!r}")
        self.lengthscale = None if lengthscale is None else check_positive(lengthscale, "lengthscale")
        self.gamma = None if gamma is None else check_positive(gamma, "gamma")
        if self.lengthscale is not None:  # the γ in use, as an attribute; get_params still gives gamma=None
            self.gamma = 1.0 / (2.0 * self.lengthscale**2)

    def params(self):
        if self.lengthscale is not None:
            return {"lengthscale": self.lengthscale}
        return {"gamma": self.gamma}

    def _init_params(self):
        return {"gamma": None if self.lengthscale is not None else self.gamma, "lengthscale": self.lengthscale}

    def _merge_params(self, current, new):
        # Setting one of gamma / lengthscale replaces the other (they are two names of one parameter).
        other = {"gamma": "lengthscale", "lengthscale": "gamma"}
        cleared = {other[k]: None for k in new if k in other and other[k] not in new}
        return {**current, **cleared, **new}

    def hyperparameters(self, d):
        return {"lengthscale": 1.0 / math.sqrt(2.0 * self.gamma_for(d))}

    def _gamma_of(self, theta, d):
        if theta and "lengthscale" in theta:
            return 1.0 / (2.0 * theta["lengthscale"] ** 2)
        return super()._gamma_of(theta, d)

    def formula(self, A, B, theta=None, *, out=None, paired=False):
        return _scaled_sqdist(A, B, -self._gamma_of(theta, A.shape[1]), out, paired).exp_()


class Laplace(_GammaKernel):
    """``k(x, x') = exp(−γ ‖x − x'‖₁)`` (scikit-learn's ``laplacian_kernel``), default ``γ = 1/d``."""

    block_factor = 4

    def __init__(self, gamma: float | None = None):
        self.gamma = None if gamma is None else check_positive(gamma, "gamma")

    def params(self):
        return {"gamma": self.gamma}

    def hyperparameters(self, d):
        return {"gamma": self.gamma_for(d)}

    def formula(self, A, B, theta=None, *, out=None, paired=False):
        return _l1dist(A, B, out, paired).mul_(-self._gamma_of(theta, A.shape[1])).exp_()


class ArcCosine(Kernel):
    """Arc-cosine kernel ``E_{b~N(0,I)}[σ(b·x) σ(b·x')]`` of a two-layer network (THEORY.md §3).

    ``order=1``: σ = ReLU, ``‖x‖‖x'‖/(2π) (sin θ + (π − θ) cos θ)``; ``order=0``: σ = step, ``(π − θ)/(2π)``.
    """

    def __init__(self, order: int = 1):
        self.order = check_int(order, "order", minimum=0, maximum=1)

    def params(self):
        return {"order": self.order}

    def formula(self, A, B, theta=None, *, out=None, paired=False):
        dual = relu_dual if self.order == 1 else relu_dual_derivative
        return _into(out, dual(_dot(A, B, out, paired), *_sqnorms(A, B, paired)))


class Erf(Kernel):
    """``E_{b~N(0,I)}[erf(b·x) erf(b·x')] = (2/π) arcsin(2x·x' / √((1 + 2‖x‖²)(1 + 2‖x'‖²)))`` (THEORY.md §3)."""

    def formula(self, A, B, theta=None, *, out=None, paired=False):
        return _into(out, erf_dual(_dot(A, B, out, paired), *_sqnorms(A, B, paired)))


class CallableKernel(Kernel):
    """Wraps a function ``k(A, B) -> (len(A), len(B))`` (NumPy or torch) as a :class:`Kernel`.

    ``diag`` is computed from small diagonal blocks unless ``diag_fn(A) -> (len(A),)`` is given.
    """

    block_factor = 4

    def __init__(self, fn: Callable[[Any, Any], Any], diag_fn: Callable[[Any], Any] | None = None,
                 name: str | None = None):
        if not callable(fn):
            raise ValidationError("fn", "a callable k(A, B) -> (len(A), len(B))", type(fn).__name__)
        self.fn, self.diag_fn = fn, diag_fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def __repr__(self):
        return f"CallableKernel({self.name})"

    def params(self):
        return {"fn": self.fn}

    def _init_params(self):
        return {"fn": self.fn, "diag_fn": self.diag_fn, "name": self.name}

    def formula(self, A, B, theta=None, *, out=None, paired=False):
        if paired and (self.diag_fn is None or B is not A):
            return super().formula(A, B, out=out, paired=True)
        K = self.diag_fn(A) if paired else self.fn(A, B)
        K = torch.as_tensor(K.detach() if isinstance(K, torch.Tensor) else K, dtype=torch.float64)
        shape = (A.shape[0],) if paired else (A.shape[0], B.shape[0])
        K = K.reshape(-1) if paired else K
        if tuple(K.shape) != shape:
            want = f"a diag_fn returning shape {shape} (len(A),)" if paired else \
                f"a callable returning shape {shape} (len(A), len(B))"
            raise ValidationError("kernel", want, f"shape {tuple(K.shape)}")
        # a copy: the caller owns the result, and the function's array may be the user's
        return (out if out is not None else torch.empty(shape, dtype=torch.float64, device=A.device)).copy_(K)


class _PairKernel(Kernel):
    """Two kernels combined entrywise by ``_combine_`` (in place on the first one's result)."""

    def __init__(self, k1: Kernel, k2: Kernel):
        self.k1, self.k2 = k1, k2
        self.block_factor = 1 + max(k1.block_factor, k2.block_factor)

    def params(self):
        return {"k1": self.k1, "k2": self.k2}

    @staticmethod
    def _combine_(out: torch.Tensor, other: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise TypeError("_PairKernel is abstract: use SumKernel or ProductKernel")

    def formula(self, A, B, theta=None, *, out=None, paired=False):
        K1 = self.k1.formula(A, B, _subset(theta, "k1"), out=out, paired=paired)
        return self._combine_(_writable(K1), self.k2.formula(A, B, _subset(theta, "k2"), paired=paired))


class SumKernel(_PairKernel):
    """``(k1 + k2)(x, x') = k1(x, x') + k2(x, x')``."""

    _combine_ = staticmethod(torch.Tensor.add_)

    def __repr__(self):
        return f"{self.k1!r} + {self.k2!r}"


class ProductKernel(_PairKernel):
    """``(k1 · k2)(x, x') = k1(x, x') k2(x, x')`` (entrywise; PSD by the Schur product theorem)."""

    _combine_ = staticmethod(torch.Tensor.mul_)

    def __repr__(self):
        wrap = lambda k: f"({k!r})" if isinstance(k, SumKernel) else repr(k)
        return f"{wrap(self.k1)} * {wrap(self.k2)}"


class ScaledKernel(Kernel):
    """``(c · k)(x, x') = c k(x, x')`` with ``c ≥ 0`` (a negative scale would break positive definiteness)."""

    def __init__(self, kernel: Kernel, scale: float):
        self.kernel = _as_kernel(kernel, "kernel")
        self.scale = check_nonnegative(scale, "scale")
        self.block_factor = kernel.block_factor

    def __repr__(self):
        inner = f"({self.kernel!r})" if isinstance(self.kernel, (SumKernel, ProductKernel)) else repr(self.kernel)
        return f"{self.scale:.4g} * {inner}"

    def params(self):
        return {"kernel": self.kernel, "scale": self.scale}

    def hyperparameters(self, d):
        return {"scale": self.scale, **super().hyperparameters(d)} if self.scale > 0 else super().hyperparameters(d)

    def formula(self, A, B, theta=None, *, out=None, paired=False):
        K = self.kernel.formula(A, B, _subset(theta, "kernel"), out=out, paired=paired)
        return _writable(K).mul_(_param(theta, "scale", self.scale))


# ------------------------------------------------------------------------------------------------------------
# Functions and the registry
# ------------------------------------------------------------------------------------------------------------
def linear(X1: Any, X2: Any = None) -> Any:
    """``K = X1 X2ᵀ`` of shape (N1, N2). See :class:`Linear`."""
    return Linear()(X1, X2)


def polynomial(X1: Any, X2: Any = None, degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> Any:
    """``K_ij = (γ x_i·x'_j + c₀)^p`` of shape (N1, N2) (scikit-learn's ``polynomial_kernel``)."""
    return Polynomial(degree, gamma, coef0)(X1, X2)


def rbf(X1: Any, X2: Any = None, gamma: float | None = None, lengthscale: float | None = None) -> Any:
    """``K_ij = exp(−γ ‖x_i − x'_j‖²)``, ``γ = 1/(2ℓ²)``, of shape (N1, N2) (scikit-learn's ``rbf_kernel``)."""
    return RBF(gamma, lengthscale)(X1, X2)


def laplace(X1: Any, X2: Any = None, gamma: float | None = None) -> Any:
    """``K_ij = exp(−γ ‖x_i − x'_j‖₁)`` of shape (N1, N2) (scikit-learn's ``laplacian_kernel``)."""
    return Laplace(gamma)(X1, X2)


def arccos_kernel(X1: Any, X2: Any = None, order: int = 1) -> Any:
    """Arc-cosine kernel ``E_{b~N(0,I)}[σ(b·x) σ(b·x')]`` (σ = ReLU for order 1, step for order 0), (N1, N2)."""
    return ArcCosine(order)(X1, X2)


def erf_kernel(X1: Any, X2: Any = None) -> Any:
    """``E_{b~N(0,I)}[erf(b·x) erf(b·x')]`` in closed form, shape (N1, N2). See :func:`erf_dual`."""
    return Erf()(X1, X2)


#: name -> kernel class; ``get`` turns names (and aliases) into objects.
KERNELS: dict[str, type[Kernel]] = {
    "linear": Linear, "poly": Polynomial, "polynomial": Polynomial, "rbf": RBF, "laplace": Laplace,
    "laplacian": Laplace, "arccos": ArcCosine, "relu": ArcCosine, "erf": Erf,
}


def get(kernel: Any, **params: Any) -> Kernel:
    """A :class:`Kernel` from a name (``'linear'``, ``'poly'``, ``'rbf'``, ``'laplace'``, ``'arccos'``,
    ``'erf'``) with its ``params``, a kernel object (returned as is), or a callable ``k(A, B)``."""
    if isinstance(kernel, Kernel):
        if params:
            raise ValidationError("kernel_params", "no parameters for a kernel object (set them on the object)",
                                  repr(params))
        return kernel
    if isinstance(kernel, str):
        cls = KERNELS.get(kernel.lower())
        if cls is None:
            raise ValidationError("kernel", "one of " + ", ".join(repr(k) for k in KERNELS) +
                                  ", a Kernel object or a callable", repr(kernel))
        try:
            return cls(**params)
        except TypeError as exc:
            raise ValidationError("kernel_params", f"parameters of the {kernel!r} kernel", repr(params),
                                  str(exc)) from None
    if callable(kernel):
        if params:
            return CallableKernel(lambda A, B: kernel(A, B, **params), name=getattr(kernel, "__name__", None))
        return CallableKernel(kernel)
    raise ValidationError("kernel", "a kernel name, a Kernel object or a callable k(A, B)", type(kernel).__name__)


# ------------------------------------------------------------------------------------------------------------
# Feature maps: ⟨φ(x), φ(x')⟩ = k(x, x') exactly (polynomial) or in expectation (random features)
# ------------------------------------------------------------------------------------------------------------
def n_polynomial_features(d: int, degree: int) -> int:
    """Number of monomials of degree ≤ p in d variables: ``C(d + p, p)``."""
    return math.comb(d + degree, degree)


def polynomial_features(X: Any, degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> Any:
    """Explicit feature map of the polynomial kernel: ``φ(x)·φ(x') = (γ x·x' + c₀)^p`` exactly.

    Multinomial theorem: with ``α = (α₀, α₁, …, α_d)``, ``|α| = p``,
    ``(γ x·x' + c₀)^p = Σ_α p!/(α₀!…α_d!) c₀^{α₀} γ^{p−α₀} Π_i (x_i x'_i)^{α_i}``, so each monomial
    ``Π x_i^{α_i}`` gets the weight ``√(p!/Πα! · c₀^{α₀} γ^{p−α₀})``.

    Parameters
    ----------
    X : array-like of shape (N, d)
    degree, gamma, coef0 : as in :class:`Polynomial` (``gamma=None`` means ``1/d``; ``coef0 ≥ 0``).

    Returns
    -------
    Φ of shape (N, C(d + p, p)).
    """
    kind = ArrayKind.of(X)
    A = as_tensor(X, "X", ndim=2, shape_hint="(n_samples, n_features)")
    p = check_int(degree, "degree", minimum=0)
    c0 = check_nonnegative(coef0, "coef0")
    n, d = A.shape
    g = _gamma(None if gamma is None else check_positive(gamma, "gamma"), d)
    m = n_polynomial_features(d, p)
    check_memory(8.0 * n * m, f"the {n}×{m} polynomial feature matrix", "Use the polynomial kernel instead.")
    # A multiset of p indices from {0 (the constant), 1..d} is one monomial; α counts each index.
    Z = torch.cat([torch.ones(n, 1, dtype=A.dtype, device=A.device), A], dim=1)  # (N, d + 1)
    cols = []
    for idx in combinations_with_replacement(range(d + 1), p):
        alpha = [idx.count(i) for i in set(idx)]
        a0 = idx.count(0)
        weight = math.factorial(p) / math.prod(math.factorial(a) for a in alpha) * c0**a0 * g ** (p - a0)
        col = Z[:, list(idx)].prod(dim=1) if p > 0 else torch.ones(n, dtype=A.dtype, device=A.device)
        cols.append(math.sqrt(weight) * col)
    return kind.wrap(torch.stack(cols, dim=1))


def _gaussian_weights(d: int, k: int, seed: Any, device: torch.device, std: float = 1.0) -> torch.Tensor:
    g = as_generator(seed)
    return torch.randn(d, k, generator=g, dtype=torch.float64).to(device) * std  # (d, k)


def random_fourier_features(X: Any, n_features: int, gamma: float | None = None, seed: Any = 0) -> Any:
    """Random Fourier features of the RBF kernel (Rahimi & Recht 2007): ``φ(x) = √(2/k) cos(Wᵀx + b)``.

    ``W ~ N(0, 2γ I)`` (d, k), ``b ~ U[0, 2π)``, so ``E[φ(x)·φ(x')] = exp(−γ ‖x − x'‖²)``; the error of one
    draw shrinks like ``1/√k``. The same ``seed`` gives the same map (call it on train and test data alike).

    Returns Φ of shape (N, n_features).
    """
    kind = ArrayKind.of(X)
    A = as_tensor(X, "X", ndim=2, shape_hint="(n_samples, n_features)")
    k = check_int(n_features, "n_features", minimum=1)
    g_ = _gamma(None if gamma is None else check_positive(gamma, "gamma"), A.shape[1])
    gen = as_generator(seed)
    W = torch.randn(A.shape[1], k, generator=gen, dtype=torch.float64).to(A.device) * math.sqrt(2 * g_)
    b = (torch.rand(k, generator=gen, dtype=torch.float64) * 2 * math.pi).to(A.device)
    return kind.wrap(math.sqrt(2.0 / k) * torch.cos(A @ W + b))


def random_relu_features(X: Any, n_features: int, seed: Any = 0) -> Any:
    """Random ReLU features ``φ(x) = relu(Bx)/√k``, rows of B ~ N(0, I) (THEORY.md §3).

    ``φ(x)·φ(x') = (1/k) Σ_j relu(b_j·x) relu(b_j·x')`` → :func:`arccos_kernel` (order 1) as k → ∞, with a
    Monte Carlo error ``∝ 1/√k``. Returns Φ of shape (N, n_features).
    """
    kind = ArrayKind.of(X)
    A = as_tensor(X, "X", ndim=2, shape_hint="(n_samples, n_features)")
    k = check_int(n_features, "n_features", minimum=1)
    B = _gaussian_weights(A.shape[1], k, seed, A.device)
    return kind.wrap(torch.relu(A @ B) / math.sqrt(k))


def random_erf_features(X: Any, n_features: int, seed: Any = 0) -> Any:
    """Random erf features ``φ(x) = erf(Bx)/√k``, rows of B ~ N(0, I); inner products → :func:`erf_kernel`.

    Returns Φ of shape (N, n_features).
    """
    kind = ArrayKind.of(X)
    A = as_tensor(X, "X", ndim=2, shape_hint="(n_samples, n_features)")
    k = check_int(n_features, "n_features", minimum=1)
    B = _gaussian_weights(A.shape[1], k, seed, A.device)
    return kind.wrap(torch.special.erf(A @ B) / math.sqrt(k))
