"""Activations: an elementwise φ maps the kernels through its dual (:mod:`kernelscope.duals`).

``Σ' = E[φ(u)φ(v)]``, ``Σ̇ = E[φ'(u)φ'(v)]``, ``Θ' = Σ̇ Θ`` with
``(u, v) ~ N(0, [[Σ(x,x), Σ(x,x')], [Σ(x,x'), Σ(x',x')]])`` (THEORY.md §3–4). As in neural-tangents'
``elementwise``, the general case comes first and special cases call it: :class:`ABReLU` (closed-form arc-cosine
dual) for ReLU, LeakyReLU, Identity and Abs; closed forms for Erf, GELU, Sin, Cos, Rbf, Exp, Gaussian, Sign and
polynomials; :class:`Elementwise` for any other φ (a user's dual, or Gauss–Hermite quadrature).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .. import duals as _dual
from .._arrays import ValidationError, check_finite_number, check_int, check_positive
from .._model import value_and_grad
from . import finite as _finite
from .engine import Layer
from .state import KState, Pending

__all__ = ["GELU", "ABReLU", "Abs", "Cos", "Elementwise", "Erf", "Exp", "Gaussian", "Hermite", "Identity",
           "LeakyReLU", "Monomial", "Polynomial", "Rbf", "ReLU", "Sigmoid", "Sign", "Sin", "Tanh"]


class _Activation(Layer):
    """An elementwise φ: subclasses define ``fn`` (torch) and ``dual(c, a, b, inplace)``."""

    def fn(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - each activation defines it
        raise TypeError(f"{type(self).__name__} defines no elementwise function: subclass Elementwise(fn) instead")

    def dual(self, c, a, b, inplace=False, same=None):  # pragma: no cover - each activation defines it
        raise TypeError(f"{type(self).__name__} has no dual (kernel map): subclass Elementwise(fn) for quadrature")

    def variance(self, v: torch.Tensor) -> torch.Tensor:
        """``E[φ(u)²]`` for ``u ~ N(0, v)``: the output variances of the points, elementwise."""
        return self.dual(v, v, v, same="all")[0]

    def dual_lazy(self, c, a, b, same=None):
        """``(E[φφ] / (s1·s2), E[φ'φ'] / t, s1, s2, t)``: the dual with its row/column scales ``s1``, ``s2`` and
        the derivative's scalar factor ``t`` left to the next layer (None, None, 1 here)."""
        nngp, dot = self.dual(c, a, b, inplace=True, same=same)
        return nngp, dot, None, None, 1.0

    def kernel_fn(self, k: KState) -> KState:
        if k.diag:  # (nothing is pending in diag mode)
            nngp, dot = self.dual(k.nngp, k.a_view(), k.b_view(), inplace=False, same=k.same())
            if k.ntk is None:  # e.g. the variances of a full-mode state (below): nothing to write
                return k.replace(nngp=nngp)
            k = k.writable()
            return k.replace(nngp=nngp, ntk=k.ntk.mul_(dot))
        k = k.materialized()
        v1, v2 = k.map_vars(("activation", id(self)), lambda v: self.kernel_fn(k.self_state(v)).nngp)  # Σ'(x, x)
        nngp, dot, s1, s2, t = self.dual_lazy(k.nngp, k.a_view(), k.b_view(), same=k.same())  # (B, T) + P
        # Θ' = Σ̇ Θ, left pending so that a following Dense fuses it into Θ'' = Σ'' + w² Σ̇ Θ
        pending = None if s1 is None and k.ntk is None else Pending(s1, s2, None if k.ntk is None else dot, t)
        return k.replace(nngp=nngp, var1=v1, var2=v2, pending=pending)

    def build(self, in_width, gen, hidden, readout, dtype):
        return _finite.ActivationModule(self.fn, repr(self)), in_width


