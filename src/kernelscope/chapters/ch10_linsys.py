"""Chapter 1: linear systems, from ``3x + 4y = 12`` to the pseudoinverse (THEORY.md §1)."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .. import linsys
from ..experiments.linsys import solve_system
from ..story import Chapter, ChapterResult, StepContext, Table

INTRO = """
<p>A single equation <code>3x + 4y = 12</code> has infinitely many solutions: a whole line. Which one should a
method return? The one <em>closest to the origin</em>, which lies on the normal direction (3, 4):
<code>x* = (12/25)·(3, 4) = (36/25, 48/25)</code>, at distance 12/5. In general the least-norm solution of
<code>Ax = b</code> is <code>x* = Aᵀ(AAᵀ)⁻¹b</code>: a combination of the rows of A &mdash; it lives in the
<strong>row space</strong>. This is the representer theorem in its simplest form, and it is the thread of the whole
story: kernel regression and trained neural networks will again be combinations of what they were shown.</p>
<p>When <code>AAᵀ</code> is singular the pseudoinverse <code>A⁺ = VΣ⁺Uᵀ</code> answers every case: the exact
solution of least norm when b is in the column space, the least-squares solution of least norm when it is not
(then the residual lies in the left null space). The SVD also hands out orthonormal bases of the four fundamental
subspaces.</p>
"""


def run(ctx: StepContext) -> ChapterResult:
    import matplotlib.pyplot as plt

    from ..plots import linsys as P

    out = ChapterResult()
    rows = []

    # 1. One line in the plane.
    A1, b1 = np.array([[3.0, 4.0]]), np.array([12.0])
    s1 = solve_system(A1, b1)
    r1 = s1.result
    exact1 = np.array([36 / 25, 48 / 25])
    fig, ax = plt.subplots(figsize=(5.6, 5.4))
    P.plot_line(s1, ax=ax)
    out.figures.append(ctx.savefig(fig, "line.png", "3x + 4y = 12: the least-norm point (36/25, 48/25) is where "
                                   "the perpendicular from the origin meets the line; its length is 12/5."))
    rows.append(["3x + 4y = 12", r1.kind, r1.rank, float(np.linalg.norm(r1.x)), 12 / 5,
                 float(np.abs(r1.x - exact1).max()), r1.residual_norm])

    # 2. One plane in 3-D: x + 2y + 2z = 9 -> x* = (1, 2, 2), distance 3.
    A2, b2 = np.array([[1.0, 2.0, 2.0]]), np.array([9.0])
    s2 = solve_system(A2, b2)
    r2 = s2.result
    fig = plt.figure(figsize=(6, 5.6))
    P.plot_plane(s2, ax=fig.add_subplot(111, projection="3d"))
    out.figures.append(ctx.savefig(fig, "plane.png", "The plane x + 2y + 2z = 9: the least-norm solution "
                                   "(1, 2, 2) sits on the plane's normal, at distance 3 from the origin."))
    rows.append(["x + 2y + 2z = 9", r2.kind, r2.rank, float(np.linalg.norm(r2.x)), 3.0,
                 float(np.abs(r2.x - np.array([1.0, 2.0, 2.0])).max()), r2.residual_norm])

    # 3. Two planes: their intersection is a line; x* is in the span of both normals.
    A3, b3 = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 2.0]]), np.array([3.0, 2.0])
    s3 = solve_system(A3, b3)
    r3 = s3.result
    exact3 = A3.T @ np.linalg.solve(A3 @ A3.T, b3)
    S3 = s3.subspaces
    fig = plt.figure(figsize=(6, 5.6))
    P.plot_two_planes(s3, ax=fig.add_subplot(111, projection="3d"))
    out.figures.append(ctx.savefig(fig, "two_planes.png", "Two planes meet in a line (x* plus the null space); "
                                   "the least-norm point is perpendicular to that line, in the span of the normals."))
    rows.append(["x+y+z = 3, x−y+2z = 2", r3.kind, r3.rank, float(np.linalg.norm(r3.x)),
                 float(np.linalg.norm(exact3)), float(np.abs(r3.x - exact3).max()), r3.residual_norm])
    orth = float(abs(S3.null[:, 0] @ r3.x))

    # 4. The 8×8 rank-4 example, b in and not in the column space.
    rng = np.random.default_rng(ctx.seed)
    A4 = rng.integers(-1, 2, (8, 4)).astype(float) @ rng.integers(-1, 2, (4, 8)).astype(float)
    while np.linalg.matrix_rank(A4) != 4:  # the story needs rank exactly 4
        A4 = rng.integers(-1, 2, (8, 4)).astype(float) @ rng.integers(-1, 2, (4, 8)).astype(float)
    b_in = A4 @ rng.integers(-1, 2, 8).astype(float)
    b_out = b_in + 1.5 * rng.standard_normal(8)
    s_in, s_out = solve_system(A4, b_in, quiet=True), solve_system(A4, b_out, quiet=True)
    r_in, r_out = s_in.result, s_out.result
    S4 = s_in.subspaces
    pinv_np = np.linalg.pinv(A4)
    fig, axes = plt.subplots(2, 1, figsize=(8, 7.4))
    P.plot_subspaces(s_in, ax=axes[0])
    P.plot_subspaces(s_out, ax=axes[1])
    fig.tight_layout()
    out.figures.append(ctx.savefig(fig, "rank4.png", "An 8×8 matrix of rank 4. Top: b in the column space, an exact "
                                   "solution of least norm (residual at rounding level). Bottom: b not in the column "
                                   "space, the least-squares solution of least norm; its residual is orthogonal to the "
                                   "column space."))
    left_null_resid = float(np.linalg.norm(S4.col.T @ r_out.residual))
    rows.append(["8×8 rank 4, b ∈ col(A)", r_in.kind, r_in.rank, float(np.linalg.norm(r_in.x)),
                 float(np.linalg.norm(pinv_np @ b_in)), float(np.abs(r_in.x - pinv_np @ b_in).max()),
                 r_in.residual_norm])
    rows.append(["8×8 rank 4, b ∉ col(A)", r_out.kind, r_out.rank, float(np.linalg.norm(r_out.x)),
                 float(np.linalg.norm(pinv_np @ b_out)), float(np.abs(r_out.x - pinv_np @ b_out).max()),
                 r_out.residual_norm])
    out.tables.append(Table("Systems and their least-norm solutions",
                            ["system", "kind", "rank", "‖x*‖", "‖x*‖ expected", "max |x* − expected|", "‖b − Ax*‖"],
                            rows, note="Expected: closed forms for the first three, numpy.linalg.pinv for the 8×8."))
    out.tables.append(Table("Four fundamental subspaces of the 8×8 rank-4 matrix",
                            ["subspace", "dimension", "basis"],
                            [["row space", S4.dims["row"], "V[:, :4]"], ["null space", S4.dims["null"], "V[:, 4:]"],
                             ["column space", S4.dims["col"], "U[:, :4]"],
                             ["left null space", S4.dims["left_null"], "U[:, 4:]"]]))

    # 5. Ill-conditioning: Hilbert matrices, where truncating tiny singular values is the answer.
    hil_rows = []
    for n in ([6, 10, 14] if ctx.quick else [6, 8, 10, 12, 14, 16]):
        H = sla.hilbert(n)
        bH = H @ np.ones(n)
        rH = solve_system(H, bH, quiet=True).result
        xl = np.linalg.lstsq(H, bH, rcond=None)[0]
        hil_rows.append([n, float(np.linalg.cond(H)), rH.rank, rH.method, float(np.linalg.norm(bH - H @ rH.x)),
                         float(np.linalg.norm(bH - H @ xl))])
    out.tables.append(Table("Hilbert matrices: rank found with rcond = eps·n, and residuals",
                            ["n", "cond(H)", "numerical rank", "path", "‖b − Hx‖ kernelscope", "‖b − Hx‖ NumPy lstsq"],
                            hil_rows))

    # 6. Power iteration on a symmetric matrix with a known spectrum.
    n = 50
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    ev = np.concatenate([[10.0, 8.0], np.linspace(5, 0.1, n - 2)])
    M = (Q * ev) @ Q.T
    pw = linsys.power_iteration(M, seed=ctx.seed, tol=1e-12, max_iter=500)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    P.plot_power_iteration(pw, ev, ax=ax)
    out.figures.append(ctx.savefig(fig, "power.png", "Power iteration v ← Av/‖Av‖ converges to the dominant "
                                   "eigenpair at the rate (λ₂/λ₁)^(2k) in the Rayleigh quotient."))

    out.numbers = {
        "line": {"x": r1.x, "distance": float(np.linalg.norm(r1.x)), "expected_distance": 12 / 5, "kind": r1.kind},
        "plane": {"x": r2.x, "distance": float(np.linalg.norm(r2.x)), "kind": r2.kind},
        "two_planes": {"x": r3.x, "kind": r3.kind, "x_dot_line_direction": orth},
        "rank4": {"rank": S4.rank, "dims": S4.dims, "kind_in": r_in.kind, "kind_out": r_out.kind,
                  "residual_in": r_in.residual_norm, "residual_out": r_out.residual_norm,
                  "residual_component_in_col_space": left_null_resid},
        "power_iteration": {"eigenvalue": pw.eigenvalue, "expected": 10.0, "iterations": pw.iterations,
                            "converged": pw.converged},
    }
    out.findings = [
        f"3x + 4y = 12: x* = ({r1.x[0]:.6g}, {r1.x[1]:.6g}) = (36/25, 48/25), distance {np.linalg.norm(r1.x):.15g} "
        f"(12/5 = 2.4).",
        f"Two planes: x* is orthogonal to their line of intersection (x*·d = {orth:.1e}).",
        f"8×8 rank-4 matrix: b in the column space gives '{r_in.kind}' with residual {r_in.residual_norm:.1e}; "
        f"b outside gives '{r_out.kind}' with residual {r_out.residual_norm:.3g}, whose component in the column space "
        f"is {left_null_resid:.1e}: it lies in the left null space.",
        f"Power iteration found λ₁ = {pw.eigenvalue:.12g} (exact 10) in {pw.iterations} iterations.",
    ]
    return out


CHAPTER = Chapter(key="linsys", order=10, title="1. Linear systems: least norm and the pseudoinverse",
                  intro=INTRO, run=run)
