"""Figures of the linear-systems chapter (THEORY.md §1). Each takes a solved system
(:class:`kernelscope.experiments.linsys.LinearSystem`: A, b, the solution and the four subspaces), draws, and
returns the Axes."""

from __future__ import annotations

import numpy as np

from .._arrays import ValidationError, as_numpy
from . import new_axes

__all__ = ["plot_line", "plot_lines", "plot_plane", "plot_two_planes", "plot_subspaces", "plot_system",
           "plot_power_iteration"]

_SOL = dict(color="#c0392b", s=60, zorder=5)


def _np(a):
    return np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a, dtype=np.float64)


def plot_line(system, ax=None):
    """One equation in two unknowns ``a·x = b``: the solution line, the least-norm point ``x*`` on the normal
    direction, and the perpendicular from the origin (its length ``|b|/‖a‖`` is the distance to the line)."""
    result, A, b = system.result, system.A, system.b
    A = as_numpy(A, "A", ndim=2)
    if A.shape != (1, 2):
        raise ValidationError("A", "shape (1, 2) (one equation, two unknowns)", f"shape {A.shape}")
    a = A[0]
    beta = float(np.ravel(_np(b))[0])
    x = _np(result.x).ravel()
    ax = new_axes(ax, (5.2, 5.0))
    r = max(1.5 * np.linalg.norm(x), 1.0)
    lim = (-0.4 * r, 1.6 * r)
    direction = np.array([-a[1], a[0]]) / np.linalg.norm(a)
    t = np.linspace(-3 * r, 3 * r, 2)
    pts = x[None, :] + t[:, None] * direction[None, :]
    ax.plot(pts[:, 0], pts[:, 1], color="#2c5aa0", lw=2,
            label=f"{a[0]:g}x + {a[1]:g}y = {beta:g}  (all solutions)")
    ax.annotate("", xy=x, xytext=(0, 0), arrowprops=dict(arrowstyle="->", color="#c0392b", lw=1.8))
    ax.scatter(*x, **_SOL, label=f"least-norm x* = ({x[0]:.4g}, {x[1]:.4g}), ‖x*‖ = {np.linalg.norm(x):.4g}")
    n_hat = a / np.linalg.norm(a)
    ax.plot([0, 1.4 * r * n_hat[0]], [0, 1.4 * r * n_hat[1]], ls=":", color="gray", label="normal direction a")
    # right-angle marker where the perpendicular meets the line
    s = 0.06 * r
    corner = np.array([x - s * n_hat, x - s * n_hat + s * direction, x + s * direction])
    ax.plot(corner[:, 0], corner[:, 1], color="k", lw=0.8)
    ax.scatter([0], [0], color="k", s=15)
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_aspect("equal")
    ax.axhline(0, color="#bbb", lw=0.6)
    ax.axvline(0, color="#bbb", lw=0.6)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("The solution closest to the origin lies on the normal")
    ax.legend(loc="upper right", fontsize=8)
    return ax