class ABReLU(_Activation):
    """``φ(x) = a·min(x, 0) + b·max(x, 0)``: the general piecewise-linear case (closed-form arc-cosine dual).

    ReLU = ABReLU(0, 1), LeakyReLU(s) = ABReLU(s, 1), Identity = ABReLU(1, 1).
    """

    def __init__(self, a: float, b: float):
        self.a = _finite_float(a, "a")
        self.b = _finite_float(b, "b")
        if not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValidationError("a, b", "finite slopes", f"a={a!r}, b={b!r}")

    def __repr__(self) -> str:
        return f"ABReLU(a={self.a}, b={self.b})"

    def fn(self, x):
        return self.a * torch.clamp(x, max=0.0) + self.b * torch.clamp(x, min=0.0)

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.abrelu_dual(c, a, b, self.a, self.b, inplace=inplace, same=same)

    def dual_lazy(self, c, a, b, same=None):
        return _dual.abrelu_dual(c, a, b, self.a, self.b, inplace=True, same=same, scaled=False)


class ReLU(ABReLU):
    """``φ(x) = max(x, 0)``: the arc-cosine kernel of order 1 (THEORY.md §3)."""

    def __init__(self):
        super().__init__(0.0, 1.0)

    def __repr__(self) -> str:
        return "ReLU()"

    def fn(self, x):
        return torch.relu(x)


class LeakyReLU(ABReLU):
    """``φ(x) = x`` for x > 0 and ``slope·x`` otherwise."""

    def __init__(self, slope: float = 0.01):
        super().__init__(_finite_float(slope, "slope"), 1.0)
        self.slope = self.a

    def __repr__(self) -> str:
        return f"LeakyReLU({self.slope})"


class Identity(ABReLU):
    """``φ(x) = x``: the kernel passes through unchanged (Σ̇ = 1)."""

    def __init__(self):
        super().__init__(1.0, 1.0)

    def __repr__(self) -> str:
        return "Identity()"

    def fn(self, x):
        return x

    def kernel_fn(self, k):
        return k


class Abs(ABReLU):
    """``φ(x) = |x|`` = ABReLU(−1, 1) (neural-tangents' ``Abs``)."""

    def __init__(self):
        super().__init__(-1.0, 1.0)

    def __repr__(self) -> str:
        return "Abs()"

    def fn(self, x):
        return torch.abs(x)


class Erf(_Activation):
    """``φ(x) = a·erf(b·x) + c`` (neural-tangents' ``Erf(a, b, c)``; default erf), closed-form dual
    ``a² (2/π) arcsin(2b²Σ₁₂/√((1+2b²Σ₁₁)(1+2b²Σ₂₂))) + c²`` (Williams 1997; E[erf] = 0 so the shift adds c²)."""

    def __init__(self, a: float = 1.0, b: float = 1.0, c: float = 0.0):
        self.a, self.b, self.c = _finite_float(a, "a"), _finite_float(b, "b"), _finite_float(c, "c")

    def __repr__(self) -> str:
        return "Erf()" if (self.a, self.b, self.c) == (1.0, 1.0, 0.0) else f"Erf(a={self.a}, b={self.b}, c={self.c})"

    def fn(self, x):
        return torch.erf(x * self.b) * self.a + self.c if (self.a, self.b, self.c) != (1.0, 1.0, 0.0) \
            else torch.erf(x)

    def dual(self, c, a, b, inplace=False, same=None):
        if (self.a, self.b, self.c) == (1.0, 1.0, 0.0):
            return _dual.erf_dual(c, a, b, inplace=inplace)
        s = self.b * self.b
        nngp, dot = _dual.erf_dual(c * s, a * s, b * s)
        return nngp.mul_(self.a**2).add_(self.c**2), dot.mul_(self.a**2 * s)


_finite_float = check_finite_number  # the activations' parameters: finite numbers of either sign


class GELU(_Activation):
    """``φ(x) = x Φ(x)`` (Φ the standard normal CDF): closed-form dual, exact to rounding
    (:func:`kernelscope.duals.gelu_dual`).

    approximate : as neural-tangents' ``Gelu``: if True the *finite* network uses the tanh approximation (the
        kernel stays the exact GELU's, so finite nets then converge to a slightly different kernel).
    degree : ignored (kept so that ``GELU(degree=...)`` from before the closed form keeps working).
    """

    def __init__(self, approximate: bool = False, degree: int | None = None):
        self.approximate = bool(approximate)

    def __repr__(self) -> str:
        return "GELU(approximate=True)" if self.approximate else "GELU()"

    def fn(self, x):
        return torch.nn.functional.gelu(x, approximate="tanh" if self.approximate else "none")

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.gelu_dual(c, a, b, inplace=inplace, same=same)


