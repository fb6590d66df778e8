"""The primer: the calculus, linear algebra and probability that the applied-math deck (seed 002) and the first
lecture (seed 000) take for granted, each computed and checked against an independent reference.

- :class:`Node`, :func:`chain_rule` - a computation graph (the deck's ``c = a + b``, ``d = b + 1``, ``e = c·d``),
  its derivatives by the chain rule by hand (a product along each path, a sum over the paths), against torch
  autograd and the closed form;
- :func:`shear_eigenvectors` - the deck's shear mapping: one eigenvector, and power iteration creeping towards it
  like 1/k; :func:`digits_pca` - the principal components of the digits by power iteration with deflation
  (:func:`kernelscope.linsys.power_iteration`) against ``numpy.linalg.eigh``;
- :func:`derivative_test` - the one-dimensional second-derivative test at the stationary points Newton finds
  (:func:`kernelscope.optim.stationary_point`), and the higher derivatives where f'' = 0 (an inflection point, and
  a minimum the second derivative cannot see);
- :func:`gaussian_pair`, :func:`sample_mean_rate`, :func:`dual_check`, :func:`conditional_check` - the sample mean
  converging to the expectation at rate σ/√k, the Monte-Carlo dual activation of THEORY.md §3 within its standard
  error of the closed form (:func:`kernelscope.duals.abrelu_dual`), and a conditional probability by simulation.

Each returns a dataclass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .. import data, linsys, optim
from .._arrays import ValidationError, check_int, check_positive
from ..duals import abrelu_dual
from ..stats import fit_slope

__all__ = ["Node", "ChainRule", "chain_rule", "ShearEigen", "shear_eigenvectors", "DigitsPCA", "digits_pca",
           "StationaryPoint1D", "DerivativeTest", "derivative_test", "FUNCTIONS_1D", "gaussian_pair",
           "SampleMeanRate", "sample_mean_rate", "relu_moments", "DualCheck", "dual_check", "ConditionalCheck",
           "conditional_check"]


# ---------------------------------------------------------------------------------------------------------------
# 1. A computation graph and the chain rule by hand
# ---------------------------------------------------------------------------------------------------------------

class Node:
    """A value in a computation graph (micrograd's idea): its ``value``, its ``parents`` and the local
    derivatives ``local[i] = ∂self/∂parents[i]``; ``+`` and ``*`` with nodes or numbers build new nodes."""

    def __init__(self, value: float, name: str = "", parents: tuple[Node, ...] = (), local: tuple[float, ...] = ()):
        self.value, self.name, self.parents, self.local = float(value), name, parents, local

    def __repr__(self) -> str:
        return f"Node({self.name or '?'}={self.value:g})"

    @staticmethod
    def _of(other: Node | float) -> Node:
        return other if isinstance(other, Node) else Node(other, name=f"{other:g}")

    def __add__(self, other: Node | float) -> Node:
        o = Node._of(other)
        return Node(self.value + o.value, parents=(self, o), local=(1.0, 1.0))  # ∂(s+o)/∂s = ∂(s+o)/∂o = 1

    def __mul__(self, other: Node | float) -> Node:
        o = Node._of(other)
        return Node(self.value * o.value, parents=(self, o), local=(o.value, self.value))  # ∂(s·o)/∂s = o

    __radd__ = __add__
    __rmul__ = __mul__

    def graph(self) -> list[Node]:
        """The nodes this one depends on, itself last, each after all its parents (a topological order)."""
        order: list[Node] = []
        seen: set[int] = set()

        def visit(n: Node) -> None:
            if id(n) not in seen:
                seen.add(id(n))
                for p in n.parents:
                    visit(p)
                order.append(n)

        visit(self)
        return order

    def backward(self) -> dict[int, float]:
        """``∂self/∂n`` for every node n of the graph (keyed by ``id(n)``), by the chain rule in reverse order:
        ``∂e/∂p = Σ_{children n of p} ∂e/∂n · ∂n/∂p`` - a sum over the paths from p to e of the products of the
        local derivatives along each path."""
        grad = {id(n): 0.0 for n in self.graph()}
        grad[id(self)] = 1.0
        for n in reversed(self.graph()):
            for p, d in zip(n.parents, n.local):
                grad[id(p)] += grad[id(n)] * d
        return grad


@dataclass
class ChainRule:
    """What :func:`chain_rule` returns. ``values``: the value of each named node; ``edges``: (child, parent,
    ∂child/∂parent) for every edge of the graph; ``paths``: for each input, the paths to e as (node names, product of
    the local derivatives); ``by_hand``, ``autograd``, ``closed_form``: ∂e/∂a and ∂e/∂b three ways."""

    a: float
    b: float
    values: dict[str, float]
    edges: list[tuple[str, str, float]]
    paths: dict[str, list[tuple[list[str], float]]]
    by_hand: dict[str, float]
    autograd: dict[str, float]
    closed_form: dict[str, float]


def chain_rule(a: float = 2.0, b: float = 1.0) -> ChainRule:
    """The deck's graph ``c = a + b``, ``d = b + 1``, ``e = c·d`` at (a, b), differentiated three ways:

    - by hand: the chain rule on the graph (:meth:`Node.backward`): ``∂e/∂a = ∂e/∂c·∂c/∂a = d``,
      ``∂e/∂b = ∂e/∂c·∂c/∂b + ∂e/∂d·∂d/∂b = d + c`` (two paths);
    - torch autograd on the same expression;
    - the closed form of ``e = (a + b)(b + 1)``: ``∂e/∂a = b + 1``, ``∂e/∂b = a + 2b + 1``.

    At (2, 1): e = 6, ∂e/∂a = 2, ∂e/∂b = 5.
    """
    A, B = Node(a, "a"), Node(b, "b")
    C = A + B
    C.name = "c"
    D = B + 1.0
    D.name = "d"
    E = C * D
    E.name = "e"
    nodes = [n for n in E.graph() if n.name in "abcde" and n.name]
    grad = E.backward()
    edges = [(n.name, p.name, d) for n in E.graph() for p, d in zip(n.parents, n.local) if p.name in "abcde"]

    def paths(n: Node) -> list[tuple[list[str], float]]:
        """Every path from n up to e, with the product of the local derivatives along it."""
        if n is E:
            return [([n.name], 1.0)]
        out = []
        for child in E.graph():
            for p, d in zip(child.parents, child.local):
                if p is n:
                    out += [([n.name] + rest, d * prod) for rest, prod in paths(child)]
        return out

    ta = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    ga, gb = torch.autograd.grad((ta + tb) * (tb + 1.0), (ta, tb))
    return ChainRule(a=float(a), b=float(b), values={n.name: n.value for n in nodes}, edges=edges,
                     paths={"a": paths(A), "b": paths(B)}, by_hand={"a": grad[id(A)], "b": grad[id(B)]},
                     autograd={"a": float(ga), "b": float(gb)},
                     closed_form={"a": b + 1.0, "b": a + 2.0 * b + 1.0})


# ---------------------------------------------------------------------------------------------------------------
# 2. Eigenvectors: a shear, and the digits' principal components by power iteration
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class ShearEigen:
    """What :func:`shear_eigenvectors` returns. ``S`` (2, 2) the shear ``[[1, s], [0, 1]]``; ``eigenvalues`` (2,)
    and ``eigenvectors`` (2, 2) (columns) from ``numpy.linalg.eig``; ``v0`` the start of power iteration;
    ``iterations`` (K,), ``angle`` (K,) the angle in radians between ``S^k v0`` (from
    :func:`kernelscope.linsys.power_iteration` stopped after k steps) and the eigenvector (1, 0), and
    ``angle_exact`` (K,) its closed form ``atan(v0_y / (v0_x + k s v0_y))``; ``slope``, ``intercept`` the log-log
    line fitted over k ≥ 10 (theory −1). For the figure: ``circle`` (2, G) the unit circle and ``image`` (2, G)
    its image under S; ``iterates`` (6, 2) the unit vectors ``S^k v0/‖S^k v0‖``, k = 0 … 5."""

    S: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    v0: np.ndarray
    iterations: np.ndarray
    angle: np.ndarray
    angle_exact: np.ndarray
    slope: float
    intercept: float
    circle: np.ndarray
    image: np.ndarray
    iterates: np.ndarray


def shear_eigenvectors(s: float = 1.0, v0: Sequence[float] = (0.6, 0.8), iterations: Sequence[int] = (
        1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)) -> ShearEigen:
    """The deck's shear mapping ``S = [[1, s], [0, 1]]`` moves every point horizontally by s times its height: the
    horizontal axis is left as it is (eigenvalue 1) and it is the only eigen-direction (the eigenvalue 1 is double,
    the matrix defective). Power iteration ``v ← Sv/‖Sv‖`` still finds it, but with no gap between the eigenvalues
    it creeps: ``S^k v0 = (v0_x + k s v0_y, v0_y)``, so the angle to the axis falls like ``1/(k s)`` instead of
    geometrically."""
    s = check_positive(s, "s")
    S = np.array([[1.0, s], [0.0, 1.0]])
    w, V = np.linalg.eig(S)
    v0 = np.asarray(v0, dtype=float)
    ks = np.array([check_int(k, "iterations", minimum=1) for k in iterations])
    angles = []
    for k in ks:
        res = linsys.power_iteration(S, v0=v0, max_iter=int(k), tol=1e-300, warn_unconverged=False)
        v = np.asarray(res.eigenvector)
        angles.append(math.atan2(abs(v[1]), abs(v[0])))
    exact = np.arctan(v0[1] / (v0[0] + ks * s * v0[1]))
    late = ks >= 10  # the 1/(k s) regime: v0's own direction no longer counts
    slope, intercept = fit_slope(ks[late], np.array(angles)[late])
    t = np.linspace(0.0, 2 * np.pi, 200)
    circle = np.stack([np.cos(t), np.sin(t)])  # (2, G)
    iterates = [v0]
    for _ in range(5):
        iterates.append(S @ iterates[-1])
    iterates = np.array([v / np.linalg.norm(v) for v in iterates])  # (6, 2)
    return ShearEigen(S, w.real, V.real, v0, ks, np.array(angles), exact, slope, intercept, circle, S @ circle,
                      iterates)


@dataclass
class DigitsPCA:
    """What :func:`digits_pca` returns: the top ``k`` principal components of the 8×8 digits two ways.

    eigenvalues_power, eigenvalues_eigh : (k,) variances along them; components_power, components_eigh : (k, 64)
    unit vectors; iterations : (k,) power-iteration steps for each; cosine : (k,) ``|⟨v_power, v_eigh⟩|``;
    gap_ratio : (k,) ``λ_{j+1}/λ_j``, the rate of power iteration for component j; explained : (k,) the share of
    the total variance; projection : (N, 2) the digits on the first two components; labels : (N,) their digits;
    mean : (64,) the mean image.
    """

    eigenvalues_power: np.ndarray
    eigenvalues_eigh: np.ndarray
    components_power: np.ndarray
    components_eigh: np.ndarray
    iterations: np.ndarray
    cosine: np.ndarray
    gap_ratio: np.ndarray
    explained: np.ndarray
    projection: np.ndarray
    labels: np.ndarray
    mean: np.ndarray


def digits_pca(k: int = 3, *, tol: float = 1e-10, seed: int = 0) -> DigitsPCA:
    """PCA of the 1797 digits (64 pixels): the top ``k`` eigenvectors of the covariance ``C = X_cᵀX_c/(N − 1)``
    (X_c the centred images) by power iteration with deflation - component j is the dominant eigenvector of
    ``C − Σ_{i<j} λ_i v_i v_iᵀ``, never formed: only products with C - against ``numpy.linalg.eigh`` of C. Power
    iteration converges at the rate ``λ_{j+1}/λ_j`` per step."""
    k = check_int(k, "k", minimum=1, maximum=63)
    X, labels = data.digits()
    mean = X.mean(0)
    Xc = X - mean  # (N, 64)
    n = Xc.shape[0]
    lam, comps, its = [], [], []
    for j in range(k):
        def matvec(v: np.ndarray, j: int = j) -> np.ndarray:  # (C − Σ_{i<j} λ_i v_i v_iᵀ) v, C never formed
            out = Xc.T @ (Xc @ v) / (n - 1)
            for i in range(j):
                out -= lam[i] * comps[i] * (comps[i] @ v)
            return out

        res = linsys.power_iteration(matvec, n=Xc.shape[1], seed=seed + j, tol=tol, max_iter=20000)
        lam.append(res.eigenvalue)
        comps.append(np.asarray(res.eigenvector))
        its.append(res.iterations)
    w, V = np.linalg.eigh(Xc.T @ Xc / (n - 1))
    w, V = w[::-1], V[:, ::-1]
    P = np.array(comps)
    return DigitsPCA(eigenvalues_power=np.array(lam), eigenvalues_eigh=w[:k], components_power=P,
                     components_eigh=V[:, :k].T, iterations=np.array(its),
                     cosine=np.abs(np.sum(P * V[:, :k].T, axis=1)), gap_ratio=w[1:k + 1] / w[:k],
                     explained=w[:k] / w.sum(), projection=Xc @ P[:2].T, labels=labels, mean=mean)


# ---------------------------------------------------------------------------------------------------------------
# 3. The one-dimensional second-derivative test
# ---------------------------------------------------------------------------------------------------------------

#: The functions of :func:`derivative_test`: name -> (torch function, starts for Newton, the plotted interval).
FUNCTIONS_1D: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], tuple[float, ...], tuple[float, float]]] = {
    # f' = x²(x² − 1): a maximum at −1, a minimum at 1, and at 0 f' = f'' = 0, f''' = −2: an inflection point
    "x⁵/5 − x³/3": (lambda x: x**5 / 5 - x**3 / 3, (-1.4, 0.4, 1.4), (-1.45, 1.45)),
    # f'' = 12x² is 0 at the minimum x = 0: the second derivative cannot tell; the fourth (24 > 0) can
    "x⁴": (lambda x: x**4, (1.0,), (-1.2, 1.2)),
}


@dataclass
class StationaryPoint1D:
    """A stationary point x* found by Newton's iteration (``iterations``), f(x*) (``value``), its ``derivatives``
    f'(x*) ... f⁽⁴⁾(x*) (4,), the ``order`` of the first derivative beyond f' that is not zero (2: the
    second-derivative test decides; 0: none up to the fourth), its ``kind`` ('minimum', 'maximum', 'inflection')
    and what the second derivative alone says (``second_derivative_says``)."""

    x: float
    value: float
    derivatives: list[float]
    order: int
    kind: str
    second_derivative_says: str
    iterations: int


@dataclass
class DerivativeTest:
    """What :func:`derivative_test` returns for one function: the grid ``x`` (G,) with ``f``, ``df``, ``d2f``
    (G,) on it, the stationary ``points`` Newton found from the starts, and ``zero_tol``: below
    ``zero_tol · max_grid |f⁽ⁿ⁾|`` a derivative counts as zero."""

    name: str
    x: np.ndarray
    f: np.ndarray
    df: np.ndarray
    d2f: np.ndarray
    points: list[StationaryPoint1D]
    zero_tol: float


def _derivatives(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, order: int) -> list[torch.Tensor]:
    """``[f'(x), ..., f⁽ᵒʳᵈᵉʳ⁾(x)]`` elementwise on a 1-D tensor x, by repeated torch autograd."""
    out, g = [], x.detach().requires_grad_(True)
    y = f(g)
    for _ in range(order):
        (y,) = torch.autograd.grad(y.sum(), g, create_graph=True)
        out.append(y)
    return [d.detach() for d in out]


def derivative_test(name: str = "x⁵/5 − x³/3", *, zero_tol: float = 1e-6, grid: int = 401) -> DerivativeTest:
    """The deck's test for f: R -> R at each stationary point Newton reaches from the starts of
    :data:`FUNCTIONS_1D` (:func:`kernelscope.optim.stationary_point`, to ``|f'| ≤ 1e-24``): ``f'' > 0`` a minimum,
    ``f'' < 0`` a maximum; where ``f'' = 0`` the test is silent and the first non-zero higher derivative f⁽ⁿ⁾
    decides (Taylor: ``f(x* + h) − f(x*) ≈ f⁽ⁿ⁾ hⁿ/n!``): n even - a minimum or a maximum by its sign, n odd - an
    inflection point, where f keeps rising (or falling) through a flat spot. A derivative counts as zero below
    ``zero_tol`` times its largest size on the plotted interval (Newton converges only linearly to a double root
    of f', so x* is off by ~1e-12 there)."""
    if name not in FUNCTIONS_1D:
        raise ValidationError("name", "one of " + ", ".join(repr(k) for k in FUNCTIONS_1D), repr(name))
    f, starts, (lo, hi) = FUNCTIONS_1D[name]
    xs = torch.linspace(lo, hi, check_int(grid, "grid", minimum=3), dtype=torch.float64)
    d_grid = _derivatives(f, xs, 4)
    scale = [float(d.abs().max()) for d in d_grid]
    points: list[StationaryPoint1D] = []
    for x0 in starts:
        sp = optim.stationary_point(lambda w: f(w).sum(), np.array([x0]), tol=1e-24, max_iter=200)
        xt = torch.as_tensor(sp.x, dtype=torch.float64)
        ds = [float(d[0]) for d in _derivatives(f, xt, 4)]
        order = next((n for n in range(2, 5) if abs(ds[n - 1]) > zero_tol * scale[n - 1]), 0)
        if order == 0:
            kind = "undecided"
        elif order % 2:
            kind = "inflection"
        else:
            kind = "minimum" if ds[order - 1] > 0 else "maximum"
        says = ("minimum" if ds[1] > 0 else "maximum") if order == 2 else "silent (f'' = 0)"
        points.append(StationaryPoint1D(x=float(sp.x[0]), value=float(sp.value), derivatives=ds, order=order,
                                        kind=kind, second_derivative_says=says, iterations=sp.iterations))
    return DerivativeTest(name=name, x=xs.numpy(), f=f(xs).numpy(), df=d_grid[0].numpy(), d2f=d_grid[1].numpy(),
                          points=points, zero_tol=zero_tol)


# ---------------------------------------------------------------------------------------------------------------
# 4. Sampling: the sample mean, the Monte-Carlo dual activation, a conditional probability
# ---------------------------------------------------------------------------------------------------------------

def gaussian_pair(rho: float, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n draws of the centred Gaussian pair ``(u, v)`` with unit variances and correlation ρ - THEORY.md §3's
    ``(b·x, b·x')`` for unit inputs at angle ``θ = arccos ρ`` - as ``u = z₁``, ``v = ρ z₁ + √(1 − ρ²) z₂``.
    Returns u, v of shape (n,)."""
    if not -1.0 <= float(rho) <= 1.0:
        raise ValidationError("rho", "a correlation in [-1, 1]", repr(rho))
    z = np.random.default_rng(check_int(seed, "seed", minimum=0)).standard_normal((2, check_int(n, "n", minimum=1)))
    return z[0], rho * z[0] + math.sqrt(1.0 - rho * rho) * z[1]


def relu_moments(rho: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For unit variances and correlation ρ: ``E[relu(u) relu(v)] = J₁(θ)/(2π)`` (the ReLU dual, from
    :func:`kernelscope.duals.abrelu_dual`) and the variance of ``relu(u) relu(v)``, ``J₂(θ)/(2π) − (J₁(θ)/(2π))²``
    with Cho & Saul's (2009) ``J₂(θ) = 3 sin θ cos θ + (π − θ)(1 + 2 cos² θ)``, θ = arccos ρ."""
    r = np.atleast_1d(np.asarray(rho, dtype=float))
    one = torch.ones(r.shape, dtype=torch.float64)
    mean = abrelu_dual(torch.as_tensor(r.copy()), one, one)[0].numpy()
    th = np.arccos(np.clip(r, -1.0, 1.0))
    second = (3 * np.sin(th) * np.cos(th) + (np.pi - th) * (1 + 2 * np.cos(th) ** 2)) / (2 * np.pi)
    return mean, second - mean**2


@dataclass
class SampleMeanRate:
    """What :func:`sample_mean_rate` returns: at correlation ``rho``, for each sample size ``k`` (K,), the RMS
    error over ``repeats`` independent sample means of ``relu(u)relu(v)`` against the expectation, ``rms_error``
    (K,), and the theory ``sigma/√k`` (``sigma`` the standard deviation of one draw, closed form); the fitted
    log-log ``slope`` (theory −½) and ``intercept``."""

    rho: float
    k: np.ndarray
    rms_error: np.ndarray
    sigma: float
    expectation: float
    repeats: int
    slope: float
    intercept: float


def sample_mean_rate(rho: float = 0.5, ks: Sequence[int] = (10, 100, 1000, 10000), repeats: int = 200,
                     seed: int = 0) -> SampleMeanRate:
    """The sample mean ``(1/k) Σ_j relu(u_j) relu(v_j)`` of k draws converges to ``E[relu(u)relu(v)]`` (the
    law of large numbers) with error ``σ/√k`` (the central limit theorem): measured as the RMS over ``repeats``
    independent means, for each k - the 1/√k of THEORY.md §3's random features."""
    ks = np.array([check_int(k, "ks", minimum=1) for k in ks])
    repeats = check_int(repeats, "repeats", minimum=2)
    mean, var = relu_moments(rho)
    rms = []
    for i, k in enumerate(ks):
        u, v = gaussian_pair(rho, int(k) * repeats, seed=1000 * seed + i)
        means = (np.maximum(u, 0) * np.maximum(v, 0)).reshape(repeats, int(k)).mean(1)
        rms.append(float(np.sqrt(np.mean((means - mean[0]) ** 2))))
    slope, intercept = fit_slope(ks, rms)
    return SampleMeanRate(float(rho), ks, np.array(rms), float(np.sqrt(var[0])), float(mean[0]), repeats, slope,
                          intercept)


@dataclass
class DualCheck:
    """What :func:`dual_check` returns: for each correlation ``rho`` (R,), the Monte-Carlo mean of
    ``relu(u)relu(v)`` over ``n`` draws, its standard error ``se`` (sample standard deviation/√n), the closed form
    ``closed``, and ``z = (mean − closed)/se``; ``u``, ``v`` (n_scatter,) the first draws at ``rho_scatter``;
    ``rho_grid`` (G,) and ``closed_grid`` (G,) the closed form over [−1, 1], for the figure."""

    rho: np.ndarray
    n: int
    mean: np.ndarray
    se: np.ndarray
    closed: np.ndarray
    z: np.ndarray
    rho_scatter: float
    u: np.ndarray
    v: np.ndarray
    rho_grid: np.ndarray
    closed_grid: np.ndarray


def dual_check(rhos: Sequence[float] = (-0.9, -0.5, 0.0, 0.5, 0.9), n: int = 20000, *, rho_scatter: float = 0.7,
               n_scatter: int = 1500, seed: int = 0) -> DualCheck:
    """The ReLU dual activation ``E[relu(u)relu(v)]`` by Monte Carlo against its closed form
    ``(sin θ + (π − θ) cos θ)/(2π)`` at several correlations ρ = cos θ: with n draws each, the estimate lands
    within a few standard errors of the truth (|z| < 2 about 95% of the time)."""
    n = check_int(n, "n", minimum=2)
    rhos = np.array([float(r) for r in rhos])
    means, ses = [], []
    for i, r in enumerate(rhos):
        u, v = gaussian_pair(r, n, seed=1000 * seed + 100 + i)
        g = np.maximum(u, 0) * np.maximum(v, 0)
        means.append(g.mean())
        ses.append(g.std(ddof=1) / math.sqrt(n))
    closed = relu_moments(rhos)[0]
    mean, se = np.array(means), np.array(ses)
    u, v = gaussian_pair(rho_scatter, n_scatter, seed=1000 * seed + 300)
    grid = np.linspace(-1.0, 1.0, 201)
    return DualCheck(rhos, n, mean, se, closed, (mean - closed) / se, float(rho_scatter), u, v, grid,
                     relu_moments(grid)[0])


@dataclass
class ConditionalCheck:
    """What :func:`conditional_check` returns. Events ``A = {u > 0}``, ``B = {v > 0}`` of the Gaussian pair at each
    correlation ``rho`` (R,), from n draws: the frequencies ``p_a``, ``p_ab`` and ``p_b_given_a`` = #AB/#A with its
    standard error ``se``; the exact ``exact_ab = (π − θ)/(2π)`` (Sheppard 1899; also the ReLU derivative kernel
    ``E[relu'(u)relu'(v)]``) and ``exact_b_given_a = 1 − θ/π``; ``z`` the standardised difference; and
    ``bayes_gap`` the largest ``|P(B|A)P(A) − P(A|B)P(B)|`` between the frequencies (0 up to rounding: both are
    #AB/n); ``rho_grid`` (G,) with ``exact_b_given_a_grid`` and ``exact_ab_grid`` (G,) for the figure."""

    rho: np.ndarray
    n: int
    p_a: np.ndarray
    p_ab: np.ndarray
    p_b_given_a: np.ndarray
    se: np.ndarray
    exact_ab: np.ndarray
    exact_b_given_a: np.ndarray
    z: np.ndarray
    bayes_gap: float
    rho_grid: np.ndarray
    exact_b_given_a_grid: np.ndarray
    exact_ab_grid: np.ndarray


def conditional_check(rhos: Sequence[float] = (-0.9, -0.5, 0.0, 0.5, 0.9), n: int = 20000, seed: int = 0
                      ) -> ConditionalCheck:
    """``P(B|A) = P(AB)/P(A)`` by counting, against the closed form. Given that a random ReLU unit fires on x
    (``u = b·x > 0``), how likely does it fire on x' too? ``P(v > 0 | u > 0) = 1 − θ/π``: certain for x' = x,
    a coin toss for orthogonal inputs, never for x' = −x."""
    n = check_int(n, "n", minimum=2)
    rhos = np.array([float(r) for r in rhos])
    pa, pab, pba, se, gap = [], [], [], [], 0.0
    for i, r in enumerate(rhos):
        u, v = gaussian_pair(r, n, seed=1000 * seed + 200 + i)
        a, b = u > 0, v > 0
        na, nab, nb = int(a.sum()), int((a & b).sum()), int(b.sum())
        p = nab / na
        pa.append(na / n)
        pab.append(nab / n)
        pba.append(p)
        se.append(math.sqrt(p * (1 - p) / na) if 0 < p < 1 else 1.0 / na)
        gap = max(gap, abs(p * na / n - (nab / nb) * nb / n))
    def exact(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # P(AB) = (π − θ)/(2π), P(B|A) = 1 − θ/π
        th = np.arccos(r)
        return (np.pi - th) / (2 * np.pi), 1 - th / np.pi

    exact_ab, exact_ba = exact(rhos)
    grid = np.linspace(-1.0, 1.0, 201)
    grid_ab, grid_ba = exact(grid)
    pba_, se_ = np.array(pba), np.array(se)
    return ConditionalCheck(rhos, n, np.array(pa), np.array(pab), pba_, se_, exact_ab, exact_ba,
                            (pba_ - exact_ba) / se_, float(gap), grid, grid_ba, grid_ab)