def plot_lines(system, ax=None):
    """Several equations in two unknowns: each line ``a_i·x = b_i`` and the point ``x = A⁺b`` — their crossing
    when they meet in one point, else the least-squares point (of least norm when the lines are parallel)."""
    result, A, b = system.result, as_numpy(system.A, "A", ndim=2), np.ravel(_np(system.b))
    if A.ndim != 2 or A.shape[1] != 2 or b.shape[0] != A.shape[0]:
        raise ValidationError("A", "shape (m, 2) with one right-hand side (equations in two unknowns)",
                              f"shape {A.shape}")
    x = _np(result.x).ravel()
    ax = new_axes(ax, (5.2, 5.0))
    r = max(1.5 * np.linalg.norm(x), 1.0)
    lim = (x[0] - 1.6 * r, x[0] + 1.6 * r), (x[1] - 1.6 * r, x[1] + 1.6 * r)
    import matplotlib

    colors = matplotlib.colormaps["tab10"].colors
    for i, (a, beta) in enumerate(zip(A, b)):
        norm = np.linalg.norm(a)
        if norm == 0:
            continue  # 0·x = b_i draws nothing
        foot = a * beta / norm**2  # the line's point closest to the origin
        direction = np.array([-a[1], a[0]]) / norm
        t = np.array([-6 * r, 6 * r])
        pts = foot[None, :] + t[:, None] * direction[None, :]
        sign = "−" if a[1] < 0 else "+"
        ax.plot(pts[:, 0], pts[:, 1], color=colors[i % 10], lw=2, label=f"{a[0]:g}x {sign} {abs(a[1]):g}y = {beta:g}")
    what = {"unique": "the crossing", "least_norm": "least-norm solution",
            "least_squares": "least-squares point"}.get(result.kind, result.kind)
    ax.scatter(*x, **_SOL, label=f"A⁺b = ({x[0]:.4g}, {x[1]:.4g}): {what}")
    ax.set_xlim(*lim[0])
    ax.set_ylim(*lim[1])
    ax.set_aspect("equal")
    ax.axhline(0, color="#bbb", lw=0.6)
    ax.axvline(0, color="#bbb", lw=0.6)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{A.shape[0]} equations in two unknowns")
    ax.legend(loc="upper right", fontsize=8)
    return ax


def _plane_patch(ax, a, beta, center, half, color, alpha=0.25):
    a = np.asarray(a, float)
    n_hat = a / np.linalg.norm(a)
    # two orthonormal directions inside the plane
    helper = np.eye(3)[np.argmin(np.abs(n_hat))]
    u = np.cross(n_hat, helper)
    u /= np.linalg.norm(u)
    v = np.cross(n_hat, u)
    s, t = np.meshgrid(np.linspace(-half, half, 2), np.linspace(-half, half, 2))
    P = center[None, None, :] + s[..., None] * u + t[..., None] * v
    ax.plot_surface(P[..., 0], P[..., 1], P[..., 2], color=color, alpha=alpha, linewidth=0, shade=False)


def _view_direction(normal, point, angle_deg: float = 60.0) -> tuple[float, float, np.ndarray]:
    """``(elev, azim, d)`` of a camera that sees a plane at ``angle_deg`` from its normal (a face, not an edge),
    from 20-40° above the horizon, from the side of the origin (so the perpendicular from 0 is in front of the
    plane) and not along a coordinate axis (a view along x shows the y-z plane only). ``d`` points to the camera."""
    n_hat = np.asarray(normal, float) / np.linalg.norm(normal)
    side = -1.0 if float(np.dot(point, n_hat)) > 0 else 1.0  # the origin's side of the plane
    best = None
    for elev in range(20, 41):
        for azim in range(0, 360):
            e, a = np.radians(elev), np.radians(azim)
            d = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
            if side * float(d @ n_hat) <= 0:
                continue
            angle = np.degrees(np.arccos(min(1.0, abs(float(d @ n_hat)))))
            off_axis = min(abs((azim + 45) % 90 - 45), 20)  # degrees from the nearest axis direction, capped
            score = abs(angle - angle_deg) + 0.5 * (20 - off_axis)
            if best is None or score < best[0]:
                best = (score, float(elev), float(azim), d)
    _, elev, azim, d = best
    return elev, azim, d


def _right_angle(ax, corner, u, v, size: float, color: str = "k") -> None:
    """A small square mark at ``corner`` between the unit directions ``u`` and ``v`` (3-D)."""
    c, u, v = (np.asarray(a, float) for a in (corner, u, v))
    pts = np.array([c + size * u, c + size * (u + v), c + size * v])
    ax.plot(pts[:, 0], pts[:, 1], pts[:, 2], color=color, lw=1.2)