class Sin(_Activation):
    """``φ(x) = a·sin(b·x + c)`` (neural-tangents' ``Sin(a, b, c)``), closed form :func:`kernelscope.duals.sin_dual`."""

    def __init__(self, a: float = 1.0, b: float = 1.0, c: float = 0.0):
        self.a, self.b, self.c = _finite_float(a, "a"), _finite_float(b, "b"), _finite_float(c, "c")

    def __repr__(self) -> str:
        return f"Sin(a={self.a}, b={self.b}, c={self.c})"

    def fn(self, x):
        return torch.sin(x * self.b + self.c) * self.a

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.sin_dual(c, a, b, self.a, self.b, self.c, inplace=inplace, same=same)


class Cos(Sin):
    """``φ(x) = a·cos(b·x + c)`` = Sin with phase ``c + π/2`` (neural-tangents' ``Cos``)."""

    def __init__(self, a: float = 1.0, b: float = 1.0, c: float = 0.0):
        super().__init__(a, b, _finite_float(c, "c") + math.pi / 2)

    def __repr__(self) -> str:
        return f"Cos(a={self.a}, b={self.b}, c={self.c - math.pi / 2})"


class Rbf(Sin):
    """``φ(x) = √2 sin(√(2γ) x + π/4)``, whose NNGP is the RBF kernel ``exp(−γ (Σ₁₁ + Σ₂₂ − 2Σ₁₂))`` of the
    pre-activations (neural-tangents' ``Rbf(gamma)``, γ = 1/(2ℓ²)); derivative kernel ``2γ`` times it."""

    def __init__(self, gamma: float = 1.0):
        self.gamma = check_positive(gamma, "gamma")
        super().__init__(math.sqrt(2.0), math.sqrt(2.0 * self.gamma), math.pi / 4)

    def __repr__(self) -> str:
        return f"Rbf(gamma={self.gamma})"


class Exp(_Activation):
    """``φ(x) = a·e^{b·x}`` (neural-tangents' ``Exp(a, b)``), closed form :func:`kernelscope.duals.exp_dual`."""

    def __init__(self, a: float = 1.0, b: float = 1.0):
        self.a, self.b = _finite_float(a, "a"), _finite_float(b, "b")

    def __repr__(self) -> str:
        return f"Exp(a={self.a}, b={self.b})"

    def fn(self, x):
        return torch.exp(x * self.b) * self.a

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.exp_dual(c, a, b, self.a, self.b, inplace=inplace, same=same)


class Gaussian(_Activation):
    """``φ(x) = a·e^{b·x²}`` (neural-tangents' ``Gaussian(a, b)``, default b = −1), closed form
    :func:`kernelscope.duals.gaussian_dual` (infinite where b > 0 and the variance reaches 1/(4b))."""

    def __init__(self, a: float = 1.0, b: float = -1.0):
        self.a, self.b = _finite_float(a, "a"), _finite_float(b, "b")

    def __repr__(self) -> str:
        return f"Gaussian(a={self.a}, b={self.b})"

    def fn(self, x):
        return torch.exp(x * x * self.b) * self.a

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.gaussian_dual(c, a, b, self.a, self.b, inplace=inplace, same=same)


class Sign(_Activation):
    """``φ(x) = sign(x)``: NNGP ``1 − 2θ/π``; its derivative is 0 almost everywhere, so the NTK does not pass
    (Θ' = 0, as in neural-tangents)."""

    def fn(self, x):
        return torch.sign(x)

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.sign_dual(c, a, b, inplace=inplace, same=same)


