"""Chapter 1: linear systems, from ``3x + 4y = 12`` to the pseudoinverse (THEORY.md §1).

Text and figures; the experiments are :mod:`kernelscope.experiments.linsys`.
"""

from __future__ import annotations

import numpy as np

from ..story import Chapter, ChapterResult, StepContext, Table, fmt

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
    from ..experiments.linsys import check_least_norm, hilbert_study, power_iteration_study, rank_deficient_example
    from ..plots import linsys as P
    from ..plots import new_figure

    out = ChapterResult()

    def row(name, c):
        r = c.system.result
        return [name, r.kind, r.rank, c.norm, c.expected_norm, c.max_error, r.residual_norm]

    # 1. One line in the plane: x* = (12/25)·(3, 4), at distance 12/5.
    c1 = check_least_norm(np.array([[3.0, 4.0]]), np.array([12.0]), expected=[36 / 25, 48 / 25])
    r1 = c1.system.result
    fig = new_figure((5.6, 5.4))
    ax = fig.subplots()
    P.plot_line(c1.system, ax=ax)
    out.figures.append(ctx.savefig(fig, "line.png", "3x + 4y = 12: the least-norm point (36/25, 48/25) is where "
                                   "the perpendicular from the origin meets the line; its length is 12/5."))

    # 2. One plane in 3-D: x + 2y + 2z = 9 -> x* = (1, 2, 2), distance 3.
    c2 = check_least_norm(np.array([[1.0, 2.0, 2.0]]), np.array([9.0]), expected=[1.0, 2.0, 2.0])
    fig = new_figure((6, 5.6))
    P.plot_plane(c2.system, ax=fig.add_subplot(111, projection="3d"))
    out.figures.append(ctx.savefig(fig, "plane.png", "The plane x + 2y + 2z = 9: the least-norm solution "
                                   "(1, 2, 2) sits on the plane's normal, at distance 3 from the origin."))

    # 3. Two planes: their intersection is a line; x* = Aᵀ(AAᵀ)⁻¹b is in the span of both normals.
    A3, b3 = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 2.0]]), np.array([3.0, 2.0])
    c3 = check_least_norm(A3, b3, expected=A3.T @ np.linalg.solve(A3 @ A3.T, b3))
    fig = new_figure((6, 5.6))
    P.plot_two_planes(c3.system, ax=fig.add_subplot(111, projection="3d"))
    out.figures.append(ctx.savefig(fig, "two_planes.png", "Two planes meet in a line (x* plus the null space); "
                                   "the least-norm point is perpendicular to that line, in the span of the normals."))
    orth = c3.null_component  # |x*·d|, d the direction of the line

    # 4. The 8×8 rank-4 example, b in and not in the column space.
    rng = np.random.default_rng(ctx.seed)  # the rank-4 example draws first, then the power-iteration matrix
    ex = rank_deficient_example(rng)
    c_in, c_out = ex.inside, ex.outside
    r_in, r_out = c_in.system.result, c_out.system.result
    S4 = c_in.system.subspaces
    fig = new_figure((8, 7.4))
    axes = fig.subplots(2, 1)
    P.plot_subspaces(c_in.system, ax=axes[0])
    P.plot_subspaces(c_out.system, ax=axes[1])
    fig.tight_layout()
    out.figures.append(ctx.savefig(fig, "rank4.png", "An 8×8 matrix of rank 4. Top: b in the column space, an exact "
                                   "solution of least norm (residual at rounding level). Bottom: b not in the column "
                                   "space, the least-squares solution of least norm; its residual is orthogonal to the "
                                   "column space."))
    rows = [row("3x + 4y = 12", c1), row("x + 2y + 2z = 9", c2), row("x+y+z = 3, x−y+2z = 2", c3),
            row("8×8 rank 4, b ∈ col(A)", c_in), row("8×8 rank 4, b ∉ col(A)", c_out)]
    out.tables.append(Table("Systems and their least-norm solutions",
                            ["system", "kind", "rank", "‖x*‖", "‖x*‖ expected", "max |x* − expected|", "‖b − Ax*‖"],
                            rows, note="Expected: closed forms for the first three, numpy.linalg.pinv for the 8×8."))
    out.tables.append(Table("Four fundamental subspaces of the 8×8 rank-4 matrix",
                            ["subspace", "dimension", "basis"],
                            [["row space", S4.dims["row"], "V[:, :4]"], ["null space", S4.dims["null"], "V[:, 4:]"],
                             ["column space", S4.dims["col"], "U[:, :4]"],
                             ["left null space", S4.dims["left_null"], "U[:, 4:]"]]))

    # 5. Ill-conditioning: Hilbert matrices, where truncating tiny singular values is the answer.
    hilbert = hilbert_study([6, 10, 14] if ctx.quick else [6, 8, 10, 12, 14, 16])
    out.tables.append(Table("Hilbert matrices: rank found with rcond = eps·n, and residuals",
                            ["n", "cond(H)", "numerical rank", "path", "‖b − Hx‖ kernelscope", "‖b − Hx‖ NumPy lstsq"],
                            [[h.n, h.cond, h.rank, h.method, h.residual, h.residual_lstsq] for h in hilbert]))

    # 6. Power iteration on a symmetric matrix with a known spectrum.
    power = power_iteration_study(rng, seed=ctx.seed)
    pw = power.result
    fig = new_figure((6.4, 4.2))
    ax = fig.subplots()
    P.plot_power_iteration(pw, power.eigenvalues, ax=ax)
    out.figures.append(ctx.savefig(fig, "power.png", "Power iteration v ← Av/‖Av‖ converges to the dominant "
                                   "eigenpair at the rate (λ₂/λ₁)^(2k) in the Rayleigh quotient."))

    out.numbers = {
        "line": {"x": r1.x, "distance": c1.norm, "expected_distance": 12 / 5, "kind": r1.kind},
        "plane": {"x": c2.system.result.x, "distance": c2.norm, "kind": c2.system.result.kind},
        "two_planes": {"x": c3.system.result.x, "kind": c3.system.result.kind, "x_dot_line_direction": orth},
        "rank4": {"rank": S4.rank, "dims": S4.dims, "kind_in": r_in.kind, "kind_out": r_out.kind,
                  "residual_in": r_in.residual_norm, "residual_out": r_out.residual_norm,
                  "residual_component_in_col_space": ex.residual_in_col_space},
        "power_iteration": {"eigenvalue": pw.eigenvalue, "expected": float(power.eigenvalues[0]),
                            "iterations": pw.iterations, "converged": pw.converged},
    }
    out.findings = [
        f"3x + 4y = 12: x* = ({fmt(r1.x[0], '.6g')}, {fmt(r1.x[1], '.6g')}) = (36/25, 48/25), distance {c1.norm:.15g} "
        f"(12/5 = 2.4).",
        f"Two planes: x* is orthogonal to their line of intersection (x*·d = {orth:.1e}).",
        f"8×8 rank-4 matrix: b in the column space gives '{r_in.kind}' with residual {r_in.residual_norm:.1e}; "
        f"b outside gives '{r_out.kind}' with residual {r_out.residual_norm:.3g}, whose component in the column space "
        f"is {ex.residual_in_col_space:.1e}: it lies in the left null space.",
        f"Power iteration found λ₁ = {pw.eigenvalue:.12g} (exact 10) in {pw.iterations} iterations.",
    ]
    return out


CHAPTER = Chapter(key="linsys", order=10, title="1. Linear systems: least norm and the pseudoinverse",
                  intro=INTRO, run=run, seconds=5)