def plot_plane(system, ax=None):
    """One equation in three unknowns: the plane of solutions, its normal, and the least-norm point on it."""
    result, A, b = system.result, system.A, system.b
    A = as_numpy(A, "A", ndim=2)
    if A.shape != (1, 3):
        raise ValidationError("A", "shape (1, 3) (one plane in 3-D)", f"shape {A.shape}")
    x = _np(result.x).ravel()
    ax = new_axes(ax, (5.2, 5.0), projection="3d")
    r = max(np.linalg.norm(x), 1.0)
    _plane_patch(ax, A[0], float(np.ravel(_np(b))[0]), x, 1.2 * r, "#2c5aa0")
    ax.plot([0, x[0]], [0, x[1]], [0, x[2]], color="#c0392b", lw=2, label="perpendicular from 0")
    ax.scatter(*x, **_SOL, label=f"x* = ({x[0]:.3g}, {x[1]:.3g}, {x[2]:.3g})")
    n_hat = A[0] / np.linalg.norm(A[0])
    ax.quiver(*x, *(0.6 * r * n_hat), color="k", arrow_length_ratio=0.15, label="normal a")
    ax.scatter([0], [0], [0], color="k", s=15)
    _equal_3d(ax, np.vstack([np.zeros(3), x, x + 1.2 * r, x - 1.2 * r]))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    # an orthographic camera at 60° from the normal: the plane shows as a face, and the right angle between the
    # perpendicular and the in-plane direction u (chosen across the line of sight) is drawn as a right angle
    elev, azim, d = _view_direction(A[0], x)
    ax.set_proj_type("ortho")
    ax.view_init(elev=elev, azim=azim)
    u = np.cross(n_hat, d)
    u /= np.linalg.norm(u)
    ax.plot(*np.array([x - 1.0 * r * u, x + 1.0 * r * u]).T, color="#2c5aa0", lw=1.2, ls="--",
            label="a line in the plane through x*")
    _right_angle(ax, x, -n_hat if float(x @ n_hat) > 0 else n_hat, u, 0.18 * r)
    ax.set_title("A plane: x* is along its normal\n(the perpendicular from 0 meets the plane at a right angle)",
                 fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_two_planes(system, ax=None):
    """Two equations in three unknowns: two planes, their line of intersection and the least-norm point, which
    lies in the span of both normals (perpendicular to the line)."""
    result, A, b = system.result, system.A, system.b
    A = as_numpy(A, "A", ndim=2)
    if A.shape != (2, 3):
        raise ValidationError("A", "shape (2, 3) (two planes in 3-D)", f"shape {A.shape}")
    bb = _np(b).ravel()
    x = _np(result.x).ravel()
    ax = new_axes(ax, (5.2, 5.0), projection="3d")
    r = max(np.linalg.norm(x), 1.0)
    _plane_patch(ax, A[0], bb[0], x, 1.3 * r, "#2c5aa0", 0.2)
    _plane_patch(ax, A[1], bb[1], x, 1.3 * r, "#27ae60", 0.2)
    S = system.subspaces
    if S.null.shape[1]:
        d = S.null[:, 0]
        t = np.linspace(-1.5 * r, 1.5 * r, 2)
        L = x[None, :] + t[:, None] * d[None, :]
        ax.plot(L[:, 0], L[:, 1], L[:, 2], color="k", lw=2, label="intersection line (x* + null space)")
    ax.plot([0, x[0]], [0, x[1]], [0, x[2]], color="#c0392b", lw=2, label="perpendicular from 0")
    ax.scatter(*x, **_SOL, label=f"x* = ({x[0]:.3g}, {x[1]:.3g}, {x[2]:.3g})")
    ax.scatter([0], [0], [0], color="k", s=15)
    _equal_3d(ax, np.vstack([np.zeros(3), x + 1.3 * r, x - 1.3 * r]))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax.set_title("Two planes: x* is in the span of both normals")
    ax.legend(loc="upper left", fontsize=8)
    return ax


def _equal_3d(ax, pts):
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    c, h = (lo + hi) / 2, (hi - lo).max() / 2
    ax.set_xlim(c[0] - h, c[0] + h)
    ax.set_ylim(c[1] - h, c[1] + h)
    ax.set_zlim(c[2] - h, c[2] + h)
    try:
        ax.set_box_aspect((1, 1, 1))
    except AttributeError:  # pragma: no cover
        pass


def plot_subspaces(system, ax=None, *, title: str | None = None):
    """A general system: bars of the solution x, its row-space and null-space parts, b and the residual, with
    the four subspaces' dimensions and the kind of solution in the title."""
    result, A, b = system.result, system.A, system.b
    A = as_numpy(A, "A", ndim=2)
    S = system.subspaces
    x = _np(result.x).ravel()
    bb = _np(b).ravel()
    res = _np(result.residual).ravel()
    ax = new_axes(ax, (7.5, 4.2))
    n, m = len(x), len(bb)
    ax.bar(np.arange(n) - 0.2, x, width=0.4, color="#c0392b", label="x = A⁺b (row-space part)")
    ax.bar(np.arange(n) + 0.2, _np(result.null_part).ravel(), width=0.4, color="#7f8c8d",
           label="null-space part of x (≈ 0)")
    off = n + 1.5
    ax.bar(off + np.arange(m) - 0.2, bb, width=0.4, color="#2c5aa0", label="b")
    ax.bar(off + np.arange(m) + 0.2, res, width=0.4, color="#f39c12", label="residual b − Ax")
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(n + 0.25, color="#bbb", lw=0.8)
    ax.set_xticks(list(range(n)) + list(off + np.arange(m)))
    ax.set_xticklabels([f"x{i + 1}" for i in range(n)] + [f"b{i + 1}" for i in range(m)], fontsize=8)
    d = S.dims
    ax.set_title(title or (f"{result.kind}: rank {S.rank}, dim row {d['row']}, null {d['null']}, "
                           f"col {d['col']}, left null {d['left_null']}; ‖r‖ = {result.residual_norm:.2e}"),
                 fontsize=9)
    ax.legend(fontsize=8, ncol=2, loc="best")
    return ax


def plot_system(system, ax=None, figsize: tuple[float, float] = (6, 5.6)):
    """The picture that fits the system's shape: a line (1×2), lines (m×2), a plane (1×3), two planes (2×3),
    otherwise bars. Without ``ax``, a new figure of ``figsize`` (3-D axes for the planes)."""
    shape = as_numpy(system.A, "A", ndim=2).shape
    draw = {(1, 2): plot_line, (1, 3): plot_plane, (2, 3): plot_two_planes}.get(shape)
    if draw is None:
        draw = plot_lines if shape[1] == 2 and np.ndim(system.b) == 1 else plot_subspaces
    projection = "3d" if draw in (plot_plane, plot_two_planes) else None
    return draw(system, new_axes(ax, figsize, projection=projection))


def plot_power_iteration(result, true_eigenvalues, ax=None):
    """Error of the Rayleigh quotient along power iteration against the rate ``(λ₂/λ₁)^{2k}`` expected for a
    symmetric matrix. ``true_eigenvalues``: the matrix's eigenvalues (any order)."""
    ev = np.sort(np.abs(np.asarray(true_eigenvalues, dtype=float)))[::-1]
    lam1 = ev[0]
    hist = np.asarray(result.history, dtype=float)
    k = np.arange(1, len(hist) + 1)
    err = np.abs(hist - lam1) / lam1
    ax = new_axes(ax, (6, 4))
    ax.semilogy(k, np.maximum(err, 1e-17), "o-", ms=3, color="#2c5aa0",
                label=r"$|\lambda_k - \lambda_1|\, /\, \lambda_1$ (Rayleigh quotient)")
    rate = (ev[1] / lam1) ** 2
    ref = err[0] * rate ** (k - 1)
    ax.semilogy(k, np.maximum(ref, 1e-17), "--", color="#c0392b", label=f"(λ₂/λ₁)^(2k), λ₂/λ₁ = {ev[1] / lam1:.3f}")
    ax.set_xlabel("iteration k")
    ax.set_ylabel("relative error")
    ax.set_title(f"Power iteration: λ₁ = {result.eigenvalue:.10g} in {result.iterations} steps")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return ax