class Polynomial(_Activation):
    """``φ(x) = Σ_n coeffs[n] xⁿ``: exact dual by the Hermite expansion (:func:`kernelscope.duals.polynomial_dual`)."""

    def __init__(self, coeffs: Sequence[float], name: str | None = None):
        cs = [_finite_float(v, f"coeffs[{i}]") for i, v in enumerate(coeffs)]
        if not cs:
            raise ValidationError("coeffs", "at least one coefficient", "none")
        while len(cs) > 1 and cs[-1] == 0.0:
            cs.pop()
        self.coeffs = tuple(cs)
        self._name = name

    def __repr__(self) -> str:
        return self._name or f"Polynomial({list(self.coeffs)})"

    def fn(self, x):
        out = torch.full_like(x, self.coeffs[-1])
        for cf in self.coeffs[-2::-1]:  # Horner
            out = out * x + cf
        return out

    def dual(self, c, a, b, inplace=False, same=None):
        return _dual.polynomial_dual(self.coeffs, c, a, b, inplace=inplace, same=same)


class Monomial(Polynomial):
    """``φ(x) = x^degree`` (exact dual: :class:`Polynomial`)."""

    def __init__(self, degree: int):
        self.degree = check_int(degree, "degree", minimum=0, maximum=32)
        super().__init__([0.0] * self.degree + [1.0], name=f"Monomial({self.degree})")


class Hermite(Polynomial):
    """``φ(x) = He_n(x)/√(n!)``, the probabilists' Hermite polynomial normalised in L²(N(0, 1)) (neural-tangents'
    ``Hermite(degree)``). Exact dual for every input variance; for unit variances it is ``Σ₁₂ⁿ`` (Mehler), the
    formula neural-tangents uses (it assumes unit variances)."""

    def __init__(self, degree: int):
        self.degree = check_int(degree, "degree", minimum=1, maximum=32)
        coeffs = np.polynomial.hermite_e.herme2poly([0.0] * self.degree + [1.0]) / math.sqrt(
            math.factorial(self.degree))
        super().__init__(coeffs.tolist(), name=f"Hermite({self.degree})")


class Elementwise(_Activation):
    """Any elementwise activation: a user-supplied dual (``nngp_fn``), or 2-D Gauss–Hermite quadrature of ``fn``.

    Parameters
    ----------
    fn : callable mapping a tensor to a tensor of the same shape, entry by entry (the finite network's
        activation; may be None when ``nngp_fn`` is given, then ``finite()`` is refused).
    degree : Gauss–Hermite degree per dimension to start from (``degree²`` nodes); exact for polynomials of
        degree < 2·degree.
    deriv : optional φ' (else torch autodiff of ``fn``).
    name : shown in ``repr``.
    nngp_fn : optional ``(cov12, var1, var2) -> E[φ(u)φ(v)]`` on torch tensors (neural-tangents' ``nngp_fn``):
        the dual in closed form, used instead of quadrature.
    d_nngp_fn : optional ``(cov12, var1, var2) -> E[φ'(u)φ'(v)]``; else ``∂ nngp_fn / ∂ cov12`` by torch autodiff
        (Price's theorem: ``∂E[φ(u)φ(v)]/∂c = E[φ'(u)φ'(v)]``).
    rtol : quadrature only: the largest estimated relative error accepted (degree D against 2D on the hardest
        entries' variances, :func:`kernelscope.duals.gauss_hermite_degree`); the degree grows by 1.5× until it
        holds, up to
        ``max_degree``, past which a :class:`~kernelscope._arrays.KernelscopeWarning` names the estimate.
        None: no estimate.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor] | None = None, degree: int = 32,
                 deriv: Callable | None = None, name: str | None = None, *, nngp_fn: Callable | None = None,
                 d_nngp_fn: Callable | None = None, rtol: float | None = 1e-8, max_degree: int = 256):
        if fn is None and nngp_fn is None:
            raise ValidationError("fn", "an elementwise activation (or nngp_fn, its dual)", "neither",
                                  "Pass fn=torch.tanh, or nngp_fn=... for a kernel-only layer.")
        if fn is not None and not callable(fn):
            raise ValidationError("fn", "a callable elementwise activation", type(fn).__name__)
        for nm, f in (("nngp_fn", nngp_fn), ("d_nngp_fn", d_nngp_fn), ("deriv", deriv)):
            if f is not None and not callable(f):
                raise ValidationError(nm, "a callable", type(f).__name__)
        self._fn, self._nngp_fn, self._d_nngp_fn = fn, nngp_fn, d_nngp_fn
        self.degree = check_int(degree, "degree", minimum=1, maximum=512)
        self.max_degree = check_int(max_degree, "max_degree", minimum=self.degree, maximum=1024)
        self.rtol = None if rtol is None else check_positive(rtol, "rtol")
        self._deriv = deriv
        self.name = name or getattr(fn if fn is not None else nngp_fn, "__name__", "fn")
        if fn is not None:
            _check_elementwise(fn, "fn")

    def __repr__(self) -> str:
        if type(self) is not Elementwise:
            return f"{type(self).__name__}(degree={self.degree})"
        return f"Elementwise({self.name}, nngp_fn=...)" if self._nngp_fn is not None \
            else f"Elementwise({self.name}, degree={self.degree})"

    def fn(self, x):
        if self._fn is None:
            raise ValidationError("Elementwise.fn", "an activation for the finite network", "None",
                                  "Pass fn= as well as nngp_fn= to build finite networks.")
        return self._fn(x)

    def dual(self, c, a, b, inplace=False, same=None):
        if self._nngp_fn is not None:
            return _user_dual(self._nngp_fn, self._d_nngp_fn, c, a, b, same)
        return _dual.gauss_hermite_dual(self._fn, c, a, b, self.degree, self._deriv, same=same, rtol=self.rtol,
                                        max_degree=self.max_degree)


def _user_dual(nngp_fn, d_nngp_fn, c, a, b, same):
    """A user's closed-form dual on the (clamped) covariances, with its c-derivative by autodiff if not given."""
    shape = torch.broadcast_shapes(c.shape, a.shape, b.shape)
    c = _dual.clamp_covariance(c, a, b, False, same).expand(shape)
    a, b = a.expand(shape), b.expand(shape)
    if d_nngp_fn is not None:
        nngp, dot = nngp_fn(c, a, b), d_nngp_fn(c, a, b)
    else:  # ∂/∂c of a function elementwise in c: the gradient of its sum (one more elementwise evaluation)
        nngp = nngp_fn(c, a, b)
        dot = value_and_grad(lambda t: nngp_fn(t, a, b).sum(), c)[1]
    return torch.as_tensor(nngp, dtype=c.dtype).expand(shape).clone(), \
        torch.as_tensor(dot, dtype=c.dtype).expand(shape).clone()


def _check_elementwise(fn, name: str) -> None:
    x = torch.linspace(-2.5, 2.5, 7, dtype=torch.float64).reshape(7, 1) * torch.tensor([1.0, 0.5],
                                                                                        dtype=torch.float64)
    try:
        y = fn(x)
        ok = isinstance(y, torch.Tensor) and y.shape == x.shape
        if ok:
            singles = torch.stack([torch.stack([torch.as_tensor(fn(x[i:i + 1, j:j + 1])).reshape(())
                                                for j in range(2)]) for i in range(7)])
            ok = bool(torch.allclose(singles.to(y.dtype), y, rtol=1e-10, atol=1e-12, equal_nan=True))
    except Exception as exc:  # noqa: BLE001 - any failure means "not a usable activation"
        raise ValidationError(name, "an elementwise torch function (tensor -> tensor of the same shape)",
                              f"a callable that fails on a (7, 2) tensor: {type(exc).__name__}: {exc}") from None
    if not ok:
        raise ValidationError(name, "an elementwise activation (each output entry depends on its input entry "
                              "only)", "a function that mixes entries or changes the shape")


class Tanh(Elementwise):
    """``φ(x) = tanh(x)``; dual by Gauss–Hermite quadrature (error-controlled, see :class:`Elementwise`)."""

    def __init__(self, degree: int = 32, rtol: float | None = 1e-8):
        super().__init__(torch.tanh, degree, deriv=lambda t: 1.0 - torch.tanh(t) ** 2, name="tanh", rtol=rtol)


class Sigmoid(Elementwise):
    """``φ(x) = 1/(1 + e^{−x})``; dual by Gauss–Hermite quadrature (error-controlled, see :class:`Elementwise`)."""

    def __init__(self, degree: int = 32, rtol: float | None = 1e-8):
        super().__init__(torch.sigmoid, degree,
                         deriv=lambda t: torch.sigmoid(t) * (1.0 - torch.sigmoid(t)), name="sigmoid", rtol=rtol)

